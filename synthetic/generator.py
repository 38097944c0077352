"""A synthetic M22BOL trial: for N patients and a seed, the commands a site would enter.

`generate` yields one `DemoSubject` per registered subject, each with its commands in the
order a site enters them (clinical order; registration first, death last on its day). It does
no I/O: `cli/demo.py` feeds the lists to `TrialLedger.execute_all`, the one write path, so the
rules judge every generated fact exactly as they judge a person's entry.

The label's rules live in one place, the domain. While a subject's treatment course is built,
each fact the course hangs on (screening, enrolment, infusions, the AEs, LVEF readings and
decisions that change the course, local treatment) is decided at once by the pure domain
(`domain.decide.decide_subject` on an in-memory Patient, with a clock fixed at `today`), and
the story reads what the rules print to choose its next step: the expected dose, the dose
level in force and the next due date of an infusion, the `action` and `treatment_state` after
an AE or LVEF reading (interrupt, resume, resume one level lower, discontinue). The story
proposes the clinical facts; the rules say what they mean for the course.

The same (patients, seed, today) always gives the same commands: each subject draws from its
own `random.Random` seeded by (seed, index), so no subject's story depends on another's.

Every number the story needs to aim at a rule's branch comes from the protocol (cycle length
and window, lesion limits, windows); the clinical colour (how often what happens, how lesions
shrink) is this module's own. Where the story wants a protocol deviation (a late first cycle,
a dose out of tolerance, an early cycle), it names the rule and the reason; the command
carries the reason only if the rules find that deviation, and a deviation the story did not
ask for stops the generator as the ledger would refuse it, so a generator bug shows up as a
refusal instead of being recorded as a deviation.

How a subject's story is built (`_Story.build`), in this order because each step needs the
dates of the one before:
1. screening: consent, eligibility (screen failures fail for the usual reasons: HER2-negative,
   more than three lesions, not all curable, low LVEF, ECOG 2), enrolment;
2. disease and fate: the lesions at baseline (targets chosen by RECIST's limits), the response
   course (complete, partial, stable, early progression), a later relapse, death, withdrawal;
3. the scan calendar from cycle 1 (every 9-12 weeks, sparser later), which fixes the date of
   the progression scan, the date treatment must stop;
4. the treatment course, decided fact by fact between infusions: delays, AEs and LVEF
   readings whose consequences the rules decide, decisions to interrupt or reduce, local
   treatment after the last neo-adjuvant cycle;
5. the assessments (scan measurements follow the response course, surgery and radiotherapy),
   PET, ctDNA, routine LVEF, AEs the label's tables do not act on, contacts, death. These do
   not change the course, so the ledger alone judges them;
6. everything dated after today, after death, or after withdrawal (bar contacts and the death)
   is dropped, and never decided. Dropping later facts never invalidates earlier ones: the
   rules walk in clinical order.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from m22bol.domain import commands as c
from m22bol.domain.decide import Context, decide_subject
from m22bol.domain.errors import DeviationRefused, LedgerError
from m22bol.domain.events import Lesion, NonTargetLesion
from m22bol.domain.patient import Patient, project_patient
from m22bol.domain.protocol import Protocol, Regimen, bundled_protocol_text, parse_protocol
from m22bol.domain.rules.safety import lvef_band
from m22bol.domain.rules.treatment import COMPLETED, DISCONTINUED, INTERRUPTED, NOT_STARTED

# A fixed data cut-off, so that a seed gives the same trial on any day after it; the CLI passes
# an earlier date only when the ledger's clock is behind it.
DATA_CUTOFF = date(2026, 11, 26)
ACCRUAL = (date(2021, 1, 4), date(2024, 12, 20))

# Sites and their share of accrual; dose banding (rounding to 10 mg) is a site habit.
SITES = (("S01", 0.22, False), ("S02", 0.18, True), ("S03", 0.14, False), ("S04", 0.12, False),
         ("S05", 0.10, True), ("S06", 0.09, False), ("S07", 0.08, False), ("S08", 0.07, True))

SCREEN_FAILURE = 0.16
# Response course of an enrolled subject.
COURSES = (("complete", 0.30), ("partial", 0.40), ("stable", 0.18), ("early-pd", 0.12))
# Chance of a relapse after the response, by course, over the whole follow-up.
RELAPSE = {"complete": 0.14, "partial": 0.32, "stable": 0.5}
PCR = {"complete": 0.7, "partial": 0.35, "stable": 0.1, "early-pd": 0.0}
WITHDRAWAL = 0.025
WITHDRAWAL_BEFORE_TREATMENT = 0.008
OTHER_DEATH = 0.015

# Events between two infusions that change the course, with their chance per window.
WINDOW_EVENTS = (
    ("neutropenia-3", 0.012), ("neutropenia-4", 0.004), ("platelets-3", 0.005),
    ("platelets-4", 0.002), ("febrile-neutropenia", 0.0012), ("pneumonitis-1", 0.004),
    ("pneumonitis-2", 0.004), ("pneumonitis-3", 0.0012), ("pneumonitis-5", 0.0003),
    ("heart-failure", 0.0005), ("lvef-recover", 0.003), ("lvef-confirm", 0.0008),
    ("decision-interrupt", 0.01), ("decision-reduce", 0.007),
)
# Adverse events that the label's tables do not act on: (term, chance, grades and weights).
MILD_AES = (
    ("Nausea", 0.75, ((1, 60), (2, 35), (3, 5))),
    ("Fatigue", 0.5, ((1, 55), (2, 40), (3, 5))),
    ("Alopecia", 0.38, ((1, 75), (2, 25))),
    ("Vomiting", 0.3, ((1, 70), (2, 28), (3, 2))),
    ("Diarrhea", 0.25, ((1, 70), (2, 27), (3, 3))),
    ("Decreased appetite", 0.25, ((1, 70), (2, 30))),
    ("Anemia", 0.3, ((1, 50), (2, 40), (3, 10))),
    ("Neutrophil count decreased", 0.15, ((1, 40), (2, 60))),
    ("Constipation", 0.2, ((1, 80), (2, 20))),
    ("Stomatitis", 0.12, ((1, 75), (2, 25))),
)
COMPLICATIONS = (
    ("I", 30, "seroma"), ("I", 6, "wound dehiscence, managed at the bedside"),
    ("II", 25, "wound infection treated with antibiotics"),
    ("II", 8, "postoperative atrial fibrillation"),
    ("IIIa", 10, "seroma requiring aspiration"), ("IIIa", 4, "pneumothorax requiring a drain"),
    ("IIIb", 8, "haematoma requiring re-operation"),
    ("IVa", 4, "postoperative pneumonia requiring intensive care"),
    ("II-d", 5, "lymphoedema present at discharge"),
)
CT_ASSAY = "Signatera"


@dataclass(frozen=True)
class DemoSubject:
    subject: str
    commands: list[c.Command]
    # What a monitor does with the record afterwards (queries, source verification).
    reviews: list[Review] = field(default_factory=list)


def generate(patients: int, seed: int = 1, *, protocol: Protocol | None = None,
             today: date = DATA_CUTOFF, accrual: tuple[date, date] = ACCRUAL,
             first: int = 0) -> Iterator[DemoSubject]:
    """The subjects `first` .. `first + patients - 1` of the trial for `seed`, in accrual order.

    `first` lets a caller build a large trial in slices; consent dates spread evenly over the
    accrual period whatever the slice.
    """
    protocol = protocol or parse_protocol(bundled_protocol_text())
    start, end = accrual[0], min(accrual[1], today)
    total = first + patients
    width = max(3, len(str(total)))
    span = max(1, (end - start).days)
    for i in range(first, total):
        rng = random.Random(f"m22bol-demo/{seed}/{i}")
        consent = start + timedelta(days=int((i + rng.random()) * span / total))
        subject = f"M22-{i + 1:0{width}d}"
        commands = _Story(subject, rng, protocol, today, consent).build()
        yield DemoSubject(subject, commands, review(subject, commands, today))


def describe(subjects: Iterable[DemoSubject]) -> dict[str, Any]:
    """How many subjects and commands of each kind: what a run of the demo entered."""
    kinds: Counter[str] = Counter()
    n = 0
    for s in subjects:
        n += 1
        kinds.update(cmd.name for cmd in s.commands)
    return {"subjects": n, "commands": sum(kinds.values()),
            "by_command": dict(sorted(kinds.items()))}


# --- one subject --------------------------------------------------------------------------------


def _days(n: int) -> timedelta:
    return timedelta(days=n)


@dataclass
class _Lesion:
    lesion_id: str
    organ: str
    kind: str  # "target", "node" (a target lymph node), "non-target"
    size: float  # mm at baseline: longest diameter, short axis for a node
    site: str  # "primary", "axilla", "liver", "lung", "bone", "node"
    final: float = 0.0  # what the drug shrinks it to
    removed: date | None = None
    irradiated: date | None = None
    rt_floor: float = 0.0
    gone_after_rt: bool = False
    # The last measurement entered. Measurements never grow before the progression scan, so
    # measuring noise can never fake a PD (nor a reappearance after a CR).
    last_mm: float | None = None


@dataclass
class _Entry:
    when: date
    rank: int  # order on the same day: registration, assessments, treatment, death
    seq: int
    kind: type[c.Command]
    values: dict[str, Any]
    last: date  # the latest date the fact holds (radiotherapy end)


@dataclass
class _Treatment:
    """The course as the story knows it: the dates it gave, and what the rules last printed of
    it. Nothing here is derived by this module; the rules' outputs fill it."""

    cycles: list[tuple[int, date]] = field(default_factory=list)
    state: str = NOT_STARTED  # `treatment_state` as last printed
    level: float | None = None  # `dose_level_mg_per_kg` in force, as last printed
    next_due: date | None = None  # `next_cycle_due` of the last infusion
    discontinued: date | None = None  # the date of the fact the rules discontinued it on
    completed: date | None = None
    local_complete: date | None = None
    quiet_from: dict[int, date] = field(default_factory=dict)  # by cycle: course steady since

    @property
    def over(self) -> bool:
        return self.state in (DISCONTINUED, COMPLETED)

    def date_of(self, cycle: int) -> date | None:
        return next((d for n, d in self.cycles if n == cycle), None)

    @property
    def last_infusion(self) -> date | None:
        return self.cycles[-1][1] if self.cycles else None

    def told(self, when: date, output: dict[str, Any]) -> None:
        """Take in what the rules printed for a fact dated `when`."""
        if "dose_level_mg_per_kg" in output:
            self.level = output["dose_level_mg_per_kg"]
        if "next_cycle_due" in output:
            self.next_due = output["next_cycle_due"]
        if "treatment_state" not in output:
            return
        state = output["treatment_state"]
        if state == DISCONTINUED and self.state != DISCONTINUED:
            self.discontinued = when
        if state == COMPLETED and self.state != COMPLETED:
            self.completed = when
        self.state = state


class _Rules:
    """The pure domain deciding one subject's commands in memory, as the ledger will: the same
    `decide_subject`, the protocol in force, a clock fixed at the data cut-off."""

    def __init__(self, subject: str, protocol: Protocol, today: date):
        self.subject = subject
        self.protocol = protocol
        self.ctx = Context(actor="m22bol-demo", now=datetime.combine(today, time(12), UTC))
        self.patient: Patient | None = None

    def decide(self, command: c.SubjectCommand) -> dict[str, Any]:
        """Decide and keep the fact; what the rules printed."""
        decision = self._decision(command)
        self.patient = project_patient(self.patient, decision.events)
        if decision.walked is not None:
            # Kept, as the ledger keeps it: the next fact that comes last extends this walk
            # instead of walking the subject's whole timeline again.
            self.patient.keep_walk(decision.walked)
        return decision.output

    def ask(self, command: c.SubjectCommand) -> dict[str, Any]:
        """What the rules would print, without keeping the fact. The kept walk is extended
        by the asked fact, so the patient gives it up and the next `decide` walks anew."""
        return self._decision(command).output

    def _decision(self, command: c.SubjectCommand):
        try:
            return decide_subject(command, self.patient, self.protocol, self.ctx)
        except LedgerError as error:
            # The generator, not a person, made the command: a bug in this module.
            error.message = f"demo generator, subject {self.subject}: {error.message}"
            error.args = (error.message,)
            raise


class _Story:
    def __init__(self, subject: str, rng: random.Random, protocol: Protocol, today: date,
                 consent: date):
        self.subject = subject
        self.rng = rng
        self.protocol = protocol
        self.today = today
        self.consent = consent
        self.rules = _Rules(subject, protocol, today)
        self.course = _Treatment()
        self.entries: list[_Entry] = []
        self.ae_count = 0
        self.death: tuple[date, str] | None = None
        self.withdrawal: date | None = None
        self.conserving = False
        self.nadir: float | None = None
        self.restaging: date | None = None

    # --- recording ------------------------------------------------------------------------------

    def add(self, when: date, kind: type[c.Command], rank: int = 2, last: date | None = None,
            **values: Any) -> _Entry:
        """A fact for the record; the ledger judges it with the rest."""
        values = {k: v for k, v in values.items() if v is not None}
        entry = _Entry(when, rank, len(self.entries), kind, values, last or when)
        self.entries.append(entry)
        return entry

    def decide(self, when: date, kind: type[c.Command], rank: int = 2, last: date | None = None,
               deviations: dict[str, str] | None = None, **values: Any) -> dict[str, Any] | None:
        """A fact the course hangs on: recorded and decided by the rules now; what they printed,
        or None for a fact that falls outside the record (after today, death or withdrawal).

        `deviations` maps each rule the story breaks on purpose to the reason the site gives;
        the command carries the reasons of the deviations the rules find, and no other.
        """
        entry = self.add(when, kind, rank, last, **values)
        if not self._recorded(entry):
            return None
        deviations = deviations or {}
        reason = "; ".join(dict.fromkeys(deviations.values())) or None
        given = {"deviation_reason": reason} if reason else {}
        output = self.rules.decide(kind(subject=self.subject, **given, **entry.values))
        found = [d["rule"] for d in output.get("deviations", ())]
        if unasked := [rule for rule in found if rule not in deviations]:
            raise DeviationRefused(f"demo generator, subject {self.subject}: {kind.name} on "
                                   f"{when} breaks {', '.join(unasked)}, which the story did "
                                   "not ask for", rule=unasked[0])
        if found:
            entry.values["deviation_reason"] = "; ".join(dict.fromkeys(deviations[r]
                                                                       for r in found))
        self.course.told(when, output)
        return output

    def _recorded(self, entry: _Entry) -> bool:
        return entry.last <= self._horizon(entry.kind)

    def _horizon(self, kind: type[c.Command]) -> date:
        """The last date a fact of `kind` stays in the record on, as far as the story knows
        yet: today, the death, and the withdrawal (bar contacts and the death)."""
        ends = [self.today]
        if self.death:
            ends.append(self.death[0])
        if self.withdrawal and kind not in (c.Contact, c.Death):
            ends.append(self.withdrawal)
        return min(ends)

    def new_ae(self, term: str, grade: int, onset: date, *, serious: bool = False,
               related: bool | None = True, decide: bool = True) -> str:
        self.ae_count += 1
        ae_id = f"tmp{self.ae_count}"
        (self.decide if decide else self.add)(
            onset, c.AdverseEvent, term=term, grade=grade, onset=onset, serious=serious,
            related=related, id=ae_id)
        return ae_id

    def update_ae(self, ae_id: str, when: date, grade: int, *, decide: bool = True) -> None:
        (self.decide if decide else self.add)(when, c.UpdateAdverseEvent, ae_id=ae_id, date=when,
                                              grade=grade)

    def resolve_ae(self, ae_id: str, when: date, *, decide: bool = True) -> None:
        (self.decide if decide else self.add)(when, c.ResolveAdverseEvent, ae_id=ae_id,
                                              date=when)

    def die(self, when: date, cause: str) -> None:
        if self.death is None or when < self.death[0]:
            self.death = (when, cause)

    def commands(self) -> list[c.Command]:
        if self.death:
            self.add(self.death[0], c.Death, rank=9, date=self.death[0], cause=self.death[1])
        if self.withdrawal:
            self.add(self.withdrawal, c.Withdraw, rank=8, date=self.withdrawal,
                     reason=self.rng.choice(("patient no longer wishes to take part",
                                             "moved abroad; consent withdrawn")))
        kept = [e for e in sorted(self.entries, key=lambda e: (e.when, e.rank, e.seq))
                if self._recorded(e)]
        # AE ids in the order the site reports them, as a site numbers its AE forms.
        ids: dict[str, str] = {}
        for e in kept:
            if e.kind is c.AdverseEvent:
                ids[e.values["id"]] = f"AE{len(ids) + 1}"
        out = []
        for e in kept:
            values = dict(e.values)
            if "id" in values:
                values["id"] = ids[values["id"]]
            if "ae_id" in values:
                if values["ae_id"] not in ids:  # its report fell after the cut
                    continue
                values["ae_id"] = ids[values["ae_id"]]
            out.append(e.kind(subject=self.subject, **values))
        return out

    # --- the story ------------------------------------------------------------------------------

    def build(self) -> list[c.Command]:
        rng = self.rng
        site, self.banding = _weighted(rng, [((s, b), w) for s, w, b in SITES])
        age = max(28, min(84, round(rng.gauss(55, 11))))
        sex = "male" if rng.random() < 0.01 else "female"
        self.decide(self.consent, c.Register, rank=0, site=site, consent_date=self.consent,
                    birth_year=self.consent.year - age, sex=sex)
        assessed = self.consent + _days(rng.randint(0, 10))
        if not self._screen(assessed):
            return self.commands()
        self._enrol(assessed)
        return self.commands()

    def _screen(self, assessed: date) -> bool:
        """The eligibility assessment; False for a screen failure (the protocol decides)."""
        rng = self.rng
        values: dict[str, Any] = {
            "her2": "positive",
            "er": "positive" if rng.random() < 0.58 else "negative",
            "prior_therapy": "none" if rng.random() < 0.5 else "chemo-anti-her2",
            "distant_lesions": _weighted(rng, [(1, 45), (2, 35), (3, 20)]),
            "all_lesions_curable": True,
            "lvef": float(rng.randint(52, 72)),
            "ecog": 0 if rng.random() < 0.7 else 1,
        }
        if rng.random() < SCREEN_FAILURE:
            # sorted: a set's order follows PYTHONHASHSEED, and the draws below must not
            for reason in sorted({_weighted(rng, [("her2", 30), ("lesions", 25), ("curable", 20),
                                                 ("lvef", 12), ("ecog", 13)])
                                  for _ in range(1 if rng.random() < 0.85 else 2)}):
                if reason == "her2":
                    values["her2"] = "negative"
                elif reason == "lesions":
                    values["distant_lesions"] = rng.randint(4, 8)
                elif reason == "curable":
                    values["all_lesions_curable"] = False
                elif reason == "lvef":
                    values["lvef"] = float(rng.randint(38, 49))
                else:
                    values["ecog"] = 2
        output = self.decide(assessed, c.AssessEligibility, date=assessed, **values)
        # Whether the tumour sheds ctDNA is the patient's own: screening and baseline agree.
        self.ctdna_baseline = rng.random() < 0.86
        if rng.random() < 0.3:
            self._ctdna(assessed, self.ctdna_baseline)
        self.eligibility = values
        return output is not None and output["eligible"]

    def _enrol(self, assessed: date) -> None:
        rng = self.rng
        e = self.eligibility
        self.de_novo = e["prior_therapy"] == "none"
        self.baseline_lvef = int(e["lvef"])
        self.enrolled = assessed + _days(rng.randint(1, 7))
        self.weight = self.enrol_weight = round(rng.uniform(48, 95), 1)
        output = self.decide(self.enrolled, c.Enrol, date=self.enrolled, weight_kg=self.weight)
        if output is None:  # enrolled after the data cut-off
            return
        # The rules stratify: the regimen is the one of the basket they printed.
        self.regimen: Regimen = self.protocol.regimen_of(output["basket"])

        reg = self.regimen
        window = reg.first_cycle_within_days_of_enrolment
        late_c1 = rng.random() < 0.015
        self.c1 = self.enrolled + _days(rng.randint(window + 1, window + 7) if late_c1
                                        else rng.randint(2, min(21, window)))
        self.c1_deviations = ({"schedule.first_cycle_late":
                               "first infusion postponed: no infusion-unit capacity"}
                              if late_c1 else {})

        self.course_kind = _weighted(rng, COURSES)
        self.lesions = self._disease(e["distant_lesions"])
        # Days for the drug to take a lesion two thirds of the way to where it ends up.
        self.tau = rng.uniform(22, 40) if self.course_kind == "complete" else rng.uniform(35, 75)
        self.pcr = rng.random() < PCR[self.course_kind]
        self.scan_dates = self._scan_calendar()
        self.pd_kind: str | None = None
        self.pd_index: int | None = None
        self.relapse: date | None = None
        if self.course_kind == "early-pd":
            self.pd_index = 1 if rng.random() < 0.55 else 2
            self.pd_kind = _weighted(rng, [("growth", 60), ("new", 25), ("non-target", 15)])
        elif rng.random() < RELAPSE[self.course_kind]:
            self.relapse = self.c1 + _days(int(200 + rng.expovariate(1 / 500)))
            self.pd_index = next((i for i, d in enumerate(self.scan_dates) if d >= self.relapse),
                                 None)
            self.pd_kind = "new" if rng.random() < 0.75 else "growth"
        self.pd_date = self.scan_dates[self.pd_index] if self.pd_index is not None else None
        if self.pd_date is not None:
            self.relapse = self.relapse or self.pd_date - _days(rng.randint(10, 40))
            if rng.random() < (0.75 if self.course_kind == "early-pd" else 0.45):
                self.die(self.pd_date + _days(rng.randint(120, 1300)), "progressive disease")
        if rng.random() < OTHER_DEATH:
            self.die(self.c1 + _days(rng.randint(200, 2000)),
                     rng.choice(("cardiovascular event", "second primary cancer", "infection")))
        if rng.random() < WITHDRAWAL_BEFORE_TREATMENT:
            self.withdrawal = self.enrolled + _days(rng.randint(1, 3))
        elif rng.random() < WITHDRAWAL:
            self.withdrawal = self.c1 + _days(rng.randint(30, 600))

        stop = min(filter(None, (self.pd_date, self.today + _days(1))))
        self._treat(stop)
        if self.pd_date is not None and not self.course.over and self.course.cycles:
            when = self.pd_date + _days(rng.randint(1, 10))
            self.decide(when, c.Discontinue, date=when, reason="disease progression (RECIST 1.1)")
        self._baseline_assessments()
        self._scans()
        self._pets()
        self._ctdna_course()
        self._routine_lvef()
        self._mild_aes()
        self._contacts()

    # --- disease --------------------------------------------------------------------------------

    def _disease(self, distant: int) -> list[_Lesion]:
        """Baseline lesions; targets by RECIST's limits (the protocol's numbers), at most 3."""
        rng = self.rng
        r = self.protocol.response
        found: list[tuple[str, str, float, bool]] = []  # site, organ, mm, is_node
        if self.de_novo:
            side = rng.choice(("left", "right"))
            self.side = side
            found.append(("primary", "breast", rng.uniform(16, 55), False))
            if rng.random() < 0.65:
                found.append(("axilla", f"{side} axillary lymph node", rng.uniform(11, 28), True))
        organs = [_weighted(rng, [("liver", 30), ("lung", 25), ("bone", 30), ("node", 15)])
                  for _ in range(distant)]
        if not self.de_novo and not any(o in ("liver", "lung") for o in organs):
            organs[0] = rng.choice(("liver", "lung"))  # keep measurable disease to follow
        for organ in organs:
            if organ == "liver":
                found.append(("liver", "liver", rng.uniform(11, 38), False))
            elif organ == "lung":
                found.append(("lung", "lung", rng.uniform(10, 30), False))
            elif organ == "bone":
                found.append(("bone", rng.choice(("bone, T9 vertebra", "bone, left iliac wing",
                                                  "bone, sternum", "bone, right femur")), 0.0,
                              False))
            else:
                found.append(("node", rng.choice(("supraclavicular lymph node",
                                                  "mediastinal lymph node",
                                                  "internal mammary lymph node")),
                              rng.uniform(11, 24), True))
        lesions: list[_Lesion] = []
        per_organ: Counter[str] = Counter()
        max_targets = min(3, r.max_target_lesions)
        n_target = n_node = n_non = 0
        for site, organ, mm, is_node in sorted(found, key=lambda f: -f[2]):
            key = "nodes" if is_node else organ
            minimum = r.node_measurable_min_mm if is_node else r.measurable_min_mm
            measurable = site != "bone" and mm >= minimum
            if (measurable and n_target + n_node < max_targets
                    and per_organ[key] < r.max_targets_per_organ):
                per_organ[key] += 1
                if is_node:
                    n_node += 1
                    lesions.append(_Lesion(f"N{n_node}", organ, "node", round(mm), site))
                else:
                    n_target += 1
                    lesions.append(_Lesion(f"L{n_target}", organ, "target", round(mm), site))
            else:
                n_non += 1
                lesions.append(_Lesion(f"NT{n_non}", organ, "non-target", round(mm), site))
        for lesion in lesions:
            lesion.final = self._final_size(lesion)
        return lesions

    def _final_size(self, lesion: _Lesion) -> float:
        rng = self.rng
        kind = self.course_kind
        if kind == "complete":
            return rng.uniform(4, 8.4) if lesion.kind == "node" else 0.0
        if kind == "partial":
            return lesion.size * rng.uniform(0.2, 0.55)
        return lesion.size * rng.uniform(0.82, 1.0)

    def _scan_calendar(self) -> list[date]:
        """CT dates after cycle 1: every 9-12 weeks for two years, then 12-16, then 24-28.

        At least three, past today if need be: an early progression is found on the first or
        second follow-up scan, which a data cut-off soon after enrolment has not reached yet.
        """
        rng = self.rng
        dates = [self.c1 + _days(rng.randint(56, 70))]
        while dates[-1] <= self.today or len(dates) < 3:
            years = (dates[-1] - self.c1).days / 365.25
            gap = (rng.randint(63, 84) if years < 2 else rng.randint(84, 112) if years < 3
                   else rng.randint(168, 196))
            dates.append(dates[-1] + _days(gap))
        return dates

    # --- treatment ------------------------------------------------------------------------------

    def _treat(self, stop: date) -> None:
        """Infusions until the rules print the course as over, or up to `stop` (the
        progression scan)."""
        rng = self.rng
        reg = self.regimen
        course = self.course
        self.stop = stop
        while not course.over:
            cycle = len(course.cycles) + 1
            prev = course.last_infusion
            deviations: dict[str, str] = {}
            if prev is None:
                due, deviations = self.c1, self.c1_deviations
            elif cycle == reg.neoadjuvant_cycles + 1:
                done = self._local(prev)
                if done is None:
                    return
                course.local_complete = done
                due = max(done + _days(rng.randint(7, 21)),
                          prev + _days(reg.min_days_between_cycles))
                course.quiet_from[cycle] = done
            else:
                due = course.next_due  # the next_cycle_due the last infusion printed
                roll = rng.random()
                if roll < 0.1:
                    due += _days(rng.randint(2, 10))  # a delay: holidays, logistics
                elif roll < 0.14:
                    due = prev + _days(reg.min_days_between_cycles)  # the earliest on time
                elif roll < 0.142:
                    due = prev + _days(reg.min_days_between_cycles - rng.randint(1, 2))
                    deviations = {"schedule.too_early":
                                  "given early before the patient's planned travel"}
                due, course.quiet_from[cycle] = self._window(prev, due)
                if course.over:
                    self._after_early_stop(course.discontinued)
                    return
            if due >= stop or due > self._horizon(c.Infuse):
                return
            self._infuse(cycle, due, deviations)

    def _infuse(self, cycle: int, when: date, deviations: dict[str, str]) -> None:
        rng = self.rng
        drift = min(4.0, max(-8.0, self.weight - self.enrol_weight + rng.gauss(0, 0.6)))
        self.weight = round(self.enrol_weight + drift, 1)
        # A site prepares the dose the rules expect for this day and weight (some round it to
        # 10 mg). Asked with a placeholder dose under a placeholder reason, so that the
        # question itself is not refused; the answer is not kept.
        asked = self.rules.ask(c.Infuse(subject=self.subject, cycle=cycle, date=when,
                                        weight_kg=self.weight, dose_mg=1.0,
                                        deviation_reason="asking for the expected dose"))
        expected = asked["expected_dose_mg"]
        dose = round(expected / 10) * 10 if self.banding else round(expected)
        if rng.random() < 0.004:
            dose = round(expected * rng.uniform(1.06, 1.09))
            deviations = {**deviations, "dose.out_of_tolerance":
                          "dose prepared for the screening weight (pharmacy error, reported)"}
        if self.decide(when, c.Infuse, cycle=cycle, date=when, weight_kg=self.weight,
                       dose_mg=float(dose), deviations=deviations) is not None:
            self.course.cycles.append((cycle, when))

    def _window(self, prev: date, due: date) -> tuple[date, date]:
        """At most one event that changes the course between two infusions; the rules decide
        what it does (interrupt, resume at the same or a lower level, discontinue). Returns
        the date the next infusion may be given and the date since which the course is
        steady."""
        rng = self.rng
        course = self.course
        onset = prev + _days(rng.randint(6, 15))
        event = None
        roll = rng.random()
        for name, chance in WINDOW_EVENTS:
            if roll < chance:
                event = name
                break
            roll -= chance
        if event is None or onset >= self.stop:
            return due, prev
        free = onset  # the last date on which the story changed the course

        if event.startswith(("neutropenia", "platelets")):
            grade = int(event[-1])
            term = "Neutrophil count decreased" if event[0] == "n" else "Platelet count decreased"
            ae = self.new_ae(term, grade, onset, related=True)
            # Counts recover a grade at a time, until the label's table lets the course go on.
            free += _days(rng.randint(5, 9))
            while True:
                grade -= 1
                self.update_ae(ae, free, grade)
                if grade == 1 or course.state != INTERRUPTED:
                    break
                free += _days(rng.randint(3, 6))
            self.resolve_ae(ae, free + _days(rng.randint(5, 20)))
        elif event == "febrile-neutropenia":
            ae = self.new_ae("Febrile neutropenia", 3, onset, serious=True, related=True)
            free += _days(rng.randint(4, 10))
            self.resolve_ae(ae, free)
        elif event == "pneumonitis-1":
            ae = self.new_ae("Interstitial lung disease" if rng.random() < 0.3
                             else "Pneumonitis", 1, onset, related=True)
            # Resolved on either side of the protocol's window for the same dose.
            within = self.protocol.safety.pneumonitis_grade1_same_dose_within_days
            late = rng.random() < 0.35
            free += _days(rng.randint(within + 4, within + 20) if late
                          else rng.randint(10, within - 4))
            self.resolve_ae(ae, free)
        elif event in ("pneumonitis-2", "pneumonitis-3", "pneumonitis-5"):
            grade = int(event[-1])
            ae = self.new_ae("Pneumonitis", min(grade, 3), onset, serious=grade >= 3,
                             related=True)
            if grade == 5:
                died = onset + _days(rng.randint(8, 25))
                self.update_ae(ae, died, 5)
                self.die(died, "pneumonitis (treatment-related)")
            else:
                better = onset + _days(rng.randint(14, 35))
                self.update_ae(ae, better, 1)
                self.resolve_ae(ae, better + _days(rng.randint(14, 60)))
        elif event == "heart-failure":
            self.decide(onset, c.Lvef, rank=1, date=onset, percent=float(rng.randint(32, 39)),
                        symptomatic=True)
            ae = self.new_ae("Heart failure", 2, onset, serious=True, related=True)
            self.resolve_ae(ae, onset + _days(rng.randint(30, 90)))
        elif event == "lvef-recover":
            # A reading in the row of the label's LVEF table that interrupts until a repeat
            # comes back within 10 points of baseline.
            base = self.baseline_lvef
            low = _lvef_row(range(30, 60), base, "recover")
            if not low:
                return due, prev
            self.decide(onset, c.Lvef, rank=1, date=onset, percent=float(rng.choice(low)))
            if rng.random() < 0.4:
                ae = self.new_ae("Ejection fraction decreased", 2, onset, related=True)
                self.resolve_ae(ae, onset + _days(rng.randint(20, 60)))
            free += _days(rng.randint(7, self.protocol.safety.lvef_repeat_within_days - 3))
            # Most come back within 10 points of baseline, the label's way out.
            back = _lvef_row(range(base - 8, base), base, "continue")
            repeat = rng.choice(back if rng.random() < 0.7 else low)
            self.decide(free, c.Lvef, rank=1, date=free, percent=float(repeat))
        elif event == "lvef-confirm":
            # A reading in the row that interrupts until a repeat confirms or clears it; the
            # repeat confirms it.
            low = _lvef_row(range(33, 40), self.baseline_lvef, "confirm")
            self.decide(onset, c.Lvef, rank=1, date=onset, percent=float(rng.choice(low)))
            free += _days(rng.randint(7, 18))
            self.decide(free, c.Lvef, rank=1, date=free, percent=float(rng.choice(low)))
        elif event == "decision-interrupt":
            why = rng.choice(("intercurrent COVID-19 infection", "patient request: family event",
                              "dental surgery"))
            self.decide(onset, c.Interrupt, date=onset, reason=why)
            free += _days(rng.randint(7, 20))
            self.decide(free, c.Resume, date=free, reason="recovered; treatment resumed")
        else:  # decision-reduce, when the regimen has a lower level to go to
            if course.level == self.regimen.dose_levels_mg_per_kg[-1]:
                return due, prev
            self.decide(onset, c.ReduceDose, date=onset,
                        reason=rng.choice(("persistent grade 2 fatigue",
                                           "persistent grade 2 nausea",
                                           "weight loss and poor appetite")))
            return due, onset
        if course.over:
            return due, free
        return max(due, free + _days(rng.randint(1, 5))), free

    def _after_early_stop(self, stopped: date) -> None:
        """Toxicity ended the course before local treatment: most still go on to it."""
        if (self.course.local_complete is None and self.course_kind != "early-pd"
                and self.rng.random() < 0.7):
            self.course.local_complete = self._local(stopped)

    # --- local treatment ------------------------------------------------------------------------

    def _local(self, after: date) -> date | None:
        """Surgery and radiotherapy after `after`; the date local treatment is marked complete,
        or None when progression comes first."""
        rng = self.rng
        start = after + _days(rng.randint(21, 35))
        if start >= self.stop:
            return None
        # Restaging before any local treatment, unless a calendar scan falls in the gap.
        restage = after + _days(rng.randint(5, min(14, (start - after).days - 2)))
        if not any(after <= d < start for d in self.scan_dates):
            self.restaging = restage
        surgeries: list[tuple[date, str, list[_Lesion]]] = []
        radiotherapy: list[_Lesion] = []
        if self.de_novo:
            breast = [x for x in self.lesions if x.site in ("primary", "axilla")]
            conserving = rng.random() < 0.55
            self.conserving = conserving
            axilla = ("axillary dissection" if any(x.site == "axilla" for x in breast)
                      else "sentinel node biopsy")
            what = "breast-conserving surgery" if conserving else "mastectomy"
            surgeries.append((start, f"{self.side} breast, {what} with {axilla}", breast))
        later = start + _days(rng.randint(21, 42)) if surgeries else start
        for lesion in self.lesions:
            if lesion.site in ("liver", "lung") and rng.random() < 0.35:
                place = ("liver segment resection" if lesion.site == "liver"
                         else "lung wedge resection")
                surgeries.append((later, f"{place} ({lesion.lesion_id})", [lesion]))
                later += _days(rng.randint(28, 42))  # one operation at a time, staged
            elif lesion.site not in ("primary", "axilla"):
                radiotherapy.append(lesion)
        ends: list[date] = []
        for when, location, removed in surgeries:
            if when >= self.stop:
                break
            self.decide(when, c.Surgery, date=when,
                        site="primary" if removed[0].site in ("primary", "axilla")
                        else "metastasis", location=location)
            for lesion in removed:
                lesion.removed = when
            self._pathology(when, removed)
            if rng.random() < 0.18:
                grade, _, description = _weighted(rng, [(x, x[1]) for x in COMPLICATIONS])
                on = when + _days(rng.randint(1, 21))
                self.decide(on, c.Complication, date=on, clavien_dindo=grade,
                            description=description)
            ends.append(when)
        rt_start = (max(ends) + _days(rng.randint(21, 35))) if ends else start
        if self.conserving:
            radiotherapy.insert(0, next(x for x in self.lesions if x.site == "primary"))
        for i, lesion in enumerate(radiotherapy):
            begin = rt_start + _days(3 * i)
            if begin >= self.stop:
                break
            dose, fractions, location = self._rt_plan(lesion)
            if lesion.site == "primary":
                location = f"{self.side} breast (whole breast after breast-conserving surgery)"
            end = begin + _days(_rt_days(fractions, daily=fractions > 5))
            self.decide(begin, c.Radiotherapy, start=begin, end=end, location=location,
                        dose_gy=dose, fractions=fractions, last=end)
            if lesion.removed is None:
                lesion.irradiated = begin
                lesion.gone_after_rt = rng.random() < 0.6
                lesion.rt_floor = 0.0 if lesion.gone_after_rt else rng.uniform(0.3, 0.5)
            ends.append(end)
        if not ends:
            return None
        done = max(ends) + _days(rng.randint(1, 10))
        if done >= self.stop:
            return None
        self.decide(done, c.CompleteLocalTreatment, date=done)
        return done

    def _rt_plan(self, lesion: _Lesion) -> tuple[float, int, str]:
        rng = self.rng
        if lesion.site == "primary":
            return 40.05, 15, "breast"
        if lesion.site == "liver":
            dose, fx = rng.choice(((45.0, 3), (50.0, 5), (54.0, 3)))
            return dose, fx, f"liver SBRT ({lesion.lesion_id})"
        if lesion.site == "lung":
            dose, fx = rng.choice(((54.0, 3), (60.0, 8), (48.0, 4)))
            return dose, fx, f"lung SBRT ({lesion.lesion_id})"
        if lesion.site == "bone":
            dose, fx = rng.choice(((27.0, 3), (30.0, 5), (35.0, 5)))
            return dose, fx, f"{lesion.organ} SBRT ({lesion.lesion_id})"
        dose, fx = rng.choice(((50.0, 25), (40.0, 5)))
        return dose, fx, f"{lesion.organ} ({lesion.lesion_id})"

    def _pathology(self, surgery: date, removed: list[_Lesion]) -> None:
        rng = self.rng
        when = surgery + _days(rng.randint(7, 14))
        breast = any(x.site == "primary" for x in removed)
        if breast:
            node = any(x.site == "axilla" for x in removed)
            if self.pcr:
                ypt, ypn = ("Tis" if rng.random() < 0.2 else "T0"), "N0"
            else:
                ypt = _weighted(rng, [("T1", 60), ("T2", 30), ("T3", 10)])
                ypn = _weighted(rng, [("N0", 40), ("N1", 45), ("N2", 15)]) if node else "N0"
            viable = "not-resected"
        else:
            ypt, ypn = "not-resected", "not-resected"
            viable = "no" if self.pcr or rng.random() < 0.3 else "yes"
        self.decide(when, c.Pathology, date=when, ypt=ypt, ypn=ypn,
                    viable_metastatic_tumour=viable)

    # --- assessments ----------------------------------------------------------------------------

    def _baseline_assessments(self) -> None:
        """Baseline CT, PET and ctDNA between consent and cycle 1."""
        rng = self.rng
        earliest = max(self.consent, self.enrolled - _days(14))

        def before_c1(days: int) -> date:
            return max(earliest, min(self.c1 - _days(1), self.c1 - _days(days)))

        self._scan(before_c1(rng.randint(3, 25)), baseline=True)
        self.pet_baseline = round(rng.uniform(4, 18), 1)
        when = before_c1(rng.randint(2, 20))
        self.add(when, c.Pet, rank=1, date=when, sulpeak=self.pet_baseline)
        self._ctdna(before_c1(rng.randint(1, 14)), self.ctdna_baseline)

    def _scans(self) -> None:
        extra = [self.restaging] if self.restaging else []
        for when in sorted([*self.scan_dates, *extra]):
            if when > self.today:
                break
            self._scan(when, pd=when == self.pd_date)
            if when == self.pd_date:
                break

    def _size(self, lesion: _Lesion, when: date) -> float:
        days = max(0, (when - self.c1).days)
        mm = lesion.final + (lesion.size - lesion.final) * math.exp(-days / self.tau)
        if lesion.removed and when > lesion.removed:
            return 0.0
        if lesion.irradiated and when > lesion.irradiated:
            at = lesion.final + (lesion.size - lesion.final) * math.exp(
                -(lesion.irradiated - self.c1).days / self.tau)
            floor = at * lesion.rt_floor
            mm = min(mm, floor + (at - floor) * math.exp(-(when - lesion.irradiated).days / 45))
        return mm

    def _scan(self, when: date, *, baseline: bool = False, pd: bool = False) -> None:
        rng = self.rng
        targets, nodes, non_targets = [], [], []
        measured: dict[str, float] = {}
        for lesion in self.lesions:
            if lesion.kind == "non-target":
                continue
            if baseline:
                mm = float(lesion.size)
            else:
                raw = self._size(lesion, when) * rng.uniform(0.97, 1.03)
                if lesion.kind == "node":
                    mm = float(round(raw))
                else:
                    mm = 0.0 if raw < 2.5 else 5.0 if raw < 5 else float(round(raw))
                mm = min(mm, lesion.last_mm if lesion.last_mm is not None else mm)
            measured[lesion.lesion_id] = mm
        new: list[str] = []
        progression: set[str] = set()
        if pd:
            kind = self.pd_kind
            growable = [x for x in self.lesions if x.kind != "non-target" and not x.removed]
            present = [x for x in self.lesions if x.kind == "non-target" and not x.removed
                       and self._non_target_status(x, when) == "present"]
            if kind == "growth" and not growable:
                kind = "new"
            if kind == "non-target" and not present:
                kind = "growth" if growable else "new"
            if kind == "growth":
                total = sum(measured.values())
                need = max(math.ceil((self.nadir or total) * 1.25),
                           (self.nadir or total) + 7) - total
                biggest = max(growable, key=lambda x: measured[x.lesion_id])
                measured[biggest.lesion_id] += need
                if rng.random() < 0.3:
                    new.append(self._new_site())
            elif kind == "non-target":
                progression.add(rng.choice(present).lesion_id)
            else:
                new.append(self._new_site())
                if rng.random() < 0.3:
                    new.append(self._new_site(avoid=new[0]))
        for lesion in self.lesions:
            if lesion.kind == "non-target":
                status = ("progression" if lesion.lesion_id in progression
                          else "present" if baseline else self._non_target_status(lesion, when))
                non_targets.append(NonTargetLesion(lesion_id=lesion.lesion_id,
                                                   organ=lesion.organ, status=status))
                continue
            mm = measured[lesion.lesion_id]
            lesion.last_mm = mm
            item = Lesion(lesion_id=lesion.lesion_id, organ=lesion.organ, mm=mm)
            (nodes if lesion.kind == "node" else targets).append(item)
        total = sum(measured.values())
        if not pd:
            self.nadir = total if self.nadir is None else min(self.nadir, total)
        modality = "MRI" if rng.random() < 0.08 else "CT"
        self.add(when, c.Scan, rank=1, date=when, modality=modality, target=tuple(targets),
                 node=tuple(nodes), non_target=tuple(non_targets), new_lesion=tuple(new))

    def _non_target_status(self, lesion: _Lesion, when: date) -> str:
        if lesion.removed and when > lesion.removed:
            return "absent"
        if lesion.irradiated and when > lesion.irradiated + _days(90) and lesion.gone_after_rt:
            return "absent"
        weeks = (when - self.c1).days / 7
        if lesion.site != "bone" and (
                (self.course_kind == "complete" and weeks > 12)
                or (self.course_kind == "partial" and weeks > 24
                    and int(lesion.size) % 2 == 0)):
            return "absent"
        return "present"

    def _new_site(self, avoid: str | None = None) -> str:
        sites = ["liver", "lung", "brain", "bone, L2 vertebra", "pleura", "contralateral breast",
                 "peritoneum", "adrenal gland"]
        return self.rng.choice([s for s in sites if s != avoid])

    def _pets(self) -> None:
        """PET after about four cycles and before local treatment; PERCIST follows the course."""
        rng = self.rng
        kind = self.course_kind
        c8 = self.course.date_of(self.regimen.neoadjuvant_cycles)
        dates = [self.c1 + _days(rng.randint(70, 90)),
                 c8 + _days(rng.randint(7, 18)) if c8 else self.c1 + _days(rng.randint(160, 180))]
        for i, when in enumerate(dates):
            if self.pd_date and when >= self.pd_date:
                break
            if kind == "complete":
                cat = "CMR" if i == 1 or rng.random() < 0.5 else "PMR"
            elif kind == "partial":
                cat = _weighted(rng, [("PMR", 60), ("CMR", 30 * i), ("SMD", 10)])
            elif kind == "stable":
                cat = _weighted(rng, [("SMD", 80), ("PMR", 20)])
            else:
                cat = "PMD" if self.pd_date and (self.pd_date - when).days < 21 else "SMD"
            factor = {"CMR": 0.0, "PMR": rng.uniform(0.3, 0.65), "SMD": rng.uniform(0.75, 1.1),
                      "PMD": rng.uniform(1.35, 2.0)}[cat]
            sul = round(rng.uniform(1.2, 2.4) if cat == "CMR" else self.pet_baseline * factor, 1)
            self.add(when, c.Pet, rank=1, date=when, percist=cat, sulpeak=sul)

    def _ctdna(self, when: date, detected: bool) -> None:
        value = round(10 ** self.rng.uniform(-0.7, 2.4), 2) if detected else None
        self.add(when, c.Ctdna, rank=1, date=when,
                 result="detected" if detected else "not-detected", assay=CT_ASSAY, value=value)

    def _ctdna_course(self) -> None:
        """Before cycles 3 and 5, before local treatment and cycle 9, at the end of treatment,
        then every six months; clearance follows the course, detection comes back before a
        relapse (molecular relapse precedes the scan)."""
        rng = self.rng
        course = self.course
        reg = self.regimen
        points: list[date] = []
        for cycle in (3, 5):
            if d := course.date_of(cycle):
                points.append(d)
        c8 = course.date_of(reg.neoadjuvant_cycles)
        if c8:
            points.append(c8 + _days(rng.randint(7, 14)))
        if c9 := course.date_of(reg.neoadjuvant_cycles + 1):
            points.append(c9)
        end = self._treatment_end()
        if end:
            when = end + _days(rng.randint(14, 35))
            while when <= self.today:
                points.append(when)
                when += _days(rng.randint(168, 196))
        if self.pd_date:
            points = [p for p in points if p < self.pd_date]
            points.append(self.pd_date + _days(rng.randint(0, 10)))
        clears_at = {"complete": _weighted(rng, [(0, 60), (1, 30), (2, 10)]),
                     "partial": _weighted(rng, [(0, 20), (1, 30), (2, 20), (3, 15), (99, 15)]),
                     "stable": _weighted(rng, [(1, 10), (2, 15), (3, 25), (99, 50)]),
                     "early-pd": 0 if rng.random() < 0.05 else 99}[self.course_kind]
        molecular = self.relapse - _days(rng.randint(30, 120)) if self.relapse else None
        for i, when in enumerate(sorted(set(points))):
            relapsing = molecular is not None and when >= molecular
            detected = relapsing or (self.ctdna_baseline and i < clears_at)
            self._ctdna(when, detected)

    def _treatment_end(self) -> date | None:
        course = self.course
        if course.completed:
            return course.completed
        if course.discontinued:
            return max(filter(None, (course.discontinued, course.local_complete)))
        if self.pd_date and course.cycles:
            return self.pd_date
        return None

    def _routine_lvef(self) -> None:
        """LVEF every four cycles before the infusion, at the end of treatment and six months
        on; each reading in the row of the label's LVEF table that lets the course go on, so
        it changes nothing."""
        rng = self.rng
        base = self.baseline_lvef
        steady = _lvef_row(range(base - 15, min(80, base + 4) + 1), base, "continue")
        for cycle in (5, 9, 13):
            when = self.course.date_of(cycle)
            if when is None:
                continue
            when = max(self.course.quiet_from.get(cycle, when) + _days(1),
                       when - _days(rng.randint(0, 5)))
            when = min(when, self.course.date_of(cycle))
            self.add(when, c.Lvef, rank=1, date=when, percent=float(rng.choice(steady)))
        end = self._treatment_end()
        if end:
            for gap in (rng.randint(14, 35), rng.randint(170, 200)):
                when = end + _days(gap)
                self.add(when, c.Lvef, rank=1, date=when, percent=float(rng.choice(steady)))

    def _mild_aes(self) -> None:
        """Adverse events the label's tables do not act on, from cycle 1 on."""
        rng = self.rng
        if not self.course.cycles:
            return
        c1 = self.course.cycles[0][1]
        end = self._treatment_end() or self.course.last_infusion
        for term, chance, grades in MILD_AES:
            if rng.random() >= chance:
                continue
            onset = c1 + _days(rng.randint(1, 10) if term not in ("Alopecia", "Anemia")
                               else rng.randint(25, 70))
            grade = _weighted(rng, list(grades))
            ae = self.new_ae(term, grade, onset, serious=False, decide=False,
                             related=term not in ("Constipation",) or rng.random() < 0.5)
            if term == "Alopecia":
                if grade == 1 and rng.random() < 0.3:
                    self.update_ae(ae, onset + _days(rng.randint(30, 60)), 2, decide=False)
                self.resolve_ae(ae, max(end, onset + _days(90)) + _days(rng.randint(90, 200)),
                                decide=False)
            elif term in ("Vomiting", "Diarrhea", "Stomatitis", "Constipation"):
                self.resolve_ae(ae, onset + _days(rng.randint(3, 21)), decide=False)
            else:
                if grade >= 2 and rng.random() < 0.5:
                    self.update_ae(ae, onset + _days(rng.randint(7, 30)), grade - 1,
                                   decide=False)
                self.resolve_ae(ae, onset + _days(rng.randint(40, 240)), decide=False)

    def _contacts(self) -> None:
        """Telephone follow-up every three months once treatment is over; after withdrawal,
        a yearly check of the population registry."""
        rng = self.rng
        start = self._treatment_end()
        if self.withdrawal:
            when = self.withdrawal + _days(rng.randint(300, 400))
            while when <= self.today:
                self.add(when, c.Contact, rank=1, date=when, source="population registry")
                when += _days(rng.randint(350, 380))
            if start is None or start >= self.withdrawal:
                return
        if start is None:
            return
        when = start + _days(rng.randint(60, 100))
        while when <= min(self.today, self.withdrawal or self.today):
            self.add(when, c.Contact, rank=1, date=when)
            when += _days(rng.randint(80, 100))


def _rt_days(fractions: int, *, daily: bool) -> int:
    """Days from the first to the last fraction: five a week, or every other day for SBRT."""
    if not daily:
        return 2 * (fractions - 1)
    weeks, rest = divmod(fractions - 1, 5)
    return 7 * weeks + rest


def _lvef_row(readings: Iterable[int], baseline: int, row: str) -> list[int]:
    """The readings the label's LVEF table puts in `row` for this baseline (the domain's
    table, so the story aims at the row the rules will read)."""
    return [p for p in readings if lvef_band(p, baseline) == row]


def _weighted(rng: random.Random, options: list[tuple[Any, float]] | tuple) -> Any:
    total = sum(w for _, w in options)
    roll = rng.uniform(0, total)
    for value, weight in options:
        if roll < weight:
            return value
        roll -= weight
    return options[-1][0]


# --- monitoring: source data verification and queries at the end of a subject's story ---------

# Share of entries a site's monitor has verified against source once they are older than the
# monitoring lag; sites differ, as under risk-based monitoring.
SDV_SHARE = {"S01": 0.9, "S02": 0.75, "S03": 0.6, "S04": 0.85, "S05": 0.5, "S06": 0.7,
             "S07": 0.4, "S08": 0.65}
SDV_LAG_DAYS = 60
QUERY_CHANCE = 0.12  # an infusion whose dose the monitor asks about
# What happens to a monitor's query after the site answers: closed, reopened, or left waiting.
QUERY_OUTCOMES = (("closed", 0.65), ("reopened", 0.1), ("answered", 0.15), ("open", 0.1))


@dataclass(frozen=True)
class Review:
    """One monitoring act on the subject's `index`-th command (0-based): the ledger entry it
    became is known only once entered, so the demo maps the index to that entry."""

    kind: str  # "verify" or "query"
    index: int
    field: str | None = None
    text: str | None = None
    answer: str | None = None
    outcome: str | None = None  # for a query: closed, reopened, answered or open


def review(subject: str, commands: list[c.Command], today: date) -> list[Review]:
    """Source verification of the older entries at the site's rate, and a few dose queries on
    infusions, each with the site's answer and what the monitor then did. Nothing here changes
    a fact, so nothing needs deciding again: the ledger numbers the queries as they come."""
    rng = random.Random(f"m22bol-demo-review/{subject}")
    site = next((cmd.site for cmd in commands if isinstance(cmd, c.Register)), None)
    share = SDV_SHARE.get(site or "", 0.6)
    reviews: list[Review] = []
    for i, cmd in enumerate(commands):
        if isinstance(cmd, c.Infuse) and rng.random() < QUERY_CHANCE:
            reviews.append(Review(
                "query", i, "dose_mg",
                f"dose {cmd.dose_mg:g} mg on {cmd.date} for {cmd.weight_kg:g} kg: please "
                "confirm against the pharmacy record",
                answer=rng.choice(("confirmed against the pharmacy record",
                                   "dose as prepared; weight taken on the day",
                                   "pharmacy record attached to the source file")),
                outcome=_weighted(rng, QUERY_OUTCOMES)))
        when = _clinical_date(cmd)
        if when is not None and (today - when).days > SDV_LAG_DAYS and rng.random() < share:
            reviews.append(Review("verify", i))
    return reviews


def _clinical_date(cmd: c.Command) -> date | None:
    for name in ("date", "onset", "start", "consent_date"):
        value = getattr(cmd, name, None)
        if isinstance(value, date):
            return value
    return None
