"""The cluster session: where databases live, and one process's conversation
with a cluster as one client.

session design:
- :class:`Place`: a cluster (its ceph.conf and the cephx client id), a pool
  and a namespace: where databases live. The one name for it; the CLI's
  Site, the bench and the tests' cluster all carry one.
- The environment is read at the entry points only: :func:`resolve` (a
  Tdb's open) and :func:`place_from_env` (the commands) read CEPH_CONF,
  RADOSTDB_ID, RADOSTDB_POOL, RADOSTDB_OP_TIMEOUT (and names.py
  RADOSTDB_PATH_PREFIX); everything below gets a :class:`Session` passed
  down. No module writes the environment.
- :class:`Session`: one client of one cluster with one op timeout: its
  connection (made on first use by :func:`connect`, the one factory of
  librados clients, which the launcher, the bench and the tests use too),
  its I/O contexts, and its cut-off state. Every handle that names the same
  (conf, client id, op timeout) shares one session per process
  (:func:`session`); a ``rados.Rados`` the caller passes (``cluster=``) gets
  a session of its own, which the caller owns.
- One timeout policy, the session's op timeout (RADOSTDB_OP_TIMEOUT or the
  CLI's --timeout, seconds), for every blocking path of the API, the CLI,
  the bench and the tests:
  - connecting (the monitor handshake) gives up after T;
  - every RADOS operation (librados' rados_osd_op_timeout and
    rados_mon_op_timeout) fails after T with TDB's IO error naming the
    object and "timed out";
  - a wait for a lock gives up after T with TDB's lock-timeout error,
    unless the holders it waits for look dead (their lease is not renewed):
    then it waits until their lease ends, at most one lease more;
  - a wait for a transaction pending on a shard gives up after T plus one
    transaction lease, with TDB's IO error;
  - closing (a handle, or every handle at process exit), and the releases
    that clean up after a failed lock or transaction start, skip the network
    once an operation of the session timed out (:meth:`Session.cut_off`:
    the leases end what they would release); closing never waits on a
    watch the cluster has not confirmed lately: such watches are abandoned
    (the OSD drops them when their watch timeout passes), so exit with an
    unreachable cluster takes about T and prints nothing.
  Without a timeout radostdb blocks like a hard NFS mount: calls wait for
  the cluster as long as it takes (connecting gives up after 30 s).
- Fork safety (forks.py): a forked child never calls into its parent's
  connection. After ``fork()`` every session forgets (abandons) its
  connection and I/O contexts, and connects anew on first use. Every
  connection is made on a thread started for it (forks.on_fresh_thread), so
  that it draws its own address nonce, and one whose address this process
  or an ancestor already used is dropped and made again. A ``cluster=``
  given by the caller belongs to the process that made it: in a forked
  child its session fails at once (it would hang in the parent's client).
- Exit: :func:`shutdown_all` runs at interpreter exit (atexit) and, in a
  ``multiprocessing`` child (fork and forkserver children leave with
  ``os._exit`` after running multiprocessing's own finalizers, never
  atexit), as one of those finalizers, registered when the child makes its
  first connection: a child's locks are released and its watches closed
  when it ends, so they do not linger on the OSDs for a watch timeout.
"""

from __future__ import annotations

import atexit
import errno
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rados

from . import forks, names
from .errors import ERR_IO, TdbError

DEFAULT_CONF = "/etc/ceph/ceph.conf"
OP_TIMEOUT_ENV = "RADOSTDB_OP_TIMEOUT"
DEFAULT_POOL = "radostdb"
DEFAULT_ID = "admin"
URL_PREFIX = names.URL_PREFIX
CONNECT_TIMEOUT = 30
CONNECT_ATTEMPTS = 3  # connections made anew when the address was used before

_CONNECT_HINTS = {
    errno.ETIMEDOUT: "is the cluster up? try 'ceph -c CONF -s'",
    errno.EACCES: "check the client's keyring and caps",
    errno.EPERM: "check the client's keyring and caps",
    errno.ENOENT: "no keyring for this client? check the keyring in the configuration",
}


# -- where -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """Where databases live: cluster (ceph.conf, client id), pool, namespace."""

    conf: str
    client_id: str
    pool: str
    namespace: str = ""

    @property
    def where(self) -> str:
        """'pool 'P'' or 'pool 'P' namespace 'N'', for messages."""
        ns = f" namespace {self.namespace!r}" if self.namespace else ""
        return f"pool {self.pool!r}{ns}"


def place_from_env(
    conf: str | None = None,
    client_id: str | None = None,
    pool: str | None = None,
    namespace: str | None = None,
) -> Place:
    """A Place from what is given, else CEPH_CONF, RADOSTDB_ID, RADOSTDB_POOL
    (and the defaults)."""
    return Place(
        conf=conf or os.environ.get("CEPH_CONF") or DEFAULT_CONF,
        client_id=client_id or os.environ.get("RADOSTDB_ID") or DEFAULT_ID,
        pool=pool or os.environ.get("RADOSTDB_POOL") or DEFAULT_POOL,
        namespace=namespace or "",
    )


def op_timeout_from_env() -> float | None:
    """RADOSTDB_OP_TIMEOUT in seconds, or None (block like a hard mount)."""
    raw = os.environ.get(OP_TIMEOUT_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{OP_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{OP_TIMEOUT_ENV}={raw!r} must be positive")
    return value


# -- the one factory of librados clients ---------------------------------------------------
def connect(conf: str, client_id: str, timeout: float | None = None) -> Any:
    """A new connected ``rados.Rados`` with radostdb's timeout policy (op
    timeout ``timeout``, none if None; connecting gives up after it, or
    30 s): the one factory of librados clients, also for the launcher, the
    bench and the tests. It connects on a thread of its own and never
    returns a client whose address this process or an ancestor used (see
    the module comment). The caller owns it; handles use a Session's."""
    if not os.path.isfile(conf):
        raise OSError(errno.ENOENT, f"no Ceph configuration at {conf} (set CEPH_CONF or --conf)")
    mount = timeout if timeout is not None else CONNECT_TIMEOUT

    def make() -> Any:
        try:
            conn = rados.Rados(conffile=conf, name=f"client.{client_id}")
        except rados.Error as exc:
            raise OSError(
                errno.EINVAL, f"cannot read the Ceph configuration {conf}: {exc}"
            ) from exc
        conn.conf_set("client_mount_timeout", str(max(1, round(mount))))
        if timeout is not None:  # seconds before an operation gives up (default: never)
            secs = str(max(1, math.ceil(timeout)))  # librados takes whole seconds
            conn.conf_set("rados_osd_op_timeout", secs)
            conn.conf_set("rados_mon_op_timeout", secs)
        try:
            conn.connect(timeout=mount)
        except rados.Error as exc:
            conn.shutdown()
            code = abs(getattr(exc, "errno", 0) or 0) or errno.EIO
            hint = _CONNECT_HINTS.get(code, "check the configuration").replace("CONF", conf)
            raise OSError(
                code,
                f"cannot connect to the Ceph cluster of {conf} as client.{client_id}: "
                f"{exc} ({hint})",
            ) from None
        return conn

    for _ in range(CONNECT_ATTEMPTS):
        conn = forks.on_fresh_thread(make)
        addr = str(conn.get_addrs())
        if not forks.known_address(addr):
            forks.note_address(addr)
            return conn
        conn.shutdown()  # another client (a sibling, the parent) has this address
    raise OSError(
        errno.EADDRINUSE,
        f"connecting to the cluster of {conf} gave an address already used by this "
        f"process or its parent {CONNECT_ATTEMPTS} times",
    )


# -- sessions ------------------------------------------------------------------------------
class Session:
    """One client of one cluster with one op timeout (see the module comment)."""

    def __init__(
        self, conf: str, client_id: str, op_timeout: float | None, given: Any = None
    ) -> None:
        self.conf, self.client_id, self.op_timeout = conf, client_id, op_timeout
        self._given = given  # a connected rados.Rados of the caller's, or None
        self._made_in = forks.generation
        self._rados: Any = given
        self._ioctxs: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._timed_out_at: float | None = None
        # the OSDs' class answers WRITE_REPORT (False once one refused it:
        # an older class, during an upgrade of the OSDs)
        self.class_reports = True
        _all_sessions.add(self)

    def __repr__(self) -> str:
        return f"<Session client.{self.client_id} of {self.conf} timeout {self.op_timeout}>"

    @property
    def what(self) -> str:
        """The cluster, for messages."""
        return "the given cluster" if self._given is not None else f"the cluster of {self.conf}"

    def rados(self) -> Any:
        """The session's connected ``rados.Rados`` (connected on first use)."""
        if _state.exiting:
            raise OSError(
                errno.ESHUTDOWN, "the process is exiting: its cluster connections are closed"
            )
        if self._given is not None:
            if self._made_in != forks.generation:
                raise OSError(
                    errno.ECHILD,
                    "a rados.Rados of the parent process (cluster=) cannot be used in a "
                    "forked child: open the database again in this process, without cluster= "
                    "or with a connection made here",
                )
            return self._given
        with self._lock:
            if self._rados is None:
                self._rados = connect(self.conf, self.client_id, self.op_timeout)
                _exit_with_multiprocessing()
            return self._rados

    def ioctx(self, pool: str, namespace: str = "") -> Any:
        """The session's I/O context for a pool and namespace."""
        io = self._ioctxs.get((pool, namespace))
        if io is not None:
            return io
        conn = self.rados()
        with self._lock:
            io = self._ioctxs.get((pool, namespace))
            if io is not None:
                return io
            try:
                io = conn.open_ioctx(pool)
            except rados.ObjectNotFound as exc:
                raise OSError(
                    errno.ENOENT,
                    f"pool {pool!r} does not exist in {self.what} (create it with "
                    f"'ceph osd pool create {pool}', or set RADOSTDB_POOL)",
                ) from exc
            except rados.Error as exc:
                raise self.io_error(exc, f"opening pool {pool!r} in {self.what}") from None
            io.set_namespace(namespace)
            self._ioctxs[(pool, namespace)] = io
            _by_io[id(io)] = self
            return io

    # -- the timeout policy -------------------------------------------------------------------
    def note_timeout(self) -> None:
        """An operation timed out: closing skips the network for a while."""
        self._timed_out_at = time.monotonic()

    def cut_off(self) -> bool:
        """Did an operation time out recently (within twice the op timeout)?"""
        t = self.op_timeout
        return (
            self._timed_out_at is not None
            and t is not None
            and time.monotonic() - self._timed_out_at < max(t, 1.0) * 2
        )

    def timed_out(self, what: str) -> TdbError:
        """TDB's IO error for an operation that timed out (and note it)."""
        self.note_timeout()
        return TdbError(ERR_IO, f"{what}: timed out ({OP_TIMEOUT_ENV}={self.op_timeout})")

    def io_error(self, exc: rados.Error, what: str) -> Exception:
        """A librados error from a call outside clsops, as radostdb reports
        it: TDB's IO error naming the object and the cause (permission
        errors stay PermissionError, a missing object FileNotFoundError)."""
        code = abs(getattr(exc, "errno", 0) or 0)
        if code == errno.ETIMEDOUT:
            return self.timed_out(what)
        if code in (errno.EPERM, errno.EACCES):
            return PermissionError(code, f"{what}: permission denied by the cluster")
        if code == errno.ENOENT:
            return FileNotFoundError(code, f"{what}: no such object")
        return TdbError(ERR_IO, f"{what}: {exc}")

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the I/O contexts and shut down the connection (a caller's
        rados.Rados is left to the caller)."""
        with self._lock:
            ioctxs, self._ioctxs = list(self._ioctxs.values()), {}
            conn, self._rados = self._rados, self._given
        for io in ioctxs:
            _by_io.pop(id(io), None)
            try:
                io.close()
            except rados.Error:
                pass
        if conn is not None and self._given is None:
            try:
                conn.shutdown()
            except rados.Error:
                pass

    def _forget_after_fork(self) -> None:
        """In a forked child: the connection and I/O contexts are the parent's."""
        forks.abandon(self._ioctxs.values())
        if self._given is None and self._rados is not None:
            forks.abandon([self._rados])
            self._rados = None
        self._ioctxs = {}
        self._lock = threading.Lock()
        self._timed_out_at = None


class _State:
    exiting = False


_state = _State()
_sessions_lock = threading.Lock()
_sessions: dict[tuple[str, str, float | None], Session] = {}
_all_sessions: weakref.WeakSet[Session] = weakref.WeakSet()
_by_io: dict[int, Session] = {}


def session(conf: str, client_id: str, op_timeout: float | None) -> Session:
    """The process's shared session for (conf, client id, op timeout)."""
    key = (conf, client_id, op_timeout)
    with _sessions_lock:
        s = _sessions.get(key)
        if s is None:
            s = _sessions[key] = Session(conf, client_id, op_timeout)
        return s


def session_for(place: Place, op_timeout: float | None) -> Session:
    """The shared session of a Place's cluster and client."""
    return session(place.conf, place.client_id, op_timeout)


def session_of(io: Any) -> Session | None:
    """The session an I/O context belongs to (None: not one of ours)."""
    return _by_io.get(id(io))


def io_error(exc: rados.Error, what: str, io: Any = None) -> Exception:
    """Session.io_error for a call made on I/O context ``io`` (whatever its
    session; a timeout is noted in it)."""
    s = session_of(io)
    if s is not None:
        return s.io_error(exc, what)
    code = abs(getattr(exc, "errno", 0) or 0)
    if code == errno.ETIMEDOUT:
        return TdbError(ERR_IO, f"{what}: timed out ({OP_TIMEOUT_ENV})")
    if code in (errno.EPERM, errno.EACCES):
        return PermissionError(code, f"{what}: permission denied by the cluster")
    if code == errno.ENOENT:
        return FileNotFoundError(code, f"{what}: no such object")
    return TdbError(ERR_IO, f"{what}: {exc}")


def exiting() -> bool:
    """Is the process shutting radostdb down (handles refuse I/O)?"""
    return _state.exiting


# -- a database's place ----------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A database: its name, where it lives, and the session that reaches it."""

    place: Place
    name: str
    session: Session

    def ioctx(self) -> Any:
        return self.session.ioctx(self.place.pool, self.place.namespace)


def resolve(
    name: str,
    *,
    conf: str | None = None,
    client_id: str | None = None,
    pool: str | None = None,
    namespace: str | None = None,
    cluster: Any = None,
    path_prefix: str | None = None,
    session_: Session | None = None,
) -> Target:
    """Turn a name (plain, a path, or ``rados://…``) and keywords into a
    Target; what is not given comes from the environment (an entry point).

    The database name is names.database_name's (paths normalised, the path
    prefix applied); ``cluster`` is a connected ``rados.Rados`` to use
    instead of the shared session (the caller owns it and its fork safety);
    ``session_`` a Session to use as it is."""
    if name.startswith(URL_PREFIX):
        url = names.parse_url(name, prefix=path_prefix)
        pool = pool or url.pool
        namespace = namespace if namespace is not None else url.namespace
        name = url.name
    else:
        name = names.database_name(name, prefix=path_prefix)
    place = place_from_env(conf, client_id, pool, namespace)
    if session_ is None:
        timeout = op_timeout_from_env()
        session_ = (
            Session(place.conf, place.client_id, timeout, given=cluster)
            if cluster is not None
            else session_for(place, timeout)
        )
    return Target(place, name, session_)


# -- watches, handles, shutdown ---------------------------------------------------------------
_lock = threading.Lock()
_watches: dict[int, tuple[Any, Session | None]] = {}
_handles: weakref.WeakSet[Any] = weakref.WeakSet()
_before_shutdown: list[Callable[[], None]] = []


def before_shutdown(fn: Callable[[], None]) -> None:
    """Run fn() in shutdown_all after the handles close, before the
    connections do (locking drains its notifies and stops renewing)."""
    _before_shutdown.append(fn)


def track_handle(handle: Any) -> None:
    """Remember an open backend so that shutdown_all closes it (its locks
    released) before the connection goes."""
    _handles.add(handle)


def track_watch(watch: Any, io: Any) -> Any:
    """Remember a watch made on ``io`` so that shutdown_all closes it before
    its connection."""
    _watches[id(watch)] = (watch, session_of(io))
    return watch


def close_watch(watch: Any) -> bool:
    """Stop a tracked watch without ever hanging: unwatch it only if the
    cluster confirmed it lately and nothing timed out; otherwise (or if the
    unwatch fails) abandon it: the OSD drops it when its watch timeout
    passes, and Python never frees it (freeing would unwatch again).
    True when it was unwatched (the cluster answered)."""
    entry = _watches.pop(id(watch), None)
    if entry is None:
        return False
    sess = entry[1]
    t = sess.op_timeout if sess is not None else None
    if t is not None:
        try:
            age = watch.check()
            stale = sess.cut_off() or (age is not None and age.total_seconds() > t)
        except rados.Error:
            stale = True
        if stale:
            forks.abandon([watch])
            return False
    try:
        watch.close()
    except rados.Error:
        forks.abandon([watch])
        return False
    return True


def shutdown_all(final: bool = True) -> None:
    """Close this process's handles, watches, I/O contexts and connections.

    Runs at exit (``final``): a librados connection still running at
    interpreter exit aborts the process, and one shut down under a live
    handle crashes its next call, so afterwards every handle refuses I/O.
    With ``final=False`` (a test session ending before its cluster stops)
    the handles are closed and later ones connect afresh."""
    for handle in list(_handles):
        try:
            handle.close()  # skips the network once an operation timed out
        except Exception:
            pass  # locks not released expire with their lease
    _state.exiting = _state.exiting or final
    for fn in _before_shutdown:
        try:
            fn()
        except Exception:
            pass
    for watch, _ in list(_watches.values()):
        close_watch(watch)
    for s in list(_all_sessions):
        s.close()
    if not final:
        with _sessions_lock:
            _sessions.clear()


_exit_registered = -1  # the generation whose multiprocessing exit hook is registered


def _exit_with_multiprocessing() -> None:
    """In a multiprocessing child, run shutdown_all among the finalizers it
    runs before os._exit (once per process; see the module comment)."""
    global _exit_registered
    if _exit_registered == forks.generation:
        return
    _exit_registered = forks.generation
    mp = sys.modules.get("multiprocessing")
    if mp is None or mp.parent_process() is None:
        return  # not a multiprocessing child: atexit runs
    from multiprocessing import util

    util.Finalize(None, shutdown_all, exitpriority=0)


def _after_fork_in_child() -> None:
    global _lock, _sessions_lock
    forks.abandon(w for w, _ in _watches.values())
    _watches.clear()
    for s in list(_all_sessions):
        s._forget_after_fork()
    _by_io.clear()
    _lock = threading.Lock()
    _sessions_lock = threading.Lock()


forks.at_fork_child(_after_fork_in_child)
atexit.register(shutdown_all)
