"""Who may do what (spec/audit.md, "People, roles, signatures")."""

from __future__ import annotations

from m22bol.domain.errors import NotPermitted
from m22bol.domain.trial import Trial

QUERIES = frozenset({"patient", "history", "status", "endpoints", "safety", "deviations",
                     "protocol", "report", "projections status", "queries", "sdv"})
ENTRY = frozenset({
    "register", "assess-eligibility", "enrol", "infuse", "adverse-event",
    "update-adverse-event", "resolve-adverse-event", "lvef", "interrupt", "resume",
    "reduce-dose", "discontinue", "surgery", "complication", "radiotherapy",
    "complete-local-treatment", "pathology", "scan", "pet", "ctdna", "contact",
    "subsequent-therapy", "death",
    "withdraw", "correct", "retract", "import",
})
ADMIN = frozenset({"grant", "revoke", "amend-protocol", "lock", "unlock", "audit seal",
                   "projections rebuild", "demo"})
AUDIT = frozenset({"audit verify", "audit export"})
# Data clarification queries and source data verification (docs/queries.md).
CLARIFICATIONS = {
    "query open": frozenset({"monitor", "data-manager"}),
    "query answer": frozenset({"data-manager", "investigator"}),
    "query close": frozenset({"monitor", "data-manager"}),
    "query reopen": frozenset({"monitor"}),
    "verify-source": frozenset({"monitor"}),
    "queries --refresh": frozenset({"monitor", "data-manager"}),
}


def roles_for(action: str) -> frozenset[str] | None:
    """The roles that may run an action; None means any granted role."""
    if action in QUERIES or action == "set-password":
        return None
    if action in ADMIN:
        return frozenset({"admin"})
    if action in ENTRY:
        return frozenset({"data-manager", "investigator"})
    if action == "sign":
        return frozenset({"investigator"})
    if action in AUDIT:
        return frozenset({"auditor", "monitor", "admin"})
    if action in CLARIFICATIONS:
        return CLARIFICATIONS[action]
    raise KeyError(action)


def check(trial: Trial, actor: str, action: str, *, site: str | None = None) -> None:
    """Refuse (exit 4) unless the actor holds a grant for the action, at this site if limited."""
    grants = trial.roles_of(actor)
    if not grants:
        raise NotPermitted(f"{actor} holds no role in this ledger", rule="access.no_grant")
    allowed = roles_for(action)
    usable = [g for g in grants if (allowed is None or g.role in allowed)
              and (g.site is None or site is None or g.site == site)]
    if not usable:
        need = "any role" if allowed is None else " or ".join(sorted(allowed))
        where = f" at site {site}" if site else ""
        raise NotPermitted(f"{action} needs {need}{where}; {actor} holds "
                           + ", ".join(sorted(f"{g.role}" + (f"@{g.site}" if g.site else "")
                                              for g in grants)),
                           rule="access.role")


def check_unlocked(trial: Trial, subject: str | None) -> None:
    if trial.locked:
        raise NotPermitted("the ledger is locked; entries are refused until it is unlocked",
                           rule="lock.ledger")
    if subject is not None and subject in trial.locked_subjects:
        raise NotPermitted(f"subject {subject} is locked; entries are refused",
                           rule="lock.subject")
