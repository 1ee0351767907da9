"""A handle's USER entry on the transaction-lock object: held while it holds
or takes record or database EXCL locks, so that transactions and those
locks exclude each other as in tdb.

intent design:
- tdb's transaction holds an allrecord read lock from its start, so a
  transaction starts once no chain lock is held and no chain lock is
  granted until it ends. radostdb's transaction takes its isolation shard
  by shard, as it touches them (txnlock.py); a handle holding a record lock
  on one shard and waiting for another could otherwise wait for a
  transaction that waits for it. So before a record EXCL lock (chainlock,
  fetch_locked) or a whole-database EXCL lock, the handle holds USER on
  the transaction-lock object: USER conflicts with TXN only (its holders
  share it), FIFO as every lock there (cls/radostdb/locks.h). A
  transaction waits until every USER holder let go, and a USER request
  waits while a transaction runs or waits. Read locks need none: a
  transaction's isolation does not wait for them.
- Cached: after the handle's last such lock is released, USER is kept for
  CACHE_IDLE, so a handle locking in a loop asks for it once. A
  transaction that waits announces itself on the object ("W"); an idle
  holder then releases at once (on the lock service thread), a busy one as
  soon as its last lock is released.
- Renewed with the lock lease like the locks it covers. If a renewal finds
  it gone (the process was stopped or cut off past its lease), a
  transaction may have started meanwhile: the record and database locks
  are then lost too (locking.LockTable marks them), so nobody waits for a
  handle that cannot get USER back.
"""

from __future__ import annotations

import enum
import threading
import time
import weakref
from typing import TYPE_CHECKING

from . import service
from .kinds import Kind, Mode

if TYPE_CHECKING:
    from .shardclient import Shards

CACHE_IDLE = 1.0  # seconds USER is kept once no lock needs it


class State(enum.Enum):
    NONE = "none"
    HELD = "held"
    RELEASING = "releasing"


class UserIntent:
    """One handle's USER entry (see the module comment)."""

    def __init__(self, shards: Shards) -> None:
        self.shards = shards
        self.books = shards.books
        self.obj = shards.db.wait_obj
        self.state = State.NONE
        self.users = 0  # record or database EXCL locks held or being taken under it
        self.requested = False  # a transaction waits: let go once unused
        self.idle_since = 0.0
        self.idle_check = False
        self.cond = threading.Condition()
        self.books.wait_listeners.append(weakref.WeakMethod(self._on_wait))

    @property
    def key(self) -> tuple[str, int, int, bytes]:
        return (self.obj, Kind.USER, Mode.SHARED, b"")

    def take(self, nonblock: bool = False) -> None:
        """Before a record or database EXCL lock: hold USER (queued behind a
        transaction that runs or waits). Pair with :meth:`done`."""
        with self.cond:
            while self.state == State.RELEASING:
                self.cond.wait()
            self.users += 1
            if self.state == State.HELD and self.key in self.books.held:
                return
            self.state = State.NONE
        try:
            self.shards.client(self.obj).lock(
                Kind.USER, Mode.SHARED, nonblock=nonblock, lease_ms=self.books.lease_ms
            )
        except BaseException:
            with self.cond:
                self.users -= 1
            raise
        with self.cond:
            self.state = State.HELD  # a "W" heard while we waited stays requested

    def done(self) -> None:
        """A lock taken under USER was released (or could not be taken)."""
        with self.cond:
            self.users = max(0, self.users - 1)
            if self.users or self.state != State.HELD:
                return
            if self.requested:
                self.state = State.RELEASING
            else:
                self.idle_since = time.monotonic()
                if not self.idle_check:
                    self.idle_check = True
                    service.call_at(self.idle_since + CACHE_IDLE, self._release_if_idle)
                return
        self._release()

    def _release_if_idle(self) -> None:
        with self.cond:
            self.idle_check = False
            if self.state != State.HELD:
                return
            if self.users or time.monotonic() - self.idle_since < CACHE_IDLE - 0.01:
                self.idle_check = True
                service.call_at(
                    max(self.idle_since, time.monotonic()) + CACHE_IDLE, self._release_if_idle
                )
                return
            self.state = State.RELEASING
        self._release()

    def _on_wait(self, obj: str) -> None:
        """Somebody waits on obj (a notify callback: must not block)."""
        if obj != self.obj:
            return
        with self.cond:
            if self.state == State.RELEASING:
                return
            self.requested = True  # held, or being taken (it waits behind the transaction)
            if self.users or self.state != State.HELD:
                return
            self.state = State.RELEASING
        service.submit(self._release)

    def _release(self) -> None:
        try:
            if self.key in self.books.held:
                self.shards.release_each([self.obj], Kind.USER, Mode.SHARED)
        finally:
            with self.cond:
                self.state = State.NONE
                self.requested = False
                self.cond.notify_all()

    def close(self) -> None:
        """The handle closes: let go (its locks were released first)."""
        with self.cond:
            while self.state == State.RELEASING:
                self.cond.wait()
            if self.state != State.HELD:
                return
            self.state = State.RELEASING
        self._release()

    def forget_after_fork(self) -> None:
        """In a forked child: the entry is the parent's."""
        self.cond = threading.Condition()
        self.state = State.NONE
        self.users = 0
        self.requested = False
        self.idle_check = False
