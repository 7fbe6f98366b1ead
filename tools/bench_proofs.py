#!/usr/bin/env python3
"""Benchmark: inclusion proofs for a 1,000,000-item run (defaults): hashes and bytes per proof, time to decode and
verify one, and time to produce one.

The evidence tree is built in memory with ledger's own TreeBuilder (items named like a pipeline's output,
``part-0000123/rows.csv``, with random content digests), sealed by a real Ed25519-signed commit naming the builder's
items root. A proof is the item's RFC 9162 audit path to that root, so its length depends only on the item's index
and n: at most ceil(log2 n) hashes (the mean is computed here over *every* index, from the tree's level sizes).

Producing a proof with ``ledger.proofs.prove`` reads every node of the tree (it needs every item's leaf
hash for the path): it is timed for a few items (``--prove``). The ``--sample`` proofs whose verification is timed
are built from the RFC 9162 levels computed here, and checked equal to prove()'s output for the items prove() ran
on. Each is encoded, then decoded and verified with ``verify_proof`` -- the pure, offline check ``ledger
verify-proof`` runs, without process start-up.
Targets (issue 5): at most 20 hashes plus a constant for 1M items; verifying a proof under a millisecond.

    python tools/bench_proofs.py [--items 1000000] [--sample 2000] [--prove 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

import blake3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ledger.digests import CTX_TREE, Digest  # noqa: E402
from ledger.keys import generate_keyfile  # noqa: E402
from ledger.objects import CommitBody, ItemEntry, SignedCommit  # noqa: E402
from ledger.proofs import InclusionProof, prove, verify_proof  # noqa: E402
from ledger.tree import TreeBuilder  # noqa: E402


def _h(data: bytes) -> bytes:
    return blake3.blake3(data, derive_key_context=CTX_TREE).digest()


def rfc9162_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """The tree over the leaf hashes, bottom up; an odd last node is promoted (RFC 9162's left-balanced split)."""
    levels = [leaves]
    while len(levels[-1]) > 1:
        lv = levels[-1]
        nxt = [_h(b"\x01" + lv[i] + lv[i + 1]) for i in range(0, len(lv) - 1, 2)]
        if len(lv) % 2:
            nxt.append(lv[-1])
        levels.append(nxt)
    return levels


def audit_path(levels: list[list[bytes]], index: int) -> tuple[bytes, ...]:
    out = []
    for lv in levels[:-1]:
        if index ^ 1 < len(lv):
            out.append(lv[index ^ 1])
        index >>= 1
    return tuple(out)


def total_path_hashes(levels: list[list[bytes]]) -> int:
    """The sum of every index's path length: at level k, every index has a sibling but those under the promoted last
    node of an odd-sized level."""
    n = len(levels[0])
    total = 0
    for k, lv in enumerate(levels[:-1]):
        missing = min(n, len(lv) << k) - ((len(lv) - 1) << k) if len(lv) % 2 else 0
        total += n - missing
    return total


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=2000, help="proofs whose decode + verify is timed")
    ap.add_argument("--prove", type=int, default=5, help="items prove() is timed on (first, last, random)")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    n = args.items
    rng = random.Random(42)
    nodes: dict[bytes, bytes] = {}
    t = time.perf_counter()
    b = TreeBuilder(lambda nid, data: nodes.__setitem__(nid, data))
    items: list[ItemEntry] = []
    leaves: list[bytes] = []
    for i in range(n):
        item = ItemEntry(f"part-{i:07d}/rows.csv", "file", rng.randrange(1 << 20), Digest(rng.randbytes(32)))
        enc = item.encode()
        leaf = _h(b"\x00" + enc)
        b.add(item, enc, leaf)
        items.append(item)
        leaves.append(leaf)
    root = b.finish()
    build = time.perf_counter() - t
    t = time.perf_counter()
    levels = rfc9162_levels(leaves)
    levels_s = time.perf_counter() - t
    if levels[-1][0] != b.items_root:
        raise SystemExit("the builder's items root is not the RFC 9162 root over the items' leaf hashes")
    with tempfile.TemporaryDirectory() as d:
        key = generate_keyfile(os.path.join(d, "k"))
    body = CommitBody(run="bench", seq=0, parent=None, root=root, items_root=b.items_root, count=b.count,
                      total_bytes=b.bytes, time_ms=0, key=key.public.key_id, log_size=0, log_root=Digest(bytes(32)),
                      nonce=bytes(16))
    bb = body.encode()
    commit = SignedCommit(bb, key.sign(bb), body)

    def built(i: int) -> InclusionProof:
        return InclusionProof("bench", items[i], i, audit_path(levels, i), 0, commit)

    # producing a proof: prove() walks and checks the whole tree for the audit path
    prove_idx = [0, n - 1, *rng.sample(range(n), max(0, min(args.prove, n) - 2))][:max(1, args.prove)]
    prove_times = []
    for i in prove_idx:
        t0 = time.perf_counter()
        p = prove(nodes.__getitem__, "bench", 0, commit, items[i].name)
        prove_times.append(time.perf_counter() - t0)
        if p != built(i):
            raise SystemExit(f"prove() and the RFC 9162 construction differ for item {i}")

    sample = rng.sample(range(n), min(args.sample, n)) + [0, n - 1]
    proofs = [built(i) for i in sample]
    hashes = [p.hashes for p in proofs]
    sizes = [len(p.encode()) for p in proofs]
    commit_bytes = len(commit.encode())
    times = []
    for p in proofs:
        data = p.encode()
        t0 = time.perf_counter()
        verify_proof(InclusionProof.from_bytes(data), [key.public])
        times.append(time.perf_counter() - t0)
    bound = (n - 1).bit_length() if n > 1 else 0  # ceil(log2 n)
    all_mean = total_path_hashes(levels) / n
    res = {"items": n, "build_s": round(build, 2), "rfc9162_levels_s": round(levels_s, 2),
           "hashes_max": max(hashes), "hashes_mean_sample": round(statistics.mean(hashes), 2),
           "hashes_mean_all_items": round(all_mean, 3), "ceil_log2_n": bound,
           "proof_bytes_max": max(sizes), "proof_bytes_mean": round(statistics.mean(sizes), 1),
           "commit_bytes": commit_bytes, "proof_bytes_beyond_commit_max": max(sizes) - commit_bytes,
           "verify_samples": len(times), "verify_ms_median": round(statistics.median(times) * 1e3, 3),
           "verify_ms_p99": round(pct(times, 0.99) * 1e3, 3),
           "prove_samples": len(prove_times), "prove_s_median": round(statistics.median(prove_times), 3),
           "prove_s_max": round(max(prove_times), 3), "tree_nodes": len(nodes)}
    if res["hashes_max"] > bound:
        raise SystemExit(f"a proof has {res['hashes_max']} hashes, more than ceil(log2 n) = {bound}")
    print(f"| items | hashes (max / mean sampled / mean all) | ⌈log2 n⌉ | proof bytes (max; commit alone) | "
          f"decode + verify (median / p99) | prove one (median / max) |\n|---|---|---|---|---|---|\n"
          f"| {n:,} | {res['hashes_max']} / {res['hashes_mean_sample']} / {res['hashes_mean_all_items']} | {bound} | "
          f"{res['proof_bytes_max']:,} ({commit_bytes}) | {res['verify_ms_median']} ms / {res['verify_ms_p99']} ms | "
          f"{res['prove_s_median']} s / {res['prove_s_max']} s |")
    print(f"build (TreeBuilder, {len(nodes):,} nodes): {res['build_s']} s; RFC 9162 levels for the sample: "
          f"{res['rfc9162_levels_s']} s; prove() reads every node: {len(prove_times)} proofs timed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
