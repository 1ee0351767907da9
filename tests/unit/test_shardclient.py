"""One object's conversation (radostdb/shardclient.py, ShardClient): a read
that meets a pending transaction, a write that meets EBUSY or EUCLEAN, and
when they give up; replayed against conversations recorded from the real
class (tests/conversations.py)."""

from __future__ import annotations

import pytest
from conversations import CODE, Rig, play

from radostdb import clsops, retry, wakeup
from radostdb.errors import ERR_IO, TdbError
from radostdb.kinds import Kind, Mode, Op

DECIDE = ["j journal", "w state", "s0 state", "s1 state"]
INBOX_NUMBER = 0x1B0C5  # the harness's (replay.py)
INBOX = wakeup.inbox_name(INBOX_NUMBER)


def test_get_decides_a_pending_shard_and_reads_again() -> None:
    """PENDING -> the resolver (in flight: one short wait) -> PENDING again,
    now committed -> settled -> FOUND."""
    p = play("get-pending-in-flight")
    assert p.value == {"status": clsops.ReadStatus.FOUND, "k0": "new"}
    assert p.steps() == ["s0 get", *DECIDE, "s0 get", *DECIDE, "s0 settle", "s1 settle", "s0 get"]
    assert p.ctx.clock.slept == [0.001]  # one wait for the commit in flight


def test_a_contended_store_queues_for_a_covering_lock_then_writes_and_releases() -> None:
    p = play("write-busy-covering-lock")
    assert p.value == {"status": clsops.APPLIED_CREATED, "k0": "mine"}
    assert p.steps(kinds=True) == [
        "op s0 apply[report]",  # EBUSY: another handle holds k0's lock
        "s0 watch",  # watched before the request: nothing for it passes us
        "op s0 lock RECORD EXCL QUEUE",  # queue at once: QUEUED
        f"{INBOX} operate_write_op",  # the process's first wait: its inbox,
        f"{INBOX} watch",
        "op s0 lock RECORD EXCL QUEUE",  # named in the queued entry (same ticket)
        "aio s0 state",  # no "G" came: a record lock ahead, no "W" to send
        "aio s0 state",  # the holder released: the grant is seen
        "op s0 apply[lock,release,report]",  # the store, releasing the covering lock
        "s0 get",  # it granted nobody (no APPLIED_GRANTED): no notify
    ]
    entries = [(Op.PUT, b"k0", b"mine")]
    flags = clsops.WRITE_ASSERT_LOCK | clsops.WRITE_RELEASE | clsops.WRITE_REPORT
    assert p.io.sent[8]["ops"] == [["apply", clsops.apply_request(CODE, flags, entries).hex()]]
    assert p.io.sent[8]["flags"] == clsops.RETURNVEC  # the reported bits reach us
    for i, inbox in ((2, 0), (5, INBOX_NUMBER)):
        assert p.io.sent[i]["ops"] == [
            [
                "lock",
                clsops.lock_request(
                    CODE, p.rig.books.lease_ms, Kind.RECORD, Mode.EXCL, b"k0",
                    clsops.LOCK_QUEUE, inbox=inbox,
                ).hex(),
            ]
        ]  # fmt: skip
    assert p.rig.books.held == {}  # the covering lock was never the user's


def test_a_store_meeting_euclean_asks_the_resolver_then_retries_paced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[int] = []
    real = retry.Pace.wait

    def wait(pace: retry.Pace) -> None:
        real(pace)
        waits.append(pace.retries)

    monkeypatch.setattr(retry.Pace, "wait", wait)
    p = play("write-stale-owner")
    assert p.value == {"status": 0, "k0": "mine"}
    steps = p.steps()
    assert steps[0] == "s0 apply" and steps[1:3] == ["s0 prune", "s0 state"]
    assert steps[-2:] == ["s0 apply", "s0 get"]  # sent again once the resolver cleared it
    assert waits == [1]  # one paced retry: the first ones are free
    assert p.ctx.clock.slept == []


def test_a_store_behind_a_commit_in_flight_gives_up_after_the_op_timeout() -> None:
    """EUCLEAN each time (a live committer's transaction stays pending): each
    try asks the resolver, which waits a little; the pace then gives up after
    the op timeout plus a transaction lease, with TDB's IO error."""
    p = play("write-in-flight-pace-gives-up")
    assert isinstance(p.raised, TdbError) and p.raised.code == ERR_IO
    assert p.raised.message.startswith(f"IO Error: {p.rig.obj('s0')} still needed a decision")
    one_try = ["s0 apply", "s0 prune", "s0 state", *DECIDE]
    assert p.steps() == one_try * 4
    slept = p.ctx.clock.slept
    # the resolver's short waits, and after two free retries one pace pause,
    # cut to what was left of the 5 ms
    assert slept[:3] == [0.001] * 3 and slept[3] == pytest.approx(0.002) and len(slept) == 5


def test_pace_limit_is_the_op_timeout_plus_a_transaction_lease() -> None:
    rig = Rig(None, "rec-x", op_timeout=30.0, txn_lease=5.0)
    pace = rig.shards[0].pace()
    assert pace.limit == pytest.approx(35.0)
    err = pace.give_up(1.5)
    assert isinstance(err, TdbError) and err.code == ERR_IO and "rec-x.s0" in err.message
    assert Rig(None, "rec-x", op_timeout=None).shards[0].pace().limit is None
