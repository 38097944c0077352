"""One pydantic model per entry command, shared by the CLI, the JSON Lines import and the tests.

Field names are the JSON Lines names (docs/cli.md); the CLI option is the name with `-`.
Validation here is about *input* (types, ranges: exit 2); protocol rules live in `domain/rules`.

Each field's `description` says what the value means, its unit and, where a pattern checks it,
the allowed values in words; `cli/entry.py` adds type, range and choices from the same field to
make the option's help, and `cli/reference.py` writes docs/cli.md from both. Each command's
`example` is one JSON Lines record; read in the order of `cli.reference.COURSE`, the examples
are one subject's whole course, which tests/integration/test_docs_examples.py enters.
"""

# No `from __future__ import annotations` here: pydantic would then build each model's fields
# from annotation strings, compiling every one (a third of this module's import time).

import json
import math
import re
import typing
from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from m22bol.domain.errors import BadInput
from m22bol.domain.events import (
    LARGEST_SIZE_MM,
    Lesion,
    NonTargetLesion,
    SeriousCriterion,
    size_problem,
)
from m22bol.domain.text import unprintable

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A plain decimal as a person writes it: Python's own parsers would also take `3_45` (345),
# `nan`, `inf` and `0x1F`.
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$")
MAX_ITEMS = 100  # repeatable options and --set pairs: far above any real scan or correction


def check_plain(value: Any) -> Any:
    """Refuse control and bidi-override characters and non-finite numbers anywhere in a value
    (in lists and pairs too)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if isinstance(value, str):
        if bad := unprintable(value):
            raise ValueError(f"contains the control or bidirectional character {bad}; "
                             "only printable text is accepted")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_plain(key)
            try:
                check_plain(item)
            except ValueError as bad:  # name the key: `--set dose_mg=nan` names dose_mg
                raise ValueError(f"{key}: {bad}") from None
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_plain(item)
    return value


class DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(f"{key}: given twice in one record")
        self.key = key


class _Twice(dict):
    """An object in which a key appeared twice; `twice` is that key."""

    twice = ""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    seen: set[str] = set()
    marked = _Twice(record)
    marked.twice = next(k for k, _ in pairs if k in seen or seen.add(k))
    return marked


def _duplicate(value: Any, path: str = "") -> str | None:
    """The path of the first key given twice (`aware_date.a`), found after parsing so that
    the message names the record's field the nested object belongs to."""
    if isinstance(value, _Twice):
        return f"{path}{value.twice}"
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        if found := _duplicate(item, f"{path}{key}."):
            return found
    return None


# An integer of thousands of digits is read as this stand-in (Python refuses to convert more
# than 4300 digits, and the time to do so grows with the length); it fails every range check,
# so the model's message names the field.
_HUGE = 10**400


def _integer(text: str) -> int:
    return int(text) if len(text) <= 400 else _HUGE


def strict_json(text: str | bytes) -> Any:
    """JSON with no duplicate keys (which one would win?). NaN, Infinity and overflowing
    numbers are read as the non-finite floats they are and refused by the model, which names
    the field. Raises ValueError with the reason."""
    marked: list[_Twice] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        record = _no_duplicates(items)
        if isinstance(record, _Twice):
            marked.append(record)
        return record

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_int=_integer)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    # The tree is searched for the path of the key only when a key was given twice at all.
    if marked and (twice := _duplicate(value)):
        raise DuplicateKey(twice)
    return value


def _is_number(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    return any(_is_number(a) for a in typing.get_args(annotation) if a is not type(None))


def _iso_date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date YYYY-MM-DD")
    return date.fromisoformat(value)


def _yes_no(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "no"):
        return value.lower() == "yes"
    raise ValueError("expected yes or no")


def _text(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
YesNo = Annotated[bool, BeforeValidator(_yes_no)]
Text = Annotated[str, BeforeValidator(_text), Field(max_length=2000)]
# Case-insensitive for uniqueness: stored (and looked up) in upper case.
SubjectId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$",
               description="study subject id: up to 40 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit, e.g. M22-001"),
    AfterValidator(str.upper),
]
EntryId = Annotated[str, Field(pattern=r"^[^#]+#\d{1,9}$"), AfterValidator(str.upper)]
Grade = Annotated[int, Field(ge=1, le=5, strict=False)]


def _lesion(kind: str):
    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        parts = value.split(":")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise ValueError(f"expected ID:{kind}:MM")
        mm = parts[2].strip()
        if mm.upper() == "NE":
            return {"lesion_id": parts[0], "organ": parts[1], "mm": None}
        if not _DECIMAL.match(mm):
            raise ValueError(f"{mm!r} is not a size in mm or NE")
        size = float(mm)
        # The bound of every lesion size (`events.size_problem`), under the rule's own name.
        if problem := (size_problem(size) if math.isfinite(size) else
                       f"{mm} mm is not a size between 0 and {LARGEST_SIZE_MM:g} mm"):
            raise PydanticCustomError("recist.invalid_measurement", problem)
        return {"lesion_id": parts[0], "organ": parts[1], "mm": size}

    return BeforeValidator(parse)


def _non_target(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parts = value.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise ValueError("expected ID:ORGAN:present|absent|progression")
    return {"lesion_id": parts[0], "organ": parts[1], "status": parts[2]}


def _pairs(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        pairs = {}
        for item in value:
            key, sep, val = str(item).partition("=")
            if not sep or not key:
                raise ValueError(f"expected KEY=VALUE, got {item!r}")
            pairs[key.strip()] = val
        return pairs
    return value


class Command(BaseModel):
    """A request to change the ledger. `name` is the CLI command and the JSON Lines `command`."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True,
                              defer_build=True, allow_inf_nan=False)

    name: ClassVar[str]
    positional: ClassVar[tuple[str, ...]] = ()
    help: ClassVar[str] = ""
    example: ClassVar[dict[str, Any]] = {}
    checked_after: ClassVar[frozenset[str]] = frozenset()  # fields checked once parsed

    source: Text | None = Field(None, description="reference of the source document, free "
                                                  "text (e.g. a CRF page)")

    @field_validator("*", mode="before")
    @classmethod
    def _plain_input(cls, value: Any, info: ValidationInfo) -> Any:
        """Every field, whatever its type: printable text only, and numbers written plainly."""
        if info.field_name in cls.checked_after:
            return value
        check_plain(value)
        if isinstance(value, (str, bool)) and _numeric(cls, info.field_name):
            if isinstance(value, bool):
                raise ValueError("expected a number, not true or false")
            if not _DECIMAL.match(value.strip()):
                raise ValueError(f"{value!r} is not a plain decimal number")
        return value


# (command class, field) -> whether the field holds a number: asked for every field of every
# parsed line, and the annotation never changes.
_NUMERIC: dict[tuple[type, str], bool] = {}


def _numeric(cls: type[BaseModel], name: str) -> bool:
    key = (cls, name)
    if (numeric := _NUMERIC.get(key)) is None:
        numeric = _NUMERIC[key] = _is_number(cls.model_fields[name].annotation)
    return numeric


class SubjectCommand(Command):
    positional = ("subject",)
    subject: SubjectId


class FactCommand(SubjectCommand):
    deviation_reason: Text | None = Field(
        None, description="accept the protocol deviation the entry would cause, with this "
                          "reason (free text)"
    )


class ReasonedFact(FactCommand):
    date: IsoDate = Field(description="date of the decision")
    reason: Text = Field(description="why, in words")


# --- trial administration ---------------------------------------------------------------------

Role = Literal["admin", "investigator", "data-manager", "monitor", "auditor"]


class Init(Command):
    name = "init"
    help = "Start a new ledger with the protocol; the acting user becomes admin."
    example = {}
    protocol: str | None = Field(None, description="path of a protocol TOML file (default: "
                                                   "the bundled M22BOL protocol)")
    synthetic: bool = Field(False, description="mark the ledger as synthetic (demo, training)")


class Grant(Command):
    name = "grant"
    positional = ("user", "role")
    help = "Give a user a role, optionally for one site."
    example = {"user": "alice", "role": "data-manager"}
    user: Text = Field(description="the user's login name")
    role: Role = Field(description="the role to give")
    site: Text | None = Field(None, description="limit the role to this site id")


class Revoke(Command):
    name = "revoke"
    positional = ("user", "role")
    help = "Take a role away from a user."
    example = {"user": "alice", "role": "data-manager", "reason": "course entered"}
    user: Text = Field(description="the user's login name")
    role: Role = Field(description="the role to take away")
    site: Text | None = Field(None, description="the site the role was limited to")
    reason: Text = Field(description="why, in words")


class AmendProtocol(Command):
    name = "amend-protocol"
    positional = ("file",)
    help = "Register a new protocol version from a TOML file."
    example = {"file": "docs/examples/protocol-1.1.toml", "reason": "amendment 1"}
    file: str = Field(description="path of the protocol TOML file; its `version` must be new")
    reason: Text = Field(description="why, in words")


class Lock(Command):
    name = "lock"
    help = "Lock the ledger, or one subject, against entries."
    example = {"subject": "M22-001", "reason": "database lock for the interim analysis"}
    subject: SubjectId | None = Field(None, description="lock only this subject (default: "
                                                        "the whole ledger)")
    reason: Text = Field(description="why, in words")


class Unlock(Lock):
    name = "unlock"
    help = "Lift a lock (the reason is audited)."
    example = {"subject": "M22-001", "reason": "interim analysis done"}


# --- screening and enrolment ------------------------------------------------------------------


class Register(SubjectCommand):
    name = "register"
    help = "Register a subject at a site on informed consent."
    example = {"subject": "M22-001", "site": "S1", "consent_date": "2025-01-02"}
    site: Text = Field(max_length=40, description="site id")
    consent_date: IsoDate = Field(description="date of informed consent")
    birth_year: int | None = Field(None, ge=1900, le=2100, description="year of birth")
    sex: Literal["female", "male"] | None = Field(None, description="sex")


class AssessEligibility(FactCommand):
    name = "assess-eligibility"
    help = "Record the eligibility assessment; a failure is kept as a screen failure."
    example = {"subject": "M22-001", "date": "2025-01-03", "her2": "positive", "er": "negative",
               "prior_therapy": "none", "distant_lesions": 2, "all_lesions_curable": "yes",
               "lvef": 62, "ecog": 0}
    date: IsoDate = Field(description="date of the assessment")
    her2: Literal["positive", "negative"] = Field(description="HER2 status")
    er: Literal["positive", "negative"] = Field(description="oestrogen-receptor status")
    prior_therapy: Literal["none", "chemo-anti-her2"] = Field(
        description="systemic therapy before the trial: none, or chemotherapy with anti-HER2")
    distant_lesions: int = Field(ge=0, le=100, description="number of distant metastases")
    all_lesions_curable: YesNo = Field(description="every lesion can be treated with curative "
                                                   "intent")
    lvef: float | None = Field(None, ge=0, le=100, description="LVEF in percent")
    ecog: int | None = Field(None, ge=0, le=5, description="ECOG performance status")


class Enrol(FactCommand):
    name = "enrol"
    help = "Enrol an eligible subject; the basket follows from the strata and is printed."
    example = {"subject": "M22-001", "date": "2025-01-06", "weight_kg": 64}
    date: IsoDate = Field(description="date of enrolment")
    weight_kg: float = Field(ge=25, le=300, description="body weight in kg")


# --- treatment --------------------------------------------------------------------------------


class Infuse(FactCommand):
    name = "infuse"
    help = "Record an infusion; prints the expected dose, dose level and next due date."
    example = {"subject": "M22-001", "cycle": 1, "date": "2025-01-13", "weight_kg": 64,
               "dose_mg": 345.6}
    cycle: int = Field(ge=1, le=100, description="treatment cycle number, 1 for the first")
    date: IsoDate = Field(description="date of the infusion")
    weight_kg: float = Field(ge=25, le=300, description="body weight in kg on the day")
    dose_mg: float = Field(gt=0, le=10000, description="dose given in mg")
    duration_min: int | None = Field(None, ge=1, le=1440,
                                     description="infusion duration in minutes")


class Interrupt(ReasonedFact):
    name = "interrupt"
    help = "Interrupt treatment by decision."
    example = {"subject": "M22-001", "date": "2025-02-03", "reason": "nausea"}


class Resume(ReasonedFact):
    name = "resume"
    help = "Resume an interrupted treatment by decision."
    example = {"subject": "M22-001", "date": "2025-02-10", "reason": "recovered"}


class ReduceDose(ReasonedFact):
    name = "reduce-dose"
    help = "Reduce the dose one level by decision."
    example = {"subject": "M22-001", "date": "2025-02-10", "reason": "grade 3 nausea"}


class Discontinue(ReasonedFact):
    name = "discontinue"
    help = "Discontinue treatment permanently."
    example = {"subject": "M22-001", "date": "2025-06-30", "reason": "progression"}


def _criteria(value: Any) -> Any:
    # The flag of the first release (`--serious`, JSON `"serious": true`) said only "serious":
    # ICH E2A's catch-all criterion.
    if value is True:
        return ("medically-important",)
    if value is False or value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return value


class AdverseEvent(FactCommand):
    name = "adverse-event"
    help = ("Report an adverse event coded to CTCAE v5.0; prints the AE id, the coding and the "
            "required action.")
    example = {"subject": "M22-001", "term": "Nausea", "grade": 2, "onset": "2025-01-20",
               "related": True}
    term: Text = Field(max_length=200, description="CTCAE v5.0 term or a protocol synonym")
    grade: Grade = Field(description="CTCAE grade")
    onset: IsoDate = Field(description="date of onset")
    verbatim: Text | None = Field(None, max_length=200,
                                  description="the investigator's own words (needed for "
                                              "'Other, specify' terms)")
    serious: Annotated[tuple[SeriousCriterion, ...], BeforeValidator(_criteria)] = Field(
        (), max_length=MAX_ITEMS,
        description="ICH E2A seriousness criterion; the option alone means medically-important",
        json_schema_extra={"flag_value": "medically-important"})
    aware_date: IsoDate | None = Field(None, description="when the site became aware "
                                                         "(default: the entry time)")
    related: bool | None = Field(None, description="related to the study drug in the "
                                                   "investigator's judgement")
    id: Text | None = Field(None, max_length=40, description="AE id, unique within the "
                                                             "subject (default: AE1, AE2, ...)")

    @field_validator("serious")
    @classmethod
    def _once_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))


class UpdateAdverseEvent(FactCommand):
    name = "update-adverse-event"
    positional = ("subject", "ae_id")
    help = "Record a change of grade of an adverse event."
    example = {"subject": "M22-001", "ae_id": "AE1", "date": "2025-01-27", "grade": 3}
    ae_id: Text = Field(description="the AE id the adverse-event entry printed, e.g. AE1")
    date: IsoDate = Field(description="date of the change")
    grade: Grade = Field(description="the new CTCAE grade")


class ResolveAdverseEvent(FactCommand):
    name = "resolve-adverse-event"
    positional = ("subject", "ae_id")
    help = "Record the resolution of an adverse event."
    example = {"subject": "M22-001", "ae_id": "AE1", "date": "2025-02-07"}
    ae_id: Text = Field(description="the AE id the adverse-event entry printed, e.g. AE1")
    date: IsoDate = Field(description="date of resolution")


class Lvef(FactCommand):
    name = "lvef"
    help = "Record an LVEF reading; applies the label's LVEF table."
    example = {"subject": "M22-001", "date": "2025-03-20", "percent": 60}
    date: IsoDate = Field(description="date of the echocardiogram or MUGA scan")
    percent: float = Field(ge=0, le=100, description="left ventricular ejection fraction in "
                                                     "percent")
    symptomatic: bool = Field(False, description="the subject has symptoms of heart failure")


# --- local treatment --------------------------------------------------------------------------


class Surgery(FactCommand):
    name = "surgery"
    help = "Record surgery of the primary or a metastasis."
    example = {"subject": "M22-001", "date": "2025-05-12", "site": "metastasis",
               "location": "liver segment 6"}
    date: IsoDate = Field(description="date of surgery")
    site: Literal["primary", "metastasis"] = Field(description="what was operated on")
    location: Text | None = Field(None, description="where, in words")


class Complication(FactCommand):
    name = "complication"
    help = "Record a surgical complication (Clavien-Dindo)."
    example = {"subject": "M22-001", "date": "2025-05-15", "clavien_dindo": "II",
               "description": "wound infection"}
    date: IsoDate = Field(description="date of the complication")
    clavien_dindo: str = Field(pattern=r"^(I|II|IIIa|IIIb|IVa|IVb)(-d)?$|^V$",
                               description="Clavien-Dindo grade: one of I, II, IIIa, IIIb, IVa, "
                                           "IVb or V; add -d (e.g. II-d) for a disability at "
                                           "discharge, except to V")
    description: Text | None = Field(None, description="what happened, in words")


class Radiotherapy(FactCommand):
    name = "radiotherapy"
    help = "Record a course of radiotherapy."
    example = {"subject": "M22-001", "start": "2025-05-19", "end": "2025-05-23",
               "location": "lung", "dose_gy": 45, "fractions": 3}
    start: IsoDate = Field(description="first day of irradiation")
    end: IsoDate = Field(description="last day of irradiation")
    location: Text = Field(description="the irradiated site, in words")
    dose_gy: float = Field(gt=0, le=200, description="total dose in Gy")
    fractions: int = Field(ge=1, le=100, description="number of fractions")


class CompleteLocalTreatment(FactCommand):
    name = "complete-local-treatment"
    help = "Mark local treatment complete; closes the neo-adjuvant phase."
    example = {"subject": "M22-001", "date": "2025-05-26"}
    date: IsoDate = Field(description="date local treatment was complete")


class Pathology(FactCommand):
    name = "pathology"
    help = "Record the pathology of resected tissue; pCR is derived."
    example = {"subject": "M22-001", "date": "2025-05-16", "ypt": "not-resected",
               "ypn": "not-resected", "viable_metastatic_tumour": "no"}
    date: IsoDate = Field(description="date of the pathology report")
    ypt: Literal["T0", "Tis", "T1", "T2", "T3", "T4", "not-resected"] = Field(
        description="ypT stage of the primary after treatment")
    ypn: Literal["N0", "N1", "N2", "N3", "not-resected"] = Field(
        description="ypN stage of the regional nodes after treatment")
    viable_metastatic_tumour: Literal["yes", "no", "not-resected"] = Field(
        description="viable tumour in the resected metastasis")


# --- assessments ------------------------------------------------------------------------------


class Scan(FactCommand):
    name = "scan"
    help = "Record a CT/MRI tumour assessment; prints the RECIST 1.1 response."
    example = {"subject": "M22-001", "date": "2025-01-09", "target": ["L1:liver:30", "L2:lung:20"],
               "node": ["N1:axilla:16"], "non_target": ["NT1:bone:present"]}
    date: IsoDate = Field(description="date of the scan")
    modality: Literal["CT", "MRI"] = Field("CT", description="imaging modality")
    target: tuple[Annotated[Lesion, _lesion("ORGAN")], ...] = Field(
        (), max_length=MAX_ITEMS,
        description="a target lesion as ID:ORGAN:MM, its longest diameter in mm, or NE "
                    "if not evaluated (e.g. L1:liver:30)")
    node: tuple[Annotated[Lesion, _lesion("LOCATION")], ...] = Field(
        (), max_length=MAX_ITEMS,
        description="a target lymph node as ID:LOCATION:MM, its short axis in mm, or NE "
                    "(e.g. N1:axilla:16)")
    non_target: tuple[Annotated[NonTargetLesion, BeforeValidator(_non_target)], ...] = Field(
        (), max_length=MAX_ITEMS,
        description="a non-target lesion as ID:ORGAN:STATUS, STATUS one of present, absent "
                    "or progression (e.g. NT1:bone:present)")
    new_lesion: tuple[Text, ...] = Field(
        (), max_length=MAX_ITEMS, description="where a new lesion was seen, in words")


class Pet(FactCommand):
    name = "pet"
    help = "Record an FDG-PET; PERCIST category for every PET after the first infusion."
    example = {"subject": "M22-001", "date": "2025-01-10", "sulpeak": 9.1}
    date: IsoDate = Field(description="date of the PET")
    percist: Literal["CMR", "PMR", "SMD", "PMD"] | None = Field(
        None, description="PERCIST 1.0 category (none for the baseline PET)")
    sulpeak: float | None = Field(None, ge=0, le=1000, description="SULpeak of the hottest "
                                                                   "lesion")
    new_lesions: bool = Field(False, description="new FDG-avid lesions (PERCIST PMD)")


class Ctdna(FactCommand):
    name = "ctdna"
    help = "Record a ctDNA result."
    example = {"subject": "M22-001", "date": "2025-01-09", "result": "detected",
               "assay": "Signatera"}
    date: IsoDate = Field(description="date the sample was taken")
    result: Literal["detected", "not-detected"] = Field(description="the assay's result")
    assay: Text | None = Field(None, description="name of the assay")
    value: float | None = Field(None, ge=0, le=1e9, description="the assay's quantity, in its "
                                                                "own unit")


# --- end of follow-up -------------------------------------------------------------------------


class Contact(FactCommand):
    name = "contact"
    help = "Record that the subject was known alive on a date."
    example = {"subject": "M22-001", "date": "2025-07-15"}
    date: IsoDate = Field(description="date the subject was known alive")


class SubsequentTherapy(FactCommand):
    name = "subsequent-therapy"
    help = ("Record the start of a new anticancer therapy; progression-free survival is "
            "censored at the last adequate assessment on or before it.")
    example = {"subject": "M22-001", "date": "2025-07-20", "therapy": "capecitabine"}
    date: IsoDate = Field(description="date the new therapy started")
    therapy: Text = Field(max_length=200, description="the new therapy, in words")


class Death(FactCommand):
    name = "death"
    help = "Record the subject's death."
    example = {"subject": "M22-001", "date": "2025-09-01", "cause": "disease progression"}
    date: IsoDate = Field(description="date of death")
    cause: Text | None = Field(None, description="cause of death, in words")


class Withdraw(FactCommand):
    name = "withdraw"
    help = "Record withdrawal of consent."
    example = {"subject": "M22-001", "date": "2025-08-01", "reason": "moved abroad"}
    date: IsoDate = Field(description="date consent was withdrawn")
    reason: Text = Field(description="why, in words")


# --- changes to the record --------------------------------------------------------------------


class Correct(FactCommand):
    name = "correct"
    positional = ("subject", "entry")
    help = "Correct an earlier entry: new values, a reason, the old values kept."
    example = {"subject": "M22-001", "entry": "M22-001#14", "reason": "transcription error",
               "set": ["percent=58"]}
    entry: EntryId = Field(description="entry id as SUBJECT#N, as `history` lists it "
                                       "(e.g. M22-001#7)")
    reason: Text = Field(description="why, in words")
    set: Annotated[dict[str, Any], BeforeValidator(_pairs)] = Field(
        min_length=1, max_length=MAX_ITEMS,
        description="KEY=VALUE: the field to correct and its new value (repeatable)"
    )
    # Checked as pairs, so that a refusal names the field being corrected.
    checked_after = frozenset({"set"})

    @field_validator("set")
    @classmethod
    def _plain_pairs(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_plain(value)


# A FactCommand: withdrawing a fact can expose a deviation (a dose given after a reduction that
# never happened), which must be accepted with a reason like any other.
class Retract(FactCommand):
    name = "retract"
    positional = ("subject", "entry")
    help = "Retract an entry entered in error, with a reason."
    example = {"subject": "M22-001", "entry": "M22-001#17", "reason": "entered for the wrong "
                                                                      "subject"}
    entry: EntryId = Field(description="entry id as SUBJECT#N, as `history` lists it "
                                       "(e.g. M22-001#7)")
    reason: Text = Field(description="why, in words")


# --- audit and signatures ----------------------------------------------------------------------
# Not in COMMANDS: a seal needs the ledger to read the whole store first, and a password must be
# typed by the person at the keyboard, never read from an import file (Part 11 §11.200).

MIN_PASSWORD_LENGTH = 12


class Seal(Command):
    name = "audit seal"
    help = "Seal the ledger: one digest over the head of every hash chain, printed."
    note: Text


# Passwords are taken exactly as typed: spaces at either end are part of them.
_AS_TYPED = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False,
                       defer_build=True)


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    return value


class SetPassword(Command):
    name = "set-password"
    help = "Set your own password (stored only as a salted scrypt hash)."
    model_config = _AS_TYPED
    password: SecretStr
    # Changing a password needs the current one: otherwise anyone naming your --user could
    # replace it and sign in your name.
    current_password: SecretStr | None = None

    _check_password = field_validator("password")(_long_enough)


class ResetPassword(Command):
    name = "reset-password"
    positional = ("user",)
    help = "Set a user's first or forgotten password (admin); lifts a lockout."
    model_config = _AS_TYPED
    user: Text
    password: SecretStr

    _check_password = field_validator("password")(_long_enough)


class RecordAuthenticationFailure(Command):
    """Not typed by anyone: the ledger records a refused authentication with it."""

    name = "authentication-failed"
    user: Text
    account: Text
    attempt: Literal["password", "signature", "current-password", "session-user", "locked-out"]
    message: str


class RecordAuthenticationSuccess(Command):
    """Not typed by anyone: a password accepted after failures, recorded by the ledger."""

    name = "authentication-succeeded"
    user: Text


class Sign(SubjectCommand):
    name = "sign"
    help = "Sign the subject's records as they stand, re-entering your password."
    model_config = _AS_TYPED
    meaning: Literal["reviewed", "approved"] = Field(
        description="what the signature means: reviewed, or approved")
    password: SecretStr


INTERACTIVE = {"sign", "set-password", "reset-password", "audit seal"}


COMMANDS: dict[str, type[Command]] = {
    c.name: c
    for c in (
        Init, Grant, Revoke, AmendProtocol, Lock, Unlock, Register, AssessEligibility, Enrol,
        Infuse, Interrupt, Resume, ReduceDose, Discontinue, AdverseEvent, UpdateAdverseEvent,
        ResolveAdverseEvent, Lvef, Surgery, Complication, Radiotherapy, CompleteLocalTreatment,
        Pathology, Scan, Pet, Ctdna, Contact, SubsequentTherapy, Death, Withdraw, Correct,
        Retract,
    )
}


def describe_validation_error(exc: ValidationError, *, where: str = "",
                              model: type[BaseModel] | None = None) -> BadInput:
    """Turn pydantic's report into one clear message naming the field."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "record"
    msg = first["msg"].removeprefix("Value error, ")
    described = model.model_fields.get(str(first["loc"][0])) if model and first["loc"] else None
    if first["type"] == "string_pattern_mismatch" and described and described.description:
        # A regular expression teaches nobody: the description names the allowed values.
        msg = f"{first['input']!r} is not valid; expected {described.description}"
    # A rule of the domain raised inside a model (a lesion size) names itself as its type.
    rule = first["type"] if "." in first["type"] else None
    return BadInput(f"{where}{field}: {msg}", field=field, rule=rule)


def parse_command(name: str, values: dict[str, Any], *, where: str = "") -> Command:
    """Build a command from primitive values (CLI options or one JSON Lines record)."""
    if name in INTERACTIVE:
        raise BadInput(f"{where}command: {name} cannot be imported; run it at the keyboard",
                       field="command")
    try:
        cls = COMMANDS[name] if name in COMMANDS else QUERY_COMMANDS[name]
    except (KeyError, TypeError):
        raise BadInput(f"{where}command: unknown command {name!r}", field="command") from None
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise describe_validation_error(exc, where=where, model=cls) from None


# --- data clarification queries and source data verification (docs/queries.md) ----------------
# Not in COMMANDS: their names are two words (`query open`), so the CLI builds them as a group.

QueryId = Annotated[str, Field(pattern=r"^Q-[1-9][0-9]{0,8}$", description="query id, Q-N")]


class QueryOpen(SubjectCommand):
    name = "query open"
    positional = ("subject", "entry")
    help = "Ask the site about one field of an entry; prints the query id."
    entry: EntryId
    field: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$",
                                description="the field asked about, as the entry names it "
                                            "(e.g. dose_mg)")]
    text: Annotated[Text, Field(description="the question, as the site will read it")]


class QueryAnswer(Command):
    name = "query answer"
    positional = ("query_id",)
    help = "Answer a query, optionally naming the correction made for it."
    query_id: QueryId
    text: Annotated[Text, Field(description="the answer, as the monitor will read it")]
    correction: EntryId | None = Field(None, description="the correction entry made for it")


class QueryClose(Command):
    name = "query close"
    positional = ("query_id",)
    help = "Close a query (also on a locked subject)."
    query_id: QueryId
    text: Text | None = Field(None, description="why it is closed (optional)")


class QueryReopen(Command):
    name = "query reopen"
    positional = ("query_id",)
    help = "Reopen a query, saying what is still wrong."
    query_id: QueryId
    text: Annotated[Text, Field(description="what is still wrong")]


class VerifySource(SubjectCommand):
    name = "verify-source"
    positional = ("subject", "entry")
    help = "Mark an entry as verified against source (undone by a later correction)."
    entry: EntryId
    note: Text | None = Field(None, description="what was checked against what source")


class RefreshQueries(Command):
    """Run the time-based edit checks on every subject (`queries --refresh`)."""

    name = "queries --refresh"


QUERY_COMMANDS: dict[str, type[Command]] = {
    c.name: c for c in (QueryOpen, QueryAnswer, QueryClose, QueryReopen, VerifySource)
}
