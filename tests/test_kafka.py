"""Kafka: receipts kept while consuming, anchors captured from the brokers, the replay check (spec/kafka.md).

The brokers are librdkafka's built-in mock cluster (``test.mock.num.brokers``). It speaks the real Kafka protocol
on loopback, runs inside this process and needs no Java. It lives as long as the producer that started it. Topics
are created, with 4 partitions, on their first produce. Every ``ledger`` command runs as a real CLI process
(tests/test_cli.py's helpers), and every error is checked for its exit code, exactly one ``error:`` line and no
traceback. Consumption runs in this process with confluent-kafka and :class:`ledger.kafka.ReceiptTracker`: assigned
partitions from the group's committed offsets (``subscribe`` is unreliable on the mock for a second consumer of one
group). Nothing sleeps to synchronise. Poll loops have deadlines, and every broker wait is bounded.

Covered: two consecutive nights over 2 topics x 4 partitions, with receipts, captured anchors, a policy with
continuity and reconciliation, seals, ``replay`` joins and ``replay --check``. The check is then run against fresh
clusters holding a changed message, a null instead of an empty value, a shorter partition, and offsets the run never
admitted (transaction markers). Also covered: capture's start/end/high, librdkafka property pass-through and
secrecy, bad input with the contract's exit codes, the tracker's hash, log and receipt formats (with
spec/kafka.md's vectors), the first-difference rule, and the README's example run as written.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import struct
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import Cli, Result, assert_error, base_env, ls_items, run_cli, snapshot, write

from ledger import encoding
from ledger.api import Ledger
from ledger.errors import CheckFailed, LedgerError, UsageError
from ledger.kafka import (
    CTX_KAFKA_MESSAGE,
    LOG_RECORD,
    ReceiptTracker,
    _compare,
    log_name,
    message_hash,
    parse_log,
)
from ledger.keys import generate_keyfile, load_signing_key
from ledger.kinds import canonical_json

ROOT = Path(__file__).resolve().parent.parent
QUIET = {"log_level": 0}  # librdkafka logs to stderr by default (disconnects at teardown, ...)
DEADLINE = 20.0  # seconds any poll loop of this file may take before it fails the test
GROUP = "nightly"
TOPICS = ("orders", "payments")
TP = tuple[str, int]

# The main scenario: messages produced per partition before night 1, and added before night 2. orders[3] never
# has a message (no committed offset: an empty range at the low watermark); payments[1] gets its first ones in
# night 2; orders[1] and payments[0] get nothing new in night 2 (an empty range at the previous end).
NIGHT1: dict[TP, int] = {("orders", 0): 6, ("orders", 1): 4, ("orders", 2): 5, ("orders", 3): 0,
                         ("payments", 0): 3, ("payments", 1): 0, ("payments", 2): 7, ("payments", 3): 2}
NIGHT2: dict[TP, int] = {("orders", 0): 3, ("orders", 1): 0, ("orders", 2): 3, ("orders", 3): 0,
                         ("payments", 0): 0, ("payments", 1): 4, ("payments", 2): 2, ("payments", 3): 0}
TOTAL: dict[TP, int] = {tp: NIGHT1[tp] + NIGHT2[tp] for tp in NIGHT1}
WINDOWS: dict[str, dict[TP, tuple[int, int]]] = {
    "r1": {tp: (0, NIGHT1[tp]) for tp in NIGHT1},
    "r2": {tp: (NIGHT1[tp], TOTAL[tp]) for tp in NIGHT1},
}
POLICY = """\
min = { receipt = 1 }
topics = { orders = 4, payments = 4 }
continuity = ["*"]

[[reconcile]]
name = "consumed-vs-admitted"
left = ["offsets.span"]
right = ["receipt.count"]
"""


def payload(topic: str, partition: int, i: int) -> tuple[bytes | None, bytes | None]:
    """Message i of a partition: some null keys, some empty values, non-UTF-8 bytes in the others."""
    key = None if i % 4 == 3 else f"{topic}/{partition}/{i}".encode()
    value = b"" if i % 5 == 2 else json.dumps({"topic": topic, "partition": partition, "n": i}).encode() + b"\x00\xff"
    return key, value


# --- the mock cluster, producing, consuming ------------------------------------------------------------------------

class Cluster:
    """A mock cluster with one broker, alive as long as this object (its ``mock`` producer) is."""

    def __init__(self) -> None:
        self.mock = Producer({"test.mock.num.brokers": 1, **QUIET})
        brokers = list(self.mock.list_topics(timeout=10).brokers.values())
        assert len(brokers) == 1
        self.bootstrap = f"{brokers[0].host}:{brokers[0].port}"
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0, **QUIET})
        self.errors: list[Any] = []

    def produce(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                self.errors.append(err)

        self.producer.produce(topic, key=key, value=value, partition=partition, on_delivery=report)

    def flush(self) -> None:
        assert self.producer.flush(DEADLINE) == 0, "messages still unsent"
        assert not self.errors, self.errors

    def close(self) -> None:
        self.producer.flush(DEADLINE)
        del self.producer, self.mock


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def produce(cluster: Cluster, upto: dict[TP, int], since: dict[TP, int] | None = None,
            override: dict[tuple[str, int, int], tuple[bytes | None, bytes | None]] | None = None) -> None:
    """Messages [since, upto) of every partition (payload(), or override's key and value), then flush."""
    for (topic, p), n in upto.items():
        for i in range((since or {}).get((topic, p), 0), n):
            key, value = (override or {}).get((topic, p, i)) or payload(topic, p, i)
            cluster.produce(topic, p, key, value)
    cluster.flush()
    for topic in {t for t, _ in upto}:
        c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "probe", **QUIET})
        try:
            assert len(c.list_topics(topic, timeout=10).topics[topic].partitions) == 4  # the mock's default
        finally:
            c.close()


def consume(bootstrap: str, group: str, topics: tuple[str, ...], tracker: ReceiptTracker | None,
            skip: frozenset[tuple[str, int, int]] = frozenset()) -> dict[TP, int]:
    """One run of a consumer: every partition from the group's committed offset (the low watermark without one) to
    its end; every message admitted to ``tracker`` except ``skip``; the next offsets committed. Returns them."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest", **QUIET})
    try:
        parts = [TopicPartition(t, p) for t in topics for p in c.list_topics(t, timeout=10).topics[t].partitions]
        starts: dict[TP, int] = {}
        for tp in c.committed(parts, timeout=10):
            low, _high = c.get_watermark_offsets(tp, timeout=10, cached=False)
            starts[tp.topic, tp.partition] = tp.offset if tp.offset >= 0 else low
        c.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
        reading, commits = set(starts), {}
        deadline = time.monotonic() + DEADLINE
        while reading:
            assert time.monotonic() < deadline, f"partitions not read to their end: {sorted(reading)}"
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                reading.discard((msg.topic(), msg.partition()))
                continue
            if tracker is not None and (msg.topic(), msg.partition(), msg.offset()) not in skip:
                tracker.admit_message(msg)
            commits[msg.topic(), msg.partition()] = msg.offset() + 1
        if commits:
            done = c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in commits.items()], asynchronous=False)
            assert all(tp.error is None for tp in done), done
        return commits
    finally:
        c.close()


def commit(bootstrap: str, group: str, offsets: dict[TP, int]) -> None:
    """Set a group's committed offsets directly (what a consumer of the group would have committed)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, **QUIET})
    try:
        done = c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        assert all(tp.error is None for tp in done), done
    finally:
        c.close()


# --- the store and the CLI -----------------------------------------------------------------------------------------

def new_cli(tmp: Path) -> Cli:
    """test_cli's Cli: a store and a sealing key under tmp, made in-process (their commands have their own tests)."""
    c = Cli(tmp)
    Ledger.open(str(c.store)).init()
    c.key.parent.mkdir()
    generate_keyfile(c.key)
    return c


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return new_cli(tmp_path)


def capture(cli: Cli, run: str, bootstrap: str, *extra: Any, group: str = GROUP,
            topics: tuple[str, ...] = TOPICS) -> Result:
    args: list[Any] = ["anchors", "capture", run, "--bootstrap", bootstrap, "--group", group]
    for t in topics:
        args += ["--topic", t]
    return cli(*args, *extra)


def check(cli: Cli, run: str, bootstrap: str, *extra: Any) -> Result:
    return cli("replay", run, "--check", "--bootstrap", bootstrap, "--timeout", "5", *extra)


def together(cli: Cli, *commands: list[Any]) -> list[Result]:
    """Run commands at once (each is a process that mostly waits on the brokers); their results in order."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda argv: cli(*argv), commands))


def stored_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections are refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers a byte: a hung broker."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def api(cli: Cli) -> Ledger:
    return Ledger.open(str(cli.store))


def seal(cli: Cli, run: str, policy: Path | None = None) -> None:
    """Seal in-process: sealing has its own CLI tests, and each interpreter start costs this file's budget."""
    api(cli).seal(run, load_signing_key(cli.key), policy=None if policy is None else [str(policy)])


def synthetic_run(cli: Cli, run: str, topic: str = "orders", partition: int = 0, n: int = 3) -> None:
    """A sealed run made without brokers: receipts of messages 0..n-1 of payload() and their offsets range."""
    tracker = ReceiptTracker()
    for i in range(n):
        tracker.admit(topic, partition, i, *payload(topic, partition, i))
    tracker.record(api(cli), run)
    api(cli).record(run, "offsets", {"group": GROUP, "topic": topic, "partition": partition, "start": 0, "end": n})
    seal(cli, run)


def names(cli: Cli, run: str) -> dict[str, str]:
    return {e.name: e.kind for e in api(cli).items(run).items}


# --- the main scenario: two nights, sealed, checked --------------------------------------------------------------

@dataclass
class Scenario:
    cli: Cli
    cluster: Cluster
    results: dict[str, Result] = field(default_factory=dict)

    def ok(self, name: str) -> Result:
        r = self.results[name]
        assert r.code == 0 and "Traceback" not in r.err, str(r)
        return r


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Night 1 and night 2 of a job consuming 2 topics x 4 partitions as group `nightly`: consume with receipts,
    record them, capture the anchors, check and seal under a policy with continuity; then the replay views.
    Each command's result is kept for the tests below; the sealed store is shared (the checks only read it)."""
    cluster = Cluster()
    cli = new_cli(tmp_path_factory.mktemp("kafka-scenario"))
    policy = write(cli.tmp / "kafka.toml", POLICY)
    lg = Ledger.open(str(cli.store))
    s = Scenario(cli, cluster)
    bs = cluster.bootstrap
    for run, since, upto in (("r1", None, NIGHT1), ("r2", NIGHT1, TOTAL)):
        produce(cluster, upto, since)
        tracker = ReceiptTracker()
        consume(bs, GROUP, TOPICS, tracker)
        assert tracker.record(lg, run) == sum(1 for tp in NIGHT1 if WINDOWS[run][tp][0] < WINDOWS[run][tp][1])
        s.results[f"capture {run}"] = capture(cli, run, bs, "--json")
        s.results[f"check {run}"] = cli("check", run, "--policy", policy, "--json")
        s.results[f"seal {run}"] = cli("seal", run, "--key", cli.key, "--policy", policy)
    # the read-only commands, at once (a replay check mostly waits on the brokers)
    views = {"replay r2": ["replay", "r2", "--json"], "replay r2 text": ["replay", "r2"],
             "replay-check r1": ["replay", "r1", "--check", "--bootstrap", bs, "--json"],
             "replay-check r2": ["replay", "r2", "--check", "--bootstrap", bs],
             "replay-check r2 -X": ["replay", "r2", "--check", "-X", f"bootstrap.servers={bs}", "--json"],
             "verify r2": ["verify", "r2", "--trust", cli.pub]}
    s.results.update(zip(views, together(cli, *views.values()), strict=True))
    yield s
    cluster.close()


def expected_offsets(run: str) -> list[dict[str, Any]]:
    return [{"group": GROUP, "topic": t, "partition": p, "start": a, "end": b, "high": WINDOWS[run][t, p][1]}
            for (t, p), (a, b) in sorted(WINDOWS[run].items())]


def test_capture_records_each_nights_window(scenario: Scenario) -> None:
    for run in ("r1", "r2"):
        assert scenario.ok(f"capture {run}").json() == {"run": run, "offsets": expected_offsets(run)}
    items = ls_items(scenario.cli, "r2")
    for t, p in NIGHT1:
        assert items[f"offsets/{GROUP}/{t}/{p}.json"]["kind"] == "offsets"


def test_check_and_seal_hold_under_continuity_and_reconciliation(scenario: Scenario) -> None:
    for run, joined, first in (("r1", 0, 8), ("r2", 8, 0)):
        rep = scenario.ok(f"check {run}").json()
        assert rep["ok"] is True, rep
        crit = {c["name"]: c for c in rep["criteria"]}
        assert all(c["ok"] for c in crit.values()), crit
        assert crit["continuity"]["detail"] == (f"{joined} partition(s) continue the previous sealed run, {first} "
                                                "start a stream (every topic)")
        span = sum(b - a for a, b in WINDOWS[run].values())
        assert crit["reconcile:consumed-vs-admitted"]["detail"] == \
            f"offsets.span {span} = receipt.count {span} (both {span})"
        assert {"topic:orders", "topic:payments", "min:receipt"} <= set(crit)
        assert f"run {run}: sealed" in scenario.ok(f"seal {run}").out
    assert scenario.ok("verify r2").code == 0


def test_replay_shows_contiguous_joins(scenario: Scenario) -> None:
    anchors = scenario.ok("replay r2").json()["anchors"]
    assert [(a["topic"], a["partition"], a["start"], a["end"]) for a in anchors] == \
        [(t, p, a, b) for (t, p), (a, b) in sorted(WINDOWS["r2"].items())]
    for a in anchors:
        assert a["group"] == GROUP and a["joins"] == "contiguous" and a["range"] is None, a
        assert a["previous"] == {"run": "r1", "seq": 0, "end": WINDOWS["r1"][a["topic"], a["partition"]][1]}
    text = scenario.ok("replay r2 text").out
    assert re.search(r"^nightly orders\[0\] +\[6, 9\) +3 offset\(s\)  contiguous after run r1 \(#0\)$", text, re.M)


def test_receipts_hold_the_message_log_of_each_window(scenario: Scenario) -> None:
    lg = Ledger.open(str(scenario.cli.store))
    items = ls_items(scenario.cli, "r2")
    for (t, p), (a, b) in WINDOWS["r2"].items():
        name = f"receipts/kafka/{t}/{p}.json"
        if a == b:
            assert name not in items and log_name("kafka", t, p) not in items
            continue
        receipt = json.loads(lg.read("r2", name))
        log = lg.read("r2", log_name("kafka", t, p))
        assert receipt == {"source": "kafka", "topic": t, "partition": p, "count": b - a, "first": a, "last": b - 1,
                           "digest": "b3:" + items[log_name("kafka", t, p)]["blake3"]}
        assert parse_log(log, "log") == [(i, message_hash(t, p, i, *payload(t, p, i))) for i in range(a, b)]
        assert items[name]["kind"] == "receipt" and items[log_name("kafka", t, p)]["kind"] == "file"


def test_replay_check_passes_on_both_nights(scenario: Scenario) -> None:
    for name, run in (("replay-check r1", "r1"), ("replay-check r2 -X", "r2")):
        doc = scenario.ok(name).json()
        assert doc["run"] == run and doc["ok"] is True
        assert [(x["topic"], x["partition"], x["start"], x["end"], x["count"]) for x in doc["partitions"]] == \
            [(t, p, a, b, b - a) for (t, p), (a, b) in sorted(WINDOWS[run].items())]
        assert all(x["ok"] and x["offset"] is None and x["problem"] is None and x["group"] == GROUP
                   for x in doc["partitions"])
    r = scenario.ok("replay-check r2")
    assert r.err == ""
    lines = r.out.splitlines()
    assert len(lines) == 8
    assert "[ok  ] group nightly orders[2] [5, 8)  3 message(s) re-read, identical to the sealed receipt" in lines
    assert "[ok  ] group nightly orders[3] [0, 0)  0 message(s) re-read, identical to the sealed receipt" in lines


# --- the replay check against brokers that hold something else -----------------------------------------------------

def fresh(override: dict[tuple[str, int, int], tuple[bytes | None, bytes | None]] | None = None,
          upto: dict[TP, int] | None = None) -> Cluster:
    """A new mock cluster holding the scenario's messages (all of them, or ``upto`` per partition), with overrides."""
    c = Cluster()
    produce(c, {**TOTAL, **(upto or {})}, override=override)
    return c


def failing(r: Result, run: str, label: str, problem: str) -> None:
    """Exit 1; stdout shows each window, [FAIL] on the one; one error line names the run, partition and problem."""
    line = assert_error(r, 1, stdout_empty=False)
    assert line == f"error: run {run}: {label}: {problem}"
    fails = [x for x in r.out.splitlines() if x.startswith("[FAIL]")]
    assert len(fails) == 1 and f" {label} " in fails[0] and fails[0].endswith(problem), r.out
    assert len(r.out.splitlines()) == 8


def test_replay_check_names_a_changed_message_and_a_null_for_an_empty_value(scenario: Scenario) -> None:
    changed = (b"orders/2/3", b"tampered")  # in night 1's window of orders[2], [0, 5)
    key, value = payload("payments", 2, 7)  # in night 2's window of payments[2], [7, 9): an empty value ...
    assert value == b""
    c = fresh({("orders", 2, 3): changed, ("payments", 2, 7): (key, None)})  # ... now null
    try:
        text1, json1, text2 = together(scenario.cli, ["replay", "r1", "--check", "--bootstrap", c.bootstrap],
                                       ["replay", "r1", "--check", "--bootstrap", c.bootstrap, "--json"],
                                       ["replay", "r2", "--check", "--bootstrap", c.bootstrap])
        sealed = message_hash("orders", 2, 3, *payload("orders", 2, 3)).hex()[:16]
        now = message_hash("orders", 2, 3, *changed).hex()[:16]
        problem = f"offset 3 differs (sealed b3:{sealed}, re-read b3:{now})"
        failing(text1, "r1", "orders[2]", problem)
        assert "[ok  ] group nightly orders[0] [0, 6)  6 message(s) re-read, identical to the sealed receipt" in \
            text1.out.splitlines()
        # --json: the same verdict, one document, nothing on stderr
        assert json1.code == 1 and json1.err == "", str(json1)
        doc = json1.json()
        assert set(doc) == {"run", "ok", "partitions"} and doc["run"] == "r1" and doc["ok"] is False
        keys = {"group", "topic", "partition", "start", "end", "ok", "count", "offset", "problem"}
        assert all(set(x) == keys for x in doc["partitions"])
        assert [x for x in doc["partitions"] if not x["ok"]] == [
            {"group": GROUP, "topic": "orders", "partition": 2, "start": 0, "end": 5, "ok": False, "count": 5,
             "offset": 3, "problem": problem}]
        # only the sealed windows are compared: night 2 does not see offset 3 of orders[2], night 1 not offset 7
        # of payments[2]; a null value is not an empty one
        sealed = message_hash("payments", 2, 7, key, b"").hex()[:16]
        now = message_hash("payments", 2, 7, key, None).hex()[:16]
        failing(text2, "r2", "payments[2]", f"offset 7 differs (sealed b3:{sealed}, re-read b3:{now})")
    finally:
        c.close()


def test_replay_check_names_the_first_missing_offset(scenario: Scenario) -> None:
    # orders[1] keeps 2 of night 1's [0, 4) (night 2's window is empty); orders[2] keeps exactly night 1's [0, 5),
    # so night 2's window [5, 8) is gone
    c = fresh(upto={("orders", 1): 2, ("orders", 2): 5})
    try:
        text1, json1, text2 = together(scenario.cli, ["replay", "r1", "--check", "--bootstrap", c.bootstrap],
                                       ["replay", "r1", "--check", "--bootstrap", c.bootstrap, "--json"],
                                       ["replay", "r2", "--check", "--bootstrap", c.bootstrap])
        failing(text1, "r1", "orders[1]", "offset 2 is missing (sealed, not there any more); the partition now ends "
                "at 2")
        bad = [x for x in json1.json()["partitions"] if not x["ok"]]
        assert [(x["topic"], x["partition"], x["offset"], x["count"]) for x in bad] == [("orders", 1, 2, 2)]
        failing(text2, "r2", "orders[2]", "offset 5 is missing (sealed, not there any more); the partition now ends "
                "at 5")
    finally:
        c.close()


def test_replay_check_names_a_window_beyond_the_partitions_end(scenario: Scenario) -> None:
    c = fresh(upto={("orders", 0): 4})  # night 2 sealed orders[0] as [6, 9); the partition now ends at 4
    try:
        failing(check(scenario.cli, "r2", c.bootstrap), "r2", "orders[0]",
                "offset 6 is missing (sealed, not there any more); the partition now ends at 4")
    finally:
        c.close()


def test_replay_check_names_a_message_the_run_did_not_admit(cli: Cli, cluster: Cluster) -> None:
    """A consumer that commits past a message it did not admit (a filtered one) leaves it unaccounted for."""
    produce(cluster, {("orders", 0): 5})
    tracker = ReceiptTracker()
    assert consume(cluster.bootstrap, "g", ("orders",), tracker, skip=frozenset({("orders", 0, 2)})) == \
        {("orders", 0): 5}
    tracker.record(Ledger.open(str(cli.store)), "r1")
    assert capture(cli, "r1", cluster.bootstrap, group="g", topics=("orders",)).code == 0
    seal(cli, "r1")
    r = check(cli, "r1", cluster.bootstrap)
    line = assert_error(r, 1, stdout_empty=False)
    assert line == "error: run r1: orders[0]: offset 2 was not admitted by the run but is there now"


def test_transaction_markers_are_holes_in_both_and_a_message_there_is_named(cli: Cli, cluster: Cluster) -> None:
    """A transaction's commit marker takes an offset no consumer sees: the sealed log has a hole there, and so has
    the re-read window. A cluster with a message at that offset (the same messages, produced without a transaction)
    fails the check at exactly that offset."""
    bs = cluster.bootstrap
    for i in range(3):
        cluster.produce("tx", 0, *payload("tx", 0, i))
    cluster.flush()
    txp = Producer({"bootstrap.servers": bs, "transactional.id": "ledger-test", **QUIET})
    txp.init_transactions(DEADLINE)
    txp.begin_transaction()
    for i in range(3, 5):
        txp.produce("tx", key=payload("tx", 0, i)[0], value=payload("tx", 0, i)[1], partition=0)
    txp.commit_transaction(DEADLINE)  # offsets 3, 4, and the marker at 5
    cluster.produce("tx", 0, *payload("tx", 0, 6))  # offset 6
    cluster.flush()
    tracker = ReceiptTracker()
    assert consume(bs, "g", ("tx",), tracker) == {("tx", 0): 7}
    tracker.record(Ledger.open(str(cli.store)), "t1")
    assert capture(cli, "t1", bs, "--json", group="g", topics=("tx",)).json()["offsets"][0] == \
        {"group": "g", "topic": "tx", "partition": 0, "start": 0, "end": 7, "high": 7}
    assert json.loads(api(cli).read("t1", "receipts/kafka/tx/0.json"))["count"] == 6
    seal(cli, "t1")
    doc = check(cli, "t1", bs, "--json").json()
    assert doc["ok"] is True and doc["partitions"][0]["count"] == 6
    other = Cluster()
    try:
        for i in (0, 1, 2, 3, 4, 6):  # offsets 0..5 now: the marker's offset 5 holds message 6
            other.produce("tx", 0, *payload("tx", 0, i))
        other.flush()
        line = assert_error(check(cli, "t1", other.bootstrap), 1, stdout_empty=False)
        assert line == "error: run t1: tx[0]: offset 5 was not admitted by the run but is there now"
    finally:
        other.close()


# --- capture ---------------------------------------------------------------------------------------------------------

def test_capture_start_end_high(cli: Cli, cluster: Cluster) -> None:
    bs = cluster.bootstrap
    produce(cluster, {("orders", 0): 5, ("orders", 1): 3, ("orders", 3): 2})  # orders[2] stays empty
    commit(bs, "g", {("orders", 0): 4, ("orders", 1): 3})  # orders[3] has messages but no committed offset
    one = [{"group": "g", "topic": "orders", "partition": 0, "start": 0, "end": 4, "high": 5},
           {"group": "g", "topic": "orders", "partition": 1, "start": 0, "end": 3, "high": 3},
           {"group": "g", "topic": "orders", "partition": 2, "start": 0, "end": 0, "high": 0},
           {"group": "g", "topic": "orders", "partition": 3, "start": 0, "end": 0, "high": 2}]
    r = capture(cli, "r1", bs, "--json", group="g", topics=("orders",))
    assert r.code == 0 and r.err == "", str(r)
    assert r.json() == {"run": "r1", "offsets": one}
    assert api(cli).read("r1", "offsets/g/orders/0.json") == canonical_json(one[0])
    # only a *sealed* run's end starts the next range: r1 is not sealed yet, so a draft starts at the low watermark
    assert capture(cli, "draft", bs, "--json", group="g", topics=("orders",)).json()["offsets"] == one
    # the same offsets captured again: the same records, a no-op
    assert names(cli, "r1") == {f"offsets/g/orders/{p}.json": "offsets" for p in range(4)}
    assert capture(cli, "r1", bs, group="g", topics=("orders",)).code == 0
    assert names(cli, "r1") == {f"offsets/g/orders/{p}.json": "offsets" for p in range(4)}
    seal(cli, "r1")
    cli.unchanged(4, "anchors", "capture", "r1", "--bootstrap", bs, "--group", "g", "--topic", "orders")

    produce(cluster, {("orders", 0): 7}, since={("orders", 0): 5})
    commit(bs, "g", {("orders", 0): 7, ("orders", 3): 2})
    r = capture(cli, "r2", bs, group="g", topics=("orders",))
    assert r.code == 0, str(r)
    assert r.out.splitlines() == ["orders[0]  [4, 7)  high 7", "orders[1]  [3, 3)  high 3",
                                  "orders[2]  [0, 0)  high 0", "orders[3]  [0, 2)  high 2"]
    assert r.err == "run r2: offsets of 4 partition(s) recorded for group g\n"
    pol = write(cli.tmp / "p.toml", 'continuity = ["orders"]\n')
    rep = api(cli).check("r2", policy=[str(pol)])
    assert rep.ok and "4 partition(s) continue the previous sealed run" in rep.criteria[-1].detail
    seal(cli, "r2", pol)
    assert [a.joins for a in api(cli).replay("r2")] == ["contiguous"] * 4
    # the group rewound below r2's sealed end: start (7) > end (5) is no range; refused naming start, nothing kept
    commit(bs, "g", {("orders", 0): 5})
    line = cli.unchanged(6, "anchors", "capture", "r3", "--bootstrap", bs, "--group", "g", "--topic", "orders")
    assert "field 'start'" in line


def test_capture_refuses_a_committed_offset_beyond_the_high_watermark(cli: Cli, cluster: Cluster) -> None:
    produce(cluster, {("orders", 0): 5, ("orders", 1): 2})
    commit(cluster.bootstrap, "g", {("orders", 0): 5, ("orders", 1): 10**6})  # the mock accepts any offset
    line = cli.unchanged(6, "anchors", "capture", "r1", "--bootstrap", cluster.bootstrap, "--group", "g",
                         "--topic", "orders")
    assert "field 'high'" in line and "1000000" in line
    with pytest.raises(LedgerError, match="no such run"):  # nothing recorded: not even orders[0]'s valid range
        api(cli).items("r1")


def test_record_refuses_offsets_beyond_the_high_watermark(cli: Cli) -> None:
    rec = {"group": "g", "topic": "orders", "partition": 0, "start": 0, "end": 12, "high": 10}
    line = cli.unchanged(6, "record", "r1", "--kind", "offsets", json.dumps(rec))
    assert "field 'high'" in line


def test_capture_unknown_topic_or_group(cli: Cli, cluster: Cluster) -> None:
    bs = cluster.bootstrap
    produce(cluster, {("orders", 0): 2})
    commit(bs, "g", {("orders", 0): 2})
    # one unknown topic among known ones: nothing is recorded for any
    line = cli.unchanged(3, "anchors", "capture", "r1", "--bootstrap", bs, "--group", "g", "--topic", "orders",
                         "--topic", "nope")
    assert "topic nope" in line and "no such topic" in line
    line = cli.unchanged(3, "anchors", "capture", "r1", "--bootstrap", bs, "--group", "nobody", "--topic", "orders")
    assert "group nobody" in line
    with pytest.raises(LedgerError, match="no such run"):
        api(cli).items("r1")
    assert capture(cli, "r1", bs, group="g", topics=("orders",)).code == 0  # the same command, all known


def test_unreachable_brokers_fail_fast(cli: Cli, refusing_port: int, silent_port: int) -> None:
    """Brokers that refuse connections, or accept them and never answer: exit 5 within a bounded time."""
    synthetic_run(cli, "sealed")
    before = snapshot(cli.store)
    capture = ["anchors", "capture", "r1", "--group", "g", "--topic", "orders", "--timeout", "2"]
    t0 = time.monotonic()
    results = together(cli, [*capture, "--bootstrap", f"127.0.0.1:{refusing_port}"],
                       [*capture, "--bootstrap", f"127.0.0.1:{silent_port}"],
                       ["replay", "sealed", "--check", "--bootstrap", f"127.0.0.1:{silent_port}", "--timeout", "2"])
    assert time.monotonic() - t0 < 20, "bounded timeouts, not a hang"
    for r in results[:2]:
        assert "cannot reach the brokers" in assert_error(r, 5)
    assert assert_error(results[2], 5).startswith("error: Kafka: ")
    assert snapshot(cli.store) == before


def test_replay_check_bad_input(cli: Cli, cluster: Cluster) -> None:
    bs = cluster.bootstrap
    produce(cluster, {("other", 0): 1})
    write(cli.tmp / "job.log", "done\n")
    api(cli).add("plain", [str(cli.tmp / "job.log")])
    seal(cli, "plain")
    api(cli).add("open", [str(cli.tmp / "job.log")])
    synthetic_run(cli, "r1")
    before = snapshot(cli.store)
    cases: list[tuple[int, str | None, list[Any]]] = [
        # a sealed run without offsets evidence: nothing to replay, and no broker is asked (127.0.0.1:1)
        (1, "no offsets evidence", ["replay", "plain", "--check", "--bootstrap", "127.0.0.1:1"]),
        # an unsealed or unknown run
        (3, "open", ["replay", "open", "--check", "--bootstrap", bs]),
        (3, "ghost", ["replay", "ghost", "--check", "--bootstrap", bs]),
        # the sealed window's topic does not exist on these brokers
        (3, "topic orders", ["replay", "r1", "--check", "--bootstrap", bs]),
        # usage: --check needs brokers; broker options need --check; capture needs a topic; timeouts are bounded
        (2, "--bootstrap", ["replay", "r1", "--check"]),
        (2, "--check", ["replay", "r1", "-X", f"bootstrap.servers={bs}"]),
        (2, "--check", ["replay", "r1", "--bootstrap", bs]),
        (2, "--topic", ["anchors", "capture", "r1", "--bootstrap", bs, "--group", "g"]),
        (2, "--timeout", ["replay", "r1", "--check", "--bootstrap", bs, "--timeout", "0"]),
    ]
    for (code, mentions, _), r in zip(cases, together(cli, *(c[2] for c in cases)), strict=True):
        assert_error(r, code, mentions=mentions)
    assert snapshot(cli.store) == before


# --- client configuration: librdkafka's own properties, never printed ------------------------------------------------

def test_properties_pass_through(cli: Cli, cluster: Cluster, refusing_port: int) -> None:
    bs = cluster.bootstrap
    dead = f"127.0.0.1:{refusing_port}"
    produce(cluster, {("orders", 0): 3})
    tracker = ReceiptTracker()
    assert consume(bs, "g", ("orders",), tracker) == {("orders", 0): 3}
    tracker.record(Ledger.open(str(cli.store)), "a")
    live = write(cli.tmp / "live.properties", f"# comment\n! also a comment\n\n bootstrap.servers = {bs} \n"
                 "client.id=ledger-test\n")
    gone = write(cli.tmp / "dead.properties", f"bootstrap.servers={dead}\n")
    want = {"group": "g", "topic": "orders", "partition": 0, "start": 0, "end": 3, "high": 3}
    capture = ["anchors", "capture", "--group", "g", "--topic", "orders", "--json"]
    runs = {"a": ["--config", live], "b": ["-X", f"bootstrap.servers={bs}"],
            "c": ["--config", gone, "--bootstrap", bs],  # --bootstrap wins over the file
            "d": ["--config", gone, "-X", f"bootstrap.servers={bs}"]}  # and so does -X
    for r in together(cli, *([*capture, run, *args] for run, args in runs.items())):
        assert r.code == 0, str(r)
        assert r.json()["offsets"][0] == want
    # replay --check reads the same options
    seal(cli, "a")
    r = cli("replay", "a", "--check", "--config", live)
    assert r.code == 0 and "3 message(s) re-read, identical" in r.out, str(r)
    # bad configuration: one line, the contract's code, nothing recorded
    bad = write(cli.tmp / "bad.properties", f"bootstrap.servers={bs}\nthis line has no equals sign\n")
    before = snapshot(cli.store)
    capture = ["anchors", "capture", "e", "--group", "g", "--topic", "orders"]
    cases: list[tuple[int, str | None, list[Any]]] = [
        (2, "line 2", [*capture, "--config", bad]),
        (3, "missing.properties", [*capture, "--config", cli.tmp / "missing.properties"]),
        (2, "no.such.property", [*capture, "--bootstrap", bs, "-X", "no.such.property=1"]),
        (2, "novalue", [*capture, "-X", "novalue", "--bootstrap", bs]),
        (2, "--bootstrap", capture),
    ]
    for (code, mentions, _), r in zip(cases, together(cli, *(c[2] for c in cases)), strict=True):
        assert_error(r, code, mentions=mentions)
    assert snapshot(cli.store) == before


SECRET = "hunter2-Zq8"


def test_property_values_are_never_printed(cli: Cli, cluster: Cluster, refusing_port: int) -> None:
    bs = cluster.bootstrap
    produce(cluster, {("orders", 0): 2})
    commit(bs, "g", {("orders", 0): 2})
    pw = ["-X", f"sasl.password={SECRET}"]
    props = write(cli.tmp / "client.properties", f"bootstrap.servers={bs}\nsasl.password={SECRET}\nbroken\n")
    base = ["anchors", "capture", "r1", "--group", "g", "--topic", "orders"]
    assert cli(*base, "--bootstrap", bs, *pw, "--json").code == 0
    runs = [
        (0, [*base, "--bootstrap", bs, *pw]),
        (2, [*base, "--bootstrap", bs, *pw, "-X", "no.such.property=1"]),
        (2, [*base, "--config", props]),
        (3, [*base, "--bootstrap", bs, *pw, "--topic", "nope"]),
        (5, [*base, "--bootstrap", f"127.0.0.1:{refusing_port}", *pw, "-X", "security.protocol=SASL_PLAINTEXT",
             "-X", "sasl.mechanism=PLAIN", "-X", "sasl.username=ledger", "--timeout", "2"]),
        (2, [*base, "--bootstrap", bs, *pw, "-X", "security.protocol=SSL", "-X", f"ssl.key.pem={SECRET}"]),
    ]
    for (code, argv), r in zip(runs, together(cli, *(a for _, a in runs)), strict=True):
        assert r.args == [str(a) for a in argv]
        assert r.code == code, str(r)
        assert "Traceback" not in r.err
        assert SECRET not in r.out + r.err, str(r)
    seal(cli, "r1")
    # r1 has offsets but no receipts: its window [0, 2) has nothing to compare with (exit 1)
    text, doc = together(cli, ["replay", "r1", "--check", "--bootstrap", bs, *pw],
                         ["replay", "r1", "--check", "--bootstrap", bs, *pw, "--json"])
    for r in (text, doc):
        assert r.code == 1 and SECRET not in r.out + r.err, str(r)
    assert doc.json()["partitions"][0]["problem"] == "no sealed receipt with a message log for this partition"
    assert SECRET.encode() not in stored_bytes(cli.store)


@pytest.mark.parametrize("prop", [f"security.protocol={SECRET}", f"={SECRET}"])
def test_property_values_are_not_printed_in_configuration_errors(cli: Cli, prop: str) -> None:
    line = cli.unchanged(2, "anchors", "capture", "r1", "--bootstrap", "127.0.0.1:1", "-X", prop, "--group", "g",
                         "--topic", "orders")
    assert SECRET not in line


# --- the receipt tracker -------------------------------------------------------------------------------------------

# spec/kafka.md's vectors: (topic, partition, offset, key, value) -> Enc(...) hex, message hash hex
VECTORS = [
    (("orders", 3, 1200, None, b"v"), "95a66f726465727303cd04b0c0c40176",
     "a6a6213a49d599e1b6db1bf7d9cd3a83ceca026f92cf95d00c7321053d85205e"),
    (("orders", 3, 1200, b"", b"v"), "95a66f726465727303cd04b0c400c40176",
     "ea2a60175d0ae231592cabe040a0c9f4590a45054cfbdecfb88ecaf24749913d"),
    (("orders", 3, 1201, b"k1", None), "95a66f726465727303cd04b1c4026b31c0",
     "f220a266e30cd6bc085400c9c427aed1f8c50172e971a10ca0b1401050e239cd"),
]
LOG_VECTOR = ("00000000000004b0a6a6213a49d599e1b6db1bf7d9cd3a83ceca026f92cf95d00c7321053d85205e"
              "00000000000004b1f220a266e30cd6bc085400c9c427aed1f8c50172e971a10ca0b1401050e239cd")
LOG_DIGEST = "93bd076283df6eb422ce8bafc5545e6b8a19c830a64e4d1c1f5fee6345f9204c"


def test_message_hash_vectors_match_the_spec() -> None:
    spec = re.sub(r"\s", "", (ROOT / "spec" / "kafka.md").read_text())
    for args, enc, digest in VECTORS:
        assert encoding.encode(list(args)).hex() == enc
        assert blake3.blake3(bytes.fromhex(enc), derive_key_context=CTX_KAFKA_MESSAGE).hexdigest() == digest
        assert message_hash(*args).hex() == digest
        assert enc in spec and digest in spec
    t = ReceiptTracker()
    t.admit("orders", 3, 1200, None, b"v")
    t.admit("orders", 3, 1201, b"k1", None)
    log = t.contents()["receipts/kafka/orders/3.msgs"][1]
    assert log.hex() == LOG_VECTOR and blake3.blake3(log).hexdigest() == LOG_DIGEST
    assert LOG_VECTOR in spec and LOG_DIGEST in spec


def test_message_hash_separates_null_empty_and_every_field() -> None:
    hashes = {message_hash("t", 0, 0, k, v) for k in (None, b"") for v in (None, b"")}
    assert len(hashes) == 4
    base = message_hash("t", 0, 7, b"k", b"v")
    variants = [("u", 0, 7, b"k", b"v"), ("t", 1, 7, b"k", b"v"), ("t", 0, 8, b"k", b"v"), ("t", 0, 7, b"v", b"k"),
                ("t", 0, 7, b"kv", b""), ("t", 0, 7, b"", b"kv"), ("t", 0, 7, b"k", b"v\x00")]
    assert len({base, *(message_hash(*v) for v in variants)}) == 1 + len(variants)


def _mutations(data: bytes | None) -> st.SearchStrategy[bytes | None]:
    if data is None:
        return st.just(b"")
    options: list[st.SearchStrategy[bytes | None]] = [st.just(None), st.just(data + b"\x00")]
    if data:
        options += [st.just(data[:-1]),
                    st.integers(0, len(data) - 1).flatmap(
                        lambda i: st.integers(1, 255).map(lambda x: data[:i] + bytes([data[i] ^ x]) + data[i + 1:]))]
    return st.one_of(options)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.one_of(st.none(), st.binary(max_size=40)), value=st.one_of(st.none(), st.binary(max_size=200)),
       which=st.sampled_from(["key", "value"]), data=st.data())
def test_any_change_to_a_key_or_value_changes_the_hash(key: bytes | None, value: bytes | None, which: str,
                                                       data: st.DataObject) -> None:
    if which == "key":
        new_key, new_value = data.draw(_mutations(key)), value
    else:
        new_key, new_value = key, data.draw(_mutations(value))
    assert (new_key, new_value) != (key, value)
    assert message_hash("orders", 1, 42, new_key, new_value) != message_hash("orders", 1, 42, key, value)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.binary(max_size=8)), min_size=2, max_size=8), data=st.data())
def test_any_reordering_changes_the_receipt_digest(values: list[bytes | None], data: st.DataObject) -> None:
    order = data.draw(st.permutations(values))

    def digest(vs: list[bytes | None]) -> str:
        t = ReceiptTracker()
        for i, v in enumerate(vs):
            t.admit("orders", 0, 100 + i, None, v)
        return json.loads(t.contents()["receipts/kafka/orders/0.json"][1])["digest"]

    assert (digest(order) == digest(values)) == (order == values)


def test_offsets_must_increase_within_a_partition() -> None:
    t = ReceiptTracker(source="src")
    t.admit("orders", 0, 5, b"k", b"v")
    for bad in (5, 4):
        with pytest.raises(UsageError, match=r"orders\[0\]: offset .* admitted after 5"):
            t.admit("orders", 0, bad, b"k", b"v")
    t.admit("orders", 1, 0, None, None)  # partitions are independent
    t.admit("orders", 0, 9, None, None)  # gaps are fine (transaction markers, filtered messages)
    with pytest.raises(UsageError, match="out of range"):
        t.admit("orders", 0, 2**63, None, None)
    receipts = {k: json.loads(v) for k, (kind, v) in t.contents().items() if kind == "receipt"}
    assert receipts == {
        "receipts/src/orders/0.json": {"source": "src", "topic": "orders", "partition": 0, "count": 2, "first": 5,
                                       "last": 9, "digest": receipts["receipts/src/orders/0.json"]["digest"]},
        "receipts/src/orders/1.json": {"source": "src", "topic": "orders", "partition": 1, "count": 1, "first": 0,
                                       "last": 0, "digest": receipts["receipts/src/orders/1.json"]["digest"]}}


def test_a_refused_admit_leaves_the_tracker_unchanged(tmp_path: Path) -> None:
    t = ReceiptTracker()
    with pytest.raises(UsageError):
        t.admit("orders", 1, -1, None, None)
    assert t.contents() == {}
    t.admit("orders", 0, 0, None, None)
    lg = Ledger.open(str(tmp_path / "store"))
    lg.init()
    assert t.record(lg, "r1") == 1


def test_admit_refuses_keys_and_values_that_are_not_bytes() -> None:
    t = ReceiptTracker()
    for key, value in (("k", b"v"), (b"k", "v"), (b"k", {"a": 1})):
        with pytest.raises(UsageError):
            t.admit("orders", 0, 0, key, value)  # type: ignore[arg-type]


def test_message_log_format_and_receipt() -> None:
    t = ReceiptTracker()
    msgs = [(3, b"a", b"1"), (4, None, b""), (10, b"", None)]
    for off, k, v in msgs:
        t.admit("payments", 2, off, k, v)
    contents = t.contents()
    assert list(contents) == ["receipts/kafka/payments/2.msgs", "receipts/kafka/payments/2.json"]
    kind, log = contents["receipts/kafka/payments/2.msgs"]
    assert kind == "file" and len(log) == 40 * len(msgs) == LOG_RECORD.size * len(msgs)
    for n, (off, k, v) in enumerate(msgs):
        rec = log[40 * n:40 * (n + 1)]
        assert struct.unpack(">Q", rec[:8])[0] == off and rec[8:] == message_hash("payments", 2, off, k, v)
    assert parse_log(log, "log") == [(off, message_hash("payments", 2, off, k, v)) for off, k, v in msgs]
    kind, receipt = contents["receipts/kafka/payments/2.json"]
    assert kind == "receipt"
    assert receipt == canonical_json({"source": "kafka", "topic": "payments", "partition": 2, "count": 3,
                                      "first": 3, "last": 10, "digest": "b3:" + blake3.blake3(log).hexdigest()})
    with pytest.raises(CheckFailed, match="whole number"):
        parse_log(log[:-1], "log")
    with pytest.raises(CheckFailed, match="strictly increasing"):
        parse_log(log[40:80] + log[:40], "log")


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                 error: Any = None) -> None:
        self._t = (topic, partition, offset, key, value)
        self._error = error

    def topic(self) -> str:
        return self._t[0]

    def partition(self) -> int:
        return self._t[1]

    def offset(self) -> int:
        return self._t[2]

    def key(self) -> bytes | None:
        return self._t[3]

    def value(self) -> bytes | None:
        return self._t[4]

    def error(self) -> Any:
        return self._error


def test_admit_message_and_batch_equal_admit() -> None:
    msgs = [FakeMessage("orders", p, o, *payload("orders", p, o)) for o in range(4) for p in range(2)]
    a, b, c = ReceiptTracker(), ReceiptTracker(), ReceiptTracker()
    for m in msgs:
        a.admit(m.topic(), m.partition(), m.offset(), m.key(), m.value())
        b.admit_message(m)
    c.admit_batch(msgs)
    assert a.contents() == b.contents() == c.contents()
    assert len(a.contents()) == 4
    with pytest.raises(UsageError, match="error"):
        c.admit_message(FakeMessage("orders", 0, 9, None, None, error="broker down"))


def test_record_is_all_or_nothing(tmp_path: Path) -> None:
    lg = Ledger.open(str(tmp_path / "store"))
    lg.init()
    key = generate_keyfile(tmp_path / "k")
    t = ReceiptTracker()
    with pytest.raises(UsageError, match="no message"):
        t.record(lg, "r1")
    for p in range(2):
        t.admit("orders", p, 0, b"k", b"v")
    # receipts/kafka/orders/1.json is already bound to other content in r1: nothing of the batch is added
    lg.record("r1", "receipt", {"source": "kafka", "topic": "orders", "partition": 1, "count": 99})
    with pytest.raises(LedgerError) as exc:
        t.record(lg, "r1")
    assert exc.value.exit_code == 6
    assert [e.name for e in lg.items("r1").items] == ["receipts/kafka/orders/1.json"]
    # a fresh run takes all four items; recording the same again is a no-op
    assert t.record(lg, "r2") == 2
    names = {e.name: e.kind for e in lg.items("r2").items}
    assert names == {"receipts/kafka/orders/0.msgs": "file", "receipts/kafka/orders/0.json": "receipt",
                     "receipts/kafka/orders/1.msgs": "file", "receipts/kafka/orders/1.json": "receipt"}
    assert t.record(lg, "r2") == 2
    assert {e.name: e.kind for e in lg.items("r2").items} == names
    lg.seal("r2", key)
    t.admit("orders", 2, 0, None, None)
    with pytest.raises(LedgerError) as exc:
        t.record(lg, "r2")
    assert exc.value.exit_code == 4
    assert {e.name: e.kind for e in lg.items("r2").items} == names


@settings(max_examples=200, deadline=None)
@given(sealed=st.dictionaries(st.integers(0, 12), st.sampled_from([b"a" * 32, b"b" * 32]), max_size=10),
       now=st.dictionaries(st.integers(0, 12), st.sampled_from([b"a" * 32, b"b" * 32]), max_size=10))
def test_the_first_difference_rule(sealed: dict[int, bytes], now: dict[int, bytes]) -> None:
    """The check names the smallest offset at which the sealed log and the re-read window differ, and how."""
    got = _compare(sorted(sealed.items()), sorted(now.items()))
    diffs = sorted(o for o in sealed.keys() | now.keys() if sealed.get(o) != now.get(o))
    if not diffs:
        assert got is None
        return
    assert got is not None
    offset, problem = got
    assert offset == diffs[0]
    if offset not in now:
        assert problem == f"offset {offset} is missing (sealed, not there any more)"
    elif offset not in sealed:
        assert problem == f"offset {offset} was not admitted by the run but is there now"
    else:
        assert problem.startswith(f"offset {offset} differs (sealed b3:{sealed[offset].hex()[:16]}, re-read b3:")


# --- the README's example, run as written ------------------------------------------------------------------------

def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    head = "\n## Kafka: anchors from the brokers, receipts from consumption, replay checks\n"
    start = text.index(head)
    assert text.index("\n## Engineer: compare runs\n") < start < text.index("\n## S3 store\n")
    return text[start:text.index("\n## ", start + 1)]


def blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", section, re.S | re.M)


def test_readme_example_runs_against_the_mock_cluster(tmp_path: Path, cluster: Cluster) -> None:
    section = readme_section()
    [code] = blocks(section, "python")
    [policy] = blocks(section, "toml")
    shell = blocks(section, "sh")
    assert any("pip install 'ledger[kafka]'" in b for b in shell)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("confluent-kafka") for d in extras["kafka"])
    commands = [shlex.split(line, comments=True) for b in shell for line in b.splitlines()
                if line.startswith("ledger ")]
    assert [c[1] for c in commands] == ["anchors", "check", "seal", "replay"]
    assert "broker1:9092" in code and 'RUN, GROUP, TOPICS = "nightly-42", "nightly"' in code

    bs = cluster.bootstrap
    night1 = {("orders", 0): 3, ("orders", 1): 2, ("payments", 0): 4}
    night2 = {**night1, ("orders", 1): 6, ("payments", 3): 5}
    write(tmp_path / "kafka.toml", policy)
    store = tmp_path / "store"
    Ledger.open(str(store)).init()
    generate_keyfile(tmp_path / "sealer.key")
    env = {**base_env(), "LEDGER_STORE": str(store)}
    for run, since, upto in (("nightly-42", None, night1), ("nightly-43", night1, night2)):
        produce(cluster, upto, since)
        write(tmp_path / "consume.py", code.replace("broker1:9092", bs).replace("nightly-42", run))
        p = subprocess.run([sys.executable, "consume.py"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        for argv in commands:
            r = run_cli([a.replace("broker1:9092", bs).replace("nightly-42", run) for a in argv[1:]],
                        cwd=tmp_path, store=store)
            assert r.code == 0, str(r)
        assert r.out.count("identical to the sealed receipt") == 8
    anchors = run_cli(["replay", "nightly-43", "--json"], cwd=tmp_path, store=store).json()["anchors"]
    assert {(a["topic"], a["partition"]): (a["start"], a["end"], a["joins"]) for a in anchors} == \
        {(t, p): (night1.get((t, p), 0), night2.get((t, p), 0), "contiguous") for t in TOPICS for p in range(4)}
    counts = {e.name: e for e in Ledger.open(str(store)).items("nightly-43").items if e.kind == "receipt"}
    assert set(counts) == {"receipts/kafka/orders/1.json", "receipts/kafka/payments/3.json"}
