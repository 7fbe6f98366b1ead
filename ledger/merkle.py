"""RFC 9162 Merkle trees with the hash function as a parameter (spec/merkle.md).

Pure functions, no I/O: the tree hash of a list of leaves, inclusion proofs and their verification, and consistency
(append-only) proof verification. Leaves are hashed as H(0x00 || data) and interior nodes as H(0x01 || left || right).
With SHA-256 this is RFC 6962/9162 exactly (and passes the transparency-dev probes); the product uses BLAKE3 in
derive-key mode with a context string per tree type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import blake3

from .errors import CheckFailed

HashFn = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Hasher:
    """A hash function for one kind of tree, with RFC 9162 domain separation between leaves and nodes."""

    name: str
    fn: HashFn
    size: int = 32

    def empty(self) -> bytes:
        return self.fn(b"")

    def leaf(self, data: bytes) -> bytes:
        return self.fn(b"\x00" + data)

    def node(self, left: bytes, right: bytes) -> bytes:
        return self.fn(b"\x01" + left + right)


SHA256 = Hasher("sha256", lambda b: hashlib.sha256(b).digest())


def blake3_hasher(context: str) -> Hasher:
    """BLAKE3-256 in derive-key mode with ``context``: one tree type, one key."""
    key = blake3.blake3(b"", derive_key_context=context).digest()  # only to validate the context early
    del key

    def fn(data: bytes) -> bytes:
        return blake3.blake3(data, derive_key_context=context).digest()

    return Hasher(f"blake3:{context}", fn)


class ProofError(CheckFailed):
    """A proof does not verify; carries the expected and the calculated root when they were compared."""

    def __init__(self, message: str, expected: bytes | None = None, got: bytes | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_from_leaf_hashes(hasher: Hasher, leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) from the already-hashed leaves, iteratively (no recursion depth limits, O(n) work)."""
    n = len(leaves)
    if n == 0:
        return hasher.empty()
    # Bottom-up pairing gives the same tree as RFC 9162's left-balanced split: an odd last node is promoted.
    level = list(leaves)
    node = hasher.node
    while len(level) > 1:
        nxt = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class RootAccumulator:
    """MTH over leaf hashes pushed one at a time, in O(log n) memory: the compact range of perfect subtrees.

    Pushing leaf n merges the subtrees its binary carry completes (amortised one node hash per leaf); the root
    folds what remains from the right, which is RFC 9162's left-balanced split. Used where leaves stream past
    (sealing and verifying a run's items) and a list of all of them would be the only other way.
    """

    __slots__ = ("hasher", "size", "_stack", "_node")

    def __init__(self, hasher: Hasher, node: Callable[[bytes, bytes], bytes] | None = None) -> None:
        """``node``, when given, must compute ``hasher.node`` (a caller's inlined version of it)."""
        self.hasher = hasher
        self.size = 0
        self._stack: list[bytes] = []
        self._node = hasher.node if node is None else node

    def push(self, leaf_hash: bytes) -> None:
        h, n, stack, node = leaf_hash, self.size, self._stack, self._node
        while n & 1:
            h = node(stack.pop(), h)
            n >>= 1
        stack.append(h)
        self.size += 1

    def root(self, tail: bytes | None = None) -> bytes:
        """MTH of everything pushed; with ``tail``, of everything pushed followed by a tree whose root is ``tail``
        and which is smaller than any perfect subtree pushed (how a caller that pushes roots of fixed-size chunks
        adds its last, partial chunk: RFC 9162 folds the perfect subtrees from the right)."""
        rest = self._stack
        if tail is None:
            if not rest:
                return self.hasher.empty()
            tail, rest = rest[-1], rest[:-1]
        r = tail
        for h in reversed(rest):
            r = self._node(h, r)
        return r


def root(hasher: Hasher, data: Sequence[bytes]) -> bytes:
    """MTH over raw leaf data."""
    return root_from_leaf_hashes(hasher, [hasher.leaf(d) for d in data])


def inclusion_proof(hasher: Hasher, leaves: Sequence[bytes], index: int,
                    subtree_root: Callable[[Sequence[bytes]], bytes] | None = None) -> list[bytes]:
    """PATH(m, D[n]) over leaf hashes, ordered from the leaf upwards (RFC 9162 2.1.3.1). ``subtree_root``, when
    given, must compute ``root_from_leaf_hashes(hasher, ·)`` (a caller's faster version of it)."""
    root_of = subtree_root if subtree_root is not None else (lambda ls: root_from_leaf_hashes(hasher, ls))
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError("index out of range")
    proof: list[bytes] = []
    lo, hi, m = 0, n, index
    stack: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            stack.append(root_of(leaves[lo + k:hi]))
            hi = lo + k
        else:
            stack.append(root_of(leaves[lo:lo + k]))
            lo, m = lo + k, m - k
    proof.extend(reversed(stack))
    return proof


def root_from_inclusion_proof(hasher: Hasher, index: int, size: int, leaf_hash: bytes,
                              proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 2.1.3.2); inputs are checked before use."""
    if size <= 0 or not 0 <= index < size:
        raise ProofError(f"index {index} out of range for tree size {size}")
    if len(leaf_hash) != hasher.size:
        raise ProofError("leaf hash has the wrong length")
    inner, border = _decomp_incl_proof(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {inner + border}")
    for p in proof:
        if len(p) != hasher.size:
            raise ProofError("proof hash has the wrong length")
    res = _chain_inner(hasher, leaf_hash, proof[:inner], index)
    return _chain_border_right(hasher, res, proof[inner:])


def verify_inclusion(hasher: Hasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes],
                     root_hash: bytes) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``index`` of a ``size``-leaf tree under ``root_hash``."""
    got = root_from_inclusion_proof(hasher, index, size, leaf_hash, proof)
    if got != root_hash:
        raise ProofError("inclusion proof does not lead to the root", expected=root_hash, got=got)


def verify_consistency(hasher: Hasher, size1: int, size2: int, root1: bytes, root2: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise :class:`ProofError` unless the tree of ``size2`` leaves only appended to the one of ``size1``."""
    if size1 < 0 or size2 < size1:
        raise ProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == 0 and root1 != hasher.empty():
        # The empty tree has one root, MTH({}) = HASH(); anything else claimed for size 0 is wrong.
        raise ProofError("size1 is 0 but root1 is not the empty tree's root", expected=hasher.empty(), got=root1)
    if size1 == size2:
        if proof:
            raise ProofError("size1 == size2 but the proof is not empty")
        if root1 != root2:
            raise ProofError("equal sizes but different roots", expected=root1, got=root2)
        return
    if len(root1) != hasher.size or len(root2) != hasher.size:
        raise ProofError("root hash has the wrong length")
    if size1 == 0:
        if proof:
            raise ProofError("size1 is 0 but the proof is not empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    for p in proof:
        if len(p) != hasher.size:
            raise ProofError("proof hash has the wrong length")
    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = _trailing_zeros(size1)
    inner -= shift
    seed, start = proof[0], 1
    if size1 == 1 << shift:
        seed, start = root1, 0
    if len(proof) != start + inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {start + inner + border}")
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_inner_right(hasher, seed, rest[:inner], mask)
    hash1 = _chain_border_right(hasher, hash1, rest[inner:])
    if hash1 != root1:
        raise ProofError("consistency proof does not lead to root1", expected=root1, got=hash1)
    hash2 = _chain_inner(hasher, seed, rest[:inner], mask)
    hash2 = _chain_border_right(hasher, hash2, rest[inner:])
    if hash2 != root2:
        raise ProofError("consistency proof does not lead to root2", expected=root2, got=hash2)


def _trailing_zeros(x: int) -> int:
    return (x & -x).bit_length() - 1


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(hasher: Hasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = hasher.node(seed, h) if (index >> i) & 1 == 0 else hasher.node(h, seed)
    return seed


def _chain_inner_right(hasher: Hasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = hasher.node(h, seed)
    return seed


def _chain_border_right(hasher: Hasher, seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = hasher.node(h, seed)
    return seed


def consistency_proof(hasher: Hasher, leaves: Sequence[bytes], size1: int) -> list[bytes]:
    """PROOF(m, D[n]) over leaf hashes (RFC 9162 2.1.4.1)."""
    n = len(leaves)
    if not 0 <= size1 <= n:
        raise ValueError("size1 out of range")
    if size1 == 0 or size1 == n:
        return []
    return _subproof(hasher, size1, leaves, True)


def _subproof(hasher: Hasher, m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [root_from_leaf_hashes(hasher, leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(hasher, m, leaves[:k], whole) + [root_from_leaf_hashes(hasher, leaves[k:])]
    return _subproof(hasher, m - k, leaves[k:], False) + [root_from_leaf_hashes(hasher, leaves[:k])]
