"""radostdb-bench: a complete, well-formed report for every backend and workload.

The runs are tiny and the checks are about structure, never speed. The
command runs as a child process against the session's cluster (the
``ceph_cluster`` fixture points CEPH_CONF and RADOSTDB_POOL at it).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from radostdb import bench
from radostdb.testing import ClusterInfo

RECORDS, OPS, ROUNDS = 300, 40, 2
SUMMARY_KEYS = {"ops", "seconds", "rate", "rate_median", "per_client", "latency_us", "rounds"}
LATENCY_KEYS = {"min", "p50", "p90", "p99", "p99.9", "max", "mean", "count"}
RATIO_KEYS = {"median", "min", "max", "total", "rounds"}
ENV_KEYS = {"ceph_version", "osds", "objectstore", "cpus", "python", "radostdb", "native_codec"}


def run_bench(cluster: ClusterInfo, tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    """Run radostdb-bench --quick --json; the JSON document and stdout."""
    out = tmp_path / "bench.json"
    argv = [
        sys.executable,
        "-m",
        "radostdb.bench",
        "--quick",
        "--quiet",
        "--json",
        str(out),
        "--records",
        str(RECORDS),
        "--ops",
        str(OPS),
        "--rounds",
        str(ROUNDS),
        *args,
    ]
    proc = subprocess.run(
        argv, env=cluster.child_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text()), proc.stdout


def check_summary(
    s: dict[str, Any],
    w: bench.Workload,
    backend: str,
    clients: int,
    rounds: int,
    records: int = RECORDS,
) -> None:
    assert set(s) >= SUMMARY_KEYS
    assert s["ops"] > 0 and s["seconds"] > 0 and s["rate"] > 0 and s["rate_median"] > 0
    assert math.isclose(s["rate"], s["ops"] / s["seconds"])
    assert len(s["rounds"]) == rounds
    for r in s["rounds"]:
        assert set(r) == {"ops", "seconds", "rate", "per_client"}
        assert len(r["per_client"]) == clients
    assert len(s["per_client"]) == clients and all(x > 0 for x in s["per_client"])
    if w.name.startswith("traverse"):
        assert s["latency_us"] == {}
        assert s["ops"] >= records * rounds * clients  # every record, every round
    else:
        lat = s["latency_us"]
        assert set(lat) == LATENCY_KEYS
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"]
        assert lat["p99.9"] <= lat["max"]
        # cluster backends: --ops over the rounds; local ones LOCAL_FACTOR times that
        per_round = math.ceil(max(3 * rounds, OPS // w.size) / rounds)
        if backend not in ("radostdb", "rados"):
            per_round *= bench.LOCAL_FACTOR
        assert lat["count"] == per_round * rounds * clients
        assert s["ops"] == lat["count"] * w.size


def check_workload(
    entry: dict[str, Any],
    w: bench.Workload,
    backends: list[str],
    clients: int,
    rounds: int,
    records: int = RECORDS,
) -> None:
    assert entry["unit"] == w.unit and entry["records_per_op"] == w.size
    assert set(entry["backends"]) == set(backends)
    for name, s in entry["backends"].items():
        if "skipped" in s:
            # only optional features are ever skipped, and never on the raw floor
            assert w.needs and name != "rados", (w.name, name, s)
            assert isinstance(s["skipped"], str) and s["skipped"]
        else:
            check_summary(s, w, name, clients, rounds, records)
    ours, raw = entry["backends"].get("radostdb"), entry["backends"].get("rados")
    if ours and raw and "skipped" not in ours:
        assert set(entry["ratio"]) == RATIO_KEYS
        assert len(entry["ratio"]["rounds"]) == rounds
        assert entry["ratio"]["min"] <= entry["ratio"]["median"] <= entry["ratio"]["max"]
    else:
        assert entry["ratio"] is None


def test_quick_json_has_every_backend_and_workload(
    ceph_cluster: ClusterInfo, tmp_path: Path
) -> None:
    doc, table = run_bench(ceph_cluster, tmp_path, "--scale", "--scale-sizes", "200,500")
    assert doc["tool"] == "radostdb-bench" and doc["schema"] == 1
    assert set(doc["environment"]) >= ENV_KEYS
    assert doc["environment"]["osds"] >= 1 and doc["environment"]["cpus"] >= 1
    assert "error" not in doc["environment"]
    spec = doc["spec"]
    assert (spec["records"], spec["ops"], spec["rounds"], spec["clients"]) == (
        RECORDS,
        OPS,
        ROUNDS,
        1,
    )
    assert (spec["key_size"], spec["value_size"]) == (16, 100)
    assert doc["backends"] == list(bench.BACKENDS)
    assert list(doc["workloads"]) == list(bench.WORKLOADS)
    for name, w in bench.WORKLOADS.items():
        check_workload(doc["workloads"][name], w, doc["backends"], 1, ROUNDS)
    # the core API is measured everywhere; radostdb's optional parts as it has them
    for name in (
        "store",
        "fetch",
        "fetch-miss",
        "delete",
        "append",
        "traverse-keys",
        "traverse-items",
        "txn-1",
        "txn-1000",
        "mixed",
    ):
        assert all("skipped" not in s for s in doc["workloads"][name]["backends"].values())
    caps = doc["environment"]["radostdb_caps"]
    locks = doc["workloads"]["lock-store-unlock"]["backends"]["radostdb"]
    assert ("skipped" in locks) == ("locks" not in caps)
    assert doc["clients_scaling"] is None
    sc = doc["scale"]
    assert sc["sizes"] == [200, 500] and list(sc["results"]) == ["200", "500"]
    for size, res in sc["results"].items():
        assert list(res) == list(bench.SCALE_WORKLOADS)
        for wname, entry in res.items():
            w = bench.WORKLOADS[wname]
            rounds = min(ROUNDS, 3) if wname.startswith("traverse") else ROUNDS
            check_workload(entry, w, doc["backends"], 1, rounds, int(size))
    # the table: every workload and backend, the ratio column, nothing truncated
    for word in [*bench.WORKLOADS, *bench.BACKENDS, "radostdb/rados", "p50/p99/p99.9"]:
        assert word in table
    assert "…" not in table


def test_clients_report_per_client_rates(ceph_cluster: ClusterInfo, tmp_path: Path) -> None:
    backends = ["radostdb", "rados", "lmdb"]
    doc, table = run_bench(
        ceph_cluster,
        tmp_path,
        "--clients",
        "2",
        "--workload",
        "store",
        "--workload",
        "delete",
        "--workload",
        "traverse-keys",
        *(a for b in backends for a in ("--backend", b)),
    )
    assert doc["spec"]["clients"] == 2 and doc["backends"] == backends
    assert list(doc["workloads"]) == ["store", "delete", "traverse-keys"]
    for name, entry in doc["workloads"].items():
        check_workload(entry, bench.WORKLOADS[name], backends, 2, ROUNDS)
    cs = doc["clients_scaling"]
    assert cs["clients"] == 2 and list(cs["workloads"]) == ["store", "fetch"]
    for res in cs["workloads"].values():
        assert set(res) == {"radostdb", "rados"}
        for name, r in res.items():
            assert set(r) == {"1", "2", "speedup"} and r["speedup"] > 0
            check_summary(r["1"], bench.WORKLOADS["store"], name, 1, ROUNDS)
            check_summary(r["2"], bench.WORKLOADS["store"], name, 2, ROUNDS)
    assert "per-client rates" in table and "1 client vs 2 clients" in table


def test_plot_writes_a_png(ceph_cluster: ClusterInfo, tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    doc, _ = run_bench(
        ceph_cluster,
        tmp_path,
        "--plot",
        str(png),
        "--workload",
        "store",
        "--workload",
        "fetch",
        "--workload",
        "txn-10",
    )
    assert set(doc["workloads"]) == {"store", "fetch", "txn-10"}
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_unknown_workload_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "radostdb.bench", "--workload", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "nope" in proc.stderr


# -- the parts that need no cluster -----------------------------------------------
def test_keys_are_deterministic_sized_and_distinct() -> None:
    spec = bench.Spec(key_size=16)
    keys = [spec.key("r", i) for i in range(5000)]
    assert keys == [bench.Spec(key_size=16).key("r", i) for i in range(5000)]
    assert len(set(keys)) == len(keys) and {len(k) for k in keys} == {16}
    assert spec.key("d0.1.", 3) != spec.key("d1.0.", 3)
    assert len(bench.Spec(key_size=4).key("r", 1)) == 9  # never shorter than the counter
    assert len(bench.Spec(value_size=4096).value) == 4096


def test_client_slices_are_disjoint() -> None:
    spec = bench.Spec(records=1000)
    picks = [set(spec.sample("store", c, 4, 0, 500, 1000)) for c in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not picks[a] & picks[b]
    assert spec.sample("store", 1, 4, 2, 50, 1000) == spec.sample("store", 1, 4, 2, 50, 1000)


def test_ratio_is_the_median_of_paired_rounds() -> None:
    def summary(rates: list[float]) -> dict[str, Any]:
        rounds = [[bench.Chunk(int(r), 10.0, 11.0)] for r in rates]
        return bench.summarize(rounds)

    r = bench.ratio(summary([100, 300, 200]), summary([200, 300, 100]))
    assert r is not None
    assert r["rounds"] == [0.5, 1.0, 2.0] and r["median"] == 1.0
    assert (r["min"], r["max"], r["total"]) == (0.5, 2.0, 1.0)
    assert bench.ratio({"skipped": "no"}, summary([1])) is None


def test_percentiles() -> None:
    p = bench.percentiles([float(x) for x in range(1, 1001)])
    assert (p["min"], p["p50"], p["p99"], p["p99.9"], p["max"]) == (1, 500, 990, 999, 1000)
    assert bench.percentiles([]) == {}


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
    assert bench.scale_sizes_for(records, given) == sizes
