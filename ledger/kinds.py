"""Typed evidence kinds: the schema of each record kind, its validation, and its default item name (spec/kinds.md).

A typed record is a JSON object checked field by field when it is recorded, so that a sealed run's offsets, receipts
and summaries can be reasoned about later (closure criteria, continuity, replay) without guessing. Validation is
strict -- unknown fields, wrong types, non-integers, negative counts are refused (exit 6) naming the field -- because
an auditor reads these records years later and a typo silently accepted then ("cout": 10) is a criterion that can
never be checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Refused
from .names import name_problem

TYPED_KINDS = ("offsets", "receipt", "summary", "artifact", "decision")
MAX_OFFSET = 2**63 - 1  # Kafka offsets are signed 64-bit
MAX_COUNT = 2**63 - 1
MAX_RECORD_BYTES = 1 << 20  # a typed record is a small JSON object; anything larger is not one
MAX_TEXT = 1024  # characters in a name-like field (topic, source, name, version, ...)
MAX_DEPTH = 100  # nesting levels of a JSON record

_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's own rule for topic names
_DIGEST_ALGS = {"b3": 64, "blake3": 64, "sha256": 64, "sha384": 96, "sha512": 128, "sha1": 40, "md5": 32}
_DIGEST_RE = re.compile(r"(?:([a-z0-9]+):)?([0-9a-f]+)")


class RecordError(Refused):
    """A record that is not valid for its kind (exit 6); the message names the record and the field."""


def _fail(what: str, field: str | None, problem: str) -> RecordError:
    return RecordError(f"{what}: field {field!r}: {problem}" if field is not None else f"{what}: {problem}")


def _int(v: Any, what: str, field: str, limit: int) -> int:
    if type(v) is not int:  # bool is an int subclass; 3.0 is a float: both refused
        kind = "a boolean" if isinstance(v, bool) else type(v).__name__ if v is not None else "null"
        raise _fail(what, field, f"must be an integer, got {kind}")
    if not 0 <= v <= limit:
        raise _fail(what, field, f"must be a non-negative integer (at most {limit}), got {v}")
    return v


def _text(v: Any, what: str, field: str) -> str:
    if not isinstance(v, str):
        raise _fail(what, field, f"must be a string, got {_type(v)}")
    if not v.strip():
        raise _fail(what, field, "must not be empty")
    if len(v) > MAX_TEXT:
        raise _fail(what, field, f"longer than {MAX_TEXT} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in v):
        raise _fail(what, field, "contains a control character")
    if not _utf8_ok(v):
        raise _fail(what, field, "is not valid Unicode text (a lone surrogate)")
    return v


def _utf8_ok(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _type(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def _digest_text(v: Any, what: str, field: str) -> str:
    """A digest written as ``[alg:]hex`` (lower-case hex; with a known algorithm, of its length)."""
    s = _text(v, what, field)
    m = _DIGEST_RE.fullmatch(s)
    if m is None or len(m.group(2)) < 32 or len(m.group(2)) > 128 or len(m.group(2)) % 2:
        raise _fail(what, field, "must be a digest: [algorithm:]hex, lower-case hex of 32 to 128 digits")
    alg = m.group(1)
    if alg is not None:
        want = _DIGEST_ALGS.get(alg)
        if want is None:
            raise _fail(what, field, f"unknown digest algorithm {alg!r} (known: {', '.join(_DIGEST_ALGS)})")
        if len(m.group(2)) != want:
            raise _fail(what, field, f"a {alg} digest has {want} hex digits, got {len(m.group(2))}")
    return s


def _scalar(v: Any, what: str, field: str) -> str | int:
    """A position such as a receipt's first/last: a non-negative integer (an offset) or a string (an id)."""
    if type(v) is int:
        return _int(v, what, field, MAX_OFFSET)
    if isinstance(v, str):
        return _text(v, what, field)
    raise _fail(what, field, f"must be an integer or a string, got {_type(v)}")


_Check = Callable[[Any, str, str], Any]
_COUNT: _Check = lambda v, w, f: _int(v, w, f, MAX_COUNT)  # noqa: E731
_OFFSET: _Check = lambda v, w, f: _int(v, w, f, MAX_OFFSET)  # noqa: E731


def _topic(v: Any, what: str, field: str) -> str:
    s = _text(v, what, field)
    if not _TOPIC_RE.fullmatch(s) or s in (".", ".."):
        raise _fail(what, field, "not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -, not '.' or '..')")
    return s


def _inputs(v: Any, what: str, field: str) -> list[str]:
    if not isinstance(v, list):
        raise _fail(what, field, f"must be an array of digests, got {_type(v)}")
    return [_digest_text(x, what, f"{field}[{i}]") for i, x in enumerate(v)]


# kind -> (required fields, optional fields), each field with its check
_SCHEMAS: dict[str, tuple[dict[str, _Check], dict[str, _Check]]] = {
    "offsets": ({"topic": _topic, "partition": lambda v, w, f: _int(v, w, f, 2**31 - 1), "start": _OFFSET,
                 "end": _OFFSET}, {"group": _text, "high": _OFFSET}),
    "receipt": ({"source": _text, "count": _COUNT},
                {"batch": _text, "digest": _digest_text, "first": _scalar, "last": _scalar, "topic": _topic,
                 "partition": lambda v, w, f: _int(v, w, f, 2**31 - 1)}),
    "artifact": ({"name": _text, "version": _text}, {"digest": _digest_text}),
    "decision": ({"name": _text, "outcome": _text}, {"reason": _text, "inputs": _inputs}),
}


def validate(kind: str, value: Any, what: str) -> Any:
    """Check ``value`` as a record of ``kind``; raise :class:`RecordError` (exit 6) naming the field. ``json``
    records may be any JSON value; every typed kind is a JSON object."""
    if kind not in _SCHEMAS and kind != "summary":
        return value  # json (any JSON value), and file/log (not records)
    if not isinstance(value, dict):
        raise _fail(what, None, f"a {kind} record must be a JSON object, got {_type(value)}")
    if kind == "summary":
        return _summary(value, what)
    required, optional = _SCHEMAS[kind]
    for f in required:
        if f not in value:
            raise _fail(what, f, "missing (required: " + ", ".join(sorted(required)) + ")")
    for f, v in value.items():
        check = required.get(f) or optional.get(f)
        if check is None:
            known = ", ".join(sorted(required) + sorted(optional))
            raise _fail(what, f, f"unknown field for kind {kind} (known: {known})")
        check(v, what, f)
    if kind == "offsets" and value["start"] > value["end"]:
        raise _fail(what, "start", f"start {value['start']} is after end {value['end']} (end is exclusive: "
                                   "the next offset to read)")
    if kind == "offsets" and "high" in value and value["high"] < value["end"]:
        raise _fail(what, "high", f"high watermark {value['high']} is below end {value['end']}")
    return value


def _summary(value: dict[str, Any], what: str) -> dict[str, Any]:
    """Outcome counts: every field a non-negative integer, except an optional ``name`` (which summary)."""
    counts = [f for f in value if f != "name"]
    if not counts:
        raise _fail(what, None, "a summary record needs at least one count field (e.g. \"ingested\")")
    for f, v in value.items():
        if f == "name":
            _text(v, what, f)
        else:
            if not f or len(f) > 128 or not _utf8_ok(f) or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in f):
                raise _fail(what, f, "a count's name is 1-128 characters of text without control characters")
            _int(v, what, f, MAX_COUNT)
    return value


def default_name(kind: str, value: Any, content_digest_hex: str) -> str:
    """The item name a record gets without ``--name``, from its kind and key fields, so that recording the same
    fact twice binds the same name (a no-op) and two different facts about one key conflict (exit 6)."""
    if kind == "offsets":
        group = f"{value['group']}/" if "group" in value else ""
        return f"offsets/{group}{value['topic']}/{value['partition']}.json"
    if kind == "receipt":
        if "batch" in value:
            tail = f"/{value['batch']}"
        elif "topic" in value and "partition" in value:
            tail = f"/{value['topic']}/{value['partition']}"
        else:
            tail = ""
        return f"receipts/{value['source']}{tail}.json"
    if kind == "summary":
        return f"summary/{value.get('name', 'summary')}.json"
    if kind == "artifact":
        return f"artifacts/{value['name']}.json"
    if kind == "decision":
        return f"decisions/{value['name']}.json"
    return f"records/{kind}/{content_digest_hex[:16]}.json"


def checked_default_name(kind: str, value: Any, content_digest_hex: str, what: str) -> str:
    name = default_name(kind, value, content_digest_hex)
    problem = name_problem(name)
    if problem:
        raise RecordError(f"{what}: its default name {name!r} is not a valid item name ({problem}); "
                          "give one with --name")
    return name


def parse_records(text: str | bytes, kind: str, what: str) -> list[Any]:
    """The records in a ``record`` argument: one JSON value, or for a typed kind a JSON array of them (one item
    per element). A ``json`` record is any one JSON value, arrays included."""
    value = strict_json(text, what)
    if kind != "json" and isinstance(value, list):
        if not value:
            raise RecordError(f"{what}: an empty array holds no records")
        return value
    return [value]


def canonical_json(value: Any) -> bytes:
    """The stored form of a record: sorted keys, no insignificant spaces, UTF-8; NaN and infinities refused."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise RecordError(f"record: {exc}") from None


def load_record(kind: str, content: bytes, what: str) -> Any:
    """Decode and validate a stored typed item's content (a file added with a typed kind, or a record)."""
    return validate(kind, strict_json(content, what), what)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} given twice")
        out[k] = v
    return out


def strict_json(text: str | bytes, what: str) -> Any:
    """RFC 8259 JSON, strictly: UTF-8 bytes (no BOM, no UTF-16/32), no NaN or Infinity, no repeated keys, at most
    100 levels deep. Python's json module alone is more lenient; a second verifier must not have to copy that."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"{what}: not valid JSON (not UTF-8: {exc.reason} at byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise RecordError(f"{what}: not valid JSON (starts with a byte order mark)")
    depth = max_depth = 0
    in_str = esc = False
    for c in text:  # nesting is bounded before parsing, so deep input cannot exhaust the recursion limit
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            max_depth = max(max_depth, depth)
            if depth > MAX_DEPTH:
                raise RecordError(f"{what}: not valid JSON (nested deeper than {MAX_DEPTH} levels)")
        elif c in "]}":
            depth -= 1
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise RecordError(f"{what}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise RecordError(f"{what}: not valid JSON ({exc})") from None


@dataclass(frozen=True, order=True)
class Offsets:
    """One offsets record: the half-open range [start, end) of one partition of a topic, for one consumer group."""

    group: str
    topic: str
    partition: int
    start: int
    end: int

    @property
    def stream(self) -> tuple[str, str, int]:
        return self.group, self.topic, self.partition

    def label(self) -> str:
        g = f"group {self.group} " if self.group else ""
        return f"{g}{self.topic}[{self.partition}]"

    def to_value(self) -> list[Any]:
        """The commit's form of this range (objects.md: ``anchors``); ``Offsets(*value)`` reads it back."""
        return [self.group, self.topic, self.partition, self.start, self.end]

    @classmethod
    def from_record(cls, value: Mapping[str, Any]) -> Offsets:
        return cls(str(value.get("group", "")), value["topic"], value["partition"], value["start"], value["end"])
