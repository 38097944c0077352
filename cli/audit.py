"""`m22bol audit verify|seal|export`, and the electronic signature commands `sign` and
`set-password`."""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import ValidationError

from m22bol.cli.entry import option_help
from m22bol.cli.main import (
    Session,
    cli,
    handled,
    known_at_option,
    parse_known_at,
    shared_options,
)
from m22bol.cli.output import emit, reading_log, table
from m22bol.domain import commands as c
from m22bol.domain.errors import BadInput, IntegrityFailure


@cli.group()
@shared_options
def audit() -> None:
    """Integrity and the audit trail: verify the hash chains and seals, seal, export."""


@audit.command()
@click.option("--seal", "digest", metavar="DIGEST",
              help="Also check that the ledger holds, intact, the history sealed with DIGEST "
                   "(a seal digest received earlier).")
@shared_options
@handled
def verify(s: Session, digest: str | None) -> None:
    """Re-read the whole store; name every modified, deleted, reordered or inserted event and
    every seal the store no longer matches (exit 5)."""
    from m22bol.ledger import integrity

    with reading_log(s.ledger, "verifying: reading the log", s.as_json):
        report = integrity.verify(s.ledger, seal=digest)
    # Grants are read from the trial chain: only a chain that verifies may decide who is let
    # in. A damaged one is reported to whoever asks, since no role can be trusted then.
    if report.trial_intact:
        s.reader.allow("audit verify")
    document = report.as_dict()
    if report.ok:
        emit(document, s.as_json, text=_report_text(report))
        return
    error = IntegrityFailure(
        f"integrity check failed: {len(report.findings)} problem(s), "
        f"{sum(not x.ok for x in report.seals)} broken seal(s)", rule="integrity")
    if s.as_json:
        emit({**document, **error.as_json()}, True)
    else:
        click.echo(_report_text(report))
        click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_code)


def _report_text(report) -> str:
    lines = [f"{report.events} events in {report.chains} hash chains; "
             f"{len(report.seals)} seal(s)"]
    if report.findings:
        lines += ["", "FAILED", table([
            {"kind": f.kind, "entry": f.entry, "log": f.notification_id, "message": f.message}
            for f in report.findings])]
    for seal in report.seals:
        verdict = "matches the store" if seal.ok else "BROKEN: " + "; ".join(seal.problems)
        lines += ["", f"seal {seal.entry} by {seal.sealed_by} at {seal.sealed_at} "
                  f"({seal.event_count} events, note: {seal.note})",
                  f"  digest {seal.digest}", f"  {verdict}"]
    if report.ok:
        lines += ["", "OK: every chain and every seal verifies"]
    return "\n".join(lines)


@audit.command()
@click.option("--note", required=True, help="Why the ledger is sealed now (data cutoff, lock, "
              "monitoring visit).")
@shared_options
@handled
def seal(s: Session, note: str) -> None:
    """Verify, then seal: one digest over the head of every hash chain, printed to hand on."""
    from m22bol.ledger import integrity

    s.reader.allow("audit seal")
    output = integrity.seal(s.ledger, note, s.user)
    emit(output, s.as_json, text=(
        f"sealed {output['event_count']} events in {output['chains']} hash chains as "
        f"{output['entry']}\ndigest: {output['digest']}"))


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "odm"]), required=True,
              help="jsonl: every stored event with its envelope and chain hash; odm: CDISC "
                   "ODM 1.3.2 XML.")
@click.option("--subject", help="Only this subject (default: the whole trial).")
@known_at_option
@click.option("--out", required=True, metavar="FILE", help="File to write, or - for stdout.")
@shared_options
@handled
def export_(s: Session, fmt: str, subject: str | None, known_at: str | None, out: str) -> None:
    """Copy the audit trail for review, whole trial or one subject."""
    from m22bol.ledger import export

    s.reader.allow("audit export")
    write = export.export_jsonl if fmt == "jsonl" else export.export_odm
    with reading_log(s.ledger, f"exporting {fmt}", s.as_json or out == "-"):
        summary = write(s.ledger, out, subject=subject, known_at=parse_known_at(known_at))
    if out != "-":  # the export itself is on standard output
        emit(summary, s.as_json,
             text=f"wrote {summary['events']} events to {out} ({fmt.upper()})")


# --- electronic signatures --------------------------------------------------------------------

password_stdin_option = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from standard input, one per line, instead of prompting.")


@cli.command()
@click.argument("subject")
@click.option("--meaning", type=click.Choice(["reviewed", "approved"]), required=True,
              help=option_help(c.Sign.model_fields["meaning"]))
@password_stdin_option
@shared_options
@handled
def sign(s: Session, subject: str, meaning: str, password_stdin: bool) -> None:
    """Sign a subject's records as they stand (investigator); asks for your password again."""
    s.reader.allow("sign")
    password = _password(password_stdin, "Password")
    command = _build(c.Sign, subject=subject, meaning=meaning, password=password)
    emit(s.ledger.execute(command, s.user), s.as_json)


@cli.command("set-password")
@password_stdin_option
@shared_options
@handled
def set_password(s: Session, password_stdin: bool) -> None:
    """Set your signing password; changing it asks for the current one first.

    With --password-stdin: the new password on the first line, or, to change one, the current
    password on the first line and the new one on the second.
    """
    s.reader.allow("set-password")
    current = None
    if s.user in s.ledger.require_trial().password_hashes:
        current = _password(password_stdin, "Current password")
    if password_stdin:
        new = _password(True, "New password")
    else:
        new = click.prompt("New password", hide_input=True, confirmation_prompt=True,
                           err=True)
    command = _build(c.SetPassword, password=new, current_password=current)
    emit(s.ledger.execute(command, s.user), s.as_json)


def _password(from_stdin: bool, prompt: str) -> str:
    if not from_stdin:
        return click.prompt(prompt, hide_input=True, err=True)
    line = sys.stdin.readline()
    if not line:
        raise BadInput(f"password: no {prompt.lower()} on standard input", field="password")
    return line.rstrip("\r\n")


def _build(model: type[c.Command], **values: Any) -> c.Command:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise c.describe_validation_error(exc) from None
