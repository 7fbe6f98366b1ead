"""Shared helpers for the benchmark scripts in tools/ (not part of the test suite).

Each benchmark generates its data deterministically into a temporary directory, runs every contender on the same
data in the same process run (warm page cache), and reports wall seconds (median of the repetitions), the peak
RSS of the measured processes, the ratio to ledger and whether the issue's target is met.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3

MiB = 1024 * 1024
TIME = "/usr/bin/time"  # GNU time, for the peak RSS of exactly the measured command
GiB = 1024 * MiB


# --- running and timing -------------------------------------------------------------------------------------------

@dataclass
class Proc:
    """One finished command: wall seconds, peak RSS (bytes) of the process tree's largest process, exit status."""

    argv: list[str]
    wall: float
    maxrss: int
    rc: int
    stdout: bytes
    stderr: bytes


def run(argv: Sequence[str] | str, cwd: str | None = None, env: dict[str, str] | None = None,
        check: bool = True, stdout_path: str | None = None) -> Proc:
    """Run a command (a string goes through ``bash -c``), timing it and reading its peak RSS via ``wait4``.

    ``wait4`` gives the child's own rusage including the descendants it waited for, so a shell pipeline reports
    the peak of its largest member. stdout goes to ``stdout_path`` when given (a manifest), else is captured.
    """
    if isinstance(argv, str):
        argv = ["bash", "-c", "set -eo pipefail; " + argv]
    argv = list(argv)
    full_env = dict(os.environ if env is None else env)
    # Linux carries a process's peak RSS across exec, so a child forked from this (large) Python process would
    # report our own size; /usr/bin/time is small, forks the command itself and reports only its peak (%M, KiB).
    use_time = os.access(TIME, os.X_OK)
    with tempfile.TemporaryFile() as err_f, tempfile.NamedTemporaryFile(prefix="rss-") as rss_f:
        full = [TIME, "-q", "-f", "%M", "-o", rss_f.name, *argv] if use_time else argv
        out_f = open(stdout_path, "wb") if stdout_path else tempfile.TemporaryFile()
        with out_f:
            t0 = time.perf_counter()
            proc = subprocess.Popen(full, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=out_f,
                                    stderr=err_f)
            _, status, ru = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
            out = b""
            if not stdout_path:
                out_f.seek(0)
                out = out_f.read()
        err_f.seek(0)
        err = err_f.read()
        maxrss = ru.ru_maxrss * 1024
        if use_time:
            text = open(rss_f.name).read().split()
            maxrss = int(text[-1]) * 1024 if text and text[-1].isdigit() else 0
    rc = proc.returncode
    res = Proc(argv, wall, maxrss, rc, out, err)
    if check and rc != 0:
        raise SystemExit(f"command failed (exit {rc}): {shlex.join(argv)}\n{err.decode(errors='replace')[-3000:]}")
    return res


@dataclass
class Measure:
    """Repeated measurements of one contender on one task."""

    name: str
    walls: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.walls) if self.walls else float("nan")

    @property
    def peak_rss(self) -> int:
        return max(self.rss) if self.rss else 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "median_s": round(self.median, 4), "runs_s": [round(w, 4) for w in self.walls],
                "peak_rss_bytes": self.peak_rss, "note": self.note}


def repeat(name: str, reps: int, setup: Callable[[int], Any] | None, step: Callable[[Any], Sequence[Proc]],
           teardown: Callable[[Any], None] | None = None, note: str = "") -> Measure:
    """Run ``setup`` (untimed), ``step`` (its processes' walls are summed) and ``teardown`` ``reps`` times."""
    m = Measure(name, note=note)
    for i in range(reps):
        ctx = setup(i) if setup else None
        procs = step(ctx)
        m.walls.append(sum(p.wall for p in procs))
        m.rss.append(max((p.maxrss for p in procs), default=0))
        if teardown:
            teardown(ctx)
        print(f"  {name:<40} run {i + 1}/{reps}: {m.walls[-1]:8.3f} s  peak RSS {m.rss[-1] / MiB:7.1f} MiB",
              file=sys.stderr, flush=True)
    return m


@dataclass
class Contender:
    """One way of doing a task: ``setup(rep)`` (untimed) returns a context for ``step(ctx)``, whose processes'
    walls are summed; ``teardown(ctx)`` (untimed) runs right after, so the next contender finds the machine as
    this one did (freed page cache is reused at once; kept output would make the next writer fault in fresh
    memory, which on a VM costs several times more)."""

    name: str
    step: Callable[[Any], Sequence[Proc]]
    setup: Callable[[int], Any] | None = None
    teardown: Callable[[Any], None] | None = None
    note: str = ""


def prefault(mib: int) -> None:
    """Touch ``mib`` MiB of fresh memory in a short-lived process, just before a timed step.

    On a VM whose free memory goes back to the host (free page reporting, ballooning), the first use of such
    memory faults it in from the host again, several times slower than reusing memory the guest still holds --
    so whichever contender happens to run after memory was handed back would pay for it. Touching (and freeing)
    enough memory right before each step puts every contender in the same state."""
    if mib > 0:
        subprocess.run([sys.executable, "-S", "-c", f"bytearray({mib} << 20)"], check=True)


def interleave(contenders: Sequence[Contender], reps: int, quiet: bool = True, warmup: bool = True,
               prefault_mib: int = 0) -> dict[str, Measure]:
    """Run every contender ``reps`` times, interleaved (A B C, B C A, ...): background load and page-cache state
    then weigh on all of them alike. With ``warmup``, one untimed round runs first (bytecode caches, page cache).
    With ``quiet``, each step waits (up to a while) for an idle machine; ``prefault_mib``: see :func:`prefault`."""
    out = {c.name: Measure(c.name, note=c.note) for c in contenders}
    for i in range(-1 if warmup else 0, reps):
        order = list(contenders[i % len(contenders):]) + list(contenders[:i % len(contenders)])
        for c in order:
            ctx = c.setup(i + 1 if warmup else i) if c.setup else None
            os.sync()
            if quiet and i >= 0:
                wait_quiet()
            prefault(prefault_mib)
            procs = c.step(ctx)
            wall = sum(p.wall for p in procs)
            rss = max((p.maxrss for p in procs), default=0)
            if c.teardown:
                c.teardown(ctx)
            label = "warm-up" if i < 0 else f"run {i + 1}/{reps}"
            print(f"  {c.name:<40} {label:>9}: {wall:8.3f} s  peak RSS {rss / MiB:7.1f} MiB", file=sys.stderr,
                  flush=True)
            if i >= 0:
                out[c.name].walls.append(wall)
                out[c.name].rss.append(rss)
    return out


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals), idle


BUSY_SAMPLES: list[float] = []  # machine-wide busy fraction seen just before each step (reported)


def wait_quiet(threshold: float = 0.15, window: float = 0.2, max_wait: float = 20.0) -> float:
    """Wait until the machine is (nearly) idle -- other processes would skew wall times -- for at most
    ``max_wait`` seconds; returns (and records) the busy fraction last seen."""
    deadline = time.monotonic() + max_wait
    while True:
        t0, i0 = _cpu_times()
        time.sleep(window)
        t1, i1 = _cpu_times()
        busy = 1.0 - (i1 - i0) / max(t1 - t0, 1)
        if busy <= threshold or time.monotonic() >= deadline:
            BUSY_SAMPLES.append(busy)
            return busy


def drop_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- data ---------------------------------------------------------------------------------------------------------

def det_bytes(seed: str, length: int, offset: int = 0) -> bytes:
    """Deterministic, incompressible bytes: BLAKE3's extendable output for ``seed`` (same on every machine)."""
    return blake3.blake3(seed.encode()).digest(length=length, seek=offset)


def warm(paths: Sequence[str]) -> None:
    """Read every file once so that every contender starts from a warm page cache."""
    for root in paths:
        if os.path.isfile(root):
            _drain(root)
            continue
        for dirpath, _, files in os.walk(root):
            for fn in files:
                _drain(os.path.join(dirpath, fn))


def _drain(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(8 * MiB):
            pass


def du(path: str) -> int:
    """Bytes allocated under ``path`` (what the store or repository costs on disk)."""
    out = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


# --- tools ----------------------------------------------------------------------------------------------------------

def use_bytecode_cache(path: str) -> None:
    """Let every Python program measured here (ledger, in-toto-run, the floor loop) cache its compiled bytecode,
    under ``path`` (not in the source tree), as an installed package has it. Without this, an environment with
    PYTHONDONTWRITEBYTECODE=1 recompiles an editable checkout's modules on every CLI call (~40 ms each)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = path


def console_script(name: str) -> str | None:
    """A Python console script of the running interpreter's environment (not a version-manager shim such as
    pyenv's, which adds its own start-up time to every call), else whatever ``name`` is on PATH."""
    beside = os.path.join(os.path.dirname(os.path.realpath(sys.executable)), name)
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which(name)


def ledger_cmd() -> list[str]:
    exe = console_script("ledger")
    return [exe] if exe else [sys.executable, "-m", "ledger.cli"]


def git_env(home: str) -> dict[str, str]:
    """git with a throw-away identity and no user or system configuration (defaults, as a user would have)."""
    env = dict(os.environ)
    env.update({"HOME": home, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@x",
                "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"})
    return env


def write_pkcs8_ed25519(path: str) -> None:
    """An unencrypted PKCS8/PEM Ed25519 private key (what ``in-toto-run --signing-key`` loads)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


# --- reporting ------------------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem / GiB, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "git": tool_version(["git", "--version"]), "b3sum": tool_version(["b3sum", "--version"]),
            "in-toto-run": tool_version([console_script("in-toto-run") or "in-toto-run", "--version"])}


@dataclass
class Row:
    task: str
    contender: str
    measure: Measure
    baseline: Measure | None  # ledger's measure for the same task (ratio = ledger / contender)
    target: str = ""  # human text, e.g. "ledger <= 0.3x"
    met: bool | None = None


def ratio(ledger: Measure, other: Measure) -> float:
    return ledger.median / other.median if other.median else float("nan")


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    head = f"| {'task':<22} | {'contender':<34} | {'wall s (median)':>15} | {'min-max s':>15} | " \
           f"{'peak RSS MiB':>12} | {'ledger / it':>11} | {'target':<22} | {'met':<3} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        rat = f"{ratio(r.baseline, r.measure):.2f}x" if r.baseline is not None and r.baseline is not r.measure \
            else "—"
        met = "" if r.met is None else ("yes" if r.met else "NO")
        spread = f"{min(r.measure.walls):.3f}-{max(r.measure.walls):.3f}" if r.measure.walls else ""
        print(f"| {r.task:<22} | {r.contender:<34} | {r.measure.median:>15.3f} | {spread:>15} | "
              f"{r.measure.peak_rss / MiB:>12.1f} | {rat:>11} | {r.target:<22} | {met:<3} |")


def rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = {"task": r.task, "contender": r.contender, **r.measure.to_json(), "target": r.target, "met": r.met}
        if r.baseline is not None and r.baseline is not r.measure:
            d["ledger_over_contender"] = round(ratio(r.baseline, r.measure), 4)
        out.append(d)
    return out


def load_note() -> str:
    """How busy the machine (all CPUs, including our own leftovers) was just before the timed steps."""
    if not BUSY_SAMPLES:
        return "background load: not sampled"
    return (f"background load just before each step: median {100 * statistics.median(BUSY_SAMPLES):.0f}% busy, "
            f"max {100 * max(BUSY_SAMPLES):.0f}% (of {os.cpu_count()} CPUs)")


def write_json(path: str | None, bench: str, params: dict[str, Any], rows: list[Row],
               extra: dict[str, Any] | None = None) -> None:
    print(load_note())
    if not path:
        return
    doc = {"benchmark": bench, "machine": machine(), "params": params, "results": rows_json(rows),
           "busy_before_steps": [round(b, 3) for b in BUSY_SAMPLES], **(extra or {})}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


def tmpdir(prefix: str, base: str | None = None) -> str:
    return tempfile.mkdtemp(prefix=prefix, dir=base)


# --- realistic evidence text ---------------------------------------------------------------------------------------

def evidence_lines(seed: int) -> Iterator[str]:
    """Realistic log / CSV / JSON evidence: timestamps, UUIDs, digests, URLs, IPs, Kafka names -- and no secrets:
    what the secret scanner must pass through untouched (tests/test_secrets.py) and is timed on (bench_secrets)."""
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
            yield f'    "integrity": "sha512-{base64.b64encode(det_bytes(h, 64)).decode()}",'
        else:
            yield f"{ts} ERROR java.lang.IllegalStateException: rebalance in progress at org.apache.kafka." \
                  f"clients.consumer.internals.ConsumerCoordinator.onJoinComplete(ConsumerCoordinator.java:" \
                  f"{r.randint(100, 999)})"
