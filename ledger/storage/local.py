"""The embedded local store: a directory, made crash-safe with temporary files, fsync and link/rename.

Every object is written to ``tmp/`` first, fsynced, and then published with ``os.link`` (put-if-absent: the link
fails if the name exists) or ``os.replace`` under a per-key ``flock`` (compare-and-swap); the directory is fsynced
after. A reader therefore sees either no object or the whole object, never a prefix, even after a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from typing import BinaryIO

from ..digests import hash_file
from ..errors import Corrupt, ForeignObject, NotFound, StorageError
from .base import _KEY_RE, RangeReader, Store, Upload, check_key

_TMP = "tmp"
_UPLOAD_BUFFER = 1024 * 1024
_COPY_CHUNK = 64 * 1024 * 1024
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}
_STORE_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _io_error(what: str, exc: OSError) -> StorageError:
    return StorageError(f"{what}: {exc.strerror or exc}")


class _LocalUpload(Upload):
    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._tmp = store._tmp_path()
        try:
            # A large buffer: packs are written one small object at a time (one write call per 1 MiB, not 8 KiB).
            self._f: BinaryIO | None = open(self._tmp, "xb", buffering=_UPLOAD_BUFFER)
        except OSError as exc:
            raise _io_error(f"store {store.root}", exc) from None

    def write(self, data: bytes | memoryview) -> None:
        assert self._f is not None
        try:
            self._f.write(data)
        except OSError as exc:
            self.abort()
            raise _io_error(f"store {self._store.root}", exc) from None

    def copy_from(self, src: BinaryIO, size_hint: int = 0) -> tuple[bytes, int]:
        """Copy in the kernel (``copy_file_range``: no pass through Python, as ``cp`` does), then hash the copy --
        exactly the bytes stored -- memory-mapped on all cores. Falls back to reading and writing when the kernel
        cannot copy between these files."""
        assert self._f is not None
        if not hasattr(os, "copy_file_range"):  # Linux only
            return super().copy_from(src, size_hint)
        try:
            src_fd = src.fileno()
            self._f.flush()
        except (OSError, ValueError):
            return super().copy_from(src, size_hint)
        dst_fd = self._f.fileno()
        if os.lseek(dst_fd, 0, os.SEEK_CUR) != 0:
            return super().copy_from(src, size_hint)
        total = 0
        try:
            while True:
                n = os.copy_file_range(src_fd, dst_fd, _COPY_CHUNK)
                if not n:
                    break
                total += n
        except OSError as exc:
            if total == 0 and exc.errno in _NO_KERNEL_COPY:
                return super().copy_from(src, size_hint)  # nothing copied, src position unchanged
            if exc.errno in _STORE_FULL:
                self.abort()
                raise _io_error(f"store {self._store.root}", exc) from None
            raise  # a read error: the caller names the file it was reading
        digest, size = hash_file(self._tmp)
        if size != total:
            raise StorageError(f"store {self._store.root}: copied {total} bytes, found {size}")
        return digest, total

    def commit_if_absent(self, key: str) -> bool:
        assert self._f is not None
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None
            return self._store._publish(self._tmp, key)
        except OSError as exc:
            raise _io_error(f"store {self._store.root}: {key}", exc) from None
        finally:
            self.abort()

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class _LocalRangeReader(RangeReader):
    def __init__(self, store: LocalStore, key: str) -> None:
        super().__init__(store, key)
        try:
            self._fd: int | None = os.open(store._path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{key}: no such object") from None
        except OSError as exc:
            raise _io_error(key, exc) from None
        if stat.S_ISDIR(os.fstat(self._fd).st_mode):  # a key prefix, not an object
            self.close()
            raise NotFound(f"{key}: no such object")

    def read_at(self, offset: int, length: int) -> bytes:
        assert self._fd is not None
        try:
            data = os.pread(self._fd, length, offset) if length else b""
        except OSError as exc:
            raise _io_error(self.key, exc) from None
        if len(data) != length:
            raise Corrupt(f"{self.key}: object is truncated (wanted bytes {offset}..{offset + length}, "
                          f"got {len(data)})")
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LocalStore(Store):
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.url = "file://" + self.root
        self._dirs: set[str] = set()
        self._durable: set[str] = set()  # directories whose own entry is known durable

    # -- helpers -------------------------------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        if check_key(key).split("/", 1)[0] == _TMP:  # temporary files and locks live there, never objects
            raise StorageError(f"invalid storage key {key!r}: {_TMP}/ is reserved by the local store")
        return os.path.join(self.root, *key.split("/"))

    def _tmp_path(self) -> str:
        return os.path.join(self.root, _TMP, f"{os.getpid()}-{secrets.token_hex(8)}")

    def _ensure_dir(self, d: str) -> None:
        """``d`` exists, and so does every directory entry on the way to it, durably. A directory another process
        made may not be durable yet (it fsyncs its parent after the mkdir): so the whole chain of parents is
        fsynced here too, once per process, before anything is written into ``d`` and relied on."""
        if d in self._dirs:
            return
        missing = []
        p = d
        while not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        for m in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(m)
            _fsync_dir(os.path.dirname(m))  # (the store's root itself is made here too, by create())
        self._durable_parents(d)
        self._dirs.add(d)

    def _durable_parents(self, d: str) -> None:
        """fsync the parent of ``d`` and of each ancestor up to the store's root (each once per process: a
        directory's own entry, once durable, stays so -- directories are never removed). A directory is marked
        durable only after everything above it is, so meeting a marked one ends the walk."""
        chain = []
        p = d
        while len(p) > len(self.root) and p not in self._durable:
            chain.append(p)
            p = os.path.dirname(p)
        for q in reversed(chain):  # top down: each marked once the entries above it are durable
            _fsync_dir(os.path.dirname(q))
            self._durable.add(q)

    def _publish(self, tmp: str, key: str) -> bool:
        final = self._path(key)
        d = os.path.dirname(final)
        self._ensure_dir(d)
        try:
            os.link(tmp, final)
        except FileExistsError:
            _fsync_dir(d)  # another writer's name, which the caller now relies on: durable before we go on
            return False
        _fsync_dir(d)
        return True

    def make_durable(self, key: str) -> None:
        """An existing object's name, which another writer made and the caller is about to rely on, made durable:
        its directory (and the directories above it) fsynced. The content was fsynced before it was linked."""
        path = self._path(key)
        d = os.path.dirname(path)
        try:
            _fsync_dir(d)
            self._durable_parents(d)
        except OSError as exc:
            raise _io_error(key, exc) from None

    # -- interface -----------------------------------------------------------------------------------------------
    def exists_store(self) -> bool:
        return os.path.isdir(self.root)

    def create(self) -> None:
        try:
            self._ensure_dir(os.path.join(self.root, _TMP))
        except OSError as exc:
            raise _io_error(f"store {self.root}", exc) from None

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"{key}: no such object") from None
        except OSError as exc:
            raise _io_error(key, exc) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                data = os.pread(f.fileno(), length, offset) if length else b""
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"{key}: no such object") from None
        except OSError as exc:
            raise _io_error(key, exc) from None
        if len(data) != length:
            raise Corrupt(f"{key}: object is truncated (wanted bytes {offset}..{offset + length}, "
                               f"got {len(data)})")
        return data

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"{key}: no such object") from None
        except OSError as exc:
            raise _io_error(key, exc) from None

    def size(self, key: str) -> int | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _io_error(key, exc) from None
        return None if stat.S_ISDIR(st.st_mode) else st.st_size  # a directory is a key prefix, not an object

    def put_if_absent(self, key: str, data: bytes) -> bool:
        up = self.upload()
        up.write(data)
        return up.commit_if_absent(key)

    def compare_and_swap(self, key: str, expected: bytes | None, data: bytes) -> bool:
        final = self._path(key)
        self._ensure_dir(os.path.dirname(final))
        lock_path = os.path.join(self.root, _TMP, "cas-" + key.replace("/", "%"))
        try:
            lfd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _io_error(key, exc) from None
        try:
            fcntl.flock(lfd, fcntl.LOCK_EX)
            try:
                with open(final, "rb") as f:
                    current: bytes | None = f.read()
            except FileNotFoundError:
                current = None
            if current != expected:
                return False
            tmp = self._tmp_path()
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(os.path.dirname(final))
            return True
        except OSError as exc:
            raise _io_error(key, exc) from None
        finally:
            os.close(lfd)

    @contextlib.contextmanager
    def lease(self, name: str) -> Iterator[bool]:
        """An ``flock`` on a file under ``tmp/``: released by the kernel when the holder dies, even by SIGKILL."""
        self._ensure_dir(os.path.join(self.root, _TMP))
        path = os.path.join(self.root, _TMP, "lease-" + name.replace("/", "%"))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _io_error(f"store {self.root}", exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield True
        finally:
            os.close(fd)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
            _fsync_dir(os.path.dirname(path))  # a delete that a power loss undoes could leave a fence behind
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            raise _io_error(key, exc) from None

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Walk only the directories the prefix can reach; results sorted as the interface promises."""
        if prefix and not prefix.endswith("/"):
            base_dir, _, part = prefix.rpartition("/")
        else:
            base_dir, part = prefix.rstrip("/"), ""
        start = os.path.join(self.root, *base_dir.split("/")) if base_dir else self.root
        out: list[str] = []
        if not os.path.isdir(start) or base_dir.split("/", 1)[0] == _TMP:
            return iter(out)
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                rel = os.path.relpath(dirpath, self.root)
                rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
                if rel == "" or rel.startswith(_TMP + "/"):
                    dirnames[:] = [d for d in dirnames if d != _TMP]
                for fn in filenames:
                    k = rel + fn
                    if k.startswith(prefix) and (start_after is None or k > start_after):
                        out.append(k)
                        if not _KEY_RE.fullmatch(k):
                            raise ForeignObject(f"store {self.root}: file {k!r} is not a ledger key (is the "
                                               "directory shared with something else?)", k)
        except OSError as exc:
            raise _io_error(prefix, exc) from None
        del part
        out.sort()
        return iter(out)

    def upload(self, key: str | None = None) -> Upload:
        self._ensure_dir(os.path.join(self.root, _TMP))
        return _LocalUpload(self)

    def range_reader(self, key: str) -> RangeReader:
        return _LocalRangeReader(self, key)

    def local_path(self, key: str) -> str | None:
        return self._path(key)


def is_enospc(exc: OSError) -> bool:
    return exc.errno == errno.ENOSPC
