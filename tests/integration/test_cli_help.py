"""Every command explains itself."""

import os
import subprocess
import sys

import click
from click.testing import CliRunner

from m22bol.cli import registry
from m22bol.cli.main import app


def _commands(group: click.Group, prefix=()):
    # The group loads its commands lazily: ask it (list_commands, get_command), as click does.
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
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


def test_the_listing_of_help_is_each_command_s_own_summary():
    """`m22bol --help` lists the commands from cli.registry without loading them: each
    summary there is the first paragraph of the command's own help, and nothing is missing."""
    group = app()
    ctx = click.Context(group)
    loaded = {name: group.get_command(ctx, name) for name in registry.COMMANDS}
    assert set(group.commands) == set(registry.COMMANDS), "add the command to cli.registry"
    for name, (module, summary) in registry.COMMANDS.items():
        command = loaded[name]
        assert command.callback.__module__ == f"m22bol.cli.{module}", name
        assert summary == " ".join((command.help or "").split("\n\n")[0].split()), name


def test_help_lists_every_command_and_loads_none_of_their_modules():
    code = ("import sys\n"
            "from m22bol.cli.main import main\n"
            "sys.argv = ['m22bol', '--help']\n"
            "try:\n    main()\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('m22bol.cli.')))\n"
            "print('pydantic' in sys.modules, 'sqlalchemy' in sys.modules)\n")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "COLUMNS": "100"}).stdout
    for name in registry.COMMANDS:
        assert f"\n  {name} " in shown, name
    modules, heavy = shown.strip().splitlines()[-2:]
    assert modules == "['m22bol.cli.main', 'm22bol.cli.output', 'm22bol.cli.registry']"
    assert heavy == "False False"


def test_a_command_loads_only_its_own_module():
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from m22bol.cli.main import app\n"
            "CliRunner().invoke(app(), ['endpoints', '--help'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('m22bol.cli.')))\n")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert "m22bol.cli.tallies" in shown
    for other in ("audit", "demo", "report", "entry", "clarifications", "db"):
        assert f"m22bol.cli.{other}'" not in shown, other
