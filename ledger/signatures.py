"""Electronic signatures (21 CFR Part 11 §11.50, §11.70, §11.200).

A password is kept only as a salted scrypt hash, in a `PasswordSet` event of the trial chain. A
signature re-checks the password and records the signer, the time, the meaning and the digest of
the subject's chain head: since every event links to the one before it, that digest pins every
record up to the head, and a later correction shows that the signature no longer covers the data.

The hashing lives here, not in the domain, because it needs randomness (the salt) and the chain
hash of stored bytes; `vouch` hands the domain only the outcome.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from m22bol.domain import commands as c
from m22bol.domain.decide import Vouched
from m22bol.domain.errors import NotPermitted
from m22bol.domain.events import Signed
from m22bol.domain.patient import Patient, entry_id
from m22bol.domain.trial import LOCKOUT_AFTER, Trial
from m22bol.ledger.store import event_hash

# scrypt cost: 2**15 x 8 x 128 bytes = 32 MiB and about 0.1 s per hash, in line with current
# guidance for interactive logins. The parameters are stored with each hash, so they can rise.
LOG2_N, BLOCK_SIZE, PARALLELISM = 15, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
# A stored hash is data from the store: refuse parameters that would make checking it a
# denial of service.
MAX_LOG2_N = 20


def hash_password(password: str, *, log2_n: int = LOG2_N) -> str:
    """`scrypt$<log2 N>$<r>$<p>$<salt>$<key>`, salt and key in base64."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, log2_n, BLOCK_SIZE, PARALLELISM)
    return "$".join(["scrypt", str(log2_n), str(BLOCK_SIZE), str(PARALLELISM),
                     _b64(salt), _b64(key)])


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, log2_n, r, p, salt, key = stored.split("$")
        n, r, p = int(log2_n), int(r), int(p)
        expected = base64.b64decode(key, validate=True)
        salt_bytes = base64.b64decode(salt, validate=True)
    except ValueError:
        return False
    if scheme != "scrypt" or not expected or not (
        1 <= n <= MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16
    ):
        return False
    candidate = _scrypt(password, salt_bytes, n, r, p, length=len(expected))
    return hmac.compare_digest(candidate, expected)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, *,
            length: int = KEY_BYTES) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**log2_n, r=r, p=p,
                          maxmem=2 * 128 * r * 2**log2_n + 2**20, dklen=length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class PasswordRefused(NotPermitted):
    """A wrong or missing password, or a locked-out user (exit 4). The command is refused and
    the ledger records the attempt as a security event of the trial chain."""

    def __init__(self, message: str, *, user: str, attempt: str, rule: str):
        super().__init__(message, rule=rule, field="password")
        self.user = user
        self.attempt = attempt


def check_password(trial: Trial, user: str, password: str | None, *, attempt: str,
                   what: str) -> None:
    """Refuse unless `password` is the user's own and the user is not locked out."""
    if trial.locked_out(user):
        raise PasswordRefused(f"{what}: {user} is locked out after {LOCKOUT_AFTER} failed "
                              "attempts; an admin must run `m22bol reset-password`",
                              user=user, attempt="locked-out", rule="identity.locked_out")
    stored = trial.password_hashes.get(user)
    if stored is None:
        raise PasswordRefused(f"{what}: {user} has no password yet; an admin sets the first "
                              "one with `m22bol reset-password`", user=user, attempt=attempt,
                              rule="identity.no_password")
    if password is None or not verify_password(password, stored):
        raise PasswordRefused(f"{what}: the password of {user} does not match; nothing was "
                              "written but this failed attempt", user=user, attempt=attempt,
                              rule="identity.password")


def vouch(command: c.Command, trial: Trial, actor: str,
          patient: Patient | None = None) -> Vouched:
    """What a password-bearing command passes on to the domain once its password is dealt with:
    the new hash for `set-password` and `reset-password`, the signed head's digest for `sign`;
    nothing otherwise."""
    if isinstance(command, c.SetPassword):
        if actor in trial.password_hashes or trial.locked_out(actor):
            current = command.current_password
            check_password(trial, actor, current.get_secret_value() if current else None,
                           attempt="current-password", what="set-password")
        return Vouched(password_hash=hash_password(command.password.get_secret_value()))
    if isinstance(command, c.ResetPassword):
        return Vouched(password_hash=hash_password(command.password.get_secret_value()))
    if isinstance(command, c.Sign) and patient is not None:
        check_password(trial, actor, command.password.get_secret_value(), attempt="signature",
                       what="sign")
        return Vouched(head_digest=event_hash(patient.events[-1]))
    return Vouched()


def signature_status(patient: Patient) -> dict[str, Any] | None:
    """The subject's last signature and whether it still covers the current data: the signed
    head must still hash to the signed digest, and no entry may have been made since."""
    signatures = [ev for ev in patient.events if isinstance(ev, Signed)]
    if not signatures:
        return None
    last = signatures[-1]
    signed_head = patient.events[last.covers_version - 1]
    since = [entry_id(patient.subject, ev.originator_version)
             for ev in patient.events[last.covers_version:] if not isinstance(ev, Signed)]
    return {
        "entry": entry_id(patient.subject, last.originator_version),
        "signer": last.actor,
        "signed_at": last.recorded_at.isoformat(),
        "meaning": last.meaning,
        "covers": entry_id(patient.subject, last.covers_version),
        "head_digest": last.head_digest,
        "covers_current_data": event_hash(signed_head) == last.head_digest and not since,
        "changed_since": since,
    }


def describe(status: dict | None) -> str:
    if status is None:
        return "not signed"
    text = (f"{status['meaning']} by {status['signer']} at {status['signed_at']} "
            f"({status['entry']}, covering up to {status['covers']}): ")
    if status["covers_current_data"]:
        return text + "covers the current data"
    changed = ", ".join(status["changed_since"]) or "the signed records"
    return text + f"no longer covers the current data (changed since: {changed})"
