"""The Python API pipelines call directly; the CLI is a thin layer over it.

    from ledger import Ledger, load_signing_key, load_public_key
    lg = Ledger.open("file:///var/lib/ledger")       # or "s3://bucket/prefix", or None for $LEDGER_STORE / ./.ledger
    lg.init()
    lg.add("nightly-42", ["out/"])
    lg.record("nightly-42", "summary", {"ingested": 1000, "quarantined": 0})
    lg.seal("nightly-42", load_signing_key("sealer.key"))
    result = lg.verify("nightly-42", [load_public_key("sealer.key.pub")])
    assert result.ok, result.first_failure
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .chain import ChainEntry, ChainView, find_commit, iter_chain
from .chainproofs import Checkpoint, ConsistencyProof, checkpoint, prove_consistency
from .closure import Assessment, SealResult, check, require_store, seal
from .diff import SEMANTIC_KINDS, Change, DiffCounter, RunDiff, RunSide, diff_trees, record_changes
from .errors import CheckFailed, Contention, ForeignObject, NotFound, StorageError, UsageError
from .evidence import AddResult, add_contents, add_paths, apply_lock, record, require_run, staged_items
from .keys import PublicKey, SigningKey
from .kinds import load_record
from .layout import CONFIG, marker_key, sealing_key
from .names import check_name, check_run_id
from .objects import ItemEntry, StoreConfig, StoreLock
from .packs import ContentIndex
from .policy import Policy, commit_ends, load_policies
from .proofs import InclusionProof, prove
from .storage import Store, as_s3, open_store
from .verify import SealedRun, VerifyResult, open_sealed, verify

if TYPE_CHECKING:
    from .catalog import FoundRow, ReindexResult, RunRow
    from .secrets import AllowRule, Scanner


def _scanner(allow: Sequence[AllowRule]) -> Scanner:
    from .secrets import Scanner

    return Scanner(allow)


def _policy(policy: Policy | Sequence[str] | None) -> Policy | None:
    if policy is None or isinstance(policy, Policy):
        return policy
    return load_policies(list(policy)) if policy else None


@dataclass(frozen=True)
class ReplayAnchor:
    """One sealed offsets range and how it joins the previous sealed range of the same stream."""

    group: str
    topic: str
    partition: int
    start: int
    end: int
    seq: int
    commit: bytes
    joins: str  # first | contiguous | gap | overlap
    range: tuple[int, int] | None  # the gap or overlap, half-open
    previous: tuple[str, int, int] | None  # (run, seq, end) of the previous sealed range

    def to_json(self) -> dict[str, object]:
        return {"group": self.group or None, "topic": self.topic, "partition": self.partition, "start": self.start,
                "end": self.end, "offsets": self.end - self.start, "commit": self.commit.hex(), "seq": self.seq,
                "joins": self.joins, "range": list(self.range) if self.range else None,
                "previous": None if self.previous is None else {"run": self.previous[0], "seq": self.previous[1],
                                                                "end": self.previous[2]}}


@dataclass(frozen=True)
class RunItems:
    run: str
    sealed: bool
    items: list[ItemEntry]


class Ledger:
    """One store, and everything that can be done with it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.config: StoreConfig | None = None  # the store config, once init has read it

    @classmethod
    def open(cls, url: str | None = None) -> Ledger:
        return cls(open_store(url))

    def init(self, lock: StoreLock | None = None) -> bool:
        """Create the store; True when it was created now, False when it already existed (idempotent).

        ``lock`` (S3 stores only, in a bucket with Object Lock enabled) records an Object Lock retention in the
        config: from then on every write-once object is written WORM with it. The config is write-once too, so
        re-running init is fine with the same lock or none, and refused (Contention, exit 4) with another one."""
        if lock is not None and as_s3(self.store) is None:
            raise UsageError(f"store {self.store.url}: Object Lock needs an S3 store (s3://bucket/prefix)")
        if self.store.exists_store() and not self.store.exists(CONFIG):
            # The config is a store's first object, so a location holding anything without one is not a ledger
            # store: never make someone else's data look like one.
            try:
                first = next(iter(self.store.list("")), None)
            except ForeignObject as exc:
                first = exc.key
            if first is not None:
                raise UsageError(f"store {self.store.url}: already holds objects but no ledger config (first: "
                                 f"{first}); refusing to initialise a ledger store there (choose an empty location)")
        self.store.create()
        s3 = as_s3(self.store)
        if lock is not None and s3 is not None and not s3.bucket_lock_enabled():
            raise UsageError(f"store {self.store.url}: bucket {s3.bucket!r} does not have Object Lock enabled "
                             "(enable it on the bucket first; ledger never changes bucket settings)")
        wanted = StoreConfig(lock)
        apply_lock(self.store, wanted)  # the config itself is write-once: WORM like the rest
        created = self.store.put_if_absent(CONFIG, wanted.encode())
        config = StoreConfig.from_bytes(self.store.get(CONFIG), f"store {self.store.url}: config")
        if lock is not None and config != wanted:
            now = (f"Object Lock {config.lock.mode} for {config.lock.days} days" if config.lock is not None
                   else "no Object Lock")
            raise Contention(f"store {self.store.url}: already initialised with {now}; the store config is "
                             "write-once and cannot be changed")
        self.config = config
        return created

    def add(self, run: str, paths: list[str], kind: str = "file", as_name: str | None = None,
            progress: Callable[[int, int], None] | None = None, allow: Sequence[AllowRule] = ()) -> AddResult:
        """Every file is scanned for secrets before a byte of it is stored (exit 6 on a hit); ``allow`` waives
        false positives, and the waived findings are sealed with the run."""
        return add_paths(self.store, run, paths, kind, as_name, progress, _scanner(allow))

    def add_contents(self, run: str, contents: dict[str, tuple[str, bytes]],
                     allow: Sequence[AllowRule] = ()) -> AddResult:
        """Items given as bytes, ``{name: (kind, content)}``, added in one batch (all or nothing), scanned and
        validated like ``add`` and ``record``."""
        return add_contents(self.store, run, contents, _scanner(allow))

    def record(self, run: str, kind: str, value: object, name: str | None = None,
               allow: Sequence[AllowRule] = ()) -> AddResult:
        """A record (a dict), or its JSON text; for a typed kind a list or JSON array records one item each."""
        text = value if isinstance(value, (str, bytes)) else json.dumps(value)
        return record(self.store, run, kind, text, name, _scanner(allow))

    def check(self, run: str, policy: Policy | Sequence[str] | None = None) -> Assessment:
        """Evaluate RUN's closure criteria (built-in, plus the policy's); nothing is written."""
        check_run_id(run)
        return check(self.store, run, _policy(policy))

    def seal(self, run: str, key: SigningKey, progress: Callable[[str], None] | None = None,
             policy: Policy | Sequence[str] | None = None) -> SealResult:
        check_run_id(run)
        return seal(self.store, run, key, progress=progress, policy=_policy(policy))

    def verify(self, run: str, trusted: list[PublicKey],
               progress: Callable[[int, int], None] | None = None) -> VerifyResult:
        check_run_id(run)
        return verify(self.store, run, trusted, progress)

    def prove(self, run: str, name: str) -> InclusionProof:
        """An inclusion proof for item ``name`` of sealed ``run``: checkable offline with :func:`verify_proof`."""
        check_run_id(run)
        check_name(name, run)
        require_store(self.store)
        s = open_sealed(self.store, run)
        try:
            return prove(s.node, run, s.seq, s.commit, name)
        finally:
            s.index.close()

    def diff(self, run_a: str, run_b: str, semantic: bool = True) -> RunDiff:
        """What changed from sealed ``run_a`` to sealed ``run_b``: the changes stream in name order through
        ``RunDiff.changes`` (consume it before reading the counts); typed records that differ carry the fields
        that differ (``semantic``). Only the tree-node packs are opened; content is read for typed records only."""
        check_run_id(run_a)
        check_run_id(run_b)
        require_store(self.store)
        sides = [open_sealed(self.store, r, nodes_only=True) for r in (run_a, run_b)]
        a, b = (RunSide(s.run, s.seq, s.commit.digest, s.commit.body.root, s.commit.body.count) for s in sides)
        counter = DiffCounter()
        full: dict[str, SealedRun] = {}

        def value(run: str, e: ItemEntry | None) -> object:
            if e is None or e.kind not in SEMANTIC_KINDS:
                return None
            if run not in full:  # the content packs' indexes, opened once and only if a typed record changed
                full[run] = open_sealed(self.store, run)
            return load_record(e.kind, full[run].read(e), f"run {run}: item {e.name}")

        def changes() -> Iterator[Change]:
            try:
                for c in diff_trees(sides[0].node, a.root, sides[1].node, b.root, counter, a.count):
                    if semantic and ((c.a is not None and c.a.kind in SEMANTIC_KINDS)
                                     or (c.b is not None and c.b.kind in SEMANTIC_KINDS)):
                        va, vb = value(run_a, c.a), value(run_b, c.b)
                        kind = (c.b or c.a).kind  # type: ignore[union-attr]  # one side is always present
                        c = Change(c.name, c.a, c.b, record_changes(kind, va if isinstance(va, dict) else None,
                                                                    vb if isinstance(vb, dict) else None))
                    yield c
            finally:
                for s in (*sides, *full.values()):
                    s.index.close()

        return RunDiff(a, b, changes(), counter)

    # The run catalog (ledger/catalog.py, spec/catalog.md): derived, local, never trusted by verify; each query
    # first catches up with the store. ``warn`` receives one line per damaged catalog it had to rebuild.

    def runs(self, status: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
             kind: str | None = None, warn: Callable[[str], None] | None = None) -> list[RunRow]:
        from . import catalog  # sqlite3 and sqlite-utils: only the catalog's commands pay for them

        return catalog.runs(self.store, status, since_ms, until_ms, kind, warn)

    def find(self, digest: str | None = None, name: str | None = None,
             warn: Callable[[str], None] | None = None) -> list[FoundRow]:
        """Items of sealed runs by content digest (hex, ``b3:``, or a prefix of 8+ digits) or by name glob."""
        from . import catalog

        if (digest is None) == (name is None):
            raise UsageError("find: give a DIGEST or --name GLOB (one of them)")
        if digest is not None:
            return catalog.find_digest(self.store, digest, warn)
        assert name is not None
        return catalog.find_name(self.store, name, warn)

    def reindex(self, warn: Callable[[str], None] | None = None) -> ReindexResult:
        from . import catalog

        return catalog.reindex(self.store, warn)

    def check_catalog(self) -> list[str]:
        from . import catalog

        return catalog.check(self.store)

    def replay(self, run: str) -> list[ReplayAnchor]:
        """The sealed run's replay anchors, each with how it joins the previous sealed run of its stream."""
        check_run_id(run)
        require_store(self.store)
        s = open_sealed(self.store, run)
        s.index.close()
        view = ChainView(self.store)
        view.refresh()
        ends = commit_ends(e.commit.body for e in view.entries[: s.seq])
        out = []
        for g, t, p, start, end in s.commit.body.anchors:
            prev = ends.get((g, t, p))
            if prev is None:
                joins, rng = "first", None
            elif start == prev.end:
                joins, rng = "contiguous", None
            elif start > prev.end:
                joins, rng = "gap", (prev.end, start)
            else:
                joins, rng = "overlap", (start, min(prev.end, end))
            out.append(ReplayAnchor(g, t, p, start, end, s.seq, s.commit.digest, joins, rng,
                                    None if prev is None else (prev.run, prev.seq, prev.end)))
        return out

    def checkpoint(self) -> Checkpoint:
        """The signed head of the chain (the newest commit, which signs the log of every commit before it)."""
        require_store(self.store)
        return checkpoint(self.store)

    def consistency(self, old: Checkpoint) -> ConsistencyProof:
        """A proof that the current head only appended to ``old`` (an earlier checkpoint the auditor kept)."""
        require_store(self.store)
        return prove_consistency(self.store, old.commit)

    def export(self, run: str, path: str, content: bool = True, since: Checkpoint | None = None) -> dict[str, int]:
        """Write a bundle of sealed ``run`` to ``path`` (atomically: a failed export leaves no file that could pass
        for a bundle)."""
        from .bundle import export

        check_run_id(run)
        require_store(self.store)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                counts = export(self.store, run, f, content, since.commit if since is not None else None)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"{path}: cannot write the bundle ({exc.strerror})") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return counts

    def is_sealed(self, run: str) -> bool:
        return self.store.exists(marker_key(run)) or any(e.commit.body.run == run for e in iter_chain(self.store))

    def sealed(self, run: str) -> SealedRun:
        check_run_id(run)
        return open_sealed(self.store, run)

    def items(self, run: str) -> RunItems:
        """A run's items: from its sealed tree when sealed, else what is staged so far."""
        check_run_id(run)
        require_store(self.store)
        if self.store.exists(marker_key(run)) or self.store.exists(sealing_key(run)) or self.is_sealed(run):
            try:
                s = open_sealed(self.store, run)
                return RunItems(run, True, list(s.items()))
            except NotFound:
                pass
        staged = staged_items(self.store, run)
        require_run(self.store, run, staged)
        return RunItems(run, False, sorted((s.entry for s in staged.values()), key=lambda e: e.name.encode()))

    def read(self, run: str, name: str) -> bytes:
        """An item's content, checked against its digest before it is returned."""
        check_run_id(run)
        check_name(name, run)
        require_store(self.store)
        if self.is_sealed(run):
            s = open_sealed(self.store, run)
            entry = s.find(name)
            if entry is None:
                raise NotFound(f"run {run}: item {name}: no such item")
            return s.read(entry)
        staged = staged_items(self.store, run)
        item = staged.get(name)
        if item is None:
            if not staged:
                raise NotFound(f"run {run}: no such run")
            raise NotFound(f"run {run}: item {name}: no such item")
        index = ContentIndex(self.store)
        if item.pack:
            index.load(item.pack)
        data = index.read(item.entry.blake3)
        from .digests import content_digest

        if content_digest(data) != item.entry.blake3:
            raise CheckFailed(f"run {run}: item {name}: content hash mismatch")
        return data

    def log(self) -> Iterator[ChainEntry]:
        """The closure chain, newest first."""
        require_store(self.store)
        return reversed(list(iter_chain(self.store)))

    def commit(self, ref: str) -> ChainEntry:
        """A commit by run id, hex digest prefix (8+ digits) or ``#seq``."""
        require_store(self.store)
        if not ref.startswith("#") and not (len(ref) >= 8 and all(c in "0123456789abcdef" for c in
                                                                   ref.removeprefix("b3:").lower())):
            check_run_id(ref)
            s = open_sealed(self.store, ref)
            return ChainEntry(s.seq, s.commit)
        try:
            return find_commit(self.store, ref)
        except NotFound:
            if ref.startswith("#"):
                raise
            s = open_sealed(self.store, check_run_id(ref))
            return ChainEntry(s.seq, s.commit)
