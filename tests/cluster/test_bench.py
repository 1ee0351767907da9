"""radostdb-bench: a complete, well-formed report for every backend and workload.

The runs are tiny and the checks are about structure, never speed. The
command runs as a child process against the session's cluster (the
``ceph_cluster`` fixture points CEPH_CONF and RADOSTDB_POOL at it); it starts
and stops its own etcd, whose recorded PID must be gone afterwards. One test
gives it an existing etcd (started here, stopped here by PID) instead. The
parts that need no cluster are in tests/unit/test_bench_parts.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radostdb.bench import cli
from radostdb.bench.backends.etcd import client as etcd_client
from radostdb.bench.etcdserver import EtcdServer
from radostdb.bench.spec import BACKENDS, SCALE_WORKLOADS, SCALED, SCALING, Spec
from radostdb.bench.workloads import WORKLOADS, Workload
from radostdb.testing import ClusterInfo

RECORDS, OPS, ROUNDS = 300, 40, 2
SUMMARY_KEYS = {"ops", "seconds", "rate", "rate_median", "per_client", "latency_us", "rounds"}
LATENCY_KEYS = {"min", "p50", "p90", "p99", "p99.9", "max", "mean", "count"}
RATIO_KEYS = {"median", "min", "max", "total", "rounds"}
ENV_KEYS = {"ceph_version", "osds", "objectstore", "cpus", "python", "radostdb", "native_codec"}
LOCK_WORKLOADS = {"lock-unlock", "lock-store-unlock", "fetch-locked"}
NO_RECORD_LOCKS = {"cephsqlite", "tdb", "lmdb", "lmdb-batch"}
OSD_COUNTED = ("radostdb", "rados", "cephsqlite")


def run_bench(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
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
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text()), proc.stdout


def check_summary(
    s: dict[str, Any],
    w: Workload,
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
    if w.walk:
        assert s["latency_us"] == {}
        assert s["ops"] >= records * rounds * clients  # every record, every round
    else:
        lat = s["latency_us"]
        assert set(lat) == LATENCY_KEYS
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"]
        assert lat["p99.9"] <= lat["max"]
        # --ops over the rounds, scaled per backend (OPS_FACTOR)
        per_round = Spec(ops=OPS, rounds=rounds).calls_per_round(w.size, False, backend)
        assert lat["count"] == per_round * rounds * clients
        assert s["ops"] == lat["count"] * w.size


def check_workload(
    entry: dict[str, Any],
    w: Workload,
    backends: list[str],
    clients: int,
    rounds: int,
    records: int = RECORDS,
) -> None:
    assert entry["unit"] == w.unit and entry["records_per_op"] == w.size
    assert list(entry["backends"]) == backends
    for name, s in entry["backends"].items():
        if "n/a" in s:
            # only what a backend cannot express, with the reason
            assert set(s) == {"n/a"} and isinstance(s["n/a"], str) and len(s["n/a"]) > 10
            assert w.name in LOCK_WORKLOADS and name in NO_RECORD_LOCKS, (w.name, name, s)
        else:
            check_summary(s, w, name, clients, rounds, records)
    ours = entry["backends"].get("radostdb")
    for key, other in (("ratio", "rados"), ("ratio_etcd", "etcd")):
        theirs = entry["backends"].get(other)
        if ours and theirs and "n/a" not in ours and "n/a" not in theirs:
            r = entry[key]
            assert set(r) == RATIO_KEYS and len(r["rounds"]) == rounds
            assert r["min"] <= r["median"] <= r["max"]
        else:
            assert entry[key] is None


def check_watch(wt: dict[str, Any], kinds: list[str], seconds: float) -> None:
    """The watch section: each backend's watcher saw changes, finite
    positive latencies, and the OSD ops of radostdb's and the raw ones."""
    assert wt["seconds"] == seconds and wt["windows"] >= 1 and list(wt["kinds"]) == kinds
    for kind, r in wt["kinds"].items():
        assert r["error"] is None, (kind, r["error"])
        assert r["kind"] == kind and r["rounds"] > 0 and r["seconds"] > 0
        assert 0 <= r["spurious"] < r["rounds"]
        lats = ["wake_us", "store_watched_us", "store_unwatched_us"]
        lats += {"rados": ["callback_us", "notify_us"], "etcd": ["callback_us"]}.get(kind, [])
        for name in lats:
            p = r[name]
            assert p["count"] > 0, (kind, name)
            assert all(math.isfinite(p[k]) and p[k] > 0 for k in ("p50", "p99", "mean", "max"))
            assert p["p50"] <= p["p90"] <= p["p99"] <= p["max"], (kind, name, p)
        assert r["wake_us"]["count"] + r["spurious"] == r["rounds"]
        assert r["store_watched_us"]["count"] == r["rounds"]
        if kind == "etcd":
            assert r["osd_ops_per_change"] is None
        else:  # a store, its notify and the watcher's ack at least; one op a plain store
            assert r["osd_ops_per_unwatched_store"] == pytest.approx(1.0, abs=0.1)
            assert r["osd_ops_per_change"] >= 2.5, (kind, r)
    for key, other in (("ratio_rados", "rados"), ("ratio_etcd", "etcd")):
        if other in kinds:
            ours, theirs = wt["kinds"]["radostdb"]["wake_us"], wt["kinds"][other]["wake_us"]
            assert math.isclose(wt[key]["p50"], ours["p50"] / theirs["p50"])
        else:
            assert wt[key] is None


def etcd_gone(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return True
    return not argv0.endswith(b"etcd")


def namespace_objects(ioctx: Any, namespace: str) -> list[str]:
    ioctx.set_namespace(namespace)
    try:
        return [o.key for o in ioctx.list_objects()]
    finally:
        ioctx.set_namespace("")


def test_quick_json_has_every_backend_workload_and_section(
    ceph_cluster: ClusterInfo, ioctx: Any, tmp_path: Path
) -> None:
    doc, table = run_bench(
        tmp_path,
        "--scale",
        "--scale-sizes",
        "200,500",
        "--contention",
        "1,2",
        "--contention-seconds",
        "0.5",
        env=ceph_cluster.child_env(),
    )
    assert doc["tool"] == "radostdb-bench" and doc["schema"] == cli.SCHEMA
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
    assert spec["cephsqlite"]["pragmas"] and spec["etcd_max_txn_ops"] >= 1000
    assert doc["backends"] == list(BACKENDS)
    assert list(doc["workloads"]) == list(WORKLOADS)
    for name, w in WORKLOADS.items():
        check_workload(doc["workloads"][name], w, doc["backends"], 1, ROUNDS)
    # n/a exactly where a backend has no record locks; everything else measured
    na = {
        (w, b) for w, e in doc["workloads"].items() for b, s in e["backends"].items() if "n/a" in s
    }
    assert na == {(w, b) for w in LOCK_WORKLOADS for b in NO_RECORD_LOCKS}
    assert doc["clients_scaling"] is None

    # the throwaway etcd: on tmpfs, and stopped by its PID at the end
    etcd = doc["etcd"]
    assert etcd["throwaway"] and etcd["tmpfs"] and etcd["version"].startswith("3.")
    assert etcd_gone(etcd["pid"]) and not Path(etcd["data_dir"]).exists()

    # RADOS ops per call, counted on the OSDs: the raw floor is one op a call
    oc = doc["osd_ops"]
    assert oc["method"] and oc["osds"] and oc["background_ops_per_s"] >= 0
    assert list(oc["workloads"]) == list(WORKLOADS)
    for wname, res in oc["workloads"].items():
        assert list(res) == list(OSD_COUNTED)
        for b, r in res.items():
            if "n/a" in r:
                assert (wname, b) in na
                continue
            assert r["calls"] >= 1 and r["osd_ops"] >= r["calls"]
            assert math.isclose(r["per_call"], r["osd_ops"] / r["calls"])
    for wname in ("store", "fetch", "fetch-miss", "delete", "append", "txn-1"):
        assert 1.0 <= oc["workloads"][wname]["rados"]["per_call"] <= 1.05, wname
    assert 2.0 <= oc["workloads"]["lock-unlock"]["rados"]["per_call"] <= 2.1

    # contention: no lost update, no torn audit, every client served
    ct = doc["contention"]
    assert ct["clients"] == 2 and ct["client_counts"] == [1, 2] and ct["seconds"] == 0.5
    assert list(ct["by_clients"]) == ["1", "2"] and ct["scenarios"] == ct["by_clients"]["2"]
    for n, runs in ct["by_clients"].items():
        assert list(runs) == ["one-key", "one-key-do-locked", "transactions", "etcd-one-key"]
        for name, s in runs.items():
            assert "error" not in s, s
            assert len(s["counts"]) == int(n) and all(c >= 1 for c in s["counts"])
            assert 0 < s["fairness_min_mean"] <= 1 and s["rate"] > 0
            assert 0 < s["wait_us"]["p50"] <= s["wait_us"]["p99"] <= s["wait_us"]["max"]
            if name == "transactions":
                assert s["sum_ok"] and s["audit"]["bad_audits"] == 0
                assert s["audit"]["count"] >= 1
            else:
                assert s["lost_updates"] == 0 and s["final"] == sum(s["counts"])
            if name == "etcd-one-key":
                assert "osd_ops_per_op" not in s
            else:  # a lock and its release at least, per operation
                assert s["osd_ops_per_op"] >= 2, (n, name, s["osd_ops_per_op"])
            if n == "1" and name != "transactions":  # alone: nobody to hand over to
                assert s["handoffs"] == 0 and s["handoff_us"] == {}
    two = ct["by_clients"]["2"]["one-key"]
    assert two["handoffs"] >= 1 and 0 < two["handoff_us"]["p50"] <= two["handoff_us"]["p99"]

    # watched records: every backend's watcher woken by every store, radostdb
    # next to raw watch/notify and etcd's watch (quick: 1 s per backend)
    check_watch(doc["watch"], ["radostdb", "rados", "etcd"], 1.0)
    assert spec["watch_seconds"] == 1.0

    sc = doc["scale"]
    assert sc["sizes"] == [200, 500] and list(sc["results"]) == ["200", "500"]
    assert sc["backends"] == list(SCALED)
    for size, res in sc["results"].items():
        assert list(res) == list(SCALE_WORKLOADS)
        for wname, entry in res.items():
            w = WORKLOADS[wname]
            rounds = min(ROUNDS, 3) if w.walk else ROUNDS
            check_workload(entry, w, sc["backends"], 1, rounds, int(size))
    # radostdb's layout after each load: every record in some shard (the
    # measurements store only over loaded keys: the count stays)
    assert list(sc["radostdb_shards"]) == ["200", "500"]
    for size, sh in sc["radostdb_shards"].items():
        assert sh["split_wait_s"] >= 0
        for when in ("after_load", "measured"):
            s = sh[when]
            assert s["shards"] == 8 and s["smallest"] <= s["largest"] <= int(size), (when, s)
            assert s["largest"] * 8 >= int(size), (when, s)

    # what one process costs (quick: no idle window)
    pc = doc["processes"]
    assert spec["processes"] == 2 and list(pc["kinds"]) == [
        "tdb",
        "rados",
        "radostdb",
        "radostdb-cif",
    ]
    for kind, k in pc["kinds"].items():
        assert k["processes"] == 2 and k["rss_mib"] > 5 and k["threads"] >= 1, (kind, k)
        assert 0 < k["open_ms"] < 60_000 and k["idle_osd_ops_per_s"] is None
    assert pc["kinds"]["rados"]["threads"] > pc["kinds"]["tdb"]["threads"]

    # Samba's hash sizes: the shard count is radostdb's own, the hash size
    # answered back, and a fresh handle's transaction costs a few OSD ops
    # (one lock per shard of 10007 made it thousands before)
    hs = doc["hash_sizes"]
    assert spec["hash_sizes"] == [0, 10007] and list(hs["sizes"]) == ["0", "10007"]
    for size, e in hs["sizes"].items():
        assert e["hash_size"] == (int(size) or 131) and e["shards"] == 8, e
        assert e["rtt_s"] > 0 and all(e["seconds"][s] > 0 for s in e["seconds"]), e
        assert 1 <= e["osd_ops_fresh_txn"] < 100, e

    # nothing left behind in the cluster
    assert namespace_objects(ioctx, spec["namespace"]) == []
    # the tables: every workload and backend, both ratios, nothing truncated
    for word in [
        *WORKLOADS,
        *BACKENDS,
        "radostdb/rados",
        "radostdb/etcd",
        "p50 / p99 / p99.9",
        "RADOS ops per call",
        "contention",
        "nothing is fsynced",
        "etcd's data on tmpfs",
        "per-process cost",
        "Samba's hash sizes",
        "watched records",
        "wake p50 / p99",
    ]:
        assert word in table, word
    assert "…" not in table


def test_clients_list_gives_a_scaling_table(ceph_cluster: ClusterInfo, tmp_path: Path) -> None:
    backends = ["radostdb", "rados", "etcd", "lmdb"]
    doc, table = run_bench(
        tmp_path,
        "--clients",
        "2,1",
        "--contention",
        "0",
        "--watch-seconds",
        "0",
        "--workload",
        "store",
        "--workload",
        "delete",
        "--workload",
        "traverse-keys",
        *(a for b in backends for a in ("--backend", b)),
        env=ceph_cluster.child_env(),
    )
    assert doc["spec"]["clients"] == 2 and doc["spec"]["client_counts"] == [1, 2]
    assert doc["backends"] == backends
    assert list(doc["workloads"]) == ["store", "delete", "traverse-keys"]
    for name, entry in doc["workloads"].items():
        check_workload(entry, WORKLOADS[name], backends, 2, ROUNDS)
    cs = doc["clients_scaling"]
    assert cs["clients"] == [1, 2] and cs["backends"] == [b for b in backends if b in SCALING]
    assert list(cs["workloads"]) == ["store", "fetch"]
    for wname, res in cs["workloads"].items():
        assert list(res) == cs["backends"]
        for name, r in res.items():
            assert set(r) == {"1", "2", "speedup"} and set(r["speedup"]) == {"2"}
            assert math.isclose(r["speedup"]["2"], r["2"]["rate"] / r["1"]["rate"])
            check_summary(r["1"], WORKLOADS[wname], name, 1, ROUNDS)
            check_summary(r["2"], WORKLOADS[wname], name, 2, ROUNDS)
    assert doc["contention"] is None and doc["watch"] is None
    assert (
        "per-client rates" in table
        and "watched records" not in table
        and "scaling with clients 1, 2" in table
    )


def test_plot_writes_a_png(ceph_cluster: ClusterInfo, tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    doc, _ = run_bench(
        tmp_path,
        "--plot",
        str(png),
        "--contention",
        "1,2",
        "--contention-seconds",
        "0.3",
        "--workload",
        "store",
        "--workload",
        "lock-unlock",
        "--workload",
        "txn-10",
        env=ceph_cluster.child_env(),
    )
    assert set(doc["workloads"]) == {"store", "lock-unlock", "txn-10"}
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    """An etcd of our own (default limits but for the ones the bench reads)."""
    server = EtcdServer().start()
    try:
        yield server
    finally:
        server.stop()
    assert etcd_gone(server.pid)


def test_existing_etcd_is_used_cleaned_and_left_running(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    doc, table = run_bench(
        tmp_path,
        "--backend",
        "etcd",
        "--etcd",
        etcd_server.url,
        "--etcd-max-txn-ops",
        "128",
        "--workload",
        "store",
        "--workload",
        "txn-100",
        "--workload",
        "txn-1000",
    )
    assert doc["etcd"]["url"] == etcd_server.url and not doc["etcd"]["throwaway"]
    assert doc["spec"]["etcd_max_txn_ops"] == 128
    assert doc["osd_ops"] is None and doc["contention"] is None  # no cluster backend
    assert doc["watch"] is None
    works = doc["workloads"]
    check_workload(works["store"], WORKLOADS["store"], ["etcd"], 1, ROUNDS)
    check_summary(works["txn-100"]["backends"]["etcd"], WORKLOADS["txn-100"], "etcd", 1, ROUNDS)
    assert "--max-txn-ops" in works["txn-1000"]["backends"]["etcd"]["n/a"]
    assert "as configured at" in table
    assert etcd_server.running()  # not ours to stop
    c = etcd_client(etcd_server.url)
    try:
        assert list(c.get_prefix(f"/{doc['spec']['namespace']}/")) == []
    finally:
        c.close()
