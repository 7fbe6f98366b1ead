"""``ledger diff``: the structural diff of two evidence trees (ledger/diff.py), the API and the command line.

The algorithm is checked against a brute-force oracle (a set difference over the two item maps) on generated item
sets -- small ones from hypothesis, over a small name alphabet so names collide, and explicit large ones (thousands to
tens of thousands of items, trees of 2 to 4 levels). Its cost is checked against a bound derived from the algorithm
(spec/diff.md section 5): a node is read only if a change falls in its span or in its left neighbour's (for the
first node of a level: or in its right neighbour's), so at most 2k + 1 nodes per level and side are read for k
changes -- and not one node when the roots are equal. Corrupt nodes fail with
the project's error, never another exception and never a wrong answer. The command line is run as a real subprocess
on a local store (and once on S3) for the human table, ``--json``, ``--stat``, ``--exit-code`` and the error exits.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import blake3
import msgpack
import pytest
from conftest import S3Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import Cli, Result, assert_error, run_cli, snapshot, write

from ledger import Ledger
from ledger.diff import Change, DiffCounter, diff_trees, record_changes
from ledger.digests import Digest
from ledger.errors import LedgerError, NotFound
from ledger.keys import SigningKey
from ledger.merkle import root_from_leaf_hashes
from ledger.objects import ChildEntry, ItemEntry, node_id
from ledger.tree import TREE_HASHER, TreeBuilder, decode_node, encode_node, rank

KINDS = ("file", "log", "json")


# --- in-memory trees and the oracle -----------------------------------------------------------------------------------

@dataclass
class Tree:
    """A tree built by TreeBuilder into a dict, with each level's nodes in order (for the cost lemma)."""

    root: Digest
    nodes: dict[Digest, bytes]
    levels: dict[int, list[tuple[Digest, bytes]]]  # level -> [(node id, UTF-8 name of its last item)], left to right
    items: dict[str, ItemEntry]

    @property
    def depth(self) -> int:
        return len(self.levels)


def entry(name: str, version: int = 0, kind: str = "file") -> ItemEntry:
    d = blake3.blake3(f"{name}\x00{version}".encode()).digest()
    return ItemEntry(name, kind, len(name) + version, Digest(d))


def build(items: Iterable[ItemEntry]) -> Tree:
    nodes: dict[Digest, bytes] = {}
    levels: dict[int, list[tuple[Digest, bytes]]] = {}

    def sink(nid: Digest, data: bytes) -> None:
        nodes[nid] = data
        node = msgpack.unpackb(data)
        level, raw = node["level"], node["entries"]
        last = raw[-1]["name" if level == 0 else "last"] if raw else ""
        levels.setdefault(level, []).append((nid, last.encode()))

    by_name = {e.name: e for e in items}
    b = TreeBuilder(sink)
    for e in sorted(by_name.values(), key=lambda e: e.name.encode()):
        b.add(e)
    root = b.finish()
    assert root in nodes
    return Tree(root, nodes, levels, by_name)


Expected = list[tuple[str, ItemEntry | None, ItemEntry | None]]


def oracle(a: dict[str, ItemEntry], b: dict[str, ItemEntry]) -> Expected:
    """Brute force: every name on either side whose entries differ (absent = None), in UTF-8 byte order."""
    names = sorted(set(a) | set(b), key=lambda n: n.encode("utf-8"))
    return [(n, a.get(n), b.get(n)) for n in names if a.get(n) != b.get(n)]


@dataclass
class Outcome:
    changes: list[Change]
    counter: DiffCounter
    reads_a: list[Digest] = field(default_factory=list)
    reads_b: list[Digest] = field(default_factory=list)


def diff(ta: Tree, tb: Tree) -> Outcome:
    out = Outcome([], DiffCounter())

    def get_a(nid: Digest) -> bytes:
        out.reads_a.append(nid)
        return ta.nodes[nid]

    def get_b(nid: Digest) -> bytes:
        out.reads_b.append(nid)
        return tb.nodes[nid]

    out.changes = list(diff_trees(get_a, ta.root, get_b, tb.root, out.counter, len(ta.items)))
    return out


def check_exact(ta: Tree, tb: Tree) -> Outcome:
    """The diff equals the oracle exactly, and the counter agrees with it and with the getters' calls."""
    out = diff(ta, tb)
    want = oracle(ta.items, tb.items)
    assert [(c.name, c.a, c.b) for c in out.changes] == want
    assert all(c.fields == () for c in out.changes)
    assert [c.status for c in out.changes] == [
        "added" if a is None else "removed" if b is None else "changed" for _, a, b in want]
    c = out.counter
    assert c.added == sum(1 for _, a, _ in want if a is None)
    assert c.removed == sum(1 for _, _, b in want if b is None)
    assert c.changed == sum(1 for _, a, b in want if a is not None and b is not None)
    assert c.differ == bool(want)
    assert c.nodes_read == len(out.reads_a) + len(out.reads_b)
    assert len(set(out.reads_a)) == len(out.reads_a) and len(set(out.reads_b)) == len(out.reads_b), \
        "a node was read twice"
    if ta.root == tb.root:
        assert (want, c.nodes_read, c.subtrees_skipped) == ([], 0, 1)
    else:
        unchanged = sum(1 for n, e in ta.items.items() if tb.items.get(n) == e)
        assert c.items_skipped == unchanged
        assert ta.root in out.reads_a and tb.root in out.reads_b
    return out


def check_reads_near_changes(t: Tree, reads: list[Digest], changed: list[bytes]) -> None:
    """The cost lemma (spec/diff.md section 5): every node read has a changed name in its own span or in its left
    neighbour's at the same level -- or, for the first node of a level, in its right neighbour's. A node's span runs
    from the last name of the node before it (exclusive) to its own last name (inclusive); the first node's starts
    at the bottom, the last node's runs to the top."""
    window: dict[Digest, tuple[bytes | None, bytes | None]] = {}
    for lst in t.levels.values():
        for i, (nid, _) in enumerate(lst):
            j = max(i, 1)  # the first node's window reaches to the end of its right neighbour's span
            window[nid] = (lst[i - 2][1] if i >= 2 else None, None if j >= len(lst) - 1 else lst[j][1])
    for nid in reads:
        lo, hi = window[nid]
        j = bisect_right(changed, lo) if lo is not None else 0
        assert j < len(changed) and (hi is None or changed[j] <= hi), \
            f"node b3:{nid.hex()[:16]} was read, but no change falls in its span or its neighbour's"


def bound(k: int, depth: int) -> int:
    """The lemma's consequence: per level and side, each change lies in the span of one node and in the
    left-neighbour span of one more, and at most one more node (the first of the level) is charged to the
    right-neighbour rule: at most 2k + 1 nodes per level and side."""
    return 2 * depth * (2 * k + 1)


# --- the algorithm against the oracle: hypothesis ---------------------------------------------------------------------

# Segments chosen so that names collide often, share prefixes ("a" < "a b" < "a/..."), and sort by UTF-8 bytes in
# an order that differs from UTF-16's ("\uff5e" before "\U0001f600" in UTF-8, after it in UTF-16).
SEGMENTS = ["a", "a b", "b", "é", "z", "\uff5e", "\U0001f600"]
names = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map("/".join)
values = st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, 2))


def item_map(d: dict[str, tuple[str, int, int]]) -> dict[str, ItemEntry]:
    return {n: ItemEntry(n, k, size, Digest(bytes([v]) * 32)) for n, (k, size, v) in d.items()}


@settings(max_examples=200, deadline=None)
@given(a=st.dictionaries(names, values, max_size=80), b=st.dictionaries(names, values, max_size=80))
def test_diff_equals_the_oracle_on_independent_item_sets(a: dict[str, Any], b: dict[str, Any]) -> None:
    check_exact(build(item_map(a).values()), build(item_map(b).values()))


@st.composite
def related(draw: st.DrawFn) -> tuple[dict[str, ItemEntry], dict[str, ItemEntry]]:
    """A run of up to ~900 items (1 to 3 levels) and a second one that removes, adds and changes some of them."""
    n = draw(st.integers(0, 900))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    a = {e.name: e for e in (entry(f"{rng.choice('abc')}/{i:04d}") for i in rng.sample(range(2000), n))}
    b = dict(a)
    for _ in range(draw(st.integers(0, 12))):
        op = draw(st.sampled_from(["change", "remove", "add", "kind"]))
        i = draw(st.integers(0, 1999))
        pool = sorted(b)
        if op == "add":
            e = entry(f"{'abc'[i % 3]}/{i:04d}", 7)
            b[e.name] = e
        elif pool:
            name = pool[i % len(pool)]
            if op == "remove":
                del b[name]
            elif op == "change":
                b[name] = entry(name, 1)
            else:
                b[name] = ItemEntry(name, "log", b[name].size, b[name].blake3)
    return a, b


@settings(max_examples=60, deadline=None)
@given(ab=related())
def test_diff_equals_the_oracle_on_related_runs_and_reads_only_near_changes(
        ab: tuple[dict[str, ItemEntry], dict[str, ItemEntry]]) -> None:
    a, b = ab
    ta, tb = build(a.values()), build(b.values())
    out = check_exact(ta, tb)
    changed = [n.encode() for n, _, _ in oracle(a, b)]
    check_reads_near_changes(ta, out.reads_a, changed)
    check_reads_near_changes(tb, out.reads_b, changed)
    # and the same diff read backwards is the mirror image
    back = check_exact(tb, ta)
    assert [(c.name, c.a, c.b) for c in back.changes] == [(c.name, c.b, c.a) for c in out.changes]
    assert back.counter.nodes_read == out.counter.nodes_read


def test_diff_of_equal_item_sets_reads_nothing() -> None:
    items = [entry(f"x/{i:05d}") for i in range(3000)]
    ta, tb = build(items), build([entry(e.name) for e in reversed(items)])  # equal entries, built separately
    assert ta.root == tb.root and ta.depth >= 2
    out = check_exact(ta, tb)
    assert out.reads_a == out.reads_b == [] and out.changes == []
    assert check_exact(build([]), build([])).counter.nodes_read == 0


def test_items_skipped_counts_the_items_of_equal_roots_too() -> None:
    t = build(entry(f"x/{i:04d}") for i in range(500))
    out = diff(t, t)
    assert out.counter.subtrees_skipped == 1
    assert out.counter.items_skipped == 500


# --- the algorithm against the oracle: explicit large cases -------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def big_name(i: int) -> str:
    return f"{LETTERS[i % 26]}/{i:06d}"


@pytest.mark.parametrize("n, seed", [(2_000, 1), (6_000, 2), (20_000, 3)])
def test_diff_equals_the_oracle_on_large_overlapping_runs(n: int, seed: int) -> None:
    """Two runs drawn from the same name space, each holding ~80% of it, with ~2% of the shared items changed:
    thousands of changes of every kind, in trees of 2 to 3 levels, some with non-ASCII names."""
    rng = random.Random(seed)
    space = [big_name(i) if i % 11 else f"é/{i:06d}/\U0001f600" for i in range(n)]
    a = {name: entry(name) for name in space if rng.random() < 0.8}
    b = {name: entry(name, 1 if rng.random() < 0.02 else 0) for name in space if rng.random() < 0.8}
    ta, tb = build(a.values()), build(b.values())
    assert ta.depth >= 2 and tb.depth >= 2
    out = check_exact(ta, tb)
    assert out.counter.added > 100 and out.counter.removed > 100 and out.counter.changed > 10
    changed = [n.encode() for n, _, _ in oracle(a, b)]
    check_reads_near_changes(ta, out.reads_a, changed)
    check_reads_near_changes(tb, out.reads_b, changed)


def test_diff_against_an_empty_or_disjoint_run_lists_everything() -> None:
    a = {e.name: e for e in (entry(big_name(i)) for i in range(5000))}
    b = {e.name: e for e in (entry(big_name(i) + "-b") for i in range(5000))}
    ta, tb, te = build(a.values()), build(b.values()), build([])
    assert ta.depth >= 2
    assert check_exact(ta, te).counter.removed == 5000
    assert check_exact(te, ta).counter.added == 5000
    out = check_exact(ta, tb)
    assert (out.counter.added, out.counter.removed) == (5000, 5000)
    assert out.counter.nodes_read == len(ta.nodes) + len(tb.nodes), "every node of both trees holds changes"


def _node(level: int, entries: list[ItemEntry] | list[ChildEntry], store: dict[Digest, bytes]) -> ChildEntry:
    """Write a node by hand (any shape, not only the canonical one) and return the child entry pointing at it."""
    encoded = [e.encode() for e in entries]
    count = len(entries) if level == 0 else sum(e.count for e in entries if isinstance(e, ChildEntry))
    nid = node_id(level, count, root_from_leaf_hashes(TREE_HASHER, [TREE_HASHER.leaf(x) for x in encoded]))
    store[nid] = encode_node(level, encoded)
    last = entries[-1].name if isinstance(entries[-1], ItemEntry) else entries[-1].last
    return ChildEntry(last, count, nid)


@settings(max_examples=40, deadline=None)
@given(ab=related(), cuts=st.lists(st.integers(1, 200), min_size=1, max_size=30))
def test_diff_is_exact_for_trees_of_any_shape(ab: tuple[dict[str, ItemEntry], dict[str, ItemEntry]],
                                              cuts: list[int]) -> None:
    """Correctness does not depend on the boundaries being the canonical ones (only the cost does): a two-level
    tree with arbitrary leaf sizes diffs exactly against a canonical one."""
    a, b = ab
    items = sorted(a.values(), key=lambda e: e.name.encode())
    if not items:
        return
    nodes: dict[Digest, bytes] = {}
    leaves, i, k = [], 0, 0
    while i < len(items):
        step = cuts[k % len(cuts)]
        leaves.append(_node(0, items[i:i + step], nodes))
        i, k = i + step, k + 1
    root = _node(1, leaves, nodes).node
    odd = Tree(root, nodes, {}, a)
    tb = build(b.values())
    check_exact(odd, tb)
    check_exact(tb, odd)


# --- cost follows the changes ---------------------------------------------------------------------------------------

BASE_N = 40_000
DEEP = ("m/deep-88657", "m/deep-441940")  # rank 3: each one, inserted, splits the root of a 3-level tree


@dataclass
class Base:
    tree: Tree
    names: list[str]
    boundary: list[str]  # names of rank >= 1: each ends a level-0 node
    high: list[str]  # names of rank >= 2: each ends a level-1 node
    new_high: list[str]  # names not in the base, of rank >= 2, spread over the name space


@cache
def base() -> Base:
    names = [big_name(i) for i in range(BASE_N)]
    t = build(entry(n) for n in names)
    new_high: list[str] = []
    i = 0
    while len(new_high) < 20:
        cand = f"{LETTERS[i % 26]}/{(i * 7919) % BASE_N:06d}+{i}"
        if rank(cand) >= 2:
            new_high.append(cand)
        i += 1
    return Base(t, names, [n for n in names if rank(n) >= 1], [n for n in names if rank(n) >= 2], new_high)


def mutate(bs: Base, k: int, mode: str, seed: int) -> dict[str, ItemEntry]:
    """The base's items with k changes of one kind (or a mix): content changes, removals of names that end a
    level-0 node (rank >= 1) or a level-1 node (rank >= 2), insertions of new rank-2 names, plain additions."""
    rng = random.Random(seed)
    b = dict(bs.tree.items)
    done: set[str] = set()
    while len(done) < k:
        op = mode if mode != "mixed" else rng.choice(["content", "boundary", "insert-high", "remove-high", "add"])
        pool = {"content": bs.names, "boundary": bs.boundary, "remove-high": bs.high, "insert-high": bs.new_high,
                "add": bs.names}[op]
        name = rng.choice(pool) + ("/new" if op == "add" else "")
        if name in done:
            continue
        done.add(name)
        if op in ("boundary", "remove-high"):
            del b[name]
        else:
            b[name] = entry(name, 1 if op == "content" else 0)
    return b


@pytest.mark.parametrize("k, mode", [(0, "content"), (1, "content"), (1, "boundary"), (1, "remove-high"),
                                     (1, "insert-high"), (10, "content"), (10, "mixed"), (100, "content"),
                                     (100, "mixed")])
def test_nodes_read_follow_the_changes_not_the_size(k: int, mode: str) -> None:
    bs = base()
    ta = bs.tree
    assert ta.depth == 3 and len(bs.high) >= 3, "the base must be a 3-level tree with level-1 boundaries to move"
    b = mutate(bs, k, mode, seed=k * 31 + len(mode))
    tb = build(b.values())
    out = check_exact(ta, tb)
    changes = len(out.changes)
    assert changes == k
    total = len(ta.nodes) + len(tb.nodes)
    depth = max(ta.depth, tb.depth)
    reads = out.counter.nodes_read
    if k == 0:
        assert reads == 0
        return
    changed = [c.name.encode() for c in out.changes]
    check_reads_near_changes(ta, out.reads_a, changed)
    check_reads_near_changes(tb, out.reads_b, changed)
    assert reads <= bound(k, depth), (reads, k, depth)
    if mode == "content":
        # changing one item's content keeps every boundary: exactly its path on each side, minus shared prefixes
        assert reads <= 2 * k * depth
        if k == 1:
            assert reads == 2 * depth
    assert reads * (20 if k <= 10 else 2) < total, (reads, total)


@pytest.mark.parametrize("deep", DEEP)
def test_a_name_that_adds_a_level_costs_one_path(deep: str) -> None:
    """Inserting a rank-3 name splits the root of the 3-level tree: the new tree has 4 levels. Both directions
    (one level more, one level fewer) read a handful of nodes, not the tree."""
    assert rank(deep) >= 3
    bs = base()
    ta = bs.tree
    tb = build([*ta.items.values(), entry(deep)])
    assert (ta.depth, tb.depth) == (3, 4)
    for x, y in ((ta, tb), (tb, ta)):
        out = check_exact(x, y)
        assert [c.name for c in out.changes] == [deep]
        check_reads_near_changes(x, out.reads_a, [deep.encode()])
        check_reads_near_changes(y, out.reads_b, [deep.encode()])
        assert out.counter.nodes_read <= bound(1, 4)


def test_a_run_holding_one_leaf_of_the_other_reads_the_left_path() -> None:
    """The right-neighbour rule is needed: when run B holds exactly the items of A's first leaf, and that leaf ends
    at a rank-2 name (so it is the only child of A's first level-1 node), B's root *is* that leaf, and the walk reads
    A's first level-1 node and first leaf although every change lies to their right."""
    h = next(n for n in (f"c/{i:05d}" for i in range(100_000)) if rank(n) == 2)
    leaf = [entry(f"c/{i:05d}") for i in range(int(h[2:]) + 1) if rank(f"c/{i:05d}") == 0] + [entry(h)]
    rest = [entry(f"d/{i:05d}") for i in range(3000)]
    ta, tb = build(leaf + rest), build(leaf)
    assert tb.depth == 1 and ta.depth >= 3 and tb.root in ta.nodes, "B's root is a leaf of A"
    out = check_exact(ta, tb)
    assert out.counter.removed == 3000
    first_l1 = ta.levels[1][0][0]
    assert first_l1 in out.reads_a and tb.root in out.reads_a, "the left path is read"
    check_reads_near_changes(ta, out.reads_a, [c.name.encode() for c in out.changes])


def test_clustered_changes_cost_less_than_spread_ones() -> None:
    """100 changes to consecutive names touch a few leaves per side; 100 spread changes touch ~100."""
    bs = base()
    ordered = sorted(bs.names, key=str.encode)
    start = ordered.index(big_name(13_000))
    b = dict(bs.tree.items)
    for name in ordered[start:start + 100]:
        b[name] = entry(name, 1)
    tb = build(b.values())
    out = check_exact(bs.tree, tb)
    assert out.counter.changed == 100
    # exactly the leaves holding the changed names and their ancestors, on each side (the shape is unchanged)
    changed = [c.name.encode() for c in out.changes]
    lst = bs.tree.levels[0]
    leaves = [nid for i, (nid, last) in enumerate(lst)
              if bisect_right(changed, last) > (bisect_right(changed, lst[i - 1][1]) if i else 0)]
    assert 2 <= len(leaves) <= 10
    assert set(out.reads_a) >= set(leaves)
    assert out.counter.nodes_read <= 2 * (len(leaves) + 2 + 1), (out.counter.nodes_read, len(leaves))
    spread = check_exact(bs.tree, build(mutate(bs, 100, "content", seed=5).values()))
    assert out.counter.nodes_read * 5 < spread.counter.nodes_read


# --- corrupt nodes ---------------------------------------------------------------------------------------------------

@cache
def corrupt_pair() -> tuple[Tree, Tree]:
    """A tree of 6000 items (2 or more levels) and a copy with 3 items changed."""
    items = {e.name: e for e in (entry(big_name(i)) for i in range(6000))}
    ta = build(items.values())
    b = dict(items)
    for i in (17, 3000, 5999):
        b[big_name(i)] = entry(big_name(i), 1)
    tb = build(b.values())
    assert ta.depth >= 2
    return ta, tb


def run_with(ta: Tree, tb: Tree, get_a: Callable[[Digest], bytes]) -> list[Change]:
    return list(diff_trees(get_a, ta.root, tb.nodes.__getitem__, tb.root, DiffCounter()))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 10**6), pos=st.integers(0, 10**6), xor=st.integers(1, 255))
def test_any_corrupt_node_fails_with_the_projects_error_or_is_never_read(which: int, pos: int, xor: int) -> None:
    ta, tb = corrupt_pair()
    ids = sorted(ta.nodes)
    victim = ids[which % len(ids)]
    data = bytearray(ta.nodes[victim])
    data[pos % len(data)] ^= xor
    bad = {**ta.nodes, victim: bytes(data)}
    read: list[Digest] = []

    def get(nid: Digest) -> bytes:
        read.append(nid)
        return bad[nid]

    try:
        got = run_with(ta, tb, get)
    except LedgerError as exc:
        assert victim in read and str(exc).startswith(f"tree node b3:{victim.hex()[:16]}"), str(exc)
        return
    # no error: then the damaged node was in a shared subtree, never read, and the answer is still right
    assert victim not in read
    assert [(c.name, c.a, c.b) for c in got] == oracle(ta.items, tb.items)


def test_corrupt_node_on_the_changed_path_is_reported() -> None:
    ta, tb = corrupt_pair()
    good = diff(ta, tb)
    assert len(good.reads_a) >= 3
    leaf = next(n for n in good.reads_a if decode_node(n, ta.nodes[n])[0] == 0)
    other = next(n for n in ta.nodes if n not in good.reads_a and decode_node(n, ta.nodes[n])[0] == 0)
    # the same leaf as the other run has it: a valid node, same level and count, one item's digest differs
    twin = next(n for n in good.reads_b if decode_node(n, tb.nodes[n])[0] == 0)
    data = ta.nodes[leaf]
    for damaged, says in [(data[:-1], "tree node"), (b"", "tree node"), (b"\xc1" * 40, "tree node"),
                          (tb.nodes[twin], "content hash mismatch"), (ta.nodes[other], "tree node"),
                          (data[:20] + bytes([data[20] ^ 1]) + data[21:], "tree node")]:
        bad = {**ta.nodes, leaf: damaged}
        with pytest.raises(LedgerError) as exc_info:
            run_with(ta, tb, bad.__getitem__)
        assert f"b3:{leaf.hex()[:16]}" in str(exc_info.value) and says in str(exc_info.value)
        assert exc_info.value.exit_code == 1
    # a shared subtree's node is never read, so damage there does not matter
    shared = {**ta.nodes, other: b"garbage"}
    assert [(c.name, c.a, c.b) for c in run_with(ta, tb, shared.__getitem__)] == oracle(ta.items, tb.items)


def test_a_getter_error_propagates_as_is() -> None:
    """The store's own errors (a missing object, an unreadable pack) reach the caller unchanged."""
    ta, tb = corrupt_pair()
    missing = NotFound("tree node: missing")

    def get(nid: Digest) -> bytes:
        if nid != ta.root:
            raise missing
        return ta.nodes[nid]

    with pytest.raises(NotFound) as exc_info:
        run_with(ta, tb, get)
    assert exc_info.value is missing


# --- typed records: which fields differ ----------------------------------------------------------------------------

def test_record_changes_of_each_typed_kind() -> None:
    off = {"group": "g", "topic": "orders", "partition": 0, "start": 10, "end": 20}
    got = record_changes("offsets", off, off | {"start": 20, "end": 35, "high": 40})
    assert [(f.field, f.a, f.b) for f in got] == [("range", [10, 20], [20, 35]), ("high", None, 40)]
    assert record_changes("offsets", off, dict(off)) == ()
    got = record_changes("offsets", None, off)
    assert [(f.field, f.a, f.b) for f in got] == [("range", None, [10, 20]), ("group", None, "g"),
                                                  ("partition", None, 0), ("topic", None, "orders")]
    got = record_changes("receipt", {"source": "s", "count": 1}, {"source": "s", "count": 2})
    assert [(f.field, f.a, f.b) for f in got] == [("count", 1, 2)]
    got = record_changes("summary", {"ingested": 5, "duplicates": 1}, {"ingested": 5, "late": 0})
    assert [(f.field, f.a, f.b) for f in got] == [("duplicates", 1, None), ("late", None, 0)]
    got = record_changes("artifact", {"name": "w", "version": "1"}, None)
    assert [(f.field, f.a, f.b) for f in got] == [("name", "w", None), ("version", "1", None)]
    got = record_changes("decision", {"name": "d", "outcome": "pass", "reason": "ok"},
                         {"name": "d", "outcome": "hold", "reason": "ok"})
    assert [(f.field, f.a, f.b) for f in got] == [("outcome", "pass", "hold")]


# --- the command line ------------------------------------------------------------------------------------------------

R1_FILES = {"a.csv": "id,v\n1,2\n", "keep.txt": "same\n", "gone.txt": "bye\n"}
R2_FILES = {"a.csv": "id,v\n1,2\n3,4\n", "keep.txt": "same\n", "new.txt": "hello\n"}
OFFSETS_1 = [{"group": "nightly", "topic": "orders", "partition": 0, "start": 1200, "end": 1340},
             {"group": "nightly", "topic": "orders", "partition": 1, "start": 980, "end": 1110}]
OFFSETS_2 = [{"group": "nightly", "topic": "orders", "partition": 0, "start": 1340, "end": 1500},
             {"group": "nightly", "topic": "orders", "partition": 1, "start": 980, "end": 1110}]


def make_run(lg: Ledger, tmp: Path, run: str, files: dict[str, str], records: list[tuple[str, Any]],
             key: SigningKey | None) -> None:
    d = tmp / f"data-{run}"
    for name, text in files.items():
        write(d / name, text)
    lg.add(run, [str(d)])
    for kind, value in records:
        lg.record(run, kind, value)
    if key is not None:
        lg.seal(run, key)


R1_RECORDS: list[tuple[str, Any]] = [
    ("offsets", OFFSETS_1),
    ("receipt", [{"source": "kafka-orders", "count": 270}, {"source": "legacy-feed", "count": 5}]),
    ("summary", {"ingested": 262, "duplicates": 5, "quarantined": 3}),
    ("artifact", {"name": "ingest-worker", "version": "2026.11.3"}),
    ("decision", {"name": "release-gate", "outcome": "pass", "reason": "all green"}),
]
R2_RECORDS: list[tuple[str, Any]] = [
    ("offsets", OFFSETS_2),
    ("receipt", {"source": "kafka-orders", "count": 300}),
    ("summary", {"ingested": 290, "quarantined": 3, "late": 2}),
    ("artifact", [{"name": "ingest-worker", "version": "2026.11.4"}, {"name": "dedup-model", "version": "1.0"}]),
    ("decision", {"name": "release-gate", "outcome": "hold", "reason": "all green"}),
]

# r1 -> r2: status and the typed fields that differ, in name order
EXPECTED: list[tuple[str, str, list[list[Any]]]] = [
    ("changed", "a.csv", []),
    ("added", "artifacts/dedup-model.json", [["name", None, "dedup-model"], ["version", None, "1.0"]]),
    ("changed", "artifacts/ingest-worker.json", [["version", "2026.11.3", "2026.11.4"]]),
    ("changed", "decisions/release-gate.json", [["outcome", "pass", "hold"]]),
    ("removed", "gone.txt", []),
    ("added", "new.txt", []),
    ("changed", "offsets/nightly/orders/0.json", [["range", [1200, 1340], [1340, 1500]]]),
    ("changed", "receipts/kafka-orders.json", [["count", 270, 300]]),
    ("removed", "receipts/legacy-feed.json", [["count", 5, None], ["source", "legacy-feed", None]]),
    ("changed", "summary/summary.json", [["duplicates", 5, None], ["ingested", 262, 290], ["late", None, 2]]),
]
STAT = {"added": 2, "removed": 2, "changed": 6, "unchanged": 2}


@dataclass
class Runs:
    cli: Cli
    items: Items
    sides: dict[str, dict[str, Any]]  # run -> {run, seq, commit, root, count}


Items = dict[str, dict[str, dict[str, Any]]]  # run -> name -> {kind, size, blake3}


def sealed_runs(lg: Ledger, tmp: Path, runs: dict[str, tuple[dict[str, str], list[tuple[str, Any]]]]
                ) -> tuple[Items, dict[str, dict[str, Any]]]:
    """Seal each run of ``runs`` (files, records), open a run "draft" left unsealed; their items and commits."""
    lg.init()
    key = SigningKey.generate()
    for run, (files, records) in runs.items():
        make_run(lg, tmp, run, files, records, key)
    make_run(lg, tmp, "draft", R2_FILES, [], None)
    items: Items = {}
    sides: dict[str, dict[str, Any]] = {}
    for run in runs:
        items[run] = {e.name: {"kind": e.kind, "size": e.size, "blake3": e.blake3.hex()}
                      for e in lg.items(run).items}
        s = lg.sealed(run)
        s.index.close()
        sides[run] = {"run": run, "seq": s.seq, "commit": s.commit.digest.hex(), "root": s.commit.body.root.hex(),
                      "count": s.commit.body.count}
    return items, sides


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    tmp = tmp_path_factory.mktemp("diff")
    cli = Cli(tmp)
    # r1, r2 changed from r1 in every way EXPECTED lists, r3 with the same items as r1
    items, sides = sealed_runs(Ledger.open(str(cli.store)), tmp, {"r1": (R1_FILES, R1_RECORDS),
                                                                  "r2": (R2_FILES, R2_RECORDS),
                                                                  "r3": (R1_FILES, R1_RECORDS)})
    return Runs(cli, items, sides)


def expected_changes(items: Items, a: str, b: str, expected: list[tuple[str, str, list[list[Any]]]] = EXPECTED
                     ) -> list[dict[str, Any]]:
    return [{"status": status, "name": name, "a": items[a].get(name), "b": items[b].get(name),
             "fields": [{"field": f, "a": x, "b": y} for f, x, y in fields]}
            for status, name, fields in expected]


def test_cli_json_is_one_document_with_every_change(runs: Runs) -> None:
    before = snapshot(runs.cli.store)
    r = runs.cli.ok("diff", "r1", "r2", "--json")
    assert r.err == "", "--json prints nothing but the document"
    doc = json.loads(r.out)  # exactly one JSON document: json.loads refuses trailing data
    assert r.out.count("\n") == 1 and r.out.endswith("\n")
    assert list(doc) == ["a", "b", "identical", "stat", "nodes_read", "changes"]
    assert doc["a"] == runs.sides["r1"] and doc["b"] == runs.sides["r2"]
    assert doc["identical"] is False
    assert doc["stat"] == STAT
    assert doc["nodes_read"] >= 2
    for c in doc["changes"]:
        assert list(c) == ["status", "name", "a", "b", "fields"]
    assert doc["changes"] == expected_changes(runs.items, "r1", "r2")
    # name order = UTF-8 byte order, and the oracle agrees on what changed
    names = [c["name"] for c in doc["changes"]]
    assert names == sorted(names, key=str.encode)
    both = set(runs.items["r1"]) | set(runs.items["r2"])
    assert names == sorted((n for n in both if runs.items["r1"].get(n) != runs.items["r2"].get(n)), key=str.encode)
    assert snapshot(runs.cli.store) == before, "diff wrote to the store"


def test_cli_json_reversed_swaps_sides(runs: Runs) -> None:
    doc = runs.cli.json("diff", "r2", "r1")
    flip = {"added": "removed", "removed": "added", "changed": "changed"}
    assert [(c["status"], c["name"], c["a"], c["b"]) for c in doc["changes"]] == [
        (flip[c["status"]], c["name"], c["b"], c["a"]) for c in expected_changes(runs.items, "r1", "r2")]
    assert [[(f["field"], f["a"], f["b"]) for f in c["fields"]] for c in doc["changes"]] == [
        [(f["field"], f["b"], f["a"]) for f in c["fields"]] for c in expected_changes(runs.items, "r1", "r2")]
    assert doc["stat"] == {"added": 2, "removed": 2, "changed": 6, "unchanged": 2}


LINE = re.compile(r"([+~-]) (\S+) +(\S.*?)  +(\S.*?)  (b3:[0-9a-f]{16}(?: -> b3:[0-9a-f]{16})?)")


def test_cli_table_for_people(runs: Runs) -> None:
    r = runs.cli.ok("diff", "r1", "r2")
    lines = r.out.splitlines()
    s1, s2 = runs.sides["r1"], runs.sides["r2"]
    assert lines[0] == (f"diff r1 (#{s1['seq']}, b3:{s1['commit'][:16]}) -> r2 (#{s2['seq']}, "
                        f"b3:{s2['commit'][:16]})")
    rows: list[tuple[str, str, str, str, str]] = []
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line.startswith("    "):
            fields.setdefault(rows[-1][1], []).append(line[4:])
            continue
        m = LINE.fullmatch(line)
        assert m, line
        rows.append((m[1], m[2], m[3].strip(), m[4].strip(), m[5]))
    mark = {"added": "+", "removed": "-", "changed": "~"}
    assert [(m, n) for m, n, *_ in rows] == [(mark[s], n) for s, n, _ in EXPECTED]
    i1, i2 = runs.items["r1"], runs.items["r2"]
    row = {n: (k, size, digests) for _, n, k, size, digests in rows}
    assert row["a.csv"] == ("file", f"{i1['a.csv']['size']} -> {i2['a.csv']['size']} B",
                            f"b3:{i1['a.csv']['blake3'][:16]} -> b3:{i2['a.csv']['blake3'][:16]}")
    assert row["gone.txt"] == ("file", f"{i1['gone.txt']['size']} B", f"b3:{i1['gone.txt']['blake3'][:16]}")
    assert row["new.txt"] == ("file", f"{i2['new.txt']['size']} B", f"b3:{i2['new.txt']['blake3'][:16]}")
    assert fields == {
        "artifacts/dedup-model.json": ["name: (none) -> dedup-model", "version: (none) -> 1.0"],
        "artifacts/ingest-worker.json": ["version: 2026.11.3 -> 2026.11.4"],
        "decisions/release-gate.json": ["outcome: pass -> hold"],
        "offsets/nightly/orders/0.json": ["range: [1200, 1340) -> [1340, 1500)"],
        "receipts/kafka-orders.json": ["count: 270 -> 300"],
        "receipts/legacy-feed.json": ["count: 5 -> (none)", "source: legacy-feed -> (none)"],
        "summary/summary.json": ["duplicates: 5 -> (none)", "ingested: 262 -> 290", "late: (none) -> 2"],
    }
    assert "Traceback" not in r.err
    err = r.err.splitlines()
    assert len(err) == 1 and err[0].startswith("2 added, 2 removed, 6 changed, 2 unchanged; ")
    assert re.search(r"\b[1-9]\d* tree node\(s\) read", err[0]), err[0]


def test_cli_stat_prints_counts_only(runs: Runs) -> None:
    r = runs.cli.ok("diff", "r1", "r2", "--stat")
    assert r.out == "2 added, 2 removed, 6 changed, 2 unchanged\n"
    r = runs.cli("diff", "r1", "r2", "--stat", "--exit-code")
    assert (r.code, r.out) == (1, "2 added, 2 removed, 6 changed, 2 unchanged\n"), str(r)


def test_cli_json_stat_counts_the_changes(runs: Runs) -> None:
    r = runs.cli("diff", "r1", "r2", "--json", "--stat", "--exit-code")
    doc = json.loads(r.out)
    assert list(doc) == ["a", "b", "identical", "stat", "nodes_read"]
    assert doc["stat"] == STAT and doc["identical"] is False and doc["nodes_read"] >= 2
    assert r.code == 1


def test_cli_exit_code_convention(runs: Runs) -> None:
    r = runs.cli("diff", "r1", "r2", "--exit-code", "--json")
    assert r.code == 1 and json.loads(r.out)["identical"] is False, str(r)
    # the same run, and another run with the same items (equal roots): identical, nothing read
    for other in ("r1", "r3"):
        r = runs.cli("diff", "r1", other, "--exit-code", "--json")
        assert r.code == 0, str(r)
        doc = json.loads(r.out)
        assert doc["a"]["root"] == doc["b"]["root"] == runs.sides["r1"]["root"]
        assert (doc["identical"], doc["changes"], doc["nodes_read"]) == (True, [], 0)
        assert doc["stat"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": runs.sides["r1"]["count"]}
    assert runs.sides["r3"]["commit"] != runs.sides["r1"]["commit"]
    r = runs.cli("diff", "r1", "r3", "--exit-code")
    assert r.code == 0 and r.out.count("\n") == 1, "identical runs: the header line and no change rows"


@pytest.mark.parametrize("args, code, says", [
    (["nope", "r1"], 3, "run nope: no such run"),
    (["r1", "nope"], 3, "run nope: no such run"),
    (["draft", "r1"], 3, "run draft: not sealed"),
    (["r1", "draft"], 3, "run draft: not sealed"),
    ([".bad", "r1"], 2, "invalid run id '.bad'"),
    (["r1", "bad/id"], 2, "invalid run id 'bad/id'"),
])
def test_cli_bad_runs(runs: Runs, args: list[str], code: int, says: str) -> None:
    runs.cli.unchanged(code, "diff", *args, "--json", mentions=says)


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_cli_damaged_tree_node_is_one_error_line(runs: Runs, tmp_path: Path, damage: str) -> None:
    """A damaged node pack of r2 (its ids derive from the root, store.md): the diff names the node or the pack and
    exits 1; a diff that needs no node of r2 (r1 with r3, equal roots) is unaffected."""
    store = tmp_path / "store"
    shutil.copytree(runs.cli.store, store)
    root = runs.sides["r2"]["root"]
    pack = store / "packs" / f"{root[:28]}0000.pack"
    data = bytearray(pack.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0x01
    else:
        del data[-5:]
    pack.write_bytes(bytes(data))
    for fmt in (["--json"], []):  # the table too prints nothing once a node fails: stdout stays empty
        r = run_cli(["diff", "r1", "r2", *fmt], cwd=tmp_path, store=store)
        line = assert_error(r, 1)
        assert root[:16] in line, line
    r = run_cli(["diff", "r1", "r3", "--exit-code"], cwd=tmp_path, store=store)
    assert r.code == 0, str(r)


def test_cli_missing_store(tmp_path: Path) -> None:
    r = run_cli(["diff", "r1", "r2"], cwd=tmp_path, store=tmp_path / "nowhere")
    assert_error(r, 3, mentions="no ledger store here")
    assert not (tmp_path / "nowhere").exists()


def test_api_diff_streams_and_counts(runs: Runs) -> None:
    lg = Ledger.open(str(runs.cli.store))
    d = lg.diff("r1", "r2")
    got = [c.to_json() for c in d.changes]
    assert got == expected_changes(runs.items, "r1", "r2")
    assert d.stat_json() == STAT and d.counter.differ
    plain = lg.diff("r1", "r2", semantic=False)
    assert [c.to_json() | {"fields": []} for c in plain.changes] == [c | {"fields": []} for c in got]
    assert plain.counter.nodes_read == d.counter.nodes_read
    with pytest.raises(NotFound, match="run draft: not sealed"):
        lg.diff("r1", "draft")


def test_cli_diff_on_s3(s3: S3Server, tmp_path: Path) -> None:
    url = s3.url("diff")
    items, sides = sealed_runs(Ledger.open(url), tmp_path, {
        "r1": (R1_FILES, [("receipt", {"source": "kafka-orders", "count": 270})]),
        "r2": (R2_FILES, [("receipt", {"source": "kafka-orders", "count": 300})])})
    r: Result = run_cli(["diff", "r1", "r2", "--json"], cwd=tmp_path, store=url)
    assert r.code == 0, str(r)
    doc = json.loads(r.out)
    assert doc["a"] == sides["r1"] and doc["b"] == sides["r2"]
    assert doc["changes"] == expected_changes(items, "r1", "r2", [
        ("changed", "a.csv", []), ("removed", "gone.txt", []), ("added", "new.txt", []),
        ("changed", "receipts/kafka-orders.json", [["count", 270, 300]])])
    assert doc["stat"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 1} and doc["nodes_read"] >= 2
    r = run_cli(["diff", "r1", "draft", "--exit-code"], cwd=tmp_path, store=url)
    assert_error(r, 3, mentions="run draft: not sealed")
