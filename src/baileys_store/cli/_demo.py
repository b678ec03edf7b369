"""``baileys-store demo``: simulated WhatsApp devices exchange real Signal messages via a store."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._config import StoreConfig, redact_url
from .._store import AuthStore
from ..backends.sqlite import sqlite_path
from ._context import CliContext
from ._demo_stats import human_bytes, latency_table, summary_table


def _sqlite_bytes(config: StoreConfig) -> int | None:
    """Size of the SQLite database file plus its WAL, or ``None`` for other backends."""
    if urlsplit(config.durable).scheme != "sqlite":
        return None
    path = sqlite_path(config.durable)
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


@click.command("demo")
@click.option(
    "--devices",
    type=click.IntRange(2, 50),
    default=4,
    show_default=True,
    help="Simulated WhatsApp devices (one store session each).",
)
@click.option(
    "--messages",
    type=click.IntRange(0),
    default=200,
    show_default=True,
    help="1:1 messages between random pairs of devices.",
)
@click.option(
    "--group-messages",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    help="Messages to a group of all devices.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Picks who talks to whom.")
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the demo sessions in a --store you gave (by default they are deleted "
    "at the end; the temporary store of a run without --store is always kept).",
)
@click.pass_obj
def demo_command(
    obj: CliContext, *, devices: int, messages: int, group_messages: int, seed: int, keep: bool
) -> None:
    """Run simulated devices on pyaileys' real Signal stack with all state in the store.

    Each device gets fresh creds and 812 one-time pre-keys, opens Signal sessions (X3DH) to
    its chat partners and exchanges 1:1 and group messages; every session, pre-key, sender key
    and identity key is read from and written to the store. Without --store the demo writes a
    SQLite file in a new temporary folder. Exits with status 1 if any message fails to decrypt.
    """
    try:
        from ._demo_run import DemoResult, run_demo  # noqa: PLC0415 - pyaileys is needed only here
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"the demo needs `pip install baileys-store[cli]` (missing module {exc.name})"
        ) from None
    temp_dir = None if obj.store_url else Path(tempfile.mkdtemp(prefix="baileys-store-demo-"))
    config = obj.config(f"sqlite:///{temp_dir / 'demo.db'}" if temp_dir else None)
    namespace = f"demo-{secrets.token_hex(4)}"
    out = Console(highlight=False)
    out.print(
        f"baileys-store demo: {devices} devices, {messages} 1:1 and {group_messages} "
        f"group messages",
        soft_wrap=True,
    )
    out.print(f"store: {redact_url(config.durable)} (namespace {namespace})", soft_wrap=True)

    async def run() -> DemoResult:
        async with AuthStore(config) as store:
            with Progress(
                TextColumn("{task.description:<15}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as progress:
                return await run_demo(
                    store,
                    namespace,
                    devices=devices,
                    messages=messages,
                    group_messages=group_messages,
                    seed=seed,
                    progress=progress,
                    delete_after=temp_dir is None and not keep,
                )

    result = asyncio.run(run())
    c = result.stats.counts
    rows = [
        ("devices (store sessions)", f"{devices} ({result.store_sessions})"),
        ("1:1 messages sent / decrypted", f"{c['1:1 sent']} / {c['1:1 decrypted']}"),
        ("group messages sent", str(c["group sent"])),
        (
            "group decrypts ok / expected",
            f"{c['group decrypted']} / {c['group decrypts expected']}",
        ),
        ("sender keys distributed", str(c["sender keys distributed"])),
        ("X3DH handshakes", str(c["X3DH handshakes"])),
        ("key store gets (ids read)", f"{c['get calls']} ({c['ids read']})"),
        (
            "key store sets (records written / deleted)",
            f"{c['set calls']} ({c['records written']} / {c['records deleted']})",
        ),
        ("Signal sessions stored", str(result.signal_sessions)),
        ("records stored (keys + creds)", str(result.records)),
        ("bytes stored (sum of blobs)", human_bytes(result.bytes_stored)),
    ]
    file_bytes = _sqlite_bytes(config)
    if file_bytes is not None:
        rows.append(("SQLite file size (db + wal)", human_bytes(file_bytes)))
    rows.append(("wall time", f"{result.wall_seconds:.1f} s"))
    out.print(summary_table(rows, "Demo summary"))
    out.print(latency_table(result.stats))
    if temp_dir is not None:
        out.print(
            f"The store was written to {temp_dir / 'demo.db'} (delete the folder when done).",
            soft_wrap=True,
        )
    elif keep:
        out.print(f"The demo sessions were kept in namespace {namespace}.")
    else:
        out.print("The demo sessions were deleted from the store (--keep keeps them).")
    lost = c["1:1 sent"] - c["1:1 decrypted"] + c["group decrypts expected"] - c["group decrypted"]
    if result.failures or lost:
        for line in result.failures[:5]:
            click.echo(f"  {line}", err=True)
        click.secho(
            f"Error: {lost} message(s) failed to decrypt ({len(result.failures)} "
            "failures, first ones above)",
            fg="red",
            err=True,
        )
        raise SystemExit(1)
    out.print("[green]Every message decrypted.[/green]")
