"""Every account remembers what it saw: per ledger and per operating-system account, the log
position and running digest (`ledger.log_digest`) of the history its last command saw.

On the next command the ledger must still hold exactly that history: the digest recorded at
that position must be the one remembered, and the events added since must fold, from the
remembered digest, into the digest recorded at the newest position. Both cost a few indexed
reads plus the events added since, never the whole ledger. A rewritten or truncated history is
an integrity failure (exit 5) naming the position, for the next command of anyone who saw it.

The state lives in `$XDG_STATE_HOME/m22bol/seen/` (default `~/.local/state/m22bol/seen/`), one
small JSON file per ledger. A failed check leaves the file as it was, so every later command
keeps failing until the ledger holds that history again (restored from a backup) or someone
deliberately removes the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from m22bol.domain.errors import IntegrityFailure
from m22bol.ledger import log_digest


def state_folder() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "m22bol" / "seen"


def ledger_key(url: str) -> str:
    """The ledger as its place, never its credentials: a SQLite file's real path, or a
    PostgreSQL server and database."""
    if url.startswith("sqlite"):
        return "sqlite:///" + os.path.realpath(url.split("///", 1)[1])
    parts = urlsplit(url)
    return f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"


@dataclass
class Seen:
    position: int
    digest: str
    seen_at: str


class Account:
    """This OS account's memory of one ledger."""

    def __init__(self, url: str, folder: Path | None = None):
        self.key = ledger_key(url)
        self.path = (folder or state_folder()) / (
            hashlib.sha256(self.key.encode()).hexdigest()[:32] + ".json")

    def load(self) -> Seen | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Seen(int(data["position"]), str(data["digest"]), str(data["seen_at"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IntegrityFailure(f"the state this account keeps for the ledger ({self.path}) "
                                   f"is unreadable ({type(exc).__name__})",
                                   rule="integrity.seen") from None

    def store(self, position: int, digest: bytes) -> None:
        """Write atomically; an account that cannot write its state (a read-only home) still
        runs its commands, it only remembers nothing new."""
        document = {"ledger": self.key, "position": position, "digest": digest.hex(),
                    "seen_at": datetime.now(UTC).isoformat(timespec="seconds")}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(document), encoding="utf-8")
            os.replace(partial, self.path)
        except OSError:
            return

    def check(self, ledger) -> tuple[int, bytes] | None:
        """Raise IntegrityFailure unless the ledger still holds what this account saw; the
        position and digest of the newest row it holds now."""
        seen = self.load()
        if seen is None:
            return advance(ledger, None)
        recorded = log_digest.recorded(ledger, seen.position)
        if recorded is None or recorded.hex() != seen.digest:
            what = "no longer holds" if recorded is None else "holds another history up to"
            raise IntegrityFailure(
                f"the ledger {what} log position {seen.position}, which this account saw on "
                f"{seen.seen_at}: its history was rewritten or truncated; run `m22bol audit "
                f"verify`. (Only if this ledger was replaced on purpose, remove {self.path}.)",
                rule="integrity.seen")
        return advance(ledger, (seen.position, recorded))


def advance(ledger, since: tuple[int, bytes] | None) -> tuple[int, bytes] | None:
    """Check the events stored after `since` against every digest the ledger recorded after
    it; the newest (position, digest). An account's first look takes the newest row as it is:
    it remembers from there on."""
    if since is None:
        rows = log_digest.recorded_after(ledger, log_digest.newest(ledger) - 1)
        return rows[-1] if rows else None
    rows = log_digest.recorded_after(ledger, since[0])
    if not rows:
        return since
    position, digest = since
    events = log_digest.events_between(ledger, position, rows[-1][0])
    for at, recorded in rows:
        last, folded = log_digest.fold_rows(
            digest, _until(events, at))
        if last != at:
            raise IntegrityFailure(
                f"the ledger recorded its log up to position {at}, but holds no event there: "
                "events were deleted; run `m22bol audit verify`", rule="integrity.seen")
        if folded != recorded:
            raise IntegrityFailure(
                f"the events in log positions {position + 1}-{at} no longer fold into the "
                f"digest the ledger recorded at {at}; run `m22bol audit verify`",
                rule="integrity.seen")
        position, digest = at, recorded
    return position, digest


def _until(events, at: int):
    for row in events:
        yield row
        if row[0] >= at:
            return


def watch(ledger, folder: Path | None = None) -> None:
    """Check now; remember, when the ledger is closed, what this command left it holding."""
    account = Account(ledger.url, folder)
    checked = account.check(ledger)

    def remember() -> None:
        try:
            newest = advance(ledger, checked)
        except IntegrityFailure:
            return  # the next command reports it; never remember a history that fails
        if newest is not None:
            account.store(*newest)

    ledger.on_close.append(remember)
