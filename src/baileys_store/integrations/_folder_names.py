"""File names of a Baileys multi-file auth folder: ``{type}-{id}.json``.

Baileys and pyaileys name a key's file ``{type}-{id}.json`` with ``/`` → ``__`` and ``:`` → ``-``.
That is lossy: the ``-`` after the type is also the separator, types contain ``-``, and ids may
contain ``-`` (old group JIDs) or ``__`` (tctoken's ``__index``). So a name is decoded only
against the *known* key types (longest first: ``sender-key-memory`` before ``sender-key``), and
only when the id has the shape that type's ids have; each type restores ``/`` or ``:`` only
where its ids can hold them. Anything else is reported by the caller, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

CREDS_FILE = "creds.json"

# Key types of Baileys 7 (``SignalDataTypeMap``), plus ``contacts-tc-token`` of older versions.
KNOWN_KEY_TYPES: tuple[str, ...] = (
    "pre-key",
    "session",
    "sender-key",
    "sender-key-memory",
    "app-state-sync-key",
    "app-state-sync-version",
    "identity-key",
    "tctoken",
    "lid-mapping",
    "device-list",
    "contacts-tc-token",
)

# "{user}.{device}"; LID users "{user}_1.{device}"
_SIGNAL_ADDRESS = re.compile(r"[A-Za-z0-9_]+\.\d+")
# "{group}::{user}::{device}" as written in a file name (':' became '-')
_SENDER_KEY_FILE = re.compile(r"(.+)--([A-Za-z0-9_]+)--(\d+)")
_B64_ID = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _pre_key(raw: str) -> str | None:
    return raw if raw.isascii() and raw.isdigit() else None


def _signal_address(raw: str) -> str | None:
    return raw if _SIGNAL_ADDRESS.fullmatch(raw) else None


def _sender_key(raw: str) -> str | None:
    m = _SENDER_KEY_FILE.fullmatch(raw)
    return f"{m[1]}::{m[2]}::{m[3]}" if m else None


def _app_state_key(raw: str) -> str | None:
    key_id = raw.replace("__", "/")  # base64 ids: '/' was written as '__'; '_' is not base64
    return key_id if _B64_ID.fullmatch(key_id) else None


def _any(raw: str) -> str | None:
    return raw


# How each known type's ids come back from a file name (None: not an id of that type).
_DECODERS: dict[str, Callable[[str], str | None]] = {
    "pre-key": _pre_key,
    "session": _signal_address,
    "identity-key": _signal_address,
    "sender-key": _sender_key,
    "app-state-sync-key": _app_state_key,
}


def key_filename(key_type: str, key_id: str) -> str:
    """The file Baileys (and pyaileys) read a key from: ``{type}-{id}.json``, fixed."""
    return f"{key_type}-{key_id}.json".replace("/", "__").replace(":", "-")


class KeyNameParser:
    """Decodes key file names against a set of key types.

    Args:
        extra_types: Types to accept besides :data:`KNOWN_KEY_TYPES`; their ids are taken
            verbatim from the name.
    """

    __slots__ = ("_types",)

    def __init__(self, extra_types: Iterable[str] = ()) -> None:
        types = set(KNOWN_KEY_TYPES) | set(extra_types)
        self._types = sorted(types, key=len, reverse=True)

    def parse(self, name: str) -> tuple[str, str] | None:
        """``(type, id)`` of a key file, or ``None`` when no known type explains the name."""
        if not name.endswith(".json") or name == CREDS_FILE:
            return None
        stem = name[: -len(".json")]
        for key_type in self._types:
            if stem.startswith(key_type + "-") and len(stem) > len(key_type) + 1:
                key_id = _DECODERS.get(key_type, _any)(stem[len(key_type) + 1 :])
                if key_id is not None:
                    return key_type, key_id
        return None


__all__ = ["CREDS_FILE", "KNOWN_KEY_TYPES", "KeyNameParser", "key_filename"]
