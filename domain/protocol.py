"""The protocol as data: a pydantic model of the TOML file that `init` registers.

Rules read every number from here, so an amendment (a new basket, another drug) is a new file,
never new code.
"""

from __future__ import annotations

import hashlib
import tomllib
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from m22bol.domain.errors import BadInput

STRATUM_FIELDS = ("her2", "er", "prior_therapy")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Eligibility(_Frozen):
    min_distant_lesions: PositiveInt = 1
    max_distant_lesions: PositiveInt = 3
    # A criterion set to none is not part of the protocol; one that is must be assessed.
    min_baseline_lvef_pct: float | None = Field(50, ge=0, le=100)
    max_ecog: int | None = Field(1, ge=0, le=5)


class Safety(_Frozen):
    teae_window_days: PositiveInt = 30
    lvef_repeat_within_days: PositiveInt = 21
    # Protocol texts written before the AE rules moved into `[regimens.*.adverse_events]`
    # carry it here; the rule's `same_dose_if_resolved_within_days` is what the engine reads.
    pneumonitis_grade1_same_dose_within_days: PositiveInt = 28
    complication_within_days_of_surgery: PositiveInt = 30


class Response(_Frozen):
    confirmation_min_days: PositiveInt = 28
    sd_min_days: PositiveInt = 42
    max_target_lesions: PositiveInt = 5
    max_targets_per_organ: PositiveInt = 2
    measurable_min_mm: float = 10
    node_measurable_min_mm: float = 15
    node_normal_below_mm: float = 10
    # The tumour assessment schedule (every 63 days +/- 7 from the first infusion): it defines
    # "missed assessments" for progression-free survival.
    assessment_interval_days: PositiveInt = 63
    assessment_window_days: int = Field(7, ge=0)


class Endpoints(_Frozen):
    primary_window_days: PositiveInt = 365
    metabolic_window_days: PositiveInt = 365
    km_months: tuple[PositiveInt, ...] = (12, 24, 60)


CtcaeGrade = Annotated[int, Field(ge=1, le=5)]


class AeRule(_Frozen):
    """One row of a drug's AE table: what a coded CTCAE term at these grades does to the course.

    `interrupt` holds treatment until the AE is back at `until_grade` or below (None: until it
    resolves), then goes on at the same dose or one level lower (`then`); a reduction decided
    at any grade during one interruption stands when it ends. With
    `same_dose_if_resolved_within_days`, resolution within that many days of onset keeps the
    dose whatever `then` says. `record-lvef` changes nothing and reminds to record the LVEF.
    Grade 5 needs no row: for every drug it is a death, recorded with the AE's date.
    """

    term: str
    grades: tuple[CtcaeGrade, ...] = Field(min_length=1)
    action: Literal["interrupt", "discontinue", "record-lvef"]
    until_grade: CtcaeGrade | None = None
    then: Literal["same-dose", "reduce"] = "same-dose"
    same_dose_if_resolved_within_days: PositiveInt | None = None


class RegimenAdverseEvents(_Frozen):
    """The AE table and the synonyms that belong to one drug (its label)."""

    synonyms: dict[str, str] = Field(default_factory=dict)
    rules: tuple[AeRule, ...] = ()

    @model_validator(mode="after")
    def _one_row_per_grade(self) -> RegimenAdverseEvents:
        seen: set[tuple[str, int]] = set()
        for rule in self.rules:
            for grade in rule.grades:
                if (rule.term.casefold(), grade) in seen:
                    raise ValueError(f"two rules for {rule.term} grade {grade}")
                seen.add((rule.term.casefold(), grade))
        return self

    def rule_for(self, term: str, grade: int) -> AeRule | None:
        return next((r for r in self.rules if r.term == term and grade in r.grades), None)


class AdverseEvents(_Frozen):
    """Trial-wide AE settings: synonyms for every drug, and the SAE reporting deadline."""

    synonyms: dict[str, str] = Field(default_factory=dict)
    sae_report_within_hours: PositiveInt = 24


class Regimen(_Frozen):
    drug: str
    dose_levels_mg_per_kg: tuple[float, ...] = Field(min_length=1)
    dose_tolerance_pct: float = Field(gt=0, lt=100)
    cycle_length_days: PositiveInt
    min_days_between_cycles: PositiveInt
    first_cycle_within_days_of_enrolment: PositiveInt
    neoadjuvant_cycles: PositiveInt
    total_cycles: PositiveInt
    # Expected infusion durations, recorded and shown, not enforced: the first infusion, and
    # each later one once the drug was tolerated. None: the regimen names none.
    first_infusion_minutes: PositiveInt | None = None
    later_infusion_minutes: PositiveInt | None = None
    adverse_events: RegimenAdverseEvents = RegimenAdverseEvents()

    @model_validator(mode="after")
    def _consistent(self) -> Regimen:
        levels = self.dose_levels_mg_per_kg
        if any(b >= a for a, b in zip(levels, levels[1:], strict=False)) or levels[-1] <= 0:
            raise ValueError("dose levels must be positive and strictly decreasing")
        if self.neoadjuvant_cycles > self.total_cycles:
            raise ValueError("neoadjuvant_cycles exceeds total_cycles")
        if self.min_days_between_cycles > self.cycle_length_days:
            raise ValueError("min_days_between_cycles exceeds cycle_length_days")
        return self


class Strata(_Frozen):
    her2: Literal["positive", "negative"]
    er: Literal["positive", "negative"]
    prior_therapy: Literal["none", "chemo-anti-her2"]


class Basket(_Frozen):
    id: str = Field(min_length=1, max_length=16)
    description: str
    regimen: str
    strata: Strata


class Protocol(_Frozen):
    name: str
    version: str
    title: str
    ctcae_version: str = "5.0"
    eligibility: Eligibility
    safety: Safety
    response: Response
    endpoints: Endpoints
    regimens: dict[str, Regimen]
    baskets: tuple[Basket, ...] = Field(min_length=1)
    adverse_events: AdverseEvents

    @model_validator(mode="before")
    @classmethod
    def _written_before_ae_sections(cls, data: Any) -> Any:
        """A protocol text from before the AE rules were data (no `[adverse_events]`) meant the
        rules the code then held for its drug: the bundled protocol's, for the same drug."""
        if not isinstance(data, dict) or "adverse_events" in data:
            return data
        bundled = tomllib.loads(bundled_protocol_text())
        by_drug = {r["drug"]: r.get("adverse_events") for r in bundled["regimens"].values()}
        regimens = {}
        for name, regimen in (data.get("regimens") or {}).items():
            if isinstance(regimen, dict) and "adverse_events" not in regimen \
                    and by_drug.get(regimen.get("drug")) is not None:
                regimen = {**regimen, "adverse_events": by_drug[regimen["drug"]]}
            regimens[name] = regimen
        return {**data, "regimens": regimens, "adverse_events": bundled["adverse_events"]}

    @model_validator(mode="after")
    def _baskets_well_formed(self) -> Protocol:
        ids = [b.id for b in self.baskets]
        if len(set(ids)) != len(ids):
            raise ValueError("basket ids must be unique")
        strata = [b.strata for b in self.baskets]
        if len(set(strata)) != len(strata):
            raise ValueError("two baskets share the same strata; the basket must follow from them")
        for b in self.baskets:
            if b.regimen not in self.regimens:
                raise ValueError(f"basket {b.id} names unknown regimen {b.regimen!r}")
        return self

    def basket(self, basket_id: str) -> Basket:
        for b in self.baskets:
            if b.id == basket_id:
                return b
        raise BadInput(f"basket {basket_id!r} is not defined by protocol {self.version}",
                       field="basket")

    def basket_for(self, strata: Strata) -> Basket | None:
        """The basket follows from the strata alone; nobody picks it by hand."""
        return next((b for b in self.baskets if b.strata == strata), None)

    def regimen_of(self, basket_id: str) -> Regimen:
        return self.regimens[self.basket(basket_id).regimen]

    def ae_table(self, basket_id: str | None) -> RegimenAdverseEvents | None:
        """The AE table of the basket's drug; None before enrolment or for an unknown basket."""
        if basket_id is None or basket_id not in {b.id for b in self.baskets}:
            return None
        return self.regimen_of(basket_id).adverse_events

    def synonyms(self, basket_id: str | None) -> dict[str, str]:
        """Matching key -> CTCAE term: the trial's synonyms and those of the basket's drug."""
        from m22bol.domain.coding import key

        table = self.ae_table(basket_id)
        merged = {**self.adverse_events.synonyms, **(table.synonyms if table else {})}
        return {key(k): v for k, v in merged.items()}

    def check_coding(self) -> None:
        """Every term the AE sections name is a CTCAE term with those grades (exit 2 if not).

        Run when a protocol is registered, not on every load: it reads the CTCAE term list.
        """
        from m22bol.domain import coding

        def known(where: str, name: str) -> coding.Term:
            found = coding.lookup(name)
            if found is None or found.term != name:
                hint = f" (did you mean {found.term!r}?)" if found else (
                    "; closest: " + "; ".join(coding.suggest(name)))
                raise BadInput(f"protocol: {where}: {name!r} is not a CTCAE "
                               f"v{coding.CTCAE_VERSION} term{hint}", field=where)
            return found

        if self.ctcae_version != coding.CTCAE_VERSION:
            raise BadInput(f"protocol: ctcae_version: the ledger codes AEs to CTCAE "
                           f"v{coding.CTCAE_VERSION}, not {self.ctcae_version}",
                           field="ctcae_version")
        sections = [("adverse_events.synonyms", self.adverse_events.synonyms)]
        for name, regimen in self.regimens.items():
            where = f"regimens.{name}.adverse_events"
            sections.append((f"{where}.synonyms", regimen.adverse_events.synonyms))
            for rule in regimen.adverse_events.rules:
                term = known(f"{where}.rules", rule.term)
                if missing := set(rule.grades) - term.grades:
                    raise BadInput(f"protocol: {where}.rules: {term.term} has no grade "
                                   f"{sorted(missing)} in CTCAE v{coding.CTCAE_VERSION}",
                                   field=f"{where}.rules")
        for where, synonyms in sections:
            for synonym, target in synonyms.items():
                known(where, target)
                if coding.lookup(synonym) is not None:
                    raise BadInput(f"protocol: {where}: {synonym!r} is itself a CTCAE term; "
                                   f"a synonym cannot recode it", field=where)


def parse_protocol(text: str, *, source: str = "protocol") -> Protocol:
    try:
        return Protocol.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{source}: not valid TOML: {exc}", field="protocol") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "protocol"
        raise BadInput(f"{source}: {where}: {first['msg']}", field=where) from None


def protocol_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bundled_protocol_text() -> str:
    return resources.files("m22bol.domain.protocols").joinpath("m22bol.toml").read_text("utf-8")
