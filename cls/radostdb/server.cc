/*
 * radostdb object class: the OSD side of radostdb.
 *
 * class design:
 * - A database is a header object, shard objects whose omap holds the
 *   records, and a journal object for multi-shard commits. Every change of
 *   a shard goes through a method below, so the decision (INSERT on an
 *   existing key, MODIFY/DELETE of a missing one), the lock check, the record
 *   header and the shard sequence number are applied in ONE atomic OSD
 *   operation, in one round trip.
 * - Reads inside one method do not see that method's own pending writes (an
 *   OSD property), so `apply` keeps an overlay of the records it changed and
 *   writes them all at the end.
 * - A method that fails returns a negative errno and changes nothing: the OSD
 *   drops the whole compound operation. Write methods can return neither
 *   data nor positive values to python-rados clients, so an outcome a client
 *   must learn (granted or queued) is read back with `state`, sent right
 *   behind the write on the same object (the OSD orders it after the write).
 * - Every refusal is logged with cls_log at level 20 (debug) naming the
 *   method and the reason.
 * - Locks, their queue and their conflicts: locks.h. The header layout:
 *   types.h. The wire structs: ops.h.
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
 *
 * Errors: -EINVAL malformed request; -EOPNOTSUPP a struct newer than this
 * class knows; -EIO stored data that does not decode (a corrupt record,
 * header or redo log); -EBUSY a conflicting lock (nothing changed);
 * -EUCLEAN the object needs a client's decision first (a pending transaction
 * or stale owners); -ENOLCK a lock the request relies on is not held;
 * -ECANCELED a fenced transaction or owner; -EEXIST/-ENOENT record or journal
 * state as described per method.
 *
 * Methods (requests and replies: ops.h; "owner" is the calling handle):
 *
 * version (read)     reply: the wire version as ASCII digits ("2"). The OSD
 *                    answers -ENOENT before the class runs on a missing object.
 * apply (write)      ApplyReq: entries applied in order, atomically, one seq
 *                    bump for the batch, each written record stamped with it.
 *   - settle != 0 and the shard is pending `settle`: settled first;
 *     any other pending transaction: -EUCLEAN; stale owners: -EUCLEAN.
 *   - txid != 0: a part of multi-shard transaction txid: -ECANCELED if
 *     fenced here; a no-op if txid already reached the shard; else checked
 *     and kept as the shard's redo log (the omap unchanged), and the shard
 *     becomes pending txid.
 *   - wflags ASSERT_TXN: the owner holds ISOLATION here (-ENOLCK) and no
 *     other owner holds a record lock on a key written, a shard lock or a
 *     COMMIT lock (-EBUSY). ASSERT_LOCK: the owner holds a record lock on
 *     every key or a shard lock (-ENOLCK) and no other holder conflicts
 *     (-EBUSY). Neither: a write of each key must be grantable as a RECORD
 *     EXCL request, queue included (-EBUSY). RELEASE: then drop the owner's
 *     exclusive locks that covered the write and grant waiters.
 *   - per entry: -EEXIST INSERT of an existing key, -ENOENT MODIFY/DELETE of
 *     a missing one, -EIO APPEND to a record that does not verify,
 *     -EFBIG an APPEND past a record's 4 GiB limit.
 * clear (write)      ClearReq: removes every record, seq + 1; lock rules as
 *                    apply for a SHARD EXCL write (-ENOLCK, -EBUSY), pending
 *                    and stale rules as apply (-EUCLEAN); a missing object
 *                    stays missing.
 * settle (write)     TxidReq: installs pending txid's redo log, clears pending;
 *                    a no-op if the shard is not pending txid.
 * rollback (write)   TxidReq: pending txid: drops its redo log, seq + 1,
 *                    fences txid. txid settled or applied here: -EEXIST
 *                    (it committed). Otherwise fences txid. Idempotent.
 * reset (write)      EmptyReq: replaces the header with a fresh one whose seq
 *                    is past every record's (locks, queue, pending state and
 *                    redo log dropped): the repair of a header that does not
 *                    decode (radostdb check --repair).
 * get (read)         GetReq -> GetReply: FOUND with the record; MISSING;
 *                    TOO_BIG with the reply size needed; PENDING with the
 *                    pending info when the shard is pending a transaction
 *                    other than `accept` (pending `accept`: read through
 *                    its redo log). A missing object: -ENOENT.
 * list (read)        ListReq -> ListReply: a page of records after an encoded
 *                    key, in omap order, at most `max` records and about
 *                    `maxbytes` (at least one record; through a pending
 *                    `accept`'s redo log); or PENDING as for get.
 * seq (read)         EmptyReq -> SeqReply (0 for an object without header).
 * bump (write)       EmptyReq: seq + 1 (increment_seqnum on the header object).
 * lock (write)       LockReq: grants (or renews) the lock when grantable;
 *                    else with QUEUE appends a waiter (or renews it) and
 *                    returns 0, without it -EBUSY. Stale owners: -EUCLEAN.
 * unlock (write)     UnlockReq: drops the owner's entry (held or queued),
 *                    grants waiters. -ENOLCK no such entry (never taken, or
 *                    expired).
 * release (write)    ReleaseReq: drops every entry of the owner of `kind` (0:
 *                    any; queued ones too unless KEEP_WAITS), settles `settle` if pending,
 *                    grants waiters. Always 0; a missing object stays missing.
 * renew (write)      RenewReq: every entry of the owner expires its lease
 *                    from now; then prune and grant. -ENOLCK the owner has
 *                    no entry left (its lease ran out: the locks are lost).
 * prune (write)      PruneReq: drops expired entries, grants waiters; with
 *                    CLEAR_STALE forgets the named stale owners first.
 * state (read)       EmptyReq -> StateReply: OSD time, object version, header.
 * watchers (read)    EmptyReq -> WatchersReply.
 * journal object:
 * stage (write)      StageReq: creates record txid STAGED. -ECANCELED the
 *                    owner is fenced; -EEXIST a record txid exists (it was
 *                    aborted). Also marks `complete` records COMPLETE and
 *                    removes `forget` records.
 * txn_abort (write)  TxnAbortReq: record txid becomes (or is created)
 *                    ABORTED; -EEXIST it is COMPLETE. Idempotent.
 * txn_mark (write)   TxnMarkReq: STAGED -> COMPLETE for `complete`, removes
 *                    `forget`. A missing journal stays missing.
 * fence_owners (write) OwnersReq: later stages by these owners get -ECANCELED.
 * journal (read)     JournalReq -> JournalReply: the record txid, or all
 *                    records and fenced owners (txid 0). -EIO a fence key
 *                    that does not decode.
 */
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <list>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "objclass.h"
#include "ops.h"
#include "types.h"

#include "codec.c"
#include "locks.h"

/* ---- watcher listing: layout-compatible with the OSD's own types ---- */
struct watch_item_t {
  uint8_t name_type;     /* entity_name_t */
  int64_t name_num;
  uint64_t cookie;
  uint32_t timeout_seconds;
  unsigned char addr[36]; /* entity_addr_t */
};
static_assert(sizeof(watch_item_t) == 64, "watch_item_t layout");
struct obj_list_watch_response_t {
  std::list<watch_item_t> entries;
};
int cls_cxx_list_watchers(cls_method_context_t hctx, obj_list_watch_response_t *watchers);

/* Log a refusal (debug level) and return it. */
static int refuse(const char *method, int err, const char *fmt, ...)
    __attribute__((__format__(printf, 3, 4)));
static int refuse(const char *method, int err, const char *fmt, ...)
{
  char why[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  cls_log(20, "radostdb %s: %d: %s", method, err, why);
  return err;
}

/* A shard never written has no object; methods that only clean up leave it so. */
static bool object_missing(cls_method_context_t hctx)
{
  uint64_t size;
  time_t mtime;
  return cls_cxx_stat(hctx, &size, &mtime) == -ENOENT;
}

/* Parse a request, logging a refusal. */
template <class T>
static int parse(const char *method, ceph::bufferlist *in, T *req)
{
  int r = parse_request(in, req);
  if (r < 0)
    return refuse(method, r, "malformed request (%u bytes)", in->length());
  return 0;
}

/* ---- records ---- */
static std::string omap_key(const char *key, uint32_t klen)
{
  std::string out;
  out.resize((size_t)klen * 2 + 1); /* >= 1: the empty key encodes to "\x01" */
  size_t n = rtdb_key_encode((const uint8_t *)key, klen, (uint8_t *)&out[0]);
  out.resize(n);
  return out;
}

/* Records are carved from one buffer per call (`arena`, sized for every
 * record of the request): one allocation, not one per record. */
static ceph::bufferlist make_record(ceph::bufferptr &arena, size_t *used, uint64_t rseq,
                                    const char *key, uint32_t klen, const char *data,
                                    uint32_t dlen)
{
  size_t len = RTDB_REC_HDR + (size_t)dlen;
  ceph::bufferptr bp = *used + len <= arena.length()
                           ? ceph::bufferptr(arena, (unsigned)*used, (unsigned)len)
                           : ceph::bufferptr(len); /* not reached: the arena fits all */
  *used += len;
  rtdb_record_encode(rseq, 0, (const uint8_t *)key, klen, (const uint8_t *)data, dlen,
                     (uint8_t *)bp.c_str());
  ceph::bufferlist bl;
  bl.append(std::move(bp));
  return bl;
}

/* Append to a stored record, verified first: new header, old data, new data,
 * crc extended from the verified old one. */
static int extend_record(uint64_t rseq, const std::string &okey, ceph::bufferlist &old,
                         const char *data, uint32_t dlen, ceph::bufferlist *out)
{
  std::string raw(okey.size(), '\0');
  long klen = rtdb_key_decode((const uint8_t *)okey.data(), okey.size(), (uint8_t *)&raw[0]);
  if (klen < 0)
    return -EIO;
  uint64_t oseq;
  uint8_t oflags;
  size_t doff, olen;
  const uint8_t *p = (const uint8_t *)old.c_str();
  if (rtdb_record_decode((const uint8_t *)raw.data(), (size_t)klen, p, old.length(), &oseq,
                         &oflags, &doff, &olen) != RTDB_OK)
    return -EIO;
  if ((uint64_t)olen + dlen > 0xffffffffULL - RTDB_REC_HDR)
    return -EFBIG;
  uint32_t ocrc = (uint32_t)p[16] | (uint32_t)p[17] << 8 | (uint32_t)p[18] << 16 |
                  (uint32_t)p[19] << 24;
  WireWriter hdr;
  hdr.u8(RTDB_FORMAT_VERSION);
  hdr.u8(oflags);
  hdr.u8(0);
  hdr.u8(0);
  hdr.u64(rseq);
  hdr.u32((uint32_t)(olen + dlen));
  hdr.u32(rtdb_crc32c(ocrc, (const uint8_t *)data, dlen));
  out->clear();
  out->append(hdr.s.data(), hdr.s.size());
  out->append((const char *)p + doff, olen);
  out->append(data, dlen);
  return 0;
}

/* ---- the redo log (object data while a transaction is pending) ----
 * A part of multi-shard transaction X does not touch the omap: `apply`
 * stores the records it would write and the keys it would remove as the
 * object's data (ops.h: redo log v2, sorted by omap key); `settle` installs
 * them into the omap, `rollback` drops them. Reading the old records (what
 * an undo log needs) is no longer part of a commit. */
static const size_t REDO_FRAME = 6;  /* u8 version, u8 compat, u32 length */
static const size_t REDO_HEAD = 20;  /* u64 txid, u64 previous applied, u32 n */
static const size_t REDO_ENTRY = 9;  /* an entry's fixed part: u32 klen, u8 present, u32 rlen */

struct RedoLog {
  uint64_t txid = 0, prev_applied = 0;
  std::map<std::string, ceph::bufferlist> put; /* omap key -> new record */
  std::set<std::string> gone;                  /* omap keys removed */
};

static int write_redo(cls_method_context_t hctx, uint64_t txid, uint64_t prev_applied,
                      const std::map<std::string, ceph::bufferlist> &set,
                      const std::set<std::string> &gone)
{
  /* one contiguous buffer: the OSD stores, and settle reads, a single
   * extent instead of a fragment per record */
  size_t size = REDO_FRAME + REDO_HEAD;
  for (const auto &kv : set)
    size += REDO_ENTRY + kv.first.size() + kv.second.length();
  for (const auto &k : gone)
    size += REDO_ENTRY + k.size();
  ceph::bufferptr bp(size);
  char *p = bp.c_str();
  auto u8 = [&p](uint8_t v) { *p++ = (char)v; };
  auto u32 = [&p](uint32_t v) {
    for (int i = 0; i < 4; i++)
      *p++ = (char)(v >> (8 * i));
  };
  auto u64 = [&p](uint64_t v) {
    for (int i = 0; i < 8; i++)
      *p++ = (char)(v >> (8 * i));
  };
  auto str = [&p, &u32](const std::string &k) {
    u32((uint32_t)k.size());
    memcpy(p, k.data(), k.size());
    p += k.size();
  };
  u8(RTDB_REDO_VERSION);
  u8(RTDB_REDO_VERSION);
  u32((uint32_t)(size - REDO_FRAME));
  u64(txid);
  u64(prev_applied);
  u32((uint32_t)(set.size() + gone.size()));
  auto si = set.begin();
  auto gi = gone.begin();
  while (si != set.end() || gi != gone.end()) {
    bool put = gi == gone.end() || (si != set.end() && si->first < *gi);
    if (put) {
      str(si->first);
      u8(1);
      u32(si->second.length());
      si->second.begin().copy(si->second.length(), p);
      p += si->second.length();
      ++si;
    } else {
      str(*gi);
      u8(0);
      u32(0);
      ++gi;
    }
  }
  ceph::bufferlist bl;
  bl.append(std::move(bp));
  return cls_cxx_write_full(hctx, &bl);
}

/* Read the redo log of txid (only its head when `head_only`): -EIO if it
 * does not decode, is of another transaction or is an undo log (version 1,
 * radostdb 0.2). */
static int read_redo(cls_method_context_t hctx, uint64_t txid, RedoLog *log,
                     bool head_only = false)
{
  uint64_t size;
  time_t mtime;
  int r = cls_cxx_stat(hctx, &size, &mtime);
  if (r < 0)
    return r;
  ceph::bufferlist bl;
  r = cls_cxx_read(hctx, 0, (int)(head_only ? std::min<uint64_t>(size, REDO_FRAME + REDO_HEAD) : size), &bl);
  if (r < 0)
    return r;
  const char *p = bl.c_str();
  if (head_only) {
    if (bl.length() < REDO_FRAME + REDO_HEAD || (uint8_t)p[0] < RTDB_REDO_VERSION ||
        (uint8_t)p[1] > RTDB_REDO_VERSION)
      return -EIO;
    WireReader hd(p + REDO_FRAME, REDO_HEAD);
    if (!hd.u64(&log->txid) || !hd.u64(&log->prev_applied) || log->txid != txid)
      return -EIO;
    return 0;
  }
  WireReader rd(p, bl.length()), b;
  uint8_t version;
  uint32_t n;
  if (rd.open(RTDB_REDO_VERSION, &b, &version) < 0 || version < RTDB_REDO_VERSION ||
      !b.u64(&log->txid) || !b.u64(&log->prev_applied) || !b.count(&n, REDO_ENTRY) || log->txid != txid)
    return -EIO;
  /* the records stay in the buffer read (shared, not copied); entries come
   * in key order, so each is inserted at the end */
  for (uint32_t i = 0; i < n; i++) {
    std::string k;
    uint8_t present;
    const char *v;
    uint32_t vlen;
    if (!b.str(&k) || !b.u8(&present) || !b.bytes(&v, &vlen))
      return -EIO;
    if (present) {
      ceph::bufferlist rec;
      rec.substr_of(bl, (unsigned)(v - p), vlen);
      log->put.emplace_hint(log->put.end(), std::move(k), std::move(rec));
    } else {
      log->gone.emplace_hint(log->gone.end(), std::move(k));
    }
  }
  return 0;
}

/* Settle the pending transaction: install its redo log into the omap, drop
 * the log, and mark it settled in the header (the caller writes it). The
 * installed records are left in `log` for a caller that reads on: reads in
 * one method do not see its own writes. */
static int settle_pending(cls_method_context_t hctx, rtdb_shard_hdr *h, RedoLog *log)
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

/* Refuse writes while stale owners are listed. */
static int not_stale(const char *method, const rtdb_shard_hdr &h)
{
  if (!h.stale.empty())
    return refuse(method, -EUCLEAN, "%zu stale owner(s)", h.stale.size());
  return 0;
}

/* The pending check of apply and clear (after the lock checks, so a write
 * blocked by a live transaction queues instead): settle `settle` if it is
 * pending, refuse any other pending transaction. */
static int writable(cls_method_context_t hctx, const char *method, rtdb_shard_hdr *h,
                    uint64_t settle, RedoLog *installed)
{
  if (!h->pending)
    return 0;
  if (h->pending != settle)
    return refuse(method, -EUCLEAN, "transaction %llx pending", (unsigned long long)h->pending);
  return settle_pending(hctx, h, installed);
}

/* Lock checks of a write of `keys` (raw) by `owner` (rules at the top). */
static int write_allowed(const char *method, const rtdb_shard_hdr &h, const std::string &owner,
                         uint8_t wflags, const std::vector<std::string> &keys, bool whole)
{
  if (wflags & RTDB_WRITE_ASSERT_TXN) {
    if (!holds(h, owner, RTDB_LOCK_ISOLATION))
      return refuse(method, -ENOLCK, "the writer holds no isolation here");
    for (const auto &e : h.entries) {
      if (e.owner == owner || e.state != RTDB_HELD)
        continue;
      if (e.kind == RTDB_LOCK_SHARD || e.kind == RTDB_LOCK_COMMIT ||
          (e.kind == RTDB_LOCK_RECORD &&
           (whole || std::find(keys.begin(), keys.end(), e.key) != keys.end())))
        return refuse(method, -EBUSY, "a shared lock is held");
    }
    return 0;
  }
  if (h.entries.empty())
    return 0;
  bool assert_lock = wflags & RTDB_WRITE_ASSERT_LOCK;
  if (whole) {
    LockView req{RTDB_LOCK_SHARD, RTDB_LOCK_EXCL, &keys[0]};
    if (assert_lock) {
      bool mine = false;
      for (const auto &e : h.entries)
        mine |= e.owner == owner && e.state == RTDB_HELD && e.kind == RTDB_LOCK_SHARD;
      if (!mine)
        return refuse(method, -ENOLCK, "the writer holds no shard lock");
    }
    if (blocked(h, owner, req, !assert_lock, h.entries.size()))
      return refuse(method, -EBUSY, "the shard is locked");
    return 0;
  }
  for (const auto &k : keys) {
    if (assert_lock && !covers(h, owner, k))
      return refuse(method, -ENOLCK, "the writer holds no lock on a key");
    LockView req{RTDB_LOCK_RECORD, RTDB_LOCK_EXCL, &k};
    if (blocked(h, owner, req, !assert_lock, h.entries.size()))
      return refuse(method, -EBUSY, "a key is locked");
  }
  return 0;
}

/* ---- request handlers ---- */
static int version(cls_method_context_t, ceph::bufferlist *, ceph::bufferlist *out)
{
  out->append(std::to_string(RADOSTDB_WIRE_VERSION));
  return 0;
}

static int apply(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  ApplyReq req;
  int r = parse("apply", in, &req);
  if (r < 0)
    return r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  uint64_t now = now_ms();
  prune_and_grant(&h, now);
  if (req.txid && h.aborted == req.txid)
    return refuse("apply", -ECANCELED, "transaction %llx is fenced",
                  (unsigned long long)req.txid);
  if (req.txid && h.has(req.txid))
    return 0; /* this part reached the shard already */
  r = not_stale("apply", h);
  if (r < 0)
    return r;
  std::vector<std::string> raw;
  raw.reserve(req.entries.size());
  for (const auto &e : req.entries)
    raw.emplace_back(e.key, e.klen);
  r = write_allowed("apply", h, req.owner, req.wflags, raw, false);
  if (r < 0)
    return r;
  RedoLog installed; /* settled by this call: the omap as its reads must see it */
  r = writable(hctx, "apply", &h, req.settle, &installed);
  if (r < 0)
    return r;

  /* one omap read for every key whose old record matters (PUT and DISCARD,
   * the only operations of a transaction's parts, need none) */
  std::vector<std::string> okeys;
  okeys.reserve(req.entries.size());
  std::set<std::string> wanted;
  for (const auto &e : req.entries) {
    okeys.push_back(omap_key(e.key, e.klen));
    if (e.op != RTDB_OP_PUT && e.op != RTDB_OP_DISCARD && !installed.put.count(okeys.back()) &&
        !installed.gone.count(okeys.back()))
      wanted.insert(okeys.back());
  }
  std::map<std::string, ceph::bufferlist> old;
  if (!wanted.empty()) {
    r = cls_cxx_map_get_vals_by_keys(hctx, wanted, &old);
    if (r < 0 && r != -ENOENT)
      return r;
  }

  uint64_t rseq = h.seq + 1;
  size_t arena_size = 0, used = 0;
  for (const auto &e : req.entries)
    if (e.op == RTDB_OP_INSERT || e.op == RTDB_OP_PUT || e.op == RTDB_OP_MODIFY ||
        e.op == RTDB_OP_APPEND)
      arena_size += RTDB_REC_HDR + (size_t)e.dlen;
  ceph::bufferptr arena(arena_size ? arena_size : 1);
  std::map<std::string, ceph::bufferlist> set; /* the overlay: written records */
  std::set<std::string> gone;                  /* and removed ones */
  for (size_t i = 0; i < req.entries.size(); i++) {
    const ApplyEntry &e = req.entries[i];
    const std::string &k = okeys[i];
    bool exists;
    ceph::bufferlist cur;
    auto it = set.find(k);
    if (it != set.end()) {
      exists = true;
      cur = it->second;
    } else if (gone.count(k) || installed.gone.count(k)) {
      exists = false;
    } else if ((it = installed.put.find(k)) != installed.put.end()) {
      exists = true;
      cur = it->second;
    } else {
      auto ot = old.find(k);
      exists = ot != old.end();
      if (exists)
        cur = ot->second;
    }
    bool put = false, remove = false;
    switch (e.op) {
      case RTDB_OP_INSERT:
        if (exists)
          return refuse("apply", -EEXIST, "insert of an existing key");
        put = true;
        break;
      case RTDB_OP_PUT:
        put = true;
        break;
      case RTDB_OP_MODIFY:
        if (!exists)
          return refuse("apply", -ENOENT, "modify of a missing key");
        put = true;
        break;
      case RTDB_OP_APPEND:
        if (exists) {
          ceph::bufferlist out;
          r = extend_record(rseq, k, cur, e.data, e.dlen, &out);
          if (r < 0)
            return refuse("apply", r, "append to a record that does not verify");
          set[k] = std::move(out);
          gone.erase(k);
        } else {
          put = true;
        }
        break;
      case RTDB_OP_DELETE:
        if (!exists)
          return refuse("apply", -ENOENT, "delete of a missing key");
        remove = true;
        break;
      default: /* DISCARD */
        remove = true;
        break;
    }
    if (put) {
      set[k] = make_record(arena, &used, rseq, e.key, e.klen, e.data, e.dlen);
      gone.erase(k);
    } else if (remove) {
      set.erase(k);
      gone.insert(k);
    }
  }
  if (req.txid) {
    /* a part of a multi-shard transaction: kept aside until settled */
    r = write_redo(hctx, req.txid, h.applied, set, gone);
    if (r < 0)
      return r;
    h.applied = req.txid;
    h.pending = req.txid;
    h.powner = req.owner;
    h.participants = req.participants;
  } else {
    for (const auto &k : gone) {
      r = cls_cxx_map_remove_key(hctx, k);
      if (r < 0 && r != -ENOENT)
        return r;
    }
    if (!set.empty()) {
      r = cls_cxx_map_set_vals(hctx, &set);
      if (r < 0)
        return r;
    }
  }
  h.seq = rseq;
  if (req.wflags & RTDB_WRITE_RELEASE) {
    release_covering(&h, req.owner, raw);
    grant_queue(&h, now);
  }
  return write_shard_hdr(hctx, h);
}

static int clear(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  ClearReq req;
  int r = parse("clear", in, &req);
  if (r < 0)
    return r;
  if (object_missing(hctx))
    return 0; /* a shard never written: nothing to clear */
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  uint64_t now = now_ms();
  prune_and_grant(&h, now);
  r = not_stale("clear", h);
  if (r < 0)
    return r;
  std::vector<std::string> none(1);
  r = write_allowed("clear", h, req.owner, req.wflags, none, true);
  if (r < 0)
    return r;
  RedoLog installed;
  r = writable(hctx, "clear", &h, req.settle, &installed);
  if (r < 0)
    return r;
  r = cls_cxx_map_clear(hctx);
  if (r < 0)
    return r;
  h.seq++;
  if (req.wflags & RTDB_WRITE_RELEASE) {
    release_covering(&h, req.owner, {});
    grant_queue(&h, now);
  }
  return write_shard_hdr(hctx, h);
}

static int settle(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  TxidReq req;
  int r = parse("settle", in, &req);
  if (r < 0)
    return r;
  if (object_missing(hctx))
    return 0;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  if (h.pending != req.txid)
    return 0;
  RedoLog log;
  r = settle_pending(hctx, &h, &log);
  if (r < 0)
    return r;
  return write_shard_hdr(hctx, h);
}

static int rollback(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  TxidReq req;
  int r = parse("rollback", in, &req);
  if (r < 0)
    return r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  if (h.pending == req.txid) {
    RedoLog log; /* its head: the records are dropped unread */
    r = read_redo(hctx, req.txid, &log, true);
    if (r < 0)
      return refuse("rollback", r, "the redo log does not decode");
    h.pending = 0;
    h.applied = log.prev_applied;
    h.powner.assign(RTDB_OWNER_LEN, '\0');
    h.participants.clear();
    h.seq++;
    r = cls_cxx_truncate(hctx, 0);
    if (r < 0)
      return r;
  } else if (h.has(req.txid)) {
    return refuse("rollback", -EEXIST, "transaction %llx settled here",
                  (unsigned long long)req.txid);
  } else if (h.aborted == req.txid) {
    return 0;
  }
  h.aborted = req.txid;
  return write_shard_hdr(hctx, h);
}

static int reset(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  EmptyReq req;
  int r = parse("reset", in, &req);
  if (r < 0)
    return r;
  if (object_missing(hctx))
    return 0;
  uint64_t top = 0;
  std::string after;
  bool more = true;
  while (more) {
    std::map<std::string, ceph::bufferlist> vals;
    r = cls_cxx_map_get_vals(hctx, after, "", 1000, &vals, &more);
    if (r < 0)
      return r;
    for (auto &kv : vals) {
      /* only values that decode as records count (the header object's
       * omap holds text fields, not records) */
      std::string raw(kv.first.size(), '\0');
      long klen = rtdb_key_decode((const uint8_t *)kv.first.data(), kv.first.size(),
                                  (uint8_t *)&raw[0]);
      uint64_t rseq;
      uint8_t rflags;
      size_t doff, dlen;
      if (klen >= 0 &&
          rtdb_record_decode((const uint8_t *)raw.data(), (size_t)klen,
                             (const uint8_t *)kv.second.c_str(), kv.second.length(), &rseq,
                             &rflags, &doff, &dlen) == RTDB_OK)
        top = std::max(top, rseq);
      after = kv.first;
    }
    if (vals.empty())
      break;
  }
  rtdb_shard_hdr h;
  h.seq = top + 1;
  r = cls_cxx_truncate(hctx, 0);
  if (r < 0)
    return r;
  return write_shard_hdr(hctx, h);
}

/* The pending transaction a read must not look through (0: none); with
 * `through`, whether a pending transaction is `accept` (the read then looks
 * through it: into its redo log first). */
static int read_pending(cls_method_context_t hctx, uint64_t accept, PendingInfo *info,
                        bool *through)
{
  *through = false;
  std::string raw;
  int r = read_raw_hdr(hctx, &raw);
  if (r < 0)
    return r;
  info->txid = 0;
  /* fast path: a version 3 header with nothing pending (pending at body
   * offset 16) is not decoded further */
  if (raw.empty())
    return 0;
  if ((uint8_t)raw[0] == RTDB_SHARD_HDR_VERSION && raw.size() >= 30) {
    WireReader peek(raw.data() + 22, 8);
    uint64_t pending;
    peek.u64(&pending);
    if (pending == 0)
      return 0;
  }
  rtdb_shard_hdr h;
  r = decode_shard_hdr(raw, &h);
  if (r < 0)
    return r;
  if (h.pending && h.pending != accept) {
    info->txid = h.pending;
    info->owner = h.powner;
    info->participants = h.participants;
  }
  *through = h.pending && h.pending == accept;
  return 0;
}

static int get(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  GetReq req;
  int r = parse("get", in, &req);
  if (r < 0)
    return r;
  GetReply reply;
  bool through;
  r = read_pending(hctx, req.accept, &reply.pending, &through);
  if (r < 0)
    return r;
  if (reply.pending.txid) {
    reply.status = RTDB_PENDING;
    put_reply(out, reply);
    return 0;
  }
  std::string k = omap_key(req.key.data(), (uint32_t)req.key.size());
  RedoLog log;
  if (through) {
    r = read_redo(hctx, req.accept, &log);
    if (r < 0)
      return refuse("get", r, "the redo log does not decode");
  }
  auto it = log.put.find(k);
  if (it != log.put.end()) {
    reply.record = std::move(it->second);
    r = 0;
  } else if (log.gone.count(k)) {
    r = -ENOENT;
  } else {
    r = cls_cxx_map_get_val(hctx, k, &reply.record);
  }
  if (r == -ENOENT) {
    reply.status = RTDB_MISSING;
  } else if (r < 0) {
    return r;
  } else if (reply.record.length() + 11 > req.maxlen) {
    reply.status = RTDB_TOO_BIG;
    reply.needed = reply.record.length() + 11;
  } else {
    reply.status = RTDB_FOUND;
  }
  put_reply(out, reply);
  return 0;
}

static int list(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  ListReq req;
  int r = parse("list", in, &req);
  if (r < 0)
    return r;
  ListReply reply;
  bool through;
  r = read_pending(hctx, req.accept, &reply.pending, &through);
  if (r < 0)
    return r;
  if (reply.pending.txid) {
    reply.status = RTDB_PENDING;
    put_reply(out, reply);
    return 0;
  }
  RedoLog log;
  if (through) {
    r = read_redo(hctx, req.accept, &log);
    if (r < 0)
      return refuse("list", r, "the redo log does not decode");
  }
  /* the omap merged with the redo log in key order: omap pages are read
   * until the page has a record or the omap ends (records the log removes
   * are skipped); log records past the last omap key read wait for the
   * page that reaches them, unless the omap ended */
  WireWriter page;
  std::string raw;
  uint32_t n = 0;
  bool more = false, full = false;
  std::string after = req.start;
  auto li = log.put.upper_bound(after);
  while (!full) {
    std::map<std::string, ceph::bufferlist> vals;
    bool omap_more = false;
    r = cls_cxx_map_get_vals(hctx, after, "", req.max, &vals, &omap_more);
    if (r < 0)
      return r;
    auto vi = vals.begin();
    while (true) {
      bool from_omap;
      if (vi != vals.end() && li != log.put.end())
        from_omap = vi->first < li->first;
      else if (vi != vals.end())
        from_omap = true;
      else if (li != log.put.end() && (!omap_more || vals.empty()))
        from_omap = false;
      else
        break;
      const std::string &key = from_omap ? vi->first : li->first;
      if (from_omap && (log.gone.count(key) || log.put.count(key))) {
        ++vi; /* removed by the transaction, or its new record comes from the log */
        continue;
      }
      ceph::bufferlist &rec = from_omap ? vi->second : li->second;
      raw.resize(key.size());
      long klen = rtdb_key_decode((const uint8_t *)key.data(), key.size(), (uint8_t *)&raw[0]);
      if (klen < 0)
        return refuse("list", -EIO, "an omap key does not decode");
      if (n > 0 &&
          (n >= req.max || page.s.size() + 8 + (size_t)klen + rec.length() > req.maxbytes)) {
        more = full = true;
        break;
      }
      page.bytes(raw.data(), (size_t)klen);
      page.bytes(rec.c_str(), rec.length());
      n++;
      if (from_omap)
        ++vi;
      else
        ++li;
    }
    if (full)
      break;
    if (!omap_more || vals.empty()) {
      more = li != log.put.end();
      break;
    }
    after = vals.rbegin()->first;
    if (n > 0) {
      more = true;
      break;
    }
  }
  reply.more = more;
  reply.page = std::move(page.s);
  put_reply(out, reply);
  return 0;
}

static int bump(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  EmptyReq req;
  int r = parse("bump", in, &req);
  if (r < 0)
    return r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  h.seq++;
  return write_shard_hdr(hctx, h);
}

static int seq(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  EmptyReq req;
  int r = parse("seq", in, &req);
  if (r < 0)
    return r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  SeqReply reply;
  reply.seq = h.seq;
  put_reply(out, reply);
  return 0;
}

/* ---- locks ---- */
static int lock(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  LockReq req;
  int r = parse("lock", in, &req);
  if (r < 0)
    return r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  uint64_t now = now_ms();
  prune_and_grant(&h, now);
  if (!h.stale.empty())
    return refuse("lock", -EUCLEAN, "%zu stale owner(s)", h.stale.size());
  LockView view{req.kind, req.mode, &req.key};
  rtdb_entry *e = find_entry(&h, req.owner, req.kind, req.mode, req.key);
  if (e && e->state == RTDB_QUEUED && !(req.flags & RTDB_LOCK_QUEUE))
    return refuse("lock", -EBUSY, "already queued");
  if (e) {
    e->lease_ms = req.lease_ms;
    e->expiry_ms = now + req.lease_ms; /* renew a held lock or a queued wait */
    return write_shard_hdr(hctx, h);
  }
  rtdb_entry n;
  n.kind = req.kind;
  n.mode = req.mode;
  n.owner = req.owner;
  n.key = req.key;
  n.lease_ms = req.lease_ms;
  n.expiry_ms = now + req.lease_ms;
  if (!blocked(h, req.owner, view, true, h.entries.size())) {
    n.state = RTDB_HELD;
  } else if (req.flags & RTDB_LOCK_QUEUE) {
    n.state = RTDB_QUEUED;
  } else {
    return refuse("lock", -EBUSY, "not grantable");
  }
  h.entries.push_back(n);
  return write_shard_hdr(hctx, h);
}

static int unlock(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  UnlockReq req;
  int r = parse("unlock", in, &req);
  if (r < 0)
    return r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  uint64_t now = now_ms();
  prune_and_grant(&h, now);
  rtdb_entry *e = find_entry(&h, req.owner, req.kind, req.mode, req.key);
  if (!e)
    return refuse("unlock", -ENOLCK, "no such entry");
  h.entries.erase(h.entries.begin() + (e - h.entries.data()));
  grant_queue(&h, now);
  return write_shard_hdr(hctx, h);
}

static int release(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  ReleaseReq req;
  int r = parse("release", in, &req);
  if (r < 0)
    return r;
  if (object_missing(hctx))
    return 0;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  uint64_t now = now_ms();
  bool changed = prune_and_grant(&h, now);
  for (auto it = h.entries.begin(); it != h.entries.end();) {
    bool drop = it->owner == req.owner && (!req.kind || it->kind == req.kind) &&
                (it->state == RTDB_HELD || !(req.flags & RTDB_RELEASE_KEEP_WAITS));
    changed |= drop;
    it = drop ? h.entries.erase(it) : it + 1;
  }
  if (req.settle && h.pending == req.settle) {
    RedoLog log;
    r = settle_pending(hctx, &h, &log);
    if (r < 0)
      return r;
    changed = true;
  }
  if (!changed)
    return 0;
  grant_queue(&h, now);
  return write_shard_hdr(hctx, h);
}

static int renew(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  RenewReq req;
  int r = parse("renew", in, &req);
  if (r < 0)
    return r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  uint64_t now = now_ms();
  prune_and_grant(&h, now);
  bool mine = false;
  for (auto &e : h.entries)
    if (e.owner == req.owner) {
      e.expiry_ms = now + e.lease_ms;
      mine = true;
    }
  if (!mine)
    return refuse("renew", -ENOLCK, "the owner has no entry left");
  return write_shard_hdr(hctx, h);
}

static int prune(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  PruneReq req;
  int r = parse("prune", in, &req);
  if (r < 0)
    return r;
  if (object_missing(hctx))
    return 0;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  bool changed = false;
  if (req.flags & RTDB_PRUNE_CLEAR_STALE) {
    for (const auto &o : req.owners) {
      auto it = std::find(h.stale.begin(), h.stale.end(), o);
      if (it != h.stale.end()) {
        h.stale.erase(it);
        changed = true;
      }
    }
  }
  changed |= prune_and_grant(&h, now_ms());
  if (!changed)
    return 0;
  return write_shard_hdr(hctx, h);
}

static int state(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  EmptyReq req;
  int r = parse("state", in, &req);
  if (r < 0)
    return r;
  StateReply reply;
  r = read_raw_hdr(hctx, &reply.header);
  if (r < 0)
    return r;
  reply.now_ms = now_ms();
  reply.version = cls_current_version(hctx);
  put_reply(out, reply);
  return 0;
}

static int watchers(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  EmptyReq req;
  int r = parse("watchers", in, &req);
  if (r < 0)
    return r;
  obj_list_watch_response_t resp;
  r = cls_cxx_list_watchers(hctx, &resp);
  if (r < 0)
    return r;
  WatchersReply reply;
  for (const auto &w : resp.entries)
    reply.watchers.emplace_back((uint64_t)w.name_num, w.cookie);
  put_reply(out, reply);
  return 0;
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

static int stage(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  StageReq req;
  int r = parse("stage", in, &req);
  if (r < 0)
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

static int txn_abort(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  TxnAbortReq req;
  int r = parse("txn_abort", in, &req);
  if (r < 0)
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

static int txn_mark(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  TxnMarkReq req;
  int r = parse("txn_mark", in, &req);
  if (r < 0)
    return r;
  if (object_missing(hctx))
    return 0;
  std::map<std::string, ceph::bufferlist> set;
  std::set<std::string> rm;
  r = mark_records(hctx, req.complete, req.forget, &set, &rm);
  if (r < 0)
    return r;
  return apply_marks(hctx, set, rm);
}

static int fence_owners(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  OwnersReq req;
  int r = parse("fence_owners", in, &req);
  if (r < 0)
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

static int journal(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  JournalReq req;
  int r = parse("journal", in, &req);
  if (r < 0)
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

extern "C" void __cls_init()
{
  static cls_handle_t h_class;
  struct Method {
    const char *name;
    int flags;
    cls_method_cxx_call_t fn;
    cls_method_handle_t handle;
  };
  const int RD = CLS_METHOD_RD, WR = CLS_METHOD_RD | CLS_METHOD_WR;
  static Method methods[] = {
      {"version", RD, version, nullptr},   {"apply", WR, apply, nullptr},
      {"clear", WR, clear, nullptr},       {"settle", WR, settle, nullptr},
      {"rollback", WR, rollback, nullptr}, {"reset", WR, reset, nullptr},
      {"get", RD, get, nullptr},           {"list", RD, list, nullptr},
      {"seq", RD, seq, nullptr},           {"bump", WR, bump, nullptr},
      {"lock", WR, lock, nullptr},         {"unlock", WR, unlock, nullptr},
      {"release", WR, release, nullptr},   {"renew", WR, renew, nullptr},
      {"prune", WR, prune, nullptr},       {"state", RD, state, nullptr},
      {"watchers", RD, watchers, nullptr}, {"stage", WR, stage, nullptr},
      {"txn_abort", WR, txn_abort, nullptr}, {"txn_mark", WR, txn_mark, nullptr},
      {"fence_owners", WR, fence_owners, nullptr}, {"journal", RD, journal, nullptr},
  };
  cls_log(0, "loading radostdb class (wire format %d)", RADOSTDB_WIRE_VERSION);
  cls_register("radostdb", &h_class);
  for (auto &m : methods)
    cls_register_cxx_method(h_class, m.name, m.flags, m.fn, &m.handle);
}
