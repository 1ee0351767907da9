"""Deciding what blocks an object: transactions left pending by a dead or
interrupted committer, owners whose lease ran out, and waiting for a commit
still in flight.

resolver design (the commit protocol is in commit.py, the OSD's part at
the top of cls/radostdb/txn.cc):
- A transaction X pending on a shard is decided from its journal record
  and its participants' state (:func:`decide`): journal record COMPLETE, or
  STAGED with every participant having X -> committed, and the shard is
  settled; ABORTED -> rolled back; otherwise, if X's committer still holds
  the transaction lock, X is in flight (the caller waits for a notify);
  if not, X is aborted: the participants lacking X are fenced (a late
  apply of X is refused), the journal record becomes ABORTED (a late stage
  is refused: stage and abort cannot both win), and the participants
  having X are rolled back. Decisions are idempotent and need no lock, so
  any client may take them, concurrently.
- Owners whose transaction lock or isolation expired on an object are
  "stale": they are fenced in the journal (they can stage nothing more),
  their transactions decided, then cleared from the object
  (:func:`resolve_stale`).
- :class:`Resolver` is the one policy every caller uses (shardclient.py
  for reads, writes and lock waits; txnlock.py; radostdb dump): an
  object that answered -EUCLEAN is resolved (:meth:`Resolver.unclean`), a
  read that met a pending shard decides it (:meth:`Resolver.pending`), and
  a commit in flight is waited for on a notify, with a growing timeout;
  with the session's op timeout T a wait gives up after T plus one
  transaction lease (a committer that died is decided once its lease is
  over).
"""

from __future__ import annotations

import enum
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import clsops, layout, wakeup
from .errors import ERR_CORRUPT, ERR_IO, TdbError
from .kinds import Kind, TxnState


class Outcome(enum.Enum):
    COMMITTED = "committed"
    ABORTED = "aborted"
    IN_FLIGHT = "in flight"


@dataclass
class DbObjects:
    """The objects of one database a commit or a decision touches."""

    io: Callable[[], Any]
    name: str
    shard_objs: list[str]
    journal: str = ""
    wait_obj: str = ""
    relayout: Callable[[], int] | None = None  # the shard count the header has now

    def __post_init__(self) -> None:
        self.journal = self.journal or layout.journal_object(self.name)
        self.wait_obj = self.wait_obj or layout.wait_object(layout.header_object(self.name))

    def shard(self, index: int) -> str:
        if index < len(self.shard_objs):
            return self.shard_objs[index]
        return layout.shard_object(self.name, index)

    def index(self, obj: str) -> int | None:
        try:
            return self.shard_objs.index(obj)
        except ValueError:
            pass
        if obj == layout.shard_object(self.name, len(self.shard_objs)):
            return len(self.shard_objs)  # a new shard filling (a split under way)
        return None

    def grow(self, nshards: int) -> None:
        """The layout grew (reshard.py): its shards are these now."""
        if nshards > len(self.shard_objs):
            self.shard_objs = layout.shard_objects(self.name, nshards)

    def has_shard(self, index: int) -> bool:
        """Can shard ``index`` hold records: one of the layout's, or the new
        one a split under way fills (it takes a transaction's part as soon as
        keys moved there). A shard past what we know makes us read the
        layout again (``relayout``: another client's transaction may name a
        shard a split added since)."""
        if 0 <= index <= len(self.shard_objs):
            return True
        if self.relayout is not None and index >= 0:
            self.grow(self.relayout())
        return 0 <= index <= len(self.shard_objs)


# -- deciding ----------------------------------------------------------------------------
def _owner_holds_txn(st: clsops.ObjectState | None, owner: bytes) -> bool:
    if st is None or owner in st.header.stale:
        return False
    return any(
        e.owner == owner and e.kind == Kind.TXN and e.held and e.expiry_ms > st.now_ms
        for e in st.header.entries
    )


def decide(
    db: DbObjects, info: clsops.PendingInfo, assume_dead: bool = False, _depth: int = 0
) -> Outcome:
    """Decide transaction ``info.txid`` and carry the decision out on its
    participants (settle or roll back). IN_FLIGHT: its committer still holds
    the transaction lock and the outcome is not known yet."""
    io = db.io()
    txid = info.txid
    jcall = clsops.aio_journal(io, db.journal, txid)
    wcall = None if assume_dead else clsops.aio_state(io, db.wait_obj)
    scalls = {i: clsops.aio_state(io, db.shard(i)) for i in info.participants if db.has_shard(i)}
    record = jcall.wait().records.get(txid)
    wait_state = None if wcall is None else wcall.wait()
    states = {i: c.wait() for i, c in scalls.items()}
    participants = record.participants if record is not None else info.participants
    missing = sorted({i for i in [*participants, *info.participants] if not db.has_shard(i)})
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
    if record is not None and (
        record.state == TxnState.COMPLETE or all(header(i).has(txid) for i in participants)
    ):
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
    then clear them from obj. A transaction-lock holder among them is fenced
    on every shard too (fence_epoch): the next grant's epoch, one above the
    dead holder's, is stamped on each, so a holder that only slept cannot
    take isolation on or write to a shard it had not touched yet. Once their
    transactions are decided, the owners are cleared from every shard's
    stale owners (where their isolation expired), in one parallel round:
    this path runs only when owners expired."""
    io = db.io()
    if db.relayout is not None:
        db.grow(db.relayout())  # a split may have added shards since we looked
    if obj == db.wait_obj:
        _fence_epochs(db, obj, owners)
    clsops.fence_owners(io, db.journal, owners)
    for rec in clsops.journal(io, db.journal).records.values():
        if rec.owner in owners and rec.state == TxnState.STAGED:
            decide(db, clsops.PendingInfo(rec.txid, rec.owner, rec.participants), assume_dead=True)
    st = clsops.state(io, obj)
    if st is not None and st.header.pending and st.header.powner in owners:
        decide(db, st.header.pending_info(), assume_dead=True)  # type: ignore[arg-type]
    # fenced and decided: clear them wherever their isolation expired too (a
    # transaction touches only some shards, so nobody else may meet them there;
    # an owner expires on one shard and not on another when only some PGs
    # stalled)
    objs = [o for o in db.shard_objs if o != obj]
    calls = [clsops.aio_prune(io, o, clsops.PRUNE_CLEAR_STALE, owners) for o in objs]
    for c in calls:
        c.wait()
    clsops.prune(io, obj, clsops.PRUNE_CLEAR_STALE, owners)


def _fence_epochs(db: DbObjects, wait_obj: str, owners: list[bytes]) -> None:
    """Stamp every shard of the layout with the epoch after the one of the
    transaction lock's last grant (in one parallel round; only when expired
    owners are met on the transaction-lock object: the entry of the one
    that held it may already be pruned, so any of them counts). Only while
    they are still marked stale there: the class grants nobody until they
    are cleared, so the last grant is the dead holder's and every later one
    gets a newer epoch than the stamp. Once another client cleared them, a
    new holder may have been granted: a stamp from its epoch would fence it."""
    io = db.io()
    st = clsops.state(io, wait_obj)
    if st is None or not set(owners) & set(st.header.stale):
        return
    calls = [clsops.aio_fence_epoch(io, o, st.header.epoch + 1) for o in db.shard_objs]
    for c in calls:
        c.wait()


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
    shards = [i for i in rec.participants if db.has_shard(i)]
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


# -- the policy ------------------------------------------------------------------------------
class Resolver:
    """What a caller does when an object needs a decision first (see the
    module comment): one per handle (or per command), for one database.

    ``limit``: how long a commit in flight is waited for, in seconds (None:
    as long as it takes); ``give_up(obj, waited)`` builds the error then."""

    def __init__(
        self,
        db: DbObjects,
        limit: float | None,
        give_up: Callable[[str, float], Exception] | None = None,
    ) -> None:
        self.db = db
        self.limit = limit
        self._give_up = give_up or _in_flight_too_long
        self._since: dict[str, float] = {}  # object -> when its wait for a commit began

    def unclean(self, obj: str) -> None:
        """An operation on obj met -EUCLEAN: decide what blocks it; if it is
        a commit in flight, wait a little for it (the caller retries)."""
        if resolve_object(self.db, obj) == Outcome.IN_FLIGHT:
            self.wait_in_flight(obj)
        else:
            self._since.pop(obj, None)

    def pending(self, obj: str, info: clsops.PendingInfo, attempt: int) -> None:
        """A read of obj met a shard pending a transaction: decide it (or
        wait for it to finish); the caller reads again."""
        if decide(self.db, info) == Outcome.IN_FLIGHT:
            self.wait_in_flight(obj, attempt)
        else:
            self._since.pop(obj, None)

    def wait_in_flight(self, obj: str, attempt: int = 0) -> None:
        """A commit round is under way on obj: it takes a round trip or two.
        Sleep until a notify on obj or a short, growing timeout; past the
        limit, raise."""
        now = time.monotonic()
        since = self._since.setdefault(obj, now)
        if self.limit is not None and now - since > self.limit:
            self._since.pop(obj, None)
            raise self._give_up(obj, now - since)
        gen = wakeup.generation(obj)
        wakeup.sleep(obj, gen, min(0.001 * (2 ** min(attempt, 8)), 0.25))


def _in_flight_too_long(obj: str, waited: float) -> Exception:
    return TdbError(
        ERR_IO,
        f"IO Error: a transaction pending on {obj} was not decided within {waited:.3g} "
        "s: its committer holds the transaction lock but does not finish",
    )


def on_pending_of(resolver: Resolver, obj: str) -> Callable[[clsops.PendingInfo, int], None]:
    """A pager's ``on_pending(info, attempt)`` for obj: the resolver's policy."""
    return lambda info, attempt: resolver.pending(obj, info, attempt)
