"""Watched records: how soon a watcher learns that a record changed.

Scenarios (``--watch-seconds``; one pair of processes per kind, each a
fresh interpreter, as contention.py's clients):
- ``radostdb``: the watcher arms ``db.watch(HOT)``, waits with ``wait()``,
  and re-arms with ``rearm()`` after each change; the writer's
  ``db.store(HOT, ...)`` finds the watch entry in the OSD and sends the
  notify without waiting (watch.py).
- ``rados``: raw python-rados, the floor: the watcher's ``io.watch`` on one
  object; the writer's ``set_omap`` of the key on that object, then
  ``aio_notify`` on it (not waited for, as radostdb's).
- ``etcd``: python3-etcd3's ``add_watch_callback`` on a key; the writer's
  ``put`` of it. etcd's watch is a stream: nothing to re-arm.
Ping-pong: the watcher tells the writer (over a pipe) that it is armed;
the writer stores an unwatched key COLD (on the same shard object as HOT
for radostdb and rados), then stamps the time and stores HOT; the
watcher stamps the time when its wait returns, receives the writer's stamp,
re-arms and says so. So every store of HOT meets an armed watch, and
nothing else runs on the watcher's side while it waits.
- wake latency: woken (the watcher's wait returned, in the thread that
  waits: what an application sees) - store sent (the moment just before
  the writer's store call). Both are CLOCK_MONOTONIC, which every process of
  the host shares. For rados and etcd the moment the library's callback ran
  is reported too (``callback_us``), and for rados the delivery of the
  notify alone (``notify_us``: woken - the moment just before aio_notify,
  after set_omap returned).
- A wait that returned before the store was sent is spurious (allowed by
  radostdb's watch; counted, not timed). A wait that outlasts the run is an
  error (a missed change), reported instead of figures.
- store latency: the writer's calls, timed each: COLD (nobody watches it)
  and HOT (a watcher armed): what a watched write costs its writer.
- Interleaved: the kinds' pairs all start first; then each kind runs
  WINDOWS windows of seconds / WINDOWS, in an order rotated from window to
  window, one kind at a time (the others' watchers sit armed, idle).
- OSD ops (radostdb and rados): the OSDs' ``osd.op`` (opcount.OsdOps) read
  around each window of the kind, divided by its rounds: a round is the
  COLD store, the HOT store, its notify, the watcher's acknowledgement of
  the notify (an OSD op too) and (radostdb) the re-arm. The ops
  of one unwatched store are counted by the parent beforehand (REPEATS
  chunks of CALIBRATE stores of COLD between settled readings, the least);
  ``osd_ops_per_change`` is a round's ops less that: what a watched change
  costs, with its re-arm.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import Any

from .. import codec
from .contention import GRACE, await_ready, end_clients, spawn
from .progress import Reporter
from .spec import SHARDS, Place
from .stats import percentiles

KINDS = ("radostdb", "rados", "etcd")
HOT = b"watched"
WINDOWS = 5  # windows per kind, rotated
CALIBRATE = 100  # unwatched stores counted for the ops of one ...
REPEATS = 3  # ... in as many chunks; the least count is the figure (as opcount's)
RAW_OBJ = "watch.raw"
ARMED = "armed"


def _cold_key() -> bytes:
    """An unwatched key on HOT's shard (radostdb's and the raw object's alike)."""
    want = codec.shard_of(HOT, SHARDS)
    return next(k for i in range(10_000) if codec.shard_of(k := b"cold%d" % i, SHARDS) == want)


COLD = _cold_key()


# -- the three kinds: one side object for the watcher and the writer alike ---------
class _Radostdb:
    """radostdb's watch (watch.py) on one database of the bench's namespace."""

    def __init__(self, place: Place, create: bool = False) -> None:
        from .backends.ceph import open_radostdb

        self.db = open_radostdb(place, "watch", create)
        self.w: Any = None

    def arm(self) -> None:
        self.w = self.db.watch(HOT)

    def wait(self, timeout: float) -> float | None:
        self.w.wait(timeout)
        return None

    def rearm(self) -> None:
        self.w.rearm()

    def store(self, key: bytes, value: bytes, stamps: list[float]) -> None:
        self.db.store(key, value)

    def close(self) -> None:
        if self.w is not None:
            self.w.cancel()
        self.db.close()


class _Callback:
    """A library callback's moment, and the event the waiting thread waits on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.at = 0.0
        self.error: BaseException | None = None

    def fired(self, error: BaseException | None = None) -> None:
        self.at = time.monotonic()
        self.error = error
        self.event.set()

    def wait(self, timeout: float) -> float:
        if not self.event.wait(timeout):
            raise TimeoutError(f"no change within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.at

    def rearm(self) -> None:
        self.event.clear()


def _ignore(*_args: Any) -> None:
    """aio_notify completions need no handling."""


class _Rados(_Callback):
    """Raw python-rados: a watch on one object, set_omap then aio_notify."""

    def __init__(self, place: Place, create: bool = False) -> None:
        super().__init__()
        import rados

        from .backends.ceph import connect

        self.rados = rados
        self.conn = connect(place.conf, place.client_id)
        self.io = self.conn.open_ioctx(place.pool)
        self.io.set_namespace(place.namespace)
        self.watch: Any = None
        self.inflight: list[Any] = []
        if create:
            with rados.WriteOpCtx() as op:
                op.write_full(b"")
                self.io.clear_omap(op)
                self.io.operate_write_op(op, RAW_OBJ)

    def arm(self) -> None:
        self.watch = self.io.watch(RAW_OBJ, lambda *_: self.fired())

    def store(self, key: bytes, value: bytes, stamps: list[float]) -> None:
        with self.rados.WriteOpCtx() as op:
            self.io.set_omap(op, (codec.encode_key(key),), (value,))
            self.io.operate_write_op(op, RAW_OBJ)
        if key == HOT:
            stamps.append(time.monotonic())
            self.inflight = [c for c in self.inflight if not c.is_complete()]
            self.inflight.append(self.io.aio_notify(RAW_OBJ, _ignore, "K"))

    def close(self) -> None:
        for c in self.inflight:
            c.wait_for_complete_and_cb()
        if self.watch is not None:
            self.watch.close()
        self.io.close()
        self.conn.shutdown()


class _Etcd(_Callback):
    """python3-etcd3: add_watch_callback on a key, put."""

    def __init__(self, place: Place, create: bool = False) -> None:
        super().__init__()
        from .backends.etcd import client

        self.c = client(place.etcd)
        self.prefix = f"/{place.namespace}/watch/".encode()
        self.wid: Any = None

    def arm(self) -> None:
        def callback(resp: Any) -> None:
            self.fired(resp if isinstance(resp, BaseException) else None)

        self.wid = self.c.add_watch_callback(self.prefix + HOT, callback)

    def store(self, key: bytes, value: bytes, stamps: list[float]) -> None:
        self.c.put(self.prefix + key, value)

    def close(self) -> None:
        if self.wid is not None:
            self.c.cancel_watch(self.wid)
        self.c.close()


SIDES = {"radostdb": _Radostdb, "rados": _Rados, "etcd": _Etcd}


# -- the two processes of a kind ------------------------------------------------
def _watcher_main(conn: Any, place: Place, kind: str, peer: Any, timeout: float) -> None:
    """Arm, say ready, then: wait, stamp, take the writer's stamps, re-arm,
    say armed; until the writer says the run is over (None)."""
    side = None
    try:
        side = SIDES[kind](place)
        side.arm()
        conn.send(("ready", None))
        peer.send(ARMED)
        sent: list[float] = []
        woken: list[float] = []
        callbacks: list[float | None] = []
        notified: list[float | None] = []
        while True:
            cb = side.wait(timeout)
            t1 = time.monotonic()
            msg = peer.recv()
            if msg is None:
                break
            t0, tn = msg
            sent.append(t0)
            woken.append(t1)
            callbacks.append(cb)
            notified.append(tn)
            side.rearm()
            peer.send(ARMED)
        conn.send(
            ("ok", {"sent": sent, "woken": woken, "callbacks": callbacks, "notified": notified})
        )
    except Exception:
        conn.send(("error", f"{kind} watcher: {traceback.format_exc()}"))
    finally:
        if side is not None:
            side.close()


def _writer_main(conn: Any, place: Place, kind: str, peer: Any, timeout: float) -> None:
    """Say ready; for each window (a stop time from the parent) store COLD
    and HOT each time the watcher is armed, then answer ("done", rounds);
    at None, one last store of HOT with None to the watcher ends it."""
    side = None
    try:
        side = SIDES[kind](place)
        conn.send(("ready", None))
        cold: list[float] = []
        hot: list[float] = []
        armed = False
        n = 0
        while True:
            stop_at = conn.recv()
            rounds = 0
            while True:
                if not armed:
                    if not peer.poll(timeout):
                        raise RuntimeError(f"the watcher did not re-arm within {timeout:g} s")
                    peer.recv()
                    armed = True
                if stop_at is None or time.monotonic() >= stop_at:
                    break
                n += 1
                value = str(n).encode()
                stamps: list[float] = []
                t = time.monotonic()
                side.store(COLD, value, stamps)
                t0 = time.monotonic()
                side.store(HOT, value, stamps)
                t1 = time.monotonic()
                cold.append((t0 - t) * 1e6)
                hot.append((t1 - t0) * 1e6)
                peer.send((t0, stamps[0] if stamps else None))
                armed = False
                rounds += 1
            if stop_at is None:
                side.store(HOT, b"end", [])
                peer.send(None)
                break
            conn.send(("done", rounds))
        conn.send(("ok", {"store_cold_us": cold, "store_hot_us": hot}))
    except Exception:
        conn.send(("error", f"{kind} writer: {traceback.format_exc()}"))
    finally:
        if side is not None:
            side.close()


# -- the figures -------------------------------------------------------------------
LATENCY_KEYS = ("p50", "p90", "p99", "max", "mean", "count")


def _lat(values: list[float]) -> dict[str, float]:
    p = percentiles(values)
    return {k: p[k] for k in LATENCY_KEYS} if p else {}


def wake_latencies(sent: list[float], woken: list[float]) -> tuple[list[float], int]:
    """Wake latencies in µs (woken - sent, paired) and the spurious wakeups:
    the waits that returned before the store was sent."""
    out = [(w - s) * 1e6 for s, w in zip(sent, woken, strict=True) if w >= s]
    return out, len(sent) - len(out)


def _known(a: list[float], b: list[float | None]) -> tuple[list[float], list[float]]:
    """The pairs of a and b where b is known (not None), as two lists."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if y is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


def latency_ratios(ours: dict[str, float], other: dict[str, float]) -> dict[str, float] | None:
    """ours / other for p50, p99 and mean (None when either is missing)."""
    if not ours or not other:
        return None
    keys = ("p50", "p99", "mean")
    if any(other.get(k, 0) <= 0 for k in keys):
        return None
    return {k: ours[k] / other[k] for k in keys}


@dataclass
class WatchRun:
    """One kind's figures (µs; OSD ops for radostdb and rados)."""

    kind: str
    rounds: int = 0  # watched changes the watcher saw
    seconds: float = 0.0  # the kind's windows, summed
    spurious: int = 0  # waits that returned before the store was sent
    wake_us: dict[str, float] = field(default_factory=dict)  # store sent -> wait returned
    callback_us: dict[str, float] = field(default_factory=dict)  # store sent -> callback ran
    notify_us: dict[str, float] = field(default_factory=dict)  # notify sent -> wait returned
    store_watched_us: dict[str, float] = field(default_factory=dict)
    store_unwatched_us: dict[str, float] = field(default_factory=dict)
    osd_ops_per_round: float | None = None
    osd_ops_per_unwatched_store: float | None = None
    osd_ops_per_change: float | None = None
    error: str | None = None


def figures(
    kind: str,
    watcher: dict[str, Any],
    writer: dict[str, Any],
    seconds: float,
    ops: int | None,
    ops_store: float | None,
) -> WatchRun:
    """A kind's WatchRun from its watcher's and writer's logs."""
    wake, spurious = wake_latencies(watcher["sent"], watcher["woken"])
    run = WatchRun(kind=kind, rounds=len(watcher["sent"]), seconds=seconds, spurious=spurious)
    run.wake_us = _lat(wake)
    sent, callbacks = _known(watcher["sent"], watcher["callbacks"])
    run.callback_us = _lat(wake_latencies(sent, callbacks)[0])
    woken, notified = _known(watcher["woken"], watcher["notified"])
    run.notify_us = _lat(wake_latencies(notified, woken)[0])
    run.store_watched_us = _lat(writer["store_hot_us"])
    run.store_unwatched_us = _lat(writer["store_cold_us"])
    if ops is not None and run.rounds:
        run.osd_ops_per_round = ops / run.rounds
        run.osd_ops_per_unwatched_store = ops_store
        if ops_store is not None:
            run.osd_ops_per_change = run.osd_ops_per_round - ops_store
    return run


# -- the parent ----------------------------------------------------------------------
def _calibrate(kind: str, place: Place, counter: Any) -> float | None:
    """Create the kind's data; the OSD ops of one unwatched store (None for etcd)."""
    side = SIDES[kind](place, create=True)
    try:
        side.store(HOT, b"0", [])
        if counter is None:
            side.store(COLD, b"0", [])
            return None
        counts = []
        before = counter.settled()
        for _ in range(REPEATS):
            for i in range(CALIBRATE):
                side.store(COLD, str(i).encode(), [])
            after = counter.settled()
            counts.append(after - before)
            before = after
        return min(counts) / CALIBRATE
    finally:
        side.close()


def watch(place: Place, kinds: list[str], seconds: float, rep: Reporter) -> dict[str, Any]:
    """Wake latency of every kind, interleaved (see the module comment)."""
    from .opcount import OsdOps

    window = seconds / WINDOWS
    timeout = len(kinds) * seconds + GRACE  # a watcher waits through the others' windows
    rep.phase(f"watch: {', '.join(kinds)}, {seconds:g}s each", len(kinds) * WINDOWS + 1)
    out: dict[str, Any] = {"seconds": seconds, "windows": WINDOWS, "kinds": {}}
    counter = OsdOps(place.conf, place.client_id)
    pairs: dict[str, list[tuple[Any, Any]]] = {}
    errors: dict[str, str] = {}
    ops: dict[str, int] = {}
    secs: dict[str, float] = {}
    try:
        rep.step("watch: starting the watchers and writers")
        ops_store = {k: _calibrate(k, place, None if k == "etcd" else counter) for k in kinds}
        for k in kinds:
            procs: list[tuple[Any, Any]] = []
            pairs[k] = procs
            a, b = get_context("spawn").Pipe()
            try:
                spawn(procs, _watcher_main, place, k, a, timeout)
                spawn(procs, _writer_main, place, k, b, timeout)
            finally:
                a.close()
                b.close()
        for k in kinds:
            try:
                await_ready(pairs[k], f"watch {k}")
            except (RuntimeError, EOFError, OSError) as exc:
                errors[k] = str(exc) or f"{type(exc).__name__} (a process ended)"
        rep.advance()
        for w in range(WINDOWS):
            shift = w % len(kinds)
            for k in kinds[shift:] + kinds[:shift]:
                if k in errors:
                    continue
                rep.step(f"watch: {k}, window {w + 1}/{WINDOWS}")
                writer = pairs[k][1][1]
                before = counter.total() if k != "etcd" else 0
                t = time.monotonic()
                try:
                    writer.send(t + window)
                    if not writer.poll(window + GRACE):
                        raise RuntimeError(f"writer still busy {GRACE:.0f}s after its window")
                    status, got = writer.recv()
                    if status != "done":
                        raise RuntimeError(got)
                except (RuntimeError, EOFError, OSError) as exc:
                    errors[k] = str(exc) or f"{type(exc).__name__} (a process ended)"
                    continue
                secs[k] = secs.get(k, 0.0) + time.monotonic() - t
                if k != "etcd":
                    ops[k] = ops.get(k, 0) + counter.total() - before
                rep.advance()
        for k in kinds:
            out["kinds"][k] = asdict(_finish(k, pairs[k], errors.get(k), secs, ops, ops_store))
    finally:
        for procs in pairs.values():
            end_clients(procs)
        counter.close()
    runs = out["kinds"]
    ours = (runs.get("radostdb") or {}).get("wake_us") or {}
    out["ratio_rados"] = latency_ratios(ours, (runs.get("rados") or {}).get("wake_us") or {})
    out["ratio_etcd"] = latency_ratios(ours, (runs.get("etcd") or {}).get("wake_us") or {})
    return out


def _finish(
    kind: str,
    procs: list[tuple[Any, Any]],
    error: str | None,
    secs: dict[str, float],
    ops: dict[str, int],
    ops_store: dict[str, float | None],
) -> WatchRun:
    """End a kind's pair (None to its writer) and collect both logs."""
    results: list[tuple[str, Any]] = []
    if error is None:
        try:
            procs[1][1].send(None)
            for who, (_, conn) in zip(("watcher", "writer"), procs, strict=True):
                if not conn.poll(GRACE):
                    raise RuntimeError(f"the {who} did not end within {GRACE:.0f}s")
                results.append(conn.recv())
        except (RuntimeError, EOFError, OSError) as exc:
            error = str(exc) or f"{type(exc).__name__} (a process ended)"
    else:  # a failed side's own report, when it sent one
        for _, conn in procs:
            try:
                if conn.poll(0.5):
                    results.append(conn.recv())
            except (EOFError, OSError):
                pass
    errors = [out for status, out in results if status == "error"]
    if error is not None or errors:
        return WatchRun(kind=kind, error="\n".join([*([error] if error else []), *errors]))
    (_, watcher), (_, writer) = results
    return figures(kind, watcher, writer, secs.get(kind, 0.0), ops.get(kind), ops_store[kind])
