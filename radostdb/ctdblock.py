"""CTDB's cluster lock on radostdb's fenced leases: the lock a ``radostdb
ctdb-lock`` helper takes for ctdbd, and the life of the helper process
around it (the command line is cli_ctdb.py's).

ctdb-lock design:
- The protocol is ctdbd's cluster mutex helper protocol
  (ctdb/doc/cluster_mutex_helper.txt): ctdbd execs the helper with its
  stdout on a pipe; the helper answers ONE byte, ``0`` holding, ``1``
  contended, ``3`` error, and ctdbd ignores its exit code. A holding helper
  stays running, fd 1 open, until SIGTERM (or SIGINT) or its parent dies;
  it then releases and exits 0. When it loses the lock it exits, and ctdbd
  reads EOF on the pipe: that is the only way to tell ctdbd. It never
  daemonises and never writes anything else to stdout; stderr (ctdbd's log)
  gets a line only for errors and losses.
- The lock is an entry in the lock table of OBJECT (the radostdb object
  class, cls/radostdb/locks.h): RECORD EXCL on a fixed key, by a fresh
  random 16-byte owner per helper process (two helpers never share one,
  whatever host they run on). It is taken as a try, without QUEUE: busy is
  ``1`` at once, nothing is left behind. The OSD decides the conflict, in
  OSD time, in one atomic operation; no client clock is trusted across
  hosts.
- The lease: the entry expires ``lease`` seconds (OSD time) after the OSD
  granted or last renewed it. The helper renews every lease/3, with
  asynchronous calls that it never waits on. A renewal counts only when the
  OSD acknowledged it, and it is dated by when it was SENT (the OSD
  extended the lease at or after that instant), so the lease is known to
  last until ``last acknowledged send + lease``. The helper gives up at
  that instant minus a safety margin (:func:`margin_for`: lease/4, between
  0.2 s and 2 s, for scheduling delays and clock-rate skew): it closes
  stdout and exits 1 at once, with a renewal possibly still in flight. A
  renewal hanging on a dead OSD or behind a partition thus ends the helper
  BEFORE another node can take the lock, never after: the weakness of
  Samba's Ceph helper, whose cls_lock renew has no deadline, fixed.
- A renewal refused with -ENOLCK (the entry is gone: the lease ended while
  this process was stopped, say) or any error but a timeout means the lock
  is lost: same exit. A timed-out renewal is retried until the deadline.
- A lost lock is never unlocked: the entry belongs to nobody or to the next
  holder, and the OSD refuses our owner's unlock anyway.
- Release: SIGTERM, SIGINT or the parent's death (PR_SET_PDEATHSIG turns it
  into SIGTERM at once; getppid() is polled too, for kernels or sandboxes
  without it) send an unlock and wait for it at most until the lease would
  end anyway (never more than :data:`RELEASE_WAIT`). A parent that is
  already init at start is an error: the protocol forbids waiting on PID 1.
- Signals only set a flag and wake the loop (set_wakeup_fd; SIGCONT too,
  so a process resumed after SIGSTOP looks at its deadline at once): the
  loop is the one place that decides, so a signal during the first lock request
  still unlocks whatever that request may have been granted (librados keeps
  one client's operations on an object in order).
- Exit is ``os._exit`` after stderr is flushed: no interpreter teardown,
  no session shutdown that could wait on an unreachable cluster.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from . import clsops
from .kinds import Kind, Mode

HOLDING = b"0"
CONTENDED = b"1"
ERROR = b"3"
LOCK_KEY = b"ctdb cluster lock"
DEFAULT_LEASE = 10.0
MIN_LEASE = 1.0
MAX_LEASE = 3600.0
RENEWS_PER_LEASE = 3
MAX_PENDING_RENEWS = 4  # renewals in flight at once (more only pile up on a dead OSD)
RELEASE_WAIT = 5.0  # at most this long for the unlock at exit
PARENT_POLL = 1.0  # seconds between getppid() checks
TICK = 0.05  # how often an outstanding call is looked at
PR_SET_PDEATHSIG = 1

EXIT_RELEASED = 0
EXIT_LOST = 1
EXIT_ERROR = 3


def margin_for(lease: float) -> float:
    """Seconds before the confirmed end of the lease at which the helper gives up."""
    return min(max(lease / 4, 0.2), 2.0)


_answered: list[bytes] = []  # the status byte written, once per process


def answer(status: bytes) -> None:
    """Write the one status byte to fd 1, unbuffered; never a second one."""
    if _answered:
        return
    _answered.append(status)
    try:
        os.write(1, status)
    except OSError:  # ctdbd stopped listening: nothing to tell it
        pass


def say(message: str) -> None:
    """One line on stderr (ctdbd's log)."""
    try:
        sys.stderr.write(f"radostdb ctdb-lock: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def leave(code: int) -> NoReturn:
    """Exit now: close stdout (ctdbd reads EOF), no interpreter teardown."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    try:
        os.close(1)
    except OSError:
        pass
    os._exit(code)


@dataclass
class Waker:
    """Signals and parent death as flags that wake :meth:`sleep`."""

    parent: int
    stop: str = ""  # why the helper must release and exit ("" while it holds)
    _rfd: int = -1
    _wfd: int = -1
    _next_poll: float = 0.0
    _saved: dict[int, Any] = field(default_factory=dict)

    def install(self) -> None:
        """Catch SIGTERM and SIGINT, and ask for SIGTERM when the parent dies."""
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        os.set_blocking(self._wfd, False)
        signal.set_wakeup_fd(self._wfd)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._saved[sig] = signal.signal(sig, self._caught)
        # resumed after SIGSTOP: wake at once to look at the lease's deadline
        self._saved[signal.SIGCONT] = signal.signal(signal.SIGCONT, _ignore)
        death_signal(signal.SIGTERM)
        self.check_parent()  # it may have died before the request took effect

    def _caught(self, signum: int, _frame: Any) -> None:
        if not self.stop:
            self.stop = signal.Signals(signum).name

    def check_parent(self) -> None:
        if not self.stop and os.getppid() != self.parent:
            self.stop = "parent gone"

    def sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``, less if a signal comes; polls the parent."""
        now = time.monotonic()
        if now >= self._next_poll:
            self.check_parent()
            self._next_poll = now + PARENT_POLL
        seconds = min(max(seconds, 0.0), max(self._next_poll - now, 0.0))
        if self.stop:
            return
        try:
            select.select([self._rfd], [], [], seconds)
        except InterruptedError:
            pass
        try:
            while os.read(self._rfd, 64):
                pass
        except BlockingIOError:
            pass


def _ignore(_signum: int, _frame: Any) -> None:
    """A handler that only wakes the loop (through the wakeup fd)."""


def death_signal(sig: int) -> bool:
    """prctl(PR_SET_PDEATHSIG, sig): the kernel sends ``sig`` when the parent
    dies. False where that is not available (then polling getppid() serves)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Outcome(Exception):
    """The helper is done: ``code`` is its exit status, ``message`` for stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class ClusterLock:
    """The lock entry of one helper on OBJECT and the confirmed extent of its
    lease (client monotonic time)."""

    io: Any
    obj: str
    lease: float
    owner: bytes = field(default_factory=lambda: os.urandom(clsops.OWNER_LEN))
    key: bytes = LOCK_KEY
    confirmed: float = 0.0  # send time of the last acknowledged grant or renewal
    renews: list[tuple[float, Any]] = field(default_factory=list)  # (sent, Call)
    next_renew: float = 0.0
    renewed: int = 0

    @property
    def margin(self) -> float:
        return margin_for(self.lease)

    @property
    def deadline(self) -> float:
        """Monotonic time at which the helper gives the lock up unconfirmed."""
        return self.confirmed + self.lease - self.margin

    def lock_call(self) -> Any:
        """Start the try (no QUEUE): a StatusCall whose wait gives the grant or raises Busy."""
        req = clsops.lock_request(
            self.owner, round(self.lease * 1000), Kind.RECORD, Mode.EXCL, self.key
        )
        return clsops.aio_lock_status(self.io, self.obj, req)

    def granted(self, sent: float) -> None:
        self.confirmed = sent
        self.next_renew = sent + self.lease / RENEWS_PER_LEASE

    def unlock_call(self) -> Any:
        req = clsops.unlock_request(self.owner, Kind.RECORD, Mode.EXCL, self.key)
        return clsops.aio_unlock(self.io, self.obj, req)

    def step(self, now: float) -> float:
        """Collect finished renewals, send one when due; the seconds until
        the next thing to do. Raises Outcome(EXIT_LOST) when the lease can no
        longer be confirmed in time, or the OSD says it is gone."""
        for item in list(self.renews):
            sent, call = item
            if not call.comp.is_complete():
                continue
            self.renews.remove(item)
            err = call.error()
            if err is None:
                self.confirmed = max(self.confirmed, sent)
                self.renewed += 1
            elif clsops.errno_of(err) != errno.ETIMEDOUT:
                raise Outcome(EXIT_LOST, f"lock lost on {self.obj}: renewal refused: {err}")
        if now >= self.deadline:
            late = now - self.confirmed
            raise Outcome(
                EXIT_LOST,
                f"lock given up on {self.obj}: no renewal confirmed for {late:.1f}s "
                f"(lease {self.lease:g}s); the OSD may be unreachable",
            )
        if now >= self.next_renew and len(self.renews) < MAX_PENDING_RENEWS:
            self.renews.append((now, clsops.aio_renew(self.io, self.obj, self.owner)))
            self.next_renew = now + self.lease / RENEWS_PER_LEASE
        due = self.deadline
        if len(self.renews) < MAX_PENDING_RENEWS:
            due = min(due, self.next_renew)
        wait = min(due - now, TICK) if self.renews else due - now
        return max(wait, 0.001)


def _wait_call(call: Any, until: float, waker: Waker | None) -> bool:
    """Wait for an asynchronous call until monotonic ``until``; True if it
    completed. With a waker, return early (False) when it is told to stop."""
    while not call.comp.is_complete():
        now = time.monotonic()
        if now >= until or (waker is not None and waker.stop):
            return False
        if waker is not None:
            waker.sleep(min(TICK, until - now))
        else:
            time.sleep(min(TICK, until - now))
    return True


def _release(lock: ClusterLock, why: str) -> None:
    """Unlock, waiting while the lease would last anyway (at most RELEASE_WAIT)."""
    call = lock.unlock_call()
    until = min(time.monotonic() + RELEASE_WAIT, lock.confirmed + lock.lease)
    if not _wait_call(call, until, None):
        say(f"{why}: unlock of {lock.obj} not confirmed; the lease ends it")
        return
    err = call.error()
    if err is not None and clsops.errno_of(err) != errno.ENOLCK:
        say(f"{why}: unlock of {lock.obj} failed: {err}")


def hold(
    io: Any,
    obj: str,
    lease: float,
    parent: int,
) -> int:
    """The helper's life once connected: try the lock, answer, hold until
    told to stop or the lease cannot be confirmed. Returns the exit status
    (the answer byte is written here; stdout stays open until the caller
    leaves)."""
    waker = Waker(parent)
    waker.install()
    if waker.stop:
        raise Outcome(EXIT_ERROR, f"{waker.stop} before the lock was tried")
    lock = ClusterLock(io, obj, lease)
    sent = time.monotonic()
    call = lock.lock_call()
    if not _wait_call(call, float("inf"), waker):
        # stopped while the try was in flight: undo whatever it was granted
        lock.granted(sent)
        _release(lock, waker.stop)
        return EXIT_RELEASED
    res = call.result()
    if isinstance(res, clsops.Busy):
        answer(CONTENDED)
        return EXIT_RELEASED
    if isinstance(res, Exception):
        raise Outcome(EXIT_ERROR, f"cannot take the lock on {obj}: {res}")
    lock.granted(sent)
    if time.monotonic() >= lock.deadline:
        _release(lock, "granted too late")
        raise Outcome(EXIT_ERROR, f"the lock on {obj} was granted too late to be kept")
    answer(HOLDING)
    while not waker.stop:
        wait = lock.step(time.monotonic())  # raises Outcome when the lock is lost
        waker.sleep(wait)
    _release(lock, waker.stop)
    return EXIT_RELEASED


def check_parent_at_start() -> int:
    """The parent to watch: getppid(); an error when it is already init."""
    parent = os.getppid()
    if parent == 1:
        raise Outcome(EXIT_ERROR, "the parent is init (PID 1): ctdbd is gone")
    return parent


def run(connect: Callable[[], Any], obj: str, lease: float) -> NoReturn:
    """The whole helper: connect (``connect()`` gives an I/O context), then
    :func:`hold`; writes ``3`` and a line on stderr for any error; exits the
    process."""
    try:
        parent = check_parent_at_start()
        death_signal(signal.SIGTERM)  # until hold() catches SIGTERM, it just ends us
        try:
            io = connect()
        except Exception as exc:
            raise Outcome(EXIT_ERROR, str(exc) or type(exc).__name__) from None
        code = hold(io, obj, lease, parent)
    except Outcome as out:
        if out.code == EXIT_ERROR:
            answer(ERROR)
        if out.message:
            say(out.message)
        leave(out.code)
    except BaseException as exc:  # a bug: still answer, never leave ctdbd waiting
        answer(ERROR)
        say(f"unexpected error: {exc!r}")
        leave(EXIT_ERROR)
    leave(code)
