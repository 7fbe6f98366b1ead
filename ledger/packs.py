"""Content storage: small objects packed into pack files with a sorted index, large ones stored loose.

Packing keeps per-item overhead low (one file, one fsync per ``add``; on S3, one PUT per many items), as git and
restic do. A pack is the plain concatenation of object bytes; its index lists (digest, offset, size) sorted by
digest and ends with a BLAKE3 checksum over the index, so a damaged index is reported as such (spec/store.md).
Objects are found by digest; every byte read is re-hashed by whoever relies on it.
"""

from __future__ import annotations

import operator
import secrets
import struct
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice, starmap

import blake3

from .digests import CTX_PACK_INDEX, DIGEST_SIZE, Digest, typed_digest
from .errors import Corrupt, NotFound
from .storage import Store, Upload
from .storage.base import RangeReader

INDEX_MAGIC = b"ledgerix"
_REC = struct.Struct(">32sQQ")
_HEAD = struct.Struct(">8s16sQ")
MAX_PACK_BYTES = 256 * 1024 * 1024
LOOSE_MIN = 1024 * 1024  # items at least this large are stored as loose objects


def pack_key(pack_id: str) -> str:
    return f"packs/{pack_id}.pack"


def index_key(pack_id: str) -> str:
    return f"packs/{pack_id}.idx"


def loose_key(digest: bytes) -> str:
    h = digest.hex()
    return f"objects/{h[:2]}/{h}"


def new_pack_id() -> str:
    return secrets.token_hex(16)


def encode_index(pack_id: str, records: Iterable[tuple[bytes, int, int]]) -> bytes:
    recs = sorted(records)
    body = [_HEAD.pack(INDEX_MAGIC, bytes.fromhex(pack_id), len(recs))]
    body.extend(starmap(_REC.pack, recs))
    data = b"".join(body)
    return data + typed_digest(CTX_PACK_INDEX, data)


def decode_index(pack_id: str, data: bytes) -> dict[bytes, tuple[int, int]]:
    """Parse and check a pack index; any damage is :class:`Corrupt` naming the pack."""
    what = _check_index(pack_id, data)
    out: dict[bytes, tuple[int, int]] = {}
    prev = b""
    for d, off, size in _REC.iter_unpack(data[_HEAD.size:-DIGEST_SIZE]):
        if d <= prev:
            raise Corrupt(f"{what}: records not sorted or duplicated")
        prev = d
        out[d] = (off, size)
    return out


def _check_index(pack_id: str, data: bytes) -> str:
    """Every check of :func:`decode_index` except the records' order; returns how errors name the index."""
    what = f"pack index {pack_id}"
    if len(data) < _HEAD.size + DIGEST_SIZE:
        raise Corrupt(f"{what}: truncated ({len(data)} bytes)")
    magic, pid, count = _HEAD.unpack_from(data)
    if magic != INDEX_MAGIC:
        raise Corrupt(f"{what}: bad magic")
    if len(data) != _HEAD.size + count * _REC.size + DIGEST_SIZE:
        raise Corrupt(f"{what}: size {len(data)} does not match its {count} records (truncated or padded)")
    # typed_digest(CTX_PACK_INDEX, data[:-DIGEST_SIZE]), without copying a large index to hash it
    if blake3.blake3(memoryview(data)[:-DIGEST_SIZE], derive_key_context=CTX_PACK_INDEX).digest() \
            != data[-DIGEST_SIZE:]:
        raise Corrupt(f"{what}: checksum mismatch")
    if pid.hex() != pack_id:
        raise Corrupt(f"{what}: belongs to pack {pid.hex()}")
    return what


@dataclass
class PackWriter:
    """Streams objects into pack files (rolling over at MAX_PACK_BYTES); nothing is visible until ``finish``,
    which publishes each pack and then its index."""

    store: Store
    fixed_ids: list[str] | None = None  # deterministic ids (tree-node packs), else random
    packs: list[str] = field(default_factory=list)
    _up: Upload | None = None
    _id: str = ""
    _off: int = 0
    _recs: list[tuple[bytes, int, int]] = field(default_factory=list)
    _done: list[tuple[str, Upload, list[tuple[bytes, int, int]]]] = field(default_factory=list)
    _where: dict[bytes, str] = field(default_factory=dict)

    def _next_id(self) -> str:
        if self.fixed_ids is not None:
            return self.fixed_ids[len(self.packs)]
        return new_pack_id()

    def contains(self, digest: bytes) -> bool:
        return digest in self._where

    def pack_of(self, digest: bytes) -> str | None:
        """The pack this writer already put ``digest`` in, or None."""
        return self._where.get(digest)

    def add(self, digest: bytes, data: bytes) -> str:
        """Append an object (once per digest); returns the id of the pack that holds it."""
        known = self._where.get(digest)
        if known is not None:
            return known
        if self._up is None or self._off + len(data) > MAX_PACK_BYTES and self._off > 0:
            self._roll()
        assert self._up is not None
        self._up.write(data)
        self._recs.append((digest, self._off, len(data)))
        self._off += len(data)
        self._where[digest] = self._id
        return self._id

    def _roll(self) -> None:
        if self._up is not None:
            self._done.append((self._id, self._up, self._recs))
        self._id = self._next_id()
        self.packs.append(self._id)
        self._up, self._off, self._recs = self.store.upload(pack_key(self._id)), 0, []

    def finish(self) -> list[str]:
        """Publish every pack, then its index; an index is only ever visible after its pack."""
        if self._up is not None:
            self._done.append((self._id, self._up, self._recs))
            self._up = None
        for pid, up, recs in self._done:
            up.commit_if_absent(pack_key(pid))
            self.store.put_if_absent(index_key(pid), encode_index(pid, recs))
        self._done = []
        return list(self.packs)

    def abort(self) -> None:
        for _, up, _ in self._done:
            up.abort()
        if self._up is not None:
            self._up.abort()
        self._done, self._up = [], None


def index_records(store: Store, pack_id: str) -> Iterator[tuple[bytes, int, int]]:
    """Every (digest, offset, size) record of a pack's index, checked as :meth:`ContentIndex.load` checks them
    (Corrupt when missing or damaged), streamed instead of collected: for callers that only scan."""
    try:
        data = store.get(index_key(pack_id))
    except NotFound:
        raise Corrupt(f"pack index {pack_id}: missing") from None
    what = _check_index(pack_id, data)
    prev = b""
    for d, off, size in _REC.iter_unpack(memoryview(data)[_HEAD.size:-DIGEST_SIZE]):
        if d <= prev:
            raise Corrupt(f"{what}: records not sorted or duplicated")
        prev = d
        yield d, off, size


_LOC = struct.Struct(">IQQ")  # pack slot, offset, size: what follows the digest in a ContentIndex key
_DIGEST_OF = operator.itemgetter(slice(0, DIGEST_SIZE))


SMALL_INDEX = 1 << 18  # objects up to which a ContentIndex is a plain dict (fastest); past it, compact


class ContentIndex:
    """Where objects live: the indexes of a chosen set of packs, then loose objects by digest.

    Up to SMALL_INDEX objects a dict of (pack, offset, size). Past that it turns compact, for runs of millions of
    items: one sorted list of 52-byte keys (digest, pack slot, offset, size) searched by bisection, about 95 bytes
    an object instead of about 230. Either way, when several packs hold the same object the one loaded first is
    used (compact keys sort by pack slot after the digest)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._map: dict[bytes, tuple[str, int, int]] | None = {}  # None once compact
        self._keys: list[bytes] = []
        self._unsorted = False
        self._ids: list[str] = []  # pack slot -> pack id
        self._loaded: set[str] = set()
        self._readers: dict[str, RangeReader] = {}

    def load(self, pack_id: str) -> None:
        if pack_id in self._loaded:
            return
        try:
            data = self.store.get(index_key(pack_id))
        except NotFound:
            raise Corrupt(f"pack index {pack_id}: missing") from None
        if self._map is not None:
            count = (len(data) - _HEAD.size - DIGEST_SIZE) // _REC.size
            if len(self._map) + count <= SMALL_INDEX:
                where = self._map
                for digest, (off, size) in decode_index(pack_id, data).items():
                    where.setdefault(digest, (pack_id, off, size))
                self._ids.append(pack_id)
                self._loaded.add(pack_id)
                return
            self._compact()
        what = _check_index(pack_id, data)
        slot = _LOC.pack(len(self._ids), 0, 0)[:4]
        d, r, end = DIGEST_SIZE, _REC.size, len(data) - DIGEST_SIZE
        keys = [data[o:o + d] + slot + data[o + d:o + r] for o in range(_HEAD.size, end, r)]
        # strictly increasing digests, compared in C (decode_index's check, without building its dict)
        if not all(map(operator.lt, map(_DIGEST_OF, keys), map(_DIGEST_OF, islice(keys, 1, None)))):
            raise Corrupt(f"{what}: records not sorted or duplicated")
        self._unsorted = self._unsorted or bool(self._keys)
        self._keys.extend(keys)
        self._ids.append(pack_id)
        self._loaded.add(pack_id)

    def _compact(self) -> None:
        assert self._map is not None
        slots = {pid: i for i, pid in enumerate(self._ids)}
        self._keys = sorted(d + _LOC.pack(slots[pid], off, size) for d, (pid, off, size) in self._map.items())
        self._unsorted, self._map = False, None

    def load_all(self) -> None:
        for key in self.store.list("packs/"):
            if key.endswith(".idx"):
                self.load(key[len("packs/"):-len(".idx")])

    def locate(self, digest: bytes) -> tuple[str, int, int] | None:
        """(pack id, offset, size) of ``digest`` in the loaded packs, or None."""
        if self._map is not None:
            return self._map.get(digest)
        if self._unsorted:
            self._keys.sort()  # a merge of already-sorted runs, one per pack loaded since the last lookup
            self._unsorted = False
        keys = self._keys
        i = bisect_left(keys, digest)
        if i == len(keys) or len(digest) != DIGEST_SIZE or not keys[i].startswith(digest):
            return None
        slot, off, size = _LOC.unpack_from(keys[i], DIGEST_SIZE)
        return self._ids[slot], off, size

    def has(self, digest: bytes) -> bool:
        return self.locate(digest) is not None or self.store.exists(loose_key(digest))

    def read(self, digest: Digest) -> bytes:
        """The bytes stored for ``digest`` (not yet re-hashed: callers that rely on them check)."""
        loc = self.locate(digest)
        if loc is not None:
            return self.read_located(loc)
        return self.store.get(loose_key(digest))

    def read_located(self, loc: tuple[str, int, int]) -> bytes:
        """The bytes at a location :meth:`locate` returned (saves a second lookup when the caller has one)."""
        pid, off, size = loc
        reader = self._readers.get(pid)
        if reader is None:
            reader = self._readers[pid] = self.store.range_reader(pack_key(pid))
        return reader.read_at(off, size)

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers.clear()
