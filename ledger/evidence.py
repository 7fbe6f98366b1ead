"""Recording evidence into an open run: files, directories and JSON records, staged as batches.

An ``add`` streams every file once (hashing as it copies), packs small items, stores large ones as loose objects,
and only then writes one batch object listing the items. The batch is what makes items part of the run, so a crash
at any point leaves either nothing visible or the whole batch. Names are validated, and bound once: the same name
with the same content is a no-op, with different content it is refused (exit 6).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from .digests import Digest, content_digest
from .errors import Contention, LedgerError, NotFound, Refused, StorageError, UsageError
from .layout import marker_key, sealing_key, staged_prefix
from .names import RECORD_KINDS, check_kind, check_name, check_run_id
from .objects import Batch, ItemEntry, StagedItem
from .packs import LOOSE_MIN, ContentIndex, PackWriter, loose_key
from .storage import Store

Progress = Callable[[int, int], None]  # (items done, bytes done)
_PROBE = 64 * 1024  # first read of every file: below malloc's mmap threshold, and most evidence files fit in it


@dataclass(frozen=True)
class AddResult:
    run: str
    added: list[ItemEntry]
    unchanged: list[ItemEntry]

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.added)


def staged_items(store: Store, run: str, cache: dict[str, Batch] | None = None) -> dict[str, StagedItem]:
    """Every item staged for ``run`` so far, by name; two batches binding a name to different content is refused.

    Batches are written once and never change, so a caller that reads the staging area twice (seal: before and
    after its fence) passes the same ``cache`` and only decodes the batches that are new."""
    out: dict[str, StagedItem] = {}
    for key in store.list(staged_prefix(run)):
        batch = cache.get(key) if cache is not None else None
        if batch is None:
            batch = Batch.from_bytes(store.get(key), f"run {run}: batch {key.rsplit('/', 1)[-1]}")
            if cache is not None:
                cache[key] = batch
        if batch.run != run:
            raise Refused(f"run {run}: batch {key} belongs to run {batch.run}")
        setdefault = out.setdefault
        for s in batch.items:
            prev = setdefault(s.entry.name, s)  # the first binding of a name stays
            if prev is not s and prev.entry != s.entry:
                raise Refused(f"run {run}: item {s.entry.name}: bound to two different contents "
                              f"(b3:{prev.entry.blake3.hex()[:16]} and b3:{s.entry.blake3.hex()[:16]}) by "
                              "concurrent adds")
    return out


def staged_batch_keys(store: Store, run: str) -> list[str]:
    return list(store.list(staged_prefix(run)))


def check_open(store: Store, run: str) -> None:
    """Refuse to add to a run that is sealed or being sealed (exit 4)."""
    if store.exists(marker_key(run)):
        raise Contention(f"run {run}: already sealed; sealed runs are immutable (start a new run)")
    if store.exists(sealing_key(run)):
        raise Contention(f"run {run}: a seal is in progress or was interrupted; re-run `ledger seal {run}`")


def _walk(root: str) -> Iterable[str]:
    """Every file under ``root``: a directory's files in name order, then its subdirectories in name order.

    Anything that is not a regular file -- a FIFO (opening one blocks forever), socket, device or dangling symbolic
    link -- is refused here, before any byte is stored. Like ``os.walk``, symbolic links to directories are not
    followed. ``DirEntry`` type checks cost no extra system call for plain files."""
    pending = [root]
    while pending:
        d = pending.pop()
        files, subdirs = [], []
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    subdirs.append(e.name)
                elif e.is_file():
                    files.append(e.name)
                elif e.is_symlink() and e.is_dir():
                    continue
                elif e.is_symlink() and not os.path.exists(e.path):
                    raise NotFound(f"{e.path}: no such file (dangling symbolic link)")
                else:
                    raise Refused(f"{e.path}: not a regular file or directory")
        prefix = d if d.endswith("/") else d + "/"  # os.path.join(d, fn), without its per-call overhead
        for fn in sorted(files):
            yield prefix + fn
        pending.extend(os.path.join(d, sd) for sd in sorted(subdirs, reverse=True))


def plan_paths(paths: list[str], as_name: str | None, run: str) -> list[tuple[str, str]]:
    """(name, filesystem path) for every file to add; all names validated before any byte is stored."""
    if as_name is not None and len(paths) != 1:
        raise UsageError("--as names one item or directory: give exactly one PATH with it")
    plan: list[tuple[str, str]] = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise NotFound(f"{p}: no such file or directory") from None
        except OSError as exc:
            raise StorageError(f"{p}: cannot read ({exc.strerror})") from None
        if stat.S_ISDIR(st.st_mode):
            try:
                # _walk's paths all start with p (joined onto it), so the name is the rest: what os.path.relpath
                # computes, at a fraction of the cost per file.
                cut = len(p)
                for f in _walk(p):
                    rel = f[cut:].lstrip("/").replace(os.sep, "/")
                    plan.append(((as_name + "/" + rel) if as_name else rel, f))
            except OSError as exc:
                raise StorageError(f"{exc.filename or p}: cannot read ({exc.strerror})") from None
        elif stat.S_ISREG(st.st_mode):
            plan.append((as_name or os.path.basename(os.path.normpath(p)), p))
        else:
            raise Refused(f"{p}: not a regular file or directory")
    seen: dict[str, str] = {}
    for name, path in plan:
        check_name(name, run)
        if name in seen:
            raise Refused(f"run {run}: item {name}: given twice ({seen[name]} and {path})")
        seen[name] = path
    return plan


class _Stager:
    """Collects one call's items: content into packs/loose objects, then one batch."""

    def __init__(self, store: Store, run: str) -> None:
        self.store, self.run = store, run
        self.existing = staged_items(store, run)
        self.index = ContentIndex(store)
        self._index_loaded = False
        self._loose: set[str] = set()  # hex digests of the loose objects, listed once (not one lookup per item)
        self.writer = PackWriter(store)
        self.items: list[StagedItem] = []
        self.unchanged: list[ItemEntry] = []

    def _known(self, digest: bytes) -> tuple[bool, str | None]:
        """Whether content is already stored (and in which pack), so it is not stored twice."""
        if self.writer.contains(digest):
            return True, None
        if not self._index_loaded:
            self.index.load_all()
            self._loose = {key.rsplit("/", 1)[-1] for key in self.store.list("objects/")}
            self._index_loaded = True
        loc = self.index.locate(digest)
        if loc is not None:
            return True, loc[0]
        if self._loose and digest.hex() in self._loose:
            return True, None
        return False, None

    def _bind(self, entry: ItemEntry, pack: str | None) -> None:
        prev = self.existing.get(entry.name)
        if prev is not None:
            if prev.entry == entry:
                self.unchanged.append(entry)
                return
            raise Refused(f"run {self.run}: item {entry.name}: already bound to different content "
                          f"(b3:{prev.entry.blake3.hex()[:16]}, {prev.entry.kind}, {prev.entry.size} bytes); "
                          "a name is bound once")
        self.items.append(StagedItem(entry, pack))

    def add_bytes(self, name: str, kind: str, data: bytes) -> None:
        digest = content_digest(data)
        if len(data) >= LOOSE_MIN:
            self._put_loose_bytes(digest, data)
            self._bind(ItemEntry(name, kind, len(data), digest), None)
            return
        pack = self.writer.pack_of(digest)  # already put in a pack by this call
        if pack is None:
            known, pack = self._known(digest)
            if not known:
                pack = self.writer.add(digest, data)
        self._bind(ItemEntry(name, kind, len(data), digest), pack)

    def _put_loose_bytes(self, digest: Digest, data: bytes) -> None:
        if not self.store.exists(loose_key(digest)):
            self.store.put_if_absent(loose_key(digest), data)

    def add_file(self, name: str, kind: str, path: str) -> int:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file") from None
        except OSError as exc:
            raise StorageError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            # Most evidence files are small: open, one read, close -- no fstat, no file object. A short read is
            # the end of a regular file; a full one means there may be more, so read it as before.
            data = os.read(fd, _PROBE)
            if len(data) < _PROBE:
                self.add_bytes(name, kind, data)
                return len(data)
            os.lseek(fd, 0, os.SEEK_SET)
            size = os.fstat(fd).st_size
            with open(fd, "rb", closefd=False) as f:
                if size < LOOSE_MIN:
                    data = f.read()
                    if len(data) < LOOSE_MIN:
                        self.add_bytes(name, kind, data)
                        return len(data)
                    f.seek(0)
                return self._stream_loose(name, kind, f, size)
        except OSError as exc:
            raise StorageError(f"{path}: cannot read ({exc.strerror})") from None
        finally:
            os.close(fd)

    def _stream_loose(self, name: str, kind: str, f: BinaryIO, size: int) -> int:
        """Copy a large file into the store once, hashing the bytes as they are written (never whole in memory)."""
        up = self.store.upload()
        try:
            raw, total = up.copy_from(f, size)  # the store hashes exactly what it stored
            digest = Digest(raw)
            # Bind first: a name already bound to other content is refused before the object is published.
            self._bind(ItemEntry(name, kind, total, digest), None)
            up.commit_if_absent(loose_key(digest))
        finally:
            up.abort()
        return total

    def commit(self) -> None:
        """Publish packs, then the batch; then make sure no seal started meanwhile that may have missed it."""
        opening = not self.items and not self.existing and not staged_batch_keys(self.store, self.run)
        if not self.items and not opening:
            self.writer.abort()
            return  # nothing new: re-adding bound names with the same content is a no-op
        self.writer.finish()
        check_open(self.store, self.run)
        key = f"{staged_prefix(self.run)}{time.time_ns():020d}-{secrets.token_hex(8)}.batch"
        self.store.put_if_absent(key, Batch(self.run, tuple(self.items)).encode())
        if self.store.exists(sealing_key(self.run)) or self.store.exists(marker_key(self.run)):
            raise Contention(f"run {self.run}: a seal started while these items were being added; they may not be "
                             "part of it (check `ledger ls` once the seal is done)")

    def abort(self) -> None:
        self.writer.abort()


def _require_store(store: Store) -> None:
    """The store exists and its config is a valid ledger/1 config (a damaged one is Corrupt, exit 1)."""
    from .layout import CONFIG
    from .objects import StoreConfig

    try:
        data = store.get(CONFIG)
    except NotFound:
        raise NotFound(f"store {store.url}: no ledger store here (run `ledger init`)") from None
    StoreConfig.from_bytes(data, f"store {store.url}: config")


def add_paths(store: Store, run: str, paths: list[str], kind: str = "file", as_name: str | None = None,
              progress: Progress | None = None) -> AddResult:
    check_run_id(run)
    check_kind(kind)
    _require_store(store)
    plan = plan_paths(paths, as_name, run)
    check_open(store, run)
    st = _Stager(store, run)
    try:
        done_bytes = 0
        for i, (name, path) in enumerate(plan, 1):
            done_bytes += st.add_file(name, kind, path)
            if progress is not None:
                progress(i, done_bytes)
        st.commit()
    except LedgerError:
        st.abort()
        raise
    except OSError as exc:
        st.abort()
        raise StorageError(f"store {store.url}: {exc.strerror or exc}") from None
    return AddResult(run, [s.entry for s in st.items], st.unchanged)


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def parse_record(text: str | bytes, kind: str, run: str) -> object:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(f"run {run}: {kind} record: not valid JSON ({exc})") from None
    if kind != "json" and not isinstance(value, dict):
        raise Refused(f"run {run}: {kind} record: must be a JSON object")
    return value


def default_record_name(kind: str, content: bytes) -> str:
    return f"records/{kind}/{content_digest(content).hex()[:16]}.json"


def record(store: Store, run: str, kind: str, text: str | bytes, name: str | None = None) -> AddResult:
    """Add one JSON record of ``kind``; its content is the canonical JSON (sorted keys, no spaces)."""
    check_run_id(run)
    check_kind(kind)
    if kind not in RECORD_KINDS:
        raise Refused(f"kind {kind!r} is not a record kind (use one of {', '.join(RECORD_KINDS)}; "
                      "`ledger add` takes files)")
    value = parse_record(text, kind, run)
    try:
        content = canonical_json(value)
    except ValueError as exc:
        raise Refused(f"run {run}: {kind} record: {exc}") from None
    item_name = check_name(name if name is not None else default_record_name(kind, content), run)
    _require_store(store)
    check_open(store, run)
    st = _Stager(store, run)
    try:
        st.add_bytes(item_name, kind, content)
        st.commit()
    except LedgerError:
        st.abort()
        raise
    return AddResult(run, [s.entry for s in st.items], st.unchanged)
