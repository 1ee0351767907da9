"""The report: rich tables of a run's JSON document (the document is the
record; the tables only show it)."""

from __future__ import annotations

import statistics
from typing import Any

from rich.table import Table

from .spec import CEPH, PEERS

LATENCY_BACKENDS = (*CEPH, *PEERS)


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def fmt_us(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def fmt_ratio(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    return "n/a" if "n/a" in entry else fmt_rate(entry["rate"])


def _lat(entry: dict[str, Any] | None) -> str:
    p = (entry or {}).get("latency_us")
    return f"{fmt_us(p['p50'])} / {fmt_us(p['p99'])} / {fmt_us(p['p99.9'])}" if p else "-"


def durability(doc: dict[str, Any]) -> str:
    """What each backend's writes reach, for the table's footer."""
    env, backends = doc["environment"], doc["backends"]
    parts = []
    if any(b in backends for b in ("radostdb", "rados", "cephsqlite")):
        store = env.get("objectstore")
        parts.append(
            "OSDs on memstore (RAM)"
            if store == "memstore"
            else f"OSDs on {store or '?'} (on disk, synced by the OSD)"
        )
        if env.get("daemon_allocator"):
            parts[-1] += f" with {env['daemon_allocator']} malloc"
    etcd = doc.get("etcd") or {}
    if "etcd" in backends:
        parts.append(
            "etcd's data on tmpfs"
            if etcd.get("tmpfs")
            else f"etcd as configured at {etcd.get('url', '?')}"
        )
    if "tdb" in backends:
        parts.append("tdb NOSYNC")
    if any(b in backends for b in ("lmdb", "lmdb-batch")):
        parts.append("LMDB sync off")
    on_disk = any("on disk" in p or "configured" in p for p in parts)
    head = "durability: " if on_disk else "nothing is fsynced to a disk: "
    return head + ", ".join(parts)


def main_table(doc: dict[str, Any]) -> Table:
    spec, env, backends = doc["spec"], doc["environment"], doc["backends"]
    clients = spec["clients"]
    title = (
        f"radostdb-bench: {spec['records']} records, {spec['key_size']} B keys, "
        f"{spec['value_size']} B values, {clients} client(s), {spec['rounds']} interleaved "
        f"rounds; {env.get('osds', '?')} {env.get('objectstore') or ''} OSD(s), "
        f"{(env.get('ceph_version') or 'Ceph ?').split(' (')[0]}, {env.get('cpus')} CPUs"
    )
    t = Table(
        title=title,
        caption="rates: total ops (records for traverse/txn) / total time"
        + (" (aggregate of all clients)" if clients > 1 else "")
        + "; ratios: median of per-round ratios (min-max); n/a: the backend cannot "
        "express it (reasons in --json)\n" + durability(doc),
    )
    t.add_column("workload")
    t.add_column("unit")
    for b in backends:
        t.add_column(f"{b} /s", justify="right")
    t.add_column("radostdb/rados", justify="right")
    t.add_column("radostdb/etcd", justify="right")
    for wname, e in doc["workloads"].items():
        bb = e["backends"]
        t.add_row(
            wname,
            e["unit"],
            *(_cell(bb.get(b)) for b in backends),
            fmt_ratio(e["ratio"]),
            fmt_ratio(e.get("ratio_etcd")),
        )
    return t


def latency_table(doc: dict[str, Any]) -> Table | None:
    shown = [b for b in LATENCY_BACKENDS if b in doc["backends"]]
    if not shown:
        return None
    t = Table(title="latency per call, p50 / p99 / p99.9 µs")
    t.add_column("workload")
    for b in shown:
        t.add_column(b, justify="right")
    for wname, e in doc["workloads"].items():
        t.add_row(wname, *(_lat(e["backends"].get(b)) for b in shown))
    return t


def per_client_table(doc: dict[str, Any]) -> Table:
    clients, backends = doc["spec"]["clients"], doc["backends"]
    t = Table(title=f"per-client rates, {clients} clients (min / median / max ops/s)")
    t.add_column("workload")
    for b in backends:
        t.add_column(b, justify="right")
    for wname, e in doc["workloads"].items():
        row = [wname]
        for b in backends:
            pc = (e["backends"].get(b) or {}).get("per_client")
            row.append(
                " / ".join(fmt_rate(x) for x in (min(pc), statistics.median(pc), max(pc)))
                if pc
                else "n/a"
            )
        t.add_row(*row)
    return t


def scaling_table(cs: dict[str, Any]) -> Table:
    counts = cs["clients"]
    t = Table(
        title=f"scaling with clients {', '.join(map(str, counts))} (interleaved): "
        "aggregate / per-client ops/s",
        caption=f"speed-up: aggregate at {counts[-1]} clients / at 1",
    )
    t.add_column("workload")
    t.add_column("backend")
    for k in counts:
        t.add_column(f"{k} client{'s' if k > 1 else ''}", justify="right")
    t.add_column("speed-up", justify="right")
    for wname, res in cs["workloads"].items():
        for b, r in res.items():
            if "n/a" in r:
                t.add_row(wname, b, *(["n/a"] * len(counts)), "-")
                continue
            cells = []
            for k in counts:
                s = r[str(k)]
                cells.append(
                    f"{fmt_rate(s['rate'])} / {fmt_rate(statistics.fmean(s['per_client']))}"
                )
            sp = r.get("speedup", {}).get(str(counts[-1]))
            t.add_row(wname, b, *cells, f"{sp:.2f}x" if sp else "-")
    return t


def ops_table(oc: dict[str, Any]) -> Table:
    first = next(iter(oc["workloads"].values()), {})
    shown = list(first)
    t = Table(
        title="RADOS ops per call, counted on the OSDs (per transaction for txn-N, "
        "per whole traversal for traverse-*)",
        caption=f"method: {oc['method']}; background while idle: "
        f"{oc['background_ops_per_s']:.1f} ops/s",
    )
    t.add_column("workload")
    for b in shown:
        t.add_column(b, justify="right")
    for wname, res in oc["workloads"].items():
        row = [wname]
        for b in shown:
            r = res.get(b) or {}
            row.append("n/a" if "n/a" in r else f"{r['per_call']:.2f}" if r else "-")
        t.add_row(*row)
    return t


def _single_lsu(doc: dict[str, Any], backend: str) -> float | None:
    """The run's lock-store-unlock rate of one client of ``backend``."""
    if doc["spec"]["clients"] != 1:
        return None
    e = doc["workloads"].get("lock-store-unlock", {}).get("backends", {}).get(backend)
    return e["rate"] if e and e.get("rate") else None


def contention_table(doc: dict[str, Any]) -> Table:
    ct = doc["contention"]
    counts = ct.get("client_counts") or [ct["clients"]]
    by = ct.get("by_clients") or {str(ct["clients"]): ct["scenarios"]}
    t = Table(
        title=f"contention: {','.join(map(str, counts))} clients, {ct['seconds']:g} s per scenario",
        caption="x1: rate / the single-client lock-store-unlock rate of the same backend in "
        "this run; x etcd: radostdb / etcd one-key at the same count; wait: time to get the "
        "lock (chainlock, do_locked until its function runs, transaction_start, etcd "
        "Lock.acquire); handoff: release sent -> "
        "next holder's grant seen; ops/op: OSD ops per operation (osd.op); fairness: "
        "min/mean of per-client counts; check: lost updates (one key), audits that saw a "
        "wrong sum (transactions)",
    )
    cols = (
        "clients",
        "scenario",
        "ops/s",
        "x1",
        "x etcd",
        "fairness",
        "wait p50/p99 µs",
        "handoff p50/p99 µs",
        "ops/op",
        "per-client counts",
        "check",
    )
    for col in cols:
        left = col in ("scenario", "check", "per-client counts")
        t.add_column(col, justify="left" if left else "right")
    for n in counts:
        runs = by.get(str(n), {})
        etcd = runs.get("etcd-one-key", {})
        for name, s in runs.items():
            if "error" in s:
                t.add_row(str(n), name, *["-"] * 8, f"error: {s['error'].splitlines()[-1][:80]}")
                continue
            w = s.get("wait_us") or {}
            h = s.get("handoff_us") or {}
            if "lost_updates" in s:
                check = f"{s['lost_updates']} lost updates"
            else:
                a = s["audit"]
                total = "ok" if s["sum_ok"] else "WRONG"
                check = f"{a['bad_audits']} bad of {a['count']} audits, sum {total}"
            single = _single_lsu(doc, "etcd" if name.startswith("etcd") else "radostdb")
            x1 = f"{s['rate'] / single:.2f}" if single and name != "transactions" else "-"
            xe = (
                f"{s['rate'] / etcd['rate']:.2f}"
                if name.startswith("one-key") and etcd.get("rate")
                else "-"
            )
            ops = s.get("osd_ops_per_op")
            t.add_row(
                str(n),
                name,
                fmt_rate(s["rate"]),
                x1,
                xe,
                f"{s['fairness_min_mean']:.2f}",
                f"{fmt_us(w['p50'])} / {fmt_us(w['p99'])}" if w else "-",
                f"{fmt_us(h['p50'])} / {fmt_us(h['p99'])}" if h else "-",
                f"{ops:.1f}" if ops is not None else "-",
                " ".join(str(c) for c in s["counts"]),
                check,
            )
    return t


def _p50_p99(p: dict[str, float] | None) -> str:
    return f"{fmt_us(p['p50'])} / {fmt_us(p['p99'])}" if p else "-"


def _ratios(r: dict[str, float] | None) -> str:
    return f"{r['p50']:.2f} / {r['p99']:.2f}" if r else "-"


def watch_table(wt: dict[str, Any]) -> Table:
    """Watched records: store -> watcher woken, per backend (watching.py)."""
    t = Table(
        title=f"watched records: a store wakes a watcher in another process, "
        f"{wt['seconds']:g} s per backend in {wt['windows']} interleaved windows",
        caption="wake: store sent -> the watcher's wait returned (radostdb: Watch.wait; "
        "rados: io.watch callback, then the waiting thread; etcd: add_watch_callback, then "
        "the waiting thread); callback: store sent -> the library's callback ran; from "
        "notify: aio_notify sent (after set_omap returned) -> woken; x rados, x etcd: "
        "radostdb's wake latency / theirs, p50 / p99; store: the writer's call, watched "
        "(a watcher armed) and unwatched (a key on the same object nobody watches; etcd: "
        "another key); OSD "
        "ops/change: osd.op per watched change (its store, notify, the watcher's ack and, "
        "radostdb, its re-arm) less one unwatched store; spurious: waits that returned "
        "before the store was sent",
    )
    cols = (
        "backend",
        "changes",
        "wake p50 / p99 µs",
        "mean µs",
        "x rados",
        "x etcd",
        "callback p50 / p99 µs",
        "from notify p50 / p99 µs",
        "store watched p50 / p99 µs",
        "store unwatched p50 / p99 µs",
        "OSD ops/change",
        "spurious",
    )
    for col in cols:
        t.add_column(col, justify="left" if col == "backend" else "right")
    for kind, r in wt["kinds"].items():
        if r.get("error"):
            t.add_row(kind, *["-"] * (len(cols) - 2), f"error: {r['error'].splitlines()[-1][:80]}")
            continue
        ours = kind == "radostdb"
        ops = r.get("osd_ops_per_change")
        t.add_row(
            kind,
            str(r["rounds"]),
            _p50_p99(r["wake_us"]),
            fmt_us(r["wake_us"]["mean"]) if r["wake_us"] else "-",
            _ratios(wt.get("ratio_rados")) if ours else "",
            _ratios(wt.get("ratio_etcd")) if ours else "",
            _p50_p99(r["callback_us"]),
            _p50_p99(r["notify_us"]),
            _p50_p99(r["store_watched_us"]),
            _p50_p99(r["store_unwatched_us"]),
            f"{ops:.1f}" if ops is not None else "-",
            str(r["spurious"]),
        )
    return t


def scale_table(sc: dict[str, Any], backends: list[str]) -> Table:
    t = Table(
        title="per-operation cost as the database grows (µs per op; per record for "
        "traverse; 1 client)"
    )
    t.add_column("records", justify="right")
    t.add_column("workload")
    for b in backends:
        t.add_column(b, justify="right")
    t.add_column("radostdb/rados", justify="right")
    for size, res in sc["results"].items():
        for wname, e in res.items():
            row = [f"{int(size):,}", wname]
            for b in backends:
                r = e["backends"].get(b)
                row.append(fmt_us(1e6 / r["rate"]) if r and r.get("rate") else "n/a" if r else "-")
            t.add_row(*row, fmt_ratio(e["ratio"]))
    shapes = sc.get("radostdb_shards")
    if shapes:
        t.caption = (
            "radostdb shards (largest shard's records) when each load ended, then when "
            "its background split was done and the size was measured: "
            + "; ".join(
                f"{int(size):,}: {s['after_load']['shards']} ({s['after_load']['largest']:,})"
                f", {s['measured']['shards']} ({s['measured']['largest']:,})"
                f" {s['split_wait_s']:.1f} s later"
                for size, s in shapes.items()
            )
        )
    return t


def process_table(pc: dict[str, Any]) -> Table:
    """What one process costs, per kind (processes.py)."""
    n = next(iter(pc["kinds"].values()))["processes"] if pc["kinds"] else 0
    t = Table(
        title=f"per-process cost: {n} processes of each kind, "
        f"radostdb with {pc['databases']} databases open"
    )
    for col in (
        "kind",
        "open ms",
        "RSS MiB",
        "threads",
        "RSS MiB idle",
        "threads idle",
        "idle OSD ops/s",
    ):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for kind, k in pc["kinds"].items():
        idle = k["idle_osd_ops_per_s"]
        t.add_row(
            kind,
            f"{k['open_ms']:.1f}",
            f"{k['rss_mib']:.1f}",
            f"{k['threads']:.0f}",
            f"{k['rss_mib_idle']:.1f}",
            f"{k['threads_idle']:.0f}",
            "-" if idle is None else f"{idle:.2f}",
        )
    t.caption = (
        f"medians per process; idle OSD ops: osd.op over {pc['idle_window_s']:g} s "
        f"with all idle, after {pc['settle_s']:g} s, per process; tdb: no cluster; "
        "rados: a bare python-rados client (what librados costs by itself)"
    )
    return t


def hash_size_table(hs: dict[str, Any]) -> Table:
    """Fresh handles on databases of Samba's hash sizes (hashsizes.py)."""
    t = Table(
        title=f"Samba's hash sizes: a fresh handle on {hs['records']} records "
        f"(ms, and in round trips)"
    )
    for col in (
        "hash_size",
        "shards",
        "open",
        "first txn",
        "cached txn",
        "traverse",
        "close",
        "OSD ops",
        "rtt µs",
    ):
        t.add_column(col, justify="right")
    for _, e in hs["sizes"].items():
        cells = [
            f"{e['seconds'][s] * 1e3:.1f} ({e['rtts'][s]:.0f})"
            for s in ("open", "first_txn", "cached_txn", "traverse", "close")
        ]
        t.add_row(
            str(e["hash_size"]),
            str(e["shards"]),
            *cells,
            str(e["osd_ops_fresh_txn"]),
            f"{e['rtt_s'] * 1e6:.0f}",
        )
    t.caption = (
        f"medians of {hs['rounds']} fresh handles; txn: start, {hs['txn_records']} stores, "
        "commit; (N): N raw python-rados omap reads of the same run; OSD ops: open, "
        "first txn and close of one fresh handle"
    )
    return t


def tables(doc: dict[str, Any]) -> list[Table]:
    """The rich tables of a run's document, in reading order."""
    out = [main_table(doc)]
    lat = latency_table(doc)
    if lat is not None:
        out.append(lat)
    if doc["spec"]["clients"] > 1:
        out.append(per_client_table(doc))
    if doc.get("clients_scaling"):
        out.append(scaling_table(doc["clients_scaling"]))
    if doc.get("osd_ops"):
        out.append(ops_table(doc["osd_ops"]))
    if doc.get("contention"):
        out.append(contention_table(doc))
    if doc.get("watch"):
        out.append(watch_table(doc["watch"]))
    if doc.get("scale"):
        out.append(scale_table(doc["scale"], doc["scale"]["backends"]))
    if doc.get("hash_sizes"):
        out.append(hash_size_table(doc["hash_sizes"]))
    if doc.get("processes"):
        out.append(process_table(doc["processes"]))
    return out
