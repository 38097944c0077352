"""The day's sweep of timed edit checks loads only the subjects its read model says are due
(`clarifications.checks_due`, kept in the summary row), and raises exactly what a sweep of every
subject raises; a summary row deleted, forged or stale never loses a check for good."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m22bol.domain.clarifications import checks_due, edit_checks
from m22bol.domain.commands import RefreshQueries, parse_command
from m22bol.domain.errors import LedgerError
from m22bol.domain.events import QueryOpened
from m22bol.domain.timeline import walked_state
from m22bol.projections import check
from m22bol.projections.due import due_subjects
from tests.integration.test_projections_hypothesis import BASE, SUBJECTS, command, histories
from tests.support import ON_DATABASES, Clock, Driver, new_ledger

# --- the due day against the checks themselves (the domain) -----------------------------------


def lvef_and_scans() -> st.SearchStrategy[list[list[tuple[str, dict]]]]:
    """LVEF readings (some asking for a repeat) and scans, dated after the histories' start,
    which have none: the two timed checks both get their inputs."""
    day = st.integers(10, 200).map(lambda n: str(BASE + timedelta(days=n)))
    lvef = command("lvef", date=day, percent=st.sampled_from([38, 44, 48, 55, 62]))
    scan = command("scan", date=day, target=st.just(["L1:liver:30"]))
    return st.lists(st.one_of(lvef, scan).map(lambda c: [c]), max_size=6)


@settings(max_examples=40, deadline=None)
@given(steps=histories(), more=lvef_and_scans(), offsets=st.lists(st.integers(-400, 400),
                                                                   min_size=1, max_size=8))
def test_the_checks_find_something_exactly_from_the_due_day(steps, more, offsets):
    """For any walked subject and any day, the timed checks find something on that day if and
    only if the day is on or after `checks_due`."""
    ledger = new_ledger("memory:", clock=Clock(datetime(2026, 1, 1, 9, tzinfo=UTC)))
    try:
        for batch in steps + more:
            try:
                ledger.execute_all([parse_command(n, {k: v for k, v in f.items()
                                                      if v is not None}) for n, f in batch],
                                   "dm")
            except LedgerError:
                pass
        protocol = ledger.require_trial().protocol
        for subject in SUBJECTS:
            patient = ledger.patient(subject)
            try:
                state = walked_state(patient, protocol, date(2026, 1, 1))
            except LedgerError:
                continue
            due = checks_due(patient, state)
            anchor = due if due not in (None, date.min) else date(2025, 6, 1)
            for day in {anchor, anchor - timedelta(days=1), *(anchor + timedelta(days=n)
                                                              for n in offsets)}:
                found = edit_checks(patient, state, day, timed=True)
                assert bool(found) == (due is not None and day >= due), (subject, day, due)
    finally:
        ledger.close()


# --- on a real ledger ----------------------------------------------------------------------------

pytestmark = ON_DATABASES
NINE = timedelta(hours=9)


@pytest.fixture
def clock():
    return Clock(datetime(2025, 1, 2, 9, tzinfo=UTC))


@pytest.fixture
def site(ledger_url, clock):
    ledger = new_ledger(ledger_url, clock=clock)
    yield Driver(ledger)
    ledger.close()


def on(clock: Clock, day: str) -> None:
    clock.now = datetime.fromisoformat(day).replace(tzinfo=UTC) + NINE


def trial_of_four(driver: Driver, clock: Clock) -> None:
    """A: an assessment due after 26 March; B: a repeat LVEF due after 22 February and an
    assessment after 31 March; C: registered only, never due; D: its deviation query raised
    on entry, an assessment due after 31 March."""
    on(clock, "2025-01-20")
    driver.enrolled("A")
    driver.do("scan", subject="A", date="2025-01-14", target=["L1:liver:30"])
    driver.do("infuse", subject="A", cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    driver.enrolled("B", lvef=50)
    driver.do("infuse", subject="B", cycle=1, date="2025-01-20", weight_kg=60, dose_mg=324)
    driver.do("register", subject="C", site="S1", consent_date="2025-01-03")
    driver.enrolled("D")
    driver.do("infuse", subject="D", cycle=1, date="2025-01-20", weight_kg=60, dose_mg=100,
              deviation_reason="pharmacy error")
    on(clock, "2025-02-01")
    driver.do("lvef", subject="B", date="2025-02-01", percent=44)


def opened(ledger, subject: str) -> list[tuple[str, str, str]]:
    return [(e.query_id, e.rule, e.entry) for e in ledger.patient(subject).events
            if isinstance(e, QueryOpened) and e.rule is not None]


def full_sweep(ledger, day: date) -> set[tuple[str, str, str]]:
    """What sweeping every subject on `day` would raise: each subject walked from its events."""
    protocol = ledger.require_trial().protocol
    found = set()
    for subject in ledger.subjects():
        patient = ledger.patient(subject)
        state = walked_state(patient, protocol, day)
        found |= {(subject, f.rule, f.entry)
                  for f in edit_checks(patient, state, day, timed=True)}
    return found


def test_the_selective_sweep_raises_what_the_full_sweep_raises(site, clock):
    trial_of_four(site, clock)
    ledger = site.ledger
    raised_on = {}
    for day in ("2025-02-22", "2025-02-23", "2025-02-24", "2025-03-10", "2025-03-26",
                "2025-03-27", "2025-03-28", "2025-03-31", "2025-04-01", "2025-04-02"):
        on(clock, day)
        today = date.fromisoformat(day)
        expected = full_sweep(ledger, today)
        selected = due_subjects(ledger, today)
        # Only the subjects with a check due by the day are loaded: C never, D on the day its
        # assessment falls due alone (its deviation query was raised on entry).
        assert selected is not None and "C" not in selected
        assert ("D" in selected) == (day == "2025-04-01")
        assert {s for s, _, _ in expected} <= set(selected)
        before = {s: opened(ledger, s) for s in "ABCD"}
        site.do("contact", subject="C", date=day)
        new = {(s, rule, entry) for s in "ABCD"
               for _, rule, entry in opened(ledger, s)[len(before[s]):]}
        assert new == expected, day
        raised_on.update({(s, rule): day for s, rule, _ in new})
    assert raised_on == {("B", "check.lvef_repeat_missing"): "2025-02-23",
                         ("A", "check.assessment_missing"): "2025-03-27",
                         ("B", "check.assessment_missing"): "2025-04-01",
                         ("D", "check.assessment_missing"): "2025-04-01"}


def run(ledger, sql: str, *params) -> None:
    if not ledger.url.startswith("sqlite"):
        sql = sql.replace("?", "%s")
    with ledger.recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(sql, params)


def test_a_deleted_due_row_still_has_its_subject_swept(site, clock):
    trial_of_four(site, clock)
    run(site.ledger, "DELETE FROM rm_patient_summary WHERE subject = ?", "A")
    on(clock, "2025-03-27")
    assert "A" in due_subjects(site.ledger, date(2025, 3, 27))
    site.do("contact", subject="C", date="2025-03-27")
    assert [rule for _, rule, _ in opened(site.ledger, "A")] == ["check.assessment_missing"]


def test_a_forged_due_day_is_named_by_the_check_and_caught_by_refresh_and_the_next_entry(
        site, clock):
    trial_of_four(site, clock)
    ledger = site.ledger
    run(ledger, "UPDATE rm_patient_summary SET checks_due = ? WHERE subject = ?",
        "2099-01-01" if ledger.url.startswith("sqlite") else date(2099, 1, 1), "A")
    # The read-model check of `audit verify` names the forged column.
    assert [(d.table, d.key, d.column) for d in check.read_models(ledger)] == [
        ("rm_patient_summary", "subject=A", "checks_due")]
    # The day's sweep trusts the row (docs/decisions.md) ...
    on(clock, "2025-03-27")
    site.do("contact", subject="C", date="2025-03-27")
    assert opened(ledger, "A") == []
    # ... `queries --refresh` sweeps every subject whatever the rows say ...
    ledger.execute(RefreshQueries(), "mon")
    assert [rule for _, rule, _ in opened(ledger, "A")] == ["check.assessment_missing"]


def test_the_next_entry_on_a_subject_rewrites_a_forged_due_day(site, clock):
    trial_of_four(site, clock)
    ledger = site.ledger
    run(ledger, "UPDATE rm_patient_summary SET checks_due = NULL WHERE subject = ?", "A")
    on(clock, "2025-03-20")
    site.do("contact", subject="A", date="2025-03-20")
    on(clock, "2025-03-27")
    site.do("contact", subject="C", date="2025-03-27")
    assert [rule for _, rule, _ in opened(ledger, "A")] == ["check.assessment_missing"]


def test_read_models_behind_the_log_or_of_another_shape_mean_a_full_sweep(site, clock):
    from tests.support.read_models import append_without_projecting

    trial_of_four(site, clock)
    ledger = site.ledger
    assert due_subjects(ledger, date(2025, 2, 2)) == []
    run(ledger, "UPDATE rm_schema SET fingerprint = ? WHERE projection = ?", "old",
        "patient_summary")
    assert due_subjects(ledger, date(2025, 2, 2)) is None
    run(ledger, "UPDATE rm_schema SET fingerprint = ? WHERE projection = ?", "old",
        "patient_summary")
    append_without_projecting(ledger, "contact", subject="C", date="2025-02-01")
    assert due_subjects(ledger, date(2025, 2, 2)) is None
