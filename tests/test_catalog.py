"""The run catalog (ledger/catalog.py, spec/catalog.md): a local SQLite index of a store, kept up to date from the
store before every query, rebuilt and checked against the store by ``reindex``, never trusted.

Runs are created through the Python API on real stores: a local directory and the S3 API server of the ``s3``
fixture (tests/conftest.py), both for every test whose subject is the catch-up from a store. The catalog file itself
is tampered with through sqlite3, as a user with their own tools could. Concurrency uses real processes.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from ledger import Ledger, SigningKey, catalog
from ledger.chain import read_slot
from ledger.closure import seal as closure_seal
from ledger.digests import Digest
from ledger.errors import LedgerError, NotFound, StorageError, UsageError
from ledger.evidence import staged_items
from ledger.layout import batch_key, slot_key
from ledger.objects import Batch, ItemEntry, StagedItem
from ledger.storage import LocalStore, MemoryStore, Store, open_store

KEY = SigningKey.generate()
DAY_MS = 86_400_000
T0 = catalog.parse_time("2026-01-01")


@pytest.fixture(autouse=True)
def _catalog_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the real ~/.cache: every test's catalogs live under its own tmp_path."""
    monkeypatch.delenv(catalog.ENV_PATH, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(params=["local", "s3"])
def lg(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """A fresh, initialised store on each backend."""
    url = str(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3").url("catalog")
    ledger = Ledger.open(url)
    ledger.init()
    return ledger


@pytest.fixture
def local(tmp_path: Path) -> Ledger:
    ledger = Ledger.open(str(tmp_path / "store"))
    ledger.init()
    return ledger


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def add_files(lg: Ledger, run: str, files: dict[str, bytes], where: Path) -> None:
    """Add ``files`` (name -> content) to ``run`` as one directory: items are named relative to it."""
    d = where / f"src-{uuid.uuid4().hex[:8]}"
    for name, data in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    lg.add(run, [str(d)])


def sealed_run(lg: Ledger, run: str, files: dict[str, bytes], where: Path, at_ms: int | None = None) -> str:
    """Add ``files`` to ``run`` and seal it (at ``at_ms`` when given); the commit digest in hex."""
    add_files(lg, run, files, where)
    clock = (lambda: at_ms) if at_ms is not None else None
    return closure_seal(lg.store, run, KEY, now_ms=clock).digest.hex()


def rows(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the catalog file directly, as a user's sqlite3 or Datasette would."""
    conn = sqlite3.connect(catalog.catalog_path(store))
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def tamper(store: Store, *statements: str) -> None:
    conn = sqlite3.connect(catalog.catalog_path(store), isolation_level=None)
    try:
        for s in statements:
            conn.execute(s)
    finally:
        conn.close()


def by_run(store: Store, warn: Callable[[str], None] | None = None, **filters: Any) -> dict[str, catalog.RunRow]:
    return {r.run: r for r in catalog.runs(store, warn=warn, **filters)}


# --- location --------------------------------------------------------------------------------------------------------

def test_catalog_path_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore("s3://bucket/some/prefix")
    tag = blake3.blake3(b"s3://bucket/some/prefix").hexdigest()[:16]
    assert catalog.catalog_path(store) == str(tmp_path / "cache" / "ledger" / f"catalog-{tag}.sqlite")
    local = LocalStore(str(tmp_path / "st"))
    assert local.url == f"file://{tmp_path}/st"
    assert catalog.catalog_path(local).endswith(f"catalog-{b3(local.url.encode())[:16]}.sqlite")
    assert catalog.catalog_path(local) != catalog.catalog_path(store)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ("", "relative/cache"):  # XDG: empty or relative means the default
        monkeypatch.setenv("XDG_CACHE_HOME", unset)
        assert catalog.catalog_path(store) == str(tmp_path / "home" / ".cache" / "ledger" / f"catalog-{tag}.sqlite")
    monkeypatch.setenv(catalog.ENV_PATH, str(tmp_path / "mine.sqlite"))
    assert catalog.catalog_path(store) == str(tmp_path / "mine.sqlite")


def test_the_catalog_is_never_written_inside_the_store(local: Ledger, tmp_path: Path) -> None:
    sealed_run(local, "r1", {"a.txt": b"alpha\n"}, tmp_path)
    before = sorted(p.relative_to(tmp_path / "store") for p in (tmp_path / "store").rglob("*") if p.is_file())
    catalog.refresh(local.store)
    after = sorted(p.relative_to(tmp_path / "store") for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert before == after
    path = Path(catalog.catalog_path(local.store))
    assert path.is_file() and path.parent == tmp_path / "cache" / "ledger"


# --- catching up -----------------------------------------------------------------------------------------------------

def test_open_runs_appear_with_their_staged_count(lg: Ledger, tmp_path: Path) -> None:
    add_files(lg, "o1", {"a.txt": b"alpha\n", "d/b.txt": b"beta\n"}, tmp_path)
    got = by_run(lg.store)
    assert list(got) == ["o1"]
    o1 = got["o1"]
    assert (o1.status, o1.count, o1.bytes, o1.seq, o1.commit, o1.sealed_at) == ("open", 2, 11, None, None, None)
    # more items, a re-added identical one (a no-op), and a second open run
    add_files(lg, "o1", {"a.txt": b"alpha\n", "c.txt": b"gamma!\n"}, tmp_path)
    lg.record("o0", "receipt", {"source": "kafka-orders", "count": 3})
    got = by_run(lg.store)
    assert [(r.run, r.status, r.count, r.bytes) for r in got.values()] == [
        ("o0", "open", 1, got["o0"].bytes), ("o1", "open", 3, 18)]
    assert got["o0"].bytes > 0
    assert not catalog.find_name(lg.store, "*")  # open runs' items are not in the catalog's items


def test_batches_count_as_staging_does(lg: Ledger, tmp_path: Path) -> None:
    """A batch that binds a name to other content is rejected whole (as a racing add's is), one re-binding a name
    to the same content adds nothing: the catalog's count is the staged items' count."""
    add_files(lg, "o1", {"a.txt": b"alpha\n"}, tmp_path)
    same = staged_items(lg.store, "o1")["a.txt"]
    other = StagedItem(ItemEntry("a.txt", "file", 3, Digest(same.entry.blake3[::-1])), same.pack)
    new = StagedItem(ItemEntry("new.txt", "file", 6, same.entry.blake3), same.pack)
    lg.store.put_if_absent(batch_key("o1", 1), Batch("o1", (other, new)).encode())  # conflicting: rejected whole
    lg.store.put_if_absent(batch_key("o1", 2), Batch("o1", (same, new)).encode())  # same + new: adds one
    assert len(staged_items(lg.store, "o1")) == 2
    o1 = by_run(lg.store)["o1"]
    assert (o1.count, o1.bytes) == (2, 12)
    assert rows(lg.store, "SELECT key, items FROM batches ORDER BY key") == [
        (batch_key("o1", 0), 1), (batch_key("o1", 1), 0), (batch_key("o1", 2), 1)]
    assert catalog.check(lg.store) == []


def test_after_seal_the_run_is_sealed_findable_and_has_its_offsets(lg: Ledger, tmp_path: Path) -> None:
    files = {"data/a.csv": b"id,v\n1,2\n", "data/b.csv": b"id,v\n3,4\n", "job.log": b"ran fine\n"}
    add_files(lg, "n1", files, tmp_path)
    lg.record("n1", "offsets", [{"group": "nightly", "topic": "orders", "partition": 0, "start": 10, "end": 20},
                                {"group": "nightly", "topic": "orders", "partition": 1, "start": 5, "end": 9}])
    assert by_run(lg.store)["n1"].status == "open"
    result = lg.seal("n1", KEY)
    body = result.commit.body
    n1 = by_run(lg.store)["n1"]
    assert n1.to_json() == {
        "run": "n1", "status": "sealed", "seq": 0, "commit": result.digest.hex(), "root": body.root.hex(),
        "items_root": body.items_root.hex(), "count": 5, "bytes": body.total_bytes,
        "sealed_at": catalog._iso(body.time_ms), "sealed_ms": body.time_ms, "key_id": KEY.public.key_id.hex(),
        "policy": None}
    assert n1.sealed_at is not None and n1.sealed_at.endswith("Z") and catalog.parse_time(n1.sealed_at) == \
        body.time_ms
    # by digest: full hex, b3:-prefixed, upper case, an 8-digit prefix
    a = b3(files["data/a.csv"])
    for q in (a, "b3:" + a, a.upper(), "B3:" + a[:20].upper(), a[:8], f"  {a}\n"):
        found = catalog.find_digest(lg.store, q)
        assert [f.to_json() for f in found] == [{"run": "n1", "seq": 0, "name": "data/a.csv", "kind": "file",
                                                 "size": 9, "blake3": a}], q
    assert catalog.find_digest(lg.store, "0" * 64) == []
    # by name: SQLite GLOB, case-sensitive, '*' crosses '/'
    assert [f.name for f in catalog.find_name(lg.store, "data/*")] == ["data/a.csv", "data/b.csv"]
    assert [f.name for f in catalog.find_name(lg.store, "*.csv")] == ["data/a.csv", "data/b.csv"]
    assert [f.name for f in catalog.find_name(lg.store, "data/[b]?csv")] == ["data/b.csv"]
    assert catalog.find_name(lg.store, "*.CSV") == []
    assert [(f.name, f.kind) for f in catalog.find_name(lg.store, "offsets/*")] == [
        ("offsets/nightly/orders/0.json", "offsets"), ("offsets/nightly/orders/1.json", "offsets")]
    # offsets rows come from the commit's anchors; the staging bookkeeping is gone
    assert rows(lg.store, 'SELECT run, grp, topic, partition, start, "end" FROM offsets ORDER BY partition') == [
        ("n1", "nightly", "orders", 0, 10, 20), ("n1", "nightly", "orders", 1, 5, 9)]
    assert [tuple(a) for a in body.anchors] == [("nightly", "orders", 0, 10, 20), ("nightly", "orders", 1, 5, 9)]
    assert rows(lg.store, "SELECT count(*) FROM staged") == [(0,)]
    assert rows(lg.store, "SELECT count(*) FROM batches") == [(0,)]
    assert rows(lg.store, "SELECT kind, count FROM kinds WHERE run = 'n1' ORDER BY kind") == [
        ("file", 3), ("offsets", 2)]
    assert rows(lg.store, 'SELECT seq, "commit", run, parent FROM commits') == [(0, result.digest.hex(), "n1", None)]


def test_find_orders_by_slot_then_name(lg: Ledger, tmp_path: Path) -> None:
    shared = b"the same bytes\n"
    sealed_run(lg, "zeta", {"z.txt": shared, "a.txt": shared}, tmp_path)
    sealed_run(lg, "alpha", {"m.txt": shared}, tmp_path)
    found = catalog.find_digest(lg.store, b3(shared))
    assert [(f.run, f.seq, f.name) for f in found] == [
        ("zeta", 0, "a.txt"), ("zeta", 0, "z.txt"), ("alpha", 1, "m.txt")]
    assert [r.run for r in catalog.runs(lg.store)] == ["zeta", "alpha"]


class CountingStore(LocalStore):
    """A local store that records every key read whole (commit slots and batches are read so)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.gets: list[str] = []

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return super().get(key)


def test_catch_up_reads_only_what_is_new(tmp_path: Path) -> None:
    store = CountingStore(str(tmp_path / "store"))
    lg = Ledger(store)
    lg.init()
    sealed_run(lg, "r0", {"a.txt": b"zero\n"}, tmp_path)
    sealed_run(lg, "r1", {"a.txt": b"one\n"}, tmp_path)
    first = catalog.refresh(store)
    assert (first.head_seq, first.new_commits) == (1, 2)
    stamp = rows(store, "SELECT value FROM meta WHERE key = 'updated_at'")

    store.gets.clear()
    again = catalog.refresh(store)
    assert (again.head_seq, again.new_commits, again.new_batches) == (1, 0, 0)
    assert [k for k in store.gets if k.startswith("chain/")] == [slot_key(1)]  # the head, re-checked: that is all
    assert rows(store, "SELECT value FROM meta WHERE key = 'updated_at'") == stamp  # nothing new, nothing written

    sealed_run(lg, "r2", {"a.txt": b"two\n"}, tmp_path)
    store.gets.clear()
    third = catalog.refresh(store)
    assert (third.head_seq, third.new_commits) == (2, 1)
    assert [k for k in store.gets if k.startswith("chain/")] == [slot_key(1), slot_key(2)]

    add_files(lg, "o", {"x.txt": b"x\n"}, tmp_path)
    assert catalog.refresh(store).new_batches == 1
    add_files(lg, "o", {"y.txt": b"y\n"}, tmp_path)
    store.gets.clear()
    fourth = catalog.refresh(store)
    assert (fourth.new_commits, fourth.new_batches) == (0, 1)
    assert [k for k in store.gets if "/staged/" in k] == [batch_key("o", 1)]
    assert by_run(store)["o"].count == 2
    assert rows(store, "SELECT value FROM meta WHERE key = 'head_seq'") == [("2",)]


def test_a_run_sealed_between_queries_moves_from_open_to_sealed(lg: Ledger, tmp_path: Path) -> None:
    add_files(lg, "r", {"a.txt": b"a\n", "b.txt": b"b\n"}, tmp_path)
    add_files(lg, "keep-open", {"c.txt": b"c\n"}, tmp_path)
    assert {r.run: r.status for r in catalog.runs(lg.store)} == {"r": "open", "keep-open": "open"}
    lg.seal("r", KEY)
    got = by_run(lg.store)
    assert [(r.run, r.status, r.seq, r.count) for r in got.values()] == [
        ("r", "sealed", 0, 2), ("keep-open", "open", None, 1)]
    assert rows(lg.store, "SELECT DISTINCT run FROM staged") == [("keep-open",)]
    assert catalog.check(lg.store) == []


# --- filters ---------------------------------------------------------------------------------------------------------

def test_status_time_and_kind_filters(lg: Ledger, tmp_path: Path) -> None:
    sealed_run(lg, "jan", {"a.txt": b"jan\n"}, tmp_path, at_ms=T0)
    lg.record("feb", "receipt", {"source": "kafka-orders", "count": 1})
    sealed_run(lg, "feb", {"b.txt": b"feb\n"}, tmp_path, at_ms=T0 + 31 * DAY_MS)
    (tmp_path / "job.log").write_bytes(b"mar log\n")
    lg.add("mar", [str(tmp_path / "job.log")], kind="log")
    sealed_run(lg, "mar", {"c.txt": b"mar\n"}, tmp_path, at_ms=T0 + 59 * DAY_MS)
    lg.record("open1", "receipt", {"source": "kafka-orders", "count": 2})

    def names(**f: Any) -> list[str]:
        return [r.run for r in catalog.runs(lg.store, **f)]

    assert names() == ["jan", "feb", "mar", "open1"]
    assert names(status="sealed") == ["jan", "feb", "mar"]
    assert names(status="open") == ["open1"]
    assert names(since_ms=T0 + 31 * DAY_MS) == ["feb", "mar"]  # since: inclusive; open runs have no time
    assert names(until_ms=T0 + 31 * DAY_MS) == ["jan"]  # until: exclusive
    assert names(since_ms=T0 + 1, until_ms=T0 + 59 * DAY_MS + 1) == ["feb", "mar"]
    assert names(since_ms=catalog.parse_time("2026-02-01T00:00:00Z"),
                 until_ms=catalog.parse_time("2026-02-01T01:00:00+01:00") + 1) == ["feb"]
    assert names(kind="receipt") == ["feb"]  # open1 stages a receipt, but kinds are sealed items only
    assert names(kind="log") == ["mar"]
    assert names(kind="file") == ["jan", "feb", "mar"]
    assert names(kind="decision") == []
    assert names(kind="file", status="open") == []
    assert names(kind="file", since_ms=T0 + 1, status="sealed") == ["feb", "mar"]


@pytest.mark.parametrize("kwargs", [{"status": "closed"}, {"kind": "nope"}, {"status": ""}])
def test_bad_filters_are_usage_errors(local: Ledger, kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError) as e:
        catalog.runs(local.store, **kwargs)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["2026-13-01", "yesterday", "", "1700000000"])
def test_parse_time_refuses_what_is_not_iso_8601(text: str) -> None:
    with pytest.raises(UsageError) as e:
        catalog.parse_time(text)
    assert e.value.exit_code == 2 and "ISO 8601" in str(e.value)


def test_parse_time() -> None:
    assert catalog.parse_time("1970-01-01") == 0
    assert catalog.parse_time("1970-01-01T00:00:01.5Z") == 1500
    assert catalog.parse_time("1970-01-01T01:00:00+01:00") == 0
    assert catalog.parse_time("1970-01-02T00:00:00") == DAY_MS  # no zone: UTC


# --- find: input -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "abc", "1234567", "b3:1234567", "b3:", "g" * 64, "0" * 65, "b3:" + "0" * 65,
                                  "sha256:" + "0" * 64, "0123 4567", "b3:b3:01234567", "-01234567"])
def test_digest_input_is_validated(local: Ledger, text: str) -> None:
    with pytest.raises(UsageError) as e:
        catalog.find_digest(local.store, text)
    assert e.value.exit_code == 2
    assert "\n" not in str(e.value) and "at least 8" in str(e.value)


def test_digest_prefix_range() -> None:
    assert catalog.digest_range("B3:ABCDEF01") == ("abcdef01", "abcdef01g")
    assert catalog.digest_range("f" * 64) == ("f" * 64, "f" * 64 + "g")


@pytest.mark.parametrize("glob", ["", "a\x00b"])
def test_name_glob_is_validated(local: Ledger, glob: str) -> None:
    with pytest.raises(UsageError) as e:
        catalog.find_name(local.store, glob)
    assert e.value.exit_code == 2


def test_a_store_that_does_not_exist_is_not_found(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "nowhere"))
    for call in (lambda: catalog.runs(store), lambda: catalog.find_name(store, "*"),
                 lambda: catalog.find_digest(store, "0" * 64), lambda: catalog.reindex(store),
                 lambda: catalog.check(store), lambda: catalog.refresh(store)):
        with pytest.raises(NotFound) as e:
            call()
        assert e.value.exit_code == 3 and "no ledger store" in str(e.value)
    assert not (tmp_path / "cache").exists()  # no catalog made for a store that is not there


def test_an_unwritable_catalog_location_is_a_storage_error(local: Ledger, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_bytes(b"not a directory")
    monkeypatch.setenv(catalog.ENV_PATH, str(tmp_path / "a-file" / "catalog.sqlite"))
    for call in (lambda: catalog.runs(local.store), lambda: catalog.reindex(local.store)):
        with pytest.raises(StorageError) as e:
            call()
        assert e.value.exit_code == 5
        assert str(e.value).startswith(f"catalog {tmp_path / 'a-file' / 'catalog.sqlite'}: ")
        assert "\n" not in str(e.value)


# --- reindex and check -----------------------------------------------------------------------------------------------

def test_reindex_rebuilds_and_its_check_passes(lg: Ledger, tmp_path: Path) -> None:
    sealed_run(lg, "r1", {f"d/{i:03d}.txt": f"item {i}\n".encode() for i in range(150)}, tmp_path)
    lg.record("r2", "offsets", {"topic": "orders", "partition": 0, "start": 0, "end": 7})
    sealed_run(lg, "r2", {"x.txt": b"x\n"}, tmp_path)
    add_files(lg, "o1", {"y.txt": b"y\n"}, tmp_path)
    before = [r.to_json() for r in catalog.runs(lg.store)]
    warns: list[str] = []
    result = catalog.reindex(lg.store, warns.append)
    assert result.ok and bool(result) and result.problems == [] and warns == []
    assert (result.head_seq, result.commits, result.sealed, result.open, result.items) == (1, 2, 2, 1, 152)
    assert result.path == catalog.catalog_path(lg.store) and result.seconds > 0
    assert result.to_json()["ok"] is True
    assert [r.to_json() for r in catalog.runs(lg.store)] == before
    assert catalog.check(lg.store) == []
    assert rows(lg.store, "PRAGMA integrity_check") == [("ok",)]


def _tamper_cases() -> list[tuple[str, str, str]]:
    zero = "0" * 64
    return [
        ("item digest", f"UPDATE items SET blake3 = '{zero}' WHERE run = 'r1' AND name = 'a.txt'", "run r1 (#0)"),
        ("item deleted", "DELETE FROM items WHERE run = 'r1' AND name = 'b.txt'",
         "run r1 (#0): 2 item row(s), the commit says 3"),
        ("item added", "INSERT INTO items VALUES ('r1', 'c.txt', 'file', 1, '" + zero + "')", "run r1 (#0)"),
        ("item size", "UPDATE items SET size = size + 1 WHERE run = 'r1' AND name = 'a.txt'", "run r1 (#0)"),
        ("item kind", "UPDATE items SET kind = 'log' WHERE run = 'r1' AND name = 'a.txt'", "run r1 (#0)"),
        ("run count", "UPDATE runs SET count = 99 WHERE run = 'r1'", "run r1 (#0): column count is 99"),
        ("run deleted", "DELETE FROM runs WHERE run = 'r1'", "run r1 (#0): no run row"),
        ("run invented", "INSERT INTO runs (run, status, seq, count, bytes) VALUES ('ghost', 'sealed', 7, 1, 1)",
         "run ghost: listed as sealed"),
        ("commit root", f"UPDATE commits SET root = '{zero}' WHERE seq = 0", "commit #0 (run r1): column root"),
        ("commit deleted", "DELETE FROM commits WHERE seq = 0", "commit #0 (run r1): no commit row"),
        ("offsets deleted", "DELETE FROM offsets WHERE run = 'r1'", "run r1 (#0): offsets rows"),
        ("kinds", "UPDATE kinds SET count = 5 WHERE run = 'r1'", "run r1 (#0): kinds rows"),
        ("staged size", "UPDATE staged SET size = size + 1 WHERE run = 'o1'", "run o1 (open)"),
        ("open count", "UPDATE runs SET count = 9 WHERE run = 'o1'", "run o1 (open): count 9"),
    ]


@pytest.mark.parametrize(("what", "sql", "problem"), _tamper_cases(), ids=[c[0] for c in _tamper_cases()])
def test_check_reports_a_tampered_catalog(local: Ledger, tmp_path: Path, what: str, sql: str, problem: str) -> None:
    local.record("r1", "offsets", {"topic": "orders", "partition": 0, "start": 0, "end": 7})
    sealed_run(local, "r1", {"a.txt": b"alpha\n", "b.txt": b"beta\n"}, tmp_path)
    add_files(local, "o1", {"y.txt": b"y\n"}, tmp_path)
    catalog.refresh(local.store)
    assert catalog.check(local.store) == []
    tamper(local.store, sql)
    problems = catalog.check(local.store)
    assert any(p.startswith(problem) for p in problems), problems
    assert all("\n" not in p for p in problems)
    # a rebuild says what the store says again
    result = catalog.reindex(local.store)
    assert result.ok, result.problems
    assert catalog.check(local.store) == []


def test_check_of_a_missing_or_unreadable_catalog_reports_it(local: Ledger) -> None:
    path = catalog.catalog_path(local.store)
    assert catalog.check(local.store) == [f"catalog {path}: does not exist (`ledger reindex` builds it)"]
    catalog.refresh(local.store)
    Path(path).write_bytes(b"garbage" * 100)
    problems = catalog.check(local.store)
    assert len(problems) == 1 and problems[0].startswith(f"catalog {path}: ")
    assert Path(path).read_bytes() == b"garbage" * 100  # check never repairs
    warns: list[str] = []
    refreshed = catalog.refresh(local.store, warns.append)  # a query does
    assert refreshed.rebuilt and refreshed.to_json()["rebuilt"] is True and len(warns) == 1
    assert catalog.check(local.store) == [] and not catalog.refresh(local.store, warns.append).rebuilt


def test_check_does_not_call_a_catalog_behind_the_store_wrong(lg: Ledger, tmp_path: Path) -> None:
    sealed_run(lg, "r1", {"a.txt": b"a\n"}, tmp_path)
    catalog.refresh(lg.store)
    sealed_run(lg, "r2", {"b.txt": b"b\n"}, tmp_path)
    assert catalog.check(lg.store) == []
    assert rows(lg.store, "SELECT value FROM meta WHERE key = 'head_seq'") == [("0",)]  # check wrote nothing


# --- damage: rebuilt with one warning --------------------------------------------------------------------------------

def _garbage(path: Path, store: Store) -> None:
    path.write_bytes(os.urandom(8192))


def _truncated(path: Path, store: Store) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _emptied(path: Path, store: Store) -> None:
    path.write_bytes(b"")


def _schema_version(path: Path, store: Store) -> None:
    tamper(store, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")


def _dropped_table(path: Path, store: Store) -> None:
    tamper(store, "DROP TABLE items")


def _renamed_column(path: Path, store: Store) -> None:
    tamper(store, "ALTER TABLE runs RENAME COLUMN status TO state")


def _other_store(path: Path, store: Store) -> None:
    tamper(store, "UPDATE meta SET value = 'file:///somewhere/else' WHERE key = 'store_url'")


DAMAGE = {"garbage": (_garbage, ""), "truncated": (_truncated, ""), "emptied": (_emptied, "no meta table"),
          "schema version": (_schema_version, "schema version '99'"), "dropped table": (_dropped_table, "items"),
          "renamed column": (_renamed_column, "status"),
          "another store": (_other_store, "a catalog of another store ('file:///somewhere/else')")}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_catalog_is_rebuilt_with_one_warning(lg: Ledger, tmp_path: Path, damage: str) -> None:
    data = {f"f{i:03d}.txt": f"file {i}\n".encode() for i in range(300)}  # enough pages to truncate halfway
    sealed_run(lg, "r1", data, tmp_path)
    add_files(lg, "o1", {"y.txt": b"y\n"}, tmp_path)
    expected = [r.to_json() for r in catalog.runs(lg.store)]
    path = Path(catalog.catalog_path(lg.store))
    damage_fn, reason = DAMAGE[damage]
    damage_fn(path, lg.store)
    warns: list[str] = []
    assert [r.to_json() for r in catalog.runs(lg.store, warn=warns.append)] == expected
    assert len(warns) == 1, warns
    assert warns[0].startswith(f"catalog {path}: ") and warns[0].endswith("; rebuilt from the store")
    assert reason in warns[0]
    assert "\n" not in warns[0]
    found = catalog.find_digest(lg.store, b3(data["f123.txt"]), warn=warns.append)
    assert [(f.run, f.name) for f in found] == [("r1", "f123.txt")]
    assert len(warns) == 1  # rebuilt once, and then trusted as a cache again
    assert catalog.check(lg.store) == []


def test_damage_found_in_the_middle_of_a_query_is_repaired(local: Ledger, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sealed_run(local, "r1", {"a.txt": b"a\n"}, tmp_path)
    catalog.refresh(local.store)
    calls = []
    real = catalog._database

    def flaky(conn: sqlite3.Connection) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return real(conn)

    monkeypatch.setattr(catalog, "_database", flaky)
    warns: list[str] = []
    assert [f.name for f in catalog.find_name(local.store, "*", warn=warns.append)] == ["a.txt"]
    assert len(warns) == 1 and "database disk image is malformed; rebuilt from the store" in warns[0]


def test_a_catalog_shared_by_two_stores_follows_the_one_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.ENV_PATH, str(tmp_path / "shared.sqlite"))
    a, b = Ledger.open(str(tmp_path / "a")), Ledger.open(str(tmp_path / "b"))
    a.init()
    b.init()
    sealed_run(a, "in-a", {"x.txt": b"in a\n"}, tmp_path)
    sealed_run(b, "in-b", {"x.txt": b"in b\n"}, tmp_path)
    warns: list[str] = []
    assert [r.run for r in catalog.runs(a.store, warn=warns.append)] == ["in-a"]
    assert warns == []  # created fresh: nothing to warn about
    assert [r.run for r in catalog.runs(b.store, warn=warns.append)] == ["in-b"]
    assert len(warns) == 1 and f"a catalog of another store ({a.store.url!r})" in warns[0]
    assert [r.run for r in catalog.runs(b.store, warn=warns.append)] == ["in-b"] and len(warns) == 1


def test_a_store_replaced_under_the_same_url_is_reindexed(local: Ledger, tmp_path: Path) -> None:
    sealed_run(local, "old", {"x.txt": b"old\n"}, tmp_path)
    sealed_run(local, "old2", {"x.txt": b"old2\n"}, tmp_path)
    assert [r.run for r in catalog.runs(local.store)] == ["old", "old2"]
    shutil.rmtree(tmp_path / "store")
    local = Ledger.open(str(tmp_path / "store"))  # the same URL, a new store
    local.init()
    sealed_run(local, "new", {"x.txt": b"new\n"}, tmp_path)
    warns: list[str] = []
    assert [r.run for r in catalog.runs(local.store, warn=warns.append)] == ["new"]
    assert len(warns) == 1 and "the store has no commit slot 1" in warns[0] and "rebuilt" in warns[0]
    sealed_run(local, "new2", {"x.txt": b"new2\n"}, tmp_path)
    shutil.rmtree(tmp_path / "store")
    local = Ledger.open(str(tmp_path / "store"))  # the same URL, a new store
    local.init()
    sealed_run(local, "newer", {"x.txt": b"newer\n"}, tmp_path)
    sealed_run(local, "newer2", {"x.txt": b"newer2\n"}, tmp_path)
    warns.clear()
    assert [r.run for r in catalog.runs(local.store, warn=warns.append)] == ["newer", "newer2"]
    assert len(warns) == 1 and "commit slot 0 holds" in warns[0] and "a different or rebuilt store" in warns[0]


def test_a_damaged_tree_in_the_store_lists_the_run_without_items(local: Ledger, tmp_path: Path) -> None:
    digest = sealed_run(local, "r1", {f"f{i}.txt": f"{i}\n".encode() for i in range(20)}, tmp_path)
    root = read_slot(local.store, 0).body.root.hex()
    node_packs = [p for p in (tmp_path / "store" / "packs").glob("*.pack") if p.name.startswith(root[:28])]
    assert len(node_packs) == 1
    raw = bytearray(node_packs[0].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    node_packs[0].chmod(0o644)
    node_packs[0].write_bytes(bytes(raw))
    warns: list[str] = []
    got = by_run(local.store, warn=warns.append)["r1"]
    assert (got.status, got.commit, got.count) == ("sealed", digest, 20)
    assert len(warns) == 1 and warns[0].startswith("catalog: run r1 (#0): items not indexed: tree node b3:")
    assert catalog.find_name(local.store, "*") == []
    assert any(p.startswith("run r1 (#0): 0 item row(s), the commit says 20") for p in catalog.check(local.store))


# --- concurrency -----------------------------------------------------------------------------------------------------

ROUNDS = 4


def _worker(url: str, idx: int, barrier: Any, out: Any) -> None:
    """One process: wait for the other, then add to its own run and query, ROUNDS times."""
    try:
        lg = Ledger.open(url)
        warns: list[str] = []
        counts, seen = [], []
        barrier.wait(timeout=120)
        for k in range(ROUNDS):
            lg.record(f"w{idx}", "json", {"worker": idx, "round": k})
            got = {r.run: r for r in catalog.runs(lg.store, warn=warns.append)}
            counts.append(got[f"w{idx}"].count)
            seen.append(sorted(r for r, row in got.items() if row.status == "sealed"))
            found = catalog.find_name(lg.store, "s*/*", warn=warns.append)
            assert len(found) == 2 * 120
        out.put((idx, counts, seen, warns, None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        out.put((idx, [], [], [], f"{type(exc).__name__}: {exc}"))


def test_two_processes_querying_at_once_do_not_corrupt_it(lg: Ledger, tmp_path: Path) -> None:
    for s in ("s0", "s1"):
        sealed_run(lg, s, {f"{s}/{i:03d}.txt": f"{s} {i}\n".encode() for i in range(120)}, tmp_path)
    path = catalog.catalog_path(lg.store)
    assert not os.path.exists(path)  # both processes find no catalog: they race to create and fill it
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(lg.store.url, i, barrier, out)) for i in range(2)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for idx, counts, seen, warns, error in results:
        assert error is None, f"worker {idx}: {error}"
        assert counts == list(range(1, ROUNDS + 1))  # each query saw every add that finished before it
        assert seen == [["s0", "s1"]] * ROUNDS
        assert warns == []
    final = by_run(lg.store)
    assert [(r.run, r.status, r.count) for r in final.values()] == [
        ("s0", "sealed", 120), ("s1", "sealed", 120), ("w0", "open", ROUNDS), ("w1", "open", ROUNDS)]
    assert rows(lg.store, "PRAGMA integrity_check") == [("ok",)]
    assert rows(lg.store, "SELECT count(*) FROM items") == [(240,)]
    assert catalog.check(lg.store) == []


# --- errors are the project's ----------------------------------------------------------------------------------------

def test_sqlite_errors_map_to_the_project_errors() -> None:
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = 5  # type: ignore[attr-defined]
    err = catalog._sqlite_error(busy, "/x/c.sqlite")
    assert isinstance(err, StorageError) and err.exit_code == 5 and "busy" in str(err)
    cant = sqlite3.OperationalError("unable to open database file")
    cant.sqlite_errorcode = 14  # type: ignore[attr-defined]
    err = catalog._sqlite_error(cant, "/x/c.sqlite")
    assert isinstance(err, StorageError) and str(err) == "catalog /x/c.sqlite: unable to open database file"
    notadb = sqlite3.DatabaseError("file is not a database")
    notadb.sqlite_errorcode = 26  # type: ignore[attr-defined]
    assert isinstance(catalog._sqlite_error(notadb, "/x/c.sqlite"), catalog._Damaged)
    assert not isinstance(catalog._Damaged("x"), LedgerError)  # internal: always turned into a rebuild
