"""docs/cli.md, written from the click commands and the command models:
`python -m m22bol.cli.reference > docs/cli.md`. A test regenerates it and fails on any
difference, so the reference cannot drift from `--help`.

The entry commands are listed in the order of COURSE: read top to bottom, their examples enter
one subject's whole course into a new ledger (the test does exactly that). The commands that
are not entries take their examples from `cli.registry.EXAMPLES`, which `--help` shows too.
"""

from __future__ import annotations

import click

from m22bol.cli.entry import example_jsonl, example_line, option_help
from m22bol.cli.main import app
from m22bol.cli.registry import EXAMPLES
from m22bol.domain import commands as c
from m22bol.ledger import access

COURSE = (
    "init", "grant", "register", "assess-eligibility", "enrol", "scan", "ctdna", "pet",
    "infuse", "adverse-event", "update-adverse-event", "interrupt", "resolve-adverse-event",
    "resume", "reduce-dose", "lvef", "surgery", "pathology", "complication", "radiotherapy",
    "complete-local-treatment", "correct", "retract", "contact", "discontinue",
    "subsequent-therapy", "withdraw", "death", "lock", "unlock", "amend-protocol", "revoke",
)

# These ask for a password or passphrase at the keyboard, which the test of the examples cannot
# type; their examples are shown as plain text, not as `console` blocks the test runs.
# `db setup` is for PostgreSQL, which the test of the examples does not have.
AT_THE_KEYBOARD = {"set-password", "sign", "audit keygen", "db setup"}
# The query steps and source verification belong to a monitor and name entries and queries of
# a monitored trial (docs/queries.md walks one); they are shown, not run, like those above.
SHOWN_NOT_RUN = AT_THE_KEYBOARD | {"queries", "sdv", "query open", "query answer",
                                   "query close", "query reopen", "verify-source"}
# The course's second user: nobody grants a role to themselves, so the admin `init` makes
# grants alice data-manager and sets her first password; the entries are hers.
ENTRY_USER = "alice"


def walk(group: click.Group, prefix: tuple[str, ...] = ()):
    """Every command under the group, loading each (the group lists what it has not loaded)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from walk(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def _summary(command: click.Command) -> str:
    return (command.help or "").split("\n\n")[0].replace("\n", " ").strip()


def _usage(path: tuple[str, ...], command: click.Command) -> str:
    ctx = click.Context(command, info_name=" ".join(("m22bol", *path)))
    return " ".join(command.collect_usage_pieces(ctx)).join((f"m22bol {' '.join(path)} ", ""))


def _option_rows(command: click.Command) -> list[str]:
    rows = []
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in ("acting_user", "ledger",
                                                                  "as_json", "help"):
            continue
        flags = " / ".join(param.opts + param.secondary_opts)
        required = " (required)" if param.required else ""
        text = (param.help or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{flags}`{required} | {text} |")
    return rows


def _positional_rows(model: type[c.Command]) -> list[str]:
    return [f"| `{name.upper()}` (argument) | {option_help(model.model_fields[name])} |"
            for name in model.positional]


def _entry_section(model: type[c.Command], command: click.Command) -> list[str]:
    out = [f"### `{model.name}`", "", model.help, "", "```", _usage((model.name,), command),
           "```", ""]
    rows = _positional_rows(model) + _option_rows(command)
    if rows:
        out += ["| option | meaning |", "|---|---|", *rows, ""]
    line = example_line(model)
    if model.name not in access.ADMIN and model.name != "init":
        line += f" --user {ENTRY_USER}"
    out += ["```console", f"$ {line}", *_after(model.name), "```", "",
            "As a JSON Lines record:", "",
            "```json", example_jsonl(model), "```", ""]
    return out


def _after(name: str) -> list[str]:
    """After the grant, the admin sets alice's first password (typed twice at the prompt)."""
    return [f"$ m22bol reset-password {ENTRY_USER}"] if name == "grant" else []


def _other_section(path: tuple[str, ...], command: click.Command) -> list[str]:
    name = " ".join(path)
    body = (command.help or "").split("\n\nExample:")[0].replace("\b\n", "")
    out = [f"### `{name}`", "", body.strip(), "", "```", _usage(path, command), "```", ""]
    rows = []
    for param in command.params:
        if isinstance(param, click.Argument):
            rows.append(f"| `{param.name.upper()}` (argument) | |")
    rows += _option_rows(command)
    if rows:
        out += ["| option | meaning |", "|---|---|", *rows, ""]
    if name in EXAMPLES:
        fence = "```" if name in SHOWN_NOT_RUN else "```console"
        out += [fence, *(f"$ {line}" for line in EXAMPLES[name]), "```", ""]
    return out


HEAD = """# Command reference

Written by `python -m m22bol.cli.reference > docs/cli.md` from the commands themselves; a test
fails when this page and `m22bol --help` disagree. Read with [the JSON Lines format](jsonl.md),
[output and exit codes](output.md), [the counting rules](endpoints.md) and
[the audit guarantees](audit-trail.md).

Every command takes these options, before or after the command name:

| option | meaning |
|---|---|
"""

COURSE_NOTE = """## Entry commands

Each entry command records one fact about one subject, or changes the trial's set-up. The
examples below, run from top to bottom against a new ledger, enter one subject's whole course.
`init` makes you (your login) the ledger's admin. Nobody grants a role to themselves, so the
admin grants data-manager to a second user, `alice`, and sets her first password with
`reset-password` (typed twice); the entries are alice's, made with `--user alice` and her
password (asked, or `M22BOL_PASSWORD` in scripts). The admin's own commands (`lock`, `unlock`,
`amend-protocol`, `revoke`) run without `--user`. A test runs every example on this page in
that order.

Entry ids (`M22-001#7`) number a subject's entries from 1 in the order they were recorded;
`history` lists them.
"""


def render() -> str:
    group = app()
    out = [HEAD.rstrip("\n")]
    for param in group.params:
        if isinstance(param, click.Option) and param.help:
            out.append(f"| `{' / '.join(param.opts)}` | {param.help} |")
    out += ["", COURSE_NOTE]
    for name in COURSE:
        out += _entry_section(c.COMMANDS[name], group.get_command(click.Context(group), name))
    missing = set(c.COMMANDS) - set(COURSE)
    assert not missing, f"entry commands without a place in the course: {sorted(missing)}"
    out += ["## Questions, audit and administration", ""]
    for path, command in walk(group):
        if path[0] not in c.COMMANDS:
            out += _other_section(path, command)
    return "\n".join(out).rstrip("\n") + "\n"


def course_jsonl() -> str:
    """docs/examples/course.jsonl: the subject's facts of the course above as one file (the
    set-up and administration stay at the keyboard)."""
    import json

    return "".join(json.dumps({"command": name, **c.COMMANDS[name].example}) + "\n"
                   for name in COURSE if issubclass(c.COMMANDS[name], c.SubjectCommand))


if __name__ == "__main__":
    click.echo(render(), nl=False)
