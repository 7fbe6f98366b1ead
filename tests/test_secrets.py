"""Secret scanning (ledger/secrets.py): refusal of real secret shapes wherever they sit in a stream, no false
positives on evidence, the prefilter proven a sound superset against detect-secrets itself, and the allow-list."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import logging
import random
import re
import string
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import secrets as S
from ledger.errors import Refused, UsageError
from ledger.secrets import (
    DETECTORS,
    AllowRule,
    Finding,
    Scanner,
    SecretFound,
    Waiver,
    load_allow_list,
)

PEM = "PEM private key block"
ALPHANUM = string.ascii_letters + string.digits
WAIVE_ALL = (AllowRule("*", "test: report every finding"),)


# --- the secret corpus ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Secret:
    name: str
    item: str  # the item name to scan it under (the keyword plugin picks its rules by extension)
    text: str  # the lines to embed (a PEM block spans several)
    value: str  # the secret itself: the error must not contain it, nor any 8 characters of it
    detectors: frozenset[str]  # what may be reported for it
    line: int = 1  # which of text's lines is reported (1-based)


def _rand(r: random.Random, n: int, alphabet: str = ALPHANUM) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def _entropy(s: str) -> float:
    import math

    return -sum(s.count(c) / len(s) * math.log2(s.count(c) / len(s)) for c in set(s))


def _b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _pem_keys() -> list[Secret]:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    def pem(key: PrivateKeyTypes, fmt: ser.PrivateFormat, enc: ser.KeySerializationEncryption) -> str:
        return key.private_bytes(ser.Encoding.PEM, fmt, enc).decode()

    none = ser.NoEncryption()
    keys = [
        ("RSA PEM key", pem(rsa.generate_private_key(65537, 1024), ser.PrivateFormat.TraditionalOpenSSL, none)),
        ("EC PEM key", pem(ec.generate_private_key(ec.SECP256R1()), ser.PrivateFormat.TraditionalOpenSSL, none)),
        ("OpenSSH key", pem(ed25519.Ed25519PrivateKey.generate(), ser.PrivateFormat.OpenSSH, none)),
        ("encrypted PKCS#8 key", pem(rsa.generate_private_key(65537, 1024), ser.PrivateFormat.PKCS8,
                                     ser.BestAvailableEncryption(b"correct horse battery"))),
    ]
    out = []
    for name, text in keys:
        body = "".join(text.strip().splitlines()[1:-1])
        header = text.splitlines()[0]
        detectors = {PEM} if "ENCRYPTED" in header else {PEM, "Private Key"}
        out.append(Secret(name, "keys/deploy.txt", text.rstrip("\n"), body, frozenset(detectors)))
    return out


def make_corpus(seed: int = 7) -> list[Secret]:
    r = random.Random(seed)
    b64 = ALPHANUM + "+/"

    def high_entropy_b64(n: int) -> str:
        while True:
            v = _rand(r, n, b64)
            if _entropy(v) > 4.7:
                return v

    akia = "AKIA" + _rand(r, 16, string.ascii_uppercase + string.digits)
    aws_secret = high_entropy_b64(40)
    ghp = "ghp_" + _rand(r, 36)
    glpat = "glpat-" + _rand(r, 20)
    xoxb = f"xoxb-{r.randrange(10**11, 10**12)}-{r.randrange(10**11, 10**12)}-{_rand(r, 24)}"
    slack_hook = f"https://hooks.slack.com/services/T{_rand(r, 8)}/B{_rand(r, 8)}/{_rand(r, 24)}"
    stripe = "sk_live_" + _rand(r, 24)
    jwt = ".".join((_b64url({"alg": "HS256", "typ": "JWT"}), _b64url({"sub": _rand(r, 12), "iat": 1764065730}),
                    _rand(r, 43, ALPHANUM + "-_")))
    pw = [_rand(r, 18) for _ in range(4)]
    url_pw = _rand(r, 16)
    sendgrid = f"SG.{_rand(r, 22)}.{_rand(r, 43)}"
    twilio = "AC" + _rand(r, 32, string.ascii_lowercase + string.digits)
    pypi = "pypi-AgEIcHlwaS5vcmc" + _rand(r, 80, ALPHANUM + "-_")
    npm = "npm_" + _rand(r, 36)
    telegram = f"{r.randrange(10**8, 10**9)}:{_rand(r, 35, ALPHANUM + '_-')}"
    discord = f"M{_rand(r, 23)}.{_rand(r, 6)}.{_rand(r, 27)}"
    blob = high_entropy_b64(32)

    def one(name: str, item: str, text: str, value: str, *detectors: str) -> Secret:
        return Secret(name, item, text, value, frozenset(detectors))

    corpus = [
        one("AWS access key id", "env/aws.txt", f"aws_access_key_id = {akia}", akia, "AWS Access Key"),
        one("AWS secret access key", "env/aws.txt", f'aws_secret_access_key = "{aws_secret}"', aws_secret,
            "AWS Access Key", "Secret Keyword", "Base64 High Entropy String"),
        one("GitHub token", "ci.log", f"export GH_TOKEN={ghp}", ghp, "GitHub Token"),
        one("GitLab PAT", "ci.log", f"remote: https://gitlab.example.com {glpat} used", glpat, "GitLab Token"),
        one("Slack token", "notify.log", f"slack token {xoxb}", xoxb, "Slack Token"),
        one("Slack webhook", "notify.log", f"posting to {slack_hook}", slack_hook.rsplit("/", 1)[1], "Slack Token"),
        one("Stripe live key", "billing.log", f"stripe key {stripe} loaded", stripe, "Stripe Access Key"),
        one("JWT", "api.log", f"Authorization: Bearer {jwt}", jwt, "JSON Web Token"),
        one("basic-auth URL", "deploy.log", f"cloning https://deploy:{url_pw}@git.example.com/repo.git", url_pw,
            "Basic Auth Credentials"),
        one("password (yaml)", "conf/app.yaml", f"  password: {pw[0]}", pw[0], "Secret Keyword"),
        one("password (json)", "conf/app.json", f'{{"user": "svc", "password": "{pw[1]}"}}', pw[1],
            "Secret Keyword"),
        one("password (env)", "conf/.env", f"DB_PASSWORD={pw[2]}", pw[2], "Secret Keyword"),
        one("password (python)", "conf/settings.py", f'DATABASE_PASSWORD = "{pw[3]}"', pw[3], "Secret Keyword"),
        one("SendGrid key", "mail.log", f"key {sendgrid}", sendgrid, "SendGrid API Key"),
        one("Twilio SID", "sms.log", f"twilio account {twilio}", twilio, "Twilio API Key"),
        one("PyPI token", "publish.log", f"twine upload -p {pypi}", pypi, "PyPI Token"),
        one("npm _authToken", ".npmrc", f"//registry.npmjs.org/:_authToken={npm}", npm, "NPM tokens"),
        one("Telegram bot token", "bot.log", f"bot {telegram} up", telegram, "Telegram Bot Token"),
        one("Discord bot token", "bot.log", f"discord {discord}", discord, "Discord Bot Token"),
        one("high-entropy base64", "conf/app.ini.txt", f'upload_signature = "{blob}"', blob,
            "Base64 High Entropy String"),
    ]
    return corpus + _pem_keys()


CORPUS = make_corpus()


def test_corpus_covers_at_least_14_types() -> None:
    assert len({s.name for s in CORPUS}) >= 14
    assert {d for s in CORPUS for d in s.detectors} >= {
        "AWS Access Key", PEM, "Private Key", "GitHub Token", "GitLab Token", "Slack Token", "Stripe Access Key",
        "JSON Web Token", "Basic Auth Credentials", "Secret Keyword", "SendGrid API Key", "Twilio API Key",
        "PyPI Token", "NPM tokens", "Telegram Bot Token", "Discord Bot Token", "Base64 High Entropy String"}


# --- realistic evidence -----------------------------------------------------------------------------------------

def _benchlib() -> Any:
    """tools/benchlib.py, whose evidence generator the secret benchmark times the scanner on: the same text here."""
    path = Path(__file__).resolve().parent.parent / "tools" / "benchlib.py"
    spec = importlib.util.spec_from_file_location("benchlib", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("benchlib", mod)  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


evidence_lines = _benchlib().evidence_lines


EVIDENCE_EXAMPLES = [
    "2026-11-25T10:15:30.123Z",
    "2026-11-25T10:15:30.123456+01:00 INFO ingest started",
    "123e4567-e89b-12d3-a456-426614174000",
    '{"request_id":"123e4567-e89b-12d3-a456-426614174000"}',
    "1042,2026-11-25T10:15:30Z,eu-west-1,orders-v2,3,184467,OK",
    '{"topic":"ingest","partition":3,"start":0,"end":120}',
    '{"source":"kafka","count":10,"digest":"sha256:' + hashlib.sha256(b"a").hexdigest() + '"}',
    '"b3:' + hashlib.blake2b(b"b", digest_size=32).hexdigest() + '"',
    '{"name":"model","version":"2026.11.1"}',
    '{"commit":"' + hashlib.sha1(b"c").hexdigest() + '"}',
    '"' + hashlib.sha256(b"d").hexdigest() + '"',
    "'" + hashlib.sha512(b"e").hexdigest() + "'",
    '"' + hashlib.sha384(b"f").hexdigest() + '"',
    '"' + hashlib.sha224(b"g").hexdigest() + '"',
    'ETag: "' + hashlib.md5(b"h").hexdigest() + '"',
    '"' + hashlib.sha256(b"i").hexdigest().upper() + '"',
    '"integrity": "sha256-' + base64.b64encode(hashlib.sha256(b"j").digest()).decode() + '"',
    '"integrity": "sha384-' + base64.b64encode(hashlib.sha384(b"k").digest()).decode() + '"',
    "GET https://api.example.com/v1/items/42?page=2 200 12ms",
    'index_url = "https://registry.example.com/simple/ledger/"',
    "postgres://db.internal:5432/evidence",
    "connecting to 203.0.113.7:9092 and 8.8.8.8",
    "bootstrap.servers=kafka-0.kafka.svc.cluster.local:9092,kafka-1.kafka.svc.cluster.local:9092",
    "__consumer_offsets-17 orders-v2.dlq ingest.events.eu-west-1",
    '{"key":"user-42","value":{"amount":12.5,"currency":"EUR"}}',
    "token_expires_in=3600",
    "password reset requested for user bob",
    '{"password": "********"}',
    '{"ingested": 1000, "quarantined": 0}',
    '{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}',
    '"image": "registry.example.com/pipeline/ingest@sha256:' + hashlib.sha256(b"l").hexdigest() + '"',
    '{"run":"nightly-42","seq":7,"time":1764065730123}',
    "2026-11-25 10:15:30,123 INFO  [main] org.apache.kafka.clients.consumer.KafkaConsumer - [Consumer "
    "clientId=consumer-ingest-1, groupId=ingest] Subscribed to topic(s): orders-v2",
]


@pytest.fixture(scope="module")
def background() -> bytes:
    """About 3 MiB of evidence lines (several chunks of any odd size)."""
    out, size = [], 0
    for line in evidence_lines(11):
        out.append(line)
        size += len(line) + 1
        if size > 3 << 20:
            break
    return ("\n".join(out) + "\n").encode()


# --- helpers ------------------------------------------------------------------------------------------------------

def feed(scanner: Scanner, item: str, data: bytes, sizes: Callable[[int], int] | None = None) -> list[Waiver]:
    scan = scanner.stream(item)
    pos, n = 0, 0
    while pos < len(data):
        size = sizes(n) if sizes else len(data)
        scan.update(data[pos:pos + size])
        pos += size
        n += 1
    return scan.finish()


def odd_sizes(n: int) -> int:
    return (65537, 1_000_003, 7, 333_331, 1)[n % 5]


def assert_refused(exc: SecretFound, secret: Secret, item: str, line: int) -> None:
    msg = str(exc)
    assert exc.finding.item == item and exc.finding.line == line, (secret.name, exc.finding)
    assert exc.finding.detector in secret.detectors, (secret.name, exc.finding)
    assert exc.exit_code == 6 and isinstance(exc, Refused)
    assert msg == (f"item {item}: line {line}: secret detected ({exc.finding.detector}); refused, nothing of it "
                   "was stored (a false positive can be waived with an allow-list entry)")
    assert "\n" not in msg
    assert secret.value not in msg
    for i in range(len(secret.value) - 7):
        assert secret.value[i:i + 8] not in msg, (secret.name, secret.value[i:i + 8])


def line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# --- refusals -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: s.name)
def test_secret_in_small_file_is_refused(secret: Secret, tmp_path: Path) -> None:
    data = f"# evidence\nstarted 2026-11-25T10:15:30Z\n{secret.text}\ndone\n".encode()
    p = tmp_path / "item"
    p.write_bytes(data)
    with pytest.raises(SecretFound) as e1, open(p, "rb") as f:
        Scanner().check_file(secret.item, f)
    assert_refused(e1.value, secret, secret.item, 2 + secret.line)
    with pytest.raises(SecretFound) as e2:
        Scanner().check_bytes(secret.item, data)
    assert e2.value.finding == e1.value.finding


@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: s.name)
def test_secret_in_large_stream_is_refused(secret: Secret, background: bytes) -> None:
    mid = background.index(b"\n", len(background) // 2) + 1
    data = background[:mid] + secret.text.encode() + b"\n" + background[mid:]
    line = line_of(data, mid) + secret.line - 1
    with pytest.raises(SecretFound) as e:
        feed(Scanner(), secret.item, data, odd_sizes)
    assert_refused(e.value, secret, secret.item, line)
    # a chunk boundary in the middle of the secret's line, then odd sizes
    target = mid + len(secret.text.splitlines()[0]) // 2
    with pytest.raises(SecretFound) as e:
        feed(Scanner(), secret.item, data, lambda n: target if n == 0 else odd_sizes(n))
    assert_refused(e.value, secret, secret.item, line)
    # one byte at a time around the secret
    scan = Scanner().stream(secret.item)
    with pytest.raises(SecretFound) as e:
        scan.update(data[:mid - 100])
        for i in range(mid - 100, mid + len(secret.text) + 100):
            scan.update(data[i:i + 1])
        scan.update(data[mid + len(secret.text) + 100:])
        scan.finish()
    assert_refused(e.value, secret, secret.item, line)


@pytest.mark.parametrize("secret", CORPUS, ids=lambda s: s.name)
def test_secret_in_binary_data_is_refused(secret: Secret) -> None:
    r = random.Random(secret.name)
    before, after = r.randbytes(300_000), r.randbytes(300_000)
    data = before + b"\n" + secret.text.encode() + b"\n" + after
    line = line_of(data, len(before) + 1) + secret.line - 1
    with pytest.raises(SecretFound) as e:
        feed(Scanner(), secret.item, data, odd_sizes)
    assert_refused(e.value, secret, secret.item, line)


def test_secret_across_check_files_8_mib_reads(background: bytes, tmp_path: Path) -> None:
    """check_file reads CHUNK bytes at a time and check_bytes slices big data the same way: a secret line straddling
    the first boundary is found, on its line."""
    secret = next(s for s in CORPUS if s.name == "AWS secret access key")
    head = (background * (S.CHUNK // len(background) + 1))[:S.CHUNK - 30]
    head = head[:head.rindex(b"\n") + 1]
    head += b"x" * (S.CHUNK - 20 - len(head)) + b"\n"  # the secret's line starts 19 bytes before the boundary
    data = head + secret.text.encode() + b"\n" + background
    assert len(head) < S.CHUNK < len(head) + len(secret.text)
    line = line_of(data, len(head))
    p = tmp_path / "big.txt"
    p.write_bytes(data)
    with pytest.raises(SecretFound) as e, open(p, "rb") as f:
        Scanner().check_file(secret.item, f)
    assert_refused(e.value, secret, secret.item, line)
    with pytest.raises(SecretFound) as e:
        Scanner().check_bytes(secret.item, data)
    assert_refused(e.value, secret, secret.item, line)


def test_secret_beyond_the_first_mib_of_a_long_line_is_found() -> None:
    """A line longer than MAX_LINE is scanned in overlapping pieces; the line number stays the line's."""
    secret = next(s for s in CORPUS if s.name == "GitHub token")
    prefix = secret.text.encode().index(secret.value.encode()) + 1
    filler = b"x" * (S.MAX_LINE - 10 - prefix)  # the token straddles the end of the line's first piece
    data = b"head\n" + filler + b" " + secret.text.encode() + b" " + b"y" * (3 * S.MAX_LINE) + b"\ntail\n"
    assert data.index(secret.value.encode()) == len(b"head\n") + S.MAX_LINE - 10
    for sizes in (None, odd_sizes, lambda n: 4096):
        with pytest.raises(SecretFound) as e:
            feed(Scanner(), "long.txt", data, sizes)
        assert_refused(e.value, secret, "long.txt", 2)
    # and far into a long line, past several pieces
    data = b"a\nb\n" + b"z " * (5 * S.MAX_LINE // 2) + secret.text.encode() + b"\n"
    with pytest.raises(SecretFound) as e:
        feed(Scanner(), "long.txt", data, odd_sizes)
    assert_refused(e.value, secret, "long.txt", 3)


def test_first_unwaived_finding_raises_early_and_stays_raised() -> None:
    secret = next(s for s in CORPUS if s.name == "Stripe live key")
    scan = Scanner().stream("a.log")
    scan.update(b"ok\n")
    with pytest.raises(SecretFound):
        scan.update(secret.text.encode() + b"\nmore")
    with pytest.raises(SecretFound):
        scan.update(b"more\n")
    with pytest.raises(SecretFound):
        scan.finish()


def test_last_line_without_newline_is_scanned_at_finish() -> None:
    secret = next(s for s in CORPUS if s.name == "Twilio SID")
    scan = Scanner().stream("sms.log")
    scan.update(b"line one\n" + secret.text.encode())  # no newline: carried, not yet scanned
    with pytest.raises(SecretFound) as e:
        scan.finish()
    assert_refused(e.value, secret, "sms.log", 2)


def test_check_file_scans_from_the_current_position() -> None:
    f = io.BytesIO(b"AKIAABCDEFGHIJKLMNOP\nok\n")
    f.seek(5)
    assert Scanner().check_file("x", f) == []
    f.seek(0)
    with pytest.raises(SecretFound):
        Scanner().check_file("x", f)


# --- no false positives -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("item", ["events.log", "conf/app.yaml", "receipts.jsonl"])
def test_no_false_positives_on_evidence(item: str, background: bytes) -> None:
    data = ("\n".join(EVIDENCE_EXAMPLES) + "\n").encode() + background
    assert feed(Scanner(), item, data, odd_sizes) == []
    assert Scanner().check_bytes(item, data) == []


def test_digests_are_exempt_but_detect_secrets_alone_would_flag_them() -> None:
    """The exemption is what keeps quoted digests and SRI hashes from being refused: detect-secrets on its own
    flags each of these lines."""
    lines = [line for line in EVIDENCE_EXAMPLES if _raw_types(line)]
    assert len(lines) >= 8  # quoted sha1/224/256/384/512/md5/upper-case hex, SRI hashes
    assert {t for line in lines for t in _raw_types(line)} == {"Hex High Entropy String",
                                                               "Base64 High Entropy String"}
    for line in lines:
        assert Scanner().check_bytes("x.json", line.encode()) == []


def test_hex_secret_assigned_to_a_secret_name_is_still_caught() -> None:
    digest_like = hashlib.sha256(b"not a digest").hexdigest()
    with pytest.raises(SecretFound) as e:
        Scanner().check_bytes("settings.py", f'api_key = "{digest_like}"\n'.encode())
    assert e.value.finding.detector == "Secret Keyword"
    # a hex string of a non-digest length is not exempt
    with pytest.raises(SecretFound) as e:
        Scanner().check_bytes("x.log", f'"{digest_like[:50]}"\n'.encode())
    assert e.value.finding.detector == "Hex High Entropy String"


def test_random_binary_has_no_findings() -> None:
    data = random.Random(2026).randbytes(8 << 20)
    assert Scanner().check_bytes("blob.bin", data) == []
    assert feed(Scanner(), "blob.bin", data, odd_sizes) == []


def test_public_ip_is_not_a_secret() -> None:
    assert "Public IP (ipv4)" not in DETECTORS
    assert Scanner(WAIVE_ALL).check_bytes("x.log", b"peer 8.8.8.8:443 connected\n") == []


def test_evidence_cannot_waive_its_own_secret_with_a_pragma() -> None:
    secret = next(s for s in CORPUS if s.name == "Stripe live key")
    with pytest.raises(SecretFound):
        Scanner().check_bytes("a.py", f"{secret.text}  # pragma: allowlist secret\n".encode())


# --- the oracle: the Scanner reports exactly what detect-secrets reports line by line ---------------------------

def _oracle(item: str, data: bytes) -> set[tuple[int, str]]:
    """detect-secrets' own line-based scan of every line (no prefilter), same plugins and filters, plus our digest
    exemption and PEM detector."""
    from detect_secrets.core.scan import _process_line_based_plugins
    from detect_secrets.settings import default_settings

    pem = re.compile(r"-----BEGIN (RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP |SSH2 ENCRYPTED )?PRIVATE KEY( BLOCK)?-----")
    out: set[tuple[int, str]] = set()
    with S._ds_lock, default_settings() as s:
        s.disable_plugins("IPPublicDetector")
        s.disable_filters("detect_secrets.filters.common.is_invalid_file",
                          "detect_secrets.filters.allowlist.is_line_allowlisted")
        for n, raw in enumerate(data.split(b"\n"), 1):
            line = raw.decode("utf-8", "replace")
            for p in _process_line_based_plugins([(1, line)], S._ds_filename(item)):
                v = p.secret_value or ""
                if p.type == "Hex High Entropy String" and len(v) in (32, 40, 56, 64, 96, 128):
                    continue
                if p.type == "Base64 High Entropy String" and v.startswith(("sha1-", "sha256-", "sha384-",
                                                                            "sha512-")):
                    continue
                out.add((n, p.type))
            if pem.search(line):
                out.add((n, PEM))
    return out


def _raw_types(line: str) -> set[str]:
    from detect_secrets.core.scan import _process_line_based_plugins
    from detect_secrets.settings import default_settings

    with S._ds_lock, default_settings() as s:
        s.disable_plugins("IPPublicDetector")
        s.disable_filters("detect_secrets.filters.common.is_invalid_file")
        return {p.type for p in _process_line_based_plugins([(1, line)], "x.json")}


def _scanner_findings(item: str, data: bytes, sizes: Callable[[int], int] | None = None) -> set[tuple[int, str]]:
    waivers = feed(Scanner(WAIVE_ALL), item, data, sizes)
    keys = [(w.finding.line, w.finding.detector) for w in waivers]
    assert len(keys) == len(set(keys)) and keys == sorted(keys)
    return set(keys)


_TOKENS = [s.value for s in CORPUS if s.name != "high-entropy base64" and "PEM" not in s.name
           and "key" not in s.name] + [
    "-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN ENCRYPTED PRIVATE KEY-----", "BEGIN PRIVATE KEY",
    "PuTTY-User-Key-File-2", "AccountKey=" + "A" * 30 + "b" * 58, "sq0csp-" + "a1B2" * 11,
    "T3BlbkFJ", "sk-" + "a" * 20 + "T3BlbkFJ" + "b" * 20, "https://api.softlayer.com/soap/v3/" + "a1" * 32,
    "APB" + "a" * 10, "AP\u0663" + "Zz" * 4, "AKC" + "Zz9" * 4, "ac" + "0" * 32, "SK" + "f0" * 16,
    "x" * 32 + "-us12", "A3T" + "X" * 17, "https://user:pa55@acct.cloudant.com", "//host/:_authToken=" + "a-1" * 12,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669:" + "A" * 35,
    "12345\U0001d7ce78:" + "Ab_-" * 9, "M" + "a" * 23 + ".\u0661bcdef." + "c" * 27,
    "N" + "b" * 24 + ".abcdef." + "d" * 27,
    "xoXs-1-abc", "xox\u017f-12-ab", "HOOKS.slack.com/services/T1/B2/c3", "https://hoo\u212as.slack.com/services/Ta/Bb/c",
    "aw\u017f", "ibm_cloud_iam_key", "cl_apikey", "softlayer_password", "cos_hmac_secret_access_key",
]
_WORDS = ["password", "passwd", "pwd", "secret", "api_key", "apikey", "auth_key", "private_key", "client_key",
          "db_pass", "database_pass", "key_pass", "contraseña", "CONTRASENA", "PaSsWoRd", "ſecret", "paſſwd",
          "api_\u212aey", "prıvate_key", "prİv_key", "aws", "AWS", "aws_secret", "token", "key", "pw", "cloudant_pass",
          "cl_apikey", "ibm_cloud_iam_key", "sl_key", "softlayer_api_key", "cos_hmac_secret_access_key",
          "secret_key", "my_password", "account_key", "service_key", "db_key", "to\u212aen"]
_SEPS = [" ", "", "=", " = ", ":", ": ", "==", "!=", "===", ":=", "=>", ";", "(", ").assign(", ".assign(", "[]",
         "[25]", "\t", ",", "'", '"', "`", '"', "'", "\u00a0", "\u2003", "@", "/", "//", "://", "-", "_", ".", "{",
         "}"]


def _values() -> st.SearchStrategy[str]:
    hexs = st.integers(1, 130).flatmap(lambda n: st.text("0123456789abcdefABCDEF", min_size=n, max_size=n))
    b64 = st.text(string.ascii_letters + string.digits + "+/=-_\\", min_size=1, max_size=70)
    words = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=50)
    uni = st.text(st.sampled_from("ſKıİ٠١٢٣٤٥٦٧٨٩𝟎𝟏ñÑé\u00a0\ufffdaZ09_-"), min_size=1, max_size=12)
    digits = st.text("0123456789", min_size=1, max_size=12)
    return st.one_of(hexs, b64, words, uni, digits, st.sampled_from(_TOKENS), st.sampled_from(_WORDS))


@st.composite
def _keyword_line(draw: st.DrawFn) -> str:
    """The shapes the keyword and assignment plugins look for, with their parts varied."""
    pick = draw
    kw = pick(st.sampled_from(_WORDS))
    pre = pick(st.sampled_from(["", "my_", "export ", "  ", "self.", "$", '{"', "conf.", "x", "[", "'", "char "]))
    suf = pick(st.sampled_from(["", "_1", "Value", "_sécure", "s", "2"]))
    close = pick(st.sampled_from(["", '"', "'", "]", '"]', "']", "[]", "[12]"]))
    ws1, ws2 = pick(st.sampled_from(["", " ", "  ", "\t", "\u00a0", "\u3000"])), pick(st.sampled_from(["", " ", "\t"]))
    op = pick(st.sampled_from([":", "=", ":=", "==", "!=", "===", "!==", "=>", "(", ".assign(", "::", " ", "",
                               "!"]))
    q = pick(st.sampled_from(["", "'", '"', "`", "@\""]))
    qc = q[-1:] if pick(st.booleans()) else pick(st.sampled_from(["", "'", '"']))
    val = pick(_values())
    tail = pick(st.sampled_from(["", ";", ",", ")", " # note", '"}', ");", "';", " x"]))
    form = pick(st.integers(0, 3))
    if form == 0:
        return f"{pre}{kw}{suf}{close}{ws1}{op}{ws2}{q}{val}{qc}{tail}"
    if form == 1:  # the "quotes and semicolon" form
        return f"{pre}{kw}{suf}{pick(st.sampled_from(['', 'x', ':=', '[0]']))}{ws1}{q}{val}{qc};"
    if form == 2:  # the "preceded by a comparison" form
        cmp_ = pick(st.sampled_from(["==", "!=", "===", "!==", "!!", "="]))
        return f"{q}{val}{qc}{ws1}{cmp_}{ws2}{pre}{kw}{suf}"
    return f"{pre}{kw}{suf}{close}{ws1}{op}{ws2}{q}{val}{qc}{tail} {pick(_values())}"


_PIECE = st.one_of(st.sampled_from(_WORDS), st.sampled_from(_SEPS), _values(),
                   st.tuples(st.sampled_from(["'", '"']), _values()).map(lambda t: t[0] + t[1] + t[0]))
_LINE = st.one_of(_keyword_line(), st.lists(_PIECE, min_size=1, max_size=12).map("".join))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=st.lists(_LINE, min_size=1, max_size=12),
       item=st.sampled_from(["events.log", "conf/app.yaml", "app.py", "conf/.env", "main.go", "Main.java"]),
       junk=st.binary(max_size=8), chunk=st.integers(1, 64))
def test_scanner_equals_detect_secrets_line_by_line(lines: list[str], item: str, junk: bytes, chunk: int) -> None:
    data = "\n".join(lines).encode() + b"\n" + junk  # junk: maybe invalid UTF-8, maybe a last line without \n
    expected = _oracle(item, data)
    assert _scanner_findings(item, data) == expected
    assert _scanner_findings(item, data, lambda n: chunk) == expected


def test_oracle_agreement_on_the_corpus(background: bytes) -> None:
    """Every corpus secret, several to a buffer amid evidence: the same findings as detect-secrets line by line."""
    head = background[:200_000]
    head = head[:head.rindex(b"\n") + 1]
    for item in ("events.log", "conf/app.yaml"):
        data = head + "\n".join(s.text for s in CORPUS).encode() + b"\n" + head
        expected = _oracle(item, data)
        assert len({line for line, _ in expected}) >= 20
        assert _scanner_findings(item, data, odd_sizes) == expected


# Lines detect-secrets flags through an unusual path: Unicode case folding (long s, Kelvin sign, dotless i),
# Unicode digits and spaces, each keyword regex form, each file type's rules, every plugin's own shape.
_HEX40 = hashlib.sha1(b"edge").hexdigest()
EDGE_CASES: list[tuple[str, str]] = [
    ("x.py", 'ſecret = "abcdefgh1"'),
    ("x.py", 'paſſword: "xyz12345"'),
    ("x.py", 'api_\u212aey = "abcd1234"'),
    ("x.py", 'prıvate_key = "abcd1234"'),
    ("x.py", 'prİv_key = "x1y2z3w4"'),
    ("x.py", 'contraseña = "x1y2z3w4"'),
    ("x.txt", 'password "hunter2abc";'),
    ("x.txt", '"hunter2abc" == password'),
    ("x.txt", "'hunter2abc' !== db_pass"),
    ("x.txt", 'password\u00a0=\u3000"hunter2abc"'),
    ("x.cpp", 'secret.assign("hunter2abc",17);'),
    ("x.cpp", 'std::string secret("hunter2abc");'),
    ("x.c", 'char password[25] = "hunter2abc";'),
    ("x.m", 'NSString *password = @"hunter2abc";'),
    ("x.go", "password := hunter2abc"),
    ("x.yaml", "password: hunter2abc"),
    ("x.toml", "api_key = hunter2abc"),
    ("x.js", "password => 'hunter2abc'"),
    ("x.txt", "bot \u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669:" + "Ab_-xY9" * 5),
    ("x.txt", "bot 12345\U0001d7ce78:" + "Ab_-xY9" * 5),
    ("x.txt", "M" + "aB3" * 7 + "cd.\u0661bcdef." + "Zz9" * 9),
    ("x.txt", "pass AP\u0663bcdefgh1 x"),
    ("x.txt", "AKCp8abcdefghij"),
    ("x.txt", 'artifactory="APBabcdefgh12"'),
    ("x.txt", "x\u00a0APBabcdefgh12\u3000"),
    ("x.txt", "tok xox\u017f-12-abc"),
    ("x.txt", "https://hoo\u212as.slack.com/services/Tabc/Bdef/ghi"),
    ("x.txt", f'aw\u017f_token = "{_HEX40}"'),
    ("x.txt", f'AWS_SECRET_KEY="{_HEX40}"'),
    ("x.txt", "cl_apikey = " + "qwhzkdmtrplxcvbnasyegfuo"),
    ("x.txt", "cloudant_password: " + hashlib.sha256(b"c").hexdigest()),
    ("x.txt", "key: " + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2"),
    ("x.txt", "token = " + "a\u017f" * 22),
    ("x.txt", 'secret_access_key = "' + hashlib.sha384(b"x").hexdigest()[:48] + '"'),
    ("x.txt", "softlayer_api_key = " + "a1" * 32),
    ("x.txt", "https://api.softlayer.com/soap/v3.1/" + "b2" * 32),
    ("x.txt", "ftp://user:p\u00e4ss@host.example"),
    ("x.txt", 'x = "Zq8\\Lm2+Rt5/Wy7-Kp1_Hd4=Nc6Vb9Xj0Ss"'),
    ("x.txt", '"' + hashlib.sha256(b"y").hexdigest()[:50] + '"'),
    ("x.txt", "'" + "A1B2C3D4E5F6A7B8C9D0" + "'"),
    ("x.txt", "v = 'a1b2c3d4e'"),  # the shortest hex string with entropy > 3
    ("x.txt", 'v = "QwErTyUiOpAsDfGhJkLzXcV"'),  # the shortest base64 string with entropy > 4.5
    ("x.txt", "mc " + "a1b2c3d4" * 4 + "-us12"),
    ("x.txt", "tw SK" + "0a1b2c3d" * 4),
    ("x.txt", "//registry.npmjs.org/:_authToken=npm_q1w2E3r4T5y6"),
    ("x.txt", "-----BEGIN PGP PRIVATE KEY BLOCK-----"),
    ("x.txt", "-----BEGIN SSH2 ENCRYPTED PRIVATE KEY-----"),
    ("x.txt", "PuTTY-User-Key-File-2: ssh-rsa"),
    ("x.txt", "DefaultEndpointsProtocol=https;AccountKey=" + "aB3+" * 22),
    ("x.txt", "sk-proj-" + "a1B2" * 5 + "T3BlbkFJ" + "c3D4" * 5),
    ("x.txt", "pypi-AgENdGVzdC5weXBpLm9yZw" + "a1B2-_" * 12),
    ("x.txt", "sq0csp-" + "a1B2c3D4e5-" * 4),
    ("x.txt", "rk_live_" + "a1B2c3D4" * 3),
    ("x.txt", "GR1348941" + "a1B2c3D4e5" * 2),
    ("x.txt", "glcbt-ab_" + "a1B2c3D4e5" * 2),
    ("x.txt", "ASIA" + "A1B2C3D4E5F6G7H8"),
    ("x.txt", "A3TX" + "A1B2C3D4E5F6G7H8"),
    ("x.txt", '"integrity": "sha512-AKIAQ1W2E3R4T5Y6U7I8"'),  # an exempt SRI hash holding another finding
]


@pytest.mark.parametrize(("item", "line"), EDGE_CASES)
def test_oracle_agreement_on_edge_cases(item: str, line: str) -> None:
    data = f"ok\n{line}\nok\n".encode()
    expected = _oracle(item, data)
    assert expected, "detect-secrets flags this line: the case tests the prefilter"
    assert _scanner_findings(item, data) == expected
    assert S._prefilter().search(line.encode()) is not None


def test_prefilter_never_matches_across_a_newline() -> None:
    p = S._prefilter()
    for text in [b"password\n= 'abc'", b'"\n0123456789abcdef"', b"AKIA\nABCDEFGHIJKLMNOP", b"api_key \n: x"]:
        m = p.search(text)
        assert m is None or b"\n" not in text[m.start():m.end()]


# --- detectors and detect-secrets -------------------------------------------------------------------------------

def test_plugin_table_matches_installed_detect_secrets() -> None:
    """The prefilter was derived from these plugins: a detect-secrets upgrade that adds or renames one fails here."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    installed = {cls.__name__: t for t, cls in get_mapping_from_secret_type_to_class().items()}
    assert installed.pop("IPPublicDetector") == "Public IP (ipv4)"
    assert installed == S.PLUGINS
    assert tuple(sorted({*S.PLUGINS.values(), PEM})) == DETECTORS


def test_detect_secrets_logger_never_emits(caplog: pytest.LogCaptureFixture) -> None:
    """Even when an application turns detect-secrets' logging up, a scan emits nothing through it (it would log
    the values its filters drop)."""
    ds_log = logging.getLogger("detect-secrets")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    ds_log.addHandler(handler)
    try:
        Scanner().check_bytes("x.log", b"warmup password = 'x'\n")  # the first import happens here
        ds_log.disabled = False
        ds_log.setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG):
            data = b'password = "${DB_PASSWORD}"\npassword = "hunter2hunter2" == x\nid_secret = "abc$"\n'
            Scanner(WAIVE_ALL).check_bytes("x.py", data)
    finally:
        ds_log.removeHandler(handler)
    assert records == []
    assert [r for r in caplog.records if r.name.startswith("detect")] == []


def test_scanners_in_threads() -> None:
    secret = next(s for s in CORPUS if s.name == "GitHub token")
    clean = ("\n".join(EVIDENCE_EXAMPLES) + "\n").encode() * 50
    dirty = clean + secret.text.encode() + b"\n" + clean
    results: dict[int, object] = {}

    def work(i: int) -> None:
        try:
            results[i] = feed(Scanner(), f"t{i}.log", dirty if i % 2 else clean, odd_sizes)
        except SecretFound as exc:
            results[i] = exc.finding

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    line = line_of(dirty, len(clean))
    for i in range(6):
        assert results[i] == (Finding(f"t{i}.log", line, "GitHub Token") if i % 2 else [])


# --- the allow-list -----------------------------------------------------------------------------------------------

def write(tmp_path: Path, text: str, name: str = "allow.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_load_allow_list(tmp_path: Path) -> None:
    path = write(tmp_path, """
[[allow]]
item = "logs/*.log"
line = 12
detector = "Hex High Entropy String"
reason = "build ids"

[[allow]]
item = "fixtures/**"
reason = "test fixtures, fake keys"
""")
    rules = load_allow_list(path)
    assert rules == [AllowRule("logs/*.log", "build ids", 12, "Hex High Entropy String"),
                     AllowRule("fixtures/**", "test fixtures, fake keys")]
    assert rules[0].to_value() == {"item": "logs/*.log", "reason": "build ids", "line": 12,
                                   "detector": "Hex High Entropy String"}
    assert rules[1].to_value() == {"item": "fixtures/**", "reason": "test fixtures, fake keys"}


@pytest.mark.parametrize(("text", "expected"), [
    ("", "no [[allow]] entries"),
    ("allow = []", "no [[allow]] entries"),
    ("allow = 3", "'allow' must be an array of tables"),
    ("allow = [1, 2]", "'allow' must be an array of tables"),
    ("[[allow]]\nitem = 'a'\nreason = 'r'\n[other]\nx = 1", "unknown key 'other'"),
    ("[[allow]\nitem = 'a'", "not valid TOML"),
    ("[[allow]]\nitem = 'a'\nreason = 'r'\n[[allow]]\nitem = 'b'\nreason = 'r'\nlines = 3",
     "entry 2: unknown key 'lines'"),
    ("[[allow]]\nreason = 'r'", "entry 1: missing 'item'"),
    ("[[allow]]\nitem = 'a'", "entry 1: missing 'reason'"),
    ("[[allow]]\nitem = 'a'\nreason = ''", "entry 1: 'reason' must be a non-empty string"),
    ("[[allow]]\nitem = 'a'\nreason = '   '", "entry 1: 'reason' must be a non-empty string"),
    ("[[allow]]\nitem = ''\nreason = 'r'", "entry 1: 'item' must be a non-empty string"),
    ("[[allow]]\nitem = 3\nreason = 'r'", "entry 1: 'item' must be a string, not int"),
    ("[[allow]]\nitem = 'a'\nreason = 5", "entry 1: 'reason' must be a string, not int"),
    ("[[allow]]\nitem = 'a'\nreason = 'r'\nline = '12'", "entry 1: 'line' must be an integer, not str"),
    ("[[allow]]\nitem = 'a'\nreason = 'r'\nline = true", "entry 1: 'line' must be an integer, not bool"),
    ("[[allow]]\nitem = 'a'\nreason = 'r'\nline = 0", "entry 1: 'line' must be an integer >= 1, not 0"),
    ("[[allow]]\nitem = 'a'\nreason = 'r'\nline = -3", "entry 1: 'line' must be an integer >= 1, not -3"),
    ("[[allow]]\nitem = 'a'\nreason = 'r'\ndetector = 'Hex'", "entry 1: unknown detector 'Hex'"),
    ("[[allow]]\nitem = 'a'\nreason = 'r'\ndetector = 1", "entry 1: 'detector' must be a string, not int"),
])
def test_malformed_allow_list(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as e:
        load_allow_list(path)
    msg = str(e.value)
    assert e.value.exit_code == 2
    assert msg.startswith(f"allow-list {path}: ")
    assert expected in msg
    assert "\n" not in msg


def test_unreadable_allow_list(tmp_path: Path) -> None:
    for path, why in ((str(tmp_path / "missing.toml"), "no such file"), (str(tmp_path), "is a directory")):
        with pytest.raises(UsageError, match="^" + re.escape(f"allow-list {path}: {why}") + "$") as e:
            load_allow_list(path)
        assert "\n" not in str(e.value)
    p = tmp_path / "latin1.toml"
    p.write_bytes(b"[[allow]]\nitem = 'caf\xe9'\nreason = 'r'\n")
    with pytest.raises(UsageError, match="not valid UTF-8"):
        load_allow_list(str(p))


def test_allow_rule_checks_itself() -> None:
    with pytest.raises(UsageError, match="unknown detector"):
        AllowRule("*", "r", detector="Nope")
    with pytest.raises(UsageError, match="reason"):
        AllowRule("*", "")
    with pytest.raises(UsageError, match="line"):
        AllowRule("*", "r", line=0)
    with pytest.raises(TypeError):
        Scanner(["*"])  # type: ignore[list-item]


def test_rule_matching() -> None:
    f = Finding("logs/2026/app.log", 12, "Hex High Entropy String")
    assert AllowRule("logs/*.log", "r").matches(f)  # fnmatch: * crosses /
    assert AllowRule("logs/2026/app.log", "r", 12, "Hex High Entropy String").matches(f)
    assert not AllowRule("logs/*.txt", "r").matches(f)
    assert not AllowRule("Logs/*", "r").matches(f)  # case-sensitive
    assert not AllowRule("logs/*", "r", line=13).matches(f)
    assert not AllowRule("logs/*", "r", detector="Secret Keyword").matches(f)


def test_waived_findings_are_returned_and_unwaived_still_raise() -> None:
    stripe = next(s for s in CORPUS if s.name == "Stripe live key")
    github = next(s for s in CORPUS if s.name == "GitHub token")
    data = f"ok\n{stripe.text}\nok\n{github.text}\n".encode()
    by_line = AllowRule("billing/*.log", "test key from the sandbox", line=2)
    by_detector = AllowRule("billing/*", "ci token, revoked", detector="GitHub Token")
    waivers = Scanner([by_line, by_detector]).check_bytes("billing/2026.log", data)
    assert waivers == [Waiver(Finding("billing/2026.log", 2, "Stripe Access Key"), by_line),
                       Waiver(Finding("billing/2026.log", 4, "GitHub Token"), by_detector)]
    assert waivers[1].to_value() == {"item": "billing/2026.log", "line": 4, "detector": "GitHub Token",
                                     "rule": {"item": "billing/*", "reason": "ci token, revoked",
                                              "detector": "GitHub Token"}}
    # without the detector rule the GitHub token is refused; the waived Stripe key does not stop the scan
    with pytest.raises(SecretFound) as e:
        Scanner([by_line]).check_bytes("billing/2026.log", data)
    assert e.value.finding == Finding("billing/2026.log", 4, "GitHub Token")
    # a rule for another item waives nothing
    with pytest.raises(SecretFound) as e:
        Scanner([by_line, by_detector]).check_bytes("other/2026.log", data)
    assert e.value.finding.line == 2


def test_a_waiver_applies_per_finding() -> None:
    """An RSA key's header is found by two detectors; waiving one still refuses the other."""
    rsa = next(s for s in CORPUS if s.name == "RSA PEM key")
    data = rsa.text.encode() + b"\n"
    only_ds = AllowRule("*", "r", detector="Private Key")
    with pytest.raises(SecretFound) as e:
        Scanner([only_ds]).check_bytes("k.pem", data)
    assert e.value.finding == Finding("k.pem", 1, PEM)
    both = Scanner([only_ds, AllowRule("k.pem", "fixture", detector=PEM)]).check_bytes("k.pem", data)
    assert [(w.finding.detector, w.rule.reason) for w in both] == [(PEM, "fixture"), ("Private Key", "r")]


def test_secret_found_message_format() -> None:
    exc = SecretFound(Finding("logs/a.log", 7, "AWS Access Key"))
    assert str(exc) == ("item logs/a.log: line 7: secret detected (AWS Access Key); refused, nothing of it was "
                        "stored (a false positive can be waived with an allow-list entry)")
    assert exc.exit_code == 6
