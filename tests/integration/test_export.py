"""`audit export`: JSON Lines (every stored event with its envelope and chain hash) and CDISC
ODM 1.3.2 XML, whole trial or one subject, optionally as known at a past moment. Every ODM
document is validated (tests/support/odm.py) against the official ODM 1.3.2 schema that `odmlib`
ships, and against the published release files in ../shared when they are there."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson
import pytest

from m22bol.domain import commands as c
from tests.support import ON_SQLITE, TEST_PASSWORD, invoke, store_fingerprint
from tests.support.odm import valid_odm

S = "M22-001"
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}


@pytest.fixture
def corrected(driver):
    """M22-001 with ER corrected (a reason), a retracted contact and an approval; M22-002."""
    driver.enrolled(S)
    driver.do("contact", subject=S, date="2025-02-01", source="clinic letter 2025-02-01")
    driver.do("correct", subject=S, entry=f"{S}#2", reason="ER from the wrong report",
              set=["er=negative"], actor="inv")
    driver.do("retract", subject=S, entry=f"{S}#4", reason="visit of another patient")
    driver.ledger.execute(c.Sign(subject=S, meaning="approved", password=TEST_PASSWORD),
                          "inv")
    driver.enrolled("M22-002", site="S2")
    return driver


def export(driver, tmp_path, fmt: str, *args: str, user: str = "aud") -> Path:
    out = tmp_path / f"export.{fmt}"
    result = invoke(["audit", "export", "--format", fmt, "--out", str(out), *args],
                    url=driver.ledger.url, user=user)
    assert result.exit_code == 0, result.output
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_has_every_event_with_its_envelope_and_a_checkable_chain_hash(corrected,
                                                                            tmp_path):
    records = lines(export(corrected, tmp_path, "jsonl"))
    stored = store_fingerprint(corrected.ledger.url)

    assert [r["notification_id"] for r in records] == [row[0] for row in stored]
    last_hash: dict[str, str] = {}
    for record, row in zip(records, stored, strict=True):
        assert record["hash"] == hashlib.sha256(row[4]).hexdigest()
        envelope = record["envelope"]
        assert {"actor", "recorded_at", "reason", "source", "prev_hash"} <= set(envelope)
        assert envelope["prev_hash"] == last_hash.get(envelope["originator_id"])
        last_hash[envelope["originator_id"]] = record["hash"]
        if "redacted" not in record:
            # Envelope and values together are the stored object: the hash can be recomputed.
            state = orjson.dumps({**envelope, **record["values"]}, option=orjson.OPT_SORT_KEYS)
            assert hashlib.sha256(state).hexdigest() == record["hash"]
    entries = {r["entry"]: r for r in records}
    change = entries[f"{S}#5"]
    assert (change["event"], change["subject"], change["envelope"]["actor"]) == (
        "EntryCorrected", S, "inv")
    assert change["values"]["changes"] == {"er": "negative"}
    assert change["envelope"]["reason"] == "ER from the wrong report"
    assert entries[f"{S}#4"]["envelope"]["source"] == "clinic letter 2025-02-01"


def test_jsonl_never_carries_a_password_hash(corrected, tmp_path):
    path = export(corrected, tmp_path, "jsonl")
    stored_hash = corrected.ledger.require_trial().password_hashes["inv"]

    records = [r for r in lines(path) if r["event"] == "PasswordSet"]

    assert {r["values"]["user"] for r in records} >= {"inv", "admin"}
    for record in records:
        assert record["values"]["password_hash"] == "[redacted]"
        assert record["redacted"] == ["password_hash"]
    assert stored_hash not in path.read_text()


def test_jsonl_for_one_subject_and_as_known_at_a_moment(corrected, tmp_path):
    events = corrected.ledger.require_patient(S).events
    before_change = events[3].recorded_at.isoformat()  # the contact, before the correction

    subject = lines(export(corrected, tmp_path, "jsonl", "--subject", S))
    past = lines(export(corrected, tmp_path, "jsonl", "--subject", S,
                        "--known-at", before_change))

    assert [r["entry"] for r in subject] == [f"{S}#{n}" for n in range(1, 8)]
    assert [r["entry"] for r in past] == [f"{S}#{n}" for n in range(1, 5)]


def test_odm_of_a_subject_with_a_correction_holds_both_values_and_the_reason(corrected,
                                                                             tmp_path, schemas):
    root = valid_odm(schemas, export(corrected, tmp_path, "odm", "--subject", S))

    assert (root.get("FileType"), root.get("Granularity"), root.get("ODMVersion")) == (
        "Transactional", "SingleSubject", "1.3.2")
    subjects = root.findall("odm:ClinicalData/odm:SubjectData", NS)
    assert {s.get("SubjectKey") for s in subjects} == {S}
    er = [item for item in root.iter(f"{{{NS['odm']}}}ItemData")
          if item.get("ItemOID") == "IT.EligibilityAssessed.er"]
    assert [(i.get("TransactionType"), i.get("Value")) for i in er] == [(None, "positive"),
                                                                         ("Update", "negative")]
    record = er[1].find("odm:AuditRecord", NS)
    assert [child.tag.split("}")[1] for child in record] == [
        "UserRef", "LocationRef", "DateTimeStamp", "ReasonForChange", "SourceID"]
    assert record.find("odm:ReasonForChange", NS).text == "ER from the wrong report"
    assert record.find("odm:UserRef", NS).get("UserOID") == "USR.inv"
    assert record.find("odm:SourceID", NS).text == f"{S}#5"


def test_odm_shows_a_retraction_and_a_signature(corrected, tmp_path, schemas):
    root = valid_odm(schemas, export(corrected, tmp_path, "odm", "--subject", S))

    removed = [e for e in root.iter(f"{{{NS['odm']}}}StudyEventData")
               if e.get("TransactionType") == "Remove"]
    assert [(e.get("StudyEventOID"), e.get("StudyEventRepeatKey")) for e in removed] == [
        ("SE.ContactRecorded", "4")]
    assert removed[0].find("odm:AuditRecord/odm:ReasonForChange", NS).text == (
        "visit of another patient")
    (signature,) = root.iter(f"{{{NS['odm']}}}Signature")
    assert signature.find("odm:UserRef", NS).get("UserOID") == "USR.inv"
    assert signature.find("odm:SignatureRef", NS).get("SignatureOID") == "SD.approved"
    head = corrected.ledger.require_patient(S).events[-1].head_digest
    assert any(head in (c.text or "") for c in root.iter(f"{{{NS['odm']}}}Comment"))


def test_odm_as_known_at_a_moment_leaves_later_changes_out(corrected, tmp_path, schemas):
    contact = corrected.ledger.require_patient(S).events[3].recorded_at.isoformat()

    root = valid_odm(schemas, export(corrected, tmp_path, "odm", "--subject", S,
                                     "--known-at", contact))

    assert root.get("AsOfDateTime") == contact
    assert not [i for i in root.iter(f"{{{NS['odm']}}}ItemData")
                if i.get("TransactionType") == "Update"]
    assert not list(root.iter(f"{{{NS['odm']}}}Signature"))


def test_odm_of_the_whole_trial_covers_every_subject(corrected, tmp_path, schemas):
    root = valid_odm(schemas, export(corrected, tmp_path, "odm"))

    assert root.get("Granularity") == "All"
    keys = [s.get("SubjectKey") for s in root.iterfind("odm:ClinicalData/odm:SubjectData", NS)]
    assert set(keys) == {S, "M22-002"}
    sites = {e.get("Name") for e in root.iterfind("odm:AdminData/odm:Location", NS)}
    assert sites == {"S1", "S2"}


@pytest.fixture(scope="module")
def demo_trial(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.sqlite'}"
    result = invoke(["demo", "--patients", "12", "--seed", "1"], url=url, user="admin")
    assert result.exit_code == 0, result.output
    return url


def test_the_whole_demo_trial_exports_to_valid_odm(demo_trial, tmp_path, schemas):
    out = tmp_path / "demo.xml"
    result = invoke(["audit", "export", "--format", "odm", "--out", str(out), "--json"],
                    url=demo_trial, user="admin")
    assert result.exit_code == 0, result.output

    root = valid_odm(schemas, out)

    events = len(store_fingerprint(demo_trial))
    trial_events = json.loads(result.output)["events"]
    assert len(root.findall("odm:ClinicalData/odm:SubjectData", NS)) == trial_events
    assert 0 < trial_events < events  # subject events only; grants and the like are not ODM


@ON_SQLITE
@pytest.mark.parametrize("user, code", [("aud", 0), ("mon", 0), ("admin", 0), ("dm", 4),
                                        ("inv", 4)])
def test_who_may_export(corrected, tmp_path, user, code):
    result = invoke(["audit", "export", "--format", "jsonl", "--out", str(tmp_path / "x")],
                    url=corrected.ledger.url, user=user)
    assert result.exit_code == code


def test_export_to_standard_output_and_bad_options(corrected):
    url = corrected.ledger.url
    out = invoke(["audit", "export", "--format", "jsonl", "--subject", S, "--out", "-"],
                 url=url, user="aud")
    assert out.exit_code == 0
    assert [json.loads(line)["entry"] for line in out.output.splitlines()][0] == f"{S}#1"

    for fmt in ("jsonl", "odm"):
        for args in (["--subject", "M22-999"], ["--known-at", "yesterday"],
                     ["--known-at", "2026-01-01T00:00:00"],
                     ["--subject", S, "--known-at", "2020-01-01T00:00:00+00:00"]):
            result = invoke(["audit", "export", "--format", fmt, "--out", "-", *args],
                            url=url, user="aud")
            assert result.exit_code == 2, (fmt, args, result.output)
