"""`m22bol endpoints` and `m22bol safety` beyond the mini-trial: knowledge time, corrections and
retractions, the protocol in force, access, bad options and the cost of importing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from m22bol.domain.protocol import bundled_protocol_text
from m22bol.projections.reader import Reader
from tests.support import (
    ON_SQLITE,
    PEOPLE,
    TEST_PASSWORD,
    Clock,
    Driver,
    invoke,
    open_ledger,
    set_passwords,
)
from tests.support.mini_trial import DATA, EXPECTED, without_intervals
from tests.support.protocols import BASKET_V

T1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 4, 6, 9, 0, tzinfo=UTC)
BETWEEN = "2026-03-15T12:00:00+00:00"


@pytest.fixture
def timed(ledger_url):
    """A ledger whose clock the test moves: everything below is entered at T1 unless moved."""
    clock = Clock(T1)
    ledger = open_ledger(ledger_url, clock=clock)
    driver = Driver(ledger)
    driver.do("init", actor="admin")
    for user, role in PEOPLE.items():
        driver.do("grant", actor="admin", user=user, role=role)
    set_passwords(ledger, list(PEOPLE))
    yield driver, clock
    ledger.close()


def responder(driver: Driver, subject: str) -> dict[str, str]:
    """A confirmed CR (d42, d84) with ctDNA cleared on d42; the entries of both CR scans."""
    driver.enrolled(subject, consent="2025-01-02", enrol="2025-01-10", weight=60)
    driver.do("scan", subject=subject, date="2025-01-09", target=["L1:liver:30"])
    driver.do("ctdna", subject=subject, date="2025-01-09", result="detected")
    for cycle, when in enumerate(["2025-01-13", "2025-02-03", "2025-02-24", "2025-03-17",
                                  "2025-04-07"], 1):
        driver.do("infuse", subject=subject, cycle=cycle, date=when, weight_kg=60, dose_mg=324)
    first = driver.do("scan", subject=subject, date="2025-02-24", target=["L1:liver:0"])
    driver.do("ctdna", subject=subject, date="2025-02-24", result="not-detected")
    second = driver.do("scan", subject=subject, date="2025-04-07", target=["L1:liver:0"])
    return {"first": first["entry"], "second": second["entry"]}


def test_known_at_keeps_what_was_known_then(timed):
    driver, clock = timed
    scans = responder(driver, "M22-001")
    clock.now = T2
    # Learnt later: the confirming scan still showed 6 mm (PD after a CR), and a second subject.
    driver.do("correct", subject="M22-001", entry=scans["second"], reason="re-read",
              set=['targets=[{"lesion_id": "L1", "organ": "liver", "mm": 6}]'])
    driver.enrolled("M22-002", er="negative", consent="2025-01-02", enrol="2025-01-10")
    driver.do("infuse", subject="M22-002", cycle=1, date="2025-01-13", weight_kg=60,
              dose_mg=324)
    driver.do("death", subject="M22-002", date="2025-02-01")

    then = Reader(driver.ledger, "admin").endpoints(known_at=datetime.fromisoformat(BETWEEN),
                            cutoff=datetime(2025, 12, 31).date())
    now = Reader(driver.ledger, "admin").endpoints(cutoff=datetime(2025, 12, 31).date())

    assert then["known_at"] == BETWEEN
    assert now["known_at"] == T2.isoformat()
    assert then["baskets"]["all"]["enrolled"] == 1
    assert then["baskets"]["all"]["primary"]["responders"] == 1
    assert then["baskets"]["all"]["overall_survival"]["events"] == 0
    assert now["baskets"]["all"]["enrolled"] == 2
    assert now["baskets"]["II"]["overall_survival"]["events"] == 1
    # With the corrected measurement the second scan is PD: no confirmed CR any more.
    assert now["baskets"]["I"]["primary"]["radiologic_cr"] == 0
    assert now["baskets"]["I"]["progression_free"]["events"] == 1
    # The CLI reads the same, as a monitor.
    cli_doc = json.loads(invoke(["endpoints", "--json", "--known-at", BETWEEN, "--cutoff",
                                 "2025-12-31"], url=driver.ledger.url, user="mon").output)
    assert cli_doc == then


def test_a_retracted_entry_counts_nowhere(timed):
    driver, _ = timed
    responder(driver, "M22-001")
    death = driver.do("death", subject="M22-001", date="2025-05-01")
    os_tally = Reader(driver.ledger, "admin").endpoints()["baskets"]["I"]["overall_survival"]
    assert os_tally["events"] == 1

    driver.do("retract", subject="M22-001", entry=death["entry"], reason="wrong subject")

    doc = Reader(driver.ledger, "admin").endpoints()["baskets"]["I"]
    assert doc["overall_survival"]["events"] == 0
    assert doc["progression_free"]["events"] == 0
    assert doc["primary"]["responders"] == 1


def test_every_basket_of_the_protocol_in_force_appears(timed, tmp_path):
    driver, clock = timed
    clock.now = T2
    amended = tmp_path / "m22bol-2.0.toml"
    amended.write_text(bundled_protocol_text().replace('version = "1.0"', 'version = "2.0"')
                       + BASKET_V, encoding="utf-8")
    driver.do("amend-protocol", actor="admin", file=str(amended), reason="basket V opened")

    now = json.loads(invoke(["endpoints", "--json"], url=driver.ledger.url, user="mon").output)
    before = json.loads(invoke(["endpoints", "--json", "--known-at", BETWEEN],
                               url=driver.ledger.url, user="mon").output)
    safety = json.loads(invoke(["safety", "--json"], url=driver.ledger.url, user="mon").output)

    assert list(now["baskets"]) == ["I", "II", "III", "IV", "V", "all"]
    assert now["baskets"]["V"]["enrolled"] == 0
    assert list(before["baskets"]) == ["I", "II", "III", "IV", "all"]
    assert list(safety["baskets"]) == ["I", "II", "III", "IV", "V", "all"]


def test_the_mini_trial_tallies_alike_on_every_store(ledger):
    result = invoke(["import", str(DATA)], url=ledger.url, user="dm")
    assert result.exit_code == 0, result.output

    doc = json.loads(invoke(["endpoints", "--json", "--cutoff", "2025-12-31"],
                            url=ledger.url).output)

    assert without_intervals(doc["baskets"]) == EXPECTED


@ON_SQLITE  # options are checked the same way whatever the store
@pytest.mark.parametrize("args, code", [
    (["endpoints", "--cutoff", "2025-13-01"], 2),
    (["endpoints", "--known-at", "2026-03-01T09:00:00"], 2),  # no UTC offset
    (["endpoints", "--known-at", "2026-01-01T00:00:00+00:00"], 2),  # before init
    (["safety", "--cutoff", "yesterday"], 2),
])
def test_bad_options_are_exit_2(timed, args, code):
    driver, _ = timed
    result = invoke([*args, "--json"], url=driver.ledger.url, user="mon")

    assert result.exit_code == code, result.output
    assert json.loads(result.output)["error"]["code"] == "bad-input"


def test_endpoints_need_a_role(timed):
    driver, _ = timed
    result = invoke(["endpoints", "--json"], url=driver.ledger.url, user="stranger")

    assert result.exit_code == 4
    assert invoke(["safety"], url=driver.ledger.url, user="aud").exit_code == 0


HEAVY = ("pandas", "scipy", "lifelines", "matplotlib", "numpy")


@pytest.mark.parametrize("command", ["endpoints", "safety"])
def test_endpoints_and_safety_import_no_heavy_library(timed, command):
    driver, _ = timed
    responder(driver, "M22-001")
    code = (
        "import sys\n"
        "from m22bol.cli.main import main\n"
        f"sys.argv = ['m22bol', '--ledger', {driver.ledger.url!r}, '--user', 'mon', "
        f"{command!r}, '--json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "M22BOL_PASSWORD": TEST_PASSWORD})

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["baskets"]["I"]["treated"] == 1
    assert "HEAVY []" in done.stderr
