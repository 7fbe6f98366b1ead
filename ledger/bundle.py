"""Bundles: one file holding everything ``verify`` needs for one sealed run, verifiable with no store at all
(spec/bundle.md).

A bundle is a read-only store: the same keys and bytes as the store it was exported from (config, every commit slot
back to the genesis, the run's completion marker, packs, pack indexes, loose content, the sealed policy), laid out
as ``magic ‖ u64 header length ‖ header ‖ objects``. So ``verify`` runs unchanged over it, and a bundle can be
checked by the same numbered steps as a store. A metadata-only bundle leaves the content out (the content packs'
indexes and the typed records stay, so the tree and the criteria are still checked) and says so in its header.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from . import encoding
from .chain import slot_numbers
from .chainproofs import ConsistencyProof, prove_consistency
from .closure import existing_node_packs
from .digests import FORMAT
from .errors import DecodeError, NotFound, StorageError, UsageError
from .kinds import TYPED_KINDS
from .layout import CONFIG, is_immutable, marker_key, policy_key, slot_key
from .objects import SignedCommit
from .packs import index_key, loose_key, pack_key
from .storage import Store, Upload
from .storage.base import check_key
from .verify import open_sealed

MAGIC = b"LEDGERB1"
_HEAD = struct.Struct(">8sQ")
MAX_HEADER = 64 << 20
_COPY = 8 << 20


def export(store: Store, run: str, out: BinaryIO, content: bool = True,
           since: SignedCommit | None = None) -> dict[str, int]:
    """Write the bundle of sealed ``run``; returns counts for the caller to report. With ``since`` (a checkpoint
    the auditor holds), the chain starts at that commit and the bundle carries the proof that the run's commit log
    extends it, instead of every commit back to the genesis."""
    sealed = open_sealed(store, run)
    proof: bytes | None = None
    if since is not None:
        if since.body.seq > sealed.seq:
            sealed.index.close()
            raise UsageError(f"checkpoint #{since.body.seq} is newer than run {run}'s commit (#{sealed.seq}): "
                             "export from an older checkpoint")
        proof = prove_consistency(store, since, sealed.seq).encode()
    try:
        body = sealed.commit.body
        first = 0 if since is None else since.body.seq
        keys: list[str] = [CONFIG] + [slot_key(s) for s in range(first, sealed.seq + 1)]
        if slot_numbers(store)[: sealed.seq + 1] != list(range(sealed.seq + 1)):
            raise StorageError(f"run {run}: the chain below commit #{sealed.seq} is incomplete in the store")
        if sealed.marker is not None:
            keys.append(marker_key(run))
        if body.policy is not None:
            keys.append(policy_key(body.policy))
        node_packs = set(existing_node_packs(store, body.root))
        packs = sealed.marker.packs if sealed.marker is not None else tuple(sorted(node_packs))
        extra: dict[str, bytes] = {}
        items = 0
        for p in packs:
            keys.append(index_key(p))
            if content or p in node_packs:
                keys.append(pack_key(p))
        for e in sealed.items():
            items += 1
            loc = sealed.index.locate(e.blake3)
            if content and loc is None:
                keys.append(loose_key(e.blake3))
            elif not content and e.kind in TYPED_KINDS:
                extra[loose_key(e.blake3)] = sealed.read(e)  # criteria need the records (checked on read)
    finally:
        sealed.index.close()
    keys = sorted(set(keys) | set(extra))
    sizes = []
    for k in keys:
        n = len(extra[k]) if k in extra else store.size(k)
        if n is None:
            raise NotFound(f"run {run}: {k}: missing from the store")
        sizes.append(n)
    header = _header(run, content, keys, sizes, proof)
    out.write(_HEAD.pack(MAGIC, len(header)))
    out.write(header)
    for k, n in zip(keys, sizes, strict=True):
        if k in extra:
            out.write(extra[k])
            continue
        with store.open_read(k) as f:
            left = n
            while left:
                chunk = f.read(min(_COPY, left))
                if not chunk:
                    raise StorageError(f"{k}: shorter than its size while exporting")
                out.write(chunk)
                left -= len(chunk)
    return {"objects": len(keys), "items": items, "object_bytes": sum(sizes)}


def _header(run: str, content: bool, keys: list[str], sizes: list[int], since: bytes | None) -> bytes:
    objects: list[encoding.Value] = []
    off = 0
    for k, n in zip(keys, sizes, strict=True):
        objects.append([k, off, n])
        off += n
    h: dict[str, encoding.Value] = {"content": content, "format": FORMAT, "objects": objects, "run": run,
                                    "type": "bundle"}
    if since is not None:
        h["since"] = since  # a consistency proof from the auditor's checkpoint to the run's commit
    return encoding.encode(h)


class BundleStore(Store):
    """A bundle file opened as a read-only store. Every key and range is checked against the header before use;
    nothing is trusted beyond "these bytes are stored under this key" -- verify checks the bytes themselves."""

    remote = False

    def __init__(self, path: str) -> None:
        self.url = f"bundle:{path}"
        self.path = path
        try:
            self._f = open(path, "rb")  # noqa: SIM115 - lives as long as the store
        except FileNotFoundError:
            raise NotFound(f"bundle {path}: no such file") from None
        except OSError as exc:
            raise StorageError(f"bundle {path}: cannot read ({exc.strerror})") from None
        try:
            self._open(path)
        except BaseException:
            self._f.close()  # a refused bundle leaves no file open behind it
            raise

    def _open(self, path: str) -> None:
        total = os.fstat(self._f.fileno()).st_size
        head = self._f.read(_HEAD.size)
        if len(head) != _HEAD.size or head[:8] != MAGIC:
            raise DecodeError(f"bundle {path}: not a ledger bundle (bad magic)")
        hlen = _HEAD.unpack(head)[1]
        if hlen > MAX_HEADER or _HEAD.size + hlen > total:
            raise DecodeError(f"bundle {path}: header length {hlen} out of range (truncated?)")
        m = encoding.decode_map(self._f.read(hlen), f"bundle {path}: header",
                                {"content": bool, "format": str, "objects": list, "run": str, "type": str},
                                {"since": bytes})
        if m["format"] != FORMAT or m["type"] != "bundle":
            raise DecodeError(f"bundle {path}: not a {FORMAT} bundle")
        self.run: str = m["run"]
        self.content: bool = m["content"]
        self.since: ConsistencyProof | None = (
            ConsistencyProof.from_bytes(m["since"], f"bundle {path}: consistency proof") if "since" in m else None)
        base = _HEAD.size + hlen
        self._index: dict[str, tuple[int, int]] = {}
        off = 0
        prev = ""
        for o in m["objects"]:
            if not (isinstance(o, list) and len(o) == 3 and isinstance(o[0], str) and type(o[1]) is int
                    and type(o[2]) is int):
                raise DecodeError(f"bundle {path}: malformed object entry")
            key, start, n = o
            try:
                check_key(key)
            except StorageError:
                raise DecodeError(f"bundle {path}: invalid key {key!r}") from None
            if not is_immutable(key) or (key.startswith("runs/") and key != marker_key(self.run)):
                raise DecodeError(f"bundle {path}: unexpected entry {key!r} (a bundle holds only a sealed run's "
                                  "objects)")
            if key <= prev or start != off or n < 0:
                raise DecodeError(f"bundle {path}: objects not in order, overlapping or with gaps at {key!r}")
            prev, off = key, start + n
            self._index[key] = (base + start, n)
        if base + off != total:
            raise DecodeError(f"bundle {path}: {total - base - off:+d} bytes against its header (truncated or padded)")
        if CONFIG not in self._index:  # every bundle starts with the store's config (bundle.md): this one is damaged
            raise DecodeError(f"bundle {path}: no store config in it (damaged: bundle.md lists it first)")
        self._keys = list(self._index)

    def close(self) -> None:
        self._f.close()

    def exists_store(self) -> bool:
        return True

    def create(self) -> None:
        raise StorageError(f"{self.url}: a bundle is read-only")

    def _loc(self, key: str) -> tuple[int, int]:
        loc = self._index.get(key)
        if loc is None:
            raise NotFound(f"{key}: not in the bundle")
        return loc

    def get(self, key: str) -> bytes:
        start, n = self._loc(key)
        return os.pread(self._f.fileno(), n, start)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        start, n = self._loc(key)
        if offset < 0 or length < 0 or offset + length > n:
            raise StorageError(f"{key}: range {offset}+{length} beyond its {n} bytes (truncated)")
        return os.pread(self._f.fileno(), length, start + offset)

    def open_read(self, key: str) -> BinaryIO:
        if self._loc(key)[1] <= _COPY:
            return io.BytesIO(self.get(key))
        return io.BufferedReader(_Slice(self._f.fileno(), *self._loc(key)), _COPY)

    def size(self, key: str) -> int | None:
        loc = self._index.get(key)
        return None if loc is None else loc[1]

    def put_if_absent(self, key: str, data: bytes) -> bool:
        raise StorageError(f"{self.url}: a bundle is read-only")

    def compare_and_swap(self, key: str, expected: bytes | None, data: bytes) -> bool:
        raise StorageError(f"{self.url}: a bundle is read-only")

    def delete(self, key: str) -> None:
        raise StorageError(f"{self.url}: a bundle is read-only")

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        return iter([k for k in self._keys if k.startswith(prefix) and (start_after is None or k > start_after)])

    def upload(self, key: str | None = None) -> Upload:
        raise StorageError(f"{self.url}: a bundle is read-only")


class _Slice(io.RawIOBase):
    """A read-only stream over one object of the bundle (large content is never read whole)."""

    def __init__(self, fd: int, start: int, n: int) -> None:
        self._fd, self._pos, self._end = fd, start, start + n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._end - self._pos)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._pos)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)
