"""Load: many writers at once, on both stores (issue 8, part 5).

8 ``ledger add`` processes each add a directory of 10,000 small files (distinct names: ``--as wK``) to ONE run while
4 ``ledger seal`` processes seal 12 other runs (3 each, one after another; staged beforehand, 4,000 items each).
Every contender is a separate OS process with its own interpreter; the ledger (and, for S3, boto3 and the S3 store)
is imported before a two-pipe start barrier (each process reports ready on one pipe and blocks on the other until
the parent closes it), so all start together and no sleep is involved. Then the big run is sealed, and:

* every add and every seal exited 0, and each seal reported its run's 4,000 items;
* ``ledger ls RUN --json`` lists each of the 80,000 items exactly once, under the expected name, with the BLAKE3 of
  the file that was added -- before the big run's seal (its staged batches) and after (its sealed tree);
* every sealed run -- the big one and the 12 others -- passes ``ledger verify --trust``, and the sealed counts are
  80,000 and 4,000;
* ``ledger log --json``: the chain is linear (seq 0..12, each parent the commit before, each run sealed once).

Sizes: both stores run the full 8 x 10,000 items + 4 sealers (12 runs); the S3 variant talks to moto's server on
loopback (tests/s3server.py) through the lock wrapper, which serialises requests. The figures (wall time of the race,
the seals' time inside the adds' window, summed) are printed (``pytest -s``); nothing about time is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest
from conftest import S3Server
from test_races import assert_linear_chain, release_together

from ledger import Ledger
from ledger.keys import generate_keyfile

WRITERS = 8
ITEMS_PER_WRITER = 10_000
SEALERS = 4
RUNS_PER_SEALER = 3
ITEMS_PER_SEALED_RUN = 4_000
BIG_RUN = "load-big"
TIMEOUT = 600

# argv: READY_FD GO_FD REPORT_PATH STORE_KIND COMMANDS_JSON -- runs each command (ledger argv) in turn after the
# barrier, and writes [{argv, code, start, end}] to REPORT_PATH (time.monotonic: one clock for every process).
WRAPPER = r"""
import json, os, sys, time
import ledger.cli
if sys.argv[4] == "s3":
    import boto3
    import ledger.storage.s3
    boto3.session.Session().client("s3")  # botocore's S3 model loaded before the race, not in it

ready, go, report = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
commands = json.loads(sys.argv[5])
os.write(ready, b"r")
os.close(ready)
os.read(go, 1)
os.close(go)
done = []
for argv in commands:
    start = time.monotonic()
    sys.argv = ["ledger"] + argv
    try:
        ledger.cli.run()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    done.append({"argv": argv, "code": code, "start": start, "end": time.monotonic()})
    sys.stdout.flush()
with open(report, "w") as f:
    json.dump(done, f)
"""


@dataclass
class Done:
    argv: list[str]
    code: int
    start: float
    end: float
    out: str
    err: str


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LEDGER_STORE"}


def contend(store: str, kind: str, groups: list[list[list[Any]]], cwd: Path) -> list[list[Done]]:
    """One process per group of commands, all released at once; each runs its commands in turn."""
    reports = [cwd / f"report-{time.monotonic_ns()}-{i}.json" for i in range(len(groups))]
    tails = [[str(report), kind, json.dumps([["--store", store] + [str(a) for a in argv] for argv in group])]
             for group, report in zip(groups, reports, strict=True)]
    procs = release_together(WRAPPER, tails, cwd, env())
    results = []
    for p, report in zip(procs, reports, strict=True):
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0 and report.exists(), f"contender died: {p.returncode}\n{err.decode()[-3000:]}"
        done = json.loads(report.read_text())
        results.append([Done(d["argv"], d["code"], d["start"], d["end"], out.decode("utf-8", "replace"),
                             err.decode("utf-8", "replace")) for d in done])
    return results


def json_lines(out: str) -> list[dict[str, Any]]:
    """The JSON documents one contender printed, one per command (stdout is shared by its commands)."""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def check_items(items: list[dict[str, Any]], expected: dict[str, str]) -> list[str]:
    """Each expected item listed exactly once, with the BLAKE3 of the file it was added from."""
    names = [i["name"] for i in items]
    assert len(names) == len(expected), len(names)
    assert len(set(names)) == len(names), "an item is listed twice"
    assert set(names) == set(expected), (f"missing {sorted(set(expected) - set(names))[:5]}, "
                                         f"unexpected {sorted(set(names) - set(expected))[:5]}")
    wrong = [i["name"] for i in items if i["blake3"] != expected[i["name"]]]
    assert not wrong, f"content digests differ from the files added: {wrong[:5]}"
    return names


def cli(store: str, *args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledger.cli", "--store", store, *[str(a) for a in args]],
                          cwd=cwd, env=env(), capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def load(store: str, kind: str, tmp: Path, inputs: Path) -> dict[str, float]:
    """The whole load scenario on ``store`` (the adders' files made under ``inputs``); returns the figures."""
    key = tmp / "sealer.key"
    pub = Path(f"{key}.pub")
    generate_keyfile(key)
    lg = Ledger.open(store)
    lg.init()

    # The adders' evidence: 8 directories of 10,000 small files, every one distinct.
    expected: dict[str, str] = {}
    dirs = []
    for w in range(WRITERS):
        d = inputs / f"w{w}"
        for sub in range(10):
            (d / f"d{sub}").mkdir(parents=True)
        for i in range(ITEMS_PER_WRITER):
            rel = f"d{i % 10}/item-{i:05d}.txt"
            data = f"writer {w} item {i} {'x' * (i % 97)}\n".encode()
            (d / rel).write_bytes(data)
            expected[f"w{w}/{rel}"] = blake3.blake3(data).hexdigest()
        dirs.append(d)

    # The sealers' runs, staged beforehand (through the API: staging is not what is measured).
    sealer_runs = [[f"load-s{s}-{r}" for r in range(RUNS_PER_SEALER)] for s in range(SEALERS)]
    for runs in sealer_runs:
        for run in runs:
            lg.add_contents(run, {f"part-{i:04d}.txt": ("file", f"{run} {i}\n".encode())
                                  for i in range(ITEMS_PER_SEALED_RUN)})

    groups: list[list[list[Any]]] = [[["add", BIG_RUN, d, "--as", f"w{w}"]] for w, d in enumerate(dirs)]
    groups += [[["seal", run, "--key", key, "--json"] for run in runs] for runs in sealer_runs]
    t0 = time.monotonic()
    results = contend(store, kind, groups, tmp)
    race_wall = time.monotonic() - t0
    for group in results:
        for d in group:
            assert d.code == 0, f"ledger {' '.join(d.argv)} -> exit {d.code}\n{d.out[-2000:]}\n{d.err[-2000:]}"
    adds = [d for g in results[:WRITERS] for d in g]
    seals = [d for g in results[WRITERS:] for d in g]
    for group in results[WRITERS:]:
        docs = json_lines(group[0].out)
        assert [(o["run"], o["items"]) for o in docs] == [(d.argv[3], ITEMS_PER_SEALED_RUN) for d in group], docs
    add_window = (min(d.start for d in adds), max(d.end for d in adds))
    overlap = sum(max(0.0, min(d.end, add_window[1]) - max(d.start, add_window[0])) for d in seals)

    r = cli(store, "ls", BIG_RUN, "--json", cwd=tmp)  # staged, before the seal: the batches, each accepted once
    assert r.returncode == 0, r.stderr
    staged = json.loads(r.stdout)
    assert staged["sealed"] is False
    check_items(staged["items"], expected)

    t1 = time.monotonic()
    r = cli(store, "seal", BIG_RUN, "--key", key, "--json", cwd=tmp)
    assert r.returncode == 0, r.stderr
    sealed = json.loads(r.stdout)
    assert sealed["items"] == WRITERS * ITEMS_PER_WRITER, sealed
    big_seal = time.monotonic() - t1

    r = cli(store, "ls", BIG_RUN, "--json", cwd=tmp)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert listed["sealed"] is True
    names = check_items(listed["items"], expected)

    # Every sealed run verifies (two verifier processes, each verifying half of the runs in turn).
    runs = [BIG_RUN] + [run for rs in sealer_runs for run in rs]
    t2 = time.monotonic()
    verified = contend(store, kind, [[["verify", run, "--trust", pub, "--json"] for run in runs[i::2]]
                                     for i in range(2)], tmp)
    verify_wall = time.monotonic() - t2
    for group in verified:
        outs = json_lines(group[0].out)
        assert [o["run"] for o in outs] == [d.argv[-4] for d in group], [d.argv for d in group]
        for d, o in zip(group, outs, strict=True):
            assert d.code == 0 and o["ok"] is True, (d.argv, d.code, o, d.err[-2000:])

    r = cli(store, "log", "--json", cwd=tmp)
    assert r.returncode == 0, r.stderr
    entries = json.loads(r.stdout)
    assert len(entries) == len(runs) and {e["run"] for e in entries} == set(runs)
    assert_linear_chain(entries)
    assert entries[0]["run"] == BIG_RUN, "the big run was sealed last"
    figures = {"items": float(len(names)), "race_wall": race_wall, "seal_overlap": overlap,
               "big_seal": big_seal, "verify_wall": verify_wall}
    if kind == "local":
        shutil.rmtree(store)  # removed on success, so that pytest's rotation of old temporary directories need not
    print(f"load [{kind}]: {WRITERS} adders x {ITEMS_PER_WRITER:,} items + {SEALERS} sealers x {RUNS_PER_SEALER} "
          f"runs: race {race_wall:.1f} s (seals inside the adds' window: {overlap:.1f} s, summed), seal of "
          f"{len(names):,} items {big_seal:.1f} s, verify of {len(runs)} runs {verify_wall:.1f} s")
    return figures


@pytest.fixture
def inputs(tmp_path: Path) -> Iterator[Path]:
    """The 80,000 files the adders add: on tmpfs when there is one (they are input, not what is measured; the
    store itself is under tmp_path), removed afterwards."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="ledger-load-", dir=shm))
    else:
        d = tmp_path / "in"
        d.mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_load_local_store(tmp_path: Path, inputs: Path) -> None:
    """Full size on the local store: 8 x 10,000 items added to one run while 4 processes seal 12 other runs."""
    figures = load(str(tmp_path / "store"), "local", tmp_path, inputs)
    assert figures["items"] == 80_000


def test_load_s3_store(s3: S3Server, tmp_path: Path, inputs: Path) -> None:
    """The same at full size on S3 (moto on loopback)."""
    figures = load(s3.url("load"), "s3", tmp_path, inputs)
    assert figures["items"] == 80_000
