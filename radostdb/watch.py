"""Watched records: wait until a record changes, whoever changes it, on any host.

What Samba's dbwrap_watch gives g_lock and the share-mode code: a process
that found a record not to its liking (a lock held, say) registers as a
watcher, possibly while it holds the record's lock, lets the lock go, and
sleeps until a store, append or delete of the record, or a committed
transaction that wrote it; then it looks again.

watch design:
- Arming: a WATCH entry in the lock table of the record's shard (the class,
  locks.h), owned by the watch's own random id, for the key, with the
  handle's lock lease: one `lock` call. WATCH conflicts with nothing.
- Firing: a write of the key (apply, a transaction's part as it lands,
  clear: every key) removes the entry in the same atomic OSD operation and
  says so in its return value (APPLIED_WATCHED); the writer then sends
  "K" + key on the shard object (wakeup.keys_changed) without waiting for
  the answers. A write of a record nobody watches costs nothing more: same
  call, no notify. A transaction's committer sends it once the commit is
  decided.
- Waiting: the process watches the shard object (wakeup.ensure_watch, kept
  while armed: ``pin``, and made again at each renewal if the OSD dropped
  it) and sleeps until a "K" names the key. A notify can
  be lost (the process's watch re-made after an OSD restart or a watch
  timeout): so every POLL (a third of the lease, at most POLL_MAX) the
  waiter renews its entry with the same `lock` call, whose reply says
  whether the entry was still there. Gone means fired: removed by a write,
  or lapsed (then the wait returns, spuriously). So a change committed
  after arming always ends the wait: its write found the entry and removed
  it (the notify, or at worst the next renewal, tells), or the entry had
  lapsed, which the renewal also tells.
- Spurious wakeups happen and callers must look again (as Samba's do): a
  store of the same value; a transaction part that landed and then
  aborted; an entry that lapsed while the process was stopped; a key that
  a reshard moved (its entry stays behind on the old shard: the renewal
  there answers -ESTALE); a clear, or a transaction naming more than
  wakeup.KEYS_MAX keys on one shard ("*" wakes every watch on the shard);
  a notify that a write sent for another watch of the same key.
- One-shot, as dbwrap_watch: a watch that fired stays fired; ``rearm``
  arms it again (``Tdb.watch_iter`` does that for each change).
- A watcher that died leaves an entry that ends with its lease; a write
  meeting it before then removes it and sends one notify, which the writer
  does not wait for. Nothing else is left.
- Closing a handle cancels the watches it armed (only forgets them when
  the cluster does not answer: the entries lapse).
- Watches belong to the process that made them: after fork() the child's
  calls on its parent's watch raise TDB's lock error (the parent may still
  be waiting on the entry).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from . import clsops, forks, wakeup
from .errors import ERR_LOCK, TdbError

if TYPE_CHECKING:
    from .router import Router
    from .shardclient import Shards

POLL_MAX = 5.0  # seconds between renewals of a waiting watch, at most


class Watch:
    """A record's watch: armed on creation (see the module comment). Use
    :meth:`wait`, then :meth:`rearm` to wait for the next change, and
    :meth:`cancel` (or a ``with`` block) when done."""

    def __init__(self, shards: Shards, router: Router, key: bytes) -> None:
        self.key = bytes(key)
        self._shards = shards
        self._router = router
        self._id = os.urandom(clsops.OWNER_LEN)
        self._gen = forks.generation
        self._obj = ""  # the shard object holding our entry ("": not armed)
        self._since: tuple[int, int] = (0, 0)
        self._polled = 0.0
        self.fired = False  # a change (or a spurious wakeup) since the watch was armed
        self.rearm()

    # -- arming ----------------------------------------------------------------------------
    def _check_fork(self) -> None:
        if self._gen != forks.generation:
            raise TdbError(
                ERR_LOCK, "Locking error: this watch was made by the parent process before fork()"
            )

    def _renew(self) -> bool:
        """Arm or renew the entry where the key lives now: was it still armed
        there? A key that moved (a reshard) is armed where it went, and
        counts as fired."""
        moved = False

        def call(index: int) -> bool:
            nonlocal moved
            client = self._shards[index]
            if self._obj and client.obj != self._obj:
                self._unpin()
                moved = True
            if not self._obj:
                wakeup.pin(client.obj)
                self._obj = client.obj
            # watch the object first (or again, if the OSD dropped our watch while
            # the process was stopped): a notify after the entry exists reaches us
            wakeup.ensure_watch(client.io(), client.obj, verify=True)
            self._since = wakeup.key_generation(self._obj, self.key)
            return client.arm_watch(self._id, self.key)

        armed = self._router.route(self.key, call)
        self._polled = time.monotonic()
        return armed and not moved

    def rearm(self) -> None:
        """Arm the watch again: :meth:`wait` then returns after the next
        change of the record (after this call)."""
        self._check_fork()
        self._renew()
        self.fired = False

    # -- waiting ---------------------------------------------------------------------------
    def _poll_every(self) -> float:
        return min(self._shards.books.lease / 3, POLL_MAX)

    def wait(self, timeout: float | None = None) -> None:
        """Return once the record changed since the watch was armed (at
        once if it already fired); raise TimeoutError after ``timeout``
        seconds without. May return spuriously (the module comment)."""
        self._check_fork()
        if not self._obj:
            raise TdbError(ERR_LOCK, "Locking error: the watch was cancelled")
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        poll = self._poll_every()
        while not self.fired:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"record {self.key!r} did not change within {timeout:g} s")
            if now - self._polled >= poll:
                if not self._renew():
                    self.fired = True
                continue
            until = self._polled + poll if deadline is None else min(self._polled + poll, deadline)
            since = self._since
            if wakeup.sleep_key(self._obj, self.key, since, max(0.0, until - now)):
                gen, made = wakeup.key_generation(self._obj, self.key)
                if gen != since[0]:
                    self.fired = True
                elif made != since[1]:  # our watch was made again: a notify may be lost
                    self._polled = 0.0

    # -- ending ----------------------------------------------------------------------------
    def _unpin(self) -> None:
        if self._obj:
            wakeup.unpin(self._obj)
            self._obj = ""

    def cancel(self, network: bool = True) -> None:
        """Remove the entry (nothing to do if it fired or lapsed); its
        handle's close does it for every watch still armed. ``network=False``:
        only forget it here (the entry lapses with its lease)."""
        if not self._obj or self._gen != forks.generation:
            return
        obj = self._obj
        self._unpin()
        if not network:
            return

        def call(index: int) -> None:
            client = self._shards[index]
            if client.obj == obj:
                client.disarm_watch(self._id, self.key)

        self._router.route(self.key, call)

    def __del__(self) -> None:
        if getattr(self, "_obj", "") and self._gen == forks.generation:
            self._unpin()  # dropped armed: the process's watch may go; the entry lapses

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __repr__(self) -> str:
        state = "fired" if self.fired else ("armed" if self._obj else "cancelled")
        return f"<radostdb.Watch {self.key!r} {state}>"
