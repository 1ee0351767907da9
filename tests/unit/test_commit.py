"""The committer (radostdb/commit.py): the one-shard commit, the parallel
round of a multi-shard commit, a part refused EBUSY and sent again by its
shard client, a fenced part or stage aborting with TDB's lock error; and the
lazy settlement's books. Replayed against conversations recorded from the
real class (tests/conversations.py)."""

from __future__ import annotations

from typing import Any

import pytest
from conversations import CODE, TXID, play

from radostdb import clsops, wakeup
from radostdb.commit import Settlement
from radostdb.errors import ERR_LOCK, TdbError
from radostdb.kinds import Op

ROUND = ["aio j stage", "op s0 apply part[txn]", "op s1 apply part[txn]"]
INBOX = wakeup.inbox_name(0x1B0C5)  # the harness's (replay.py)
ENTRIES = {0: [(Op.PUT, b"k0", b"new")], 1: [(Op.PUT, b"k1", b"new")]}


def request_of(ex: dict[str, Any]) -> str:
    """The request of a class call, sent alone or as a write op's only step."""
    if "request" in ex:
        return str(ex["request"])
    ((_, request),) = ex["ops"]
    return str(request)


def test_one_shard_commits_in_one_apply_without_journal() -> None:
    p = play("commit-one-shard")
    assert p.value == {"k0": "new"}
    assert p.steps(kinds=True) == ["op s0 apply[txn]", "s0 get"]
    entries = [(Op.PUT, b"k0", b"new"), (Op.DISCARD, b"gone", b"")]
    assert (
        request_of(p.io.sent[0])
        == clsops.apply_request(CODE, clsops.WRITE_ASSERT_TXN, entries).hex()
    )  # txid 0: not a part
    assert p.rig.committer.settlement.pending == {}


def test_multi_shard_commit_is_one_parallel_round_and_a_busy_part_is_sent_again() -> None:
    p = play("commit-part-busy")
    assert p.steps(kinds=True) == [
        *ROUND,  # the part on shard 1 meets EBUSY (a shared lock on k1)
        "s1 watch",  # watched before the request: nothing for it passes us
        "op s1 lock COMMIT EXCL QUEUE",  # its shard client queues at once: QUEUED
        f"{INBOX} operate_write_op",  # the process's first wait: its inbox,
        f"{INBOX} watch",
        "op s1 lock COMMIT EXCL QUEUE",  # named in the queued entry (same ticket)
        "aio s1 state",  # no "G" came (the other handle's release names none)
        "aio s1 state",  # the holder released: granted
        "op s1 apply part[txn,release]",  # the part again, dropping the COMMIT lock
        "s1 get",
        "s1 get",
    ]
    sent = p.io.sent
    assert sent[0]["request"] == clsops.stage_request(TXID, CODE, [0, 1]).hex()
    assert (
        request_of(sent[2])
        == clsops.apply_request(CODE, clsops.WRITE_ASSERT_TXN, ENTRIES[1], TXID, 0, [0, 1]).hex()
    )
    assert (
        request_of(sent[10])
        == clsops.apply_request(
            CODE, clsops.WRITE_ASSERT_TXN | clsops.WRITE_RELEASE, ENTRIES[1], TXID, 0, [0, 1]
        ).hex()
    )
    # committed: both shards pending X, settled lazily by the committer
    settlement = p.rig.committer.settlement
    assert settlement.pending == {0: TXID, 1: TXID}
    assert settlement.unsettled == {TXID: {0, 1}}
    assert p.value == {"k1": "pending", "k1 accepting X": "new"}
    assert p.rig.books.held == {}  # the COMMIT lock was only for this part


def test_a_fenced_part_aborts_the_transaction_with_the_lock_error() -> None:
    p = play("commit-part-fenced")
    assert isinstance(p.raised, TdbError) and p.raised.code == ERR_LOCK
    assert "lost its lock" in p.raised.message
    assert p.steps() == [
        *(s.split(" ", 1)[1] for s in ROUND),  # shard 1: ECANCELED
        # the abort decides X as a dead committer's: no look at the lock
        "j journal",
        "s0 state",
        "s1 state",
        "s1 rollback",
        "j txn_abort",
        "s0 rollback",
        "s1 rollback",
        "s0 get",
    ]
    assert p.rig.after == "old"
    assert p.rig.committer.settlement.pending == {}  # nothing committed to settle


def test_a_fenced_owners_stage_aborts_the_transaction_with_the_lock_error() -> None:
    p = play("commit-stage-fenced")
    assert isinstance(p.raised, TdbError) and p.raised.code == ERR_LOCK
    assert p.steps() == [
        *(s.split(" ", 1)[1] for s in ROUND),  # the stage: ECANCELED; both parts land
        "j journal",
        "s0 state",
        "s1 state",
        "j txn_abort",
        "s0 rollback",
        "s1 rollback",
    ]  # no record: nothing to fence first
    assert p.io.sent[6]["request"] == clsops.txn_abort_request(TXID, CODE, [0, 1]).hex()
    assert p.rig.committer.settlement.pending == {}


def test_settlement_marks_the_last_commit_complete_and_forgets_settled_ones() -> None:
    s = Settlement()
    s.committed(1, [0, 1])
    assert s.accept(0) == 1 and s.accept(2) == 0
    assert s.take_marks() == ([1], [])
    s.settled(0)
    s.committed(2, [1, 2])  # its parts carried settle=1 to shard 1: 1 is settled
    assert s.pending == {1: 2, 2: 2}
    assert s.take_marks() == ([2], [1])
    assert s.take_marks() == ([2], [])  # forgotten once
    s.settled(1)
    s.settled(2)
    assert s.take_marks() == ([], [2])
    s.committed(3, [0])
    assert s.clear() == [3] and s.pending == {} and s.latest == 0


@pytest.mark.parametrize("name", ["commit-part-fenced", "commit-stage-fenced"])
def test_an_aborted_commit_leaves_nothing_for_the_next_stage(name: str) -> None:
    assert play(name).rig.committer.settlement.take_marks() == ([], [])
