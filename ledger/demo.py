"""``ledger demo``: a realistic closure on a temporary local store that an operator can follow step by step.

Three nightly runs of a stream job reading two Kafka topics (3 partitions each): every run records receipts from
two sources, the offsets it consumed, a downstream summary that reconciles with the receipts, and the artifact
versions that ran, and is sealed under a closure policy. The second run continues the first's offsets exactly; the
third skips offsets on one partition, and ``check`` and ``seal`` refuse it naming the exact gap. Then a file holding
a secret is refused before it is stored, and a flipped byte in the store makes ``verify`` fail, naming the item.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import click

from .api import Ledger
from .closure import Assessment
from .errors import LedgerError
from .keys import SigningKey, generate_keyfile
from .packs import pack_key

TOPICS = {"orders": 3, "payments": 3}
POLICY = """\
# Closure policy of the nightly stream job (see `ledger check --help` and spec/policy.md).
min = { receipt = 2, summary = 1, artifact = 2 }
artifacts = ["ingest-worker", "dedup-model"]
topics = { orders = 3, payments = 3 }     # every partition needs an offsets record
continuity = ["*"]                         # each range starts where the previous sealed run ended

[[reconcile]]
name = "admitted-vs-outcomes"              # everything admitted was ingested, a duplicate, or quarantined
left = ["receipt.count"]
right = ["summary.ingested", "summary.duplicates", "summary.quarantined"]

[[reconcile]]
name = "consumed-vs-admitted"              # every offset consumed was admitted
left = ["offsets.span"]
right = ["receipt.count"]
"""


def _step(n: int, text: str) -> None:
    click.secho(f"\n{n}. {text}", bold=True)


def _report(rep: Assessment) -> None:
    for c in rep.criteria:
        click.echo(f"   [{'ok' if c.ok else 'FAIL'}] {c.name:<28} {c.detail}")


def _run_output(work: str, run: str, rows: int) -> str:
    data = os.path.join(work, run)
    os.makedirs(os.path.join(data, "batches"))
    for i in range(3):
        with open(os.path.join(data, "batches", f"part-{i}.csv"), "w") as f:
            f.write("id,value\n" + "".join(f"{i * 1000 + j},{j * j}\n" for j in range(rows // 3)))
    with open(os.path.join(data, "job.log"), "w") as f:
        f.write(f"job {run} started\njob {run} finished\n")
    return data


def _record_run(lg: Ledger, work: str, run: str, ranges: dict[tuple[str, int], tuple[int, int]],
                model: str = "v14") -> None:
    """One run's evidence: files, offsets per partition, a receipt per source, the summary, the artifacts."""
    res = lg.add(run, [_run_output(work, run, 300)], as_name="output")
    click.echo(f"   + {len(res.added)} output files (content-addressed, BLAKE3)")
    offsets = [{"topic": t, "partition": p, "start": s, "end": e, "group": "nightly"} for (t, p), (s, e)
               in sorted(ranges.items())]
    lg.record(run, "offsets", offsets)
    click.echo("   + offsets  " + ", ".join(f"{o['topic']}[{o['partition']}] [{o['start']}, {o['end']})"
                                            for o in offsets))
    admitted = {t: sum(e - s for (tt, _), (s, e) in ranges.items() if tt == t) for t in TOPICS}
    lg.record(run, "receipt", [{"source": f"kafka-{t}", "count": n} for t, n in admitted.items()])
    total = sum(admitted.values())
    duplicates, quarantined = total // 50, total // 100
    lg.record(run, "summary", {"ingested": total - duplicates - quarantined, "duplicates": duplicates,
                               "quarantined": quarantined, "emitted": total - duplicates - quarantined})
    click.echo("   + receipts " + ", ".join(f"kafka-{t} {n}" for t, n in admitted.items())
               + f"; summary: {total} admitted = ingested + duplicates + quarantined")
    lg.record(run, "artifact", [{"name": "ingest-worker", "version": "2026.11.3"},
                                {"name": "dedup-model", "version": model,
                                 "digest": "sha256:" + ("5e" if model == "v14" else "6f") * 32}])
    lg.record(run, "decision", {"name": "publish", "outcome": "approved", "reason": "all criteria hold"})
    click.echo(f"   + artifacts ingest-worker 2026.11.3, dedup-model {model}; decision publish=approved")


def _seal_and_verify(lg: Ledger, run: str, key: SigningKey, policy: list[str]) -> bool:
    sealed = lg.seal(run, key, policy=policy)
    body = sealed.commit.body
    click.echo(f"   sealed: commit b3:{sealed.digest.hex()[:16]} (#{sealed.seq}), {body.count} items, "
               f"{len(body.anchors)} replay anchors, policy b3:{body.policy.hex()[:16] if body.policy else '-'}")
    result = lg.verify(run, [key.public])
    click.echo(f"   verify: {'ok' if result.ok else 'FAILED'} ({', '.join(c.name for c in result.checks)})")
    return result.ok


def run_demo(keep: bool = False) -> int:
    work = tempfile.mkdtemp(prefix="ledger-demo-")
    try:
        return _demo(work)
    finally:
        if keep:
            click.echo(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _demo(work: str) -> int:
    store_dir = os.path.join(work, "store")
    click.echo(f"temporary store: {store_dir}")
    lg = Ledger.open(store_dir)
    _step(1, "ledger init; ledger keys generate --out sealer.key — the store, and the sealer's Ed25519 key")
    lg.init()
    key = generate_keyfile(os.path.join(work, "sealer.key"))
    click.echo(f"   store {lg.store.url}\n   key id {key.public.key_id.hex()} (auditors get only sealer.key.pub)")
    policy = os.path.join(work, "nightly-policy.toml")
    with open(policy, "w") as f:
        f.write(POLICY)
    click.echo("   closure policy nightly-policy.toml:")
    for line in POLICY.splitlines()[1:]:
        click.echo(f"     {line}")

    night1 = {(t, p): (0, 100 + 10 * p) for t in TOPICS for p in range(TOPICS[t])}
    _step(2, "run nightly-24: ledger add / ledger record — files, offsets, receipts, summary, artifacts")
    _record_run(lg, work, "nightly-24", night1)
    _step(3, "ledger check nightly-24 --policy nightly-policy.toml — every criterion, nothing written")
    _report(lg.check("nightly-24", [policy]))
    _step(4, "ledger seal nightly-24 --key sealer.key --policy nightly-policy.toml; ledger verify")
    if not _seal_and_verify(lg, "nightly-24", key, [policy]):
        return 1

    night2 = {tp: (end, end + 40) for tp, (_, end) in night1.items()}
    _step(5, "run nightly-25 continues every partition exactly where nightly-24 ended (and ships dedup-model v15)")
    _record_run(lg, work, "nightly-25", night2, model="v15")
    rep = lg.check("nightly-25", [policy])
    click.echo("   " + next(f"[ok] continuity: {c.detail}" for c in rep.criteria if c.name == "continuity"))
    if not _seal_and_verify(lg, "nightly-25", key, [policy]):
        return 1

    _step(6, "ledger diff nightly-24 nightly-25 — what changed, walking only the subtrees that differ")
    d = lg.diff("nightly-24", "nightly-25")
    for change in d.changes:
        if change.fields:
            click.echo(f"   ~ {change.name}: " + ", ".join(
                f"{f.field} " + (f"[{f.a[0]}, {f.a[1]}) -> [{f.b[0]}, {f.b[1]})" if f.field == "range" else
                                 f"{f.a} -> {f.b}") for f in change.fields if f.field != "digest"))
    click.echo(f"   {d.summary()} ({d.counter.nodes_read} tree nodes read)")

    night3 = {tp: (end, end + 40) for tp, (_, end) in night2.items()}
    s, e = night3[("payments", 1)]
    night3[("payments", 1)] = (s + 7, e)  # seven offsets of payments[1] never read
    _step(7, "run nightly-26 skipped 7 offsets of payments[1]: check and seal refuse it")
    _record_run(lg, work, "nightly-26", night3)
    rep = lg.check("nightly-26", [policy])
    for c in rep.criteria:
        if not c.ok:
            click.secho(f"   [FAIL] {c.name}: {c.detail}", fg="red")
    before = [x.digest for x in lg.log()]
    err: Any = None
    try:
        lg.seal("nightly-26", key, policy=[policy])
    except LedgerError as exc:
        err = exc
    if err is None or [x.digest for x in lg.log()] != before:
        click.secho("   unexpected: the broken run was sealed", fg="red")
        return 1
    click.echo(f"   seal refused (exit {err.exit_code}), chain unchanged: {err}")

    _step(8, "evidence holding a secret is refused before a byte of it is stored")
    leaky = os.path.join(work, "deploy.env")
    with open(leaky, "w") as out:
        out.write("REGION=eu-west-1\nAWS_ACCESS_KEY_ID=AKIA" + "Z7QH3XWVJ2MNB4PL" + "\n")
    try:
        lg.add("nightly-26", [leaky])
        click.secho("   unexpected: the secret was accepted", fg="red")
        return 1
    except LedgerError as exc:
        click.echo(f"   refused (exit {exc.exit_code}): {exc}")

    _step(9, "tamper: flip one byte of nightly-24's stored evidence, as a bad disk or a bad actor would")
    marker = lg.sealed("nightly-24").marker
    assert marker is not None
    path = lg.store.local_path(pack_key(marker.packs[0]))
    assert path is not None
    with open(path, "r+b") as fb:
        fb.seek(20)
        b = fb.read(1)
        fb.seek(20)
        fb.write(bytes([b[0] ^ 0x01]))
    click.echo(f"   flipped byte 20 of {os.path.relpath(path, store_dir)}")
    result = lg.verify("nightly-24", [key.public])
    for check in result.checks:
        click.echo(f"   [{'ok' if check.ok else 'FAIL'}] {check.name:<9} {check.detail}")
    if result.ok:
        click.secho("   unexpected: tampering went unnoticed", fg="red")
        return 1
    click.secho("\ndemo complete: two runs sealed under the policy and verified; the gap, the secret and the "
                "tampering were all caught.", fg="green")
    return 0
