"""The protocol as data: a pydantic model of the TOML file that `init` registers.

Rules read every number from here, so an amendment (a new basket, another drug) is a new file,
never new code.
"""

from __future__ import annotations

import hashlib
import tomllib
from importlib import resources
from typing import Literal

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
