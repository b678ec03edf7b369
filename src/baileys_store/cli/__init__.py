"""The ``baileys-store`` command line. Each command lives in its own ``_<name>.py`` module.

Commands are imported only when run (or listed by ``--help``), so a command's extra
dependencies never slow down or break the others.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from ..errors import StoreError
from ._context import CliContext

__all__ = ["main"]

# command name -> (module, attribute)
_COMMANDS: dict[str, tuple[str, str]] = {
    "backup": ("._backup", "backup_command"),
    "bench": ("._bench", "bench_command"),
    "cache": ("._cache", "cache_group"),
    "copy": ("._copy", "copy_command"),
    "demo": ("._demo", "demo_command"),
    "export": ("._folder", "export_command"),
    "import": ("._folder", "import_command"),
    "import-store": ("._import_store", "import_store_command"),
    "keys": ("._keys", "keys_group"),
    "outbox": ("._outbox", "outbox_group"),
    "purge": ("._purge", "purge_command"),
    "restore": ("._backup", "restore_command"),
    "serve": ("._serve", "serve_command"),
    "sessions": ("._sessions", "sessions_group"),
}


class _Group(click.Group):
    """Loads commands lazily; a :class:`StoreError` or ``OSError`` becomes one red line, exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module, __package__), attr)
            assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (StoreError, OSError) as exc:
            # One line, no traceback: these are the operator's to fix (URL, server, file).
            message = " ".join(str(exc).split()) or type(exc).__name__
            click.secho(f"Error: {message}", fg="red", err=True)
            ctx.exit(1)


@click.group(cls=_Group)
@click.option(
    "--store",
    "store_url",
    envvar="BAILEYS_STORE_DURABLE",
    metavar="URL",
    default=None,
    help="Durable store URL: sqlite:///FILE, postgresql://…, mongodb://…, redis://…, "
    "redis+sentinel://HOST:PORT[,…]/SERVICE, memory:// "
    "[env: BAILEYS_STORE_DURABLE; default: sqlite:///baileys-store.db]. Other settings come "
    "from BAILEYS_STORE_* variables.",
)
@click.version_option(package_name="baileys-store")
@click.pass_context
def main(ctx: click.Context, store_url: str | None) -> None:
    """Store WhatsApp multi-device auth state (creds + Signal keys) for Python clients."""
    ctx.obj = CliContext(store_url or None)
