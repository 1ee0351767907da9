/*
 * radostdb object class: the OSD side of radostdb.
 *
 * class design:
 * - A database is a header object plus shard objects whose omap holds the
 *   records (omap key = the raw key encoded by the shared codec, omap value =
 *   a codec record: header with record sequence number and crc32c, then the
 *   data). Every change of a shard goes through a method below, so the
 *   decision (INSERT on an existing key, MODIFY/DELETE of a missing one), the
 *   record header, and the shard sequence number in the omap header are all
 *   applied in ONE atomic OSD operation, in one round trip.
 * - Reads inside one method do not see that method's own pending writes (an
 *   OSD property), so `apply` keeps an overlay of the records it changed and
 *   writes them all at the end.
 * - A method that fails returns a negative errno and changes nothing: the OSD
 *   drops the whole compound operation.
 * - The record format and the key encoding are shared with the client
 *   through codec.c, compiled into this class unchanged.
 *
 * Wire formats (conventions in ops.h: little-endian, "bytes" = u32 length +
 * bytes, every request starts with u8 version). Errors common to every
 * method: -EINVAL malformed request, -EOPNOTSUPP request version too new,
 * -EIO stored data that does not decode (a corrupt record or shard header).
 * Locks and their conflicts: locks.h; the shard header: types.h.
 *
 * "whead" below, the head of every write request after the version:
 *   u8[16] owner   the writing handle's id
 *   u8 wflags      bit 0 (RTDB_WRITE_ASSERT_LOCK): the writer holds a lock
 *                  covering every key written; refused with -ENOLCK if the
 *                  OSD finds no such lock of this owner (fencing).
 * A write refused because another owner holds a conflicting lock returns
 * -EBUSY having changed nothing: the client waits for a notify on the shard
 * object (or a timeout) and retries. (Write methods can return neither data
 * nor positive values to python-rados clients: only 0 or a negative errno.)
 *
 * version (read)
 *   request: ignored.   reply: the wire version as ASCII digits ("1").
 *   The OSD answers -ENOENT before the class runs if the object is missing.
 *
 * store (write)
 *   request: u8 version, whead, u8 flag (1 REPLACE, 2 INSERT, 3 MODIFY),
 *            bytes key, bytes data
 *   effect:  sets the record with rseq = new shard seq.
 *   result:  0, -EBUSY; -EEXIST INSERT of an existing key; -ENOENT MODIFY
 *            of a missing key; -ENOLCK failed lock assertion.
 *
 * append (write)
 *   request: u8 version, whead, bytes key, bytes data
 *   effect:  record data becomes old data + data (created if missing); the
 *            old record is verified (crc) and its crc extended over the data.
 *   result:  0, -EBUSY; -EIO the existing record does not decode or verify.
 *
 * delete (write)
 *   request: u8 version, whead, bytes key
 *   result:  0, -EBUSY; -ENOENT missing key.
 *
 * apply (write): a batch applied atomically to one shard
 *   request: u8 version, whead, u64 txid, u32 count, count x { u8 op,
 *            bytes key, bytes data }; op: 1 PUT, 2 INSERT, 3 MODIFY, 4 APPEND,
 *            5 DELETE, 6 DISCARD (ops.h); data is empty for DELETE and
 *            DISCARD. Entries apply in order; a later entry sees the earlier.
 *   effect:  the shard seq grows by one for the whole batch; every record
 *            written gets that seq as its rseq. With txid != 0 (a part of a
 *            multi-shard transaction, radostdb/txn.py): a no-op if this txid
 *            was applied here already; else applied, and the shard records
 *            applied = pending = txid until `settle`.
 *   result:  those of the single-record methods; the first failing entry
 *            aborts the whole batch.
 *
 * clear (write)
 *   request: u8 version, whead
 *   effect:  removes every record, shard seq + 1 (locks stay); on a missing
 *            object does nothing (and creates nothing). Conflicts like an
 *            exclusive shard lock.   result: 0, -EBUSY, -ENOLCK.
 *
 * Every write (store, append, delete, apply with another txid, clear) and
 * every read (get, list) meets -EUCLEAN ("needs cleaning"; not -EAGAIN, which
 * the OSD takes as "requeued" and never answers) while the shard has a pending
 * transaction: the client waits for the commit to finish, or recovers it.
 *
 * settle (write)
 *   request: u8 version, u64 txid.   effect: clears pending if it is txid.
 *
 * get (read)
 *   request: u8 version, u32 maxlen, bytes key
 *   reply:   u8 0 then the record (codec format); u8 1: no such record;
 *            u8 2 then u32 n: the reply needs n bytes, ask again with more.
 *
 * list (read): a page of records in omap (encoded-key) order
 *   request: u8 version, u32 max records, u32 max bytes (the page stops
 *            before exceeding it, but holds at least one record),
 *            bytes start_after (an encoded key; empty: from the start)
 *   reply:   u8 more, then per record: bytes raw key, bytes record — the
 *            codec's page format after the first byte.
 *
 * bump (write)
 *   request: u8 version.   effect: seq + 1 without touching records (used
 *   on the header object by increment_seqnum_nonblock).
 *
 * seq (read)
 *   request: u8 version.   reply: u64 seq (0 for an object without header).
 *
 * lock (write)
 *   request: u8 version, u8[16] owner, u32 lease_ms, u8 kind (1 record,
 *            2 shard), u8 mode (1 exclusive, 2 shared), bytes key (empty for
 *            a shard lock)
 *   effect:  grants the lock (or renews it if the owner holds it) with
 *            expiry = now + lease_ms.
 *   result:  0 granted, -EBUSY held by another owner.
 *
 * unlock (write)
 *   request: u8 version, u8[16] owner, u8 kind, u8 mode, bytes key
 *   result:  0; -ENOLCK the owner holds no such lock (it expired and was
 *            taken, or was never taken).
 *
 * renew (write)
 *   request: u8 version, u8[16] owner, u32 lease_ms
 *   effect:  every entry of the owner in this shard expires now + lease_ms.
 *            A lock that expired and was taken is gone and stays gone: the
 *            owner finds out when a write under it or its unlock is refused
 *            with -ENOLCK.   result: 0.
 *
 * prune (write)
 *   request: u8 version.   effect: drops expired holders (nothing on a
 *   missing object).   result: 0.
 *
 * locks (read)
 *   request: u8 version.
 *   reply:   u64 OSD time in ms, then the shard header as stored (types.h;
 *            empty when the object has none).
 *
 * watchers (read)
 *   request: u8 version.
 *   reply:   u32 count, count x { u64 client id (client.N), u64 cookie }.
 */
#include <cerrno>
#include <ctime>
#include <list>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "objclass.h"
#include "ops.h"
#include "types.h"

#include "codec.c"
#include "locks.h"

/* ---- watcher listing: layout-compatible with the OSD's own types ---- */
struct watch_item_t {
  uint8_t name_type;     /* entity_name_t */
  int64_t name_num;
  uint64_t cookie;
  uint32_t timeout_seconds;
  unsigned char addr[36]; /* entity_addr_t */
};
static_assert(sizeof(watch_item_t) == 64, "watch_item_t layout");
struct obj_list_watch_response_t {
  std::list<watch_item_t> entries;
};
int cls_cxx_list_watchers(cls_method_context_t hctx, obj_list_watch_response_t *watchers);

/* A shard never written has no object; methods that only clean up leave it so. */
static bool object_missing(cls_method_context_t hctx)
{
  uint64_t size;
  time_t mtime;
  return cls_cxx_stat(hctx, &size, &mtime) == -ENOENT;
}

/* ---- records ---- */
static std::string omap_key(const char *key, uint32_t klen)
{
  std::string out;
  out.resize((size_t)klen * 2 + 1); /* >= 1: the empty key encodes to "\x01" */
  size_t n = rtdb_key_encode((const uint8_t *)key, klen, (uint8_t *)&out[0]);
  out.resize(n);
  return out;
}

static ceph::bufferlist make_record(uint64_t rseq, const char *key, uint32_t klen,
                                    const char *data, uint32_t dlen)
{
  ceph::bufferlist bl;
  ceph::bufferptr bp(RTDB_REC_HDR + (size_t)dlen);
  rtdb_record_encode(rseq, 0, (const uint8_t *)key, klen, (const uint8_t *)data, dlen,
                     (uint8_t *)bp.c_str());
  bl.append(std::move(bp));
  return bl;
}

/* Append to a stored record, verified first: new header, old data, new data,
 * crc extended from the verified old one. */
static int extend_record(uint64_t rseq, const std::string &okey, ceph::bufferlist &old,
                         const char *data, uint32_t dlen, ceph::bufferlist *out)
{
  std::string raw(okey.size(), '\0');
  long klen = rtdb_key_decode((const uint8_t *)okey.data(), okey.size(), (uint8_t *)&raw[0]);
  if (klen < 0)
    return -EIO;
  uint64_t oseq;
  uint8_t oflags;
  size_t doff, olen;
  const uint8_t *p = (const uint8_t *)old.c_str();
  if (rtdb_record_decode((const uint8_t *)raw.data(), (size_t)klen, p, old.length(), &oseq,
                         &oflags, &doff, &olen) != RTDB_OK)
    return -EIO;
  if ((uint64_t)olen + dlen > 0xffffffffULL - RTDB_REC_HDR)
    return -EFBIG;
  uint32_t ocrc = (uint32_t)p[16] | (uint32_t)p[17] << 8 | (uint32_t)p[18] << 16 |
                  (uint32_t)p[19] << 24;
  ceph::bufferlist hdr;
  put_u8(&hdr, RTDB_FORMAT_VERSION);
  put_u8(&hdr, oflags);
  put_u8(&hdr, 0);
  put_u8(&hdr, 0);
  put_u64(&hdr, rseq);
  put_u32(&hdr, (uint32_t)(olen + dlen));
  put_u32(&hdr, rtdb_crc32c(ocrc, (const uint8_t *)data, dlen));
  out->clear();
  out->append(hdr);
  out->append((const char *)p + doff, olen);
  out->append(data, dlen);
  return 0;
}

struct Entry {
  uint8_t op;
  const char *key;
  uint32_t klen;
  const char *data;
  uint32_t dlen;
};

/*
 * Apply entries to the shard with one seq bump. The overlay holds every key
 * touched so far: present with a value, or present with `gone` for removals.
 */
static int apply_entries(cls_method_context_t hctx, const std::string &owner, uint8_t wflags,
                         const Entry *entries, size_t n, uint64_t txid = 0)
{
  rtdb_shard_hdr h;
  int r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  if (txid && h.applied == txid)
    return 0; /* a resent transaction part: applied already */
  if (h.pending && h.pending != txid)
    return -EUCLEAN; /* another transaction's commit is not finished here */
  prune_locks(&h, now_ms());
  for (size_t i = 0; i < n && ((wflags & RTDB_WRITE_ASSERT_LOCK) || !h.locks.empty()); i++) {
    std::string raw(entries[i].key, entries[i].klen);
    if ((wflags & RTDB_WRITE_ASSERT_LOCK) && !covers(h, owner, raw))
      return -ENOLCK;
    if (conflicts(&h, owner, 0, 0, raw))
      return -EBUSY;
  }
  uint64_t rseq = h.seq + 1;
  std::map<std::string, ceph::bufferlist> set;
  std::set<std::string> gone;

  for (size_t i = 0; i < n; i++) {
    const Entry &e = entries[i];
    std::string k = omap_key(e.key, e.klen);
    bool exists;
    ceph::bufferlist cur;
    auto it = set.find(k);
    if (it != set.end()) {
      exists = true;
      cur = it->second;
    } else if (gone.count(k)) {
      exists = false;
    } else if (e.op == RTDB_OP_PUT) {
      exists = false; /* not needed */
    } else {
      r = cls_cxx_map_get_val(hctx, k, &cur);
      if (r < 0 && r != -ENOENT)
        return r;
      exists = r == 0;
    }
    bool put = false, remove = false;
    switch (e.op) {
      case RTDB_OP_INSERT:
        if (exists)
          return -EEXIST;
        put = true;
        break;
      case RTDB_OP_PUT:
        put = true;
        break;
      case RTDB_OP_MODIFY:
        if (!exists)
          return -ENOENT;
        put = true;
        break;
      case RTDB_OP_APPEND:
        if (exists) {
          ceph::bufferlist out;
          r = extend_record(rseq, k, cur, e.data, e.dlen, &out);
          if (r < 0)
            return r;
          set[k] = std::move(out);
          gone.erase(k);
        } else {
          put = true;
        }
        break;
      case RTDB_OP_DELETE:
        if (!exists)
          return -ENOENT;
        remove = true;
        break;
      case RTDB_OP_DISCARD:
        remove = true;
        break;
      default:
        return -EINVAL;
    }
    if (put) {
      set[k] = make_record(rseq, e.key, e.klen, e.data, e.dlen);
      gone.erase(k);
    } else if (remove) {
      set.erase(k);
      gone.insert(k);
    }
  }
  for (const auto &k : gone) {
    r = cls_cxx_map_remove_key(hctx, k);
    if (r < 0 && r != -ENOENT)
      return r;
  }
  if (!set.empty()) {
    r = cls_cxx_map_set_vals(hctx, &set);
    if (r < 0)
      return r;
  }
  h.seq = rseq;
  if (txid) {
    h.applied = txid;
    h.pending = txid;
  }
  return write_shard_hdr(hctx, h);
}

/* ---- request decoding ---- */
static int begin(WireReader &rd)
{
  uint8_t version;
  if (!rd.u8(&version))
    return -EINVAL;
  if (version > RADOSTDB_WIRE_VERSION)
    return -EOPNOTSUPP;
  return 0;
}

/* the common head of write requests: owner and write flags */
static int write_head(WireReader &rd, std::string *owner, uint8_t *wflags)
{
  const char *o;
  if (!rd.fixed(&o, RTDB_OWNER_LEN) || !rd.u8(wflags))
    return -EINVAL;
  owner->assign(o, RTDB_OWNER_LEN);
  return 0;
}

static int read_entry_body(WireReader &rd, Entry *e, bool with_data)
{
  if (!rd.bytes(&e->key, &e->klen))
    return -EINVAL;
  e->data = "";
  e->dlen = 0;
  if (with_data && !rd.bytes(&e->data, &e->dlen))
    return -EINVAL;
  return 0;
}

/* ---- methods ---- */
static int version(cls_method_context_t, ceph::bufferlist *, ceph::bufferlist *out)
{
  out->append(std::to_string(RADOSTDB_WIRE_VERSION));
  return 0;
}

static int store(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  std::string owner;
  uint8_t wflags, flag;
  int r = begin(rd);
  if (r < 0)
    return r;
  Entry e;
  if (write_head(rd, &owner, &wflags) < 0 || !rd.u8(&flag) ||
      read_entry_body(rd, &e, true) < 0 || !rd.done())
    return -EINVAL;
  switch (flag) {
    case RTDB_REPLACE: e.op = RTDB_OP_PUT; break;
    case RTDB_INSERT: e.op = RTDB_OP_INSERT; break;
    case RTDB_MODIFY: e.op = RTDB_OP_MODIFY; break;
    default: return -EINVAL;
  }
  return apply_entries(hctx, owner, wflags, &e, 1);
}

static int append(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  std::string owner;
  uint8_t wflags;
  int r = begin(rd);
  if (r < 0)
    return r;
  Entry e;
  e.op = RTDB_OP_APPEND;
  if (write_head(rd, &owner, &wflags) < 0 || read_entry_body(rd, &e, true) < 0 || !rd.done())
    return -EINVAL;
  return apply_entries(hctx, owner, wflags, &e, 1);
}

static int del(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  std::string owner;
  uint8_t wflags;
  int r = begin(rd);
  if (r < 0)
    return r;
  Entry e;
  e.op = RTDB_OP_DELETE;
  if (write_head(rd, &owner, &wflags) < 0 || read_entry_body(rd, &e, false) < 0 || !rd.done())
    return -EINVAL;
  return apply_entries(hctx, owner, wflags, &e, 1);
}

static int apply(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  std::string owner;
  uint8_t wflags;
  int r = begin(rd);
  if (r < 0)
    return r;
  uint32_t count;
  uint64_t txid;
  if (write_head(rd, &owner, &wflags) < 0 || !rd.u64(&txid) || !rd.u32(&count) ||
      count > in->length())
    return -EINVAL;
  std::vector<Entry> entries(count);
  for (auto &e : entries) {
    if (!rd.u8(&e.op) || e.op < RTDB_OP_PUT || e.op > RTDB_OP_DISCARD)
      return -EINVAL;
    if (read_entry_body(rd, &e, true) < 0)
      return -EINVAL;
  }
  if (!rd.done())
    return -EINVAL;
  return apply_entries(hctx, owner, wflags, entries.data(), entries.size(), txid);
}

static int clear(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  std::string owner;
  uint8_t wflags;
  int r = begin(rd);
  if (r < 0)
    return r;
  if (write_head(rd, &owner, &wflags) < 0 || !rd.done())
    return -EINVAL;
  if (object_missing(hctx))
    return 0; /* a shard never written: nothing to clear */
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  if (h.pending)
    return -EUCLEAN;
  prune_locks(&h, now_ms());
  if ((wflags & RTDB_WRITE_ASSERT_LOCK) && !covers_shard(h, owner))
    return -ENOLCK;
  if (conflicts(&h, owner, RTDB_LOCK_SHARD, RTDB_LOCK_EXCL, ""))
    return -EBUSY;
  r = cls_cxx_map_clear(hctx);
  if (r < 0)
    return r;
  h.seq++;
  return write_shard_hdr(hctx, h);
}

static int bump(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  if (!rd.done())
    return -EINVAL;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  h.seq++;
  return write_shard_hdr(hctx, h);
}

static int seq(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  put_u64(out, h.seq);
  return 0;
}

static int settle(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  uint64_t txid;
  if (!rd.u64(&txid) || !rd.done() || txid == 0)
    return -EINVAL;
  if (object_missing(hctx))
    return 0;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  if (h.pending != txid)
    return 0;
  h.pending = 0;
  return write_shard_hdr(hctx, h);
}

/* the pending check every read makes; 0 when the shard is readable */
static int readable(cls_method_context_t hctx)
{
  ceph::bufferlist bl;
  int r = cls_cxx_map_read_header(hctx, &bl);
  if (r < 0 || bl.length() == 0)
    return r == -ENOENT ? 0 : r;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  return h.pending ? -EUCLEAN : 0;
}

static int get(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  uint32_t maxlen, klen;
  const char *k;
  if (!rd.u32(&maxlen) || !rd.bytes(&k, &klen) || !rd.done())
    return -EINVAL;
  r = readable(hctx);
  if (r < 0)
    return r;
  ceph::bufferlist rec;
  r = cls_cxx_map_get_val(hctx, omap_key(k, klen), &rec);
  if (r == -ENOENT) {
    put_u8(out, 1);
    return 0;
  }
  if (r < 0)
    return r;
  if (rec.length() + 5 > maxlen) {
    put_u8(out, 2);
    put_u32(out, rec.length() + 5);
    return 0;
  }
  put_u8(out, 0);
  out->append(rec);
  return 0;
}

static int list(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  uint32_t max, maxbytes, slen;
  const char *start;
  if (!rd.u32(&max) || !rd.u32(&maxbytes) || !rd.bytes(&start, &slen) || !rd.done() ||
      max == 0)
    return -EINVAL;
  r = readable(hctx);
  if (r < 0)
    return r;
  std::map<std::string, ceph::bufferlist> vals;
  bool more = false;
  r = cls_cxx_map_get_vals(hctx, std::string(start, slen), "", max, &vals, &more);
  if (r < 0)
    return r;
  put_u8(out, 0); /* "more", set below */
  std::string raw;
  uint32_t n = 0;
  for (const auto &kv : vals) {
    raw.resize(kv.first.size());
    long klen = rtdb_key_decode((const uint8_t *)kv.first.data(), kv.first.size(),
                                (uint8_t *)&raw[0]);
    if (klen < 0)
      return -EIO;
    if (n > 0 && out->length() + 8 + (size_t)klen + kv.second.length() > maxbytes) {
      more = true;
      break;
    }
    put_bytes(out, raw.data(), (uint32_t)klen);
    put_bytes(out, const_cast<ceph::bufferlist &>(kv.second).c_str(), kv.second.length());
    n++;
  }
  if (more) {
    ceph::bufferlist fixed;
    put_u8(&fixed, 1);
    fixed.append(out->c_str() + 1, out->length() - 1);
    out->swap(fixed);
  }
  return 0;
}

static int lock(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  const char *o, *k;
  uint32_t lease_ms, klen;
  uint8_t kind, mode;
  if (!rd.fixed(&o, RTDB_OWNER_LEN) || !rd.u32(&lease_ms) || !rd.u8(&kind) || !rd.u8(&mode) ||
      !rd.bytes(&k, &klen) || !rd.done())
    return -EINVAL;
  if ((kind != RTDB_LOCK_RECORD && kind != RTDB_LOCK_SHARD) ||
      (mode != RTDB_LOCK_EXCL && mode != RTDB_LOCK_SHARED) || lease_ms == 0 ||
      (kind == RTDB_LOCK_SHARD && klen != 0))
    return -EINVAL;
  std::string owner(o, RTDB_OWNER_LEN), key(k, klen);
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  if (h.pending)
    return -EUCLEAN; /* locks wait for an unfinished commit, like writes */
  uint64_t now = now_ms();
  prune_locks(&h, now);
  if (conflicts(&h, owner, kind, mode, key))
    return -EBUSY;
  rtdb_lock *l = find_lock(&h, kind, mode, key);
  if (!l) {
    h.locks.emplace_back();
    l = &h.locks.back();
    l->kind = kind;
    l->mode = mode;
    l->key = key;
  }
  bool found = false;
  for (auto &hd : l->holders)
    if (hd.owner == owner) {
      hd.expiry_ms = now + lease_ms;
      found = true;
    }
  if (!found) {
    rtdb_holder hd;
    hd.owner = owner;
    hd.expiry_ms = now + lease_ms;
    l->holders.push_back(hd);
  }
  return write_shard_hdr(hctx, h);
}

static int unlock(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  const char *o, *k;
  uint32_t klen;
  uint8_t kind, mode;
  if (!rd.fixed(&o, RTDB_OWNER_LEN) || !rd.u8(&kind) || !rd.u8(&mode) ||
      !rd.bytes(&k, &klen) || !rd.done())
    return -EINVAL;
  std::string owner(o, RTDB_OWNER_LEN), key(k, klen);
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  rtdb_lock *l = find_lock(&h, kind, mode, key);
  if (!l)
    return -ENOLCK;
  bool found = false;
  for (auto it = l->holders.begin(); it != l->holders.end(); ++it)
    if (it->owner == owner) {
      l->holders.erase(it);
      found = true;
      break;
    }
  if (!found)
    return -ENOLCK;
  if (l->holders.empty())
    h.locks.erase(h.locks.begin() + (l - h.locks.data()));
  prune_locks(&h, now_ms());
  return write_shard_hdr(hctx, h);
}

static int renew(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  const char *o;
  uint32_t lease_ms;
  if (!rd.fixed(&o, RTDB_OWNER_LEN) || !rd.u32(&lease_ms) || !rd.done() || lease_ms == 0)
    return -EINVAL;
  std::string owner(o, RTDB_OWNER_LEN);
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  uint64_t now = now_ms();
  bool mine = false;
  for (auto &l : h.locks)
    for (auto &hd : l.holders)
      if (hd.owner == owner) {
        hd.expiry_ms = now + lease_ms;
        mine = true;
      }
  if (!mine)
    return 0; /* nothing to write */
  prune_locks(&h, now);
  return write_shard_hdr(hctx, h);
}

static int prune(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  if (!rd.done())
    return -EINVAL;
  if (object_missing(hctx))
    return 0;
  rtdb_shard_hdr h;
  r = read_shard_hdr(hctx, &h);
  if (r < 0)
    return r;
  if (!prune_locks(&h, now_ms()))
    return 0;
  return write_shard_hdr(hctx, h);
}

static int locks(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  ceph::bufferlist bl;
  r = cls_cxx_map_read_header(hctx, &bl);
  if (r < 0)
    return r;
  put_u64(out, now_ms());
  out->append(bl);
  return 0;
}

static int watchers(cls_method_context_t hctx, ceph::bufferlist *in, ceph::bufferlist *out)
{
  WireReader rd(in->c_str(), in->length());
  int r = begin(rd);
  if (r < 0)
    return r;
  obj_list_watch_response_t resp;
  r = cls_cxx_list_watchers(hctx, &resp);
  if (r < 0)
    return r;
  put_u32(out, (uint32_t)resp.entries.size());
  for (const auto &w : resp.entries) {
    put_u64(out, (uint64_t)w.name_num);
    put_u64(out, w.cookie);
  }
  return 0;
}

extern "C" void __cls_init()
{
  static cls_handle_t h_class;
  static cls_method_handle_t h_version, h_store, h_append, h_delete, h_apply, h_clear,
      h_bump, h_seq, h_watchers, h_lock, h_unlock, h_renew, h_prune, h_locks, h_settle, h_get,
      h_list;

  cls_log(0, "loading radostdb class (wire format %d)", RADOSTDB_WIRE_VERSION);
  cls_register("radostdb", &h_class);
  cls_register_cxx_method(h_class, "version", CLS_METHOD_RD, version, &h_version);
  cls_register_cxx_method(h_class, "store", CLS_METHOD_RD | CLS_METHOD_WR, store, &h_store);
  cls_register_cxx_method(h_class, "append", CLS_METHOD_RD | CLS_METHOD_WR, append, &h_append);
  cls_register_cxx_method(h_class, "delete", CLS_METHOD_RD | CLS_METHOD_WR, del, &h_delete);
  cls_register_cxx_method(h_class, "apply", CLS_METHOD_RD | CLS_METHOD_WR, apply, &h_apply);
  cls_register_cxx_method(h_class, "clear", CLS_METHOD_RD | CLS_METHOD_WR, clear, &h_clear);
  cls_register_cxx_method(h_class, "bump", CLS_METHOD_RD | CLS_METHOD_WR, bump, &h_bump);
  cls_register_cxx_method(h_class, "seq", CLS_METHOD_RD, seq, &h_seq);
  cls_register_cxx_method(h_class, "watchers", CLS_METHOD_RD, watchers, &h_watchers);
  cls_register_cxx_method(h_class, "lock", CLS_METHOD_RD | CLS_METHOD_WR, lock, &h_lock);
  cls_register_cxx_method(h_class, "unlock", CLS_METHOD_RD | CLS_METHOD_WR, unlock, &h_unlock);
  cls_register_cxx_method(h_class, "renew", CLS_METHOD_RD | CLS_METHOD_WR, renew, &h_renew);
  cls_register_cxx_method(h_class, "prune", CLS_METHOD_RD | CLS_METHOD_WR, prune, &h_prune);
  cls_register_cxx_method(h_class, "locks", CLS_METHOD_RD, locks, &h_locks);
  cls_register_cxx_method(h_class, "settle", CLS_METHOD_RD | CLS_METHOD_WR, settle, &h_settle);
  cls_register_cxx_method(h_class, "get", CLS_METHOD_RD, get, &h_get);
  cls_register_cxx_method(h_class, "list", CLS_METHOD_RD, list, &h_list);
}
