"""A real S3 API server on loopback for the tests: moto's server application, in its own process.

    python tests/s3server.py [--lock] [--seed N]

prints ``ready <port>`` once it listens on 127.0.0.1, then serves until its stdin closes (so it dies with the test
process that started it). Clients talk HTTP to it exactly as to S3; nothing is mocked inside any ledger process.

Two optional WSGI middlewares:

* ``--lock`` holds one lock around each request. moto checks a condition (``If-None-Match: *``) and then writes
  without a lock, so under heavy concurrency two conditional PUTs to one key can both succeed, which real S3 never
  allows. Tests that assert "exactly one winner" serve moto through this wrapper; it makes moto's conditional writes
  atomic, as S3's are, and changes nothing else.
* fault injection, off until a test turns it on with ``POST /__faults__?rate=R&kinds=a,b`` (``rate=0`` turns it off).
  Each request to a bucket then has probability R of one fault, drawn from a seeded RNG:
  ``500`` (InternalError, nothing done), ``503`` (SlowDown, nothing done), ``409`` (ConditionalRequestConflict, for
  conditional writes only, nothing done), ``drop`` (the connection is closed before the request is handled),
  ``drop-after`` (the request is handled -- a write lands -- and the connection is closed before the response: the
  ambiguous outcome), ``delay`` (the request is handled after a pause). Not in the default mix, only when named:
  ``500-after`` (a conditional write is handled -- it lands -- and answered with a 500: the ambiguous outcome as an
  HTTP error rather than a lost connection). ``GET /__faults__`` returns the counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

ALL_FAULTS = ("500", "503", "409", "drop", "drop-after", "delay")

_ERR = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{msg}</Message>'
        "<RequestId>fault</RequestId></Error>")


def locked(app: App) -> App:
    lock = threading.Lock()

    def wrapper(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        with lock:  # the whole request, response body included, is one atomic step
            return [b"".join(app(environ, start_response))]

    return wrapper


class Faults:
    def __init__(self, app: App, seed: int) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.rate = 0.0
        self.kinds: tuple[str, ...] = ALL_FAULTS
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _control(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            q = parse_qs(environ.get("QUERY_STRING", ""))
            with self.lock:
                self.rate = float(q.get("rate", ["0"])[0])
                self.kinds = tuple(q.get("kinds", [",".join(ALL_FAULTS)])[0].split(","))
                self.counts.clear()
        body = json.dumps({"rate": self.rate, "kinds": list(self.kinds), "counts": dict(self.counts)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _pick(self, environ: Environ) -> str | None:
        conditional = environ["REQUEST_METHOD"] in ("PUT", "POST") and (
            "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ)
        with self.lock:
            if self.rate <= 0 or self.rng.random() >= self.rate:
                return None
            kinds = [k for k in self.kinds if k not in ("409", "500-after") or conditional]
            if not kinds:
                return None
            kind = self.rng.choice(kinds)
            self.counts[kind] += 1
            return kind

    @staticmethod
    def _error(start_response: StartResponse, status: str, code: str, msg: str) -> Iterable[bytes]:
        body = _ERR.format(code=code, msg=msg).encode()
        start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _drop(environ: Environ) -> None:
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("fault injected: connection dropped")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/__faults__":
            return self._control(environ, start_response)
        kind = self._pick(environ)
        if kind == "500":
            return self._error(start_response, "500 Internal Server Error", "InternalError", "fault injected")
        if kind == "503":
            return self._error(start_response, "503 Slow Down", "SlowDown", "fault injected")
        if kind == "409":
            return self._error(start_response, "409 Conflict", "ConditionalRequestConflict", "fault injected")
        if kind == "drop":
            self._drop(environ)
        if kind == "delay":
            time.sleep(self.rng.uniform(0.05, 0.3))  # latency injected by the server, not synchronisation
        if kind == "500-after":
            b"".join(self.app(environ, lambda *a, **k: None))  # the write lands ...
            return self._error(start_response, "500 Internal Server Error", "InternalError", "fault injected")
        if kind == "drop-after":
            b"".join(self.app(environ, lambda *a, **k: None))  # the request takes effect ...
            self._drop(environ)  # ... and its response is lost
        return self.app(environ, start_response)


def start_server(lock: bool, seed: int = 0) -> tuple[subprocess.Popen[str], str]:
    """Start tests/s3server.py and wait (by reading its first line, no sleeping) until it listens."""
    args = [sys.executable, os.path.abspath(__file__), "--seed", str(seed)] + (["--lock"] if lock else [])
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "ready":
        proc.kill()
        raise RuntimeError(f"the S3 test server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{line[1]}"


def stop_server(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lock", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import logging

    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # dropped connections are expected, not news

    class QuietHandler(WSGIRequestHandler):
        def log(self, *a: Any, **k: Any) -> None:
            pass

        def log_error(self, *a: Any, **k: Any) -> None:
            pass

    app: App = DomainDispatcherApplication(create_backend_app)
    if args.lock:
        app = locked(app)
    app = Faults(app, args.seed)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ready {server.server_port}", flush=True)
    sys.stdin.read()  # EOF: the parent is gone or done
    server.shutdown()


if __name__ == "__main__":
    main()
