"""radostdb-bench: radostdb side by side with raw librados, local TDB and LMDB.

Backends, all on the same keys and values in one run:
- ``radostdb``: this project, through its public Tdb API;
- ``rados``: the same omap operations issued straight with python-rados on
  the same number of shard objects, with the same encoded keys and bare
  values: the floor, and the reference every ratio is taken against;
- ``tdb``: a local file through Samba's python3-tdb (NOSYNC, hash size sized
  to the records, as a careful user sets it);
- ``lmdb``: a local LMDB environment (py-lmdb, sync off), one write
  transaction per write; ``lmdb-batch``: writes grouped, LMDB_BATCH per
  write transaction (the commit is inside the timing).

measurement design:
- Interleaved rounds: each workload runs in ``--rounds`` rounds; in every
  round each backend runs its share of the operations, in an order rotated
  from round to round. On a noisy machine (2 cores shared with the OSD) the
  radostdb/rados ratio of one round compares figures taken seconds apart;
  the reported ratio is the median over rounds (with min-max), the reported
  rate is total operations / total time.
- Local backends (tdb, lmdb) run LOCAL_FACTOR times the operations of a
  chunk, so that their chunks (of microsecond operations) last long enough
  to be timed, also across processes.
- Same data for every backend: keys come from one deterministic generator,
  the random picks from seeds that depend on workload, client and round
  only. Untimed set-up (records to delete, records to append to) is done
  by the parent before each timed chunk.
- ``--clients N`` runs N worker processes, started once; in each round they
  start together at an agreed monotonic time, each on its own slice of the
  records (client c owns records c, c+N, c+2N, ...) and its own delete and
  append keys. Aggregate rate = all operations / (last end - first start);
  per-client rates and pooled latency percentiles are reported too, and a
  1-client vs N-client comparison of store and fetch is measured
  interleaved.
- Raw baselines: append is the floor a raw client can reach, ONE set_omap of
  the grown value (a raw client really needs a read first); record locks
  are cls_lock ``lock_exclusive``/``unlock`` on the key's shard object (one
  lock name per client, so clients never contend), and fetch_locked is
  lock then fetch; a transaction is one set_omap write op per touched
  shard, issued in parallel (aio).
- mixed (Samba-like): 80% fetch, 15% store, 5% locked updates: fetch_locked
  (or chainlock + fetch), store, chainunlock. While radostdb has no record
  locks, every backend's locked updates are plain fetch + store; tdb's
  always are (python3-tdb has no chainlock); LMDB's run in a write
  transaction.
- Workloads a backend cannot run (record locks before they land in
  radostdb, or in python3-tdb) are reported as skipped with the reason.
- Everything this tool writes to a cluster goes into its own namespace,
  removed at the end. With no cluster configured (no ``--conf``, no
  ``CEPH_CONF``, no /etc/ceph/ceph.conf) a throwaway local one is started
  and stopped.
"""

from __future__ import annotations

import abc
import gc
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import click

from . import cluster as clustermod

BACKENDS = ("radostdb", "rados", "tdb", "lmdb", "lmdb-batch")
CLUSTER_BACKENDS = ("radostdb", "rados")
SHARDS = 8
PAGE = 1000
LOAD_CHUNK = 5000
LMDB_BATCH = 1000
LOCAL_FACTOR = 10  # local backends run 10x the operations: chunks long enough to time
LOCK_NAME = "radostdb-bench"
SCALE_SIZES = (10_000, 100_000, 1_000_000)
SCALE_WORKLOADS = ("store", "fetch", "traverse-items")
START_DELAY = 0.02  # seconds between telling workers to run and their common start
MIX = (0.80, 0.15)  # mixed: fetch share, store share; the rest are locked updates


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str  # what the rate counts: "ops" or "records"
    help: str
    needs: str = ""  # backend capability required
    size: int = 1  # records per operation (transactions)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("store", "ops", "replace an existing record"),
        Workload("fetch", "ops", "read an existing record"),
        Workload("fetch-miss", "ops", "read a key that does not exist"),
        Workload("delete", "ops", "delete an existing record"),
        Workload("append", "ops", "append the value to an existing record"),
        Workload("traverse-keys", "records", "every key of the database"),
        Workload("traverse-items", "records", "every key and value of the database"),
        Workload("lock-unlock", "ops", "record lock and unlock", needs="locks"),
        Workload("lock-store-unlock", "ops", "lock, store, unlock", needs="locks"),
        Workload("fetch-locked", "ops", "fetch_locked, then unlock", needs="fetch_locked"),
        *(
            Workload(f"txn-{n}", "records", f"transaction of {n} stores", "txn", n)
            for n in (1, 10, 100, 1000)
        ),
        Workload("mixed", "ops", "80% fetch, 15% store, 5% locked fetch+store"),
    )
}


# -- data ---------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What every backend is given: sizes, counts, seed (picklable)."""

    records: int = 10_000
    ops: int = 10_000
    key_size: int = 16
    value_size: int = 100
    rounds: int = 20
    seed: int = 42
    locked_updates: bool = True  # mixed workload: lock around its updates

    @cached_property
    def value(self) -> bytes:
        return random.Random(self.seed).randbytes(self.value_size)

    @cached_property
    def _pad(self) -> bytes:
        rng = random.Random(self.seed + 1)
        return bytes(rng.randrange(33, 127) for _ in range(4096 + self.key_size))

    def key(self, tag: str, i: int) -> bytes:
        """Key i of a family: the tag and a counter, padded to key_size bytes."""
        head = f"{tag}{i:08d}".encode()
        n = self.key_size - len(head)
        if n <= 0:
            return head
        off = (i * 7919) % 4096
        return head + self._pad[off : off + n]

    def records_range(self, start: int, stop: int) -> list[tuple[bytes, bytes]]:
        return [(self.key("r", i), self.value) for i in range(start, stop)]

    def ops_per_round(self, w: Workload, backend: str) -> int:
        """Operations one client runs per round (transactions for txn-N)."""
        if w.name.startswith("traverse"):
            return 1  # one traversal of the whole database
        total = max(3 * self.rounds, self.ops // w.size)  # txn-1000: 3 per round at least
        factor = 1 if backend in CLUSTER_BACKENDS else LOCAL_FACTOR
        return math.ceil(total / self.rounds) * factor

    def sample(
        self, w: str, client: int, nclients: int, rnd: int, n: int, records: int
    ) -> list[bytes]:
        """n keys of existing records from this client's slice."""
        rng = random.Random(f"{self.seed}:{w}:{client}:{rnd}")
        per = max(1, records // nclients)
        return [self.key("r", client + nclients * rng.randrange(per)) for _ in range(n)]


# -- backends -----------------------------------------------------------------
class Backend(abc.ABC):
    """One storage system under test. Keys and values are bytes. Record locks
    are optional: a backend lists what it has in ``caps``."""

    name = "?"
    caps: frozenset[str] = frozenset({"txn"})

    def missing(self, cap: str) -> str:
        """Why a workload needing ``cap`` is skipped on this backend."""
        return f"{self.name} has no {cap.replace('_', ' ')}"

    @abc.abstractmethod
    def store(self, key: bytes, value: bytes) -> None: ...

    @abc.abstractmethod
    def fetch(self, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def delete(self, key: bytes) -> None: ...

    @abc.abstractmethod
    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        """Append data; ``grown`` is the record afterwards (for raw floors)."""

    @abc.abstractmethod
    def keys(self) -> Iterator[Any]: ...

    @abc.abstractmethod
    def items(self) -> Iterator[tuple[Any, Any]]: ...

    @abc.abstractmethod
    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Store every pair in one transaction."""

    def load(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Bulk load, untimed: transactions of LOAD_CHUNK records."""
        for i in range(0, len(pairs), LOAD_CHUNK):
            self.txn(pairs[i : i + LOAD_CHUNK])

    def lock(self, key: bytes) -> None:
        raise NotImplementedError(self.missing("locks"))

    def unlock(self, key: bytes) -> None:
        raise NotImplementedError(self.missing("locks"))

    def fetch_locked(self, key: bytes) -> bytes | None:
        raise NotImplementedError(self.missing("fetch_locked"))

    def locked_update(self, key: bytes, value: bytes, locked: bool) -> None:
        """Samba's read-modify-write of one record, under its lock if ``locked``."""
        if locked and "locks" in self.caps:
            if "fetch_locked" in self.caps:
                self.fetch_locked(key)
            else:
                self.lock(key)
                self.fetch(key)
            self.store(key, value)
            self.unlock(key)
        else:
            self.fetch(key)
            self.store(key, value)

    def flush(self) -> None:
        """Finish buffered work (timed: the end of every chunk)."""
        return None  # most backends buffer nothing

    @abc.abstractmethod
    def close(self) -> None: ...


class RadostdbBackend(Backend):
    name = "radostdb"

    def __init__(self, place: Place, db: str, create: bool) -> None:
        import radostdb

        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self.db = radostdb.Tdb(
            db,
            SHARDS,
            radostdb.DEFAULT,
            flags,
            conf=place.conf,
            client_id=place.client_id,
            pool=place.pool,
            namespace=place.namespace,
        )
        self.caps = radostdb_caps()

    def missing(self, cap: str) -> str:
        what = {"locks": "chainlock", "fetch_locked": "fetch_locked"}.get(cap, cap)
        return f"radostdb has no Tdb.{what} yet"

    def store(self, key: bytes, value: bytes) -> None:
        self.db.store(key, value)

    def fetch(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        self.db.append(key, data)

    def keys(self) -> Iterator[bytes]:
        return self.db.keys()

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.db.items()

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.db.transaction_start()
        for k, v in pairs:
            self.db.store(k, v)
        self.db.transaction_commit()

    def lock(self, key: bytes) -> None:
        self.db.chainlock(key)

    def unlock(self, key: bytes) -> None:
        self.db.chainunlock(key)

    def fetch_locked(self, key: bytes) -> bytes | None:
        return self.db.fetch_locked(key)

    def close(self) -> None:
        self.db.close()


def radostdb_caps() -> frozenset[str]:
    """What this radostdb offers beyond the core API (record locks came later)."""
    import radostdb

    caps = {"txn"}
    if hasattr(radostdb.Tdb, "chainlock") and hasattr(radostdb.Tdb, "chainunlock"):
        caps.add("locks")
        if hasattr(radostdb.Tdb, "fetch_locked"):
            caps.add("fetch_locked")
    return frozenset(caps)


class RadosBackend(Backend):
    """The same omap operations straight through python-rados: SHARDS objects,
    keys encoded as radostdb encodes them, values stored bare (no header)."""

    name = "rados"
    caps = frozenset({"txn", "locks", "fetch_locked"})

    def __init__(self, place: Place, db: str, create: bool, client: int) -> None:
        import rados

        from . import codec

        self.rados = rados
        self.encode_key = codec.encode_key
        self.shard_of = codec.shard_of
        self.conn = connect(place.conf, place.client_id)
        self.io = self.conn.open_ioctx(place.pool)
        self.io.set_namespace(place.namespace)
        self.objs = [f"raw.{db}.{i}" for i in range(SHARDS)]
        self.lock_name, self.cookie = f"{LOCK_NAME}.{client}", f"c{client}"
        if create:
            for o in self.objs:  # empty objects, so that traversals find them
                with rados.WriteOpCtx() as op:
                    op.write_full(b"")
                    self.io.clear_omap(op)
                    self.io.operate_write_op(op, o)

    def _obj(self, key: bytes) -> str:
        return self.objs[self.shard_of(key, SHARDS)]

    def store(self, key: bytes, value: bytes) -> None:
        with self.rados.WriteOpCtx() as op:
            self.io.set_omap(op, (self.encode_key(key),), (value,))
            self.io.operate_write_op(op, self._obj(key))

    def fetch(self, key: bytes) -> bytes | None:
        with self.rados.ReadOpCtx() as op:
            it, _ = self.io.get_omap_vals_by_keys(op, (self.encode_key(key),))
            self.io.operate_read_op(op, self._obj(key))
            for _, v in it:
                return bytes(v)
        return None

    def delete(self, key: bytes) -> None:
        with self.rados.WriteOpCtx() as op:
            self.io.remove_omap_keys(op, (self.encode_key(key),))
            self.io.operate_write_op(op, self._obj(key))

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        # the floor: one write of the grown record, as if the client knew it
        self.store(key, grown)

    def _pages(self, keys_only: bool) -> Iterator[list[tuple[str, Any]]]:
        for obj in self.objs:
            start = ""
            while True:
                with self.rados.ReadOpCtx() as op:
                    if keys_only:
                        it, _ = self.io.get_omap_keys(op, start, PAGE)
                    else:
                        it, _ = self.io.get_omap_vals(op, start, "", PAGE)
                    self.io.operate_read_op(op, obj)
                    page = list(it)
                if page:
                    yield page
                if len(page) < PAGE:
                    break
                start = page[-1][0]

    def keys(self) -> Iterator[str]:
        for page in self._pages(True):
            yield from (k for k, _ in page)

    def items(self) -> Iterator[tuple[str, bytes]]:
        for page in self._pages(False):
            yield from page

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        by_obj: dict[str, tuple[list[str], list[bytes]]] = {}
        for k, v in pairs:
            ks, vs = by_obj.setdefault(self._obj(k), ([], []))
            ks.append(self.encode_key(k))
            vs.append(v)
        ops, comps = [], []
        try:
            for obj, (ks, vs) in by_obj.items():
                op = self.io.create_write_op()
                ops.append(op)
                self.io.set_omap(op, tuple(ks), tuple(vs))
                comps.append(self.io.operate_aio_write_op(op, obj))
            for c in comps:
                c.wait_for_complete()
                if c.get_return_value() < 0:
                    raise OSError(-c.get_return_value(), "raw set_omap failed")
        finally:
            for op in ops:
                self.io.release_write_op(op)

    def lock(self, key: bytes) -> None:
        self.io.lock_exclusive(self._obj(key), self.lock_name, self.cookie, duration=30)

    def unlock(self, key: bytes) -> None:
        self.io.unlock(self._obj(key), self.lock_name, self.cookie)

    def fetch_locked(self, key: bytes) -> bytes | None:
        self.lock(key)
        return self.fetch(key)

    def close(self) -> None:
        self.io.close()
        self.conn.shutdown()


def connect(conf: str, client_id: str, timeout: int = 30) -> Any:
    """A connected ``rados.Rados`` that gives up after ``timeout`` seconds."""
    import rados

    conn = rados.Rados(conffile=conf, name=f"client.{client_id}")
    conn.conf_set("client_mount_timeout", str(timeout))
    conn.conf_set("rados_mon_op_timeout", str(timeout))
    try:
        conn.connect(timeout=timeout)
    except BaseException:
        conn.shutdown()
        raise
    return conn


class TdbBackend(Backend):
    name = "tdb"

    def __init__(self, path: str, create: bool, expected: int) -> None:
        import tdb

        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        hash_size = max(10007, expected // 4 | 1)
        self.db = tdb.Tdb(path, hash_size, tdb.DEFAULT | tdb.NOSYNC, flags)

    def missing(self, cap: str) -> str:
        return "python3-tdb has no record locks" if "lock" in cap else super().missing(cap)

    def store(self, key: bytes, value: bytes) -> None:
        self.db.store(key, value)

    def fetch(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        self.db.append(key, data)

    def keys(self) -> Iterator[bytes]:
        return iter(self.db.keys())

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        get = self.db.get
        for k in self.db.keys():
            yield k, get(k)

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.db.transaction_start()
        for k, v in pairs:
            self.db.store(k, v)
        self.db.transaction_commit()

    def close(self) -> None:
        self.db.close()


class LmdbBackend(Backend):
    """py-lmdb, sync off (like NOSYNC tdb and memstore, nothing is fsynced).
    batch=1: one write transaction per write; batch>1: writes share a write
    transaction, committed every ``batch`` writes and at the end of a chunk."""

    def __init__(self, path: str, create: bool, batch: int) -> None:
        import lmdb

        if create:
            shutil.rmtree(path, ignore_errors=True)
        self.name = "lmdb" if batch == 1 else "lmdb-batch"
        self.env = lmdb.open(
            path, map_size=64 << 30, sync=False, metasync=False, writemap=True, max_readers=256
        )
        self.batch = batch
        self._w: Any = None
        self._n = 0

    def missing(self, cap: str) -> str:
        return "LMDB has no record locks" if "lock" in cap else super().missing(cap)

    def _write(self, fn: Callable[[Any], Any]) -> Any:
        if self.batch == 1:
            with self.env.begin(write=True) as t:
                return fn(t)
        if self._w is None:
            self._w = self.env.begin(write=True)
        out = fn(self._w)
        self._n += 1
        if self._n >= self.batch:
            self.flush()
        return out

    def flush(self) -> None:
        if self._w is not None:
            self._w.commit()
            self._w, self._n = None, 0

    def store(self, key: bytes, value: bytes) -> None:
        self._write(lambda t: t.put(key, value))

    def fetch(self, key: bytes) -> bytes | None:
        if self._w is not None:
            return self._w.get(key)
        with self.env.begin() as t:
            return t.get(key)

    def delete(self, key: bytes) -> None:
        self._write(lambda t: t.delete(key))

    def append(self, key: bytes, data: bytes, grown: bytes) -> None:
        self._write(lambda t: t.put(key, (t.get(key) or b"") + data))

    def locked_update(self, key: bytes, value: bytes, locked: bool) -> None:
        # a write transaction is LMDB's lock: read and write inside one
        self._write(lambda t: (t.get(key), t.put(key, value)))

    def keys(self) -> Iterator[bytes]:
        self.flush()
        with self.env.begin() as t:
            yield from t.cursor().iternext(keys=True, values=False)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        self.flush()
        with self.env.begin() as t:
            yield from t.cursor().iternext(keys=True, values=True)

    def txn(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.flush()
        with self.env.begin(write=True) as t:
            for k, v in pairs:
                t.put(k, v)

    def close(self) -> None:
        self.flush()
        self.env.close()


@dataclass(frozen=True)
class Place:
    """Where the databases live (picklable, for worker processes)."""

    conf: str
    pool: str
    client_id: str
    namespace: str
    workdir: str

    def open(
        self, backend: str, db: str, create: bool, client: int = 0, expected: int = 0
    ) -> Backend:
        if backend == "radostdb":  # by the tdb file's path, as Samba opens it (names.py)
            return RadostdbBackend(self, os.path.join(self.workdir, f"{db}.tdb"), create)
        if backend == "rados":
            return RadosBackend(self, db, create, client)
        if backend == "tdb":
            return TdbBackend(os.path.join(self.workdir, f"{db}.tdb"), create, expected)
        if backend in ("lmdb", "lmdb-batch"):
            batch = 1 if backend == "lmdb" else LMDB_BATCH
            return LmdbBackend(os.path.join(self.workdir, f"{db}.{backend}"), create, batch)
        raise ValueError(f"unknown backend {backend!r}")


# -- running one chunk --------------------------------------------------------
@dataclass
class Chunk:
    """One client's share of one round: units done, when, per-call latencies."""

    ops: int
    start: float  # time.monotonic(), comparable across processes
    end: float
    latencies_us: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.end - self.start


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


def setup_chunk(b: Backend, spec: Spec, w: Workload, client: int, rnd: int, n: int) -> None:
    """Untimed preparation of one client's chunk: the records it will delete
    or append to."""
    if w.name in ("delete", "append"):
        tag = f"{w.name[0]}{client}.{rnd}."
        b.load([(spec.key(tag, i), spec.value) for i in range(n)])
        b.flush()


def run_chunk(
    b: Backend,
    spec: Spec,
    w: Workload,
    client: int,
    nclients: int,
    rnd: int,
    n: int,
    records: int | None = None,
) -> Chunk:
    """Run one client's chunk of a workload on a loaded backend."""
    records = records or spec.records
    value = spec.value
    name = w.name
    if name == "store":
        return timed(
            lambda k: b.store(k, value), spec.sample(name, client, nclients, rnd, n, records), n, b
        )
    if name == "fetch":
        return timed(b.fetch, spec.sample(name, client, nclients, rnd, n, records), n, b)
    if name == "fetch-miss":
        return timed(b.fetch, [spec.key(f"m{client}.{rnd}.", i) for i in range(n)], n, b)
    if name == "delete":
        return timed(b.delete, [spec.key(f"d{client}.{rnd}.", i) for i in range(n)], n, b)
    if name == "append":
        grown = value + value
        return timed(
            lambda k: b.append(k, value, grown),
            [spec.key(f"a{client}.{rnd}.", i) for i in range(n)],
            n,
            b,
        )
    if name.startswith("traverse"):
        walk = b.keys if name == "traverse-keys" else b.items
        enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.monotonic()
            count = 0
            for _ in range(n):
                for _ in walk():
                    count += 1
            end = time.monotonic()
        finally:
            if enabled:
                gc.enable()
        return Chunk(count, start, end)
    keys = spec.sample(name, client, nclients, rnd, n, records)
    if name == "lock-unlock":

        def lock_unlock(k: bytes) -> None:
            b.lock(k)
            b.unlock(k)

        return timed(lock_unlock, keys, n, b)
    if name == "lock-store-unlock":

        def lock_store_unlock(k: bytes) -> None:
            b.lock(k)
            b.store(k, value)
            b.unlock(k)

        return timed(lock_store_unlock, keys, n, b)
    if name == "fetch-locked":

        def fetch_locked(k: bytes) -> None:
            b.fetch_locked(k)
            b.unlock(k)

        return timed(fetch_locked, keys, n, b)
    if name == "mixed":
        rng = random.Random(f"{spec.seed}:mix:{client}:{rnd}")
        locked = spec.locked_updates

        def step(k: bytes) -> None:
            r = rng.random()
            if r < MIX[0]:
                b.fetch(k)
            elif r < MIX[0] + MIX[1]:
                b.store(k, value)
            else:
                b.locked_update(k, value, locked)

        return timed(step, keys, n, b)
    if name.startswith("txn-"):
        rng = random.Random(f"{spec.seed}:{name}:{client}:{rnd}")
        per = max(1, records // nclients)
        batches = []
        for _ in range(n):
            idx = (
                rng.sample(range(per), w.size)
                if per >= w.size
                else [rng.randrange(per) for _ in range(w.size)]
            )
            batches.append([(spec.key("r", client + nclients * i), value) for i in idx])
        return timed(b.txn, batches, n * w.size, b)
    raise ValueError(f"unknown workload {name!r}")


# -- worker processes (--clients N) -------------------------------------------
def _worker_main(conn: Any, place: Place, spec: Spec, client: int) -> None:
    """A client process: open backends on request, run chunks at a set time."""
    opened: dict[tuple[str, str], Backend] = {}
    try:
        while True:
            msg = conn.recv()
            try:
                if msg[0] == "open":
                    _, backend, db, expected = msg
                    opened[(backend, db)] = place.open(backend, db, False, client, expected)
                    conn.send(("ok", None))
                elif msg[0] == "run":
                    _, backend, db, wname, nclients, rnd, n, records, at = msg
                    b = opened[(backend, db)]
                    time.sleep(max(0.0, at - time.monotonic()))
                    chunk = run_chunk(b, spec, WORKLOADS[wname], client, nclients, rnd, n, records)
                    conn.send(("ok", chunk))
                elif msg[0] == "close":
                    for b in opened.values():
                        b.close()
                    opened.clear()
                    conn.send(("ok", None))
                    return
            except Exception:
                conn.send(("error", f"client {client}: {traceback.format_exc()}"))
    except (EOFError, KeyboardInterrupt):
        return


class Runner:
    """Runs chunks: in this process (1 client) or in N worker processes.

    The parent keeps its own handle on every database: it creates and loads
    them and does the untimed set-up of every chunk."""

    def __init__(self, place: Place, spec: Spec, clients: int) -> None:
        self.place, self.spec, self.clients = place, spec, clients
        self.handles: dict[tuple[str, str], Backend] = {}
        self.shared: set[tuple[str, str]] = set()
        self._workers: list[tuple[Any, Any]] = []
        if clients > 1:
            ctx = multiprocessing.get_context("spawn")
            for c in range(clients):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker_main, args=(child, place, spec, c), daemon=True)
                p.start()
                child.close()
                self._workers.append((p, parent))

    def _ask(self, msgs: list[tuple[Any, ...]], workers: int | None = None) -> list[Any]:
        conns = [c for _, c in self._workers[: workers or len(self._workers)]]
        for c, m in zip(conns, msgs, strict=True):
            c.send(m)
        replies = [c.recv() for c in conns]  # every reply, to keep the pipes in step
        errors = [out for status, out in replies if status != "ok"]
        if errors:
            raise RuntimeError("\n".join(errors))
        return [out for _, out in replies]

    def open(self, backend: str, db: str, expected: int) -> Backend:
        b = self.place.open(backend, db, True, 0, expected)
        self.handles[(backend, db)] = b
        return b

    def share(self, backend: str, db: str, expected: int) -> None:
        """Open a loaded database in every worker."""
        if self._workers:
            self._ask([("open", backend, db, expected)] * self.clients)
            self.shared.add((backend, db))

    def run(
        self, backend: str, db: str, w: Workload, rnd: int, n: int, nclients: int, records: int
    ) -> list[Chunk]:
        b = self.handles[(backend, db)]
        for c in range(nclients):
            setup_chunk(b, self.spec, w, c, rnd, n)
        if (backend, db) not in self.shared:
            assert nclients == 1, f"{db} is not open in the workers"
            return [run_chunk(b, self.spec, w, 0, 1, rnd, n, records)]
        at = time.monotonic() + START_DELAY
        return self._ask(
            [("run", backend, db, w.name, nclients, rnd, n, records, at) for _ in range(nclients)],
            nclients,
        )

    def close(self) -> None:
        if self._workers:
            try:
                self._ask([("close",)] * self.clients)
            except (RuntimeError, OSError, EOFError):
                pass
            for p, c in self._workers:
                c.close()
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
            self._workers.clear()
        for b in self.handles.values():
            b.close()
        self.handles.clear()


# -- summarising --------------------------------------------------------------
def percentiles(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {}
    s = sorted(lat)

    def at(p: float) -> float:
        return s[max(0, min(len(s), math.ceil(round(p * len(s) / 100, 6))) - 1)]  # nearest rank

    return {
        "min": s[0],
        "p50": at(50),
        "p90": at(90),
        "p99": at(99),
        "p99.9": at(99.9),
        "max": s[-1],
        "mean": statistics.fmean(s),
        "count": len(s),
    }


def summarize(rounds: list[list[Chunk]]) -> dict[str, Any]:
    """Figures of one backend on one workload, from its rounds of chunks."""
    per_round = []
    for chunks in rounds:
        ops = sum(c.ops for c in chunks)
        secs = max(c.end for c in chunks) - min(c.start for c in chunks)
        per_round.append(
            {
                "ops": ops,
                "seconds": secs,
                "rate": ops / secs if secs > 0 else 0.0,
                "per_client": [c.ops / c.seconds if c.seconds > 0 else 0.0 for c in chunks],
            }
        )
    ops = sum(r["ops"] for r in per_round)
    secs = sum(r["seconds"] for r in per_round)
    nclients = len(rounds[0])
    per_client = []
    for c in range(nclients):
        c_ops = sum(chunks[c].ops for chunks in rounds)
        c_secs = sum(chunks[c].seconds for chunks in rounds)
        per_client.append(c_ops / c_secs if c_secs > 0 else 0.0)
    return {
        "ops": ops,
        "seconds": secs,
        "rate": ops / secs if secs > 0 else 0.0,
        "rate_median": statistics.median(r["rate"] for r in per_round),
        "per_client": per_client,
        "latency_us": percentiles([x for chunks in rounds for c in chunks for x in c.latencies_us]),
        "rounds": per_round,
    }


def ratio(ours: dict[str, Any] | None, raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """radostdb/rados: per-round paired ratios (median, min, max) and the total."""
    if not ours or not raw or "rate" not in ours or "rate" not in raw:
        return None
    pairs = [
        a["rate"] / b["rate"]
        for a, b in zip(ours["rounds"], raw["rounds"], strict=True)
        if b["rate"] > 0
    ]
    if not pairs or raw["rate"] <= 0:
        return None
    return {
        "median": statistics.median(pairs),
        "min": min(pairs),
        "max": max(pairs),
        "total": ours["rate"] / raw["rate"],
        "rounds": pairs,
    }


# -- the run ------------------------------------------------------------------
class Reporter:
    """Progress on stderr: a rich bar on a terminal, a line per phase otherwise."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.quiet = quiet
        self.console = Console(stderr=True)
        self.live = not quiet and self.console.is_terminal
        self.progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.live,
        )
        self.task = self.progress.add_task("", total=None)

    def __enter__(self) -> Reporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def phase(self, what: str, total: int) -> None:
        self.progress.update(self.task, description=what, total=total, completed=0)
        if not self.live and not self.quiet:
            print(f"radostdb-bench: {what}", file=sys.stderr, flush=True)

    def step(self, what: str) -> None:
        self.progress.update(self.task, description=what)

    def advance(self) -> None:
        self.progress.advance(self.task)

    def note(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(msg, highlight=False)


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
            rep.progress.advance(rep.task, len(pairs))


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
    ``configs``) the summary, or the reason it was skipped."""
    records = records or spec.records
    configs = configs or [runner.clients]
    out: dict[str, Any] = {name: None for name in backends}  # in the order given
    runs = []
    for name in backends:
        b = runner.handles[(name, db)]
        if w.needs and w.needs not in b.caps:
            out[name] = {"skipped": b.missing(w.needs)}
        else:
            runs += [(name, k) for k in configs]
    chunks: dict[tuple[str, int], list[list[Chunk]]] = {r: [] for r in runs}
    rep.phase(f"{label}{w.name}: {spec.rounds} rounds x {len(runs)} runs", spec.rounds * len(runs))
    for rnd in range(spec.rounds):
        shift = rnd % max(1, len(runs))
        for name, k in runs[shift:] + runs[:shift]:
            rep.step(
                f"{label}{w.name}: {name}"
                + (f" x{k}" if k > 1 else "")
                + f", round {rnd + 1}/{spec.rounds}"
            )
            n = spec.ops_per_round(w, name)
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
    return {
        "unit": w.unit,
        "description": w.help,
        "records_per_op": w.size,
        "backends": by_backend,
        "ratio": ratio(by_backend.get("radostdb"), by_backend.get("rados")),
    }


def bench(
    place: Place,
    spec: Spec,
    backends: list[str],
    workloads: list[str],
    clients: int,
    scale_sizes: list[int],
    rep: Reporter,
) -> dict[str, Any]:
    """Every measurement of a run, as the JSON document's figures."""
    doc: dict[str, Any] = {"workloads": {}, "scale": None, "clients_scaling": None}
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
        cluster = [b for b in backends if b in CLUSTER_BACKENDS]
        if clients > 1 and cluster:
            doc["clients_scaling"] = {"clients": clients, "workloads": {}}
            for wname in ("store", "fetch"):
                res = measure(
                    runner,
                    cluster,
                    "main",
                    WORKLOADS[wname],
                    spec,
                    rep,
                    configs=[1, clients],
                    label=f"1 vs {clients} clients: ",
                )
                for r in res.values():
                    if "1" in r and r["1"]["rate"] > 0:
                        r["speedup"] = r[str(clients)]["rate"] / r["1"]["rate"]
                doc["clients_scaling"]["workloads"][wname] = res
        if scale_sizes:
            doc["scale"] = scale(runner, backends, spec, scale_sizes, rep)
    finally:
        runner.close()
    return doc


def scale(
    runner: Runner, backends: list[str], spec: Spec, sizes: list[int], rep: Reporter
) -> dict[str, Any]:
    """Per-op cost as the database grows: load to each size, measure there
    (one client)."""
    for name in backends:
        runner.open(name, "scale", max(sizes))
    out: dict[str, Any] = {"sizes": sizes, "workloads": list(SCALE_WORKLOADS), "results": {}}
    loaded = 0
    for size in sizes:
        load(runner, backends, "scale", spec, loaded, size, rep)
        loaded = size
        res = {}
        for wname in SCALE_WORKLOADS:
            w = WORKLOADS[wname]
            wspec = spec
            if wname.startswith("traverse"):  # reads the whole database: fewer rounds
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
    return out


# -- environment ----------------------------------------------------------------
def environment(conf: str, pool: str, client_id: str, dev: Any) -> dict[str, Any]:
    """Where the figures come from: machine, software, cluster."""
    from . import __version__, codec

    env: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
        "radostdb": __version__,
        "native_codec": codec.NATIVE,
        "radostdb_caps": sorted(radostdb_caps()),
        "conf": conf,
        "pool": pool,
        "throwaway_cluster": dev is not None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu_model"] = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None
            )
    except OSError:
        pass
    for mod in ("lmdb", "tdb"):
        try:
            m = __import__(mod)
            env[f"{mod}_version"] = (
                ".".join(map(str, m.version())) if mod == "lmdb" else getattr(m, "__version__", "?")
            )
        except ImportError:
            env[f"{mod}_version"] = None
    if not conf:  # local backends only
        return env
    try:
        conn = connect(conf, client_id, timeout=10)
        try:

            def mon(cmd: dict[str, Any]) -> Any:
                ret, out, _ = conn.mon_command(json.dumps({**cmd, "format": "json"}), b"")
                return json.loads(out) if ret == 0 else None

            env["ceph_version"] = (mon({"prefix": "version"}) or {}).get("version")
            dump = mon({"prefix": "osd dump"}) or {}
            osds = dump.get("osds", [])
            env["osds"] = len(osds)
            env["osds_up"] = sum(o["up"] for o in osds)
            env["pool_size"] = next(
                (p["size"] for p in dump.get("pools", []) if p["pool_name"] == pool), None
            )
            meta = mon({"prefix": "osd metadata", "id": osds[0]["osd"]}) if osds else None
            env["objectstore"] = (meta or {}).get("osd_objectstore")
        finally:
            conn.shutdown()
    except Exception as exc:  # the environment report must never stop a run
        env["error"] = str(exc)
    return env


@contextmanager
def cluster_for(conf: str | None, pool: str, rep: Reporter) -> Iterator[tuple[str, Any]]:
    """The configured cluster, or a throwaway one started (and stopped) here."""
    conf = conf or os.environ.get("CEPH_CONF")
    if conf or os.path.exists("/etc/ceph/ceph.conf"):
        yield conf or "/etc/ceph/ceph.conf", None
        return
    from .devcluster import DevCluster

    d = tempfile.mkdtemp(prefix="rtdb-bench-", dir="/tmp")
    dev = DevCluster(d, pool=pool)
    rep.note(f"no cluster configured: starting a throwaway one in {d}")
    try:
        dev.up(owner=os.getpid())
        yield str(dev.conf), dev
    finally:
        # close every handle while the cluster still answers: at exit an
        # unwatch sent to a stopped cluster would wait forever
        clustermod.shutdown_all(final=False)
        dev.down()
        shutil.rmtree(d, ignore_errors=True)


def remove_namespace(conf: str, client_id: str, pool: str, namespace: str) -> int:
    """Remove every object of the bench's namespace; how many there were."""
    import rados

    conn = connect(conf, client_id)
    try:
        io = conn.open_ioctx(pool)
        io.set_namespace(namespace)
        names = [o.key for o in io.list_objects()]
        for name in names:
            try:
                io.remove_object(name)
            except rados.ObjectNotFound:
                pass
        io.close()
        return len(names)
    finally:
        conn.shutdown()


# -- report ---------------------------------------------------------------------
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
    return "n/a" if "skipped" in entry else fmt_rate(entry["rate"])


def _lat(entry: dict[str, Any] | None) -> str:
    p = (entry or {}).get("latency_us")
    return f"{fmt_us(p['p50'])} / {fmt_us(p['p99'])} / {fmt_us(p['p99.9'])}" if p else "-"


def tables(doc: dict[str, Any]) -> list[Any]:
    """The rich tables of a run's document."""
    from rich.table import Table

    spec, env, backends = doc["spec"], doc["environment"], doc["backends"]
    clients = spec["clients"]
    title = (
        f"radostdb-bench: {spec['records']} records, {spec['key_size']} B keys, "
        f"{spec['value_size']} B values, {clients} client(s), {spec['rounds']} interleaved "
        f"rounds; {env.get('osds', '?')} {env.get('objectstore') or ''} OSD(s), "
        f"{(env.get('ceph_version') or 'Ceph ?').split(' (')[0]}, {env.get('cpus')} CPUs"
    )
    out = []
    t = Table(
        title=title,
        caption="rates: total ops (records for traverse/txn) / total time"
        + (" (aggregate of all clients)" if clients > 1 else "")
        + "; radostdb/rados: median of per-round ratios (min-max); n/a: not supported",
    )
    t.add_column("workload")
    t.add_column("unit")
    for b in backends:
        t.add_column(f"{b} /s", justify="right")
    t.add_column("radostdb/rados", justify="right")
    for b in ("radostdb", "rados"):
        if b in backends:
            t.add_column(f"{b} p50/p99/p99.9 µs", justify="right")
    for wname, e in doc["workloads"].items():
        bb = e["backends"]
        row = [wname, e["unit"], *(_cell(bb.get(b)) for b in backends), fmt_ratio(e["ratio"])]
        row += [_lat(bb.get(b)) for b in ("radostdb", "rados") if b in backends]
        t.add_row(*row)
    out.append(t)
    if clients > 1:
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
        out.append(t)
    cs = doc.get("clients_scaling")
    if cs:
        n = str(cs["clients"])
        t = Table(title=f"1 client vs {n} clients (interleaved)")
        for col in (
            "workload",
            "backend",
            "1 client /s",
            f"{n} clients /s",
            "speed-up",
            f"per client ({n}) /s",
            f"p99 µs ({n})",
        ):
            t.add_column(col, justify="left" if col in ("workload", "backend") else "right")
        for wname, res in cs["workloads"].items():
            for b, r in res.items():
                if "skipped" in r:
                    continue
                t.add_row(
                    wname,
                    b,
                    fmt_rate(r["1"]["rate"]),
                    fmt_rate(r[n]["rate"]),
                    f"{r.get('speedup', 0):.2f}x",
                    " ".join(fmt_rate(x) for x in r[n]["per_client"]),
                    fmt_us(r[n]["latency_us"]["p99"]),
                )
        out.append(t)
    sc = doc.get("scale")
    if sc:
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
                    row.append(fmt_us(1e6 / r["rate"]) if r and r.get("rate") else "-")
                t.add_row(*row, fmt_ratio(e["ratio"]))
        out.append(t)
    return out


def plot(doc: dict[str, Any], path: str) -> None:
    """Rates, ratios, latency distributions and growth with size, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends, works = doc["backends"], doc["workloads"]
    names = list(works)
    colors = {b: f"C{i}" for i, b in enumerate(BACKENDS)}
    fig, axes = plt.subplots(2, 2, figsize=(16, 11))
    ax = axes[0][0]
    width = 0.8 / max(1, len(backends))
    for i, b in enumerate(backends):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(names))]
        ys = [(works[w]["backends"].get(b) or {}).get("rate", 0) for w in names]
        ax.bar(xs, ys, width, label=b, color=colors[b])
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_ylabel("ops/s (records/s for traverse, txn), log")
    ax.set_title("rate per workload and backend")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    ax = axes[0][1]
    rs = [(w, works[w]["ratio"]) for w in names if works[w]["ratio"]]
    if rs:
        meds = [r["median"] for _, r in rs]
        err = [
            [m - r["min"] for m, (_, r) in zip(meds, rs, strict=True)],
            [r["max"] - m for m, (_, r) in zip(meds, rs, strict=True)],
        ]
        ax.bar(range(len(rs)), meds, yerr=err, capsize=3, color=colors["radostdb"])
        ax.set_xticks(range(len(rs)), [w for w, _ in rs], rotation=35, ha="right")
        for x, m in enumerate(meds):
            ax.annotate(
                f"{m:.2f}",
                (x, m),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 3),
                textcoords="offset points",
            )
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(0.85, color="red", lw=0.8, ls="--", label="target 0.85")
    ax.set_ylabel("radostdb rate / rados rate")
    ax.set_title("radostdb / raw python-rados (median of rounds, min-max)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    ax = axes[1][0]  # latency by percentile, HdrHistogram style: x in "nines"
    marks = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]
    for b in backends:
        for wname, style in (("store", "-"), ("fetch", "--")):
            lat = (works.get(wname, {}).get("backends", {}).get(b) or {}).get("latency_us")
            if lat:
                xs = [-math.log10(1 - p / 100) for _, p in marks]
                ys = [lat[k] for k, _ in marks]
                ax.plot(xs, ys, style, marker="o", color=colors[b], label=f"{b} {wname}")
    ax.set_yscale("log")
    ax.set_ylabel("latency µs (log)")
    ax.set_xticks([-math.log10(1 - p / 100) for _, p in marks], [k for k, _ in marks])
    ax.set_xlabel("percentile")
    ax.set_title("latency distribution: store (solid), fetch (dashed)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)

    ax = axes[1][1]
    sc = doc.get("scale")
    if sc:
        sizes = [int(s) for s in sc["results"]]
        for b in backends:
            for wname, style in (("store", "-"), ("fetch", "--")):
                ys = [
                    (sc["results"][str(s)][wname]["backends"].get(b) or {}).get("rate")
                    for s in sizes
                ]
                if all(ys):
                    ax.plot(
                        sizes,
                        [1e6 / y for y in ys],
                        style,
                        marker="o",
                        color=colors[b],
                        label=f"{b} {wname}",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("records in the database (log)")
        ax.set_ylabel("µs per operation (log)")
        ax.set_title("per-op cost as the database grows: store (solid), fetch (dashed)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    else:  # no scale run: p50 and p99 per workload, radostdb against rados
        names_l = [
            w
            for w in names
            if any((works[w]["backends"].get(b) or {}).get("latency_us") for b in CLUSTER_BACKENDS)
        ]
        for i, b in enumerate(b for b in CLUSTER_BACKENDS if b in backends):
            for key, alpha in (("p99", 0.35), ("p50", 1.0)):
                ys = [
                    ((works[w]["backends"].get(b) or {}).get("latency_us") or {}).get(key, 0)
                    for w in names_l
                ]
                xs = [j - 0.2 + 0.4 * i for j in range(len(names_l))]
                ax.bar(xs, ys, 0.4, color=colors[b], alpha=alpha, label=f"{b} {key}")
        ax.set_xticks(range(len(names_l)), names_l, rotation=35, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("latency µs per call (log)")
        ax.set_title("latency per call: p50 (solid) and p99 (light)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    env = doc["environment"]
    fig.suptitle(
        f"radostdb-bench {doc['spec']['records']} records, {doc['spec']['clients']} "
        f"client(s); {env.get('osds', '?')} {env.get('objectstore') or ''} OSD(s), "
        f"{env.get('cpus')} CPUs"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- command ----------------------------------------------------------------------
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
    help="Operations per workload, backend and client (over all rounds).",
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
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes running each workload at once.",
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
    help="Draw rates, ratios, latencies and scale to a PNG.",
)
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
def main(
    conf: str | None,
    pool: str,
    client_id: str,
    records: int,
    ops: int,
    rounds: int,
    key_size: int,
    value_size: int,
    clients: int,
    backends: tuple[str, ...],
    workloads: tuple[str, ...],
    scale: bool | None,
    scale_sizes: str | None,
    quick: bool,
    seed: int,
    json_path: str | None,
    plot_path: str | None,
    quiet: bool,
) -> None:
    """Measure radostdb next to raw librados, local TDB and LMDB.

    Every workload runs on every backend in interleaved rounds; the table
    shows rates, the radostdb/rados ratio and latency percentiles.

    \b
    Examples:
      radostdb-bench --quick
      radostdb-bench --clients 4 --workload store --workload fetch
      radostdb-bench --value-size 4096 --json out.json --plot out.png
      radostdb-bench --records 1000000 --scale --workload store
    """
    import rados
    from rich.console import Console

    if quick:
        records, ops, rounds = min(records, 2000), min(ops, 600), min(rounds, 3)
    if scale is None:
        scale = not quick
    sizes = scale_sizes_for(records, scale_sizes) if scale else []
    chosen_b = [b for b in BACKENDS if b in (backends or BACKENDS)]
    chosen_w = [w for w in WORKLOADS if w in (workloads or WORKLOADS)]
    caps = radostdb_caps()
    spec = Spec(
        records=records,
        ops=ops,
        key_size=key_size,
        value_size=value_size,
        rounds=rounds,
        seed=seed,
        locked_updates="radostdb" not in chosen_b or "locks" in caps,
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=220)  # a pipe or file: never truncate columns
    started = time.time()
    namespace = f"radostdb-bench-{socket.gethostname()}-{os.getpid()}-{int(started)}"
    with Reporter(quiet) as rep, ExitStack() as stack:
        on_cluster = any(b in CLUSTER_BACKENDS for b in chosen_b)
        conf_, dev = stack.enter_context(cluster_for(conf, pool, rep)) if on_cluster else ("", None)
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="rtdb-bench-local-"))
        env = environment(conf_, pool, client_id, dev)
        if "error" in env:
            raise click.ClickException(f"cannot reach the cluster of {conf_}: {env['error']}")
        place = Place(conf_, pool, client_id, namespace, workdir)
        try:
            figures = bench(place, spec, chosen_b, chosen_w, clients, sizes, rep)
        except (OSError, RuntimeError, rados.Error) as exc:  # a cluster or database failure
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if on_cluster:
                try:
                    remove_namespace(conf_, client_id, pool, namespace)
                except Exception as exc:  # leave the figures; say what is left behind
                    rep.note(f"could not remove namespace {namespace!r} of pool {pool!r}: {exc}")
    doc = {
        "tool": "radostdb-bench",
        "schema": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "environment": env,
        "spec": {
            **asdict(spec),
            "clients": clients,
            "shards": SHARDS,
            "lmdb_batch": LMDB_BATCH,
            "scale_sizes": sizes,
            "namespace": namespace,
            "mixed": {"fetch": MIX[0], "store": MIX[1], "locked_update": 1 - sum(MIX)},
        },
        "backends": chosen_b,
        **figures,
    }
    for t in tables(doc):
        console.print(t)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=1)
    if plot_path:
        plot(doc, plot_path)


if __name__ == "__main__":
    main()
