"""Random sequences of treatment commands for one subject, checked after every step.

After each step: the cycles stored run 1..n in clinical order; an infusion accepted while
treatment was interrupted or discontinued carries the deviation that says so; the dose level
never rises; the state derived from the stored events equals the state after a replay, and
what the last command printed agrees with it. The many sequences run on the memory store; a few
run on SQLite, where the replay is by a fresh ledger on the same file.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from m22bol.domain import coding
from m22bol.domain.errors import DeviationRefused, LedgerError
from m22bol.domain.events import InfusionGiven
from m22bol.domain.protocol import bundled_protocol_text, parse_protocol
from m22bol.domain.timeline import derive, summary
from m22bol.ledger.store import MEMORY_URL
from tests.support import Driver, new_ledger, open_ledger
from tests.support.databases import sqlite_url

S = "M22-001"
TODAY = date(2026, 11, 26)
LEVELS = (5.4, 4.4, 3.2)
TERMS = ("Pneumonitis", "Interstitial lung disease", "ILD", "Neutrophil count decreased",
         "neutropenia", "Febrile neutropenia", "Platelet count decreased", "Thrombocytopenia",
         "Heart failure", "Nausea")
SYNONYMS = parse_protocol(bundled_protocol_text()).synonyms("I")
# Grade 5 is left out: it needs the death, which ends the sequence.
GRADE = {term: sorted(g for g in coding.code(term, SYNONYMS).term.grades if g < 5)
         for term in TERMS}

gaps = st.integers(min_value=0, max_value=30)


class TreatmentCourse(RuleBasedStateMachine):
    on_file = False  # the memory store: it lives and dies with self.ledger

    def __init__(self):
        super().__init__()
        self.folder = tempfile.mkdtemp() if self.on_file else None
        self.url = sqlite_url(self.folder) if self.on_file else MEMORY_URL
        self.ledger = new_ledger(self.url)
        self.driver = Driver(self.ledger)
        self.driver.enrolled(S, enrol="2025-01-10", lvef=60)
        self.day = date(2025, 1, 10)
        self.open_aes: dict[str, str] = {}  # ae id -> term
        self.local_complete = False
        self.levels: list[float] = [5.4]
        self.last_output: dict = {}

    def teardown(self):
        self.ledger.close()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------------

    def when(self, gap: int) -> str:
        self.day = min(self.day + timedelta(days=gap), TODAY)
        return self.day.isoformat()

    def now(self) -> dict:
        patient = self.ledger.patient(S)
        return summary(derive(S, patient.timeline(), self.ledger.require_trial().protocol,
                              TODAY))

    def accepted(self, command: str, **values) -> dict:
        """A command with valid values dated in order: the ledger must take it."""
        self.last_output = self.driver.do(command, subject=S, **values)
        return self.last_output

    # --- rules --------------------------------------------------------------------------------

    @precondition(lambda self: self.now()["cycles_given"] < 16)
    @rule(gap=gaps, level=st.sampled_from(LEVELS),
          weight=st.floats(min_value=45, max_value=110, allow_nan=False).map(lambda w: round(w, 1)),
          reason=st.booleans())
    def infuse(self, gap, level, weight, reason):
        before = self.now()
        version = self.ledger.patient(S).version
        values = {"cycle": before["cycles_given"] + 1, "date": self.when(gap),
                  "weight_kg": weight, "dose_mg": round(level * weight, 2)}
        if reason:
            values["deviation_reason"] = "as given"
        try:
            out = self.driver.do("infuse", subject=S, **values)
        except DeviationRefused:
            assert not reason
            assert self.ledger.patient(S).version == version, "a refusal wrote something"
            return
        self.last_output = out
        rules = {d["rule"] for d in out.get("deviations", [])}
        # The infusion's own entry: an edit-check query on a deviation follows it.
        assert rules == {d.rule for d in self.ledger.patient(S).event_of(out["entry"]).deviations}
        if before["treatment_state"] == "interrupted":
            assert "treatment.while_interrupted" in rules
        if before["treatment_state"] == "discontinued":
            assert "treatment.after_discontinuation" in rules
        if level > before["dose_level_mg_per_kg"]:
            assert "dose.re_escalation" in rules
        assert out["dose_level_mg_per_kg"] == before["dose_level_mg_per_kg"]

    @rule(gap=gaps, offset=st.sampled_from([-1, 1, 2]))
    def infuse_out_of_sequence(self, gap, offset):
        version = self.ledger.patient(S).version
        cycle = self.now()["cycles_given"] + 1 + offset
        try:
            self.driver.do("infuse", subject=S, cycle=cycle, date=self.when(gap), weight_kg=60,
                           dose_mg=324, deviation_reason="any")
        except LedgerError:
            assert self.ledger.patient(S).version == version
        else:
            raise AssertionError(f"cycle {cycle} was accepted out of sequence")

    @rule(gap=gaps, decision=st.sampled_from(["interrupt", "resume", "reduce-dose",
                                               "discontinue"]))
    def decide(self, gap, decision):
        self.accepted(decision, date=self.when(gap), reason="by decision")

    @rule(gap=gaps, data=st.data())
    def adverse_event(self, gap, data):
        term = data.draw(st.sampled_from(TERMS))
        grade = data.draw(st.sampled_from(GRADE[term]))
        out = self.accepted("adverse-event", term=term, grade=grade, onset=self.when(gap))
        self.open_aes[out["ae_id"]] = term

    @precondition(lambda self: self.open_aes)
    @rule(gap=gaps, data=st.data())
    def update_adverse_event(self, gap, data):
        ae_id = data.draw(st.sampled_from(sorted(self.open_aes)))
        grade = data.draw(st.sampled_from(GRADE[self.open_aes[ae_id]]))
        self.accepted("update-adverse-event", ae_id=ae_id, date=self.when(gap), grade=grade)

    @precondition(lambda self: self.open_aes)
    @rule(gap=gaps, data=st.data())
    def resolve_adverse_event(self, gap, data):
        ae_id = data.draw(st.sampled_from(sorted(self.open_aes)))
        self.accepted("resolve-adverse-event", ae_id=ae_id, date=self.when(gap))
        del self.open_aes[ae_id]

    @rule(gap=gaps, percent=st.integers(min_value=30, max_value=70))
    def lvef(self, gap, percent):
        self.accepted("lvef", date=self.when(gap), percent=percent)

    # Local treatment before cycle 1 is a deviation, which this machine does not exercise.
    @precondition(lambda self: self.now()["cycles_given"] > 0)
    @rule(gap=gaps)
    def surgery(self, gap):
        self.accepted("surgery", date=self.when(gap), site="primary")

    @precondition(lambda self: not self.local_complete)
    @rule(gap=gaps)
    def complete_local_treatment(self, gap):
        self.accepted("complete-local-treatment", date=self.when(gap))
        self.local_complete = True

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def cycles_are_consecutive(self):
        timeline = self.ledger.patient(S).timeline()
        infusions = sorted((f.date, int(k.rpartition("#")[2]), f.cycle) for k, f in timeline
                           if isinstance(f, InfusionGiven))
        assert [cycle for _, _, cycle in infusions] == list(range(1, len(infusions) + 1))
        assert self.now()["cycles_given"] == len(infusions)

    @invariant()
    def dose_level_never_rises(self):
        level = self.now()["dose_level_mg_per_kg"]
        assert level in LEVELS
        assert level <= self.levels[-1]
        self.levels.append(level)

    @invariant()
    def stored_state_equals_replayed_state(self):
        # A memory store cannot be opened twice: there this ledger reads its stored events
        # again (the repository keeps no aggregate between reads), which is what now() does.
        fresh = open_ledger(self.url) if self.on_file else self.ledger
        try:
            patient = fresh.patient(S)
            replayed = summary(derive(S, patient.timeline(), fresh.require_trial().protocol,
                                      TODAY))
        finally:
            if fresh is not self.ledger:
                fresh.close()
        assert replayed == self.now()
        # What the last command printed, decided before it was stored, agrees with the replay:
        # every fact here is dated on or after the ones before it.
        for key in ("treatment_state", "dose_level_mg_per_kg"):
            if key in self.last_output:
                assert self.last_output[key] == replayed[key], key


class TreatmentCourseOnSQLite(TreatmentCourse):
    on_file = True


TreatmentCourse.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None,
)
TreatmentCourseOnSQLite.TestCase.settings = settings(
    max_examples=5, stateful_step_count=20, deadline=None,
)
test_treatment_course = TreatmentCourse.TestCase
test_treatment_course_on_sqlite = TreatmentCourseOnSQLite.TestCase
