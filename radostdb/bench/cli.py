"""The ``radostdb-bench`` command: options, set-up and tear-down of the
services a run needs, the report."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from typing import Any

import click

from ..devcluster import ALLOCATORS
from .spec import (
    BACKENDS,
    LMDB_BATCH,
    MIX,
    ON_CLUSTER,
    OPS_FACTOR,
    SCALE_SIZES,
    SCALED,
    SHARDS,
    Place,
    Spec,
)
from .workloads import WORKLOADS

SCHEMA = 2


def hash_sizes_for(quick: bool, given: str | None) -> list[int]:
    """The hash sizes of the hash-size run: given ("0,10007"; "none": no
    run), or hashsizes.HASH_SIZES (0 and 10007 with --quick)."""
    from .hashsizes import HASH_SIZES

    if given is None:
        return [0, 10007] if quick else list(HASH_SIZES)
    if given.strip().lower() == "none":
        return []
    try:
        sizes = [int(x) for x in given.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{given!r} is not a list of numbers", param_hint="--hash-sizes"
        ) from None
    if not sizes or any(not 0 <= s <= 65536 for s in sizes):
        raise click.BadParameter(
            f"{given!r}: hash sizes are 0 (tdb's default) to 65536", param_hint="--hash-sizes"
        )
    return sizes


def scale_sizes_for(records: int, given: str | None) -> list[int]:
    """Database sizes of the scale run: given ("10000,100000"), or 10k, 100k and
    --records when larger."""
    if given:
        try:
            sizes = sorted({int(s.replace("_", "")) for s in given.split(",") if s.strip()})
        except ValueError:
            raise click.BadParameter(
                f"{given!r} is not a list of numbers", param_hint="--scale-sizes"
            ) from None
        if not sizes or sizes[0] < 1:
            raise click.BadParameter(
                f"{given!r}: sizes must be positive", param_hint="--scale-sizes"
            )
        return sizes
    sizes = [s for s in SCALE_SIZES if s <= max(records, 100_000)]
    if records > sizes[-1]:
        sizes.append(records)
    return sizes


def _counts(given: str, option: str, allow_none: bool = False) -> list[int]:
    """A comma-separated list of process counts, 1 to 64, sorted, distinct
    ([] for "0" when ``allow_none``)."""
    try:
        counts = sorted({int(s) for s in given.split(",") if s.strip()})
    except ValueError:
        raise click.BadParameter(f"{given!r} is not a list of numbers", param_hint=option) from None
    if allow_none and counts == [0]:
        return []
    if not counts or counts[0] < 1 or counts[-1] > 64:
        none = " (or 0: none)" if allow_none else ""
        raise click.BadParameter(f"{given!r}: counts must be 1 to 64{none}", param_hint=option)
    return counts


def client_counts(given: str) -> list[int]:
    """--clients: "4" (1 vs 4 when above 1) or "1,2,4"; always with 1."""
    return sorted({1, *_counts(given, "--clients")})


def contention_counts(given: str | None, quick: bool) -> list[int]:
    """--contention: "2,4,8,16" (the default; "4" with --quick), "0": none."""
    if given is None:
        given = "4" if quick else "2,4,8,16"
    return _counts(given, "--contention", allow_none=True)


def watch_seconds_for(given: float | None, quick: bool) -> float:
    """--watch-seconds: seconds per backend of the watch scenario (default 5;
    1 with --quick; 0: none)."""
    if given is None:
        return 1.0 if quick else 5.0
    return given


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--conf",
    envvar="CEPH_CONF",
    type=click.Path(exists=True, dir_okay=False),
    help="ceph.conf of the cluster (default: "
    "CEPH_CONF, /etc/ceph/ceph.conf, else a throwaway local cluster).",
)
@click.option("--pool", envvar="RADOSTDB_POOL", default="radostdb", show_default=True)
@click.option(
    "--id",
    "client_id",
    envvar="RADOSTDB_ID",
    default="admin",
    show_default=True,
    help="cephx client id.",
)
@click.option(
    "--osds",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="OSDs of the throwaway cluster (pool size min(3, N)).",
)
@click.option(
    "--store",
    type=click.Choice(["memstore", "bluestore"]),
    default="memstore",
    show_default=True,
    help="Object store of the throwaway cluster's OSDs.",
)
@click.option(
    "--allocator",
    type=click.Choice(ALLOCATORS),
    default="auto",
    show_default=True,
    help="malloc of the throwaway cluster's daemons: tcmalloc (preloaded; Ceph's own builds "
    "link it), libc (as Debian's ceph-osd is built), auto: tcmalloc when installed.",
)
@click.option(
    "--etcd",
    "etcd_url",
    metavar="URL",
    help="An etcd to use (http://HOST:PORT; default: a throwaway single node on tmpfs).",
)
@click.option(
    "--etcd-max-txn-ops",
    default=128,
    show_default=True,
    type=click.IntRange(1),
    help="The --max-txn-ops of the --etcd server (larger transactions are n/a).",
)
@click.option(
    "--records",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    help="Records in the database (shared by all clients).",
)
@click.option(
    "--ops",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    help="Calls per workload, backend and client over all rounds (divided by the "
    "records of txn-N; x10 for local engines, x0.5 etcd, x0.1 cephsqlite).",
)
@click.option(
    "--rounds",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="Interleaved rounds per workload.",
)
@click.option(
    "--key-size",
    default=16,
    show_default=True,
    type=click.IntRange(1, 500),
    help="Key bytes (at least the 9 to 16 bytes of the key's counter).",
)
@click.option(
    "--value-size", default=100, show_default=True, type=click.IntRange(0), help="Value bytes."
)
@click.option(
    "--clients",
    "clients_arg",
    default="1",
    show_default=True,
    metavar="N[,N...]",
    help="Client processes: the main table runs with the largest; with more than "
    "one count (1 is always added), store and fetch are measured at each.",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(BACKENDS),
    help="Backends to run (repeat; default all).",
)
@click.option(
    "--workload",
    "workloads",
    multiple=True,
    type=click.Choice(list(WORKLOADS)),
    help="Workloads to run (repeat; default all).",
)
@click.option(
    "--contention",
    "contention_arg",
    metavar="N[,N...]",
    help="Client counts of the contention scenarios (one key, transactions, etcd's "
    "one key), each run at every count (default 2,4,8,16; 4 with --quick; 0: none). "
    "The table shows the rate next to the single-client lock-store-unlock rate of "
    "the run, OSD ops per operation and the handoff latency.",
)
@click.option(
    "--contention-seconds",
    type=click.FloatRange(0.1),
    help="Seconds per contention scenario (default 2, 1 with --quick).",
)
@click.option(
    "--watch-seconds",
    type=click.FloatRange(0),
    help="Seconds per backend of the watch scenario: a watcher woken by another "
    "process's store, radostdb's watch next to raw librados watch/notify and etcd's "
    "watch; wake latency p50/p99 and the writer's store with and without a watcher "
    "(default 5; 1 with --quick; 0: none).",
)
@click.option(
    "--processes",
    type=click.IntRange(0, 256),
    help="Processes of each kind whose cost is measured: memory, threads, open time, "
    "OSD ops while idle (default 8; 2 with --quick, which skips the 22 s idle window; "
    "0: none).",
)
@click.option(
    "--hash-sizes",
    "hash_sizes_arg",
    metavar="N,N,...|none",
    help="tdb hash sizes whose databases are measured with fresh handles: open, first "
    "and cached transaction, traversal, close, in round trips (default 0,1031,10007,65536; "
    "0,10007 with --quick).",
)
@click.option(
    "--scale/--no-scale",
    default=None,
    help="Measure per-op cost at growing database sizes (default: on, off with --quick).",
)
@click.option(
    "--scale-sizes",
    metavar="N,N,...",
    help="Database sizes for --scale (default 10000,100000 and --records when larger).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A small run: at most 2000 records, 600 ops, 3 rounds, no --scale.",
)
@click.option("--seed", default=42, show_default=True, help="Seed of keys, values and picks.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write every figure and the environment as JSON.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Draw rates, ratios, peers, latencies, ops and contention to a PNG.",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def main(
    conf: str | None,
    pool: str,
    client_id: str,
    osds: int,
    store: str,
    allocator: str,
    etcd_url: str | None,
    etcd_max_txn_ops: int,
    records: int,
    ops: int,
    rounds: int,
    key_size: int,
    value_size: int,
    clients_arg: str,
    backends: tuple[str, ...],
    workloads: tuple[str, ...],
    contention_arg: str | None,
    contention_seconds: float | None,
    watch_seconds: float | None,
    processes: int | None,
    hash_sizes_arg: str | None,
    scale: bool | None,
    scale_sizes: str | None,
    quick: bool,
    seed: int,
    json_path: str | None,
    plot_path: str | None,
    quiet: bool,
) -> None:
    """Measure radostdb next to raw librados (the floor), etcd and SQLite on
    RADOS (the peers), and local TDB and LMDB.

    Every workload runs on every backend in interleaved rounds; the tables
    show rates, the radostdb/rados and radostdb/etcd ratios, latencies,
    RADOS ops per call counted on the OSDs, and N clients contending for
    one lock. With no cluster configured a throwaway one is started (and
    stopped), likewise a single-node etcd unless --etcd is given.

    \b
    Examples:
      radostdb-bench --quick
      radostdb-bench --clients 1,2,4 --osds 3
      radostdb-bench --clients 4 --workload store --workload fetch
      radostdb-bench --value-size 4096 --json out.json --plot out.png
      radostdb-bench --records 1000000 --scale --workload store
      radostdb-bench --workload lock-store-unlock --contention 4,16
      radostdb-bench --workload store --contention 0 --watch-seconds 10
    """
    from rich.console import Console

    from .environment import cluster_for, environment, etcd_environment, etcd_for, store_bytes
    from .progress import Reporter
    from .run import bench

    if quick:
        records, ops, rounds = min(records, 2000), min(ops, 600), min(rounds, 3)
    if scale is None:
        scale = not quick
    seconds = contention_seconds or (1.0 if quick else 2.0)
    watch_seconds = watch_seconds_for(watch_seconds, quick)
    if processes is None:
        processes = 2 if quick else 8
    counts = client_counts(clients_arg)
    hashes = hash_sizes_for(quick, hash_sizes_arg)
    sizes = scale_sizes_for(records, scale_sizes) if scale else []
    chosen_b = [b for b in BACKENDS if b in (backends or BACKENDS)]
    chosen_w = [w for w in WORKLOADS if w in (workloads or WORKLOADS)]
    spec = Spec(
        records=records,
        ops=ops,
        key_size=key_size,
        value_size=value_size,
        rounds=rounds,
        seed=seed,
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=250)  # a pipe or file: never truncate columns
    started = time.time()
    namespace = f"radostdb-bench-{socket.gethostname()}-{os.getpid()}-{int(started)}"
    contend = (contention_counts(contention_arg, quick) if "radostdb" in chosen_b else [], seconds)
    on_cluster = any(b in ON_CLUSTER for b in chosen_b)
    # records the cluster will hold: the main database on each backend there,
    # and the growing one of the scale run on those it measures
    stored = records * sum(b in ON_CLUSTER for b in chosen_b) + max(sizes, default=0) * sum(
        b in ON_CLUSTER and b in SCALED for b in chosen_b
    )
    need_bytes = store_bytes(stored, key_size + value_size)
    with Reporter(quiet) as rep, ExitStack() as stack:
        etcd, server = ("", None)
        if "etcd" in chosen_b:
            try:
                etcd, server = stack.enter_context(etcd_for(etcd_url, rep))
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from exc
        try:
            conf_, dev = (
                stack.enter_context(
                    cluster_for(conf, pool, osds, store, allocator, rep, need_bytes)
                )
                if on_cluster
                else ("", None)
            )
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        if dev is None and (osds, store, allocator) != (1, "memstore", "auto") and on_cluster:
            rep.note("--osds/--store/--allocator apply to a throwaway cluster only: ignored")
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="rtdb-bench-local-"))
        env = environment(conf_, pool, client_id, dev)
        if "error" in env:
            raise click.ClickException(f"cannot reach the cluster of {conf_}: {env['error']}")
        etcd_env = etcd_environment(etcd, server) if etcd else None
        if etcd_env and "error" in etcd_env:
            raise click.ClickException(f"cannot reach etcd at {etcd}: {etcd_env['error']}")
        place = Place(conf_, pool, client_id, namespace, workdir, etcd)
        if server is not None:
            from .etcdserver import MAX_REQUEST_BYTES, MAX_TXN_OPS

            place = replace(
                place, etcd_max_txn_ops=MAX_TXN_OPS, etcd_max_request_bytes=MAX_REQUEST_BYTES
            )
        elif etcd:
            place = replace(place, etcd_max_txn_ops=etcd_max_txn_ops)
        try:
            figures = bench(
                place,
                spec,
                chosen_b,
                chosen_w,
                counts,
                sizes,
                contend,
                rep,
                processes,
                idle=not quick,
                hashes=hashes,
                watch_seconds=watch_seconds,
            )
        except Exception as exc:  # a cluster, etcd, SQLite or database failure
            if isinstance(exc, click.ClickException):
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
        finally:
            cleanup(place, on_cluster, rep)
    doc = {
        "tool": "radostdb-bench",
        "schema": SCHEMA,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "environment": env,
        "etcd": etcd_env,
        "spec": {
            **asdict(spec),
            "clients": max(counts),
            "client_counts": counts,
            "shards": SHARDS,
            "lmdb_batch": LMDB_BATCH,
            "ops_factor": OPS_FACTOR,
            "scale_sizes": sizes,
            "namespace": namespace,
            "mixed": {"fetch": MIX[0], "store": MIX[1], "locked_update": 1 - sum(MIX)},
            "etcd_max_txn_ops": place.etcd_max_txn_ops if etcd else None,
            "cephsqlite": cephsqlite_settings() if "cephsqlite" in chosen_b else None,
            "contention": {"clients": contend[0], "seconds": seconds},  # counts
            "processes": processes,
            "hash_sizes": hashes,
            "watch_seconds": watch_seconds,
        },
        "backends": chosen_b,
        **figures,
    }
    from .report import tables

    for t in tables(doc):
        console.print(t)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=1)
    if plot_path:
        from .plot import plot

        plot(doc, plot_path)


def cephsqlite_settings() -> dict[str, Any]:
    from .backends.cephsqlite import BUSY_TIMEOUT, PAGE_SIZE, PRAGMAS

    return {
        "pragmas": [*PRAGMAS, f"PRAGMA page_size = {PAGE_SIZE}"],
        "busy_timeout_s": BUSY_TIMEOUT,
        "sqlite": sqlite3.sqlite_version,
    }


def cleanup(place: Place, on_cluster: bool, rep: Any) -> None:
    """Remove what the run wrote: the namespace, etcd's keys. Never raises:
    the figures matter more; say what is left behind."""
    from .environment import remove_namespace

    if on_cluster and place.conf:
        try:
            remove_namespace(place.conf, place.client_id, place.pool, place.namespace)
        except Exception as exc:
            rep.note(
                f"could not remove namespace {place.namespace!r} of pool {place.pool!r}: {exc}"
            )
    if place.etcd:
        from .backends.etcd import remove_prefix

        try:
            remove_prefix(place)
        except Exception as exc:
            rep.note(f"could not remove etcd keys under /{place.namespace}/: {exc}")
