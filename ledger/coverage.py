"""What no seal covers yet: the entries recorded after the last seal, for `status`, the report
and `audit verify`. Apart from `ledger.integrity` so that a query loads no more than it reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from m22bol.domain.ids import TRIAL_ID
from m22bol.ledger import log_digest
from m22bol.ledger.places import events_table, log_position


def unsealed(ledger, known_at: datetime | None = None) -> dict[str, Any]:
    """How many entries no seal covers yet (those recorded after the last seal) and when that
    seal was made, for `status` and the report; as known at `known_at` when given. The present
    costs two indexed reads; the past reads the entries after the seal. (`verify` counts the
    same after checking the seal.)"""
    trial = ledger.trial(whole=known_at is not None)  # the present needs the last seal only
    seals = [s for s in (trial.seals if trial else [])
             if known_at is None or s.recorded_at <= known_at]
    last = seals[-1] if seals else None
    seal = None if last is None else (last.originator_version, last.recorded_at.isoformat())
    if known_at is None:
        return unsealed_now(ledger, seal)
    table, column = events_table(ledger.url), log_position(ledger.url)
    count = sum(1 for (state,) in log_digest.query(
        ledger, f"SELECT state FROM {table} WHERE {column} > {{p}}",
        (_position(ledger, seal),))
        if datetime.fromisoformat(ledger.mapper.transcoder.decode(state)["recorded_at"])
        <= known_at)
    return _document(count, seal)


def unsealed_now(ledger, seal: tuple[int, str] | None) -> dict[str, Any]:
    """The present, given the last seal as (trial version, ISO time it was made) or None:
    two indexed reads. `ledger` needs only `url` and the store's connection, so a query that
    opens no write side (`ledger.readonly`) asks the same."""
    table, column = events_table(ledger.url), log_position(ledger.url)
    after = _position(ledger, seal)
    if ledger.url.startswith("sqlite"):
        # SQLite gives a new row the largest rowid + 1 and the append-only triggers refuse
        # deletes, so the positions after the seal have no gaps: a difference of two indexed
        # reads, where counting scanned every event since the seal (0.15 s of CPU at 1M
        # events). PostgreSQL's sequence skips the ids of rolled-back inserts: counted there.
        head = log_digest.query(ledger, f"SELECT max({column}) FROM {table}")[0][0] or 0
        return _document(max(head - after, 0), seal)
    count = log_digest.query(ledger, f"SELECT count(*) FROM {table} WHERE {column} > {{p}}",
                             (after,))[0][0]
    return _document(count, seal)


def _position(ledger, seal: tuple[int, str] | None) -> int:
    """The log position of the seal's event (0 without a seal)."""
    if seal is None:
        return 0
    sqlite = ledger.url.startswith("sqlite")
    table, column = events_table(ledger.url), log_position(ledger.url)
    found = log_digest.query(
        ledger, f"SELECT {column} FROM {table} WHERE originator_id = {{p}} AND "
        "originator_version = {p}", (TRIAL_ID.hex if sqlite else TRIAL_ID, seal[0]))
    return found[0][0] if found else 0


def _document(count: int, seal: tuple[int, str] | None) -> dict[str, Any]:
    return {"events": count,
            "last_seal": f"trial#{seal[0]}" if seal else None,
            "last_seal_at": seal[1] if seal else None}


def unsealed_text(unsealed: dict[str, Any]) -> str:
    if unsealed["last_seal"] is None:
        return (f"not yet sealed: all {unsealed['events']} entries (no seal); they are "
                "protected by the hash-chain links only")
    return (f"not yet sealed: {unsealed['events']} entries recorded after the last seal "
            f"({unsealed['last_seal']}, {unsealed['last_seal_at']}); they are protected by the "
            "hash-chain links only")
