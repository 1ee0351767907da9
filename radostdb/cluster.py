"""Finding and connecting to a Ceph cluster.

- Where: ``conf=`` or ``CEPH_CONF`` (default ``/etc/ceph/ceph.conf``); client
  id ``client_id=`` / ``RADOSTDB_ID`` (default ``admin``); pool ``pool=`` /
  ``RADOSTDB_POOL`` (default ``radostdb``); namespace ``namespace=`` (default
  none). A name ``rados://POOL/NAME`` or ``rados://POOL/NAMESPACE/NAME`` picks
  pool and namespace itself. Which database a name (or a URL's NAME) means
  is names.py's mapping: paths are normalised, ``path_prefix=`` /
  ``RADOSTDB_PATH_PREFIX`` applies.
- Sharing: every handle in a process that names the same conf and client id
  (and sees the same op timeout) shares one ``rados.Rados`` connection, and
  one I/O context per (pool, namespace).
- Fork safety (forks.py): a forked child never calls into its parent's
  connection. After ``fork()`` the caches are emptied and the parent's
  objects abandoned (kept referenced, never released: releasing calls into
  librados); handles see :data:`forks.generation` change and fetch a fresh
  I/O context, so the child connects anew on first use. Every connection
  is made on a thread started for it (forks.on_fresh_thread), so that it
  draws its own address nonce, and one whose address this process or an
  ancestor already used is dropped and made again. A ``cluster=`` given by
  the caller belongs to the process that made it: in a forked child a
  handle opened on it fails at once (it would hang in the parent's client).
- Exit: :func:`shutdown_all` runs at interpreter exit (atexit) and, in a
  ``multiprocessing`` child (fork and forkserver children leave with
  ``os._exit`` after running multiprocessing's own finalizers, never
  atexit), as one of those finalizers, registered when the child makes its
  first connection: a child's locks are released and its watches closed
  when it ends, so they do not linger on the OSDs for a watch timeout.
- One timeout policy, ``RADOSTDB_OP_TIMEOUT`` (seconds, :func:`op_timeout`),
  for every blocking path of the API, the CLI, the bench and the tests:
  - connecting (the monitor handshake) gives up after T;
  - every RADOS operation (librados' rados_osd_op_timeout and
    rados_mon_op_timeout) fails after T with TDB's IO error naming the
    object and "timed out";
  - a wait for a lock (locking.py) gives up after T with TDB's lock-timeout
    error, unless the holders it waits for look dead (their lease is not
    renewed): then it waits until their lease ends, at most one lease more;
  - a wait for a transaction pending on a shard gives up after T plus one
    transaction lease, with TDB's IO error;
  - closing (a handle, or every handle at process exit), and the releases
    that clean up after a failed lock or transaction start, skip the network
    once an operation timed out (the leases end what they would release);
    closing never waits on a watch the cluster has not confirmed lately:
    such watches are abandoned (the OSD drops them when their watch timeout
    passes), so exit with an unreachable cluster takes about T and prints
    nothing.
  Without the variable radostdb blocks like a hard NFS mount: calls wait for
  the cluster as long as it takes (connecting gives up after 30 s).
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
from dataclasses import dataclass, field
from typing import Any

import rados

from . import forks, names

DEFAULT_CONF = "/etc/ceph/ceph.conf"
OP_TIMEOUT_ENV = "RADOSTDB_OP_TIMEOUT"
DEFAULT_POOL = "radostdb"
DEFAULT_ID = "admin"
URL_PREFIX = names.URL_PREFIX
CONNECT_TIMEOUT = 30

CONNECT_ATTEMPTS = 3  # connections made anew when the address was used before
_lock = threading.Lock()
_connections: dict[tuple[str, str, float | None], Any] = {}
_ioctxs: dict[tuple[str, str, str, str, float | None], Any] = {}
_watches: dict[int, Any] = {}
_handles: weakref.WeakSet[Any] = weakref.WeakSet()
exiting = False


_before_shutdown: list[Any] = []


def before_shutdown(fn: Any) -> None:
    """Run fn() in shutdown_all after the handles close, before the
    connections do (locking drains its notifies and stops renewing)."""
    _before_shutdown.append(fn)


def track_handle(handle: Any) -> None:
    """Remember an open backend so that shutdown_all closes it (its locks
    released) before the connection goes."""
    _handles.add(handle)


def track_watch(watch: Any) -> Any:
    """Remember a watch so that shutdown_all closes it before its connection."""
    _watches[id(watch)] = watch
    return watch


def op_timeout() -> float | None:
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


_timed_out_at: float | None = None  # when an operation last timed out


def note_timeout() -> None:
    """An operation timed out (clsops.error_of calls this): closing skips
    the network for a while, since the cluster does not answer."""
    global _timed_out_at
    _timed_out_at = time.monotonic()


def cut_off() -> bool:
    """Did an operation time out recently (within one op timeout)?"""
    t = op_timeout()
    return (_timed_out_at is not None and t is not None
            and time.monotonic() - _timed_out_at < max(t, 1.0) * 2)


def close_watch(watch: Any) -> None:
    """Stop a tracked watch without ever hanging: unwatch it only if the
    cluster confirmed it lately and nothing timed out; otherwise (or if the
    unwatch fails) abandon it: the OSD drops it when its watch timeout
    passes, and Python never frees it (freeing would unwatch again)."""
    if _watches.pop(id(watch), None) is None:
        return
    t = op_timeout()
    if t is not None:
        try:
            age = watch.check()
            stale = cut_off() or (age is not None and age.total_seconds() > t)
        except rados.Error:
            stale = True
        if stale:
            abandon([watch])
            return
    try:
        watch.close()
    except rados.Error:
        abandon([watch])


def io_error(exc: rados.Error, what: str) -> Exception:
    """A librados error from a call outside clsops, as radostdb reports it:
    TDB's IO error naming the object and the cause (permission errors stay
    PermissionError, a missing object stays FileNotFoundError)."""
    code = abs(getattr(exc, "errno", 0) or 0)
    if code == errno.ETIMEDOUT:
        note_timeout()
        from .errors import ERR_IO, TdbError

        return TdbError(ERR_IO, f"{what}: timed out ({OP_TIMEOUT_ENV}={op_timeout()})")
    if code in (errno.EPERM, errno.EACCES):
        return PermissionError(code, f"{what}: permission denied by the cluster")
    if code == errno.ENOENT:
        return FileNotFoundError(code, f"{what}: no such object")
    from .errors import ERR_IO, TdbError

    return TdbError(ERR_IO, f"{what}: {exc}")


@dataclass(frozen=True)
class Target:
    """A database's place: cluster (conf, client id), pool, namespace, name."""

    conf: str
    client_id: str
    pool: str
    namespace: str
    name: str
    rados_cluster: Any = field(default=None, compare=False)
    made_in: int = field(default_factory=lambda: forks.generation, compare=False)

    def ioctx(self) -> Any:
        if self.rados_cluster is not None:
            if self.made_in != forks.generation:
                raise OSError(
                    errno.ECHILD,
                    f"database {self.name!r} was opened on a rados.Rados of the parent "
                    "process (cluster=), which a forked child cannot use: open it again "
                    "in this process, without cluster= or with a connection made here")
            return _caller_ioctx(self.rados_cluster, self.pool, self.namespace)
        return ioctx(self.conf, self.client_id, self.pool, self.namespace)


def resolve(
    name: str,
    *,
    conf: str | None = None,
    client_id: str | None = None,
    pool: str | None = None,
    namespace: str | None = None,
    cluster: Any = None,
    path_prefix: str | None = None,
) -> Target:
    """Turn a name (plain, a path, or ``rados://…``) and keywords into a Target.

    The database name is names.database_name's (paths normalised, the path
    prefix applied); ``cluster`` is a connected ``rados.Rados`` to use instead
    of the shared connection (the caller owns it and its fork safety)."""
    if name.startswith(URL_PREFIX):
        url = names.parse_url(name, prefix=path_prefix)
        pool = pool or url.pool
        namespace = namespace if namespace is not None else url.namespace
        name = url.name
    else:
        name = names.database_name(name, prefix=path_prefix)
    return Target(
        conf=conf or os.environ.get("CEPH_CONF") or DEFAULT_CONF,
        client_id=client_id or os.environ.get("RADOSTDB_ID") or DEFAULT_ID,
        pool=pool or os.environ.get("RADOSTDB_POOL") or DEFAULT_POOL,
        namespace=namespace or "",
        name=name,
        rados_cluster=cluster,
    )


_CONNECT_HINTS = {
    errno.ETIMEDOUT: "is the cluster up? try 'ceph -c CONF -s'",
    errno.EACCES: "check the client's keyring and caps",
    errno.EPERM: "check the client's keyring and caps",
    errno.ENOENT: "no keyring for this client? check the keyring in the configuration",
}


def connect(conf: str, client_id: str, timeout: float | None = None) -> Any:
    """A new connected ``rados.Rados`` with radostdb's timeout policy (the
    op timeout: ``timeout``, else RADOSTDB_OP_TIMEOUT, else none; connecting
    gives up after it, or 30 s): the one factory of librados clients, also
    for the launcher, the bench and the tests. It connects on a thread of
    its own and never returns a client whose address this process or an
    ancestor used (see the module comment). The caller owns it; most want
    :func:`connection`, the shared one."""
    if not os.path.isfile(conf):
        raise OSError(errno.ENOENT, f"no Ceph configuration at {conf} (set CEPH_CONF or --conf)")
    t = op_timeout() if timeout is None else timeout
    mount = t if t is not None else CONNECT_TIMEOUT

    def make() -> Any:
        try:
            conn = rados.Rados(conffile=conf, name=f"client.{client_id}")
        except rados.Error as exc:
            raise OSError(errno.EINVAL,
                          f"cannot read the Ceph configuration {conf}: {exc}") from exc
        conn.conf_set("client_mount_timeout", str(max(1, round(mount))))
        if t is not None:  # seconds before an operation gives up (default: never)
            secs = str(max(1, math.ceil(t)))  # librados takes whole seconds
            conn.conf_set("rados_osd_op_timeout", secs)
            conn.conf_set("rados_mon_op_timeout", secs)
        try:
            conn.connect(timeout=mount)
        except rados.Error as exc:
            conn.shutdown()
            code = abs(getattr(exc, "errno", 0) or 0) or errno.EIO
            hint = _CONNECT_HINTS.get(code, "check the configuration").replace("CONF", conf)
            raise OSError(
                code, f"cannot connect to the Ceph cluster of {conf} as client.{client_id}: "
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
    raise OSError(errno.EADDRINUSE,
                  f"connecting to the cluster of {conf} gave an address already used by this "
                  f"process or its parent {CONNECT_ATTEMPTS} times")


def connection(conf: str, client_id: str) -> Any:
    """The process's shared, connected ``rados.Rados`` for (conf, client id)."""
    if exiting:
        raise OSError(errno.ESHUTDOWN, "the process is exiting: its cluster connections are closed")
    key = (conf, client_id, op_timeout())  # a changed timeout gets its own connection
    with _lock:
        conn = _connections.get(key)
        if conn is None:
            conn = _connections[key] = connect(conf, client_id)
            _exit_with_multiprocessing()
        return conn


def ioctx(conf: str, client_id: str, pool: str, namespace: str) -> Any:
    """The shared I/O context for a pool and namespace."""
    key = (conf, client_id, pool, namespace, op_timeout())
    io = _ioctxs.get(key)
    if io is not None:
        return io
    return _open_ioctx(key, connection(conf, client_id), pool, namespace, conf)


def _caller_ioctx(conn: Any, pool: str, namespace: str) -> Any:
    key = (f"<rados {id(conn):x}>", "", pool, namespace, None)
    io = _ioctxs.get(key)
    if io is not None:
        return io
    return _open_ioctx(key, conn, pool, namespace, "the given cluster")


def _open_ioctx(key: tuple[str, str, str, str, float | None], conn: Any, pool: str, namespace: str,
                conf: str) -> Any:
    with _lock:
        io = _ioctxs.get(key)
        if io is not None:
            return io
        try:
            io = conn.open_ioctx(pool)
        except rados.ObjectNotFound as exc:
            raise OSError(
                errno.ENOENT,
                f"pool {pool!r} does not exist in the cluster of {conf} "
                f"(create it with 'ceph osd pool create {pool}', or set RADOSTDB_POOL)",
            ) from exc
        except rados.Error as exc:
            raise io_error(exc, f"opening pool {pool!r} in the cluster of {conf}") from None
        io.set_namespace(namespace)
        _ioctxs[key] = io
        return io


def shutdown_all(final: bool = True) -> None:
    """Close this process's handles, watches, I/O contexts and connections.

    Runs at exit (``final``): a librados connection still running at
    interpreter exit aborts the process, and one shut down under a live
    handle crashes its next call, so afterwards every handle refuses I/O.
    With ``final=False`` (a test session ending before its cluster stops)
    the handles are closed and later ones connect afresh."""
    global exiting
    for handle in list(_handles):
        try:
            handle.close()  # skips the network once an operation timed out
        except Exception:
            pass  # locks not released expire with their lease
    exiting = exiting or final
    for fn in _before_shutdown:
        try:
            fn()
        except Exception:
            pass
    for watch in list(_watches.values()):
        close_watch(watch)
    with _lock:
        ioctxs, conns = list(_ioctxs.values()), list(_connections.values())
        _ioctxs.clear()
        _connections.clear()
    for io in ioctxs:
        try:
            io.close()
        except rados.Error:
            pass
    for conn in conns:
        try:
            conn.shutdown()
        except rados.Error:
            pass


def abandon(objs: Any) -> None:
    """Keep librados objects alive forever (forks.abandon)."""
    forks.abandon(objs)


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
    global _lock
    forks.abandon(_connections.values())
    forks.abandon(_ioctxs.values())
    forks.abandon(_watches.values())
    _watches.clear()
    _connections.clear()
    _ioctxs.clear()
    _lock = threading.Lock()


forks.at_fork_child(_after_fork_in_child)
atexit.register(shutdown_all)
