"""Subject tokens for namespaces and session ids, and the outbox entry's wire format.

A NATS subject token may not contain ``.``, ``*``, ``>``, whitespace or be empty, while a
namespace or session id may hold any of them. Each is encoded as ``s`` + unpadded URL-safe
base64 of its UTF-8 bytes: the alphabet (``A-Z a-z 0-9 - _``) is valid in a token, the leading
``s`` keeps the empty id a non-empty token, and the mapping is one-to-one and reversible (so a
subject names exactly one session, and listing the stream's subjects lists the sessions).
"""

from __future__ import annotations

import base64
import binascii

import msgpack

from ... import errors
from ..._model import CredsRecord, KeyWrite, SessionAddr
from ...results import OutboxEntry


def encode_token(value: str) -> str:
    """``value`` as a subject token (see the module doc)."""
    return "s" + base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The value :func:`encode_token` encoded (CorruptDataError on anything else)."""
    if not token.startswith("s"):
        raise errors.CorruptDataError("nats: malformed subject token")
    body = token[1:]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.CorruptDataError("nats: malformed subject token") from None


def session_tail(addr: SessionAddr) -> str:
    """``<namespace token>.<session token>``."""
    return f"{encode_token(addr.namespace)}.{encode_token(addr.session_id)}"


def parse_tail(subject: str, head: str) -> SessionAddr:
    """The session of ``<head>.<ns>.<sid>``."""
    if not subject.startswith(head + "."):
        raise errors.CorruptDataError("nats: a subject outside the outbox")
    parts = subject[len(head) + 1 :].split(".")
    if len(parts) != 2:
        raise errors.CorruptDataError("nats: malformed outbox subject")
    return SessionAddr(decode_token(parts[0]), decode_token(parts[1]))


def pack_entry(entry: OutboxEntry, epoch: str) -> bytes:
    """``[seq, kind, token, time_ms, fence, epoch, payload]`` as msgpack."""
    if entry.kind == "c":
        assert entry.creds is not None
        payload: object = [entry.creds.blob, entry.creds.version]
    else:
        payload = [[w.type, w.id, w.blob] for w in entry.writes]
    body: bytes = msgpack.packb(
        [entry.seq, entry.kind, entry.token, entry.time_ms, entry.fence, epoch, payload],
        use_bin_type=True,
    )
    return body


def unpack_entry(raw: bytes) -> tuple[OutboxEntry, str]:
    """The entry and the cache epoch it was written under (CorruptDataError if malformed)."""
    try:
        seq, kind, token, when, fence, epoch, payload = msgpack.unpackb(raw, raw=False)
        if kind == "c":
            creds = CredsRecord(bytes(payload[0]), int(payload[1]))
            return OutboxEntry(
                int(seq), "c", int(token), int(when), creds=creds, fence=int(fence)
            ), str(epoch)
        writes = tuple(
            KeyWrite(str(t), str(i), None if b is None else bytes(b)) for t, i, b in payload
        )
        return OutboxEntry(
            int(seq), "k", int(token), int(when), writes=writes, fence=int(fence)
        ), str(epoch)
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        raise errors.CorruptDataError("nats: malformed outbox entry") from None
