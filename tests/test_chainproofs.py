"""Append-only proofs of the closure chain (checkpoints, consistency) and replay anchors: the API on a real local
store, then the CLI. Every check runs offline on the proof bytes and the auditor's keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import Cli, assert_error
from test_proofs import mutate

from ledger import Ledger
from ledger.chainproofs import Checkpoint, ConsistencyProof, prove_consistency, verify_consistency_proof
from ledger.errors import CheckFailed, LedgerError
from ledger.keys import SigningKey, generate_keyfile
from ledger.objects import SignedCommit


def sealed_chain(root: Path, runs: int, key: SigningKey, prefix: str = "run") -> tuple[Ledger, list[SignedCommit]]:
    lg = Ledger.open(str(root))
    lg.init()
    commits = []
    for i in range(runs):
        lg.record(f"{prefix}-{i}", "summary", {"n": i})
        commits.append(lg.seal(f"{prefix}-{i}", key).commit)
    return lg, commits


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return generate_keyfile(str(tmp_path_factory.mktemp("k") / "sealer.key"))


def test_every_older_head_is_consistent_with_every_newer_one(tmp_path: Path, key: SigningKey) -> None:
    lg = Ledger.open(str(tmp_path / "s"))
    lg.init()
    heads: list[SignedCommit] = []
    for b in range(13):
        lg.record(f"r{b}", "summary", {"n": b})
        heads.append(lg.seal(f"r{b}", key).commit)
        for a, old in enumerate(heads):
            p = prove_consistency(lg.store, old)
            assert (p.old.digest, p.new.digest) == (old.digest, heads[-1].digest)
            res = verify_consistency_proof(ConsistencyProof.from_bytes(p.encode()), [key.public])
            assert (res.old_seq, res.new_seq) == (a, b)
            # O(log n): a consistency path and an inclusion path of at most ~log2(b) hashes each
            assert res.hashes <= 2 * max(1, b).bit_length() + 1, res.hashes


def test_a_rewritten_history_is_caught(tmp_path: Path, key: SigningKey) -> None:
    """An auditor kept head #3 of one chain; a store whose history differs (same positions, other commits) cannot
    prove its head extends it, whichever way the proof is put together."""
    _, original = sealed_chain(tmp_path / "a", 4, key)
    forged, forged_commits = sealed_chain(tmp_path / "b", 8, key, prefix="other")
    for old in original:
        with pytest.raises(CheckFailed):
            verify_consistency_proof(prove_consistency(forged.store, old), [key.public])
    # the same store's own earlier heads do verify: the check is about history, not about the format
    assert verify_consistency_proof(prove_consistency(forged.store, forged_commits[3]), [key.public]).new_seq == 7


def test_same_head_twice_and_reversed_heads(tmp_path: Path, key: SigningKey) -> None:
    lg, commits = sealed_chain(tmp_path / "s", 3, key)
    same = ConsistencyProof(commits[2], commits[2], (), ())
    assert verify_consistency_proof(same, [key.public]).hashes == 0
    with pytest.raises(CheckFailed, match="newer than the new head"):
        verify_consistency_proof(ConsistencyProof(commits[2], commits[1], (), ()), [key.public])
    _, other = sealed_chain(tmp_path / "t", 3, key, prefix="x")
    with pytest.raises(CheckFailed, match="rewritten"):
        verify_consistency_proof(ConsistencyProof(commits[2], other[2], (), ()), [key.public])
    stranger = generate_keyfile(str(tmp_path / "stranger.key"))
    with pytest.raises(CheckFailed, match="not among the trusted keys"):
        verify_consistency_proof(prove_consistency(lg.store, commits[0]), [stranger.public])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]), st.integers(0, 2**14),
                                st.integers(0, 255)), min_size=1, max_size=3))
def test_mutated_proof_bytes_fail_closed(consistency_bytes: tuple[bytes, SigningKey],
                                         edits: list[tuple[str, int, int]]) -> None:
    data, key = consistency_bytes
    buf = mutate(data, edits)
    try:
        p = ConsistencyProof.from_bytes(bytes(buf))
        verify_consistency_proof(p, [key.public])
    except LedgerError:
        return
    assert ConsistencyProof.from_bytes(bytes(buf)).encode() == bytes(buf)
    assert p.new.digest == ConsistencyProof.from_bytes(data).new.digest, "a mutated proof verified another head"


@pytest.fixture(scope="module")
def consistency_bytes(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> tuple[bytes, SigningKey]:
    lg, commits = sealed_chain(tmp_path_factory.mktemp("m"), 7, key)
    return prove_consistency(lg.store, commits[2]).encode(), key


def test_checkpoint_round_trip_and_text(tmp_path: Path, key: SigningKey) -> None:
    lg, commits = sealed_chain(tmp_path / "s", 3, key)
    cp = lg.checkpoint()
    assert Checkpoint.from_bytes(cp.encode()).commit.digest == commits[-1].digest and cp.size == 3
    text = cp.text("ledger/1 test").splitlines()
    assert text[0] == "ledger/1 test" and text[1] == "2" and text[3].startswith("head b3:")


# --- CLI -----------------------------------------------------------------------------------------------------------

def offsets(cli: Cli, run: str, start: int, end: int) -> None:
    cli.ok("record", run, "--kind", "offsets", json.dumps({"topic": "t", "partition": 0, "start": start, "end": end}))
    cli.ok("seal", run, "--key", cli.key)


def test_checkpoint_consistency_cli(cli: Cli) -> None:
    assert_error(cli("checkpoint"), 3, mentions="empty")
    offsets(cli, "a", 0, 10)
    cp = cli.tmp / "head.cp"
    out = cli.ok("checkpoint", "-o", cp).out
    assert out.splitlines()[1] == "0", out  # head #0 signs the log of the 0 commits before it
    offsets(cli, "b", 10, 20)
    offsets(cli, "c", 20, 30)
    proof = cli.tmp / "cons.bin"
    cli.ok("consistency", cp, "-o", proof)
    j = cli.json("verify-consistency", proof, "--trust", cli.pub)
    assert j["ok"] is True and (j["old"]["seq"], j["new"]["seq"]) == (0, 2), j
    assert cli.json("checkpoint")["size"] == 3
    # bad input: one line each, the contract's codes
    data = bytearray(proof.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (cli.tmp / "bad.bin").write_bytes(bytes(data))
    assert_error(cli("verify-consistency", cli.tmp / "bad.bin", "--trust", cli.pub), 1)
    assert_error(cli("verify-consistency", cli.tmp / "missing.bin", "--trust", cli.pub), 3)
    assert_error(cli("consistency", cli.tmp / "missing.cp"), 3)
    assert_error(cli("verify-consistency", proof), 2)  # --trust is required


def test_replay_reports_joins_with_exact_ranges(cli: Cli) -> None:
    """Without a continuity policy a gap or an overlap can be sealed; replay still says exactly what it is."""
    offsets(cli, "r1", 0, 10)
    offsets(cli, "r2", 12, 20)
    offsets(cli, "r3", 18, 30)
    offsets(cli, "r4", 30, 31)
    joins = {r: cli.json("replay", r)["anchors"][0] for r in ("r1", "r2", "r3", "r4")}
    assert (joins["r1"]["joins"], joins["r1"]["range"], joins["r1"]["previous"]) == ("first", None, None)
    assert (joins["r2"]["joins"], joins["r2"]["range"]) == ("gap", [10, 12])
    assert joins["r2"]["previous"] == {"run": "r1", "seq": 0, "end": 10}
    assert (joins["r3"]["joins"], joins["r3"]["range"]) == ("overlap", [18, 20])
    assert (joins["r4"]["joins"], joins["r4"]["range"]) == ("contiguous", None)
    assert joins["r3"]["offsets"] == 12 and joins["r3"]["commit"] == cli.json("show", "r3")["commit"]
    human = cli.ok("replay", "r2").out
    assert "t[0]" in human and "[12, 20)" in human and "gap [10, 12) after run r1 (#0)" in human, human
    cli.ok("record", "open", "--kind", "summary", '{"n": 1}')
    assert_error(cli("replay", "open"), 3)
    assert_error(cli("replay", "nope"), 3)
    cli.ok("seal", "open", "--key", cli.key)
    r = cli("replay", "open", "--json")
    assert r.code == 0 and json.loads(r.out)["anchors"] == [], str(r)


def test_oversized_and_garbage_inputs_are_one_line(cli: Cli) -> None:
    """Bytes that are no proof or checkpoint at all are a usage error (exit 2), one line naming the file."""
    offsets(cli, "a", 0, 1)
    big = cli.tmp / "huge.proof"
    with open(big, "wb") as f:
        f.truncate((1 << 24) + 1)
    for cmd in (["verify-proof", big, "--trust", cli.pub], ["verify-consistency", big, "--trust", cli.pub],
                ["consistency", big]):
        line = assert_error(cli(*cmd), 2)
        assert "larger than any" in line and "huge.proof" in line, line
    garbage = cli.tmp / "garbage.bin"
    garbage.write_bytes(b"\x00\xffnot a proof")
    for cmd in (["verify-proof", garbage, "--trust", cli.pub], ["verify-consistency", garbage, "--trust", cli.pub],
                ["consistency", garbage], ["export", "a", "-o", cli.tmp / "b.bundle", "--since", garbage]):
        line = assert_error(cli(*cmd), 2)
        assert "garbage.bin" in line and "not a ledger/1" in line, line
    assert not (cli.tmp / "b.bundle").exists()
