"""Turning case results into figures: JSON records, peer ratios, targets, a table.

Units.  ``pages_per_s`` counts pages moved (a flush_object counts the pages
it dropped); ``mb_per_s`` is that times 4096 bytes, in 10^6 bytes per second
(a precompressed pool counts the original 4 KiB, not the shorter payload);
``ops_per_s`` counts requests (one flush_object is one).  Latency is per
call, in µs: one request at depth 1, a whole batch of ``depth`` requests
otherwise.  ``cpu_us_per_op`` is the server's user+system CPU over the
timed phase divided by its requests.

Ratios compare a tmemd case with the peer case of the same workload, depth,
connections and store size: ``throughput`` is tmemd's pages/s over the
peer's (above 1: tmemd is faster), ``p99`` tmemd's p99 over the peer's
(below 1: tmemd is faster).

Targets are the benchmark issue's, each evaluated on every case it applies
to and reported with its value, goal and whether it was met: tmemd put and
get at depth 1 and 64 with lz4 at least 1.0x memcached and 1.5x Redis;
server CPU per op within 2x the codec's own cost; p99 get at the largest
store within 1.2x of the smallest; p99 at depth 1 no worse than memcached.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ._codec_cost import CodecCost
from ._config import PAGE_BYTES
from ._runner import CaseResult

__all__ = ["case_record", "compare", "format_table", "format_targets", "targets"]

#: Goals of the benchmark issue.
GOAL_VS_MEMCACHED = 1.0
GOAL_VS_REDIS = 1.5
GOAL_CPU_VS_CODEC = 2.0
GOAL_SCALE_P99 = 1.2
GOAL_D1_P99_VS_MEMCACHED = 1.0
#: The workloads and depths the throughput targets name.
TARGET_WORKLOADS = ("put", "get_hit")
TARGET_DEPTHS = (1, 64)
PEERS = ("memcached", "redis")
#: Characters of an error shown in the table (the JSON keeps all of it).
NOTE_CHARS = 60


def _num(value: float) -> float | None:
    """JSON has no NaN: a figure that could not be measured is null."""
    return None if math.isnan(value) or math.isinf(value) else round(value, 3)


def case_record(result: CaseResult) -> dict[str, Any]:
    """The JSON record of one case."""
    c = result.case
    rec: dict[str, Any] = {
        "system": c.system, "label": c.label, "busy_poll_us": c.busy_poll_us,
        "workload": c.workload, "pool": c.pool,
        "codec": c.codec, "depth": c.depth, "connections": c.connections,
        "stored": c.stored, "scale": c.scale, "memory_bytes": result.memory_bytes,
        "error": result.error,
    }  # fmt: skip
    s = result.summary
    if s is None:
        return rec
    lat = s.latency
    rec.update(
        threads=s.threads, ops=s.ops, pages=s.pages, elapsed_s=_num(s.elapsed_s),
        ops_per_s=_num(s.ops_per_s), pages_per_s=_num(s.pages_per_s),
        mb_per_s=_num(s.pages_per_s * PAGE_BYTES / 1e6),
        hits=s.hits, misses=s.misses, wrong=s.wrong, refused=s.refused,
        preload_refused=s.preload_refused,
        latency_us={
            "samples": lat.samples, "p50": _num(lat.p50_us), "p99": _num(lat.p99_us),
            "p999": _num(lat.p999_us), "max": _num(lat.max_us), "mean": _num(lat.mean_us),
        },
        server_cpu_s=_num(result.server_cpu_s),
        cpu_us_per_op=_num(result.server_cpu_s / s.ops * 1e6) if s.ops else None,
        rss_bytes=result.rss_bytes,
        runs_pages_per_s=[_num(x) for x in result.runs_pages_per_s],
    )  # fmt: skip
    return rec


def _key(rec: dict[str, Any]) -> tuple[Any, ...]:
    return rec["workload"], rec["depth"], rec["connections"], rec["stored"], rec["scale"]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _measured(rec: dict[str, Any]) -> bool:
    """True when the case ran without error (a failed case compares with nothing)."""
    return rec["error"] is None and bool(rec.get("pages_per_s"))


def compare(records: Sequence[dict[str, Any]]) -> None:
    """Add ``vs`` (ratios to each peer's matching case) to tmemd records, in place."""
    peers = {(r["system"], *_key(r)): r for r in records if r["system"] in PEERS}
    for rec in records:
        if rec["system"] != "tmemd" or not _measured(rec):
            continue
        vs = {}
        for peer in PEERS:
            other = peers.get((peer, *_key(rec)))
            if other is None or not _measured(other):
                continue
            vs[peer] = {
                "throughput": _ratio(rec["pages_per_s"], other["pages_per_s"]),
                "p99": _ratio(rec["latency_us"]["p99"], other["latency_us"]["p99"]),
            }
        rec["vs"] = vs


def _target(name: str, value: float | None, goal: float, higher_is_better: bool) -> dict[str, Any]:
    met = None if value is None else (value >= goal if higher_is_better else value <= goal)
    goal_text = (">= " if higher_is_better else "<= ") + f"{goal}"
    return {"target": name, "value": value, "goal": goal_text, "met": met}


def _peer_targets(rec: dict[str, Any], name: str) -> Iterable[dict[str, Any]]:
    vs = rec.get("vs", {})
    if "memcached" in vs:
        yield _target(f"{name} pages/s vs memcached", vs["memcached"]["throughput"],
                      GOAL_VS_MEMCACHED, True)  # fmt: skip
        if rec["depth"] == 1:
            yield _target(f"{name} p99 vs memcached", vs["memcached"]["p99"],
                          GOAL_D1_P99_VS_MEMCACHED, False)  # fmt: skip
    if "redis" in vs:
        yield _target(f"{name} pages/s vs redis", vs["redis"]["throughput"], GOAL_VS_REDIS, True)


def _cpu_target(
    rec: dict[str, Any], name: str, costs: dict[str, CodecCost]
) -> Iterable[dict[str, Any]]:
    cost = costs.get(rec["codec"])
    if cost is None or rec.get("cpu_us_per_op") is None:
        return
    floor = cost.compress_us if rec["workload"] == "put" else cost.decompress_us
    yield _target(f"{name} server CPU/op vs codec", _ratio(rec["cpu_us_per_op"], floor),
                  GOAL_CPU_VS_CODEC, False)  # fmt: skip


def _scale_targets(records: Sequence[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    scale = sorted(
        (r for r in records if r["system"] == "tmemd" and r["scale"] and _measured(r)),
        key=lambda r: r["stored"],
    )
    if len(scale) >= 2:
        small, large = scale[0], scale[-1]
        yield _target(
            f"tmemd get p99 at {large['stored']} stored vs {small['stored']}",
            _ratio(large["latency_us"]["p99"], small["latency_us"]["p99"]),
            GOAL_SCALE_P99,
            False,
        )


def targets(records: Sequence[dict[str, Any]], costs: dict[str, CodecCost]) -> list[dict[str, Any]]:
    """The issue's targets over ``records`` (after ``compare``)."""
    out: list[dict[str, Any]] = []
    for rec in records:
        if rec["system"] != "tmemd" or rec["scale"] or not _measured(rec):
            continue
        if rec["workload"] not in TARGET_WORKLOADS or rec["depth"] not in TARGET_DEPTHS:
            continue
        variant = rec["label"].removeprefix("tmemd ")
        name = f"{rec['workload']} d{rec['depth']} c{rec['connections']} {variant}"
        if rec["codec"] == "lz4":
            out.extend(_peer_targets(rec, name))
        out.extend(_cpu_target(rec, name, costs))
    out.extend(_scale_targets(records))
    return out


_COLUMNS = (
    ("system", 22), ("workload", 12), ("d", 3), ("c", 3), ("stored", 8), ("pages/s", 10),
    ("MB/s", 8), ("p50µs", 8), ("p99µs", 8), ("p999µs", 8), ("cpuµs/op", 9), ("RSS MiB", 8),
    ("hit%", 6), ("note", 0),
)  # fmt: skip


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _row(rec: dict[str, Any]) -> list[str]:
    lat = rec.get("latency_us", {})
    gets = rec.get("hits", 0) + rec.get("misses", 0) + rec.get("wrong", 0)
    hit = _fmt(100 * rec["hits"] / gets, 1) if gets else "-"
    error = (rec["error"] or "").strip().splitlines()
    note = error[0][:NOTE_CHARS] if error else (f"WRONG {rec['wrong']}" if rec.get("wrong") else "")
    if not note and rec.get("refused"):
        note = f"refused {rec['refused']}"
    rss = rec.get("rss_bytes")
    return [
        rec["label"], rec["workload"], str(rec["depth"]), str(rec["connections"]),
        str(rec["stored"]), _fmt(rec.get("pages_per_s")), _fmt(rec.get("mb_per_s"), 1),
        _fmt(lat.get("p50")), _fmt(lat.get("p99")), _fmt(lat.get("p999")),
        _fmt(rec.get("cpu_us_per_op"), 1), _fmt(rss / 2**20 if rss else None), hit, note,
    ]  # fmt: skip


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table, one line per case."""
    lines = [" ".join(name.rjust(width) for name, width in _COLUMNS).rstrip()]
    for rec in records:
        cells = _row(rec)
        lines.append(" ".join(cell.rjust(w) for cell, (_, w) in zip(cells, _COLUMNS, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def format_targets(items: Sequence[dict[str, Any]]) -> str:
    """One line per target: met, missed or not measured."""
    lines = []
    for item in items:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[item["met"]]
        lines.append(f"{mark} {item['target']}: {_fmt(item['value'], 2)} (goal {item['goal']})")
    return "\n".join(lines)
