/*
 * radostdb class wire format: constants and the little-endian reader/writer
 * every method uses. The layout of each request and reply is documented with
 * the method in server.cc; radostdb/clsops.py is the Python side.
 *
 * Conventions (all methods):
 *   - integers are little-endian; "bytes" is a u32 length then the bytes;
 *   - every request starts with u8 version: a request whose version is newer
 *     than RADOSTDB_WIRE_VERSION is refused with -EOPNOTSUPP, a malformed one
 *     (short, trailing bytes, bad enum) with -EINVAL;
 *   - keys travel raw (any bytes); the OSD encodes them into omap keys with
 *     the shared codec (radostdb/_native/codec.h).
 */
#ifndef RADOSTDB_OPS_H
#define RADOSTDB_OPS_H

#include <cstdint>
#include <cstring>
#include <string>

#include <rados/buffer.h>

#define RADOSTDB_WIRE_VERSION 1

/* store flags, the values of TDB's TDB_REPLACE / TDB_INSERT / TDB_MODIFY */
enum rtdb_store_flag : uint8_t {
  RTDB_REPLACE = 1,
  RTDB_INSERT = 2,
  RTDB_MODIFY = 3,
};

/* operations of an `apply` batch */
enum rtdb_apply_op : uint8_t {
  RTDB_OP_PUT = 1,        /* set the record, replacing any */
  RTDB_OP_INSERT = 2,     /* set the record; -EEXIST if present */
  RTDB_OP_MODIFY = 3,     /* set the record; -ENOENT if absent */
  RTDB_OP_APPEND = 4,     /* append data to the record (create if absent) */
  RTDB_OP_DELETE = 5,     /* remove the record; -ENOENT if absent */
  RTDB_OP_DISCARD = 6,    /* remove the record if present */
};

/* flags of a write request (store, append, delete, apply) */
#define RTDB_WRITE_ASSERT_LOCK 0x1 /* the writer holds a lock covering every key */

/* Bounds-checked reader over a request buffer. */
class WireReader {
 public:
  WireReader(const char *p, size_t n) : p_(p), end_(p + n) {}
  bool u8(uint8_t *v) { return raw(v, 1); }
  bool u32(uint32_t *v) {
    unsigned char b[4];
    if (!raw(b, 4)) return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
  }
  bool u64(uint64_t *v) {
    uint32_t lo, hi;
    if (!u32(&lo) || !u32(&hi)) return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
  }
  /* a u32-length-prefixed byte string, returned as pointer + length */
  bool bytes(const char **ptr, uint32_t *len) {
    if (!u32(len) || (size_t)(end_ - p_) < *len) return false;
    *ptr = p_;
    p_ += *len;
    return true;
  }
  /* n raw bytes, returned as a pointer */
  bool fixed(const char **ptr, size_t n) {
    if ((size_t)(end_ - p_) < n) return false;
    *ptr = p_;
    p_ += n;
    return true;
  }
  bool done() const { return p_ == end_; }

 private:
  bool raw(void *dst, size_t n) {
    if ((size_t)(end_ - p_) < n) return false;
    memcpy(dst, p_, n);
    p_ += n;
    return true;
  }
  const char *p_;
  const char *end_;
};

inline void put_u8(ceph::bufferlist *bl, uint8_t v) { bl->append((const char *)&v, 1); }
inline void put_u32(ceph::bufferlist *bl, uint32_t v) {
  char b[4] = {(char)v, (char)(v >> 8), (char)(v >> 16), (char)(v >> 24)};
  bl->append(b, 4);
}
inline void put_u64(ceph::bufferlist *bl, uint64_t v) {
  put_u32(bl, (uint32_t)v);
  put_u32(bl, (uint32_t)(v >> 32));
}
inline void put_bytes(ceph::bufferlist *bl, const char *p, uint32_t n) {
  put_u32(bl, n);
  bl->append(p, n);
}

#endif
