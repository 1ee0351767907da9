"""The memory backend: a Tdb opened with no name (TDB_INTERNAL) holds its
records in the process, needs no cluster, and fails as Samba's tdb does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import tdb

import radostdb


def _call(fn: Callable[[], Any]) -> Any:
    try:
        value = fn()
    except RuntimeError as exc:
        return ("exc", "RuntimeError", exc.args)
    return ("ok", value)


def code_of(db: Any) -> Any:
    """The handle's last error code (a commit with no transaction active)."""
    try:
        return ("ok", db.transaction_commit())
    except Exception as exc:  # compared, type and args
        # radostdb.TdbError is the RuntimeError subclass tdb callers catch
        kind = "RuntimeError" if isinstance(exc, radostdb.TdbError) else type(exc).__name__
        return ("exc", kind, exc.args)


def test_internal_database() -> None:
    db = radostdb.Tdb()
    assert repr(db) == "Tdb(<internal>)" and db.filename == b"__TDB_INTERNAL__"
    db.store(b"k", b"v")
    with pytest.raises(RuntimeError) as err:
        db.store(b"k", b"v", radostdb.INSERT)
    assert err.value.args == (5, "Record exists")
    assert db.text.get("k") == "v"


def test_internal_database_fails_as_tdb() -> None:
    ref, ours = tdb.Tdb(), radostdb.Tdb()
    for call in (
        lambda db: db.store(b"a", b"b", tdb.INSERT),
        lambda db: db.transaction_start(),
        lambda db: db.repack(),
        lambda db: db.lock_all(),
        lambda db: db.unlock_all(),
    ):
        assert _call(lambda c=call: c(ours)) == _call(lambda c=call: c(ref))
        assert code_of(ours) == code_of(ref)
