"""Every question asked of the ledger, for one reader: the CLI, the report and tests ask here.

The reader's access is checked first, for every question, and a reader whose every grant is
limited to sites sees only those sites' subjects: a subject elsewhere is refused (exit 4) and
the tallies count only theirs. Then one rule decides where the
answer comes from: the present is read from the read models (`stored`), kept current after each
entry; the past (`--known-at`) and a data cutoff (`--cutoff`) are answered by replaying the
events (`replay`), which is also the reference the read models must agree with.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import orjson

from m22bol.domain.errors import NotPermitted
from m22bol.ledger import access
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.store import MEMORY_URL
from m22bol.projections import catalog, documents, replay, rows, stored
from m22bol.projections.stored import stored_id

T = TypeVar("T")


class Reader:
    def __init__(self, ledger: TrialLedger, user: str):
        self.ledger = ledger
        self.user = user

    def allow(self, action: str, *, subject: str | None = None) -> None:
        """Refuse (exit 4) unless the reader may run this action (on this subject's site)."""
        trial = self.ledger.require_trial()
        site = None
        if subject is not None and self.sites() is not None:
            site = self.ledger.require_patient(subject).site
        access.check(trial, self.user, action, site=site)

    def sites(self) -> frozenset[str] | None:
        """The sites this reader is limited to; None when one of its grants covers them all."""
        if not hasattr(self, "_sites"):
            grants = self.ledger.require_trial().roles_of(self.user)
            self._sites = (None if not grants or any(g.site is None for g in grants)
                           else frozenset(g.site for g in grants))
        return self._sites

    # --- one subject -------------------------------------------------------------------------

    def patient(self, subject: str, *, known_at: datetime | None = None,
                cutoff: date | None = None) -> dict[str, Any]:
        """The subject's state and timeline (`patient --json`)."""
        subject = stored_id(subject)
        self.allow("patient", subject=subject)
        if known_at is None and cutoff is None:
            document = self._present(lambda: stored.patient(self.ledger, subject),
                                     lambda: replay.patient_view(self.ledger, subject))
        else:
            document = replay.patient_view(self.ledger, subject, known_at=known_at,
                                           cutoff=cutoff)
        document["signature"] = replay.signature_view(self.ledger, subject, known_at=known_at)
        return document

    def history(self, subject: str | None, *,
                known_at: datetime | None = None) -> dict[str, Any]:
        """The subject's audit trail: every event, who, when, why and what it changed; without
        a subject, the trial's own (grants, passwords, security events, locks, seals)."""
        subject = stored_id(subject)
        self.allow("history", subject=subject)
        if subject is None:
            if self.sites() is not None:
                raise NotPermitted("history of the trial: a user limited to sites reads the "
                                   "history of their subjects only", rule="access.site")
            return replay.trial_history_view(self.ledger, known_at=known_at)
        return replay.history_view(self.ledger, subject, known_at=known_at)

    # --- the trial -----------------------------------------------------------------------------

    def status(self, *, known_at: datetime | None = None) -> dict[str, Any]:
        """Counts per basket: screened, screen-failed, enrolled, ... dead."""
        self.allow("status")
        counts = (self._present(lambda: stored.status(self.ledger, self.sites()),
                                lambda: replay.status_by_replay(self.ledger, sites=self.sites()))
                  if known_at is None
                  else replay.status_by_replay(self.ledger, known_at=known_at,
                                               sites=self.sites()))
        return {**counts, "not_yet_sealed": self.not_yet_sealed(known_at=known_at)}

    def not_yet_sealed(self, *, known_at: datetime | None = None) -> dict[str, Any]:
        """How many entries no seal covers yet, and when the last seal was made."""
        from m22bol.ledger.coverage import unsealed

        return unsealed(self.ledger, known_at=known_at)

    def protocol(self) -> dict[str, Any]:
        """The protocol in force, and every version registered."""
        self.allow("protocol")
        trial = self.ledger.require_trial()
        p = trial.protocol
        return {
            "name": p.name, "version": p.version, "title": p.title,
            "versions": [{"version": v, "sha256": d} for v, d, _ in trial.protocol_texts],
            "baskets": [{"id": b.id, "description": b.description, **b.strata.model_dump(),
                         "drug": p.regimens[b.regimen].drug,
                         "dose_levels_mg_per_kg":
                             list(p.regimens[b.regimen].dose_levels_mg_per_kg)}
                        for b in p.baskets],
            "protocol": p.model_dump(mode="json"),
        }

    def deviations(self) -> list[dict[str, Any]]:
        """Every protocol deviation accepted with a reason, in the order recorded."""
        self.allow("deviations")
        return replay.deviations(self.ledger, self.sites())

    def endpoints(self, *, known_at: datetime | None = None,
                  cutoff: date | None = None) -> dict[str, Any]:
        """Endpoint tallies per basket (docs: the counting rules)."""
        self.allow("endpoints")
        return documents.endpoints_document(self.inputs(known_at=known_at, cutoff=cutoff))

    def safety(self, *, known_at: datetime | None = None,
               cutoff: date | None = None) -> dict[str, Any]:
        """TEAEs by term and worst grade, serious AEs and Clavien-Dindo, per basket."""
        self.allow("safety")
        return documents.safety_document(self.inputs(known_at=known_at, cutoff=cutoff))

    def inputs(self, *, known_at: datetime | None = None,
               cutoff: date | None = None) -> documents.Inputs | replay.Replay:
        """Every subject's endpoint facts and the protocol in force: what the tallies count."""
        if known_at is None and cutoff is None:
            now = self.ledger.clock()
            try:
                patients = stored.endpoint_inputs(self.ledger, self.sites())
            except stored.ReadModelsBehind as behind:
                _replaying(behind)
            else:
                return documents.Inputs(protocol=self.ledger.require_trial().protocol,
                                        cutoff=now.date(), known_at=now, patients=patients)
        return replay.replay(self.ledger, known_at=known_at, cutoff=cutoff, sites=self.sites())

    def present(self) -> stored.Present | None:
        """Every subject's present from the read models, for the report without --known-at
        and --cutoff (no replay). None on a store without read models, or when a subject's
        row holds an error: the replay then reports that subject as it always did."""
        self.allow("report")
        if self.ledger.url == MEMORY_URL:
            return None
        found = stored.patient_documents(self.ledger, self.sites())
        if any(r["error"] is not None for r in found):
            return None
        sites = None if self.sites() is None else sorted(self.sites())
        return stored.Present(
            trial=self.ledger.require_trial(), inputs=self.inputs(),
            documents=[orjson.loads(r["document"]) for r in found],
            sites=[r["site"] for r in found],
            last_recorded=stored.last_recorded(self.ledger),
            open_queries=stored.open_query_ages(self.ledger, site=sites),
            sdv=stored.sdv_by_site(self.ledger, site=sites))

    def walk(self, *, known_at: datetime | None = None,
             cutoff: date | None = None) -> replay.Replay:
        """Every subject walked through the rules as known at T and cut at D (the report)."""
        self.allow("report")
        return replay.replay(self.ledger, known_at=known_at, cutoff=cutoff, sites=self.sites())

    # --- data clarification queries and source data verification ------------------------------

    def queries(self, *, status: str | None = None, site: str | None = None,
                subject: str | None = None) -> list[dict[str, Any]]:
        """Every query thread matching the filters, with its age in days today."""
        self.allow("queries")
        subject = stored_id(subject)
        sites = self._narrowed(site)

        def replayed() -> list[dict[str, Any]]:
            found = [r for d in _derived_all(self.ledger)
                     for r in rows.query_rows(d)[catalog.QUERIES]]
            return [orjson.loads(r["thread"]) for r in sorted(found, key=lambda r: r["number"])
                    if _matches(r, status=status, site=sites, subject=subject)]

        if self.ledger.url == MEMORY_URL:  # no read models: the same rows, from the events
            threads = replayed()
        else:
            threads = self._present(lambda: stored.queries(
                self.ledger, status=status, site=sites, subject=subject), replayed)
        today = self.ledger.clock().date()
        for thread in threads:
            opened = datetime.fromisoformat(thread["opened_at"]).date()
            thread["age_days"] = (today - opened).days
        return threads

    def sdv(self, *, site: str | None = None, subject: str | None = None) -> dict[str, Any]:
        """Source data verification per site and subject, and what is not verified yet."""
        self.allow("sdv")
        subject = stored_id(subject)
        sites = self._narrowed(site)

        def replayed() -> dict[str, Any]:
            entries = [r for d in _derived_all(self.ledger) for r in rows.sdv_rows(d)[catalog.SDV]
                       if _matches(r, site=sites, subject=subject)]
            return documents.sdv_from_rows(entries)

        if self.ledger.url == MEMORY_URL:
            return documents.sdv_document(replayed())
        return documents.sdv_document(self._present(
            lambda: stored.sdv(self.ledger, site=sites, subject=subject), replayed))

    @staticmethod
    def _present(from_read_models: Callable[[], T], by_replay: Callable[[], T]) -> T:
        """The present from the read models; when they lag and cannot be brought up to date
        here (a read-only ledger file, a reader login), replayed from the events, so the answer
        is as current as the ledger, and stderr says so (docs/output.md)."""
        try:
            return from_read_models()
        except stored.ReadModelsBehind as behind:
            _replaying(behind)
            return by_replay()

    def _narrowed(self, asked: str | None) -> list[str] | None:
        """The sites a reader may see (`sites`), narrowed to the one asked for: a site-limited
        user's lists cover that site only (spec: tallies of a site-limited user)."""
        limited = None if self.sites() is None else sorted(self.sites())
        if asked is None:
            return limited
        return [asked] if limited is None or asked in limited else []


def _replaying(behind: stored.ReadModelsBehind) -> None:
    print(f"warning: {behind}; this answer is replayed from the events", file=sys.stderr)


def _derived_all(ledger: TrialLedger) -> list[rows.Derived]:
    protocol = ledger.require_trial().protocol
    today = ledger.clock().date()
    return [rows.derive_subject(ledger.require_patient(s), protocol, today)
            for s in ledger.subjects()]


def _matches(row: dict[str, Any], **filters: Any) -> bool:
    for column, value in filters.items():
        if value is not None and row[column] not in (value if isinstance(value, list)
                                                     else [value]):
            return False
    return True

