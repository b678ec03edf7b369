"""The backends: one module or subpackage per engine, each implementing ``contracts``.

``memory`` (in-process), ``sqlite`` (the embedded default), ``postgres``, ``mongodb`` and
``redis`` (the Redis-only durable tier, and the hybrid store's cache with its outbox). The
server backends are imported only when a URL names them (``_registry``), so their drivers stay
optional extras. Backends never import each other.
"""
