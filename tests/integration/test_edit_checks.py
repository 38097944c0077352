"""Edit checks raise queries by themselves, attributed to the system and naming the rule, and
never twice for the same reason (docs/queries.md). The ledger's clock is set by each test, so
"a command runs on or after the day the check falls due" is a day the test chooses."""

from datetime import UTC, date, datetime, timedelta

import pytest

from m22bol.domain.clarifications import SYSTEM
from m22bol.domain.events import EditChecksRun, QueryOpened
from tests.support import IN_MEMORY, PEOPLE, Driver, open_ledger

pytestmark = IN_MEMORY
S, OTHER = "M22-001", "M22-002"


class Clock:
    def __init__(self, day: date):
        self.now = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9)

    def __call__(self) -> datetime:
        return self.now

    def to(self, day: str) -> None:
        self.now = datetime.fromisoformat(day + "T09:00:00+00:00")


@pytest.fixture
def clock():
    return Clock(date(2025, 1, 2))


@pytest.fixture
def site(ledger_url, clock):
    ledger = open_ledger(ledger_url, clock=clock)
    driver = Driver(ledger)
    driver.do("init", actor="admin")
    for user, role in PEOPLE.items():
        driver.do("grant", actor="admin", user=user, role=role)
    yield driver
    ledger.close()


def check_queries(driver, subject=S, rule=None):
    events = driver.ledger.patient(subject).events
    return [e for e in events if isinstance(e, QueryOpened) and e.rule is not None
            and (rule is None or e.rule == rule)]


def treated(driver, clock, subject=S, lvef=60):
    clock.to("2025-01-15")
    driver.enrolled(subject, lvef=lvef)
    return driver.do("infuse", subject=subject, cycle=1, date="2025-01-15", weight_kg=60,
                     dose_mg=324)


def test_an_infusion_accepted_as_a_deviation_raises_a_system_query_naming_the_rule(site, clock):
    treated(site, clock)
    clock.to("2025-02-05")
    out = site.do("infuse", subject=S, cycle=2, date="2025-02-05", weight_kg=60, dose_mg=100,
                  deviation_reason="pharmacy error")
    [query] = check_queries(site)
    assert out["queries_raised"] == [query.query_id]
    assert (query.actor, query.rule, query.entry, query.field) == (
        SYSTEM, "check.infusion_deviation", out["entry"], "deviations")
    assert "dose.out_of_tolerance" in query.text


def test_the_deviation_query_is_not_raised_twice_even_once_closed(site, clock):
    treated(site, clock)
    clock.to("2025-02-05")
    site.do("infuse", subject=S, cycle=2, date="2025-02-05", weight_kg=60, dose_mg=100,
            deviation_reason="pharmacy error")
    [query] = check_queries(site)
    site.do("query close", actor="mon", query_id=query.query_id, text="source confirms")
    clock.to("2025-02-06")
    site.do("contact", subject=S, date="2025-02-06")
    site.do("correct", subject=S, entry=query.entry, set=["duration_min=90"], reason="chart")
    assert check_queries(site) == [query]


def test_a_conforming_infusion_raises_nothing(site, clock):
    out = treated(site, clock)
    assert "queries_raised" not in out and check_queries(site) == []


def late_sae(driver, clock):
    treated(driver, clock)
    clock.to("2025-01-25")
    return driver.do("adverse-event", subject=S, term="Diarrhoea", grade=3, onset="2025-01-20",
                     serious=["hospitalisation"], aware_date="2025-01-21")


def test_an_sae_entered_after_its_deadline_raises_a_query(site, clock):
    out = late_sae(site, clock)
    [query] = check_queries(site, rule="check.sae_late")
    assert out["queries_raised"] == [query.query_id] and query.actor == SYSTEM
    assert query.entry == out["entry"] and query.field == "aware_date"


def test_the_late_sae_query_is_not_raised_twice(site, clock):
    out = late_sae(site, clock)
    site.do("update-adverse-event", subject=S, ae_id=out["ae_id"], date="2025-01-25", grade=2)
    assert len(check_queries(site, rule="check.sae_late")) == 1


def test_an_sae_entered_in_time_raises_nothing(site, clock):
    treated(site, clock)
    clock.to("2025-01-21")
    site.do("adverse-event", subject=S, term="Diarrhoea", grade=3, onset="2025-01-20",
            serious=["hospitalisation"], aware_date="2025-01-21")
    assert check_queries(site, rule="check.sae_late") == []


def watched(driver, clock):
    """An LVEF of 44 % against a baseline of 50 %: the label asks for a repeat in 21 days."""
    treated(driver, clock, lvef=50)
    clock.to("2025-02-01")
    out = driver.do("lvef", subject=S, date="2025-02-01", percent=44)
    assert out["lvef_repeat_due"] == date(2025, 2, 22)
    return out


def test_an_lvef_not_repeated_in_21_days_raises_a_query_on_the_first_command_after(site, clock):
    out = watched(site, clock)
    clock.to("2025-02-22")  # the last day the repeat is in time: nothing yet
    site.do("register", subject=OTHER, site="S1", consent_date="2025-02-20")
    assert check_queries(site) == []
    clock.to("2025-02-23")  # any command, even for another subject, runs the day's checks
    site.do("contact", subject=OTHER, date="2025-02-23")
    [query] = check_queries(site)
    assert (query.rule, query.entry, query.actor) == (
        "check.lvef_repeat_missing", out["entry"], SYSTEM)


def test_the_missing_lvef_query_is_not_raised_twice(site, clock):
    watched(site, clock)
    for day in ("2025-02-23", "2025-02-24", "2025-03-01"):
        clock.to(day)
        site.do("contact", subject=S, date=day)
    assert len(check_queries(site, rule="check.lvef_repeat_missing")) == 1
    # A late repeat now arrives: still the same reason, so no second query.
    site.do("lvef", subject=S, date="2025-03-01", percent=55)
    assert len(check_queries(site, rule="check.lvef_repeat_missing")) == 1


def test_a_repeat_entered_late_raises_the_query_with_the_repeat(site, clock):
    first = watched(site, clock)
    clock.to("2025-03-01")
    # The day's sweep runs first and finds the missing repeat; the same reason then covers
    # the late repeat itself, which is entered in the same command.
    out = site.do("lvef", subject=S, date="2025-02-28", percent=55)
    [query] = check_queries(site)
    assert query.entry == first["entry"] and out["entry"] != query.entry


def test_a_repeat_in_time_raises_nothing(site, clock):
    watched(site, clock)
    clock.to("2025-02-20")
    site.do("lvef", subject=S, date="2025-02-20", percent=52)
    clock.to("2025-04-01")
    site.do("contact", subject=S, date="2025-02-21")
    assert check_queries(site, rule="check.lvef_repeat_missing") == []


def test_a_missing_tumour_assessment_is_raised_after_interval_plus_window(site, clock):
    treated(site, clock)
    site.do("scan", subject=S, date="2025-01-14", target=["L1:liver:30"])
    # The first infusion on 15 January: the next assessment is due 63 + 7 days later.
    clock.to("2025-03-26")
    site.do("contact", subject=S, date="2025-03-26")
    assert check_queries(site) == []
    clock.to("2025-03-27")
    site.do("register", subject=OTHER, site="S1", consent_date="2025-03-27")
    [query] = check_queries(site)
    assert query.rule == "check.assessment_missing" and query.actor == SYSTEM
    assert "63" in query.text and "7" in query.text
    trial = site.ledger.trial()
    assert trial.checks_day == date(2025, 3, 27)
    assert [e.day for e in trial.events if isinstance(e, EditChecksRun)][-1] == date(2025, 3, 27)


def test_the_missing_assessment_query_is_not_raised_twice(site, clock):
    treated(site, clock)
    for day in ("2025-03-27", "2025-03-28", "2025-04-15"):
        clock.to(day)
        site.do("contact", subject=S, date=day)
    assert len(check_queries(site, rule="check.assessment_missing")) == 1
    # A new scan resets the interval; a new gap is a new reason, on the new last scan.
    clock.to("2025-04-16")
    scan = site.do("scan", subject=S, date="2025-04-16", target=["L1:liver:30"])
    clock.to("2025-06-26")
    site.do("contact", subject=S, date="2025-06-26")
    queries = check_queries(site, rule="check.assessment_missing")
    assert len(queries) == 2 and queries[-1].entry == scan["entry"]


def test_no_assessment_query_once_off_study(site, clock):
    treated(site, clock)
    clock.to("2025-01-20")
    site.do("withdraw", subject=S, date="2025-01-20", reason="moved away")
    clock.to("2025-06-01")
    site.do("register", subject=OTHER, site="S1", consent_date="2025-06-01")
    assert check_queries(site) == []


def test_queries_refresh_runs_the_time_based_checks_and_raises_nothing_twice(site, clock):
    from m22bol.domain.commands import RefreshQueries

    treated(site, clock)
    clock.to("2025-05-01")
    # The refresh is itself the day's first command: the day's sweep and the refresh together
    # raise the missing assessment once; a second refresh finds nothing new.
    first = site.ledger.execute(RefreshQueries(), "mon")
    again = site.ledger.execute(RefreshQueries(), "mon")
    [query] = check_queries(site)
    assert query.rule == "check.assessment_missing"
    assert (first["queries_raised"], again["queries_raised"]) == ([query.query_id], [])
