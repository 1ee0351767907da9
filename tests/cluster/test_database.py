"""The Tdb API on a real cluster: sharing between processes, open flags,
bad input, corruption, fork safety."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import rados
from procs import finish, python

import radostdb
from radostdb import admin, clsops, codec, layout, traverse
from radostdb.testing import ClusterInfo

RW = os.O_RDWR
CREATE = os.O_CREAT | os.O_RDWR


WRITER = """
    import os, sys, radostdb
    name, me = sys.argv[1], sys.argv[2]
    db = radostdb.Tdb(name, 0, radostdb.DEFAULT, os.O_RDWR)
    for i in range(500):
        if i < 200:
            db.append(b"shared", b"<" + me.encode() + b">")
        db.store(f"{me}-{i}".encode(), str(i).encode())
    db.close()
"""


def test_multi_writer_append_and_store(
    db_name: str, cluster_env: dict[str, str], start_method: str
) -> None:
    """4 processes: 200 appends each to one key, 500 stores each of their own."""
    radostdb.Tdb(db_name, 0, 0, CREATE).close()
    finish([python(WRITER, cluster_env, db_name, f"p{i}", method=start_method) for i in range(4)])
    db = radostdb.Tdb(db_name)
    shared = db[b"shared"]
    for i in range(4):
        assert shared.count(f"<p{i}>".encode()) == 200
    assert len(shared) == 800 * len(b"<p0>")
    keys = set(db.keys())
    for i in range(4):
        for j in range(500):
            assert db.get(f"p{i}-{j}".encode()) == str(j).encode()
    assert len(keys) == 4 * 500 + 1


def test_two_processes_see_each_other(db_name: str, cluster_env: dict[str, str]) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    proc = python(
        """
        import sys, radostdb
        db = radostdb.Tdb(sys.argv[1])
        for line in sys.stdin:
            key = line.strip().encode()
            value = db.get(key)
            db.store(key + b"-ack", b"seen")
            print(value.decode(), flush=True)
    """,
        cluster_env,
        db_name,
    )
    assert proc.stdin is not None and proc.stdout is not None
    for i in range(5):
        db.store(f"k{i}".encode(), f"v{i}".encode())
        proc.stdin.write(f"k{i}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == f"v{i}"
        assert db.get(f"k{i}-ack".encode()) == b"seen"
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


HOLDER = """
    import os, sys
    kind, name, flags = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "tdb":
        import tdb
        db = tdb.Tdb(name, 0, flags, os.O_RDWR)
    else:
        import radostdb
        db = radostdb.Tdb(name, 0, flags, os.O_RDWR)
    db.store(b"k", b"v")  # a CLEAR_IF_FIRST holder alone cleared on open: store after
    print("open", flush=True)
    sys.stdin.read()
    db.close()
"""


def _clear_if_first_outcomes(kind: str, name: str, env: dict[str, str]) -> list[bytes | None]:
    """What a CLEAR_IF_FIRST open finds while another process holds the
    database open with CLEAR_IF_FIRST, then with plain flags (tdb or radostdb)."""
    mod: Any = __import__(kind)
    seen = []
    for holder_flags in (mod.CLEAR_IF_FIRST, mod.DEFAULT):
        exe = "/usr/bin/python3" if kind == "tdb" else sys.executable
        holder = subprocess.Popen(
            [exe, "-c", textwrap.dedent(HOLDER), kind, name, str(holder_flags)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        db = mod.Tdb(name, 0, mod.CLEAR_IF_FIRST, os.O_RDWR)
        seen.append(db.get(b"k"))
        db.close()
        finish([holder])
    return seen


def test_clear_if_first_counts_openers_as_tdb(
    db_name: str, cluster_env: dict[str, str], tmp_path: Any
) -> None:
    """A CLEAR_IF_FIRST open keeps the records while another CLEAR_IF_FIRST
    handle (another process) has the database open, and clears them when
    only plain handles have it open: tdb holds its ACTIVE_LOCK only for
    CLEAR_IF_FIRST handles. Checked against python3-tdb."""
    import tdb

    path = str(tmp_path / "cif.tdb")
    tdb.Tdb(path, 0, tdb.DEFAULT, os.O_RDWR | os.O_CREAT).close()
    radostdb.Tdb(db_name, 0, 0, CREATE).close()
    expected = _clear_if_first_outcomes("tdb", path, cluster_env)
    assert expected == [b"v", None]
    assert _clear_if_first_outcomes("radostdb", db_name, cluster_env) == expected


def test_clear_if_first_clears_when_alone(db_name: str) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"k", b"v")
    db.close()
    db = radostdb.Tdb(db_name, 0, radostdb.CLEAR_IF_FIRST, RW)
    assert db.get(b"k") is None and list(db.keys()) == []


def test_open_flags(db_name: str) -> None:
    with pytest.raises(FileNotFoundError) as info:
        radostdb.Tdb(db_name)
    assert info.value.errno == errno.ENOENT and db_name in str(info.value)
    db = radostdb.Tdb(db_name, 5, 0, CREATE)
    assert db.hash_size == 5, "hash_size is kept to answer hash_size"
    assert db._storage.nshards == layout.DEFAULT_SHARDS, "it does not set the shard count"  # type: ignore[union-attr]
    db.store(b"k", b"v")
    with pytest.raises(FileExistsError):
        radostdb.Tdb(db_name, 0, 0, CREATE | os.O_EXCL)
    again = radostdb.Tdb(db_name, 99, 0, CREATE, shards=3)
    assert again.hash_size == 5, "the stored hash_size wins"
    assert again._storage.nshards == layout.DEFAULT_SHARDS, "so does the stored shard count"  # type: ignore[union-attr]
    assert again.get(b"k") == b"v"
    radostdb.Tdb(db_name, 0, 0, CREATE | os.O_TRUNC)
    assert again.get(b"k") is None
    ro = radostdb.Tdb(db_name, 0, 0, os.O_RDONLY)
    for call in (
        lambda: ro.store(b"a", b"b"),
        lambda: ro.delete(b"a"),
        lambda: ro.append(b"a", b"b"),
    ):
        with pytest.raises(RuntimeError) as err:
            call()
        assert err.value.args == (10, "write not permitted")
    for call, code in (
        (ro.clear, (3, "Locking error")),  # as tdb_wipe_all: no lock
        (ro.transaction_start, (9, "Invalid parameter")),
    ):
        with pytest.raises(RuntimeError) as err:
            call()
        assert err.value.args == code
    with pytest.raises(OSError) as err:
        radostdb.Tdb(db_name, 0, 0, os.O_WRONLY)
    assert err.value.errno == errno.EINVAL


def test_names_and_urls(db_name: str, ceph_cluster: ClusterInfo) -> None:
    url = f"rados://{ceph_cluster.pool}/ns-{db_name[:8]}/{db_name}"
    db = radostdb.Tdb(url, 0, 0, CREATE)
    db.store(b"k", b"in namespace")
    assert repr(db) == f"Tdb({url!r})" and db.filename == url.encode()
    with pytest.raises(FileNotFoundError):
        radostdb.Tdb(db_name)  # the default namespace has no such database
    same = radostdb.Tdb(db_name, namespace=f"ns-{db_name[:8]}")
    assert same.get(b"k") == b"in namespace"
    plain = radostdb.Tdb(f"rados://{ceph_cluster.pool}/{db_name}", 0, 0, CREATE)
    assert plain.get(b"k") is None
    with pytest.raises(ValueError):
        radostdb.Tdb("a\0b", 0, 0, CREATE)
    for bad, code in (
        ("", errno.ENOENT),
        ("x" * 4096, errno.ENAMETOOLONG),
        ("/tmp/", errno.EISDIR),
    ):
        with pytest.raises(OSError) as err:
            radostdb.Tdb(bad, 0, 0, CREATE)
        assert err.value.errno == code and not isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="bad database URL"):
        radostdb.Tdb("rados://onlypool", 0, 0, CREATE)
    # a path in a URL is taken from /; the namespace comes first (empty: none)
    path = f"/srv/{db_name}/x.tdb"
    in_url = radostdb.Tdb(
        f"rados://{ceph_cluster.pool}/ns-{db_name[:8]}/srv//{db_name}/x.tdb", 0, 0, CREATE
    )
    in_url.store(b"k", b"path in a URL")
    assert radostdb.Tdb(path, namespace=f"ns-{db_name[:8]}").get(b"k") == b"path in a URL"
    for handle in (in_url, db, same, plain):
        handle.close()
    site = admin.connect(namespace=f"ns-{db_name[:8]}")
    admin.remove(site, path, force=True)
    admin.remove(site, db_name, force=True)


def test_long_plain_names(db_name: str) -> None:
    """Plain names up to 4095 bytes; beyond 200 bytes their objects are hashed."""
    for name in (db_name + "x" * 300, db_name + "\u00e9" * 2000):
        db = radostdb.Tdb(name, 0, 0, CREATE)
        db.store(b"k", name.encode())
        db.close()
        assert radostdb.Tdb(name)[b"k"] == name.encode()
        assert name in admin.database_names(admin.connect())
        assert admin.remove(admin.connect(), name) == 2  # one shard written, and the header


def test_missing_pool_is_named(db_name: str) -> None:
    with pytest.raises(OSError) as err:
        radostdb.Tdb(db_name, 0, 0, CREATE, pool="no-such-pool-xyz")
    assert err.value.errno == errno.ENOENT and "no-such-pool-xyz" in str(err.value)


def test_missing_conf_is_named(db_name: str) -> None:
    with pytest.raises(OSError) as err:
        radostdb.Tdb(db_name, 0, 0, CREATE, conf="/nonexistent/ceph.conf")
    assert "/nonexistent/ceph.conf" in str(err.value)


def test_bad_arguments_leave_database_intact(db_name: str) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"k", b"v")
    with pytest.raises(TypeError, match="expected bytes, str found"):
        db.store("k", b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        db.store(b"k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        db.get(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown store flag"):
        db.store(b"k", b"x", 99)
    with pytest.raises(TypeError):
        db.storev(b"k", b"notalist")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown tdb_flags"):
        radostdb.Tdb(db_name, 0, 1 << 20, RW)
    with pytest.raises(TypeError):
        radostdb.Tdb(db_name, "8", 0, RW)  # type: ignore[arg-type]
    assert db[b"k"] == b"v" and list(db.keys()) == [b"k"]


def test_corrupt_record_is_reported(db_name: str, ioctx: Any) -> None:
    """A record whose crc does not match (written raw) raises TDB's corrupt error."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"good", b"value")
    db.store(b"bad", b"value")
    shard = layout.shard_object(db_name, db._storage.router.layout.shard(b"bad"))  # type: ignore[union-attr]
    record = bytearray(codec.encode_record(b"bad", b"value", 7))
    record[-1] ^= 0xFF  # flip a data byte: the crc no longer matches
    with rados.WriteOpCtx() as op:
        ioctx.set_omap(op, (codec.encode_key(b"bad"),), (bytes(record),))
        ioctx.operate_write_op(op, shard)
    with pytest.raises(RuntimeError) as err:
        db.get(b"bad")
    assert err.value.args[0] == 1 and "Corrupt database" in err.value.args[1]
    with pytest.raises(RuntimeError):
        dict(db.items())
    with pytest.raises(RuntimeError) as err:
        db.append(b"bad", b"more")
    assert err.value.args[0] == 1
    assert db[b"good"] == b"value"


def test_closed_handle(db_name: str) -> None:
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.close()
    db.close()
    for call in (
        lambda: db.get(b"k"),
        lambda: db.store(b"k", b"v"),
        lambda: repr(db),
        lambda: db.filename,
        db.keys,
        db.transaction_start,
        lambda: db.seqnum,
    ):
        with pytest.raises(RuntimeError) as err:
            call()
        assert err.value.args == (2, "Database is already closed")


def test_seqnum_grows_on_every_change(db_name: str) -> None:
    db = radostdb.Tdb(db_name, 0, radostdb.SEQNUM, CREATE)
    seen = [db.seqnum]
    for change in (
        lambda: db.store(b"a", b"1"),
        lambda: db.append(b"a", b"2"),
        lambda: db.delete(b"a"),
        db.clear,
        db.increment_seqnum_nonblock,
    ):
        change()
        seen.append(db.seqnum)
    assert seen == sorted(set(seen)), seen


def test_fork_child_uses_inherited_handle(db_name: str) -> None:
    """A forked child connects afresh; the handle it inherited keeps working."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    db.store(b"parent", b"1")
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            if db.get(b"parent") == b"1":
                db.store(b"child", b"2")
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert db.get(b"child") == b"2"
    db.store(b"parent-after", b"3")
    assert db.get(b"parent-after") == b"3"


def test_fork_in_the_middle_of_a_traversal(db_name: str) -> None:
    """A child forked while a traversal reads shards ahead in worker threads
    (threads it does not inherit) goes on with the traversal in its own
    thread: it, and the parent, list every key exactly once."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=8)
    want = {b"k%05d" % i for i in range(8000)}
    with db.transaction():
        for k in want:
            db.store(k, b"v")
    db.close()
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    keys = db.keys()
    head = [next(keys) for _ in range(100)]  # shards 0-3 are being read
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(30)  # a child that hangs dies, and fails the test
            rest = list(keys)
            if len(head) + len(rest) == len(want) and set(head + rest) == want:
                code = 0
        finally:
            os._exit(code)
    rest = list(keys)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(head) + len(rest) == len(want) and set(head + rest) == want


def test_clear_if_first_after_a_transaction(db_name: str) -> None:
    """Waiting for the transaction lock uses its own object: the header's
    watchers stay exactly the open handles."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE)
    with db.transaction():
        db.store(b"k", b"v")
    db.close()
    again = radostdb.Tdb(db_name, 0, radostdb.CLEAR_IF_FIRST, RW)
    assert again.get(b"k") is None


def test_traverse_record_larger_than_a_page(db_name: str) -> None:
    db = radostdb.Tdb(db_name, 1, 0, CREATE)
    big = os.urandom(9 << 20)
    db.store(b"big", big)
    db.store(b"small", b"s")
    assert dict(db.items()) == {b"big": big, b"small": b"s"}
    assert sorted(db.keys()) == [b"big", b"small"]


def test_handle_is_a_context_manager_and_close_ends_iterators(db_name: str) -> None:
    with radostdb.Tdb(db_name, 8, 0, os.O_RDWR | os.O_CREAT) as db:
        for i in range(50):
            db.store(b"k%02d" % i, b"v")
        keys = db.keys()
        items = db.items()
        assert next(keys) and next(items)
    with pytest.raises(RuntimeError) as err:
        next(keys)  # the handle closed under a running iterator
    assert err.value.args == (2, "Database is already closed")
    with pytest.raises(RuntimeError):
        next(items)
    with pytest.raises(RuntimeError):
        db.get(b"k00")
    with pytest.raises(RuntimeError), db:  # a closed handle cannot be entered again
        pass
    internal = radostdb.Tdb()
    internal.store(b"a", b"1")
    it = iter(internal)
    internal.close()
    with pytest.raises(RuntimeError):
        next(it)


def test_keys_come_alone_and_agree_with_items_through_unsettled_commits(
    db_name: str, ioctx: Any
) -> None:
    """keys(), iteration, firstkey/nextkey ask the class for keys alone
    (LIST_KEYS_ONLY: no record read or sent); they list what items() lists,
    also right after a multi-shard commit whose shards are still pending
    (their redo logs merged in, for the committer and for another handle),
    and after deletes."""
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=4)
    other = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    for i in range(300):
        db.store(b"k%03d" % i, b"v" * (i % 50))
    with db.transaction():  # every shard: pending until settled lazily
        for i in range(0, 300, 7):
            db.delete(b"k%03d" % i)
        for i in range(300, 340):
            db.store(b"k%03d" % i, b"new")
    want = {b"k%03d" % i for i in range(340) if i >= 300 or i % 7}
    for h in (db, other):
        keys = list(h.keys())
        assert len(keys) == len(set(keys)) and set(keys) == want
        assert [k for k, _ in h.items()] == keys
        assert list(h) == keys
        walked = [h.firstkey()]
        while (nxt := h.nextkey(walked[-1])) is not None:
            walked.append(nxt)
        assert walked == keys
    # the page itself: keys, each as u32 length + bytes, nothing else
    shard = layout.shard_object(db_name, 0)
    res = clsops.list_page(ioctx, shard, "", 1000, 1 << 20, flags=clsops.LIST_KEYS_ONLY)
    keys = [k for k, _ in clsops.key_page(res.page)]
    assert keys and set(keys) <= want
    assert len(res.page) == sum(4 + len(k) for k in keys)


def test_a_walk_reads_later_shards_ahead_and_reports_their_damage_in_order(
    db_name: str, ioctx: Any
) -> None:
    """While a traversal hands out shard 0's records, the next
    traverse.AHEAD shards are read too (their pages wait in hand); a
    corrupt record read ahead in shard 3 is reported only when the walk
    reaches it, after every record of shards 0-2 and shard 3's records
    before it; a walk dropped early stops every read it started."""
    nshards = 6
    db = radostdb.Tdb(db_name, 0, 0, CREATE, shards=nshards)
    with db.transaction():
        for i in range(3000):
            db.store(b"k%04d" % i, b"v%d" % i)
    db.close()  # settles the commit: the records are in the shards' omaps
    db = radostdb.Tdb(db_name, 0, 0, os.O_RDWR)
    storage = db._db
    by_shard: dict[int, list[bytes]] = {}
    for i in range(3000):
        key = b"k%04d" % i
        by_shard.setdefault(storage.router.shard(key), []).append(key)
    walk = traverse.Walk(storage.shards, storage.router, nshards)
    pages = iter(walk)
    first = next(pages)
    assert {storage.router.shard(k) for k, _ in first} == {0}
    ahead = {c.index: c for c in walk._open}
    assert set(ahead) == set(range(traverse.AHEAD + 1))
    deadline = time.monotonic() + 10
    while not all(ahead[i]._buf for i in range(1, traverse.AHEAD + 1)):
        assert time.monotonic() < deadline, "later shards were not read ahead"
        time.sleep(0.01)
    pages.close()  # dropped early: every chain stopped, none reading
    assert walk._open == [] and not any(c._running for c in ahead.values())

    shard3 = sorted(by_shard[3])
    bad = shard3[len(shard3) // 2]
    obj = layout.shard_object(db_name, 3)
    with rados.WriteOpCtx() as op:
        rec = codec.encode_record(bad, b"damaged")
        ioctx.set_omap(op, (codec.encode_key(bad),), (rec[:-1] + b"X",))
        ioctx.operate_write_op(op, obj)
    seen: list[bytes] = []
    with pytest.raises(radostdb.TdbError) as err:
        for key, _ in db.items():
            seen.append(key)
    assert obj in str(err.value)
    want = [k for s in range(3) for k in sorted(by_shard[s])]
    assert seen[: len(want)] == want
    assert seen[len(want) :] == shard3[: len(seen) - len(want)]
    assert bad not in seen
    db.close()
