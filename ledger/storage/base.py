"""The narrow storage interface every backend implements (spec/store.md).

Keys are "/"-separated relative paths of ``[A-Za-z0-9._-]`` segments. Writes are conditional: ``put_if_absent``
returns False when the key already exists (a lost race is a result, not an error), and no reader ever sees a partial
object under its final key. Only real failures raise: :class:`~ledger.errors.NotFound` for a missing key and
:class:`~ledger.errors.StorageError` for I/O.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import StorageError

_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")


def check_key(key: str) -> str:
    """Refuse keys that could escape the store or collide after normalisation (``..``, empty segments, ...)."""
    if not _KEY_RE.fullmatch(key) or len(key) > 1024:
        raise StorageError(f"invalid storage key {key!r}")
    return key


class Upload(ABC):
    """A streaming write that becomes visible under its key only on a successful ``commit_if_absent``."""

    @abstractmethod
    def write(self, data: bytes | memoryview) -> None: ...

    @abstractmethod
    def commit_if_absent(self, key: str) -> bool:
        """Publish under ``key`` unless it exists; False when it did (the upload is then discarded)."""

    @abstractmethod
    def abort(self) -> None: ...

    def copy_from(self, src: BinaryIO, size_hint: int = 0) -> tuple[bytes, int]:
        """Append everything left in ``src`` to this (so far empty) upload, never holding it whole in memory;
        returns the plain BLAKE3 digest of the bytes appended and their count. Backends that can copy without
        passing the bytes through Python (the local store: ``copy_file_range``) do so."""
        from ..digests import CHUNK, new_content_hasher

        hasher = new_content_hasher(size_hint)
        view = memoryview(bytearray(CHUNK))
        total = 0
        while True:
            n = src.readinto(view)  # type: ignore[attr-defined]
            if not n:
                break
            hasher.update(view[:n])
            self.write(view[:n])
            total += n
        return hasher.digest(), total

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class RangeReader:
    """Reads byte ranges of one object, keeping whatever handle the backend needs open between reads."""

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key = store, key

    def read_at(self, offset: int, length: int) -> bytes:
        return self.store.get_range(self.key, offset, length)

    def close(self) -> None:
        pass


class Store(ABC):
    """Conditional key-value storage: the only thing the layers above know about where bytes live."""

    url: str
    remote = False  # True where writes cost a network round trip: content is hashed first, sent only if new

    @abstractmethod
    def exists_store(self) -> bool:
        """Whether the store's location exists at all (an uninitialised store may not)."""

    @abstractmethod
    def create(self) -> None:
        """Make the store's location (idempotent)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object; NotFound when absent."""

    @abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``; StorageError naming the key when the object is shorter."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A stream over the object, for content too large for memory."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size, or None when absent."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` under ``key`` unless the key exists; True when this call created it."""

    @abstractmethod
    def compare_and_swap(self, key: str, expected: bytes | None, data: bytes) -> bool:
        """Replace the object iff its current bytes equal ``expected`` (None: iff absent); True on success."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when absent)."""

    @abstractmethod
    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Keys starting with ``prefix``, in lexicographic (byte) order, strictly after ``start_after``."""

    @abstractmethod
    def upload(self, key: str | None = None) -> Upload:
        """Begin a streaming write; ``key``, when already known, lets a remote backend send while it is written."""

    def range_reader(self, key: str) -> RangeReader:
        return RangeReader(self, key)

    def local_path(self, key: str) -> str | None:
        """A filesystem path for the object when the backend has one (lets large content be hashed with mmap)."""
        return None

    @contextlib.contextmanager
    def lease(self, name: str) -> Iterator[bool]:
        """Hold an exclusive, crash-released lease while the block runs, where the backend has one.

        Yields True when a real lease is held. Leases only save wasted work and let a process tell "the other
        sealer is still running" from "it died"; conditional writes remain the only safety mechanism.
        """
        yield False

    def make_durable(self, key: str) -> None:  # noqa: B027 - optional hook, a no-op for backends durable per write
        """Make an existing object that another writer stored durable before relying on it (a local file system
        may hold its name only in memory until its directory is fsynced)."""

    def sync(self) -> None:  # noqa: B027 - optional hook, a no-op for backends durable per write
        """Make everything written so far durable (backends that are durable per write do nothing)."""
