"""The read models checked against the events: every row recomputed and compared.

`status` and `patient` answer from the read-model tables, so a forged row (a subject's status,
a death date) would make them lie while every hash chain verifies. `audit verify` therefore
replays each subject as of its projection's position, derives its rows with the same functions
the runner uses (`projections.rows`), and names each row that differs: table, key, column,
stored value and replayed value. Rows of a subject no event knows are named too.

The ledger cannot do this itself (it never imports the read side); the CLI's `audit verify`
puts both reports together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import Any
from uuid import UUID

import orjson

from m22bol.domain.patient import project_patient
from m22bol.domain.trial import TRIAL_ID, project_trial
from m22bol.projections import catalog, rows, runner, tables
from m22bol.projections.recorder import Sql

CHUNK = 200  # subjects compared per round of reads


@dataclass(frozen=True)
class Difference:
    table: str
    key: str
    column: str
    stored: Any
    replayed: Any

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "key": self.key, "column": self.column,
                "stored": self.stored, "replayed": self.replayed}


def _plain(value: Any) -> Any:
    """One form for a value read back from either database and for one just derived. JSON
    documents are compared by what they hold: the order of keys in a stored document follows
    how the event was built (in the entry's process, or decoded later), not what it says."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _shown(value: Any) -> Any:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if isinstance(
        value, dict | list) else value


def _key(table: tables.Table, row: dict[str, Any]) -> str:
    return ", ".join(f"{name}={row.get(name)}" for name in table.primary_key)


def _compare(table: tables.Table, stored: list[dict], replayed: list[dict]) -> list[Difference]:
    found: list[Difference] = []
    have = {_key(table, r): r for r in stored}
    want = {_key(table, r): r for r in replayed}
    for key in sorted(have.keys() | want.keys()):
        old, new = have.get(key), want.get(key)
        if old is None or new is None:
            found.append(Difference(table.name, key, "(row)", "present" if old else "absent",
                                    "present" if new else "absent"))
            continue
        for column in table.column_names:
            a, b = _plain(old.get(column)), _plain(new.get(column))
            if a != b:
                found.append(Difference(table.name, key, column, _shown(a), _shown(b)))
    return found


def read_models(ledger) -> list[Difference]:
    """Every read-model row that differs from a replay of the events up to its projection's
    position."""
    models = runner.read_models(ledger)
    positions = models.positions()
    differences: list[Difference] = []
    by_position: dict[int, list[str]] = {}
    for name, position in positions.items():
        by_position.setdefault(position, []).append(name)
    with models.store.reading() as conn:
        for position, names in sorted(by_position.items()):
            differences += _at(ledger, conn, position, names)
    return differences


def _select(conn: Sql, table: tables.Table, subjects: list[str] | None = None) -> list[dict]:
    if subjects is None:
        return conn.rows(f"SELECT * FROM {table.name}")
    return conn.rows(f"SELECT * FROM {table.name} WHERE subject IN "
                     f"({', '.join('?' * len(subjects))})", subjects)


def _day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _at(ledger, conn: Sql, position: int, names: list[str]) -> list[Difference]:
    seen = runner.scan(ledger, 0, position) if position else runner.Seen()
    trial_version = seen.versions.get(TRIAL_ID)
    trial = (ledger.repository.get(TRIAL_ID, version=trial_version,
                                   projector_func=project_trial) if trial_version else None)
    differences: list[Difference] = []
    if "trial" in names:
        replayed = rows.trial_rows(trial) if trial else {}
        for table in tables.tables_of("trial"):
            differences += _compare(table, _select(conn, table), replayed.get(table.name, []))
    subject_projections = [n for n in names if n != "trial"]
    if not subject_projections:
        return differences
    summary = tables.BY_NAME[catalog.PATIENT_SUMMARY]
    # A subject is derived as of the day its rows were made (`derived_on`), so a row made
    # yesterday is compared with yesterday's derivation.
    derived_on = {r["subject"]: _day(r["derived_on"]) for r in conn.rows(
        f"SELECT subject, derived_on FROM {summary.name}")}
    aggregates = sorted((a for a in seen.versions if a != TRIAL_ID), key=str)
    known: set[str] = set()
    it = iter(aggregates)
    while chunk := list(islice(it, CHUNK)):
        derived = [_derive(ledger, a, seen.versions[a], trial, derived_on) for a in chunk]
        subjects = [d.subject for d in derived]
        known.update(subjects)
        for name in subject_projections:
            replayed: rows.Rows = {}
            for d in derived:
                for table_name, new in rows.SUBJECT_ROWS[name](d).items():
                    replayed.setdefault(table_name, []).extend(new)
            for table in tables.tables_of(name):
                stored = _select(conn, table, subjects)
                differences += _compare(table, stored, replayed.get(table.name, []))
    for name in subject_projections:
        for table in tables.tables_of(name):
            strays = {r["subject"] for r in conn.rows(
                f"SELECT DISTINCT subject FROM {table.name}")} - known
            for subject in sorted(strays):
                stored = _select(conn, table, [subject])
                differences += _compare(table, stored, [])
    return differences


def _derive(ledger, aggregate: UUID, version: int, trial, derived_on: dict) -> rows.Derived:
    patient = ledger.repository.get(aggregate, version=version, projector_func=project_patient)
    today = derived_on.get(patient.subject) or ledger.clock().date()
    return rows.derive_subject(patient, trial.protocol, today)
