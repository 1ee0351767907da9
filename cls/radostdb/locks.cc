/*
 * radostdb class: the methods of the lock table (its rules, the FIFO queue
 * and the lock design: locks.h). Methods lock, unlock, release, renew,
 * prune, state, watchers.
 *
 * - The lock table is in the object's header (a shard's, or the database
 *   header object's for the transaction lock), so these methods read it,
 *   change it and write it back in one atomic operation. Every method that
 *   rewrites it prunes first (expired entries out, waiters granted);
 *   `release` and `prune` write it only when something changed, and leave
 *   a missing object missing.
 * - Nothing here wakes a waiter: a client that changed the queue notifies
 *   (radostdb/wakeup.py); unlock and release tell it how many waiters they
 *   granted and the first one's ticket (its inbox is in the table). A
 *   client learns whether its queued request was granted from lock's
 *   return value, from a "G" naming its ticket, or from `state`.
 * - `state` and `watchers` are the reads a client decides on: the header
 *   with the OSD's clock (leases are in OSD time, never the client's), and
 *   who watches the object (who has the database open).
 */
#include <algorithm>
#include <cerrno>
#include <string>

#include "server.h"

/*
 * lock (write) LockReq: grants (or renews) the lock when grantable; else
 * with QUEUE appends a waiter (or renews it), without it -EBUSY. Stale
 * owners: -EUCLEAN. Returns RTDB_LOCKED_GRANTED or RTDB_LOCKED_QUEUED (seen
 * by a client sending it with RETURNVEC), and for a SHARD request the
 * layout bits of the modulus it sent (types.h), | the entry's ticket <<
 * RTDB_TICKET_SHIFT (a new entry gets the next one); a queued one
 * RTDB_LOCKED_ASK when an entry ahead may be kept cached (must_ask). A RECORD request for a key
 * the shard does not hold: -ESTALE. An ISOLATION request of an epoch older
 * than the shard's: -ECANCELED (types.h). A TXN grant sets the object's
 * epoch. A WATCH request (owner: the watch's id) is always granted: it
 * arms the watch on its key (-ESTALE as RECORD) until a write of the key
 * removes the entry (RTDB_APPLIED_WATCHED) or its lease ends; renewing an
 * entry still there returns RTDB_WATCH_ARMED too (no write since).
 */
int lock(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  LockReq req;
  Shard s;
  int r = open_object(hctx, "lock", in, &req, OPEN_PRUNE, &s);
  if (r <= 0)
    return r;
  if (!s.h.stale.empty())
    return refuse("lock", -EUCLEAN, "%zu stale owner(s)", s.h.stale.size());
  if ((req.kind == RTDB_LOCK_RECORD || req.kind == RTDB_LOCK_WATCH) &&
      owns(s.h, req.key.data(), req.key.size(), omap_key(req.key.data(), req.key.size())) < 0)
    return refuse("lock", -ESTALE, "a key this shard does not hold");
  if (req.kind == RTDB_LOCK_ISOLATION && txn_epoch(&s.h, req.epoch) < 0)
    return refuse("lock", -ECANCELED, "a newer transaction took the shard");
  int bits = req.kind == RTDB_LOCK_SHARD ? layout_bits(s.h, req.modulus) : 0;
  LockView view{req.kind, req.mode, &req.key};
  rtdb_entry *e = find_entry(&s.h, req.owner, req.kind, req.mode, req.key);
  if (e && e->state == RTDB_QUEUED && !(req.flags & RTDB_LOCK_QUEUE))
    return refuse("lock", -EBUSY, "already queued");
  if (e) {
    e->lease_ms = req.lease_ms;
    if (req.inbox)
      e->inbox = req.inbox;
    e->expiry_ms = s.now + req.lease_ms; /* renew a held lock or a queued wait */
    int status = e->state == RTDB_HELD ? RTDB_LOCKED_GRANTED : RTDB_LOCKED_QUEUED;
    if (e->state == RTDB_QUEUED && must_ask(s.h, req.owner))
      status |= RTDB_LOCKED_ASK;
    if (e->kind == RTDB_LOCK_WATCH)
      status |= RTDB_WATCH_ARMED;
    if (!e->ticket)
      e->ticket = s.h.next_ticket(); /* an entry an older class wrote */
    status |= (int)(e->ticket << RTDB_TICKET_SHIFT);
    r = write_shard_hdr(hctx, s.h);
    return r < 0 ? r : status | bits;
  }
  rtdb_entry n;
  n.kind = req.kind;
  n.mode = req.mode;
  n.owner = req.owner;
  n.key = req.key;
  n.lease_ms = req.lease_ms;
  n.expiry_ms = s.now + req.lease_ms;
  n.ticket = s.h.next_ticket();
  n.inbox = req.inbox;
  if (!blocked(s.h, req.owner, view, true, s.h.entries.size())) {
    n.state = RTDB_HELD;
    if (n.kind == RTDB_LOCK_TXN)
      stamp_txn_grant(&s.h, s.now);
  } else if (req.flags & RTDB_LOCK_QUEUE) {
    n.state = RTDB_QUEUED;
    if (must_ask(s.h, req.owner))
      bits |= RTDB_LOCKED_ASK;
  } else {
    return refuse("lock", -EBUSY, "not grantable");
  }
  s.h.entries.push_back(n);
  r = write_shard_hdr(hctx, s.h);
  return r < 0 ? r
               : (n.state == RTDB_HELD ? RTDB_LOCKED_GRANTED : RTDB_LOCKED_QUEUED) | bits |
                     (int)(n.ticket << RTDB_TICKET_SHIFT);
}

/*
 * unlock (write) UnlockReq: drops the owner's entry (held or queued),
 * grants waiters. -ENOLCK no such entry (never taken, or expired). Returns
 * how many waiters it granted (at most RTDB_GRANTS_MAX; RETURNVEC, as
 * lock's) and the first one's ticket (grants_status): the client wakes
 * them only then, and tells that one it holds the lock.
 */
int unlock(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  UnlockReq req;
  Shard s;
  int r = open_object(hctx, "unlock", in, &req, OPEN_PRUNE, &s);
  if (r <= 0)
    return r;
  rtdb_entry *e = find_entry(&s.h, req.owner, req.kind, req.mode, req.key);
  if (!e)
    return refuse("unlock", -ENOLCK, "no such entry");
  s.h.entries.erase(s.h.entries.begin() + (e - s.h.entries.data()));
  uint32_t ticket = 0;
  int granted = grant_queue(&s.h, s.now, &ticket);
  r = write_shard_hdr(hctx, s.h);
  return r < 0 ? r : grants_status(granted, ticket);
}

/*
 * release (write) ReleaseReq: drops every entry of the owner of `kind` (0:
 * any; queued ones too unless KEEP_WAITS), settles `settle` if pending,
 * forgets the owner as a stale owner unless a transaction of its is still
 * pending there, grants waiters. Returns how many waiters it granted and
 * the first one's ticket (as unlock); a missing object stays missing.
 */
int release(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  ReleaseReq req;
  Shard s;
  int r = open_object(hctx, "release", in, &req, OPEN_IF_EXISTS | OPEN_PRUNE, &s);
  if (r <= 0)
    return r;
  bool changed = s.pruned;
  for (auto it = s.h.entries.begin(); it != s.h.entries.end();) {
    bool drop = it->owner == req.owner && (!req.kind || it->kind == req.kind) &&
                (it->state == RTDB_HELD || !(req.flags & RTDB_RELEASE_KEEP_WAITS));
    changed |= drop;
    it = drop ? s.h.entries.erase(it) : it + 1;
  }
  if (req.settle && s.h.pending == req.settle) {
    RedoLog log;
    r = settle_pending(hctx, &s.h, &log);
    if (r < 0)
      return r;
    changed = true;
  }
  /* the owner itself gives up what expired (its isolation lapsed, say, while
   * its PG stalled): it is alive and ends the transaction, so its stale mark
   * goes too, unless a transaction of its is still pending here (then whoever
   * meets the mark decides it) */
  auto me = std::find(s.h.stale.begin(), s.h.stale.end(), req.owner);
  if (me != s.h.stale.end() && !(s.h.pending && s.h.powner == req.owner)) {
    s.h.stale.erase(me);
    changed = true;
  }
  if (!changed)
    return 0;
  uint32_t ticket = 0;
  int granted = grant_queue(&s.h, s.now, &ticket);
  r = write_shard_hdr(hctx, s.h);
  return r < 0 ? r : grants_status(granted, ticket);
}

/*
 * renew (write) RenewReq: every entry of the owner expires its lease from
 * now; then prune and grant. -ENOLCK the owner has no entry left (its lease
 * ran out: the locks are lost).
 */
int renew(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  RenewReq req;
  Shard s;
  int r = open_object(hctx, "renew", in, &req, OPEN_PRUNE, &s);
  if (r <= 0)
    return r;
  bool mine = false;
  for (auto &e : s.h.entries)
    if (e.owner == req.owner) {
      e.expiry_ms = s.now + e.lease_ms;
      mine = true;
    }
  if (!mine)
    return refuse("renew", -ENOLCK, "the owner has no entry left");
  return write_shard_hdr(hctx, s.h);
}

/*
 * prune (write) PruneReq: drops expired entries (an expired transaction
 * holder becomes a stale owner), then with CLEAR_STALE forgets the named
 * stale owners (those a resolver fenced and decided: also where their
 * entries expired only now), and grants waiters. A missing object stays
 * missing.
 */
int prune(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  PruneReq req;
  Shard s;
  int r = open_object(hctx, "prune", in, &req, OPEN_IF_EXISTS | OPEN_HEADER, &s);
  if (r <= 0)
    return r;
  uint64_t now = now_ms();
  bool changed = prune_and_grant(&s.h, now);
  if (req.flags & RTDB_PRUNE_CLEAR_STALE) {
    bool cleared = false;
    for (const auto &o : req.owners) {
      auto it = std::find(s.h.stale.begin(), s.h.stale.end(), o);
      if (it != s.h.stale.end()) {
        s.h.stale.erase(it);
        cleared = true;
      }
    }
    /* with no stale owner left, waiters are granted at once */
    if (cleared)
      changed = true, grant_queue(&s.h, now);
  }
  if (!changed)
    return 0;
  return write_shard_hdr(hctx, s.h);
}

/*
 * state (read) EmptyReq -> StateReply: OSD time, object version, header
 * (as stored: the client decodes it, so a header that does not decode is
 * still shown).
 */
int state(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  EmptyReq req;
  int r = open_object(hctx, "state", in, &req, OPEN_REQUEST);
  if (r <= 0)
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

/* watchers (read) EmptyReq -> WatchersReply: (client id, cookie) of every watch. */
int watchers(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  EmptyReq req;
  int r = open_object(hctx, "watchers", in, &req, OPEN_REQUEST);
  if (r <= 0)
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
