"""The ``ledger`` command line: parses, calls the API, presents. Contract: ../shared/docs/cli.md.

Results go to stdout, progress and errors to stderr; ``--json`` prints exactly one JSON document on stdout. Every
failure is one ``error: ...`` line and the exit code of its :class:`~ledger.errors.LedgerError`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from . import __version__
from .api import Ledger
from .closure import Assessment, NotReady
from .digests import FORMAT
from .errors import CheckFailed, DecodeError, LedgerError, NotFound, StorageError, UsageError
from .keys import generate_keyfile, load_public_key, load_signing_key
from .names import KINDS, RECORD_KINDS
from .objects import MAX_LOCK_DAYS, StoreLock

ALLOW_OPTION = click.option(
    "--allow-secrets", "allow_file", metavar="FILE",
    help="Allow-list (TOML) waiving secret-scanner false positives: [[allow]] item, reason[, line, detector]. "
         "Waived findings are sealed into the commit for auditors to see.")


def _allow(path: str | None) -> list[Any]:
    if path is None:
        return []
    from .secrets import load_allow_list

    return list(load_allow_list(path))


EXIT_CODES = """\b
Exit codes: 0 ok · 1 check failed (tampered, missing, bad signature, not ready)
2 usage · 3 not found · 4 already sealed / lost race · 5 storage error · 6 evidence refused"""


def _out(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=None, sort_keys=False))


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _ts(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _ledger(ctx: click.Context) -> Ledger:
    return Ledger.open(ctx.obj["store"])


def _progress_counter(what: str) -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(n: int, nbytes: int) -> None:
        if n % 500 == 0:
            click.echo(f"\r{what}: {n} item(s), {nbytes / 1e6:.1f} MB", err=True, nl=False)

    return show


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog=EXIT_CODES)
@click.option("--store", metavar="URL", envvar="LEDGER_STORE", default=None,
              help="Store location: a path, file:///abs/path or s3://bucket/prefix "
                   "[env LEDGER_STORE; default ./.ledger].")
@click.version_option(__version__, prog_name="ledger")
@click.pass_context
def main(ctx: click.Context, store: str | None) -> None:
    """Evidence-first run closure: record what a pipeline run did, seal it exactly once with a signed
    commit, and let anyone holding the public key verify it offline.

    \b
    Operator:  ledger init; ledger keys generate --out sealer.key
               ledger add RUN out/ ; ledger record RUN --kind summary '{"ingested": 10}'
               ledger check RUN --policy nightly.toml
               ledger seal RUN --key sealer.key --policy nightly.toml
    Auditor:   ledger verify RUN --trust sealer.key.pub ; ledger show RUN ; ledger log
               ledger prove RUN ITEM -o item.proof ; ledger verify-proof item.proof --trust sealer.key.pub
               ledger export RUN -o run.bundle ; ledger verify RUN --bundle run.bundle --trust sealer.key.pub
               ledger checkpoint -o head.cp ; later: ledger consistency head.cp | ledger verify-consistency - ...
    """
    ctx.ensure_object(dict)
    ctx.obj["store"] = store


@main.command()
@click.option("--object-lock-days", "lock_days", type=click.IntRange(1, MAX_LOCK_DAYS), metavar="N",
              help="S3 only: write every sealed object WORM (S3 Object Lock), retained N days from its write. "
                   "The bucket must have Object Lock enabled.")
@click.option("--object-lock-mode", "lock_mode", type=click.Choice(["governance", "compliance"],
                                                                   case_sensitive=False),
              help="Object Lock retention mode [default: governance]; compliance cannot be lifted by anyone.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def init(ctx: click.Context, lock_days: int | None, lock_mode: str | None, as_json: bool) -> None:
    """Create the store (idempotent).

    With --object-lock-days (an s3:// store in a bucket with Object Lock enabled), the store config records the
    retention, and every write-once object -- config, commits, packs, loose objects, completion markers -- is
    written with it. The config is write-once: re-running init with other lock options is refused (exit 4)."""
    if lock_mode is not None and lock_days is None:
        raise UsageError("--object-lock-mode needs --object-lock-days")
    lock = StoreLock((lock_mode or "governance").upper(), lock_days) if lock_days is not None else None
    lg = _ledger(ctx)
    created = lg.init(lock)
    cfg_lock = lg.config.lock if lg.config is not None else None
    if as_json:
        _out({"store": lg.store.url, "created": created,
              "object_lock": {"mode": cfg_lock.mode, "days": cfg_lock.days} if cfg_lock else None})
    else:
        locked = f" (Object Lock: {cfg_lock.mode}, {cfg_lock.days} days)" if cfg_lock else ""
        click.echo(f"{'initialised' if created else 'already initialised'}: {lg.store.url}{locked}")


@main.group()
def keys() -> None:
    """Manage Ed25519 sealing keys."""


@keys.command("generate")
@click.option("--out", "out", required=True, metavar="PATH",
              help="Private key file (written 0600); the public key goes to PATH.pub.")
@click.option("--force", is_flag=True, help="Replace existing key files.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def keys_generate(out: str, force: bool, as_json: bool) -> None:
    """Write a new Ed25519 private key to PATH and its public key to PATH.pub; print the key id.

    Give PATH.pub to auditors: `ledger verify --trust PATH.pub` trusts exactly the keys named there."""
    key = generate_keyfile(out, force)
    kid = key.public.key_id.hex()
    if as_json:
        _out({"key_id": kid, "private": out, "public": out + ".pub"})
    else:
        click.echo(kid)
        _err(f"private key: {out} (keep it secret)\npublic key:  {out}.pub (give it to auditors)")


@main.command()
@click.argument("run")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--kind", default="file", show_default=True, metavar="KIND",
              help=f"Evidence kind: {', '.join(KINDS)}.")
@click.option("--as", "as_name", metavar="NAME", help="Item name for a single file, or name prefix for a directory.")
@ALLOW_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the added items as JSON.")
@click.pass_context
def add(ctx: click.Context, run: str, paths: tuple[str, ...], kind: str, as_name: str | None,
        allow_file: str | None, as_json: bool) -> None:
    """Add files, or directories recursively, as evidence items of RUN (opened by its first add).

    A file is named by its base name, a directory's files by their path relative to it (use --as to
    prefix or rename). Content is streamed and stored once. Re-adding a name with the same content is a
    no-op; with different content it is refused (exit 6): a name is bound once.

    Every file is scanned for secrets (AWS keys, private keys, tokens, passwords in assignments, ...) before a
    byte of it is stored; a hit refuses the whole call (exit 6) naming the item, line and detector, never the
    secret. With a typed --kind (offsets, receipt, summary, artifact, decision) each file must be a valid JSON
    record of that kind."""
    res = _ledger(ctx).add(run, list(paths), kind, as_name, _progress_counter("adding"), _allow(allow_file))
    if sys.stderr.isatty():
        click.echo("\r", err=True, nl=False)
    if as_json:
        _out({"run": run, "added": [_item_json(e) for e in res.added],
              "unchanged": [_item_json(e) for e in res.unchanged]})
    else:
        click.echo(f"run {run}: added {len(res.added)} item(s), {res.bytes} bytes"
                   + (f"; {len(res.unchanged)} already present" if res.unchanged else ""))


@main.command("record")
@click.argument("run")
@click.argument("data", required=False, default="-", metavar="[JSON|-]")
@click.option("--kind", required=True, metavar="KIND", help=f"Record kind: {', '.join(RECORD_KINDS)}.")
@click.option("--name", metavar="NAME", help="Item name [default: from the kind and key fields, e.g. "
                                             "offsets/TOPIC/PARTITION.json].")
@ALLOW_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the recorded items as JSON.")
@click.pass_context
def record_cmd(ctx: click.Context, run: str, data: str, kind: str, name: str | None, allow_file: str | None,
               as_json: bool) -> None:
    """Add structured records to RUN, from the JSON argument or stdin ('-').

    \b
    Typed kinds are validated (invalid: exit 6 naming the field):
      offsets   {"topic", "partition", "start", "end"[, "group", "high"]}  end exclusive, start <= end
      receipt   {"source", "count"[, "batch", "digest", "first", "last", "topic", "partition"]}
      summary   {"ingested": 10, "duplicates": 0, ...[, "name"]}  non-negative integer counts
      artifact  {"name", "version"[, "digest"]}
      decision  {"name", "outcome"[, "reason", "inputs"]}
      json      any JSON value
    For a typed kind a JSON array records one item per element, all or nothing. Each item's content is the
    canonical JSON (sorted keys, no spaces); its default name comes from the kind and key fields (see --name),
    so recording the same fact again is a no-op and a contradicting one is refused."""
    text = sys.stdin.read() if data == "-" else data
    res = _ledger(ctx).record(run, kind, text, name, _allow(allow_file))
    entries = res.added + res.unchanged
    added = {e.name for e in res.added}
    if as_json:
        _out({"run": run, "item": _item_json(entries[0]), "added": bool(res.added),
              "items": [_item_json(e) | {"added": e.name in added} for e in entries]})
    else:
        for e in entries:
            click.echo(f"run {run}: {'recorded' if e.name in added else 'already present'} {e.name} ({e.kind}, "
                       f"{e.size} bytes, b3:{e.blake3.hex()[:16]})")


POLICY_OPTION = click.option(
    "--policy", "policies", multiple=True, metavar="FILE",
    help="Closure policy (TOML, repeatable: all must hold, on top of the built-in criteria). See the README.")


def _print_report(rep: Assessment) -> None:
    for c in rep.criteria:
        mark = "ok  " if c.ok else "FAIL"
        click.echo(f"[{mark}] {c.name:<18} {c.detail}")
        if c.evidence and not c.ok:
            click.echo(f"       looked at: {', '.join(c.evidence[:5])}" + (" ..." if len(c.evidence) > 5 else ""))
    for w in rep.waivers:
        click.echo(f"[waived] {w.item}:{w.line} {w.detector} ({w.reason})")


@main.command("check")
@click.argument("run")
@POLICY_OPTION
@click.option("--json", "as_json", is_flag=True,
              help="Print {run, ok, policy, criteria:[{name, ok, detail, evidence}], anchors, waivers}.")
@click.pass_context
def check_cmd(ctx: click.Context, run: str, policies: tuple[str, ...], as_json: bool) -> None:
    """Closure readiness of open RUN: evaluate every criterion and show which hold and which fail, with the
    evidence each looked at. Nothing is written. Exit 0 when all hold, 1 otherwise.

    \b
    Built-in criteria (always): non-empty, content-present, records-valid (every typed item is a valid record
    of its kind), records-coherent (one offsets range per partition, one version per artifact).
    A policy adds: min counts per kind, required artifacts, topics whose every partition needs offsets,
    reconciliations between kinds, and continuity with the previous sealed run of each stream."""
    rep = _ledger(ctx).check(run, list(policies) or None)
    if as_json:
        _out(rep.to_json())
    else:
        _print_report(rep)
        click.echo(f"run {run}: {'ready to seal' if rep.ok else 'NOT ready to seal'}")
    if not rep.ok:
        if not as_json:
            bad = next(c for c in rep.criteria if not c.ok)
            _err(f"error: run {run}: not ready to seal: {bad.name}: {bad.detail}")
        sys.exit(1)


@main.command()
@click.argument("run")
@click.option("--key", "keyfile", required=True, metavar="KEYFILE", help="Ed25519 private key (ledger keys generate).")
@POLICY_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the commit as JSON.")
@click.pass_context
def seal(ctx: click.Context, run: str, keyfile: str, policies: tuple[str, ...], as_json: bool) -> None:
    """Check RUN's closure criteria (as `ledger check` does) and, only if they all hold, build its evidence
    tree, sign the closure commit and append it to the chain; then write the completion marker.

    The policy's digest, every criterion's result and the replay anchors are sealed into the commit, and
    `verify` re-evaluates them. If any criterion fails it prints the same report as `check`, exits 1 and
    writes nothing. Exactly one sealer of a run wins; the others exit 4 and write nothing. Re-running
    after a crash completes the seal idempotently."""
    key = load_signing_key(keyfile)
    lg = _ledger(ctx)
    try:
        res = lg.seal(run, key, progress=None if as_json else (lambda m: _err(m + " ...")),
                      policy=list(policies) or None)
    except NotReady as exc:
        rep = Assessment(run, exc.criteria, [], None, [])
        if as_json:
            _out({"run": run, "ok": False, "sealed": False, "criteria": [c.to_json() for c in exc.criteria]})
        else:
            _print_report(rep)
            click.echo(f"run {run}: NOT sealed")
        raise
    body = res.commit.body
    if as_json:
        out = _commit_json(res.seq, res.commit)
        out["completed_interrupted"] = res.completed_interrupted
        _out(out)
        return
    if res.completed_interrupted:
        click.echo(f"run {run}: completed an interrupted seal: commit b3:{res.digest.hex()[:16]} (#{res.seq})")
    else:
        click.echo(f"run {run}: sealed {body.count} item(s), {body.total_bytes} bytes\n"
                   f"  commit  {res.digest.hex()}  (#{res.seq})\n  root    {body.root.hex()}\n"
                   f"  key     {body.key.hex()}")


@main.command()
@click.argument("run")
@click.option("--trust", "trust", multiple=True, required=True, metavar="PUBFILE",
              help="A public key the auditor trusts (repeatable). Keys in the store are never trusted.")
@click.option("--bundle", metavar="PATH", help="Verify an exported bundle (ledger export) instead of the store: "
                                              "no store is needed at all.")
@click.option("--checkpoint", "checkpoint", metavar="FILE",
              help="With a bundle exported --since a checkpoint: that checkpoint, as the auditor kept it.")
@click.option("--require-content", "require_content", is_flag=True,
              help="Fail (exit 1) unless every item's content was re-hashed: refuses a metadata-only bundle, so a "
                   "script that trusts the exit code cannot be handed a bundle whose content was left out.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON document.")
@click.pass_context
def verify(ctx: click.Context, run: str, trust: tuple[str, ...], bundle: str | None, checkpoint: str | None,
           as_json: bool, require_content: bool = False) -> None:
    """Verify sealed RUN completely: commit, signature (against --trust keys only), every item's content,
    the tree root, every chain link back to the genesis, and the completion marker. Exit 0 only if all hold."""
    keys_ = [load_public_key(p) for p in trust]
    if checkpoint is not None and bundle is None:
        raise UsageError("--checkpoint goes with --bundle (a bundle exported --since that checkpoint)")
    if bundle is not None:
        from .bundle import BundleStore
        from .names import check_run_id
        from .verify import verify as verify_store

        check_run_id(run)
        from .chainproofs import Checkpoint
        from .verify import Since

        bs = BundleStore(bundle)
        try:
            if bs.run != run:
                raise NotFound(f"bundle {bundle}: holds run {bs.run}, not {run}")
            since = None
            if bs.since is not None:
                if checkpoint is None:
                    raise UsageError(f"bundle {bundle}: its chain starts at checkpoint #{bs.since.old.body.seq}; "
                                     "give that checkpoint, as you kept it, with --checkpoint FILE")
                cp = _decode_input(checkpoint, "checkpoint", Checkpoint.from_bytes)
                since = Since(cp.commit, bs.since)
            elif checkpoint is not None:
                from .layout import slot_key

                if not bs.exists(slot_key(0)):  # neither a proof from a checkpoint nor the genesis: damaged
                    raise CheckFailed(f"bundle {bundle}: holds no consistency proof from a checkpoint and does not "
                                      "go back to the genesis (slot 0 missing): the bundle is damaged")
                raise UsageError(f"bundle {bundle}: goes back to the genesis; verify it without --checkpoint")
            res = verify_store(bs, run, keys_, _progress_counter("verifying"), content=bs.content, since=since)
        finally:
            bs.close()
    else:
        res = _ledger(ctx).verify(run, keys_, _progress_counter("verifying"))
    if as_json:
        _out(res.to_json())
    else:
        for c in res.checks:
            mark = "ok  " if c.ok else "FAIL"
            click.echo(f"[{mark}] {c.name:<9} {c.detail}")
        unchecked = "" if res.content_checked else " (content NOT checked: metadata-only bundle)"
        click.echo(f"run {run}: {'verified' if res.ok else 'NOT verified'}{unchecked}")
    if not res.ok:
        fail = res.first_failure
        if fail is not None and not as_json:
            _err(f"error: {fail.detail}")
        sys.exit(1)
    if require_content and not res.content_checked:
        if not as_json:
            _err(f"error: run {run}: content not checked (a metadata-only bundle) and --require-content was given")
        sys.exit(1)


def _item_json(e: Any) -> dict[str, Any]:
    return {"name": e.name, "kind": e.kind, "size": e.size, "blake3": e.blake3.hex()}


@main.command("ls")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print {run, sealed, items:[{name, kind, size, blake3}]}.")
@click.pass_context
def ls_cmd(ctx: click.Context, run: str, as_json: bool) -> None:
    """List RUN's items: name, kind, size and BLAKE3 of the content (what b3sum prints for the same bytes)."""
    ri = _ledger(ctx).items(run)
    if as_json:
        _out({"run": run, "sealed": ri.sealed, "items": [_item_json(e) for e in ri.items]})
        return
    for e in ri.items:
        click.echo(f"{e.blake3.hex()}  {e.size:>12}  {e.kind:<8}  {e.name}")
    _err(f"run {run}: {len(ri.items)} item(s), {'sealed' if ri.sealed else 'open'}")


@main.command("cat")
@click.argument("run")
@click.argument("name")
@click.pass_context
def cat_cmd(ctx: click.Context, run: str, name: str) -> None:
    """Write item NAME of RUN to stdout (checked against its digest first)."""
    data = _ledger(ctx).read(run, name)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _commit_json(seq: int, c: Any) -> dict[str, Any]:
    b = c.body
    return {"run": b.run, "commit": c.digest.hex(), "seq": seq, "parent": b.parent.hex() if b.parent else None,
            "root": b.root.hex(), "items_root": b.items_root.hex(), "items": b.count, "bytes": b.total_bytes,
            "time": _ts(b.time_ms),
            "key_id": b.key.hex(), "log": {"size": b.log_size, "root": b.log_root.hex()},
            "format": "ledger/1", "policy": b.policy.hex() if b.policy else None,
            "criteria": [{"name": n, "ok": ok, "detail": d} for n, ok, d in b.criteria],
            "anchors": [{"group": g or None, "topic": t, "partition": p, "start": s, "end": e}
                        for g, t, p, s, e in b.anchors],
            "waivers": [w.to_value() for w in b.waivers]}


@main.command()
@click.argument("ref", metavar="RUN|COMMIT")
@click.option("--json", "as_json", is_flag=True, help="Print the commit as JSON.")
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a closure commit, by run id, commit digest (8+ hex digits) or #SEQ. Shows; does not verify."""
    e = _ledger(ctx).commit(ref)
    j = _commit_json(e.seq, e.commit)
    if as_json:
        _out(j)
        return
    click.echo(f"commit  {j['commit']}  (#{e.seq})\nrun     {j['run']}\ntime    {j['time']}\n"
               f"items   {j['items']} ({j['bytes']} bytes)\nroot    {j['root']}\n"
               f"parent  {j['parent'] or '(genesis)'}\nkey     {j['key_id']}\n"
               f"log     {j['log']['size']} earlier commit(s), root {j['log']['root']}\n"
               f"policy  {j['policy'] or '(built-in criteria only)'}")
    b = e.commit.body
    if b.criteria:
        click.echo("criteria")
        for n, ok, d in b.criteria:
            click.echo(f"  [{'ok  ' if ok else 'FAIL'}] {n:<18} {d}")
    if b.anchors:
        click.echo("anchors")
        for g, t, p, s, end in b.anchors:
            click.echo(f"  {(g + ' ') if g else ''}{t}[{p}]  [{s}, {end})  {end - s} offset(s)")
    for w in b.waivers:
        click.echo(f"waived  {w.item}:{w.line} {w.detector} ({w.reason})")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the chain as a JSON array, newest first.")
@click.pass_context
def log(ctx: click.Context, as_json: bool) -> None:
    """The closure chain, newest first."""
    entries = list(_ledger(ctx).log())
    if as_json:
        _out([_commit_json(e.seq, e.commit) for e in entries])
        return
    for e in entries:
        b = e.commit.body
        click.echo(f"#{e.seq:<5} {e.digest.hex()[:16]}  {_ts(b.time_ms)}  {b.count:>8} item(s)  {b.run}")
    if not entries:
        _err("the chain is empty")


def _fmt_value(v: Any) -> str:
    return "(none)" if v is None else json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v


def _fmt_field(field: str, v: Any) -> str:
    if field == "range" and isinstance(v, list):
        return f"[{v[0]}, {v[1]})"
    return _fmt_value(v)


def _field_lines(fields: Any) -> list[str]:
    """A typed record's differing fields, one line each ("(none)" on the side without the record or field); an
    offsets range reads [start, end)."""
    return [f"{f.field}: {_fmt_field(f.field, f.a)} -> {_fmt_field(f.field, f.b)}" for f in fields]


@main.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document: {a, b, identical, stat, nodes_read, changes:[{status, name, a, b, "
                   "fields}]}.")
@click.option("--stat", "stat", is_flag=True, help="Print the counts only (added, removed, changed, unchanged).")
@click.option("--exit-code", "exit_code", is_flag=True,
              help="Exit 1 when the runs differ, 0 when they hold the same items (git's convention).")
@click.pass_context
def diff_cmd(ctx: click.Context, run_a: str, run_b: str, as_json: bool, stat: bool, exit_code: bool) -> None:
    """Compare two sealed runs: the items added, removed and changed from RUN_A to RUN_B (name, kind, both sizes
    and digests), and for typed records (offsets, receipt, summary, artifact, decision) the fields that differ --
    an offsets range, a receipt's count, an artifact's version.

    Both evidence trees are walked together and every subtree they share is skipped unread, so the cost follows
    the number of changes, not the size of the runs (the tree nodes read are reported). Lines start with
    + (added), - (removed) or ~ (changed); a summary goes to stderr. Exit 3 names a run that is unknown or not
    sealed."""
    d = _ledger(ctx).diff(run_a, run_b, semantic=not stat)
    if as_json:
        changes = [c.to_json() for c in d.changes]  # the walk fills the counts: it runs for --stat too
        doc: dict[str, Any] = {"a": d.a.to_json(), "b": d.b.to_json(), "identical": not d.counter.differ,
                               "stat": d.stat_json(), "nodes_read": d.counter.nodes_read}
        if not stat:
            doc["changes"] = changes
        _out(doc)
    elif stat:
        for _ in d.changes:
            pass
        click.echo(d.summary())
    else:
        rows: list[tuple[str, str, str, str, str, Any]] = []
        for c in d.changes:
            if c.a is None or c.b is None:
                e = c.b if c.a is None else c.a
                assert e is not None
                rows.append(("+" if c.a is None else "-", c.name, e.kind, f"{e.size:,} B",
                             f"b3:{e.blake3.hex()[:16]}", c.fields))
            else:
                kind = c.a.kind if c.a.kind == c.b.kind else f"{c.a.kind} -> {c.b.kind}"
                size = f"{c.a.size:,} B" if c.a.size == c.b.size else f"{c.a.size:,} -> {c.b.size:,} B"
                rows.append(("~", c.name, kind, size, f"b3:{c.a.blake3.hex()[:16]} -> b3:{c.b.blake3.hex()[:16]}",
                             c.fields))
        # A table: columns as wide as their widest cell (names capped, so one long name cannot push the rest away)
        click.echo(f"diff {d.a.run} (#{d.a.seq}, b3:{d.a.commit.hex()[:16]}) -> {d.b.run} (#{d.b.seq}, "
                   f"b3:{d.b.commit.hex()[:16]})")  # after the walk: a damaged tree leaves stdout empty
        wn = min(max((len(r[1]) for r in rows), default=0), 60)
        wk = max((len(r[2]) for r in rows), default=0)
        ws = max((len(r[3]) for r in rows), default=0)
        for mark, name, kind, size, digests, fields in rows:
            click.echo(f"{mark} {name:<{wn}}  {kind:<{wk}}  {size:>{ws}}  {digests}")
            for line in _field_lines(fields):
                click.echo(f"    {line}")
    if not as_json:
        _err(f"{d.summary()}; {d.counter.nodes_read} tree node(s) read, {d.counter.subtrees_skipped} shared "
             f"subtree(s) skipped")
    if exit_code and d.counter.differ:
        sys.exit(1)


def _warn(msg: str) -> None:
    _err(f"warning: {msg}")


@main.command("runs")
@click.option("--status", type=click.Choice(["open", "sealed"]), help="Only open or only sealed runs.")
@click.option("--since", "since", metavar="TIME", help="Sealed at or after TIME (ISO 8601; no zone means UTC).")
@click.option("--until", "until", metavar="TIME", help="Sealed before TIME. A time filter leaves open runs out.")
@click.option("--kind", "kind", metavar="KIND", help="Sealed runs holding at least one item of KIND.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of runs.")
@click.pass_context
def runs_cmd(ctx: click.Context, status: str | None, since: str | None, until: str | None, kind: str | None,
             as_json: bool) -> None:
    """List the store's runs from the local catalog: sealed runs in chain order (slot, seal time, items, bytes,
    commit), then open runs with what they have staged so far.

    The catalog is a local SQLite file derived from the store (spec/catalog.md; its path: `ledger reindex`). It
    catches up with the store before it answers, so a run added or sealed a moment ago is listed; `verify` never
    reads it."""
    from .catalog import parse_time

    rows = _ledger(ctx).runs(status, None if since is None else parse_time(since),
                             None if until is None else parse_time(until), kind, warn=_warn)
    if as_json:
        _out([r.to_json() for r in rows])
        return
    for r in rows:
        if r.status == "sealed":
            click.echo(f"#{r.seq:<5} {r.run:<24} sealed  {r.sealed_at}  {r.count:>9,} item(s)  {r.bytes:>15,} B  "
                       f"b3:{(r.commit or '')[:16]}")
        else:
            click.echo(f"{'-':<6} {r.run:<24} open    {'':<24}  {r.count:>9,} item(s)  {r.bytes:>15,} B  (staged)")
    _err(f"{len(rows)} run(s)")


@main.command("find")
@click.argument("digest", required=False)
@click.option("--name", "name", metavar="GLOB",
              help="Match item names with a glob (SQLite GLOB: * ? [...], case-sensitive; * also matches /).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {run, seq, name, kind, size, blake3}.")
@click.pass_context
def find_cmd(ctx: click.Context, digest: str | None, name: str | None, as_json: bool) -> None:
    """Which sealed runs hold this content (DIGEST: the BLAKE3 hex `b3sum` prints, optionally `b3:`, or a prefix
    of at least 8 digits) or an item whose name matches --name GLOB. Answered from the local catalog, which first
    catches up with the store."""
    rows = _ledger(ctx).find(digest, name, warn=_warn)
    if as_json:
        _out([r.to_json() for r in rows])
        return
    for r in rows:
        click.echo(f"{r.run}  #{r.seq}  {r.blake3}  {r.size:>12,}  {r.kind:<8}  {r.name}")
    _err(f"{len(rows)} item(s) in {len({r.run for r in rows})} sealed run(s)")


@main.command("reindex")
@click.option("--check", "check_only", is_flag=True,
              help="Only check the existing catalog against the store; change nothing (exit 1 if it differs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.pass_context
def reindex_cmd(ctx: click.Context, check_only: bool, as_json: bool) -> None:
    """Rebuild the local run catalog from the store, then check it: every sealed run's items, as the catalog
    lists them, must rebuild the run's sealed roots, and every open run's staged items must match. Exit 1 names
    each difference. The catalog is derived data: deleting it is harmless, and the next query rebuilds it."""
    lg = _ledger(ctx)
    if check_only:
        from .catalog import catalog_path

        problems = lg.check_catalog()
        path = catalog_path(lg.store)
        if as_json:
            _out({"path": path, "ok": not problems, "problems": problems})
        else:
            for p in problems:
                _err(f"error: catalog {path}: {p}")
            if not problems:
                click.echo(f"catalog {path}: agrees with the store")
        if problems:
            sys.exit(1)
        return
    res = lg.reindex(warn=_warn)
    if as_json:
        _out(res.to_json())
    else:
        for p in res.problems:
            _err(f"error: catalog {res.path}: {p}")
        click.echo(f"catalog {res.path}: {res.commits} commit(s), {res.sealed} sealed and {res.open} open run(s), "
                   f"{res.items:,} item(s) indexed in {res.seconds:.2f} s; "
                   + ("every sealed run's items rebuild its sealed roots" if res.ok else
                      f"{len(res.problems)} problem(s)"))
    if not res.ok:
        sys.exit(1)


@main.command()
@click.argument("run")
@click.argument("name")
@click.option("-o", "--output", "output", metavar="FILE", help="Write the proof to FILE [default: stdout].")
@click.pass_context
def prove(ctx: click.Context, run: str, name: str, output: str | None) -> None:
    """Write an inclusion proof for item NAME of sealed RUN: the item's entry, its RFC 9162 audit path to the
    commit's items root (at most log2(n) hashes) and the signed closure commit. `ledger verify-proof` checks it
    with no store and no network; hand it to an auditor together with the item's content, or alone."""
    p = _ledger(ctx).prove(run, name)
    data = p.encode()
    _write_output(output, data)
    _err(f"run {run}: item {name}: proof of {len(data)} bytes (item {p.index + 1} of "
         f"{p.commit.body.count}, {p.hashes} hashes), "
         f"commit b3:{p.commit.digest.hex()[:16]} (#{p.seq})" + (f" -> {output}" if output not in (None, "-")
                                                                   else ""))


@main.command("verify-proof")
@click.argument("proof_file", metavar="FILE")
@click.option("--trust", "trust", multiple=True, required=True, metavar="PUBFILE",
              help="A public key the auditor trusts (repeatable).")
@click.option("--content", "content", metavar="PATH", help="Also check that PATH holds the item's exact bytes.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def verify_proof_cmd(proof_file: str, trust: tuple[str, ...], content: str | None, as_json: bool) -> None:
    """Check an inclusion proof offline: the item's path leads to the root of the signed closure commit, the
    signature is by a --trust key, and (with --content) the bytes are the item's. Exit 0 only if all hold.

    A proof shows the item was sealed in the run by that commit; it does not show the run's other items or the
    commit's place in the chain (`ledger verify` checks a whole run)."""
    from .digests import hash_file
    from .proofs import InclusionProof, verify_proof

    keys_ = [load_public_key(p) for p in trust]
    p = _decode_input(proof_file, "proof", InclusionProof.from_bytes)
    digest_size = None
    if content is not None:
        try:
            digest_size = hash_file(content)
        except FileNotFoundError:
            raise NotFound(f"{content}: no such file") from None
        except OSError as exc:
            raise StorageError(f"{content}: cannot read ({exc.strerror})") from None
    res = verify_proof(p, keys_, content_digest_size=digest_size)
    if as_json:
        _out(res.to_json())
        return
    click.echo(f"[ok  ] signature  commit b3:{res.commit.hex()[:16]} (#{res.seq}) signed by trusted key "
               f"{res.key_id.hex()[:16]}")
    click.echo(f"[ok  ] inclusion  item {res.item.name} ({res.item.kind}, {res.item.size} bytes, "
               f"b3:{res.item.blake3.hex()[:16]}) is in run {res.run}'s sealed tree ({res.hashes} hashes)")
    content_line = "the given file holds the item's bytes" if res.content_checked else "not checked (no --content)"
    click.echo(f"[ok  ] content    {content_line}")
    click.echo(f"proof verified: item {res.item.name} of run {res.run}")


MAX_INPUT = 1 << 24  # proofs and checkpoints are a few KiB; nothing larger is read


T = TypeVar("T")


def _decode_input(path: str, what: str, decode: Callable[[bytes, str], T]) -> T:
    """Read and decode a proof or checkpoint file the user hands us. Bytes that are not one at all (garbage,
    truncated, oversized, malformed) are a usage error, exit 2; one that decodes and then does not hold is exit 1,
    decided by whoever checks it."""
    try:
        return decode(_read_input(path, what), f"{what} {path}")
    except DecodeError as exc:
        raise UsageError(f"{exc} (not a {FORMAT} {what})") from None


def _read_input(path: str, what: str) -> bytes:
    try:
        with (open(path, "rb") if path != "-" else sys.stdin.buffer) as f:  # noqa: SIM115
            data = f.read(MAX_INPUT + 1)
            if len(data) > MAX_INPUT:
                raise DecodeError(f"{what} {path}: larger than any {what} can be (over {MAX_INPUT} bytes)")
            return data
    except FileNotFoundError:
        raise NotFound(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise StorageError(f"{what} {path}: cannot read ({exc.strerror})") from None


def _write_output(path: str | None, data: bytes) -> None:
    if path is None or path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write ({exc.strerror})") from None


@main.command("export")
@click.argument("run")
@click.option("-o", "--output", "output", required=True, metavar="PATH", help="The bundle file to write.")
@click.option("--no-content", is_flag=True, help="Leave the items' content out (metadata-only bundle: tree, commits, "
                                                 "criteria and typed records; verify says content was not checked).")
@click.option("--since", "since", metavar="CHECKPOINT",
              help="Start the chain at this checkpoint (a file from `ledger checkpoint -o`, which the auditor keeps) "
                   "instead of the genesis; the bundle carries the proof that the run's commit log extends it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def export_cmd(ctx: click.Context, run: str, output: str, no_content: bool, since: str | None, as_json: bool) -> None:
    """Write one file holding everything `ledger verify RUN --bundle PATH --trust KEY` needs, with no store at all:
    the run's objects, its commit, every chain link back to the genesis, the sealed policy. Keys are named by id
    only; trust stays with the auditor's --trust list."""
    from .chainproofs import Checkpoint

    cp = None if since is None else _decode_input(since, "checkpoint", Checkpoint.from_bytes)
    counts = _ledger(ctx).export(run, output, content=not no_content, since=cp)
    size = os.path.getsize(output)
    if as_json:
        _out({"run": run, "bundle": output, "bytes": size, "content": not no_content, **counts})
    else:
        click.echo(f"run {run}: bundle {output}: {counts['objects']} objects, {counts['items']} item(s), "
                   f"{size} bytes" + ("; metadata only (no content)" if no_content else ""))


def _kafka_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Broker options shared by `anchors capture` and `replay --check`: librdkafka's own properties."""
    f = click.option("--timeout", "timeout", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
                     help="Seconds to wait for the brokers in each step; past it the command fails (exit 5).")(f)
    f = click.option("--config", "config_files", multiple=True, metavar="FILE",
                     help="A librdkafka properties file (key=value lines), e.g. TLS or SASL settings.")(f)
    f = click.option("-X", "props", multiple=True, metavar="KEY=VALUE",
                     help="A librdkafka property (repeatable), e.g. -X security.protocol=SASL_SSL.")(f)
    f = click.option("--bootstrap", "bootstrap", metavar="HOST:PORT[,...]",
                     help="The brokers (bootstrap.servers).")(f)
    return f


@main.command()
@click.argument("run")
@click.option("--check", "check", is_flag=True,
              help="Re-read every sealed window from Kafka and compare it with the sealed receipts' message logs.")
@_kafka_options
@click.option("--json", "as_json", is_flag=True, help="Print the anchors (or the check) as one JSON document.")
@click.pass_context
def replay(ctx: click.Context, run: str, check: bool, bootstrap: str | None, props: tuple[str, ...],
           config_files: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """The replay anchors sealed with RUN: the exact offset range [start, end) per consumer group, topic and
    partition, the commit it comes from, and how it joins the previous sealed run of the same stream
    (first, contiguous, gap or overlap, with the exact range).

    With --check (and --bootstrap, -X, --config for the brokers): re-read exactly each sealed window with an
    independent consumer (assigned offsets, no group membership, no commits), hash every message, and compare with
    the message log the run's receipt sealed. Exit 0 when every window is identical; exit 1 naming the partition
    and the first offset that differs or is missing (retention, compaction, a rewritten topic); exit 5 when the
    brokers do not answer within --timeout."""
    if check:
        from .kafka import client_config, replay_check

        results = replay_check(_ledger(ctx), run, client_config(bootstrap, props, config_files), timeout)
        bad = [r for r in results if not r.ok]
        if as_json:
            _out({"run": run, "ok": not bad, "partitions": [pc.to_json() for pc in results]})
        else:
            for pc in results:
                g = f"group {pc.group} " if pc.group else ""
                state = "[ok  ]" if pc.ok else "[FAIL]"
                detail = f"{pc.count} message(s) re-read, identical to the sealed receipt" if pc.ok else pc.problem
                click.echo(f"{state} {g}{pc.label} [{pc.start}, {pc.end})  {detail}")
            if bad:  # one error line, naming the first failing window (the table above names them all)
                more = f" (and {len(bad) - 1} more partition(s))" if len(bad) > 1 else ""
                _err(f"error: run {run}: {bad[0].label}: {bad[0].problem}{more}")
        if bad:
            sys.exit(1)
        return
    if bootstrap or props or config_files:
        raise UsageError("--bootstrap, -X and --config go with --check")
    rows = _ledger(ctx).replay(run)
    if as_json:
        _out({"run": run, "anchors": [r.to_json() for r in rows]})
        return
    if not rows:
        _err(f"run {run}: no offsets evidence, so no replay anchors")
        return
    for r in rows:
        where = f"{(r.group + ' ') if r.group else ''}{r.topic}[{r.partition}]"
        joins = r.joins if r.range is None else f"{r.joins} [{r.range[0]}, {r.range[1]})"
        prev = f" after run {r.previous[0]} (#{r.previous[1]})" if r.previous else ""
        click.echo(f"{where:<28} [{r.start}, {r.end})  {r.end - r.start:>10} offset(s)  {joins}{prev}")
    _err(f"run {run}: {len(rows)} anchor(s) from commit b3:{rows[0].commit.hex()[:16]} (#{rows[0].seq})")


@main.group()
def anchors() -> None:
    """Replay anchors from Kafka itself (needs the extra: pip install 'ledger[kafka]')."""


@anchors.command("capture")
@click.argument("run")
@click.option("--group", "group", required=True, help="The consumer group whose committed offsets end the run.")
@click.option("--topic", "topics", multiple=True, required=True, metavar="TOPIC", help="A topic (repeatable).")
@_kafka_options
@click.option("--json", "as_json", is_flag=True, help="Print the recorded offsets as one JSON document.")
@click.pass_context
def anchors_capture(ctx: click.Context, run: str, group: str, topics: tuple[str, ...], bootstrap: str | None,
                    props: tuple[str, ...], config_files: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """Record RUN's offsets evidence from the brokers, for every partition of each --topic: start is where the
    previous sealed run of this group ended on that partition (the low watermark for a stream's first run), end
    is the group's committed offset, high the high watermark now. All partitions or nothing: an unknown topic or
    group (exit 3), unreachable brokers (exit 5) or a committed offset beyond the high watermark (exit 6) records
    nothing. Seal the run afterwards; `ledger check` shows how each range joins the previous run's."""
    from .kafka import capture, client_config

    records = capture(_ledger(ctx), run, client_config(bootstrap, props, config_files), group, list(topics),
                      timeout)
    if as_json:
        _out({"run": run, "offsets": records})
        return
    for r in records:
        click.echo(f"{r['topic']}[{r['partition']}]  [{r['start']}, {r['end']})  high {r['high']}")
    _err(f"run {run}: offsets of {len(records)} partition(s) recorded for group {group}")


@main.command("checkpoint")
@click.option("-o", "--output", "output", metavar="FILE", help="Also write the signed checkpoint to FILE.")
@click.option("--json", "as_json", is_flag=True, help="Print the head as JSON.")
@click.pass_context
def checkpoint_cmd(ctx: click.Context, output: str | None, as_json: bool) -> None:
    """The chain's signed head: the newest closure commit, whose signature covers the Merkle log of every commit
    before it. Keep the file (-o): later, `ledger consistency FILE` proves the chain only grew since."""
    lg = _ledger(ctx)
    cp = lg.checkpoint()
    if output is not None:
        _write_output(output, cp.encode())
    b = cp.commit.body
    if as_json:
        _out({"size": cp.size, "seq": b.seq, "commit": cp.commit.digest.hex(), "run": b.run,
              "log": {"size": b.log_size, "root": b.log_root.hex()}, "key_id": b.key.hex()})
    else:
        click.echo(cp.text(f"ledger/1 {lg.store.url}"), nl=False)


@main.command("consistency")
@click.argument("old", metavar="CHECKPOINT")
@click.option("-o", "--output", "output", metavar="FILE", help="Write the proof to FILE [default: stdout].")
@click.pass_context
def consistency_cmd(ctx: click.Context, old: str, output: str | None) -> None:
    """Prove that the chain's current head only appended to an older signed head (a file from `ledger
    checkpoint -o`): O(log n) hashes, checked offline by `ledger verify-consistency`."""
    from .chainproofs import Checkpoint

    cp = _decode_input(old, "checkpoint", Checkpoint.from_bytes)
    p = _ledger(ctx).consistency(cp)
    _write_output(output, p.encode())
    _err(f"consistency of #{p.old.body.seq} -> #{p.new.body.seq}: "
         f"{len(p.consistency) + len(p.inclusion)} hashes" + (f" -> {output}" if output not in (None, "-") else ""))


@main.command("verify-consistency")
@click.argument("proof_file", metavar="FILE")
@click.option("--trust", "trust", multiple=True, required=True, metavar="PUBFILE",
              help="A public key the auditor trusts (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def verify_consistency_cmd(proof_file: str, trust: tuple[str, ...], as_json: bool) -> None:
    """Check offline that the newer signed head in FILE only appended to the older one: both signatures by
    --trust keys, the old commit log a prefix of the new one, the old commit itself in the new log."""
    from .chainproofs import ConsistencyProof, verify_consistency_proof

    keys_ = [load_public_key(p) for p in trust]
    p = _decode_input(proof_file, "proof", ConsistencyProof.from_bytes)
    res = verify_consistency_proof(p, keys_)
    if as_json:
        _out(res.to_json())
        return
    click.echo(f"[ok  ] signatures   old head #{res.old_seq} b3:{res.old.hex()[:16]}, new head #{res.new_seq} "
               f"b3:{res.new.hex()[:16]}")
    click.echo(f"[ok  ] append-only  the new head's log extends the old one ({res.hashes} hashes)")
    click.echo(f"consistent: #{res.old_seq} -> #{res.new_seq}")


@main.command()
@click.option("--keep", is_flag=True, help="Keep the temporary store and print its path.")
def demo(keep: bool) -> None:
    """A realistic example on a temporary local store: three nightly runs with receipts, offsets, a reconciling
    summary and artifacts, sealed under a closure policy; a gap refused; a secret refused; tampering caught."""
    from .demo import run_demo

    sys.exit(run_demo(keep))


def run() -> NoReturn:
    """Entry point: one error line and the contract's exit code for every failure, never a traceback."""
    try:
        main.main(standalone_mode=False, prog_name="ledger")
    except LedgerError as exc:
        _err(f"error: {exc}")
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _err("error: aborted")
        sys.exit(130)
    except click.ClickException as exc:
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        _err(f"error: {exc.format_message()}{hint}")
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        _err("error: interrupted")
        sys.exit(130)
    except MemoryError:
        _err("error: out of memory")
        sys.exit(5)
    except OSError as exc:
        _err(f"error: I/O error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        sys.exit(5)
    sys.exit(0)


if __name__ == "__main__":
    run()
