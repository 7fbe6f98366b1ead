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
* ``Scanner().check_file``: the secret scan (RE2 prefilter, then detect-secrets on the candidate lines).

    python tools/bench_secrets.py [--mib 256] [--reps 3] [--dir DIR]

Prints a markdown table of MB/s (medians; 1 MB = 10^6 bytes) and the number of candidate lines detect-secrets had
to confirm. Timings are never asserted anywhere; ratios are the meaningful figures on a shared machine.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchlib as bl  # noqa: E402
import blake3  # noqa: E402

from ledger import secrets  # noqa: E402

CHUNK = secrets.CHUNK


def evidence_lines(seed: int) -> Iterator[str]:
    r = random.Random(seed)
    topics = ["ingest.events", "orders-v2", "payments_raw", "clickstream.eu-west-1", "__consumer_offsets"]
    i = 0
    while True:
        i += 1
        ts = f"2026-11-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:" \
             f"{r.randint(0, 59):02d}.{r.randint(0, 999):03d}Z"
        u = str(uuid.UUID(int=r.getrandbits(128)))
        h = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        k = r.randrange(12)
        if k == 0:
            yield json.dumps({"topic": r.choice(topics), "partition": r.randint(0, 11), "start": i * 100,
                              "end": i * 100 + 120}, separators=(",", ":"))
        elif k == 1:
            yield json.dumps({"source": "kafka", "count": r.randint(1, 10**4), "digest": f"sha256:{h}"},
                             separators=(",", ":"))
        elif k == 2:
            yield f"{ts} INFO  [worker-{r.randint(1, 16)}] o.a.k.c.consumer.KafkaConsumer - committed offset " \
                  f"{r.randint(0, 10**9)} for {r.choice(topics)}-{r.randint(0, 11)} request_id={u}"
        elif k == 3:
            yield f"{i},{ts},{u},{r.choice(['ok', 'retry', 'quarantined'])},{r.random() * 1000:.3f},EUR"
        elif k == 4:
            yield f"{ts} GET https://api.example.com/v1/items/{r.randint(1, 99999)}?page={r.randint(1, 9)} 200 " \
                  f"{r.randint(1, 900)}ms 203.0.113.{r.randint(0, 255)} \"Mozilla/5.0 (X11; Linux x86_64)\""
        elif k == 5:
            yield json.dumps({"name": "model", "version": f"2026.{r.randint(1, 12)}.{r.randint(0, 9)}",
                              "artifact": "b3:" + hashlib.blake2b(h.encode(), digest_size=32).hexdigest(),
                              "commit": hashlib.sha1(h.encode()).hexdigest()}, separators=(",", ":"))
        elif k == 6:
            yield f"{ts} WARN  retrying upload s3://evidence/ledger/objects/{h[:2]}/{h} attempt={r.randint(1, 5)} " \
                  f"host=ip-172-31-{r.randint(0, 255)}-{r.randint(0, 255)}.eu-west-1.compute.internal"
        elif k == 7:
            yield f"{ts} DEBUG auth ok user=svc-pipeline session={u} token_expires_in=3600"
        elif k == 8:
            yield f'"{ts}","{r.choice(topics)}",{r.randint(0, 11)},{r.randint(0, 10**12)},"{uuid.UUID(int=i).hex}"'
        elif k == 9:
            yield json.dumps({"key": f"customer-{i}", "value": {"amount": r.randint(1, 999), "currency": "EUR"},
                              "digest": h, "md5": hashlib.md5(h.encode()).hexdigest()})
        elif k == 10:
            yield f'    "integrity": "sha512-{base64.b64encode(bl.det_bytes(h, 64)).decode()}",'
        else:
            yield f"{ts} ERROR java.lang.IllegalStateException: rebalance in progress at org.apache.kafka." \
                  f"clients.consumer.internals.ConsumerCoordinator.onJoinComplete(ConsumerCoordinator.java:" \
                  f"{r.randint(100, 999)})"


def write_evidence(path: str, size: int) -> None:
    with open(path, "w") as f:
        written, batch = 0, []
        for line in evidence_lines(2026):
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
        contenders: dict[str, Callable[[str], None]] = {
            "read": read_only, "read + BLAKE3": read_blake3, "Scanner().check_file": scan}
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
        print("| data | read | read + BLAKE3 | `Scanner().check_file` | scan time ÷ (read + BLAKE3) time "
              "| candidate lines confirmed |")
        print("|---|---|---|---|---|---|")
        for label, nbytes, med, candidates in rows:
            def mbs(name: str, nbytes: int = nbytes, med: dict[str, float] = med) -> str:
                return f"{nbytes / med[name] / 1e6:,.0f} MB/s"

            print(f"| {label} | {mbs('read')} | {mbs('read + BLAKE3')} | {mbs('Scanner().check_file')} | "
                  f"{med['Scanner().check_file'] / med['read + BLAKE3']:.2f}× | {candidates:,} |")
        busy = bl.BUSY_SAMPLES
        if busy:
            print(f"\nmachine busy before the timed steps: median {statistics.median(busy):.0%}, "
                  f"max {max(busy):.0%} (other load skews absolute figures; compare the ratios)")
    finally:
        bl.drop_tree(root)


if __name__ == "__main__":
    main()
