"""The Lua scripts of the Redis backend (``lua/*.lua``) and the status codes they reply with.

Each write is one script, so it is atomic and one round trip. Every key a script touches carries
the session's hash tag, so a script runs on one Cluster node. The per-type key names
``<base>k:<type>`` are derived inside scripts from the session's set of types, and the fence
tombstone ``<base>f`` from the meta key's name; they share the tag (and so the slot) of the
declared keys.

Fence tombstone: a session without a meta hash (deleted, or fenced before its first write) keeps
its fence in the string ``<base>f``, so a stale lease holder cannot resurrect it. Scripts read it
only when the meta hash is missing (the hot path stays one read), and drop it when they create
the session (its fence moves into the meta hash).

A Redis script is not rolled back when a command fails halfway, so every script first does all
its checks (fence, version, key types) with reads, and only then writes (Redis refuses a script
for ``maxmemory`` only at its first write, never halfway). Replies are tables whose first element
is a status code (``OK`` ... ``NOT_CLAIMED``).

A script file starts with a comment naming its KEYS, ARGV and reply. Redis scripts cannot import
each other, so the shared functions live in ``lua/_common.lua`` and ``lua/_hybrid.lua`` and are
prepended to the scripts built on them (:data:`_LIBRARIES`): the text sent is the files' text.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from typing import Any

from ... import errors
from ..._model import KeyWrite, SessionAddr, last_writes
from .._fences import check_fence, check_version

OK = 0
FENCED = 1  # {1, current_fence} (the cache: {1, last token issued})
NEEDS_INDEX = 2  # the session does not exist yet and the caller did not index it first
CONFLICT = 3  # {3, current_version}
WRONG_TYPE = 4  # {4, key}: a key of the session holds another Redis type (foreign data)
SKIPPED = 5  # a fill whose stamp is stale
NO_VERSION = 6  # write-behind creds save: the cache does not know the current version
PENDING = 7  # a write-through update / drop while outbox entries are pending
NOT_CLAIMED = 8  # the worker's claim expired or belongs to another worker

_COMMON = ("_common",)
_HYBRID = ("_common", "_hybrid")
# The scripts built on shared functions, and the library files that go before them.
_LIBRARIES: dict[str, tuple[str, ...]] = {
    "write_keys": _COMMON,
    "save_creds": _COMMON,
    "clear_keys": _COMMON,
    "delete_session": _COMMON,
    "advance_fence": _COMMON,
    "touch": _COMMON,
    "apply_batch": _COMMON,
    "acquire_lease": _HYBRID,
    "fill_keys": _HYBRID,
    "update_keys": _HYBRID,
    "put_creds": _HYBRID,
    "drop": _HYBRID,
    "wb_keys": _HYBRID,
    "wb_creds": _HYBRID,
    "requeue_dead": _HYBRID,
}


@functools.cache
def _read(name: str) -> str:
    return importlib.resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


@functools.cache
def source(name: str) -> str:
    """The text of the script ``lua/<name>.lua``, its libraries first (read once per process)."""
    return "".join(_read(part) for part in (*_LIBRARIES.get(name, ()), name))


Groups = dict[str, tuple[list[bytes | str], list[str]]]


def groups_of(writes: Sequence[KeyWrite]) -> Groups:
    """Per type: flat upsert pairs and delete ids, the last write of an id winning."""
    out: Groups = {}
    for w in last_writes(writes):
        ups, dels = out.setdefault(w.type, ([], []))
        if w.blob is None:
            dels.append(w.id)
        else:
            ups += (w.id, w.blob)
    return out


def group_args(groups: Groups) -> list[bytes | str | int]:
    """The groups as script arguments: per type name, n_upserts, n_deletes, id, blob, ..., id."""
    args: list[bytes | str | int] = []
    for key_type, (ups, dels) in groups.items():
        args += (key_type, len(ups) // 2, len(dels), *ups, *dels)
    return args


def reply_error(
    addr: SessionAddr, reply: list[Any], fence: int | None, expected: int | None
) -> None:
    """Raise the typed error a durable script's reply stands for (nothing when it is OK)."""
    code = int(reply[0])
    if code == FENCED:
        check_fence(addr, int(reply[1]), fence)
    elif code == CONFLICT:
        check_version(addr, int(reply[1]), expected)
    elif code == WRONG_TYPE:
        raise errors.CorruptDataError(f"redis: a key of session {addr} holds another Redis type")
    if code != OK:
        raise errors.CorruptDataError(f"redis: unexpected script reply {code} for session {addr}")


def token_arg(token: int | None) -> str:
    """A lease token as a script argument (``''``: the caller holds no lease)."""
    return "" if token is None else str(token)


def check_reply(addr: SessionAddr, reply: list[Any], token: int | None) -> int:
    """The status code of a cache script's reply, or the typed error it stands for."""
    code = int(reply[0])
    if code == FENCED:
        current = int(reply[1])
        raise errors.LeaseLostError(
            f"session {addr}: lease token {token} is older than {current}; "
            "another process holds the session now",
            token=token or 0,
            current=current,
        )
    if code == PENDING:
        raise errors.UnavailableError(f"session {addr}: outbox entries are still pending")
    if code == WRONG_TYPE:
        raise errors.CorruptDataError(f"redis: a key of session {addr} holds another type")
    return code
