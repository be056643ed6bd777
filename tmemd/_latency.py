"""Server-side op latency, as cumulative-histogram counters.

prometheus_client's ``Histogram.observe`` takes a lock and costs several
times a plain bucket bump (docs/bench/micro.md); on a path where every
microsecond of the daemon's own work shows, we keep plain per-op bucket
counters instead and let the metrics collector turn
them into a histogram family at scrape time (the custom-collector pattern
of prometheus/client_python).  Latency here is the time the daemon spends
on one request, decoding to encoded reply, not the network round trip.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

__all__ = ["LATENCY_BUCKETS_S", "LatencyRecorder", "LatencySnapshot"]

#: Upper bounds in seconds.  A compressing put or a get costs the daemon a
#: few to a few tens of microseconds (docs/bench/README.md, the server path
#: without the network), so the buckets are dense from 5 µs to 1 ms and
#: sparse past it (only stalls land there).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    5e-6,
    10e-6,
    25e-6,
    50e-6,
    100e-6,
    250e-6,
    500e-6,
    1e-3,
    5e-3,
    25e-3,
    100e-3,
    1.0,
)


@dataclass(frozen=True, slots=True)
class LatencySnapshot:
    """One op's histogram: per-bucket (not cumulative) counts, +Inf last."""

    op: str
    bucket_counts: tuple[int, ...]
    sum_s: float

    @property
    def count(self) -> int:
        return sum(self.bucket_counts)


class LatencyRecorder:
    """Per-op bucket counters; ``observe`` is a bisect and two adds."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}
        #: One-element lists, so the hot path can hold and bump them.
        self._sums: dict[str, list[float]] = {}

    def series(self, op: str) -> tuple[list[int], list[float]]:
        """The live bucket counts and one-element sum of ``op``.

        The daemon's put/get path holds these and does the bisect and adds
        itself, saving the call and two dict lookups per op (docs/bench/micro.md).
        """
        counts = self._counts.get(op)
        if counts is None:
            counts = self._counts[op] = [0] * (len(LATENCY_BUCKETS_S) + 1)
            self._sums[op] = [0.0]
        return counts, self._sums[op]

    def observe(self, op: str, seconds: float) -> None:
        counts, total = self.series(op)
        counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        total[0] += seconds

    def snapshot(self) -> tuple[LatencySnapshot, ...]:
        return tuple(
            LatencySnapshot(op, tuple(counts), self._sums[op][0])
            for op, counts in sorted(self._counts.items())
        )
