"""Contention: N clients fighting over one lock, for a fixed time.

Scenarios (each client is its own process, all starting at one agreed
monotonic time and stopping at another):
- ``one-key`` (radostdb): each client loops chainlock(b"hot") -> get ->
  store the value + 1 -> chainunlock. At the end the counter must equal
  its start plus every client's count (``lost_updates`` is the
  difference: 0 when the lock excludes).
- ``one-key-do-locked`` (radostdb): the same counter with
  ``db.do_locked(b"hot", fn)``, Samba's dbwrap_do_locked: two round trips
  where one-key takes four (locked.py).
- ``transactions`` (radostdb): each client loops transaction_start -> read
  2 of ACCOUNTS account records -> store both (a transfer of 1) ->
  transaction_commit; one extra client runs read-only audit transactions
  (transaction_start, read every account, transaction_cancel) and checks
  that the sum never changes (``bad_audits``: 0 when transactions are
  isolated and atomic).
- ``etcd-one-key``: the one-key loop with python3-etcd3's Lock (taken with
  ``backends.etcd.acquire``), get, put, release: etcd's equivalent.
Every scenario runs at each client count asked for (``--contention
2,4,8,16``). Per scenario and count: each client's count, min/mean of the
counts (1.0 = fair), the aggregate rate, p50/p99 of the wait (the time
chainlock, transaction_start or Lock.acquire took), the handoff latency and,
for radostdb, the OSD ops per operation.
- handoff: from the moment a holder sends its release (chainunlock,
  transaction_commit or _cancel, Lock.release; the time just before the
  call) to the moment the next holder sees its grant (the call that took
  the lock returned). Clients stamp both with CLOCK_MONOTONIC, which every
  process of the host shares; a grant counts as a handoff when its taker
  was already waiting when the last other client's release was sent.
- OSD ops per operation: the OSDs' ``osd.op`` counter (opcount.py) read
  once every client has opened its handle and again after the last has
  stopped, divided by the operations (the auditor's included): the round
  trips a contended operation costs, and what each costs the OSDs.
A client that is still waiting GRACE seconds after the end is killed (it
is our child) and the scenario reports the error instead of figures.
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
class _Log:
    """One client's waits and its lock's grant and release moments."""

    def __init__(self) -> None:
        self.waits: list[float] = []  # µs
        self.asked: list[float] = []  # monotonic s: the lock was asked for
        self.granted: list[float] = []  # ... the call that took it returned
        self.released: list[float] = []  # ... the release was about to be sent

    def take(self, lock: Callable[[], Any]) -> None:
        t0 = time.monotonic()
        lock()
        t1 = time.monotonic()
        self.asked.append(t0)
        self.granted.append(t1)
        self.waits.append((t1 - t0) * 1e6)

    def give(self, release: Callable[[], Any]) -> None:
        self.released.append(time.monotonic())
        release()

    def out(self, **more: Any) -> dict[str, Any]:
        return {
            "count": len(self.released),
            "waits_us": self.waits,
            "asked": self.asked,
            "granted": self.granted,
            "released": self.released,
            **more,
        }


def _one_key(place: Place, client: int, db: Any, stop_at: float) -> dict[str, Any]:
    log = _Log()
    while time.monotonic() < stop_at:
        log.take(lambda: db.chainlock(HOT))
        db.store(HOT, str(int(db.get(HOT)) + 1).encode())
        log.give(lambda: db.chainunlock(HOT))
    return log.out()


def _one_key_do_locked(place: Place, client: int, db: Any, stop_at: float) -> dict[str, Any]:
    """one-key as Samba changes its hot records: db.do_locked (the lock
    and the read in one round trip, the store and the unlock in one). The
    grant is seen when the function is called, the release sent when it
    returns."""
    log = _Log()
    asked = 0.0

    def bump(rec: Any) -> None:
        granted = time.monotonic()
        log.asked.append(asked)
        log.granted.append(granted)
        log.waits.append((granted - asked) * 1e6)
        rec.store(str(int(rec.value) + 1).encode())
        log.released.append(time.monotonic())

    while time.monotonic() < stop_at:
        asked = time.monotonic()
        db.do_locked(HOT, bump)
    return log.out()


def _transfer(place: Place, client: int, db: Any, stop_at: float) -> dict[str, Any]:
    rng = random.Random(f"transfer:{client}")
    log = _Log()
    while time.monotonic() < stop_at:
        a, b = (_account(i) for i in rng.sample(range(ACCOUNTS), 2))
        log.take(db.transaction_start)
        va, vb = int(db.get(a)), int(db.get(b))
        db.store(a, str(va - 1).encode())
        db.store(b, str(vb + 1).encode())
        log.give(db.transaction_commit)
    return log.out()


def _audit(place: Place, client: int, db: Any, stop_at: float) -> dict[str, Any]:
    log, bad = _Log(), 0
    while time.monotonic() < stop_at:
        log.take(db.transaction_start)
        total = sum(int(db.get(_account(i))) for i in range(ACCOUNTS))
        log.give(db.transaction_cancel)
        bad += total != ACCOUNTS * BALANCE
    return log.out(bad_audits=bad)


def handoffs_us(outs: list[dict[str, Any]]) -> list[float]:
    """Release sent -> next holder's grant seen, µs, for every grant whose
    taker was already waiting when the last other client's release was sent
    (see the module comment)."""
    events = []
    for c, o in enumerate(outs):
        events += [(t, 1, c, 0.0) for t in o["released"]]
        events += [(g, 0, c, a) for a, g in zip(o["asked"], o["granted"], strict=True)]
    events.sort()
    last: tuple[float, int] | None = None  # (time, client) of the latest release
    out = []
    for t, kind, c, asked in events:
        if kind == 1:
            last = (t, c)
        elif last is not None and last[1] != c and asked <= last[0]:
            out.append((t - last[0]) * 1e6)
    return out


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

    log = _Log()
    while time.monotonic() < stop_at:
        log.take(lambda: acquire(db.c, db.lock, GRACE))
        value, _ = db.c.get(db.key)
        db.c.put(db.key, str(int(value) + 1).encode())
        log.give(db.lock.release)
    return log.out()


LOOPS: dict[str, Callable[[Place, int, Any, float], dict[str, Any]]] = {
    "one-key": _one_key,
    "one-key-do-locked": _one_key_do_locked,
    "transfer": _transfer,
    "audit": _audit,
    "etcd-one-key": _etcd_one_key,
}


def _open(place: Place, loop: str) -> Any:
    return _EtcdDb(place) if loop.startswith("etcd") else open_radostdb(place, _db_of(loop), False)


def _db_of(loop: str) -> str:
    return "contention-hot" if loop.startswith("one-key") else "contention-bank"


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


# -- client processes (also the watch scenario's, watching.py) -------------------
def spawn(procs: list[tuple[Any, Any]], target: Callable[..., None], *args: Any) -> None:
    """Start ``target(conn, *args)`` in a fresh interpreter; append the
    process and the parent's end of its pipe to ``procs``."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=target, args=(child, *args), daemon=True)
    p.start()
    child.close()
    procs.append((p, parent))


def await_ready(procs: list[tuple[Any, Any]], what: str) -> None:
    """Wait for every client's ("ready", None); RuntimeError if one failed
    or took READY_TIMEOUT."""
    for _, conn in procs:
        if not conn.poll(READY_TIMEOUT):
            raise RuntimeError(f"a {what} client did not open its handle")
        status, out = conn.recv()
        if status != "ready":
            raise RuntimeError(out)


def end_clients(procs: list[tuple[Any, Any]]) -> None:
    """Close the pipes and reap the clients (killed when still running)."""
    for p, conn in procs:
        conn.close()
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


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
    if scenario.startswith("one-key"):
        db.store(HOT, b"0")
    else:
        with db.transaction():
            for i in range(ACCOUNTS):
                db.store(_account(i), str(BALANCE).encode())

    def check() -> dict[str, Any]:
        try:
            if scenario.startswith("one-key"):
                return {"final": int(db.get(HOT))}
            return {"sum": sum(int(db.get(_account(i))) for i in range(ACCOUNTS))}
        finally:
            db.close()

    return check


def run_scenario(
    place: Place, scenario: str, clients: int, seconds: float, counter: Any = None
) -> dict[str, Any]:
    """One scenario with ``clients`` contending clients for ``seconds``;
    ``counter`` (opcount.OsdOps) counts the OSD ops of radostdb's."""
    loops = {
        "one-key": ["one-key"] * clients,
        "one-key-do-locked": ["one-key-do-locked"] * clients,
        "transactions": ["transfer"] * clients + ["audit"],
        "etcd-one-key": ["etcd-one-key"] * clients,
    }[scenario]
    check = _setup(place, scenario)
    procs: list[tuple[Any, Any]] = []
    results: list[tuple[str, Any]] = []
    try:
        for c, loop in enumerate(loops):
            spawn(procs, _client_main, place, loop, c)
        await_ready(procs, scenario)
        ops_before = counter.total() if counter is not None else None
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
        end_clients(procs)
    errors = [out for status, out in results if status != "ok"]
    ops = counter.total() - ops_before if counter is not None and not errors else None
    final = check()
    if errors:
        return {"clients": clients, "seconds": seconds, "error": "\n".join(errors), **final}
    outs = [out for _, out in results]
    workers = outs[:clients]  # the audit client, when there is one, comes last
    counts = [o["count"] for o in workers]
    waits = [w for o in workers for w in o["waits_us"]]
    secs = max(o["seconds"] for o in workers)
    lat = percentiles(waits)
    hand = percentiles(handoffs_us(outs))
    doc: dict[str, Any] = {
        "clients": clients,
        "seconds": secs,
        "counts": counts,
        "rate": sum(counts) / secs if secs > 0 else 0.0,
        "fairness_min_mean": fairness(counts),
        "wait_us": {k: lat[k] for k in ("p50", "p90", "p99", "max", "mean")} if lat else {},
        "handoff_us": {k: hand[k] for k in ("p50", "p99", "mean")} if hand else {},
        "handoffs": int(hand.get("count", 0)),
        **final,
    }
    if ops is not None:
        done = sum(o["count"] for o in outs)
        doc["osd_ops_per_op"] = ops / done if done else None
    if scenario in ("one-key", "one-key-do-locked", "etcd-one-key"):
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


HEADLINE = 4  # the client count whose scenarios are the document's "scenarios"


def contention(
    place: Place, counts: list[int], seconds: float, with_etcd: bool, rep: Reporter
) -> dict[str, Any]:
    """Every scenario at every client count, one after the other."""
    from .opcount import OsdOps

    scenarios = ["one-key", "one-key-do-locked", "transactions"] + (
        ["etcd-one-key"] if with_etcd else []
    )
    shown = ",".join(map(str, counts))
    rep.phase(
        f"contention: {shown} clients, {seconds:g}s per scenario", len(scenarios) * len(counts)
    )
    headline = HEADLINE if HEADLINE in counts else max(counts)
    out: dict[str, Any] = {
        "clients": headline,
        "client_counts": counts,
        "seconds": seconds,
        "scenarios": {},
        "by_clients": {},
    }
    counter = OsdOps(place.conf, place.client_id)
    try:
        for n in counts:
            runs: dict[str, Any] = {}
            for s in scenarios:
                rep.step(f"contention: {s}, {n} clients")
                runs[s] = run_scenario(
                    place, s, n, seconds, None if s.startswith("etcd") else counter
                )
                rep.advance()
            out["by_clients"][str(n)] = runs
    finally:
        counter.close()
    out["scenarios"] = out["by_clients"][str(headline)]
    return out
