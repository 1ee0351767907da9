/*
 * radostdb class wire format: framing, the little-endian reader/writer, and
 * one typed struct per request and reply with its single parse (decode) or
 * encode function. radostdb/clsops.py is the Python side; both are pinned by
 * the golden byte vectors in tests/vectors/wire.json.
 *
 * Conventions:
 *   - integers are little-endian; "bytes" is a u32 length then the bytes;
 *     "owner" is 16 raw bytes (a handle id); "u32s"/"u64s"/"owners" are a
 *     u32 count then that many items;
 *   - every request and reply is a framed struct: u8 version, u8 compat (the
 *     oldest struct version a reader must understand to use it), u32 length,
 *     then `length` bytes of body. A reader refuses a struct whose compat is
 *     newer than what it knows (-EOPNOTSUPP), reads the fields it knows from
 *     the body and ignores the rest, so a later version can append fields
 *     without breaking older OSDs or clients;
 *   - a request is exactly one framed struct: bytes after it, a short body
 *     or a bad enum are -EINVAL;
 *   - keys travel raw (any bytes); the OSD encodes them into omap keys with
 *     the shared codec (radostdb/_native/codec.h).
 * Struct layouts are documented beside each struct below; what each method
 * does with them is documented above the method (records.cc, locks.cc,
 * txn.cc; server.cc registers them).
 */
#ifndef RADOSTDB_OPS_H
#define RADOSTDB_OPS_H

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <rados/buffer.h>

#include "types.h"

/* answered by the `version` method; raised when a struct or method changes
 * incompatibly (a new struct version alone does not need it) */
#define RADOSTDB_WIRE_VERSION 2

/* Bounds-checked reader over a byte range. */
class WireReader {
 public:
  WireReader() : p_(nullptr), end_(nullptr) {}
  WireReader(const char *p, size_t n) : p_(p), end_(p + n) {}
  bool u8(uint8_t *v) { return raw(v, 1); }
  bool u32(uint32_t *v) {
    unsigned char b[4];
    if (!raw(b, 4)) return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
  }
  bool u64(uint64_t *v) {
    uint32_t lo, hi;
    if (!u32(&lo) || !u32(&hi)) return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
  }
  /* a u32-length-prefixed byte string, as pointer + length */
  bool bytes(const char **ptr, uint32_t *len) {
    if (!u32(len) || left() < *len) return false;
    *ptr = p_;
    p_ += *len;
    return true;
  }
  bool str(std::string *s) {
    const char *p;
    uint32_t n;
    if (!bytes(&p, &n)) return false;
    s->assign(p, n);
    return true;
  }
  bool owner(std::string *s) {
    if (left() < RTDB_OWNER_LEN) return false;
    s->assign(p_, RTDB_OWNER_LEN);
    p_ += RTDB_OWNER_LEN;
    return true;
  }
  /* a count for items of at least `min_item` bytes each: refuses counts
   * the remaining bytes cannot hold (no huge allocation from a bad count) */
  bool count(uint32_t *n, size_t min_item) {
    return u32(n) && (size_t)*n * min_item <= left();
  }
  bool u32s(std::vector<uint32_t> *v) {
    uint32_t n;
    if (!count(&n, 4)) return false;
    v->resize(n);
    for (auto &x : *v)
      if (!u32(&x)) return false;
    return true;
  }
  bool u64s(std::vector<uint64_t> *v) {
    uint32_t n;
    if (!count(&n, 8)) return false;
    v->resize(n);
    for (auto &x : *v)
      if (!u64(&x)) return false;
    return true;
  }
  bool owners(std::vector<std::string> *v) {
    uint32_t n;
    if (!count(&n, RTDB_OWNER_LEN)) return false;
    v->resize(n);
    for (auto &x : *v)
      if (!owner(&x)) return false;
    return true;
  }
  /* open a framed struct: `body` reads its body; 0, -EINVAL (short),
   * -EOPNOTSUPP (compat newer than `known`) */
  int open(uint8_t known, WireReader *body, uint8_t *version = nullptr) {
    uint8_t v, compat;
    uint32_t len;
    if (!u8(&v) || !u8(&compat) || !u32(&len) || left() < len) return -EINVAL;
    if (compat > known) return -EOPNOTSUPP;
    *body = WireReader(p_, len);
    p_ += len;
    if (version) *version = v;
    return 0;
  }
  size_t left() const { return (size_t)(end_ - p_); }
  bool done() const { return p_ == end_; }

 private:
  bool raw(void *dst, size_t n) {
    if (left() < n) return false;
    memcpy(dst, p_, n);
    p_ += n;
    return true;
  }
  const char *p_;
  const char *end_;
};

/* Little-endian writer into a std::string. */
class WireWriter {
 public:
  void u8(uint8_t v) { s.push_back((char)v); }
  void u32(uint32_t v) {
    char b[4] = {(char)v, (char)(v >> 8), (char)(v >> 16), (char)(v >> 24)};
    s.append(b, 4);
  }
  void u64(uint64_t v) {
    u32((uint32_t)v);
    u32((uint32_t)(v >> 32));
  }
  void bytes(const char *p, size_t n) {
    u32((uint32_t)n);
    s.append(p, n);
  }
  void str(const std::string &v) { bytes(v.data(), v.size()); }
  void owner(const std::string &o) { s.append(o.data(), RTDB_OWNER_LEN); }
  void u32s(const std::vector<uint32_t> &v) {
    u32((uint32_t)v.size());
    for (auto x : v) u32(x);
  }
  void u64s(const std::vector<uint64_t> &v) {
    u32((uint32_t)v.size());
    for (auto x : v) u64(x);
  }
  void owners(const std::vector<std::string> &v) {
    u32((uint32_t)v.size());
    for (const auto &x : v) owner(x);
  }
  /* append a framed struct whose body is `body` */
  void framed(uint8_t version, uint8_t compat, const std::string &body) {
    u8(version);
    u8(compat);
    u32((uint32_t)body.size());
    s.append(body);
  }
  std::string s;
};

/* Little-endian writer into a buffer the caller sized for exactly what it
 * writes (no bounds checks): a struct encoded in one allocation. */
class WireSpan {
 public:
  explicit WireSpan(char *p) : p_(p) {}
  void u8(uint8_t v) { *p_++ = (char)v; }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; i++)
      *p_++ = (char)(v >> (8 * i));
  }
  void u64(uint64_t v) {
    u32((uint32_t)v);
    u32((uint32_t)(v >> 32));
  }
  void str(const std::string &v) {
    u32((uint32_t)v.size());
    memcpy(p_, v.data(), v.size());
    p_ += v.size();
  }
  void bytes(const ceph::bufferlist &bl) {
    u32(bl.length());
    bl.begin().copy(bl.length(), p_);
    p_ += bl.length();
  }

 private:
  char *p_;
};

/* Parse a request: exactly one framed struct of type T (T::VERSION known). */
template <class T>
int parse_request(ceph::bufferlist *in, T *req)
{
  WireReader rd(in->c_str(), in->length()), body;
  int r = rd.open(T::VERSION, &body);
  if (r < 0) return r;
  if (!rd.done() || !req->decode(body)) return -EINVAL;
  return 0;
}

/* Append a reply struct of type T to `out`. */
template <class T>
void put_reply(ceph::bufferlist *out, const T &reply)
{
  WireWriter body, all;
  reply.encode(body);
  all.framed(T::VERSION, T::COMPAT, body.s);
  out->append(all.s.data(), all.s.size());
}

/* ---- requests ---- */

/* apply v1: owner, u8 wflags, u64 txid, u64 settle, u32s participants,
 *           u32 count, count x { u8 op, bytes key, bytes data }
 *   then, optionally: u64 epoch, u32 lease_ms (with ASSERT_TXN: the writing
 *   transaction's epoch, and the lease of the isolation the write takes if
 *   the writer has none here yet; epoch 0 or absent: an older client, whose
 *   write needs the isolation held and is not checked against epochs) */
struct ApplyEntry {
  uint8_t op = 0;
  const char *key = nullptr;
  uint32_t klen = 0;
  const char *data = "";
  uint32_t dlen = 0;
};
struct ApplyReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  uint8_t wflags = 0;
  uint64_t txid = 0, settle = 0;
  std::vector<uint32_t> participants;
  std::vector<ApplyEntry> entries;
  uint64_t epoch = 0;
  uint32_t lease_ms = 0;
  bool decode(WireReader &rd) {
    uint32_t n;
    if (!rd.owner(&owner) || !rd.u8(&wflags) || !rd.u64(&txid) || !rd.u64(&settle) ||
        !rd.u32s(&participants) || !rd.count(&n, 9))
      return false;
    entries.resize(n);
    for (auto &e : entries) {
      if (!rd.u8(&e.op) || e.op < RTDB_OP_PUT || e.op > RTDB_OP_DISCARD ||
          !rd.bytes(&e.key, &e.klen) || !rd.bytes(&e.data, &e.dlen))
        return false;
    }
    if (rd.left() && (!rd.u64(&epoch) || !rd.u32(&lease_ms)))
      return false;
    /* ASSERT_LOCK, ASSERT_TXN, RELEASE, REPORT (types.h); an epoch takes a lease */
    return wflags < 16 && (!epoch || lease_ms > 0);
  }
};

/* clear v1: owner, u8 wflags, u64 settle */
struct ClearReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  uint8_t wflags = 0;
  uint64_t settle = 0;
  uint64_t modulus = 0;
  bool decode(WireReader &rd) {
    return rd.owner(&owner) && rd.u8(&wflags) && rd.u64(&settle) && wflags < 8 &&
           (!rd.left() || rd.u64(&modulus));
  }
};

/* settle, rollback, fence v1: u64 txid (non-zero) */
struct TxidReq {
  static const uint8_t VERSION = 1;
  uint64_t txid = 0;
  bool decode(WireReader &rd) { return rd.u64(&txid) && txid != 0; }
};

/* version, seq, bump, state, watchers v1: no fields */
struct EmptyReq {
  static const uint8_t VERSION = 1;
  bool decode(WireReader &) { return true; }
};

/* get v1: u32 maxlen (reply buffer the client has), u64 accept (a pending
 * transaction the caller knows to be committed), bytes key */
struct GetReq {
  static const uint8_t VERSION = 1;
  uint32_t maxlen = 0;
  uint64_t accept = 0;
  std::string key;
  bool decode(WireReader &rd) { return rd.u32(&maxlen) && rd.u64(&accept) && rd.str(&key); }
};

/* list v1: u32 max records (> 0), u32 max bytes, u64 accept,
 *          bytes start_after (an encoded key; empty: from the start)
 *   then, optionally: bytes until (an encoded key: no record after it;
 *   empty or absent: no bound), then u8 flags (RTDB_LIST_*; absent: 0) */
struct ListReq {
  static const uint8_t VERSION = 1;
  uint32_t max = 0, maxbytes = 0;
  uint64_t accept = 0;
  std::string start, until;
  uint8_t flags = 0;
  bool decode(WireReader &rd) {
    if (!rd.u32(&max) || !rd.u32(&maxbytes) || !rd.u64(&accept) || !rd.str(&start) || !max)
      return false;
    if (rd.left() && !rd.str(&until))
      return false;
    return (!rd.left() || rd.u8(&flags)) && flags < 4;
  }
};

/* lock v1: owner, u32 lease_ms (> 0), u8 kind, u8 mode, u8 flags, bytes key
 * (empty unless kind is RECORD or WATCH); then, optionally: u64 epoch (an ISOLATION
 * request's transaction; 0 or absent: not checked), u64 modulus (a SHARD
 * request: the modulus the client's layout gives the shard; 0: unknown),
 * u64 inbox (where the waiter hears its grant: kept in its entry; 0 or
 * absent: none) */
struct LockReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  uint32_t lease_ms = 0;
  uint8_t kind = 0, mode = 0, flags = 0;
  std::string key;
  uint64_t epoch = 0, modulus = 0;
  uint64_t inbox = 0; /* the waiter's process inbox (radostdb/wakeup.py; 0: none) */
  bool decode(WireReader &rd) {
    if (!rd.owner(&owner) || !rd.u32(&lease_ms) || !rd.u8(&kind) || !rd.u8(&mode) ||
        !rd.u8(&flags) || !rd.str(&key) || (rd.left() && !rd.u64(&epoch)) ||
        (rd.left() && !rd.u64(&modulus)) || (rd.left() && !rd.u64(&inbox)))
      return false;
    return lease_ms > 0 && kind >= RTDB_LOCK_RECORD && kind <= RTDB_LOCK_WATCH &&
           (mode == RTDB_LOCK_EXCL || mode == RTDB_LOCK_SHARED) && flags < 2 &&
           (kind == RTDB_LOCK_RECORD || kind == RTDB_LOCK_WATCH || key.empty());
  }
};

/* unlock v1: owner, u8 kind, u8 mode, bytes key */
struct UnlockReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  uint8_t kind = 0, mode = 0;
  std::string key;
  bool decode(WireReader &rd) {
    return rd.owner(&owner) && rd.u8(&kind) && rd.u8(&mode) && rd.str(&key);
  }
};

/* release v1: owner, u64 settle, u8 flags, u8 kind (0: every kind) */
struct ReleaseReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  uint64_t settle = 0;
  uint8_t flags = 0, kind = 0;
  bool decode(WireReader &rd) {
    return rd.owner(&owner) && rd.u64(&settle) && rd.u8(&flags) && rd.u8(&kind) && flags < 2 &&
           kind <= RTDB_LOCK_COMMIT;
  }
};

/* renew v1: owner */
struct RenewReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  bool decode(WireReader &rd) { return rd.owner(&owner); }
};

/* prune v1: u8 flags, owners (stale owners to clear with CLEAR_STALE) */
struct PruneReq {
  static const uint8_t VERSION = 1;
  uint8_t flags = 0;
  std::vector<std::string> owners;
  bool decode(WireReader &rd) { return rd.u8(&flags) && rd.owners(&owners) && flags < 2; }
};

/* stage v1 (journal): u64 txid, owner, u32s participants, u64s complete,
 *                     u64s forget */
struct StageReq {
  static const uint8_t VERSION = 1;
  uint64_t txid = 0;
  std::string owner;
  std::vector<uint32_t> participants;
  std::vector<uint64_t> complete, forget;
  bool decode(WireReader &rd) {
    return rd.u64(&txid) && rd.owner(&owner) && rd.u32s(&participants) && rd.u64s(&complete) &&
           rd.u64s(&forget) && txid != 0;
  }
};

/* txn_abort v1 (journal): u64 txid, owner, u32s participants */
struct TxnAbortReq {
  static const uint8_t VERSION = 1;
  uint64_t txid = 0;
  std::string owner;
  std::vector<uint32_t> participants;
  bool decode(WireReader &rd) {
    return rd.u64(&txid) && rd.owner(&owner) && rd.u32s(&participants) && txid != 0;
  }
};

/* txn_mark v1 (journal): u64s complete, u64s forget */
struct TxnMarkReq {
  static const uint8_t VERSION = 1;
  std::vector<uint64_t> complete, forget;
  bool decode(WireReader &rd) { return rd.u64s(&complete) && rd.u64s(&forget); }
};

/* fence_owners v1 (journal): owners; unfence v1: the same */
struct OwnersReq {
  static const uint8_t VERSION = 1;
  std::vector<std::string> owners;
  bool decode(WireReader &rd) { return rd.owners(&owners); }
};

/* journal v1 (journal, read): u64 txid (0: every record) */
struct JournalReq {
  static const uint8_t VERSION = 1;
  uint64_t txid = 0;
  bool decode(WireReader &rd) { return rd.u64(&txid); }
};

/* ---- stored structs and replies ---- */

/* pending info v1: u64 txid, owner, u32s participants */
struct PendingInfo {
  uint64_t txid = 0;
  std::string owner;
  std::vector<uint32_t> participants;
  void encode(WireWriter &w) const {
    w.u64(txid);
    w.owner(owner);
    w.u32s(participants);
  }
};

/* get reply v1: u8 status; FOUND: bytes record; TOO_BIG: u32 bytes needed
 * for the whole reply; PENDING: pending info; MISSING: nothing */
struct GetReply {
  static const uint8_t VERSION = 1, COMPAT = 1;
  uint8_t status = RTDB_MISSING;
  ceph::bufferlist record;
  uint32_t needed = 0;
  PendingInfo pending;
  void encode(WireWriter &w) const {
    w.u8(status);
    if (status == RTDB_FOUND)
      w.bytes(const_cast<ceph::bufferlist &>(record).c_str(), record.length());
    else if (status == RTDB_TOO_BIG)
      w.u32(needed);
    else if (status == RTDB_PENDING)
      pending.encode(w);
  }
};

/* A shard's place in the layout as its header records it (types.h): the
 * trailer of a list reply. */
struct LayoutInfo {
  uint64_t modulus = 0;
  uint32_t index = RTDB_NO_SHARD, split_to = RTDB_NO_SHARD;
  uint64_t split_modulus = 0;
  std::string moved_upto;
  void set(const rtdb_shard_hdr &h) {
    modulus = h.modulus;
    index = h.index;
    split_to = h.split_to;
    split_modulus = h.split_modulus;
    moved_upto = h.moved_upto;
  }
  void encode(WireWriter &w) const {
    w.u64(modulus);
    w.u32(index);
    w.u32(split_to);
    w.u64(split_modulus);
    w.str(moved_upto);
  }
};

/* list reply v2: u8 status (FOUND or PENDING); FOUND: u8 more, bytes page
 * (codec page format: raw keys, records); PENDING: pending info; then (v2)
 * the shard's layout: u64 modulus (0: not recorded), u32 index, u32
 * split_to (0xffffffff: not splitting), u64 split_modulus, bytes moved_upto
 * (the shard's keys moving to split_to up to this encoded key are there,
 * not here) */
struct ListReply {
  static const uint8_t VERSION = 2, COMPAT = 1;
  uint8_t status = RTDB_FOUND;
  uint8_t more = 0;
  std::string page;
  PendingInfo pending;
  LayoutInfo layout;
  void encode(WireWriter &w) const {
    w.u8(status);
    if (status == RTDB_FOUND) {
      w.u8(more);
      w.str(page);
    } else {
      pending.encode(w);
    }
    layout.encode(w);
  }
};

/* seq reply v1: u64 seq */
struct SeqReply {
  static const uint8_t VERSION = 1, COMPAT = 1;
  uint64_t seq = 0;
  void encode(WireWriter &w) const { w.u64(seq); }
};

/* state reply v1: u64 OSD time (ms since the epoch), u64 object version,
 * bytes header (the stored omap header, types.h; empty if none) */
struct StateReply {
  static const uint8_t VERSION = 1, COMPAT = 1;
  uint64_t now_ms = 0, version = 0;
  std::string header;
  void encode(WireWriter &w) const {
    w.u64(now_ms);
    w.u64(version);
    w.str(header);
  }
};

/* watchers reply v1: u32 count, count x { u64 client id, u64 cookie } */
struct WatchersReply {
  static const uint8_t VERSION = 1, COMPAT = 1;
  std::vector<std::pair<uint64_t, uint64_t>> watchers;
  void encode(WireWriter &w) const {
    w.u32((uint32_t)watchers.size());
    for (const auto &x : watchers) {
      w.u64(x.first);
      w.u64(x.second);
    }
  }
};

/* journal record v1 (stored as the omap value of "t.<txid, 16 hex>"):
 *   u64 txid, u8 state, owner, u64 time_ms, u32s participants */
struct TxnRecord {
  static const uint8_t VERSION = 1, COMPAT = 1;
  uint64_t txid = 0;
  uint8_t state = RTDB_TXN_STAGED;
  std::string owner = std::string(RTDB_OWNER_LEN, '\0');
  uint64_t time_ms = 0;
  std::vector<uint32_t> participants;
  void encode(WireWriter &w) const {
    w.u64(txid);
    w.u8(state);
    w.owner(owner);
    w.u64(time_ms);
    w.u32s(participants);
  }
  bool decode(WireReader &rd) {
    return rd.u64(&txid) && rd.u8(&state) && rd.owner(&owner) && rd.u64(&time_ms) &&
           rd.u32s(&participants) && state >= RTDB_TXN_STAGED && state <= RTDB_TXN_ABORTED;
  }
};

/* journal reply v1: u32 n, n x bytes (a framed TxnRecord each),
 *                   owners fenced */
struct JournalReply {
  static const uint8_t VERSION = 1, COMPAT = 1;
  std::vector<std::string> records; /* framed TxnRecord each */
  std::vector<std::string> fenced;
  void encode(WireWriter &w) const {
    w.u32((uint32_t)records.size());
    for (const auto &r : records) w.str(r);
    w.owners(fenced);
  }
};

/* redo log v2 (stored as the data of a shard object while a multi-shard
 * transaction is pending on it; framed, version 2, compat 2):
 *   u64 txid, u64 prev_applied (the shard's `applied` before the
 *   transaction), u32 n, n x { bytes omap key, u8 present, bytes record }
 *   in omap key order, each key once; present 1: the key's new record;
 *   present 0: the key is removed (record empty).
 * Held as the records written (`put`) and the keys removed (`gone`), the
 * two disjoint. Encoded whole into ONE buffer: the OSD stores, and settle
 * reads, a single extent instead of a fragment per record. Decoding keeps
 * the records in the buffer read (shared, not copied). Version 1 (compat
 * 1) was radostdb 0.2's undo log, the same layout holding the OLD records:
 * the class refuses it as not decoding (version < 2), and radostdb check
 * --repair finishes a transaction left pending with one. */
#define RTDB_REDO_VERSION 2
struct RedoLog {
  static const uint8_t VERSION = RTDB_REDO_VERSION, COMPAT = RTDB_REDO_VERSION;
  static const size_t FRAME = 6; /* u8 version, u8 compat, u32 length */
  static const size_t HEAD = 20; /* u64 txid, u64 prev_applied, u32 n */
  static const size_t ENTRY = 9; /* an entry's fixed part: u32 klen, u8 present, u32 rlen */
  uint64_t txid = 0, prev_applied = 0;
  std::map<std::string, ceph::bufferlist> put; /* omap key -> new record */
  std::set<std::string> gone;                  /* omap keys removed */

  /* the framed struct, in one buffer */
  ceph::bufferlist encode() const {
    size_t size = FRAME + HEAD;
    for (const auto &kv : put)
      size += ENTRY + kv.first.size() + kv.second.length();
    for (const auto &k : gone)
      size += ENTRY + k.size();
    ceph::bufferptr bp(size);
    WireSpan w(bp.c_str());
    w.u8(VERSION);
    w.u8(COMPAT);
    w.u32((uint32_t)(size - FRAME));
    w.u64(txid);
    w.u64(prev_applied);
    w.u32((uint32_t)(put.size() + gone.size()));
    auto pi = put.begin();
    auto gi = gone.begin();
    while (pi != put.end() || gi != gone.end()) {
      if (gi == gone.end() || (pi != put.end() && pi->first < *gi)) {
        w.str(pi->first);
        w.u8(1);
        w.bytes(pi->second);
        ++pi;
      } else {
        w.str(*gi);
        w.u8(0);
        w.u32(0);
        ++gi;
      }
    }
    ceph::bufferlist bl;
    bl.append(std::move(bp));
    return bl;
  }
  /* a stored log: the framed struct at the start of `bl` (made contiguous;
   * the records stay in it); false if it does not decode or is version 1 */
  bool decode(ceph::bufferlist &bl) {
    const char *base = bl.c_str();
    WireReader rd(base, bl.length()), b;
    uint8_t version;
    uint32_t n;
    if (rd.open(VERSION, &b, &version) < 0 || version < VERSION || !b.u64(&txid) ||
        !b.u64(&prev_applied) || !b.count(&n, ENTRY))
      return false;
    for (uint32_t i = 0; i < n; i++) {
      std::string k;
      uint8_t present;
      const char *v;
      uint32_t vlen;
      if (!b.str(&k) || !b.u8(&present) || !b.bytes(&v, &vlen))
        return false;
      if (present) {
        ceph::bufferlist rec;
        rec.substr_of(bl, (unsigned)(v - base), vlen);
        put.emplace_hint(put.end(), std::move(k), std::move(rec)); /* in key order: at the end */
      } else {
        gone.emplace_hint(gone.end(), std::move(k));
      }
    }
    return true;
  }
  /* txid and prev_applied only, from the first FRAME + HEAD bytes `p` of a
   * stored log (its length and entries unchecked: rollback drops them
   * unread); false if they are short or not of a version 2 log */
  bool decode_head(const char *p, size_t len) {
    WireReader rd(p, len);
    uint8_t version, compat;
    uint32_t body;
    return len >= FRAME + HEAD && rd.u8(&version) && rd.u8(&compat) && rd.u32(&body) &&
           version >= VERSION && compat <= VERSION && rd.u64(&txid) && rd.u64(&prev_applied);
  }
};

/* ---- resharding (reshard.cc) ---- */

/* split_begin v1: owner (the resharder), u8 wflags (ASSERT_LOCK, RELEASE),
 * u32 index (this shard), u64 modulus (its keys' before the split), u32
 * child (the new shard: index + modulus), u64 child_modulus (2 x modulus) */
struct SplitBeginReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  uint8_t wflags = 0;
  uint32_t index = 0, child = 0;
  uint64_t modulus = 0, child_modulus = 0;
  bool decode(WireReader &rd) {
    return rd.owner(&owner) && rd.u8(&wflags) && rd.u32(&index) && rd.u64(&modulus) &&
           rd.u32(&child) && rd.u64(&child_modulus) &&
           !(wflags & ~(RTDB_WRITE_ASSERT_LOCK | RTDB_WRITE_RELEASE)) && modulus > index &&
           child == index + modulus && child_modulus == 2 * modulus &&
           child_modulus < RTDB_NO_SHARD;
  }
};

/* split_page v1: bytes after (an encoded key; empty: from the start),
 * u32 max records (> 0) */
struct SplitPageReq {
  static const uint8_t VERSION = 1;
  std::string after;
  uint32_t max = 0;
  bool decode(WireReader &rd) { return rd.str(&after) && rd.u32(&max) && max > 0; }
};

/* A record moving between shards: its encoded key and the record as stored. */
struct MovingRecord {
  std::string okey;
  ceph::bufferlist record;
};

/* split_page reply v1: bytes upto (the last encoded key looked at; empty:
 * none), u8 end (no key after it), u32 n, n x { bytes okey, bytes record }
 * (the moving keys in (after, upto], in key order) */
struct SplitPageReply {
  static const uint8_t VERSION = 1, COMPAT = 1;
  std::string upto;
  uint8_t end = 0;
  std::vector<MovingRecord> records;
  void encode(WireWriter &w) const {
    w.str(upto);
    w.u8(end);
    w.u32((uint32_t)records.size());
    for (const auto &m : records) {
      w.str(m.okey);
      w.bytes(const_cast<ceph::bufferlist &>(m.record).c_str(), m.record.length());
    }
  }
};

/* split_absorb v1: owner, u8 takeover (1: the owner takes the new shard
 * over from another resharder), u32 index (this, the new shard), u64
 * modulus (its), bytes after, bytes upto, u8 end (upto is the end of the
 * parent's keys), u32 n, n x { bytes okey, bytes record } */
struct SplitAbsorbReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  uint8_t takeover = 0;
  uint32_t index = 0;
  uint64_t modulus = 0;
  std::string after, upto;
  uint8_t end = 0;
  std::vector<MovingRecord> records;
  bool decode(WireReader &rd) {
    uint32_t n;
    if (!rd.owner(&owner) || !rd.u8(&takeover) || !rd.u32(&index) || !rd.u64(&modulus) ||
        !rd.str(&after) || !rd.str(&upto) || !rd.u8(&end) || !rd.count(&n, 8) ||
        takeover > 1 || end > 1 || !modulus || index >= modulus)
      return false;
    records.resize(n);
    for (auto &m : records) {
      const char *p;
      uint32_t len;
      if (!rd.str(&m.okey) || !rd.bytes(&p, &len) || m.okey.empty())
        return false;
      m.record.append(p, len);
    }
    return true;
  }
};

/* split_advance v1: owner, u8 wflags (ASSERT_LOCK, RELEASE), bytes after
 * (the shard's moved_upto), bytes upto, u8 end, u32 n, n x { bytes okey,
 * bytes head (the record's first RTDB_REC_HDR bytes, as split_page read
 * it: they change with every write of the record) } */
struct SplitAdvanceReq {
  static const uint8_t VERSION = 1;
  std::string owner;
  uint8_t wflags = 0;
  std::string after, upto;
  uint8_t end = 0;
  std::vector<std::pair<std::string, std::string>> heads;
  bool decode(WireReader &rd) {
    uint32_t n;
    if (!rd.owner(&owner) || !rd.u8(&wflags) || !rd.str(&after) || !rd.str(&upto) ||
        !rd.u8(&end) || !rd.count(&n, 8) || end > 1 ||
        (wflags & ~(RTDB_WRITE_ASSERT_LOCK | RTDB_WRITE_RELEASE)))
      return false;
    heads.resize(n);
    for (auto &h : heads)
      if (!rd.str(&h.first) || !rd.str(&h.second))
        return false;
    return true;
  }
};

/* count v1: u32 limit; reply v1: u32 count (records in the shard, counted
 * up to limit + 1: more than limit) */
struct CountReq {
  static const uint8_t VERSION = 1;
  uint32_t limit = 0;
  bool decode(WireReader &rd) { return rd.u32(&limit) && limit < RTDB_NO_SHARD; }
};
struct CountReply {
  static const uint8_t VERSION = 1, COMPAT = 1;
  uint32_t count = 0;
  void encode(WireWriter &w) const { w.u32(count); }
};

/* fence_epoch v1: u64 epoch (non-zero) */
struct EpochReq {
  static const uint8_t VERSION = 1;
  uint64_t epoch = 0;
  bool decode(WireReader &rd) { return rd.u64(&epoch) && epoch != 0; }
};

#endif
