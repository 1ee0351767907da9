"""Micro-benchmarks of single operations: radostdb against raw python-rados.

    pytest bench/test_ops_bench.py --benchmark-group-by=group --benchmark-columns=median,mean,ops

Every operation runs twice on the session's cluster (``radostdb.testing``'s
fixtures): through radostdb's Tdb API and as the same omap operation done
with python-rados (radostdb-bench's ``rados`` backend), so each group of the
table holds the pair; the rate ratio radostdb/rados is stored as
``extra_info`` of the second of the two. pytest-benchmark runs one test after
the other, so on a busy machine a pair can be measured under different load:
the ratios to quote come from ``radostdb-bench``, which interleaves the two.
"""

from __future__ import annotations

import itertools
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from radostdb.bench.backends import Backend, open_backend
from radostdb.bench.environment import remove_namespace
from radostdb.bench.spec import Place, Spec
from radostdb.testing import ClusterInfo

RECORDS = 1000
SPEC = Spec(records=RECORDS)
SIDES = ("radostdb", "rados")
SETUP_ROUNDS = 300  # pedantic rounds for operations that need a fresh record each time


@pytest.fixture(scope="module")
def backends(ceph_cluster: ClusterInfo) -> Iterator[dict[str, Backend]]:
    """Both sides, each with the same RECORDS records, in a namespace of their own."""
    ns = f"ops-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="rtdb-ops-") as workdir:
        place = Place(ceph_cluster.conf, ceph_cluster.pool, ceph_cluster.client_id, ns, workdir)
        opened = {side: open_backend(place, side, "ops", create=True) for side in SIDES}
        try:
            for b in opened.values():
                b.load(SPEC.records_range(0, RECORDS))
            yield opened
        finally:
            for b in opened.values():
                b.close()
            remove_namespace(ceph_cluster.conf, ceph_cluster.client_id, ceph_cluster.pool, ns)


@pytest.fixture(params=SIDES)
def side(request: pytest.FixtureRequest, backends: dict[str, Backend]) -> Backend:
    """One side."""
    return backends[request.param]


def cycle_keys(tag: str = "r") -> Iterator[bytes]:
    return itertools.cycle([SPEC.key(tag, i) for i in range(RECORDS)])


def fresh_keys(tag: str) -> Iterator[bytes]:
    """Keys never used before in this session (for records made per round)."""
    run = uuid.uuid4().hex[:6]
    return (SPEC.key(f"{tag}{run}.", i) for i in itertools.count())


MEANS: dict[str, dict[str, float]] = {}  # group -> side -> mean seconds per call


def note(benchmark: Any, b: Backend) -> None:
    """Store the rate, and the pair's ratio once both sides have run."""
    if not benchmark.stats:  # None under --benchmark-disable
        return
    mean = benchmark.stats.stats.mean
    benchmark.extra_info["ops_per_s"] = 1 / mean
    means = MEANS.setdefault(benchmark.group, {})
    means[b.name] = mean
    if len(means) == 2:
        benchmark.extra_info["radostdb/rados"] = means["rados"] / means["radostdb"]


def make_simple(b: Backend, op: str) -> Callable[[], Any]:
    value = SPEC.value
    keys = cycle_keys()
    if op == "store":
        return lambda: b.store(next(keys), value)
    if op == "fetch":
        return lambda: b.fetch(next(keys))
    if op == "fetch-miss":
        missing = fresh_keys("m")
        return lambda: b.fetch(next(missing))
    if op == "lock-unlock":

        def lock_unlock() -> None:
            k = next(keys)
            b.lock(k)
            b.unlock(k)

        return lock_unlock
    if op == "lock-store-unlock":

        def lock_store_unlock() -> None:
            k = next(keys)
            b.lock(k)
            b.store(k, value)
            b.unlock(k)

        return lock_store_unlock
    if op == "fetch-locked":

        def fetch_locked() -> None:
            k = next(keys)
            b.fetch_locked(k)
            b.unlock(k)

        return fetch_locked
    if op.startswith("txn-"):
        size = int(op[4:])
        return lambda: b.txn([(next(keys), value) for _ in range(size)])
    if op == "traverse-1000":
        return lambda: sum(1 for _ in b.items())
    raise ValueError(op)


@pytest.mark.parametrize(
    "op",
    [
        "store",
        "fetch",
        "fetch-miss",
        "lock-unlock",
        "lock-store-unlock",
        "fetch-locked",
        "txn-1",
        "txn-100",
        "traverse-1000",
    ],
)
def test_op(benchmark: Any, side: Backend, op: str) -> None:
    benchmark.group = op
    if op == "traverse-1000":
        assert sum(1 for _ in side.items()) >= RECORDS
    benchmark(make_simple(side, op))
    note(benchmark, side)


def test_delete(benchmark: Any, side: Backend) -> None:
    """delete of an existing record; the record is made, untimed, before each call."""
    benchmark.group = "delete"
    keys = fresh_keys("d")
    made: list[bytes] = []

    def setup() -> tuple[tuple[bytes], dict[str, Any]]:
        made.append(next(keys))
        side.store(made[-1], SPEC.value)
        return (made[-1],), {}

    benchmark.pedantic(side.delete, setup=setup, rounds=SETUP_ROUNDS)
    note(benchmark, side)
    assert side.fetch(made[-1]) is None


def test_append(benchmark: Any, side: Backend) -> None:
    """append of the value to a record holding it (the raw side writes the
    grown record: its floor); the record is made, untimed, before each call."""
    benchmark.group = "append"
    keys = fresh_keys("a")
    value, grown = SPEC.value, SPEC.value * 2
    made: list[bytes] = []

    def setup() -> tuple[tuple[bytes, bytes, bytes], dict[str, Any]]:
        k = next(keys)
        side.store(k, value)
        made.append(k)
        return (k, value, grown), {}

    benchmark.pedantic(side.append, setup=setup, rounds=SETUP_ROUNDS)
    note(benchmark, side)
    assert side.fetch(made[-1]) == grown
