"""The report of a realistic trial, section by section in headless Chromium, at 400 and 5,000
patients, and how long it takes.

The 400-patient ledger is the demo trial, built once per session (about 30 s of CPU). A
5,000-patient ledger takes over ten minutes to build, so the 5,000 report is drawn from the
400 trial's report data repeated under new subject ids: the figures, which are what grows
with the trial, see 5,000 patients; the tables have one row per basket, term or grade and
do not grow. Each section is shot alone (the others hidden) in a window taller than it, and
the screenshots are kept in the session's tmp folder for a person to look at.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path

import pytest

from m22bol.ledger.app import TrialLedger
from m22bol.projections.reader import Reader
from m22bol.projections.report import figures, render
from m22bol.projections.report.data import ReportData, gather
from tests.support import invoke

CUTOFF = date(2026, 3, 1)
SECTIONS = ["header", "consort", "endpoints", "waterfall", "swimmer", "spider", "survival",
            "safety", "follow-up"]
WINDOW = (1200, 4000)


@pytest.fixture(scope="session")
def trial_400(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("trial-400")
    url = f"sqlite:///{folder}/demo.sqlite"
    result = invoke(["demo", "--patients", "400", "--seed", "1"], url=url, user="admin")
    assert result.exit_code == 0, result.output
    return url


@pytest.fixture(scope="session")
def data_400(trial_400) -> ReportData:
    ledger = TrialLedger(trial_400)
    try:
        return gather(Reader(ledger, "admin"), cutoff=CUTOFF)
    finally:
        ledger.close()


def scaled(data: ReportData, patients: int) -> ReportData:
    """The trial's figure inputs repeated to `patients` treated patients, each copy under new
    subject ids, so ties and labels behave as in a real trial of that size."""
    copies = -(-patients // len(data.courses))
    courses = [dataclasses.replace(c, subject=f"{c.subject}-{k}")
               for k in range(copies) for c in data.courses][:patients]
    return dataclasses.replace(data, courses=courses, pfs=(data.pfs * copies)[:patients],
                               os=(data.os * copies)[:patients])


def shoot(page: Path, section: str) -> Path:
    """The page with every other section hidden, as Chromium draws it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    alone = page.with_name(f"only-{section}.html")
    alone.write_text(page.read_text(encoding="utf-8").replace(
        "</style>", f"body > :not(#{section}) {{ display: none; }}</style>"), encoding="utf-8")
    shot = page.with_name(f"{section}.png")
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={page.parent / 'profile'}", "--hide-scrollbars",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", alone.as_uri()],
        check=True, capture_output=True, timeout=120)
    return shot


def check_screenshot(shot: Path) -> None:
    """Drawn, and nothing cut: the last rows and the right-hand columns are blank page."""
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[:, :, :3]
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert (pixels[-40:] > 0.99).all(), f"{shot.name}: the section runs off the bottom"
    assert (pixels[:, -40:] > 0.99).all(), f"{shot.name}: the section runs off the right"
    assert len({tuple(p) for p in pixels[::20, ::20].reshape(-1, 3).round(2)}) > 5, shot.name


@pytest.mark.parametrize("section", SECTIONS)
def test_each_section_at_400_patients_fits_the_page(data_400, tmp_path_factory, section):
    out = tmp_path_factory.getbasetemp() / "report-400"
    page = out / "index.html" if (out / "index.html").exists() else render.write_page(data_400, out)
    check_screenshot(shoot(page, section))


@pytest.mark.parametrize("section", ["waterfall", "swimmer", "spider", "survival"])
def test_each_figure_at_5000_patients_fits_the_page(data_400, tmp_path_factory, section):
    out = tmp_path_factory.getbasetemp() / "report-5000"
    page = (out / "index.html" if (out / "index.html").exists()
            else render.write_page(scaled(data_400, 5000), out))
    check_screenshot(shoot(page, section))


def test_the_swimmer_plot_shows_at_most_its_cap_per_basket(data_400):
    big = scaled(data_400, 5000)
    chosen = figures.swimmer_selection(big.courses)
    assert set(chosen) == {"I", "II", "III", "IV"}
    for basket, rows in chosen.items():
        assert len(rows) == figures.SWIMMER_ROWS_PER_BASKET
        rest = [c for c in big.courses if c.basket == basket and c not in rows]
        # the stated rule: the longest on study, ties by subject id
        assert min(r.last_day for r in rows) >= max(r.last_day for r in rest)


def test_the_flow_adds_up(data_400):
    c = data_400.consort
    assert c["assessed"] == c["excluded"] + c["awaiting"] + c["enrolled"]
    assert c["enrolled"] == sum(a["enrolled"] for a in c["baskets"])
    for a in c["baskets"]:
        assert a["enrolled"] == a["treated"] + a["not_treated"]
        assert a["not_treated"] == sum(n for _, n in a["not_treated_reasons"])
        assert a["treated"] == a["discontinued"] + a["completed"] + a["on_treatment"]
        assert a["discontinued"] == sum(n for _, n in a["discontinued_reasons"])
    assert c["treated"] == data_400.safety["treated"]
    # every reason in words: no field names from the rules
    reasons = [why for why, _ in c["exclusion_reasons"]] + [
        why for a in c["baskets"] for why, _ in a["not_treated_reasons"] +
        a["discontinued_reasons"]]
    assert reasons and not any("_" in why for why in reasons)


def test_the_report_replays_the_ledger_once(trial_400, tmp_path, monkeypatch):
    """Every section comes from one walk: the tallies used to replay the ledger twice more."""
    from m22bol.projections import replay
    from m22bol.projections.report.render import write_report

    calls = []
    real = replay.replay
    monkeypatch.setattr(replay, "replay", lambda *a, **k: calls.append(1) or real(*a, **k))
    ledger = TrialLedger(trial_400)
    try:
        started = time.process_time()
        write_report(Reader(ledger, "admin"), tmp_path, cutoff=CUTOFF)
        spent = time.process_time() - started
    finally:
        ledger.close()
    assert len(calls) == 1
    # CPU time, not wall time: the test machines are shared, and a wall clock there measures
    # the neighbours. A cutoff replays (the present reads the read models and is faster; see
    # docs/decisions.md), so this guards against the old three replays (over 8 s), not the
    # goal of 3 s.
    assert spent < 8.0, f"{spent:.2f} s"


def test_the_present_is_read_from_the_read_models_as_the_replay_derives_it(
        trial_400, tmp_path, monkeypatch):
    """Without --known-at and --cutoff the report reads the read models, never replaying; what
    it shows is what a replay cut at today shows, section by section and figure by figure."""
    from m22bol.projections import replay
    from m22bol.projections.document_json import plain

    ledger = TrialLedger(trial_400)
    try:
        reader = Reader(ledger, "admin")
        replayed = gather(reader, cutoff=ledger.clock().date())
        monkeypatch.setattr(replay, "replay", lambda *a, **k: pytest.fail("replayed"))
        present = gather(reader)
    finally:
        ledger.close()
    assert present.courses and present.deviations and present.open_queries
    assert plain(dataclasses.asdict(present)) == plain(dataclasses.asdict(replayed))
    render.write_page(present, tmp_path / "present")
    render.write_page(replayed, tmp_path / "replayed")
    for figure in ("waterfall.svg", "swimmer.svg", "spider.svg", "km_pfs.svg", "km_os.svg"):
        assert ((tmp_path / "present" / figure).read_bytes()
                == (tmp_path / "replayed" / figure).read_bytes()), figure


@pytest.mark.parametrize(("why", "counted"), [
    ("AE3 Pneumonitis grade 2: discontinue permanently", "adverse event: Pneumonitis"),
    ("AE5 Neutrophil count decreased: a reduction below the last dose level (3.2 mg/kg)",
     "adverse event: Neutrophil count decreased"),
    ("LVEF 33% on 2023-07-09 (baseline 52%), symptomatic heart failure",
     "LVEF decline or symptomatic heart failure"),
    ("decision: disease progression (RECIST 1.1)", "disease progression (RECIST 1.1)"),
    ("", "reason not recorded"),
])
def test_discontinuation_reasons_are_counted_in_words(why, counted):
    from m22bol.projections.report.data import discontinuation_reason

    assert discontinuation_reason(why) == counted
