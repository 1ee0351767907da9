"""What a database created with Samba's hash sizes costs (issue 23): tdb's
``hash_size`` is a hint radostdb records and answers, not its shard count,
so every figure here should be the same for every size.

method: for each hash size, a database is created with it (tdb's call:
``Tdb(name, hash_size, DEFAULT, O_RDWR | O_CREAT | O_TRUNC)``) and RECORDS
records are stored. Then, ROUNDS times, a fresh handle (opened in this
process, whose cluster connection it shares; no cached transaction lock,
no lock object watched yet) is timed doing:
open; its first transaction (start, TXN_RECORDS stores, commit); a second
one (the transaction lock now cached); a traversal of every record; close.
The medians are reported, with each as a multiple of the round-trip time
of the same run (``rtt``: median of RTT_CALLS one-key omap reads through
bare python-rados on one object, measured between the rounds), and the
OSD ops of one fresh handle's open + first transaction + close (the delta of
the OSDs' op counter, opcount.OsdOps, around them, once the counter stood
still).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from .opcount import OsdOps
from .progress import Reporter
from .spec import Place

HASH_SIZES = (0, 1031, 10007, 65536)  # tdb's default, and Samba's larger ones
RECORDS = 500
TXN_RECORDS = 10
ROUNDS = 3
RTT_CALLS = 50
STEPS = ("open", "first_txn", "cached_txn", "traverse", "close")


def _open(place: Place, name: str, hash_size: int, create: bool) -> Any:
    import radostdb

    flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
    return radostdb.Tdb(
        name,
        hash_size,
        radostdb.DEFAULT,
        flags,
        conf=place.conf,
        client_id=place.client_id,
        pool=place.pool,
        namespace=place.namespace,
    )


def _txn(db: Any, rnd: int) -> None:
    db.transaction_start()
    for i in range(TXN_RECORDS):
        db.store(b"hs/%03d" % i, b"round %d" % rnd)
    db.transaction_commit()


def _rtt(io: Any, obj: str) -> float:
    """Median seconds of one omap read of one key (python-rados)."""
    import rados

    times = []
    for _ in range(RTT_CALLS):
        t0 = time.perf_counter()
        with rados.ReadOpCtx() as op:
            it, _ = io.get_omap_vals_by_keys(op, ("k",))
            io.operate_read_op(op, obj)
            list(it)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fresh_handle(place: Place, name: str, rnd: int) -> dict[str, float]:
    """Seconds of each step of one fresh handle (see the module comment)."""
    out = {}
    t0 = time.perf_counter()
    db = _open(place, name, 0, False)
    out["open"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _txn(db, 2 * rnd)
    out["first_txn"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _txn(db, 2 * rnd + 1)
    out["cached_txn"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = sum(1 for _ in db.items())
    out["traverse"] = time.perf_counter() - t0
    if n != RECORDS + TXN_RECORDS:
        raise RuntimeError(f"traversal of {name} found {n} records, not {RECORDS + TXN_RECORDS}")
    t0 = time.perf_counter()
    db.close()
    out["close"] = time.perf_counter() - t0
    return out


def hash_sizes(place: Place, sizes: list[int], rep: Reporter) -> dict[str, Any]:
    """The figures of every hash size (see the module comment)."""
    from .backends.ceph import connect

    conn = connect(place.conf, place.client_id)
    counter = OsdOps(place.conf, place.client_id)
    io = conn.open_ioctx(place.pool)
    io.set_namespace(place.namespace)
    floor = f"raw.hashsizes.{os.getpid()}"
    import rados

    with rados.WriteOpCtx() as op:
        io.set_omap(op, ("k",), (b"v" * 100,))
        io.operate_write_op(op, floor)
    out: dict[str, Any] = {
        "records": RECORDS,
        "txn_records": TXN_RECORDS,
        "rounds": ROUNDS,
        "sizes": {},
    }
    rep.phase("hash sizes", len(sizes) * (ROUNDS + 1))
    try:
        for hs in sizes:
            name = os.path.join(place.workdir, f"hashsize-{hs}.tdb")
            db = _open(place, name, hs, True)
            db.transaction_start()
            for i in range(RECORDS):
                db.store(b"rec/%05d" % i, b"x" * 100)
            db.transaction_commit()
            answered, shards = db.hash_size, db._storage.nshards
            db.close()
            rows, rtts = [], []
            for rnd in range(ROUNDS):
                rep.step(f"hash size {hs}: round {rnd + 1}/{ROUNDS}")
                rtts.append(_rtt(io, floor))
                rows.append(_fresh_handle(place, name, rnd))
                rep.advance()
            rep.step(f"hash size {hs}: OSD ops of a fresh handle")
            before = counter.settled()
            d = _open(place, name, 0, False)
            _txn(d, 99)
            d.close()
            ops = counter.settled() - before
            rep.advance()
            rtt = statistics.median(rtts)
            steps = {s: statistics.median(x[s] for x in rows) for s in STEPS}
            out["sizes"][str(hs)] = {
                "hash_size": answered,
                "shards": shards,
                "rtt_s": rtt,
                "seconds": steps,
                "rtts": {s: v / rtt for s, v in steps.items()},
                "osd_ops_fresh_txn": ops,
                "all_rounds": rows,
            }
    finally:
        io.remove_object(floor)
        io.close()
        counter.close()
        conn.shutdown()
    return out
