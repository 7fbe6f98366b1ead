"""Where each object lives in a store (spec/store.md, "Layout"). One place, so the layers above never build keys."""

from __future__ import annotations

CONFIG = "config"
CHAIN_PREFIX = "chain/"
SLOT_DIGITS = 20


def slot_key(seq: int) -> str:
    """Zero-padded so that lexicographic listing order is numeric order."""
    return f"{CHAIN_PREFIX}{seq:0{SLOT_DIGITS}d}"


def slot_seq(key: str) -> int | None:
    tail = key[len(CHAIN_PREFIX):]
    if not key.startswith(CHAIN_PREFIX) or len(tail) != SLOT_DIGITS or not tail.isdigit():
        return None
    return int(tail)


def run_prefix(run: str) -> str:
    return f"runs/{run}/"


def staged_prefix(run: str) -> str:
    return f"runs/{run}/staged/"


def batch_key(run: str, seq: int) -> str:
    """Batches are numbered slots, claimed with put-if-absent like the chain's, so their order is write order."""
    return f"runs/{run}/staged/{seq:0{SLOT_DIGITS}d}.batch"


def batch_seq(key: str) -> int | None:
    tail = key.rsplit("/", 1)[-1]
    digits = tail.removesuffix(".batch")
    if not tail.endswith(".batch") or len(digits) != SLOT_DIGITS or not digits.isdigit():
        return None
    return int(digits)


def marker_key(run: str) -> str:
    return f"runs/{run}/sealed"


def sealing_key(run: str) -> str:
    return f"runs/{run}/sealing"


def node_pack_ids(root: bytes, n: int) -> list[str]:
    """Tree-node packs get ids derived from the root, so a re-run seal finds (and rewrites identically) its own."""
    return [root.hex()[:28] + f"{i:04x}" for i in range(n)]
