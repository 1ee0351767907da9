"""What ``fork()`` means for radostdb: the process generation and the child's
clean slate.

fork design:
- librados is a threaded client. A forked child has only the thread that
  called fork(): a librados object of its parent must never be called in
  the child (its threads are gone, calls hang) nor freed (rados_shutdown
  waits for them). :func:`abandon` keeps such objects referenced forever.
- The child gets its own cluster client, with its own address. Ceph draws
  a client's address nonce (``Messenger::create_client_messenger``) from a
  random engine kept per thread and seeded once per thread; fork copies the
  calling thread's engine, so every sibling forked from one thread would
  draw the same nonce, and the OSDs would take them for one client (replies
  and notifies go astray, the original defect of forking servers).
  :func:`on_fresh_thread` runs a connect on a thread started for it, whose
  engine is seeded anew from the kernel: every connection has its own
  nonce, whatever the fork history. cluster.py also checks the address
  against every address this process and its ancestors used
  (:func:`known_address`), and reconnects on a collision.
- Every module that keeps process-wide state registers a child hook with
  :func:`at_fork_child` (connections, watches, the service thread, notices,
  clean-up calls in flight, page-reader pools). Hooks run in the child in
  registration order, after :data:`generation` has grown, and replace
  state (locks included: a lock a parent thread held at fork time stays
  held forever in the child) rather than tidy it. Nothing is imported in
  a hook: the import lock of a module a parent thread was importing at
  fork time is such a lock (ctypes, for :func:`abandon`, is imported with
  this module).
- Handles compare :data:`generation` on every call: a handle inherited
  through fork is adopted by the child on its first use (database.py and
  storage.py decide what that means).
"""

from __future__ import annotations

# imported here, never in a child: an import in a forked child waits for the
# module's import lock, which a parent thread importing it at fork time
# leaves held for ever (seen: a child hung in `abandon`)
import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

generation = 0  # grows in a forked child, once per fork
_hooks: list[Callable[[], None]] = []
_abandoned: list[Any] = []
_addresses: set[str] = set()  # client addresses used by this process and its ancestors


def at_fork_child(hook: Callable[[], None]) -> None:
    """Run ``hook()`` in every forked child, after the generation grew."""
    _hooks.append(hook)


def abandon(objs: Any) -> None:
    """Keep the parent's librados objects alive forever in a forked child.

    Releasing one would call into librados (rados_shutdown waits for threads
    the child does not have, and hangs), so each gets a reference that is
    never dropped: not even interpreter exit deallocates it."""
    for obj in objs:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
        _abandoned.append(obj)


def on_fresh_thread(fn: Callable[[], T]) -> T:
    """``fn()`` on a thread started for it (its result, or its exception):
    Ceph's per-thread random engine is seeded anew there."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))

    thread = threading.Thread(target=run, name="radostdb-connect", daemon=True)
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def known_address(addr: str) -> bool:
    """Has this process or an ancestor used client address ``addr``?"""
    return addr in _addresses


def note_address(addr: str) -> None:
    """Remember a client address this process uses (children inherit it)."""
    _addresses.add(addr)


def _after_fork_in_child() -> None:
    global generation
    generation += 1
    for hook in _hooks:
        hook()


os.register_at_fork(after_in_child=_after_fork_in_child)
