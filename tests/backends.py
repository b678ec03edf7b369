"""The backends the contract suite, the concurrency proof and the e2e tests run on.

A backend joins every suite by adding its name here and a fixture ``backend_<name>`` (dashes
become underscores) that returns a :class:`tests.conftest.Backend`. A durable backend also
joins ``DURABLE_BACKENDS``: the durable contract (``tests/contract/test_durable_*.py``) then
runs on the backend built from that fixture's ``durable`` URL.
"""

CONTRACT_BACKENDS: list[str] = [
    "memory",
    "sqlite",
    "sqlite-nocache",
    "sqlite-encrypted",
    "redis",
    "redis-cluster",
    "redis-cache",
    "hybrid-wb",
    "hybrid-postgres",
    "hybrid-postgres-wb",
    "mongodb",
    "postgres",
]

DURABLE_BACKENDS: list[str] = [
    "memory",
    "sqlite",
    "postgres",
    "mongodb",
    "redis",
    "redis-cluster",  # the Redis-only durable tier on a Cluster: keys spread over slots
]
