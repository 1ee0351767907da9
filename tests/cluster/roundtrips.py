"""Round trips of one thread, counted where radostdb calls librados.

A round trip is a group of requests the thread sends without waiting in
between: requests sent back to back (aio) and then waited for are one; a
synchronous call is one of its own. Counted at radostdb's few doors to
librados: class calls (clsops.Call, clsops.StatusCall and the synchronous
helpers) and watches (cluster.track_watch, which every new watch goes
through right after its synchronous ``io.watch``). Calls of other threads
(the lock service's renewals, late watches) are not counted: they are off
the caller's critical path.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from radostdb import clsops
from radostdb import cluster as clustermod


class Rounds:
    """The round trips of the thread that made it; ``log`` lists each
    request as ``round:what``."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.rounds = 0
        self.waited = True
        self.log: list[str] = []

    def send(self, what: str) -> None:
        if threading.get_ident() != self.thread:
            return
        if self.waited:
            self.rounds += 1
            self.waited = False
        self.log.append(f"{self.rounds}:{what}")

    def wait(self) -> None:
        if threading.get_ident() == self.thread:
            self.waited = True


@contextlib.contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rounds]:
    """Count the calling thread's round trips until the block ends."""
    r = Rounds()

    def sync(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            r.send(name)
            try:
                return fn(*args, **kwargs)
            finally:
                r.wait()

        return call

    def sent(init: Callable[..., None]) -> Callable[..., None]:
        def __init__(self: Any, io: Any, obj: str, method: str, *args: Any, **kw: Any) -> None:
            r.send(f"{method} {obj}")
            init(self, io, obj, method, *args, **kw)

        return __init__

    def waited(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any) -> Any:
            try:
                return fn(self)
            finally:
                r.wait()

        return call

    with monkeypatch.context() as m:
        for cls, wait in ((clsops.Call, "error"), (clsops.StatusCall, "result")):
            m.setattr(cls, "__init__", sent(cls.__init__))
            m.setattr(cls, wait, waited(getattr(cls, wait)))
        for name in ("_execute", "list_page", "write_status"):
            m.setattr(clsops, name, sync(name, getattr(clsops, name)))
        m.setattr(clustermod, "track_watch", sync("watch", clustermod.track_watch))
        yield r
