"""What every importer shares: the session read from a foreign store, and how it is written.

An importer reads one session completely (creds and every key, parsed and checked) before
anything is written, so a session its layout cannot explain leaves the destination unchanged.
Writing follows :func:`..baileys_folder.import_folder`: keys first, one atomic ``keys.set`` per
batch, then the creds by compare-and-set; identical creds are not saved again, so a rerun gives
the same result; a session holding *different* creds is refused unless ``replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..._store import AuthStore
from ...errors import ConflictError, InvalidInputError, StoreError
from .._folder_names import KNOWN_KEY_TYPES
from ..baileys_folder import detect_flavour

_BATCH = 500
# Longest first, so "sender-key-memory-x" is not read as a sender-key "memory-x".
_TYPES_LONGEST_FIRST = sorted(KNOWN_KEY_TYPES, key=len, reverse=True)

Layout = Literal["hset", "keys"]  # baileys-redis-auth: one hash per session, or a key per item
LAYOUTS: tuple[Layout, ...] = ("hset", "keys")


@dataclass(frozen=True, slots=True)
class ForeignSession:
    """One session as its source store holds it, values already parsed (Buffers as ``bytes``).

    Attributes:
        name: The session's name in the source (also its id at the destination).
        creds: The Baileys creds object.
        keys: ``{type: {id: value}}``.
        notes: What was left out and why (e.g. entries the source's own reader ignores).
    """

    name: str
    creds: dict[str, Any]
    keys: dict[str, dict[str, Any]]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionResult:
    """What importing one session did (``error`` set: nothing more was written for it)."""

    session: str
    counts: dict[str, int] = field(default_factory=dict)
    creds_saved: bool = False
    creds_version: int = 0
    error: str | None = None
    notes: tuple[str, ...] = ()


class Source(Protocol):
    """A foreign store opened read-only (only ``GET``/``SCAN``/``find`` are ever sent)."""

    async def sessions(self) -> list[str]:
        """Every session the source holds, sorted."""
        ...

    async def read(self, name: str) -> ForeignSession:
        """One whole session; ``InvalidInputError`` when it is missing or unreadable."""
        ...

    async def aclose(self) -> None:
        """Release the connection."""
        ...


def split_key_name(name: str) -> tuple[str, str] | None:
    """``(type, id)`` of a verbatim ``{type}-{id}`` name (no file-name escaping), or ``None``."""
    for key_type in _TYPES_LONGEST_FIRST:
        if name.startswith(key_type + "-") and len(name) > len(key_type) + 1:
            return key_type, name[len(key_type) + 1 :]
    return None


def check_creds(creds: object, where: str) -> dict[str, Any]:
    """The creds if they are Node Baileys creds (every source here is a Node package)."""
    if not isinstance(creds, dict):
        raise InvalidInputError(f"{where}: creds are not an object")
    if detect_flavour(creds) != "node":
        raise InvalidInputError(f"{where}: creds are not Node Baileys creds (camelCase)")
    return creds


def unknown_names_error(where: str, names: list[str]) -> InvalidInputError:
    """The error for entries no known key type explains (nothing is guessed)."""
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return InvalidInputError(f"{where}: {len(names)} entries match no known key type ({shown})")


async def write_session(
    store: AuthStore,
    foreign: ForeignSession,
    *,
    namespace: str = "default",
    replace: bool = False,
    batch_size: int = _BATCH,
) -> SessionResult:
    """Write ``foreign`` into ``namespace``/``foreign.name``: keys first, creds last.

    Raises:
        ConflictError: the session holds other creds and ``replace`` is false.
        StoreError: any other store failure (keys written so far stay; rerun to finish).
    """
    session = store.session(foreign.name, namespace=namespace)
    version = await session.creds_version()
    stored = await session.load_creds() if version else None
    if stored is not None and stored != foreign.creds and not replace:
        raise ConflictError(
            f"session {namespace}/{foreign.name} already holds different creds; "
            "--replace overwrites it",
            expected=0,
            actual=version,
        )
    if replace and stored is not None and stored != foreign.creds:
        await session.keys.clear()
    counts: dict[str, int] = {}
    for key_type, values in foreign.keys.items():
        items = list(values.items())
        for start in range(0, len(items), batch_size):
            await session.keys.set({key_type: dict(items[start : start + batch_size])})
        if items:
            counts[key_type] = len(items)
    saved = stored != foreign.creds
    if saved:
        version = await session.save_creds(foreign.creds, expected_version=version)
    return SessionResult(foreign.name, counts, saved, version, notes=foreign.notes)


async def import_sessions(
    store: AuthStore,
    source: Source,
    names: list[str],
    *,
    namespace: str = "default",
    replace: bool = False,
) -> list[SessionResult]:
    """Import each of ``names``; a failing session is reported and the others still imported."""
    results: list[SessionResult] = []
    for name in names:
        try:
            foreign = await source.read(name)
            results.append(
                await write_session(store, foreign, namespace=namespace, replace=replace)
            )
        except StoreError as exc:
            results.append(SessionResult(name, error=" ".join(str(exc).split())))
    return results


__all__ = [
    "ForeignSession",
    "SessionResult",
    "Source",
    "check_creds",
    "import_sessions",
    "split_key_name",
    "unknown_names_error",
    "write_session",
]
