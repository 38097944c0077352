"""Tamper evidence against an attacker with file access: a copy of a sealed SQLite ledger is
changed through `sqlite3` with the append-only triggers dropped, and `audit verify` must exit 5
naming the entry that was modified, deleted, reordered or inserted. Hypothesis chooses which
event, which byte, which positions; an untouched copy verifies clean."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m22bol.domain import commands as c
from m22bol.domain.patient import patient_id
from m22bol.domain.trial import TRIAL_ID
from m22bol.ledger import integrity
from tests.support import TEST_PASSWORD, Driver, invoke, new_ledger

SUBJECTS = ("M22-001", "M22-002", "M22-003")
EXAMPLES = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def sealed(tmp_path_factory) -> dict:
    """A small trial, sealed last: entries, corrections, a retraction, a screen failure, a
    signature, a subject lock and unlock. Every subject has a change naming one of its entries,
    as real subjects do, so a subject stays nameable even when its registration is damaged."""
    path = tmp_path_factory.mktemp("sealed") / "ledger.sqlite"
    ledger = new_ledger(f"sqlite:///{path}")
    d = Driver(ledger)
    d.enrolled("M22-001", weight=60)
    d.do("infuse", subject="M22-001", cycle=1, date="2025-01-13", weight_kg=60, dose_mg=324)
    d.do("correct", subject="M22-001", entry="M22-001#3", reason="weighed again",
         set=["weight_kg=61"])
    d.enrolled("M22-002", er="negative")
    d.do("contact", subject="M22-002", date="2025-02-01")
    d.do("retract", subject="M22-002", entry="M22-002#4", reason="another patient's visit")
    d.do("register", subject="M22-003", site="S2", consent_date="2025-01-05")
    d.do("assess-eligibility", subject="M22-003", date="2025-01-06", her2="positive",
         er="positive", prior_therapy="none", distant_lesions=1, all_lesions_curable="yes",
         lvef=55, ecog=0)
    d.do("correct", subject="M22-003", entry="M22-003#2", reason="echo re-read",
         set=["lvef=45"])
    ledger.execute(c.Sign(subject="M22-001", meaning="approved", password=TEST_PASSWORD),
                   "inv")
    d.do("lock", actor="admin", subject="M22-002", reason="source data verification")
    d.do("unlock", actor="admin", subject="M22-002", reason="verification done")
    seal = integrity.seal(ledger, "monitoring visit 1", "admin")
    ledger.close()
    with closing(sqlite3.connect(path)) as con:
        rows = con.execute("SELECT rowid, originator_id, originator_version, state "
                           "FROM stored_events ORDER BY rowid").fetchall()
    names = {TRIAL_ID.hex: "trial", **{patient_id(s).hex: s for s in SUBJECTS}}
    return {"path": path, "digest": seal["digest"], "rows": [
        {"rowid": r, "aggregate": a, "version": v, "state": bytes(s),
         "entry": f"{names[a]}#{v}"} for r, a, v, s in rows]}


def tampered(sealed: dict, folder: str, *statements) -> str:
    """A copy of the sealed ledger, changed as an attacker with the file would change it."""
    copy = Path(folder) / "copy.sqlite"
    shutil.copy(sealed["path"], copy)
    with closing(sqlite3.connect(copy)) as con:
        con.execute("DROP TRIGGER stored_events_no_update")
        con.execute("DROP TRIGGER stored_events_no_delete")
        for statement, *params in statements:
            con.execute(statement, params)
        con.commit()
    return f"sqlite:///{copy}"


def verify(url: str, *args: str) -> tuple[int, dict]:
    result = invoke(["audit", "verify", "--json", *args], url=url, user="aud")
    return result.exit_code, json.loads(result.output)


def named(report: dict, kind: str | None = None) -> set[str]:
    """The entries the chain links and seals name (the log's running digest names positions,
    checked in test_integrity_attacks.py)."""
    return {f["entry"] for f in report["failures"]
            if (kind is None and f["kind"] != "log") or f["kind"] == kind}


def test_the_untouched_copy_verifies_clean(sealed):
    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder)
        code, report = verify(url, "--seal", sealed["digest"])

    assert code == 0, report
    assert report["ok"] and report["failures"] == []
    assert [s["ok"] for s in report["seals"]] == [True]
    assert report["events"] == len(sealed["rows"])


@EXAMPLES
@given(data=st.data())
def test_a_flipped_byte_in_any_event_is_named_as_modified(sealed, data):
    row = data.draw(st.sampled_from(sealed["rows"]), label="event")
    position = data.draw(st.integers(0, len(row["state"]) - 1), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    state = bytearray(row["state"])
    state[position] ^= mask

    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder, ("UPDATE stored_events SET state = ? WHERE rowid = ?",
                                        bytes(state), row["rowid"]))
        code, report = verify(url)

    assert code == 5
    # Exactly the changed event is accused, and nothing else.
    assert named(report) == {row["entry"]}, report["failures"]
    assert named(report, "modified") == {row["entry"]}
    assert [s["ok"] for s in report["seals"]] == [False]


@EXAMPLES
@given(data=st.data())
def test_a_deleted_event_is_named(sealed, data):
    row = data.draw(st.sampled_from(sealed["rows"]), label="event")

    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder, ("DELETE FROM stored_events WHERE rowid = ?",
                                        row["rowid"]))
        code, report = verify(url, "--seal", sealed["digest"])

    assert code == 5
    if row is sealed["rows"][-1]:
        # The seal itself was the newest event: no link names it; the digest handed out earlier
        # and the log's running digest (recorded at its position) show it.
        assert [f["kind"] for f in report["failures"]] == ["log", "seal"]
        assert report["seals"] == []
    else:
        assert row["entry"] in named(report, "deleted"), report["failures"]
        assert not named(report, "modified") and not named(report, "inserted")


@EXAMPLES
@given(data=st.data())
def test_events_stored_out_of_order_are_named_as_reordered(sealed, data):
    aggregate = data.draw(st.sampled_from([TRIAL_ID.hex, *(patient_id(s).hex
                                                            for s in SUBJECTS)]))
    chain = [r for r in sealed["rows"] if r["aggregate"] == aggregate]
    first, second = data.draw(st.lists(st.sampled_from(chain), min_size=2, max_size=2,
                                       unique_by=lambda r: r["rowid"]))
    how = data.draw(st.sampled_from(["versions", "log positions"]))
    column = "originator_version" if how == "versions" else "rowid"
    a, b = (first["version"], second["version"]) if how == "versions" else (
        first["rowid"], second["rowid"])

    with tempfile.TemporaryDirectory() as folder:
        url = tampered(
            sealed, folder,
            (f"UPDATE stored_events SET {column} = -1 WHERE rowid = ?", first["rowid"]),
            (f"UPDATE stored_events SET {column} = ? WHERE rowid = ?", a, second["rowid"]),
            (f"UPDATE stored_events SET {column} = ? WHERE {column} = -1", b),
        )
        code, report = verify(url)

    assert code == 5
    reordered = named(report, "reordered")
    assert named(report) == reordered
    if how == "versions":
        assert reordered == {first["entry"], second["entry"]}
    else:
        # Two swapped neighbours in the log: either one moved; the one named says past which.
        assert reordered and reordered <= {first["entry"], second["entry"]}
        told = " ".join(f"{f['entry']} {f['message']}" for f in report["failures"])
        assert first["entry"] in told and second["entry"] in told


def forged_after(row: dict, version: int) -> bytes:
    """A careful forger's event: a plausible contact, linked to the real event before it."""
    state = json.loads(row["state"])
    forged = {key: state[key] for key in ("actor", "originator_id", "recorded_at", "source")}
    forged.update(originator_version=version, prev_hash=hashlib.sha256(row["state"]).hexdigest(),
                  date="2025-01-11", reason=None, deviation_reason=None, deviations=[])
    return json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()


@EXAMPLES
@given(data=st.data())
def test_a_forged_event_inserted_into_a_chain_is_named_as_inserted(sealed, data):
    subject = data.draw(st.sampled_from(SUBJECTS))
    chain = [r for r in sealed["rows"] if r["aggregate"] == patient_id(subject).hex]
    at = data.draw(st.integers(2, len(chain)), label="inserted as version")
    shift = [("UPDATE stored_events SET originator_version = originator_version + 1 "
              "WHERE originator_id = ? AND originator_version = ?", r["aggregate"], r["version"])
             for r in reversed(chain) if r["version"] >= at]

    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder, *shift, (
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, 'domain.events:ContactRecorded', ?)",
            chain[0]["aggregate"], at, forged_after(chain[at - 2], at)))
        code, report = verify(url)

    assert code == 5
    assert named(report) == named(report, "inserted") == {f"{subject}#{at}"}
    assert [s["ok"] for s in report["seals"]] == [False]


def test_a_deleted_last_event_of_a_chain_is_caught_by_the_seal(sealed):
    head = [r for r in sealed["rows"] if r["aggregate"] == patient_id("M22-003").hex][-1]

    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder,
                       ("DELETE FROM stored_events WHERE rowid = ?", head["rowid"]))
        code, report = verify(url)

    assert code == 5
    assert head["entry"] in named(report, "deleted")
    assert report["seals"][0]["problems"] == [f"{head['entry']} deleted"]


def test_a_forged_event_slipped_into_the_sealed_part_of_the_log_is_named(sealed):
    """A forger who links a new last event correctly and renumbers the log to hide it among
    sealed events: no link breaks, but the seal covers a prefix of the log that now has an
    event it never covered."""
    rows = sealed["rows"]
    chain = [r for r in rows if r["aggregate"] == patient_id("M22-003").hex]
    slot = chain[-1]["rowid"] + 1
    moves = [("UPDATE stored_events SET rowid = rowid + 1 WHERE rowid = ?", r["rowid"])
             for r in reversed(rows) if r["rowid"] >= slot]

    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder, *moves, (
            "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, 'domain.events:ContactRecorded', ?)",
            slot, chain[0]["aggregate"], len(chain) + 1,
            forged_after(chain[-1], len(chain) + 1)))
        code, report = verify(url)

    assert code == 5
    assert named(report) == {f"M22-003#{len(chain) + 1}"}
    assert named(report, "inserted") == named(report)


def test_an_event_copied_from_another_chain_is_named_as_inserted(sealed):
    source = next(r for r in sealed["rows"] if r["entry"] == "M22-002#2")

    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder, (
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "SELECT ?, 99, topic, state FROM stored_events WHERE rowid = ?",
            patient_id("M22-001").hex, source["rowid"]))
        code, report = verify(url)

    assert code == 5
    # (Stored without the log digest every entry records: also a `log` finding.)
    (finding,) = [f for f in report["failures"] if f["kind"] != "log"]
    assert (finding["kind"], finding["entry"]) == ("inserted", "M22-001#99")
    assert "copy of M22-002#2" in finding["message"]
    assert report["seals"][0]["ok"]  # everything sealed is still there, unchanged


def test_a_topic_that_names_no_event_is_reported_not_imported(sealed):
    row = sealed["rows"][4]
    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder, ("UPDATE stored_events SET topic = 'os:system' "
                                        "WHERE rowid = ?", row["rowid"]))
        code, report = verify(url)

    assert code == 5
    assert named(report, "modified") == {row["entry"]}


def test_a_changed_event_type_is_named_as_modified(sealed):
    # A contact and a withdrawal of consent store the same fields: only the type tells them
    # apart, so swapping it turns a visit into a withdrawal.
    (row,) = [r for r in sealed["rows"] if r["entry"] == "M22-002#4"]

    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder, ("UPDATE stored_events SET topic = "
                                        "'domain.events:Withdrawn' WHERE rowid = ?",
                                        row["rowid"]))
        code, report = verify(url)

    assert code == 5
    assert named(report, "modified") == {row["entry"]}


def test_reading_an_altered_subject_is_an_integrity_failure_not_a_crash(sealed):
    # A contact turned into a withdrawal through the topic column: `patient` must say the
    # record no longer holds (exit 5), as `audit verify` does, rather than fail as a bug.
    (row,) = [r for r in sealed["rows"] if r["entry"] == "M22-002#4"]
    with tempfile.TemporaryDirectory() as folder:
        url = tampered(sealed, folder, ("UPDATE stored_events SET topic = "
                                        "'domain.events:Withdrawn' WHERE rowid = ?",
                                        row["rowid"]))
        result = invoke(["patient", "M22-002", "--known-at", "2100-01-01T00:00:00+00:00"],
                        url=url, user="mon")
    assert result.exit_code == 5, result.output
    assert "no longer decode" in result.output and "audit verify" in result.output
