"""Kafka: receipts kept while consuming, replay anchors captured from the brokers, and the replay check
(spec/kafka.md).

The receipt tracker is pure Python: a consumer calls it per message and, at the end of the run, records per
partition a *message log* (each admitted message's offset and BLAKE3 hash) and a ``receipt`` whose digest is the
log's BLAKE3. The capture and the replay check talk to brokers through confluent-kafka (librdkafka), the optional
extra ``ledger[kafka]``, imported only here and only when a broker is contacted. Client configuration passes
through librdkafka's own properties (``-X key=value``, a properties file), so TLS and SASL work as users already
configure them; no property value is ever printed (it may be a password).
"""

from __future__ import annotations

import re
import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import blake3

from . import encoding
from .chain import iter_chain
from .errors import CheckFailed, NotFound, StorageError, UsageError
from .files import read_small_file
from .kinds import canonical_json
from .policy import commit_ends

if TYPE_CHECKING:
    from .api import Ledger

CTX_KAFKA_MESSAGE = "ledger/1 kafka-message"
LOG_RECORD = struct.Struct(">Q32s")  # offset (unsigned 64-bit, big-endian), message hash
DEFAULT_SOURCE = "kafka"
DEFAULT_TIMEOUT = 10.0


class KafkaUnavailable(StorageError):
    """Brokers unreachable, or an operation that did not finish within the timeout (exit 5)."""


def message_hash(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> bytes:
    """BLAKE3 (derive-key ``ledger/1 kafka-message``) of the canonical encoding of [topic, partition, offset, key,
    value]; a null key or value is nil, which no byte string encodes to."""
    data = encoding.encode([topic, partition, offset, key, value])
    return blake3.blake3(data, derive_key_context=CTX_KAFKA_MESSAGE).digest()


def log_name(source: str, topic: str, partition: int) -> str:
    return f"receipts/{source}/{topic}/{partition}.msgs"


def parse_log(data: bytes, what: str) -> list[tuple[int, bytes]]:
    """A message log's (offset, hash) records, offsets strictly increasing."""
    if len(data) % LOG_RECORD.size:
        raise CheckFailed(f"{what}: {len(data)} bytes is not a whole number of {LOG_RECORD.size}-byte records")
    out = list(LOG_RECORD.iter_unpack(data))
    if any(a[0] >= b[0] for a, b in zip(out, out[1:], strict=False)):
        raise CheckFailed(f"{what}: offsets not strictly increasing")
    return out


# --- receipts ------------------------------------------------------------------------------------------------------

@dataclass
class _Partition:
    count: int = 0
    first: int = -1
    last: int = -1
    log: bytearray = field(default_factory=bytearray)


class ReceiptTracker:
    """Per partition: how many messages the consumer admitted, the first and last offset, and the message log.

    Call :meth:`admit` (or :meth:`admit_message` with a confluent-kafka ``Message``) for every message the run
    admits, in the order consumed; offsets must increase within a partition. :meth:`record` adds the logs and the
    receipts to a run in one batch. The log costs 40 bytes per message, in memory until recorded.
    """

    def __init__(self, source: str = DEFAULT_SOURCE) -> None:
        self.source = source
        self._parts: dict[tuple[str, int], _Partition] = {}

    def admit(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        for what, v in (("key", key), ("value", value)):
            if v is not None and not isinstance(v, bytes):  # a deserialised str/dict would hash as another type
                raise UsageError(f"receipts: {topic}[{partition}] offset {offset}: the {what} must be the message's "
                                 f"bytes (or None), got {type(v).__name__}: admit what the broker delivered")
        if not 0 <= offset < 2**63:
            raise UsageError(f"receipts: {topic}[{partition}]: offset {offset} out of range")
        p = self._parts.get((topic, partition))
        if p is not None and offset <= p.last:
            raise UsageError(f"receipts: {topic}[{partition}]: offset {offset} admitted after {p.last} "
                             "(offsets must increase within a partition)")
        if p is None:
            p = self._parts[(topic, partition)] = _Partition()
        p.log += LOG_RECORD.pack(offset, message_hash(topic, partition, offset, key, value))
        if p.count == 0:
            p.first = offset
        p.count += 1
        p.last = offset

    def admit_message(self, msg: Any) -> None:
        """A confluent-kafka ``Message`` (one without an error)."""
        if msg.error() is not None:
            raise UsageError(f"receipts: a message with an error is no message: {msg.error()}")
        self.admit(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())

    def admit_batch(self, msgs: Iterable[Any]) -> None:
        for m in msgs:
            self.admit_message(m)

    def contents(self) -> dict[str, tuple[str, bytes]]:
        """The items to record: ``{name: (kind, content)}``, a message log and a receipt per partition."""
        out: dict[str, tuple[str, bytes]] = {}
        for (topic, partition), p in sorted(self._parts.items()):
            log = bytes(p.log)
            receipt = {"source": self.source, "topic": topic, "partition": partition, "count": p.count,
                       "first": p.first, "last": p.last, "digest": "b3:" + blake3.blake3(log).hexdigest()}
            out[log_name(self.source, topic, partition)] = ("file", log)
            out[f"receipts/{self.source}/{topic}/{partition}.json"] = ("receipt", canonical_json(receipt))
        return out

    def record(self, lg: Ledger, run: str) -> int:
        """Add every partition's message log and receipt to ``run`` (one batch); the number of partitions."""
        contents = self.contents()
        if not contents:
            raise UsageError(f"run {run}: receipts: no message was admitted")
        lg.add_contents(run, contents)
        return len(contents) // 2


# --- client configuration -------------------------------------------------------------------------------------------

def load_properties(path: str) -> dict[str, str]:
    """A Java-style properties file, as librdkafka tools take it: ``key=value`` lines, ``#`` or ``!`` comments."""
    try:
        lines = read_small_file(path, "properties file").decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"properties file {path}: not UTF-8 text") from None
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"properties file {path}: line {n}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def client_config(bootstrap: str | None, properties: Iterable[str] = (), files: Iterable[str] = ()
                  ) -> dict[str, str]:
    """librdkafka properties: from files, then ``-X key=value`` options, then ``--bootstrap`` (later wins)."""
    conf: dict[str, str] = {}
    for path in files:
        conf.update(load_properties(path))
    for kv in properties:
        key, sep, value = kv.partition("=")
        if not sep or not key.strip():
            # never echo the argument: its value may be a password
            raise UsageError("-X: expected key=value" + (f" (got the key {key.strip()!r} alone)" if not sep else
                                                        " (the key is empty)"))
        conf[key.strip()] = value
    if bootstrap:
        conf["bootstrap.servers"] = bootstrap
    if "bootstrap.servers" not in conf and "test.mock.num.brokers" not in conf:
        raise UsageError("no brokers: give --bootstrap HOST:PORT (or -X bootstrap.servers=...)")
    return conf


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        raise UsageError("Kafka support is not installed: pip install 'ledger[kafka]' (confluent-kafka)") from None
    return confluent_kafka


def _timeouts(conf: Mapping[str, str], timeout: float) -> dict[str, str]:
    """Bounded waits: a broker that does not answer fails the command within about ``timeout`` seconds."""
    ms = str(max(1000, int(timeout * 1000)))
    bounds = {"socket.timeout.ms": ms, "session.timeout.ms": "6000", "topic.metadata.refresh.interval.ms": "-1"}
    return {"log_level": "0", **conf, **bounds}  # quiet unless the user asks; the bounds always apply


def _consumer(conf: Mapping[str, str], group: str, timeout: float) -> Any:
    ck = _kafka()
    settings = {**_timeouts(conf, timeout), "group.id": group, "enable.auto.commit": "false",
                "enable.partition.eof": "true", "auto.offset.reset": "error"}
    try:
        return ck.Consumer(settings, logger=_Quiet())
    except ck.KafkaException as exc:
        raise UsageError(f"Kafka client configuration: {_without_values(_reason(exc))}") from None


class _Quiet:
    """librdkafka logs to stderr by default; a command prints only its own one-line errors."""

    def log(self, *args: Any, **kw: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return self.log


def _without_values(message: str) -> str:
    """librdkafka's configuration errors quote the offending value ('Invalid value "x" for configuration property
    "y"'); a value may be a password, so it is masked, and only property names stay."""
    return re.sub(r'(?i)(value\s*)"[^"]*"', r'\1"…"', message)


def _reason(exc: Any) -> str:
    err = exc.args[0] if getattr(exc, "args", None) else exc
    try:
        return f"{err.name()}: {err.str()}"
    except AttributeError:
        return str(exc)


def _partitions(consumer: Any, topic: str, timeout: float) -> list[int]:
    ck = _kafka()
    try:
        md = consumer.list_topics(topic, timeout=timeout)
    except ck.KafkaException as exc:
        raise KafkaUnavailable(f"Kafka: cannot reach the brokers ({_reason(exc)})") from None
    t = md.topics.get(topic)
    if t is None or (t.error is not None and t.error.code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART) or not t.partitions:
        raise NotFound(f"Kafka: topic {topic}: no such topic")
    if t.error is not None:
        raise KafkaUnavailable(f"Kafka: topic {topic}: {t.error.str()}")
    return sorted(t.partitions)


def _watermarks(consumer: Any, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    ck = _kafka()
    try:
        low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, partition), timeout=timeout,
                                                   cached=False)
    except ck.KafkaException as exc:
        raise KafkaUnavailable(f"Kafka: {topic}[{partition}]: cannot read the watermarks ({_reason(exc)})") from None
    return int(low), int(high)


# --- capture ---------------------------------------------------------------------------------------------------------

def capture(lg: Ledger, run: str, conf: Mapping[str, str], group: str, topics: list[str],
            timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
    """Record ``offsets`` evidence for every partition of ``topics``: start is the previous sealed run's end for
    (group, topic, partition), or the low watermark for a stream's first run; end is the group's committed
    offset; high is the high watermark now. Nothing is recorded unless every partition could be read."""
    if not topics:
        raise UsageError("anchors capture: give at least one --topic")
    ck = _kafka()
    ends = commit_ends(e.commit.body for e in iter_chain(lg.store))
    consumer = _consumer(conf, group, timeout)
    records: list[dict[str, Any]] = []
    try:
        for topic in topics:
            parts = _partitions(consumer, topic, timeout)
            try:
                committed = consumer.committed([ck.TopicPartition(topic, p) for p in parts], timeout=timeout)
            except ck.KafkaException as exc:
                raise KafkaUnavailable(f"Kafka: group {group}: cannot read its committed offsets "
                                       f"({_reason(exc)})") from None
            got = {tp.partition: tp.offset for tp in committed if tp.error is None and tp.offset >= 0}
            if not got:
                raise NotFound(f"Kafka: group {group} has no committed offset on topic {topic} (unknown group, "
                               "or it consumed nothing yet)")
            for p in parts:
                low, high = _watermarks(consumer, topic, p, timeout)
                prev = ends.get((group, topic, p))
                start = prev.end if prev is not None else low
                end = got.get(p, start)
                records.append({"group": group, "topic": topic, "partition": p, "start": start, "end": end,
                                "high": high})
    finally:
        consumer.close()
    lg.record(run, "offsets", records)  # validated there: start <= end <= high, or exit 6 naming the field
    return records


# --- replay check ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartitionCheck:
    """The replay check of one sealed window: ok, or the first offset that differs or is missing, and why."""

    group: str
    topic: str
    partition: int
    start: int
    end: int
    ok: bool
    count: int  # messages re-read in the window
    offset: int | None = None
    problem: str = ""

    @property
    def label(self) -> str:
        return f"{self.topic}[{self.partition}]"

    def to_json(self) -> dict[str, object]:
        return {"group": self.group or None, "topic": self.topic, "partition": self.partition, "start": self.start,
                "end": self.end, "ok": self.ok, "count": self.count, "offset": self.offset,
                "problem": self.problem or None}


def _sealed_logs(lg: Ledger, run: str) -> dict[tuple[str, int], tuple[dict[str, Any], list[tuple[int, bytes]]]]:
    """Each sealed receipt with a topic, partition and digest, and the message log its digest names."""
    from .kinds import load_record

    sealed = lg.sealed(run)
    try:
        items = list(sealed.items())
        by_digest = {e.blake3.hex(): e for e in items}
        out: dict[tuple[str, int], tuple[dict[str, Any], list[tuple[int, bytes]]]] = {}
        for e in items:
            if e.kind != "receipt":
                continue
            rec = load_record("receipt", sealed.read(e), f"run {run}: item {e.name}")
            digest = str(rec.get("digest", ""))
            if "topic" not in rec or "partition" not in rec or not digest.startswith("b3:"):
                continue
            log = by_digest.get(digest[3:])
            if log is None:
                raise CheckFailed(f"run {run}: receipt {e.name}: the message log it names (b3:{digest[3:19]}) is "
                                  "not in the run")
            out[(rec["topic"], rec["partition"])] = (rec, parse_log(sealed.read(log), f"run {run}: item {log.name}"))
        return out
    finally:
        sealed.index.close()


def _read_window(consumer: Any, topic: str, partition: int, start: int, end: int, deadline: float
                 ) -> Iterator[tuple[int, bytes]]:
    """(offset, message hash) of every message in [start, end), read with an assigned consumer (no group
    membership, no commits); stops at end, at the partition's end, or raises at the deadline."""
    ck = _kafka()
    consumer.assign([ck.TopicPartition(topic, partition, start)])
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaUnavailable(f"Kafka: {topic}[{partition}]: no answer within the timeout while re-reading "
                                       f"[{start}, {end})")
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == ck.KafkaError._PARTITION_EOF:
                    return
                if err.code() == ck.KafkaError._TRANSPORT or err.code() == ck.KafkaError._ALL_BROKERS_DOWN:
                    raise KafkaUnavailable(f"Kafka: {topic}[{partition}]: {err.str()}")
                if err.code() in (ck.KafkaError.OFFSET_OUT_OF_RANGE, ck.KafkaError._AUTO_OFFSET_RESET):
                    return  # the window's start is gone or beyond the end now: the caller names the first offset
                raise KafkaUnavailable(f"Kafka: {topic}[{partition}]: {err.str()}")
            off = msg.offset()
            if off >= end:
                return
            yield off, message_hash(topic, partition, off, msg.key(), msg.value())
            if off == end - 1:
                return
    finally:
        consumer.unassign()


def _compare(sealed: list[tuple[int, bytes]], now: list[tuple[int, bytes]]) -> tuple[int, str] | None:
    """The first offset at which the re-read window differs from the sealed log, and how; None if identical."""
    for (so, sh), (no, nh) in zip(sealed, now, strict=False):
        if so != no:
            if so < no:
                return so, f"offset {so} is missing (sealed, not there any more)"
            return no, f"offset {no} was not admitted by the run but is there now"
        if sh != nh:
            return so, f"offset {so} differs (sealed b3:{sh.hex()[:16]}, re-read b3:{nh.hex()[:16]})"
    if len(sealed) > len(now):
        return sealed[len(now)][0], f"offset {sealed[len(now)][0]} is missing (sealed, not there any more)"
    if len(now) > len(sealed):
        return now[len(sealed)][0], f"offset {now[len(sealed)][0]} was not admitted by the run but is there now"
    return None


def replay_check(lg: Ledger, run: str, conf: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT
                 ) -> list[PartitionCheck]:
    """Re-read every sealed window [start, end) of ``run`` with an independent consumer and compare each
    message's hash with the sealed message log its receipt names."""
    commit = lg.sealed(run)
    commit.index.close()
    anchors = commit.commit.body.anchors
    if not anchors:
        raise CheckFailed(f"run {run}: no offsets evidence sealed: no window to replay")
    logs = _sealed_logs(lg, run)
    consumer = _consumer(conf, f"ledger-replay-{uuid.uuid4().hex}", timeout)
    out = []
    known: set[str] = set()
    try:
        for group, topic, partition, start, end in anchors:
            if (topic, partition) not in logs and start == end:
                out.append(PartitionCheck(group, topic, partition, start, end, True, 0))  # nothing admitted
                continue
            if (topic, partition) not in logs:
                out.append(PartitionCheck(group, topic, partition, start, end, False, 0, start,
                                          "no sealed receipt with a message log for this partition"))
                continue
            _, log = logs[(topic, partition)]
            sealed = [(o, h) for o, h in log if start <= o < end]
            if topic not in known:  # an unknown topic is exit 3 before anything is compared; once per topic
                known.add(topic)
                _partitions(consumer, topic, timeout)
            low, high = _watermarks(consumer, topic, partition, timeout)
            now = [] if start >= end or low >= end else list(
                _read_window(consumer, topic, partition, max(start, low), end, time.monotonic() + timeout))
            diff = _compare(sealed, now)
            if diff is None:
                out.append(PartitionCheck(group, topic, partition, start, end, True, len(now)))
            else:
                offset, why = diff
                if low > offset:
                    why += f"; the partition now starts at {low} (retention or deletion)"
                elif high <= offset:
                    why += f"; the partition now ends at {high}"
                out.append(PartitionCheck(group, topic, partition, start, end, False, len(now), offset, why))
    finally:
        consumer.close()
    return out
