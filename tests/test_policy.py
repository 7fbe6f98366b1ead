"""Closure policies (ledger.policy): reading and composing TOML policy files, the canonical sealed document, and the
pure evaluation of every criterion over hand-built evidence.

Every malformed policy is a ``UsageError`` (exit 2) naming the file and the rule, an empty policy included ("an
empty policy is an error, never a pass"). The canonical document round-trips, its digest moves with every rule, and
its strict decoder refuses everything else with ``DecodeError`` (random mutations included). Evaluation is checked
criterion by criterion, holding and failing, with the exact details an operator reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.digests import content_digest
from ledger.errors import DecodeError, LedgerError, UsageError
from ledger.kinds import MAX_COUNT, MAX_RECORD_BYTES, Offsets, canonical_json
from ledger.names import KINDS
from ledger.objects import ItemEntry
from ledger.policy import (
    MAX_PARTITIONS,
    MAX_SHOWN,
    Anchor,
    Criterion,
    Evidence,
    EvidenceBuilder,
    Policy,
    Reconcile,
    anchors,
    build_evidence,
    evaluate,
    load_policies,
    previous_ends,
)

# --- reading policy files ------------------------------------------------------------------------------------------


def pol(tmp: Path, name: str, text: str) -> str:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return str(p)


def usage(paths: list[str]) -> str:
    """Loading ``paths`` is refused with UsageError (exit 2); its one-line message."""
    with pytest.raises(UsageError) as info:
        load_policies(paths)
    assert info.value.exit_code == 2
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def test_every_rule_read(tmp_path: Path) -> None:
    p = load_policies([pol(tmp_path, "full.toml", """
min = {offsets = 2, summary = 1}
artifacts = ["model", "image"]
continuity = ["orders", "payments"]

[topics]
orders = 3
payments = 1

[[reconcile]]
name = "ingest"
left = ["receipt.count"]
right = ["summary.ingested", "summary.quarantined"]

[[reconcile]]
left = ["offsets.span"]
right = ["receipt.count"]
""")])
    assert p.min == {"offsets": 2, "summary": 1}
    assert p.artifacts == ("image", "model")  # sorted
    assert p.topics == {"orders": 3, "payments": 1}
    assert p.continuity == ("orders", "payments")
    assert p.reconcile == (Reconcile("ingest", ("receipt.count",), ("summary.ingested", "summary.quarantined")),
                           Reconcile("offsets.span=receipt.count", ("offsets.span",), ("receipt.count",)))
    raw = (tmp_path / "full.toml").read_bytes()
    assert p.sources == (("full.toml", content_digest(raw).hex()),)
    assert not p.empty


@pytest.mark.parametrize(("text", "check"), [
    ("min = {file = 1}", lambda p: p.min == {"file": 1}),
    ('artifacts = ["m"]', lambda p: p.artifacts == ("m",)),
    ("topics = {t = 100000}", lambda p: p.topics == {"t": MAX_PARTITIONS}),
    ('continuity = ["*"]', lambda p: p.continuity == ("*",)),
    ('[[reconcile]]\nleft = ["summary.a"]\nright = ["summary.b"]',
     lambda p: p.reconcile == (Reconcile("summary.a=summary.b", ("summary.a",), ("summary.b",)),)),
], ids=["min", "artifacts", "topics", "continuity", "reconcile"])
def test_each_rule_alone_is_a_policy(tmp_path: Path, text: str, check: Any) -> None:
    p = load_policies([pol(tmp_path, "one.toml", text)])
    assert check(p) and not p.empty


def test_two_files_compose(tmp_path: Path) -> None:
    a = pol(tmp_path, "a.toml", 'min = {offsets = 2, receipt = 5}\nartifacts = ["model"]\ntopics = {t = 3}\n'
                                'continuity = ["t"]\n[[reconcile]]\nname = "r1"\nleft = ["receipt.count"]\n'
                                'right = ["summary.n"]\n')
    b = pol(tmp_path, "b.toml", 'min = {offsets = 4, receipt = 1, summary = 1}\nartifacts = ["image", "model"]\n'
                                'topics = {t = 3, u = 1}\ncontinuity = ["u"]\n[[reconcile]]\nname = "r2"\n'
                                'left = ["offsets.span"]\nright = ["receipt.count"]\n')
    p = load_policies([a, b])
    assert p.min == {"offsets": 4, "receipt": 5, "summary": 1}  # min takes the max
    assert p.artifacts == ("image", "model")  # union
    assert p.topics == {"t": 3, "u": 1}  # the same count twice is no conflict
    assert p.continuity == ("t", "u")
    assert [r.name for r in p.reconcile] == ["r1", "r2"]
    assert [s[0] for s in p.sources] == ["a.toml", "b.toml"]
    # the order of the files changes only the recorded sources (and so the digest), never the rules
    q = load_policies([b, a])
    assert (q.min, q.artifacts, q.topics, q.continuity) == (p.min, p.artifacts, p.topics, p.continuity)


def test_topics_conflict_names_both_files(tmp_path: Path) -> None:
    a = pol(tmp_path, "a.toml", "topics = {orders = 3}")
    b = pol(tmp_path, "b.toml", "topics = {orders = 4}")
    msg = usage([a, b])
    assert msg == "policy b.toml: rule topics.orders: 4 partitions, but a.toml says 3"


def test_duplicate_reconcile_name(tmp_path: Path) -> None:
    rule = '[[reconcile]]\nname = "ingest"\nleft = ["receipt.count"]\nright = ["summary.n"]\n'
    a = pol(tmp_path, "a.toml", rule)
    b = pol(tmp_path, "b.toml", rule.replace("summary.n", "summary.m"))
    msg = usage([a, b])
    assert msg.startswith("policy b.toml: rule reconcile #1") and "'ingest' already exists" in msg
    # within one file, and by default name
    c = pol(tmp_path, "c.toml", '[[reconcile]]\nleft = ["receipt.count"]\nright = ["summary.n"]\n' * 2)
    msg = usage([c])
    assert msg.startswith("policy c.toml: rule reconcile #2") and "'receipt.count=summary.n' already exists" in msg


def test_includes_compose_relative_to_the_including_file(tmp_path: Path) -> None:
    pol(tmp_path, "lib/base.toml", 'min = {offsets = 1}\nartifacts = ["model"]\ninclude = ["more/extra.toml"]')
    pol(tmp_path, "lib/more/extra.toml", "min = {offsets = 3}\ntopics = {t = 2}")
    top = pol(tmp_path, "top.toml", 'include = ["lib/base.toml"]\nmin = {offsets = 2}\nartifacts = ["image"]')
    p = load_policies([top])
    assert p.min == {"offsets": 3}
    assert p.artifacts == ("image", "model")
    assert p.topics == {"t": 2}
    assert [s[0] for s in p.sources] == ["top.toml", "base.toml", "extra.toml"]


def test_included_twice_counts_once(tmp_path: Path) -> None:
    # a reconcile rule in a shared file would be a duplicate name if the file were composed twice
    pol(tmp_path, "shared.toml", '[[reconcile]]\nname = "ingest"\nleft = ["receipt.count"]\nright = ["summary.n"]')
    a = pol(tmp_path, "a.toml", 'include = ["shared.toml"]\nmin = {offsets = 1}')
    b = pol(tmp_path, "b.toml", 'include = ["shared.toml", "./shared.toml"]\nmin = {summary = 1}')
    p = load_policies([a, b, str(tmp_path / "shared.toml")])
    assert [r.name for r in p.reconcile] == ["ingest"]
    assert [s[0] for s in p.sources] == ["a.toml", "shared.toml", "b.toml"]
    # the same file given twice on the command line: once
    assert load_policies([a, a]) == load_policies([a])


def test_include_cycle(tmp_path: Path) -> None:
    a = pol(tmp_path, "a.toml", 'include = ["b.toml"]\nmin = {offsets = 1}')
    pol(tmp_path, "b.toml", 'include = ["c.toml"]')
    pol(tmp_path, "c.toml", 'include = ["a.toml"]')
    msg = usage([a])
    assert msg == "policy a.toml: includes itself (cycle: a.toml -> b.toml -> c.toml)"
    selfish = pol(tmp_path, "self.toml", 'include = ["self.toml"]\nmin = {offsets = 1}')
    assert usage([selfish]) == "policy self.toml: includes itself (cycle: self.toml)"


MALFORMED: dict[str, tuple[str, str]] = {
    # id: (file text, fragment of the message after "policy bad.toml: ")
    "toml-syntax": ("min = {offsets = ", "malformed TOML"),
    "toml-duplicate-key": ("min = {offsets = 1}\nmin = {summary = 1}", "malformed TOML"),
    "unknown-rule": ("min = {offsets = 1}\nminimum = 2", "unknown rule 'minimum'"),
    "min-not-table": ("min = 3", "rule min: must be a table"),
    "min-zero": ("min = {offsets = 0}", "rule min.offsets: must be a positive integer, got 0"),
    "min-negative": ("min = {offsets = -1}", "rule min.offsets: must be a positive integer, got -1"),
    "min-string": ('min = {offsets = "2"}', "rule min.offsets: must be a positive integer, got '2'"),
    "min-bool": ("min = {offsets = true}", "rule min.offsets: must be a positive integer, got True"),
    "min-float": ("min = {offsets = 2.0}", "rule min.offsets: must be a positive integer, got 2.0"),
    "min-unknown-kind": ("min = {offset = 1}", "rule min: unknown kind 'offset'"),
    "artifacts-not-list": ('artifacts = "model"', "rule artifacts: must be an array of non-empty strings"),
    "artifacts-empty-name": ('artifacts = [""]', "rule artifacts: must be an array of non-empty strings"),
    "artifacts-int": ("artifacts = [1]", "rule artifacts: must be an array of non-empty strings"),
    "topics-zero": ("topics = {orders = 0}", "rule topics.orders: partition count must be an integer in "
                                             "[1, 100000], got 0"),
    "topics-string": ('topics = {orders = "3"}', "rule topics.orders: partition count must be an integer in "
                                                 "[1, 100000], got '3'"),
    "topics-too-many": ("topics = {orders = 100001}", "rule topics.orders: partition count"),
    "topics-not-table": ('topics = ["orders"]', "rule topics: must be a table"),
    "continuity-string": ('continuity = "orders"', "rule continuity: must be an array of non-empty strings"),
    "include-string": ('include = "other.toml"', "rule include: must be an array of non-empty strings"),
    "reconcile-table": ('[reconcile]\nleft = ["receipt.count"]\nright = ["summary.n"]',
                        "rule reconcile: must be an array of tables ([[reconcile]])"),
    "reconcile-not-table": ('reconcile = ["receipt.count"]', "rule reconcile #1: must be a table"),
    "reconcile-unknown-key": ('[[reconcile]]\nleft = ["receipt.count"]\nright = ["summary.n"]\nop = "=="',
                              "rule reconcile #1: unknown key 'op' (known: name, left, right)"),
    "reconcile-receipt-source": ('[[reconcile]]\nleft = ["receipt.source"]\nright = ["summary.n"]',
                                 "rule reconcile #1: rule reconcile 'receipt.source=summary.n': 'receipt.source' is "
                                 "not a summable field"),
    "reconcile-offsets-start": ('[[reconcile]]\nleft = ["offsets.start"]\nright = ["summary.n"]',
                                "'offsets.start' is not a summable field"),
    "reconcile-artifact": ('[[reconcile]]\nleft = ["artifact.version"]\nright = ["summary.n"]',
                           "'artifact.version' is not a summable field"),
    "reconcile-no-field": ('[[reconcile]]\nleft = ["summary"]\nright = ["receipt.count"]',
                           "'summary' is not a summable field"),
    "reconcile-file-kind": ('[[reconcile]]\nleft = ["file.count"]\nright = ["receipt.count"]',
                            "'file.count' is not a summable field"),
    "reconcile-empty-left": ('[[reconcile]]\nleft = []\nright = ["summary.n"]',
                             "left and right must be non-empty"),
    "reconcile-missing-right": ('[[reconcile]]\nleft = ["receipt.count"]', "left and right must be non-empty"),
    "reconcile-name-int": ('[[reconcile]]\nname = 3\nleft = ["receipt.count"]\nright = ["summary.n"]',
                           "rule reconcile #1: name must be a non-empty string"),
    "reconcile-name-empty": ('[[reconcile]]\nname = ""\nleft = ["receipt.count"]\nright = ["summary.n"]',
                             "rule reconcile #1: name must be a non-empty string"),
    "empty-file": ("", "declares no criteria; an empty policy is an error, never a pass"),
    "comments-only": ("# nothing here\n", "an empty policy is an error, never a pass"),
    "empty-rules": ("artifacts = []\ncontinuity = []\nmin = {}\ntopics = {}\nreconcile = []",
                    "an empty policy is an error, never a pass"),
}


@pytest.mark.parametrize(("text", "fragment"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_policy_names_file_and_rule(tmp_path: Path, text: str, fragment: str) -> None:
    msg = usage([pol(tmp_path, "bad.toml", text)])
    assert msg.startswith("policy bad.toml: "), msg
    assert fragment in msg, msg


def test_malformed_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    pol(tmp_path, "inner.toml", "min = {offsets = 0}")
    top = pol(tmp_path, "top.toml", 'include = ["inner.toml"]\nartifacts = ["m"]')
    assert usage([top]).startswith("policy inner.toml: rule min.offsets")


def test_not_utf8_is_malformed(tmp_path: Path) -> None:
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'artifacts = ["mod\xe8le"]')
    assert usage([str(p)]).startswith("policy latin1.toml: malformed TOML")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    assert usage([missing]) == f"policy {missing}: no such file"
    pol(tmp_path, "top.toml", 'include = ["gone.toml"]\nmin = {offsets = 1}')
    assert "gone.toml: no such file" in usage([str(tmp_path / "top.toml")])
    assert "is a directory" in usage([str(tmp_path)])
    assert "an empty policy is an error" in usage([])


def test_every_file_must_declare_a_rule(tmp_path: Path) -> None:
    # spec/policy.md 2: an empty file is an error even next to a good one (a truncated file must not pass silently)
    empty = pol(tmp_path, "release.toml", "")
    msg = usage([pol(tmp_path, "base.toml", "min = {offsets = 1}"), empty])
    assert "policy release.toml: declares no criteria" in msg and "an empty policy is an error" in msg
    assert "an empty policy is an error" in usage([empty, pol(tmp_path, "also-empty.toml", "# nothing")])
    # a file holding only includes declares the included rules
    p = load_policies([pol(tmp_path, "top.toml", 'include = ["base.toml"]')])
    assert p.min == {"offsets": 1}


@pytest.mark.parametrize(("text", "fragment"), [
    ('topics = {"bad topic" = 1}', "rule topics: 'bad topic' is not a Kafka topic name"),
    ('topics = {".." = 1}', "rule topics: '..' is not a Kafka topic name"),
    ('topics = {"orders\\nerror: all good" = 1}', "is not a Kafka topic name"),
    ('continuity = ["a/b"]', "rule continuity: 'a/b' is not a topic name (or \"*\")"),
    ('continuity = [".."]', "rule continuity: '..' is not a topic name"),
    ('[[reconcile]]\nleft = ["summary.name"]\nright = ["receipt.count"]', "'summary.name' is not a summable field"),
], ids=["topic-space", "topic-dotdot", "topic-newline", "continuity-slash", "continuity-dotdot", "summary-name"])
def test_names_and_terms_checked_when_loading(tmp_path: Path, text: str, fragment: str) -> None:
    msg = usage([pol(tmp_path, "n.toml", text)])
    assert msg.startswith("policy n.toml") and fragment in msg, msg


def test_artifact_names_are_not_checked_against_record_rules(tmp_path: Path) -> None:
    # a name no artifact record can have ('../x' is valid text, so it could) simply selects nothing
    p = load_policies([pol(tmp_path, "n.toml", 'artifacts = ["../x", "a b"]')])
    assert p.artifacts == ("../x", "a b")
    assert crit(evaluate(p, evidence(FILE), {}), "artifacts").detail == "missing artifact(s): ../x, a b"


NEWLINE_NAMES = {
    "artifact": 'artifacts = ["model\\nerror: all good"]',
    "reconcile-name": '[[reconcile]]\nname = "r\\nerror: all good"\nleft = ["receipt.count"]\nright = ["summary.x"]',
    "reconcile-term": '[[reconcile]]\nleft = ["receipt.count"]\nright = ["summary.x\\nerror: all good"]',
}


@pytest.mark.parametrize("text", list(NEWLINE_NAMES.values()), ids=list(NEWLINE_NAMES))
def test_a_name_with_a_newline_is_refused_in_one_line(tmp_path: Path, text: str) -> None:
    """Names end up in criteria and error lines: a policy must not be able to forge an output line."""
    with pytest.raises(UsageError) as info:
        load_policies([pol(tmp_path, "nl.toml", text)])
    assert "\n" not in str(info.value) and "is not a printable name" in str(info.value)


def test_summary_with_a_control_character_in_a_field_name_is_an_invalid_record() -> None:
    # so the reconcile usage error, which lists the field names seen, stays one line
    odd = item("summary/odd.json", "summary", {"rows\nerror: all good": 1})
    ev = evidence(odd, RECEIPT)
    assert [n for n, _ in ev.invalid] == ["summary/odd.json"] and ev.of("summary") == []


# --- the canonical document ----------------------------------------------------------------------------------------

BASE = Policy(sources=(("p.toml", "ab" * 32),), min={"offsets": 1}, artifacts=("model",), topics={"t": 2},
              reconcile=(Reconcile("r", ("receipt.count",), ("summary.n",)),), continuity=("t",))


def test_loaded_policy_round_trips(tmp_path: Path) -> None:
    p = load_policies([pol(tmp_path, "p.toml", 'min = {offsets = 1, summary = 2}\nartifacts = ["b", "a"]\n'
                                               'topics = {t = 2}\ncontinuity = ["*"]\n[[reconcile]]\n'
                                               'left = ["receipt.count"]\nright = ["summary.n", "offsets.span"]')])
    data = p.encode()
    q = Policy.from_bytes(data)
    assert q == p
    assert q.encode() == data and q.digest == p.digest
    assert len(p.digest) == 32
    # the same rules loaded again: the same document, byte for byte
    assert load_policies([str(tmp_path / "p.toml")]).encode() == data


def test_encoding_does_not_depend_on_dict_order() -> None:
    a = Policy(min={"offsets": 1, "summary": 2}, topics={"a": 1, "b": 2})
    b = Policy(min={"summary": 2, "offsets": 1}, topics={"b": 2, "a": 1})
    assert a.encode() == b.encode() and a.digest == b.digest


@pytest.mark.parametrize("change", [
    {"sources": (("p.toml", "cd" * 32),)},
    {"sources": (("q.toml", "ab" * 32),)},
    {"min": {"offsets": 2}},
    {"min": {"offsets": 1, "summary": 1}},
    {"min": {"receipt": 1}},
    {"artifacts": ("model", "image")},
    {"artifacts": ("modem",)},
    {"topics": {"t": 3}},
    {"topics": {"u": 2}},
    {"reconcile": (Reconcile("r", ("receipt.count",), ("summary.m",)),)},
    {"reconcile": (Reconcile("s", ("receipt.count",), ("summary.n",)),)},
    {"reconcile": (Reconcile("r", ("summary.n",), ("receipt.count",)),)},
    {"reconcile": ()},
    {"continuity": ("*",)},
    {"continuity": ()},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())[:60])
def test_digest_changes_with_every_rule(change: dict[str, Any]) -> None:
    other = Policy(**{**BASE.__dict__, **change})
    assert other.encode() != BASE.encode()
    assert other.digest != BASE.digest
    assert Policy.from_bytes(other.encode()) == Policy(**{**other.__dict__, "artifacts": tuple(sorted(
        other.artifacts))})


def raw_doc(**over: Any) -> dict[str, Any]:
    doc = BASE.to_value() | over
    return {k: doc[k] for k in sorted(doc)}


def packed(doc: Any) -> bytes:
    out = msgpack.packb(doc, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


@pytest.mark.parametrize(("data", "fragment"), [
    (packed(raw_doc(artifacts=["z", "a"])), "not in canonical form"),
    (packed({k: raw_doc()[k] for k in reversed(sorted(raw_doc()))}), "map keys are not in canonical"),
    (BASE.encode() + b"\x00", "trailing bytes"),
    (BASE.encode()[:-1], "not valid canonical MessagePack"),
    (b"", "not valid canonical MessagePack"),
    (packed([1, 2]), "expected a map"),
    (packed(raw_doc(extra=1)), "unknown field 'extra'"),
    (packed({k: v for k, v in raw_doc().items() if k != "topics"}), "missing field 'topics'"),
    (packed(raw_doc(format="ledger/2")), "unsupported format 'ledger/2'"),
    (packed(raw_doc(min={"offsets": 0})), "not a positive integer"),
    (packed(raw_doc(min={"offsets": True})), "not a positive integer"),
    (packed(raw_doc(min={"bogus": 1})), "unknown kind 'bogus'"),
    (packed(raw_doc(topics={"t": 0})), "not a positive integer"),
    (packed(raw_doc(topics={"t": MAX_PARTITIONS + 1})), "partition count must be"),
    (packed(raw_doc(artifacts=[""])), "artifacts: not a list of names"),
    (packed(raw_doc(continuity=[1])), "continuity: not a list of names"),
    (packed(raw_doc(sources=[["p.toml"]])), "sources: malformed entry"),
    (packed(raw_doc(reconcile=[{"left": ["receipt.source"], "name": "r", "right": ["summary.n"]}])),
     "not a summable field"),
    (packed(raw_doc(reconcile=[{"left": [], "name": "r", "right": ["summary.n"]}])), "must be non-empty"),
    (packed(raw_doc(reconcile=[{"left": ["receipt.count"], "name": "r"}])), "missing field 'right'"),
    (packed(raw_doc(artifacts=[], continuity=[], min={}, reconcile=[], topics={})),
     "declares no criteria; an empty policy is an error, never a pass"),
    (packed(raw_doc(artifacts=["m", "m"])), "rule artifacts: an entry is given twice"),
    (packed(raw_doc(continuity=["t", "t"])), "rule continuity: an entry is given twice"),
    (packed(raw_doc(continuity=["a b"])), "'a b' is not a topic name"),
    (packed(raw_doc(topics={"a/b": 1})), "'a/b' is not a Kafka topic name"),
    (packed(raw_doc(reconcile=[{"left": ["receipt.count"], "name": "r", "right": ["summary.n"]}] * 2)),
     "names must be non-empty and unique"),
    (packed(raw_doc(reconcile=[{"left": ["receipt.count"], "name": "", "right": ["summary.n"]}])),
     "names must be non-empty and unique"),
    (packed(raw_doc(reconcile=[{"left": ["summary.name"], "name": "r", "right": ["summary.n"]}])),
     "'summary.name' is not a summable field"),
], ids=["unsorted-artifacts", "unsorted-keys", "trailing", "truncated", "empty-bytes", "not-a-map",
        "unknown-field", "missing-field", "format", "min-zero", "min-bool", "min-unknown-kind", "topics-zero",
        "topics-too-many", "artifact-empty", "continuity-int", "source-malformed", "reconcile-not-summable",
        "reconcile-empty-side", "reconcile-missing-right", "empty-policy", "artifacts-twice", "continuity-twice",
        "continuity-not-topic", "topics-not-topic", "reconcile-names-twice", "reconcile-name-empty",
        "reconcile-summary-name"])
def test_from_bytes_refuses(data: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        Policy.from_bytes(data, "sealed policy X")
    msg = str(info.value)
    assert msg.startswith("sealed policy X: "), msg
    assert fragment in msg, msg
    assert info.value.exit_code == 1


name_text = st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=12)  # printable
topic_names = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(lambda t: t not in (".", ".."))
terms = st.sampled_from(["receipt.count", "offsets.span"]) | name_text.filter(lambda f: f != "name").map(
    lambda f: "summary." + f)
reconciles = st.builds(Reconcile, name_text, st.lists(terms, min_size=1, max_size=3).map(tuple),
                       st.lists(terms, min_size=1, max_size=3).map(tuple))
policies = st.builds(
    Policy,
    sources=st.lists(st.tuples(name_text, st.text(max_size=64)), max_size=3).map(tuple),
    min=st.dictionaries(st.sampled_from(KINDS), st.integers(1, MAX_COUNT), max_size=4),
    artifacts=st.sets(name_text, max_size=4).map(lambda s: tuple(sorted(s))),
    topics=st.dictionaries(topic_names, st.integers(1, MAX_PARTITIONS), max_size=4),
    reconcile=st.lists(reconciles, max_size=3, unique_by=lambda r: r.name).map(tuple),
    continuity=st.sets(topic_names | st.just("*"), max_size=3).map(lambda s: tuple(sorted(s))),
).filter(lambda p: not p.empty)


@settings(max_examples=200, deadline=None)
@given(p=policies)
def test_random_policies_round_trip(p: Policy) -> None:
    data = p.encode()
    q = Policy.from_bytes(data)
    assert q == p
    assert q.encode() == data and q.digest == p.digest


@settings(max_examples=400, deadline=None)
@given(p=policies, edits=st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                                            st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_policy_bytes_decode_exactly_or_raise_decode_error(p: Policy, edits: list[tuple[str, int, int]]
                                                                   ) -> None:
    data = bytearray(p.encode())
    for op, pos, byte in edits:
        i = pos % (len(data) + 1)
        if op == "insert":
            data.insert(i, byte)
        elif not data:
            continue
        elif op == "flip":
            data[i % len(data)] ^= 1 << (byte % 8)
        elif op == "set":
            data[i % len(data)] = byte
        elif op == "delete":
            del data[i % len(data)]
        else:
            del data[i:]
    mutated = bytes(data)
    try:
        q = Policy.from_bytes(mutated)
    except DecodeError:
        return
    assert q.encode() == mutated, "a decoded policy re-encodes to exactly the bytes it came from"


# --- evidence and evaluation ---------------------------------------------------------------------------------------

Item = tuple[ItemEntry, bytes]


def item(name: str, kind: str, value: Any) -> Item:
    data = value if isinstance(value, bytes) else canonical_json(value)
    return ItemEntry(name, kind, len(data), content_digest(data)), data


def off(name: str, topic: str, partition: int, start: int, end: int, group: str | None = None) -> Item:
    v: dict[str, Any] = {"topic": topic, "partition": partition, "start": start, "end": end}
    if group is not None:
        v["group"] = group
    return item(name, "offsets", v)


def evidence(*items: Item, read: Any = None) -> Evidence:
    """Evidence over ``items``, read from a dict (the content store of a unit test)."""
    contents = {e.name: data for e, data in items}
    return build_evidence([e for e, _ in items], read or (lambda e: contents[e.name]))


def crit(cs: list[Criterion], name: str) -> Criterion:
    found = [c for c in cs if c.name == name]
    assert len(found) == 1, [c.name for c in cs]
    return found[0]


def prev(**ends: tuple[int, str, int]) -> dict[tuple[str, str, int], Anchor]:
    """prev(orders_0=(100, "r1", 0)) -> {("", "orders", 0): Anchor(100, "r1", 0)}"""
    out = {}
    for key, (end, run, seq) in ends.items():
        topic, _, p = key.rpartition("_")
        out[("", topic, int(p))] = Anchor(end, run, seq)
    return out


FILE = item("data/a.csv", "file", b"id\n1\n")


def test_builtin_criteria_only_without_policy() -> None:
    ev = evidence(FILE, off("offsets/t/0.json", "t", 0, 0, 5), item("s.json", "summary", {"n": 1}))
    cs = evaluate(None, ev, {})
    assert [c.name for c in cs] == ["non-empty", "records-valid", "records-coherent"]
    assert all(c.ok for c in cs)
    assert cs[0].detail == "3 item(s)"
    assert cs[1].detail == "2 typed record(s) valid"
    assert cs[1].evidence == ("offsets/t/0.json", "s.json")
    assert cs[2].detail == "1 offsets range(s), 0 artifact(s): no contradictions"
    assert anchors(ev) == [Offsets("", "t", 0, 0, 5)]


def test_empty_run_fails_non_empty() -> None:
    c = evaluate(None, evidence(), {})[0]
    assert c == Criterion("non-empty", False, "0 item(s)", ())


def test_criteria_order_builtin_then_policy() -> None:
    p = Policy(min={"summary": 1, "offsets": 1}, artifacts=("m",), topics={"t": 1},
               reconcile=(Reconcile("r", ("receipt.count",), ("summary.n",)),), continuity=("t",))
    ev = evidence(off("o", "t", 0, 0, 5), item("s", "summary", {"n": 3}), item("r", "receipt", {"source": "x",
                                                                                               "count": 3}),
                  item("a", "artifact", {"name": "m", "version": "1"}))
    cs = evaluate(p, ev, {})
    assert [c.name for c in cs] == ["non-empty", "records-valid", "records-coherent", "min:offsets", "min:summary",
                                    "artifacts", "topic:t", "reconcile:r", "continuity"]
    assert all(c.ok for c in cs), [c for c in cs if not c.ok]


def test_evaluation_is_pure() -> None:
    p = Policy(min={"offsets": 2}, continuity=("*",))
    ev = evidence(off("o", "t", 0, 3, 5))
    previous = prev(t_0=(1, "r0", 0))
    assert evaluate(p, ev, previous) == evaluate(p, ev, previous)


def test_min_counts() -> None:
    p = Policy(min={"offsets": 2, "file": 1, "decision": 1})
    ev = evidence(FILE, off("offsets/t/0.json", "t", 0, 0, 1), off("offsets/t/1.json", "t", 1, 0, 1))
    cs = evaluate(p, ev, {})
    assert crit(cs, "min:offsets") == Criterion("min:offsets", True, "2 offsets item(s), at least 2 required",
                                                ("offsets/t/0.json", "offsets/t/1.json"))
    assert crit(cs, "min:file").ok and crit(cs, "min:file").detail == "1 file item(s), at least 1 required"
    assert crit(cs, "min:decision") == Criterion("min:decision", False, "0 decision item(s), at least 1 required",
                                                 ())
    fewer = evaluate(Policy(min={"offsets": 3}), ev, {})
    assert crit(fewer, "min:offsets").detail == "2 offsets item(s), at least 3 required"
    assert not crit(fewer, "min:offsets").ok


def test_min_counts_invalid_items_too_and_evidence_is_capped() -> None:
    many = [item(f"f/{i:03d}", "file", str(i).encode()) for i in range(3 * MAX_SHOWN)]
    ev = evidence(*reversed(many))
    c = crit(evaluate(Policy(min={"file": 60}), ev, {}), "min:file")
    assert c.ok and c.detail == "60 file item(s), at least 60 required"
    assert c.evidence == tuple(f"f/{i:03d}" for i in range(MAX_SHOWN))  # the first names, in name order


def test_artifacts_present_and_missing() -> None:
    p = Policy(artifacts=("image", "model"))
    model = item("artifacts/model.json", "artifact", {"name": "model", "version": "1.4.2"})
    image = item("artifacts/image.json", "artifact", {"name": "image", "version": "sha-1"})
    ok = crit(evaluate(p, evidence(model, image), {}), "artifacts")
    assert ok == Criterion("artifacts", True, "present: image sha-1, model 1.4.2",
                           ("artifacts/image.json", "artifacts/model.json"))
    bad = crit(evaluate(p, evidence(model, FILE), {}), "artifacts")
    assert bad == Criterion("artifacts", False, "missing artifact(s): image (present: model 1.4.2)",
                            ("artifacts/model.json",))
    none = crit(evaluate(p, evidence(FILE), {}), "artifacts")
    assert none.detail == "missing artifact(s): image, model" and not none.ok


def test_topic_partitions() -> None:
    p = Policy(topics={"orders": 3})
    full = evidence(off("o0", "orders", 0, 0, 1), off("o1", "orders", 1, 0, 1), off("o2", "orders", 2, 0, 1),
                    off("x", "other", 7, 0, 1))
    assert crit(evaluate(p, full, {}), "topic:orders") == Criterion(
        "topic:orders", True, "topic orders: all 3 partition(s) have offsets records", ("o0", "o1", "o2"))
    missing = evidence(off("o0", "orders", 0, 0, 1), off("o2", "orders", 2, 0, 1))
    c = crit(evaluate(p, missing, {}), "topic:orders")
    assert c == Criterion("topic:orders", False, "topic orders: no offsets record for partition(s) 1", ("o0", "o2"))
    extra = evidence(off("o0", "orders", 0, 0, 1), off("o1", "orders", 1, 0, 1), off("o2", "orders", 2, 0, 1),
                     off("o3", "orders", 3, 0, 1))
    c = crit(evaluate(p, extra, {}), "topic:orders")
    assert c.detail == "topic orders: partition(s) 3 beyond the 3 the policy declares" and not c.ok
    both = evidence(off("o0", "orders", 0, 0, 1), off("o5", "orders", 5, 0, 1))
    c = crit(evaluate(p, both, {}), "topic:orders")
    assert c.detail == ("topic orders: no offsets record for partition(s) 1, 2; partition(s) 5 beyond the 3 the "
                        "policy declares")
    nothing = crit(evaluate(Policy(topics={"t": 12}), evidence(FILE), {}), "topic:t")
    assert nothing.detail == "topic t: no offsets record for partition(s) 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … (12 in all)"


RECEIPT = item("receipts/sftp.json", "receipt", {"source": "sftp", "count": 10})
SUMMARY = item("summary/load.json", "summary", {"name": "load", "ingested": 7, "quarantined": 3})


def test_reconcile_equal() -> None:
    p = Policy(reconcile=(Reconcile("ingest", ("receipt.count",), ("summary.ingested", "summary.quarantined")),))
    c = crit(evaluate(p, evidence(RECEIPT, SUMMARY, FILE), {}), "reconcile:ingest")
    assert c == Criterion("reconcile:ingest", True,
                          "receipt.count 10 = summary.ingested 7 + summary.quarantined 3 (both 10)",
                          ("receipts/sftp.json", "summary/load.json"))


def test_reconcile_off_by_n() -> None:
    p = Policy(reconcile=(Reconcile("ingest", ("receipt.count",), ("summary.ingested",)),))
    more = item("receipts/kafka.json", "receipt", {"source": "kafka", "count": 5})
    c = crit(evaluate(p, evidence(RECEIPT, more, SUMMARY), {}), "reconcile:ingest")
    assert c == Criterion("reconcile:ingest", False, "receipt.count 15 ≠ summary.ingested 7 (15 vs 7, off by +8)",
                          ("receipts/kafka.json", "receipts/sftp.json", "summary/load.json"))
    p2 = Policy(reconcile=(Reconcile("r", ("summary.ingested",), ("receipt.count",)),))
    c = crit(evaluate(p2, evidence(RECEIPT, SUMMARY), {}), "reconcile:r")
    assert c.detail.endswith("(7 vs 10, off by -3)") and not c.ok


def test_reconcile_offsets_span_and_summaries_without_the_field() -> None:
    p = Policy(reconcile=(Reconcile("read", ("offsets.span",), ("summary.ingested",)),))
    other = item("summary/other.json", "summary", {"rows": 99})  # no 'ingested': not summed, not an error
    ev = evidence(off("o0", "t", 0, 100, 105), off("o1", "t", 1, 0, 2), SUMMARY, other)
    c = crit(evaluate(p, ev, {}), "reconcile:read")
    assert c == Criterion("reconcile:read", True, "offsets.span 7 = summary.ingested 7 (both 7)",
                          ("o0", "o1", "summary/load.json"))


def test_reconcile_without_records_of_a_kind_fails() -> None:
    p = Policy(reconcile=(Reconcile("ingest", ("receipt.count",), ("summary.ingested",)),))
    c = crit(evaluate(p, evidence(SUMMARY), {}), "reconcile:ingest")
    assert c == Criterion("reconcile:ingest", False, "no receipt record(s) to reconcile", ("summary/load.json",))
    c = crit(evaluate(p, evidence(FILE), {}), "reconcile:ingest")
    assert c.detail == "no receipt, summary record(s) to reconcile" and not c.ok


def test_reconcile_over_a_field_no_summary_has_is_a_usage_error() -> None:
    p = Policy(reconcile=(Reconcile("ingest", ("receipt.count",), ("summary.ingestd",)),))
    other = item("summary/other.json", "summary", {"rows": 99})
    with pytest.raises(UsageError) as info:
        evaluate(p, evidence(RECEIPT, SUMMARY, other), {})
    assert str(info.value) == ("policy: rule reconcile: field 'summary.ingestd' is in no summary record (fields "
                               "seen: ingested, quarantined, rows)")
    assert info.value.exit_code == 2


def test_records_coherent_two_offsets_for_one_partition() -> None:
    ev = evidence(off("offsets/t/0.json", "t", 0, 0, 5), off("late/t0.json", "t", 0, 5, 9),
                  off("offsets/etl/t/0.json", "t", 0, 0, 5, group="etl"))  # another group: another stream
    c = crit(evaluate(None, ev, {}), "records-coherent")
    assert c == Criterion("records-coherent", False,
                          "items late/t0.json and offsets/t/0.json both give offsets for t[0]",
                          ("late/t0.json", "offsets/etl/t/0.json", "offsets/t/0.json"))
    assert crit(evaluate(None, evidence(off("a", "t", 0, 0, 5), off("b", "t", 1, 0, 5)), {}),
                "records-coherent").ok


def test_records_coherent_two_versions_of_one_artifact() -> None:
    a1 = item("a1.json", "artifact", {"name": "model", "version": "1"})
    a2 = item("a2.json", "artifact", {"name": "model", "version": "2"})
    same = item("a3.json", "artifact", {"name": "model", "version": "1", "digest": "ab" * 32})
    c = crit(evaluate(None, evidence(a1, a2), {}), "records-coherent")
    assert c == Criterion("records-coherent", False, "artifact model: items a1.json and a2.json give versions 1 "
                          "and 2", ("a1.json", "a2.json"))
    ok = crit(evaluate(None, evidence(a1, same), {}), "records-coherent")
    assert ok.ok and ok.detail == "0 offsets range(s), 1 artifact(s): no contradictions"
    several = evidence(a1, a2, off("x", "t", 0, 0, 1), off("y", "t", 0, 1, 2))
    c = crit(evaluate(None, several, {}), "records-coherent")
    assert c.detail == "items x and y both give offsets for t[0] (and 1 more)" and not c.ok


def test_records_valid_reports_invalid_typed_items() -> None:
    bad = item("offsets/bad.json", "offsets", {"topic": "t", "start": 0, "end": 1})
    worse = item("s.json", "summary", b"{not json")
    ok = item("fine.json", "summary", {"n": 1})
    untyped = item("blob.json", "json", b"{not json either")  # not a typed kind: not checked
    ev = evidence(bad, worse, ok, untyped, FILE)
    assert [r.name for r in ev.records] == ["fine.json"]
    c = crit(evaluate(None, ev, {}), "records-valid")
    assert not c.ok
    assert c.detail == ("item offsets/bad.json: offsets record: field 'partition': missing (required: end, "
                        "partition, start, topic) (and 1 more)")
    assert c.evidence == ("offsets/bad.json", "s.json")
    one = crit(evaluate(None, evidence(worse), {}), "records-valid")
    assert one.detail.startswith("item s.json: summary record: not valid JSON") and "more" not in one.detail


def test_records_valid_unreadable_and_oversized_items() -> None:
    good = item("ok.json", "summary", {"n": 1})

    def read(e: ItemEntry) -> bytes:
        if e.name == "gone.json":
            raise LedgerError("content missing from the store")
        return good[1]

    gone = (ItemEntry("gone.json", "summary", 7, content_digest(b"x")), b"")
    huge = (ItemEntry("huge.json", "offsets", MAX_RECORD_BYTES + 1, content_digest(b"y")), b"")
    ev = evidence(good, gone, huge, read=read)
    assert ev.invalid == [("gone.json", "content missing from the store"),
                          ("huge.json", f"{MAX_RECORD_BYTES + 1} bytes: larger than a offsets record can be")]
    c = crit(evaluate(None, ev, {}), "records-valid")
    assert c.detail == "item gone.json: content missing from the store (and 1 more)" and not c.ok


# --- continuity ----------------------------------------------------------------------------------------------------

CONT = Policy(continuity=("orders",))


def test_continuity_contiguous() -> None:
    ev = evidence(off("o0", "orders", 0, 100, 150), off("o1", "orders", 1, 7, 7))
    c = crit(evaluate(CONT, ev, prev(orders_0=(100, "r1", 0), orders_1=(7, "r1", 0))), "continuity")
    assert c == Criterion("continuity", True, "2 partition(s) continue the previous sealed run, 0 start a stream "
                          "(orders)", ("o0", "o1"))


def test_continuity_first_of_stream() -> None:
    ev = evidence(off("o0", "orders", 0, 500, 600))
    c = crit(evaluate(CONT, ev, {}), "continuity")
    assert c.ok and c.detail == "0 partition(s) continue the previous sealed run, 1 start a stream (orders)"
    c = crit(evaluate(CONT, ev, prev(orders_1=(5, "r1", 0), other_0=(9, "r1", 0))), "continuity")
    assert c.ok and "1 start a stream" in c.detail


def test_continuity_gap() -> None:
    ev = evidence(off("o0", "orders", 0, 150, 200))
    c = crit(evaluate(CONT, ev, prev(orders_0=(100, "nightly-41", 3))), "continuity")
    assert c == Criterion("continuity", False, "orders[0]: gap [100, 150) after run nightly-41 (#3) ended at 100: "
                          "50 offset(s) never read", ("o0",))


def test_continuity_overlap() -> None:
    ev = evidence(off("o0", "orders", 0, 80, 200))
    c = crit(evaluate(CONT, ev, prev(orders_0=(100, "nightly-41", 3))), "continuity")
    assert c == Criterion("continuity", False, "orders[0]: overlap [80, 100) with run nightly-41 (#3), which ended "
                          "at 100: 20 offset(s) read twice", ("o0",))


def test_continuity_overlap_inside_the_previous_range_is_exact() -> None:
    # the offsets read twice are [start, min(end, previous end)): here [10, 20), not [10, 100)
    ev = evidence(off("o0", "orders", 0, 10, 20))
    c = crit(evaluate(CONT, ev, prev(orders_0=(100, "r1", 0))), "continuity")
    assert c.detail == "orders[0]: overlap [10, 20) with run r1 (#0), which ended at 100: 10 offset(s) read twice"
    assert not c.ok
    # an empty range below the previous end reads nothing twice, but the stream went backwards: still refused
    c = crit(evaluate(CONT, evidence(off("o0", "orders", 0, 50, 50)), prev(orders_0=(100, "r1", 0))), "continuity")
    assert not c.ok and "overlap [50, 50)" in c.detail and "0 offset(s) read twice" in c.detail


def test_continuity_lists_every_problem() -> None:
    ev = evidence(off("o0", "orders", 0, 110, 120), off("o1", "orders", 1, 50, 60), off("o2", "orders", 2, 30, 40))
    previous = prev(orders_0=(100, "r1", 0), orders_1=(55, "r2", 1), orders_2=(30, "r2", 1))
    c = crit(evaluate(CONT, ev, previous), "continuity")
    assert c.detail == ("orders[0]: gap [100, 110) after run r1 (#0) ended at 100: 10 offset(s) never read; "
                        "orders[1]: overlap [50, 55) with run r2 (#1), which ended at 55: 5 offset(s) read twice")
    assert c.evidence == ("o0", "o1", "o2") and not c.ok


def test_continuity_more_than_ten_problems() -> None:
    ev = evidence(*[off(f"o{p:02d}", "orders", p, 10, 20) for p in range(12)])
    previous = {("", "orders", p): Anchor(5, "r1", 0) for p in range(12)}
    c = crit(evaluate(CONT, ev, previous), "continuity")
    assert c.detail.count("gap [5, 10)") == 10 and c.detail.endswith("; and 2 more")


def test_continuity_only_for_the_listed_topics_or_every_topic() -> None:
    ev = evidence(off("o", "orders", 0, 100, 110), off("p", "payments", 0, 999, 1000))
    previous = prev(orders_0=(100, "r1", 0), payments_0=(5, "r1", 0))
    c = crit(evaluate(CONT, ev, previous), "continuity")
    assert c.ok and c.evidence == ("o",)
    c = crit(evaluate(Policy(continuity=("*",)), ev, previous), "continuity")
    assert not c.ok and c.detail.startswith("payments[0]: gap [5, 999)") and c.evidence == ("o", "p")
    assert "(every topic)" in crit(evaluate(Policy(continuity=("*",)), evidence(FILE), {}), "continuity").detail


def test_continuity_different_groups_are_different_streams() -> None:
    previous = {("etl", "orders", 0): Anchor(100, "r1", 0)}
    c = crit(evaluate(CONT, evidence(off("o", "orders", 0, 0, 10)), previous), "continuity")
    assert c.ok and "1 start a stream" in c.detail  # no group: not the etl stream
    c = crit(evaluate(CONT, evidence(off("o", "orders", 0, 0, 10, group="audit")), previous), "continuity")
    assert c.ok and "1 start a stream" in c.detail
    c = crit(evaluate(CONT, evidence(off("o", "orders", 0, 90, 110, group="etl")), previous), "continuity")
    assert c.detail == ("group etl orders[0]: overlap [90, 100) with run r1 (#0), which ended at 100: 10 offset(s) "
                        "read twice")


def test_previous_ends_takes_the_latest_earlier_commit_per_stream() -> None:
    commits = [
        (0, "r0", [Offsets("", "t", 0, 0, 100), Offsets("", "t", 1, 0, 50)]),
        (1, "r1", [Offsets("", "t", 0, 100, 200)]),
        (2, "r2", [Offsets("etl", "t", 0, 0, 7)]),
        (3, "r3", []),
        (4, "r4", [Offsets("", "t", 0, 150, 180)]),  # sealed without continuity: still the latest end
    ]
    assert previous_ends(commits) == {("", "t", 0): Anchor(180, "r4", 4), ("", "t", 1): Anchor(50, "r0", 0),
                                      ("etl", "t", 0): Anchor(7, "r2", 2)}
    assert previous_ends([]) == {}


def test_anchors_sorted_by_stream() -> None:
    ev = evidence(off("z", "b", 0, 0, 1), off("y", "a", 2, 5, 6), off("x", "a", 1, 0, 3, group="g"), FILE)
    assert anchors(ev) == [Offsets("", "a", 2, 5, 6), Offsets("", "b", 0, 0, 1), Offsets("g", "a", 1, 0, 3)]


def test_evidence_builder_counts_and_caps_names() -> None:
    b = EvidenceBuilder()
    names = [f"n/{i:04d}" for i in range(500)]
    for n in reversed(names):
        b.add(ItemEntry(n, "log", 1, content_digest(b"x")))
    b.add(ItemEntry("s.json", "summary", 7, content_digest(b'{"n":1}')))
    ev = b.finish(lambda e: b'{"n":1}')
    assert ev.count == 501 and ev.kind_counts == {"log": 500, "summary": 1}
    assert ev.kinds["log"] == names[:MAX_SHOWN]
    assert [r.name for r in ev.records] == ["s.json"] and ev.invalid == []
