"""What the ``baileys-store`` group hands its commands: the store URL and config resolution."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .._config import StoreConfig


@dataclass(frozen=True, slots=True)
class CliContext:
    """Global options of the ``baileys-store`` group.

    Attributes:
        store_url: The ``--store`` URL (or ``BAILEYS_STORE_DURABLE``); ``None`` when neither
            was given.
    """

    store_url: str | None

    def config(self, default_durable: str | None = None) -> StoreConfig:
        """The store config: ``--store`` (else ``default_durable``) over ``BAILEYS_STORE_*``.

        Raises:
            ConfigError: an invalid URL or setting.
        """
        durable = self.store_url or default_durable
        return StoreConfig.from_env(None, **({"durable": durable} if durable else {}))


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
