"""Waking lock waiters: the process's watches on lock objects and the two
notifies that travel over them.

- A waiter watches the object it waits on (``ensure_watch``) and sleeps until
  a notify arrives there or a deadline passes (``generation`` then
  ``sleep``): waking is driven by the cluster, nothing polls.
- "W" (``announce``): somebody waits on this object. Sent synchronously, so
  when it returns every live watcher, and so every holder, has seen it;
  holders registered with ``listen`` are told (their ``on_wait``), and the
  object is marked as waited on.
- "C" (``changed``): the object changed (a release, a commit); every
  sleeper on it wakes and looks again. Sent without waiting for the
  answers; ``wake_waiters`` sends it only if a "W" was heard since the last
  one, so an uncontended release costs no notify.
- One watch per (I/O context, object), shared by every handle of the
  process. After ``fork()`` the child drops its parent's watches
  (``reset_after_fork``); before the connections shut down, ``drain`` waits
  for the notifies still in flight.
locking.py decides when to wait and when to wake; this module only carries
the messages.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import rados

from . import cluster as clustermod

NOTIFY_TIMEOUT_MS = 1000
WAIT_MSG = "W"
CHANGED_MSG = "C"


class _Notices:
    """Process-wide watches on the objects locks wait on, and what they deliver."""

    def __init__(self) -> None:
        # reentrant: a handle closed by the garbage collector may release its
        # locks from inside any of these methods
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.watches: dict[tuple[int, str], Any] = {}
        self.gen: dict[str, int] = {}  # object -> notifies seen
        self.waited: set[str] = set()  # objects on which somebody announced a wait
        self.listeners: dict[str, weakref.WeakSet[Any]] = {}  # object -> tables told of waits
        self.inflight: list[Any] = []  # aio notifies not yet completed

    def ensure_watch(self, io: Any, obj: str) -> None:
        key = (id(io), obj)
        if key in self.watches:
            return

        def on_notify(_nid: int, _notifier: int, _wid: int, data: bytes) -> None:
            msg = bytes(data or b"")
            with self.cond:
                self.gen[obj] = self.gen.get(obj, 0) + 1
                listeners = list(self.listeners.get(obj, ()))
                if msg == WAIT_MSG.encode():
                    self.waited.add(obj)
                self.cond.notify_all()
            if msg == WAIT_MSG.encode():
                for table in listeners:
                    table.on_wait(obj)

        try:
            try:
                watch = io.watch(obj, on_notify)
            except rados.ObjectNotFound:  # an object never written: create it empty
                with rados.WriteOpCtx() as op:
                    op.new(rados.LIBRADOS_CREATE_IDEMPOTENT)
                    io.operate_write_op(op, obj)
                watch = io.watch(obj, on_notify)
        except rados.Error as exc:
            raise clustermod.io_error(exc, f"watching {obj}") from None
        with self.lock:
            if key in self.watches:  # raced with another thread
                clustermod.abandon([watch])
            else:
                self.watches[key] = clustermod.track_watch(watch)

    def listen(self, obj: str, table: Any) -> None:
        with self.lock:
            self.listeners.setdefault(obj, weakref.WeakSet()).add(table)

    def generation(self, obj: str) -> int:
        with self.lock:
            return self.gen.get(obj, 0)

    def sleep(self, obj: str, since: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.gen.get(obj, 0) != since, timeout)

    def announce(self, io: Any, obj: str) -> None:
        try:
            io.notify(obj, WAIT_MSG, NOTIFY_TIMEOUT_MS)
        except rados.Error:
            pass  # a dead watcher timed out: its lease will end

    def take_waited(self, obj: str) -> bool:
        with self.lock:
            if obj in self.waited:
                self.waited.discard(obj)
                return True
            return False

    def mark_waited(self, obj: str) -> None:
        with self.lock:
            self.waited.add(obj)

    def changed(self, io: Any, obj: str) -> None:
        comp = io.aio_notify(obj, _ignore, CHANGED_MSG, NOTIFY_TIMEOUT_MS)
        with self.lock:
            self.inflight = [c for c in self.inflight if not c.is_complete()]
            self.inflight.append(comp)

    def drain(self) -> None:
        with self.lock:
            inflight, self.inflight = self.inflight, []
        for comp in inflight:
            comp.wait_for_complete_and_cb()


def _ignore(*_args: Any) -> None:
    """aio notify completions need no handling."""


_notices = _Notices()


def ensure_watch(io: Any, obj: str) -> None:
    """Watch obj (once per I/O context and object); creates it empty if needed."""
    _notices.ensure_watch(io, obj)


def listen(obj: str, table: Any) -> None:
    """Call ``table.on_wait(obj)`` (from the notify thread: it must not block)
    whenever a wait is announced on obj; ``table`` is held weakly."""
    _notices.listen(obj, table)


def generation(obj: str) -> int:
    """How many notifies on obj this process has seen: the mark to sleep from."""
    return _notices.generation(obj)


def sleep(obj: str, since: int, timeout: float) -> bool:
    """Sleep until a notify on obj after generation `since` (True), or timeout."""
    return _notices.sleep(obj, since, timeout)


def announce(io: Any, obj: str) -> None:
    """Send "W" on obj; returns once every watcher has seen it (or
    NOTIFY_TIMEOUT_MS passed for a dead one)."""
    _notices.announce(io, obj)


def announce_wait(io: Any, obj: str) -> int:
    """Watch obj and announce a wait on it; returns the generation to sleep from."""
    _notices.ensure_watch(io, obj)
    gen = _notices.generation(obj)
    _notices.announce(io, obj)
    return gen


def take_waited(obj: str) -> bool:
    """Whether a wait was announced on obj since the last call (and forget it)."""
    return _notices.take_waited(obj)


def mark_waited(obj: str) -> None:
    """Remember that somebody still waits on obj (wake them on the next change)."""
    _notices.mark_waited(obj)


def wake(io: Any, obj: str) -> None:
    """Send "C" on obj: every waiter looks again (no wait for the answers)."""
    _notices.changed(io, obj)


def wake_waiters(io: Any, obj: str) -> None:
    """After a change on obj: send "C" if a wait was announced since the last one."""
    if _notices.take_waited(obj):
        _notices.changed(io, obj)


def busy_here() -> bool:
    """Whether this thread is inside this module's lock (a notify callback
    waiting for it would deadlock with a watch closed from here)."""
    return bool(_notices.lock._is_owned())  # type: ignore[attr-defined]


def drain() -> None:
    """Wait for the notifies in flight (their callbacks must not run after the
    connection is gone)."""
    _notices.drain()


def reset_after_fork() -> None:
    """In a forked child: the parent's watches are abandoned, never touched."""
    global _notices
    clustermod.abandon(_notices.watches.values())
    _notices = _Notices()
