"""Test-only fault injection: make this process SIGKILL itself at a named
step of a multi-shard commit, or when it releases its transaction lock.

The tests switch it on in the process they mean to kill: ``install(step)``
replaces the committer's round (radostdb.commit.Committer._round) or the
release of the transaction lock (radostdb.txnlock.TxnLock._release, and
_hand_on, which hands it on keeping the isolation) with a
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
  its isolation not released (committed);
- hand-on-partial: the release round of a holder that hands the lock on,
  sent without the settles of all pending shards but the first (so the
  next holder is told, and one shard is left pending the transaction),
  then death (committed).

And in a resharder (radostdb.reshard), ``STEP@N`` dies right after the Nth
such step (N defaults to 1) of this process:
- split-begun: the split recorded on p, nothing moved;
- absorbed: a page copied to q, not advanced (q holds copies past moved_upto);
- advanced: a page moved (p dropped it, moved_upto on);
- split-done: p's split complete, the header not yet grown;
- grown: the header grown (the next split not begun).
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
    "hand-on-partial",
)
RESHARD_STEPS = ("split-begun", "absorbed", "advanced", "split-done", "grown")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_reshard(step: str, nth: int) -> None:
    """Die after the ``nth`` ``step`` of a resharder (module comment)."""
    from radostdb import clsops, dbheader

    seen = [0]

    def after(real: Any, fires: Any = None) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            if fires is None or fires(args, out):
                seen[0] += 1
                if seen[0] == nth:
                    die()
            return out

        return wrapped

    def done(args: Any, _out: Any) -> bool:  # the advance that completed the split
        return _ends(args)

    if step == "split-begun":
        clsops.split_begin = after(clsops.split_begin)
    elif step == "absorbed":
        clsops.split_absorb = after(clsops.split_absorb)
    elif step == "advanced":
        clsops.split_advance = after(clsops.split_advance)
    elif step == "split-done":
        clsops.split_advance = after(clsops.split_advance, done)
    else:
        dbheader.grow = after(dbheader.grow)


def _ends(args: Any) -> bool:
    """Was this split_advance request (io, obj, req) the last page (end)?"""
    from radostdb import clsops

    req = args[2]
    rd = clsops._Reader(req).open(1)
    rd.owner()
    rd.u8()
    rd.bytes()
    rd.bytes()
    return bool(rd.u8())


def install(step: str) -> None:
    """Die at ``step`` (see the module comment) from now on in this process."""
    from radostdb import clsops, commit, txnlock

    name, _, nth = step.partition("@")
    if name in RESHARD_STEPS:
        _install_reshard(name, int(nth or 1))
        return
    if step not in STEPS:
        raise ValueError(f"unknown crash step {step!r}; one of {', '.join(STEPS)}")
    if step == "hand-on-partial":
        from radostdb import shardclient
        from radostdb.kinds import Kind

        release = shardclient.Shards.release_objects

        def partial(self: Any, items: Any, *args: Any, **kwargs: Any) -> Any:
            if not any(kind == Kind.TXN for _, _, kind in items):
                return release(self, items, *args, **kwargs)
            settles = [it for it in items if it[1]]
            release(self, [it for it in items if not it[1]] + settles[:1], *args, **kwargs)
            die()

        shardclient.Shards.release_objects = partial  # type: ignore[method-assign]
        return
    if step == "before-release":
        txnlock.TxnLock._release = lambda self, *_: die()  # type: ignore[method-assign]
        txnlock.TxnLock._hand_on = lambda self, *_: die()  # type: ignore[method-assign]
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
