"""The run catalog: a local SQLite index of one store's runs, commits, items and offsets ranges (spec/catalog.md).

The catalog is derived data, a cache. It lives outside the store (``catalog_path``), is brought up to date from the
store before every query (only what the store gained since the last one is read: new chain slots, new staged
batches), and can be rebuilt from scratch and checked against the store at any time (``reindex``, ``check``).
Nothing trusts it: ``verify`` never reads it, ``add`` and ``seal`` never write it (a catalog problem can never fail
or slow a seal). A damaged catalog -- not a database, a schema this version does not know, another store's, or a
store whose chain no longer matches it -- is rebuilt from the store with one warning.

Layering: above storage, the chain, the tree and staging (read-only), below the CLI. sqlite-utils is imported only
when a catalog is opened, and only this module imports sqlite3, so only the catalog's commands pay for either.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import blake3
import msgpack

from .chain import read_slot, slot_numbers
from .closure import existing_node_packs, require_store
from .digests import Digest
from .errors import CheckFailed, DecodeError, LedgerError, NotFound, Refused, StorageError, UsageError
from .evidence import staged_items
from .layout import batch_key, batch_seq
from .names import KINDS, is_run_id
from .objects import Batch, ItemEntry, SignedCommit, node_id
from .packs import ContentIndex
from .storage import Store
from .tree import TreeBuilder, _entries_root, _leaf

if TYPE_CHECKING:
    from sqlite_utils import Database

SCHEMA_VERSION = "1"
ENV_PATH = "LEDGER_CATALOG"
BUSY_TIMEOUT_S = 300.0  # how long a catch-up waits for another process's catch-up to commit
LOCK_TIMEOUT_S = 300.0  # how long a rebuild waits for other processes to close the catalog
_MIN_PREFIX = 8
_HEXDIGITS = frozenset("0123456789abcdef")

Warn = Callable[[str], None]
T = TypeVar("T")

# sqlite3 primary result codes (https://sqlite.org/rescode.html): these mean the file is not (or no longer) a
# catalog this version wrote -- rebuild it. Any other failure (busy, locked, cannot open, read-only, I/O, full) is a
# storage error: rebuilding would not help.
_DAMAGED_CODES = frozenset({1, 11, 17, 19, 20, 24, 25, 26})  # ERROR, CORRUPT, SCHEMA, CONSTRAINT, MISMATCH, FORMAT,
#                                                               RANGE, NOTADB
_BUSY_CODES = frozenset({5, 6})  # BUSY, LOCKED


# --- results ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunRow:
    """One run as the catalog knows it. Open runs have no commit: ``seq``, ``commit``, the roots, the times, the key
    and the policy are None, ``count``/``bytes`` are what is staged so far (names bound, their content sizes)."""

    run: str
    status: str  # "open" | "sealed"
    seq: int | None
    commit: str | None  # lowercase hex
    root: str | None
    items_root: str | None
    count: int
    bytes: int
    sealed_at: str | None  # ISO 8601 UTC, milliseconds, "Z"
    sealed_ms: int | None
    key_id: str | None
    policy: str | None

    def to_json(self) -> dict[str, object]:
        return {"run": self.run, "status": self.status, "seq": self.seq, "commit": self.commit, "root": self.root,
                "items_root": self.items_root, "count": self.count, "bytes": self.bytes,
                "sealed_at": self.sealed_at, "sealed_ms": self.sealed_ms, "key_id": self.key_id,
                "policy": self.policy}


@dataclass(frozen=True)
class FoundRow:
    """An item of a sealed run that a ``find`` matched."""

    run: str
    seq: int
    name: str
    kind: str
    size: int
    blake3: str  # lowercase hex of the content's BLAKE3 (= b3sum)

    def to_json(self) -> dict[str, object]:
        return {"run": self.run, "seq": self.seq, "name": self.name, "kind": self.kind, "size": self.size,
                "blake3": self.blake3}


@dataclass(frozen=True)
class RefreshResult:
    """What one catch-up did: the slot it indexed up to (-1: none), and what it read that was new."""

    path: str
    head_seq: int
    new_commits: int
    new_batches: int
    rebuilt: bool = False

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "head_seq": self.head_seq, "new_commits": self.new_commits,
                "new_batches": self.new_batches, "rebuilt": self.rebuilt}


@dataclass
class ReindexResult:
    """A rebuilt catalog and the outcome of checking it against the store (``problems`` empty: it holds)."""

    path: str
    head_seq: int
    commits: int
    sealed: int
    open: int
    items: int
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "ok": self.ok, "head_seq": self.head_seq, "commits": self.commits,
                "sealed": self.sealed, "open": self.open, "items": self.items, "seconds": round(self.seconds, 3),
                "problems": list(self.problems)}


# --- location --------------------------------------------------------------------------------------------------------

def catalog_path(store: Store) -> str:
    """``$LEDGER_CATALOG`` if set, else ``${XDG_CACHE_HOME:-~/.cache}/ledger/catalog-<16 hex>.sqlite``, the hex being
    the start of BLAKE3 of the store's URL (``file:///abs/path`` or ``s3://bucket/prefix``): one catalog per store,
    never inside it."""
    explicit = os.environ.get(ENV_PATH)
    if explicit:
        return os.path.abspath(explicit)
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: unset, empty or relative -> the default
        base = os.path.join(os.path.expanduser("~"), ".cache")
    tag = blake3.blake3(store.url.encode("utf-8")).hexdigest()[:16]
    return os.path.join(base, "ledger", f"catalog-{tag}.sqlite")


# --- errors ----------------------------------------------------------------------------------------------------------

class _Damaged(Exception):
    """The catalog file cannot be used as it is: rebuild it (the reason goes into the one warning line)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _sqlite_error(exc: sqlite3.Error, path: str) -> Exception:
    """A sqlite3 failure as what it means here: damage (rebuild) or a storage error (exit 5)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc) or type(exc).__name__
    if primary in _BUSY_CODES:
        return StorageError(f"catalog {path}: busy: another ledger process held it for over "
                            f"{BUSY_TIMEOUT_S:.0f} s ({text})")
    if primary in _DAMAGED_CODES or (primary is None and isinstance(exc, sqlite3.DatabaseError)
                                     and not isinstance(exc, sqlite3.OperationalError)):
        return _Damaged(text)
    return StorageError(f"catalog {path}: {text}")


def _os_error(path: str, what: str, exc: OSError) -> StorageError:
    return StorageError(f"catalog {path}: {what} ({exc.strerror or exc})")


# --- the file, its lock, its schema ----------------------------------------------------------------------------------

class _FileLock:
    """An ``flock`` on ``PATH.lock`` beside the catalog: every process using the catalog holds it shared; replacing
    the file (a rebuild) needs it exclusive, so a file is never swapped under an open connection of ours."""

    def __init__(self, path: str) -> None:
        self.path = path + ".lock"
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _os_error(path, "cannot create its lock file", exc) from None

    def _take(self, mode: int) -> None:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        delay = 0.005
        while True:
            try:
                fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError(f"catalog {self.path[:-5]}: busy: another ledger process kept it open for "
                                       f"over {LOCK_TIMEOUT_S:.0f} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def shared(self) -> None:
        self._take(fcntl.LOCK_SH)

    def exclusive(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)  # an upgrade is never atomic: say so, and wait like anyone else
        self._take(fcntl.LOCK_EX)

    def close(self) -> None:
        os.close(self.fd)  # releases the lock


def _ident(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _os_error(path, "cannot read", exc) from None
    return st.st_dev, st.st_ino


def _database(conn: sqlite3.Connection) -> Database:
    from sqlite_utils import Database  # imported only by the catalog's commands

    return Database(conn, execute_plugins=False)


def _connect(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        # A cache: WAL with synchronous=NORMAL can lose the last catch-up on power loss, never consistency.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")  # up to 64 MiB: index updates of big runs stay in memory
    except sqlite3.Error as exc:
        err = _sqlite_error(exc, path)
        raise err from None
    return conn


_ITEM_INDEXES = (("items_blake3", ["blake3"]), ("items_name", ["name"]))


def _create_item_indexes(db: Database) -> None:
    for name, columns in _ITEM_INDEXES:
        db.table("items").create_index(columns, index_name=name, if_not_exists=True)


def _create_schema(db: Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("runs").create(
        {"run": str, "status": str, "seq": int, "commit": str, "root": str, "items_root": str, "count": int,
         "bytes": int, "sealed_at": str, "sealed_ms": int, "key_id": str, "policy": str},
        pk="run", not_null={"status", "count", "bytes"})
    db.table("runs").create_index(["seq"], index_name="runs_seq")
    db.table("commits").create(
        {"seq": int, "commit": str, "run": str, "parent": str, "time_ms": int, "key_id": str, "root": str,
         "count": int},
        pk="seq", not_null={"commit", "run", "time_ms", "key_id", "root", "count"})
    db.table("commits").create_index(["commit"], index_name="commits_commit", unique=True)
    db.table("items").create({"run": str, "name": str, "kind": str, "size": int, "blake3": str},
                             pk=("run", "name"), not_null={"kind", "size", "blake3"})
    _create_item_indexes(db)
    db.table("kinds").create({"run": str, "kind": str, "count": int}, pk=("run", "kind"), not_null={"count"})
    db.table("kinds").create_index(["kind"], index_name="kinds_kind")
    db.table("offsets").create(
        {"run": str, "grp": str, "topic": str, "partition": int, "start": int, "end": int},
        pk=("run", "grp", "topic", "partition"), not_null={"start", "end"})
    db.table("offsets").create_index(["topic", "partition"], index_name="offsets_topic_partition")
    db.table("batches").create({"run": str, "key": str, "items": int}, pk="key", not_null={"run", "items"})
    db.table("batches").create_index(["run"], index_name="batches_run")
    db.table("staged").create({"run": str, "name": str, "kind": str, "size": int, "blake3": str},
                              pk=("run", "name"), not_null={"kind", "size", "blake3"})


def _create(path: str, store_url: str) -> None:
    """A new, empty catalog for ``store_url`` at ``path``: built in a temporary file, then renamed over the path (the
    caller holds the lock exclusively, so no connection of ours has the old file open)."""
    tmp = f"{path}.new-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        conn = _connect(tmp)
        try:
            db = _database(conn)
            conn.execute("BEGIN")
            _create_schema(db)
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                ("schema_version", SCHEMA_VERSION), ("store_url", store_url), ("head_seq", "-1"),
                ("updated_at", _now_iso())])
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: every later connection uses the WAL
        except sqlite3.Error as exc:
            err = _sqlite_error(exc, path)
            raise (err if isinstance(err, LedgerError) else StorageError(f"catalog {path}: {err}")) from None
        finally:
            conn.close()
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
        os.replace(tmp, path)
    except OSError as exc:
        raise _os_error(path, "cannot write", exc) from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp + suffix)


def _open_valid(path: str, store_url: str) -> sqlite3.Connection:
    """A connection to the catalog at ``path``, checked to be a catalog of this schema for this store."""
    conn = _connect(path)
    try:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, path) from None
        if "meta" not in tables:
            raise _Damaged("not a ledger catalog (no meta table)")
        meta = _meta(conn, path)
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise _Damaged(f"schema version {version!r}, this ledger reads {SCHEMA_VERSION!r}")
        missing = sorted({"runs", "commits", "items", "kinds", "offsets", "batches", "staged"} - tables)
        if missing:
            raise _Damaged(f"table {missing[0]} is missing")
        if meta.get("store_url") != store_url:
            raise _Damaged(f"a catalog of another store ({meta.get('store_url')!r})")
        head = meta.get("head_seq", "")
        if not re.fullmatch(r"-1|0|[1-9][0-9]{0,18}", head):
            raise _Damaged(f"meta head_seq {head!r} is not a slot number")
        return conn
    except BaseException:
        conn.close()
        raise


def _meta(conn: sqlite3.Connection, path: str) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except sqlite3.Error as exc:
        raise _sqlite_error(exc, path) from None


def _now_iso() -> str:
    return _iso(int(time.time() * 1000))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- sessions: open, repair, catch up --------------------------------------------------------------------------------

def _prepare(store: Store) -> str:
    """The catalog path of an existing store, its directory created."""
    require_store(store)
    path = catalog_path(store)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise _os_error(path, "cannot create its directory", exc) from None
    return path


def _session(store: Store, warn: Warn | None, fn: Callable[[sqlite3.Connection, str], T],
             stats: list[RefreshResult] | None = None) -> T:
    """Run ``fn`` on a caught-up catalog of ``store``: created if missing, rebuilt (with one warning) if damaged."""
    path = _prepare(store)
    lock = _FileLock(path)
    try:
        lock.shared()
        rebuilt = False
        while True:
            ident = _ident(path)
            if ident is None:
                lock.exclusive()
                if _ident(path) is None:
                    _create(path, store.url)
                lock.shared()
                continue
            try:
                conn = _open_valid(path, store.url)
                try:
                    r = _catch_up(conn, store, path, warn)
                    if stats is not None:
                        stats.append(RefreshResult(path, r.head_seq, r.new_commits, r.new_batches, rebuilt))
                    return fn(conn, path)
                except sqlite3.Error as exc:
                    raise _sqlite_error(exc, path) from None
                finally:
                    conn.close()
            except _Damaged as damaged:
                if rebuilt:
                    raise StorageError(f"catalog {path}: still unusable after a rebuild: {damaged.reason}") from None
                lock.exclusive()
                if _ident(path) == ident:  # nobody rebuilt it meanwhile
                    _create(path, store.url)
                    rebuilt = True
                    if warn is not None:
                        warn(f"catalog {path}: {damaged.reason}; rebuilt from the store")
                lock.shared()
    finally:
        lock.close()


@dataclass
class _Known:
    head: int
    status: dict[str, str]  # run -> open | sealed
    batches: set[str]


def _known(conn: sqlite3.Connection, path: str) -> _Known:
    head = int(_meta(conn, path)["head_seq"])
    status = {str(r): str(s) for r, s in conn.execute("SELECT run, status FROM runs")}
    batches = {str(k) for (k,) in conn.execute("SELECT key FROM batches")}
    return _Known(head, status, batches)


def _listed_batches(store: Store) -> dict[str, list[str]]:
    """Every staged batch key in the store, by run (``runs/<run>/staged/<n>.batch``), in key order."""
    out: dict[str, list[str]] = {}
    for key in store.list("runs/"):
        parts = key.split("/")
        if len(parts) == 4 and parts[2] == "staged" and is_run_id(parts[1]) and batch_seq(key) is not None:
            out.setdefault(parts[1], []).append(key)
    return out


def _catch_up(conn: sqlite3.Connection, store: Store, path: str, warn: Warn | None) -> RefreshResult:
    """Index what the store gained since the last catch-up, in one transaction.

    The staging area is listed before the chain is read: a run sealed in between is then seen sealed (the chain
    wins), never lost. Reading happens before the write lock when there is nothing new (a query that finds the
    catalog current writes nothing); otherwise the write transaction is taken and the state re-read under it, so
    two processes catching up at once each index only what the other has not."""
    before = _known(conn, path)
    listed = _listed_batches(store)
    if before.head >= 0:
        _check_head(conn, store, before.head, path)
    new_slots = slot_numbers(store, before.head if before.head >= 0 else None)
    vanished = [r for r, s in before.status.items() if s == "open" and r not in listed]
    fresh = any(k not in before.batches for run, keys in listed.items()
                if before.status.get(run) != "sealed" for k in keys)
    if not new_slots and not vanished and not fresh:
        return RefreshResult(path, before.head, 0, 0)
    conn.execute("BEGIN IMMEDIATE")
    try:
        now = _known(conn, path)
        if now.head != before.head:
            new_slots = slot_numbers(store, now.head if now.head >= 0 else None)
        commits = _index_commits(conn, store, now, new_slots, warn)
        batches = _index_staging(conn, store, now, listed, warn)
        for run in vanished:  # no batch left and not sealed: the run is gone from the store
            if now.status.get(run) == "open":
                _forget_open(conn, run)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'head_seq'", (str(now.head),))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'updated_at'", (_now_iso(),))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return RefreshResult(path, now.head, commits, batches)


def _check_head(conn: sqlite3.Connection, store: Store, head: int, path: str) -> None:
    """The last slot indexed must still hold the commit indexed from it: if not, this is another (or a rebuilt)
    store under the same URL, and everything indexed is suspect. Hash links make checking the head enough."""
    row = conn.execute('SELECT "commit" FROM commits WHERE seq = ?', (head,)).fetchone()
    if row is None:
        raise _Damaged(f"meta head_seq is {head} but the catalog has no commit row for slot {head}")
    try:
        digest = read_slot(store, head).digest.hex()
    except NotFound:
        raise _Damaged(f"the store has no commit slot {head}, which the catalog indexed "
                       "(a different or rebuilt store)") from None
    if digest != row[0]:
        raise _Damaged(f"commit slot {head} holds b3:{digest[:16]} in the store, b3:{str(row[0])[:16]} in the "
                       "catalog (a different or rebuilt store)")


def _forget_open(conn: sqlite3.Connection, run: str) -> None:
    conn.execute("DELETE FROM staged WHERE run = ?", (run,))
    conn.execute("DELETE FROM batches WHERE run = ?", (run,))
    conn.execute("DELETE FROM runs WHERE run = ? AND status = 'open'", (run,))


def _index_commits(conn: sqlite3.Connection, store: Store, known: _Known, slots: list[int],
                   warn: Warn | None) -> int:
    commits: list[SignedCommit] = []
    for seq in slots:
        if seq != known.head + 1 + len(commits):
            raise DecodeError(f"chain: slot {seq} follows slot {known.head + len(commits)} (gap in the chain)")
        commit = read_slot(store, seq)
        if commit.body.seq != seq:
            raise DecodeError(f"chain: slot {seq} holds a commit numbered {commit.body.seq}")
        commits.append(commit)
    # Many new items against few indexed (a first build, a reindex, a huge run): building the item indexes after
    # the rows is twice as fast as updating them row by row.
    existing = conn.execute("SELECT max(rowid) FROM items").fetchone()[0] or 0
    bulk = sum(c.body.count for c in commits) >= max(existing // 2, 1)
    if bulk:
        for name, _ in _ITEM_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {name}")
    for commit in commits:
        _index_commit(conn, store, commit.body.seq, commit, known, warn)
        known.head = commit.body.seq
    if bulk:
        _create_item_indexes(_database(conn))
    return len(commits)


def _hex(d: bytes | None) -> str | None:
    return None if d is None else d.hex()


def _index_commit(conn: sqlite3.Connection, store: Store, seq: int, commit: SignedCommit, known: _Known,
                  warn: Warn | None) -> None:
    body = commit.body
    run = body.run
    conn.execute('INSERT INTO commits (seq, "commit", run, parent, time_ms, key_id, root, count) '
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (seq, commit.digest.hex(), run, _hex(body.parent), body.time_ms, body.key.hex(), body.root.hex(),
                  body.count))
    if known.status.get(run) == "sealed":
        return  # a run is sealed by its first commit in the chain; a later one for it seals nothing
    _forget_open(conn, run)
    conn.execute('INSERT INTO runs (run, status, seq, "commit", root, items_root, count, bytes, sealed_at, '
                 "sealed_ms, key_id, policy) VALUES (?, 'sealed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (run, seq, commit.digest.hex(), body.root.hex(), body.items_root.hex(), body.count,
                  body.total_bytes, _iso(body.time_ms), body.time_ms, body.key.hex(), _hex(body.policy)))
    known.status[run] = "sealed"
    conn.executemany('INSERT INTO offsets (run, grp, topic, partition, start, "end") VALUES (?, ?, ?, ?, ?, ?)',
                     [(run, g, t, p, start, end) for g, t, p, start, end in body.anchors])
    kinds: Counter[str] = Counter()
    conn.execute("SAVEPOINT run_items")
    try:
        conn.executemany("INSERT INTO items (run, name, kind, size, blake3) VALUES (?, ?, ?, ?, ?)",
                         _sealed_rows(store, run, body.root, kinds))
    except (CheckFailed, NotFound) as exc:  # the store's tree is damaged or gone: list the run, not its items
        conn.execute("ROLLBACK TO run_items")
        conn.execute("RELEASE run_items")
        if warn is not None:
            warn(f"catalog: run {run} (#{seq}): items not indexed: {exc}")
        return
    conn.execute("RELEASE run_items")
    conn.executemany("INSERT INTO kinds (run, kind, count) VALUES (?, ?, ?)", sorted(
        (run, k, n) for k, n in kinds.items()))


def _sealed_rows(store: Store, run: str, root: Digest, kinds: Counter[str]
                 ) -> Iterator[tuple[str, str, str, int, str]]:
    """The item rows of the tree ``root``, read from its node packs (their ids derive from the root, so neither
    the marker nor the content packs' indexes are needed), counting kinds as it goes.

    Every node is checked against the id it was fetched by -- its entries re-encoded, their RFC 9162 root, its
    level and item count -- so the catalog never lists an item the commit's root does not commit to. That is all
    the checking a cache needs; the strict decoding and name checks of ``verify`` are left to ``verify``."""
    index = ContentIndex(store)
    for pack in existing_node_packs(store, root):
        index.load(pack)
    everything = False
    pack = msgpack.Packer(use_bin_type=True).pack

    def node(nid: bytes) -> bytes:
        nonlocal everything
        loc = index.locate(nid)
        if loc is None and not everything:  # packed elsewhere (not by a seal of this tree): look everywhere once
            index.load_all()
            everything = True
            loc = index.locate(nid)
        if loc is None:
            raise CheckFailed(f"tree node b3:{nid.hex()[:16]}: missing from the store")
        return index.read_located(loc)

    def bad(nid: bytes, why: str) -> CheckFailed:
        return CheckFailed(f"tree node b3:{nid.hex()[:16]}: {why}")

    def visit(nid: bytes, want_level: int | None, want_count: int | None
              ) -> Iterator[tuple[str, str, str, int, str]]:
        try:
            m = msgpack.unpackb(node(nid), raw=False)
        except (ValueError, TypeError) as exc:  # msgpack's errors are ValueErrors
            raise bad(nid, f"not a tree node ({exc})") from None
        if type(m) is not dict or set(m) != {"entries", "level"} or type(m["entries"]) is not list \
                or type(m["level"]) is not int:
            raise bad(nid, "not a tree node")
        level: int = m["level"]
        entries: list[Any] = m["entries"]
        if want_level is not None and level != want_level:
            raise bad(nid, f"level {level}, expected {want_level}")
        if not all(type(e) is dict for e in entries):
            raise bad(nid, "an entry is not a map")
        if level == 0:
            if not all(type(e.get("name")) is str and type(e.get("kind")) is str and type(e.get("size")) is int
                       and type(e.get("blake3")) is bytes and len(e) == 4 for e in entries):
                raise bad(nid, "malformed item entry")
            count = len(entries)
        else:
            if not entries or not all(type(e.get("count")) is int and type(e.get("node")) is bytes and len(e) == 3
                                      for e in entries):
                raise bad(nid, "malformed child entry")
            count = sum(e["count"] for e in entries)
        if want_count is not None and count != want_count:
            raise bad(nid, f"holds {count} items, its parent says {want_count}")
        if node_id(level, count, _entries_root([_leaf(pack(e)) for e in entries])) != nid:
            raise bad(nid, "content hash mismatch")
        if level == 0:
            for e in entries:
                kinds[e["kind"]] += 1
                yield run, e["name"], e["kind"], e["size"], e["blake3"].hex()
        else:
            for e in entries:
                yield from visit(e["node"], level - 1, e["count"])

    try:
        yield from visit(root, None, None)
    finally:
        index.close()


def _index_staging(conn: sqlite3.Connection, store: Store, known: _Known, listed: dict[str, list[str]],
                   warn: Warn | None) -> int:
    """Count the staged items of open runs from the batches not counted yet. Batches are write-once numbered
    slots accepted whole or not at all (spec/store.md §5): a batch binding a name an earlier one bound to other
    content counts nothing, one re-binding a name to the same content adds nothing."""
    read = 0
    for run in sorted(listed):
        if known.status.get(run) == "sealed":
            continue
        keys = listed[run]
        new = [k for k in keys if k not in known.batches]
        if not new:
            continue
        counted = [k for k in keys if k in known.batches]
        if counted and min(new) < max(counted):  # not an extension of what was counted: count the run again
            _forget_open(conn, run)
            new = keys
        accepted = {str(n): (str(k), int(s), str(b)) for n, k, s, b in conn.execute(
            "SELECT name, kind, size, blake3 FROM staged WHERE run = ?", (run,))}
        counted_any = bool(counted) and known.status.get(run) == "open"
        for key in new:
            try:
                batch = Batch.from_bytes(store.get(key), f"run {run}: batch {key.rsplit('/', 1)[-1]}")
                if batch.run != run:
                    raise Refused(f"run {run}: batch {key} belongs to run {batch.run}")
            except NotFound:
                continue  # deleted since it was listed: the run was sealed meanwhile (the next catch-up sees it)
            except (DecodeError, Refused) as exc:
                if warn is not None:
                    warn(f"catalog: {exc}; the batch is not counted")
                batch = Batch(run, ())
            read += 1
            counted_any = True
            entries = {s.entry.name: (s.entry.kind, s.entry.size, s.entry.blake3.hex()) for s in batch.items}
            if any(accepted.get(n, v) != v for n, v in entries.items()):
                bound = []  # rejected whole: it binds a name to other content
            else:
                bound = [(n, v) for n, v in entries.items() if n not in accepted]
                accepted.update(bound)
            conn.executemany("INSERT INTO staged (run, name, kind, size, blake3) VALUES (?, ?, ?, ?, ?)",
                             [(run, n, k, s, b) for n, (k, s, b) in bound])
            conn.execute("INSERT INTO batches (run, key, items) VALUES (?, ?, ?)", (run, key, len(bound)))
            known.batches.add(key)
        if not counted_any:
            continue  # every batch vanished since the listing: sealed meanwhile, as the next catch-up will see
        conn.execute("INSERT OR REPLACE INTO runs (run, status, count, bytes) VALUES (?, 'open', ?, ?)",
                     (run, len(accepted), sum(s for _, s, _ in accepted.values())))
        known.status[run] = "open"
    return read


# --- queries ---------------------------------------------------------------------------------------------------------

_RUN_COLUMNS = ('run, status, seq, "commit", root, items_root, count, bytes, sealed_at, sealed_ms, key_id, policy')


def _run_row(r: dict[str, Any]) -> RunRow:
    return RunRow(r["run"], r["status"], r["seq"], r["commit"], r["root"], r["items_root"], r["count"], r["bytes"],
                  r["sealed_at"], r["sealed_ms"], r["key_id"], r["policy"])


def refresh(store: Store, warn: Warn | None = None) -> RefreshResult:
    """Bring the catalog up to date with the store (what every query does first); what it read that was new."""
    stats: list[RefreshResult] = []
    _session(store, warn, lambda conn, path: None, stats=stats)
    return stats[-1]


def runs(store: Store, status: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
         kind: str | None = None, warn: Warn | None = None) -> list[RunRow]:
    """The store's runs, sealed ones in chain order, then open ones by id.

    ``status``: "open" or "sealed". ``since_ms``/``until_ms`` keep sealed runs with ``since_ms <= sealed_ms <
    until_ms`` (an open run has no seal time, so any time filter leaves it out). ``kind`` keeps runs holding at
    least one item of that kind -- sealed runs only: the catalog indexes only sealed items."""
    if status not in (None, "open", "sealed"):
        raise UsageError(f"status {status!r}: expected open or sealed")
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    where: list[str] = []
    params: list[object] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if since_ms is not None:
        where.append("sealed_ms >= ?")
        params.append(since_ms)
    if until_ms is not None:
        where.append("sealed_ms < ?")
        params.append(until_ms)
    if kind is not None:
        where.append("run IN (SELECT run FROM kinds WHERE kind = ?)")
        params.append(kind)
    sql = (f"SELECT {_RUN_COLUMNS} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY seq IS NULL, seq, run")

    def query(conn: sqlite3.Connection, path: str) -> list[RunRow]:
        return [_run_row(r) for r in _database(conn).query(sql, params)]

    return _session(store, warn, query)


def digest_range(text: str) -> tuple[str, str]:
    """A ``find`` digest argument -- 64 hex digits, optionally ``b3:``-prefixed, or a prefix of at least 8 --
    as the half-open range of lowercase hex digests it matches; UsageError (exit 2) for anything else."""
    t = text.strip().lower().removeprefix("b3:")
    if not _MIN_PREFIX <= len(t) <= 64 or not _HEXDIGITS.issuperset(t):
        raise UsageError(f"digest {text!r}: expected 64 hex digits (optionally b3:...) or a prefix of at least "
                         f"{_MIN_PREFIX}")
    return t, t + "g"  # every hex digit sorts before "g": [t, t+"g") is exactly the digests starting with t


_FOUND_SQL = ("SELECT i.run AS run, r.seq AS seq, i.name AS name, i.kind AS kind, i.size AS size, "
              "i.blake3 AS blake3 FROM items i JOIN runs r ON r.run = i.run WHERE {cond} ORDER BY r.seq, i.name")


def _found(store: Store, cond: str, params: list[object], warn: Warn | None) -> list[FoundRow]:
    sql = _FOUND_SQL.format(cond=cond)

    def query(conn: sqlite3.Connection, path: str) -> list[FoundRow]:
        return [FoundRow(r["run"], r["seq"], r["name"], r["kind"], r["size"], r["blake3"])
                for r in _database(conn).query(sql, params)]

    return _session(store, warn, query)


def find_digest(store: Store, digest: str, warn: Warn | None = None) -> list[FoundRow]:
    """Items of sealed runs whose content's BLAKE3 is ``digest`` (64 hex digits, ``b3:`` optional) or starts with
    it (a prefix of at least 8 hex digits), ordered by the run's slot, then name."""
    lo, hi = digest_range(digest)
    return _found(store, "i.blake3 >= ? AND i.blake3 < ?", [lo, hi], warn)


def find_name(store: Store, glob: str, warn: Warn | None = None) -> list[FoundRow]:
    """Items of sealed runs whose name matches ``glob`` with SQLite GLOB semantics: case-sensitive, ``*`` any
    characters (``/`` included), ``?`` one, ``[...]`` a set; ordered by the run's slot, then name."""
    if not glob or "\x00" in glob:
        raise UsageError(f"name pattern {glob!r}: expected a non-empty glob")
    return _found(store, "i.name GLOB ?", [glob], warn)


def parse_time(text: str) -> int:
    """An ISO 8601 date (``2026-11-03``, midnight UTC) or date-time (``2026-11-03T12:00:00Z``, ``…+01:00``; no
    zone: UTC) as milliseconds since the epoch; UsageError (exit 2) otherwise. For ``runs`` filters."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"time {text!r}: expected an ISO 8601 date or date-time (2026-11-03, "
                         "2026-11-03T12:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# --- rebuild and check -----------------------------------------------------------------------------------------------

def reindex(store: Store, warn: Warn | None = None) -> ReindexResult:
    """Recreate the catalog from the store, then check it against the store (``ReindexResult.problems``)."""
    path = _prepare(store)
    started = time.monotonic()
    lock = _FileLock(path)
    try:
        lock.exclusive()
        _create(path, store.url)
        lock.shared()
    finally:
        lock.close()

    def build(conn: sqlite3.Connection, path: str) -> ReindexResult:
        counts = {str(s): int(n) for s, n in conn.execute("SELECT status, count(*) FROM runs GROUP BY status")}
        result = ReindexResult(
            path, int(_meta(conn, path)["head_seq"]),
            int(conn.execute("SELECT count(*) FROM commits").fetchone()[0]), counts.get("sealed", 0),
            counts.get("open", 0), int(conn.execute("SELECT count(*) FROM items").fetchone()[0]), 0.0)
        result.problems = _check(conn, store)
        return result

    result = _session(store, warn, build)
    result.seconds = time.monotonic() - started
    return result


def check(store: Store) -> list[str]:
    """Check the existing catalog against the store without changing it; one line per problem (empty: it holds).

    A catalog behind the store is not a problem (every query catches up first); one that says something the store
    does not is. A missing or unreadable catalog is reported, not rebuilt."""
    require_store(store)
    path = catalog_path(store)
    if _ident(path) is None:
        return [f"catalog {path}: does not exist (`ledger reindex` builds it)"]
    lock = _FileLock(path)
    try:
        lock.shared()
        try:
            conn = _open_valid(path, store.url)
        except _Damaged as exc:
            return [f"catalog {path}: {exc.reason}"]
        try:
            return _check(conn, store)
        except sqlite3.Error as exc:
            err = _sqlite_error(exc, path)
            if isinstance(err, _Damaged):
                return [f"catalog {path}: {err.reason}"]
            raise err from None
        except _Damaged as exc:
            return [f"catalog {path}: {exc.reason}"]
        finally:
            conn.close()
    finally:
        lock.close()


def _check(conn: sqlite3.Connection, store: Store) -> list[str]:
    """:func:`_check_rows` in one read transaction: one snapshot, whatever other processes commit meanwhile."""
    conn.execute("BEGIN")
    try:
        return _check_rows(conn, store)
    finally:
        conn.execute("ROLLBACK")


def _check_rows(conn: sqlite3.Connection, store: Store) -> list[str]:
    """What the catalog says that the store does not (spec/catalog.md, "Checking"). Sealed runs: the commit rows
    and run rows must be the store's commits, and the evidence tree rebuilt from the catalog's own item rows must
    have the root, items root and count the commit signs; kinds and offsets rows must follow from the items and
    anchors. Open runs: the names and sizes counted must be what the batches counted say."""
    problems: list[str] = []
    head = int(conn.execute("SELECT value FROM meta WHERE key = 'head_seq'").fetchone()[0])
    store_slots = slot_numbers(store)
    if len(store_slots) < head + 1:
        problems.append(f"catalog indexed slots 0-{head}, the store's chain has {len(store_slots)} commit(s)")
        head = len(store_slots) - 1
    cat_commits = {int(r[0]): r for r in conn.execute(
        'SELECT seq, "commit", run, parent, time_ms, key_id, root, count FROM commits')}
    first: dict[str, tuple[int, SignedCommit]] = {}
    for seq in range(head + 1):
        c = read_slot(store, seq)
        b = c.body
        first.setdefault(b.run, (seq, c))
        want = (seq, c.digest.hex(), b.run, _hex(b.parent), b.time_ms, b.key.hex(), b.root.hex(), b.count)
        got = cat_commits.pop(seq, None)
        if got is None:
            problems.append(f"commit #{seq} (run {b.run}): no commit row")
        else:
            for col, x, y in zip(_COMMIT_COLS, got, want, strict=True):
                if x != y:
                    problems.append(f"commit #{seq} (run {b.run}): column {col} is {x!r}, the store says {y!r}")
    problems += [f"commit #{seq}: a commit row beyond the indexed head (#{head})" for seq in sorted(cat_commits)]
    rows = {str(r["run"]): r for r in _database(conn).query(f"SELECT {_RUN_COLUMNS} FROM runs")}
    for run, (seq, c) in sorted(first.items(), key=lambda x: x[1][0]):
        problems += _check_sealed(conn, run, seq, c, rows.pop(run, None))
    for run, r in sorted(rows.items()):
        if r["status"] == "sealed":
            problems.append(f"run {run}: listed as sealed (#{r['seq']}), the store's chain has no commit for it "
                            f"up to slot {head}")
        else:
            problems += _check_open(conn, store, run, r)
    stray = [str(run) for (run,) in conn.execute(
        "SELECT DISTINCT run FROM items WHERE run NOT IN (SELECT run FROM runs WHERE status = 'sealed') "
        "ORDER BY run")]
    problems += [f"run {run}: item rows for a run that is not sealed" for run in stray]
    return problems


_COMMIT_COLS = ("seq", "commit", "run", "parent", "time_ms", "key_id", "root", "count")


def _check_sealed(conn: sqlite3.Connection, run: str, seq: int, c: SignedCommit, row: dict[str, Any] | None
                  ) -> list[str]:
    b = c.body
    who = f"run {run} (#{seq})"
    if row is None:
        return [f"{who}: no run row"]
    out = []
    want = RunRow(run, "sealed", seq, c.digest.hex(), b.root.hex(), b.items_root.hex(), b.count, b.total_bytes,
                  _iso(b.time_ms), b.time_ms, b.key.hex(), _hex(b.policy)).to_json()
    for col, value in _run_row(row).to_json().items():
        if value != want[col]:
            out.append(f"{who}: column {col} is {value!r}, the commit says {want[col]!r}")
    builder = TreeBuilder()
    kinds: Counter[str] = Counter()
    try:
        for name, kind, size, digest in conn.execute(
                "SELECT name, kind, size, blake3 FROM items WHERE run = ? ORDER BY name", (run,)):
            raw = bytes.fromhex(digest) if isinstance(digest, str) and len(digest) == 64 else b""
            if (not isinstance(name, str) or kind not in KINDS or type(size) is not int or size < 0
                    or len(raw) != 32):
                raise ValueError(f"item row {name!r}: not a valid item (kind {kind!r}, size {size!r}, "
                                 f"blake3 {digest!r})")
            builder.add(ItemEntry(name, kind, size, Digest(raw)))
            kinds[kind] += 1
        root = builder.finish()
    except ValueError as exc:
        return [*out, f"{who}: the catalog's items do not form a tree: {exc}"]
    if builder.count != b.count:
        out.append(f"{who}: {builder.count} item row(s), the commit says {b.count}")
    if root != b.root or builder.items_root != b.items_root:
        out.append(f"{who}: the tree rebuilt from the catalog's items has root b3:{root.hex()[:16]}, the commit "
                   f"signs b3:{b.root.hex()[:16]}")
    got_kinds = {str(k): int(n) for k, n in conn.execute("SELECT kind, count FROM kinds WHERE run = ?", (run,))}
    if got_kinds != dict(kinds):
        out.append(f"{who}: kinds rows {dict(sorted(got_kinds.items()))} do not match its items "
                   f"{dict(sorted(kinds.items()))}")
    offsets = [tuple(r) for r in conn.execute(
        'SELECT grp, topic, partition, start, "end" FROM offsets WHERE run = ? ORDER BY grp, topic, partition',
        (run,))]
    if offsets != [tuple(a) for a in b.anchors]:
        out.append(f"{who}: offsets rows differ from the commit's {len(b.anchors)} anchor(s)")
    return out


def _check_open(conn: sqlite3.Connection, store: Store, run: str, row: dict[str, Any]) -> list[str]:
    """An open run's counts against its batches in the store, up to the last batch the catalog counted (later
    batches are catch-up lag, not a problem; a run sealed since has lost its batches, nothing to compare)."""
    who = f"run {run} (open)"
    counted = sorted(str(k) for (k,) in conn.execute("SELECT key FROM batches WHERE run = ?", (run,)))
    nums = [batch_seq(k) for k in counted]
    if not counted or None in nums or nums != list(range(len(nums))):
        return [f"{who}: the counted batches are not slots 0-{len(counted) - 1}"]
    try:
        staged = staged_items(store, run, upto=batch_key(run, len(counted)))
    except (Refused, DecodeError, CheckFailed) as exc:
        return [f"{who}: its staging cannot be read: {exc}"]
    if not staged and not any(True for _ in store.list(f"runs/{run}/staged/")):
        return []  # sealed (or gone) since the catalog counted it: the next catch-up says so
    want = {n: (s.entry.kind, s.entry.size, s.entry.blake3.hex()) for n, s in staged.items()}
    got = {str(n): (str(k), int(s), str(b)) for n, k, s, b in conn.execute(
        "SELECT name, kind, size, blake3 FROM staged WHERE run = ?", (run,))}
    out = []
    if got != want:
        diff = sorted(set(got.items()) ^ set(want.items()))
        out.append(f"{who}: staged rows differ from its batches (first: {diff[0][0]})")
    if (row["count"], row["bytes"]) != (len(want), sum(v[1] for v in want.values())):
        out.append(f"{who}: count {row['count']} / bytes {row['bytes']}, its batches bind {len(want)} item(s) "
                   f"of {sum(v[1] for v in want.values())} bytes")
    return out

