"""Structural diff of two evidence trees, and what changed inside typed records (spec/diff.md).

Both trees are prolly trees over the same name order, and node boundaries depend only on names, so two runs that
share most of their items share most of their nodes. The diff walks both trees at once and drops every pair of
equal subtrees (equal node ids) without reading them: its cost follows the number of changes and the tree depth,
not the size of the runs. Every node read is checked against its id, so a corrupt store fails the diff instead of
feeding it wrong items.

Pure functions over a node getter: no store, no output; the API opens the runs, the CLI presents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .digests import Digest
from .objects import ChildEntry, ItemEntry
from .tree import _node_checked

Getter = Callable[[Digest], bytes]


@dataclass(frozen=True)
class FieldChange:
    """One field of a typed record that differs; ``None`` on the side where the record (or field) is absent."""

    field: str
    a: Any
    b: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class Change:
    """An item present on one side only (added, removed) or on both with different entries (changed)."""

    name: str
    a: ItemEntry | None
    b: ItemEntry | None
    fields: tuple[FieldChange, ...] = ()

    @property
    def status(self) -> str:
        return "added" if self.a is None else "removed" if self.b is None else "changed"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "name": self.name, "a": _entry_json(self.a), "b": _entry_json(self.b),
                "fields": [f.to_json() for f in self.fields]}


def _entry_json(e: ItemEntry | None) -> dict[str, Any] | None:
    return None if e is None else {"kind": e.kind, "size": e.size, "blake3": e.blake3.hex()}


@dataclass
class DiffCounter:
    """What a diff has seen so far: changes by status, and the tree nodes it had to read."""

    added: int = 0
    removed: int = 0
    changed: int = 0
    nodes_read: int = 0
    subtrees_skipped: int = 0
    items_skipped: int = 0

    def count(self, c: Change) -> None:
        if c.a is None:
            self.added += 1
        elif c.b is None:
            self.removed += 1
        else:
            self.changed += 1

    @property
    def differ(self) -> bool:
        return bool(self.added or self.removed or self.changed)


# A pending position on one side: a subtree not yet opened (level, child) or an item.
_Pending = tuple[int, ChildEntry] | ItemEntry


def diff_trees(get_a: Getter, root_a: Digest, get_b: Getter, root_b: Digest,
               counter: DiffCounter | None = None, count_a: int | None = None) -> Iterator[Change]:
    """Yield the changes from tree ``root_a`` to tree ``root_b`` in name order (UTF-8 byte order).

    Each side is a stack of pending subtrees and items, next one on top. Equal subtrees on top of both stacks hold
    the same items, so both are dropped unread; otherwise the higher of the two (both, at equal levels) is opened
    and its entries pushed, until two items meet and are compared by name. ``count_a``, the items under
    ``root_a`` when the caller knows it (a commit says it), lets the counter account for equal roots, which are
    never read.
    """
    counter = counter if counter is not None else DiffCounter()
    if root_a == root_b:
        counter.subtrees_skipped += 1
        counter.items_skipped += count_a or 0
        return
    sa: list[_Pending] = []
    sb: list[_Pending] = []
    _open(get_a, root_a, None, None, sa, counter)
    _open(get_b, root_b, None, None, sb, counter)
    while sa and sb:
        ta, tb = sa[-1], sb[-1]
        if isinstance(ta, tuple) and isinstance(tb, tuple):
            (la, ca), (lb, cb) = ta, tb
            if ca.node == cb.node:
                sa.pop()
                sb.pop()
                counter.subtrees_skipped += 1
                counter.items_skipped += ca.count
                continue
            if la >= lb:
                _expand(get_a, sa, counter)
            if lb >= la:
                _expand(get_b, sb, counter)
            continue
        if isinstance(ta, tuple):
            _expand(get_a, sa, counter)
            continue
        if isinstance(tb, tuple):
            _expand(get_b, sb, counter)
            continue
        ka, kb = ta.name.encode("utf-8"), tb.name.encode("utf-8")
        if ka < kb:
            sa.pop()
            c = Change(ta.name, ta, None)
        elif kb < ka:
            sb.pop()
            c = Change(tb.name, None, tb)
        else:
            sa.pop()
            sb.pop()
            if ta == tb:
                counter.items_skipped += 1
                continue
            c = Change(ta.name, ta, tb)
        counter.count(c)
        yield c
    for stack, side, get in ((sa, "a", get_a), (sb, "b", get_b)):
        while stack:
            top = stack[-1]
            if isinstance(top, tuple):
                _expand(get, stack, counter)
                continue
            stack.pop()
            c = Change(top.name, top, None) if side == "a" else Change(top.name, None, top)
            counter.count(c)
            yield c


def _expand(get: Getter, stack: list[_Pending], counter: DiffCounter) -> None:
    top = stack.pop()
    assert isinstance(top, tuple)
    level, child = top
    _open(get, child.node, level, child.count, stack, counter)


def _open(get: Getter, nid: Digest, level: int | None, count: int | None, stack: list[_Pending],
          counter: DiffCounter) -> None:
    """Read node ``nid`` (checked against its id, level and count) and push its entries, first one on top."""
    lvl, entries = _node_checked(get, nid, level, count)
    counter.nodes_read += 1
    for e in reversed(entries):
        if isinstance(e, ItemEntry):
            stack.append(e)
        else:
            assert isinstance(e, ChildEntry)
            stack.append((lvl - 1, e))


# --- typed records -------------------------------------------------------------------------------------------------

SEMANTIC_KINDS = ("offsets", "receipt", "summary", "artifact", "decision")


def record_changes(kind: str, a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> tuple[FieldChange, ...]:
    """The top-level fields that differ between two validated records of a typed kind (spec/kinds.md): receipts'
    and summaries' counts, artifacts' versions and digests, decisions' outcomes. Every typed record is a flat JSON
    object whose fields are facts, so "which fields differ" is the semantic diff. An offsets record's start and
    end are one fact, its half-open range: they are reported together as ``range`` ([start, end] on each side).
    ``None`` stands for the side without the record or the field."""
    a = dict(a or {})
    b = dict(b or {})
    out = []
    if kind == "offsets":
        ra = [a.pop("start"), a.pop("end")] if "start" in a and "end" in a else None
        rb = [b.pop("start"), b.pop("end")] if "start" in b and "end" in b else None
        if ra != rb:
            out.append(FieldChange("range", ra, rb))
    for f in sorted(set(a) | set(b)):
        va, vb = a.get(f), b.get(f)
        if va != vb or type(va) is not type(vb):
            out.append(FieldChange(f, va, vb))
    return tuple(out)


@dataclass
class RunSide:
    """One run of a diff, as the commit seals it."""

    run: str
    seq: int
    commit: Digest
    root: Digest
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "seq": self.seq, "commit": self.commit.hex(), "root": self.root.hex(),
                "count": self.count}


@dataclass
class RunDiff:
    """The outcome of ``ledger diff``: both runs, the changes (streamed through ``changes``) and the counts."""

    a: RunSide
    b: RunSide
    changes: Iterator[Change]
    counter: DiffCounter = field(default_factory=DiffCounter)

    @property
    def unchanged(self) -> int:
        return self.a.count - self.counter.removed - self.counter.changed

    def stat_json(self) -> dict[str, int]:
        c = self.counter
        return {"added": c.added, "removed": c.removed, "changed": c.changed, "unchanged": self.unchanged}

    def summary(self) -> str:
        c = self.counter
        return f"{c.added} added, {c.removed} removed, {c.changed} changed, {self.unchanged} unchanged"
