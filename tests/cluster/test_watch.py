"""Watched records (issue 25) on the real cluster: real processes, tight
loops, kill -9, an OSD restart.

The workers are watch_workers.py's, started both ways (procs.py: a fresh
interpreter, or forked from a process that used radostdb) where the start
matters. Per-process counts and latencies are printed (run with -s) and
kept as figures (``record_figure``).
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import procs
import pytest
from procs import expect, finish, line, say
from watch_workers import RUN

import radostdb
from radostdb import wakeup
from radostdb.errors import ERR_EINVAL, TdbError
from radostdb.testing import ClusterInfo

CREATE = os.O_RDWR | os.O_CREAT
WAIT = 5.0  # seconds within which a change must wake a watcher (the fallback poll: 5 s)
Figure = Callable[..., None]


def start(
    kind: str, env: dict[str, str], *args: str, method: str = "spawn"
) -> subprocess.Popen[str]:
    """A watch_workers.py worker of KIND."""
    return procs.python(RUN, env, kind, *args, method=method)


def quantiles(seconds: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max, in seconds."""
    ordered = sorted(seconds)
    return (
        statistics.median(ordered),
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        ordered[-1],
    )


def ms(values: tuple[float, ...]) -> str:
    return "/".join(f"{v * 1000:.1f}" for v in values) + " ms"


def shard_of(db: radostdb.Tdb, key: bytes) -> int:
    return db._storage.router.shard(key)  # type: ignore[union-attr]


def shard_obj(db: radostdb.Tdb, key: bytes) -> str:
    storage = db._storage
    assert storage is not None
    return str(storage.shards[storage.router.shard(key)].obj)


def keys_by_shard(db: radostdb.Tdb, prefix: str, shards: int) -> list[bytes]:
    """One key on each of the first SHARDS shards."""
    found: dict[int, bytes] = {}
    i = 0
    while len(found) < shards:
        key = b"%s%d" % (prefix.encode(), i)
        found.setdefault(shard_of(db, key), key)
        i += 1
    return [found[s] for s in sorted(found)]


def run(proc: subprocess.Popen[str], *cmd: Any) -> None:
    """Have a ``commands`` worker run CMD and wait until it did."""
    say(proc, json.dumps(cmd))
    expect(proc, "ok", timeout=30)


def woke(w: radostdb.watch.Watch, timeout: float = WAIT) -> float:
    """Wait for the watch; the seconds it took."""
    t0 = time.monotonic()
    w.wait(timeout)
    return time.monotonic() - t0


def still(w: radostdb.watch.Watch, timeout: float = 1.0) -> None:
    """Nothing landed: the watch must not fire within TIMEOUT."""
    with pytest.raises(TimeoutError):
        w.wait(timeout)
    assert not w.fired


# -- 1. several watchers, several writers, one key -----------------------------------------
def test_watchers_on_one_key_wake_for_writers_in_tight_loops(
    db_name: str, cluster_env: dict[str, str], start_method: str, record_figure: Figure
) -> None:
    """3 watcher processes loop read -> arm -> read -> wait -> read on one
    key while 2 writer processes store unique values in tight loops: every
    watcher wakes many times, never waits out a timeout, most wakes saw a
    new value, and wakes that surely saw no store since before arming
    (spurious) are rare. The rest saw a store land around the arming."""
    seconds = 8.0
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"hot", b"start")
    watchers = [
        start("watcher", cluster_env, db_name, "hot", str(seconds), method=start_method)
        for _ in range(3)
    ]
    writers = [
        start("writer", cluster_env, db_name, "hot", f"w{i}", str(seconds + 1), method=start_method)
        for i in range(2)
    ]
    for p in watchers + writers:
        expect(p, "ready", timeout=120)
    for p in watchers + writers:
        say(p, "go")
    outs = [json.loads(o) for o in finish(watchers + writers)]
    seen, wrote = outs[:3], outs[3:]
    wakes = [o["wakes"] for o in seen]
    justified = [o["justified"] for o in seen]
    spurious = [o["spurious"] for o in seen]
    stores = [o["stores"] for o in wrote]
    print(
        f"\n[{start_method}] per-watcher wakes {wakes}, with a new value {justified}, "
        f"spurious {spurious}, timeouts {[o['timeouts'] for o in seen]}; per-writer stores {stores}"
    )
    record_figure(f"[{start_method}] wakes per watcher (min)", min(wakes))
    record_figure(f"[{start_method}] stores per writer (min)", min(stores))
    assert all(s > 100 for s in stores), stores
    assert all(o["timeouts"] == 0 for o in seen), seen
    assert all(n >= 100 for n in wakes), wakes
    assert all(j >= 0.75 * n for j, n in zip(justified, wakes, strict=True)), (justified, wakes)
    assert all(s <= max(5, n // 20) for s, n in zip(spurious, wakes, strict=True)), spurious
    assert db.get(b"hot").split(b":")[0] in (b"w0", b"w1")


# -- 2. no missed change in 10,000 -----------------------------------------------------------
CHANGES = 10_000


def test_no_change_is_missed_in_ten_thousand(
    db_name: str, cluster_env: dict[str, str], record_figure: Figure
) -> None:
    """Ping-pong: the test arms its watch, tells a writer process to store
    i (through a pipe), and must wake within WAIT and read i. 10,000 times:
    every wake came by its notify (each < 1 s; the fallback poll is every
    5 s), and spurious wakes (none expected: one writer, one change per
    round) are counted."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"pp", b"-1")
    writer = start("pong", cluster_env, db_name, "pp")
    expect(writer, "ready", timeout=120)
    w = db.watch(b"pp")
    latencies = []
    spurious = 0
    t_all = time.monotonic()
    for i in range(CHANGES):
        want = b"%d" % i
        t0 = time.monotonic()
        say(writer, str(i))
        while True:
            try:
                w.wait(WAIT)
            except TimeoutError:
                pytest.fail(f"change {i} did not wake the watcher within {WAIT} s")
            value = db.get(b"pp")
            if value == want:
                break
            assert int(value) < i, (value, i)  # not yet stored: a spurious wake
            spurious += 1
            w.rearm()
            if db.get(b"pp") == want:  # landed before the rearm
                break
        latencies.append(time.monotonic() - t0)
        w.rearm()
    total = time.monotonic() - t_all
    w.cancel()
    out = json.loads(finish([writer])[0])
    p50, p99, worst = quantiles(latencies)
    print(
        f"\n{CHANGES} changes in {total:.1f} s: wake latency (pipe + store + notify) "
        f"p50/p99/max {ms((p50, p99, worst))}, spurious wakes {spurious}; "
        f"writer stores {out['stores']}"
    )
    record_figure("ping-pong wake latency p50", p50 * 1000, "ms")
    record_figure("ping-pong wake latency p99", p99 * 1000, "ms")
    record_figure("ping-pong wake latency max", worst * 1000, "ms")
    record_figure("ping-pong spurious wakes", spurious)
    assert out["stores"] == CHANGES
    assert len(latencies) == CHANGES
    assert worst < 1.0, "a wake waited for the fallback poll"
    assert spurious <= CHANGES // 100


def test_watch_iter_yields_increasing_values_up_to_the_last(
    db_name: str, cluster_env: dict[str, str], start_method: str, record_figure: Figure
) -> None:
    """A writer process stores 0..N-1 as fast as it can; db.watch_iter (armed
    before the writer starts) yields strictly increasing values (coalescing
    allowed) and ends with N-1; closing it cancels the watch."""
    n = 2000
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"it", b"-1")
    writer = start("burst", cluster_env, db_name, "it", str(n), method=start_method)
    expect(writer, "ready", timeout=120)
    changes = db.watch_iter(b"it", timeout=WAIT)
    say(writer, "go")
    got: list[int] = []
    t0 = time.monotonic()
    for value in changes:
        assert value is not None
        got.append(int(value))
        if got[-1] == n - 1:
            break
    seconds = time.monotonic() - t0
    changes.close()  # type: ignore[attr-defined]
    out = json.loads(finish([writer])[0])
    print(
        f"\n[{start_method}] {n} stores in {out['seconds']} s; watch_iter yielded "
        f"{len(got)} values in {seconds:.2f} s (coalesced {n - len(got)})"
    )
    record_figure(f"[{start_method}] watch_iter values yielded for {n} stores", len(got))
    assert got[-1] == n - 1
    assert all(a < b for a, b in itertools.pairwise(got)), "not strictly increasing"
    assert len(got) > 1
    # the iterator's watch is gone: a store now costs no notify
    before = wakeup.stats()["keys"]
    db.store(b"it", b"x")
    assert wakeup.stats()["keys"] == before


# -- 3. a watcher killed with -9 ------------------------------------------------------------
def test_a_watcher_killed_with_minus_9_costs_writers_nothing(
    db_name: str, cluster_env: dict[str, str], start_method: str, record_figure: Figure
) -> None:
    """A watcher process armed on k is killed -9; the test then stores k 200
    times: the first store finds the dead watch and sends one notify that it
    does not wait for (NOTIFY_TIMEOUT_MS would be a whole second), the rest
    find nothing. Latencies are compared with the same 200 stores before
    any watcher; a live watch made after the kill still wakes at once."""
    stores = 200
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"k", b"0")

    def timed(first: int, count: int) -> list[float]:
        out = []
        for i in range(first, first + count):
            t0 = time.monotonic()
            db.store(b"k", b"%d" % i)
            out.append(time.monotonic() - t0)
        return out

    sent = wakeup.stats()["keys"]
    alone = timed(0, stores)
    assert wakeup.stats()["keys"] == sent, "a store nobody watches sent a notify"
    victim = start("armed", cluster_env, db_name, "k", method=start_method)
    expect(victim, "armed", timeout=120)
    procs.kill(victim)
    live_db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    live = live_db.watch(b"k")
    after = timed(stores, 1)  # meets the dead watch (and the live one)
    live_wake = woke(live, 1.0)
    after += timed(stores + 1, stores - 1)
    assert wakeup.stats()["keys"] == sent + 1, "the dead watch was not met by one notify"
    live.cancel()
    live_db.close()
    a, b = quantiles(alone), quantiles(after)
    print(
        f"\n[{start_method}] {stores} stores, p50/p99/max: no watcher {ms(a)}, after a watcher "
        f"was killed -9 {ms(b)} (first store {after[0] * 1000:.1f} ms); a live watch "
        f"woke {live_wake * 1000:.1f} ms after the first store returned"
    )
    record_figure(f"[{start_method}] store latency max, no watcher", a[2] * 1000, "ms")
    record_figure(f"[{start_method}] store latency max, killed watcher", b[2] * 1000, "ms")
    record_figure(f"[{start_method}] first store after the kill", after[0] * 1000, "ms")
    limit = wakeup.NOTIFY_TIMEOUT_MS / 1000 / 2
    assert b[2] < limit, f"a store waited on the dead watcher: {b[2]:.3f} s"
    assert b[0] < 5 * a[0] + 0.005, (a, b)
    assert live_wake < 0.5


# -- 4. transactions, and a watch made under a chainlock -----------------------------------
def test_transactions_wake_watchers_only_when_they_commit(
    db_name: str, cluster_env: dict[str, str], record_figure: Figure
) -> None:
    """A cancelled transaction that stored the watched keys wakes nobody; a
    committed one wakes every watch of a key it wrote: one shard (the key
    and a neighbour on its shard) and several shards (one watched key on
    each of 4 shards)."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=4)
    keys = keys_by_shard(db, "t", 4)
    assert len({shard_of(db, k) for k in keys}) == 4
    mate = next(
        b"u%d" % i for i in range(10_000) if shard_of(db, b"u%d" % i) == shard_of(db, keys[0])
    )
    for k in [*keys, mate]:
        db.store(k, b"0")
    writer = start("commands", cluster_env, db_name)
    expect(writer, "ready", timeout=120)
    every = [[k.decode(), "1"] for k in keys]

    watches = [db.watch(k) for k in keys]
    run(writer, "txn", "cancel", every)
    still(watches[0])
    for w in watches[1:]:
        still(w, 0.3)
    assert [db.get(k) for k in keys] == [b"0"] * 4

    one = [[keys[0].decode(), "2"], [mate.decode(), "2"]]
    run(writer, "txn", "cancel", one)
    still(watches[0])
    run(writer, "txn", "commit", one)
    single = woke(watches[0])
    assert db.get(keys[0]) == b"2"
    for w in watches[1:]:  # their keys (on other shards) were not written
        still(w, 0.3)

    watches[0].rearm()
    run(writer, "txn", "commit", every)
    multi = [woke(w) for w in watches]
    assert [db.get(k) for k in keys] == [b"1"] * 4
    for w in watches:
        w.cancel()
    finish([writer])
    print(
        f"\nwatches woke (after the writer returned): one-shard commit {single * 1000:.1f} ms, "
        f"four-shard commit "
        f"{[round(s * 1000, 1) for s in multi]} ms"
    )
    record_figure("wake after a one-shard commit", single * 1000, "ms")
    record_figure("wake after a four-shard commit (max)", max(multi) * 1000, "ms")


def test_a_watch_made_under_the_chainlock_sees_the_next_holders_store(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    """The test holds k's chainlock; a process blocks in chainlock(k); the
    test arms a watch under the lock and unlocks: the blocked process's
    store (its grant and its store come after the release) wakes the
    watch. Then a holder's own store under the lock after arming wakes it
    too."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"k", b"before")
    db.chainlock(b"k")
    other = start("blocked_store", cluster_env, db_name, "k", "after", method=start_method)
    expect(other, "locking", timeout=120)
    assert line(other, timeout=1.0) == "<timeout>", "the store did not wait for the lock"
    w = db.watch(b"k")
    db.chainunlock(b"k")
    seconds = woke(w)
    assert db.get(b"k") == b"after"
    expect(other, "stored", timeout=30)
    finish([other])

    db.chainlock(b"k")
    w.rearm()
    db.store(b"k", b"mine")
    db.chainunlock(b"k")
    own = woke(w)
    assert db.get(b"k") == b"mine"
    w.cancel()
    print(
        f"\n[{start_method}] watch armed under the lock woke {seconds * 1000:.1f} ms after the "
        f"release; by the holder's own store {own * 1000:.1f} ms"
    )


# -- 5. delete, append, clear, creation ----------------------------------------------------
def test_delete_append_clear_and_creation_wake_watchers(
    db_name: str, cluster_env: dict[str, str]
) -> None:
    """Each kind of change by another process wakes a watch of the record:
    append, delete, creation of a missing record, clear (every record of
    every shard); watch_iter reports a delete as None; a ``with`` block
    cancels its watch (a store then sends no notify)."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=4)
    a, b = keys_by_shard(db, "c", 2)
    db.store(a, b"x")
    writer = start("commands", cluster_env, db_name)
    expect(writer, "ready", timeout=120)
    times = {}

    w = db.watch(a)
    run(writer, "append", a.decode(), "y")
    times["append"] = woke(w)
    assert db.get(a) == b"xy"

    w.rearm()
    run(writer, "delete", a.decode())
    times["delete"] = woke(w)
    assert db.get(a) is None

    w.rearm()  # a missing record
    still(w, 0.5)
    run(writer, "store", a.decode(), "new")
    times["create"] = woke(w)
    assert db.get(a) == b"new"

    w.rearm()
    wb = db.watch(b)  # a missing record on another shard: clear wakes it too
    run(writer, "clear")
    times["clear"] = woke(w)
    times["clear, other shard"] = woke(wb)
    assert db.get(a) is None
    w.cancel()
    wb.cancel()

    db.store(a, b"again")
    changes = db.watch_iter(a, timeout=WAIT)
    run(writer, "delete", a.decode())
    assert next(changes) is None
    run(writer, "store", a.decode(), "back")
    assert next(changes) == b"back"
    changes.close()  # type: ignore[attr-defined]

    with db.watch(a) as w:
        run(writer, "append", a.decode(), "+")
        times["append, with block"] = woke(w)
        w.rearm()
    sent = wakeup.stats()["keys"]
    db.store(a, b"later")
    assert wakeup.stats()["keys"] == sent, "the with block left its watch armed"
    finish([writer])
    woken = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in times.items())
    print(f"\nwatch woke (after the writer returned): {woken}")


# -- 6. across an OSD restart --------------------------------------------------------------
LEASE = 6.0  # seconds: a waiting watch renews every LEASE / 3


@pytest.fixture
def rep(replicated_cluster: ClusterInfo) -> ClusterInfo:
    """The replicated cluster with every daemon up and the pool writable."""
    dev = replicated_cluster.dev
    assert dev is not None
    for i in range(dev.osds):
        dev.start_osd(i)
    dev.wait_osds_up(180)
    dev.wait_writable(180)
    return replicated_cluster


def primary(rep: ClusterInfo, obj: str) -> int:
    assert rep.dev is not None
    with rep.dev.admin() as admin:
        cmd = {"prefix": "osd map", "pool": rep.pool, "object": obj, "format": "json"}
        ret, out, errs = admin.mon_command(json.dumps(cmd), b"")
        assert ret == 0, errs
        return int(json.loads(out)["acting_primary"])


@pytest.mark.replicated
@pytest.mark.timeout(900, method="thread")
def test_a_watch_survives_restarts_of_the_primary_osd(
    rep: ClusterInfo, record_figure: Figure
) -> None:
    """A watcher process (lease 6 s) waits on k; its shard's primary OSD is
    killed -9 and restarted; then a store from another process wakes it
    within LEASE / 3 + 3 s (the notify, or the fallback renewal). Again
    with the store made while the new primary is down."""
    dev = rep.dev
    assert dev is not None
    name = f"watch-osd-{os.urandom(4).hex()}"
    env = {**rep.child_env(), "RADOSTDB_LOCK_LEASE": str(LEASE), "RADOSTDB_OP_TIMEOUT": "120"}
    db = radostdb.Tdb(
        name, 0, 0, CREATE, conf=rep.conf, pool=rep.pool, client_id=rep.client_id,
        lock_lease=LEASE,
    )  # fmt: skip
    db.store(b"k", b"0")
    obj = shard_obj(db, b"k")
    watcher = start("patient", env, name, "k")
    writer = start("commands", env, name)
    expect(watcher, "ready", timeout=120)
    expect(writer, "ready", timeout=120)
    budget = LEASE / 3 + 3
    results = []

    def round_trip(value: str, fault: Callable[[], str]) -> None:
        say(watcher, f"wait {value}")
        expect(watcher, "armed", timeout=60)
        what = fault()
        t0 = time.monotonic()
        run(writer, "store", "k", value)
        stored = time.monotonic() - t0
        got = line(watcher, timeout=60)
        seconds = time.monotonic() - t0
        print(f"\n{what}: store took {stored:.2f} s, watcher woke {seconds:.2f} s after it ({got})")
        results.append((what, seconds, got))
        record_figure(f"{what}: store call", stored, "s")
        record_figure(f"{what}: store returned -> watcher woke", seconds - stored, "s")
        assert got.startswith("woke"), f"the watcher did not wake: {got!r}"
        assert seconds - stored < budget, f"woke {seconds:.2f} s after the store"
        assert db.get(b"k") == value.encode()

    def restart_primary() -> str:
        victim = primary(rep, obj)
        dev.kill_osd(victim)
        time.sleep(3)
        dev.start_osd(victim)
        dev.wait_osds_up(180)
        dev.wait_writable(180)
        return f"osd.{victim} (primary) killed -9 and restarted"

    def primary_down() -> str:
        victim = primary(rep, obj)
        dev.kill_osd(victim)
        dev.wait_writable(180)
        return f"osd.{victim} (primary) killed -9, store while it is down"

    round_trip("1", restart_primary)
    round_trip("2", primary_down)
    for i in range(dev.osds):
        dev.start_osd(i)
    dev.wait_osds_up(180)
    round_trip("3", lambda: "all OSDs back")
    finish([watcher, writer])
    db.close()
    assert len(results) == 3


# -- 7. TDB_INTERNAL -----------------------------------------------------------------------
def test_an_internal_database_cannot_be_watched() -> None:
    """A memory handle has nobody else to watch for: EINVAL, for both forms."""
    db = radostdb.Tdb(tdb_flags=radostdb.INTERNAL, flags=CREATE)
    db.store(b"k", b"v")
    with pytest.raises(TdbError) as err:
        db.watch(b"k")
    assert err.value.code == ERR_EINVAL
    with pytest.raises(TdbError) as err:
        db.watch_iter(b"k")
    assert err.value.code == ERR_EINVAL
    assert db.get(b"k") == b"v"
    db.close()


def test_a_lost_notify_is_made_up_for_by_the_renewal(
    db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's "K" notify never leaves (as if lost on the way): the
    waiter learns of the change from its next renewal (every third of its
    lease), which finds its entry removed by the write. A write with no
    change after it leaves the entry in place: no wakeup."""
    db = radostdb.Tdb(db_name, 0, 0, os.O_CREAT | os.O_RDWR, lock_lease=3)
    db.store(b"k", b"v0")
    monkeypatch.setattr(wakeup, "keys_changed", lambda *args: None)
    w = db.watch(b"k")
    with pytest.raises(TimeoutError):
        w.wait(2.5)  # two renewals: the entry is still armed
    db.store(b"k", b"v1")
    t0 = time.monotonic()
    w.wait(10)
    took = time.monotonic() - t0
    print(f"woken {took:.2f} s after a store whose notify was lost (renewal every 1 s)")
    assert took < 1 + 0.5 and w.fired
    w.cancel()


def test_after_fork_the_child_watches_with_its_own_watch(db_name: str) -> None:
    """A watch belongs to the process that armed it: the forked child's wait
    on its parent's watch is TDB's lock error (the parent may be waiting on
    that entry), and the child arms its own on the inherited handle, which
    a store by the parent wakes. The parent's watch still works."""
    db = radostdb.Tdb(db_name, 0, 0, os.O_CREAT | os.O_RDWR)
    db.store(b"k", b"v0")
    parents = db.watch(b"k")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report with the exit code only
        code = 1
        try:
            os.close(rfd)
            try:
                parents.wait(0.1)
            except TdbError as exc:
                code = 2 if "before fork" in str(exc) else 3
            if code == 2:
                mine = db.watch(b"k")
                os.write(wfd, b"armed\n")
                mine.wait(30)
                code = 0 if db[b"k"] == b"from the parent" else 4
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd) as child:
        assert child.readline() == "armed\n"
        db.store(b"k", b"from the parent")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parents.wait(10)
    assert parents.fired
