"""Verification of a sealed run, in the numbered steps of spec/verify.md.

The verifier trusts nothing it reads: not the marker (a locator, checked against the chain), not a key id in the
commit (it only selects among the auditor's own keys), not the pack indexes (every byte they point at is re-hashed).
Each step records a :class:`Check`; the result is false if any step fails. Missing or damaged objects are check
failures (exit 1) naming the object; only an unreachable store is a storage error (exit 5).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .chain import LOG_HASHER, read_slot, slot_numbers
from .chainproofs import ConsistencyProof, verify_consistency_proof
from .digests import CTX_POLICY, Digest, content_digest, hash_file, hash_stream, typed_digest
from .errors import CheckFailed, LedgerError, NotFound, StorageError, UsageError
from .evidence import staged_batch_keys
from .keys import PublicKey
from .layout import CONFIG, marker_key, node_pack_ids, policy_key, slot_key
from .merkle import root_from_leaf_hashes
from .objects import CommitBody, ItemEntry, Marker, SignedCommit, StoreConfig
from .packs import ContentIndex, index_key, loose_key, pack_key
from .policy import Criterion, Evidence, EvidenceBuilder, Policy, anchors, commit_ends, evaluate
from .storage import Store, as_s3
from .tree import TreeBuilder, locate, walk, walk_leaves

if TYPE_CHECKING:
    from .storage.s3 import S3Store


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class VerifyResult:
    run: str
    commit: Digest | None = None
    root: Digest | None = None
    seq: int | None = None
    checks: list[Check] = field(default_factory=list)
    content_checked: bool = True

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def to_json(self) -> dict[str, object]:
        return {"run": self.run, "ok": self.ok, "commit": self.commit.hex() if self.commit else None,
                "root": self.root.hex() if self.root else None, "seq": self.seq,
                "content_checked": self.content_checked, "checks": [c.to_json() for c in self.checks]}


def _short(d: bytes) -> str:
    return "b3:" + d.hex()[:16]


@dataclass
class SealedRun:
    """A sealed run's commit and objects, located through its marker (read-only access for ls/cat/show)."""

    store: Store
    run: str
    marker: Marker | None
    seq: int
    commit: SignedCommit
    index: ContentIndex

    def node(self, nid: Digest) -> bytes:
        loc = self.index.locate(nid)
        if loc is None:
            raise CheckFailed(f"run {self.run}: tree node {_short(nid)}: missing from the store")
        try:
            return self.index.read_located(loc)
        except NotFound as exc:  # the pack file itself is gone: missing evidence (exit 1), not an unknown name
            raise CheckFailed(f"run {self.run}: tree node {_short(nid)}: {exc}") from None

    def items(self) -> Iterator[ItemEntry]:
        return walk(self.node, self.commit.body.root)

    def find(self, name: str) -> ItemEntry | None:
        """Descend by the children's last names: O(depth) node reads, not a full walk."""
        found = locate(self.node, self.commit.body.root, name)
        return None if found is None else found[1]

    def read(self, entry: ItemEntry) -> bytes:
        """An item's content, checked against its digest."""
        try:
            data = self.index.read(entry.blake3)
        except NotFound:
            try:  # a metadata-only bundle carries typed records loose, their packs left out
                data = self.store.get(loose_key(entry.blake3))
            except NotFound:
                raise CheckFailed(f"run {self.run}: item {entry.name}: content missing from the store") from None
        got = content_digest(data)
        if got != entry.blake3 or len(data) != entry.size:
            raise CheckFailed(f"run {self.run}: item {entry.name}: content hash mismatch "
                              f"(expected {_short(entry.blake3)}, got {_short(got)})")
        return data


def open_sealed(store: Store, run: str, nodes_only: bool = False) -> SealedRun:
    """Find a sealed run by its marker (or, if the marker is missing, in the chain). ``nodes_only`` loads only the
    tree-node packs (their ids derive from the root): enough to walk or diff the tree, without paying for the
    content packs' indexes, which for a run of a million items are most of the cost of opening it."""
    if not store.exists(CONFIG):
        raise NotFound(f"store {store.url}: no ledger store here")
    marker: Marker | None = None
    if store.exists(marker_key(run)):
        marker = Marker.from_bytes(store.get(marker_key(run)), f"run {run}: completion marker")
        seq = marker.seq
        try:
            commit = read_slot(store, seq)
        except NotFound:
            raise CheckFailed(f"run {run}: commit slot {seq} named by the completion marker is missing") from None
    else:
        found = None
        for s in slot_numbers(store):
            c = read_slot(store, s)
            if c.body.run == run:
                found = (s, c)
                break
        if found is None:
            if staged_batch_keys(store, run):
                raise NotFound(f"run {run}: not sealed")
            raise NotFound(f"run {run}: no such run")
        seq, commit = found
    index = ContentIndex(store)
    packs = marker.packs if marker is not None else ()
    if nodes_only:
        node_prefix = node_pack_ids(commit.body.root, 1)[0][:-4]
        packs = tuple(p for p in packs if p.startswith(node_prefix))
    for p in packs:
        try:
            index.load(p)
        except (CheckFailed, NotFound) as exc:
            raise CheckFailed(f"run {run}: completion marker names pack {p}: {exc}") from None
    if marker is None:
        index.load_all()
    return SealedRun(store, run, marker, seq, commit, index)


def _check_content(store: Store, sealed: SealedRun, entry: ItemEntry) -> tuple[str | None, bytes | None]:
    """(None, the bytes when they were read whole -- packed content) when the stored content matches the entry,
    else (why not, None). Step 7 reuses the checked bytes of typed records instead of reading them again."""
    d = entry.blake3
    data: bytes | None = None
    loc = sealed.index.locate(d)
    if loc is None:
        path = store.local_path(loose_key(d))
        try:
            if path is not None:
                if not os.path.exists(path):
                    return "content missing from the store", None
                got, size = hash_file(path)
            else:
                with store.open_read(loose_key(d)) as f:
                    got, size = hash_stream(f, entry.size)
        except NotFound:
            return "content missing from the store", None
        except OSError as exc:
            raise StorageError(f"{loose_key(d)}: {exc.strerror}") from None
        where = f"object {loose_key(d)}"
    else:
        try:
            data = sealed.index.read_located(loc)
        except CheckFailed as exc:
            return str(exc), None
        except NotFound:
            return f"content missing from the store (pack {loc[0]} is gone)", None
        got, size = content_digest(data), len(data)
        where = f"pack {loc[0]}"
    if size != entry.size:
        return f"content size mismatch in {where} (expected {entry.size} bytes, got {size})", None
    if got != d:
        return f"content hash mismatch in {where} (expected {_short(d)}, got {_short(got)})", None
    return None, data


def verify(store: Store, run: str, trusted: list[PublicKey],
           progress: Callable[[int, int], None] | None = None, content: bool = True,
           since: Since | None = None) -> VerifyResult:
    """Verify ``run`` completely (spec/verify.md). Raises NotFound when it is not sealed, StorageError when the
    store cannot be read; everything else is reported in the result. ``content=False`` (a metadata-only bundle)
    checks everything but the items' bytes, and says so."""
    if not trusted:
        raise UsageError("verify needs at least one trusted public key (--trust PUBFILE)")
    res = VerifyResult(run, content_checked=content)
    checks = res.checks

    def fail(name: str, detail: str) -> VerifyResult:
        prefix = f"run {run}: "
        checks.append(Check(name, False, detail if detail.startswith(prefix) else prefix + detail))
        return res

    # Step 1: the store is a ledger/1 store.
    if not store.exists_store() or not store.exists(CONFIG):
        raise NotFound(f"store {store.url}: no ledger store here")
    try:
        config = StoreConfig.from_bytes(store.get(CONFIG))
        checks.append(Check("store", True, "ledger/1 store"))
    except CheckFailed as exc:
        return fail("store", str(exc))

    # Step 2: load the commit the completion marker points at (the chain is searched when it is missing).
    try:
        sealed = open_sealed(store, run)
    except NotFound:
        raise
    except CheckFailed as exc:
        return fail("commit", str(exc))
    commit, body = sealed.commit, sealed.commit.body
    res.commit, res.root, res.seq = commit.digest, body.root, sealed.seq
    if body.run != run:
        via = "the completion marker points at " if sealed.marker is not None else ""
        return fail("commit", f"{via}commit slot {sealed.seq}, which seals run {body.run!r}, not this run")
    if body.seq != sealed.seq:
        return fail("commit", f"commit in slot {sealed.seq} says seq {body.seq}")
    checks.append(Check("commit", True, f"commit {_short(commit.digest)} in slot {sealed.seq}"))

    # Step 3: the signature, by a key the auditor trusts.
    key = next((k for k in trusted if k.key_id == body.key), None)
    if key is None:
        fail("signature", f"commit slot {sealed.seq} (commit {_short(commit.digest)}): signed by key "
                          f"{body.key.hex()[:16]}, which is not among the trusted keys")
    elif not key.verify(commit.body_bytes, commit.sig):
        fail("signature", f"commit slot {sealed.seq} (commit {_short(commit.digest)}): bad signature for key "
                          f"{body.key.hex()[:16]}")
    else:
        checks.append(Check("signature", True, f"Ed25519 signature by trusted key {body.key.hex()[:16]}"))

    # Steps 4 and 5: re-hash every item's content while walking the tree, then rebuild the root from the items.
    builder = TreeBuilder(None)
    bad: list[str] = []
    done = 0
    s3 = as_s3(store)
    loose: list[str] | None = [] if s3 is not None and config.lock is not None else None  # for step 8
    evb = EvidenceBuilder()  # for step 7: what the criteria look at
    records: Evidence | None = None
    try:
        for entry, encoded, leaf in walk_leaves(sealed.node, body.root):  # sealed.items(), with what it checked
            builder.add(entry, encoded, leaf)
            problem, checked = _check_content(store, sealed, entry) if content else (None, None)
            if problem is not None:
                bad.append(f"item {entry.name}: {problem}")
            elif loose is not None and sealed.index.locate(entry.blake3) is None:
                loose.append(loose_key(entry.blake3))
            evb.add(entry, checked)
            done += 1
            if progress is not None and done % 1000 == 0:
                progress(done, body.count)
        tree_problem = None
        records = evb.finish(sealed.read)
    except LedgerError as exc:
        if isinstance(exc, StorageError) and "truncated" not in str(exc):
            raise
        tree_problem = str(exc)
    except ValueError as exc:
        tree_problem = f"tree items out of order ({exc})"
    finally:
        sealed.index.close()
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        fail("content", bad[0] + more)
    elif tree_problem is None and not content:
        checks.append(Check("content", True, f"NOT CHECKED: metadata-only bundle; {done} item(s), {builder.bytes} "
                                             "bytes named by the tree, none of them re-hashed"))
    elif tree_problem is None:
        checks.append(Check("content", True, f"{done} item(s), {builder.bytes} bytes re-hashed"))
    if tree_problem is not None:
        fail("tree", tree_problem)
    else:
        root = builder.finish()
        if root != body.root:
            fail("tree", f"rebuilt root {_short(root)} differs from the sealed root {_short(body.root)}")
        elif builder.items_root != body.items_root:
            fail("tree", f"rebuilt items root {_short(builder.items_root or b'')} differs from the sealed items root "
                         f"{_short(body.items_root)}")
        elif builder.count != body.count or builder.bytes != body.total_bytes:
            fail("tree", f"commit says {body.count} items / {body.total_bytes} bytes, tree holds "
                         f"{builder.count} / {builder.bytes}")
        else:
            checks.append(Check("tree", True, f"root {_short(root)} and items root {_short(body.items_root)} "
                                             f"rebuilt from {builder.count} item(s)"))

    # Step 6: every link back to the genesis: slot numbers, seq fields, parent digests, the commit-log root.
    earlier: list[SignedCommit] | None = None
    try:
        chain_detail, earlier = _check_chain(store, run, sealed.seq, commit, since, trusted)
        checks.append(Check("chain", True, chain_detail))
    except CheckFailed as exc:
        fail("chain", str(exc))

    # Step 7: the closure criteria, re-evaluated from the sealed policy over the sealed evidence and the anchors
    # of the earlier commits, reach the outcome the commit records; the commit's anchors are the run's offsets.
    if records is not None and earlier is not None:
        try:
            checks.append(_check_criteria(store, body, records, earlier))
        except CheckFailed as exc:
            fail("criteria", str(exc))

    # Step 8: the completion marker, written last, names exactly this commit.
    if sealed.marker is None:
        fail("marker", f"completion marker missing: commit {_short(commit.digest)} is in the chain but the seal "
                       "did not complete (re-run `ledger seal`)")
    elif sealed.marker.run != run:
        fail("marker", f"completion marker names run {sealed.marker.run!r}, not {run}")
    elif sealed.marker.commit != commit.digest:
        fail("marker", f"completion marker names commit {_short(sealed.marker.commit)}, not this commit "
                       f"{_short(commit.digest)}")
    else:
        checks.append(Check("marker", True, "completion marker present"))

    # Step 9, S3 stores only: the Object Lock retention the run's write-once objects carry.
    if s3 is not None:
        checks.append(_check_retention(s3, run, config, sealed, loose or []))
    return res


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_retention(s3: S3Store, run: str, config: StoreConfig, sealed: SealedRun, loose: list[str]) -> Check:
    """Read the Object Lock retention of the run's write-once objects: the config, the commit slot, the marker,
    the marker's packs and indexes, and the run's loose content. With a lock in the config, every one of them MUST
    be retained in that mode (or compliance, which is stronger); without one, the commit slot's is only reported."""
    lock = config.lock
    if lock is None:
        found = s3.object_retention(slot_key(sealed.seq))
        also = (f"; commit slot {sealed.seq} is retained {found[0]} until {_when(found[1])} (a bucket default)"
                if found else "")
        return Check("retention", True, f"no Object Lock configured by the store config{also}")
    keys = [CONFIG, slot_key(sealed.seq)]
    if sealed.commit.body.policy is not None:
        keys.append(policy_key(sealed.commit.body.policy))
    if sealed.marker is not None:
        keys.append(marker_key(run))
        for p in sealed.marker.packs:
            keys += [pack_key(p), index_key(p)]
    keys = list(dict.fromkeys(keys + loose))  # one content stored once may be several items' content

    def look(key: str) -> tuple[str, datetime] | str:
        try:
            return s3.object_retention(key) or "no Object Lock retention"
        except NotFound:
            return "missing"

    problems: list[str] = []
    modes: set[str] = set()
    earliest: datetime | None = None
    for key, got in zip(keys, s3.pool.map(look, keys), strict=True):
        if isinstance(got, str):
            problems.append(f"object {key}: {got}")
            continue
        mode, until = got
        if mode != lock.mode and mode != "COMPLIANCE":
            problems.append(f"object {key}: retained in {mode} mode, the store config says {lock.mode}")
            continue
        modes.add(mode)
        earliest = until if earliest is None or until < earliest else earliest
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        hint = (" (the store config sets Object Lock; reading retention needs s3:GetObjectRetention)"
                if "no Object Lock retention" in problems[0] else "")
        return Check("retention", False, f"run {run}: {problems[0]}{more}{hint}")
    assert earliest is not None
    expired = " (expired)" if earliest <= datetime.now(UTC) else ""
    return Check("retention", True, f"Object Lock {'/'.join(sorted(modes))} on {len(keys)} object(s): retained "
                                    f"until {_when(earliest)}{expired} at the earliest")


def _check_criteria(store: Store, body: CommitBody, ev: Evidence, earlier: list[SignedCommit]) -> Check:
    policy: Policy | None = None
    if body.policy is not None:
        key = policy_key(body.policy)
        try:
            data = store.get(key)
        except NotFound:
            raise CheckFailed(f"sealed policy {key}: missing from the store") from None
        if typed_digest(CTX_POLICY, data) != body.policy:
            raise CheckFailed(f"sealed policy {key}: its bytes do not match the digest the commit names")
        policy = Policy.from_bytes(data, f"sealed policy {key}")
    try:
        # content-present is the one criterion the sealer judged over its staging area; step 4 re-checks the
        # content itself, so here it must simply be recorded, second and holding, like every re-evaluated one.
        got = evaluate(policy, ev, commit_ends(c.body for c in earlier),
                       Criterion("content-present", True, "checked by step 4"))
    except UsageError as exc:
        raise CheckFailed(f"the sealed policy cannot be evaluated over the sealed evidence: {exc}") from None
    sealed_criteria = list(body.criteria)
    want = [(c[0], c[1]) for c in sealed_criteria]
    have = [(c.name, c.ok) for c in got]
    if want != have:
        sealed_names = {c[0]: c for c in sealed_criteria}
        for c in got:
            s = sealed_names.get(c.name)
            if s is None:
                raise CheckFailed(f"criterion {c.name}: evaluated now, but not recorded in the commit")
            if s[1] != c.ok:
                raise CheckFailed(f"criterion {c.name}: sealed as {'holding' if s[1] else 'failing'}, re-evaluates "
                                  f"as {'holding' if c.ok else 'failing'} ({c.detail})")
        missing = [n for n in sealed_names if n not in {c.name for c in got}]
        if missing:
            raise CheckFailed(f"criterion {missing[0]}: recorded in the commit but not evaluated by the sealed "
                              "policy")
        raise CheckFailed(f"the commit records criteria {[n for n, _ in want]}, re-evaluation gives "
                          f"{[n for n, _ in have]} (order or repetition differs)")
    failing = [c for c in got if not c.ok]
    if failing:
        raise CheckFailed(f"criterion {failing[0].name} does not hold ({failing[0].detail}), yet the run is sealed")
    want_anchors = tuple(tuple(a.to_value()) for a in anchors(ev))
    if want_anchors != body.anchors:
        raise CheckFailed(f"the commit's replay anchors ({len(body.anchors)}) are not the run's offsets records "
                          f"({len(want_anchors)})")
    pol = f"policy {_short(body.policy)}" if body.policy is not None else "built-in criteria only"
    return Check("criteria", True, f"{len(got)} criteria re-evaluated ({pol}): all hold as sealed; "
                                   f"{len(body.anchors)} replay anchor(s); {len(body.waivers)} waived secret "
                                   "finding(s)")


@dataclass(frozen=True)
class Since:
    """Verify the chain back to a checkpoint the auditor trusts instead of the genesis: the signed head they kept,
    and the proof (carried by a bundle) that the run's commit log extends it."""

    checkpoint: SignedCommit
    proof: ConsistencyProof


def _check_chain(store: Store, run: str, seq: int, commit: SignedCommit, since: Since | None = None,
                 trusted: Sequence[PublicKey] = ()) -> tuple[str, list[SignedCommit]]:
    first = 0 if since is None else since.checkpoint.body.seq
    if first > seq:
        raise CheckFailed(f"chain: the checkpoint (#{first}) is newer than the run's commit (#{seq})")
    slots = [s for s in slot_numbers(store) if s >= first]
    if slots[: seq + 1 - first] != list(range(first, seq + 1)):
        raise CheckFailed(f"chain: slots {first}..{seq} are not all present")
    digests: list[bytes] = []
    earlier: list[SignedCommit] = []
    prev: bytes | None = None
    if since is not None:
        cp = since.checkpoint
        base = commit if first == seq else read_slot(store, first)
        if base.digest != cp.digest:
            raise CheckFailed(f"chain: slot {first} holds commit {_short(base.digest)}, not the checkpoint's "
                              f"{_short(cp.digest)} (a checkpoint from another ledger, or a rewritten chain)")
        p = since.proof
        if p.old.digest != cp.digest or p.new.digest != commit.digest:
            raise CheckFailed("chain: the bundle's consistency proof is not from the checkpoint to this commit")
        try:
            verify_consistency_proof(p, list(trusted))
        except CheckFailed as exc:
            raise CheckFailed(f"chain: consistency from checkpoint #{first}: {exc}") from None
    for s in range(first, seq + 1):
        c = commit if s == seq else read_slot(store, s)
        if s < seq:
            earlier.append(c)
        b = c.body
        if b.seq != s:
            raise CheckFailed(f"chain: commit in slot {s} says seq {b.seq}")
        if s == first and since is not None:
            pass  # the checkpoint is trusted as it is (its digest was compared); its parent lies before the bundle
        elif b.parent != prev:
            if prev is None:
                raise CheckFailed(f"chain: commit slot 0 (commit {_short(c.digest)}) has a parent; the genesis "
                                  "commit has none")
            raise CheckFailed(f"chain: commit slot {s} does not link to commit slot {s - 1}: it names parent "
                              f"{_short(b.parent) if b.parent else 'none'}, slot {s - 1} holds commit {_short(prev)}")
        if s < seq and b.run == run:
            raise CheckFailed(f"chain: run {run} is sealed twice (#{s} and #{seq})")
        prev = c.digest
        digests.append(c.digest)
    if since is not None:
        hashes = len(since.proof.consistency) + len(since.proof.inclusion)
        return (f"{seq + 1 - first} commit(s) linked back to the trusted checkpoint #{first}; its log extends the "
                f"checkpoint's ({hashes} hashes)", earlier)
    want = root_from_leaf_hashes(LOG_HASHER, [LOG_HASHER.leaf(d) for d in digests[:seq]])
    if commit.body.log_root != want:
        raise CheckFailed(f"chain: commit {_short(commit.digest)} commits to a log root that does not match "
                          f"the {seq} commit(s) before it")
    return f"{seq + 1} commit(s) linked back to the genesis", earlier
