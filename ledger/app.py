"""TrialLedger: the one write path. Check who may do it, load the aggregate, decide, save.

`execute` applies one command; `execute_all` applies many (a JSON Lines import) in one
transaction, all or nothing, in bounded memory: decided events go to the store page by page
inside that transaction (`ledger.paging`) and the subjects decided are kept in a cache of
bounded size, read back through the same transaction when needed again. A version clash with
a concurrent writer is retried a bounded number of times, then refused with exit 6. What
happens after a save (keeping read models current) is whatever the caller hands in as
`after_save`: the ledger knows no reader.
"""

from __future__ import annotations

import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, date, datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Recording
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

from m22bol.domain import clarifications
from m22bol.domain import commands as c
from m22bol.domain.decide import (
    Context,
    Decision,
    Vouched,
    decide_subject,
    decide_trial,
)
from m22bol.domain.errors import (
    BadInput,
    ConcurrencyConflict,
    IntegrityFailure,
    LedgerError,
    NotPermitted,
)
from m22bol.domain.events import (
    EditChecksRun,
    EntryRetracted,
    Event,
    QueryNumbered,
    QueryOpened,
    Registered,
    Signed,
    topic_of,
)
from m22bol.domain.patient import Patient, patient_id, project_patient
from m22bol.domain.protocol import bundled_protocol_text
from m22bol.domain.timeline import walked_state
from m22bol.domain.trial import TRIAL_ID, Trial, project_trial
from m22bol.ledger import access, paging, signatures, trial_snapshots
from m22bol.ledger.store import (
    APP_NAME,
    append_only_statements,
    environment_problem,
    event_hash,
    is_contention,
    reach,
    store_env,
)

MAX_ATTEMPTS = 8
# PostgreSQL's SQLSTATE for a missing privilege, also raised by the actor check of `db setup`.
INSUFFICIENT_PRIVILEGE = "42501"


# Called after each committed save with the ledger, the recording of the last event written (a
# list of one: it holds the transaction's last log position) and the aggregates still in memory.
AfterSave = Callable[["TrialLedger", list, list], None]
# Given the ledger and a day, the subjects whose timed edit checks may fire by that day, or None
# when that cannot be told cheaply (then the day's sweep loads every subject): the read side's
# `projections.due.due_subjects`, passed in since the ledger knows no read model.
DueSubjects = Callable[["TrialLedger", date], "list[str] | None"]
# Subjects a unit of work keeps in memory between pages; one not among the most recently used
# is read back (through the open transaction) when a later line names it again. A subject of
# the demo's length costs about 0.12 MB here (measured: bench_import.py --memory).
CACHED_SUBJECTS = 200


class TrialLedger(Application):
    name = APP_NAME

    def __init__(self, url: str, clock: Callable[[], datetime] | None = None,
                 after_save: Iterable[AfterSave] = (), *, create_tables: bool = False,
                 due_subjects: DueSubjects | None = None):
        self.url = url
        self.clock = clock or (lambda: datetime.now(UTC))
        self.after_save = list(after_save)
        self.due_subjects = due_subjects
        # Resources others keep for this ledger (a read-model connection), closed with it.
        self.on_close: list[Callable[[], None]] = []
        # Opening a SQLite file creates it; a ledger that never got an event is removed again
        # on close, so a query (or a refused entry) on a ledger that does not exist leaves none.
        self._new_file = _new_sqlite_file(url)
        self._trial_snapshots = None  # made on first use (ledger.trial_snapshots)
        self._may_store_snapshots: bool | None = None  # asked once (trial_snapshots.may_store)
        try:
            reach(url)  # a server that is down or a database that is missing says so at once
            super().__init__(env=store_env(url, create_tables=create_tables))
            if url.startswith("sqlite"):
                # A SQLite ledger is made by its first command; a PostgreSQL one by `db setup`,
                # run once by the owner, so that ordinary logins never need to run DDL.
                self._make_append_only()
            if create_tables:  # `db setup`: ordinary PostgreSQL logins may not create it
                trial_snapshots.recorder(self)
        except Exception as error:
            self._remove_if_new()
            raise environment_problem(url, error) or error from None

    def _make_append_only(self) -> None:
        statements = append_only_statements(self.url)
        if not statements:  # a memory store has no datastore to put triggers in
            return
        with self.recorder.datastore.transaction(commit=True) as cursor:
            for statement in statements:
                cursor.execute(statement)

    # --- reading aggregates -------------------------------------------------------------------

    def trial(self, *, whole: bool = False) -> Trial | None:
        """The trial as it stands: from its latest snapshot and the events after it
        (`ledger.trial_snapshots`), so that its load does not grow with the chain. `whole`
        folds every event instead, for what needs the chain itself (`events`, every seal):
        the past (`--known-at`) and the exports."""
        if not whole:
            try:
                trial = trial_snapshots.load(self, self._decoded)
            except ValueError as error:
                raise undecodable("the trial", error) from None
            if trial is not None:
                return trial
        return self._aggregate(TRIAL_ID, "the trial", project_trial)

    def _decoded(self, stored) -> Iterator[Event]:
        return (self.mapper.to_domain_event(s) for s in stored)

    def require_trial(self, *, whole: bool = False) -> Trial:
        trial = self.trial(whole=whole)
        if trial is None:
            raise BadInput("ledger: not initialised; run `m22bol init` first", field="ledger")
        return trial

    def patient(self, subject: str, *, version: int | None = None) -> Patient | None:
        return self._aggregate(patient_id(subject), f"subject {subject}", project_patient,
                               version=version)

    def _aggregate(self, aggregate_id: UUID, what: str, projector, **kwargs):
        try:
            return self.repository.get(aggregate_id, projector_func=projector, **kwargs)
        except AggregateNotFoundError:
            return None
        except ValueError as error:
            raise undecodable(what, error) from None

    def require_patient(self, subject: str) -> Patient:
        patient = self.patient(subject)
        if patient is None:
            raise BadInput(f"subject: {subject} is not registered", field="subject")
        return patient

    def subjects(self) -> list[str]:
        """Every registered subject, read from the registrations alone."""
        return [self.mapper.to_domain_event(n).subject
                for n in self._notifications([topic_of(Registered)])]

    def registrations(self) -> Iterator[tuple[UUID, Callable[[], str]]]:
        """Every registration's subject aggregate in log order, read without decoding; the
        subject's name is decoded only when asked for."""
        for n in self._notifications([topic_of(Registered)]):
            yield n.originator_id, (lambda n=n: self.mapper.to_domain_event(n).subject)

    def stored_events(self, batch: int = 2000) -> Iterator[tuple[int, Event]]:
        """Every event in notification order, decoded, without building aggregates."""
        for n in self._notifications(batch=batch):
            yield n.id, self.mapper.to_domain_event(n)

    def _notifications(self, topics: list[str] | None = None,
                       batch: int = 2000) -> Iterator[Notification]:
        """The stored events (of these topics, else all) in log order, a page at a time."""
        last = 0
        while True:
            page = self.recorder.select_notifications(last, batch, topics=topics or (),
                                                      inclusive_of_start=False)
            yield from page
            if len(page) < batch:
                return
            last = page[-1].id

    # --- the write path -----------------------------------------------------------------------

    def execute(self, command: c.Command, actor: str, *, seal: Vouched | None = None) -> dict:
        return self.execute_all([command], actor, seal=seal)[0]

    def record_failure(self, actor: str, user: str, account: str, attempt: str,
                       message: str) -> None:
        """Put a refused authentication on the trial chain. Best effort: a ledger that cannot
        be written (a read-only file, a reader login) still refuses, it only cannot record."""
        command = c.RecordAuthenticationFailure(user=user, account=account, attempt=attempt,
                                                message=message)
        try:
            self.execute(command, actor)
        except (LedgerError, PersistenceError):
            pass

    def record_success(self, user: str) -> None:
        """A password accepted after failures: the consecutive count starts again."""
        try:
            self.execute(c.RecordAuthenticationSuccess(user=user), user)
        except (LedgerError, PersistenceError):
            pass

    def save(self, *events: Event | None) -> list[Recording]:
        """Record events through the ledger's mapper and recorder, in one transaction, as
        one page of `execute_all`'s writer does (one insert statement, the log digest); the
        recording of the last event (its log position), as the after-save hooks get it.

        The library's `save` first asks of every object whether it is a domain event, a
        `runtime_checkable` Protocol check that cost ~70 us an event, 40 % of writing one,
        and its event store makes a frozen `StoredEvent`, `Notification` and `Recording` per
        event, another ~14 us (bench/README.md); the ledger's aggregates are plain values that
        are never saved, so only events come here, written as rows."""
        with paging.PagedWriter(self) as writer:
            writer.write([event for event in events if event is not None])
        return writer.last_page

    def execute_all(
        self, commands: Collection[c.Command], actor: str, *,
        progress: Callable[[int], None] | None = None, seal: Vouched | None = None,
        keep: Callable[[dict], object] | None = None, page: int | None = None,
    ) -> list:
        """Apply the commands in order, in one transaction; the outputs, one per command (or
        what `keep` keeps of each: an import of a million lines keeps only the entry ids).
        `commands` is iterated once per attempt, so it may read them lazily from a file.
        `seal` is what the verification before a `Seal` vouches for: the chain heads it covers
        and, for a signed seal, the signer. `page`: decided events per page written (tests)."""
        numbered = len(commands) > 1
        for attempt in range(MAX_ATTEMPTS):
            batch = _Batch(self, actor, self.clock(), seal)
            batch.daily_checks()
            batch.pending.extend(batch._added)
            batch._added = []
            outputs: list = []
            try:
                with paging.PagedWriter(self, page or paging.PAGE) as writer:
                    batch.writer = writer
                    for i, command in _progressing(commands, progress):
                        output = batch.apply(command, line=i + 1 if numbered else None)
                        outputs.append(keep(output) if keep else output)
                        if writer.page and len(batch.pending) >= writer.page:
                            writer.write(batch.take_pending())
                            batch.evict()
                    writer.write(batch.take_pending())
            except signatures.PasswordRefused as refused:
                # Rolled back first: recording the failure is a write of its own.
                self.record_failure(actor, refused.user, self.account, refused.attempt,
                                    refused.message)
                raise
            except ProgrammingError as error:
                if getattr(error.__cause__, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
                    # The database's own refusal: a reader login, or another person's name.
                    raise NotPermitted(f"the database refused the write: {error}".strip(),
                                       rule="database.privilege") from None
                raise
            except (IntegrityError, OperationalError) as error:
                # Only someone else writing the same aggregate first (or holding the lock) is
                # worth deciding again; a full disk or a read-only file stays so.
                if not (isinstance(error, IntegrityError) or is_contention(error)):
                    raise environment_problem(self.url, error) or error from None
                time.sleep(random.uniform(0, 0.02 * 2**attempt))
                progress = None
                continue
            if batch.evicted:
                # The subjects still in memory spare the read models a walk each; but after an
                # import that outgrew the cache, the catch-up derives nearly every subject from
                # the store anyway. Dropped first, their memory serves the catch-up: the peak is
                # then the larger of the two, not their sum (bench/README.md, "Writing").
                batch._patients.clear()
            for hook in self.after_save:
                hook(self, writer.last_page, [batch._trial, *batch._patients.values()])
            self._snapshot_trial(batch._trial)
            return outputs
        raise ConcurrencyConflict(
            f"a concurrent write kept conflicting after {MAX_ATTEMPTS} attempts; nothing written",
            rule="concurrency",
        )

    def _snapshot_trial(self, decided: Trial | None) -> None:
        """After a commit that left the trial `EVERY` events past its snapshot: store a new
        one, of the trial as read back from the store (what verify will fold), not as held.
        A login that may not store one (a PostgreSQL writer) does not read the trial back."""
        if decided is None or decided.version - decided.base_version < trial_snapshots.EVERY \
                or not trial_snapshots.may_store(self):
            return
        stored = self.trial()
        if stored is not None:
            trial_snapshots.take(self, stored)

    @property
    def account(self) -> str:
        """Who the store itself authenticated: the database session user on PostgreSQL, the
        operating-system account running this process on SQLite."""
        from m22bol.ledger import identity

        return identity.account_of(self)

    def close(self) -> None:
        while self.on_close:
            self.on_close.pop()()
        empty = self._new_file and not self.recorder.max_notification_id()
        super().close()
        if empty:
            self._remove_if_new()
        self._new_file = None  # closed once: the library closes again when collected

    def _remove_if_new(self) -> None:
        if self._new_file:
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(self._new_file + suffix):
                    os.remove(self._new_file + suffix)


def undecodable(what: str, error: ValueError) -> IntegrityFailure:
    """Stored bytes that no longer decode (or name another event type) were altered outside
    the ledger: an integrity failure, not a bug."""
    return IntegrityFailure(f"the stored events of {what} no longer decode "
                            f"({type(error).__name__}); run `m22bol audit verify`",
                            rule="integrity.decode")


def _new_sqlite_file(url: str) -> str | None:
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1]
    return None if os.path.exists(path) or path == ":memory:" else path


def _progressing(commands: Iterable[c.Command], progress) -> Iterator[tuple[int, c.Command]]:
    for i, command in enumerate(commands):
        yield i, command
        if progress:
            progress(1)


class _Batch:
    """A unit of work: aggregates read once, changed in memory, saved together."""

    def __init__(self, ledger: TrialLedger, actor: str, now: datetime,
                 seal: Vouched | None = None):
        self.ledger = ledger
        self.ctx = Context(actor=actor, now=now)
        self.seal = seal
        self.pending: list[Event] = []
        self._added: list[Event] = []
        self.swept: list[str] = []  # the queries the day's time-based checks raised
        self._trial: Trial | None = ledger.trial()
        # Least recently used first; trimmed to CACHED_SUBJECTS after each page written.
        self._patients: OrderedDict[UUID, Patient | None] = OrderedDict()
        self.writer: paging.PagedWriter | None = None  # set by execute_all
        self.evicted = 0  # subjects forgotten to bound memory (`evict`)

    def apply(self, command: c.Command, *, line: int | None = None) -> dict:
        try:
            decision = self._decide(command)
        except LedgerError as error:
            if line is not None:
                error.line = line
                error.message = f"line {line}: {error.message}"
                error.args = (error.message,)
            raise
        self.pending.extend(decision.events)
        # Events the ledger adds on its own (query numbers, edit-check queries) follow the
        # command's own, so each chain is saved in its order.
        self.pending.extend(self._added)
        self._added = []
        return decision.output

    def _decide(self, command: c.Command) -> Decision:
        if isinstance(command, c.Init):
            decision = decide_trial(command, self._trial, self.ctx, self._vouch(command))
            self._trial = project_trial(None, self._chain(decision, None))
            return decision
        trial = self.ledger.require_trial() if self._trial is None else self._trial
        if isinstance(command, c.RefreshQueries):
            access.check(trial, self.ctx.actor, command.name)
            return self._refresh(trial)
        if isinstance(command, (c.QueryOpen, c.QueryAnswer, c.QueryClose, c.QueryReopen,
                                c.VerifySource)):
            return self._query_step(command, trial)
        if isinstance(command, c.SubjectCommand):
            patient = self._patient(command.subject)
            site = command.site if isinstance(command, c.Register) else (
                patient.site if patient else None)
            access.check(trial, self.ctx.actor, command.name, site=site)
            access.check_unlocked(trial, command.subject)
            decision = decide_subject(command, patient, trial.protocol, self.ctx,
                                      self._vouch(command, trial, patient))
            patient = project_patient(patient, self._chain(decision, patient))
            if decision.walked is not None:
                # Kept on the patient, so that the next command on it resumes this walk and
                # the read models reuse it; dropped with the patient.
                patient.keep_walk(decision.walked)
            self._patients[patient_id(command.subject)] = patient
            self._checked(trial, patient, decision)
            return decision
        access.check_command(trial, self.ctx.actor, command)
        decision = decide_trial(command, trial, self.ctx, self._vouch(command, trial))
        self._trial = project_trial(trial, self._chain(decision, trial))
        return decision

    def _vouch(self, command: c.Command, trial: Trial | None = None,
               patient: Patient | None = None) -> Vouched:
        """What the domain needs from outside it: a file read, a store verified, a password
        checked. Asked only once the actor may run the command."""
        if isinstance(command, (c.Init, c.AmendProtocol)):
            return Vouched(protocol_text=_protocol_text(command))
        if isinstance(command, c.Seal):
            return self.seal or Vouched()
        assert trial is not None
        return signatures.vouch(command, trial, self.ctx.actor, patient)

    # --- queries and source data verification (docs/queries.md) ----------------------------

    def _query_step(self, command: c.Command, trial: Trial) -> Decision:
        """A person's query step or verification, on the subject's chain. Closing is the one
        step a locked subject still takes, so a database lock can close what is resolved."""
        if isinstance(command, c.SubjectCommand):
            subject = command.subject
        elif (subject := trial.queries.get(command.query_id)) is None:
            raise BadInput(f"query_id: {command.query_id} does not exist", field="query_id")
        patient = self._patient(subject)
        if patient is None:
            raise BadInput(f"subject: {subject} is not registered", field="subject")
        access.check(trial, self.ctx.actor, command.name, site=patient.site)
        if not isinstance(command, c.QueryClose):
            access.check_unlocked(trial, subject)
        query_id = self._number(trial, subject) if isinstance(command, c.QueryOpen) else None
        event, output = clarifications.decide(
            command, patient, self._envelope(patient, self.ctx.actor), query_id)
        decision = Decision([event], output)
        self._patients[patient.id] = project_patient(patient, self._chain(decision, patient))
        return decision

    def _checked(self, trial: Trial, patient: Patient, decision: Decision) -> None:
        """After an accepted subject command: a retraction closes the queries on its entry,
        and the edit checks raise the queries they find, attributed to the system."""
        follow: list[Event] = []
        last = decision.events[-1]
        if isinstance(last, EntryRetracted):
            follow += clarifications.closed_by_retraction(
                patient, last, self._envelope(patient, clarifications.SYSTEM))
            patient = self._extend(patient, follow)
        if not isinstance(decision.events[-1], Signed):  # a signature covers the head it signed
            follow += self._raise_checks(trial, patient, state=decision.state)
        if follow:
            decision.output["queries_raised"] = [
                ev.query_id for ev in follow if isinstance(ev, QueryOpened)]

    def _raise_checks(self, trial: Trial, patient: Patient, *, timed: bool = False,
                      state=None) -> list[Event]:
        """Open the queries the edit checks find; `state` is the subject as the decision just
        walked it (the same timeline), else it is walked here."""
        if state is None:
            state = walked_state(patient, trial.protocol, self.ctx.today)
        raised: list[Event] = []
        for finding in clarifications.edit_checks(patient, state, self.ctx.today, timed=timed):
            event = QueryOpened(
                **self._envelope(patient, clarifications.SYSTEM),
                query_id=self._number(trial, patient.subject), entry=finding.entry,
                field=clarifications.RULES[finding.rule], text=finding.text, rule=finding.rule)
            raised.append(event)
            patient = self._extend(patient, [event])
        return raised

    def _refresh(self, trial: Trial) -> Decision:
        """`queries --refresh`: the edit checks, timed ones too, on every subject not locked."""
        return Decision([], {"queries_raised": self.swept + self._sweep(trial, everyone=True)})

    def daily_checks(self) -> None:
        """The first command of a day runs the time-based edit checks on every subject, so a
        check is raised by whatever command runs on or after the day it falls due."""
        trial = self._trial
        if trial is None or trial.checks_day is None or trial.checks_day >= self.ctx.today:
            return
        self.swept = self._sweep(trial)
        current = self._trial or trial
        ran = Decision([EditChecksRun(**self._envelope(current, clarifications.SYSTEM),
                                      day=self.ctx.today)])
        self._trial = project_trial(current, self._chain(ran, current))
        self._added.extend(ran.events)

    def _sweep(self, trial: Trial, *, everyone: bool = False) -> list[str]:
        """The timed edit checks on the subjects that may be due today: those the read models
        name (`DueSubjects`), or `everyone` (also when the read models cannot say). What the
        read models are trusted with, and what checks them: docs/decisions.md."""
        raised: list[str] = []
        if trial.locked:
            return raised
        due = None
        if not everyone and self.ledger.due_subjects is not None:
            due = self.ledger.due_subjects(self.ledger, self.ctx.today)
        for subject in self.ledger.subjects() if due is None else due:
            patient = self._patient(subject)
            if patient is None or subject in trial.locked_subjects:
                continue
            events = self._raise_checks(self._trial or trial, patient, timed=True)
            raised += [ev.query_id for ev in events if isinstance(ev, QueryOpened)]
        return raised

    def _number(self, trial: Trial, subject: str) -> str:
        """The next query id, recorded on the trial chain with the subject it belongs to."""
        current = self._trial or trial
        query_id = f"Q-{len(current.queries) + 1}"
        numbered = Decision([QueryNumbered(**self._envelope(current, self.ctx.actor),
                                           query_id=query_id, subject=subject)])
        self._trial = project_trial(current, self._chain(numbered, current))
        self._added.extend(numbered.events)
        return query_id

    def _envelope(self, aggregate: Patient | Trial, actor: str) -> dict:
        """The envelope of the next event of a subject or of the trial, as the ledger acts."""
        return {"originator_id": aggregate.id, "originator_version": aggregate.version + 1,
                "recorded_at": self.ctx.now, "actor": actor}

    def _extend(self, patient: Patient, events: list[Event]) -> Patient:
        """Chain events the ledger adds on its own onto the subject, one after another."""
        for event in events:
            linked = self._chain(Decision([event.model_copy(
                update={"originator_version": patient.version + 1})]), patient)
            patient = project_patient(patient, linked)
            self._added.extend(linked)
        self._patients[patient.id] = patient
        return patient

    @staticmethod
    def _chain(decision: Decision, aggregate) -> list[Event]:
        """Link each new event to the one before it in its aggregate (the hash chain); the
        decision then carries the linked events, which are what gets saved."""
        if aggregate is None:
            head = None
        elif aggregate.events:
            head = event_hash(aggregate.events[-1])
        else:  # a trial resumed from a snapshot with nothing after it
            head = getattr(aggregate, "base_hash", None)
        chained = []
        for event in decision.events:
            if head is not None:
                event = event.model_copy(update={"prev_hash": head})
            chained.append(event)
            head = event_hash(event)
        decision.events = chained
        return chained

    def take_pending(self) -> list[Event]:
        """The events decided since the last page, in the order they are to be written."""
        taken, self.pending = self.pending, []
        return taken

    def evict(self) -> None:
        """Forget the least recently used subjects beyond CACHED_SUBJECTS (their events and
        whatever is derived from them go together). Called only after a page is written, so
        every event of a forgotten subject is in the store's open transaction."""
        while len(self._patients) > CACHED_SUBJECTS:
            self._patients.popitem(last=False)
            self.evicted += 1

    def _patient(self, subject: str) -> Patient | None:
        key = patient_id(subject)
        if key in self._patients:
            self._patients.move_to_end(key)
        elif self.writer is not None and self.writer.open:
            # Pages of this transaction may hold its events: read through it, not past it.
            try:
                events = self.writer.events_of(key)
            except ValueError as error:
                raise undecodable(f"subject {subject}", error) from None
            self._patients[key] = project_patient(None, events) if events else None
        else:
            self._patients[key] = self.ledger.patient(subject)
        return self._patients[key]


def _protocol_text(command: c.Init | c.AmendProtocol) -> str:
    """The protocol file a command names, read here so the domain stays free of I/O."""
    if isinstance(command, c.AmendProtocol):
        return read_text_file(command.file, "file")
    if command.protocol is None:
        return bundled_protocol_text()
    return read_text_file(command.protocol, "protocol")


def read_text_file(path: str, field: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{field}: cannot read {path}: {exc}", field=field) from None
