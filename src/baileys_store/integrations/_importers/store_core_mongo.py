"""store-core's MongoDB layout (see :mod:`.store_core` for both layouts and the sources read)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from ...errors import InvalidInputError, UnavailableError
from ._clients import open_mongo
from ._core import ForeignSession, check_creds
from ._store_core_codec import derive_key, open_field
from .store_core import DEFAULT_COLLECTION, keys_map

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.collection import AsyncCollection


class StoreCoreMongoSource:
    """store-core's MongoDB collection, read with ``find`` only."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        coll: AsyncCollection[dict[str, Any]],
        key: bytes | None,
    ) -> None:
        self._client = client
        self._coll = coll
        self._key = key

    @classmethod
    async def open(cls, url: str, master_key: str | None) -> StoreCoreMongoSource:
        """Connect to ``mongodb://HOST/DATABASE[?collection=NAME]``."""
        key = derive_key(master_key) if master_key else None
        client, db, ours = await open_mongo(url, "store-core", options=("collection",))
        return cls(client, db[ours.get("collection") or DEFAULT_COLLECTION], key)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._client.close()

    async def sessions(self) -> list[str]:
        """Ids of the documents with creds."""
        try:
            ids = [
                d["_id"] async for d in self._coll.find({"creds": {"$type": "string"}}, {"_id": 1})
            ]
        except PyMongoError as exc:
            raise UnavailableError(f"source MongoDB: {exc}") from None
        return sorted(str(i) for i in ids)

    async def read(self, name: str) -> ForeignSession:
        """Creds and every key type of one session document."""
        where = f"document {name}"
        try:
            doc = await self._coll.find_one({"_id": name})
        except PyMongoError as exc:
            raise UnavailableError(f"source MongoDB: {exc}") from None
        if doc is None or "creds" not in doc:
            raise InvalidInputError(f"{where}: no such session document with creds")
        creds = check_creds(open_field(doc["creds"], self._key, f"{where}: creds"), where)
        fields = doc.get("keys") or {}
        if not isinstance(fields, dict):
            raise InvalidInputError(f"{where}: keys is not a sub-document")
        decoded = {t: open_field(v, self._key, f"{where}: keys.{t}") for t, v in fields.items()}
        notes = (
            ("appState left out (not part of Baileys' key store)",) if doc.get("appState") else ()
        )
        return ForeignSession(name, creds, keys_map(decoded, where), notes)


__all__ = ["StoreCoreMongoSource"]
