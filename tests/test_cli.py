"""End-to-end tests of the ``ledger`` command line against its contract (../shared/docs/cli.md).

Every command runs as a real subprocess (``python -m ledger.cli``) on a store under ``tmp_path``. Every error case
checks the exit code of the contract, that stderr is exactly one ``error: ...`` line, and that no traceback escapes.
Cases that must not write check the store's complete file listing (names and bytes) before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LEDGER = [sys.executable, "-m", "ledger.cli"]
HEX64 = re.compile(r"[0-9a-f]{64}")
TIMEOUT = 120


# --- helpers -------------------------------------------------------------------------------------------------------

@dataclass
class Result:
    args: list[str]
    code: int
    raw: bytes
    err: str

    @property
    def out(self) -> str:
        return self.raw.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"ledger {' '.join(self.args)} -> exit {self.code}\nstdout: {self.raw[:2000]!r}\nstderr: {self.err!r}"


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LEDGER_STORE"}


def run_cli(args: list[Any], *, cwd: Path, store: Path | str | None = None, input: bytes | None = None,
            env: dict[str, str] | None = None) -> Result:
    argv = [str(a) for a in args]
    cmd = LEDGER + (["--store", str(store)] if store is not None else []) + argv
    p = subprocess.run(cmd, cwd=cwd, input=input if input is not None else b"", capture_output=True,
                       env=env if env is not None else base_env(), timeout=TIMEOUT)
    return Result(argv, p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


def assert_error(r: Result, code: int, *, stdout_empty: bool = True, mentions: str | None = None) -> str:
    """The contract for every failure: the exit code, one ``error:`` line on stderr, never a traceback."""
    assert r.code == code, str(r)
    assert "Traceback" not in r.err and b"Traceback" not in r.raw, str(r)
    lines = r.err.splitlines()
    assert len(lines) == 1, f"stderr must be exactly one line\n{r}"
    assert lines[0].startswith("error: "), str(r)
    assert r.err.endswith("\n") and r.err.count("\n") == 1, str(r)
    if stdout_empty:
        assert r.raw == b"", str(r)
    if mentions is not None:
        assert mentions in lines[0], str(r)
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (tmp/ included) with a digest of its bytes: 'nothing written' means equal."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, _, files in os.walk(root):
        for fn in files:
            p = Path(dirpath, fn)
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def durable(snap: dict[str, str]) -> dict[str, str]:
    """The snapshot without tmp/ (lock files of a lease are not store state)."""
    return {k: v for k, v in snap.items() if not k.startswith("tmp/")}


def b3sum(path: Path) -> str:
    """What the real b3sum binary prints for the file (no skip when it is missing: CI installs it)."""
    p = subprocess.run(["b3sum", "--no-names", str(path)], capture_output=True, check=True, timeout=TIMEOUT)
    value = p.stdout.decode().strip()
    assert HEX64.fullmatch(value), value
    return value


class Cli:
    """A store under tmp_path, a sealing key and an untrusted one, and the CLI pointed at them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = tmp / "store"
        self.key = tmp / "keys" / "sealer.key"
        self.pub = tmp / "keys" / "sealer.key.pub"

    def __call__(self, *args: Any, input: bytes | None = None, store: Path | str | None = None) -> Result:
        return run_cli(list(args), cwd=self.tmp, store=self.store if store is None else store, input=input)

    def ok(self, *args: Any, input: bytes | None = None) -> Result:
        r = self(*args, input=input)
        assert r.code == 0, str(r)
        assert "Traceback" not in r.err, str(r)
        return r

    def json(self, *args: Any, input: bytes | None = None) -> Any:
        r = self.ok(*args, "--json", input=input)
        return r.json()

    def fail(self, code: int, *args: Any, input: bytes | None = None, stdout_empty: bool = True,
             mentions: str | None = None) -> str:
        return assert_error(self(*args, input=input), code, stdout_empty=stdout_empty, mentions=mentions)

    def unchanged(self, code: int, *args: Any, mentions: str | None = None, input: bytes | None = None) -> str:
        """Fails with ``code`` and leaves every file of the store exactly as it was."""
        before = snapshot(self.store)
        line = self.fail(code, *args, mentions=mentions, input=input)
        assert snapshot(self.store) == before, f"the store changed after a refused `ledger {args}`"
        return line


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    write(d / "a.csv", "id,v\n1,2\n")
    write(d / "sub" / "b.csv", "id,v\n3,4\n")
    write(d / "sub" / "deeper" / "c.bin", bytes(range(256)) * 3)
    write(d / "empty.txt", b"")
    return d


def ls_items(cli: Cli, run: str) -> dict[str, dict[str, Any]]:
    j = cli.json("ls", run)
    assert j["run"] == run
    names = [i["name"] for i in j["items"]]
    assert len(names) == len(set(names)), names
    return {i["name"]: i for i in j["items"]}


# --- init, store location ------------------------------------------------------------------------------------------

def test_init_is_idempotent(tmp_path: Path) -> None:
    c = Cli(tmp_path)
    r1 = c.json("init")
    assert r1["created"] is True
    assert r1["store"] == "file://" + str(c.store)
    cfg = (c.store / "config").read_bytes()
    r2 = c.json("init")
    assert r2["created"] is False
    assert (c.store / "config").read_bytes() == cfg, "a second init must not rewrite the config"
    r3 = c.ok("init")
    assert "already initialised" in r3.out


def test_init_refuses_a_directory_holding_other_files(tmp_path: Path) -> None:
    c = Cli(tmp_path)
    c.store.mkdir()
    (c.store / "notes.txt").write_text("not a ledger\n")
    r = c("init")
    assert_error(r, 2, mentions="notes.txt")
    assert sorted(p.name for p in c.store.iterdir()) == ["notes.txt"], "a refused init wrote something"


def test_store_location_default_env_and_file_url(tmp_path: Path, data_dir: Path) -> None:
    # default: ./.ledger in the working directory
    r = run_cli(["init"], cwd=tmp_path)
    assert r.code == 0, str(r)
    assert (tmp_path / ".ledger" / "config").is_file()
    # LEDGER_STORE
    env = base_env() | {"LEDGER_STORE": str(tmp_path / "envstore")}
    r = run_cli(["init"], cwd=tmp_path, env=env)
    assert r.code == 0, str(r)
    assert (tmp_path / "envstore" / "config").is_file()
    r = run_cli(["add", "r1", data_dir], cwd=tmp_path, env=env)
    assert r.code == 0, str(r)
    assert (tmp_path / "envstore" / "runs" / "r1").is_dir()
    assert not (tmp_path / ".ledger" / "runs").exists()
    # --store overrides LEDGER_STORE; file:///abs/path is the same local store
    url = "file://" + str(tmp_path / "urlstore")
    r = run_cli(["init"], cwd=tmp_path, env=env, store=url)
    assert r.code == 0, str(r)
    assert (tmp_path / "urlstore" / "config").is_file()
    r = run_cli(["ls", "r1", "--json"], cwd=tmp_path, env=env, store=url)
    assert_error(r, 3)


# --- keys ----------------------------------------------------------------------------------------------------------

def test_keys_generate(tmp_path: Path) -> None:
    c = Cli(tmp_path)
    key = tmp_path / "k"
    r = c.ok("keys", "generate", "--out", key)
    kid = r.out.strip()
    assert HEX64.fullmatch(kid), r.out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = Path(str(key) + ".pub")
    assert pub.is_file()
    assert b"PUBLIC KEY" in pub.read_bytes() and b"PRIVATE" not in pub.read_bytes()
    assert b"PRIVATE KEY" in key.read_bytes()

    priv_bytes, pub_bytes = key.read_bytes(), pub.read_bytes()
    c.fail(2, "keys", "generate", "--out", key, mentions="already exists")
    assert key.read_bytes() == priv_bytes and pub.read_bytes() == pub_bytes, "refused generate overwrote a key"
    # only the .pub existing also refuses
    lone = tmp_path / "lone"
    write(Path(str(lone) + ".pub"), "x")
    c.fail(2, "keys", "generate", "--out", lone)
    assert not lone.exists()

    j = c.json("keys", "generate", "--out", key, "--force")
    assert j["key_id"] != kid and HEX64.fullmatch(j["key_id"])
    assert key.read_bytes() != priv_bytes and pub.read_bytes() != pub_bytes
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_key_id_is_the_sealer_key_in_the_commit(cli: Cli, data_dir: Path) -> None:
    kid = cli.json("keys", "generate", "--out", cli.tmp / "other.key")["key_id"]
    cli.ok("add", "r1", data_dir)
    sealed = cli.json("seal", "r1", "--key", cli.tmp / "other.key")
    assert sealed["key_id"] == kid
    assert cli.json("show", "r1")["key_id"] == kid


# --- add -----------------------------------------------------------------------------------------------------------

def test_add_directory_recursively_names_relative_to_root(cli: Cli, data_dir: Path) -> None:
    j = cli.json("add", "r1", data_dir)
    assert sorted(e["name"] for e in j["added"]) == ["a.csv", "empty.txt", "sub/b.csv", "sub/deeper/c.bin"]
    items = ls_items(cli, "r1")
    assert sorted(items) == ["a.csv", "empty.txt", "sub/b.csv", "sub/deeper/c.bin"]
    assert items["sub/deeper/c.bin"]["size"] == 768
    assert items["empty.txt"]["size"] == 0
    assert all(i["kind"] == "file" for i in items.values())


def test_add_trailing_slash_and_relative_path(cli: Cli, data_dir: Path) -> None:
    r = run_cli(["add", "r1", "data/"], cwd=cli.tmp, store=cli.store)
    assert r.code == 0, str(r)
    assert sorted(ls_items(cli, "r1")) == ["a.csv", "empty.txt", "sub/b.csv", "sub/deeper/c.bin"]


def test_add_with_as_prefix_rename_and_kind(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    cli.ok("add", "r1", data_dir, "--as", "out/x")
    single = write(tmp_path / "job.log", "started\nfinished\n")
    cli.ok("add", "r1", single, "--as", "logs/2024/job.log", "--kind", "log")
    cli.ok("add", "r1", data_dir / "a.csv", write(tmp_path / "other" / "z.txt", "z"))
    items = ls_items(cli, "r1")
    assert sorted(items) == ["a.csv", "logs/2024/job.log", "out/x/a.csv", "out/x/empty.txt", "out/x/sub/b.csv",
                             "out/x/sub/deeper/c.bin", "z.txt"]
    assert items["logs/2024/job.log"]["kind"] == "log"
    # --as names exactly one PATH
    cli.unchanged(2, "add", "r1", data_dir / "a.csv", single, "--as", "two")


def test_add_same_name_same_content_is_noop(cli: Cli, data_dir: Path) -> None:
    cli.ok("add", "r1", data_dir)
    before = durable(snapshot(cli.store))
    j = cli.json("add", "r1", data_dir)
    assert j["added"] == []
    assert sorted(e["name"] for e in j["unchanged"]) == ["a.csv", "empty.txt", "sub/b.csv", "sub/deeper/c.bin"]
    r = cli.ok("add", "r1", data_dir / "a.csv")
    assert "already present" in r.out
    assert durable(snapshot(cli.store)) == before, "a no-op add wrote something"
    assert len(ls_items(cli, "r1")) == 4


@pytest.mark.parametrize("size", [10, 1024 * 1024 + 17], ids=["packed", "loose"])
def test_add_same_name_different_content_refused(cli: Cli, tmp_path: Path, size: int) -> None:
    f = write(tmp_path / "in" / "x.bin", os.urandom(size))
    cli.ok("add", "r1", f)
    first = ls_items(cli, "r1")["x.bin"]
    write(f, os.urandom(size))
    line = cli.unchanged(6, "add", "r1", f, mentions="x.bin")
    assert "different content" in line
    # also inside a directory add, together with a new file: the whole call is refused
    write(tmp_path / "in" / "new.txt", "new")
    cli.unchanged(6, "add", "r1", tmp_path / "in")
    assert ls_items(cli, "r1") == {"x.bin": first}


def test_add_to_sealed_run_refused(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    cli.ok("add", "r1", data_dir)
    commit = cli.json("seal", "r1", "--key", cli.key)["commit"]
    extra = write(tmp_path / "extra.txt", "late")
    cli.unchanged(4, "add", "r1", extra, mentions="r1")
    cli.unchanged(4, "record", "r1", "--kind", "summary", '{"late": 1}', mentions="r1")
    assert "extra.txt" not in ls_items(cli, "r1")
    assert cli.json("show", "r1")["commit"] == commit


def test_add_empty_directory_opens_run_with_no_items(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    cli.fail(3, "ls", "r1")
    cli.ok("add", "r1", tmp_path / "nothing")
    j = cli.json("ls", "r1")
    assert j == {"run": "r1", "sealed": False, "items": []}
    before = durable(snapshot(cli.store))
    line = cli.fail(1, "seal", "r1", "--key", cli.key, mentions="r1", stdout_empty=False)
    assert "non-empty" in line, line
    assert durable(snapshot(cli.store)) == before, "a refused seal wrote something"
    assert cli.json("log") == []
    cli.fail(3, "verify", "r1", "--trust", cli.pub)


# --- record --------------------------------------------------------------------------------------------------------

def test_record_json_argument_and_stdin(cli: Cli) -> None:
    j = cli.json("record", "r1", "--kind", "json", '{"b": 2, "a": [1, "x"]}')
    assert j["added"] is True
    name = j["item"]["name"]
    assert name.startswith("records/json/") and name.endswith(".json")
    assert cli.ok("cat", "r1", name).raw == b'{"a":[1,"x"],"b":2}'

    j2 = cli.json("record", "r1", "--kind", "receipt", "--name", "receipts/r.json", "-",
                  input=b'{"count": 10, "source": "\xc3\xa9"}')
    assert j2["item"]["name"] == "receipts/r.json"
    assert j2["item"]["kind"] == "receipt"
    assert cli.ok("cat", "r1", "receipts/r.json").raw == '{"count":10,"source":"é"}'.encode()
    # stdin is the default when no JSON argument is given
    j3 = cli.json("record", "r1", "--kind", "json", "--name", "list.json", input=b"[1, 2, 3]")
    assert j3["item"]["kind"] == "json"
    # the same record again is a no-op
    again = cli.json("record", "r1", "--kind", "json", '{"a": [1, "x"], "b": 2}')
    assert again["added"] is False and again["item"]["name"] == name
    items = ls_items(cli, "r1")
    assert set(items) == {"list.json", name, "receipts/r.json"}
    assert items[name]["kind"] == "json"


def test_record_refusals(cli: Cli) -> None:
    cli.ok("record", "r1", "--kind", "summary", "--name", "s.json", '{"n": 1}')
    cli.unchanged(6, "record", "r1", "--kind", "summary", "not json")
    cli.unchanged(6, "record", "r1", "--kind", "summary", "-", input=b"{broken")
    cli.unchanged(6, "record", "r1", "--kind", "summary", "[1, 2]")  # typed kinds take JSON objects
    cli.unchanged(6, "record", "r1", "--kind", "summary", "--name", "s.json", '{"n": 2}', mentions="s.json")
    cli.unchanged(6, "record", "r1", "--kind", "file", "{}")  # not a record kind
    cli.unchanged(6, "record", "r1", "--kind", "bogus", "{}", mentions="bogus")
    cli.unchanged(6, "record", "r1", "--kind", "summary", '{"x": NaN}')
    cli.unchanged(2, "record", "r1", "{}")  # --kind is required
    assert list(ls_items(cli, "r1")) == ["s.json"]


# --- seal, verify --------------------------------------------------------------------------------------------------

def test_seal_and_verify_checklist(cli: Cli, data_dir: Path) -> None:
    cli.ok("add", "r1", data_dir)
    cli.ok("record", "r1", "--kind", "summary", '{"rows": 2}')
    r = cli.ok("seal", "r1", "--key", cli.key)
    m = re.search(r"commit\s+([0-9a-f]{64})\s+\(#0\)", r.out)
    assert m, r.out
    commit = m.group(1)
    assert "sealed 5 item(s)" in r.out

    v = cli.ok("verify", "r1", "--trust", cli.pub)
    lines = v.out.splitlines()
    names = [re.match(r"\[(ok  |FAIL)\] (\S+)", ln) for ln in lines[:-1]]
    assert all(names), v.out
    assert [n.group(1) for n in names if n] == ["ok  "] * len(names)
    assert {n.group(2) for n in names if n} >= {"signature", "content", "tree", "chain", "marker"}
    assert lines[-1] == "run r1: verified"
    assert v.err == ""

    ls = cli.json("ls", "r1")
    assert ls["sealed"] is True and len(ls["items"]) == 5
    assert cli.json("show", "r1")["commit"] == commit


def test_verify_json_shape(cli: Cli, data_dir: Path) -> None:
    cli.ok("add", "r1", data_dir)
    s = cli.json("seal", "r1", "--key", cli.key)
    r = cli.ok("verify", "r1", "--trust", cli.pub, "--json")
    assert r.err == ""
    assert len(r.out.strip().splitlines()) == 1, "--json prints exactly one JSON document"
    j = r.json()
    # cli.md: {"run", "ok", "commit", "root", "checks": [{"name", "ok", "detail"}, ...]}
    assert {"run", "ok", "commit", "root", "checks"} <= set(j), j
    assert j["run"] == "r1" and j["ok"] is True
    assert j["commit"] == s["commit"] and j["root"] == s["root"]
    assert HEX64.fullmatch(j["commit"]) and HEX64.fullmatch(j["root"])
    assert isinstance(j["checks"], list) and j["checks"]
    for c in j["checks"]:
        assert set(c) == {"name", "ok", "detail"}, c
        assert isinstance(c["name"], str) and c["ok"] is True and isinstance(c["detail"], str) and c["detail"]
    assert [c["name"] for c in j["checks"]].count("signature") == 1


def test_seal_twice_names_existing_commit(cli: Cli, data_dir: Path) -> None:
    cli.ok("add", "r1", data_dir)
    commit = cli.json("seal", "r1", "--key", cli.key)["commit"]
    before = durable(snapshot(cli.store))
    line = cli.fail(4, "seal", "r1", "--key", cli.key)
    assert commit[:16] in line, line
    line = cli.fail(4, "seal", "r1", "--key", cli.key, "--json")
    assert commit[:16] in line, line
    assert durable(snapshot(cli.store)) == before
    assert len(cli.json("log")) == 1


def test_verify_untrusted_or_wrong_key(cli: Cli, data_dir: Path) -> None:
    cli.ok("add", "r1", data_dir)
    cli.ok("seal", "r1", "--key", cli.key)
    other = cli.tmp / "other.key"
    cli.ok("keys", "generate", "--out", other)
    r = cli("verify", "r1", "--trust", f"{other}.pub")
    line = assert_error(r, 1, stdout_empty=False, mentions="not among the trusted keys")
    assert "[FAIL] signature" in r.out and "NOT verified" in r.out
    assert line.startswith("error: run r1")
    j = cli("verify", "r1", "--trust", f"{other}.pub", "--json")
    assert j.code == 1 and "Traceback" not in j.err
    doc = j.json()
    assert doc["ok"] is False
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["signature"]
    # one trusted key among several is enough
    cli.ok("verify", "r1", "--trust", f"{other}.pub", "--trust", cli.pub)


def test_verify_unsealed_and_unknown_run(cli: Cli, data_dir: Path) -> None:
    cli.ok("add", "r1", data_dir)
    cli.fail(3, "verify", "r1", "--trust", cli.pub, mentions="not sealed")
    cli.fail(3, "verify", "r1", "--trust", cli.pub, "--json")
    cli.fail(3, "verify", "nope", "--trust", cli.pub, mentions="nope")


def test_seal_unknown_run(cli: Cli) -> None:
    before = durable(snapshot(cli.store))
    cli.fail(3, "seal", "ghost", "--key", cli.key, mentions="ghost")
    assert durable(snapshot(cli.store)) == before


# --- ls, cat -------------------------------------------------------------------------------------------------------

def test_ls_blake3_matches_b3sum_and_cat_is_byte_identical(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    big = write(tmp_path / "big" / "big.bin", os.urandom(1024 * 1024 + 12345))
    cli.ok("add", "r1", data_dir)
    cli.ok("add", "r1", big, "--as", "blobs/big.bin")
    files = {"a.csv": data_dir / "a.csv", "sub/b.csv": data_dir / "sub/b.csv",
             "sub/deeper/c.bin": data_dir / "sub/deeper/c.bin", "empty.txt": data_dir / "empty.txt",
             "blobs/big.bin": big}

    def check(sealed: bool) -> None:
        j = cli.json("ls", "r1")
        assert j["sealed"] is sealed
        items = {i["name"]: i for i in j["items"]}
        assert sorted(items) == sorted(files)
        assert [i["name"] for i in j["items"]] == sorted(files, key=lambda n: n.encode())
        for name, path in files.items():
            assert items[name]["blake3"] == b3sum(path), name
            assert items[name]["size"] == path.stat().st_size
            assert cli.ok("cat", "r1", name).raw == path.read_bytes(), name
        human = cli.ok("ls", "r1")
        for name, path in files.items():
            assert re.search(rf"^{b3sum(path)}\s+{path.stat().st_size}\s+file\s+{re.escape(name)}$", human.out,
                             re.M), human.out
        assert f"{len(files)} item(s)" in human.err

    check(sealed=False)
    cli.ok("seal", "r1", "--key", cli.key)
    check(sealed=True)


def test_cat_and_ls_errors(cli: Cli, data_dir: Path) -> None:
    cli.ok("add", "r1", data_dir)
    cli.fail(3, "cat", "r1", "missing.txt", mentions="missing.txt")
    cli.fail(3, "cat", "nope", "a.csv")
    cli.fail(6, "cat", "r1", "../a.csv")
    cli.fail(3, "ls", "nope")
    cli.ok("seal", "r1", "--key", cli.key)
    cli.fail(3, "cat", "r1", "missing.txt", mentions="missing.txt")
    cli.fail(3, "cat", "r1", "sub", mentions="sub")


# --- show, log -----------------------------------------------------------------------------------------------------

def test_show_by_run_digest_prefix_and_seq(cli: Cli, data_dir: Path) -> None:
    cli.ok("add", "r1", data_dir)
    cli.ok("add", "r2", data_dir / "a.csv")
    s1 = cli.json("seal", "r1", "--key", cli.key)
    s2 = cli.json("seal", "r2", "--key", cli.key)
    assert (s1["seq"], s2["seq"]) == (0, 1)

    j = cli.json("show", "r2")
    assert j["commit"] == s2["commit"] and j["run"] == "r2" and j["seq"] == 1
    assert j["parent"] == s1["commit"] and j["root"] == s2["root"] and j["items"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", j["time"]), j["time"]
    assert cli.json("show", "r1")["parent"] is None
    for ref in (s1["commit"], s1["commit"][:8], s1["commit"][:20], "b3:" + s1["commit"][:12], "#0"):
        assert cli.json("show", ref)["commit"] == s1["commit"], ref
    assert cli.json("show", "#1")["commit"] == s2["commit"]

    human = cli.ok("show", "r1").out
    assert s1["commit"] in human and "run     r1" in human and "(genesis)" in human
    assert s1["root"] in human
    human2 = cli.ok("show", "#1").out
    assert s1["commit"] in human2  # the parent

    cli.fail(3, "show", "#7")
    cli.fail(3, "show", "0123456789abcdef")
    cli.fail(3, "show", "unknown-run")


def test_log_newest_first(cli: Cli, data_dir: Path) -> None:
    assert cli.json("log") == []
    r = cli.ok("log")
    assert r.out == "" and "empty" in r.err
    commits = []
    for i in range(3):
        cli.ok("add", f"run-{i}", data_dir / "a.csv")
        commits.append(cli.json("seal", f"run-{i}", "--key", cli.key)["commit"])
    log = cli.json("log")
    assert [e["seq"] for e in log] == [2, 1, 0]
    assert [e["run"] for e in log] == ["run-2", "run-1", "run-0"]
    assert [e["commit"] for e in log] == commits[::-1]
    assert [e["parent"] for e in log] == [commits[1], commits[0], None]
    lines = cli.ok("log").out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("#2") and lines[0].endswith("run-2")
    assert lines[2].startswith("#0") and lines[2].endswith("run-0")
    assert commits[2][:16] in lines[0]


# --- demo ----------------------------------------------------------------------------------------------------------

def test_demo(tmp_path: Path) -> None:
    env = base_env() | {"TMPDIR": str(tmp_path)}
    r = run_cli(["demo"], cwd=tmp_path, env=env)
    assert r.code == 0, str(r)
    assert "Traceback" not in r.err
    out = r.out
    assert "[FAIL]" in out, out
    assert "caught" in out, out
    assert out.index("[FAIL] content") > out.index("tamper:"), "the failure is reported after the tampering"
    assert "gap [150, 157)" in out and "secret detected (AWS Access Key)" in out, out
    assert "AKIA" not in out, "the demo echoed the secret"
    assert list(tmp_path.iterdir()) == [], "the demo leaves its temporary store behind"


# --- bad input -----------------------------------------------------------------------------------------------------

BAD_NAMES = {
    "traversal": "../x",
    "traversal-inner": "a/../../x",
    "absolute": "/abs",
    "empty-segment": "a//b",
    "trailing-slash": "a/",
    "dot-segment": "./x",
    "dot-inner": "a/./b",
    "dotdot-only": "..",
    "control-char": "a\x01b",
    "newline": "a\nb",
    "escape": "a\x1b[31mred",
    "del": "a\x7fb",
    "c1-control": "a\x85b",
    "too-long": "x" * 1025,
    "too-long-utf8": "é" * 513,
}


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_bad_item_names_refused_nothing_stored(cli: Cli, tmp_path: Path, name: str) -> None:
    f = write(tmp_path / "in" / "f.txt", "content")
    cli.ok("add", "r1", tmp_path / "in")  # the run exists, so 'nothing stored' is a real comparison
    cli.unchanged(6, "add", "r1", f, "--as", name, mentions="invalid item name")
    cli.unchanged(6, "record", "r1", "--kind", "summary", "--name", name, '{"a": 1}', mentions="invalid item name")
    assert list(ls_items(cli, "r1")) == ["f.txt"]


def test_name_exactly_1024_bytes_is_accepted(cli: Cli, tmp_path: Path) -> None:
    f = write(tmp_path / "f.txt", "content")
    name = "d/" + "x" * 1022
    assert len(name.encode()) == 1024
    cli.ok("add", "r1", f, "--as", name)
    cli.ok("record", "r1", "--kind", "summary", "--name", "é" * 512, '{"a": 1}')
    assert sorted(ls_items(cli, "r1")) == sorted([name, "é" * 512])


@pytest.mark.parametrize("bad", [b"ctl\x01name", b"line\nbreak", b"not-utf8-\xff"], ids=["control", "newline", "utf8"])
def test_bad_name_inside_directory_refuses_whole_add(cli: Cli, tmp_path: Path, bad: bytes) -> None:
    d = tmp_path / "dir"
    write(d / "aaa-good.txt", "good")
    big = os.urandom(1024 * 1024 + 1)
    write(d / "big.bin", big)
    with open(os.path.join(os.fsencode(d), bad), "wb") as f:
        f.write(b"bad")
    cli.unchanged(6, "add", "r1", d, mentions="invalid item name")
    cli.fail(3, "ls", "r1")


def test_too_long_name_from_directory_prefix(cli: Cli, tmp_path: Path) -> None:
    f = write(tmp_path / "d" / "file.txt", "x")
    del f
    cli.unchanged(6, "add", "r1", tmp_path / "d", "--as", "p" * 1020, mentions="1024")


BAD_RUNS = {
    "dot-start": ".hidden",
    "dash-start": "-dash",
    "slash": "a/b",
    "traversal": "../etc",
    "space": "a b",
    "empty": "",
    "too-long": "r" * 129,
    "non-ascii": "rün",
    "colon": "a:b",
    "newline": "a\nb",
}


@pytest.mark.parametrize("run", list(BAD_RUNS.values()), ids=list(BAD_RUNS))
def test_invalid_run_ids(cli: Cli, data_dir: Path, run: str) -> None:
    before = snapshot(cli.store)
    for args in (["add", "--", run, data_dir],
                 ["record", "--kind", "summary", "--", run, '{"a": 1}'],
                 ["seal", "--key", cli.key, "--", run],
                 ["verify", "--trust", cli.pub, "--", run],
                 ["ls", "--", run],
                 ["cat", "--", run, "a.csv"]):
        cli.fail(2, *args)
    assert snapshot(cli.store) == before


def test_run_id_limits_accepted(cli: Cli, data_dir: Path) -> None:
    for run in ("r" * 128, "A.b_c-9", "_x", "0"):
        cli.ok("add", run, data_dir / "a.csv")
        assert list(ls_items(cli, run)) == ["a.csv"]


@pytest.mark.parametrize("kind", ["bogus", "FILE", "", "file "])
def test_unknown_kind(cli: Cli, data_dir: Path, kind: str) -> None:
    cli.unchanged(6, "add", "r1", data_dir, "--kind", kind, mentions="kind")
    cli.unchanged(6, "record", "r1", "--kind", kind, '{"a": 1}', mentions="kind")


def test_missing_path(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    cli.unchanged(3, "add", "r1", tmp_path / "does-not-exist", mentions="does-not-exist")
    # one good and one missing path: nothing of the good one is stored either
    cli.unchanged(3, "add", "r1", data_dir, tmp_path / "does-not-exist")


def test_unreadable_file_permission(cli: Cli, tmp_path: Path) -> None:
    """chmod 000 only makes a file unreadable for a non-root user; as root, use a file the kernel refuses to read
    (/proc/self/mem fails with EIO at offset 0), so the test exercises a real read failure either way."""
    d = tmp_path / "perm"
    write(d / "a.txt", "readable")
    if os.geteuid() != 0:
        p = write(d / "secret.txt", "secret")
        p.chmod(0)
        target = p
    else:
        os.symlink("/proc/self/mem", d / "secret.txt")
        target = d / "secret.txt"
    try:
        cli.unchanged(5, "add", "r1", target, mentions="secret.txt")
        cli.unchanged(5, "add", "r1", d, mentions="secret.txt")
    finally:
        if os.geteuid() != 0:
            os.chmod(target, 0o600)


def test_dangling_symlink_in_directory(cli: Cli, tmp_path: Path) -> None:
    d = tmp_path / "dangle"
    write(d / "a.txt", "a")
    write(d / "big.bin", os.urandom(1024 * 1024 + 5))
    os.symlink(tmp_path / "nowhere", d / "zz-link")
    cli.unchanged(3, "add", "r1", d, mentions="zz-link")


def test_fifo_refused_without_blocking(cli: Cli, tmp_path: Path) -> None:
    d = tmp_path / "fifo"
    write(d / "a.txt", "a")
    os.mkfifo(d / "pipe")
    cli.unchanged(6, "add", "r1", d / "pipe", mentions="pipe")
    cli.unchanged(6, "add", "r1", d, mentions="pipe")  # must not block reading the FIFO


def test_key_file_errors(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cli.ok("add", "r1", data_dir)
    garbage = write(tmp_path / "garbage.key", "this is not a key\n")
    empty = write(tmp_path / "empty.key", b"")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_priv = write(tmp_path / "ec.key", ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ec_pub = write(tmp_path / "ec.key.pub", ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    truncated = write(tmp_path / "trunc.key", cli.key.read_bytes()[:40])
    truncated_pub = write(tmp_path / "trunc.pub", cli.pub.read_bytes()[:50])

    # sealing keys: the store stays exactly as it was
    cli.unchanged(3, "seal", "r1", "--key", tmp_path / "no-such.key", mentions="no-such.key")
    for bad in (garbage, empty, ec_priv, truncated, cli.pub, tmp_path):
        cli.unchanged(2, "seal", "r1", "--key", bad, mentions=str(bad))
    cli.ok("seal", "r1", "--key", cli.key)

    # trusted keys
    cli.fail(3, "verify", "r1", "--trust", tmp_path / "no-such.pub", mentions="no-such.pub")
    for bad in (garbage, empty, ec_pub, truncated_pub, tmp_path):
        cli.fail(2, "verify", "r1", "--trust", bad, mentions=str(bad))
    line = cli.fail(2, "verify", "r1", "--trust", cli.key, mentions=str(cli.key))
    assert "private key" in line
    # a bad key among good ones is still an error, not silently skipped
    cli.fail(2, "verify", "r1", "--trust", cli.pub, "--trust", garbage)
    cli.ok("verify", "r1", "--trust", cli.pub)


def test_nonexistent_store(tmp_path: Path, data_dir: Path) -> None:
    c = Cli(tmp_path)
    c.store = tmp_path / "no-store"
    key = tmp_path / "k"
    c.ok("keys", "generate", "--out", key)
    for args in (["add", "r1", data_dir], ["record", "r1", "--kind", "summary", '{"a": 1}'],
                 ["seal", "r1", "--key", key], ["verify", "r1", "--trust", f"{key}.pub"],
                 ["verify", "r1", "--trust", f"{key}.pub", "--json"], ["ls", "r1"], ["cat", "r1", "a.csv"],
                 ["show", "r1"], ["show", "#0"], ["log"], ["log", "--json"]):
        c.fail(3, *args, mentions="no-store")
    assert not c.store.exists(), "a command on a missing store created it"
    # an existing directory that is not a ledger store is not a store either
    c.store.mkdir()
    c.fail(3, "add", "r1", data_dir)
    c.fail(3, "log")
    assert list(c.store.iterdir()) == []


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "wrong-format"])
def test_corrupt_store_config(cli: Cli, data_dir: Path, damage: str) -> None:
    cli.ok("add", "r1", data_dir)
    cli.ok("seal", "r1", "--key", cli.key)
    cli.ok("add", "r2", data_dir)
    cfg = cli.store / "config"
    good = cfg.read_bytes()
    cfg.write_bytes({"garbage": b"junk\n", "empty": b"", "truncated": good[: len(good) // 2],
                     "wrong-format": good.replace(b"ledger/1", b"ledger/9")}[damage])
    r = cli("verify", "r1", "--trust", cli.pub)
    assert_error(r, 1, stdout_empty=False, mentions="config")
    j = cli("verify", "r1", "--trust", cli.pub, "--json")
    assert j.code == 1 and "Traceback" not in j.err
    doc = j.json()
    assert doc["ok"] is False and any("config" in c["detail"] for c in doc["checks"] if not c["ok"])
    before = snapshot(cli.store)
    cli.fail(1, "init", mentions="config")
    for args in (["add", "r3", data_dir], ["record", "r3", "--kind", "summary", '{"a": 1}'],
                 ["seal", "r2", "--key", cli.key], ["ls", "r1"], ["cat", "r1", "a.csv"], ["log"], ["show", "r1"]):
        cli.fail(1, *args, mentions="config")
    assert durable(snapshot(cli.store)) == durable(before)


def test_usage_errors_are_one_line(cli: Cli) -> None:
    cli.fail(2, "add")
    cli.fail(2, "add", "r1")
    cli.fail(2, "seal", "r1")  # --key is required
    cli.fail(2, "verify", "r1")  # --trust is required
    cli.fail(2, "nosuchcommand")
    cli.fail(2, "ls", "r1", "--bogus-option")
