"""RECIST 1.1 response, derived from the measurements entered (`spec/recist.md`).

Pure functions of a subject's tumour assessments and the protocol's `Response` numbers: no I/O,
no clock. A person never types a response; everything here is recomputed from millimetres, so a
corrected measurement corrects every response after it.

Arithmetic is exact. Each measurement is read as the decimal it was written as (`12.1` is
121/10, not the nearest binary float) and compared exactly, as whole numbers of a unit every
measurement is a multiple of (`_scale`), so a 30.0% decrease is PR and a 20.0% increase is PD
without any epsilon. The 30%, 20% and 5 mm thresholds are RECIST's
own and live here; the protocol-specific numbers come from `Response`.

Readings of the spec where it leaves a choice open (a statistician should be able to check
each one):

- Baseline: several assessments on the same date are taken in entry order, the later entry
  being the later assessment. With an infusion but no assessment on or before it there is no
  baseline: nothing can be scored, every response is None and so is the BOR.
- Validity: `evaluate` validates the baseline and every later assessment and raises the same
  `RuleViolation` as the `validate_*` functions, so an invalid timeline never yields numbers.
  Assessments before the baseline (screening scans superseded by a later baseline) are not
  validated and get no response. At baseline every target must be measured (None refused as
  not measurable), organ and lesion id must be non-blank, and a new lesion is refused: all
  disease seen at baseline is baseline disease, target or non-target. At follow-up a target or
  non-target id unknown at baseline, or a target switching between node and non-node, is
  refused; the baseline's kind is the one scored.
- Sizes: 0 mm (disappeared), or from 0.1 to 1000 mm (`events.size_problem`, checked on entry
  and again here, `recist.invalid_measurement`); a lesion too small to measure is entered as
  5 mm. Below 0.1 mm a nadir would make the change from it overflow a float.
- Target sum at an assessment with an unmeasured target is None: a partial sum is not a sum of
  diameters, never becomes the nadir, and is used only to prove PD.
- PD is checked before CR, as the spec orders: a sum at least 20% and 5 mm over the nadir is PD
  even when every target node is still below 10 mm.
- "After a CR" means after any earlier assessment whose *target* response was CR; from then on
  a non-nodal target above 0 mm or a target node at >= `node_normal_below_mm` is PD.
- After an overall CR every non-target lesion was absent; one recorded `present` again later
  has reappeared, which is PD (RECIST 1.1: in the setting of CR, reappearance of any lesion).
- Non-target response: PD if any lesion is in unequivocal progression; otherwise NE if any
  baseline non-target lesion was not assessed (a missing lesion could still be progressing);
  otherwise non-CR/non-PD if any is present; otherwise CR. Non-target nodes carry no
  measurement here, so a node back to normal (< 10 mm) is recorded `absent`.
- A subject with neither target nor non-target disease at baseline has overall NE (PD with a
  new lesion).
- Percentages are rounded half away from zero to one decimal; the change from a nadir of 0 mm
  has no percentage (None), though PD by +5 mm still applies.
- Confirmation of a CR/PR: a later assessment at least `confirmation_min_days` after it with
  the same or a better response (CR confirms a PR; PR does not confirm a CR); assessments in
  between may be anything but PD. A CR followed only by PR is not a confirmed CR (the PR may
  be confirmed on its own by a later PR or CR). Only assessments up to the first PD count: a PD
  before the first assessment or between the two rules the pair out (as `spec/endpoints.md`
  states for the primary endpoint).
- BOR, from the first infusion up to and including the first overall PD: CR if a CR is
  confirmed; else PR if a PR is confirmed; else SD (non-CR/non-PD for a subject without target
  disease) if some assessment scored SD or better is dated at least `sd_min_days` after the
  first infusion (this is how an unconfirmed CR/PR falls back to SD); else PD if the period
  ends in PD; else NE. So an early SD then PD is PD, and early SD then nothing or NE is NE. BOR
  is None for a subject not treated yet or without any assessment after the baseline.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from m22bol.domain.errors import RuleViolation
from m22bol.domain.events import size_problem
from m22bol.domain.protocol import Response

CR = "CR"
PR = "PR"
SD = "SD"
PD = "PD"
NE = "NE"
NON_CR_NON_PD = "non-CR/non-PD"

TARGET_RESPONSES = frozenset({CR, PR, SD, PD, NE})
NON_TARGET_RESPONSES = frozenset({CR, NON_CR_NON_PD, PD, NE})
OVERALL_RESPONSES = frozenset({CR, PR, SD, PD, NE, NON_CR_NON_PD})

PRESENT = "present"
ABSENT = "absent"
PROGRESSION = "progression"
NON_TARGET_STATUSES = (PRESENT, ABSENT, PROGRESSION)

PR_MAX_FRACTION_OF_BASELINE = Fraction(70, 100)
PD_MIN_FRACTION_OF_NADIR = Fraction(120, 100)
PD_MIN_INCREASE_MM = Fraction(5)

GOODNESS = {CR: 5, PR: 4, SD: 3, NON_CR_NON_PD: 2, NE: 1, PD: 0}

# Every lymph node shares this organ key, and no stripped, case-folded organ name can be a tuple.
_NODES = ("lymph nodes",)


@dataclass(frozen=True)
class Target:
    """A target lesion measured at one assessment: longest diameter, short axis for a node."""

    lesion_id: str
    organ: str
    is_node: bool
    mm: float | None  # None: not evaluated


@dataclass(frozen=True)
class NonTarget:
    lesion_id: str
    organ: str
    status: str  # present | absent | progression


@dataclass(frozen=True)
class Assessment:
    date: date
    targets: tuple[Target, ...]
    non_targets: tuple[NonTarget, ...] = ()
    new_lesions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Callers building from JSON hand in lists; tuples keep the value hashable and immutable.
        for name in ("targets", "non_targets", "new_lesions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class AssessmentResponse:
    date: date
    is_baseline: bool
    target_sum_mm: float | None
    baseline_sum_mm: float | None
    nadir_sum_mm: float | None
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    target_response: str | None
    non_target_response: str | None
    new_lesions: bool
    overall_response: str | None


@dataclass(frozen=True)
class Confirmation:
    """A CR or PR at `date`, confirmed as `confirmed_as` by the assessment of `confirmed_on`."""

    date: date
    response: str
    confirmed_as: str
    confirmed_on: date


# --- validation -------------------------------------------------------------------------------


def validate_baseline(a: Assessment, params: Response) -> None:
    """Refuse a baseline that breaks the RECIST target-selection rules."""
    _check_entries(a)
    if a.new_lesions:
        raise RuleViolation(
            f"baseline assessment of {a.date} lists a new lesion ({', '.join(a.new_lesions)}); "
            "at baseline every lesion is baseline disease: record it as target or non-target",
            rule="recist.new_lesion_at_baseline", field="new_lesion")
    node_min = _mm(params.node_measurable_min_mm)
    lesion_min = _mm(params.measurable_min_mm)
    for t in a.targets:
        if t.mm is None:
            raise RuleViolation(
                f"target lesion {t.lesion_id} is not measured at baseline; a target lesion "
                "must be measurable", rule="recist.target_not_measurable", field="target")
        minimum, what = (node_min, "short axis") if t.is_node else (lesion_min, "longest diameter")
        if _mm(t.mm) < minimum:
            raise RuleViolation(
                f"target {'node' if t.is_node else 'lesion'} {t.lesion_id} ({t.organ}) has "
                f"{what} {_fmt(t.mm)} mm; measurable needs >= {_fmt(minimum)} mm",
                rule="recist.target_not_measurable", field="target")
    if len(a.targets) > params.max_target_lesions:
        raise RuleViolation(
            f"baseline declares {len(a.targets)} target lesions "
            f"({', '.join(t.lesion_id for t in a.targets)}); at most "
            f"{params.max_target_lesions} are allowed",
            rule="recist.max_targets", field="target")
    by_organ: dict[tuple[str, ...] | str, list[Target]] = {}
    for t in a.targets:
        by_organ.setdefault(_organ_key(t), []).append(t)
    for key, lesions in by_organ.items():
        if len(lesions) > params.max_targets_per_organ:
            where = "lymph nodes (one organ)" if key == _NODES else f"organ {lesions[0].organ!r}"
            raise RuleViolation(
                f"{where} has {len(lesions)} target lesions "
                f"({', '.join(t.lesion_id for t in lesions)}); at most "
                f"{params.max_targets_per_organ} per organ are allowed",
                rule="recist.max_targets_per_organ", field="target")


def validate_followup(baseline: Assessment, a: Assessment) -> None:
    """Refuse a later assessment that does not follow the lesions chosen at baseline.

    A baseline lesion missing from the assessment is not an error: it was not evaluated (NE).
    """
    _check_entries(a)
    base_targets = {t.lesion_id: t for t in baseline.targets}
    base_non_targets = {nt.lesion_id for nt in baseline.non_targets}
    for t in a.targets:
        known = base_targets.get(t.lesion_id)
        if known is None:
            raise RuleViolation(
                f"target lesion {t.lesion_id} was not a target at the baseline of "
                f"{baseline.date}; targets are chosen at baseline only (a new lesion is "
                "recorded as new)", rule="recist.unknown_target", field="target")
        if known.is_node != t.is_node:
            was, now = ("node", "non-nodal lesion") if known.is_node else ("non-nodal lesion",
                                                                           "node")
            raise RuleViolation(
                f"target {t.lesion_id} was a {was} at baseline and is entered as a {now}",
                rule="recist.lesion_kind_changed", field="target")
    for nt in a.non_targets:
        if nt.lesion_id not in base_non_targets:
            raise RuleViolation(
                f"non-target lesion {nt.lesion_id} was not a non-target at the baseline of "
                f"{baseline.date} (a new lesion is recorded as new)",
                rule="recist.unknown_non_target", field="non_target")


def _check_entries(a: Assessment) -> None:
    seen: set[str] = set()
    lesions: Iterable[Target | NonTarget] = (*a.targets, *a.non_targets)
    for lesion in lesions:
        field = "target" if isinstance(lesion, Target) else "non_target"
        if not lesion.lesion_id.strip():
            raise RuleViolation(f"a lesion of the assessment of {a.date} has no id",
                                rule="recist.lesion_id_required", field=field)
        if lesion.lesion_id in seen:
            raise RuleViolation(
                f"lesion {lesion.lesion_id} appears twice in the assessment of {a.date}",
                rule="recist.duplicate_lesion", field=field)
        seen.add(lesion.lesion_id)
        if not lesion.organ.strip():
            raise RuleViolation(f"lesion {lesion.lesion_id} has no organ or location",
                                rule="recist.organ_required", field=field)
    for t in a.targets:
        if t.mm is None:
            continue
        # The bound every entry already meets (`events.Lesion`), kept here too: outside it
        # the exact arithmetic below would overflow a float (a nadir of 2e-309 mm).
        problem = None if isinstance(t.mm, bool) else size_problem(t.mm)
        if problem:
            raise RuleViolation(f"target lesion {t.lesion_id}: {problem}",
                                rule="recist.invalid_measurement", field="target")
        if isinstance(t.mm, bool) or not math.isfinite(t.mm) or t.mm < 0:
            raise RuleViolation(
                f"target lesion {t.lesion_id}: {t.mm!r} is not a measurement in mm "
                "(0 or more; a vanished lesion is 0, one too small to measure is 5)",
                rule="recist.invalid_measurement", field="target")
    for nt in a.non_targets:
        if nt.status not in NON_TARGET_STATUSES:
            raise RuleViolation(
                f"non-target lesion {nt.lesion_id}: status {nt.status!r} is not one of "
                f"{', '.join(NON_TARGET_STATUSES)}",
                rule="recist.non_target_status", field="non_target")


# --- one assessment ----------------------------------------------------------------------------


def baseline_index(assessments: Sequence[Assessment], first_infusion: date | None) -> int | None:
    """Index (into `assessments`) of the baseline: the last one on or before the first infusion.

    Before any infusion it is the latest assessment. On equal dates the later entry wins.
    """
    candidates = [i for i, a in enumerate(assessments)
                  if first_infusion is None or a.date <= first_infusion]
    if not candidates:
        return None
    return max(candidates, key=lambda i: (assessments[i].date, i))


def target_response(baseline: Assessment, a: Assessment, nadir: int, after_cr: bool,
                    params: Response, unit: int) -> tuple[str | None, int | None]:
    """The target response of `a` and its sum of diameters (None unless every target measured).

    Sums are whole numbers of 1/`unit` mm (`_scale`), so every threshold is an exact integer
    comparison. `nadir` is the smallest full sum before `a`, baseline included; `after_cr`
    says whether an earlier assessment had a target CR. The response is None without target
    disease.
    """
    if not baseline.targets:
        return None, None
    return _target_response(baseline, a, nadir, after_cr, unit, _sum(baseline.targets, unit),
                            _units(params.node_normal_below_mm, unit),
                            _units(PD_MIN_INCREASE_MM, unit))


def _target_response(baseline: Assessment, a: Assessment, nadir: int, after_cr: bool,
                     unit: int, base_sum: int, normal_below: int,
                     pd_increase: int) -> tuple[str, int | None]:
    """`target_response` with the sums and thresholds that depend only on the baseline and
    the unit already in that unit (a `Scoring` keeps them from one assessment to the next)."""
    entered = {t.lesion_id: t.mm for t in a.targets}
    measured: list[tuple[bool, int]] = []
    for bt in baseline.targets:
        mm = entered.get(bt.lesion_id)
        if mm is not None:
            measured.append((bt.is_node, _units(mm, unit)))
    complete = len(measured) == len(baseline.targets)
    total = sum(mm for _, mm in measured)
    full_sum = total if complete else None

    # A partial sum can only be smaller than the full one, so if it already rose enough, PD holds.
    grew = (_at_least(total, PD_MIN_FRACTION_OF_NADIR, nadir) and total - nadir >= pd_increase)
    reappeared = after_cr and any(
        (mm >= normal_below) if is_node else (mm > 0) for is_node, mm in measured)
    if grew or reappeared:
        return PD, full_sum
    if not complete:
        return NE, None
    if all((mm < normal_below) if is_node else (mm == 0) for is_node, mm in measured):
        return CR, full_sum
    if _at_most(total, PR_MAX_FRACTION_OF_BASELINE, base_sum):
        return PR, full_sum
    return SD, full_sum


def non_target_response(baseline: Assessment, a: Assessment,
                        after_cr: bool = False) -> str | None:
    """Non-target response of `a`; None ("n/a") when the baseline had no non-target lesion.

    `after_cr`: an earlier assessment was an overall CR, so a lesion present now reappeared.
    """
    if not baseline.non_targets:
        return None
    entered = {nt.lesion_id: nt.status for nt in a.non_targets}
    statuses = [entered.get(nt.lesion_id) for nt in baseline.non_targets]
    if PROGRESSION in statuses or (after_cr and PRESENT in statuses):
        return PD
    if None in statuses:
        return NE
    if PRESENT in statuses:
        return NON_CR_NON_PD
    return CR


def overall_response(target: str | None, non_target: str | None, new_lesions: bool) -> str:
    """RECIST 1.1 Table 1 (and Table 2 for non-target disease only); None means none at baseline."""
    if new_lesions or target == PD or non_target == PD:
        return PD
    if target is None:
        return NE if non_target is None else non_target
    if target == CR:
        return CR if non_target in (CR, None) else PR
    return target


# --- a subject's timeline ----------------------------------------------------------------------


def evaluate(assessments: Sequence[Assessment], first_infusion: date | None,
             params: Response) -> list[AssessmentResponse]:
    """One response per assessment, in date order (entry order on equal dates).

    Raises `RuleViolation` when the baseline or a later assessment is invalid.
    """
    return scored(sorted(assessments, key=lambda a: a.date), first_infusion, params).responses


@dataclass
class Scored:
    """`evaluate`'s responses to assessments in date order, what they were scored with, and
    how to go on from the last: the baseline's index and the scoring after it (both None
    without a baseline)."""

    responses: list[AssessmentResponse]
    first_infusion: date | None
    params: Response
    baseline: int | None = None
    scoring: Scoring | None = None


def scored(ordered: Sequence[Assessment], first_infusion: date | None,
           params: Response) -> Scored:
    """`evaluate` of assessments already in date order, kept so that `score_next` can go on."""
    b = baseline_index(ordered, first_infusion)
    if b is None:
        return Scored([_unscored(a) for a in ordered], first_infusion, params)
    baseline = ordered[b]
    validate_baseline(baseline, params)
    for a in ordered[b + 1:]:
        validate_followup(baseline, a)
    scoring = Scoring(baseline, params, _scale(ordered[b:], params))
    responses = [_unscored(a) for a in ordered[:b]]
    responses.append(scoring.baseline_response())
    responses.extend(scoring.score(a) for a in ordered[b + 1:])
    return Scored(responses, first_infusion, params, b, scoring)


def resumable(done: Scored, first_infusion: date | None, params: Response) -> bool:
    """Whether `score_next` may go on from `done` under this day 0 and these numbers: the same
    ones, or day 0 was unknown and is on or after every assessment scored (the baseline, the
    latest assessment, is then the same)."""
    if done.params is not params:
        return False
    if first_infusion == done.first_infusion:
        return True
    return done.first_infusion is None and (
        not done.responses or done.responses[-1].date <= first_infusion)


def score_next(done: Scored, a: Assessment, first_infusion: date | None) -> AssessmentResponse:
    """Score one more assessment, dated on or after every one in `done`, and add it to `done`
    in place: what `scored` of them all would give, in time linear in `a` alone (a subject's
    walk scores each scan as it comes, and scoring every earlier scan again made the walk
    quadratic in its scans). Only where `resumable(done, first_infusion, ...)` holds.

    Raises `RuleViolation` as `scored` would; `done` is then part-changed (the walk it belongs
    to is dropped on a refusal)."""
    params = done.params
    done.first_infusion = first_infusion
    if first_infusion is None or a.date <= first_infusion:
        # The latest assessment on or before day 0 is the baseline: this one. Those before it,
        # the old baseline included, are unscored, and none comes after it.
        validate_baseline(a, params)
        if done.baseline is not None:
            old = done.scoring.baseline  # type: ignore[union-attr]
            done.responses[done.baseline] = _unscored(old)
        done.baseline, done.scoring = len(done.responses), Scoring(a, params, _scale([a], params))
        response = done.scoring.baseline_response()
    elif done.scoring is None:
        response = _unscored(a)  # no baseline: nothing can be scored
    else:
        validate_followup(done.scoring.baseline, a)
        response = done.scoring.score(a)
    done.responses.append(response)
    return response


class Scoring:
    """What scoring carries from one assessment to the next after the baseline: the nadir and
    the CR flags. Sums are whole numbers of 1/`unit` mm (`_scale`); an assessment written with
    a finer decimal than `unit` allows rescales them (exactly), so the responses do not depend
    on which unit was taken. Validation is the caller's: this only computes."""

    def __init__(self, baseline: Assessment, params: Response, unit: int):
        self.baseline = baseline
        self.params = params
        self.unit = unit
        self.base_sum = _sum(baseline.targets, unit) if baseline.targets else None
        self.nadir = self.base_sum
        self.after_cr = self.after_overall_cr = False
        # The thresholds in the unit of the sums, as `target_response` makes them each time.
        self.normal_below = _units(params.node_normal_below_mm, unit)
        self.pd_increase = _units(PD_MIN_INCREASE_MM, unit)

    def baseline_response(self) -> AssessmentResponse:
        total = _mm_of(self.base_sum, self.unit)
        return AssessmentResponse(
            date=self.baseline.date, is_baseline=True, target_sum_mm=total,
            baseline_sum_mm=total, nadir_sum_mm=None, change_from_baseline_pct=None,
            change_from_nadir_pct=None, target_response=None, non_target_response=None,
            new_lesions=False, overall_response=None)

    def score(self, a: Assessment) -> AssessmentResponse:
        self._rescale(a)
        unit, base_sum, nadir, baseline = self.unit, self.base_sum, self.nadir, self.baseline
        tr, full_sum = (_target_response(baseline, a, nadir, self.after_cr, unit, base_sum,
                                         self.normal_below, self.pd_increase)
                        if nadir is not None else (None, None))
        ntr = non_target_response(baseline, a, self.after_overall_cr)
        new = bool(a.new_lesions)
        overall = overall_response(tr, ntr, new)
        response = AssessmentResponse(
            date=a.date, is_baseline=False, target_sum_mm=_mm_of(full_sum, unit),
            baseline_sum_mm=_mm_of(base_sum, unit), nadir_sum_mm=_mm_of(nadir, unit),
            change_from_baseline_pct=_pct(full_sum, base_sum),
            change_from_nadir_pct=_pct(full_sum, nadir),
            target_response=tr, non_target_response=ntr, new_lesions=new,
            overall_response=overall)
        self.after_cr = self.after_cr or tr == CR
        self.after_overall_cr = self.after_overall_cr or overall == CR
        if full_sum is not None and nadir is not None and full_sum < nadir:
            self.nadir = full_sum
        return response

    def _rescale(self, a: Assessment) -> None:
        unit = self.unit
        for t in a.targets:
            if t.mm is not None and unit % _mm(t.mm).denominator:
                unit = math.lcm(unit, _mm(t.mm).denominator)
        if unit != self.unit:
            factor = unit // self.unit
            self.unit = unit
            if self.base_sum is not None:
                self.base_sum *= factor
            if self.nadir is not None:
                self.nadir *= factor
            self.normal_below *= factor
            self.pd_increase *= factor


def on_study(responses: Sequence[AssessmentResponse]) -> list[AssessmentResponse]:
    """The assessments after the baseline, in date order, up to and including the first PD."""
    ordered = sorted(responses, key=lambda r: r.date)
    baselines = [i for i, r in enumerate(ordered) if r.is_baseline]
    if not baselines:
        return []
    rows: list[AssessmentResponse] = []
    for r in ordered[baselines[-1] + 1:]:
        rows.append(r)
        if r.overall_response == PD:
            break
    return rows


def confirmed(responses: Sequence[AssessmentResponse], params: Response) -> list[Confirmation]:
    """Every CR or PR confirmed (by the same or better) before the first PD.

    For a window (a year, before local treatment) pass only the responses dated inside it.
    """
    rows = on_study(responses)
    found: list[Confirmation] = []
    for i, first in enumerate(rows):
        if first.overall_response not in (CR, PR):
            continue
        level = first.overall_response
        confirming = next((later for later in rows[i + 1:]
                           if later.overall_response in (CR, PR)
                           and GOODNESS[later.overall_response] >= GOODNESS[level]
                           and (later.date - first.date).days >= params.confirmation_min_days),
                          None)
        if confirming is not None:
            found.append(Confirmation(date=first.date, response=level, confirmed_as=level,
                                      confirmed_on=confirming.date))
    return found


def best_overall_response(responses: Sequence[AssessmentResponse], first_infusion: date | None,
                          params: Response) -> str | None:
    """Best overall response from the first infusion up to the first PD (see module docstring)."""
    if first_infusion is None:
        return None
    rows = on_study(responses)
    if not rows:
        return None
    levels = {c.confirmed_as for c in confirmed(responses, params)}
    for level in (CR, PR):
        if level in levels:
            return level
    stable = NON_CR_NON_PD if all(r.target_response is None for r in rows) else SD
    if any(r.overall_response in (CR, PR, SD, NON_CR_NON_PD)
           and (r.date - first_infusion).days >= params.sd_min_days for r in rows):
        return stable
    return PD if rows[-1].overall_response == PD else NE


# --- arithmetic --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _mm(value: float | int) -> Fraction:
    # Cached: parsing the decimal is much of a replay's RECIST time, and a trial has few
    # distinct measurements. repr() of a float is the shortest decimal that reads back to
    # it: the number as written.
    return Fraction(value) if isinstance(value, int) else Fraction(repr(float(value)))


def _scale(assessments: Iterable[Assessment], params: Response) -> int:
    """A unit, 1/n mm, in which every measurement of `assessments` and every RECIST length is
    a whole number: the least common multiple of their decimal denominators (12.15 mm needs
    1/20 mm). Sums and thresholds then compare as integers, exactly as the fractions would,
    at a fraction of the cost (`tests/unit/test_recist_exact.py` checks the two agree)."""
    return math.lcm(_mm(params.node_normal_below_mm).denominator,
                    PD_MIN_INCREASE_MM.denominator,
                    *(_mm(t.mm).denominator for a in assessments for t in a.targets
                      if t.mm is not None))


def _units(value: float | int | Fraction, unit: int) -> int:
    """`value` mm as a whole number of 1/`unit` mm (`unit` from `_scale`, so it divides)."""
    exact = value if isinstance(value, Fraction) else _mm(value)
    return exact.numerator * (unit // exact.denominator)


def _sum(targets: Iterable[Target], unit: int) -> int:
    return sum(_units(t.mm, unit) for t in targets if t.mm is not None)


def _at_least(x: int, fraction: Fraction, y: int) -> bool:
    """x >= fraction * y, in integers."""
    return x * fraction.denominator >= fraction.numerator * y


def _at_most(x: int, fraction: Fraction, y: int) -> bool:
    """x <= fraction * y, in integers."""
    return x * fraction.denominator <= fraction.numerator * y


def _mm_of(value: int | None, unit: int) -> float | None:
    # int / int is correctly rounded, so this is float(Fraction(value, unit)) exactly.
    return None if value is None else value / unit


def _pct(now: int | None, ref: int | None) -> float | None:
    """The change from `ref` in percent, rounded half away from zero to one decimal.

    Both in the same unit, and a sum is never negative: tenths of a percent are
    1000 * change / ref, and adding a half before the floor is (2000 * |change| + ref) //
    (2 * ref)."""
    if now is None or ref is None or ref == 0:
        return None
    change = now - ref
    tenths = (2000 * abs(change) + ref) // (2 * ref)
    return (tenths if change >= 0 else -tenths) / 10


def _fmt(value: float | Fraction) -> str:
    return f"{float(value):g}"


def _organ_key(t: Target) -> tuple[str, ...] | str:
    return _NODES if t.is_node else t.organ.strip().casefold()


def _unscored(a: Assessment) -> AssessmentResponse:
    return AssessmentResponse(
        date=a.date, is_baseline=False, target_sum_mm=None, baseline_sum_mm=None,
        nadir_sum_mm=None, change_from_baseline_pct=None, change_from_nadir_pct=None,
        target_response=None, non_target_response=None, new_lesions=bool(a.new_lesions),
        overall_response=None)
