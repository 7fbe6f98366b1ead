"""Run ids, item names and kinds, validated before a single byte is stored (cli.md, "Names")."""

from __future__ import annotations

import re

from .errors import Refused, UsageError

_RUN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_NAME_BYTES = 1024
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BAD_SEGMENTS = frozenset(("", ".", ".."))

# Kinds the ledger knows. Typed kinds (offsets, receipt, summary, artifact, decision) are validated against their
# schemas (ledger/kinds.py, spec/kinds.md); json is any JSON value; file and log are any bytes.
KINDS = ("file", "log", "json", "offsets", "receipt", "summary", "artifact", "decision")
RECORD_KINDS = ("json", "offsets", "receipt", "summary", "artifact", "decision")


def is_run_id(run: str) -> bool:
    return bool(_RUN_RE.fullmatch(run))


def check_run_id(run: str) -> str:
    """A run id is 1-128 of ``A-Z a-z 0-9 . _ -``, not starting with ``.`` or ``-``; anything else is a usage error."""
    if not is_run_id(run):
        raise UsageError(f"invalid run id {run!r}: use 1-128 of A-Z a-z 0-9 . _ -, not starting with . or -")
    return run


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid item name, or None when it is."""
    if not name:
        return "empty name"
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if len(raw) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} UTF-8 bytes"
    if name.startswith("/"):
        return "absolute path (leading /)"
    bad = _CONTROL_RE.search(name)  # the first C0/C1 control character or DEL, as a per-character loop would find
    if bad is not None:
        return f"control character U+{ord(bad.group()):04X}"
    segments = name.split("/")
    if not _BAD_SEGMENTS.isdisjoint(segments):
        for seg in segments:
            if seg in _BAD_SEGMENTS:
                return f"empty, '.' or '..' path segment {seg!r}"
    return None


def check_name(name: str, run: str | None = None) -> str:
    """Refuse (exit 6) anything that is not a relative POSIX path of at most 1024 bytes without ., .. or controls."""
    problem = name_problem(name)
    if problem:
        where = f"run {run}: " if run else ""
        raise Refused(f"{where}invalid item name {name!r}: {problem}")
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise Refused(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind
