"""Commits that are atomic across shards, and deciding what a dead or
interrupted committer left behind.

transaction design (commit and recovery; the buffering is in txn.py, the
transaction lock and isolation in txnlock.py, the OSD's part at the top of
cls/radostdb/server.cc):
- A transaction runs under the database's transaction lock and holds an
  ISOLATION lock on every shard, so no other handle writes while it runs
  (tdb's allrecord read lock) and its reads see a stable database.
- A transaction touching ONE shard commits with one atomic `apply` call. No
  journal: the OSD applies the batch or nothing.
- A transaction X touching several shards commits in ONE parallel round:
  `stage(X)` on the journal object (a small record: committer and
  participants) and, at the same time, `apply(X)` on every participant,
  which checks its part, keeps the records it writes aside (the redo log,
  the object's data; the omap is untouched) and marks the shard pending
  X. X is committed once the journal holds X and every participant has X.
  When all the round's calls succeeded, the commit returns: nothing else
  is on the critical path.
- Settling is lazy: the committer's next write to a shard carries
  `settle = X` (the OSD installs the redo log first), and so does the release
  of its isolation lock; the journal record of X is marked complete by the
  next stage and forgotten once every participant is settled. Until then a
  reader of a shard pending X decides (`decide`): journal record COMPLETE,
  or STAGED with every participant having X -> committed, the reader settles
  the shard and reads on; ABORTED -> it rolls the shard back; otherwise, if
  X's committer still holds the transaction lock, X is in flight and the
  reader waits for a notify; if not, X is aborted: the participants lacking
  X are fenced (a late apply of X is refused), the journal record becomes
  ABORTED (a late stage is refused: stage and abort cannot both win), and
  the participants having X are rolled back. Decisions are idempotent and
  need no lock, so any client may take them, concurrently.
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
  stale lock entries (`resolve_stale`), so it can stage nothing more.
- ``RADOSTDB_TXN_CRASH_AT=<step>`` makes the committing process SIGKILL
  itself at a named step (tests): see CRASH_STEPS.
"""

from __future__ import annotations

import enum
import errno
import os
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import clsops, forks, layout, retry
from . import cluster as clustermod
from .clsops import Kind, TxnState
from .errors import ERR_CORRUPT, ERR_IO, ERR_LOCK, TdbError

CRASH_STEPS = (
    "before-round", "stage-only", "apply-partial", "applied-no-stage", "round-done",
    "before-release",
)


def crash_point(step: str) -> None:
    """Die here (SIGKILL) if RADOSTDB_TXN_CRASH_AT names this step (tests)."""
    if os.environ.get("RADOSTDB_TXN_CRASH_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


class Outcome(enum.Enum):
    COMMITTED = "committed"
    ABORTED = "aborted"
    IN_FLIGHT = "in flight"


Entries = list[tuple[int, bytes, bytes]]


@dataclass
class DbObjects:
    """The objects of one database a commit or a decision touches."""

    io: Callable[[], Any]
    name: str
    shard_objs: list[str]
    journal: str = ""
    wait_obj: str = ""

    def __post_init__(self) -> None:
        self.journal = self.journal or layout.journal_object(self.name)
        self.wait_obj = self.wait_obj or layout.wait_object(layout.header_object(self.name))

    def shard(self, index: int) -> str:
        return self.shard_objs[index]

    def index(self, obj: str) -> int | None:
        try:
            return self.shard_objs.index(obj)
        except ValueError:
            return None


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


# -- deciding ---------------------------------------------------------------------------
def _owner_holds_txn(st: clsops.ObjectState | None, owner: bytes) -> bool:
    if st is None or owner in st.header.stale:
        return False
    return any(e.owner == owner and e.kind == Kind.TXN and e.held and e.expiry_ms > st.now_ms
               for e in st.header.entries)


def decide(db: DbObjects, info: clsops.PendingInfo, assume_dead: bool = False,
           _depth: int = 0) -> Outcome:
    """Decide transaction ``info.txid`` and carry the decision out on its
    participants (settle or roll back). IN_FLIGHT: its committer still holds
    the transaction lock and the outcome is not known yet."""
    io = db.io()
    txid = info.txid
    jcall = clsops.aio_journal(io, db.journal, txid)
    wcall = None if assume_dead else clsops.aio_state(io, db.wait_obj)
    scalls = {i: clsops.aio_state(io, db.shard(i)) for i in info.participants
              if i < len(db.shard_objs)}
    record = jcall.wait().records.get(txid)
    wait_state = None if wcall is None else wcall.wait()
    states = {i: c.wait() for i, c in scalls.items()}
    participants = record.participants if record is not None else info.participants
    missing = sorted({i for i in [*participants, *info.participants] if i >= len(db.shard_objs)})
    if missing:
        raise TdbError(
            ERR_CORRUPT,
            f"Corrupt database: transaction {txid:x} ({db.journal}) names shard(s) "
            f"{', '.join(map(str, missing))}, which {db.name!r} does not have "
            "(radostdb check --repair decides it)",
        )

    def header(i: int) -> clsops.ShardHeader:
        st = states.get(i)
        return st.header if st is not None else clsops.ShardHeader()

    pending_here = [i for i in participants if header(i).pending == txid]
    if record is not None and record.state == TxnState.ABORTED:
        _rollback(db, txid, pending_here)
        return Outcome.ABORTED
    if record is not None and (record.state == TxnState.COMPLETE
                               or all(header(i).has(txid) for i in participants)):
        clsops.wait_all(clsops.aio_settle(io, db.shard(i), txid) for i in pending_here)
        return Outcome.COMMITTED
    if not assume_dead and _owner_holds_txn(wait_state, info.owner):
        return Outcome.IN_FLIGHT
    if _depth > 5:
        raise TdbError(ERR_IO, f"cannot decide transaction {txid:x}: it keeps changing")
    # abort: the committer is gone and X is incomplete
    if record is not None:  # fence the participants X did not reach
        lacking = [i for i in participants if not header(i).has(txid)]
        calls = [clsops.aio_rollback(io, db.shard(i), txid) for i in lacking]
        if any(getattr(c.error(), "errno", 0) == errno.EEXIST for c in calls):
            return decide(db, info, assume_dead, _depth + 1)  # X landed meanwhile
    try:
        clsops.txn_abort(io, db.journal, txid, info.owner, participants)
    except TdbError as exc:
        if getattr(exc, "errno", 0) == errno.EEXIST:  # completed meanwhile
            return decide(db, info, assume_dead, _depth + 1)
        raise
    _rollback(db, txid, participants)
    return Outcome.ABORTED


def _rollback(db: DbObjects, txid: int, indexes: list[int]) -> None:
    io = db.io()
    calls = [clsops.aio_rollback(io, db.shard(i), txid) for i in indexes]
    for c in calls:
        err = c.error()
        if err is not None and getattr(err, "errno", 0) != errno.EEXIST:
            raise err


def resolve_stale(db: DbObjects, obj: str, owners: list[bytes]) -> None:
    """Deal with owners whose transaction lock or isolation expired on obj:
    fence them (they can stage nothing more), decide their transactions,
    then clear them from obj."""
    io = db.io()
    clsops.fence_owners(io, db.journal, owners)
    for rec in clsops.journal(io, db.journal).records.values():
        if rec.owner in owners and rec.state == TxnState.STAGED:
            decide(db, clsops.PendingInfo(rec.txid, rec.owner, rec.participants),
                   assume_dead=True)
    st = clsops.state(io, obj)
    if st is not None and st.header.pending and st.header.powner in owners:
        decide(db, st.header.pending_info(), assume_dead=True)  # type: ignore[arg-type]
    clsops.prune(io, obj, clsops.PRUNE_CLEAR_STALE, owners)


def resolve_object(db: DbObjects, obj: str) -> Outcome | None:
    """An operation on obj met -EUCLEAN: decide what blocks it. Returns the
    outcome of a pending transaction decided (IN_FLIGHT: wait and retry),
    or None when nothing blocks any more."""
    io = db.io()
    # a refused call cannot store what it found (the OSD drops a failed
    # method's writes): prune first, which records expired holders as stale
    prune = clsops.aio_prune(io, obj)
    scall = clsops.aio_state(io, obj)
    prune.error()
    st = scall.wait()
    if st is None:
        return None
    if st.header.stale:
        resolve_stale(db, obj, list(st.header.stale))
        return None
    info = st.header.pending_info()
    return None if info is None else decide(db, info)


def recover_journal(db: DbObjects, journal: clsops.Journal, me: bytes) -> int:
    """At the start of a transaction whose lock was just taken: finish every
    transaction a previous holder left in the journal. Returns how many."""
    if journal.legacy:
        raise TdbError(
            ERR_IO,
            f"database {db.name!r} has an unfinished commit written by radostdb 0.1 "
            f"({db.journal}); finish it with radostdb 0.1 before using this version",
        )
    io = db.io()
    done = []
    for rec in journal.records.values():
        if rec.owner == me and rec.state != TxnState.ABORTED:
            continue  # our own, settled lazily (txnlock keeps track)
        info = clsops.PendingInfo(rec.txid, rec.owner, rec.participants)
        if rec.state == TxnState.STAGED:
            decide(db, info, assume_dead=True)
        else:
            _finish(db, rec)
        done.append(rec.txid)
    if done:
        clsops.txn_mark(io, db.journal, forget=done)
    return len(done)


def _finish(db: DbObjects, rec: clsops.TxnRecord) -> None:
    """Carry out a decided journal record on its participants: settle a
    COMPLETE transaction, roll back an ABORTED one."""
    shards = [i for i in rec.participants if i < len(db.shard_objs)]
    if rec.state == TxnState.COMPLETE:
        clsops.wait_all(clsops.aio_settle(db.io(), db.shard(i), rec.txid) for i in shards)
    else:
        _rollback(db, rec.txid, shards)


def settle_all(db: DbObjects) -> list[str]:
    """Decide every transaction left pending on the database's shards or in
    its journal, and clear stale owners, without taking the transaction lock
    (radostdb check --repair). Returns the objects still waiting for a live
    committer (in flight)."""
    io = db.io()
    objs = [*db.shard_objs, db.wait_obj]
    for c in [clsops.aio_prune(io, o) for o in objs]:  # expired entries -> stale owners
        c.error()
    calls = {o: clsops.aio_state(io, o) for o in objs}
    left: list[str] = []
    for obj, call in calls.items():
        st = call.wait()
        if st is None:
            continue
        if st.header.stale:
            resolve_stale(db, obj, list(st.header.stale))
            st = clsops.state(io, obj)
        info = st.header.pending_info() if st is not None else None
        if info is not None and decide(db, info) == Outcome.IN_FLIGHT:
            left.append(obj)
    journal = clsops.journal(io, db.journal)
    if journal.legacy:
        recover_journal(db, journal, b"")  # raises the explanation
    wait_state = clsops.state(io, db.wait_obj)
    forget = []
    for rec in journal.records.values():
        info = clsops.PendingInfo(rec.txid, rec.owner, rec.participants)
        if rec.state == TxnState.STAGED:
            if decide(db, info) == Outcome.IN_FLIGHT:
                left.append(db.journal)
                continue
        elif _owner_holds_txn(wait_state, rec.owner):
            continue  # a live holder settles its own records lazily
        else:
            _finish(db, rec)
        forget.append(rec.txid)
    if forget:
        clsops.txn_mark(io, db.journal, forget=forget)
    return sorted(set(left))


# -- committing ---------------------------------------------------------------------------
class Committer:
    """Commits a transaction's batch for the handle holding the transaction
    lock and isolation (txnlock.TxnLock), and keeps its lazy settlement."""

    def __init__(self, db: DbObjects, owner: Callable[[], bytes],
                 wait_commit: Callable[[str], None],
                 resolve: Callable[[str], None]) -> None:
        self.db = db
        self.owner = owner
        self.wait_commit = wait_commit  # queue for the COMMIT lock of a shard
        self.resolve = resolve  # deal with -EUCLEAN on an object (and maybe wait)
        self.settlement = Settlement()

    def commit(self, by_shard: dict[int, Entries]) -> None:
        if not by_shard:
            return
        if len(by_shard) == 1:
            ((index, entries),) = by_shard.items()
            self._apply(index, entries, 0, ())
            return
        self._commit_multi(by_shard)

    def _request(self, index: int, entries: Entries, txid: int, participants: Any,
                 release: bool = False) -> bytes:
        wflags = clsops.WRITE_ASSERT_TXN | (clsops.WRITE_RELEASE if release else 0)
        return clsops.apply_request(self.owner(), wflags, entries, txid,
                                    self.settlement.accept(index), participants)

    def _apply(self, index: int, entries: Entries, txid: int, participants: Any) -> None:
        """One part, synchronously, waiting out shared locks and resolving
        what blocks it."""
        obj = self.db.shard(index)
        io = self.db.io()
        release = False
        pace = retry.Pace(None, lambda _: AssertionError("never: no limit"))  # resolve bounds it
        while True:
            try:
                clsops.apply(io, obj, self._request(index, entries, txid, participants, release))
                self.settlement.settled(index)
                return
            except clsops.Busy:
                self.wait_commit(obj)  # readers holding shared locks drain first
                release = True
            except clsops.Unclean:
                self.resolve(obj)
                pace.wait()

    def _commit_multi(self, by_shard: dict[int, Entries]) -> None:
        io = self.db.io()
        txid = random.getrandbits(63) or 1
        participants = sorted(by_shard)
        owner = self.owner()
        complete, forget = self.settlement.take_marks()
        crash_point("before-round")
        if os.environ.get("RADOSTDB_TXN_CRASH_AT") in ("stage-only", "apply-partial",
                                                          "applied-no-stage"):
            self._crash_mid_round(txid, participants, by_shard)
        stage = clsops.aio_stage(io, self.db.journal, clsops.stage_request(
            txid, owner, participants, complete, forget))
        parts = {i: clsops.aio_apply(io, self.db.shard(i),
                                     self._request(i, by_shard[i], txid, participants))
                 for i in participants}
        stage_err = stage.error()
        errors = {i: c.error() for i, c in parts.items()}
        if stage_err is not None:
            self._abort(txid, owner, participants)
            if isinstance(stage_err, clsops.Canceled) or getattr(stage_err, "errno", 0) in (
                    errno.EEXIST, errno.ECANCELED):
                raise TdbError(ERR_LOCK, "Locking error: the transaction lost its lock "
                                         "(its lease ran out) and was aborted") from None
            raise stage_err
        for i, err in errors.items():
            while err is not None:
                if isinstance(err, clsops.Busy):
                    self.wait_commit(self.db.shard(i))
                    err = self._retry(i, by_shard[i], txid, participants, True)
                elif isinstance(err, clsops.Unclean):
                    self.resolve(self.db.shard(i))
                    err = self._retry(i, by_shard[i], txid, participants, False)
                else:
                    self._abort(txid, owner, participants)
                    if isinstance(err, clsops.Canceled):  # a part fenced: we were judged dead
                        raise TdbError(ERR_LOCK, "Locking error: the transaction lost its lock "
                                                 "(its lease ran out) and was aborted") from None
                    raise err
        crash_point("round-done")
        self.settlement.committed(txid, participants)

    def _retry(self, index: int, entries: Entries, txid: int, participants: Any,
               release: bool) -> Exception | None:
        try:
            clsops.apply(self.db.io(), self.db.shard(index),
                         self._request(index, entries, txid, participants, release))
            return None
        except Exception as exc:  # examined by the caller
            return exc

    def _abort(self, txid: int, owner: bytes, participants: list[int]) -> None:
        """Our own commit failed before it completed: make it aborted
        everywhere (best effort; whoever meets it later decides the same)."""
        info = clsops.PendingInfo(txid, owner, participants)
        try:
            decide(self.db, info, assume_dead=True)
        except Exception:
            pass  # left pending: readers decide it once our lease is over

    def _crash_mid_round(self, txid: int, participants: list[int],
                         by_shard: dict[int, Entries]) -> None:
        """Tests: land part of the round, then die (RADOSTDB_TXN_CRASH_AT)."""
        io = self.db.io()
        step = os.environ.get("RADOSTDB_TXN_CRASH_AT", "")
        owner = self.owner()
        if step == "stage-only":
            clsops.wait_all([clsops.aio_stage(io, self.db.journal, clsops.stage_request(
                txid, owner, participants))])
        else:
            some = participants[: len(participants) // 2 or 1]
            if step == "applied-no-stage":
                some = participants
            clsops.wait_all(clsops.aio_apply(io, self.db.shard(i), self._request(
                i, by_shard[i], txid, participants)) for i in some)
        crash_point(step)

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
            _track(clsops.aio_txn_mark(self.db.io(), self.db.journal, forget=forget))


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
