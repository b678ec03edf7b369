"""``baileys-store bench``: run the benchmark and write JSON, Markdown and PNG plots."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


@click.command("bench")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--quick", is_flag=True, help="Smoke run in seconds (tiny budgets; numbers are not meaningful)."
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Repetitions; medians are quoted.",
)
@click.option(
    "--stores",
    default="",
    metavar="NAMES",
    help="Comma-separated store names or prefixes (e.g. 'sqlite,pyaileys-folder'); "
    "default: all. See --list-stores.",
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default=None,
    help="Redis for the redis rows and the floor [env: REDIS_URL].",
)
@click.option(
    "--postgres-dsn",
    envvar="POSTGRES_DSN",
    default=None,
    help="PostgreSQL server (URL form); a fresh database is created and dropped "
    "[env: POSTGRES_DSN].",
)
@click.option(
    "--mongodb-uri",
    envvar="MONGODB_URI",
    default=None,
    help="MongoDB server; a fresh database is used and dropped [env: MONGODB_URI].",
)
@click.option(
    "--sessions",
    type=click.IntRange(1),
    default=None,
    help="Resident sessions to import per store (default 1000; 10 with --quick).",
)
@click.option(
    "--concurrency",
    default="1,8,64,256",
    show_default=True,
    help="Concurrent sessions for the throughput runs.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Workload RNG seed.")
@click.option(
    "--signal/--no-signal",
    default=True,
    show_default=True,
    help="Also drive pyaileys' real Signal stack on each store.",
)
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG plots.")
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)
@click.option("--list-stores", is_flag=True, help="List the stores and exit.")
@click.option(
    "--nats-url",
    envvar="NATS_URL",
    default=None,
    help="NATS JetStream for the --ha broker rows [env: NATS_URL].",
)
@click.option(
    "--ha",
    is_flag=True,
    help="Measure the high-availability options instead: write-behind set with 0 vs 1 replica "
    "acks (starts its own master + replica), and the Redis outbox vs NATS JetStream (needs "
    "--redis-url and --nats-url). Writes ha.json/.md.",
)
@click.option(
    "--mobility",
    is_flag=True,
    help="Measure data mobility instead: copy SQLite -> PostgreSQL, backup, restore, peak RSS "
    "(needs --postgres-dsn; --sessions default 1000, 20 with --quick). Writes mobility.json/.md.",
)
def bench_command(
    *,
    out: Path,
    quick: bool,
    repeat: int,
    stores: str,
    redis_url: str | None,
    postgres_dsn: str | None,
    mongodb_uri: str | None,
    sessions: int | None,
    concurrency: str,
    seed: int,
    signal: bool,
    plots: bool,
    progress: bool,
    list_stores: bool,
    nats_url: str | None,
    ha: bool,
    mobility: bool,
) -> None:
    """Benchmark every store side by side and write results.json, results.md and plots.

    Stores whose server is not given or does not answer are listed as skipped, with the reason.
    Exits with status 1 if a store failed during the run.
    """
    try:
        from ..bench import SPECS, BenchOptions, run  # noqa: PLC0415 - needs the bench extra
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"the bench needs `pip install baileys-store[bench]` (missing module {exc.name})"
        ) from None
    if mobility:
        _mobility(postgres_dsn, sessions or (20 if quick else 1000), out, seed)
        return
    if ha:
        from ..bench._ha_run import run_ha  # noqa: PLC0415 - needs the bench extras

        click.echo(asyncio.run(run_ha(redis_url, nats_url, out, quick=quick)), nl=False)
        return
    if list_stores:
        for spec in SPECS:
            click.echo(f"{spec.name:<20} {spec.group:<9} {spec.description}")
        return
    try:
        levels = tuple(int(c) for c in _csv(concurrency))
    except ValueError:
        raise click.BadParameter(
            "expected integers like 1,8,64", param_hint="--concurrency"
        ) from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("expected positive integers", param_hint="--concurrency")
    options = BenchOptions(
        out=out,
        quick=quick,
        repeat=repeat,
        stores=_csv(stores),
        urls={"redis": redis_url, "postgres": postgres_dsn, "mongodb": mongodb_uri},
        sessions=sessions,
        concurrency=levels,
        seed=seed,
        signal=signal,
        progress=progress,
    )
    if not options.selected():
        raise click.BadParameter(f"no store matches {stores!r}", param_hint="--stores")
    results = run(options, plots=plots)
    failed = False
    for store in results["stores"]:
        if store["status"] != "ok":
            failed |= store["status"] == "failed"
            click.echo(f"{store['name']}: {store['status']}: {store['reason']}", err=True)
    checks = [t for t in results["targets"] if t["met"] is not None]
    click.echo(
        f"{sum(1 for t in checks if t['met'])} of {len(checks)} target checks met; "
        f"wall time {results['wall_seconds']:.0f} s; results in {out}/"
    )
    if failed:
        raise SystemExit(1)


def _mobility(postgres_dsn: str | None, sessions: int, out: Path, seed: int) -> None:
    if not postgres_dsn:
        raise click.UsageError("--mobility needs --postgres-dsn (or POSTGRES_DSN)")
    from ..bench._mobility import run_mobility  # noqa: PLC0415 - needs the bench extras

    asyncio.run(run_mobility(postgres_dsn, sessions, out, seed))
    click.echo((out / "mobility.md").read_text(), nl=False)
