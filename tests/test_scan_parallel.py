"""Scanner.scan_parallel (ledger/secrets.py): the threaded prefilter reports exactly what the sequential scan
(check_bytes) reports -- same first refusal, same waivers, same line numbers -- wherever the chunk boundaries fall;
it hashes every byte it reads; it hands over to the sequential scan (None) on a line longer than LONG_LINE; and
candidate_ranges, its per-thread work, returns exactly the prefilter's candidate lines.

CHUNK and LONG_LINE are patched small (``pytest.MonkeyPatch.context()``: hypothesis runs many examples per test
call) so that chunk boundaries fall inside secret lines, right before and after newlines and on them."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

import blake3
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_secrets import CORPUS, EVIDENCE_EXAMPLES, WAIVE_ALL, Secret

from ledger import secrets as S
from ledger.secrets import DETECTORS, AllowRule, Finding, Scanner, SecretFound, Waiver, candidate_ranges

SMALL_CHUNKS = (64, 100, 4096)
THREADS = (1, 2, 3)
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def secret(name: str) -> Secret:
    return next(s for s in CORPUS if s.name == name)


@contextmanager
def small_chunks(chunk: int) -> Iterator[None]:
    """CHUNK = ``chunk`` for both scans, LONG_LINE = 4 * CHUNK as in the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "CHUNK", chunk)
        mp.setattr(S, "LONG_LINE", 4 * chunk)
        yield


class ShortReads(io.RawIOBase):
    """A raw file whose reads return fewer bytes than asked (as pipes and sockets do), cycling through ``sizes``."""

    def __init__(self, data: bytes, sizes: list[int], pos: int = 0) -> None:
        self._data = data
        self._pos = pos
        self._sizes = sizes
        self._n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        size = min(self._sizes[self._n % len(self._sizes)], len(b))
        self._n += 1
        piece = self._data[self._pos:self._pos + size]
        memoryview(b).cast("B")[:len(piece)] = piece
        self._pos += len(piece)
        return len(piece)


class RecordingHasher:
    """Keeps a copy of every update (scan_parallel reuses its buffers: a view would change under us)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: Any) -> None:
        self.parts.append(bytes(data))


def reader(data: bytes, sizes: list[int] | None, pos: int = 0) -> BinaryIO:
    """``data`` from offset ``pos`` on: an io.BytesIO (full reads) or, given ``sizes``, a raw file's short reads."""
    if sizes is not None:
        return cast(BinaryIO, ShortReads(data, sizes, pos))
    f = io.BytesIO(data)
    f.seek(pos)
    return f


Outcome = tuple[str, object]


def sequential(scanner: Scanner, item: str, data: bytes) -> Outcome:
    try:
        return "ok", scanner.check_bytes(item, data)
    except SecretFound as exc:
        return "refused", exc.finding


def parallel(scanner: Scanner, item: str, data: bytes, threads: int, sizes: list[int] | None = None,
             hasher: Any = None) -> Outcome | None:
    """scan_parallel's outcome; on success, checks that it read (and hashed) exactly ``data``."""
    h = blake3.blake3() if hasher is None else hasher
    try:
        done = scanner.scan_parallel(item, reader(data, sizes), h, threads)
    except SecretFound as exc:
        return "refused", exc.finding
    if hasher is None:
        assert h.digest() == blake3.blake3(data).digest()  # read to the end, even when returning None
    if done is None:
        return None
    waivers, total = done
    assert total == len(data)
    return "ok", waivers


def line_lengths(data: bytes) -> list[int]:
    """The length of each line, without its newline (a CR is part of the line)."""
    return [len(line) for line in data.split(b"\n")]


# --- 1. the oracle: scan_parallel == check_bytes ---------------------------------------------------------------

_ITEMS = ("events.log", "conf/app.yaml", "conf/.env", "app.py", "keys/deploy.txt")
_SINGLE_LINE = [s for s in CORPUS if "\n" not in s.text]
_FILL_WORDS = (b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"row", b"42", b"ok", b"evidence", b"2026-11-25")


def filler(n: int, seed: int) -> bytes:
    """``n`` bytes of harmless words (no prefilter match), no newline."""
    r = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += r.choice(_FILL_WORDS) + b" "
    return bytes(out[:n])


def _clean_junk(b: bytes) -> bool:
    return S._prefilter().search(b) is None


_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n"), max_size=60)
_LINE = st.one_of(
    _TEXT.map(str.encode),  # printable and not, any script, CRs
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")).filter(_clean_junk),  # binary junk
    st.just(b""),
    st.sampled_from(EVIDENCE_EXAMPLES).map(str.encode),
    st.sampled_from(CORPUS).map(lambda s: s.text.encode()),  # a secret (a PEM block spans several lines)
    st.sampled_from(CORPUS).map(lambda s: s.text.encode()),
)


@st.composite
def long_line(draw: st.DrawFn, chunk: int) -> bytes:
    """A line of chunk/2 .. 5 chunks, often right around LONG_LINE (= 4 chunks), sometimes holding a secret."""
    long_ = 4 * chunk
    n = draw(st.one_of(st.integers(chunk // 2, 5 * chunk),
                       st.sampled_from([long_ - 1, long_, long_ + 1, long_ + chunk - 1, long_ + chunk])))
    fill = filler(n, draw(st.integers(0, 1 << 16)))
    inner = draw(st.none() | st.sampled_from(_SINGLE_LINE))
    if inner is None:
        return fill
    at = draw(st.integers(0, n))
    return fill[:at] + b" " + inner.text.encode() + b" " + fill[at:]


@st.composite
def document(draw: st.DrawFn, chunk: int) -> bytes:
    lines = draw(st.lists(_LINE, min_size=1, max_size=14))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        lines.insert(draw(st.integers(0, len(lines))), draw(long_line(chunk)))
    out = bytearray()
    for i, line in enumerate(lines):
        out += line
        if i < len(lines) - 1 or draw(st.booleans()):  # the last line with or without its newline
            out += draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))
    return bytes(out)


@st.composite
def read_sizes(draw: st.DrawFn, chunk: int) -> list[int] | None:
    """None: io.BytesIO (full reads); else the sizes of a raw file's short reads."""
    return draw(st.none() | st.lists(st.integers(1, chunk), min_size=1, max_size=6))


@st.composite
def allow_rules(draw: st.DrawFn, item: str, findings: list[Finding]) -> list[AllowRule]:
    """Rules waiving some of ``findings`` by line and detector, decoys on wrong lines, sometimes everything."""
    kind = draw(st.sampled_from(["none", "all", "each", "some"]))
    if kind == "none":
        return []
    if kind == "all":
        return list(WAIVE_ALL)
    if kind == "each":  # each finding by its own line and detector, maybe but one
        chosen = findings[:]
        drop_one: bool = draw(st.booleans())
        if chosen and drop_one:
            del chosen[draw(st.integers(0, len(chosen) - 1))]
    else:
        chosen = draw(st.lists(st.sampled_from(findings), unique=True)) if findings else []
    rules = [AllowRule(item, "waived", line=f.line, detector=f.detector) for f in chosen]
    for f in draw(st.lists(st.sampled_from(findings), max_size=2)) if findings else []:
        rules.append(AllowRule(item, "decoy: the next line", line=f.line + 1, detector=f.detector))
    if draw(st.booleans()):
        rules.append(AllowRule("elsewhere/*", "decoy: another item"))
    if draw(st.booleans()):
        rules.append(AllowRule("*", "a whole detector", detector=draw(st.sampled_from(DETECTORS))))
    return rules


@SETTINGS
@given(data=st.data(), chunk=st.sampled_from(SMALL_CHUNKS), threads=st.sampled_from(THREADS),
       item=st.sampled_from(_ITEMS))
def test_scan_parallel_equals_check_bytes(data: st.DataObject, chunk: int, threads: int, item: str) -> None:
    content = data.draw(document(chunk), label="content")
    sizes = data.draw(read_sizes(chunk), label="sizes")
    with small_chunks(chunk):
        every = Scanner(WAIVE_ALL).check_bytes(item, content)
        assert [w.finding for w in every] == sorted({w.finding for w in every}, key=lambda f: (f.line, f.detector))
        rules = data.draw(allow_rules(item, [w.finding for w in every]), label="rules")
        scanner = Scanner(rules)
        expected = sequential(scanner, item, content)
        if not rules and every:
            assert expected == ("refused", every[0].finding)  # the oracle itself is sound
        got = parallel(scanner, item, content, threads, sizes)

        event(f"expected {expected[0]}, got {'None' if got is None else got[0]}"
              + (f", {len(cast(list[Waiver], got[1]))} waivers" if got is not None and got[0] == "ok" else ""))
        lengths = line_lengths(content)
        over = [n for n, length in enumerate(lengths, 1) if length > S.LONG_LINE]
        if got is None:
            # handed over to the sequential scan: only for a line longer than LONG_LINE (or, counting its newline,
            # one of exactly LONG_LINE bytes)
            assert over or S.LONG_LINE in lengths, f"handed over, longest line {max(lengths)} <= {S.LONG_LINE}"
            return
        assert got == expected
        if over:
            # not handed over: only because a finding before the long line was settled (and refused) first
            assert got[0] == "refused", f"a {max(lengths)}-byte line (LONG_LINE {S.LONG_LINE}) was scanned"
            assert cast(Finding, got[1]).line < over[0]


def test_every_corpus_secret_at_every_chunk_offset() -> None:
    """Each secret's line starts at many offsets of a 64-byte chunk: on a boundary, just after and before one, and
    with its newline the last byte of a chunk, the first of the next, or just before a boundary."""
    chunk = 64
    with small_chunks(chunk):
        for s in CORPUS:
            text = s.text.encode()
            if max(line_lengths(text)) > S.LONG_LINE:
                continue
            at = len(b"head\n") + 1  # the secret's first line starts at shift + at
            newline = at + text.index(b"\n") if b"\n" in text else at + len(text)
            specials = {(k * chunk - at + d) % chunk for k in (1, 2) for d in (-1, 0, 1)}
            specials |= {(k * chunk - newline + d) % chunk for k in (1, 2, 3) for d in (-2, -1, 0, 1)}
            for shift in sorted(set(range(0, chunk, 5)) | specials):
                data = b"head\n" + b"p" * shift + b"\n" + text + b"\n" + b"tail\n"
                line = 3 + s.line - 1
                expected = sequential(Scanner(), s.item, data)
                assert expected[0] == "refused", (s.name, shift)
                found = cast(Finding, expected[1])
                assert found.line == line and found.detector in s.detectors, (s.name, shift, found)
                got = parallel(Scanner(), s.item, data, 1 + shift % 3)
                assert got == expected, (s.name, shift)
                # and waived: the same waivers
                assert parallel(Scanner(WAIVE_ALL), s.item, data, 2) == sequential(Scanner(WAIVE_ALL), s.item, data)


# --- 2. the allow-list across chunk boundaries ---------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(pad=st.integers(0, 220), chunk=st.sampled_from([64, 100]), threads=st.sampled_from(THREADS),
       sizes=st.none() | st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_allow_list_waives_by_line_and_detector(pad: int, chunk: int, threads: int, sizes: list[int] | None) -> None:
    stripe, github, akia = secret("Stripe live key"), secret("GitHub token"), secret("AWS access key id")
    item = "billing/2026.log"
    lines = [b"ok", filler(pad, pad), stripe.text.encode(), b"ok", github.text.encode(), filler(pad // 2, 1),
             akia.text.encode(), b"done"]
    data = b"\n".join(lines) + b"\n"
    by_line = AllowRule("billing/*.log", "sandbox key", line=3, detector="Stripe Access Key")
    wrong_line = AllowRule("billing/*.log", "meant for the token, one line off", line=4, detector="GitHub Token")
    github_rule = AllowRule("billing/*", "revoked ci token", line=5)
    aws_rule = AllowRule(item, "example key id", detector="AWS Access Key")
    with small_chunks(chunk):
        # everything waived: the waivers, in line order, each with its rule
        scanner = Scanner([wrong_line, by_line, github_rule, aws_rule])
        got = parallel(scanner, item, data, threads, sizes)
        assert got == sequential(scanner, item, data)
        assert got == ("ok", [Waiver(Finding(item, 3, "Stripe Access Key"), by_line),
                              Waiver(Finding(item, 5, "GitHub Token"), github_rule),
                              Waiver(Finding(item, 7, "AWS Access Key"), aws_rule)])
        # the wrong-line rule waives nothing: the token on line 5 is refused, past the waived line 3
        scanner = Scanner([by_line, wrong_line, aws_rule])
        got = parallel(scanner, item, data, threads, sizes)
        assert got == sequential(scanner, item, data) == ("refused", Finding(item, 5, "GitHub Token"))
        # the last secret refused, after two waived ones
        scanner = Scanner([by_line, github_rule, AllowRule(item, "wrong line", line=6, detector="AWS Access Key")])
        got = parallel(scanner, item, data, threads, sizes)
        assert got == sequential(scanner, item, data) == ("refused", Finding(item, 7, "AWS Access Key"))
        # a rule for another item waives nothing
        got = parallel(Scanner([AllowRule("other/*", "r")]), item, data, threads, sizes)
        assert got == ("refused", Finding(item, 3, "Stripe Access Key"))


# --- 3. hashing -----------------------------------------------------------------------------------------------

_BYTES = st.lists(st.one_of(st.binary(max_size=80), st.just(b"\n"), st.just(b"\r\n"),
                            st.integers(0, 1200).map(lambda n: b"y" * n)), max_size=30).map(b"".join)


@SETTINGS
@given(data=_BYTES, chunk=st.sampled_from(SMALL_CHUNKS), threads=st.sampled_from(THREADS),
       skip=st.integers(0, 50), sizes=st.none() | st.lists(st.integers(1, 100), min_size=1, max_size=4))
def test_hasher_sees_every_byte_read_in_order(data: bytes, chunk: int, threads: int, skip: int,
                                              sizes: list[int] | None) -> None:
    skip = min(skip, len(data))
    rec, b3 = RecordingHasher(), blake3.blake3()

    class Both:
        def update(self, view: Any) -> None:
            rec.update(view)
            b3.update(view)

    with small_chunks(chunk):
        f = reader(data, sizes, skip)  # scanned from its current position
        done = Scanner(WAIVE_ALL).scan_parallel("blob.bin", f, Both(), threads)
        rest = data[skip:]
        assert b"".join(rec.parts) == rest
        assert b3.digest() == blake3.blake3(rest).digest()
        assert all(0 < len(p) <= chunk for p in rec.parts)
        if max(line_lengths(rest)) > S.LONG_LINE:
            assert done is None
        elif max(line_lengths(rest)) < S.LONG_LINE:
            assert done is not None
        if done is not None:
            waivers, total = done
            assert total == len(rest)
            assert waivers == Scanner(WAIVE_ALL).check_bytes("blob.bin", rest)


def test_hashing_when_handing_over_a_long_line() -> None:
    with small_chunks(64):
        data = b"ok\n" + b"z" * (4 * 64 + 65) + b"\n" + secret("GitHub token").text.encode() + b"\nend"
        rec = RecordingHasher()
        assert Scanner().scan_parallel("x.log", io.BytesIO(data), rec, 2) is None  # the secret is after it
        assert b"".join(rec.parts) == data
        # and a long last line without a newline
        data = b"ok\n" * 40 + b"z" * (4 * 64 + 1)
        rec = RecordingHasher()
        assert Scanner().scan_parallel("x.log", io.BytesIO(data), rec, 3) is None
        assert b"".join(rec.parts) == data


# --- 4. candidate_ranges ----------------------------------------------------------------------------------------

_PIECES = st.one_of(
    st.binary(max_size=24),
    st.sampled_from([b"\n", b"\n", b"\r\n", b"'", b'"', b" ", b"password = ", b"ghp_", b"xoxb-", b"AKIA",
                     b"0123456789abcdefABC", b"-----BEGIN RSA PRIVATE KEY-----", b"eyJhbGciOi.eyJ", b"sk_live_",
                     b"://user:pw@", b"AccountKey=", b"T3BlbkFJ", b"APB" + b"a" * 10,
                     # candidates right at a line's start, right after another candidate line
                     b"ghp_\nghp_", b"\nAKIAABCDEFGHIJKLMNOP", b"xoxb-\n\nxoxs-", b"\nAPB" + b"a" * 10 + b"\n"]),
    st.sampled_from(CORPUS).map(lambda s: s.text.encode()),
    st.sampled_from(EVIDENCE_EXAMPLES).map(str.encode),
)


@SETTINGS
@given(buf=st.lists(_PIECES, max_size=30).map(b"".join), data=st.data())
def test_candidate_ranges_are_the_prefilter_matching_lines(buf: bytes, data: st.DataObject) -> None:
    starts = [0] + [i + 1 for i, c in enumerate(buf) if c == 0x0A]
    start = data.draw(st.sampled_from(starts), label="start")
    ends = [e for e in starts[1:] + [len(buf)] if e >= start]
    end = data.draw(st.sampled_from(ends), label="end")

    pat = S._prefilter()
    expected: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        nl = buf.find(b"\n", pos, end)
        le = end if nl < 0 else nl + 1
        if pat.search(buf[pos:le].rstrip(b"\n")) is not None:
            expected.append((pos, le))
        pos = le

    for b in (buf, bytearray(buf)):
        ranges, newlines = candidate_ranges(b, start, end)
        assert newlines == buf.count(b"\n", start, end)
        prev = start
        for s, e in ranges:
            assert prev <= s < e <= end  # in order, disjoint, inside [start, end)
            assert s == start or buf[s - 1] == 0x0A  # a whole line ...
            assert e == end or buf[e - 1] == 0x0A
            assert b"\n" not in buf[s:e - 1]  # ... and one line
            prev = e
        assert ranges == expected


def test_candidate_ranges_examples() -> None:
    buf = b"a\nghp_x\r\nb\n\n'" + b"Zz" * 12 + b"'\nend"
    assert candidate_ranges(buf, 0, len(buf)) == ([(2, 9), (12, 39)], 5)
    assert candidate_ranges(bytearray(buf), 2, 12) == ([(2, 9)], 3)
    assert candidate_ranges(buf, 9, 12) == ([], 2)
    assert candidate_ranges(buf, 12, 12) == ([], 0)
    assert candidate_ranges(buf, 39, len(buf)) == ([], 0)
    back_to_back = b"ghp_\nghp_\nAKIAABCDEFGHIJKLMNOP"
    assert candidate_ranges(back_to_back, 0, len(back_to_back)) == ([(0, 5), (5, 10), (10, 30)], 2)


# --- 5. edge cases --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [64, None])
@pytest.mark.parametrize("threads", THREADS)
def test_file_without_a_newline_is_scanned(chunk: int | None, threads: int) -> None:
    token = secret("GitHub token")
    data = filler(150, 3) + b" " + token.text.encode()  # 207 bytes, no newline: 4 chunks of 64
    with pytest.MonkeyPatch.context() as mp:
        if chunk is not None:
            mp.setattr(S, "CHUNK", chunk)
            mp.setattr(S, "LONG_LINE", 4 * chunk)
        assert b"\n" not in data and len(data) <= S.LONG_LINE
        got = parallel(Scanner(), token.item, data, threads)
        assert got == ("refused", Finding(token.item, 1, "GitHub Token"))
        waiver = AllowRule(token.item, "r", line=1)
        assert parallel(Scanner([waiver]), token.item, data, threads) == (
            "ok", [Waiver(Finding(token.item, 1, "GitHub Token"), waiver)])
        # a clean one is read and hashed whole
        clean = filler(255, 4)
        rec = RecordingHasher()
        assert Scanner().scan_parallel("x", io.BytesIO(clean), rec, threads) == ([], len(clean))
        assert b"".join(rec.parts) == clean


@pytest.mark.parametrize("threads", THREADS)
def test_empty_file(threads: int) -> None:
    rec = RecordingHasher()
    assert Scanner().scan_parallel("empty.log", io.BytesIO(b""), rec, threads) == ([], 0)
    assert b"".join(rec.parts) == b""
    f = io.BytesIO(b"AKIAABCDEFGHIJKLMNOP\n")
    f.seek(0, io.SEEK_END)  # at its end: nothing left to scan
    assert Scanner().scan_parallel("x", f, blake3.blake3(), threads) == ([], 0)


def test_line_numbers_count_from_the_current_position() -> None:
    akia = b"AKIAABCDEFGHIJKLMNOP"
    with small_chunks(64):
        data = b"x\n" * 100 + akia + b"\n"
        f = io.BytesIO(data)
        f.seek(100)  # 50 lines in
        with pytest.raises(SecretFound) as e:
            Scanner().scan_parallel("k.log", f, blake3.blake3(), 2)
        assert e.value.finding == Finding("k.log", 51, "AWS Access Key")


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("sizes", [None, [64, 64, 64, 64, 7]])
def test_stale_bytes_of_reused_buffers_are_never_scanned(threads: int, sizes: list[int] | None) -> None:
    """Chunks with one newline each free their buffer at once: the next read reuses it, and a short last read
    leaves the previous chunk's bytes (a newline, a secret) beyond its end. None of them is a line."""
    token = secret("GitHub token").text.encode()  # 56 bytes
    item = "ci.log"
    with small_chunks(64):
        # the last line, no newline, is read short into the buffer that held "y...y\n": the stale newline at 63
        data = b"x" * 63 + b"\n" + token.ljust(63) + b"\n" + b"y" * 63 + b"\n" + token
        rules = [AllowRule(item, "r", line=2, detector="GitHub Token"), AllowRule(item, "r", line=4)]
        expected = ("ok", [Waiver(Finding(item, 2, "GitHub Token"), rules[0]),
                           Waiver(Finding(item, 4, "GitHub Token"), rules[1])])
        assert sequential(Scanner(rules), item, data) == expected
        assert parallel(Scanner(rules), item, data, threads, sizes) == expected
        # the stale bytes of a short last read hold the previous chunk's secret: it is not on line 3
        data = b"x" * 63 + b"\n" + token.ljust(63) + b"\n" + b"ok"
        rule = AllowRule(item, "r", line=2)
        expected = ("ok", [Waiver(Finding(item, 2, "GitHub Token"), rule)])
        assert sequential(Scanner([rule]), item, data) == expected
        assert parallel(Scanner([rule]), item, data, threads, sizes) == expected


@pytest.mark.parametrize(("chunk", "extra"), [(64, 1), (64, 63), (64, 64), (64, 200), (None, 1)],
                         ids=["64+1", "64+63", "64+64", "64+200", "8MiB+1"])
@pytest.mark.parametrize("before", [b"", b"ok\n"], ids=["at-0", "at-3"])
@pytest.mark.parametrize("newline", [True, False], ids=["ended", "last"])
def test_every_line_longer_than_long_line_is_handed_over(chunk: int | None, extra: int, before: bytes,
                                                         newline: bool) -> None:
    """None when a line is longer than LONG_LINE, however little or far past it, whether a chunk without a newline
    or the chunk that ends the line takes it there; the hasher still sees the whole file."""
    with pytest.MonkeyPatch.context() as mp:
        if chunk is not None:
            mp.setattr(S, "CHUNK", chunk)
            mp.setattr(S, "LONG_LINE", 4 * chunk)
        long_ = b"z" * (S.LONG_LINE + extra)  # with the module's own sizes: a 32 MiB + 1 byte line
        data = before + long_ + (b"\nok\n" if newline else b"")
        rec = RecordingHasher()
        assert Scanner().scan_parallel("x.log", io.BytesIO(data), rec, 2) is None
        assert b"".join(rec.parts) == data
