/*
 * radostdb class: enums shared with the client, and the metadata the class
 * keeps in a shard object's omap header (also used by the database header
 * object, whose lock table holds the transaction lock).
 *
 * Only the class writes it, in the same atomic operation as the record or
 * lock change it accounts for. Stored as a framed struct (ops.h: u8 version,
 * u8 compat, u32 length, body), version 4:
 *   u64 seq        shard sequence number: +1 on every change of the records
 *   u64 applied    last multi-shard transaction applied here (0: none)
 *   u64 pending    transaction applied here whose outcome is not settled
 *                  (0: none); its redo log is the object's data
 *   u64 settled    last transaction settled here
 *   u64 aborted    fence: a transaction that must never apply here
 *   u8[16] powner  the pending transaction's committer (zeros: none)
 *   u32 n, n x u32 the pending transaction's participants (shard indexes)
 *   u32 n, n x u8[16]  stale owners: isolation or transaction-lock holders
 *                  whose lease ran out; until a client has fenced them
 *                  (journal) and clears them, the object refuses writes
 *                  and lock grants (-EUCLEAN)
 *   u32 n, n x entry   lock entries, holders and waiters in arrival order:
 *     u8 kind, u8 mode, u8 state (1 held, 2 queued), u8 flags (0),
 *     u8[16] owner, u32 lease_ms, u64 expiry_ms (OSD wall clock), bytes key
 * version 4 adds, after the entries:
 *   u64 epoch      the transaction lock object: the epoch of its latest
 *                  grant (max(previous + 1, OSD time in ms)); a shard: the
 *                  newest epoch of a transaction that took its isolation or
 *                  wrote it (an older transaction's isolation request or
 *                  write is refused: its holder lost the transaction lock)
 *   u64 modulus    the shard's keys are those whose hash modulo this is its
 *                  index (0: not recorded: a shard of a database never
 *                  resharded; the client routes)
 *   u32 index      the shard's index (0xffffffff: not recorded)
 *   u32 split_to   while the shard is split: the new shard (0xffffffff: none)
 *   u64 split_modulus  the modulus after the split (its keys with hash
 *                  modulo this == split_to move to split_to)
 *   bytes moved_upto   the encoded key up to which they have moved
 *                  (empty: none yet)
 *   bytes split_owner  the resharder doing the split (on the splitting
 *                  shard) or filling the new shard (on it): another
 *                  resharder's steps are refused (empty: none)
 *   Written with compat 3 while modulus is 0, no split runs, split_owner is
 *   empty and no entry is of kind USER or WATCH (an older class reading it loses
 *   only the epoch), else with compat 4.
 * version 5 adds, after those:
 *   u32 ticket_seq the last ticket given out (1..RTDB_TICKET_MAX, wrapping)
 *   u32 n, n x (u32 ticket, u64 inbox)  each entry's, in the entries' order:
 *                  the ticket is a number `lock` gives every new entry and
 *                  returns with its status, and a release returns for the
 *                  first waiter it granted; the inbox is the one the
 *                  request named (0: none). The releaser tells that waiter
 *                  "granted" in a notify to its inbox, which the waiter
 *                  trusts without reading the table (radostdb/wakeup.py
 *                  "G"). Never in compat: an older class ignores both and
 *                  drops them when it writes; its grants then name no
 *                  ticket and waiters read the table.
 * Versions 1 and 2 (radostdb 0.1, unframed: u8 version, u8 compat, u16 0,
 * u64 seq, [u64 applied, u64 pending, lock table]) and 3 are still read; the
 * next write stores version 4. A missing (empty) header reads as all zeros; one
 * that does not decode makes every method but `reset` fail with -EIO.
 */
#ifndef RADOSTDB_TYPES_H
#define RADOSTDB_TYPES_H

#include <cstdint>
#include <string>
#include <vector>

#define RTDB_OWNER_LEN 16
#define RTDB_SHARD_HDR_VERSION 5
#define RTDB_NO_SHARD 0xffffffffu

/* lock kinds */
enum rtdb_lock_kind : uint8_t {
  RTDB_LOCK_RECORD = 1,    /* one record (key); chainlock, chainlock_read, write waits */
  RTDB_LOCK_SHARD = 2,     /* a whole shard; lock_all, read_lock_all, batch waits */
  RTDB_LOCK_TXN = 3,       /* the transaction lock (header object only) */
  RTDB_LOCK_ISOLATION = 4, /* a transaction's hold on a shard: others' writes wait */
  RTDB_LOCK_COMMIT = 5,    /* a committer waiting for others' shared locks to drain */
  RTDB_LOCK_USER = 6,      /* (transaction-lock object only) a handle that holds or takes
                            * record or database locks: transactions wait for it */
  RTDB_LOCK_WATCH = 7,     /* a watched record (key; the owner is the watch's own id):
                            * conflicts with nothing; a write of the key removes it */
};
enum rtdb_lock_mode : uint8_t { RTDB_LOCK_EXCL = 1, RTDB_LOCK_SHARED = 2 };
enum rtdb_entry_state : uint8_t { RTDB_HELD = 1, RTDB_QUEUED = 2 };

/* operations of an `apply` batch (the memory backend and transactions use
 * the same codes, radostdb/clsops.py) */
enum rtdb_apply_op : uint8_t {
  RTDB_OP_PUT = 1,     /* set the record, replacing any */
  RTDB_OP_INSERT = 2,  /* set the record; -EEXIST if present */
  RTDB_OP_MODIFY = 3,  /* set the record; -ENOENT if absent */
  RTDB_OP_APPEND = 4,  /* append data to the record (create if absent) */
  RTDB_OP_DELETE = 5,  /* remove the record; -ENOENT if absent */
  RTDB_OP_DISCARD = 6, /* remove the record if present */
};

/* flags of an `apply` or `clear` request */
#define RTDB_WRITE_ASSERT_LOCK 0x1 /* the writer holds a lock covering every key */
#define RTDB_WRITE_ASSERT_TXN 0x2  /* the writer holds the transaction's isolation here */
#define RTDB_WRITE_RELEASE 0x4     /* then release the covering lock (a queued write) */
#define RTDB_WRITE_REPORT 0x8      /* report outcomes in the return value (RTDB_APPLIED_*) */

/* bits of apply's non-negative return value (seen by a client sending the
 * call in a write op with LIBRADOS_OPERATION_RETURNVEC; others see 0) */
#define RTDB_APPLIED_CREATED 0x1 /* WRITE_REPORT: a PUT or APPEND created a record */
#define RTDB_APPLIED_GRANTED 0x2 /* WRITE_RELEASE: the release granted a waiter */
#define RTDB_APPLIED_WATCHED 0x4 /* a key written (or, for clear, any) was watched: its
                                  * WATCH entries were removed; the writer notifies */
#define RTDB_APPLIED_GRANTED_SEVERAL 0x40 /* WRITE_RELEASE: more than one waiter granted */

/* unlock's and release's non-negative return value: waiters granted, capped,
 * | the ticket of the first waiter granted << RTDB_TICKET_SHIFT; lock's
 * return value carries its entry's ticket, and a releasing apply's the
 * ticket of the first waiter its release granted, the same way */
#define RTDB_GRANTS_MAX 0xff
#define RTDB_TICKET_SHIFT 8
#define RTDB_TICKET_MAX 0x7fffffu /* tickets wrap: 1..this (the return value stays positive) */

/* lock's non-negative return value (RETURNVEC, as apply's) */
#define RTDB_LOCKED_GRANTED 1 /* the request holds the lock now */
#define RTDB_LOCKED_QUEUED 2  /* the request waits in the queue */
#define RTDB_WATCH_ARMED 4    /* a WATCH request found its entry still there: the key was
                               * not written since the entry was made (or renewed) */
#define RTDB_LOCKED_ASK 0x40  /* queued behind an entry its holder may keep cached after
                               * use (TXN, ISOLATION, USER, COMMIT, SHARD): the waiter
                               * announces itself (radostdb/wakeup.py "W") */

/* bits of the return value of shard-wide requests (a SHARD lock, clear)
 * when the client sent the modulus its layout gives the shard */
#define RTDB_LAYOUT_SPLITTING 0x10 /* the shard is splitting: its new shard holds some keys */
#define RTDB_LAYOUT_MOVED 0x20     /* the shard's modulus is not the client's: re-read the layout */

/* flags of a `list` request */
#define RTDB_LIST_KEYS_ONLY 0x1 /* the page holds keys only (no records read or sent) */
#define RTDB_LIST_STRICT 0x2    /* the page never runs past max bytes: a first record that
                                 * does not fit ends it empty, with more set */

/* flags of a `lock` request */
#define RTDB_LOCK_QUEUE 0x1 /* not grantable now: queue (else -EBUSY, nothing changed) */

/* flags of a `release` request */
#define RTDB_RELEASE_KEEP_WAITS 0x1 /* drop held entries only, keep queued ones */

/* flags of a `prune` request */
#define RTDB_PRUNE_CLEAR_STALE 0x1 /* forget the stale owners named in the request */

/* journal record states */
enum rtdb_txn_state : uint8_t { RTDB_TXN_STAGED = 1, RTDB_TXN_COMPLETE = 2, RTDB_TXN_ABORTED = 3 };

/* get/list reply status */
enum rtdb_read_status : uint8_t {
  RTDB_FOUND = 0,
  RTDB_MISSING = 1,
  RTDB_TOO_BIG = 2,
  RTDB_PENDING = 3,
};

struct rtdb_entry {
  uint8_t kind = RTDB_LOCK_RECORD;
  uint8_t mode = RTDB_LOCK_EXCL;
  uint8_t state = RTDB_HELD;
  uint8_t flags = 0;
  std::string owner; /* RTDB_OWNER_LEN bytes */
  uint32_t lease_ms = 0;
  uint64_t expiry_ms = 0;
  std::string key;
  uint32_t ticket = 0; /* version 5: given by `lock` (0: none) */
  uint64_t inbox = 0;  /* version 5: the request's inbox (0: none) */
};

struct rtdb_shard_hdr {
  uint64_t seq = 0;
  uint64_t applied = 0;
  uint64_t pending = 0;
  uint64_t settled = 0;
  uint64_t aborted = 0;
  std::string powner = std::string(RTDB_OWNER_LEN, '\0');
  std::vector<uint32_t> participants;
  std::vector<std::string> stale;
  std::vector<rtdb_entry> entries;
  uint64_t epoch = 0;
  uint64_t modulus = 0;
  uint32_t index = RTDB_NO_SHARD;
  uint32_t split_to = RTDB_NO_SHARD;
  uint64_t split_modulus = 0;
  std::string moved_upto;
  std::string split_owner;
  uint32_t ticket_seq = 0;

  /* a ticket for a new entry */
  uint32_t next_ticket() {
    ticket_seq = ticket_seq % RTDB_TICKET_MAX + 1;
    return ticket_seq;
  }

  bool splitting() const { return split_to != RTDB_NO_SHARD; }

  /* has the transaction reached this shard (applied, pending or settled)? */
  bool has(uint64_t txid) const {
    return txid && (pending == txid || applied == txid || settled == txid);
  }
};

#endif
