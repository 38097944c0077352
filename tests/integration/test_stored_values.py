"""Issue 13, part 2: a stored event always decodes and never blocks its subject.

Each test stores a value the way an older version (or a past bug) could have: bytes written
straight into the store, linked to the chain head so that every hash chain still verifies, and
the log digest kept by the store's own recorder. Then it shows the subject still takes entries,
`report`, `status` and `projections rebuild` work, a correction releases the held fact, the
exports stay well-formed, and `audit verify` names the value (exit 5)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import xmlschema
from eventsourcing.persistence import StoredEvent
from odmlib import schema_manager

from m22bol.domain import events as e
from m22bol.domain.canonical import canonical
from m22bol.ledger.store import event_hash
from tests.support import ON_SQLITE, invoke

S = "M22-001"


@pytest.fixture
def infused(driver):
    """M22-001 enrolled at S1 and infused once (#4)."""
    driver.enrolled(S, site="S1")
    driver.do("infuse", subject=S, cycle=1, date="2025-01-10", weight_kg=60, dose_mg=324)
    return driver


def store_as_an_older_version(ledger, cls: type[e.Event], values: dict, *,
                              encode=canonical) -> str:
    """Append an event of `cls` with `values` to M22-001's chain, as stored bytes no check of
    today's has seen, linked to the chain head; its entry id. `encode` writes the bytes (an
    older version's JSON writer)."""
    patient = ledger.require_patient(S)
    head = patient.events[-1]
    version = patient.version + 1
    state = {"originator_id": str(patient.id), "originator_version": version,
             "recorded_at": head.recorded_at.isoformat(), "actor": "dm",
             "prev_hash": event_hash(head), "event_type": e.topic_of(cls), **values}
    ledger.recorder.insert_events([StoredEvent(
        originator_id=patient.id, originator_version=version, topic=e.topic_of(cls),
        state=encode(state))])
    return f"{S}#{version}"


def python_json(state: dict) -> bytes:
    """Python's own JSON writer, which writes a NaN as a bare NaN (not JSON)."""
    return json.dumps(state, sort_keys=True).encode()


def findings(url: str) -> list[dict]:
    result = invoke(["audit", "verify", "--json"], url=url, user="aud")
    assert result.exit_code == 5, result.output
    document = json.loads(result.output)
    return [f for f in document["failures"] if f["kind"] == "value"]


def still_works(url: str, tmp_path) -> None:
    """Entries, the report, a rebuild and every present-tense query, none printing NaN."""
    contact = invoke(["contact", S, "--date", "2025-03-01"], url=url)
    assert contact.exit_code == 0, contact.output
    report = invoke(["report", "--out", str(tmp_path / "report")], url=url, user="mon")
    assert report.exit_code == 0, report.output
    rebuild = invoke(["projections", "rebuild"], url=url, user="admin")
    assert rebuild.exit_code == 0, rebuild.output
    for query in (["status"], ["patient", S], ["history", S], ["endpoints"], ["safety"]):
        answer = invoke([*query, "--json"], url=url, user="mon")
        assert answer.exit_code == 0, (query, answer.output)
        assert "NaN" not in answer.output and "Infinity" not in answer.output
        json.loads(answer.output)
    export = invoke(["audit", "export", "--format", "jsonl", "--out", "-"], url=url, user="aud")
    assert export.exit_code == 0, export.output
    assert all(json.loads(line) for line in export.output.splitlines())


def test_a_fact_today_s_model_refuses_is_held_and_its_subject_goes_on(infused, tmp_path):
    """The issue's "Done when": a null dose and a field no longer known, on both stores."""
    ledger = infused.ledger
    url = ledger.url
    entry = store_as_an_older_version(ledger, e.InfusionGiven, {
        "cycle": 2, "date": "2025-01-31", "weight_kg": 60, "dose_mg": None, "pump": "B7"})
    ledger.close()

    still_works(url, tmp_path)
    patient = json.loads(invoke(["patient", S, "--json"], url=url, user="mon").output)
    assert entry not in [row["entry"] for row in patient["timeline"]]  # held out of the walk
    named = {(f["entry"], f["message"].split(":")[0]) for f in findings(url)}
    assert {(entry, "dose_mg"), (entry, "pump")} <= named
    assert {mark["field"] for mark in held_in_history(url)[entry]} == {"dose_mg", "pump"}

    fixed = invoke(["correct", S, entry, "--reason", "dose from the pharmacy record",
                    "--set", "dose_mg=324"], url=url)
    assert fixed.exit_code == 0, fixed.output
    patient = json.loads(invoke(["patient", S, "--json"], url=url, user="mon").output)
    assert {"entry": entry, "dose_mg": 324.0}.items() <= next(
        row for row in patient["timeline"] if row["entry"] == entry).items()
    # The bytes stay as stored, so verify keeps naming them; the correction is on record.
    assert any(f["entry"] == entry for f in findings(url))


# PostgreSQL's actor check reads each row's state as JSON and refuses a bare NaN, so only a
# SQLite ledger can hold one.
@ON_SQLITE
def test_a_nan_written_by_python_s_json_is_held_and_never_printed(infused, tmp_path):
    ledger = infused.ledger
    url = ledger.url
    entry = store_as_an_older_version(ledger, e.InfusionGiven, {
        "cycle": 2, "date": "2025-01-31", "weight_kg": 60, "dose_mg": float("nan")},
        encode=python_json)
    ledger.close()

    still_works(url, tmp_path)
    [finding] = [f for f in findings(url) if f["entry"] == entry]
    assert "dose_mg" in finding["message"] and "finite" in finding["message"]
    retracted = invoke(["retract", S, entry, "--reason", "entered in error"], url=url)
    assert retracted.exit_code == 0, retracted.output


def test_verify_names_a_date_that_does_not_exist_and_a_number_that_overflows(infused):
    """Values the byte pattern of `audit verify` must leave to the full check: a 30 February
    is text of the right shape, and 1e999 is a number JSON allows that reads as infinity."""
    ledger = infused.ledger
    url = ledger.url
    contact = store_as_an_older_version(ledger, e.ContactRecorded, {"date": "2025-02-30"})
    ctdna = store_as_an_older_version(ledger, e.CtdnaRecorded, {
        "date": "2025-02-01", "result": "detected", "value": "@overflow@"},
        encode=lambda state: canonical(state).replace(b'"@overflow@"', b"1e999"))
    ledger.close()

    named = {(f["entry"], f["message"].split(":")[0]) for f in findings(url)}
    assert {(contact, "date"), (ctdna, "value")} <= named
    # Both are held out of the walk like any refused value, the infinity too.
    assert {contact, ctdna} <= set(held_in_history(url))


def test_a_correction_an_older_version_stored_unreadable_is_left_out(infused, tmp_path):
    ledger = infused.ledger
    url = ledger.url
    entry = store_as_an_older_version(ledger, e.EntryCorrected, {
        "reason": "typo", "entry": f"{S}#4", "changes": {"dose_mg": None}, "note": "x"})
    ledger.close()

    still_works(url, tmp_path)
    assert any(f["entry"] == entry and "note" in f["message"] for f in findings(url))


def test_old_text_with_control_characters_stays_well_formed_and_valid_odm(infused, tmp_path):
    ledger = infused.ledger
    url = ledger.url
    entry = store_as_an_older_version(ledger, e.ContactRecorded, {
        "date": "2025-02-01", "source": "CRF\x07 p.3 \x1b[31m\u202eevil"})
    long_entry = store_as_an_older_version(ledger, e.SubsequentTherapyStarted, {
        "date": "2025-02-02", "therapy": "x" * 300})
    ledger.close()

    still_works(url, tmp_path)
    out = tmp_path / "trail.xml"
    exported = invoke(["audit", "export", "--format", "odm", "--out", str(out)], url=url,
                      user="aud")
    assert exported.exit_code == 0, exported.output
    xmlschema.XMLSchema(schema_manager.get_schema_path("odm", "1.3.2")).validate(str(out))
    text = "".join(ET.parse(out).getroot().itertext())
    assert "CRF[U+0007] p.3 [U+001B][31m[U+202E]evil" in out.read_text(encoding="utf-8")
    assert "\x1b" not in text and "\u202e" not in text
    messages = {f["entry"]: f["message"] for f in findings(url)}
    assert "U+0007" in messages[entry] and messages[entry].startswith("source")
    assert "300 characters" in messages[long_entry] and "200" in messages[long_entry]
    history = invoke(["history", S], url=url, user="mon")
    assert history.exit_code == 0 and "\x1b" not in history.output


def test_a_held_registration_is_named_until_corrected(driver, tmp_path):
    """A registration with a value the walk cannot start from (a consent date of null): the
    subject's other entries are refused naming what to correct (exit 3), the trial's queries,
    report and rebuild go on, and correcting the registration releases the subject."""
    from datetime import UTC, datetime

    from m22bol.domain.patient import patient_id

    ledger = driver.ledger
    url = ledger.url
    driver.enrolled("M22-002")  # another subject, unaffected
    subject = "M22-010"
    state = {"originator_id": str(patient_id(subject)), "originator_version": 1,
             "recorded_at": datetime.now(UTC).isoformat(), "actor": "dm", "prev_hash": None,
             "event_type": e.topic_of(e.Registered), "subject": subject, "site": "S1",
             "consent_date": None}
    ledger.recorder.insert_events([StoredEvent(
        originator_id=patient_id(subject), originator_version=1,
        topic=e.topic_of(e.Registered), state=canonical(state))])
    ledger.close()

    refused = invoke(["contact", subject, "--date", "2025-01-03"], url=url)
    assert refused.exit_code == 3, refused.output
    assert f"correct {subject}#1 first" in refused.output
    for args in (["status", "--json"], ["patient", subject, "--json"],
                 ["report", "--out", str(tmp_path / "report")]):
        answer = invoke(args, url=url, user="mon")
        assert answer.exit_code == 0, (args, answer.output)
    assert invoke(["projections", "rebuild"], url=url, user="admin").exit_code == 0
    assert any(f["entry"] == f"{subject}#1" and "consent_date" in f["message"]
               for f in findings(url))

    fixed = invoke(["correct", subject, f"{subject}#1", "--reason", "from the consent form",
                    "--set", "consent_date=2025-01-02"], url=url)
    assert fixed.exit_code == 0, fixed.output
    contact = invoke(["contact", subject, "--date", "2025-01-03"], url=url)
    assert contact.exit_code == 0, contact.output
    status = json.loads(invoke(["status", "--json"], url=url, user="mon").stdout)
    assert status["baskets"]["all"]["screened"] == 2


def test_a_lesion_size_stored_before_the_size_bound_is_held_not_a_crash(infused, tmp_path):
    """A nadir of 2e-309 mm made RECIST's change from the nadir overflow a float. Stored before
    sizes were bounded, such a scan is held: later scans are scored against the scans around
    it, verify and `history` name it, and a correction releases it."""
    url = infused.ledger.url
    infused.do("scan", subject=S, date="2025-01-08", target=["L1:liver:30"])  # the baseline
    entry = store_as_an_older_version(infused.ledger, e.ScanRecorded, {
        "date": "2025-03-01", "modality": "CT", "non_targets": [], "nodes": [],
        "new_lesions": [], "response": {},
        "targets": [{"lesion_id": "L1", "organ": "liver", "mm": 2e-309}]})
    infused.ledger.close()

    later = invoke(["scan", S, "--date", "2025-05-01", "--target", "L1:liver:31", "--json"],
                   url=url)
    assert later.exit_code == 0, later.output  # was exit 1: OverflowError
    assert json.loads(later.output)["target_response"] == "SD"  # against 30 mm, not 2e-309
    still_works(url, tmp_path)
    [finding] = [f for f in findings(url) if f["entry"] == entry]
    assert finding["message"].startswith("targets") and "2e-309" in finding["message"]
    assert held_in_history(url) == {entry: [{"field": "targets", "why": finding["message"]
                                             .removesuffix(" (stored by an older version or "
                                                           "a past bug)")}]}

    fixed = invoke(["correct", S, entry, "--reason", "the lesion had disappeared",
                    "--set", 'targets=[{"lesion_id": "L1", "organ": "liver", "mm": 0}]'],
                   url=url)
    assert fixed.exit_code == 0, fixed.output
    patient = json.loads(invoke(["patient", S, "--json"], url=url, user="mon").output)
    assert entry in [row["entry"] for row in patient["timeline"]]
    assert held_in_history(url) == {}


def held_in_history(url: str) -> dict[str, list]:
    """The entries `history` marks as held, in JSON, checked against its text."""
    rows = json.loads(invoke(["history", S, "--json"], url=url, user="mon").output)["entries"]
    held = {row["entry"]: row["held"] for row in rows if "held" in row}
    text = invoke(["history", S], url=url, user="mon").output  # piped: lines stay whole
    assert ("held until corrected" in text) == bool(held), text
    for marks in held.values():
        assert all(mark["why"] in text for mark in marks), text
    return held
