"""Adapters for WhatsApp clients. Each submodule needs its client's extra, imported on demand.

* :mod:`baileys_store.integrations.pyaileys` — ``use_pyaileys_auth_state`` for pyaileys
  (``pip install baileys-store[pyaileys]``).
* :mod:`baileys_store.integrations.baileys_folder` — import/export of Baileys' multi-file auth
  folders (Node and pyaileys flavours); no extra dependency.
"""
