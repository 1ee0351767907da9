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
 *   keeps an undo log (the old records of the keys it wrote, in the object's
 *   data) and marks the shard pending = X with X's committer and
 *   participants. X is committed when the journal holds X (STAGED or
 *   COMPLETE) and every participant has X (pending, applied or settled X);
 *   it is aborted when the journal says ABORTED. Exactly one of stage and
 *   txn_abort can create X's record, so the two outcomes exclude each other.
 * - While a shard is pending X, reads return the pending info instead of
 *   data (unless the caller says it knows X is committed: `accept`), so a
 *   reader never sees half a commit; the client decides X's outcome and
 *   settles or rolls the shard back. `settle` drops the undo log; `rollback`
 *   restores it, or, on a shard X never reached, fences X there (a late
 *   apply of X is refused with -ECANCELED), so a decision "aborted" cannot
 *   be overtaken by an apply still in flight.
 * - The committer settles lazily: its next write to the shard carries
 *   `settle = X`, and its release of the shard settles it too.
 *
 * Errors: -EINVAL malformed request; -EOPNOTSUPP a struct newer than this
 * class knows; -EIO stored data that does not decode (a corrupt record,
 * header or undo log); -EBUSY a conflicting lock (nothing changed);
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
 *     fenced here; a no-op if txid already reached the shard; else applied
 *     with an undo log, and the shard becomes pending txid.
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
 * settle (write)     TxidReq: clears pending txid (dropping the undo log);
 *                    a no-op if the shard is not pending txid.
 * rollback (write)   TxidReq: pending txid: restores the undo log, seq + 1,
 *                    fences txid. txid settled or applied here: -EEXIST
 *                    (it committed). Otherwise fences txid. Idempotent.
 * reset (write)      EmptyReq: replaces the header with a fresh one whose seq
 *                    is past every record's (locks, queue, pending state and
 *                    undo log dropped): the repair of a header that does not
 *                    decode (radostdb check --repair).
 * get (read)         GetReq -> GetReply: FOUND with the record; MISSING;
 *                    TOO_BIG with the reply size needed; PENDING with the
 *                    pending info when the shard is pending a transaction
 *                    other than `accept`. A missing object: -ENOENT.
 * list (read)        ListReq -> ListReply: a page of records after an encoded
 *                    key, in omap order, at most `max` records and about
 *                    `maxbytes` (at least one record); or PENDING as for get.
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

static ceph::bufferlist make_record(uint64_t rseq, const char *key, uint32_t klen,
                                    const char *data, uint32_t dlen)
{
  ceph::bufferlist bl;
  ceph::bufferptr bp(RTDB_REC_HDR + (size_t)dlen);
  rtdb_record_encode(rseq, 0, (const uint8_t *)key, klen, (const uint8_t *)data, dlen,
                     (uint8_t *)bp.c_str());
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

/* ---- the undo log (object data while a transaction is pending) ---- */
static int write_undo(cls_method_context_t hctx, uint64_t txid, uint64_t prev_applied,
                      std::map<std::string, ceph::bufferlist> &old,
                      const std::set<std::string> &keys)
{
  /* built in a bufferlist: the old records are referenced, not copied */
  WireWriter head;
  head.u64(txid);
  head.u64(prev_applied);
  head.u32((uint32_t)keys.size());
  ceph::bufferlist body;
  body.append(head.s.data(), head.s.size());
  for (const auto &k : keys) {
    WireWriter e;
    e.str(k);
    auto it = old.find(k);
    e.u8(it != old.end());
    e.u32(it != old.end() ? it->second.length() : 0);
    body.append(e.s.data(), e.s.size());
    if (it != old.end())
      body.append(it->second);
  }
  WireWriter frame;
  frame.u8(1);
  frame.u8(1);
  frame.u32(body.length());
  ceph::bufferlist bl;
  bl.append(frame.s.data(), frame.s.size());
  bl.claim_append(body);
  return cls_cxx_write_full(hctx, &bl);
}

/* Restore the undo log of txid into the omap; returns the previous applied. */
static int restore_undo(cls_method_context_t hctx, uint64_t txid, uint64_t *prev_applied)
{
  uint64_t size;
  time_t mtime;
  int r = cls_cxx_stat(hctx, &size, &mtime);
  if (r < 0)
    return r;
  ceph::bufferlist bl;
  r = cls_cxx_read(hctx, 0, (int)size, &bl);
  if (r < 0)
    return r;
  WireReader rd(bl.c_str(), bl.length()), b;
  uint64_t logged;
  uint32_t n;
  if (rd.open(1, &b) < 0 || !b.u64(&logged) || !b.u64(prev_applied) || !b.count(&n, 9) ||
      logged != txid)
    return -EIO;
  std::map<std::string, ceph::bufferlist> put;
  for (uint32_t i = 0; i < n; i++) {
    std::string k;
    uint8_t present;
    const char *v;
    uint32_t vlen;
    if (!b.str(&k) || !b.u8(&present) || !b.bytes(&v, &vlen))
      return -EIO;
    if (present) {
      put[k].append(v, vlen);
    } else {
      r = cls_cxx_map_remove_key(hctx, k);
      if (r < 0 && r != -ENOENT)
        return r;
    }
  }
  if (!put.empty()) {
    r = cls_cxx_map_set_vals(hctx, &put);
    if (r < 0)
      return r;
  }
  return 0;
}

/* Settle the pending transaction in the header (the caller writes it). */
static int settle_pending(cls_method_context_t hctx, rtdb_shard_hdr *h)
{
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
                    uint64_t settle)
{
  if (!h->pending)
    return 0;
  if (h->pending != settle)
    return refuse(method, -EUCLEAN, "transaction %llx pending", (unsigned long long)h->pending);
  return settle_pending(hctx, h);
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
  r = writable(hctx, "apply", &h, req.settle);
  if (r < 0)
    return r;

  /* one omap read for every key whose old record matters */
  std::vector<std::string> okeys;
  okeys.reserve(req.entries.size());
  std::set<std::string> wanted;
  for (const auto &e : req.entries) {
    okeys.push_back(omap_key(e.key, e.klen));
    if (req.txid || e.op != RTDB_OP_PUT)
      wanted.insert(okeys.back());
  }
  std::map<std::string, ceph::bufferlist> old;
  if (!wanted.empty()) {
    r = cls_cxx_map_get_vals_by_keys(hctx, wanted, &old);
    if (r < 0 && r != -ENOENT)
      return r;
  }

  uint64_t rseq = h.seq + 1;
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
    } else if (gone.count(k)) {
      exists = false;
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
      set[k] = make_record(rseq, e.key, e.klen, e.data, e.dlen);
      gone.erase(k);
    } else if (remove) {
      set.erase(k);
      gone.insert(k);
    }
  }
  if (req.txid) {
    r = write_undo(hctx, req.txid, h.applied, old, wanted);
    if (r < 0)
      return r;
    h.applied = req.txid;
    h.pending = req.txid;
    h.powner = req.owner;
    h.participants = req.participants;
  }
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
  r = writable(hctx, "clear", &h, req.settle);
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
  r = settle_pending(hctx, &h);
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
    uint64_t prev;
    r = restore_undo(hctx, req.txid, &prev);
    if (r < 0)
      return refuse("rollback", r, "the undo log does not decode");
    h.pending = 0;
    h.applied = prev;
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

/* The pending transaction a read must not look through (0: none). */
static int read_pending(cls_method_context_t hctx, uint64_t accept, PendingInfo *info)
{
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
  return 0;
}

static int get(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  GetReq req;
  int r = parse("get", in, &req);
  if (r < 0)
    return r;
  GetReply reply;
  r = read_pending(hctx, req.accept, &reply.pending);
  if (r < 0)
    return r;
  if (reply.pending.txid) {
    reply.status = RTDB_PENDING;
    put_reply(out, reply);
    return 0;
  }
  r = cls_cxx_map_get_val(hctx, omap_key(req.key.data(), (uint32_t)req.key.size()),
                          &reply.record);
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
  r = read_pending(hctx, req.accept, &reply.pending);
  if (r < 0)
    return r;
  if (reply.pending.txid) {
    reply.status = RTDB_PENDING;
    put_reply(out, reply);
    return 0;
  }
  std::map<std::string, ceph::bufferlist> vals;
  bool more = false;
  r = cls_cxx_map_get_vals(hctx, req.start, "", req.max, &vals, &more);
  if (r < 0)
    return r;
  WireWriter page;
  std::string raw;
  uint32_t n = 0;
  for (auto &kv : vals) {
    raw.resize(kv.first.size());
    long klen = rtdb_key_decode((const uint8_t *)kv.first.data(), kv.first.size(),
                                (uint8_t *)&raw[0]);
    if (klen < 0)
      return refuse("list", -EIO, "an omap key does not decode");
    if (n > 0 && page.s.size() + 8 + (size_t)klen + kv.second.length() > req.maxbytes) {
      more = true;
      break;
    }
    page.bytes(raw.data(), (size_t)klen);
    page.bytes(kv.second.c_str(), kv.second.length());
    n++;
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
    r = settle_pending(hctx, &h);
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
