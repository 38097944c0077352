"""What no seal covers yet: the entries recorded after the last seal, for `status`, the report
and `audit verify`. Apart from `ledger.integrity` so that a query loads no more than it reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from m22bol.domain.trial import TRIAL_ID
from m22bol.ledger import log_digest
from m22bol.ledger.store import events_table, log_position


def unsealed(ledger, known_at: datetime | None = None) -> dict[str, Any]:
    """How many entries no seal covers yet (those recorded after the last seal) and when that
    seal was made, for `status` and the report; as known at `known_at` when given. The present
    costs two indexed reads; the past reads the entries after the seal. (`verify` counts the
    same after checking the seal.)"""
    trial = ledger.trial(whole=known_at is not None)  # the present needs the last seal only
    seals = [s for s in (trial.seals if trial else [])
             if known_at is None or s.recorded_at <= known_at]
    last = seals[-1] if seals else None
    sqlite = ledger.url.startswith("sqlite")
    table, column = events_table(ledger.url), log_position(ledger.url)
    after = 0
    if last is not None:
        found = log_digest.query(
            ledger, f"SELECT {column} FROM {table} WHERE originator_id = {{p}} AND "
            "originator_version = {p}", (TRIAL_ID.hex if sqlite else TRIAL_ID,
                                        last.originator_version))
        after = found[0][0] if found else 0
    if known_at is None:
        count = log_digest.query(
            ledger, f"SELECT count(*) FROM {table} WHERE {column} > {{p}}", (after,))[0][0]
    else:
        count = sum(1 for (state,) in log_digest.query(
            ledger, f"SELECT state FROM {table} WHERE {column} > {{p}}", (after,))
            if datetime.fromisoformat(ledger.mapper.transcoder.decode(state)["recorded_at"])
            <= known_at)
    return {"events": count,
            "last_seal": f"trial#{last.originator_version}" if last else None,
            "last_seal_at": last.recorded_at.isoformat() if last else None}


def unsealed_text(unsealed: dict[str, Any]) -> str:
    if unsealed["last_seal"] is None:
        return (f"not yet sealed: all {unsealed['events']} entries (no seal); they are "
                "protected by the hash-chain links only")
    return (f"not yet sealed: {unsealed['events']} entries recorded after the last seal "
            f"({unsealed['last_seal']}, {unsealed['last_seal_at']}); they are protected by the "
            "hash-chain links only")
