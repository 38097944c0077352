"""A wheel of the project, installed (not editable) into a new virtual environment, runs the demo
and the report from another folder, and claims no generic top-level name in site-packages."""

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _run(*args, cwd, timeout=600):
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The environment's bin folder, with the wheel and its dependencies installed."""
    where = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", where / "dist",
         ROOT, cwd=where)
    wheel = next((where / "dist").glob("m22bol-*.whl"))
    venv.create(where / "env", with_pip=True)
    bin_dir = where / "env" / "bin"
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", wheel, cwd=where)
    return bin_dir


def test_the_installed_wheel_runs_the_demo_and_the_report_from_another_folder(
        installed, tmp_path):
    ledger = f"sqlite:///{tmp_path}/demo.sqlite"
    demo = _run(installed / "m22bol", "--ledger", ledger, "--json", "demo", "--patients", "12",
                cwd=tmp_path)
    assert json.loads(demo.stdout)["demo"]["patients"] == 12
    _run(installed / "m22bol", "--ledger", ledger, "report", "--out", tmp_path / "report",
         cwd=tmp_path)
    page = (tmp_path / "report" / "index.html").read_text("utf-8")
    assert "M22BOL" in page and "waterfall.svg" in page  # the template came with the wheel
    assert (tmp_path / "report" / "waterfall.svg").stat().st_size > 0


@pytest.mark.parametrize("name", ["cli", "domain", "ledger", "projections", "synthetic"])
def test_no_bare_top_level_package_is_installed(installed, tmp_path, name):
    done = subprocess.run([installed / "python", "-c", f"import {name}"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "No module named" in done.stderr
