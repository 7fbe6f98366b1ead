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
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args()

    base = bl.tmpdir("ledger-bench-small-", args.tmp)
    data = os.path.join(base, "data")
    work = os.path.join(base, "work")
    os.makedirs(work)
    lg = bl.ledger_cmd()
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

        def store_setup(i: int) -> str:
            s = os.path.join(work, f"store{i}")
            bl.run([*lg, "--store", s, "init"])
            return s

        def ledger_step(s: str) -> list[bl.Proc]:
            return [bl.run([*lg, "--store", s, "add", "bench", data]),
                    bl.run([*lg, "--store", s, "seal", "bench", "--key", key])]

        stores: list[str] = []
        m_ledger = bl.repeat("ledger add + seal", args.reps, store_setup, ledger_step, stores.append)
        rows.append(bl.Row(task, "ledger", m_ledger, m_ledger))
        store_bytes = bl.du(stores[-1])

        verify_m = None
        if args.verify:
            verify_m = bl.repeat("ledger verify (informational)", args.reps, None,
                                 lambda _: [bl.run([*lg, "--store", stores[-1], "verify", "bench", "--trust",
                                                    key + ".pub"])])
            rows.append(bl.Row(task, "ledger verify", verify_m, None))
        for s in stores:
            bl.drop_tree(s)

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

            m = bl.repeat("git add -A + commit", args.reps, git_setup, git_step, bl.drop_tree)
            rows.append(bl.Row(task, "git add -A && git commit", m, m_ledger, "ledger <= 0.3x git",
                               m_ledger.median <= 0.3 * m.median))

        intoto = bl.console_script("in-toto-run")
        if intoto is None and "in-toto" not in args.skip:
            print("in-toto-run not found (pip install in-toto): skipping it", file=sys.stderr)
        if intoto is not None and "in-toto" not in args.skip:
            def it_setup(i: int) -> str:
                d = os.path.join(work, f"intoto{i}")
                os.makedirs(d)
                return d

            def it_step(d: str) -> list[bl.Proc]:
                p = bl.run([intoto, "-x", "-p", ".", "--step-name", "bench", "--signing-key", pem,
                            "-d", d, "-q"], cwd=data)
                if not any(f.endswith(".link") for f in os.listdir(d)):
                    raise SystemExit("in-toto-run wrote no link file")
                return [p]

            m = bl.repeat("in-toto-run -x -p .", args.reps, it_setup, it_step, bl.drop_tree)
            rows.append(bl.Row(task, "in-toto-run -x -p . (signed)", m, m_ledger, "ledger < in-toto-run",
                               m_ledger.median < m.median))

        if "sha256sum" not in args.skip:
            manifest = os.path.join(work, "manifest")
            m = bl.repeat("find | xargs sha256sum", args.reps, None,
                          lambda _: [bl.run("find . -type f -print0 | xargs -0 sha256sum", cwd=data,
                                            stdout_path=manifest)])
            rows.append(bl.Row(task, "find | xargs -0 sha256sum > manifest", m, m_ledger))

        if "floor" not in args.skip:
            pack = os.path.join(work, "floor.pack")
            m = bl.repeat("python read+blake3+append floor", args.reps, None,
                          lambda _: [bl.run([sys.executable, "-c", FLOOR, data, pack])])
            rows.append(bl.Row(task, "python loop: read, b3, append (floor)", m, m_ledger))

        bl.print_table(f"small files: {args.files} x {args.size} B in {args.dirs} dirs, median of {args.reps}",
                       rows)
        print(f"\nledger store size: {store_bytes / bl.MiB:.1f} MiB for {args.files * args.size / bl.MiB:.1f} MiB "
              "of content")
        bl.write_json(args.json, "small_files", vars(args), rows, {"ledger_store_bytes": store_bytes})
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            bl.drop_tree(base)


if __name__ == "__main__":
    main()
