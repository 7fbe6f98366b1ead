"""Recording evidence into an open run: files, directories and JSON records, staged as batches.

An ``add`` streams every file once (hashing as it copies), packs small items, stores large ones as loose objects,
and only then writes one batch object listing the items. The batch is what makes items part of the run, so a crash
at any point leaves either nothing visible or the whole batch. Names are validated, and bound once: the same name
with the same content is a no-op, with different content it is refused (exit 6).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from .digests import Digest, content_digest, hash_stream, new_content_hasher
from .errors import Contention, LedgerError, NotFound, Refused, StorageError, UsageError
from .kinds import (
    MAX_RECORD_BYTES,
    TYPED_KINDS,
    RecordError,
    canonical_json,
    checked_default_name,
    load_record,
    parse_records,
    validate,
)
from .layout import CONFIG, batch_key, batch_seq, is_immutable, marker_key, run_prefix, sealing_key, staged_prefix
from .names import RECORD_KINDS, check_kind, check_name, check_run_id
from .objects import Batch, ItemEntry, StagedItem, StoreConfig, Waived
from .packs import LOOSE_MIN, ContentIndex, PackWriter, index_key, loose_key, pack_key
from .storage import Store, Upload, as_s3

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from .secrets import Scanner, Waiver

Progress = Callable[[int, int], None]  # (items done, bytes done)
_MAX_PENDING = 16  # large objects whose publication (fsync + link) may wait while the next files are copied
_SCAN_BATCH_BYTES = 4 << 20  # small items held (never stored) until their batch has been scanned for secrets
_SCAN_BATCH_ITEMS = 4096
_PROBE = 64 * 1024
SCAN_CHUNK = 8 << 20  # first read of every file: below malloc's mmap threshold, and most evidence files fit in it


@dataclass(frozen=True)
class AddResult:
    run: str
    added: list[ItemEntry]
    unchanged: list[ItemEntry]

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.added)


_MAX_SCAN_THREADS = 8  # each holds up to two 8 MiB chunks in flight: at most ~150 MiB of buffers per large file


def _scan_threads() -> int:
    """Prefilter threads for one large file: one per CPU this process may run on, at least two, at most
    _MAX_SCAN_THREADS. The scan, not hashing or copying, bounds how fast a large file is added, and it scales with
    cores (tools/bench_secrets.py)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 2
    return min(_MAX_SCAN_THREADS, max(2, cpus))


def _read_batch(store: Store, run: str, key: str, cache: dict[str, Batch] | None) -> Batch:
    batch = cache.get(key) if cache is not None else None
    if batch is None:
        if batch_seq(key) is None:
            raise Refused(f"run {run}: unexpected object {key} in the staging area")
        batch = Batch.from_bytes(store.get(key), f"run {run}: batch {key.rsplit('/', 1)[-1]}")
        if cache is not None:
            cache[key] = batch
    if batch.run != run:
        raise Refused(f"run {run}: batch {key} belongs to run {batch.run}")
    return batch


def _conflict(accepted: dict[str, StagedItem], batch: Batch) -> tuple[StagedItem, StagedItem] | None:
    """The first item of ``batch`` whose name an accepted batch bound to other content, with that binding."""
    for s in batch.items:
        prev = accepted.get(s.entry.name)
        if prev is not None and prev.entry != s.entry:
            return prev, s
    return None


def _accept(accepted: dict[str, StagedItem], batch: Batch) -> bool:
    if _conflict(accepted, batch) is not None:
        return False
    setdefault = accepted.setdefault
    for s in batch.items:
        setdefault(s.entry.name, s)
    return True


def staged_items(store: Store, run: str, cache: dict[str, Batch] | None = None,
                 upto: str | None = None) -> dict[str, StagedItem]:
    """Every item staged for ``run``, by name (optionally only from batches before the key ``upto``).

    Batches are numbered slots taken in write order, and each is accepted whole or not at all: a batch that binds a
    name an earlier accepted batch bound to other content is rejected (its writer was told so, exit 6, and the
    batch is ignored for good). So a name is bound once even when concurrent adds race, and a refused add leaves
    nothing that counts. Batches never change, so a caller reading the staging area twice passes the same
    ``cache`` and only decodes new batches."""
    out: dict[str, StagedItem] = {}
    for key in store.list(staged_prefix(run)):
        if upto is not None and key >= upto:
            break
        _accept(out, _read_batch(store, run, key, cache))
    return out


def staged_batch_keys(store: Store, run: str) -> list[str]:
    return list(store.list(staged_prefix(run)))


def require_run(store: Store, run: str, staged: dict[str, StagedItem]) -> None:
    """NotFound (exit 3) unless the run exists: it has staged items, or anything at all under its prefix."""
    if not staged and next(iter(store.list(run_prefix(run))), None) is None:
        raise NotFound(f"run {run}: no such run")


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

    def __init__(self, store: Store, run: str, scanner: Scanner | None = None) -> None:
        self.store, self.run = store, run
        self.scanner = scanner  # None: no secret scanning (only internal callers that store no evidence)
        self.waivers: list[Waived] = []  # waived secret findings of the items this call binds
        self._queue: list[tuple[str, str, bytes]] = []  # small items awaiting their batch's secret scan
        self._queued = 0
        self._batches: dict[str, Batch] = {}
        self.existing = staged_items(store, run, self._batches)
        self.index = ContentIndex(store)
        self._index_loaded = False
        self._loose: set[str] = set()  # hex digests of the loose objects, listed once (not one lookup per item)
        self.writer = PackWriter(store)
        self.items: list[StagedItem] = []
        self.unchanged: list[ItemEntry] = []
        self._pending: list[tuple[Upload, Future[bool]]] = []  # large objects copied and bound, being published
        self._publisher: ThreadPoolExecutor | None = None
        self._relied: set[str] = set()  # other writers' packs this stager relies on, made durable once

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
            self._rely_on(loc[0])
            return True, loc[0]
        if self._loose and digest.hex() in self._loose:
            self.store.make_durable(loose_key(Digest(digest)))
            return True, None
        return False, None

    def _rely_on(self, pack: str) -> None:
        """Another writer's pack this batch will name: durable before the batch is (once per pack)."""
        if pack not in self._relied:
            self.store.make_durable(pack_key(pack))
            self.store.make_durable(index_key(pack))
            self._relied.add(pack)

    def _bind(self, entry: ItemEntry, pack: str | None, waived: Sequence[Waived] = ()) -> None:
        prev = self.existing.get(entry.name)
        if prev is not None:
            if prev.entry == entry:
                self.unchanged.append(entry)
                return
            raise Refused(f"run {self.run}: item {entry.name}: already bound to different content "
                          f"(b3:{prev.entry.blake3.hex()[:16]}, {prev.entry.kind}, {prev.entry.size} bytes); "
                          "a name is bound once")
        self.items.append(StagedItem(entry, pack))
        self.waivers.extend(waived)

    def _scan(self, name: str, data: bytes) -> list[Waived]:
        """Refuse content holding a secret (exit 6) before any byte of it is stored; the waived findings."""
        if self.scanner is None:
            return []
        with self._refusing():
            return [_waived(w) for w in self.scanner.check_bytes(name, data)]

    def _scan_file(self, name: str, f: BinaryIO, size: int) -> tuple[list[Waived], Digest, int]:
        """Scan a large file for secrets, hashing the bytes scanned: whatever is stored afterwards must hash the
        same, so a file that changes between the scan and the copy is refused rather than stored unscanned.

        The prefilter runs on one thread per CPU (:meth:`Scanner.scan_parallel`) while this thread reads and
        hashes -- on one thread: the prefilter needs the CPUs far more than BLAKE3 does. A line longer than
        several chunks sends the whole file to the sequential scan, which must then read the same bytes."""
        scanner = self.scanner
        if scanner is None:
            digest, total = hash_stream(f, size)
            f.seek(0)
            return [], digest, total
        hasher = new_content_hasher()
        with self._refusing():
            done = scanner.scan_parallel(name, f, hasher, _scan_threads())
        f.seek(0)
        if done is None:
            waived, again = self._scan_exact(name, f, size)
            f.seek(0)
            if again[0] != hasher.digest():  # the sequential scan read other bytes than were hashed
                raise StorageError(f"run {self.run}: item {name}: the file changed while it was being added")
            return waived, Digest(hasher.digest()), again[1]
        waivers, total = done
        return [_waived(w) for w in waivers], Digest(hasher.digest()), total

    def _scan_exact(self, name: str, f: BinaryIO, size: int) -> tuple[list[Waived], tuple[bytes, int]]:
        """The sequential scan from the file's start; also the digest and length of what it read."""
        assert self.scanner is not None
        scan = self.scanner.stream(name)
        hasher = new_content_hasher(size)
        total = 0
        with self._refusing():
            while chunk := f.read(SCAN_CHUNK):
                hasher.update(chunk)
                total += len(chunk)
                scan.update(chunk)
            return [_waived(w) for w in scan.finish()], (hasher.digest(), total)

    @contextlib.contextmanager
    def _refusing(self) -> Iterator[None]:
        """A secret found in this call's evidence refuses it (exit 6), the message naming the run."""
        from .secrets import SecretFound

        try:
            yield
        except SecretFound as exc:
            raise Refused(f"run {self.run}: {exc}") from None

    def add_bytes(self, name: str, kind: str, data: bytes) -> None:
        if kind in TYPED_KINDS and len(data) > MAX_RECORD_BYTES:
            raise RecordError(f"run {self.run}: item {name}: {len(data)} bytes: larger than a {kind} record can be "
                              f"({MAX_RECORD_BYTES} bytes)")
        if kind in TYPED_KINDS:
            load_record(kind, data, f"run {self.run}: item {name}")  # a typed item is a valid record of its kind
        if self.scanner is not None and len(data) < LOOSE_MIN:
            # Small items are scanned in batches (one prefilter search over many joined by newlines), and stored
            # only once their batch is found clean: nothing of them reaches the store before that.
            self._queue.append((name, kind, data))
            self._queued += len(data) + 1
            if self._queued >= _SCAN_BATCH_BYTES or len(self._queue) >= _SCAN_BATCH_ITEMS:
                self._flush_scans()
            return
        self._store_bytes(name, kind, data, self._scan(name, data))

    def _flush_scans(self) -> None:
        queue, self._queue, self._queued = self._queue, [], 0
        if not queue:
            return
        assert self.scanner is not None
        clean = self.scanner.clean(b"\n".join(d for _, _, d in queue))
        for name, kind, data in queue:
            self._store_bytes(name, kind, data, [] if clean else self._scan(name, data))

    def _store_bytes(self, name: str, kind: str, data: bytes, waived: list[Waived]) -> None:
        digest = content_digest(data)
        if len(data) >= LOOSE_MIN:
            self._put_loose_bytes(digest, data)
            self._bind(ItemEntry(name, kind, len(data), digest), None, waived)
            return
        pack = self.writer.pack_of(digest)  # already put in a pack by this call
        if pack is None:
            known, pack = self._known(digest)
            if not known:
                pack = self.writer.add(digest, data)
        self._bind(ItemEntry(name, kind, len(data), digest), pack, waived)

    def _put_loose_bytes(self, digest: Digest, data: bytes) -> None:
        if not self.store.exists(loose_key(digest)):
            self.store.put_if_absent(loose_key(digest), data)
        else:
            self.store.make_durable(loose_key(digest))

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
                if kind in TYPED_KINDS:
                    if size > MAX_RECORD_BYTES:
                        raise RecordError(f"run {self.run}: item {name}: {size} bytes: larger than a {kind} "
                                          f"record can be ({MAX_RECORD_BYTES} bytes)")
                    data = f.read()
                    self.add_bytes(name, kind, data)
                    return len(data)
                if size < LOOSE_MIN:
                    data = f.read()
                    if len(data) < LOOSE_MIN:
                        self.add_bytes(name, kind, data)
                        return len(data)
                    f.seek(0)
                waived, digest, scanned = self._scan_file(name, f, size)
                return self._stream_loose(name, kind, f, size, waived, (digest, scanned))
        except OSError as exc:
            raise StorageError(f"{path}: cannot read ({exc.strerror})") from None
        finally:
            os.close(fd)

    def _stream_loose(self, name: str, kind: str, f: BinaryIO, size: int, waived: Sequence[Waived],
                      scanned: tuple[Digest, int]) -> int:
        """Copy a large file into the store once, hashing the bytes as they are written (never whole in memory)."""
        if self.store.remote:
            return self._send_loose(name, kind, f, size, waived, scanned)
        up = self.store.upload()
        try:
            raw, total = up.copy_from(f, size)  # the store hashes exactly what it stored
            digest = Digest(raw)
            if (digest, total) != scanned:
                raise StorageError(f"run {self.run}: item {name}: the file changed while it was being added")
            # Bind first: a name already bound to other content is refused before the object is published.
            self._bind(ItemEntry(name, kind, total, digest), None, waived)
        except BaseException:
            up.abort()
            raise
        self._publish_later(up, loose_key(digest))
        return total

    def _publish_later(self, up: Upload, key: str) -> None:
        """Publish on a helper thread (fsync and link locally, the final request remotely), so the next file is
        copied meanwhile; commit() waits for every publication before it writes the batch that refers to them."""
        if self._publisher is None:
            from concurrent.futures import ThreadPoolExecutor

            self._publisher = ThreadPoolExecutor(1, thread_name_prefix="ledger-publish")
        self._pending.append((up, self._publisher.submit(_publish, up, key)))
        if len(self._pending) > _MAX_PENDING:
            self._pending.pop(0)[1].result()

    def _send_loose(self, name: str, kind: str, f: BinaryIO, size: int, waived: Sequence[Waived],
                    scanned: tuple[Digest, int]) -> int:
        """Remote stores: the scan pass hashed the file (reading a local file is far cheaper than sending it), send
        only content the store does not hold yet, and hash again what is sent, so a file that changes meanwhile is
        caught."""
        digest, total = scanned
        self._bind(ItemEntry(name, kind, total, digest), None, waived)
        key = loose_key(digest)
        if self.store.exists(key):
            return total
        f.seek(0)
        up = self.store.upload(key)
        try:
            raw, sent = up.copy_from(f, size)
            if raw != digest or sent != total:
                raise StorageError(f"run {self.run}: item {name}: the file changed while it was being added")
        except BaseException:
            up.abort()
            raise
        self._publish_later(up, key)
        return total

    def _publish_pending(self) -> None:
        """Wait until every large object copied so far is published; the first failure is raised."""
        pending, self._pending = self._pending, []
        first: BaseException | None = None
        for _, fut in pending:
            try:
                fut.result()
            except BaseException as exc:  # wait for the others all the same, then report the first
                first = first or exc
        self._stop_publisher()
        if first is not None:
            raise first

    def _stop_publisher(self) -> None:
        if self._publisher is not None:
            self._publisher.shutdown(wait=True)
            self._publisher = None

    def commit(self) -> None:
        """Publish packs, then the batch; then make sure no seal started meanwhile that may have missed it."""
        self._flush_scans()
        self._publish_pending()
        opening = not self.items and not self.existing and not staged_batch_keys(self.store, self.run)
        if not self.items and not opening:
            self.writer.abort()
            return  # nothing new: re-adding bound names with the same content is a no-op
        self.writer.finish()
        check_open(self.store, self.run)
        batch = Batch(self.run, tuple(self.items), tuple(self.waivers))
        data = batch.encode()
        keys = staged_batch_keys(self.store, self.run)
        seq = (batch_seq(keys[-1]) or 0) + 1 if keys else 0
        while not self.store.put_if_absent(batch_key(self.run, seq), data):
            seq += 1  # another add took this slot: take the next (slots are write order)
        key = batch_key(self.run, seq)
        # Decide against every batch written before ours: they are all there (slots are taken in order) and final.
        earlier = staged_items(self.store, self.run, self._batches, upto=key)
        conflict = _conflict(earlier, batch)
        if conflict is not None:
            prev, mine = conflict
            raise Refused(f"run {self.run}: item {mine.entry.name}: bound to other content by a concurrent add "
                          f"(b3:{prev.entry.blake3.hex()[:16]}); a name is bound once, and nothing of this call "
                          "was added")
        if self.store.exists(sealing_key(self.run)) or self.store.exists(marker_key(self.run)):
            raise Contention(f"run {self.run}: a seal started while these items were being added; they may not be "
                             "part of it (check `ledger ls` once the seal is done)")

    def abort(self) -> None:
        pending, self._pending = self._pending, []
        for up, fut in pending:
            if fut.cancel():
                up.abort()  # never started; a started one aborts its upload itself when done
        self._stop_publisher()
        self.writer.abort()


def _waived(w: Waiver) -> Waived:
    r = w.rule
    return Waived(w.finding.item, w.finding.line, w.finding.detector, r.item, r.reason, r.line, r.detector)


def _publish(up: Upload, key: str) -> bool:
    try:
        return up.commit_if_absent(key)
    finally:
        up.abort()


def _require_store(store: Store) -> None:
    """The store exists and its config is a valid ledger/1 config (a damaged one is Corrupt, exit 1). Every command
    that writes comes through here, so this is where an S3 store learns the config's Object Lock retention."""
    try:
        data = store.get(CONFIG)
    except NotFound:
        store.exists_store()  # a missing bucket or directory is named as such
        raise NotFound(f"store {store.url}: no ledger store here (run `ledger init`)") from None
    apply_lock(store, StoreConfig.from_bytes(data, f"store {store.url}: config"))


def apply_lock(store: Store, config: StoreConfig) -> None:
    """On an S3 store whose config sets Object Lock, make every later write of a write-once key WORM
    (``layout.is_immutable``); staged batches and the sealing fence stay deletable. Other stores: nothing."""
    if config.lock is None:
        return
    s3 = as_s3(store)
    if s3 is not None:
        s3.lock(config.lock.mode, config.lock.days, is_immutable)


def add_paths(store: Store, run: str, paths: list[str], kind: str = "file", as_name: str | None = None,
              progress: Progress | None = None, scanner: Scanner | None = None) -> AddResult:
    check_run_id(run)
    check_kind(kind)
    _require_store(store)
    plan = plan_paths(paths, as_name, run)
    check_open(store, run)
    st = _Stager(store, run, scanner)
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


def add_contents(store: Store, run: str, contents: dict[str, tuple[str, bytes]], scanner: Scanner | None = None
                 ) -> AddResult:
    """Add items given as bytes, ``{name: (kind, content)}``, in one batch: all or nothing, each name checked, a
    typed item validated as a record of its kind, everything scanned for secrets -- what a library that produces
    evidence in memory (the Kafka receipt tracker) needs, without temporary files."""
    check_run_id(run)
    for name, (kind, _) in contents.items():
        check_kind(kind)
        check_name(name, run)
    _require_store(store)
    check_open(store, run)
    st = _Stager(store, run, scanner)
    try:
        for name, (kind, content) in contents.items():
            st.add_bytes(name, kind, content)
        st.commit()
    except LedgerError:
        st.abort()
        raise
    return AddResult(run, [s.entry for s in st.items], st.unchanged)


def record(store: Store, run: str, kind: str, text: str | bytes, name: str | None = None,
           scanner: Scanner | None = None) -> AddResult:
    """Add JSON records of ``kind`` (one value, or for a typed kind an array: one item per element), each validated
    for its kind and stored as canonical JSON (sorted keys, no spaces) under ``name`` or its default name. All or
    nothing: one invalid element refuses the whole call before anything is stored."""
    check_run_id(run)
    check_kind(kind)
    if kind not in RECORD_KINDS:
        raise Refused(f"kind {kind!r} is not a record kind (use one of {', '.join(RECORD_KINDS)}; "
                      "`ledger add` takes files)")
    values = parse_records(text, kind, f"run {run}: {kind} record")
    if name is not None and len(values) > 1:
        raise UsageError(f"--name names one record; this array holds {len(values)} (leave --name out: each gets "
                         "its default name)")
    prepared: dict[str, bytes] = {}
    for i, value in enumerate(values):
        what = f"run {run}: {kind} record" + (f" #{i + 1}" if len(values) > 1 else "")
        validate(kind, value, what)
        content = canonical_json(value)
        if len(content) > MAX_RECORD_BYTES and kind in TYPED_KINDS:
            raise RecordError(f"{what}: {len(content)} bytes: larger than a {kind} record can be "
                              f"({MAX_RECORD_BYTES} bytes)")
        item = name if name is not None else checked_default_name(kind, value, content_digest(content).hex(), what)
        check_name(item, run)
        if prepared.get(item, content) != content:
            raise Refused(f"{what}: its name {item} is also given to a different record of this call")
        prepared[item] = content
    return add_contents(store, run, {item: (kind, content) for item, content in prepared.items()}, scanner)
