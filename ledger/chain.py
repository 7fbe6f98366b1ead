"""Reading the closure chain: numbered commit slots, head discovery by LIST, lookup of a run's commit.

Slots are ``chain/<seq, 20 digits>``. The chain is the single source of truth for what is sealed; markers and
hints only help find things in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .digests import CTX_LOG, Digest
from .errors import DecodeError, NotFound
from .layout import CHAIN_PREFIX, slot_key, slot_seq
from .merkle import blake3_hasher, root_from_leaf_hashes
from .objects import SignedCommit
from .storage import Store

LOG_HASHER = blake3_hasher(CTX_LOG)


@dataclass(frozen=True)
class ChainEntry:
    seq: int
    commit: SignedCommit

    @property
    def digest(self) -> Digest:
        return self.commit.digest


def read_slot(store: Store, seq: int) -> SignedCommit:
    data = store.get(slot_key(seq))
    try:
        return SignedCommit.from_bytes(data, f"commit slot {seq}")
    except DecodeError:
        raise


def slot_numbers(store: Store, after: int | None = None) -> list[int]:
    start = slot_key(after) if after is not None else None
    out = []
    for key in store.list(CHAIN_PREFIX, start_after=start):
        seq = slot_seq(key)
        if seq is None:
            raise DecodeError(f"chain: unexpected object {key!r} in the chain prefix")
        out.append(seq)
    return out


class ChainView:
    """The commits read so far, kept in order; ``refresh`` reads only slots past the last one seen."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.entries: list[ChainEntry] = []

    def refresh(self) -> list[ChainEntry]:
        last = self.entries[-1].seq if self.entries else None
        new = []
        for seq in slot_numbers(self.store, last):
            if seq != len(self.entries):
                raise DecodeError(f"chain: slot {seq} follows slot {len(self.entries) - 1} (gap in the chain)")
            entry = ChainEntry(seq, read_slot(self.store, seq))
            self.entries.append(entry)
            new.append(entry)
        return new

    @property
    def head(self) -> ChainEntry | None:
        return self.entries[-1] if self.entries else None

    def find_run(self, run: str, entries: list[ChainEntry] | None = None) -> ChainEntry | None:
        for e in entries if entries is not None else self.entries:
            if e.commit.body.run == run:
                return e
        return None

    def log_root(self, size: int) -> Digest:
        """RFC 9162 root over the digests of commits 0..size-1: what commit ``size`` commits to."""
        leaves = [LOG_HASHER.leaf(e.digest) for e in self.entries[:size]]
        return Digest(root_from_leaf_hashes(LOG_HASHER, leaves))


def iter_chain(store: Store) -> Iterator[ChainEntry]:
    view = ChainView(store)
    view.refresh()
    return iter(view.entries)


def find_commit(store: Store, ref: str) -> ChainEntry:
    """A commit by full or abbreviated hex digest (at least 8 digits) or by sequence number (``#N``)."""
    view = ChainView(store)
    view.refresh()
    ref = ref.removeprefix("b3:")
    if ref.startswith("#") and ref[1:].isdigit():
        seq = int(ref[1:])
        if seq < len(view.entries):
            return view.entries[seq]
        raise NotFound(f"commit #{seq}: no such commit")
    matches = [e for e in view.entries if e.digest.hex().startswith(ref.lower())] if len(ref) >= 8 else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise NotFound(f"commit {ref}: ambiguous prefix")
    raise NotFound(f"commit {ref}: no such commit")
