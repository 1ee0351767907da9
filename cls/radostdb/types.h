/*
 * radostdb class: the shard metadata kept in a shard object's omap header.
 *
 * Only the class writes it, in the same atomic operation as the record
 * change it accounts for. Layout (little-endian), RTDB_SHARD_HDR_V1 bytes:
 *   u8  version   1
 *   u8  compat    1 (oldest reader version that understands this header)
 *   u16 reserved  0
 *   u64 seq       shard sequence number: +1 on every change of the shard
 * A missing (empty) header reads as all zeros; one that does not decode makes
 * every method fail with -EIO.
 */
#ifndef RADOSTDB_TYPES_H
#define RADOSTDB_TYPES_H

#include <cstdint>

#define RTDB_SHARD_HDR_V1 12

struct rtdb_shard_hdr {
  uint64_t seq = 0;
};

#endif
