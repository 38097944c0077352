"""Tamper evidence: re-read the whole store, check every hash chain and every seal, and name each
modified, deleted, reordered or inserted event. Also: seal the ledger.

What is checked
---------------
Every event stores `prev_hash`, the SHA-256 of the stored bytes of the event before it in its
aggregate (`ledger.store.event_hash`). `verify` hashes the bytes exactly as stored, so an event
that no longer decodes is reported as modified, never as a crash. Per aggregate it rebuilds the
chain from the links themselves, not from the version column an attacker can rewrite:

- **modified**: the stored bytes do not hash to what the next event (or a seal) recorded for
  them, or they no longer decode, or their envelope contradicts the links around them;
- **deleted**: a version the chain needs is missing (a gap, or a chain shorter than a seal
  recorded); on SQLite also a hole in the notification log, whose ids are otherwise contiguous;
- **reordered**: an intact event sits at another version or log position than the chain says;
- **inserted**: an event no link or seal accounts for (a second event claiming a version, a
  forked branch, a copy of an event of another chain), or one stored among the events a seal
  covers without being covered by it.

What a seal covers
------------------
A seal (`audit seal`) first verifies the store, then records the head (aggregate id, version,
hash) of every chain: through the links each head vouches for every event before it. Those heads
are exactly the events stored before the seal event when no one writes concurrently; a concurrent
entry lands after them in the log. The digest is SHA-256 over the heads, their event count, and
the seal's own note, author, time and trial version (`domain.trial.seal_digest`), so it proves
that nothing covered changed, including the *last* event of a chain, which no later link
protects. Events recorded after the last seal are protected by the links alone: a forged event
appended to the end of a chain after the last seal, or the deletion of the newest events, can
only be caught against a digest handed out earlier (`audit verify --seal DIGEST`).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from m22bol.domain import commands as c
from m22bol.domain.decide import Vouched
from m22bol.domain.errors import IntegrityFailure
from m22bol.domain.events import EntryCorrected, Sealed, topic_of
from m22bol.domain.patient import patient_id
from m22bol.domain.trial import TRIAL_ID, seal_digest
from m22bol.ledger import log_digest
from m22bol.ledger.reading import Snapshot

if TYPE_CHECKING:
    from m22bol.ledger.seal_keys import Signer

KINDS = ("modified", "deleted", "reordered", "inserted", "seal", "log", "witness", "seen",
         "value")
PAGE = 1000

_HEX = re.compile(r"^[0-9a-f]{64}$")
# Subject ids as they appear in stored bytes (a registration's subject, an entry id), read even
# from bytes that no longer decode, so a damaged registration can still be named.
_SUBJECT_IN_BYTES = re.compile(rb'"(?:subject|entry)":"([A-Za-z0-9][A-Za-z0-9._-]{0,39})[#"]')


@dataclass(frozen=True)
class Finding:
    kind: str
    entry: str
    message: str
    aggregate: str | None = None
    version: int | None = None
    notification_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "entry": self.entry, "message": self.message,
                "aggregate": self.aggregate, "version": self.version,
                "notification_id": self.notification_id}


@dataclass
class SealCheck:
    entry: str
    digest: str
    event_count: int
    note: str
    sealed_at: str
    sealed_by: str
    problems: list[str] = field(default_factory=list)
    signing_key: str | None = None  # raw Ed25519 public key, hex
    signature: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def signed_by(self) -> str | None:
        return key_id(self.signing_key) if self.signing_key else None

    def as_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "digest": self.digest, "event_count": self.event_count,
                "note": self.note, "sealed_at": self.sealed_at, "sealed_by": self.sealed_by,
                "signed_by": self.signed_by, "ok": self.ok, "problems": list(self.problems)}


@dataclass
class Report:
    events: int
    chains: int
    findings: list[Finding]
    seals: list[SealCheck]
    # (aggregate id, version, hash) of the head of every chain as verified: what a seal records
    heads: list[tuple[str, int, str]]
    # entries stored after the last seal that verifies: protected by the links alone
    unsealed: int = 0
    last_seal: SealCheck | None = None

    @property
    def ok(self) -> bool:
        return not self.findings and all(s.ok for s in self.seals)

    def add(self, kind: str, entry: str, message: str) -> None:
        self.findings.append(Finding(kind, entry, message))

    @property
    def trial_intact(self) -> bool:
        """No finding touches the trial chain (protocol, grants, locks, seals)."""
        return not any(f.aggregate == str(TRIAL_ID) for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        last = self.last_seal
        return {"ok": self.ok, "events": self.events, "chains": self.chains,
                "failures": [f.as_dict() for f in self.findings],
                "seals": [s.as_dict() for s in self.seals],
                "not_yet_sealed": {"events": self.unsealed,
                                   "last_seal": last.entry if last else None,
                                   "last_seal_at": last.sealed_at if last else None}}


# --- reading the store ------------------------------------------------------------------------


@dataclass
class Row:
    """One stored event: where the store puts it (columns), what its bytes hash to, and what
    its bytes say about themselves (None when they no longer decode)."""

    nid: int
    aggregate: UUID
    version: int
    topic: str
    sha: str
    problem: str | None = None
    claim_id: UUID | None = None
    claim_version: int | None = None
    prev: str | None = None
    names: tuple[str, ...] = ()
    seal: Sealed | None = None

    @property
    def decoded(self) -> bool:
        return self.problem is None


def _event_classes() -> dict[str, type]:
    from m22bol.domain.events import event_types

    return event_types()


def read_rows(ledger, page: int | None = None) -> Iterator[Row]:
    """Every stored event in log order, streamed in pages, decoded defensively."""
    page = page or PAGE
    known = _event_classes()
    last = 0
    while True:
        batch = ledger.recorder.select_notifications(last, page, inclusive_of_start=False)
        for notification in batch:
            yield _row(ledger, notification, known)
        if len(batch) < page:
            return
        last = batch[-1].id


def _row(ledger, notification, known: dict[str, type]) -> Row:
    row = Row(nid=notification.id, aggregate=notification.originator_id,
              version=notification.originator_version, topic=notification.topic,
              sha=hashlib.sha256(notification.state).hexdigest(),
              names=tuple({m.decode() for m in _SUBJECT_IN_BYTES.findall(notification.state)}))
    # The topic is data an attacker may have written: never let it import an arbitrary module.
    if notification.topic not in known:
        row.problem = f"its type column names no known event ({notification.topic!r})"
        return row
    try:
        event = ledger.mapper.to_domain_event(notification)
    except Exception as exc:  # any bytes at all may be stored; verification must not crash
        row.problem = f"its stored bytes no longer decode ({type(exc).__name__})"
        return row
    row.claim_id, row.claim_version, row.prev = (event.originator_id, event.originator_version,
                                                 event.prev_hash)
    if isinstance(event, Sealed):
        row.seal = event
    return row


# --- verifying --------------------------------------------------------------------------------


def verify(ledger, *, seal: str | None = None, trusted_keys: list[str] | None = None,
           witness: str | None = None, progress: Progress | None = None) -> Report:
    """Check the whole store; with `seal`, also that it holds that sealed history intact; with
    `trusted_keys` (raw public keys), that a trusted key signed every seal; with `witness`, that
    every digest the witness file holds is still matched by a seal that verifies.

    One streaming pass checks an intact ledger in memory proportional to its chains, not its
    events. When that pass meets anything irregular, a second pass (`_thorough`) rebuilds every
    chain from its links to name each modified, deleted, reordered or inserted event."""
    stream = _Stream(ledger, progress)
    stream.run()
    report = stream.report() if stream.clean else _thorough(ledger)
    report.findings.extend(stream.log_findings)
    _stored_values(ledger, report, stream)
    _trial_snapshots(ledger, report)
    _signatures(report, trusted_keys)
    if seal is not None:
        wanted = seal.strip().lower().removeprefix("sha256:")
        if not any(s.digest == wanted for s in report.seals):
            report.add("seal", "-", f"this ledger holds no seal with digest {wanted}")
    if witness is not None:
        from m22bol.ledger import witness as witnesses

        for entry, message in witnesses.check(witness, report.seals):
            report.add("witness", entry, message)
    good = [check for check in report.seals if check.ok]
    report.last_seal = good[-1] if good else None
    report.unsealed = stream.after.get(report.last_seal.entry, stream.rows) if good else (
        stream.rows)
    return report


def _trial_snapshots(ledger, report: Report) -> None:
    """Each stored snapshot of the trial against a fold of the events it summarises: a
    forged one (a grant added, a lock lifted) would otherwise decide what commands may do."""
    from m22bol.ledger import trial_snapshots

    try:
        for entry, message in trial_snapshots.check(ledger, ledger._decoded):
            report.add("snapshot", entry, message)
    except ValueError:  # a trial event that does not decode: the chain's own finding
        pass


def key_id(public_hex: str) -> str:
    """A short name for a sealing key (`cryptography` is loaded only to check signatures)."""
    return "ed25519:" + hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


def _signatures(report: Report, trusted_keys: list[str] | None) -> None:
    if not any(check.signing_key for check in report.seals) and trusted_keys is None:
        return
    from m22bol.ledger import seal_keys

    for check in report.seals:
        if check.signing_key and not seal_keys.signature_holds(
                check.signing_key, check.signature or "", check.digest):
            check.problems.append(f"its signature by {check.signed_by} does not hold")
        elif trusted_keys is not None and check.signing_key not in trusted_keys:
            check.problems.append("not signed by a trusted key" if not check.signing_key else
                                  f"signed by {check.signed_by}, which is not a trusted key")


def _thorough(ledger) -> Report:
    """The whole store in memory, every chain rebuilt from its links: names each finding."""
    rows = list(read_rows(ledger))
    by_aggregate: dict[UUID, list[Row]] = defaultdict(list)
    for row in rows:
        by_aggregate[row.aggregate].append(row)
    names = _names(rows)
    seals = [r for r in by_aggregate.get(TRIAL_ID, []) if r.seal is not None
             and r.claim_id == TRIAL_ID and r.claim_version == r.version]
    distrusted: set[int] = {r.nid for r in seals if _seal_problem(r.seal)}
    # A seal is believed if its own digest holds; one whose event turns out not to belong to the
    # trial chain (forged, moved) is dropped and the chains are checked again without it.
    for _ in range(2):
        trusted = [r for r in seals if r.nid not in distrusted]
        audit = _Audit(names, by_aggregate, trusted, rows)
        audit.run()
        outcast = {r.nid for r in trusted if r.nid not in audit.on_spine}
        if not outcast:
            break
        distrusted |= outcast
    if ledger.url.startswith("sqlite"):
        audit.log_gaps()
    checks = audit.seal_checks(seals, distrusted)
    # A seal whose bytes no longer decode, or no longer say where it sits, is still a seal
    # the store no longer matches.
    sealed_topic, readable = topic_of(Sealed), {r.nid for r in seals}
    for row in by_aggregate.get(TRIAL_ID, []):
        if row.topic == sealed_topic and row.nid not in readable:
            entry = audit.label(TRIAL_ID, row.version)
            problem = row.problem or "its bytes no longer say where it belongs"
            checks.append(SealCheck(entry, "", 0, "", "", "", problems=[problem]))
    checks.sort(key=lambda check: int(check.entry.rpartition("#")[2]))
    return Report(events=len(rows), chains=len(by_aggregate), findings=audit.sorted_findings(),
                  seals=checks, heads=audit.heads())


class _Values:
    """Values the chain checks cannot see, gathered in the streaming pass: bytes that verify but
    hold a value today's rules refuse (written by an older version or a past bug; the read path
    decodes them, holds such a fact out of the walk and goes on). Each event's bytes are matched
    against its type's byte pattern (`stored_values.plainly_fine`), which passes only values
    today's rules accept; any other event is kept, to be decoded and checked in full
    afterwards. Only registrations are parsed, for the subject that names their chain."""

    def __init__(self, ledger):
        from m22bol.domain import stored_values
        from m22bol.domain.events import Registered

        self.decode = ledger.mapper.transcoder.decode  # reads a bare NaN an old writer left
        self.classes = _event_classes()
        self.plainly_fine = stored_values.plainly_fine
        # topic -> its byte pattern's test, made when the type is first met: compiling every
        # type's pattern costs more than checking 10,000 events
        self.fine: dict[str, Callable[[bytes], bool]] = {}
        self.registration = topic_of(Registered)
        self.names: dict[str, str] = {TRIAL_ID.hex: "trial"}  # aggregate (hex) -> subject
        self.found: list[tuple[int, str, int, str, bytes]] = []

    def see(self, position: int, aggregate: str, version: int, topic: str,
            state: bytes) -> None:
        fine = self.fine.get(topic)
        if fine is None:
            cls = self.classes.get(topic)
            if cls is None:
                return  # an unknown type is the chain checks' finding
            fine = self.fine[topic] = self.plainly_fine(cls) or _never_plainly_fine
        if topic == self.registration:
            self._name(aggregate, state)
        if not fine(state):
            self.found.append((position, aggregate, version, topic, state))

    def _name(self, aggregate: str, state: bytes) -> None:
        try:
            subject = self.decode(state).get("subject")
        except (ValueError, AttributeError):
            return  # bytes that are no JSON object: the chain checks' finding
        if isinstance(subject, str):
            self.names[aggregate] = subject


def _never_plainly_fine(state: bytes) -> bool:
    return False


def _stored_values(ledger, report: Report, stream: _Stream) -> None:
    """Each suspect value the streaming pass kept, and each correction stored that no longer
    applies, as a finding of kind `value` named by its entry and field (docs/audit.md). Only
    subjects with a correction can hold the latter (`stream.corrected`), so only they are
    loaded."""
    from eventsourcing.persistence import StoredEvent

    from m22bol.domain import stored_values
    from m22bol.domain.patient import project_patient

    # A chain the checks above found broken is named by them; what its replay shows is moot.
    broken = {f.aggregate for f in report.findings if f.aggregate}
    # A chain's last event is vouched for by no later link, only by the log digest (and a
    # seal): when the digest no longer folds, its odd values are no older version's doing.
    unvouched = any(f.kind == "log" for f in report.findings)
    values, named = stream.values, set()
    for position, aggregate, version, topic, state in values.found:
        originator = UUID(aggregate)
        if str(originator) in broken:
            continue
        try:
            event = ledger.mapper.to_domain_event(StoredEvent(
                originator_id=originator, originator_version=version, topic=topic, state=state))
        except Exception:  # noqa: BLE001 - an envelope that does not decode: the chain checks'
            continue
        entry = f"{values.names.get(aggregate, originator)}#{version}"
        head = stream.chains[aggregate][0] == version
        for _, why in stored_values.problems(event):
            kind, cause = ("modified", "and neither a later link nor the log digest vouches "
                           "for its bytes") if unvouched and head else (
                "value", "(stored by an older version or a past bug)")
            report.findings.append(Finding(kind, entry, f"{why} {cause}", aggregate=str(originator),
                                           version=version, notification_id=position))
            named.add(entry)
    for aggregate in sorted(UUID(a) for a in stream.corrected):
        if str(aggregate) in broken:
            continue
        try:
            patient = ledger.repository.get(aggregate, projector_func=project_patient)
        except Exception:  # noqa: BLE001 - the chain checks name what is wrong with it
            continue
        for entry, why in patient.stored_problems():
            if entry not in named:  # a held fact is named above, field by field
                report.add("value", entry, why)


def _names(rows: list[Row]) -> dict[UUID, str]:
    """Subject ids for patient aggregates. Any text may propose a name; only one that hashes to
    the aggregate id (patient ids are uuid5 of the subject) is believed."""
    aggregates = {row.aggregate for row in rows}
    names = {TRIAL_ID: "trial"}
    for candidate in {name for row in rows for name in row.names}:
        if (key := patient_id(candidate)) in aggregates:
            names.setdefault(key, candidate)
    return names


def _heads(seal: Sealed) -> dict[UUID, tuple[int, str]]:
    """The heads a seal lists; entries that are not aggregate ids (a damaged seal) are skipped,
    the digest check reports the damage."""
    heads = {}
    for aggregate, version, digest in seal.heads:
        try:
            heads[UUID(aggregate)] = (version, digest)
        except ValueError:
            continue
    return heads


def _seal_problem(seal: Sealed) -> str | None:
    if seal_digest(seal) != seal.digest:
        return "its digest no longer matches its own contents"
    if sum(v for _, v, _ in seal.heads) != seal.event_count:
        return "its event count disagrees with the chain heads it lists"
    trial = _heads(seal).get(TRIAL_ID)
    if trial and trial[0] == seal.originator_version - 1 and seal.prev_hash != trial[1]:
        return "its link to the trial chain disagrees with the trial head it lists"
    return None


def _longest_increasing(rows: list[Row], key) -> set[int]:
    """The nids of a longest subsequence of `rows` whose keys increase. Among equally long ones,
    prefer events already at their own rank (swapping #1 and #3 leaves #2 where it belongs)."""
    keys = [key(r) for r in rows]
    if all(a < b for a, b in zip(keys, keys[1:], strict=False)):
        return {r.nid for r in rows}
    rank = {k: i for i, k in enumerate(sorted(keys))}
    weight = [len(rows) + 1 + (rank[k] == i) for i, k in enumerate(keys)]
    best = list(weight)
    before: list[int | None] = [None] * len(rows)
    for i in range(len(rows)):
        for j in range(i):
            if keys[j] < keys[i] and best[j] + weight[i] > best[i]:
                best[i], before[i] = best[j] + weight[i], j
    kept, at = set(), max(range(len(rows)), key=best.__getitem__)
    while at is not None:
        kept.add(rows[at].nid)
        at = before[at]
    return kept


def _link_altered(recorded: str, actual: str) -> bool:
    """A changed event hashes to an unrelated digest (about 60 of 64 digits differ); a recorded
    link that is no digest at all, or differs in a handful of digits, was itself edited."""
    if not _HEX.match(recorded):
        return True
    return sum(a != b for a, b in zip(recorded, actual, strict=True)) <= 16


class _Audit:
    def __init__(self, names: dict[UUID, str], by_aggregate: dict[UUID, list[Row]],
                 seals: list[Row], rows: list[Row]):
        self.names = names
        self.by_aggregate = by_aggregate
        self.rows = rows
        self.seals = seals
        self.findings: dict[tuple, Finding] = {}
        self.flagged: set[int] = set()  # nids with a finding
        self.spines: dict[UUID, list[Row]] = {}
        self.on_spine: set[int] = set()
        # seal nid -> entries stored among the events it covers without being covered
        self.slipped: dict[int, list[str]] = defaultdict(list)
        # aggregate -> version -> [(hash, seal label)]
        self.anchors: dict[UUID, dict[int, list[tuple[str, str]]]] = defaultdict(dict)
        for s in seals:
            for aggregate, (version, digest) in _heads(s.seal).items():
                self.anchors[aggregate].setdefault(version, []).append(
                    (digest, self.label(TRIAL_ID, s.version)))

    def label(self, aggregate: UUID, version: int) -> str:
        return f"{self.names.get(aggregate, str(aggregate))}#{version}"

    def add(self, kind: str, entry: str, message: str, row: Row | None = None,
            aggregate: UUID | None = None, version: int | None = None) -> None:
        if row is not None:
            aggregate, version = row.aggregate, version or row.version
            self.flagged.add(row.nid)
        key = (kind, entry)
        if key in self.findings:
            old = self.findings[key]
            if message not in old.message:
                self.findings[key] = Finding(kind, entry, f"{old.message}; {message}",
                                             old.aggregate, old.version, old.notification_id)
            return
        self.findings[key] = Finding(kind, entry, message,
                                     str(aggregate) if aggregate else None, version,
                                     row.nid if row else None)

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings.values(), key=lambda f: (
            f.notification_id or 0, f.aggregate or "", f.version or 0, KINDS.index(f.kind)))

    def run(self) -> None:
        for aggregate, rows in self.by_aggregate.items():
            _Chain(self, aggregate, rows).check()
        for aggregate, versions in self.anchors.items():
            if aggregate not in self.by_aggregate:
                top = max(versions)
                for version, sources in versions.items():
                    self.add("deleted", self.label(aggregate, version),
                             f"the whole chain is gone; {sources[0][1]} recorded it up to "
                             f"#{top}", aggregate=aggregate, version=version)
        self._inserted_under_seals()
        for aggregate, spine in self.spines.items():
            self._log_order(aggregate, spine)

    def _inserted_under_seals(self) -> None:
        """Events a seal covers form a prefix of the log: anything stored among them that the
        seal does not cover was slipped in afterwards."""
        for s in self.seals:
            covered = self._covered(s.seal)
            if not covered:
                continue
            last = max(covered)
            for row in self.rows:
                if row.nid < last and row.nid not in covered and row is not s:
                    if row.nid in self.flagged:
                        continue  # already named; its finding breaks the seal
                    entry = self.label(row.aggregate, row.version)
                    self.slipped[s.nid].append(entry)
                    self.add("inserted", entry, f"stored among the events "
                             f"{self.label(TRIAL_ID, s.version)} seals, but not covered by it",
                             row)

    def _log_order(self, aggregate: UUID, spine: list[Row]) -> None:
        """An aggregate's events enter the log in version order; an intact event at another log
        position was moved. Checked after the seals, so an event slipped into a sealed stretch
        of the log is named as inserted, not as out of order."""
        kept = [n for n in spine if not any(
            self.findings.get(("inserted", self.label(aggregate, v))) for v in
            (n.version, n.claim_version))]
        # The fewest events whose moving explains the order: those off a longest run of
        # increasing log positions (one event moved far does not make all others suspect).
        in_order = _longest_increasing(kept, key=lambda r: r.nid)
        for place, node in enumerate(kept):
            if node.nid in in_order:
                continue
            later = next((n for n in kept[place + 1:] if n.nid < node.nid), None)
            where = (f"after {self.label(aggregate, later.claim_version)}" if later else
                     "before " + self.label(aggregate, next(
                         n for n in reversed(kept[:place]) if n.nid > node.nid).claim_version))
            self.add("reordered", self.label(aggregate, node.claim_version),
                     f"stored out of order in the notification log ({where})", node,
                     version=node.claim_version)

    def _covered(self, seal: Sealed) -> set[int]:
        covered = set()
        for aggregate, (version, _) in _heads(seal).items():
            for row in self.spines.get(aggregate, []):
                if row.claim_version <= version:
                    covered.add(row.nid)
        return covered

    def log_gaps(self) -> None:
        """SQLite numbers the log without holes; a hole is a deleted event (PostgreSQL sequences
        skip numbers on rolled-back writes, so there it proves nothing)."""
        nids = sorted(r.nid for r in self.rows)
        expected = 1
        for nid in nids:
            if nid > expected:
                span = f"{expected}" if nid == expected + 1 else f"{expected}-{nid - 1}"
                self.add("deleted", f"log#{span}",
                         f"the notification log has no event at position {span}")
            expected = nid + 1

    def seal_checks(self, seals: list[Row], distrusted: set[int]) -> list[SealCheck]:
        checks = []
        for s in seals:
            seal = s.seal
            entry = self.label(TRIAL_ID, s.version)
            check = SealCheck(entry, seal.digest, seal.event_count, seal.note,
                              seal.recorded_at.isoformat(), seal.actor,
                              signing_key=seal.signing_key, signature=seal.signature)
            if problem := _seal_problem(seal):
                check.problems.append(problem)
                self.add("modified", entry, f"seal {problem}", s)
            elif s.nid in distrusted:
                check.problems.append("its event is not part of the trial chain")
            heads = {a: v for a, (v, _) in _heads(seal).items()}
            covered = self._covered(seal)
            for f in self.findings.values():
                if f.entry == entry:
                    continue
                inside = f.notification_id in covered or (
                    f.aggregate and UUID(f.aggregate) in heads and f.version is not None
                    and f.version <= heads[UUID(f.aggregate)])
                if inside:
                    check.problems.append(f"{f.entry} {f.kind}")
            check.problems.extend(f"{slipped} inserted" for slipped in self.slipped[s.nid]
                                  if f"{slipped} inserted" not in check.problems)
            checks.append(check)
        return checks

    def heads(self) -> list[tuple[str, int, str]]:
        return sorted((str(aggregate), spine[-1].claim_version, spine[-1].sha)
                      for aggregate, spine in self.spines.items() if spine)


class _Chain:
    """One aggregate's stored events, put back in order by their links."""

    def __init__(self, audit: _Audit, aggregate: UUID, rows: list[Row]):
        self.audit = audit
        self.aggregate = aggregate
        self.rows = sorted(rows, key=lambda r: (r.version, r.nid))
        self.anchors = audit.anchors.get(aggregate, {})
        self.anchor_shas = {h for sources in self.anchors.values() for h, _ in sources}

    def label(self, version: int) -> str:
        return self.audit.label(self.aggregate, version)

    def flag(self, kind: str, row: Row, message: str, version: int | None = None) -> None:
        version = version or row.version
        self.audit.add(kind, self.label(version), message, row, version=version)

    def check(self) -> None:
        nodes = self._nodes()
        self.children: dict[str, list[Row]] = defaultdict(list)
        self.by_sha = {n.sha: n for n in nodes}
        for n in nodes:
            if n.prev is not None:
                self.children[n.prev].append(n)
        self._rank(nodes)
        spine = self._spine(nodes)
        self.audit.spines[self.aggregate] = spine
        self.audit.on_spine.update(r.nid for r in spine)
        self._gaps_and_links(spine)
        self._against_seals(spine)
        for n in nodes:
            if n.nid not in self.audit.on_spine:
                self._stray(n, spine)
        self._order(spine)

    def _nodes(self) -> list[Row]:
        """The events that can take part in the chain; the rest are modified or foreign."""
        seen: dict[str, Row] = {}
        candidates = []
        for row in self.rows:
            if not row.decoded:
                self.flag("modified", row, row.problem)
            elif row.claim_id != self.aggregate:
                copy = self._copy_elsewhere(row)
                if copy:
                    self.flag("inserted", row, f"a copy of {copy} stored in this chain")
                else:
                    self.flag("modified", row,
                              f"its bytes name another aggregate ({row.claim_id})")
            elif row.sha in seen:
                self.flag("inserted", row, "an exact copy of "
                          f"{self.label(seen[row.sha].claim_version)}")
            else:
                seen[row.sha] = row
                candidates.append(row)
        by_sha = {r.sha: r for r in candidates}
        nodes = []
        for row in candidates:
            parent = by_sha.get(row.prev) if row.prev else None
            if row.prev is None and row.claim_version != 1:
                self.flag("modified", row, "it links to nothing, yet is not the first event")
            elif row.prev is not None and row.claim_version == 1:
                self.flag("modified", row, "the first event of a chain carries a link")
            elif parent is not None and row.claim_version != parent.claim_version + 1:
                self.flag("modified", row, f"it records version {row.claim_version} but links "
                          f"to {self.label(parent.claim_version)}")
            else:
                nodes.append(row)
        return nodes

    def _copy_elsewhere(self, row: Row) -> str | None:
        for other in self.audit.by_aggregate.get(row.claim_id, []):
            if other.sha == row.sha and other is not row:
                return self.audit.label(other.aggregate, other.version)
        return None

    def _rank(self, nodes: list[Row]) -> None:
        """Depth of the chain hanging from each event, and whether a seal vouches for it: at a
        fork the authentic branch is the sealed one, else the longer one, else the older."""
        self.depth: dict[int, int] = {}
        self.anchored: dict[int, bool] = {}
        for n in sorted(nodes, key=lambda r: -r.claim_version):
            kids = self.children.get(n.sha, [])
            self.depth[n.nid] = 1 + max((self.depth[k.nid] for k in kids), default=0)
            self.anchored[n.nid] = n.sha in self.anchor_shas or any(
                self.anchored[k.nid] for k in kids)

    def _preference(self, n: Row) -> tuple:
        return (not self.anchored[n.nid], -self.depth[n.nid], n.nid)

    def _spine(self, nodes: list[Row]) -> list[Row]:
        starts = [n for n in nodes if n.prev is None or n.prev not in self.by_sha]
        spine: list[Row] = []
        while True:
            reach = spine[-1].claim_version if spine else 0
            ahead = [s for s in starts if s.claim_version > reach]
            if not ahead:
                return spine
            node = min(ahead, key=lambda s: (s.claim_version, *self._preference(s)))
            while node is not None:
                spine.append(node)
                kids = self.children.get(node.sha, [])
                node = min(kids, key=self._preference) if kids else None

    def _gaps_and_links(self, spine: list[Row]) -> None:
        before = None
        for node in spine:
            expected = before.claim_version + 1 if before else 1
            if node.claim_version > expected:
                self._missing(range(expected, node.claim_version),
                              f"the chain jumps to {self.label(node.claim_version)}")
            elif before is not None and node.prev != before.sha:
                # Adjacent but unlinked: either the earlier event's bytes changed, or the link
                # the later one records was edited. Only the second leaves the link near the
                # real digest (or a non-digest); a seal vouching for the earlier event also
                # settles it.
                if _link_altered(node.prev, before.sha) or before.sha in self.anchor_shas:
                    self.flag("modified", node, "the link it records to "
                              f"{self.label(before.claim_version)} was altered",
                              node.claim_version)
                else:
                    self.flag("modified", before, "its stored bytes no longer hash to what "
                              f"{self.label(node.claim_version)} recorded for it",
                              before.claim_version)
            before = node

    def _missing(self, versions, why: str) -> None:
        """Versions the chain needs but cannot find: a row at that place that was reported as
        modified is the changed event; otherwise the event was deleted."""
        at = {r.version: r for r in self.rows if r.nid in self.audit.flagged}
        for version in versions:
            if version in at:
                continue
            self.audit.add("deleted", self.label(version), f"missing: {why}",
                           aggregate=self.aggregate, version=version)

    def _against_seals(self, spine: list[Row]) -> None:
        at = {n.claim_version: n for n in spine}
        top = spine[-1].claim_version if spine else 0
        for version, sources in sorted(self.anchors.items()):
            node = at.get(version)
            for digest, seal in sources:
                if node is None and version > top:
                    self._missing(range(top + 1, version + 1),
                                  f"{seal} recorded the chain up to #{version}")
                elif node is not None and node.sha != digest:
                    self.flag("modified", node, f"its stored bytes do not hash to what {seal} "
                              "recorded for it", version)

    def _stray(self, node: Row, spine: list[Row]) -> None:
        at = {n.claim_version: n for n in spine}
        rival = at.get(node.claim_version)
        parent = self.by_sha.get(node.prev) if node.prev else None
        if rival is not None and parent is not None:
            why = (f"it claims {self.label(node.claim_version)} after "
                   f"{self.label(parent.claim_version)}, but the chain continues through "
                   "another event")
        elif rival is not None:
            why = f"a second event claiming {self.label(node.claim_version)}"
        else:
            why = "no link or seal accounts for it"
        self.flag("inserted", node, why)

    def _order(self, spine: list[Row]) -> None:
        """An intact event stored at another version than its place in the chain. Shifts caused
        by an insertion or deletion are already explained."""
        shifted = any(f.aggregate == str(self.aggregate) and f.kind in ("inserted", "deleted")
                      for f in self.audit.findings.values())
        by_column = sorted(spine, key=lambda r: (r.version, r.nid))
        for place, node in enumerate(spine):
            if by_column[place] is not node or (node.version != node.claim_version
                                                and not shifted):
                self.flag("reordered", node, f"stored as version {node.version}",
                          node.claim_version)


# --- the streaming pass -----------------------------------------------------------------------

# Called with the number of events read since the last call (a terminal's progress bar).
Progress = Callable[[int], None]
STREAM_PAGE = 10_000  # events between two calls of `progress`


class _Stream:
    """One pass over the log: every event hashed and linked to the one before it in its chain;
    each seal checked against the chain heads at its place in the log; the log's running digest
    recomputed and compared with every digest the ledger recorded. Keeps one head per chain.
    Anything irregular makes it `clean = False`, and `verify` then names the findings with the
    thorough pass; the running digest's findings it names itself."""

    def __init__(self, ledger, progress: Progress | None):
        self.ledger = ledger
        self.progress = progress
        self.known = set(_event_classes())
        self.sealed_topic = topic_of(Sealed)
        self.trial = TRIAL_ID.hex
        # aggregate (32 hex digits) -> (version, SHA-256 hex as bytes, position, topic) of its
        # last event
        self.chains: dict[str, tuple] = {}
        self.clean = True
        self.rows = 0
        self.after: dict[str, int] = {}  # seal entry -> events stored after it
        self.seals: list[SealCheck] = []
        self.log_findings: list[Finding] = []
        self.corrected: set[str] = set()  # aggregates holding a correction (32 hex digits)
        self.values = _Values(ledger)

    def run(self) -> None:
        with Snapshot(self.ledger) as snapshot:
            self._run(snapshot)

    def _run(self, snapshot: Snapshot) -> None:
        # The loop is written out flat, with locals: it runs once per stored event, and every
        # attribute look-up or call saved here is a few percent of the whole verify.
        recorded = snapshot.stream("SELECT position, digest FROM {digests} ORDER BY position",
                                   name="m22bol_verify_digests")
        due = _digest_row(next(recorded, None))
        newest = 0
        folding = log_digest.Folding()
        fold = folding.update
        last = rows = 0
        clean = True
        gapless = self.ledger.url.startswith("sqlite")
        chains, sha256 = self.chains, hashlib.sha256
        kinds = {t: b'"event_type":"%s"' % t.encode() for t in self.known}
        sealed, trial, progress = self.sealed_topic, self.trial, self.progress
        correction, corrected = topic_of(EntryCorrected), self.corrected
        see_values = self.values.see
        for position, aggregate, version, topic, state in snapshot.stream(
                "SELECT {pos}, originator_id, originator_version, topic, state FROM {events} "
                "ORDER BY {pos}"):
            if type(aggregate) is not str:
                aggregate = aggregate.hex
            raw = sha256(state).digest()
            fold(f"{position}\x00{aggregate}\x00{version}\x00{topic}\x00".encode() + raw)
            rows += 1
            if gapless and position != last + 1:
                clean = False
            last = position
            while due is not None and due[0] <= position:
                folding = self._compare(due, position, folding)
                fold, newest = folding.update, due[0]
                due = _digest_row(next(recorded, None))
            head = chains.get(aggregate)
            if clean:
                # Says what its columns say and links to its chain's head, read as byte
                # patterns of the canonical form (a JSON parse would halve the rate).
                # The aggregate an event names and its version need a look only at the start
                # of a chain: the ledger links an event only to the one before it in its own
                # chain, and a chain's last event is decoded in full below.
                if head is None:
                    ok = (version == 1 and b'"prev_hash":null' in state
                          and b'"originator_id":"%s"' % str(UUID(aggregate)).encode() in state)
                else:
                    ok = version == head[0] + 1 and b'"prev_hash":"%s"' % head[1] in state
                kind = kinds.get(topic)
                if not (ok and kind and kind in state):
                    clean = False
            chains[aggregate] = (version, raw.hex().encode(), position, topic)
            if topic == correction:
                corrected.add(aggregate)
            see_values(position, aggregate, version, topic, state)
            if topic == sealed and aggregate == trial:
                self.after[f"trial#{version}"] = rows  # turned round at the end
                if clean:
                    self.rows = rows
                    clean = self._seal(state, position)
            if progress and rows % STREAM_PAGE == 0:
                progress(STREAM_PAGE)
        self.rows, self.clean = rows, clean
        if progress:
            progress(rows % STREAM_PAGE)
        while due is not None:
            self.log_findings.append(Finding(
                "log", f"log#{due[0]}", f"the ledger recorded a digest of its log at position "
                f"{due[0]}, but its log ends at {last}: events were deleted"))
            due = _digest_row(next(recorded, None))
        if newest and last > newest:
            # Every write records the digest of what it wrote, in its own transaction.
            self.log_findings.append(Finding(
                "log", f"log#{newest + 1}-{last}", f"events at log positions {newest + 1}-{last} "
                f"were stored without the digest every entry records: written outside the "
                "ledger"))
        self.after = {entry: rows - upto for entry, upto in self.after.items()}
        if self.clean:
            self._decode_heads(snapshot)

    def _compare(self, due: tuple[int, bytes], position: int,
                 folding: log_digest.Folding) -> log_digest.Folding:
        """Compare with a recorded digest, then go on from the recorded one, so that one change
        is named once and a second, later one is named too."""
        at, recorded = due
        if at != position:
            self.log_findings.append(Finding(
                "log", f"log#{at}", f"the ledger recorded a digest of its log at position {at}, "
                "which holds no event now: events were deleted"))
            return folding
        digest = folding.digest()
        if recorded != digest:
            self.log_findings.append(Finding(
                "log", f"log#{at}", f"the events up to log position {at} no longer fold into "
                "the running digest recorded there: the log was changed at or before it"))
        return log_digest.Folding(recorded or digest)

    def _seal(self, state: bytes, position: int) -> bool:
        """A seal must list exactly the chain heads stored before it (a concurrent entry that
        landed between a seal's reading and its writing sends the ledger to the thorough
        pass, which knows that case)."""
        try:
            event = self._decode(position, TRIAL_ID, state)
        except Exception:
            return False
        seal = event
        heads = {UUID(a).hex: (v, h) for a, v, h in seal.heads} if all(
            _is_uuid(a) for a, _, _ in seal.heads) else None
        before = {a: (head[0], head[1].decode()) for a, head in self.chains.items()}
        before[self.trial] = (seal.originator_version - 1, seal.prev_hash)
        if _seal_problem(seal) or heads != before:
            return False
        self.seals.append(SealCheck(
            f"trial#{seal.originator_version}", seal.digest, seal.event_count, seal.note,
            seal.recorded_at.isoformat(), seal.actor, signing_key=seal.signing_key,
            signature=seal.signature))
        return True

    def _decode(self, position: int, aggregate: UUID, state: bytes):
        """The event in full (pydantic), as the read side would decode it."""
        from eventsourcing.persistence import StoredEvent

        head = self.chains[aggregate.hex]
        return self.ledger.mapper.to_domain_event(StoredEvent(
            originator_id=aggregate, originator_version=head[0], topic=head[3], state=state))

    def _decode_heads(self, snapshot: Snapshot) -> None:
        """Each chain's last event is vouched for by no later link: it must decode in full,
        and name its chain and version. (Every other event hashes to what the event after it
        recorded: it is, byte for byte, what the ledger wrote.) Read again by position."""
        heads = {head[2]: aggregate for aggregate, head in self.chains.items()}
        positions = sorted(heads)
        for start in range(0, len(positions), 500):
            page = positions[start:start + 500]
            marks = ", ".join(["{p}"] * len(page))
            for position, state in snapshot.rows(
                    f"SELECT {{pos}}, state FROM {{events}} WHERE {{pos}} IN ({marks})",
                    tuple(page)):
                aggregate = UUID(heads[position])
                try:
                    event = self._decode(position, aggregate, bytes(state))
                except Exception:
                    self.clean = False
                    return
                if (event.originator_id, event.originator_version) != (
                        aggregate, self.chains[aggregate.hex][0]):
                    self.clean = False
                    return

    def report(self) -> Report:
        heads = sorted((str(UUID(a)), head[0], head[1].decode())
                       for a, head in self.chains.items())
        return Report(events=self.rows, chains=len(self.chains), findings=[],
                      seals=self.seals, heads=heads)


def _digest_row(row: tuple | None) -> tuple[int, bytes] | None:
    if row is None:
        return None
    try:
        return row[0], bytes.fromhex(row[1])
    except (ValueError, TypeError):
        return row[0], b""  # an unreadable digest matches nothing


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


# --- sealing ----------------------------------------------------------------------------------


def seal(ledger, note: str, actor: str, *, sign: Signer | None = None) -> dict[str, Any]:
    """Verify, then record one digest over every chain head, signed when `sign` is given.
    Refused on a store that does not verify: a seal must never vouch for tampered data."""
    command = _seal_command(note)
    report = verify(ledger)
    if not report.ok:
        first = report.findings[0] if report.findings else None
        detail = f": {first.kind} {first.entry}" if first else ""
        raise IntegrityFailure(f"the ledger does not verify{detail}; run `m22bol audit verify`."
                               " Nothing was sealed.", rule="seal.unverified")
    output = ledger.execute(command, actor,
                            seal=Vouched(seal_heads=tuple(report.heads), seal_signer=sign))
    made = ledger.require_trial().seals[-1]
    return {"entry": f"trial#{made.originator_version}", **output,
            "sealed_at": made.recorded_at.isoformat(),
            "signed_by": key_id(made.signing_key) if made.signing_key else None}


def _seal_command(note: str) -> c.Seal:
    try:
        return c.Seal.model_validate({"note": note})
    except ValidationError as exc:
        raise c.describe_validation_error(exc) from None
