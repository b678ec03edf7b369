"""What an attacker with write access to a tier does: forged and moved blobs, bombs.

Plus :class:`Variants`, one backend's data opened under several configurations (encryption on
or off, other keys) as a restarted or second process would.
"""

from __future__ import annotations

import secrets
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from baileys_store import AuthStore, StoreConfig
from baileys_store._model import SessionAddr
from baileys_store.backends._registry import make_cache
from baileys_store.codec import creds_aad, key_aad
from baileys_store.codec._envelope import _HEADER, FORMAT, MAGIC
from baileys_store.observability._metrics import StoreMetrics
from tests._services.redis import with_query
from tests.conftest import Backend

K1, K2, K3 = (secrets.token_hex(32) for _ in range(3))
ENCRYPTED: dict[str, Any] = {"encryption": "aes-256-gcm", "master_keys": {1: K1}}
HYBRID = ["redis-cache", "hybrid-wb", "hybrid-postgres", "hybrid-postgres-wb"]


class Variants:
    """One backend's data, opened with configuration changes (a new process each time).

    PostgreSQL gets a schema of its own: the test run shares one database, and the store's
    metadata (the encryption mode it was written with) is per schema.
    """

    def __init__(self, backend: Backend, **base: Any) -> None:
        url = backend.config.durable
        if "postgres" in backend.name:
            url = with_query(url, schema=f"s{uuid.uuid4().hex[:12]}")
        self._base = {**backend.config.model_dump(), "durable": url, **base}
        self.namespace = backend.namespace
        self.name = backend.name
        self._memory = backend.durable_factory() if backend.durable_factory else None

    def config(self, **changes: Any) -> StoreConfig:
        return StoreConfig(**{**self._base, **changes})

    def make(self, registry: CollectorRegistry | None = None, **changes: Any) -> AuthStore:
        cfg = self.config(**changes)
        metrics = StoreMetrics(registry or CollectorRegistry())
        if self._memory is None:
            return AuthStore(cfg, metrics=metrics)
        return AuthStore(cfg, durable=self._memory, cache=make_cache(cfg), metrics=metrics)

    @asynccontextmanager
    async def open(
        self, registry: CollectorRegistry | None = None, **changes: Any
    ) -> AsyncIterator[AuthStore]:
        store = self.make(registry, **changes)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    def addr(self, sid: str) -> SessionAddr:
        return SessionAddr(self.namespace, sid)


def plaintext_key(addr: SessionAddr, key_type: str, key_id: str, value: Any) -> bytes:
    """The blob a process without the master key writes (valid, unkeyed CRC)."""
    return StoreConfig(compression="none").codec().encode(value, key_aad(*addr, key_type, key_id))


def plaintext_creds(addr: SessionAddr, creds: dict[str, Any]) -> bytes:
    return StoreConfig(compression="none").codec().encode(creds, creds_aad(*addr))


def envelope(payload: bytes, aad: bytes, comp: int) -> bytes:
    """A plaintext blob around any payload (compressed with ``comp``), with a valid CRC."""
    header = _HEADER.pack(MAGIC, FORMAT, comp, 0, 0)
    crc = zlib.crc32(payload, zlib.crc32(aad, zlib.crc32(header)))
    return header + payload + crc.to_bytes(4, "big")


def zstd_bomb(size: int, *, declared: int | None = -1) -> bytes:
    """A zstd frame of RLE blocks expanding to ``size`` zero bytes (4 bytes per 128 KiB).

    ``declared``: the frame content size in the header (default: the true size; ``None``: no
    size, the frame says "unknown"; anything else: a lie).
    """
    block = 128 * 1024
    assert size % block == 0
    if declared is not None:  # 8-byte frame content size, window descriptor of 128 KiB
        fcs = size if declared == -1 else declared
        header = b"\x28\xb5\x2f\xfd" + bytes([0xC0, (17 - 10) << 3]) + fcs.to_bytes(8, "little")
    else:  # window descriptor of 128 KiB, no content size
        header = b"\x28\xb5\x2f\xfd" + bytes([0x00, (17 - 10) << 3])
    n = size // block
    rle = ((block << 3) | (1 << 1)).to_bytes(3, "little") + b"\0"  # RLE block, not last
    last = ((block << 3) | (1 << 1) | 1).to_bytes(3, "little") + b"\0"
    return header + rle * (n - 1) + last


def gzip_bomb(size: int, member: int = 64 << 20) -> bytes:
    """Concatenated gzip members (as gzip readers accept) expanding to ``size`` zero bytes."""
    assert size % member == 0
    one = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = one.compress(b"\0" * member) + one.flush()
    return body * (size // member)


def snappy_bomb(size: int) -> bytes:
    """A raw snappy stream whose length prefix claims ``size`` bytes (the body is short)."""
    out = bytearray()
    n = size
    while True:  # varint
        if n < 0x80:
            out.append(n)
            break
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(out) + b"\x00\x00"  # one 1-byte literal; a decoder must not trust the prefix
