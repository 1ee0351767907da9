"""Where the figures come from, and the services a run sets up and tears
down: the Ceph cluster (configured, or a throwaway DevCluster with --osds
and --store), the etcd (``--etcd URL``, or a throwaway one), and the
namespace and key prefix everything is written under."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import cluster as clustermod
from .backends.ceph import connect
from .progress import Reporter


def environment(conf: str, pool: str, client_id: str, dev: Any) -> dict[str, Any]:
    """Machine, software and cluster; ``error`` when the cluster cannot be
    reached."""
    from .. import __version__, codec

    env: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
        "radostdb": __version__,
        "native_codec": codec.NATIVE,
        "sqlite": sqlite3.sqlite_version,
        "conf": conf,
        "pool": pool,
        "throwaway_cluster": dev is not None,
        "daemon_allocator": dev.allocator if dev is not None else None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu_model"] = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None
            )
    except OSError:
        pass
    for mod in ("lmdb", "tdb", "etcd3"):
        try:
            m = __import__(mod)
            env[f"{mod}_version"] = (
                ".".join(map(str, m.version())) if mod == "lmdb" else getattr(m, "__version__", "?")
            )
        except ImportError:
            env[f"{mod}_version"] = None
    if not conf:  # no cluster backend
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


def etcd_environment(url: str, throwaway: Any) -> dict[str, Any]:
    """The etcd server's version and where its data lives."""
    from .backends.etcd import client

    out: dict[str, Any] = {"url": url, "throwaway": throwaway is not None}
    if throwaway is not None:
        out["pid"] = throwaway.pid
        out["data_dir"] = throwaway.dir
        out["tmpfs"] = throwaway.dir.startswith("/dev/shm")
    c = client(url, timeout=10)
    try:
        out["version"] = c.status().version
    except Exception as exc:
        out["error"] = str(exc)
    finally:
        c.close()
    return out


# What one record costs a throwaway OSD's store beyond its key and value
# (record header, omap key encoding, the store's per-entry overhead), with
# headroom: bluestore's block file is sized with it.
STORE_OVERHEAD = 320
# A memstore OSD keeps every record in its memory, at several times that:
# measured here, 13.6 GB resident at 7.5 million 116-byte records while they
# loaded and 22.2 GB at 10 million while they split (about 2.2 KB a record,
# 4x store_bytes). memstore's own count of used bytes leaves omap out (the
# 10-million run that once looked like it filled 4 GiB of memstore was its
# count gone below zero: devcluster.MEMSTORE_NEVER_FULL).
MEMSTORE_RAM_FACTOR = 4
MEMSTORE_MIN = 4 << 30
BLUESTORE_MIN = 16 << 30
RAM_SHARE = 0.6  # of the machine's available memory a memstore OSD may take


def store_bytes(records: int, record_bytes: int) -> int:
    """The object store a throwaway cluster needs for ``records`` records of
    ``record_bytes`` (key and value) over all backends on the cluster: a
    bluestore OSD that runs full stops every write (the client waits,
    forever)."""
    return int(records * (record_bytes + STORE_OVERHEAD) * 1.25)


def available_memory() -> int:
    """MemAvailable of /proc/meminfo, in bytes (0 if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def cluster_for(
    conf: str | None,
    pool: str,
    osds: int,
    store: str,
    allocator: str,
    rep: Reporter,
    need_bytes: int = 0,
) -> Iterator[tuple[str, Any]]:
    """The configured cluster, or a throwaway one started (and stopped)
    here, its object store sized for ``need_bytes`` (store_bytes); memstore
    OSDs that would not fit in memory (MEMSTORE_RAM_FACTOR) are refused
    (RuntimeError)."""
    conf = conf or os.environ.get("CEPH_CONF")
    if conf or os.path.exists("/etc/ceph/ceph.conf"):
        yield conf or "/etc/ceph/ceph.conf", None
        return
    from ..devcluster import DevCluster

    per_osd = need_bytes // max(1, osds) * min(3, osds)  # the pool keeps min(3, N) copies
    memstore_bytes = max(MEMSTORE_MIN, per_osd)
    if store == "memstore":
        avail = available_memory()
        ram = per_osd * osds * MEMSTORE_RAM_FACTOR
        if avail and ram > RAM_SHARE * avail:
            raise RuntimeError(
                f"the records asked for need about {ram / 2**30:.1f} GiB of memory in "
                f"memstore OSDs, more than {RAM_SHARE:.0%} of the {avail / 2**30:.1f} GiB "
                "available: use --store bluestore (on disk), or fewer records"
            )
    d = tempfile.mkdtemp(prefix="rtdb-bench-", dir="/tmp")
    dev = DevCluster(
        d,
        osds=osds,
        store=store,
        pool=pool,
        allocator=allocator,
        memstore_bytes=memstore_bytes,
        bluestore_bytes=max(BLUESTORE_MIN, 2 * per_osd),
    )
    rep.note(
        f"no cluster configured: starting a throwaway one ({osds} {store} OSD(s), "
        f"{dev.allocator} malloc) in {d}"
    )
    try:
        dev.up(owner=os.getpid())
        yield str(dev.conf), dev
    finally:
        # close every handle while the cluster still answers: at exit an
        # unwatch sent to a stopped cluster would wait forever
        clustermod.shutdown_all(final=False)
        dev.down()
        shutil.rmtree(d, ignore_errors=True)


@contextmanager
def etcd_for(url: str | None, rep: Reporter) -> Iterator[tuple[str, Any]]:
    """The etcd at ``url``, or a throwaway one started (and stopped) here."""
    if url:
        yield url, None
        return
    from .etcdserver import EtcdServer

    server = EtcdServer()
    try:
        server.start()
        rep.note(f"etcd: a throwaway single node at {server.url} (pid {server.pid}, {server.dir})")
        yield server.url, server
    finally:
        server.stop()


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
