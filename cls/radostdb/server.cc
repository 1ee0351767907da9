/*
 * radostdb object class: the OSD side of radostdb. This file: the class
 * design, the opening every method shares, and the registration; the
 * methods are in records.cc, locks.cc, txn.cc and reshard.cc (server.h
 * lists them).
 *
 * class design:
 * - A database is a header object, shard objects whose omap holds the
 *   records, and a journal object for multi-shard commits. Every change of
 *   a shard goes through a method of this class, so the decision (INSERT on
 *   an existing key, MODIFY/DELETE of a missing one), the lock check, the
 *   record header and the shard sequence number are applied in ONE atomic
 *   OSD operation, in one round trip.
 * - Reads inside one method do not see that method's own pending writes (an
 *   OSD property), so `apply` keeps an overlay of the records it changed and
 *   writes them all at the end.
 * - A method that fails returns a negative errno and changes nothing: the OSD
 *   drops the whole compound operation. Write methods return no data, but a
 *   non-negative return value reaches a client that sends the write with
 *   LIBRADOS_OPERATION_RETURNVEC (others see 0): the outcomes a client must
 *   learn at once travel there (apply's RTDB_APPLIED_*, lock's granted or
 *   queued, the layout bits: types.h). Anything larger is read back with
 *   `state`, sent right behind the write on the same object (the OSD
 *   orders it after the write).
 * - Every method opens the same way (open_object, server.h): parse the
 *   request, then, as the method asks, leave a missing object alone, read
 *   the header, prune expired locks. What a method does beyond that is
 *   visible in the method.
 * - Every refusal is logged with cls_log at level 20 (debug) naming the
 *   method and the reason.
 * - Locks, their queue and their conflicts: locks.h. The header layout:
 *   types.h. The wire structs: ops.h. Multi-shard transactions (the redo
 *   log, the journal): the transaction design at the top of txn.cc.
 *   Resharding (a shard split in two while clients use it): the design at
 *   the top of reshard.cc.
 *
 * Errors: -EINVAL malformed request; -EOPNOTSUPP a struct newer than this
 * class knows; -EIO stored data that does not decode (a corrupt record,
 * header or redo log); -EBUSY a conflicting lock (nothing changed);
 * -EUCLEAN the object needs a client's decision first (a pending transaction
 * or stale owners); -ENOLCK a lock the request relies on is not held;
 * -ESTALE a key the shard does not hold (the client's layout is old: a
 * split moved it); -EREMCHG records changed under a split step. Never
 * -EAGAIN or -EINPROGRESS: to the OSD they mean "requeued", and it would
 * send no reply at all;
 * -ECANCELED a fenced transaction or owner; -EEXIST/-ENOENT record or journal
 * state as described per method.
 *
 * Methods: each is documented above its code, starting
 * "name (read|write) Request [-> Reply]:", with every errno it returns
 * beyond those of open_object (-EINVAL, -EOPNOTSUPP, and -EIO for a header
 * that does not decode). Requests and replies: ops.h; "owner" is the
 * calling handle.
 */
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <ctime>

#include "server.h"

int refuse(const char *method, int err, const char *fmt, ...)
{
  char why[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  cls_log(20, "radostdb %s: %d: %s", method, err, why);
  return err;
}

bool object_missing(cls_method_context_t hctx)
{
  uint64_t size;
  time_t mtime;
  return cls_cxx_stat(hctx, &size, &mtime) == -ENOENT;
}

/* The only symbol the class exports (the Makefile hides the rest): the OSD
 * calls it when it loads the class. */
extern "C" __attribute__((visibility("default"))) void __cls_init()
{
  static cls_handle_t h_class;
  struct Method {
    const char *name;
    int flags;
    cls_method_cxx_call_t fn;
    cls_method_handle_t handle;
  };
  const int RD = CLS_METHOD_RD, WR = CLS_METHOD_RD | CLS_METHOD_WR;
  static Method methods[] = {
      {"version", RD, version, nullptr},   {"apply", WR, apply, nullptr},
      {"clear", WR, clear, nullptr},       {"settle", WR, settle, nullptr},
      {"rollback", WR, rollback, nullptr}, {"reset", WR, reset, nullptr},
      {"get", RD, get, nullptr},           {"list", RD, list, nullptr},
      {"seq", RD, seq, nullptr},           {"bump", WR, bump, nullptr},
      {"lock", WR, lock, nullptr},         {"unlock", WR, unlock, nullptr},
      {"release", WR, release, nullptr},   {"renew", WR, renew, nullptr},
      {"prune", WR, prune, nullptr},       {"state", RD, state, nullptr},
      {"watchers", RD, watchers, nullptr}, {"stage", WR, stage, nullptr},
      {"txn_abort", WR, txn_abort, nullptr}, {"txn_mark", WR, txn_mark, nullptr},
      {"fence_owners", WR, fence_owners, nullptr}, {"journal", RD, journal, nullptr},
      {"split_begin", WR, split_begin, nullptr}, {"split_page", RD, split_page, nullptr},
      {"split_absorb", WR, split_absorb, nullptr},
      {"split_advance", WR, split_advance, nullptr}, {"count", RD, count, nullptr},
      {"fence_epoch", WR, fence_epoch, nullptr},
  };
  cls_log(0, "loading radostdb class (wire format %d)", RADOSTDB_WIRE_VERSION);
  cls_register("radostdb", &h_class);
  for (auto &m : methods)
    cls_register_cxx_method(h_class, m.name, m.flags, m.fn, &m.handle);
}
