"""Pacing of retry loops: a loop that meets the same obstacle again must not
spin.

retry design:
- A loop that retries a call (a lock wait whose queue entry vanished, a
  write or commit that met a pending transaction or stale owners) calls
  :meth:`Pace.wait` before each retry. The first ``free`` retries go at
  once (the common case: one decision clears the obstacle); later ones
  sleep exponentially longer, from FIRST_PAUSE up to MAX_PAUSE, with
  jitter, so that several clients meeting the same obstacle do not retry
  in step. A retry loop thus costs the cluster a bounded number of calls
  per second, whatever goes wrong.
- With an op timeout (RADOSTDB_OP_TIMEOUT, given as ``limit``), the loop
  gives up once ``limit`` seconds passed since the first try: :meth:`wait`
  raises the error the caller's ``give_up`` builds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

FIRST_PAUSE = 0.002
MAX_PAUSE = 0.5


class Pace:
    """The pacing of one retry loop (see the module comment)."""

    __slots__ = ("free", "give_up", "limit", "pause", "retries", "started")

    def __init__(
        self, limit: float | None, give_up: Callable[[float], Exception], free: int = 2
    ) -> None:
        self.limit = limit
        self.give_up = give_up
        self.free = free
        self.retries = 0
        self.pause = FIRST_PAUSE
        self.started = time.monotonic()

    def expired(self) -> bool:
        """Has the op timeout passed since the first try?"""
        return self.limit is not None and time.monotonic() - self.started > self.limit

    def wait(self) -> None:
        """Before a retry: give up past the op timeout, else sleep if due."""
        if self.expired():
            raise self.give_up(time.monotonic() - self.started)
        self.retries += 1
        if self.retries <= self.free:
            return
        pause = self.pause * random.uniform(0.5, 1.0)
        if self.limit is not None:
            pause = min(pause, max(0.0, self.started + self.limit - time.monotonic()))
        time.sleep(pause)
        self.pause = min(self.pause * 2, MAX_PAUSE)
