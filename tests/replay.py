"""Conversations with the object class, recorded from the real class and
replayed without a cluster.

replay design:
- A *conversation* is every call one scenario (conversations.py) made
  through python-rados, in the order made, with what the cluster answered:
  class calls (``execute``, ``aio_execute``, compound write ops), watches
  and notifies. Each exchange says who made it: ``code`` (the radostdb logic
  under test: shard clients, resolver, committer, lock books) or ``other``
  (the scenario's setup, and other clients acting at fixed points of the
  code's conversation: the hooks). They are kept in
  tests/vectors/conversations.json, golden vectors like wire.json, and are
  made by :class:`Recorder` against the real class on a real cluster
  (tests/cluster/test_recordings.py, which also re-runs them to check that
  the class still answers the same).
- :class:`ReplayIoctx` stands in for a python-rados ``Ioctx`` in the unit
  tests, with exactly the subset radostdb uses (clsops.py, wakeup.py):
  ``execute``, ``aio_execute`` (its completion's
  ``wait_for_complete_and_cb``, ``wait_for_complete``,
  ``get_return_value``, ``is_complete``), ``create_write_op`` /
  ``operate_aio_write_op`` / ``release_write_op`` with ``execute`` on the
  op, ``operate_write_op``, ``watch`` and ``notify`` / ``aio_notify``. It
  answers the code's calls from the recording, strictly in order: one thread
  issues a scenario's calls in a fixed order (a parallel round in its
  list's order), so a different call, or the same call elsewhere, is a
  change of the protocol. Anything unrecorded fails the test loudly: the
  mismatch is kept and raised as :class:`ReplayMismatch`, a BaseException,
  so that no ``except Exception`` of the library swallows it; calls left
  over at the end fail too.
- Errors come back as python-rados gives them: a sync call raises the
  recorded ``rados.Error`` subclass with ``.errno``; an aio call completes
  with the negative errno and the callback gets no data.
- Notifies: the code's own notify is delivered to the watches of the same
  I/O context before it returns (a real notify returns once every watcher
  acknowledged); an aio notify is delivered at once too. Notifies by
  ``other`` are delivered at their place in the conversation. The other
  clients' class calls are not replayed: their effect is in the later
  replies.
- Everything a scenario does not control is pinned, the same way when
  recording and replaying (:func:`harness`): a virtual clock (time in
  shardclient, resolver, retry, locking; wakeup.sleep returns at once,
  advancing it by its timeout unless a notify came), retry jitter off,
  the committer's txid fixed, the lock service thread replaced by a log of
  what was scheduled (renewals run only when a test runs them), fresh
  wakeup and watch registries. Owner ids are fixed by the scenarios.
- Between a recording and a re-run only OSD times, object versions, lock
  expiry times and journal record times may differ: :func:`normalised`
  turns those into what the code decides on (an entry alive or expired at
  the OSD's now).
"""

from __future__ import annotations

import contextlib
import json
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import rados

from radostdb import clsops, commit, locking, resolver, retry, service, shardclient, wakeup
from radostdb import cluster as clustermod
from radostdb.errors import TdbError
from radostdb.kinds import Kind, Mode

CONVERSATIONS = Path(__file__).resolve().parent / "vectors" / "conversations.json"
RECORD_ENV = "RADOSTDB_RECORD"

Exchange = dict[str, Any]


class ReplayMismatch(BaseException):
    """The code made a call the recording does not have there (a BaseException:
    ``except Exception`` in the library does not hide it)."""


# -- what a call is, in a line ---------------------------------------------------------------
_WFLAGS = (
    (clsops.WRITE_ASSERT_LOCK, "lock"),
    (clsops.WRITE_ASSERT_TXN, "txn"),
    (clsops.WRITE_RELEASE, "release"),
    (clsops.WRITE_REPORT, "report"),
)
_HEAD = 6  # u8 version, u8 compat, u32 length
_OWNER = clsops.OWNER_LEN


def _detail(method: str, req: bytes) -> str:
    """The part of a request that tells calls of one method apart."""
    body = req[_HEAD:]
    if method == "apply":
        wflags = body[_OWNER]
        (txid,) = struct.unpack_from("<Q", body, _OWNER + 1)
        flags = [name for bit, name in _WFLAGS if wflags & bit]
        return (" part" if txid else "") + (f"[{','.join(flags)}]" if flags else "")
    if method == "clear":
        flags = [name for bit, name in _WFLAGS if body[_OWNER] & bit]
        return f"[{','.join(flags)}]" if flags else ""
    if method == "lock":
        kind, mode, flags = body[_OWNER + 4 : _OWNER + 7]
        queue = " QUEUE" if flags & clsops.LOCK_QUEUE else ""
        return f" {Kind(kind).name} {Mode(mode).name}{queue}"
    if method == "unlock":
        kind, mode = body[_OWNER : _OWNER + 2]
        return f" {Kind(kind).name} {Mode(mode).name}"
    if method == "release":
        kind = body[_OWNER + 9]
        return f" {Kind(kind).name}" if kind else ""
    if method == "prune":
        return " CLEAR_STALE" if body[0] & clsops.PRUNE_CLEAR_STALE else ""
    return ""


def short(obj: str, base: str) -> str:
    """An object's name without the scenario's prefix ("s0", "j", "w")."""
    return obj[len(base) + 1 :] if obj.startswith(base + ".") else obj


def describe(ex: Exchange, base: str) -> str:
    """One exchange as the tests spell a protocol step: "s0 lock RECORD EXCL
    QUEUE", "j stage", "s1 apply part[txn,release]", "s0 notify W"."""
    obj = short(ex["obj"], base)
    call = ex["call"]
    if call in ("exec", "aio_exec"):
        return f"{obj} {ex['method']}{_detail(ex['method'], bytes.fromhex(ex['request']))}"
    if call == "write_op":
        return "; ".join(f"{obj} {m}{_detail(m, bytes.fromhex(r))}" for m, r in ex["ops"])
    if call in ("notify", "aio_notify"):
        return f"{obj} notify {ex['msg']}"
    return f"{obj} {call}"


# -- errors as python-rados raises them ----------------------------------------------------------
def _rados_error(name: str, code: int, what: str) -> rados.Error:
    cls = getattr(rados, name, None)
    if not (isinstance(cls, type) and issubclass(cls, rados.Error)):
        raise ReplayMismatch(f"the recording names {name!r}, which is no rados.Error")
    return cls(what, errno=code)


# -- recording (on a real cluster) ---------------------------------------------------------------
@dataclass(frozen=True)
class Hook:
    """Another client's action at a fixed point of the code's conversation:
    ``run(io, base)`` right after the code's ``nth`` call described ``after``
    (every call of the code sent so far has completed by then)."""

    after: str
    run: Callable[[Any, str], None]
    nth: int = 1


class Recorder:
    """Records every call made through its I/O contexts (:meth:`io`) on a real
    one, in order, and runs the hooks."""

    def __init__(self, io: Any, base: str, hooks: tuple[Hook, ...] = ()) -> None:
        self.real = io
        self.base = base
        self.hooks = hooks
        self.armed = False  # hooks fire only while the code runs
        self.exchanges: list[Exchange] = []
        self._pending: list[tuple[Exchange, Any]] = []
        self._seen: dict[str, int] = {}
        self.other = RecordingIoctx(self, "other")

    def io(self, who: str) -> RecordingIoctx:
        return self.other if who == "other" else RecordingIoctx(self, who)

    def add(self, ex: Exchange, comp: Any = None) -> None:
        self.exchanges.append(ex)
        if comp is not None:
            self._pending.append((ex, comp))
        if ex["who"] != "code" or not self.armed:
            return
        step = describe(ex, self.base)
        self._seen[step] = n = self._seen.get(step, 0) + 1
        for hook in self.hooks:
            if hook.after == step and hook.nth == n:
                self.complete()
                hook.run(self.other, self.base)

    def complete(self) -> None:
        """Wait for every call sent so far and note its return value."""
        for ex, comp in self._pending:
            comp.wait_for_complete_and_cb()
            ex["ret"] = comp.get_return_value()
        self._pending = []


class RecordingWriteOp:
    def __init__(self, op: Any) -> None:
        self.op = op
        self.ops: list[list[str]] = []

    def execute(self, cls: str, method: str, data: bytes) -> None:
        assert cls == clsops.CLASS, cls
        self.ops.append([method, data.hex()])
        self.op.execute(cls, method, data)


class RecordingIoctx:
    """A real I/O context whose calls the recorder keeps, as made by ``who``."""

    def __init__(self, recorder: Recorder, who: str) -> None:
        self.rec = recorder
        self.who = who

    def _ex(self, call: str, obj: str, **fields: Any) -> Exchange:
        return {"who": self.who, "call": call, "obj": obj, **fields}

    def execute(
        self, obj: str, cls: str, method: str, data: bytes, length: int = 8192
    ) -> tuple[int, bytes]:
        assert cls == clsops.CLASS, cls
        ex = self._ex("exec", obj, method=method, request=data.hex(), length=length)
        try:
            ret, out = self.rec.real.execute(obj, cls, method, data, length)
        except rados.Error as exc:
            ex.update(ret=-abs(exc.errno or 0), reply=None, error=type(exc).__name__)
            self.rec.add(ex)
            raise
        ex.update(ret=ret, reply=bytes(out).hex())
        self.rec.add(ex)
        return ret, out

    def aio_execute(
        self,
        obj: str,
        cls: str,
        method: str,
        data: bytes,
        length: int = 8192,
        oncomplete: Callable[[Any, Any], None] | None = None,
        onsafe: Any = None,
    ) -> Any:
        assert cls == clsops.CLASS and onsafe is None, (cls, onsafe)
        ex = self._ex(
            "aio_exec", obj, method=method, request=data.hex(), length=length, ret=None, reply=None
        )

        def done(comp: Any, out: Any) -> None:
            ex["reply"] = None if out is None else bytes(out).hex()
            if oncomplete is not None:
                oncomplete(comp, out)

        comp = self.rec.real.aio_execute(obj, cls, method, data, length, oncomplete=done)
        self.rec.add(ex, comp)
        return comp

    def create_write_op(self) -> RecordingWriteOp:
        return RecordingWriteOp(self.rec.real.create_write_op())

    def operate_aio_write_op(
        self,
        op: RecordingWriteOp,
        obj: str,
        oncomplete: Any = None,
        onsafe: Any = None,
        mtime: int = 0,
        flags: int = 0,
    ) -> Any:
        assert oncomplete is None and onsafe is None and not mtime
        ex = self._ex("write_op", obj, ops=op.ops, flags=flags, ret=None)
        comp = self.rec.real.operate_aio_write_op(op.op, obj, flags=flags)
        self.rec.add(ex, comp)
        return comp

    def release_write_op(self, op: RecordingWriteOp) -> None:
        self.rec.real.release_write_op(op.op)

    def operate_write_op(self, op: Any, obj: str, mtime: int = 0, flags: int = 0) -> None:
        ex = self._ex("operate_write_op", obj, flags=flags)
        try:
            self.rec.real.operate_write_op(op, obj, mtime, flags)
        except rados.Error as exc:
            ex.update(ret=-abs(exc.errno or 0), error=type(exc).__name__)
            self.rec.add(ex)
            raise
        ex.update(ret=0)
        self.rec.add(ex)

    def watch(
        self,
        obj: str,
        callback: Callable[..., None],
        error_callback: Any = None,
        timeout: Any = None,
    ) -> Any:
        ex = self._ex("watch", obj)
        try:
            w = self.rec.real.watch(obj, callback, error_callback, timeout)
        except rados.Error as exc:
            ex.update(ret=-abs(exc.errno or 0), error=type(exc).__name__)
            self.rec.add(ex)
            raise
        ex.update(ret=0)
        self.rec.add(ex)
        return w

    def notify(self, obj: str, msg: str = "", timeout_ms: int = 5000) -> bool:
        ex = self._ex("notify", obj, msg=msg)
        try:
            ok = self.rec.real.notify(obj, msg, timeout_ms)
        except rados.Error as exc:
            ex.update(ret=-abs(exc.errno or 0), error=type(exc).__name__)
            self.rec.add(ex)
            raise
        ex.update(ret=0)
        self.rec.add(ex)
        return bool(ok)

    def aio_notify(
        self, obj: str, oncomplete: Callable[..., None], msg: str = "", timeout_ms: int = 5000
    ) -> Any:
        comp = self.rec.real.aio_notify(obj, oncomplete, msg, timeout_ms)
        self.rec.add(self._ex("aio_notify", obj, msg=msg))
        return comp


# -- replaying (no cluster) ----------------------------------------------------------------------
class ReplayCompletion:
    """A python-rados Completion that is complete; its callback runs when the
    caller waits for it (``wait_for_complete_and_cb``), as a real one may."""

    def __init__(self, ret: int, callback: Callable[[], None] | None = None) -> None:
        self.ret = ret
        self._callback = callback

    def wait_for_complete_and_cb(self) -> None:
        cb, self._callback = self._callback, None
        if cb is not None:
            cb()

    def wait_for_complete(self) -> None:
        pass

    def is_complete(self) -> bool:
        return True

    def get_return_value(self) -> int:
        return self.ret


class ReplayWriteOp:
    def __init__(self) -> None:
        self.ops: list[list[str]] = []
        self.released = False

    def execute(self, cls: str, method: str, data: bytes) -> None:
        assert cls == clsops.CLASS, cls
        self.ops.append([method, data.hex()])


class ReplayWatch:
    def __init__(self, io: ReplayIoctx, obj: str, callback: Callable[..., None]) -> None:
        self.io, self.obj, self.callback = io, obj, callback

    def close(self) -> None:
        watches = self.io.watches.get(self.obj, [])
        if self in watches:
            watches.remove(self)

    def check(self) -> Any:
        return None

    def get_id(self) -> int:
        return id(self)


class ReplayIoctx:
    """An Ioctx answering the code's calls from a recorded conversation (see
    the module comment)."""

    def __init__(self, exchanges: list[Exchange], base: str) -> None:
        self.script = [
            ex for ex in exchanges if ex["who"] == "code" or ex["call"] in ("notify", "aio_notify")
        ]
        self.base = base
        self.pos = 0
        self.sent: list[Exchange] = []  # the code's calls, as matched
        self.failures: list[str] = []
        self.watches: dict[str, list[ReplayWatch]] = {}
        self.write_ops: list[ReplayWriteOp] = []
        self._notify_id = 0

    # -- matching
    def _fail(self, message: str) -> ReplayMismatch:
        self.failures.append(message)
        return ReplayMismatch(message)

    def _next(self, call: str, obj: str, **fields: Any) -> Exchange:
        while self.pos < len(self.script) and self.script[self.pos]["who"] != "code":
            other = self.script[self.pos]  # another client's notify: it arrives now
            self.pos += 1
            self._deliver(other["obj"], other["msg"])
        want = {"call": call, "obj": obj, **fields}
        got = {"call": call, "obj": short(obj, self.base), **fields}
        if self.pos >= len(self.script):
            raise self._fail(f"unrecorded call after the end of the conversation: {got}")
        ex = self.script[self.pos]
        recorded = {k: ex.get(k) for k in want}
        if recorded != want:
            done = [describe(e, self.base) for e in self.sent]
            raise self._fail(
                f"call {len(self.sent) + 1} of the code differs from the recording:\n"
                f"  sent:     {describe(want, self.base)} {got}\n"
                f"  recorded: {describe(ex, self.base)} "
                f"{dict(recorded, obj=short(ex['obj'], self.base))}\n"
                f"  after:    {done}"
            )
        self.pos += 1
        self.sent.append(ex)
        return ex

    def _deliver(self, obj: str, msg: str) -> None:
        for w in list(self.watches.get(obj, [])):
            self._notify_id += 1
            w.callback(self._notify_id, 0, w.get_id(), msg.encode())

    def check_done(self) -> None:
        """Fail if a call was refused, recorded calls are left, or a write op
        was not released."""
        if self.failures:
            raise AssertionError(self.failures[0])
        left = [describe(e, self.base) for e in self.script[self.pos :] if e["who"] == "code"]
        assert not left, f"the code stopped before these recorded calls: {left}"
        assert all(op.released for op in self.write_ops), "a write op was not released"

    def steps(self, kinds: bool = False) -> list[str]:
        """The code's calls, described (``kinds``: "aio " / "op " before
        asynchronous calls and compound write ops)."""
        prefix = {"aio_exec": "aio ", "write_op": "op ", "aio_notify": "aio "}
        return [
            (prefix.get(e["call"], "") if kinds else "") + describe(e, self.base) for e in self.sent
        ]

    # -- the Ioctx subset
    def execute(
        self, obj: str, cls: str, method: str, data: bytes, length: int = 8192
    ) -> tuple[int, bytes]:
        assert cls == clsops.CLASS, cls
        ex = self._next("exec", obj, method=method, request=bytes(data).hex(), length=length)
        if ex["ret"] < 0:
            raise _rados_error(ex["error"], -ex["ret"], f"failed to read {obj} (replayed)")
        return ex["ret"], bytes.fromhex(ex["reply"])

    def aio_execute(
        self,
        obj: str,
        cls: str,
        method: str,
        data: bytes,
        length: int = 8192,
        oncomplete: Callable[[Any, Any], None] | None = None,
        onsafe: Any = None,
    ) -> ReplayCompletion:
        assert cls == clsops.CLASS and onsafe is None, (cls, onsafe)
        ex = self._next("aio_exec", obj, method=method, request=bytes(data).hex(), length=length)
        comp = ReplayCompletion(ex["ret"])
        if oncomplete is not None:
            out = None if ex["reply"] is None else bytes.fromhex(ex["reply"])
            comp._callback = lambda: oncomplete(comp, out)
        return comp

    def create_write_op(self) -> ReplayWriteOp:
        op = ReplayWriteOp()
        self.write_ops.append(op)
        return op

    def operate_aio_write_op(
        self,
        op: ReplayWriteOp,
        obj: str,
        oncomplete: Any = None,
        onsafe: Any = None,
        mtime: int = 0,
        flags: int = 0,
    ) -> ReplayCompletion:
        assert oncomplete is None and onsafe is None and not mtime
        ex = self._next("write_op", obj, ops=op.ops, flags=flags)
        return ReplayCompletion(ex["ret"])

    def release_write_op(self, op: ReplayWriteOp) -> None:
        op.released = True

    def operate_write_op(self, op: Any, obj: str, mtime: int = 0, flags: int = 0) -> None:
        ex = self._next("operate_write_op", obj, flags=flags)
        if ex["ret"] < 0:
            raise _rados_error(ex["error"], -ex["ret"], f"failed to write {obj} (replayed)")

    def watch(
        self,
        obj: str,
        callback: Callable[..., None],
        error_callback: Any = None,
        timeout: Any = None,
    ) -> ReplayWatch:
        ex = self._next("watch", obj)
        if ex["ret"] < 0:
            raise _rados_error(ex["error"], -ex["ret"], f"failed to watch {obj} (replayed)")
        w = ReplayWatch(self, obj, callback)
        self.watches.setdefault(obj, []).append(w)
        return w

    def notify(self, obj: str, msg: str = "", timeout_ms: int = 5000) -> bool:
        ex = self._next("notify", obj, msg=msg)
        self._deliver(obj, msg)
        if ex["ret"] < 0:
            raise _rados_error(ex["error"], -ex["ret"], f"failed to notify {obj} (replayed)")
        return True

    def aio_notify(
        self, obj: str, oncomplete: Callable[..., None], msg: str = "", timeout_ms: int = 5000
    ) -> ReplayCompletion:
        self._next("aio_notify", obj, msg=msg)
        self._deliver(obj, msg)
        comp = ReplayCompletion(0)
        comp._callback = lambda: oncomplete(comp, 0, [], [])
        return comp


# -- what varies between runs --------------------------------------------------------------------
def _state_view(reply: bytes) -> dict[str, Any]:
    st = clsops.decode_state(reply)
    h = st.header
    return {
        "seq": h.seq,
        "applied": h.applied,
        "pending": h.pending,
        "settled": h.settled,
        "aborted": h.aborted,
        "powner": h.powner.hex(),
        "participants": h.participants,
        "stale": [o.hex() for o in h.stale],
        "entries": [
            {
                "kind": e.kind,
                "mode": e.mode,
                "state": e.state,
                "flags": e.flags,
                "owner": e.owner.hex(),
                "lease_ms": e.lease_ms,
                "key": e.key.hex(),
                "alive": e.expiry_ms > st.now_ms,
            }
            for e in h.entries
        ],
    }


def _journal_view(reply: bytes) -> dict[str, Any]:
    j = clsops.decode_journal(reply)
    return {
        "legacy": j.legacy,
        "fenced": [o.hex() for o in j.fenced],
        "records": [[r.txid, r.state, r.owner.hex(), r.participants] for r in j.records.values()],
    }


def normalised(ex: Exchange) -> Exchange:
    """An exchange with what must vary between runs (OSD time, object version,
    lock expiry, journal record time) reduced to what the code decides on."""
    out = dict(ex)
    reply = ex.get("reply")
    if reply and ex.get("ret", -1) >= 0:
        if ex.get("method") == "state":
            out["reply"] = _state_view(bytes.fromhex(reply))
        elif ex.get("method") == "journal":
            out["reply"] = _journal_view(bytes.fromhex(reply))
    return out


# -- the pinned environment ----------------------------------------------------------------------
class Clock:
    """Virtual monotonic time: only sleeps move it."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wakeup_sleep(
        self,
        obj: str,
        since: int,
        timeout: float,
        owner: bytes | None = None,
        ticket: int = 0,
        io: Any = None,
    ) -> bool:
        """wakeup.sleep: True at once if a notify came since ``since`` (or
        the "G" for ``ticket`` on io's inbox), else the timeout passes."""
        if wakeup.generation(obj, owner) != since:
            return True
        if ticket and (id(io), obj, ticket) in wakeup._notices.grants:
            return True
        self.sleep(timeout)
        return False


@dataclass
class Context:
    """What a scenario's act gets besides its I/O context: the clock, the jobs
    it gave the lock service (``(when or None, job, key)``), and a place for
    what the tests look at afterwards (the act's rig)."""

    clock: Clock
    base: str = ""  # the scenario's object names start with it
    scheduled: list[tuple[float | None, Callable[[], None], Any]] = field(default_factory=list)
    rig: Any = None


@contextlib.contextmanager
def harness(txid: int, base: str = "") -> Iterator[Context]:
    """Pin what a scenario does not control (see the module comment); the
    committer's transactions get ``txid``."""
    ctx = Context(Clock(), base)
    saved: list[tuple[Any, str, Any]] = []

    def patch(target: Any, name: str, value: Any) -> None:
        saved.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    vtime = SimpleNamespace(monotonic=ctx.clock.monotonic, sleep=ctx.clock.sleep, time=time.time)
    for mod in (shardclient, resolver, retry, locking, wakeup):
        patch(mod, "time", vtime)
    patch(wakeup, "_inbox_number", lambda: 0x1B0C5)
    patch(wakeup, "sleep", ctx.clock.wakeup_sleep)
    patch(wakeup, "_notices", wakeup._Notices())
    patch(retry, "random", SimpleNamespace(uniform=lambda a, b: b))
    patch(commit, "random", SimpleNamespace(getrandbits=lambda bits: txid))
    patch(service, "call_at", lambda when, job, key=None: ctx.scheduled.append((when, job, key)))
    patch(service, "submit", lambda job: ctx.scheduled.append((None, job, None)))
    patch(clustermod, "_watches", {})
    try:
        yield ctx
    finally:
        watches = [*wakeup._notices.watches.values()]
        watches += [w for _, _, w in wakeup._notices.inboxes.values()]
        for w in watches:
            with contextlib.suppress(rados.Error):
                clustermod.close_watch(w)
        for target, name, value in reversed(saved):
            setattr(target, name, value)


# -- outcomes ------------------------------------------------------------------------------------
def outcome_of(value: Any = None, raised: BaseException | None = None) -> Any:
    """What an act came to, as JSON: its (JSON) value, or the error it raised."""
    if raised is None:
        return json.loads(json.dumps(value))
    if isinstance(raised, TdbError):
        return {"raised": "TdbError", "code": raised.code, "message": raised.message}
    return {"raised": type(raised).__name__, "args": [str(a) for a in raised.args]}


# -- the stored conversations --------------------------------------------------------------------
_loaded: dict[str, Any] | None = None


def load() -> dict[str, Any]:
    """The recorded conversations, by scenario name."""
    global _loaded
    if _loaded is None:
        _loaded = json.loads(CONVERSATIONS.read_text())["conversations"]
    return _loaded


def dump(conversations: dict[str, Any]) -> str:
    """The JSON file's text: one exchange a line, so a re-recording diffs well."""
    lines = [
        "{",
        ' "comment": '
        + json.dumps(
            "Conversations of radostdb's client logic with the real radostdb object class, "
            "recorded by tests/cluster/test_recordings.py (RADOSTDB_RECORD=1 rewrites them; "
            "without it that test checks that the class still answers the same) and replayed "
            "without a cluster by tests/unit (tests/replay.py describes the format). "
            "who: code (the logic under test) or other (setup, other clients); requests and "
            "replies are hex; ret is the return value (negative errno), error the rados "
            "exception a sync call raised."
        )
        + ",",
        ' "conversations": {',
    ]
    names = sorted(conversations)
    for i, name in enumerate(names):
        conv = conversations[name]
        lines.append(f"  {json.dumps(name)}: {{")
        lines.append(f'   "doc": {json.dumps(conv["doc"])},')
        lines.append(f'   "outcome": {json.dumps(conv["outcome"])},')
        lines.append('   "exchanges": [')
        exs = conv["exchanges"]
        for j, ex in enumerate(exs):
            lines.append("    " + json.dumps(ex) + ("," if j < len(exs) - 1 else ""))
        lines.append("   ]")
        lines.append("  }" + ("," if i < len(names) - 1 else ""))
    lines += [" }", "}", ""]
    return "\n".join(lines)
