"""Pick backends by URL scheme. Server backends are imported only when configured."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..contracts import CacheBackend, DurableBackend
from ..errors import ConfigError
from .memory import MemoryCache, MemoryDurable
from .sqlite import SQLiteDurable, sqlite_path

if TYPE_CHECKING:
    from .._config import StoreConfig

# scheme -> (subpackage, pip extra). Each subpackage exports from_config(config, role, on_retry=).
_SERVER_BACKENDS: dict[str, tuple[str, str]] = {
    "postgresql": ("baileys_store.backends.postgres", "postgres"),
    "postgres": ("baileys_store.backends.postgres", "postgres"),
    "mongodb": ("baileys_store.backends.mongodb", "mongo"),
    "mongodb+srv": ("baileys_store.backends.mongodb", "mongo"),
    "redis": ("baileys_store.backends.redis", "redis"),
    "rediss": ("baileys_store.backends.redis", "redis"),
    "redis+sentinel": ("baileys_store.backends.redis", "redis"),
    "rediss+sentinel": ("baileys_store.backends.redis", "redis"),
}


def _server(config: StoreConfig, url: str, role: str, on_retry: Callable[[], None] | None) -> Any:
    scheme = urlsplit(url).scheme
    entry = _SERVER_BACKENDS.get(scheme)
    if entry is None:
        raise ConfigError(f"{role}: no backend for scheme {scheme!r}")
    module_name, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("baileys_store"):
            raise ConfigError(f"{role}: the {scheme} backend is not part of this version") from None
        raise ConfigError(
            f"{role}: the {scheme} backend needs `pip install baileys-store[{extra}]` "
            f"(missing module {exc.name})"
        ) from None
    return module.from_config(config, role, on_retry=on_retry)


def make_durable(
    config: StoreConfig, *, on_retry: Callable[[], None] | None = None
) -> DurableBackend:
    """The durable backend named by ``config.durable`` (``on_retry``: counts its retries)."""
    scheme = urlsplit(config.durable).scheme
    if scheme == "sqlite":
        # With an in-process cache in front, a second process would read stale data: lock it out.
        exclusive = config.cache is not None and urlsplit(config.cache).scheme == "memory"
        return SQLiteDurable(
            sqlite_path(config.durable),
            synchronous=config.sqlite_synchronous,
            exclusive=exclusive,
            create_dirs=config.create_dirs,
        )
    if scheme == "memory":
        return MemoryDurable()
    backend: DurableBackend = _server(config, config.durable, "durable", on_retry)
    return backend


def make_cache(
    config: StoreConfig, on_retry: Callable[[], None] | None = None
) -> CacheBackend | None:
    """The cache backend named by ``config.cache`` (``None`` when disabled)."""
    if config.cache is None:
        return None
    if urlsplit(config.cache).scheme == "memory":
        return MemoryCache(config.cache_max_entries)
    backend: CacheBackend = _server(config, config.cache, "cache", on_retry)
    return backend
