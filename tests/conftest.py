"""Shared fixtures: a real S3 API server on loopback (moto's server, in its own process; see tests/s3server.py).

Set ``LEDGER_TEST_S3_ENDPOINT`` (with the usual ``AWS_*`` credentials and region, and optionally
``LEDGER_TEST_S3_BUCKET``, default ``ledger-test``) to run every S3 test against that endpoint instead -- MinIO, AWS,
anything S3-compatible. Then no lock wrapper is used (real S3's conditional writes are atomic) and the
fault-injection tests, which need our own server's middleware, are skipped with that reason.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from s3server import start_server, stop_server
from test_cli import HEX64, Cli

ENDPOINT_ENV = "LEDGER_TEST_S3_ENDPOINT"

# The run catalog is a cache under $XDG_CACHE_HOME (or $LEDGER_CATALOG): never the developer's own ~/.cache. One
# directory for the whole session (and the CLI processes tests start) is enough, since a catalog's file name derives
# from its store's URL and every test's store is a fresh one; tests/test_catalog.py isolates each of its tests.
_CACHE_HOME = tempfile.mkdtemp(prefix="ledger-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME
os.environ.pop("LEDGER_CATALOG", None)
atexit.register(shutil.rmtree, _CACHE_HOME, True)


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    external: bool
    proc: subprocess.Popen[str] | None = None

    def url(self, name: str = "") -> str:
        """A fresh, empty store URL: a unique prefix in the test bucket."""
        return f"s3://{self.bucket}/t-{name + '-' if name else ''}{uuid.uuid4().hex[:12]}"

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)

    def faults(self, rate: float, kinds: str | None = None) -> dict[str, Any]:
        """Turn fault injection on (rate > 0) or off; returns the counts of the faults injected so far."""
        if self.external:
            pytest.skip(f"fault injection needs the test's own S3 server ({ENDPOINT_ENV} is set)")
        q = f"rate={rate}" + (f"&kinds={kinds}" if kinds else "")
        with urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/__faults__?{q}", method="POST"),
                                    timeout=10) as r:
            doc: dict[str, Any] = json.load(r)
        return doc

    def fault_counts(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.endpoint}/__faults__", timeout=10) as r:
            counts: dict[str, int] = json.load(r)["counts"]
        return counts


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """One S3 endpoint per test process; every test gets its own prefix (``s3.url()``)."""
    external = os.environ.get(ENDPOINT_ENV)
    if external:
        server = S3Server(external.rstrip("/"), os.environ.get("LEDGER_TEST_S3_BUCKET", "ledger-test"), True)
        os.environ["AWS_ENDPOINT_URL"] = server.endpoint
        client = server.client()
        try:
            client.head_bucket(Bucket=server.bucket)
        except Exception:  # noqa: BLE001 - create it if we may; otherwise the tests report why they cannot run
            client.create_bucket(Bucket=server.bucket)
        yield server
        return
    # moto's conditional writes are made atomic by the lock wrapper (see tests/s3server.py for why).
    proc, endpoint = start_server(lock=True)
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(aws_env(endpoint))
    server = S3Server(endpoint, "ledger-test", False, proc)
    try:
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        stop_server(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
            "AWS_SESSION_TOKEN", "AWS_PROFILE")


def aws_env(endpoint: str) -> dict[str, str]:
    """What a client of the loopback server needs: its endpoint and the (arbitrary) credentials moto accepts."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "ledger-test", "AWS_SECRET_ACCESS_KEY": "ledger-test",
            "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A local store under tmp_path with a sealing key: the CLI tests' starting point (tests/test_cli.py's Cli)."""
    c = Cli(tmp_path)
    c.ok("init")
    c.key.parent.mkdir()
    r = c.ok("keys", "generate", "--out", c.key)
    assert HEX64.fullmatch(r.out.strip())
    return c
