"""Secret scanning: evidence holding a secret is refused (exit 6) before any byte of it is stored.

Three stages, cheapest first:

1. **Prefilter.** One RE2 pattern (:func:`_prefilter`) runs over the raw bytes. It is a *superset* of what every
   enabled detect-secrets plugin can report: any line detect-secrets would flag holds a prefilter match. RE2 is a
   DFA, linear in the input and releasing the GIL; almost all evidence bytes never get past this stage.
2. **Confirmation.** Each candidate line (split on ``\\n``; a very long line is cut into windows around its
   matches) is decoded as UTF-8 (``errors="replace"``) and scanned by detect-secrets' own line-based path
   (``detect_secrets.core.scan._process_line_based_plugins``, non-eager, with its heuristic filters), under its
   default settings minus the "Public IP (ipv4)" plugin. detect-secrets is imported on the first candidate only
   (~100 ms), its settings are process-global (so one lock serializes confirmation), and its logger -- meant to
   log, at INFO, the values its filters drop -- is disabled for good.
3. **Our rules.** A PEM private-key block header is a finding of its own ("PEM private key block": detect-secrets
   misses ``BEGIN ENCRYPTED PRIVATE KEY``); hex strings of a digest's length and SRI hashes are digests, not
   secrets (:func:`_is_digest`).

A finding names the item, the 1-based line and the detector, never the secret. An allow-list (TOML, see
:func:`load_allow_list`) waives false positives explicitly; the waived findings are returned for the caller to
record. The first finding no rule waives raises :class:`SecretFound`.

:class:`Scanner` is immutable and may be shared by threads; an :class:`ItemScan` belongs to one item and one thread.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import string
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, BinaryIO

from .errors import NotFound, Refused, UsageError
from .files import read_small_file

# --- detectors --------------------------------------------------------------------------------------------------

PEM_DETECTOR = "PEM private key block"
HEX_DETECTOR = "Hex High Entropy String"
BASE64_DETECTOR = "Base64 High Entropy String"

# The detect-secrets 1.5 plugins this module was written against, by class name, with the secret type each reports.
# The prefilter below covers exactly these; any other plugin a future detect-secrets brings is disabled (its
# findings could not be prefiltered soundly), and IPPublicDetector ("Public IP (ipv4)") is left out on purpose:
# an address is not a secret. tests/test_secrets.py checks this table against the installed detect-secrets.
PLUGINS: Mapping[str, str] = MappingProxyType({
    "AWSKeyDetector": "AWS Access Key",
    "ArtifactoryDetector": "Artifactory Credentials",
    "AzureStorageKeyDetector": "Azure Storage Account access key",
    "Base64HighEntropyString": BASE64_DETECTOR,
    "BasicAuthDetector": "Basic Auth Credentials",
    "CloudantDetector": "Cloudant Credentials",
    "DiscordBotTokenDetector": "Discord Bot Token",
    "GitHubTokenDetector": "GitHub Token",
    "GitLabTokenDetector": "GitLab Token",
    "HexHighEntropyString": HEX_DETECTOR,
    "IbmCloudIamDetector": "IBM Cloud IAM Key",
    "IbmCosHmacDetector": "IBM COS HMAC Credentials",
    "JwtTokenDetector": "JSON Web Token",
    "KeywordDetector": "Secret Keyword",
    "MailchimpDetector": "Mailchimp Access Key",
    "NpmDetector": "NPM tokens",
    "OpenAIDetector": "OpenAI Token",
    "PrivateKeyDetector": "Private Key",
    "PypiTokenDetector": "PyPI Token",
    "SendGridDetector": "SendGrid API Key",
    "SlackDetector": "Slack Token",
    "SoftlayerDetector": "SoftLayer Credentials",
    "SquareOAuthDetector": "Square OAuth Secret",
    "StripeDetector": "Stripe Access Key",
    "TelegramBotTokenDetector": "Telegram Bot Token",
    "TwilioKeyDetector": "Twilio API Key",
})

DETECTORS: tuple[str, ...] = tuple(sorted({*PLUGINS.values(), PEM_DETECTOR}))

# detect-secrets filters we switch off. ``is_invalid_file`` checks that the "filename" exists on disk (their own
# ``scan_line`` disables it too). ``is_line_allowlisted`` honours ``# pragma: allowlist secret`` comments inside the
# scanned text: evidence must not be able to waive its own secrets -- waivers are explicit and recorded.
_DISABLED_FILTERS = (
    "detect_secrets.filters.common.is_invalid_file",
    "detect_secrets.filters.allowlist.is_line_allowlisted",
)

PEM_PATTERN = r"-----BEGIN (RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP |SSH2 ENCRYPTED )?PRIVATE KEY( BLOCK)?-----"

# A hex string of one of these lengths is a digest (MD5/128-bit ids, SHA-1 and git, SHA-224, SHA-256 and BLAKE3,
# SHA-384, SHA-512), not a secret. A hex *secret* in a secret-named assignment is still the keyword plugin's.
DIGEST_HEX_LENGTHS = frozenset({32, 40, 56, 64, 96, 128})
SRI_PREFIXES = ("sha1-", "sha256-", "sha384-", "sha512-")
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")


def _is_digest(detector: str, value: str) -> bool:
    """Whether a high-entropy finding's value is a digest: hex of a digest length, or an SRI hash."""
    if detector == HEX_DETECTOR:
        return len(value) in DIGEST_HEX_LENGTHS and _HEX_CHARS.issuperset(value)
    if detector == BASE64_DETECTOR:
        return value.startswith(SRI_PREFIXES)
    return False


# --- findings, rules, waivers ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """A secret found: which item, which line (1-based), which detector. Never the secret itself."""

    item: str
    line: int
    detector: str


@dataclass(frozen=True)
class AllowRule:
    """Waives the findings in items matching the glob ``item`` (``fnmatch.fnmatchcase``; ``*`` also crosses
    ``/``), optionally only on ``line`` and only of ``detector``. ``reason`` is required: it is sealed with the
    waived findings."""

    item: str
    reason: str
    line: int | None = None
    detector: str | None = None

    def __post_init__(self) -> None:
        problem = _rule_problem(self.item, self.reason, self.line, self.detector)
        if problem:
            raise UsageError(f"allow rule {self.item!r}: {problem}")

    def matches(self, f: Finding) -> bool:
        return ((self.line is None or self.line == f.line)
                and (self.detector is None or self.detector == f.detector)
                and fnmatch.fnmatchcase(f.item, self.item))

    def to_value(self) -> dict[str, object]:
        v: dict[str, object] = {"item": self.item, "reason": self.reason}
        if self.line is not None:
            v["line"] = self.line
        if self.detector is not None:
            v["detector"] = self.detector
        return v


def _rule_problem(item: object, reason: object, line: object, detector: object) -> str | None:
    if not isinstance(item, str) or not item:
        return "'item' must be a non-empty string (a glob over item names)"
    if not isinstance(reason, str) or not reason.strip():
        return "'reason' must be a non-empty string"
    if line is not None and (type(line) is not int or line < 1):
        return f"'line' must be an integer >= 1, not {line!r}"
    if detector is not None and detector not in DETECTORS:
        return f"unknown detector {_one_line(repr(detector))} (known: {', '.join(DETECTORS)})"
    return None


@dataclass(frozen=True)
class Waiver:
    """A finding and the rule that waived it."""

    finding: Finding
    rule: AllowRule

    def to_value(self) -> dict[str, object]:
        return {"item": self.finding.item, "line": self.finding.line, "detector": self.finding.detector,
                "rule": self.rule.to_value()}


class SecretFound(Refused):
    """An item holds a secret no allow-list rule waives (exit 6). The message never holds the secret."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"item {finding.item}: line {finding.line}: secret detected ({finding.detector}); "
                         "refused, nothing of it was stored (a false positive can be waived with an allow-list "
                         "entry)")
        self.finding = finding


_RULE_KEYS = {"item": str, "reason": str, "line": int, "detector": str}


def load_allow_list(path: str) -> list[AllowRule]:
    """Read a TOML allow-list::

        [[allow]]
        item = "logs/*.log"                  # required: glob over item names
        reason = "build ids, not secrets"    # required
        line = 12                            # optional
        detector = "Hex High Entropy String" # optional: one of DETECTORS

    Anything wrong -- unreadable, not TOML, an unknown key, a wrong type, an empty reason, an unknown detector,
    ``line < 1``, no entries -- is a :class:`UsageError` (exit 2) naming the file and the entry.
    """
    import tomllib  # ~7 ms: only when an allow-list is given

    where = f"allow-list {path}"
    try:
        raw = read_small_file(path, "allow-list")
    except NotFound as exc:
        raise UsageError(str(exc)) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{where}: not valid UTF-8") from None
    except RecursionError:
        raise UsageError(f"{where}: not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML: {_one_line(str(exc))}") from None
    extra = sorted(k for k in doc if k != "allow")
    if extra:
        raise UsageError(f"{where}: unknown key {extra[0]!r} (expected only [[allow]] entries)")
    entries = doc.get("allow")
    if entries is None or entries == []:
        raise UsageError(f"{where}: no [[allow]] entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"{where}: 'allow' must be an array of tables ([[allow]] entries)")
    return [_rule(e, f"{where}: entry {n}") for n, e in enumerate(entries, 1)]


def _rule(entry: dict[str, Any], where: str) -> AllowRule:
    for key in entry:
        if key not in _RULE_KEYS:
            raise UsageError(f"{where}: unknown key {_one_line(repr(key))} "
                             f"(expected {', '.join(repr(k) for k in _RULE_KEYS)})")
    for key in ("item", "reason"):
        if key not in entry:
            raise UsageError(f"{where}: missing {key!r}")
    for key, typ in _RULE_KEYS.items():
        if key in entry and (type(entry[key]) is not typ):
            raise UsageError(f"{where}: {key!r} must be {'an integer' if typ is int else 'a string'}, "
                             f"not {type(entry[key]).__name__}")
    item, reason, line, detector = entry["item"], entry["reason"], entry.get("line"), entry.get("detector")
    problem = _rule_problem(item, reason, line, detector)
    if problem:
        raise UsageError(f"{where}: {problem}")
    return AllowRule(item, reason, line, detector)


def _one_line(s: str) -> str:
    return " ".join(s.split()) if ("\n" in s or "\r" in s) else s


# --- the prefilter --------------------------------------------------------------------------------------------
#
# RE2 source, matched over the raw bytes in Latin-1 mode (one byte = one character, so \x80-\xff are bytes). The
# detect-secrets plugins run Python ``re`` over the *decoded* line, so three Unicode details matter for soundness:
#
# * re.IGNORECASE also folds U+0130/U+0131 to i, U+212A (Kelvin sign) to k and U+017F (long s) to s, and makes a
#   class like [a-z] match those four too (checked exhaustively over all code points): _ci() and _CI_EXTRA add
#   their UTF-8 bytes wherever a case-insensitive plugin pattern has an i, k or s.
# * \d is any Unicode decimal digit (1-4 UTF-8 bytes, all >= 0x80 when not ASCII); \s and \w are Unicode too.
# * Bytes that are not UTF-8 decode to U+FFFD, which no plugin pattern needs anywhere it is required.
#
# We do not lower-case the data: case-sensitive plugins (AWS key ids, Twilio's "AC"+lowercase, JWT's "eyJ", ...)
# stay case-sensitive here, which keeps lower-case hex digests from looking like Twilio SIDs, and saves a pass.
# Counted repetitions start after a delimiter or a literal prefix, never at every byte of a common class: RE2's DFA
# states multiply with counters that are live at once, and its speed drops with their number (Discord's and
# Mailchimp's leading runs are left out for that reason). A few candidate lines more cost far less than that.

_FOLD = {"i": r"\xc4[\xb0\xb1]", "k": r"\xe2\x84\xaa", "s": r"\xc5\xbf"}
_CI_EXTRA = "|".join(_FOLD.values())  # what a case-insensitive [a-z] also matches
_META = set(r".^$*+?()[]{}|\-/")


def _ci(text: str) -> str:
    """RE2 source matching ``text`` the way Python's ``re.IGNORECASE`` matches it in a decoded str."""
    out = []
    for ch in text:
        low = ch.lower()
        if ch.isascii() and ch.isalpha():
            alt = f"[{low}{ch.upper()}]"
            out.append(f"(?:{alt}|{_FOLD[low]})" if low in _FOLD else alt)
        else:
            out.append("\\" + ch if ch in _META else ch)
    return "".join(out)


def _ci_words(*words: str) -> str:
    return "(?:" + "|".join(_ci(w) for w in words) + ")"


_HEX = "0-9A-Fa-f"
_B64 = r"A-Za-z0-9+/\\_=\-"  # detect-secrets' base64 charset: letters, digits, + / \ - _ =  (yes, a backslash)
_B64_NOT_HEX = r"G-Zg-z+/\\_=\-"


def _hex_not_digest() -> str:
    """[0-9A-Fa-f]{n} for every n >= 9 except the digest lengths."""
    alts, lo = [], 9
    for n in sorted(DIGEST_HEX_LENGTHS):
        if lo < n:
            alts.append(f"[{_HEX}]{{{lo},{n - 1}}}")
        lo = n + 1
    return "|".join([*alts, f"[{_HEX}]{{{lo},}}"])


_UNI = r"\x80-\xff"  # the bytes of any non-ASCII character (a Unicode digit, space, letter)
_B64_CHARS = string.ascii_letters + string.digits + "+/\\_=-"


def _class(chars: str) -> str:
    return "[" + "".join("\\" + c if c in "\\]-^[" else c for c in sorted(set(chars))) + "]"


def _not_sri() -> str:
    """A base64-charset string of >= 23 characters whose first is not a hex digit and which does not start with an
    SRI prefix (sha1- sha256- sha384- sha512-): it leaves the prefixes' trie after m characters, then has
    22 - m more."""
    alts = []
    prefixes = [p for sri in SRI_PREFIXES for p in (sri[:m] for m in range(len(sri)))]
    for p in sorted(set(prefixes)):
        allowed = {sri[len(p)] for sri in SRI_PREFIXES if sri.startswith(p)}
        first = set(_B64_CHARS) - set("0123456789abcdefABCDEF") if not p else set(_B64_CHARS)
        alts.append(f"{re.escape(p)}{_class(''.join(first - allowed))}[{_B64}]{{{22 - len(p)},}}")
    return "(?:" + "|".join(alts) + ")"

# The keyword plugin's regexes, after ``<word>\w*``, need one of: closing quotes/brackets, spaces, then ':' '=' or
# '!' (the colon, equals, arrow, comparison and C-array forms); '(' or '.assign(' (C++); or, further on, a quote
# closed and followed by ';' (the "quotes and semicolon" form). One form has the word *after* '==' or '!='.
_W = r"[A-Za-z0-9_\x80-\xff]*"  # \w* (Unicode word characters are non-ASCII bytes)
_SP = r"[\t\x0b-\r\x1c-\x20\x80-\xff]*"  # \s* (Unicode spaces too), but never \n: lines are split on it
_KEYWORDS = (_ci_words("api", "auth", "service", "account", "db", "database", "priv", "private", "client")
             + "_?" + _ci("key") + "|" + _ci_words("db", "database", "key") + "_?" + _ci("pass")
             + "|" + _ci("pass") + _ci_words("word", "wd") + "|" + _ci_words("pwd", "secret", "contrase"))
_KEYWORD_AFTER = (_W + r"""(?:[\]\['"0-9]*""" + _SP + r"""[:=!(]|[^\n]{1,4}assign\(|[^\n]*['"`];)""")

_GROUPS: tuple[tuple[str, str], ...] = (
    # KeywordDetector (every file type's regex set): one DENYLIST word, case-insensitive (two regexes are
    # case-sensitive: a subset), 'contraseña'/'contrasena' sharing 'contrase'; then what follows it (above).
    ("keyword", f"(?:{_KEYWORDS}){_KEYWORD_AFTER}|[!=][!=][^\\n]*(?:{_KEYWORDS})"),
    # build_assignment_regex plugins, case-insensitive: Cloudant (key|pwd|pw|password|pass|token, value 64 hex or
    # 24 letters), IBM Cloud IAM (key|pwd|password|pass|token, 44 of [A-Za-z0-9_-]; its prefix is optional, so the
    # keyword is all there is to anchor on), IBM COS HMAC (secret..key, 48 hex), SoftLayer (64 alnum). Every value
    # starts with 24 characters of a case-insensitive [A-Za-z0-9_-]; the assignment is copied from the plugin.
    ("assignment", _ci_words("key", "pw", "pwd", "pass", "password", "token")
     + r"""["']?\]? *(?:=|:|:=|=>| +|::) *["']?(?:[A-Za-z0-9_\-]|""" + _CI_EXTRA + "){24}"),
    # AWSKeyDetector: key ids (case-sensitive, exact); secret keys: aws.{0,20}?<keyword>.{0,20}?['"]<40>['"],
    # case-insensitive. A 40-char value that is not all hex is a base64 candidate below anyway, but an all-hex one
    # has a digest's length, so it needs this branch ([^\n]* instead of the bounded gaps: no DFA counters).
    ("aws", "(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}|" + _ci("aws")
     + r"""[^\n]*["'](?:[0-9A-Za-z/+]|""" + _CI_EXTRA + "){40}[\"']"),
    # ArtifactoryDetector (case-sensitive): AKC + 10 alnum; AP + one \d or A-F (a Unicode digit is 2-4 bytes) + 8;
    # either after \s = : " or the line's start and before \s " or its end (\s: Unicode spaces are non-ASCII bytes).
    # RE2 sees the text around pos/endpos, so ^ and $ hold exactly at line ends, as for the plugin.
    ("artifactory", r"""(?m:^|[\t\x0b-\r\x1c-\x20"=:\x80-\xff])(?:AKC[A-Za-z0-9]{10}|AP(?:[0-9A-F]|["""
     + _UNI + r"""]{2,4})[A-Za-z0-9]{8})[A-Za-z0-9]*(?m:[\t\x0b-\r\x1c-\x20"\x80-\xff]|$)"""),
    ("azure", "AccountKey="),
    # BasicAuthDetector: ://user:password@ with neither holding a reserved character or whitespace. RE2's \s is
    # ASCII-only, a subset of Python's, so this class allows more. Also covers Cloudant's credential URLs.
    ("basic-auth", r"://[^:/?#\[\]@!$&'()*+,;=\s]+:[^:/?#\[\]@!$&'()*+,;=\s]+@"),
    # DiscordBotTokenDetector: [MNO] + 23-25 of [A-Za-z\d_-] . 6 of them . 27 of them (\d: Unicode digits, so the
    # 6 may be up to 24 bytes). The first part is left out: counting it from every byte would blow up the DFA.
    ("discord", f"\\.[A-Za-z0-9_{_UNI}\\-]{{6,24}}\\.[A-Za-z0-9_{_UNI}\\-]{{27}}"),
    ("github", "gh[pousr]_"),
    ("gitlab", "gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-|GR1348941"),
    # JwtTokenDetector: eyJ + [A-Za-z0-9-_=]+ + '.' + ... (that class is letters, digits, - _ =).
    ("jwt", r"eyJ[A-Za-z0-9_=\-]+\.[A-Za-z0-9_=\-]"),
    # MailchimpDetector: [0-9a-z]{32}-us[0-9]{1,2}; the 32 are not counted (DFA size), one is enough here.
    ("mailchimp", "[0-9a-z]-us[0-9]"),
    ("npm", "/:_authToken="),
    ("openai", "T3BlbkFJ"),
    # PrivateKeyDetector's BEGIN ... PRIVATE KEY headers and our PEM detector's; PuTTY key files.
    ("private-key", "BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY|PuTTY-User-Key-File-2"),
    ("pypi", "pypi-AgE"),
    ("sendgrid", r"SG\.[A-Za-z0-9_\-]{22}\."),
    # SlackDetector, case-insensitive: xox[abposr]- tokens and hooks.slack.com/services/ webhooks.
    ("slack", _ci("xox") + "(?:[abporsABPORS]|" + _FOLD["s"] + ")-|" + _ci("hooks.slack.com/services/")),
    ("softlayer-url", _ci("/soap/v3")),
    ("square", "sq0csp-"),
    ("stripe", "[rs]k_live_"),
    # TelegramBotTokenDetector: \d{8,10}:[0-9A-Za-z_-]{35}. \d is any Unicode digit: either the 8 are ASCII, or
    # the ASCII digits just before ':' (fewer than 8) follow the last byte of a non-ASCII one.
    ("telegram", f"(?:[0-9]{{8}}|[{_UNI}][0-9]{{0,7}}):[0-9A-Za-z_\\-]{{35}}"),
    ("twilio", "(?:AC|SK)[a-z0-9]{32}"),
    # HexHighEntropyString: (['"])([0-9a-fA-F]+)\1 with entropy > 3.0, which needs >= 9 characters (entropy is at
    # most log2(length)). Lengths 32/40/56/64/96/128 are digests and exempt, so they are no candidates here.
    ("hex", f"[\"'](?:{_hex_not_digest()})[\"']"),
    # Base64HighEntropyString: (['"])([base64 charset]+)\1 with entropy > 4.5: >= 23 characters, and at least one
    # of them not a hex digit (22 symbols give at most log2(22) = 4.46). Spelt out by the position k of the first
    # non-hex character, so an all-hex digest in quotes is no candidate; and an SRI hash (sha512-...) is none
    # either (_not_sri: where k = 0, the string must leave the SRI prefixes' trie).
    ("base64", "[\"'](?:" + _not_sri() + "|" + "|".join(f"[{_HEX}]{{{k}}}[{_B64_NOT_HEX}][{_B64}]{{{22 - k},}}"
                                                       for k in range(1, 22))
     + f"|[{_HEX}]{{22,}}[{_B64_NOT_HEX}][{_B64}]*)[\"']"),
)

_prefilter_lock = threading.Lock()
_prefilter_re: Any = None


def _prefilter_source() -> bytes:
    return "|".join(f"(?:{src})" for _, src in _GROUPS).encode("ascii")


def _prefilter() -> Any:
    """The compiled prefilter (RE2, Latin-1, no captures), compiled once on first use."""
    global _prefilter_re
    if _prefilter_re is None:
        with _prefilter_lock:
            if _prefilter_re is None:
                import re2

                opts = re2.Options()
                opts.encoding = re2.Options.Encoding.LATIN1
                opts.never_capture = True
                opts.never_nl = True  # belt and braces: no pattern is meant to match a newline
                opts.max_mem = 256 << 20  # room for the DFA's state cache: no fallback to the slow NFA
                opts.log_errors = False
                _prefilter_re = re2.compile(_prefilter_source(), opts)
    return _prefilter_re


# --- confirmation by detect-secrets -----------------------------------------------------------------------------

_ds_lock = threading.Lock()  # detect-secrets' settings are process-global
_ds: dict[str, Any] = {}


def _detect_secrets() -> dict[str, Any]:
    """Import detect-secrets (~100 ms, so only once a candidate line shows up) and silence its logger for good:
    its filters log, at INFO, what they drop. Its import also turns on ``logging.captureWarnings``, process-wide;
    that is undone unless it was on already."""
    if not _ds:
        with _ds_lock:
            if not _ds:
                _silence()
                shown = warnings.showwarning
                from detect_secrets.core import scan
                from detect_secrets.settings import default_settings

                if warnings.showwarning is not shown:
                    logging.captureWarnings(False)
                _silence()
                _ds["default_settings"] = default_settings
                _ds["process"] = scan._process_line_based_plugins
                _ds["pem"] = re.compile(PEM_PATTERN)
    return _ds


def _silence() -> None:
    log = logging.getLogger("detect-secrets")  # detect_secrets/core/log.py
    log.disabled = True
    log.setLevel(logging.CRITICAL + 1)
    log.propagate = False


def _ds_filename(item: str) -> str:
    """The file name detect-secrets sees. Its keyword plugin picks its rules by extension (YAML, INI, TOML, ...
    accept unquoted values; unknown extensions need quotes). A dotenv file is KEY=value: scan it as config."""
    base = item.rsplit("/", 1)[-1]
    if base == ".env" or base.startswith(".env.") or base.endswith(".env"):
        return item + ".cfg"
    return item


def _confirm(item: str, lines: Sequence[tuple[int, bytes]]) -> list[tuple[int, str]]:
    """The (line, detector) findings on candidate lines, in line order, each detector once per line."""
    ds = _detect_secrets()
    filename = _ds_filename(item)
    process: Callable[..., Iterator[Any]] = ds["process"]
    pem: re.Pattern[str] = ds["pem"]
    out: list[tuple[int, str]] = []
    with _ds_lock, ds["default_settings"]() as settings:
        settings.disable_plugins(*(name for name in list(settings.plugins) if name not in PLUGINS))
        settings.disable_filters(*_DISABLED_FILTERS)
        _silence()
        for lineno, raw in lines:
            text = raw.decode("utf-8", "replace")
            found = {s.type for s in process(lines=[(1, text)], filename=filename)
                     if not _is_digest(s.type, s.secret_value)}
            if pem.search(text):
                found.add(PEM_DETECTOR)
            out.extend((lineno, d) for d in sorted(found))
    out.sort()  # windows of one long line may come in any order; keep (line, detector) order
    return out


# --- scanning ---------------------------------------------------------------------------------------------------

CHUNK = 8 << 20  # check_file's read size
MAX_LINE = 1 << 20  # a line longer than this is scanned in pieces ...
OVERLAP = 8 << 10  # ... that overlap by this much, so a match shorter than it is never cut in two
WINDOW = 4 << 10  # context kept on each side of a match in a long line
MAX_WINDOW = 64 << 10  # a line up to this long is confirmed whole (exactly as detect-secrets sees it)
LONG_LINE = 4 * CHUNK  # a longer line sends a parallel scan to the sequential one


class ItemScan:
    """Incremental scan of one item: :meth:`update` with chunks of any size, then :meth:`finish`.

    An incomplete last line is carried to the next chunk; a line longer than :data:`MAX_LINE` is scanned in pieces
    overlapping by :data:`OVERLAP`, so memory stays bounded whatever the input. Line numbers count ``\\n``.
    """

    def __init__(self, item: str, rules: Sequence[AllowRule]) -> None:
        self.item = item
        self._rules = tuple(r for r in rules if fnmatch.fnmatchcase(item, r.item))
        self._carry = bytearray()
        self._line = 1  # the line number of the carry's first byte
        self._waivers: dict[tuple[int, str], Waiver] = {}
        self._failed: SecretFound | None = None
        self._done = False

    def update(self, chunk: bytes) -> None:
        """Scan the complete lines ``chunk`` ends; raises :class:`SecretFound` on the first un-waived finding."""
        self._check_open()
        n = len(chunk)
        if not n:
            return
        pos = 0
        if self._carry:
            nl = chunk.find(b"\n")
            if nl < 0:
                self._carry += chunk
                self._drain_long()
                return
            self._carry += chunk[:nl + 1]
            self._drain_long()
            line = bytes(self._carry)
            self._carry.clear()
            self._scan(line, 0, len(line))
            pos = nl + 1
        last = chunk.rfind(b"\n", pos)
        if last >= 0:
            self._scan(chunk, pos, last + 1)
            pos = last + 1
        if pos < n:
            self._carry += chunk[pos:] if pos else chunk
            self._drain_long()

    def finish(self) -> list[Waiver]:
        """Scan the last line; the waived findings in (line, detector) order, or :class:`SecretFound`."""
        self._check_open()
        if self._carry:
            rest = bytes(self._carry)
            self._carry.clear()
            self._scan(rest, 0, len(rest))
        self._done = True
        return [self._waivers[k] for k in sorted(self._waivers)]

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._done:
            raise ValueError(f"item {self.item}: scan already finished")

    def _drain_long(self) -> None:
        """Scan the front of an over-long carried line in MAX_LINE pieces, keeping OVERLAP bytes of each."""
        while len(self._carry) > MAX_LINE:
            piece = bytes(self._carry[:MAX_LINE])  # holds no newline: the line number does not move
            self._scan(piece, 0, len(piece))
            del self._carry[:MAX_LINE - OVERLAP]

    def _scan(self, buf: bytes, start: int, end: int) -> None:
        """Scan ``buf[start:end]``, which starts the line numbered ``self._line``; advance past its newlines."""
        first = self._line
        self._line += buf.count(b"\n", start, end)
        candidates = _candidates(buf, start, end, first)
        if candidates:
            self._judge(_confirm(self.item, candidates))

    def _judge(self, found: list[tuple[int, str]]) -> None:
        for line, detector in found:
            if (line, detector) in self._waivers:
                continue
            finding = Finding(self.item, line, detector)
            rule = next((r for r in self._rules if r.matches(finding)), None)
            if rule is None:
                self._failed = SecretFound(finding)
                raise self._failed
            self._waivers[(line, detector)] = Waiver(finding, rule)


def _candidates(buf: bytes, start: int, end: int, first: int) -> list[tuple[int, bytes]]:
    """The lines (or windows of long lines) of ``buf[start:end]`` holding a prefilter match, with line numbers."""
    pat = _prefilter()
    out: list[tuple[int, bytes]] = []
    lineno, counted = first, start
    pos = start
    while pos < end:
        m = pat.search(buf, pos, end)
        if m is None:
            break
        s, e = m.span()
        ls = buf.rfind(b"\n", start, s) + 1 or start
        le = buf.find(b"\n", s, end)  # no pattern matches a newline: s..e is on this line
        if le < 0:
            le = end
        lineno += buf.count(b"\n", counted, ls)
        counted = ls
        if le - ls <= MAX_WINDOW:
            out.append((lineno, buf[ls:le]))
        else:
            out.extend((lineno, buf[a:b]) for a, b in _windows(pat, buf, ls, le, s, e))
        pos = le + 1
    return out


def candidate_ranges(buf: bytes | bytearray, start: int, end: int) -> tuple[list[tuple[int, int]], int]:
    """A prefilter thread's work on ``buf[start:end]`` (whole lines): the (start, end) ranges of the lines the
    prefilter matches, end including the newline -- the only lines that can hold a finding -- and the number of
    newlines in the range (for the line numbers of the pieces after it)."""
    pat = _prefilter()
    out: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        m = pat.search(buf, pos, end)
        if m is None:
            break
        ls = buf.rfind(b"\n", start, m.start()) + 1 or start
        le = buf.find(b"\n", m.end(), end) + 1 or end
        out.append((ls, le))
        pos = le
    return out, buf.count(b"\n", start, end)


def _windows(pat: Any, buf: bytes, ls: int, le: int, s: int, e: int) -> Iterator[tuple[int, int]]:
    """Windows of a long line ``buf[ls:le]`` around its matches (the first is ``s..e``): each match with WINDOW
    bytes either side, neighbours merged while the window stays within MAX_WINDOW (a single longer match is kept
    whole)."""
    a, b = max(ls, s - WINDOW), min(le, e + WINDOW)
    pos = e if e > s else e + 1
    while pos < le:
        m = pat.search(buf, pos, le)
        if m is None:
            break
        s, e = m.span()
        wa, wb = max(ls, s - WINDOW), min(le, e + WINDOW)
        if wa <= b and wb - a <= MAX_WINDOW:
            b = max(b, wb)
        else:
            yield a, b
            a, b = wa, wb
        pos = e if e > s else e + 1
    yield a, b


class Scanner:
    """Scans items for secrets, waiving findings that ``allow`` rules match. Immutable; share it freely."""

    def __init__(self, allow: Sequence[AllowRule] = ()) -> None:
        self.allow = tuple(allow)
        for r in self.allow:
            if not isinstance(r, AllowRule):
                raise TypeError(f"allow rules must be AllowRule, not {type(r).__name__}")

    def stream(self, item: str) -> ItemScan:
        return ItemScan(item, self.allow)

    def check_lines(self, item: str, data: bytes, first_line: int) -> list[Waiver]:
        """:meth:`check_bytes` for whole lines of a larger item that start at line ``first_line``: findings carry
        the item's own line numbers, so the allow-list applies as it would to the whole item."""
        scan = self.stream(item)
        scan._line = first_line
        scan.update(data)
        return scan.finish()

    def scan_parallel(self, item: str, f: BinaryIO, hasher: Any, threads: int) -> tuple[list[Waiver], int] | None:
        """Scan a large file from its current position on ``threads`` prefilter threads (RE2 releases the GIL),
        feeding every byte read to ``hasher``: the caller's digest of exactly the bytes scanned. Returns the
        waivers and the number of bytes read; raises :class:`SecretFound`; returns None when a line is longer
        than LONG_LINE (the caller then runs the sequential scan, :meth:`stream`).

        Chunks are read into a few reused buffers and prefiltered where they lie, between their first and last
        newline; the line that spans two chunks is prefiltered on its own. Nothing is copied but that line, and
        every buffer is reused once its chunk is settled. Pieces are settled in file order: candidate lines are
        confirmed with the item's own line numbers, so the allow-list applies as it does to :meth:`check_bytes`."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        free: list[bytearray] = []
        pending: deque[tuple[bytearray | None, bytes | bytearray, int, Any]] = deque()
        waivers: list[Waiver] = []
        line = 1  # the line number of the first piece not settled yet
        carry = b""  # the start of a line that goes on in the next chunk
        total = 0
        too_long = False

        def settle() -> None:
            nonlocal line
            buf, data, start, fut = pending.popleft()
            ranges, newlines = fut.result()
            at, counted = line, start
            for s, e in ranges:
                at += data.count(b"\n", counted, s)
                counted = s
                waivers.extend(self.check_lines(item, bytes(data[s:e]), at))
            line += newlines
            if buf is not None:
                free.append(buf)

        with ThreadPoolExecutor(threads, thread_name_prefix="ledger-scan") as pool:
            def submit(buf: bytearray | None, data: bytes | bytearray, start: int, end: int) -> None:
                pending.append((buf, data, start, pool.submit(candidate_ranges, data, start, end)))

            while True:
                buf = free.pop() if free else bytearray(CHUNK)
                n = f.readinto(buf)  # type: ignore[attr-defined]
                if not n:
                    break
                view = memoryview(buf)[:n]
                hasher.update(view)
                total += n
                if too_long:  # only hashing to the end now, for the caller's digest
                    free.append(buf)
                    continue
                first = buf.find(b"\n", 0, n)
                if len(carry) + (n if first < 0 else first) > LONG_LINE:  # newline not counted
                    free.append(buf)
                    too_long, carry = True, b""
                    continue
                if first < 0:
                    free.append(buf)
                    carry += view
                    continue
                last = buf.rfind(b"\n", 0, n)
                head = carry + view[:first + 1]
                carry = bytes(view[last + 1:])
                submit(None, head, 0, len(head))
                if last > first:
                    submit(buf, buf, first + 1, last + 1)
                else:
                    free.append(buf)
                while len(pending) > 2 * threads:  # bounded memory: settle the oldest pieces as we go
                    settle()
            if too_long:
                return None
            if carry:
                submit(None, carry, 0, len(carry))
            while pending:
                settle()
        return waivers, total

    def clean(self, data: bytes) -> bool:
        """True when no line of ``data`` can hold a finding: the prefilter, a superset of every detector, matches
        nothing. Its patterns never span a newline and anchor on line starts (``(?m:^)``), so many small items
        joined by newlines are judged in one search, as each would be alone."""
        return bool(_prefilter().search(data) is None)

    def check_bytes(self, item: str, data: bytes) -> list[Waiver]:
        """The waived findings of ``data``; raises :class:`SecretFound` on an un-waived one."""
        if len(data) <= CHUNK and _prefilter().search(data) is None:
            return []  # the common case, no copy and no state
        scan = self.stream(item)
        view = memoryview(data)
        for off in range(0, len(data), CHUNK):
            scan.update(bytes(view[off:off + CHUNK]) if len(data) > CHUNK else data)
        return scan.finish()

    def check_file(self, item: str, f: BinaryIO) -> list[Waiver]:
        """Scan a binary file object from its current position to its end, in CHUNK reads."""
        scan = self.stream(item)
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            scan.update(chunk)
        return scan.finish()


__all__ = ["DETECTORS", "AllowRule", "Finding", "ItemScan", "Scanner", "SecretFound", "Waiver", "load_allow_list"]
