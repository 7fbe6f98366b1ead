"""The storage contract: one suite, run unchanged against every backend.

``StoreContract`` holds every test of the interface in ``ledger.storage.base``. A backend joins by subclassing it
and implementing ``new_store`` (a fresh, created, empty store); an S3 backend will be one more subclass. Tests that
depend on a real filesystem (several processes, what a reader on disk can see) live in ``TestLocalStore`` only.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import Corrupt, NotFound, StorageError
from ledger.layout import slot_key, slot_seq
from ledger.storage import LocalStore, MemoryStore, Store

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024

INVALID_KEYS = ["..", "/abs", "", "a//b", ".", "../a", "a/../b", "a/./b", "a/", "/", "a\\b", "a\x00b", "a b",
                ".hidden", "x" * 1025]


def chunk(i: int, size: int = MiB) -> bytes:
    """Deterministic, incompressible test data: chunk ``i`` of a large object."""
    return blake3.blake3(i.to_bytes(8, "big")).digest(length=size)


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(0..n-1)`` on n threads released together by a barrier; the results in thread order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class StoreContract:
    """The contract every backend passes. Subclasses implement :meth:`new_store`.

    Not part of the contract (and so never tested here): a key that is also a path prefix of another key, such as
    ``a`` and ``a/b``. A filesystem cannot hold both, and the store layout (ledger.layout) never makes such pairs.
    """

    # A 64 MiB object may be held in memory once (an in-memory backend must), never twice.
    large_object_peak_limit = 64 * MiB + 16 * MiB

    def new_store(self, where: Path) -> Store:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return self.new_store(tmp_path)

    def keys(self, store: Store, prefix: str = "", start_after: str | None = None) -> list[str]:
        out = list(store.list(prefix, start_after))
        assert all(isinstance(k, str) for k in out)
        return out

    # --- conditional writes -----------------------------------------------------------------------------------

    def test_put_if_absent_creates_once_and_never_overwrites(self, store: Store) -> None:
        assert store.put_if_absent("objects/ab/one", b"first") is True
        assert store.put_if_absent("objects/ab/one", b"second") is False
        assert store.put_if_absent("objects/ab/one", b"first") is False
        got = store.get("objects/ab/one")
        assert got == b"first" and isinstance(got, bytes)
        assert store.size("objects/ab/one") == 5 and store.exists("objects/ab/one")
        assert store.put_if_absent("empty", b"") is True
        assert store.get("empty") == b"" and store.size("empty") == 0 and store.exists("empty")

    def test_compare_and_swap(self, store: Store) -> None:
        k = "runs/r1/sealing"
        assert store.compare_and_swap(k, b"anything", b"x") is False  # expected bytes, but absent
        assert not store.exists(k)
        assert store.compare_and_swap(k, None, b"v1") is True  # expected absent, absent
        assert store.compare_and_swap(k, None, b"v2") is False  # expected absent, present
        assert store.compare_and_swap(k, b"v1", b"v2") is True  # current
        assert store.compare_and_swap(k, b"v1", b"v3") is False  # stale
        assert store.compare_and_swap(k, b"v", b"v3") is False  # a prefix of the current value is not it
        assert store.get(k) == b"v2"
        assert store.compare_and_swap(k, b"v2", b"") is True
        assert store.get(k) == b""
        assert store.put_if_absent(k, b"again") is False
        store.put_if_absent("plain", b"p")
        assert store.compare_and_swap("plain", b"p", b"q") is True and store.get("plain") == b"q"

    # --- reads ------------------------------------------------------------------------------------------------

    def test_missing_keys(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.get("nope")
        with pytest.raises(NotFound):
            store.get_range("nope", 0, 1)
        with pytest.raises(NotFound):
            store.open_read("nope")
        with pytest.raises(NotFound):
            store.range_reader("nope").read_at(0, 1)
        with pytest.raises(NotFound):
            store.get("a/b/c/nope")
        assert store.size("nope") is None and not store.exists("nope")
        store.put_if_absent("dir/x", b"1")
        with pytest.raises(NotFound):
            store.get("dir/y")
        # below an object, and a mere prefix of one, are not objects either
        for key in ("dir/x/y", "dir"):
            assert store.size(key) is None and not store.exists(key)
            with pytest.raises(NotFound):
                store.get(key)
            with pytest.raises(NotFound):
                store.get_range(key, 0, 0)
            with pytest.raises(NotFound):
                store.open_read(key)
            with pytest.raises(NotFound):
                store.range_reader(key).read_at(0, 0)
            store.delete(key)  # absent: nothing to do
        assert store.get("dir/x") == b"1"

    def test_get_range(self, store: Store) -> None:
        data = bytes(range(256)) * 4
        store.put_if_absent("packs/p.pack", data)
        for off, n in [(0, 0), (0, 1), (0, len(data)), (100, 50), (len(data) - 1, 1), (len(data), 0), (513, 511)]:
            assert store.get_range("packs/p.pack", off, n) == data[off:off + n]
        for off, n in [(0, len(data) + 1), (len(data) - 1, 2), (len(data), 1), (len(data) + 10, 1)]:
            with pytest.raises(Corrupt, match="packs/p.pack"):
                store.get_range("packs/p.pack", off, n)

    def test_range_reader(self, store: Store) -> None:
        data = b"0123456789" * 10
        store.put_if_absent("packs/q.pack", data)
        reader = store.range_reader("packs/q.pack")
        try:
            assert reader.read_at(0, 10) == data[:10]
            assert reader.read_at(95, 5) == data[95:]
            assert reader.read_at(37, 0) == b""
            assert reader.read_at(3, 4) == b"3456"
            with pytest.raises(Corrupt, match="packs/q.pack"):
                reader.read_at(95, 6)
            assert reader.read_at(50, 2) == b"01"  # still usable after a short read
        finally:
            reader.close()

    def test_open_read_streams(self, store: Store) -> None:
        data = chunk(1, 300_000)
        store.put_if_absent("big", data)
        with store.open_read("big") as f:
            parts = list(iter(lambda: f.read(65536), b""))
        assert b"".join(parts) == data and len(parts) == 5

    # --- listing ----------------------------------------------------------------------------------------------

    def test_list_prefixes_and_start_after(self, store: Store) -> None:
        keys = ["a/b/c", "a/b/d", "a/bc", "a/c", "ab", "b", "x/a-b", "x/a.b", "x/a/b", "x/a0", "x/aB", "x/a_b",
                "x/ab", "x/A"]
        for k in random.Random(3).sample(keys, len(keys)):
            assert store.put_if_absent(k, k.encode())
        byte_order = sorted(keys, key=lambda k: k.encode())
        assert self.keys(store) == byte_order
        assert self.keys(store, "a/") == ["a/b/c", "a/b/d", "a/bc", "a/c"]
        assert self.keys(store, "a/b") == ["a/b/c", "a/b/d", "a/bc"]  # a prefix may end inside a segment
        assert self.keys(store, "a/b/") == ["a/b/c", "a/b/d"]
        assert self.keys(store, "a") == ["a/b/c", "a/b/d", "a/bc", "a/c", "ab"]
        assert self.keys(store, "x/") == ["x/A", "x/a-b", "x/a.b", "x/a/b", "x/a0", "x/aB", "x/a_b", "x/ab"]
        assert self.keys(store, "zz/") == [] and self.keys(store, "a/b/c/") == []
        assert self.keys(store, "a/", start_after="a/b/d") == ["a/bc", "a/c"]
        assert self.keys(store, "a/", start_after="a/b/c0") == ["a/b/d", "a/bc", "a/c"]  # need not be a key
        assert self.keys(store, "a/", start_after="a/c") == []
        assert self.keys(store, "", start_after="b") == [k for k in byte_order if k > "b"]
        assert self.keys(store, "x/", start_after="a") == self.keys(store, "x/")

    def test_list_zero_padded_slots_in_numeric_order(self, store: Store) -> None:
        seqs = [0, 1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 12345, 2**40]
        for s in random.Random(5).sample(seqs, len(seqs)):
            assert store.put_if_absent(slot_key(s), str(s).encode())
        store.put_if_absent("chainx", b"not a slot")
        listed = self.keys(store, "chain/")
        assert [slot_seq(k) for k in listed] == sorted(seqs)
        assert [slot_seq(k) for k in self.keys(store, "chain/", start_after=slot_key(10))] == [
            s for s in sorted(seqs) if s > 10]

    def test_delete_is_idempotent(self, store: Store) -> None:
        store.delete("never/was")
        store.put_if_absent("d/k", b"1")
        store.put_if_absent("d/keep", b"2")
        store.delete("d/k")
        store.delete("d/k")
        with pytest.raises(NotFound):
            store.get("d/k")
        assert self.keys(store) == ["d/keep"]
        assert store.put_if_absent("d/k", b"3") is True and store.get("d/k") == b"3"

    # --- streaming uploads ------------------------------------------------------------------------------------

    def test_upload_commit_if_absent(self, store: Store) -> None:
        up = store.upload()
        up.write(b"hello ")
        up.write(memoryview(b"streamed world"))
        up.write(b"")
        assert not store.exists("packs/u.pack")  # nothing visible before the commit
        assert up.commit_if_absent("packs/u.pack") is True
        assert store.get("packs/u.pack") == b"hello streamed world"
        with store.upload() as up2:
            up2.write(b"other")
            assert up2.commit_if_absent("packs/u.pack") is False
        assert store.get("packs/u.pack") == b"hello streamed world"
        assert self.keys(store) == ["packs/u.pack"]

    def test_upload_abort_leaves_nothing(self, store: Store) -> None:
        up = store.upload()
        up.write(b"x" * 1000)
        up.abort()
        up.abort()  # idempotent
        with store.upload() as up2:  # leaving the block without a commit aborts
            up2.write(b"y" * 1000)
        assert self.keys(store) == []
        with store.upload() as up3:
            assert up3.commit_if_absent("empty-upload") is True
        assert store.get("empty-upload") == b""

    def test_large_object_is_streamed_and_held_at_most_once(self, store: Store) -> None:
        n = 64
        tracemalloc.start()
        try:
            h = blake3.blake3()
            up = store.upload()
            for i in range(n):
                c = chunk(i)
                h.update(c)
                up.write(c)
            del c
            assert up.commit_if_absent("objects/big") is True
            assert store.size("objects/big") == n * MiB
            back = blake3.blake3()
            with store.open_read("objects/big") as f:
                for part in iter(lambda: f.read(MiB), b""):
                    back.update(part)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert back.digest() == h.digest()
        assert peak < self.large_object_peak_limit, f"peak {peak / MiB:.0f} MiB while streaming a {n} MiB object"
        for i in (0, 17, n - 1):
            assert store.get_range("objects/big", i * MiB + 5, 1000) == chunk(i)[5:1005]
        with pytest.raises(Corrupt, match="objects/big"):
            store.get_range("objects/big", n * MiB - 10, 11)

    # --- keys -------------------------------------------------------------------------------------------------

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=[repr(k)[:20] for k in INVALID_KEYS])
    def test_invalid_keys_are_refused(self, store: Store, key: str) -> None:
        calls: list[Callable[[], Any]] = [
            lambda: store.get(key), lambda: store.get_range(key, 0, 1), lambda: store.open_read(key),
            lambda: store.size(key), lambda: store.exists(key), lambda: store.put_if_absent(key, b"x"),
            lambda: store.compare_and_swap(key, None, b"x"), lambda: store.delete(key),
            lambda: store.range_reader(key).read_at(0, 1),
        ]
        for call in calls:
            with pytest.raises(StorageError):
                call()
        up = store.upload()
        up.write(b"data")
        with pytest.raises(StorageError):
            up.commit_if_absent(key)
        up.abort()
        assert self.keys(store) == []

    # --- races: a lost race is a result ------------------------------------------------------------------------

    def test_put_if_absent_race_has_exactly_one_winner(self, store: Store) -> None:
        n = 16
        for round_ in range(3):
            key = f"chain/{round_:020d}"
            won = race(n, lambda i, key=key: store.put_if_absent(key, f"thread-{i}".encode()))
            assert sorted(won) == [False] * (n - 1) + [True]
            assert store.get(key) == f"thread-{won.index(True)}".encode()

    def test_upload_race_has_exactly_one_winner(self, store: Store) -> None:
        n = 8

        def put(i: int) -> bool:
            up = store.upload()
            for _ in range(4):
                up.write(f"upload-{i};".encode())
            return up.commit_if_absent("packs/raced.pack")

        won = race(n, put)
        assert won.count(True) == 1
        assert store.get("packs/raced.pack") == f"upload-{won.index(True)};".encode() * 4

    def test_compare_and_swap_race_loses_nothing(self, store: Store) -> None:
        n, per_thread = 8, 25
        won = race(n, lambda i: store.compare_and_swap("counter", None, b"0"))
        assert won.count(True) == 1

        def increment(i: int) -> int:
            lost = 0
            for _ in range(per_thread):
                while True:
                    cur = store.get("counter")
                    if store.compare_and_swap("counter", cur, str(int(cur) + 1).encode()):
                        break
                    lost += 1
            return lost

        race(n, increment)
        assert int(store.get("counter")) == n * per_thread

    # --- against a model --------------------------------------------------------------------------------------

    # One contract method runs on every backend class (differing executors); each example makes its own store,
    # and tmp_path is only used as a parent directory, so neither check applies.
    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors])
    @given(ops=st.lists(st.tuples(st.sampled_from(["put", "cas", "cas-stale", "delete", "get", "upload"]),
                                  st.sampled_from(["a", "b/c", "b/d", "e/x/y", "chain/00000000000000000001"]),
                                  st.binary(max_size=8)), max_size=25))
    def test_behaves_like_a_dict(self, tmp_path: Path, ops: list[tuple[str, str, bytes]]) -> None:
        store = self.new_store(tmp_path / uuid.uuid4().hex)
        model: dict[str, bytes] = {}
        for op, key, data in ops:
            if op == "put":
                assert store.put_if_absent(key, data) is (key not in model)
                model.setdefault(key, data)
            elif op == "upload":
                up = store.upload()
                up.write(data)
                assert up.commit_if_absent(key) is (key not in model)
                model.setdefault(key, data)
            elif op == "cas":
                assert store.compare_and_swap(key, model.get(key), data) is True
                model[key] = data
            elif op == "cas-stale":
                stale = None if key in model else data
                assert store.compare_and_swap(key, stale, b"never") is False
            elif op == "delete":
                store.delete(key)
                model.pop(key, None)
            elif key in model:
                assert store.get(key) == model[key]
            else:
                with pytest.raises(NotFound):
                    store.get(key)
        assert self.keys(store) == sorted(model)
        assert {k: store.get(k) for k in model} == model


class TestMemoryStore(StoreContract):
    def new_store(self, where: Path) -> Store:
        store = MemoryStore()
        store.create()
        return store


# --- the local store: everything above, plus what only a filesystem shared by processes can show ------------------

WORKER = r"""
import sys
from ledger.storage import LocalStore
root, key, payload, mode = sys.argv[1:5]
store = LocalStore(root)
print("ready", flush=True)
sys.stdin.read()  # released when the parent closes stdin, after every worker is ready
if mode == "put":
    print("won" if store.put_if_absent(key, payload.encode()) else "lost", flush=True)
elif mode == "cas":
    print("won" if store.compare_and_swap(key, None, payload.encode()) else "lost", flush=True)
else:  # "incr": add 1 to a counter 20 times with a compare-and-swap retry loop
    for _ in range(20):
        while True:
            cur = store.get(key)
            if store.compare_and_swap(key, cur, str(int(cur) + 1).encode()):
                break
    print("done", flush=True)
"""

READER = r"""
import sys
import blake3
from ledger.errors import NotFound
from ledger.storage import LocalStore
root, key = sys.argv[1], sys.argv[2]
wanted = {bytes.fromhex(d) for d in sys.argv[3].split(",")}
final = bytes.fromhex(sys.argv[4])
store = LocalStore(root)
polls, announced, seen = 0, False, set()
while True:
    polls += 1
    try:
        data = store.get(key)
    except NotFound:
        data = None
    d = None if data is None else blake3.blake3(data).digest()
    if d is not None and d not in wanted:
        print(f"partial: {len(data)} bytes on poll {polls}", flush=True)
        sys.exit(1)
    seen.add(d)
    if not announced:
        print("polling", flush=True)
        announced = True
    if d == final:
        break
print(f"ok {polls} polls, saw {len(seen)} states", flush=True)
"""


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)


def _finish(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    out = p.stdout.read()
    assert p.wait(timeout=120) == 0, out
    return out.strip()


class TestLocalStore(StoreContract):
    large_object_peak_limit = 16 * MiB  # streamed to disk: never in memory

    def new_store(self, where: Path) -> Store:
        store = LocalStore(str(where / "store"))
        store.create()
        return store

    def tmp_files(self, store: Store) -> list[str]:
        assert isinstance(store, LocalStore)
        return sorted(os.listdir(os.path.join(store.root, "tmp")))

    def run_processes(self, store: Store, n: int, key: str, mode: str) -> list[str]:
        assert isinstance(store, LocalStore)
        procs = [_spawn(WORKER, store.root, key, f"process-{i}", mode) for i in range(n)]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        return [_finish(p) for p in procs]

    def test_put_if_absent_race_between_processes(self, store: Store) -> None:
        out = self.run_processes(store, 8, "chain/00000000000000000007", "put")
        assert sorted(out) == ["lost"] * 7 + ["won"]
        assert store.get("chain/00000000000000000007") == f"process-{out.index('won')}".encode()
        assert self.tmp_files(store) == []  # losers cleaned up their temporary files

    def test_compare_and_swap_race_between_processes(self, store: Store) -> None:
        out = self.run_processes(store, 6, "runs/r/sealing", "cas")
        assert sorted(out) == ["lost"] * 5 + ["won"]
        assert store.get("runs/r/sealing") == f"process-{out.index('won')}".encode()
        store.put_if_absent("counter", b"0")
        assert self.run_processes(store, 4, "counter", "incr") == ["done"] * 4
        assert store.get("counter") == b"80"

    def test_no_partial_object_is_ever_visible(self, store: Store) -> None:
        """A reader process polling the final name sees nothing or the whole object, never a prefix."""
        assert isinstance(store, LocalStore)
        parts = [chunk(i) for i in range(32)]
        big = b"".join(parts)
        digest = blake3.blake3(big).digest().hex()
        reader = _spawn(READER, store.root, "objects/published", digest, digest)
        assert reader.stdout is not None and reader.stdout.readline().strip() == "polling"
        up = store.upload()
        for p in parts:
            up.write(p)
        assert up.commit_if_absent("objects/published")
        out = _finish(reader)
        assert out.startswith("ok ") and "saw 2 states" in out

    def test_no_torn_read_while_compare_and_swap_replaces(self, store: Store) -> None:
        assert isinstance(store, LocalStore)
        old, new = chunk(100, 16 * MiB), chunk(101, 16 * MiB)
        store.put_if_absent("runs/r/state", old)
        digests = [blake3.blake3(x).digest().hex() for x in (old, new)]
        reader = _spawn(READER, store.root, "runs/r/state", ",".join(digests), digests[1])
        assert reader.stdout is not None and reader.stdout.readline().strip() == "polling"
        assert store.compare_and_swap("runs/r/state", old, new)
        assert _finish(reader).startswith("ok ")

    def test_tmp_is_never_listed(self, store: Store) -> None:
        up = store.upload()
        up.write(b"in flight")
        store.compare_and_swap("k", None, b"v")  # leaves its lock file under tmp/
        store.put_if_absent("tmpx/y", b"not reserved")
        with store.lease("seal-r1"):
            assert len(self.tmp_files(store)) == 3, "expected in-flight files under tmp/"
            assert self.keys(store) == ["k", "tmpx/y"]
            assert self.keys(store, "t") == ["tmpx/y"]
            assert self.keys(store, "tmp") == ["tmpx/y"]
            assert self.keys(store, "tmp/") == [] and self.keys(store, "tmp/cas") == []
        up.abort()
        assert not [f for f in self.tmp_files(store) if not f.startswith(("cas-", "lease-"))]

    @pytest.mark.parametrize("key", ["tmp", "tmp/x", "tmp/cas-k"])
    def test_tmp_keys_are_reserved(self, store: Store, key: str) -> None:
        store.compare_and_swap("k", None, b"v")
        for call in (lambda: store.put_if_absent(key, b"x"), lambda: store.get(key), lambda: store.size(key),
                     lambda: store.compare_and_swap(key, None, b"x"), lambda: store.delete(key)):
            with pytest.raises(StorageError, match="reserved"):
                call()
        assert store.compare_and_swap("k", b"v", b"w") and store.get("k") == b"w"

    def test_abort_and_lost_races_leave_no_temporary_files(self, store: Store) -> None:
        up = store.upload()
        up.write(b"x" * 10_000)
        up.abort()
        store.put_if_absent("k", b"1")
        assert store.put_if_absent("k", b"2") is False
        assert self.tmp_files(store) == []

    def test_objects_are_plain_files_at_their_key(self, store: Store) -> None:
        assert isinstance(store, LocalStore)
        store.put_if_absent("objects/ab/cdef", b"content")
        path = store.local_path("objects/ab/cdef")
        assert path is not None and Path(path).read_bytes() == b"content"
        assert Path(path) == Path(store.root, "objects", "ab", "cdef")


class TestS3Store(StoreContract):
    """The same contract against a real S3 API server (moto's, on loopback, or LEDGER_TEST_S3_ENDPOINT)."""

    large_object_peak_limit = 48 * MiB  # multipart: a few 8 MiB parts in flight, never the whole object

    @pytest.fixture(autouse=True)
    def _server(self, s3: Any) -> None:
        self.s3 = s3

    def new_store(self, where: Path) -> Store:
        from ledger.storage.s3 import S3Store

        store = S3Store(self.s3.url("contract"))
        store.create()
        return store


def test_every_backend_runs_the_whole_contract() -> None:
    """Guard against a contract test being shadowed or a backend class dropping out of collection."""
    contract = {name for name in vars(StoreContract) if name.startswith("test_")}
    assert len(contract) >= 15
    for backend in (TestMemoryStore, TestLocalStore, TestS3Store):
        assert issubclass(backend, StoreContract)
        assert not contract & set(vars(backend)), "a backend must not replace a contract test"
