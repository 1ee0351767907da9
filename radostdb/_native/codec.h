/*
 * radostdb record codec: the on-disk format of keys and records.
 *
 * Plain C99, no Python and no Ceph headers: the same source is compiled into
 * the CFFI extension (radostdb/_native) and into the object class
 * (cls/radostdb), so client and OSD can never disagree on the format.
 * radostdb/codec.py holds a pure-Python twin with identical output; the
 * shared test vectors in tests/vectors/codec.json pin both.
 *
 * Format version 1 (RTDB_FORMAT_VERSION). Changing anything below is a
 * format change and needs a version bump.
 *
 * crc32c
 *   CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the iSCSI
 *   definition: rtdb_crc32c(0, "123456789", 9) == 0xE3069283. The first
 *   argument is a previous result, so rtdb_crc32c(rtdb_crc32c(0, a), b) ==
 *   rtdb_crc32c(0, a || b): the OSD extends a record's crc on append without
 *   rereading the old data.
 *
 * key hash and shard
 *   rtdb_key_hash = 64-bit FNV-1a over the raw key bytes (offset basis
 *   0xcbf29ce484222325, prime 0x100000001b3), then the splitmix64 finaliser
 *   (x ^= x >> 30; x *= 0xbf58476d1ce4e5b9; x ^= x >> 27;
 *    x *= 0x94d049bb133111eb; x ^= x >> 31).
 *   rtdb_shard_of(key, n) = rtdb_key_hash(key) % n  (n >= 1).
 *
 * key encoding (omap key)
 *   python-rados passes omap keys as NUL-terminated UTF-8 strings, and the
 *   OSD sorts omap keys bytewise. A raw key (any bytes, any length including
 *   0) is encoded byte by byte with a prefix-free, order-preserving code
 *   whose output is printable-ish 7-bit ASCII without NUL:
 *     0x00           -> 0x01 0x01
 *     0x01           -> 0x01 0x02
 *     0x02 .. 0x7D   -> the byte itself
 *     0x7E .. 0xFC   -> 0x7E (b - 0x7D)        second byte 0x01 .. 0x7F
 *     0xFD .. 0xFF   -> 0x7F (b - 0xFC)        second byte 0x01 .. 0x03
 *   The code is prefix-free and monotonic per byte, so bytewise order of the
 *   encodings equals bytewise order of the raw keys.
 *   The empty raw key is the one exception: it encodes to the single byte
 *   0x01 (a lone escape, malformed anywhere else), not to the empty string,
 *   because an omap listing starts after a key and start_after "" never
 *   returns the key "" (and empty omap keys are fragile in general), so a
 *   record under "" would be invisible to traversal. Order still holds:
 *   "\x01" sorts before every other encoding (raw keys starting 0x00 / 0x01
 *   encode to 0x01 0x01 ... / 0x01 0x02 ..., longer with the same first
 *   byte; all others start with a byte >= 0x02). So every encoded key is
 *   non-empty: 1 .. max(2 * len, 1) bytes long.
 *   Decoding maps exactly the one byte 0x01 to the empty key and rejects
 *   (returns -1) the empty string, a lone escape byte at the end of a longer
 *   string, a second byte outside the ranges above, and any byte 0x00 or
 *   >= 0x80.
 *
 * record (omap value), little-endian, header RTDB_REC_HDR = 20 bytes:
 *     offset 0  u8  format      RTDB_FORMAT_VERSION (1)
 *     offset 1  u8  flags       0 (reserved for later use)
 *     offset 2  u16 reserved    0
 *     offset 4  u64 rseq        record sequence number (set by the OSD)
 *     offset 12 u32 dlen        data length
 *     offset 16 u32 crc         rtdb_crc32c(0, rawkey || data)
 *     offset 20 data[dlen]
 *   A record decodes only if its length is exactly 20 + dlen, its format is
 *   1, and the crc matches the raw key and data.
 *
 * page (reply of the class `list` method, parsed by rtdb_page_index)
 *   a sequence of entries, each:
 *     u32 klen, raw key bytes[klen], u32 rlen, record bytes[rlen]
 *   (little-endian lengths; keys are raw, already decoded by the OSD).
 */
#ifndef RADOSTDB_CODEC_H
#define RADOSTDB_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define RTDB_FORMAT_VERSION 1
#define RTDB_REC_HDR 20

/* errors returned by the decoders */
#define RTDB_OK 0
#define RTDB_EMALFORMED (-1) /* bytes do not follow the format */
#define RTDB_ECRC (-2)       /* well-formed but the crc does not match */

uint32_t rtdb_crc32c(uint32_t crc, const uint8_t *buf, size_t len);
uint64_t rtdb_key_hash(const uint8_t *key, size_t len);
uint32_t rtdb_shard_of(const uint8_t *key, size_t len, uint32_t nshards);

/* Linear hashing over `base` shards grown to `nshards` (base <= nshards):
 * M = base * 2^L, the largest such <= nshards; shards 0 .. nshards - M - 1
 * were split (their keys hash mod 2M), the others not (mod M). With
 * nshards == base it is rtdb_shard_of. */
uint64_t rtdb_level_modulus(uint32_t base, uint32_t nshards);
uint32_t rtdb_shard_in(const uint8_t *key, size_t len, uint32_t base, uint32_t nshards);

/* out must hold 2 * len bytes, and at least 1 (the empty key encodes to
 * one byte): size it 2 * len + 1 or max(2 * len, 1). Returns the encoded
 * length, always >= 1. */
size_t rtdb_key_encode(const uint8_t *in, size_t len, uint8_t *out);
/* out must hold len bytes; returns the decoded length (0 only for the
 * encoding "\x01" of the empty key) or RTDB_EMALFORMED (also for len 0). */
long rtdb_key_decode(const uint8_t *in, size_t len, uint8_t *out);

/* out must hold RTDB_REC_HDR + dlen bytes; returns the record length.
 * dlen must be <= UINT32_MAX - RTDB_REC_HDR (the caller checks), so that
 * the header's dlen and a page's rlen both fit their u32. */
size_t rtdb_record_encode(uint64_t rseq, uint8_t flags,
                          const uint8_t *key, size_t klen,
                          const uint8_t *data, size_t dlen, uint8_t *out);
/* Returns RTDB_OK and sets *rseq, *flags, and the data's offset/length in
 * rec; or returns RTDB_EMALFORMED / RTDB_ECRC and sets nothing. */
int rtdb_record_decode(const uint8_t *key, size_t klen,
                       const uint8_t *rec, size_t rlen,
                       uint64_t *rseq, uint8_t *flags,
                       size_t *data_off, size_t *dlen);
/* The header of record rec after appending data[dlen] to it: rec must
 * have verified (rtdb_record_decode returned RTDB_OK). The header keeps
 * rec's flags, takes rseq, rec's data length + dlen, and rec's crc
 * extended over data (the old data is not read again). out must hold
 * RTDB_REC_HDR bytes; the new record is out, then rec's data, then data.
 * The new data length must be <= UINT32_MAX - RTDB_REC_HDR (the caller
 * checks). Returns RTDB_REC_HDR. Not in the Python module: only the OSD
 * appends. */
size_t rtdb_record_extend_header(const uint8_t *rec, uint64_t rseq,
                                 const uint8_t *data, size_t dlen, uint8_t *out);

/*
 * Index a page: for entry i fills idx[4*i .. 4*i+3] = key offset, key
 * length, data offset, data length (offsets into page; the data is the
 * record's data after its header), verifying every record (format, length,
 * crc). idx must hold 4 * max entries; indexing stops after max entries.
 * An entry takes at least 8 + RTDB_REC_HDR bytes, so with max =
 * len / (8 + RTDB_REC_HDR) + 1 the whole page is always indexed and checked
 * (including any trailing bytes that do not form an entry).
 * Returns the number of entries indexed (>= 0; 0 for an empty page). On
 * failure returns -1, sets *err to RTDB_EMALFORMED (a length runs past the
 * end of the page, or the record does not follow the format) or RTDB_ECRC,
 * and sets *bad to the index of the failing entry (counting from 0).
 */
long rtdb_page_index(const uint8_t *page, size_t len, size_t *idx,
                     size_t max, int *err, size_t *bad);

#endif
