"""Import from npm ``mongo-baileys`` (hacxk/mongo-baileys, ``dist/js/auth/auth.js`` of v1.0.1).

What that package writes (``useMongoDBAuthState(collection)``, MongoDB Node driver 6):

* one collection per session (the app passes it; the session name here is the collection name);
* creds: ``updateOne({_id: "auth_creds"}, {$set: {creds}}, {upsert: true})`` — the creds object
  as a BSON sub-document, every Buffer/Uint8Array a BSON Binary (subtype 0); no BufferJSON;
* each key: ``updateOne({_id: "{type}-{id}"}, {$set: value}, {upsert: true})`` with the *raw*
  id (no file-name escaping) — the value's own fields become the document's fields; a falsy
  value is ``deleteOne``-d. Its reader returns the whole document (``_id`` included) with
  Binaries as Buffers.

Consequences this importer keeps to, not repairs: a value that is not an object (``sender-key``
and ``identity-key`` Buffers, ``lid-mapping`` strings, ``device-list`` arrays) makes ``$set``
fail, and the package only logs the error, so those keys are simply absent from its
collections; field names with ``.`` (``sender-key-memory`` device JIDs) are ``$set`` paths, so
they are stored nested — imported as the package reads them back. The ``_id`` field is dropped
(it is the name, not part of the value Baileys set). BSON Binary becomes ``bytes``, Int64
``int``; any other BSON type (ObjectId, dates, ...) is not something Baileys wrote: refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from ...errors import InvalidInputError, UnavailableError
from ._clients import open_mongo
from ._core import ForeignSession, check_creds, split_key_name, unknown_names_error

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

CREDS_ID = "auth_creds"
_SCALARS = (str, bool, float, type(None))


def from_bson(value: Any, where: str) -> Any:
    """A decoded BSON value as Baileys' JSON model: Binary → bytes, Int64 → int."""
    if isinstance(value, bytes):  # bytes and bson.Binary (a bytes subclass)
        return bytes(value)
    if isinstance(value, int):  # also bson.Int64
        return value if type(value) in (int, bool) else int(value)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return {str(k): from_bson(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [from_bson(v, where) for v in value]
    raise InvalidInputError(f"{where}: a BSON {type(value).__name__} Baileys never writes")


class MongoBaileysSource:
    """A ``mongo-baileys`` database: one collection per session, read with ``find`` only."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: AsyncDatabase[dict[str, Any]]):
        self._client = client
        self._db = db

    @classmethod
    async def open(cls, url: str) -> MongoBaileysSource:
        """Connect to ``mongodb://HOST/DATABASE``."""
        client, db, _ = await open_mongo(url, "mongo-baileys")
        return cls(client, db)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._client.close()

    async def sessions(self) -> list[str]:
        """Collections holding an ``auth_creds`` document."""
        try:
            names = await self._db.list_collection_names()
            return sorted(
                [n for n in names if await self._db[n].find_one({"_id": CREDS_ID}, {"_id": 1})]
            )
        except PyMongoError as exc:
            raise UnavailableError(f"source MongoDB: {exc}") from None

    async def read(self, name: str) -> ForeignSession:
        """Creds and every key document of the collection ``name``."""
        where = f"collection {name}"
        try:
            docs = [doc async for doc in self._db[name].find({})]
        except PyMongoError as exc:
            raise UnavailableError(f"source MongoDB: {exc}") from None
        creds: Any = None
        keys: dict[str, dict[str, Any]] = {}
        unknown: list[str] = []
        for doc in docs:
            doc_id = doc.pop("_id", None)
            if doc_id == CREDS_ID:
                creds = from_bson(doc.get("creds"), f"{where}: creds")
                continue
            parsed = split_key_name(doc_id) if isinstance(doc_id, str) else None
            if parsed is None:
                unknown.append(repr(doc_id))
                continue
            keys.setdefault(parsed[0], {})[parsed[1]] = from_bson(doc, f"{where}: {doc_id}")
        if creds is None:
            raise InvalidInputError(f"{where}: no {CREDS_ID} document with creds")
        if unknown:
            raise unknown_names_error(where, sorted(unknown))
        return ForeignSession(name, check_creds(creds, where), keys)


__all__ = ["CREDS_ID", "MongoBaileysSource", "from_bson"]
