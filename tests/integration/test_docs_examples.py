"""The user contract in docs/ is current and true: the command reference is what the commands
say, every option explains itself, and every example in docs/ runs against a new ledger."""

from __future__ import annotations

import getpass
import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from m22bol.cli import reference
from m22bol.cli.main import app
from m22bol.domain import commands as c
from tests.support import TEST_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONSOLE = re.compile(r"```console\n(.*?)```", re.S)
BARE_TYPES = {"", "text", "integer", "float", "boolean"}


def test_the_command_reference_is_current():
    assert (DOCS / "cli.md").read_text() == reference.render(), (
        "docs/cli.md is out of date: python -m m22bol.cli.reference > docs/cli.md")


def test_the_example_file_is_the_course():
    assert (DOCS / "examples" / "course.jsonl").read_text() == reference.course_jsonl()


def test_every_option_of_every_command_has_help_beyond_its_type():
    for path, command in reference.walk(app()):
        for param in command.params:
            if isinstance(param, click.Option):
                text = (param.help or "").strip().rstrip(".").lower()
                assert text not in BARE_TYPES, f"{' '.join(path)} {param.opts[0]}: no help"


def test_every_command_help_has_an_example():
    runner = CliRunner()
    for path, _ in reference.walk(app()):
        shown = runner.invoke(app(), [*path, "--help"]).output
        assert "Example:" in shown and "m22bol " + " ".join(path) in shown.split("Example:")[1], (
            f"{' '.join(path)} --help shows no example")


def test_a_pattern_error_names_the_allowed_values_in_words():
    with pytest.raises(c.BadInput) as refused:
        c.parse_command("complication", {"subject": "M22-001", "date": "2025-01-01",
                                         "clavien_dindo": "2"})
    assert "one of I, II, IIIa, IIIb, IVa, IVb or V" in refused.value.message
    assert "^(" not in refused.value.message


def _examples(page: Path) -> list[str]:
    return [line[2:] for block in CONSOLE.findall(page.read_text())
            for line in block.splitlines() if line.startswith("$ m22bol ")]


def _run(line: str, env: dict[str, str]) -> click.testing.Result:
    words = shlex.split(line.replace('"$USER"', shlex.quote(getpass.getuser())))
    assert words[0] == "m22bol"
    # alice's password: typed twice at `reset-password`, from M22BOL_PASSWORD for `--user alice`
    return CliRunner(env=env).invoke(app(), words[1:], catch_exceptions=False,
                                     input=f"{TEST_PASSWORD}\n{TEST_PASSWORD}\n")


PAGES = [p for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))] if _examples(p)]


def test_the_pages_a_new_user_reads_have_examples():
    assert {p.name for p in PAGES} >= {"README.md", "cli.md", "jsonl.md", "output.md",
                                       "audit-trail.md"}


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_every_example_in_the_docs_runs_on_a_new_ledger(path, tmp_path, monkeypatch):
    page, lines = path.name, _examples(path)
    shutil.copytree(DOCS / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    env = {"M22BOL_LEDGER": f"sqlite:///{tmp_path / 'm22bol.sqlite'}", "M22BOL_USER": None,
           "M22BOL_PASSWORD": TEST_PASSWORD}
    for line in lines:
        result = _run(line, env)
        assert result.exit_code == 0, f"{page}: `{line}` exited {result.exit_code}:\n" + (
            result.output + (result.stderr if result.stderr_bytes else ""))
