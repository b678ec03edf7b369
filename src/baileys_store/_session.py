"""Per-session view: the Baileys key-store contract and the versioned creds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import _model
from ._creds import creds_to_dict, validate_creds
from ._model import KeyWrite
from .codec import Codec, OversizeRecordError, creds_aad, error_kind, session_aad
from .errors import CorruptDataError, InvalidInputError, StoreError

if TYPE_CHECKING:
    from .tiering import SessionOps


# A read decodes in a worker thread when its stored blobs total more than OFFLOAD_BYTES, or a
# value decompresses to more than INLINE_OUTPUT: a large decode (up to max_value_bytes per
# value) must not stall every session of the event loop. Small reads stay inline (the hot path).
OFFLOAD_BYTES = 256 * 1024
INLINE_OUTPUT = 1024 * 1024
# Ids per ``keys.get`` of ``KeyStore.items``: bounds the values held at once.
ITEMS_CHUNK = 500

Decoder = Callable[[str, bytes], Any]


def _decode_all(
    decode: Decoder, blobs: dict[str, bytes]
) -> tuple[dict[str, Any], dict[str, StoreError]]:
    """Decoded values, and the errors of the blobs that failed (usually none)."""
    out: dict[str, Any] = {}
    failed: dict[str, StoreError] = {}
    for key_id, blob in blobs.items():
        try:
            out[key_id] = decode(key_id, blob)
        except StoreError as exc:
            failed[key_id] = exc
    return out, failed


async def _decode_batch(
    codec: Codec, aad_prefix: bytes, blobs: dict[str, bytes]
) -> tuple[dict[str, Any], dict[str, StoreError]]:
    """:func:`_decode_all` inline for small reads, in a worker thread for large ones."""
    if sum(map(len, blobs.values())) > OFFLOAD_BYTES:
        return await asyncio.to_thread(_decode_all, codec.key_decoder(aad_prefix), blobs)
    out, failed = _decode_all(codec.key_decoder(aad_prefix, INLINE_OUTPUT), blobs)
    if failed:
        big = {i: blobs[i] for i, e in failed.items() if isinstance(e, OversizeRecordError)}
        if big:  # small when stored, large once decompressed: finish off the event loop
            more, again = await asyncio.to_thread(_decode_all, codec.key_decoder(aad_prefix), big)
            out.update(more)
            failed = {**{i: e for i, e in failed.items() if i not in big}, **again}
    return out, failed


class KeyStore:
    """The Signal key store of one session: ``get``, ``set``, ``clear`` as Baileys defines them.

    Matches ``pyaileys.auth.state.SignalKeyStore``. Values are opaque (anything msgpack keeps:
    bytes, str, int, float, bool, None, lists, str- or int-keyed dicts; tuples come back as lists).
    """

    __slots__ = ("_aad", "_decoders", "_encoders", "_ops")

    def __init__(self, ops: SessionOps) -> None:
        self._ops = ops
        self._aad = session_aad("k", *ops.addr)
        # Per key type, built on first use (a handful of types per session; loop thread only).
        self._encoders: dict[str, Callable[[str, Any], bytes]] = {}
        self._decoders: dict[str, Decoder] = {}

    async def get(self, type: str, ids: Iterable[str | int]) -> dict[str, Any]:
        """Values of the ids found; missing ids are absent. Int ids are read as decimal strings.

        Raises:
            InvalidInputError: bad type or id.
            UnavailableError: a tier could not answer (never reported as "not found").
            DecryptError, CorruptDataError: a stored value cannot be read back.
        """
        key_type = _model.check_type(type)
        wanted = _model.check_ids(ids)
        if not wanted:
            return {}
        ops = self._ops
        blobs = await ops.get_blobs(ops.addr, key_type, wanted)
        prefix = self._aad.for_type(key_type)
        codec = ops.codec
        if sum(map(len, blobs.values())) <= OFFLOAD_BYTES:  # the hot path: no await, no copies
            decode = self._decoders.get(key_type)
            if decode is None:
                decode = self._decoders[key_type] = codec.key_decoder(prefix, INLINE_OUTPUT)
            out: dict[str, Any] = {}
            try:
                for key_id, blob in blobs.items():
                    out[key_id] = decode(key_id, blob)
            except StoreError:
                pass  # rare: decoded again below, collecting every failure
            else:
                return out
        out, failed = await _decode_batch(codec, prefix, blobs)
        if failed:
            await self._recover(key_type, prefix, blobs, out, failed)
        return out

    async def _recover(
        self,
        key_type: str,
        prefix: bytes,
        blobs: dict[str, bytes],
        out: dict[str, Any],
        failed: dict[str, StoreError],
    ) -> None:
        """Blobs that failed to decode: serve the durable copies when those decode.

        The failed blobs may come from a cache tier (damaged, or forged in Redis) while the
        durable copy is good: then the cache is evicted and the durable values go into ``out``
        (an id the durable tier does not have is absent). Otherwise (no cache, the durable tier
        not authoritative, or its copy bad too) the first failure is raised; nothing is evicted.
        """
        ops, addr = self._ops, self._ops.addr
        for exc in failed.values():
            ops.metrics.codec_error(error_kind(exc))
        durable = await ops.durable_keys(addr, key_type, list(failed))
        if durable is not None:
            # The same bytes fail the same way: only a different durable copy is decoded.
            same = {i: failed[i] for i, b in durable.items() if b == blobs[i]}
            fresh, bad = await _decode_batch(
                ops.codec, prefix, {i: b for i, b in durable.items() if i not in same}
            )
            for exc in bad.values():
                ops.metrics.codec_error(error_kind(exc))
            if not same and not bad:
                await ops.evict(addr)
                ops.metrics.cache_corrupt_eviction(len(failed))
                out.update(fresh)
                return
            failed = same or bad
        key_id, exc = next(iter(failed.items()))
        where = f"{key_type} {key_id!r} of session {addr}"
        raise _rewrap(exc)(f"{where}: {exc}") from None

    async def set(self, data: Mapping[str, Mapping[Any, Any]]) -> None:
        """Upsert values and delete ids mapped to ``None``, atomically for the whole call.

        Ids are ``str`` (an ``int`` id is stored as its decimal string). The inner mapping is
        typed loosely on purpose: ``Mapping`` is invariant in its key type, so a precise
        ``str | int`` would reject ``dict[str, bytes]`` and pyaileys' ``SignalKeyStore``.

        Raises:
            InvalidInputError: a bad type, id or value; nothing is written.
            UnavailableError: a tier could not answer (the call may or may not have applied;
                retrying it is safe).
        """
        normalized = _model.normalize_set(data)
        encoders, writes = self._encoders, []
        for t, items in normalized.items():
            encode = encoders.get(t)
            if encode is None:  # the address prefix, encoded once per type
                encode = encoders[t] = self._ops.codec.key_encoder(self._aad.for_type(t))
            for i, v in items.items():
                writes.append(KeyWrite(t, i, None if v is None else encode(i, v)))
        if writes:
            ops = self._ops
            await ops.write_keys(ops.addr, writes)

    async def clear(self) -> None:
        """Delete every key of the session (the creds stay)."""
        await self._ops.clear_keys(self._ops.addr)

    async def list_ids(self, type: str) -> AsyncIterator[str]:
        """Every id of one key type of the session, in id order (Baileys 7's ``listIds``).

        The listing is the durable tier's, read page by page (as :meth:`SessionAuth.key_ids`;
        with an outbox, pending entries are drained first, so it is complete): memory holds one
        page, never the whole listing or any value. A key written or deleted meanwhile may or
        may not be listed.

        Raises:
            InvalidInputError: a bad type.
            UnavailableError: the durable tier could not answer.
        """
        key_type = _model.check_type(type)
        # The listing is in (type, id) order: stream this type's ids, stop past them (closing
        # the listing at once, so a backend's cursor or connection is not held until GC).
        async with contextlib.aclosing(self._ops.iter_key_ids(self._ops.addr)) as listing:
            async for listed_type, key_id in listing:
                if listed_type == key_type:
                    yield key_id
                elif listed_type > key_type:
                    break

    async def items(self, type: str) -> AsyncIterator[tuple[str, Any]]:
        """Every ``(id, value)`` of one key type of the session, in id order (``list``).

        Ids come from :meth:`list_ids`; values are read with :meth:`get` in chunks of at most
        500 ids, so memory holds one chunk of values at a time. A key deleted between the
        listing and its chunk's read is skipped.

        Raises:
            InvalidInputError: a bad type.
            UnavailableError: a tier could not answer.
            DecryptError, CorruptDataError: a stored value cannot be read back.
        """
        chunk: list[str] = []
        async for key_id in self.list_ids(type):
            chunk.append(key_id)
            if len(chunk) >= ITEMS_CHUNK:
                for item in await self._chunk(type, chunk):
                    yield item
                chunk = []
        if chunk:
            for item in await self._chunk(type, chunk):
                yield item

    async def _chunk(self, type: str, ids: list[str]) -> list[tuple[str, Any]]:
        values = await self.get(type, ids)
        return [(i, values[i]) for i in ids if i in values]


def _rewrap(exc: StoreError) -> type[StoreError]:
    """The class to re-raise ``exc`` as (kept, so callers can still catch the precise error)."""
    return type(exc) if type(exc).__init__ is StoreError.__init__ else CorruptDataError


class SessionAuth:
    """Everything stored for one WhatsApp session: ``keys`` and versioned creds."""

    __slots__ = ("_ops", "keys")

    def __init__(self, ops: SessionOps) -> None:
        self._ops = ops
        self.keys = KeyStore(ops)

    @property
    def namespace(self) -> str:
        """The tenant namespace."""
        return self._ops.addr.namespace

    @property
    def session_id(self) -> str:
        """The session id."""
        return self._ops.addr.session_id

    async def load_creds(self) -> dict[str, Any] | None:
        """The creds saved last, as a dict, or ``None`` for a new session."""
        creds, _ = await self.load_versioned_creds()
        return creds

    async def load_versioned_creds(self) -> tuple[dict[str, Any] | None, int]:
        """``(creds, version)`` from one read, so they belong together (``(None, 0)`` when new).

        Pass the version to ``save_creds(expected_version=...)`` to save without overwriting a
        save made by someone else meanwhile.
        """
        ops = self._ops
        record = await ops.load_creds(ops.addr)
        if record is None:
            return None, 0
        try:
            creds = await self._decode_creds(record.blob)
        except StoreError as exc:
            ops.metrics.codec_error(error_kind(exc))
            # Maybe a damaged cached copy: the durable one, when authoritative and readable.
            known, durable = await ops.durable_creds(ops.addr)
            if not known or (durable is not None and durable.blob == record.blob):
                raise
            try:
                creds = None if durable is None else await self._decode_creds(durable.blob)
            except StoreError as again:
                ops.metrics.codec_error(error_kind(again))
                raise again from None
            await ops.evict(ops.addr)
            ops.metrics.cache_corrupt_eviction(1)
            if durable is None:
                return None, 0
            record = durable
        if not isinstance(creds, dict):
            raise CorruptDataError(f"creds of session {ops.addr} are not a mapping")
        validate_creds(creds)
        return creds, record.version

    async def _decode_creds(self, blob: bytes) -> Any:
        codec, aad = self._ops.codec, creds_aad(*self._ops.addr)
        if len(blob) <= OFFLOAD_BYTES:
            try:
                return codec.decode(blob, aad, INLINE_OUTPUT)
            except OversizeRecordError:
                pass  # large once decompressed: off the event loop, with the full limit
        return await asyncio.to_thread(codec.decode, blob, aad)

    async def creds_version(self) -> int:
        """The version of the stored creds (0 when none were saved)."""
        record = await self._ops.load_creds(self._ops.addr)
        return record.version if record else 0

    async def save_creds(self, creds: object, *, expected_version: int | None = None) -> int:
        """Save the whole creds object (dict or pyaileys dataclass); returns the new version.

        Args:
            creds: The creds to store.
            expected_version: When given, save only if the stored version is this one
                (0 for "no creds yet"); otherwise raise :class:`ConflictError`.

        Raises:
            InvalidInputError: a known field has the wrong shape (the field is named).
            ConflictError: ``expected_version`` is stale.
        """
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise InvalidInputError("expected_version must be an int")
        as_dict = creds_to_dict(creds)
        validate_creds(as_dict)
        ops = self._ops
        blob = ops.codec.encode(as_dict, creds_aad(*ops.addr))
        return await ops.save_creds(ops.addr, blob, expected_version)

    async def delete(self) -> bool:
        """Delete the session's creds and keys; True if anything existed."""
        return await self._ops.delete_session(self._ops.addr)

    async def key_ids(self) -> dict[str, list[str]]:
        """``{type: [ids]}`` of every key the session holds (the durable tier's listing).

        With an outbox, pending entries are drained first, so the listing is complete.
        """
        return await self._ops.key_ids(self._ops.addr)

    async def key_counts(self) -> dict[str, int]:
        """``{type: number of keys}`` of the session (one aggregate query)."""
        return await self._ops.key_counts(self._ops.addr)
