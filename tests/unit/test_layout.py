"""Linear hashing and the split bookkeeping around it, without a cluster:
layout.Layout (which shard holds a key as shards split), router.Split
(which keys of a splitting shard have moved) and traverse._children (where
a traversal looks for the keys of a page that split under it)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from radostdb import clsops, codec, layout
from radostdb.router import Split
from radostdb.traverse import _children

KEYS = [b"k%d" % i for i in range(4000)]


@st.composite
def layouts(draw: st.DrawFn, limit: int = 300) -> layout.Layout:
    base = draw(st.integers(1, 40))
    return layout.Layout(base, draw(st.integers(base, max(base, limit))))


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_one_split_moves_only_the_split_shards_keys_to_the_new_one(lay: layout.Layout) -> None:
    p, q, m = lay.next_split()
    grown = lay.grown()
    assert q == lay.nshards and lay.modulus(p) == m and grown.modulus(p) == 2 * m
    before, after = lay.shards(KEYS), grown.shards(KEYS)
    for key, a, b in zip(KEYS, before, after, strict=True):
        assert 0 <= a < lay.nshards and 0 <= b < grown.nshards
        if a != b:
            assert (a, b) == (p, q), key
            assert codec.key_hash(key) % (2 * m) == q
    assert after.count(q) == sum(1 for a, b in zip(before, after, strict=True) if a != b)


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_each_key_hashes_to_its_shard_modulo_that_shards_modulus(lay: layout.Layout) -> None:
    for key, shard in zip(KEYS[:500], lay.shards(KEYS[:500]), strict=True):
        assert codec.key_hash(key) % lay.modulus(shard) == shard


def test_an_unsplit_layout_maps_as_format_1_always_did() -> None:
    for n in (1, 7, 8, 131, 10007):
        lay = layout.Layout(n, n)
        assert lay.shards(KEYS) == [codec.shard_of(k, n) for k in KEYS]


def test_layouts_out_of_range_are_refused() -> None:
    for base, n in ((0, 1), (5, 4), (1, layout.MAX_SHARDS + 1)):
        try:
            layout.Layout(base, n)
        except ValueError:
            continue
        raise AssertionError((base, n))


def test_a_split_moves_keys_up_to_its_bound_then_all() -> None:
    lay = layout.Layout(4, 4)
    p, q, m = lay.next_split()
    mine = [k for k in KEYS if lay.shard(k) == p]
    going = sorted(codec.encode_key(k) for k in mine if codec.key_hash(k) % (2 * m) == q)
    bound = going[len(going) // 2]
    half = Split(p, q, 2 * m, bound)
    done = Split(p, q, 2 * m, bound, done=True)
    for k in mine:
        h = codec.key_hash(k)
        moves = h % (2 * m) == q
        assert half.moved(k, h) == (moves and codec.encode_key(k) <= bound)
        assert done.moved(k, h) == moves
    assert not Split(p, q, 2 * m).moved(mine[0], codec.key_hash(mine[0]))


def test_children_of_a_page_follow_completed_and_running_splits() -> None:
    # never split: nowhere else to look
    assert _children(1, 4, clsops.ShardLayout(), "k9") == []
    # shard 1 of modulus 4 has since split twice (modulus 16): its keys went
    # to 5 (mod 8) and to 9 (mod 16), in the page's whole range
    done = clsops.ShardLayout(modulus=16, index=1)
    assert _children(1, 4, done, "k9") == [(5, 8, "k9"), (9, 16, "k9")]
    # and it is splitting again, into 17, moved up to "k5": below the page's bound
    running = clsops.ShardLayout(16, 1, 17, 32, "k5")
    assert _children(1, 16, running, "k9")[-1] == (17, 32, "k5")
    assert _children(1, 16, running, "")[-1] == (17, 32, "k5")  # the last page
    # moved past the page: only the page's range counts
    assert _children(1, 16, clsops.ShardLayout(16, 1, 17, 32, "k7"), "k6") == [(17, 32, "k6")]
    # splitting, nothing moved yet: nothing there
    assert _children(1, 16, clsops.ShardLayout(16, 1, 17, 32, ""), "k6") == []
