"""The record codec: omap keys, records and pages in radostdb's format.

radostdb/_native/codec.h specifies the format (crc32c, key hash and shard,
the order-preserving NUL-free key encoding, the 20-byte record header, the
page of the class ``list`` method). This module gives it to Python twice,
with byte-identical results pinned by tests/vectors/codec.json:

- ``native``: codec.c through the CFFI module ``radostdb._native._codec``
  (built by radostdb/_native/build.py at install time), the same C the
  object class compiles;
- ``python``: a pure-Python twin, used when the extension is not built, or
  when the environment variable ``RADOSTDB_PURE_PYTHON`` is a true word
  (``1``, ``true``, ``yes``, ``on``; ``0``, ``false`` or empty do not force it).

The module-level functions are those of the implementation in use (``NATIVE``
tells which); ``implementations()`` returns every available one, for tests.
Both share the fast paths that need no C: a non-empty key whose bytes need
no escape encodes and decodes by ``bytes.decode``/``str.encode`` alone. The
empty key is not one of them: it encodes to ``"\\x01"`` (omap listing never
returns the omap key ``""``), and the empty string is malformed.
"""

from __future__ import annotations

import abc
import itertools
import os
import re
import struct
from typing import Any

from .errors import RadostdbError

__all__ = [
    "FORMAT_VERSION",
    "NATIVE",
    "REC_HDR",
    "Codec",
    "CodecError",
    "CorruptRecord",
    "crc32c",
    "decode_key",
    "decode_keys",
    "decode_record",
    "encode_key",
    "encode_record",
    "implementations",
    "key_hash",
    "page_keys",
    "parse_page",
    "shard_of",
    "shards_of",
]

FORMAT_VERSION = 1
REC_HDR = 20

# codec.h's decoder return codes.
_OK = 0
_EMALFORMED = -1
_ECRC = -2

_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF
_MAX_DATA = _U32_MAX - REC_HDR  # so that dlen and a page's rlen fit their u32
_ENTRY_MIN = 8 + REC_HDR  # smallest page entry: two lengths and an empty record
_HDR = struct.Struct("<BBHQII")  # format, flags, reserved, rseq, dlen, crc
_U32 = struct.Struct("<I")

_TRUE_WORDS = ("1", "true", "yes", "on")

# Bytes that are not their own encoding, in a raw key / in an encoded key.
_RAW_NEEDS_ESCAPE = re.compile(rb"[^\x02-\x7d]")
_ENC_ESCAPED = re.compile(rb"[\x00\x01\x7e\x7f]")
# The encoding of the empty raw key: a lone escape byte, malformed anywhere
# else. Not "": omap listing (start_after "") never returns the key "".
_EMPTY_KEY_ENC = b"\x01"


def level_modulus(base: int, nshards: int) -> int:
    """M = base * 2^L, the largest such not above nshards (linear hashing)."""
    m = base
    while m * 2 <= nshards:
        m *= 2
    return m


def _check_layout(base: int, nshards: int) -> None:
    if not 1 <= base <= nshards <= _U32_MAX:
        raise ValueError(f"layout out of range: {base} base shards grown to {nshards}")


class CodecError(RadostdbError, ValueError):
    """Bytes that do not follow the format: a malformed key, record or page.

    ``entry`` is the index of the failing page entry for errors raised by
    :func:`parse_page` and :func:`page_keys`, otherwise None.
    """

    def __init__(self, message: str, entry: int | None = None) -> None:
        super().__init__(message)
        self.entry = entry


class CorruptRecord(CodecError):
    """A well-formed record whose crc32c does not match its key and data."""


_error_map: dict[int, tuple[type[CodecError], str]] = {
    _EMALFORMED: (CodecError, "malformed"),
    _ECRC: (CorruptRecord, "crc32c mismatch"),
}


def _error(what: str, rc: int, entry: int | None = None) -> CodecError:
    """The exception for codec.h return code ``rc`` while decoding ``what``."""
    cls, message = _error_map[rc]
    return cls(f"{what}: {message}", entry)


def _key_error(encoded: str) -> CodecError:
    return _error(f"encoded key {encoded!r}", _EMALFORMED)


def _page_error(rc: int, entry: int) -> CodecError:
    return _error(f"page entry {entry}", rc, entry)


def _ascii(encoded: str) -> bytes:
    try:
        return encoded.encode("ascii")
    except UnicodeEncodeError:
        raise _key_error(encoded) from None


class Codec(abc.ABC):
    """One implementation of the codec.

    Subclasses supply the primitives; argument checks and the fast paths
    that need no C live here, so both implementations share them.
    """

    name: str

    def __repr__(self) -> str:
        return f"<radostdb codec {self.name}>"

    # -- crc32c, hash, shard --------------------------------------------
    def crc32c(self, data: bytes, crc: int = 0) -> int:
        """CRC-32C of ``data``, continuing from ``crc`` (a previous result).

        ``crc32c(b, crc32c(a)) == crc32c(a + b)``; ``crc32c(b"123456789")``
        is ``0xE3069283``.
        """
        if not 0 <= crc <= _U32_MAX:
            raise ValueError(f"crc out of range: {crc}")
        return self._crc32c(data, crc)

    @abc.abstractmethod
    def _crc32c(self, data: bytes, crc: int) -> int: ...

    @abc.abstractmethod
    def key_hash(self, key: bytes) -> int:
        """The 64-bit hash of a raw key (FNV-1a, then the splitmix64 finaliser)."""

    def shard_of(self, key: bytes, nshards: int) -> int:
        """The shard (0 .. nshards - 1) that holds ``key``: ``key_hash(key) % nshards``."""
        if not 1 <= nshards <= _U32_MAX:
            raise ValueError(f"nshards out of range: {nshards}")
        return self._shard_of(key, nshards)

    @abc.abstractmethod
    def _shard_of(self, key: bytes, nshards: int) -> int: ...

    def shards_of(self, keys: list[bytes], nshards: int) -> list[int]:
        """shard_of for many keys at once (a transaction's batch)."""
        if not 1 <= nshards <= _U32_MAX:
            raise ValueError(f"nshards out of range: {nshards}")
        f = self._shard_of
        return [f(k, nshards) for k in keys]

    def shard_in(self, key: bytes, base: int, nshards: int) -> int:
        """The shard of ``key`` in a layout of ``base`` shards grown by linear
        hashing to ``nshards`` (layout.py); shard_of when nshards == base."""
        _check_layout(base, nshards)
        return self._shard_in(key, base, nshards)

    def shards_in(self, keys: list[bytes], base: int, nshards: int) -> list[int]:
        """shard_in for many keys at once."""
        _check_layout(base, nshards)
        f = self._shard_in
        return [f(k, base, nshards) for k in keys]

    def _shard_in(self, key: bytes, base: int, nshards: int) -> int:
        h = self.key_hash(key)
        m = level_modulus(base, nshards)
        s = h % m
        return h % (2 * m) if s < nshards - m else s

    # -- keys -----------------------------------------------------------
    def encode_key(self, key: bytes) -> str:
        """The omap key (non-empty NUL-free ASCII, sorting like the raw keys) for a raw key.

        The empty key encodes to ``"\\x01"``, which sorts before every other encoding.
        """
        if key and _RAW_NEEDS_ESCAPE.search(key) is None:
            return key.decode("ascii")
        return self._encode_escaped(key)

    @abc.abstractmethod
    def _encode_escaped(self, key: bytes) -> str:
        """Encodes a key that needs an escape, or the empty key."""

    def decode_key(self, encoded: str) -> bytes:
        """The raw key of an omap key; raises CodecError if it is malformed.

        ``"\\x01"`` decodes to the empty key; the empty string is malformed.
        """
        raw = _ascii(encoded)
        if _ENC_ESCAPED.search(raw) is None:
            if not raw:
                raise _key_error(encoded)
            return raw
        return self._decode_escaped(raw, encoded)

    @abc.abstractmethod
    def _decode_escaped(self, raw: bytes, encoded: str) -> bytes:
        """Decodes ASCII ``raw`` (``encoded`` is for the error message)."""

    def decode_keys(self, encoded: list[str]) -> list[bytes]:
        """decode_key over a traversal page of omap keys, in one pass where possible."""
        if not encoded:
            return []
        try:
            joined = "\0".join(encoded).encode("ascii")
        except UnicodeEncodeError:
            return [self.decode_key(s) for s in encoded]  # raises for the bad key
        if joined.count(0) != len(encoded) - 1:
            return [self.decode_key(s) for s in encoded]  # raises for the bad key
        if b"\x01" not in joined and b"\x7e" not in joined and b"\x7f" not in joined:
            if not joined or joined[0] == 0 or joined[-1] == 0 or b"\0\0" in joined:
                return [self.decode_key(s) for s in encoded]  # raises for the empty key
            return joined.split(b"\0")
        return self._decode_joined(joined, encoded)

    @abc.abstractmethod
    def _decode_joined(self, joined: bytes, encoded: list[str]) -> list[bytes]:
        """Decodes ``encoded``, given also as ASCII joined by single NULs."""

    # -- records --------------------------------------------------------
    def encode_record(self, key: bytes, data: bytes, rseq: int = 0, flags: int = 0) -> bytes:
        """The record (omap value) holding ``data`` for raw key ``key``."""
        if not 0 <= rseq <= _U64_MAX:
            raise ValueError(f"rseq out of range: {rseq}")
        if not 0 <= flags <= 0xFF:
            raise ValueError(f"flags out of range: {flags}")
        if len(data) > _MAX_DATA:
            raise ValueError(f"record data too long: {len(data)} bytes")
        return self._encode_record(key, data, rseq, flags)

    @abc.abstractmethod
    def _encode_record(self, key: bytes, data: bytes, rseq: int, flags: int) -> bytes: ...

    @abc.abstractmethod
    def decode_record(self, key: bytes, rec: bytes) -> tuple[int, bytes]:
        """``(rseq, data)`` of the record ``rec`` stored under raw key ``key``.

        Raises CorruptRecord when the crc does not match the key and data,
        CodecError when the record is malformed (truncated, wrong format).
        """

    # -- pages ----------------------------------------------------------
    def parse_page(self, page: bytes) -> list[tuple[bytes, bytes]]:
        """The ``(raw key, data)`` pairs of a class ``list`` page, every record checked.

        Raises CorruptRecord or CodecError with ``entry`` set to the index
        of the first bad entry.
        """
        it = iter(self._page_index(page))
        return [
            (page[ko : ko + kl], page[do : do + dl])
            for ko, kl, do, dl in zip(it, it, it, it, strict=True)
        ]

    def page_keys(self, page: bytes) -> list[bytes]:
        """The raw keys of a class ``list`` page, checked as by parse_page."""
        it = iter(self._page_index(page))
        return [page[ko : ko + kl] for ko, kl, _, _ in zip(it, it, it, it, strict=True)]

    @abc.abstractmethod
    def _page_index(self, page: bytes) -> list[int]:
        """codec.h's rtdb_page_index over the whole page, as one flat list."""


# -- pure Python ---------------------------------------------------------------
def _crc_table() -> list[int]:
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def _key_code(b: int) -> bytes:
    """codec.h's encoding of one raw byte."""
    if 0x02 <= b <= 0x7D:
        return bytes((b,))
    if b <= 0x01:
        return bytes((0x01, b + 0x01))
    if b <= 0xFC:
        return bytes((0x7E, b - 0x7D))
    return bytes((0x7F, b - 0xFC))


_KEY_CODES = [_key_code(b) for b in range(256)]
_ESCAPE_PAIRS = {code: bytes((b,)) for b, code in enumerate(_KEY_CODES) if len(code) == 2}
_ENC_VALID = re.compile(rb"(?:[\x02-\x7d]|\x01[\x01\x02]|\x7e[\x01-\x7f]|\x7f[\x01-\x03])+")
_ENC_PAIR = re.compile(rb"\x01[\x01\x02]|\x7e[\x01-\x7f]|\x7f[\x01-\x03]")


class PythonCodec(Codec):
    """The pure-Python twin of codec.c."""

    name = "python"

    def _crc32c(self, data: bytes, crc: int) -> int:
        table = _CRC_TABLE
        crc ^= _U32_MAX
        for b in data:
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ _U32_MAX

    def key_hash(self, key: bytes) -> int:
        x = 0xCBF29CE484222325
        for b in key:
            x = ((x ^ b) * 0x100000001B3) & _U64_MAX
        x ^= x >> 30
        x = (x * 0xBF58476D1CE4E5B9) & _U64_MAX
        x ^= x >> 27
        x = (x * 0x94D049BB133111EB) & _U64_MAX
        return x ^ (x >> 31)

    def _shard_of(self, key: bytes, nshards: int) -> int:
        return self.key_hash(key) % nshards

    def _encode_escaped(self, key: bytes) -> str:
        if not key:
            return _EMPTY_KEY_ENC.decode("ascii")
        return b"".join([_KEY_CODES[b] for b in key]).decode("ascii")

    def _decode_escaped(self, raw: bytes, encoded: str) -> bytes:
        if raw == _EMPTY_KEY_ENC:
            return b""
        if _ENC_VALID.fullmatch(raw) is None:  # also rejects b""
            raise _key_error(encoded)
        return _ENC_PAIR.sub(lambda m: _ESCAPE_PAIRS[m.group()], raw)

    def _decode_joined(self, joined: bytes, encoded: list[str]) -> list[bytes]:
        return [self.decode_key(s) for s in encoded]

    def _encode_record(self, key: bytes, data: bytes, rseq: int, flags: int) -> bytes:
        crc = self._crc32c(data, self._crc32c(key, 0))
        return _HDR.pack(FORMAT_VERSION, flags, 0, rseq, len(data), crc) + data

    def _check_record(self, key: bytes | memoryview, rec: bytes | memoryview) -> tuple[int, int]:
        """codec.h's rtdb_record_decode: ``(return code, rseq)``."""
        if len(rec) < REC_HDR:
            return _EMALFORMED, 0
        fmt, _flags, _reserved, rseq, dlen, crc = _HDR.unpack_from(rec)
        if fmt != FORMAT_VERSION or len(rec) - REC_HDR != dlen:
            return _EMALFORMED, 0
        if self._crc32c(rec[REC_HDR:], self._crc32c(key, 0)) != crc:
            return _ECRC, 0
        return _OK, rseq

    def decode_record(self, key: bytes, rec: bytes) -> tuple[int, bytes]:
        rc, rseq = self._check_record(key, rec)
        if rc:
            raise _error("record", rc)
        return rseq, rec[REC_HDR:]

    def _page_index(self, page: bytes) -> list[int]:
        view = memoryview(page)
        idx: list[int] = []
        pos, end = 0, len(page)
        while pos < end:
            fields = []
            for _ in range(2):  # key, record
                if end - pos < 4:
                    raise _page_error(_EMALFORMED, len(idx) // 4)
                (n,) = _U32.unpack_from(page, pos)
                pos += 4
                if end - pos < n:
                    raise _page_error(_EMALFORMED, len(idx) // 4)
                fields.append((pos, n))
                pos += n
            (koff, klen), (roff, rlen) = fields
            rc, _ = self._check_record(view[koff : koff + klen], view[roff : roff + rlen])
            if rc:
                raise _page_error(rc, len(idx) // 4)
            idx += (koff, klen, roff + REC_HDR, rlen - REC_HDR)
        return idx


# -- C (CFFI) ------------------------------------------------------------------
class NativeCodec(Codec):
    """codec.c through the CFFI extension radostdb._native._codec."""

    name = "native"

    def __init__(self, ffi: Any, lib: Any) -> None:
        self._ffi = ffi
        self._lib = lib
        # Output buffers are written in full by C: no need to zero them.
        self._alloc = ffi.new_allocator(should_clear_after_alloc=False)

    def _crc32c(self, data: bytes, crc: int) -> int:
        return self._lib.rtdb_crc32c(crc, data, len(data))

    def key_hash(self, key: bytes) -> int:
        return self._lib.rtdb_key_hash(key, len(key))

    def _shard_of(self, key: bytes, nshards: int) -> int:
        return self._lib.rtdb_shard_of(key, len(key), nshards)

    def shards_of(self, keys: list[bytes], nshards: int) -> list[int]:
        if not 1 <= nshards <= _U32_MAX:
            raise ValueError(f"nshards out of range: {nshards}")
        f = self._lib.rtdb_shard_of
        return [f(k, len(k), nshards) for k in keys]

    def _shard_in(self, key: bytes, base: int, nshards: int) -> int:
        return self._lib.rtdb_shard_in(key, len(key), base, nshards)

    def shards_in(self, keys: list[bytes], base: int, nshards: int) -> list[int]:
        _check_layout(base, nshards)
        f = self._lib.rtdb_shard_in
        return [f(k, len(k), base, nshards) for k in keys]

    def _encode_escaped(self, key: bytes) -> str:
        out = self._alloc("uint8_t[]", 2 * len(key) or 1)  # b"" encodes to 1 byte
        n = self._lib.rtdb_key_encode(key, len(key), out)
        return self._ffi.buffer(out, n)[:].decode("ascii")

    def _decode_escaped(self, raw: bytes, encoded: str) -> bytes:
        out = self._alloc("uint8_t[]", len(raw))
        n = self._lib.rtdb_key_decode(raw, len(raw), out)
        if n < 0:
            raise _key_error(encoded)
        return self._ffi.buffer(out, n)[:]

    def _decode_joined(self, joined: bytes, encoded: list[str]) -> list[bytes]:
        nkeys = len(encoded)
        out = self._alloc("uint8_t[]", len(joined))
        ends = self._alloc("size_t[]", nkeys)
        done = self._lib.keys_decode(joined, len(joined), nkeys, out, ends)
        if done < nkeys:
            raise _key_error(encoded[done])
        stops = self._ffi.unpack(ends, nkeys)
        buf = self._ffi.buffer(out, stops[-1])[:]
        return [buf[a:b] for a, b in itertools.pairwise([0, *stops])]

    def _encode_record(self, key: bytes, data: bytes, rseq: int, flags: int) -> bytes:
        out = self._alloc("uint8_t[]", REC_HDR + len(data))
        self._lib.rtdb_record_encode(rseq, flags, key, len(key), data, len(data), out)
        return self._ffi.buffer(out)[:]

    def decode_record(self, key: bytes, rec: bytes) -> tuple[int, bytes]:
        rseq = self._ffi.new("uint64_t *")
        rc = self._lib.record_decode(key, len(key), rec, len(rec), rseq)
        if rc:
            raise _error("record", rc)
        return rseq[0], rec[REC_HDR:]

    def _page_index(self, page: bytes) -> list[int]:
        most = len(page) // _ENTRY_MIN + 1  # enough to check the whole page
        idx = self._alloc("size_t[]", 4 * most)
        err = self._ffi.new("int *")
        bad = self._ffi.new("size_t *")
        n = self._lib.rtdb_page_index(page, len(page), idx, most, err, bad)
        if n < 0:
            raise _page_error(err[0], bad[0])
        return self._ffi.unpack(idx, 4 * n)


# -- selection -----------------------------------------------------------------
def _load_native() -> NativeCodec | None:
    try:
        from ._native._codec import ffi, lib
    except ImportError:
        return None
    return NativeCodec(ffi, lib)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_WORDS


_python_impl = PythonCodec()
_native_impl = _load_native()
_impl: Codec = (
    _python_impl if _native_impl is None or _env_true("RADOSTDB_PURE_PYTHON") else _native_impl
)

NATIVE: bool = _impl is _native_impl


def implementations() -> list[Codec]:
    """Every available implementation (native first when built), for tests and benchmarks."""
    return [impl for impl in (_native_impl, _python_impl) if impl is not None]


crc32c = _impl.crc32c
key_hash = _impl.key_hash
shard_of = _impl.shard_of
shards_of = _impl.shards_of
shard_in = _impl.shard_in
shards_in = _impl.shards_in
encode_key = _impl.encode_key
decode_key = _impl.decode_key
decode_keys = _impl.decode_keys
encode_record = _impl.encode_record
decode_record = _impl.decode_record
parse_page = _impl.parse_page
page_keys = _impl.page_keys
