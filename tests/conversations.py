"""The scenarios whose conversations with the object class are recorded
(tests/cluster/test_recordings.py) and replayed (tests/unit, :func:`play`).

A scenario is a ``setup`` (calls made by other clients before the code
runs: records, locks, transactions left in some state), ``hooks`` (other
clients acting at fixed points of the code's conversation, replay.Hook),
and an ``act``: radostdb's own logic (ShardClient, Resolver, Committer,
LockTable, decide, ...) built around the I/O context it is given, as
storage.RadosStorage builds it (:class:`Rig`), doing one thing. The act is
the same code when recording and when replaying; it returns a JSON value
(or raises), which the recording keeps as the outcome.

Objects are named ``rec-<scenario>.s0``, ``.j``, ``.w``, owner ids and
txids are fixed, so a scenario sends the same requests on every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import replay
from replay import Context, Hook, ReplayIoctx, ReplayMismatch

from radostdb import clsops, codec, commit, locking, resolver, shardclient, txnlock
from radostdb import cluster as clustermod
from radostdb.kinds import Kind, Mode, Op

# owners: 16 bytes each, readable in the hex of the recordings
CODE = b"rec-code-owner-1"  # the handle whose logic is under test
RIVAL = b"rec-rival-owner1"  # another handle holding locks
DEAD = b"rec-dead-commit1"  # a committer that died (holds no transaction lock)
LIVE = b"rec-live-commit1"  # a committer still at work (holds the transaction lock)
TXID = 0x7E57_0000_0000_0001  # the transaction of a scenario (the committer's, if it commits)
LONG = 60_000  # ms: a lease that outlives any scenario


def base_of(name: str) -> str:
    return f"rec-{name}"


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Callable[[Any, str], None]
    act: Callable[[Any, Context], Any]
    hooks: tuple[Hook, ...] = ()
    nshards: int = 2
    txid: int = TXID

    @property
    def base(self) -> str:
        return base_of(self.name)

    @property
    def doc(self) -> str:
        return " ".join((self.act.__doc__ or "").split())

    def objects(self) -> list[str]:
        b = self.base
        return [*(f"{b}.s{i}" for i in range(self.nshards)), f"{b}.j", f"{b}.w"]


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str,
    setup: Callable[[Any, str], None],
    hooks: tuple[Hook, ...] = (),
    nshards: int = 2,
    txid: int = TXID,
) -> Callable[[Any], Any]:
    def register(act: Callable[[Any, Context], Any]) -> Callable[[Any, Context], Any]:
        assert name not in SCENARIOS, name
        SCENARIOS[name] = Scenario(name, setup, act, hooks, nshards, txid)
        return act

    return register


# -- the handle an act drives ---------------------------------------------------------------------
class Rig:
    """A handle's protocol objects around one I/O context, built as
    storage.RadosStorage builds them (session, lock books, database objects,
    resolver, shard clients, committer), owner CODE."""

    def __init__(
        self,
        io: Any,
        base: str,
        nshards: int = 2,
        op_timeout: float | None = 30.0,
        lease: float = 30.0,
        txn_lease: float = 5.0,
    ) -> None:
        def get() -> Any:
            return io

        self.io = io
        self.session = clustermod.Session("(replayed)", "admin", op_timeout)
        self.books = locking.LockTable(get, lease, txn_lease)
        self.books.owner = CODE
        self.db = resolver.DbObjects(
            get,
            base,
            [f"{base}.s{i}" for i in range(nshards)],
            journal=f"{base}.j",
            wait_obj=f"{base}.w",
        )
        t = op_timeout
        self.resolver = resolver.Resolver(self.db, None if t is None else t + self.books.txn_lease)
        self.shards = shardclient.Shards(get, self.session, self.db, self.books, self.resolver)
        self.committer = commit.Committer(self.shards)
        self.txnlock = txnlock.TxnLock(self.shards, self.committer, lambda: nshards)

    def in_transaction(self, isolated: list[int]) -> None:
        """The code's transaction is running, holding the isolation the
        setup took for it on shards ``isolated`` (the transaction lock is not
        in the scenario's objects: its epoch is 0, an epoch the class does
        not check, and the parts carry none). The lock books hold only what
        the act takes."""
        self.txnlock.state = txnlock.State.ACTIVE
        self.txnlock.isolated = set(isolated)

    def obj(self, name: str) -> str:
        return f"{self.db.name}.{name}"


# -- what setups and acts use ---------------------------------------------------------------------
def commit_parts(rig: Rig, by_shard: dict[int, list[tuple[int, bytes, bytes]]]) -> None:
    """Commit a transaction whose batch goes to the shards as ``by_shard``
    says: Committer.commit asks ``group`` where a batch goes, and here the
    scenario places its keys by hand, not by their hash (the objects have
    no layout: a shard never answers ESTALE)."""
    ops = [e for entries in by_shard.values() for e in entries]

    def stale(index: int) -> None:
        raise AssertionError(f"shard {index} answered ESTALE in a scenario without a layout")

    rig.committer.commit(ops, lambda _ops: by_shard, stale)


def put(io: Any, obj: str, key: bytes, value: bytes) -> None:
    """A plain store by another handle."""
    clsops.apply(io, obj, clsops.apply_request(RIVAL, 0, [(Op.PUT, key, value)]))


def part(
    io: Any,
    obj: str,
    owner: bytes,
    participants: list[int],
    key: bytes,
    value: bytes,
    txid: int = TXID,
) -> None:
    """A multi-shard transaction's part: ``key`` = ``value`` kept as the redo
    log, the shard pending ``txid``."""
    clsops.apply(
        io,
        obj,
        clsops.apply_request(
            owner, 0, [(Op.PUT, key, value)], txid=txid, participants=participants
        ),
    )


def stage(io: Any, journal: str, owner: bytes, participants: list[int], txid: int = TXID) -> None:
    clsops.wait_all(
        [clsops.aio_stage(io, journal, clsops.stage_request(txid, owner, participants))]
    )


def lock(
    io: Any, obj: str, owner: bytes, kind: int, mode: int, key: bytes = b"", lease_ms: int = LONG
) -> None:
    clsops.lock(io, obj, clsops.lock_request(owner, lease_ms, kind, mode, key))


def unlock(io: Any, obj: str, owner: bytes, kind: int, mode: int, key: bytes = b"") -> None:
    clsops.unlock(io, obj, clsops.unlock_request(owner, kind, mode, key))


def read(io: Any, obj: str, key: bytes, accept: int = 0) -> str:
    """The record's data as text, or "missing" / "pending"."""
    res = clsops.get(io, obj, key, accept)
    if res.status == clsops.ReadStatus.FOUND:
        return codec.decode_record(key, res.record)[1].decode()
    return clsops.ReadStatus(res.status).name.lower()


def s(base: str, i: int) -> str:
    return f"{base}.s{i}"


def j(base: str) -> str:
    return f"{base}.j"


def w(base: str) -> str:
    return f"{base}.w"


def info(owner: bytes, participants: list[int], txid: int = TXID) -> clsops.PendingInfo:
    return clsops.PendingInfo(txid, owner, participants)


# == commit decisions (resolver.decide) ===========================================================
def _complete_record(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    part(io, s(b, 0), DEAD, [0, 1], b"k0", b"new")
    part(io, s(b, 1), DEAD, [0, 1], b"k1", b"new")
    clsops.settle(io, s(b, 1), TXID)  # shard 1 is settled already
    stage(io, j(b), DEAD, [0, 1])
    clsops.txn_mark(io, j(b), complete=[TXID])


@scenario("decide-complete-record", _complete_record)
def _(io: Any, ctx: Context) -> Any:
    """A COMPLETE journal record decides 'committed' (its committer is gone):
    only the participant still pending is settled."""
    rig = ctx.rig = Rig(io, ctx.base)
    out = resolver.decide(rig.db, info(DEAD, [0, 1]))
    return {"outcome": out.value, "k0": read(io, rig.obj("s0"), b"k0")}


def _every_participant(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    stage(io, j(b), DEAD, [0, 1])
    part(io, s(b, 0), DEAD, [0, 1], b"k0", b"new")
    part(io, s(b, 1), DEAD, [0, 1], b"k1", b"new")


@scenario("decide-every-participant-has", _every_participant)
def _(io: Any, ctx: Context) -> Any:
    """A STAGED record and every participant pending X: committed, though its
    committer is gone; both shards are settled."""
    rig = ctx.rig = Rig(io, ctx.base)
    out = resolver.decide(rig.db, info(DEAD, [0, 1]))
    return {
        "outcome": out.value,
        "k0": read(io, rig.obj("s0"), b"k0"),
        "k1": read(io, rig.obj("s1"), b"k1"),
    }


def _aborted_record(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    stage(io, j(b), DEAD, [0, 1])
    part(io, s(b, 0), DEAD, [0, 1], b"k0", b"new")
    clsops.txn_abort(io, j(b), TXID, DEAD, [0, 1])


@scenario("decide-aborted-record", _aborted_record)
def _(io: Any, ctx: Context) -> Any:
    """An ABORTED record decides 'aborted': the participant pending X is
    rolled back, the other left alone."""
    rig = ctx.rig = Rig(io, ctx.base)
    out = resolver.decide(rig.db, info(DEAD, [0, 1]))
    return {"outcome": out.value, "k0": read(io, rig.obj("s0"), b"k0")}


def _in_flight(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    lock(io, w(b), LIVE, Kind.TXN, Mode.EXCL)
    stage(io, j(b), LIVE, [0, 1])
    part(io, s(b, 0), LIVE, [0, 1], b"k0", b"new")


@scenario("decide-in-flight", _in_flight)
def _(io: Any, ctx: Context) -> Any:
    """X is incomplete and its committer holds the transaction lock: in
    flight; nothing is written, the shard stays pending."""
    rig = ctx.rig = Rig(io, ctx.base)
    out = resolver.decide(rig.db, info(LIVE, [0, 1]))
    return {"outcome": out.value, "k0": read(io, rig.obj("s0"), b"k0")}


def _dead_committer(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    stage(io, j(b), DEAD, [0, 1])
    part(io, s(b, 0), DEAD, [0, 1], b"k0", b"new")


@scenario("decide-presumed-abort", _dead_committer)
def _(io: Any, ctx: Context) -> Any:
    """X is incomplete and its committer holds no transaction lock: presumed
    aborted. The participant lacking X is fenced first, the record becomes
    ABORTED, the participants are rolled back; a late part of X is then
    refused (ECANCELED)."""
    rig = ctx.rig = Rig(io, ctx.base)
    out = resolver.decide(rig.db, info(DEAD, [0, 1]))
    late = clsops.aio_apply(
        io,
        rig.obj("s1"),
        clsops.apply_request(DEAD, 0, [(Op.PUT, b"k1", b"late")], txid=TXID, participants=[0, 1]),
    ).error()
    return {
        "outcome": out.value,
        "k0": read(io, rig.obj("s0"), b"k0"),
        "late part": clsops.errno_of(late) if late else 0,
    }


def _unstaged(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    part(io, s(b, 0), DEAD, [0, 1], b"k0", b"new")
    part(io, s(b, 1), DEAD, [0, 1], b"k1", b"new")


@scenario("decide-presumed-abort-unstaged", _unstaged)
def _(io: Any, ctx: Context) -> Any:
    """Every participant has X but the journal has no record of it (the
    stage never landed) and its committer is gone: aborted, not committed."""
    rig = ctx.rig = Rig(io, ctx.base)
    out = resolver.decide(rig.db, info(DEAD, [0, 1]))
    return {
        "outcome": out.value,
        "k0": read(io, rig.obj("s0"), b"k0"),
        "k1": read(io, rig.obj("s1"), b"k1"),
    }


A, B, C, D = (0x7E57_0000_0000_00A0 + i for i in range(4))


def _journal_left(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    stage(io, j(b), DEAD, [0, 1], txid=A)  # STAGED, on shard 0 only: to abort
    part(io, s(b, 0), DEAD, [0, 1], b"k0", b"A", txid=A)
    stage(io, j(b), DEAD, [1, 2], txid=B)  # COMPLETE: to settle
    part(io, s(b, 1), DEAD, [1, 2], b"k1", b"B", txid=B)
    part(io, s(b, 2), DEAD, [1, 2], b"k2", b"B", txid=B)
    clsops.txn_mark(io, j(b), complete=[B])
    stage(io, j(b), DEAD, [3], txid=C)  # ABORTED: to roll back
    part(io, s(b, 3), DEAD, [3], b"k3", b"C", txid=C)
    clsops.txn_abort(io, j(b), C, DEAD, [3])
    stage(io, j(b), CODE, [3], txid=D)  # our own: settled lazily, left alone


@scenario("recover-journal", _journal_left, nshards=4)
def _(io: Any, ctx: Context) -> Any:
    """transaction_start's recovery of what a previous holder left in the
    journal: a STAGED transaction of a dead committer is decided (aborted), a
    COMPLETE one settled, an ABORTED one rolled back, our own left; the
    three are then forgotten."""
    rig = ctx.rig = Rig(io, ctx.base, nshards=4)
    journal = clsops.journal(io, rig.db.journal)
    done = resolver.recover_journal(rig.db, journal, CODE)
    left = sorted(clsops.journal(io, rig.db.journal).records)
    return {
        "recovered": done,
        "left": [f"{t:x}" for t in left],
        **{f"k{i}": read(io, rig.obj(f"s{i}"), f"k{i}".encode()) for i in range(4)},
    }


# == pending resolution and timeouts (ShardClient, Resolver, retry.Pace) ==========================
@scenario(
    "get-pending-in-flight",
    _in_flight,
    hooks=(Hook("s1 state", lambda io, b: part(io, s(b, 1), LIVE, [0, 1], b"k1", b"new")),),
)
def _(io: Any, ctx: Context) -> Any:
    """A read meets shard 0 pending X of a live committer: in flight, so it
    waits and reads again; meanwhile the committer's part reaches shard 1,
    the next decision is 'committed' (settled), and the read returns X's
    value."""
    rig = ctx.rig = Rig(io, ctx.base)
    res = rig.shards[0].get(b"k0")
    return {"status": res.status, "k0": codec.decode_record(b"k0", res.record)[1].decode()}


@scenario("get-in-flight-gives-up", _in_flight)
def _(io: Any, ctx: Context) -> Any:
    """A read meets a transaction that stays in flight: the resolver gives
    up after its limit (op timeout 2 ms + transaction lease 1 ms) with TDB's
    IO error."""
    rig = ctx.rig = Rig(io, ctx.base, op_timeout=0.002, txn_lease=0.001)
    rig.shards[0].get(b"k0")


def _stale_owner(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    stage(io, j(b), DEAD, [0, 1])
    part(io, s(b, 0), DEAD, [0, 1], b"k0", b"dead")
    lock(io, s(b, 0), DEAD, Kind.ISOLATION, Mode.SHARED, lease_ms=1)
    time.sleep(0.05)  # the dead committer's isolation expires: stale


@scenario("write-stale-owner", _stale_owner)
def _(io: Any, ctx: Context) -> Any:
    """A store meets EUCLEAN (a committer's isolation expired on the shard):
    the resolver fences the stale owner, decides its transaction (aborted),
    clears it, and the store is sent again."""
    rig = ctx.rig = Rig(io, ctx.base)
    status = rig.shards[0].write([(Op.PUT, b"k0", b"mine")])
    return {"status": status, "k0": read(io, rig.obj("s0"), b"k0")}


def _rival_holds(io: Any, b: str) -> None:
    lock(io, s(b, 0), RIVAL, Kind.RECORD, Mode.EXCL, b"k0")


@scenario(
    "write-busy-covering-lock",
    _rival_holds,
    hooks=(
        Hook("s0 state", lambda io, b: unlock(io, s(b, 0), RIVAL, Kind.RECORD, Mode.EXCL, b"k0")),
    ),
)
def _(io: Any, ctx: Context) -> Any:
    """A store (with the REPORT flag, as a REPLACE store sends it) meets
    EBUSY: another handle holds the record's lock. It queues for a lock
    covering the write, announces its wait; the holder releases (which grants
    the queued lock), and the store is sent again with RELEASE."""
    rig = ctx.rig = Rig(io, ctx.base)
    status = rig.shards[0].write([(Op.PUT, b"k0", b"mine")], report=True)
    return {"status": status, "k0": read(io, rig.obj("s0"), b"k0")}


@scenario("write-in-flight-pace-gives-up", _in_flight)
def _(io: Any, ctx: Context) -> Any:
    """A store meets EUCLEAN for a transaction that stays in flight: each try
    asks the resolver (in flight: a short wait), paced; past the op timeout
    plus a transaction lease (4 + 1 ms) the pace gives up with TDB's IO
    error."""
    rig = ctx.rig = Rig(io, ctx.base, op_timeout=0.004, txn_lease=0.001)
    rig.shards[0].write([(Op.PUT, b"k0", b"mine")])


# == the committer's multi-shard round (commit.Committer) =========================================
def _isolated(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    lock(io, s(b, 0), CODE, Kind.ISOLATION, Mode.SHARED)  # our transaction's isolation


@scenario("commit-one-shard", _isolated)
def _(io: Any, ctx: Context) -> Any:
    """A transaction touching one shard commits with one atomic apply (no
    journal, no txid): visible to readers at once."""
    rig = ctx.rig = Rig(io, ctx.base)
    rig.in_transaction([0])
    commit_parts(rig, {0: [(Op.PUT, b"k0", b"new"), (Op.DISCARD, b"gone", b"")]})
    return {"k0": read(io, rig.obj("s0"), b"k0")}


def _part_busy(io: Any, b: str) -> None:
    for i in (0, 1):
        lock(io, s(b, i), CODE, Kind.ISOLATION, Mode.SHARED)  # our transaction's isolation
    lock(io, s(b, 1), RIVAL, Kind.RECORD, Mode.SHARED, b"k1")


@scenario(
    "commit-part-busy",
    _part_busy,
    hooks=(
        # the rival's record lock is released once the code has queued and
        # looked (a record lock's waiter announces nothing: its releaser wakes it)
        Hook("s1 state", lambda io, b: unlock(io, s(b, 1), RIVAL, Kind.RECORD, Mode.SHARED, b"k1")),
    ),
)
def _(io: Any, ctx: Context) -> Any:
    """A two-shard commit whose part on shard 1 is refused EBUSY (another
    handle holds a shared lock on its key): the round's other calls land,
    the part's shard client queues for the COMMIT lock, and once granted
    sends the part again with RELEASE. Both shards are then pending X:
    readers see "pending", the committer reads through it."""
    rig = ctx.rig = Rig(io, ctx.base)
    rig.in_transaction([0, 1])
    commit_parts(rig, {0: [(Op.PUT, b"k0", b"new")], 1: [(Op.PUT, b"k1", b"new")]})
    return {
        "k1": read(io, rig.obj("s1"), b"k1"),
        "k1 accepting X": read(io, rig.obj("s1"), b"k1", accept=TXID),
    }


def _part_fenced(io: Any, b: str) -> None:
    put(io, s(b, 0), b"k0", b"old")
    for i in (0, 1):
        lock(io, s(b, i), CODE, Kind.ISOLATION, Mode.SHARED)
    clsops.rollback(io, s(b, 1), TXID)  # another client decided X aborted: fenced there


@scenario("commit-part-fenced", _part_fenced)
def _(io: Any, ctx: Context) -> Any:
    """A two-shard commit whose part is refused ECANCELED (X was fenced on
    that shard: another client judged the committer dead): the committer
    aborts X everywhere and fails with TDB's lock error."""
    rig = ctx.rig = Rig(io, ctx.base)
    rig.in_transaction([0, 1])
    try:
        commit_parts(rig, {0: [(Op.PUT, b"k0", b"new")], 1: [(Op.PUT, b"k1", b"new")]})
    finally:
        ctx.rig.after = read(io, rig.obj("s0"), b"k0")


def _owner_fenced(io: Any, b: str) -> None:
    for i in (0, 1):
        lock(io, s(b, i), CODE, Kind.ISOLATION, Mode.SHARED)
    clsops.fence_owners(io, j(b), [CODE])  # our lease ran out; another client fenced us


@scenario("commit-stage-fenced", _owner_fenced)
def _(io: Any, ctx: Context) -> Any:
    """A two-shard commit by an owner fenced in the journal: the stage is
    refused ECANCELED though both parts landed; the committer aborts X (no
    record: nothing to fence) and fails with TDB's lock error."""
    rig = ctx.rig = Rig(io, ctx.base)
    rig.in_transaction([0, 1])
    commit_parts(rig, {0: [(Op.PUT, b"k0", b"new")], 1: [(Op.PUT, b"k1", b"new")]})


# == lock books (locking.LockTable) ===============================================================
def _lease_ran_out(io: Any, b: str) -> None:
    lock(io, s(b, 0), CODE, Kind.RECORD, Mode.EXCL, b"k0", lease_ms=1)
    lock(io, s(b, 1), CODE, Kind.RECORD, Mode.EXCL, b"k1")
    time.sleep(0.05)  # our lease on shard 0 runs out (we were stopped)


@scenario("renew-lost", _lease_ran_out)
def _(io: Any, ctx: Context) -> Any:
    """The lock service renews a handle's objects when due: shard 1 renews,
    shard 0 answers ENOLCK (the lease ran out): its record lock is lost (kept
    apart until unlocked), its transaction isolation just forgotten."""
    rig = ctx.rig = Rig(io, ctx.base)
    books = rig.books
    books.note((rig.obj("s0"), Kind.RECORD, Mode.EXCL, b"k0"), books.lease_ms)
    books.note((rig.obj("s0"), Kind.ISOLATION, Mode.SHARED, b""), books.txn_lease_ms)
    books.note((rig.obj("s1"), Kind.RECORD, Mode.EXCL, b"k1"), books.lease_ms)
    ctx.clock.advance(books.lease / 3 + 0.1)  # every object is due
    books.renew_due()
    return {
        "held": sorted(f"{k[0][-2:]} {Kind(k[1]).name}" for k in books.held),
        "lost": sorted(f"{k[0][-2:]} {Kind(k[1]).name}" for k in books.lost),
    }


# -- replaying ------------------------------------------------------------------------------------
@dataclass
class Played:
    """A scenario replayed: its outcome (value or the error raised), the
    replaying I/O context (the code's calls: ``io.steps()``) and the
    context (the act's rig, the clock, what was scheduled)."""

    value: Any
    raised: BaseException | None
    io: ReplayIoctx
    ctx: Context

    def steps(self, kinds: bool = False) -> list[str]:
        return self.io.steps(kinds)

    @property
    def rig(self) -> Rig:
        return self.ctx.rig  # type: ignore[no-any-return]


def play(name: str) -> Played:
    """Run scenario ``name``'s act against its recorded conversation, without
    a cluster; fail if the code's calls differ from the recording, or if its
    outcome does."""
    sc = SCENARIOS[name]
    conv = replay.load().get(name)
    if conv is None:
        pytest.fail(
            f"no recording of {name!r}: run tests/cluster/test_recordings.py with "
            f"{replay.RECORD_ENV}=1"
        )
    io = ReplayIoctx(conv["exchanges"], sc.base)
    raised: BaseException | None = None
    value = None
    with replay.harness(sc.txid, sc.base) as ctx:
        try:
            value = sc.act(io, ctx)
        except ReplayMismatch:
            pass  # reported by check_done (the first mismatch, if a later one hid it)
        except Exception as exc:
            raised = exc
    io.check_done()
    assert replay.outcome_of(value, raised) == conv["outcome"], "the outcome differs"
    return Played(value, raised, io, ctx)
