"""Micro-benchmarks of radostdb.codec, native against the pure-Python fallback.

    pytest bench/test_codec_bench.py --benchmark-only --benchmark-group-by=func

Each benchmark runs once per available implementation, so the table shows
the native speed-up directly. Records per second of a page decode is
1000 / the mean time; it is also stored as ``extra_info``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from radostdb import codec
from radostdb.codec import Codec

RECORDS = 1000
rng = random.Random(1000)
# Samba-style keys: a C string with its terminating NUL, so escapes occur.
KEYS = [b"UNIX_USER/user%06d\x00" % i for i in range(RECORDS)]
PLAIN_KEYS = [b"user/%06d" % i for i in range(RECORDS)]
VALUES = [rng.randbytes(rng.randrange(50, 150)) for _ in range(RECORDS)]
DATA_4K = rng.randbytes(4096)


def _page(impl: Codec) -> bytes:
    out = []
    for seq, (key, value) in enumerate(zip(KEYS, VALUES, strict=True)):
        rec = impl.encode_record(key, value, seq)
        out += (len(key).to_bytes(4, "little"), key, len(rec).to_bytes(4, "little"), rec)
    return b"".join(out)


@pytest.fixture(params=codec.implementations(), ids=lambda impl: impl.name)
def impl(request: pytest.FixtureRequest) -> Codec:
    return request.param


def test_parse_page(benchmark: Any, impl: Codec) -> None:
    page = _page(impl)
    pairs = benchmark(impl.parse_page, page)
    assert len(pairs) == RECORDS
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["records_per_s"] = RECORDS / benchmark.stats.stats.mean


def test_page_keys(benchmark: Any, impl: Codec) -> None:
    page = _page(impl)
    assert len(benchmark(impl.page_keys, page)) == RECORDS


@pytest.mark.parametrize("keys", [KEYS, PLAIN_KEYS], ids=["escaped", "plain"])
def test_decode_keys(benchmark: Any, impl: Codec, keys: list[bytes]) -> None:
    encoded = [impl.encode_key(k) for k in keys]
    assert benchmark(impl.decode_keys, encoded) == keys


@pytest.mark.parametrize("key", [KEYS[0], PLAIN_KEYS[0]], ids=["escaped", "plain"])
def test_encode_key(benchmark: Any, impl: Codec, key: bytes) -> None:
    assert benchmark(impl.encode_key, key)


def test_decode_record(benchmark: Any, impl: Codec) -> None:
    rec = impl.encode_record(KEYS[0], VALUES[0], 1)
    assert benchmark(impl.decode_record, KEYS[0], rec) == (1, VALUES[0])


def test_crc32c_4k(benchmark: Any, impl: Codec) -> None:
    assert benchmark(impl.crc32c, DATA_4K) == codec._python_impl.crc32c(DATA_4K)
