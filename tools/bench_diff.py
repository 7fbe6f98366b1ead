#!/usr/bin/env python3
"""Diff two large sealed runs that differ in a few items: `ledger diff` vs diffing two sorted manifests.

Two runs of ``--items`` small records (default 1,000,000) are staged through ledger's staging layer (one batch each,
as tools/bench_memory.py does) and sealed into one local store; run B is run A with ``--changes`` items changed
(a third of them changed content, a third removed, a third added). Timed, interleaved, each ``--reps`` times:

* ``ledger diff A B --json`` (the whole CLI: start-up, opening both runs, the walk) -- issue 6's target is < 1 s,
  and it reports the tree nodes it read;
* ``ledger diff A B --stat``;
* ``diff manifest-A manifest-B`` and ``comm -3`` over two sorted ``<name>  <blake3>`` manifests of the same runs
  (what a user without ledger would keep: one line per item, sorted by name). Writing the manifests is not
  timed: the contender gets them for free.

Prints a table; ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402

STAGE = r"""
import sys, time
from ledger import Ledger
from ledger.evidence import _Stager, canonical_json

store, run, n, changes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lg = Ledger.open(store)
lg.init()
t0 = time.perf_counter()
st = _Stager(lg.store, run)
step = max(1, n // max(1, changes))
changed = set(range(0, n, step)[:changes]) if changes else set()
for i in range(n):
    rows = (i * 7919) % 100003
    name = f"records/{i // 1000:04d}/{i:07d}.json"
    if i in changed:
        how = (i // step) % 3
        if how == 1:
            continue  # removed in run B
        if how == 2:  # added in run B, next to the unchanged original
            st.add_bytes(f"records/{i // 1000:04d}/{i:07d}-new.json", "json", canonical_json({"i": -i}))
        else:
            rows += 1  # changed content
    st.add_bytes(name, "json", canonical_json({"i": i, "ok": i % 7 != 0, "rows": rows}))
st.commit()
print(f"staged {run}: {n} records in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tmp", default=None, help="parent directory for the temporary data (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()

    base = bl.tmpdir("ledger-bench-diff-", args.tmp)
    try:
        bl.use_bytecode_cache(base)
        store = os.path.join(base, "store")
        key = os.path.join(base, "key")
        ledger = bl.ledger_cmd()
        env = dict(os.environ, LEDGER_STORE=store)
        bl.run([*ledger, "keys", "generate", "--out", key], env=env)
        for run, changes in (("run-a", 0), ("run-b", args.changes)):
            bl.run([sys.executable, "-c", STAGE, store, run, str(args.items), str(changes)])
            print(f"sealing {run}", file=sys.stderr)
            bl.run([*ledger, "seal", run, "--key", key], env=env)
        manifests = []
        for run in ("run-a", "run-b"):
            path = os.path.join(base, f"{run}.manifest")
            bl.run(f"{' '.join(ledger)} ls {run} | awk '{{print $4\"  \"$1}}' | LC_ALL=C sort > {path}", env=env)
            manifests.append(path)
        probe = bl.run([*ledger, "diff", "run-a", "run-b", "--json"], env=env)
        doc = json.loads(probe.stdout)
        stat, nodes = doc["stat"], doc["nodes_read"]
        print(f"diff: {stat}, {nodes} tree nodes read", file=sys.stderr)

        c_env = dict(env, LC_ALL="C")
        contenders = [
            bl.Contender("ledger diff --json", lambda _: [bl.run([*ledger, "diff", "run-a", "run-b", "--json"],
                                                                 env=env)]),
            bl.Contender("ledger diff --stat", lambda _: [bl.run([*ledger, "diff", "run-a", "run-b", "--stat"],
                                                                 env=env)]),
            bl.Contender("diff manifest-A manifest-B", lambda _: [bl.run(["diff", *manifests], env=c_env,
                                                                         check=False)]),
            bl.Contender("comm -3 manifest-A manifest-B", lambda _: [bl.run(["comm", "-3", *manifests], env=c_env)]),
        ]
        measures = bl.interleave(contenders, args.reps)
        ours = measures["ledger diff --json"]
        task = f"diff two {args.items:,}-item runs, {args.changes} changes"
        met = ours.median < 1.0
        rows = [bl.Row(task, name, m, None if m is ours else ours, "< 1 s" if m is ours else "",
                       met if m is ours else None) for name, m in measures.items()]
        bl.print_table(f"ledger diff: {nodes} tree nodes read of two trees of {args.items:,} items", rows)
        print(f"target < 1 s: {'met' if met else 'NOT met'} ({ours.median:.3f} s)")
        bl.write_json(args.json_out, "diff", {"items": args.items, "changes": args.changes, "reps": args.reps,
                                              "nodes_read": nodes, "stat": stat, "target_met": met}, rows)
    finally:
        if not args.keep:
            bl.drop_tree(base)


if __name__ == "__main__":
    main()
