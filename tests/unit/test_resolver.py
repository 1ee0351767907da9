"""Commit decisions (radostdb/resolver.py: decide, resolve_stale,
resolve_object, recover_journal) and the resolver's waiting policy,
replayed against conversations recorded from the real class
(tests/conversations.py says what each scenario sets up)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import replay
from conversations import CODE, DEAD, TXID, A, B, C, D, Rig, play

from radostdb import clsops, resolver
from radostdb.errors import ERR_IO, TdbError

READS = ["j journal", "w state", "s0 state", "s1 state"]  # what every decision reads first


def test_a_decision_reads_journal_committer_and_participants_in_one_round() -> None:
    p = play("decide-complete-record")
    assert p.steps(kinds=True)[:4] == [f"aio {s}" for s in READS]
    assert p.io.sent[0]["request"] == clsops.journal_request(TXID).hex()  # X's record only


def test_complete_record_commits_settling_only_what_is_still_pending() -> None:
    p = play("decide-complete-record")
    assert p.value == {"outcome": "committed", "k0": "new"}
    assert p.steps() == [*READS, "s0 settle", "s0 get"]  # shard 1 was settled already
    assert p.io.sent[4]["request"] == clsops.txid_request(TXID).hex()


def test_every_participant_having_x_commits_though_the_committer_is_gone() -> None:
    p = play("decide-every-participant-has")
    assert p.value == {"outcome": "committed", "k0": "new", "k1": "new"}
    assert p.steps(kinds=True) == [
        *(f"aio {s}" for s in READS),
        "aio s0 settle",
        "aio s1 settle",
        "s0 get",
        "s1 get",
    ]


def test_aborted_record_rolls_back_the_participants_pending_x() -> None:
    p = play("decide-aborted-record")
    assert p.value == {"outcome": "aborted", "k0": "old"}
    assert p.steps() == [*READS, "s0 rollback", "s0 get"]  # no txn_abort: decided already


def test_in_flight_while_the_committer_holds_the_transaction_lock() -> None:
    p = play("decide-in-flight")
    assert p.value == {"outcome": "in flight", "k0": "pending"}
    assert p.steps() == [*READS, "s0 get"]  # decides nothing, writes nothing


def test_presumed_abort_fences_then_aborts_then_rolls_back() -> None:
    """A dead committer's incomplete transaction: the participant lacking X
    is fenced BEFORE the record is aborted (a late part cannot land after
    the decision), then every participant is rolled back."""
    p = play("decide-presumed-abort")
    assert p.value == {"outcome": "aborted", "k0": "old", "late part": 125}  # ECANCELED
    assert p.steps() == [
        *READS,
        "s1 rollback",
        "j txn_abort",
        "s0 rollback",
        "s1 rollback",
        "s1 apply part",
        "s0 get",
    ]
    abort = p.io.sent[5]
    assert abort["request"] == clsops.txn_abort_request(TXID, DEAD, [0, 1]).hex()


def test_no_journal_record_means_aborted_even_if_every_part_landed() -> None:
    p = play("decide-presumed-abort-unstaged")
    assert p.value == {"outcome": "aborted", "k0": "old", "k1": "missing"}
    # no record: nothing to fence first; the abort record is created
    assert p.steps() == [*READS, "j txn_abort", "s0 rollback", "s1 rollback", "s0 get", "s1 get"]


def test_recover_journal_finishes_every_record_but_our_own() -> None:
    p = play("recover-journal")
    assert p.value == {
        "recovered": 3,
        "left": [f"{D:x}"],
        "k0": "old",
        "k1": "B",
        "k2": "B",
        "k3": "missing",
    }
    assert p.steps() == [
        "j journal",
        # A, STAGED, its committer dead: decided without asking for the lock
        "j journal",
        "s0 state",
        "s1 state",
        "s1 rollback",
        "j txn_abort",
        "s0 rollback",
        "s1 rollback",
        "s1 settle",
        "s2 settle",  # B, COMPLETE
        "s3 rollback",  # C, ABORTED
        "j txn_mark",  # D (ours) is left alone
        "j journal",
        "s0 get",
        "s1 get",
        "s2 get",
        "s3 get",
    ]
    mark = next(e for e in p.io.sent if e["method"] == "txn_mark")
    assert mark["request"] == clsops.txn_mark_request(forget=[A, B, C]).hex()


def test_recover_journal_refuses_a_legacy_journal_without_a_call() -> None:
    def no_io() -> None:
        raise AssertionError("no call expected")

    db = resolver.DbObjects(no_io, "legacy", ["s0"], journal="j", wait_obj="w")
    with pytest.raises(TdbError) as exc:
        resolver.recover_journal(db, clsops.Journal(legacy=True), CODE)
    assert exc.value.code == ERR_IO and "radostdb 0.1" in exc.value.message


def test_stale_owner_is_fenced_its_transactions_decided_then_cleared() -> None:
    """resolve_object -> resolve_stale, from a store that met EUCLEAN."""
    p = play("write-stale-owner")
    assert p.steps()[:15] == [
        "s0 apply",  # EUCLEAN
        "s0 prune",
        "s0 state",  # resolve_object: expired holders become stale
        "j fence_owners",
        "j journal",  # resolve_stale: fence, then its records
        "j journal",
        "s0 state",
        "s1 state",  # decide, assume_dead: no look at the lock
        "s1 rollback",
        "j txn_abort",
        "s0 rollback",
        "s1 rollback",
        "s0 state",
        "s1 prune CLEAR_STALE",  # every other shard, where its isolation may have expired
        "s0 prune CLEAR_STALE",
    ]
    fence = p.io.sent[3]
    assert fence["request"] == clsops.owners_request([DEAD]).hex()
    for prune in p.io.sent[13:15]:
        assert prune["request"] == clsops.prune_request(clsops.PRUNE_CLEAR_STALE, [DEAD]).hex()


@pytest.fixture
def ctx() -> Iterator[replay.Context]:
    with replay.harness(0) as c:
        yield c


def test_wait_in_flight_sleeps_growing_then_gives_up_with_the_error_it_builds(
    ctx: replay.Context,
) -> None:
    given: list[tuple[str, float]] = []

    def give_up(obj: str, waited: float) -> Exception:
        given.append((obj, waited))
        return TimeoutError(obj)

    r = resolver.Resolver(Rig(None, "rec-x").db, limit=0.01, give_up=give_up)
    for attempt in range(4):
        r.wait_in_flight("o", attempt)
    assert ctx.clock.slept == [0.001, 0.002, 0.004, 0.008]
    with pytest.raises(TimeoutError):
        r.wait_in_flight("o", 4)
    assert given == [("o", pytest.approx(0.015))]
    r.wait_in_flight("o", 0)  # the wait starts afresh
    assert ctx.clock.slept[-1] == 0.001


def test_wait_in_flight_without_a_limit_never_gives_up_and_caps_its_sleep(
    ctx: replay.Context,
) -> None:
    r = resolver.Resolver(Rig(None, "rec-x").db, limit=None)
    for attempt in range(40):
        r.wait_in_flight("o", attempt)
    assert max(ctx.clock.slept) == 0.25


def test_a_read_of_a_transaction_that_stays_in_flight_gives_up() -> None:
    """ShardClient.get -> Resolver.pending -> wait_in_flight, past the
    resolver's limit (op timeout + a transaction lease)."""
    p = play("get-in-flight-gives-up")
    assert isinstance(p.raised, TdbError) and p.raised.code == ERR_IO
    assert "was not decided within" in p.raised.message
    assert p.steps() == ["s0 get", *READS] * 3
    assert p.ctx.clock.slept == [0.001, 0.002]  # attempts 0, 1; the third is past the limit
