"""The recorded conversations (tests/vectors/conversations.json) against the
live object class.

Every scenario of tests/conversations.py is run here against the real class
on the cluster under test, through a recording I/O context (replay.Recorder):
its setup, its act (radostdb's client logic) and the other clients' hooks.
- By default the test checks that the conversation is still the recorded
  one: the same calls, in the same order, with the same replies and the
  same outcome, OSD times, object versions, lock expiries and journal
  record times aside (replay.normalised). A change of the class that alters
  a reply, or of the client logic that alters what it sends, fails here;
  the unit tests that replay the recording (tests/unit) would otherwise go
  on testing the old behaviour.
- With ``RADOSTDB_RECORD=1`` it records instead, and rewrites the scenarios
  it ran in conversations.json (and drops those no scenario has any more):
  ``RADOSTDB_RECORD=1 python -m pytest tests/cluster/test_recordings.py``,
  then read the diff: it is the change of the protocol.
Every scenario uses objects of its own (``rec-<scenario>.*``), removed before
and after it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import rados
import replay
from conversations import SCENARIOS, Scenario

from radostdb.testing import env_flag

RECORDING = env_flag(replay.RECORD_ENV)
_recorded: dict[str, Any] = {}


def _remove(io: Any, objs: list[str]) -> None:
    for obj in objs:
        try:
            io.remove_object(obj)
        except rados.ObjectNotFound:
            pass


def run_live(sc: Scenario, io: Any) -> dict[str, Any]:
    """Run a scenario against the live class; its conversation and outcome."""
    _remove(io, sc.objects())
    rec = replay.Recorder(io, sc.base, sc.hooks)
    try:
        sc.setup(rec.other, sc.base)
        rec.complete()
        raised: BaseException | None = None
        value = None
        with replay.harness(sc.txid, sc.base) as ctx:
            rec.armed = True
            try:
                value = sc.act(rec.io("code"), ctx)
            except Exception as exc:
                raised = exc
            finally:
                rec.complete()
                rec.armed = False
        return {
            "doc": sc.doc,
            "outcome": replay.outcome_of(value, raised),
            "exchanges": rec.exchanges,
        }
    finally:
        _remove(io, sc.objects())


def _first_difference(recorded: list[dict[str, Any]], live: list[dict[str, Any]], base: str) -> str:
    for i, (a, b) in enumerate(zip(recorded, live, strict=False)):
        na, nb = replay.normalised(a), replay.normalised(b)
        if na != nb:
            keys = [k for k in sorted(set(na) | set(nb)) if na.get(k) != nb.get(k)]
            return (
                f"exchange {i + 1} ({replay.describe(a, base)} by {a['who']}) differs in "
                f"{keys}:\n  recorded: {json.dumps(na)}\n  live:     {json.dumps(nb)}"
            )
    return (
        f"{len(recorded)} exchanges recorded, {len(live)} live; the first extra: "
        f"{(recorded[len(live) :] or live[len(recorded) :])[0]}"
    )


@pytest.fixture(scope="module", autouse=True)
def _rewrite() -> Iterator[None]:
    """In recording mode: write what the module's tests recorded."""
    yield
    if RECORDING and _recorded:
        try:
            old = json.loads(replay.CONVERSATIONS.read_text())["conversations"]
        except FileNotFoundError:
            old = {}
        merged = {n: c for n, c in old.items() if n in SCENARIOS}
        merged.update(_recorded)
        replay.CONVERSATIONS.write_text(replay.dump(merged))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_conversation(name: str, ioctx: Any) -> None:
    """The live class still answers the scenario as recorded (or, with
    RADOSTDB_RECORD=1, record it)."""
    sc = SCENARIOS[name]
    live = run_live(sc, ioctx)
    if RECORDING:
        _recorded[name] = live
        return
    conv = json.loads(replay.CONVERSATIONS.read_text())["conversations"].get(name)
    assert conv is not None, f"{name} was never recorded: run with {replay.RECORD_ENV}=1"
    recorded = conv["exchanges"]
    norm = [replay.normalised(e) for e in recorded]
    if norm != [replay.normalised(e) for e in live["exchanges"]]:
        pytest.fail(
            f"the conversation of {name} changed (re-record with "
            f"{replay.RECORD_ENV}=1 once the change is meant):\n"
            + _first_difference(recorded, live["exchanges"], sc.base)
        )
    assert live["outcome"] == conv["outcome"]
    assert live["doc"] == conv["doc"], "the scenario's description changed: re-record"
