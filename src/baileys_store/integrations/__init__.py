"""Adapters for WhatsApp clients. Each submodule needs its client's extra, imported on demand.

* :mod:`baileys_store.integrations.pyaileys` — ``use_pyaileys_auth_state`` for pyaileys
  (``pip install baileys-store[pyaileys]``).
"""
