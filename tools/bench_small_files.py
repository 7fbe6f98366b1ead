#!/usr/bin/env python3
"""Benchmark: many small files. 100,000 files of 1 KiB in 100 directories (defaults), generated deterministically.

Contenders, on the same data in the same run (warm page cache), each from a fresh store/repository per repetition:

* ``ledger add RUN DATA`` + ``ledger seal RUN --key K`` (stores the content, signs a closure commit)
* ``git add -A && git commit -q`` in a fresh repository (stores the content, unsigned)
* ``in-toto-run -x -p . --step-name bench --signing-key K.pem`` (a signed record of SHA-256 hashes only)
* ``find . -type f -print0 | xargs -0 sha256sum > manifest`` (hashes only, unsigned)
* the floor: a plain Python loop that reads, BLAKE3-hashes and appends every file to one pack file

Target (issue 2, item 9): ledger <= 0.3x git's wall time, and faster than in-toto-run.

    python tools/bench_small_files.py [--files 100000] [--dirs 100] [--size 1024] [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402

FLOOR = r"""
import os, sys, blake3
root, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as pack:
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for fn in sorted(files):
            with open(os.path.join(dirpath, fn), "rb") as f:
                data = f.read()
            blake3.blake3(data).digest()
            pack.write(data)
    pack.flush()
    os.fsync(pack.fileno())
"""


def generate(root: str, files: int, dirs: int, size: int) -> None:
    blob = bl.det_bytes("ledger-bench small-files", files * size)
    per_dir = -(-files // dirs)
    n = 0
    for d in range(dirs):
        dpath = os.path.join(root, f"d{d:03d}")
        os.makedirs(dpath)
        for i in range(per_dir):
            if n == files:
                break
            with open(os.path.join(dpath, f"f{i:05d}.bin"), "wb") as f:
                f.write(blob[n * size:(n + 1) * size])
            n += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--dirs", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="parent directory for the temporary data (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--skip", action="append", default=[], choices=["git", "in-toto", "sha256sum", "floor"],
                    help="skip a contender (repeatable)")
    ap.add_argument("--verify", action="store_true", help="also time `ledger verify` (informational)")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for an idle machine before each step")
    ap.add_argument("--prefault-mib", type=int, default=1024,
                    help="touch this much memory just before each step (VM memory effects; 0: off)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args()

    base = bl.tmpdir("ledger-bench-small-", args.tmp)
    data = os.path.join(base, "data")
    work = os.path.join(base, "work")
    os.makedirs(work)
    lg = bl.ledger_cmd()
    bl.use_bytecode_cache(os.path.join(base, "pycache"))
    try:
        print(f"generating {args.files} files of {args.size} bytes in {args.dirs} directories under {data}",
              file=sys.stderr)
        generate(data, args.files, args.dirs, args.size)
        key = os.path.join(base, "sealer.key")
        bl.run([*lg, "keys", "generate", "--out", key])
        pem = os.path.join(base, "intoto.pem")
        bl.write_pkcs8_ed25519(pem)
        bl.warm([data])

        rows: list[bl.Row] = []
        task = f"{args.files // 1000}k x {args.size} B"

        def fresh_store(i: int) -> str:
            st = os.path.join(work, f"store{i}")
            bl.run([*lg, "--store", st, "init"])
            return st

        contenders = [bl.Contender(
            "ledger", setup=fresh_store, teardown=bl.drop_tree,
            step=lambda st: [bl.run([*lg, "--store", st, "add", "bench", data]),
                             bl.run([*lg, "--store", st, "seal", "bench", "--key", key])])]

        if "git" not in args.skip:
            home = os.path.join(work, "home")
            os.makedirs(home, exist_ok=True)
            genv = bl.git_env(home)

            def git_setup(i: int) -> str:
                g = os.path.join(work, f"git{i}")
                bl.run(["git", "init", "-q", "--bare", g], env=genv)
                return g

            def git_step(g: str) -> list[bl.Proc]:
                gargs = ["git", f"--git-dir={g}", f"--work-tree={data}"]
                return [bl.run([*gargs, "add", "-A"], env=genv),
                        bl.run([*gargs, "commit", "-q", "-m", "bench"], env=genv)]

            contenders.append(bl.Contender("git", git_step, git_setup, bl.drop_tree))

        intoto = bl.console_script("in-toto-run")
        if intoto is None and "in-toto" not in args.skip:
            print("in-toto-run not found (pip install in-toto): skipping it", file=sys.stderr)
        if intoto is not None and "in-toto" not in args.skip:
            def it_setup(i: int) -> str:
                d = os.path.join(work, f"intoto{i}")
                os.makedirs(d)
                return d

            def it_step(d: str) -> list[bl.Proc]:
                assert intoto is not None
                p = bl.run([intoto, "-x", "-p", ".", "--step-name", "bench", "--signing-key", pem, "-d", d, "-q"],
                           cwd=data)
                if not any(f.endswith(".link") for f in os.listdir(d)):
                    raise SystemExit("in-toto-run wrote no link file")
                return [p]

            contenders.append(bl.Contender("in-toto", it_step, it_setup, bl.drop_tree))

        manifest = os.path.join(work, "manifest")
        if "sha256sum" not in args.skip:
            contenders.append(bl.Contender(
                "sha256sum", lambda _: [bl.run("find . -type f -print0 | xargs -0 sha256sum", cwd=data,
                                               stdout_path=manifest)]))
        pack = os.path.join(work, "floor.pack")
        if "floor" not in args.skip:
            contenders.append(bl.Contender("floor", lambda _: [bl.run([sys.executable, "-c", FLOOR, data, pack])]))

        m = bl.interleave(contenders, args.reps, quiet=not args.no_wait,
                          prefault_mib=args.prefault_mib)
        led = m["ledger"]
        rows.append(bl.Row(task, "ledger add + seal", led, led))
        if "git" in m:
            rows.append(bl.Row(task, "git add -A && git commit", m["git"], led, "ledger <= 0.3x git",
                               led.median <= 0.3 * m["git"].median))
        if "in-toto" in m:
            rows.append(bl.Row(task, "in-toto-run -x -p . (signed)", m["in-toto"], led, "ledger < in-toto-run",
                               led.median < m["in-toto"].median))
        if "sha256sum" in m:
            rows.append(bl.Row(task, "find | xargs sha256sum > manifest", m["sha256sum"], led))
        if "floor" in m:
            rows.append(bl.Row(task, "python read+b3+append loop (floor)", m["floor"], led))

        # One more (untimed) store, to size it and to time verify on it.
        store = fresh_store(-1)  # "store-1": not one of the timed runs' directories
        bl.run([*lg, "--store", store, "add", "bench", data])
        bl.run([*lg, "--store", store, "seal", "bench", "--key", key])
        store_bytes = bl.du(store)
        if args.verify:
            mv = bl.interleave([bl.Contender("ledger verify", lambda _: [
                bl.run([*lg, "--store", store, "verify", "bench", "--trust", key + ".pub"])])], args.reps,
                quiet=not args.no_wait)
            rows.append(bl.Row(task, "ledger verify (informational)", mv["ledger verify"], None))

        bl.print_table(f"small files: {args.files} x {args.size} B in {args.dirs} dirs, median of {args.reps}",
                       rows)
        print(f"\nledger store size: {store_bytes / bl.MiB:.1f} MiB for {args.files * args.size / bl.MiB:.1f} MiB "
              "of content")
        if "git" in m:  # git's times vary most (100k files created, and deleted, per run): the strict reading
            g = min(m["git"].walls)
            print(f"ledger median / git's fastest run: {led.median / g:.2f}x (target 0.3x: "
                  f"{'met' if led.median <= 0.3 * g else 'NOT met'})")
        bl.write_json(args.json, "small_files", vars(args), rows, {"ledger_store_bytes": store_bytes})
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            bl.drop_tree(base)


if __name__ == "__main__":
    main()
