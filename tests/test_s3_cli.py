"""The ``ledger`` command line end to end on an S3 store (``s3://bucket/prefix``), against a real S3 API server.

The server is moto's, in its own process (tests/s3server.py, started by the ``s3`` fixture of tests/conftest.py), or
whatever ``LEDGER_TEST_S3_ENDPOINT`` names. Every command is a real ``python -m ledger.cli`` subprocess that reaches
the server through the environment the fixture exported (``AWS_ENDPOINT_URL`` and credentials); the tests read and
tamper with the bucket directly through boto3. Nothing is mocked inside any ledger process.

Covered: everything the local store does works the same on S3 (tests/test_cli.py is the local counterpart);
verification from S3 alone after every local file is gone; tampered objects; missing bucket, missing credentials,
an unreachable endpoint, foreign keys in the prefix and malformed URLs (one error line, the contract's exit code,
nothing written); and that a local ``verify`` never imports boto3.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest
from conftest import S3Server
from s3server import start_server, stop_server
from test_cli import HEX64, Cli, Result, assert_error, base_env, run_cli, write

from ledger import Ledger

MIB = 1024 * 1024
BIG = 3 * MIB  # >= 1 MiB: stored loose under objects/


# --- helpers -------------------------------------------------------------------------------------------------------

def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix


_CLIENTS: dict[str, Any] = {}


def client(s3: S3Server) -> Any:
    """One boto3 client per endpoint for the test's own reads and writes (making one costs ~0.1 s of CPU)."""
    if s3.endpoint not in _CLIENTS:
        _CLIENTS[s3.endpoint] = s3.client()
    return _CLIENTS[s3.endpoint]


def listing(s3: S3Server, url: str) -> dict[str, tuple[int, str]]:
    """Every object under the store's prefix: key (relative to the prefix) -> (size, ETag). Equal listings before
    and after a command mean it wrote, replaced and deleted nothing."""
    bucket, prefix = split_url(url)
    out: dict[str, tuple[int, str]] = {}
    for page in client(s3).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", ()):
            out[o["Key"][len(prefix) + 1:]] = (int(o["Size"]), str(o["ETag"]))
    return out


def get(s3: S3Server, url: str, key: str) -> bytes:
    bucket, prefix = split_url(url)
    data: bytes = client(s3).get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read()
    return data


def put(s3: S3Server, url: str, key: str, data: bytes) -> None:
    """An unconditional PUT: replaces the object (this is how the tests tamper)."""
    bucket, prefix = split_url(url)
    client(s3).put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)


def b3(data: bytes) -> str:
    return str(blake3.blake3(data).hexdigest())


class S3Cli(Cli):
    """test_cli's Cli with the store at a fresh URL on the test server (``url``), and an environment per call."""

    def __init__(self, s3: S3Server, tmp: Path, name: str = "cli") -> None:
        super().__init__(tmp)
        self.s3 = s3
        self.url = s3.url(name)

    def __call__(self, *args: Any, input: bytes | None = None, env: dict[str, str] | None = None,
                 url: str | None = None, store: Path | str | None = None) -> Result:
        return run_cli(list(args), cwd=self.tmp, store=url or store or self.url, input=input, env=env)

    def fail(self, code: int, *args: Any, input: bytes | None = None, env: dict[str, str] | None = None,
             stdout_empty: bool = True, mentions: str | None = None) -> str:
        return assert_error(self(*args, input=input, env=env), code, stdout_empty=stdout_empty, mentions=mentions)

    def listing(self) -> dict[str, tuple[int, str]]:
        return listing(self.s3, self.url)

    def unchanged(self, code: int, *args: Any, input: bytes | None = None, env: dict[str, str] | None = None,
                  stdout_empty: bool = True, mentions: str | None = None) -> str:
        """Fails with ``code`` and leaves every object under the prefix exactly as it was."""
        before = self.listing()
        line = self.fail(code, *args, input=input, env=env, stdout_empty=stdout_empty, mentions=mentions)
        assert self.listing() == before, f"the store changed after a refused `ledger {args}`: {line}"
        return line

    def setup(self) -> S3Cli:
        j = self.json("init")
        assert (j["store"], j["created"]) == (self.url, True), j
        self.key.parent.mkdir(parents=True, exist_ok=True)
        r = run_cli(["keys", "generate", "--out", self.key], cwd=self.tmp)
        assert r.code == 0 and HEX64.fullmatch(r.out.strip()), str(r)
        return self


def make_data(root: Path) -> dict[str, bytes]:
    """An evidence directory: small files (packed), an empty one, and one 3 MiB file (loose). Name -> bytes."""
    files = {"a.csv": b"id,v\n1,2\n", "sub/b.csv": b"id,v\n3,4\n", "sub/deeper/c.bin": bytes(range(256)) * 3,
             "empty.txt": b"", "big.bin": os.urandom(BIG)}
    for name, data in files.items():
        write(root / name, data)
    return files


@pytest.fixture
def store(s3: S3Server, tmp_path: Path) -> S3Cli:
    """A fresh, initialised S3 store and a sealing key."""
    return S3Cli(s3, tmp_path).setup()


@dataclass
class Sealed:
    """One run sealed on S3 (shared by the read-only tests and copied for the tamper tests)."""

    cli: S3Cli
    files: dict[str, bytes]  # item name -> content
    kinds: dict[str, str]
    added: Any
    staged: Any
    seal: Any
    record_name: str
    keys: dict[str, tuple[int, str]]  # the bucket listing after the seal


@pytest.fixture(scope="module")
def sealed(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    cli = S3Cli(s3, tmp_path_factory.mktemp("sealed"), "sealed").setup()
    files = make_data(cli.tmp / "data")
    added = cli.json("add", "r1", cli.tmp / "data")
    log = write(cli.tmp / "job.log", "started\nfinished\n")
    cli.ok("add", "r1", log, "--as", "logs/job.log", "--kind", "log")
    rec = cli.json("record", "r1", "--kind", "summary", "-", input=b'{"rows": 2, "ok": 1}')
    record_name = rec["item"]["name"]
    files |= {"logs/job.log": log.read_bytes(), record_name: b'{"ok":1,"rows":2}'}
    kinds = {n: "file" for n in files} | {"logs/job.log": "log", record_name: "summary"}
    staged = cli.json("ls", "r1")
    seal = cli.json("seal", "r1", "--key", cli.key)
    return Sealed(cli, files, kinds, added, staged, seal, record_name, cli.listing())


def copy_store(s3: S3Server, src: str, name: str) -> str:
    """A byte-for-byte copy of the store at ``src`` under a fresh prefix (server-side copies, no CLI)."""
    dst = s3.url(name)
    bucket, sp = split_url(src)
    _, dp = split_url(dst)
    c = client(s3)
    for key in listing(s3, src):
        c.copy_object(Bucket=bucket, Key=f"{dp}/{key}", CopySource={"Bucket": bucket, "Key": f"{sp}/{key}"})
    assert listing(s3, dst) == listing(s3, src)
    return dst


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound by this process but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# --- 1. everything the local store does, on S3 ---------------------------------------------------------------------

def test_init_is_idempotent(s3: S3Server, tmp_path: Path) -> None:
    cli = S3Cli(s3, tmp_path)
    assert cli.listing() == {}
    j = cli.json("init")
    assert (j["store"], j["created"]) == (cli.url, True), j
    after = cli.listing()
    assert set(after) == {"config"}, after
    cfg = get(s3, cli.url, "config")
    j = cli.json("init")
    assert (j["store"], j["created"]) == (cli.url, False), j
    assert "already initialised" in cli.ok("init").out
    assert cli.listing() == after and get(s3, cli.url, "config") == cfg, "a second init rewrote something"
    assert not (tmp_path / ".ledger").exists(), "an S3 init created a local store"


def test_init_refuses_a_prefix_holding_other_objects(s3: S3Server, tmp_path: Path) -> None:
    """A prefix that already holds objects a ledger did not write is not made a store: exit 2 naming the object,
    nothing written."""
    cli = S3Cli(s3, tmp_path)
    put(s3, cli.url, "reports/2026-11.csv", b"someone else's data\n")
    before = listing(s3, cli.url)
    r = cli("init")
    assert_error(r, 2, mentions="reports/2026-11.csv")
    assert "empty location" in r.err, str(r)
    assert listing(s3, cli.url) == before, "a refused init wrote something"


def test_add_packs_small_items_and_stores_large_ones_loose(sealed: Sealed) -> None:
    added = {e["name"]: e for e in sealed.added["added"]}
    assert sorted(added) == ["a.csv", "big.bin", "empty.txt", "sub/b.csv", "sub/deeper/c.bin"]
    assert sealed.added["unchanged"] == []
    keys = sealed.keys
    big = b3(sealed.files["big.bin"])
    assert keys[f"objects/{big[:2]}/{big}"][0] == BIG, "the 3 MiB item is not stored loose"
    assert [k for k in keys if k.startswith("objects/")] == [f"objects/{big[:2]}/{big}"], "small items stored loose"
    packs = sorted(k.removesuffix(".pack") for k in keys if k.endswith(".pack"))
    assert packs and all(k.removesuffix(".idx") in packs for k in keys if k.endswith(".idx"))
    assert sum(keys[p + ".pack"][0] for p in packs) < MIB, "the large item went into a pack"
    # sealed: commit slot 0 and the marker are there; staging and the fence are cleaned up
    assert "chain/00000000000000000000" in keys and "runs/r1/sealed" in keys
    assert not [k for k in keys if k.startswith("runs/r1/") and k != "runs/r1/sealed"], keys


def test_ls_blake3_and_cat_byte_identical(sealed: Sealed) -> None:
    cli, files = sealed.cli, sealed.files
    order = sorted(files, key=lambda n: n.encode())
    for doc, is_sealed in ((sealed.staged, False), (cli.json("ls", "r1"), True)):
        assert doc["run"] == "r1" and doc["sealed"] is is_sealed
        assert [i["name"] for i in doc["items"]] == order
        for i in doc["items"]:
            data = files[i["name"]]
            assert i["blake3"] == b3(data), i["name"]
            assert i["size"] == len(data) and i["kind"] == sealed.kinds[i["name"]], i
    human = cli.ok("ls", "r1")
    assert human.out.splitlines() == [f"{b3(files[n])}  {len(files[n]):>12}  {sealed.kinds[n]:<8}  {n}"
                                      for n in order]
    assert f"{len(files)} item(s), sealed" in human.err
    for name in ("big.bin", "sub/deeper/c.bin", "empty.txt", sealed.record_name):
        assert cli.ok("cat", "r1", name).raw == files[name], name
    cli.fail(3, "cat", "r1", "missing.txt", mentions="missing.txt")


def test_seal_verify_human_and_json(sealed: Sealed) -> None:
    cli, s = sealed.cli, sealed.seal
    assert s["run"] == "r1" and s["seq"] == 0 and s["parent"] is None and s["items"] == len(sealed.files)
    assert s["bytes"] == sum(len(d) for d in sealed.files.values())
    assert HEX64.fullmatch(s["commit"]) and HEX64.fullmatch(s["root"])
    v = cli.ok("verify", "r1", "--trust", cli.pub)
    lines = v.out.splitlines()
    assert lines[-1] == "run r1: verified" and v.err == "", str(v)
    checks = [re.fullmatch(r"\[ok  \] (\S+) +\S.*", ln) for ln in lines[:-1]]
    assert all(checks), v.out
    names = [m.group(1) for m in checks if m]
    assert {"store", "commit", "signature", "content", "tree", "chain", "marker"} <= set(names), v.out
    r = cli.ok("verify", "r1", "--trust", cli.pub, "--json")
    assert r.err == "" and len(r.out.strip().splitlines()) == 1
    j = r.json()
    assert j["run"] == "r1" and j["ok"] is True and j["commit"] == s["commit"] and j["root"] == s["root"]
    assert j["checks"] and all(c["ok"] for c in j["checks"])


def test_show_and_log(sealed: Sealed) -> None:
    cli, s = sealed.cli, sealed.seal
    for ref in ("r1", "#0", s["commit"][:12]):
        j = cli.json("show", ref)
        assert (j["commit"], j["root"], j["seq"], j["run"]) == (s["commit"], s["root"], 0, "r1"), ref
    human = cli.ok("show", "r1").out
    assert s["commit"] in human and "(genesis)" in human
    assert [e["commit"] for e in cli.json("log")] == [s["commit"]]
    lines = cli.ok("log").out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("#0") and s["commit"][:16] in lines[0] and lines[0].endswith("r1")
    cli.fail(3, "show", "#1")


def test_readd_same_content_is_a_noop_and_different_content_refused(store: S3Cli) -> None:
    d = store.tmp / "in"
    small = write(d / "x.csv", "x,y\n1,2\n")
    loose = write(d / "blob.bin", os.urandom(MIB + 17))
    store.ok("add", "r1", d)
    before = store.listing()
    j = store.json("add", "r1", d)
    assert j["added"] == [] and sorted(e["name"] for e in j["unchanged"]) == ["blob.bin", "x.csv"]
    assert "already present" in store.ok("add", "r1", small).out
    assert store.listing() == before, "a no-op add wrote something"
    items = store.json("ls", "r1")["items"]

    write(small, "x,y\n1,3\n")
    assert "different content" in store.unchanged(6, "add", "r1", small, mentions="x.csv")
    write(small, "x,y\n1,2\n")
    write(loose, os.urandom(MIB + 17))
    store.unchanged(6, "add", "r1", loose, mentions="blob.bin")
    write(d / "new.txt", "new")
    store.unchanged(6, "add", "r1", d, mentions="blob.bin")  # the whole directory add is refused, new.txt too
    assert store.json("ls", "r1")["items"] == items


def test_seal_twice_and_add_to_sealed_run_refused(store: S3Cli) -> None:
    store.ok("add", "r1", write(store.tmp / "a.txt", "a"))
    commit = store.json("seal", "r1", "--key", store.key)["commit"]
    assert commit[:16] in store.unchanged(4, "seal", "r1", "--key", store.key)
    store.unchanged(4, "add", "r1", write(store.tmp / "late.txt", "late"), mentions="r1")
    store.unchanged(4, "record", "r1", "--kind", "summary", '{"late": 1}', mentions="r1")
    assert [e["commit"] for e in store.json("log")] == [commit]


def test_empty_unknown_and_unsealed_runs(store: S3Cli) -> None:
    (store.tmp / "nothing").mkdir()
    store.ok("add", "empty", store.tmp / "nothing")
    assert store.json("ls", "empty") == {"run": "empty", "sealed": False, "items": []}
    store.unchanged(1, "seal", "empty", "--key", store.key, mentions="empty", stdout_empty=False)
    store.ok("add", "open", write(store.tmp / "a.txt", "a"))
    store.fail(3, "verify", "open", "--trust", store.pub, mentions="not sealed")
    for args in (["seal", "ghost", "--key", store.key], ["verify", "ghost", "--trust", store.pub], ["ls", "ghost"],
                 ["cat", "ghost", "a.txt"], ["show", "ghost"]):
        store.unchanged(3, *args, mentions="ghost")
    assert store.json("log") == []


# --- 2. durability: verify from S3 alone -------------------------------------------------------------------------

def test_verify_from_s3_alone_after_local_teardown(s3: S3Server, tmp_path: Path) -> None:
    """Seal, delete every local file (evidence, private key, working directory) except a copy of the public key,
    then verify from a fresh working directory with a fresh HOME and TMPDIR, the store given by LEDGER_STORE."""
    work = tmp_path / "work"
    work.mkdir()
    cli = S3Cli(s3, work, "durable").setup()
    files = make_data(work / "data")
    cli.ok("add", "r1", work / "data")
    files["summary.json"] = b'{"n":1}'
    cli.ok("record", "r1", "--kind", "summary", "--name", "summary.json", '{"n": 1}')
    commit = cli.json("seal", "r1", "--key", cli.key)["commit"]

    auditor = tmp_path / "auditor"
    auditor.mkdir()
    pub = Path(shutil.copy(cli.pub, auditor / "sealer.pub"))
    shutil.rmtree(work)
    fresh = {d: tmp_path / d for d in ("cwd", "home", "tmp")}
    for d in fresh.values():
        d.mkdir()
    env = base_env() | {"LEDGER_STORE": cli.url, "HOME": str(fresh["home"]), "TMPDIR": str(fresh["tmp"])}

    def run(*args: Any) -> Result:
        r = run_cli(list(args), cwd=fresh["cwd"], env=env)
        assert r.code == 0 and "Traceback" not in r.err, str(r)
        return r

    assert run("verify", "r1", "--trust", pub).out.splitlines()[-1] == "run r1: verified"
    j = run("verify", "r1", "--trust", pub, "--json").json()
    assert j["ok"] is True and j["commit"] == commit
    items = run("ls", "r1", "--json").json()["items"]
    assert {i["name"]: i["blake3"] for i in items} == {n: b3(d) for n, d in files.items()}
    assert run("cat", "r1", "big.bin").raw == files["big.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auditor", "cwd", "home", "tmp"]
    assert [list(d.iterdir()) for d in fresh.values()] == [[], [], []], "the auditor's commands wrote local files"


def test_bundle_exported_from_s3_verifies_after_the_bucket_prefix_is_gone(s3: S3Server, tmp_path: Path) -> None:
    """Export a run sealed on S3 to a bundle, delete every object under the prefix, verify from the bundle alone."""
    cli = S3Cli(s3, tmp_path, "bundled").setup()
    make_data(tmp_path / "data")
    cli.ok("add", "r1", tmp_path / "data")
    cli.ok("seal", "r1", "--key", cli.key)
    out = tmp_path / "r1.bundle"
    cli.ok("export", "r1", "-o", out)
    bucket, prefix = split_url(cli.url)
    c = client(s3)
    for key in listing(s3, cli.url):
        c.delete_object(Bucket=bucket, Key=f"{prefix}/{key}")
    assert listing(s3, cli.url) == {}
    r = cli("verify", "r1", "--bundle", out, "--trust", cli.pub)
    assert r.code == 0 and r.out.splitlines()[-1] == "run r1: verified", str(r)


# --- 3. tampering on S3 --------------------------------------------------------------------------------------------

def flip(data: bytes, at: int | None = None) -> bytes:
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


TARGETS = ["content-pack", "content-index", "node-pack", "node-index", "loose-object", "commit-slot", "marker",
           "config"]


def target(sealed: Sealed, name: str) -> tuple[str, str]:
    """The key to damage and what the error line must name."""
    keys = sealed.keys
    node = sealed.seal["root"][:28] + "0000"  # tree-node packs are named after the root (spec/store.md, section 3)
    content = max((k for k in keys if k.endswith(".pack") and not k.startswith(f"packs/{node}")),
                  key=lambda k: keys[k][0]).removeprefix("packs/").removesuffix(".pack")
    big = b3(sealed.files["big.bin"])
    return {
        "content-pack": (f"packs/{content}.pack", content),
        "content-index": (f"packs/{content}.idx", content),
        # a one-node tree: the node's id, which the error names, starts like its pack's id
        "node-pack": (f"packs/{node}.pack", node[:16]),
        "node-index": (f"packs/{node}.idx", node),
        "loose-object": (f"objects/{big[:2]}/{big}", big),
        "commit-slot": ("chain/00000000000000000000", "slot 0"),
        "marker": ("runs/r1/sealed", "completion marker"),
        "config": ("config", "config"),
    }[name]


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
@pytest.mark.parametrize("what", TARGETS)
def test_tampered_object_fails_verify(s3: S3Server, sealed: Sealed, what: str, damage: str) -> None:
    url = copy_store(s3, sealed.cli.url, f"tamper-{what}")
    key, mention = target(sealed, what)
    data = get(s3, url, key)
    if damage == "truncated":
        bad = data[: len(data) // 2]
    elif what == "marker":  # a byte of the commit digest it names (elsewhere it would name a pack that is not there)
        bad = flip(data, data.index(bytes.fromhex(sealed.seal["commit"])) + 5)
    else:
        bad = flip(data)
    put(s3, url, key, bad)
    assert get(s3, url, key) == bad
    r = sealed.cli("verify", "r1", "--trust", sealed.cli.pub, url=url)
    line = assert_error(r, 1, stdout_empty=False, mentions=mention)
    assert line.startswith("error: run r1: ") and "[FAIL]" in r.out and r.out.endswith("run r1: NOT verified\n")


def test_tampered_object_fails_verify_json(s3: S3Server, sealed: Sealed) -> None:
    url = copy_store(s3, sealed.cli.url, "tamper-json")
    key, mention = target(sealed, "content-pack")
    put(s3, url, key, flip(get(s3, url, key)))
    r = sealed.cli("verify", "r1", "--trust", sealed.cli.pub, "--json", url=url)
    assert r.code == 1 and r.err == "", str(r)
    doc = r.json()
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert doc["ok"] is False and [c["name"] for c in failed] == ["content"] and mention in failed[0]["detail"]


# --- 4. bad input: bucket, credentials, endpoint, foreign keys, URLs ------------------------------------------------

WRITE_AND_READ = [["init"], ["add", "r1", "{data}"], ["record", "r1", "--kind", "summary", '{"a": 1}'],
                  ["seal", "r1", "--key", "{key}"], ["verify", "r1", "--trust", "{pub}"], ["ls", "r1"],
                  ["cat", "r1", "a.csv"], ["show", "r1"], ["log"]]


def commands(cli: S3Cli, data: Path, which: list[str] | None = None) -> list[list[str]]:
    subst = {"{data}": str(data), "{key}": str(cli.key), "{pub}": str(cli.pub)}
    return [[subst.get(a, a) for a in args] for args in WRITE_AND_READ if which is None or args[0] in which]


def test_missing_bucket(s3: S3Server, tmp_path: Path) -> None:
    cli = S3Cli(s3, tmp_path)
    bucket = f"ledger-missing-{uuid.uuid4().hex[:12]}"
    cli.url = f"s3://{bucket}/p"
    cli.key.parent.mkdir()
    assert run_cli(["keys", "generate", "--out", cli.key], cwd=tmp_path).code == 0
    write(tmp_path / "data" / "a.csv", "a")
    for args in commands(cli, tmp_path / "data", ["init", "add", "seal", "verify", "ls", "log"]):
        line = cli.fail(3, *args, mentions=bucket)
        if args[0] in ("init", "verify"):
            assert "no such bucket" in line, line
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        client(s3).head_bucket(Bucket=bucket)  # ledger never creates buckets


def test_missing_bucket_is_named_as_such_by_every_command(s3: S3Server, tmp_path: Path) -> None:
    cli = S3Cli(s3, tmp_path)
    cli.url = f"s3://ledger-missing-{uuid.uuid4().hex[:12]}/p"
    write(tmp_path / "a.csv", "a")
    cli.fail(3, "add", "r1", tmp_path / "a.csv", mentions="no such bucket")
    cli.fail(3, "log", mentions="no such bucket")


def no_credentials_env(tmp: Path) -> dict[str, str]:
    """No credentials from anywhere boto3 looks: no AWS_* keys, empty config and credentials files, a fresh HOME,
    no instance metadata."""
    empty = write(tmp / "aws-empty", b"")
    (tmp / "home").mkdir(exist_ok=True)
    env = {k: v for k, v in base_env().items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                        "AWS_SECURITY_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")}
    return env | {"AWS_SHARED_CREDENTIALS_FILE": str(empty), "AWS_CONFIG_FILE": str(empty),
                  "HOME": str(tmp / "home"), "AWS_EC2_METADATA_DISABLED": "true"}


def test_no_credentials(store: S3Cli) -> None:
    """moto accepts any credentials, so 'wrong credentials' is simulated by none at all, and by broken ones."""
    data = store.tmp / "data"
    write(data / "a.csv", "a")
    store.ok("add", "r1", data)
    env = no_credentials_env(store.tmp)
    for args in commands(store, data, ["init", "add", "seal", "verify", "log"]):
        store.unchanged(5, *args, env=env, mentions="no usable AWS credentials")
    partial = env | {"AWS_ACCESS_KEY_ID": "only-the-key-id"}
    store.unchanged(5, "add", "r1", data, env=partial, mentions="credentials")
    write(store.tmp / "aws-config", "[default]\nregion = us-east-1\n")
    profile = env | {"AWS_PROFILE": "no-such-profile", "AWS_CONFIG_FILE": str(store.tmp / "aws-config")}
    store.unchanged(5, "seal", "r1", "--key", store.key, env=profile, mentions="no-such-profile")
    assert [i["name"] for i in store.json("ls", "r1")["items"]] == ["a.csv"]


def test_wrong_credentials(s3: S3Server, store: S3Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials the server does not know: an S3 API server that checks them (moto's with IAM authentication
    enforced from the first request, in its own process; or the external endpoint) answers 403."""
    data = store.tmp / "data"
    write(data / "a.csv", "a")
    env = base_env() | {"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0", "AWS_SECRET_ACCESS_KEY": "wrong-secret"}
    proc = None
    if not s3.external:
        monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        proc, endpoint = start_server(lock=False)
        env["AWS_ENDPOINT_URL"] = endpoint
    try:
        for args in commands(store, data, ["init", "add", "seal", "verify", "ls"]):
            line = store.unchanged(5, *args, env=env, mentions="access denied")
            assert "credentials" in line, line
    finally:
        if proc is not None:
            stop_server(proc)


def test_unreachable_endpoint(store: S3Cli) -> None:
    data = store.tmp / "data"
    write(data / "a.csv", "a")
    store.ok("add", "r1", data)
    with closed_port() as port:
        endpoint = f"http://127.0.0.1:{port}"
        env = base_env() | {"AWS_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "2"}
        for args in commands(store, data, ["init", "add", "seal", "verify", "log"]):
            line = store.unchanged(5, *args, env=env, mentions=endpoint)
            assert "cannot reach" in line, line


FOREIGN: dict[str, tuple[str, dict[str, tuple[int, ...]]]] = {
    # key under the prefix -> the commands that must fail and their exit codes
    "chain-readme": ("chain/readme", {"seal": (1,), "verify": (1,), "log": (1,)}),
    # not even a ledger key: the S3 listing refuses it (5); spec/store.md says the chain is then unreadable (1)
    "chain-not-a-key": ("chain/read me.txt", {"seal": (1, 5), "verify": (1, 5), "log": (1, 5)}),
    "staging": ("runs/r2/staged/notes.txt", {"add": (6,), "record": (6,), "seal": (6,), "ls": (6,)}),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_foreign_key_in_prefix(s3: S3Server, sealed: Sealed, case: str) -> None:
    """An object the ledger did not write, where the ledger lists: one error line naming it, nothing written."""
    key, failing = FOREIGN[case]
    cli = sealed.cli
    url = copy_store(s3, cli.url, f"foreign-{case}")
    if case != "staging":
        Ledger.open(url).add("r2", [str(write(cli.tmp / "r2.csv", "r2"))])  # set-up in-process: a run to seal
    put(s3, url, key, b"not ours\n")
    args_for: dict[str, list[Any]] = {"add": ["add", "r2", write(cli.tmp / "b.csv", "b")],
                "record": ["record", "r2", "--kind", "summary", '{"a": 1}'],
                "seal": ["seal", "r2", "--key", cli.key], "verify": ["verify", "r1", "--trust", cli.pub],
                "ls": ["ls", "r2"], "log": ["log"]}
    for cmd, codes in failing.items():
        before = listing(s3, url)
        r = cli(*args_for[cmd], url=url)
        assert r.code in codes, str(r)
        assert_error(r, r.code, stdout_empty=cmd != "verify", mentions=key.split("/")[-1])
        if cmd == "verify":
            assert "[FAIL]" in r.out if r.code == 1 else r.out == "", str(r)
        assert listing(s3, url) == before, f"a refused `ledger {cmd}` wrote something"


MALFORMED = ["s3://", "s3:///prefix", "s3://{bucket}/../x", "s3://{bucket}/a/../x", "s3://{bucket}/a//b",
             "s3://{bucket}/.hidden", "s3://{bucket}/a b", "s3://{bucket}/p?versionId=1", "s3://" + "b" * 64 + "/p"]


def test_malformed_s3_urls(s3: S3Server, tmp_path: Path) -> None:
    def foreign_keys() -> set[str]:  # every store the tests make is under a t-... prefix
        pages = client(s3).get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", ()) if not o["Key"].startswith("t-")}

    before = foreign_keys()
    f = write(tmp_path / "a.csv", "a")
    for i, url in enumerate(u.replace("{bucket}", s3.bucket) for u in MALFORMED):
        assert_error(run_cli(["init"], cwd=tmp_path, store=url), 2, mentions=url)
        if i < 3:
            assert_error(run_cli(["add", "r1", f], cwd=tmp_path, store=url), 2, mentions=url)
            assert_error(run_cli(["log"], cwd=tmp_path, store=url), 2, mentions=url)
    assert foreign_keys() <= before, "a malformed URL wrote to the bucket"
    assert list(tmp_path.iterdir()) == [f], "a malformed URL created a local store"


# --- 5. local commands never import boto3 ---------------------------------------------------------------------------

PROBE = r"""
import json, sys
import ledger.cli
codes = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["ledger"] + argv
    try:
        ledger.cli.run()
    except SystemExit as exc:
        codes.append(exc.code)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "s3transfer", "ledger"))
print(json.dumps({"codes": codes, "modules": loaded}), file=sys.stderr)
"""


def test_local_commands_do_not_import_boto3(tmp_path: Path) -> None:
    st = tmp_path / "store"
    key = tmp_path / "k.key"
    f = write(tmp_path / "a.csv", "a")
    for args in (["init"], ["keys", "generate", "--out", key], ["add", "r1", f]):
        r = run_cli(args, cwd=tmp_path, store=st)
        assert r.code == 0, str(r)
    argvs = [["--store", str(st), "seal", "r1", "--key", str(key)],
             ["--store", str(st), "verify", "r1", "--trust", f"{key}.pub"],
             ["--store", str(st), "verify", "r1", "--trust", f"{key}.pub", "--json"],
             ["--store", str(st), "ls", "r1"], ["--store", str(st), "cat", "r1", "a.csv"],
             ["--store", str(st), "log"], ["--store", str(st), "add", "r2", str(f)]]
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs)], cwd=tmp_path, capture_output=True,
                       text=True, env=base_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stderr.splitlines()[-1])
    assert doc["codes"] == [0] * len(argvs), p
    assert "ledger.storage.local" in doc["modules"] and "ledger.verify" in doc["modules"], doc
    assert [m for m in doc["modules"] if not m.startswith("ledger")] == [], "a local command imported boto3"
    assert "ledger.storage.s3" not in doc["modules"]
