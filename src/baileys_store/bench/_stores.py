"""Every store under test: the baselines and each of our backends and modes.

A new backend or mode (hybrid write-through / write-behind, L1) joins the bench by appending a
:class:`StoreSpec` to :data:`SPECS`; the runners, report, targets and plots pick it up.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import errors
from .._config import StoreConfig
from .._store import AuthStore
from ._baselines import BlobTarget, FolderTarget, sqlite_size
from ._servers import (
    create_postgres_db,
    drop_mongo_db,
    fresh_name,
    mongo_counter,
    mongo_size,
    postgres_size,
    probe,
    redis_memory,
    redis_unlink_namespace,
    with_database,
)
from ._specs import StoreSpec
from ._workload import KeyStoreLike


class Target(Protocol):
    """An opened store under test."""

    def keys(self, session_id: str) -> KeyStoreLike:
        """The key store of one session."""

    async def save_creds(self, session_id: str, creds: dict[str, Any]) -> None:
        """Persist a session's whole creds object."""

    async def footprint(self) -> dict[str, int | None]:
        """``disk_bytes`` / ``memory_bytes`` the store uses now (``None``: not measurable)."""

    async def close(self) -> None:
        """Release everything and delete what the run created on servers."""


class SkipError(Exception):
    """The store cannot run here; the message says why (it is reported, never dropped)."""


@dataclass(slots=True)
class BenchEnv:
    """Where stores put their data in this run."""

    workdir: Path
    namespace: str
    urls: dict[str, str | None]


Footprint = Callable[[], Awaitable[dict[str, int | None]]]
Cleanup = Callable[[], Awaitable[None]]


class OurTarget:
    """An :class:`AuthStore` seen through the :class:`Target` interface."""

    def __init__(
        self,
        store: AuthStore,
        namespace: str,
        footprint: Footprint,
        cleanup: list[Cleanup],
        *,
        purge: bool = False,
    ) -> None:
        self.store = store
        self._purge = purge
        self._ns = namespace
        self._footprint = footprint
        self._cleanup = cleanup
        self._versions: dict[str, int] = {}

    def keys(self, session_id: str) -> KeyStoreLike:
        """``store.session(id).keys``."""
        return self.store.session(session_id, namespace=self._ns).keys

    async def save_creds(self, session_id: str, creds: dict[str, Any]) -> None:
        """Compare-and-set save, as :class:`~baileys_store.CredsSaver` does."""
        session = self.store.session(session_id, namespace=self._ns)
        expected = self._versions.get(session_id, 0)
        self._versions[session_id] = await session.save_creds(creds, expected_version=expected)

    async def footprint(self) -> dict[str, int | None]:
        """Size figures from the durable tier (and Redis memory when Redis is used)."""
        return await self._footprint()

    async def close(self) -> None:
        """Close the store, then drop what the run created."""
        try:
            if self._purge:  # shared servers: delete our sessions through the API first
                ids = [i.session_id async for i in self.store.list_sessions(self._ns)]
                for sid in ids:
                    await self.store.session(sid, namespace=self._ns).delete()
        finally:
            await self._close()

    async def _close(self) -> None:
        try:
            await self.store.close()
        finally:
            for step in self._cleanup:
                await step()


SizeProbe = Callable[[dict[str, int | None]], Awaitable[None]]


@dataclass(slots=True)
class _Plan:
    """The durable URL of a run, how to measure its size, and what to drop afterwards."""

    durable: str
    sizes: list[SizeProbe] = field(default_factory=list)
    cleanup: list[Cleanup] = field(default_factory=list)


async def _server_urls(spec: StoreSpec, env: BenchEnv) -> dict[str, str]:
    urls: dict[str, str] = {}
    for kind in spec.needs:
        url = env.urls.get(kind)
        if not url:
            option = {
                "redis": "--redis-url",
                "postgres": "--postgres-dsn",
                "mongodb": "--mongodb-uri",
            }[kind]
            raise SkipError(f"no {kind} server given ({option})")
        if (reason := await probe(url)) is not None:
            raise SkipError(reason)
        urls[kind] = url
    return urls


async def _plan(spec: StoreSpec, root: Path, urls: dict[str, str]) -> _Plan:
    if spec.durable == "sqlite":
        db_path = root / "store.db"

        async def disk(out: dict[str, int | None]) -> None:
            out["disk_bytes"] = await asyncio.to_thread(sqlite_size, db_path)

        return _Plan(f"sqlite:///{db_path}", [disk], [_rmtree(root)])
    if spec.durable == "postgres":
        try:
            dsn, drop = await create_postgres_db(urls["postgres"])
        except Exception as exc:  # reported as the reason of the skip
            raise SkipError(f"cannot create a fresh database: {type(exc).__name__}") from None

        async def pg(out: dict[str, int | None]) -> None:
            out["disk_bytes"] = await postgres_size(dsn)

        return _Plan(dsn, [pg], [drop])
    if spec.durable == "mongodb":
        mongo_counter()  # before the backend creates its client
        uri = with_database(urls["mongodb"], fresh_name())

        async def mongo(out: dict[str, int | None]) -> None:
            out["disk_bytes"] = await mongo_size(uri)

        async def drop_db() -> None:
            await drop_mongo_db(uri)

        return _Plan(uri, [mongo], [drop_db])
    if spec.durable == "redis":
        return _Plan(urls["redis"])
    return _Plan("memory://")


async def open_target(spec: StoreSpec, env: BenchEnv, tag: str) -> Target:
    """Open ``spec`` with fresh data (``tag`` keeps files and databases of phases apart).

    Raises:
        SkipError: a server URL is missing or does not answer, or the backend does not exist.
    """
    slug = f"{spec.name.replace('/', '-').replace('+', '-')}-{tag}"
    root, namespace = env.workdir / slug, f"{env.namespace}-{slug}"  # nothing shared
    if spec.durable == "folder":
        return FolderTarget(root)
    if spec.durable == "blob":
        return BlobTarget(root / "blobs.db")
    urls = await _server_urls(spec, env)
    plan = await _plan(spec, root, urls)
    prefix = "bench" + hashlib.sha1(namespace.encode()).hexdigest()[:12]  # noqa: S324 - a name
    if "redis" in urls:
        url = urls["redis"]

        async def unlink() -> None:
            await redis_unlink_namespace(url, namespace)
            await redis_unlink_namespace(url, prefix)  # the prefix's own keys (index, binding)

        async def memory(out: dict[str, int | None]) -> None:
            out["memory_bytes"] = await redis_memory(url)

        plan.cleanup.insert(0, unlink)
        plan.sizes.append(memory)
    # Each store its own Redis prefix: a prefix belongs to one durable tier (store_id).
    redis_cache = urls.get("redis")
    if redis_cache is not None:
        redis_cache += ("&" if "?" in redis_cache else "?") + f"prefix={prefix}"
    cache = {"redis": redis_cache, "memory": "memory://"}.get(spec.cache or "")
    try:
        # The store's own fresh folder (root): created on purpose, 0700.
        store = AuthStore(
            StoreConfig(
                durable=plan.durable, cache=cache, op_timeout=60, create_dirs=True, **spec.options
            )
        )
        await store.open()
    except BaseException as exc:
        await _run_all(plan.cleanup)  # the fresh database goes whatever happened
        if isinstance(exc, errors.ConfigError):
            raise SkipError(str(exc)) from None
        if isinstance(exc, (errors.StoreError, OSError)):
            raise SkipError(f"open failed: {type(exc).__name__}: {exc}") from None
        raise

    async def footprint() -> dict[str, int | None]:
        out: dict[str, int | None] = {"disk_bytes": None, "memory_bytes": None}
        for size in plan.sizes:
            await size(out)
        return out

    purge = spec.durable in ("redis", "mongodb")
    return OurTarget(store, namespace, footprint, plan.cleanup, purge=purge)


def _rmtree(path: Path) -> Cleanup:
    async def run() -> None:
        shutil.rmtree(path, ignore_errors=True)

    return run


async def _run_all(steps: list[Cleanup]) -> None:
    for step in steps:
        try:
            await step()
        except Exception:  # noqa: S112 - best effort after a failed open
            continue
