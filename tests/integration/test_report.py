"""The monitoring report: every section and figure, the same bytes twice, and seen in a browser."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import invoke, new_ledger

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
