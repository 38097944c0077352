"""Every command explains itself."""

import click
from click.testing import CliRunner

from m22bol.cli.main import app


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_command_has_help_text():
    runner = CliRunner()
    seen = list(_commands(app()))
    assert len(seen) > 30
    for path, command in seen:
        result = runner.invoke(app(), [*path, "--help"])
        assert result.exit_code == 0, path
        assert (command.help or "").strip(), f"{' '.join(path)} has no help"
        if not isinstance(command, click.Group):
            assert "--json" in result.output, f"{' '.join(path)} lacks --json"


def test_version_names_the_installed_distribution():
    from importlib.metadata import version

    result = CliRunner().invoke(app(), ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"m22bol, version {version('m22bol')}"
