"""Checking a backup before (and while) it is restored: its manifest, frames and records."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .._model import KeyWrite, SessionAddr, session_addr
from ..codec import Codec, creds_aad, key_aad
from ..errors import ConfigError, CorruptDataError, DecryptError, StoreError
from ._backup_file import BackupReader

if TYPE_CHECKING:
    from .._store import AuthStore


class Plan:
    """The manifest of a backup, checked: what each session must hold."""

    def __init__(self, reader: BackupReader) -> None:
        m = reader.manifest
        try:
            source = m["source"]
            self.encryption = str(source["encryption"])
            self.key_ids = tuple(int(k) for k in source["key_ids"])
            self.created_at = str(m["created_at"])
            self.sessions: list[tuple[SessionAddr, dict[str, Any]]] = []
            for e in m["sessions"]:
                addr = session_addr(e["namespace"], e["session"])
                want = {"creds": bool(e["creds"]), "keys": dict(e["keys"]), "sha": e["sha256"]}
                self.sessions.append((addr, want))
        except (KeyError, TypeError, ValueError, StoreError) as exc:
            raise CorruptDataError(f"backup file {reader.path}: bad manifest ({exc})") from None
        if len({a for a, _ in self.sessions}) != len(self.sessions):
            raise CorruptDataError(f"backup file {reader.path}: a session is listed twice")
        self.keys = sum(sum(w["keys"].values()) for _, w in self.sessions)
        self.creds = sum(1 for _, w in self.sessions if w["creds"])


def check_destination(store: AuthStore, plan: Plan) -> None:
    """Refuse up front what cannot work: missing master keys, an unleased shared cache."""
    config = store.config
    if config.redis_cache and not config.leases:
        # Raw durable writes bypass the cache: only a lease keeps other processes from
        # filling it with the session's old state meanwhile.
        raise ConfigError("restore into a store with a Redis cache needs leases (lease=auto|on)")
    missing = sorted(set(plan.key_ids) - store.codec.keyring.ids)
    if missing:
        raise ConfigError(
            f"the backup is encrypted with master key id(s) {', '.join(map(str, missing))}, "
            "which this store is not configured with (BAILEYS_STORE_MASTER_KEYS)"
        )


def _check_decodes(codec: Codec, addr: SessionAddr, first: tuple[str, str, bytes]) -> None:
    """Prove the destination's codec opens the session's records (one, authenticated)."""
    key_type, key_id, blob = first
    aad = creds_aad(*addr) if key_type == "" else key_aad(*addr, key_type, key_id)
    try:
        codec.open(blob, aad)
    except DecryptError as exc:
        kid = codec.key_id_of(blob)
        raise ConfigError(
            f"session {addr}: records do not open with this store's codec ({exc}); "
            + (
                f"is master key {kid} the key the backup was written with?"
                if kid
                else "the backup is not encrypted (allow_plaintext_reads migrates it)"
            )
        ) from None
    except CorruptDataError as exc:
        raise CorruptDataError(f"session {addr}: a record is damaged ({exc})") from None


class Pass:
    """One pass over the frames, checking each session against the manifest as it ends."""

    def __init__(self, reader: BackupReader, plan: Plan) -> None:
        self.reader, self.plan = reader, plan
        self.index = -1
        self.sha = hashlib.sha256()
        self.creds: tuple[bytes, int] | None = None
        self.counts: dict[str, int] = {}
        self.first: tuple[str, str, bytes] | None = None

    def _bad(self, what: str) -> CorruptDataError:
        return CorruptDataError(f"backup file {self.reader.path} is damaged: {what}")

    @property
    def addr(self) -> SessionAddr:
        return self.plan.sessions[self.index][0]

    def begin(self, obj: list[Any]) -> None:
        self.index += 1
        if self.index >= len(self.plan.sessions):
            raise self._bad("more sessions than its manifest lists")
        if tuple(obj[1:]) != tuple(self.addr):
            raise self._bad(f"session {self.index + 1} is not the manifest's {self.addr}")
        self.sha, self.creds, self.counts, self.first = hashlib.sha256(), None, {}, None

    def record(self, obj: Any) -> list[KeyWrite]:
        """Check one frame; returns the key writes of a ``keys`` frame."""
        if self.index < 0 or not isinstance(obj, list) or not obj:
            raise self._bad("a frame outside any session")
        tag = obj[0]
        if tag == "creds" and len(obj) == 3 and isinstance(obj[1], bytes) and self.creds is None:
            self.creds = (obj[1], int(obj[2]))
            self.first = self.first or ("", "", obj[1])
            return []
        if tag == "keys" and len(obj) == 3 and isinstance(obj[1], str) and obj[2]:
            writes = []
            for pair in obj[2]:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], bytes)):
                    raise self._bad(f"a malformed key record in session {self.addr}")
                writes.append(KeyWrite(obj[1], str(pair[0]), pair[1]))
            self.counts[obj[1]] = self.counts.get(obj[1], 0) + len(writes)
            self.first = self.first or (obj[1], str(obj[2][0][0]), obj[2][0][1])
            return writes
        raise self._bad(f"an unexpected {str(tag)[:20]!r} frame in session {self.addr}")

    def end(self, codec: Codec) -> None:
        """The current session is complete: compare it with the manifest, prove it opens."""
        if self.index < 0:
            return
        want = self.plan.sessions[self.index][1]
        if self.sha.hexdigest() != want["sha"]:
            raise self._bad(f"session {self.addr} does not match its SHA-256")
        if self.counts != want["keys"] or (self.creds is not None) != want["creds"]:
            raise self._bad(f"session {self.addr} does not match its manifest counts")
        if self.first is not None:
            _check_decodes(codec, self.addr, self.first)

    def finish(self, codec: Codec) -> None:
        self.end(codec)
        if self.index + 1 != len(self.plan.sessions):
            raise self._bad("fewer sessions than its manifest lists")
