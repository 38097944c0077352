"""`patient`, `endpoints`, `safety` and the report agree on every subject-level value.

Over demo trials (`m22bol.synthetic.generator.generate`, a few subjects, random seeds), at
today's data and at an earlier cutoff: each subject's progression-free and overall survival
time and event, pCR, ctDNA clearance and treatment-emergent AEs are read from each view and
must be the very values the endpoint tallies count.
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m22bol.domain import commands as c
from m22bol.domain.rules import endpoints as rules
from m22bol.projections.reader import Reader
from m22bol.synthetic.generator import DATA_CUTOFF, generate
from tests.support import open_ledger

SUBJECTS = 10
EARLIER = DATA_CUTOFF - timedelta(days=400)


def _check(reader: Reader, cutoff: date | None) -> None:
    from m22bol.projections.report.data import gather
    from m22bol.projections.report.figures import MONTH

    inputs = reader.inputs(cutoff=cutoff)
    protocol, at = inputs.protocol, inputs.cutoff
    facts = {f.subject: f for f in inputs.patients}
    outcomes = {s: rules.outcome(f, protocol, at) for s, f in facts.items()}
    treated = {s: o for s, o in outcomes.items() if o is not None}

    # endpoints: its counts are exactly these subjects' values
    every = reader.endpoints(cutoff=cutoff)["baskets"]["all"]

    def count(attr: str) -> int:
        return sum(bool(getattr(o, attr)) for o in treated.values())

    assert every["treated"] == len(treated)
    assert every["progression_free"]["events"] == count("pfs_event")
    assert every["overall_survival"]["events"] == count("os_event")
    assert every["primary"]["responders"] == count("responder")
    assert every["pathological_complete_response"] == {
        "patients": count("pcr"), "operated": count("operated"),
        "patients_ci95": every["pathological_complete_response"]["patients_ci95"]}
    assert every["ctdna_clearance"]["patients"] == count("ctdna_cleared")
    assert every["safety"]["patients_with_teae"] == count("teae")
    assert every["safety"]["grade3plus"] == count("teae_grade3plus")

    # patient: the same times, events, pCR and ctDNA clearance
    for subject, o in treated.items():
        shown = reader.patient(subject, cutoff=cutoff)
        pfs, os_ = shown["progression_free"], shown["overall_survival"]
        assert (pfs["days"], pfs["status"] == "event") == (o.pfs_days, o.pfs_event), subject
        assert pfs["why"] == o.pfs_reason, subject
        assert (os_["days"], os_["status"] == "event") == (o.os_days, o.os_event), subject
        if o.operated:
            assert bool(shown["pcr"]) == o.pcr, subject
        cleared = shown["ctdna_status"] in ("cleared", "detected-after-clearance")
        assert cleared == o.ctdna_cleared, subject

    # safety: each TEAE counted once per subject and term, at the tallies' grade
    grades: dict[str, dict[str, int]] = defaultdict(dict)
    emergent: dict[str, frozenset[str]] = {}
    for subject, f in facts.items():
        emergent[subject] = rules.treatment_emergent_ae_ids(f, protocol, at)
        by_id = rules.treatment_emergent_grades(f, protocol, at)
        assert set(by_id) == emergent[subject]
        for ae in f.adverse_events:
            if ae.ae_id in by_id:
                grades[ae.term][subject] = max(by_id[ae.ae_id], grades[ae.term].get(subject, 0))
    table = reader.safety(cutoff=cutoff)["baskets"]["all"]
    assert {row["term"]: (row["patients"], [row[f"grade_{g}"] for g in range(1, 6)])
            for row in table["teae_by_term"]} == {
        term: (len(worst), [Counter(worst.values())[g] for g in range(1, 6)])
        for term, worst in grades.items()}
    for listed in table["serious"]:
        assert listed["treatment_emergent"] == (listed["ae_id"] in emergent[listed["subject"]])

    # the report: the same tallies, survival times and follow-up
    data = gather(reader, cutoff=cutoff)
    assert data.endpoints == reader.endpoints(cutoff=cutoff)["baskets"]
    expected_rows = sorted((facts[s].basket, o.pfs_days / MONTH, o.pfs_event)
                           for s, o in treated.items())
    assert sorted((r.basket, r.months, r.event) for r in data.pfs) == expected_rows
    expected_rows = sorted((facts[s].basket, o.os_days / MONTH, o.os_event)
                           for s, o in treated.items())
    assert sorted((r.basket, r.months, r.event) for r in data.os) == expected_rows
    for course in data.courses:
        o = treated[course.subject]
        assert (course.death_day is not None) == o.os_event, course.subject
        assert max(0, course.last_day) == o.os_days, course.subject


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(1, 100_000))
def test_every_view_uses_the_same_subject_values(seed):
    with tempfile.TemporaryDirectory() as folder:
        ledger = open_ledger(f"sqlite:///{folder}/demo.sqlite")
        try:
            # A demo trial: its author may take the data-manager role (see docs/decisions.md).
            ledger.execute_all([c.Init(synthetic=True), c.Grant(user="admin", role="data-manager")],
                               "admin")
            for subject in generate(SUBJECTS, seed=seed):
                ledger.execute_all(subject.commands, "admin")
            reader = Reader(ledger, "admin")
            for cutoff in (None, EARLIER):
                _check(reader, cutoff)
        finally:
            ledger.close()
