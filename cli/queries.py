"""Query commands: read the ledger, print text or JSON, never write."""

from __future__ import annotations

import click

from m22bol.cli.main import (
    Session,
    cli,
    cutoff_option,
    handled,
    known_at_option,
    parse_cutoff,
    parse_known_at,
    shared_options,
)
from m22bol.cli.output import emit, key_values, table


@cli.command()
@click.argument("subject")
@known_at_option
@cutoff_option
@shared_options
@handled
def patient(s: Session, subject: str, known_at: str | None, cutoff: str | None) -> None:
    """The subject's current state and timeline."""
    doc = s.reader.patient(subject, known_at=parse_known_at(known_at),
                           cutoff=parse_cutoff(cutoff))
    from m22bol.ledger.signatures import describe

    head = {k: v for k, v in doc.items() if k not in ("timeline", "deviations")}
    head["signature"] = describe(doc["signature"])
    rows = [{"entry": r["entry"], "date": r["date"], "event": r["event"],
             "values": ", ".join(f"{k}={v}" for k, v in r.items()
                                 if k not in ("entry", "date", "event"))}
            for r in doc["timeline"]]
    emit(doc, s.as_json, text=key_values(head) + "\n\n" + table(rows))


@cli.command()
@click.argument("subject", required=False)
@known_at_option
@shared_options
@handled
def history(s: Session, subject: str | None, known_at: str | None) -> None:
    """The audit trail: who entered or changed what, when and why. Without SUBJECT, the
    trial's: protocol versions, grants, passwords set, refused authentications, locks, seals."""
    from m22bol.ledger.signatures import describe

    doc = s.reader.history(subject, known_at=parse_known_at(known_at))
    rows = [{"entry": r["entry"], "recorded_at": r["recorded_at"], "actor": r["actor"],
             "event": r["event"], "values": _changed(r),
             "reason": r["reason"], "superseded_by": r["superseded_by"]}
            for r in doc["entries"]]
    foot = ("signature: " + describe(doc["signature"]) if subject is not None
            else "SYNTHETIC DEMO DATA: not a trial record" if doc["synthetic"] else "")
    emit(doc, s.as_json, text=table(rows) + ("\n\n" + foot if foot else ""))


def _changed(row: dict) -> str:
    """A change shows the entry it changes and each value before and after."""
    if row.get("new_values") is not None:
        return f"{row['values']['entry']}: " + ", ".join(
            f"{k}: {row['old_values'].get(k)} -> {v}" for k, v in row["new_values"].items())
    if "old_values" in row:
        return f"{row['values']['entry']} retracted (was: " + ", ".join(
            f"{k}={v}" for k, v in row["old_values"].items() if v not in (None, [], {})) + ")"
    return ", ".join(f"{k}={v}" for k, v in row["values"].items() if v is not None)


@cli.command()
@known_at_option
@shared_options
@handled
def status(s: Session, known_at: str | None) -> None:
    """Counts per basket: screened, screen-failed, enrolled, on treatment, ... dead."""
    from m22bol.ledger.coverage import unsealed_text

    doc = s.reader.status(known_at=parse_known_at(known_at))
    rows = [{"basket": b, **counts} for b, counts in doc["baskets"].items()]
    sealing = f"\n\n{unsealed_text(doc['not_yet_sealed'])}" if "not_yet_sealed" in doc else ""
    emit(doc, s.as_json, text=table(rows) + sealing)


@cli.command()
@shared_options
@handled
def protocol(s: Session) -> None:
    """The protocol in force, and every version registered."""
    doc = s.reader.protocol()
    text = (f"{doc['name']} protocol {doc['version']}: {doc['title']}\n"
            + "versions: " + ", ".join(f"{v['version']} ({v['sha256'][:12]})"
                                       for v in doc["versions"])
            + "\n\n" + table(doc["baskets"]))
    emit(doc, s.as_json, text=text)


@cli.command()
@shared_options
@handled
def deviations(s: Session) -> None:
    """Every protocol deviation accepted with a reason."""
    rows = s.reader.deviations()
    emit({"deviations": rows}, s.as_json,
         text=table(rows, ["entry", "rule", "reason", "actor", "recorded_at"]))
