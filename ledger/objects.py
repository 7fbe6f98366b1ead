"""The ledger's object types and their canonical encodings (spec/objects.md).

Objects are frozen dataclasses built through ``from_bytes``/``from_value`` constructors that check every field,
so nobody can hold an invalid one. Decoding is strict: unknown fields, wrong types and non-canonical bytes are refused.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from itertools import islice

import msgpack

from . import encoding
from .digests import CTX_COMMIT, CTX_NODE, DIGEST_SIZE, FORMAT, Digest, typed_digest
from .encoding import Value, check_fields
from .errors import DecodeError
from .names import KINDS, is_run_id, name_problem

MAX_SEQ = 2**63 - 1
NONCE_BYTES = 16  # per seal, random: two sealers never produce the same commit, so a digest match means 'mine'
_U64 = 2**64 - 1
_KIND_OF = {k: k for k in KINDS}  # one shared str per kind instead of one per decoded item (1M-item runs)
_HEX = "0123456789abcdef"


def _digest(v: Value, what: str) -> Digest:
    if not isinstance(v, bytes) or len(v) != DIGEST_SIZE:
        raise DecodeError(f"{what}: not a {DIGEST_SIZE}-byte digest")
    return Digest(v)


def _nonneg(v: Value, what: str, limit: int = 2**64 - 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= limit:
        raise DecodeError(f"{what}: not a non-negative integer")
    return v


def _format(v: Value, what: str) -> None:
    if v != FORMAT:
        raise DecodeError(f"{what}: unsupported format {v!r} (this verifier reads {FORMAT})")


# --- item entries: the leaves of the evidence tree -------------------------------------------------------------

@dataclass(frozen=True, order=True, slots=True)
class ItemEntry:
    """One evidence item as the tree commits to it: name, kind, content size and plain BLAKE3 of the content."""

    name: str
    kind: str
    size: int
    blake3: Digest

    def to_value(self) -> dict[str, Value]:
        return {"blake3": self.blake3, "kind": self.kind, "name": self.name, "size": self.size}

    def encode(self) -> bytes:
        return encoding.pack_trusted(self.to_value())

    @classmethod
    def from_value(cls, v: Value, what: str = "item entry") -> ItemEntry:
        if type(v) is dict and len(v) == 4:
            # Fast path for the common, valid case (exact types, every check passes); anything else takes the
            # full path below, which names the problem.
            name, kind, size, digest = v.get("name"), v.get("kind"), v.get("size"), v.get("blake3")
            kind = _KIND_OF.get(kind) if type(kind) is str else None
            if (kind is not None and type(name) is str and type(size) is int and 0 <= size <= _U64
                    and type(digest) is bytes and len(digest) == DIGEST_SIZE and name_problem(name) is None):
                return cls(name, kind, size, Digest(digest))
        m = check_fields(v, what, {"blake3": bytes, "kind": str, "name": str, "size": int})
        name = m["name"]
        problem = name_problem(name)
        if problem:
            raise DecodeError(f"{what}: invalid item name {name!r}: {problem}")
        if m["kind"] not in KINDS:
            raise DecodeError(f"{what} {name}: unknown kind {m['kind']!r}")
        return cls(name, m["kind"], _nonneg(m["size"], f"{what} {name}: size"),
                   _digest(m["blake3"], f"{what} {name}: blake3"))


@dataclass(frozen=True)
class ChildEntry:
    """A reference from an interior tree node to a child: the child's last item name, item count and node id."""

    last: str
    count: int
    node: Digest

    def to_value(self) -> dict[str, Value]:
        return {"count": self.count, "last": self.last, "node": self.node}

    def encode(self) -> bytes:
        return encoding.pack_trusted(self.to_value())

    @classmethod
    def from_value(cls, v: Value, what: str = "child entry") -> ChildEntry:
        m = check_fields(v, what, {"count": int, "last": str, "node": bytes})
        if name_problem(m["last"]):
            raise DecodeError(f"{what}: invalid item name in 'last'")
        count = _nonneg(m["count"], f"{what}: count")
        if count == 0:
            raise DecodeError(f"{what}: empty child")
        return cls(m["last"], count, _digest(m["node"], f"{what}: node"))


def node_id(level: int, count: int, entries_root: bytes) -> Digest:
    """A tree node's id commits to its level, the items under it and the RFC 9162 root over its entries."""
    return typed_digest(CTX_NODE, encoding.encode({"count": count, "level": level, "root": entries_root}))


# --- commits -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CommitBody:
    """What a closure commit says; the Ed25519 signature covers the context string and these canonical bytes."""

    run: str
    seq: int
    parent: Digest | None
    root: Digest
    items_root: Digest  # RFC 9162 root over every item's leaf hash in name order: what inclusion proofs lead to
    count: int
    total_bytes: int
    time_ms: int
    key: Digest
    log_size: int
    log_root: Digest
    nonce: bytes
    # What the closure criteria saw and concluded (spec/objects.md §5, spec/policy.md): the replay anchors (one
    # [group, topic, partition, start, end] per offsets record, sorted), the sealed policy's digest (None: built-in
    # criteria only), every criterion's [name, ok, detail], and the secret findings an allow-list waived.
    anchors: tuple[tuple[str, str, int, int, int], ...] = ()
    policy: Digest | None = None
    criteria: tuple[tuple[str, bool, str], ...] = ()
    waivers: tuple[Waived, ...] = ()

    def to_value(self) -> dict[str, Value]:
        return {"anchors": [list(a) for a in self.anchors], "bytes": self.total_bytes, "count": self.count,
                "criteria": [list(c) for c in self.criteria], "format": FORMAT, "items_root": self.items_root,
                "key": self.key, "log_root": self.log_root, "log_size": self.log_size, "nonce": self.nonce,
                "parent": self.parent,
                "policy": self.policy, "root": self.root, "run": self.run, "seq": self.seq, "time": self.time_ms,
                "waivers": [w.to_value() for w in self.waivers]}

    def encode(self) -> bytes:
        return encoding.encode(self.to_value())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "commit body") -> CommitBody:
        m = encoding.decode_map(data, what, {
            "anchors": list, "bytes": int, "count": int, "criteria": list, "format": str, "items_root": bytes,
            "key": bytes, "log_root": bytes, "log_size": int, "nonce": bytes, "parent": (bytes, type(None)),
            "policy": (bytes, type(None)), "root": bytes, "run": str, "seq": int, "time": int, "waivers": list})
        _format(m["format"], what)
        if not is_run_id(m["run"]):
            raise DecodeError(f"{what}: invalid run id {m['run']!r}")
        seq = _nonneg(m["seq"], f"{what}: seq", MAX_SEQ)
        parent = None if m["parent"] is None else _digest(m["parent"], f"{what}: parent")
        if (seq == 0) != (parent is None):
            raise DecodeError(f"{what}: seq {seq} with {'no ' if parent is None else ''}parent")
        log_size = _nonneg(m["log_size"], f"{what}: log_size")
        if log_size != seq:
            raise DecodeError(f"{what}: log_size {log_size} != seq {seq}")
        if len(m["nonce"]) != NONCE_BYTES:
            raise DecodeError(f"{what}: nonce is not {NONCE_BYTES} bytes")
        return cls(m["run"], seq, parent, _digest(m["root"], f"{what}: root"),
                   _digest(m["items_root"], f"{what}: items_root"), _nonneg(m["count"], f"{what}: count"),
                   _nonneg(m["bytes"], f"{what}: bytes"),
                   _nonneg(m["time"], f"{what}: time"), _digest(m["key"], f"{what}: key"), log_size,
                   _digest(m["log_root"], f"{what}: log_root"), m["nonce"], _anchors(m["anchors"], what),
                   None if m["policy"] is None else _digest(m["policy"], f"{what}: policy"),
                   _criteria(m["criteria"], what), _waivers(m["waivers"], what))


def _waivers(v: list[Value], what: str) -> tuple[Waived, ...]:
    out = tuple(Waived.from_value(w, f"{what}: waiver") for w in v)
    keys = [(w.item.encode("utf-8"), w.line, w.detector) for w in out]
    if keys != sorted(set(keys)):
        raise DecodeError(f"{what}: waivers: not sorted by (item, line, detector), or one given twice")
    return out


def _anchors(v: list[Value], what: str) -> tuple[tuple[str, str, int, int, int], ...]:
    out = []
    for a in v:
        if not (isinstance(a, list) and len(a) == 5 and isinstance(a[0], str) and isinstance(a[1], str)
                and a[1] and all(type(x) is int for x in a[2:])):
            raise DecodeError(f"{what}: anchors: malformed entry")
        g, t, p, start, end = a
        if not (0 <= p < 2**31 and 0 <= start <= end <= MAX_SEQ):
            raise DecodeError(f"{what}: anchors: {t}[{p}]: invalid range")
        out.append((g, t, p, start, end))
    if out != sorted(out) or len({a[:3] for a in out}) != len(out):
        raise DecodeError(f"{what}: anchors: not sorted, or a partition given twice")
    return tuple(out)


def _criteria(v: list[Value], what: str) -> tuple[tuple[str, bool, str], ...]:
    out = []
    for c in v:
        if not (isinstance(c, list) and len(c) == 3 and isinstance(c[0], str) and c[0]
                and isinstance(c[1], bool) and isinstance(c[2], str)):
            raise DecodeError(f"{what}: criteria: malformed entry")
        out.append((c[0], c[1], c[2]))
    return tuple(out)


@dataclass(frozen=True)
class Waived:
    """A secret finding an allow-list rule waived, as sealed: the item, line and detector (never the secret),
    and the rule that waived it (its glob, optional line and detector, and the operator's reason)."""

    item: str
    line: int
    detector: str
    rule_item: str
    reason: str
    rule_line: int | None = None
    rule_detector: str | None = None

    def to_value(self) -> dict[str, Value]:
        rule: dict[str, Value] = {"item": self.rule_item, "reason": self.reason}
        if self.rule_line is not None:
            rule["line"] = self.rule_line
        if self.rule_detector is not None:
            rule["detector"] = self.rule_detector
        return {"detector": self.detector, "item": self.item, "line": self.line,
                "rule": dict(sorted(rule.items()))}

    @classmethod
    def from_value(cls, v: Value, what: str = "waiver") -> Waived:
        m = check_fields(v, what, {"detector": str, "item": str, "line": int, "rule": dict})
        r = check_fields(m["rule"], f"{what}: rule", {"item": str, "reason": str}, {"line": int, "detector": str})
        if name_problem(m["item"]) is not None:
            raise DecodeError(f"{what}: invalid item name")
        if m["line"] < 1 or ("line" in r and r["line"] < 1):
            raise DecodeError(f"{what}: line numbers start at 1")
        if not r["reason"].strip() or not r["item"] or not m["detector"] or r.get("detector", "x") == "":
            raise DecodeError(f"{what}: empty reason, glob or detector")
        return cls(m["item"], _nonneg(m["line"], f"{what}: line"), m["detector"], r["item"], r["reason"],
                   None if "line" not in r else _nonneg(r["line"], f"{what}: rule line"), r.get("detector"))


@dataclass(frozen=True)
class SignedCommit:
    """A commit slot's content: the body's exact bytes (hashes are taken over them, never a re-encoding) and
    the signature."""

    body_bytes: bytes
    sig: bytes
    body: CommitBody = field(compare=False)

    @property
    def digest(self) -> Digest:
        return typed_digest(CTX_COMMIT, self.body_bytes)

    def encode(self) -> bytes:
        return encoding.encode({"body": self.body_bytes, "sig": self.sig})

    @classmethod
    def create(cls, body: CommitBody, sig: bytes) -> SignedCommit:
        return cls(body.encode(), sig, body)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "commit") -> SignedCommit:
        m = encoding.decode_map(data, what, {"body": bytes, "sig": bytes})
        if len(m["sig"]) != 64:
            raise DecodeError(f"{what}: signature is not 64 bytes")
        return cls(m["body"], m["sig"], CommitBody.from_bytes(m["body"], what))


# --- completion marker, batches, store config --------------------------------------------------------------------

@dataclass(frozen=True)
class Marker:
    """Written last, after the commit is durable: 'this run's seal completed'. It points at the commit and says
    which packs hold the run's objects; it is a locator, checked against the chain, never trusted on its own."""

    run: str
    seq: int
    commit: Digest
    packs: tuple[str, ...]

    def encode(self) -> bytes:
        return encoding.encode({"commit": self.commit, "format": FORMAT, "packs": list(self.packs),
                                "run": self.run, "seq": self.seq})

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "completion marker") -> Marker:
        m = encoding.decode_map(data, what, {"commit": bytes, "format": str, "packs": list, "run": str,
                                             "seq": int})
        _format(m["format"], what)
        packs = m["packs"]
        if not all(isinstance(p, str) and is_pack_id(p) for p in packs):
            raise DecodeError(f"{what}: invalid pack id")
        if len(set(packs)) != len(packs):
            raise DecodeError(f"{what}: a pack is listed twice")
        return cls(m["run"], _nonneg(m["seq"], f"{what}: seq", MAX_SEQ), _digest(m["commit"], f"{what}: commit"),
                   tuple(packs))


def is_pack_id(p: str) -> bool:
    return len(p) == 32 and not p.strip(_HEX)  # strip leaves something iff a character is not lower-case hex


@dataclass(frozen=True, slots=True)
class StagedItem:
    entry: ItemEntry
    pack: str | None  # pack id holding the content, None for a loose object


@dataclass(frozen=True)
class Batch:
    """Evidence staged by one ``add``/``record`` call, written after its content is durable."""

    run: str
    items: tuple[StagedItem, ...]
    waivers: tuple[Waived, ...] = ()  # secret findings in these items that an allow-list waived

    def encode(self) -> bytes:
        rows: list[Value] = [[s.entry.name, s.entry.kind, s.entry.size, s.entry.blake3, s.pack] for s in self.items]
        v: dict[str, Value] = {"format": FORMAT, "items": rows, "run": self.run}
        if self.waivers:
            v["waivers"] = [w.to_value() for w in self.waivers]
        return encoding.encode_presorted(v)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "batch") -> Batch:
        fast = _batch_fast(data)
        if fast is not None:
            return fast
        m = encoding.decode_map(data, what, {"format": str, "items": list, "run": str}, {"waivers": list})
        _format(m["format"], what)
        if "waivers" in m and not m["waivers"]:
            raise DecodeError(f"{what}: empty waivers (omitted when there are none)")
        items = []
        for row in m["items"]:
            if not isinstance(row, list) or len(row) != 5:
                raise DecodeError(f"{what}: malformed item row")
            name, kind, size, digest, pack = row
            entry = ItemEntry.from_value({"blake3": digest, "kind": kind, "name": name, "size": size}, what)
            if pack is not None and not (isinstance(pack, str) and is_pack_id(pack)):
                raise DecodeError(f"{what}: invalid pack id")
            items.append(StagedItem(entry, pack))
        waivers = tuple(Waived.from_value(w, f"{what}: waiver") for w in m.get("waivers", ()))
        return cls(m["run"], tuple(items), waivers)


_ROWS_PER_CHECK = 4096
# Building the frozen, slotted ItemEntry/StagedItem of a decoded row by setting their slots directly: the same
# objects their dataclass __init__ makes (it only sets the fields), at half the cost per item of a large batch.
_new_object = object.__new__
_SET_ITEM = tuple(ItemEntry.__dict__[f].__set__ for f in ("name", "kind", "size", "blake3"))
_SET_STAGED = tuple(StagedItem.__dict__[f].__set__ for f in ("entry", "pack"))
_BATCH_HEAD = b"\x83" + encoding.pack_trusted("format") + encoding.pack_trusted(FORMAT) + encoding.pack_trusted("items")


def _batch_fast(data: bytes) -> Batch | None:
    """Decode a valid batch row by row, without building the whole decoded value (a 1M-item batch would take
    several hundred MB that way), checking canonical form one chunk of rows at a time.

    Returns None as soon as anything is unusual (wrong header, type, name, kind, size, digest, pack id,
    non-canonical bytes, trailing data): the caller then runs the full decoder, which accepts exactly the same
    batches and reports the problem. So this path can only ever accept what the full one accepts."""
    if data[:1] != b"\x83":  # canonical fixmap of 3 fields
        return None
    try:
        u = msgpack.Unpacker(io.BytesIO(data), raw=False, use_list=True, strict_map_key=True,
                             ext_hook=_no_ext, read_size=1 << 20, max_buffer_size=max(len(data), 1 << 20))
        pk = msgpack.Packer(use_bin_type=True, autoreset=False)
        if u.read_map_header() != 3 or u.unpack() != "format" or u.unpack() != FORMAT or u.unpack() != "items":
            return None
        start = u.tell()
        if data[:start] != _BATCH_HEAD:
            return None
        n = u.read_array_header()
        pk.pack_array_header(n)
        items: list[StagedItem] = []
        append = items.append
        packs: dict[str, str] = {}
        kind_of, u64, dsize, pack_row = _KIND_OF, _U64, DIGEST_SIZE, pk.pack
        new, set_name, set_kind, set_size, set_blake3, set_entry, set_pack = _new_object, *_SET_ITEM, *_SET_STAGED
        done = 0
        while True:
            chunk = min(_ROWS_PER_CHECK, n - done)
            for row in islice(u, chunk):
                if type(row) is not list or len(row) != 5:
                    return None
                name, kind, size, digest, pack = row
                kind = kind_of.get(kind) if type(kind) is str else None
                if (kind is None or type(name) is not str or type(size) is not int or not 0 <= size <= u64
                        or type(digest) is not bytes or len(digest) != dsize or name_problem(name) is not None):
                    return None
                if pack is not None:
                    known = packs.get(pack) if type(pack) is str else None
                    if known is None:
                        if type(pack) is not str or not is_pack_id(pack):
                            return None
                        known = packs[pack] = pack
                    pack = known
                pack_row(row)
                # StagedItem(ItemEntry(name, kind, size, digest), pack), every field checked above
                e = new(ItemEntry)
                set_name(e, name)
                set_kind(e, kind)
                set_size(e, size)
                set_blake3(e, digest)
                st = new(StagedItem)
                set_entry(st, e)
                set_pack(st, pack)
                append(st)
            done += chunk
            end = u.tell()
            if len(items) != done or pk.bytes() != data[start:end]:
                return None
            pk.reset()
            start = end
            if done == n:
                break
        start = u.tell()
        if u.unpack() != "run":
            return None
        run = u.unpack()
        if type(run) is not str or encoding.pack_trusted("run") + encoding.pack_trusted(run) != data[start:]:
            return None
    except Exception:  # anything malformed: the full decoder says what
        return None
    return Batch(run, tuple(items))


def _no_ext(code: int, data: bytes) -> Value:
    raise ValueError("extension type")


LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")  # S3 Object Lock retention modes, spelled as S3 spells them
MAX_LOCK_DAYS = 36500  # 100 years, S3's limit on a default retention period


@dataclass(frozen=True)
class StoreLock:
    """S3 Object Lock retention for every write-once object of a store: ``mode`` one of :data:`LOCK_MODES`,
    ``days`` in ``[1, MAX_LOCK_DAYS]``, counted from each object's write."""

    mode: str
    days: int

    def __post_init__(self) -> None:
        if self.mode not in LOCK_MODES:
            raise ValueError(f"object lock mode {self.mode!r}: expected one of {', '.join(LOCK_MODES)}")
        if type(self.days) is not int or not 1 <= self.days <= MAX_LOCK_DAYS:
            raise ValueError(f"object lock days {self.days!r}: expected an integer in [1, {MAX_LOCK_DAYS}]")

    def to_value(self) -> dict[str, Value]:
        return {"days": self.days, "mode": self.mode}

    @classmethod
    def from_value(cls, v: Value, what: str = "lock") -> StoreLock:
        m = check_fields(v, what, {"days": int, "mode": str})
        try:
            return cls(str(m["mode"]), _nonneg(m["days"], f"{what}: days"))
        except ValueError as exc:
            raise DecodeError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class StoreConfig:
    """Marks a location as a ledger store and names its format, and optionally the Object Lock retention its
    write-once objects get (S3 only). It has exactly one encoding per value, so any change to it is detected."""

    lock: StoreLock | None = None

    def encode(self) -> bytes:
        v: dict[str, Value] = {"format": FORMAT}
        if self.lock is not None:
            v["lock"] = self.lock.to_value()
        return encoding.encode(v)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "store config") -> StoreConfig:
        m = encoding.decode_map(data, what, {"format": str}, {"lock": dict})
        _format(m["format"], what)
        return cls(StoreLock.from_value(m["lock"], f"{what}: lock") if "lock" in m else None)
