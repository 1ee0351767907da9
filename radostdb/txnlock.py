"""The transaction lock and a transaction's isolation, cached between
transactions.

txnlock design:
- A transaction holds two kinds of locks: the database's transaction lock
  (kind TXN in the lock table of ``radostdb.w.NAME``: transactions run one
  at a time) and an ISOLATION lock on every shard (tdb's allrecord read
  lock: other handles' writes, record locks and lock_all wait; their reads
  and read_lock_all do not).
- Taking them costs ONE round trip: the TXN lock (queued if busy, and read
  back), a try of every shard's isolation and a read of the journal are all
  sent at once. If the TXN lock is busy, the handle waits in its FIFO queue
  (isolation locks it already has are compatible with the holder's and are
  kept: they block what the holder blocks anyway). A busy shard is taken in
  shard order, queuing (locking.LockTable.acquire_all). If the journal holds
  records, the previous holder died or did not clean up: they are decided
  first (commit.recover_journal), so every transaction starts from a
  database without undecided commits.
- Cached ("sticky"): when a transaction ends and nobody waits, the handle
  keeps both locks. Its next transaction_start costs nothing. Left idle for
  CACHE_IDLE (1 s), they are released: an idle handle holds nothing and
  costs the cluster no renewals. A handle that
  wants either lock (a transaction, a write, a record lock, lock_all) queues
  in the OSD and announces itself with a "W" notify on the object; the
  holder hears it and, idle, releases at once (on the lock service thread),
  or, inside a transaction, right after it ends: the waiter is granted in
  the same atomic operation as the release. While ``requested``, the holder
  does not cache.
- The release settles the shards the holder's lazily settled transactions
  left pending (commit.Settlement), in the same call as each isolation lock,
  then forgets the journal records.
- Leases: both locks use the transaction lease (RADOSTDB_TXN_LEASE, default
  5 s, never more than the lock lease), renewed by the lock service while
  the handle lives. A holder that dies, cached or in a transaction, blocks
  others for one transaction lease; its expired entries turn "stale" and
  the first client that meets them fences it and decides its transactions.
- A renewal that finds the locks gone (the process was stopped, or cut off
  from the cluster, past its lease) drops the cache; the next
  transaction_start takes them again. A transaction caught in that state
  fails at commit with TDB's lock error: its isolation was lost, so its
  reads may be stale. If meanwhile another client fenced our owner id (the
  journal lists it: it decided our transactions), the handle takes a new
  owner id before taking the locks again.
"""

from __future__ import annotations

import enum
import threading
import time
import weakref

from . import clsops, commit, resolver, service, wakeup
from .errors import ERR_LOCK, ERR_NOLOCK, RadostdbError, TdbError
from .kinds import Kind, Mode
from .shardclient import Shards

CACHE_IDLE = 1.0  # seconds a cached lock is kept without a transaction


class _Fenced(RadostdbError):
    """Our owner id is fenced in the journal: it can commit nothing more."""


class State(enum.Enum):
    NONE = "none"
    ACQUIRING = "acquiring"
    ACTIVE = "active"
    CACHED = "cached"
    RELEASING = "releasing"


class TxnLock:
    """One handle's transaction lock and isolation."""

    def __init__(self, shards: Shards, committer: commit.Committer) -> None:
        self.shards = shards
        self.db = shards.db
        self.locks = shards.books
        self.committer = committer
        self.state = State.NONE
        self.requested = False
        self.idle_since = 0.0
        self.idle_check = False  # a _release_if_idle is scheduled
        self.held_keys = {(shards.db.wait_obj, Kind.TXN, Mode.EXCL, b"")} | {
            (o, Kind.ISOLATION, Mode.SHARED, b"") for o in shards.db.shard_objs
        }
        self.cond = threading.Condition()
        self.objects = {self.db.wait_obj, *self.db.shard_objs}
        self.locks.wait_listeners.append(weakref.WeakMethod(self._on_wait))
        shards.txn = self

    # -- what we hold -----------------------------------------------------------------
    def _intact(self) -> bool:
        return self.held_keys <= self.locks.held.keys()

    def holds(self) -> bool:
        """Do we hold the isolation now (active or cached)?"""
        return self.state in (State.ACTIVE, State.CACHED)

    def in_transaction(self) -> bool:
        """Is a transaction running (or starting) on the handle?"""
        return self.state in (State.ACTIVE, State.ACQUIRING)

    def forget_after_fork(self) -> None:
        """In a forked child: the locks are the parent's (kept and released
        by it); this handle holds nothing."""
        self.cond = threading.Condition()  # a parent thread may have held it at fork time
        self.state = State.NONE
        self.requested = False
        self.idle_check = False

    # -- start and end -------------------------------------------------------------------
    def start(self, nonblock: bool) -> None:
        """Hold both locks for a transaction (0 round trips when cached)."""
        if self.locks.holds_user_locks():
            # as tdb: "cannot start a transaction with locks held"
            raise TdbError(ERR_LOCK)
        with self.cond:
            while self.state == State.RELEASING:
                self.cond.wait()
            if self.state == State.CACHED:
                if self._intact() and not self.requested:
                    self.state = State.ACTIVE
                    return
                self.state = State.RELEASING
                cached = True
            else:
                cached = False
        if cached:  # lost, or somebody waits: give it up and queue again
            self._release()
        for attempt in range(2):
            with self.cond:
                self.requested = False
                self.state = State.ACQUIRING
            try:
                self._acquire(nonblock)
                break
            except _Fenced:
                # our owner id was fenced (our lease ran out while we were cut
                # off, and another client decided our transactions): give up
                # what it holds and come back under a new one
                with self.cond:
                    self.state = State.RELEASING
                self._release()
                self.locks.new_owner()
                if attempt:
                    raise TdbError(ERR_LOCK) from None
            except BaseException:
                with self.cond:
                    self.state = State.RELEASING
                self._release()
                raise
        with self.cond:
            self.state = State.ACTIVE

    def _acquire(self, nonblock: bool) -> None:
        io = self.shards.io()
        locks = self.locks
        waiter = self.shards.client(self.db.wait_obj)
        owner = locks.owner
        lease_ms = locks.txn_lease_ms
        wait_obj = self.db.wait_obj
        txn_key = (wait_obj, Kind.TXN, Mode.EXCL, b"")
        flags = 0 if nonblock else clsops.LOCK_QUEUE
        # one round: TXN (queued) + its state, the journal, every shard's isolation
        tcall = clsops.aio_lock(
            io, wait_obj, clsops.lock_request(owner, lease_ms, Kind.TXN, Mode.EXCL, b"", flags)
        )
        scall = clsops.aio_state(io, wait_obj)
        jcall = clsops.aio_journal(io, self.db.journal)
        try:
            self.shards.lock_each(
                self.db.shard_objs,
                Kind.ISOLATION,
                Mode.SHARED,
                nonblock=nonblock,
                lease_ms=lease_ms,
            )
        except TdbError as exc:
            self._drop_txn_call(tcall, scall, jcall)
            if nonblock and exc.code == ERR_LOCK:
                raise TdbError(ERR_NOLOCK) from None
            raise
        except BaseException:
            self._drop_txn_call(tcall, scall, jcall)
            raise
        err = tcall.error()
        st = scall.wait() if err is None else (scall.error() and None)
        journal = jcall.wait()
        if err is not None and isinstance(err, clsops.Busy) and nonblock:
            req = clsops.lock_request(owner, lease_ms, Kind.TXN, Mode.EXCL)
            if not waiter.ask_cached([wait_obj], lambda: clsops.lock(io, wait_obj, req)):
                raise TdbError(ERR_NOLOCK)
            err = None
            st = clsops.state(io, wait_obj)
            journal = clsops.journal(io, self.db.journal)
        if err is not None:
            if not isinstance(err, clsops.Unclean):
                raise err
            self.shards.resolver.unclean(wait_obj)
            waiter.lock(Kind.TXN, Mode.EXCL, nonblock=nonblock, lease_ms=lease_ms)
            journal = clsops.journal(io, self.db.journal)
        elif st is not None and waiter.granted(st, Kind.TXN, Mode.EXCL, b""):
            locks.note(txn_key, lease_ms)
            self._others_wait(st)
        else:  # queued: wait; the journal is read again with the state showing the grant
            locks.track(wait_obj, lease_ms)
            st, journal = waiter.wait_granted(
                Kind.TXN,
                Mode.EXCL,
                b"",
                lease_ms,
                queued=True,
                companion=lambda: clsops.aio_journal(io, self.db.journal),
            )
            locks.note(txn_key, lease_ms)
            self._others_wait(st)
        wakeup.ensure_watch(io, wait_obj)
        if owner in journal.fenced:
            raise _Fenced
        if journal.records or journal.legacy:
            resolver.recover_journal(self.db, journal, owner)

    def _others_wait(self, st: clsops.ObjectState | None) -> None:
        """Others queued for the transaction lock behind us: do not cache it."""
        if st is not None and any(
            e.owner != self.locks.owner and not e.held for e in st.header.entries
        ):
            with self.cond:
                self.requested = True

    def _drop_txn_call(self, *calls: clsops.Call) -> None:
        """The isolation failed: forget the TXN request sent with it."""
        for c in calls:
            c.error()
        try:
            clsops.unlock(
                self.shards.io(),
                self.db.wait_obj,
                clsops.unlock_request(self.locks.owner, Kind.TXN, Mode.EXCL),
            )
        except Exception:
            pass  # not queued, or expires with its lease

    def end(self, ok: bool = True) -> None:
        """The transaction ended: keep both locks, unless somebody waits (or
        the transaction failed), then release them now."""
        with self.cond:
            if self.state != State.ACTIVE:
                return
            if ok and not self.requested and self._intact():
                self.state = State.CACHED
                self.idle_since = time.monotonic()
                if not self.idle_check:  # one timer per idle period, not per transaction
                    self.idle_check = True
                    service.call_at(self.idle_since + CACHE_IDLE, self._release_if_idle)
                return
            self.state = State.RELEASING
        self._release()

    def _release_if_idle(self) -> None:
        """(service thread) Give the cached locks up after CACHE_IDLE unused."""
        with self.cond:
            self.idle_check = False
            if self.state not in (State.CACHED, State.ACTIVE):
                return  # released meanwhile: the next end() schedules a check
            if self.state == State.ACTIVE or time.monotonic() - self.idle_since < CACHE_IDLE - 0.01:
                # used again meanwhile: look again when that use has been idle long enough
                self.idle_check = True
                service.call_at(
                    max(self.idle_since, time.monotonic()) + CACHE_IDLE, self._release_if_idle
                )
                return
            self.state = State.RELEASING
        self._release()

    def close(self) -> None:
        """Release whatever we hold (handle close)."""
        with self.cond:
            while self.state == State.RELEASING:
                self.cond.wait()
            if self.state == State.NONE:
                return
            self.state = State.RELEASING
        self._release()

    # -- giving the locks up --------------------------------------------------------------
    def _on_wait(self, obj: str) -> None:
        """Somebody waits on obj (notify callback: must not block)."""
        if obj not in self.objects:
            return
        with self.cond:
            if self.state in (State.ACQUIRING, State.ACTIVE):
                self.requested = True
            elif self.state == State.CACHED:
                self.requested = True
                self.state = State.RELEASING
                service.submit(self._release)

    def _release(self) -> None:
        """Release the TXN lock and every isolation lock, settling what our
        lazily settled transactions left pending (state RELEASING)."""
        try:
            settles = self.committer.release_settles()
            items = [
                (o, settles.get(i, 0), Kind.ISOLATION) for i, o in enumerate(self.db.shard_objs)
            ]
            items.append((self.db.wait_obj, 0, Kind.TXN))
            items += [
                (o, 0, Kind.COMMIT)
                for o in self.db.shard_objs
                if self.locks.holds_kind(o, Kind.COMMIT)
            ]
            errors = self.shards.release_objects(items)
            self.committer.after_release(all(e is None for e in errors))
        finally:
            with self.cond:
                self.state = State.NONE
                self.requested = False
                self.cond.notify_all()

    def accept(self, index: int) -> int:
        """A transaction we committed that may still be pending on the shard."""
        return self.committer.settlement.accept(index) if self.holds() else 0

    def settled(self, index: int) -> None:
        """Our write to the shard settled what we had pending there."""
        self.committer.settlement.settled(index)
