"""Drive one configuration's ``keys.set`` or ``keys.get`` in a loop, for a profiler to sample.

Usage (flame graphs of issue 14; see docs/bench/profiles.md):

    py-spy record -r 400 -o docs/bench/flame-write-behind-set.svg -- \
        .venv/bin/python scripts/profile_ops.py write-behind set

    .venv/bin/python scripts/profile_ops.py write-through set --cprofile   # top functions

Configurations are the bench's cost configurations (``baileys_store.bench._costs``); Redis is
``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). The SQLite file lives in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

from baileys_store import AuthStore
from baileys_store.bench._costs import CONFIGS, VALUE, config_for


async def _drive(config: str, op: str, seconds: float, profile: bool) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    with tempfile.TemporaryDirectory(prefix="bs-profile-") as tmp:
        async with AuthStore(config_for(config, Path(tmp), url)) as store:
            keys = store.session("profile").keys
            for _ in range(200):
                await keys.set({"session": {"1": VALUE}})
            prof = cProfile.Profile() if profile else None
            if prof is not None:
                prof.enable()
            n, end = 0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                for _ in range(100):
                    if op == "set":
                        await keys.set({"session": {"1": VALUE}})
                    else:
                        await keys.get("session", ["1"])
                n += 100
            if prof is not None:
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            print(f"{config} {op}: {n} calls, {seconds / n * 1e6:.0f} us per call")


def main() -> None:
    """Parse the arguments and drive the loop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", choices=CONFIGS)
    parser.add_argument("op", choices=("set", "get"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cprofile", action="store_true", help="print cProfile's top functions")
    args = parser.parse_args()
    asyncio.run(_drive(args.config, args.op, args.seconds, args.cprofile))


if __name__ == "__main__":
    main()
