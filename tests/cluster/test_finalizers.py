"""A handle the garbage collector drops closes without deadlocking, whatever
thread the collector runs on.

The collector runs ``Tdb.__del__`` on the thread that happens to allocate,
also a librados callback thread (a watch's notify callback). Closing a
handle closes its watch, and librados cannot close a watch from one of its
own callback threads: the callback then never returns and every later
notify to the process hangs. service.close_safely moves such a close to the
lock service thread.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import radostdb
from radostdb import cluster as clustermod
from radostdb import forks
from radostdb.testing import ClusterInfo

CREATE = os.O_RDWR | os.O_CREAT


def test_a_handle_dropped_on_a_librados_thread_is_closed(
    db_name: str, ceph_cluster: ClusterInfo
) -> None:
    """The last reference to a locked handle goes inside a notify callback of
    the handle's own connection (closing a watch flushes that connection's
    callbacks): the callback returns at once (the next notify is
    acknowledged), and the handle's lock is released (another handle takes
    it without waiting)."""
    ioctx = clustermod.session(
        ceph_cluster.conf, ceph_cluster.client_id, clustermod.op_timeout_from_env()
    ).ioctx(ceph_cluster.pool)
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.chainlock(b"k")
    box = [db]
    del db
    obj = f"{db_name}-notify"
    ioctx.write_full(obj, b"")
    calls: list[str] = []

    def on_notify(*_args: Any) -> None:
        calls.append(threading.current_thread().name)
        box.clear()  # Tdb.__del__ runs here, on librados' thread

    watch = ioctx.watch(obj, on_notify)
    done = threading.Event()
    try:
        ioctx.notify(obj, "drop", 10_000)
        assert calls, "the callback never ran"
        # a stuck callback thread leaves this second notify unacknowledged
        threading.Thread(
            target=lambda: (ioctx.notify(obj, "again", 10_000), done.set()), daemon=True
        ).start()
        assert done.wait(15), "the notify callback thread is stuck closing the handle"
        assert len(calls) == 2
        other = radostdb.Tdb(db_name)
        deadline = time.monotonic() + 10
        while True:  # the close runs on the service thread: soon, not at once
            try:
                other.chainlock_nonblock(b"k")
                break
            except RuntimeError:
                assert time.monotonic() < deadline, "the dropped handle's lock was never released"
                time.sleep(0.05)
        other.chainunlock(b"k")
        other.close()
    finally:
        if done.is_set():
            watch.close()
        else:  # closing a watch whose callback is stuck would hang the run
            forks.abandon([watch])
