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

#endif
