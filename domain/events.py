"""Immutable domain events: every trial fact, in the past tense, with its audit envelope.

Knowledge time (`recorded_at`, set by the ledger) and clinical time (`date`, `onset`, `start`)
are separate fields, because both are queried: "as known at T" and "cut off at D".
"""

# No `from __future__ import annotations`: pydantic would build every model's fields from
# annotation strings, evaluating each one as the module is imported (as in domain/commands.py).

import json
import math
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

Result = Literal["detected", "not-detected"]


# --- the names events are stored under ------------------------------------------------------

# An event's type is stored with it (and hashed into the chain), so its name is part of the
# record and must not follow the code when a module moves: every ledger since the first names
# its events "domain.events:<Class>", whatever package the classes live in now.
_TOPIC_PREFIX = "domain.events:"
_EVENT_TYPES: "dict[str, type[Event]]" = {}  # topic -> class, filled as each class is defined
_ABSTRACT = {"Event", "Fact"}


def topic_of(cls: "type[Event]") -> str:
    return _TOPIC_PREFIX + cls.__name__


def event_types() -> "dict[str, type[Event]]":
    """Every stored event type by its topic."""
    return dict(_EVENT_TYPES)


def event_class(topic: str) -> "type[Event]":
    """The event type a stored topic names; ValueError when it names none."""
    try:
        return _EVENT_TYPES[topic]
    except KeyError:
        raise ValueError(f"{topic!r} names no event type") from None


class Deviation(BaseModel):
    """A protocol deviation accepted with a reason: which entry broke which rule."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    entry: str
    rule: str
    message: str




class Event(BaseModel):
    """The audit envelope shared by every event."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    originator_id: UUID
    originator_version: int
    recorded_at: datetime
    actor: str
    reason: str | None = None
    source: str | None = None
    # SHA-256 of the canonical form of the previous event of this aggregate: the hash chain.
    prev_hash: str | None = None

    # Events that are clinical facts name the field holding their clinical date.
    date_field: ClassVar[str | None] = None
    # Bump when a field changes meaning or a required field is added, and give the class a
    # static `upcast_vN_vN+1(state) -> state`: stored events are never rewritten, they are
    # upcast as they are read.
    class_version: ClassVar[int] = 1
    # SHA-256 of the bytes this event was read from; the hash chain links to those bytes,
    # which an upcast event would no longer reproduce.
    _stored_digest: str | None = PrivateAttr(default=None)
    # (field, why) for each stored value today's rules refuse, set by the store's tolerant
    # decode (`m22bol.ledger.store`): a value an older version or a past bug wrote.
    _stored_problems: tuple[tuple[str, str], ...] = PrivateAttr(default=())
    # The canonical bytes this event is stored as, once made (`ledger.store.stored_bytes`):
    # the chain hashes them for the next event's link and the store writes the same bytes.
    _stored_bytes: bytes | None = PrivateAttr(default=None)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False):
        """A copy; one with changed values is another record, so the bytes and digest kept
        for this one are not carried over."""
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied._stored_bytes = copied._stored_digest = None
        return copied

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__name__ not in _ABSTRACT:
            _EVENT_TYPES[topic_of(cls)] = cls

    @property
    def stored_problems(self) -> tuple[tuple[str, str], ...]:
        """(field, why) for each stored value of this event that today's rules refuse; such a
        fact is held out of the walk until a correction fixes it (`domain.patient`)."""
        return self._stored_problems

    @property
    def clinical_date(self) -> date | None:
        return getattr(self, self.date_field) if self.date_field else None

    def facts(self) -> dict[str, Any]:
        """The fact's own values, without the envelope."""
        return self.model_dump(mode="json", exclude=set(Event.model_fields),
                               warnings=not self._stored_problems)


class Fact(Event):
    """A clinical fact about a subject; it may carry a deviation reason and accepted deviations."""

    deviation_reason: str | None = None
    deviations: tuple[Deviation, ...] = ()

    def facts(self) -> dict[str, Any]:
        # A value kept as stored (`stored_problems`: a list of plain objects where today's
        # model has lesions) is written as it is, without pydantic's warning on stderr.
        return self.model_dump(
            mode="json", exclude=set(Event.model_fields) | {"deviation_reason", "deviations"},
            warnings=not self._stored_problems)


# --- the trial: protocol, people, locks -------------------------------------------------------


class TrialInitialised(Event):
    trial: str
    protocol_text: str
    protocol_digest: str
    protocol_version: str
    admin: str
    # A demo or training ledger: every report and export of it says so, and `demo` refuses
    # any ledger initialised without it.
    synthetic: bool = False


class ProtocolAmended(Event):
    protocol_text: str
    protocol_digest: str
    protocol_version: str


class RoleGranted(Event):
    user: str
    role: str
    site: str | None = None


class RoleRevoked(Event):
    user: str
    role: str
    site: str | None = None


class PasswordSet(Event):
    user: str
    password_hash: str


class AuthenticationFailed(Event):
    """A refused password, signature or session claim: a security event of the trial chain.
    `actor` is the account that tried (the OS account or database login), `user` the ledger
    user it claimed to be."""

    user: str
    account: str
    attempt: Literal["password", "signature", "current-password", "session-user", "locked-out"]
    message: str


class AuthenticationSucceeded(Event):
    """A password accepted after failures: the count of consecutive failures starts again."""

    user: str


class LedgerLocked(Event):
    subject: str | None = None


class LedgerUnlocked(Event):
    subject: str | None = None


class Sealed(Event):
    digest: str
    event_count: int
    note: str
    # (aggregate id, head version, SHA-256 of the head's stored bytes) for every chain, sorted.
    # The digest alone proves *that* a sealed head changed; these name *which* one.
    heads: tuple[tuple[str, int, str], ...] = ()
    # Ed25519 over the digest by a sealing key held outside the ledger (raw public key and
    # signature, hex); absent on an unsigned seal.
    signing_key: str | None = None
    signature: str | None = None


# --- a subject: screening and enrolment -------------------------------------------------------


class Registered(Fact):
    date_field = "consent_date"
    subject: str
    site: str
    consent_date: date
    birth_year: int | None = None
    sex: Literal["female", "male"] | None = None


class EligibilityAssessed(Fact):
    date_field = "date"
    date: date
    her2: Literal["positive", "negative"]
    er: Literal["positive", "negative"]
    prior_therapy: Literal["none", "chemo-anti-her2"]
    distant_lesions: int
    all_lesions_curable: bool
    lvef: float | None = None
    ecog: int | None = None
    eligible: bool | None = None
    failed_criteria: tuple[str, ...] = ()


class Enrolled(Fact):
    date_field = "date"
    date: date
    weight_kg: float
    basket: str | None = None
    protocol_version: str | None = None


# --- treatment --------------------------------------------------------------------------------


class InfusionGiven(Fact):
    date_field = "date"
    cycle: int
    date: date
    weight_kg: float
    dose_mg: float
    expected_dose_mg: float | None = None
    dose_level_mg_per_kg: float | None = None
    duration_min: int | None = None


class TreatmentInterrupted(Fact):
    date_field = "date"
    date: date


class TreatmentResumed(Fact):
    date_field = "date"
    date: date


class DoseReduced(Fact):
    date_field = "date"
    date: date


class TreatmentDiscontinued(Fact):
    date_field = "date"
    date: date


# ICH E2A seriousness criteria.
SeriousCriterion = Literal["death", "life-threatening", "hospitalisation", "disability",
                           "congenital-anomaly", "medically-important"]


class AdverseEventReported(Fact):
    """`term` is what was entered (a CTCAE term or a protocol synonym); the coding is derived
    when the timeline is walked and stored with the entry for the record."""

    date_field = "onset"
    class_version: ClassVar[int] = 2
    ae_id: str
    term: str
    grade: int
    onset: date
    verbatim: str | None = None
    serious: bool = False  # derived from the criteria, kept as version 1 stored it
    serious_criteria: tuple[SeriousCriterion, ...] = ()
    aware_date: date | None = None
    related: bool | None = None
    ctcae_version: str
    ctcae_term: str | None = None
    meddra_code: int | None = None
    soc: str | None = None
    # Stored before terms were coded (version 1): an unknown term is kept as entered rather
    # than refused, since the entry was accepted when it was made.
    coded_on_read: bool = False
    action: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _serious_when_a_criterion_is_met(cls, data: Any) -> Any:
        if isinstance(data, dict) and "serious_criteria" in data:
            data = {**data, "serious": bool(data["serious_criteria"])}
        return data

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> dict[str, Any]:
        # Version 1 had only the bare flag, which now means ICH E2A's "medically important".
        criteria = ["medically-important"] if state.get("serious") else []
        return {**state, "serious_criteria": criteria, "coded_on_read": True}


class AdverseEventUpdated(Fact):
    date_field = "date"
    ae_id: str
    date: date
    grade: int
    action: str | None = None


class AdverseEventResolved(Fact):
    date_field = "date"
    ae_id: str
    date: date
    action: str | None = None


class LvefMeasured(Fact):
    date_field = "date"
    date: date
    percent: float
    symptomatic: bool = False
    action: str | None = None


# --- local treatment --------------------------------------------------------------------------


class SurgeryPerformed(Fact):
    date_field = "date"
    date: date
    site: Literal["primary", "metastasis"]
    location: str | None = None


class ComplicationRecorded(Fact):
    date_field = "date"
    date: date
    clavien_dindo: str
    description: str | None = None


class RadiotherapyGiven(Fact):
    date_field = "start"
    start: date
    end: date
    location: str
    dose_gy: float
    fractions: int


class LocalTreatmentCompleted(Fact):
    date_field = "date"
    date: date


class PathologyReported(Fact):
    date_field = "date"
    date: date
    ypt: str
    ypn: str
    viable_metastatic_tumour: str
    pcr: bool | None = None


# --- assessments ------------------------------------------------------------------------------


# A lesion's size (longest diameter, a node's short axis) in mm: 0 when it disappeared, else
# at least what a CT or MRI reader records (RECIST enters a lesion too small to measure as 5),
# at most a metre. Below the floor a value measures nothing, and RECIST's exact arithmetic
# would need a unit of 1e-309 mm for a nadir of 2e-309 (docs/decisions.md).
SMALLEST_SIZE_MM = 0.1
LARGEST_SIZE_MM = 1000.0


def size_problem(mm: float) -> str | None:
    """Why `mm` is no lesion size, or None. Shared by entry, the stored-value check and RECIST.
    A NaN or infinity is left to the checks of every number (`ledger.store`, RECIST's own)."""
    if isinstance(mm, int) and abs(mm) > LARGEST_SIZE_MM:  # one too large for a float too
        return f"a number of {len(str(abs(mm)))} digits is not a size in mm"
    if not math.isfinite(mm):
        return None
    if not 0 <= mm <= LARGEST_SIZE_MM:
        return f"{mm!r} mm is not a size between 0 and {LARGEST_SIZE_MM:g} mm"
    if 0 < mm < SMALLEST_SIZE_MM:
        return (f"{mm!r} mm is below the smallest size recorded, {SMALLEST_SIZE_MM:g} mm: enter 0 "
                "for a lesion that disappeared, 5 for one too small to measure")
    return None


def _size(mm: float | None) -> float | None:
    if mm is not None and (problem := size_problem(mm)):
        raise PydanticCustomError("recist.invalid_measurement", problem)
    return mm


# A lesion's size bound, named so that the stored-value check's byte pattern knows it.
SIZE_BOUND = AfterValidator(_size)


class Lesion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    lesion_id: str
    organ: str
    mm: Annotated[float | None, SIZE_BOUND] = None  # None: not evaluated


class NonTargetLesion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    lesion_id: str
    organ: str
    status: Literal["present", "absent", "progression"]


class ScanRecorded(Fact):
    date_field = "date"
    date: date
    modality: Literal["CT", "MRI"] = "CT"
    targets: tuple[Lesion, ...] = ()
    nodes: tuple[Lesion, ...] = ()
    non_targets: tuple[NonTargetLesion, ...] = ()
    new_lesions: tuple[str, ...] = ()
    # The response derived at entry, kept for the record; derivations never read it back.
    response: dict[str, Any] = Field(default_factory=dict)

    @field_validator("targets", "nodes", "non_targets", "new_lesions", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        # `correct --set targets=[...]` hands the lesion list in as JSON text.
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list: {exc}") from None
        return value


class PetRecorded(Fact):
    date_field = "date"
    date: date
    percist: Literal["CMR", "PMR", "SMD", "PMD"] | None = None
    sulpeak: float | None = None
    new_lesions: bool = False


class CtdnaRecorded(Fact):
    date_field = "date"
    date: date
    result: Result
    assay: str | None = None
    value: float | None = None


# --- end of follow-up -------------------------------------------------------------------------


class ContactRecorded(Fact):
    date_field = "date"
    date: date


class SubsequentTherapyStarted(Fact):
    """A new anticancer therapy after this trial's treatment (censors progression-free time)."""

    date_field = "date"
    date: date
    therapy: str


class DeathRecorded(Fact):
    date_field = "date"
    date: date
    cause: str | None = None


class Withdrawn(Fact):
    date_field = "date"
    date: date


# --- changes to the record --------------------------------------------------------------------


class EntryCorrected(Fact):
    """Supersedes the values of one earlier entry; the reason is mandatory."""

    entry: str
    changes: dict[str, Any]


class EntryRetracted(Fact):
    """Withdraws one earlier entry as entered in error; the reason is mandatory."""

    entry: str


class Signed(Event):
    meaning: Literal["reviewed", "approved"]
    head_digest: str
    covers_version: int


# --- data clarification queries and source data verification (docs/queries.md) ----------------
# On the subject's own chain, so seals, signatures, --known-at and the exports cover them. They
# are not Facts: the walk that derives dose, response and endpoints never sees them.


class QueryNumbered(Event):
    """On the trial chain: which subject a query id belongs to. Numbering there makes ids
    unique across subjects, since concurrent writers of the trial chain conflict and retry."""

    query_id: str
    subject: str


class EditChecksRun(Event):
    """On the trial chain: the day's time-based edit checks ran (the first command of a day
    runs them on every subject, so each falls due on its day and is looked at once a day)."""

    day: date


class QueryOpened(Event):
    query_id: str
    entry: str
    field: str
    text: str
    rule: str | None = None  # the edit check that raised it; None when a person did


class QueryAnswered(Event):
    query_id: str
    text: str
    correction: str | None = None


class QueryClosed(Event):
    query_id: str
    text: str | None = None


class QueryReopened(Event):
    query_id: str
    text: str


class SourceVerified(Event):
    entry: str
    note: str | None = None
