"""Inclusion proofs for one item of a sealed run (spec/proofs.md): small, self-contained, checkable offline.

A proof carries the item's entry, its index in name order, and the RFC 9162 audit path from its leaf to the
*items root*, which the signed closure commit names together with the item count. Verification is RFC 9162's
(the tree size is the commit's count, so index and path have one encoding only), then the signature against the
auditor's own keys: at most ceil(log2 n) hashes, a pure function, no store, no network.

The prolly tree is not used for the path: its content-defined node sizes, which make diffs cheap, would cost a few
hashes per level more than ceil(log2 n), and a node's audit path does not bind the node's size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import encoding
from .digests import FORMAT, Digest, content_digest
from .encoding import Value
from .errors import CheckFailed, DecodeError, NotFound
from .keys import PublicKey
from .merkle import ProofError, inclusion_proof, root_from_inclusion_proof
from .objects import ItemEntry, SignedCommit
from .tree import TREE_HASHER, _entries_root, leaf_hashes, locate

PROOF_TYPE = "inclusion"
MAX_PATH = 64  # a run of 2**64 items is far beyond anything a store can hold


@dataclass(frozen=True)
class InclusionProof:
    run: str
    item: ItemEntry
    index: int  # the item's position among the run's items in name order
    path: tuple[bytes, ...]  # RFC 9162 audit path to the commit's items root, leaf upwards
    seq: int  # the commit's slot, for the reader (the signed body says it too)
    commit: SignedCommit

    def encode(self) -> bytes:
        return encoding.encode({"commit": self.commit.encode(), "format": FORMAT, "index": self.index,
                                "item": self.item.to_value(), "path": list(self.path), "run": self.run,
                                "type": PROOF_TYPE})

    @property
    def hashes(self) -> int:
        return len(self.path)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "proof") -> InclusionProof:
        m = encoding.decode_map(data, what, {"commit": bytes, "format": str, "index": int, "item": dict,
                                             "path": list, "run": str, "type": str})
        if m["format"] != FORMAT or m["type"] != PROOF_TYPE:
            raise DecodeError(f"{what}: not a {FORMAT} inclusion proof (format {m['format']!r}, type {m['type']!r})")
        if not 0 <= m["index"] < 2**63:
            raise DecodeError(f"{what}: index out of range")
        path: list[Value] = m["path"]
        if len(path) > MAX_PATH or not all(isinstance(h, bytes) and len(h) == 32 for h in path):
            raise DecodeError(f"{what}: path is not a list of at most {MAX_PATH} 32-byte hashes")
        commit = SignedCommit.from_bytes(m["commit"], f"{what}: commit")
        return cls(m["run"], ItemEntry.from_value(m["item"], f"{what}: item"), m["index"],
                   tuple(h for h in path if isinstance(h, bytes)), commit.body.seq, commit)


def prove(get: Callable[[Digest], bytes], run: str, seq: int, commit: SignedCommit, name: str) -> InclusionProof:
    """Build the proof for item ``name``: find it (and its index) by descending the tree, which is cheap and fails
    fast for a name the run lacks; then read every item's leaf hash, in order, for the audit path (O(n), the
    stored entries hashed as they stand). The path is checked against the commit before it is handed out, which is
    what catches a damaged store here."""
    body = commit.body
    found = locate(get, body.root, name)
    if found is None:
        raise NotFound(f"run {run}: item {name}: no such item")
    index, item = found
    leaves = leaf_hashes(get, body.root)  # unchecked node by node: the path is checked against the items root below
    if len(leaves) != body.count:
        raise CheckFailed(f"run {run}: the tree holds {len(leaves)} items, the commit says {body.count}")
    path = tuple(inclusion_proof(TREE_HASHER, leaves, index, _entries_root))
    p = InclusionProof(run, item, index, path, seq, commit)
    got = root_from_proof(p)
    if got != body.items_root:
        raise CheckFailed(f"run {run}: the stored tree's items root b3:{got.hex()[:16]} is not the sealed "
                          f"b3:{body.items_root.hex()[:16]}")
    return p


def root_from_proof(p: InclusionProof) -> Digest:
    """The items root the proof implies for a tree of the commit's item count (pure; inputs checked before use)."""
    leaf = TREE_HASHER.leaf(p.item.encode())
    return Digest(root_from_inclusion_proof(TREE_HASHER, p.index, p.commit.body.count, leaf, p.path))


@dataclass(frozen=True)
class ProofResult:
    run: str
    item: ItemEntry
    commit: Digest
    seq: int
    key_id: bytes
    hashes: int
    content_checked: bool

    def to_json(self) -> dict[str, object]:
        return {"run": self.run, "ok": True, "item": {"name": self.item.name, "kind": self.item.kind,
                                                      "size": self.item.size, "blake3": self.item.blake3.hex()},
                "commit": self.commit.hex(), "seq": self.seq, "key_id": self.key_id.hex(),
                "proof_hashes": self.hashes, "content_checked": self.content_checked}


def verify_proof(p: InclusionProof, trusted: Sequence[PublicKey], content: bytes | None = None,
                 content_digest_size: tuple[Digest, int] | None = None) -> ProofResult:
    """Check a proof offline: the path leads to the signed root, the signature is by a trusted key, the commit
    seals this run; with ``content`` (or its digest and size), the item's bytes are the ones proven."""
    body = p.commit.body
    if body.run != p.run:
        raise CheckFailed(f"proof: the commit seals run {body.run!r}, the proof claims run {p.run!r}")
    key = next((k for k in trusted if k.key_id == body.key), None)
    if key is None:
        raise CheckFailed(f"proof: commit signed by key {body.key.hex()[:16]}, which is not among the trusted keys")
    if not key.verify(p.commit.body_bytes, p.commit.sig):
        raise CheckFailed(f"proof: bad signature on the commit for key {body.key.hex()[:16]}")
    try:
        got = root_from_proof(p)
    except ProofError as exc:
        raise ProofError(f"proof: item {p.item.name}: {exc}") from None
    if got != body.items_root:
        raise ProofError(f"proof: item {p.item.name}: the path leads to b3:{got.hex()[:16]}, not to the sealed items "
                         f"root b3:{body.items_root.hex()[:16]}", expected=body.items_root, got=got)
    checked = False
    if content is not None:
        content_digest_size = (content_digest(content), len(content))
    if content_digest_size is not None:
        d, n = content_digest_size
        if n != p.item.size or d != p.item.blake3:
            raise CheckFailed(f"proof: item {p.item.name}: the content given does not match (expected "
                              f"b3:{p.item.blake3.hex()[:16]}, {p.item.size} bytes; got b3:{d.hex()[:16]}, {n} bytes)")
        checked = True
    return ProofResult(p.run, p.item, p.commit.digest, body.seq, body.key, p.hashes, checked)
