/*
 * radostdb class: the records of a shard. Methods version, apply, clear,
 * reset, get, list, seq, bump.
 *
 * records design:
 * - A record is the omap value under its encoded key; codec.h specifies
 *   both, and the class builds every record with the codec, so client and
 *   OSD agree byte for byte. A record's rseq is the shard's seq after the
 *   write that made it.
 * - A write is one `apply` (or `clear`): its entries are decided in order
 *   against an overlay of what the batch already changed (a method does not
 *   read its own writes), then written at once with one seq bump. The
 *   records of one call are carved from one buffer: one allocation, not one
 *   per record.
 * - APPEND extends a stored record after verifying it: the new header
 *   carries the old crc extended over the new data, so the old data is read
 *   once and never hashed again.
 * - Writes check the lock table first (locks.h: a plain write is a RECORD
 *   EXCL request on its key), then the pending transaction, so a write
 *   blocked by a live transaction queues instead of failing.
 * - The part of a multi-shard transaction writes no record: the overlay
 *   becomes the shard's redo log (txn.cc). Reads do not look through a
 *   pending transaction unless the caller knows it committed (`accept`);
 *   they then read through its redo log, whose records come first.
 */
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "server.h"

/* A record carved from `arena` (sized for every record of the request). */
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

/* Append to a stored record, verified first: the codec's extended header,
 * the old data, the new data. -EIO the record does not verify, -EFBIG the
 * result would pass a record's 4 GiB limit. */
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
  ceph::bufferptr bp(RTDB_REC_HDR + olen + dlen);
  uint8_t *q = (uint8_t *)bp.c_str();
  rtdb_record_extend_header(p, rseq, (const uint8_t *)data, dlen, q);
  memcpy(q + RTDB_REC_HDR, p + doff, olen);
  memcpy(q + RTDB_REC_HDR + olen, data, dlen);
  out->clear();
  out->append(std::move(bp));
  return 0;
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

/* Lock checks of a write of `keys` (raw) by `owner` (rules: apply). */
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
  bool assert_lock = wflags & RTDB_WRITE_ASSERT_LOCK;
  if (h.entries.empty() && !assert_lock)
    return 0; /* (a write asserting a lock it lost must meet -ENOLCK below) */
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

/* A transaction's write or read of the shard under its isolation: the
 * epoch check (txn_epoch), and the isolation taken now if the owner has none
 * here (grantable, queue included: else -EBUSY). No epoch (an older
 * client): nothing taken, write_allowed wants it held. */
static int take_isolation(Shard *s, const std::string &owner, uint64_t epoch, uint32_t lease_ms)
{
  int r = txn_epoch(&s->h, epoch);
  if (r < 0 || !epoch || holds(s->h, owner, RTDB_LOCK_ISOLATION))
    return r;
  std::string none;
  LockView iso{RTDB_LOCK_ISOLATION, RTDB_LOCK_SHARED, &none};
  if (blocked(s->h, owner, iso, true, s->h.entries.size()))
    return -EBUSY;
  rtdb_entry e;
  e.kind = RTDB_LOCK_ISOLATION;
  e.mode = RTDB_LOCK_SHARED;
  e.owner = owner;
  e.lease_ms = lease_ms;
  e.expiry_ms = s->now + lease_ms;
  s->h.entries.push_back(e);
  return 0;
}

/*
 * version (read) no request: replies the wire version as ASCII digits
 * ("2"). The OSD answers -ENOENT before the class runs on a missing object.
 */
int version(cls_method_context_t, ceph::bufferlist *, ceph::bufferlist *out)
{
  out->append(std::to_string(RADOSTDB_WIRE_VERSION));
  return 0;
}

/*
 * apply (write) ApplyReq: entries applied in order, atomically, one seq
 * bump for the batch, each written record stamped with it.
 *   - settle != 0 and the shard is pending `settle`: settled first;
 *     any other pending transaction: -EUCLEAN; stale owners: -EUCLEAN.
 *   - txid != 0: a part of multi-shard transaction txid: -ECANCELED if
 *     fenced here; a no-op if txid already reached the shard; else checked
 *     and kept as the shard's redo log (the omap unchanged), and the shard
 *     becomes pending txid.
 *   - a key the shard does not hold (resharding, types.h): -ESTALE.
 *   - wflags ASSERT_TXN: with an epoch, older than the shard's: -ECANCELED
 *     (a newer transaction took the shard: the writer lost its lock); the
 *     owner without ISOLATION here takes it (a transaction's first write
 *     to the shard) if grantable, queue included, else -EBUSY; without an
 *     epoch the owner must hold it (-ENOLCK). Then no other owner may hold
 *     a record lock on a key written, a shard lock or a COMMIT lock
 *     (-EBUSY). ASSERT_LOCK: the owner holds a record lock on
 *     every key or a shard lock (-ENOLCK) and no other holder conflicts
 *     (-EBUSY). Neither: a write of each key must be grantable as a RECORD
 *     EXCL request, queue included (-EBUSY). RELEASE: then drop the owner's
 *     exclusive locks that covered the write and grant waiters; the return
 *     value has RTDB_APPLIED_GRANTED if one was (with or without REPORT),
 *     and the first granted waiter's ticket << RTDB_TICKET_SHIFT, and
 *     RTDB_APPLIED_GRANTED_SEVERAL if it granted more than one.
 *   - per entry: -EEXIST INSERT of an existing key, -ENOENT MODIFY/DELETE of
 *     a missing one, -EIO APPEND to a record that does not verify,
 *     -EFBIG an APPEND past a record's 4 GiB limit.
 *   - the WATCH entries on the keys written are removed (a part's too, as
 *     it lands): the return value has RTDB_APPLIED_WATCHED if there were.
 *   - wflags REPORT (not with txid): PUTs read whether their key exists
 *     (one omap lookup, otherwise skipped), and the return value has
 *     RTDB_APPLIED_CREATED when a PUT or APPEND created a record (tdb's
 *     error code after such a store, database.py).
 */
int apply(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  ApplyReq req;
  Shard s;
  int r = open_object(hctx, "apply", in, &req, OPEN_PRUNE, &s);
  if (r <= 0)
    return r;
  if (req.txid && s.h.aborted == req.txid)
    return refuse("apply", -ECANCELED, "transaction %llx is fenced",
                  (unsigned long long)req.txid);
  if (req.txid && s.h.has(req.txid))
    return 0; /* this part reached the shard already */
  r = not_stale("apply", s.h);
  if (r < 0)
    return r;
  std::vector<std::string> raw, okeys;
  raw.reserve(req.entries.size());
  okeys.reserve(req.entries.size());
  for (const auto &e : req.entries) {
    raw.emplace_back(e.key, e.klen);
    okeys.push_back(omap_key(e.key, e.klen));
    if (owns(s.h, e.key, e.klen, okeys.back()) < 0)
      return refuse("apply", -ESTALE, "a key this shard does not hold");
  }
  if (req.wflags & RTDB_WRITE_ASSERT_TXN) {
    r = take_isolation(&s, req.owner, req.epoch, req.lease_ms);
    if (r < 0)
      return refuse("apply", r, "the transaction's isolation");
  }
  r = write_allowed("apply", s.h, req.owner, req.wflags, raw, false);
  if (r < 0)
    return r;
  RedoLog installed; /* settled by this call: the omap as its reads must see it */
  r = writable(hctx, "apply", &s.h, req.settle, &installed);
  if (r < 0)
    return r;

  /* one omap read for every key whose old record matters (PUT and DISCARD,
   * the only operations of a transaction's parts, need none) */
  std::set<std::string> wanted;
  bool report = (req.wflags & RTDB_WRITE_REPORT) && !req.txid;
  for (const auto &e : req.entries) {
    const std::string &k = okeys[&e - req.entries.data()];
    if ((report || e.op != RTDB_OP_PUT) && e.op != RTDB_OP_DISCARD &&
        !installed.put.count(k) && !installed.gone.count(k))
      wanted.insert(k);
  }
  std::map<std::string, ceph::bufferlist> old;
  if (!wanted.empty()) {
    r = cls_cxx_map_get_vals_by_keys(hctx, wanted, &old);
    if (r < 0 && r != -ENOENT)
      return r;
  }

  uint64_t rseq = s.h.seq + 1;
  size_t arena_size = 0, used = 0;
  for (const auto &e : req.entries)
    if (e.op == RTDB_OP_INSERT || e.op == RTDB_OP_PUT || e.op == RTDB_OP_MODIFY ||
        e.op == RTDB_OP_APPEND)
      arena_size += RTDB_REC_HDR + (size_t)e.dlen;
  ceph::bufferptr arena(arena_size ? arena_size : 1);
  std::map<std::string, ceph::bufferlist> set; /* the overlay: written records */
  std::set<std::string> gone;                  /* and removed ones */
  int status = 0;
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
      if (report && !exists && (e.op == RTDB_OP_PUT || e.op == RTDB_OP_APPEND))
        status |= RTDB_APPLIED_CREATED;
    } else if (remove) {
      set.erase(k);
      gone.insert(k);
    }
  }
  if (req.txid) {
    /* a part of a multi-shard transaction: kept aside until settled */
    RedoLog log;
    log.txid = req.txid;
    log.prev_applied = s.h.applied;
    log.put = std::move(set);
    log.gone = std::move(gone);
    r = write_redo(hctx, log);
    if (r < 0)
      return r;
    s.h.applied = req.txid;
    s.h.pending = req.txid;
    s.h.powner = req.owner;
    s.h.participants = req.participants;
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
  s.h.seq = rseq;
  /* a transaction's part fires the watches when it lands: a watcher woken
   * before its commit is decided reads "pending" and waits for it; one
   * woken by a part that aborts had a spurious wakeup (radostdb/watch.py) */
  if (fire_watches(&s.h, raw, false))
    status |= RTDB_APPLIED_WATCHED;
  if (req.wflags & RTDB_WRITE_RELEASE) {
    release_covering(&s.h, req.owner, raw);
    uint32_t ticket = 0;
    int granted = grant_queue(&s.h, s.now, &ticket);
    if (granted > 0)
      status |= RTDB_APPLIED_GRANTED | (int)(ticket << RTDB_TICKET_SHIFT);
    if (granted > 1)
      status |= RTDB_APPLIED_GRANTED_SEVERAL;
  }
  r = write_shard_hdr(hctx, s.h);
  return r < 0 ? r : status;
}

/*
 * clear (write) ClearReq: removes every record, seq + 1; lock rules as
 * apply for a SHARD EXCL write (-ENOLCK, -EBUSY), pending and stale rules
 * as apply (-EUCLEAN); a missing object stays missing. Returns the layout
 * bits for the client's modulus (types.h: a splitting shard's new shard
 * holds records too; a moved modulus: the client's layout is old), and
 * RTDB_APPLIED_WATCHED if it removed WATCH entries (every watch fires).
 */
int clear(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  ClearReq req;
  Shard s;
  int r = open_object(hctx, "clear", in, &req, OPEN_IF_EXISTS | OPEN_PRUNE, &s);
  if (r <= 0)
    return r; /* 0: a shard never written, nothing to clear */
  r = not_stale("clear", s.h);
  if (r < 0)
    return r;
  std::vector<std::string> none(1);
  r = write_allowed("clear", s.h, req.owner, req.wflags, none, true);
  if (r < 0)
    return r;
  RedoLog installed;
  r = writable(hctx, "clear", &s.h, req.settle, &installed);
  if (r < 0)
    return r;
  r = cls_cxx_map_clear(hctx);
  if (r < 0)
    return r;
  s.h.seq++;
  int watched = fire_watches(&s.h, {}, true) ? RTDB_APPLIED_WATCHED : 0;
  if (req.wflags & RTDB_WRITE_RELEASE) {
    release_covering(&s.h, req.owner, {});
    grant_queue(&s.h, s.now);
  }
  r = write_shard_hdr(hctx, s.h);
  return r < 0 ? r : layout_bits(s.h, req.modulus) | watched;
}

/*
 * reset (write) EmptyReq: replaces the header with a fresh one whose seq
 * is past every record's (locks, queue, pending state and redo log
 * dropped): the repair of a header that does not decode (radostdb check
 * --repair). The old header is never read. A missing object stays missing.
 */
int reset(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  EmptyReq req;
  int r = open_object(hctx, "reset", in, &req, OPEN_IF_EXISTS);
  if (r <= 0)
    return r;
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

/* What a read needs of the shard's header: the pending transaction it must
 * not look through (txid 0: none), whether it looks through `accept`'s (into
 * its redo log first), and the shard's layout (`h`: decoded only when the
 * header may hold one; else fresh, modulus 0). */
struct ReadView {
  PendingInfo pending;
  bool through = false;
  rtdb_shard_hdr h;
};

static int read_view(cls_method_context_t hctx, uint64_t accept, ReadView *v)
{
  std::string raw;
  int r = read_raw_hdr(hctx, &raw);
  if (r < 0)
    return r;
  v->pending.txid = 0;
  if (raw.empty())
    return 0;
  /* fast path: a header of version 3 or 4 with compat 3 holds no layout
   * (types.h); with nothing pending (at body offset 16) it is not decoded */
  uint8_t version = (uint8_t)raw[0];
  if ((version == 3 || version == RTDB_SHARD_HDR_VERSION) && raw.size() >= 30 &&
      (uint8_t)raw[1] == 3) {
    WireReader peek(raw.data() + 22, 8);
    uint64_t pending;
    peek.u64(&pending);
    if (pending == 0)
      return 0;
  }
  r = decode_shard_hdr(raw, &v->h);
  if (r < 0)
    return r;
  const rtdb_shard_hdr &h = v->h;
  if (h.pending && h.pending != accept) {
    v->pending.txid = h.pending;
    v->pending.owner = h.powner;
    v->pending.participants = h.participants;
  }
  v->through = h.pending && h.pending == accept;
  return 0;
}

/*
 * get (read) GetReq -> GetReply: FOUND with the record; MISSING; TOO_BIG
 * with the reply size needed; PENDING with the pending info when the shard
 * is pending a transaction other than `accept` (pending `accept`: read
 * through its redo log). A missing object: -ENOENT. A key the shard does
 * not hold (types.h): -ESTALE.
 */
int get(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  GetReq req;
  int r = open_object(hctx, "get", in, &req, OPEN_REQUEST);
  if (r <= 0)
    return r;
  GetReply reply;
  ReadView v;
  r = read_view(hctx, req.accept, &v);
  if (r < 0)
    return r;
  std::string k = omap_key(req.key.data(), req.key.size());
  if (owns(v.h, req.key.data(), req.key.size(), k) < 0)
    return refuse("get", -ESTALE, "a key this shard does not hold");
  if (v.pending.txid) {
    reply.status = RTDB_PENDING;
    reply.pending = v.pending;
    put_reply(out, reply);
    return 0;
  }
  RedoLog log;
  if (v.through) {
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

/*
 * list (read) ListReq -> ListReply: a page of records after an encoded
 * key and up to `until` (if given), in omap order, at most `max` records
 * and about `maxbytes` (at least one record; through a pending `accept`'s
 * redo log); or PENDING as for get. Either way with the shard's layout, so
 * a traversal running across a split finds the keys that moved. With
 * RTDB_LIST_KEYS_ONLY the page has the raw keys alone (each as bytes) and
 * the omap's values are not read (unless a redo log is merged). With
 * RTDB_LIST_STRICT not even the first record may pass `maxbytes`: the
 * reply then has an empty page and `more` (a client reading with aio, whose
 * reply buffer must not overflow, asks for it).
 */
int list(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  ListReq req;
  int r = open_object(hctx, "list", in, &req, OPEN_REQUEST);
  if (r <= 0)
    return r;
  ListReply reply;
  ReadView v;
  r = read_view(hctx, req.accept, &v);
  if (r < 0)
    return r;
  reply.layout.set(v.h);
  if (v.pending.txid) {
    reply.status = RTDB_PENDING;
    reply.pending = v.pending;
    put_reply(out, reply);
    return 0;
  }
  RedoLog log;
  if (v.through) {
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
  const bool keys_only = req.flags & RTDB_LIST_KEYS_ONLY;
  const bool strict = req.flags & RTDB_LIST_STRICT;
  uint32_t n = 0;
  bool more = false, full = false, bounded = false;
  std::string after = req.start;
  auto li = log.put.upper_bound(after);
  while (!full) {
    std::map<std::string, ceph::bufferlist> vals;
    bool omap_more = false;
    if (keys_only && !v.through) {
      std::set<std::string> keys;
      r = cls_cxx_map_get_keys(hctx, after, req.max, &keys, &omap_more);
      for (const auto &k : keys)
        vals.emplace_hint(vals.end(), k, ceph::bufferlist());
    } else {
      r = cls_cxx_map_get_vals(hctx, after, "", req.max, &vals, &omap_more);
    }
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
      if (!req.until.empty() && key > req.until) {
        bounded = true; /* past the end the client asked for */
        break;
      }
      if (from_omap && (log.gone.count(key) || log.put.count(key))) {
        ++vi; /* removed by the transaction, or its new record comes from the log */
        continue;
      }
      ceph::bufferlist &rec = from_omap ? vi->second : li->second;
      raw.resize(key.size());
      long klen = rtdb_key_decode((const uint8_t *)key.data(), key.size(), (uint8_t *)&raw[0]);
      if (klen < 0)
        return refuse("list", -EIO, "an omap key does not decode");
      size_t rlen = keys_only ? 0 : 4 + (size_t)rec.length();
      if ((n > 0 || strict) &&
          (n >= req.max || page.s.size() + 4 + (size_t)klen + rlen > req.maxbytes)) {
        more = full = true;
        break;
      }
      page.bytes(raw.data(), (size_t)klen);
      if (!keys_only)
        page.bytes(rec.c_str(), rec.length());
      n++;
      if (from_omap)
        ++vi;
      else
        ++li;
    }
    if (full || bounded)
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

/* seq (read) EmptyReq -> SeqReply: the shard's seq (0 for an object without header). */
int seq(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  EmptyReq req;
  Shard s;
  int r = open_object(hctx, "seq", in, &req, OPEN_HEADER, &s);
  if (r <= 0)
    return r;
  SeqReply reply;
  reply.seq = s.h.seq;
  put_reply(out, reply);
  return 0;
}

/* bump (write) EmptyReq: seq + 1 (increment_seqnum on the header object). */
int bump(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  EmptyReq req;
  Shard s;
  int r = open_object(hctx, "bump", in, &req, OPEN_HEADER, &s);
  if (r <= 0)
    return r;
  s.h.seq++;
  return write_shard_hdr(hctx, s.h);
}
