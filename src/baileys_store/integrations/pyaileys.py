"""pyaileys adapter: an ``AuthenticationState`` whose creds and keys live in an :class:`AuthStore`.

Usage::

    async with open_store() as store:
        state, save_creds = await use_pyaileys_auth_state(store, "clinic-42")
        client = WhatsAppClient(auth=state)
        client.on("creds.update", save_creds)

Importing this module needs pyaileys (``pip install baileys-store[pyaileys]``); importing
:mod:`baileys_store` never does.
"""

from __future__ import annotations

from typing import Any, cast

from .._auth_state import CredsSaver
from .._store import AuthStore
from ..errors import ConflictError, CorruptDataError

try:
    from pyaileys.auth.creds import AuthenticationCreds
    from pyaileys.auth.serde import creds_from_dict
    from pyaileys.auth.state import AuthenticationState, SignalKeyStore
    from pyaileys.auth.utils import init_auth_creds
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "baileys_store.integrations.pyaileys needs pyaileys: "
        "pip install 'baileys-store[pyaileys]'"
        f" (missing module {exc.name})"
    ) from exc

__all__ = ["PyaileysCredsSaver", "use_pyaileys_auth_state"]

_LOAD_ATTEMPTS = 5


class PyaileysCredsSaver:
    """The ``save_creds`` of :func:`use_pyaileys_auth_state`: a ``creds.update`` listener.

    Wraps :class:`~baileys_store.CredsSaver` (serialized saves, compare-and-set on the last
    version seen) with the signature pyaileys' event emitter types its listeners with: async,
    any arguments, returning ``None``.
    """

    __slots__ = ("_saver",)

    def __init__(self, saver: CredsSaver) -> None:
        self._saver = saver

    @property
    def version(self) -> int:
        """The creds version this process saved or loaded last."""
        return self._saver.version

    async def __call__(self, *_event: object) -> None:
        """Persist the current creds; the event payload, if any, is ignored.

        Raises:
            ConflictError: another writer saved the creds since this process last did.
        """
        await self._saver()


def _to_pyaileys(stored: dict[str, Any], where: str) -> AuthenticationCreds:
    try:
        return creds_from_dict(stored)
    except (KeyError, TypeError, ValueError) as exc:
        # Typically camelCase creds written by a Node/waeys client: not readable by pyaileys.
        # Only a field name or pyaileys' type complaint is shown, never a value.
        if isinstance(exc, KeyError):
            detail = f"missing field {exc.args[0]!r}"
        elif str(exc).startswith("Expected bytes for"):
            detail = str(exc)
        else:
            detail = type(exc).__name__
        raise CorruptDataError(
            f"creds of session {where} are not pyaileys (snake_case) creds: {detail}"
        ) from None


async def use_pyaileys_auth_state(
    store: AuthStore, session_id: str, *, namespace: str = "default"
) -> tuple[AuthenticationState, PyaileysCredsSaver]:
    """Load (or create and persist) a session's auth state for a pyaileys ``WhatsAppClient``.

    A new session gets fresh creds from ``pyaileys.auth.utils.init_auth_creds()``, saved at
    once so the identity stays the same if the process stops before the first
    ``creds.update``. If another process created the session at the same moment, its creds
    win and are loaded instead.

    Args:
        store: An opened store.
        session_id: The session (one WhatsApp account/device).
        namespace: The tenant namespace.

    Returns:
        ``(state, save_creds)``: ``state.creds`` is pyaileys' ``AuthenticationCreds``
        (mutated in place by the client), ``state.keys`` the session's
        :class:`~baileys_store.KeyStore`. ``save_creds(*event)`` persists ``state.creds``
        with compare-and-set on the last version it saw; it can be registered directly with
        ``client.on("creds.update", save_creds)``.

    Raises:
        ConflictError: (from ``save_creds``) another writer saved the creds since they were
            loaded; reload instead of overwriting.
        CorruptDataError: the stored creds are not in pyaileys' snake_case shape.
        InvalidInputError: a bad namespace or session id.
        UnavailableError: the store could not answer.
    """
    session = store.session(session_id, namespace=namespace)
    where = f"{namespace}/{session_id}"
    for _ in range(_LOAD_ATTEMPTS):
        stored, version = await session.load_versioned_creds()
        if stored is not None:
            creds = _to_pyaileys(stored, where)
            break
        creds = init_auth_creds()
        try:
            version = await session.save_creds(creds, expected_version=0)
            break
        except ConflictError:
            continue  # created concurrently by someone else: load theirs
    else:
        raise ConflictError(
            f"creds of session {where} were created and deleted again on every attempt "
            f"({_LOAD_ATTEMPTS}); is another process deleting the session in a loop?",
            expected=0,
            actual=await session.creds_version(),
        )
    # KeyStore.set accepts str *or int* ids, a superset of the protocol; mypy cannot see that
    # through Mapping's invariant key type, hence the cast.
    state = AuthenticationState(creds=creds, keys=cast("SignalKeyStore", session.keys))
    return state, PyaileysCredsSaver(CredsSaver(session, lambda: state.creds, version))
