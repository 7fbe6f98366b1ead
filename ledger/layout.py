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


def marker_key(run: str) -> str:
    return f"runs/{run}/sealed"


def sealing_key(run: str) -> str:
    return f"runs/{run}/sealing"


def node_pack_ids(root: bytes, n: int) -> list[str]:
    """Tree-node packs get ids derived from the root, so a re-run seal finds (and rewrites identically) its own."""
    return [root.hex()[:28] + f"{i:04x}" for i in range(n)]
