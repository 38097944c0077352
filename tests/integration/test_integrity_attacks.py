"""The attack suite: what an attacker with write access to the database (append-only triggers
dropped, or disabled by the PostgreSQL owner) can do, and which defence catches each attack.

The sample ledger: two subjects, sealed with a signed seal that a witness file records, then a
third subject and one more entry after the seal (the part no seal covers yet). Before each
attack, the auditor's account runs `status` on the copy, so it remembers what it saw.

| attack                                   | caught by                                        |
|------------------------------------------|--------------------------------------------------|
| modify a byte of any event               | chain links, log digest                          |
| delete any event                         | chain links, log digest                          |
| reorder two events of a chain            | chain links, log digest                          |
| insert a forged event into a chain       | chain links, log digest                          |
| truncate the tail (events and digests)   | an account's remembered state                    |
| delete a subject added since the seal    | an account's remembered state                    |
| delete the last seal                     | log digest, witness (SQLite: the log's hole)     |
| rewrite a whole chain, recompute seal    | seal signature, witness; and the log digest if   |
|                                          |   the attacker leaves it, else the account       |
| forge a read-model row                   | read-model check                                 |
| append forged events after the last seal | nothing, if no account saw the ledger: the known |
|   (links and log digest extended)        |   limit; `verify` counts them as not yet sealed  |
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m22bol.domain.events import Sealed
from m22bol.domain.patient import patient_id
from m22bol.domain.trial import seal_digest
from m22bol.ledger import integrity, log_digest, seal_keys, witness
from m22bol.ledger.seen import ledger_key
from m22bol.ledger.store import canonical
from tests.support import Driver, invoke, new_ledger
from tests.support.databases import fresh_postgres_database

PASSPHRASE = "sealing key passphrase 1"
EXAMPLES = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SEALED_SUBJECTS = ("M22-001", "M22-002")
LATE_SUBJECT = "M22-003"  # registered after the seal


# --- the sample ledger and its copies, on either backend ----------------------------------------


class Sample:
    """The sealed sample ledger, and how to make a copy an attacker can change."""

    def __init__(self, url: str, folder: Path):
        self.url, self.folder = url, folder
        self.key = str(folder / "sealing.key")
        self.witness = str(folder / "witness.jsonl")
        seal_keys.generate(self.key, PASSPHRASE)
        ledger = new_ledger(url)
        d = Driver(ledger)
        for subject in SEALED_SUBJECTS:
            d.enrolled(subject)
        d.do("infuse", subject="M22-001", cycle=1, date="2025-01-13", weight_kg=60, dose_mg=324)
        d.do("contact", subject="M22-002", date="2025-02-01")
        sealed = integrity.seal(ledger, "monitoring visit", "admin",
                                sign=seal_keys.signer(self.key, PASSPHRASE))
        witness.append(self.witness, sealed, ledger_key(url))
        self.digest = sealed["digest"]
        d.enrolled(LATE_SUBJECT)
        d.do("contact", subject="M22-001", date="2025-02-03")
        ledger.close()
        self.events = Store(url).events()
        self.seal_position = next(e[0] for e in self.events if e[3].endswith(":Sealed"))

    def copy(self) -> str:
        if self.url.startswith("sqlite"):
            target = Path(tempfile.mkdtemp(dir=self.folder)) / "copy.sqlite"
            shutil.copy(self.url.split("///", 1)[1], target)
            return f"sqlite:///{target}"
        parts = urlsplit(self.url)
        name = f"t_{uuid.uuid4().hex}"
        with psycopg.connect(_admin(self.url), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}" TEMPLATE "{parts.path.lstrip("/")}"')
        return parts._replace(path=f"/{name}").geturl()


def _admin(url: str) -> str:
    return urlsplit(url)._replace(scheme="postgresql", path="/postgres").geturl()


class Store:
    """Raw access to a copy as its attacker has it: SQL on the tables, triggers off."""

    def __init__(self, url: str):
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.events_table = "stored_events" if self.sqlite else "m22bol_events"
        self.position = "rowid" if self.sqlite else "notification_id"

    def run(self, sql: str, *params) -> list[tuple]:
        sql = sql.format(events=self.events_table, pos=self.position,
                         digests=log_digest.DIGESTS)
        params = tuple(p.hex if isinstance(p, uuid.UUID) and self.sqlite else p for p in params)
        if self.sqlite:
            with closing(sqlite3.connect(self.url.split("///", 1)[1])) as con:
                rows = con.execute(sql, params).fetchall()
                con.commit()
                return rows
        conninfo = urlsplit(self.url)._replace(scheme="postgresql").geturl()
        with psycopg.connect(conninfo) as con:
            cursor = con.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []

    def drop_triggers(self) -> None:
        if self.sqlite:
            for table in ("stored_events", log_digest.DIGESTS):
                for op in ("update", "delete"):
                    self.run(f"DROP TRIGGER {table}_no_{op}")
        else:  # the owner can; tests/integration/test_append_only.py shows a writer cannot
            for table in ("m22bol_events", log_digest.DIGESTS):
                self.run(f"ALTER TABLE {table} DISABLE TRIGGER USER")

    def events(self) -> list[tuple]:
        return [(p, a.hex if isinstance(a, uuid.UUID) else a, v, t, bytes(s)) for p, a, v, t, s
                in self.run("SELECT {pos}, originator_id, originator_version, topic, state "
                            "FROM {events} ORDER BY {pos}")]

    def set_state(self, position: int, state: bytes) -> None:
        self.run("UPDATE {events} SET state = ? WHERE {pos} = ?", state, position)

    def delete_from(self, position: int) -> None:
        """The tail from `position` on, and the digests the ledger recorded for it."""
        self.run("DELETE FROM {events} WHERE {pos} >= ?", position)
        self.run("DELETE FROM {digests} WHERE position >= ?", position)

    def refold_digests(self, *, extend: bool = False) -> None:
        """Recompute the log's running digests as the ledger would have (a careful attacker);
        with `extend`, also record one for events appended after the newest."""
        positions = [p for (p,) in self.run("SELECT position FROM {digests} ORDER BY position")]
        events = self.events()
        if extend and events[-1][0] > positions[-1]:
            positions.append(events[-1][0])
        self.run("DELETE FROM {digests}")
        folding, due = log_digest.Folding(), iter(positions)
        at = next(due)
        for position, aggregate, version, topic, state in events:
            folding.add(position, aggregate, version, topic, hashlib.sha256(state).digest())
            if position == at:
                digest = folding.digest()
                self.run("INSERT INTO {digests} (position, digest) VALUES (?, ?)", position,
                         digest.hex())
                folding, at = log_digest.Folding(digest), next(due, None)

    def rewrite(self, change) -> None:
        """Change events with `change(data) -> data | None`, then recompute every link and
        every seal (digest and heads) after them: a whole history rewritten consistently."""
        heads: dict[str, tuple[int, str]] = {}
        for position, aggregate, version, topic, state in self.events():
            data = orjson.loads(state)
            data = change(data) or data
            data["prev_hash"] = heads[aggregate][1] if aggregate in heads else None
            if topic.endswith(":Sealed"):
                data["heads"] = sorted([str(uuid.UUID(a)), v, h] for a, (v, h) in heads.items())
                data["event_count"] = sum(v for v, _ in heads.values())
                fields = {k: v for k, v in data.items() if k != "event_type"}
                data["digest"] = seal_digest(Sealed.model_validate(fields))
            new = canonical(data)
            if new != state:
                self.set_state(position, new)
            heads[aggregate] = (version, hashlib.sha256(new).hexdigest())

    def append(self, template: dict, **values) -> None:
        """A forged event appended to the end of a chain, linked to its head."""
        aggregate = uuid.UUID(template["originator_id"])
        version, state = self.run("SELECT originator_version, state FROM {events} WHERE "
                                  "originator_id = ? ORDER BY originator_version DESC LIMIT 1",
                                  aggregate)[0]
        data = {**template, **values, "originator_version": version + 1,
                "prev_hash": hashlib.sha256(bytes(state)).hexdigest()}
        self.run("INSERT INTO {events} (originator_id, originator_version, topic, state) "
                 "VALUES (?, ?, ?, ?)", aggregate, version + 1, data["event_type"],
                 canonical(data))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def sample(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    os.environ["M22BOL_KEY_PASSPHRASE"] = PASSPHRASE
    if request.param == "sqlite":
        yield Sample(f"sqlite:///{folder}/ledger.sqlite", folder)
        return
    # A database set up by its owner (`db setup`), as a site would have it.
    with fresh_postgres_database() as url:
        yield Sample(url, folder)


class Attack:
    """One copy of the sample: seen by the auditor's account, then changed."""

    def __init__(self, sample: Sample):
        self.sample = sample
        self.url = sample.copy()
        assert invoke(["status"], url=self.url, user="aud").exit_code == 0  # the account saw it
        self.store = Store(self.url)
        self.store.drop_triggers()

    def verify(self, *args: str) -> tuple[int, dict]:
        result = invoke(["audit", "verify", "--json", *args], url=self.url, user="aud")
        return result.exit_code, json.loads(result.output)

    def with_every_defence(self) -> tuple[int, dict]:
        return self.verify("--trusted-key", self.sample.key + ".pub",
                           "--witness", self.sample.witness)

    def next_command(self):
        return invoke(["status", "--json"], url=self.url, user="aud")

    def close(self) -> None:
        if not self.url.startswith("sqlite"):
            with psycopg.connect(_admin(self.url), autocommit=True) as con:
                con.execute(f'DROP DATABASE IF EXISTS "{urlsplit(self.url).path[1:]}" '
                            "WITH (FORCE)")


@pytest.fixture
def attack(sample):
    made: list[Attack] = []

    def make() -> Attack:
        made.append(Attack(sample))
        return made[-1]

    yield make
    for a in made:
        a.close()


def kinds(report: dict) -> set[str]:
    return {f["kind"] for f in report["failures"]}


def test_the_untouched_copy_passes_every_defence(sample, attack):
    a = attack()
    code, report = a.with_every_defence()

    assert code == 0, report
    assert report["seals"][0]["signed_by"].startswith("ed25519:")
    assert report["not_yet_sealed"]["events"] == len(sample.events) - sample.seal_position
    assert a.next_command().exit_code == 0


# --- caught by the chain links (and the log's running digest) ---------------------------------


@EXAMPLES
@given(data=st.data())
def test_a_changed_byte_is_caught_by_the_links_and_the_log_digest(sample, attack, data):
    position, aggregate, *_, state = data.draw(st.sampled_from(sample.events), label="event")
    byte = data.draw(st.integers(0, len(state) - 1), label="byte")
    changed = bytearray(state)
    changed[byte] ^= data.draw(st.integers(1, 255), label="xor mask")
    a = attack()
    a.store.set_state(position, bytes(changed))

    code, report = a.verify()

    assert code == 5
    assert "log" in kinds(report)  # the running digest no longer folds
    # The newest event of a chain, written after the last seal, has no link and no seal over
    # it: the running digest alone names that change.
    head = position == max(e[0] for e in sample.events if e[1] == aggregate)
    if head and position > sample.seal_position:
        return
    # A seal's signature is outside its digest, so a change there is named on the seal itself
    # (its signature no longer holds), not among the failures.
    refused_seals = [s for s in report["seals"] if not s["ok"]]
    assert "modified" in kinds(report) or "seal" in kinds(report) or refused_seals, report


@EXAMPLES
@given(data=st.data())
def test_a_deleted_event_is_caught_by_the_links_and_the_log_digest(sample, attack, data):
    position, aggregate = data.draw(st.sampled_from(sample.events[:-1]), label="event")[:2]
    a = attack()
    a.store.run("DELETE FROM {events} WHERE {pos} = ?", position)

    code, report = a.verify()

    assert code == 5
    assert "log" in kinds(report), report["failures"]
    # The last event of a chain has no link after it; SQLite's log has no holes, so there the
    # hole names it. PostgreSQL's log may have holes (rolled-back writes): the digest names it.
    head = position == max(e[0] for e in sample.events if e[1] == aggregate)
    if a.store.sqlite or not head:
        assert "deleted" in kinds(report), report["failures"]


@EXAMPLES
@given(data=st.data())
def test_swapped_events_are_caught_by_the_links_and_the_log_digest(sample, attack, data):
    subject = data.draw(st.sampled_from(SEALED_SUBJECTS), label="subject")
    chain = [e for e in sample.events if e[1] == patient_id(subject).hex]
    first, second = data.draw(st.lists(st.sampled_from(chain), min_size=2, max_size=2,
                                       unique_by=lambda e: e[0]), label="events")
    a = attack()
    a.store.set_state(first[0], second[4])
    a.store.set_state(second[0], first[4])

    code, report = a.verify()

    assert code == 5
    assert "log" in kinds(report) and kinds(report) & {"reordered", "modified", "inserted"}


def test_a_forged_event_inserted_into_a_chain_is_caught_by_the_links(sample, attack):
    """Inserted in the middle: the next event's link no longer names the one before it."""
    a = attack()
    chain = [e for e in sample.events if e[1] == patient_id("M22-001").hex]
    a.store.run("UPDATE {events} SET originator_version = originator_version + 100 "
                "WHERE originator_id = ? AND originator_version >= 3", patient_id("M22-001"))
    template = orjson.loads(chain[1][4])
    a.store.append(template, weight_kg=99.0)
    code, report = a.verify()

    assert code == 5
    assert kinds(report) & {"inserted", "reordered", "modified"}, report["failures"]


# --- caught by an account's remembered state ----------------------------------------------------


@EXAMPLES
@given(data=st.data())
def test_a_truncated_tail_is_caught_by_the_account_that_saw_it(sample, attack, data):
    """The events after the seal and the digests recorded for them are gone: every link and
    the seal still hold, and no digest was handed out for that part. The account that saw them
    notices at its next command, naming the position it saw."""
    after_seal = [e for e in sample.events if e[0] > sample.seal_position]
    position = data.draw(st.sampled_from(after_seal), label="first deleted")[0]
    a = attack()
    a.store.delete_from(position)

    result = a.next_command()
    code, report = a.verify()

    assert result.exit_code == 5
    assert f"log position {sample.events[-1][0]}" in result.output
    assert code == 5 and kinds(report) == {"seen"}, report["failures"]


def test_a_subject_added_since_the_seal_deleted_is_caught_by_the_account(sample, attack):
    a = attack()
    late = [e[0] for e in sample.events if e[1] == patient_id(LATE_SUBJECT).hex]
    # The late subject's events and the entry after them: the tail from its registration.
    a.store.delete_from(min(late))

    assert a.next_command().exit_code == 5
    code, report = a.verify()
    assert code == 5 and "seen" in kinds(report)


# --- the seal: deleted, or recomputed over a rewritten history ----------------------------------


def test_a_deleted_seal_is_caught_by_the_log_digest_and_the_witness(sample, attack):
    """The seal is the last event of the trial chain: no link names it."""
    a = attack()
    a.store.run("DELETE FROM {events} WHERE {pos} = ?", sample.seal_position)

    code, report = a.verify("--witness", sample.witness)

    assert code == 5
    assert {"log", "witness"} <= kinds(report), report["failures"]
    assert report["seals"] == []
    if a.store.sqlite:  # and a hole in SQLite's log, which otherwise has none
        assert "deleted" in kinds(report)


def _heavier(data: dict) -> dict | None:
    if data.get("weight_kg") == 60:
        return {**data, "weight_kg": 66.0}
    return None


@pytest.mark.parametrize("digests", ["left alone", "recomputed"])
def test_a_rewritten_history_with_a_recomputed_seal(sample, attack, digests):
    """Every link and the seal's digest recomputed: the chain checks alone find nothing. The
    seal's signature and the witness catch it either way. Of the log's running digest and the
    account, exactly one catches it: `verify` recomputes the digest from the events, and the
    account checks the digests recorded since it last looked. An attacker must recompute the
    digests to pass the first, and must not to pass the second."""
    a = attack()
    a.store.rewrite(_heavier)
    if digests == "recomputed":
        a.store.refold_digests()

    code, report = a.verify()
    assert code == 5
    if digests == "recomputed":
        assert kinds(report) == {"seen"}, report["failures"]
        assert a.next_command().exit_code == 5  # anyone who saw it, at any command
    else:
        assert kinds(report) == {"log"}, report["failures"]
        assert a.next_command().exit_code == 0  # the account's check reads digests only

    code, report = a.verify("--trusted-key", sample.key + ".pub")
    assert code == 5
    assert "does not hold" in report["seals"][0]["problems"][0]

    code, report = a.verify("--witness", sample.witness)
    assert code == 5 and "witness" in kinds(report)


def test_a_reseal_signed_with_another_key_is_not_trusted(sample, attack, tmp_path):
    a = attack()
    forger = str(tmp_path / "forger.key")
    seal_keys.generate(forger, PASSPHRASE)
    sign = seal_keys.signer(forger, PASSPHRASE)

    def resign(data: dict) -> dict | None:
        changed = _heavier(data)
        if data.get("event_type", "").endswith(":Sealed"):
            return {**data, "signing_key": None, "signature": None}
        return changed

    a.store.rewrite(resign)
    # The forger signs the recomputed digest with a key of his own.
    position = sample.seal_position
    seal = orjson.loads(a.store.run("SELECT state FROM {events} WHERE {pos} = ?", position)[0][0])
    seal["signing_key"], seal["signature"] = sign(seal["digest"])
    a.store.set_state(position, canonical(seal))
    a.store.rewrite(lambda data: None)  # links after the seal again
    a.store.refold_digests()

    code, report = a.verify("--trusted-key", sample.key + ".pub")

    assert code == 5
    assert "which is not a trusted key" in report["seals"][0]["problems"][0]


# --- read models ------------------------------------------------------------------------------


@EXAMPLES
@given(data=st.data())
def test_a_forged_read_model_row_is_caught_by_the_read_model_check(sample, attack, data):
    subject = data.draw(st.sampled_from(SEALED_SUBJECTS + (LATE_SUBJECT,)), label="subject")
    column, value = data.draw(st.sampled_from([("status", "dead"), ("death", "2025-03-01"),
                                               ("basket", "IV"), ("withdrawn", "2025-02-02")]),
                              label="forged column")
    a = attack()
    a.store.run(f"UPDATE rm_patient_summary SET {column} = ? WHERE subject = ?", value, subject)

    code, report = a.verify()

    assert code == 5
    assert report["failures"] == []
    differences = report["read_models"]["differences"]
    assert [(d["table"], d["key"], d["column"]) for d in differences] == [
        ("rm_patient_summary", f"subject={subject}", column)]
    assert str(differences[0]["stored"]) == value


# --- the known limit ----------------------------------------------------------------------------


def test_forged_events_appended_after_the_last_seal_are_reported_as_not_yet_sealed(sample,
                                                                                   tmp_path):
    """No defence catches a careful forger who appends events after the last seal, before any
    account saw the ledger: the links are his, the log digest he extends, no seal covers the
    tail. `verify` does say how much no seal covers."""
    url = sample.copy()  # no account has seen this copy
    store = Store(url)
    store.drop_triggers()
    grant = next(orjson.loads(e[4]) for e in sample.events if e[3].endswith(":RoleGranted"))
    store.append(grant, user="u7", role="admin")
    store.refold_digests(extend=True)
    try:
        result = invoke(["audit", "verify", "--json", "--witness", sample.witness],
                        url=url, user="aud")
        report = json.loads(result.output)

        assert result.exit_code == 0, report
        assert report["not_yet_sealed"]["events"] == len(sample.events) - sample.seal_position + 1
        assert report["not_yet_sealed"]["last_seal"] == report["seals"][0]["entry"]
    finally:
        if not url.startswith("sqlite"):
            Attack.close(type("copy", (), {"url": url})())


def test_forged_events_appended_without_a_log_digest_are_caught(sample, attack):
    """A less careful forger who appends without recording the log's digest is named."""
    a = attack()
    grant = next(orjson.loads(e[4]) for e in sample.events if e[3].endswith(":RoleGranted"))
    a.store.append(grant, user="u7", role="admin")

    code, report = a.verify()

    assert code == 5 and kinds(report) == {"log"}, report["failures"]
