"""The present without the write side: `status`, `patient` and `endpoints` (neither
`--known-at` nor `--cutoff`) from the read models, through a `ledger.readonly.ReadOnlyLedger`.

A query used to open the whole `TrialLedger` (the event-sourcing application, every event and
command model, the rules) to check one grant and read a few rows. This asks the same: the
reader's access against the trial's grants (read as the write side reads them, from the
checked snapshot and the events after it), one indexed check that the read models hold the
log's head, then the same reads and the same documents as `projections.reader.Reader`.

Wherever the reader would do more than read (bring lagging read models up to date, or replay
when it cannot), or reads what only the events say (a site-limited reader's access to one
subject, a row holding an error), this raises `Unavailable` and the caller asks the `Reader`,
which answers or refuses exactly as before.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from m22bol.ledger import access, coverage
from m22bol.ledger.readonly import ReadOnlyLedger, TrialAccess, Unavailable, signature_status
from m22bol.projections import stored


class PresentReader:
    """The present for one user, authenticated as `ledger.identity.authenticate` does."""

    def __init__(self, ledger: ReadOnlyLedger, claimed: str | None,
                 password: Callable[[], str | None]):
        self.ledger = ledger
        trial = ledger.trial()
        if trial is None:  # not initialised: the full ledger says so (and leaves no file)
            raise Unavailable("the ledger is not initialised")
        self.trial: TrialAccess = trial
        self.user = self._authenticated(claimed, password)

    def _authenticated(self, claimed: str | None, password: Callable[[], str | None]) -> str:
        """The store's account, or the claimed user once their password matched. Whatever
        must be written (a refused attempt, a success after failures) or is the database's
        to decide (PostgreSQL's owner acting as another) is the full ledger's."""
        from m22bol.ledger import identity

        account = self.ledger.account
        if claimed is None or claimed == account:
            return account
        if not identity.may_act_as_others(self.ledger) or self.trial.failures.get(claimed):
            raise Unavailable("authentication that the full ledger records")
        from m22bol.ledger.signatures import PasswordRefused, check_password

        try:
            check_password(self.trial, claimed, password(), attempt="password",
                           what=f"--user {claimed}")
        except PasswordRefused:
            raise Unavailable("a refused password, which the full ledger records") from None
        return claimed

    def allow(self, action: str) -> None:
        """The reader's access (refused with exit 4 as by `Reader.allow`), then the read
        models' currency: lagging ones are the full reader's to catch up or replay."""
        access.check(self.trial, self.user, action)
        if stored.lag(self.ledger) > 0:
            raise Unavailable("the read models are behind the ledger")

    def sites(self) -> frozenset[str] | None:
        """The sites this reader is limited to; None when one of its grants covers them all."""
        grants = self.trial.roles_of(self.user)
        return (None if not grants or any(g.site is None for g in grants)
                else frozenset(g.site for g in grants))

    def status(self) -> dict[str, Any]:
        self.allow("status")
        counts = stored.read_status(self.ledger, self.sites())
        return {**counts, "not_yet_sealed": coverage.unsealed_now(self.ledger,
                                                                   self.trial.last_seal)}

    def patient(self, subject: str) -> dict[str, Any]:
        subject = stored.stored_id(subject)
        if self.sites() is not None:
            # Whether the subject is at one of the reader's sites is the events' to say.
            raise Unavailable("a site-limited reader's access to one subject")
        self.allow("patient")
        document = stored.read_patient(self.ledger, subject)
        if document is None:
            raise Unavailable("the subject's row holds an error; a replay says why")
        document["signature"] = signature_status(subject, self.ledger.subject_events(subject))
        return document

    def endpoints(self) -> dict[str, Any]:
        from m22bol.domain.protocol import parse_protocol
        from m22bol.projections import documents

        self.allow("endpoints")
        now = self.ledger.clock()
        version, _, text = self.trial.protocol_texts[-1]
        protocol = parse_protocol(text, source=f"protocol {version}")
        with _no_cycle_collection():
            patients = stored.read_endpoint_inputs(self.ledger, self.sites())
            return documents.endpoints_document(documents.Inputs(
                protocol=protocol, cutoff=now.date(), known_at=now, patients=patients))


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Every subject's endpoint facts become thousands of small objects that live until the
    answer is made, and none holds a cycle; the cycle collector would walk them again and
    again as they are made (a fifth of `endpoints` at 1M events: 2.7 -> 2.2 s of CPU)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
