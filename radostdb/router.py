"""Which shard a key is in, for one handle: the database's layout as last
read, and what the handle learnt of a split under way.

router design:
- The layout (layout.Layout: base shards grown by linear hashing) is read
  from the header at open, and again whenever a shard answers -ESTALE: the
  OSD checks on every read, write and record lock that the shard holds the
  key (cls/radostdb/reshard.cc), so a handle with an old layout is told,
  never served from the wrong shard.
- While shard p splits into q the header still has the old count: p holds
  its moving keys above its moved_upto, q those up to it. A handle that met
  -ESTALE from p with the header unchanged reads p's state and remembers
  the split: keys up to moved_upto go to q directly from then on. moved_upto
  only grows, so what the handle remembers stays true; a key that moved
  since costs one -ESTALE more. A split complete on p but not yet in the
  header (its resharder between the last step and the header update, or
  dead there) sends all of q's keys to q.
- :meth:`Router.route` is the loop every keyed call runs in: route, call,
  and on -ESTALE learn and route again, a bounded number of times.
- Thread safety: a layout and a split are replaced whole (one attribute
  each), never changed in place; readers take a snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import clsops, codec, dbheader, layout
from .errors import ERR_IO, TdbError

T = TypeVar("T")

ROUTE_TRIES = 30  # -ESTALE answers one keyed call may meet before it gives up


@dataclass(frozen=True)
class Split:
    """Shard p splitting into q: its keys hashing to q mod ``modulus``
    with an encoded key up to ``moved_upto`` are in q (all of them, once
    ``done``)."""

    p: int
    q: int
    modulus: int
    moved_upto: str = ""
    done: bool = False

    def moved(self, key: bytes, hash_: int) -> bool:
        if hash_ % self.modulus != self.q:
            return False
        return self.done or (bool(self.moved_upto) and codec.encode_key(key) <= self.moved_upto)


class Router:
    """Key -> shard index for one handle (see the module comment).
    ``on_change(layout)`` is told each new layout."""

    def __init__(
        self,
        io: Callable[[], Any],
        name: str,
        lay: layout.Layout,
        on_change: Callable[[layout.Layout], None] | None = None,
    ) -> None:
        self._io = io
        self.name = name
        self.layout = lay
        self.split: Split | None = None
        self._on_change = on_change
        self._lock = threading.Lock()

    # -- routing ---------------------------------------------------------------------------
    def shard(self, key: bytes) -> int:
        lay, split = self.layout, self.split
        index = lay.shard(key)
        if split is not None and index == split.p and split.moved(key, codec.key_hash(key)):
            return split.q
        return index

    def shards(self, keys: list[bytes]) -> list[int]:
        lay, split = self.layout, self.split
        out = lay.shards(keys)
        if split is not None:
            for i, (key, index) in enumerate(zip(keys, out, strict=True)):
                if index == split.p and split.moved(key, codec.key_hash(key)):
                    out[i] = split.q
        return out

    def shard_modulus(self, index: int) -> int:
        """The modulus the handle's view gives shard ``index``."""
        split = self.split
        if split is not None and index in (split.p, split.q):
            return split.modulus // 2 if index == split.p and not split.done else split.modulus
        return self.layout.modulus(index)

    def shard_count(self) -> int:
        """Shards that may hold records: the layout's, and a new one filling."""
        split = self.split
        return max(self.layout.nshards, split.q + 1 if split is not None else 0)

    def route(self, key: bytes, call: Callable[[int], T]) -> T:
        """``call(shard index)``, routed again after each -ESTALE."""
        for attempt in range(ROUTE_TRIES):
            index = self.shard(key)
            try:
                return call(index)
            except clsops.Stale:
                self.stale(index, attempt)
        raise self.lost(key)

    def lost(self, key: bytes) -> TdbError:
        return TdbError(
            ERR_IO,
            f"IO Error: no shard of {self.name!r} holds key {key!r} after {ROUTE_TRIES} "
            "tries (the layout kept changing, or radostdb check finds it damaged)",
        )

    # -- learning --------------------------------------------------------------------------
    def stale(self, index: int, attempt: int = 0) -> None:
        """Shard ``index`` refused a key it does not hold: read the header,
        and if it did not change, what the shard being split says."""
        if attempt > 2:
            time.sleep(min(0.001 * 2**attempt, 0.2))  # a split finishing: let it
        io = self._io()
        header = dbheader.read(io, self.name)
        lay = header.layout if header is not None else None
        if lay is None:
            raise TdbError(ERR_IO, f"IO Error: the header of {self.name!r} is gone or damaged")
        if lay != self.layout:
            self.set_layout(lay)
            return
        self.learn_split()

    def learn_split(self) -> Split | None:
        """Read what the next shard to split says: a split under way, or
        complete but not yet in the header (remembered), or none."""
        p, q, m = self.layout.next_split()
        st = clsops.state(self._io(), layout.shard_object(self.name, p))
        h = st.header if st is not None else clsops.ShardHeader()
        if h.splitting and h.split_to == q:
            self.split = Split(p, q, h.split_modulus, h.moved_upto)
        elif not h.splitting and h.modulus == 2 * m and h.index == p:
            self.split = Split(p, q, 2 * m, done=True)
        return self.split

    def set_layout(self, lay: layout.Layout) -> None:
        with self._lock:
            if lay.nshards < self.layout.nshards or lay == self.layout:
                return  # layouts only grow: an older read arriving late
            self.layout = lay
            split = self.split
            if split is not None and split.q < lay.nshards:
                self.split = None
        if self._on_change is not None:
            self._on_change(lay)

    def refresh(self) -> layout.Layout:
        """Read the header's layout now (a whole-database operation starts)."""
        header = dbheader.read(self._io(), self.name)
        lay = header.layout if header is not None else None
        if lay is not None:
            self.set_layout(lay)
        return self.layout
