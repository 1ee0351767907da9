/*
 * radostdb class: the shard header and its lock table (layout in types.h).
 *
 * lock design:
 * - Locks live in the shard's omap header, so a lock check and the write it
 *   guards happen in ONE atomic OSD operation: no client-side read.
 * - A holder is a handle id (16 bytes) with a lease expiry on the OSD's wall
 *   clock. Clients renew leases in the background; a holder that dies stops
 *   renewing and its entry stops counting once it expires. Expired holders
 *   are pruned by any method that rewrites the header.
 * - Fencing: a write that the client sends "under a lock" (the assert flag)
 *   is refused with -ENOLCK unless the owner still has an entry covering the
 *   key (its record lock or a shard lock). An entry that expired and was
 *   taken by another owner is gone, so a holder that slept through its lease
 *   cannot write with its stale lock.
 * - Conflicts (between different owners, unexpired holders only):
 *     record exclusive  vs  any record lock on the key, any shard lock
 *     record shared     vs  record exclusive on the key, shard exclusive
 *     shard exclusive   vs  any lock in the shard
 *     shard shared      vs  record exclusive (any key), shard exclusive
 *     write of a key    vs  any record lock on the key, any shard lock
 * - A refused request returns -EBUSY and changes nothing (a failed OSD
 *   method keeps none of its writes, and a write method cannot return data),
 *   so waking waiters is the clients' business: they watch the shard object
 *   and tell holders they wait by notify (radostdb/locking.py).
 */
#ifndef RADOSTDB_LOCKS_H
#define RADOSTDB_LOCKS_H

#include <cerrno>
#include <ctime>
#include <string>

#include "objclass.h"
#include "ops.h"
#include "types.h"

static uint64_t now_ms()
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int read_shard_hdr(cls_method_context_t hctx, rtdb_shard_hdr *h)
{
  *h = rtdb_shard_hdr();
  ceph::bufferlist bl;
  int r = cls_cxx_map_read_header(hctx, &bl);
  if (r == -ENOENT || (r == 0 && bl.length() == 0))
    return 0;
  if (r < 0)
    return r;
  WireReader rd(bl.c_str(), bl.length());
  uint8_t version, compat, reserved0, reserved1;
  if (!rd.u8(&version) || !rd.u8(&compat) || !rd.u8(&reserved0) || !rd.u8(&reserved1) ||
      !rd.u64(&h->seq) || compat > RTDB_SHARD_HDR_VERSION)
    return -EIO;
  if (version < 2)
    return 0;
  uint32_t nlocks;
  if (!rd.u64(&h->applied) || !rd.u64(&h->pending) || !rd.u32(&nlocks) || nlocks > bl.length())
    return -EIO;
  h->locks.resize(nlocks);
  for (auto &l : h->locks) {
    const char *k;
    uint32_t klen, nholders;
    if (!rd.u8(&l.kind) || !rd.u8(&l.mode) || !rd.bytes(&k, &klen) ||
        !rd.u32(&nholders) || nholders > bl.length())
      return -EIO;
    l.key.assign(k, klen);
    l.holders.resize(nholders);
    for (auto &hd : l.holders) {
      const char *o;
      if (!rd.fixed(&o, RTDB_OWNER_LEN) || !rd.u64(&hd.expiry_ms))
        return -EIO;
      hd.owner.assign(o, RTDB_OWNER_LEN);
    }
  }
  return rd.done() ? 0 : -EIO;
}

static int write_shard_hdr(cls_method_context_t hctx, const rtdb_shard_hdr &h)
{
  ceph::bufferlist bl;
  put_u8(&bl, RTDB_SHARD_HDR_VERSION);
  put_u8(&bl, RTDB_SHARD_HDR_VERSION);
  put_u8(&bl, 0);
  put_u8(&bl, 0);
  put_u64(&bl, h.seq);
  put_u64(&bl, h.applied);
  put_u64(&bl, h.pending);
  put_u32(&bl, (uint32_t)h.locks.size());
  for (const auto &l : h.locks) {
    put_u8(&bl, l.kind);
    put_u8(&bl, l.mode);
    put_bytes(&bl, l.key.data(), (uint32_t)l.key.size());
    put_u32(&bl, (uint32_t)l.holders.size());
    for (const auto &hd : l.holders) {
      bl.append(hd.owner.data(), RTDB_OWNER_LEN);
      put_u64(&bl, hd.expiry_ms);
    }
  }
  return cls_cxx_map_write_header(hctx, &bl);
}

/* Drop expired holders and entries left without holders; count holders dropped. */
static int prune_locks(rtdb_shard_hdr *h, uint64_t now)
{
  int dropped = 0;
  for (auto it = h->locks.begin(); it != h->locks.end();) {
    auto &hs = it->holders;
    for (auto jt = hs.begin(); jt != hs.end();) {
      if (jt->expiry_ms <= now) {
        jt = hs.erase(jt);
        dropped++;
      } else {
        ++jt;
      }
    }
    it = hs.empty() ? h->locks.erase(it) : it + 1;
  }
  return dropped;
}

static bool held_by_other(const rtdb_lock &l, const std::string &owner)
{
  for (const auto &hd : l.holders)
    if (hd.owner != owner)
      return true;
  return false;
}

/*
 * Would a request by `owner` conflict? kind/mode describe a lock request;
 * kind 0 means a plain write of `key`.
 */
static bool conflicts(const rtdb_shard_hdr *h, const std::string &owner, uint8_t kind, uint8_t mode,
                      const std::string &key)
{
  for (const auto &l : h->locks) {
    if (!held_by_other(l, owner))
      continue;
    bool c;
    bool same_key = l.kind == RTDB_LOCK_RECORD && l.key == key;
    if (kind == 0) { /* write */
      c = l.kind == RTDB_LOCK_SHARD || same_key;
    } else if (kind == RTDB_LOCK_RECORD && mode == RTDB_LOCK_EXCL) {
      c = l.kind == RTDB_LOCK_SHARD || same_key;
    } else if (kind == RTDB_LOCK_RECORD) {
      c = l.mode == RTDB_LOCK_EXCL && (l.kind == RTDB_LOCK_SHARD || same_key);
    } else if (mode == RTDB_LOCK_EXCL) {
      c = true;
    } else {
      c = l.mode == RTDB_LOCK_EXCL;
    }
    if (c)
      return true;
  }
  return false;
}

/* Does `owner` hold a lock covering `key` (its record lock or a shard lock)? */
static bool covers(const rtdb_shard_hdr &h, const std::string &owner, const std::string &key)
{
  for (const auto &l : h.locks) {
    if (l.kind == RTDB_LOCK_RECORD && l.key != key)
      continue;
    for (const auto &hd : l.holders)
      if (hd.owner == owner)
        return true;
  }
  return false;
}

/* Does `owner` hold a shard lock (exclusive or shared)? */
static bool covers_shard(const rtdb_shard_hdr &h, const std::string &owner)
{
  for (const auto &l : h.locks)
    if (l.kind == RTDB_LOCK_SHARD)
      for (const auto &hd : l.holders)
        if (hd.owner == owner)
          return true;
  return false;
}

static rtdb_lock *find_lock(rtdb_shard_hdr *h, uint8_t kind, uint8_t mode,
                            const std::string &key)
{
  for (auto &l : h->locks)
    if (l.kind == kind && l.mode == mode && l.key == key)
      return &l;
  return nullptr;
}

#endif
