"""S3 Object Lock: ``ledger init --object-lock-days N [--object-lock-mode M]`` makes every write-once object WORM,
and ``verify`` reports (and checks) the retention it finds.

Runs on the ``s3`` fixture's server (moto's, in its own process; or ``LEDGER_TEST_S3_ENDPOINT``), in a second bucket
created with Object Lock enabled. The CLI runs as real subprocesses (tests/test_cli.py's helpers). What moto 5.2
does not do is said where it matters: it accepts Object Lock parameters on CreateMultipartUpload but does not apply
them to the completed object (S3 does), so for multipart uploads the test checks the request instead.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_cli import assert_error, run_cli

from ledger import Ledger
from ledger.layout import CONFIG, batch_key, is_immutable, marker_key, sealing_key, slot_key
from ledger.objects import StoreConfig, StoreLock
from ledger.packs import index_key, loose_key, pack_key

LOCK_DAYS = 1  # the shortest retention: on a real bucket, what the tests leave behind expires after a day


@pytest.fixture(scope="module")
def lock_bucket(s3: Any) -> str:
    """A bucket with Object Lock enabled (which also turns versioning on), next to the fixture's plain bucket."""
    name = f"{s3.bucket}-lock"
    client = s3.client()
    try:
        client.head_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - absent: create it, or skip if this endpoint will not let us
        try:
            client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"cannot create a bucket with Object Lock on this endpoint: {exc}")
    return name


def fresh_url(bucket: str, name: str) -> str:
    return f"s3://{bucket}/t-{name}-{uuid.uuid4().hex[:12]}"


def split(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix


def versions(s3: Any, url: str) -> dict[str, list[dict[str, Any]]]:
    """Every version of every key under the store (delete markers excluded), by store key."""
    bucket, prefix = split(url)
    out: dict[str, list[dict[str, Any]]] = {}
    for page in s3.client().get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for v in page.get("Versions", ()):
            out.setdefault(v["Key"][len(prefix) + 1:], []).append(v)
    return out


def current_keys(s3: Any, url: str) -> set[str]:
    bucket, prefix = split(url)
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", ())}


def head(s3: Any, url: str, key: str, version: str | None = None) -> dict[str, Any]:
    bucket, prefix = split(url)
    extra = {"VersionId": version} if version else {}
    resp: dict[str, Any] = s3.client().head_object(Bucket=bucket, Key=f"{prefix}/{key}", **extra)
    return resp


def make_evidence(tmp: Path) -> Path:
    d = tmp / "out"
    d.mkdir()
    (d / "a.csv").write_text("id,value\n1,2\n")
    (d / "b.csv").write_text("id,value\n3,4\n")
    (d / "big.bin").write_bytes(bytes(range(256)) * 8 * 1024)  # 2 MiB: a loose object, sent with one PutObject
    return d


# --- the whole flow --------------------------------------------------------------------------------------------------

def test_locked_store_seals_worm_objects_and_verify_reports_their_retention(s3: Any, lock_bucket: str,
                                                                            tmp_path: Path) -> None:
    url = fresh_url(lock_bucket, "lock")
    r = run_cli(["init", "--object-lock-days", LOCK_DAYS, "--json"], cwd=tmp_path, store=url)
    assert r.code == 0, str(r)
    assert r.json() == {"store": url, "created": True, "object_lock": {"mode": "GOVERNANCE", "days": LOCK_DAYS}}
    assert run_cli(["keys", "generate", "--out", "sealer.key"], cwd=tmp_path).code == 0
    out = make_evidence(tmp_path)
    assert run_cli(["add", "nightly-1", out], cwd=tmp_path, store=url).code == 0
    r = run_cli(["record", "nightly-1", "--kind", "summary", '{"ingested": 3}'], cwd=tmp_path, store=url)
    assert r.code == 0, str(r)
    r = run_cli(["seal", "nightly-1", "--key", "sealer.key", "--json"], cwd=tmp_path, store=url)
    assert r.code == 0, str(r)
    seq = r.json()["seq"]

    r = run_cli(["verify", "nightly-1", "--trust", "sealer.key.pub", "--json"], cwd=tmp_path, store=url)
    assert r.code == 0, str(r)
    checks = r.json()["checks"]
    assert [c["name"] for c in checks] == ["store", "commit", "signature", "content", "tree", "chain", "criteria",
                                           "marker", "retention"]
    retention = checks[-1]
    assert retention["ok"] and "Object Lock GOVERNANCE" in retention["detail"], retention
    until = retention["detail"].split("until ")[1].split(" ")[0]
    assert datetime.strptime(until, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) > datetime.now(UTC), retention

    # Every version of every write-once key carries the retention; batches and the fence carry none (and are gone).
    all_versions = versions(s3, url)
    immutable = [k for k in all_versions if is_immutable(k)]
    assert {CONFIG, slot_key(seq), marker_key("nightly-1")} <= set(immutable)
    assert any(k.startswith("packs/") and k.endswith(".pack") for k in immutable)
    assert any(k.startswith("packs/") and k.endswith(".idx") for k in immutable)
    assert any(k.startswith("objects/") for k in immutable), "big.bin is stored loose"
    now = datetime.now(UTC)
    for key in immutable:
        for v in all_versions[key]:
            h = head(s3, url, key, v["VersionId"])
            assert h.get("ObjectLockMode") == "GOVERNANCE", key
            left = h["ObjectLockRetainUntilDate"] - now
            assert timedelta(days=LOCK_DAYS, minutes=-30) < left <= timedelta(days=LOCK_DAYS), (key, left)
    mutable = [k for k in all_versions if not is_immutable(k)]
    assert batch_key("nightly-1", 0) in mutable and sealing_key("nightly-1") in mutable, sorted(all_versions)
    for key in mutable:
        for v in all_versions[key]:
            assert "ObjectLockMode" not in head(s3, url, key, v["VersionId"]), key
        assert key not in current_keys(s3, url), f"{key} was deleted by the seal (a delete marker hides it)"

    # A locked version cannot be deleted (governance mode, no bypass).
    from botocore.exceptions import ClientError

    bucket, prefix = split(url)
    slot_version = all_versions[slot_key(seq)][0]["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.client().delete_object(Bucket=bucket, Key=f"{prefix}/{slot_key(seq)}", VersionId=slot_version)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert head(s3, url, slot_key(seq), slot_version)["ObjectLockMode"] == "GOVERNANCE"


def test_an_unconditional_put_shadowing_a_locked_object_fails_the_retention_check(s3: Any, lock_bucket: str,
                                                                                 tmp_path: Path) -> None:
    """What the documented bucket policy forbids: a PUT without If-None-Match adds a new, unlocked current version
    over a locked one. Here it carries the very same bytes, so only the retention check can tell."""
    url = fresh_url(lock_bucket, "shadow")
    lg = Ledger.open(url)
    lg.init(StoreLock("GOVERNANCE", LOCK_DAYS))
    from ledger.keys import generate_keyfile

    key = generate_keyfile(str(tmp_path / "k"))
    lg.add("r1", [str(make_evidence(tmp_path))])
    lg.seal("r1", key)
    assert lg.verify("r1", [key.public]).ok

    bucket, prefix = split(url)
    marker = lg.store.get(marker_key("r1"))
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/{marker_key('r1')}", Body=marker)  # no If-None-Match
    res = Ledger.open(url).verify("r1", [key.public])
    assert not res.ok
    failed = [c for c in res.checks if not c.ok]
    assert [c.name for c in failed] == ["retention"], res.to_json()
    assert f"object {marker_key('r1')}: no Object Lock retention" in failed[0].detail


def test_multipart_uploads_ask_for_the_lock(s3: Any, lock_bucket: str, tmp_path: Path) -> None:
    """A loose object of 16 MiB or more is sent as a multipart upload: CreateMultipartUpload carries the retention.
    moto 5.2 drops it when the upload completes (S3 applies it), so the request is what is checked here."""
    url = fresh_url(lock_bucket, "mpu")
    lg = Ledger.open(url)
    lg.init(StoreLock("GOVERNANCE", LOCK_DAYS))
    seen: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **kwargs: Any) -> None:
        seen.append(dict(params))

    store: Any = lg.store
    store.client.meta.events.register("provide-client-params.s3.CreateMultipartUpload", capture)
    big = tmp_path / "huge.bin"
    big.write_bytes(bytes(range(256)) * (17 * 4096))  # 17 MiB
    lg.add("r1", [str(big)])
    assert len(seen) == 1, seen
    assert seen[0]["Key"].endswith(loose_key(lg.items("r1").items[0].blake3))
    assert seen[0]["ObjectLockMode"] == "GOVERNANCE"
    left = seen[0]["ObjectLockRetainUntilDate"] - datetime.now(UTC)
    assert timedelta(days=LOCK_DAYS, minutes=-30) < left <= timedelta(days=LOCK_DAYS)


# --- init ------------------------------------------------------------------------------------------------------------

def test_init_with_a_lock_is_idempotent_and_the_config_is_write_once(s3: Any, lock_bucket: str,
                                                                     tmp_path: Path) -> None:
    url = fresh_url(lock_bucket, "once")
    r = run_cli(["init", "--object-lock-days", "3", "--object-lock-mode", "compliance"], cwd=tmp_path, store=url)
    assert r.code == 0 and r.out == f"initialised: {url} (Object Lock: COMPLIANCE, 3 days)\n", str(r)
    assert head(s3, url, CONFIG)["ObjectLockMode"] == "COMPLIANCE"
    config = StoreConfig.from_bytes(Ledger.open(url).store.get(CONFIG))
    assert config == StoreConfig(StoreLock("COMPLIANCE", 3))
    for same in (["--object-lock-days", "3", "--object-lock-mode", "COMPLIANCE"], []):
        r = run_cli(["init", *same], cwd=tmp_path, store=url)
        assert r.code == 0 and r.out == f"already initialised: {url} (Object Lock: COMPLIANCE, 3 days)\n", str(r)
    for other in (["--object-lock-days", "4", "--object-lock-mode", "compliance"], ["--object-lock-days", "3"]):
        r = run_cli(["init", *other], cwd=tmp_path, store=url)
        line = assert_error(r, 4, mentions="already initialised with Object Lock COMPLIANCE for 3 days")
        assert "write-once" in line
    assert len(versions(s3, url)[CONFIG]) == 1, "the config was never rewritten"

    plain = fresh_url(lock_bucket, "plain")
    assert run_cli(["init"], cwd=tmp_path, store=plain).code == 0
    assert "ObjectLockMode" not in head(s3, plain, CONFIG)
    assert_error(run_cli(["init", "--object-lock-days", "1"], cwd=tmp_path, store=plain), 4,
                 mentions="already initialised with no Object Lock")


def test_init_with_a_lock_needs_a_bucket_with_object_lock(s3: Any, tmp_path: Path) -> None:
    url = s3.url("nolock")  # the fixture's bucket: created without Object Lock
    r = run_cli(["init", "--object-lock-days", "1"], cwd=tmp_path, store=url)
    assert_error(r, 2, mentions="does not have Object Lock enabled")
    assert current_keys(s3, url) == set(), "nothing was written"


@pytest.mark.parametrize("args, mentions", [
    (["--object-lock-days", "1"], "Object Lock needs an S3 store"),
    (["--object-lock-days", "1", "--object-lock-mode", "compliance"], "Object Lock needs an S3 store"),
    (["--object-lock-mode", "governance"], "--object-lock-mode needs --object-lock-days"),
    (["--object-lock-days", "0"], "--object-lock-days"),
    (["--object-lock-days", "x"], "--object-lock-days"),
    (["--object-lock-days", "1", "--object-lock-mode", "legal-hold"], "--object-lock-mode"),
])
def test_lock_options_are_usage_errors_on_a_local_store(tmp_path: Path, args: list[str], mentions: str) -> None:
    store = tmp_path / "store"
    assert_error(run_cli(["init", *args], cwd=tmp_path, store=store), 2, mentions=mentions)
    assert not store.exists(), "nothing was written"


# --- stores without a lock -------------------------------------------------------------------------------------------

def test_verify_on_an_s3_store_without_a_lock_says_so(s3: Any, tmp_path: Path) -> None:
    url = s3.url("unlocked")
    lg = Ledger.open(url)
    lg.init()
    from ledger.keys import generate_keyfile

    key = generate_keyfile(str(tmp_path / "k"))
    lg.record("r1", "summary", {"ok": 1})
    lg.seal("r1", key)
    res = lg.verify("r1", [key.public])
    assert res.ok, res.to_json()
    assert res.checks[-1].name == "retention"
    assert res.checks[-1].detail == "no Object Lock configured by the store config"


# --- which keys are locked -------------------------------------------------------------------------------------------

def test_exactly_the_write_once_keys_are_immutable() -> None:
    pack = "00112233445566778899aabbccddeeff"
    assert all(is_immutable(k) for k in (CONFIG, slot_key(0), slot_key(2**63 - 1), pack_key(pack), index_key(pack),
                                         loose_key(bytes(range(32))), marker_key("nightly-1")))
    assert not any(is_immutable(k) for k in (batch_key("nightly-1", 0), sealing_key("nightly-1"), "runs/r/other",
                                             "configs", "runs/sealed", "runs/r/sealed/x", "tmp/x"))


def test_store_config_with_a_lock_round_trips_and_refuses_bad_locks() -> None:
    from ledger import encoding
    from ledger.errors import DecodeError

    cfg = StoreConfig(StoreLock("GOVERNANCE", 30))
    assert StoreConfig.from_bytes(cfg.encode()) == cfg
    assert encoding.decode(cfg.encode()) == {"format": "ledger/1", "lock": {"days": 30, "mode": "GOVERNANCE"}}
    for lock in ({"days": 0, "mode": "GOVERNANCE"}, {"days": 30, "mode": "governance"}, {"days": 30},
                 {"days": 30, "mode": "COMPLIANCE", "until": 1}, {"days": True, "mode": "COMPLIANCE"}, None, "x"):
        with pytest.raises(DecodeError):
            StoreConfig.from_bytes(encoding.encode({"format": "ledger/1", "lock": lock}))
    with pytest.raises(ValueError):
        StoreLock("LEGAL_HOLD", 1)
