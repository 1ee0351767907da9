"""Test-only fault injection: make this process SIGKILL itself at a named
step of a multi-shard commit, or when it releases its transaction lock.

The tests switch it on in the process they mean to kill: ``install(step)``
replaces the committer's round (radostdb.commit.Committer._round) or the
release of the transaction lock (radostdb.txnlock.TxnLock._release) with a
version that does part of the work and dies. Nothing in radostdb looks for
it. Workers started with ``RADOSTDB_TEST_CRASH_AT=STEP`` in their
environment install it themselves (procs.py, fault_workers.py).

The steps, and what each leaves:
- before-round: nothing was sent (old records);
- stage-only: the journal record alone (aborted: old records);
- apply-partial: half the parts, no journal record (aborted);
- applied-no-stage: every part, no journal record (aborted);
- round-done: the whole round (committed: new records);
- before-release: a committed transaction whose shards are still pending,
  its isolation not released (committed).
"""

from __future__ import annotations

import os
import signal
from typing import Any

ENV = "RADOSTDB_TEST_CRASH_AT"
STEPS = (
    "before-round",
    "stage-only",
    "apply-partial",
    "applied-no-stage",
    "round-done",
    "before-release",
)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(step: str) -> None:
    """Die at ``step`` (see the module comment) from now on in this process."""
    from radostdb import clsops, commit, txnlock

    if step not in STEPS:
        raise ValueError(f"unknown crash step {step!r}; one of {', '.join(STEPS)}")
    if step == "before-release":
        txnlock.TxnLock._release = lambda self: die()  # type: ignore[method-assign]
        return
    real = commit.Committer._round

    def crashing(
        self: Any,
        txid: int,
        participants: list[int],
        by_shard: Any,
        complete: list[int],
        forget: list[int],
    ) -> Any:
        if step == "round-done":
            real(self, txid, participants, by_shard, complete, forget)
            die()
        io = self.shards.io()
        if step == "stage-only":
            clsops.wait_all(
                [
                    clsops.aio_stage(
                        io,
                        self.db.journal,
                        clsops.stage_request(txid, self.shards.books.owner, participants),
                    )
                ]
            )
        elif step in ("apply-partial", "applied-no-stage"):
            some = (
                participants
                if step == "applied-no-stage"
                else (participants[: len(participants) // 2 or 1])
            )
            clsops.wait_all(
                [self.shards[i].aio_write_part(by_shard[i], txid, participants) for i in some]
            )
        die()
        raise AssertionError("not reached")

    commit.Committer._round = crashing  # type: ignore[method-assign]


def prelude() -> str:
    """Python source that makes a ``python -c`` worker install the crash
    point of its environment (put it before the worker's code)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return (
        f"import sys; sys.path.insert(0, {here!r}); import crashpoints; "
        "crashpoints.install_from_env()\n"
    )


def install_from_env() -> None:
    """install() the step named by RADOSTDB_TEST_CRASH_AT, if any."""
    step = os.environ.get(ENV)
    if step:
        install(step)
