"""The run's figures as one PNG (matplotlib, Agg): one panel per question.

Panels: rates of every backend; radostdb against its floor and its peer
(ratios); the peers side by side (radostdb, etcd, cephsqlite); latency by
percentile; per-op cost as the database grows (or latency per call); RADOS
ops per call; contention (per-client counts and waits; rate and fairness
against the client count).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .spec import BACKENDS, CEPH, PEERS

PEER_PANEL = ("radostdb", *PEERS)
COLORS = {b: f"C{i}" for i, b in enumerate(BACKENDS)}


def _rate(works: dict[str, Any], w: str, b: str) -> float:
    return (works[w]["backends"].get(b) or {}).get("rate", 0)


def _bars(ax: Any, names: list[str], series: list[tuple[str, list[float]]]) -> None:
    width = 0.8 / max(1, len(series))
    for i, (label, ys) in enumerate(series):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(names))]
        ax.bar(xs, ys, width, label=label, color=COLORS.get(label))
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.grid(axis="y", alpha=0.3)


def _rates(ax: Any, doc: dict[str, Any]) -> None:
    works = doc["workloads"]
    names = list(works)
    _bars(ax, names, [(b, [_rate(works, w, b) for w in names]) for b in doc["backends"]])
    ax.set_yscale("log")
    ax.set_ylabel("ops/s (records/s for traverse, txn), log")
    ax.set_title("rate per workload and backend")
    ax.legend(fontsize=7, ncol=2)


def _ratios(ax: Any, doc: dict[str, Any]) -> None:
    works = doc["workloads"]
    names = [w for w in works if works[w]["ratio"] or works[w].get("ratio_etcd")]
    for i, (key, label, color) in enumerate(
        (
            ("ratio", "radostdb/rados (floor)", COLORS["rados"]),
            ("ratio_etcd", "radostdb/etcd (peer)", COLORS["etcd"]),
        )
    ):
        rs = [works[w].get(key) for w in names]
        xs = [j - 0.2 + 0.4 * i for j, r in enumerate(rs) if r]
        meds = [r["median"] for r in rs if r]
        err = [[r["median"] - r["min"] for r in rs if r], [r["max"] - r["median"] for r in rs if r]]
        if meds:
            ax.bar(xs, meds, 0.4, yerr=err, capsize=2, color=color, label=label)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("radostdb rate / other rate (log)")
    ax.set_title("radostdb against its floor and its peer (median of rounds, min-max)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _peers(ax: Any, doc: dict[str, Any]) -> None:
    works = doc["workloads"]
    shown = [b for b in PEER_PANEL if b in doc["backends"]]
    names = list(works)
    _bars(ax, names, [(b, [_rate(works, w, b) for w in names]) for b in shown])
    for i, b in enumerate(shown):  # say n/a where a peer cannot express a workload
        for j, w in enumerate(names):
            if "n/a" in (works[w]["backends"].get(b) or {}):
                x = j - 0.4 + 0.8 / len(shown) * (i + 0.5)
                ax.text(
                    x,
                    0.02,
                    f"{b}: n/a",
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90,
                )
    ax.set_yscale("log")
    ax.set_ylabel("ops/s (records/s for traverse, txn), log")
    ax.set_title("peers: radostdb, etcd, SQLite on RADOS")
    ax.legend(fontsize=8)


def _latency(ax: Any, doc: dict[str, Any]) -> None:
    works = doc["workloads"]
    marks = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]
    xs = [-math.log10(1 - p / 100) for _, p in marks]
    for b in (b for b in (*CEPH, *PEERS) if b in doc["backends"]):
        for wname, style in (("store", "-"), ("fetch", "--")):
            lat = (works.get(wname, {}).get("backends", {}).get(b) or {}).get("latency_us")
            if lat:
                ax.plot(
                    xs,
                    [lat[k] for k, _ in marks],
                    style,
                    marker="o",
                    color=COLORS[b],
                    label=f"{b} {wname}",
                )
    ax.set_yscale("log")
    ax.set_ylabel("latency µs (log)")
    ax.set_xticks(xs, [k for k, _ in marks])
    ax.set_xlabel("percentile")
    ax.set_title("latency distribution: store (solid), fetch (dashed)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)


def _scale(ax: Any, doc: dict[str, Any]) -> None:
    sc = doc["scale"]
    sizes = [int(s) for s in sc["results"]]
    for b in sc["backends"]:
        for wname, style in (("store", "-"), ("fetch", "--")):
            ys = [
                (sc["results"][str(s)][wname]["backends"].get(b) or {}).get("rate") for s in sizes
            ]
            if all(ys):
                ax.plot(
                    sizes,
                    [1e6 / y for y in ys],
                    style,
                    marker="o",
                    color=COLORS[b],
                    label=f"{b} {wname}",
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("records in the database (log)")
    ax.set_ylabel("µs per operation (log)")
    ax.set_title("per-op cost as the database grows: store (solid), fetch (dashed)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)


def _per_call(ax: Any, doc: dict[str, Any]) -> None:
    works = doc["workloads"]
    shown = [b for b in (*CEPH, *PEERS) if b in doc["backends"]]
    names = [
        w
        for w in works
        if any((works[w]["backends"].get(b) or {}).get("latency_us") for b in shown)
    ]
    series = [
        (
            b,
            [
                ((works[w]["backends"].get(b) or {}).get("latency_us") or {}).get("p50", 0)
                for w in names
            ],
        )
        for b in shown
    ]
    _bars(ax, names, series)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency µs per call (log)")
    ax.set_title("latency per call (p50)")
    ax.legend(fontsize=8)


def _ops(ax: Any, doc: dict[str, Any]) -> None:
    oc = doc["osd_ops"]["workloads"]
    names = list(oc)
    shown = list(next(iter(oc.values()), {}))
    _bars(ax, names, [(b, [(oc[w].get(b) or {}).get("per_call", 0) for w in names]) for b in shown])
    ax.set_yscale("log")
    ax.set_ylabel("OSD ops per call (log)")
    ax.set_title("RADOS ops per call, counted on the OSDs")
    ax.legend(fontsize=8)


def _contention(ax: Any, doc: dict[str, Any]) -> None:
    ct = doc["contention"]
    scen = {k: v for k, v in ct["scenarios"].items() if "counts" in v}
    for i, s in enumerate(scen.values()):
        n = len(s["counts"])
        xs = [i - 0.4 + 0.8 / n * (c + 0.5) for c in range(n)]
        ax.bar(xs, s["counts"], 0.8 / n, color=f"C{i}")
        w = s.get("wait_us") or {}
        if w:
            ax.annotate(
                f"wait p50 {w['p50']:.0f} µs\np99 {w['p99']:.0f} µs\n"
                f"fair {s['fairness_min_mean']:.2f}",
                (i, max(s["counts"])),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(range(len(scen)), list(scen))
    ax.set_ylabel(f"operations per client in {ct['seconds']:g} s")
    ax.set_title(f"contention: {ct['clients']} clients on one lock")
    ax.grid(axis="y", alpha=0.3)


def _contention_by_clients(ax: Any, doc: dict[str, Any]) -> None:
    """Rate (solid, left axis) and fairness (dashed, right axis) of each
    contention scenario against the client count."""
    ct = doc["contention"]
    counts = ct["client_counts"]
    right = ax.twinx()
    names = sorted({name for runs in ct["by_clients"].values() for name in runs})
    for i, name in enumerate(names):
        pts = [
            (n, ct["by_clients"][str(n)].get(name, {}))
            for n in counts
            if "rate" in ct["by_clients"][str(n)].get(name, {})
        ]
        if not pts:
            continue
        xs = [n for n, _ in pts]
        ax.plot(xs, [s["rate"] for _, s in pts], "o-", color=f"C{i}", label=f"{name} rate")
        right.plot(xs, [s["fairness_min_mean"] for _, s in pts], "x--", color=f"C{i}", alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("clients")
    ax.set_ylabel("operations/s (solid)")
    right.set_ylabel("fairness min/mean (dashed)")
    right.set_ylim(0, 1.05)
    ax.set_title("contention: rate and fairness against clients")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def plot(doc: dict[str, Any], path: str) -> None:
    """Draw the document's panels into one PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[Callable[[Any, dict[str, Any]], None]] = [_rates, _ratios, _peers, _latency]
    panels.append(_scale if doc.get("scale") else _per_call)
    if doc.get("osd_ops"):
        panels.append(_ops)
    if doc.get("contention"):
        panels.append(_contention)
        if len(doc["contention"].get("client_counts", [])) > 1:
            panels.append(_contention_by_clients)
    rows = math.ceil(len(panels) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(16, 5.5 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        panel(ax, doc)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    env = doc["environment"]
    fig.suptitle(
        f"radostdb-bench {doc['spec']['records']} records, {doc['spec']['clients']} "
        f"client(s); {env.get('osds', '?')} {env.get('objectstore') or ''} OSD(s), "
        f"{env.get('cpus')} CPUs"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=80)
    plt.close(fig)
