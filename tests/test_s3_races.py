"""Real OS processes racing on one S3 store, through a real S3 API server.

The server is moto's, in its own process (tests/s3server.py, started by the ``s3`` fixture of tests/conftest.py and
lock-wrapped so that its conditional writes are atomic, as S3's are), or whatever ``LEDGER_TEST_S3_ENDPOINT`` names.
Every contender is a separate OS process running the CLI, lined up by a two-pipe barrier as in tests/test_races.py
(see WRAPPER): the ledger, boto3 and the S3 store are imported before the barrier, so start-up is not part of the
race, and all contenders are released at once. Nothing is mocked inside any ledger process.

The fault-injection tests turn on the server's middleware (500, 503, 409, a connection dropped before or after the
request took effect, delays) and assert outcomes only: every command exits 0 or 5 with one error line, never a
traceback; after a seal exits 5 the run is unsealed or sealed without its completion marker (see the test for the
one ambiguous exception), and re-running the seal completes it; no evidence is lost; ``verify`` passes afterwards.
They skip themselves when ``LEDGER_TEST_S3_ENDPOINT`` is set; the race tests run against any endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_races import Result, assert_linear_chain, check_codes, one_error_line

from ledger import Ledger
from ledger.keys import generate_keyfile
from ledger.layout import slot_key

LEDGER = [sys.executable, "-m", "ledger.cli"]
TIMEOUT = 180

# One interpreter per race imports the ledger, boto3 and the S3 store and builds one boto3 session (loading
# botocore's S3 model is most of an S3 client's start-up cost; the store asks boto3 for a session, and gets this
# one), then forks one process per contender: 16 fresh interpreters per round would cost ~0.5 s of CPU each on this
# 2-vCPU machine, and most of it would land inside the race. Each contender redirects its stdout and stderr to its
# own files, reports ready on one pipe and blocks on the other; once every contender is ready the parent closes the
# write end and they all run ``ledger`` at once -- real OS processes, each with its own S3 client, connections and
# retry state, started with no sleeping. The parent reaps them and prints their exit codes as one JSON line. Each
# contender also writes the key of every conditional PUT it sends to a trace file, so a test can see how many
# contenders really reached a fence.
#
# stdin: one JSON line {"dir": DIR, "cwd": CWD, "argvs": [[ledger args...], ...]}
WRAPPER = r"""
import json, os, sys, traceback
import boto3
import botocore.config
import ledger.cli
import ledger.storage.s3

session = boto3.session.Session()
session.client("s3")
boto3.session.Session = lambda *args, **kwargs: session
trace = -1

def log_conditional_put(params, **kwargs):
    if "IfNoneMatch" in params and trace >= 0:
        os.write(trace, (params["Key"] + "\n").encode())

session.events.register("provide-client-params.s3.PutObject", log_conditional_put)
session.events.register("provide-client-params.s3.CompleteMultipartUpload", log_conditional_put)

spec = json.loads(sys.stdin.readline())
os.chdir(spec["cwd"])
ready_r, ready_w = os.pipe()
go_r, go_w = os.pipe()
pids = []
for i, argv in enumerate(spec["argvs"]):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            for fd, suffix in ((1, "out"), (2, "err")):
                f = os.open(os.path.join(spec["dir"], f"{i}.{suffix}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(f, fd)
                os.close(f)
            trace = os.open(os.path.join(spec["dir"], f"{i}.trace"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.write(ready_w, b"r")
            os.close(ready_w)
            os.read(go_r, 1)
            os.close(go_r)
            sys.argv = ["ledger"] + argv
            try:
                ledger.cli.run()
                code = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    pids.append(pid)
os.close(ready_w)
os.close(go_r)
got = 0
while got < len(pids):
    b = os.read(ready_r, 256)
    if not b:  # every contender has closed its end: one died before it was ready (its exit code will tell)
        break
    got += len(b)
os.close(go_w)
print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]))
"""

# Retry settings of the S3 client in a test's processes (None: unset, so the store's default applies: botocore's
# standard mode, 6 attempts). Two attempts let injected faults exhaust the client's retries.
DEFAULT_RETRIES: dict[str, str | None] = {"AWS_MAX_ATTEMPTS": None, "AWS_RETRY_MODE": None}
FEW_RETRIES: dict[str, str | None] = {"AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": None}


@dataclass
class S3Run:
    """A fresh store on the test server, a sealing key, and a scratch directory."""

    url: str
    key: Path
    pub: Path
    tmp: Path

    def ledger(self) -> Ledger:
        """The API in this process (for set-up and for reading back, never inside a race)."""
        return Ledger.open(self.url)


def env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment (the fixture put the endpoint and credentials there), adjusted by ``extra``."""
    e = {k: v for k, v in os.environ.items() if k != "LEDGER_STORE"}
    for k, v in (extra or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def argv_for(st: S3Run, args: list[Any]) -> list[str]:
    return ["--store", st.url] + [str(a) for a in args]


def run_cli(st: S3Run, *args: Any, extra: dict[str, str | None] | None = None) -> Result:
    argv = argv_for(st, list(args))
    p = subprocess.run(LEDGER + argv, cwd=st.tmp, capture_output=True, env=env(extra), timeout=TIMEOUT,
                       stdin=subprocess.DEVNULL)
    return Result(argv, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))


def race(st: S3Run, argvs: list[list[Any]], extra: dict[str, str | None] | None = None) -> list[Result]:
    """Run one process per argv, released together once all are ready; wait for all."""
    return race_traced(st, argvs, extra)[0]


def race_traced(st: S3Run, argvs: list[list[Any]],
                extra: dict[str, str | None] | None = None) -> tuple[list[Result], list[list[str]]]:
    """:func:`race`, and for each process the keys of the conditional PUTs it sent (relative to the store)."""
    with tempfile.TemporaryDirectory(dir=st.tmp) as d:
        spec = {"dir": d, "cwd": str(st.tmp), "argvs": [argv_for(st, a) for a in argvs]}
        p = subprocess.run([sys.executable, "-c", WRAPPER], input=json.dumps(spec) + "\n", capture_output=True,
                           text=True, env=env(extra), timeout=TIMEOUT)
        assert p.returncode == 0, f"the race wrapper failed:\n{p.stderr}"
        codes: list[int] = json.loads(p.stdout)
        prefix = st.url.removeprefix("s3://").partition("/")[2] + "/"
        results, puts = [], []
        for i, (argv, code) in enumerate(zip(argvs, codes, strict=True)):
            out, err, trace = (Path(d, f"{i}.{x}").read_bytes().decode("utf-8", "replace")
                               for x in ("out", "err", "trace"))
            results.append(Result([str(a) for a in argv], code, out, err))
            puts.append([k.removeprefix(prefix) for k in trace.splitlines()])
    return results, puts


def no_traceback(results: list[Result]) -> None:
    for r in results:
        assert "Traceback" not in r.err and "Traceback" not in r.out, str(r)


def log_json(st: S3Run) -> list[dict[str, Any]]:
    r = run_cli(st, "log", "--json")
    assert r.code == 0, str(r)
    entries: list[dict[str, Any]] = json.loads(r.out)
    return entries


def verify_all(st: S3Run, runs: list[str]) -> None:
    """``ledger verify RUN --trust KEY.pub`` for every run (processes in parallel): all exit 0."""
    results = race(st, [["verify", run, "--trust", st.pub, "--json"] for run in runs])
    for run, r in zip(runs, results, strict=True):
        assert r.code == 0, str(r)
        doc = json.loads(r.out)
        assert doc["ok"] is True and doc["run"] == run, doc


def open_runs(st: S3Run, runs: list[str]) -> dict[str, dict[str, bytes]]:
    """Open each run with two items of its own (a file and a record), through the API; returns name -> content."""
    lg = st.ledger()
    expected: dict[str, dict[str, bytes]] = {}
    for run in runs:
        d = st.tmp / "in" / run
        d.mkdir(parents=True)
        (d / "evidence.txt").write_text(f"evidence of {run}\n")
        lg.add(run, [str(d)])
        lg.record(run, "summary", {"name": run, "ingested": len(run)}, name="summary.json")
        expected[run] = {"evidence.txt": (d / "evidence.txt").read_bytes(),
                         "summary.json": json.dumps({"ingested": len(run), "name": run},
                                                    separators=(",", ":")).encode()}
    return expected


@pytest.fixture
def st(s3: Any, tmp_path: Path) -> S3Run:
    url = s3.url("race")
    Ledger.open(url).init()
    key = tmp_path / "sealer.key"
    generate_keyfile(key)
    return S3Run(url, key, Path(f"{key}.pub"), tmp_path)


# --- (a) many sealers, one run -------------------------------------------------------------------------------------

SAME_RUN_ROUNDS = 20
SAME_RUN_SEALERS = 16


def test_same_run_exactly_one_of_16_sealers_wins(st: S3Run) -> None:
    runs = [f"round-{i:02d}" for i in range(SAME_RUN_ROUNDS)]
    open_runs(st, runs)
    contested = 0  # rounds in which several sealers really tried to write the commit slot
    for i, run in enumerate(runs):
        results, puts = race_traced(st, [["seal", run, "--key", st.key, "--json"]] * SAME_RUN_SEALERS)
        no_traceback(results)
        contested += sum(slot_key(i) in keys for keys in puts) >= 2
        check_codes(results, {0: 1, 4: SAME_RUN_SEALERS - 1})
        winner = next(r for r in results if r.code == 0)
        w = json.loads(winner.out)
        assert w["run"] == run and w["seq"] == i and w["items"] == 2, w
        assert winner.err == "", str(winner)
        for r in results:
            if r.code == 4:
                line = one_error_line(r)
                assert r.out == "", str(r)
                assert f"run {run}:" in line and f"b3:{w['commit'][:16]}" in line, line
    assert contested >= SAME_RUN_ROUNDS // 2, f"only {contested} round(s) had two or more sealers at the slot"
    entries = log_json(st)
    assert len(entries) == SAME_RUN_ROUNDS, "exactly one commit per round"
    assert_linear_chain(entries)
    assert [e["run"] for e in entries] == runs[::-1]
    verify_all(st, runs)


# --- (b) many sealers, different runs ------------------------------------------------------------------------------

def test_eight_runs_sealed_at_once_make_one_linear_chain(st: S3Run) -> None:
    runs = [f"run-{i}" for i in range(8)]
    open_runs(st, runs)
    results = race(st, [["seal", run, "--key", st.key, "--json"] for run in runs])
    no_traceback(results)
    check_codes(results, {0: 8})
    reported = {json.loads(r.out)["run"]: json.loads(r.out) for r in results}
    assert sorted(j["seq"] for j in reported.values()) == list(range(8))
    entries = log_json(st)
    assert len(entries) == 8
    assert_linear_chain(entries)
    assert {e["run"] for e in entries} == set(runs)
    for e in entries:  # what each sealer reported is what the chain holds
        assert reported[e["run"]]["commit"] == e["commit"] and reported[e["run"]]["seq"] == e["seq"]
    verify_all(st, runs)


# --- (c) many adders, one run --------------------------------------------------------------------------------------

def test_concurrent_adds_to_one_run_lose_nothing(st: S3Run) -> None:
    run = "shared-run"
    argvs: list[list[Any]] = []
    expected: dict[str, bytes] = {}
    for w in range(6):
        d = st.tmp / "in" / f"w{w}"
        d.mkdir(parents=True)
        for j in range(4):
            p = d / f"f{j}.txt"
            p.write_bytes(f"writer {w} file {j}\n".encode() * (j + 1))
            expected[f"w{w}/f{j}.txt"] = p.read_bytes()
        argvs.append(["add", run, d, "--as", f"w{w}"])
    big = st.tmp / "in" / "big.bin"
    big.write_bytes(os.urandom(1024 * 1024 + 3))  # a loose object, not packed
    expected["big.bin"] = big.read_bytes()
    argvs.append(["add", run, big])
    shared = st.tmp / "in" / "shared.txt"
    shared.write_text("the same content, added by three writers at once\n")
    expected["shared.txt"] = shared.read_bytes()
    argvs += [["add", run, shared]] * 3
    argvs += [["record", run, "--kind", "summary", "--name", f"rec{k}.json", json.dumps({"k": k})] for k in range(2)]
    for k in range(2):
        expected[f"rec{k}.json"] = json.dumps({"k": k}, separators=(",", ":")).encode()

    results = race(st, argvs)
    no_traceback(results)
    check_codes(results, {0: len(argvs)})

    names = ls_names(st, [run])[run]
    assert sorted(names) == sorted(expected), "items lost or duplicated by concurrent adds"
    assert len(names) == len(set(names))

    r = run_cli(st, "seal", run, "--key", st.key, "--json")
    assert r.code == 0, str(r)
    assert json.loads(r.out)["items"] == len(expected)
    verify_all(st, [run])
    lg = st.ledger()
    for name, data in expected.items():
        assert lg.read(run, name) == data, name
    cat = subprocess.run(LEDGER + argv_for(st, ["cat", run, "big.bin"]), capture_output=True, env=env(),
                         timeout=TIMEOUT, cwd=st.tmp)
    assert cat.returncode == 0 and cat.stdout == expected["big.bin"]


def test_concurrent_adds_binding_one_name_to_different_contents(st: S3Run) -> None:
    """A name is bound once, even under a race: exactly one adder wins, the others are refused (6), and the name
    holds the winner's content."""
    for i in range(4):
        run = f"conflict-{i}"
        argvs: list[list[Any]] = []
        contents: list[bytes] = []
        for w in range(4):
            f = st.tmp / "in" / run / f"w{w}" / "same.txt"
            f.parent.mkdir(parents=True)
            f.write_text(f"writer {w} of {run}\n")
            contents.append(f.read_bytes())
            argvs.append(["add", run, f])
        results = race(st, argvs)
        no_traceback(results)
        check_codes(results, {0: 1, 6: 3})
        for r in results:
            if r.code == 6:
                line = one_error_line(r)
                assert "same.txt" in line, line
        winner = next(w for w, r in enumerate(results) if r.code == 0)
        items = st.ledger().items(run).items
        assert [e.name for e in items] == ["same.txt"]
        assert st.ledger().read(run, "same.txt") == contents[winner], "the name holds the winner's content"
    r = run_cli(st, "seal", "conflict-0", "--key", st.key)
    assert r.code == 0, str(r)
    verify_all(st, ["conflict-0"])


# --- (d) fault injection -------------------------------------------------------------------------------------------

def assert_faults_injected(counts: dict[str, int]) -> None:
    assert sum(counts.values()) > 0, counts
    assert counts.get("drop-after", 0) > 0, f"no ambiguous outcome was injected: {counts}"


def exit_0_or_5(r: Result) -> None:
    """Success, or storage unavailable reported as one error line and nothing on stdout."""
    assert r.code in (0, 5), str(r)
    if r.code == 5:
        one_error_line(r)
        assert r.out == "", str(r)
    else:
        assert "Traceback" not in r.err, str(r)


def ls_names(st: S3Run, runs: list[str]) -> dict[str, list[str]]:
    """``ledger ls RUN --json`` for every run (processes in parallel): the item names, in listed order."""
    out = {}
    for run, r in zip(runs, race(st, [["ls", run, "--json"] for run in runs]), strict=True):
        assert r.code == 0, str(r)
        out[run] = [i["name"] for i in json.loads(r.out)["items"]]
    return out


def test_adds_under_faults_lose_nothing(s3: Any, st: S3Run) -> None:
    """Adds (of packed and loose content, and records) with 10% of requests faulted: each exits 0 or 5; re-running
    the ones that exited 5 completes them; afterwards every item is present exactly once with its content."""
    run = "faulty-adds"
    expected: dict[str, bytes] = {}
    argvs: list[list[Any]] = []
    for w in range(6):
        d = st.tmp / "in" / f"w{w}"
        d.mkdir(parents=True)
        for j in range(3):
            (d / f"f{j}.txt").write_text(f"writer {w} file {j}\n")
            expected[f"w{w}/f{j}.txt"] = (d / f"f{j}.txt").read_bytes()
        argvs.append(["add", run, d, "--as", f"w{w}"])
    big = st.tmp / "in" / "big.bin"
    big.write_bytes(os.urandom(1024 * 1024 + 5))
    expected["big.bin"] = big.read_bytes()
    argvs.append(["add", run, big])
    argvs.append(["record", run, "--kind", "summary", "--name", "rec.json", '{"ok": 1}'])
    expected["rec.json"] = b'{"ok":1}'

    s3.faults(0.1)  # (skips the test on an external endpoint)
    try:
        todo = argvs
        for _ in range(6):  # re-run whatever exited 5 (faults still on)
            results = race(st, todo, FEW_RETRIES)
            for r in results:
                exit_0_or_5(r)
            todo = [argv for argv, r in zip(todo, results, strict=True) if r.code == 5]
            if not todo:
                break
        assert not todo, f"still exiting 5 after 6 attempts: {todo}"
        counts = s3.fault_counts()
    finally:
        s3.faults(0)
    assert sum(counts.values()) > 0, counts

    names = ls_names(st, [run])[run]
    assert sorted(names) == sorted(expected) and len(names) == len(set(names)), names
    lg = st.ledger()
    for name, data in expected.items():
        assert lg.read(run, name) == data, name
    r = run_cli(st, "seal", run, "--key", st.key)
    assert r.code == 0, str(r)
    verify_all(st, [run])


AFTERMATH_RATE = 0.1


@pytest.mark.parametrize(("rate", "retries"), [(0.1, DEFAULT_RETRIES), (0.3, FEW_RETRIES)],
                         ids=["10pct-default-retries", "30pct-two-attempts"])
def test_seals_under_faults_complete_or_exit_5(s3: Any, st: S3Run, rate: float,
                                               retries: dict[str, str | None]) -> None:
    """Seals of 10 runs, all at once, with a share of requests faulted. Each exits 0 or 5 (one error line).

    After an exit 5, with faults still on (at 10% at most), ``verify`` exits 3 (no commit is visible) or 1 with the
    completion marker as the only failing check (the commit landed, the marker did not) -- never anything else, and
    0 (the seal had completed) only when the sealer's error says the marker write's outcome is unknown: a dropped
    connection, or an error writing the marker itself. Re-running the seal (twice with this test's retry settings,
    then with the client's defaults) until it stops exiting 5 completes it: it exits 0, or 4 naming the run's commit
    in the chain once a commit had landed (without a lease a sealer cannot tell an earlier attempt of its own from
    another sealer: spec/store.md section 6, step 2). Then, faults off: one commit per run in one linear chain,
    every run verifies, and ``ls --json`` lists every item that was added (``cat`` gives its content)."""
    runs = [f"faulty-{i}" for i in range(10)]
    expected = open_runs(st, runs)
    reruns_exit_4: dict[str, str] = {}

    s3.faults(rate)  # (skips the test on an external endpoint)
    try:
        first = race(st, [["seal", run, "--key", st.key, "--json"] for run in runs], retries)
        for r in first:
            exit_0_or_5(r)
        failed = {run: r for run, r in zip(runs, first, strict=True) if r.code == 5}
        counts = Counter(s3.fault_counts())
        if rate > AFTERMATH_RATE:  # the rate that forced the exits 5 would make the clients' backoff dominate
            s3.faults(AFTERMATH_RATE)  # (setting the rate resets the server's counts)
        for run, sealer in failed.items():
            line = one_error_line(sealer)
            for _ in range(10):  # verify's own exit 5 is the storage failing it: retry it
                v = run_cli(st, "verify", run, "--trust", st.pub, "--json", extra=DEFAULT_RETRIES)
                if v.code != 5:
                    break
            assert v.code in (0, 1, 3), f"after a seal exited 5:\n{sealer}\n{v}"
            assert "Traceback" not in v.err, str(v)
            if v.code == 0:
                assert "cannot reach" in line or f"runs/{run}/sealed:" in line, (
                    f"a seal that exited 5 had completed, and not because the marker write was ambiguous:"
                    f"\n{sealer}\n{v}")
            if v.code == 1:
                failures = [c["name"] for c in json.loads(v.out)["checks"] if not c["ok"]]
                assert failures == ["marker"], f"a seal that exited 5 left more than its marker out:\n{v}"
            for attempt in range(8):  # twice with this test's retry settings, then with the client's defaults
                r = run_cli(st, "seal", run, "--key", st.key, "--json",
                            extra=retries if attempt < 2 else DEFAULT_RETRIES)
                if r.code != 4:
                    exit_0_or_5(r)
                if r.code != 5:
                    break
            assert r.code in (0, 4), f"re-running the seal did not complete it:\n{r}"
            if r.code == 4:
                reruns_exit_4[run] = one_error_line(r)
        counts.update(s3.fault_counts())
    finally:
        s3.faults(0)
    assert_faults_injected(counts)
    if retries is FEW_RETRIES:
        assert failed, f"no seal exited 5 with two attempts per request at {rate:.0%} faults: {counts}"

    entries = log_json(st)
    assert len(entries) == len(runs), [e["run"] for e in entries]
    assert_linear_chain(entries)
    assert {e["run"] for e in entries} == set(runs)
    commits = {e["run"]: e["commit"] for e in entries}
    for run, r in zip(runs, first, strict=True):
        if r.code == 0:  # what a successful sealer reported is what the chain holds
            assert json.loads(r.out)["commit"] == commits[run]
    for run, line in reruns_exit_4.items():
        assert f"run {run}:" in line and f"b3:{commits[run][:16]}" in line, line
    verify_all(st, runs)
    listed = ls_names(st, runs)
    lg = st.ledger()
    for run in runs:
        assert sorted(listed[run]) == sorted(expected[run]), (run, listed[run])
        for name, data in expected[run].items():
            assert lg.read(run, name) == data, (run, name)


@pytest.mark.parametrize("attempts", ["1", "3"])
def test_a_write_that_landed_but_answered_500_is_ours(s3: Any, monkeypatch: pytest.MonkeyPatch,
                                                     attempts: str) -> None:
    """A conditional PUT that took effect but was answered with a 500: with no retry (botocore gives up at once) and
    with retries (the retry then meets a 412 from our own write), the store reads the slot back and reports the write
    as ours. When another writer's bytes are there instead, the same failure is an error, never a false success."""
    from ledger.errors import StorageError
    from ledger.storage.s3 import S3Store

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", attempts)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    store = S3Store(s3.url("landed-500"))
    store.put_if_absent("runs/x/other", b"theirs")  # before the faults: a plain write
    s3.faults(1.0, "500-after")  # (skips the test on an external endpoint)
    try:
        assert store.put_if_absent("runs/x/mine", b"ours") is True
        with pytest.raises(StorageError, match="500|InternalError|internal"):
            store.put_if_absent("runs/x/other", b"ours")
        counts = s3.fault_counts()
    finally:
        s3.faults(0)
    assert counts.get("500-after", 0) >= 2, counts
    assert store.get("runs/x/mine") == b"ours"
    assert store.get("runs/x/other") == b"theirs"
