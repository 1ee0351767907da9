"""radostdb-bench's parts that need no cluster: keys and samples (spec.py),
statistics (stats.py), the workload table, the watch scenario's arithmetic
and table (watching.py, report.py), and the command's arguments. The runs
themselves are in tests/cluster/test_bench.py."""

from __future__ import annotations

import math
import subprocess
import sys
from importlib.metadata import entry_points
from typing import Any

import pytest

from radostdb.bench import cli, watching
from radostdb.bench.contention import handoffs_us
from radostdb.bench.report import watch_table
from radostdb.bench.spec import Spec
from radostdb.bench.stats import Chunk, fairness, percentiles, ratio, summarize
from radostdb.bench.workloads import WORKLOADS

LOCK_WORKLOADS = {"lock-unlock", "lock-store-unlock", "fetch-locked"}


def test_usage_errors() -> None:
    for args, word in ((["--workload", "nope"], "nope"), (["--clients", "1,x"], "--clients")):
        proc = subprocess.run(
            [sys.executable, "-m", "radostdb.bench", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and word in proc.stderr


def test_console_script_is_the_package_main() -> None:
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "radostdb-bench"]
    assert ep.value == "radostdb.bench:main" and ep.load() is cli.main


def test_keys_are_deterministic_sized_and_distinct() -> None:
    spec = Spec(key_size=16)
    keys = [spec.key("r", i) for i in range(5000)]
    assert keys == [Spec(key_size=16).key("r", i) for i in range(5000)]
    assert len(set(keys)) == len(keys) and {len(k) for k in keys} == {16}
    assert spec.key("d0.1.", 3) != spec.key("d1.0.", 3)
    assert len(Spec(key_size=4).key("r", 1)) == 9  # never shorter than the counter
    assert len(Spec(value_size=4096).value) == 4096


def test_client_slices_are_disjoint() -> None:
    spec = Spec(records=1000)
    picks = [set(spec.sample("store", c, 4, 0, 500, 1000)) for c in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not picks[a] & picks[b]
    assert spec.sample("store", 1, 4, 2, 50, 1000) == spec.sample("store", 1, 4, 2, 50, 1000)


def test_calls_per_round_scale_by_backend() -> None:
    spec = Spec(ops=10_000, rounds=20)
    assert spec.calls_per_round(1, False, "radostdb") == 500
    assert spec.calls_per_round(1, False, "etcd") == 250
    assert spec.calls_per_round(1, False, "lmdb") == 5000
    assert spec.calls_per_round(1, False, "cephsqlite") == 50
    assert spec.calls_per_round(1000, False, "radostdb") == 3  # 3 per round at least
    assert spec.calls_per_round(1000, False, "cephsqlite") == 1
    assert spec.calls_per_round(1, True, "tdb") == 1  # one traversal


def test_workloads_are_a_table_of_callables() -> None:
    assert all(name == w.name and callable(w.run) for name, w in WORKLOADS.items())
    assert {w.name for w in WORKLOADS.values() if w.needs} == LOCK_WORKLOADS
    assert [w.size for w in WORKLOADS.values() if w.name.startswith("txn-")] == [1, 10, 100, 1000]
    assert {w.name for w in WORKLOADS.values() if w.prepare} == {"delete", "append"}


def test_ratio_is_the_median_of_paired_rounds() -> None:
    def summary(rates: list[float]) -> dict[str, Any]:
        return summarize([[Chunk(int(r), 10.0, 11.0)] for r in rates])

    r = ratio(summary([100, 300, 200]), summary([200, 300, 100]))
    assert r is not None
    assert r["rounds"] == [0.5, 1.0, 2.0] and r["median"] == 1.0
    assert (r["min"], r["max"], r["total"]) == (0.5, 2.0, 1.0)
    assert ratio({"n/a": "no"}, summary([1])) is None


def test_percentiles_and_fairness() -> None:
    p = percentiles([float(x) for x in range(1, 1001)])
    assert (p["min"], p["p50"], p["p99"], p["p99.9"], p["max"]) == (1, 500, 990, 999, 1000)
    assert percentiles([]) == {}
    assert fairness([10, 10, 10]) == 1.0 and fairness([0, 10, 20]) == 0.0
    assert math.isclose(fairness([5, 10, 15]), 0.5)


@pytest.mark.parametrize(
    ("records", "given", "sizes"),
    [
        (10_000, None, [10_000, 100_000]),
        (1_000_000, None, [10_000, 100_000, 1_000_000]),
        (300_000, None, [10_000, 100_000, 300_000]),
        (10, "500,200", [200, 500]),
    ],
)
def test_scale_sizes(records: int, given: str | None, sizes: list[int]) -> None:
    assert cli.scale_sizes_for(records, given) == sizes


@pytest.mark.parametrize(
    ("given", "counts"), [("1", [1]), ("4", [1, 4]), ("4,2", [1, 2, 4]), ("1,2,4", [1, 2, 4])]
)
def test_client_counts(given: str, counts: list[int]) -> None:
    assert cli.client_counts(given) == counts


@pytest.mark.parametrize(
    "given,quick,counts",
    [
        (None, False, [2, 4, 8, 16]),
        (None, True, [4]),
        ("16,4", False, [4, 16]),
        ("0", False, []),
    ],
)
def test_contention_counts(given: str | None, quick: bool, counts: list[int]) -> None:
    assert cli.contention_counts(given, quick) == counts


@pytest.mark.parametrize("given", ["x", "0,4", "65", ""])
def test_contention_counts_refused(given: str) -> None:
    with pytest.raises(cli.click.BadParameter):
        cli.contention_counts(given, False)


def test_handoffs_count_waiting_takers_only() -> None:
    """Client 0 holds 1.0-2.0; client 1 asked at 1.5 and got it at 2.3: a
    handoff of 0.3 s. Client 0 asks again at 2.1 (after its own release),
    gets it at 3.4 after client 1's release at 3.0: 0.4 s. Client 1 asks
    again at 5.0, long after the last release (3.5): no wait, no handoff."""
    outs = [
        {"asked": [0.9, 2.1], "granted": [1.0, 3.4], "released": [2.0, 3.5]},
        {"asked": [1.5, 5.0], "granted": [2.3, 5.0], "released": [3.0, 5.1]},
    ]
    got = handoffs_us(outs)
    assert [round(h) for h in got] == [300_000, 400_000]


@pytest.mark.parametrize(
    ("given", "quick", "seconds"), [(None, False, 5.0), (None, True, 1.0), (0.0, False, 0.0)]
)
def test_watch_seconds(given: float | None, quick: bool, seconds: float) -> None:
    assert cli.watch_seconds_for(given, quick) == seconds


def test_wake_latencies_pair_stores_and_wakes() -> None:
    """Store sent at 1.0, watcher woken at 1.0005: 500 µs. A wait that
    returned (2.9) before the store was sent (3.0) is spurious, not timed."""
    lat, spurious = watching.wake_latencies([1.0, 2.0, 3.0], [1.0005, 2.002, 2.9])
    assert [round(x) for x in lat] == [500, 2000] and spurious == 1
    assert watching.wake_latencies([], []) == ([], 0)


def test_latency_ratios() -> None:
    ours = {"p50": 600.0, "p99": 1500.0, "mean": 700.0}
    theirs = {"p50": 400.0, "p99": 1000.0, "mean": 350.0}
    assert watching.latency_ratios(ours, theirs) == {"p50": 1.5, "p99": 1.5, "mean": 2.0}
    assert watching.latency_ratios(ours, {}) is None
    assert watching.latency_ratios({}, theirs) is None
    assert watching.latency_ratios(ours, {**theirs, "p50": 0.0}) is None


def test_watch_figures_from_the_logs() -> None:
    """Three rounds of a raw watcher: the stamps of the store, the notify,
    the callback and the waiting thread; 12 OSD ops over 3 rounds, less the
    unwatched store's 1."""
    watcher = {
        "sent": [10.0, 20.0, 30.0],
        "notified": [10.0003, 20.0003, 30.0003],
        "callbacks": [10.0005, 20.0006, 30.0007],
        "woken": [10.0006, 20.0007, 30.0009],
    }
    writer = {"store_cold_us": [300.0, 310.0, 320.0], "store_hot_us": [305.0, 315.0, 325.0]}
    run = watching.figures("rados", watcher, writer, 1.5, 12, 1.0)
    assert (run.kind, run.rounds, run.spurious, run.error) == ("rados", 3, 0, None)
    assert run.seconds == 1.5
    assert round(run.wake_us["p50"]) == 700 and round(run.wake_us["max"]) == 900
    assert run.wake_us["count"] == 3 and set(run.wake_us) == set(watching.LATENCY_KEYS)
    assert round(run.callback_us["p50"]) == 600 and round(run.notify_us["p50"]) == 400
    assert run.store_unwatched_us["p50"] == 310 and run.store_watched_us["p50"] == 315
    assert (run.osd_ops_per_round, run.osd_ops_per_change) == (4.0, 3.0)
    # radostdb: no callback and no separate notify stamps; etcd: no OSD ops
    watcher = {**watcher, "notified": [None] * 3, "callbacks": [None] * 3}
    run = watching.figures("etcd", watcher, writer, 1.5, None, None)
    assert run.callback_us == {} and run.notify_us == {} and run.wake_us["count"] == 3
    assert run.osd_ops_per_round is None and run.osd_ops_per_change is None


def test_watch_table_shows_every_backend_and_the_ratios() -> None:
    from dataclasses import asdict

    from rich.console import Console

    lat = {"p50": 500.0, "p90": 600.0, "p99": 900.0, "max": 1000.0, "mean": 550.0, "count": 9}
    runs = {
        k: asdict(
            watching.WatchRun(
                kind=k,
                rounds=9,
                wake_us=lat,
                store_watched_us=lat,
                store_unwatched_us=lat,
                osd_ops_per_change=None if k == "etcd" else 3.0,
            )
        )
        for k in watching.KINDS
    }
    runs["etcd"] = asdict(watching.WatchRun(kind="etcd", error="Traceback\nEOFError: gone"))
    doc = {
        "seconds": 2.0,
        "windows": watching.WINDOWS,
        "kinds": runs,
        "ratio_rados": {"p50": 1.25, "p99": 2.5, "mean": 1.0},
        "ratio_etcd": None,
    }
    console = Console(width=250, record=True)
    console.print(watch_table(doc))
    text = console.export_text()
    assert "watched records" in text and "1.25 / 2.50" in text and "500 / 900" in text
    assert "error: EOFError: gone" in text
    for kind in watching.KINDS:
        assert kind in text


def test_the_throwaway_store_is_sized_for_the_records_and_memstore_refused_past_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A memstore OSD held 10 million 116-byte records in 22 GB of memory:
    such a run is refused before any daemon starts on a machine with less
    (2 million records are not)."""
    from radostdb.bench import environment
    from radostdb.bench.progress import Reporter

    assert environment.store_bytes(10_000_000, 116) > 4 << 30
    assert environment.store_bytes(10_000, 116) < environment.MEMSTORE_MIN
    monkeypatch.delenv("CEPH_CONF", raising=False)
    monkeypatch.setattr(environment.os.path, "exists", lambda path: False)
    monkeypatch.setattr(environment, "available_memory", lambda: 22 << 30)  # this machine

    def memstore_for(records: int) -> Any:
        """cluster_for a throwaway memstore OSD sized for ``records`` records."""
        need = environment.store_bytes(records, 116)
        return environment.cluster_for(
            None, "p", 1, "memstore", "auto", Reporter(True), need_bytes=need
        )

    with pytest.raises(RuntimeError, match="--store bluestore"), memstore_for(10_000_000):
        pass

    class Started(Exception):
        """Raised where the throwaway cluster's directory is made."""

    def mkdtemp(**kw: object) -> str:
        raise Started

    monkeypatch.setattr(environment.tempfile, "mkdtemp", mkdtemp)
    # past the memory check: it goes on to start one
    with pytest.raises(Started), memstore_for(2_000_000):
        pass
