"""Append-only proofs for the closure chain (spec/chainproofs.md): signed heads (checkpoints) and consistency.

Every closure commit already commits to an RFC 9162 Merkle log over the digests of all commits before it
(``log_size`` = its seq, ``log_root``), and its Ed25519 signature covers that. So a commit *is* a signed checkpoint of
the chain below it; a checkpoint file is just the head commit's signed bytes. To show that a newer head only appended
to an older one, a consistency proof carries both signed commits, the RFC 9162 consistency path from the old log size
to the new one, and the inclusion path of the old commit's own digest in the new log: O(log n) hashes, checked with
nothing but the auditor's keys.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from . import encoding
from .chain import LOG_HASHER, ChainView
from .digests import FORMAT, Digest
from .errors import CheckFailed, DecodeError, NotFound
from .keys import PublicKey
from .merkle import consistency_proof, inclusion_proof, verify_consistency, verify_inclusion
from .objects import SignedCommit
from .storage import Store

MAX_HASHES = 128


def _hashes(v: object, what: str) -> tuple[bytes, ...]:
    if not isinstance(v, list) or len(v) > MAX_HASHES or not all(isinstance(h, bytes) and len(h) == 32 for h in v):
        raise DecodeError(f"{what}: not a list of 32-byte hashes")
    return tuple(v)


@dataclass(frozen=True)
class Checkpoint:
    """A signed head: the newest commit, whose signature covers the log of every commit before it."""

    commit: SignedCommit

    @property
    def size(self) -> int:
        """Commits in the chain up to and including this one."""
        return self.commit.body.seq + 1

    def encode(self) -> bytes:
        return encoding.encode({"commit": self.commit.encode(), "format": FORMAT, "type": "checkpoint"})

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "checkpoint") -> Checkpoint:
        m = encoding.decode_map(data, what, {"commit": bytes, "format": str, "type": str})
        if m["format"] != FORMAT or m["type"] != "checkpoint":
            raise DecodeError(f"{what}: not a {FORMAT} checkpoint")
        return cls(SignedCommit.from_bytes(m["commit"], f"{what}: commit"))

    def text(self, origin: str) -> str:
        """A C2SP tlog-checkpoint-shaped rendering (origin, size, base64 root, then the commit digest) for people
        and log tooling. It is informational: the signature that counts is the commit's (spec/chainproofs.md)."""
        b = self.commit.body
        return (f"{origin}\n{b.log_size}\n{base64.b64encode(b.log_root).decode()}\n"
                f"head b3:{self.commit.digest.hex()} run {b.run} #{b.seq}\n")


@dataclass(frozen=True)
class ConsistencyProof:
    old: SignedCommit
    new: SignedCommit
    consistency: tuple[bytes, ...]  # RFC 9162 PROOF(old.seq, log of new.seq commits)
    inclusion: tuple[bytes, ...]  # RFC 9162 PATH(old.seq, log of new.seq commits): the old commit itself

    def encode(self) -> bytes:
        return encoding.encode({"consistency": list(self.consistency), "format": FORMAT,
                                "inclusion": list(self.inclusion), "new": self.new.encode(),
                                "old": self.old.encode(), "type": "consistency"})

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "consistency proof") -> ConsistencyProof:
        m = encoding.decode_map(data, what, {"consistency": list, "format": str, "inclusion": list, "new": bytes,
                                             "old": bytes, "type": str})
        if m["format"] != FORMAT or m["type"] != "consistency":
            raise DecodeError(f"{what}: not a {FORMAT} consistency proof")
        return cls(SignedCommit.from_bytes(m["old"], f"{what}: old"), SignedCommit.from_bytes(m["new"], f"{what}: new"),
                   _hashes(m["consistency"], f"{what}: consistency"), _hashes(m["inclusion"], f"{what}: inclusion"))


def checkpoint(store: Store) -> Checkpoint:
    view = ChainView(store)
    view.refresh()
    if view.head is None:
        raise NotFound("the chain is empty: nothing is sealed yet")
    return Checkpoint(view.head.commit)


def prove_consistency(store: Store, old: SignedCommit, new_seq: int | None = None) -> ConsistencyProof:
    """From an older signed head (as the auditor kept it) to the store's current head, or to commit ``new_seq``."""
    view = ChainView(store)
    view.refresh()
    head = view.head if new_seq is None or new_seq >= len(view.entries) else view.entries[new_seq]
    if head is None:
        raise NotFound("the chain is empty: nothing is sealed yet")
    a, b = old.body.seq, head.seq
    if a < len(view.entries) and view.entries[a].digest != old.digest:
        raise CheckFailed(f"the checkpoint's commit #{a} is not this store's commit #{a}: a checkpoint from another "
                          "ledger, or a rewritten chain")
    if a > b:
        raise CheckFailed(f"the old checkpoint (#{a}) is newer than this store's head (#{b}): the chain was cut")
    leaves = [LOG_HASHER.leaf(e.digest) for e in view.entries[:b]]
    if a < b:
        incl = tuple(inclusion_proof(LOG_HASHER, leaves, a))
        cons = tuple(consistency_proof(LOG_HASHER, leaves, a))
    else:
        incl = cons = ()
    return ConsistencyProof(old, head.commit, cons, incl)


@dataclass(frozen=True)
class ConsistencyResult:
    old_seq: int
    new_seq: int
    old: Digest
    new: Digest
    hashes: int

    def to_json(self) -> dict[str, object]:
        return {"ok": True, "old": {"seq": self.old_seq, "commit": self.old.hex()},
                "new": {"seq": self.new_seq, "commit": self.new.hex()}, "proof_hashes": self.hashes}


def _check_signed(c: SignedCommit, trusted: Sequence[PublicKey], which: str) -> None:
    key = next((k for k in trusted if k.key_id == c.body.key), None)
    if key is None:
        raise CheckFailed(f"{which} head (#{c.body.seq}): signed by key {c.body.key.hex()[:16]}, which is not among "
                          "the trusted keys")
    if not key.verify(c.body_bytes, c.sig):
        raise CheckFailed(f"{which} head (#{c.body.seq}): bad signature for key {c.body.key.hex()[:16]}")


def verify_consistency_proof(p: ConsistencyProof, trusted: Sequence[PublicKey]) -> ConsistencyResult:
    """The new head only appended to the old one: both signed by trusted keys, the old log is a prefix of the new
    one, and the old commit itself sits at its own position in the new log."""
    _check_signed(p.old, trusted, "old")
    _check_signed(p.new, trusted, "new")
    a, b = p.old.body.seq, p.new.body.seq
    if a > b:
        raise CheckFailed(f"the old head (#{a}) is newer than the new head (#{b})")
    if a == b:
        if p.old.digest != p.new.digest:
            raise CheckFailed(f"two different signed commits claim slot #{a}: the chain was rewritten")
        if p.consistency or p.inclusion:
            raise CheckFailed("the same head twice, yet the proof carries hashes")
    else:
        verify_consistency(LOG_HASHER, a, b, p.old.body.log_root, p.new.body.log_root, p.consistency)
        verify_inclusion(LOG_HASHER, a, b, LOG_HASHER.leaf(p.old.digest), p.inclusion, p.new.body.log_root)
    return ConsistencyResult(a, b, p.old.digest, p.new.digest, len(p.consistency) + len(p.inclusion))
