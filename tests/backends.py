"""The backends the contract suite, the concurrency proof and the e2e tests run on.

A backend joins every suite by adding its name here and a fixture ``backend_<name>`` (dashes
become underscores) that returns a :class:`tests.conftest.Backend`.
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
