#!/usr/bin/env python3
"""Generate the ledger/1 test vectors (``spec/vectors/*.json``) from the reference implementation.

    python tools/gen_vectors.py            # (re)write spec/vectors/*.json
    python tools/gen_vectors.py --check    # exit 1 if the files on disk differ from what would be written

Every input is fixed (no randomness, no clock), so regenerating is byte-identical; ``--check`` is run by the test
suite so the implementation, the vectors and spec/ cannot drift apart. The JSON layout of each file and the typed
value notation are described in spec/README.md ("Test vectors").
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from ledger import encoding, kinds, layout, packs, tree  # noqa: E402
from ledger.chain import LOG_HASHER  # noqa: E402
from ledger.digests import (  # noqa: E402
    CTX_BOUNDARY,
    CTX_COMMIT,
    CTX_KEY_ID,
    CTX_LOG,
    CTX_NODE,
    CTX_PACK_INDEX,
    CTX_POLICY,
    CTX_TREE,
    FORMAT,
    SIGNATURE_CONTEXT,
    Digest,
    content_digest,
    typed_digest,
)
from ledger.errors import CheckFailed, Corrupt, DecodeError, LedgerError, UsageError  # noqa: E402
from ledger.keys import SigningKey, key_id  # noqa: E402
from ledger.merkle import (  # noqa: E402
    SHA256,
    Hasher,
    ProofError,
    consistency_proof,
    inclusion_proof,
    root_from_leaf_hashes,
)
from ledger.names import KINDS, RECORD_KINDS  # noqa: E402
from ledger.objects import (  # noqa: E402
    Batch,
    ChildEntry,
    CommitBody,
    ItemEntry,
    Marker,
    SignedCommit,
    StagedItem,
    StoreConfig,
    StoreLock,
    Waived,
    node_id,
)
from ledger.policy import (  # noqa: E402
    MAX_PARTITIONS,
    Criterion,
    Policy,
    Reconcile,
    anchors,
    build_evidence,
    evaluate,
    load_policies,
    previous_ends,
)
from ledger.proofs import MAX_PATH, InclusionProof, prove, verify_proof  # noqa: E402
from ledger.tree import TREE_HASHER, TreeBuilder, encode_node  # noqa: E402

VECTORS = ROOT / "spec" / "vectors"
GENERATOR = "tools/gen_vectors.py"
Json = Any

# Fixed inputs ------------------------------------------------------------------------------------------------------
# Ed25519 seeds: RFC 8032 section 7.1, TEST 1 and TEST 2, so a second implementation can cross-check its Ed25519.
SEED_1 = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
SEED_2 = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
TIME_0 = 1767225600000  # 2026-01-01T00:00:00Z in milliseconds
PACK_ID = "00112233445566778899aabbccddeeff"


def tv(v: Any) -> Json:
    """A value in the typed JSON notation of spec/README.md (map pairs keep the order they were given in)."""
    if v is None:
        return {"nil": None}
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"float": v}
    if isinstance(v, str):
        return {"str": v}
    if isinstance(v, bytes):
        return {"bin": v.hex()}
    if isinstance(v, list):
        return {"array": [tv(x) for x in v]}
    if isinstance(v, dict):
        return {"map": [[tv(k), tv(x)] for k, x in v.items()]}
    raise TypeError(f"no typed notation for {type(v).__name__}")


def pattern(n: int) -> bytes:
    """The BLAKE3 reference vectors' input pattern: byte i is i mod 251."""
    return bytes(i % 251 for i in range(n))


def nested(depth: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(depth - 1):
        v = [v]
    return v


def refused(data: bytes) -> bool:
    try:
        encoding.decode(data)
    except DecodeError:
        return True
    return False


# encoding.json -----------------------------------------------------------------------------------------------------

def gen_encoding() -> Json:
    valid: list[tuple[str, Any]] = [
        ("nil", None), ("false", False), ("true", True),
        ("int 0: positive fixint", 0), ("int 1", 1), ("int 127: largest positive fixint", 127),
        ("int 128: uint8", 128), ("int 255: largest uint8", 255), ("int 256: uint16", 256),
        ("int 65535: largest uint16", 65535), ("int 65536: uint32", 65536),
        ("int 2^32-1: largest uint32", 2**32 - 1), ("int 2^32: uint64", 2**32),
        ("int 2^64-1: largest integer", 2**64 - 1),
        ("int -1: negative fixint", -1), ("int -32: smallest negative fixint", -32), ("int -33: int8", -33),
        ("int -128: smallest int8", -128), ("int -129: int16", -129), ("int -32768: smallest int16", -32768),
        ("int -32769: int32", -32769), ("int -2^31: smallest int32", -(2**31)), ("int -2^31-1: int64", -(2**31) - 1),
        ("int -2^63: smallest integer", -(2**63)),
        ("str empty", ""), ("str 'a'", "a"), ("str 31 bytes: largest fixstr", "s" * 31),
        ("str 32 bytes: str8", "s" * 32), ("str 255 bytes: largest str8", "s" * 255),
        ("str 256 bytes: str16", "s" * 256),
        ("str 'é' (2 UTF-8 bytes)", "é"), ("str U+1F600 (4 UTF-8 bytes)", "\U0001f600"),
        ("str with NUL", "a\x00b"),
        ("bin empty: bin8 (there is no fixbin)", b""), ("bin 1 byte", b"\x00"),
        ("bin 255 bytes: largest bin8", pattern(255)),
        ("bin 256 bytes: bin16", pattern(256)),
        ("array empty", []), ("array [1, 2, 3]", [1, 2, 3]), ("array 15 elements: largest fixarray", list(range(15))),
        ("array 16 elements: array16", list(range(16))),
        ("array of mixed types", [None, True, -1, "x", b"x", [], {}]),
        ("map empty", {}), ("map {'a': 1}", {"a": 1}),
        ("map keys given unsorted are encoded sorted", {"b": 1, "a": 2}),
        ("map keys sorted by UTF-8 bytes, not by UTF-16 code units",
         {"\U0001f600": 1, "\uff61": 2, "é": 3, "z": 4, "aa": 5, "a": 6, "B": 7, "": 8}),
        ("map a key is a prefix of another: shorter first", {"ab": 1, "a": 2, "abc": 3}),
        ("map 15 entries: largest fixmap", {f"k{i:02d}": i for i in range(15)}),
        ("map 16 entries: map16", {f"k{i:02d}": i for i in range(16)}),
        ("nested maps and arrays", {"z": [{"y": b"\x01", "x": None}], "a": {"c": [1, [2, [3]]], "b": False}}),
        ("33 nested arrays: the deepest allowed nesting", nested(33)),
        ("an item entry (spec/tree.md)", {"name": "data/a.csv", "kind": "file", "size": 1234,
                                          "blake3": content_digest(b"abc")}),
    ]
    out_valid = []
    for name, value in valid:
        data = encoding.encode(value)
        out_valid.append({"name": name, "value": tv(value), "hex": data.hex()})

    h = bytes.fromhex
    invalid: list[tuple[str, str, bytes, str]] = [
        ("empty input", "malformed", b"", "no value"),
        ("truncated array", "malformed", h("9201"), "array of 2 elements holds only 1"),
        ("truncated str", "malformed", h("a261"), "str of 2 bytes holds only 1"),
        ("truncated uint16", "malformed", h("cd01"), "uint16 needs 2 bytes"),
        ("truncated bin8 length", "malformed", h("c4"), "bin8 without its length byte"),
        ("trailing byte after nil", "malformed", h("c0c0"), "exactly one value, no trailing bytes"),
        ("trailing byte after int", "malformed", h("0501"), "exactly one value, no trailing bytes"),
        ("trailing map after map", "malformed", h("81a161c081a162c0"), "exactly one value, no trailing bytes"),
        ("reserved byte 0xc1", "malformed", h("c1"), "0xc1 is never used"),
        ("float32", "forbidden-type", h("ca3f800000"), "floats are not allowed"),
        ("float64", "forbidden-type", h("cb3ff0000000000000"), "floats are not allowed"),
        ("fixext1 type 1", "forbidden-type", h("d40100"), "extension types are not allowed"),
        ("ext8 type 5", "forbidden-type", h("c702056162"), "extension types are not allowed"),
        ("timestamp32 (ext type -1)", "forbidden-type", h("d6ff00000001"),
         "extension types, timestamps included, are not allowed"),
        ("timestamp96 (ext8 type -1)", "forbidden-type", h("c70cff" + "00" * 12), "extension types are not allowed"),
        ("map key is an int", "forbidden-type", h("8101c0"), "map keys must be str"),
        ("map key is bin", "forbidden-type", h("81c40161c0"), "map keys must be str, not bin"),
        ("map key is nil", "forbidden-type", h("81c0c0"), "map keys must be str"),
        ("uint8 for 5", "non-canonical", h("cc05"), "5 is the positive fixint 0x05"),
        ("uint16 for 255", "non-canonical", h("cd00ff"), "255 is uint8 0xcc 0xff"),
        ("uint32 for 65535", "non-canonical", h("ce0000ffff"), "65535 is uint16"),
        ("uint64 for 2^32-1", "non-canonical", h("cf00000000ffffffff"), "2^32-1 is uint32"),
        ("int8 for positive 5", "non-canonical", h("d005"),
         "non-negative integers use the positive fixint/uint family"),
        ("int64 for positive 2^32", "non-canonical", h("d30000000100000000"), "non-negative integers use uint"),
        ("int8 for -1", "non-canonical", h("d0ff"), "-1 is the negative fixint 0xff"),
        ("int8 for -32", "non-canonical", h("d0e0"), "-32 is the negative fixint 0xe0"),
        ("int16 for -128", "non-canonical", h("d1ff80"), "-128 is int8"),
        ("int32 for -32768", "non-canonical", h("d2ffff8000"), "-32768 is int16"),
        ("int64 for -1", "non-canonical", h("d3ffffffffffffffff"), "-1 is the negative fixint 0xff"),
        ("str8 for a 1-byte string", "non-canonical", h("d90161"), "strings under 32 bytes are fixstr"),
        ("str8 for the empty string", "non-canonical", h("d900"), "the empty string is 0xa0"),
        ("str16 for a 1-byte string", "non-canonical", h("da000161"), "strings under 32 bytes are fixstr"),
        ("str32 for a 1-byte string", "non-canonical", h("db0000000161"), "strings under 32 bytes are fixstr"),
        ("bin16 for 1 byte", "non-canonical", h("c5000161"), "bin under 256 bytes is bin8"),
        ("bin32 for 1 byte", "non-canonical", h("c60000000161"), "bin under 256 bytes is bin8"),
        ("array16 for an empty array", "non-canonical", h("dc0000"), "arrays under 16 elements are fixarray"),
        ("array32 for a 1-element array", "non-canonical", h("dd00000001c0"), "arrays under 16 elements are fixarray"),
        ("map16 for an empty map", "non-canonical", h("de0000"), "maps under 16 entries are fixmap"),
        ("map32 for a 1-entry map", "non-canonical", h("df00000001a161c0"), "maps under 16 entries are fixmap"),
        ("map keys not sorted", "non-canonical", h("82a162c0a161c0"), "keys must be in ascending UTF-8 byte order"),
        ("map keys sorted by UTF-16, not UTF-8", "non-canonical",
         encoding.pack_trusted({"\U0001f600": 1, "\uff61": 2}), "U+FF61 (ef bd a1) sorts before U+1F600 (f0 9f 98 80)"),
        ("map with a duplicate key", "non-canonical", h("82a161c0a161c3"), "keys must be unique"),
        ("map with a duplicate key, equal values", "non-canonical", h("82a161c0a161c0"), "keys must be unique"),
        ("nested map keys not sorted", "non-canonical", h("9182a162c0a161c0"), "the rules hold at every depth"),
        ("str: invalid UTF-8 byte 0xff", "invalid-utf8", h("a1ff"), "str must be valid UTF-8"),
        ("str: lone continuation byte", "invalid-utf8", h("a180"), "str must be valid UTF-8"),
        ("str: overlong encoding of '/'", "invalid-utf8", h("a2c0af"), "overlong forms are not UTF-8"),
        ("str: UTF-8-encoded surrogate U+D800", "invalid-utf8", h("a3eda080"), "surrogates are not UTF-8"),
        ("str: code point above U+10FFFF", "invalid-utf8", h("a4f4900000"), "beyond U+10FFFF is not UTF-8"),
        ("map key: invalid UTF-8", "invalid-utf8", h("81a1ffc0"), "map keys are str, so UTF-8"),
        ("34 nested arrays", "too-deep", b"\x91" * 33 + b"\x90", "at most 32 containers may enclose a value"),
        ("33 nested arrays around an int", "too-deep", b"\x91" * 33 + b"\x00", "the int is enclosed by 33 containers"),
    ]
    out_invalid = []
    for name, cls, data, reason in invalid:
        if not refused(data):
            raise AssertionError(f"encoding vector {name!r}: the implementation accepts it")
        out_invalid.append({"name": name, "class": cls, "hex": data.hex(), "reason": reason})

    unencodable: list[tuple[str, Any, str]] = [
        ("float", 1.5, "floats are not allowed"),
        ("float inside an array", [1, 0.5], "floats are not allowed at any depth"),
        ("int 2^64", 2**64, "outside [-2^63, 2^64-1]"),
        ("int -2^63-1", -(2**63) - 1, "outside [-2^63, 2^64-1]"),
        ("map with an int key", {1: 2}, "map keys must be str"),
        ("map with a bin key", {b"k": 2}, "map keys must be str"),
        ("34 nested arrays", nested(34), "at most 32 containers may enclose a value"),
    ]
    out_unenc = []
    for name, value, reason in unencodable:
        try:
            encoding.encode(value)
        except DecodeError:
            pass
        else:
            raise AssertionError(f"encoding vector {name!r}: the implementation encodes it")
        out_unenc.append({"name": name, "value": tv(value), "reason": reason})

    return {
        "description": "Canonical encoding (spec/encoding.md). valid: encode(value) MUST be exactly hex, and "
                       "decode(hex) MUST give value back. invalid: decode MUST refuse hex. unencodable: encode MUST "
                       "refuse value.",
        "valid": out_valid, "invalid": out_invalid, "unencodable": out_unenc,
    }


# digests.json ------------------------------------------------------------------------------------------------------

CONTEXTS = {
    "evidence-tree": CTX_TREE, "tree-node": CTX_NODE, "commit": CTX_COMMIT, "commit-log": CTX_LOG,
    "key-id": CTX_KEY_ID, "node-boundary": CTX_BOUNDARY, "pack-index": CTX_PACK_INDEX, "policy": CTX_POLICY,
}


def gen_digests() -> Json:
    inputs = [b"", b"abc", pattern(1), pattern(1023), pattern(1024), pattern(1025), pattern(2048), pattern(2049)]
    content = [{"input_hex": d.hex(), "blake3": content_digest(d).hex()} for d in inputs]
    typed = []
    for label, ctx in CONTEXTS.items():
        for d in (b"", b"abc", pattern(1025)):
            typed.append({"type": label, "context": ctx, "input_hex": d.hex(), "digest": typed_digest(ctx, d).hex()})
    pub = SigningKey(Ed25519PrivateKey.from_private_bytes(SEED_1)).public.raw
    return {
        "description": "Digests (spec/digests.md). content: plain BLAKE3-256 (= b3sum). typed: BLAKE3-256 in "
                       "derive_key mode with the context string (= b3sum --derive-key CONTEXT). The same input under "
                       "two contexts gives unrelated digests.",
        "format": FORMAT,
        "contexts": CONTEXTS,
        "signature_context": {"text": SIGNATURE_CONTEXT.decode("ascii"), "hex": SIGNATURE_CONTEXT.hex(),
                              "length": len(SIGNATURE_CONTEXT)},
        "content": content,
        "typed": typed,
        "key_id": [{"public_key": pub.hex(), "key_id": key_id(pub).hex()}],
    }


# merkle.json -------------------------------------------------------------------------------------------------------

HASHERS: dict[str, Hasher] = {
    "evidence-tree": TREE_HASHER,
    "commit-log": LOG_HASHER,
    "sha256": SHA256,
}


def leaves(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


def gen_merkle() -> Json:
    trees = []
    for hname, hasher in HASHERS.items():
        for n in (0, 1, 2, 3, 4, 5, 7, 8, 13):
            data = leaves(n)
            lh = [hasher.leaf(d) for d in data]
            trees.append({"hasher": hname, "leaves_hex": [d.hex() for d in data],
                          "leaf_hashes": [x.hex() for x in lh], "root": root_from_leaf_hashes(hasher, lh).hex()})
    lh7 = [TREE_HASHER.leaf(d) for d in leaves(7)]
    incl = [{"hasher": "evidence-tree", "size": 7, "index": i, "leaf_hash": lh7[i].hex(),
             "proof": [p.hex() for p in inclusion_proof(TREE_HASHER, lh7, i)],
             "root": root_from_leaf_hashes(TREE_HASHER, lh7).hex()} for i in range(7)]
    lh8 = [LOG_HASHER.leaf(d) for d in leaves(8)]
    cons = []
    for m, n in ((1, 5), (3, 7), (4, 8), (6, 8)):
        cons.append({"hasher": "commit-log", "size1": m, "size2": n,
                     "root1": root_from_leaf_hashes(LOG_HASHER, lh8[:m]).hex(),
                     "root2": root_from_leaf_hashes(LOG_HASHER, lh8[:n]).hex(),
                     "proof": [p.hex() for p in consistency_proof(LOG_HASHER, lh8[:n], m)]})
    return {
        "description": "RFC 9162 Merkle trees with an injected hash (spec/merkle.md): leaf = H(0x00 || data), "
                       "node = H(0x01 || left || right), empty tree = H(''). Leaf data here is the ASCII text "
                       "'leaf <i>'. The sha256 rows are RFC 9162 exactly.",
        "hashers": {"evidence-tree": {"function": "blake3-derive-key", "context": CTX_TREE},
                    "commit-log": {"function": "blake3-derive-key", "context": CTX_LOG},
                    "sha256": {"function": "sha256"}},
        "trees": trees, "inclusion": incl, "consistency": cons,
    }


# tree.json ---------------------------------------------------------------------------------------------------------

CONTENT: dict[bytes, bytes] = {}  # content digest -> content, of every item the vectors make


def vector_record(kind: str, name: str, i: int) -> bytes | None:
    """The content of item ``i`` of a tree case whose kind is typed: a valid record of that kind in its stored form
    (spec/kinds.md), so that every tree case is a run that could be sealed. None for the untyped kinds."""
    values: dict[str, dict[str, Any]] = {
        "offsets": {"group": "vectors", "topic": "orders", "partition": i, "start": 0, "end": 100 + i},
        "receipt": {"source": "vectors", "batch": f"b{i}", "count": i},
        "summary": {"name": f"s{i}", "items": i},
        "artifact": {"name": name, "version": f"1.{i}"},
        "decision": {"name": name, "outcome": "accept"},
    }
    v = values.get(kind)
    return None if v is None else kinds.canonical_json(v)


def entry_for(name: str, kind: str, content: bytes) -> ItemEntry:
    d = content_digest(content)
    CONTENT[d] = content
    return ItemEntry(name, kind, len(content), d)


def item(name: str, i: int) -> ItemEntry:
    """Item ``i`` (in name order) of a tree case: kinds in turn; a file's content is its name and a newline,
    repeated i % 5 + 1 times; a typed item's content is a record of its kind."""
    kind = KINDS[i % len(KINDS)]
    content = vector_record(kind, name, i)
    if content is None:
        content = (name + "\n").encode() * (i % 5 + 1)
    return entry_for(name, kind, content)


def items_for(names: list[str]) -> list[ItemEntry]:
    ordered = sorted(names, key=lambda s: s.encode("utf-8"))
    return [item(n, i) for i, n in enumerate(ordered)]


def pick_names(prefix: str, ranks: list[int]) -> list[str]:
    """The first names ``prefix%05d`` (in order) whose ranks follow ``ranks``: a fixed, searchable choice."""
    out, i = [], 0
    for want in ranks:
        while tree.rank(f"{prefix}{i:05d}") != want:
            i += 1
        out.append(f"{prefix}{i:05d}")
        i += 1
    return out


def item_json(e: ItemEntry) -> Json:
    return {"name": e.name, "kind": e.kind, "size": e.size, "blake3": e.blake3.hex(), "rank": tree.rank(e.name),
            "content_hex": CONTENT[e.blake3].hex()}


def build_levels(items: list[ItemEntry]) -> tuple[Digest, list[list[Json]]]:
    emitted: list[tuple[Digest, bytes]] = []
    root, _ = tree.build(items, lambda nid, b: emitted.append((nid, b)))
    levels: dict[int, list[Json]] = {}
    for nid, data in emitted:
        level, raw, enc = tree.decode_node(nid, data)
        er = root_from_leaf_hashes(TREE_HASHER, [TREE_HASHER.leaf(e) for e in enc])
        if level == 0:
            count, last = len(raw), (raw[-1]["name"] if raw else None)
        else:
            count, last = sum(cast(int, e["count"]) for e in raw), raw[-1]["last"]
        assert node_id(level, count, er) == nid
        levels.setdefault(level, []).append({"id": nid.hex(), "level": level, "count": count, "last": last,
                                             "entries": len(raw), "entries_root": er.hex(), "hex": data.hex()})
    return root, [levels[k] for k in sorted(levels)]


def sealed_roots(items: list[ItemEntry]) -> tuple[Digest, Digest]:
    """The tree's root id and its items root, computed as a seal computes them: one streaming TreeBuilder pass."""
    b = TreeBuilder()
    for it in items:
        b.add(it)
    root = b.finish()
    assert b.items_root is not None
    # The items root is the RFC 9162 root over the item entries' leaf hashes, the very leaves of the level-0 nodes.
    assert b.items_root == root_from_leaf_hashes(TREE_HASHER, [TREE_HASHER.leaf(e.encode()) for e in items])
    return root, b.items_root


def tree_case(name: str, about: str, items: list[ItemEntry]) -> Json:
    root, levels = build_levels(items)
    sealed_root, items_root = sealed_roots(items)
    assert sealed_root == root
    return {"name": name, "about": about, "items": [item_json(e) for e in items], "levels": levels,
            "root": root.hex(), "items_root": items_root.hex(), "count": len(items),
            "bytes": sum(e.size for e in items)}


def mk_node(level: int, entries: list[bytes], count: int) -> tuple[Digest, bytes]:
    er = root_from_leaf_hashes(TREE_HASHER, [TREE_HASHER.leaf(e) for e in entries])
    return node_id(level, count, er), encode_node(level, entries)


def invalid_tree_cases(deep: list[ItemEntry]) -> list[Json]:
    out: list[Json] = []

    def add(name: str, expect: str, reason: str, root: Digest, nodes: dict[Digest, bytes]) -> None:
        out.append({"name": name, "expect": expect, "reason": reason, "root": root.hex(),
                    "nodes": {k.hex(): v.hex() for k, v in nodes.items()}})

    small = deep[:3]
    nid, data = mk_node(0, [e.encode() for e in small], len(small))
    flipped = bytearray(data)
    flipped[-10] ^= 0x01  # inside the last item's blake3 digest
    add("node bytes changed", "walk-error", "the node id re-derived from the bytes differs from the id it was "
        "fetched by", nid, {nid: bytes(flipped)})

    swapped = [small[1], small[0], small[2]]
    nid, data = mk_node(0, [e.encode() for e in swapped], 3)
    add("items out of order", "walk-error", "item names must be strictly increasing (UTF-8 byte order); the id "
        "matches the bytes, so only the order check catches it", nid, {nid: data})

    dup = [small[0], small[0]]
    nid, data = mk_node(0, [e.encode() for e in dup], 2)
    add("duplicate item name", "walk-error", "item names must be strictly increasing, so unique", nid, {nid: data})

    bad_kind = {"blake3": small[0].blake3, "kind": "binary", "name": small[0].name, "size": small[0].size}
    nid, data = mk_node(0, [encoding.encode(bad_kind)], 1)
    add("unknown kind", "walk-error", "kind must be one of the ledger/1 kinds", nid, {nid: data})

    bad_name = {"blake3": small[0].blake3, "kind": "file", "name": "../etc/passwd", "size": 1}
    nid, data = mk_node(0, [encoding.encode(bad_name)], 1)
    add("invalid item name", "walk-error", "item names are validated as in spec/objects.md", nid, {nid: data})

    extra = {"blake3": small[0].blake3, "kind": "file", "name": small[0].name, "size": small[0].size, "x": 1}
    nid, data = mk_node(0, [encoding.encode(extra)], 1)
    add("unknown field in an item entry", "walk-error", "entries have exactly their fields", nid, {nid: data})

    nid, data = mk_node(0, [e.encode() for e in small], len(small))
    noncanon = data[:-1] + b"\xd0\x00"  # level 0 as int8: decodes to the same node, but is not canonical
    add("node bytes not canonical", "walk-error", "node bytes must be canonical even though the id is derived from "
        "the decoded parts", nid, {nid: noncanon})

    # Two leaves under one interior node, with the first child's count off by one (parent id made consistent).
    a_id, a = mk_node(0, [e.encode() for e in deep[:2]], 2)
    b_id, b = mk_node(0, [e.encode() for e in deep[2:4]], 2)
    kids = [ChildEntry(deep[1].name, 3, a_id).encode(), ChildEntry(deep[3].name, 2, b_id).encode()]
    top, topb = mk_node(1, kids, 5)
    add("child count wrong", "walk-error", "a child entry's count must equal the items under the child", top,
        {top: topb, a_id: a, b_id: b})

    kids = [ChildEntry(deep[0].name, 2, a_id).encode(), ChildEntry(deep[3].name, 2, b_id).encode()]
    top, topb = mk_node(1, kids, 4)
    add("child last wrong", "walk-error", "a child entry's last must be the name of the last item under the child",
        top, {top: topb, a_id: a, b_id: b})

    kids = [ChildEntry(deep[1].name, 2, a_id).encode(), ChildEntry(deep[3].name, 2, b_id).encode()]
    top, topb = mk_node(2, kids, 4)
    add("child level wrong", "walk-error", "a child of a level-L node is at level L-1", top,
        {top: topb, a_id: a, b_id: b})

    top, topb = mk_node(1, [], 0)
    add("interior node without children", "walk-error", "only the empty tree's level-0 root has no entries", top,
        {top: topb})

    kids = [ChildEntry(deep[1].name, 2, a_id).encode(), ChildEntry(deep[3].name, 2, b_id).encode()]
    top, topb = mk_node(1, kids, 4)
    add("child node missing", "walk-error", "every node reachable from the root must be present", top,
        {top: topb, a_id: a})

    # Well-formed nodes, but not the canonical shape: all items in one level-0 node.
    nid, data = mk_node(0, [e.encode() for e in deep], len(deep))
    add("non-canonical shape", "rebuild-mismatch", "every node checks out, but the boundaries are not the ones "
        "the rank rule gives: rebuilding the root from the items gives another root", nid, {nid: data})
    return out


# The run sealed under the example policy (commits.json slot 3; policies.json evaluations): typed records whose
# 'orders' offsets continue the ranges slot 2 sealed for group 'vectors' and whose 'payments' offsets start new
# streams, receipts and a summary that reconcile with the offsets spans, an artifact, a decision, a file and a log
# with a waived secret finding.
POLICY_RUN = "nightly-44"
POLICY_RUN_RECORDS: list[tuple[str, dict[str, Any]]] = [
    ("offsets", {"group": "vectors", "topic": "orders", "partition": 3, "start": 103, "end": 160}),
    ("offsets", {"group": "vectors", "topic": "orders", "partition": 11, "start": 111, "end": 150}),
    ("offsets", {"topic": "payments", "partition": 0, "start": 0, "end": 40}),
    ("offsets", {"topic": "payments", "partition": 1, "start": 5, "end": 25, "high": 30}),
    ("receipt", {"source": "kafka-orders", "count": 96, "first": 103, "last": "orders-11@149"}),
    ("receipt", {"source": "kafka-payments", "batch": "b-0007", "count": 60,
                 "digest": "b3:" + content_digest(b"payments batch b-0007").hex()}),
    ("summary", {"ingested": 148, "duplicates": 6, "quarantined": 2}),
    ("artifact", {"name": "ingest-worker", "version": "2026.11.3",
                  "digest": "sha256:" + hashlib.sha256(b"ingest-worker 2026.11.3").hexdigest()}),
    ("decision", {"name": "release", "outcome": "publish", "reason": "every criterion holds",
                  "inputs": ["b3:" + content_digest(b"release inputs").hex()]}),
]
POLICY_RUN_FILES = [
    ("data/orders.csv", "file", b"id,amount\n1,20\n2,35\n"),
    ("logs/build.log", "log", b"build started\ncache key: 'c2VjcmV0LWxvb2tpbmctY2FjaGUta2V5'\nbuild finished\n"),
]
POLICY_RUN_WAIVER = Waived("logs/build.log", 2, "Base64 High Entropy String", "logs/*.log",
                           "build cache keys, not credentials", None, "Base64 High Entropy String")


def policy_run_items() -> list[tuple[str, str, bytes]]:
    """(name, kind, content) of the policy run's items, in name order; records under their default names."""
    out = list(POLICY_RUN_FILES)
    for kind, value in POLICY_RUN_RECORDS:
        kinds.validate(kind, value, "vector record")
        content = kinds.canonical_json(value)
        out.append((kinds.default_name(kind, value, content_digest(content).hex()), kind, content))
    return sorted(out, key=lambda x: x[0].encode("utf-8"))


def gen_tree() -> Json:
    deep = items_for(pick_names("deep/", [0, 1, 0, 2, 0, 1, 0]))
    cases = [
        tree_case("empty", "no items: the root is a level-0 node without entries", []),
        tree_case("single item", "one level-0 node", items_for(["report.json"])),
        tree_case("trailing boundary", "the last item has rank 1, but the last node of a level ends at the end "
                  "(close lazily): one level-0 node, no extra level", items_for(pick_names("trail/", [0, 0, 1]))),
        tree_case("leading boundary", "the first item has rank 1: two level-0 nodes under a level-1 root",
                  items_for(pick_names("lead/", [1, 0, 0]))),
        tree_case("deep", "ranks 0,1,0,2,0,1,0: four level-0 nodes, two level-1 nodes, a level-2 root", deep),
        tree_case("utf-8 order", "names sort by UTF-8 bytes: U+FF61 before U+1F600, 'Z' before 'a'",
                  items_for(["u/\U0001f600", "u/\uff61", "u/é", "u/z", "u/a", "u/Z", "u/a/b", "u/a b"])),
        tree_case("300 items", "a realistic fan-out: several nodes per level, three levels",
                  items_for([f"data/{i:04d}.csv" for i in range(300)])),
        tree_case("typed records", "the run sealed under the example policy (commits.json slot 3): offsets, "
                  "receipts, a summary, an artifact and a decision under their default names, a file and a log",
                  [entry_for(n, k, c) for n, k, c in policy_run_items()]),
    ]
    ranks = [{"key": k, "boundary_hash": typed_digest(CTX_BOUNDARY, k.encode()).hex(), "rank": tree.rank(k)}
             for k in ["", "a", "report.json", *pick_names("deep/", [0, 1, 2]), "u/\U0001f600"]]
    return {
        "description": "The evidence tree (spec/tree.md). For each case: the items (sorted by name, each with its "
                       "content; a typed item's content is a valid record of its kind, spec/kinds.md), every node by "
                       "level, left to right (canonical bytes, id, item count, last name, RFC 9162 root over the "
                       "entries), the root id, and the items root (spec/tree.md section 7: the RFC 9162 root over "
                       "every item entry, in name order). invalid: node sets a verifier MUST reject, by root and nodes "
                       "by id.",
        "parameters": {"bits_per_level": tree.BITS_PER_LEVEL, "boundary_context": CTX_BOUNDARY,
                       "tree_context": CTX_TREE, "node_context": CTX_NODE},
        "ranks": ranks,
        "cases": cases,
        "invalid": invalid_tree_cases(deep),
    }


# commits.json ------------------------------------------------------------------------------------------------------

def signing_key(seed: bytes) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


def body_json(b: CommitBody) -> Json:
    return {"anchors": [list(a) for a in b.anchors], "bytes": b.total_bytes, "count": b.count,
            "criteria": [list(c) for c in b.criteria], "format": FORMAT, "items_root": b.items_root.hex(),
            "key": b.key.hex(), "log_root": b.log_root.hex(), "log_size": b.log_size, "nonce": b.nonce.hex(),
            "parent": b.parent.hex() if b.parent else None, "policy": b.policy.hex() if b.policy else None,
            "root": b.root.hex(), "run": b.run, "seq": b.seq, "time": b.time_ms,
            "waivers": [w.to_value() for w in b.waivers]}


def case_evidence(case: Json) -> tuple[list[ItemEntry], dict[str, bytes]]:
    entries = [ItemEntry(i["name"], i["kind"], i["size"], Digest(bytes.fromhex(i["blake3"]))) for i in case["items"]]
    return entries, {i["name"]: bytes.fromhex(i["content_hex"]) for i in case["items"]}


def sealed_outcome(case: Json, policy: Policy | None, earlier: list[CommitBody]) -> tuple[
        tuple[tuple[str, bool, str], ...], tuple[tuple[str, str, int, int, int], ...]]:
    """What a seal of the tree case's items records (spec/policy.md): every criterion, built-in and the policy's,
    evaluated against the anchors of the earlier commits, with content-present second; and the replay anchors."""
    entries, content = case_evidence(case)
    ev = build_evidence(entries, lambda e: content[e.name])
    prev = previous_ends([(b.seq, b.run, [kinds.Offsets(*a) for a in b.anchors]) for b in earlier])
    crit = evaluate(policy, ev, prev)
    crit.insert(1, Criterion("content-present", True, "all content stored"))
    return (tuple((c.name, c.ok, c.detail) for c in crit),
            tuple((a.group, a.topic, a.partition, a.start, a.end) for a in anchors(ev)))


def vector_nonce(seq: int) -> bytes:
    """The vectors' commit nonces (a sealer draws 16 random bytes; vectors need fixed ones)."""
    return f"vector nonce {seq:03d}".encode()


def gen_commits(tree_vectors: Json, policy: Policy) -> Json:
    k1, k2 = signing_key(SEED_1), signing_key(SEED_2)
    cases = {c["name"]: c for c in tree_vectors["cases"]}
    sealed: list[tuple[str, Json, Policy | None, tuple[Waived, ...]]] = [
        ("nightly-41", cases["single item"], None, ()), ("nightly-42", cases["deep"], None, ()),
        ("nightly-43", cases["300 items"], None, ()),
        (POLICY_RUN, cases["typed records"], policy, (POLICY_RUN_WAIVER,))]
    chain: list[SignedCommit] = []
    out_chain = []
    for seq, (run, tc, pol, waivers) in enumerate(sealed):
        log_leaves = [LOG_HASHER.leaf(c.digest) for c in chain]
        criteria, anchor_rows = sealed_outcome(tc, pol, [c.body for c in chain])
        root, items_root = sealed_roots(case_evidence(tc)[0])
        assert (root.hex(), items_root.hex()) == (tc["root"], tc["items_root"])
        body = CommitBody(run=run, seq=seq, parent=chain[-1].digest if chain else None, root=root,
                          items_root=items_root, count=tc["count"], total_bytes=tc["bytes"],
                          time_ms=TIME_0 + 60_000 * seq, key=k1.public.key_id, log_size=seq,
                          log_root=Digest(root_from_leaf_hashes(LOG_HASHER, log_leaves)),
                          nonce=vector_nonce(seq), anchors=anchor_rows,
                          policy=pol.digest if pol is not None else None, criteria=criteria, waivers=waivers)
        assert all(ok for _, ok, _ in criteria), (run, criteria)
        bb = body.encode()
        commit = SignedCommit(bb, k1.sign(bb), body)
        chain.append(commit)
        out_chain.append({"slot": layout.slot_key(seq), "tree_case": tc["name"], "body": body_json(body),
                          "body_hex": bb.hex(), "digest": commit.digest.hex(), "signature": commit.sig.hex(),
                          "envelope_hex": commit.encode().hex()})

    base = chain[1]
    bb = base.body_bytes
    inv: list[Json] = []

    def env(body_bytes: bytes, sig: bytes) -> bytes:
        return encoding.encode({"body": body_bytes, "sig": sig})

    def add(name: str, expect: str, reason: str, data: bytes) -> None:
        inv.append({"name": name, "expect": expect, "reason": reason, "envelope_hex": data.hex()})

    def body_with(**changes: Any) -> bytes:
        v = base.body.to_value()
        v.update(changes)
        return encoding.encode(v)

    def without(field: str) -> bytes:
        v = base.body.to_value()
        del v[field]
        return encoding.encode(v)

    i = bb.index(b"nightly-42")
    tampered = bb[:i] + b"nightly-99" + bb[i + 10:]
    add("body changed after signing (run id)", "bad-signature", "the signature covers the exact body bytes",
        env(tampered, base.sig))
    j = bb.index(base.body.root)
    tampered = bb[:j] + bytes([bb[j] ^ 1]) + bb[j + 1:]
    add("body changed after signing (root)", "bad-signature", "the signature covers the exact body bytes",
        env(tampered, base.sig))
    j = bb.index(base.body.items_root)
    tampered = bb[:j] + bytes([bb[j] ^ 1]) + bb[j + 1:]
    add("body changed after signing (items_root)", "bad-signature", "the signature covers the exact body bytes",
        env(tampered, base.sig))
    sig = bytearray(base.sig)
    sig[0] ^= 0x01
    add("signature bit flipped", "bad-signature", "Ed25519 verification fails", env(bb, bytes(sig)))
    add("signed without the context string", "bad-signature", "the signed message is the context string, then "
        "the body bytes", env(bb, k1.private.sign(bb)))
    add("signed by a key other than the one the body names", "bad-signature", "the key id selects a trusted key; "
        "the signature must verify under that key", env(bb, k2.sign(bb)))
    other = body_with(key=k2.public.key_id)
    add("signed by an untrusted key", "untrusted-key", "the body names key 2; the auditor trusts only key 1 (a key "
        "found in the store is never trusted)", env(other, k2.sign(other)))
    add("envelope with an unknown field", "decode-error", "the envelope has exactly body and sig",
        encoding.encode({"body": bb, "sig": base.sig, "x": 1}))
    add("envelope without sig", "decode-error", "the envelope has exactly body and sig", encoding.encode({"body": bb}))
    add("signature of 63 bytes", "decode-error", "an Ed25519 signature is 64 bytes", env(bb, base.sig[:63]))
    add("body is a str, not bin", "decode-error", "body is bin", encoding.encode({"body": bb.hex(), "sig": base.sig}))
    add("envelope not canonical", "decode-error", "the envelope's keys are out of order",
        encoding.pack_trusted({"sig": base.sig, "body": bb}))
    add("trailing byte after the envelope", "decode-error", "exactly one value", base.encode() + b"\x00")
    for name, data in [
        ("format ledger/2", body_with(format="ledger/2")),
        ("unknown field in the body", body_with(extra=1)),
        ("missing field time", without("time")),
        ("seq 1 without parent", body_with(parent=None)),
        ("parent of 31 bytes", body_with(parent=base.body.parent[:31] if base.body.parent else b"")),
        ("root of 33 bytes", body_with(root=base.body.root + b"\x00")),
        ("items_root of 31 bytes", body_with(items_root=base.body.items_root[:31])),
        ("items_root is nil", body_with(items_root=None)),
        ("items_root as a hex str", body_with(items_root=base.body.items_root.hex())),
        ("missing field items_root", without("items_root")),
        ("log_size differs from seq", body_with(log_size=2)),
        ("seq negative", body_with(seq=-1, log_size=-1)),
        ("seq above 2^63-1", body_with(seq=2**63, log_size=2**63)),
        ("count is a str", body_with(count="7")),
        ("time is a bool", body_with(time=True)),
        ("invalid run id", body_with(run="-nightly")),
        ("key id of 32 bytes as str", body_with(key=base.body.key.hex())),
        ("nonce of 15 bytes", body_with(nonce=base.body.nonce[:15])),
        ("missing field nonce", without("nonce")),
    ]:
        add(f"body: {name}", "decode-error", "the body is refused before any signature check (spec/objects.md)",
            env(data, k1.sign(data)))
    # The commit sealed under a policy (slot 3): anchors, policy digest, criteria and a waiver, each broken in turn.
    typed = chain[3].body

    def typed_with(**changes: Any) -> bytes:
        v = typed.to_value()
        v.update(changes)
        return encoding.encode(v)

    rows: list[list[Any]] = [list(a) for a in typed.anchors]
    crit = [list(c) for c in typed.criteria]
    waiver = typed.waivers[0].to_value()
    g, t, p, start, end = rows[0]
    for name, data in [
        ("anchors not sorted", typed_with(anchors=list(reversed(rows)))),
        ("anchors: a partition given twice", typed_with(anchors=sorted([*rows, [g, t, p, end, end + 5]]))),
        ("anchors: start after end", typed_with(anchors=[[g, t, p, end + 1, end], *rows[1:]])),
        ("anchors: an entry of 4 elements", typed_with(anchors=[[g, t, p, end], *rows[1:]])),
        ("anchors: partition 2^31", typed_with(anchors=[*rows[:-1], [*rows[-1][:2], 2**31, *rows[-1][3:]]])),
        ("anchors: empty topic", typed_with(anchors=[[g, "", p, start, end], *rows[1:]])),
        ("anchors: end above 2^63-1", typed_with(anchors=[*rows[:-1], [*rows[-1][:4], 2**63]])),
        ("anchors: partition is a bool", typed_with(anchors=[[g, t, True, start, end], *rows[1:]])),
        ("criteria: ok is an int", typed_with(criteria=[[crit[0][0], 1, crit[0][2]], *crit[1:]])),
        ("criteria: ok is a str", typed_with(criteria=[[crit[0][0], "true", crit[0][2]], *crit[1:]])),
        ("criteria: empty criterion name", typed_with(criteria=[*crit, ["", True, "nothing"]])),
        ("criteria: an entry of 2 elements", typed_with(criteria=[crit[0][:2], *crit[1:]])),
        ("criteria: detail is nil", typed_with(criteria=[[crit[0][0], True, None], *crit[1:]])),
        ("waiver missing its rule reason",
         typed_with(waivers=[{**waiver, "rule": {k: v for k, v in waiver["rule"].items() if k != "reason"}}])),
        ("waiver: unknown field in the rule", typed_with(waivers=[{**waiver, "rule": {**waiver["rule"], "x": 1}}])),
        ("waiver: invalid item name", typed_with(waivers=[{**waiver, "item": "../build.log"}])),
        ("waiver: negative line", typed_with(waivers=[{**waiver, "line": -1}])),
        ("waiver: missing detector", typed_with(waivers=[{k: v for k, v in waiver.items() if k != "detector"}])),
        ("waiver: line 0", typed_with(waivers=[{**waiver, "line": 0}])),
        ("waiver: rule line 0", typed_with(waivers=[{**waiver, "rule": {**waiver["rule"], "line": 0}}])),
        ("waiver: empty detector", typed_with(waivers=[{**waiver, "detector": ""}])),
        ("waiver: empty rule detector", typed_with(waivers=[{**waiver, "rule": {**waiver["rule"], "detector": ""}}])),
        ("waiver: empty rule glob", typed_with(waivers=[{**waiver, "rule": {**waiver["rule"], "item": ""}}])),
        ("waiver: rule reason of whitespace only",
         typed_with(waivers=[{**waiver, "rule": {**waiver["rule"], "reason": " \t\u3000"}}])),
        ("waivers not sorted", typed_with(waivers=[{**waiver, "line": 3}, waiver])),
        ("waivers not sorted by the items' UTF-8 bytes (UTF-16 order would accept them)",
         typed_with(waivers=[{**waiver, "item": "logs/\U0001f600.log"}, {**waiver, "item": "logs/\ufb01.log"}])),
        ("waivers: one finding given twice",
         typed_with(waivers=[waiver, {**waiver, "rule": {**waiver["rule"], "reason": "another reason"}}])),
        ("policy digest of 31 bytes", typed_with(policy=bytes(typed.policy or b"")[:31])),
        ("policy digest as a hex str", typed_with(policy=(typed.policy or b"").hex())),
        ("anchors is nil", typed_with(anchors=None)),
        ("missing field criteria", encoding.encode({k: v for k, v in typed.to_value().items() if k != "criteria"})),
    ]:
        add(f"body: {name}", "decode-error", "the body is refused before any signature check (spec/objects.md)",
            env(data, k1.sign(data)))
    genesis_with_parent = encoding.encode({**chain[0].body.to_value(), "parent": chain[0].digest})
    add("body: seq 0 with a parent", "decode-error", "the genesis commit has parent nil",
        env(genesis_with_parent, k1.sign(genesis_with_parent)))
    unsorted = encoding.pack_trusted(dict(reversed(list(base.body.to_value().items()))))
    add("body not canonical, correctly signed", "decode-error", "body bytes must be canonical even when the "
        "signature over them verifies", env(unsorted, k1.sign(unsorted)))

    return {
        "description": "Closure commits (spec/objects.md). keys: Ed25519 seeds from RFC 8032 7.1 TEST 1/2. chain: "
                       "four commits of one chain, each the exact bytes of its slot (envelope_hex), sealing the "
                       "items of the tree.json case tree_case; slots 0-2 with the built-in criteria only, slot 3 "
                       "under the example policy of policies.json (its anchors continue slot 2's), with a waiver. "
                       "invalid: "
                       "envelopes a verifier trusting only key 1 MUST reject: decode-error (refused while decoding), "
                       "bad-signature, untrusted-key.",
        "signature_context_hex": SIGNATURE_CONTEXT.hex(),
        "keys": [{"seed": s.hex(), "public_key": k.public.raw.hex(), "key_id": k.public.key_id.hex()}
                 for s, k in ((SEED_1, k1), (SEED_2, k2))],
        "trusted": [k1.public.raw.hex()],
        "chain": out_chain,
        "invalid": inv,
    }


# policies.json -----------------------------------------------------------------------------------------------------

BASE_TOML = """\
# base.toml: what every run of the pipeline must prove
min = { receipt = 1, summary = 1 }
continuity = ["orders"]

[[reconcile]]
name = "consumed-vs-admitted"
left = ["offsets.span"]            # the sum of end - start over the offsets records
right = ["receipt.count"]
"""

NIGHTLY_TOML = """\
# nightly.toml: the nightly job's closure policy
include = ["base.toml"]
min = { receipt = 2 }              # composed with base.toml's 1: the larger holds
artifacts = ["ingest-worker"]
topics = { payments = 2 }          # partitions 0 and 1 each need an offsets record
continuity = ["orders", "payments"]

[[reconcile]]
name = "admitted-vs-outcomes"
left = ["receipt.count"]
right = ["summary.ingested", "summary.duplicates", "summary.quarantined"]
"""

EXAMPLE_FILES = {"base.toml": BASE_TOML, "nightly.toml": NIGHTLY_TOML}

# (name, files, the files given on the command line in order, expected: "ok" or "usage-error")
COMPOSE_CASES: list[tuple[str, dict[str, str], list[str], str]] = [
    ("one file", {"minimal.toml": "min = { file = 1 }\n"}, ["minimal.toml"], "ok"),
    ("a file and its include (the example policy)", EXAMPLE_FILES, ["nightly.toml"], "ok"),
    ("a file given twice counts once", EXAMPLE_FILES, ["nightly.toml", "nightly.toml"], "ok"),
    ("a file included by two others counts once",
     {"a.toml": 'include = ["b.toml", "c.toml"]\nartifacts = ["x"]\n', "b.toml": 'include = ["d.toml"]\n',
      "c.toml": 'include = ["d.toml"]\nmin = { file = 2 }\n', "d.toml": "min = { file = 1, log = 1 }\n"},
     ["a.toml"], "ok"),
    ("several files: min takes the maximum, artifacts and continuity are unions, topics agree",
     {"x.toml": 'min = { receipt = 3 }\nartifacts = ["a", "b"]\ntopics = { orders = 3 }\ncontinuity = ["orders"]\n',
      "y.toml": 'min = { receipt = 2, summary = 1 }\nartifacts = ["c", "b"]\ntopics = { orders = 3 }\n'
                'continuity = ["*"]\n'},
     ["x.toml", "y.toml"], "ok"),
    ("a reconcile rule without a name is named after its terms",
     {"r.toml": '[[reconcile]]\nleft = ["receipt.count"]\nright = ["offsets.span", "summary.late"]\n'},
     ["r.toml"], "ok"),
    ("a file holding only an include declares the included rules",
     {"top.toml": 'include = ["base.toml"]\n', "base.toml": "min = { file = 1 }\n"}, ["top.toml"], "ok"),
    ("a name given twice in one file counts once",
     {"p.toml": 'artifacts = ["model", "model"]\ncontinuity = ["*", "orders", "*"]\n'}, ["p.toml"], "ok"),
    ("empty policy", {"empty.toml": "# no rules\n"}, ["empty.toml"], "usage-error"),
    ("an included file that declares nothing", {"inc.toml": 'include = ["empty.toml"]\n', "empty.toml": ""},
     ["inc.toml"], "usage-error"),
    ("an empty file next to a good one", {"good.toml": "min = { file = 1 }\n", "release.toml": "# truncated\n"},
     ["good.toml", "release.toml"], "usage-error"),
    ("a file of empty rules only declares nothing",
     {"good.toml": "min = { file = 1 }\n", "p.toml": "min = {}\nartifacts = []\ninclude = []\n"},
     ["good.toml", "p.toml"], "usage-error"),
    ("unknown rule", {"p.toml": "mins = { file = 1 }\n"}, ["p.toml"], "usage-error"),
    ("min of 0", {"p.toml": "min = { file = 0 }\n"}, ["p.toml"], "usage-error"),
    ("min of an unknown kind", {"p.toml": "min = { files = 1 }\n"}, ["p.toml"], "usage-error"),
    ("min not an integer", {"p.toml": "min = { file = 1.0 }\n"}, ["p.toml"], "usage-error"),
    ("min is a boolean", {"p.toml": "min = { file = true }\n"}, ["p.toml"], "usage-error"),
    ("min not a table", {"p.toml": "min = 1\n"}, ["p.toml"], "usage-error"),
    ("topics: 0 partitions", {"p.toml": "topics = { orders = 0 }\n"}, ["p.toml"], "usage-error"),
    (f"topics: {MAX_PARTITIONS + 1} partitions", {"p.toml": f"topics = {{ orders = {MAX_PARTITIONS + 1} }}\n"},
     ["p.toml"], "usage-error"),
    ("topics: two files disagree", {"a.toml": "topics = { orders = 3 }\n", "b.toml": "topics = { orders = 4 }\n"},
     ["a.toml", "b.toml"], "usage-error"),
    ("reconcile: a term that is not summable",
     {"p.toml": '[[reconcile]]\nleft = ["receipt.source"]\nright = ["offsets.span"]\n'}, ["p.toml"], "usage-error"),
    ("reconcile: offsets.end is not summable (offsets.span is)",
     {"p.toml": '[[reconcile]]\nleft = ["offsets.end"]\nright = ["receipt.count"]\n'}, ["p.toml"], "usage-error"),
    ("reconcile: a term without a field",
     {"p.toml": '[[reconcile]]\nleft = ["summary"]\nright = ["receipt.count"]\n'}, ["p.toml"], "usage-error"),
    ("reconcile: an empty side", {"p.toml": '[[reconcile]]\nleft = []\nright = ["receipt.count"]\n'}, ["p.toml"],
     "usage-error"),
    ("reconcile: an unknown key",
     {"p.toml": '[[reconcile]]\nleft = ["receipt.count"]\nright = ["offsets.span"]\nop = "le"\n'}, ["p.toml"],
     "usage-error"),
    ("reconcile: a table instead of an array of tables",
     {"p.toml": '[reconcile]\nleft = ["receipt.count"]\nright = ["offsets.span"]\n'}, ["p.toml"], "usage-error"),
    ("reconcile: an empty name",
     {"p.toml": '[[reconcile]]\nname = ""\nleft = ["receipt.count"]\nright = ["offsets.span"]\n'}, ["p.toml"],
     "usage-error"),
    ("reconcile: one name in two files",
     {"a.toml": 'include = ["b.toml"]\n[[reconcile]]\nname = "r"\nleft = ["receipt.count"]\nright = ["offsets.span"]\n',
      "b.toml": '[[reconcile]]\nname = "r"\nleft = ["summary.ingested"]\nright = ["receipt.count"]\n'},
     ["a.toml"], "usage-error"),
    ("include cycle", {"a.toml": 'include = ["b.toml"]\nmin = { file = 1 }\n', "b.toml": 'include = ["a.toml"]\n'},
     ["a.toml"], "usage-error"),
    ("a file that includes itself", {"a.toml": 'include = ["a.toml"]\nmin = { file = 1 }\n'}, ["a.toml"],
     "usage-error"),
    ("include of a missing file", {"a.toml": 'include = ["gone.toml"]\nmin = { file = 1 }\n'}, ["a.toml"],
     "usage-error"),
    ("artifacts not an array", {"p.toml": 'artifacts = "ingest-worker"\n'}, ["p.toml"], "usage-error"),
    ("artifacts with an empty name", {"p.toml": 'artifacts = [""]\n'}, ["p.toml"], "usage-error"),
    ("continuity not an array", {"p.toml": "continuity = true\n"}, ["p.toml"], "usage-error"),
    ("continuity: not a topic name", {"p.toml": 'continuity = ["orders/eu"]\n'}, ["p.toml"], "usage-error"),
    ("continuity: '..' is not a topic name", {"p.toml": 'continuity = [".."]\n'}, ["p.toml"], "usage-error"),
    ("topics: a key that is not a topic name", {"p.toml": 'topics = { "pay ments" = 2 }\n'}, ["p.toml"],
     "usage-error"),
    ("artifacts: a name with a newline (it could forge an output line)",
     {"p.toml": 'artifacts = ["model\\nerror: all good"]\n'}, ["p.toml"], "usage-error"),
    ("artifacts: a name with a no-break space (not printable)", {"p.toml": 'artifacts = ["model\\u00a0x"]\n'},
     ["p.toml"], "usage-error"),
    ("artifacts: a name of 1025 characters", {"p.toml": 'artifacts = ["' + "m" * 1025 + '"]\n'}, ["p.toml"],
     "usage-error"),
    ("reconcile: a name with a zero-width space (not printable)",
     {"p.toml": '[[reconcile]]\nname = "r\\u200b"\nleft = ["receipt.count"]\nright = ["offsets.span"]\n'},
     ["p.toml"], "usage-error"),
    ("reconcile: a term with a control character",
     {"p.toml": '[[reconcile]]\nleft = ["receipt.count"]\nright = ["summary.x\\u0007"]\n'}, ["p.toml"],
     "usage-error"),
    ("reconcile: summary.name is not summable",
     {"p.toml": '[[reconcile]]\nleft = ["summary.name"]\nright = ["receipt.count"]\n'}, ["p.toml"],
     "usage-error"),
    ("malformed TOML", {"p.toml": "min = {\n"}, ["p.toml"], "usage-error"),
]


def load_policy_files(files: dict[str, str], order: list[str]) -> Policy:
    with tempfile.TemporaryDirectory() as d:
        for name, text in files.items():
            (Path(d) / name).write_text(text, encoding="utf-8")
        return load_policies([str(Path(d) / n) for n in order])


def policy_json(p: Policy) -> Json:
    data = p.encode()
    return {"value": tv(p.to_value()), "hex": data.hex(), "digest": p.digest.hex(), "key": layout.policy_key(p.digest)}


def run_item(name: str, kind: str, content: bytes) -> Json:
    return {"name": name, "kind": kind, "content": content.decode("utf-8")}


def gen_policies() -> tuple[Json, Policy]:
    compose = []
    example: Policy | None = None
    for name, files, order, expect in COMPOSE_CASES:
        case: Json = {"name": name, "files": files, "load": order, "expect": expect}
        try:
            p = load_policy_files(files, order)
        except UsageError as exc:
            assert expect == "usage-error", (name, exc)
            case["reason"] = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
        else:
            assert expect == "ok", name
            case.update(policy_json(p))
            if order == ["nightly.toml"]:
                example = p
        compose.append(case)
    assert example is not None
    assert load_policy_files(EXAMPLE_FILES, ["nightly.toml", "nightly.toml"]).encode() == example.encode()

    # Canonical documents a reader MUST refuse (Policy.from_bytes: DecodeError, a corrupt object).
    base = example.to_value()

    def doc(**changes: Any) -> bytes:
        v = dict(base)
        v.update(changes)
        return encoding.encode(v)

    rec0 = base["reconcile"][0]
    invalid_docs: list[tuple[str, bytes, str]] = [
        ("keys not in canonical order", encoding.pack_trusted(dict(reversed(list(base.items())))),
         "the document is canonical bytes (spec/encoding.md)"),
        ("empty policy", doc(min={}, artifacts=[], topics={}, reconcile=[], continuity=[]),
         "an empty policy is an error, never a pass"),
        ("min of 0", doc(min={"receipt": 0, "summary": 1}), "min counts are at least 1"),
        ("unknown field", doc(version=2), "exactly the seven fields"),
        ("missing field sources", encoding.encode({k: v for k, v in base.items() if k != "sources"}),
         "exactly the seven fields"),
        ("format ledger/2", doc(format="ledger/2"), "format is ledger/1"),
        ("min of an unknown kind", doc(min={"receipts": 2}), "min keys are kinds"),
        ("min is a bool", doc(min={"receipt": True}), "an int, never a bool"),
        ("min above 2^63-1", doc(min={"receipt": 2**63}), "min counts are at most 2^63-1"),
        ("topics: 0 partitions", doc(topics={"payments": 0}), "partition counts are in [1, 100000]"),
        (f"topics: {MAX_PARTITIONS + 1} partitions", doc(topics={"payments": MAX_PARTITIONS + 1}),
         "partition counts are in [1, 100000]"),
        ("artifacts not sorted", doc(artifacts=["z-worker", "ingest-worker"]),
         "canonical MessagePack, but not the canonical document: artifacts are sorted"),
        ("continuity not sorted", doc(continuity=["payments", "orders"]), "continuity topics are sorted"),
        ("artifacts: an empty name", doc(artifacts=[""]), "names are non-empty str"),
        ("reconcile: a term that is not summable", doc(reconcile=[{**rec0, "left": ["offsets.end"]}]),
         "terms are receipt.count, offsets.span or summary.<field>"),
        ("reconcile: an empty side", doc(reconcile=[{**rec0, "right": []}]), "both sides are non-empty"),
        ("reconcile: unknown field", doc(reconcile=[{**rec0, "op": "="}]), "exactly name, left and right"),
        ("sources: an entry of 3 elements", doc(sources=[["nightly.toml", "00" * 32, "x"]]),
         "each source is [name, hex digest]"),
        ("min is an array", doc(min=[]), "min is a map"),
        ("artifacts: a name given twice", doc(artifacts=["ingest-worker", "ingest-worker"]),
         "each artifact name once"),
        ("continuity: a topic given twice", doc(continuity=["orders", "orders", "payments"]),
         "each continuity entry once"),
        ("continuity: not a topic name", doc(continuity=["orders/eu"]), "continuity entries are topic names or *"),
        ("topics: a key that is not a topic name", doc(topics={"pay ments": 2}), "topics keys are topic names"),
        ("artifacts: a name that is not printable", doc(artifacts=["ingest\nworker"]),
         "names in criteria are printable"),
        ("reconcile: a term that is not printable", doc(reconcile=[{**rec0, "right": ["summary.x\u2028"]}]),
         "names in criteria are printable"),
        ("reconcile: an empty name", doc(reconcile=[{**rec0, "name": ""}]), "reconcile names are non-empty"),
        ("reconcile: a name given twice", doc(reconcile=[rec0, {**base["reconcile"][1], "name": rec0["name"]}]),
         "reconcile names are unique"),
        ("reconcile: summary.name", doc(reconcile=[{**rec0, "right": ["summary.name"]}]),
         "summary.name is not a summable term"),
    ]
    out_invalid = []
    for name, data, reason in invalid_docs:
        try:
            Policy.from_bytes(data)
        except DecodeError:
            out_invalid.append({"name": name, "hex": data.hex(), "reason": reason})
            continue
        raise AssertionError(f"policy vector {name!r}: accepted")

    return {
        "description": "Closure policies (spec/policy.md). context: the digest context of a sealed policy document. "
                       "compose: policy files (TOML) loaded in the given order (includes relative to the including "
                       "file), with the canonical document, its digest DK(context, bytes) and store key, or "
                       "usage-error (exit 2). documents_invalid: documents a reader MUST refuse. evaluations: "
                       "criteria evaluated over a run's items (content as UTF-8 text) and the anchors of earlier "
                       "commits in chain order: every criterion [name, ok, detail] but content-present (detail is "
                       "informative), and the replay anchors; or usage-error.",
        "context": CTX_POLICY,
        "max_partitions": MAX_PARTITIONS,
        "compose": compose,
        "documents_invalid": out_invalid,
        "evaluations": gen_evaluations(example),
    }, example


def content_of(content: dict[str, bytes]) -> Callable[[ItemEntry], bytes]:
    """An item's content by its name (what build_evidence reads records with)."""

    def get(e: ItemEntry) -> bytes:
        return content[e.name]

    return get


def gen_evaluations(example: Policy) -> list[Json]:
    items = policy_run_items()
    earlier = [{"seq": 2, "run": "nightly-43", "anchors": [["vectors", "orders", 3, 0, 103],
                                                           ["vectors", "orders", 11, 0, 111]]}]

    def rec(kind: str, value: Any) -> tuple[str, str, bytes]:
        content = kinds.canonical_json(value)
        return kinds.default_name(kind, value, content_digest(content).hex()), kind, content

    def replace(name: str, new: tuple[str, str, bytes] | None) -> list[tuple[str, str, bytes]]:
        out = [x for x in items if x[0] != name] + ([new] if new is not None else [])
        return sorted(out, key=lambda x: x[0].encode("utf-8"))

    orders3 = "offsets/vectors/orders/3.json"
    o3 = {"group": "vectors", "topic": "orders", "partition": 3}
    no_field = Policy(min={"receipt": 1}, reconcile=(Reconcile("rejected", ("summary.rejected",), ("receipt.count",)),))
    every = Policy(min={"file": 1}, continuity=("*",))
    cases: list[tuple[str, Policy | None, list[tuple[str, str, bytes]], list[Json]]] = [
        ("every criterion holds (the run of commits.json slot 3)", example, items, earlier),
        ("built-in criteria only (no policy)", None, items, earlier),
        ("continuity: a gap", example, replace(orders3, rec("offsets", {**o3, "start": 110, "end": 167})), earlier),
        ("continuity: an overlap", example, replace(orders3, rec("offsets", {**o3, "start": 100, "end": 157})),
         earlier),
        ("continuity: the latest earlier commit with the stream counts", example, items,
         [{"seq": 1, "run": "nightly-42", "anchors": [["vectors", "orders", 3, 0, 110]]}, *earlier]),
        ("continuity: a later commit's smaller end still wins", example, items,
         [*earlier, {"seq": 3, "run": "nightly-44x", "anchors": [["vectors", "orders", 3, 0, 90]]}]),
        ("continuity: no earlier anchor starts a stream", every, items, []),
        ("topics: a partition without an offsets record", example, replace("offsets/payments/1.json", None), earlier),
        ("topics: a partition beyond the declared count", example,
         replace("offsets/payments/2.json", rec("offsets", {"topic": "payments", "partition": 2, "start": 0,
                                                            "end": 0})), earlier),
        ("reconcile: off by one", example,
         replace("summary/summary.json", rec("summary", {"ingested": 147, "duplicates": 6, "quarantined": 2})),
         earlier),
        ("reconcile and min: no summary record", example, replace("summary/summary.json", None), earlier),
        ("records-valid: a receipt whose count is a string", example,
         replace("receipts/kafka-orders.json", ("receipts/kafka-orders.json", "receipt",
                                                b'{"count": "96", "source": "kafka-orders"}')), earlier),
        ("records-valid: a typed item that is not JSON", example,
         replace("decisions/release.json", ("decisions/release.json", "decision", b"release: publish\n")), earlier),
        ("records-valid: a json item is not validated", example,
         replace("notes.json", ("notes.json", "json", b"not json at all\n")), earlier),
        ("records-valid: a record stored as any JSON text", example,
         replace("artifacts/ingest-worker.json", ("artifacts/ingest-worker.json", "artifact",
                                                  b'{ "version": "2026.11.3",\n  "name": "ingest-worker" }\n')),
         earlier),
        ("records-coherent: two ranges for one stream, two versions of one artifact", example,
         sorted([*items, ("offsets/again.json", "offsets", kinds.canonical_json({**o3, "start": 103, "end": 160})),
                 ("artifacts/old.json", "artifact", kinds.canonical_json({"name": "ingest-worker",
                                                                          "version": "2026.10.1"}))],
                key=lambda x: x[0].encode("utf-8")), earlier),
        ("reconcile: a field no record of its kind has is an error", no_field, items, earlier),
        ("reconcile: no record of a kind fails the criterion", no_field, replace("summary/summary.json", None),
         earlier),
        ("an empty run", None, [], []),
    ]
    out = []
    for name, pol, its, prev in cases:
        entries = [ItemEntry(n, k, len(c), content_digest(c)) for n, k, c in its]
        content = {n: c for n, _, c in its}
        ev = build_evidence(entries, content_of(content))
        previous = previous_ends([(p["seq"], p["run"], [kinds.Offsets(*a) for a in p["anchors"]]) for p in prev])
        case: Json = {"name": name, "policy_hex": pol.encode().hex() if pol is not None else None,
                      "items": [run_item(*x) for x in its], "earlier": prev}
        try:
            got = evaluate(pol, ev, previous)
        except UsageError as exc:
            case["expect"] = "usage-error"
            case["reason"] = str(exc)
        else:
            case["expect"] = "ok"
            case["criteria"] = [[c.name, c.ok, c.detail] for c in got]
            case["anchors"] = [a.to_value() for a in anchors(ev)]
        out.append(case)
    return out


# kinds.json --------------------------------------------------------------------------------------------------------

# (kind, JSON input) of valid records; the stored form and the default name are the implementation's.
VALID_RECORDS: list[tuple[str, str]] = [
    ("offsets", '{"topic": "orders", "partition": 0, "start": 1200, "end": 1340}'),
    ("offsets", '{"group": "nightly", "topic": "orders", "partition": 1, "start": 980, "end": 1110, "high": 1200}'),
    ("offsets", '{"topic": "orders", "partition": 2, "start": 77, "end": 77}'),
    ("offsets", '{"topic": "a.B_c-9", "partition": 2147483647, "start": 0, "end": 9223372036854775807, '
                '"high": 9223372036854775807}'),
    ("offsets", '{"topic": "' + "t" * 249 + '", "partition": 0, "start": 0, "end": 1}'),
    ("offsets", '{"topic": "...", "partition": 0, "start": 0, "end": 1}'),
    ("receipt", '{"source": "kafka-orders", "count": 270}'),
    ("receipt", '{"source": "kafka-orders", "count": 0, "batch": "b-0007"}'),
    ("receipt", '{"source": "kafka-orders", "count": 12, "topic": "orders", "partition": 3, "first": 100, '
                '"last": 111}'),
    ("receipt", '{"source": "kafka-orders", "count": 12, "partition": 3}'),
    ("receipt", '{"source": "sftp", "count": 2, "first": "file-0001", "last": "file-0002", '
                '"digest": "sha256:' + "0" * 64 + '"}'),
    ("receipt", '{"source": "s3", "count": 1, "digest": "' + "ab" * 16 + '"}'),
    ("receipt", '{"source": "s3", "count": 1, "digest": "b3:' + "cd" * 32 + '"}'),
    ("receipt", '{"source": "s3", "count": 1, "digest": "md5:' + "ef" * 16 + '"}'),
    ("summary", '{"ingested": 262, "duplicates": 5, "quarantined": 3}'),
    ("summary", '{"name": "nightly", "ingested": 0}'),
    ("summary", '{"late.events": 4}'),
    ("artifact", '{"name": "ingest-worker", "version": "2026.11.3"}'),
    ("artifact", '{"name": "dedup-model", "version": "v1.4.2 (retrained)", "digest": "sha512:' + "9" * 128 + '"}'),
    ("decision", '{"name": "release", "outcome": "publish", "reason": "every criterion holds", "inputs": []}'),
    ("decision", '{"name": "quarantine", "outcome": "hold", "inputs": ["b3:' + "12" * 32 + '", "sha1:'
                 + "34" * 20 + '"]}'),
    ("decision", '{"name": " leading space is kept", "outcome": "' + "x" * 1024 + '"}'),
    ("json", '{"b": 1, "a": [true, null, "\\u00e9"]}'),
    ("json", '[1, 2, 3]'),
    ("json", '"just a string"'),
    ("json", "0.5"),
]

# (kind, JSON input, the field the refusal names or None, why)
INVALID_RECORDS: list[tuple[str, str, str | None, str]] = [
    ("offsets", '{"topic": "orders", "partition": 0, "start": 1}', "end", "a required field is missing"),
    ("offsets", '{"topic": "orders", "partition": 0, "start": 5, "end": 4}', "start",
     "start after end (end is exclusive: the next offset to read)"),
    ("offsets", '{"topic": "orders", "partition": 0, "start": 0, "end": 3.0}', "end",
     "integers are JSON integers: 3.0 is a number with a fraction"),
    ("offsets", '{"topic": "orders", "partition": 0, "start": 0, "end": 3e2}', "end", "no exponent either"),
    ("offsets", '{"topic": "orders", "partition": true, "start": 0, "end": 3}', "partition",
     "a boolean is not an integer"),
    ("offsets", '{"topic": "orders", "partition": 2147483648, "start": 0, "end": 3}', "partition",
     "partitions are below 2^31"),
    ("offsets", '{"topic": "orders", "partition": 0, "start": -1, "end": 3}', "start", "offsets are non-negative"),
    ("offsets", '{"topic": "orders", "partition": 0, "start": 0, "end": 9223372036854775808}', "end",
     "offsets are below 2^63"),
    ("offsets", '{"topic": "orders", "partition": 0, "start": 0, "end": 10, "high": 9}', "high",
     "the high watermark is at least end"),
    ("offsets", '{"topic": "orders", "partition": "0", "start": 0, "end": 3}', "partition",
     "a string is not an integer"),
    ("offsets", '{"topic": "", "partition": 0, "start": 0, "end": 3}', "topic", "empty text"),
    ("offsets", '{"topic": ".", "partition": 0, "start": 0, "end": 3}', "topic", "'.' is not a topic name"),
    ("offsets", '{"topic": "..", "partition": 0, "start": 0, "end": 3}', "topic", "'..' is not a topic name"),
    ("offsets", '{"topic": "orders/eu", "partition": 0, "start": 0, "end": 3}', "topic",
     "topic names are of A-Z a-z 0-9 . _ -"),
    ("offsets", '{"topic": "' + "t" * 250 + '", "partition": 0, "start": 0, "end": 3}', "topic",
     "topic names are at most 249 characters"),
    ("offsets", '{"group": "", "topic": "orders", "partition": 0, "start": 0, "end": 3}', "group", "empty text"),
    ("offsets", '{"group": "night\\u0007ly", "topic": "orders", "partition": 0, "start": 0, "end": 3}', "group",
     "a control character"),
    ("offsets", '{"topic": "orders", "partition": 0, "start": 0, "end": 3, "offset": 1}', "offset",
     "unknown fields are refused"),
    ("offsets", '"orders"', None, "a typed record is a JSON object"),
    ("offsets", "null", None, "a typed record is a JSON object"),
    ("receipt", '{"count": 3}', "source", "a required field is missing"),
    ("receipt", '{"source": "kafka", "count": "10"}', "count", "a string is not an integer"),
    ("receipt", '{"source": "kafka", "count": -1}', "count", "counts are non-negative"),
    ("receipt", '{"source": "kafka", "cout": 10}', "count", "a typo: count is missing"),
    ("receipt", '{"source": "kafka", "count": 10, "cout": 10}', "cout", "unknown fields are refused"),
    ("receipt", '{"source": "   ", "count": 1}', "source", "text of whitespace only is empty"),
    ("receipt", '{"source": "' + "s" * 1025 + '", "count": 1}', "source", "text is at most 1024 characters"),
    ("receipt", '{"source": "kafka", "count": 1, "digest": "sha256:abc"}', "digest",
     "a digest has 32 to 128 hex digits"),
    ("receipt", '{"source": "kafka", "count": 1, "digest": "' + "AB" * 32 + '"}', "digest", "hex is lower case"),
    ("receipt", '{"source": "kafka", "count": 1, "digest": "md5:' + "ab" * 32 + '"}', "digest",
     "an md5 digest has 32 hex digits"),
    ("receipt", '{"source": "kafka", "count": 1, "digest": "crc32:' + "ab" * 16 + '"}', "digest",
     "unknown digest algorithm"),
    ("receipt", '{"source": "kafka", "count": 1, "digest": "' + "a" * 33 + '"}', "digest",
     "an even number of hex digits"),
    ("receipt", '{"source": "kafka", "count": 1, "first": 1.5}', "first", "first is an integer or a string"),
    ("receipt", '{"source": "kafka", "count": 1, "last": false}', "last", "a boolean is neither"),
    ("receipt", '{"source": "kafka", "count": 1, "topic": "a b"}', "topic", "not a topic name"),
    ("summary", "{}", None, "a summary needs at least one count"),
    ("summary", '{"name": "nightly"}', None, "a summary needs at least one count"),
    ("summary", '{"ingested": -1}', "ingested", "counts are non-negative"),
    ("summary", '{"ingested": 1.0}', "ingested", "counts are integers"),
    ("summary", '{"ingested": null}', "ingested", "counts are integers"),
    ("summary", '{"name": 3, "ingested": 1}', "name", "name is text"),
    ("summary", '{"' + "f" * 129 + '": 1}', "f" * 129, "field names are 1-128 characters"),
    ("summary", '[{"ingested": 1}]', None, "one record is an object (an array is only taken apart by record)"),
    ("artifact", '{"name": "ingest-worker"}', "version", "a required field is missing"),
    ("artifact", '{"name": "ingest-worker", "version": "1\\t2"}', "version", "a control character"),
    ("artifact", '{"name": "ingest-worker", "version": "1\\u0085"}', "version", "a C1 control character"),
    ("artifact", '{"name": "ingest-worker", "version": "1", "digest": "b3:' + "a" * 63 + '"}', "digest",
     "a b3 digest has 64 hex digits"),
    ("artifact", '{"name": "ingest-worker", "version": "1", "sha": "abc"}', "sha", "unknown fields are refused"),
    ("decision", '{"name": "release"}', "outcome", "a required field is missing"),
    ("decision", '{"name": "release", "outcome": "publish", "inputs": "b3:' + "12" * 32 + '"}', "inputs",
     "inputs is an array of digests"),
    ("decision", '{"name": "release", "outcome": "publish", "inputs": ["b3:' + "12" * 32 + '", "x"]}', "inputs[1]",
     "every input is a digest"),
    ("decision", '{"name": "release", "outcome": "publish", "reason": ""}', "reason", "empty text"),
]

# (kind, the JSON text given to `ledger record`, number of records, or None when the call is refused)
RECORD_INPUTS: list[tuple[str, str, int | None, str]] = [
    ("offsets", '[{"topic": "orders", "partition": 0, "start": 0, "end": 5}, '
                '{"topic": "orders", "partition": 1, "start": 0, "end": 7}]', 2, "a typed array: one item each"),
    ("summary", '{"ingested": 3}', 1, "one object: one item"),
    ("receipt", "[]", None, "an empty array holds no records"),
    ("offsets", '[{"topic": "orders", "partition": 0, "start": 0, "end": 5}, '
                '{"topic": "orders", "partition": 1, "start": 9, "end": 7}]', None,
     "all or nothing: one invalid element refuses the call"),
    ("json", "[1, 2, 3]", 1, "a json record is one value, arrays included"),
    ("json", "{\"a\": NaN}", None, "NaN is not JSON"),
    ("artifact", '{"name": "a", "version": "1"', None, "not valid JSON"),
    ("receipt", '{"source": "kafka", "count": 1, "count": 2}', None, "a name repeated in an object"),
    ("receipt", '{"source": "kafka", "count": 1, "c\\u006funt": 1}', None,
     "a name repeated in an object, once escaped: names are compared after unescaping"),
    ("summary", '\ufeff{"ingested": 1}', None, "a byte order mark"),
    ("json", '{"a": Infinity}', None, "Infinity is not JSON"),
    ("json", "[-Infinity]", None, "-Infinity is not JSON"),
    ("json", "[1e400]", None, "a number beyond the largest double has no stored form"),
    ("json", "[" * 100 + "]" * 100, 1, "100 levels of nesting are allowed"),
    ("json", "[" * 101 + "]" * 101, None, "nested deeper than 100 levels"),
    ("json", '{"a": ' * 50 + "[" * 51 + "0" + "]" * 51 + "}" * 50, None,
     "nested deeper than 100 levels (objects and arrays both count)"),
    ("json", '"' + "[" * 101 + '"', 1, "brackets inside a string do not nest"),
    ("json", '"\\ud800"', None, "a lone surrogate has no UTF-8 stored form"),
    ("json", '"\\ud83d\\ude00"', 1, "an escaped surrogate pair is one character"),
    ("artifact", '{"name": "a\\ud800", "version": "1"}', None, "a text holds no lone surrogate"),
    ("summary", '{"rows\\udc00": 1}', None, "a count's name holds no lone surrogate"),
    ("summary", '{"rows\\u0085": 1}', None, "a count's name holds no control character"),
    ("summary", '{" ": 1, "late.events": 2}', 1, "any other count name of 1 to 128 characters is fine"),
]


def gen_kinds() -> Json:
    valid = []
    for kind, text in VALID_RECORDS:
        value = kinds.validate(kind, json.loads(text), "vector record")
        stored = kinds.canonical_json(value)
        valid.append({"kind": kind, "json": text, "stored": stored.decode("utf-8"),
                      "default_name": kinds.checked_default_name(kind, value, content_digest(stored).hex(),
                                                                 "vector record")})
    invalid = []
    for kind, text, fld, reason in INVALID_RECORDS:
        try:
            kinds.load_record(kind, text.encode("utf-8"), "vector record")
        except kinds.RecordError as exc:
            msg = str(exc)
            assert (f"field {fld!r}" in msg) if fld is not None else ("field '" not in msg), (text, msg)
        else:
            raise AssertionError(f"kinds vector {text!r}: accepted")
        invalid.append({"kind": kind, "json": text, "field": fld, "reason": reason})
    inputs = []
    for kind, text, n, reason in RECORD_INPUTS:
        try:
            values = kinds.parse_records(text, kind, "vector record")
            for v in values:
                kinds.validate(kind, v, "vector record")
                kinds.canonical_json(v)
        except LedgerError:
            assert n is None, text
        else:
            assert n == len(values), text
        inputs.append({"kind": kind, "json": text, "records": n, "reason": reason})
    return {
        "description": "Typed evidence kinds (spec/kinds.md). valid: a JSON input that is a valid record of its "
                       "kind, its stored form (canonical JSON) and the default item name `ledger record` gives it. "
                       "invalid: inputs refused (exit 6), with the field the refusal names (null: the record as a "
                       "whole). record_inputs: the JSON text of one `ledger record` call and how many items it "
                       "records (null: refused, nothing recorded).",
        "kinds": list(KINDS),
        "typed_kinds": list(kinds.TYPED_KINDS),
        "record_kinds": list(RECORD_KINDS),
        "max_record_bytes": kinds.MAX_RECORD_BYTES,
        "max_text": kinds.MAX_TEXT,
        "digest_algorithms": {"b3": 64, "blake3": 64, "sha256": 64, "sha384": 96, "sha512": 128, "sha1": 40,
                              "md5": 32},
        "valid": valid,
        "invalid": invalid,
        "record_inputs": inputs,
    }


# objects.json ------------------------------------------------------------------------------------------------------

def gen_objects() -> Json:
    d1, d2 = content_digest(b"id,value\n1,2\n"), content_digest(pattern(2 * 1024 * 1024))
    entry = ItemEntry("data/a.csv", "file", 13, d1)
    child = ChildEntry("data/z.csv", 64, typed_digest(CTX_NODE, b"example"))
    marker = Marker("nightly-42", 1, typed_digest(CTX_COMMIT, b"example"),
                    (PACK_ID, "ffeeddccbbaa99887766554433221100"))
    batch = Batch("nightly-42", (StagedItem(entry, PACK_ID), StagedItem(ItemEntry("big.bin", "artifact",
                                                                                 2 * 1024 * 1024, d2), None)))
    waived = Batch("nightly-44", (StagedItem(ItemEntry("logs/build.log", "log", 13, d1), PACK_ID),),
                   (POLICY_RUN_WAIVER, Waived("logs/build.log", 9, "Secret Keyword", "logs/build.log",
                                              "a test fixture's password", 9)))
    cfg = StoreConfig()
    locked = StoreConfig(StoreLock("GOVERNANCE", 30))
    sealing = {"format": FORMAT, "run": "nightly-42", "time": TIME_0}
    cases = [
        {"type": "item entry", "value": tv(entry.to_value()), "hex": entry.encode().hex()},
        {"type": "child entry", "value": tv(child.to_value()), "hex": child.encode().hex()},
        {"type": "completion marker", "key": layout.marker_key("nightly-42"),
         "value": tv(encoding.decode(marker.encode())), "hex": marker.encode().hex()},
        {"type": "batch", "key": layout.batch_key("nightly-42", 0),
         "value": tv(encoding.decode(batch.encode())), "hex": batch.encode().hex()},
        {"type": "batch", "name": "batch with waived secret findings", "key": layout.batch_key("nightly-44", 0),
         "value": tv(encoding.decode(waived.encode())), "hex": waived.encode().hex()},
        {"type": "store config", "key": layout.CONFIG, "value": tv(encoding.decode(cfg.encode())),
         "hex": cfg.encode().hex()},
        {"type": "store config", "name": "store config with Object Lock", "key": layout.CONFIG,
         "value": tv(encoding.decode(locked.encode())), "hex": locked.encode().hex()},
        {"type": "sealing fence", "key": layout.sealing_key("nightly-42"), "value": tv(sealing),
         "hex": encoding.encode(sealing).hex()},
    ]
    nid = []
    for level, count, er in ((0, 0, TREE_HASHER.empty()), (0, 3, TREE_HASHER.leaf(b"x")), (2, 300, bytes(32))):
        data = encoding.encode({"count": count, "level": level, "root": er})
        nid.append({"level": level, "count": count, "entries_root": er.hex(), "input_hex": data.hex(),
                    "id": node_id(level, count, er).hex()})

    def ev(v: Any) -> str:
        return encoding.encode(v).hex()

    iv = entry.to_value()
    invalid = [
        {"type": "item entry", "name": "unknown kind", "hex": ev({**iv, "kind": "binary"})},
        {"type": "item entry", "name": "name with a '..' segment", "hex": ev({**iv, "name": "a/../b"})},
        {"type": "item entry", "name": "absolute name", "hex": ev({**iv, "name": "/etc/passwd"})},
        {"type": "item entry", "name": "name with a control character", "hex": ev({**iv, "name": "a\tb"})},
        {"type": "item entry", "name": "name of 1025 bytes", "hex": ev({**iv, "name": "n" * 1025})},
        {"type": "item entry", "name": "negative size", "hex": ev({**iv, "size": -1})},
        {"type": "item entry", "name": "digest of 31 bytes", "hex": ev({**iv, "blake3": d1[:31]})},
        {"type": "item entry", "name": "missing field", "hex": ev({k: v for k, v in iv.items() if k != "size"})},
        {"type": "child entry", "name": "count 0", "hex": ev({**child.to_value(), "count": 0})},
        {"type": "completion marker", "name": "invalid pack id",
         "hex": ev({**encoding.decode(marker.encode()), "packs": ["PACK"]})},
        {"type": "completion marker", "name": "format ledger/2",
         "hex": ev({**encoding.decode(marker.encode()), "format": "ledger/2"})},
        {"type": "batch", "name": "item row of 4 elements",
         "hex": ev({"format": FORMAT, "items": [["a", "file", 1, d1]], "run": "r"})},
        {"type": "batch", "name": "pack id not hex", "hex": ev({"format": FORMAT, "items": [["a", "file", 1, d1,
                                                                                              "x" * 32]], "run": "r"})},
        {"type": "batch", "name": "empty waivers (omitted when there are none)",
         "hex": ev({**encoding.decode(batch.encode()), "waivers": []})},
        {"type": "batch", "name": "waiver without its rule",
         "hex": ev({**encoding.decode(waived.encode()),
                    "waivers": [{k: v for k, v in POLICY_RUN_WAIVER.to_value().items() if k != "rule"}]})},
        {"type": "batch", "name": "waiver rule line is a str",
         "hex": ev({**encoding.decode(waived.encode()),
                    "waivers": [{**POLICY_RUN_WAIVER.to_value(), "rule": {"item": "x", "line": "9", "reason": "r"}}]})},
        {"type": "store config", "name": "format ledger/2", "hex": ev({"format": "ledger/2"})},
        {"type": "store config", "name": "unknown field created", "hex": ev({"created": 0, "format": FORMAT})},
        {"type": "store config", "name": "lock of 0 days", "hex": ev({"format": FORMAT, "lock": {"days": 0,
                                                                                               "mode": "GOVERNANCE"}})},
        {"type": "store config", "name": "lock of 36501 days",
         "hex": ev({"format": FORMAT, "lock": {"days": 36501, "mode": "COMPLIANCE"}})},
        {"type": "store config", "name": "lock mode in lower case",
         "hex": ev({"format": FORMAT, "lock": {"days": 30, "mode": "governance"}})},
        {"type": "store config", "name": "lock without mode", "hex": ev({"format": FORMAT, "lock": {"days": 30}})},
        {"type": "store config", "name": "lock with unknown field",
         "hex": ev({"format": FORMAT, "lock": {"days": 30, "mode": "GOVERNANCE", "until": 0}})},
        {"type": "store config", "name": "lock nil", "hex": ev({"format": FORMAT, "lock": None})},
    ]
    return {
        "description": "Object encodings (spec/objects.md): value -> canonical bytes, node id derivation, and "
                       "objects a reader MUST refuse.",
        "kinds": list(KINDS),
        "cases": cases, "node_id": nid, "invalid": invalid,
    }


# packs.json --------------------------------------------------------------------------------------------------------

def gen_packs() -> Json:
    objs = [b"first object\n", b"", pattern(300), b"id,value\n1,2\n"]
    pack = b""
    recs: list[tuple[Digest, int, int]] = []
    for o in objs:
        d = content_digest(o)
        if any(r[0] == d for r in recs):
            continue
        recs.append((d, len(pack), len(o)))
        pack += o
    idx = packs.encode_index(PACK_ID, recs)
    empty = packs.encode_index(PACK_ID, [])

    def reseal(body: bytes) -> bytes:
        return body + typed_digest(CTX_PACK_INDEX, body)

    body = idx[:-32]
    head, rs = body[:32], [body[32 + 48 * i: 80 + 48 * i] for i in range(len(recs))]
    invalid = [
        ("truncated by one byte", PACK_ID, idx[:-1]),
        ("shorter than header and checksum", PACK_ID, idx[:40]),
        ("bad magic", PACK_ID, reseal(b"ledgeriy" + body[8:])),
        ("checksum byte flipped", PACK_ID, idx[:-1] + bytes([idx[-1] ^ 1])),
        ("record byte flipped", PACK_ID, idx[:40] + bytes([idx[40] ^ 1]) + idx[41:]),
        ("record count too large", PACK_ID, reseal(body[:24] + (len(recs) + 1).to_bytes(8, "big") + body[32:])),
        ("records not sorted (checksum recomputed)", PACK_ID, reseal(head + rs[1] + rs[0] + b"".join(rs[2:]))),
        ("duplicate record (checksum recomputed)", PACK_ID,
         reseal(body[:24] + (len(recs) + 1).to_bytes(8, "big") + rs[0] + rs[0] + b"".join(rs[1:]))),
        ("index of another pack", "ffeeddccbbaa99887766554433221100", idx),
        ("trailing byte", PACK_ID, idx + b"\x00"),
    ]
    for name, pid, data in invalid:
        try:
            packs.decode_index(pid, data)
        except Corrupt:
            continue
        raise AssertionError(f"pack vector {name!r}: accepted")
    return {
        "description": "Pack files and pack indexes (spec/objects.md, spec/store.md). A pack is the concatenation "
                       "of its objects; its index is a header, records sorted by digest, and a BLAKE3 "
                       "(derive_key 'ledger/1 pack-index') checksum of everything before it.",
        "magic": packs.INDEX_MAGIC.decode("ascii"),
        "pack": {"pack_id": PACK_ID, "objects_hex": [o.hex() for o in objs], "pack_hex": pack.hex(),
                 "records": [{"digest": d.hex(), "offset": o, "size": s} for d, o, s in recs],
                 "index_hex": idx.hex()},
        "empty_index": {"pack_id": PACK_ID, "index_hex": empty.hex()},
        "invalid": [{"name": n, "pack_id": p, "index_hex": d.hex()} for n, p, d in invalid],
    }


# proofs.json -------------------------------------------------------------------------------------------------------

PROOF_OUTCOMES = ("decode-error", "run-mismatch", "untrusted-key", "bad-signature", "path-error", "root-mismatch",
                  "content-mismatch")
_DROP = object()  # a field removed from a proof map


def proof_outcome(data: bytes, trusted: list[Any], content: bytes | None = None) -> str:
    """What the reference implementation concludes about proof bytes: "ok" or one of PROOF_OUTCOMES (the outcome
    names of spec/proofs.md section 4). The generator checks every vector with it."""
    try:
        verify_proof(InclusionProof.from_bytes(data), trusted, content=content)
    except DecodeError:
        return "decode-error"
    except ProofError as exc:
        # Refused before any hash (index >= count, a path of the wrong length) carries no roots; a path that was
        # followed to another root carries both.
        return "root-mismatch" if exc.expected is not None else "path-error"
    except CheckFailed as exc:
        for outcome, words in (("run-mismatch", "the commit seals run"), ("untrusted-key", "not among the trusted"),
                               ("bad-signature", "bad signature"), ("content-mismatch", "content given does not")):
            if words in str(exc):
                return outcome
        raise
    return "ok"


def path_shape(index: int, count: int) -> tuple[int, int]:
    """(inner, border): the RFC 9162 audit path of leaf ``index`` in a tree of ``count`` leaves has ``inner``
    hashes, each on the side the index's bit says, then ``border`` hashes, each a left sibling (spec/proofs.md
    section 4, step 4; RFC 9162 2.1.3.2)."""
    inner = (index ^ (count - 1)).bit_length()
    return inner, bin(index >> inner).count("1")


def gen_proofs(tree_vectors: Json, commits_v: Json) -> Json:
    k1, k2 = signing_key(SEED_1), signing_key(SEED_2)
    trusted = [k1.public]
    nodes = {bytes.fromhex(n["id"]): bytes.fromhex(n["hex"])
             for c in tree_vectors["cases"] for level in c["levels"] for n in level}
    chain = [SignedCommit.from_bytes(bytes.fromhex(c["envelope_hex"])) for c in commits_v["chain"]]
    content = {e["name"]: bytes.fromhex(e["content_hex"]) for c in tree_vectors["cases"] for e in c["items"]}
    names = {c["name"]: [e["name"] for e in c["items"]] for c in tree_vectors["cases"]}

    def proof_of(seq: int, name: str) -> InclusionProof:
        return prove(nodes.__getitem__, chain[seq].body.run, seq, chain[seq], name)

    deep = names["deep"]
    valid_cases = [
        (0, "report.json", "a run of one item: the leaf hash is the items root, the path is empty"),
        (1, deep[0], "the first of 7 items: three hashes, each a right sibling"),
        (1, deep[4], "the worked example of spec/proofs.md section 6: index 4 of 7, two inner hashes and one on the "
         "border"),
        (1, deep[6], "the last of 7 items: its leaf is carried up unpaired, two hashes, both left siblings"),
        (2, "data/0000.csv", "the first of 300 items: nine hashes"),
        (2, "data/0150.csv", "an item in the middle of 300"),
        (2, "data/0255.csv", "the last leaf of the left 256-leaf subtree of 300"),
        (2, "data/0256.csv", "the first leaf of the right 44-leaf part of 300: seven hashes"),
        (2, "data/0299.csv", "the last of 300 items: five hashes, all on the border"),
        (3, names["typed records"][0], "a typed record of the run sealed under the example policy (slot 3)"),
        (3, "logs/build.log", "the item whose secret finding the commit of slot 3 waives"),
    ]
    valid: list[Json] = []
    for seq, name, about in valid_cases:
        p = proof_of(seq, name)
        data = p.encode()
        assert proof_outcome(data, trusted) == "ok" == proof_outcome(data, trusted, content[name])
        b = chain[seq].body
        inner, border = path_shape(p.index, b.count)
        assert len(p.path) == inner + border <= (b.count - 1).bit_length() and p.item.name == name
        valid.append({"name": f"{b.run} {name}", "about": about, "run": b.run, "seq": seq,
                      "item": {"name": p.item.name, "kind": p.item.kind, "size": p.item.size,
                               "blake3": p.item.blake3.hex()},
                      "content_hex": content[name].hex(), "commit": chain[seq].digest.hex(),
                      "items_root": b.items_root.hex(), "count": b.count, "index": p.index,
                      "leaf": TREE_HASHER.leaf(p.item.encode()).hex(), "inner": inner, "border": border,
                      "path": [h.hex() for h in p.path], "hashes": p.hashes, "bytes": len(data), "hex": data.hex()})

    # The invalid proofs are changes of one proof: deep/00131 of nightly-42, index 4 of 7, three hashes.
    base = proof_of(1, deep[4])
    body = base.commit.body
    assert (base.index, body.count, len(base.path)) == (4, 7, 3)
    good = base.encode()
    base_v = encoding.decode(good)
    assert isinstance(base_v, dict)
    p0, p1, p2 = base.path
    inv: list[Json] = []

    def add(name: str, expect: str, reason: str, data: bytes, content_bytes: bytes | None = None) -> None:
        got = proof_outcome(data, trusted, content_bytes)
        assert got == expect, (name, expect, got)
        case = {"name": name, "expect": expect, "reason": reason, "hex": data.hex()}
        if content_bytes is not None:
            case["content_hex"] = content_bytes.hex()
        inv.append(case)

    def value_with(**changes: Any) -> bytes:
        """The proof map with fields replaced (_DROP: removed), encoded canonically."""
        v = {**base_v, **changes}
        return encoding.encode({k: x for k, x in v.items() if x is not _DROP})

    def item_value(**changes: Any) -> dict[str, Any]:
        v = {**base_v["item"], **changes}
        return {k: x for k, x in v.items() if x is not _DROP}

    def proof_with(**changes: Any) -> bytes:
        return dataclasses.replace(base, **changes).encode()

    def item_with(**changes: Any) -> bytes:
        return proof_with(item=dataclasses.replace(base.item, **changes))

    def signed(signer: SigningKey = k1, **changes: Any) -> SignedCommit:
        b = dataclasses.replace(body, **changes)
        return SignedCommit.create(b, signer.sign(b.encode()))

    def flipped(b: bytes, i: int = 0) -> bytes:
        return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1:]

    def signed_value(v: dict[str, Any]) -> bytes:
        bb = encoding.encode(v)
        return encoding.encode({"body": bb, "sig": k1.sign(bb)})

    body_v = body.to_value()
    for name, data in [
        ("format ledger/2", value_with(format="ledger/2")),
        ("type consistency", value_with(type="consistency")),
        ("type is nil", value_with(type=None)),
        ("unknown field", value_with(x=1)),
        ("the steps of the earlier per-level format", value_with(steps=[])),
        ("missing field commit", value_with(commit=_DROP)),
        ("missing field format", value_with(format=_DROP)),
        ("missing field index", value_with(index=_DROP)),
        ("missing field item", value_with(item=_DROP)),
        ("missing field path", value_with(path=_DROP)),
        ("missing field run", value_with(run=_DROP)),
        ("missing field type", value_with(type=_DROP)),
        ("index negative", value_with(index=-1)),
        ("index 2^63", value_with(index=2**63)),
        ("index 2^64-1", value_with(index=2**64 - 1)),
        ("index is a bool", value_with(index=True)),
        ("index is a str", value_with(index="4")),
        ("index is nil", value_with(index=None)),
        ("path is nil", value_with(path=None)),
        ("path is one bin of three hashes", value_with(path=p0 + p1 + p2)),
        ("path hash of 31 bytes", value_with(path=[p0[:31], p1, p2])),
        ("path hash of 33 bytes", value_with(path=[p0, p1 + b"\x00", p2])),
        ("path hash empty", value_with(path=[p0, p1, b""])),
        ("path hash as a hex str", value_with(path=[p0.hex(), p1, p2])),
        ("path hash is nil", value_with(path=[p0, None, p2])),
        ("path hashes nested in an array", value_with(path=[[p0, p1, p2]])),
        (f"path of {MAX_PATH + 1} hashes", value_with(path=[p0] * (MAX_PATH + 1))),
        ("item with an invalid name", value_with(item=item_value(name="../deep/00131"))),
        ("item name empty", value_with(item=item_value(name=""))),
        ("item of an unknown kind", value_with(item=item_value(kind="binary"))),
        ("item without its size", value_with(item=item_value(size=_DROP))),
        ("item with an unknown field", value_with(item=item_value(x=0))),
        ("item size negative", value_with(item=item_value(size=-1))),
        ("item size is a bool", value_with(item=item_value(size=True))),
        ("item digest of 31 bytes", value_with(item=item_value(blake3=base.item.blake3[:31]))),
        ("item digest as a hex str", value_with(item=item_value(blake3=base.item.blake3.hex()))),
        ("item is an array", value_with(item=[base.item.blake3, base.item.kind, base.item.name, base.item.size])),
        ("commit with a trailing byte", value_with(commit=base_v["commit"] + b"\x00")),
        ("commit as a map, not its bytes", value_with(commit=encoding.decode(base_v["commit"]))),
        ("commit signature of 63 bytes", value_with(commit=encoding.encode({"body": base.commit.body_bytes,
                                                                             "sig": base.commit.sig[:63]}))),
        ("commit body with an unknown field, signed", value_with(commit=signed_value({**body_v, "x": 1}))),
        ("commit body without items_root, signed",
         value_with(commit=signed_value({k: x for k, x in body_v.items() if k != "items_root"}))),
        ("commit body with an items_root of 31 bytes, signed",
         value_with(commit=signed_value({**body_v, "items_root": body.items_root[:31]}))),
        ("run is bin", value_with(run=b"nightly-42")),
        ("not canonical: keys out of order", encoding.pack_trusted(dict(reversed(list(base_v.items()))))),
        ("not canonical: the index as uint8", good.replace(b"\xa5index\x04", b"\xa5index\xcc\x04")),
        ("an array, not a map", encoding.encode(list(base_v.values()))),
        ("trailing byte", good + b"\x00"),
        ("truncated", good[:-1]),
        ("empty", b""),
    ]:
        add(name, "decode-error", "refused while decoding (section 3), before any check", data)

    add("run field changed", "run-mismatch", "the commit seals nightly-42, the proof claims nightly-99",
        proof_with(run="nightly-99"))
    add("run field in another case", "run-mismatch", "run ids are compared exactly: Nightly-42 is another run",
        proof_with(run="Nightly-42"))
    add("the commit of another run", "run-mismatch", "slot 2's commit seals nightly-43, the proof claims nightly-42",
        proof_with(commit=chain[2]))
    add("signed by an untrusted key", "untrusted-key", "the body names key 2 and key 2 signed it; the auditor "
        "trusts key 1 only", proof_with(commit=signed(k2, key=k2.public.key_id)))
    add("names key 2, signed by key 1", "untrusted-key", "the key id selects the key before any signature is "
        "checked, and key 2 is not trusted", proof_with(commit=signed(k1, key=k2.public.key_id)))
    add("signature bit flipped", "bad-signature", "Ed25519 verification fails",
        proof_with(commit=SignedCommit(base.commit.body_bytes, flipped(base.commit.sig), body)))
    for field, changed in (("items_root", dataclasses.replace(body, items_root=Digest(flipped(body.items_root)))),
                           ("count 8", dataclasses.replace(body, count=8))):
        add(f"body changed after signing ({field})", "bad-signature", "the signature covers the exact body bytes "
            "(checked before the path)", proof_with(commit=SignedCommit(changed.encode(), base.commit.sig, changed)))
    add("signed by key 2, naming key 1", "bad-signature", "the key id selects key 1, under which the signature does "
        "not verify", proof_with(commit=SignedCommit(base.commit.body_bytes, k2.sign(base.commit.body_bytes), body)))
    add("signed without the context string", "bad-signature", "the signed message is the context string, then the "
        "body bytes", proof_with(commit=SignedCommit(base.commit.body_bytes, k1.private.sign(base.commit.body_bytes),
                                                     body)))

    assert path_shape(6, 7) == (0, 2) and path_shape(4, 5) == (0, 1) and path_shape(4, 300) == (9, 0)
    for name, reason, data in [
        ("index equal to the count", "index 7 of 7 items: there is no such leaf", proof_with(index=7)),
        ("index 2^63-1", "the largest index that decodes, far beyond the count", proof_with(index=2**63 - 1)),
        ("path one hash short", "index 4 of 7 needs three hashes", proof_with(path=(p0, p1))),
        ("path one hash too many", "index 4 of 7 needs three hashes", proof_with(path=(p0, p1, p2, bytes(32)))),
        ("path empty", "index 4 of 7 needs three hashes", proof_with(path=())),
        (f"path of {MAX_PATH} hashes", f"decodes ({MAX_PATH} hashes at most), but index 4 of 7 needs three",
         proof_with(path=(p0,) * MAX_PATH)),
        ("index 6 with index 4's path", "the last of 7 leaves needs two hashes (its leaf is carried up unpaired)",
         proof_with(index=6)),
        ("commit re-signed with count 4", "index 4 is not a leaf of a 4-leaf tree", proof_with(commit=signed(count=4))),
        ("commit re-signed with count 5", "index 4 of 5 needs one hash (the left 4-leaf subtree)",
         proof_with(commit=signed(count=5))),
        ("commit re-signed with count 0", "an empty tree has no leaf", proof_with(commit=signed(count=0))),
        ("another run's commit and run", "index 4 of nightly-43's 300 items needs nine hashes",
         proof_with(run=chain[2].body.run, commit=chain[2])),
    ]:
        add(name, "path-error", reason, data)

    other = proof_of(1, deep[5])
    assert path_shape(5, 7) == (2, 1) and path_shape(0, 7) == path_shape(3, 7) == (3, 0)
    for name, reason, data in [
        ("path hash 0 flipped", "the sibling leaf's hash changes", proof_with(path=(flipped(p0, 31), p1, p2))),
        ("path hash 1 flipped", "the carried-up leaf's hash changes", proof_with(path=(p0, flipped(p1), p2))),
        ("path hash 2 flipped", "the left subtree's root changes", proof_with(path=(p0, p1, flipped(p2, 16)))),
        ("path hash replaced by zero bytes", "32 zero bytes are a hash like any other", proof_with(
            path=(p0, bytes(32), p2))),
        ("path hashes 0 and 1 swapped", "the order of the path is the order of hashing", proof_with(
            path=(p1, p0, p2))),
        ("path reversed", "the path runs from the leaf upwards", proof_with(path=(p2, p1, p0))),
        ("index 5", "leaf 5 of 7 has a path of the same length; the leaf becomes the right child",
         proof_with(index=5)),
        ("index 0", "leaf 0 of 7 has a path of the same length, hashed in another order", proof_with(index=0)),
        ("index 3", "leaf 3 of 7 has a path of the same length, hashed in another order", proof_with(index=3)),
        ("another item's entry", "deep/00179's entry with deep/00131's index and path", proof_with(item=other.item)),
        ("another item's entry and index", "deep/00179's entry and index 5 with deep/00131's path",
         proof_with(item=other.item, index=other.index)),
        ("item name changed", "the item entry binds the name", item_with(name="deep/00132")),
        ("item size + 1", "the item entry binds the size", item_with(size=base.item.size + 1)),
        ("item kind changed", "the item entry binds the kind", item_with(kind="file")),
        ("item digest changed", "the item entry binds the content digest", item_with(blake3=flipped(base.item.blake3))),
        ("commit re-signed with another items root", "a signed items root the path does not lead to",
         proof_with(commit=signed(items_root=flipped(body.items_root)))),
        ("commit re-signed with the tree root as its items root", "the evidence tree's root id is not the items "
         "root", proof_with(commit=signed(items_root=body.root))),
        ("a one-item run's commit and run, index 0, empty path", "in a one-item run the leaf hash itself must be the "
         "items root", proof_with(run=chain[0].body.run, commit=chain[0], index=0, path=())),
    ]:
        add(name, "root-mismatch", reason, data)
    c = content[deep[4]]
    add("content: other bytes of the same size", "content-mismatch", "H(content) differs from the item's blake3",
        good, c[:-1] + bytes([c[-1] ^ 1]))
    add("content: one byte more", "content-mismatch", "the size differs", good, c + b"\n")
    add("content: empty", "content-mismatch", "the size differs", good, b"")
    assert {c["expect"] for c in inv} == set(PROOF_OUTCOMES)
    without_content = [c["hex"] for c in inv if "content_hex" not in c]
    assert len({c["name"] for c in inv}) == len(inv) and len(set(without_content)) == len(without_content)

    return {
        "description": "Inclusion proofs (spec/proofs.md) of items of the runs sealed by commits.json's chain (the "
                       "trees of tree.json), checked with key 1 of commits.json as the only trusted key. valid: the "
                       "proof bytes (hex) with the item, its content, the commit digest, the items root and count "
                       "the commit signs, the item's index, its leaf hash, the number of inner and border hashes "
                       "its path needs, and the path. invalid: proof bytes (with content_hex: the content given to "
                       "the check) and the outcome a verifier MUST reach (spec/proofs.md section 4).",
        "trusted": [k1.public.raw.hex()],
        "outcomes": list(PROOF_OUTCOMES),
        "max_path": MAX_PATH,
        "valid": valid,
        "invalid": inv,
    }


# store.json --------------------------------------------------------------------------------------------------------

def gen_store(policy: Policy) -> Json:
    d = content_digest(b"abc")
    pdig = policy.digest
    root = typed_digest(CTX_NODE, b"example root")
    keys: list[dict[str, Any]] = [
        {"what": "store config", "key": layout.CONFIG},
        {"what": "commit slot 0", "seq": 0, "key": layout.slot_key(0)},
        {"what": "commit slot 42", "seq": 42, "key": layout.slot_key(42)},
        {"what": "commit slot 2^63-1", "seq": 2**63 - 1, "key": layout.slot_key(2**63 - 1)},
        {"what": "staged batches of run nightly-42 (prefix)", "run": "nightly-42",
         "key": layout.staged_prefix("nightly-42")},
        {"what": "sealing fence of run nightly-42", "run": "nightly-42", "key": layout.sealing_key("nightly-42")},
        {"what": "completion marker of run nightly-42", "run": "nightly-42", "key": layout.marker_key("nightly-42")},
        {"what": "pack file", "pack_id": PACK_ID, "key": packs.pack_key(PACK_ID)},
        {"what": "pack index", "pack_id": PACK_ID, "key": packs.index_key(PACK_ID)},
        {"what": "loose object", "digest": d.hex(), "key": packs.loose_key(d)},
        {"what": "sealed policy document", "policy": pdig.hex(), "key": layout.policy_key(pdig)},
    ]
    for k in keys:  # write-once keys: never changed or deleted, so written WORM under Object Lock
        k["write_once"] = layout.is_immutable(k["key"])
    return {
        "description": "Store keys (spec/store.md); the sealed policy document is the example policy of "
                       "policies.json.",
        "loose_min": packs.LOOSE_MIN,
        "max_pack_bytes": packs.MAX_PACK_BYTES,
        "slot_digits": layout.SLOT_DIGITS,
        "keys": keys,
        "node_pack_ids": [{"root": root.hex(), "n": n, "ids": layout.node_pack_ids(root, n)} for n in (1, 3)],
    }


# driver ------------------------------------------------------------------------------------------------------------

def generate() -> dict[str, bytes]:
    tree_v = gen_tree()
    policies_v, example_policy = gen_policies()
    commits_v = gen_commits(tree_v, example_policy)
    files: dict[str, Json] = {
        "encoding.json": gen_encoding(),
        "digests.json": gen_digests(),
        "merkle.json": gen_merkle(),
        "tree.json": tree_v,
        "commits.json": commits_v,
        "proofs.json": gen_proofs(tree_v, commits_v),
        "objects.json": gen_objects(),
        "packs.json": gen_packs(),
        "store.json": gen_store(example_policy),
        "kinds.json": gen_kinds(),
        "policies.json": policies_v,
    }
    out = {}
    for name, doc in files.items():
        full = {"format": FORMAT, "generator": GENERATOR, **doc}
        out[name] = (json.dumps(full, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--check", action="store_true", help="compare with the files on disk; exit 1 on any difference")
    ap.add_argument("--out", type=Path, default=VECTORS, help="directory of the vector files (default: spec/vectors)")
    args = ap.parse_args(argv)
    files = generate()
    out: Path = args.out
    if args.check:
        problems = []
        for name, data in files.items():
            p = out / name
            if not p.exists():
                problems.append(f"{p}: missing")
            elif p.read_bytes() != data:
                problems.append(f"{p}: differs from what {GENERATOR} generates")
        for p in sorted(out.glob("*.json")):
            if p.name not in files:
                problems.append(f"{p}: not generated by {GENERATOR}")
        for msg in problems:
            print(msg, file=sys.stderr)
        if problems:
            print(f"test vectors are stale: run python {GENERATOR}", file=sys.stderr)
            return 1
        print(f"{len(files)} vector files up to date")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
        print(f"wrote {out / name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
