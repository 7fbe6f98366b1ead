"""Closure policies: what a run must prove before it may be sealed (spec/policy.md).

A policy is read from TOML files, composed (every file's rules must hold, plus the built-in ones), and reduced to a
canonical document whose digest is sealed into the commit, so ``verify`` can re-evaluate exactly the rules the sealer
applied over exactly the sealed evidence. Evaluation is a pure function of (policy, evidence, earlier anchors): no
I/O, no clock, so the sealer and every later verifier reach the same outcome.

An empty policy is an error, never a pass ("trivially valid" is how fail-open bugs start); so is an unknown rule, a
malformed value, or a reconciliation over a field no record has.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import encoding
from .digests import CTX_POLICY, FORMAT, Digest, content_digest, typed_digest
from .encoding import Value, check_fields
from .errors import DecodeError, LedgerError, NotFound, StorageError, UsageError
from .files import read_small_file
from .kinds import _TOPIC_RE, MAX_COUNT, MAX_RECORD_BYTES, TYPED_KINDS, Offsets
from .names import KINDS
from .objects import CommitBody, ItemEntry

MAX_PARTITIONS = 100_000
RULES = ("include", "min", "artifacts", "topics", "reconcile", "continuity")
SUMMABLE = {"receipt": ("count",), "offsets": ("span",), "summary": None}  # None: any count field of the record
MAX_SHOWN = 20  # evidence names listed per criterion


@dataclass(frozen=True)
class Criterion:
    """One criterion's outcome and the evidence it looked at (item names)."""

    name: str
    ok: bool
    detail: str
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "evidence": list(self.evidence)}

    def to_value(self) -> list[Value]:
        """What the commit seals: name, outcome and detail (the evidence list is derivable from the tree)."""
        return [self.name, self.ok, self.detail]


@dataclass(frozen=True)
class Reconcile:
    name: str
    left: tuple[str, ...]
    right: tuple[str, ...]

    def to_value(self) -> dict[str, Value]:
        return {"left": list(self.left), "name": self.name, "right": list(self.right)}


@dataclass(frozen=True)
class Policy:
    """The composed rules. ``sources`` names the files they came from (base name and BLAKE3 of the bytes)."""

    sources: tuple[tuple[str, str], ...] = ()
    min: Mapping[str, int] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()
    topics: Mapping[str, int] = field(default_factory=dict)
    reconcile: tuple[Reconcile, ...] = ()
    continuity: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.min or self.artifacts or self.topics or self.reconcile or self.continuity)

    def to_value(self) -> dict[str, Value]:
        return {"artifacts": sorted(self.artifacts), "continuity": sorted(self.continuity), "format": FORMAT,
                "min": dict(sorted(self.min.items())), "reconcile": [r.to_value() for r in self.reconcile],
                "sources": [list(s) for s in self.sources], "topics": dict(sorted(self.topics.items()))}

    def encode(self) -> bytes:
        return encoding.encode(self.to_value())

    @property
    def digest(self) -> Digest:
        return typed_digest(CTX_POLICY, self.encode())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "policy") -> Policy:
        """Strict decoder for a sealed policy document (untrusted bytes from a store or bundle)."""
        m = encoding.decode_map(data, what, {"artifacts": list, "continuity": list, "format": str, "min": dict,
                                             "reconcile": list, "sources": list, "topics": dict})
        if m["format"] != FORMAT:
            raise DecodeError(f"{what}: unsupported format {m['format']!r}")

        def strs(v: list[Value], f: str) -> tuple[str, ...]:
            if not all(isinstance(x, str) and x for x in v):
                raise DecodeError(f"{what}: {f}: not a list of names")
            return tuple(v)

        sources = []
        for s in m["sources"]:
            if not (isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s)):
                raise DecodeError(f"{what}: sources: malformed entry")
            sources.append((s[0], s[1]))
        rec = []
        for r in m["reconcile"]:
            c = check_fields(r, f"{what}: reconcile", {"left": list, "name": str, "right": list})
            rec.append(Reconcile(c["name"], strs(c["left"], "reconcile"), strs(c["right"], "reconcile")))
        for k, v in [*m["min"].items(), *m["topics"].items()]:
            if type(v) is not int or v < 1:
                raise DecodeError(f"{what}: {k}: not a positive integer")
        p = cls(tuple(sources), dict(m["min"]), strs(m["artifacts"], "artifacts"), dict(m["topics"]), tuple(rec),
                strs(m["continuity"], "continuity"))
        if p.encode() != data:
            raise DecodeError(f"{what}: not in canonical form")
        try:
            p.check()
        except UsageError as exc:
            raise DecodeError(f"{what}: {exc}") from None
        return p

    def check(self, where: str = "policy") -> None:
        """The rules are well-formed (also run on a decoded sealed policy)."""
        if self.empty:
            raise UsageError(f"{where}: declares no criteria; an empty policy is an error, never a pass")
        for kind, n in self.min.items():
            if kind not in KINDS:
                raise UsageError(f"{where}: rule min: unknown kind {kind!r} (known: {', '.join(KINDS)})")
            if type(n) is not int or not 1 <= n <= MAX_COUNT:
                raise UsageError(f"{where}: rule min.{kind}: must be a positive integer")
        for name, values in (("artifacts", self.artifacts), ("continuity", self.continuity)):
            if len(set(values)) != len(values):
                raise UsageError(f"{where}: rule {name}: an entry is given twice")
        for t in self.continuity:
            if t != "*" and (not _TOPIC_RE.fullmatch(t) or t in (".", "..")):
                raise UsageError(f"{where}: rule continuity: {t!r} is not a topic name (or \"*\")")
        names = [r.name for r in self.reconcile]
        _names([*self.artifacts, *names, *(t for r in self.reconcile for t in r.left + r.right)], where, "names")
        if len(set(names)) != len(names) or not all(names):
            raise UsageError(f"{where}: rule reconcile: names must be non-empty and unique")
        for t, n in self.topics.items():
            if not _TOPIC_RE.fullmatch(t) or t in (".", ".."):
                raise UsageError(f"{where}: rule topics: {t!r} is not a Kafka topic name")
            if type(n) is not int or not 1 <= n <= MAX_PARTITIONS:
                raise UsageError(f"{where}: rule topics.{t}: partition count must be an integer in "
                                 f"[1, {MAX_PARTITIONS}]")
        for r in self.reconcile:
            for side in (r.left, r.right):
                if not side:
                    raise UsageError(f"{where}: rule reconcile {r.name!r}: left and right must be non-empty")
                for term in side:
                    kind, _, fld = term.partition(".")
                    allowed = SUMMABLE.get(kind, ())
                    if not fld or (allowed is not None and fld not in allowed) or (kind, fld) == ("summary", "name"):
                        raise UsageError(
                            f"{where}: rule reconcile {r.name!r}: {term!r} is not a summable field (use "
                            "receipt.count, offsets.span or summary.<field>)")


# --- reading policy files ----------------------------------------------------------------------------------------

def load_policies(paths: Sequence[str]) -> Policy:
    """Read and compose policy files (each may ``include`` others, relative to itself)."""
    acc = _Acc()
    for p in paths:
        _load(p, acc, ())
    policy = acc.finish()
    policy.check("policy " + ", ".join(os.path.basename(p) for p in paths))
    return policy


@dataclass
class _Acc:
    sources: list[tuple[str, str]] = field(default_factory=list)
    min: dict[str, int] = field(default_factory=dict)
    artifacts: set[str] = field(default_factory=set)
    topics: dict[str, tuple[int, str]] = field(default_factory=dict)
    reconcile: list[Reconcile] = field(default_factory=list)
    continuity: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)

    def finish(self) -> Policy:
        return Policy(tuple(self.sources), self.min, tuple(sorted(self.artifacts)),
                      {t: n for t, (n, _) in self.topics.items()}, tuple(self.reconcile),
                      tuple(sorted(self.continuity)))


def _load(path: str, acc: _Acc, stack: tuple[str, ...]) -> None:
    if "\0" in path:
        raise UsageError(f"policy {path!r}: not a valid path (a NUL byte)")
    real = os.path.realpath(path)
    label = os.path.basename(path)
    if real in stack:
        raise UsageError(f"policy {label}: includes itself (cycle: {' -> '.join(map(os.path.basename, stack))})")
    if real in acc.seen:
        return  # composed once, however often included
    try:
        raw = read_small_file(path, "policy")
    except NotFound as exc:  # a policy that is not there is a usage error, as every other policy problem
        raise UsageError(str(exc)) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"policy {label}: malformed TOML ({exc})") from None
    except RecursionError:
        raise UsageError(f"policy {label}: malformed TOML (nested too deeply)") from None
    acc.seen.add(real)
    acc.sources.append((label, content_digest(raw).hex()))
    where = f"policy {label}"
    for key in doc:
        if key not in RULES:
            raise UsageError(f"{where}: unknown rule {key!r} (known: {', '.join(RULES)})")
    for inc in _str_list(doc.get("include", []), where, "include"):
        _load(os.path.join(os.path.dirname(path), inc), acc, (*stack, real))
    mins = _table(doc.get("min", {}), where, "min")
    for kind, n in mins.items():
        if kind not in KINDS:
            raise UsageError(f"{where}: rule min: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if type(n) is not int or n < 1:
            raise UsageError(f"{where}: rule min.{kind}: must be a positive integer, got {n!r}")
        acc.min[kind] = max(n, acc.min.get(kind, 0))
    acc.artifacts.update(_names(_str_list(doc.get("artifacts", []), where, "artifacts"), where, "artifacts"))
    for topic, n in _table(doc.get("topics", {}), where, "topics").items():
        if type(n) is not int or not 1 <= n <= MAX_PARTITIONS:
            raise UsageError(f"{where}: rule topics.{topic}: partition count must be an integer in "
                             f"[1, {MAX_PARTITIONS}], got {n!r}")
        if topic in acc.topics and acc.topics[topic][0] != n:
            raise UsageError(f"{where}: rule topics.{topic}: {n} partitions, but {acc.topics[topic][1]} says "
                             f"{acc.topics[topic][0]}")
        acc.topics[topic] = (n, label)
    rules = doc.get("reconcile", [])
    if not isinstance(rules, list):
        raise UsageError(f"{where}: rule reconcile: must be an array of tables ([[reconcile]])")
    for i, r in enumerate(rules):
        rw = f"{where}: rule reconcile #{i + 1}"
        if not isinstance(r, dict):
            raise UsageError(f"{rw}: must be a table with left and right")
        for k in r:
            if k not in ("name", "left", "right"):
                raise UsageError(f"{rw}: unknown key {k!r} (known: name, left, right)")
        left = tuple(_str_list(r.get("left", []), rw, "left"))
        right = tuple(_str_list(r.get("right", []), rw, "right"))
        name = r.get("name", f"{'+'.join(left)}={'+'.join(right)}")
        if not isinstance(name, str) or not name:
            raise UsageError(f"{rw}: name must be a non-empty string")
        _names([name, *left, *right], rw, "reconcile")
        rec = Reconcile(name, left, right)
        Policy(reconcile=(rec,)).check(rw)
        if any(x.name == name for x in acc.reconcile):
            raise UsageError(f"{rw}: a reconcile rule named {name!r} already exists")
        acc.reconcile.append(rec)
    acc.continuity.update(_str_list(doc.get("continuity", []), where, "continuity"))
    if not any(doc.get(k) for k in RULES):  # each file on its own: a truncated file must not pass silently
        raise UsageError(f"{where}: declares no criteria; an empty policy is an error, never a pass")


def _table(v: Any, where: str, rule: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise UsageError(f"{where}: rule {rule}: must be a table")
    return v


def _names(values: list[str], where: str, rule: str) -> list[str]:
    """Names that end up in criteria and error lines: printable text, so no policy can forge an output line."""
    for v in values:
        if len(v) > 1024 or any(c in _UNPRINTABLE or 0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise UsageError(f"{where}: rule {rule}: {v[:40]!r} is not a printable name")
    return values


# A fixed set, so that whether a sealed policy's names are acceptable never depends on the verifier's Unicode
# version: C0 and C1 controls, DEL, and the characters that break or hide a line (NEL is a C1 control).
_UNPRINTABLE = frozenset(
    [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u00a0", "\u1680", "\u180e", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2028", "\u2029",
       "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2060", "\u2066", "\u2067", "\u2068", "\u2069",
       "\ufeff"] + [chr(c) for c in range(0x2000, 0x200B)] + ["\u202f", "\u205f", "\u3000"])


def _str_list(v: Any, where: str, rule: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise UsageError(f"{where}: rule {rule}: must be an array of non-empty strings")
    return list(v)


# --- evidence and evaluation ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    name: str
    kind: str
    value: Any


@dataclass
class Evidence:
    """What the criteria look at: every item's name and kind, and the decoded typed records."""

    count: int
    kind_counts: dict[str, int]
    kinds: dict[str, list[str]]  # kind -> the first item names in name order (at most MAX_SHOWN)
    records: list[Record]  # valid typed records, by name
    invalid: list[tuple[str, str]]  # (item name, why its content is not a valid record)

    def of(self, kind: str) -> list[Record]:
        return [r for r in self.records if r.kind == kind]

    def offsets(self) -> list[tuple[str, Offsets]]:
        return [(r.name, Offsets.from_record(r.value)) for r in self.of("offsets")]


@dataclass(frozen=True)
class Anchor:
    """The end sealed for one stream (group, topic, partition) by an earlier run."""

    end: int
    run: str
    seq: int


def anchors(ev: Evidence) -> list[Offsets]:
    """The replay anchors sealed with a run: its offsets records, sorted by (group, topic, partition)."""
    return sorted(o for _, o in ev.offsets())


def _shown(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(names[:MAX_SHOWN])


def evaluate(policy: Policy | None, ev: Evidence, previous: Mapping[tuple[str, str, int], Anchor],
             present: Criterion | None = None) -> list[Criterion]:
    """Every criterion, built-in first, then the policy's in a fixed order. ``previous`` maps each stream to the
    end sealed for it by the latest earlier run that has it (from the chain's anchors). ``present`` is the
    ``content-present`` outcome, which only the caller can judge (the sealer over its staging area, a verifier by its
    own content step); it comes second."""
    out = [Criterion("non-empty", ev.count > 0, f"{ev.count} item(s)", ())]
    if present is not None:
        out.append(present)
    typed = [n for k in TYPED_KINDS for n in ev.kinds.get(k, [])]
    n_typed = sum(ev.kind_counts.get(k, 0) for k in TYPED_KINDS)
    if ev.invalid:
        name, why = ev.invalid[0]
        more = f" (and {len(ev.invalid) - 1} more)" if len(ev.invalid) > 1 else ""
        out.append(Criterion("records-valid", False, f"item {name}: {why}{more}", _shown([n for n, _ in ev.invalid])))
    else:
        out.append(Criterion("records-valid", True, f"{n_typed} typed record(s) valid", _shown(sorted(typed))))
    out.append(_coherent(ev))
    if policy is None:
        return out
    for kind, n in sorted(policy.min.items()):
        have = ev.kind_counts.get(kind, 0)
        out.append(Criterion(f"min:{kind}", have >= n, f"{have} {kind} item(s), at least {n} required",
                             _shown(ev.kinds.get(kind, []))))
    if policy.artifacts:
        arts = {r.value["name"]: r for r in ev.of("artifact")}
        missing = [a for a in policy.artifacts if a not in arts]
        got = ", ".join(f"{a} {arts[a].value['version']}" for a in policy.artifacts if a in arts)
        detail = (f"missing artifact(s): {', '.join(missing)}" + (f" (present: {got})" if got else "")
                  if missing else f"present: {got}")
        out.append(Criterion("artifacts", not missing, detail, _shown([arts[a].name for a in policy.artifacts
                                                                         if a in arts])))
    offs = ev.offsets()
    for topic, n in sorted(policy.topics.items()):
        parts = {o.partition: name for name, o in offs if o.topic == topic}
        missing_p = [p for p in range(n) if p not in parts]
        extra = sorted(p for p in parts if p >= n)
        problems = []
        if missing_p:
            problems.append(f"no offsets record for partition(s) {_ranges(missing_p)}")
        if extra:
            problems.append(f"partition(s) {_ranges(extra)} beyond the {n} the policy declares")
        detail = "; ".join(problems) if problems else f"all {n} partition(s) have offsets records"
        out.append(Criterion(f"topic:{topic}", not problems, f"topic {topic}: {detail}",
                             _shown([parts[p] for p in sorted(parts)])))
    for rule in policy.reconcile:
        out.append(_reconcile(rule, ev))
    if policy.continuity:
        out.append(_continuity(policy.continuity, offs, previous))
    return out


def _ranges(ps: list[int]) -> str:
    return ", ".join(map(str, ps[:10])) + (f", … ({len(ps)} in all)" if len(ps) > 10 else "")


def _coherent(ev: Evidence) -> Criterion:
    """One offsets range per stream and one version per artifact name: two answers to one question are a
    contradiction no later criterion should have to choose between."""
    problems: list[str] = []
    looked: list[str] = []
    streams: dict[tuple[str, str, int], str] = {}
    for name, o in ev.offsets():
        looked.append(name)
        if o.stream in streams:
            problems.append(f"items {streams[o.stream]} and {name} both give offsets for {o.label()}")
        streams.setdefault(o.stream, name)
    arts: dict[str, Record] = {}
    for r in ev.of("artifact"):
        looked.append(r.name)
        prev = arts.setdefault(r.value["name"], r)
        if prev is not r and prev.value["version"] != r.value["version"]:
            problems.append(f"artifact {r.value['name']}: items {prev.name} and {r.name} give versions "
                            f"{prev.value['version']} and {r.value['version']}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Criterion("records-coherent", False, problems[0] + more, _shown(looked))
    return Criterion("records-coherent", True, f"{len(streams)} offsets range(s), {len(arts)} artifact(s): "
                                               "no contradictions", _shown(looked))


def _term_value(term: str, ev: Evidence, used: list[str]) -> int:
    kind, _, fld = term.partition(".")
    records = ev.of(kind)
    total = 0
    found = False
    for r in records:
        if kind == "offsets" and fld == "span":
            total += r.value["end"] - r.value["start"]
            found = True
        elif fld in r.value and not (kind == "summary" and fld == "name"):
            total += r.value[fld]
            found = True
        else:
            continue
        used.append(r.name)
    if records and not found:
        seen = sorted({f for r in records for f in r.value if f != "name"})
        raise UsageError(f"policy: rule reconcile: field {term!r} is in no {kind} record (fields seen: "
                         f"{', '.join(seen)})")
    return total


def _reconcile(rule: Reconcile, ev: Evidence) -> Criterion:
    used: list[str] = []
    sides = []
    for side in (rule.left, rule.right):
        vals = [(t, _term_value(t, ev, used)) for t in side]
        sides.append((sum(v for _, v in vals), " + ".join(f"{t} {v}" for t, v in vals)))
    (lv, ls), (rv, rs) = sides
    missing = sorted({t.partition(".")[0] for t in rule.left + rule.right if not ev.of(t.partition(".")[0])})
    if missing:
        return Criterion(f"reconcile:{rule.name}", False, f"no {', '.join(missing)} record(s) to reconcile",
                         _shown(sorted(set(used))))
    detail = f"{ls} = {rs} (both {lv})" if lv == rv else f"{ls} ≠ {rs} ({lv} vs {rv}, off by {lv - rv:+d})"
    return Criterion(f"reconcile:{rule.name}", lv == rv, detail, _shown(sorted(set(used))))


def _continuity(topics: tuple[str, ...], offs: list[tuple[str, Offsets]],
                previous: Mapping[tuple[str, str, int], Anchor]) -> Criterion:
    """Each partition's range starts where the previous sealed run of the same stream ended: a later start is a
    gap (offsets never read), an earlier one an overlap (offsets read twice); both are reported as exact ranges."""
    every = "*" in topics
    problems: list[str] = []
    joined = first = 0
    looked: list[str] = []
    for name, o in sorted(offs, key=lambda x: x[1]):
        if not every and o.topic not in topics:
            continue
        looked.append(name)
        prev = previous.get(o.stream)
        if prev is None:
            first += 1
        elif o.start == prev.end:
            joined += 1
        elif o.start > prev.end:
            problems.append(f"{o.label()}: gap [{prev.end}, {o.start}) after run {prev.run} (#{prev.seq}) "
                            f"ended at {prev.end}: {o.start - prev.end} offset(s) never read")
        else:
            upto = min(prev.end, o.end)
            problems.append(f"{o.label()}: overlap [{o.start}, {upto}) with run {prev.run} (#{prev.seq}), which "
                            f"ended at {prev.end}: {upto - o.start} offset(s) read twice")
    if problems:
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        return Criterion("continuity", False, "; ".join(problems[:10]) + more, _shown(looked))
    which = "every topic" if every else ", ".join(topics)
    detail = f"{joined} partition(s) continue the previous sealed run, {first} start a stream ({which})"
    return Criterion("continuity", True, detail, _shown(looked))


def commit_ends(bodies: Iterable[CommitBody]) -> dict[tuple[str, str, int], Anchor]:
    """:func:`previous_ends` over earlier commit bodies (in chain order), from their sealed anchors."""
    return previous_ends([(b.seq, b.run, [Offsets(*a) for a in b.anchors]) for b in bodies])


def previous_ends(commits: Sequence[tuple[int, str, Sequence[Offsets]]]) -> dict[tuple[str, str, int], Anchor]:
    """From (seq, run, anchors) of earlier commits in chain order: each stream's latest sealed end."""
    out: dict[tuple[str, str, int], Anchor] = {}
    for seq, run, offs in commits:
        for o in offs:
            out[o.stream] = Anchor(o.end, run, seq)
    return out


class EvidenceBuilder:
    """Collects a run's items one by one (a million-item walk holds only counts, the first names of each kind and
    the typed items), then reads and validates the typed records."""

    def __init__(self) -> None:
        self.count = 0
        self.kind_counts: dict[str, int] = {}
        self.names: dict[str, list[str]] = {}
        self.typed: list[tuple[ItemEntry, bytes | None]] = []

    def add(self, e: ItemEntry, content: bytes | None = None) -> None:
        """``content``, when given, is the item's bytes already checked against its digest (not read again)."""
        self.count += 1
        self.kind_counts[e.kind] = self.kind_counts.get(e.kind, 0) + 1
        names = self.names.setdefault(e.kind, [])
        names.append(e.name)
        if len(names) > 4 * MAX_SHOWN:
            names.sort(key=_utf8)
            del names[MAX_SHOWN:]
        if e.kind in TYPED_KINDS:
            self.typed.append((e, content))

    def finish(self, read: Callable[[ItemEntry], bytes]) -> Evidence:
        """``read`` returns an item's checked content (it may raise; the failure makes the record invalid)."""
        from .kinds import load_record

        records: list[Record] = []
        invalid: list[tuple[str, str]] = []
        for e, content in self.typed:
            if e.size > MAX_RECORD_BYTES:
                invalid.append((e.name, f"{e.size} bytes: larger than a {e.kind} record can be"))
                continue
            try:
                value = load_record(e.kind, content if content is not None else read(e), f"{e.kind} record")
            except StorageError:
                raise  # the store could not be read: exit 5, never a verdict about the evidence
            except LedgerError as exc:
                invalid.append((e.name, str(exc)))
                continue
            records.append(Record(e.name, e.kind, value))
        for names in self.names.values():
            names.sort(key=_utf8)
            del names[MAX_SHOWN:]
        records.sort(key=lambda r: _utf8(r.name))
        invalid.sort()
        return Evidence(self.count, dict(self.kind_counts), self.names, records, invalid)


def _utf8(name: str) -> bytes:
    return name.encode("utf-8")


def build_evidence(entries: Iterable[ItemEntry], read: Callable[[ItemEntry], bytes]) -> Evidence:
    b = EvidenceBuilder()
    for e in entries:
        b.add(e)
    return b.finish(read)
