"""The tamper matrix (issue 8): for every object a sealed run consists of, and every field of it, one test changes
exactly that and checks that verification fails with the check that owns the field, naming the object.

A store with a three-commit chain is built once per module: ``setup`` (#0, built-in criteria), ``nightly-41`` (#1)
and ``nightly-42`` (#2, the run verified), both sealed under one closure policy with offsets, a receipt, a summary
and an artifact, so that anchors, criteria, continuity and the policy document all exist. ``nightly-42`` has 36
items: 30 small files packed together, one loose object of more than 1 MiB, and typed records, each ``record`` call
in a pack of its own; its evidence tree has two level-0 nodes under a level-1 root. Every test copies that store
and applies one mutation, usually at one of three depths:

- *forged*: the bytes are changed where they are stored, nothing else (what anyone with write access can do);
- *relinked* / *re-signed*: the change is carried as far up as it must go to get past the checks that merely see
  that bytes changed -- new node ids written into the parents, a commit re-signed with the trusted key, the
  completion marker pointed at the new commit digest, a pack and its index rewritten consistently -- so that the
  check responsible for the field's *meaning* is the one that has to catch it;
- *resealed*: the tree, both roots, ``count`` and ``bytes`` recomputed from the changed items and re-signed: a
  commit that is consistent in every respect except the one the mutation broke (content, criteria, ...).

Each case names the checks that must fail (exactly those, in order) and words the first failure's detail must
contain. Cases marked "by design" are accepted by verification, as the specification says they must be (a signed
claim nobody can re-derive, a byte no reader relies on); they are listed so the table is complete. The same is
done for bundles (``ledger verify --bundle``) and inclusion proofs (``ledger verify-proof``). ``spec/tamper.md``
is generated from the cases below (``python tests/test_tamper_matrix.py``) and checked against them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ledger import encoding
from ledger.bundle import _HEAD as BUNDLE_HEAD
from ledger.bundle import MAGIC as BUNDLE_MAGIC
from ledger.chain import LOG_HASHER
from ledger.chainproofs import prove_consistency
from ledger.digests import CTX_COMMIT, CTX_PACK_INDEX, CTX_POLICY, content_digest, typed_digest
from ledger.keys import SigningKey, load_signing_key
from ledger.kinds import canonical_json
from ledger.layout import CONFIG, marker_key, policy_key, slot_key
from ledger.merkle import root_from_leaf_hashes
from ledger.objects import ItemEntry, Marker, SignedCommit, node_id
from ledger.packs import INDEX_MAGIC, decode_index, encode_index, index_key, loose_key, pack_key
from ledger.storage.local import LocalStore
from ledger.tree import TreeBuilder, _entries_root, _leaf

LEDGER = [sys.executable, "-m", "ledger.cli"]
TIMEOUT = 120
FIRST, PREV, RUN = "setup", "nightly-41", "nightly-42"
SEQ = 2  # the slot of RUN's commit
ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "spec" / "tamper.md"

POLICY = """\
min = { receipt = 1, summary = 1 }
artifacts = ["ingest-worker"]
topics = { orders = 2 }
continuity = ["orders"]

[[reconcile]]
name = "consumed-vs-admitted"
left = ["offsets.span"]
right = ["receipt.count"]

[[reconcile]]
name = "admitted-vs-outcomes"
left = ["receipt.count"]
right = ["summary.ingested", "summary.duplicates"]
"""
CRITERIA = ["non-empty", "content-present", "records-valid", "records-coherent", "min:receipt", "min:summary",
            "artifacts", "topic:orders", "reconcile:consumed-vs-admitted", "reconcile:admitted-vs-outcomes",
            "continuity"]
RECEIPT = "receipts/kafka-orders.json"
OFFSETS1 = "offsets/nightly/orders/1.json"
SUMMARY = "summary/summary.json"
ARTIFACT = "artifacts/ingest-worker.json"
BIG = "blobs/big.bin"
CSV = "data/part-0003.csv"


# --- the sealed store, built once -------------------------------------------------------------------------------

@dataclass
class Base:
    dir: Path
    store: Path
    pub: Path
    other_pub: Path
    signer: SigningKey
    other: SigningKey
    items: dict[str, ItemEntry]
    marker: Marker
    pack_of: dict[str, str]        # item name -> the pack holding it (the loose item is absent)
    node_pack: str
    root: bytes
    left: bytes                    # the two level-0 nodes under the root
    right: bytes
    policy_hex: str
    full_bundle: Path
    meta_bundle: Path
    since_bundle: Path
    checkpoint: Path
    proof: Path
    proof_item: str
    other_since: bytes             # a consistency proof from #0 (not the checkpoint, #1) to RUN's commit
    names: dict[str, str] = field(default_factory=dict)


def _cli(store: Path, *args: Any, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_STORE"}
    return subprocess.run(LEDGER + ["--store", str(store)] + [str(a) for a in args], cwd=cwd, capture_output=True,
                          env=env, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def _ok(store: Path, *args: Any, cwd: Path) -> str:
    p = _cli(store, *args, cwd=cwd)
    assert p.returncode == 0, f"ledger {args}: exit {p.returncode}\n{p.stdout[:2000]!r}\n{p.stderr!r}"
    return p.stdout.decode()


def _short(d: bytes) -> str:
    return "b3:" + d.hex()[:16]


def _rows(n: int, seed: int) -> str:
    return "id,v\n" + "".join(f"{seed}{j},{(j * 7 + seed) % 101}\n" for j in range(n))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    d = tmp_path_factory.mktemp("matrix")
    store, key, other = d / "store", d / "sealer.key", d / "other.key"
    pol = d / "nightly.toml"
    pol.write_text(POLICY)
    (d / "first.txt").write_text("the first run\n")
    prev = d / "prev"
    prev.mkdir()
    for i in range(3):
        (prev / f"p{i}.csv").write_text(_rows(10 + i, i))
    data = d / "out" / "data"
    data.mkdir(parents=True)
    for i in range(30):
        (data / f"part-{i:04d}.csv").write_text(_rows(5 + i % 7, i))
    big = d / "big.bin"
    big.write_bytes(bytes((i * 131 + (i >> 9)) % 251 for i in range(1024 * 1024 + 4099)))

    _ok(store, "init", cwd=d)
    _ok(store, "keys", "generate", "--out", key, cwd=d)
    _ok(store, "keys", "generate", "--out", other, cwd=d)
    _ok(store, "add", FIRST, d / "first.txt", cwd=d)
    _ok(store, "seal", FIRST, "--key", key, cwd=d)

    def record(run: str, kind: str, value: Any) -> None:
        _ok(store, "record", run, "--kind", kind, json.dumps(value), cwd=d)

    _ok(store, "add", PREV, prev, cwd=d)
    record(PREV, "offsets", [{"group": "nightly", "topic": "orders", "partition": 0, "start": 0, "end": 100},
                             {"group": "nightly", "topic": "orders", "partition": 1, "start": 0, "end": 80}])
    record(PREV, "receipt", {"source": "kafka-orders", "count": 180})
    record(PREV, "summary", {"ingested": 175, "duplicates": 5})
    record(PREV, "artifact", {"name": "ingest-worker", "version": "2026.11.2"})
    _ok(store, "seal", PREV, "--key", key, "--policy", pol, cwd=d)
    cp = d / "head-1.cp"
    _ok(store, "checkpoint", "-o", cp, cwd=d)

    _ok(store, "add", RUN, d / "out", cwd=d)
    _ok(store, "add", RUN, big, "--as", BIG, cwd=d)
    record(RUN, "offsets", [{"group": "nightly", "topic": "orders", "partition": 0, "start": 100, "end": 140},
                            {"group": "nightly", "topic": "orders", "partition": 1, "start": 80, "end": 110}])
    record(RUN, "receipt", {"source": "kafka-orders", "count": 70})
    record(RUN, "summary", {"ingested": 65, "duplicates": 5})
    record(RUN, "artifact", {"name": "ingest-worker", "version": "2026.11.3"})
    _ok(store, "seal", RUN, "--key", key, "--policy", pol, cwd=d)
    doc = json.loads(_ok(store, "verify", RUN, "--trust", f"{key}.pub", "--json", cwd=d))
    assert doc["ok"] and [c["name"] for c in doc["checks"]] == ["store", "commit", "signature", "content", "tree",
                                                                  "chain", "criteria", "marker"], doc

    for name, args in (("full", ()), ("meta", ("--no-content",)), ("since", ("--since", cp))):
        _ok(store, "export", RUN, "-o", d / f"{name}.bundle", *args, cwd=d)
    proof_item = "data/part-0007.csv"
    _ok(store, "prove", RUN, proof_item, "-o", d / "item.proof", cwd=d)

    items = {i["name"]: ItemEntry(i["name"], i["kind"], i["size"], bytes.fromhex(i["blake3"]))
             for i in json.loads(_ok(store, "ls", RUN, "--json", cwd=d))["items"]}
    assert len(items) == 36 and items[BIG].size > 1 << 20
    marker = Marker.from_bytes((store / marker_key(RUN)).read_bytes())
    commit = SignedCommit.from_bytes((store / slot_key(SEQ)).read_bytes())
    root = commit.body.root
    node_pack = marker.packs[-1]
    assert node_pack.startswith(root.hex()[:28]) and len(marker.packs) == 6, marker.packs
    pack_of: dict[str, str] = {}
    by_digest = {e.blake3: n for n, e in items.items()}
    for pid in marker.packs[:-1]:
        for dg in decode_index(pid, (store / index_key(pid)).read_bytes()):
            pack_of[by_digest[dg]] = pid
    assert sorted(set(items) - set(pack_of)) == [BIG]
    nodes = dict(_pack_objects(store, node_pack))
    top = msgpack.unpackb(nodes[root])
    assert top["level"] == 1 and len(top["entries"]) == 2, "the evidence tree should have two level-0 nodes"
    left, right = (e["node"] for e in top["entries"])
    assert top["entries"][0]["last"] == "data/part-0015.csv"
    slot0 = SignedCommit.from_bytes((store / slot_key(0)).read_bytes())
    other_since = prove_consistency(LocalStore(str(store)), slot0, SEQ).encode()

    b = Base(d, store, Path(f"{key}.pub"), Path(f"{other}.pub"), load_signing_key(key), load_signing_key(other),
             items, marker, pack_of, node_pack, root, left, right, commit.body.policy.hex() if commit.body.policy
             else "", d / "full.bundle", d / "meta.bundle", d / "since.bundle", cp, d / "item.proof", proof_item,
             other_since)
    b.names = {"T": _short(root), "L": _short(left), "R": _short(right), "C": _short(commit.digest),
               "nodes": node_pack, "files": pack_of[CSV], "receipts": pack_of[RECEIPT], "offsets": pack_of[OFFSETS1],
               "policy": f"policies/{b.policy_hex}", "big": loose_key(items[BIG].blake3),
               "key": commit.body.key.hex()[:16], "other": b.other.public.key_id.hex()[:16],
               "items_root": _short(commit.body.items_root), "bytes": str(commit.body.total_bytes)}
    return b


def _pack_objects(store: Path, pid: str) -> list[tuple[bytes, bytes]]:
    """A pack's objects as (digest, bytes), in pack order."""
    recs = decode_index(pid, (store / index_key(pid)).read_bytes())
    data = (store / pack_key(pid)).read_bytes()
    return [(dg, data[o:o + n]) for dg, (o, n) in sorted(recs.items(), key=lambda r: r[1])]


def _raw_index(pid: str, recs: list[tuple[bytes, int, int]], *, count: int | None = None,
               magic: bytes = INDEX_MAGIC, id_bytes: bytes | None = None) -> bytes:
    """An index with the records in the order given and a valid checksum: to damage one field at a time."""
    head = struct.pack(">8s16sQ", magic, id_bytes if id_bytes is not None else bytes.fromhex(pid),
                       len(recs) if count is None else count)
    body = head + b"".join(struct.pack(">32sQQ", *r) for r in recs)
    return body + typed_digest(CTX_PACK_INDEX, body)


def derive_id(data: bytes) -> bytes:
    """The id a verifier re-derives from node bytes (spec/tree.md §4), also for nodes that fail other checks."""
    v = msgpack.unpackb(data, raw=False, strict_map_key=False)
    entries, level = v["entries"], v["level"]
    leaves = [_leaf(msgpack.packb(e, use_bin_type=True)) for e in entries]
    count = len(entries) if level == 0 else sum(e.get("count", 1) if isinstance(e, dict) else 1 for e in entries)
    return node_id(level, count, _entries_root(leaves))


# --- one test's private copy, and the ways to change it -----------------------------------------------------------

class T:
    def __init__(self, base: Base, tmp: Path) -> None:
        self.base = base
        self.tmp = tmp
        self.store = tmp / "store"
        shutil.copytree(base.store, self.store)
        self.run = RUN
        self.trust = [base.pub]
        self.bundle: Path | None = None
        self.checkpoint: Path | None = None
        self.proof: Path | None = None
        self.content: Path | None = None
        self._bundle_header: dict[str, Any] | None = None

    # raw objects
    def get(self, key: str) -> bytes:
        return (self.store / key).read_bytes()

    def put(self, key: str, data: bytes) -> None:
        p = self.store / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def delete(self, key: str) -> None:
        (self.store / key).unlink()

    def flip(self, key: str, at: int) -> None:
        data = bytearray(self.get(key))
        data[at] ^= 0x01
        self.put(key, bytes(data))

    def edit(self, key: str, fn: Callable[[Any], Any]) -> bytes:
        """Decode a canonical object, change it in place, store it re-encoded canonically; returns the bytes."""
        v = encoding.decode(self.get(key))
        fn(v)
        data = encoding.encode(v)
        self.put(key, data)
        return data

    # commits
    def commit(self, slot: int = SEQ) -> SignedCommit:
        return SignedCommit.from_bytes(self.get(slot_key(slot)))

    def write_commit(self, slot: int, body: bytes, sig: bytes | None = None, signer: SigningKey | None = None
                     ) -> bytes:
        """Store a slot (signed with ``key``, the trusted key by default, unless ``sig`` is given); a new digest of
        the verified run's commit is written into its completion marker, which only locates the commit."""
        sig = sig if sig is not None else (signer or self.base.signer).sign(body)
        self.put(slot_key(slot), encoding.encode({"body": body, "sig": sig}))
        digest = typed_digest(CTX_COMMIT, body)
        if slot == SEQ and (self.store / marker_key(RUN)).exists():
            self.edit(marker_key(RUN), lambda m: m.__setitem__("commit", digest))
        return digest

    def resign(self, slot: int = SEQ, signer: SigningKey | None = None, **changes: Any) -> bytes:
        body = dataclasses.replace(self.commit(slot).body, **changes)
        return self.write_commit(slot, body.encode(), signer=signer)

    def unsigned(self, slot: int = SEQ, **changes: Any) -> bytes:
        c = self.commit(slot)
        return self.write_commit(slot, dataclasses.replace(c.body, **changes).encode(), sig=c.sig)

    def resign_value(self, fn: Callable[[dict[str, Any]], Any], slot: int = SEQ, sign: bool = True) -> bytes:
        """Change the decoded body map (also into shapes the dataclass cannot hold) and re-sign it."""
        c = self.commit(slot)
        v = encoding.decode(c.body_bytes)
        fn(v)
        return self.write_commit(slot, encoding.encode(v), sig=None if sign else c.sig)

    # packs and tree nodes
    def objects(self, pid: str) -> list[tuple[bytes, bytes]]:
        return _pack_objects(self.store, pid)

    def records(self, pid: str) -> list[tuple[bytes, int, int]]:
        """Index records in digest order."""
        return [(dg, o, n) for dg, (o, n) in decode_index(pid, self.get(index_key(pid))).items()]

    def write_pack(self, pid: str, objs: list[tuple[bytes, bytes]]) -> None:
        recs, off = [], 0
        for dg, data in objs:
            recs.append((dg, off, len(data)))
            off += len(data)
        self.put(pack_key(pid), b"".join(data for _, data in objs))
        self.put(index_key(pid), encode_index(pid, recs))

    def node(self, nid: bytes) -> dict[str, Any]:
        value: dict[str, Any] = msgpack.unpackb(dict(self.objects(self.base.node_pack))[nid], raw=False)
        return value

    def put_nodes(self, nodes: dict[bytes, bytes]) -> None:
        objs = dict(self.objects(self.base.node_pack))
        objs.update(nodes)
        self.write_pack(self.base.node_pack, list(objs.items()))

    def _parent(self, nid: bytes) -> bytes | None:
        stack = [self.commit().body.root]
        while stack:
            p = stack.pop()
            v = self.node(p)
            if v["level"] > 0:
                for e in v["entries"]:
                    if e["node"] == nid:
                        return p
                    stack.append(e["node"])
        return None

    def set_node(self, nid: bytes, value: Any, relink: bool = True, raw: bytes | None = None) -> bytes:
        """Store node ``nid`` changed to ``value``: *forged* (``relink=False``) under its old id, or *relinked*:
        under the id derived from its new bytes, that id written into its parent (and so on up), the commit
        re-signed with the new root. Returns the node's new id."""
        data = raw if raw is not None else encoding.encode(value)
        if not relink:
            self.put_nodes({nid: data})
            return nid
        new = derive_id(data)
        self.put_nodes({new: data})
        parent = self._parent(nid)
        if parent is None:
            self.resign(root=new)
            return new
        pv = self.node(parent)
        for e in pv["entries"]:
            if e["node"] == nid:
                e["node"] = new
        self.set_node(parent, pv)
        return new

    def reseal(self, items: dict[str, ItemEntry], contents: tuple[bytes, ...] = (), **changes: Any) -> bytes:
        """Rebuild the tree from ``items``, store its nodes and the given contents (loose), and re-sign the commit
        with the new root, items root, count and bytes (and ``changes``)."""
        for data in contents:
            self.put(loose_key(content_digest(data)), data)
        nodes: dict[bytes, bytes] = {}
        b = TreeBuilder(lambda nid, data: nodes.__setitem__(nid, data))
        for name in sorted(items, key=lambda n: n.encode()):
            b.add(items[name])
        root = b.finish()
        self.put_nodes(nodes)
        return self.resign(root=root, items_root=b.items_root, count=b.count, total_bytes=b.bytes, **changes)

    def record_item(self, name: str, value: Any) -> tuple[dict[str, ItemEntry], bytes]:
        """The run's items with typed record ``name`` replaced by ``value`` (stored form), and its content."""
        data = canonical_json(value)
        items = dict(self.base.items)
        e = items[name]
        items[name] = ItemEntry(name, e.kind, len(data), content_digest(data))
        return items, data

    # bundles and proofs
    def bundle_parts(self, path: Path) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
        data = path.read_bytes()
        hlen = BUNDLE_HEAD.unpack_from(data)[1]
        header = encoding.decode(data[BUNDLE_HEAD.size:BUNDLE_HEAD.size + hlen])
        start = BUNDLE_HEAD.size + hlen
        return header, [(k, data[start + o:start + o + n]) for k, o, n in header["objects"]]

    def write_bundle(self, header: dict[str, Any], objs: list[tuple[str, bytes]],
                     fix: Callable[[dict[str, Any]], Any] | None = None, raw_header: bytes | None = None,
                     checkpoint: bool = False) -> Path:
        """A bundle of ``objs`` in the order given (offsets recomputed), its header changed by ``fix``."""
        h = dict(header)
        entries, off = [], 0
        for k, data in objs:
            entries.append([k, off, len(data)])
            off += len(data)
        h["objects"] = entries
        if fix is not None:
            fix(h)
        hb = raw_header if raw_header is not None else encoding.encode(h)
        return self.use_bundle(BUNDLE_HEAD.pack(BUNDLE_MAGIC, len(hb)) + hb + b"".join(d for _, d in objs),
                               checkpoint)

    def use_bundle(self, data: bytes, checkpoint: bool = False) -> Path:
        self.bundle = self.tmp / "tampered.bundle"
        self.bundle.write_bytes(data)
        self.checkpoint = self.base.checkpoint if checkpoint else None
        return self.bundle

    def unpack(self, path: Path) -> None:
        """Make the bundle's objects this test's store, to be changed like one and packed again by ``repack``."""
        header, objs = self.bundle_parts(path)
        shutil.rmtree(self.store)
        for k, data in objs:
            self.put(k, data)
        self._bundle_header = header

    def repack(self) -> None:
        assert self._bundle_header is not None
        keys = sorted(str(p.relative_to(self.store)) for p in self.store.rglob("*") if p.is_file())
        self.write_bundle(self._bundle_header, [(k, self.get(k)) for k in keys])

    def use_proof(self, data: bytes) -> None:
        self.proof = self.tmp / "tampered.proof"
        self.proof.write_bytes(data)

    def proof_value(self) -> dict[str, Any]:
        value: dict[str, Any] = encoding.decode(self.base.proof.read_bytes())
        return value


@pytest.fixture
def t(base: Base, tmp_path: Path) -> T:
    return T(base, tmp_path)


# --- the cases -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    target: str                    # store | bundle | proof
    obj: str
    field: str
    mutation: str
    apply: Callable[[T], Any]      # may return a list of further words the failure must name (new node ids)
    checks: tuple[str, ...] | None  # the failing checks, in order; () passes; None: no report, one error line
    mentions: tuple[str, ...]       # words of the first failure's detail ({L}, {T}, ... from Base.names)
    code: int = 1
    note: str = ""
    xfail: str = ""                 # a bug: why the required outcome is not reached ...
    actual: tuple[int, str] = (0, "")  # ... and what happens instead: the exit code and words of the output


CASES: list[Case] = []


def case(id: str, obj: str, fld: str, mutation: str, checks: tuple[str, ...] | None, *mentions: str,
         target: str = "store", code: int = 1, note: str = "", xfail: str = "", actual: tuple[int, str] = (0, "")
         ) -> Callable[[Callable[[T], Any]], Callable[[T], Any]]:
    def deco(fn: Callable[[T], Any]) -> Callable[[T], Any]:
        assert all(c.id != id for c in CASES), id
        passes = checks == () and target != "proof"
        assert bool(xfail) == bool(actual[1]), f"{id}: a known bug needs both its reason and its symptom"
        CASES.append(Case(id, target, obj, fld, mutation, fn, checks, mentions, 0 if passes else code, note, xfail,
                          actual))
        return fn
    return deco


def by_design(why: str) -> str:
    return f"by design: {why}"


R32 = bytes(range(32))            # a well-formed digest no object has
SIGNED = "signature"

# item content ---------------------------------------------------------------------------------------------------

@case("content-packed-byte", "item content (packed)", "content", "one byte changed in the pack", ("content",),
      f"item {CSV}", "content hash mismatch in pack {files}")
def _(t: T) -> None:
    pid = t.base.pack_of[CSV]
    o, _n = decode_index(pid, t.get(index_key(pid)))[t.base.items[CSV].blake3]
    t.flip(pack_key(pid), o + 3)


def _resize_packed(t: T, name: str, fn: Callable[[bytes], bytes]) -> None:
    pid = t.base.pack_of[name]
    d = t.base.items[name].blake3
    t.write_pack(pid, [(dg, fn(data) if dg == d else data) for dg, data in t.objects(pid)])


@case("content-packed-longer", "item content (packed)", "content", "one byte appended; pack and index rewritten",
      ("content",), f"item {CSV}", "content size mismatch in pack {files}")
def _(t: T) -> None:
    _resize_packed(t, CSV, lambda b: b + b"\n")


@case("content-packed-shorter", "item content (packed)", "content", "last byte cut; pack and index rewritten",
      ("content",), f"item {CSV}", "content size mismatch")
def _(t: T) -> None:
    _resize_packed(t, CSV, lambda b: b[:-1])


@case("content-loose-byte", "item content (loose)", "content", "one byte changed in the loose object",
      ("content",), f"item {BIG}", "content hash mismatch in object {big}")
def _(t: T) -> None:
    t.flip(t.base.names["big"], 1 << 19)


@case("content-loose-longer", "item content (loose)", "content", "one byte appended", ("content",),
      f"item {BIG}", "content size mismatch in object {big}")
def _(t: T) -> None:
    t.put(t.base.names["big"], t.get(t.base.names["big"]) + b"\0")


@case("content-loose-shorter", "item content (loose)", "content", "last byte cut", ("content",), f"item {BIG}",
      "content size mismatch")
def _(t: T) -> None:
    t.put(t.base.names["big"], t.get(t.base.names["big"])[:-1])


@case("content-loose-missing", "item content (loose)", "content", "the loose object deleted", ("content",),
      f"item {BIG}", "content missing from the store")
def _(t: T) -> None:
    t.delete(t.base.names["big"])


@case("content-record-byte", "item content (typed record)", "content",
      'receipt count 70 -> 71 in the pack (same length)', ("content", "criteria"), f"item {RECEIPT}",
      "content hash mismatch")
def _(t: T) -> list[str]:
    pid = t.base.pack_of[RECEIPT]
    t.put(pack_key(pid), t.get(pack_key(pid)).replace(b'"count":70', b'"count":71'))
    return []


@case("content-record-resealed", "item content (typed record)", "content",
      "receipt count 70 -> 71; item entry, tree, roots re-derived and re-signed", ("criteria",),
      "criterion reconcile:consumed-vs-admitted: sealed as holding, re-evaluates as failing", "70 vs 71")
def _(t: T) -> None:
    items, data = t.record_item(RECEIPT, {"count": 71, "source": "kafka-orders"})
    t.reseal(items, (data,))


@case("content-record-resealed-recorded-failing", "item content (typed record)", "content",
      "as above, and the commit records both reconciliations as failing", ("criteria",),
      "criterion reconcile:consumed-vs-admitted does not hold", "yet the run is sealed")
def _(t: T) -> None:
    items, data = t.record_item(RECEIPT, {"count": 71, "source": "kafka-orders"})
    crit = tuple((n, ok and not n.startswith("reconcile:"), d) for n, ok, d in t.commit().body.criteria)
    t.reseal(items, (data,), criteria=crit)


@case("content-offsets-resealed", "item content (typed record)", "content",
      "offsets orders[1] [80, 110) -> [81, 111) (same span), anchors re-derived; resealed", ("criteria",),
      "criterion continuity: sealed as holding, re-evaluates as failing", "orders[1]: gap [80, 81)")
def _(t: T) -> None:
    v = {"end": 111, "group": "nightly", "partition": 1, "start": 81, "topic": "orders"}
    items, data = t.record_item(OFFSETS1, v)
    anchors = tuple(a if a[2] != 1 else ("nightly", "orders", 1, 81, 111) for a in t.commit().body.anchors)
    t.reseal(items, (data,), anchors=anchors)


@case("content-summary-resealed", "item content (typed record)", "content", "summary duplicates 5 -> 6; resealed",
      ("criteria",), "criterion reconcile:admitted-vs-outcomes: sealed as holding, re-evaluates as failing")
def _(t: T) -> None:
    items, data = t.record_item(SUMMARY, {"duplicates": 6, "ingested": 65})
    t.reseal(items, (data,))


@case("content-artifact-resealed", "item content (typed record)", "content",
      "artifact name ingest-worker -> other-worker; resealed", ("criteria",),
      "criterion artifacts: sealed as holding, re-evaluates as failing", "missing artifact(s): ingest-worker")
def _(t: T) -> None:
    items, data = t.record_item(ARTIFACT, {"name": "other-worker", "version": "2026.11.3"})
    t.reseal(items, (data,))


@case("content-record-invalid-resealed", "item content (typed record)", "content",
      "receipt replaced by one with a negative count; resealed", ("criteria",),
      "criterion records-valid: sealed as holding, re-evaluates as failing", f"item {RECEIPT}", "'count'")
def _(t: T) -> None:
    items, data = t.record_item(RECEIPT, {"count": -1, "source": "kafka-orders"})
    t.reseal(items, (data,))


# item entries in a level-0 node ----------------------------------------------------------------------------------

def _entry(t: T, name: str, fn: Callable[[dict[str, Any]], Any], relink: bool) -> bytes:
    nid = t.base.left if name.encode() <= b"data/part-0015.csv" else t.base.right
    v = t.node(nid)
    for e in v["entries"]:
        if e["name"] == name:
            fn(e)
    return t.set_node(nid, v, relink=relink)


ENTRY_FIELDS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "name": ("data/part-0003.csv -> data/part-0003.csx", lambda e: e.__setitem__("name", "data/part-0003.csx")),
    "kind": ("file -> log", lambda e: e.__setitem__("kind", "log")),
    "size": ("size + 1", lambda e: e.__setitem__("size", e["size"] + 1)),
    "blake3": ("another 32-byte digest", lambda e: e.__setitem__("blake3", R32)),
}

for _f, (_what, _fn) in ENTRY_FIELDS.items():
    case(f"entry-{_f}-forged", "item entry (tree node)", _f, f"{_what}, node stored under its old id", ("tree",),
         "tree node {L}: content hash mismatch")(lambda t, fn=_fn: _entry(t, CSV, fn, False))

case("entry-name-relinked", "item entry (tree node)", "name", f"{ENTRY_FIELDS['name'][0]}; relinked", ("tree",),
     "rebuilt items root", "differs from the sealed items root {items_root}"
     )(lambda t: _entry(t, CSV, ENTRY_FIELDS["name"][1], True))
case("entry-name-order-relinked", "item entry (tree node)", "name", "data/part-0003.csv -> data/zz.csv (out of "
     "order); relinked", ("tree",), "items out of order at 'data/part-0004.csv'"
     )(lambda t: [_short(_entry(t, CSV, lambda e: e.__setitem__("name", "data/zz.csv"), True))])
case("entry-kind-relinked", "item entry (tree node)", "kind", f"{ENTRY_FIELDS['kind'][0]}; relinked", ("tree",),
     "rebuilt items root")(lambda t: _entry(t, CSV, ENTRY_FIELDS["kind"][1], True))
case("entry-size-relinked", "item entry (tree node)", "size", "size + 1; relinked", ("content", "tree"),
     f"item {CSV}", "content size mismatch")(lambda t: _entry(t, CSV, ENTRY_FIELDS["size"][1], True))
case("entry-blake3-relinked", "item entry (tree node)", "blake3", "another digest; relinked", ("content", "tree"),
     f"item {CSV}", "content missing from the store")(lambda t: _entry(t, CSV, ENTRY_FIELDS["blake3"][1], True))
case("entry-name-invalid", "item entry (tree node)", "name", "'../escape' (not an item name)", ("tree",),
     "tree node {L}: item: invalid item name '../escape'"
     )(lambda t: _entry(t, CSV, lambda e: e.__setitem__("name", "../escape"), False))
case("entry-kind-unknown", "item entry (tree node)", "kind", "'binary' (not a kind)", ("tree",),
     "unknown kind 'binary'")(lambda t: _entry(t, CSV, lambda e: e.__setitem__("kind", "binary"), False))
case("entry-size-type", "item entry (tree node)", "size", "an int -> a str", ("tree",),
     "field 'size' has the wrong type")(lambda t: _entry(t, CSV, lambda e: e.__setitem__("size", "71"), False))
case("entry-blake3-short", "item entry (tree node)", "blake3", "31 bytes", ("tree",), "not a 32-byte digest"
     )(lambda t: _entry(t, CSV, lambda e: e.__setitem__("blake3", e["blake3"][:31]), False))
case("entry-extra-field", "item entry (tree node)", "(map)", "a fifth field", ("tree",), "unknown field 'mode'"
     )(lambda t: _entry(t, CSV, lambda e: e.__setitem__("mode", 420), False))


@case("entry-size-noncanonical", "item entry (tree node)", "size", "size encoded as uint32 (non-shortest form)",
      ("tree",), "tree node {L}", "not in canonical form")
def _(t: T) -> None:
    v = t.node(t.base.left)
    data = encoding.encode(v)
    e = next(e for e in v["entries"] if e["name"] == CSV)
    enc = encoding.encode(e)
    size = e["size"]
    assert size < 128
    bad = enc.replace(b"\xa4size" + bytes([size]), b"\xa4size\xce" + size.to_bytes(4, "big"))
    t.set_node(t.base.left, None, relink=False, raw=data.replace(enc, bad))


def _reseal_entry(t: T, item: str, **changes: Any) -> None:
    items = dict(t.base.items)
    e = dataclasses.replace(items.pop(item), **changes)
    items[e.name] = e
    t.reseal(items)


case("entry-size-resealed", "item entry (tree node)", "size", "size + 1; resealed", ("content",), f"item {CSV}",
     "content size mismatch")(lambda t: _reseal_entry(t, CSV, size=t.base.items[CSV].size + 1))
case("entry-blake3-resealed", "item entry (tree node)", "blake3", "another digest; resealed", ("content",),
     f"item {CSV}", "content missing from the store")(lambda t: _reseal_entry(t, CSV, blake3=R32))
case("entry-kind-typed-resealed", "item entry (tree node)", "kind", "file -> receipt; resealed", ("criteria",),
     "criterion records-valid: sealed as holding, re-evaluates as failing", f"item {CSV}"
     )(lambda t: _reseal_entry(t, CSV, kind="receipt"))
case("entry-kind-untyped-resealed", "item entry (tree node)", "kind", "receipt -> file; resealed", ("criteria",),
     "criterion min:receipt: sealed as holding, re-evaluates as failing"
     )(lambda t: _reseal_entry(t, RECEIPT, kind="file"))
case("entry-name-resealed", "item entry (tree node)", "name", "an untyped item renamed; resealed", (),
     note=by_design("a trusted key signed a run with that name; nothing else records the old one")
     )(lambda t: _reseal_entry(t, CSV, name="data/part-0003.csx"))


# tree nodes ---------------------------------------------------------------------------------------------------------

def _left(t: T, fn: Callable[[list[Any]], Any], relink: bool = True) -> list[str]:
    v = t.node(t.base.left)
    fn(v["entries"])
    return [_short(t.set_node(t.base.left, v, relink=relink))]


def _root(t: T, fn: Callable[[dict[str, Any]], Any], relink: bool = True, named: bool = False) -> list[str]:
    """Change the root; ``named``: the failure must name the new root (else it names a child, statically)."""
    v = t.node(t.base.root)
    fn(v)
    new = t.set_node(t.base.root, v, relink=relink)
    return [_short(new)] if named else []


def _dup_next(es: list[Any]) -> None:
    es[5] = dict(es[4])


def _swap(es: list[Any], i: int = 4) -> None:
    es[i], es[i + 1] = es[i + 1], es[i]


def _add_entry(es: list[Any]) -> None:
    e = dict(es[4])
    e["name"] = e["name"] + ".bak"
    es.insert(5, e)


case("node-entries-drop-forged", "tree node (level 0)", "entries", "one item entry dropped, node under its old id",
     ("tree",), "tree node {L}: holds 17 items, its parent says 18"
     )(lambda t: _left(t, lambda es: es.pop(4), relink=False))
case("node-entries-drop", "tree node (level 0)", "entries", "one item entry dropped; relinked", ("tree",),
     "holds 17 items, its parent says 18")(lambda t: _left(t, lambda es: es.pop(4)))
case("node-entries-add", "tree node (level 0)", "entries", "an item entry added (in name order); relinked",
     ("tree",), "holds 19 items, its parent says 18")(lambda t: _left(t, _add_entry))
case("node-entries-reorder", "tree node (level 0)", "entries", "two item entries swapped; relinked", ("tree",),
     "items out of order at")(lambda t: _left(t, _swap))
case("node-entries-duplicate", "tree node (level 0)", "entries", "an entry replaced by a copy of its neighbour; "
     "relinked", ("tree",), "items out of order at")(lambda t: _left(t, _dup_next))
case("node-entries-child-at-level-0", "tree node (level 0)", "entries",
     "an item entry replaced by a child entry; relinked", ("tree",), "item: unknown field 'count'"
     )(lambda t: _left(t, lambda es: es.__setitem__(4, {"count": 1, "last": es[4]["name"], "node": R32})))
case("node-entries-type", "tree node (level 0)", "entries", "entries: an array -> a map", ("tree",),
     "tree node {L}", "field 'entries' has the wrong type"
     )(lambda t: t.set_node(t.base.left, {"entries": {"a": 1}, "level": 0}, relink=False))
case("node-extra-field", "tree node (level 0)", "(map)", "a third field", ("tree",), "tree node {L}",
     "unknown field 'x'")(lambda t: t.set_node(t.base.left, {**t.node(t.base.left), "x": 1}, relink=False))


@case("node-level-relinked", "tree node (level 0)", "level", "0 -> 1; relinked", ("tree",), "level 1, expected 0")
def _(t: T) -> list[str]:
    v = t.node(t.base.left)
    v["level"] = 1
    return [_short(t.set_node(t.base.left, v))]


@case("node-level-forged", "tree node (level 0)", "level", "0 -> 1, node under its old id", ("tree",),
      "tree node {L}: level 1, expected 0")
def _(t: T) -> None:
    v = t.node(t.base.left)
    v["level"] = 1
    t.set_node(t.base.left, v, relink=False)


case("node-level-range", "tree node (level 0)", "level", "0 -> 65 (beyond 64)", ("tree",),
     "tree node {L}: level 65 out of range"
     )(lambda t: t.set_node(t.base.left, {**t.node(t.base.left), "level": 65}, relink=False))


@case("node-missing", "tree node (level 0)", "(object)", "removed from its pack (pack and index rewritten)",
      ("tree",), "tree node {L}: missing from the store")
def _(t: T) -> None:
    t.write_pack(t.base.node_pack, [(d, b) for d, b in t.objects(t.base.node_pack) if d != t.base.left])


@case("tree-shape-split", "tree node (shape)", "entries", "the left level-0 node split in two at a name of rank 0, "
      "the root given three children; every node well-formed, both roots' items unchanged; relinked", ("tree",),
      "rebuilt root {T} differs from the sealed root")
def _(t: T) -> list[str]:
    es = t.node(t.base.left)["entries"]
    halves = [{"entries": es[:9], "level": 0}, {"entries": es[9:], "level": 0}]
    ids = [derive_id(encoding.encode(h)) for h in halves]
    t.put_nodes({i: encoding.encode(h) for i, h in zip(ids, halves, strict=True)})
    root = t.node(t.base.root)
    root["entries"][0:1] = [{"count": len(h["entries"]), "last": h["entries"][-1]["name"], "node": i}
                            for i, h in zip(ids, halves, strict=True)]
    return [_short(t.set_node(t.base.root, root))]


@case("tree-shape-merged", "tree node (shape)", "entries", "all 36 items in one level-0 node, made the root; "
      "re-signed", ("tree",), "rebuilt root {T} differs from the sealed root")
def _(t: T) -> list[str]:
    one = {"entries": t.node(t.base.left)["entries"] + t.node(t.base.right)["entries"], "level": 0}
    nid = derive_id(encoding.encode(one))
    t.put_nodes({nid: encoding.encode(one)})
    t.resign(root=nid)
    return [_short(nid)]


case("root-forged", "tree node (root)", "entries", "a child entry's count changed, root under its old id",
     ("tree",), "tree node {T}: content hash mismatch"
     )(lambda t: _root(t, lambda v: v["entries"][0].__setitem__("count", 17), relink=False))
case("root-level-relinked", "tree node (root)", "level", "1 -> 2; relinked", ("tree",),
     "tree node {L}: level 0, expected 1")(lambda t: _root(t, lambda v: v.__setitem__("level", 2)))
case("root-level-zero-relinked", "tree node (root)", "level", "1 -> 0 (child entries read as items); relinked",
     ("tree",), "item: unknown field 'count'")(lambda t: _root(t, lambda v: v.__setitem__("level", 0), named=True))
case("root-entries-drop", "tree node (root)", "entries", "the second child entry dropped; relinked",
     ("tree", "criteria"), "rebuilt root {L} differs from the sealed root"
     )(lambda t: _root(t, lambda v: v["entries"].pop(), named=True))
case("root-entries-reorder", "tree node (root)", "entries", "the two child entries swapped; relinked", ("tree",),
     "tree node {L}: items out of order at 'artifacts/ingest-worker.json'"
     )(lambda t: _root(t, lambda v: _swap(v["entries"], 0)))
case("root-entries-duplicate", "tree node (root)", "entries", "the second child entry replaced by the first; "
     "relinked", ("tree",), "tree node {L}: items out of order at 'artifacts/ingest-worker.json'"
     )(lambda t: _root(t, lambda v: v["entries"].__setitem__(1, dict(v["entries"][0]))))
case("root-entries-empty", "tree node (root)", "entries", "no child entries; relinked", ("tree",),
     "interior node without children")(lambda t: _root(t, lambda v: v["entries"].clear(), named=True))
case("child-last-relinked", "child entry (root)", "last", "data/part-0015.csv -> data/part-0014.csv; relinked",
     ("tree",), "child {L} ends at ", "data/part-0015.csv", "entry says 'data/part-0014.csv'"
     )(lambda t: _root(t, lambda v: v["entries"][0].__setitem__("last", "data/part-0014.csv"), named=True))
case("child-count-relinked", "child entry (root)", "count", "18 -> 19; relinked", ("tree",),
     "tree node {L}: holds 18 items, its parent says 19"
     )(lambda t: _root(t, lambda v: v["entries"][0].__setitem__("count", 19)))
case("child-count-zero", "child entry (root)", "count", "0", ("tree",), "empty child"
     )(lambda t: _root(t, lambda v: v["entries"][0].__setitem__("count", 0), named=True))
case("child-node-relinked", "child entry (root)", "node", "another 32-byte id; relinked", ("tree",),
     f"tree node {_short(R32)}: missing from the store"
     )(lambda t: _root(t, lambda v: v["entries"][0].__setitem__("node", R32)))
case("child-node-sibling-relinked", "child entry (root)", "node", "the left child's id -> the right child's; "
     "relinked", ("tree",), "child {R} ends at ", "summary/summary.json", "entry says 'data/part-0015.csv'"
     )(lambda t: _root(t, lambda v: v["entries"][0].__setitem__("node", t.base.right), named=True))
case("child-node-short", "child entry (root)", "node", "31 bytes", ("tree",), "child: node: not a 32-byte digest"
     )(lambda t: _root(t, lambda v: v["entries"][0].__setitem__("node", t.base.left[:31]), named=True))
case("child-last-invalid", "child entry (root)", "last", "'/abs' (not an item name)", ("tree",),
     "invalid item name in 'last'"
     )(lambda t: _root(t, lambda v: v["entries"][0].__setitem__("last", "/abs"), named=True))


# the commit body: every field --------------------------------------------------------------------------------------

UNSIGNED = "the old signature kept (marker re-pointed)"
RESIGNED = "re-signed with the trusted key"
_BAD_SIG = "commit slot 2 (commit b3:"


def _body(fld: str, mutation: str, how: str, checks: tuple[str, ...], *mentions: str, note: str = "",
          **changes: Any) -> None:
    """Register a re-signed case for a body field and (``how="unsigned-too"``) its unsigned twin, which must also
    fail the signature -- unless the commit is refused before the signature is looked at."""
    def values(t: T) -> dict[str, Any]:
        return {k: (v(t) if callable(v) else v) for k, v in changes.items()}

    case(f"commit-{fld}-resigned", "commit body", fld, f"{mutation}, {RESIGNED}", checks, *mentions, note=note
         )(lambda t: t.resign(**values(t)))
    if how == "unsigned-too":
        refused = checks[:1] == ("commit",)
        case(f"commit-{fld}-unsigned", "commit body", fld, f"{mutation}, {UNSIGNED}",
             checks if refused else (SIGNED, *checks), *(mentions if refused else (_BAD_SIG, "bad signature"))
             )(lambda t: t.unsigned(**values(t)))


_body("run", f"'{RUN}' -> '{PREV}'", "unsigned-too", ("commit",),
      f"commit slot 2, which seals run '{PREV}', not this run", run=PREV)
case("commit-run-invalid-resigned", "commit body", "run", f"'bad/run' (not a run id), {RESIGNED}", ("commit",),
     "invalid run id 'bad/run'")(lambda t: t.resign(run="bad/run"))
_body("seq", "2 -> 3 (log_size left at 2)", "", ("commit",), "log_size 2 != seq 3", seq=3)
case("commit-seq-log_size-resigned", "commit body", "seq", f"seq and log_size 2 -> 3, {RESIGNED}", ("commit",),
     "commit in slot 2 says seq 3")(lambda t: t.resign(seq=3, log_size=3))
case("commit-seq-log_size-unsigned", "commit body", "seq", f"seq and log_size 2 -> 3, {UNSIGNED}", ("commit",),
     "commit in slot 2 says seq 3")(lambda t: t.unsigned(seq=3, log_size=3))
_body("parent", "another digest", "unsigned-too", ("chain",),
      "chain: commit slot 2 does not link to commit slot 1: it names parent " + _short(R32), parent=R32)
case("commit-parent-slot0-resigned", "commit body", "parent", f"slot 0's digest, {RESIGNED}", ("chain",),
     "commit slot 2 does not link to commit slot 1"
     )(lambda t: t.resign(parent=t.commit(0).digest))
case("commit-parent-nil-resigned", "commit body", "parent", f"nil, {RESIGNED}", ("commit",),
     "seq 2 with no parent")(lambda t: t.resign(parent=None))
_body("root", "another 32-byte id", "unsigned-too", ("tree",), f"tree node {_short(R32)}: missing from the store",
      root=R32)
case("commit-root-subtree-resigned", "commit body", "root", f"the left level-0 node's id, {RESIGNED}",
     ("tree", "criteria"), "rebuilt items root", "differs from the sealed items root {items_root}"
     )(lambda t: t.resign(root=t.base.left))
_body("items_root", "another 32-byte root", "unsigned-too", ("tree",),
      "rebuilt items root {items_root} differs from the sealed items root " + _short(R32), items_root=R32)
_body("count", "36 -> 37", "unsigned-too", ("tree",), "commit says 37 items / {bytes} bytes, tree holds 36 / {bytes}",
      count=37)
_body("bytes", "+ 1", "unsigned-too", ("tree",), "tree holds 36 / {bytes}",
      total_bytes=lambda t: t.commit().body.total_bytes + 1)
_body("time", "+ 1 ms", "unsigned-too", (), note=by_design("informational; nothing checks it (objects.md §3)"),
      time_ms=lambda t: t.commit().body.time_ms + 1)
case("commit-key-unsigned", "commit body", "key", f"another key's id, {UNSIGNED}", (SIGNED,),
     "signed by key {other}, which is not among the trusted keys"
     )(lambda t: t.unsigned(key=t.base.other.public.key_id))
case("commit-key-resigned-untrusted", "commit body", "key", "another key's id, signed by that (untrusted) key",
     (SIGNED,), "signed by key {other}, which is not among the trusted keys"
     )(lambda t: t.resign(signer=t.base.other, key=t.base.other.public.key_id))


@case("commit-key-resigned-both-trusted", "commit body", "key",
      "another trusted key's id, signed by the sealing key (both trusted)", (SIGNED,), "bad signature for key {other}")
def _(t: T) -> None:
    t.trust.append(t.base.other_pub)
    t.resign(key=t.base.other.public.key_id)


_body("log_size", "2 -> 3", "", ("commit",), "log_size 3 != seq 2", log_size=3)
_body("log_root", "another 32-byte root", "unsigned-too", ("chain",),
      "commits to a log root that does not match the 2 commit(s) before it", log_root=R32)
case("commit-log_root-previous-resigned", "commit body", "log_root", f"slot 1's log root (one commit short), "
     f"{RESIGNED}", ("chain",), "does not match the 2 commit(s) before it"
     )(lambda t: t.resign(log_root=t.commit(1).body.log_root))
_body("nonce", "16 other bytes", "unsigned-too", (),
      note=by_design("random per seal; a verifier checks only its length (objects.md §3)"), nonce=b"n" * 16)
case("commit-nonce-short-resigned", "commit body", "nonce", f"15 bytes, {RESIGNED}", ("commit",),
     "nonce is not 16 bytes")(lambda t: t.resign(nonce=b"n" * 15))


def _anchors(fn: Callable[[list[Any]], Any]) -> Callable[[T], Any]:
    def apply(t: T) -> Any:
        a = [list(x) for x in t.commit().body.anchors]
        fn(a)
        return t.resign(anchors=tuple(tuple(x) for x in a))
    return apply


_ANCH = "the commit's replay anchors ({}) are not the run's offsets records (2)"
case("commit-anchors-resigned", "commit body", "anchors", f"orders[1] end 110 -> 111, {RESIGNED}", ("criteria",),
     _ANCH.format(2))(_anchors(lambda a: a[1].__setitem__(4, 111)))
case("commit-anchors-unsigned", "commit body", "anchors", f"orders[1] end 110 -> 111, {UNSIGNED}",
     (SIGNED, "criteria"), _BAD_SIG, "bad signature"
     )(lambda t: t.unsigned(anchors=(t.commit().body.anchors[0], ("nightly", "orders", 1, 80, 111))))
case("commit-anchors-dropped-resigned", "commit body", "anchors", f"one anchor dropped, {RESIGNED}", ("criteria",),
     _ANCH.format(1))(_anchors(lambda a: a.pop()))
case("commit-anchors-added-resigned", "commit body", "anchors", f"an anchor for orders[2] added, {RESIGNED}",
     ("criteria",), _ANCH.format(3))(_anchors(lambda a: a.append(["nightly", "orders", 2, 0, 5])))
case("commit-anchors-unsorted-resigned", "commit body", "anchors", f"the two anchors swapped, {RESIGNED}",
     ("commit",), "anchors: not sorted")(_anchors(lambda a: a.reverse()))
case("commit-anchors-malformed-resigned", "commit body", "anchors", f"start > end, {RESIGNED}", ("commit",),
     "anchors: orders[1]: invalid range")(_anchors(lambda a: a[1].__setitem__(3, 200)))
_body("policy", "another 32-byte digest", "unsigned-too", ("criteria",),
      f"sealed policy policies/{R32.hex()}: missing from the store", policy=R32)
case("commit-policy-nil-resigned", "commit body", "policy", f"nil (built-in criteria only), {RESIGNED}",
     ("criteria",), "criterion min:receipt: recorded in the commit but not evaluated by the sealed policy"
     )(lambda t: t.resign(policy=None))
case("commit-policy-short-resigned", "commit body", "policy", f"31 bytes, {RESIGNED}", ("commit",),
     "policy: not a 32-byte digest")(lambda t: t.resign_value(lambda v: v.__setitem__("policy", v["policy"][:31])))


def _criteria(fn: Callable[[list[list[Any]]], Any], sign: bool = True) -> Callable[[T], Any]:
    def apply(t: T) -> Any:
        c = [list(x) for x in t.commit().body.criteria]
        assert [x[0] for x in c] == CRITERIA
        fn(c)
        crit = tuple(tuple(x) for x in c)
        return t.resign(criteria=crit) if sign else t.unsigned(criteria=crit)
    return apply


def _at(name: str) -> int:
    return CRITERIA.index(name)


case("commit-criteria-resigned", "commit body", "criteria", f"min:receipt recorded as failing, {RESIGNED}",
     ("criteria",), "criterion min:receipt: sealed as failing, re-evaluates as holding"
     )(_criteria(lambda c: c[_at("min:receipt")].__setitem__(1, False)))
case("commit-criteria-unsigned", "commit body", "criteria", f"min:receipt recorded as failing, {UNSIGNED}",
     (SIGNED, "criteria"), _BAD_SIG, "bad signature"
     )(_criteria(lambda c: c[_at("min:receipt")].__setitem__(1, False), sign=False))
case("commit-criteria-dropped-resigned", "commit body", "criteria", f"continuity dropped, {RESIGNED}", ("criteria",),
     "criterion continuity: evaluated now, but not recorded in the commit")(_criteria(lambda c: c.pop()))
case("commit-criteria-added-resigned", "commit body", "criteria", f"a criterion min:log added, {RESIGNED}",
     ("criteria",), "criterion min:log: recorded in the commit but not evaluated by the sealed policy"
     )(_criteria(lambda c: c.append(["min:log", True, "1 log item(s)"])))
case("commit-criteria-reordered-resigned", "commit body", "criteria", f"min:receipt and min:summary swapped, "
     f"{RESIGNED}", ("criteria",), "(order or repetition differs)")(_criteria(lambda c: _swap(c, _at("min:receipt"))))
case("commit-criteria-repeated-resigned", "commit body", "criteria", f"artifacts given twice, {RESIGNED}",
     ("criteria",), "(order or repetition differs)"
     )(_criteria(lambda c: c.insert(_at("artifacts"), list(c[_at("artifacts")]))))
case("commit-criteria-renamed-resigned", "commit body", "criteria", f"records-coherent -> records-consistent, "
     f"{RESIGNED}", ("criteria",), "criterion records-coherent: evaluated now, but not recorded in the commit"
     )(_criteria(lambda c: c[_at("records-coherent")].__setitem__(0, "records-consistent")))
case("commit-criteria-content-present-dropped", "commit body", "criteria", f"content-present dropped, {RESIGNED}",
     ("criteria",), "criterion content-present: evaluated now, but not recorded in the commit"
     )(_criteria(lambda c: c.pop(1)))
case("commit-criteria-content-present-moved", "commit body", "criteria", f"content-present moved last, "
     f"{RESIGNED}", ("criteria",), "(order or repetition differs)")(_criteria(lambda c: c.append(c.pop(1))))
case("commit-criteria-content-present-failing", "commit body", "criteria", f"content-present recorded as "
     f"failing, {RESIGNED}", ("criteria",), "criterion content-present: sealed as failing, re-evaluates as holding"
     )(_criteria(lambda c: c[1].__setitem__(1, False)))
case("commit-criteria-detail-resigned", "commit body", "criteria", f"a criterion's detail reworded, {RESIGNED}", (),
     note=by_design("details are informative and not compared (verify.md §7.5)")
     )(_criteria(lambda c: c[0].__setitem__(2, "many items")))
case("commit-criteria-malformed-resigned", "commit body", "criteria", f"an ok that is not a bool, {RESIGNED}",
     ("commit",), "criteria: malformed entry"
     )(lambda t: t.resign_value(lambda v: v["criteria"][0].__setitem__(1, 1)))

_WAIVER = {"detector": "Base64 High Entropy String", "item": CSV, "line": 2,
           "rule": {"item": "data/*.csv", "reason": "row ids, not credentials"}}
case("commit-waivers-resigned", "commit body", "waivers", f"a waived finding added, {RESIGNED}", (),
     "1 waived secret finding(s)", note=by_design("the sealer's signed statement; never re-derived (secrets.md §5)")
     )(lambda t: t.resign_value(lambda v: v["waivers"].append(_WAIVER)))
case("commit-waivers-unsigned", "commit body", "waivers", f"a waived finding added, {UNSIGNED}", (SIGNED,),
     _BAD_SIG, "bad signature")(lambda t: t.resign_value(lambda v: v["waivers"].append(_WAIVER), sign=False))
case("commit-waivers-invalid-resigned", "commit body", "waivers", f"a waiver with line 0, {RESIGNED}", ("commit",),
     "line numbers start at 1")(lambda t: t.resign_value(lambda v: v["waivers"].append({**_WAIVER, "line": 0})))
case("commit-format-resigned", "commit body", "format", f"'ledger/2', {RESIGNED}", ("commit",),
     "unsupported format 'ledger/2'")(lambda t: t.resign_value(lambda v: v.__setitem__("format", "ledger/2")))
case("commit-format-unsigned", "commit body", "format", f"'ledger/2', {UNSIGNED}", ("commit",),
     "unsupported format 'ledger/2'"
     )(lambda t: t.resign_value(lambda v: v.__setitem__("format", "ledger/2"), sign=False))
case("commit-body-unknown-field", "commit body", "(map)", f"an 18th field, {RESIGNED}", ("commit",),
     "unknown field 'comment'")(lambda t: t.resign_value(lambda v: v.__setitem__("comment", "hi")))
case("commit-body-missing-field", "commit body", "(map)", f"items_root removed, {RESIGNED}", ("commit",),
     "missing field 'items_root'")(lambda t: t.resign_value(lambda v: v.pop("items_root")))
case("commit-body-wrong-type", "commit body", "count", f"an int -> a str, {RESIGNED}", ("commit",),
     "field 'count' has the wrong type")(lambda t: t.resign_value(lambda v: v.__setitem__("count", "36")))


@case("commit-body-noncanonical", "commit body", "(encoding)", f"seq as uint8 (non-shortest), {RESIGNED}",
      ("commit",), "commit slot 2", "not in canonical form")
def _(t: T) -> None:
    body = t.commit().body_bytes
    bad = body.replace(b"\xa3seq\x02", b"\xa3seq\xcc\x02")
    assert bad != body
    t.write_commit(SEQ, bad)


# the signature and the slot's envelope ----------------------------------------------------------------------------

def _sig(t: T, sig: bytes) -> None:
    c = t.commit()
    t.put(slot_key(SEQ), encoding.encode({"body": c.body_bytes, "sig": sig}))


case("sig-bit-flipped", "signature", "sig", "one bit flipped", (SIGNED,), "commit slot 2 (commit {C}): bad signature "
     "for key {key}")(lambda t: _sig(t, bytes([t.commit().sig[0] ^ 1]) + t.commit().sig[1:]))
case("sig-zeroed", "signature", "sig", "64 zero bytes", (SIGNED,), "bad signature")(lambda t: _sig(t, bytes(64)))
case("sig-of-previous-commit", "signature", "sig", "slot 1's signature", (SIGNED,), "bad signature"
     )(lambda t: _sig(t, t.commit(1).sig))
case("sig-by-untrusted-key", "signature", "sig", "the same body signed by another key", (SIGNED,), "bad signature"
     )(lambda t: _sig(t, t.base.other.sign(t.commit().body_bytes)))
case("sig-63-bytes", "signature", "sig", "63 bytes", ("commit",), "signature is not 64 bytes"
     )(lambda t: _sig(t, t.commit().sig[:63]))
case("envelope-extra-field", "signed commit (slot)", "(map)", "a third field", ("commit",), "commit slot 2",
     "unknown field 'note'")(lambda t: t.edit(slot_key(SEQ), lambda v: v.__setitem__("note", "x")))
case("envelope-body-missing", "signed commit (slot)", "body", "removed", ("commit",), "missing field 'body'"
     )(lambda t: t.edit(slot_key(SEQ), lambda v: v.pop("body")))
case("envelope-body-map", "signed commit (slot)", "body", "a bin -> the decoded map", ("commit",),
     "field 'body' has the wrong type"
     )(lambda t: t.edit(slot_key(SEQ), lambda v: v.__setitem__("body", encoding.decode(v["body"]))))
case("envelope-noncanonical", "signed commit (slot)", "(encoding)", "map header as map16", ("commit",),
     "not in canonical form"
     )(lambda t: t.put(slot_key(SEQ), b"\xde\x00\x02" + t.get(slot_key(SEQ))[1:]))
case("envelope-trailing-byte", "signed commit (slot)", "(encoding)", "one byte appended", ("commit",),
     "trailing bytes")(lambda t: t.put(slot_key(SEQ), t.get(slot_key(SEQ)) + b"\xc0"))
case("slot-missing", "signed commit (slot)", "(object)", "deleted", ("commit",),
     "commit slot 2 named by the completion marker is missing")(lambda t: t.delete(slot_key(SEQ)))


# earlier commits and the chain --------------------------------------------------------------------------------------

case("chain-earlier-resigned", "earlier commit (slot 1)", "time", f"+ 1 ms, {RESIGNED}", ("chain",),
     "chain: commit slot 2 does not link to commit slot 1"
     )(lambda t: t.resign(1, time_ms=t.commit(1).body.time_ms + 1))
case("chain-earlier-unsigned", "earlier commit (slot 1)", "time", f"+ 1 ms, {UNSIGNED}", ("chain",),
     "commit slot 2 does not link to commit slot 1")(lambda t: t.unsigned(1, time_ms=t.commit(1).body.time_ms + 1))
case("chain-earlier-sig-flipped", "earlier commit (slot 1)", "sig", "one bit flipped", (),
     note=by_design("earlier commits' signatures are not checked; the verified commit binds their bodies (verify.md "
                    "§6)"))(lambda t: t.flip(slot_key(1), len(t.get(slot_key(1))) - 1))


@case("chain-earlier-anchors-relinked", "earlier commit (slot 1)", "anchors",
      "orders[1] end 80 -> 79 re-signed, and slot 2 re-signed with the new parent and log root", ("criteria",),
      "criterion continuity: sealed as holding, re-evaluates as failing", "orders[1]: gap [79, 80)")
def _(t: T) -> None:
    a = t.commit(1).body.anchors
    d1 = t.resign(1, anchors=(a[0], ("nightly", "orders", 1, 0, 79)))
    log = root_from_leaf_hashes(LOG_HASHER, [LOG_HASHER.leaf(t.commit(0).digest), LOG_HASHER.leaf(d1)])
    t.resign(parent=d1, log_root=log)


case("chain-earlier-run-resigned", "earlier commit (slot 1)", "run", f"'{PREV}' -> '{RUN}', {RESIGNED}", ("chain",),
     f"chain: run {RUN} is sealed twice (#1 and #2)")(lambda t: t.resign(1, run=RUN))
case("chain-earlier-replaced", "earlier commit (slot 1)", "seq", "slot 1 holds slot 2's commit", ("chain",),
     "chain: commit in slot 1 says seq 2")(lambda t: t.put(slot_key(1), t.get(slot_key(2))))
case("chain-earlier-garbage", "earlier commit (slot 1)", "(encoding)", "not a commit", ("chain",), "commit slot 1",
     "not valid canonical MessagePack")(lambda t: t.put(slot_key(1), b"\xc1garbage"))
case("chain-earlier-missing", "earlier commit (slot 0)", "(object)", "deleted", ("chain",),
     "chain: slots 0..2 are not all present")(lambda t: t.delete(slot_key(0)))
case("chain-foreign-key", "chain", "(listing)", "a file chain/notes.txt", ("chain",),
     "unexpected object 'chain/notes.txt'")(lambda t: t.put("chain/notes.txt", b"x"))
case("chain-later-slot", "chain", "(listing)", "garbage in slot 3", (),
     note=by_design("slots after the verified commit are not examined (verify.md §6)")
     )(lambda t: t.put(slot_key(3), b"garbage"))


# the completion marker ----------------------------------------------------------------------------------------------

def _marker(fn: Callable[[dict[str, Any]], Any]) -> Callable[[T], Any]:
    return lambda t: t.edit(marker_key(RUN), fn)


case("marker-run", "completion marker", "run", f"'{RUN}' -> '{PREV}'", ("marker",),
     f"completion marker names run '{PREV}', not {RUN}")(_marker(lambda m: m.__setitem__("run", PREV)))
case("marker-seq-other", "completion marker", "seq", "2 -> 1 (another run's slot)", ("commit",),
     f"the completion marker points at commit slot 1, which seals run '{PREV}', not this run"
     )(_marker(lambda m: m.__setitem__("seq", 1)))
case("marker-seq-missing", "completion marker", "seq", "2 -> 7 (no such slot)", ("commit",),
     "commit slot 7 named by the completion marker is missing")(_marker(lambda m: m.__setitem__("seq", 7)))
case("marker-commit", "completion marker", "commit", "another 32-byte digest", ("marker",),
     "completion marker names commit " + _short(R32) + ", not this commit"
     )(_marker(lambda m: m.__setitem__("commit", R32)))
case("marker-commit-previous", "completion marker", "commit", "slot 1's commit digest", ("marker",),
     "completion marker names commit", "not this commit"
     )(lambda t: t.edit(marker_key(RUN), lambda m: m.__setitem__("commit", t.commit(1).digest)))
case("marker-packs-node-dropped", "completion marker", "packs", "the tree-node pack dropped", ("tree",),
     "tree node {T}: missing from the store")(_marker(lambda m: m["packs"].pop()))
case("marker-packs-files-dropped", "completion marker", "packs", "the pack of the 30 files dropped", ("content",),
     "item data/part-0000.csv: content missing from the store (and 29 more)"
     )(lambda t: t.edit(marker_key(RUN), lambda m: m["packs"].remove(t.base.pack_of[CSV])))
case("marker-packs-receipt-dropped", "completion marker", "packs", "the receipt's pack dropped",
     ("content", "criteria"), f"item {RECEIPT}: content missing from the store"
     )(lambda t: t.edit(marker_key(RUN), lambda m: m["packs"].remove(t.base.pack_of[RECEIPT])))
case("marker-packs-unknown", "completion marker", "packs", "a pack id with no pack added", ("commit",),
     "completion marker names pack " + "f" * 32 + ": pack index " + "f" * 32 + ": missing"
     )(_marker(lambda m: m["packs"].insert(0, "f" * 32)))
case("marker-packs-invalid", "completion marker", "packs", "'XYZ' (not a pack id)", ("commit",),
     "completion marker: invalid pack id")(_marker(lambda m: m["packs"].append("XYZ")))
case("marker-packs-reordered", "completion marker", "packs", "the tree-node pack moved first (content packs "
     "sorted, then node packs, is how a writer lists them)", (), "completion marker present",
     note=by_design("objects.md §4: the marker is an unsigned locator and a reader does not depend on the order of "
                    "its packs; every object is still re-derived and checked through them")
     )(_marker(lambda m: m["packs"].insert(0, m["packs"].pop())))
case("marker-packs-repeated", "completion marker", "packs", "a content pack listed twice", ("commit",),
     "completion marker: a pack is listed twice")(_marker(lambda m: m["packs"].insert(0, m["packs"][0])))
case("marker-format", "completion marker", "format", "'ledger/2'", ("commit",),
     "completion marker: unsupported format 'ledger/2'")(_marker(lambda m: m.__setitem__("format", "ledger/2")))
case("marker-extra-field", "completion marker", "(map)", "a sixth field", ("commit",),
     "completion marker: unknown field 'by'")(_marker(lambda m: m.__setitem__("by", "me")))
case("marker-missing", "completion marker", "(object)", "deleted", ("marker",), "completion marker missing: commit",
     "re-run `ledger seal`")(lambda t: t.delete(marker_key(RUN)))


# pack indexes ---------------------------------------------------------------------------------------------------------

def _records(t: T, pid: str, fn: Callable[[list[list[Any]], dict[bytes, str]], Any], sort: bool = True) -> None:
    recs = [list(r) for r in t.records(pid)]
    names = {e.blake3: n for n, e in t.base.items.items()}
    fn(recs, names)
    out = [tuple(r) for r in recs]
    t.put(index_key(pid), _raw_index(pid, sorted(out) if sort else out))  # type: ignore[arg-type]


def _rec(recs: list[list[Any]], names: dict[bytes, str], name: str) -> list[Any]:
    return next(r for r in recs if names.get(r[0]) == name)


def _last_in_pack(recs: list[list[Any]], names: dict[bytes, str]) -> str:
    return names[max(recs, key=lambda r: r[1])[0]]


def _bump(column: int) -> Callable[[T], Any]:
    """Add 1 to the offset (column 1) or size (column 2) of CSV's record in its pack's index."""
    def fn(rs: list[list[Any]], n: dict[bytes, str]) -> None:
        _rec(rs, n, CSV)[column] += 1
    return lambda t: _records(t, t.base.pack_of[CSV], fn)


case("index-offset", "pack index record", "offset", f"{CSV}'s offset + 1 (checksum recomputed)", ("content",),
     f"item {CSV}: content hash mismatch in pack {{files}}")(_bump(1))
case("index-size", "pack index record", "size", f"{CSV}'s size + 1 (checksum recomputed)", ("content",),
     f"item {CSV}: content size mismatch in pack {{files}}")(_bump(2))


@case("index-size-beyond-pack", "pack index record", "size", "the last object's size + 1: past the pack's end",
      ("content",), "truncated")
def _(t: T) -> list[str]:
    pid = t.base.pack_of[CSV]
    last: list[str] = []

    def fn(rs: list[list[Any]], n: dict[bytes, str]) -> None:
        last.append(_last_in_pack(rs, n))
        r = _rec(rs, n, last[0])
        r[2] += 1
    _records(t, pid, fn)
    return [f"item {last[0]}"]


case("index-digest", "pack index record", "digest", f"{CSV}'s digest replaced (records re-sorted)", ("content",),
     f"item {CSV}: content missing from the store"
     )(lambda t: _records(t, t.base.pack_of[CSV], lambda rs, n: _rec(rs, n, CSV).__setitem__(0, R32)))
case("index-node-offset", "pack index record", "offset", "the left node's record -> the right node's bytes",
     ("tree",), "tree node {L}: content hash mismatch (expected {L}, got {R})")(lambda t: _records(
         t, t.base.node_pack, lambda rs, n: next(r for r in rs if r[0] == t.base.left).__setitem__(
             slice(1, 3), next(r for r in rs if r[0] == t.base.right)[1:3])))
case("index-node-digest", "pack index record", "digest", "the left node's id replaced", ("tree",),
     "tree node {L}: missing from the store"
     )(lambda t: _records(t, t.base.node_pack, lambda rs, n: next(r for r in rs if r[0] == t.base.left).__setitem__(
         0, R32)))
case("index-unsorted", "pack index", "records", "two records swapped (checksum recomputed)", ("commit",),
     "completion marker names pack {files}: pack index {files}: records not sorted or duplicated"
     )(lambda t: _records(t, t.base.pack_of[CSV], lambda rs, n: _swap(rs, 0), sort=False))
case("index-duplicated", "pack index", "records", "a record repeated in place of the next", ("commit",),
     "pack index {files}: records not sorted or duplicated"
     )(lambda t: _records(t, t.base.pack_of[CSV], lambda rs, n: rs.__setitem__(1, list(rs[0])), sort=False))
case("index-pack-id", "pack index", "pack id", "another pack's id in the header", ("commit",),
     "pack index {files}: belongs to pack " + "e" * 32
     )(lambda t: t.put(index_key(t.base.pack_of[CSV]), _raw_index(t.base.pack_of[CSV], t.records(t.base.pack_of[CSV]),
                                                                id_bytes=bytes.fromhex("e" * 32))))
case("index-count", "pack index", "count", "n + 1 in the header", ("commit",),
     "pack index {files}: size", "does not match its 31 records"
     )(lambda t: t.put(index_key(t.base.pack_of[CSV]), _raw_index(t.base.pack_of[CSV], t.records(t.base.pack_of[CSV]),
                                                                count=31)))
case("index-magic", "pack index", "magic", "'ledgeriy'", ("commit",), "pack index {files}: bad magic"
     )(lambda t: t.put(index_key(t.base.pack_of[CSV]), _raw_index(t.base.pack_of[CSV], t.records(t.base.pack_of[CSV]),
                                                                magic=b"ledgeriy")))
case("index-checksum", "pack index", "checksum", "one bit flipped", ("commit",), "pack index {files}: checksum "
     "mismatch")(lambda t: t.flip(index_key(t.base.pack_of[CSV]), len(t.get(index_key(t.base.pack_of[CSV]))) - 1))
case("index-missing", "pack index", "(object)", "deleted", ("commit",),
     "completion marker names pack {files}: pack index {files}: missing"
     )(lambda t: t.delete(index_key(t.base.pack_of[CSV])))
case("pack-missing", "pack file", "(object)", "deleted, its index kept", ("content",),
     "item data/part-0000.csv: content missing from the store (pack {files} is gone) (and 29 more)"
     )(lambda t: t.delete(pack_key(t.base.pack_of[CSV])))
case("pack-padded", "pack file", "(bytes)", "bytes appended after the last object", (),
     note=by_design("no index record points there; every object read is re-hashed (objects.md §8)")
     )(lambda t: t.put(pack_key(t.base.pack_of[CSV]), t.get(pack_key(t.base.pack_of[CSV])) + b"padding"))


# the sealed policy document -----------------------------------------------------------------------------------------

def _policy(t: T, fn: Callable[[dict[str, Any]], Any], resign: bool = True, raw: bytes | None = None) -> list[str]:
    """Change the sealed policy document; re-signed: stored under its new digest, which the commit then names."""
    key = t.base.names["policy"]
    v = encoding.decode(t.get(key))
    fn(v)
    data = raw if raw is not None else encoding.encode(v)
    if not resign:
        t.put(key, data)
        return []
    digest = typed_digest(CTX_POLICY, data)
    t.put(policy_key(digest), data)
    t.resign(policy=digest)
    return [f"policies/{digest.hex()}"] if raw is not None else []


case("policy-doc-changed", "policy document", "min", "receipt 1 -> 2, stored in place", ("criteria",),
     "sealed policy {policy}: its bytes do not match the digest the commit names"
     )(lambda t: _policy(t, lambda v: v["min"].__setitem__("receipt", 2), resign=False))
case("policy-doc-missing", "policy document", "(object)", "deleted", ("criteria",),
     "sealed policy {policy}: missing from the store")(lambda t: t.delete(t.base.names["policy"]))
case("policy-doc-min-resigned", "policy document", "min", "receipt 1 -> 2; the commit re-signed naming it",
     ("criteria",), "criterion min:receipt: sealed as holding, re-evaluates as failing"
     )(lambda t: _policy(t, lambda v: v["min"].__setitem__("receipt", 2)))
case("policy-doc-topics-resigned", "policy document", "topics", "orders 2 -> 3; re-signed", ("criteria",),
     "criterion topic:orders: sealed as holding, re-evaluates as failing", "no offsets record for partition(s) 2"
     )(lambda t: _policy(t, lambda v: v["topics"].__setitem__("orders", 3)))
case("policy-doc-artifacts-resigned", "policy document", "artifacts", "ingest-worker -> dedup-model; re-signed",
     ("criteria",), "criterion artifacts: sealed as holding, re-evaluates as failing"
     )(lambda t: _policy(t, lambda v: v.__setitem__("artifacts", ["dedup-model"])))
case("policy-doc-continuity-resigned", "policy document", "continuity", "emptied; re-signed", ("criteria",),
     "criterion continuity: recorded in the commit but not evaluated by the sealed policy"
     )(lambda t: _policy(t, lambda v: v.__setitem__("continuity", [])))
case("policy-doc-rule-added-resigned", "policy document", "min", "log = 1 added; re-signed", ("criteria",),
     "criterion min:log: evaluated now, but not recorded in the commit"
     )(lambda t: _policy(t, lambda v: v.__setitem__("min", {"log": 1, **v["min"]})))
case("policy-doc-reconcile-resigned", "policy document", "reconcile",
     "admitted-vs-outcomes's right side -> summary.ingested alone; re-signed", ("criteria",),
     "criterion reconcile:admitted-vs-outcomes: sealed as holding, re-evaluates as failing", "70 vs 65"
     )(lambda t: _policy(t, lambda v: v["reconcile"][1].__setitem__("right", ["summary.ingested"])))
case("policy-doc-reconcile-term-resigned", "policy document", "reconcile", "a term summary.absent no record has; "
     "re-signed", ("criteria",), "the sealed policy cannot be evaluated over the sealed evidence", "summary.absent"
     )(lambda t: _policy(t, lambda v: v["reconcile"][0].__setitem__("right", ["summary.absent"])))
case("policy-doc-empty-resigned", "policy document", "(rules)", "every rule emptied; re-signed", ("criteria",),
     "declares no criteria")(lambda t: _policy(t, lambda v: v.update(
         {"min": {}, "artifacts": [], "topics": {}, "reconcile": [], "continuity": []})))
case("policy-doc-unknown-field-resigned", "policy document", "(map)", "an eighth field; re-signed", ("criteria",),
     "unknown field 'notes'")(lambda t: _policy(t, lambda v: v.__setitem__("notes", "x")))
case("policy-doc-format-resigned", "policy document", "format", "'ledger/2'; re-signed", ("criteria",),
     "unsupported format 'ledger/2'")(lambda t: _policy(t, lambda v: v.__setitem__("format", "ledger/2")))


@case("policy-doc-noncanonical-resigned", "policy document", "(encoding)", "min's keys out of order; re-signed",
      ("criteria",), "sealed policy policies/", "map keys are not in canonical (sorted, unique) order")
def _(t: T) -> list[str]:
    v = encoding.decode(t.get(t.base.names["policy"]))
    v["min"] = {"summary": 1, "receipt": 1}
    return _policy(t, lambda _: None, raw=msgpack.packb(v, use_bin_type=True))


case("policy-doc-sources-resigned", "policy document", "sources", "a source file renamed; re-signed", (),
     note=by_design("sources record provenance and take no part in evaluation (policy.md §8)")
     )(lambda t: _policy(t, lambda v: v["sources"][0].__setitem__(0, "renamed.toml")))


# the store config, batches, the sealing fence ---------------------------------------------------------------------

case("config-format", "store config", "format", "'ledger/2'", ("store",), "store config: unsupported format"
     )(lambda t: t.edit(CONFIG, lambda v: v.__setitem__("format", "ledger/2")))
case("config-extra-field", "store config", "(map)", "an unknown field", ("store",), "unknown field 'owner'"
     )(lambda t: t.edit(CONFIG, lambda v: v.__setitem__("owner", "me")))
case("config-lock-invalid", "store config", "lock", "days 0", ("store",), "store config: lock"
     )(lambda t: t.edit(CONFIG, lambda v: v.__setitem__("lock", {"days": 0, "mode": "GOVERNANCE"})))
case("config-lock-valid", "store config", "lock", "a valid 30-day lock added", (),
     note=by_design("unsigned operator setting; on a local store there is no retention to check (verify.md §9)")
     )(lambda t: t.edit(CONFIG, lambda v: v.__setitem__("lock", {"days": 30, "mode": "GOVERNANCE"})))
case("config-missing", "store config", "(object)", "deleted", None, "no ledger store here", code=3,
     note="not a store any more: exit 3 (verify.md §1)")(lambda t: t.delete(CONFIG))


@case("batch-stray", "batch", "(object)", "a batch for the sealed run written after the seal", (),
      note=by_design("batches are input to a seal, not evidence; a seal deletes them (objects.md §5)"))
def _(t: T) -> None:
    assert not list((t.store / "runs" / RUN).rglob("*.batch")), "a sealed run keeps no batch"
    t.put(f"runs/{RUN}/staged/{0:020d}.batch", encoding.encode(
        {"format": "ledger/1", "items": [["x.txt", "file", 1, R32, None]], "run": RUN}))


@case("fence-stray", "sealing fence", "(object)", "a sealing fence written after the seal", (),
      note=by_design("only its existence matters, to add and record (objects.md §7)"))
def _(t: T) -> None:
    assert not (t.store / "runs" / RUN / "sealing").exists()
    t.put(f"runs/{RUN}/sealing", encoding.encode({"format": "ledger/1", "run": RUN, "time": 0}))


# bundles ------------------------------------------------------------------------------------------------------------

def bundle_case(id: str, fld: str, mutation: str, checks: tuple[str, ...] | None, *mentions: str, code: int = 1,
                note: str = "", xfail: str = "", actual: tuple[int, str] = (0, "")
                ) -> Callable[[Callable[[T], Any]], Callable[[T], Any]]:
    return case(f"bundle-{id}", "bundle", fld, mutation, checks, *mentions, target="bundle", code=code, note=note,
                xfail=xfail, actual=actual)


def _raw_bundle(fn: Callable[[bytes], bytes]) -> Callable[[T], Any]:
    return lambda t: t.use_bundle(fn(t.base.full_bundle.read_bytes()))


def _header(fix: Callable[[dict[str, Any]], Any], which: str = "full") -> Callable[[T], Any]:
    def apply(t: T) -> Any:
        src = {"full": t.base.full_bundle, "meta": t.base.meta_bundle}[which]
        h, objs = t.bundle_parts(src)
        return t.write_bundle(h, objs, fix)
    return apply


def _hlen_of(data: bytes) -> int:
    n: int = BUNDLE_HEAD.unpack_from(data)[1]
    return n


def _hlen(data: bytes, delta: int) -> bytes:
    return data[:8] + struct.pack(">Q", _hlen_of(data) + delta) + data[16:]


bundle_case("magic", "magic", "'XEDGERB1'", None, "not a ledger bundle (bad magic)"
            )(_raw_bundle(lambda d: b"X" + d[1:]))
bundle_case("header-length-plus-1", "header_length", "+ 1", None, "header")(_raw_bundle(lambda d: _hlen(d, 1)))
bundle_case("header-length-minus-1", "header_length", "- 1", None, "header")(_raw_bundle(lambda d: _hlen(d, -1)))
bundle_case("header-length-huge", "header_length", "2^40 (beyond the file and the limit)", None,
            "header length 1099511627776 out of range")(_raw_bundle(lambda d: _hlen(d, (1 << 40) - _hlen_of(d))))
bundle_case("truncated", "(object bytes)", "last byte cut", None, "-1 bytes against its header"
            )(_raw_bundle(lambda d: d[:-1]))
bundle_case("padded", "(object bytes)", "one byte appended", None, "+1 bytes against its header"
            )(_raw_bundle(lambda d: d + b"\0"))


@bundle_case("header-noncanonical", "header", "map header as map16", None, "header: not in canonical form")
def _(t: T) -> None:
    h, objs = t.bundle_parts(t.base.full_bundle)
    raw = encoding.encode(h)
    assert raw[0] == 0x85
    t.write_bundle(h, objs, raw_header=b"\xde\x00\x05" + raw[1:])


bundle_case("header-format", "format", "'ledger/2'", None, "not a ledger/1 bundle"
            )(_header(lambda h: h.__setitem__("format", "ledger/2")))
bundle_case("header-type", "type", "'proof'", None, "not a ledger/1 bundle"
            )(_header(lambda h: h.__setitem__("type", "proof")))
bundle_case("header-run", "run", f"'{RUN}' -> '{PREV}', verified as {RUN}", None,
            f"unexpected entry 'runs/{RUN}/sealed'")(_header(lambda h: h.__setitem__("run", PREV)))


@bundle_case("header-run-as-named", "run", f"'{RUN}' -> '{PREV}', verified as {PREV}", None,
             f"unexpected entry 'runs/{RUN}/sealed'")
def _(t: T) -> None:
    t.run = PREV
    _header(lambda h: h.__setitem__("run", PREV))(t)


bundle_case("header-unknown-field", "(map)", "an unknown field", None, "unknown field 'comment'"
            )(_header(lambda h: h.__setitem__("comment", "x")))
bundle_case("header-since-garbage", "since", "added: bytes that are no consistency proof", None,
            "consistency proof")(_header(lambda h: h.__setitem__("since", b"\x80")))
bundle_case("header-content-false", "content", "true -> false on a full bundle", (), "NOT CHECKED",
            note=by_design("verify reports the content check as NOT CHECKED and content_checked false "
                           "(bundle.md §3)"))(_header(lambda h: h.__setitem__("content", False)))


@bundle_case("header-content-false-and-content-tampered", "content",
             "true -> false, and a byte of the loose object changed", (), "NOT CHECKED",
             note=by_design("the downgrade is visible only as NOT CHECKED / content_checked false: an auditor must "
                            "not rely on the exit code alone (bundle.md §3)"))
def _(t: T) -> None:
    h, objs = t.bundle_parts(t.base.full_bundle)
    big = t.base.names["big"]
    objs = [(k, (d[:10] + bytes([d[10] ^ 1]) + d[11:]) if k == big else d) for k, d in objs]
    t.write_bundle(h, objs, lambda h: h.__setitem__("content", False))


bundle_case("header-content-true", "content", "false -> true on a metadata-only bundle", ("content",),
            "item artifacts/ingest-worker.json: content missing from the store (pack", "is gone) (and 35 more)"
            )(_header(lambda h: h.__setitem__("content", True), which="meta"))


def _objects(fix: Callable[[list[list[Any]]], Any]) -> Callable[[T], Any]:
    return _header(lambda h: fix(h["objects"]))


bundle_case("objects-order", "objects", "two entries swapped (offsets kept)", None, "objects not in order"
            )(_objects(lambda o: _swap(o, 0)))
bundle_case("objects-gap", "objects", "an offset + 1", None, "objects not in order, overlapping or with gaps"
            )(_objects(lambda o: o[1].__setitem__(1, o[1][1] + 1)))
bundle_case("objects-overlap", "objects", "an offset - 1", None, "objects not in order, overlapping or with gaps"
            )(_objects(lambda o: o[1].__setitem__(1, o[1][1] - 1)))
bundle_case("objects-size", "objects", "the last object's size + 1", None, "-1 bytes against its header"
            )(_objects(lambda o: o[-1].__setitem__(2, o[-1][2] + 1)))
bundle_case("objects-malformed", "objects", "an entry of four elements", None, "malformed object entry"
            )(_objects(lambda o: o[0].append(0)))
bundle_case("objects-key-invalid", "objects", "a key '../config'", None, "invalid key '../config'"
            )(_objects(lambda o: o[0].__setitem__(0, "../config")))
bundle_case("objects-key-foreign", "objects", "the config's key -> a staged batch's", None, "unexpected entry"
            )(_objects(lambda o: o[0].__setitem__(0, f"runs/{RUN}/staged/{0:020d}.batch")))


def _drop(key: Callable[[T], str]) -> Callable[[T], Any]:
    def apply(t: T) -> Any:
        h, objs = t.bundle_parts(t.base.full_bundle)
        k = key(t)
        assert any(o[0] == k for o in objs), k
        return t.write_bundle(h, [o for o in objs if o[0] != k])
    return apply


bundle_case("drop-config", "objects", "the config left out", None, "no store config in it", code=1
            )(_drop(lambda t: CONFIG))
bundle_case("drop-earlier-slot", "objects", "slot 0 left out", ("chain",), "chain: slots 0..2 are not all present"
            )(_drop(lambda t: slot_key(0)))
bundle_case("drop-slot", "objects", "the run's commit slot left out", ("commit",),
            "commit slot 2 named by the completion marker is missing")(_drop(lambda t: slot_key(SEQ)))
bundle_case("drop-marker", "objects", "the completion marker left out", ("marker",), "completion marker missing"
            )(_drop(lambda t: marker_key(RUN)))
bundle_case("drop-policy", "objects", "the sealed policy left out", ("criteria",), "sealed policy {policy}: missing"
            )(_drop(lambda t: t.base.names["policy"]))
bundle_case("drop-node-pack", "objects", "the tree-node pack left out", ("tree",), "tree node {T}"
            )(_drop(lambda t: pack_key(t.base.node_pack)))
bundle_case("drop-node-index", "objects", "the tree-node pack's index left out", ("commit",),
            "pack index {nodes}: missing")(_drop(lambda t: index_key(t.base.node_pack)))
bundle_case("drop-files-pack", "objects", "the files' pack left out", ("content",),
            "item data/part-0000.csv: content missing from the store")(_drop(lambda t: pack_key(t.base.pack_of[CSV])))
bundle_case("drop-loose", "objects", "the loose object left out", ("content",), f"item {BIG}: content missing"
            )(_drop(lambda t: t.base.names["big"]))

# store mutations made inside a bundle (its objects unpacked, changed like a store's, packed again)
VIA_BUNDLE = ["content-packed-byte", "content-loose-byte", "content-record-resealed", "entry-size-relinked",
              "child-last-relinked", "commit-items_root-resigned", "commit-log_root-resigned",
              "commit-anchors-resigned", "commit-policy-nil-resigned", "sig-bit-flipped", "chain-earlier-resigned",
              "chain-earlier-anchors-relinked", "marker-commit", "marker-packs-unknown", "index-checksum",
              "policy-doc-changed", "policy-doc-min-resigned", "config-format"]


def _via_bundle(c: Case) -> Case:
    def apply(t: T) -> Any:
        t.unpack(t.base.full_bundle)
        out = c.apply(t)
        t.repack()
        return out
    return dataclasses.replace(c, id=f"bundle-{c.id}", target="bundle", obj=f"bundle: {c.obj}", apply=apply)


# a bundle exported --since the checkpoint of #1
def _since(fix: Callable[[T, dict[str, Any], list[tuple[str, bytes]]], Any], checkpoint: bool = True
           ) -> Callable[[T], Any]:
    def apply(t: T) -> Any:
        h, objs = t.bundle_parts(t.base.since_bundle)
        assert "since" in h and all(k != slot_key(0) for k, _ in objs)
        objs = list(objs)
        fix(t, h, objs)
        return t.write_bundle(h, objs, checkpoint=checkpoint)
    return apply


def _since_slot1(t: T, h: dict[str, Any], objs: list[tuple[str, bytes]]) -> None:
    i = next(i for i, (k, _) in enumerate(objs) if k == slot_key(1))
    c = SignedCommit.from_bytes(objs[i][1])
    body = dataclasses.replace(c.body, time_ms=c.body.time_ms + 1).encode()
    objs[i] = (slot_key(1), encoding.encode({"body": body, "sig": t.base.signer.sign(body)}))


def _since_flip(t: T, h: dict[str, Any], objs: list[tuple[str, bytes]]) -> None:
    p = encoding.decode(h["since"])
    p["consistency"][0] = bytes([p["consistency"][0][0] ^ 1]) + p["consistency"][0][1:]
    h["since"] = encoding.encode(p)


bundle_case("since-proof-garbage", "since", "a consistency proof that does not decode", None, "consistency proof"
            )(_since(lambda t, h, o: h.__setitem__("since", h["since"][:-1])))
bundle_case("since-proof-other", "since", "a valid proof from #0 (not the checkpoint, #1) to the run's commit",
            ("chain",), "chain: the bundle's consistency proof is not from the checkpoint to this commit"
            )(_since(lambda t, h, o: h.__setitem__("since", t.base.other_since)))
bundle_case("since-proof-hash", "since", "a consistency hash flipped", ("chain",),
            "chain: consistency from checkpoint #1")(_since(_since_flip))
bundle_case("since-checkpoint-slot", "objects", "the checkpoint's slot 1 re-signed with another time", ("chain",),
            "chain: slot 1 holds commit", "not the checkpoint's")(_since(_since_slot1))
bundle_case("since-dropped", "since", "removed, verified without --checkpoint", ("chain",),
            "chain: slots 0..2 are not all present")(_since(lambda t, h, o: h.pop("since"), checkpoint=False))
bundle_case("since-dropped-with-checkpoint", "since", "removed, verified with the auditor's --checkpoint", None,
            "slot 0 missing", code=1)(_since(lambda t, h, o: h.pop("since")))


# inclusion proofs ---------------------------------------------------------------------------------------------------

def proof_case(id: str, fld: str, mutation: str, outcome: str, *mentions: str,
               ) -> Callable[[Callable[[T], Any]], Callable[[T], Any]]:
    return case(f"proof-{id}", "inclusion proof", fld, mutation, (outcome,), *mentions, target="proof",
                code=2 if outcome == "decode-error" else 1)


def _pv(fn: Callable[[T, dict[str, Any]], Any]) -> Callable[[T], Any]:
    def apply(t: T) -> Any:
        v = t.proof_value()
        out = fn(t, v)
        t.use_proof(encoding.encode(v))
        return out
    return apply


def _proof_commit(body_fn: Callable[[T, Any], Any], key: str = "signer", sig: bytes | None = None
                  ) -> Callable[[T, dict[str, Any]], Any]:
    def fn(t: T, v: dict[str, Any]) -> None:
        c = SignedCommit.from_bytes(v["commit"])
        body = body_fn(t, c.body)
        bb = body.encode() if not isinstance(body, bytes) else body
        s = sig if sig is not None else getattr(t.base, key).sign(bb)
        v["commit"] = encoding.encode({"body": bb, "sig": s})
    return fn


def _path(fn: Callable[[list[bytes]], Any]) -> Callable[[T], Any]:
    return _pv(lambda t, v: fn(v["path"]))


proof_case("commit-other-run", "commit", f"slot 1's commit ({PREV})", "run-mismatch",
           f"the commit seals run '{PREV}', the proof claims run '{RUN}'"
           )(_pv(lambda t, v: v.__setitem__("commit", t.base.store.joinpath(slot_key(1)).read_bytes())))
proof_case("commit-untrusted", "commit", "key id and signature of another key", "untrusted-key",
           "which is not among the trusted keys"
           )(_pv(_proof_commit(lambda t, b: dataclasses.replace(b, key=t.base.other.public.key_id), key="other")))
proof_case("commit-sig", "commit", "the signature zeroed", "bad-signature", "bad signature on the commit"
           )(_pv(_proof_commit(lambda t, b: b, sig=bytes(64))))
proof_case("commit-items_root", "commit", f"items_root changed, {RESIGNED}", "root-mismatch",
           "not to the sealed items root " + _short(R32)
           )(_pv(_proof_commit(lambda t, b: dataclasses.replace(b, items_root=R32))))
proof_case("commit-count", "commit", f"count 36 -> 9 (the item's index), {RESIGNED}", "path-error",
           "index 9 out of range for tree size 9")(_pv(_proof_commit(lambda t, b: dataclasses.replace(b, count=9))))
proof_case("commit-count-smaller", "commit", f"count 36 -> 10, {RESIGNED}", "path-error",
           "wrong proof size 6, want 2")(_pv(_proof_commit(lambda t, b: dataclasses.replace(b, count=10))))
proof_case("commit-run", "commit", f"body run -> '{PREV}', {RESIGNED}", "run-mismatch",
           f"the commit seals run '{PREV}'")(_pv(_proof_commit(lambda t, b: dataclasses.replace(b, run=PREV))))
proof_case("commit-undecodable", "commit", "a byte appended to the commit's bytes", "decode-error",
           "commit: trailing bytes")(_pv(lambda t, v: v.__setitem__("commit", v["commit"] + b"\xc0")))
proof_case("commit-body-invalid", "commit", f"body without items_root, {RESIGNED}", "decode-error",
           "missing field 'items_root'")(_pv(_proof_commit(lambda t, b: encoding.encode(
               {k: x for k, x in b.to_value().items() if k != "items_root"}))))
proof_case("format", "format", "'ledger/2'", "decode-error", "not a ledger/1 inclusion proof"
           )(_pv(lambda t, v: v.__setitem__("format", "ledger/2")))
proof_case("type", "type", "'consistency'", "decode-error", "not a ledger/1 inclusion proof"
           )(_pv(lambda t, v: v.__setitem__("type", "consistency")))
proof_case("index-next", "index", "+ 1", "root-mismatch", "not to the sealed items root"
           )(_pv(lambda t, v: v.__setitem__("index", v["index"] + 1)))
proof_case("index-count", "index", "= count (36)", "path-error", "index 36 out of range for tree size 36"
           )(_pv(lambda t, v: v.__setitem__("index", 36)))
proof_case("index-last", "index", "= 35 (a path of another length)", "path-error", "wrong proof size"
           )(_pv(lambda t, v: v.__setitem__("index", 35)))
proof_case("index-negative", "index", "-1", "decode-error", "index out of range"
           )(_pv(lambda t, v: v.__setitem__("index", -1)))
proof_case("index-2^63", "index", "2^63", "decode-error", "index out of range"
           )(_pv(lambda t, v: v.__setitem__("index", 1 << 63)))
proof_case("index-bool", "index", "true (a bool is not an int)", "decode-error", "field 'index' has the wrong type"
           )(_pv(lambda t, v: v.__setitem__("index", True)))
for _f, _new in (("name", "data/part-0008.csv"), ("kind", "log"), ("size", 1), ("blake3", R32)):
    proof_case(f"item-{_f}", "item", f"{_f} changed", "root-mismatch", "not to the sealed items root"
               )(_pv(lambda t, v, f=_f, new=_new: v["item"].__setitem__(f, new)))
proof_case("item-kind-unknown", "item", "kind 'binary'", "decode-error", "unknown kind 'binary'"
           )(_pv(lambda t, v: v["item"].__setitem__("kind", "binary")))
proof_case("item-name-invalid", "item", "name '../x'", "decode-error", "invalid item name"
           )(_pv(lambda t, v: v["item"].__setitem__("name", "../x")))
proof_case("item-extra-field", "item", "a fifth field", "decode-error", "unknown field 'mode'"
           )(_pv(lambda t, v: v["item"].__setitem__("mode", 1)))
proof_case("item-child-entry", "item", "a child entry instead of an item entry", "decode-error",
           "item: unknown field 'count'"
           )(_pv(lambda t, v: v.__setitem__("item", {"count": 1, "last": "a", "node": R32})))
proof_case("path-flip", "path", "one bit of the last hash flipped", "root-mismatch", "not to the sealed items root"
           )(_path(lambda p: p.__setitem__(-1, bytes([p[-1][0] ^ 1]) + p[-1][1:])))
proof_case("path-drop", "path", "the last hash dropped", "path-error", "wrong proof size 5, want 6"
           )(_path(lambda p: p.pop()))
proof_case("path-add", "path", "a hash appended", "path-error", "wrong proof size 7, want 6"
           )(_path(lambda p: p.append(R32)))
proof_case("path-reorder", "path", "the first two hashes swapped", "root-mismatch", "not to the sealed items root"
           )(_path(lambda p: _swap(p, 0)))
proof_case("path-duplicate", "path", "the second hash replaced by the first", "root-mismatch",
           "not to the sealed items root")(_path(lambda p: p.__setitem__(1, p[0])))
proof_case("path-short-hash", "path", "a hash of 31 bytes", "decode-error", "at most 64 32-byte hashes"
           )(_path(lambda p: p.__setitem__(0, p[0][:31])))
proof_case("path-65", "path", "65 hashes", "decode-error", "at most 64 32-byte hashes"
           )(_path(lambda p: p.extend([R32] * (65 - len(p)))))
proof_case("path-not-array", "path", "one bin instead of an array", "decode-error", "field 'path' has the wrong type"
           )(_pv(lambda t, v: v.__setitem__("path", b"".join(v["path"]))))
proof_case("run", "run", f"'{RUN}' -> '{PREV}'", "run-mismatch", f"the proof claims run '{PREV}'"
           )(_pv(lambda t, v: v.__setitem__("run", PREV)))
proof_case("extra-field", "(map)", "an eighth field", "decode-error", "unknown field 'note'"
           )(_pv(lambda t, v: v.__setitem__("note", "x")))
proof_case("missing-field", "(map)", "path removed", "decode-error", "missing field 'path'"
           )(_pv(lambda t, v: v.pop("path")))
proof_case("noncanonical", "(encoding)", "map header as map16", "decode-error", "not in canonical form"
           )(lambda t: t.use_proof(b"\xde\x00\x07" + t.base.proof.read_bytes()[1:]))
proof_case("trailing", "(encoding)", "one byte appended", "decode-error", "trailing bytes"
           )(lambda t: t.use_proof(t.base.proof.read_bytes() + b"\xc0"))
proof_case("truncated", "(encoding)", "last byte cut", "decode-error", "not valid canonical MessagePack"
           )(lambda t: t.use_proof(t.base.proof.read_bytes()[:-1]))


@proof_case("content", "(--content)", "the proof intact, --content another file", "content-mismatch",
            "the content given does not match")
def _(t: T) -> None:
    t.use_proof(t.base.proof.read_bytes())
    t.content = t.tmp / "other.csv"
    t.content.write_text("not the item\n")


CASES.extend(_via_bundle(next(c for c in CASES if c.id == i)) for i in VIA_BUNDLE)


# --- running one case ------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    code: int
    out: str
    err: str
    doc: dict[str, Any] | None

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out[:4000]}\nstderr: {self.err}"


def run(t: T) -> Outcome:
    if t.proof is not None:
        args: list[Any] = ["verify-proof", t.proof]
        for k in t.trust:
            args += ["--trust", k]
        if t.content is not None:
            args += ["--content", t.content]
        store = t.tmp / "no-store"
    else:
        args = ["verify", t.run]
        for k in t.trust:
            args += ["--trust", k]
        args.append("--json")
        store = t.store
        if t.bundle is not None:
            args += ["--bundle", t.bundle]
            store = t.tmp / "no-store"
            if t.checkpoint is not None:
                args += ["--checkpoint", t.checkpoint]
    p = _cli(store, *args, cwd=t.tmp)
    out, err = p.stdout.decode(), p.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out + err, f"{args}: exit {p.returncode}\n{out}\n{err}"
    doc = json.loads(out) if out and t.proof is None else None
    return Outcome(p.returncode, out, err, doc)


PROOF_OUTCOMES = [("run-mismatch", "the proof claims run"), ("untrusted-key", "not among the trusted keys"),
                  ("bad-signature", "bad signature on the commit"), ("path-error", " out of range for tree size"),
                  ("path-error", "wrong proof size"), ("root-mismatch", "not to the sealed items root"),
                  ("content-mismatch", "the content given does not match")]


def proof_outcome(o: Outcome, line: str) -> str:
    """The proofs.md outcome an error line reports."""
    if o.code == 2 and line.endswith("(not a ledger/1 proof)"):
        return "decode-error"
    found = {name for name, words in PROOF_OUTCOMES if words in line}
    return found.pop() if o.code == 1 and len(found) == 1 else f"unclassified (exit {o.code})"


def check_case(c: Case, t: T, extra: Any, o: Outcome) -> None:
    """The required outcome: the exit code, exactly the failing checks (or one error line, or a pass), and the
    words naming the object in the first failure."""
    words = [m.format(**t.base.names) for m in c.mentions]
    words += [w for w in extra if isinstance(w, str)] if isinstance(extra, list) else []
    assert o.code == c.code, f"{c.id}: expected exit {c.code}\n{o}"
    if c.code == 0:  # accepted by design
        assert o.doc is not None and o.doc is not None and o.doc["ok"] is True, str(o)
        details = " | ".join(x["detail"] for x in o.doc["checks"])
        for w in words:
            assert w in details, f"{c.id}: {w!r} not in the report\n{o}"
        return
    lines = o.err.splitlines()
    if o.doc is not None:  # --json: the report is the whole answer
        assert not lines, f"{c.id}: stderr beside the JSON report\n{o}"
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{c.id}: not one error line\n{o}"
    if c.target == "proof":
        assert c.checks is not None and proof_outcome(o, lines[0]) == c.checks[0], f"{c.id}: outcome\n{o}"
        detail = lines[0]
    elif c.checks is None:
        assert o.doc is None, f"{c.id}: expected a refusal before any check\n{o}"
        detail = lines[0]
    else:
        assert o.doc is not None and o.doc["ok"] is False and o.doc["run"] == t.run, str(o)
        failed = [x for x in o.doc["checks"] if not x["ok"]]
        assert [x["name"] for x in failed] == list(c.checks), f"{c.id}: failing checks\n{o}"
        for x in failed:
            assert x["detail"].startswith(f"run {t.run}: "), x
        detail = failed[0]["detail"]
    for w in words:
        assert w in detail, f"{c.id}: {w!r} not named by the failure\n{o}"


class KnownBug(Exception):
    """A case whose required outcome is not reached, for the documented reason (its xfail)."""


def _params() -> list[Any]:
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, raises=KnownBug, reason=c.xfail)]
                         if c.xfail else []) for c in CASES]


@pytest.mark.parametrize("c", _params())
def test_tamper(c: Case, t: T) -> None:
    extra = c.apply(t)
    if c.target == "bundle":
        assert t.bundle is not None, "a bundle case must write a bundle"
    if c.target == "proof":
        assert t.proof is not None, "a proof case must write a proof"
    o = run(t)
    if not c.xfail:
        check_case(c, t, extra, o)
        return
    try:
        check_case(c, t, extra, o)
    except AssertionError:
        pass
    else:
        return  # fixed: strict xfail turns this pass into a failure, so the case gets updated
    code, words = c.actual
    assert o.code == code and words in o.out + o.err, f"{c.id}: neither the required outcome nor the known bug\n{o}"
    raise KnownBug(f"{c.id}: {c.xfail}")


# --- controls: untouched copies, and the helpers' own round trips, verify -------------------------------------------

@pytest.mark.parametrize("what", ["store", "bundle-repacked", "bundle-rewritten", "since-bundle", "meta-bundle",
                                  "proof-reencoded", "resealed-unchanged", "relinked-unchanged", "resigned-unchanged"])
def test_controls_verify(t: T, what: str) -> None:
    """Every helper the cases use, applied without a change, leaves something that verifies: so a case that fails
    fails because of its one mutation."""
    if what == "bundle-repacked":
        t.unpack(t.base.full_bundle)
        t.repack()
        assert t.bundle is not None and t.bundle.read_bytes() == t.base.full_bundle.read_bytes()
    elif what == "bundle-rewritten":
        t.write_bundle(*t.bundle_parts(t.base.full_bundle))
        assert t.bundle is not None and t.bundle.read_bytes() == t.base.full_bundle.read_bytes()
    elif what == "since-bundle":
        _since(lambda t, h, o: None)(t)
    elif what == "meta-bundle":
        _header(lambda h: None, which="meta")(t)
    elif what == "proof-reencoded":
        _pv(lambda t, v: None)(t)
        assert t.proof is not None and t.proof.read_bytes() == t.base.proof.read_bytes()
    elif what == "resealed-unchanged":
        before = t.get(slot_key(SEQ))
        t.reseal(dict(t.base.items))
        assert t.get(slot_key(SEQ)) == before, "resealing the same items must give the same commit"
    elif what == "relinked-unchanged":
        v = t.node(t.base.left)
        assert t.set_node(t.base.left, v) == t.base.left and t.commit().body.root == t.base.root
    elif what == "resigned-unchanged":
        t.resign(time_ms=t.commit().body.time_ms)
    o = run(t)
    assert o.code == 0, str(o)
    if t.proof is None:
        assert o.doc is not None and o.doc["ok"] is True
        assert o.doc["content_checked"] is (what != "meta-bundle")


# --- the table in spec/ -----------------------------------------------------------------------------------------------

STEPS = {"store": "1 store", "commit": "2 commit", "signature": "3 signature", "content": "4 content",
         "tree": "5 tree", "chain": "6 chain", "criteria": "7 criteria", "marker": "8 marker"}
PROOF_STEPS = {"decode-error": "§3 decode-error", "run-mismatch": "§4.1 run-mismatch",
               "untrusted-key": "§4.2 untrusted-key", "bad-signature": "§4.3 bad-signature",
               "path-error": "§4.4 path-error", "root-mismatch": "§4.5 root-mismatch",
               "content-mismatch": "§4.6 content-mismatch"}


def _caught_by(c: Case, bug: bool = True) -> str:
    if c.xfail and bug:
        code, words = c.actual
        return f"**required: {_caught_by(c, False)}; actually exit {code}, “{words}” (bug)**"
    if c.target == "proof":
        assert c.checks is not None
        return f"{PROOF_STEPS[c.checks[0]]} (exit {c.code})"
    if c.checks is None:
        where = "bundle.md §1, reading the bundle" if c.target == "bundle" else "verify.md §1"
        return f"{where} (exit {c.code}, one error line)" if c.code == 1 else f"exit {c.code}: {c.note}"
    if not c.checks:
        return "passes — " + c.note
    first, *more = c.checks
    also = f" (also {', '.join(STEPS[m] for m in more)})" if more else ""
    return f"{STEPS[first]}{also}"


def _cell(s: str) -> str:
    return s.replace("|", "\\|")


def table_rows() -> list[str]:
    rows = []
    for c in CASES:
        rows.append(f"| {_cell(c.obj)} | {_cell(c.field)} | {_cell(c.mutation)} | {_cell(_caught_by(c))} | "
                    f"`{c.id}` |")
    return rows


def counts() -> dict[str, int]:
    return {"mutations": len(CASES), "caught": sum(1 for c in CASES if c.code != 0 and not c.xfail
                                                  and c.checks != ()),
            "by design": sum(1 for c in CASES if c.checks == () and c.target != "proof"),
            "not as required": sum(1 for c in CASES if c.xfail)}


BEGIN, END = "<!-- BEGIN MATRIX (generated by python tests/test_tamper_matrix.py) -->", "<!-- END MATRIX -->"


def render(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    n = counts()
    summary = (f"{n['mutations']} mutations: {n['caught']} caught (verification fails, or the bundle or proof is "
               f"refused, naming the object), {n['by design']} accepted by design, {n['not as required']} not caught "
               "as required (bugs, marked `xfail`).")
    body = "\n".join(["", summary, "", "| object | field | mutation | caught by | test |", "|---|---|---|---|---|",
                      *table_rows(), ""])
    return head + BEGIN + body + END + tail


def test_spec_table_lists_every_case() -> None:
    """spec/tamper.md's table is generated from CASES: every mutation tested here has its row, and nothing else."""
    text = TABLE.read_text()
    assert BEGIN in text and END in text
    assert render(text) == text, "spec/tamper.md is out of date: run python tests/test_tamper_matrix.py"
    ids = re.findall(r"\| `([a-z0-9^_.-]+)` \|$", text, re.M)
    assert ids == [c.id for c in CASES] and len(set(ids)) == len(ids)


def test_every_object_type_is_covered() -> None:
    objs = {c.obj for c in CASES}
    for o in ("item content (packed)", "item content (loose)", "item content (typed record)",
              "item entry (tree node)", "tree node (level 0)", "tree node (root)", "tree node (shape)",
              "child entry (root)",
              "commit body", "signature", "signed commit (slot)", "earlier commit (slot 1)", "chain",
              "completion marker", "pack index record", "pack index", "pack file", "policy document",
              "store config", "batch", "sealing fence", "bundle", "inclusion proof"):
        assert o in objs, o
    body_fields = {c.field for c in CASES if c.obj == "commit body"}
    for f in ("run", "seq", "parent", "root", "items_root", "count", "bytes", "time", "key", "log_size", "log_root",
              "nonce", "anchors", "policy", "criteria", "waivers", "format"):
        assert f in body_fields, f


if __name__ == "__main__":
    TABLE.write_text(render(TABLE.read_text()))
    print(counts())
