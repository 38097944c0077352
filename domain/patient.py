"""The Patient aggregate: a subject's timeline of facts, as entered, corrected and retracted.

The aggregate holds every event; the *effective* timeline applies corrections and drops
retractions. Every derived value comes from pure functions of that timeline (`domain.timeline`),
so nothing derived can disagree with the facts after a correction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pydantic import ValidationError

from m22bol.domain.errors import BadInput
from m22bol.domain.events import EntryCorrected, EntryRetracted, Event, Fact, Registered
from m22bol.domain.ids import patient_id as patient_id  # re-exported: its home is ids

if TYPE_CHECKING:
    from m22bol.domain.protocol import Protocol
    from m22bol.domain.timeline import State


_T = TypeVar("_T")


def entry_id(subject: str, version: int) -> str:
    return f"{subject}#{version}"


@dataclass
class Patient:
    id: UUID
    subject: str
    events: list[Event] = field(default_factory=list)
    # The walk of the timeline as of `walked_version`, before the finishers
    # (`domain.timeline.walk`): kept in memory with the aggregate so that the next fact that
    # comes last is decided by extending it. Never stored; a stale one is never used.
    walked: State | None = field(default=None, repr=False, compare=False)
    walked_version: int = field(default=0, repr=False, compare=False)
    # The effective timeline folded from `events[:_folded]`: every command asks for it, so
    # only the events appended since are folded (the events are only ever appended to).
    _facts: dict[str, Fact] = field(default_factory=dict, repr=False, compare=False)
    _held: set[str] = field(default_factory=set, repr=False, compare=False)
    _problems: list[tuple[str, str]] = field(default_factory=list, repr=False, compare=False)
    _folded: int = field(default=0, repr=False, compare=False)
    # The same timeline's live facts by type, in entry order: the edit checks look at one
    # kind of fact (infusions, LVEF readings, AEs) on every command.
    _kinds: dict[type[Fact], dict[str, Fact]] = field(default_factory=dict, repr=False,
                                                      compare=False)
    # Other folds over the events (`fold`): name -> (value, events folded).
    _folds: dict[str, tuple[Any, int]] = field(default_factory=dict, repr=False,
                                               compare=False)

    @property
    def version(self) -> int:
        return len(self.events)

    def keep_walk(self, walked: State) -> None:
        """Keep the walk of the current timeline (version `self.version`)."""
        self.walked, self.walked_version = walked, self.version

    def kept_walk(self, protocol: Protocol, today: date) -> State | None:
        """The kept walk if it is of the current timeline and can be resumed under `protocol`
        on `today` (see `domain.timeline.resumes`), else None."""
        walked = self.walked
        if (walked is None or self.walked_version != self.version
                or walked.protocol is not protocol or today < walked.today):
            return None
        return walked

    def take_walk(self, protocol: Protocol, today: date) -> State | None:
        """The kept walk, handed over to be extended in place: the patient no longer holds it,
        so a walk left part-changed by a refusal is never resumed."""
        walked = self.kept_walk(protocol, today)
        self.walked = None
        return walked

    def fold(self, name: str, start: Callable[[], _T], step: Callable[[_T, Event], _T]) -> _T:
        """`step` folded over the events from `start()`, kept under `name` and advanced over
        the events appended since the last call: what every command reads (query threads,
        the site) costs the new events, not the whole chain. The value is shared with later
        calls: read it, never change it."""
        value, folded = self._folds.get(name, (None, 0))
        if folded == 0:
            value = start()
        for count, event in enumerate(self.events[folded:], start=folded + 1):
            value = step(value, event)
            # Per event: a step that raises resumes at the event it hit, as `_effective` does.
            self._folds[name] = (value, count)
        return value

    @property
    def site(self) -> str:
        """The site as last corrected: access follows the subject to a corrected site."""
        return self.fold("site", lambda: None, self._site_step)

    def _site_step(self, site: str | None, event: Event) -> str | None:
        if isinstance(event, Registered):
            return event.site
        if isinstance(event, EntryCorrected) and "site" in event.changes \
                and event.entry == entry_id(self.subject, 1):
            return event.changes["site"]
        return site

    @property
    def registration(self) -> Registered:
        return self.events[0]  # type: ignore[return-value]

    def event_of(self, entry: str) -> Event:
        subject, _, number = entry.rpartition("#")
        if subject != self.subject or not number.isdigit():
            raise BadInput(f"entry: {entry} is not an entry of {self.subject}", field="entry")
        version = int(number)
        if not 1 <= version <= self.version:
            raise BadInput(f"entry: {entry} does not exist", field="entry")
        return self.events[version - 1]

    def timeline(self, replacing: dict[str, Fact] | None = None) -> list[tuple[str, Fact]]:
        """The effective facts in entry order: corrections applied, retractions left out, and
        facts held for a stored value today's rules refuse left out until corrected.
        `replacing` puts corrected facts in their entries' places (a held one included)."""
        facts, held, _ = self._effective()
        replacing = replacing or {}
        return [(entry, replacing.get(entry, fact)) for entry, fact in facts.items()
                if entry not in held or entry in replacing]

    def held(self) -> dict[str, Fact]:
        """The facts held out of the walk: a stored value of theirs (written by an older
        version or a past bug) fails today's rules. A correction that fixes it, or a
        retraction, releases the entry (`stored_problems` says which value)."""
        facts, held, _ = self._effective()
        return {entry: facts[entry] for entry in held}

    def facts_of(self, kind: type[Fact]) -> dict[str, Fact]:
        """The effective facts of exactly this type, by entry, in entry order (the order
        `timeline` lists them in). Shared with later calls: read it, never change it."""
        self._effective()
        facts = self._kinds.get(kind, {})
        # Held facts are left out, as `timeline` leaves them out.
        return {k: f for k, f in facts.items() if k not in self._held} if self._held else facts

    def stored_problems(self) -> list[tuple[str, str]]:
        """(entry, why) for each stored change that no longer applies and each fact still
        held: values an older version or a past bug let in (a correction to null, a dose of
        NaN). The timeline leaves them out, so the subject still takes entries; `audit verify`
        names them."""
        facts, held, problems = self._effective()
        still_held = [(entry, f"held out of the walk until corrected: {_said(facts[entry])}")
                      for entry in sorted(held, key=_number)]
        return [*problems, *still_held]

    def _effective(self) -> tuple[dict[str, Fact], set[str], list[tuple[str, str]]]:
        facts, held, problems, kinds = self._facts, self._held, self._problems, self._kinds
        for event in self.events[self._folded:]:
            entry = entry_id(self.subject, event.originator_version)
            if isinstance(event, (EntryCorrected, EntryRetracted)) and _unusable(event):
                problems.append((entry, f"its stored change of {event.entry} is not readable "
                                        f"({_said(event)}); left out"))
            elif isinstance(event, (EntryCorrected, EntryRetracted)) \
                    and event.entry not in facts:
                problems.append((entry, f"changes {event.entry}, which is no live fact"))
            elif isinstance(event, EntryCorrected):
                try:
                    corrected = apply_correction(facts[event.entry], event.changes)
                except BadInput as refused:
                    problems.append((entry, f"its stored change of {event.entry} does not "
                                            f"apply ({refused.message}); left out"))
                else:
                    facts[event.entry] = kinds[type(corrected)][event.entry] = corrected
                    held.discard(event.entry)
            elif isinstance(event, EntryRetracted):
                del kinds[type(facts.pop(event.entry))][event.entry]
                held.discard(event.entry)
            elif isinstance(event, Fact):
                facts[entry] = kinds.setdefault(type(event), {})[entry] = event
                if _unusable(event):
                    held.add(entry)
            self._folded += 1  # per event: a bug raised mid-way resumes at the event it hit
        return facts, held, problems


def _unusable(event: Event) -> bool:
    """A stored value of a field the rules read fails today's model. A field no longer known
    was left out when decoding: the rest of the event is as good as any."""
    return any(name in type(event).model_fields for name, _ in event.stored_problems)


def _number(entry: str) -> int:
    return int(entry.rpartition("#")[2])


def _said(event: Event) -> str:
    return "; ".join(why for _, why in event.stored_problems)


def apply_correction(fact: Fact, changes: dict) -> Fact:
    """The fact with new values, validated as strictly as a new entry would be."""
    data = fact.model_dump(warnings=not fact.stored_problems)  # a held value, as stored
    data.update(changes)
    try:
        return type(fact).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{name}: {first['msg']}", field=name) from None


def project_patient(patient: Patient | None, events: Iterable[Event]) -> Patient | None:
    """The projector the repository folds stored events with."""
    for event in events:
        if patient is None:
            assert isinstance(event, Registered), "a patient's first event is its registration"
            patient = Patient(id=event.originator_id, subject=event.subject)
        # A query, an answer or a signature leaves the timeline as it was: its walk too.
        still = patient.walked is not None and patient.walked_version == patient.version \
            and not isinstance(event, Fact)
        patient.events.append(event)
        if still:
            patient.walked_version = patient.version
    return patient
