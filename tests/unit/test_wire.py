"""The class wire format from both sides, without a cluster.

tests/vectors/wire.json holds a golden byte vector for every request, reply
and stored struct of the radostdb object class. Here:
- Python (radostdb/clsops.py): every encoder produces exactly the request
  bytes, every decoder gives back the reply and stored fields, and the
  framing rules hold (a compat newer than known is refused, unknown trailing
  body bytes are ignored, short structs fail with WireError but a body that
  ends where a later version's fields begin: a v1 ListReply's, a v3
  header's, which decode with those fields at their defaults);
- C++ (cls/radostdb/ops.h, locks.h): a program generated from the same
  vectors is compiled with g++ against the class headers and run: every
  request parses with ``parse_request<T>`` into the expected fields (and
  every truncation, newer compat and byte after the frame is refused, and
  every short body but one that ends where optional trailing fields begin:
  an older client's request, which parses with them at their defaults;
  OPTIONAL), every reply encoded from the fields is exactly the bytes (an
  older version's fields: the current version with the added fields at
  their defaults), the shard header encodes (compat 3 while it holds
  nothing a v3 reader would miss) and decodes (``encode_shard_hdr`` /
  ``decode_shard_hdr``) under the same rules, and so does the redo log
  (``RedoLog``: encoded in one buffer, decoded whole with the records left
  in the buffer read, and its head alone);
- the constants (enums, flags, versions) compiled from types.h and ops.h
  equal clsops' and kinds', and no name is missing on either side;
- no radostdb module but clsops calls librados ``execute``/``aio_execute``.

The class's own writer and reader of the redo log are also checked against
a real OSD in tests/cluster/test_fuzz.py; radostdb/admin/redo.py reads it
through clsops.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from radostdb import clsops, codec, kinds
from radostdb.admin import redo
from radostdb.clsops import (
    GetResult,
    Journal,
    ListResult,
    LockEntry,
    ObjectState,
    PendingInfo,
    ReadStatus,
    RedoLog,
    ShardHeader,
    ShardLayout,
    SplitPage,
    TxnRecord,
    WireError,
)
from radostdb.testing import env_flag

REPO = Path(__file__).resolve().parents[2]
WIRE = json.loads((REPO / "tests" / "vectors" / "wire.json").read_text())
REQUESTS: list[dict[str, Any]] = WIRE["requests"]
REPLIES: list[dict[str, Any]] = WIRE["replies"]
STORED: list[dict[str, Any]] = WIRE["stored"]
CLS_DIR = REPO / "cls" / "radostdb"
HEAD = 6  # u8 version, u8 compat, u32 length

H = bytes.fromhex


def ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def vec_named(name: str) -> dict[str, Any]:
    return next(v for v in REQUESTS + REPLIES + STORED if v["name"] == name)


def frame_parts(raw: bytes) -> tuple[int, int, bytes]:
    """(version, compat, body) of a framed struct that fills ``raw``."""
    length = int.from_bytes(raw[2:6], "little")
    assert len(raw) == HEAD + length, "a vector is exactly one framed struct"
    return raw[0], raw[1], raw[HEAD:]


def reframe(version: int, compat: int, body: bytes) -> bytes:
    return bytes((version, compat)) + len(body).to_bytes(4, "little") + body


def okey(data: str) -> str:
    """An encoded (omap) key given in hex: ASCII (codec.encode_key)."""
    return H(data).decode("ascii")


# -- optional trailing fields --------------------------------------------------------
# The fields a struct's body may end before, in groups, in order: a request
# from an older client, a reply from an older class or a header an older
# class wrote stops before a group (and every group after it). A vector
# carries a group's fields or leaves them out (then they are the defaults);
# a body that ends exactly where a group begins is that older form, and
# every other shorter body is refused. Each field with its wire type: u32,
# u64, bytes, or a struct (a tuple of fields).
U8, U32, U64, BYTES, TICKETS = "u8", "u32", "u64", "bytes", "tickets"
Wire = Any  # U8 | U32 | U64 | BYTES | TICKETS | tuple[tuple[str, Wire], ...]
LAYOUT: Wire = (
    ("modulus", U64), ("index", U32), ("split_to", U32), ("split_modulus", U64),
    ("moved_upto", BYTES),
)  # fmt: skip
HEADER_V4: Wire = (("epoch", U64), *LAYOUT, ("split_owner", BYTES))
# version 5: the last ticket given out and every entry's (ticket, inbox) (in
# the vectors a list of pairs beside the entries; the structs keep each pair
# in its entry)
HEADER_V5: Wire = (("ticket_seq", U32), ("tickets", TICKETS))
OPTIONAL: dict[str, list[Wire]] = {
    "ApplyReq": [(("epoch", U64), ("lease_ms", U32))],
    "ClearReq": [(("modulus", U64),)],
    "ListReq": [(("until", BYTES),), (("flags", U8),)],
    "LockReq": [(("epoch", U64),), (("modulus", U64),), (("inbox", U64),)],
    "ListReply": [(("layout", LAYOUT),)],  # version 2
    "ShardHeader": [HEADER_V4, HEADER_V5],  # versions 4, 5
    "LegacyShardHeader": [HEADER_V4, HEADER_V5],  # (unframed: only the defaults)
}
NO_SHARD_FIELDS = {"index", "split_to"}  # their default is NO_SHARD (0xffffffff)


def default(name: str, wire: Wire, fields: dict[str, Any] | None = None) -> Any:
    """A left-out field's value (``fields``: the struct's others; a header's
    tickets left out are one 0 per entry)."""
    if isinstance(wire, tuple):
        return {n: default(n, w) for n, w in wire}
    if wire == BYTES:
        return ""
    if wire == TICKETS:
        return [[0, 0] for _ in (fields or {}).get("entries", [])]
    return clsops.NO_SHARD if name in NO_SHARD_FIELDS else 0


def encoded(wire: Wire, value: Any) -> bytes:
    """A field's bytes (the JSON value of a vector's field)."""
    if isinstance(wire, tuple):
        return b"".join(encoded(w, value[n]) for n, w in wire)
    if wire == BYTES:
        return len(H(value)).to_bytes(4, "little") + H(value)
    if wire == TICKETS:
        return len(value).to_bytes(4, "little") + b"".join(
            int(t).to_bytes(4, "little") + int(i).to_bytes(8, "little") for t, i in value
        )
    return int(value).to_bytes({U8: 1, U32: 4}.get(wire, 8), "little")


def groups_carried(vec: dict[str, Any]) -> int:
    """How many of its struct's optional groups a vector carries: the first
    ones, each whole."""
    groups = OPTIONAL.get(vec["struct"], [])
    carried = [[n in vec["fields"] for n, _ in g] for g in groups]
    k = sum(all(c) for c in carried)
    assert carried == [[True] * len(g) for g in groups[:k]] + [
        [False] * len(g) for g in groups[k:]
    ], f"{vec['name']}: optional fields come in whole groups, the first ones"
    return k


def with_defaults(vec: dict[str, Any], carried: int | None = None) -> dict[str, Any]:
    """The vector's fields; the optional groups from the ``carried``-th on
    (default: those the vector leaves out) at their defaults."""
    groups = OPTIONAL.get(vec["struct"], [])
    fields = dict(vec["fields"])
    for g in groups[groups_carried(vec) if carried is None else carried :]:
        fields.update((n, default(n, w, vec["fields"])) for n, w in g)
    return fields


def older_forms(vec: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Body length -> fields of each shorter form of a framed vector: its
    body up to where one of the optional groups it carries begins."""
    groups = OPTIONAL.get(vec["struct"], [])
    end = len(frame_parts(H(vec["hex"]))[2])
    forms = {}
    for j in reversed(range(groups_carried(vec))):
        end -= sum(len(encoded(w, vec["fields"][n])) for n, w in groups[j])
        forms[end] = with_defaults(vec, j)
    return forms


def left_out(vec: dict[str, Any]) -> bytes:
    """The bytes of the optional groups a vector leaves out, at their
    defaults: what extends its body to the struct's current fields."""
    groups = OPTIONAL.get(vec["struct"], [])
    left = [(n, w) for g in groups[groups_carried(vec) :] for n, w in g]
    return b"".join(encoded(w, default(n, w, vec["fields"])) for n, w in left)


# -- Python: request encoders ------------------------------------------------------
ENCODERS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "ApplyReq": lambda f: clsops.apply_request(
        H(f["owner"]),
        f["wflags"],
        [(e["op"], H(e["key"]), H(e["data"])) for e in f["entries"]],
        txid=f["txid"],
        settle=f["settle"],
        participants=f["participants"],
        epoch=f.get("epoch", 0),
        lease_ms=f.get("lease_ms", 0),
    ),
    "ClearReq": lambda f: clsops.clear_request(
        H(f["owner"]), f["wflags"], f["settle"], modulus=f.get("modulus", 0)
    ),
    "TxidReq": lambda f: clsops.txid_request(f["txid"]),
    "EmptyReq": lambda f: clsops.EMPTY_REQUEST,
    "GetReq": lambda f: clsops.get_request(H(f["key"]), f["maxlen"], f["accept"]),
    "ListReq": lambda f: clsops.list_request(
        f["max"],
        f["maxbytes"],
        okey(f["start"]),
        f["accept"],
        until=okey(f.get("until", "")),
        flags=f.get("flags", 0),
    ),
    "LockReq": lambda f: clsops.lock_request(
        H(f["owner"]),
        f["lease_ms"],
        f["kind"],
        f["mode"],
        H(f["key"]),
        f["flags"],
        epoch=f.get("epoch", 0),
        modulus=f.get("modulus", 0),
        inbox=f.get("inbox", 0),
    ),
    "UnlockReq": lambda f: clsops.unlock_request(H(f["owner"]), f["kind"], f["mode"], H(f["key"])),
    "ReleaseReq": lambda f: clsops.release_request(
        H(f["owner"]), f["settle"], f["flags"], f["kind"]
    ),
    "RenewReq": lambda f: clsops.renew_request(H(f["owner"])),
    "PruneReq": lambda f: clsops.prune_request(f["flags"], [H(o) for o in f["owners"]]),
    "StageReq": lambda f: clsops.stage_request(
        f["txid"], H(f["owner"]), f["participants"], f["complete"], f["forget"]
    ),
    "TxnAbortReq": lambda f: clsops.txn_abort_request(f["txid"], H(f["owner"]), f["participants"]),
    "TxnMarkReq": lambda f: clsops.txn_mark_request(f["complete"], f["forget"]),
    "OwnersReq": lambda f: clsops.owners_request([H(o) for o in f["owners"]]),
    "JournalReq": lambda f: clsops.journal_request(f["txid"]),
    "SplitBeginReq": lambda f: clsops.split_begin_request(
        H(f["owner"]), f["wflags"], f["index"], f["modulus"], f["child"], f["child_modulus"]
    ),
    "SplitPageReq": lambda f: clsops.split_page_request(okey(f["after"]), f["max"]),
    "SplitAbsorbReq": lambda f: clsops.split_absorb_request(
        H(f["owner"]),
        bool(f["takeover"]),
        f["index"],
        f["modulus"],
        okey(f["after"]),
        okey(f["upto"]),
        bool(f["end"]),
        [(okey(m["okey"]), H(m["record"])) for m in f["records"]],
    ),
    "SplitAdvanceReq": lambda f: clsops.split_advance_request(
        H(f["owner"]),
        f["wflags"],
        okey(f["after"]),
        okey(f["upto"]),
        bool(f["end"]),
        [(okey(m["okey"]), H(m["head"])) for m in f["heads"]],
    ),
    "CountReq": lambda f: clsops.count_request(f["limit"]),
    "EpochReq": lambda f: clsops.epoch_request(f["epoch"]),
}


def method_requests() -> dict[str, str]:
    """Method -> the request struct its handler parses, as it opens
    (open_object, cls/radostdb/server.h; version parses none: any client can
    ask it)."""
    found = re.findall(
        r'(\w+Req) req;\s*(?:Shard s;\s*)?int r = open_object\(hctx, "(\w+)", in, &req,',
        cls_methods_source(),
    )
    return {method: struct for struct, method in found}


@pytest.mark.parametrize("vec", REQUESTS, ids=ids(REQUESTS))
def test_python_encodes_request(vec: dict[str, Any]) -> None:
    assert ENCODERS[vec["struct"]](vec["fields"]).hex() == vec["hex"]


def test_every_method_and_request_struct_has_a_vector() -> None:
    """Each vector names the methods that parse it, as the class's handlers do
    (registered in server.cc)."""
    registered = re.findall(r'\{"(\w+)", (?:RD|WR), \w+, nullptr\}', cls_source("server.cc"))
    parsed = method_requests()
    assert sorted(registered) == sorted(["version", *parsed])
    structs = set(re.findall(r"^struct (\w+Req) \{", cls_source("ops.h"), re.M))
    assert structs == set(ENCODERS) == {v["struct"] for v in REQUESTS}
    named = {m: v["struct"] for v in REQUESTS for m in v["methods"]}
    assert named == parsed


# -- Python: reply and stored decoders ---------------------------------------------
def pending_of(f: dict[str, Any] | None) -> PendingInfo | None:
    return None if f is None else PendingInfo(f["txid"], H(f["owner"]), f["participants"])


def header_of(f: dict[str, Any]) -> ShardHeader:
    return ShardHeader(
        f["seq"], f["applied"], f["pending"], f["settled"], f["aborted"], H(f["powner"]),
        list(f["participants"]), [H(o) for o in f["stale"]],
        [LockEntry(e["kind"], e["mode"], e["state"], H(e["owner"]), e["lease_ms"],
                   e["expiry_ms"], H(e["key"]), e["flags"], t, i)
         for e, (t, i) in zip(f["entries"], f["tickets"], strict=True)],
        f["version"], f["epoch"], f["modulus"], f["index"], f["split_to"], f["split_modulus"],
        okey(f["moved_upto"]), H(f["split_owner"]), f["ticket_seq"],
    )  # fmt: skip


def layout_of(f: dict[str, Any]) -> ShardLayout:
    return ShardLayout(
        f["modulus"], f["index"], f["split_to"], f["split_modulus"], okey(f["moved_upto"])
    )


def txn_record_of(f: dict[str, Any]) -> TxnRecord:
    return TxnRecord(f["txid"], f["state"], H(f["owner"]), f["time_ms"], list(f["participants"]))


def stored_fields(raw_hex: str, struct: str) -> dict[str, Any]:
    """The fields of the stored vector of ``struct`` whose bytes are ``raw_hex``."""
    return next(with_defaults(v) for v in STORED if v["struct"] == struct and v["hex"] == raw_hex)


def expected_state(f: dict[str, Any]) -> ObjectState:
    raw = H(f["header"])
    header = header_of(stored_fields(f["header"], "ShardHeader")) if raw else ShardHeader()
    return ObjectState(f["now_ms"], f["version"], header, raw)


def expected_journal(f: dict[str, Any]) -> Journal:
    j = Journal(fenced=[H(o) for o in f["fenced"]])
    for r in f["records"]:
        if not r:
            j.legacy = True
            continue
        rec = txn_record_of(stored_fields(r, "TxnRecord"))
        j.records[rec.txid] = rec
    return j


def redo_log_of(f: dict[str, Any]) -> RedoLog:
    """The redo log a vector's fields describe."""
    return RedoLog(
        f["txid"],
        f["prev_applied"],
        [(H(e["omap_key"]).decode(), bool(e["present"]), H(e["new"])) for e in f["entries"]],
    )


@dataclass
class Decoding:
    """How clsops decodes a struct, and the value the vector's fields describe."""

    decode: Callable[[bytes], Any]
    expected: Callable[[dict[str, Any]], Any]
    known: int = 1  # the struct version clsops knows


DECODINGS: dict[str, Decoding] = {
    "GetReply": Decoding(
        clsops.decode_get,
        lambda f: GetResult(
            f["status"], H(f.get("record", "")), f.get("needed", 0), pending_of(f.get("pending"))
        ),
    ),
    "ListReply": Decoding(
        clsops.decode_list,
        lambda f: ListResult(
            bool(f.get("more", 0)),
            H(f.get("page", "")),
            pending_of(f.get("pending")),
            layout_of(f["layout"]),
        ),
        2,
    ),
    "SeqReply": Decoding(clsops.decode_seq, lambda f: f["seq"]),
    "StateReply": Decoding(clsops.decode_state, expected_state),
    "WatchersReply": Decoding(clsops.decode_watchers, lambda f: [tuple(w) for w in f["watchers"]]),
    "JournalReply": Decoding(clsops.decode_journal, expected_journal),
    "TxnRecord": Decoding(clsops._record, txn_record_of),
    "ShardHeader": Decoding(clsops.decode_header, header_of, clsops.SHARD_HDR_VERSION),
    "LegacyShardHeader": Decoding(clsops.decode_header, header_of),
    "RedoLog": Decoding(clsops.decode_redo_log, redo_log_of, clsops.REDO_VERSION),
    "SplitPageReply": Decoding(
        clsops.decode_split_page,
        lambda f: SplitPage(
            okey(f["upto"]),
            bool(f["end"]),
            [(okey(m["okey"]), H(m["record"])) for m in f["records"]],
        ),
    ),
    "CountReply": Decoding(clsops.decode_count, lambda f: f["count"]),
}

DECODED = REPLIES + STORED
FRAMED = [v for v in DECODED if v["struct"] != "LegacyShardHeader"]


def older_version(vec: dict[str, Any]) -> bool:
    """Is the vector a framed struct of a version before the current one (the
    one clsops knows; here ListReply v1 and the v3 headers)?"""
    return vec in FRAMED and H(vec["hex"])[0] < DECODINGS[vec["struct"]].known


def current_bytes(vec: dict[str, Any]) -> bytes:
    """What the class encodes of the vector's fields now: the bytes, or for
    an older version the current version with the same compat and the added
    fields at their defaults."""
    raw = H(vec["hex"])
    if not older_version(vec):
        return raw
    _, compat, body = frame_parts(raw)
    return reframe(DECODINGS[vec["struct"]].known, compat, body + left_out(vec))


def later_fields(vec: dict[str, Any], version: int) -> dict[str, Any]:
    """The vector's fields as decoded from its struct framed as ``version``
    (a header keeps the version it was framed as)."""
    fields = with_defaults(vec)
    return {**fields, "version": version} if vec["struct"] == "ShardHeader" else fields


@pytest.mark.parametrize("vec", DECODED, ids=ids(DECODED))
def test_python_decodes(vec: dict[str, Any]) -> None:
    d = DECODINGS[vec["struct"]]
    assert d.decode(H(vec["hex"])) == d.expected(with_defaults(vec))


def test_vectors_of_the_current_versions_carry_every_field() -> None:
    """A struct of the current version has every field (the optional groups
    are for requests and older versions); an older one none of the added."""
    for vec in FRAMED:
        carried = groups_carried(vec)
        groups = len(OPTIONAL.get(vec["struct"], []))
        # each version adds one group: an older one carries those up to its own
        assert carried == groups - (DECODINGS[vec["struct"]].known - H(vec["hex"])[0]), vec["name"]


def test_reply_statuses_covered() -> None:
    get = {v["fields"]["status"] for v in REPLIES if v["struct"] == "GetReply"}
    assert get == set(ReadStatus)
    for version in (1, 2):
        lst = [v for v in REPLIES if v["struct"] == "ListReply" and H(v["hex"])[0] == version]
        assert {v["fields"]["status"] for v in lst} == {ReadStatus.FOUND, ReadStatus.PENDING}
    layouts = [layout_of(with_defaults(v)["layout"]) for v in REPLIES if v["struct"] == "ListReply"]
    assert any(lo.splitting for lo in layouts) and any(lo.modulus == 0 for lo in layouts)
    assert any(lo.modulus and not lo.splitting for lo in layouts)
    headers = [frame_parts(H(v["hex"]))[:2] for v in STORED if v["struct"] == "ShardHeader"]
    assert {(3, 3), (4, 3), (4, 4), (5, 3), (5, 4)} <= set(headers)
    assert {v["struct"] for v in DECODED} == set(DECODINGS)


@pytest.mark.parametrize("vec", FRAMED, ids=ids(FRAMED))
def test_python_refuses_newer_compat(vec: dict[str, Any]) -> None:
    d = DECODINGS[vec["struct"]]
    _, _, body = frame_parts(H(vec["hex"]))
    with pytest.raises(WireError, match="compat"):
        d.decode(reframe(d.known + 1, d.known + 1, body))


@pytest.mark.parametrize("vec", FRAMED, ids=ids(FRAMED))
def test_python_ignores_unknown_trailing_body_bytes(vec: dict[str, Any]) -> None:
    """A later struct version with the same compat and extra fields decodes
    to the fields this version knows (an older version's vector first gets
    the fields added since, at their defaults)."""
    d = DECODINGS[vec["struct"]]
    _, compat, body = frame_parts(H(vec["hex"]))
    later = reframe(d.known + 1, compat, body + left_out(vec) + b"\xa5" * 13)
    assert d.decode(later) == d.expected(later_fields(vec, d.known + 1))


@pytest.mark.parametrize("vec", DECODED, ids=ids(DECODED))
def test_python_refuses_short_structs(vec: dict[str, Any]) -> None:
    """Every proper prefix of the bytes, and (framed structs) every proper
    prefix of the body under a matching length, fails with WireError (the
    empty string aside: a missing header or a missing object's seq); but a
    body that ends where fields a later version added begin (the same
    struct of an older version: a v1 ListReply's, a v3 header's) decodes,
    with those fields at their defaults."""
    d = DECODINGS[vec["struct"]]
    raw = H(vec["hex"])
    for n in range(1, len(raw)):
        with pytest.raises(WireError):
            d.decode(raw[:n])
    if vec not in FRAMED:
        return
    version, compat, body = frame_parts(raw)
    older = older_forms(vec)
    assert all(n < len(body) for n in older)
    for n in range(len(body)):
        short = reframe(version, compat, body[:n])
        if n in older:
            assert d.decode(short) == d.expected(older[n]), n
        else:
            with pytest.raises(WireError):
                d.decode(short)


def test_older_forms_are_where_the_struct_grew() -> None:
    """The optional groups end where the fields of the vectors without them
    end: ListReply v2 and the v4 header carry one group each, LockReq's
    two groups may stop after the first."""
    counts = {v["name"]: len(older_forms(v)) for v in REQUESTS + FRAMED}
    assert counts["lock-shard-modulus"] == 2 and counts["lock-record-queue"] == 0
    assert counts["list-v2-found-splitting"] == 1 and counts["list-found"] == 0
    assert counts["header-v4-splitting"] == 1 and counts["header-v3-locks"] == 0
    body = frame_parts(H(vec_named("header-v4-epoch")["hex"]))[2]
    assert len(body) - min(older_forms(vec_named("header-v4-epoch"))) == 40


def test_header_compat_is_3_while_a_v3_reader_misses_only_the_epoch() -> None:
    """types.h: a v4 header is written with compat 3 unless it records a
    modulus, a split or its owner, or holds a USER entry (the vectors follow
    the rule; the C++ check encodes them byte for byte)."""
    for vec in STORED:
        version, compat, _ = frame_parts(H(vec["hex"])) if vec in FRAMED else (0, 0, b"")
        if vec["struct"] != "ShardHeader" or version < 4:
            continue
        h = header_of(with_defaults(vec))
        v4 = h.modulus or h.splitting or h.split_owner
        v4 = v4 or any(e.kind in (kinds.Kind.USER, kinds.Kind.WATCH) for e in h.entries)
        assert compat == (4 if v4 else 3), vec["name"]


def test_python_header_refuses_bytes_after_the_frame() -> None:
    for vec in STORED:
        if vec["struct"] == "ShardHeader":
            with pytest.raises(WireError):
                clsops.decode_header(H(vec["hex"]) + b"\x00")


REDO_LOGS = [v for v in STORED if v["struct"] == "RedoLog"]


@pytest.mark.parametrize("vec", REDO_LOGS, ids=ids(REDO_LOGS))
def test_an_undo_log_of_radostdb_0_2_decodes_as_one(vec: dict[str, Any]) -> None:
    """0.2's undo log is the redo log's struct framed version 1, compat 1
    (old records): it decodes with ``undo`` set, for the repair to finish a
    transaction pending across an upgrade. Version 1 with another compat is
    neither, and refused."""
    raw = H(vec["hex"])
    for decode in (clsops.decode_redo_log, redo.decode):
        undo = decode(b"\x01\x01" + raw[2:])
        assert undo.undo and not decode(raw).undo
        assert undo.entries == decode(raw).entries
        for head in (b"\x01\x02", b"\x00\x00", b"\x01\x00"):
            with pytest.raises(WireError):
                decode(head + raw[2:])


@pytest.mark.parametrize("vec", REDO_LOGS, ids=ids(REDO_LOGS))
def test_admin_redo_reads_through_clsops(vec: dict[str, Any]) -> None:
    """radostdb.admin.redo's view of a redo log (what check and repair use):
    (omap key, new record or None) per entry, from clsops' decoding; one
    that does not decode is a RedoError."""
    raw, f = H(vec["hex"]), vec["fields"]
    log = redo.decode(raw)
    assert (log.txid, log.prev_applied, log.undo) == (f["txid"], f["prev_applied"], False)
    assert log.entries == [
        (H(e["omap_key"]).decode(), H(e["new"]) if e["present"] else None) for e in f["entries"]
    ]
    written = [H(e["omap_key"]).decode() for e in f["entries"]]
    assert log.keys == sorted(codec.decode_key(k) for k in written)
    assert redo.VERSION == clsops.REDO_VERSION
    for short in (raw[:5], raw[:-1]):
        if short:
            with pytest.raises(redo.RedoError):
                redo.decode(short)


# -- C++: the same vectors through the class headers ----------------------------------
def cls_source(name: str) -> str:
    return (CLS_DIR / name).read_text()


def cls_methods_source() -> str:
    """Every translation unit of the class (the methods are spread by concern)."""
    return "\n".join(p.read_text() for p in sorted(CLS_DIR.glob("*.cc")))


def lit(n: int) -> str:
    assert 0 <= n < 2**64, n
    return f"{n}ull"


def cstr(data: str) -> str:
    return f'unhex("{data}")'


def cxx_compare(expr: str, value: Any, what: str) -> list[str]:
    """C++ checks that ``expr`` (a parsed or decoded struct member) equals the
    JSON ``value``: ints, hex byte strings (std::string), lists of those, and
    lists of objects."""
    if isinstance(value, int):
        return [f'check((unsigned long long)({expr}) == {lit(int(value))}, "{what}");']
    if isinstance(value, str):
        return [f'check(std::string({expr}) == {cstr(value)}, "{what}");']
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += cxx_compare(f"{expr}.{k}", v, f"{what}.{k}")
        return out
    assert isinstance(value, list)
    out = [f'check({expr}.size() == {len(value)}, "{what} count");']
    if value and all(isinstance(x, int) for x in value):
        out.append(f'check(same_ints({expr}, {{{", ".join(lit(x) for x in value)}}}), "{what}");')
        return out
    body: list[str] = []
    for i, x in enumerate(value):
        body += cxx_compare(f"{expr}[{i}]", x, f"{what}[{i}]")
    if body:
        out.append(f"if ({expr}.size() == {len(value)}) {{")
        out += ["  " + line for line in body]
        out.append("}")
    return out


def cxx_assign(expr: str, value: Any) -> list[str]:
    """C++ statements that set ``expr`` (a reply or header member) to ``value``."""
    if isinstance(value, int):
        return [f"{expr} = {lit(value)};"]
    if isinstance(value, str):
        return [f"{expr} = {cstr(value)};"]
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += cxx_assign(f"{expr}.{k}", v)
        return out
    assert isinstance(value, list)
    if all(isinstance(x, int) for x in value):
        return [f"{expr} = {{{', '.join(lit(x) for x in value)}}};"]
    if all(isinstance(x, str) for x in value):
        return [f"{expr} = {{{', '.join(cstr(x) for x in value)}}};"]
    if all(isinstance(x, list) for x in value):  # pairs
        pairs = ", ".join(f"{{{lit(a)}, {lit(b)}}}" for a, b in value)
        return [f"{expr} = {{{pairs}}};"]
    out = []
    for x in value:  # objects: elements of a vector of the member's element type
        out.append("{")
        out.append(f"  std::remove_reference<decltype({expr})>::type::value_type e;")
        out += ["  " + line for line in cxx_assign("e", x)]
        out.append(f"  {expr}.push_back(e);")
        out.append("}")
    return out


# Request members whose elements are not structs of the JSON's names: the C++
# expression of each part of element ``{0}``. ApplyReq entries keep key and
# data as pointer + length (compared as the string they span), a moving
# record's record is a bufferlist, split_advance's heads are pairs.
CXX_PARTS: dict[tuple[str, str], dict[str, str]] = {
    ("ApplyReq", "entries"): {
        "op": "{0}.op", "key": "std::string({0}.key, {0}.klen)",
        "data": "std::string({0}.data, {0}.dlen)",
    },
    ("SplitAbsorbReq", "records"): {"okey": "{0}.okey", "record": "{0}.record.to_str()"},
    ("SplitAdvanceReq", "heads"): {"okey": "{0}.first", "head": "{0}.second"},
}  # fmt: skip


def cxx_request_checks(fields: dict[str, Any], struct: str) -> list[str]:
    """Checks of a parsed request ``r`` against ``fields`` (every field, the
    optional ones at their defaults where the request leaves them out)."""
    out = ["(void)r;"]
    for k, v in fields.items():
        parts = CXX_PARTS.get((struct, k))
        if parts is None:
            out += cxx_compare(f"r.{k}", v, k)
            continue
        out.append(f'check(r.{k}.size() == {len(v)}, "{k} count");')
        for i, e in enumerate(v):
            assert set(e) == set(parts), (struct, k)
            out.append(f"if (r.{k}.size() > {i}) {{")
            for part, value in e.items():
                expr = parts[part].format(f"r.{k}[{i}]")
                out += ["  " + c for c in cxx_compare(expr, value, f"{k}[{i}].{part}")]
            out.append("}")
    return out


CXX_PRELUDE = r"""
// Generated by tests/unit/test_wire.py from tests/vectors/wire.json.
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "ops.h"
#include "types.h"
#include "locks.h"

// locks.h's header I/O helpers reference these OSD functions; this program
// never calls them (it only encodes and decodes), so they only have to link.
int cls_log(int, const char *, ...) { abort(); }
int cls_cxx_map_read_header(cls_method_context_t, ceph::bufferlist *) { abort(); }
int cls_cxx_map_write_header(cls_method_context_t, ceph::bufferlist *) { abort(); }

static const char *vec_name;
static int vec_failures;

static void check(bool ok, const char *what)
{
  if (!ok) {
    printf("FAIL %s %s\n", vec_name, what);
    vec_failures++;
  }
}

static void begin(const char *name) { vec_name = name; vec_failures = 0; }
static void end() { if (!vec_failures) printf("OK %s\n", vec_name); }

static std::string unhex(const char *h)
{
  std::string out;
  for (; h[0] && h[1]; h += 2) {
    auto nib = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
    out.push_back((char)(nib(h[0]) << 4 | nib(h[1])));
  }
  return out;
}

static std::string tohex(const std::string &s)
{
  static const char d[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) { out.push_back(d[c >> 4]); out.push_back(d[c & 15]); }
  return out;
}

template <class V>
static bool same_ints(const V &v, std::initializer_list<unsigned long long> want)
{
  if (v.size() != want.size()) return false;
  size_t i = 0;
  for (auto w : want)
    if ((unsigned long long)v[i++] != w) return false;
  return true;
}

static std::string frame(uint8_t version, uint8_t compat, const std::string &body)
{
  WireWriter w;
  w.framed(version, compat, body);
  return w.s;
}

template <class T>
static int parse_raw(const std::string &raw, T *req)
{
  ceph::bufferlist bl;
  bl.append(raw.data(), raw.size());
  return parse_request(&bl, req);
}

/* A shorter form of a struct's body: it ends where optional trailing
 * fields begin (an older sender's or writer's), and `fields` checks what it
 * decodes to (those fields at their defaults). */
template <class T>
struct Older {
  size_t body;
  void (*fields)(const T &);
};

template <class T>
static const Older<T> *older_at(const std::vector<Older<T>> &older, size_t n)
{
  for (const auto &o : older)
    if (o.body == n)
      return &o;
  return nullptr;
}

/* The framing rules of a request: every truncation is -EINVAL, and so is
 * every short body but those of `older` (they parse, to the fields with the
 * optional ones left out at their defaults); a newer compat is -EOPNOTSUPP,
 * a byte after the frame -EINVAL; a later version with extra body bytes
 * after every optional field (`left_out`: those the vector lacks, at their
 * defaults) parses (`fields` checks it). */
template <class T>
static void request_framing(const std::string &raw, void (*fields)(const T &),
                            const std::vector<Older<T>> &older, const std::string &left_out)
{
  check((uint8_t)raw[0] == T::VERSION, "the vector's version is the struct's VERSION");
  std::string body = raw.substr(6);
  for (size_t n = 0; n < raw.size(); n++) {
    T r;
    check(parse_raw(raw.substr(0, n), &r) == -EINVAL, "a truncated request parses");
  }
  for (size_t n = 0; n < body.size(); n++) {
    T r;
    int rc = parse_raw(frame(raw[0], raw[1], body.substr(0, n)), &r);
    if (const Older<T> *o = older_at(older, n)) {
      check(rc == 0, "a body ending where optional fields begin is refused");
      if (rc == 0)
        o->fields(r);
    } else {
      check(rc == -EINVAL, "a short body parses");
    }
  }
  T r;
  check(parse_raw(frame(T::VERSION + 1, T::VERSION + 1, body), &r) == -EOPNOTSUPP,
        "a newer compat is not refused with -EOPNOTSUPP");
  check(parse_raw(raw + std::string(1, '\0'), &r) == -EINVAL, "a byte after the frame");
  T later;
  std::string more = body + left_out + std::string(9, '\xa5');
  int rc = parse_raw(frame(T::VERSION + 1, raw[1], more), &later);
  check(rc == 0, "a later version with extra body bytes is refused");
  if (rc == 0)
    fields(later);
}

template <class T>
static std::string reply_bytes(const T &reply)
{
  ceph::bufferlist bl;
  put_reply(&bl, reply);
  return std::string(bl.c_str(), bl.length());
}

/* The framing rules of the stored header: truncations, short bodies (but
 * a v4 header's that ends where the v4 fields begin: a v3 header's, which
 * decodes with them at their defaults), a newer compat and a byte after the
 * frame are -EIO; extra body bytes after every field (`left_out`: the
 * fields an older version's vector lacks, at their defaults) are ignored. */
static void header_framing(const std::string &raw, void (*fields)(const rtdb_shard_hdr &),
                           const std::vector<Older<rtdb_shard_hdr>> &older,
                           const std::string &left_out)
{
  rtdb_shard_hdr h;
  for (size_t n = 1; n < raw.size(); n++)
    check(decode_shard_hdr(raw.substr(0, n), &h) == -EIO, "a truncated header decodes");
  std::string body = raw.substr(6);
  for (size_t n = 0; n < body.size(); n++) {
    int rc = decode_shard_hdr(frame(raw[0], raw[1], body.substr(0, n)), &h);
    if (const Older<rtdb_shard_hdr> *o = older_at(older, n)) {
      check(rc == 0, "a body ending where the v4 fields begin does not decode");
      if (rc == 0)
        o->fields(h);
    } else {
      check(rc == -EIO, "a short body decodes");
    }
  }
  const int newer = RTDB_SHARD_HDR_VERSION + 1;
  check(decode_shard_hdr(frame(newer, newer, body), &h) == -EIO, "a newer compat decodes");
  check(decode_shard_hdr(raw + std::string(1, '\0'), &h) == -EIO, "a byte after the frame");
  int rc = decode_shard_hdr(frame(newer, raw[1], body + left_out + std::string(7, '\x5a')), &h);
  check(rc == 0, "a later version with extra body bytes is refused");
  if (rc == 0)
    fields(h);
}

/* Decode a stored redo log from a buffer of its own; the records must stay
 * in that buffer (shared, not copied). */
static bool redo_decode(const std::string &raw, RedoLog *log)
{
  ceph::bufferlist bl;
  bl.append(raw.data(), raw.size());
  const char *base = bl.c_str();
  bool ok = log->decode(bl);
  for (auto &kv : log->put) {
    const char *p = kv.second.length() ? kv.second.c_str() : base;
    check(p >= base && p + kv.second.length() <= base + bl.length(), "a record was copied");
  }
  return ok;
}

/* The framing rules of the stored redo log: truncations, a short body, a
 * newer compat and 0.2's undo log (version 1) do not decode; a later
 * version with extra body bytes decodes to the same fields. Its head alone
 * (what rollback reads) needs FRAME + HEAD bytes of a version 2 log. */
static void redo_framing(const std::string &raw, void (*fields)(const RedoLog &))
{
  check((uint8_t)raw[0] == RedoLog::VERSION && (uint8_t)raw[1] == RedoLog::COMPAT,
        "the vector's version and compat are the struct's");
  std::string body = raw.substr(6);
  for (size_t n = 0; n < raw.size(); n++) {
    RedoLog r;
    check(!redo_decode(raw.substr(0, n), &r), "a truncated redo log decodes");
  }
  for (size_t n = 0; n < body.size(); n++) {
    RedoLog r;
    check(!redo_decode(frame(raw[0], raw[1], body.substr(0, n)), &r), "a short body decodes");
  }
  RedoLog r, undo_log;
  check(!redo_decode(frame(RedoLog::VERSION + 1, RedoLog::VERSION + 1, body), &r),
        "a newer compat decodes");
  check(!redo_decode(frame(1, 1, body), &undo_log), "an undo log decodes");
  RedoLog later;
  std::string more = body + std::string(11, '\x5a');
  bool ok = redo_decode(frame(RedoLog::VERSION + 1, raw[1], more), &later);
  check(ok, "a later version with extra body bytes is refused");
  if (ok)
    fields(later);
  size_t head = RedoLog::FRAME + RedoLog::HEAD;
  for (size_t n = 0; n < head; n++)
    check(!r.decode_head(raw.data(), n), "a short head decodes");
  std::string undo = frame(1, 1, body), newer = frame(3, 3, body);
  check(!r.decode_head(undo.data(), head), "the head of an undo log decodes");
  check(!r.decode_head(newer.data(), head), "the head of a newer compat decodes");
}

#define CONST(name) printf("CONST %s %llu\n", #name, (unsigned long long)(name))
#define STRUCT_VERSION(t) printf("VERSION %s %d\n", #t, (int)t::VERSION)
#define STRUCT_COMPAT(t) printf("COMPAT %s %d %d\n", #t, (int)t::VERSION, (int)t::COMPAT)
"""


def cxx_older(
    t: str, name: str, vec: dict[str, Any], checks: Callable[[dict[str, Any]], list[str]]
) -> tuple[list[str], str, str]:
    """Functions checking each shorter form of a vector (older_forms), the
    C++ vector of them, and the bytes ``left_out`` of the vector: what
    request_framing and header_framing take."""
    fns, forms = [], []
    for j, (n, fields) in enumerate(sorted(older_forms(vec).items())):
        fns.append(f"static void {name}_older_{j}(const {t} &r) {{")
        fns += ["  " + line for line in checks(fields)]
        fns.append("}")
        forms.append(f"{{{n}, {name}_older_{j}}}")
    return fns, f"std::vector<Older<{t}>>{{{', '.join(forms)}}}", cstr(left_out(vec).hex())


def cxx_reply_assign(t: str, k: str, v: Any) -> list[str]:
    """Set reply member ``x.k`` to ``v``; bufferlists are appended to."""
    if t == "GetReply" and k == "record":
        return [f"{{ std::string s = {cstr(v)}; x.record.append(s.data(), s.size()); }}"]
    if t == "SplitPageReply" and k == "records":
        return [
            f"{{ MovingRecord m; m.okey = {cstr(m['okey'])}; "
            f"std::string s = {cstr(m['record'])}; m.record.append(s.data(), s.size()); "
            "x.records.push_back(m); }"
            for m in v
        ]
    return cxx_assign(f"x.{k}", v)


def without_version(fields: dict[str, Any]) -> dict[str, Any]:
    """A header's fields as the C++ struct has them: not its version (the
    frame's), and each ticket in its entry."""
    out = {k: v for k, v in fields.items() if k not in ("version", "tickets")}
    tickets = fields.get("tickets", [[0, 0]] * len(fields["entries"]))
    out["entries"] = [
        {**e, "ticket": t, "inbox": i} for e, (t, i) in zip(fields["entries"], tickets, strict=True)
    ]
    return out


def header_checks(fields: dict[str, Any]) -> list[str]:
    """Checks of a decoded header ``r``."""
    return cxx_compare("r", without_version(fields), "header")


def cxx_program(constants: list[str]) -> str:
    """The C++ check program for every vector and the constants named."""
    fns: list[str] = []
    main: list[str] = []
    for i, vec in enumerate(REQUESTS):
        t = vec["struct"]
        fns.append(f"static void fields_{i}(const {t} &r) {{")
        fns += ["  " + line for line in cxx_request_checks(with_defaults(vec), t)]
        fns.append("}")
        older_fns, older, rest = cxx_older(
            t, f"fields_{i}", vec, lambda f, t=t: cxx_request_checks(f, t)
        )
        fns += older_fns
        main += [
            f'begin("{vec["name"]}");',
            "{",
            f"  std::string raw = {cstr(vec['hex'])};",
            f"  {t} r;",
            "  int rc = parse_raw(raw, &r);",
            '  check(rc == 0, "parse_request refused the vector");',
            f"  if (rc == 0) fields_{i}(r);",
            f"  request_framing<{t}>(raw, fields_{i}, {older}, {rest});",
            "}",
            "end();",
        ]
    for vec in REPLIES:
        # an older version's vector: only its fields are set, the class's
        # defaults encode the rest (current_bytes)
        main += [f'begin("{vec["name"]}");', "{", f"  {vec['struct']} x;"]
        for k, v in vec["fields"].items():
            main += ["  " + line for line in cxx_reply_assign(vec["struct"], k, v)]
        main += [
            "  std::string got = reply_bytes(x);",
            f'  check(got == {cstr(current_bytes(vec).hex())}, "encoded bytes differ");',
            '  if (vec_failures) printf("GOT %s %s\\n", vec_name, tohex(got).c_str());',
            "}",
            "end();",
        ]
    for i, vec in enumerate(STORED):
        t, f = vec["struct"], vec["fields"]
        if t == "RedoLog":
            f_, m_ = cxx_redo_log(i, vec)
            fns += f_
            main += m_
            continue
        if t == "TxnRecord":
            fns.append(f"static void stored_{i}(const TxnRecord &r) {{")
            fns += ["  " + line for line in cxx_compare("r", f, "record")]
            fns.append("}")
            main += [f'begin("{vec["name"]}");', "{", "  TxnRecord x;"]
            main += ["  " + line for line in cxx_assign("x", f)]
            main += [
                "  WireWriter b;",
                "  x.encode(b);",
                f"  std::string raw = {cstr(vec['hex'])};",
                "  std::string got = frame(TxnRecord::VERSION, TxnRecord::COMPAT, b.s);",
                '  check(got == raw, "encoded bytes differ");',
                "  WireReader rd(raw.data(), raw.size()), body;",
                "  TxnRecord y;",
                "  bool ok = rd.open(TxnRecord::VERSION, &body) == 0 && rd.done();",
                '  check(ok && y.decode(body), "does not decode");',
                f"  stored_{i}(y);",
                "}",
                "end();",
            ]
            continue
        # a header: decoded (every field: the v4 ones at their defaults in an
        # older header); encoded from the vector's fields (the class's
        # defaults for the rest: current_bytes) and under the framing rules
        fns.append(f"static void stored_{i}(const rtdb_shard_hdr &r) {{")
        fns += ["  " + line for line in header_checks(with_defaults(vec))]
        fns.append("}")
        main += [f'begin("{vec["name"]}");', "{", f"  std::string raw = {cstr(vec['hex'])};"]
        main += [
            "  rtdb_shard_hdr h;",
            '  check(decode_shard_hdr(raw, &h) == 0, "does not decode");',
        ]
        main.append(f"  stored_{i}(h);")
        if t == "ShardHeader":
            older_fns, older, rest = cxx_older("rtdb_shard_hdr", f"stored_{i}", vec, header_checks)
            fns += older_fns
            main += ["  rtdb_shard_hdr x;"]
            main += ["  " + line for line in cxx_assign("x", without_version(f))]
            main += [
                "  std::string got = encode_shard_hdr(x);",
                f'  check(got == {cstr(current_bytes(vec).hex())}, "encoded bytes differ");',
                '  if (vec_failures) printf("GOT %s %s\\n", vec_name, tohex(got).c_str());',
                f"  header_framing(raw, stored_{i}, {older}, {rest});",
            ]
        main += ["}", "end();"]
    main += [f"CONST({c});" for c in constants]
    main += [f"STRUCT_VERSION({t});" for t in sorted(ENCODERS)]
    replies = sorted({v["struct"] for v in REPLIES} | {"TxnRecord", "RedoLog"})
    main += [f"STRUCT_COMPAT({t});" for t in replies]
    return "\n".join(
        [CXX_PRELUDE, *fns, "int main() {", *("  " + line for line in main), "  return 0;", "}"]
    )


def cxx_redo_log(i: int, vec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Functions and main's lines that check a redo log vector: the struct
    built from the fields encodes to the bytes in ONE buffer; the bytes
    decode to the fields (and under the framing rules), their head to txid
    and prev_applied."""
    f = vec["fields"]
    puts = [e for e in f["entries"] if e["present"]]
    gone = [e for e in f["entries"] if not e["present"]]
    fns = [f"static void stored_{i}(const RedoLog &r) {{"]
    fns += [
        f'  check(r.txid == {lit(f["txid"])}, "txid");',
        f'  check(r.prev_applied == {lit(f["prev_applied"])}, "prev_applied");',
        f'  check(r.put.size() == {len(puts)} && r.gone.size() == {len(gone)}, "entries count");',
    ]
    for e in puts:
        k, rec = cstr(e["omap_key"]), cstr(e["new"])
        fns += [
            f"  {{ auto it = r.put.find({k});",
            f'    check(it != r.put.end() && std::string(it->second.to_str()) == {rec}, "record");'
            " }",
        ]
    fns += [f'  check(r.gone.count({cstr(e["omap_key"])}) == 1, "removed key");' for e in gone]
    fns.append("}")
    main = [
        f'begin("{vec["name"]}");',
        "{",
        f"  std::string raw = {cstr(vec['hex'])};",
        "  RedoLog x;",
        f"  x.txid = {lit(f['txid'])};",
        f"  x.prev_applied = {lit(f['prev_applied'])};",
    ]
    for e in puts:
        main.append(
            f"  {{ std::string s = {cstr(e['new'])}; "
            f"x.put[{cstr(e['omap_key'])}].append(s.data(), s.size()); }}"
        )
    main += [f"  x.gone.insert({cstr(e['omap_key'])});" for e in gone]
    main += [
        "  ceph::bufferlist enc = x.encode();",
        '  check(enc.get_num_buffers() == 1, "not encoded in one buffer");',
        "  std::string got = enc.to_str();",
        '  check(got == raw, "encoded bytes differ");',
        '  if (vec_failures) printf("GOT %s %s\\n", vec_name, tohex(got).c_str());',
        "  RedoLog y;",
        '  check(redo_decode(raw, &y), "does not decode");',
        f"  stored_{i}(y);",
        "  RedoLog h;",
        "  bool head = h.decode_head(raw.data(), RedoLog::FRAME + RedoLog::HEAD);",
        '  check(head, "its head does not decode");',
        f'  check(h.txid == {lit(f["txid"])}, "head txid");',
        f'  check(h.prev_applied == {lit(f["prev_applied"])}, "head prev_applied");',
        '  check(h.put.empty() && h.gone.empty(), "the head decodes entries");',
        f"  redo_framing(raw, stored_{i});",
        "}",
        "end();",
    ]
    return fns, main


# C++ constant -> the clsops (or kinds) value it must equal.
CONSTANTS: dict[str, int] = {
    "RADOSTDB_WIRE_VERSION": clsops.WIRE_VERSION,
    "RTDB_SHARD_HDR_VERSION": clsops.SHARD_HDR_VERSION,
    "RTDB_OWNER_LEN": clsops.OWNER_LEN,
    "RTDB_NO_SHARD": clsops.NO_SHARD,
    **{f"RTDB_LOCK_{m.name}": m.value for m in kinds.Kind},
    **{f"RTDB_LOCK_{m.name}": m.value for m in kinds.Mode},
    **{f"RTDB_{m.name}": m.value for m in clsops.EntryState},
    **{f"RTDB_OP_{m.name}": m.value for m in kinds.Op},
    **{f"RTDB_TXN_{m.name}": m.value for m in kinds.TxnState},
    **{f"RTDB_{m.name}": m.value for m in clsops.ReadStatus},
    "RTDB_WRITE_ASSERT_LOCK": clsops.WRITE_ASSERT_LOCK,
    "RTDB_WRITE_ASSERT_TXN": clsops.WRITE_ASSERT_TXN,
    "RTDB_WRITE_RELEASE": clsops.WRITE_RELEASE,
    "RTDB_WRITE_REPORT": clsops.WRITE_REPORT,
    "RTDB_APPLIED_CREATED": clsops.APPLIED_CREATED,
    "RTDB_APPLIED_GRANTED": clsops.APPLIED_GRANTED,
    "RTDB_APPLIED_WATCHED": clsops.APPLIED_WATCHED,
    "RTDB_WATCH_ARMED": clsops.WATCH_ARMED,
    "RTDB_GRANTS_MAX": clsops.GRANTS_MAX,
    "RTDB_APPLIED_GRANTED_SEVERAL": clsops.APPLIED_GRANTED_SEVERAL,
    "RTDB_TICKET_SHIFT": clsops.TICKET_SHIFT,
    "RTDB_TICKET_MAX": clsops.TICKET_MAX,
    "RTDB_LOCK_QUEUE": clsops.LOCK_QUEUE,
    "RTDB_LIST_KEYS_ONLY": clsops.LIST_KEYS_ONLY,
    "RTDB_LIST_STRICT": clsops.LIST_STRICT,
    "RTDB_LOCKED_GRANTED": clsops.LOCKED_GRANTED,
    "RTDB_LOCKED_QUEUED": clsops.LOCKED_QUEUED,
    "RTDB_LOCKED_ASK": clsops.LOCKED_ASK,
    "RTDB_LAYOUT_SPLITTING": clsops.LAYOUT_SPLITTING,
    "RTDB_LAYOUT_MOVED": clsops.LAYOUT_MOVED,
    "RTDB_RELEASE_KEEP_WAITS": clsops.RELEASE_KEEP_WAITS,
    "RTDB_PRUNE_CLEAR_STALE": clsops.PRUNE_CLEAR_STALE,
    "RTDB_REDO_VERSION": clsops.REDO_VERSION,
}
# Python enum -> the C++ enum it mirrors (member for member)
ENUMS = {
    kinds.Kind: "rtdb_lock_kind", kinds.Mode: "rtdb_lock_mode",
    clsops.EntryState: "rtdb_entry_state", kinds.Op: "rtdb_apply_op",
    kinds.TxnState: "rtdb_txn_state", clsops.ReadStatus: "rtdb_read_status",
}  # fmt: skip


def header_constants() -> tuple[dict[str, list[str]], list[str]]:
    """The enumerators of each enum and the #defines with a value (every
    one: the compiled program prints it, so none can be missed for its
    spelling, 0xffffffffu included) of types.h and ops.h."""
    enums: dict[str, list[str]] = {}
    defines: list[str] = []
    for name in ("types.h", "ops.h"):
        src = re.sub(r"/\*.*?\*/", "", cls_source(name), flags=re.S)
        for enum, body in re.findall(r"enum (\w+)\s*:\s*\w+\s*\{(.*?)\}", src, re.S):
            enums[enum] = re.findall(r"(\w+)\s*=", body)
        defines += re.findall(r"^#define ((?:RTDB|RADOSTDB)_\w+)[ \t]+\S", src, re.M)
    return enums, defines


def test_header_constants_found() -> None:
    """The scan of the headers sees the constants of each spelling."""
    _, defines = header_constants()
    assert {"RTDB_NO_SHARD", "RTDB_LAYOUT_MOVED", "RTDB_LOCKED_GRANTED"} <= set(defines)
    assert not {"RADOSTDB_TYPES_H", "RADOSTDB_OPS_H"} & set(defines)


@pytest.fixture(scope="module")
def cxx_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Compile and run the generated program: its output lines by first word."""
    gxx = shutil.which("g++")
    if gxx is None:
        if env_flag("RADOSTDB_REQUIRE_NATIVE"):
            pytest.fail("RADOSTDB_REQUIRE_NATIVE=1 but g++ is missing (make deps installs it)")
        pytest.skip("g++ is missing (make deps installs it)")
    enums, defines = header_constants()
    names = sorted({n for members in enums.values() for n in members} | set(defines))
    d = tmp_path_factory.mktemp("wire-cxx")
    src, exe = d / "wire_vectors.cc", d / "wire_vectors"
    src.write_text(cxx_program(names))
    cc = subprocess.run(
        [gxx, "-std=c++17", "-O0", "-Wall", "-Wextra", "-Wno-unused-function", "-Werror",
         f"-I{CLS_DIR}", "-o", str(exe), str(src), "-lrados"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cc.returncode == 0, f"the generated program ({src}) does not compile:\n{cc.stderr}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        word, _, rest = line.partition(" ")
        out.setdefault(word, []).append(rest)
    return out


CXX_VECTORS = REQUESTS + REPLIES + STORED


@pytest.mark.parametrize("vec", CXX_VECTORS, ids=ids(CXX_VECTORS))
def test_cxx_agrees(vec: dict[str, Any], cxx_results: dict[str, list[str]]) -> None:
    name = vec["name"]
    failures = [f for f in cxx_results.get("FAIL", []) if f.split(" ", 1)[0] == name]
    got = [g for g in cxx_results.get("GOT", []) if g.split(" ", 1)[0] == name]
    assert not failures, f"{failures} {got}"
    assert name in cxx_results.get("OK", [])


def test_cxx_constants_equal_python(cxx_results: dict[str, list[str]]) -> None:
    compiled = {n: int(v) for n, v in (line.split() for line in cxx_results["CONST"])}
    assert set(compiled) == set(CONSTANTS), "a constant is missing on one side"
    assert compiled == CONSTANTS


def test_cxx_enums_match_python_enums() -> None:
    enums, _ = header_constants()
    assert set(enums) == set(ENUMS.values())
    for py, cxx in ENUMS.items():
        mirrored = {n for n, v in CONSTANTS.items() if n in enums[cxx]}
        assert mirrored == set(enums[cxx]), cxx
        assert sorted(CONSTANTS[n] for n in enums[cxx]) == sorted(m.value for m in py), cxx


def test_cxx_struct_versions(cxx_results: dict[str, list[str]]) -> None:
    """The golden requests carry each struct's VERSION (checked in C++); the
    reply structs' COMPAT is one clsops' decoders know."""
    versions = {t: int(v) for t, v in (line.split() for line in cxx_results["VERSION"])}
    assert set(versions) == set(ENCODERS)
    for line in cxx_results["COMPAT"]:
        t, version, compat = line.split()
        assert int(compat) <= DECODINGS[t].known, t
        assert any(v["struct"] == t and H(v["hex"])[0] == int(version) for v in DECODED), t


# -- one owner of the protocol -------------------------------------------------------
def test_only_clsops_calls_class_methods() -> None:
    """No radostdb module but clsops passes a class method name to librados
    (``execute`` / ``aio_execute``, sync or composed into an op), the bench
    included."""
    clsops_path = REPO / "radostdb" / "clsops.py"
    assert len(execute_calls(clsops_path)) >= 4  # the detector sees clsops' own calls
    offenders = []
    for path in sorted((REPO / "radostdb").rglob("*.py")):
        if path != clsops_path:
            offenders += execute_calls(path)
    assert not offenders, f"class methods called outside clsops: {offenders}"


def execute_calls(path: Path) -> list[str]:
    """file:line of every ``<anything>.execute(...)`` / ``.aio_execute(...)``
    call with at least three arguments: librados' (object, class, method, ...)
    or a write op's (class, method, data); sqlite3's execute takes one or two."""
    rel = path.relative_to(REPO).as_posix()
    return [
        f"{rel}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text(), rel))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("execute", "aio_execute")
        and len(node.args) + len(node.keywords) >= 3
    ]
