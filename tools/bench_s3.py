#!/usr/bin/env python3
"""Benchmark: requests, bytes and wall time of ledger on S3, against the same work on the local store.

Every HTTP request the S3 client sends (retries included) is counted by a botocore ``before-send`` event hook in
``ledger.storage.s3.S3Store``; this script drives the Python API (``ledger.Ledger``) in-process so it can read
those counters per phase:

* small files: ``--files`` files of ``--size`` bytes in ``--dirs`` directories (default 100,000 x 1 KiB):
  ``add`` + ``seal`` (target: at most 1 write request -- PUT, UploadPart, CompleteMultipartUpload -- per 100 items),
  then ``verify`` (every byte read back and re-hashed);
* large files: ``--large-files`` files of ``--large-mib`` MiB each (default 4 x 64 MiB), added to one run and then
  the same files to a second run: the second add must send no content (content already stored is not uploaded).

By default the S3 endpoint is moto's server on loopback (tests/s3server.py, started here, no lock wrapper, no
faults), so wall times measure ledger plus a Python S3 server on the same 2 CPUs, not a network. ``--endpoint URL
--bucket NAME`` runs against any S3-compatible endpoint with the usual AWS credentials instead.

    python tools/bench_s3.py [--files 100000] [--size 1024] [--large-files 4 --large-mib 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import benchlib as bl  # noqa: E402
from bench_small_files import generate  # noqa: E402
from s3server import start_server, stop_server  # noqa: E402

WRITES = ("PutObject", "UploadPart", "CompleteMultipartUpload", "CreateMultipartUpload", "DeleteObject")


def phase(store: Any, fn: Any) -> tuple[float, Counter[str], int]:
    before, sent = Counter(store.requests), store.bytes_sent
    t = time.perf_counter()
    fn()
    wall = time.perf_counter() - t
    return wall, Counter(store.requests) - before, store.bytes_sent - sent


def fmt_counts(c: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--dirs", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--large-files", type=int, default=4)
    ap.add_argument("--large-mib", type=int, default=64)
    ap.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto's server")
    ap.add_argument("--bucket", default="ledger-bench")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()

    proc = None
    if args.endpoint:
        endpoint = args.endpoint
    else:
        proc, endpoint = start_server(lock=False)
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ["AWS_ENDPOINT_URL"] = endpoint

    import boto3

    from ledger import Ledger
    from ledger.keys import generate_keyfile, load_public_key, load_signing_key
    from ledger.storage.local import LocalStore
    from ledger.storage.s3 import S3Store

    client = boto3.session.Session().client("s3")
    try:
        client.head_bucket(Bucket=args.bucket)
    except Exception:  # noqa: BLE001
        client.create_bucket(Bucket=args.bucket)

    base = bl.tmpdir("ledger-bench-s3-", args.tmp)
    data, large = os.path.join(base, "data"), os.path.join(base, "large")
    results: list[dict[str, Any]] = []
    try:
        print(f"generating {args.files} files of {args.size} bytes under {data}", file=sys.stderr)
        generate(data, args.files, args.dirs, args.size)
        os.makedirs(large)
        for i in range(args.large_files):
            with open(os.path.join(large, f"large{i}.bin"), "wb") as f:
                for off in range(0, args.large_mib * bl.MiB, 8 * bl.MiB):
                    f.write(bl.det_bytes(f"ledger-bench s3 large {i}", 8 * bl.MiB, off))
        keyfile = os.path.join(base, "sealer.key")
        generate_keyfile(keyfile)
        key, pub = load_signing_key(keyfile), load_public_key(keyfile + ".pub")
        bl.warm([data, large])

        stores = {"local": LocalStore(os.path.join(base, "store")),
                  "s3": S3Store(f"s3://{args.bucket}/bench-{uuid.uuid4().hex[:8]}")}
        for name, store in stores.items():
            lg = Ledger(store)
            lg.init()
            counted = isinstance(store, S3Store)
            steps: list[tuple[str, Any, int]] = [
                (f"add {args.files // 1000}k x {args.size} B", lambda lg=lg: lg.add("small", [data]), args.files),
                ("seal", lambda lg=lg: lg.seal("small", key), args.files),
                ("verify", lambda lg=lg: lg.verify("small", [pub]), args.files),
                (f"add {args.large_files} x {args.large_mib} MiB", lambda lg=lg: lg.add("large", [large]),
                 args.large_files),
                ("add the same again (new run)", lambda lg=lg: lg.add("again", [large]), args.large_files),
            ]
            for step, fn, items in steps:
                if counted:
                    wall, reqs, sent = phase(store, fn)
                else:
                    t = time.perf_counter()
                    fn()
                    wall, reqs, sent = time.perf_counter() - t, Counter(), 0
                writes = sum(v for k, v in reqs.items() if k in WRITES)
                row = {"store": name, "step": step, "items": items, "wall_s": round(wall, 3),
                       "requests": sum(reqs.values()), "write_requests": writes, "bytes_sent": sent,
                       "by_operation": dict(reqs)}
                results.append(row)
                extra = ""
                if counted:
                    extra = (f"  requests {sum(reqs.values())} ({fmt_counts(reqs)}); writes per 100 items "
                             f"{100 * writes / items:.3f}; sent {sent / bl.MiB:.1f} MiB")
                print(f"{name:<6} {step:<34} {wall:8.2f} s{extra}")
        small_writes = sum(r["write_requests"] for r in results if r["store"] == "s3" and r["step"] != "verify"
                           and r["items"] == args.files)
        print(f"\nS3 add + seal of {args.files} small items: {small_writes} write requests = "
              f"{100 * small_writes / args.files:.3f} per 100 items (target: <= 1)")
        again = next(r for r in results if r["store"] == "s3" and r["step"].startswith("add the same"))
        print(f"S3 re-adding {args.large_files} x {args.large_mib} MiB already stored: "
              f"{again['by_operation'].get('UploadPart', 0)} parts uploaded, {again['bytes_sent']} bytes sent")
        if args.json:
            import json

            with open(args.json, "w") as f:
                json.dump({"benchmark": "s3", "machine": bl.machine(), "endpoint": "moto server (loopback)"
                           if proc else "custom", "params": vars(args), "results": results}, f, indent=2)
                f.write("\n")
    finally:
        bl.drop_tree(base)
        if proc is not None:
            stop_server(proc)


if __name__ == "__main__":
    main()
