"""Differential tests: the same random operations on Samba's tdb and on radostdb.

Every result and every exception (type and args) must match; at the end the
two databases must hold the same records. Key order differs by design (tdb
walks hash chains, radostdb shards), so key listings are compared as sets and
firstkey/nextkey walks by the set of keys they visit.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
import tdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import radostdb

BIG = b"\xab" * (1 << 20)
KEYS = [b"", b"\x00", b"a", b"a\x00", b"key\x00with\x00nuls", b"\xff\xfe\x00", b"\x01\x7e\x7f",
        b"SECRETS/MACHINE_PASSWORD\x00"]
keys = st.one_of(st.sampled_from(KEYS), st.binary(max_size=12))
values = st.one_of(st.binary(max_size=48), st.just(b""), st.just(BIG))
flags = st.sampled_from([radostdb.REPLACE, radostdb.INSERT, radostdb.MODIFY])
TEXT = st.characters(blacklist_categories=("Cs",))

ops = st.one_of(
    st.tuples(st.just("store"), keys, values, flags),
    st.tuples(st.just("storev"), keys, st.lists(st.binary(max_size=8), max_size=3)),
    st.tuples(st.just("append"), keys, st.binary(max_size=16)),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("delitem"), keys),
    st.tuples(st.just("get"), keys),
    st.tuples(st.just("getitem"), keys),
    st.tuples(st.just("contains"), keys),
    st.tuples(st.just("setitem"), keys, st.binary(max_size=16)),
    st.tuples(st.just("keys")),
    st.tuples(st.just("walk")),
    st.tuples(st.just("clear")),
    st.tuples(st.just("text"), st.text(TEXT, max_size=6), st.text(TEXT, max_size=6)),
    st.tuples(st.just("tstart")),
    st.tuples(st.just("tcommit")),
    st.tuples(st.just("tcancel")),
    st.tuples(st.just("tprepare")),
)


def walk(db: Any) -> set[bytes]:
    seen = set()
    k = db.firstkey()
    while k is not None:
        assert k not in seen, "firstkey/nextkey visited a key twice"
        seen.add(k)
        k = db.nextkey(k)
    return seen


def run(db: Any, op: tuple[Any, ...]) -> Any:
    name, *args = op
    calls: dict[str, Callable[[], Any]] = {
        "store": lambda: db.store(*args),
        "storev": lambda: db.storev(*args),
        "append": lambda: db.append(*args),
        "delete": lambda: db.delete(*args),
        "delitem": lambda: db.__delitem__(*args),
        "get": lambda: db.get(*args),
        "getitem": lambda: db[args[0]],
        "contains": lambda: args[0] in db,
        "setitem": lambda: db.__setitem__(*args),
        "keys": lambda: set(db.keys()),
        "walk": lambda: walk(db),
        "clear": db.clear,
        "text": lambda: (db.text.store(args[0], args[1]), db.text.get(args[0]),
                         db.text[args[0]]),
        "tstart": db.transaction_start,
        "tcommit": db.transaction_commit,
        "tcancel": db.transaction_cancel,
        "tprepare": db.transaction_prepare_commit,
    }
    try:
        return ("ok", calls[name]())
    except Exception as exc:  # compared below, type and args
        # radostdb.TdbError is the RuntimeError subclass tdb callers catch
        kind = "RuntimeError" if isinstance(exc, radostdb.TdbError) else type(exc).__name__
        return ("exc", kind, exc.args)


class TxnTracker:
    """Keeps the sequence inside what tdb defines: no write after prepare, no
    prepare of an inner transaction, no commit/cancel with none active (tdb
    then reports whatever error code it last set internally)."""

    def __init__(self) -> None:
        self.depth = 0
        self.prepared = False

    def allowed(self, name: str) -> bool:
        if name in ("tcommit", "tcancel"):
            return self.depth > 0
        if name == "tprepare":
            return self.depth == 1 and not self.prepared
        if self.prepared:
            return name in ("get", "getitem", "contains", "keys", "walk")
        return True

    def after(self, name: str) -> None:
        if name == "tstart":
            self.depth += 1
        elif name in ("tcommit", "tcancel"):
            self.depth -= 1
            if self.depth == 0:
                self.prepared = False
        elif name == "tprepare":
            self.prepared = True


@pytest.fixture
def pair(tmp_path: Any, db_name: str) -> Any:
    made: list[tuple[Any, Any]] = []
    counter = itertools.count()

    def make() -> tuple[Any, Any]:
        """A fresh pair (the previous pair is closed: hypothesis calls this per example)."""
        for ref, ours in made:
            ref.close()
            ours.close()
        i = next(counter)
        ref = tdb.Tdb(str(tmp_path / f"ref{i}.tdb"), 0, tdb.DEFAULT, os.O_CREAT | os.O_RDWR)
        ours = radostdb.Tdb(f"{db_name}-{i}", 0, radostdb.DEFAULT, os.O_CREAT | os.O_RDWR)
        made.append((ref, ours))
        return ref, ours

    yield make
    for ref, ours in made:
        ref.close()
        ours.close()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(sequence=st.lists(ops, max_size=40))
def test_same_results_as_tdb(pair: Any, sequence: list[tuple[Any, ...]]) -> None:
    ref, ours = pair()
    tracker = TxnTracker()
    for step, op in enumerate(sequence):
        if not tracker.allowed(op[0]):
            continue
        expected, got = run(ref, op), run(ours, op)
        assert got == expected, f"step {step}: {op[0]}{op[1:] if len(repr(op)) < 300 else ''}"
        tracker.after(op[0])
    while tracker.depth:
        assert run(ref, ("tcancel",)) == run(ours, ("tcancel",))
        tracker.after("tcancel")
    assert dict(ours.items()) == {k: ref[k] for k in ref.keys()}


def test_nested_transactions_match_tdb(pair: Any) -> None:
    """The nesting rules spelled out: inner cancel poisons the outer commit."""
    ref, ours = pair()
    script = [("tstart",), ("store", b"a", b"1", 1), ("tstart",), ("store", b"b", b"2", 1),
              ("tcancel",), ("get", b"b"), ("tcommit",), ("get", b"a"),
              ("tstart",), ("tstart",), ("store", b"c", b"3", 1), ("tcommit",), ("tcommit",),
              ("get", b"c"), ("tstart",), ("store", b"d", b"4", 1), ("tprepare",),
              ("tprepare",), ("tcommit",), ("get", b"d")]
    for op in script:
        assert run(ours, op) == run(ref, op), op
    assert run(ours, ("get", b"a")) == ("ok", None)


def test_disallow_nesting(tmp_path: Any, db_name: str) -> None:
    flags = os.O_CREAT | os.O_RDWR
    ref = tdb.Tdb(str(tmp_path / "n.tdb"), 0, tdb.DISALLOW_NESTING, flags)
    ours = radostdb.Tdb(db_name, 0, radostdb.DISALLOW_NESTING, flags)
    for db in (ref, ours):
        db.transaction_start()
    assert run(ours, ("tstart",)) == run(ref, ("tstart",))
    assert run(ours, ("tstart",))[0] == "exc"


def test_errors_without_transaction_are_runtime_errors(pair: Any) -> None:
    ref, ours = pair()
    for op in (("tcommit",), ("tcancel",), ("tprepare",)):
        r, o = run(ref, op), run(ours, op)
        assert r[:2] == o[:2] == ("exc", "RuntimeError")
