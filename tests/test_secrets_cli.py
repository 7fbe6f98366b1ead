"""Secrets through the real CLI: every secret type of the corpus is refused before a byte of it is stored -- by
``add`` (alone in a file, and among good files in a directory) and by ``record`` -- and afterwards no file anywhere in
the store holds the secret; a waived false positive is stored, sealed into the commit and shown to the auditor.

The corpus and its secrets come from tests/test_secrets.py (generated at test time: PEM keys are real keys).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import Cli, assert_error, durable, snapshot, write
from test_secrets import CORPUS, Secret

GOOD_LINES = "2026-11-26T01:02:03Z INFO consumer committed offset 1234 for orders[3]\nrows=150 status=ok\n"


@pytest.fixture
def cli(cli: Cli) -> Cli:
    """The shared store and key (tests/conftest.py), with run r1 opened."""
    c = cli
    c.ok("record", "r1", "--kind", "summary", '{"ingested": 1}')  # the run exists; refusals must add nothing
    return c


def every_file_bytes(root: Path) -> bytes:
    """Every file under the store, temporary ones included, concatenated: where a secret must never be."""
    return b"\x00".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def assert_nowhere(root: Path, secret: Secret) -> None:
    blob = every_file_bytes(root)
    value = secret.value.encode()
    assert value not in blob, f"{secret.name}: the secret's bytes are in the store"
    if "\n" not in secret.value:
        # the line around it (minus its secret) may be anywhere else, but not the line with the secret
        line = secret.text.splitlines()[secret.line - 1].encode()
        assert line not in blob


def assert_names_not_echoes(line: str, secret: Secret, item: str) -> None:
    assert f"item {item}: line " in line and "secret detected (" in line, line
    assert any(d in line for d in secret.detectors), (secret.name, line)
    v = secret.value
    assert not any(v[i:i + 8] in line for i in range(max(1, len(v) - 7))), f"{secret.name}: echoed in {line!r}"


@pytest.mark.parametrize("secret", CORPUS, ids=[s.name for s in CORPUS])
def test_each_secret_type_is_refused_by_add_and_stored_nowhere(cli: Cli, tmp_path: Path, secret: Secret) -> None:
    d = tmp_path / "out"
    write(d / "good.log", GOOD_LINES)
    item = "leaky/" + secret.item
    write(d / item, GOOD_LINES + secret.text + "\n" + GOOD_LINES)
    before = durable(snapshot(cli.store))
    # the file alone, then the whole directory: the call is refused as a whole, the good file is not added either
    alone = assert_error(cli("add", "r1", d / item, "--as", item), 6)
    assert_names_not_echoes(alone, secret, item)
    assert f"line {GOOD_LINES.count(chr(10)) + secret.line}:" in alone, alone
    whole = assert_error(cli("add", "r1", d), 6)
    assert_names_not_echoes(whole, secret, item)
    assert durable(snapshot(cli.store)) == before, "a refused add left something durable behind"
    assert [i["name"] for i in cli.json("ls", "r1")["items"]] == ["summary/summary.json"]
    assert_nowhere(cli.store, secret)


# Token-shaped secrets (one line, found by their own pattern). Keyword findings depend on the file type's syntax
# (the keyword plugin reads YAML, env files and code differently), so a JSON record of them has its own test below.
TOKENS = [s for s in CORPUS if "\n" not in s.text and "Secret Keyword" not in s.detectors]


@pytest.mark.parametrize("secret", TOKENS, ids=[s.name for s in TOKENS])
def test_each_token_type_is_refused_by_record(cli: Cli, secret: Secret) -> None:
    assert len(TOKENS) >= 10
    before = durable(snapshot(cli.store))
    doc = json.dumps({"note": secret.text})
    line = assert_error(cli("record", "r1", "--kind", "json", "--name", "notes/n.json", doc), 6)
    assert_names_not_echoes(line, secret, "notes/n.json")
    assert durable(snapshot(cli.store)) == before
    assert_nowhere(cli.store, secret)


def test_record_refuses_a_password_field(cli: Cli) -> None:
    secret = "Zq8rT2mK9vLx4Np7Ws1"
    line = assert_error(cli("record", "r1", "--kind", "json", f'{{"user": "etl", "password": "{secret}"}}'), 6)
    assert "secret detected (Secret Keyword)" in line and secret[:8] not in line, line
    assert secret.encode() not in every_file_bytes(cli.store)


def test_waived_finding_is_stored_sealed_and_shown(cli: Cli, tmp_path: Path) -> None:
    """A false positive waived by the allow-list: the add succeeds, the commit records the waiver (item, line,
    detector, the rule and its reason), `show` prints it and `verify` counts it."""
    token = "ghp_" + "Q7x" * 12  # a GitHub-token-shaped fixture string the operator vouches for
    write(tmp_path / "fixtures.txt", f"fixture tokens for the unit tests\n{token}\n")
    assert_error(cli("add", "r1", tmp_path / "fixtures.txt"), 6)
    allow = write(tmp_path / "allow.toml", '[[allow]]\nitem = "fixtures*"\ndetector = "GitHub Token"\n'
                                           'reason = "test fixture, not a credential"\n')
    j = cli.json("add", "r1", tmp_path / "fixtures.txt", "--allow-secrets", allow)
    assert [a["name"] for a in j["added"]] == ["fixtures.txt"]
    seal = cli.json("seal", "r1", "--key", cli.key)
    assert seal["waivers"] == [{"item": "fixtures.txt", "line": 2, "detector": "GitHub Token",
                                "rule": {"item": "fixtures*", "detector": "GitHub Token",
                                         "reason": "test fixture, not a credential"}}], seal
    shown = cli.ok("show", "r1").out
    assert "waived  fixtures.txt:2 GitHub Token (test fixture, not a credential)" in shown, shown
    v = cli.json("verify", "r1", "--trust", cli.pub)
    crit = next(c for c in v["checks"] if c["name"] == "criteria")
    assert crit["ok"] and "1 waived secret finding(s)" in crit["detail"], crit


def test_allow_list_errors_are_usage_errors(cli: Cli, tmp_path: Path) -> None:
    f = write(tmp_path / "x.txt", "hello\n")
    bad = write(tmp_path / "allow.toml", '[[allow]]\nitem = "*"\n')  # no reason
    line = assert_error(cli("add", "r1", f, "--allow-secrets", bad), 2)
    assert "allow.toml" in line, line
    assert_error(cli("add", "r1", f, "--allow-secrets", tmp_path / "missing.toml"), 2)


@pytest.mark.parametrize("where", ["first-line", "middle", "chunk-boundary", "last-line-no-newline"])
def test_secret_in_a_large_file_is_refused_with_its_line(cli: Cli, tmp_path: Path, where: str) -> None:
    """Large files take the parallel prefilter path; a hit falls back to the exact scan, which names the line."""
    secret = next(s for s in CORPUS if s.name == "GitHub token")
    filler = b"2026-11-26T01:02:03Z INFO worker processed batch rows=150 status=ok\n"
    lines_before = {"first-line": 0, "middle": 150_000, "chunk-boundary": (8 << 20) // len(filler),
                    "last-line-no-newline": 300_000}[where]
    data = filler * lines_before + secret.text.encode() + (b"" if where == "last-line-no-newline" else b"\n")
    if where != "last-line-no-newline":
        data += filler * 50_000
    f = tmp_path / "big.log"
    f.write_bytes(data)
    line = assert_error(cli("add", "r1", f), 6)
    assert f"item big.log: line {lines_before + 1}:" in line and "GitHub Token" in line, line
    assert secret.value.encode() not in every_file_bytes(cli.store)


def test_large_clean_and_large_waived_files_are_added(cli: Cli, tmp_path: Path) -> None:
    clean = tmp_path / "clean.log"
    clean.write_bytes(b"2026-11-26 INFO ok\n" * 200_000)
    cli.ok("add", "r1", clean)
    token = "ghp_" + "Z9k" * 12
    waived = tmp_path / "fixtures.log"
    waived.write_bytes(b"noise line\n" * 200_000 + f"{token}\n".encode())
    allow = write(tmp_path / "allow.toml", '[[allow]]\nitem = "fixtures.log"\nreason = "test fixture"\n')
    cli.ok("add", "r1", waived, "--allow-secrets", allow)
    seal = cli.json("seal", "r1", "--key", cli.key)
    assert [(w["item"], w["line"]) for w in seal["waivers"]] == [("fixtures.log", 200_001)], seal["waivers"]
