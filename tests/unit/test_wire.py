"""The class wire format from both sides, without a cluster.

tests/vectors/wire.json holds a golden byte vector for every request, reply
and stored struct of the radostdb object class. Here:
- Python (radostdb/clsops.py): every encoder produces exactly the request
  bytes, every decoder gives back the reply and stored fields, and the
  framing rules hold (a compat newer than known is refused, unknown trailing
  body bytes are ignored, short structs fail with WireError);
- C++ (cls/radostdb/ops.h, locks.h): a program generated from the same
  vectors is compiled with g++ against the class headers and run: every
  request parses with ``parse_request<T>`` into the expected fields (and
  every truncation, newer compat and byte after the frame is refused), every
  reply encoded from the fields is exactly the bytes, the shard header
  encodes and decodes (``encode_shard_hdr`` / ``decode_shard_hdr``), and
  so does the redo log (``RedoLog``: encoded in one buffer, decoded whole
  with the records left in the buffer read, and its head alone);
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


def frame_parts(raw: bytes) -> tuple[int, int, bytes]:
    """(version, compat, body) of a framed struct that fills ``raw``."""
    length = int.from_bytes(raw[2:6], "little")
    assert len(raw) == HEAD + length, "a vector is exactly one framed struct"
    return raw[0], raw[1], raw[HEAD:]


def reframe(version: int, compat: int, body: bytes) -> bytes:
    return bytes((version, compat)) + len(body).to_bytes(4, "little") + body


# -- Python: request encoders ------------------------------------------------------
ENCODERS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "ApplyReq": lambda f: clsops.apply_request(
        H(f["owner"]),
        f["wflags"],
        [(e["op"], H(e["key"]), H(e["data"])) for e in f["entries"]],
        txid=f["txid"],
        settle=f["settle"],
        participants=f["participants"],
    ),
    "ClearReq": lambda f: clsops.clear_request(H(f["owner"]), f["wflags"], f["settle"]),
    "TxidReq": lambda f: clsops.txid_request(f["txid"]),
    "EmptyReq": lambda f: clsops.EMPTY_REQUEST,
    "GetReq": lambda f: clsops.get_request(H(f["key"]), f["maxlen"], f["accept"]),
    "ListReq": lambda f: clsops.list_request(
        f["max"], f["maxbytes"], H(f["start"]).decode("ascii"), f["accept"]
    ),
    "LockReq": lambda f: clsops.lock_request(
        H(f["owner"]), f["lease_ms"], f["kind"], f["mode"], H(f["key"]), f["flags"]
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
                   e["expiry_ms"], H(e["key"]), e["flags"]) for e in f["entries"]],
        f["version"],
    )  # fmt: skip


def txn_record_of(f: dict[str, Any]) -> TxnRecord:
    return TxnRecord(f["txid"], f["state"], H(f["owner"]), f["time_ms"], list(f["participants"]))


def stored_fields(raw_hex: str, struct: str) -> dict[str, Any]:
    """The fields of the stored vector of ``struct`` whose bytes are ``raw_hex``."""
    return next(v["fields"] for v in STORED if v["struct"] == struct and v["hex"] == raw_hex)


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
            bool(f.get("more", 0)), H(f.get("page", "")), pending_of(f.get("pending"))
        ),
    ),
    "SeqReply": Decoding(clsops.decode_seq, lambda f: f["seq"]),
    "StateReply": Decoding(clsops.decode_state, expected_state),
    "WatchersReply": Decoding(clsops.decode_watchers, lambda f: [tuple(w) for w in f["watchers"]]),
    "JournalReply": Decoding(clsops.decode_journal, expected_journal),
    "TxnRecord": Decoding(clsops._record, txn_record_of),
    "ShardHeader": Decoding(clsops.decode_header, header_of, clsops.SHARD_HDR_VERSION),
    "LegacyShardHeader": Decoding(clsops.decode_header, header_of),
    "RedoLog": Decoding(clsops.decode_redo_log, redo_log_of, clsops.REDO_VERSION),
}

DECODED = REPLIES + STORED
FRAMED = [v for v in DECODED if v["struct"] != "LegacyShardHeader"]


@pytest.mark.parametrize("vec", DECODED, ids=ids(DECODED))
def test_python_decodes(vec: dict[str, Any]) -> None:
    d = DECODINGS[vec["struct"]]
    assert d.decode(H(vec["hex"])) == d.expected(vec["fields"])


def test_reply_statuses_covered() -> None:
    get = {v["fields"]["status"] for v in REPLIES if v["struct"] == "GetReply"}
    assert get == set(ReadStatus)
    lst = {v["fields"]["status"] for v in REPLIES if v["struct"] == "ListReply"}
    assert lst == {ReadStatus.FOUND, ReadStatus.PENDING}
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
    to the fields this version knows."""
    d = DECODINGS[vec["struct"]]
    version, compat, body = frame_parts(H(vec["hex"]))
    later = reframe(version + 1, compat, body + b"\xa5" * 13)
    assert d.decode(later) == d.expected(vec["fields"])


@pytest.mark.parametrize("vec", DECODED, ids=ids(DECODED))
def test_python_refuses_short_structs(vec: dict[str, Any]) -> None:
    """Every proper prefix of the bytes, and (framed structs) every proper
    prefix of the body under a matching length, fails with WireError (the
    empty string aside: a missing header or a missing object's seq)."""
    d = DECODINGS[vec["struct"]]
    raw = H(vec["hex"])
    shorts = [raw[:n] for n in range(1, len(raw))]
    if vec in FRAMED:
        version, compat, body = frame_parts(raw)
        shorts += [reframe(version, compat, body[:n]) for n in range(len(body))]
    for short in shorts:
        with pytest.raises(WireError):
            d.decode(short)


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


def cxx_request_checks(vec: dict[str, Any]) -> list[str]:
    """Checks of a parsed request ``r``; ApplyReq entries keep key and data
    as pointer + length, compared as the string they span."""
    out = ["(void)r;"]
    for k, v in vec["fields"].items():
        if vec["struct"] == "ApplyReq" and k == "entries":
            out.append(f'check(r.entries.size() == {len(v)}, "entries count");')
            for i, e in enumerate(v):
                x = f"r.entries[{i}]"
                out.append(f"if (r.entries.size() > {i}) {{")
                out.append(f'  check({x}.op == {e["op"]}, "entries[{i}].op");')
                for part, length in (("key", "klen"), ("data", "dlen")):
                    spanned = f"std::string({x}.{part}, {x}.{length})"
                    out += ["  " + c for c in cxx_compare(spanned, e[part], f"entries[{i}].{part}")]
                out.append("}")
        else:
            out += cxx_compare(f"r.{k}", v, k)
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

/* The framing rules of a request: every truncation and every short body is
 * -EINVAL, a newer compat -EOPNOTSUPP, a byte after the frame -EINVAL; a
 * later version with extra body bytes parses (`fields` checks it). */
template <class T>
static void request_framing(const std::string &raw, void (*fields)(const T &))
{
  check((uint8_t)raw[0] == T::VERSION, "the vector's version is the struct's VERSION");
  std::string body = raw.substr(6);
  for (size_t n = 0; n < raw.size(); n++) {
    T r;
    check(parse_raw(raw.substr(0, n), &r) == -EINVAL, "a truncated request parses");
  }
  for (size_t n = 0; n < body.size(); n++) {
    T r;
    check(parse_raw(frame(raw[0], raw[1], body.substr(0, n)), &r) == -EINVAL,
          "a short body parses");
  }
  T r;
  check(parse_raw(frame(T::VERSION + 1, T::VERSION + 1, body), &r) == -EOPNOTSUPP,
        "a newer compat is not refused with -EOPNOTSUPP");
  check(parse_raw(raw + std::string(1, '\0'), &r) == -EINVAL, "a byte after the frame");
  T later;
  int rc = parse_raw(frame(T::VERSION + 1, raw[1], body + std::string(9, '\xa5')), &later);
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

/* The framing rules of the stored header: truncations, a newer compat and
 * a byte after the frame are -EIO; extra body bytes are ignored. */
static void header_framing(const std::string &raw, void (*fields)(const rtdb_shard_hdr &))
{
  rtdb_shard_hdr h;
  for (size_t n = 1; n < raw.size(); n++)
    check(decode_shard_hdr(raw.substr(0, n), &h) == -EIO, "a truncated header decodes");
  std::string body = raw.substr(6);
  check(decode_shard_hdr(frame(4, 4, body), &h) == -EIO, "a newer compat decodes");
  check(decode_shard_hdr(raw + std::string(1, '\0'), &h) == -EIO, "a byte after the frame");
  int rc = decode_shard_hdr(frame(4, raw[1], body + std::string(7, '\x5a')), &h);
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


def cxx_program(constants: list[str]) -> str:
    """The C++ check program for every vector and the constants named."""
    fns: list[str] = []
    main: list[str] = []
    for i, vec in enumerate(REQUESTS):
        t = vec["struct"]
        fns.append(f"static void fields_{i}(const {t} &r) {{")
        fns += ["  " + line for line in cxx_request_checks(vec)]
        fns.append("}")
        main += [
            f'begin("{vec["name"]}");',
            "{",
            f"  std::string raw = {cstr(vec['hex'])};",
            f"  {t} r;",
            "  int rc = parse_raw(raw, &r);",
            '  check(rc == 0, "parse_request refused the vector");',
            f"  if (rc == 0) fields_{i}(r);",
            f"  request_framing<{t}>(raw, fields_{i});",
            "}",
            "end();",
        ]
    for vec in REPLIES:
        main += [f'begin("{vec["name"]}");', "{", f"  {vec['struct']} x;"]
        for k, v in vec["fields"].items():
            if vec["struct"] == "GetReply" and k == "record":  # a bufferlist
                main.append(
                    f"  {{ std::string s = {cstr(v)}; x.record.append(s.data(), s.size()); }}"
                )
            else:
                main += ["  " + line for line in cxx_assign(f"x.{k}", v)]
        main += [
            "  std::string got = reply_bytes(x);",
            f'  check(got == {cstr(vec["hex"])}, "encoded bytes differ");',
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
        hfields = {k: v for k, v in f.items() if k != "version"}
        fns.append(f"static void stored_{i}(const rtdb_shard_hdr &h) {{")
        fns += ["  " + line for line in cxx_compare("h", hfields, "header")]
        fns.append("}")
        main += [f'begin("{vec["name"]}");', "{", f"  std::string raw = {cstr(vec['hex'])};"]
        main += [
            "  rtdb_shard_hdr h;",
            '  check(decode_shard_hdr(raw, &h) == 0, "does not decode");',
        ]
        main.append(f"  stored_{i}(h);")
        if t == "ShardHeader":
            main += ["  rtdb_shard_hdr x;"]
            main += ["  " + line for line in cxx_assign("x", hfields)]
            main += [
                '  check(encode_shard_hdr(x) == raw, "encoded bytes differ");',
                f"  header_framing(raw, stored_{i});",
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
    "RTDB_LOCK_QUEUE": clsops.LOCK_QUEUE,
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
    """The enumerators of each enum and the numeric #defines of types.h and ops.h."""
    enums: dict[str, list[str]] = {}
    defines: list[str] = []
    for name in ("types.h", "ops.h"):
        src = re.sub(r"/\*.*?\*/", "", cls_source(name), flags=re.S)
        for enum, body in re.findall(r"enum (\w+)\s*:\s*\w+\s*\{(.*?)\}", src, re.S):
            enums[enum] = re.findall(r"(\w+)\s*=", body)
        defines += re.findall(
            r"^#define ((?:RTDB|RADOSTDB)_\w+) +(?:0x[0-9a-fA-F]+|[0-9]+)\b", src, re.M
        )
    return enums, defines


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
