"""`m22bol audit verify|seal|export`, and the electronic signature commands `sign` and
`set-password`."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click
from pydantic import ValidationError

from m22bol.cli.main import (
    Session,
    cli,
    handled,
    known_at_option,
    parse_known_at,
    shared_options,
)
from m22bol.cli.output import emit, table
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
@click.option("--trusted-key", "trusted_keys", multiple=True, metavar="PUB",
              help="A sealing key's public half (FILE.pub of `audit keygen`); every seal not "
                   "signed by one of the trusted keys fails. Repeatable.")
@click.option("--witness", metavar="FILE",
              help="A witness file written by `audit seal --witness`: every digest in it must "
                   "still be matched by a seal that verifies.")
@shared_options
@handled
def verify(s: Session, digest: str | None, trusted_keys: tuple[str, ...],
           witness: str | None) -> None:
    """Re-read the whole store and report: every modified, deleted, reordered or inserted
    event, every seal the store no longer matches or no trusted key signed, every witnessed
    digest no longer held, any read-model row that differs from the events, a history
    rewritten since this account last saw it, and how many entries no seal covers yet
    (exit 5 on any failure)."""
    from m22bol.ledger import integrity, seal_keys, seen
    from m22bol.projections import check

    keys = [seal_keys.trusted(path) for path in trusted_keys] if trusted_keys else None
    s.check_seen = False  # reported below with everything else, not as a refusal
    ledger = s.ledger
    account_problem = None
    try:
        seen.watch(ledger)
    except IntegrityFailure as failure:
        account_problem = failure.message
    with _progress(s, ledger) as progress:
        report = integrity.verify(ledger, seal=digest, trusted_keys=keys, witness=witness,
                                  progress=progress)
    if account_problem:
        report.add("seen", "-", account_problem)
    # Grants are read from the trial chain: only a chain that verifies may decide who is let
    # in. A damaged one is reported to whoever asks, since no role can be trusted then.
    if report.trial_intact:
        s.reader.allow("audit verify")
    # Read models are only worth comparing with events that verify.
    differences = check.read_models(ledger) if report.ok else []
    document = {**report.as_dict(), "read_models": {
        "ok": not differences, "differences": [d.as_dict() for d in differences]}}
    if report.ok and not differences:
        emit(document, s.as_json, text=_report_text(report, differences))
        return
    error = IntegrityFailure(
        f"integrity check failed: {len(report.findings)} problem(s), "
        f"{sum(not x.ok for x in report.seals)} broken seal(s), "
        f"{len(differences)} read-model difference(s)", rule="integrity")
    if s.as_json:
        emit({**document, "ok": False, **error.as_json()}, True)
    else:
        click.echo(_report_text(report, differences))
        click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_code)


@contextlib.contextmanager
def _progress(s: Session, ledger):
    """A progress bar on a terminal (standard error), nothing otherwise."""
    if s.as_json or not sys.stderr.isatty():
        yield None
        return
    total = ledger.recorder.max_notification_id() or 0
    with click.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
        yield bar.update


def _report_text(report, differences) -> str:
    from m22bol.ledger.coverage import unsealed_text

    lines = [f"{report.events} events in {report.chains} hash chains; "
             f"{len(report.seals)} seal(s)"]
    if report.findings:
        lines += ["", "FAILED", table([
            {"kind": f.kind, "entry": f.entry, "log": f.notification_id, "message": f.message}
            for f in report.findings])]
    for seal in report.seals:
        verdict = "matches the store" if seal.ok else "BROKEN: " + "; ".join(seal.problems)
        signed = f", signed by {seal.signed_by}" if seal.signed_by else ", unsigned"
        lines += ["", f"seal {seal.entry} by {seal.sealed_by} at {seal.sealed_at} "
                  f"({seal.event_count} events{signed}, note: {seal.note})",
                  f"  digest {seal.digest}", f"  {verdict}"]
    if differences:
        lines += ["", "READ MODELS DIFFER FROM THE EVENTS", table([d.as_dict()
                                                                  for d in differences])]
    lines += ["", unsealed_text(report.as_dict()["not_yet_sealed"])]
    if report.ok and not differences:
        lines += ["", "OK: every chain and every seal verifies; the read models match the "
                  "events"]
    return "\n".join(lines)


def _passphrase(confirm: bool) -> str:
    """From M22BOL_KEY_PASSPHRASE (scripts), else asked on the terminal."""
    if (value := os.environ.get("M22BOL_KEY_PASSPHRASE")) is not None:
        return value
    if not sys.stdin.isatty():
        raise BadInput("passphrase: none given; type it on a terminal or set "
                       "M22BOL_KEY_PASSPHRASE", field="passphrase")
    return click.prompt("Key passphrase", hide_input=True, confirmation_prompt=confirm,
                        err=True)


@audit.command()
@click.option("--note", required=True, help="Why the ledger is sealed now (data cutoff, lock, "
              "monitoring visit).")
@click.option("--key", "key_file", metavar="FILE",
              help="Sign the digest with this sealing key (made by `audit keygen`; asks for "
                   "its passphrase, or reads M22BOL_KEY_PASSPHRASE).")
@click.option("--witness", metavar="FILE",
              help="Also append the digest, the seal's place and time to FILE, kept outside "
                   "the ledger.")
@shared_options
@handled
def seal(s: Session, note: str, key_file: str | None, witness: str | None) -> None:
    """Verify, then seal: one digest over the head of every hash chain, printed to hand on."""
    from m22bol.ledger import integrity, seal_keys, seen
    from m22bol.ledger import witness as witnesses

    s.reader.allow("audit seal")
    sign = seal_keys.signer(key_file, _passphrase(False)) if key_file else None
    output = integrity.seal(s.ledger, note, s.user, sign=sign)
    if witness:
        witnesses.append(witness, output, seen.ledger_key(s.ledger_url))
    signed = f"\nsigned by {output['signed_by']}" if output["signed_by"] else ""
    emit(output, s.as_json, text=(
        f"sealed {output['event_count']} events in {output['chains']} hash chains as "
        f"{output['entry']}\ndigest: {output['digest']}{signed}"))


@audit.command()
@click.option("--out", required=True, metavar="FILE",
              help="The private key file to write; the public key goes to FILE.pub.")
@shared_options
@handled
def keygen(s: Session, out: str) -> None:
    """Make a passphrase-protected Ed25519 sealing key pair (FILE, FILE.pub). Keep FILE away
    from the ledger; hand FILE.pub to whoever verifies."""
    from m22bol.ledger import seal_keys

    # No ledger is opened: a sealing key belongs to a person, not to a ledger.
    made = seal_keys.generate(out, _passphrase(True))
    emit(made, s.as_json, text=f"wrote {made['private_key']} (keep it secret) and "
         f"{made['public_key']}\nkey {made['key_id']}")


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
@click.option("--meaning", type=click.Choice(["reviewed", "approved"]), required=True)
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
    """Set your own password; changing it asks for the current one first.

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


@cli.command("reset-password")
@click.argument("user")
@password_stdin_option
@shared_options
@handled
def reset_password(s: Session, user: str, password_stdin: bool) -> None:
    """Set a user's first or forgotten password (admin); lifts a lockout.

    Hand the new password to the user by a channel of its own; they change it with
    `m22bol set-password`.
    """
    s.reader.allow("reset-password")
    if password_stdin:
        new = _password(True, "New password")
    else:
        new = click.prompt(f"New password for {user}", hide_input=True,
                           confirmation_prompt=True, err=True)
    command = _build(c.ResetPassword, user=user, password=new)
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
