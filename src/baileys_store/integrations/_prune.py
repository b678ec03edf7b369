"""Pruning one-time pre-keys that can no longer be used (``baileys-store keys prune-prekeys``).

What the clients do (read in their source):

* Baileys 7 (``src/Utils/signal.ts``, ``getNextPreKeys`` / ``generateOrGetPreKeys``): pre-keys
  get increasing ids from ``creds.nextPreKeyId``; a batch is stored (``keys.set({'pre-key':
  …})``) *before* it is sent, then ``firstUnuploadedPreKeyId`` becomes ``max(first, last+1)``.
  Ids in ``[firstUnuploadedPreKeyId, nextPreKeyId)`` were made but not uploaded yet: the next
  upload sends them first. Ids are never reused.
* Baileys 7 (``src/Socket/socket.ts``, ``uploadPreKeysToServerIfRequired``, ``uploadPreKeys``;
  ``src/Defaults/index.ts``): on connect it asks the server how many pre-keys it holds and
  uploads ``INITIAL_PREKEY_COUNT`` = 812 when the server has none, else ``MIN_PREKEY_COUNT`` = 5
  when it has 5 or fewer, or when the newest pre-key (``nextPreKeyId - 1``) is missing from the
  store; ``digestKeyBundle`` uploads 5 on a bad digest. ``src/Socket/messages-recv.ts``: the
  server's "encrypt" notification with a count below 5 uploads 5 more, and a retry receipt
  hands one fresh pre-key straight to a peer (``getNextPreKeys(authState, 1)``), which also
  moves the mark. Before Baileys 7 (2022-04 to 2025-10) the first batch was 30.
* ``src/Signal/libsignal.ts`` (``removePreKey``): a pre-key is deleted when a ``pkmsg`` that
  names it is decrypted; the signed pre-key lives in the creds (``signedPreKey``), never in the
  key store.
* pyaileys 0.1.5 (``pyaileys/socket.py``, ``_upload_prekeys`` and
  ``_upload_prekeys_to_server_if_required``): uploads 30 when the server holds none, else 10
  when it holds 10 or fewer, and 10 on a bad digest (``_digest_key_bundle``); it stores the
  batch and moves both counters *before* the upload query, so a failed upload leaves keys below
  the mark that the server never saw. ``pyaileys/signal/repository.py``: decrypting a ``pkmsg``
  whose one-time pre-key is gone fails (``missing one-time pre-key``); the key is removed after
  the first ``pkmsg`` that used it, and later ``pkmsg`` messages of that peer decrypt in the session
  it built.

The rule: an id at or above the upload mark was never handed out, and is kept. An id below it
was uploaded (or was meant to be) and is needed while the server may still hand it out, or a
peer holds it and its first ``pkmsg`` has not arrived. The server does not say which ids it
still holds, only how many; each batch is uploaded when that count is low, so what it holds is
the newest batch plus what was left of the previous one. The margin ``keep`` therefore covers,
below the mark: the largest pool a client puts on the server (Baileys 7: 812 + the 5 it tops
up at) and, once more, as many handed out but not yet consumed. :data:`DEFAULT_KEEP` is
2 x 812 = 1,624 ids (for pyaileys, whose batches are 30 and 10, that is over fifty batches).
This assumes the server hands pre-keys out in the order they were uploaded (its order is not
public). A ``pkmsg`` naming a pruned id fails to decrypt as above: Baileys answers with retry
receipts (from the second on, with a fresh pre-key: ``sendRetryRequest``) and the sender
re-sends; pyaileys 0.1.5 sends none, so that message is lost. Hence the generous margin: keeping
1,624 small records costs little, pruning one too many costs a message.

The signed pre-key is never touched: only ``pre-key`` records are deleted, never the creds, and
a ``pre-key`` whose id equals the creds' signed pre-key id is kept as well.

Deletes go through the public API (``keys.set({'pre-key': {id: None}})``, in chunks), so caches,
the outbox and leases see them. A session leased by another process is skipped and counted;
``dry_run`` reads only (so it cannot see leases). The mark only grows and ids are never reused,
so a prune running next to the application removes nothing the application writes meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, LeaseHeldError, UnavailableError
from ..results import PrunedSession, PruneReport

if TYPE_CHECKING:
    from .._session import SessionAuth
    from .._store import AuthStore

__all__ = ["DEFAULT_KEEP", "prune_prekeys", "upload_mark"]

#: Baileys 7's first batch (``INITIAL_PREKEY_COUNT``), twice: see the module docstring.
DEFAULT_KEEP = 2 * 812
_CHUNK = 500  # ids per ``keys.set`` call: each call is one atomic write


def _pick(creds: Mapping[str, Any], *names: str) -> Any:
    return next((creds[n] for n in names if n in creds), None)


def _as_int(value: object) -> int | None:
    """A positive int from an int or a decimal string; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def upload_mark(creds: Mapping[str, Any]) -> int | None:
    """The first pre-key id never uploaded, from Node (camelCase) or pyaileys (snake_case) creds.

    ``firstUnuploadedPreKeyId``, or ``nextPreKeyId`` when that is lower (never in a sane
    store; the lower one is the safe one). ``None`` when the creds have no usable mark.
    """
    first = _as_int(_pick(creds, "firstUnuploadedPreKeyId", "first_unuploaded_pre_key_id"))
    if first is None:
        return None
    nxt = _as_int(_pick(creds, "nextPreKeyId", "next_pre_key_id"))
    return first if nxt is None else min(first, nxt)


def _signed_pre_key_id(creds: Mapping[str, Any]) -> int | None:
    spk = _pick(creds, "signedPreKey", "signed_pre_key")
    return _as_int(_pick(spk, "keyId", "key_id")) if isinstance(spk, Mapping) else None


def _doomed(ids: list[str], cutoff: int, signed: int | None) -> list[str]:
    """The ids to remove: canonical decimal ids below ``cutoff``, but not the signed one."""
    out = []
    for key_id in ids:
        # "007" is not what a client asks for ("7"): what we do not understand, we keep.
        if not (key_id.isascii() and key_id.isdigit()) or str(int(key_id)) != key_id:
            continue
        n = int(key_id)
        if n < cutoff and n != signed:
            out.append(key_id)
    return out


async def _prune_session(session: SessionAuth, keep: int, dry_run: bool) -> PrunedSession:
    def result(
        status: str, mark: int | None = None, removed: int = 0, kept: int = 0
    ) -> PrunedSession:
        return PrunedSession(session.namespace, session.session_id, status, mark, removed, kept)

    creds = await session.load_creds()
    if creds is None:
        return result("no_creds")
    mark = upload_mark(creds)
    if mark is None:
        return result("no_mark")
    ids = (await session.key_ids()).get("pre-key", [])
    doomed = _doomed(ids, mark - keep, _signed_pre_key_id(creds))
    kept = len(ids) - len(doomed)
    if not dry_run:
        for lo in range(0, len(doomed), _CHUNK):
            await session.keys.set({"pre-key": dict.fromkeys(doomed[lo : lo + _CHUNK])})
    return result("pruned" if doomed else "clean", mark, len(doomed), kept)


async def prune_prekeys(
    store: AuthStore,
    *,
    namespace: str | None = None,
    session: str | None = None,
    keep: int = DEFAULT_KEEP,
    dry_run: bool = False,
) -> PruneReport:
    """Remove the ``pre-key`` records below each session's upload mark minus ``keep``.

    Args:
        store: An open store.
        namespace: Only this namespace (``None``: every namespace).
        session: Only sessions with this id (in ``namespace``, or in any namespace).
        keep: Ids kept below the upload mark (see the module docstring for the default).
        dry_run: Only count; write nothing.

    Returns:
        One :class:`PrunedSession` per session examined (skipped ones included).

    Raises:
        InvalidInputError: ``keep`` is not a non-negative int, or a bad namespace.
        UnavailableError: a tier could not answer (what was removed stays removed; run again).
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise InvalidInputError("prune_prekeys: keep must be an int >= 0")
    report = PruneReport(keep=keep, dry_run=dry_run)
    # Listed first, pruned after: a listing cursor is never held across the writes.
    infos = [
        info
        async for info in store.list_sessions(namespace)
        if session is None or info.session_id == session
    ]
    for info in infos:
        auth = store.session(info.session_id, namespace=info.namespace)
        try:
            report.sessions.append(await _prune_session(auth, keep, dry_run))
        except LeaseHeldError:  # in use by another process right now: left alone
            report.sessions.append(PrunedSession(info.namespace, info.session_id, "in_use"))
        finally:
            if not dry_run:
                # Hand the session back at once, so its application is not kept waiting.
                with contextlib.suppress(UnavailableError):
                    await store.release(info.session_id, namespace=info.namespace)
    return report
