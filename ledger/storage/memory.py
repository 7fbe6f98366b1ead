"""The in-memory store: the reference twin of every backend, used by tests and the contract suite."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import Corrupt, NotFound
from .base import Store, Upload, check_key


class _MemUpload(Upload):
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._buf: io.BytesIO | None = io.BytesIO()

    def write(self, data: bytes | memoryview) -> None:
        assert self._buf is not None
        self._buf.write(data)

    def commit_if_absent(self, key: str) -> bool:
        assert self._buf is not None
        data, self._buf = self._buf.getvalue(), None
        return self._store.put_if_absent(key, data)

    def abort(self) -> None:
        self._buf = None


class MemoryStore(Store):
    def __init__(self, url: str = "memory:") -> None:
        self.url = url
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._created = False

    def exists_store(self) -> bool:
        return self._created

    def create(self) -> None:
        self._created = True

    def get(self, key: str) -> bytes:
        check_key(key)
        try:
            return self._data[key]
        except KeyError:
            raise NotFound(f"{key}: no such object") from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        data = self.get(key)
        if offset < 0 or length < 0 or offset + length > len(data):
            raise Corrupt(f"{key}: object is truncated (wanted bytes {offset}..{offset + length}, "
                               f"object has {len(data)})")
        return data[offset:offset + length]

    def open_read(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get(key))

    def size(self, key: str) -> int | None:
        check_key(key)
        data = self._data.get(key)
        return None if data is None else len(data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        check_key(key)
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = bytes(data)
            return True

    def compare_and_swap(self, key: str, expected: bytes | None, data: bytes) -> bool:
        check_key(key)
        with self._lock:
            if self._data.get(key) != expected:
                return False
            self._data[key] = bytes(data)
            return True

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._data.pop(key, None)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._data if k.startswith(prefix) and (start_after is None or k > start_after))
        return iter(keys)

    def upload(self, key: str | None = None) -> Upload:
        return _MemUpload(self)

    # test helper: direct access for tamper tests
    def raw(self) -> dict[str, bytes]:
        return self._data
