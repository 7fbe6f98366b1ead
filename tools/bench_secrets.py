#!/usr/bin/env python3
"""Benchmark: the secret scanner's throughput against reading and hashing the same bytes.

Two files are generated deterministically (defaults: 256 MiB each):

* ``evidence.txt``: realistic evidence -- log lines, CSV rows, JSON records with ISO timestamps, UUIDs, sha256/b3
  digests, git commit ids, URLs, IPs, kafka topic names, SRI hashes -- and no secret;
* ``random.bin``: incompressible bytes (BLAKE3's extendable output).

Contenders, in process, each over the whole file in 8 MiB reads (warm page cache, interleaved, one untimed
warm-up round so that detect-secrets' import and RE2's DFA construction are not timed):

* ``read``: the reads alone (the floor);
* ``read + BLAKE3``: the reads and a single-threaded ``blake3`` hash (what storing an item costs at the least);
* ``Scanner().check_file``: the secret scan (RE2 prefilter, then detect-secrets on the candidate lines);
* ``prefilter, 1 thread`` and ``prefilter, N threads``: the RE2 prefilter alone over the file's 8 MiB pieces, on
  one thread and on one per CPU as ``ledger add`` runs it for a large file. Its speed on all CPUs is the floor of
  adding a large file: no byte is stored before it has been through it.

    python tools/bench_secrets.py [--mib 256] [--reps 3] [--dir DIR]

Prints a markdown table of MB/s (medians; 1 MB = 10^6 bytes) and the number of candidate lines detect-secrets had
to confirm. Timings are never asserted anywhere; ratios are the meaningful figures on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchlib as bl  # noqa: E402
import blake3  # noqa: E402

from ledger import secrets  # noqa: E402

CHUNK = secrets.CHUNK


def write_evidence(path: str, size: int) -> None:
    with open(path, "w") as f:
        written, batch = 0, []
        for line in bl.evidence_lines(2026):
            batch.append(line)
            written += len(line) + 1
            if len(batch) == 10_000 or written >= size:
                f.write("\n".join(batch) + "\n")
                batch = []
            if written >= size:
                break


def write_random(path: str, size: int) -> None:
    with open(path, "wb") as f:
        for off in range(0, size, 64 * bl.MiB):
            f.write(bl.det_bytes("bench_secrets", min(64 * bl.MiB, size - off), off))


def read_only(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(CHUNK):
            pass


def read_blake3(path: str) -> None:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    h.digest()


def scan(path: str) -> None:
    with open(path, "rb") as f:
        secrets.Scanner().check_file(os.path.basename(path), f)


def prefilter(path: str, threads: int) -> None:
    """The prefilter alone over 8 MiB pieces on ``threads`` threads (RE2 releases the GIL), reading as it goes."""
    from concurrent.futures import ThreadPoolExecutor

    with open(path, "rb") as f, ThreadPoolExecutor(threads) as pool:
        pending = []
        while piece := f.read(8 * bl.MiB):
            pending.append(pool.submit(secrets.candidate_ranges, piece, 0, len(piece)))
            if len(pending) > 2 * threads:
                pending.pop(0).result()
        for fut in pending:
            fut.result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256, help="size of each file (MiB)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to generate the data (default: a temporary directory)")
    args = ap.parse_args()
    size = args.mib * bl.MiB
    root = bl.tmpdir("bench-secrets-", args.dir)
    try:
        files = {"evidence (log/CSV/JSON)": os.path.join(root, "evidence.txt"),
                 "random binary": os.path.join(root, "random.bin")}
        print(f"generating {len(files)} x {args.mib} MiB in {root} ...", file=sys.stderr, flush=True)
        write_evidence(files["evidence (log/CSV/JSON)"], size)
        write_random(files["random binary"], size)

        confirmed = {"lines": 0}
        real_confirm = secrets._confirm

        def counting_confirm(item: str, lines: list[tuple[int, bytes]]) -> list[tuple[int, str]]:
            confirmed["lines"] += len(lines)
            return real_confirm(item, lines)

        secrets._confirm = counting_confirm  # type: ignore[assignment]  # count candidate lines (a benchmark)
        from ledger.evidence import _scan_threads

        threads = _scan_threads()
        contenders: dict[str, Callable[[str], None]] = {
            "read": read_only, "read + BLAKE3": read_blake3, "Scanner().check_file": scan,
            "prefilter, 1 thread": lambda p: prefilter(p, 1),
            f"prefilter, {threads} threads": lambda p: prefilter(p, threads)}
        rows = []
        for label, path in files.items():
            bl.warm([path])
            nbytes = os.path.getsize(path)
            walls: dict[str, list[float]] = {name: [] for name in contenders}
            candidates = 0
            names = list(contenders)
            for rep in range(-1, args.reps):  # -1: warm-up, not timed
                order = names[rep % len(names):] + names[:rep % len(names)]
                for name in order:
                    if rep >= 0:
                        bl.wait_quiet()
                    confirmed["lines"] = 0
                    t0 = time.perf_counter()
                    contenders[name](path)
                    wall = time.perf_counter() - t0
                    print(f"  {label:<24} {name:<22} {'warm-up' if rep < 0 else f'run {rep + 1}/{args.reps}':>9}: "
                          f"{wall:7.3f} s", file=sys.stderr, flush=True)
                    if rep >= 0:
                        walls[name].append(wall)
                    if name == "Scanner().check_file":
                        candidates = confirmed["lines"]
            med = {name: statistics.median(w) for name, w in walls.items()}
            rows.append((label, nbytes, med, candidates))
        m = bl.machine()
        print(f"\nSecret scanning, {args.mib} MiB per file, median of {args.reps} interleaved runs, warm page cache; "
              f"{m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, {m['date']}\n")
        print(f"| data | read | read + BLAKE3 | `Scanner().check_file` | scan time ÷ (read + BLAKE3) time "
              f"| candidate lines confirmed | prefilter, 1 thread | prefilter, {threads} threads |")
        print("|---|---|---|---|---|---|---|---|")
        for label, nbytes, med, candidates in rows:
            def mbs(name: str, nbytes: int = nbytes, med: dict[str, float] = med) -> str:
                return f"{nbytes / med[name] / 1e6:,.0f} MB/s"

            print(f"| {label} | {mbs('read')} | {mbs('read + BLAKE3')} | {mbs('Scanner().check_file')} | "
                  f"{med['Scanner().check_file'] / med['read + BLAKE3']:.2f}× | {candidates:,} | "
                  f"{mbs('prefilter, 1 thread')} | {mbs(f'prefilter, {threads} threads')} |")
        busy = bl.BUSY_SAMPLES
        if busy:
            print(f"\nmachine busy before the timed steps: median {statistics.median(busy):.0%}, "
                  f"max {max(busy):.0%} (other load skews absolute figures; compare the ratios)")
    finally:
        bl.drop_tree(root)


if __name__ == "__main__":
    main()
