"""Databases that grow (issue 23): Samba's hash sizes, online resharding.

- hash_size is tdb's chain count, kept to be answered; it does not size the
  database, so a database made with Samba's 10007 works like a default one
  (its first transaction used to outlive its lease and fail).
- A reshard moves records while clients use the database: every record
  stays readable and writable, a traversal across it returns every record
  that existed throughout exactly once, and the database passes
  ``radostdb check`` afterwards.
- Under load: writers, a transaction process keeping a bank's total, a
  locked counter and a traverser, all in tight loops, in processes started
  both ways (procs.py), while one reshard quadruples the shards: every
  acknowledged write is there, exactly.
- kill -9 of the resharder at every step (crashpoints.py RESHARD_STEPS),
  with writers running: the database stays whole, a new reshard goes on
  where the dead one stopped, and the end state is exact.
- Automatic splits past a threshold, and Ceph's large-omap warning: shown
  for a shard past a lowered osd_deep_scrub_large_omap_object_key_threshold,
  gone once the database splits below it.
The replicated cluster's OSD kill during a reshard is test_reliability.py's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import crashpoints
import procs
import pytest
import roundtrips
from helpers import CREATE, ok
from reshard_workers import ACCOUNTS, RUN, START, STATIC, account, static_key

import radostdb
from radostdb import cluster, dbheader, reshard
from radostdb.testing import ClusterInfo


def nshards(db: radostdb.Tdb) -> int:
    return db._storage.nshards  # type: ignore[union-attr]


def fill(db: radostdb.Tdb, n: int, prefix: bytes = b"r/") -> dict[bytes, bytes]:
    """n records, stored in transactions of 1000; returns them."""
    records = {b"%s%06d" % (prefix, i): b"value %d " % i + b"x" * (i % 97) for i in range(n)}
    items = list(records.items())
    for start in range(0, n, 1000):
        with db.transaction():
            for k, v in items[start : start + 1000]:
                db.store(k, v)
    return records


def every_record_once(db: radostdb.Tdb, records: dict[bytes, bytes]) -> None:
    keys = list(db.keys())
    assert len(keys) == len(set(keys)) == len(records), (len(keys), len(set(keys)), len(records))
    assert dict(db.items()) == records
    for k, v in records.items():
        assert db.get(k) == v, k


def check_clean(cli: Any, name: str) -> None:
    out = ok(cli("check", "--no-progress", name)).output
    assert out.rstrip().endswith("no problems"), out


# -- hash_size ----------------------------------------------------------------------
def test_first_transaction_of_a_fresh_handle_with_hash_size_10007(db_name: str) -> None:
    """The issue's failing case: a database created as Samba's daemons create
    theirs; a fresh handle's first transaction commits."""
    radostdb.Tdb(db_name, 10007, 0, CREATE).close()
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    t0 = time.monotonic()
    db.transaction_start()
    for i in range(10):
        db.store(b"k%d" % i, b"v%d" % i)
    db.transaction_commit()
    took = time.monotonic() - t0
    assert [db.get(b"k%d" % i) for i in range(10)] == [b"v%d" % i for i in range(10)]
    assert db.hash_size == 10007 and nshards(db) == 8
    print(f"first transaction of a fresh handle, hash_size 10007: {took * 1000:.1f} ms")


@pytest.mark.parametrize("hash_size", [0, 10007])
def test_a_fresh_handles_first_transaction_is_two_round_trips(
    db_name: str, hash_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the hash size: a fresh handle's first transaction of 10
    stores is two round trips (the start: lock, table and journal at once;
    the commit: journal record and every shard's part at once), the next
    one a single round (the lock cached). Its watches are made off the
    caller's path. A transaction that reads a key first adds one round for
    that shard (the isolation, the read and the shard's list at once)."""
    radostdb.Tdb(db_name, hash_size, 0, CREATE).close()
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)

    def txn(read: bytes | None = None) -> None:
        db.transaction_start()
        if read is not None:
            db.get(read)
        for i in range(10):
            db.store(b"k%d" % i, b"v%d" % i)
        db.transaction_commit()

    with roundtrips.counting(monkeypatch) as first:
        txn()
    with roundtrips.counting(monkeypatch) as cached:
        txn()
    assert (first.rounds, cached.rounds) == (2, 1), (first.log, cached.log)
    db.close()
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    with roundtrips.counting(monkeypatch) as reading:
        txn(read=b"k3")
    assert reading.rounds == 3, reading.log
    assert [db.get(b"k%d" % i) for i in range(10)] == [b"v%d" % i for i in range(10)]


def test_hash_size_is_kept_and_does_not_size_the_database(db_name: str) -> None:
    """tdb answers hash_size() with what the database was created with (0:
    its default 131); radostdb too, and the shard count is its own."""
    cases = [(0, None, 131, 8), (10007, None, 10007, 8), (3, 5, 3, 5), (65536, 1, 65536, 1)]
    for i, (hash_size, shards, answered, count) in enumerate(cases):
        name = f"{db_name}-{i}"
        db = radostdb.Tdb(name, hash_size, 0, CREATE, shards=shards)
        again = radostdb.Tdb(name, 7, 0, os.O_RDWR)  # an open's hash_size does not change it
        assert (db.hash_size, again.hash_size, nshards(again)) == (answered, answered, count)
        db.close()
        again.close()
    with pytest.raises(ValueError, match="shard count"):
        radostdb.Tdb(db_name, 0, 0, CREATE, shards=0)


# -- resharding -----------------------------------------------------------------------
def test_reshard_by_hand_keeps_every_record(db_name: str, cli: Any) -> None:
    """``radostdb reshard --shards 11`` from 4: every record read back from
    where it is now, by the handle that was open and by a new one; info
    shows the shards and their records; check is clean; writes go on."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=4)
    records = fill(db, 3000)
    out = ok(cli("reshard", "--no-progress", "--shards", "11", db_name)).output
    assert "has 11 shards (was 4)" in out, out
    every_record_once(db, records)
    fresh = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    every_record_once(fresh, records)
    assert nshards(db) == nshards(fresh) == 11
    info = ok(cli("info", "--shards", "--no-progress", db_name)).output
    lines = [ln for ln in info.splitlines() if ln.startswith("shard ")]
    assert len(lines) == 11, info
    assert sum(int(ln.split()[2]) for ln in lines) == 3000, info
    assert "per shard:" in info and "nshards:     11" in info, info
    check_clean(cli, db_name)
    db.store(b"after", b"1")
    with db.transaction():
        for k in list(records)[:50]:
            db.store(k, b"rewritten")
    assert fresh.get(b"after") == b"1" and fresh.get(next(iter(records))) == b"rewritten"


def test_reshard_doubles_by_default_and_never_shrinks(db_name: str, cli: Any) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=3)
    records = fill(db, 500)
    ok(cli("reshard", "--no-progress", db_name))
    assert dbheader.read(db._storage.io(), db_name).nshards == 6  # type: ignore[union-attr]
    out = cli("reshard", "--shards", "5", db_name)
    assert out.exit_code == 1 and "shards never merge" in out.output, out.output
    out = ok(cli("reshard", "--no-progress", "--threshold", "1234", db_name)).output
    assert dbheader.read(db._storage.io(), db_name).split_threshold == 1234  # type: ignore[union-attr]
    every_record_once(db, records)


HALF_SPLIT_LEASE = 8.0  # longer than the checks that run while it is held


def _half_split(name: str, pages: int, lease: float = 2) -> None:
    """Leave a split half done: the resharder stops after ``pages`` pages
    of 100 records (as one killed there would: nothing cleans up; its
    reshard lock expires ``lease`` seconds after its last step)."""
    r = reshard.Resharder(cluster.resolve(name), lease=lease)

    def told(p: reshard.Progress) -> None:
        if p.moved >= pages * 100:
            raise KeyboardInterrupt  # out, as a kill would leave it

    r.progress = told
    old, reshard.PAGE = reshard.PAGE, 100
    try:
        r.lock(True)
        with pytest.raises(KeyboardInterrupt):
            r.grow_to(r.layout().nshards + 1)
    finally:
        reshard.PAGE = old
        r.books.clear()  # the reshard lock is left to expire, as a dead one's


def test_a_split_left_half_done_is_whole_and_finished_on_repair(db_name: str, cli: Any) -> None:
    """Records of a split left half done are all readable and writable by
    old and new handles; check reports the split (and nothing else) and
    --repair finishes it."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=2, lock_lease=2)
    records = fill(db, 2000)
    _half_split(db_name, 3, lease=HALF_SPLIT_LEASE)
    lapses = time.monotonic() + HALF_SPLIT_LEASE  # the abandoned reshard lock, at the latest
    st = db._storage.router.learn_split()  # type: ignore[union-attr]
    assert st is not None and not st.done and st.moved_upto, st
    fresh = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    every_record_once(db, records)
    every_record_once(fresh, records)
    for i, k in enumerate(records):
        if i % 7 == 0:
            fresh.store(k, b"new %d" % i)
            records[k] = b"new %d" % i
    every_record_once(db, records)
    result = cli("check", "--json", "--no-progress", db_name)
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    kinds = [f["kind"] for f in report["findings"]]
    if time.monotonic() < lapses:  # as expected: check ran while the lock was held
        assert kinds == ["layout"], report["findings"]
    else:  # a slow run: check may have found the lock lapsed too
        assert kinds in (["layout"], ["layout", "expired-lock"]), report["findings"]
    time.sleep(max(0.0, lapses - time.monotonic()) + 0.5)  # the abandoned lock expires
    out = ok(cli("check", "--repair", "--no-progress", db_name)).output
    assert "finished the split" in out, out
    check_clean(cli, db_name)
    every_record_once(fresh, records)
    assert nshards(fresh) == 3


@pytest.mark.parametrize("half", [False, True], ids=["complete", "half-done"])
def test_a_traversal_across_a_reshard_returns_each_record_once(db_name: str, half: bool) -> None:
    """A traversal paused half way while shards split (completely, or one
    left half done), then resumed: every record, once."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=2)
    records = fill(db, 4000)
    for view in ("keys", "items"):
        it = iter(db.keys() if view == "keys" else db.items())
        first = [next(it) for _ in range(1500)]
        if half:
            _half_split(db_name, 2)
        else:
            reshard.reshard(cluster.resolve(db_name), nshards(db) + 3)
        rest = list(it)
        got = [x if view == "keys" else x[0] for x in first + rest]
        assert len(got) == len(set(got)) == len(records), (view, len(got), len(set(got)))
        if half:
            reshard.finish(cluster.resolve(db_name))
    every_record_once(db, records)


def test_shards_split_by_themselves_past_the_threshold(
    db_name: str, cluster_env: dict[str, str], cli: Any
) -> None:
    """With RADOSTDB_SPLIT_THRESHOLD=300, a process storing 6000 records one
    by one into 2 shards splits them in the background (its level doubles
    each time a shard passes 300); no shard ends past the threshold by much,
    and every record is there."""
    radostdb.Tdb(db_name, 0, 0, CREATE, shards=2).close()
    env = dict(cluster_env, RADOSTDB_SPLIT_THRESHOLD="300")
    code = """
        import os, sys, radostdb
        from radostdb import reshard
        db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR)
        for i in range(6000):
            db.store(b"auto/%05d" % i, b"v%d" % i)
            if i % 1000 == 999:
                reshard.wait_background(sys.argv[1])
        reshard.wait_background(sys.argv[1])
        print(db._storage.nshards, flush=True)
    """
    (out,) = procs.finish([procs.python(code, env, db_name)], timeout=300)
    grown = int(out.split()[-1])
    assert grown >= 16, out
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    every_record_once(db, {b"auto/%05d" % i: b"v%d" % i for i in range(6000)})
    info = ok(cli("info", "--shards", "--no-progress", db_name)).output
    counts = [int(ln.split()[2]) for ln in info.splitlines() if ln.startswith("shard ")]
    print(f"{grown} shards, records per shard {min(counts)}..{max(counts)}")
    assert max(counts) <= 300 + reshard.SPLIT_CHECK, counts
    check_clean(cli, db_name)


def test_a_background_split_that_fails_is_retried(
    db_name: str, cluster_env: dict[str, str], cli: Any
) -> None:
    """A background split whose step fails goes on after a pause: here the
    process's second split_next raises (injected), in the split of 2 shards
    to 4 that its stores start (threshold 300); it writes nothing once the
    split has begun, so nothing starts another. The split still ends at 4 shards
    (without the retry it stopped at 3, half done, with nobody left to
    finish it), every record is there, and the retry was logged."""
    radostdb.Tdb(db_name, 0, 0, CREATE, shards=2).close()
    env = dict(cluster_env, RADOSTDB_SPLIT_THRESHOLD="300")
    code = """
        import logging, os, sys, radostdb
        from radostdb import reshard
        from radostdb.errors import ERR_IO, TdbError
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(name)s %(message)s")
        reshard.BACKGROUND_PAUSE = 0.2
        real, calls = reshard.Resharder.split_next, []

        def flaky(self, lay):
            calls.append(lay.nshards)
            if len(calls) == 2:
                raise TdbError(ERR_IO, "injected failure")
            return real(self, lay)

        reshard.Resharder.split_next = flaky
        db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR)
        n = 0
        while not calls and n < 5000:  # no write once the split has begun
            db.store(b"retry/%04d" % n, b"v%d" % n)
            n += 1
        reshard.wait_background(sys.argv[1])
        db._storage.router.refresh()
        print("splits tried at", calls, flush=True)
        print(n, db._storage.router.layout.nshards, flush=True)
    """
    (out,) = procs.finish([procs.python(code, env, db_name)], timeout=120)
    print(out)
    assert "injected failure')); again in 0.2 s" in out, out
    written, grown = map(int, out.split()[-2:])
    assert grown == 4, out
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    assert nshards(db) == 4
    every_record_once(db, {b"retry/%04d" % i: b"v%d" % i for i in range(written)})
    check_clean(cli, db_name)


def test_one_large_transaction_splits_its_shards(
    db_name: str, cluster_env: dict[str, str], cli: Any
) -> None:
    """One transaction of 1000 records into 2 shards (threshold 300), and
    no write after it: the shards split to 4 all the same. Its records
    reach the shards' omaps only when settled, lazily, after the size check
    its commit starts (which used to be the only one: the shards stayed at
    500 records each)."""
    radostdb.Tdb(db_name, 0, 0, CREATE, shards=2).close()
    env = dict(cluster_env, RADOSTDB_SPLIT_THRESHOLD="300")
    code = """
        import os, sys, time, radostdb
        from radostdb import reshard
        db = radostdb.Tdb(sys.argv[1], 0, 0, os.O_RDWR)
        with db.transaction():
            for i in range(1000):
                db.store(b"big/%04d" % i, b"v%d" % i)
        router = db._storage.router
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the split starts on the lock service thread
            reshard.wait_background(sys.argv[1])
            router.refresh()
            if router.layout.nshards > 2 and not reshard.background_running(sys.argv[1]):
                break
            time.sleep(0.1)
        print(router.layout.nshards, flush=True)
    """
    (out,) = procs.finish([procs.python(code, env, db_name)], timeout=120)
    assert int(out.split()[-1]) == 4, out
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    every_record_once(db, {b"big/%04d" % i: b"v%d" % i for i in range(1000)})
    check_clean(cli, db_name)


# -- under load ------------------------------------------------------------------------
def _prepare(name: str, shards: int) -> None:
    db = radostdb.Tdb(name, 0, 0, CREATE, shards=shards)
    with db.transaction():
        for i in range(STATIC):
            db.store(static_key(i), b"s" * (i % 50))
        for i in range(ACCOUNTS):
            db.store(account(i), b"%d" % START)
        db.store(b"counter", b"0")
    db.close()


def _crew(
    name: str, env: dict[str, str], method: str, writers: int = 4, others: bool = True
) -> list[tuple[str, subprocess.Popen[str]]]:
    crew = [(f"writer{i}", procs.python(RUN, env, "writer", name, str(i), method=method))
            for i in range(writers)]  # fmt: skip
    if others:
        crew += [(k, procs.python(RUN, env, k, name, method=method))
                 for k in ("banker", "locker", "traverser")]  # fmt: skip
    for _, p in crew:
        procs.expect(p, "ready", timeout=120)
    return crew


def _verify(name: str, crew: list[tuple[str, subprocess.Popen[str]]]) -> dict[str, Any]:
    """Stop the crew and check the database against what each was told."""
    outs = procs.finish([p for _, p in crew], timeout=300)
    results = {
        who: json.loads(out.splitlines()[-1]) for (who, _), out in zip(crew, outs, strict=True)
    }
    db = radostdb.Tdb(name, 0, 0, os.O_RDWR)
    for who, r in results.items():
        if who.startswith("writer"):
            for k, v in r["last"].items():
                assert db.get(k.encode()) == v.encode(), (who, k)
        elif who == "banker":
            assert r["bad_totals"] == 0, r
        elif who == "traverser":
            assert r["bad"] == 0, r
    if "locker" in results:
        assert int(db.get(b"counter")) == results["locker"]["ops"]
    assert sum(int(db.get(account(i))) for i in range(ACCOUNTS)) == ACCOUNTS * START
    for i in range(STATIC):
        assert db.get(static_key(i)) == b"s" * (i % 50)
    keys = list(db.keys())
    assert len(keys) == len(set(keys))
    print("per process:", {who: r["ops"] for who, r in results.items()})
    return results


def test_reshard_under_load(
    db_name: str, cluster_env: dict[str, str], cli: Any, start_method: str
) -> None:
    """4 writers, a bank, a locked counter and a traverser in tight loops
    while one reshard quadruples the shards (4 -> 16): each keeps working
    during it (progress counted before and after), nothing is lost or read
    twice, check is clean."""
    _prepare(db_name, 4)
    crew = _crew(db_name, cluster_env, start_method)
    time.sleep(2)
    t0 = time.monotonic()
    lay = reshard.reshard(cluster.resolve(db_name), 16)
    took = time.monotonic() - t0
    time.sleep(2)
    results = _verify(db_name, crew)
    assert lay.nshards == 16
    assert all(r["ops"] > 0 for r in results.values()), results
    print(f"reshard 4 -> 16 under load: {took:.2f} s")
    check_clean(cli, db_name)


# -- a saturating bulk loader -------------------------------------------------------------
def _loaded(db_name: str, result: dict[str, Any]) -> None:
    """Every record the loader committed is there (count, and a sample)."""
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    n = result["records"]
    assert sum(1 for _ in db.keys()) == n
    for i in random.Random(0).sample(range(n), 2000):
        assert db.get(b"load/%09d" % i) == b"v%d" % i, i


def _stop_all(workers: list[subprocess.Popen[str]]) -> None:
    """kill -9 the workers still running (a failed test's)."""
    for w in workers:
        if w.poll() is None:
            procs.kill(w)


def test_reshard_finishes_under_a_saturating_bulk_loader(
    db_name: str, cluster_env: dict[str, str], cli: Any, start_method: str
) -> None:
    """A loader commits 5000-record transactions back to back (keeping the
    shards' isolation cached from one to the next, its parts settled
    lazily) while ``reshard`` splits 2 of 8 shards: the reshard ends while
    the loader still commits, the loader commits during it, every record is
    there and check is clean. The reshard used to wait for the load to end:
    the loader never heard the resharder ask for a shard it had only
    written, and a step meeting its pending parts backed off until the
    next transaction had left new ones."""
    radostdb.Tdb(db_name, 0, 0, CREATE).close()  # 8 shards
    env = dict(cluster_env, RADOSTDB_SPLIT_THRESHOLD="0")  # no split of its own
    p = procs.python(RUN, env, "loader", db_name, "5000", "0", "1500000", method=start_method)
    rs = None
    try:
        procs.expect(p, "ready", timeout=120)
        time.sleep(1)  # loading
        page = str(reshard.PAGE)
        rs = procs.python(RUN, cluster_env, "resharder", db_name, "10", page, method=start_method)
        procs.expect(rs, "ready", timeout=120)
        text = procs.line(rs, timeout=120)  # its report, or "<timeout>"
        time.sleep(1)  # the loader goes on after it
        (out,) = procs.finish([p], timeout=300)
        assert text.startswith("{"), f"the reshard did not end in 120 s: {text}"
        rep = json.loads(text)
        r = json.loads(out.splitlines()[-1])
        during = sum(rep["began"] <= t <= rep["ended"] for t in r["commits"])
        after = sum(t > rep["ended"] for t in r["commits"])
        print(
            f"reshard 8 -> 10 under the loader: {rep['ended'] - rep['began']:.2f} s; loader "
            f"commits before / during / after it: {len(r['commits']) - during - after} / "
            f"{during} / {after}, {r['records']} records"
        )
        assert rep["nshards"] == 10
        assert during > 0 and after > 0, "the reshard did not end while the loader committed"
        _loaded(db_name, r)
        check_clean(cli, db_name)
    finally:  # a failure leaves no worker running, nor its records in the suite's memstore
        _stop_all([p] if rs is None else [p, rs])
        cli("rm", "--yes", db_name)


def test_a_bulk_loader_splits_its_database_while_it_loads(
    db_name: str, cluster_env: dict[str, str], cli: Any, start_method: str
) -> None:
    """RADOSTDB_SPLIT_THRESHOLD=5000, 8 shards, a loader of 5000-record
    transactions back to back: its own background split doubles the shards
    to 16 while it loads, long before a cap of 2,000,000 records (the split
    used to wait for the load to end, leaving 8 shards of 250,000)."""
    radostdb.Tdb(db_name, 0, 0, CREATE).close()
    env = dict(cluster_env, RADOSTDB_SPLIT_THRESHOLD="5000")
    p = procs.python(RUN, env, "loader", db_name, "5000", "16", "2000000", method=start_method)
    try:
        procs.expect(p, "ready", timeout=120)
        t0 = time.monotonic()
        text = procs.line(p, timeout=600)
        took = time.monotonic() - t0
        procs.finish([p], timeout=120)
        assert text.startswith("{"), f"the loader did not end in 600 s: {text}"
        r = json.loads(text)
        print(f"16 shards after {r['records']} records, {r['ops']} transactions, {took:.1f} s")
        assert r["nshards"] >= 16 and r["records"] < 2_000_000, r
        _loaded(db_name, r)
    finally:  # a failure leaves no worker running, nor its records in the suite's memstore
        _stop_all([p])
        cli("rm", "--yes", db_name)


STEPS = ["split-begun", "absorbed", "advanced@2", "absorbed@5", "split-done", "grown@2"]


@pytest.mark.parametrize("step", STEPS)
def test_resharder_killed_at_each_step(
    db_name: str, cluster_env: dict[str, str], cli: Any, start_method: str, step: str
) -> None:
    """kill -9 of the resharder (pages of 100 records) at ``step`` while 2
    writers store in tight loops: the database is whole meanwhile, a new
    reshard goes on where the dead one stopped, and the end is exact."""
    _prepare(db_name, 2)
    crew = _crew(db_name, cluster_env, start_method, writers=2, others=False)
    # A short lease: the next resharder waits out the dead one's lock.
    env = dict(cluster_env, **{crashpoints.ENV: step, "RADOSTDB_LOCK_LEASE": "3"})
    dying = procs.python(RUN, env, "resharder", db_name, "6", "100", method=start_method)
    procs.expect(dying, "ready", timeout=120)
    assert dying.wait(timeout=300) == -signal.SIGKILL, dying.stderr.read() if dying.stderr else ""
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    for i in range(0, STATIC, 37):  # whole meanwhile: every record where clients look
        assert db.get(static_key(i)) == b"s" * (i % 50)
    time.sleep(2)  # writers go on over the half-done state
    lay = reshard.reshard(cluster.resolve(db_name), 6)
    assert lay.nshards == 6
    _verify(db_name, crew)
    assert nshards(radostdb.Tdb(db_name, 0, 0, os.O_RDWR)) == 6
    check_clean(cli, db_name)


# -- Ceph's large-omap warning -------------------------------------------------------------
def _ceph(info: ClusterInfo, *args: str) -> str:
    r = subprocess.run(
        ["ceph", "-c", info.conf, "--id", info.client_id, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def _deep_scrub(info: ClusterInfo, objs: list[str]) -> float:
    """Deep-scrub the PGs holding ``objs``, wait until each has been, and
    return the seconds it took. The throwaway cluster has no mgr (its pg and
    osd scrub commands would hang), so the primary OSD is told directly, with
    the load threshold lifted. Pacific's ``tell osd.N deep_scrub PGID`` and
    ``scrub PGID`` do not start a scrub: they date the PG's last deep and
    last shallow scrub back by their intervals. The scheduler then starts a
    scrub when the shallow stamp is due, and makes it deep when the deep
    stamp is due too. So the deep stamp goes back first: backed the other way
    round, the scheduler can run a shallow scrub in between, which stamps the
    PG as scrubbed now and leaves the deep request for tomorrow (a suite run
    waited 180 s for one so lost). A PG neither done nor scrubbing after 15 s
    is asked again."""
    _ceph(info, "config", "set", "osd", "osd_scrub_load_threshold", "1000")
    where = {}
    for o in objs:
        m = json.loads(_ceph(info, "osd", "map", info.pool, o, "-f", "json"))
        where[m["pgid"]] = m["acting_primary"]

    def query(pg: str) -> tuple[str, str]:
        q = json.loads(_ceph(info, "pg", pg, "query", "-f", "json"))
        return str(q["info"]["stats"]["last_deep_scrub_stamp"]), str(q["state"])

    before = {pg: query(pg)[0] for pg in where}
    start = time.monotonic()
    deadline = start + 300
    asked: dict[str, float] = {}
    while True:
        left = {}
        for pg in where:
            stamp, state = query(pg)
            if stamp <= before[pg]:
                left[pg] = state
        if not left:
            return time.monotonic() - start
        assert time.monotonic() < deadline, f"deep scrub did not happen: {left}"
        for pg, state in left.items():
            if "scrubbing" not in state and time.monotonic() - asked.get(pg, -1e9) > 15:
                _ceph(info, "tell", f"osd.{where[pg]}", "deep_scrub", pg)
                _ceph(info, "tell", f"osd.{where[pg]}", "scrub", pg)
                asked[pg] = time.monotonic()
        time.sleep(1)


def _large_omap_objects(info: ClusterInfo) -> set[str]:
    """Object names the cluster log reported as large omap objects."""
    text = _ceph(info, "log", "last", "10000", "cluster")
    found = set()
    for ln in text.splitlines():
        if "Large omap object found" in ln and "Object: " in ln:
            obj = ln.split("Object: ", 1)[1].split()[0]
            found.add(obj.split(":::", 1)[1].rsplit(":", 1)[0] if ":::" in obj else obj)
    return found


def test_large_omap_warning_shown_then_gone_after_splits(
    ceph_cluster: ClusterInfo, db_name: str, record_figure: Callable[[str, Any, str], None]
) -> None:
    """With osd_deep_scrub_large_omap_object_key_threshold lowered to 400: a
    database of 2 shards holding 1000 records each is reported by a deep
    scrub ("Large omap object found" in the cluster log, what Ceph's
    LARGE_OMAP_OBJECTS health warning counts; the warning itself is the
    mgr's, and the throwaway cluster has none); the same after a reshard to
    8 (about 250 each) is not."""
    key = "osd_deep_scrub_large_omap_object_key_threshold"
    _ceph(ceph_cluster, "config", "set", "osd", key, "400")
    try:
        db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=2)
        fill(db, 2000)
        objs = [f"radostdb.s{i:05d}.{db_name}" for i in range(2)]
        record_figure("deep scrub of 2 PGs", round(_deep_scrub(ceph_cluster, objs), 1), "s")
        # The OSD sends its cluster log lines to the monitor on its own time.
        deadline = time.monotonic() + 60
        while not set(objs) <= (found := _large_omap_objects(ceph_cluster)):
            assert time.monotonic() < deadline, found
            time.sleep(1)
        reshard.reshard(cluster.resolve(db_name), 8)
        _ceph(ceph_cluster, "log", "Large omap check of " + db_name)  # a marker line
        objs = [f"radostdb.s{i:05d}.{db_name}" for i in range(8)]
        took = _deep_scrub(ceph_cluster, objs)
        record_figure("deep scrub after the reshard", round(took, 1), "s")
        _ceph(ceph_cluster, "log", "Large omap check done " + db_name)
        deadline = time.monotonic() + 60
        while "Large omap check done " + db_name not in (
            text := _ceph(ceph_cluster, "log", "last", "10000", "cluster")
        ):
            assert time.monotonic() < deadline
            time.sleep(1)
        after = text[text.rfind("Large omap check of " + db_name) :]
        assert "Large omap object found" not in after or not any(o in after for o in objs), after
    finally:
        _ceph(ceph_cluster, "config", "rm", "osd", key)
        _ceph(ceph_cluster, "config", "rm", "osd", "osd_scrub_load_threshold")
