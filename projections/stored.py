"""The present, read from the read-model tables: `status`, `patient` and the endpoint inputs.

These run on every `m22bol status` / `m22bol patient`, so they read the tables with plain SQL
through the event store's own database connection (as the runner writes them), never replay:
`patient` is a primary-key look-up; `status` is one GROUP BY over the one-row-per-subject
summary table, never a pass over the events. If a projection lags (a process died between
committing its events and projecting them), they first catch up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from m22bol.domain.errors import BadInput
from m22bol.projections import catalog

if TYPE_CHECKING:
    from collections.abc import Iterable

    from m22bol.domain.trial import Trial
    from m22bol.ledger.app import TrialLedger
    from m22bol.ledger.readonly import ReadOnlyLedger
    from m22bol.projections.documents import Inputs

log = logging.getLogger("m22bol.projections")


def _rows(ledger: TrialLedger | ReadOnlyLedger, sql: str,
          params: tuple = ()) -> list[dict[str, Any]]:
    if ledger.url.startswith("postgres"):
        sql = sql.replace("?", "%s")
    with ledger.recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(sql, params)
        return [dict(row) for row in cursor.fetchall()]


def stored_id(subject: str | None) -> str | None:
    """Subject ids are case-insensitive and stored upper case (as entries store them), so
    `patient m22-001` reads M22-001 and a filter never silently matches nothing."""
    return subject.upper() if subject else subject


def _missing_table(error: Exception) -> bool:
    text = str(error)
    return "no such table" in text or ("relation" in text and "does not exist" in text)


class ReadModelsBehind(Exception):
    """The read models lag the ledger and cannot be brought up to date from here: a
    read-only file, a reader login, a lock that never came free. The reader then answers the
    present by replaying the events (`projections.reader`)."""


def lag(ledger: TrialLedger | ReadOnlyLedger, projections: Iterable[str] | None = None) -> int:
    """How many events the projection furthest behind (of `projections`, else of all) lags
    the ledger (0: all current): the log's head against the tracking positions, two indexed
    reads."""
    head = ledger.recorder.max_notification_id() or 0
    try:
        found = _rows(ledger, f"SELECT projection, notification_id FROM {catalog.TRACKING} "
                              "WHERE application_name = ?", (ledger.name,))
    except Exception as error:
        if not _missing_table(error):
            raise
        found = []
    positions = {r["projection"]: r["notification_id"] for r in found}
    return max(head - positions.get(name, 0) for name in projections or catalog.projections())


def ensure_current(ledger: TrialLedger) -> None:
    """Catch up first if any projection is behind the ledger (or was never built); raise
    ReadModelsBehind, naming the lag and the cause, when that cannot be done here."""
    if (behind := lag(ledger)) > 0:
        from m22bol.ledger.store import environment_problem
        from m22bol.projections.runner import ProjectionLag, catch_up

        try:
            catch_up(ledger)
        except ProjectionLag as error:
            raise ReadModelsBehind(_behind(behind, str(error))) from None
        except Exception as error:
            # The store names the driver's error as its cause (psycopg's sqlstate says which).
            if getattr(error.__cause__, "sqlstate", None) == "42501":
                # A reader login may not keep the read models; the next writer's entry will.
                raise ReadModelsBehind(_behind(behind, "this login may not write them")) from None
            problem = environment_problem(ledger.url, error)
            if problem is None:
                raise
            raise ReadModelsBehind(_behind(behind, problem.message)) from None


def _behind(lag: int, cause: str) -> str:
    return (f"the read models are {lag} event(s) behind the ledger and cannot be brought up "
            f"to date here ({cause})")


def _at_sites(sites: frozenset[str] | None, column: str = "site") -> tuple[str, tuple]:
    """The SQL condition (and its parameters) keeping the rows of a site-limited reader."""
    if sites is None:
        return "", ()
    return f" AND {column} IN ({', '.join('?' * len(sites))})", tuple(sorted(sites))


def basket_ids(ledger: TrialLedger | ReadOnlyLedger) -> list[str]:
    return [r["id"] for r in _rows(ledger, f"SELECT id FROM {catalog.BASKETS} ORDER BY ordinal")]


def completions(ledger: TrialLedger, prefix: str, subject: str | None = None,
                sites: frozenset[str] | None = None) -> list[str]:
    """Subject ids (or, given a subject, its AE ids) starting with `prefix`, for shell
    completion: from the read models only, so a tab press never replays the log. Only the
    subjects of `sites` when given, as every other read of a user limited to sites."""
    like = prefix + "%"  # '_' and '%' match too widely here; startswith below narrows
    where, at = _at_sites(sites)
    if subject is None:
        sql = (f"SELECT subject AS id FROM {catalog.PATIENT_SUMMARY} WHERE subject LIKE ?"
               f"{where} ")
        params: tuple = (like.upper(), *at)
    else:
        sql = (f"SELECT ae_id AS id FROM {catalog.ADVERSE_EVENTS} "
               "WHERE subject = ? AND ae_id LIKE ? AND subject IN "
               f"(SELECT subject FROM {catalog.PATIENT_SUMMARY} WHERE subject = ?{where}) ")
        params = (subject.upper(), like, subject.upper(), *at)
    found = [r["id"] for r in _rows(ledger, sql + "ORDER BY 1 LIMIT 200", params)]
    return [i for i in found if i.upper().startswith(prefix.upper())]


def status(ledger: TrialLedger, sites: frozenset[str] | None = None) -> dict[str, Any]:
    """Counts per basket, as `replay.status_by_replay` computes them from the events; only the
    subjects of `sites` when given."""
    ensure_current(ledger)
    return read_status(ledger, sites)


def read_status(ledger: TrialLedger | ReadOnlyLedger,
                sites: frozenset[str] | None = None) -> dict[str, Any]:
    """`status` from the rows as they stand (the caller knows they are current)."""
    from m22bol.projections.documents import status_counts

    where, params = _at_sites(sites)
    # One scan: the subjects whose row holds an error are a group of their own (is_broken).
    groups = _rows(ledger, (
        "SELECT basket, status, treatment_state, phase, enrolled IS NOT NULL AS is_enrolled, "
        "withdrawn IS NOT NULL AS is_withdrawn, death IS NOT NULL AS is_dead, "
        f"error IS NOT NULL AS is_broken, COUNT(*) AS n FROM {catalog.PATIENT_SUMMARY} "
        f"WHERE 1 = 1{where} GROUP BY basket, status, treatment_state, phase, is_enrolled, "
        "is_withdrawn, is_dead, is_broken"
    ), params)
    # The same counting rule as the replay, fed one summary per group standing for its n
    # subjects: the database does the scan, `status_counts` stays the one definition of each
    # column, and the counting costs the groups (about 20), not the subjects.
    summaries = [{"basket": g["basket"], "status": g["status"],
                  "treatment_state": g["treatment_state"], "phase": g["phase"],
                  "enrolled": True if g["is_enrolled"] else None,
                  "withdrawn": True if g["is_withdrawn"] else None,
                  "death": True if g["is_dead"] else None, "subjects": g["n"]}
                 for g in groups if not g["is_broken"]]
    document = status_counts(summaries, basket_ids(ledger))
    if any(g["is_broken"] for g in groups):
        # Subjects whose recorded facts the rules in force now refuse are not counted; say so
        # rather than print counts that silently leave them out.
        document["not_counted"] = _rows(
            ledger, f"SELECT subject, error FROM {catalog.PATIENT_SUMMARY} "
                    f"WHERE error IS NOT NULL{where} ORDER BY subject", params)
    return document


def patient(ledger: TrialLedger, subject: str) -> dict[str, Any]:
    """The `patient --json` document of the subject's current state."""
    ensure_current(ledger)
    document = read_patient(ledger, subject)
    if document is None:
        # Replaying the subject reports why its timeline no longer passes the rules.
        from m22bol.projections.replay import patient_view

        return patient_view(ledger, subject)
    return document


def read_patient(ledger: TrialLedger | ReadOnlyLedger, subject: str) -> dict[str, Any] | None:
    """The subject's stored document as it stands; None when its row holds an error (its
    timeline no longer passes the rules: a replay says why)."""
    found = _rows(ledger, f"SELECT document, error FROM {catalog.PATIENT_SUMMARY} "
                          "WHERE subject = ?", (subject,))
    if not found:
        raise BadInput(f"subject: {subject} is not registered", field="subject")
    if found[0]["error"] is not None:
        return None
    return orjson.loads(found[0]["document"])


def endpoint_inputs(ledger: TrialLedger, sites: frozenset[str] | None = None) -> list:
    """Every subject's endpoint facts, one row each: what `endpoints` and `safety` tally; only
    the subjects of `sites` when given."""
    ensure_current(ledger)
    return read_endpoint_inputs(ledger, sites)


def read_endpoint_inputs(ledger: TrialLedger | ReadOnlyLedger,
                         sites: frozenset[str] | None = None) -> list:
    """The endpoint facts as the rows stand (the caller knows they are current)."""
    from m22bol.domain.rules.endpoints import PatientFacts

    if sites is None:
        rows = _rows(ledger, f"SELECT facts FROM {catalog.ENDPOINT_INPUTS} ORDER BY subject")
    else:
        where, params = _at_sites(sites, "p.site")
        rows = _rows(ledger, f"SELECT e.facts FROM {catalog.ENDPOINT_INPUTS} e JOIN "
                             f"{catalog.PATIENT_SUMMARY} p ON p.subject = e.subject "
                             f"WHERE 1 = 1{where} ORDER BY e.subject", params)
    return [PatientFacts.from_plain(orjson.loads(r["facts"])) for r in rows]


@dataclass(frozen=True)
class Present:
    """What the monitoring report reads of the present (`Reader.present`)."""

    trial: Trial
    inputs: Inputs  # the endpoint tallies' inputs, cut at today
    documents: list[dict[str, Any]]  # every subject's `patient --json`, by subject id
    sites: list[str]  # every subject's site, as access knows it
    last_recorded: datetime
    open_queries: list[dict[str, Any]]  # (site, opened_on) of every query not closed
    sdv: list[dict[str, Any]]  # per site


def last_recorded(ledger: TrialLedger) -> datetime:
    """When the last entry was recorded: the recorded_at of the last event in the log."""
    recorder = ledger.recorder
    (last,) = recorder.select_notifications(recorder.max_notification_id(), 1)
    return datetime.fromisoformat(orjson.loads(last.state)["recorded_at"])


def patient_documents(ledger: TrialLedger,
                      sites: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Every subject's `patient --json` document (`document`, None with `error`), with its site,
    by subject id: the present as the monitoring report reads it; only the subjects of `sites`
    when given."""
    ensure_current(ledger)
    where, params = _at_sites(sites)
    return _rows(ledger, f"SELECT subject, site, error, document FROM {catalog.PATIENT_SUMMARY} "
                         f"WHERE 1 = 1{where} ORDER BY subject", params)


# --- data clarification queries and source data verification ---------------------------------


def _where(filters: dict[str, Any]) -> tuple[str, tuple]:
    """A WHERE clause from the filters given; `site` may be a list (a site-limited reader)."""
    clauses, params = [], []
    for column, value in filters.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
        params += values
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def queries(ledger: TrialLedger, **filters: Any) -> list[dict[str, Any]]:
    """Every query thread matching the filters (status, site, subject), oldest id first."""
    ensure_current(ledger)
    where, params = _where(filters)
    found = _rows(ledger, f"SELECT thread FROM {catalog.QUERIES}{where} ORDER BY number", params)
    return [orjson.loads(r["thread"]) for r in found]


def open_query_ages(ledger: TrialLedger, **filters: Any) -> list[dict[str, Any]]:
    """(site, opened_on) of every query not closed: what the report bands by age."""
    ensure_current(ledger)
    where, params = _where(filters)
    where += (" AND " if where else " WHERE ") + "status <> 'closed'"
    return _rows(ledger, f"SELECT site, opened_on FROM {catalog.QUERIES}{where}", params)


def sdv_by_site(ledger: TrialLedger, **filters: Any) -> list[dict[str, Any]]:
    """Verified entries and entries per site (the report's SDV table), by site."""
    ensure_current(ledger)
    where, params = _where(filters)
    return [{"site": g["site"], "verified": int(g["verified"]), "entries": int(g["entries"])}
            for g in _rows(ledger, (
                "SELECT site, SUM(CASE WHEN verified THEN 1 ELSE 0 END) AS verified, "
                f"COUNT(*) AS entries FROM {catalog.SDV}{where} GROUP BY site ORDER BY site"),
                params)]


def sdv(ledger: TrialLedger, **filters: Any) -> dict[str, Any]:
    """Verified entries over entries per site and per subject, and every entry not verified."""
    ensure_current(ledger)
    where, params = _where(filters)
    groups = _rows(ledger, (
        "SELECT site, subject, SUM(CASE WHEN verified THEN 1 ELSE 0 END) AS verified, "
        f"COUNT(*) AS entries FROM {catalog.SDV}{where} GROUP BY site, subject "
        "ORDER BY site, subject"), params)
    pending = _rows(ledger, (
        f"SELECT subject, entry, event, document FROM {catalog.SDV}{where}"
        + (" AND " if where else " WHERE ") + "NOT verified ORDER BY subject, entry"), params)
    return {"groups": [{k: (int(v) if k in ("verified", "entries") else v)
                        for k, v in g.items()} for g in groups],
            "unverified": [{"subject": p["subject"], "entry": p["entry"], "event": p["event"],
                            **orjson.loads(p["document"])} for p in pending]}
