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
        clustermod.op_timeout()
    monkeypatch.setenv("RADOSTDB_OP_TIMEOUT", "-1")
    with pytest.raises(ValueError, match="must be positive"):
        clustermod.op_timeout()
