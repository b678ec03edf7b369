"""NATS JetStream as the write-behind outbox transport (extra ``[nats]``: ``nats-py``).

``StoreConfig.outbox = "nats://host:port[,host:port...][?stream=&prefix=&replicas=&ack_wait=]"``
(or ``tls://``). See :mod:`baileys_store.tiering._broker` for how the store uses it and
:mod:`._transport` for the stream layout.
"""

from __future__ import annotations

from ._subjects import decode_token, encode_token
from ._transport import NatsTransport
from ._url import NatsOptions, parse_nats_url

__all__ = ["NatsOptions", "NatsTransport", "decode_token", "encode_token", "parse_nats_url"]
