/*
 * radostdb class: the object header (types.h) and its lock table.
 *
 * lock design:
 * - Locks live in the object's omap header, so a lock check and the write it
 *   guards happen in ONE atomic OSD operation: no client-side read.
 * - An entry is a holder or a waiter: a handle id (owner), a kind, a mode, a
 *   key, a lease and an expiry on the OSD's wall clock. Entries are kept in
 *   arrival order; the waiters among them form the FIFO queue.
 * - Grant order (fairness, decided here and nowhere else):
 *     a request is grantable when it conflicts with no holder of another
 *     owner AND with no queued waiter of another owner (nobody passes a
 *     waiter it conflicts with: no barging, not even by the owner that just
 *     released; a reader behind a queued writer waits);
 *     after every change (release, unlock, prune, renew) the queue is walked
 *     in order and each waiter that conflicts with no holder and no earlier
 *     waiter is granted: the lock is handed to the head of the queue in the
 *     same atomic operation as the release.
 *   One exception: a read lock (RECORD or SHARD SHARED) passes a queued
 *   COMMIT, as tdb's fcntl read locks pass a waiting write lock: a reader
 *   that holds a read lock and asks for another never waits for a commit
 *   that waits for its first one. A committer waits for readers to pause.
 *   A `lock` without QUEUE is a try: not grantable -> -EBUSY, nothing
 *   changed. With QUEUE it appends a waiter; the return value says which
 *   (RTDB_LOCKED_GRANTED or _QUEUED, seen with RETURNVEC).
 * - Conflicts (entries of different owners; an owner never conflicts with
 *   itself). A plain write of key k counts as a RECORD EXCL request on k; a
 *   write by the transaction holder (ASSERT_TXN) as a COMMIT request
 *   limited to its keys:
 *     RECORD EXCL k   vs RECORD (any mode) k, SHARD (any), ISOLATION, COMMIT
 *     RECORD SHARED k vs RECORD EXCL k, SHARD EXCL, COMMIT
 *     SHARD EXCL      vs everything
 *     SHARD SHARED    vs RECORD EXCL, SHARD EXCL, COMMIT
 *     ISOLATION       vs RECORD EXCL, SHARD EXCL (isolations share: an
 *                     older transaction's may linger until its lease ends;
 *                     epochs keep it from writing, types.h)
 *     COMMIT          vs RECORD (any), SHARD (any), COMMIT (not ISOLATION)
 *     TXN             vs TXN, USER (the transaction-lock object's kinds)
 *     USER            vs TXN: a handle holds USER while it holds or takes
 *                     record or shard EXCL locks, so a transaction starts
 *                     once none are held and none are granted until it ends
 *                     (tdb's allrecord read lock vs chain locks). Without
 *                     it a transaction, which takes its shards' isolation
 *                     as it touches them, could wait for a lock holder
 *                     that waits for one of those shards.
 *     WATCH           vs nothing: a watched record (key). It is held from
 *                     the start; a write of its key (apply, a
 *                     transaction's part, clear: every key) removes it and
 *                     says so in its return value (RTDB_APPLIED_WATCHED),
 *                     and the writer notifies the object's watchers
 *                     (radostdb/watch.py). Its owner is the watch's own id.
 * - Tickets: every new entry gets the object's next ticket (types.h) and
 *   keeps the inbox its request named; `lock` returns the ticket (and ASK
 *   when an entry ahead may be kept cached: the waiter must announce
 *   itself), and unlock, release and a releasing apply return the ticket
 *   of the first waiter they granted. The releaser reads that entry's
 *   inbox from the table and tells the waiter there (radostdb/wakeup.py
 *   "G"); a ticket is unique among an object's entries and is not given
 *   again before RTDB_TICKET_MAX others, so a grant named by ticket is
 *   never mistaken for another request's.
 * - Leases: a grant sets expiry = now + the entry's lease; `renew` extends
 *   every entry of an owner (holders and waiters) by its own lease. Expired
 *   entries are pruned by any method that rewrites the header. A waiter that
 *   died thus leaves the queue within one lease.
 * - Stale holders: an expired ISOLATION or TXN holder may be a transaction
 *   committer that died half way. Its entry is replaced by its owner in the
 *   header's stale list; while that list is not empty the object refuses
 *   writes and lock grants with -EUCLEAN, until a client has fenced the
 *   owner in the journal, decided its transactions, and cleared it (`prune`
 *   with CLEAR_STALE). Plain expired locks just vanish.
 * - Fencing: a write sent "under a lock" (ASSERT_LOCK / ASSERT_TXN) is
 *   refused with -ENOLCK unless its owner still holds a covering entry, so a
 *   holder that slept through its lease cannot write with its lost lock.
 * - A refused request (-EBUSY, -ENOLCK, -EUCLEAN) changes nothing: a failed
 *   method's writes are dropped by the OSD. Waking waiters is the clients'
 *   business, by watch/notify (radostdb/wakeup.py): unlock, release and a
 *   releasing apply tell the client whether they granted a waiter.
 */
#ifndef RADOSTDB_LOCKS_H
#define RADOSTDB_LOCKS_H

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <string>

#include "objclass.h"
#include "ops.h"
#include "types.h"

static inline uint64_t now_ms()
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the stored header ---- */
static inline bool decode_entry(WireReader &rd, rtdb_entry *e)
{
  return rd.u8(&e->kind) && rd.u8(&e->mode) && rd.u8(&e->state) && rd.u8(&e->flags) &&
         rd.owner(&e->owner) && rd.u32(&e->lease_ms) && rd.u64(&e->expiry_ms) &&
         rd.str(&e->key) && e->kind >= RTDB_LOCK_RECORD && e->kind <= RTDB_LOCK_WATCH &&
         (e->mode == RTDB_LOCK_EXCL || e->mode == RTDB_LOCK_SHARED) &&
         (e->state == RTDB_HELD || e->state == RTDB_QUEUED);
}

/* radostdb 0.1 headers: u8 version (1|2), u8 compat, u16 0, u64 seq, and
 * for version 2: u64 applied, u64 pending, u32 nlocks, locks (held only) */
static inline int decode_legacy_hdr(const std::string &raw, rtdb_shard_hdr *h)
{
  WireReader rd(raw.data(), raw.size());
  uint8_t version, compat, r0, r1;
  if (!rd.u8(&version) || !rd.u8(&compat) || !rd.u8(&r0) || !rd.u8(&r1) || !rd.u64(&h->seq) ||
      compat > 2)
    return -EIO;
  if (version < 2)
    return 0;
  uint32_t nlocks;
  if (!rd.u64(&h->applied) || !rd.u64(&h->pending) || !rd.count(&nlocks, 10))
    return -EIO;
  for (uint32_t i = 0; i < nlocks; i++) {
    uint8_t kind, mode;
    std::string key;
    uint32_t nholders;
    if (!rd.u8(&kind) || !rd.u8(&mode) || !rd.str(&key) || !rd.count(&nholders, 24))
      return -EIO;
    for (uint32_t j = 0; j < nholders; j++) {
      rtdb_entry e;
      e.kind = kind;
      e.mode = mode;
      e.key = key;
      if (!rd.owner(&e.owner) || !rd.u64(&e.expiry_ms))
        return -EIO;
      e.lease_ms = 30000;
      h->entries.push_back(e);
    }
  }
  return rd.done() ? 0 : -EIO;
}

/* Decode a stored header (raw bytes, as kept in the omap header). */
static inline int decode_shard_hdr(const std::string &raw, rtdb_shard_hdr *h)
{
  *h = rtdb_shard_hdr();
  if (raw.empty())
    return 0;
  if ((uint8_t)raw[0] < 3)
    return decode_legacy_hdr(raw, h);
  WireReader rd(raw.data(), raw.size()), b;
  if (rd.open(RTDB_SHARD_HDR_VERSION, &b) < 0 || !rd.done())
    return -EIO;
  uint32_t n;
  if (!b.u64(&h->seq) || !b.u64(&h->applied) || !b.u64(&h->pending) || !b.u64(&h->settled) ||
      !b.u64(&h->aborted) || !b.owner(&h->powner) || !b.u32s(&h->participants) ||
      !b.owners(&h->stale) || !b.count(&n, 32))
    return -EIO;
  h->entries.resize(n);
  for (auto &e : h->entries)
    if (!decode_entry(b, &e))
      return -EIO;
  if (b.left() && (!b.u64(&h->epoch) || !b.u64(&h->modulus) || !b.u32(&h->index) ||
                   !b.u32(&h->split_to) || !b.u64(&h->split_modulus) ||
                   !b.str(&h->moved_upto) || !b.str(&h->split_owner)))
    return -EIO;
  if (b.left()) { /* version 5: tickets */
    if (!b.u32(&h->ticket_seq) || !b.count(&n, 12) || n != h->entries.size())
      return -EIO;
    for (auto &e : h->entries)
      if (!b.u32(&e.ticket) || !b.u64(&e.inbox))
        return -EIO;
  }
  return 0;
}

static inline std::string encode_shard_hdr(const rtdb_shard_hdr &h)
{
  WireWriter b, all;
  b.u64(h.seq);
  b.u64(h.applied);
  b.u64(h.pending);
  b.u64(h.settled);
  b.u64(h.aborted);
  b.owner(h.powner);
  b.u32s(h.participants);
  b.owners(h.stale);
  b.u32((uint32_t)h.entries.size());
  for (const auto &e : h.entries) {
    b.u8(e.kind);
    b.u8(e.mode);
    b.u8(e.state);
    b.u8(e.flags);
    b.owner(e.owner);
    b.u32(e.lease_ms);
    b.u64(e.expiry_ms);
    b.str(e.key);
  }
  b.u64(h.epoch);
  b.u64(h.modulus);
  b.u32(h.index);
  b.u32(h.split_to);
  b.u64(h.split_modulus);
  b.str(h.moved_upto);
  b.str(h.split_owner);
  b.u32(h.ticket_seq);
  b.u32((uint32_t)h.entries.size());
  for (const auto &e : h.entries) {
    b.u32(e.ticket);
    b.u64(e.inbox);
  }
  /* an older class may read a header with nothing new in it (types.h) */
  bool v4 = h.modulus || h.splitting() || !h.split_owner.empty();
  for (const auto &e : h.entries)
    v4 |= e.kind == RTDB_LOCK_USER || e.kind == RTDB_LOCK_WATCH;
  all.framed(RTDB_SHARD_HDR_VERSION, v4 ? 4 : 3, b.s);
  return all.s;
}

static inline int read_raw_hdr(cls_method_context_t hctx, std::string *raw)
{
  ceph::bufferlist bl;
  int r = cls_cxx_map_read_header(hctx, &bl);
  if (r == -ENOENT) {
    raw->clear();
    return 0;
  }
  if (r < 0)
    return r;
  raw->assign(bl.c_str(), bl.length());
  return 0;
}

static inline int read_shard_hdr(cls_method_context_t hctx, rtdb_shard_hdr *h)
{
  std::string raw;
  int r = read_raw_hdr(hctx, &raw);
  if (r < 0)
    return r;
  r = decode_shard_hdr(raw, h);
  if (r < 0)
    cls_log(10, "radostdb: the object's header does not decode (%zu bytes)", raw.size());
  return r;
}

static inline int write_shard_hdr(cls_method_context_t hctx, const rtdb_shard_hdr &h)
{
  std::string raw = encode_shard_hdr(h);
  ceph::bufferlist bl;
  bl.append(raw.data(), raw.size());
  return cls_cxx_map_write_header(hctx, &bl);
}

/* ---- conflicts ---- */

/* A request or entry as the conflict rules see it. kind 0 = a plain write
 * (RECORD EXCL on key). */
struct LockView {
  uint8_t kind, mode;
  const std::string *key;
};

static inline LockView view_of(const rtdb_entry &e) { return LockView{e.kind, e.mode, &e.key}; }

/* Do two locks of different owners conflict? (symmetric) */
static inline bool conflict(LockView a, LockView b)
{
  if (a.kind == RTDB_LOCK_WATCH || b.kind == RTDB_LOCK_WATCH)
    return false; /* a watch waits for nothing and blocks nothing */
  if (a.kind == RTDB_LOCK_TXN || b.kind == RTDB_LOCK_TXN || a.kind == RTDB_LOCK_USER ||
      b.kind == RTDB_LOCK_USER) /* the transaction-lock object's kinds */
    return (a.kind == RTDB_LOCK_TXN && (b.kind == RTDB_LOCK_TXN || b.kind == RTDB_LOCK_USER)) ||
           (a.kind == RTDB_LOCK_USER && b.kind == RTDB_LOCK_TXN);
  if (a.kind > b.kind)
    std::swap(a, b); /* now a.kind <= b.kind */
  bool a_excl = a.mode == RTDB_LOCK_EXCL, b_excl = b.mode == RTDB_LOCK_EXCL;
  switch (a.kind) {
    case RTDB_LOCK_RECORD:
      switch (b.kind) {
        case RTDB_LOCK_RECORD: return *a.key == *b.key && (a_excl || b_excl);
        case RTDB_LOCK_SHARD: return a_excl || b_excl;
        case RTDB_LOCK_ISOLATION: return a_excl;
        default /* COMMIT */: return true;
      }
    case RTDB_LOCK_SHARD:
      switch (b.kind) {
        case RTDB_LOCK_SHARD: return a_excl || b_excl;
        case RTDB_LOCK_ISOLATION: return a_excl;
        default /* COMMIT */: return true;
      }
    case RTDB_LOCK_ISOLATION:
      return false; /* vs ISOLATION or COMMIT */
    default: /* COMMIT vs COMMIT */
      return true;
  }
}

/* Is `req` by `owner` blocked by a holder (or, with `waiters`, a queued
 * entry before index `upto`) of another owner? */
static inline bool blocked(const rtdb_shard_hdr &h, const std::string &owner, LockView req,
                           bool waiters, size_t upto)
{
  for (size_t i = 0; i < h.entries.size(); i++) {
    const auto &e = h.entries[i];
    if (e.owner == owner)
      continue;
    if (e.state == RTDB_QUEUED && (!waiters || i >= upto))
      continue;
    if (e.state == RTDB_QUEUED && e.kind == RTDB_LOCK_COMMIT && req.mode == RTDB_LOCK_SHARED &&
        (req.kind == RTDB_LOCK_RECORD || req.kind == RTDB_LOCK_SHARD))
      continue; /* readers pass a waiting committer (see the grant order) */
    if (conflict(req, view_of(e)))
      return true;
  }
  return false;
}

/* A new waiter of `owner` queued behind an entry of another owner that is
 * not a record lock (nor a watch): its holder may keep it cached after use,
 * or give it back without knowing of the waiter; the waiter must announce
 * itself (RTDB_LOCKED_ASK). */
static inline bool must_ask(const rtdb_shard_hdr &h, const std::string &owner)
{
  for (const auto &e : h.entries)
    if (e.owner != owner && e.kind != RTDB_LOCK_RECORD && e.kind != RTDB_LOCK_WATCH)
      return true;
  return false;
}

/* The transaction lock was granted: its holder's epoch (types.h), newer
 * than every earlier one even across a header reset. */
static inline void stamp_txn_grant(rtdb_shard_hdr *h, uint64_t now)
{
  h->epoch = std::max(h->epoch + 1, now);
}

/* Walk the queue in order; grant every waiter that conflicts with no holder
 * and no earlier waiter. Returns how many were granted; `first` gets the
 * ticket of the first granted (0: none, or it has none). */
static inline int grant_queue(rtdb_shard_hdr *h, uint64_t now, uint32_t *first = nullptr)
{
  if (!h->stale.empty())
    return 0; /* nothing is granted until the stale owners are dealt with */
  int granted = 0;
  for (size_t i = 0; i < h->entries.size(); i++) {
    auto &e = h->entries[i];
    if (e.state != RTDB_QUEUED)
      continue;
    if (blocked(*h, e.owner, view_of(e), true, i))
      continue;
    e.state = RTDB_HELD;
    e.expiry_ms = now + e.lease_ms;
    if (e.kind == RTDB_LOCK_TXN)
      stamp_txn_grant(h, now);
    if (first && !granted)
      *first = e.ticket;
    granted++;
  }
  return granted;
}

/* A release's return value: waiters granted (capped) and the first one's ticket. */
static inline int grants_status(int granted, uint32_t ticket)
{
  return std::min(granted, RTDB_GRANTS_MAX) | (int)(ticket << RTDB_TICKET_SHIFT);
}

/* Drop expired entries (an expired ISOLATION/TXN holder leaves its owner in
 * the stale list), then grant. Returns true if anything changed. */
static inline bool prune_and_grant(rtdb_shard_hdr *h, uint64_t now)
{
  bool changed = false;
  for (auto it = h->entries.begin(); it != h->entries.end();) {
    if (it->expiry_ms > now) {
      ++it;
      continue;
    }
    if (it->state == RTDB_HELD &&
        (it->kind == RTDB_LOCK_ISOLATION || it->kind == RTDB_LOCK_TXN) &&
        std::find(h->stale.begin(), h->stale.end(), it->owner) == h->stale.end())
      h->stale.push_back(it->owner);
    it = h->entries.erase(it);
    changed = true;
  }
  return grant_queue(h, now) > 0 || changed;
}

static inline rtdb_entry *find_entry(rtdb_shard_hdr *h, const std::string &owner, uint8_t kind,
                                     uint8_t mode, const std::string &key)
{
  for (auto &e : h->entries)
    if (e.owner == owner && e.kind == kind && e.mode == mode && e.key == key)
      return &e;
  return nullptr;
}

static inline bool holds(const rtdb_shard_hdr &h, const std::string &owner, uint8_t kind)
{
  for (const auto &e : h.entries)
    if (e.owner == owner && e.kind == kind && e.state == RTDB_HELD)
      return true;
  return false;
}

/* Does `owner` hold a lock covering a write of `key` (its record lock, or a
 * shard lock)? */
static inline bool covers(const rtdb_shard_hdr &h, const std::string &owner,
                          const std::string &key)
{
  for (const auto &e : h.entries) {
    if (e.owner != owner || e.state != RTDB_HELD)
      continue;
    if (e.kind == RTDB_LOCK_SHARD || (e.kind == RTDB_LOCK_RECORD && e.key == key))
      return true;
  }
  return false;
}

/* A write changed `keys` (raw; `all`: every record of the object): drop
 * the WATCH entries on them. Returns true if there were any (the writer is
 * told, RTDB_APPLIED_WATCHED, and notifies their watchers). */
static inline bool fire_watches(rtdb_shard_hdr *h, const std::vector<std::string> &keys, bool all)
{
  bool fired = false;
  for (auto it = h->entries.begin(); it != h->entries.end();) {
    bool hit = it->kind == RTDB_LOCK_WATCH &&
               (all || std::find(keys.begin(), keys.end(), it->key) != keys.end());
    fired |= hit;
    it = hit ? h->entries.erase(it) : it + 1;
  }
  return fired;
}

/* Release `owner`'s held entries that covered a queued write (RELEASE flag):
 * its exclusive record locks on the keys written, and its SHARD EXCL. */
static inline void release_covering(rtdb_shard_hdr *h, const std::string &owner,
                                    const std::vector<std::string> &keys)
{
  for (auto it = h->entries.begin(); it != h->entries.end();) {
    bool drop = it->owner == owner && it->state == RTDB_HELD && it->mode == RTDB_LOCK_EXCL &&
                (it->kind == RTDB_LOCK_SHARD || it->kind == RTDB_LOCK_COMMIT ||
                 (it->kind == RTDB_LOCK_RECORD &&
                  std::find(keys.begin(), keys.end(), it->key) != keys.end()));
    it = drop ? h->entries.erase(it) : it + 1;
  }
}

#endif
