"""radostdb-bench: radostdb side by side with raw librados, local TDB and LMDB.

Every backend runs the same workloads on the same keys and values in one run:
- ``radostdb``: this project, through its public Tdb API;
- ``rados``: the same omap operations issued directly with python-rados on
  the same number of shard objects (the floor and the reference);
- ``tdb``: a local file through Samba's python3-tdb;
- ``lmdb``: a local LMDB environment (py-lmdb), one write transaction per
  operation (``lmdb``) and, for loading, batched.

Rates are operations (or records) per second; the ratio column is
radostdb / rados measured in the same run, the figure that matters on a
noisy machine. With no cluster configured (no ``--conf``, no ``CEPH_CONF``,
no /etc/ceph/ceph.conf) a throwaway local cluster is started and stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import click

BACKENDS = ("radostdb", "rados", "tdb", "lmdb")
WORKLOADS = (
    "store", "fetch", "fetch-miss", "append", "delete", "traverse-keys", "traverse-items",
    "lock-store-unlock", "txn-1", "txn-10", "txn-100", "txn-1000", "mixed",
)
SHARDS = 8
PAGE = 1000


# -- data ---------------------------------------------------------------------
def make_keys(n: int, key_size: int, seed: int, tag: str = "") -> list[bytes]:
    """n distinct keys of key_size bytes (a counter, padded with random bytes)."""
    rng = random.Random(seed)
    keys = []
    for i in range(n):
        head = f"{tag}{i:09d}".encode()
        pad = bytes(rng.randrange(33, 127) for _ in range(max(0, key_size - len(head))))
        keys.append((head + pad)[: max(key_size, len(head))])
    return keys


def make_value(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


# -- backends -----------------------------------------------------------------
class Backend:
    """One storage system under test. Keys and values are bytes."""

    name = "?"
    has_locks = False
    has_txn = True

    def store(self, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    def fetch(self, key: bytes) -> bytes | None:
        raise NotImplementedError

    def delete(self, key: bytes) -> None:
        raise NotImplementedError

    def append(self, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    def keys(self) -> Iterator[bytes]:
        raise NotImplementedError

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        raise NotImplementedError

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def load(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Bulk load (not measured)."""
        for i in range(0, len(pairs), 1000):
            self.txn(pairs[i: i + 1000])

    def lock_store_unlock(self, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RadostdbBackend(Backend):
    name = "radostdb"

    def __init__(self, dbname: str, conf: str, pool: str, create: bool) -> None:
        import radostdb

        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self.db = radostdb.Tdb(dbname, SHARDS, radostdb.DEFAULT, flags, conf=conf, pool=pool)
        self.has_locks = hasattr(self.db, "chainlock")

    def store(self, key: bytes, value: bytes) -> None:
        self.db.store(key, value)

    def fetch(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def append(self, key: bytes, value: bytes) -> None:
        self.db.append(key, value)

    def keys(self) -> Iterator[bytes]:
        return self.db.keys()

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.db.items()

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.db.transaction_start()
        for k, v in pairs:
            self.db.store(k, v)
        self.db.transaction_commit()

    def lock_store_unlock(self, key: bytes, value: bytes) -> None:
        self.db.chainlock(key)
        self.db.store(key, value)
        self.db.chainunlock(key)

    def close(self) -> None:
        self.db.close()


class RadosBackend(Backend):
    """The same omap operations straight through python-rados: same shard
    objects, same encoded keys, values stored as they are (no record header)."""

    name = "rados"
    has_locks = True

    def __init__(self, objname: str, conf: str, pool: str, create: bool) -> None:
        import rados

        from . import codec

        self.rados = rados
        self.codec = codec
        self.conn = rados.Rados(conffile=conf)
        self.conn.connect(timeout=30)
        self.io = self.conn.open_ioctx(pool)
        self.objs = [f"bench-rados.{objname}.{i}" for i in range(SHARDS)]
        if create:
            for o in self.objs:
                try:
                    self.io.remove_object(o)
                except rados.ObjectNotFound:
                    pass

    def _obj(self, key: bytes) -> str:
        return self.objs[self.codec.shard_of(key, SHARDS)]

    def store(self, key: bytes, value: bytes) -> None:
        with self.rados.WriteOpCtx() as op:
            self.io.set_omap(op, (self.codec.encode_key(key),), (value,))
            self.io.operate_write_op(op, self._obj(key))

    def fetch(self, key: bytes) -> bytes | None:
        with self.rados.ReadOpCtx() as op:
            it, _ = self.io.get_omap_vals_by_keys(op, (self.codec.encode_key(key),))
            self.io.operate_read_op(op, self._obj(key))
            for _, v in it:
                return bytes(v)
        return None

    def delete(self, key: bytes) -> None:
        with self.rados.WriteOpCtx() as op:
            self.io.remove_omap_keys(op, (self.codec.encode_key(key),))
            self.io.operate_write_op(op, self._obj(key))

    def append(self, key: bytes, value: bytes) -> None:
        # the floor of an append: one omap write of the grown value (a raw
        # client cannot append to an omap value without reading it first)
        self.store(key, value)

    def _pages(self, keys_only: bool) -> Iterator[list[tuple[str, Any]]]:
        for obj in self.objs:
            start = ""
            while True:
                with self.rados.ReadOpCtx() as op:
                    if keys_only:
                        it, _ = self.io.get_omap_keys(op, start, PAGE)
                    else:
                        it, _ = self.io.get_omap_vals(op, start, "", PAGE)
                    try:
                        self.io.operate_read_op(op, obj)
                    except self.rados.ObjectNotFound:
                        break
                    page = list(it)
                if page:
                    yield page
                if len(page) < PAGE:
                    break
                start = page[-1][0]

    def keys(self) -> Iterator[bytes]:
        for page in self._pages(True):
            yield from (k.encode() for k, _ in page)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for page in self._pages(False):
            yield from ((k.encode(), v) for k, v in page)

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        by_obj: dict[str, tuple[list[str], list[bytes]]] = {}
        for k, v in pairs:
            ks, vs = by_obj.setdefault(self._obj(k), ([], []))
            ks.append(self.codec.encode_key(k))
            vs.append(v)
        ops, comps = [], []
        for obj, (ks, vs) in by_obj.items():
            op = self.io.create_write_op()
            self.io.set_omap(op, tuple(ks), tuple(vs))
            comps.append(self.io.operate_aio_write_op(op, obj))
            ops.append(op)
        for c in comps:
            c.wait_for_complete()
        for op in ops:
            self.io.release_write_op(op)

    def lock_store_unlock(self, key: bytes, value: bytes) -> None:
        # two raw class calls (cls_lock lock + unlock) around the store
        obj = self._obj(key)
        self.io.lock_exclusive(obj, "bench", "c", duration=30)
        self.store(key, value)
        self.io.unlock(obj, "bench", "c")

    def close(self) -> None:
        self.io.close()
        self.conn.shutdown()


class TdbBackend(Backend):
    name = "tdb"

    def __init__(self, path: str, create: bool) -> None:
        import tdb

        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self.db = tdb.Tdb(path, 10007, tdb.DEFAULT, flags)
        self.has_locks = False  # python3-tdb exposes no chainlock

    def store(self, key: bytes, value: bytes) -> None:
        self.db.store(key, value)

    def fetch(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def append(self, key: bytes, value: bytes) -> None:
        self.db.append(key, value)

    def keys(self) -> Iterator[bytes]:
        return iter(self.db.keys())

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for k in self.db.keys():
            yield k, self.db[k]

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.db.transaction_start()
        for k, v in pairs:
            self.db.store(k, v)
        self.db.transaction_commit()

    def close(self) -> None:
        self.db.close()


class LmdbBackend(Backend):
    """py-lmdb: one write transaction per operation (sync off: like tdb's
    default, no fsync per store)."""

    name = "lmdb"

    def __init__(self, path: str, create: bool) -> None:
        import lmdb

        if create and os.path.exists(path):
            shutil.rmtree(path)
        self.env = lmdb.open(path, map_size=16 << 30, sync=False, metasync=False,
                             writemap=True, max_dbs=0)

    def store(self, key: bytes, value: bytes) -> None:
        with self.env.begin(write=True) as t:
            t.put(key, value)

    def fetch(self, key: bytes) -> bytes | None:
        with self.env.begin() as t:
            return t.get(key)

    def delete(self, key: bytes) -> None:
        with self.env.begin(write=True) as t:
            t.delete(key)

    def append(self, key: bytes, value: bytes) -> None:
        with self.env.begin(write=True) as t:
            t.put(key, (t.get(key) or b"") + value)

    def keys(self) -> Iterator[bytes]:
        with self.env.begin() as t:
            yield from t.cursor().iternext(keys=True, values=False)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        with self.env.begin() as t:
            yield from t.cursor().iternext(keys=True, values=True)

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as t:
            for k, v in pairs:
                t.put(k, v)

    def close(self) -> None:
        self.env.close()


@dataclass
class Place:
    """Where a client's backends live (picklable, for --clients processes)."""

    conf: str
    pool: str
    workdir: str
    tag: str

    def open(self, backend: str, create: bool) -> Backend:
        if backend == "radostdb":
            return RadostdbBackend(f"bench-{self.tag}", self.conf, self.pool, create)
        if backend == "rados":
            return RadosBackend(self.tag, self.conf, self.pool, create)
        if backend == "tdb":
            return TdbBackend(os.path.join(self.workdir, f"{self.tag}.tdb"), create)
        if backend == "lmdb":
            return LmdbBackend(os.path.join(self.workdir, f"{self.tag}.lmdb"), create)
        raise ValueError(backend)


# -- measuring ----------------------------------------------------------------
@dataclass
class Result:
    workload: str
    backend: str
    ops: int
    seconds: float
    per_client: list[float] = field(default_factory=list)
    latencies_us: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def percentiles(self) -> dict[str, float]:
        lat = sorted(self.latencies_us)
        if not lat:
            return {}

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]

        return {"p50": pct(50), "p99": pct(99), "p99.9": pct(99.9),
                "mean": statistics.fmean(lat)}


def timed(fn: Callable[[Any], Any], items: list[Any]) -> tuple[float, list[float]]:
    """Run fn over items; total seconds and per-call latencies in microseconds."""
    lat = []
    clock = time.perf_counter_ns
    start = clock()
    for it in items:
        t0 = clock()
        fn(it)
        lat.append((clock() - t0) / 1000)
    return (clock() - start) / 1e9, lat


@dataclass
class Spec:
    records: int
    key_size: int
    value_size: int
    ops: int
    seed: int = 42


def run_workload(b: Backend, workload: str, spec: Spec, client: int) -> tuple[int, float, list]:
    """Run one workload on a loaded backend: (ops done, seconds, latencies)."""
    keys = make_keys(spec.records, spec.key_size, spec.seed, tag=f"c{client}-")
    value = make_value(spec.value_size, spec.seed)
    rng = random.Random(spec.seed + client)
    sample = [keys[rng.randrange(len(keys))] for _ in range(spec.ops)]
    if workload == "store":
        secs, lat = timed(lambda k: b.store(k, value), sample)
    elif workload == "fetch":
        secs, lat = timed(b.fetch, sample)
    elif workload == "fetch-miss":
        misses = make_keys(spec.ops, spec.key_size, spec.seed + 1, tag=f"miss{client}-")
        secs, lat = timed(b.fetch, misses)
    elif workload == "append":
        akeys = make_keys(spec.ops, spec.key_size, spec.seed, tag=f"app{client}-")
        secs, lat = timed(lambda k: b.append(k, value), akeys)
    elif workload == "delete":
        dkeys = keys[: spec.ops]
        secs, lat = timed(b.delete, dkeys)
        b.load([(k, value) for k in dkeys])
    elif workload in ("traverse-keys", "traverse-items"):
        walk = b.keys if workload == "traverse-keys" else b.items
        t0 = time.perf_counter()
        n = sum(1 for _ in walk())
        return n, time.perf_counter() - t0, []
    elif workload == "lock-store-unlock":
        secs, lat = timed(lambda k: b.lock_store_unlock(k, value), sample)
    elif workload.startswith("txn-"):
        size = int(workload[4:])
        rounds = max(1, min(spec.ops // size, 50) if size > 1 else spec.ops)
        batches = [[(keys[rng.randrange(len(keys))], value) for _ in range(size)]
                   for _ in range(rounds)]
        secs, lat = timed(b.txn, batches)
        return rounds * size, secs, lat
    elif workload == "mixed":
        # Samba-like: 80% fetch, 15% store, 5% locked update (store without locks)
        mix = [(rng.random(), k) for k in sample]

        def step(item: tuple[float, bytes]) -> None:
            r, k = item
            if r < 0.80:
                b.fetch(k)
            elif r < 0.95 or not b.has_locks:
                b.store(k, value)
            else:
                b.lock_store_unlock(k, value)

        secs, lat = timed(step, mix)
    else:
        raise ValueError(workload)
    return len(lat), secs, lat


def prepare(place: Place, backend: str, spec: Spec, client: int) -> Backend:
    b = place.open(backend, create=True)
    keys = make_keys(spec.records, spec.key_size, spec.seed, tag=f"c{client}-")
    value = make_value(spec.value_size, spec.seed)
    b.load([(k, value) for k in keys])
    return b


def _client_main(args: tuple[Place, str, str, Spec, int]) -> tuple[int, float, list]:
    place, backend, workload, spec, client = args
    b = place.open(backend, create=False)
    try:
        return run_workload(b, workload, spec, client)
    finally:
        b.close()


# -- environment ----------------------------------------------------------------
def environment(conf: str, pool: str, dev: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(), "conf": conf, "pool": pool,
        "throwaway_cluster": dev is not None,
    }
    try:
        import rados

        conn = rados.Rados(conffile=conf)
        conn.conf_set("rados_mon_op_timeout", "10")
        conn.connect(timeout=10)
        try:
            ret, out, _ = conn.mon_command(json.dumps({"prefix": "version", "format": "json"}),
                                           b"")
            env["ceph_version"] = json.loads(out).get("version") if ret == 0 else None
            ret, out, _ = conn.mon_command(json.dumps({"prefix": "osd dump", "format": "json"}),
                                           b"")
            if ret == 0:
                osds = json.loads(out)["osds"]
                env["osds"] = len(osds)
                env["osds_up"] = sum(o["up"] for o in osds)
            ret, out, _ = conn.mon_command(json.dumps({"prefix": "osd metadata", "id": 0,
                                                       "format": "json"}), b"")
            if ret == 0:
                env["objectstore"] = json.loads(out).get("osd_objectstore")
        finally:
            conn.shutdown()
    except Exception as exc:  # the environment report must never stop a run
        env["error"] = str(exc)
    return env


@contextmanager
def cluster_for(conf: str | None, pool: str, quiet: bool) -> Iterator[tuple[str, str, Any]]:
    """The configured cluster, or a throwaway one started (and stopped) here."""
    conf = conf or os.environ.get("CEPH_CONF")
    if conf or os.path.exists("/etc/ceph/ceph.conf"):
        yield conf or "/etc/ceph/ceph.conf", pool, None
        return
    from .devcluster import DevCluster

    d = tempfile.mkdtemp(prefix="rtdb-bench-", dir="/tmp")
    dev = DevCluster(d, pool=pool)
    if not quiet:
        print(f"no cluster configured: starting a throwaway one in {d}", file=sys.stderr)
    try:
        dev.up()
        yield str(dev.conf), pool, dev
    finally:
        dev.down()
        shutil.rmtree(d, ignore_errors=True)


# -- report ---------------------------------------------------------------------
def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def table(results: list[Result], backends: list[str], title: str) -> Any:
    from rich.table import Table

    t = Table(title=title)
    t.add_column("workload")
    for b in backends:
        t.add_column(f"{b} /s", justify="right")
    t.add_column("radostdb/rados", justify="right")
    t.add_column("radostdb p50/p99 µs", justify="right")
    by = {(r.workload, r.backend): r for r in results}
    for w in dict.fromkeys(r.workload for r in results):
        row = [w]
        for b in backends:
            r = by.get((w, b))
            row.append(fmt_rate(r.rate) if r else "-")
        ours, raw = by.get((w, "radostdb")), by.get((w, "rados"))
        row.append(f"{ours.rate / raw.rate:.2f}" if ours and raw and raw.rate else "-")
        p = ours.percentiles() if ours else {}
        row.append(f"{p['p50']:.0f} / {p['p99']:.0f}" if p else "-")
        t.add_row(*row)
    return t


def plot(results: list[Result], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r.workload for r in results))
    backends = list(dict.fromkeys(r.backend for r in results))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 10))
    width = 0.8 / max(1, len(backends))
    by = {(r.workload, r.backend): r for r in results}
    for i, b in enumerate(backends):
        xs = [j + i * width for j in range(len(workloads))]
        ys = [by[(w, b)].rate if (w, b) in by else 0 for w in workloads]
        ax1.bar(xs, ys, width, label=b)
    ax1.set_yscale("log")
    ax1.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))], workloads,
                   rotation=30, ha="right")
    ax1.set_ylabel("ops/s (log)")
    ax1.legend()
    ax1.set_title("rate per workload and backend")
    for b in backends:
        lat = sorted(x for r in results if r.backend == b and r.workload in ("store", "fetch")
                     for x in r.latencies_us)
        if lat:
            ax2.plot(lat, [k / len(lat) for k in range(len(lat))], label=b)
    ax2.set_xscale("log")
    ax2.set_xlabel("latency µs (store + fetch), log")
    ax2.set_ylabel("fraction of operations")
    ax2.legend()
    ax2.set_title("latency distribution")
    fig.tight_layout()
    fig.savefig(path)


# -- main -------------------------------------------------------------------------
def bench(
    conf: str, pool: str, backends: list[str], workloads: list[str], spec: Spec,
    clients: int, workdir: str, progress: Any,
) -> list[Result]:
    results: list[Result] = []
    tag = f"{os.getpid()}-{int(time.time())}"
    task = progress.add_task("benchmark", total=len(backends) * len(workloads))
    for backend in backends:
        place = Place(conf, pool, workdir, f"{tag}-{backend}")
        progress.update(task, description=f"{backend}: loading {spec.records} records")
        with ExitStack() as stack:
            loaded = []
            for c in range(clients):
                b = prepare(place, backend, spec, c) if c == 0 else None
                if c > 0:
                    b = place.open(backend, create=False)
                    keys = make_keys(spec.records, spec.key_size, spec.seed, tag=f"c{c}-")
                    b.load([(k, make_value(spec.value_size, spec.seed)) for k in keys])
                stack.callback(b.close)
                loaded.append(b)
            for w in workloads:
                progress.update(task, description=f"{backend}: {w}")
                if w in ("lock-store-unlock",) and not loaded[0].has_locks:
                    progress.advance(task)
                    continue
                if clients == 1 or w.startswith("traverse"):
                    n, secs, lat = run_workload(loaded[0], w, spec, 0)
                    results.append(Result(w, backend, n, secs, [n / secs if secs else 0], lat))
                else:
                    ctx = multiprocessing.get_context("spawn")
                    with ctx.Pool(clients) as pool_:
                        t0 = time.perf_counter()
                        outs = pool_.map(_client_main,
                                         [(place, backend, w, spec, c) for c in range(clients)])
                        wall = time.perf_counter() - t0
                    n = sum(o[0] for o in outs)
                    results.append(Result(
                        w, backend, n, max(o[1] for o in outs) or wall,
                        [o[0] / o[1] if o[1] else 0 for o in outs],
                        [x for o in outs for x in o[2]],
                    ))
                progress.advance(task)
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--conf", envvar="CEPH_CONF", help="ceph.conf of the cluster (default: "
              "CEPH_CONF, /etc/ceph/ceph.conf, else a throwaway local cluster).")
@click.option("--pool", envvar="RADOSTDB_POOL", default="radostdb", show_default=True)
@click.option("--records", default=10000, show_default=True, help="Records loaded per client.")
@click.option("--ops", default=2000, show_default=True, help="Operations per workload.")
@click.option("--key-size", default=16, show_default=True)
@click.option("--value-size", default=100, show_default=True)
@click.option("--clients", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes running each workload at once.")
@click.option("--backend", "backends", multiple=True, type=click.Choice(BACKENDS),
              help="Backends to run (repeat; default all).")
@click.option("--workload", "workloads", multiple=True, type=click.Choice(WORKLOADS),
              help="Workloads to run (repeat; default all).")
@click.option("--quick", is_flag=True, help="A small run (under a minute).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write every figure and the environment as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw rates and latency distributions to a PNG.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def main(conf: str | None, pool: str, records: int, ops: int, key_size: int, value_size: int,
         clients: int, backends: tuple[str, ...], workloads: tuple[str, ...], quick: bool,
         json_path: str | None, plot_path: str | None, quiet: bool) -> None:
    """Measure radostdb next to raw librados, local TDB and LMDB.

    \b
    Examples:
      radostdb-bench --quick
      radostdb-bench --clients 4 --workload store --workload fetch
      radostdb-bench --value-size 4096 --json out.json --plot out.png
    """
    from rich.console import Console
    from rich.progress import Progress

    if quick:
        records, ops = min(records, 2000), min(ops, 300)
    spec = Spec(records=records, key_size=key_size, value_size=value_size, ops=ops)
    chosen_b = list(backends or BACKENDS)
    chosen_w = list(workloads or WORKLOADS)
    console = Console(stderr=False)
    with cluster_for(conf, pool, quiet) as (conf_, pool_, dev), \
            tempfile.TemporaryDirectory(prefix="rtdb-bench-local-") as workdir:
        env = environment(conf_, pool_, dev)
        with Progress(console=Console(stderr=True), disable=quiet, transient=True) as progress:
            results = bench(conf_, pool_, chosen_b, chosen_w, spec, clients, workdir, progress)
    title = (f"radostdb-bench: {records} records/client, {key_size} B keys, {value_size} B "
             f"values, {clients} client(s), {env.get('osds', '?')} "
             f"{env.get('objectstore', '')} OSD(s), Ceph {env.get('ceph_version', '?')}")
    console.print(table(results, chosen_b, title))
    if json_path:
        doc = {
            "environment": env, "spec": asdict(spec), "clients": clients,
            "results": [
                {**{k: v for k, v in asdict(r).items() if k != "latencies_us"},
                 "rate": r.rate, "latency_us": r.percentiles()}
                for r in results
            ],
            "ratios": {
                w: by_w["radostdb"].rate / by_w["rados"].rate
                for w in chosen_w
                if (by_w := {r.backend: r for r in results if r.workload == w})
                and "radostdb" in by_w and "rados" in by_w and by_w["rados"].rate
            },
        }
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=1)
    if plot_path:
        plot(results, plot_path)


if __name__ == "__main__":
    main()
