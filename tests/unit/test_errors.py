"""Errors that need no cluster: every radostdb exception has one root, and a
bad RADOSTDB_OP_TIMEOUT is refused."""

from __future__ import annotations

import pytest

import radostdb
from radostdb import cluster as clustermod


def test_every_radostdb_exception_has_one_root() -> None:
    from radostdb import clsops, codec, devcluster, errors, tdbdump

    root = errors.RadostdbError
    for cls in (
        errors.TdbError,
        clsops.Busy,
        clsops.Unclean,
        clsops.Canceled,
        clsops.WireError,
        codec.CodecError,
        devcluster.ClusterError,
        tdbdump.DumpFormatError,
    ):
        assert issubclass(cls, root), cls
    assert issubclass(errors.TdbError, RuntimeError)  # code written for tdb catches this
    assert radostdb.RadostdbError is root


def test_a_bad_timeout_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADOSTDB_OP_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="RADOSTDB_OP_TIMEOUT"):
        clustermod.op_timeout_from_env()
    monkeypatch.setenv("RADOSTDB_OP_TIMEOUT", "-1")
    with pytest.raises(ValueError, match="must be positive"):
        clustermod.op_timeout_from_env()


def test_daemon_allocator_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from radostdb import devcluster

    with pytest.raises(devcluster.ClusterError, match="unknown allocator 'jemalloc'"):
        devcluster.resolve_allocator("jemalloc")
    assert devcluster.resolve_allocator("libc") == "libc"
    monkeypatch.setenv("LD_PRELOAD", "libsomething.so")
    assert "LD_PRELOAD" not in devcluster.daemon_env("libc")  # never inherited
    monkeypatch.setattr(devcluster.ctypes.util, "find_library", lambda name: None)
    assert devcluster.resolve_allocator("auto") == "libc"
    with pytest.raises(devcluster.ClusterError, match="libgoogle-perftools4"):
        devcluster.resolve_allocator("tcmalloc")
    monkeypatch.setattr(devcluster.ctypes.util, "find_library", lambda name: f"lib{name}.so.4")
    assert devcluster.resolve_allocator("auto") == "tcmalloc"
    env = devcluster.daemon_env("tcmalloc")
    assert env["LD_PRELOAD"] == "libtcmalloc.so.4"
    assert env["TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES"] == str(128 << 20)


def test_tdb_errors_are_named_and_printed_as_tdbs() -> None:
    """Samba's code logs type(e).__name__ and tracebacks: both read exactly as
    with tdb, while ``except radostdb.TdbError`` still tells them apart and
    pickling keeps the class (multiprocessing carries errors between
    processes)."""
    import pickle
    import traceback

    import tdb

    import radostdb

    try:
        tdb.Tdb().delete(b"missing")
    except RuntimeError as exc:
        theirs = exc
    ours = radostdb.TdbError(8)
    assert type(ours).__name__ == type(theirs).__name__ == "RuntimeError"
    assert traceback.format_exception_only(type(ours), ours) == traceback.format_exception_only(
        type(theirs), theirs
    )
    assert repr(ours) == repr(theirs)
    assert isinstance(ours, RuntimeError) and isinstance(ours, radostdb.RadostdbError)
    ours.errno = 5  # type: ignore[attr-defined]
    back = pickle.loads(pickle.dumps(ours))
    assert type(back) is radostdb.TdbError and back.args == ours.args and back.code == 8
    assert back.errno == 5
