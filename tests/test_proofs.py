"""Inclusion proofs of one item of a sealed run (ledger/proofs.py, spec/proofs.md): the Python API on real local
stores, the RFC 9162 audit path to the commit's items root and its size (exactly the RFC 9162 path length, so at
most ceil(log2 n) hashes), byte-level and semantic mutations (every one refused with one of the project's errors),
non-malleability (one (index, path) per item of a commit), the optional content check, a store tampered with after
sealing, and the CLI (`ledger prove`, `ledger verify-proof`) against its contract (../shared/docs/cli.md).

Runs are built once per module through the API (init, add/record, seal); only the CLI tests start subprocesses.
Items roots and audit paths are checked against a construction written here from RFC 9162 (the tree's levels built
bottom up, an odd last node promoted; section 2.1.3.1 for the sides), not against ledger/merkle.py.
Known defects are pinned by ``xfail(strict=True)`` tests whose reason names the file, the input and the expected
against the actual behaviour, so a fix turns them into failures that ask for the marker to go.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import blake3
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_cli import HEX64, Cli, assert_error, snapshot, write

from ledger import Ledger
from ledger.digests import content_digest
from ledger.errors import CheckFailed, DecodeError, LedgerError, NotFound
from ledger.keys import PublicKey, SigningKey, generate_keyfile
from ledger.merkle import ProofError
from ledger.objects import CommitBody, ItemEntry, SignedCommit
from ledger.proofs import MAX_PATH, InclusionProof, root_from_proof, verify_proof
from ledger.tree import build, decode_node, rank

RUN_SIZES = (1, 2, 3, 5, 63, 64, 65, 300, 3000)
BIG = 3000
RECORD_RUN = 65  # this run's items are json records (ledger record), every other run's are files (ledger add)
BIG_STRIDE = 75  # prove() reads the whole tree (O(n)): the big run proves every 75th item and its last one
TREE_CONTEXT = "ledger/1 evidence-tree"  # spec/tree.md: DK(context, 0x00 || entry) for leaves, 0x01 for nodes


def ceil_log2(n: int) -> int:
    return (n - 1).bit_length() if n > 1 else 0


def path_sides(index: int, size: int) -> tuple[str, ...]:
    """The RFC 9162 audit path of leaf ``index`` among ``size`` as the side of each sibling, leaf upwards (written
    from RFC 9162 section 2.1.3.1, not from ledger/merkle.py). Its length is the number of hashes a proof of that
    leaf must have."""
    if size <= 1:
        return ()
    k = 1 << ((size - 1).bit_length() - 1)  # the largest power of two smaller than size
    if index < k:
        return (*path_sides(index, k), "R")
    return (*path_sides(index - k, size - k), "L")


def _h(data: bytes) -> bytes:
    return blake3.blake3(data, derive_key_context=TREE_CONTEXT).digest()


def leaf_hash(item: ItemEntry) -> bytes:
    return _h(b"\x00" + item.encode())


class Rfc9162Tree:
    """MTH over leaf hashes as levels, bottom up: pairs hashed as H(0x01 || left || right), an odd last node promoted
    unchanged (which is RFC 9162's left-balanced split); an audit path is then the sibling at each level, where there
    is one."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.levels = [list(leaves)]
        while len(self.levels[-1]) > 1:
            lv = self.levels[-1]
            nxt = [_h(b"\x01" + lv[i] + lv[i + 1]) for i in range(0, len(lv) - 1, 2)]
            if len(lv) % 2:
                nxt.append(lv[-1])
            self.levels.append(nxt)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.levels[0] else _h(b"")

    def path(self, index: int) -> tuple[bytes, ...]:
        out = []
        for lv in self.levels[:-1]:
            if index ^ 1 < len(lv):
                out.append(lv[index ^ 1])
            index >>= 1
        return tuple(out)

    def nodes(self) -> set[bytes]:
        return {h for lv in self.levels for h in lv}


class NotRefused(Exception):
    """A proof that must not verify did."""


def must_refuse(p: InclusionProof, trusted: list[PublicKey], **kw: object) -> LedgerError:
    """verify_proof(p) must raise one of the project's errors; anything else escapes, acceptance raises NotRefused."""
    try:
        verify_proof(p, trusted, **kw)  # type: ignore[arg-type]
    except LedgerError as exc:
        return exc
    raise NotRefused(f"verify_proof accepted a mutated proof: {p}")


def implied_root(p: InclusionProof) -> bytes | None:
    """root_from_proof(p), or None when it refuses the index or the path (a ProofError, nothing else)."""
    try:
        return root_from_proof(p)
    except ProofError:
        return None


def flip(b: bytes, i: int = 0, mask: int = 0x01) -> bytes:
    return b[:i] + bytes([b[i] ^ mask]) + b[i + 1:]


def resign(world: World, body: CommitBody) -> SignedCommit:
    """A commit with ``body``, signed by the trusted key (what only the sealer can make)."""
    return SignedCommit.create(body, world.key.sign(body.encode()))


# --- the runs ------------------------------------------------------------------------------------------------------

@dataclass
class Run:
    run: str
    n: int
    commit: SignedCommit
    seq: int
    entries: dict[str, ItemEntry]  # name -> entry, in name order
    content: dict[str, bytes]
    tree: Rfc9162Tree  # over the entries' leaf hashes, built here

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def sample(self) -> list[str]:
        """Every item, or for the big run every BIG_STRIDE-th, the first and the last included."""
        names = self.names
        if self.n < BIG:
            return names
        return [*names[::BIG_STRIDE], names[-1]]

    def built(self, i: int) -> InclusionProof:
        """The proof of item ``i`` made here from the RFC 9162 construction, not by prove()."""
        item = self.entries[self.names[i]]
        return InclusionProof(self.run, item, i, self.tree.path(i), self.seq, self.commit)


@dataclass
class World:
    root: Path
    lg: Ledger
    key: SigningKey
    other: SigningKey
    runs: dict[int, Run]
    proofs: dict[int, dict[str, InclusionProof]]

    @property
    def trusted(self) -> list[PublicKey]:
        return [self.key.public]


def item_name(i: int) -> str:
    """Distinct names with UTF-8 and nested paths; their order differs from the order of i."""
    return (f"données/é-{i:05d}.txt", f"nested/a/b/{i:05d}.csv", f"日本/{i:05d}-ü.json", f"z{i % 10}/{i}.log")[i % 4]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("proofs")
    lg = Ledger.open(str(root / "store"))
    lg.init()
    key = generate_keyfile(root / "sealer.key")
    other = generate_keyfile(root / "other.key")
    runs: dict[int, Run] = {}
    for n in RUN_SIZES:
        run = f"run-{n}"
        content: dict[str, bytes] = {}
        if n == RECORD_RUN:
            for i in range(n):
                res = lg.record(run, "json", {"i": i, "note": "é"}, name=f"records/{i:03d}/réc.json")
                content[res.added[0].name] = lg.read(run, res.added[0].name)
        else:
            d = root / f"data-{n}"
            for i in range(n):
                name = item_name(i)
                content[name] = f"run {n} item {i}\n".encode() * (i % 3 + 1)
                write(d / name, content[name])
            lg.add(run, [str(d)])
        sealed = lg.seal(run, key)
        entries = {e.name: e for e in lg.items(run).items}
        assert sorted(entries) == sorted(content) and len(entries) == n
        tree = Rfc9162Tree([leaf_hash(e) for e in entries.values()])
        runs[n] = Run(run, n, sealed.commit, sealed.seq, entries, content, tree)
    proofs = {n: {name: lg.prove(r.run, name) for name in r.sample()} for n, r in runs.items()}
    return World(root, lg, key, other, runs, proofs)


# --- the items root, and every item proves -------------------------------------------------------------------------

@pytest.mark.parametrize("n", RUN_SIZES)
def test_items_root_is_rfc9162_over_the_items_in_name_order(world: World, n: int) -> None:
    r = world.runs[n]
    body = r.commit.body
    assert r.names == sorted(r.names, key=lambda s: s.encode("utf-8")), "lg.items lists in UTF-8 byte order"
    assert body.count == n and len(r.tree.levels[0]) == n
    assert body.items_root == r.tree.root
    assert body.items_root != body.root  # two different trees: the prolly tree's root is a node id


@pytest.mark.parametrize("n", RUN_SIZES)
def test_every_item_proves_and_verifies(world: World, n: int) -> None:
    r = world.runs[n]
    proofs = world.proofs[n]
    assert len(proofs) == (n if n < BIG else BIG // BIG_STRIDE + 1)
    assert r.names[0] in proofs and r.names[-1] in proofs
    body = r.commit.body
    for name, p in proofs.items():
        i = r.index(name)
        assert (p.run, p.item, p.index, p.seq, p.commit) == (r.run, r.entries[name], i, r.seq, r.commit)
        assert p.path == r.tree.path(i), "prove's path is the RFC 9162 audit path"
        assert p == r.built(i)
        assert root_from_proof(p) == body.items_root
        res = verify_proof(p, world.trusted)
        assert (res.run, res.item, res.commit, res.seq, res.key_id) == (
            r.run, r.entries[name], r.commit.digest, r.seq, world.key.public.key_id)
        assert res.hashes == p.hashes == len(p.path) == len(path_sides(i, n)) <= ceil_log2(n)
        assert res.content_checked is False


@pytest.mark.parametrize("n", RUN_SIZES)
def test_hashes_per_proof_at_most_ceil_log2_n_for_every_item(world: World, n: int) -> None:
    """Every item of every run, the big one included (its proofs built here from the RFC 9162 construction; prove()
    makes the same ones, test_every_item_proves_and_verifies): exactly the RFC 9162 path length, never more than
    ceil(log2 n), and the bound is reached."""
    r = world.runs[n]
    lengths = []
    for i in range(n):
        p = r.built(i)
        verify_proof(p, world.trusted)
        assert p.hashes == len(path_sides(i, n)) <= ceil_log2(n), (i, p.hashes)
        lengths.append(p.hashes)
    assert max(lengths) == ceil_log2(n)
    assert sum(lengths) == sum(len(path_sides(i, n)) for i in range(n))


@pytest.mark.parametrize("n", RUN_SIZES)
def test_round_trip(world: World, n: int) -> None:
    for k, p in enumerate(world.proofs[n].values()):
        data = p.encode()
        q = InclusionProof.from_bytes(data)
        assert (q.run, q.item, q.index, q.path, q.seq, q.commit.body_bytes, q.commit.sig) == (
            p.run, p.item, p.index, p.path, p.seq, p.commit.body_bytes, p.commit.sig)
        assert q.commit.body == p.commit.body  # not part of SignedCommit's equality: compared on its own
        assert q == p and q.encode() == data
        if k < 5:  # proving twice gives the same bytes (no randomness, no time in a proof)
            assert world.lg.prove(p.run, p.item.name).encode() == data


def tree_levels(items: list[ItemEntry]) -> tuple[bytes, dict[bytes, bytes]]:
    nodes: dict[bytes, bytes] = {}
    root, _ = build(items, lambda nid, data: nodes.__setitem__(bytes(nid), data))
    return root, nodes


def test_runs_have_the_expected_depths(world: World) -> None:
    """prove() finds the item and its index by descending the prolly tree: the fixture covers one-level,
    two-level and three-level trees (and every item's index is checked in test_every_item_proves_and_verifies)."""
    depth = {}
    for n, r in world.runs.items():
        root, nodes = tree_levels(list(r.entries.values()))
        assert root == r.commit.body.root
        depth[n] = decode_node(root, nodes[root])[0] + 1
    assert depth[1] == depth[2] == depth[3] == depth[5] == 1
    assert depth[300] == 2 and depth[BIG] == 3, depth


def test_names_that_extend_a_boundary_name(tmp_path: Path) -> None:
    """A name of rank 1 ends its level-0 node; names it is a proper prefix of sort after it (UTF-8 order) and live in
    the next node: the descent by `last` must send each to its own node, and count the items before it right."""
    boundary = next(f"p{i}" for i in range(10_000) if rank(f"p{i}") == 1)
    names = [boundary[:-1], boundary, boundary + " ", boundary + "/a", boundary + "a", boundary + "é", boundary + "😀"]
    lg = Ledger.open(str(tmp_path / "s"))
    lg.init()
    key = generate_keyfile(tmp_path / "k")
    for name in names:
        lg.record("prefixes", "json", {"name": name}, name=name)
    sealed = lg.seal("prefixes", key)
    entries = lg.items("prefixes").items
    assert [e.name for e in entries] == names
    root, nodes = tree_levels(entries)
    assert root == sealed.commit.body.root and decode_node(root, nodes[root])[0] == 1  # two level-0 nodes
    tree = Rfc9162Tree([leaf_hash(e) for e in entries])
    for i, name in enumerate(names):
        p = lg.prove("prefixes", name)
        assert (p.item.name, p.index, p.path) == (name, i, tree.path(i))
        verify_proof(p, [key.public])


def test_chosen_names_do_not_lengthen_the_proof(tmp_path: Path) -> None:
    """Whoever names the items picks the prolly tree's node sizes: 128 rank-0 names then 128 rank-1 names make a
    level-0 node of 129 entries under a level-1 node of 128 children (the old per-node proof of the first item had
    8 + 7 = 15 hashes). The audit path to the items root does not depend on the node sizes: 8 hashes for every item
    of n = 256."""
    zeros = [f"a/{i:05d}" for i in range(4000) if rank(f"a/{i:05d}") == 0][:128]
    ones = [f"b/{i:06d}" for i in range(40000) if rank(f"b/{i:06d}") == 1][:128]
    assert len(zeros) == len(ones) == 128
    lg = Ledger.open(str(tmp_path / "s"))
    lg.init()
    key = generate_keyfile(tmp_path / "k")
    for name in zeros + ones:
        write(tmp_path / "d" / name, name)
    lg.add("chosen", [str(tmp_path / "d")])
    sealed = lg.seal("chosen", key)
    entries = lg.items("chosen").items
    root, nodes = tree_levels(entries)
    assert root == sealed.commit.body.root
    sizes = sorted((len(decode_node(nid, data)[1]), decode_node(nid, data)[0]) for nid, data in nodes.items())
    assert (129, 0) in sizes and (128, 1) in sizes, sizes
    names = zeros + ones
    for i in [*range(0, 256, 8), 127, 128, 129, 255]:  # prove() reads the whole tree: a sample, both nodes' edges
        p = lg.prove("chosen", names[i])
        assert p.index == i and p.hashes == 8 == ceil_log2(256)
        verify_proof(p, [key.public])


# --- size ----------------------------------------------------------------------------------------------------------

# bytes = the commit envelope + 34 per hash (bin8 header + 32) + the item's name + the run id + 127 to 133 bytes: the
# keys, the format and type strings, the item's digest and kind, and the headers and ints whose encoded length
# varies (the commit's bin header, the index, the name's str header, the size, the path's array header: at most 15
# hashes here).
@pytest.mark.parametrize("n", RUN_SIZES)
def test_measured_proof_sizes(world: World, n: int) -> None:
    commit_bytes = len(world.runs[n].commit.encode())
    for p in world.proofs[n].values():
        overhead = len(p.encode()) - commit_bytes - 34 * p.hashes - len(p.item.name.encode()) - len(p.run)
        assert 127 <= overhead <= 133, overhead
    assert max(len(p.encode()) - commit_bytes for p in world.proofs[n].values()) <= 34 * ceil_log2(n) + 200


# --- byte-level mutations ------------------------------------------------------------------------------------------

def decode_and_verify(data: bytes, original: InclusionProof, trusted: list[PublicKey]) -> str:
    """'refused' when decoding or verifying raises one of the project's errors; 'same' when the bytes are the
    original's; any other exception escapes, and other bytes that verify fail the test."""
    try:
        q = InclusionProof.from_bytes(data)
        verify_proof(q, trusted)
    except LedgerError:
        return "refused"
    assert data == original.encode() and q == original, f"a mutated proof verified: {q}"
    return "same"


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, val in edits:
        i = pos % max(1, len(buf))
        if op == "flip" and buf:
            buf[i] ^= 1 << (val % 8)
        elif op == "set" and buf:
            buf[i] = val
        elif op == "insert":
            buf.insert(i, val)
        elif op == "delete" and buf:
            del buf[i]
        elif op == "truncate":
            del buf[i:]
    return bytes(buf)


@pytest.fixture(scope="module", params=[300, BIG], ids=["n300", "n3000"])
def mid_proof(request: pytest.FixtureRequest, world: World) -> InclusionProof:
    proofs = list(world.proofs[request.param].values())
    return proofs[len(proofs) // 2]


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                                st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=3))
def test_mutated_bytes_fail_closed(world: World, mid_proof: InclusionProof, edits: list[tuple[str, int, int]]) -> None:
    data = mutate(mid_proof.encode(), edits)
    outcome = decode_and_verify(data, mid_proof, world.trusted)
    assert outcome == ("same" if data == mid_proof.encode() else "refused")


def test_every_single_byte_flip_and_truncation_fails_closed(world: World, mid_proof: InclusionProof) -> None:
    data = mid_proof.encode()
    for i in range(len(data)):
        for mask in (0x01, 0x80):
            assert decode_and_verify(flip(data, i, mask), mid_proof, world.trusted) == "refused", (i, mask)
        assert decode_and_verify(data[:i], mid_proof, world.trusted) == "refused", i
    for extra in (b"\x00", b"\xc0", data[:1]):
        assert decode_and_verify(data + extra, mid_proof, world.trusted) == "refused"
    assert decode_and_verify(data, mid_proof, world.trusted) == "same"


# --- the audit path: every mutation of index or path ---------------------------------------------------------------

@pytest.fixture(scope="module")
def inner(world: World) -> InclusionProof:
    """A proof of the big run whose item is neither first nor last (index +- 1 in range) and whose path mixes
    left and right siblings."""
    for p in world.proofs[BIG].values():
        sides = path_sides(p.index, BIG)
        if 0 < p.index < BIG - 1 and "L" in sides and "R" in sides:
            return p
    raise AssertionError("no inner item among the sampled proofs")


def edge_proofs(world: World) -> list[InclusionProof]:
    """The first, a middle and the last item's proofs of the runs with more than one item."""
    out = []
    for n in RUN_SIZES[1:]:
        ps = list(world.proofs[n].values())
        out += [ps[0], ps[len(ps) // 2], ps[-1]]
    return out


def assert_refused_by_root(world: World, q: InclusionProof) -> None:
    """q has a path of the right length for its index, so only the root comparison can refuse it."""
    items_root = q.commit.body.items_root
    with pytest.raises(ProofError, match="not to the sealed items root") as ei:
        verify_proof(q, world.trusted)
    assert ei.value.expected == items_root and ei.value.got not in (None, items_root)


def test_every_single_hash_flip_is_refused(world: World) -> None:
    flips = 0
    for p in edge_proofs(world):
        for j in range(len(p.path)):
            for b in range(32):
                for mask in (0x01, 0x80):
                    path = p.path[:j] + (flip(p.path[j], b, mask),) + p.path[j + 1:]
                    q = replace(p, path=path)
                    assert implied_root(q) not in (None, p.commit.body.items_root), (p.item.name, j, b, mask)
                    flips += 1
            assert_refused_by_root(world, replace(p, path=p.path[:j] + (flip(p.path[j], 31),) + p.path[j + 1:]))
    assert flips == 64 * sum(p.hashes for p in edge_proofs(world)) > 5000


def path_edits(p: InclusionProof, extra: bytes) -> Iterator[tuple[str, tuple[bytes, ...]]]:
    path = p.path
    for j in range(len(path)):
        yield f"hash {j} dropped", path[:j] + path[j + 1:]
        yield f"hash {j} duplicated", path[:j + 1] + path[j:]
    for j in range(len(path) + 1):
        yield f"{extra.hex()[:8]} inserted at {j}", path[:j] + (extra,) + path[j:]
    for j in range(len(path) - 1):
        yield f"hashes {j}, {j + 1} swapped", path[:j] + (path[j + 1], path[j]) + path[j + 2:]
    yield "reversed", path[::-1]
    yield "rotated", path[1:] + path[:1]
    yield "emptied", ()
    yield "the leaf's own hash appended", (*path, leaf_hash(p.item))
    yield "the items root appended", (*path, p.commit.body.items_root)
    yield f"{MAX_PATH} hashes", (extra,) * MAX_PATH


def test_dropped_added_and_reordered_hashes_are_refused(world: World) -> None:
    cases = 0
    for p in edge_proofs(world):
        for label, path in path_edits(p, bytes(32)):
            if path == p.path:  # e.g. two equal neighbours swapped: not a mutation
                continue
            exc = must_refuse(replace(p, path=path), world.trusted)
            assert isinstance(exc, ProofError), (p.item.name, label, exc)
            if len(path) == len(p.path):
                assert "not to the sealed items root" in str(exc), (label, exc)
            else:
                assert f"wrong proof size {len(path)}, want {len(p.path)}" in str(exc), (label, exc)
            cases += 1
    assert cases > 500


def test_index_off_by_one_out_of_range_or_negative_is_refused(world: World) -> None:
    for p in edge_proofs(world):
        n = p.commit.body.count
        for i in {p.index - 1, p.index + 1} - {-1, n}:
            exc = must_refuse(replace(p, index=i), world.trusted)
            assert isinstance(exc, ProofError), exc
        for i in (n, n + 1, 2 * n, -1, -n, 2**63 - 1, 2**63, 2**64, -(2**64)):
            with pytest.raises(ProofError, match=f"index {i} out of range for tree size {n}"):
                verify_proof(replace(p, index=i), world.trusted)


@pytest.mark.parametrize("n", RUN_SIZES[1:])
def test_another_index_with_the_same_path_is_refused(world: World, n: int) -> None:
    """What replaced the old, malleable per-node steps (whose `size` above level 0 could change without the proof
    failing): the index is read against the signed count, so for each proof (every item up to n = 65, every 3rd of
    run-300, every 10th proved of run-3000) every other index in [0, count) with the same path is refused -- by the
    length check where the RFC 9162 path length differs, by the root where it is the same (the premise: such
    indices exist, so the root comparison is what refuses them)."""
    r = world.runs[n]
    items_root = r.commit.body.items_root
    proofs = list(world.proofs[n].values())[::1 if n < 300 else 3 if n < BIG else 10]
    by_root = 0
    for p in proofs:
        for i in range(n):
            if i == p.index:
                continue
            q = replace(p, index=i)
            got = implied_root(q)
            if len(path_sides(i, n)) == p.hashes:
                assert got is not None and got != items_root, (p.index, i)
                by_root += 1
            else:
                assert got is None, (p.index, i)
        for i in (p.index - 1, p.index + 1):
            if 0 <= i < n:
                must_refuse(replace(p, index=i), world.trusted)
    assert by_root > 0


@pytest.mark.parametrize("n", RUN_SIZES)
def test_no_other_path_length_verifies(world: World, n: int) -> None:
    """Non-malleability, the length: for a proof's index the verifier takes a path of exactly the RFC 9162 length
    for (index, count) and no other, whatever its hashes (0 to MAX_PATH + 1 of them tried); for every other index, a
    path of that index's length made of the proof's own hashes is refused too (the same proofs as the test above)."""
    r = world.runs[n]
    items_root = r.commit.body.items_root
    proofs = list(world.proofs[n].values())[::1 if n < 300 else 3 if n < BIG else 10]
    pool = [h for p in proofs[:3] for h in p.path] or [bytes(32)]
    for p in proofs:
        for length in range(MAX_PATH + 2):
            if length == p.hashes:
                continue
            q = replace(p, path=tuple(itertools.islice(itertools.cycle(p.path or pool), length)))
            with pytest.raises(ProofError, match=f"wrong proof size {length}, want {p.hashes}"):
                root_from_proof(q)
        for i in range(n):
            want = len(path_sides(i, n))
            if i == p.index or want == p.hashes:
                continue  # the same path: test_another_index_with_the_same_path_is_refused
            path = tuple(itertools.islice(itertools.cycle(p.path or pool), want))
            assert implied_root(replace(p, index=i, path=path)) not in (None, items_root), (p.index, i)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_exhaustive_forgery_over_the_trees_own_hashes(world: World, n: int) -> None:
    """Non-malleability, exhaustively for the small runs: over every index in [0, n] and every path of the index's
    RFC 9162 length drawn from the tree's own hashes (every leaf and interior node, the items root, a zero hash),
    the only (index, path) that leads to the items root is the item's own."""
    r = world.runs[n]
    items_root = r.commit.body.items_root
    candidates = sorted(r.tree.nodes() | {items_root, bytes(32)})
    tried = 0
    for m, name in enumerate(r.names):
        p = world.proofs[n][name]
        accepted = []
        for i in range(n + 1):
            length = len(path_sides(i, n)) if i < n else 0
            for path in itertools.product(candidates, repeat=length):
                q = replace(p, index=i, path=path)
                tried += 1
                if implied_root(q) == items_root:
                    accepted.append((i, path))
        assert accepted == [(m, p.path)], (name, accepted)
        verify_proof(p, world.trusted)
    assert tried >= n * (n + 1)


_EDIT = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 63), st.integers(0, 31), st.integers(0, 7)),
    st.tuples(st.just("drop"), st.integers(0, 63)),
    st.tuples(st.just("insert"), st.integers(0, 63), st.binary(min_size=32, max_size=32)),
    st.tuples(st.just("insert-own"), st.integers(0, 63), st.integers(0, 2**16)),
    st.tuples(st.just("set"), st.integers(0, 63), st.binary(min_size=0, max_size=40)),
    st.tuples(st.just("swap"), st.integers(0, 63), st.integers(0, 63)),
)


def edit_path(path: tuple[bytes, ...], edits: list[tuple[object, ...]], own: list[bytes]) -> tuple[bytes, ...]:
    out = list(path)
    for e in edits:
        op, pos = e[0], int(e[1])  # type: ignore[call-overload]
        if op == "flip" and out:
            j = pos % len(out)
            out[j] = flip(out[j], int(e[2]) % len(out[j]), 1 << int(e[3])) if out[j] else b"\x01"  # type: ignore
        elif op == "drop" and out:
            del out[pos % len(out)]
        elif op == "insert":
            out.insert(pos % (len(out) + 1), e[2])  # type: ignore[arg-type]
        elif op == "insert-own":
            out.insert(pos % (len(out) + 1), own[int(e[2]) % len(own)])  # type: ignore[call-overload]
        elif op == "set" and out:
            out[pos % len(out)] = e[2]  # type: ignore[assignment]
        elif op == "swap" and out:
            j, k = pos % len(out), int(e[2]) % len(out)  # type: ignore[call-overload]
            out[j], out[k] = out[k], out[j]
    return tuple(out)


@pytest.fixture(scope="module")
def own_hashes(world: World, mid_proof: InclusionProof) -> list[bytes]:
    """Hashes a forger can collect: every node of the proof's own items tree."""
    return sorted(world.runs[mid_proof.commit.body.count].tree.nodes())


@settings(max_examples=250, deadline=None)
@given(index=st.one_of(st.none(), st.integers(-5, 5), st.integers(-(2**70), 2**70)),
       edits=st.lists(_EDIT, max_size=4))
def test_any_mutation_of_index_or_path_is_refused(world: World, mid_proof: InclusionProof, own_hashes: list[bytes],
                                                  index: int | None, edits: list[tuple[object, ...]]) -> None:
    """index: None keeps it, a small int shifts it, a large one replaces it; the path edited with flips, drops,
    insertions (random hashes or the tree's own), hashes of any length, swaps. Anything but the original is refused
    with one of the project's errors -- directly and through the bytes -- never anything else."""
    p = mid_proof
    i = p.index if index is None else p.index + index if -5 <= index <= 5 else index
    path = edit_path(p.path, edits, own_hashes)
    assume((i, path) != (p.index, p.path))
    q = replace(p, index=i, path=path)
    exc = must_refuse(q, world.trusted)
    assert isinstance(exc, ProofError), exc
    if 0 <= i < 2**64 and all(len(h) == 32 for h in path) and len(path) <= MAX_PATH:
        with pytest.raises(LedgerError):
            verify_proof(InclusionProof.from_bytes(q.encode()), world.trusted)


# --- semantic mutations --------------------------------------------------------------------------------------------

def semantic_mutations(world: World, p: InclusionProof) -> list[tuple[str, Callable[[], InclusionProof]]]:
    r = world.runs[BIG]
    n = r.n
    other_name = next(name for name in r.names if name != p.item.name)
    other_item_proof = next(q for q in world.proofs[BIG].values() if q.item != p.item)
    other_run = world.runs[300]
    other_run_proof = next(iter(world.proofs[300].values()))
    body = p.commit.body
    counts = [c for c in (p.index, p.index + 1, n - 1, n + 1, 2 * n, 4096)
              if c <= p.index or path_sides(p.index, c) != path_sides(p.index, n)]
    assert p.index in counts and len(counts) >= 3
    out: list[tuple[str, Callable[[], InclusionProof]]] = [
        ("another item's entry", lambda: replace(p, item=r.entries[other_name])),
        ("item size + 1", lambda: replace(p, item=replace(p.item, size=p.item.size + 1))),
        ("item kind changed", lambda: replace(p, item=replace(p.item, kind="log"))),
        ("item digest changed", lambda: replace(p, item=replace(p.item, blake3=flip(p.item.blake3)))),
        ("item renamed", lambda: replace(p, item=replace(p.item, name=p.item.name + "x"))),
        ("run field changed", lambda: replace(p, run="run-300")),
        ("commit of another run", lambda: replace(p, commit=other_run.commit, seq=other_run.seq)),
        ("commit and run field of another run", lambda: replace(p, run=other_run.run, commit=other_run.commit)),
        ("another run's index and path", lambda: replace(p, index=other_run_proof.index, path=other_run_proof.path)),
        ("another item's path", lambda: replace(p, path=other_item_proof.path)),
        ("another item's index and path", lambda: replace(p, index=other_item_proof.index,
                                                          path=other_item_proof.path)),
        ("another item's entry and index", lambda: replace(p, item=other_item_proof.item,
                                                           index=other_item_proof.index)),
        ("signature tampered", lambda: replace(p, commit=SignedCommit(p.commit.body_bytes, flip(p.commit.sig),
                                                                       body))),
        ("commit signed by an untrusted key", lambda: replace(p, commit=SignedCommit.create(
            replace(body, key=world.other.public.key_id),
            world.other.sign(replace(body, key=world.other.public.key_id).encode())))),
        ("commit naming the trusted key, signed by another", lambda: replace(p, commit=SignedCommit(
            p.commit.body_bytes, world.other.sign(p.commit.body_bytes), body))),
        ("commit body changed (items_root) after signing", lambda: replace(p, commit=SignedCommit(
            replace(body, items_root=flip(body.items_root)).encode(), p.commit.sig,
            replace(body, items_root=flip(body.items_root))))),
        ("commit body changed (count) after signing", lambda: replace(p, commit=SignedCommit(
            replace(body, count=n + 1).encode(), p.commit.sig, replace(body, count=n + 1)))),
        ("commit re-signed with another items_root", lambda: replace(p, commit=resign(
            world, replace(body, items_root=flip(body.items_root))))),
        ("commit re-signed with the prolly root as items_root", lambda: replace(p, commit=resign(
            world, replace(body, items_root=body.root)))),
        ("index - 1", lambda: replace(p, index=p.index - 1)),
        ("index + 1", lambda: replace(p, index=p.index + 1)),
        ("index 0", lambda: replace(p, index=0)),
        ("index n - 1", lambda: replace(p, index=n - 1)),
        ("index n", lambda: replace(p, index=n)),
        ("index -1", lambda: replace(p, index=-1)),
        ("index 2**63", lambda: replace(p, index=2**63)),
        ("path emptied", lambda: replace(p, path=())),
        ("path reversed", lambda: replace(p, path=p.path[::-1])),
        ("path of MAX_PATH hashes", lambda: replace(p, path=(p.path * MAX_PATH)[:MAX_PATH])),
    ]
    for c in counts:
        out.append((f"commit re-signed with count {c}", lambda c=c: replace(p, commit=resign(
            world, replace(body, count=c)))))
    for j in range(len(p.path)):
        out.append((f"path hash {j} flipped", lambda j=j: replace(
            p, path=p.path[:j] + (flip(p.path[j], 31),) + p.path[j + 1:])))
        out.append((f"path hash {j} dropped", lambda j=j: replace(p, path=p.path[:j] + p.path[j + 1:])))
        out.append((f"path hash {j} zeroed", lambda j=j: replace(p, path=p.path[:j] + (bytes(32),) + p.path[j + 1:])))
        out.append((f"path hash {j} 31 bytes", lambda j=j: replace(p, path=p.path[:j] + (p.path[j][:31],)
                                                                    + p.path[j + 1:])))
    out.append(("path hash added", lambda: replace(p, path=(*p.path, bytes(32)))))
    return out


def test_semantic_mutations_fail(world: World, inner: InclusionProof) -> None:
    verify_proof(inner, world.trusted)
    cases = semantic_mutations(world, inner)
    assert len(cases) > 60
    for label, make in cases:
        q = make()
        assert q != inner or q.commit.body != inner.commit.body, label
        exc = must_refuse(q, world.trusted)
        assert isinstance(exc, CheckFailed), (label, exc)
        # and through the bytes: the decoder refuses it, or the verifier does
        try:
            data = q.encode()
        except DecodeError:
            continue  # not encodable (outside the canonical subset): cannot reach a verifier as bytes
        with pytest.raises(LedgerError):
            verify_proof(InclusionProof.from_bytes(data), world.trusted)


def test_the_proof_rests_on_the_signed_count_and_items_root(world: World, inner: InclusionProof) -> None:
    """What a verified proof leans on: the signature over the commit's (count, items_root) -- as an RFC 9162 client
    leans on a signed tree head -- and nothing else of the body. So a commit the *trusted key* signs with another
    prolly `root`, or with a count whose audit path for the index has the same shape, is accepted with the same
    index and path; ``ledger verify``, which rebuilds both trees from the items, is what ties them together.
    Without the key, neither can be made (test_semantic_mutations_fail)."""
    body = inner.commit.body
    same_shape = next(c for c in range(BIG + 1, 2 * BIG) if path_sides(inner.index, c) == path_sides(inner.index, BIG))
    for changed in (replace(body, root=flip(body.root)), replace(body, count=same_shape)):
        q = replace(inner, commit=resign(world, changed))
        assert q.commit.digest != inner.commit.digest
        assert verify_proof(q, world.trusted).commit == q.commit.digest


def test_refusals_say_why(world: World, inner: InclusionProof) -> None:
    other = world.runs[300]
    name, n, body = re.escape(inner.item.name), BIG, inner.commit.body
    with pytest.raises(CheckFailed, match="the commit seals run 'run-300', the proof claims run 'run-3000'"):
        verify_proof(replace(inner, commit=other.commit), world.trusted)
    with pytest.raises(CheckFailed, match="not among the trusted keys"):
        verify_proof(inner, [world.other.public])
    with pytest.raises(CheckFailed, match="not among the trusted keys"):
        verify_proof(inner, [])
    with pytest.raises(CheckFailed, match="bad signature"):
        verify_proof(replace(inner, commit=SignedCommit(inner.commit.body_bytes, flip(inner.commit.sig),
                                                        inner.commit.body)), world.trusted)
    with pytest.raises(ProofError, match=f"item {name}: the path leads to b3:[0-9a-f]{{16}}, not to the sealed "
                                         f"items root b3:{body.items_root.hex()[:16]}") as ei:
        verify_proof(replace(inner, item=replace(inner.item, size=inner.item.size + 1)), world.trusted)
    assert ei.value.expected == body.items_root and ei.value.got not in (None, body.items_root)
    with pytest.raises(ProofError, match=f"item {name}: index {n} out of range for tree size {n}"):
        verify_proof(replace(inner, index=n), world.trusted)
    with pytest.raises(ProofError, match=f"item {name}: wrong proof size {inner.hashes - 1}, want {inner.hashes}"):
        verify_proof(replace(inner, path=inner.path[1:]), world.trusted)
    with pytest.raises(ProofError, match=f"item {name}: proof hash has the wrong length"):
        verify_proof(replace(inner, path=(inner.path[0][:31], *inner.path[1:])), world.trusted)
    with pytest.raises(ProofError, match=f"index {inner.index} out of range for tree size {inner.index}"):
        verify_proof(replace(inner, commit=resign(world, replace(body, count=inner.index))), world.trusted)
    # the order of the checks (spec/proofs.md §4): run, key, signature, then the path, then the content
    bad_path = replace(inner, path=())
    with pytest.raises(CheckFailed, match="the commit seals run"):
        verify_proof(replace(bad_path, run="run-300"), world.trusted)
    with pytest.raises(CheckFailed, match="not among the trusted keys"):
        verify_proof(bad_path, [world.other.public])
    with pytest.raises(ProofError, match="wrong proof size"):
        verify_proof(bad_path, world.trusted, content=b"not the content")


def test_a_trusted_key_among_others(world: World, inner: InclusionProof) -> None:
    assert verify_proof(inner, [world.other.public, world.key.public]).key_id == world.key.public.key_id


def test_decoder_refuses_malformed_fields(world: World, inner: InclusionProof) -> None:
    from ledger import encoding

    good = encoding.decode(inner.encode())
    assert set(good) == {"commit", "format", "index", "item", "path", "run", "type"}

    def refused(**changes: object) -> None:
        v = {**good, **changes}
        with pytest.raises(DecodeError):
            InclusionProof.from_bytes(encoding.encode({k: x for k, x in v.items() if x is not None}))

    path = good["path"]
    refused(format="ledger/2")
    refused(type="consistency")
    refused(extra=1)
    refused(steps=[])
    refused(path=None)
    refused(index=None)
    refused(index=-1)
    refused(index=2**63)
    refused(index=True)
    refused(index="1")
    refused(path=bytes(32))
    refused(path=[bytes(31)])
    refused(path=[*path[:-1], bytes(33)])
    refused(path=[*path[:-1], "x" * 32])
    refused(path=[*path[:-1], None])
    refused(path=[bytes(32)] * (MAX_PATH + 1))
    refused(item={**good["item"], "name": "../x"})
    refused(item={**good["item"], "kind": "binary"})
    refused(item={**good["item"], "size": -1})
    refused(commit=good["commit"] + b"\x00")
    refused(commit=encoding.decode(good["commit"]))
    refused(run=b"run-3000")
    assert InclusionProof.from_bytes(encoding.encode(good)) == inner
    # decodable, and then refused by the verifier: the largest index, the longest path
    for changes in ({"index": 2**63 - 1}, {"path": [bytes(32)] * MAX_PATH}, {"path": []}):
        q = InclusionProof.from_bytes(encoding.encode({**good, **changes}))
        with pytest.raises(ProofError):
            verify_proof(q, world.trusted)


# --- content -------------------------------------------------------------------------------------------------------

def test_content_check(world: World) -> None:
    for n in (1, RECORD_RUN, BIG):
        r = world.runs[n]
        for name in (r.names[0], r.names[-1]):
            p = world.proofs[n][name]
            data = r.content[name]
            assert verify_proof(p, world.trusted, content=data).content_checked is True
            assert verify_proof(p, world.trusted, content_digest_size=(content_digest(data), len(data))
                                ).content_checked is True
            for wrong in (data[:-1] + bytes([data[-1] ^ 1]), data + b"\n", data[:-1], b"", r.content[r.names[0]]
                          if name != r.names[0] else data * 2):
                with pytest.raises(CheckFailed, match="content given does not match"):
                    verify_proof(p, world.trusted, content=wrong)
            with pytest.raises(CheckFailed, match="does not match"):
                verify_proof(p, world.trusted, content_digest_size=(content_digest(data), len(data) + 1))
            with pytest.raises(CheckFailed, match="does not match"):
                verify_proof(p, world.trusted, content_digest_size=(flip(content_digest(data)), len(data)))


# --- Ledger.prove errors -------------------------------------------------------------------------------------------

def test_prove_errors(world: World) -> None:
    from ledger.errors import Refused, UsageError

    lg = world.lg
    r = world.runs[300]
    for missing in ("no/such/item.txt", "\U0010ffff-after-every-name", "a-before-every-name",
                    r.names[5] + "-between", r.names[-1] + "x"):
        assert missing not in r.entries
        with pytest.raises(NotFound, match=f"item {missing}: no such item"):
            lg.prove("run-300", missing)
    assert world.runs[2].names[-1] not in world.runs[1].entries
    with pytest.raises(NotFound, match="no such item"):
        lg.prove("run-1", world.runs[2].names[-1])  # an item of another run
    with pytest.raises(NotFound, match="no such run"):
        lg.prove("run-404", "a")
    with pytest.raises(Refused, match="invalid item name"):
        lg.prove("run-300", "../x")
    with pytest.raises(UsageError, match="invalid run id"):
        lg.prove("-x", "a")
    with pytest.raises(NotFound):
        Ledger.open(str(world.root / "nowhere")).prove("run-1", "a")


def test_prove_an_open_run(tmp_path: Path) -> None:
    lg = Ledger.open(str(tmp_path / "s"))
    lg.init()
    lg.record("open-run", "json", {"a": 1}, name="a.json")
    with pytest.raises(NotFound, match="not sealed"):
        lg.prove("open-run", "a.json")


# --- a store tampered with after sealing ---------------------------------------------------------------------------

@dataclass
class Tamperable:
    lg: Ledger
    store: Path
    key: SigningKey
    name: str
    proof: InclusionProof  # made before any tampering
    files: dict[str, str]  # role -> path relative to the store


@pytest.fixture(scope="module")
def tamperable(tmp_path_factory: pytest.TempPathFactory) -> Tamperable:
    """A sealed run of 150 items (two tree levels) in its own store; each test restores what it damages."""
    base = tmp_path_factory.mktemp("tamper")
    lg = Ledger.open(str(base / "store"))
    lg.init()
    key = generate_keyfile(base / "k")
    for i in range(150):
        write(base / "d" / f"part-{i:03d}.csv", f"id,v\n{i},{i * i}\n")
    lg.add("t", [str(base / "d")])
    sealed = lg.seal("t", key)
    store = base / "store"
    node_prefix = sealed.commit.body.root.hex()[:28]
    files = {"commit-slot": "chain/" + "0" * 20, "marker": "runs/t/sealed", "config": "config"}
    for f in sorted(store.glob("packs/*")):
        kind = "node" if f.name.startswith(node_prefix) else "content"
        files[f"{kind}-{f.suffix[1:]}"] = str(f.relative_to(store))
    assert set(files) == {"commit-slot", "marker", "config", "node-pack", "node-idx", "content-pack", "content-idx"}
    name = "part-077.csv"
    p = lg.prove("t", name)
    verify_proof(p, [key.public])
    return Tamperable(lg, store, key, name, p, files)


@contextmanager
def damaged(path: Path, data: bytes | None) -> Iterator[None]:
    """``path`` holds ``data`` (None: is deleted) inside the block, and its own bytes again after it."""
    orig = path.read_bytes()
    if data is None:
        path.unlink()
    else:
        path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(orig)


def prove_outcome(t: Tamperable) -> str:
    """'prove: <exit code>' when prove refuses, 'verify-proof: <exit code>' when the proof it makes is refused, 'same'
    when it makes the proof it made before the damage and that verifies; any other exception escapes, and a
    different proof that verifies fails the test."""
    try:
        p = t.lg.prove("t", t.name)
    except LedgerError as exc:
        return f"prove: {exc.exit_code}"
    try:
        verify_proof(p, [t.key.public])
    except LedgerError as exc:
        return f"verify-proof: {exc.exit_code}"
    assert p == t.proof and p.encode() == t.proof.encode(), f"damage gave another proof that verifies: {p}"
    return "same"


@pytest.mark.parametrize("role, allowed", [
    ("node-pack", {"prove: 1"}),  # the tree is read whole: a damaged byte in any node is found
    ("node-idx", {"prove: 1"}),
    ("commit-slot", {"prove: 1", "verify-proof: 1"}),  # prove does not check the signature; verify-proof does
    ("config", {"prove: 1"}),
    # the marker is a locator (ledger/objects.py Marker): its commit digest and run are not what prove reads
    ("marker", {"prove: 1", "same"}),
    ("content-pack", {"same"}),  # a proof is about the entry; `verify-proof --content` checks the bytes
    ("content-idx", {"prove: 1"}),  # the marker names the pack: its index is loaded and checked
])
def test_store_damaged_after_sealing(tamperable: Tamperable, role: str, allowed: set[str]) -> None:
    t = tamperable
    f = t.store / t.files[role]
    data = f.read_bytes()
    positions = sorted(set(range(0, len(data), max(1, len(data) // 60))) | {len(data) - 1})
    seen: dict[str, int] = {}
    for i in positions:
        for mask in (0x01, 0x80):
            with damaged(f, flip(data, i, mask)):
                out = prove_outcome(t)
            assert out in allowed, (role, i, mask, out)
            seen[out] = seen.get(out, 0) + 1
    with damaged(f, data[:-1]):
        out = prove_outcome(t)
    assert out in allowed, (role, "truncated", out)
    assert prove_outcome(t) == "same"  # restored
    assert set(seen) == allowed, seen  # every outcome allowed is one some damage gives
    verify_proof(t.proof, [t.key.public])  # a proof made before the damage never needed the store


def test_store_missing_objects_after_sealing(tamperable: Tamperable) -> None:
    t = tamperable
    for role in ("commit-slot", "node-idx", "content-idx"):
        with damaged(t.store / t.files[role], None):
            assert prove_outcome(t) == "prove: 1", role
    for role in ("marker", "content-pack"):  # the marker is found again in the chain; content is not read
        with damaged(t.store / t.files[role], None):
            assert prove_outcome(t) == "same", role
    with damaged(t.store / t.files["config"], None):
        assert prove_outcome(t) == "prove: 3"  # no ledger store here


def test_missing_node_pack_is_a_damaged_store(tamperable: Tamperable) -> None:
    t = tamperable
    with damaged(t.store / t.files["node-pack"], None):
        assert prove_outcome(t) == "prove: 1"


def test_store_tampered_into_another_commit(world: World, tmp_path: Path) -> None:
    """prove checks what it builds against the commit: a commit whose count or items root is not the stored tree's
    (here re-signed by the trusted key, as a buggy sealer could write it) is refused, not proven."""
    from ledger.proofs import prove
    from ledger.tree import walk_leaves

    r = world.runs[65]
    items = list(r.entries.values())
    root, nodes = tree_levels(items)
    get = nodes.__getitem__
    assert len(list(walk_leaves(get, root))) == 65
    body = r.commit.body
    name = r.names[10]
    assert prove(get, r.run, r.seq, r.commit, name) == world.proofs[65][name]
    with pytest.raises(CheckFailed, match="the tree holds 65 items, the commit says 66"):
        prove(get, r.run, r.seq, resign(world, replace(body, count=66)), name)
    with pytest.raises(CheckFailed, match=f"items root b3:{body.items_root.hex()[:16]} is not the sealed b3:"):
        prove(get, r.run, r.seq, resign(world, replace(body, items_root=flip(body.items_root))), name)
    with pytest.raises(NotFound, match="no such item"):
        prove(get, r.run, r.seq, r.commit, "zz/not-there")


# --- CLI -----------------------------------------------------------------------------------------------------------

@dataclass
class CliRun:
    cli: Cli
    run: str
    name: str
    content: Path
    other_pub: Path
    other_run: str


@pytest.fixture
def sealed_cli(tmp_path: Path) -> CliRun:
    """A store with a sealed run of 70 items, a sealed run of one and an open run, made through the API; the CLI is
    pointed at it."""
    c = Cli(tmp_path)
    lg = Ledger.open(str(c.store))
    lg.init()
    c.key.parent.mkdir()
    key = generate_keyfile(c.key)
    generate_keyfile(tmp_path / "keys" / "other.key")
    d = tmp_path / "data"
    for i in range(70):
        write(d / "sub dir" / f"é-{i:03d}.csv", f"id,v\n{i},{i * i}\n")
    lg.add("nightly-1", [str(d)])
    lg.seal("nightly-1", key)
    lg.add("nightly-2", [str(d / "sub dir" / "é-042.csv")])
    lg.seal("nightly-2", key)
    lg.add("open-1", [str(d / "sub dir" / "é-000.csv")])
    return CliRun(c, "nightly-1", "sub dir/é-042.csv", d / "sub dir" / "é-042.csv",
                  tmp_path / "keys" / "other.key.pub", "nightly-2")


def test_cli_prove_and_verify(sealed_cli: CliRun) -> None:
    c, run, name = sealed_cli.cli, sealed_cli.run, sealed_cli.name
    before = snapshot(c.store)
    r = c.ok("prove", run, name, "-o", c.tmp / "p.bin")
    assert r.raw == b""
    data = (c.tmp / "p.bin").read_bytes()
    p = InclusionProof.from_bytes(data)
    assert (p.run, p.item.name, p.index, p.hashes) == (run, name, 42, 7)
    assert r.err.splitlines() == [
        f"run {run}: item {name}: proof of {len(data)} bytes (item 43 of 70, 7 hashes), "
        f"commit b3:{p.commit.digest.hex()[:16]} (#0) -> {c.tmp / 'p.bin'}"], r
    r2 = c.ok("prove", run, name)
    assert r2.raw == data, "prove to stdout must write the bytes prove -o writes"
    assert len(r2.err.splitlines()) == 1 and "proof of" in r2.err and "->" not in r2.err
    assert snapshot(c.store) == before, "prove wrote to the store"

    h = c.ok("verify-proof", c.tmp / "p.bin", "--trust", c.pub)
    assert h.out.splitlines()[-1] == f"proof verified: item {name} of run {run}", h
    assert "[ok  ] signature" in h.out and "[ok  ] inclusion" in h.out and "not checked (no --content)" in h.out
    assert "(7 hashes)" in h.out and h.err == ""
    j = c.json("verify-proof", c.tmp / "p.bin", "--trust", c.pub)
    assert set(j) == {"run", "ok", "item", "commit", "seq", "key_id", "proof_hashes", "content_checked"}
    assert (j["run"], j["ok"], j["seq"], j["content_checked"], j["proof_hashes"]) == (run, True, 0, False, 7)
    assert j["item"] == {"name": name, "kind": "file", "size": sealed_cli.content.stat().st_size,
                         "blake3": content_digest(sealed_cli.content.read_bytes()).hex()}
    assert HEX64.fullmatch(j["commit"]) and HEX64.fullmatch(j["key_id"])
    assert j["commit"] == p.commit.digest.hex()
    show = c.json("show", run)
    assert (show["commit"], show["key_id"]) == (j["commit"], j["key_id"])
    jc = c.json("verify-proof", c.tmp / "p.bin", "--trust", sealed_cli.other_pub, "--trust", c.pub,
                "--content", sealed_cli.content)
    assert jc["content_checked"] is True
    hc = c.ok("verify-proof", c.tmp / "p.bin", "--trust", c.pub, "--content", sealed_cli.content)
    assert "[ok  ] content    the given file holds the item's bytes" in hc.out
    # from stdin
    assert c.json("verify-proof", "-", "--trust", c.pub, input=data) == j


def test_cli_verify_proof_offline(sealed_cli: CliRun) -> None:
    c = sealed_cli.cli
    c.ok("prove", sealed_cli.run, sealed_cli.name, "-o", c.tmp / "p.bin")
    shutil.rmtree(c.store)
    j = c.json("verify-proof", c.tmp / "p.bin", "--trust", c.pub, "--content", sealed_cli.content)
    assert j["ok"] is True and j["content_checked"] is True
    assert not c.store.exists()


def test_cli_verify_proof_failures(sealed_cli: CliRun) -> None:
    from ledger import encoding
    from ledger.cli import MAX_INPUT

    c = sealed_cli.cli
    proof = c.tmp / "p.bin"
    c.ok("prove", sealed_cli.run, sealed_cli.name, "-o", proof)
    data = proof.read_bytes()
    p = InclusionProof.from_bytes(data)
    # exit 1: the proof does not hold
    assert_error(c("verify-proof", proof, "--trust", sealed_cli.other_pub), 1, mentions="not among the trusted keys")
    assert_error(c("verify-proof", proof, "--trust", c.pub, "--content", c.tmp / "data" / "sub dir" / "é-041.csv"),
                 1, mentions="does not match")
    at = data.rfind(p.path[-1])
    assert at > 0
    write(c.tmp / "flipped.bin", flip(data, at + 5))  # inside the last path hash
    assert_error(c("verify-proof", c.tmp / "flipped.bin", "--trust", c.pub), 1, mentions="not to the sealed items root")
    write(c.tmp / "index.bin", replace(p, index=p.index + 1).encode())
    assert_error(c("verify-proof", c.tmp / "index.bin", "--trust", c.pub), 1, mentions="not to the sealed items root")
    write(c.tmp / "dropped.bin", replace(p, path=p.path[:-1]).encode())
    assert_error(c("verify-proof", c.tmp / "dropped.bin", "--trust", c.pub), 1, mentions="wrong proof size 6, want 7")
    # a proof for another run: the run field edited, or another run's commit under this item and path
    write(c.tmp / "run.bin", replace(p, run=sealed_cli.other_run).encode())
    assert_error(c("verify-proof", c.tmp / "run.bin", "--trust", c.pub), 1,
                 mentions=f"the commit seals run '{sealed_cli.run}', the proof claims run '{sealed_cli.other_run}'")
    c.ok("prove", sealed_cli.other_run, "é-042.csv", "-o", c.tmp / "other.bin")
    q = InclusionProof.from_bytes((c.tmp / "other.bin").read_bytes())
    assert q.commit.body.count == 1 and q.hashes == 0
    write(c.tmp / "mixed.bin", replace(p, run=q.run, commit=q.commit, seq=q.seq).encode())
    assert_error(c("verify-proof", c.tmp / "mixed.bin", "--trust", c.pub), 1, mentions="index 42 out of range")
    # bytes that are no proof at all (garbage, empty, truncated, oversized, a path too long to decode): exit 2
    write(c.tmp / "garbage.bin", bytes(range(256)) * 4)
    assert_error(c("verify-proof", c.tmp / "garbage.bin", "--trust", c.pub), 2, mentions="not a ledger/1 proof")
    write(c.tmp / "empty.bin", b"")
    assert_error(c("verify-proof", c.tmp / "empty.bin", "--trust", c.pub), 2, mentions="empty.bin")
    write(c.tmp / "short.bin", data[:-1])
    assert_error(c("verify-proof", c.tmp / "short.bin", "--trust", c.pub), 2, mentions="short.bin")
    write(c.tmp / "huge.bin", data + bytes(MAX_INPUT + 1 - len(data)))
    assert_error(c("verify-proof", c.tmp / "huge.bin", "--trust", c.pub), 2, mentions="larger than any proof")
    long_path = {**encoding.decode(data), "path": [bytes(32)] * (MAX_PATH + 1)}
    write(c.tmp / "long.bin", encoding.encode(long_path))
    assert_error(c("verify-proof", c.tmp / "long.bin", "--trust", c.pub), 2, mentions="at most 64 32-byte hashes")
    # exit 3: a file that is not there; exit 2: usage
    assert_error(c("verify-proof", c.tmp / "missing.bin", "--trust", c.pub), 3, mentions="missing.bin")
    assert_error(c("verify-proof", proof, "--trust", c.pub, "--content", c.tmp / "missing.csv"), 3,
                 mentions="missing.csv")
    assert_error(c("verify-proof", proof, "--trust", c.tmp / "missing.pub"), 3)
    assert_error(c("verify-proof", proof), 2)  # --trust is required
    assert_error(c("verify-proof", proof, "--trust", c.key), 2, mentions="private key")
    assert_error(c("verify-proof", proof, "--trust", c.pub, "--index", "3"), 2)


def test_cli_prove_failures(sealed_cli: CliRun) -> None:
    c, run = sealed_cli.cli, sealed_cli.run
    before = snapshot(c.store)
    assert_error(c("prove", run, "sub dir/nope.csv"), 3, mentions="no such item")
    assert_error(c("prove", "open-1", "é-000.csv"), 3, mentions="not sealed")
    assert_error(c("prove", "nightly-404", "a"), 3, mentions="no such run")
    assert_error(c("prove", run, "../etc/passwd"), 6, mentions="invalid item name")
    assert_error(c("prove", run, "/abs"), 6)
    assert_error(c("prove", "bad run", "a"), 2, mentions="invalid run id")
    assert_error(c("prove", run), 2)
    assert_error(c("prove", run, sealed_cli.name, "-o", c.tmp / "no" / "dir" / "p.bin"), 5)
    assert_error(c("prove", run, sealed_cli.name, store=c.tmp / "nowhere"), 3)
    assert snapshot(c.store) == before
    assert not (c.tmp / "no").exists()


def test_cli_prove_on_a_tampered_store(sealed_cli: CliRun) -> None:
    """A tree node damaged after sealing: `ledger prove` exits 1 with one error line and writes nothing. A commit
    slot whose signature was damaged: prove (which holds no keys) writes a proof that `verify-proof` refuses."""
    c, run = sealed_cli.cli, sealed_cli.run
    commit = c.json("show", run)
    node_pack = next(f for f in c.store.glob("packs/*.pack") if f.name.startswith(commit["root"][:28]))
    slot = c.store / "chain" / ("0" * 20)
    with damaged(node_pack, flip(node_pack.read_bytes(), len(node_pack.read_bytes()) // 2)):
        assert_error(c("prove", run, sealed_cli.name, "-o", c.tmp / "p.bin"), 1, mentions="tree node")
        assert not (c.tmp / "p.bin").exists()
    sig_at = len(slot.read_bytes()) - 1  # the slot ends with the signature (keys in order: body, sig)
    with damaged(slot, flip(slot.read_bytes(), sig_at)):
        c.ok("prove", run, sealed_cli.name, "-o", c.tmp / "p.bin")
        assert_error(c("verify-proof", c.tmp / "p.bin", "--trust", c.pub), 1, mentions="bad signature")
    c.ok("prove", run, sealed_cli.name, "-o", c.tmp / "p.bin")
    c.ok("verify-proof", c.tmp / "p.bin", "--trust", c.pub)


def test_cli_proof_json_is_one_document(sealed_cli: CliRun) -> None:
    c = sealed_cli.cli
    c.ok("prove", sealed_cli.run, sealed_cli.name, "-o", c.tmp / "p.bin")
    r = c.ok("verify-proof", c.tmp / "p.bin", "--trust", c.pub, "--json")
    assert r.err == "" and len(r.out.splitlines()) == 1
    assert json.loads(r.out)["ok"] is True


def test_a_million_item_proof_is_at_most_20_hashes(world: World) -> None:
    """Issue 5's figure, checked for real: a run of 1,000,000 items (entries only; a commit naming their items root,
    signed by the trusted key), proofs of its first, last and some middle items -- each verifies, has at most
    ceil(log2 1,000,000) = 20 hashes, and the deepest has exactly 20. The path lengths of every index are given by
    the RFC 9162 construction (path_sides), whose maximum is 20."""
    from ledger.merkle import inclusion_proof
    from ledger.tree import TREE_HASHER, _entries_root  # root_from_leaf_hashes, inlined (tree.py checks they agree)

    n = 1_000_000
    assert ceil_log2(n) == 20
    items = [ItemEntry(f"part-{i:07d}/rows.csv", "file", i, content_digest(i.to_bytes(4, "big"))) for i in range(n)]
    leaves = [TREE_HASHER.leaf(e.encode()) for e in items]
    items_root = _entries_root(leaves)
    template = world.runs[300].commit
    key = world.key
    body = replace(template.body, items_root=items_root, count=n)
    body_bytes = body.encode()
    commit = SignedCommit(body_bytes, key.sign(body_bytes), body)
    lengths = []
    for i in (0, 524_287, n - 1):
        p = InclusionProof(body.run, items[i], i, tuple(inclusion_proof(TREE_HASHER, leaves, i, _entries_root)),
                           body.seq, commit)
        res = verify_proof(InclusionProof.from_bytes(p.encode()), world.trusted)
        assert res.hashes == len(path_sides(i, n)) <= 20
        lengths.append(res.hashes)
    assert max(lengths) == 20
