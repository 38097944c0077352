"""Random entry sequences: the read models kept entry by entry equal a rebuild from zero and the
replay of the events, on SQLite and PostgreSQL."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from m22bol.domain.commands import parse_command
from m22bol.domain.errors import LedgerError
from tests.support import open_ledger
from tests.support.databases import copy_sqlite_ledger, fresh_postgres_database
from tests.support.read_models import assert_agrees_with_replay, assert_rebuild_changes_nothing

SUBJECTS = ("H-0", "H-1", "H-2")
BASE = date(2025, 1, 1)

subject = st.sampled_from(SUBJECTS)
near = st.integers(-20, 20)


def command(name: str, **fields) -> st.SearchStrategy[tuple[str, dict]]:
    return st.fixed_dictionaries({"subject": subject, **fields}).map(lambda v: (name, v))


def assessment(when: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, dict]]:
    """Mostly eligible, so that enrolment and treatment get exercised."""
    return command("assess-eligibility", date=when,
                   her2=st.sampled_from(["positive"] * 9 + ["negative"]),
                   er=st.sampled_from(["positive", "negative"]),
                   prior_therapy=st.sampled_from(["none", "chemo-anti-her2"]),
                   distant_lesions=st.sampled_from([1, 2, 3] * 3 + [9]),
                   all_lesions_curable=st.sampled_from(["yes"] * 9 + ["no"]),
                   lvef=st.sampled_from([55, 60, 65] * 3 + [45]),
                   ecog=st.sampled_from([0, 1] * 5 + [2]))


def commands_on(day: date) -> st.SearchStrategy[tuple[str, dict]]:
    """Any command dated `day` (corrections move a date to somewhere near it)."""
    when = st.just(str(day))
    moved = near.map(lambda n: str(day + timedelta(days=n)))
    assess = assessment(when)
    enrol = command("enrol", date=when, weight_kg=st.sampled_from([55, 60, 72]))
    infuse = command("infuse", cycle=st.integers(1, 3), date=when, weight_kg=st.just(60),
                     dose_mg=st.sampled_from([324, 390]),
                     deviation_reason=st.sampled_from([None, "as it happened"]))
    correct = st.tuples(subject, st.sampled_from([1, 2, 2, 3, 3, 4, 5]), st.one_of(
        *[moved.map(lambda d: {"date": d})] * 3,
        moved.map(lambda d: {"consent_date": d}),
        st.sampled_from([{"result": "detected"}, {"result": "not-detected"}]),
        st.sampled_from([{"weight_kg": "66"}, {"distant_lesions": "9"}, {"er": "negative"},
                         {"her2": "positive"}, {"grade": "3"}]),
    )).map(lambda t: ("correct", {"subject": t[0], "entry": f"{t[0]}#{t[1]}", "set": t[2],
                                  "reason": "transcription error"}))
    retract = st.tuples(subject, st.sampled_from([2, 3, 3, 4, 5])).map(
        lambda t: ("retract", {"subject": t[0], "entry": f"{t[0]}#{t[1]}",
                               "reason": "entered in error"}))
    # Weighted towards what keeps subjects on study, so that enrolment, treatment and
    # corrections of them get exercised; death and withdrawal end a subject's story early.
    weighted = [assess] * 3 + [enrol] * 3 + [infuse] * 4 + [correct] * 4 + [retract] * 2 + [
        command("contact", date=when),
        command("ctdna", date=when, result=st.sampled_from(["detected", "not-detected"])),
        command("ctdna", date=when, result=st.sampled_from(["detected", "not-detected"])),
        command("adverse-event", term=st.sampled_from(["Nausea", "Fatigue", "Diarrhoea"]),
                grade=st.integers(1, 3), onset=when),
        command("death", date=when),
        command("withdraw", date=when, reason=st.just("moved abroad")),
    ]
    return st.sampled_from(weighted).flatmap(lambda strategy: strategy)


@st.composite
def histories(draw) -> list[list[tuple[str, dict]]]:
    """Every subject registered, then entries moving forward in time, some entered late;
    mostly one per transaction, sometimes a few together as an import applies them."""
    steps = [[("register", {"subject": s, "site": draw(st.sampled_from(["S1", "S2"])),
                            "consent_date": str(BASE + timedelta(days=draw(st.integers(0, 9))))})]
             for s in SUBJECTS]
    # Most subjects are screened straight away, so that more stories reach enrolment.
    for s in SUBJECTS:
        if draw(st.integers(0, 3)):
            name, fields = draw(assessment(st.just(str(BASE + timedelta(days=10)))))
            steps.append([(name, {**fields, "subject": s})])
    day = 10
    for _ in range(draw(st.integers(8, 30))):
        batch = []
        for _ in range(draw(st.sampled_from([1] * 6 + [2, 3]))):
            day += draw(st.integers(0, 12))
            late = draw(st.sampled_from([0, 0, 0, 0, 6, 25]))
            batch.append(draw(commands_on(BASE + timedelta(days=max(0, day - late)))))
        steps.append(batch)
    return steps


@contextmanager
def copy_of(initialised: str) -> Iterator[str]:
    """A fresh copy of the session's initialised ledger (a SQLite URL or a database name)."""
    if initialised.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as folder:
            yield copy_sqlite_ledger(initialised, folder)
    else:
        with fresh_postgres_database(template=initialised) as url:
            yield url


def apply(ledger, batch: list[tuple[str, dict]]) -> None:
    values = [(name, {k: v for k, v in fields.items() if v is not None})
              for name, fields in batch]
    try:
        ledger.execute_all([parse_command(name, v) for name, v in values], "dm")
    except LedgerError:
        return  # refused: nothing was written, nothing to project
    for name, _ in values:
        event(f"accepted {name}")  # --hypothesis-show-statistics: what the examples reach


def check(initialised: str, steps: list[list[tuple[str, dict]]]) -> None:
    with copy_of(initialised) as url:
        ledger = open_ledger(url)
        try:
            for batch in steps:
                apply(ledger, batch)
            assert_agrees_with_replay(ledger)
            assert_rebuild_changes_nothing(ledger)
        finally:
            ledger.close()


@settings(max_examples=30)
@given(steps=histories())
def test_incremental_equals_rebuild_sqlite(initialised_sqlite, steps):
    check(initialised_sqlite, steps)


@pytest.mark.postgres
@settings(max_examples=20)
@given(steps=histories())
def test_incremental_equals_rebuild_postgres(initialised_postgres, steps):
    check(initialised_postgres, steps)
