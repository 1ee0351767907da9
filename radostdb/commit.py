"""Commits that are atomic across shards.

transaction design (the commit; the buffering is in txn.py, the
transaction lock and isolation in txnlock.py, deciding what a dead
committer left in resolver.py, the OSD's part at the top of
cls/radostdb/txn.cc):
- A transaction runs under the database's transaction lock and holds an
  ISOLATION lock on every shard it touched (txnlock.py), so no other handle
  writes what it read while it runs (tdb's allrecord read lock). Each part
  carries the transaction's epoch: the class takes the shard's isolation
  with the write if the transaction had none there, and refuses the part
  of a transaction whose holder lost the lock (a newer epoch took the
  shard: -ECANCELED, TDB's lock error).
- A shard that no longer holds a key of the batch (a split moved it)
  refuses its part with -ESTALE: the round is aborted, the batch grouped
  again with the new layout and committed under a new txid.
- A transaction touching ONE shard commits with one atomic `apply` call. No
  journal: the OSD applies the batch or nothing.
- A transaction X touching several shards commits in ONE parallel round
  (:meth:`Committer._round`): `stage(X)` on the journal object (a small
  record: committer and participants) and, at the same time, `apply(X)`
  on every participant, which checks its part, keeps the records it writes
  aside (the redo log, the object's data; the omap is untouched) and marks
  the shard pending X. X is committed once the journal holds X and every
  participant has X. When all the round's calls succeeded, the commit
  returns: nothing else is on the critical path. A part refused for a lock
  (EBUSY) or a decision (EUCLEAN) is sent again by its shard client, which
  waits or resolves first (shardclient.py).
- Settling is lazy: the committer's next write to a shard carries
  `settle = X` (the OSD installs the redo log first), and so does the release
  of its isolation lock; the journal record of X is marked complete by the
  next stage, or before the release round that settles its shards
  (txnlock._complete_first), and forgotten once every participant is
  settled. Until then a reader of a shard pending X decides it
  (resolver.py). Complete before any other committer can get at a shard:
  a shard shows only the last transaction applied and settled there, so
  once another's multi-shard transaction settled on it, it no longer shows
  X, and a STAGED X missing on one participant is decided aborted.
- Readers never see half a commit: a shard pending X answers reads with
  "pending" until a decision, and the decision "committed" needs every
  participant to have X. The committer itself reads through its own
  committed transactions (`accept`: the OSD reads the redo log first).
  A rollback only drops the redo log: no record was changed.
- Death at each step: before the round -> nothing happened. During it ->
  some of stage/applies landed: decided "aborted" once the committer's
  lease ends (rolled back everywhere), or "committed" if everything landed.
  After it -> committed; pending marks and the journal record are cleaned
  by whoever meets them. A committer whose lease ran out while it was
  stopped is fenced in the journal by the first client that meets its
  stale lock entries, so it can stage nothing more. The tests kill a
  committer at each of these steps by replacing ``_round`` (and the
  release of the transaction lock) in the process they kill
  (tests/cluster/crashpoints.py): nothing here looks for them.
"""

from __future__ import annotations

import errno
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import clsops, forks
from . import cluster as clustermod
from .errors import ERR_IO, ERR_LOCK, TdbError
from .resolver import DbObjects, decide

if TYPE_CHECKING:
    from .shardclient import Shards

Entries = list[tuple[int, bytes, bytes]]


@dataclass
class Settlement:
    """A committer's lazily settled transactions: which shard is still
    pending which of its committed transactions, and which journal records
    can be forgotten. Thread-safe (the release runs on the lock service)."""

    pending: dict[int, int] = field(default_factory=dict)  # shard index -> txid
    unsettled: dict[int, set[int]] = field(default_factory=dict)  # txid -> shard indexes
    latest: int = 0  # the last committed txid, not yet marked complete
    forgettable: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, index: int) -> int:
        return self.pending.get(index, 0)

    def settled(self, index: int) -> None:
        with self.lock:
            txid = self.pending.pop(index, 0)
            shards = self.unsettled.get(txid)
            if shards is not None:
                shards.discard(index)
                if not shards:
                    del self.unsettled[txid]
                    self.forgettable.add(txid)

    def committed(self, txid: int, indexes: list[int]) -> None:
        with self.lock:
            for i in indexes:
                old = self.pending.get(i, 0)
                if old:  # settled by this round's piggyback
                    shards = self.unsettled.get(old)
                    if shards is not None:
                        shards.discard(i)
                        if not shards:
                            del self.unsettled[old]
                            self.forgettable.add(old)
                self.pending[i] = txid
            self.unsettled[txid] = set(indexes)
            self.latest = txid

    def take_marks(self) -> tuple[list[int], list[int]]:
        """(records to mark complete, records to forget) for the next stage."""
        with self.lock:
            complete = [self.latest] if self.latest in self.unsettled else []
            forget = sorted(self.forgettable)
            self.forgettable.clear()
            return complete, forget

    def clear(self) -> list[int]:
        """Everything settled (the isolation was released): records to forget."""
        with self.lock:
            out = sorted(set(self.unsettled) | self.forgettable)
            self.pending.clear()
            self.unsettled.clear()
            self.forgettable.clear()
            self.latest = 0
            return out


# -- committing ------------------------------------------------------------------------------
ROUTE_TRIES = 30  # times a commit is grouped again after a shard moved a key


class _Moved(Exception):
    """A part's shard no longer holds one of its keys: group again."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def _lost_lock() -> TdbError:
    return TdbError(
        ERR_LOCK,
        "Locking error: the transaction lost its lock (its lease ran out) and was aborted",
    )


class Committer:
    """Commits a transaction's batch for the handle holding the transaction
    lock and isolation (txnlock.TxnLock), and keeps its lazy settlement."""

    def __init__(self, shards: Shards) -> None:
        self.shards = shards
        self.db: DbObjects = shards.db
        self.settlement = Settlement()

    def commit(
        self,
        ops: Entries,
        group: Callable[[Entries], dict[int, Entries]],
        stale: Callable[[int], None],
    ) -> None:
        """Commit a transaction's batch: ``group`` maps it to shards, and is
        asked again after ``stale(index)`` when a shard answered -ESTALE."""
        for _ in range(ROUTE_TRIES):
            by_shard = group(ops)
            if not by_shard:
                return
            try:
                if len(by_shard) == 1:
                    ((index, entries),) = by_shard.items()
                    try:
                        fired = self.shards[index].write_part(entries)
                    except clsops.Canceled:
                        raise _lost_lock() from None
                    self.shards[index].watchers_told(fired, entries)
                else:
                    self._commit_multi(by_shard)
                return
            except _Moved as moved:
                stale(moved.index)
            except clsops.Stale:
                stale(next(iter(by_shard)))
        raise TdbError(ERR_IO, "IO Error: the transaction's shards kept moving (resharding)")

    def _commit_multi(self, by_shard: dict[int, Entries]) -> None:
        txid = random.getrandbits(63) or 1
        participants = sorted(by_shard)
        owner = self.shards.books.owner
        complete, forget = self.settlement.take_marks()
        stage_err, errors = self._round(txid, participants, by_shard, complete, forget)
        if stage_err is not None:
            self._abort(txid, owner, participants)
            if isinstance(stage_err, clsops.Canceled) or getattr(stage_err, "errno", 0) in (
                errno.EEXIST,
                errno.ECANCELED,
            ):
                raise _lost_lock() from None
            raise stage_err
        moved = next((i for i, e in errors.items() if isinstance(e, clsops.Stale)), None)
        if moved is not None:  # a key moved: abort, and the caller groups again
            self._abort(txid, owner, participants)
            raise _Moved(moved)
        fired = {i for i, e in errors.items() if isinstance(e, int) and e & clsops.APPLIED_WATCHED}
        for i, err in errors.items():
            if not isinstance(err, Exception):
                continue
            try:
                if self.shards[i].write_part(by_shard[i], txid, participants, first=err):
                    fired.add(i)
            except clsops.Canceled:  # a part fenced, or a newer epoch: we lost the lock
                self._abort(txid, owner, participants)
                raise _lost_lock() from None
            except clsops.Stale:
                self._abort(txid, owner, participants)
                raise _Moved(i) from None
            except BaseException:
                self._abort(txid, owner, participants)
                raise
        for i in participants:
            self.shards.txn.note_isolated(i)
        self.settlement.committed(txid, participants)
        for i in sorted(fired):  # committed: now the watchers of what it wrote may look
            self.shards[i].watchers_told(clsops.APPLIED_WATCHED, by_shard[i])

    def _round(
        self,
        txid: int,
        participants: list[int],
        by_shard: dict[int, Entries],
        complete: list[int],
        forget: list[int],
    ) -> tuple[Exception | None, dict[int, Exception | int]]:
        """The parallel round: the journal record and every part at once.
        Returns the stage's error and each part's outcome (an error, or its
        APPLIED_* bits: landed)."""
        io = self.shards.io()
        stage = clsops.aio_stage(
            io,
            self.db.journal,
            clsops.stage_request(txid, self.shards.books.owner, participants, complete, forget),
        )
        parts = {
            i: self.shards[i].aio_write_part(by_shard[i], txid, participants) for i in participants
        }
        stage_err = stage.error()
        return stage_err, {i: c.result() for i, c in parts.items()}

    def _abort(self, txid: int, owner: bytes, participants: list[int]) -> None:
        """Our own commit failed before it completed: make it aborted
        everywhere (best effort; whoever meets it later decides the same)."""
        info = clsops.PendingInfo(txid, owner, participants)
        try:
            decide(self.db, info, assume_dead=True)
        except Exception:
            pass  # left pending: readers decide it once our lease is over

    def forget_after_fork(self) -> None:
        """In a forked child: the parent settles its own transactions."""
        self.settlement = Settlement()

    def release_settles(self) -> dict[int, int]:
        """Shard index -> txid to settle when the isolation is released."""
        return dict(self.settlement.pending)

    def after_release(self, ok: bool) -> None:
        """The isolation was released (settling every pending shard if ok):
        forget our journal records, without waiting."""
        forget = self.settlement.clear()
        if ok and forget:
            _track(clsops.aio_txn_mark(self.shards.io(), self.db.journal, forget=forget))


_inflight: list[clsops.Call] = []
_inflight_lock = threading.Lock()


def _track(call: clsops.Call) -> None:
    with _inflight_lock:
        _inflight[:] = [c for c in _inflight if not c.comp.is_complete()]
        _inflight.append(call)


def drain() -> None:
    """Wait for clean-up calls still in flight (before connections shut down)."""
    with _inflight_lock:
        calls, _inflight[:] = list(_inflight), []
    for c in calls:
        c.error()


def _after_fork_in_child() -> None:
    """The parent's clean-up calls are its own: never waited for here."""
    global _inflight_lock
    forks.abandon(c.comp for c in _inflight)
    _inflight.clear()
    _inflight_lock = threading.Lock()


clustermod.before_shutdown(drain)
forks.at_fork_child(_after_fork_in_child)
