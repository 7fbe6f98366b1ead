#!/usr/bin/env python3
"""Benchmark: a few large files. 1 GiB in 8 files (defaults) of deterministic, incompressible bytes.

Recording, each from a fresh store/target per repetition, after ``sync`` (no dirty pages left by the previous one):

* ``ledger add RUN DATA`` + ``ledger seal RUN --key K`` (copies into the store, hashes, fsyncs, signs)
* ``cp -r DATA COPY && b3sum COPY/*`` (copies and hashes, no fsync) — target: ledger <= 1.5x
* ``git add -A && git commit -q`` in a fresh repository (zlib-compresses every object)

Verifying the recorded data (warm page cache):

* ``ledger verify RUN --trust K.pub`` (signature, every byte re-hashed, tree rebuilt, chain, marker)
* ``b3sum DATA/*`` alone — target: ledger <= 1.5x
* ``git fsck --full`` on the repository above (git's own re-hash of every object), for comparison

The fixed cost of starting the ``ledger`` CLI (interpreter + imports, ``ledger --version``) is reported too:
it is a constant, so it weighs less the more data a run holds.

    python tools/bench_large_files.py [--files 8] [--total-mib 1024] [--reps 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402

CHUNK = 8 * bl.MiB


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


def sync() -> None:
    os.sync()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--total-mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tmp", default=None, help="parent directory for the temporary data (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--skip-git", action="store_true", help="skip git (slow: it compresses every byte)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args()

    base = bl.tmpdir("ledger-bench-large-", args.tmp)
    data = os.path.join(base, "data")
    work = os.path.join(base, "work")
    os.makedirs(work)
    lg = bl.ledger_cmd()
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

        startup = bl.repeat("ledger --version (CLI start-up)", args.reps, None,
                            lambda _: [bl.run([*lg, "--version"])])

        # --- recording ---------------------------------------------------------------------------------------
        def store_setup(i: int) -> str:
            s = os.path.join(work, f"store{i}")
            bl.run([*lg, "--store", s, "init"])
            sync()
            return s

        def ledger_step(s: str) -> list[bl.Proc]:
            return [bl.run([*lg, "--store", s, "add", "bench", data]),
                    bl.run([*lg, "--store", s, "seal", "bench", "--key", key])]

        stores: list[str] = []
        m_rec = bl.repeat("ledger add + seal", args.reps, store_setup, ledger_step, stores.append)
        rows.append(bl.Row(task_rec, "ledger", m_rec, m_rec))
        for s in stores[:-1]:
            bl.drop_tree(s)
        store = stores[-1]

        def cp_setup(i: int) -> str:
            d = os.path.join(work, f"copy{i}")
            sync()
            return d

        m_cp = bl.repeat("cp -r + b3sum", args.reps, cp_setup,
                         lambda d: [bl.run(f"cp -r {data} {d} && b3sum {d}/* > /dev/null")], bl.drop_tree)
        rows.append(bl.Row(task_rec, "cp -r + b3sum (copies)", m_cp, m_rec, "ledger <= 1.5x",
                           m_rec.median <= 1.5 * m_cp.median))

        git_dir = None
        m_git = None
        if not args.skip_git:
            home = os.path.join(work, "home")
            os.makedirs(home, exist_ok=True)
            genv = bl.git_env(home)
            gits: list[str] = []

            def git_setup(i: int) -> str:
                g = os.path.join(work, f"git{i}")
                bl.run(["git", "init", "-q", "--bare", g], env=genv)
                sync()
                return g

            def git_step(g: str) -> list[bl.Proc]:
                gargs = ["git", f"--git-dir={g}", f"--work-tree={data}"]
                return [bl.run([*gargs, "add", "-A"], env=genv),
                        bl.run([*gargs, "commit", "-q", "-m", "bench"], env=genv)]

            m_git = bl.repeat("git add -A + commit", args.reps, git_setup, git_step, gits.append)
            rows.append(bl.Row(task_rec, "git add -A && git commit", m_git, m_rec))
            for g in gits[:-1]:
                bl.drop_tree(g)
            git_dir = gits[-1]

        # --- verifying -----------------------------------------------------------------------------------------
        bl.warm([store, data])
        m_ver = bl.repeat("ledger verify", args.reps, None,
                          lambda _: [bl.run([*lg, "--store", store, "verify", "bench", "--trust", key + ".pub"])])
        rows.append(bl.Row(task_ver, "ledger verify", m_ver, m_ver))
        m_b3 = bl.repeat("b3sum", args.reps, None, lambda _: [bl.run(["b3sum", *files])])
        rows.append(bl.Row(task_ver, "b3sum (the 8 files)", m_b3, m_ver, "ledger <= 1.5x",
                           m_ver.median <= 1.5 * m_b3.median))
        if git_dir is not None:
            m_fsck = bl.repeat("git fsck --full", args.reps, None,
                               lambda _: [bl.run(["git", f"--git-dir={git_dir}", "fsck", "--full", "--no-progress"],
                                                 env=bl.git_env(os.path.join(work, "home")))])
            rows.append(bl.Row(task_ver, "git fsck --full", m_fsck, m_ver))
            assert m_git is not None
            rows.append(bl.Row(task_ver, "git add -A && git commit", m_git, m_ver))
        rows.append(bl.Row("fixed cost", "ledger --version (CLI start-up)", startup, None))

        bl.print_table(f"large files: {args.files} x {args.total_mib // args.files} MiB, median of {args.reps}",
                       rows)
        net_ver = m_ver.median - startup.median
        print(f"\nledger verify minus CLI start-up: {net_ver:.3f} s = {net_ver / m_b3.median:.2f}x b3sum; "
              f"ledger add + seal minus two start-ups: {m_rec.median - 2 * startup.median:.3f} s = "
              f"{(m_rec.median - 2 * startup.median) / m_cp.median:.2f}x cp + b3sum")
        bl.write_json(args.json, "large_files", vars(args), rows,
                      {"ledger_verify_minus_startup_s": round(net_ver, 4)})
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            bl.drop_tree(base)


if __name__ == "__main__":
    main()
