"""The ledger's ways of saying no. Each carries its exit code (docs/output.md)."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every refusal. `code` is a stable machine-readable name; `line` is the
    command's line (from 1) when it came in a batch of several (an import)."""

    exit_code = 1
    code = "error"
    # The entry whose check refused, when the timeline walk knows it (domain.timeline.derive).
    entry: str | None = None

    def __init__(self, message: str, *, rule: str | None = None, field: str | None = None,
                 line: int | None = None):
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.field = field
        self.line = line

    def as_json(self) -> dict:
        # `field` and `line` extend the contract's shape: present only when known, so a script
        # can point at the value or the import line without parsing the message.
        extra = {k: v for k, v in (("field", self.field), ("line", self.line)) if v is not None}
        return {"error": {"code": self.code, "message": self.message, "rule": self.rule,
                          **extra}}


class BadInput(LedgerError):
    """A value that does not parse or is out of range, an unknown subject or entry (exit 2)."""

    exit_code = 2
    code = "bad-input"


class RuleViolation(LedgerError):
    """An impossible fact, refused whatever the reason given (exit 3)."""

    exit_code = 3
    code = "rule"


class DeviationRefused(RuleViolation):
    """A protocol deviation entered without a deviation reason (exit 3)."""

    code = "deviation"


class NotPermitted(LedgerError):
    """The actor's role does not allow the command, or the ledger or subject is locked (exit 4)."""

    exit_code = 4
    code = "not-permitted"


class IntegrityFailure(LedgerError):
    """The stored history does not verify (exit 5)."""

    exit_code = 5
    code = "integrity"


class ConcurrencyConflict(LedgerError):
    """A concurrent write kept conflicting after retries (exit 6)."""

    exit_code = 6
    code = "conflict"


class EnvironmentProblem(LedgerError):
    """The ledger could not be opened or written: a missing folder, not a database, a
    read-only file for an entry, a full disk, an unreachable server, a missing database
    (exit 7). The message names the ledger and the cause."""

    exit_code = 7
    code = "environment"
