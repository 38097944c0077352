"""Query commands: read the ledger, print text or JSON, never write."""

from __future__ import annotations

from typing import Any

import click

from m22bol.cli.completion import complete_subject
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
from m22bol.cli.output import emit, fields, fill, section, table


@cli.command()
@click.argument("subject", shell_complete=complete_subject)
@known_at_option
@cutoff_option
@shared_options
@handled
def patient(s: Session, subject: str, known_at: str | None, cutoff: str | None) -> None:
    """The subject's current state in labelled sections, then the timeline of entries."""
    known_at, cutoff = parse_known_at(known_at), parse_cutoff(cutoff)
    doc = s.present("patient", subject) if known_at is None and cutoff is None else None
    if doc is None:
        doc = s.reader.patient(subject, known_at=known_at, cutoff=cutoff)
    emit(doc, s.as_json, text=None if s.as_json else patient_text(doc))


def patient_text(doc: dict[str, Any]) -> str:
    from m22bol.ledger.signatures import describe

    infusions = [r for r in doc["timeline"] if r["event"] == "InfusionGiven"]
    lvef = doc.get("lvef") or {}
    pfs, os_ = doc.get("progression_free") or {}, doc.get("overall_survival") or {}
    parts = [
        section(f"subject {doc['subject']}", fields([
            ("site", doc["site"]), ("status", doc["status"]), ("basket", doc["basket"]),
            ("consent", doc["consent_date"]), ("enrolled", doc["enrolled"]),
            ("failed criteria", ", ".join(doc["failed_criteria"])),
            ("withdrawn", doc["withdrawn"]), ("death", doc["death"]),
            ("last known alive", doc["last_known_alive"]),
            ("signature", describe(doc["signature"]))])),
        section("course", fields([
            ("treatment", doc["treatment_state"]), ("phase", doc["phase"]),
            ("cycles given", doc["cycles_given"]),
            ("dose level", _unit(doc["dose_level_mg_per_kg"], "mg/kg")),
            ("next cycle", f"{doc['next_cycle']} due {doc['next_cycle_due']}"
             if doc["next_cycle"] and doc["treatment_state"] == "active" else None),
            ("interruption", doc["interruption"]), ("discontinued", doc["discontinued"]),
            ("treatment ended", doc["treatment_ended"]),
            ("subsequent therapy", doc["subsequent_therapy"]),
            ("progression-free", _survival(pfs)), ("overall survival", _survival(os_))])),
        section("dosing", _indent(table([
            {"cycle": r["cycle"], "date": r["date"], "weight (kg)": r["weight_kg"],
             "dose (mg)": r["dose_mg"], "expected (mg)": r.get("expected_dose_mg"),
             "level (mg/kg)": r.get("dose_level_mg_per_kg")} for r in infusions]))),
        section("adverse events", _indent(table([
            {"AE": a["ae_id"], "term": a["graded_as"] or a["term"], "grade": a["grade"],
             "worst": a["worst_grade"], "onset": a["onset"], "resolved": a["resolved"],
             "serious": ", ".join(a["serious"]) or "no",
             "related": {True: "yes", False: "no"}.get(a["related"])}
            for a in doc["adverse_events"]]))),
        section("LVEF", fields([
            ("baseline", _unit(lvef.get("baseline"), "%")),
            ("last", f"{_unit(lvef.get('last'), '%')} on {lvef.get('last_date')}"
             if lvef.get("last") is not None else None),
            ("repeat due", lvef.get("repeat_due")),
            ("awaiting repeat since", lvef.get("awaiting_repeat_since"))])),
        section("scans and responses (RECIST 1.1)", _indent(table([
            {"entry": a["entry"], "date": a["date"],
             "target sum (mm)": a["target_sum_mm"],
             "vs baseline (%)": a["change_from_baseline_pct"],
             "vs nadir (%)": a["change_from_nadir_pct"],
             "target": a["target_response"], "non-target": a["non_target_response"],
             "new lesions": "yes" if a["new_lesions"] else "no",
             "overall": "baseline" if a["baseline"] else a["overall_response"]}
            for a in doc["assessments"]])) + "\n" + fields([
            ("best overall response", doc["best_overall_response"]),
            ("confirmed", ", ".join(str(r) for r in doc["confirmed_responses"])),
            ("first progression", doc["first_progression"]),
            ("PET baseline", _pet(doc["pet_baseline"])),
            ("PERCIST", ", ".join(f"{p.get('date')} {p.get('category', p.get('percist'))}"
                                  for p in doc["pet_categories"]))])),
        section("ctDNA", fields([
            ("status", doc["ctdna_status"]),
            ("baseline", _ctdna(doc["ctdna_baseline"])),
            ("cleared on", doc["ctdna_cleared_on"])])),
        section("local treatment", fields([
            *((f"surgery {i}", f"{x['date']} {x['site']}"
               + (f" ({x['location']})" if x.get("location") else ""))
              for i, x in enumerate(doc["surgeries"], 1)),
            *((f"complication {i}", f"{x['date']} Clavien-Dindo {x['clavien_dindo']} after "
               f"{x['surgery']}") for i, x in enumerate(doc["complications"], 1)),
            *((f"radiotherapy {i}", f"{x['start']} to {x['end']} {x['location']}: "
               f"{x['dose_gy']} Gy in {x['fractions']} fractions")
              for i, x in enumerate(doc["radiotherapy"], 1)),
            ("pathology", None if doc["pcr"] is None
             else "pCR" if doc["pcr"] else "no pCR"),
            ("complete", doc["local_treatment_complete"])])),
    ]
    if doc.get("deviations"):
        parts.append(section("deviations", _indent(deviations_text(doc["deviations"]))))
    parts.append(section("timeline", _indent(table(
        [{"entry": r["entry"], "date": r["date"], "event": r["event"],
          "values": ", ".join(f"{k}={_plain(v)}" for k, v in r.items()
                              if k not in ("entry", "date", "event", "subject")
                              and v not in (None, [], {}))}
         for r in doc["timeline"]], wrap={"values": 1}))))
    return "\n\n".join(parts)


def _unit(value: Any, unit: str) -> str | None:
    return None if value is None else f"{value:g} {unit}" if isinstance(value, float) \
        else f"{value} {unit}"


def _survival(s: dict[str, Any]) -> str | None:
    if not s:
        return None
    why = f", {s['why']}" if s.get("why") else ""
    return f"{s['status']} on {s['date']} (day {s['days']}{why})"


def _pet(p: dict[str, Any] | None) -> str | None:
    return None if not p else f"{p['date']}, SULpeak {p.get('sulpeak')}"


def _ctdna(b: dict[str, Any] | None) -> str | None:
    return None if not b else f"{b['date']}, {'detected' if b['detected'] else 'not detected'}"


def _plain(value: Any) -> str:
    """Nested values as `a: 1, b: 2` and lists as `x; y`, never as Python reprs."""
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()
                               if v not in (None, [], {})) + ")"
    if isinstance(value, (list, tuple)):
        return "; ".join(_plain(v) for v in value)
    return str(value)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@cli.command()
@click.argument("subject", required=False, shell_complete=complete_subject)
@known_at_option
@shared_options
@handled
def history(s: Session, subject: str | None, known_at: str | None) -> None:
    """The audit trail: who entered or changed what, when and why. Without SUBJECT, the
    trial's: protocol versions, grants, passwords set, refused authentications, locks, seals."""
    from m22bol.ledger.signatures import describe

    doc = s.reader.history(subject, known_at=parse_known_at(known_at))
    rows = [{"entry": r["entry"], "recorded at (UTC)": _minute(r["recorded_at"]),
             "actor": r["actor"], "event": r["event"], "values": _changed(r),
             "reason": r["reason"], "superseded by": r["superseded_by"],
             "SDV": {True: "yes", False: "no"}.get(r.get("verified")),
             "held until corrected": "; ".join(h["why"] for h in r.get("held", ()))}
            for r in doc["entries"]]
    if not any(row["held until corrected"] for row in rows):  # the usual case: no column
        for row in rows:
            del row["held until corrected"]
    foot = ("signature: " + describe(doc["signature"]) if subject is not None
            else "SYNTHETIC DEMO DATA: not a trial record" if doc["synthetic"] else "")
    emit(doc, s.as_json, text=table(rows, wrap={"values": 3, "reason": 1,
                                                "held until corrected": 2})
         + ("\n\n" + foot if foot else ""))


def _minute(stamp: str) -> str:
    """The full timestamp is in --json; a person reads the minute."""
    return stamp[:16].replace("T", " ")


def _changed(row: dict) -> str:
    """A change shows the entry it changes and each value before and after."""
    if row.get("new_values") is not None:
        return f"{row['values']['entry']}: " + ", ".join(
            f"{k}: {_plain(row['old_values'].get(k))} -> {_plain(v)}"
            for k, v in row["new_values"].items())
    if "old_values" in row:
        return f"{row['values']['entry']} retracted (was: " + ", ".join(
            f"{k}={_plain(v)}" for k, v in row["old_values"].items()
            if v not in (None, [], {})) + ")"
    return ", ".join(f"{k}={_plain(v)}" for k, v in row["values"].items()
                     if v not in (None, [], {}))


@cli.command()
@known_at_option
@shared_options
@handled
def status(s: Session, known_at: str | None) -> None:
    """Counts per basket: screened, screen-failed, enrolled, on treatment, ... dead."""
    known_at = parse_known_at(known_at)
    doc = s.present("status") if known_at is None else None
    if doc is None:
        doc = s.reader.status(known_at=known_at)
    emit(doc, s.as_json, text=None if s.as_json else status_text(doc))


def status_text(doc: dict[str, Any]) -> str:
    """The counts as a table (made only for a person: --json never loads the table maker)."""
    from m22bol.ledger.coverage import unsealed_text

    rows = [{"basket": b, **counts} for b, counts in doc["baskets"].items()]
    sealing = f"\n\n{unsealed_text(doc['not_yet_sealed'])}" if "not_yet_sealed" in doc else ""
    return table(rows) + sealing


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
    emit({"deviations": rows}, s.as_json, text=deviations_text(rows))


def deviations_text(rows: list[dict[str, Any]]) -> str:
    """What happened first, then who accepted it, when and why."""
    if not rows:
        return "no deviations"
    blocks = []
    for d in rows:
        what = fill(f"{d['entry']}: {d['message']} [{d['rule']}]", "", "    ")
        if d.get("actor"):  # `patient` lists its deviations without who accepted them
            what += "\n" + fill(f"accepted by {d['actor']} on {_minute(d['recorded_at'])}: "
                                f"{d['reason']}", "    ", "    ")
        blocks.append(what)
    return "\n".join(blocks)
