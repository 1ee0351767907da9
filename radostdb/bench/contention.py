"""Contention: N clients fighting over one lock, for a fixed time.

Scenarios (each client is its own process, all starting at one agreed
monotonic time and stopping at another):
- ``one-key`` (radostdb): each client loops chainlock(b"hot") -> get ->
  store the value + 1 -> chainunlock. At the end the counter must equal
  its start plus every client's count (``lost_updates`` is the
  difference: 0 when the lock excludes).
- ``transactions`` (radostdb): each client loops transaction_start -> read
  2 of ACCOUNTS account records -> store both (a transfer of 1) ->
  transaction_commit; one extra client runs read-only audit transactions
  (transaction_start, read every account, transaction_cancel) and checks
  that the sum never changes (``bad_audits``: 0 when transactions are
  isolated and atomic).
- ``etcd-one-key``: the one-key loop with python3-etcd3's Lock (taken with
  ``backends.etcd.acquire``), get, put, release: etcd's equivalent.
Per scenario: each client's count, min/mean of the counts (1.0 = fair),
the aggregate rate, and p50/p99 of the wait (the time chainlock,
transaction_start or Lock.acquire took). A client that is still waiting
GRACE seconds after the end is killed (it is our child) and the scenario
reports the error instead of figures.
"""

from __future__ import annotations

import multiprocessing
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

from .backends.ceph import open_radostdb
from .progress import Reporter
from .spec import Place
from .stats import fairness, percentiles

ACCOUNTS = 32
BALANCE = 1000
HOT = b"hot"
GRACE = 60.0
READY_TIMEOUT = 60.0


def _account(i: int) -> bytes:
    return f"account{i:03d}".encode()


# -- one scenario's client loops: (place, client, stop_at) -> result ------------
def _one_key(place: Place, client: int, db: Any, stop_at: float) -> dict[str, Any]:
    waits, count, clock = [], 0, time.perf_counter
    while time.monotonic() < stop_at:
        t0 = clock()
        db.chainlock(HOT)
        waits.append((clock() - t0) * 1e6)
        db.store(HOT, str(int(db.get(HOT)) + 1).encode())
        db.chainunlock(HOT)
        count += 1
    return {"count": count, "waits_us": waits}


def _transfer(place: Place, client: int, db: Any, stop_at: float) -> dict[str, Any]:
    rng = random.Random(f"transfer:{client}")
    waits, count, clock = [], 0, time.perf_counter
    while time.monotonic() < stop_at:
        a, b = (_account(i) for i in rng.sample(range(ACCOUNTS), 2))
        t0 = clock()
        db.transaction_start()
        waits.append((clock() - t0) * 1e6)
        va, vb = int(db.get(a)), int(db.get(b))
        db.store(a, str(va - 1).encode())
        db.store(b, str(vb + 1).encode())
        db.transaction_commit()
        count += 1
    return {"count": count, "waits_us": waits}


def _audit(place: Place, client: int, db: Any, stop_at: float) -> dict[str, Any]:
    waits, count, bad, clock = [], 0, 0, time.perf_counter
    while time.monotonic() < stop_at:
        t0 = clock()
        db.transaction_start()
        waits.append((clock() - t0) * 1e6)
        total = sum(int(db.get(_account(i))) for i in range(ACCOUNTS))
        db.transaction_cancel()
        count += 1
        bad += total != ACCOUNTS * BALANCE
    return {"count": count, "waits_us": waits, "bad_audits": bad}


class _EtcdDb:
    """The etcd side of one-key: a key and a Lock under the bench's prefix."""

    def __init__(self, place: Place) -> None:
        from .backends.etcd import LOCK_TTL, client

        self.c = client(place.etcd)
        self.key = f"/{place.namespace}/contention/hot".encode()
        self.lock = self.c.lock(f"{place.namespace}/contention/hot", ttl=LOCK_TTL)

    def close(self) -> None:
        self.c.close()


def _etcd_one_key(place: Place, client: int, db: Any, stop_at: float) -> dict[str, Any]:
    from .backends.etcd import acquire

    waits, count, clock = [], 0, time.perf_counter
    while time.monotonic() < stop_at:
        t0 = clock()
        acquire(db.c, db.lock, GRACE)
        waits.append((clock() - t0) * 1e6)
        value, _ = db.c.get(db.key)
        db.c.put(db.key, str(int(value) + 1).encode())
        db.lock.release()
        count += 1
    return {"count": count, "waits_us": waits}


LOOPS: dict[str, Callable[[Place, int, Any, float], dict[str, Any]]] = {
    "one-key": _one_key,
    "transfer": _transfer,
    "audit": _audit,
    "etcd-one-key": _etcd_one_key,
}


def _open(place: Place, loop: str) -> Any:
    return _EtcdDb(place) if loop.startswith("etcd") else open_radostdb(place, _db_of(loop), False)


def _db_of(loop: str) -> str:
    return "contention-hot" if loop == "one-key" else "contention-bank"


def _client_main(conn: Any, place: Place, loop: str, client: int) -> None:
    """A contending client: open its handle, say ready, run until told."""
    db = None
    try:
        db = _open(place, loop)
        conn.send(("ready", None))
        stop_at = conn.recv()
        start = time.monotonic()
        out = LOOPS[loop](place, client, db, stop_at)
        out["seconds"] = time.monotonic() - start
        conn.send(("ok", out))
    except Exception:
        conn.send(("error", f"{loop} client {client}: {traceback.format_exc()}"))
    finally:
        if db is not None:
            db.close()


# -- the parent ---------------------------------------------------------------
def _setup(place: Place, scenario: str) -> Callable[[], dict[str, Any]]:
    """Create the scenario's data; return the check run after it."""
    if scenario == "etcd-one-key":
        e = _EtcdDb(place)
        e.c.put(e.key, b"0")

        def check_etcd() -> dict[str, Any]:
            value, _ = e.c.get(e.key)
            e.close()
            return {"final": int(value)}

        return check_etcd
    db = open_radostdb(place, _db_of(scenario), True)
    if scenario == "one-key":
        db.store(HOT, b"0")
    else:
        with db.transaction():
            for i in range(ACCOUNTS):
                db.store(_account(i), str(BALANCE).encode())

    def check() -> dict[str, Any]:
        try:
            if scenario == "one-key":
                return {"final": int(db.get(HOT))}
            return {"sum": sum(int(db.get(_account(i))) for i in range(ACCOUNTS))}
        finally:
            db.close()

    return check


def run_scenario(place: Place, scenario: str, clients: int, seconds: float) -> dict[str, Any]:
    """One scenario with ``clients`` contending clients for ``seconds``."""
    loops = {
        "one-key": ["one-key"] * clients,
        "transactions": ["transfer"] * clients + ["audit"],
        "etcd-one-key": ["etcd-one-key"] * clients,
    }[scenario]
    check = _setup(place, scenario)
    ctx = multiprocessing.get_context("spawn")
    procs: list[tuple[Any, Any]] = []
    results: list[tuple[str, Any]] = []
    try:
        for c, loop in enumerate(loops):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_client_main, args=(child, place, loop, c), daemon=True)
            p.start()
            child.close()
            procs.append((p, parent))
        for _, conn in procs:
            if not conn.poll(READY_TIMEOUT):
                raise RuntimeError(f"a {scenario} client did not open its handle")
            status, out = conn.recv()
            if status != "ready":
                raise RuntimeError(out)
        stop_at = time.monotonic() + 0.05 + seconds
        for _, conn in procs:
            conn.send(stop_at)
        for c, (_, conn) in enumerate(procs):
            left = stop_at + GRACE - time.monotonic()
            if not conn.poll(max(0.0, left)):
                results.append(("error", f"client {c} still busy {GRACE:.0f}s after the end"))
                continue
            results.append(conn.recv())
    except (RuntimeError, EOFError, OSError) as exc:
        results.append(("error", str(exc)))
    finally:
        for p, conn in procs:
            conn.close()
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    errors = [out for status, out in results if status != "ok"]
    final = check()
    if errors:
        return {"clients": clients, "seconds": seconds, "error": "\n".join(errors), **final}
    outs = [out for _, out in results]
    workers = outs[:clients]  # the audit client, when there is one, comes last
    counts = [o["count"] for o in workers]
    waits = [w for o in workers for w in o["waits_us"]]
    secs = max(o["seconds"] for o in workers)
    lat = percentiles(waits)
    doc: dict[str, Any] = {
        "clients": clients,
        "seconds": secs,
        "counts": counts,
        "rate": sum(counts) / secs if secs > 0 else 0.0,
        "fairness_min_mean": fairness(counts),
        "wait_us": {k: lat[k] for k in ("p50", "p90", "p99", "max", "mean")} if lat else {},
        **final,
    }
    if scenario in ("one-key", "etcd-one-key"):
        doc["lost_updates"] = sum(counts) - final["final"]
    if scenario == "transactions":
        audit = outs[clients]
        alat = percentiles(audit["waits_us"])
        doc["audit"] = {
            "count": audit["count"],
            "bad_audits": audit["bad_audits"],
            "wait_us": {k: alat[k] for k in ("p50", "p99")} if alat else {},
        }
        doc["sum_ok"] = final["sum"] == ACCOUNTS * BALANCE
    return doc


def contention(
    place: Place, clients: int, seconds: float, with_etcd: bool, rep: Reporter
) -> dict[str, Any]:
    """Every scenario, one after the other."""
    scenarios = ["one-key", "transactions"] + (["etcd-one-key"] if with_etcd else [])
    rep.phase(f"contention: {clients} clients, {seconds:g}s per scenario", len(scenarios))
    out: dict[str, Any] = {"clients": clients, "seconds": seconds, "scenarios": {}}
    for s in scenarios:
        rep.step(f"contention: {s}, {clients} clients")
        out["scenarios"][s] = run_scenario(place, s, clients, seconds)
        rep.advance()
    return out
