"""End-to-end tests of typed records, closure criteria and policies through the ``ledger`` command line.

Like tests/test_cli.py, whose helpers these tests use: every command under test is a real subprocess on a store
under ``tmp_path`` (the store, the key and the runs a test starts from are made in-process through the Python API,
which the CLI is a thin layer over); every error is checked for its exit code, exactly one ``error:`` line and no
traceback; refusals and failed checks must leave the store exactly as it was. Covered: ``record`` of typed arrays
and single records, refusals (exit 6, nothing of the call stored), ``add --kind`` validation, ``check`` (built-in
criteria, policies, its JSON shape), ``seal --policy`` (refused with the same failing criterion, nothing written;
sealed with the policy digest, criteria and anchors), continuity across consecutive runs, ``verify`` re-evaluating
the sealed policy, and tampering with the sealed policy document.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_cli import HEX64, Cli, assert_error, durable, ls_items, snapshot, write

from ledger.api import Ledger
from ledger.digests import content_digest
from ledger.keys import generate_keyfile
from ledger.kinds import canonical_json
from ledger.policy import load_policies


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """test_cli's Cli: a store and a sealing key under tmp_path (made in-process: `init` and `keys generate` have
    their own CLI tests, and an interpreter start per set-up step would dominate this file's run time)."""
    c = Cli(tmp_path)
    Ledger.open(str(c.store)).init()
    c.key.parent.mkdir()
    generate_keyfile(c.key)
    assert c.pub.is_file()
    return c


def offsets(topic: str, partition: int, start: int, end: int, **extra: Any) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "start": start, "end": end, **extra}


def record(cli: Cli, run: str, kind: str, value: Any, *args: Any) -> Any:
    return cli.json("record", run, "--kind", kind, *args, json.dumps(value))


def policy(cli: Cli, name: str, text: str) -> Path:
    return write(cli.tmp / "policies" / name, text)


def state(cli: Cli) -> tuple[dict[str, str], Any]:
    """What a refused command must not change: every durable file of the store, and the chain as `log` shows it."""
    return durable(snapshot(cli.store)), cli.json("log")


# --- record --------------------------------------------------------------------------------------------------------

def test_record_typed_array_one_item_per_element(cli: Cli) -> None:
    recs = [offsets("orders", 0, 0, 100), offsets("orders", 1, 0, 50, group="etl", high=60)]
    j = record(cli, "r1", "offsets", recs)
    assert set(j) == {"run", "item", "added", "items"}
    assert j["run"] == "r1" and j["added"] is True
    names = ["offsets/orders/0.json", "offsets/etl/orders/1.json"]
    assert [i["name"] for i in j["items"]] == names
    assert j["item"] == {k: v for k, v in j["items"][0].items() if k != "added"}
    for i, rec in zip(j["items"], recs, strict=True):
        content = canonical_json(rec)
        assert i == {"name": i["name"], "kind": "offsets", "size": len(content),
                     "blake3": content_digest(content).hex(), "added": True}
        assert cli.ok("cat", "r1", i["name"]).raw == content
    items = ls_items(cli, "r1")
    assert sorted(items) == sorted(names) and {i["kind"] for i in items.values()} == {"offsets"}

    # the same array again is a no-op; with one new element only that one is added
    again = record(cli, "r1", "offsets", recs)
    assert again["added"] is False and [i["added"] for i in again["items"]] == [False, False]
    more = record(cli, "r1", "offsets", [recs[0], offsets("orders", 2, 0, 5)])
    assert more["added"] is True
    assert [(i["name"], i["added"]) for i in more["items"]] == [("offsets/orders/2.json", True),
                                                                ("offsets/orders/0.json", False)]
    assert len(ls_items(cli, "r1")) == 3


def test_record_single_typed_records_and_stdin(cli: Cli) -> None:
    j = record(cli, "r1", "summary", {"name": "load", "ingested": 7, "quarantined": 3})
    assert j["item"]["name"] == "summary/load.json" and j["item"]["kind"] == "summary" and j["added"] is True
    assert [i["name"] for i in j["items"]] == ["summary/load.json"]
    assert cli.ok("cat", "r1", "summary/load.json").raw == b'{"ingested":7,"name":"load","quarantined":3}'
    j = cli.json("record", "r1", "--kind", "artifact", "-", input=b'{"version": "1.4.2", "name": "model"}')
    assert j["item"]["name"] == "artifacts/model.json"
    j = record(cli, "r1", "receipt", {"source": "sftp", "count": 10}, "--name", "in/receipt.json")
    assert j["item"]["name"] == "in/receipt.json"
    j = record(cli, "r1", "decision", [{"name": "promote", "outcome": "go"}], "--name", "d.json")
    assert j["item"]["name"] == "d.json", "--name with a one-element array names that record"
    r = cli.ok("record", "r1", "--kind", "receipt", json.dumps({"source": "kafka", "count": 1, "topic": "t",
                                                                 "partition": 4}))
    assert "recorded receipts/kafka/t/4.json (receipt" in r.out
    assert sorted(ls_items(cli, "r1")) == ["artifacts/model.json", "d.json", "in/receipt.json",
                                           "receipts/kafka/t/4.json", "summary/load.json"]


def test_record_invalid_element_refuses_whole_array(cli: Cli) -> None:
    record(cli, "r1", "summary", {"rows": 1})
    good, bad = offsets("orders", 0, 0, 10), offsets("orders", 1, 20, 10)
    line = cli.unchanged(6, "record", "r1", "--kind", "offsets", json.dumps([good, bad]), mentions="record #2")
    assert "field 'start'" in line and "start 20 is after end 10" in line
    cli.unchanged(6, "record", "r1", "--kind", "offsets", json.dumps([good, {"topic": "x"}]), mentions="#2")
    cli.unchanged(6, "record", "r1", "--kind", "summary", json.dumps([{"a": 1}, {"b": 1.5}]), mentions="'b'")
    cli.unchanged(6, "record", "r1", "--kind", "offsets", "[]", mentions="empty array")
    # two elements of one call that would bind one name to different records
    cli.unchanged(6, "record", "r1", "--kind", "offsets", json.dumps([good, offsets("orders", 0, 0, 11)]),
                  mentions="offsets/orders/0.json")
    assert list(ls_items(cli, "r1")) == ["summary/summary.json"], "nothing of a refused array is stored"
    # a run that does not exist yet is not opened by a refused array
    cli.unchanged(6, "record", "r2", "--kind", "offsets", json.dumps([good, bad]))
    cli.fail(3, "ls", "r2")


INVALID_RECORDS = [
    ("offsets", offsets("orders", 0, -1, 5), "start"),
    ("offsets", offsets("bad topic", 0, 0, 5), "topic"),
    ("offsets", offsets("orders", 0, 0, 5) | {"partitions": 2}, "partitions"),
    ("receipt", {"source": "s", "count": True}, "count"),
    ("receipt", {"source": "s", "count": 3.0}, "count"),
    ("summary", {"ingested": "10"}, "ingested"),
    ("artifact", {"name": "m", "version": "1", "digest": "sha256:" + "AB" * 32}, "digest"),
    ("decision", {"name": "d", "outcome": ""}, "outcome"),
]


def test_record_invalid_single_record_names_the_field(cli: Cli) -> None:
    record(cli, "r1", "summary", {"rows": 1})
    for kind, value, field in INVALID_RECORDS:
        line = cli.unchanged(6, "record", "r1", "--kind", kind, json.dumps(value), mentions=f"field {field!r}")
        assert line.startswith(f"error: run r1: {kind} record: "), line
    assert list(ls_items(cli, "r1")) == ["summary/summary.json"]


def test_record_larger_than_a_typed_record_can_be(cli: Cli) -> None:
    big = {f"f{i:07d}": 0 for i in range(90_000)}  # about 1.1 MB of canonical JSON
    assert len(canonical_json(big)) > 1 << 20
    cli.unchanged(6, "record", "r1", "--kind", "summary", "-", input=json.dumps(big).encode(),
                  mentions="larger than a summary record can be")
    cli.fail(3, "ls", "r1")


def test_record_name_with_array_is_a_usage_error(cli: Cli) -> None:
    record(cli, "r1", "summary", {"rows": 1})
    recs = json.dumps([offsets("t", 0, 0, 1), offsets("t", 1, 0, 1)])
    cli.unchanged(2, "record", "r1", "--kind", "offsets", "--name", "o.json", recs, mentions="--name")
    assert list(ls_items(cli, "r1")) == ["summary/summary.json"]


def test_record_contradicting_fact_and_invalid_default_name(cli: Cli) -> None:
    record(cli, "r1", "offsets", offsets("orders", 0, 0, 10))
    cli.unchanged(6, "record", "r1", "--kind", "offsets", json.dumps(offsets("orders", 0, 0, 12)),
                  mentions="offsets/orders/0.json")
    line = cli.unchanged(6, "record", "r1", "--kind", "summary", json.dumps({"name": "../x", "n": 1}),
                         mentions="--name")
    assert "summary/../x.json" in line
    j = record(cli, "r1", "summary", {"name": "../x", "n": 1}, "--name", "summary/x.json")
    assert j["added"] is True


def test_add_typed_kind_validates_each_file(cli: Cli, tmp_path: Path) -> None:
    good = write(tmp_path / "in" / "p0.json", json.dumps(offsets("orders", 0, 0, 10)))
    bad = write(tmp_path / "in" / "p1.json", json.dumps(offsets("orders", 1, 0, 10, high=5)))
    cli.ok("add", "r1", good, "--kind", "offsets")
    assert ls_items(cli, "r1")["p0.json"]["kind"] == "offsets"
    line = cli.unchanged(6, "add", "r1", bad, "--kind", "offsets", mentions="p1.json")
    assert "field 'high'" in line
    cli.unchanged(6, "add", "r1", tmp_path / "in", "--kind", "offsets", mentions="p1.json")  # whole directory
    # a typed file is read whole whatever its size up to 1 MiB (past the first 64 KiB read), and refused beyond
    padded = write(tmp_path / "big" / "p2.json", json.dumps(offsets("orders", 2, 0, 1)) + " " * 200_000)
    cli.ok("add", "r1", padded, "--kind", "offsets")
    huge = write(tmp_path / "big" / "huge.json", '{"n": 1}' + " " * (1 << 20))
    cli.unchanged(6, "add", "r1", huge, "--kind", "summary", mentions="larger than a summary record can be")
    notjson = write(tmp_path / "x" / "n.json", "not json\n")
    cli.unchanged(6, "add", "r1", notjson, "--kind", "summary", mentions="not valid JSON")
    cli.ok("add", "r1", notjson)  # as a plain file it is just bytes
    assert sorted(ls_items(cli, "r1")) == ["n.json", "p0.json", "p2.json"]


# --- check ---------------------------------------------------------------------------------------------------------

def good_run(cli: Cli, run: str = "r1") -> None:
    """A run with a file, three offsets records, a receipt and a summary. Set up through the Python API in this
    process (the CLI layer over it is what the tests exercise; starting an interpreter per set-up step is not)."""
    write(cli.tmp / "data" / "a.csv", "id\n1\n")
    lg = Ledger.open(str(cli.store))
    lg.add(run, [str(cli.tmp / "data")])
    lg.record(run, "offsets", [offsets("orders", 1, 5, 9), offsets("orders", 0, 0, 10),
                               offsets("audit", 0, 3, 4, group="etl")])
    lg.record(run, "receipt", {"source": "sftp", "count": 14})
    lg.record(run, "summary", {"name": "load", "ingested": 10, "quarantined": 4})


BUILTIN = ["non-empty", "content-present", "records-valid", "records-coherent"]
ANCHORS = [{"group": None, "topic": "orders", "partition": 0, "start": 0, "end": 10},
           {"group": None, "topic": "orders", "partition": 1, "start": 5, "end": 9},
           {"group": "etl", "topic": "audit", "partition": 0, "start": 3, "end": 4}]


def test_check_without_policy(cli: Cli) -> None:
    good_run(cli)
    before = state(cli)
    r = cli.ok("check", "r1")
    lines = r.out.splitlines()
    assert [re.match(r"\[(ok  |FAIL)\] (\S+) ", ln).groups() for ln in lines[:-1]] == [  # type: ignore[union-attr]
        ("ok  ", n) for n in BUILTIN]
    assert lines[-1] == "run r1: ready to seal"
    r = cli.ok("check", "r1", "--json")
    assert r.err == "" and len(r.out.strip().splitlines()) == 1
    j = r.json()
    assert list(j) == ["run", "ok", "policy", "criteria", "anchors", "waivers"]
    assert j["run"] == "r1" and j["ok"] is True and j["policy"] is None and j["waivers"] == []
    assert [c["name"] for c in j["criteria"]] == BUILTIN
    for c in j["criteria"]:
        assert set(c) == {"name", "ok", "detail", "evidence"} and c["ok"] is True and c["detail"]
        assert isinstance(c["evidence"], list)
    by = {c["name"]: c for c in j["criteria"]}
    assert by["non-empty"]["detail"] == "6 item(s)"
    assert by["records-valid"]["detail"] == "5 typed record(s) valid"
    assert by["records-coherent"]["detail"] == "3 offsets range(s), 0 artifact(s): no contradictions"
    assert j["anchors"] == ANCHORS
    assert state(cli) == before, "check writes nothing"


def test_check_unknown_and_empty_runs(cli: Cli) -> None:
    cli.fail(3, "check", "ghost", mentions="ghost")
    cli.fail(3, "check", "ghost", "--json", mentions="ghost")
    cli.fail(2, "check", "-bad-", "--policy", "x.toml")
    # a run opened by adding an empty directory has no items: not found is wrong, non-empty fails (as seal does)
    (cli.tmp / "nothing").mkdir()
    cli.ok("add", "r1", cli.tmp / "nothing")
    r = cli("check", "r1")
    assert_error(r, 1, stdout_empty=False, mentions="non-empty: 0 item(s)")
    assert "[FAIL] non-empty" in r.out


def test_check_of_a_sealed_run_is_contention(cli: Cli) -> None:
    good_run(cli)
    commit = cli.json("seal", "r1", "--key", cli.key)["commit"]
    cli.fail(4, "check", "r1", mentions=commit[:16])


def test_failing_policy_check_and_seal_refused_nothing_written(cli: Cli) -> None:
    good_run(cli)
    cli.ok("add", "prev", cli.tmp / "data")
    cli.ok("seal", "prev", "--key", cli.key)  # the chain is not empty: its listing must stay as it is
    pol = policy(cli, "release.toml", 'artifacts = ["model"]\nmin = {offsets = 2}\n')
    before = state(cli)

    r = cli("check", "r1", "--policy", pol)
    check_line = assert_error(r, 1, stdout_empty=False)
    assert check_line == "error: run r1: not ready to seal: artifacts: missing artifact(s): model"
    assert "[FAIL] artifacts" in r.out and "[ok  ] min:offsets" in r.out
    assert r.out.splitlines()[-1] == "run r1: NOT ready to seal"
    j = cli("check", "r1", "--policy", pol, "--json")
    assert j.code == 1 and j.err == "", str(j)
    doc = j.json()
    assert doc["ok"] is False and doc["policy"] == load_policies([str(pol)]).digest.hex()
    assert [c["name"] for c in doc["criteria"]] == [*BUILTIN, "min:offsets", "artifacts"]
    assert [c["name"] for c in doc["criteria"] if not c["ok"]] == ["artifacts"]

    r = cli("seal", "r1", "--key", cli.key, "--policy", pol)
    seal_line = assert_error(r, 1, stdout_empty=False)
    assert seal_line == check_line, "seal refuses with the same failing criterion check reports"
    assert "[FAIL] artifacts" in r.out and r.out.splitlines()[-1] == "run r1: NOT sealed"
    r = cli("seal", "r1", "--key", cli.key, "--policy", pol, "--json")
    assert_error(r, 1, stdout_empty=False, mentions="artifacts: missing artifact(s): model")
    doc = r.json()
    assert doc["run"] == "r1" and doc["ok"] is False and doc["sealed"] is False
    assert [c["name"] for c in doc["criteria"] if not c["ok"]] == ["artifacts"]
    assert state(cli) == before, "a refused seal changed the store or the chain"
    assert not (cli.store / "policies").exists()
    assert ls_items(cli, "r1") and cli.json("ls", "r1")["sealed"] is False


def test_passing_policy_sealed_shown_and_verified(cli: Cli) -> None:
    good_run(cli)
    record(cli, "r1", "artifact", {"name": "model", "version": "1.4.2"})
    pol = policy(cli, "release.toml", """
min = {offsets = 3}
artifacts = ["model"]
topics = {orders = 2}
continuity = ["orders"]
[[reconcile]]
name = "ingest"
left = ["receipt.count"]
right = ["summary.ingested", "summary.quarantined"]
""")
    names = [*BUILTIN, "min:offsets", "artifacts", "topic:orders", "reconcile:ingest", "continuity"]
    chk = cli.json("check", "r1", "--policy", pol)
    assert chk["ok"] is True and [c["name"] for c in chk["criteria"]] == names
    digest = chk["policy"]
    assert HEX64.fullmatch(digest) and digest == load_policies([str(pol)]).digest.hex()

    s = cli.json("seal", "r1", "--key", cli.key, "--policy", pol)
    assert s["policy"] == digest
    assert [c["name"] for c in s["criteria"]] == names and all(c["ok"] for c in s["criteria"])
    shown = cli.json("show", "r1")
    assert shown["policy"] == digest and shown["commit"] == s["commit"]
    assert [(c["name"], c["ok"], c["detail"]) for c in shown["criteria"]] == [
        (c["name"], c["ok"], c["detail"]) for c in chk["criteria"]]
    by = {c["name"]: c["detail"] for c in shown["criteria"]}
    assert by["reconcile:ingest"] == "receipt.count 14 = summary.ingested 10 + summary.quarantined 4 (both 14)"
    assert by["continuity"] == "0 partition(s) continue the previous sealed run, 2 start a stream (orders)"
    assert shown["anchors"] == ANCHORS  # sorted by (group, topic, partition); no group sorts first
    human = cli.ok("show", "r1").out
    assert f"policy  {digest}" in human and "orders[1]  [5, 9)  4 offset(s)" in human
    sealed_doc = cli.store / "policies" / digest
    assert sealed_doc.is_file() and sealed_doc.read_bytes() == load_policies([str(pol)]).encode()

    v = cli.ok("verify", "r1", "--trust", cli.pub, "--json").json()
    assert v["ok"] is True
    crit = [c for c in v["checks"] if c["name"] == "criteria"]
    assert len(crit) == 1 and crit[0]["ok"] is True
    assert f"policy b3:{digest[:16]}" in crit[0]["detail"] and "3 replay anchor(s)" in crit[0]["detail"]


def test_seal_without_policy_records_builtin_criteria(cli: Cli) -> None:
    good_run(cli)
    s = cli.json("seal", "r1", "--key", cli.key)
    assert s["policy"] is None and [c["name"] for c in s["criteria"]] == BUILTIN
    assert cli.json("show", "r1")["anchors"] == ANCHORS
    v = cli.ok("verify", "r1", "--trust", cli.pub, "--json").json()
    assert [c["ok"] for c in v["checks"] if c["name"] == "criteria"] == [True]


# --- continuity across runs, and tampering with the sealed policy --------------------------------------------------

def test_continuity_across_runs_then_tamper_with_the_sealed_policy(cli: Cli) -> None:
    pol = policy(cli, "stream.toml", 'continuity = ["orders"]\ntopics = {orders = 2}\n')
    record(cli, "r1", "offsets", [offsets("orders", 0, 0, 100), offsets("orders", 1, 0, 50)])
    cli.ok("seal", "r1", "--key", cli.key, "--policy", pol)

    record(cli, "r2", "offsets", [offsets("orders", 0, 100, 180), offsets("orders", 1, 50, 60)])
    s2 = cli.json("seal", "r2", "--key", cli.key, "--policy", pol)
    cont = {c["name"]: c for c in s2["criteria"]}["continuity"]
    assert cont["ok"] is True
    assert cont["detail"] == "2 partition(s) continue the previous sealed run, 0 start a stream (orders)"

    # a gap on partition 0 and an overlap on partition 1, against r2 (#1)
    record(cli, "r3", "offsets", [offsets("orders", 0, 200, 250), offsets("orders", 1, 55, 70)])
    want = ("continuity: orders[0]: gap [180, 200) after run r2 (#1) ended at 180: 20 offset(s) never read; "
            "orders[1]: overlap [55, 60) with run r2 (#1), which ended at 60: 5 offset(s) read twice")
    before = state(cli)
    r = cli("check", "r3", "--policy", pol)
    assert assert_error(r, 1, stdout_empty=False) == f"error: run r3: not ready to seal: {want}"
    r = cli("seal", "r3", "--key", cli.key, "--policy", pol)
    assert assert_error(r, 1, stdout_empty=False) == f"error: run r3: not ready to seal: {want}"
    assert state(cli) == before
    # the same run without the continuity rule seals (the policy decides what must hold)
    cli.ok("check", "r3")

    # both sealed runs verify, criteria re-evaluated against the anchors of the runs before them
    for run in ("r1", "r2"):
        v = cli.ok("verify", run, "--trust", cli.pub, "--json").json()
        assert [c["ok"] for c in v["checks"] if c["name"] == "criteria"] == [True], v

    # tamper: the sealed policy document is gone
    digest = s2["policy"]
    doc = cli.store / "policies" / digest
    original = doc.read_bytes()
    doc.unlink()
    r = cli("verify", "r2", "--trust", cli.pub)
    line = assert_error(r, 1, stdout_empty=False, mentions=f"policies/{digest}")
    assert "missing from the store" in line and "[FAIL] criteria" in r.out
    j = cli("verify", "r2", "--trust", cli.pub, "--json")
    assert j.code == 1 and "Traceback" not in j.err
    failed = [c for c in j.json()["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["criteria"] and f"policies/{digest}" in failed[0]["detail"]

    # tamper: replaced by another valid policy document (its own digest is not the one the commit names)
    other = load_policies([str(policy(cli, "lax.toml", "min = {offsets = 1}\n"))]).encode()
    assert other != original
    doc.write_bytes(other)
    r = cli("verify", "r2", "--trust", cli.pub)
    line = assert_error(r, 1, stdout_empty=False, mentions=f"policies/{digest}")
    assert "do not match the digest the commit names" in line
    # r1 sealed the same policy (same file, same bytes): its verification fails the same way
    assert_error(cli("verify", "r1", "--trust", cli.pub), 1, stdout_empty=False, mentions=f"policies/{digest}")
    doc.write_bytes(original)
    cli.ok("verify", "r2", "--trust", cli.pub)


# --- bad policy input ----------------------------------------------------------------------------------------------

BAD_POLICIES = [
    ("malformed.toml", "min = {offsets = ", "malformed TOML"),
    ("unknown.toml", "min = {offsets = 1}\nmaximum = {offsets = 9}", "unknown rule 'maximum'"),
    ("empty.toml", "", "an empty policy is an error, never a pass"),
    ("zero.toml", "topics = {orders = 0}", "rule topics.orders"),
    ("summable.toml", '[[reconcile]]\nleft = ["receipt.source"]\nright = ["summary.n"]', "not a summable field"),
]


def test_bad_policy_files_are_usage_errors_nothing_written(cli: Cli) -> None:
    good_run(cli)
    ok = policy(cli, "ok.toml", "min = {offsets = 1}\n")
    before = state(cli)
    for i, (name, text, fragment) in enumerate(BAD_POLICIES):
        pol = policy(cli, name, text)
        as_json = ["--json"] if i % 2 else []  # --json changes nothing about a usage error
        for cmd in (["check", "r1", "--policy", pol, *as_json], ["seal", "r1", "--key", cli.key, "--policy", pol]):
            line = cli.fail(2, *cmd, mentions=fragment)
            assert line.startswith(f"error: policy {name}: "), line
        if True:  # also next to a good policy: every file on its own must be valid and declare a rule
            cli.fail(2, "seal", "r1", "--key", cli.key, "--policy", ok, "--policy", pol, "--json", mentions=name)
    missing = cli.tmp / "nope.toml"
    cli.fail(2, "check", "r1", "--policy", missing, mentions=f"policy {missing}: no such file")
    cli.fail(2, "seal", "r1", "--key", cli.key, "--policy", missing, mentions="nope.toml")
    assert state(cli) == before
    assert not (cli.store / "policies").exists() and not (cli.store / "runs" / "r1" / "sealing").exists()


def test_reconcile_over_a_field_no_summary_has(cli: Cli) -> None:
    good_run(cli)
    pol = policy(cli, "typo.toml", '[[reconcile]]\nleft = ["receipt.count"]\nright = ["summary.ingestd"]\n')
    before = state(cli)
    for cmd in (["check", "r1", "--policy", pol], ["check", "r1", "--policy", pol, "--json"],
                ["seal", "r1", "--key", cli.key, "--policy", pol]):
        line = cli.fail(2, *cmd, mentions="'summary.ingestd' is in no summary record")
        assert "fields seen: ingested, quarantined" in line
    assert state(cli) == before
    assert not (cli.store / "runs" / "r1" / "sealing").exists()


# --- hostile input: one error line, never a traceback, nothing stored --------------------------------------------

def test_record_with_lone_surrogate_refused(cli: Cli) -> None:
    """A lone surrogate cannot be sealed (the commit's canonical encoding is UTF-8): it is refused when recorded."""
    f = write(cli.tmp / "in" / "o.json", '{"topic": "t", "partition": 0, "start": 0, "end": 5, "group": "\\ud800"}')
    cli.unchanged(6, "add", "r1", f, "--kind", "offsets", mentions="field 'group'")
    cli.unchanged(6, "record", "r1", "--kind", "artifact", '{"name": "m", "version": "\\udfff"}',
                  mentions="field 'version'")
    cli.fail(3, "ls", "r1")


def test_deeply_nested_record_is_one_error_line(cli: Cli) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    cli.unchanged(6, "record", "r1", "--kind", "summary", "-", input=deep, mentions="nested deeper than")
    cli.unchanged(6, "record", "r1", "--kind", "json", "-", input=deep, mentions="nested deeper than")
    f = write(cli.tmp / "in" / "deep.json", deep)
    cli.unchanged(6, "add", "r1", f, "--kind", "offsets", mentions="deep.json")
    cli.fail(3, "ls", "r1")


def test_policy_topic_with_newline_is_refused_on_one_line(cli: Cli) -> None:
    good_run(cli)
    pol = policy(cli, "nl.toml", 'topics = {"orders\\nerror: all good" = 1}\n')
    cli.unchanged(2, "check", "r1", "--policy", pol, mentions="not a Kafka topic name")


# --- bugs (strict xfail: they fail today; fixing the bug makes them pass and the marker must go) ------------------

def test_policy_artifact_with_newline_is_one_error_line(cli: Cli) -> None:
    good_run(cli)
    pol = policy(cli, "nl.toml", 'artifacts = ["model\\nerror: all good"]\n')
    r = cli("check", "r1", "--policy", pol)
    assert_error(r, 2, mentions="is not a printable name")
