"""``baileys-store copy``: copy sessions between any two stores, online, resumable, verified.

The logic is :func:`baileys_store.integrations._copy.copy_sessions`; this module opens the two
stores, shows a progress bar (on stderr) and prints a summary table, or with ``--json`` one JSON
document on stdout with these keys (stable):

``ok`` (bool: every session is at the destination), ``dry_run`` (bool), ``seen``, ``copied``,
``replaced``, ``identical``, ``conflicts``, ``in_use``, ``changed``, ``failed``, ``keys`` (ints,
see :class:`~baileys_store.results.CopyReport`), ``seconds`` (float), and ``sessions``: a list
of ``{"namespace", "session", "status", "keys", "detail"}`` for the sessions refused, skipped or
failed. The exit status is 1 unless ``ok``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from .._config import StoreConfig
from .._store import AuthStore
from ..backends.sqlite import SQLiteDurable
from ..backends.sqlite._url import sqlite_path
from ..errors import ConfigError, StoreError
from ..integrations._copy import copy_sessions
from ..results import CopyReport, SessionCopy
from ._sessions import one_line

ENV_PREFIX = "BAILEYS_STORE_"
# One process environment cannot name two stores' tiers: --from/--to and --*-cache do.
_PER_STORE = (ENV_PREFIX + "DURABLE", ENV_PREFIX + "CACHE")
_SHOWN = 50  # problem rows printed in the table (all of them are in --json)


def _env_file(path: Path) -> dict[str, str]:
    """``NAME=VALUE`` lines (``#`` comments, ``export`` and quotes allowed) of an env file."""
    out: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep:
            raise ConfigError(f"{path}:{n}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name.strip()] = value
    return out


def side_config(url: str, cache: str | None, env_file: Path | None) -> StoreConfig:
    """The config of one side: its URLs over ``BAILEYS_STORE_*`` (the env file's, if given).

    Without an env file the process's ``BAILEYS_STORE_*`` settings apply (both sides share
    them) except ``DURABLE`` and ``CACHE``; an env file's ``CACHE`` is used when ``cache`` is
    not given. An in-process ``memory://`` cache is dropped (a copy gains nothing from it).
    """
    source: Mapping[str, str] = _env_file(env_file) if env_file else os.environ
    environ = {
        k: v
        for k, v in source.items()
        if k.startswith(ENV_PREFIX) and (env_file is not None or k not in _PER_STORE)
    }
    environ.pop(ENV_PREFIX + "DURABLE", None)
    if cache is not None:
        environ[ENV_PREFIX + "CACHE"] = cache
    elif env_file is None:
        environ[ENV_PREFIX + "CACHE"] = "none"
    config = StoreConfig.from_env(environ, durable=url, outbox_worker=False)
    if config.cache is not None and urlsplit(config.cache).scheme == "memory":
        config = config.model_copy(update={"cache": None})
    return config


def _store(config: StoreConfig, *, create: bool) -> AuthStore:
    store = AuthStore(config)
    if isinstance(store.durable, SQLiteDurable):
        store.durable.create = create
    return store


def _missing_sqlite(url: str) -> bool:
    return urlsplit(url).scheme == "sqlite" and not sqlite_path(url).exists()


async def _run(
    source: AuthStore,
    dest: AuthStore,
    *,
    namespace: str | None,
    session: str | None,
    replace: bool,
    dry_run: bool,
    show_bar: bool,
) -> CopyReport:
    # The source first: a bad source never creates (or touches) the destination.
    async with source:
        total = 1 if session else sum([1 async for _ in source.list_sessions(namespace)])
        async with dest:
            columns = (
                TextColumn("checking" if dry_run else "copying"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sessions, {task.fields[keys]} keys"),
            )
            bar = Progress(*columns, console=Console(stderr=True), transient=True)
            with bar:
                task = bar.add_task("copy", total=total, keys=0, visible=show_bar)

                def step(_: SessionCopy, report: CopyReport) -> None:
                    bar.update(task, completed=report.seen, keys=report.keys)

                return await copy_sessions(
                    source,
                    dest,
                    namespace=namespace,
                    session=session,
                    replace=replace,
                    dry_run=dry_run,
                    progress=step,
                )


def _as_json(report: CopyReport, dry_run: bool) -> str:
    doc = {"ok": report.ok, "dry_run": dry_run, **asdict(report)}
    doc["seconds"] = round(report.seconds, 3)
    doc["sessions"] = [
        {
            "namespace": s.namespace,
            "session": s.session_id,
            "status": s.status,
            "keys": s.keys,
            "detail": s.detail,
        }
        for s in report.sessions
    ]
    return json.dumps(doc, sort_keys=True)


def _print(report: CopyReport, dry_run: bool) -> None:
    out = Console(highlight=False, soft_wrap=True, markup=False)
    table = Table("Outcome", "Sessions")
    rows = (
        ("would be copied" if dry_run else "copied", report.copied),
        ("  of which replaced", report.replaced),
        ("identical (skipped)", report.identical),
        ("conflict (refused)", report.conflicts),
        ("in use (skipped)", report.in_use),
        ("changing (skipped)", report.changed),
        ("failed", report.failed),
    )
    for label, n in rows:
        table.add_row(label, str(n))
    table.add_row("total", str(report.seen), style="bold")
    out.print(table)
    if report.sessions:
        problems = Table("Namespace", "Session", "Status", "Detail")
        for s in report.sessions[:_SHOWN]:
            problems.add_row(s.namespace, s.session_id, s.status, s.detail)
        out.print(problems)
        if len(report.sessions) > _SHOWN:
            out.print(f"... and {len(report.sessions) - _SHOWN} more (see --json)")
    rate = report.keys / report.seconds if report.seconds else 0.0
    verb = "would copy" if dry_run else "copied"
    out.print(f"{verb} {report.keys} keys in {report.seconds:.1f} s ({rate:,.0f} keys/s)")


@click.command("copy")
@click.option("--from", "from_url", required=True, metavar="URL", help="Source durable URL.")
@click.option("--to", "to_url", required=True, metavar="URL", help="Destination durable URL.")
@click.option("--from-cache", metavar="URL", help="The source's Redis cache (hybrid source).")
@click.option("--to-cache", metavar="URL", help="The destination's Redis cache (hybrid).")
@click.option(
    "--from-env",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Env file of the source's BAILEYS_STORE_* settings (instead of the environment's).",
)
@click.option(
    "--to-env",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Env file of the destination's BAILEYS_STORE_* settings.",
)
@click.option("--namespace", default=None, help="Only this namespace [default: all].")
@click.option("--session", "session_id", default=None, metavar="S", help="Only this session.")
@click.option("--replace", is_flag=True, help="Overwrite destination sessions that differ.")
@click.option("--dry-run", is_flag=True, help="Write nothing; report what would be done.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def copy_command(
    *,
    from_url: str,
    to_url: str,
    from_cache: str | None,
    to_cache: str | None,
    from_env: Path | None,
    to_env: Path | None,
    namespace: str | None,
    session_id: str | None,
    replace: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Copy sessions (creds and every key) from one store to another, online.

    Any two stores: sqlite:///FILE, postgresql://…, mongodb://…, redis://… (Redis-only), and
    hybrids with --from-cache/--to-cache. Values are decoded by the source and encoded by the
    destination, so the two may use different encryption: settings come from BAILEYS_STORE_*
    (both sides), or per side from --from-env/--to-env files.

    Keys are written first, creds last; every copied session is read back and verified (counts
    and a SHA-256 content digest). Rerun after an interruption to finish: sessions already
    identical are skipped. A destination session that differs is refused unless --replace
    (deleted, then copied). Sessions in use at the destination (leased by another process) are
    skipped and counted. Exit status 1 unless every session is at the destination.
    """
    try:
        src_config = side_config(from_url, from_cache, from_env)
        dst_config = side_config(to_url, to_cache, to_env)
        source = _store(src_config, create=False)
        if dry_run and _missing_sqlite(to_url):  # nothing there yet: compare with nothing
            dest = AuthStore(StoreConfig(durable="memory://", cache=None))
        else:
            dest = _store(dst_config, create=not dry_run)
        report = asyncio.run(
            _run(
                source,
                dest,
                namespace=namespace,
                session=session_id,
                replace=replace,
                dry_run=dry_run,
                show_bar=not as_json and sys.stderr.isatty(),
            )
        )
    except (StoreError, OSError) as exc:
        raise click.ClickException(one_line(exc)) from None
    if as_json:
        click.echo(_as_json(report, dry_run))
    else:
        _print(report, dry_run)
    if session_id is not None and report.seen == 0:
        raise click.ClickException(f"no session {namespace or 'default'}/{session_id} to copy")
    if not report.ok:
        problems = report.seen - report.copied - report.identical
        raise click.ClickException(f"{problems} session(s) not copied: see above, then rerun")
