"""The backup file (format 1): framing, writing atomically, reading and checking its envelope.

Layout (``docs/backup-format.md`` is the full description)::

    header    b"BSBACKUP" | version u16 BE (1) | flags u16 BE (0)            12 bytes
    frames    u32 BE length | msgpack array                                  repeated
    manifest  one frame: ["manifest", {...}]
    footer    manifest offset u64 BE | SHA-256 of every byte before the footer
              | b"BSBK-END"                                                  48 bytes

A session is its ``["session", ns, id]`` frame, an optional ``["creds", blob, version]``
frame and ``["keys", type, [[id, blob], ...]]`` frames, up to the next session frame or the
manifest; the manifest holds each session's counts and the SHA-256 of its frames' bytes.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgpack

from ..errors import CorruptDataError, InvalidInputError

MAGIC = b"BSBACKUP"
END = b"BSBK-END"
VERSION = 1
_HEADER = struct.Struct(">8sHH")
_FOOTER = struct.Struct(">Q32s8s")
_LEN = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
FOOTER_SIZE = _FOOTER.size
# No frame the writer makes comes near this (key chunks stop at CHUNK_BYTES plus one record):
# a damaged length field is refused instead of read into memory.
MAX_FRAME = 256 * 1024 * 1024
CHUNK_IDS = 500
CHUNK_BYTES = 4 * 1024 * 1024
_READ = 1024 * 1024


def frame(obj: Any) -> bytes:
    """One frame: the length-prefixed msgpack of ``obj``."""
    payload: bytes = msgpack.packb(obj, use_bin_type=True)
    return _LEN.pack(len(payload)) + payload


class BackupWriter:
    """Writes a backup to a temporary file beside ``path`` (mode 0600), renamed when complete.

    Args:
        path: The backup file to create.
        overwrite: Replace ``path`` if it exists (otherwise refused before anything is read).
    """

    def __init__(self, path: Path, *, overwrite: bool = False) -> None:
        if path.exists() and not overwrite:
            raise InvalidInputError(f"{path} exists (pass overwrite / --overwrite to replace it)")
        if not path.parent.is_dir():
            raise InvalidInputError(f"directory {path.parent} does not exist")
        self.path = path
        # mkstemp creates the file 0600: the records may be plaintext key material.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self._tmp = Path(tmp)
        self._file: IO[bytes] = os.fdopen(fd, "wb", buffering=_READ)
        self._sha = hashlib.sha256()
        self.offset = 0
        self.digest = ""  # hex SHA-256 of the file up to its footer, once finished
        self._write(_HEADER.pack(MAGIC, VERSION, 0))

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha.update(data)
        self.offset += len(data)

    def write(self, obj: Any) -> bytes:
        """Append one frame; returns its bytes (for the session's digest)."""
        data = frame(obj)
        self._write(data)
        return data

    def finish(self, manifest: dict[str, Any]) -> int:
        """Write the manifest and footer, fsync, rename into place; returns the file size."""
        at = self.offset
        self.write(["manifest", manifest])
        self.digest = self._sha.hexdigest()
        tail = _FOOTER.pack(at, self._sha.digest(), END)
        self._file.write(tail)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
        return self.offset + len(tail)

    def abort(self) -> None:
        """Drop the temporary file (after a failure); idempotent."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _damaged(path: Path, what: str) -> CorruptDataError:
    return CorruptDataError(f"backup file {path} is damaged or incomplete: {what}")


class BackupReader:
    """Reads a backup file: its envelope at once, its frames as a stream.

    Opening checks the header, the footer (a truncated file has none) and reads the manifest;
    :meth:`frames` streams the records and, once at the end, the whole-file checksum.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("rb")  # OSError (missing, unreadable) propagates as is
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            self.version, self.manifest, self.manifest_at, self.digest = self._envelope()
        except BaseException:
            self._file.close()
            raise

    def close(self) -> None:
        """Close the file; idempotent."""
        self._file.close()

    def __enter__(self) -> BackupReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _envelope(self) -> tuple[int, dict[str, Any], int, bytes]:
        f, path = self._file, self.path
        head = f.read(HEADER_SIZE)
        if len(head) < HEADER_SIZE or not head.startswith(MAGIC):
            raise CorruptDataError(f"{path} is not a baileys-store backup file")
        _, version, _flags = _HEADER.unpack(head)
        if version != VERSION:
            raise CorruptDataError(
                f"{path} is backup format {version}; this baileys-store reads format {VERSION}"
            )
        if self.size < HEADER_SIZE + FOOTER_SIZE:
            raise _damaged(path, "truncated (no footer)")
        f.seek(self.size - FOOTER_SIZE)
        at, digest, end = _FOOTER.unpack(f.read(FOOTER_SIZE))
        if end != END:
            raise _damaged(path, "truncated or altered (no end marker)")
        body_end = self.size - FOOTER_SIZE
        if not HEADER_SIZE <= at < body_end:
            raise _damaged(path, "the footer points outside the file")
        f.seek(at)
        found = self._read_frame(at, body_end)
        if found is None or at + len(found[1]) != body_end:
            raise _damaged(path, "the manifest frame does not end at the footer")
        obj = found[0]
        if not (isinstance(obj, list) and len(obj) == 2 and obj[0] == "manifest"):
            raise _damaged(path, "no manifest")
        if not isinstance(obj[1], dict) or not isinstance(obj[1].get("sessions"), list):
            raise _damaged(path, "the manifest is not a mapping with a session list")
        return int(version), obj[1], int(at), bytes(digest)

    def _read_frame(self, at: int, limit: int) -> tuple[Any, bytes] | None:
        """The frame at ``at`` (file positioned there) and its raw bytes; None at ``limit``."""
        if at == limit:
            return None
        raw_len = self._file.read(_LEN.size)
        if len(raw_len) < _LEN.size or at + _LEN.size > limit:
            raise _damaged(self.path, f"frame at byte {at} is cut off")
        (n,) = _LEN.unpack(raw_len)
        if n > MAX_FRAME or at + _LEN.size + n > limit:
            raise _damaged(self.path, f"frame at byte {at} runs past its section")
        payload = self._file.read(n)
        if len(payload) < n:
            raise _damaged(self.path, f"frame at byte {at} is cut off")
        try:
            obj = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except (ValueError, msgpack.UnpackException) as exc:
            raise _damaged(self.path, f"frame at byte {at} does not parse ({exc})") from None
        return obj, raw_len + payload

    def frames(self) -> Iterator[tuple[Any, bytes]]:
        """Every record frame as ``(object, raw bytes)``, in file order.

        After the last one the whole-file SHA-256 is checked (header, frames and manifest):
        a mismatch raises :class:`CorruptDataError` before the iterator ends.
        """
        sha = hashlib.sha256()
        self._file.seek(0)
        sha.update(self._file.read(HEADER_SIZE))
        at = HEADER_SIZE
        while (found := self._read_frame(at, self.manifest_at)) is not None:
            sha.update(found[1])
            at += len(found[1])
            yield found
        sha.update(self._file.read(self.size - FOOTER_SIZE - self.manifest_at))
        if sha.digest() != self.digest:
            raise _damaged(self.path, "the file's SHA-256 does not match its footer")
