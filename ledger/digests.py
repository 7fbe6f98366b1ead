"""BLAKE3 digests, domain-separated per object type (spec/digests.md).

Item content is hashed with plain BLAKE3, so an item's digest is exactly what ``b3sum`` prints for the same bytes.
Every structured object is hashed in BLAKE3's key-derivation mode with a context string of its own
("ledger/1 commit", "ledger/1 tree-node", ...): the same bytes hashed as two different types give unrelated digests,
so no object can be read as another, nor as plain content.
"""

from __future__ import annotations

import os
from typing import BinaryIO, NewType

import blake3

Digest = NewType("Digest", bytes)  # 32 bytes
DIGEST_SIZE = 32

FORMAT = "ledger/1"

CTX_TREE = "ledger/1 evidence-tree"
CTX_NODE = "ledger/1 tree-node"
CTX_COMMIT = "ledger/1 commit"
CTX_LOG = "ledger/1 commit-log"
CTX_KEY_ID = "ledger/1 key-id"
CTX_BOUNDARY = "ledger/1 node-boundary"
CTX_PACK_INDEX = "ledger/1 pack-index"
CTX_POLICY = "ledger/1 policy"
SIGNATURE_CONTEXT = b"ledger/1 closure-commit signature\x00"

# Files at least this large are hashed with BLAKE3's multithreaded mode.
THREADED_MIN = 4 * 1024 * 1024
CHUNK = 8 * 1024 * 1024


def content_digest(data: bytes) -> Digest:
    """Plain BLAKE3-256 of item content (identical to ``b3sum``)."""
    return Digest(blake3.blake3(data).digest())


def typed_digest(context: str, data: bytes) -> Digest:
    """BLAKE3-256 in derive-key mode: the digest of ``data`` read as an object of the type ``context`` names."""
    return Digest(blake3.blake3(data, derive_key_context=context).digest())


def new_content_hasher(size_hint: int = 0) -> blake3.blake3:
    """A content hasher; large inputs get BLAKE3's multithreaded mode, which is still plain BLAKE3."""
    if size_hint >= THREADED_MIN:
        return blake3.blake3(max_threads=blake3.blake3.AUTO)
    return blake3.blake3()


def hash_stream(stream: BinaryIO, size_hint: int = 0) -> tuple[Digest, int]:
    """Hash a stream in fixed-size chunks (never whole in memory); returns the digest and the byte count."""
    hasher = new_content_hasher(size_hint)
    buf = bytearray(CHUNK if size_hint >= CHUNK else 1024 * 1024)
    view = memoryview(buf)
    total = 0
    while True:
        n = stream.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        hasher.update(view[:n])
        total += n
    return Digest(hasher.digest()), total


def hash_file(path: str | os.PathLike[str]) -> tuple[Digest, int]:
    """Hash a whole file; large files are memory-mapped and hashed on all cores."""
    size = os.path.getsize(path)
    if size >= THREADED_MIN:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(os.fspath(path))
        return Digest(hasher.digest()), size
    with open(path, "rb") as f:
        data = f.read()
    return content_digest(data), len(data)


def hexd(d: bytes) -> str:
    return d.hex()


def short(d: bytes) -> str:
    """A digest as people see it in messages: ``b3:`` and the first 16 hex digits."""
    return "b3:" + d.hex()[:16]


def parse_hex_digest(text: str) -> Digest | None:
    text = text.removeprefix("b3:")
    if len(text) != 2 * DIGEST_SIZE:
        return None
    try:
        return Digest(bytes.fromhex(text))
    except ValueError:
        return None
