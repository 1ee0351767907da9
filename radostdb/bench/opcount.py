"""RADOS operations per call, counted on the OSDs.

method: every OSD's perf counter ``osd.op`` (client operations the OSD
received as primary; replication sub-ops and admin commands are not in it)
is read with ``perf dump`` (``ceph tell osd.N perf dump``, sent with
python-rados ``osd_command``: no manager needed) before and after a chunk
of calls that ONE client (this process) runs with nothing else timed
running; the delta summed over the OSDs, divided by the calls, is the
figure. Untimed set-up of the chunk is done before the first reading.
Work a call leaves running after it returns (radostdb's asynchronous
clean-up after a commit) belongs to it: each reading waits until the
counter has stood still for SETTLE_S seconds (at most SETTLE_MAX_S). For
radostdb the quiet period is longer than the idle time after which a
handle gives back its cached transaction lock (txnlock.CACHE_IDLE), so a
chunk always holds the lock's one take and one release, and the settling
of the last transaction that rides on the release: the figure no longer
depends on whether that release fell inside the reading (it moved between
9 and 14 ops per txn-1000 before). Those one-time ops are spread over at
least TXN_CALLS transactions, as a client running transactions back to
back spreads them over its run. Ops that come with time rather than with
calls (lease renewals of held locks every third of a lease, watch pings)
can still land in a chunk: each chunk is counted REPEATS times and the
least count is the figure (all are in the JSON). The
OSDs' background rate (watch pings of open handles, lock renewals, other
clients of a shared cluster) is measured over BASELINE_S seconds first and
reported beside it: on an idle cluster it is zero or close to it.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from ..txnlock import CACHE_IDLE
from .backends.ceph import connect
from .progress import Reporter
from .runner import Runner
from .spec import OPS_FACTOR, Spec
from .workloads import WORKLOADS, Ctx

COUNTED = ("radostdb", "rados", "cephsqlite")  # backends whose calls reach the OSDs
CALLS = 200  # records per counted chunk (at least 2 calls; scaled like --ops)
ROUND = 1_000_000  # a round number no timed round uses: its own fresh keys
BASELINE_S = 1.0
TXN_CALLS = 20  # transactions per counted chunk at least
REPEATS = 3  # counts of each chunk; the least is the figure
SETTLE_S = 0.1
SETTLE_MAX_S = 5.0
METHOD = (
    "delta of the OSDs' perf counter osd.op (perf dump via osd_command, summed "
    "over OSDs) around a chunk of calls by one client, each reading once the "
    "counter stood still (radostdb: longer than its cached transaction lock's "
    f"{CACHE_IDLE:g} s idle release, which the chunk thus always includes; "
    f"transactions: at least {TXN_CALLS} a chunk), divided by the calls; the "
    f"least of {REPEATS} counts"
)


class OsdOps:
    """Reads the total of ``osd.op`` over every OSD of the cluster."""

    def __init__(self, conf: str, client_id: str) -> None:
        self.conn = connect(conf, client_id)
        ret, out, err = self.conn.mon_command(
            json.dumps({"prefix": "osd ls", "format": "json"}), b""
        )
        if ret != 0:
            self.conn.shutdown()
            raise RuntimeError(f"osd ls failed: {err}")
        self.osds: list[int] = json.loads(out)

    def total(self) -> int:
        n = 0
        for osd in self.osds:
            ret, out, err = self.conn.osd_command(
                osd, json.dumps({"prefix": "perf dump", "format": "json"}), b""
            )
            if ret != 0:
                raise RuntimeError(f"perf dump of osd.{osd} failed: {err}")
            n += int(json.loads(out)["osd"]["op"])
        return n

    def settled(self, quiet: float = SETTLE_S) -> int:
        """The total once it has not moved for ``quiet`` seconds."""
        deadline = time.monotonic() + SETTLE_MAX_S
        last = self.total()
        while True:
            time.sleep(quiet)
            now = self.total()
            if now == last or time.monotonic() > deadline:
                return now
            last = now

    def close(self) -> None:
        self.conn.shutdown()


def count_ops(
    runner: Runner, backends: list[str], workloads: list[str], db: str, rep: Reporter
) -> dict[str, Any]:
    """OSD operations per call (and per record) of every workload on the
    backends in ``COUNTED``, using the parent's handles on ``db``."""
    spec: Spec = runner.spec
    counted = [b for b in backends if b in COUNTED]
    place = runner.place
    counter = OsdOps(place.conf, place.client_id)
    try:
        before = counter.total()
        time.sleep(BASELINE_S)
        background = (counter.total() - before) / BASELINE_S
        out: dict[str, Any] = {
            "method": METHOD,
            "osds": counter.osds,
            "background_ops_per_s": background,
            "workloads": {},
        }
        rep.phase("counting OSD ops per call", len(workloads) * len(counted))
        for wname in workloads:
            w = WORKLOADS[wname]
            res: dict[str, Any] = {}
            for name in counted:
                rep.step(f"counting OSD ops: {wname} on {name}")
                b = runner.handles[(name, db)]
                why = b.unsupported(w, spec)
                if why:
                    res[name] = {"n/a": why}
                    rep.advance()
                    continue
                calls = (
                    1
                    if w.walk
                    else max(
                        2 if w.size == 1 else TXN_CALLS,
                        math.ceil(CALLS * OPS_FACTOR.get(name, 1.0) / w.size),
                    )
                )
                ctx = Ctx(spec, 0, 1, ROUND, calls, spec.records)
                quiet = CACHE_IDLE + 2 * SETTLE_S if name == "radostdb" else SETTLE_S
                runs = []
                first: int | None = None
                for _ in range(REPEATS):
                    if w.prepare is not None:
                        w.prepare(b, ctx)
                        first = None  # the set-up's ops are not the chunk's
                    if first is None:
                        first = counter.settled(quiet)
                    chunk = w.run(b, ctx)
                    after = counter.settled(quiet)
                    runs.append(after - first)
                    first = after  # no set-up between: the next chunk starts here
                ops = min(runs)
                records = chunk.ops  # records for traversals and transactions
                res[name] = {
                    "calls": calls,
                    "records": records,
                    "osd_ops": ops,
                    "osd_ops_runs": runs,
                    "per_call": ops / calls,
                    "per_record": ops / records if records else None,
                }
                rep.advance()
            out["workloads"][wname] = res
        return out
    finally:
        counter.close()
