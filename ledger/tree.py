"""The evidence tree: a content-defined (prolly) tree whose nodes commit to their entries with RFC 9162 roots.

Items are sorted by name (UTF-8 byte order). A node at level L ends after an entry whose key has rank > L, where
rank(key) = (leading zero bits of BLAKE3("ledger/1 node-boundary", key)[0:8]) // 6, so nodes hold 64 entries on
average and node boundaries depend only on names: inserting or changing one item changes only the nodes on its
path, and two similar runs share every other subtree (cheap diff). A node's id commits to its level, the number of
items under it and the RFC 9162 root over its entries' canonical bytes. Beside the tree, the builder computes the
items root, one RFC 9162 tree over all items' leaf hashes, which inclusion proofs use: the prolly tree's varying node
sizes would cost a few hashes per level more than ceil(log2 n) (spec/tree.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import blake3
import msgpack

from . import encoding
from .digests import CTX_BOUNDARY, CTX_TREE, Digest
from .encoding import array_header, pack_trusted
from .errors import DecodeError
from .merkle import RootAccumulator, blake3_hasher, root_from_leaf_hashes
from .objects import ChildEntry, ItemEntry, node_id

TREE_HASHER = blake3_hasher(CTX_TREE)
BITS_PER_LEVEL = 6  # average fan-out 64
ITEMS_CHUNK = 1024  # leaves per perfect subtree the items root is accumulated in (a power of two)
_NODE_HEAD = b"\x82" + pack_trusted("entries")
_LEVEL_KEY = pack_trusted("level")

NodeSink = Callable[[Digest, bytes], None]


_B3 = blake3.blake3


def _leaf(encoded: bytes) -> bytes:
    """``TREE_HASHER.leaf(encoded)``, without two Python calls per entry."""
    return _B3(b"\x00" + encoded, derive_key_context=CTX_TREE).digest()


def _node(left: bytes, right: bytes) -> bytes:
    """``TREE_HASHER.node(left, right)`` in one Python call."""
    return _B3(b"\x01" + left + right, derive_key_context=CTX_TREE).digest()


def _entries_root(leaves: Sequence[bytes]) -> bytes:
    """``root_from_leaf_hashes(TREE_HASHER, leaves)`` -- the same bottom-up pairing, with the node hash inlined;
    checked against it at import, so the two cannot drift apart."""
    if not leaves:
        return TREE_HASHER.empty()
    level: Sequence[bytes] = leaves
    while len(level) > 1:
        nxt = [_B3(b"\x01" + level[i] + level[i + 1], derive_key_context=CTX_TREE).digest()
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _self_check() -> None:
    for n in range(0, 12):
        leaves = [TREE_HASHER.leaf(bytes([i])) for i in range(n)]
        if _entries_root(leaves) != root_from_leaf_hashes(TREE_HASHER, leaves) or (
                n and _leaf(b"\x07") != TREE_HASHER.leaf(b"\x07")) or (
                n > 1 and _node(leaves[0], leaves[1]) != TREE_HASHER.node(leaves[0], leaves[1])):
            raise RuntimeError("tree: inlined RFC 9162 root differs from merkle.root_from_leaf_hashes")


_self_check()


def rank(key: str) -> int:
    h = blake3.blake3(key.encode("utf-8"), derive_key_context=CTX_BOUNDARY).digest()
    v = int.from_bytes(h[:8], "big")
    return (64 - v.bit_length()) // BITS_PER_LEVEL


def _closes_level0(raw_key: bytes) -> bool:
    """``rank(key) > 0`` for the key's UTF-8 bytes: its boundary hash starts with at least 6 zero bits."""
    return _B3(raw_key, derive_key_context=CTX_BOUNDARY).digest(length=1)[0] < 4


def _check_boundary() -> None:
    for i in (0, 5, 50, 161, 1, 2, 3, 4):  # k0, k5, k50, k161 have rank 1; the others rank 0
        if _closes_level0(f"k{i}".encode()) != (rank(f"k{i}") > 0):
            raise RuntimeError("tree: _closes_level0 differs from rank() > 0")


_check_boundary()


def encode_node(level: int, encoded_entries: list[bytes]) -> bytes:
    """Canonical node bytes: ``{"entries": [entry, ...], "level": L}`` built from already-canonical entries."""
    return b"".join((_NODE_HEAD, array_header(len(encoded_entries)), *encoded_entries, _LEVEL_KEY,
                     pack_trusted(level)))


class _Level:
    __slots__ = ("entries", "leaves", "count", "last", "close_next", "emitted")

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.leaves: list[bytes] = []
        self.count = 0
        self.last = ""
        self.close_next = False
        self.emitted = 0


class TreeBuilder:
    """Builds the tree from items given in strictly increasing name order, streaming: it holds only the open node
    of each level, and hands every finished node to ``sink`` (which stores it).

    Alongside, it accumulates the *items root*: the RFC 9162 root over every item's leaf hash in name order (the
    same leaf hashes the level-0 nodes use), which the commit signs so that an inclusion proof is one RFC 9162 audit
    path of at most ceil(log2 n) hashes, bound to the commit's item count (spec/tree.md).
    """

    def __init__(self, sink: NodeSink | None = None) -> None:
        self._sink = sink
        self._levels: list[_Level] = []
        self._last_name: str | None = None
        self._last_raw = b""
        self._packer = msgpack.Packer(use_bin_type=True)  # one per builder: packb would make one per item
        # The items root is accumulated per chunk of ITEMS_CHUNK leaves (a perfect subtree, hashed by the
        # same list pairing as node roots), not leaf by leaf: a third of the per-item cost.
        self._items = RootAccumulator(TREE_HASHER, _node)
        self._chunk: list[bytes] = []
        self.items_root: Digest | None = None  # set by finish()
        self.count = 0
        self.bytes = 0

    def add(self, item: ItemEntry, encoded: bytes | None = None, leaf: bytes | None = None) -> None:
        """Append the next item. ``encoded`` and ``leaf``, when given, must be ``item.encode()`` and its leaf hash
        (a verifier that has just checked them in a node passes them instead of computing them again)."""
        name = item.name
        raw = name.encode("utf-8")
        if self._last_name is not None and raw <= self._last_raw:
            raise ValueError(f"items out of order: {name!r} after {self._last_name!r}")
        self._last_name, self._last_raw = name, raw
        self.count += 1
        self.bytes += item.size
        if encoded is None:
            encoded = self._packer.pack(item.to_value())  # item.encode(), same bytes
        # self._push(0, encoded, name, 1, leaf), inlined: this runs once per item
        if not self._levels:
            self._levels.append(_Level())
        lv = self._levels[0]
        if lv.close_next:
            self._close(0)
        if leaf is None:
            leaf = _B3(b"\x00" + encoded, derive_key_context=CTX_TREE).digest()
        chunk = self._chunk
        chunk.append(leaf)
        if len(chunk) == ITEMS_CHUNK:
            self._items.push(_entries_root(chunk))
            self._chunk = []
        lv.entries.append(encoded)
        lv.leaves.append(leaf)
        lv.count += 1
        lv.last = name
        lv.close_next = _closes_level0(raw)

    def _push(self, level: int, encoded: bytes, key: str, count: int, leaf: bytes | None = None) -> None:
        if level == len(self._levels):
            self._levels.append(_Level())
        lv = self._levels[level]
        if lv.close_next:
            self._close(level)
        lv.entries.append(encoded)
        lv.leaves.append(leaf if leaf is not None else _leaf(encoded))
        lv.count += count
        lv.last = key
        lv.close_next = rank(key) > level

    def _emit(self, level: int) -> tuple[Digest, int, str]:
        lv = self._levels[level]
        nid = node_id(level, lv.count, _entries_root(lv.leaves))
        if self._sink is not None:
            self._sink(nid, encode_node(level, lv.entries))
        out = (nid, lv.count, lv.last)
        lv.entries, lv.leaves, lv.count, lv.close_next = [], [], 0, False
        lv.emitted += 1
        return out

    def _close(self, level: int) -> None:
        nid, count, last = self._emit(level)
        self._push(level + 1, ChildEntry(last, count, nid).encode(), last, count)

    def finish(self) -> Digest:
        """Close every open node and return the root id (the root is the one node of the top level); the items
        root is then in ``items_root``."""
        self.items_root = Digest(self._items.root(_entries_root(self._chunk) if self._chunk else None))
        if not self._levels:
            self._levels.append(_Level())
        level = 0
        while True:
            lv = self._levels[level]
            if lv.emitted == 0:
                return self._emit(level)[0]
            if lv.entries:
                self._close(level)
            level += 1


def build(items: list[ItemEntry], sink: NodeSink | None = None) -> tuple[Digest, int]:
    b = TreeBuilder(sink)
    for it in items:
        b.add(it)
    return b.finish(), b.count


# --- reading ---------------------------------------------------------------------------------------------------

class NodeError(DecodeError):
    """A tree node failed its checks; ``node`` is the id it was fetched by."""

    def __init__(self, node: bytes, message: str) -> None:
        super().__init__(f"tree node b3:{node.hex()[:16]}: {message}")
        self.node = node


def decode_node(nid: bytes, data: bytes) -> tuple[int, list[dict[str, object]], list[bytes]]:
    """Parse node bytes fetched under ``nid``: (level, entries, entries' canonical bytes); the id is re-derived."""
    try:
        m = encoding.decode_map(data, "tree node", {"entries": list, "level": int})
    except DecodeError as exc:
        raise NodeError(nid, str(exc)) from None
    level = m["level"]
    if not 0 <= level <= 64:
        raise NodeError(nid, f"level {level} out of range")
    raw_entries = m["entries"]
    pack = msgpack.Packer(use_bin_type=True).pack
    encoded = [pack(e) for e in raw_entries]
    return level, raw_entries, encoded


def _node_checked(get: Callable[[Digest], bytes], nid: Digest, want_level: int | None, want_count: int | None
                  ) -> tuple[int, list[object]]:
    level, entries, _, _ = _node_checked_leaves(get, nid, want_level, want_count)
    return level, entries


def _node_checked_leaves(get: Callable[[Digest], bytes], nid: Digest, want_level: int | None,
                         want_count: int | None) -> tuple[int, list[object], list[bytes], list[bytes]]:
    """:func:`_node_checked`, also returning the entries' canonical bytes and leaf hashes it checked."""
    data = get(nid)
    level, raw, encoded = decode_node(nid, data)
    if want_level is not None and level != want_level:
        raise NodeError(nid, f"level {level}, expected {want_level}")
    if level == 0:
        entries: list[object] = [ItemEntry.from_value(e, f"tree node b3:{nid.hex()[:16]}: item") for e in raw]
        count = len(entries)
    else:
        children = [ChildEntry.from_value(e, f"tree node b3:{nid.hex()[:16]}: child") for e in raw]
        entries = list(children)
        count = sum(c.count for c in children)
        if not children:
            raise NodeError(nid, "interior node without children")
    if want_count is not None and count != want_count:
        raise NodeError(nid, f"holds {count} items, its parent says {want_count}")
    leaves = [_leaf(e) for e in encoded]
    got = node_id(level, count, _entries_root(leaves))
    if got != nid:
        raise NodeError(nid, f"content hash mismatch (expected b3:{nid.hex()[:16]}, got b3:{got.hex()[:16]})")
    return level, entries, encoded, leaves


def locate(get: Callable[[Digest], bytes], root: Digest, name: str) -> tuple[int, ItemEntry] | None:
    """Item ``name`` and its index in name order, or None: a descent by the children's last names, O(depth) node
    reads (each checked against its id, level and count), the index summed from the subtrees left of the path."""
    key = name.encode("utf-8")
    nid, want_level, want_count, before = root, None, None, 0
    while True:
        level, entries = _node_checked(get, nid, want_level, want_count)
        if level == 0:
            for i, e in enumerate(entries):
                if isinstance(e, ItemEntry) and e.name == name:
                    return before + i, e
            return None
        for e in entries:
            assert isinstance(e, ChildEntry)
            if key <= e.last.encode("utf-8"):
                nid, want_level, want_count = e.node, level - 1, e.count
                break
            before += e.count
        else:
            return None


def leaf_hashes(get: Callable[[Digest], bytes], root: Digest) -> list[bytes]:
    """Every item's leaf hash in name order, read as fast as the bytes allow: each stored entry is hashed as it
    stands, nothing is decoded into objects, and nodes are *not* checked one by one. Only for callers that check
    what they build from the result against a signed root (``prove`` checks its path against the items root), so
    a damaged node cannot go unnoticed; everything else walks with :func:`walk_leaves`."""
    out: list[bytes] = []
    stack = [root]
    seen: set[bytes] = set()  # names are unique, so no node appears twice in a tree: a repeat is a cycle
    unpackb = msgpack.unpackb
    while stack:
        nid = stack.pop()
        if nid in seen:
            raise NodeError(nid, "appears twice in the tree (a cycle)")
        seen.add(nid)
        data = get(nid)
        u = msgpack.Unpacker(raw=False, strict_map_key=False)
        u.feed(data)
        try:
            if u.read_map_header() != 2 or u.unpack() != "entries":
                raise NodeError(nid, "not a tree node")
            spans = []
            start = u.tell()
            for _ in range(u.read_array_header()):
                start = u.tell()
                u.skip()
                spans.append((start, u.tell()))
            if u.unpack() != "level":
                raise NodeError(nid, "not a tree node")
            level = u.unpack()
            if type(level) is not int or not 0 <= level <= 64:
                raise NodeError(nid, "not a tree node (level)")
            if level == 0:
                out.extend(_B3(b"\x00" + data[a:b], derive_key_context=CTX_TREE).digest() for a, b in spans)
                continue
            children = []
            for a, b in spans:
                child = unpackb(data[a:b])
                if not isinstance(child, dict) or not isinstance(child.get("node"), bytes):
                    raise NodeError(nid, "interior node with a malformed child entry")
                children.append(Digest(child["node"]))
            stack.extend(reversed(children))
        except (ValueError, TypeError, msgpack.OutOfData, msgpack.ExtraData) as exc:  # UnicodeDecodeError too
            raise NodeError(nid, f"not a tree node ({type(exc).__name__})") from None
    return out


def walk(get: Callable[[Digest], bytes], root: Digest) -> Iterator[ItemEntry]:
    """Yield every item under ``root`` in name order, checking each node's id, level, counts and ordering.

    Shape (whether the node boundaries are the canonical ones) is checked by rebuilding the root from the items,
    which verify does (a :class:`TreeBuilder` fed from :func:`walk_leaves`); a walk alone is enough for listing.
    """
    for item, _, _ in walk_leaves(get, root):
        yield item


def walk_leaves(get: Callable[[Digest], bytes], root: Digest) -> Iterator[tuple[ItemEntry, bytes, bytes]]:
    """:func:`walk`, yielding each item with its canonical bytes and leaf hash as checked in its node."""
    last: bytes | None = None

    def visit(nid: Digest, level: int | None, count: int | None, bound: str | None
              ) -> Iterator[tuple[ItemEntry, bytes, bytes]]:
        nonlocal last
        lvl, entries, encoded, leaves = _node_checked_leaves(get, nid, level, count)
        for i, e in enumerate(entries):
            if isinstance(e, ItemEntry):
                nb = e.name.encode("utf-8")
                if last is not None and nb <= last:
                    raise NodeError(nid, f"items out of order at {e.name!r}")
                last = nb
                yield e, encoded[i], leaves[i]
            else:
                assert isinstance(e, ChildEntry)
                yield from visit(e.node, lvl - 1, e.count, e.last)
                if last is None or last != e.last.encode("utf-8"):
                    raise NodeError(nid, f"child b3:{e.node.hex()[:16]} ends at {last!r}, entry says {e.last!r}")
        del bound

    yield from visit(root, None, None, None)
