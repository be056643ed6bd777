"""PNG charts of a run: throughput and latency per workload, one bar per system.

One pair of charts per (depth, connections) measured:
``throughput_d{D}_c{C}.png`` (pages/s, a group of bars per workload, one
bar per system label such as ``tmemd lz4/ephemeral`` or ``memcached``) and
``latency_d{D}_c{C}.png`` (p99 per call as bars, p50 as a black tick, on a
log scale because depth-1 and batch latencies differ by orders of
magnitude).  The scale cases give ``scale_get_p99.png``: p99 of a depth-1
get against the number of pages stored, one line per system.

matplotlib runs on the non-interactive Agg backend, imported only here, so
a run with ``--no-charts`` never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_charts"]

#: Inches per workload group, so bars stay readable however many systems.
GROUP_WIDTH_IN = 2.4
#: Share of a group's width the bars take (the rest separates groups).
BARS_SHARE = 0.8
CHART_DPI = 110


def _series(
    records: Sequence[dict[str, Any]], labels: Sequence[str], workloads: Sequence[str], field: str
) -> dict[str, list[float]]:
    """For each label, ``field`` of each workload's record (0 when missing)."""
    index = {(r["label"], r["workload"]): r for r in records}
    out: dict[str, list[float]] = {}
    for label in labels:
        row = []
        for workload in workloads:
            rec = index.get((label, workload), {})
            value: Any = rec
            for part in field.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            row.append(float(value) if value else 0.0)
        out[label] = row
    return out


def _bars(
    path: Path,
    title: str,
    ylabel: str,
    workloads: Sequence[str],
    bars: dict[str, list[float]],
    ticks: dict[str, list[float]] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = BARS_SHARE / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(max(6.0, GROUP_WIDTH_IN * len(workloads) + 2.5), 4.8))
    for n, (label, values) in enumerate(bars.items()):
        xs = [i - BARS_SHARE / 2 + (n + 0.5) * width for i in range(len(workloads))]
        ax.bar(xs, values, width, label=label)
        if ticks is not None:
            marks = [(x, v) for x, v in zip(xs, ticks[label], strict=True) if v > 0]
            ax.scatter([m[0] for m in marks], [m[1] for m in marks], marker="_", color="black",
                       s=40, zorder=3)  # fmt: skip
    ax.set_xticks(range(len(workloads)), list(workloads))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ticks is not None:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=CHART_DPI)
    plt.close(fig)


def _scale_chart(path: Path, records: Sequence[dict[str, Any]]) -> bool:
    scale = [r for r in records if r["scale"] and r.get("latency_us", {}).get("p99")]
    if not scale:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label in dict.fromkeys(r["label"] for r in scale):
        points = sorted((r["stored"], r["latency_us"]["p99"]) for r in scale if r["label"] == label)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("pages stored")
    ax.set_ylabel("p99 get latency, µs (depth 1, 1 connection)")
    ax.set_title("get latency against store size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=CHART_DPI)
    plt.close(fig)
    return True


def write_charts(records: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Draw every chart the records allow into ``out_dir``; returns the files."""
    done = [r for r in records if not r["scale"] and r.get("pages_per_s") is not None]
    written: list[Path] = []
    groups = dict.fromkeys((r["depth"], r["connections"]) for r in done)
    for depth, conns in groups:
        group = [r for r in done if r["depth"] == depth and r["connections"] == conns]
        workloads = list(dict.fromkeys(r["workload"] for r in group))
        labels = list(dict.fromkeys(r["label"] for r in group))
        where = f"depth {depth}, {conns} connection{'s' if conns > 1 else ''}"
        path = out_dir / f"throughput_d{depth}_c{conns}.png"
        _bars(path, f"throughput, {where}", "pages/s (4 KiB)", workloads,
              _series(group, labels, workloads, "pages_per_s"))  # fmt: skip
        written.append(path)
        path = out_dir / f"latency_d{depth}_c{conns}.png"
        _bars(path, f"p99 latency per call (tick: p50), {where}", "µs per call (log)", workloads,
              _series(group, labels, workloads, "latency_us.p99"),
              _series(group, labels, workloads, "latency_us.p50"))  # fmt: skip
        written.append(path)
    path = out_dir / "scale_get_p99.png"
    if _scale_chart(path, records):
        written.append(path)
    return written
