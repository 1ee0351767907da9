/*
 * radostdb class: multi-shard transactions. The redo log of a shard
 * (methods settle, rollback; apply writes it, records.cc) and the journal
 * object (methods stage, txn_abort, txn_mark, fence_owners, journal).
 *
 * transaction design (the OSD's part; the protocol is in radostdb/commit.py):
 * - A multi-shard transaction X commits in ONE parallel round: `stage(X)` on
 *   the journal object and `apply(X)` on every touched shard. Each apply
 *   checks its part as a plain write would, stores the records it would
 *   write and the keys it would remove as a redo log (the object's data;
 *   the omap is not touched) and marks the shard pending = X with X's
 *   committer and participants. X is committed when the journal holds X
 *   (STAGED or COMPLETE) and every participant has X (pending, applied or
 *   settled X); it is aborted when the journal says ABORTED. Exactly one of
 *   stage and txn_abort can create X's record, so the two outcomes exclude
 *   each other.
 * - While a shard is pending X, reads return the pending info instead of
 *   data (unless the caller says it knows X is committed: `accept`; it then
 *   reads through the redo log), so a reader never sees half a commit; the
 *   client decides X's outcome and settles or rolls the shard back.
 *   `settle` installs the redo log into the omap and drops it; `rollback`
 *   drops it, or, on a shard X never reached, fences X there (a late apply
 *   of X is refused with -ECANCELED), so a decision "aborted" cannot be
 *   overtaken by an apply still in flight. A commit thus never reads the
 *   old records: its cost on the OSD is that of the plain writes plus one
 *   object write.
 * - The committer settles lazily: its next write to the shard carries
 *   `settle = X`, and its release of the shard settles it too.
 * - The redo log (ops.h RedoLog) is written in one piece and read back
 *   whole by settle and by reads through it, only its head by rollback.
 *   A shard has object data exactly while a transaction is pending on it.
 * - The journal object holds one omap record per transaction ("t." + txid
 *   in hex: ops.h TxnRecord) and one key per fenced owner ("f." + owner in
 *   hex, its value the time fenced). A fenced owner (a stale owner, types.h:
 *   a committer presumed dead) stages nothing more, so it cannot commit
 *   behind the client that decided its transactions.
 */
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <string>

#include "server.h"

/* ---- the redo log (object data while a transaction is pending) ---- */

int write_redo(cls_method_context_t hctx, const RedoLog &log)
{
  ceph::bufferlist bl = log.encode();
  return cls_cxx_write_full(hctx, &bl);
}

int read_redo(cls_method_context_t hctx, uint64_t txid, RedoLog *log, bool head_only)
{
  uint64_t size;
  time_t mtime;
  int r = cls_cxx_stat(hctx, &size, &mtime);
  if (r < 0)
    return r;
  uint64_t len = head_only ? std::min<uint64_t>(size, RedoLog::FRAME + RedoLog::HEAD) : size;
  ceph::bufferlist bl;
  r = cls_cxx_read(hctx, 0, (int)len, &bl);
  if (r < 0)
    return r;
  bool ok = head_only ? log->decode_head(bl.c_str(), bl.length()) : log->decode(bl);
  return ok && log->txid == txid ? 0 : -EIO;
}

int settle_pending(cls_method_context_t hctx, rtdb_shard_hdr *h, RedoLog *log)
{
  int r = read_redo(hctx, h->pending, log);
  if (r < 0)
    return refuse("settle", r, "the redo log of %llx does not decode",
                  (unsigned long long)h->pending);
  for (const auto &k : log->gone) {
    r = cls_cxx_map_remove_key(hctx, k);
    if (r < 0 && r != -ENOENT)
      return r;
  }
  if (!log->put.empty()) {
    r = cls_cxx_map_set_vals(hctx, &log->put);
    if (r < 0)
      return r;
  }
  h->settled = h->pending;
  h->pending = 0;
  h->powner.assign(RTDB_OWNER_LEN, '\0');
  h->participants.clear();
  return cls_cxx_truncate(hctx, 0);
}

/*
 * settle (write) TxidReq: installs pending txid's redo log, clears pending;
 * a no-op if the shard is not pending txid. A missing object stays missing.
 */
int settle(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  TxidReq req;
  Shard s;
  int r = open_object(hctx, "settle", in, &req, OPEN_IF_EXISTS | OPEN_HEADER, &s);
  if (r <= 0)
    return r;
  if (s.h.pending != req.txid)
    return 0;
  RedoLog log;
  r = settle_pending(hctx, &s.h, &log);
  if (r < 0)
    return r;
  return write_shard_hdr(hctx, s.h);
}

/*
 * rollback (write) TxidReq: pending txid: drops its redo log, seq + 1,
 * fences txid. txid settled or applied here: -EEXIST (it committed).
 * Otherwise fences txid. Idempotent.
 */
int rollback(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  TxidReq req;
  Shard s;
  int r = open_object(hctx, "rollback", in, &req, OPEN_HEADER, &s);
  if (r <= 0)
    return r;
  if (s.h.pending == req.txid) {
    RedoLog log; /* its head: the records are dropped unread */
    r = read_redo(hctx, req.txid, &log, true);
    if (r < 0)
      return refuse("rollback", r, "the redo log does not decode");
    s.h.pending = 0;
    s.h.applied = log.prev_applied;
    s.h.powner.assign(RTDB_OWNER_LEN, '\0');
    s.h.participants.clear();
    s.h.seq++;
    r = cls_cxx_truncate(hctx, 0);
    if (r < 0)
      return r;
  } else if (s.h.has(req.txid)) {
    return refuse("rollback", -EEXIST, "transaction %llx settled here",
                  (unsigned long long)req.txid);
  } else if (s.h.aborted == req.txid) {
    return 0;
  }
  s.h.aborted = req.txid;
  return write_shard_hdr(hctx, s.h);
}

/* ---- the journal object ---- */

static std::string txn_key(uint64_t txid)
{
  char buf[24];
  snprintf(buf, sizeof buf, "t.%016llx", (unsigned long long)txid);
  return buf;
}

static std::string fence_key(const std::string &owner)
{
  static const char hex[] = "0123456789abcdef";
  std::string k = "f.";
  for (unsigned char c : owner) {
    k.push_back(hex[c >> 4]);
    k.push_back(hex[c & 15]);
  }
  return k;
}

/* The owner a fence key names; false if the key is not fence_key's output
 * (stored data that does not decode). */
static bool owner_of_fence_key(const std::string &key, std::string *owner)
{
  auto nibble = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (key.size() != 2 + 2 * RTDB_OWNER_LEN || key.compare(0, 2, "f.") != 0)
    return false;
  owner->clear();
  for (size_t i = 2; i < key.size(); i += 2) {
    int hi = nibble(key[i]), lo = nibble(key[i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    owner->push_back((char)(hi << 4 | lo));
  }
  return true;
}

static ceph::bufferlist encode_record(const TxnRecord &rec)
{
  WireWriter b, all;
  rec.encode(b);
  all.framed(TxnRecord::VERSION, TxnRecord::COMPAT, b.s);
  ceph::bufferlist bl;
  bl.append(all.s.data(), all.s.size());
  return bl;
}

/* Read record txid: 0, -ENOENT (none), -EIO (does not decode). */
static int read_record(cls_method_context_t hctx, uint64_t txid, TxnRecord *rec)
{
  ceph::bufferlist bl;
  int r = cls_cxx_map_get_val(hctx, txn_key(txid), &bl);
  if (r < 0)
    return r;
  WireReader rd(bl.c_str(), bl.length()), b;
  if (rd.open(TxnRecord::VERSION, &b) < 0 || !rec->decode(b))
    return -EIO;
  return 0;
}

/* STAGED -> COMPLETE for `complete`, remove `forget` (added to `set`/`rm`). */
static int mark_records(cls_method_context_t hctx, const std::vector<uint64_t> &complete,
                        const std::vector<uint64_t> &forget,
                        std::map<std::string, ceph::bufferlist> *set, std::set<std::string> *rm)
{
  for (uint64_t t : complete) {
    TxnRecord rec;
    int r = read_record(hctx, t, &rec);
    if (r == -ENOENT)
      continue;
    if (r < 0)
      return r;
    if (rec.state == RTDB_TXN_STAGED) {
      rec.state = RTDB_TXN_COMPLETE;
      (*set)[txn_key(t)] = encode_record(rec);
    }
  }
  for (uint64_t t : forget) {
    set->erase(txn_key(t));
    rm->insert(txn_key(t));
  }
  return 0;
}

static int apply_marks(cls_method_context_t hctx, std::map<std::string, ceph::bufferlist> &set,
                       const std::set<std::string> &rm)
{
  for (const auto &k : rm) {
    int r = cls_cxx_map_remove_key(hctx, k);
    if (r < 0 && r != -ENOENT)
      return r;
  }
  return set.empty() ? 0 : cls_cxx_map_set_vals(hctx, &set);
}

/*
 * stage (write) StageReq: creates record txid STAGED. -ECANCELED the
 * owner is fenced; -EEXIST a record txid exists (it was aborted). Also
 * marks `complete` records COMPLETE and removes `forget` records.
 */
int stage(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  StageReq req;
  int r = open_object(hctx, "stage", in, &req, OPEN_REQUEST);
  if (r <= 0)
    return r;
  ceph::bufferlist fenced;
  r = cls_cxx_map_get_val(hctx, fence_key(req.owner), &fenced);
  if (r == 0)
    return refuse("stage", -ECANCELED, "the owner is fenced");
  if (r < 0 && r != -ENOENT)
    return r;
  TxnRecord rec;
  r = read_record(hctx, req.txid, &rec);
  if (r == 0)
    return refuse("stage", -EEXIST, "transaction %llx has a record (state %d)",
                  (unsigned long long)req.txid, rec.state);
  if (r != -ENOENT)
    return r;
  std::map<std::string, ceph::bufferlist> set;
  std::set<std::string> rm;
  r = mark_records(hctx, req.complete, req.forget, &set, &rm);
  if (r < 0)
    return r;
  rec.txid = req.txid;
  rec.state = RTDB_TXN_STAGED;
  rec.owner = req.owner;
  rec.time_ms = now_ms();
  rec.participants = req.participants;
  set[txn_key(req.txid)] = encode_record(rec);
  return apply_marks(hctx, set, rm);
}

/*
 * txn_abort (write) TxnAbortReq: record txid becomes (or is created)
 * ABORTED; -EEXIST it is COMPLETE. Idempotent.
 */
int txn_abort(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  TxnAbortReq req;
  int r = open_object(hctx, "txn_abort", in, &req, OPEN_REQUEST);
  if (r <= 0)
    return r;
  TxnRecord rec;
  r = read_record(hctx, req.txid, &rec);
  if (r == 0 && rec.state == RTDB_TXN_ABORTED)
    return 0;
  if (r == 0 && rec.state == RTDB_TXN_COMPLETE)
    return refuse("txn_abort", -EEXIST, "transaction %llx is complete",
                  (unsigned long long)req.txid);
  if (r == -ENOENT) {
    rec.txid = req.txid;
    rec.owner = req.owner;
    rec.participants = req.participants;
  } else if (r < 0) {
    return r;
  }
  rec.state = RTDB_TXN_ABORTED;
  rec.time_ms = now_ms();
  ceph::bufferlist bl = encode_record(rec);
  return cls_cxx_map_set_val(hctx, txn_key(req.txid), &bl);
}

/*
 * txn_mark (write) TxnMarkReq: STAGED -> COMPLETE for `complete`, removes
 * `forget`. A missing journal stays missing.
 */
int txn_mark(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  TxnMarkReq req;
  int r = open_object(hctx, "txn_mark", in, &req, OPEN_IF_EXISTS);
  if (r <= 0)
    return r;
  std::map<std::string, ceph::bufferlist> set;
  std::set<std::string> rm;
  r = mark_records(hctx, req.complete, req.forget, &set, &rm);
  if (r < 0)
    return r;
  return apply_marks(hctx, set, rm);
}

/* fence_owners (write) OwnersReq: later stages by these owners get -ECANCELED. */
int fence_owners(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  OwnersReq req;
  int r = open_object(hctx, "fence_owners", in, &req, OPEN_REQUEST);
  if (r <= 0)
    return r;
  if (req.owners.empty())
    return 0;
  std::map<std::string, ceph::bufferlist> set;
  WireWriter t;
  t.u64(now_ms());
  for (const auto &o : req.owners)
    set[fence_key(o)].append(t.s.data(), t.s.size());
  return cls_cxx_map_set_vals(hctx, &set);
}

/*
 * journal (read) JournalReq -> JournalReply: the record txid, or all
 * records and fenced owners (txid 0). -EIO a fence key that does not
 * decode.
 */
int journal(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  JournalReq req;
  int r = open_object(hctx, "journal", in, &req, OPEN_REQUEST);
  if (r <= 0)
    return r;
  JournalReply reply;
  auto add = [&](const ceph::bufferlist &bl) {
    reply.records.emplace_back(const_cast<ceph::bufferlist &>(bl).c_str(), bl.length());
  };
  if (req.txid) {
    ceph::bufferlist bl;
    r = cls_cxx_map_get_val(hctx, txn_key(req.txid), &bl);
    if (r == 0)
      add(bl);
    else if (r != -ENOENT)
      return r;
    put_reply(out, reply);
    return 0;
  }
  std::string after;
  bool more = true;
  while (more) {
    std::map<std::string, ceph::bufferlist> vals;
    r = cls_cxx_map_get_vals(hctx, after, "", 1000, &vals, &more);
    if (r < 0)
      return r;
    if (vals.empty())
      break;
    for (const auto &kv : vals) {
      if (kv.first.compare(0, 2, "t.") == 0) {
        add(kv.second);
      } else if (kv.first.compare(0, 2, "f.") == 0 && kv.first.size() == 2 + 2 * RTDB_OWNER_LEN) {
        std::string owner;
        if (!owner_of_fence_key(kv.first, &owner))
          return refuse("journal", -EIO, "fence key %s does not decode", kv.first.c_str());
        reply.fenced.push_back(owner);
      } else {
        /* a radostdb 0.1 journal (txid, state, part.*): reported as one
         * record with txid 0 so the client can refuse it clearly */
        if (reply.records.empty() || !reply.records.back().empty())
          reply.records.emplace_back();
      }
      after = kv.first;
    }
  }
  put_reply(out, reply);
  return 0;
}
