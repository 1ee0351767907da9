"""The process's lock service thread: work that must happen on time whatever
the application's threads do.

- Lease renewals at their deadlines (locking.py schedules each handle's next
  renewal when it takes or renews a lock: deadline-driven, nothing polls),
  and delayed jobs (txnlock.py releases an idle cached transaction lock).
- Small jobs handed over by notify callbacks, which must not block, and the
  closing of handles the garbage collector dropped on a thread where closing
  could deadlock (``close_safely``).
- One daemon thread, started on first use; it never waits for another
  thread. A job's failure is its owner's business: leases cover a job that
  could not reach the cluster, and the next deadline tries again.
- ``stop`` before the connections shut down (a later need starts a fresh
  thread): the job running finishes, the jobs still queued are dropped (at
  most one job, not a queue of them, delays the exit when the cluster does
  not answer); after ``fork()`` the child starts with an empty schedule.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from . import forks, wakeup


class _Service:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        # heap of (deadline, seq, key, job); jobs due together with one key run once
        self.due: list[tuple[float, int, Any, Callable[[], None]]] = []
        self.jobs: list[Callable[[], None]] = []
        self.seq = itertools.count()
        self.thread: threading.Thread | None = None
        self.stopped = False

    def _start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="radostdb-locks", daemon=True)
            self.thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        with self.cond:
            if self.stopped:
                return
            self.jobs.append(job)
            self._start()
            self.cond.notify()

    def call_at(self, when: float, job: Callable[[], None], key: Any) -> None:
        with self.cond:
            if self.stopped:
                return
            heapq.heappush(self.due, (when, next(self.seq), object() if key is None else key, job))
            self._start()
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            thread = self.thread
            self.cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(30)

    def _run(self) -> None:
        while True:
            with self.cond:
                while (
                    not self.stopped
                    and not self.jobs
                    and (not self.due or self.due[0][0] > time.monotonic())
                ):
                    timeout = self.due[0][0] - time.monotonic() if self.due else None
                    self.cond.wait(timeout)
                if self.stopped:
                    return
                jobs, self.jobs = self.jobs, []
                now = time.monotonic()
                timed: dict[int, tuple[Any, Callable[[], None]]] = {}  # keys kept alive
                while self.due and self.due[0][0] <= now:
                    _, _, key, job = heapq.heappop(self.due)
                    timed[id(key)] = (key, job)
            for job in [*jobs, *(job for _, job in timed.values())]:
                if self.stopped:  # stopping: what is left would only delay the exit
                    return
                try:
                    job()
                except Exception:
                    pass  # see the module comment: leases and the next deadline cover it


_service = _Service()


def submit(job: Callable[[], None]) -> None:
    """Run job() on the service thread, soon."""
    _service.submit(job)


def call_at(when: float, job: Callable[[], None], key: Any = None) -> None:
    """Run job() on the service thread at monotonic time ``when``. Of the jobs
    due in one pass that were given the same ``key`` (compared by identity),
    one runs: a handle scheduled for renewal twice is renewed once."""
    _service.call_at(when, job, key)


def close_safely(close: Callable[[], None]) -> None:
    """Run a finaliser's ``close`` (a handle the garbage collector dropped)
    where it cannot deadlock: here, unless this is a librados callback
    thread (a thread Python did not start: closing a watch from one waits for
    the callback itself) or a thread inside the notify lock (a callback may
    wait for it); then on the service thread. Errors are dropped: the
    handle's leases cover what could not be released."""
    foreign = isinstance(threading.current_thread(), threading._DummyThread)
    if foreign or wakeup.busy_here():
        _service.submit(lambda: _quietly(close))
    else:
        _quietly(close)


def _quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception:
        pass


def stop() -> None:
    """Stop the thread (and drop the schedule); a later call starts afresh."""
    global _service
    _service.stop()
    _service = _Service()


def _after_fork_in_child() -> None:
    """The parent's thread does not exist here (and its schedule is the
    parent's handles')."""
    global _service
    _service = _Service()


forks.at_fork_child(_after_fork_in_child)
