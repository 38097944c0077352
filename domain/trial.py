"""The Trial aggregate: protocol versions, people and their roles, locks, seals."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID

from m22bol.domain.canonical import canonical
from m22bol.domain.events import (
    AuthenticationFailed,
    AuthenticationSucceeded,
    EditChecksRun,
    Event,
    LedgerLocked,
    LedgerUnlocked,
    PasswordSet,
    ProtocolAmended,
    QueryNumbered,
    RoleGranted,
    RoleRevoked,
    Sealed,
    TrialInitialised,
)
from m22bol.domain.ids import TRIAL_ID as TRIAL_ID  # re-exported: its home is ids
from m22bol.domain.protocol import Protocol, parse_protocol

# Consecutive failed authentications (passwords and signatures) that lock a user out until an
# admin resets the password (spec: audit, "People, identity").
LOCKOUT_AFTER = 5


def seal_digest(seal: Sealed) -> str:
    """SHA-256 over what a seal vouches for: the head (id, version, hash) of every chain, the
    number of events those heads cover, and the seal's own note, author, time and place in the
    trial chain, so that a changed note or a re-dated seal fails like a changed event.

    Its link (`prev_hash`) is left out because the ledger sets it after the decision; the trial
    head it links to is among the heads.
    """
    body = {
        "event_count": seal.event_count,
        "heads": [list(head) for head in seal.heads],
        "note": seal.note,
        "sealed_at": seal.model_dump(mode="json")["recorded_at"],
        "sealed_by": seal.actor,
        "trial_version": seal.originator_version,
    }
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass(frozen=True)
class Grant:
    user: str
    role: str
    site: str | None = None


@dataclass
class Trial:
    id: UUID
    name: str
    # The events folded into this object: every event of the chain, or, for a trial resumed
    # from a snapshot (`from_summary`), only those after the snapshot's `base_version`.
    events: list[Event] = field(default_factory=list)
    base_version: int = 0
    base_hash: str | None = None  # the hash of the event at base_version (its chain head)
    # (version, digest, text) of every protocol registered, oldest first
    protocol_texts: list[tuple[str, str, str]] = field(default_factory=list)
    grants: set[Grant] = field(default_factory=set)
    locked: bool = False
    locked_subjects: set[str] = field(default_factory=set)
    password_hashes: dict[str, str] = field(default_factory=dict)
    seals: list[Sealed] = field(default_factory=list)
    queries: dict[str, str] = field(default_factory=dict)  # query id -> subject
    checks_day: date | None = None  # the last day the time-based edit checks ran
    # Failed authentications per user since their last success or password (re)set.
    failures: dict[str, int] = field(default_factory=dict)
    synthetic: bool = False
    _protocol: Protocol | None = None

    @property
    def version(self) -> int:
        return self.base_version + len(self.events)

    @property
    def whole(self) -> bool:
        """Folded from the first event: `events` and `seals` are the chain's, not a tail."""
        return self.base_version == 0

    @property
    def protocol(self) -> Protocol:
        """The protocol in force: the latest version registered."""
        if self._protocol is None:
            version, digest, text = self.protocol_texts[-1]
            self._protocol = parse_protocol(text, source=f"protocol {version}")
        return self._protocol

    def roles_of(self, user: str) -> set[Grant]:
        return {g for g in self.grants if g.user == user}

    def locked_out(self, user: str) -> bool:
        return self.failures.get(user, 0) >= LOCKOUT_AFTER

    def admins(self) -> set[str]:
        return {g.user for g in self.grants if g.role == "admin"}


def summary(trial: Trial) -> dict:
    """Everything the trial's state is, as JSON values, in one canonical order: what a
    snapshot stores and what `audit verify` compares with a fold of the events. Of the seals
    only the last is kept, without the heads it lists (one per chain: they would make the
    snapshot grow with the subjects; `audit verify` reads them from the stored seal). The
    present needs no more; the past (`--known-at`, exports) folds the whole chain."""
    return {
        "name": trial.name,
        "synthetic": trial.synthetic,
        "protocol_texts": [list(p) for p in trial.protocol_texts],
        "grants": sorted([g.user, g.role, g.site] for g in trial.grants),
        "locked": trial.locked,
        "locked_subjects": sorted(trial.locked_subjects),
        "password_hashes": dict(sorted(trial.password_hashes.items())),
        "failures": dict(sorted(trial.failures.items())),
        "last_seal": _without_heads(trial.seals[-1]) if trial.seals else None,
        "queries": trial.queries,  # in numbering order, as folded
        "checks_day": trial.checks_day.isoformat() if trial.checks_day else None,
    }


def _without_heads(seal: Sealed) -> dict:
    state = seal.model_dump(mode="json")
    state["heads"] = []
    return state


def from_summary(trial_id: UUID, state: dict, version: int, head_hash: str) -> Trial:
    """The trial as of `version`, from its `summary`; the events after it fold on top."""
    return Trial(
        id=trial_id, name=state["name"], synthetic=state["synthetic"],
        base_version=version, base_hash=head_hash,
        protocol_texts=[tuple(p) for p in state["protocol_texts"]],
        grants={Grant(*g) for g in state["grants"]},
        locked=state["locked"], locked_subjects=set(state["locked_subjects"]),
        password_hashes=dict(state["password_hashes"]), failures=dict(state["failures"]),
        seals=[Sealed.model_validate(state["last_seal"])] if state["last_seal"] else [],
        queries=dict(state["queries"]),
        checks_day=date.fromisoformat(state["checks_day"]) if state["checks_day"] else None,
    )


def project_trial(trial: Trial | None, events: Iterable[Event]) -> Trial | None:
    for event in events:
        if trial is None:
            assert isinstance(event, TrialInitialised)
            trial = Trial(id=event.originator_id, name=event.trial,
                          checks_day=event.recorded_at.date())
        trial.events.append(event)
        match event:
            case TrialInitialised() | ProtocolAmended():
                trial.protocol_texts.append(
                    (event.protocol_version, event.protocol_digest, event.protocol_text)
                )
                trial._protocol = None
                if isinstance(event, TrialInitialised):
                    trial.grants.add(Grant(event.admin, "admin"))
                    trial.synthetic = event.synthetic
            case RoleGranted():
                trial.grants.add(Grant(event.user, event.role, event.site))
            case RoleRevoked():
                trial.grants.discard(Grant(event.user, event.role, event.site))
            case LedgerLocked(subject=None):
                trial.locked = True
            case LedgerUnlocked(subject=None):
                trial.locked = False
            case LedgerLocked():
                trial.locked_subjects.add(event.subject)
            case LedgerUnlocked():
                trial.locked_subjects.discard(event.subject)
            case PasswordSet():
                trial.password_hashes[event.user] = event.password_hash
                trial.failures.pop(event.user, None)
            case AuthenticationFailed():
                trial.failures[event.user] = trial.failures.get(event.user, 0) + 1
            case AuthenticationSucceeded():
                trial.failures.pop(event.user, None)
            case Sealed():
                trial.seals.append(event)
            case QueryNumbered():
                trial.queries[event.query_id] = event.subject
            case EditChecksRun():
                trial.checks_day = event.day
    return trial
