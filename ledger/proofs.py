"""Inclusion proofs for one item of a sealed run (spec/proofs.md): small, self-contained, checkable offline.

A proof carries the item's entry, then one step per tree level from the item's node up to the root: the node's
level and item count, the entry's index among the node's entries with their number, the RFC 9162 audit path inside
the node, and, above level 0, the child entry's ``last`` name (its count and node id are what the step below
computed). Recomputing node ids upwards must land on the root the signed closure commit names; the signature is
checked against the auditor's own keys. So the proof is about ⌈log2 n⌉ hashes plus a few per level, and its check
is a pure function: no store, no network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import encoding
from .digests import FORMAT, Digest, content_digest
from .encoding import Value, check_fields
from .errors import CheckFailed, DecodeError, NotFound
from .keys import PublicKey
from .merkle import ProofError, inclusion_proof, root_from_inclusion_proof
from .objects import ChildEntry, ItemEntry, SignedCommit, node_id
from .tree import TREE_HASHER, _node_checked_leaves

PROOF_TYPE = "inclusion"
MAX_LEVELS = 64
MAX_PATH = 64  # hashes per step: a node of 2**64 entries is far beyond anything a store can hold


@dataclass(frozen=True)
class Step:
    """One level of the path: the node holding the entry, and where the entry sits in it."""

    level: int
    count: int  # items under this node
    index: int  # the entry's position among the node's entries
    size: int  # the node's number of entries
    path: tuple[bytes, ...]  # RFC 9162 audit path inside the node, leaf upwards
    last: str | None  # level > 0: the child entry's last item name

    def to_value(self) -> dict[str, Value]:
        v: dict[str, Value] = {"count": self.count, "index": self.index, "level": self.level,
                               "path": list(self.path), "size": self.size}
        if self.last is not None:
            v["last"] = self.last
        return v

    @classmethod
    def from_value(cls, v: Value, what: str) -> Step:
        m = check_fields(v, what, {"count": int, "index": int, "level": int, "path": list, "size": int},
                         {"last": str})
        for f in ("count", "index", "level", "size"):
            if not 0 <= m[f] < 2**63:
                raise DecodeError(f"{what}: {f} out of range")
        if len(m["path"]) > MAX_PATH or not all(isinstance(h, bytes) and len(h) == 32 for h in m["path"]):
            raise DecodeError(f"{what}: path is not a list of 32-byte hashes")
        if (m["level"] == 0) != ("last" not in m):
            raise DecodeError(f"{what}: 'last' is given for, and only for, levels above 0")
        return cls(m["level"], m["count"], m["index"], m["size"], tuple(m["path"]), m.get("last"))


@dataclass(frozen=True)
class InclusionProof:
    run: str
    item: ItemEntry
    steps: tuple[Step, ...]
    seq: int  # the commit's slot, for the reader (the signed body says it too)
    commit: SignedCommit

    def encode(self) -> bytes:
        return encoding.encode({"commit": self.commit.encode(), "format": FORMAT, "item": self.item.to_value(),
                                "run": self.run, "steps": [s.to_value() for s in self.steps],
                                "type": PROOF_TYPE})

    @property
    def hashes(self) -> int:
        return sum(len(s.path) for s in self.steps)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "proof") -> InclusionProof:
        m = encoding.decode_map(data, what, {"commit": bytes, "format": str, "item": dict, "run": str,
                                             "steps": list, "type": str})
        if m["format"] != FORMAT or m["type"] != PROOF_TYPE:
            raise DecodeError(f"{what}: not a {FORMAT} inclusion proof (format {m['format']!r}, type {m['type']!r})")
        if not m["steps"] or len(m["steps"]) > MAX_LEVELS:
            raise DecodeError(f"{what}: needs 1 to {MAX_LEVELS} steps")
        commit = SignedCommit.from_bytes(m["commit"], f"{what}: commit")
        steps = tuple(Step.from_value(s, f"{what}: step {i}") for i, s in enumerate(m["steps"]))
        return cls(m["run"], ItemEntry.from_value(m["item"], f"{what}: item"), steps, commit.body.seq, commit)


def prove(get: Callable[[Digest], bytes], run: str, seq: int, commit: SignedCommit, name: str) -> InclusionProof:
    """Build the proof for item ``name`` by descending from the commit's root (every node checked on the way)."""
    nid = commit.body.root
    key = name.encode("utf-8")
    want_level: int | None = None
    want_count: int | None = None
    down: list[tuple[int, int, int, list[bytes], str | None]] = []  # level, count, index, leaves, child's last
    while True:
        level, entries, _, leaves = _node_checked_leaves(get, nid, want_level, want_count)
        count = (len(entries) if level == 0 else sum(e.count for e in entries if isinstance(e, ChildEntry)))
        if level == 0:
            for i, e in enumerate(entries):
                if isinstance(e, ItemEntry) and e.name == name:
                    down.append((level, count, i, leaves, None))
                    return _assemble(run, seq, commit, e, down)
            raise NotFound(f"run {run}: item {name}: no such item")
        nxt = None
        for i, e in enumerate(entries):
            assert isinstance(e, ChildEntry)
            if key <= e.last.encode("utf-8"):
                nxt = (i, e)
                break
        if nxt is None:
            raise NotFound(f"run {run}: item {name}: no such item")
        i, child = nxt
        down.append((level, count, i, leaves, child.last))
        nid, want_level, want_count = child.node, level - 1, child.count


def _assemble(run: str, seq: int, commit: SignedCommit, item: ItemEntry,
              down: list[tuple[int, int, int, list[bytes], str | None]]) -> InclusionProof:
    """``down`` lists the nodes root first; each interior one carries the ``last`` of the child taken. A step at
    level k > 0 needs the last of the child entry it holds, which is the one recorded at that level."""
    steps = tuple(Step(level, count, index, len(leaves), tuple(inclusion_proof(TREE_HASHER, leaves, index)), last)
                  for level, count, index, leaves, last in reversed(down))
    return InclusionProof(run, item, steps, seq, commit)


def root_from_proof(p: InclusionProof) -> Digest:
    """The tree root the proof implies (pure; every input checked before use)."""
    prev_id: Digest | None = None
    prev_count = 0
    for k, s in enumerate(p.steps):
        if s.level != k:
            raise ProofError(f"step {k}: level {s.level}, expected {k}")
        if (k == 0) != (s.last is None):
            raise ProofError(f"step {k}: 'last' is given for, and only for, levels above 0")
        if k == 0:
            if s.count != s.size:
                raise ProofError(f"step 0: a level-0 node of {s.size} entries holds {s.size} items, not {s.count}")
            leaf = TREE_HASHER.leaf(p.item.encode())
        else:
            if prev_id is None or s.last is None:  # (unreachable after the check above; kept for type narrowing)
                raise ProofError(f"step {k}: malformed")
            if s.count < prev_count:
                raise ProofError(f"step {k}: node holds {s.count} items, fewer than its child's {prev_count}")
            if p.item.name.encode("utf-8") > s.last.encode("utf-8"):
                raise ProofError(f"step {k}: the item's name sorts after its subtree's last name")
            leaf = TREE_HASHER.leaf(ChildEntry(s.last, prev_count, prev_id).encode())
        node_root = root_from_inclusion_proof(TREE_HASHER, s.index, s.size, leaf, s.path)
        prev_id, prev_count = node_id(s.level, s.count, node_root), s.count
    assert prev_id is not None
    return prev_id


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
    got = root_from_proof(p)
    if got != body.root:
        raise ProofError(f"proof: item {p.item.name}: the path leads to b3:{got.hex()[:16]}, not to the sealed root "
                         f"b3:{body.root.hex()[:16]}", expected=body.root, got=got)
    if p.steps[-1].count != body.count:
        raise ProofError(f"proof: the top node holds {p.steps[-1].count} items, the commit says {body.count}")
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
