"""Every corruption has a way out (a real cluster).

Each test damages one kind of stored object with raw RADOS writes, then
checks that: the API refuses with TDB's corrupt error naming the object
(never a bare Python exception); ``radostdb check`` names the object and
what is wrong; ``check --repair`` brings the database back and says what it
did; afterwards store, fetch and transactions work and check is clean.

python-rados (like librados' C API) cannot write an object's omap header,
so shard and object metadata are damaged with the stock ``rados
setomapheader`` tool; journal entries with python-rados ``set_omap``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import crashpoints
import helpers
import pytest
import rados

import radostdb
from radostdb import clsops, codec, kinds, layout
from radostdb.admin import redo
from radostdb.errors import ERR_CORRUPT
from radostdb.testing import ClusterInfo

NSHARDS = 4
# A framed struct claiming a body far longer than itself: no decoder takes it
# (the class's nor the client's). No NUL byte: it goes through argv.
GARBAGE = b"\x03\x03\xff\xff\xff\x7fnot a radostdb header"
OLD = {b"old%03d" % i: b"old value %d" % i for i in range(40)}
NEW = {b"new%03d" % i: b"committed" for i in range(100)}
CRASHING_COMMIT = """
import sys, radostdb
db = radostdb.Tdb(sys.argv[1])
with db.transaction():
    for i in range(100):
        db.store(b"new%03d" % i, b"committed")
"""
# the journal changes needed for clear errors through the API (see test_api_*)


# -- helpers ------------------------------------------------------------------------------
def make_db(name: str) -> None:
    helpers.make_db(name, OLD, transaction=True, shards=NSHARDS)


def set_omap_header(cluster: ClusterInfo, obj: str, value: bytes) -> None:
    """Write ``obj``'s omap header with the stock rados tool."""
    subprocess.run(
        [
            "rados",
            "-c",
            cluster.conf,
            "--id",
            cluster.client_id,
            "-p",
            cluster.pool,
            "setomapheader",
            obj.encode(),
            value,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def txn_key(txid: int) -> str:
    """A journal record's omap key (cls/radostdb/txn.cc)."""
    return f"t.{txid:016x}"


def set_omap(io: Any, obj: str, key: str, value: bytes) -> None:
    with rados.WriteOpCtx() as op:
        io.set_omap(op, (key,), (value,))
        io.operate_write_op(op, obj)


def crash_commit(name: str, env: dict[str, str], step: str) -> None:
    """A committer writing NEW in one transaction, SIGKILLed at ``step``;
    returns once its lease on the transaction lock has run out."""
    env = {**env, crashpoints.ENV: step, "RADOSTDB_LOCK_LEASE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", crashpoints.prelude() + CRASHING_COMMIT, name],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    time.sleep(1.5)


def pending_shards(io: Any, name: str) -> dict[int, int]:
    """Shard index -> the transaction pending on it."""
    out = {}
    for i in range(NSHARDS):
        st = clsops.state(io, layout.shard_object(name, i))
        if st is not None and st.header.pending:
            out[i] = st.header.pending
    return out


def crashed_participant(
    name: str, env: dict[str, str], io: Any, step: str
) -> tuple[dict[int, int], int, int, str]:
    """make_db, then a commit of NEW killed at ``step`` ("round-done": every
    participant pending it; "apply-partial": some): (shard -> txid pending,
    a pending shard, its txid, its object)."""
    make_db(name)
    crash_commit(name, env, step)
    pending = pending_shards(io, name)
    if step == "round-done":
        assert len(pending) == NSHARDS, "every participant is pending the commit"
    else:
        assert 0 < len(pending) < NSHARDS
    shard, txid = next(iter(pending.items()))
    return pending, shard, txid, layout.shard_object(name, shard)


def assert_corrupt(call: Callable[[], Any], obj: str) -> None:
    """``call`` raises TDB's corrupt error, naming ``obj``."""
    with pytest.raises(radostdb.TdbError) as info:
        call()
    code, message = info.value.args
    assert code == ERR_CORRUPT and obj in message, info.value.args


def store_in_transaction(db: radostdb.Tdb, records: dict[bytes, bytes]) -> None:
    db.transaction_start()
    try:
        for k, v in records.items():
            db.store(k, v)
    except BaseException:
        db.transaction_cancel()
        raise
    db.transaction_commit()


def check(cli: Any, name: str, *args: str, code: int) -> str:
    """``radostdb check ARGS NAME``: its stdout, after checking its exit status."""
    result = cli("check", *args, name)
    assert result.exit_code == code, (result.output, result.exception)
    return result.stdout


def repaired(cli: Any, name: str, problem: str, *done: str) -> str:
    """Check reports ``problem``; check --repair says each of ``done`` and
    succeeds. Returns the repair's output."""
    assert problem in check(cli, name, code=1)
    out = check(cli, name, "--repair", code=0)
    for text in done:
        assert text in out, (text, out)
    return out


def assert_works(cli: Any, name: str, expected: dict[bytes, bytes]) -> None:
    """Check is clean (right after a repair); the database holds
    ``expected``; store, fetch and a multi-shard transaction work; check is
    still clean."""
    assert check(cli, name, code=0).endswith("no problems\n")
    db = radostdb.Tdb(name)
    assert dict(db.items()) == expected
    db.store(b"after", b"store")
    more = {b"more%02d" % i: b"txn" for i in range(20)}  # every shard
    store_in_transaction(db, more)
    assert db[b"after"] == b"store" and all(db[k] == v for k, v in more.items())
    assert db.seqnum > 0
    db.close()
    assert check(cli, name, code=0).endswith("no problems\n")


# -- records and omap keys (repaired with --drop-corrupt) -------------------------------------
def test_corrupt_record_and_omap_key(cli: Any, db_name: str, ioctx: Any) -> None:
    make_db(db_name)
    bad = b"old007"
    obj = layout.shard_object(db_name, codec.shard_of(bad, NSHARDS))
    ek = codec.encode_key(bad)
    set_omap(ioctx, obj, ek, codec.encode_record(bad, b"old value 7")[:-1] + b"X")
    stray_obj = layout.shard_object(db_name, 0)
    set_omap(ioctx, stray_obj, "\x7e", b"junk")
    db = radostdb.Tdb(db_name)
    assert_corrupt(lambda: db.get(bad), obj)
    assert_corrupt(lambda: list(db.keys()), stray_obj)
    db.close()
    out = check(cli, db_name, code=1)
    assert f'corrupt-record: shard {codec.shard_of(bad, NSHARDS)} ({obj}) key "old007"' in out
    assert f"bad-key: shard 0 ({stray_obj}) omap key '~'" in out
    out = check(cli, db_name, "--repair", "--drop-corrupt", code=0)
    assert "-> removed the record" in out and "-> removed the entry" in out
    assert_works(cli, db_name, {k: v for k, v in OLD.items() if k != bad})


# -- class metadata (omap headers) ----------------------------------------------------------
def test_shard_metadata_that_does_not_decode(
    cli: Any, db_name: str, ceph_cluster: ClusterInfo
) -> None:
    make_db(db_name)
    key = b"old007"
    shard = codec.shard_of(key, NSHARDS)
    obj = layout.shard_object(db_name, shard)
    set_omap_header(ceph_cluster, obj, GARBAGE)
    db = radostdb.Tdb(db_name)
    assert_corrupt(lambda: db.get(key), obj)
    assert_corrupt(lambda: db.store(key, b"x"), obj)
    assert_corrupt(lambda: list(db.keys()), obj)
    assert_corrupt(lambda: store_in_transaction(db, {key: b"y"}), obj)
    db.close()
    error = cli("dump", db_name)
    assert error.exit_code == 1 and obj in error.stderr and "radostdb check" in error.stderr

    repaired(
        cli,
        db_name,
        f"shard-header: shard {shard} ({obj}): omap header (its sequence number, locks and "
        "transaction marks) does not decode",
        "-> rebuilt with the class's reset: a fresh header whose seq is past every ",
        "(no transaction was pending on it: no redo log)",
    )
    assert_works(cli, db_name, OLD)


def test_pending_shard_metadata_committed(
    cli: Any, db_name: str, ceph_cluster: ClusterInfo, cluster_env: dict[str, str], ioctx: Any
) -> None:
    """A commit that completed its round (every participant pending it, its
    record staged), then a participant's metadata damaged: rolled forward,
    the damaged shard by hand from its redo log (its records were never in
    the omap before)."""
    _pending, shard, txid, obj = crashed_participant(db_name, cluster_env, ioctx, "round-done")
    set_omap_header(ceph_cluster, obj, GARBAGE)
    key = next(k for k in NEW if codec.shard_of(k, NSHARDS) == shard)
    db = radostdb.Tdb(db_name)
    assert_corrupt(lambda: db.get(key), obj)
    db.close()

    out = check(cli, db_name, code=1)
    assert f"shard-header: shard {shard} ({obj}): omap header" in out
    assert f"it holds the redo log of transaction {txid:x}" in out
    out = check(cli, db_name, "--repair", code=0)
    assert (
        f"transaction {txid:x} committed (every participant has it and its journal record "
        "exists): its writes are kept" in out
    )
    assert f"shard(s) {shard} got its redo log installed by hand, then reset" in out
    assert "records at risk" not in out, "a decoded, staged record proves the commit"
    assert_works(cli, db_name, {**OLD, **NEW})


def test_pending_shard_metadata_aborted(
    cli: Any, db_name: str, ceph_cluster: ClusterInfo, cluster_env: dict[str, str], ioctx: Any
) -> None:
    """A commit that died half way (some participants applied, no journal
    record), then an applied participant's metadata damaged: rolled back,
    the damaged shard reset (its redo log dropped unread)."""
    pending, shard, txid, obj = crashed_participant(db_name, cluster_env, ioctx, "apply-partial")
    set_omap_header(ceph_cluster, obj, GARBAGE)

    out = check(cli, db_name, code=1)
    assert f"it holds the redo log of transaction {txid:x}" in out
    result = cli("check", "--repair", "--json", db_name)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (f,) = [f for f in report["findings"] if f["kind"] == "shard-header"]
    assert f["repaired"] and f["txid"] == txid
    assert f"transaction {txid:x} rolled back (shard(s) " in f["repair"]
    assert "never got it and its committer is gone)" in f["repair"]
    assert f"shard(s) {shard} reset, dropping its redo log" in f["repair"]
    written = sorted(k for k in NEW if codec.shard_of(k, NSHARDS) in pending)
    assert sorted(bytes.fromhex(k) for k in f["at_risk_hex"]) == written
    assert_works(cli, db_name, OLD)


def damage_redo_log(io: Any, obj: str, how: str) -> None:
    """Damage the redo log that ``obj`` holds, with raw writes."""
    if how == "bad-version":  # version 1 but compat 2: neither a redo nor a 0.2 undo log
        io.write(obj, b"\x01", 0)
    elif how == "garbage":
        io.write_full(obj, b"\x02\x02\x10\x00\x00\x00not a redo log")
    elif how == "missing":
        io.trunc(obj, 0)
    else:  # the header of another transaction's log (u64 txid after the frame)
        io.write(obj, (0x0BAD).to_bytes(8, "little"), 6)


@pytest.mark.parametrize("how", ["bad-version", "garbage", "missing", "other-txid"])
def test_pending_shard_redo_log_committed(
    cli: Any, db_name: str, cluster_env: dict[str, str], ioctx: Any, how: str
) -> None:
    """A commit that completed its round, then one participant's redo log
    damaged (its metadata intact): the class cannot settle it, so the API
    refuses with the corrupt error; the repair keeps the transaction's
    writes on the other shards, resets the damaged one and says its writes
    there are lost."""
    _pending, shard, txid, obj = crashed_participant(db_name, cluster_env, ioctx, "round-done")
    damage_redo_log(ioctx, obj, how)
    key = next(k for k in NEW if codec.shard_of(k, NSHARDS) == shard)
    db = radostdb.Tdb(db_name)
    assert_corrupt(lambda: db.store(key, b"x"), obj)
    db.close()

    out = check(cli, db_name, code=1)
    assert f"transaction: shard {shard} ({obj}): pending transaction {txid:x}: " in out
    assert "so the class cannot settle it" in out
    out = check(cli, db_name, "--repair", code=0)
    # the API's store above settled the other participants before it met the damage
    assert f"transaction {txid:x} committed (shard " in out, out
    assert "settled it): its writes are kept; no shard left to settle" in out
    assert f"shard(s) {shard} rebuilt with the class's reset" in out
    assert "the transaction's writes there are LOST" in out
    kept = {k: v for k, v in NEW.items() if codec.shard_of(k, NSHARDS) != shard}
    assert_works(cli, db_name, {**OLD, **kept})


def test_pending_shard_redo_log_aborted(
    cli: Any, db_name: str, cluster_env: dict[str, str], ioctx: Any
) -> None:
    """A commit that died half way, then an applied participant's redo log
    damaged: rolled back, the damaged shard reset (nothing of the
    transaction was in its omap, so nothing is lost)."""
    _pending, shard, txid, obj = crashed_participant(db_name, cluster_env, ioctx, "apply-partial")
    damage_redo_log(ioctx, obj, "garbage")

    out = check(cli, db_name, code=1)
    assert f"pending transaction {txid:x}: its redo log does not decode" in out
    out = check(cli, db_name, "--repair", code=0)
    assert f"transaction {txid:x} rolled back (shard(s) " in out
    assert f"shard(s) {shard} rebuilt with the class's reset" in out
    assert "dropping its redo log (shard" in out and "LOST" not in out
    assert_works(cli, db_name, OLD)


def as_left_by_0_2(io: Any, obj: str) -> None:
    """Turn the transaction pending on ``obj`` into what radostdb 0.2's class
    left: the new records in the omap, the old ones in an undo log (the redo
    log's struct, framed version 1, compat 1), in one raw op."""
    size, _ = io.stat(obj)
    log = redo.decode(io.read(obj, size))
    with rados.ReadOpCtx() as op:
        it, _ = io.get_omap_vals_by_keys(op, tuple(k for k, _ in log.entries))
        io.operate_read_op(op, obj)
        old = {k: bytes(v) for k, v in it}

    def field(b: bytes) -> bytes:
        return len(b).to_bytes(4, "little") + b

    body = log.txid.to_bytes(8, "little") + log.prev_applied.to_bytes(8, "little")
    body += len(log.entries).to_bytes(4, "little")
    for k, _ in log.entries:
        body += field(k.encode()) + bytes([k in old]) + field(old.get(k, b""))
    puts = [(k, new) for k, new in log.entries if new is not None]
    gone = tuple(k for k, new in log.entries if new is None)
    with rados.WriteOpCtx() as op:
        op.write_full(b"\x01\x01" + field(body))
        io.set_omap(op, tuple(k for k, _ in puts), tuple(v for _, v in puts))
        if gone:
            io.remove_omap_keys(op, gone)
        io.operate_write_op(op, obj)


# NEW keys written before the crashing commit: a rollback must put these back
BEFORE = {b"new%03d" % i: b"before" for i in range(0, 100, 7)}


@pytest.mark.parametrize("crash", ["round-done", "apply-partial"])
def test_transaction_pending_across_an_upgrade_from_0_2(
    cli: Any, db_name: str, cluster_env: dict[str, str], ioctx: Any, crash: str
) -> None:
    """A transaction left pending by radostdb 0.2 (undo logs, the new
    records already in the omap): this class refuses it; the repair keeps
    its writes if it committed, puts the old records back if it aborted."""
    make_db(db_name)
    db = radostdb.Tdb(db_name)
    store_in_transaction(db, BEFORE)
    db.close()
    crash_commit(db_name, cluster_env, crash)
    pending = pending_shards(ioctx, db_name)
    assert pending and len(set(pending.values())) == 1
    txid = next(iter(pending.values()))
    for shard in pending:
        as_left_by_0_2(ioctx, layout.shard_object(db_name, shard))
    shard = next(iter(pending))
    obj = layout.shard_object(db_name, shard)
    db = radostdb.Tdb(db_name)
    key = next(k for k in NEW if codec.shard_of(k, NSHARDS) == shard)
    assert_corrupt(lambda: db.store(key, b"x"), obj)
    db.close()

    out = check(cli, db_name, code=1)
    assert (
        f"transaction: shard {shard} ({obj}): pending transaction {txid:x}: it holds radostdb "
        "0.2's undo log, which this version's class refuses, so the class cannot settle it"
    ) in out, out
    out = check(cli, db_name, "--repair", code=0)
    undo_text = (
        "held radostdb 0.2's undo log: its writes were already in place there, so it was reset"
        if crash == "round-done"
        else "got radostdb 0.2's undo log installed by hand (its old records put back), then reset"
    )
    assert undo_text in out and "LOST" not in out, out
    if crash == "round-done":
        assert f"transaction {txid:x} committed (" in out
        assert_works(cli, db_name, {**OLD, **NEW})
    else:
        assert f"transaction {txid:x} rolled back (" in out
        assert_works(cli, db_name, {**OLD, **BEFORE})


def test_corrupt_record_in_a_redo_log(
    cli: Any, db_name: str, cluster_env: dict[str, str], ioctx: Any
) -> None:
    """A record damaged inside a pending transaction's redo log (the log
    still decodes): check finds it there; the repair settles the
    transaction, then --drop-corrupt removes the record it installed."""
    make_db(db_name)
    crash_commit(db_name, cluster_env, "round-done")
    shard, txid = next(iter(pending_shards(ioctx, db_name).items()))
    obj = layout.shard_object(db_name, shard)
    size, _ = ioctx.stat(obj)
    raw = ioctx.read(obj, size)
    key = next(k for k in sorted(NEW) if codec.shard_of(k, NSHARDS) == shard)
    okey = codec.encode_key(key)
    rec = dict(redo.decode(raw).entries)[okey]
    assert rec is not None and rec.endswith(b"committed")
    entry = okey.encode() + b"\x01" + len(rec).to_bytes(4, "little") + rec
    # the last byte of its data: the record's crc32c no longer matches
    ioctx.write(obj, b"X", raw.index(entry) + len(entry) - 1)

    out = check(cli, db_name, code=1)
    assert (
        f'corrupt-record: shard {shard} ({obj}) key "{key.decode()}": crc32c does not match '
        f"key and data (in the redo log of pending transaction {txid:x})"
    ) in out, out
    out = check(cli, db_name, "--repair", "--drop-corrupt", code=0)
    assert f"finished: transaction {txid:x} settled (committed)" in out
    assert "-> removed the record" in out
    assert_works(cli, db_name, {**OLD, **{k: v for k, v in NEW.items() if k != key}})


@pytest.mark.parametrize("which", ["transaction-lock", "header"])
def test_object_metadata(cli: Any, db_name: str, ceph_cluster: ClusterInfo, which: str) -> None:
    """The transaction-lock object (transactions refused) or the header
    object (seqnum refused): records stay readable and writable."""
    make_db(db_name)
    header = layout.header_object(db_name)
    obj = layout.wait_object(header) if which == "transaction-lock" else header
    set_omap_header(ceph_cluster, obj, GARBAGE)
    db = radostdb.Tdb(db_name)
    assert db[b"old001"] == OLD[b"old001"]
    db.store(b"old001", OLD[b"old001"])
    if which == "transaction-lock":
        assert_corrupt(db.transaction_start, obj)
        holds, effect = "the transaction lock", "a transaction lock held or queued for is dropped"
    else:
        assert_corrupt(lambda: db.seqnum, obj)
        holds = "the database sequence number"
        effect = "the database sequence number restarts above its old value"
    db.close()
    problem = f"object-header: {obj}: omap header ({holds}) does not decode"
    repaired(cli, db_name, problem, "-> rebuilt with the class's reset", effect)
    assert_works(cli, db_name, OLD)


# -- the journal ---------------------------------------------------------------------------
def test_journal_record_that_does_not_decode(cli: Any, db_name: str, ioctx: Any) -> None:
    """A garbage record of a transaction no shard is pending."""
    make_db(db_name)
    journal = layout.journal_object(db_name)
    set_omap(ioctx, journal, txn_key(0xBAD), GARBAGE)
    repaired(
        cli,
        db_name,
        f"journal: {journal} omap key 't.{0xBAD:016x}': the record of transaction bad does "
        "not decode",
        "-> its record was forgotten: no shard is pending transaction bad",
    )
    assert_works(cli, db_name, OLD)


def test_journal_record_of_a_pending_commit(
    cli: Any, db_name: str, cluster_env: dict[str, str], ioctx: Any
) -> None:
    """A completed round whose record is then garbled: every participant has
    the transaction and a record exists, so it is rolled forward, and the
    records it wrote are reported at risk (the record's state is unknown)."""
    make_db(db_name)
    crash_commit(db_name, cluster_env, "round-done")
    (txid,) = set(pending_shards(ioctx, db_name).values())
    journal = layout.journal_object(db_name)
    set_omap(ioctx, journal, txn_key(txid), GARBAGE)
    out = check(cli, db_name, code=1)
    assert f"the record of transaction {txid:x} does not decode" in out
    result = cli("check", "--repair", "--json", db_name)
    assert result.exit_code == 0, result.output
    (f,) = [f for f in json.loads(result.stdout)["findings"] if f["kind"] == "journal"]
    assert (
        f"transaction {txid:x} committed (every participant has it and its journal" in (f["repair"])
    )
    assert "(undecodable: only an ABORTED record would say otherwise)" in f["repair"]
    assert sorted(f["at_risk"]) == sorted(k.decode() for k in NEW)
    assert_works(cli, db_name, {**OLD, **NEW})


def _stage_with_missing_shard(io: Any, name: str, key: bytes) -> int:
    """A transaction naming shards 0 and 99 (the database has NSHARDS): its
    journal record staged and ``key``'s shard pending it, through the class."""
    txid = 0x5EED
    owner = os.urandom(clsops.OWNER_LEN)
    shard = codec.shard_of(key, NSHARDS)
    participants = [shard, 99]
    clsops.wait_all(
        [
            clsops.aio_stage(
                io,
                layout.journal_object(name),
                clsops.stage_request(txid, owner, participants),
            )
        ]
    )
    req = clsops.apply_request(owner, 0, [(kinds.Op.PUT, key, b"half")], txid, 0, participants)
    clsops.apply(io, layout.shard_object(name, shard), req)
    return txid


def test_journal_record_naming_a_missing_shard(cli: Any, db_name: str, ioctx: Any) -> None:
    make_db(db_name)
    key = b"old007"
    txid = _stage_with_missing_shard(ioctx, db_name, key)
    out = check(cli, db_name, code=1)
    assert (
        f"the record of transaction {txid:x} names shard(s) 99, which the database does not "
        f"have (it has {NSHARDS})" in out
    )
    assert f"pending transaction {txid:x} names shard(s) 99" in out
    result = cli("check", "--repair", "--json", db_name)
    assert result.exit_code == 0, result.output
    for f in json.loads(result.stdout)["findings"]:
        if f["txid"] == txid:
            assert (
                f"transaction {txid:x} rolled back (it names shard(s) 99, which do not exist)"
                in f["repair"]
            )
            assert f["at_risk"] == ["old007"]
    assert_works(cli, db_name, OLD)


def test_pending_marks_whose_record_is_gone(
    cli: Any, db_name: str, cluster_env: dict[str, str], ioctx: Any
) -> None:
    """No record and no live committer: aborted, as the protocol decides."""
    make_db(db_name)
    crash_commit(db_name, cluster_env, "round-done")
    (txid,) = set(pending_shards(ioctx, db_name).values())
    with rados.WriteOpCtx() as op:
        ioctx.remove_omap_keys(op, (txn_key(txid),))
        ioctx.operate_write_op(op, layout.journal_object(db_name))
    repaired(
        cli,
        db_name,
        f"pending transaction {txid:x}: a multi-shard transaction not yet decided",
        f"-> finished: transaction {txid:x} rolled back (aborted), its writes undone ",
        "(no journal record and its committer is gone: aborted, as the protocol ",
        'records at risk: "new',
    )
    assert_works(cli, db_name, OLD)


@pytest.mark.timeout(300)
def test_journal_keys_the_class_must_not_read(cli: Any, db_name: str, ioctx: Any) -> None:
    """A fence key that is not hex kills an OSD whose class reads the journal
    (std::stoi): check and repair never hand it to the class."""
    make_db(db_name)
    journal = layout.journal_object(db_name)
    set_omap(ioctx, journal, "f." + "z" * 32, b"\0" * 8)
    set_omap(ioctx, journal, "junk", b"?")
    assert f"journal: {journal} omap key 'junk': a key that is neither" in check(
        cli, db_name, code=1
    )
    out = repaired(
        cli, db_name, f"journal: {journal} omap key 'f.{'z' * 32}': a key that is neither"
    )
    assert out.count("-> removed the key") == 2
    assert_works(cli, db_name, OLD)


# -- the API, on journal damage -------------------------------------------------------------
@pytest.mark.parametrize("damage", ["garbage-record", "missing-shard", "participant-metadata"])
def test_api_reports_journal_damage_as_corrupt(
    cli: Any,
    db_name: str,
    ioctx: Any,
    ceph_cluster: ClusterInfo,
    cluster_env: dict[str, str],
    damage: str,
) -> None:
    make_db(db_name)
    journal = layout.journal_object(db_name)
    key = b"old007"
    if damage == "garbage-record":
        set_omap(ioctx, journal, txn_key(0xBAD), GARBAGE)
        named = journal
    elif damage == "missing-shard":
        _stage_with_missing_shard(ioctx, db_name, key)
        named = journal
    else:  # a committed round left pending; another participant's metadata damaged
        crash_commit(db_name, cluster_env, "round-done")
        pending = sorted(pending_shards(ioctx, db_name))
        named = layout.shard_object(db_name, pending[0])
        set_omap_header(ceph_cluster, named, GARBAGE)
        key = next(k for k in NEW if codec.shard_of(k, NSHARDS) == pending[1])
    db = radostdb.Tdb(db_name)
    if damage != "garbage-record":
        assert_corrupt(lambda: db.get(key), named)
    assert_corrupt(lambda: store_in_transaction(db, {b"t": b"1"}), named)
    db.close()
    result = cli("get", db_name, key.decode())
    assert result.exit_code == 1 or damage == "garbage-record", result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert check(cli, db_name, "--repair", code=0)
    assert_works(cli, db_name, {**OLD, **(NEW if damage == "participant-metadata" else {})})
