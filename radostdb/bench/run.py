"""A run: load the databases, measure every workload in interleaved rounds,
then the optional parts (1 vs N clients, OSD ops per call, contention,
per-op cost as the database grows).

measurement design:
- Interleaved rounds: each workload runs in ``--rounds`` rounds; in every
  round each backend runs its share of the calls, in an order rotated from
  round to round. On a noisy machine (2 cores shared with the OSD and etcd)
  a ratio of one round compares figures taken seconds apart; the reported
  ratios (radostdb/rados, the floor; radostdb/etcd, the peer) are the
  median over rounds (with min-max), the reported rate is total units /
  total time.
- A backend's share of a round is --ops / --rounds calls, scaled by
  OPS_FACTOR: local engines run 10x (chunks of microsecond calls long
  enough to time), etcd half, SQLite on RADOS a tenth (a few hundred calls
  a second).
- The growing-database run (``scale``) measures radostdb, rados and the
  local engines. It records radostdb's shards when each load ended (how
  far its background split kept up with a saturating loader), then waits
  for that split and measures the size in its steady state.
- Same data for every backend (see ``workloads``); untimed set-up is done
  by the parent before each timed chunk.
- ``--clients N`` (or a list, the largest for the main table) runs the
  workloads on N worker processes (see ``runner``). Aggregate rate = all
  units / (last end - first start) per round; per-client rates and pooled
  latency percentiles are reported too. With a list of counts, store and
  fetch are measured interleaved at each count for radostdb, rados and etcd.
- A workload a backend cannot express is reported as ``{"n/a": reason}``.
- ``--hash-sizes``: what a fresh handle costs on databases created with
  Samba's hash sizes (hashsizes.py).
- ``--processes N``: what one process costs (memory, threads, open time,
  the OSD ops of an idle process), N processes of each kind (processes.py).
- ``--watch-seconds S``: how soon a watcher learns of a change, radostdb's
  watch next to raw librados watch/notify and etcd's watch (watching.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from .contention import contention
from .hashsizes import hash_sizes
from .opcount import count_ops
from .processes import process_cost
from .progress import Reporter
from .runner import Runner
from .spec import LOAD_CHUNK, SCALE_WORKLOADS, SCALED, SCALING, Place, Spec
from .stats import ratio, summarize
from .watching import KINDS as WATCH_KINDS
from .watching import watch
from .workloads import WORKLOADS, Workload


def load(
    runner: Runner, backends: list[str], db: str, spec: Spec, start: int, stop: int, rep: Reporter
) -> None:
    """Fill records start..stop of a database on every backend (untimed)."""
    rep.phase(f"loading records {start}-{stop} of {db}", len(backends) * (stop - start))
    for i in range(start, stop, LOAD_CHUNK):
        pairs = spec.records_range(i, min(stop, i + LOAD_CHUNK))
        for name in backends:
            rep.step(f"loading {db}: {name} {i + len(pairs)}/{stop}")
            runner.handles[(name, db)].load(pairs)
            rep.advance(len(pairs))


def measure(
    runner: Runner,
    backends: list[str],
    db: str,
    w: Workload,
    spec: Spec,
    rep: Reporter,
    records: int | None = None,
    configs: list[int] | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Run a workload in interleaved rounds; per backend (and client count in
    ``configs``) the summary, or why the backend cannot run it."""
    records = records or spec.records
    configs = configs or [runner.clients]
    out: dict[str, Any] = {name: None for name in backends}  # in the order given
    runs = []
    for name in backends:
        why = runner.handles[(name, db)].unsupported(w, spec)
        if why:
            out[name] = {"n/a": why}
        else:
            runs += [(name, k) for k in configs]
    chunks: dict[tuple[str, int], list[list[Any]]] = {r: [] for r in runs}
    rep.phase(f"{label}{w.name}: {spec.rounds} rounds x {len(runs)} runs", spec.rounds * len(runs))
    for rnd in range(spec.rounds):
        shift = rnd % max(1, len(runs))
        for name, k in runs[shift:] + runs[:shift]:
            rep.step(
                f"{label}{w.name}: {name}"
                + (f" x{k}" if k > 1 else "")
                + f", round {rnd + 1}/{spec.rounds}"
            )
            n = spec.calls_per_round(w.size, w.walk, name)
            chunks[(name, k)].append(runner.run(name, db, w, rnd, n, k, records))
            rep.advance()
    for (name, k), rounds in chunks.items():
        s = summarize(rounds)
        if len(configs) == 1:
            out[name] = s
        else:
            out[name] = {**(out[name] or {}), str(k): s}
    return out


def workload_entry(w: Workload, by_backend: dict[str, Any]) -> dict[str, Any]:
    ours = by_backend.get("radostdb")
    return {
        "unit": w.unit,
        "description": w.help,
        "records_per_op": w.size,
        "backends": by_backend,
        "ratio": ratio(ours, by_backend.get("rados")),
        "ratio_etcd": ratio(ours, by_backend.get("etcd")),
    }


def clients_scaling(
    runner: Runner, backends: list[str], counts: list[int], spec: Spec, rep: Reporter
) -> dict[str, Any]:
    """store and fetch at each client count, interleaved; speed-up vs 1."""
    chosen = [b for b in backends if b in SCALING]
    out: dict[str, Any] = {"clients": counts, "backends": chosen, "workloads": {}}
    for wname in ("store", "fetch"):
        res = measure(
            runner,
            chosen,
            "main",
            WORKLOADS[wname],
            spec,
            rep,
            configs=counts,
            label=f"clients {','.join(map(str, counts))}: ",
        )
        for r in res.values():
            if "n/a" in r:
                continue
            one = r.get("1", {}).get("rate", 0)
            r["speedup"] = {str(k): r[str(k)]["rate"] / one for k in counts if one > 0 and k > 1}
        out["workloads"][wname] = res
    return out


def bench(
    place: Place,
    spec: Spec,
    backends: list[str],
    workloads: list[str],
    counts: list[int],
    scale_sizes: list[int],
    contend: tuple[list[int], float],
    rep: Reporter,
    processes: int = 0,
    idle: bool = True,
    hashes: list[int] | None = None,
    watch_seconds: float = 0.0,
) -> dict[str, Any]:
    """Every measurement of a run, as the JSON document's figures."""
    clients = max(counts)
    doc: dict[str, Any] = {
        "workloads": {},
        "clients_scaling": None,
        "osd_ops": None,
        "contention": None,
        "watch": None,
        "scale": None,
        "processes": None,
        "hash_sizes": None,
    }
    runner = Runner(place, spec, clients)
    try:
        for name in backends:
            runner.open(name, "main", spec.records)
        load(runner, backends, "main", spec, 0, spec.records, rep)
        for name in backends:
            runner.share(name, "main", spec.records)
        for wname in workloads:
            w = WORKLOADS[wname]
            doc["workloads"][wname] = workload_entry(
                w, measure(runner, backends, "main", w, spec, rep)
            )
        if len(counts) > 1 and any(b in SCALING for b in backends):
            doc["clients_scaling"] = clients_scaling(runner, backends, counts, spec, rep)
        if place.conf and any(b in ("radostdb", "rados", "cephsqlite") for b in backends):
            doc["osd_ops"] = count_ops(runner, backends, workloads, "main", rep)
        if contend[0] and place.conf and "radostdb" in backends:
            doc["contention"] = contention(place, *contend, "etcd" in backends, rep)
        if watch_seconds and place.conf and "radostdb" in backends:
            kinds = [k for k in WATCH_KINDS if k in backends]
            doc["watch"] = watch(place, kinds, watch_seconds, rep)
        scaled = [b for b in backends if b in SCALED]
        if scale_sizes and scaled:
            doc["scale"] = scale(runner, scaled, spec, scale_sizes, rep)
        if hashes and place.conf and "radostdb" in backends:
            doc["hash_sizes"] = hash_sizes(place, hashes, rep)
        if processes and any(b in ("radostdb", "rados") for b in backends):
            doc["processes"] = process_cost(place, processes, rep, idle)
    finally:
        runner.close()
    return doc


def scale(
    runner: Runner, backends: list[str], spec: Spec, sizes: list[int], rep: Reporter
) -> dict[str, Any]:
    """Per-op cost as the database grows: load to each size, measure there
    (one client; radostdb, rados and the local engines)."""
    for name in backends:
        runner.open(name, "scale", max(sizes))
    out: dict[str, Any] = {
        "sizes": sizes,
        "backends": backends,
        "workloads": list(SCALE_WORKLOADS),
        "results": {},
    }
    loaded = 0
    shapes: dict[str, Any] = {}
    rdb = runner.handles.get(("radostdb", "scale"))
    for size in sizes:
        load(runner, backends, "scale", spec, loaded, size, rep)
        loaded = size
        if rdb is not None:
            # did the background split keep up with the load? Then the
            # per-op cost is measured once it is done (steady state)
            after_load = rdb.shape()
            t0 = time.monotonic()
            rdb.settle()
            waited = time.monotonic() - t0
            shapes[str(size)] = {
                "after_load": after_load,
                "split_wait_s": round(waited, 3),
                "measured": rdb.shape(),
            }
        res = {}
        for wname in SCALE_WORKLOADS:
            w = WORKLOADS[wname]
            wspec = spec
            if w.walk:  # reads the whole database: fewer rounds
                wspec = Spec(**{**asdict(spec), "rounds": min(spec.rounds, 3)})
            r = measure(
                runner,
                backends,
                "scale",
                w,
                wspec,
                rep,
                records=size,
                configs=[1],
                label=f"{size} records: ",
            )
            res[wname] = workload_entry(w, r)
        out["results"][str(size)] = res
    if shapes:
        out["radostdb_shards"] = shapes
    return out
