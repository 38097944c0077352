"""The witness file: every seal digest, appended to a file kept outside the ledger (another
disk, a share), one JSON line each. `audit verify --witness FILE` checks that the ledger still
holds, unbroken, every seal the file names; a history rewritten and resealed after a seal was
witnessed fails there, whoever recomputed the seal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from m22bol.domain.errors import BadInput

FIELDS = ("digest", "entry", "event_count", "sealed_at")


def append(path: str, seal: dict[str, Any], ledger: str) -> None:
    """Append one seal, flushed to the disk before the command reports success."""
    line = json.dumps({"ledger": ledger, **{k: seal[k] for k in FIELDS}}, sort_keys=True)
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise BadInput(f"witness: cannot append to {path}: {exc.strerror}",
                       field="witness") from None


def read(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"witness: cannot read {path}: {exc}", field="witness") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("digest"), str):
                raise ValueError("no digest")
        except ValueError:
            raise BadInput(f"witness: {path} line {number} is not a witnessed seal",
                           field="witness") from None
        yield number, record


def check(path: str, seals: Iterable) -> list[tuple[str, str]]:
    """(entry, message) for every witnessed digest the ledger no longer matches."""
    by_digest = {s.digest: s for s in seals}
    problems = []
    for number, record in read(path):
        digest = record["digest"]
        what = (f"witness line {number}: seal {record.get('entry', '?')} of "
                f"{record.get('sealed_at', '?')} (digest {digest})")
        found = by_digest.get(digest)
        if found is None:
            problems.append((record.get("entry", "-"), f"{what} is not in this ledger"))
        elif not found.ok:
            problems.append((found.entry, f"{what} no longer verifies"))
    return problems
