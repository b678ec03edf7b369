"""``baileys-store serve``: the store's health and metrics endpoints over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from .._store import AuthStore
from ..errors import StoreError
from ..observability import install_redaction, serve
from ._sessions import cli_config, one_line, store_option


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0: any free port, printed at start).",
)
@click.option(
    "--worker/--no-worker",
    default=False,
    show_default=True,
    help="Also drain the write-behind outbox in this process.",
)
@store_option
def serve_command(*, host: str, port: int, worker: bool, store_url: str | None) -> None:
    """Serve /health (liveness), /ready (the store can serve) and /metrics until SIGINT/SIGTERM.

    /health never touches the tiers, so a database outage does not get the process restarted;
    /ready answers 503 when the store cannot serve (see `AuthStore.check()`).
    """
    install_redaction()

    async def main() -> None:
        config = cli_config(store_url).model_copy(update={"outbox_worker": worker})
        async with AuthStore(config) as store, await serve(store, host=host, port=port) as srv:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            click.echo(f"Serving http://{srv.host}:{srv.port}/health, /ready, /metrics", err=False)
            await stop.wait()

    try:
        asyncio.run(main())
    except (StoreError, OSError) as exc:
        raise click.ClickException(one_line(exc)) from None
