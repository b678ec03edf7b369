"""Count the Python calls one ``keys.set()`` and one ``keys.get()`` make in baileys_store.

Issue 13 sets a target for the embedded default (SQLite + in-process cache): one ``keys.set()``
in at most 35 Python calls and 8 files. This measures it with ``sys.setprofile`` on the event
loop's thread: calls of functions defined in ``baileys_store``, the distinct functions and files
they are in, and the switches between files, in call order. Python 3.11 cannot profile threads
already running, so the SQLite writer thread's few calls (the transaction itself) are not
counted; the figure is what the event loop runs. Run: ``.venv/bin/python scripts/callcount.py``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from itertools import pairwise
from pathlib import Path
from types import FrameType
from typing import Any

import baileys_store
from baileys_store import AuthStore, StoreConfig
from baileys_store.observability import NullMetrics

PACKAGE = str(Path(baileys_store.__file__).parent)


class Counter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        path = frame.f_code.co_filename
        if path.startswith(PACKAGE):
            self.calls.append((path[len(PACKAGE) + 1 :], frame.f_code.co_qualname))

    def report(self, what: str) -> str:
        files = [f for f, _ in self.calls]
        switches = sum(1 for a, b in pairwise(files) if a != b)
        return (
            f"{what}: {len(self.calls)} calls, {len(set(self.calls))} functions, "
            f"{len(set(files))} files, {switches} switches between files"
        )


async def measure(op: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        store = AuthStore(StoreConfig(durable=f"sqlite:///{tmp}/c.db"), metrics=NullMetrics())
        await store.open()
        try:
            keys = store.session("s").keys
            for i in range(20):  # warm: lazy imports, caches, prepared statements
                await keys.set({"session": {"1": b"x" * 1200, str(i): b"y"}})
                await keys.get("session", ["1"])
            counter = Counter()
            sys.setprofile(counter)
            try:
                if op == "set":
                    await keys.set({"session": {"1": b"z" * 1200}})
                else:
                    await keys.get("session", ["1"])
            finally:
                sys.setprofile(None)
            if "--trace" in sys.argv:
                print("\n".join(f"  {f}:{fn}" for f, fn in counter.calls))
            return counter.report(f"keys.{op}()")
        finally:
            await store.close()


def main() -> None:
    for op in ("set", "get"):
        print(asyncio.run(measure(op)))


if __name__ == "__main__":
    main()
