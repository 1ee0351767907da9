/*
 * radostdb class: what its translation units share.
 *
 * server.cc   the class design, the opening of a method, registration
 * records.cc  the records of a shard: apply, clear, get, list, seq, bump,
 *             reset, version
 * locks.cc    the lock table's methods: lock, unlock, release, renew,
 *             prune, state, watchers (the table itself: locks.h)
 * txn.cc      the transaction design, the redo log (settle, rollback) and
 *             the journal object (stage, txn_abort, txn_mark,
 *             fence_owners, journal)
 * reshard.cc  splitting a shard in two (split_begin, split_page,
 *             split_absorb, split_advance), count, fence_epoch
 * codec.cc    the record codec shared with the client (codec.c)
 * Each method's documentation sits above it. The wire structs: ops.h; the
 * stored header and the enums: types.h.
 */
#ifndef RADOSTDB_SERVER_H
#define RADOSTDB_SERVER_H

#include <string>

#include "codec.h"
#include "locks.h"
#include "objclass.h"
#include "ops.h"
#include "types.h"

/* Log a refusal (debug level) and return it. */
int refuse(const char *method, int err, const char *fmt, ...)
    __attribute__((__format__(printf, 3, 4)));

/* A shard never written has no object; methods that only clean up leave it so. */
bool object_missing(cls_method_context_t hctx);

/* ---- the opening of a method ----
 * Every method that takes a request opens with
 *
 *     XReq req;
 *     Shard s;                      (a method that reads the header)
 *     int r = open_object(hctx, "x", in, &req, FLAGS, &s);
 *     if (r <= 0)
 *       return r;
 *
 * open_object parses the request (malformed: -EINVAL; a compat newer than
 * this class knows: -EOPNOTSUPP), then does what FLAGS ask, in this order:
 *   OPEN_IF_EXISTS  a missing object: return 0 at once, nothing done (a
 *                   method that only cleans up leaves it missing);
 *   OPEN_HEADER     read the object's header into s->h (none: a fresh
 *                   header; -EIO if it does not decode);
 *   OPEN_PRUNE      read it, then drop expired entries and grant waiters
 *                   at s->now, the OSD's time (s->pruned: that changed h).
 * OPEN_REQUEST (0) asks for nothing more. What differs between methods
 * (`prune` prunes after clearing stale owners; `release` and `prune` write
 * the header only when it changed) stays in the method. */
static const unsigned OPEN_REQUEST = 0, OPEN_IF_EXISTS = 1, OPEN_HEADER = 2, OPEN_PRUNE = 4;

/* A shard (or header) object as open_object left it. */
struct Shard {
  rtdb_shard_hdr h;
  uint64_t now = 0;    /* OPEN_PRUNE: the time pruned at, for the method's own grants */
  bool pruned = false; /* OPEN_PRUNE: the prune changed h (expired entries, grants) */
};

/* The common opening (rules above): 1 to go on, 0 when there is nothing
 * to do (OPEN_IF_EXISTS and the object is missing), or the negative errno
 * to return. `s` is needed with OPEN_HEADER or OPEN_PRUNE. */
template <class T>
int open_object(cls_method_context_t hctx, const char *method, ceph::bufferlist *in, T *req,
                unsigned flags, Shard *s = nullptr)
{
  int r = parse_request(in, req);
  if (r < 0)
    return refuse(method, r, "malformed request (%u bytes)", in->length());
  if ((flags & OPEN_IF_EXISTS) && object_missing(hctx))
    return 0;
  if (flags & (OPEN_HEADER | OPEN_PRUNE)) {
    r = read_shard_hdr(hctx, &s->h);
    if (r < 0)
      return r;
  }
  if (flags & OPEN_PRUNE) {
    s->now = now_ms();
    s->pruned = prune_and_grant(&s->h, s->now);
  }
  return 1;
}

/* The omap key of a raw key (codec.h). */
static inline std::string omap_key(const char *key, size_t klen)
{
  std::string out;
  out.resize(klen * 2 + 1); /* >= 1: the empty key encodes to "\x01" */
  size_t n = rtdb_key_encode((const uint8_t *)key, klen, (uint8_t *)&out[0]);
  out.resize(n);
  return out;
}

/* ---- which keys a shard holds (a database resharded: reshard.cc) ----
 * 0 when the shard holds `key` (raw; `okey` its omap key), -ESTALE when it
 * does not: the key moved to the shard this one is splitting into, or it is
 * another shard's (the client's layout is out of date: it reads the
 * database header again, or tries the new shard). A shard whose header
 * records no modulus (a database never resharded) holds what it is sent. */
static inline int owns(const rtdb_shard_hdr &h, const char *key, size_t klen,
                       const std::string &okey)
{
  if (!h.modulus)
    return 0;
  uint64_t hash = rtdb_key_hash((const uint8_t *)key, klen);
  if (h.splitting() && hash % h.split_modulus == h.split_to)
    return !h.moved_upto.empty() && okey <= h.moved_upto ? -ESTALE : 0;
  return hash % h.modulus == h.index ? 0 : -ESTALE;
}

/* The layout bits (types.h) of a shard-wide request by a client whose
 * layout gives the shard `expected` as its modulus (0: not sent). */
static inline int layout_bits(const rtdb_shard_hdr &h, uint64_t expected)
{
  if (!expected)
    return 0;
  int bits = h.splitting() ? RTDB_LAYOUT_SPLITTING : 0;
  if (h.modulus && h.modulus != expected)
    bits |= RTDB_LAYOUT_MOVED;
  return bits;
}

/* A transaction's request (isolation, or a write under it) of `epoch`: a
 * newer transaction already took this shard (its holder lost the lock):
 * -ECANCELED; else the shard remembers the epoch. 0: no epoch (an older
 * client), not checked. */
static inline int txn_epoch(rtdb_shard_hdr *h, uint64_t epoch)
{
  if (!epoch)
    return 0;
  if (epoch < h->epoch)
    return -ECANCELED;
  h->epoch = epoch;
  return 0;
}

/* Does a request of `owner` as a SHARD EXCL lock find nobody else in the
 * way (no other owner's entry, held or queued), or does the owner hold
 * SHARD EXCL itself (`assert_lock`: it must; -ENOLCK if not)? 0, -EBUSY,
 * -ENOLCK: the rule of resharding's writes (reshard.cc). */
static inline int shard_to_itself(const rtdb_shard_hdr &h, const std::string &owner,
                                  bool assert_lock)
{
  if (assert_lock) {
    for (const auto &e : h.entries)
      if (e.owner == owner && e.state == RTDB_HELD && e.kind == RTDB_LOCK_SHARD &&
          e.mode == RTDB_LOCK_EXCL)
        return 0;
    return -ENOLCK;
  }
  std::string none;
  LockView req{RTDB_LOCK_SHARD, RTDB_LOCK_EXCL, &none};
  return blocked(h, owner, req, true, h.entries.size()) ? -EBUSY : 0;
}

/* ---- the redo log (txn.cc; the struct: ops.h RedoLog) ---- */

/* Store `log` as the object's data. */
int write_redo(cls_method_context_t hctx, const RedoLog &log);

/* Read the redo log of txid (only its txid and prev_applied when
 * `head_only`): -EIO if it does not decode, is of another transaction or
 * is an undo log (version 1, radostdb 0.2). */
int read_redo(cls_method_context_t hctx, uint64_t txid, RedoLog *log, bool head_only = false);

/* Settle the pending transaction: install its redo log into the omap, drop
 * the log, and mark it settled in the header (the caller writes it). The
 * installed records are left in `log` for a caller that reads on: reads in
 * one method do not see its own writes. */
int settle_pending(cls_method_context_t hctx, rtdb_shard_hdr *h, RedoLog *log);

/* ---- the methods, registered in server.cc ---- */
typedef int rtdb_method(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out);
rtdb_method version, apply, clear, reset, get, list, seq, bump;             /* records.cc */
rtdb_method lock, unlock, release, renew, prune, state, watchers;           /* locks.cc */
rtdb_method settle, rollback, stage, txn_abort, txn_mark, fence_owners, journal; /* txn.cc */
rtdb_method split_begin, split_page, split_absorb, split_advance, count, fence_epoch; /* reshard.cc */

#endif
