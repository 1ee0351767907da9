"""CFFI build script for ``radostdb._native._codec`` (out-of-line API mode).

setup.py runs it through ``cffi_modules=["radostdb/_native/build.py:ffibuilder"]``
from the repository root, so the source paths below are relative to that root.
``python radostdb/_native/build.py`` builds the module in place (from any
directory), for working on the codec without reinstalling.

The module exposes codec.h's functions as they are (cffi passes ``bytes``
straight to a ``const uint8_t *`` without a copy), except that two helpers
save the Python side per-call work: ``record_decode`` wraps
rtdb_record_decode with a single out-parameter, and ``keys_decode`` decodes a
whole traversal page of keys in one call.
"""

import os
import shutil
import sys
import tempfile

import cffi

CODEC_H = """
#define RTDB_FORMAT_VERSION 1
#define RTDB_REC_HDR 20
#define RTDB_OK 0
#define RTDB_EMALFORMED -1
#define RTDB_ECRC -2

uint32_t rtdb_crc32c(uint32_t crc, const uint8_t *buf, size_t len);
uint64_t rtdb_key_hash(const uint8_t *key, size_t len);
uint32_t rtdb_shard_of(const uint8_t *key, size_t len, uint32_t nshards);
uint32_t rtdb_shard_in(const uint8_t *key, size_t len, uint32_t base, uint32_t nshards);
size_t rtdb_key_encode(const uint8_t *in, size_t len, uint8_t *out);
long rtdb_key_decode(const uint8_t *in, size_t len, uint8_t *out);
size_t rtdb_record_encode(uint64_t rseq, uint8_t flags, const uint8_t *key, size_t klen,
                          const uint8_t *data, size_t dlen, uint8_t *out);
long rtdb_page_index(const uint8_t *page, size_t len, size_t *idx, size_t max, int *err,
                     size_t *bad);
"""

HELPERS_H = """
int record_decode(const uint8_t *key, size_t klen, const uint8_t *rec, size_t rlen,
                  uint64_t *rseq);
size_t keys_decode(const uint8_t *in, size_t len, size_t nkeys, uint8_t *out, size_t *ends);
"""

HELPERS_C = r"""
#include <string.h>
#include "codec.h"

/* rtdb_record_decode setting only *rseq: on success the data is always
   rec[RTDB_REC_HDR:], and the Python side has no use for the flags. */
static int record_decode(const uint8_t *key, size_t klen, const uint8_t *rec, size_t rlen,
                         uint64_t *rseq)
{
  uint8_t flags;
  size_t off, dlen;
  return rtdb_record_decode(key, klen, rec, rlen, rseq, &flags, &off, &dlen);
}

/* Decodes nkeys encoded keys joined by exactly nkeys - 1 NUL bytes (which
   no encoded key holds) into out (len bytes), setting ends[i] to the end offset of raw key
   i in out. Returns the number of keys decoded: fewer than nkeys means key
   number <return value> is malformed (an empty segment is: the empty key
   is encoded as "\x01", which rtdb_key_decode maps to 0 bytes). */
static size_t keys_decode(const uint8_t *in, size_t len, size_t nkeys, uint8_t *out,
                          size_t *ends)
{
  size_t i, pos = 0, end = 0;
  for (i = 0; i < nkeys; i++) {
    const uint8_t *nul = (const uint8_t *)memchr(in + pos, 0, len - pos);
    size_t seg = nul ? (size_t)(nul - in) - pos : len - pos;
    long n = rtdb_key_decode(in + pos, seg, out + end);
    if (n < 0)
      break;
    end += (size_t)n;
    ends[i] = end;
    pos += seg + 1;
  }
  return i;
}
"""

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_builder(root: str = "", **ext_args: object) -> cffi.FFI:
    """The FFI builder, with source paths under ``root`` (default: relative)."""
    src_dir = os.path.join(root, "radostdb", "_native")
    builder = cffi.FFI()
    builder.cdef(CODEC_H + HELPERS_H)
    builder.set_source(
        "radostdb._native._codec",
        HELPERS_C,
        sources=[os.path.join(src_dir, "codec.c")],
        include_dirs=[src_dir],
        extra_compile_args=["-O2"],
        **ext_args,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # Build in a scratch directory (cffi compiles there, hence absolute
    # paths) and copy only the extension module into the package, under the
    # name setup.py gives it (cffi asks for the limited API unless Python is
    # a debug build), so the two builds replace rather than shadow each other.
    limited = not hasattr(sys, "gettotalrefcount")
    with tempfile.TemporaryDirectory() as tmp:
        built = make_builder(ROOT, py_limited_api=limited).compile(tmpdir=tmp, verbose=True)
        shutil.copy(built, os.path.join(ROOT, "radostdb", "_native"))
