"""The evidence tree (ledger.tree): a content-defined tree over items sorted by UTF-8 name.

Build and walk round-trip, the root depends only on the set of items, one change touches one root-to-leaf path,
nodes hold about 64 entries, tampering with any node is caught and named, and the tree stays shallow.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import encoding, merkle, tree
from ledger.digests import Digest, content_digest
from ledger.errors import DecodeError, NotFound
from ledger.objects import ItemEntry, node_id
from ledger.tree import TREE_HASHER, NodeError, TreeBuilder, decode_node, rank


def utf8(name: str) -> bytes:
    return name.encode("utf-8")


def items_for(names: set[str] | list[str], salt: bytes = b"") -> list[ItemEntry]:
    return [ItemEntry(n, "file", len(utf8(n)), content_digest(salt + utf8(n))) for n in sorted(names, key=utf8)]


def build(items: list[ItemEntry]) -> tuple[Digest, dict[Digest, bytes]]:
    nodes: dict[Digest, bytes] = {}
    root, count = tree.build(items, nodes.__setitem__)
    assert count == len(items)
    return root, nodes


def height(root: Digest, nodes: dict[Digest, bytes]) -> int:
    """Nodes on a root-to-leaf path (the root's level + 1)."""
    return decode_node(root, nodes[root])[0] + 1


def height_from_ranks(names: list[str]) -> int:
    """The height implied by the boundary rule alone: level L+1 exists iff a key other than the last has rank > L."""
    if not names:
        return 1
    last = max(names, key=utf8)
    return 1 + max((rank(n) for n in names if n != last), default=0)


def getter(nodes: dict[Digest, bytes], seen: list[Digest] | None = None) -> Callable[[Digest], bytes]:
    def get(nid: Digest) -> bytes:
        if seen is not None:
            seen.append(nid)
        try:
            return nodes[nid]
        except KeyError:
            raise NotFound(f"tree node b3:{nid.hex()[:16]}: missing") from None

    return get


segments = st.text(alphabet="ab-_.Z0é日", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
names = st.lists(segments, min_size=1, max_size=3).map("/".join)
name_sets = st.builds(lambda small, bulk: small | {f"bulk/é{i:04d}" for i in range(bulk)},
                      st.sets(names, max_size=60), st.integers(0, 600))


@settings(max_examples=40, deadline=None)
@given(name_set=name_sets)
def test_build_walk_round_trip(name_set: set[str]) -> None:
    items = items_for(name_set)
    root, nodes = build(items)
    seen: list[Digest] = []
    assert list(tree.walk(getter(nodes, seen), root)) == items
    # the builder emits exactly the nodes of the tree, each visited once, each canonically encoded
    assert sorted(seen) == sorted(nodes)
    for nid, data in nodes.items():
        assert encoding.encode(encoding.decode(data)) == data
        assert decode_node(nid, data)[1] or not items  # no empty node except the empty tree's root
    assert height(root, nodes) == height_from_ranks(sorted(name_set))


@settings(max_examples=30, deadline=None)
@given(name_set=name_sets, history=st.lists(st.tuples(st.booleans(), names), max_size=40),
       seed=st.integers(0, 2**32 - 1))
def test_root_depends_only_on_the_set(name_set: set[str], history: list[tuple[bool, str]], seed: int) -> None:
    root, nodes = build(items_for(name_set))
    # reach the same set through an unrelated history of inserts and deletes, in random order
    current: dict[str, ItemEntry] = {}
    for insert, name in history:
        if insert:
            current[name] = items_for([name], salt=b"stale")[0]
        else:
            current.pop(name, None)
    wanted = {it.name: it for it in items_for(name_set)}
    for name in list(current):
        if name not in wanted:
            del current[name]
    order = list(wanted)
    random.Random(seed).shuffle(order)
    for name in order:
        current[name] = wanted[name]
    root2, nodes2 = build(sorted(current.values(), key=lambda it: utf8(it.name)))
    assert root2 == root and nodes2 == nodes


@settings(max_examples=30, deadline=None)
@given(name_set=name_sets.filter(bool), data=st.data())
def test_any_change_to_one_item_changes_the_root(name_set: set[str], data: st.DataObject) -> None:
    items = items_for(name_set)
    root, _ = build(items)
    i = data.draw(st.integers(0, len(items) - 1))
    it = items[i]
    field = data.draw(st.sampled_from(["size", "blake3", "kind", "drop"]))
    changed = list(items)
    if field == "size":
        changed[i] = ItemEntry(it.name, it.kind, it.size + 1, it.blake3)
    elif field == "blake3":
        changed[i] = ItemEntry(it.name, it.kind, it.size, content_digest(b"other"))
    elif field == "kind":
        changed[i] = ItemEntry(it.name, "log", it.size, it.blake3)
    else:
        del changed[i]
    assert build(changed)[0] != root


# --- the items root: one RFC 9162 tree over every item's leaf hash -------------------------------------------------

def items_root(items: list[ItemEntry], precomputed: bool = False) -> tuple[Digest, Digest]:
    """(root, items root) from one TreeBuilder pass; with ``precomputed``, each item is passed with its canonical
    bytes and leaf hash, as verification does."""
    b = TreeBuilder()
    for it in items:
        if precomputed:
            enc = it.encode()
            b.add(it, enc, TREE_HASHER.leaf(enc))
        else:
            b.add(it)
    assert b.items_root is None  # set by finish()
    root = b.finish()
    assert b.items_root is not None
    return root, b.items_root


def leaf_hashes(items: list[ItemEntry]) -> list[bytes]:
    return [TREE_HASHER.leaf(it.encode()) for it in items]


@settings(max_examples=40, deadline=None)
@given(name_set=name_sets, precomputed=st.booleans())
def test_items_root_is_the_rfc9162_root_over_the_item_leaves(name_set: set[str], precomputed: bool) -> None:
    items = items_for(name_set)
    root, got = items_root(items, precomputed)
    assert got == merkle.root_from_leaf_hashes(TREE_HASHER, leaf_hashes(items))
    # the very leaf hashes the level-0 nodes commit to, in walk order
    built, nodes = build(items)
    assert built == root
    walked = [leaf for _, _, leaf in tree.walk_leaves(getter(nodes), root)]
    assert walked == leaf_hashes(items)
    assert got == merkle.root_from_leaf_hashes(TREE_HASHER, walked)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000,
                               # around the builder's chunks of ITEMS_CHUNK leaves (1024), and several of them
                               1023, 1024, 1025, 2047, 2048, 2049, 3072, 3073, 4096, 4097, 5 * 1024 + 511])
def test_items_root_for_many_sizes(n: int) -> None:
    assert tree.ITEMS_CHUNK == 1024  # the sizes above straddle its multiples
    items = items_for([f"n/{i:05d}" for i in range(n)])
    _, got = items_root(items)
    assert got == merkle.root_from_leaf_hashes(TREE_HASHER, leaf_hashes(items))
    assert got == merkle.root(TREE_HASHER, [it.encode() for it in items])
    if n == 0:
        assert got == TREE_HASHER.empty()


@settings(max_examples=30, deadline=None)
@given(name_set=name_sets.filter(bool), data=st.data())
def test_any_change_to_one_item_changes_the_items_root(name_set: set[str], data: st.DataObject) -> None:
    items = items_for(name_set)
    _, before = items_root(items)
    i = data.draw(st.integers(0, len(items) - 1))
    it = items[i]
    change = data.draw(st.sampled_from(["size", "blake3", "kind", "name", "drop"]))
    changed = list(items)
    if change == "size":
        changed[i] = ItemEntry(it.name, it.kind, it.size + 1, it.blake3)
    elif change == "blake3":
        changed[i] = ItemEntry(it.name, it.kind, it.size, content_digest(b"other"))
    elif change == "kind":
        changed[i] = ItemEntry(it.name, "log", it.size, it.blake3)
    elif change == "name":  # "z" is not in the names' alphabet: the new name is no other item's
        changed[i] = ItemEntry(it.name + "/z", it.kind, it.size, it.blake3)
        changed.sort(key=lambda e: utf8(e.name))
    else:
        del changed[i]
    assert items_root(changed)[1] != before


def test_big_tree_items_root() -> None:
    items, root, _ = big_tree()
    got_root, got = items_root(items)
    assert got_root == root
    assert got == merkle.root_from_leaf_hashes(TREE_HASHER, leaf_hashes(items))


# --- one change, one path ----------------------------------------------------------------------------------------

BIG = 20_000


@functools.lru_cache(maxsize=1)
def big_tree() -> tuple[list[ItemEntry], Digest, dict[Digest, bytes]]:
    items = items_for([f"dir{i % 50:02d}/file-{i:06d}.bin" for i in range(BIG)])
    root, nodes = build(items)
    return items, root, nodes


def test_big_tree_shape() -> None:
    items, root, nodes = big_tree()
    h = height(root, nodes)
    assert 2 <= h <= 4
    assert h == height_from_ranks([it.name for it in items])
    assert list(tree.walk(getter(nodes), root)) == items


@settings(max_examples=25, deadline=None)
@given(pos=st.integers(0, BIG - 1), op=st.sampled_from(["change", "insert"]),
       tag=st.text(alphabet="xyzé", min_size=1, max_size=3))
def test_one_change_rewrites_only_one_path(pos: int, op: str, tag: str) -> None:
    items, root, nodes = big_tree()
    h = height(root, nodes)
    changed = list(items)
    if op == "change":
        it = items[pos]
        changed[pos] = ItemEntry(it.name, it.kind, it.size, content_digest(b"changed" + utf8(tag)))
        r = 0
    else:
        name = items[pos].name + tag  # sorts right after items[pos], before its successor
        changed.insert(pos + 1, items_for([name])[0])
        r = rank(name)
        if pos == BIG - 1:  # the old last key becomes a boundary candidate too
            r = max(r, rank(items[pos].name))
    root2, nodes2 = build(changed)
    new = set(nodes2) - set(nodes)
    h2 = height(root2, nodes2)
    assert root2 != root and root2 in new
    # one node per level on the changed path; a key of rank r also splits one node on each of the r levels below r
    assert len(new) <= h2 + r
    if r <= 1:
        assert len(new) <= h + 1
    if r == 0:
        assert h2 == h and len(new) == h and len(set(nodes) - set(nodes2)) == h


def test_insert_of_a_boundary_key_splits_nodes_below_its_rank() -> None:
    items, root, nodes = big_tree()
    base = items[BIG // 2].name
    name = next(n for n in (f"{base}{i}" for i in range(100_000)) if rank(n) == 1)
    changed = sorted([*items, items_for([name])[0]], key=lambda it: utf8(it.name))
    root2, nodes2 = build(changed)
    new = set(nodes2) - set(nodes)
    # level 0: the node is split in two (or, if the key lands right after a boundary, one new node of its own);
    # then one node per level above
    assert height(root, nodes) <= len(new) <= height(root, nodes) + 1
    assert height(root2, nodes2) == height(root, nodes)


# --- node size and depth -----------------------------------------------------------------------------------------

def test_average_leaf_node_holds_about_64_items() -> None:
    n = 100_000
    items = items_for([f"runs/{i % 97:02d}/é-{i:07d}" for i in range(n)])
    root, nodes = build(items)
    level0 = [nid for nid, data in nodes.items() if decode_node(nid, data)[0] == 0]
    avg = n / len(level0)
    assert 56 <= avg <= 73, avg  # expected 64; 100k keys put +/-3 % of noise on it
    assert height(root, nodes) == height_from_ranks([it.name for it in items]) <= 4


def test_a_million_items_need_few_levels() -> None:
    # The height follows from the ranks alone (checked against real builds above), so no million-item build.
    levels = height_from_ranks([f"d{i % 1000:03d}/item-{i:07d}" for i in range(1_000_000)])
    assert 3 <= levels <= 6


# --- tampering, order, empty tree --------------------------------------------------------------------------------

def _named(nid: Digest) -> str:
    return f"b3:{nid.hex()[:16]}"


@functools.lru_cache(maxsize=1)
def mid_tree() -> tuple[list[ItemEntry], Digest, dict[Digest, bytes]]:
    items = items_for([f"t/é{i:05d}" for i in range(1500)])
    root, nodes = build(items)
    assert height(root, nodes) >= 2
    return items, root, nodes


def test_walk_names_every_tampered_node() -> None:
    items, root, nodes = mid_tree()
    rnd = random.Random(7)
    for nid, data in nodes.items():
        for bad in (
            data[:-1],                                                 # truncated
            data + b"\x00",                                            # trailing byte
            b"",                                                       # emptied
            data[:(i := rnd.randrange(len(data)))] + bytes([data[i] ^ (1 << rnd.randrange(8))]) + data[i + 1:],
        ):
            with pytest.raises(DecodeError) as info:
                list(tree.walk(getter({**nodes, nid: bad}), root))
            assert _named(nid) in str(info.value)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_walk_detects_any_mutation_of_any_node(data: st.DataObject) -> None:
    items, root, nodes = mid_tree()
    nid = data.draw(st.sampled_from(sorted(nodes)))
    buf = bytearray(nodes[nid])
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(buf) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            buf[i] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            buf.insert(i, data.draw(st.integers(0, 255)))
        else:
            del buf[i]
    if bytes(buf) == nodes[nid]:
        return
    with pytest.raises(DecodeError) as info:
        list(tree.walk(getter({**nodes, nid: bytes(buf)}), root))
    assert _named(nid) in str(info.value)


def test_walk_refuses_a_node_served_under_another_id() -> None:
    items, root, nodes = mid_tree()
    ids = sorted(nodes)
    a, b = ids[0], ids[1]
    with pytest.raises(NodeError) as info:
        list(tree.walk(getter({**nodes, a: nodes[b]}), root))
    assert info.value.node == a and _named(a) in str(info.value)


def test_walk_reports_a_missing_node() -> None:
    items, root, nodes = mid_tree()
    child = next(nid for nid in nodes if nid != root)
    with pytest.raises(NotFound):
        list(tree.walk(getter({k: v for k, v in nodes.items() if k != child}), root))


@pytest.mark.parametrize(("first", "second"), [("b", "a"), ("a", "a"), ("é", "z"), ("a/b", "a-b"), ("日", "é")])
def test_builder_refuses_items_out_of_order(first: str, second: str) -> None:
    b = TreeBuilder()
    b.add(items_for([first])[0])
    with pytest.raises(ValueError, match="out of order"):
        b.add(items_for([second])[0])


def test_builder_orders_by_utf8_bytes() -> None:
    order = ["a", "a-b", "a/b", "a0", "z", "é", "日", "\U0001f600"]
    assert sorted(order, key=utf8) == order
    items = items_for(order)
    assert [it.name for it in items] == order
    root, nodes = build(items)
    assert [it.name for it in tree.walk(getter(nodes), root)] == order


def test_empty_tree_root_is_stable() -> None:
    root, nodes = build([])
    assert root == build([])[0] == node_id(0, 0, TREE_HASHER.empty())
    assert nodes == {root: tree.encode_node(0, [])}
    assert nodes[root] == encoding.encode({"entries": [], "level": 0})
    assert list(tree.walk(getter(nodes), root)) == []
    assert root != build(items_for(["a"]))[0]
    assert root == TreeBuilder().finish()
