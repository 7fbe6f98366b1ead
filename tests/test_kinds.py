"""Typed evidence kinds (ledger.kinds): schemas, validation, default names, canonical JSON.

Every valid record of every kind is accepted as it is; every invalid one is refused with a ``RecordError`` (exit 6)
whose message names the field. Default names come from the kind and its key fields only, and a default name that
is not a valid item name is refused asking for ``--name``. Property tests: generated valid records are accepted,
their canonical JSON round-trips, their default name is stable; arbitrary JSON values (and arbitrary bytes) are
either accepted or refused with ``RecordError`` -- never any other exception.
"""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import Refused
from ledger.kinds import (
    MAX_COUNT,
    MAX_DEPTH,
    MAX_OFFSET,
    TYPED_KINDS,
    Offsets,
    RecordError,
    canonical_json,
    checked_default_name,
    default_name,
    load_record,
    parse_records,
    validate,
)
from ledger.names import name_problem

HEX64 = "0123456789abcdef" * 4
DIGEST_HEX = "ab" * 32  # 64 lower-case hex digits
WHAT = "run r1: rec"

VALID: dict[str, list[dict[str, Any]]] = {
    "offsets": [
        {"topic": "orders", "partition": 0, "start": 0, "end": 0},
        {"topic": "orders.v2_x-y", "partition": 2**31 - 1, "start": 5, "end": MAX_OFFSET},
        {"topic": "o", "partition": 3, "start": 10, "end": 20, "group": "etl", "high": 20},
        {"topic": "o", "partition": 3, "start": 10, "end": 20, "high": 99},
    ],
    "receipt": [
        {"source": "s3-drop", "count": 0},
        {"source": "kafka/orders", "count": MAX_COUNT, "batch": "2024-01-01", "digest": "b3:" + DIGEST_HEX,
         "first": 0, "last": "id-99", "topic": "orders", "partition": 7},
        {"source": "sftp", "count": 3, "digest": DIGEST_HEX, "first": "a", "last": MAX_OFFSET},
        {"source": "sftp", "count": 3, "digest": "sha512:" + "0f" * 64},
        {"source": "sftp", "count": 3, "digest": "md5:" + "0f" * 16},
    ],
    "summary": [
        {"ingested": 1000, "quarantined": 0},
        {"name": "load", "rows": MAX_COUNT},
        {"x" * 128: 1},
    ],
    "artifact": [
        {"name": "model", "version": "1.4.2"},
        {"name": "image", "version": "sha-abc", "digest": "sha256:" + HEX64},
        {"name": "lib", "version": "é 2", "digest": "sha1:" + "12" * 20},
    ],
    "decision": [
        {"name": "promote", "outcome": "approved"},
        {"name": "promote", "outcome": "rejected", "reason": "drift above threshold",
         "inputs": ["b3:" + DIGEST_HEX, "sha384:" + "cd" * 48]},
        {"name": "promote", "outcome": "approved", "inputs": []},
    ],
}


def refused(kind: str, value: Any) -> str:
    """Validation of ``value`` is refused with RecordError (exit 6); its message."""
    with pytest.raises(RecordError) as info:
        validate(kind, value, WHAT)
    err = info.value
    assert isinstance(err, Refused) and err.exit_code == 6
    msg = str(err)
    assert msg.startswith(WHAT + ": "), msg
    assert "\n" not in msg, msg
    return msg


# --- valid records -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "value"), [(k, v) for k, vs in VALID.items() for v in vs],
                         ids=[f"{k}-{i}" for k, vs in VALID.items() for i in range(len(vs))])
def test_valid_records_accepted_unchanged(kind: str, value: dict[str, Any]) -> None:
    copy = json.loads(json.dumps(value))
    assert validate(kind, value, WHAT) == copy
    assert value == copy, "validation must not change the record"
    # the stored form is canonical JSON, and loading it back validates to the same record
    assert load_record(kind, canonical_json(value), WHAT) == copy


def test_every_typed_kind_has_valid_examples() -> None:
    assert set(VALID) == set(TYPED_KINDS)


def test_json_kind_takes_any_json_value() -> None:
    for v in (None, 1, 2.5, "x", [1, {"a": None}], {"anything": [True]}):
        assert validate("json", v, WHAT) == v


@pytest.mark.parametrize("kind", TYPED_KINDS)
@pytest.mark.parametrize("value", [[], [{"a": 1}], "x", 1, 1.5, None, True], ids=repr)
def test_typed_record_must_be_an_object(kind: str, value: Any) -> None:
    msg = refused(kind, value)
    assert f"a {kind} record must be a JSON object" in msg


# --- invalid records, each naming the field ------------------------------------------------------------------------

OFF = {"topic": "orders", "partition": 0, "start": 0, "end": 10}
REC = {"source": "s3", "count": 1}
ART = {"name": "model", "version": "1"}
DEC = {"name": "promote", "outcome": "ok"}

INVALID: dict[str, tuple[str, dict[str, Any], str, str]] = {
    # id: (kind, value, field named, fragment of the problem)
    "offsets-missing-topic": ("offsets", {"partition": 0, "start": 0, "end": 1}, "topic", "missing"),
    "offsets-missing-end": ("offsets", {"topic": "t", "partition": 0, "start": 0}, "end", "missing"),
    "receipt-missing-count": ("receipt", {"source": "s"}, "count", "missing"),
    "artifact-missing-version": ("artifact", {"name": "m"}, "version", "missing"),
    "decision-missing-outcome": ("decision", {"name": "d"}, "outcome", "missing"),
    "offsets-unknown": ("offsets", OFF | {"cout": 1}, "cout", "unknown field for kind offsets"),
    "receipt-unknown": ("receipt", REC | {"partitions": 1}, "partitions", "unknown field for kind receipt"),
    "artifact-unknown": ("artifact", ART | {"sha": "x"}, "sha", "unknown field for kind artifact"),
    "decision-unknown": ("decision", DEC | {"why": "x"}, "why", "unknown field for kind decision"),
    "offsets-start-string": ("offsets", OFF | {"start": "0"}, "start", "must be an integer, got str"),
    "offsets-partition-null": ("offsets", OFF | {"partition": None}, "partition", "must be an integer, got null"),
    "offsets-topic-int": ("offsets", OFF | {"topic": 5}, "topic", "must be a string, got an integer"),
    "receipt-count-list": ("receipt", REC | {"count": [1]}, "count", "must be an integer, got list"),
    "receipt-source-object": ("receipt", REC | {"source": {}}, "source", "must be a string, got an object"),
    "receipt-first-float": ("receipt", REC | {"first": 1.5}, "first", "must be an integer or a string"),
    "receipt-first-bool": ("receipt", REC | {"first": True}, "first", "got a boolean"),
    "artifact-version-int": ("artifact", ART | {"version": 2}, "version", "must be a string"),
    "decision-inputs-string": ("decision", DEC | {"inputs": "b3:" + DIGEST_HEX}, "inputs", "must be an array"),
    "offsets-end-bool": ("offsets", OFF | {"end": True}, "end", "must be an integer, got a boolean"),
    "receipt-count-bool": ("receipt", REC | {"count": False}, "count", "must be an integer, got a boolean"),
    "offsets-partition-bool": ("offsets", OFF | {"partition": True}, "partition", "got a boolean"),
    "offsets-start-float": ("offsets", OFF | {"start": 3.0}, "start", "must be an integer, got float"),
    "receipt-count-float": ("receipt", REC | {"count": 3.0}, "count", "must be an integer, got float"),
    "offsets-high-float": ("offsets", OFF | {"high": 10.0}, "high", "must be an integer, got float"),
    "receipt-count-negative": ("receipt", REC | {"count": -1}, "count", "non-negative integer"),
    "offsets-start-negative": ("offsets", OFF | {"start": -5}, "start", "non-negative integer"),
    "offsets-partition-negative": ("offsets", OFF | {"partition": -1}, "partition", "non-negative integer"),
    "receipt-partition-negative": ("receipt", REC | {"partition": -1}, "partition", "non-negative integer"),
    "receipt-first-negative": ("receipt", REC | {"first": -1}, "first", "non-negative integer"),
    "offsets-end-too-large": ("offsets", OFF | {"end": MAX_OFFSET + 1}, "end", f"at most {MAX_OFFSET}"),
    "offsets-partition-too-large": ("offsets", OFF | {"partition": 2**31}, "partition", f"at most {2**31 - 1}"),
    "receipt-count-too-large": ("receipt", REC | {"count": MAX_COUNT + 1}, "count", f"at most {MAX_COUNT}"),
    "offsets-start-after-end": ("offsets", OFF | {"start": 11, "end": 10}, "start", "start 11 is after end 10"),
    "offsets-high-below-end": ("offsets", OFF | {"high": 9}, "high", "high watermark 9 is below end 10"),
    "offsets-topic-space": ("offsets", OFF | {"topic": "my topic"}, "topic", "not a Kafka topic name"),
    "offsets-topic-slash": ("offsets", OFF | {"topic": "a/b"}, "topic", "not a Kafka topic name"),
    "offsets-topic-dot": ("offsets", OFF | {"topic": "."}, "topic", "not a Kafka topic name"),
    "offsets-topic-dotdot": ("offsets", OFF | {"topic": ".."}, "topic", "not a Kafka topic name"),
    "offsets-topic-250": ("offsets", OFF | {"topic": "t" * 250}, "topic", "not a Kafka topic name"),
    "receipt-topic-unicode": ("receipt", REC | {"topic": "tópico"}, "topic", "not a Kafka topic name"),
    "offsets-topic-empty": ("offsets", OFF | {"topic": ""}, "topic", "must not be empty"),
    "offsets-group-blank": ("offsets", OFF | {"group": "  "}, "group", "must not be empty"),
    "receipt-source-empty": ("receipt", REC | {"source": ""}, "source", "must not be empty"),
    "receipt-batch-empty": ("receipt", REC | {"batch": ""}, "batch", "must not be empty"),
    "artifact-name-empty": ("artifact", ART | {"name": ""}, "name", "must not be empty"),
    "decision-reason-empty": ("decision", DEC | {"reason": "\t"}, "reason", "must not be empty"),
    "receipt-first-empty": ("receipt", REC | {"first": ""}, "first", "must not be empty"),
    "artifact-name-long": ("artifact", ART | {"name": "n" * 1025}, "name", "longer than 1024 characters"),
    "receipt-source-newline": ("receipt", REC | {"source": "a\nb"}, "source", "control character"),
    "artifact-version-nul": ("artifact", ART | {"version": "1\x00"}, "version", "control character"),
    "offsets-group-del": ("offsets", OFF | {"group": "g\x7f"}, "group", "control character"),
    "decision-outcome-c1": ("decision", DEC | {"outcome": "ok\x85"}, "outcome", "control character"),
    "receipt-last-escape": ("receipt", REC | {"last": "\x1b[31m"}, "last", "control character"),
    "receipt-digest-short": ("receipt", REC | {"digest": "ab" * 15}, "digest", "32 to 128 digits"),
    "receipt-digest-odd": ("receipt", REC | {"digest": "a" * 63}, "digest", "32 to 128 digits"),
    "receipt-digest-long": ("receipt", REC | {"digest": "ab" * 65}, "digest", "32 to 128 digits"),
    "receipt-digest-upper": ("receipt", REC | {"digest": DIGEST_HEX.upper()}, "digest", "lower-case hex"),
    "artifact-digest-upper-alg": ("artifact", ART | {"digest": "sha256:" + HEX64.upper()}, "digest",
                                  "lower-case hex"),
    "artifact-digest-not-hex": ("artifact", ART | {"digest": "g" * 64}, "digest", "must be a digest"),
    "artifact-digest-sha256-short": ("artifact", ART | {"digest": "sha256:" + "ab" * 20}, "digest",
                                     "a sha256 digest has 64 hex digits, got 40"),
    "artifact-digest-md5-long": ("artifact", ART | {"digest": "md5:" + HEX64}, "digest",
                                 "a md5 digest has 32 hex digits, got 64"),
    "artifact-digest-sha1-64": ("artifact", ART | {"digest": "sha1:" + HEX64}, "digest",
                                "a sha1 digest has 40 hex digits, got 64"),
    "artifact-digest-unknown-alg": ("artifact", ART | {"digest": "crc32:" + HEX64}, "digest",
                                    "unknown digest algorithm 'crc32'"),
    "artifact-digest-upper-alg-name": ("artifact", ART | {"digest": "SHA256:" + HEX64}, "digest",
                                       "must be a digest"),
    "artifact-digest-int": ("artifact", ART | {"digest": 5}, "digest", "must be a string"),
    "decision-input-bad": ("decision", DEC | {"inputs": ["b3:" + DIGEST_HEX, "nope"]}, "inputs[1]",
                           "must be a digest"),
    "summary-string-value": ("summary", {"ingested": "10"}, "ingested", "must be an integer, got str"),
    "summary-float-value": ("summary", {"ingested": 10.0}, "ingested", "must be an integer, got float"),
    "summary-fraction-value": ("summary", {"ingested": 10.5}, "ingested", "must be an integer, got float"),
    "summary-bool-value": ("summary", {"ok": True}, "ok", "must be an integer, got a boolean"),
    "summary-null-value": ("summary", {"n": None}, "n", "must be an integer, got null"),
    "summary-list-value": ("summary", {"n": [1]}, "n", "must be an integer, got list"),
    "summary-negative": ("summary", {"dropped": -1}, "dropped", "non-negative integer"),
    "summary-too-large": ("summary", {"n": MAX_COUNT + 1}, "n", f"at most {MAX_COUNT}"),
    "summary-long-field": ("summary", {"f" * 129: 1}, "f" * 129, "a count's name is 1-128 characters"),
    "summary-field-newline": ("summary", {"rows\nextra": 1}, "rows\nextra", "without control characters"),
    "summary-field-c1": ("summary", {"rows\x85": 1}, "rows\x85", "without control characters"),
    "summary-field-surrogate": ("summary", {"rows\ud800": 1}, "rows\ud800", "1-128 characters of text"),
    "offsets-group-surrogate": ("offsets", OFF | {"group": "\ud800"}, "group", "lone surrogate"),
    "artifact-version-surrogate": ("artifact", ART | {"version": "1\udfff"}, "version", "lone surrogate"),
    "summary-name-surrogate": ("summary", {"name": "\udc00", "n": 1}, "name", "lone surrogate"),
    "summary-name-int": ("summary", {"name": 3, "n": 1}, "name", "must be a string"),
    "summary-name-empty": ("summary", {"name": "", "n": 1}, "name", "must not be empty"),
    "summary-name-control": ("summary", {"name": "a\nb", "n": 1}, "name", "control character"),
}


@pytest.mark.parametrize(("kind", "value", "field", "fragment"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_records_refused_naming_the_field(kind: str, value: dict[str, Any], field: str,
                                                  fragment: str) -> None:
    msg = refused(kind, value)
    assert f"field {field!r}" in msg, msg
    assert fragment in msg, msg
    # the same refusal from stored bytes (a file added with --kind, or a sealed item re-read by verify)
    with pytest.raises(RecordError) as info:
        load_record(kind, json.dumps(value).encode(), WHAT)
    assert str(info.value) == msg


def test_missing_field_lists_the_required_ones() -> None:
    msg = refused("offsets", {"topic": "t"})
    assert "field 'partition'" in msg and "required: end, partition, start, topic" in msg
    msg = refused("receipt", {})
    assert "field 'source'" in msg and "required: count, source" in msg


def test_unknown_field_lists_the_known_ones() -> None:
    msg = refused("artifact", ART | {"sha": "x"})
    assert "known: name, version, digest" in msg


@pytest.mark.parametrize("value", [{}, {"name": "only-a-name"}], ids=["empty", "name-only"])
def test_summary_without_a_count_field_refused(value: dict[str, Any]) -> None:
    msg = refused("summary", value)
    assert "needs at least one count field" in msg


def test_summary_empty_field_name_refused() -> None:
    assert "field '': a count's name is 1-128 characters" in refused("summary", {"": 1})


def test_summary_field_names_are_free_text() -> None:
    # besides the length, only control characters and lone surrogates are refused in a count field's name
    for f in ("late.events", "dup licates", "x" * 128, "é"):
        validate("summary", {f: 1}, WHAT)


def test_boundaries_accepted() -> None:
    validate("offsets", OFF | {"start": 10, "end": 10, "high": 10}, WHAT)  # empty range, high == end
    validate("artifact", ART | {"name": "n" * 1024}, WHAT)
    validate("receipt", REC | {"digest": "ab" * 16}, WHAT)  # 32 digits, no algorithm
    validate("receipt", REC | {"digest": "ab" * 64}, WHAT)  # 128 digits
    validate("receipt", REC | {"digest": "blake3:" + DIGEST_HEX}, WHAT)
    validate("offsets", OFF | {"topic": "t" * 249}, WHAT)


# --- parse_records, canonical_json ---------------------------------------------------------------------------------

def test_parse_records_single_and_array() -> None:
    assert parse_records('{"a": 1}', "summary", WHAT) == [{"a": 1}]
    assert parse_records(b'[{"a": 1}, {"b": 2}]', "summary", WHAT) == [{"a": 1}, {"b": 2}]
    # a json record is one value, arrays included
    assert parse_records("[1, 2]", "json", WHAT) == [[1, 2]]
    with pytest.raises(RecordError, match="an empty array holds no records"):
        parse_records("[]", "offsets", WHAT)
    for bad in ("{broken", "", b"\xff\xfe{", "1 2"):
        with pytest.raises(RecordError, match="not valid JSON"):
            parse_records(bad, "summary", WHAT)


def test_canonical_json_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, "é"], "c": None}}) == '{"a":{"c":null,"d":[1,"é"]},"b":1}'.encode()
    with pytest.raises(RecordError):
        canonical_json({"x": float("nan")})
    with pytest.raises(RecordError):
        canonical_json({"x": float("inf")})


@pytest.mark.parametrize("fn", ["parse_records", "load_record"])
def test_deeply_nested_json_is_refused_not_crashing(fn: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecordError, match="nested deeper than"):
        if fn == "parse_records":
            parse_records(deep, "summary", WHAT)
        else:
            load_record("offsets", deep.encode(), WHAT)
    # the limit counts real nesting, not brackets inside strings
    inside = json.dumps({"name": "[" * 500, "n": 1})
    assert parse_records(inside, "summary", WHAT) == [json.loads(inside)]
    assert parse_records("[" * MAX_DEPTH + "]" * MAX_DEPTH, "json", WHAT)[0] is not None  # at the limit
    with pytest.raises(RecordError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_records("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "json", WHAT)


@pytest.mark.parametrize(("data", "fragment"), [
    (b"\xef\xbb\xbf" + b'{"n": 1}', "byte order mark"),
    ('{"n": 1}'.encode("utf-16"), "not UTF-8"),
    (b'{"n": 1, "n": 2}', "given twice"),
    (b'{"n": NaN}', "NaN is not JSON"),
    (b'{"n": Infinity}', "Infinity is not JSON"),
    (b'{"n": 1} x', "not valid JSON"),
    (b'{"n": "\xff"}', "not UTF-8"),
    (b"", "not valid JSON"),
], ids=["bom", "utf16", "duplicate-key", "nan", "infinity", "trailing", "bad-utf8", "empty"])
def test_stored_records_are_strict_json(data: bytes, fragment: str) -> None:
    with pytest.raises(RecordError) as info:
        load_record("summary", data, WHAT)
    assert str(info.value).startswith(WHAT + ": not valid JSON") and fragment in str(info.value), str(info.value)


# --- default names -------------------------------------------------------------------------------------------------

DIGEST = "0123456789abcdef" + "f" * 48

DEFAULT_NAMES = {
    "offsets": ({"topic": "orders", "partition": 3, "start": 0, "end": 1}, "offsets/orders/3.json"),
    "offsets-group": ({"topic": "orders", "partition": 0, "start": 0, "end": 1, "group": "etl"},
                      "offsets/etl/orders/0.json"),
    "receipt": ({"source": "sftp", "count": 1}, "receipts/sftp.json"),
    "receipt-batch": ({"source": "sftp", "count": 1, "batch": "b7", "topic": "t", "partition": 1},
                      "receipts/sftp/b7.json"),
    "receipt-topic-partition": ({"source": "kafka", "count": 1, "topic": "t", "partition": 1},
                                "receipts/kafka/t/1.json"),
    "receipt-topic-only": ({"source": "kafka", "count": 1, "topic": "t"}, "receipts/kafka.json"),
    "receipt-partition-only": ({"source": "kafka", "count": 1, "partition": 2}, "receipts/kafka.json"),
    "summary": ({"ingested": 1}, "summary/summary.json"),
    "summary-named": ({"name": "load", "ingested": 1}, "summary/load.json"),
    "artifact": ({"name": "model", "version": "1.4.2"}, "artifacts/model.json"),
    "decision": ({"name": "promote", "outcome": "go"}, "decisions/promote.json"),
}


@pytest.mark.parametrize(("value", "want"), list(DEFAULT_NAMES.values()), ids=list(DEFAULT_NAMES))
def test_default_names(value: dict[str, Any], want: str) -> None:
    kind = {"offsets": "offsets", "receipts": "receipt", "summary": "summary", "artifacts": "artifact",
            "decisions": "decision"}[want.split("/")[0]]
    validate(kind, value, WHAT)
    assert default_name(kind, value, DIGEST) == want
    assert checked_default_name(kind, value, DIGEST, WHAT) == want


def test_default_name_of_json_record_uses_content_digest() -> None:
    assert default_name("json", [1, 2], DIGEST) == "records/json/0123456789abcdef.json"


def test_default_name_ignores_non_key_fields() -> None:
    a = {"topic": "t", "partition": 0, "start": 0, "end": 5}
    b = {"end": 9, "start": 5, "high": 100, "partition": 0, "topic": "t"}
    assert default_name("offsets", a, "0" * 64) == default_name("offsets", b, "1" * 64)
    assert default_name("summary", {"a": 1}, DIGEST) == default_name("summary", {"b": 7}, DIGEST)


@pytest.mark.parametrize(("kind", "value", "bad"), [
    ("receipt", {"source": "..", "count": 1, "batch": "x"}, "receipts/../x.json"),
    ("receipt", {"source": "/abs", "count": 1}, "receipts//abs.json"),
    ("receipt", {"source": "a", "count": 1, "batch": "b//c"}, "receipts/a/b//c.json"),
    ("offsets", {"topic": "t", "partition": 0, "start": 0, "end": 1, "group": "."}, "offsets/./t/0.json"),
    ("summary", {"name": "../etc", "n": 1}, "summary/../etc.json"),
    ("artifact", {"name": "a//b", "version": "1"}, "artifacts/a//b.json"),
    ("decision", {"name": "x" * 1024, "outcome": "go"}, "decisions/" + "x" * 1024 + ".json"),
], ids=["dotdot-source", "absolute-source", "empty-segment-batch", "dot-group", "dotdot-summary",
        "empty-segment-artifact", "too-long-decision"])
def test_invalid_default_name_refused_asking_for_name(kind: str, value: dict[str, Any], bad: str) -> None:
    validate(kind, value, WHAT)  # the record itself is valid
    assert default_name(kind, value, DIGEST) == bad
    assert name_problem(bad) is not None
    with pytest.raises(RecordError) as info:
        checked_default_name(kind, value, DIGEST, WHAT)
    msg = str(info.value)
    assert info.value.exit_code == 6
    assert msg.startswith(WHAT + ": ") and repr(bad) in msg and "give one with --name" in msg, msg


# --- Offsets -------------------------------------------------------------------------------------------------------

def test_offsets_from_record() -> None:
    o = Offsets.from_record({"topic": "t", "partition": 2, "start": 5, "end": 9})
    assert o == Offsets("", "t", 2, 5, 9)
    assert o.stream == ("", "t", 2) and o.label() == "t[2]" and o.to_value() == ["", "t", 2, 5, 9]
    g = Offsets.from_record({"topic": "t", "partition": 2, "start": 5, "end": 9, "group": "etl", "high": 20})
    assert g.stream == ("etl", "t", 2) and g.label() == "group etl t[2]"
    # ordering is (group, topic, partition, start, end): the replay anchors' sort order
    assert sorted([g, o, Offsets("", "a", 9, 0, 0)]) == [Offsets("", "a", 9, 0, 0), o, g]


# --- property tests ------------------------------------------------------------------------------------------------

safe_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20).filter(
    lambda s: bool(s.strip()))
topics = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True).filter(lambda s: s not in (".", ".."))
offsets_i = st.integers(0, MAX_OFFSET)
counts = st.integers(0, MAX_COUNT)
digests = st.sampled_from(["", "b3:", "sha256:", "blake3:"]).map(lambda a: a + DIGEST_HEX)


@st.composite
def offsets_records(draw: st.DrawFn) -> dict[str, Any]:
    start, end = sorted([draw(offsets_i), draw(offsets_i)])
    v: dict[str, Any] = {"topic": draw(topics), "partition": draw(st.integers(0, 2**31 - 1)), "start": start,
                         "end": end}
    if draw(st.booleans()):
        v["group"] = draw(safe_text)
    if draw(st.booleans()):
        v["high"] = draw(st.integers(end, MAX_OFFSET))
    return v


@st.composite
def receipt_records(draw: st.DrawFn) -> dict[str, Any]:
    v: dict[str, Any] = {"source": draw(safe_text), "count": draw(counts)}
    optional = {"batch": safe_text, "digest": digests, "first": offsets_i | safe_text,
                "last": offsets_i | safe_text, "topic": topics, "partition": st.integers(0, 2**31 - 1)}
    for f in draw(st.sets(st.sampled_from(sorted(optional)))):
        v[f] = draw(optional[f])
    return v


@st.composite
def summary_records(draw: st.DrawFn) -> dict[str, Any]:
    keys = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128).filter(
        lambda k: k != "name")
    v: dict[str, Any] = draw(st.dictionaries(keys, counts, min_size=1, max_size=6))
    if draw(st.booleans()):
        v["name"] = draw(safe_text)
    return v


typed_records = (offsets_records().map(lambda v: ("offsets", v)) | receipt_records().map(lambda v: ("receipt", v))
                 | summary_records().map(lambda v: ("summary", v)))


@settings(max_examples=300, deadline=None)
@given(rec=typed_records, seed=st.integers(0, 2**32 - 1))
def test_valid_generated_records_accepted_roundtrip_and_stable_name(rec: tuple[str, dict[str, Any]],
                                                                     seed: int) -> None:
    kind, value = rec
    assert validate(kind, value, WHAT) == value
    data = canonical_json(value)
    back = json.loads(data)
    assert back == value
    assert canonical_json(back) == data, "canonical JSON is a fixed point"
    assert load_record(kind, data, WHAT) == value
    items = list(value.items())
    random.Random(seed).shuffle(items)
    reordered = dict(items)
    assert canonical_json(reordered) == data, "canonical JSON does not depend on key order"
    name = default_name(kind, value, "0" * 64)
    assert default_name(kind, back, "0" * 64) == name
    assert default_name(kind, reordered, "0" * 64) == name
    try:
        assert checked_default_name(kind, value, "0" * 64, WHAT) == name
        assert name_problem(name) is None
    except RecordError as exc:
        assert name_problem(name) is not None and "give one with --name" in str(exc)


json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=25)
FIELDS = sorted({"topic", "partition", "start", "end", "group", "high", "source", "count", "batch", "digest",
                 "first", "last", "name", "version", "outcome", "reason", "inputs", "ingested"})
near_records = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8),
                               json_values | st.integers(-3, 3) | topics | digests, max_size=8)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(TYPED_KINDS), value=json_values | near_records)
def test_arbitrary_json_accepted_or_record_error(kind: str, value: Any) -> None:
    try:
        got = validate(kind, value, WHAT)
    except RecordError as exc:
        assert str(exc).startswith(WHAT + ": ")
        return
    assert got is value and isinstance(value, dict)
    # what validate accepts can be stored and read back as the same record
    assert load_record(kind, canonical_json(value), WHAT) == value


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(TYPED_KINDS), data=st.binary(max_size=60) | json_values.map(
    lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_loaded_or_record_error(kind: str, data: bytes) -> None:
    with contextlib.suppress(RecordError):  # anything else escaping fails the test
        load_record(kind, data, WHAT)
