"""The `m22bol` command: the click group and the options every command shares."""

from __future__ import annotations

import functools
import getpass
import os
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import click

from m22bol.cli.output import fail
from m22bol.domain.commands import unprintable
from m22bol.domain.errors import BadInput, LedgerError

DEFAULT_LEDGER = "sqlite:///m22bol.sqlite"


@dataclass
class Session:
    """What every command needs: where the ledger is, who acts, how to print."""

    ledger_url: str
    user: str
    as_json: bool = False
    _ledger: Any = None
    # Whether opening the ledger checks it against what this account saw before (ledger.seen);
    # `audit verify` reports that check in its report instead of stopping at it.
    check_seen: bool = True

    @property
    def reader(self):
        """The ledger's questions, asked as this user (access checked on each)."""
        from m22bol.projections.reader import Reader

        return Reader(self.ledger, self.user)

    @property
    def ledger(self):
        if self._ledger is None:
            from m22bol.ledger.app import TrialLedger  # imported on use: --help stays fast
            from m22bol.projections import after_save

            self._ledger = TrialLedger(self.ledger_url, after_save=[after_save])
            if self.check_seen:
                from m22bol.ledger import seen

                seen.watch(self._ledger)
        return self._ledger


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Shared options may be given before or after the command name; the last one wins.
    if value is not None and value is not False:
        ctx.find_root().meta[f"m22bol.{param.name}"] = value
    return value


def shared_options(func):
    """--ledger, --user and --json on every command, as on the group."""
    for option in reversed([
        click.option("--ledger", envvar="M22BOL_LEDGER", expose_value=False, callback=_remember,
                     is_eager=True, help="SQLAlchemy URL of the ledger "
                     f"(env M22BOL_LEDGER, default {DEFAULT_LEDGER})."),
        click.option("--user", "acting_user", envvar="M22BOL_USER", expose_value=False,
                     callback=_remember, is_eager=True,
                     help="Who is acting (env M22BOL_USER, default: your login)."),
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
        user=meta.get("m22bol.acting_user") or _login(),
        as_json=bool(meta.get("m22bol.as_json")),
    )


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment
        return "unknown"


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
        s = session()
        try:
            if bad := unprintable(s.user):  # a name is printed in every audit trail
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="m22bol", prog_name="m22bol")
@shared_options
def cli() -> None:
    """M22BOL trial ledger: every trial fact as an immutable, audited event.

    Entry commands record facts (refused with a message naming the rule when the protocol
    forbids them); query commands read the current state, the audit trail and the tallies.
    """


def app() -> click.Group:
    """The group with every command registered (each module adds its commands on import)."""
    from m22bol.cli import audit, demo, entry, queries, read_models, report, tallies  # noqa: F401

    return cli


def main() -> None:
    app()(prog_name="m22bol")
