/*
 * The part of Ceph's object-class API that radostdb's class uses.
 *
 * Debian ships no objclass.h, so the class declares what it calls itself.
 * ceph-osd exports these functions (list them with
 *   nm -D --defined-only /usr/bin/ceph-osd | c++filt | grep cls_
 * ): cls_register and cls_log with C linkage, the rest with C++ linkage and
 * ceph::bufferlist (rados/buffer.h from libradospp-dev) in their signatures.
 * The declarations must match those exported symbols exactly, or the class
 * fails to load with an undefined symbol (the OSD log names it).
 */
#ifndef RADOSTDB_OBJCLASS_H
#define RADOSTDB_OBJCLASS_H

#include <cstdint>
#include <ctime>
#include <list>
#include <map>
#include <set>
#include <string>

#include <rados/buffer.h>

typedef void *cls_handle_t;
typedef void *cls_method_handle_t;
typedef void *cls_method_context_t;
typedef int (*cls_method_cxx_call_t)(cls_method_context_t ctx, ceph::bufferlist *in,
                                     ceph::bufferlist *out);

/* method flags */
#define CLS_METHOD_RD 0x1
#define CLS_METHOD_WR 0x2

extern "C" {
int cls_register(const char *name, cls_handle_t *handle);
int cls_log(int level, const char *format, ...) __attribute__((__format__(printf, 2, 3)));
}

int cls_register_cxx_method(cls_handle_t hclass, const char *method, int flags,
                            cls_method_cxx_call_t class_call, cls_method_handle_t *handle);

int cls_cxx_create(cls_method_context_t hctx, bool exclusive);
int cls_cxx_remove(cls_method_context_t hctx);
int cls_cxx_stat(cls_method_context_t hctx, uint64_t *size, time_t *mtime);
int cls_cxx_map_clear(cls_method_context_t hctx);
int cls_cxx_map_get_val(cls_method_context_t hctx, const std::string &key, ceph::bufferlist *outbl);
int cls_cxx_map_get_vals(cls_method_context_t hctx, const std::string &start_after,
                         const std::string &filter_prefix, uint64_t max_to_get,
                         std::map<std::string, ceph::bufferlist> *vals, bool *more);
int cls_cxx_map_get_keys(cls_method_context_t hctx, const std::string &start_after,
                         uint64_t max_to_get, std::set<std::string> *keys, bool *more);
int cls_cxx_map_get_vals_by_keys(cls_method_context_t hctx, const std::set<std::string> &keys,
                                 std::map<std::string, ceph::bufferlist> *vals);
int cls_cxx_map_set_val(cls_method_context_t hctx, const std::string &key, ceph::bufferlist *inbl);
int cls_cxx_map_set_vals(cls_method_context_t hctx,
                         const std::map<std::string, ceph::bufferlist> *map);
int cls_cxx_map_remove_key(cls_method_context_t hctx, const std::string &key);
int cls_cxx_map_remove_range(cls_method_context_t hctx, const std::string &key_begin,
                             const std::string &key_end);
int cls_cxx_map_read_header(cls_method_context_t hctx, ceph::bufferlist *outbl);
int cls_cxx_map_write_header(cls_method_context_t hctx, ceph::bufferlist *inbl);
int cls_cxx_read(cls_method_context_t hctx, int ofs, int len, ceph::bufferlist *bl);
int cls_cxx_write_full(cls_method_context_t hctx, ceph::bufferlist *bl);
int cls_cxx_truncate(cls_method_context_t hctx, int ofs);
uint64_t cls_current_version(cls_method_context_t hctx);

/* The watcher listing, in types layout-compatible with the OSD's own
 * (watch_item_t, obj_list_watch_response_t; only what is read is named). */
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

#endif
