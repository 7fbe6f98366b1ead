"""Canonical encoding (ledger.encoding) and the strict object decoders built on it.

One value has exactly one byte string: every allowed value round-trips, encoding does not depend on dict insertion
order, everything outside the subset or not in canonical form is refused with DecodeError, and no input whatsoever
makes a decoder raise anything but a LedgerError.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import encoding, packs, tree
from ledger.digests import content_digest
from ledger.encoding import MAX_DEPTH, decode, encode
from ledger.errors import DecodeError, LedgerError, NotFound
from ledger.merkle import root_from_leaf_hashes
from ledger.objects import Batch, CommitBody, ItemEntry, Marker, SignedCommit, StagedItem, StoreConfig, node_id

INT_MIN, INT_MAX = -(2**63), 2**64 - 1

scalars = (st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | st.text(max_size=40)
           | st.binary(max_size=40))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equality that also tells bool from int and bytes from str, all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def shuffled(v: Any, rnd: random.Random) -> Any:
    """The same value with every dict's insertion order shuffled."""
    if isinstance(v, dict):
        items = list(v.items())
        rnd.shuffle(items)
        return {k: shuffled(x, rnd) for k, x in items}
    if isinstance(v, list):
        return [shuffled(x, rnd) for x in v]
    return v


def canonical_order(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: canonical_order(v[k]) for k in sorted(v, key=lambda s: s.encode("utf-8"))}
    if isinstance(v, list):
        return [canonical_order(x) for x in v]
    return v


# --- allowed values -----------------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(v=values)
def test_every_allowed_value_round_trips(v: Any) -> None:
    data = encode(v)
    back = decode(data)
    assert back == v
    assert same(back, canonical_order(v))
    assert encode(back) == data


@settings(max_examples=200, deadline=None)
@given(v=values, seed=st.integers(0, 2**32 - 1))
def test_encoding_ignores_dict_insertion_order(v: Any, seed: int) -> None:
    assert encode(shuffled(v, random.Random(seed))) == encode(v) == encode(canonical_order(v))


@pytest.mark.parametrize(("value", "expected"), [
    (None, b"\xc0"), (False, b"\xc2"), (True, b"\xc3"),
    (0, b"\x00"), (127, b"\x7f"), (128, b"\xcc\x80"), (255, b"\xcc\xff"), (256, b"\xcd\x01\x00"),
    (2**16, b"\xce\x00\x01\x00\x00"), (2**32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
    (INT_MAX, b"\xcf" + b"\xff" * 8), (-1, b"\xff"), (-32, b"\xe0"), (-33, b"\xd0\xdf"), (-129, b"\xd1\xff\x7f"),
    (INT_MIN, b"\xd3\x80" + b"\x00" * 7),
    ("", b"\xa0"), ("a", b"\xa1a"), ("é", b"\xa2\xc3\xa9"), ("x" * 32, b"\xd9\x20" + b"x" * 32),
    (b"", b"\xc4\x00"), (b"a", b"\xc4\x01a"),  # bytes are the bin family, never str
    ([], b"\x90"), ({}, b"\x80"), ([1, [2]], b"\x92\x01\x91\x02"),
    # keys sorted by their UTF-8 bytes: not by length first, and "é" (c3 a9) after "z"
    ({"b": 1, "aa": 2}, b"\x82\xa2aa\x02\xa1b\x01"), ({"é": 0, "z": 1}, b"\x82\xa1z\x01\xa2\xc3\xa9\x00"),
])
def test_exact_canonical_bytes(value: Any, expected: bytes) -> None:
    assert encode(value) == expected
    assert same(decode(expected), canonical_order(value))


def _nested(depth: int) -> Any:
    v: Any = None
    for _ in range(depth):
        v = [v]
    return v


def test_nesting_depth_is_bounded() -> None:
    ok = _nested(MAX_DEPTH)
    assert decode(encode(ok)) == ok
    with pytest.raises(DecodeError):
        encode(_nested(MAX_DEPTH + 1))
    with pytest.raises(DecodeError):
        decode(b"\x91" * (MAX_DEPTH + 1) + b"\xc0")
    with pytest.raises(DecodeError):
        decode(b"\x91" * 100_000 + b"\xc0")  # deeper than msgpack's own stack


# --- refused values and bytes -------------------------------------------------------------------------------------

OUTSIDE = {
    "float": 1.0, "nan": float("nan"), "2**64": 2**64, "below-int64": INT_MIN - 1, "int-key": {1: 2},
    "bytes-key": {b"k": 1}, "none-key": {None: 1}, "tuple": (1, 2), "set": {1, 2}, "bytearray": bytearray(b"x"),
    "object": object(), "nested-float": [1.5], "deep-float": {"a": {"b": [2.0]}},
}


@pytest.mark.parametrize("value", OUTSIDE.values(), ids=OUTSIDE.keys())
def test_encode_refuses_values_outside_the_subset(value: Any) -> None:
    with pytest.raises(DecodeError):
        encode(value)


REFUSED = {
    # floats and extension types
    "float32": b"\xca\x3f\x80\x00\x00",
    "float64": b"\xcb\x3f\xf0" + b"\x00" * 6,
    "fixext1": b"\xd4\x01\x00",
    "ext8": b"\xc7\x01\x05\x00",
    "timestamp32": b"\xd6\xff\x00\x00\x00\x00",
    "timestamp-bad-length": b"\xd4\xff\x00",
    "never-used-0xc1": b"\xc1",
    # map keys: unsorted, duplicated, not strings
    "unsorted-keys": b"\x82\xa1b\x01\xa1a\x02",
    "length-first-order": b"\x82\xa1b\x01\xa2aa\x02",
    "duplicate-keys": b"\x82\xa1a\x01\xa1a\x02",
    "duplicate-keys-same-value": b"\x82\xa1a\x01\xa1a\x01",
    "int-key": b"\x81\x01\x02",
    "bin-key": b"\x81\xc4\x01a\x01",
    "nil-key": b"\x81\xc0\x01",
    "array-key": b"\x81\x91\x01\x02",
    "map-key": b"\x81\x80\x01",
    "bool-key": b"\x81\xc3\x01",
    # integers not in their shortest form
    "uint8-for-fixint": b"\xcc\x05",
    "uint16-for-uint8": b"\xcd\x00\xff",
    "uint32-for-uint16": b"\xce\x00\x00\xff\xff",
    "uint64-for-uint32": b"\xcf" + (2**32 - 1).to_bytes(8, "big"),
    "int8-for-negative-fixint": b"\xd0\xff",
    "int8-for-positive": b"\xd0\x05",
    "int16-for-int8": b"\xd1\xff\x9c",
    "int32-for-int16": b"\xd2" + (-200).to_bytes(4, "big", signed=True),
    "int64-for-int32": b"\xd3" + (-(2**31)).to_bytes(8, "big", signed=True),
    "int64-for-positive": b"\xd3" + (2**40).to_bytes(8, "big", signed=True),
    # strings, bytes, arrays and maps with longer headers than needed
    "str8-for-fixstr": b"\xd9\x01a",
    "str16-for-str8": b"\xda\x00\x28" + b"x" * 40,
    "str32-for-fixstr": b"\xdb\x00\x00\x00\x01a",
    "bin16-for-bin8": b"\xc5\x00\x01a",
    "bin32-for-bin8": b"\xc6\x00\x00\x00\x01a",
    "array16-for-fixarray": b"\xdc\x00\x01\xc0",
    "array32-for-fixarray": b"\xdd\x00\x00\x00\x01\xc0",
    "map16-for-fixmap": b"\xde\x00\x01\xa1a\xc0",
    "map32-for-fixmap": b"\xdf\x00\x00\x00\x01\xa1a\xc0",
    # framing
    "empty": b"",
    "trailing-byte": b"\x01\x00",
    "two-values": b"\xa1a\xa1b",
    "truncated-str": b"\xa5ab",
    "truncated-array": b"\x92\x01",
    "truncated-uint16": b"\xcd\x01",
    "truncated-map": b"\x81\xa1a",
    "huge-array-header": b"\xdd\xff\xff\xff\xff",
    "huge-bin-header": b"\xc6\xff\xff\xff\xff",
    # text
    "invalid-utf8": b"\xa2\xff\xfe",
    "lone-surrogate": b"\xa3\xed\xa0\x80",
    "overlong-utf8": b"\xa2\xc0\xaf",
    "invalid-utf8-key": b"\x81\xa1\xff\x01",
}


@pytest.mark.parametrize("data", REFUSED.values(), ids=REFUSED.keys())
def test_decode_refuses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


@settings(max_examples=200, deadline=None)
@given(v=values, extra=st.binary(min_size=1, max_size=8))
def test_truncated_or_extended_encodings_are_refused(v: Any, extra: bytes) -> None:
    data = encode(v)
    for i in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:i])
    with pytest.raises(DecodeError):
        decode(data + extra)


def _canonical_or_refused(data: bytes) -> None:
    """The fuzz oracle: bytes either decode to a value whose canonical encoding is exactly them, or raise
    DecodeError. Any other exception escapes and fails the test."""
    try:
        v = decode(data)
    except DecodeError:
        return
    assert encode(v) == data


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=64))
def test_decode_fuzz_arbitrary_bytes(data: bytes) -> None:
    _canonical_or_refused(data)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted, deleted or overwritten, or cut short."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "set", "truncate"]))
        if op == "insert" or not buf:
            buf.insert(draw(st.integers(0, len(buf))), draw(st.integers(0, 255)))
            continue
        i = draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del buf[i]
        elif op == "set":
            buf[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCA, 0xD4, 0xDC, 0xDD, 0xDF, 0xFF]))
        else:
            del buf[i:]
    return bytes(buf)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), v=values)
def test_decode_fuzz_mutated_encodings(data: st.DataObject, v: Any) -> None:
    _canonical_or_refused(data.draw(mutated(encode(v))))


# --- object decoders: only LedgerErrors, whatever the bytes -------------------------------------------------------

D1, D2, D3 = (content_digest(bytes([i])) for i in range(3))
PACK_ID = "0123456789abcdef" * 2
BODY = CommitBody(run="run-1", seq=1, parent=D1, root=D2, items_root=D3, count=2, total_bytes=42,
                  time_ms=1_700_000_000_000, key=D3, log_size=1, log_root=D1, nonce=bytes(16))
ITEMS = [ItemEntry("a/b.txt", "file", 3, D1), ItemEntry("a/é/日本", "json", 2**40, D2)]
NODE_BYTES = tree.encode_node(0, [it.encode() for it in ITEMS])
NODE_ID = node_id(0, len(ITEMS), root_from_leaf_hashes(tree.TREE_HASHER, [tree.TREE_HASHER.leaf(it.encode())
                                                                          for it in ITEMS]))


def _walk_one_node(data: bytes) -> list[ItemEntry]:
    def get(nid: bytes) -> bytes:
        if nid != NODE_ID:
            raise NotFound(f"tree node b3:{nid.hex()[:16]}: missing")
        return data

    return list(tree.walk(get, NODE_ID))


# name -> (decoder, a valid encoding, what decoding the valid encoding gives)
DECODERS: dict[str, tuple[Callable[[bytes], Any], bytes, Any]] = {
    "CommitBody": (CommitBody.from_bytes, BODY.encode(), BODY),
    "SignedCommit": (lambda b: SignedCommit.from_bytes(b).body, SignedCommit.create(BODY, bytes(64)).encode(), BODY),
    "Marker": (Marker.from_bytes, Marker("run-1", 1, D1, (PACK_ID,)).encode(), Marker("run-1", 1, D1, (PACK_ID,))),
    "Batch": (Batch.from_bytes, Batch("run-1", (StagedItem(ITEMS[0], None), StagedItem(ITEMS[1], PACK_ID))).encode(),
              Batch("run-1", (StagedItem(ITEMS[0], None), StagedItem(ITEMS[1], PACK_ID)))),
    "StoreConfig": (StoreConfig.from_bytes, StoreConfig().encode(), StoreConfig()),
    "ItemEntry": (lambda b: ItemEntry.from_value(decode(b)), ITEMS[1].encode(), ITEMS[1]),
    "pack-index": (lambda b: packs.decode_index(PACK_ID, b),
                   packs.encode_index(PACK_ID, [(D2, 0, 10), (D1, 10, 5)]), {D1: (10, 5), D2: (0, 10)}),
    "tree-node": (lambda b: tree.decode_node(NODE_ID, b)[0], NODE_BYTES, 0),
    "tree-walk": (_walk_one_node, NODE_BYTES, ITEMS),
}


@pytest.mark.parametrize("name", DECODERS)
def test_object_decoders_accept_their_valid_encoding(name: str) -> None:
    decoder, data, expected = DECODERS[name]
    assert decoder(data) == expected


def _only_ledger_errors(decoder: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(LedgerError):  # any other exception type escapes and fails the test
        decoder(data)


@pytest.mark.parametrize("name", DECODERS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_object_decoders_raise_only_ledger_errors_on_mutations(name: str, data: st.DataObject) -> None:
    decoder, valid, _ = DECODERS[name]
    _only_ledger_errors(decoder, data.draw(mutated(valid)))


@pytest.mark.parametrize("name", DECODERS)
@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=200) | values.map(encode))
def test_object_decoders_raise_only_ledger_errors_on_arbitrary_input(name: str, blob: bytes) -> None:
    _only_ledger_errors(DECODERS[name][0], blob)


@settings(max_examples=200, deadline=None)
@given(v=values | st.fixed_dictionaries(
    {"blake3": st.binary(max_size=33), "kind": st.sampled_from(["file", "json", "nope", ""]),
     "name": st.text(max_size=12), "size": st.integers(INT_MIN, INT_MAX) | st.booleans()}))
def test_item_entry_from_any_value_raises_only_decode_errors(v: Any) -> None:
    try:
        entry = ItemEntry.from_value(v)
    except DecodeError:
        return
    assert ItemEntry.from_value(decode(entry.encode())) == entry


def test_object_decoders_refuse_non_canonical_and_unknown_fields() -> None:
    body = BODY.to_value()
    with pytest.raises(DecodeError, match="unknown field"):
        CommitBody.from_bytes(encode({**body, "extra": 1}))
    with pytest.raises(DecodeError, match="missing field"):
        CommitBody.from_bytes(encode({k: v for k, v in body.items() if k != "root"}))
    with pytest.raises(DecodeError, match="wrong type"):
        CommitBody.from_bytes(encode({**body, "seq": True}))
    with pytest.raises(DecodeError):
        CommitBody.from_bytes(encode({**body, "format": "ledger/2"}))
    # the same fields in another key order are not the canonical bytes
    reordered = encoding.pack_trusted(dict(reversed(list(body.items()))))
    assert reordered != BODY.encode()
    with pytest.raises(DecodeError):
        CommitBody.from_bytes(reordered)
