"""Crash injection (issue 8): SIGKILL ``seal``, ``add`` and the catalog's writer at chosen points and at random
times, on the local store and on S3, and check that every guarantee survives.

**How a process is crashed.** With ``LEDGER_CRASH_AFTER_WRITES=N`` a ledger process SIGKILLs itself right after
its Nth store write has completed (ledger/faults.py): that write is durable and nothing after it happens. With
``LEDGER_WRITE_LOG`` every write is logged, so a trial knows how far the killed process got.

- *Seal points*: ``seal`` is killed after each write of the protocol of spec/store.md §6, each named by its key --
  fence, policy document, node pack, node index, chain slot, marker, each batch delete, fence delete -- on two run
  shapes per store: one batch, and three batches (one a loose 1 MiB item) under a policy after an earlier sealed
  run. The sequences are pinned by ``test_write_sequence`` (a dry run), and each trial checks that the last logged
  write is the point it names. (On S3 a small pack or loose object is logged twice, by the put-if-absent that
  creates it and by the upload's commit that wraps it: the ``…-commit`` points, the same state one write later.)
- *Add points*: ``add`` (a directory: small files into a pack, one large file stored loose) and ``record`` (an
  array of typed records opening a new run) are killed after each of their writes (§5).
- *Random seals*: ``seal`` of a 3,000-item run staged in 20 batches (5 on S3) is killed after a delay drawn from
  ``random.Random(seed)``, over the time an undisturbed seal of the same run takes on this machine (measured per
  worker; see the test). The seed fixes the delay, not the instant: where the kill lands depends on the machine's
  speed, and the write log records it.
- *Catalog*: ``ledger runs`` and ``ledger find`` during their first query (which creates the catalog and indexes a
  3,000-item sealed run), and ``ledger reindex`` (a rebuild, written to a temporary file and renamed), are killed at
  random times. ``seal`` never writes the catalog and the catalog is no store write, so only random kills apply.

Every ledger command runs as its own OS process running ``ledger.cli``, forked from a warm interpreter that has
already imported the ledger (and, for S3, boto3) -- see RUNNER. A trial then costs tens of milliseconds rather than
an interpreter start per command, and a random delay lands in the command's work rather than in Python's start-up.
A delay is a bounded wait on the child (its pidfd polled with a timeout, like ``Popen.wait(timeout=...)``), then
SIGKILL; no sleep synchronises anything. Every command also has a bound of COMMAND_TIMEOUT seconds: a blocked seal
fails its trial instead of hanging the suite.

**After a seal crash:**

- ``verify RUN --trust`` exits 0; or 3, "not sealed"; or 1 with ``marker`` as the only failing check and a detail
  saying the seal did not complete. Never "sealed but broken". The state it reports is the one the logged writes
  imply (for random kills: at least that far, since a write can land after the last line that was logged);
- a different run of the same store is sealed at once (exit 0, within the bound): never blocked;
- re-running ``seal`` succeeds. Exit 0, or locally, if the commit had landed, exit 0 with "completed an interrupted
  seal". Two documented cases end with exit 4, and count as success because the run then verifies with the commit
  that landed before the crash:
  (a) the marker had been written before the crash. The seal had completed (§6 step 8), and a re-run reports
  "already sealed" -- except locally when the crash cut the cleanup of step 9 short: holding the lease, the re-run
  removes the leftovers and exits 0 with "completed an interrupted seal" (on S3 it removes them and exits 4);
  (b) on S3 only, the commit had landed but the marker had not. S3 has no lease, so a re-run cannot tell a dead
  sealer from one still finishing. It writes the marker and exits 4 (spec/store.md §4a, "Sealing on S3");
- ``verify`` exits 0 with every check ok; ``ls`` lists exactly the items added before the crash (names, kinds,
  sizes, BLAKE3); ``cat`` returns each item's bytes (a sample of 3 for the 3,000-item runs, all of whose bytes
  ``verify`` has re-hashed); ``log --json`` is one linear chain (seqs 0..n-1, parents linked, each run once);
- the run's staged batches and fence are gone after the re-run, whatever the crash cut short; for the seal
  points, the catalog lists exactly the sealed runs and ``reindex --check`` passes.

**After an add crash:** ``ls`` shows all the add's items or none of them (all exactly when the batch write landed:
the batch is the add's commit point); re-running the same command exits 0; then the run holds everything, seals,
verifies and every item's bytes are intact.

**After a catalog crash:** ``reindex --check`` (which changes nothing) finds no catalog, or one that agrees with the
store; then ``runs --json`` answers exactly as on an undisturbed catalog (at most one "rebuilt from the store"
warning), ``reindex --check`` passes and ``find`` locates a sealed item as before.

**Figures.** Every trial is recorded. At the end of the session each xdist worker writes its own counts, and the
totals are merged into ``crash-summary.json`` in pytest's base temporary directory. They are also written to
``$LEDGER_CRASH_SUMMARY`` when that is set. The README's "Reliability" section quotes them.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import pytest
from test_races import assert_linear_chain

from ledger import Ledger
from ledger.keys import generate_keyfile, load_signing_key

COMMAND_TIMEOUT = 120.0
KILLED = (-9, 137)  # SIGKILL, as waitpid reports it, or as a shell does

# --- the process runner --------------------------------------------------------------------------------------------

# A warm interpreter that forks one child per ledger command (the ledger's modules, even those a command imports
# only when it needs them, are imported once, before any fork). stdin: one JSON request per line
# {argv, cwd, env, out, err, kill_after, timeout}. The child takes the request's environment and working directory,
# sends its stdout and stderr to the given files, and runs ``ledger.cli.run()``. The parent waits for it (poll on its
# pidfd), at most ``kill_after`` seconds when that is set and at most ``timeout`` seconds in any case, then SIGKILLs
# it. It replies with one JSON line {code, killed, timed_out, seconds}. ``code`` is the child's exit status as
# os.waitstatus_to_exitcode gives it (-9 for SIGKILL). argv[1] "s3" also imports boto3 and builds one boto3 session
# that every child reuses, as tests/test_s3_races.py's WRAPPER does: botocore's model loading is most of an S3
# client's start-up cost. Each child still builds its own client, with its own connections.
RUNNER = r"""
import json, os, select, signal, sys, time, traceback
import ledger.cli
import ledger.bundle, ledger.catalog, ledger.secrets, ledger.verify  # imported by the commands that use them

if sys.argv[1] == "s3":
    import boto3
    session = boto3.session.Session()
    session.client("s3")
    boto3.session.Session = lambda *args, **kwargs: session

for line in iter(sys.stdin.readline, ""):
    req = json.loads(line)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            for fd, path in ((1, req["out"]), (2, req["err"])):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(f, fd)
                os.close(f)
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            sys.argv = ["ledger"] + req["argv"]
            try:
                ledger.cli.run()
                code = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    pidfd = os.pidfd_open(pid)
    kill_after = req["kill_after"]
    bound = req["timeout"] if kill_after is None else min(kill_after, req["timeout"])
    fired = not select.select([pidfd], [], [], bound)[0]
    if fired:
        os.kill(pid, signal.SIGKILL)
    os.close(pidfd)
    status = os.waitpid(pid, 0)[1]
    code = os.waitstatus_to_exitcode(status)
    # the child may have exited on its own between the wait and the kill: then it was not killed
    killed = fired and code == -signal.SIGKILL
    timed_out = killed and (kill_after is None or kill_after > req["timeout"])
    sys.stdout.write(json.dumps({"code": code, "killed": killed and not timed_out, "timed_out": timed_out,
                                 "seconds": time.monotonic() - start}) + "\n")
    sys.stdout.flush()
"""


@dataclass
class Result:
    argv: list[str]
    code: int
    raw: bytes
    err: str
    killed: bool  # the delay ran out and the runner's SIGKILL ended the command
    timed_out: bool  # the command overran COMMAND_TIMEOUT (a blocked command)
    seconds: float

    @property
    def out(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.raw)

    def __str__(self) -> str:
        return (f"ledger {' '.join(self.argv)} -> exit {self.code} after {self.seconds:.2f} s"
                f"{' (timed out)' if self.timed_out else ''}\nstdout: {self.raw[:2000]!r}\nstderr: {self.err!r}")


class Runner:
    def __init__(self, mode: str, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self.errlog = self.dir / "runner.err"
        with open(self.errlog, "wb") as errf:
            self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, mode], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=errf, text=True, env=base_env())

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str], kill_after: float | None = None,
            timeout: float = COMMAND_TIMEOUT) -> Result:
        self.n += 1
        out, err = self.dir / f"{self.n}.out", self.dir / f"{self.n}.err"
        for f in (out, err):  # they exist even when the child is killed before it could open them
            f.write_bytes(b"")
        req = {"argv": argv, "cwd": str(cwd), "env": env, "out": str(out), "err": str(err),
               "kill_after": kill_after, "timeout": timeout}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the process runner died: {self.errlog.read_text(errors='replace')}")
        rep = json.loads(line)
        res = Result(argv, rep["code"], out.read_bytes(), err.read_bytes().decode("utf-8", "replace"),
                     rep["killed"], rep["timed_out"], rep["seconds"])
        out.unlink()
        err.unlink()
        return res

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def base_env() -> dict[str, str]:
    drop = ("LEDGER_STORE", "LEDGER_CATALOG", "LEDGER_CRASH_AFTER_WRITES", "LEDGER_WRITE_LOG")
    return {k: v for k, v in os.environ.items() if k not in drop}


# --- the figures ---------------------------------------------------------------------------------------------------

TRIALS: list[dict[str, Any]] = []


def record_trial(**fields: Any) -> dict[str, Any]:
    """One trial of the campaign; ``recovered`` is set once every check after the crash has passed."""
    t = {"recovered": False, **fields}
    TRIALS.append(t)
    return t


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for t in trials:
        g = groups.setdefault(f"{t['store']} {t['kind']}", {"trials": 0, "crashes": 0, "recovered": 0,
                                                           "left_garbage": 0, "states": Counter(),
                                                           "writes_before_kill": Counter()})
        g["trials"] += 1
        g["crashes"] += bool(t["crashed"])
        g["recovered"] += bool(t["recovered"])
        g["left_garbage"] += bool(t.get("leftovers"))
        g["states"][t.get("state", "?")] += 1
        if "writes" in t and t["crashed"]:
            g["writes_before_kill"][str(t["writes"])] += 1
    out: dict[str, Any] = {"trials": sum(g["trials"] for g in groups.values()),
                           "crashes": sum(g["crashes"] for g in groups.values()),
                           "recovered": sum(g["recovered"] for g in groups.values()),
                           "by_store": {}, "groups": {}}
    for store in sorted({t["store"] for t in trials}):
        mine = [t for t in trials if t["store"] == store]
        out["by_store"][store] = {"trials": len(mine), "crashes": sum(bool(t["crashed"]) for t in mine),
                                  "recovered": sum(bool(t["recovered"]) for t in mine)}
    for name in sorted(groups):
        g = groups[name]
        out["groups"][name] = {**g, "states": dict(sorted(g["states"].items())),
                               "writes_before_kill": dict(sorted(g["writes_before_kill"].items(),
                                                                 key=lambda kv: int(kv[0])))}
    return out


@pytest.fixture(scope="session", autouse=True)
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Writes this worker's trials at the end; the last worker to finish merges every worker's into the totals."""
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    root = base.parent if worker else base
    d = root / "crash-trials"
    d.mkdir(exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # write ours, read all, write the totals: the last one sees every worker's
        (d / f"{worker or 'main'}.json").write_text(json.dumps(TRIALS))
        trials = [t for p in sorted(d.glob("*.json")) for t in json.loads(p.read_text())]
        doc = json.dumps(summarise(trials), indent=2)
        (root / "crash-summary.json").write_text(doc + "\n")
        if os.environ.get("LEDGER_CRASH_SUMMARY"):
            Path(os.environ["LEDGER_CRASH_SUMMARY"]).write_text(doc + "\n")


# --- stores, sources and templates ---------------------------------------------------------------------------------


@dataclass
class Item:
    kind: str
    data: bytes

    @property
    def entry(self) -> tuple[str, int, str]:
        return self.kind, len(self.data), blake3.blake3(self.data).hexdigest()


@dataclass
class Sources:
    """Input files and a sealing key, shared by every trial of a worker."""

    root: Path
    key: Path
    pub: Path
    policy: Path

    def files(self, d: str) -> dict[str, Item]:
        """The items ``add RUN DIR`` makes of directory ``d``: names relative to it."""
        base = self.root / d
        return {p.relative_to(base).as_posix(): Item("file", p.read_bytes())
                for p in sorted(base.rglob("*")) if p.is_file()}


def text_lines(tag: str, n: int) -> bytes:
    return "".join(f"{tag} line {i}\n" for i in range(n)).encode()


BIG_ITEMS = 3000
BIG_BATCHES = {"local": 20, "s3": 5}  # fewer on S3: every trial copies the template's objects to a fresh prefix


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    root = tmp_path_factory.mktemp("crash-src")
    for i in range(3):
        (root / "p3" / f"part-{i}.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / "p3" / f"part-{i}.csv").write_bytes(text_lines(f"part {i}", 20))
    for name in ("other", "earlier", "open"):
        (root / name).mkdir()
        (root / name / f"{name}.log").write_bytes(text_lines(name, 5))
    (root / "large").mkdir()
    (root / "large" / "large.bin").write_bytes(text_lines("large", 60_000))  # > 1 MiB: stored loose
    (root / "addsrc" / "sub").mkdir(parents=True)
    for i in range(4):
        (root / "addsrc" / "sub" / f"s{i}.txt").write_bytes(text_lines(f"add {i}", 7))
    (root / "addsrc" / "big.bin").write_bytes(text_lines("added large", 55_000))
    (root / "base").mkdir()
    (root / "base" / "a.txt").write_bytes(b"staged before the crashing add\n")
    for i in range(BIG_ITEMS):
        p = root / "big" / f"g{i % 20:02d}" / f"d{i % 7}" / f"f{i:05d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"big item {i}\n".encode() * (1 + i % 5))
    key = root / "sealer.key"
    generate_keyfile(key)
    policy = root / "policy.toml"
    policy.write_text("min = { summary = 1 }\n")
    return Sources(root, key, Path(f"{key}.pub"), policy)


@dataclass
class Shape:
    """A store prepared for crash trials: ``run`` is the run the crashing command targets."""

    name: str
    run: str
    before: dict[str, Item]  # the run's items before the crashing command
    after: dict[str, Item]  # ... and after it completes (== before for a seal)
    earlier: list[str] = field(default_factory=list)  # runs sealed before
    policy: bool = False
    argv: list[str] = field(default_factory=list)  # the crashing command (add shapes)


OTHER = "other"


class Stores:
    """Prepared template stores (built once per worker through the API) and fresh copies of them per trial."""

    def __init__(self, kind: str, src: Sources, scratch: Path, s3: Any = None) -> None:
        self.kind, self.src, self.scratch, self.s3 = kind, src, scratch, s3
        self.templates: dict[str, tuple[str, Shape]] = {}
        self.seal_seconds: tuple[float, float] | None = None  # fence and end of the big shape's seal
        self.catalog: CatalogBaseline | None = None  # an undisturbed catalog (catalog_baseline)
        self.runner: Runner

    # --- templates

    def new_url(self, name: str) -> str:
        if self.kind == "s3":
            return str(self.s3.url(name))
        d = self.scratch / f"{name}-{os.urandom(4).hex()}"
        return str(d / "store")

    def template(self, shape: str) -> tuple[str, Shape]:
        if shape not in self.templates:
            url = self.new_url(f"tpl-{shape}")
            self.templates[shape] = (url, getattr(self, f"_build_{shape.replace('-', '_')}")(url))
        return self.templates[shape]

    def _ledger(self, url: str) -> Ledger:
        lg = Ledger.open(url)
        lg.init()
        return lg

    def _add_other(self, lg: Ledger) -> None:
        lg.add(OTHER, [str(self.src.root / "other")])

    def _build_plain(self, url: str) -> Shape:
        lg = self._ledger(url)
        lg.add("r", [str(self.src.root / "p3")])
        self._add_other(lg)
        items = self.src.files("p3")
        return Shape("plain", "r", items, items)

    def _build_policy(self, url: str) -> Shape:
        lg = self._ledger(url)
        lg.add("earlier", [str(self.src.root / "earlier")])
        lg.seal("earlier", load_signing_key(self.src.key))
        lg.add("r", [str(self.src.root / "p3")])
        lg.record("r", "summary", {"ingested": 60, "quarantined": 0}, name="summary.json")
        lg.add("r", [str(self.src.root / "large")])
        self._add_other(lg)
        items = {**self.src.files("p3"), **self.src.files("large"),
                 "summary.json": Item("summary", lg.read("r", "summary.json"))}
        return Shape("policy", "r", items, items, earlier=["earlier"], policy=True)

    def _build_big(self, url: str) -> Shape:
        lg = self._ledger(url)
        groups = sorted((self.src.root / "big").iterdir())
        per = -(-len(groups) // BIG_BATCHES[self.kind])
        items: dict[str, Item] = {}
        for i in range(0, len(groups), per):
            lg.add("big", [str(g) for g in groups[i:i + per]])
            for g in groups[i:i + per]:
                items.update(self.src.files(f"big/{g.name}"))
        self._add_other(lg)
        assert len(items) == BIG_ITEMS
        assert len(list(lg.store.list("runs/big/staged/"))) == BIG_BATCHES[self.kind]
        return Shape("big", "big", items, items)

    def _build_add_dir(self, url: str) -> Shape:
        lg = self._ledger(url)
        lg.add("r", [str(self.src.root / "base")])
        before = self.src.files("base")
        after = {**before, **self.src.files("addsrc")}
        return Shape("add-dir", "r", before, after, argv=["add", "r", str(self.src.root / "addsrc")])

    def _build_add_record(self, url: str) -> Shape:
        self._ledger(url)
        recs = [{"group": "nightly", "topic": "orders", "partition": p, "start": 100 * p, "end": 100 * p + 40}
                for p in range(3)]
        # what the records become, from a throw-away store (their canonical bytes are the ledger's to choose)
        probe = self._ledger(self.new_url("probe"))
        probe.record("probe", "offsets", recs)
        after = {e.name: Item(e.kind, probe.read("probe", e.name)) for e in probe.items("probe").items}
        assert len(after) == 3
        return Shape("add-record", "fresh", {}, after,
                     argv=["record", "fresh", "--kind", "offsets", json.dumps(recs)])

    def _build_catalog(self, url: str) -> Shape:
        lg = self._ledger(url)
        lg.add("bigcat", [str(self.src.root / "big")])
        key = load_signing_key(self.src.key)
        lg.seal("bigcat", key)
        lg.add("small", [str(self.src.root / "earlier")])
        lg.seal("small", key)
        lg.add("open", [str(self.src.root / "open")])
        return Shape("catalog", "bigcat", {}, {})

    # --- fresh copies

    def copy(self, shape: str, trial_dir: Path) -> Site:
        url, sh = self.template(shape)
        trial_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "local":
            dst = trial_dir / "store"
            shutil.copytree(url, dst)
            new = str(dst)
        else:
            new = self.s3.url("trial")
            client = self.s3.client()
            bucket, _, prefix = url.removeprefix("s3://").partition("/")
            new_prefix = new.removeprefix("s3://").partition("/")[2]
            keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix + "/") for o in page.get("Contents", [])]
            assert keys
            for k in keys:
                client.copy_object(Bucket=bucket, Key=new_prefix + k[len(prefix):],
                                   CopySource={"Bucket": bucket, "Key": k})
        return Site(self.kind, new, trial_dir, self.src, self.runner, sh)


@dataclass
class Site:
    """One trial's store, the CLI pointed at it, and the shape it was prepared as."""

    kind: str
    url: str
    tmp: Path
    src: Sources
    runner: Runner
    shape: Shape

    def cli(self, *args: Any, crash_after: int | None = None, kill_after: float | None = None,
            write_log: Path | None = None, env: dict[str, str] | None = None) -> Result:
        e = base_env()
        if crash_after is not None:
            e["LEDGER_CRASH_AFTER_WRITES"] = str(crash_after)
        if write_log is not None:
            e["LEDGER_WRITE_LOG"] = str(write_log)
        e.update(env or {})
        return self.runner.run(["--store", self.url] + [str(a) for a in args], cwd=self.tmp, env=e,
                               kill_after=kill_after)

    def ok(self, *args: Any, **kw: Any) -> Result:
        r = self.cli(*args, **kw)
        assert r.code == 0 and not r.timed_out, str(r)
        assert "Traceback" not in r.err, str(r)
        return r

    def seal_argv(self, run: str) -> list[Any]:
        argv: list[Any] = ["seal", run, "--key", self.src.key, "--json"]
        if self.shape.policy and run == self.shape.run:
            argv += ["--policy", self.src.policy]
        return argv


@pytest.fixture(scope="session")
def local_stores(sources: Sources, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    st = Stores("local", sources, tmp_path_factory.mktemp("crash-local"))
    st.runner = Runner("local", tmp_path_factory.mktemp("crash-runner-local"))
    yield st
    st.runner.close()


@pytest.fixture(scope="session")
def s3_stores(s3: Any, sources: Sources, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    st = Stores("s3", sources, tmp_path_factory.mktemp("crash-s3"), s3)
    st.runner = Runner("s3", tmp_path_factory.mktemp("crash-runner-s3"))  # after the fixture set the AWS_* env
    yield st
    st.runner.close()


@pytest.fixture(params=["local", "s3"])
def stores(request: pytest.FixtureRequest) -> Stores:
    return request.getfixturevalue(f"{request.param}_stores")  # type: ignore[no-any-return]


# --- write logs ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    n: int
    op: str
    key: str
    outcome: str


def read_log(path: Path) -> list[Write]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        n, op, key, outcome = line.split(" ")
        out.append(Write(int(n), op, key, outcome))
    assert [w.n for w in out] == list(range(1, len(out) + 1)), out
    return out


def point_names(writes: list[Write], context: str) -> list[str]:
    """Name each write of a seal (``context`` "seal": packs are node packs) or an add ("add": content packs).

    On S3 a small pack or loose object is published by an upload whose commit is a put-if-absent, and both are
    logged: the put (the write that makes the object exist) and then the upload's commit (``…-commit``)."""
    names: list[str] = []
    prev: Write | None = None
    for w in writes:
        k = w.key
        if k.endswith("/sealing"):
            name = "fence" if w.op == "put_if_absent" else "fence-delete"
        elif k.endswith("/sealed"):
            name = "marker"
        elif k.startswith("chain/"):
            name = "slot"
        elif k.startswith("policies/"):
            name = "policy"
        elif "/staged/" in k:
            name = "batch" if w.op == "put_if_absent" else f"batch-delete-{int(k.rsplit('/', 1)[1].split('.')[0])}"
        elif k.endswith(".pack") or k.startswith("objects/"):
            what = "loose-object" if k.startswith("objects/") else "node-pack" if context == "seal" else "content-pack"
            name = f"{what}-commit" if prev is not None and prev.key == k and w.op == "upload" else what
        elif k.endswith(".idx"):
            name = "node-index" if context == "seal" else "pack-index"
        else:
            name = f"?{w.op}:{k}"
        names.append(name)
        prev = w
    return names


# The write sequences, pinned by test_write_sequence. Seal: spec/store.md §6 steps 4 (fence), 6 (policy document,
# node pack, its index), 7 (slot), 8 (marker), 9 (batch deletes, fence delete). Add: §5 steps 4 (loose object),
# 5 (pack, index) and 7 (batch).
SEAL_POINTS: dict[tuple[str, str], list[str]] = {
    ("local", "plain"): ["fence", "node-pack", "node-index", "slot", "marker", "batch-delete-0", "fence-delete"],
    ("s3", "plain"): ["fence", "node-pack", "node-pack-commit", "node-index", "slot", "marker", "batch-delete-0",
                      "fence-delete"],
    ("local", "policy"): ["fence", "policy", "node-pack", "node-index", "slot", "marker", "batch-delete-0",
                          "batch-delete-1", "batch-delete-2", "fence-delete"],
    ("s3", "policy"): ["fence", "policy", "node-pack", "node-pack-commit", "node-index", "slot", "marker",
                       "batch-delete-0", "batch-delete-1", "batch-delete-2", "fence-delete"],
}
ADD_POINTS: dict[tuple[str, str], list[str]] = {
    ("local", "add-dir"): ["loose-object", "content-pack", "pack-index", "batch"],
    ("s3", "add-dir"): ["loose-object", "loose-object-commit", "content-pack", "content-pack-commit", "pack-index",
                        "batch"],
    ("local", "add-record"): ["content-pack", "pack-index", "batch"],
    ("s3", "add-record"): ["content-pack", "content-pack-commit", "pack-index", "batch"],
}


def point_params(table: dict[tuple[str, str], list[str]]) -> list[Any]:
    return [pytest.param(store, shape, n, name, id=f"{store}-{shape}-{n:02d}-{name}")
            for (store, shape), names in table.items() for n, name in enumerate(names, 1)]


# --- checks --------------------------------------------------------------------------------------------------------

STATES = ("unsealed", "committed", "sealed")  # no commit; commit without marker; marker written


def logged_state(writes: list[Write]) -> str:
    names = point_names(writes, "seal")
    return "sealed" if "marker" in names else "committed" if "slot" in names else "unsealed"


def seal_state(site: Site, run: str) -> tuple[str, str | None]:
    """What ``verify`` says about ``run``: one of STATES (and the commit), or the test fails -- "sealed but
    broken" (any failing check but the marker, a marker failure for another reason, another exit code)."""
    r = site.cli("verify", run, "--trust", site.src.pub, "--json")
    assert not r.timed_out, str(r)
    assert "Traceback" not in r.err, str(r)
    if r.code == 3:
        assert r.err == f"error: run {run}: not sealed\n", str(r)
        return "unsealed", None
    assert r.code in (0, 1), str(r)
    doc = r.json()
    assert doc["run"] == run, doc
    failing = [c for c in doc["checks"] if not c["ok"]]
    assert [c["name"] for c in failing] in ([], ["marker"]), f"run {run}: sealed but broken: {failing}"
    names = [c["name"] for c in doc["checks"]]
    every = ["store", "commit", "signature", "content", "tree", "chain", "criteria", "marker"]
    assert names == every + (["retention"] if site.kind == "s3" else []), doc
    if r.code == 0:
        assert doc["ok"] is True and not failing, doc
        return "sealed", doc["commit"]
    assert failing and "did not complete" in failing[0]["detail"], failing
    return "committed", doc["commit"]


def check_items(site: Site, run: str, expected: dict[str, Item], sample: int | None = None,
                rng: random.Random | None = None) -> None:
    """``ls`` lists exactly ``expected`` (kind, size, BLAKE3); ``cat`` returns the bytes of each (or a sample)."""
    doc = site.ok("ls", run, "--json").json()
    got = {e["name"]: (e["kind"], e["size"], e["blake3"]) for e in doc["items"]}
    want = {n: i.entry for n, i in expected.items()}
    if got != want:
        lost, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        changed = sorted(n for n in set(got) & set(want) if got[n] != want[n])
        pytest.fail(f"run {run}: items lost {lost[:5]}, extra {extra[:5]}, changed {changed[:5]}")
    names = sorted(expected)
    if sample is not None:
        names = (rng or random.Random(0)).sample(names, sample)
    for n in names:
        r = site.ok("cat", run, n)
        assert r.raw == expected[n].data, f"run {run}: item {n}: content differs"


def check_chain(site: Site, runs: list[str]) -> None:
    entries = site.ok("log", "--json").json()
    assert_linear_chain(entries)
    assert sorted(e["run"] for e in entries) == sorted(runs), entries


def seal_trial(site: Site, trial: dict[str, Any], *, crash_after: int | None = None,
               kill_after: float | None = None, expect_point: str | None = None, sample: int | None = None,
               rng: random.Random | None = None, catalog: bool = False) -> Result:
    """Run the crashing seal, then every check of the module docstring's "After a seal crash"; returns how the
    crashing seal ended."""
    sh, run = site.shape, site.shape.run
    log = site.tmp / "writes.log"
    r = site.cli(*site.seal_argv(run), crash_after=crash_after, kill_after=kill_after, write_log=log)
    assert not r.timed_out, str(r)
    writes = read_log(log)
    trial["writes"] = len(writes)
    if crash_after is not None:
        assert r.code in KILLED, f"the seal should have died by SIGKILL after write {crash_after}\n{r}"
        assert len(writes) == crash_after, writes
        assert point_names(writes, "seal")[-1] == expect_point, writes
    else:
        assert r.code in KILLED or (r.code == 0 and not r.killed), str(r)
    trial["crashed"] = r.code in KILLED

    state, commit = seal_state(site, run)
    trial["state"] = state
    want = logged_state(writes)
    if crash_after is not None or not trial["crashed"]:
        assert state == (want if trial["crashed"] else "sealed"), (state, writes)
    else:  # a random kill: a write may have landed after the last line logged
        assert STATES.index(state) >= STATES.index(want), (state, writes)

    # A different run of the same store is sealed at once: the crash blocks nobody.
    o = site.cli(*site.seal_argv(OTHER))
    assert o.code == 0 and not o.timed_out, f"sealing another run after the crash\n{o}"

    # Re-running the seal completes it.
    garbage = [k for k in Ledger.open(site.url).store.list(f"runs/{run}/") if k != f"runs/{run}/sealed"]
    again = site.cli(*site.seal_argv(run))
    assert not again.timed_out and "Traceback" not in again.err, str(again)
    if state == "unsealed":
        assert again.code == 0, str(again)
        assert again.json()["completed_interrupted"] is False, again.out
    elif state == "committed" and site.kind == "local":  # the lease proves the crashed sealer is gone
        assert again.code == 0, str(again)
        doc = again.json()
        assert doc["completed_interrupted"] is True and doc["commit"] == commit, doc
    elif state == "committed":  # S3, no lease: marker written, exit 4 (spec/store.md §4a)
        assert again.code == 4, str(again)
        assert commit is not None and f"b3:{commit[:16]}" in again.err, str(again)
        assert "its completion marker is now written" in again.err, str(again)
    elif garbage and site.kind == "local":  # died in the cleanup after the marker: the re-run finishes it
        assert again.code == 0, str(again)
        doc = again.json()
        assert doc["completed_interrupted"] is True and doc["commit"] == commit, doc
    else:  # the seal had completed before the crash (marker written); a re-run says so (and, on S3 without a
        # lease, still removes what a cleanup cut short left behind)
        assert again.code == 4, str(again)
        assert commit is not None and f"already sealed by commit b3:{commit[:16]}" in again.err, str(again)
    trial["reseal_exit"] = again.code

    final, final_commit = seal_state(site, run)
    assert final == "sealed", final
    if commit is not None:
        assert final_commit == commit, "the commit that landed before the crash is the run's commit"
    check_items(site, run, sh.before, sample, rng)
    check_chain(site, sh.earlier + [run, OTHER])

    # Staging and fence are cleaned up by whichever seal writes the marker (§6 step 9). Only a crash after the
    # marker, during that cleanup, leaves some behind: harmless garbage that nothing reads (the §6 crash table).
    leftovers = [k for k in Ledger.open(site.url).store.list(f"runs/{run}/") if k != f"runs/{run}/sealed"]
    assert leftovers == [], leftovers  # the re-run removed whatever a cut-short cleanup left
    trial["leftovers"] = len(garbage)

    if catalog:  # the catalog (a cache that catches up on its next query) sees exactly the sealed runs
        env = {"LEDGER_CATALOG": str(site.tmp / "catalog.sqlite")}
        rows = {row["run"]: row for row in site.ok("runs", "--json", env=env).json()}
        assert sorted(rows) == sorted(sh.earlier + [run, OTHER]), rows
        assert all(row["status"] == "sealed" for row in rows.values()), rows
        assert rows[run]["commit"] == final_commit and rows[run]["count"] == len(sh.before), rows[run]
        assert "agrees with the store" in site.ok("reindex", "--check", env=env).out
    trial["recovered"] = True
    return r


# --- the write sequences themselves --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["plain", "policy", "add-dir", "add-record"])
def test_write_sequence(stores: Stores, shape: str, tmp_path: Path) -> None:
    """A dry run (nothing killed) of the command each shape crashes writes exactly the named points, in order --
    the parametrisation of the point tests below relies on it -- and completes normally."""
    site = stores.copy(shape, tmp_path)
    log = tmp_path / "writes.log"
    if shape in ("plain", "policy"):
        r = site.cli(*site.seal_argv(site.shape.run), write_log=log)
        points, context = SEAL_POINTS[(stores.kind, shape)], "seal"
    else:
        r = site.cli(*site.shape.argv, write_log=log)
        points, context = ADD_POINTS[(stores.kind, shape)], "add"
    assert r.code == 0, str(r)
    writes = read_log(log)
    assert point_names(writes, context) == points, writes
    assert all(w.outcome in ("True", "None") for w in writes), writes  # every write created (or deleted) its key
    if context == "seal":
        assert seal_state(site, site.shape.run)[0] == "sealed"
    check_items(site, site.shape.run, site.shape.after)


# --- seals killed after each write ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("store", "shape", "n", "point"), point_params(SEAL_POINTS))
def test_seal_killed_after_write(request: pytest.FixtureRequest, store: str, shape: str, n: int, point: str,
                                 tmp_path: Path) -> None:
    stores: Stores = request.getfixturevalue(f"{store}_stores")
    site = stores.copy(shape, tmp_path)
    trial = record_trial(store=store, kind="seal, killed after a chosen write", case=f"{shape}/{n}/{point}",
                         crashed=False)
    seal_trial(site, trial, crash_after=n, expect_point=point, catalog=True)


# --- adds killed after each write ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("store", "shape", "n", "point"), point_params(ADD_POINTS))
def test_add_killed_after_write(request: pytest.FixtureRequest, store: str, shape: str, n: int, point: str,
                                tmp_path: Path) -> None:
    stores: Stores = request.getfixturevalue(f"{store}_stores")
    site = stores.copy(shape, tmp_path)
    sh = site.shape
    trial = record_trial(store=store, kind="add, killed after a chosen write", case=f"{shape}/{n}/{point}",
                         crashed=False)
    log = tmp_path / "writes.log"
    r = site.cli(*sh.argv, crash_after=n, write_log=log)
    assert r.code in KILLED, f"the add should have died by SIGKILL after write {n}\n{r}"
    trial["crashed"] = True
    writes = read_log(log)
    trial["writes"] = len(writes)
    assert len(writes) == n and point_names(writes, "add")[-1] == point, writes

    # All of the add's items or none: all exactly when its batch (the commit point of an add) landed.
    committed = "batch" in point_names(writes, "add")
    visible = sh.after if committed else sh.before
    if visible:
        check_items(site, sh.run, visible)
    else:
        r = site.cli("ls", sh.run, "--json")
        assert r.code == 3 and r.err == f"error: run {sh.run}: no such run\n", str(r)
    trial["state"] = "all" if committed else "none"

    site.ok(*sh.argv)  # re-adding succeeds (a no-op when the batch had landed)
    check_items(site, sh.run, sh.after)
    site.ok(*site.seal_argv(sh.run))
    assert seal_state(site, sh.run)[0] == "sealed"
    check_items(site, sh.run, sh.after)
    trial["recovered"] = True


# --- seals killed at random times ----------------------------------------------------------------------------------

RANDOM_SEALS = {"local": 110, "s3": 24}


def calibrate_seal(stores: Stores, tmp: Path) -> tuple[float, float]:
    """When an undisturbed seal of the big shape writes its fence, and when it exits (seconds from the fork), on
    this machine, measured once per worker: a seal killed right after its first write, and a dry run."""
    if stores.seal_seconds is None:
        fence, whole = [], []
        for i in range(2):  # the faster of two of each: the first may pay for a cold cache
            site = stores.copy("big", tmp / f"fence-{i}")
            r = site.cli(*site.seal_argv("big"), crash_after=1)
            assert r.code in KILLED, str(r)
            fence.append(r.seconds)
            site = stores.copy("big", tmp / f"whole-{i}")
            whole.append(site.ok(*site.seal_argv("big")).seconds)
        stores.seal_seconds = (min(fence), min(whole))
    return stores.seal_seconds


@pytest.mark.parametrize(("store", "seed"), [pytest.param(store, seed, id=f"{store}-{seed:03d}")
                                             for store, n in RANDOM_SEALS.items() for seed in range(n)])
def test_seal_killed_at_random_time(request: pytest.FixtureRequest, store: str, seed: int, tmp_path: Path) -> None:
    """A quarter of the delays are drawn over the whole seal, which spends most of its time reading and checking the
    staged items before its first write; the others over the part after the fence, where it writes. A seal that
    finishes before its kill is not a crash; the window then shrinks to the time it took, so that the campaign keeps
    crashing seals when the machine gets faster (the figures count crashes, not trials)."""
    stores: Stores = request.getfixturevalue(f"{store}_stores")
    fence, whole = calibrate_seal(stores, tmp_path)
    rng = random.Random(seed)
    delay = rng.uniform(0.0, whole) if rng.random() < 0.25 else rng.uniform(fence, max(fence, whole))
    site = stores.copy("big", tmp_path)
    trial = record_trial(store=store, kind="seal, killed at a random time", case=f"seed {seed}", crashed=False,
                         delay=round(delay, 4))
    r = seal_trial(site, trial, kill_after=delay, sample=3, rng=rng)
    if r.code == 0 and r.seconds < whole:  # it finished before the kill: this machine is faster now
        stores.seal_seconds = (fence * r.seconds / whole, r.seconds)


# --- the catalog's writer killed at random times -------------------------------------------------------------------

RANDOM_CATALOG = {("local", "runs"): 10, ("local", "find"): 6, ("local", "reindex"): 8, ("s3", "runs"): 3,
                  ("s3", "find"): 3}
FIND_DIGEST = blake3.blake3(b"big item 17\n" * 3).hexdigest()  # g17/d3/f00017.txt of the sources' big/ tree


def catalog_argv(command: str) -> list[str]:
    return {"runs": ["runs", "--json"], "find": ["find", FIND_DIGEST, "--json"], "reindex": ["reindex"]}[command]


@dataclass
class CatalogBaseline:
    runs: Any  # what `runs --json` answers
    find: Any  # what `find FIND_DIGEST --json` answers
    seconds: dict[str, float]  # how long each command of catalog_argv takes, from the fork to the exit


def catalog_baseline(stores: Stores, tmp: Path) -> tuple[Site, CatalogBaseline]:
    """The catalog template (shared and read-only: catalog commands never write the store), what an undisturbed
    catalog answers, and how long a first catch-up (``runs``, ``find``) and a rebuild take here."""
    url, sh = stores.template("catalog")
    site = Site(stores.kind, url, tmp, stores.src, stores.runner, sh)
    if stores.catalog is None:
        seconds: dict[str, float] = {}
        for i in range(2):  # the faster of two of each: the first may pay for a cold cache
            for command in ("runs", "find"):  # each the first query of its own catalog
                env = {"LEDGER_CATALOG": str(tmp / f"baseline-{command}-{i}.sqlite")}
                first = site.ok(*catalog_argv(command), env=env)
                assert first.err == "", str(first)
                seconds[command] = min(seconds.get(command, first.seconds), first.seconds)
            seconds["reindex"] = min(seconds.get("reindex", 1e9), site.ok("reindex", env=env).seconds)
        env = {"LEDGER_CATALOG": str(tmp / "baseline-runs-1.sqlite")}
        stores.catalog = CatalogBaseline(site.ok("runs", "--json", env=env).json(),
                                         site.ok(*catalog_argv("find"), env=env).json(), seconds)
    base = stores.catalog
    runs = {r["run"]: r for r in base.runs}
    assert sorted(runs) == ["bigcat", "open", "small"], base.runs
    assert runs["bigcat"]["status"] == "sealed" and runs["bigcat"]["count"] == BIG_ITEMS, runs
    assert runs["open"]["status"] == "open" and runs["open"]["count"] == 1, runs
    assert [(f["run"], f["name"]) for f in base.find] == [("bigcat", "g17/d3/f00017.txt")], base.find
    return site, base


@pytest.mark.parametrize(("store", "command", "seed"),
                         [pytest.param(store, cmd, seed, id=f"{store}-{cmd}-{seed:02d}")
                          for (store, cmd), n in RANDOM_CATALOG.items() for seed in range(n)])
def test_catalog_writer_killed_at_random_time(request: pytest.FixtureRequest, store: str, command: str, seed: int,
                                              tmp_path: Path) -> None:
    """``runs`` and ``find`` are killed during their first query (the catch-up that creates and fills the catalog),
    ``reindex`` while it rebuilds a current catalog. What the killed process leaves is never wrong: ``reindex
    --check`` finds no catalog or one that agrees with the store (maybe behind it). The next query then answers as
    an undisturbed catalog does."""
    stores: Stores = request.getfixturevalue(f"{store}_stores")
    site, base = catalog_baseline(stores, tmp_path)
    catalog = tmp_path / "catalog.sqlite"
    env = {"LEDGER_CATALOG": str(catalog)}
    if command == "reindex":
        site.ok("runs", "--json", env=env)  # an existing, current catalog: the rebuild replaces it
    rng = random.Random(1000 * len(command) + seed)
    delay = rng.uniform(0.0, 0.8 * base.seconds[command])  # a few still finish first: timings vary
    trial = record_trial(store=store, kind=f"catalog: `ledger {command}` killed at a random time",
                         case=f"seed {seed}", crashed=False, delay=round(delay, 4))
    r = site.cli(*catalog_argv(command), env=env, kill_after=delay)
    assert r.code in KILLED or (r.code == 0 and not r.killed), str(r)
    trial["crashed"] = r.code in KILLED

    left = site.cli("reindex", "--check", "--json", env=env)
    assert left.code in (0, 1) and not left.timed_out, str(left)
    doc = left.json()
    if left.code == 0:
        assert doc["ok"] is True and doc["problems"] == [], doc
        trial["state"] = "a catalog that agrees with the store"
    else:
        assert doc["problems"] == [f"catalog {catalog}: does not exist (`ledger reindex` builds it)"], doc
        trial["state"] = "no catalog"

    after = site.ok("runs", "--json", env=env)
    assert after.json() == base.runs, "the catalog answers as an undisturbed one does"
    warnings = after.err.splitlines()
    assert len(warnings) <= 1, str(after)
    if warnings:
        assert re.fullmatch(r"warning: catalog .*; rebuilt from the store", warnings[0]), str(after)
        trial["state"] += ", rebuilt with a warning"
    check = site.ok("reindex", "--check", env=env)
    assert "agrees with the store" in check.out, str(check)
    assert site.ok(*catalog_argv("find"), env=env).json() == base.find
    trial["recovered"] = True


# --- the campaign's size -------------------------------------------------------------------------------------------


def test_campaign_has_at_least_200_trials() -> None:
    """Issue 8 asks for at least 200 crash trials across the local and S3 stores."""
    planned = (sum(len(v) for v in SEAL_POINTS.values()) + sum(len(v) for v in ADD_POINTS.values())
               + sum(RANDOM_SEALS.values()) + sum(RANDOM_CATALOG.values()))
    assert planned >= 200, planned
    assert {s for s, _ in SEAL_POINTS} == {s for s, _ in ADD_POINTS} == set(RANDOM_SEALS) == {"local", "s3"}

