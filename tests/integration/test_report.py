"""The monitoring report: every section and figure, the same bytes twice, and seen in a browser."""

import os
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from tests.support import TEST_PASSWORD, invoke, new_ledger

MINI_TRIAL = Path(__file__).parents[1] / "data" / "mini_trial.jsonl"
SECTIONS = ["header", "consort", "endpoints", "waterfall", "swimmer", "spider", "survival",
            "safety", "pneumonitis", "sae", "clavien-dindo", "follow-up"]
FIGURES = ["waterfall.svg", "swimmer.svg", "spider.svg", "km_pfs.svg", "km_os.svg"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{folder}/mini.sqlite"
    new_ledger(url).close()
    assert invoke(["import", str(MINI_TRIAL)], url=url).exit_code == 0
    outs = []
    for name in ("first", "second"):
        result = invoke(["report", "--out", str(folder / name), "--cutoff", "2025-12-31"],
                        url=url, user="mon")
        assert result.exit_code == 0, result.output
        outs.append(folder / name)
    return outs


def test_every_section_and_figure_is_there(rendered):
    page = (rendered[0] / "index.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    for figure in FIGURES:
        svg = rendered[0] / figure
        assert f'src="{figure}"' in page
        assert svg.stat().st_size > 5000 and svg.read_text().lstrip().startswith("<?xml")
    assert "Data cutoff</th><td>2025-12-31" in page
    assert "<th>IV</th>" in page and "<th>all</th>" in page
    # the flow counts what the mini-trial holds: 14 screened, 1 screen failure
    assert re.search(r"Screened<br><b>14</b>", page)
    assert re.search(r"Screen failures<br><b>1</b>", page)


def test_the_same_ledger_gives_the_same_report(rendered):
    first, second = rendered
    for figure in FIGURES:
        assert (first / figure).read_bytes() == (second / figure).read_bytes(), figure

    def without_generation_time(folder):
        text = (folder / "index.html").read_text(encoding="utf-8")
        return re.sub(r'<td id="generated">[^<]*</td>', "", text)

    assert without_generation_time(first) == without_generation_time(second)


def test_the_survival_curves_reach_the_medians_and_rates_the_tallies_print(rendered):
    import matplotlib.pyplot as plt

    from m22bol.ledger.app import TrialLedger
    from m22bol.projections.reader import Reader
    from m22bol.projections.report.data import gather
    from m22bol.projections.report.figures import km_figure

    ledger = TrialLedger(f"sqlite:///{rendered[0].parent / 'mini.sqlite'}")
    try:
        data = gather(Reader(ledger, "mon"), cutoff=date(2025, 12, 31))
    finally:
        ledger.close()
    checked = 0
    for rows, endpoint in ((data.pfs, "progression_free"), (data.os, "overall_survival")):
        fig = km_figure(rows, endpoint)
        for line in fig.axes[0].get_lines():
            if not line.get_label().startswith("basket "):
                continue
            tally = data.endpoints[line.get_label().removeprefix("basket ")][endpoint]
            xs, ys = list(line.get_xdata()), list(line.get_ydata())
            median = next((x for x, y in zip(xs, ys, strict=True) if y <= 0.5), None)
            assert tally["median_months"] == (None if median is None else round(median, 2))
            for months, rate in tally["km"].items():
                if rate is not None:
                    at = max(i for i, x in enumerate(xs) if x <= float(months))
                    assert round(ys[at], 4) == rate
            checked += 1
        plt.close(fig)
    assert checked == 8  # four baskets, two endpoints


def test_the_report_needs_no_lifelines(rendered, tmp_path):
    """lifelines is a test dependency only: the report draws with the project's estimator."""
    url = f"sqlite:///{rendered[0].parent / 'mini.sqlite'}"
    script = ("import sys; sys.modules['lifelines'] = None\n"  # any import of it now fails
              "from m22bol.cli.main import main\n"
              f"sys.argv = ['m22bol', '--ledger', {url!r}, '--user', 'mon', 'report', "
              f"'--out', {str(tmp_path)!r}, '--cutoff', '2025-12-31']\n"
              "main()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "M22BOL_PASSWORD": TEST_PASSWORD})
    assert done.returncode == 0, done.stderr
    for figure in ("km_pfs.svg", "km_os.svg"):
        assert (tmp_path / figure).read_bytes() == (rendered[0] / figure).read_bytes()


def test_a_person_sees_the_page_in_a_browser(rendered, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--window-size=1200,3000", f"--screenshot={shot}",
         (rendered[0] / "index.html").as_uri()],
        check=True, capture_output=True, timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] == 3000 and pixels.shape[1] == 1200
    # A page that rendered has text and figures: many distinct colours, not a blank canvas.
    assert len({tuple(p) for p in pixels[::25, ::25, :3].reshape(-1, 3).round(2)}) > 20
