"""The closure protocol: check, build the tree, sign, and append the commit by put-if-absent on the next slot.

Order of writes (spec/store.md, "Sealing"): the closure criteria (nothing written if any fails) → the ``sealing``
marker (fences late ``add`` calls) → the sealed policy document → tree-node packs → the commit slot (the fence:
exactly one writer gets a slot) → the completion marker → cleanup of staging. A crash after the slot write leaves a
sealed run without marker: ``verify`` reports it, and re-running ``seal`` writes the marker idempotently.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import encoding
from .chain import ChainEntry, ChainView, read_slot
from .digests import FORMAT, Digest, content_digest
from .errors import CheckFailed, Contention, NotFound, Refused, StorageError
from .evidence import _require_store, require_run, staged_batch_keys, staged_items
from .keys import SigningKey
from .kinds import Offsets
from .layout import marker_key, node_pack_ids, policy_key, sealing_key, slot_key
from .objects import NONCE_BYTES, Batch, CommitBody, ItemEntry, Marker, SignedCommit, StagedItem, Waived
from .packs import MAX_PACK_BYTES, ContentIndex, encode_index, index_key, index_records, loose_key, pack_key
from .policy import Criterion, Evidence, Policy, anchors, build_evidence, commit_ends, evaluate
from .storage import Store, Upload
from .tree import TreeBuilder, walk

MAX_SLOT_ATTEMPTS = 1000


class NotReady(CheckFailed):
    """A seal (or check) whose criteria do not all hold (exit 1); carries the whole report for the CLI."""

    def __init__(self, run: str, criteria: list[Criterion]) -> None:
        failed = [c for c in criteria if not c.ok]
        more = f" (and {len(failed) - 1} more failing)" if len(failed) > 1 else ""
        super().__init__(f"run {run}: not ready to seal: {failed[0].name}: {failed[0].detail}{more}")
        self.run = run
        self.criteria = criteria


@dataclass(frozen=True)
class SealResult:
    run: str
    seq: int
    commit: SignedCommit
    completed_interrupted: bool
    criteria: list[Criterion]

    @property
    def digest(self) -> Digest:
        return self.commit.digest


@dataclass(frozen=True)
class Assessment:
    """What ``check`` reports and ``seal`` seals: every criterion, the anchors, the policy and the waivers."""

    run: str
    criteria: list[Criterion]
    anchors: list[Offsets]
    policy: Policy | None
    waivers: list[Waived]
    evidence: Evidence | None = None  # what was evaluated (for a re-evaluation against a newer chain)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.criteria)

    def to_json(self) -> dict[str, object]:
        return {"run": self.run, "ok": self.ok, "policy": self.policy.digest.hex() if self.policy else None,
                "criteria": [c.to_json() for c in self.criteria],
                "anchors": [{"group": a.group or None, "topic": a.topic, "partition": a.partition,
                             "start": a.start, "end": a.end} for a in self.anchors],
                "waivers": [w.to_value() for w in self.waivers]}


def require_store(store: Store) -> None:
    """The store exists and its config is a valid ledger/1 config (a damaged one is Corrupt, exit 1)."""
    _require_store(store)


def content_present(store: Store, staged: dict[str, StagedItem]) -> Criterion:
    """Every staged item's content is stored, with the size the item says."""
    # Each packed item's digest must be listed, with its size, in the indexes of the run's packs: the size is the one
    # the first of those packs (in id order) that lists the digest gives, as a ContentIndex over them would answer.
    # Only the staged digests are held while the indexes are scanned (a million-item run's index is not loaded).
    sizes: dict[bytes, int | None] = {s.entry.blake3: None for s in staged.values() if s.pack is not None}
    for pack in sorted({s.pack for s in staged.values() if s.pack is not None}):
        for digest, _, size in index_records(store, pack):
            if digest in sizes and sizes[digest] is None:
                sizes[digest] = size
    missing = []
    for name, s in staged.items():
        if s.pack is not None:
            if sizes.get(s.entry.blake3) != s.entry.size:
                missing.append(name)
        elif store.size(loose_key(s.entry.blake3)) != s.entry.size:
            missing.append(name)
    missing.sort()  # reported in name order (sorting only the missing, not every item)
    detail = "all content stored" if not missing else f"content missing for {len(missing)} item(s), first {missing[0]}"
    return Criterion("content-present", not missing, detail, tuple(missing[:20]))


def staged_evidence(store: Store, staged: dict[str, StagedItem]) -> Evidence:
    """The criteria's view of staged items: typed records are read (and checked against their digests)."""
    index = ContentIndex(store)

    def read(e: ItemEntry) -> bytes:
        s = staged[e.name]
        if s.pack is None:
            data = store.get(loose_key(e.blake3))
        else:
            index.load(s.pack)
            data = index.read(e.blake3)
        if content_digest(data) != e.blake3:
            raise CheckFailed("content hash mismatch")
        return data

    try:
        return build_evidence((s.entry for s in staged.values()), read)
    finally:
        index.close()


def assess(store: Store, run: str, staged: dict[str, StagedItem], policy: Policy | None,
           earlier: list[ChainEntry], waivers: list[Waived]) -> Assessment:
    ev = staged_evidence(store, staged)
    criteria = evaluate(policy, ev, commit_ends(e.commit.body for e in earlier), content_present(store, staged))
    return Assessment(run, criteria, anchors(ev), policy, waivers, ev)


def staged_waivers(staged: dict[str, StagedItem], batches: dict[str, Batch]) -> list[Waived]:
    """The waived secret findings of the items that count (accepted batches' items), once each."""
    out: dict[tuple[str, int, str], Waived] = {}
    for key in sorted(batches):
        b = batches[key]
        if not b.waivers:
            continue
        mine = {s.entry.name: s.entry for s in b.items}
        for w in b.waivers:
            s = staged.get(w.item)
            if s is not None and mine.get(w.item) == s.entry:
                out.setdefault((w.item, w.line, w.detector), w)
    return [out[k] for k in sorted(out)]


def check(store: Store, run: str, policy: Policy | None) -> Assessment:
    """Evaluate every criterion for an open run; nothing is written."""
    require_store(store)
    _refuse_if_marked(store, run)
    view = ChainView(store)
    view.refresh()
    done = view.find_run(run)
    if done is not None:
        raise _sealed_error(run, done.seq, done.digest)
    batches: dict[str, Batch] = {}
    staged = staged_items(store, run, batches)
    require_run(store, run, staged)
    return assess(store, run, staged, policy, view.entries, staged_waivers(staged, batches))


class _NodePacks:
    """Tree nodes, packed; ids are derived from the root at the end so a re-run seal rewrites the same packs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.done: list[tuple[Upload, list[tuple[bytes, int, int]]]] = []
        self.up: Upload | None = None
        self.recs: list[tuple[bytes, int, int]] = []
        self.off = 0

    def __call__(self, nid: Digest, data: bytes) -> None:
        if self.up is None or (self.off + len(data) > MAX_PACK_BYTES and self.off > 0):
            if self.up is not None:
                self.done.append((self.up, self.recs))
            self.up, self.recs, self.off = self.store.upload(), [], 0
        self.up.write(data)
        self.recs.append((nid, self.off, len(data)))
        self.off += len(data)

    def finish(self, root: Digest) -> list[str]:
        if self.up is not None:
            self.done.append((self.up, self.recs))
            self.up = None
        ids = node_pack_ids(root, len(self.done))
        for pid, (up, recs) in zip(ids, self.done, strict=True):
            up.commit_if_absent(pack_key(pid))
            self.store.put_if_absent(index_key(pid), encode_index(pid, recs))
        self.done = []
        return ids

    def abort(self) -> None:
        for up, _ in self.done:
            up.abort()
        if self.up is not None:
            self.up.abort()


def existing_node_packs(store: Store, root: Digest) -> list[str]:
    out = []
    for pid in node_pack_ids(root, 1 << 16):
        if not store.exists(index_key(pid)):
            break
        out.append(pid)
    return out


def _marker_for(store: Store, run: str, entry: ChainEntry, staged: dict[str, StagedItem]) -> Marker:
    """The marker for a commit that landed without one. Its packs come from the sealed tree, not from staging alone:
    staging is gone when the marker was lost after the seal had completed (and cleaned up)."""
    root = entry.commit.body.root
    node_packs = existing_node_packs(store, root)
    nodes = ContentIndex(store)
    for pid in node_packs:
        nodes.load(pid)
    content: ContentIndex | None = None
    packs: set[str] = set()
    try:
        for item in walk(nodes.read, root):
            s = staged.get(item.name)
            if s is not None and s.entry == item and s.pack is not None:
                packs.add(s.pack)
                continue
            if content is None:
                content = ContentIndex(store)
                content.load_all()
            loc = content.locate(item.blake3)
            if loc is not None and loc[0] not in node_packs:
                packs.add(loc[0])
    finally:
        nodes.close()
        if content is not None:
            content.close()
    return Marker(run, entry.seq, entry.digest, tuple(sorted(packs) + node_packs))


def _cleanup(store: Store, run: str, batch_keys: list[str]) -> None:
    """Best effort: the marker is written, so the seal has completed; leftovers are harmless garbage."""
    with contextlib.suppress(StorageError):
        for key in batch_keys:
            store.delete(key)
        store.delete(sealing_key(run))


def _unfence(store: Store, run: str) -> None:
    """Best effort: remove our sealing fence after a failure before the commit slot was written. What was
    written meanwhile (the policy document, tree-node packs) is content-addressed and harmless."""
    with contextlib.suppress(StorageError):
        store.delete(sealing_key(run))


def _marker(store: Store, run: str) -> Marker | None:
    if not store.exists(marker_key(run)):
        return None
    return Marker.from_bytes(store.get(marker_key(run)), f"run {run}: completion marker")


def _refuse_if_marked(store: Store, run: str) -> None:
    m = _marker(store, run)
    if m is not None:
        raise _sealed_error(run, m.seq, m.commit)


def _finish_if_marked(store: Store, run: str, leased: bool) -> SealResult | None:
    """A run with its completion marker is sealed: exit 4 naming the commit -- unless a seal died after its marker,
    in its cleanup, and left staged batches or its fence behind. Those are removed here either way; holding the
    lease, this re-run is then the seal's completion (no other sealer can be in its cleanup now) and succeeds.
    Without a lease (S3) another sealer may be cleaning up this very moment, so it stays exit 4."""
    m = _marker(store, run)
    if m is None:
        return None
    leftovers = staged_batch_keys(store, run)
    if leftovers or store.exists(sealing_key(run)):
        _cleanup(store, run, leftovers)
        if leased:
            return SealResult(run, m.seq, read_slot(store, m.seq), True, [])
    raise _sealed_error(run, m.seq, m.commit)


def _sealed_error(run: str, seq: int, digest: bytes) -> Contention:
    return Contention(f"run {run}: already sealed by commit b3:{digest.hex()[:16]} (#{seq})")


def seal(store: Store, run: str, key: SigningKey, now_ms: Callable[[], int] | None = None,
         progress: Callable[[str], None] | None = None, nonce: bytes | None = None,
         policy: Policy | None = None) -> SealResult:
    """Seal ``run``: exactly one writer wins; everyone else gets :class:`Contention` (exit 4). The criteria
    (built-in, plus ``policy``'s) are evaluated first; if any fails, :class:`NotReady` (exit 1) and nothing is
    written."""
    require_store(store)
    clock = now_ms or (lambda: time.time_ns() // 1_000_000)
    say = progress or (lambda msg: None)
    with store.lease(f"seal-{run}") as leased:
        finished = _finish_if_marked(store, run, leased)
        if finished is not None:
            return finished
        view = ChainView(store)
        view.refresh()
        done = view.find_run(run)
        if done is not None:
            # The commit landed but its marker did not: a seal was interrupted (or is finishing right now).
            batch_keys = staged_batch_keys(store, run)
            marker = _marker_for(store, run, done, staged_items(store, run))
            store.put_if_absent(marker_key(run), marker.encode())
            _cleanup(store, run, batch_keys)
            if not leased:
                raise Contention(f"run {run}: sealed by commit b3:{done.digest.hex()[:16]} (#{done.seq}) from "
                                 "another writer; its completion marker is now written")
            return SealResult(run, done.seq, done.commit, True, [])

        fenced = False
        batches: dict[str, Batch] = {}  # batches never change: the re-read after the fence decodes only new ones
        try:
            staged = staged_items(store, run, batches)
            require_run(store, run, staged)
            report = assess(store, run, staged, policy, view.entries, staged_waivers(staged, batches))
            if not report.ok:
                raise NotReady(run, report.criteria)

            # Fence late adds, then re-read: anything staged before the fence is in; anything after is refused.
            fenced = store.put_if_absent(sealing_key(run),
                                         encoding.encode({"format": FORMAT, "run": run, "time": clock()}))
            batch_keys = staged_batch_keys(store, run)
            if set(batch_keys) != set(batches):  # batches came (or went) before the fence: read and check again
                staged = {}
                staged = staged_items(store, run, batches)
                report = assess(store, run, staged, policy, view.entries, staged_waivers(staged, batches))
                if not report.ok:
                    raise NotReady(run, report.criteria)
        except (CheckFailed, NotFound, Refused):
            # Without a lease another sealer of this run may have won meanwhile and cleaned up its staging, which
            # looks like an empty run or a vanished batch from here: that is contention, not a failed check.
            view.refresh()
            won = view.find_run(run)
            if won is not None:
                raise _sealed_error(run, won.seq, won.digest) from None
            if fenced:
                _unfence(store, run)  # a failed check leaves nothing behind, the fence included
            raise
        except BaseException:
            if fenced:
                _unfence(store, run)  # e.g. the store failed while re-reading: leave the run open, never stuck
            raise

        del batches
        try:
            if policy is not None:  # the sealed policy document, write-once like the commit that names it
                store.put_if_absent(policy_key(policy.digest), policy.encode())
            say(f"building the evidence tree over {len(staged)} item(s)")
            nodes = _NodePacks(store)
            builder = TreeBuilder(nodes)
            try:
                # Item names are valid UTF-8 text, and for those code-point order is UTF-8 byte order: plain sorted()
                # gives the tree's order without encoding a million names for sort keys.
                for name in sorted(staged):
                    builder.add(staged[name].entry)
                root = builder.finish()
                items_root = builder.items_root
                assert items_root is not None
                node_packs = nodes.finish(root)
            except BaseException:
                nodes.abort()
                raise
        except BaseException:
            if fenced:
                _unfence(store, run)  # nothing is sealed yet: leave the run open for a re-run, never stuck
            raise
        content_packs = sorted({s.pack for s in staged.values() if s.pack is not None})

        say("appending the closure commit")
        # A fresh nonce makes this sealer's commit unlike any other's, even one sealing the same tree with the same
        # key in the same millisecond: finding our digest in a slot we seemed to lose then proves it was our write.
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        evaluated_at = len(view.entries)
        for _ in range(MAX_SLOT_ATTEMPTS):
            head = view.head
            seq = 0 if head is None else head.seq + 1
            if seq != evaluated_at and policy is not None and policy.continuity and report.evidence is not None:
                # Runs sealed meanwhile may have moved a stream's end: continuity is judged against the chain as it
                # stands below our slot, so re-evaluate (evaluation is pure; the evidence is already read).
                criteria = evaluate(policy, report.evidence, commit_ends(e.commit.body for e in view.entries),
                                    report.criteria[1])
                report = Assessment(run, criteria, report.anchors, policy, report.waivers, report.evidence)
                evaluated_at = seq
                if not report.ok:
                    if fenced:
                        _unfence(store, run)
                    raise NotReady(run, report.criteria)
            body = CommitBody(run=run, seq=seq, parent=None if head is None else head.digest, root=root,
                              items_root=items_root, count=builder.count,
                              total_bytes=builder.bytes, time_ms=clock(), key=key.public.key_id,
                              log_size=seq, log_root=view.log_root(seq), nonce=nonce,
                              anchors=tuple(tuple(a.to_value()) for a in report.anchors),
                              policy=policy.digest if policy is not None else None,
                              criteria=tuple((c.name, c.ok, c.detail) for c in report.criteria),
                              waivers=tuple(report.waivers))
            body_bytes = body.encode()
            commit = SignedCommit(body_bytes, key.sign(body_bytes), body)
            if store.put_if_absent(slot_key(seq), commit.encode()):
                break
            # Lost the slot: read what won it (and anything after), then decide.
            new = view.refresh()
            mine = view.find_run(run, new)
            if mine is not None:
                if mine.digest == commit.digest:
                    break  # our own earlier attempt landed (ambiguous outcome): the seal is idempotent
                raise _sealed_error(run, mine.seq, mine.digest)
        else:
            raise Contention(f"run {run}: gave up after {MAX_SLOT_ATTEMPTS} lost slot races")

        marker = Marker(run, seq, commit.digest, tuple(content_packs + node_packs))
        store.put_if_absent(marker_key(run), marker.encode())
        _cleanup(store, run, batch_keys)
        return SealResult(run, seq, commit, False, report.criteria)
