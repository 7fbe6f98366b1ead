#!/usr/bin/env python3
"""Benchmark: a few large files. 1 GiB in 8 files (defaults) of deterministic, incompressible bytes.

Recording, each into a fresh store/target, deleted again right after its step (so every contender writes into
memory the page cache just freed: kept output would make the next writer fault in fresh pages, which on a VM
costs several times more), after ``sync``, contenders interleaved:

* ``ledger add RUN DATA`` + ``ledger seal RUN --key K`` (copies into the store, hashes, fsyncs, signs)
* ``cp -r DATA COPY && b3sum COPY/*`` (copies and hashes, nothing made durable) -- target: ledger <= 1.5x
* ``cp -r DATA COPY && sync COPY/* && b3sum COPY/*`` (the same, durable as ledger's copy is)
* ``git add -A && git commit -q`` in a fresh repository (zlib-compresses every object)

Verifying (warm page cache):

* ``ledger verify RUN --trust K.pub`` (signature, every byte re-hashed, tree rebuilt, chain, marker)
* ``b3sum DATA/*`` alone -- target: ledger <= 1.5x
* ``git fsck --full`` on a repository holding the same files (git's own re-hash of every object)

The fixed cost of starting the ``ledger`` CLI (interpreter + imports, ``ledger --version``) is reported too:
it is a constant, so it weighs less the more data a run holds.

Floors, to tell a slow implementation from an unreachable target on the machine at hand:

* the secret scan's prefilter alone over the same files on one thread per CPU (in this process, as ``ledger add``
  runs it): every byte recorded goes through it before it is stored, so ``add`` cannot be faster;
* the interpreter ledger runs on, importing only the libraries every ledger command needs (click, cryptography's
  Ed25519, blake3, msgpack) and nothing of ledger: no command built on them starts faster.

    python tools/bench_large_files.py [--files 8] [--total-mib 1024] [--reps 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchlib as bl  # noqa: E402
from bench_secrets import prefilter  # noqa: E402

from ledger.evidence import _scan_threads  # noqa: E402

CHUNK = 8 * bl.MiB
# What every ledger command imports before any of its own code: the verify floor's start-up.
DEPENDENCIES = "import click, blake3, msgpack, cryptography.hazmat.primitives.asymmetric.ed25519"


def generate(root: str, files: int, total: int) -> list[str]:
    os.makedirs(root)
    size = total // files
    paths = []
    for i in range(files):
        p = os.path.join(root, f"large{i:02d}.bin")
        with open(p, "wb") as f:
            off = 0
            while off < size:
                n = min(CHUNK, size - off)
                f.write(bl.det_bytes(f"ledger-bench large-files {i}", n, off))
                off += n
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--total-mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tmp", default=None, help="parent directory for the temporary data (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--skip-git", action="store_true", help="skip git (slow: it compresses every byte)")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine before each step")
    ap.add_argument("--prefault-mib", type=int, default=3072,
                    help="touch this much memory just before each step (VM memory effects; 0: off)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args()

    base = bl.tmpdir("ledger-bench-large-", args.tmp)
    data = os.path.join(base, "data")
    work = os.path.join(base, "work")
    os.makedirs(work)
    lg = bl.ledger_cmd()
    bl.use_bytecode_cache(os.path.join(base, "pycache"))
    total = args.total_mib * bl.MiB
    try:
        print(f"generating {args.files} files, {args.total_mib} MiB in all, under {data}", file=sys.stderr)
        files = generate(data, args.files, total)
        key = os.path.join(base, "sealer.key")
        bl.run([*lg, "keys", "generate", "--out", key])
        bl.warm([data])
        task_rec = f"record {args.total_mib} MiB/{args.files}"
        task_ver = f"verify {args.total_mib} MiB/{args.files}"
        rows: list[bl.Row] = []

        def fresh_store(i: int) -> str:
            st = os.path.join(work, f"store{i}")
            bl.run([*lg, "--store", st, "init"])
            return st

        def ledger_step(st: str) -> list[bl.Proc]:
            return [bl.run([*lg, "--store", st, "add", "bench", data]),
                    bl.run([*lg, "--store", st, "seal", "bench", "--key", key])]

        def copy_dir(i: int) -> str:
            return os.path.join(work, f"copy{i}")

        rec = [bl.Contender("ledger", ledger_step, fresh_store, bl.drop_tree),
               bl.Contender("cp", lambda d: [bl.run(f"cp -r {data} {d} && b3sum {d}/* > /dev/null")], copy_dir,
                            bl.drop_tree),
               bl.Contender("cp-sync", lambda d: [bl.run(f"cp -r {data} {d} && sync {d}/* && b3sum {d}/* > /dev/null")],
                            copy_dir, bl.drop_tree)]
        home = os.path.join(work, "home")
        os.makedirs(home, exist_ok=True)
        genv = bl.git_env(home)
        if not args.skip_git:
            def git_setup(i: int) -> str:
                g = os.path.join(work, f"git{i}")
                bl.run(["git", "init", "-q", "--bare", g], env=genv)
                return g

            def git_step(g: str) -> list[bl.Proc]:
                gargs = ["git", f"--git-dir={g}", f"--work-tree={data}"]
                return [bl.run([*gargs, "add", "-A"], env=genv),
                        bl.run([*gargs, "commit", "-q", "-m", "bench"], env=genv)]

            rec.append(bl.Contender("git", git_step, git_setup, bl.drop_tree))
        m = bl.interleave(rec, args.reps, quiet=not args.no_wait,
                          prefault_mib=args.prefault_mib)
        led = m["ledger"]
        rows.append(bl.Row(task_rec, "ledger add + seal", led, led))
        rows.append(bl.Row(task_rec, "cp -r + b3sum (copies)", m["cp"], led, "ledger <= 1.5x",
                           led.median <= 1.5 * m["cp"].median))
        rows.append(bl.Row(task_rec, "cp -r + sync + b3sum (durable)", m["cp-sync"], led, "ledger <= 1.5x",
                           led.median <= 1.5 * m["cp-sync"].median))
        if "git" in m:
            rows.append(bl.Row(task_rec, "git add -A && git commit", m["git"], led))

        # --- verifying (warm page cache) ------------------------------------------------------------------------
        store = fresh_store(-1)  # "store-1": not one of the timed runs' directories
        ledger_step(store)
        git_dir = None
        if not args.skip_git:
            git_dir = os.path.join(work, "git-final")
            bl.run(["git", "init", "-q", "--bare", git_dir], env=genv)
            bl.run(["git", f"--git-dir={git_dir}", f"--work-tree={data}", "add", "-A"], env=genv)
            bl.run(["git", f"--git-dir={git_dir}", f"--work-tree={data}", "commit", "-q", "-m", "bench"], env=genv)
        bl.warm([store, data] + ([git_dir] if git_dir else []))
        ver = [bl.Contender("ledger verify", lambda _: [
                   bl.run([*lg, "--store", store, "verify", "bench", "--trust", key + ".pub"])]),
               bl.Contender("b3sum", lambda _: [bl.run(["b3sum", *files])]),
               bl.Contender("start-up", lambda _: [bl.run([*lg, "--version"])]),
               bl.Contender("python", lambda _: [bl.run([sys.executable, "-c", DEPENDENCIES])])]
        if git_dir is not None:
            ver.append(bl.Contender("git fsck", lambda _: [
                bl.run(["git", f"--git-dir={git_dir}", "fsck", "--full", "--no-progress"], env=genv)]))
        mv = bl.interleave(ver, args.reps, quiet=not args.no_wait)  # reads only: no memory to fault in
        lv, b3, startup = mv["ledger verify"], mv["b3sum"], mv["start-up"]
        rows.append(bl.Row(task_ver, "ledger verify", lv, lv))
        rows.append(bl.Row(task_ver, "b3sum (the 8 files)", b3, lv, "ledger <= 1.5x", lv.median <= 1.5 * b3.median))
        if "git fsck" in mv:
            rows.append(bl.Row(task_ver, "git fsck --full", mv["git fsck"], lv))
        if "git" in m:
            rows.append(bl.Row(task_ver, "git add -A && git commit", m["git"], lv))
        rows.append(bl.Row("fixed cost", "ledger --version (CLI start-up)", startup, None))
        rows.append(bl.Row("fixed cost", "python importing ledger's dependencies", mv["python"], None))
        m_rec, m_cp, m_b3, m_ver = led, m["cp"], b3, lv
        threads = _scan_threads()
        scan_walls = []
        for _ in range(max(3, args.reps)):
            t0 = time.perf_counter()
            for path in files:
                prefilter(path, threads)
            scan_walls.append(time.perf_counter() - t0)
        scan_floor = statistics.median(scan_walls)

        bl.print_table(f"large files: {args.files} x {args.total_mib // args.files} MiB, median of {args.reps}",
                       rows)
        net_ver = m_ver.median - startup.median
        print(f"\nledger verify minus CLI start-up: {net_ver:.3f} s = {net_ver / m_b3.median:.2f}x b3sum; "
              f"ledger add + seal minus two start-ups: {m_rec.median - 2 * startup.median:.3f} s = "
              f"{(m_rec.median - 2 * startup.median) / m_cp.median:.2f}x cp + b3sum")
        py = mv["python"].median
        print(f"floor of add: the secret prefilter alone on {threads} threads takes {scan_floor:.3f} s "
              f"({total / scan_floor / 1e9:.2f} GB/s), against a budget of {1.5 * m_cp.median:.3f} s for add + seal "
              f"(1.5x cp + b3sum)")
        print(f"floor of verify: Python importing ledger's dependencies {py:.3f} s + hashing at b3sum's speed "
              f"{m_b3.median:.3f} s = "
              f"{py + m_b3.median:.3f} s, against a budget of {1.5 * m_b3.median:.3f} s (1.5x b3sum)")
        bl.write_json(args.json, "large_files", vars(args), rows,
                      {"ledger_verify_minus_startup_s": round(net_ver, 4),
                       "scan_floor_s": round(scan_floor, 4), "scan_threads": threads,
                       "dependencies_startup_s": round(py, 4)})
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            bl.drop_tree(base)


if __name__ == "__main__":
    main()
