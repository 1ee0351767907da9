"""What one process costs: many processes per host, the Samba shape (smbd
forks a child per client, and each opens its databases).

method: for each kind of process, N of them are started as fresh
interpreters and each opens what it needs and reports its own open time
(import and open, in the process); the parent then reads each one's
resident memory and thread count from /proc. The OSDs' op counter
(opcount.OsdOps: ``osd.op`` summed over OSDs) is read over IDLE_WINDOW
seconds while all N sit idle, after SETTLE seconds (longer than a radostdb
process keeps an unused lock object's watch, wakeup.WATCH_IDLE), and
divided by N: the cluster load of one idle process (not with ``idle``
False, as in a --quick run: the settling alone takes SETTLE). Kinds:

- ``tdb``: python3-tdb with one local file open (no cluster: the floor of
  a Python process);
- ``rados``: a bare python-rados client, connected, one I/O context (what
  librados costs by itself);
- ``radostdb``: DATABASES databases open with plain handles, each then
  used (a store, a record lock, a transaction; the open time ends before);
- ``radostdb-cif``: the same opened with CLEAR_IF_FIRST, as Samba opens its
  volatile databases (locking.tdb, brlock.tdb): each such handle watches
  its database's header while open, and librados pings every watch.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..wakeup import WATCH_IDLE
from .opcount import OsdOps
from .progress import Reporter
from .spec import Place

DATABASES = 3
IDLE_WINDOW = 10.0
SETTLE = WATCH_IDLE + 2.0
KINDS = ("tdb", "rados", "radostdb", "radostdb-cif")

_CHILD = {
    "tdb": """
import os, sys, time
t0 = time.perf_counter()
import tdb
db = tdb.Tdb(sys.argv[1] + "/p%d.tdb" % os.getpid(), 0, tdb.DEFAULT, os.O_RDWR | os.O_CREAT)
db.store(b"k", b"v")
""",
    "rados": """
import os, sys, time
t0 = time.perf_counter()
import rados
conn = rados.Rados(conffile=os.environ["CEPH_CONF"], name="client." + os.environ["RADOSTDB_ID"])
conn.connect()
io = conn.open_ioctx(os.environ["RADOSTDB_POOL"])
io.set_namespace(os.environ["BENCH_NAMESPACE"])
""",
    "radostdb": """
import os, sys, time
t0 = time.perf_counter()
import radostdb
flags = radostdb.CLEAR_IF_FIRST if sys.argv[2] == "cif" else radostdb.DEFAULT
ns = os.environ["BENCH_NAMESPACE"]
dbs = [radostdb.Tdb("procs-%d-%d" % (os.getpid(), i), 0, flags, os.O_RDWR | os.O_CREAT,
                    namespace=ns) for i in range(int(sys.argv[3]))]
opened = time.perf_counter()
for db in dbs:
    db.store(b"k", b"v")
    db.chainlock(b"k")
    db.chainunlock(b"k")
    with db.transaction():
        db.store(b"t", b"1")
""",
}
_READY = """
print("%.2f" % (((globals().get("opened") or time.perf_counter()) - t0) * 1000), flush=True)
sys.stdin.readline()
"""


def _status(pid: int) -> tuple[float, int]:
    """(resident MiB, threads) of a process."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def _measure(
    kind: str, n: int, place: Place, workdir: str, counter: OsdOps | None, rep: Reporter
) -> dict[str, Any]:
    """Start ``n`` processes of ``kind``; their medians (and idle load)."""
    code = _CHILD["radostdb" if kind.startswith("radostdb") else kind] + _READY
    args = [workdir, "cif" if kind == "radostdb-cif" else "plain", str(DATABASES)]
    env = dict(
        os.environ,
        CEPH_CONF=place.conf,
        RADOSTDB_POOL=place.pool,
        RADOSTDB_ID=place.client_id,
        BENCH_NAMESPACE=place.namespace,
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(n)
    ]
    try:
        opens = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if not line:
                raise RuntimeError(f"a {kind} process failed to open (exit {p.wait()})")
            opens.append(float(line))
            rep.advance()
        rss, threads = zip(*(_status(p.pid) for p in procs), strict=True)
        idle = None
        if counter is not None and kind != "tdb":
            rep.step(f"processes: {n} idle {kind} ({SETTLE + IDLE_WINDOW:.0f} s)")
            time.sleep(SETTLE)
            before = counter.total()
            time.sleep(IDLE_WINDOW)
            idle = (counter.total() - before) / IDLE_WINDOW / n
        rss_after, threads_after = zip(*(_status(p.pid) for p in procs), strict=True)
        return {
            "processes": n,
            "open_ms": statistics.median(opens),
            "rss_mib": statistics.median(rss),
            "threads": statistics.median(threads),
            "rss_mib_idle": statistics.median(rss_after),
            "threads_idle": statistics.median(threads_after),
            "idle_osd_ops_per_s": idle,
        }
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def process_cost(place: Place, n: int, rep: Reporter, idle: bool = True) -> dict[str, Any]:
    """Per-process cost of each kind (see the module comment)."""
    kinds = [k for k in KINDS if place.conf or k == "tdb"]
    rep.phase(f"processes: {n} per kind, {', '.join(kinds)}", n * len(kinds))
    counter = OsdOps(place.conf, place.client_id) if place.conf and idle else None
    out: dict[str, Any] = {
        "databases": DATABASES,
        "idle_window_s": IDLE_WINDOW,
        "settle_s": SETTLE,
        "kinds": {},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="rtdb-procs-") as workdir:
            for kind in kinds:
                rep.step(f"processes: starting {n} {kind}")
                out["kinds"][kind] = _measure(kind, n, place, workdir, counter, rep)
    finally:
        if counter is not None:
            counter.close()
    return out
