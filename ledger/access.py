"""Who may do what (spec/audit.md, "People, roles, signatures")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from m22bol.domain.errors import NotPermitted

if TYPE_CHECKING:  # a query checks its access without loading the command or event models
    from m22bol.domain import commands as c
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
ADMIN = frozenset({"grant", "revoke", "reset-password", "amend-protocol", "lock", "unlock",
                   "audit seal", "projections rebuild", "demo"})
# Written by the ledger itself when an authentication fails or succeeds after failures: the
# person who failed may hold no role at all, and the attempt must still leave a trace.
SECURITY_RECORDS = frozenset({"authentication-failed", "authentication-succeeded"})
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


def check_command(trial: Trial, actor: str, command: c.Command) -> None:
    """The role check for a trial-level command, and the rules that keep administration safe:
    nobody grants a role to themselves, resets their own password or revokes the last admin."""
    from m22bol.domain import commands as c
    from m22bol.domain.trial import Grant

    if command.name in SECURITY_RECORDS:
        return
    check(trial, actor, command.name)
    if isinstance(command, c.Grant) and command.user == actor and not trial.synthetic:
        # The one exception beyond init's admin: `demo` lets its author enter synthetic data.
        raise NotPermitted(f"grant: {actor} cannot grant a role to themselves; another admin "
                           "must", rule="admin.self_grant")
    if isinstance(command, c.ResetPassword) and command.user == actor:
        raise NotPermitted("reset-password: change your own password with `m22bol "
                           "set-password`, which asks for the current one", rule="admin.self_reset")
    if isinstance(command, c.Revoke) and command.role == "admin":
        revoked = Grant(command.user, command.role, command.site)
        if not any(g.role == "admin" for g in trial.grants - {revoked}):
            raise NotPermitted(f"revoke: {command.user} is the last admin; grant admin to "
                               "someone else first", rule="admin.last_admin")


def check_unlocked(trial: Trial, subject: str | None) -> None:
    if trial.locked:
        raise NotPermitted("the ledger is locked; entries are refused until it is unlocked",
                           rule="lock.ledger")
    if subject is not None and subject in trial.locked_subjects:
        raise NotPermitted(f"subject {subject} is locked; entries are refused",
                           rule="lock.subject")
