"""Crash injection for the reliability tests (issue 8; tests/test_crash.py).

With ``LEDGER_CRASH_AFTER_WRITES=N`` in its environment, a process kills itself with SIGKILL right after its Nth
store write has completed (a put-if-absent, compare-and-swap, delete, or an upload's commit): that write is
durable, nothing after it happens -- exactly a sealer dying between two steps of the protocol. With
``LEDGER_WRITE_LOG=PATH`` every write appends one line ``<n> <op> <key> <outcome>`` to PATH, so a harness learns
the sequence of writes of a command and can name the step it killed after. Outside tests neither is set, and the
only cost is two environment lookups when a store is opened.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from typing import Any

from .storage.base import Store, Upload

CRASH_ENV = "LEDGER_CRASH_AFTER_WRITES"
LOG_ENV = "LEDGER_WRITE_LOG"


def instrument(store: Store) -> Store:
    """``store`` itself, with its writes counted (and fatal at the Nth) when the environment asks for it."""
    crash_at = os.environ.get(CRASH_ENV)
    log_path = os.environ.get(LOG_ENV)
    if not crash_at and not log_path:
        return store
    limit = int(crash_at) if crash_at else 0
    count = [0]
    depth = [0]  # a put-if-absent that writes through an upload is one write, not two

    def wrote(op: str, key: str | None, outcome: object) -> None:
        if depth[0]:
            return
        count[0] += 1
        if log_path:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(f"{count[0]} {op} {key} {outcome}\n")
                f.flush()
                os.fsync(f.fileno())
        if count[0] == limit:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(key: str, *args: Any, **kw: Any) -> Any:
            depth[0] += 1
            try:
                out = fn(key, *args, **kw)
            finally:
                depth[0] -= 1
            wrote(op, key, out)
            return out
        return call

    for op in ("put_if_absent", "compare_and_swap", "delete"):
        setattr(store, op, wrap(op, getattr(store, op)))
    upload = store.upload

    def upload_wrapped(key: str | None = None) -> Upload:
        up = upload(key)
        commit = up.commit_if_absent

        def commit_wrapped(final_key: str) -> bool:
            out = commit(final_key)
            wrote("upload", final_key, out)
            return out

        up.commit_if_absent = commit_wrapped  # type: ignore[method-assign,assignment]
        return up

    store.upload = upload_wrapped  # type: ignore[method-assign]
    return store
