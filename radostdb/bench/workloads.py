"""The workloads: a table of named callables, each running one client's
chunk of calls on a backend and timing it.

A workload is built from the keys or batches it calls on (``items``) and
the call made on each (``call``); traversals walk the whole database
instead. Keys come from one deterministic generator and picks from seeds
that depend on workload, client and round only, so every backend gets the
same data. Untimed set-up (the records a chunk deletes or appends to) is
the workload's ``prepare``, done by the parent before the chunk.

mixed (Samba-like): 80% fetch, 15% store, 5% locked updates: the record's
lock, fetch, store, unlock (radostdb fetch_locked + store + chainunlock;
rados cls_lock; etcd a Lock). Backends without record locks use what they
have: an LMDB write transaction, a SQLite BEGIN IMMEDIATE transaction,
plain fetch + store for python3-tdb.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backends.base import Backend
from .spec import MIX, Spec
from .stats import Chunk


@dataclass(frozen=True)
class Ctx:
    """One client's chunk: who runs it, which round, how many calls."""

    spec: Spec
    client: int
    nclients: int
    rnd: int
    n: int  # calls (transactions for txn-N; traversals of the database)
    records: int  # records in the database

    def sample(self, name: str, n: int | None = None) -> list[bytes]:
        return self.spec.sample(
            name, self.client, self.nclients, self.rnd, self.n if n is None else n, self.records
        )

    def fresh(self, tag: str) -> list[bytes]:
        """n keys of this client and round only (records to delete, to
        append to, or never stored)."""
        return [self.spec.key(f"{tag}{self.client}.{self.rnd}.", i) for i in range(self.n)]


Runner = Callable[[Backend, Ctx], Chunk]


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str  # what the rate counts: "ops" or "records"
    help: str
    run: Runner
    needs: str = ""  # backend capability required ("locks", "fetch_locked")
    size: int = 1  # records per call (transactions)
    walk: bool = False  # one call = a traversal of the whole database
    prepare: Callable[[Backend, Ctx], None] | None = None


def timed(fn: Callable[[Any], Any], items: list[Any], units: int, b: Backend) -> Chunk:
    """Run fn over items with the garbage collector off; the backend's flush
    (a batched commit) counts in the total time."""
    lat = [0.0] * len(items)
    clock = time.perf_counter_ns
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.monotonic()
        for i, item in enumerate(items):
            t0 = clock()
            fn(item)
            lat[i] = (clock() - t0) / 1000
        b.flush()
        end = time.monotonic()
    finally:
        if enabled:
            gc.enable()
    return Chunk(units, start, end, lat)


def per_call(
    items: Callable[[Ctx], list[Any]], call: Callable[[Backend, Ctx], Callable[[Any], Any]]
) -> Runner:
    """A workload of ctx.n timed calls, one per item."""

    def run(b: Backend, ctx: Ctx) -> Chunk:
        return timed(call(b, ctx), items(ctx), ctx.n, b)

    return run


def sampled(name: str) -> Callable[[Ctx], list[bytes]]:
    return lambda ctx: ctx.sample(name)


def fresh(tag: str) -> Callable[[Ctx], list[bytes]]:
    return lambda ctx: ctx.fresh(tag)


def load_fresh(tag: str) -> Callable[[Backend, Ctx], None]:
    """Untimed set-up: store the records a chunk will delete or append to."""

    def prepare(b: Backend, ctx: Ctx) -> None:
        b.load([(k, ctx.spec.value) for k in ctx.fresh(tag)])
        b.flush()

    return prepare


def walk(keys_only: bool) -> Runner:
    """ctx.n traversals of the whole database; the units are records."""

    def run(b: Backend, ctx: Ctx) -> Chunk:
        it = b.keys if keys_only else b.items
        enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.monotonic()
            count = 0
            for _ in range(ctx.n):
                for _ in it():
                    count += 1
            end = time.monotonic()
        finally:
            if enabled:
                gc.enable()
        return Chunk(count, start, end)

    return run


def transactions(size: int) -> Runner:
    """ctx.n transactions of ``size`` stores of distinct records of this
    client's slice (repeats only when the slice is smaller than ``size``)."""

    def run(b: Backend, ctx: Ctx) -> Chunk:
        rng = random.Random(f"{ctx.spec.seed}:txn-{size}:{ctx.client}:{ctx.rnd}")
        per = max(1, ctx.records // ctx.nclients)
        value, key = ctx.spec.value, ctx.spec.key
        batches = []
        for _ in range(ctx.n):
            idx = (
                rng.sample(range(per), size)
                if per >= size
                else [rng.randrange(per) for _ in range(size)]
            )
            batches.append([(key("r", ctx.client + ctx.nclients * i), value) for i in idx])
        return timed(b.txn, batches, ctx.n * size, b)

    return run


# -- the calls ------------------------------------------------------------------
def _store(b: Backend, ctx: Ctx) -> Callable[[bytes], None]:
    value = ctx.spec.value
    return lambda k: b.store(k, value)


def _append(b: Backend, ctx: Ctx) -> Callable[[bytes], None]:
    value = ctx.spec.value
    grown = value + value
    return lambda k: b.append(k, value, grown)


def _lock_unlock(b: Backend, ctx: Ctx) -> Callable[[bytes], None]:
    def call(k: bytes) -> None:
        b.lock(k)
        b.unlock(k)

    return call


def _lock_store_unlock(b: Backend, ctx: Ctx) -> Callable[[bytes], None]:
    value = ctx.spec.value

    def call(k: bytes) -> None:
        b.lock(k)
        b.store(k, value)
        b.unlock(k)

    return call


def _fetch_locked(b: Backend, ctx: Ctx) -> Callable[[bytes], None]:
    def call(k: bytes) -> None:
        b.fetch_locked(k)
        b.unlock(k)

    return call


def _mixed(b: Backend, ctx: Ctx) -> Callable[[bytes], None]:
    rng = random.Random(f"{ctx.spec.seed}:mix:{ctx.client}:{ctx.rnd}")
    value = ctx.spec.value

    def call(k: bytes) -> None:
        r = rng.random()
        if r < MIX[0]:
            b.fetch(k)
        elif r < MIX[0] + MIX[1]:
            b.store(k, value)
        else:
            b.locked_update(k, value)

    return call


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("store", "ops", "replace an existing record", per_call(sampled("store"), _store)),
        Workload(
            "fetch",
            "ops",
            "read an existing record",
            per_call(sampled("fetch"), lambda b, c: b.fetch),
        ),
        Workload(
            "fetch-miss",
            "ops",
            "read a key that does not exist",
            per_call(fresh("m"), lambda b, c: b.fetch),
        ),
        Workload(
            "delete",
            "ops",
            "delete an existing record",
            per_call(fresh("d"), lambda b, c: b.delete),
            prepare=load_fresh("d"),
        ),
        Workload(
            "append",
            "ops",
            "append the value to an existing record",
            per_call(fresh("a"), _append),
            prepare=load_fresh("a"),
        ),
        Workload("traverse-keys", "records", "every key of the database", walk(True), walk=True),
        Workload(
            "traverse-items",
            "records",
            "every key and value of the database",
            walk(False),
            walk=True,
        ),
        Workload(
            "lock-unlock",
            "ops",
            "record lock and unlock",
            per_call(sampled("lock-unlock"), _lock_unlock),
            needs="locks",
        ),
        Workload(
            "lock-store-unlock",
            "ops",
            "lock, store, unlock",
            per_call(sampled("lock-store-unlock"), _lock_store_unlock),
            needs="locks",
        ),
        Workload(
            "fetch-locked",
            "ops",
            "fetch_locked, then unlock",
            per_call(sampled("fetch-locked"), _fetch_locked),
            needs="fetch_locked",
        ),
        *(
            Workload(f"txn-{n}", "records", f"transaction of {n} stores", transactions(n), size=n)
            for n in (1, 10, 100, 1000)
        ),
        Workload(
            "mixed",
            "ops",
            "80% fetch, 15% store, 5% locked fetch+store",
            per_call(sampled("mixed"), _mixed),
        ),
    )
}
