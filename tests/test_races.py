"""Real OS processes racing on one local store.

Every contender is a separate ``python`` process running the CLI. A barrier made of two pipes lines them up with no
sleeps: each child imports the ledger, reports ready on one pipe, then blocks reading the other; once every child
is ready the parent closes the write end and they all read EOF at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LEDGER = [sys.executable, "-m", "ledger.cli"]
TIMEOUT = 120

# argv: READY_FD GO_FD PATCH ledger-args...   PATCH selects a crash point (or "none").
WRAPPER = r"""
import os, signal, sys
import ledger.cli
import ledger.objects
import ledger.storage.base
import ledger.storage.local

ready, go, patch = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if patch == "kill-before-marker":      # the commit slot is durable, the completion marker is not written
    ledger.objects.Marker.encode = die
elif patch == "kill-before-commit":    # the sealing fence is written, the commit slot is not
    ledger.objects.SignedCommit.encode = die
elif patch == "no-lease":              # sealers not serialised: the commit slot put-if-absent is the only fence
    ledger.storage.local.LocalStore.lease = ledger.storage.base.Store.lease
elif patch != "none":
    raise SystemExit("unknown patch " + patch)

os.write(ready, b"r")
os.close(ready)
os.read(go, 1)
os.close(go)
sys.argv = ["ledger"] + sys.argv[4:]
ledger.cli.run()
"""


@dataclass
class Result:
    args: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"ledger {' '.join(self.args)} -> exit {self.code}\nstdout: {self.out[:2000]}\nstderr: {self.err}"


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LEDGER_STORE"}


def run_cli(store: Path, *args: Any, cwd: Path) -> Result:
    argv = ["--store", str(store)] + [str(a) for a in args]
    p = subprocess.run(LEDGER + argv, cwd=cwd, capture_output=True, env=env(), timeout=TIMEOUT,
                       stdin=subprocess.DEVNULL)
    return Result(argv, p.returncode, p.stdout.decode(), p.stderr.decode("utf-8", "replace"))


def release_together(wrapper: str, tails: list[list[str]], cwd: Path, env: dict[str, str]
                     ) -> list[subprocess.Popen[bytes]]:
    """Start ``python -c wrapper READY_FD GO_FD *tail`` per tail; each wrapper writes one byte to READY_FD once it is
    up and then blocks reading GO_FD. Returns when all are ready (or one died first), having released them at once
    by closing the go pipe: a barrier, not a sleep."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for tail in tails:
            procs.append(subprocess.Popen(
                [sys.executable, "-c", wrapper, str(ready_w), str(go_r), *tail], cwd=cwd, env=env,
                pass_fds=(ready_w, go_r), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        os.close(ready_w)
        ready_w = -1
        got = 0
        while got < len(procs):
            b = os.read(ready_r, 256)
            if not b:  # every child has closed its end: one died before it was ready (its exit code will tell)
                break
            got += len(b)
    finally:
        for fd in (ready_w, ready_r, go_r, go_w):
            if fd >= 0:
                os.close(fd)  # closing go_w releases the barrier
    return procs


def race(store: Path, argvs: list[list[Any]], cwd: Path, patch: str = "none") -> list[Result]:
    """Start one process per argv, release them together, wait for all."""
    procs = release_together(WRAPPER, [[patch, "--store", str(store), *(str(a) for a in argv)] for argv in argvs],
                             cwd, env())
    results = []
    for argv, p in zip(argvs, procs, strict=True):
        out, err = p.communicate(timeout=TIMEOUT)
        results.append(Result([str(a) for a in argv], p.returncode, out.decode(), err.decode("utf-8", "replace")))
    return results


def one_error_line(r: Result) -> str:
    assert "Traceback" not in r.err and "Traceback" not in r.out, str(r)
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), str(r)
    return lines[0]


def check_codes(results: list[Result], want: dict[int, int]) -> None:
    got: dict[int, int] = {}
    for r in results:
        got[r.code] = got.get(r.code, 0) + 1
    assert got == want, "\n\n".join(str(r) for r in results if r.code != 0)


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    store, key = tmp_path / "store", tmp_path / "sealer.key"
    r = run_cli(store, "init", cwd=tmp_path)
    assert r.code == 0, str(r)
    r = run_cli(store, "keys", "generate", "--out", key, cwd=tmp_path)
    assert r.code == 0, str(r)
    return {"store": store, "key": key, "pub": Path(f"{key}.pub"), "tmp": tmp_path}


def add_runs(s: dict[str, Path], runs: list[str]) -> None:
    """Open each run with a small file of its own (in parallel: different runs do not contend)."""
    argvs = []
    for run in runs:
        f = s["tmp"] / "in" / run / "evidence.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"evidence of {run}\n")
        argvs.append(["add", run, f.parent])
    for r in race(s["store"], argvs, s["tmp"]):
        assert r.code == 0, str(r)


def log_json(s: dict[str, Path]) -> list[dict[str, Any]]:
    r = run_cli(s["store"], "log", "--json", cwd=s["tmp"])
    assert r.code == 0, str(r)
    entries: list[dict[str, Any]] = json.loads(r.out)
    return entries


def assert_linear_chain(entries: list[dict[str, Any]]) -> None:
    """Newest first, seq n-1..0, every commit's parent the commit before it, each run sealed once."""
    n = len(entries)
    assert [e["seq"] for e in entries] == list(range(n - 1, -1, -1))
    oldest_first = entries[::-1]
    assert oldest_first[0]["parent"] is None
    for prev, cur in zip(oldest_first, oldest_first[1:], strict=False):
        assert cur["parent"] == prev["commit"], (prev, cur)
    runs = [e["run"] for e in entries]
    assert len(runs) == len(set(runs)), "a run was sealed twice"


def verify_all(s: dict[str, Path], runs: list[str]) -> None:
    results = race(s["store"], [["verify", run, "--trust", s["pub"], "--json"] for run in runs], s["tmp"])
    for run, r in zip(runs, results, strict=True):
        assert r.code == 0, str(r)
        assert json.loads(r.out)["ok"] is True and json.loads(r.out)["run"] == run


# --- (a) many sealers, one run -------------------------------------------------------------------------------------

SAME_RUN_ROUNDS = 20
SAME_RUN_SEALERS = 16


def test_same_run_exactly_one_sealer_wins(setup: dict[str, Path]) -> None:
    s = setup
    runs = [f"round-{i:02d}" for i in range(SAME_RUN_ROUNDS)]
    add_runs(s, runs)
    for i, run in enumerate(runs):
        results = race(s["store"], [["seal", run, "--key", s["key"], "--json"]] * SAME_RUN_SEALERS, s["tmp"])
        check_codes(results, {0: 1, 4: SAME_RUN_SEALERS - 1})
        winner = next(r for r in results if r.code == 0)
        w = json.loads(winner.out)
        assert w["run"] == run and w["seq"] == i, w
        assert winner.err == ""
        for r in results:
            if r.code == 4:
                line = one_error_line(r)
                assert r.out == ""
                assert run in line and w["commit"][:16] in line, line
    # exactly one commit per round, in round order
    entries = log_json(s)
    assert len(entries) == SAME_RUN_ROUNDS
    assert_linear_chain(entries)
    assert [e["run"] for e in entries] == runs[::-1]
    verify_all(s, runs)


def test_same_run_without_lease_put_if_absent_fences(setup: dict[str, Path]) -> None:
    """The lease only saves work; with it disabled (as on a store without leases) the commit slot's put-if-absent
    alone must keep one commit per run, and every other sealer must exit 4 -- never 1 or 3 because the winner
    cleaned up the staging it was reading.

    Known limit, reported rather than asserted away: sealers with the same key, the same items and the same
    millisecond produce byte-identical commits (Ed25519 is deterministic), and a sealer that loses the slot to an
    identical commit takes it for its own retried write and also exits 0. So the winners are counted as 'at
    least one', and every one of them must report the one commit the chain holds."""
    s = setup
    runs = [f"nolease-{i}" for i in range(6)]
    add_runs(s, runs)
    for i, run in enumerate(runs):
        results = race(s["store"], [["seal", run, "--key", s["key"], "--json"]] * 8, s["tmp"], patch="no-lease")
        assert {r.code for r in results} <= {0, 4}, "\n\n".join(str(r) for r in results if r.code not in (0, 4))
        entries = log_json(s)
        assert len(entries) == i + 1 and entries[0]["run"] == run, "one commit per run"
        winners = [json.loads(r.out) for r in results if r.code == 0]
        assert winners and {w["commit"] for w in winners} == {entries[0]["commit"]}
        for r in results:
            if r.code == 4:
                assert entries[0]["commit"][:16] in one_error_line(r)
    entries = log_json(s)
    assert len(entries) == len(runs)
    assert_linear_chain(entries)
    verify_all(s, runs)


# --- (b) many sealers, different runs ------------------------------------------------------------------------------

def test_different_runs_all_seal_into_one_linear_chain(setup: dict[str, Path]) -> None:
    s = setup
    rounds = [[f"r{k}-{i}" for i in range(8)] for k in range(2)]
    for k, runs in enumerate(rounds):
        add_runs(s, runs)
        results = race(s["store"], [["seal", run, "--key", s["key"], "--json"] for run in runs], s["tmp"])
        check_codes(results, {0: 8})
        seqs = sorted(json.loads(r.out)["seq"] for r in results)
        assert seqs == list(range(8 * k, 8 * k + 8))
        entries = log_json(s)
        assert len(entries) == 8 * (k + 1)
        assert_linear_chain(entries)
        assert {e["run"] for e in entries[:8]} == set(runs)
        for r in results:  # what each sealer reported is what the chain holds
            j = json.loads(r.out)
            assert entries[len(entries) - 1 - j["seq"]]["commit"] == j["commit"]
        verify_all(s, runs)


# --- (c) many adders, one run --------------------------------------------------------------------------------------

def test_concurrent_adds_to_one_run_lose_nothing(setup: dict[str, Path]) -> None:
    s = setup
    run = "shared-run"
    argvs: list[list[Any]] = []
    expected: dict[str, bytes] = {}
    for w in range(8):
        d = s["tmp"] / "in" / f"w{w}"
        for j in range(5):
            p = d / f"f{j}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(f"writer {w} file {j}\n".encode() * (j + 1))
            expected[f"w{w}/f{j}.txt"] = p.read_bytes()
        argvs.append(["add", run, d, "--as", f"w{w}"])
    big = s["tmp"] / "in" / "big.bin"
    big.write_bytes(os.urandom(1024 * 1024 + 3))
    expected["big.bin"] = big.read_bytes()
    argvs.append(["add", run, big])
    shared = s["tmp"] / "in" / "shared.txt"
    shared.write_text("the same content, added by three writers at once\n")
    expected["shared.txt"] = shared.read_bytes()
    argvs += [["add", run, shared]] * 3
    argvs += [["record", run, "--kind", "summary", "--name", f"rec{k}.json", json.dumps({"k": k})] for k in range(3)]
    for k in range(3):
        expected[f"rec{k}.json"] = json.dumps({"k": k}, separators=(",", ":")).encode()

    results = race(s["store"], argvs, s["tmp"])
    for r in results:
        assert r.code == 0, str(r)

    r = run_cli(s["store"], "ls", run, "--json", cwd=s["tmp"])
    assert r.code == 0, str(r)
    names = [i["name"] for i in json.loads(r.out)["items"]]
    assert sorted(names) == sorted(expected), "items lost or duplicated by concurrent adds"
    assert len(names) == len(set(names))

    r = run_cli(s["store"], "seal", run, "--key", s["key"], "--json", cwd=s["tmp"])
    assert r.code == 0, str(r)
    assert json.loads(r.out)["items"] == len(expected)
    verify_all(s, [run])
    for name in ("w3/f4.txt", "big.bin", "shared.txt", "rec2.json"):
        p = subprocess.run(LEDGER + ["--store", str(s["store"]), "cat", run, name], capture_output=True,
                           env=env(), timeout=TIMEOUT, cwd=s["tmp"])
        assert p.returncode == 0 and p.stdout == expected[name], name


def test_concurrent_adds_binding_one_name_to_different_contents(setup: dict[str, Path]) -> None:
    """A name is bound once, even under a race: one adder wins, the others are refused (6), the run stays usable."""
    s = setup
    for i in range(8):
        run = f"conflict-{i}"
        argvs: list[list[Any]] = []
        for w in range(4):
            f = s["tmp"] / "in" / run / f"w{w}" / "same.txt"
            f.parent.mkdir(parents=True)
            f.write_text(f"writer {w}\n")
            argvs.append(["add", run, f])
        results = race(s["store"], argvs, s["tmp"])
        check_codes(results, {0: 1, 6: 3})
        r = run_cli(s["store"], "ls", run, "--json", cwd=s["tmp"])
        assert r.code == 0, str(r)
        assert [i["name"] for i in json.loads(r.out)["items"]] == ["same.txt"]


# --- (d) a sealer killed between the commit and the marker -----------------------------------------------------------

def test_crash_between_commit_and_marker(setup: dict[str, Path]) -> None:
    s = setup
    run = "crashy"
    add_runs(s, ["before", run])
    r = run_cli(s["store"], "seal", "before", "--key", s["key"], cwd=s["tmp"])
    assert r.code == 0, str(r)

    [killed] = race(s["store"], [["seal", run, "--key", s["key"], "--json"]], s["tmp"], patch="kill-before-marker")
    assert killed.code == -signal.SIGKILL, str(killed)
    assert not (s["store"] / "runs" / run / "sealed").exists()
    entries = log_json(s)
    assert [e["run"] for e in entries] == [run, "before"], "the commit must be durable before the marker"
    commit = entries[0]["commit"]

    r = run_cli(s["store"], "verify", run, "--trust", s["pub"], "--json", cwd=s["tmp"])
    assert r.code == 1 and "Traceback" not in r.err, str(r)
    failed = [c for c in json.loads(r.out)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["marker"] and "missing" in failed[0]["detail"], failed
    # the run is fenced: no evidence can sneak in after the commit
    late = s["tmp"] / "late.txt"
    late.write_text("late")
    r = run_cli(s["store"], "add", run, late, cwd=s["tmp"])
    assert r.code == 4, str(r)
    one_error_line(r)

    # several operators re-run the seal at once: exactly one completes it, the rest find it sealed
    results = race(s["store"], [["seal", run, "--key", s["key"]]] * 4, s["tmp"])
    check_codes(results, {0: 1, 4: 3})
    done = next(r for r in results if r.code == 0)
    assert "completed an interrupted seal" in done.out and commit[:16] in done.out, str(done)
    for r in results:
        if r.code == 4:
            assert commit[:16] in one_error_line(r)

    assert log_json(s) == entries, "completing the seal must not append another commit"
    verify_all(s, [run, "before"])
    assert not (s["store"] / "runs" / run / "sealing").exists()
    assert not list((s["store"] / "runs" / run).glob("staged/*"))
    r = run_cli(s["store"], "ls", run, "--json", cwd=s["tmp"])
    assert [i["name"] for i in json.loads(r.out)["items"]] == ["evidence.txt"]


def test_crash_before_commit_then_seal_again(setup: dict[str, Path]) -> None:
    s = setup
    run = "crash-early"
    add_runs(s, [run])
    [killed] = race(s["store"], [["seal", run, "--key", s["key"]]], s["tmp"], patch="kill-before-commit")
    assert killed.code == -signal.SIGKILL, str(killed)
    assert log_json(s) == []
    r = run_cli(s["store"], "verify", run, "--trust", s["pub"], cwd=s["tmp"])
    assert r.code == 3, str(r)
    one_error_line(r)
    r = run_cli(s["store"], "add", run, s["tmp"] / "in" / run, cwd=s["tmp"])
    assert r.code == 4, str(r)  # fenced by the interrupted seal
    one_error_line(r)

    results = race(s["store"], [["seal", run, "--key", s["key"], "--json"]] * 4, s["tmp"])
    check_codes(results, {0: 1, 4: 3})
    j = json.loads(next(r for r in results if r.code == 0).out)
    assert j["seq"] == 0 and j["completed_interrupted"] is False
    verify_all(s, [run])
