/*
 * radostdb class: the shard metadata kept in a shard object's omap header.
 *
 * Only the class writes it, in the same atomic operation as the record or
 * lock change it accounts for. Layout (little-endian):
 *   u8  version   2            (1: the same without the lock table)
 *   u8  compat    2            (oldest reader version that understands it)
 *   u16 reserved  0
 *   u64 seq       shard sequence number: +1 on every change of the records
 *   (version >= 2:)
 *   u64 applied   id of the last multi-shard transaction applied here (0: none);
 *                 re-applying it is a no-op, so recovery may resend it
 *   u64 pending   id of a multi-shard transaction applied here whose commit is
 *                 not finished (0: none): reads and writes wait (-EUCLEAN)
 *   u32 nlocks    then nlocks lock entries:
 *     u8 kind     1 record lock (key = raw record key), 2 shard lock (key empty)
 *     u8 mode     1 exclusive, 2 shared
 *     bytes key   u32 length + raw key
 *     u32 nholders, then per holder:
 *       u8[16] owner       the holding handle's id
 *       u64    expiry_ms   OSD wall clock (ms since the epoch) when the lease ends
 * A missing (empty) header reads as seq 0, no locks; one that does not decode
 * makes every method fail with -EIO.
 */
#ifndef RADOSTDB_TYPES_H
#define RADOSTDB_TYPES_H

#include <cstdint>
#include <string>
#include <vector>

#define RTDB_SHARD_HDR_VERSION 2
#define RTDB_OWNER_LEN 16

enum rtdb_lock_kind : uint8_t { RTDB_LOCK_RECORD = 1, RTDB_LOCK_SHARD = 2 };
enum rtdb_lock_mode : uint8_t { RTDB_LOCK_EXCL = 1, RTDB_LOCK_SHARED = 2 };

struct rtdb_holder {
  std::string owner; /* RTDB_OWNER_LEN bytes */
  uint64_t expiry_ms = 0;
};

struct rtdb_lock {
  uint8_t kind = RTDB_LOCK_RECORD;
  uint8_t mode = RTDB_LOCK_EXCL;
  std::string key;
  std::vector<rtdb_holder> holders;
};

struct rtdb_shard_hdr {
  uint64_t seq = 0;
  uint64_t applied = 0;
  uint64_t pending = 0;
  std::vector<rtdb_lock> locks;
};

#endif
