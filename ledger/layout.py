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


POLICY_PREFIX = "policies/"


def policy_key(digest: bytes) -> str:
    """A sealed policy document, named by its typed digest (the one the commit carries)."""
    return f"{POLICY_PREFIX}{digest.hex()}"


def node_pack_ids(root: bytes, n: int) -> list[str]:
    """Tree-node packs get ids derived from the root, so a re-run seal finds (and rewrites identically) its own."""
    return [root.hex()[:28] + f"{i:04x}" for i in range(n)]


def is_immutable(key: str) -> bool:
    """Whether ``key`` is written once and then never changed or deleted (spec/store.md, "Layout"): the config,
    the commit slots ``chain/…``, sealed policies ``policies/…``, pack files and indexes ``packs/…``, loose
    objects ``objects/…`` and the completion markers ``runs/<run>/sealed``. These are the keys an S3 store with
    Object Lock writes WORM.

    Staged batches and the sealing fence are not: a seal deletes them, so they must stay deletable. Nor is anything
    else (no other key is written)."""
    if key == CONFIG or key.startswith((CHAIN_PREFIX, "packs/", "objects/", POLICY_PREFIX)):
        return True
    parts = key.split("/")
    return len(parts) == 3 and parts[0] == "runs" and parts[2] == "sealed"
