"""Sealing keys: Ed25519 key pairs whose private half never enters the ledger.

`audit keygen` writes the private key as PKCS#8 PEM encrypted with a passphrase (the
`cryptography` package's best available scheme), and the public key beside it as `FILE.pub`.
`audit seal --key` signs the seal digest; the seal event stores the signature and the raw public
key, so `audit verify --trusted-key` can say which seals a trusted key signed. Someone who
rewrites the history can recompute a seal, and even sign it with a key of their own, but not
with a key they do not hold.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from m22bol.domain.errors import BadInput, NotPermitted
from m22bol.ledger.integrity import key_id

MIN_PASSPHRASE = 12
# Signatures are over this prefix and the digest, so a sealing key's signature can never be
# replayed as a signature over anything else.
CONTEXT = b"m22bol seal digest v1:"

# digest -> (raw public key, hex; signature, hex)
Signer = Callable[[str], tuple[str, str]]


def _raw(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.Raw,
                               serialization.PublicFormat.Raw).hex()


def generate(out: str, passphrase: str) -> dict[str, str]:
    """Write a new key pair to `out` and `out.pub`; refuse to replace an existing key."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise BadInput(f"passphrase: at least {MIN_PASSPHRASE} characters", field="passphrase")
    private_path, public_path = Path(out), Path(out + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise BadInput(f"out: {path} exists; a sealing key is never overwritten",
                           field="out")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode("utf-8")))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        # Created readable by its owner only, before a single byte of the key is written.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise BadInput(f"out: cannot write {out}: {exc.strerror}", field="out") from None
    return {"private_key": str(private_path), "public_key": str(public_path),
            "key_id": key_id(_raw(key.public_key()))}


def _read(path: str, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"{field}: cannot read {path}: {exc.strerror}", field=field) from None


def signer(path: str, passphrase: str) -> Signer:
    """A function signing seal digests with the private key in `path`."""
    data = _read(path, "key")
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode("utf-8"))
    except (ValueError, TypeError):
        # The library does not tell a wrong passphrase from a damaged file; both mean this
        # person cannot seal with this key.
        raise NotPermitted(f"key: {path} does not open with this passphrase (or is not a "
                           "sealing key)", rule="seal.key", field="key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"key: {path} is not an Ed25519 key", field="key")
    public = _raw(key.public_key())

    def sign(digest: str) -> tuple[str, str]:
        return public, key.sign(CONTEXT + digest.encode("ascii")).hex()

    return sign


def trusted(path: str) -> str:
    """The raw public key (hex) in a `.pub` file made by `audit keygen`."""
    data = _read(path, "trusted-key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise BadInput(f"trusted-key: {path} holds no public key", field="trusted_key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BadInput(f"trusted-key: {path} is not an Ed25519 key", field="trusted_key")
    return _raw(key)


def signature_holds(public_hex: str, signature_hex: str, digest: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(signature_hex), CONTEXT + digest.encode("ascii"))
    except (InvalidSignature, ValueError):
        return False
    return True
