"""``ledger demo``: a complete run on a temporary local store that an operator can follow step by step:
init, keys, add, record, seal, verify (passes), tamper with one stored byte, verify (fails, naming the item)."""

from __future__ import annotations

import os
import shutil
import tempfile

import click

from .api import Ledger
from .keys import generate_keyfile
from .packs import pack_key


def _step(n: int, text: str) -> None:
    click.secho(f"\n{n}. {text}", bold=True)


def run_demo(keep: bool = False) -> int:
    work = tempfile.mkdtemp(prefix="ledger-demo-")
    try:
        store_dir = os.path.join(work, "store")
        data = os.path.join(work, "run-output")
        os.makedirs(os.path.join(data, "batches"))
        for i in range(3):
            with open(os.path.join(data, "batches", f"part-{i}.csv"), "w") as f:
                f.write("id,value\n" + "".join(f"{i * 100 + j},{j * j}\n" for j in range(100)))
        with open(os.path.join(data, "job.log"), "w") as f:
            f.write("job started\njob finished: 300 rows\n")
        click.echo(f"temporary store: {store_dir}")

        lg = Ledger.open(store_dir)
        _step(1, "ledger init — create the store")
        lg.init()
        click.echo(f"   store created at {lg.store.url}")

        _step(2, "ledger keys generate — the sealer's Ed25519 key; the auditor gets only the .pub")
        key = generate_keyfile(os.path.join(work, "sealer.key"))
        pub = key.public
        click.echo(f"   key id {pub.key_id.hex()}")

        run = "demo-run-1"
        _step(3, f"ledger add {run} run-output/ — evidence items, content-addressed (BLAKE3)")
        res = lg.add(run, [data])
        for e in res.added:
            click.echo(f"   + {e.name:<22} {e.size:>6} bytes  b3:{e.blake3.hex()[:16]}")
        res = lg.record(run, "summary", {"ingested": 300, "duplicates": 0, "quarantined": 0, "emitted": 300},
                        name="summary.json")
        click.echo(f"   + {res.added[0].name:<22} {res.added[0].size:>6} bytes  (record of kind summary)")

        _step(4, f"ledger seal {run} --key sealer.key — check, build the tree, sign, append the commit")
        sealed = lg.seal(run, key)
        click.echo(f"   commit b3:{sealed.digest.hex()[:16]} (#{sealed.seq}) over {sealed.commit.body.count} items")
        again = None
        try:
            lg.seal(run, key)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            again = exc
        click.echo(f"   sealing again is refused: {again}")

        _step(5, f"ledger verify {run} --trust sealer.key.pub — what an auditor runs")
        result = lg.verify(run, [pub])
        for c in result.checks:
            click.echo(f"   [{'ok' if c.ok else 'FAIL'}] {c.name:<9} {c.detail}")
        if not result.ok:
            click.secho("   unexpected: the fresh run did not verify", fg="red")
            return 1

        _step(6, "tamper: flip one byte of stored evidence, as a bad disk or a bad actor would")
        marker = lg.sealed(run).marker
        assert marker is not None
        path = lg.store.local_path(pack_key(marker.packs[0]))
        assert path is not None
        with open(path, "r+b") as f:
            f.seek(20)
            b = f.read(1)
            f.seek(20)
            f.write(bytes([b[0] ^ 0x01]))
        click.echo(f"   flipped byte 20 of {os.path.relpath(path, store_dir)}")

        _step(7, f"ledger verify {run} again — it must fail and name what broke")
        result = lg.verify(run, [pub])
        for c in result.checks:
            click.echo(f"   [{'ok' if c.ok else 'FAIL'}] {c.name:<9} {c.detail}")
        if result.ok:
            click.secho("   unexpected: tampering went unnoticed", fg="red")
            return 1
        click.secho("\ndemo complete: the sealed run verified, and the tampered one was caught.", fg="green")
        return 0
    finally:
        if keep:
            click.echo(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
