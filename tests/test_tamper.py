"""Tampering with a sealed run's store: every file, every kind of damage, must make ``ledger verify`` exit 1 and
name what broke -- never exit 0, never a traceback.

A pristine sealed store is built once per module (packed small files, a record, a loose file of more than 1 MiB)
and copied for every case. Each file the store holds is identified by its role, and a separate test checks that
the roles cover every file, so no file escapes the byte-flip and truncation matrix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.objects import Marker
from ledger.packs import decode_index

LEDGER = [sys.executable, "-m", "ledger.cli"]
RUN = "nightly-42"
TIMEOUT = 120


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out[:3000]}\nstderr: {self.err}"


def run_cli(store: Path, *args: Any, cwd: Path) -> Result:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_STORE"}
    p = subprocess.run(LEDGER + ["--store", str(store)] + [str(a) for a in args], cwd=cwd, capture_output=True,
                       env=env, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return Result(p.returncode, p.stdout.decode(), p.stderr.decode("utf-8", "replace"))


def ok(store: Path, *args: Any, cwd: Path) -> Result:
    r = run_cli(store, *args, cwd=cwd)
    assert r.code == 0, str(r)
    return r


@dataclass
class Sealed:
    store: Path
    pub: Path
    key: Path
    commit: str
    root: str
    items: dict[str, dict[str, Any]]
    roles: dict[str, str]                 # role -> path relative to the store
    expect: dict[str, list[list[str]]]    # role -> the detail must contain, for some alternative, all of these


def store_files(store: Path) -> set[str]:
    """Every file the store holds, tmp/ excluded (it holds lock files and in-flight uploads, not objects)."""
    out = set()
    for dirpath, _, files in os.walk(store):
        for fn in files:
            rel = str(Path(dirpath, fn).relative_to(store))
            if not rel.startswith("tmp/"):
                out.add(rel)
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    base = tmp_path_factory.mktemp("pristine")
    store, key = base / "store", base / "sealer.key"
    data = base / "out"
    (data / "part").mkdir(parents=True)
    for i in range(3):
        (data / "part" / f"p{i}.csv").write_text("id,v\n" + "".join(f"{i}{j},{j * j}\n" for j in range(50)))
    big = base / "big.bin"
    big.write_bytes(os.urandom(1024 * 1024 + 4099))

    ok(store, "init", cwd=base)
    ok(store, "keys", "generate", "--out", key, cwd=base)
    ok(store, "add", RUN, data, cwd=base)
    ok(store, "add", RUN, big, "--as", "blobs/big.bin", cwd=base)
    ok(store, "record", RUN, "--kind", "summary", "--name", "summary.json", '{"rows": 150}', cwd=base)
    sealed = json.loads(ok(store, "seal", RUN, "--key", key, "--json", cwd=base).out)
    items = {i["name"]: i for i in json.loads(ok(store, "ls", RUN, "--json", cwd=base).out)["items"]}
    assert sorted(items) == ["blobs/big.bin", "part/p0.csv", "part/p1.csv", "part/p2.csv", "summary.json"]
    ok(store, "verify", RUN, "--trust", f"{key}.pub", cwd=base)

    root = sealed["root"]
    roles: dict[str, str] = {"config": "config", "commit-slot": "chain/" + "0" * 20, "marker": f"runs/{RUN}/sealed"}
    big_hex = items["blobs/big.bin"]["blake3"]
    roles["loose-object"] = f"objects/{big_hex[:2]}/{big_hex}"
    expect: dict[str, list[list[str]]] = {
        "config": [["config"]],
        "commit-slot": [["commit slot 0"], ["commit b3:" + sealed["commit"][:16]]],
        "marker": [["completion marker"]],
        "loose-object": [["blobs/big.bin"]],
    }
    by_digest = {bytes.fromhex(i["blake3"]): name for name, i in items.items()}
    for f in sorted(store_files(store)):
        if not (f.startswith("packs/") and f.endswith(".idx")):
            continue
        pid = f[len("packs/"):-len(".idx")]
        if pid.startswith(root[:28]):
            role = "node"
            expect["node-pack"] = [["tree node"], [pid]]
        else:
            names = sorted(by_digest[d] for d in decode_index(pid, (store / f).read_bytes()))
            role = "record" if names == ["summary.json"] else "files"
            assert role == "record" or names == ["part/p0.csv", "part/p1.csv", "part/p2.csv"], names
            expect[f"{role}-pack"] = [[pid, n] for n in names]
        roles[f"{role}-pack"] = f"packs/{pid}.pack"
        roles[f"{role}-index"] = f
        expect[f"{role}-index"] = [[f"pack index {pid}"]]
    return Sealed(store, Path(f"{key}.pub"), key, sealed["commit"], root, items, roles, expect)


ROLES = ["config", "commit-slot", "marker", "loose-object", "files-pack", "files-index", "record-pack",
         "record-index", "node-pack", "node-index"]


def test_roles_cover_every_file_in_the_store(pristine: Sealed) -> None:
    assert sorted(pristine.roles) == sorted(ROLES)
    assert set(pristine.roles.values()) == store_files(pristine.store), "a store file has no tamper case"
    assert len(set(pristine.roles.values())) == len(ROLES)
    assert os.path.getsize(pristine.store / pristine.roles["loose-object"]) >= 1024 * 1024


@pytest.fixture
def fresh(pristine: Sealed, tmp_path: Path) -> Sealed:
    """A private copy of the pristine sealed store."""
    store = tmp_path / "store"
    shutil.copytree(pristine.store, store)
    return Sealed(store, pristine.pub, pristine.key, pristine.commit, pristine.root, pristine.items, pristine.roles,
                  pristine.expect)


def verify_fails(s: Sealed, cwd: Path) -> list[dict[str, Any]]:
    """verify --json must exit 1 with one JSON document on stdout, no traceback; returns the failed checks."""
    r = run_cli(s.store, "verify", RUN, "--trust", s.pub, "--json", cwd=cwd)
    assert r.code == 1, f"tampered store did not fail verification\n{r}"
    assert "Traceback" not in r.err and "Traceback" not in r.out, str(r)
    if not r.out:  # a hard error instead of a report: still exactly one error line
        lines = r.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), str(r)
        return [{"name": "error", "ok": False, "detail": lines[0]}]
    doc = json.loads(r.out)
    assert doc["ok"] is False and doc["run"] == RUN, str(r)
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert failed, str(r)
    for c in failed:  # each detail names the run once, at its start
        assert c["detail"].startswith(f"run {RUN}: ") and f"run {RUN}: run {RUN}" not in c["detail"], c
    # the human form tells the same story in one error line
    h = run_cli(s.store, "verify", RUN, "--trust", s.pub, cwd=cwd)
    assert h.code == 1 and "Traceback" not in h.err, str(h)
    lines = h.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), str(h)
    return failed


def assert_names(s: Sealed, role: str, failed: list[dict[str, Any]]) -> None:
    details = [c["detail"] for c in failed]
    alternatives = s.expect[role]
    assert any(all(word in d for word in alt) for d in details for alt in alternatives), (
        f"no failing check names the damaged {role} ({s.roles[role]}): expected one of {alternatives}, "
        f"got {details}")


FLIPS: dict[str, Callable[[int], int]] = {"first": lambda n: 0, "middle": lambda n: n // 2, "last": lambda n: n - 1}
TRUNCATIONS: dict[str, Callable[[int], int]] = {"empty": lambda n: 0, "half": lambda n: n // 2}

def _flip_params() -> list[Any]:
    out = []
    for role in ROLES:
        for pos in FLIPS:
            out.append(pytest.param(role, pos, id=f"{role}-{pos}"))
    return out


@pytest.mark.parametrize(("role", "pos"), _flip_params())
def test_flip_one_byte(fresh: Sealed, tmp_path: Path, role: str, pos: str) -> None:
    path = fresh.store / fresh.roles[role]
    data = bytearray(path.read_bytes())
    i = FLIPS[pos](len(data))
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_names(fresh, role, verify_fails(fresh, tmp_path))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("to", list(TRUNCATIONS))
def test_truncate(fresh: Sealed, tmp_path: Path, role: str, to: str) -> None:
    path = fresh.store / fresh.roles[role]
    size = path.stat().st_size
    os.truncate(path, TRUNCATIONS[to](size))
    assert path.stat().st_size < size
    assert_names(fresh, role, verify_fails(fresh, tmp_path))


def test_pristine_copy_verifies(fresh: Sealed, tmp_path: Path) -> None:
    """The control for every case above: an untouched copy passes."""
    r = run_cli(fresh.store, "verify", RUN, "--trust", fresh.pub, "--json", cwd=tmp_path)
    assert r.code == 0, str(r)
    assert json.loads(r.out)["ok"] is True


# --- targeted damage -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [-1, -32, -64])
def test_signature_byte_flipped(fresh: Sealed, tmp_path: Path, offset: int) -> None:
    """The slot ends with the 64 signature bytes: only the signature check may fail, and it must."""
    path = fresh.store / fresh.roles["commit-slot"]
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    failed = verify_fails(fresh, tmp_path)
    assert [c["name"] for c in failed] == ["signature"], failed
    assert "bad signature" in failed[0]["detail"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("two-runs")
    store, key = base / "store", base / "k"
    (base / "a.txt").write_text("a")
    (base / "b.txt").write_text("b")
    ok(store, "init", cwd=base)
    ok(store, "keys", "generate", "--out", key, cwd=base)
    ok(store, "add", "run-a", base / "a.txt", cwd=base)
    ok(store, "add", "run-b", base / "b.txt", cwd=base)
    a = json.loads(ok(store, "seal", "run-a", "--key", key, "--json", cwd=base).out)
    b = json.loads(ok(store, "seal", "run-b", "--key", key, "--json", cwd=base).out)
    return {"store": store, "pub": Path(f"{key}.pub"), "a": a, "b": b}


def _verify_two(tmp_path: Path, two_runs: dict[str, Any], run: str) -> tuple[Result, list[dict[str, Any]]]:
    store = tmp_path / "store"
    r = run_cli(store, "verify", run, "--trust", two_runs["pub"], "--json", cwd=tmp_path)
    assert "Traceback" not in r.err, str(r)
    failed = [c for c in json.loads(r.out)["checks"] if not c["ok"]] if r.out else []
    return r, failed


@pytest.mark.parametrize("how", ["other-runs-marker", "crafted-seq", "crafted-digest"])
def test_marker_points_at_another_commit(two_runs: dict[str, Any], tmp_path: Path, how: str) -> None:
    store = tmp_path / "store"
    shutil.copytree(two_runs["store"], store)
    a_marker = store / "runs/run-a/sealed"
    b_marker = store / "runs/run-b/sealed"
    ma = Marker.from_bytes(a_marker.read_bytes())
    mb = Marker.from_bytes(b_marker.read_bytes())
    assert (ma.seq, mb.seq) == (0, 1)
    if how == "other-runs-marker":
        a_marker.write_bytes(b_marker.read_bytes())
    elif how == "crafted-seq":  # a well-formed marker for run-a naming run-b's commit and slot
        a_marker.write_bytes(Marker("run-a", mb.seq, mb.commit, ma.packs).encode())
    else:  # the right slot, another commit's digest
        a_marker.write_bytes(Marker("run-a", ma.seq, mb.commit, ma.packs).encode())
    r, failed = _verify_two(tmp_path, two_runs, "run-a")
    assert r.code == 1, str(r)
    assert failed and any("marker" in c["detail"] for c in failed), failed
    # the other run is untouched and still verifies
    r, _ = _verify_two(tmp_path, two_runs, "run-b")
    assert r.code == 0, str(r)


@pytest.mark.parametrize("how", ["other-valid-id", "dropped"])
def test_marker_pack_list_tampered(fresh: Sealed, tmp_path: Path, how: str) -> None:
    """A well-formed marker whose pack list was changed: verify fails naming the completion marker (or, for a
    dropped pack, the items whose content can no longer be found through it)."""
    path = fresh.store / fresh.roles["marker"]
    m = Marker.from_bytes(path.read_bytes())
    assert m.packs
    packs = ("f" * 32,) + m.packs[1:] if how == "other-valid-id" else m.packs[1:]
    path.write_bytes(Marker(m.run, m.seq, m.commit, packs).encode())
    failed = verify_fails(fresh, tmp_path)
    details = " ".join(c["detail"] for c in failed)
    if how == "other-valid-id":
        assert "completion marker names pack " + "f" * 32 in details, failed
    else:
        assert any(c["name"] in ("content", "tree", "commit") for c in failed), failed


def test_earlier_commit_tampered_breaks_later_run_chain(two_runs: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(two_runs["store"], store)
    slot0 = store / "chain" / ("0" * 20)
    data = bytearray(slot0.read_bytes())
    data[len(data) // 2] ^= 0xFF
    slot0.write_bytes(bytes(data))
    r, failed = _verify_two(tmp_path, two_runs, "run-b")
    assert r.code == 1, str(r)
    assert [c["name"] for c in failed] == ["chain"], failed
    assert "slot 0" in failed[0]["detail"]


def test_deleted_earlier_slot_breaks_later_run_chain(two_runs: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(two_runs["store"], store)
    (store / "chain" / ("0" * 20)).unlink()
    r = run_cli(store, "verify", "run-b", "--trust", two_runs["pub"], "--json", cwd=tmp_path)
    assert r.code == 1, str(r)
    assert "Traceback" not in r.err
    failed = [c for c in json.loads(r.out)["checks"] if not c["ok"]]
    assert any(c["name"] == "chain" for c in failed), failed


def test_deleted_marker_detected_then_seal_completes_it(fresh: Sealed, tmp_path: Path) -> None:
    marker = fresh.store / fresh.roles["marker"]
    original = marker.read_bytes()
    marker.unlink()
    failed = verify_fails(fresh, tmp_path)
    assert [c["name"] for c in failed] == ["marker"], failed
    assert "missing" in failed[0]["detail"]

    r = run_cli(fresh.store, "seal", RUN, "--key", fresh.key, cwd=tmp_path)
    assert r.code == 0, str(r)
    assert "completed an interrupted seal" in r.out
    assert fresh.commit[:16] in r.out
    assert marker.read_bytes() == original, "the completed marker differs from the one the seal wrote"
    r = run_cli(fresh.store, "verify", RUN, "--trust", fresh.pub, cwd=tmp_path)
    assert r.code == 0, str(r)
    # and now it is complete: sealing again is contention naming the commit, the chain did not grow
    r = run_cli(fresh.store, "seal", RUN, "--key", fresh.key, cwd=tmp_path)
    assert r.code == 4 and fresh.commit[:16] in r.err, str(r)
    log = json.loads(run_cli(fresh.store, "log", "--json", cwd=tmp_path).out)
    assert len(log) == 1


@pytest.mark.parametrize("what", ["pack", "index", "both"])
def test_deleted_content_pack(fresh: Sealed, tmp_path: Path, what: str) -> None:
    pack = fresh.store / fresh.roles["files-pack"]
    pid = pack.name.removesuffix(".pack")
    if what in ("pack", "both"):
        pack.unlink()
    if what in ("index", "both"):
        (fresh.store / fresh.roles["files-index"]).unlink()
    failed = verify_fails(fresh, tmp_path)
    details = " | ".join(c["detail"] for c in failed)
    assert "missing" in details and pid in details, failed
    if what == "pack":
        content = [c for c in failed if c["name"] == "content"]
        assert content and "content missing" in content[0]["detail"], failed
        assert "part/p0.csv" in content[0]["detail"]


def test_deleted_loose_object(fresh: Sealed, tmp_path: Path) -> None:
    (fresh.store / fresh.roles["loose-object"]).unlink()
    failed = verify_fails(fresh, tmp_path)
    assert [c["name"] for c in failed] == ["content"], failed
    assert "blobs/big.bin" in failed[0]["detail"] and "missing" in failed[0]["detail"]


def test_deleted_commit_slot(fresh: Sealed, tmp_path: Path) -> None:
    (fresh.store / fresh.roles["commit-slot"]).unlink()
    failed = verify_fails(fresh, tmp_path)
    assert any("slot 0" in c["detail"] and "missing" in c["detail"] for c in failed), failed


def test_swapped_item_content_within_pack(fresh: Sealed, tmp_path: Path) -> None:
    """Same size, same bytes overall, two items' contents exchanged: each item's hash must catch it."""
    idx = decode_index(fresh.roles["files-pack"].split("/")[1].removesuffix(".pack"),
                       (fresh.store / fresh.roles["files-index"]).read_bytes())
    pack = fresh.store / fresh.roles["files-pack"]
    data = bytearray(pack.read_bytes())
    (o1, s1), (o2, s2) = sorted(idx.values())[:2]
    assert s1 == s2
    data[o1:o1 + s1], data[o2:o2 + s2] = data[o2:o2 + s2], data[o1:o1 + s1]
    pack.write_bytes(bytes(data))
    failed = verify_fails(fresh, tmp_path)
    assert [c["name"] for c in failed] == ["content"], failed
    assert "hash mismatch" in failed[0]["detail"]
