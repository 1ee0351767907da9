"""Tests for radostdb.codec, run on every implementation (pure Python always,
native when built), plus parity between the two and the env switch.

With RADOSTDB_REQUIRE_NATIVE=1 a missing native module fails the run instead
of skipping the native tests.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from radostdb import codec, layout
from radostdb.codec import Codec, CodecError, CorruptRecord
from radostdb.testing import env_flag

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests" / "vectors" / "codec.json").read_text())

IMPLS = [codec._python_impl] + ([codec._native_impl] if codec._native_impl else [])

# Bytes at the edges of the key encoding's ranges, to make hypothesis hit them.
EDGE_BYTES = [0x00, 0x01, 0x02, 0x41, 0x7D, 0x7E, 0x7F, 0x80, 0xFC, 0xFD, 0xFE, 0xFF]
raw_keys = st.one_of(
    st.binary(max_size=64),
    st.lists(st.sampled_from(EDGE_BYTES), max_size=16).map(bytes),
)
# Strings close to encoded keys, valid or not.
ENC_CHARS = "\x00\x01\x02\x03\x04A}~\x7f\x80é"
near_encoded = st.text(alphabet=ENC_CHARS, max_size=12)


# Session scope: hypothesis refuses function-scoped fixtures under @given.
@pytest.fixture(scope="session", params=IMPLS, ids=lambda impl: impl.name)
def impl(request: pytest.FixtureRequest) -> Codec:
    return request.param


def _native_or_skip() -> Codec:
    if codec._native_impl is None:
        if env_flag("RADOSTDB_REQUIRE_NATIVE"):
            pytest.fail("RADOSTDB_REQUIRE_NATIVE=1 but radostdb._native._codec is not built")
        pytest.skip("native codec not built (run radostdb/_native/build.py or pip install -e .)")
    return codec._native_impl


@pytest.fixture
def native() -> Codec:
    return _native_or_skip()


def entry(key: bytes, rec: bytes) -> bytes:
    """One page entry: u32 klen, key, u32 rlen, record."""
    return len(key).to_bytes(4, "little") + key + len(rec).to_bytes(4, "little") + rec


def make_page(impl: Codec, items: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(entry(k, impl.encode_record(k, d, i)) for i, (k, d) in enumerate(items))


# -- selection -------------------------------------------------------------------
def test_native_built() -> None:
    _native_or_skip()
    assert codec.NATIVE or env_flag("RADOSTDB_PURE_PYTHON")


def test_module_functions_are_the_selected_implementation() -> None:
    selected = codec._native_impl if codec.NATIVE else codec._python_impl
    assert codec.encode_key.__self__ is selected
    assert codec.implementations()[-1] is codec._python_impl
    assert codec.FORMAT_VERSION == 1
    assert codec.REC_HDR == 20


@pytest.mark.parametrize(
    ("value", "forced"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False),
     ("false", False), ("", False), ("no", False)],
)  # fmt: skip
def test_pure_python_env_switch(value: str, forced: bool) -> None:
    env = dict(os.environ, RADOSTDB_PURE_PYTHON=value, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", "from radostdb import codec; print(codec.NATIVE)"],
        env=env, cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert out == str(codec._native_impl is not None and not forced)


# -- golden vectors --------------------------------------------------------------
def test_vectors_crc32c(impl: Codec) -> None:
    assert impl.crc32c(b"123456789") == 0xE3069283  # the published check value
    for v in VECTORS["crc32c"]:
        assert impl.crc32c(bytes.fromhex(v["data"])) == v["crc"], v


def test_vectors_key_hash(impl: Codec) -> None:
    for v in VECTORS["key_hash"]:
        key = bytes.fromhex(v["key"])
        assert impl.key_hash(key) == v["hash"], v
        for n, shard in v["shards"].items():
            assert impl.shard_of(key, int(n)) == shard, (v, n)


def pair_of(name: str) -> tuple[int, int]:
    """(base, nshards) of a shard_in vector's "base/nshards"."""
    base, nshards = name.split("/")
    return int(base), int(nshards)


def test_vectors_shard_in(impl: Codec) -> None:
    """Linear hashing (layout.py): a key's shard in ``base`` shards grown to
    ``nshards``."""
    for v in VECTORS["shard_in"]:
        key = bytes.fromhex(v["key"])
        assert impl.key_hash(key) == v["hash"], v
        for name, shard in v["layouts"].items():
            base, nshards = pair_of(name)
            assert impl.shard_in(key, base, nshards) == shard, (v, name)
            assert impl.shards_in([key, key], base, nshards) == [shard, shard], (v, name)
            if nshards <= layout.MAX_SHARDS:
                assert layout.Layout(base, nshards).shard(key) == shard, (v, name)


def test_vectors_shard_in_cover_the_layouts() -> None:
    """The vectors hold each layout with nshards == base (shard_of), a
    partial level of power-of-two and other bases, and in each partial
    level a key of a split shard that stayed, one that moved and one of a
    shard not split."""
    hashes = {v["hash"] for v in VECTORS["shard_in"]}
    names = VECTORS["shard_in"][0]["layouts"].keys()
    assert all(v["layouts"].keys() == names for v in VECTORS["shard_in"])
    pairs = [pair_of(n) for n in names]
    assert {(8, 8), (8, 9), (8, 13), (8, 16), (8, 17), (131, 200), (10007, 10007),
            (10007, 10008)} <= set(pairs)  # fmt: skip
    for base, nshards in pairs:
        m = codec.level_modulus(base, nshards)
        seen = set()
        for h in hashes:
            split = h % m < nshards - m
            seen.add("unsplit" if not split else "moved" if h % (2 * m) >= m else "stayed")
        partial = m != nshards
        assert seen == ({"unsplit", "moved", "stayed"} if partial else {"unsplit"}), (base, nshards)


def test_vectors_key_encoding(impl: Codec) -> None:
    for v in VECTORS["key_encoding"]:
        raw, enc = bytes.fromhex(v["raw"]), bytes.fromhex(v["encoded"]).decode("ascii")
        assert impl.encode_key(raw) == enc, v
        assert impl.decode_key(enc) == raw, v


def test_key_encoding_by_hand(impl: Codec) -> None:
    """A few encodings worked out from the table in codec.h."""
    assert impl.encode_key(b"") == "\x01"  # not "": omap listing never returns ""
    assert impl.encode_key(b"\x00") == "\x01\x01"
    assert impl.encode_key(b"\x01") == "\x01\x02"
    assert impl.encode_key(b"\x02\x7d") == "\x02\x7d"
    assert impl.encode_key(b"\x7e") == "\x7e\x01"
    assert impl.encode_key(b"\xfc") == "\x7e\x7f"
    assert impl.encode_key(b"\xfd") == "\x7f\x01"
    assert impl.encode_key(b"\xff") == "\x7f\x03"
    assert impl.encode_key(b"tdb\x00") == "tdb\x01\x01"


def test_vectors_records(impl: Codec) -> None:
    for v in VECTORS["records"]:
        key, data, rec = (bytes.fromhex(v[f]) for f in ("key", "data", "record"))
        assert impl.encode_record(key, data, v["rseq"]) == rec, v
        assert impl.decode_record(key, rec) == (v["rseq"], data), v


def test_vectors_pages(impl: Codec) -> None:
    for v in VECTORS["pages"]:
        page = bytes.fromhex(v["page"])
        entries = [(bytes.fromhex(k), bytes.fromhex(d)) for k, d in v["entries"]]
        assert impl.parse_page(page) == entries
        assert impl.page_keys(page) == [k for k, _ in entries]


# -- crc32c, hash, shard ---------------------------------------------------------
@given(a=st.binary(), b=st.binary())
def test_crc32c_extends(impl: Codec, a: bytes, b: bytes) -> None:
    assert impl.crc32c(b, impl.crc32c(a)) == impl.crc32c(a + b)


@given(key=st.binary(), n=st.integers(1, 2**32 - 1))
def test_shard_of_is_hash_mod_n(impl: Codec, key: bytes, n: int) -> None:
    assert impl.shard_of(key, n) == impl.key_hash(key) % n


def linear_hashing(h: int, base: int, nshards: int) -> int:
    """The shard of hash h (layout.py's definition, independently)."""
    m = base
    while 2 * m <= nshards:
        m *= 2
    return h % (2 * m) if h % m < nshards - m else h % m


# (base, nshards): small ones, and any up to the largest u32 that can still grow
small_layouts = st.tuples(st.integers(1, 300), st.integers(0, 5000))
any_layouts = st.tuples(st.integers(1, 2**32 - 2), st.integers(0, 2**32 - 2))
grown_layouts = st.one_of(small_layouts, any_layouts).map(
    lambda t: (t[0], min(t[0] + t[1], 2**32 - 2))
)


@given(key=st.binary(max_size=64), base=st.integers(1, 2**32 - 1))
def test_shard_in_unsplit_is_shard_of(impl: Codec, key: bytes, base: int) -> None:
    assert impl.shard_in(key, base, base) == impl.shard_of(key, base)
    assert codec.level_modulus(base, base) == base


@settings(max_examples=300)
@given(key=st.binary(max_size=64), grown=grown_layouts)
@example(key=b"", grown=(8, 8))
@example(key=b"k27111", grown=(10007, 10007))
@example(key=b"k0", grown=(1, 2**32 - 2))
def test_shard_in_grows_by_one_split(impl: Codec, key: bytes, grown: tuple[int, int]) -> None:
    """From nshards to nshards + 1 shards one shard splits, p = nshards - M
    (M = level_modulus): its keys stay or move to the new shard nshards;
    every other key stays where it is."""
    base, nshards = grown
    here, there = impl.shard_in(key, base, nshards), impl.shard_in(key, base, nshards + 1)
    h = impl.key_hash(key)
    assert here == linear_hashing(h, base, nshards) and 0 <= here < nshards
    assert there == linear_hashing(h, base, nshards + 1)
    m = codec.level_modulus(base, nshards)
    assert there in (here, nshards)
    if here == nshards - m:  # the shard split: half its keys move, by hash mod 2M
        assert there == h % (2 * m)
    else:
        assert there == here
    assert impl.shards_in([key], base, nshards + 1) == [there]


def test_shard_in_moves_only_the_split_shards_keys(impl: Codec) -> None:
    """Growing 8 shards to 17 one at a time over many keys: each step moves
    about half the keys of one shard to the new one, and nothing else."""
    keys = [b"k%d" % i for i in range(4000)]
    before = impl.shards_in(keys, 8, 8)
    for nshards in range(8, 17):
        after = impl.shards_in(keys, 8, nshards + 1)
        split = nshards - codec.level_modulus(8, nshards)
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert all(before[i] == split and after[i] == nshards for i in moved), nshards
        of_split = before.count(split)
        assert of_split / 4 < len(moved) < 3 * of_split / 4, nshards
        before = after
    assert before == impl.shards_in(keys, 8, 17)


def test_argument_ranges(impl: Codec) -> None:
    for base, nshards in ((0, 1), (0, 0), (2, 1), (1, 2**32), (2**32, 2**32)):
        with pytest.raises(ValueError):
            impl.shard_in(b"k", base, nshards)
        with pytest.raises(ValueError):
            impl.shards_in([b"k"], base, nshards)
    with pytest.raises(ValueError):
        impl.shard_of(b"k", 0)
    with pytest.raises(ValueError):
        impl.shard_of(b"k", 2**32)
    with pytest.raises(ValueError):
        impl.crc32c(b"", 2**32)
    with pytest.raises(ValueError):
        impl.encode_record(b"k", b"", rseq=-1)
    with pytest.raises(ValueError):
        impl.encode_record(b"k", b"", rseq=2**64)
    with pytest.raises(ValueError):
        impl.encode_record(b"k", b"", flags=256)


# -- keys ------------------------------------------------------------------------
@given(raw=raw_keys)
@example(raw=b"")
@example(raw=b"\x00")
@example(raw=b"\x01")
def test_key_roundtrip(impl: Codec, raw: bytes) -> None:
    enc = impl.encode_key(raw)
    assert "\0" not in enc
    # ASCII, so UTF-8 is the same bytes; never empty (the empty key is "\x01")
    assert 1 <= len(enc.encode("ascii")) <= max(2 * len(raw), 1)
    assert impl.decode_key(enc) == raw
    assert impl.decode_keys([enc]) == [raw]


@pytest.mark.parametrize("pattern", ["random", "zeros", "ones", "plain", "all bytes"])
def test_key_roundtrip_64k(impl: Codec, pattern: str) -> None:
    n = 64 * 1024
    raw = {
        "random": random.Random(n).randbytes(n),
        "zeros": bytes(n),
        "ones": b"\xff" * n,
        "plain": b"k" * n,
        "all bytes": bytes(range(256)) * (n // 256),
    }[pattern]
    enc = impl.encode_key(raw)
    assert "\0" not in enc
    assert impl.decode_key(enc) == raw
    assert impl.decode_keys([enc, enc]) == [raw, raw]


@given(keys=st.lists(raw_keys, max_size=30))
def test_key_order_preserved(impl: Codec, keys: list[bytes]) -> None:
    keys = [*keys, b""]  # always include the empty key
    by_encoding = sorted(keys, key=lambda k: impl.encode_key(k).encode("utf-8"))
    assert by_encoding == sorted(keys)


def test_empty_key_sorts_first(impl: Codec) -> None:
    """ "\\x01" sorts before every other encoding, notably those of keys starting 0x00/0x01."""
    keys = [b"", b"\x00", b"\x00\x00", b"\x01", b"\x01\xff", b"\x02"]
    keys += [bytes((b,)) for b in EDGE_BYTES] + [b"a", b"\xff\xff"]
    by_encoding = sorted(keys, key=lambda k: impl.encode_key(k).encode("ascii"))
    assert by_encoding == sorted(keys)
    assert by_encoding[0] == b""
    assert all(impl.encode_key(k) > "\x01" for k in keys if k)


@given(keys=st.lists(raw_keys, max_size=30))
@example(keys=[b""])
@example(keys=[b"", b""])
@example(keys=[b"a", b"", b"b"])
@example(keys=[b"", b"\x00", b"a"])
def test_decode_keys(impl: Codec, keys: list[bytes]) -> None:
    assert impl.decode_keys([impl.encode_key(k) for k in keys]) == keys


def test_empty_key(impl: Codec) -> None:
    """The empty raw key is "\\x01"; the empty string is malformed."""
    assert impl.encode_key(b"") == "\x01"
    assert impl.decode_key("\x01") == b""
    with pytest.raises(CodecError, match=re.escape("encoded key ''")):
        impl.decode_key("")
    assert impl.decode_keys(["\x01", "a"]) == [b"", b"a"]
    assert impl.decode_keys(["\x01"]) == [b""]
    assert impl.decode_keys(["\x01", "\x01"]) == [b"", b""]
    assert impl.decode_keys(["a", "\x01", "\x01\x01", "\x01\x02"]) == [b"a", b"", b"\x00", b"\x01"]


@pytest.mark.parametrize(
    "keys",
    [[""], ["", "a"], ["a", ""], ["a", "", "b"], ["", ""], ["\x01", ""], ["", "\x01"],
     ["a\x7e\x01", "", "b"]],
)  # fmt: skip
def test_decode_keys_rejects_empty_string(impl: Codec, keys: list[str]) -> None:
    """Both the plain fast path and the escaped path of decode_keys reject ""."""
    with pytest.raises(CodecError, match=re.escape("encoded key ''")):
        impl.decode_keys(keys)


MALFORMED_KEYS = [
    "",  # no key encodes to the empty string (the empty key is "\x01")
    "a\x01",  # lone escape at the end ("\x01" alone is the empty key)
    "\x01\x01\x01",
    "\x02\x01",
    "ab\x7e",
    "ab\x7f",
    "\x01\x00",  # bad second byte
    "\x01\x03",
    "\x7e\x00",
    "\x7f\x00",
    "\x7f\x04",
    "\x7f\x7f",
    "\x00",  # NUL
    "a\x00b",
    "\x80",  # not ASCII
    "abc\xe9",
    "\u20ac",
    "\x7e\x80",
]


@pytest.mark.parametrize("bad", MALFORMED_KEYS)
def test_malformed_keys_rejected(impl: Codec, bad: str) -> None:
    with pytest.raises(CodecError, match="encoded key"):
        impl.decode_key(bad)
    with pytest.raises(CodecError, match=re.escape(f"encoded key {bad!r}")):
        impl.decode_keys(["ok", "tdb\x01\x01", bad, "fine"])


# -- records ---------------------------------------------------------------------
@given(key=st.binary(), data=st.binary(), rseq=st.integers(0, 2**64 - 1))
def test_record_roundtrip(impl: Codec, key: bytes, data: bytes, rseq: int) -> None:
    rec = impl.encode_record(key, data, rseq)
    assert len(rec) == codec.REC_HDR + len(data)
    assert impl.decode_record(key, rec) == (rseq, data)


def test_record_flags_kept_but_not_returned(impl: Codec) -> None:
    rec = impl.encode_record(b"k", b"v", 3, flags=0x80)
    assert rec[1] == 0x80
    assert impl.decode_record(b"k", rec) == (3, b"v")


@pytest.mark.parametrize("offset", [16, 19, 20, 24])  # crc bytes, first/last data byte
def test_corrupt_record(impl: Codec, offset: int) -> None:
    rec = bytearray(impl.encode_record(b"key", b"hello", 9))
    rec[offset] ^= 0x01
    with pytest.raises(CorruptRecord, match="crc32c mismatch"):
        impl.decode_record(b"key", bytes(rec))


def test_record_under_wrong_key(impl: Codec) -> None:
    rec = impl.encode_record(b"key", b"hello")
    with pytest.raises(CorruptRecord):
        impl.decode_record(b"kez", rec)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: r[:-1],  # truncated data
        lambda r: r[:19],  # truncated header
        lambda r: b"",
        lambda r: r + b"x",  # trailing byte
        lambda r: b"\x02" + r[1:],  # unknown format
        lambda r: r[:12] + b"\x06" + r[13:],  # dlen says 6
    ],
    ids=["data", "header", "empty", "trailing", "format", "dlen"],
)
def test_malformed_record(impl: Codec, mangle: Callable[[bytes], bytes]) -> None:
    rec = mangle(impl.encode_record(b"key", b"hello", 9))
    with pytest.raises(CodecError, match="record: malformed") as exc:
        impl.decode_record(b"key", rec)
    assert not isinstance(exc.value, CorruptRecord)


# -- pages -----------------------------------------------------------------------
PAGE_ITEMS = [(b"", b"empty key"), (b"alpha", b""), (b"\x00\xff", b"\x01\x02"), (b"k" * 70, b"v")]


def test_page_roundtrip(impl: Codec) -> None:
    page = make_page(impl, PAGE_ITEMS)
    assert impl.parse_page(page) == PAGE_ITEMS
    assert impl.page_keys(page) == [k for k, _ in PAGE_ITEMS]
    assert impl.parse_page(b"") == []
    assert impl.page_keys(b"") == []


@pytest.mark.parametrize("bad", range(len(PAGE_ITEMS)))
def test_page_corrupt_entry_reported(impl: Codec, bad: int) -> None:
    entries = [entry(k, impl.encode_record(k, d)) for k, d in PAGE_ITEMS]
    entries[bad] = entries[bad][:-1] + bytes([entries[bad][-1] ^ 0x40])  # last record byte
    page = b"".join(entries)
    for parse in (impl.parse_page, impl.page_keys):
        with pytest.raises(CorruptRecord, match=f"page entry {bad}: crc32c mismatch") as exc:
            parse(page)
        assert exc.value.entry == bad


@pytest.mark.parametrize(
    ("tail", "entry_no"),
    [
        (b"\x00", 4),  # a stray byte after the last entry
        (b"\x00" * 27, 4),  # just short of the smallest entry
        (b"\x01\x00\x00\x00", 4),  # klen runs past the end
        (b"\x00\x00\x00\x00\x05\x00\x00\x00abc", 4),  # rlen runs past the end
        (entry(b"k", b"\x01" + bytes(11) + b"\x05" + bytes(7)), 4),  # dlen past the record
        (entry(b"k", b"short"), 4),  # a record shorter than its header
    ],
)
def test_page_malformed_tail(impl: Codec, tail: bytes, entry_no: int) -> None:
    page = make_page(impl, PAGE_ITEMS) + tail
    with pytest.raises(CodecError, match=f"page entry {entry_no}: malformed") as exc:
        impl.parse_page(page)
    assert exc.value.entry == entry_no
    assert not isinstance(exc.value, CorruptRecord)


def test_page_of_smallest_entries(impl: Codec) -> None:
    """Empty keys and data: 28-byte entries, the most a page can hold."""
    page = make_page(impl, [(b"", b"")] * 100)
    assert impl.parse_page(page) == [(b"", b"")] * 100
    with pytest.raises(CodecError, match="page entry 100"):
        impl.parse_page(page + b"\x00" * 5)


# -- parity ----------------------------------------------------------------------
def outcome(fn: Callable[..., object], *args: object) -> object:
    """fn(*args), or the exception's type, message and entry."""
    try:
        return fn(*args)
    except CodecError as exc:
        return type(exc), str(exc), exc.entry


@settings(max_examples=300)
@given(data=st.binary(max_size=300), crc=st.integers(0, 2**32 - 1), n=st.integers(1, 2**32 - 1))
def test_parity_hash_crc(data: bytes, crc: int, n: int) -> None:
    nat, py = _native_or_skip(), codec._python_impl
    assert nat.crc32c(data, crc) == py.crc32c(data, crc)
    assert nat.key_hash(data) == py.key_hash(data)
    assert nat.shard_of(data, n) == py.shard_of(data, n)


@settings(max_examples=300)
@given(data=st.binary(max_size=64), grown=grown_layouts)
def test_parity_shard_in(data: bytes, grown: tuple[int, int]) -> None:
    nat, py = _native_or_skip(), codec._python_impl
    assert nat.shard_in(data, *grown) == py.shard_in(data, *grown)
    assert nat.shards_in([data, b"k"], *grown) == py.shards_in([data, b"k"], *grown)


def test_parity_crc32c_lengths_and_offsets(native: Codec) -> None:
    """Every tail length and alignment of the slicing-by-8 loop, every table entry."""
    rng = random.Random(32)
    blob = rng.randbytes(4096 + 16)
    for start in range(8):
        for length in (*range(40), 4096):
            chunk = blob[start : start + length]
            assert native.crc32c(chunk) == codec._python_impl.crc32c(chunk), (start, length)


def test_parity_empty_key(native: Codec) -> None:
    py = codec._python_impl
    assert native.encode_key(b"") == py.encode_key(b"") == "\x01"
    for text in ("", "\x01", "\x01\x01", "a\x01", "\x01\x01\x01"):
        assert outcome(native.decode_key, text) == outcome(py.decode_key, text), text
    for keys in (["\x01", "a"], [""], ["a", ""], ["\x01", ""], ["\x01", "\x01"]):
        assert outcome(native.decode_keys, keys) == outcome(py.decode_keys, keys), keys


@settings(max_examples=300)
@given(raw=raw_keys, text=near_encoded, keys=st.lists(near_encoded, max_size=5))
@example(raw=b"", text="", keys=["\x01", ""])
@example(raw=b"", text="\x01", keys=["\x01", "a"])
def test_parity_keys(raw: bytes, text: str, keys: list[str]) -> None:
    nat, py = _native_or_skip(), codec._python_impl
    assert nat.encode_key(raw) == py.encode_key(raw)
    assert outcome(nat.decode_key, text) == outcome(py.decode_key, text)
    assert outcome(nat.decode_keys, keys) == outcome(py.decode_keys, keys)


@settings(max_examples=300)
@given(
    key=st.binary(max_size=20),
    data=st.binary(max_size=50),
    rseq=st.integers(0, 2**64 - 1),
    flags=st.integers(0, 255),
    flip=st.integers(0, 200),
)
def test_parity_records(key: bytes, data: bytes, rseq: int, flags: int, flip: int) -> None:
    nat, py = _native_or_skip(), codec._python_impl
    rec = nat.encode_record(key, data, rseq, flags)
    assert rec == py.encode_record(key, data, rseq, flags)
    mangled = bytearray(rec)
    if flip < len(mangled):
        mangled[flip] ^= 0x10
    else:
        del mangled[flip % len(mangled) :]
    assert outcome(nat.decode_record, key, bytes(mangled)) == outcome(
        py.decode_record, key, bytes(mangled)
    )


@settings(max_examples=200)
@given(
    items=st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=10)), max_size=6),
    flip=st.integers(0, 500),
    cut=st.integers(0, 500),
)
def test_parity_pages(items: list[tuple[bytes, bytes]], flip: int, cut: int) -> None:
    nat, py = _native_or_skip(), codec._python_impl
    page = bytearray(make_page(nat, items))
    if page and flip < len(page):
        page[flip] ^= 0x04
    del page[cut:]
    for name in ("parse_page", "page_keys"):
        assert outcome(getattr(nat, name), bytes(page)) == outcome(getattr(py, name), bytes(page))


# -- the OSD's append (C only) ------------------------------------------------------
# rtdb_record_extend_header is not in the Python module (only the object
# class appends): a small program compiled like the class (codec.c as C++)
# extends records, and the result must be the record Python encodes for the
# joined data.
EXTEND_PROGRAM = r"""
#include <cstdio>
#include <cstring>
#include <string>

#include "codec.c"

static std::string unhex(const char *h)
{
  std::string out;
  for (; h[0] && h[1] && h[0] != '-'; h += 2) {
    unsigned b;
    sscanf(h, "%2x", &b);
    out.push_back((char)b);
  }
  return out;
}

/* stdin: lines "key record data rseq" (hex, "-" for empty); stdout: the
 * extended record in hex, or "BAD" if the record does not verify */
int main()
{
  static char k[1 << 12], r[1 << 16], d[1 << 16];
  unsigned long long rseq;
  while (scanf("%4095s %65535s %65535s %llu", k, r, d, &rseq) == 4) {
    std::string key = unhex(k), rec = unhex(r), data = unhex(d);
    const uint8_t *p = (const uint8_t *)rec.data();
    uint64_t oseq;
    uint8_t oflags;
    size_t doff, olen;
    if (rtdb_record_decode((const uint8_t *)key.data(), key.size(), p, rec.size(), &oseq,
                           &oflags, &doff, &olen) != RTDB_OK) {
      printf("BAD\n");
      continue;
    }
    std::string out(RTDB_REC_HDR, '\0');
    size_t n = rtdb_record_extend_header(p, rseq, (const uint8_t *)data.data(), data.size(),
                                         (uint8_t *)&out[0]);
    out.resize(n);
    out.append(rec, doff, olen);
    out += data;
    for (unsigned char c : out)
      printf("%02x", c);
    printf("\n");
  }
  return 0;
}
"""


def test_record_extend_header_matches_encoding(tmp_path: Path) -> None:
    gxx = shutil.which("g++")
    if gxx is None:
        if env_flag("RADOSTDB_REQUIRE_NATIVE"):
            pytest.fail("RADOSTDB_REQUIRE_NATIVE=1 but g++ is missing (make deps installs it)")
        pytest.skip("g++ is missing (make deps installs it)")
    src, exe = tmp_path / "extend.cc", tmp_path / "extend"
    src.write_text(EXTEND_PROGRAM)
    native = REPO / "radostdb" / "_native"
    cc = subprocess.run(
        [gxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{native}", "-o", str(exe),
         str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cc.returncode == 0, cc.stderr
    py = codec._python_impl
    rng = random.Random(20)
    cases: list[tuple[bytes, bytes, bytes, int, bytes]] = []  # key, record, data, rseq, expected
    for v in VECTORS["records"]:
        key, old, rec = (bytes.fromhex(v[f]) for f in ("key", "data", "record"))
        for more in (b"", b"+", rng.randbytes(300)):
            for rseq in (0, (v["rseq"] + 1) % 2**64, 2**64 - 1):
                cases.append((key, rec, more, rseq, py.encode_record(key, old + more, rseq)))
    for flags in (1, 0x80, 0xFF):  # the old record's flags are kept
        rec = py.encode_record(b"k", b"old", 3, flags)
        cases.append((b"k", rec, b"new", 4, py.encode_record(b"k", b"oldnew", 4, flags)))
    bad = bytearray(py.encode_record(b"k", b"old", 3))
    bad[-1] ^= 1
    cases.append((b"k", bytes(bad), b"new", 4, b""))  # the caller verifies first: BAD here

    def arg(b: bytes) -> str:
        return b.hex() or "-"

    stdin = "".join(f"{arg(k)} {arg(r)} {arg(d)} {s}\n" for k, r, d, s, _ in cases)
    run = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = run.stdout.split()
    assert len(got) == len(cases)
    for (key, _rec, data, rseq, want), out in zip(cases, got, strict=True):
        assert out == (want.hex() if want else "BAD"), (key, data, rseq)
