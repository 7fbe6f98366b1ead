"""Ed25519 sealing keys: generation, loading, key ids, and signatures under the ledger's context string.

A key id is BLAKE3 (derive-key mode, "ledger/1 key-id") of the raw 32-byte public key. Verification only ever uses
keys the auditor passed in; a key id found in a commit only selects among them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .digests import CTX_KEY_ID, SIGNATURE_CONTEXT, Digest, typed_digest
from .errors import UsageError
from .files import read_small_file


def key_id(public_raw: bytes) -> Digest:
    return typed_digest(CTX_KEY_ID, public_raw)


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @property
    def key_id(self) -> Digest:
        return key_id(self.raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of the context string followed by ``message``."""
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, SIGNATURE_CONTEXT + message)
        except InvalidSignature:
            return False
        return True

    def pem(self) -> bytes:
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(SIGNATURE_CONTEXT + message)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())


def generate_keyfile(path: str | os.PathLike[str], force: bool = False) -> SigningKey:
    """Write a new private key (PKCS#8 PEM, mode 0600) to ``path`` and its public key to ``path.pub``."""
    p = Path(path)
    pub = Path(str(p) + ".pub")
    if not force:
        for q in (p, pub):
            if q.exists():
                raise UsageError(f"key file {q} already exists (use --force to replace it)")
    key = SigningKey.generate()
    pem = key.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    try:
        tmp = p.with_name(p.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        pub.write_bytes(key.public.pem())
    except OSError as exc:
        raise UsageError(f"cannot write key file {p}: {exc.strerror}") from None
    return key


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    return read_small_file(path, what)


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    data = _read(path, "key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError(f"key file {path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"key file {path}: not an Ed25519 private key")
    return SigningKey(key)


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Load a trusted public key (PEM SubjectPublicKeyInfo, as ``keys generate`` writes to ``PATH.pub``)."""
    data = _read(path, "public key file")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if b"PRIVATE KEY" in data:
            raise UsageError(f"public key file {path}: holds a private key; pass the .pub file") from None
        raise UsageError(f"public key file {path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"public key file {path}: not an Ed25519 public key")
    return PublicKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
