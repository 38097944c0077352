"""Incremental decisions: extending the walk a patient kept gives what a full walk gives.

`decide_subject` extends the walk kept on the Patient when the new fact comes last in clinical
order, and walks the whole timeline otherwise (a back-dated fact, a correction, a retraction,
a clock gone back). The property: for random command sequences, one patient that keeps its
walks (as the ledger's batch does) and one decided from scratch every time give the same
refusals, the same events, outputs, summaries and deviations, and the kept walk finished
equals a full `derive` after every step.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from m22bol.domain import commands as c
from m22bol.domain.clarifications import (
    patient_threads,
    patient_verification,
    threads,
    verification,
)
from m22bol.domain.decide import Context, Decision, Vouched, decide_subject
from m22bol.domain.errors import LedgerError
from m22bol.domain.patient import Patient, project_patient
from m22bol.domain.protocol import bundled_protocol_text, parse_protocol
from m22bol.domain.timeline import derive, summary, walked_state

PROTOCOL = parse_protocol(bundled_protocol_text())
S = "M22-001"
CONSENT = date(2025, 1, 2)
SIGNER = Vouched(head_digest="0" * 64)
# Built directly: a signature is never imported, it is typed at the keyboard.
SIGN = c.Sign(subject=S, meaning="reviewed", password="x" * 12)
TERMS = ("Nausea", "Pneumonitis", "Neutrophil count decreased", "Heart failure", "Fatigue")


def ctx(today: date) -> Context:
    return Context(actor="dm", now=datetime.combine(today, time(12), UTC))


def decide(command: c.Command, patient: Patient | None, today: date):
    """(what a person would see: the refusal, or the events, output and state), decision."""
    try:
        decision = decide_subject(command, patient, PROTOCOL, ctx(today), SIGNER)
    except LedgerError as error:
        return ("refused", type(error).__name__, error.rule, error.field, error.entry,
                error.message), None
    state = decision.state
    seen: dict[str, Any] = {"events": [ev.model_dump() for ev in decision.events],
                            "output": decision.output}
    if state is not None:
        seen.update(summary=summary(state), outputs=state.outputs,
                    deviations=[d.model_dump() for d in state.deviations])
    return ("accepted", seen), decision


def kept(patient: Patient | None, decision: Decision) -> Patient:
    """The patient after the decision, keeping its walk as `ledger.app._Batch` does."""
    patient = project_patient(patient, decision.events)
    if decision.walked is not None:
        patient.keep_walk(decision.walked)
    return patient


# --- random commands -----------------------------------------------------------------------


@st.composite
def commands(draw, latest: date, entries: int, cycles: int, aes: int) -> c.Command:
    """One subject command: mostly dated on or after the latest fact, some back-dated; some
    with a deviation reason; corrections and retractions of any entry."""
    gap = draw(st.one_of(st.integers(0, 21), st.integers(0, 21), st.integers(-60, -1)))
    when = latest + timedelta(days=gap)
    day = when.isoformat()
    reason = draw(st.sampled_from([None, "accepted by the investigator"]))
    # Weighted towards a course that goes on: after a death little more is accepted.
    kind = draw(st.one_of(
        st.sampled_from(["infuse", "contact", "lvef", "adverse-event", "scan", "correct",
                         "retract"]),
        st.sampled_from([
            "infuse", "update-adverse-event", "resolve-adverse-event", "interrupt", "resume",
            "reduce-dose", "discontinue", "surgery", "radiotherapy", "complete-local-treatment",
            "pathology", "complication", "pet", "ctdna", "subsequent-therapy", "sign",
            "death" if draw(st.integers(0, 3)) == 0 else "contact",
            "withdraw" if draw(st.integers(0, 3)) == 0 else "lvef"])))
    values: dict[str, Any] = {"subject": S}
    if kind != "sign":
        values["deviation_reason"] = reason
    ae_id = f"AE{draw(st.integers(1, max(aes, 1)))}"
    entry = f"{S}#{draw(st.integers(1, max(entries, 1)))}"
    match kind:
        case "infuse":
            cycle = draw(st.sampled_from([cycles + 1, cycles + 1, cycles + 1,
                                          max(cycles, 1), cycles + 2]))
            values.update(cycle=min(cycle, 16), date=day, weight_kg=60,
                          dose_mg=draw(st.sampled_from([324, 324, 264, 192, 400])))
        case "contact" | "complete-local-treatment" | "ctdna":
            values["date"] = day
            if kind == "ctdna":
                values["result"] = draw(st.sampled_from(["detected", "not-detected"]))
        case "lvef":
            values.update(date=day, percent=draw(st.sampled_from([62, 52, 45, 38])))
        case "adverse-event":
            values.update(term=draw(st.sampled_from(TERMS)), grade=draw(st.integers(1, 4)),
                          onset=day)
        case "update-adverse-event":
            values.update(ae_id=ae_id, date=day, grade=draw(st.integers(1, 4)))
        case "resolve-adverse-event":
            values.update(ae_id=ae_id, date=day)
        case "interrupt" | "resume" | "reduce-dose" | "discontinue" | "withdraw":
            values.update(date=day, reason="as decided")
        case "scan":
            values.update(date=day, target=[f"L1:liver:{draw(st.integers(0, 40))}"])
        case "surgery":
            values.update(date=day, site="primary")
        case "radiotherapy":
            end = when + timedelta(days=draw(st.integers(0, 20)))
            values.update(start=day, end=end.isoformat(), location="liver", dose_gy=40,
                          fractions=5)
        case "pathology":
            values.update(date=day, ypt=draw(st.sampled_from(["T0", "T2"])), ypn="N0",
                          viable_metastatic_tumour="no")
        case "complication":
            values.update(date=day, clavien_dindo=draw(st.sampled_from(["I", "IIIa", "V"])))
        case "pet":
            values.update(date=day, percist="CMR")
        case "subsequent-therapy":
            values.update(date=day, therapy="capecitabine")
        case "death":
            values["date"] = day
        case "correct":
            field, value = draw(st.sampled_from([
                ("date", day), ("date", day), ("dose_mg", "264"), ("percent", "41"),
                ("grade", "3"), ("weight_kg", "70"), ("consent_date", day),
            ]))
            values.update(entry=entry, reason="typo", set={field: value})
        case "retract":
            values.update(entry=entry, reason="entered in error")
        case "sign":
            return SIGN
    return c.parse_command(kind, values)


def start() -> list[c.Command]:
    return [
        c.parse_command("register", {"subject": S, "site": "S1",
                                     "consent_date": CONSENT.isoformat()}),
        c.parse_command("assess-eligibility", {
            "subject": S, "date": "2025-01-03", "her2": "positive", "er": "positive",
            "prior_therapy": "none", "distant_lesions": 2, "all_lesions_curable": "yes",
            "lvef": 62, "ecog": 0}),
        c.parse_command("enrol", {"subject": S, "date": "2025-01-10", "weight_kg": 60}),
    ]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_extending_the_kept_walk_equals_the_full_walk(data):
    today = date(2025, 2, 1)
    incremental: Patient | None = None  # keeps its walk from one decision to the next
    latest = CONSENT
    resumed = 0
    printed: list[tuple[dict, dict]] = []  # (incremental, full) outputs, kept to the end
    for step in range(data.draw(st.integers(3, 45), label="steps")):
        if step < 3:
            command = start()[step]
        else:
            facts = [f for _, f in incremental.timeline()] if incremental else []
            command = data.draw(commands(
                latest, incremental.version if incremental else 1,
                sum(1 for f in facts if type(f).__name__ == "InfusionGiven"),
                sum(1 for f in facts if type(f).__name__ == "AdverseEventReported")))
            # The clock moves on between commands, and now and then back (a corrected clock).
            today += timedelta(days=data.draw(st.sampled_from([0, 1, 7, 14, 30, -2])))
        # The same events with no walk kept: every command walks the whole timeline.
        scratch = project_patient(None, incremental.events) if incremental else None
        before = incremental.walked if incremental else None
        full, from_scratch = decide(command, scratch, today)
        seen, decision = decide(command, incremental, today)
        assert seen == full, command
        if decision is not None and from_scratch is not None:
            printed.append((decision.output, from_scratch.output))
        if decision is None:
            event(f"refused {seen[2]}")
            continue
        resumed += decision.walked is not None and decision.walked is before
        incremental = kept(incremental, decision)
        assert_folds_current(incremental)
        if decision.state is not None:
            latest = max(latest, *(f.clinical_date for _, f in incremental.timeline()))
        # What the read models use: the kept walk finished, against a full walk now.
        assert as_read(walked_state, incremental, PROTOCOL, today) == \
            as_read(lambda p, *rest: derive(S, p.timeline(), *rest), incremental, PROTOCOL, today)
    # What was printed stays as printed while the kept walk goes on.
    assert [mine for mine, _ in printed] == [theirs for _, theirs in printed]
    event("resumed " + ("0" if not resumed else "1-4" if resumed < 5 else "5-9" if resumed < 10
                        else "10+") + " times")


def assert_folds_current(patient: Patient) -> None:
    """What the patient keeps folded from command to command (its live facts by kind, its
    site, the verification of its entries) equals the same read afresh from its events."""
    fresh = project_patient(None, patient.events)
    kinds: dict[type, list] = {}
    for entry, fact in fresh.timeline():
        kinds.setdefault(type(fact), []).append((entry, fact))
    assert {kind: list(patient.facts_of(kind).items()) for kind in kinds} == kinds
    assert patient.site == fresh.site
    assert patient_verification(patient) == verification(S, patient.events)
    assert patient_threads(patient) == threads(S, patient.events)


def as_read(walked, *args) -> tuple:
    """A walk's summary and deviations, or its refusal (a clock gone back can make the stored
    timeline hold facts after today)."""
    try:
        state = walked(*args)
    except LedgerError as error:
        return ("refused", error.rule, error.message)
    return summary(state), state.deviations


# --- when the walk resumes, and when it does not ---------------------------------------------


def entered(*commands_: c.Command, today: date = date(2025, 6, 1)) -> tuple[Patient, list]:
    patient: Patient | None = None
    walks = []
    for command in commands_:
        decision = decide_subject(command, patient, PROTOCOL, ctx(today), SIGNER)
        patient = kept(patient, decision)
        walks.append(decision.walked)
    assert patient is not None
    return patient, walks


def contact(day: str) -> c.Command:
    return c.parse_command("contact", {"subject": S, "date": day})


def test_a_fact_that_comes_last_extends_the_same_walk():
    patient, walks = entered(*start(), contact("2025-02-01"), contact("2025-02-01"),
                             contact("2025-03-01"))
    # One walk from the registration on, extended fact by fact.
    assert all(w is walks[0] for w in walks)
    assert patient.walked is walks[0] and patient.walked_version == patient.version


def test_a_back_dated_fact_a_correction_or_a_retraction_walks_anew():
    patient, walks = entered(*start(), contact("2025-03-01"), contact("2025-02-01"))
    assert walks[-1] is not walks[-2]  # back-dated: a fresh walk
    for command in (
        c.parse_command("correct", {"subject": S, "entry": f"{S}#4", "reason": "typo",
                                    "set": {"date": "2025-03-02"}}),
        c.parse_command("retract", {"subject": S, "entry": f"{S}#5", "reason": "error"}),
    ):
        before = patient.walked
        decision = decide_subject(command, patient, PROTOCOL, ctx(date(2025, 6, 1)))
        assert decision.walked is not before
        patient = kept(patient, decision)


def test_a_refusal_leaves_no_walk_to_resume():
    patient, _ = entered(*start(), contact("2025-02-01"))
    death = c.parse_command("death", {"subject": S, "date": "2025-02-02"})
    patient = kept(patient, decide_subject(death, patient, PROTOCOL, ctx(date(2025, 6, 1))))
    try:
        decide_subject(c.parse_command("death", {"subject": S, "date": "2025-02-03"}),
                       patient, PROTOCOL, ctx(date(2025, 6, 1)))
    except LedgerError:
        pass
    else:
        raise AssertionError("a second death must be refused")
    # The walk was extended by the refused fact before it refused: it must not be resumed.
    assert patient.kept_walk(PROTOCOL, date(2025, 6, 1)) is None
    assert summary(walked_state(patient, PROTOCOL, date(2025, 6, 1)))["death"] == \
        date(2025, 2, 2)


def test_a_walk_is_not_resumed_under_another_protocol_or_an_earlier_today():
    patient, _ = entered(*start(), today=date(2025, 6, 1))
    other = parse_protocol(bundled_protocol_text())
    assert patient.kept_walk(other, date(2025, 6, 1)) is None
    assert patient.kept_walk(PROTOCOL, date(2025, 5, 31)) is None
    assert patient.kept_walk(PROTOCOL, date(2025, 6, 2)) is patient.walked


def test_events_that_are_not_facts_carry_the_walk_and_a_new_fact_not_kept_drops_it():
    patient, walks = entered(*start())
    patient = kept(patient, decide_subject(SIGN, patient, PROTOCOL, ctx(date(2025, 6, 1)),
                                           SIGNER))
    assert patient.kept_walk(PROTOCOL, date(2025, 6, 1)) is walks[0]
    # A fact appended without its walk (a patient loaded, or a caller that keeps none).
    decision = decide_subject(contact("2025-02-01"), patient, PROTOCOL, ctx(date(2025, 6, 1)))
    patient = project_patient(patient, decision.events)
    assert patient.kept_walk(PROTOCOL, date(2025, 6, 1)) is None


def test_finishing_leaves_the_walk_as_it_was():
    """The finishers end a course at withdrawal and add local-treatment deviations: on a
    copy, so the walk resumed afterwards is the walk before them."""
    withdraw = c.parse_command("withdraw", {"subject": S, "date": "2025-02-01",
                                            "reason": "moved away"})
    surgery = c.parse_command("surgery", {"subject": S, "date": "2025-01-20", "site": "primary",
                                          "deviation_reason": "planned"})
    patient, _ = entered(*start(), surgery, withdraw, contact("2025-03-01"),
                         contact("2025-04-01"))
    full = derive(S, patient.timeline(), PROTOCOL, date(2025, 6, 1))
    now = walked_state(patient, PROTOCOL, date(2025, 6, 1))
    assert summary(now) == summary(full)
    assert [d.rule for d in now.deviations] == [d.rule for d in full.deviations]
    assert len(now.deviations) == 1  # local.before_first_infusion, once
