"""What the ``baileys-store`` group hands its commands: the store URL and config resolution."""

from __future__ import annotations

from dataclasses import dataclass

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
