"""From timed chunks to figures: rates, per-client rates, latency
percentiles, and the paired per-round ratios every comparison quotes."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Chunk:
    """One client's share of one round: units done, when, per-call latencies."""

    ops: int
    start: float  # time.monotonic(), comparable across processes
    end: float
    latencies_us: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def percentiles(lat: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles, min, max, mean and count ({} for none)."""
    if not lat:
        return {}
    s = sorted(lat)

    def at(p: float) -> float:
        return s[max(0, min(len(s), math.ceil(round(p * len(s) / 100, 6))) - 1)]

    return {
        "min": s[0],
        "p50": at(50),
        "p90": at(90),
        "p99": at(99),
        "p99.9": at(99.9),
        "max": s[-1],
        "mean": statistics.fmean(s),
        "count": len(s),
    }


def summarize(rounds: list[list[Chunk]]) -> dict[str, Any]:
    """Figures of one backend on one workload, from its rounds of chunks.
    The rate is total units / total time; a round's time runs from its
    first client's start to its last client's end."""
    per_round = []
    for chunks in rounds:
        ops = sum(c.ops for c in chunks)
        secs = max(c.end for c in chunks) - min(c.start for c in chunks)
        per_round.append(
            {
                "ops": ops,
                "seconds": secs,
                "rate": ops / secs if secs > 0 else 0.0,
                "per_client": [c.ops / c.seconds if c.seconds > 0 else 0.0 for c in chunks],
            }
        )
    ops = sum(r["ops"] for r in per_round)
    secs = sum(r["seconds"] for r in per_round)
    nclients = len(rounds[0])
    per_client = []
    for c in range(nclients):
        c_ops = sum(chunks[c].ops for chunks in rounds)
        c_secs = sum(chunks[c].seconds for chunks in rounds)
        per_client.append(c_ops / c_secs if c_secs > 0 else 0.0)
    return {
        "ops": ops,
        "seconds": secs,
        "rate": ops / secs if secs > 0 else 0.0,
        "rate_median": statistics.median(r["rate"] for r in per_round),
        "per_client": per_client,
        "latency_us": percentiles([x for chunks in rounds for c in chunks for x in c.latencies_us]),
        "rounds": per_round,
    }


def ratio(ours: dict[str, Any] | None, other: dict[str, Any] | None) -> dict[str, Any] | None:
    """ours/other: per-round paired ratios (median, min, max) and the ratio
    of the totals; None when either side was not measured."""
    if not ours or not other or "rate" not in ours or "rate" not in other:
        return None
    pairs = [
        a["rate"] / b["rate"]
        for a, b in zip(ours["rounds"], other["rounds"], strict=True)
        if b["rate"] > 0
    ]
    if not pairs or other["rate"] <= 0:
        return None
    return {
        "median": statistics.median(pairs),
        "min": min(pairs),
        "max": max(pairs),
        "total": ours["rate"] / other["rate"],
        "rounds": pairs,
    }


def fairness(counts: list[int]) -> float:
    """min/mean of per-client counts: 1.0 when every client got the same."""
    mean = statistics.fmean(counts) if counts else 0.0
    return min(counts) / mean if mean > 0 else 0.0
