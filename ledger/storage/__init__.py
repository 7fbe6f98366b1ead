"""Storage backends behind one narrow interface; ``open_store`` picks one from a URL (cli.md, "Where the store is")."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from ..errors import UsageError
from .base import Store, Upload, check_key
from .local import LocalStore
from .memory import MemoryStore

if TYPE_CHECKING:
    from .s3 import S3Store

DEFAULT_STORE = ".ledger"

__all__ = ["Store", "Upload", "LocalStore", "MemoryStore", "open_store", "as_s3", "check_key", "DEFAULT_STORE"]


def as_s3(store: Store) -> S3Store | None:
    """The store as an S3Store, or None -- without importing boto3 for any other backend (only S3 is remote)."""
    if not store.remote:
        return None
    from .s3 import S3Store

    return store if isinstance(store, S3Store) else None


def open_store(url: str | None) -> Store:
    """A store for ``url``: a plain path or ``file:///abs/path`` (local), ``s3://bucket/prefix`` (S3); with its
    writes instrumented when a crash test asks for it (ledger/faults.py)."""
    from ..faults import instrument

    return instrument(_open_store(url))


def _open_store(url: str | None) -> Store:
    url = url or os.environ.get("LEDGER_STORE") or DEFAULT_STORE
    if url.startswith("file://"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise UsageError(f"store URL {url!r}: file URLs must be file:///absolute/path")
        return LocalStore(unquote(parsed.path))
    if url.startswith("s3://"):
        from .s3 import S3Store  # boto3 is imported only for S3 stores

        return S3Store(url)
    if "://" in url:
        raise UsageError(f"store URL {url!r}: unknown scheme (use a path, file:///path or s3://bucket/prefix)")
    return LocalStore(url)
