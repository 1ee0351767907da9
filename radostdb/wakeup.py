"""Waking lock waiters: the process's watches on lock objects and the two
notifies that travel over them.

- A waiter watches the object it waits on (``ensure_watch``) and sleeps until
  a notify arrives there or a deadline passes (``generation`` then
  ``sleep``): waking is driven by the cluster, nothing polls.
- "W" (``announce``): somebody waits on this object. Sent synchronously, so
  when it returns every live watcher, and so every holder, has seen it;
  holders registered with ``listen`` are told (their ``on_wait``), and the
  object is marked as waited on.
- An announce some watcher did not acknowledge (a process that died or
  stopped still watches the object until the OSD's watch timeout) took the
  whole notify timeout. For DEAF_PERIOD after that, announces on the
  object are sent without waiting (live watchers still hear them) and
  ``announce`` says so: the waiter then looks at the lock table again at
  least every DEAF_POLL instead of trusting the announce (locking.py).
  A dead watcher thus costs one notify timeout per DEAF_PERIOD, never one
  per wait, and nothing loops on it. ``stats`` counts what was sent.
- "C" (``changed``): the object changed (a release, a commit); every
  sleeper on it wakes and looks again. Sent without waiting for the
  answers; ``wake_waiters`` sends it only if a "W" was heard since the last
  one (or a holder saw waiters behind it, ``mark_waited``), so an
  uncontended release costs no notify. "C" followed by an owner (hex) is
  for that owner alone: a lock handed to it; sleepers of other owners
  (``sleep`` with ``owner``) do not wake, and sleepers without an owner
  count only untargeted notifies.
- "G" (``grant``), sent to one process's inbox, not to the lock object: a
  lock on an object was handed to the waiter whose request holds this
  ticket. The class gives every lock entry a ticket and keeps the inbox
  the request named; a release returns the ticket of the first waiter it
  granted, the giver finds that entry's inbox in the lock table (read
  right behind the release) and sends "G" there, so the grant is a fact,
  not a guess. A waiter of the same host gets it through a datagram socket
  named after its inbox instead of a notify (localwake.py: microseconds,
  not a trip through the OSD). The waiter holding that ticket stops sleeping and takes the
  lock without reading the lock table. The message may carry the record
  the waiter locked (FOUND with its data, or MISSING), as its giver left
  it: then the waiter does not read it either. A ticket names one entry of
  one object (tickets wrap only after TICKET_MAX entries there), so a "G"
  never grants a later request. Only the waiter's process hears it: a
  handoff costs one notify and one answer, whatever the number of
  processes watching the lock object (a notify there is answered by every
  one of them, each answer an op on that object's placement group).
  Grants heard are kept by (object, ticket), the last GRANTS_KEPT, so a
  "G" that overtakes the reply to the lock request it grants is not missed.
  A "G" also lists the waiters queued behind the grantee (``Behind``), and
  how many of the first of them wait for the same record's exclusive lock
  with nothing else queued ahead ("in line"): the grantee's release of
  that lock grants the first of those, so the grantee may send that "G"
  together with its release, before the reply (shardclient.py: an early
  grant; it is a fact once the release lands, and a write of the new
  holder that gets there first waits for it). The same goes for the
  transaction lock, whose waiters are in line when they wait for it with
  nothing else queued ahead; a "G" of the transaction lock carries the
  epoch of its grant (txnlock.py), so its holder reads nothing before its
  transaction's first touch.
- Inboxes: one per process and I/O context, made when a lock request of
  the process first had to queue (``take_inbox``; the request then names
  it in a second call, which renews its entry): the object
  ``radostdb.inbox.<16 hex>`` (the number is random), created empty and
  watched, and its socket on this host bound (localwake.py); later
  requests name it at once. Removed (unwatched, then
  deleted) once no request has named it for WATCH_IDLE, as the lock
  objects' watches are closed (an idle process watches nothing), and
  when the connection shuts down, unless the cluster stopped answering
  (then it is left: waiting for the op timeout to remove it would delay
  the exit). A forked child makes its own. A process killed leaves its
  inbox behind, an empty object that nobody watches once the OSD's watch
  timeout has passed (``radostdb inboxes --prune`` removes those).
- "K" (``keys_changed``): records watched with watch.py changed; the
  message lists the keys (hex, comma separated), or "*" for every key of
  the object (a clear, or more than KEYS_MAX keys). It counts only for
  ``key_generation``: lock sleepers do not wake for it. Sent without
  waiting, by a writer whose write removed WATCH entries (the class says
  so), so a write nobody watches costs no notify.
- A watch made while a "W" was being announced may miss it: once made,
  the lock table is read (on the service thread) and waiters found there
  are told to the listeners as a "W" would be, so a holder of a cached lock
  (txnlock.py, intent.py) never keeps it from a waiter it did not hear.
- One watch per (I/O context, object), shared by every handle of the
  process. A watch costs the OSD a ping every few seconds for as long as it
  lives, so it is closed (on the service thread) once the process has had
  no interest in the object for WATCH_IDLE: no handle holds or waits for a
  lock there (its table tracks no entry), no record watch is armed there
  (``pin``), and nobody asked for the watch since. An idle process thus watches nothing.
- After ``fork()`` the child drops its parent's watches (never touched
  again); before the connections shut down, ``drain`` waits for the
  notifies still in flight.
locking.py decides when to wait and when to wake; this module only carries
the messages.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import rados

from . import cluster as clustermod
from . import forks, localwake

NOTIFY_TIMEOUT_MS = 1000
DEAF_PERIOD = 30.0  # seconds of unwaited announces after one went unacknowledged (the
# OSD's default watch timeout: a dead watcher is gone by then)
DEAF_POLL = 0.25  # how often a waiter that could not trust its announce looks again
WATCH_IDLE = 10.0  # seconds a watch outlives the process's last interest in its object
WAIT_MSG = "W"
CHANGED_MSG = "C"
KEYS_MSG = "K"
GRANT_MSG = "G"  # "G<object b64>:<ticket hex>:<record status>:<key b64>:<data b64>:<behind>:<in
# line>:<epoch hex>:<handover b64>" with <behind> "<ticket hex>.<inbox hex>,...", <in line>
# decimal, <epoch> the transaction lock's (0: none said) and <handover> what a transaction's
# giver hands on (handover.py; empty: nothing) (older senders stop after <epoch>, <in line> or
# <behind>) (ASCII: python-rados sends a notify's message as a C string)
INBOX_PREFIX = "radostdb.inbox."
GRANT_VALUE_MAX = 16384  # record bytes a "G" carries at most (larger: the waiter reads it)
GRANTS_KEPT = 256  # "G"s remembered by (object, ticket) until their waiter takes them
NO_RECORD = 0xFF  # a "G" without the record
KEYS_MAX = 64  # keys named in one "K"; more: "*" (every watch on the object wakes)


@dataclass(frozen=True)
class Behind:
    """The waiters queued behind a lock's new holder, as far as its giver
    knew: (ticket, inbox) in queue order; the first ``in_line`` of them
    wait for the same record's exclusive lock and nothing else is queued
    ahead of them, so the holder's release of that lock grants the first
    of them (unless it left the queue meanwhile)."""

    waiters: tuple[tuple[int, int], ...] = ()
    in_line: int = 0

    def after(self, i: int) -> Behind:
        """Who waits behind ``waiters[i]``, once it holds the lock."""
        return Behind(self.waiters[i + 1 :], max(0, self.in_line - i - 1))

    def next_in_line(self) -> tuple[int, int] | None:
        """(ticket, inbox) of the waiter our release of the lock grants, if known."""
        return self.waiters[0] if self.in_line > 0 and self.waiters else None


@dataclass
class Grant:
    """A "G" heard: the record it carried (key, status or NO_RECORD, data),
    the waiters behind its grantee, the epoch of a transaction lock's grant
    (0: none said), what a transaction's giver handed on (handover.py; b"":
    nothing), and when it came."""

    key: bytes
    status: int
    data: bytes
    behind: Behind
    epoch: int
    heard: float
    handover: bytes = b""


class _Notices:
    """Process-wide watches on the objects locks wait on, and what they deliver."""

    def __init__(self) -> None:
        # reentrant: a handle closed by the garbage collector may release its
        # locks from inside any of these methods
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.watches: dict[tuple[int, str], Any] = {}
        self.used: dict[tuple[int, str], float] = {}  # when each watch was last asked for
        self.reaping = False  # a reap is scheduled on the service thread
        self.gen: dict[str, int] = {}  # object -> notifies seen
        self.tgen: dict[tuple[str, bytes], int] = {}  # (object, owner in hex) -> "C"s for it
        self.kgen: dict[tuple[str, bytes], int] = {}  # (object, key in hex, or "*") -> "K"s
        # (id of the I/O context, object, ticket) -> the "G"s heard, oldest
        # first (an object name and a ticket may recur in another pool or
        # namespace: its inbox is another)
        self.grants: OrderedDict[tuple[int, str, int], Grant] = OrderedDict()
        self.inboxes: dict[int, tuple[int, Any, Any]] = {}  # id(io) -> (number, io, watch)
        self.inbox_users: dict[int, int] = {}  # id(io) -> lock requests naming its inbox now
        self.inbox_used: dict[int, float] = {}  # id(io) -> when its inbox was last named
        # id(io) -> its inbox's socket on this host (localwake.py)
        self.local: dict[int, localwake.Receiver] = {}
        self.sender = localwake.Sender()
        self.made: dict[str, int] = {}  # object -> watches made on it (a new one may have missed)
        self.pinned: dict[str, int] = {}  # object -> armed record watches (watch.py) on it
        # objects on which somebody waits -> the owner to wake there (None: all)
        self.waited: dict[str, bytes | None] = {}
        self.listeners: dict[str, weakref.WeakSet[Any]] = {}  # object -> tables told of waits
        self.inflight: list[Any] = []  # aio notifies not yet completed
        self.deaf: dict[str, float] = {}  # object -> until when announces go unwaited
        self.stats = {
            "announced": 0,
            "unacknowledged": 0,
            "unwaited": 0,
            "changed": 0,
            "handed": 0,
            "granted": 0,
            "early": 0,  # of the "granted": sent with the release, before its reply
            "local": 0,  # of the "granted": delivered on this host, without a notify
            "keys": 0,
        }

    def ensure_watch(self, io: Any, obj: str, verify: bool = False) -> None:
        key = (id(io), obj)
        self.used[key] = time.monotonic()
        if key in self.watches and verify:
            try:
                self.watches[key].check()  # local: raises once the watch is broken
            except rados.Error:  # (its process stopped past the OSD's watch timeout)
                with self.lock:
                    broken = self.watches.pop(key, None)
                if broken is not None:
                    clustermod.close_watch(broken)
        if key in self.watches:
            return

        def on_notify(_nid: int, _notifier: int, _wid: int, data: bytes) -> None:
            msg = bytes(data or b"")
            if msg[:1] == KEYS_MSG.encode():
                with self.cond:
                    for k in msg[1:].split(b","):
                        self.kgen[(obj, k)] = self.kgen.get((obj, k), 0) + 1
                    self.cond.notify_all()
                return
            with self.cond:
                if msg == WAIT_MSG.encode():  # for holders: sleepers need not look
                    self.waited[obj] = None
                elif len(msg) > 1 and msg[:1] == CHANGED_MSG.encode():  # for one waiter
                    self.tgen[(obj, msg[1:])] = self.tgen.get((obj, msg[1:]), 0) + 1
                else:
                    self.gen[obj] = self.gen.get(obj, 0) + 1
                listeners = list(self.listeners.get(obj, ()))
                self.cond.notify_all()
            if msg == WAIT_MSG.encode():
                for table in listeners:
                    table.on_wait(obj)

        try:
            try:
                watch = io.watch(obj, on_notify)
            except rados.ObjectNotFound:  # an object never written: create it empty
                with rados.WriteOpCtx() as op:
                    op.new(rados.LIBRADOS_CREATE_IDEMPOTENT)
                    io.operate_write_op(op, obj)
                watch = io.watch(obj, on_notify)
        except rados.Error as exc:
            raise clustermod.io_error(exc, f"watching {obj}", io) from None
        with self.lock:
            if key in self.watches:  # raced with another thread
                forks.abandon([watch])
                return
            self.watches[key] = clustermod.track_watch(watch, io)
            self.used[key] = time.monotonic()
            self.made[obj] = self.made.get(obj, 0) + 1
            schedule = not self.reaping
            self.reaping = True
        if schedule:
            self._schedule_reap(time.monotonic() + WATCH_IDLE)
        from . import service  # service imports this module

        service.submit(lambda: self._catch_up(io, obj))

    def _catch_up(self, io: Any, obj: str) -> None:
        """(service thread) A watch was just made: a "W" announced before it
        was missed. If the lock table shows waiters, tell the listeners as
        a "W" would (a cached lock's holder must hear them)."""
        from . import clsops  # clsops imports nothing of this module's users

        try:
            st = clsops.state(io, obj)
        except Exception:
            return  # the waiter's own deadline still ends its wait
        if st is None or all(e.held for e in st.header.entries):
            return
        with self.cond:
            self.gen[obj] = self.gen.get(obj, 0) + 1
            self.waited[obj] = None
            listeners = list(self.listeners.get(obj, ()))
            self.cond.notify_all()
        for table in listeners:
            table.on_wait(obj)

    def _schedule_reap(self, when: float) -> None:
        from . import service  # service imports this module

        service.call_at(when, self.reap, key=self)

    def _wanted(self, obj: str) -> bool:
        """Does a handle of this process hold or wait for a lock on obj, or
        watch a record there?"""
        if self.pinned.get(obj):
            return True
        return any(table.has_entries(obj) for table in list(self.listeners.get(obj, ())))

    def reap(self) -> None:
        """(service thread) Close the watches nobody needed for WATCH_IDLE."""
        now = time.monotonic()
        with self.lock:
            idle = [
                k
                for k in self.watches
                if now - self.used.get(k, 0.0) >= WATCH_IDLE and not self._wanted(k[1])
            ]
            closing = [self.watches.pop(k) for k in idle]
            for k in idle:
                self.used.pop(k, None)
            self.reaping = bool(self.watches)
            nxt = min((self.used.get(k, now) for k in self.watches), default=now) + WATCH_IDLE
        for watch in closing:  # outside the lock: closing waits for notify callbacks
            clustermod.close_watch(watch)
        self.close_inboxes(idle_only=True)
        with self.lock:
            self.reaping = bool(self.watches or self.inboxes)
            if self.inboxes:
                nxt = min(nxt, min(self.inbox_used.get(k, now) for k in self.inboxes) + WATCH_IDLE)
        if self.reaping:
            self._schedule_reap(max(nxt, now + 1.0))

    def watched(self) -> int:
        """How many objects this process watches now (its inboxes too)."""
        with self.lock:
            return len(self.watches) + len(self.inboxes)

    def watching(self, io: Any, obj: str) -> bool:
        key = (id(io), obj)
        with self.lock:
            if key not in self.watches:
                return False
        self.used[key] = time.monotonic()
        return True

    def listen(self, obj: str, table: Any) -> None:
        with self.lock:
            self.listeners.setdefault(obj, weakref.WeakSet()).add(table)

    def take_inbox(self, io: Any, make: bool) -> int:
        """This process's inbox on io, counted as in use until
        ``drop_inbox``; made and watched if there is none and ``make``
        (else 0, not counted)."""
        with self.lock:
            found = self.inboxes.get(id(io))
            if found is not None or not make:
                if found is not None:
                    self.inbox_users[id(io)] = self.inbox_users.get(id(io), 0) + 1
                    self.inbox_used[id(io)] = time.monotonic()
                return found[0] if found is not None else 0
        number = self.inbox(io)
        with self.lock:
            self.inbox_users[id(io)] = self.inbox_users.get(id(io), 0) + 1
        return number

    def drop_inbox(self, io: Any) -> None:
        with self.lock:
            left = self.inbox_users.get(id(io), 0) - 1
            if left > 0:
                self.inbox_users[id(io)] = left
            else:
                self.inbox_users.pop(id(io), None)
            self.inbox_used[id(io)] = time.monotonic()

    def inbox(self, io: Any) -> int:
        """This process's inbox on io (made and watched the first time)."""
        found = self.inboxes.get(id(io))
        if found is not None:
            return found[0]
        number = _inbox_number()

        where = id(io)

        def on_grant(_nid: int, _notifier: int, _wid: int, data: bytes) -> None:
            self._heard_grant(where, bytes(data or b""))

        name = inbox_name(number)
        try:
            with rados.WriteOpCtx() as op:
                op.new(rados.LIBRADOS_CREATE_IDEMPOTENT)  # 64 random bits: nobody else's
                io.operate_write_op(op, name)
            watch = io.watch(name, on_grant)
        except rados.Error as exc:
            raise clustermod.io_error(exc, f"making the inbox {name}", io) from None
        local = self._local_inbox(number, where)
        with self.lock:
            if id(io) in self.inboxes:  # raced with another thread: keep theirs
                forks.abandon([watch])
                if local is not None:
                    local.close()
                number = self.inboxes[id(io)][0]
            else:
                self.inboxes[id(io)] = (number, io, clustermod.track_watch(watch, io))
                if local is not None:
                    self.local[id(io)] = local
            self.inbox_used[id(io)] = time.monotonic()
            schedule = not self.reaping
            self.reaping = True
        if schedule:
            self._schedule_reap(time.monotonic() + WATCH_IDLE)
        return number

    def _local_inbox(self, number: int, where: int) -> localwake.Receiver | None:
        """The inbox's socket on this host (None: turned off, or the host
        gives none; then every "G" to it comes by notify)."""
        if not localwake.enabled():
            return None
        try:
            return localwake.Receiver(number, lambda msg: self._heard_grant(where, msg))
        except OSError:
            return None

    def _heard_grant(self, where: int, msg: bytes) -> None:
        if msg[:1] != GRANT_MSG.encode():
            return  # not ours to read
        try:
            o64, tk, st, k64, d64, *rest = msg[1:].split(b":")
            obj = base64.b64decode(o64).decode()
            ticket, status = int(tk, 16), int(st)
            key, data = base64.b64decode(k64), base64.b64decode(d64)
            waiters = tuple(
                (int(t, 16), int(i, 16))
                for t, i in (p.split(b".") for p in (rest[0] if rest else b"").split(b",") if p)
            )
            behind = Behind(waiters, int(rest[1]) if len(rest) > 1 else 0)
            epoch = int(rest[2], 16) if len(rest) > 2 else 0
            handover = base64.b64decode(rest[3]) if len(rest) > 3 else b""
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return
        heard = Grant(key, status, data, behind, epoch, time.monotonic(), handover)
        with self.cond:
            self.grants[(where, obj, ticket)] = heard
            while len(self.grants) > GRANTS_KEPT:
                self.grants.popitem(last=False)
            self.cond.notify_all()

    def close_inboxes(self, idle_only: bool = False) -> None:
        """Stop watching our inboxes and remove them (``idle_only``: those
        no request names and none named for WATCH_IDLE). An inbox whose
        watch the cluster did not answer lately is left behind (removing it
        could wait for the op timeout): an empty object nobody watches."""
        now = time.monotonic()
        with self.lock:
            gone = [
                k
                for k in self.inboxes
                if not idle_only
                or (not self.inbox_users.get(k) and now - self.inbox_used.get(k, 0.0) >= WATCH_IDLE)
            ]
            closing = [self.inboxes.pop(k) for k in gone]
            sockets = [self.local.pop(k) for k in gone if k in self.local]
            for k in gone:
                self.inbox_used.pop(k, None)
        for local in sockets:
            local.close()
        for number, io, watch in closing:
            if clustermod.close_watch(watch):
                with contextlib.suppress(rados.Error):
                    io.remove_object(inbox_name(number))

    def _gen(self, obj: str, owner: bytes | None) -> int:
        gen = self.gen.get(obj, 0)
        if owner:
            gen += self.tgen.get((obj, owner.hex().encode()), 0)
        return gen

    def generation(self, obj: str, owner: bytes | None = None) -> int:
        with self.lock:
            return self._gen(obj, owner)

    def sleep(
        self,
        obj: str,
        since: int,
        timeout: float,
        owner: bytes | None = None,
        ticket: int = 0,
        io: Any = None,
    ) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: (
                    self._gen(obj, owner) != since
                    or (ticket != 0 and (id(io), obj, ticket) in self.grants)
                ),
                timeout,
            )

    def take_grant(self, io: Any, obj: str, ticket: int, since: float) -> Grant | None:
        with self.lock:
            got = self.grants.pop((id(io), obj, ticket), None) if ticket else None
        if got is None or got.heard < since:  # heard before the request was sent: not for it
            return None
        return got

    def grant(
        self, io: Any, obj: str, ticket: int, inbox: int, key: bytes = b"",
        status: int = NO_RECORD, data: bytes = b"", behind: Behind | None = None,
        early: bool = False, epoch: int = 0, handover: bytes = b"",
    ) -> None:  # fmt: skip
        with self.lock:
            self.stats["granted"] += 1
            self.stats["early"] += early
        if status == NO_RECORD or len(data) > GRANT_VALUE_MAX:
            key, status, data = b"", NO_RECORD, b""
        o64 = base64.b64encode(obj.encode()).decode()
        k64, d64 = base64.b64encode(key).decode(), base64.b64encode(data).decode()
        behind = behind or Behind()
        later = ",".join(f"{t:x}.{i:x}" for t, i in behind.waiters)
        msg = f"{GRANT_MSG}{o64}:{ticket:x}:{status}:{k64}:{d64}:{later}:{behind.in_line}:{epoch:x}"
        if handover:
            msg += ":" + base64.b64encode(handover).decode()
        if self.sender.send(inbox, msg.encode()):  # a waiter of this host (localwake.py)
            with self.lock:
                self.stats["local"] += 1
            return
        self._send(io, inbox_name(inbox), msg)

    def _kgen(self, obj: str, key: bytes) -> tuple[int, int]:
        return (
            self.kgen.get((obj, key.hex().encode()), 0) + self.kgen.get((obj, b"*"), 0),
            self.made.get(obj, 0),
        )

    def key_generation(self, obj: str, key: bytes) -> tuple[int, int]:
        with self.lock:
            return self._kgen(obj, key)

    def sleep_key(self, obj: str, key: bytes, since: tuple[int, int], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self._kgen(obj, key) != since, timeout)

    def pin(self, obj: str, delta: int) -> None:
        with self.lock:
            left = self.pinned.get(obj, 0) + delta
            if left > 0:
                self.pinned[obj] = left
            else:
                self.pinned.pop(obj, None)

    def keys_changed(self, io: Any, obj: str, keys: list[bytes] | None) -> None:
        with self.lock:
            self.stats["keys"] += 1
        names = sorted({k.hex() for k in keys}) if keys is not None else []
        every = keys is None or len(names) > KEYS_MAX
        self._send(io, obj, KEYS_MSG + ("*" if every else ",".join(names)))

    def announce(self, io: Any, obj: str) -> bool:
        now = time.monotonic()
        with self.lock:
            deaf = self.deaf.get(obj, 0.0) > now
            self.stats["unwaited" if deaf else "announced"] += 1
        if deaf:
            self._send(io, obj, WAIT_MSG)
            return False
        try:
            io.notify(obj, WAIT_MSG, NOTIFY_TIMEOUT_MS)
            return True
        except rados.Error:  # a watcher did not answer (dead or stopped): see the comment
            with self.lock:
                self.deaf[obj] = time.monotonic() + DEAF_PERIOD
                self.stats["unacknowledged"] += 1
            return False

    def take_waited(self, obj: str) -> tuple[bool, bytes | None]:
        with self.lock:
            if obj in self.waited:
                return True, self.waited.pop(obj)
            return False, None

    def mark_waited(self, obj: str, next_owner: bytes | None) -> None:
        with self.lock:
            if obj in self.waited and self.waited[obj] != next_owner:
                next_owner = None  # two different guesses: wake everyone
            self.waited[obj] = next_owner

    def changed(self, io: Any, obj: str, owner: bytes | None = None) -> None:
        with self.lock:
            self.stats["changed" if owner is None else "handed"] += 1
        self._send(io, obj, CHANGED_MSG if owner is None else CHANGED_MSG + owner.hex())

    def _send(self, io: Any, obj: str, msg: str) -> None:
        """A notify whose answers nobody waits for (tracked for ``drain``)."""
        comp = io.aio_notify(obj, _ignore, msg, NOTIFY_TIMEOUT_MS)
        with self.lock:
            self.inflight = [c for c in self.inflight if not c.is_complete()]
            self.inflight.append(comp)

    def drain(self) -> None:
        with self.lock:
            inflight, self.inflight = self.inflight, []
        for comp in inflight:
            comp.wait_for_complete_and_cb()


def _inbox_number() -> int:
    """A new inbox's number: random, never 0."""
    return int.from_bytes(os.urandom(8), "little") | 1


def _ignore(*_args: Any) -> None:
    """aio notify completions need no handling."""


_notices = _Notices()


def ensure_watch(io: Any, obj: str, verify: bool = False) -> None:
    """Watch obj (once per I/O context and object); creates it empty if needed.
    ``verify``: make the watch again if the OSD dropped it (a watch does not
    come back by itself once its process missed the OSD's watch timeout)."""
    _notices.ensure_watch(io, obj, verify)


def watch_later(io: Any, obj: str) -> None:
    """Watch obj on the lock service thread, off the caller's path: for the
    holder of a lock granted at once, who must hear "W". Made late, the
    watch reads the lock table and tells the listeners of the waiters it
    finds (a "W" sent before it was missed); a failure is left to the
    waiter's re-announce."""
    if _notices.watching(io, obj):
        return
    from . import service  # service imports this module

    def watch() -> None:
        sess = clustermod.session_of(io)
        if sess is not None and sess.cut_off():  # a call just timed out: it would too
            return
        with contextlib.suppress(Exception):
            _notices.ensure_watch(io, obj, False)

    service.submit(watch)


def watched() -> int:
    """How many objects this process watches now: lock objects, and its
    inboxes."""
    return _notices.watched()


def watching(io: Any, obj: str) -> bool:
    """Does this process watch obj on this I/O context (counted as an
    interest, as ``ensure_watch`` is)?"""
    return _notices.watching(io, obj)


def listen(obj: str, table: Any) -> None:
    """Call ``table.on_wait(obj)`` (from the notify thread: it must not block)
    whenever a wait is announced on obj; ``table`` is held weakly."""
    _notices.listen(obj, table)


def generation(obj: str, owner: bytes | None = None) -> int:
    """How many notifies on obj this process has seen (those for everyone,
    and with ``owner`` those handed to it): the mark to sleep from."""
    return _notices.generation(obj, owner)


def sleep(
    obj: str,
    since: int,
    timeout: float,
    owner: bytes | None = None,
    ticket: int = 0,
    io: Any = None,
) -> bool:
    """Sleep until a notify on obj after generation `since` (True), or
    timeout; with ``owner``, a notify handed to another owner does not
    count; with ``ticket``, also when the "G" naming it has come to io's
    inbox."""
    return _notices.sleep(obj, since, timeout, owner, ticket, io)


def take_grant(io: Any, obj: str, ticket: int, since: float) -> Grant | None:
    """The "G" heard on io's inbox for ``ticket`` on obj since ``since``
    (monotonic: when the request was sent), and forget it: the record it
    carried (key, status or NO_RECORD, data), the waiters behind us, the
    transaction lock's epoch; None: none heard."""
    return _notices.take_grant(io, obj, ticket, since)


def grant(
    io: Any,
    obj: str,
    ticket: int,
    inbox: int,
    key: bytes = b"",
    status: int = NO_RECORD,
    data: bytes = b"",
    behind: Behind | None = None,
    early: bool = False,
    epoch: int = 0,
    handover: bytes = b"",
) -> None:
    """Send "G" to ``inbox`` (no wait for the answer): the lock entry on obj
    with this ticket holds its lock now (the release's reply said so), or
    will once the release sent just before lands (``early``: the waiter
    was next in line); with the record ``key`` as the giver left it
    (``status`` FOUND with ``data``, or MISSING; NO_RECORD: not known), the
    waiters queued behind it, as far as the giver knows, and for the
    transaction lock the epoch its holder takes (0: not known) and what
    its giver hands on (``handover``: handover.py)."""
    _notices.grant(io, obj, ticket, inbox, key, status, data, behind, early, epoch, handover)


def inbox_name(number: int) -> str:
    """The object of inbox ``number``."""
    return f"{INBOX_PREFIX}{number:016x}"


def inbox(io: Any) -> int:
    """This process's inbox on io, where the "G"s for its lock requests
    come (made and watched the first time: two round trips)."""
    return _notices.inbox(io)


def take_inbox(io: Any, make: bool = False) -> int:
    """This process's inbox on io for a lock request that names it, kept
    until ``drop_inbox`` (never closed as idle meanwhile); 0 if there is
    none and not ``make``."""
    return _notices.take_inbox(io, make)


def drop_inbox(io: Any) -> None:
    """A request that named the inbox no longer waits."""
    _notices.drop_inbox(io)


def close_inboxes() -> None:
    """Unwatch and remove this process's inboxes (the connections are about
    to shut down)."""
    _notices.close_inboxes()


def announce(io: Any, obj: str) -> bool:
    """Send "W" on obj. True once every watcher has seen it; False when it
    went unacknowledged or, a watcher having been deaf lately, unwaited:
    then look again at least every DEAF_POLL instead of trusting it."""
    return _notices.announce(io, obj)


def stats() -> dict[str, int]:
    """How many announces this process sent (waited for, unacknowledged,
    sent unwaited) and "C" notifies: a storm shows here."""
    with _notices.lock:
        return dict(_notices.stats)


def key_generation(obj: str, key: bytes) -> tuple[int, int]:
    """Where the "K" notifies for ``key`` on ``obj`` stand (and the watches
    made on obj: a watch made since may have missed one)."""
    return _notices.key_generation(obj, key)


def sleep_key(obj: str, key: bytes, since: tuple[int, int], timeout: float) -> bool:
    """Sleep until a "K" naming key on obj (or every key) after ``since``
    (True; also when the object's watch was made again), or timeout."""
    return _notices.sleep_key(obj, key, since, timeout)


def pin(obj: str) -> None:
    """A record watch on obj is armed: keep the object's watch while it is."""
    _notices.pin(obj, 1)


def unpin(obj: str) -> None:
    _notices.pin(obj, -1)


def keys_changed(io: Any, obj: str, keys: list[bytes] | None) -> None:
    """Tell the watchers of obj that these watched records (None: all of
    them) changed, without waiting."""
    _notices.keys_changed(io, obj, keys)


def take_waited(obj: str) -> tuple[bool, bytes | None]:
    """Whether a wait was announced on obj since the last call, and the
    owner a release there hands its lock to (None: unknown); forgets both."""
    return _notices.take_waited(obj)


def mark_waited(obj: str, next_owner: bytes | None = None) -> None:
    """Remember that somebody still waits on obj (wake them on the next
    change): ``next_owner`` when our release will grant that owner alone."""
    _notices.mark_waited(obj, next_owner)


def wake(io: Any, obj: str, owner: bytes | None = None) -> None:
    """Send "C" on obj (no wait for the answers): every waiter looks again,
    or with ``owner`` only that one (the lock was handed to it)."""
    _notices.changed(io, obj, owner)


def wake_waiters(io: Any, obj: str) -> None:
    """After a change on obj: send "C" if a wait was announced since the last one."""
    waited, owner = _notices.take_waited(obj)
    if waited:
        _notices.changed(io, obj, owner)


def busy_here() -> bool:
    """Whether this thread is inside this module's lock (a notify callback
    waiting for it would deadlock with a watch closed from here)."""
    return bool(_notices.lock._is_owned())  # type: ignore[attr-defined]


def drain() -> None:
    """Wait for the notifies in flight (their callbacks must not run after the
    connection is gone)."""
    _notices.drain()


def _after_fork_in_child() -> None:
    """The parent's watches are abandoned, never touched; its notifies in
    flight are its own."""
    global _notices
    forks.abandon(_notices.watches.values())
    forks.abandon(w for _, _, w in _notices.inboxes.values())
    forks.abandon(_notices.inflight)
    for local in _notices.local.values():
        local.forget()
    _notices.sender.forget()
    _notices = _Notices()


forks.at_fork_child(_after_fork_in_child)
