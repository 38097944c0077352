"""The `m22bol` command: the click group and the options every command shares."""

from __future__ import annotations

import functools
import gc
import importlib
import os
import sys
import types
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import click

from m22bol.cli import registry
from m22bol.cli.output import fail
from m22bol.domain.errors import BadInput, LedgerError

DEFAULT_LEDGER = "sqlite:///m22bol.sqlite"


PASSWORD_ENV = "M22BOL_PASSWORD"


@dataclass
class Session:
    """What every command needs: where the ledger is, who acts, how to print.

    `claimed` is the name given with --user (or M22BOL_USER), a claim only: `user` is who the
    store authenticated, or that name once its password was checked (ledger/identity.py).
    """

    ledger_url: str
    claimed: str | None = None
    as_json: bool = False
    _ledger: Any = None
    # Whether opening the ledger checks it against what this account saw before (ledger.seen);
    # `audit verify` reports that check in its report instead of stopping at it.
    check_seen: bool = True
    _user: str | None = None
    _password: str | None = None

    @property
    def user(self) -> str:
        if self._user is None:
            from m22bol.ledger.identity import authenticate

            self._user = authenticate(self.ledger, self.claimed, self.password)
        return self._user

    def password(self) -> str | None:
        """The claimed user's password: M22BOL_PASSWORD (for scripts, as PGPASSWORD is for
        psql), else asked on the terminal; None when neither can give one."""
        if self._password is None:
            self._password = os.environ.get(PASSWORD_ENV)
            if self._password is None and sys.stdin.isatty():
                self._password = click.prompt(f"Password of {self.claimed}", hide_input=True,
                                              err=True)
        return self._password

    def first_commands(self, commands: list) -> list:
        """`init` as someone other than the account running it names the first admin: that
        admin's password is set in the same transaction, or nothing is written."""
        from pydantic import ValidationError

        from m22bol.domain import commands as c
        from m22bol.domain.errors import NotPermitted

        if self.ledger.trial() is not None or self.user == self.ledger.account:
            return commands
        password = self.password()
        if password is None:
            raise NotPermitted(f"--user {self.user}: a new ledger's first admin needs a "
                               f"password (asked on a terminal, or {PASSWORD_ENV})",
                               rule="identity.no_password", field="password")
        try:
            return [*commands, c.SetPassword(password=password)]
        except ValidationError as exc:
            raise c.describe_validation_error(exc) from None

    def present(self, question: str, *args: Any) -> Any:
        """The present (`status`, `patient`, `endpoints`) read without opening the write side
        (`projections.present`), or None when only the full ledger answers as it always has:
        an attempt to record (a refused password), read models to catch up, no ledger yet."""
        from m22bol.ledger.readonly import ReadOnlyLedger, Unavailable
        from m22bol.projections.present import PresentReader

        try:
            ledger = ReadOnlyLedger(self.ledger_url)
        except Unavailable:
            return None
        try:
            if self.check_seen:
                from m22bol.ledger import seen

                seen.watch(ledger)
            reader = PresentReader(ledger, self.claimed, self.password)
            self._user = reader.user  # authenticated as the full ledger would have
            return getattr(reader, question)(*args)
        except Unavailable:
            return None
        except ledger.recorder.database_errors:  # the full ledger names the problem
            return None
        finally:
            ledger.close()

    @property
    def reader(self):
        """The ledger's questions, asked as this user (access checked on each)."""
        from m22bol.projections.reader import Reader

        return Reader(self.ledger, self.user)

    @property
    def ledger(self):
        if self._ledger is None:
            from m22bol.domain.errors import BadInput
            from m22bol.ledger.app import TrialLedger  # imported on use: --help stays fast
            from m22bol.ledger.store import MEMORY_URL
            from m22bol.projections import after_save, due_subjects

            if self.ledger_url.strip() == MEMORY_URL:
                # The tests' in-process store: from the command line every entry would be
                # accepted, then lost when the process ends.
                raise BadInput(f"ledger: {MEMORY_URL} keeps nothing once the command ends; give "
                               "a SQLite file (sqlite:///trial.sqlite) or a PostgreSQL URL",
                               field="ledger")
            self._ledger = TrialLedger(self.ledger_url, after_save=[after_save],
                                       due_subjects=due_subjects)
            if self.check_seen:
                from m22bol.ledger import seen

                seen.watch(self._ledger)
        return self._ledger


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Shared options may be given before or after the command name; the last one typed wins,
    # and one typed anywhere wins over its environment variable, which every level reads.
    if value is None or value is False:
        return value
    key = f"m22bol.{param.name}"
    meta = ctx.find_root().meta
    if ctx.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT:
        meta.setdefault(key, value)
    else:
        meta[key] = value
    return value


def shared_options(func):
    """--ledger, --user and --json on every command, as on the group."""
    for option in reversed([
        click.option("--ledger", envvar="M22BOL_LEDGER", expose_value=False, callback=_remember,
                     is_eager=True, help="SQLAlchemy URL of the ledger "
                     f"(env M22BOL_LEDGER, default {DEFAULT_LEDGER})."),
        click.option("--user", "acting_user", envvar="M22BOL_USER", expose_value=False,
                     callback=_remember, is_eager=True,
                     help="Act as this ledger user, with that user's password (env "
                     "M22BOL_USER; password asked, or env M22BOL_PASSWORD). Default: your "
                     "operating-system account (SQLite) or database login (PostgreSQL)."),
        click.option("--json", "as_json", is_flag=True, default=False, expose_value=False,
                     callback=_remember, is_eager=True,
                     help="Print one JSON document instead of text."),
    ]):
        func = option(func)
    return func


def session() -> Session:
    meta = click.get_current_context().find_root().meta
    return Session(
        ledger_url=meta.get("m22bol.ledger") or DEFAULT_LEDGER,
        claimed=meta.get("m22bol.acting_user"),
        as_json=bool(meta.get("m22bol.as_json")),
    )


# --- options and checks that several command modules share ----------------------------------


def parse_known_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"known-at: {value!r} is not an ISO 8601 timestamp",
                       field="known_at") from None
    if moment.tzinfo is None:
        raise BadInput("known-at: give the UTC offset, e.g. 2027-03-01T09:00:00+00:00",
                       field="known_at")
    try:
        moment.astimezone(UTC)  # 9999-12-31T23:59:59-14:00 lies past the last datetime
    except OverflowError:
        raise BadInput(f"known-at: {value!r} lies outside the years 1-9999 in UTC",
                       field="known_at") from None
    return moment


def parse_cutoff(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"cutoff: {value!r} is not an ISO 8601 date", field="cutoff") from None


known_at_option = click.option("--known-at", help="What the ledger showed at this timestamp.")
cutoff_option = click.option("--cutoff", help="Leave out facts dated after this date.")


def handled(func):
    """Turn the ledger's refusals into their exit codes; never show a traceback for them."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from m22bol.domain.text import unprintable

        s = session()
        try:
            # A claimed name is printed in every audit trail: refused before it is checked.
            if bad := unprintable(s.claimed or ""):
                raise BadInput(f"user: contains the control or bidirectional character {bad}",
                               field="user")
            return func(s, *args, **kwargs)
        except LedgerError as error:
            fail(error, s.as_json)
        except (click.ClickException, click.exceptions.Exit, SystemExit):
            raise
        except Exception as error:  # a bug: say so plainly, exit 1
            from m22bol.ledger.store import environment_problem

            if problem := environment_problem(s.ledger_url, error):  # the disk, the server
                fail(problem, s.as_json)
            if os.environ.get("M22BOL_DEBUG"):
                raise
            click.echo(f"error: unexpected failure (a bug): {type(error).__name__}: {error}",
                       err=True)
            sys.exit(1)
        finally:
            if s._ledger is not None:
                s._ledger.close()

    return wrapper


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is asked for: click's
    lazy-loading pattern (`list_commands` and `get_command`), with the listing of `--help`
    read from `cli.registry`, so that listing imports no command module either."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(registry.COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in registry.COMMANDS:
            # The module registers its commands on this group as it is imported, or builds
            # the one asked for (`build_command`: cli.entry makes one from each command model).
            module = importlib.import_module(f"m22bol.cli.{registry.COMMANDS[name][0]}")
            if name not in self.commands and hasattr(module, "build_command"):
                module.build_command(name)
        command = self.commands.get(name)
        if command is not None:
            registry.add_examples(command, (name,))
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed = [(name, self.commands.get(name) or click.Command(
            name, help=registry.COMMANDS[name][1])) for name in self.list_commands(ctx)]
        listed = [(name, command) for name, command in listed if not command.hidden]
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit))
                                for name, command in listed])


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="m22bol", prog_name="m22bol")
@shared_options
def cli() -> None:
    """M22BOL trial ledger: every trial fact as an immutable, audited event.

    Entry commands record facts (refused with a message naming the rule when the protocol
    forbids them); query commands read the current state, the audit trail and the tallies.
    """


def app() -> click.Group:
    """The `m22bol` group; each command is loaded when it is asked for (`LazyGroup`)."""
    return cli


def _no_plugin_loader() -> None:
    """With plugins disabled pydantic still imports its plugin loader when it builds the first
    model, only to be told there are none; the loader imports `importlib.metadata` (email,
    zipfile, csv), about 12 ms of an entry's CPU. Its one function, `get_plugins`, is put in
    its place, answering as the loader itself answers when plugins are disabled."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") not in ("__all__", "1", "true"):
        return
    name = "pydantic.plugin._loader"
    if name not in sys.modules:
        loader = types.ModuleType(name, "pydantic's plugin loader, plugins disabled")
        loader.get_plugins = lambda: ()
        sys.modules[name] = loader


def process_settings() -> None:
    """What the `m22bol` process sets for itself before it imports its commands; run again,
    it changes nothing."""
    # The ledger validates with its own models only, never through a pydantic plugin; looking
    # for plugins scans the entry points of every installed package (about 30 ms of CPU, more
    # than the rest of `--help`) when the first model is built.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _no_plugin_loader()
    # Start-up makes tens of thousands of objects that live as long as the process (classes,
    # their validators, the protocol); at the default threshold (a pass every 700 new objects)
    # the cyclic collector scanned them about 100 times, some 20 ms of an entry's 250 ms of
    # CPU. A pass every 100,000 leaves an entry none to make, and long commands (import,
    # rebuild, verify) still collect, with at most that many objects waiting.
    gc.set_threshold(100_000, 10, 10)


def main() -> None:
    process_settings()
    app()(prog_name="m22bol")
