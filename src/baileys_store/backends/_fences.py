"""The fence and version checks every durable backend applies inside its write transaction."""

from __future__ import annotations

from .._model import SessionAddr
from ..errors import ConflictError, FencedError


def check_fence(addr: SessionAddr, current: int, token: int | None) -> int:
    """Return the fence to record, or raise :class:`FencedError` when ``token`` is stale."""
    if token is None:
        return current
    if token < current:
        raise FencedError(
            f"write to session {addr} fenced: token {token} < current {current}",
            token=token,
            current=current,
        )
    return token


def check_version(addr: SessionAddr, current: int, expected: int | None) -> int:
    """Return the next creds version, or raise :class:`ConflictError` on a stale expectation."""
    if expected is not None and expected != current:
        raise ConflictError(
            f"creds of session {addr} are at version {current}, caller expected {expected}",
            expected=expected,
            actual=current,
        )
    return current + 1
