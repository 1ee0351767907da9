"""``radostdb check``: verify a database and report what is wrong, object by
object; with ``repair``, hand the findings to repair.py.

check design:
- Everything is looked at as stored, so that damage the object class would
  refuse to read is seen and named: the header's fields, the class
  metadata (omap header) of the header, transaction-lock and shard
  objects, the journal's keys and records, pending transactions and their
  redo logs (the log must decode and be the pending transaction's; the
  records it would install are checked like the omap's), lock tables, and
  every record's key encoding, crc32c and shard (raw omap, scan.OmapPages,
  many shards at once).
- The journal is read raw before the class reads it: a key the class does
  not expect there is reported and never handed to the class.
- Each finding names its object (and shard, key or transaction) and says
  what is wrong; the repair adds what it did (Finding.repair) and which
  records it could not vouch for (Finding.at_risk).
- Records are placed by the layout (layout.py) and a split under way
  (router.py): a record is misplaced when the shard holding it is not
  where a client looks for it. A shard's recorded layout (its modulus and
  index) must be what the header's layout gives it, and a split left half
  done is reported (the repair finishes it). The new shard's records past
  the split's moved_upto are copies in progress: not counted, not
  checked.
- Without a usable header (no trusted shard count) records cannot be
  placed: check stops after the header and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import clsops, codec, layout, scan
from ..router import Router
from . import redo
from .findings import REDO_UNREADABLE, Finding, Kind, shard_index
from .inspect import (
    TXN_KEY,
    UNREADABLE,
    error_text,
    held_locks,
    journal_keys,
    object_seqs,
    object_states,
    undecodable,
    unfinished_commit,
)
from .serialize import named
from .site import Site, read_header


@dataclass
class CheckReport:
    """The outcome of check: what was looked at and what was found."""

    name: str
    nshards: int | None = field(metadata=named("shards"))
    records: int = 0
    shards_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    json_extra = ("clean",)

    @property
    def clean(self) -> bool:
        """True when nothing is wrong (any more): every finding was repaired."""
        return all(f.repaired for f in self.findings)


def check(
    site: Site,
    name: str,
    *,
    repair: bool = False,
    drop_corrupt: bool = False,
    progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Verify a database; with ``repair``, bring it back to a usable state.

    Corrupt records and entries are removed only with ``drop_corrupt`` as
    well (their data is lost); repair.py says what every repair does.
    """
    header = read_header(site, name)
    report = CheckReport(name, header.nshards)
    report.findings += [Finding(Kind.HEADER, header.object, p) for p in header.problems]
    report.findings += object_header_findings(site, name)
    homes = None
    lay = header.layout
    if lay is not None and not header.problems:
        homes = Router(lambda: site.io, name, lay)
        objs = layout.shard_objects(name, lay.nshards)
        report.findings += shard_header_findings(site, objs)
        if not any(f.object == objs[lay.next_split()[0]] for f in report.findings):
            homes.learn_split()
        objs = layout.shard_objects(name, homes.shard_count())
        report.findings += shard_header_findings(site, objs[lay.nshards :])
        report.findings += layout_findings(site, homes, objs, report.findings)
        report.findings += journal_findings(site, name, len(objs))
        report.findings += transaction_findings(site, name, objs, report.findings, homes)
        lock_objs = [header.object, layout.wait_object(header.object), *objs]
        report.findings += lock_findings(site, lock_objs)
        report.findings += record_findings(site, objs, homes, report, progress)
    if repair:
        from . import repair as repairs  # the repairs need the findings' module, not vice versa

        repairs.repair(site, name, homes, report.findings, drop_corrupt=drop_corrupt)
    return report


def layout_findings(
    site: Site, homes: Router, objs: list[str], found: list[Finding]
) -> list[Finding]:
    """A split left half done (or running now), and shards whose recorded
    layout is not the header's (their keys' modulus and their index)."""
    out = []
    split = homes.split
    if split is not None:
        obj = objs[split.p]
        what = (
            f"shard {split.p} has split into shard {split.q}, but the header still has "
            f"{homes.layout.nshards} shards"
            if split.done
            else f"shard {split.p} is splitting into shard {split.q} (its keys moved up to "
            f"omap key {split.moved_upto!r}): a split left half done, or running now"
        )
        out.append(Finding(Kind.LAYOUT, obj, what, shard=split.p, repairable=True))
    skip = {f.object for f in found if f.kind in (Kind.SHARD_HEADER, Kind.OBJECT_HEADER)}
    states = object_states(site.io, [o for o in objs if o not in skip])
    for index, obj in enumerate(objs):
        st = states.get(obj)
        if st is None or not st.header.modulus:
            continue
        want = homes.shard_modulus(index)
        if st.header.modulus != want or st.header.index != index:
            out.append(
                Finding(
                    Kind.LAYOUT,
                    obj,
                    f"records the keys of shard {st.header.index} modulo {st.header.modulus}; "
                    f"the layout gives it those modulo {want}",
                    shard=index,
                )
            )
    return out


def object_header_findings(site: Site, name: str) -> list[Finding]:
    """The header and transaction-lock objects whose class metadata does not decode."""
    hobj = layout.header_object(name)
    holds = {hobj: "the database sequence number", layout.wait_object(hobj): "the transaction lock"}
    found = []
    for obj, seq in object_seqs(site.io, list(holds)).items():
        if isinstance(seq, Exception):
            what = f"omap header ({holds[obj]}) does not decode ({error_text(seq)})"
            found.append(Finding(Kind.OBJECT_HEADER, obj, what, repairable=True))
    return found


def shard_header_findings(site: Site, objs: list[str]) -> list[Finding]:
    """A finding per shard whose class metadata does not decode, saying
    whether a transaction's redo log is there (and whose)."""
    found = []
    for obj, seq in object_seqs(site.io, objs).items():
        if not isinstance(seq, Exception):
            continue
        what = (
            "omap header (its sequence number, locks and transaction marks) does not "
            f"decode ({error_text(seq)})"
        )
        txid = None
        try:
            log = redo.read(site.io, obj)
        except redo.RedoError as exc:
            what += f"; {REDO_UNREADABLE} ({exc})"
        else:
            if log is not None:
                txid = log.txid
                what += (
                    f"; it holds radostdb 0.2's undo log of transaction {log.txid:x} "
                    f"({len(log.entries)} record(s) written)"
                    if log.undo
                    else f"; it holds the redo log of transaction {log.txid:x} "
                    f"({len(log.entries)} record(s) written)"
                )
        found.append(
            Finding(
                Kind.SHARD_HEADER, obj, what, shard=shard_index(obj), txid=txid, repairable=True
            )
        )
    return found


def journal_findings(site: Site, name: str, nshards: int) -> list[Finding]:
    """Journal entries that do not decode, keys the class does not expect
    there, and records naming shards the database does not have."""
    obj = layout.journal_object(name)
    keys, strays = journal_keys(site, obj)
    found = [
        Finding(
            Kind.JOURNAL,
            obj,
            "a key that is neither a transaction record nor a fenced owner",
            omap_key=ek,
            repairable=True,
        )
        for ek in strays
    ]
    if strays:
        return found  # the class must not read the journal before they are gone
    for ek in keys:
        m = TXN_KEY.match(ek)
        if m is None:
            continue  # a fenced owner; a 0.1 journal is reported as a transaction
        txid = int(m.group(1), 16)
        problem = _record_problem(site, obj, txid, nshards)
        if problem is not None:
            found.append(
                Finding(Kind.JOURNAL, obj, problem, omap_key=ek, txid=txid, repairable=True)
            )
    return found


def _record_problem(site: Site, obj: str, txid: int, nshards: int) -> str | None:
    try:
        rec = clsops.journal(site.io, obj, txid).records.get(txid)
    except UNREADABLE as exc:
        if not undecodable(exc):
            raise
        return f"the record of transaction {txid:x} does not decode ({error_text(exc)})"
    if rec is None:
        return None  # forgotten meanwhile
    if rec.txid != txid:
        return f"the record under transaction {txid:x}'s key is of transaction {rec.txid:x}"
    bad = sorted({i for i in rec.participants if i >= nshards})
    if bad:
        return (
            f"the record of transaction {txid:x} names shard(s) {', '.join(map(str, bad))}, "
            f"which the database does not have (it has {nshards})"
        )
    return None


def transaction_findings(
    site: Site, name: str, objs: list[str], found: list[Finding], homes: Router
) -> list[Finding]:
    """A finding per object that shows an unfinished commit (with the
    transaction pending there), and the record findings of the redo logs of
    pending shards. A shard pending a transaction that names shards the
    database does not have, or whose redo log does not decode, is missing or
    is another transaction's, is damage (``damaged``: the repair decides the
    transaction from the evidence). Objects already reported as undecodable
    are not looked at again."""
    n = len(objs)
    skip = {f.object for f in found if f.kind in (Kind.SHARD_HEADER, Kind.OBJECT_HEADER)}
    readable = [o for o in objs if o not in skip]
    states = object_states(site.io, readable)
    out = []
    for obj in unfinished_commit(site, name, readable):
        st = states.get(obj)
        txid = st.header.pending if st is not None and st.header.pending else None
        bad = sorted({i for i in st.header.participants if i >= n}) if st is not None else []
        problem = None
        if txid is not None and not bad:
            log, problem = redo.pending_log(site.io, obj, txid)
            if log is not None and not log.undo:
                out += redo_record_findings(obj, homes, log)
        if bad:
            message = (
                f"pending transaction {txid:x} names shard(s) {', '.join(map(str, bad))}, "
                f"which the database does not have (it has {n})"
            )
        elif problem is not None:
            message = f"pending transaction {txid:x}: {problem}, so the class cannot settle it"
        elif obj == layout.journal_object(name):
            message = "journal records of multi-shard transactions not yet settled"
        elif txid is not None:
            message = f"pending transaction {txid:x}: a multi-shard transaction not yet decided"
        else:
            message = "stale owners (expired transaction holders) not yet cleared"
        out.append(
            Finding(
                Kind.TRANSACTION,
                obj,
                message,
                shard=shard_index(obj),
                txid=txid,
                repairable=True,
                damaged=bool(bad) or problem is not None,
            )
        )
    return out


def redo_record_findings(obj: str, homes: Router, log: redo.RedoLog) -> list[Finding]:
    """The records a pending transaction's redo log would install, checked as
    the omap's are: settling it puts them there, where the record repairs
    then find them (an aborted transaction takes them away)."""
    shard = shard_index(obj)
    assert shard is not None
    written = [(ek, rec) for ek, rec in log.entries if rec is not None]
    found = page_findings(obj, shard, homes, written)
    for f in found:
        f.message += f" (in the redo log of pending transaction {log.txid:x})"
    return found


def lock_findings(site: Site, objs: list[str]) -> list[Finding]:
    """A finding per expired lock entry (lapsed watches are none)."""
    return [
        Finding(
            Kind.EXPIRED_LOCK,
            lk.object,
            lk.describe(),
            key=lk.key if lk.kind == "record" else None,
            shard=shard_index(lk.object),
            repairable=True,
        )
        for lk in held_locks(site, objs)
        if lk.expired and not lk.watch  # a lapsed watch blocks nothing: not a problem
    ]


def record_findings(
    site: Site,
    objs: list[str],
    homes: Router,
    report: CheckReport,
    progress: Callable[[int], None] | None,
) -> list[Finding]:
    """Every record's key encoding, crc32c and shard, from the raw omap."""
    n = len(objs)
    found: list[Finding] = []
    split = homes.split
    for shard, page in scan.scan(n, scan.omap_pages(site.io, objs), window=scan.SCAN_WINDOW):
        if split is not None and shard == split.q and not split.done:
            # past moved_upto: copies in progress (the split moves them on)
            page = [(ek, v) for ek, v in page if split.moved_upto and ek <= split.moved_upto]
        found += page_findings(objs[shard], shard, homes, page)
        report.records += len(page)
        if progress is not None:
            progress(len(page))
    report.shards_checked += n
    return found


def page_findings(
    obj: str, shard: int, homes: Router, page: list[tuple[str, Any]]
) -> list[Finding]:
    """The findings of one raw omap page of shard ``shard``."""
    found = []
    for ek, rec in page:
        try:
            key = codec.decode_key(ek)
        except codec.CodecError:
            found.append(
                Finding(
                    Kind.BAD_KEY,
                    obj,
                    "not a radostdb key encoding",
                    shard=shard,
                    omap_key=ek,
                    repairable=True,
                )
            )
            continue
        try:
            codec.decode_record(key, rec)
        except codec.CodecError as exc:
            what = (
                "crc32c does not match key and data"
                if isinstance(exc, codec.CorruptRecord)
                else "malformed record"
            )
            found.append(
                Finding(
                    Kind.CORRUPT_RECORD,
                    obj,
                    what,
                    key=key,
                    shard=shard,
                    omap_key=ek,
                    repairable=True,
                )
            )
            continue
        home = homes.shard(key)
        if home != shard:
            found.append(
                Finding(
                    Kind.MISPLACED,
                    obj,
                    f"belongs in shard {home}",
                    key=key,
                    shard=shard,
                    omap_key=ek,
                    repairable=True,
                )
            )
    return found
