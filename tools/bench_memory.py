#!/usr/bin/env python3
"""Benchmark: peak memory sealing and verifying a 1,000,000-item run of small records (defaults).

The run is staged through ledger's own staging layer in one call — one pack file and one batch object, exactly
what a single ``ledger add`` of that many items writes — because a million ``ledger record`` processes would
measure process start-up, not the ledger. Each record is a small canonical-JSON object (about 40 bytes).
Then ``ledger seal`` and ``ledger verify`` run as separate CLI processes; their peak RSS is read with
``/usr/bin/time`` (``%M``), which reports the measured process alone. Target: <= 512 MiB each.

    python tools/bench_memory.py [--items 1000000] [--reps 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402

LIMIT = 512 * bl.MiB

STAGE = r"""
import sys, time
from ledger import Ledger
from ledger.evidence import _Stager, canonical_json

store, run, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lg = Ledger.open(store)
lg.init()
t0 = time.perf_counter()
st = _Stager(lg.store, run)
for i in range(n):
    body = canonical_json({"i": i, "ok": i % 7 != 0, "rows": (i * 7919) % 100003})
    st.add_bytes(f"records/{i // 1000:04d}/{i:07d}.json", "json", body)
st.commit()
print(f"staged {n} records in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=1, help="repetitions (each seal runs on a fresh copy of the store)")
    ap.add_argument("--tmp", default=None, help="parent directory for the temporary data (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args()

    base = bl.tmpdir("ledger-bench-memory-", args.tmp)
    lg = bl.ledger_cmd()
    bl.use_bytecode_cache(os.path.join(base, "pycache"))
    try:
        staged = os.path.join(base, "staged")
        key = os.path.join(base, "sealer.key")
        bl.run([*lg, "keys", "generate", "--out", key])
        print(f"staging {args.items} records under {staged}", file=sys.stderr)
        m_stage = bl.repeat(f"stage {args.items} records (1 batch)", 1, None,
                            lambda _: [bl.run([sys.executable, "-c", STAGE, staged, "bench", str(args.items)])])
        task = f"{args.items // 1000}k records"
        rows: list[bl.Row] = [bl.Row(task, "stage (Python API, one batch)", m_stage, None)]

        stores: list[str] = []

        def copy_setup(i: int) -> str:
            s = os.path.join(base, f"store{i}")
            shutil.copytree(staged, s, symlinks=True)
            stores.append(s)
            return s

        def seal_step(s: str) -> list[bl.Proc]:
            return [bl.run([*lg, "--store", s, "seal", "bench", "--key", key])]

        m_seal = bl.interleave([bl.Contender("ledger seal", seal_step, copy_setup)], args.reps,
                               warmup=False)["ledger seal"]
        rows.append(bl.Row(task, "ledger seal", m_seal, None, "peak RSS <= 512 MiB", m_seal.peak_rss <= LIMIT))
        store = stores[-1]
        for s in stores[:-1]:
            bl.drop_tree(s)

        m_ver = bl.interleave([bl.Contender("ledger verify", lambda _: [
            bl.run([*lg, "--store", store, "verify", "bench", "--trust", key + ".pub"])])], args.reps,
            warmup=False)["ledger verify"]
        rows.append(bl.Row(task, "ledger verify", m_ver, None, "peak RSS <= 512 MiB", m_ver.peak_rss <= LIMIT))
        m_ls = bl.interleave([bl.Contender("ledger ls --json", lambda _: [
            bl.run([*lg, "--store", store, "ls", "bench", "--json"], stdout_path=os.devnull)])], 1,
            warmup=False)["ledger ls --json"]
        rows.append(bl.Row(task, "ledger ls --json (informational)", m_ls, None))

        bl.print_table(f"memory: {args.items} small records, peak RSS of each process", rows)
        print(f"\nstore size: {bl.du(store) / bl.MiB:.1f} MiB", file=sys.stderr)
        bl.write_json(args.json, "memory", vars(args), rows)
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            bl.drop_tree(base)


if __name__ == "__main__":
    main()
