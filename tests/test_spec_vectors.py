"""The ledger/1 test vectors (spec/vectors/*.json) against the implementation, and against small reference
implementations written from spec/ alone (canonical encoder and decoder, RFC 9162 tree hash, evidence tree and
items root, item-entry and signed-commit decoders, the inclusion-proof verifier, record validation), so the
code, the vectors and the prose cannot drift apart. Also checks that tools/gen_vectors.py regenerates the vectors
byte for byte.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import blake3
import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import encoding, kinds, layout, packs, tree
from ledger.digests import (
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
    hash_stream,
    typed_digest,
)
from ledger.errors import CheckFailed, Corrupt, DecodeError, UsageError
from ledger.keys import PublicKey, SigningKey, key_id
from ledger.merkle import (
    SHA256,
    Hasher,
    ProofError,
    blake3_hasher,
    root,
    verify_consistency,
    verify_inclusion,
)
from ledger.objects import Batch, ChildEntry, CommitBody, ItemEntry, Marker, SignedCommit, StoreConfig, node_id
from ledger.policy import Policy, anchors, build_evidence, evaluate, load_policies, previous_ends
from ledger.proofs import InclusionProof, root_from_proof, verify_proof

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "spec" / "vectors"
GEN = REPO / "tools" / "gen_vectors.py"


@cache
def load(name: str) -> Any:
    with open(VECTORS / name, encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["format"] == "ledger/1"
    return doc


def cases(name: str, key: str) -> list[Any]:
    return list(load(name)[key])


def ids(items: list[Any]) -> list[str]:
    return [str(c.get("name") or c.get("type") or i) for i, c in enumerate(items)]


def from_tv(j: Any) -> Any:
    """The typed JSON notation of spec/README.md, back to a value."""
    (tag, v), = j.items()
    if tag == "nil":
        return None
    if tag == "bool":
        assert isinstance(v, bool)
        return v
    if tag == "int":
        return int(v)
    if tag == "float":
        return float(v)
    if tag == "str":
        return v
    if tag == "bin":
        return bytes.fromhex(v)
    if tag == "array":
        return [from_tv(x) for x in v]
    if tag == "map":
        return {from_tv(k): from_tv(x) for k, x in v}
    raise AssertionError(f"unknown tag {tag}")


def same(a: Any, b: Any) -> bool:
    """Equality that also tells bool from int and str from bytes (Python's == does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# --- a reference canonical encoder and decoder, written from spec/encoding.md --------------------------------------

class RefError(Exception):
    pass


def ref_encode(v: Any, depth: int = 0) -> bytes:
    if depth > 32:
        raise RefError("too deep")
    if v is None:
        return b"\xc0"
    if v is False:
        return b"\xc2"
    if v is True:
        return b"\xc3"
    if type(v) is int:
        if v >= 0:
            for limit, head, fmt in ((2**7, None, ""), (2**8, 0xcc, ">B"), (2**16, 0xcd, ">H"), (2**32, 0xce, ">I"),
                                     (2**64, 0xcf, ">Q")):
                if v < limit:
                    return bytes([v]) if head is None else bytes([head]) + struct.pack(fmt, v)
            raise RefError("int too large")
        for low, head, fmt in ((-32, None, ""), (-(2**7), 0xd0, ">b"), (-(2**15), 0xd1, ">h"), (-(2**31), 0xd2, ">i"),
                               (-(2**63), 0xd3, ">q")):
            if v >= low:
                return bytes([v & 0xff]) if head is None else bytes([head]) + struct.pack(fmt, v)
        raise RefError("int too small")
    if type(v) is str:
        b = v.encode("utf-8")
        return _ref_head(len(b), 0xa0, 32, (0xd9, 0xda, 0xdb)) + b
    if type(v) is bytes:
        return _ref_head(len(v), None, 0, (0xc4, 0xc5, 0xc6)) + v
    if type(v) is list:
        return _ref_head(len(v), 0x90, 16, (None, 0xdc, 0xdd)) + b"".join(ref_encode(x, depth + 1) for x in v)
    if type(v) is dict:
        if not all(type(k) is str for k in v):
            raise RefError("map key not str")
        keys = sorted(v, key=lambda k: k.encode("utf-8"))
        return _ref_head(len(v), 0x80, 16, (None, 0xde, 0xdf)) + b"".join(
            ref_encode(k, depth + 1) + ref_encode(v[k], depth + 1) for k in keys)
    raise RefError(f"type {type(v).__name__}")


def _ref_head(n: int, fix: int | None, fix_limit: int, heads: tuple[int | None, int, int]) -> bytes:
    if fix is not None and n < fix_limit:
        return bytes([fix | n])
    h8, h16, h32 = heads
    if h8 is not None and n < 2**8:
        return bytes([h8, n])
    if n < 2**16:
        return bytes([h16]) + struct.pack(">H", n)
    return bytes([h32]) + struct.pack(">I", n)


def ref_decode(data: bytes) -> Any:
    """Strict decoding by the rules of spec/encoding.md, each checked explicitly (no re-encoding)."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise RefError("truncated")
        out = data[pos:pos + n]
        pos += n
        return out

    def uint(n: int) -> int:
        return int.from_bytes(take(n), "big")

    def length(n: int, minimum: int) -> int:
        v = uint(n)
        if v < minimum:
            raise RefError("length not in its shortest form")
        return v

    def text(n: int) -> str:
        try:
            return take(n).decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise RefError("invalid UTF-8") from None

    def value(depth: int) -> Any:
        if depth > 32:
            raise RefError("too deep")
        b = take(1)[0]
        if b <= 0x7f:
            return b
        if b >= 0xe0:
            return b - 0x100
        if 0xa0 <= b <= 0xbf:
            return text(b & 0x1f)
        if 0x90 <= b <= 0x9f:
            return [value(depth + 1) for _ in range(b & 0x0f)]
        if 0x80 <= b <= 0x8f:
            return mapping(b & 0x0f, depth)
        if b == 0xc0:
            return None
        if b in (0xc2, 0xc3):
            return b == 0xc3
        if b in (0xcc, 0xcd, 0xce, 0xcf):
            n = 1 << (b - 0xcc)
            v = uint(n)
            if v < (128 if n == 1 else 1 << (4 * n)):
                raise RefError("uint not in its shortest form")
            return v
        if b in (0xd0, 0xd1, 0xd2, 0xd3):
            n = 1 << (b - 0xd0)
            v = int.from_bytes(take(n), "big", signed=True)
            if v >= 0:
                raise RefError("non-negative int in the signed family")
            if v >= (-32 if n == 1 else -(1 << (8 * (n // 2) - 1))):
                raise RefError("int not in its shortest form")
            return v
        if b in (0xd9, 0xda, 0xdb):
            n = 1 << (b - 0xd9)
            return text(length(n, 32 if n == 1 else 1 << (4 * n)))
        if b in (0xc4, 0xc5, 0xc6):
            n = 1 << (b - 0xc4)
            return take(length(n, 0 if n == 1 else 1 << (4 * n)))
        if b in (0xdc, 0xdd):
            n = 2 if b == 0xdc else 4
            return [value(depth + 1) for _ in range(length(n, 16 if n == 2 else 1 << 16))]
        if b in (0xde, 0xdf):
            n = 2 if b == 0xde else 4
            return mapping(length(n, 16 if n == 2 else 1 << 16), depth)
        raise RefError(f"type byte 0x{b:02x} not allowed")

    def mapping(n: int, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        prev: bytes | None = None
        for _ in range(n):
            k = value(depth + 1)
            if type(k) is not str:
                raise RefError("map key not str")
            kb = k.encode("utf-8")
            if prev is not None and kb <= prev:
                raise RefError("map keys not strictly increasing")
            prev = kb
            out[k] = value(depth + 1)
        return out

    v = value(0)
    if pos != len(data):
        raise RefError("trailing bytes")
    return v


# --- reference Merkle tree hash and evidence tree, written from spec/merkle.md and spec/tree.md --------------------

def dk(context: str, data: bytes) -> bytes:
    return blake3.blake3(data, derive_key_context=context).digest()


def ref_mth(h: Any, leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 section 2.1.1, recursively."""
    n = len(leaves)
    if n == 0:
        return bytes(h(b""))
    if n == 1:
        return bytes(h(b"\x00" + leaves[0]))
    k = 1
    while k * 2 < n:
        k *= 2
    return bytes(h(b"\x01" + ref_mth(h, leaves[:k]) + ref_mth(h, leaves[k:])))


def tree_h(data: bytes) -> bytes:
    return dk(CTX_TREE, data)


def ref_rank(key: str) -> int:
    v = int.from_bytes(dk(CTX_BOUNDARY, key.encode("utf-8"))[:8], "big")
    zeros = 64 if v == 0 else 64 - v.bit_length()
    return zeros // 6


def ref_tree(items: list[dict[str, Any]]) -> tuple[bytes, list[list[dict[str, Any]]]]:
    """The evidence tree level by level, exactly as spec/tree.md states it (not streaming)."""
    entries = [(it["name"], {"blake3": it["blake3"], "kind": it["kind"], "name": it["name"], "size": it["size"]}, 1)
               for it in items]
    levels: list[list[dict[str, Any]]] = []
    level = 0
    while True:
        groups: list[list[tuple[str, dict[str, Any], int]]] = [[]]
        for i, e in enumerate(entries):
            groups[-1].append(e)
            if ref_rank(e[0]) > level and i != len(entries) - 1:
                groups.append([])
        nodes = []
        for g in groups:
            count = sum(c for _, _, c in g)
            er = ref_mth(tree_h, [ref_encode(v) for _, v, _ in g])
            nid = dk(CTX_NODE, ref_encode({"count": count, "level": level, "root": er}))
            nodes.append({"id": nid, "level": level, "count": count, "last": g[-1][0] if g else None,
                          "entries": len(g), "entries_root": er,
                          "bytes": ref_encode({"entries": [v for _, v, _ in g], "level": level})})
        levels.append(nodes)
        if len(nodes) == 1:
            return nodes[0]["id"], levels
        entries = [(n["last"], {"count": n["count"], "last": n["last"], "node": n["id"]}, n["count"]) for n in nodes]
        level += 1


# --- encoding.json -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", cases("encoding.json", "valid"), ids=ids(cases("encoding.json", "valid")))
def test_encoding_valid(case: dict[str, Any]) -> None:
    value, data = from_tv(case["value"]), bytes.fromhex(case["hex"])
    assert encoding.encode(value) == data
    assert ref_encode(value) == data
    assert same(encoding.decode(data), value)
    assert same(ref_decode(data), value)


@pytest.mark.parametrize("case", cases("encoding.json", "invalid"), ids=ids(cases("encoding.json", "invalid")))
def test_encoding_invalid(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    with pytest.raises(DecodeError):
        encoding.decode(data)
    with pytest.raises(RefError):
        ref_decode(data)
    if case["class"] == "non-canonical":
        # Well-formed MessagePack of allowed types: only the canonical-form rules refuse it.
        msgpack.unpackb(data, raw=False, strict_map_key=False)


@pytest.mark.parametrize("case", cases("encoding.json", "unencodable"), ids=ids(cases("encoding.json", "unencodable")))
def test_encoding_unencodable(case: dict[str, Any]) -> None:
    value = from_tv(case["value"])
    with pytest.raises(DecodeError):
        encoding.encode(value)
    with pytest.raises(RefError):
        ref_encode(value)


def test_encoding_vectors_cover_every_header_family() -> None:
    firsts = {bytes.fromhex(c["hex"])[0] for c in cases("encoding.json", "valid")}
    for head in (0x00, 0x7f, 0xe0, 0xff, 0xa0, 0x90, 0x80, 0xc0, 0xc2, 0xc3, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2,
                 0xd3, 0xd9, 0xda, 0xc4, 0xc5, 0xdc, 0xde):
        assert head in firsts, f"no valid vector starts with 0x{head:02x}"


# --- digests.json --------------------------------------------------------------------------------------------------

def test_digest_contexts_match_the_implementation() -> None:
    doc = load("digests.json")
    assert doc["contexts"] == {"evidence-tree": CTX_TREE, "tree-node": CTX_NODE, "commit": CTX_COMMIT,
                               "commit-log": CTX_LOG, "key-id": CTX_KEY_ID, "node-boundary": CTX_BOUNDARY,
                               "pack-index": CTX_PACK_INDEX, "policy": CTX_POLICY}
    assert len(set(doc["contexts"].values())) == len(doc["contexts"])
    sc = doc["signature_context"]
    assert bytes.fromhex(sc["hex"]) == SIGNATURE_CONTEXT == sc["text"].encode("ascii")
    assert sc["length"] == len(SIGNATURE_CONTEXT) and SIGNATURE_CONTEXT.endswith(b"\x00")
    assert doc["format"] == FORMAT


@pytest.mark.parametrize("case", cases("digests.json", "content"))
def test_content_digest(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["input_hex"])
    assert content_digest(data).hex() == case["blake3"]
    assert blake3.blake3(data).hexdigest() == case["blake3"]
    assert hash_stream(io.BytesIO(data)) == (bytes.fromhex(case["blake3"]), len(data))


def test_content_digest_is_what_b3sum_prints() -> None:
    b3sum = shutil.which("b3sum")
    if b3sum is None:
        pytest.skip("b3sum is not installed")
    for case in cases("digests.json", "content"):
        out = subprocess.run([b3sum, "--no-names"], input=bytes.fromhex(case["input_hex"]), capture_output=True,
                             check=True)
        assert out.stdout.decode().strip() == case["blake3"]


@pytest.mark.parametrize("case", cases("digests.json", "typed"))
def test_typed_digest(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["input_hex"])
    assert typed_digest(case["context"], data).hex() == case["digest"]
    assert dk(case["context"], data).hex() == case["digest"]
    assert case["digest"] != content_digest(data).hex()


def test_typed_digests_differ_per_context() -> None:
    by_input: dict[str, set[str]] = {}
    for c in cases("digests.json", "typed"):
        by_input.setdefault(c["input_hex"], set()).add(c["digest"])
    for digests_ in by_input.values():
        assert len(digests_) == len(load("digests.json")["contexts"])


@pytest.mark.parametrize("case", cases("digests.json", "key_id"))
def test_key_id(case: dict[str, Any]) -> None:
    pub = bytes.fromhex(case["public_key"])
    assert key_id(pub).hex() == case["key_id"] == dk(CTX_KEY_ID, pub).hex()
    assert PublicKey(pub).key_id.hex() == case["key_id"]


# --- merkle.json ---------------------------------------------------------------------------------------------------

HASHERS: dict[str, Hasher] = {"evidence-tree": tree.TREE_HASHER, "commit-log": blake3_hasher(CTX_LOG),
                              "sha256": SHA256}


@pytest.mark.parametrize("case", cases("merkle.json", "trees"))
def test_merkle_root(case: dict[str, Any]) -> None:
    hasher = HASHERS[case["hasher"]]
    data = [bytes.fromhex(x) for x in case["leaves_hex"]]
    assert [hasher.leaf(d).hex() for d in data] == case["leaf_hashes"]
    assert root(hasher, data).hex() == case["root"]
    assert ref_mth(hasher.fn, data).hex() == case["root"]


def test_merkle_hashers_are_the_spec_ones() -> None:
    doc = load("merkle.json")
    assert doc["hashers"]["evidence-tree"]["context"] == CTX_TREE
    assert doc["hashers"]["commit-log"]["context"] == CTX_LOG
    assert tree.TREE_HASHER.fn(b"x") == dk(CTX_TREE, b"x")
    assert HASHERS["commit-log"].fn(b"x") == dk(CTX_LOG, b"x")
    empty = [c for c in cases("merkle.json", "trees") if c["hasher"] == "sha256" and not c["leaves_hex"]]
    assert empty[0]["root"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # RFC 9162 MTH({})


@pytest.mark.parametrize("case", cases("merkle.json", "inclusion"))
def test_merkle_inclusion(case: dict[str, Any]) -> None:
    hasher = HASHERS[case["hasher"]]
    proof = [bytes.fromhex(p) for p in case["proof"]]
    leaf, rt = bytes.fromhex(case["leaf_hash"]), bytes.fromhex(case["root"])
    verify_inclusion(hasher, case["index"], case["size"], leaf, proof, rt)
    if proof:
        bad = [bytearray(p) for p in proof]
        bad[-1][0] ^= 1
        with pytest.raises(ProofError):
            verify_inclusion(hasher, case["index"], case["size"], leaf, [bytes(b) for b in bad], rt)
    with pytest.raises(ProofError):
        verify_inclusion(hasher, case["index"], case["size"] * 2, leaf, proof, rt)
    with pytest.raises(ProofError):
        verify_inclusion(hasher, case["index"], case["size"], bytes([leaf[0] ^ 1]) + leaf[1:], proof, rt)


@pytest.mark.parametrize("case", cases("merkle.json", "consistency"))
def test_merkle_consistency(case: dict[str, Any]) -> None:
    hasher = HASHERS[case["hasher"]]
    proof = [bytes.fromhex(p) for p in case["proof"]]
    r1, r2 = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
    verify_consistency(hasher, case["size1"], case["size2"], r1, r2, proof)
    with pytest.raises(ProofError):
        verify_consistency(hasher, case["size1"], case["size2"], r2, r1, proof)


# --- tree.json -----------------------------------------------------------------------------------------------------

def test_tree_parameters() -> None:
    p = load("tree.json")["parameters"]
    assert (p["bits_per_level"], p["boundary_context"], p["tree_context"], p["node_context"]) == (
        tree.BITS_PER_LEVEL, CTX_BOUNDARY, CTX_TREE, CTX_NODE)


@pytest.mark.parametrize("case", cases("tree.json", "ranks"), ids=ids(cases("tree.json", "ranks")))
def test_rank(case: dict[str, Any]) -> None:
    assert dk(CTX_BOUNDARY, case["key"].encode()).hex() == case["boundary_hash"]
    assert tree.rank(case["key"]) == ref_rank(case["key"]) == case["rank"]


def vector_items(case: dict[str, Any]) -> list[ItemEntry]:
    return [ItemEntry(i["name"], i["kind"], i["size"], Digest(bytes.fromhex(i["blake3"]))) for i in case["items"]]


@pytest.mark.parametrize("case", cases("tree.json", "cases"), ids=ids(cases("tree.json", "cases")))
def test_tree_case(case: dict[str, Any]) -> None:
    items = vector_items(case)
    names = [i.name.encode() for i in items]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(tree.rank(i["name"]) == i["rank"] for i in case["items"])
    for i in case["items"]:  # each item's content, as the entry commits to it
        content = bytes.fromhex(i["content_hex"])
        assert (len(content), content_digest(content).hex()) == (i["size"], i["blake3"])

    # The implementation's streaming builder: same root, same set of nodes.
    emitted: dict[bytes, bytes] = {}
    got_root, count = tree.build(items, lambda nid, data: emitted.__setitem__(nid, data))
    assert got_root.hex() == case["root"] and count == case["count"]
    builder = tree.TreeBuilder()
    for it in items:
        builder.add(it)
    assert builder.finish().hex() == case["root"]
    assert builder.items_root is not None and builder.items_root.hex() == case["items_root"]
    assert ref_items_root(case["items"]).hex() == case["items_root"]  # tree.md section 7, from the spec
    want = {bytes.fromhex(n["id"]): bytes.fromhex(n["hex"]) for lv in case["levels"] for n in lv}
    assert emitted == want

    # The reference builder written from spec/tree.md: same nodes, level by level, left to right.
    raw = [{"name": i.name, "kind": i.kind, "size": i.size, "blake3": bytes(i.blake3)} for i in items]
    ref_root, ref_levels = ref_tree(raw)
    assert ref_root.hex() == case["root"]
    assert len(ref_levels) == len(case["levels"])
    for ref_lv, lv in zip(ref_levels, case["levels"], strict=True):
        assert [n["id"].hex() for n in ref_lv] == [n["id"] for n in lv]
        assert [n["bytes"].hex() for n in ref_lv] == [n["hex"] for n in lv]
        assert [(n["level"], n["count"], n["last"], n["entries"], n["entries_root"].hex()) for n in ref_lv] == [
            (n["level"], n["count"], n["last"], n["entries"], n["entries_root"]) for n in lv]
    top = case["levels"][-1]
    assert len(top) == 1 and top[0]["id"] == case["root"]
    assert all(len(lv) > 1 for lv in case["levels"][:-1])

    # Reading it back: the walk checks every node and yields the items in order.
    def get(nid: Digest) -> bytes:
        return want[nid]

    assert list(tree.walk(get, Digest(bytes.fromhex(case["root"])))) == items
    assert sum(i.size for i in items) == case["bytes"]


@pytest.mark.parametrize("case", cases("tree.json", "invalid"), ids=ids(cases("tree.json", "invalid")))
def test_tree_invalid(case: dict[str, Any]) -> None:
    nodes = {bytes.fromhex(k): bytes.fromhex(v) for k, v in case["nodes"].items()}

    def get(nid: Digest) -> bytes:
        if nid not in nodes:
            raise CheckFailed(f"tree node {nid.hex()[:16]}: missing")
        return nodes[nid]

    rt = Digest(bytes.fromhex(case["root"]))
    if case["expect"] == "walk-error":
        with pytest.raises(CheckFailed):
            list(tree.walk(get, rt))
    else:
        assert case["expect"] == "rebuild-mismatch"
        items = list(tree.walk(get, rt))
        rebuilt, _ = tree.build(items)
        assert rebuilt != rt
        ref_root, _ = ref_tree([{"name": i.name, "kind": i.kind, "size": i.size, "blake3": bytes(i.blake3)}
                                for i in items])
        assert ref_root == rebuilt


def test_tree_vectors_include_a_multi_level_tree() -> None:
    by_name = {c["name"]: c for c in cases("tree.json", "cases")}
    assert len(by_name["300 items"]["levels"]) >= 3
    assert len(by_name["300 items"]["levels"][0]) >= 4
    (empty,), = by_name["empty"]["levels"]
    assert (empty["level"], empty["entries"], empty["count"], empty["last"]) == (0, 0, 0, None)
    assert empty["hex"] == "82a7656e747269657390a56c6576656c00"  # {"entries": [], "level": 0}
    assert by_name["empty"]["items_root"] == dk(CTX_TREE, b"").hex()  # MTH of no leaves (tree.md section 7)


# --- reference decoders of item entries and signed commits, written from spec/objects.md -------------------------

REF_KINDS = ("file", "log", "json", "offsets", "receipt", "summary", "artifact", "decision")
REF_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
REF_SIGCTX = b"ledger/1 closure-commit signature\x00"  # spec/digests.md section 4
REF_U64 = 2**64 - 1
REF_BODY: dict[str, tuple[type, ...]] = {
    "anchors": (list,), "bytes": (int,), "count": (int,), "criteria": (list,), "format": (str,),
    "items_root": (bytes,), "key": (bytes,), "log_root": (bytes,), "log_size": (int,), "nonce": (bytes,),
    "parent": (bytes, type(None)), "policy": (bytes, type(None)), "root": (bytes,), "run": (str,), "seq": (int,),
    "time": (int,), "waivers": (list,)}


def ref_fields(v: Any, required: dict[str, type], optional: dict[str, type] | None = None) -> bool:
    """A map with exactly these fields (the optional ones may be absent) of exactly these types."""
    allowed = {**required, **(optional or {})}
    return (type(v) is dict and set(required) <= set(v) <= set(allowed)
            and all(type(v[k]) is allowed[k] for k in v))


def ref_item_name(v: Any) -> bool:
    """objects.md section 1: 1-1024 UTF-8 bytes, relative, no control character, no empty, . or .. segment."""
    if type(v) is not str:
        return False
    try:
        raw = v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return (1 <= len(raw) <= 1024 and not v.startswith("/")
            and not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in v)
            and all(seg not in ("", ".", "..") for seg in v.split("/")))


def ref_item_entry(v: Any) -> bool:
    return (ref_fields(v, {"blake3": bytes, "kind": str, "name": str, "size": int}) and len(v["blake3"]) == 32
            and v["kind"] in REF_KINDS and ref_item_name(v["name"]) and 0 <= v["size"] <= REF_U64)


def _ref_anchors(rows: list[Any]) -> bool:
    keys = []
    for a in rows:
        if not (type(a) is list and len(a) == 5 and type(a[0]) is str and type(a[1]) is str and a[1]
                and all(type(x) is int for x in a[2:])):
            return False
        g, t, p, start, end = a
        if not (0 <= p <= 2**31 - 1 and 0 <= start <= end <= 2**63 - 1):
            return False
        keys.append((g.encode("utf-8"), t.encode("utf-8"), p))
    # sorted by (group, topic, partition, start, end) and no stream twice: strictly ascending streams
    return all(x < y for x, y in zip(keys, keys[1:], strict=False))


def _ref_criteria(rows: list[Any]) -> bool:
    return all(type(c) is list and len(c) == 3 and type(c[0]) is str and c[0] and type(c[1]) is bool
               and type(c[2]) is str for c in rows)


def _ref_waivers(rows: list[Any]) -> bool:
    keys = []
    for w in rows:
        if not ref_fields(w, {"detector": str, "item": str, "line": int, "rule": dict}):
            return False
        r = w["rule"]
        if not ref_fields(r, {"item": str, "reason": str}, {"line": int, "detector": str}):
            return False
        if not (ref_item_name(w["item"]) and 1 <= w["line"] <= REF_U64 and w["detector"] and r["item"]
                and any(c not in _REF_WS for c in r["reason"]) and 1 <= r.get("line", 1) <= REF_U64
                and r.get("detector", "-") != ""):
            return False
        keys.append((w["item"].encode("utf-8"), w["line"], w["detector"].encode("utf-8")))
    return all(x < y for x, y in zip(keys, keys[1:], strict=False))


def ref_commit(data: bytes) -> tuple[dict[str, Any], bytes, bytes] | None:
    """A commit slot's bytes decoded as objects.md section 3 states it: (body, body bytes, signature), or None when
    a reader must refuse them."""
    try:
        env = ref_decode(data)
        if not ref_fields(env, {"body": bytes, "sig": bytes}) or len(env["sig"]) != 64:
            return None
        b = ref_decode(env["body"])
    except RefError:
        return None
    if type(b) is not dict or set(b) != set(REF_BODY) or not all(type(b[k]) in REF_BODY[k] for k in b):
        return None
    digests = [b[k] for k in ("items_root", "key", "log_root", "parent", "policy", "root") if b[k] is not None]
    ok = (b["format"] == "ledger/1" and REF_RUN_ID.fullmatch(b["run"]) is not None
          and 0 <= b["seq"] <= 2**63 - 1 and (b["seq"] == 0) == (b["parent"] is None) and b["log_size"] == b["seq"]
          and all(len(d) == 32 for d in digests) and len(b["nonce"]) == 16
          and all(0 <= b[k] <= REF_U64 for k in ("bytes", "count", "time"))
          and _ref_anchors(b["anchors"]) and _ref_criteria(b["criteria"]) and _ref_waivers(b["waivers"]))
    return (b, env["body"], env["sig"]) if ok else None


def ref_commit_outcome(data: bytes, trusted: list[bytes]) -> str:
    """verify.md steps 2-3 over a slot's bytes, from the spec: decode, select a trusted key by key id, check Ed25519."""
    c = ref_commit(data)
    if c is None:
        return "decode-error"
    body, body_bytes, sig = c
    key = next((k for k in trusted if dk(CTX_KEY_ID, k) == body["key"]), None)
    if key is None:
        return "untrusted-key"
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, REF_SIGCTX + body_bytes)
    except InvalidSignature:
        return "bad-signature"
    return "ok"


def ref_items_root(items: list[dict[str, Any]]) -> bytes:
    """tree.md section 7: MTH["ledger/1 evidence-tree"] over the item entries in name order."""
    return ref_mth(tree_h, [ref_encode({"blake3": bytes.fromhex(i["blake3"]), "kind": i["kind"], "name": i["name"],
                                        "size": i["size"]}) for i in items])


# --- commits.json --------------------------------------------------------------------------------------------------

def vector_keys() -> list[SigningKey]:
    return [SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed"])))
            for k in load("commits.json")["keys"]]


def outcome(envelope: bytes, trusted: list[PublicKey]) -> str:
    """What verify.py steps 2-3 conclude about one commit slot's bytes."""
    try:
        commit = SignedCommit.from_bytes(envelope)
    except DecodeError:
        return "decode-error"
    key = next((k for k in trusted if k.key_id == commit.body.key), None)
    if key is None:
        return "untrusted-key"
    return "ok" if key.verify(commit.body_bytes, commit.sig) else "bad-signature"


def test_commit_keys() -> None:
    doc = load("commits.json")
    for k, sk in zip(doc["keys"], vector_keys(), strict=True):
        raw = sk.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert raw.hex() == k["public_key"]
        assert sk.public.key_id.hex() == k["key_id"] == dk(CTX_KEY_ID, raw).hex()
    # RFC 8032 section 7.1 TEST 1: the public key of the first seed.
    assert doc["keys"][0]["public_key"] == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert bytes.fromhex(doc["signature_context_hex"]) == SIGNATURE_CONTEXT


def test_commit_chain() -> None:
    doc = load("commits.json")
    sk = vector_keys()[0]
    trusted = [PublicKey(bytes.fromhex(h)) for h in doc["trusted"]]
    prev: bytes | None = None
    digests_: list[bytes] = []
    for seq, c in enumerate(doc["chain"]):
        env = bytes.fromhex(c["envelope_hex"])
        commit = SignedCommit.from_bytes(env)
        body_bytes = bytes.fromhex(c["body_hex"])
        assert commit.body_bytes == body_bytes and commit.encode() == env
        assert ref_decode(env) == {"body": body_bytes, "sig": bytes.fromhex(c["signature"])}
        b = c["body"]
        body = commit.body
        assert (body.run, body.seq, body.count, body.total_bytes, body.time_ms, body.log_size) == (
            b["run"], b["seq"], b["count"], b["bytes"], b["time"], b["log_size"])
        assert (body.root.hex(), body.items_root.hex(), body.key.hex(), body.log_root.hex()) == (
            b["root"], b["items_root"], b["key"], b["log_root"])
        assert body.parent == (None if b["parent"] is None else bytes.fromhex(b["parent"]))
        assert body.policy == (None if b["policy"] is None else bytes.fromhex(b["policy"]))
        assert [list(a) for a in body.anchors] == b["anchors"]
        assert same([list(c) for c in body.criteria], b["criteria"])
        assert [w.to_value() for w in body.waivers] == b["waivers"]
        assert same(ref_decode(body_bytes), {
            **{k: bytes.fromhex(v) if k in ("items_root", "key", "log_root", "nonce", "root") else v
               for k, v in b.items()},
            "parent": None if b["parent"] is None else bytes.fromhex(b["parent"]),
            "policy": None if b["policy"] is None else bytes.fromhex(b["policy"])})
        assert CommitBody.from_bytes(body_bytes).encode() == body_bytes
        assert commit.digest.hex() == c["digest"] == dk(CTX_COMMIT, body_bytes).hex()
        # The signature: Ed25519 over the context string, then the body bytes; deterministic, so re-signing agrees.
        assert sk.sign(body_bytes).hex() == c["signature"]
        Ed25519PublicKey.from_public_bytes(trusted[0].raw).verify(bytes.fromhex(c["signature"]),
                                                                   SIGNATURE_CONTEXT + body_bytes)
        with pytest.raises(InvalidSignature):
            Ed25519PublicKey.from_public_bytes(trusted[0].raw).verify(bytes.fromhex(c["signature"]), body_bytes)
        assert outcome(env, trusted) == "ok" == ref_commit_outcome(env, [k.raw for k in trusted])
        ref = ref_commit(env)
        assert ref is not None and same(ref[0], ref_decode(body_bytes)) and ref[1:] == (body_bytes, commit.sig)
        # The items root: the RFC 9162 root over the sealed tree's item entries (tree.md section 7).
        tc = next(t for t in cases("tree.json", "cases") if t["name"] == c["tree_case"])
        assert body.items_root == ref_items_root(tc["items"])
        # The chain: slot, parent link, commit-log root over the earlier commits' digests.
        assert c["slot"] == layout.slot_key(seq)
        assert body.parent == prev
        assert body.log_root == ref_mth(lambda x: dk(CTX_LOG, x), digests_)
        prev = commit.digest
        digests_.append(commit.digest)


@pytest.mark.parametrize("case", cases("commits.json", "invalid"), ids=ids(cases("commits.json", "invalid")))
def test_commit_invalid(case: dict[str, Any]) -> None:
    trusted = [PublicKey(bytes.fromhex(h)) for h in load("commits.json")["trusted"]]
    env = bytes.fromhex(case["envelope_hex"])
    assert outcome(env, trusted) == case["expect"] == ref_commit_outcome(env, [k.raw for k in trusted])


def test_commit_roots_are_tree_vector_roots() -> None:
    roots = {c["root"]: c for c in cases("tree.json", "cases")}
    for c in cases("commits.json", "chain"):
        tc = roots[c["body"]["root"]]
        assert tc["name"] == c["tree_case"]
        assert (c["body"]["count"], c["body"]["bytes"], c["body"]["items_root"]) == (
            tc["count"], tc["bytes"], tc["items_root"])


def policy_documents() -> dict[str, bytes]:
    """Every valid canonical policy document of policies.json, by the hex of its digest."""
    return {c["digest"]: bytes.fromhex(c["hex"]) for c in cases("policies.json", "compose") if c["expect"] == "ok"}


def test_commit_criteria_reevaluate() -> None:
    """verify.md step 7 over the vector chain: each commit's criteria, re-evaluated from its sealed policy over the
    items of its tree and the anchors of the commits before it, hold as sealed; its anchors are its offsets."""
    trees = {c["name"]: c for c in cases("tree.json", "cases")}
    docs = policy_documents()
    earlier: list[CommitBody] = []
    for c in cases("commits.json", "chain"):
        body = CommitBody.from_bytes(bytes.fromhex(c["body_hex"]))
        policy = None
        if body.policy is not None:
            data = docs[body.policy.hex()]
            assert dk(CTX_POLICY, data) == body.policy
            policy = Policy.from_bytes(data)
        items = trees[c["tree_case"]]["items"]
        content = {i["name"]: bytes.fromhex(i["content_hex"]) for i in items}
        ev = build_evidence([ItemEntry(i["name"], i["kind"], i["size"], Digest(bytes.fromhex(i["blake3"])))
                             for i in items], lambda e, content=content: content[e.name])
        got = evaluate(policy, ev, previous_ends([(b.seq, b.run, [kinds.Offsets(*a) for a in b.anchors])
                                                  for b in earlier]))
        assert [(n, ok) for n, ok, _ in body.criteria if n != "content-present"] == [(x.name, x.ok) for x in got]
        assert [x for x in body.criteria if x[0] == "content-present"] == [("content-present", True,
                                                                            "all content stored")]
        assert body.criteria[1][0] == "content-present" and all(ok for _, ok, _ in body.criteria)
        assert body.anchors == tuple((a.group, a.topic, a.partition, a.start, a.end) for a in anchors(ev))
        earlier.append(body)
    assert earlier[-1].policy is not None and earlier[-1].anchors and earlier[-1].waivers


# --- objects.json --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", cases("objects.json", "cases"), ids=ids(cases("objects.json", "cases")))
def test_object_encoding(case: dict[str, Any]) -> None:
    value, data = from_tv(case["value"]), bytes.fromhex(case["hex"])
    assert encoding.encode(value) == data == ref_encode(value)
    assert same(encoding.decode(data), value)
    kind = case["type"]
    if kind == "item entry":
        assert ItemEntry.from_value(value).encode() == data
    elif kind == "child entry":
        assert ChildEntry.from_value(value).encode() == data
    elif kind == "completion marker":
        assert Marker.from_bytes(data).encode() == data
        assert case["key"] == layout.marker_key(value["run"])
    elif kind == "batch":
        assert Batch.from_bytes(data).encode() == data
        assert case["key"].startswith(layout.staged_prefix(value["run"])) and case["key"].endswith(".batch")
        assert "waivers" not in value or value["waivers"]  # omitted when there are none
    elif kind == "store config":
        assert StoreConfig.from_bytes(data).encode() == data
        assert case["key"] == layout.CONFIG
    else:
        assert kind == "sealing fence"
        m = encoding.decode_map(data, "sealing fence", {"format": str, "run": str, "time": int})
        assert m["format"] == FORMAT and case["key"] == layout.sealing_key(m["run"])


@pytest.mark.parametrize("case", cases("objects.json", "node_id"))
def test_node_id(case: dict[str, Any]) -> None:
    er = bytes.fromhex(case["entries_root"])
    data = ref_encode({"count": case["count"], "level": case["level"], "root": er})
    assert data.hex() == case["input_hex"]
    assert node_id(case["level"], case["count"], er).hex() == case["id"] == dk(CTX_NODE, data).hex()


def parse_object(kind: str, data: bytes) -> object:
    if kind == "item entry":
        return ItemEntry.from_value(encoding.decode(data))
    if kind == "child entry":
        return ChildEntry.from_value(encoding.decode(data))
    if kind == "completion marker":
        return Marker.from_bytes(data)
    if kind == "batch":
        return Batch.from_bytes(data)
    assert kind == "store config"
    return StoreConfig.from_bytes(data)


@pytest.mark.parametrize("case", cases("objects.json", "invalid"), ids=ids(cases("objects.json", "invalid")))
def test_object_invalid(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    encoding.decode(data)  # canonical bytes: refused for what they say, not for how they are encoded
    with pytest.raises(DecodeError):
        parse_object(case["type"], data)


def test_object_kinds() -> None:
    from ledger.names import KINDS

    assert load("objects.json")["kinds"] == list(KINDS)


# --- packs.json ----------------------------------------------------------------------------------------------------

def test_pack_and_index() -> None:
    p = load("packs.json")["pack"]
    objs = [bytes.fromhex(o) for o in p["objects_hex"]]
    pack = bytes.fromhex(p["pack_hex"])
    recs = [(bytes.fromhex(r["digest"]), r["offset"], r["size"]) for r in p["records"]]
    for d, off, size in recs:
        assert content_digest(pack[off:off + size]) == d
    assert {content_digest(o) for o in objs} == {d for d, _, _ in recs}
    assert pack == b"".join(pack[off:off + size] for _, off, size in recs)
    idx = bytes.fromhex(p["index_hex"])
    assert packs.encode_index(p["pack_id"], recs) == idx
    assert packs.decode_index(p["pack_id"], idx) == {d: (off, size) for d, off, size in recs}
    # The layout, parsed with nothing but the spec: header, sorted records, checksum.
    magic, pid, count = struct.unpack_from(">8s16sQ", idx)
    assert magic == load("packs.json")["magic"].encode() == packs.INDEX_MAGIC and pid.hex() == p["pack_id"]
    assert len(idx) == 32 + 48 * count + 32 and count == len(recs)
    body = [struct.unpack_from(">32sQQ", idx, 32 + 48 * i) for i in range(count)]
    assert body == sorted(recs)
    assert idx[-32:] == dk(CTX_PACK_INDEX, idx[:-32])


def test_empty_pack_index() -> None:
    e = load("packs.json")["empty_index"]
    idx = bytes.fromhex(e["index_hex"])
    assert len(idx) == 64 and packs.decode_index(e["pack_id"], idx) == {}


@pytest.mark.parametrize("case", cases("packs.json", "invalid"), ids=ids(cases("packs.json", "invalid")))
def test_pack_index_invalid(case: dict[str, Any]) -> None:
    with pytest.raises(Corrupt):
        packs.decode_index(case["pack_id"], bytes.fromhex(case["index_hex"]))


# --- store.json ----------------------------------------------------------------------------------------------------

def test_store_keys() -> None:
    doc = load("store.json")
    assert (doc["loose_min"], doc["max_pack_bytes"], doc["slot_digits"]) == (
        packs.LOOSE_MIN, packs.MAX_PACK_BYTES, layout.SLOT_DIGITS)
    for k in doc["keys"]:
        assert layout.is_immutable(k["key"]) is k["write_once"], k  # what an S3 store with Object Lock locks
        if "seq" in k:
            assert layout.slot_key(k["seq"]) == k["key"] and layout.slot_seq(k["key"]) == k["seq"]
            assert len(k["key"]) == len("chain/") + 20
        elif "pack_id" in k:
            assert k["key"] in (packs.pack_key(k["pack_id"]), packs.index_key(k["pack_id"]))
        elif "digest" in k:
            assert packs.loose_key(bytes.fromhex(k["digest"])) == k["key"]
        elif "policy" in k:
            assert layout.policy_key(bytes.fromhex(k["policy"])) == k["key"] == f"policies/{k['policy']}"
            assert k["policy"] in policy_documents()
        elif "run" in k:
            assert k["key"] in (layout.staged_prefix(k["run"]), layout.sealing_key(k["run"]),
                                layout.marker_key(k["run"]))
        else:
            assert k["key"] == layout.CONFIG
    for n in doc["node_pack_ids"]:
        assert layout.node_pack_ids(bytes.fromhex(n["root"]), n["n"]) == n["ids"]
        assert all(i.startswith(n["root"][:28]) and len(i) == 32 for i in n["ids"])


# --- reference record validation and criteria evaluation, written from spec/kinds.md and spec/policy.md ------------

_REF_WS = {chr(c) for c in (*range(0x09, 0x0e), *range(0x1c, 0x21), 0x85, 0xa0, 0x1680, *range(0x2000, 0x200b), 0x2028,
                            0x2029, 0x202f, 0x205f, 0x3000)}
_REF_ALGS = {"b3": 64, "blake3": 64, "sha256": 64, "sha384": 96, "sha512": 128, "sha1": 40, "md5": 32}
_REF_MAX = 2**63 - 1


def ref_text(v: Any) -> bool:
    return (type(v) is str and any(c not in _REF_WS for c in v) and len(v) <= 1024
            and not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in v))


def ref_uint(limit: int) -> Any:
    return lambda v: type(v) is int and 0 <= v <= limit


def ref_topic(v: Any) -> bool:
    return ref_text(v) and re.fullmatch(r"[A-Za-z0-9._-]{1,249}", v) is not None and v not in (".", "..")


def ref_digest(v: Any) -> bool:
    m = re.fullmatch(r"(?:([a-z0-9]+):)?((?:[0-9a-f]{2}){16,64})", v) if ref_text(v) else None
    return m is not None and (m.group(1) is None or _REF_ALGS.get(m.group(1)) == len(m.group(2)))


REF_SCHEMAS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "offsets": ({"topic": ref_topic, "partition": ref_uint(2**31 - 1), "start": ref_uint(_REF_MAX),
                 "end": ref_uint(_REF_MAX)}, {"group": ref_text, "high": ref_uint(_REF_MAX)}),
    "receipt": ({"source": ref_text, "count": ref_uint(_REF_MAX)},
                {"batch": ref_text, "digest": ref_digest, "topic": ref_topic, "partition": ref_uint(2**31 - 1),
                 "first": lambda v: ref_uint(_REF_MAX)(v) or ref_text(v),
                 "last": lambda v: ref_uint(_REF_MAX)(v) or ref_text(v)}),
    "artifact": ({"name": ref_text, "version": ref_text}, {"digest": ref_digest}),
    "decision": ({"name": ref_text, "outcome": ref_text},
                 {"reason": ref_text, "inputs": lambda v: type(v) is list and all(ref_digest(x) for x in v)}),
}


def ref_valid(kind: str, v: Any) -> bool:
    if kind == "json":
        return True
    if type(v) is not dict:
        return False
    if kind == "summary":
        return any(k != "name" for k in v) and all(
            ref_text(x) if k == "name" else (1 <= len(k) <= 128 and ref_uint(_REF_MAX)(x)) for k, x in v.items())
    required, optional = REF_SCHEMAS[kind]
    if any(f not in v for f in required) or any(f not in required and f not in optional for f in v):
        return False
    if not all({**required, **optional}[f](x) for f, x in v.items()):
        return False
    return kind != "offsets" or v["start"] <= v["end"] <= v.get("high", v["end"])


def ref_default_name(kind: str, v: Any, stored: bytes) -> str:
    if kind == "offsets":
        return f"offsets/{v['group'] + '/' if 'group' in v else ''}{v['topic']}/{v['partition']}.json"
    if kind == "receipt":
        tail = (f"/{v['batch']}" if "batch" in v else f"/{v['topic']}/{v['partition']}"
                if "topic" in v and "partition" in v else "")
        return f"receipts/{v['source']}{tail}.json"
    if kind in ("summary", "artifact", "decision"):
        folder = {"summary": "summary", "artifact": "artifacts", "decision": "decisions"}[kind]
        return f"{folder}/{v.get('name', 'summary')}.json"
    return f"records/{kind}/{blake3.blake3(stored).hexdigest()[:16]}.json"


_REF_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def ref_stored(v: Any) -> bytes:
    """The stored form of a record (spec/kinds.md): canonical JSON, UTF-8."""
    def enc(x: Any) -> str:
        if x is None or type(x) is bool:
            return {None: "null", True: "true", False: "false"}[x]
        if type(x) in (int, float):
            return repr(x)
        if type(x) is str:
            return '"' + "".join(_REF_ESC.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 else c) for c in x) + '"'
        if type(x) is list:
            return "[" + ",".join(map(enc, x)) + "]"
        return "{" + ",".join(enc(k) + ":" + enc(x[k]) for k in sorted(x, key=str.encode)) + "}"
    return enc(v).encode("utf-8")


def ref_stream(v: dict[str, Any]) -> tuple[str, str, int]:
    return v.get("group", ""), v["topic"], v["partition"]


def ref_evaluate(pol: dict[str, Any] | None, items: list[tuple[str, str, bytes]],
                 earlier: list[list[list[Any]]]) -> tuple[list[tuple[str, bool]], list[list[Any]]]:
    """(name, ok) of every criterion but content-present, and the anchors; RefError('usage') for the error."""
    typed = ("offsets", "receipt", "summary", "artifact", "decision")
    records: list[tuple[str, dict[str, Any]]] = []
    invalid = False
    for _, kind, content in sorted(items, key=lambda x: x[0].encode()):
        if kind not in typed:
            continue
        try:
            value = json.loads(content) if len(content) <= 1 << 20 else None
        except ValueError:
            value = None
        if ref_valid(kind, value):
            records.append((kind, value))
        else:
            invalid = True
    offs = [v for k, v in records if k == "offsets"]
    versions: dict[str, set[str]] = {}
    for k, v in records:
        if k == "artifact":
            versions.setdefault(v["name"], set()).add(v["version"])
    coherent = len({ref_stream(v) for v in offs}) == len(offs) and all(len(s) == 1 for s in versions.values())
    out = [("non-empty", bool(items)), ("records-valid", not invalid), ("records-coherent", coherent)]
    anchor_rows = sorted(([*ref_stream(v), v["start"], v["end"]] for v in offs),
                         key=lambda a: (a[0].encode(), a[1].encode(), a[2]))
    if pol is None:
        return out, anchor_rows
    for kind in sorted(pol["min"], key=str.encode):
        out.append((f"min:{kind}", sum(1 for _, k, _ in items if k == kind) >= pol["min"][kind]))
    if pol["artifacts"]:
        out.append(("artifacts", all(a in versions for a in pol["artifacts"])))
    for topic in sorted(pol["topics"], key=str.encode):
        out.append((f"topic:{topic}", {v["partition"] for v in offs if v["topic"] == topic}
                    == set(range(pol["topics"][topic]))))
    for rule in pol["reconcile"]:
        def total(term: str) -> int:
            kind, fld = term.split(".", 1)
            recs = [v for k, v in records if k == kind]
            if kind == "offsets":
                return sum(v["end"] - v["start"] for v in recs)
            vals = [v[fld] for v in recs if fld in v and (kind, fld) != ("summary", "name")]
            if recs and not vals:
                raise RefError("usage")
            return sum(vals)
        left, right = sum(map(total, rule["left"])), sum(map(total, rule["right"]))
        present = all(any(k == t.split(".")[0] for k, _ in records) for t in rule["left"] + rule["right"])
        out.append((f"reconcile:{rule['name']}", present and left == right))
    if pol["continuity"]:
        ends = {tuple(a[:3]): a[4] for anchors_ in earlier for a in anchors_}
        out.append(("continuity", all(ends.get(ref_stream(v), v["start"]) == v["start"] for v in offs
                                      if "*" in pol["continuity"] or v["topic"] in pol["continuity"])))
    return out, anchor_rows


# --- kinds.json ----------------------------------------------------------------------------------------------------

def test_kinds_constants() -> None:
    from ledger.names import KINDS, RECORD_KINDS

    doc = load("kinds.json")
    assert doc["kinds"] == list(KINDS) and doc["typed_kinds"] == list(kinds.TYPED_KINDS)
    assert doc["record_kinds"] == list(RECORD_KINDS)
    assert (doc["max_record_bytes"], doc["max_text"]) == (kinds.MAX_RECORD_BYTES, kinds.MAX_TEXT) == (1 << 20, 1024)
    assert doc["digest_algorithms"] == _REF_ALGS
    for alg, n in doc["digest_algorithms"].items():
        for digits, ok in ((n, True), (n - 2, False), (n + 2, False)):
            value = {"name": "a", "version": "1", "digest": f"{alg}:" + "a" * digits}
            assert ref_valid("artifact", value) is ok
            if ok:
                kinds.validate("artifact", value, "vector")
            else:
                with pytest.raises(kinds.RecordError):
                    kinds.validate("artifact", value, "vector")


def test_record_kinds_only() -> None:
    from ledger.errors import Refused
    from ledger.evidence import record
    from ledger.storage import MemoryStore

    for kind in ("file", "log"):  # files are added, not recorded; refused before anything is read or written
        with pytest.raises(Refused):
            record(MemoryStore(), "r", kind, "{}")


@pytest.mark.parametrize("case", cases("kinds.json", "valid"), ids=ids(cases("kinds.json", "valid")))
def test_kind_valid(case: dict[str, Any]) -> None:
    kind, value = case["kind"], json.loads(case["json"])
    assert kinds.validate(kind, value, "vector") == value and ref_valid(kind, value)
    stored = kinds.canonical_json(value)
    assert stored == case["stored"].encode("utf-8")
    assert stored == ref_stored(value)
    assert kinds.load_record(kind, stored, "vector") == value
    digest = content_digest(stored).hex()
    assert kinds.default_name(kind, value, digest) == case["default_name"] == ref_default_name(kind, value, stored)


@pytest.mark.parametrize("case", cases("kinds.json", "invalid"), ids=ids(cases("kinds.json", "invalid")))
def test_kind_invalid(case: dict[str, Any]) -> None:
    with pytest.raises(kinds.RecordError) as exc:
        kinds.load_record(case["kind"], case["json"].encode("utf-8"), "vector")
    assert exc.value.exit_code == 6
    if case["field"] is None:
        assert "field '" not in str(exc.value)
    else:
        assert f"field {case['field']!r}" in str(exc.value)
    assert not ref_valid(case["kind"], json.loads(case["json"]))


@pytest.mark.parametrize("case", cases("kinds.json", "record_inputs"), ids=ids(cases("kinds.json", "record_inputs")))
def test_record_input(case: dict[str, Any]) -> None:
    def parse() -> list[Any]:
        values = kinds.parse_records(case["json"], case["kind"], "vector")
        for v in values:
            kinds.validate(case["kind"], v, "vector")
            kinds.canonical_json(v)
        return values

    if case["records"] is None:
        with pytest.raises(kinds.RecordError):
            parse()
    else:
        assert len(parse()) == case["records"]


# --- policies.json -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", cases("policies.json", "compose"), ids=ids(cases("policies.json", "compose")))
def test_policy_compose(case: dict[str, Any], tmp_path: Path) -> None:
    for name, text in case["files"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    paths = [str(tmp_path / n) for n in case["load"]]
    if case["expect"] == "usage-error":
        with pytest.raises(UsageError):
            load_policies(paths)
        return
    p = load_policies(paths)
    data = bytes.fromhex(case["hex"])
    assert p.encode() == data == ref_encode(from_tv(case["value"]))
    assert p.digest.hex() == case["digest"] == dk(CTX_POLICY, data).hex() == bytes.fromhex(case["key"][9:]).hex()
    assert case["key"] == layout.policy_key(p.digest) and case["key"].startswith("policies/")
    assert Policy.from_bytes(data) == p
    doc = ref_decode(data)
    assert sorted(doc) == ["artifacts", "continuity", "format", "min", "reconcile", "sources", "topics"]
    for name, digest in doc["sources"]:  # each file read, once: its base name and the BLAKE3 of its bytes
        assert blake3.blake3((tmp_path / name).read_bytes()).hexdigest() == digest
    assert len({n for n, _ in doc["sources"]}) == len(doc["sources"])


@pytest.mark.parametrize("case", cases("policies.json", "documents_invalid"),
                         ids=ids(cases("policies.json", "documents_invalid")))
def test_policy_document_invalid(case: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        Policy.from_bytes(bytes.fromhex(case["hex"]))


def test_policy_context() -> None:
    assert load("policies.json")["context"] == CTX_POLICY == "ledger/1 policy"
    assert load("policies.json")["max_partitions"] == 100_000


@pytest.mark.parametrize("case", cases("policies.json", "evaluations"), ids=ids(cases("policies.json", "evaluations")))
def test_policy_evaluation(case: dict[str, Any]) -> None:
    data = None if case["policy_hex"] is None else bytes.fromhex(case["policy_hex"])
    policy = None if data is None else Policy.from_bytes(data)
    items = [(i["name"], i["kind"], i["content"].encode("utf-8")) for i in case["items"]]
    content = {n: c for n, _, c in items}
    ev = build_evidence([ItemEntry(n, k, len(c), content_digest(c)) for n, k, c in items],
                        lambda e: content[e.name])
    prev = previous_ends([(p["seq"], p["run"], [kinds.Offsets(*a) for a in p["anchors"]]) for p in case["earlier"]])
    pol_value = None if data is None else ref_decode(data)
    if case["expect"] == "usage-error":
        with pytest.raises(UsageError):
            evaluate(policy, ev, prev)
        with pytest.raises(RefError):
            ref_evaluate(pol_value, items, [p["anchors"] for p in case["earlier"]])
        return
    got = evaluate(policy, ev, prev)
    assert [[c.name, c.ok, c.detail] for c in got] == case["criteria"]
    assert [a.to_value() for a in anchors(ev)] == case["anchors"]
    ref, ref_anchors = ref_evaluate(pol_value, items, [p["anchors"] for p in case["earlier"]])
    assert ref == [(c.name, c.ok) for c in got]
    assert ref_anchors == case["anchors"]


# --- end to end: the real seal path writes the vector commits byte for byte ----------------------------------------

def test_seal_writes_the_vector_commits(tmp_path: Path) -> None:
    from ledger.api import Ledger
    from ledger.closure import seal
    from ledger.storage import MemoryStore
    from ledger.verify import verify

    doc = load("commits.json")
    tree_cases = {c["root"]: c for c in cases("tree.json", "cases")}
    store = MemoryStore()
    lg = Ledger(store)
    lg.init()
    sk = vector_keys()[0]
    for c in doc["chain"][:2]:
        run = c["body"]["run"]
        for n, it in enumerate(tree_cases[c["body"]["root"]]["items"]):
            f = tmp_path / f"{run}-{n}"
            f.write_bytes(bytes.fromhex(it["content_hex"]))
            lg.add(run, [str(f)], kind=it["kind"], as_name=it["name"])
        seal(store, run, sk, now_ms=lambda t=c["body"]["time"]: int(t), nonce=bytes.fromhex(c["body"]["nonce"]))
        assert store.get(c["slot"]).hex() == c["envelope_hex"]
        marker = Marker.from_bytes(store.get(layout.marker_key(run)))
        assert marker.commit.hex() == c["digest"] and marker.seq == c["body"]["seq"]
        res = verify(store, run, [sk.public])
        assert res.ok, res.first_failure
        assert [ch.name for ch in res.checks] == ["store", "commit", "signature", "content", "tree", "chain",
                                                  "criteria", "marker"]


# --- proofs.json ---------------------------------------------------------------------------------------------------

def ref_root_from_path(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes | None:
    """The root an RFC 9162 inclusion path leads to, by section 2.1.3.2 of the RFC step by step (None: it fails)."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = tree_h(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = tree_h(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def ref_audit_path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1 under the evidence-tree hash, recursively (leaf upwards)."""
    n = len(entries)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*ref_audit_path(m, entries[:k]), ref_mth(tree_h, entries[k:])]
    return [*ref_audit_path(m - k, entries[k:]), ref_mth(tree_h, entries[:k])]


def ref_proof_outcome(data: bytes, trusted: list[bytes], content: bytes | None = None) -> str:
    """An inclusion proof checked as spec/proofs.md states it, from the spec alone: "ok" or the outcome of section 4
    (decoding as section 3 states it, the item entry and the commit as objects.md does)."""
    try:
        v = ref_decode(data)
    except RefError:
        return "decode-error"
    if not ref_fields(v, {"commit": bytes, "format": str, "index": int, "item": dict, "path": list, "run": str,
                          "type": str}):
        return "decode-error"
    if v["format"] != "ledger/1" or v["type"] != "inclusion" or not 0 <= v["index"] < 2**63:
        return "decode-error"
    path = v["path"]
    if len(path) > 64 or not all(type(h) is bytes and len(h) == 32 for h in path):
        return "decode-error"
    commit = ref_commit(v["commit"])
    if commit is None or not ref_item_entry(v["item"]):
        return "decode-error"
    body, body_bytes, sig = commit
    # 1. the commit seals the proof's run
    if body["run"] != v["run"]:
        return "run-mismatch"
    # 2. a trusted key, selected by the body's key id
    key = next((k for k in trusted if dk(CTX_KEY_ID, k) == body["key"]), None)
    if key is None:
        return "untrusted-key"
    # 3. the signature over the context and the exact body bytes
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, REF_SIGCTX + body_bytes)
    except InvalidSignature:
        return "bad-signature"
    # 4. the path fits leaf `index` of a tree of the signed count; 5. it leads to the signed items root
    leaf = tree_h(b"\x00" + ref_encode(v["item"]))
    r = ref_root_from_path(v["index"], body["count"], leaf, path)
    if r is None:
        return "path-error"
    if r != body["items_root"]:
        return "root-mismatch"
    # 6. the content, when given
    if content is not None and (len(content) != v["item"]["size"]
                                or blake3.blake3(content).digest() != v["item"]["blake3"]):
        return "content-mismatch"
    return "ok"


def proof_trusted() -> list[PublicKey]:
    return [PublicKey(bytes.fromhex(h)) for h in load("proofs.json")["trusted"]]


@pytest.mark.parametrize("case", cases("proofs.json", "valid"), ids=ids(cases("proofs.json", "valid")))
def test_proof_valid(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    content = bytes.fromhex(case["content_hex"])
    p = InclusionProof.from_bytes(data)
    assert p.encode() == data and len(data) == case["bytes"]
    assert (p.run, p.seq, p.commit.digest.hex(), p.index, p.hashes) == (
        case["run"], case["seq"], case["commit"], case["index"], case["hashes"])
    assert {"name": p.item.name, "kind": p.item.kind, "size": p.item.size, "blake3": p.item.blake3.hex()} == \
        case["item"]
    assert [h.hex() for h in p.path] == case["path"]
    assert root_from_proof(p).hex() == case["items_root"] == p.commit.body.items_root.hex()
    assert case["count"] == p.commit.body.count
    res = verify_proof(p, proof_trusted())
    assert (res.run, res.seq, res.commit.hex(), res.hashes, res.content_checked) == (
        case["run"], case["seq"], case["commit"], case["hashes"], False)
    assert verify_proof(p, proof_trusted(), content=content).content_checked
    assert content_digest(content).hex() == case["item"]["blake3"] and len(content) == case["item"]["size"]
    raw = [k.raw for k in proof_trusted()]
    assert ref_proof_outcome(data, raw) == "ok" == ref_proof_outcome(data, raw, content)

    # The bytes, read from the spec: exactly the seven fields, the commit slot's bytes verbatim.
    v = ref_decode(data)
    slot = cases("commits.json", "chain")[case["seq"]]
    assert list(v) == ["commit", "format", "index", "item", "path", "run", "type"]
    assert (v["commit"].hex(), v["format"], v["index"], v["run"], v["type"]) == (
        slot["envelope_hex"], "ledger/1", case["index"], case["run"], "inclusion")
    assert [h.hex() for h in v["path"]] == case["path"]
    assert tree_h(b"\x00" + ref_encode(v["item"])).hex() == case["leaf"]

    # The item is at `index` in name order of the tree case the commit seals, and the path is RFC 9162's
    # PATH(index, D[count]) over that case's item entries: a proof has exactly one valid encoding.
    tc = next(c for c in cases("tree.json", "cases") if c["name"] == slot["tree_case"])
    entries = [ref_encode({"blake3": bytes.fromhex(i["blake3"]), "kind": i["kind"], "name": i["name"],
                           "size": i["size"]}) for i in tc["items"]]
    assert len(entries) == case["count"] and tc["items"][case["index"]]["name"] == case["item"]["name"]
    assert tc["items"][case["index"]]["content_hex"] == case["content_hex"]
    assert [h.hex() for h in ref_audit_path(case["index"], entries)] == case["path"]
    assert ref_mth(tree_h, entries).hex() == case["items_root"] == tc["items_root"]

    # Its length: inner + border (proofs.md section 4), at most ceil(log2 n).
    index, n = case["index"], case["count"]
    inner = (index ^ (n - 1)).bit_length()
    assert (inner, bin(index >> inner).count("1")) == (case["inner"], case["border"])
    assert case["hashes"] == inner + case["border"] <= (n - 1).bit_length()


@pytest.mark.parametrize("case", cases("proofs.json", "invalid"), ids=ids(cases("proofs.json", "invalid")))
def test_proof_invalid(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    content = bytes.fromhex(case["content_hex"]) if "content_hex" in case else None
    expect = case["expect"]
    assert expect in load("proofs.json")["outcomes"]
    with pytest.raises(CheckFailed) as ei:
        verify_proof(InclusionProof.from_bytes(data), proof_trusted(), content=content)
    exc = ei.value
    assert isinstance(exc, DecodeError) == (expect == "decode-error"), exc
    assert isinstance(exc, ProofError) == (expect in ("path-error", "root-mismatch")), exc
    assert (isinstance(exc, ProofError) and exc.expected is not None) == (expect == "root-mismatch"), exc
    assert ref_proof_outcome(data, [k.raw for k in proof_trusted()], content) == expect


def test_proof_vectors_cover_every_outcome() -> None:
    doc = load("proofs.json")
    assert {c["expect"] for c in doc["invalid"]} == set(doc["outcomes"])
    assert "count-mismatch" not in doc["outcomes"]  # the count is the tree size: a path that fits it cannot differ
    assert {c["seq"] for c in doc["valid"]} == set(range(len(cases("commits.json", "chain"))))
    assert {c["hashes"] for c in doc["valid"]} >= {0, 2, 3, 9}
    assert {c["border"] for c in doc["valid"]} >= {0, 1, 2, 5} and {c["inner"] for c in doc["valid"]} >= {0, 9}
    assert doc["trusted"] == load("commits.json")["trusted"] and doc["max_path"] == 64
    names = {c["name"] for c in doc["invalid"]}
    assert {"path of 64 hashes", "path of 65 hashes", "index 2^63", "index 2^63-1", "index equal to the count"} <= names


def test_proof_takes_count_and_tree_root_as_signed() -> None:
    """proofs.md section 1: a proof checks the items root against the signed count only. A commit that a trusted
    key signed with another tree root, or with a count whose tree gives the item's path the same shape (index 4 of 7
    and of 8: two inner hashes, one on the border), still carries the proof: those are claims of the signer, which
    `ledger verify` checks (step 5). Any other count changes the path's length here."""
    sk = vector_keys()[0]
    raw = [k.raw for k in proof_trusted()]
    good = next(c for c in cases("proofs.json", "valid") if c["name"] == "nightly-42 deep/00131")
    base = ref_decode(bytes.fromhex(good["hex"]))
    body = ref_decode(ref_decode(base["commit"])["body"])
    assert (base["index"], body["count"]) == (4, 7)
    for change, want in (({"count": 8}, "ok"), ({"root": bytes(32)}, "ok"), ({"count": 9}, "path-error"),
                         ({"count": 6}, "path-error"), ({"items_root": bytes(32)}, "root-mismatch")):
        b = ref_encode({**body, **change})
        data = ref_encode({**base, "commit": ref_encode({"body": b, "sig": sk.sign(b)})})
        assert ref_proof_outcome(data, raw) == want, change
        if want == "ok":
            assert verify_proof(InclusionProof.from_bytes(data), proof_trusted()).hashes == 3
        else:
            with pytest.raises(ProofError):
                verify_proof(InclusionProof.from_bytes(data), proof_trusted())


# --- the generator -------------------------------------------------------------------------------------------------

def test_vectors_are_up_to_date() -> None:
    out = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr


def test_check_detects_drift(tmp_path: Path) -> None:
    shutil.copytree(VECTORS, tmp_path / "v")
    p = tmp_path / "v" / "store.json"
    p.write_text(p.read_text().replace("chain/", "chains/", 1))
    out = subprocess.run([sys.executable, str(GEN), "--check", "--out", str(tmp_path / "v")], capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 1 and "store.json" in out.stderr


def test_encoder_refuses_strings_that_are_not_unicode() -> None:
    # encoding.md section 3: a lone surrogate cannot be UTF-8 (JSON cannot carry it in a vector file portably).
    for value in ("\ud800", ["ok", "a\udfffb"], {"\ud83d": 1}):
        with pytest.raises(DecodeError):
            encoding.encode(value)
        with pytest.raises((RefError, UnicodeEncodeError)):
            ref_encode(value)
