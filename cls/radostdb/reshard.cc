/*
 * radostdb class: splitting a shard in two while clients use it. Methods
 * split_begin, split_page, split_absorb, split_advance, count, fence_epoch.
 *
 * reshard design (the client's side: radostdb/reshard.py):
 * - A database's shards follow linear hashing (radostdb/layout.py): shard
 *   p with modulus M (its keys hash to p mod M) splits into itself and a
 *   new shard q = p + M, both of modulus 2M; the keys hashing to q mod 2M
 *   move. The database header names the shard count; it grows by one once
 *   the split is complete, so until then clients send q's keys to p.
 * - The split is recorded in p's header (types.h): split_to q, the new
 *   modulus, and moved_upto, the encoded key up to which the moving keys
 *   have moved, in omap order. Every read or write of a key checks that
 *   the shard holds it (server.h: owns): a moved key is refused with
 *   -ESTALE, and the client asks q. moved_upto only grows, so a key found
 *   moved stays moved.
 * - A split is a sequence of steps, each one atomic OSD operation:
 *     split_begin    on p: record the split (nothing moves yet);
 *     split_page     on p (a read): the next moving records after
 *                    moved_upto;
 *     split_absorb   on q: replace q's keys in that range with them (q's
 *                    keys beyond moved_upto are copies in progress, never
 *                    read: clients ask p for them);
 *     split_advance  on p: if the records are still those the page read
 *                    (their heads change with every write) remove them and
 *                    move moved_upto to the page's end; at the end of p's
 *                    keys, finish: p's modulus becomes 2M.
 *   Killed between any two steps, the database is whole: every key is
 *   where owns() sends it, and the next resharder goes on from moved_upto
 *   (a page absorbed but not advanced is absorbed again).
 * - begin and advance need p to themselves, as a SHARD EXCL lock would
 *   (no other owner's entry, held or queued): a transaction's isolation,
 *   a record lock or a whole-database lock on p keeps the keys where they
 *   are until it is released. Refused with -EBUSY, the resharder queues
 *   for SHARD EXCL on p like any writer and sends the step again under it,
 *   releasing it in the same call (wflags ASSERT_LOCK | RELEASE), so every
 *   step waits its turn in p's queue and no writer is paused longer than
 *   one step. An advance drops the queued record-lock requests of the keys
 *   it moves; their clients find their entry gone, ask again, get -ESTALE
 *   and queue at q.
 * - A pending transaction on p (its redo log not yet installed) makes
 *   split_page and split_advance refuse with -EUCLEAN: the client decides
 *   it first, so a record never moves with its newer value left behind.
 * - One resharder at a time: begin records its owner id in p, its first
 *   absorb in q (takeover replaces another's). Steps of any other owner
 *   are refused with -ECANCELED, so a resharder that slept through its
 *   lock and woke behind a newer one changes nothing.
 * - Transactions: epochs (types.h) make a transaction that lost its lock
 *   unable to write. After a transaction-lock holder died, the client that
 *   meets its stale entry stamps every shard with the new epoch
 *   (fence_epoch) before it goes on.
 */
#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "server.h"

/* The raw key of an omap key; false if it does not decode. */
static bool raw_key(const std::string &okey, std::string *raw)
{
  raw->resize(okey.size());
  long n = rtdb_key_decode((const uint8_t *)okey.data(), okey.size(), (uint8_t *)&(*raw)[0]);
  if (n < 0)
    return false;
  raw->resize((size_t)n);
  return true;
}

/* Does the key (omap form) move in the shard's split? -EIO: it does not
 * decode. */
static int moving(const rtdb_shard_hdr &h, const std::string &okey)
{
  std::string raw;
  if (!raw_key(okey, &raw))
    return -EIO;
  return rtdb_key_hash((const uint8_t *)raw.data(), raw.size()) % h.split_modulus == h.split_to;
}

/* Refusals every split step of the splitting shard shares: not that split,
 * another resharder's, stale owners, a pending transaction. */
static int split_step(const char *method, const rtdb_shard_hdr &h, const std::string &owner)
{
  if (!h.splitting())
    return refuse(method, -EINVAL, "the shard is not splitting");
  if (h.split_owner != owner)
    return refuse(method, -ECANCELED, "another resharder's split");
  if (!h.stale.empty())
    return refuse(method, -EUCLEAN, "%zu stale owner(s)", h.stale.size());
  if (h.pending)
    return refuse(method, -EUCLEAN, "transaction %llx pending", (unsigned long long)h.pending);
  return 0;
}

/* RELEASE: drop the resharder's SHARD EXCL that covered the step, grant. */
static void release_step(Shard *s, const std::string &owner, uint8_t wflags)
{
  if (!(wflags & RTDB_WRITE_RELEASE))
    return;
  release_covering(&s->h, owner, {});
  grant_queue(&s->h, s->now);
}

/*
 * split_begin (write) SplitBeginReq: records the split of this shard
 * (index, modulus) into child (child_modulus) by owner; nothing moves yet.
 * Again by the same owner: nothing changes; by another owner: it takes the
 * split over. Returns 1 when the split is complete already (the shard has
 * child_modulus), else 0. -EINVAL the shard is another one (its recorded
 * modulus or index differ) or splits differently; -EUCLEAN stale owners or
 * a pending transaction; -EBUSY / -ENOLCK as a write needing the shard to
 * itself (reshard design).
 */
int split_begin(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  SplitBeginReq req;
  Shard s;
  int r = open_object(hctx, "split_begin", in, &req, OPEN_PRUNE, &s);
  if (r <= 0)
    return r;
  rtdb_shard_hdr &h = s.h;
  if (!h.splitting() && h.modulus == req.child_modulus && h.index == req.index)
    return 1;
  if (h.modulus && (h.modulus != req.modulus || h.index != req.index))
    return refuse("split_begin", -EINVAL, "the shard has modulus %llu, index %u",
                  (unsigned long long)h.modulus, h.index);
  if (h.splitting() && (h.split_to != req.child || h.split_modulus != req.child_modulus))
    return refuse("split_begin", -EINVAL, "the shard splits into %u", h.split_to);
  if (!h.stale.empty())
    return refuse("split_begin", -EUCLEAN, "%zu stale owner(s)", h.stale.size());
  if (h.pending)
    return refuse("split_begin", -EUCLEAN, "a transaction pending");
  r = shard_to_itself(h, req.owner, req.wflags & RTDB_WRITE_ASSERT_LOCK);
  if (r < 0)
    return refuse("split_begin", r, "the shard is in use");
  if (!h.splitting())
    h.moved_upto.clear();
  h.modulus = req.modulus;
  h.index = req.index;
  h.split_to = req.child;
  h.split_modulus = req.child_modulus;
  h.split_owner = req.owner;
  release_step(&s, req.owner, req.wflags);
  r = write_shard_hdr(hctx, h);
  return r < 0 ? r : 0;
}

/*
 * split_page (read) SplitPageReq -> SplitPageReply: the moving records
 * after `after` in key order, at most `max`, looking at no more than 8 x max
 * keys (upto: the last key looked at; end: the shard has no key after it).
 * -EINVAL the shard is not splitting; -EUCLEAN a pending transaction; -EIO
 * an omap key that does not decode.
 */
int split_page(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  SplitPageReq req;
  Shard s;
  int r = open_object(hctx, "split_page", in, &req, OPEN_HEADER, &s);
  if (r <= 0)
    return r;
  if (!s.h.splitting())
    return refuse("split_page", -EINVAL, "the shard is not splitting");
  if (s.h.pending)
    return refuse("split_page", -EUCLEAN, "a transaction pending");
  SplitPageReply reply;
  reply.upto = req.after;
  uint64_t budget = (uint64_t)req.max * 8;
  std::string after = req.after;
  while (true) {
    std::map<std::string, ceph::bufferlist> vals;
    bool more = false;
    uint64_t chunk = std::min<uint64_t>(budget, 1000);
    r = cls_cxx_map_get_vals(hctx, after, "", chunk, &vals, &more);
    if (r < 0)
      return r;
    bool full = false, cut = false;
    for (auto it = vals.begin(); it != vals.end(); ++it) {
      budget--;
      reply.upto = it->first;
      int m = moving(s.h, it->first);
      if (m < 0)
        return refuse("split_page", m, "an omap key does not decode");
      if (m)
        reply.records.push_back(MovingRecord{it->first, std::move(it->second)});
      if (reply.records.size() >= req.max || budget == 0) {
        full = true;
        cut = std::next(it) != vals.end() || more;
        break;
      }
    }
    if (full) {
      reply.end = !cut;
      break;
    }
    if (!more || vals.empty()) {
      reply.end = 1;
      break;
    }
    after = vals.rbegin()->first;
  }
  put_reply(out, reply);
  return 0;
}

/* Remove the keys of the object in (after, upto] (upto empty with `to_end`:
 * to the end). */
static int remove_range(cls_method_context_t hctx, const std::string &after,
                        const std::string &upto, bool to_end, bool *removed)
{
  std::string from = after;
  while (true) {
    std::set<std::string> keys;
    bool more = false;
    int r = cls_cxx_map_get_keys(hctx, from, 1000, &keys, &more);
    if (r < 0)
      return r;
    for (const auto &k : keys) {
      if (!to_end && k > upto)
        return 0;
      r = cls_cxx_map_remove_key(hctx, k);
      if (r < 0 && r != -ENOENT)
        return r;
      *removed = true;
    }
    if (!more || keys.empty())
      return 0;
    from = *keys.rbegin();
  }
}

/*
 * split_absorb (write) SplitAbsorbReq: this shard (index, modulus; recorded
 * in its header the first time) takes the records of a page of the
 * splitting shard: its keys in (after, upto] (with end: every key after
 * `after`) are replaced by them. -EINVAL the shard is another one, or a
 * record outside the range; -ECANCELED another resharder fills the shard
 * (without takeover).
 */
int split_absorb(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  SplitAbsorbReq req;
  Shard s;
  int r = open_object(hctx, "split_absorb", in, &req, OPEN_PRUNE, &s);
  if (r <= 0)
    return r;
  rtdb_shard_hdr &h = s.h;
  if (h.modulus && (h.modulus != req.modulus || h.index != req.index))
    return refuse("split_absorb", -EINVAL, "the shard has modulus %llu, index %u",
                  (unsigned long long)h.modulus, h.index);
  if (!h.split_owner.empty() && h.split_owner != req.owner && !req.takeover)
    return refuse("split_absorb", -ECANCELED, "another resharder fills the shard");
  std::map<std::string, ceph::bufferlist> set;
  for (auto &m : req.records) {
    if (m.okey <= req.after || (!req.end && m.okey > req.upto))
      return refuse("split_absorb", -EINVAL, "a record outside the page");
    set[m.okey] = std::move(m.record);
  }
  bool removed = false;
  r = remove_range(hctx, req.after, req.upto, req.end, &removed);
  if (r < 0)
    return r;
  if (!set.empty()) {
    r = cls_cxx_map_set_vals(hctx, &set);
    if (r < 0)
      return r;
  }
  h.modulus = req.modulus;
  h.index = req.index;
  h.split_owner = req.owner;
  if (removed || !set.empty())
    h.seq++;
  return write_shard_hdr(hctx, h);
}

/*
 * split_advance (write) SplitAdvanceReq: the moving records of this shard in
 * (after, upto] (with end: after `after`) are exactly those of `heads` (key
 * and record head, in order): they are removed, queued record-lock requests
 * for them are dropped, and moved_upto becomes upto; with end the split is
 * complete (the shard's modulus becomes the split's). Returns how many
 * queued requests were dropped (their clients must be woken). -ERANGE
 * moved_upto is not `after` (the resharder's view is out of date); -EINVAL
 * without end, upto not past `after` (moved_upto only grows); -EREMCHG
 * the records changed since the page was read; other refusals as
 * split_begin's (split_step).
 */
int split_advance(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  SplitAdvanceReq req;
  Shard s;
  int r = open_object(hctx, "split_advance", in, &req, OPEN_PRUNE, &s);
  if (r <= 0)
    return r;
  rtdb_shard_hdr &h = s.h;
  r = split_step("split_advance", h, req.owner);
  if (r < 0)
    return r;
  if (h.moved_upto != req.after)
    return refuse("split_advance", -ERANGE, "moved up to another key");
  if (!req.end && req.upto <= req.after)
    return refuse("split_advance", -EINVAL, "a page must end past where it starts");
  r = shard_to_itself(h, req.owner, req.wflags & RTDB_WRITE_ASSERT_LOCK);
  if (r < 0)
    return refuse("split_advance", r, "the shard is in use");
  /* the moving records now, against the page */
  std::vector<std::string> gone;
  size_t i = 0;
  std::string from = req.after;
  bool done = false;
  while (!done) {
    std::map<std::string, ceph::bufferlist> vals;
    bool more = false;
    r = cls_cxx_map_get_vals(hctx, from, "", 1000, &vals, &more);
    if (r < 0)
      return r;
    for (auto &kv : vals) {
      if (!req.end && kv.first > req.upto) {
        done = true;
        break;
      }
      int m = moving(h, kv.first);
      if (m < 0)
        return refuse("split_advance", m, "an omap key does not decode");
      if (!m)
        continue;
      if (i >= req.heads.size() || req.heads[i].first != kv.first ||
          kv.second.length() < RTDB_REC_HDR ||
          req.heads[i].second != std::string(kv.second.c_str(), RTDB_REC_HDR))
        return refuse("split_advance", -EREMCHG, "the records changed since the page");
      gone.push_back(kv.first);
      i++;
    }
    if (!more || vals.empty())
      break;
    from = vals.rbegin()->first;
  }
  if (i != req.heads.size())
    return refuse("split_advance", -EREMCHG, "records of the page are gone");
  for (const auto &k : gone) {
    r = cls_cxx_map_remove_key(hctx, k);
    if (r < 0 && r != -ENOENT)
      return r;
  }
  /* queued record-lock requests of moved keys: their clients ask q */
  int dropped = 0;
  std::set<std::string> moved(gone.begin(), gone.end());
  for (auto it = h.entries.begin(); it != h.entries.end();) {
    bool drop = false;
    if (it->kind == RTDB_LOCK_RECORD && it->state == RTDB_QUEUED) {
      std::string ok = omap_key(it->key.data(), it->key.size());
      uint64_t hash = rtdb_key_hash((const uint8_t *)it->key.data(), it->key.size());
      drop = hash % h.split_modulus == h.split_to && ok > req.after &&
             (req.end || ok <= req.upto);
    }
    dropped += drop;
    it = drop ? h.entries.erase(it) : it + 1;
  }
  if (req.end) {
    h.modulus = h.split_modulus;
    h.split_to = RTDB_NO_SHARD;
    h.split_modulus = 0;
    h.moved_upto.clear();
    h.split_owner.clear();
  } else {
    h.moved_upto = req.upto;
  }
  if (!gone.empty())
    h.seq++;
  release_step(&s, req.owner, req.wflags);
  r = write_shard_hdr(hctx, h);
  return r < 0 ? r : dropped;
}

/*
 * count (read) CountReq -> CountReply: the records (omap keys) of the
 * shard, counted up to limit + 1 (more than limit). A missing object: 0.
 */
int count(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  CountReq req;
  int r = open_object(hctx, "count", in, &req, OPEN_REQUEST);
  if (r <= 0)
    return r;
  CountReply reply;
  std::string from;
  while (reply.count <= req.limit) {
    std::set<std::string> keys;
    bool more = false;
    uint64_t want = std::min<uint64_t>((uint64_t)req.limit + 1 - reply.count, 1000);
    r = cls_cxx_map_get_keys(hctx, from, want, &keys, &more);
    if (r == -ENOENT)
      break;
    if (r < 0)
      return r;
    reply.count += (uint32_t)keys.size();
    if (!more || keys.empty())
      break;
    from = *keys.rbegin();
  }
  put_reply(out, reply);
  return 0;
}

/*
 * fence_epoch (write) EpochReq: the shard's epoch becomes at least `epoch`
 * (the object is created if missing): a transaction of an older epoch can
 * no longer take its isolation or write it (types.h).
 */
int fence_epoch(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  EpochReq req;
  Shard s;
  int r = open_object(hctx, "fence_epoch", in, &req, OPEN_HEADER, &s);
  if (r <= 0)
    return r;
  if (s.h.epoch >= req.epoch && !object_missing(hctx))
    return 0;
  s.h.epoch = std::max(s.h.epoch, req.epoch);
  return write_shard_hdr(hctx, s.h);
}
