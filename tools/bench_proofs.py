#!/usr/bin/env python3
"""Benchmark: inclusion proofs for a 1,000,000-item run (defaults): proof size and time to verify one.

The evidence tree is built in memory with ledger's own TreeBuilder (items named like a pipeline's output,
``part-0000123/rows.csv``, with random content digests), sealed by a real Ed25519-signed commit; then proofs for a
sample of items are made with ``ledger.proofs.prove`` (every node checked on the way down, as from a store) and
verified with ``verify_proof`` -- the pure, offline check ``ledger verify-proof`` runs, without process start-up.
Targets (issue 5): at most 20 hashes plus a constant for 1M items; verifying a proof under a millisecond.

    python tools/bench_proofs.py [--items 1000000] [--sample 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ledger.digests import Digest  # noqa: E402
from ledger.keys import generate_keyfile  # noqa: E402
from ledger.objects import CommitBody, ItemEntry, SignedCommit  # noqa: E402
from ledger.proofs import InclusionProof, prove, verify_proof  # noqa: E402
from ledger.tree import TreeBuilder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    rng = random.Random(42)
    nodes: dict[bytes, bytes] = {}
    t = time.perf_counter()
    b = TreeBuilder(lambda nid, data: nodes.__setitem__(nid, data))
    names = [f"part-{i:07d}/rows.csv" for i in range(args.items)]
    for name in names:
        b.add(ItemEntry(name, "file", rng.randrange(1 << 20), Digest(rng.randbytes(32))))
    root = b.finish()
    build = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        key = generate_keyfile(os.path.join(d, "k"))
    body = CommitBody(run="bench", seq=0, parent=None, root=root, count=b.count, total_bytes=b.bytes,
                      time_ms=0, key=key.public.key_id, log_size=0, log_root=Digest(bytes(32)), nonce=bytes(16))
    bb = body.encode()
    commit = SignedCommit(bb, key.sign(bb), body)
    sample = rng.sample(names, min(args.sample, len(names))) + [names[0], names[-1]]
    proofs = [prove(nodes.__getitem__, "bench", 0, commit, n) for n in sample]
    hashes = [p.hashes for p in proofs]
    sizes = [len(p.encode()) for p in proofs]
    commit_bytes = len(commit.encode())
    times = []
    for p in proofs:
        data = p.encode()
        t0 = time.perf_counter()
        verify_proof(InclusionProof.from_bytes(data), [key.public])
        times.append(time.perf_counter() - t0)
    bound = math.ceil(math.log2(args.items))
    res = {"items": args.items, "levels": len(proofs[0].steps), "build_s": round(build, 2),
           "hashes_max": max(hashes), "hashes_mean": round(statistics.mean(hashes), 2), "log2_n": bound,
           "proof_bytes_max": max(sizes), "commit_bytes": commit_bytes,
           "verify_ms_median": round(statistics.median(times) * 1e3, 3),
           "verify_ms_p99": round(sorted(times)[int(len(times) * 0.99)] * 1e3, 3)}
    print(f"| items | levels | hashes (max / mean) | ⌈log2 n⌉ | proof bytes (max; commit alone) | decode + verify "
          f"(median / p99) |\n|---|---|---|---|---|---|\n| {res['items']:,} | {res['levels']} | {res['hashes_max']} / "
          f"{res['hashes_mean']} | {bound} | {res['proof_bytes_max']} ({commit_bytes}) | "
          f"{res['verify_ms_median']} ms / {res['verify_ms_p99']} ms |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
