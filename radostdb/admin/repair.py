"""``radostdb check --repair``: bring a damaged database back to a usable
state, saying exactly what was dropped or rebuilt (Finding.repair) and
which records a decision could not vouch for (Finding.at_risk).

repair design (in this order: each step needs what the previous ones fixed
to decode):
1. Journal keys the class does not expect (neither a record ``t.<txid>``
   nor a fenced owner ``f.<owner>``) are removed raw: the class would
   misread them, or die on them.
2. Class metadata (omap header) that does not decode, on the header object
   (the database sequence number) or the transaction-lock object (the
   transaction lock and its queue), is replaced with the class's ``reset``:
   a fresh header whose seq is past every record's; locks, queue, stale
   owners and transaction marks are dropped.
3. A shard whose metadata does not decode and that has no redo log (no
   transaction pending on it) gets the same ``reset``.
4. Transactions that the journal can no longer decide, grouped by txid: a
   record that does not decode, a record or a pending shard naming shards
   the database does not have, a shard whose metadata does not decode but
   holds the transaction's redo log, a shard pending it whose log the
   class refuses (it does not decode, is missing, is another transaction's,
   or is radostdb 0.2's undo log). Decided from the participants'
   state (:func:`judge`): aborted if the record says so or a participant
   is fenced against it; committed if the record says complete, a
   participant settled it, or a record exists (decoding or not) and every
   participant has it (the state a commit leaves until it is settled
   lazily; only an ABORTED record is compatible with it, in the instant
   between a decider writing ABORTED and its first rollback); in flight
   while its committer holds the transaction lock (left alone); otherwise
   aborted (a participant never got it, or does not exist, and the
   committer is gone). Committed: the pending participants are settled
   and a damaged one gets its redo log installed by hand, then ``reset``;
   one whose log does not decode is ``reset`` and its writes there are
   reported lost. Aborted: the journal says ABORTED, the participants are
   rolled back through the class, and a damaged one or one whose log does
   not decode is reset (its redo log dropped: the transaction never wrote
   its records). A 0.2 undo log (old records; the omap holds the new ones)
   is the other way round: committed, the shard is only reset; aborted,
   the log is installed by hand (the old records put back), then reset.
   Then the record is forgotten. The keys the transaction wrote are reported
   as at risk whenever the decision rested on a record that was missing or
   did not decode.
5. Unfinished commits otherwise, and stale owners (transaction holders
   whose lease ran out; pruning their expired locks makes them stale):
   resolver.settle_all, the protocol's own decisions (a transaction with no
   record and no live committer is aborted; the keys it wrote are reported
   at risk; stale owners are fenced in the journal, then cleared).
6. Expired locks: pruned by the class.
7. Records: a misplaced one is moved to its shard (or dropped when its
   shard has the key); corrupt records and keys are removed only with
   ``drop_corrupt``. A record write goes through the class, refused if the
   shard changed since the entry was read (assert_version).
"""

from __future__ import annotations

import errno
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import rados

from .. import clsops, codec, kinds, layout, resolver
from ..errors import ERR_EXISTS, RadostdbError, TdbError
from ..router import Router
from . import redo
from .findings import REDO_UNREADABLE, Finding, Kind, display_keys
from .inspect import UNREADABLE, error_text, object_states, undecodable, unfinished_commit
from .read import db_objects
from .site import Site

REPAIR_ATTEMPTS = 5
RESET_TEXT = (
    "rebuilt with the class's reset: a fresh header whose seq is past every record's; "
    "its locks, queued waiters, stale owners and transaction marks are dropped"
)
HEADER_EFFECT = (
    "; the database sequence number restarts above its old value (reset reads the "
    "header's text fields as records, so it jumps far ahead)"
)
LOCK_EFFECT = (
    "; a transaction lock held or queued for is dropped (a transaction then in progress fails)"
)
# The lock owner id of repairs (they hold no lock; the class refuses them on a
# record another handle has locked).
_REPAIR_OWNER = uuid.uuid4().bytes


class _Changed(RadostdbError):
    """The object changed since it was read: read it again."""


def repair(
    site: Site,
    name: str,
    homes: Router | None,
    findings: list[Finding],
    *,
    drop_corrupt: bool = False,
) -> None:
    """Repair what ``findings`` (of check) report, in the order of the
    module doc; every finding gets its outcome."""
    journal = layout.journal_object(name)
    strays = [f for f in findings if f.kind == Kind.JOURNAL and f.txid is None]
    if strays:
        _remove_raw(site.io, journal, strays)
        if not all(f.repaired for f in strays):  # the class must not read the journal
            for f in findings:
                if f.repair is None:
                    f.done(
                        "not repaired: the journal still holds keys that are not radostdb's", False
                    )
            return
    for f in findings:
        if f.kind == Kind.OBJECT_HEADER:
            effect = HEADER_EFFECT if layout.is_header_object(f.object) else LOCK_EFFECT
            _reset(site.io, f, RESET_TEXT + effect)
    if homes is None:
        return
    db = db_objects(site, name, homes.shard_count())
    for f in findings:
        if f.kind == Kind.SHARD_HEADER and f.txid is None:
            _reset(site.io, f, _shard_reset_text(f))
    damage = {
        f.txid
        for f in findings
        if f.txid is not None and (f.kind in (Kind.SHARD_HEADER, Kind.JOURNAL) or f.damaged)
    }
    groups: dict[int, list[Finding]] = {}
    for f in findings:
        if f.txid in damage:
            groups.setdefault(f.txid, []).append(f)
    undecided = False
    for txid, group in groups.items():
        undecided |= not _settle_group(site, db, txid, group)
    unfinished = [f for f in findings if f.kind == Kind.TRANSACTION and f.txid not in damage]
    if unfinished or any(f.kind == Kind.EXPIRED_LOCK for f in findings):
        # also when locks expired: pruning them makes expired transaction
        # holders stale owners, which the protocol then fences and clears
        _finish_commits(site, db, unfinished, blocked=undecided)
    _prune(site.io, [f for f in findings if f.kind == Kind.EXPIRED_LOCK])
    for f in findings:
        if f.kind in (Kind.BAD_KEY, Kind.CORRUPT_RECORD, Kind.MISPLACED):
            _repair_record(site, name, homes, f, drop_corrupt)
    for f in findings:
        if f.kind == Kind.LAYOUT and f.repairable:
            _finish_split(site, name, f)


def _shard_reset_text(f: Finding) -> str:
    if REDO_UNREADABLE in f.message:
        return (
            RESET_TEXT + "; the redo log did not decode: whatever transaction was pending "
            "here loses its writes on this shard"
        )
    return RESET_TEXT + " (no transaction was pending on it: no redo log)"


def _reset(io: Any, f: Finding, text: str) -> None:
    try:
        clsops.reset(io, f.object)
    except (TdbError, OSError) as exc:
        f.done(f"not repaired: {error_text(exc)}", False)
        return
    f.done(text)


def _remove_raw(io: Any, obj: str, found: list[Finding]) -> None:
    """Remove omap keys the class must not read, in one op."""
    keys = tuple(f.omap_key for f in found if f.omap_key is not None)
    try:
        with rados.WriteOpCtx() as op:
            io.remove_omap_keys(op, keys)
            io.operate_write_op(op, obj)
    except rados.Error as exc:
        for f in found:
            f.done(f"not repaired: {exc}", False)
        return
    for f in found:
        f.done("removed the key")


def _prune(io: Any, found: list[Finding]) -> None:
    """Drop expired lock entries (the class prunes every expired one of an object)."""
    pruned: dict[str, str | None] = {}
    for obj in {f.object for f in found}:
        try:
            clsops.prune(io, obj)
            pruned[obj] = None
        except (TdbError, OSError, clsops.Busy) as exc:
            pruned[obj] = error_text(exc)
    for f in found:
        error = pruned[f.object]
        f.done("dropped" if error is None else f"not repaired: {error}", error is None)


# -- transactions decided from the participants' state -------------------------------------
@dataclass
class Evidence:
    """What the database says about transaction ``txid``."""

    txid: int
    record: clsops.TxnRecord | None  # its journal record, if it decodes
    record_bad: str | None  # why a record that exists does not decode
    headers: list[clsops.ShardHeader | None]  # every shard's metadata (None: does not decode)
    redo: dict[int, redo.RedoLog]  # shard index -> its redo log of txid
    # shards pending it whose redo log the class cannot install -> why
    broken: dict[int, str] = field(default_factory=dict)
    owner: bytes = clsops.NO_OWNER
    live: bool = False  # its committer holds the transaction lock
    valid: list[int] = field(default_factory=list)  # participants the database has
    invalid: list[int] = field(default_factory=list)  # participants it does not have

    @property
    def damaged(self) -> list[int]:
        """Participants whose metadata does not decode but hold its redo log."""
        return sorted(i for i in self.redo if self.headers[i] is None)

    @property
    def pending(self) -> list[int]:
        """Participants pending it (metadata decodes) whose redo log is sound."""
        return [
            i
            for i in self.valid
            if (h := self.headers[i]) is not None
            and h.pending == self.txid
            and i not in self.broken
        ]

    @property
    def keys(self) -> list[bytes]:
        """The keys it wrote, from the redo logs found."""
        return sorted({k for log in self.redo.values() for k in log.keys})


def gather(site: Site, db: resolver.DbObjects, txid: int) -> Evidence:
    """Read the journal record, every shard's metadata and the redo logs of ``txid``."""
    io = site.io
    record, bad = None, None
    try:
        record = clsops.journal(io, db.journal, txid).records.get(txid)
    except UNREADABLE as exc:
        if not undecodable(exc):
            raise
        bad = error_text(exc)
    if record is not None and record.txid != txid:
        record, bad = None, f"it holds transaction {record.txid:x}"
    states = object_states(io, db.shard_objs)
    headers: list[clsops.ShardHeader | None] = [
        None if obj not in states else st.header if (st := states[obj]) else clsops.ShardHeader()
        for obj in db.shard_objs
    ]
    logs, broken = {}, {}
    for i, h in enumerate(headers):
        if h is not None and h.pending == txid:
            log, problem = redo.pending_log(io, db.shard(i), txid)
            if problem is not None:
                broken[i] = problem
        elif h is None:
            try:
                log = redo.read(io, db.shard(i))
            except redo.RedoError:
                continue
        else:
            continue
        if log is not None and log.txid == txid:
            logs[i] = log
    ev = Evidence(txid, record, bad, headers, logs, broken)
    info = next((h for h in headers if h is not None and h.pending == txid), None)
    listed = info.participants if info is not None else record.participants if record else []
    everyone = set(listed) | set(logs)
    ev.valid = sorted(i for i in everyone if i < len(db.shard_objs))
    ev.invalid = sorted(i for i in everyone if i >= len(db.shard_objs))
    ev.owner = info.powner if info is not None else record.owner if record else clsops.NO_OWNER
    try:
        wait = clsops.state(io, db.wait_obj)
    except UNREADABLE:
        wait = None
    if wait is not None and ev.owner not in wait.header.stale:
        ev.live = any(
            e.owner == ev.owner
            and e.kind == kinds.Kind.TXN
            and e.held
            and e.expiry_ms > wait.now_ms
            for e in wait.header.entries
        )
    return ev


def judge(ev: Evidence) -> tuple[resolver.Outcome, str, bool]:
    """(outcome, why, certain): the module doc's rules. ``certain``: the
    journal or a participant says so; otherwise it was presumed."""
    txid, rec = ev.txid, ev.record
    known = [(i, h) for i, h in enumerate(ev.headers) if h is not None]
    if rec is not None and rec.state == kinds.TxnState.ABORTED:
        return resolver.Outcome.ABORTED, "its journal record says aborted", True
    fenced = [i for i, h in known if h.aborted == txid]
    if fenced:
        return (
            resolver.Outcome.ABORTED,
            f"shard {fenced[0]} was rolled back or fenced against it",
            True,
        )
    if rec is not None and rec.state == kinds.TxnState.COMPLETE:
        return resolver.Outcome.COMMITTED, "its journal record says complete", True
    settled = [i for i, h in known if h.settled == txid]
    if settled:
        return resolver.Outcome.COMMITTED, f"shard {settled[0]} settled it", True

    def has(i: int) -> bool:
        h = ev.headers[i]
        return i in ev.redo if h is None else h.has(txid)

    lacking = [i for i in ev.valid if not has(i)]
    if (rec is not None or ev.record_bad) and not ev.invalid and ev.valid and not lacking:
        why = "every participant has it and its journal record exists"
        if ev.record_bad:
            why += " (undecodable: only an ABORTED record would say otherwise)"
        return resolver.Outcome.COMMITTED, why, rec is not None
    if ev.live:
        return resolver.Outcome.IN_FLIGHT, "its committer holds the transaction lock", True
    if ev.invalid:
        why = f"it names shard(s) {', '.join(map(str, ev.invalid))}, which do not exist"
    elif lacking:
        why = f"shard(s) {', '.join(map(str, lacking))} never got it and its committer is gone"
    else:
        why = "it has no journal record and its committer is gone"
    return resolver.Outcome.ABORTED, why, rec is not None and rec.state == kinds.TxnState.ABORTED


def _settle_group(site: Site, db: resolver.DbObjects, txid: int, group: list[Finding]) -> bool:
    """Decide transaction ``txid`` from the evidence and carry it out; every
    finding of the group gets the outcome. False if it is left undecided."""
    try:
        ev = gather(site, db, txid)
        outcome, why, certain = judge(ev)
        if outcome == resolver.Outcome.IN_FLIGHT:
            for f in group:
                f.done(
                    f"not repaired: transaction {txid:x} is in flight ({why}); run check again",
                    False,
                )
            return False
        if not ev.pending and not ev.redo and not ev.broken:
            _forget(site.io, db, txid)
            text, certain = (
                (
                    f"its record was forgotten: no shard is pending transaction {txid:x} or "
                    "holds its redo log, so there is nothing to decide"
                ),
                True,
            )
        elif outcome == resolver.Outcome.COMMITTED:
            text = _roll_forward(site.io, db, ev, why)
        else:
            text = _roll_back(site.io, db, ev, why)
    except (TdbError, OSError, clsops.WireError, redo.RedoError, _Changed) as exc:
        for f in group:
            f.done(f"not repaired: {error_text(exc)}", False)
        return False
    at_risk = [] if certain else ev.keys
    if at_risk:
        text += (
            "; records at risk (written by it, kept or dropped on a presumption): "
            + display_keys(at_risk)
        )
    for f in group:
        prefix = RESET_TEXT + "; " if f.kind == Kind.SHARD_HEADER else ""
        f.done(prefix + text)
        f.at_risk = at_risk
    return True


def _forget(io: Any, db: resolver.DbObjects, txid: int) -> None:
    """Remove txid's journal record (the class removes without decoding it)."""
    clsops.txn_mark(io, db.journal, forget=[txid])


def _roll_forward(io: Any, db: resolver.DbObjects, ev: Evidence, why: str) -> str:
    pending = ev.pending
    clsops.wait_all(clsops.aio_settle(io, db.shard(i), ev.txid) for i in pending)
    _finish_by_hand(io, db, ev, committed=True)
    _forget(io, db, ev.txid)
    redone = [i for i in ev.damaged if not ev.redo[i].undo]
    where = ", ".join(map(str, sorted({*pending, *redone})))
    settled = f"settled on shard(s) {where}" if where else "no shard left to settle"
    text = (
        f"transaction {ev.txid:x} committed ({why}): its writes are kept; "
        f"{settled}; its journal record forgotten"
    )
    if redone:
        text += (
            f"; shard(s) {', '.join(map(str, redone))} got its redo log installed by "
            "hand, then reset"
        )
    return text + _by_hand_text(ev, committed=True)


def _finish_by_hand(io: Any, db: resolver.DbObjects, ev: Evidence, *, committed: bool) -> None:
    """Finish the transaction on the participants the class cannot settle or
    roll back (metadata that does not decode, a log it refuses): install
    the log where that gives the outcome's records (a committed
    transaction's redo log, an aborted one's 0.2 undo log), then reset."""
    for i in sorted({*ev.damaged, *ev.broken}):
        log = ev.redo.get(i)
        if log is not None and log.undo != committed:
            _install_by_hand(io, db.shard(i), log)
        clsops.reset(io, db.shard(i))


def _by_hand_text(ev: Evidence, *, committed: bool) -> str:
    """What became of the participants whose log the class cannot handle."""
    text = ""
    undone = sorted(i for i, log in ev.redo.items() if log.undo)
    if undone:
        where = ", ".join(map(str, undone))
        text += (
            f"; shard(s) {where} held radostdb 0.2's undo log: its writes were already in "
            "place there, so it was reset"
            if committed
            else f"; shard(s) {where} got radostdb 0.2's undo log installed by hand (its "
            "old records put back), then reset"
        )
    broken = {i: p for i, p in ev.broken.items() if i not in ev.redo}
    if not broken:
        return text
    where = ", ".join(map(str, sorted(broken)))
    why = "; ".join(f"shard {i}: {p}" for i, p in sorted(broken.items()))
    if committed:
        return text + (
            f"; shard(s) {where} {RESET_TEXT}; the transaction's writes there are LOST "
            f"({why}; which keys it wrote there is not known)"
        )
    return text + f"; shard(s) {where} {RESET_TEXT}, dropping its redo log ({why})"


def _roll_back(io: Any, db: resolver.DbObjects, ev: Evidence, why: str) -> str:
    txid = ev.txid
    if ev.record_bad is not None or ev.invalid:
        _forget(io, db, txid)  # the class can then write an ABORTED record
    try:
        clsops.txn_abort(io, db.journal, txid, ev.owner, ev.valid)
    except TdbError as exc:
        if getattr(exc, "errno", 0) == errno.EEXIST:
            raise _Changed(f"transaction {txid:x} completed meanwhile; run check again") from None
        raise
    kept = []
    readable = [i for i in ev.valid if ev.headers[i] is not None and i not in ev.broken]
    for i, call in [(i, clsops.aio_rollback(io, db.shard(i), txid)) for i in readable]:
        err = call.error()
        if err is not None:
            if getattr(err, "errno", 0) != errno.EEXIST:
                raise err
            kept.append(i)  # settled there before: nothing to undo
    _finish_by_hand(io, db, ev, committed=False)
    _forget(io, db, txid)
    dropped = sum(len(log.entries) for log in ev.redo.values() if not log.undo)
    text = (
        f"transaction {txid:x} rolled back ({why}): {dropped} record write(s) of its "
        f"redo log(s) dropped; participants fenced against it; its journal record forgotten"
    )
    reset = [i for i in ev.damaged if not ev.redo[i].undo]
    if reset:
        text += f"; shard(s) {', '.join(map(str, reset))} reset, dropping its redo log"
    if kept:
        text += f"; shard(s) {', '.join(map(str, kept))} had settled it and keep its writes"
    return text + _by_hand_text(ev, committed=False)


def _install_by_hand(io: Any, obj: str, log: redo.RedoLog) -> None:
    """Install a log the class will not (redo.install), re-reading it if the
    object changed."""
    for _ in range(REPAIR_ATTEMPTS):
        try:
            redo.install(io, obj, log)
            return
        except rados.Error as exc:
            if clsops.errno_of(exc) not in (errno.ERANGE, errno.EOVERFLOW):
                raise clsops.error_of(clsops.errno_of(exc), f"installing on {obj}") from None
        fresh = redo.read(io, obj)
        if fresh is None or fresh.txid != log.txid:
            raise _Changed(f"{obj} changed while its redo log was installed; run check again")
        log = fresh
    raise _Changed(f"{obj} kept changing; run check again")


# -- unfinished commits the protocol decides --------------------------------------------------
def _finish_commits(
    site: Site, db: resolver.DbObjects, found: list[Finding], *, blocked: bool
) -> None:
    """Decide every transaction left pending (resolver.settle_all) and say,
    per object, what became of it."""
    if blocked:
        for f in found:
            f.done("not repaired: a damaged transaction could not be decided first", False)
        return
    before = _pending_now(site, db)
    try:
        left = resolver.settle_all(db)
    except (TdbError, OSError, clsops.WireError) as exc:
        for f in found:
            f.done(f"not repaired: {error_text(exc)}", False)
        return
    after = _pending_now(site, db)
    still = set(unfinished_commit(site, db.name, db.shard_objs))
    for f in found:
        if left and f.object in left:
            f.done(
                "not repaired: a live handle holds the transaction lock (its commit is "
                "under way); run check again",
                False,
            )
        elif f.object in still:
            f.done("not repaired: still unfinished after recovery", False)
        else:
            keys = before.pending.get(f.object, (0, []))[1]
            text, f.at_risk = _finished_text(f.object == db.journal, f.txid, keys, before, after)
            f.done(text)


@dataclass
class _Snapshot:
    pending: dict[str, tuple[int, list[bytes]]]  # object -> (txid pending, keys it wrote)
    settled: set[int]
    aborted: set[int]
    records: set[int]  # txids with a journal record


def _pending_now(site: Site, db: resolver.DbObjects) -> _Snapshot:
    snap = _Snapshot({}, set(), set(), set())
    for obj, st in object_states(site.io, db.shard_objs).items():
        if st is None:
            continue
        snap.settled.add(st.header.settled)
        snap.aborted.add(st.header.aborted)
        if st.header.pending:
            try:
                log = redo.read(site.io, obj)
            except redo.RedoError:
                log = None
            snap.pending[obj] = (st.header.pending, log.keys if log else [])
    try:
        snap.records = set(clsops.journal(site.io, db.journal).records)
    except UNREADABLE:
        pass
    return snap


def _finished_text(
    journal: bool, txid: int | None, keys: list[bytes], before: _Snapshot, after: _Snapshot
) -> tuple[str, list[bytes]]:
    """What became of an object's unfinished commit, and the records at risk."""
    if not txid:
        what = "journal records settled and forgotten" if journal else "stale owners cleared"
        return f"finished: {what}", []
    if txid in after.settled:
        return f"finished: transaction {txid:x} settled (committed), its writes kept", []
    text = f"finished: transaction {txid:x} rolled back (aborted), its writes undone"
    if txid in before.records:
        return text, []
    return (
        text + " (no journal record and its committer is gone: aborted, as the protocol "
        f"decides); records at risk: {display_keys(keys)}",
        keys,
    )


# -- records --------------------------------------------------------------------------------
def _read_entry(io: Any, obj: str, ek: str) -> tuple[bytes | None, int]:
    """(stored value of omap key ``ek`` or None, object version when read)."""
    with rados.ReadOpCtx() as op:
        it, _ = io.get_omap_vals_by_keys(op, (ek,))
        try:
            io.operate_read_op(op, obj)
        except rados.ObjectNotFound:
            return None, 0
        version = io.get_last_version()
        for _, value in it:
            return bytes(value), version
    return None, version


def _apply_request(entries: Iterable[tuple[int, bytes, bytes]]) -> bytes:
    """A class ``apply`` request from this process's repair owner, holding no lock."""
    return clsops.apply_request(_REPAIR_OWNER, 0, list(entries))


def _write_if_unchanged(
    io: Any,
    obj: str,
    version: int,
    *,
    remove_omap_key: str | None = None,
    entries: Iterable[tuple[int, bytes, bytes]] = (),
) -> None:
    """One atomic op on ``obj``, refused (_Changed) unless it is still at ``version``.

    It removes a raw omap key and/or applies class batch entries; the class
    bumps the shard sequence number either way.
    """
    with rados.WriteOpCtx() as op:
        op.assert_version(version)
        if remove_omap_key is not None:
            io.remove_omap_keys(op, (remove_omap_key,))
        clsops.compose_apply(op, _apply_request(entries))
        try:
            io.operate_write_op(op, obj)
        except rados.Error as exc:
            code = clsops.errno_of(exc)
            if code in (errno.ERANGE, errno.EOVERFLOW):
                raise _Changed from None
            raise clsops.error_of(code, f"repairing {obj}") from None


def _finish_split(site: Site, name: str, f: Finding) -> None:
    """A split left half done: finish it (as ``radostdb reshard`` would)."""
    from .. import cluster as clustermod
    from .. import reshard

    try:
        lay = reshard.finish(clustermod.Target(site.place, name, site.session))
    except (reshard.ReshardError, TdbError, OSError) as exc:
        f.repair = f"not repaired: {error_text(exc)}"
        return
    f.done(f"finished the split: the database has {lay.nshards} shards")


def _still_bad(f: Finding, homes: Router, value: bytes) -> bool:
    if f.kind == Kind.BAD_KEY:
        return True
    assert f.key is not None
    try:
        codec.decode_record(f.key, value)
    except codec.CodecError:
        return f.kind == Kind.CORRUPT_RECORD
    return f.kind == Kind.MISPLACED and homes.shard(f.key) != f.shard


def _repair_record(site: Site, name: str, homes: Router, f: Finding, drop_corrupt: bool) -> None:
    if not f.repairable or f.omap_key is None:
        return
    if f.kind in (Kind.BAD_KEY, Kind.CORRUPT_RECORD) and not drop_corrupt:
        f.repair = "not repaired: its data cannot be recovered; --drop-corrupt removes it"
        return
    moved = False
    try:
        for _ in range(REPAIR_ATTEMPTS):
            value, version = _read_entry(site.io, f.object, f.omap_key)
            if value is None or not _still_bad(f, homes, value):
                f.done("resolved since the check (the entry changed)")
                return
            try:
                if f.kind == Kind.BAD_KEY:
                    _write_if_unchanged(site.io, f.object, version, remove_omap_key=f.omap_key)
                    f.done("removed the entry")
                elif f.kind == Kind.CORRUPT_RECORD:
                    assert f.key is not None
                    _write_if_unchanged(
                        site.io, f.object, version, entries=[(kinds.Op.DISCARD, f.key, b"")]
                    )
                    f.done("removed the record")
                else:
                    moved = _move_home(site, name, homes, f, value) or moved
                    _write_if_unchanged(
                        site.io, f.object, version, entries=[(kinds.Op.DISCARD, f.key, b"")]
                    )
                    home = homes.shard(f.key)  # type: ignore[arg-type]
                    f.done(
                        f"moved to shard {home}"
                        if moved
                        else f"removed: shard {home} already holds a record for the key"
                    )
            except _Changed:
                continue
            return
        f.repair = "not repaired: the shard kept changing; run check again"
    except clsops.Busy:
        f.repair = "not repaired: a handle holds a lock on it; run check again later"
    except (TdbError, OSError) as exc:
        f.repair = f"not repaired: {error_text(exc)}"


def _move_home(site: Site, name: str, homes: Router, f: Finding, value: bytes) -> bool:
    """Insert a misplaced record into its own shard; False if that shard has the key."""
    assert f.key is not None
    data = codec.decode_record(f.key, value)[1]
    home = layout.shard_object(name, homes.shard(f.key))
    try:
        clsops.apply(site.io, home, _apply_request([(kinds.Op.INSERT, f.key, data)]))
    except TdbError as exc:
        if exc.code == ERR_EXISTS:
            return False
        raise
    return True
