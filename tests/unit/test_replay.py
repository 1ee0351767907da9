"""The replaying I/O context itself (tests/replay.py): it answers as
python-rados does, and it refuses loudly whatever the recording does not
have, so that the protocol tests (test_resolver, test_shardclient,
test_commit, test_locking) cannot pass on calls nobody recorded."""

from __future__ import annotations

import copy
import errno
import time
from typing import Any

import pytest
import replay
from conversations import DEAD, SCENARIOS, TXID, Rig, info, play
from replay import ReplayIoctx, ReplayMismatch

from radostdb import clsops, resolver, retry, shardclient, wakeup
from radostdb.kinds import Kind


def exchanges(name: str) -> list[dict[str, Any]]:
    return copy.deepcopy(replay.load()[name]["exchanges"])


def find(name: str, step: str) -> dict[str, Any]:
    """The code's first exchange of a conversation described ``step``."""
    base = SCENARIOS[name].base
    return next(
        e for e in exchanges(name) if e["who"] == "code" and replay.describe(e, base) == step
    )


def test_every_scenario_is_recorded_and_every_recording_has_a_scenario() -> None:
    assert sorted(replay.load()) == sorted(SCENARIOS)
    for name, conv in replay.load().items():
        assert conv["doc"] == SCENARIOS[name].doc, f"{name}: re-record (its act changed)"
        assert any(e["who"] == "code" for e in conv["exchanges"]), name


def test_a_write_op_error_is_a_negative_return_value() -> None:
    ex = find("write-stale-owner", "s0 apply")
    io = ReplayIoctx([ex], SCENARIOS["write-stale-owner"].base)
    ((method, request),) = ex["ops"]
    op = io.create_write_op()
    op.execute(clsops.CLASS, method, bytes.fromhex(request))
    comp = io.operate_aio_write_op(op, ex["obj"], flags=clsops.RETURNVEC)
    comp.wait_for_complete()
    io.release_write_op(op)
    assert comp.get_return_value() == -errno.EUCLEAN
    io.check_done()


def test_a_write_op_error_reaches_clsops_as_its_exception() -> None:
    ex = find("write-stale-owner", "s0 apply")
    io = ReplayIoctx([ex], SCENARIOS["write-stale-owner"].base)
    with pytest.raises(clsops.Unclean):
        clsops.apply_report(io, ex["obj"], bytes.fromhex(ex["ops"][0][1]))


def test_an_aio_error_is_a_negative_return_value_and_no_data() -> None:
    ex = find("decide-presumed-abort", "s1 apply part")
    io = ReplayIoctx([ex], SCENARIOS["decide-presumed-abort"].base)
    got: list[Any] = []
    comp = io.aio_execute(
        ex["obj"],
        clsops.CLASS,
        "apply",
        bytes.fromhex(ex["request"]),
        0,
        oncomplete=lambda c, data: got.append(data),
    )
    comp.wait_for_complete_and_cb()
    assert comp.get_return_value() == -errno.ECANCELED
    assert got == [None] and comp.is_complete()


def test_an_aio_reply_reaches_the_callback() -> None:
    ex = find("decide-in-flight", "w state")
    io = ReplayIoctx([ex], SCENARIOS["decide-in-flight"].base)
    st = clsops.aio_state(io, ex["obj"]).wait()
    assert st is not None and st.header.entries[0].kind == Kind.TXN


def test_a_request_not_recorded_fails_however_the_code_catches_it() -> None:
    io = ReplayIoctx(exchanges("decide-presumed-abort"), SCENARIOS["decide-presumed-abort"].base)
    db = Rig(io, SCENARIOS["decide-presumed-abort"].base).db
    with pytest.raises(ReplayMismatch, match="differs from the recording"):
        try:
            resolver.decide(db, info(DEAD, [0, 1], txid=TXID + 1))  # another transaction
        except Exception:  # what the library does in places: not enough to hide it
            pass
    with pytest.raises(AssertionError, match="j journal"):
        io.check_done()


def test_calls_out_of_the_recorded_order_fail() -> None:
    name = "decide-complete-record"
    exs = exchanges(name)
    base = SCENARIOS[name].base
    i = next(k for k, e in enumerate(exs) if replay.describe(e, base) == "s0 state")
    assert replay.describe(exs[i + 1], base) == "s1 state"
    exs[i], exs[i + 1] = exs[i + 1], exs[i]
    io = ReplayIoctx(exs, base)
    with pytest.raises(ReplayMismatch, match="recorded: s1 state"):
        resolver.decide(Rig(io, base).db, info(DEAD, [0, 1]))


def test_calls_left_over_fail() -> None:
    name = "decide-aborted-record"
    io = ReplayIoctx(exchanges(name), SCENARIOS[name].base)
    resolver.decide(Rig(io, SCENARIOS[name].base).db, info(DEAD, [0, 1]))  # but no read after
    with pytest.raises(AssertionError, match=r"stopped before .*'s0 get'"):
        io.check_done()


def test_a_changed_recording_makes_play_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """play() fails when a reply in the recording would lead the code
    elsewhere: here the journal says ABORTED instead of COMPLETE."""
    convs = copy.deepcopy(replay.load())
    name = "decide-complete-record"
    aborted = {
        e["request"]: e
        for e in convs["decide-aborted-record"]["exchanges"]
        if e["who"] == "code" and e["method"] == "journal"
    }
    for e in convs[name]["exchanges"]:
        if e["who"] == "code" and e.get("method") == "journal":
            e["reply"] = aborted[e["request"]]["reply"]
    monkeypatch.setattr(replay, "_loaded", convs)
    with pytest.raises(AssertionError, match="differs from the recording"):
        play(name)


def test_the_harness_pins_time_and_restores_everything() -> None:
    real = (shardclient.time, retry.time, wakeup.sleep, wakeup._notices)
    with replay.harness(TXID) as ctx:
        t = retry.time.monotonic()
        wakeup.sleep("obj", wakeup.generation("obj"), 5.0)
        retry.time.sleep(1.0)
        assert retry.time.monotonic() == t + 6.0 == ctx.clock.now
    assert (shardclient.time, retry.time, wakeup.sleep, wakeup._notices) == real
    assert shardclient.time is time


def test_replay_needs_no_cluster_and_is_fast() -> None:
    start = time.perf_counter()
    for name in SCENARIOS:
        play(name)
    assert time.perf_counter() - start < 2.0
