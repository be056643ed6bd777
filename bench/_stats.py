"""Counting and merging what the load threads measured.

Each load thread (one per connection) fills a ``ThreadResult``: counters,
its first and last timestamps, and one latency sample per call in an
``array('d')`` of seconds.  A call is one request at depth 1 and one batch of
``depth`` requests otherwise, so at depth 64 a sample is the time the whole
batch took: the longest any request in it waited.

``aggregate`` merges the threads of a case after the run: counters add up,
the elapsed time runs from the earliest start to the latest end (all threads
read ``time.perf_counter``, CLOCK_MONOTONIC, one clock for every process on
Linux), and the latency arrays are concatenated and sorted once.  Percentiles
are nearest-rank: p is the smallest sample with at least p % of the samples
at or below it, so every reported figure was really measured, and p99.9 of
fewer than 1000 samples is simply the maximum (the sample count is reported
beside it).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Latency", "Summary", "ThreadResult", "aggregate", "percentile", "summarize_latency"]

#: Microseconds per second, for latencies reported in µs.
US_PER_S = 1e6


@dataclass
class ThreadResult:
    """What one load thread measured (picklable: it crosses process boundaries)."""

    #: Requests completed (a batch of 64 counts 64; one flush_object counts 1).
    ops: int = 0
    #: Pages moved or dropped (a flush_object drops PAGES_PER_OBJECT).
    pages: int = 0
    hits: int = 0
    misses: int = 0
    #: Gets that returned bytes other than those put: must stay 0.
    wrong: int = 0
    #: Puts the server refused (full store, or a persistent pool at its cap).
    refused: int = 0
    #: Puts refused while preloading (the stored set did not fit).
    preload_refused: int = 0
    start: float = 0.0
    end: float = 0.0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    error: str | None = None


@dataclass(frozen=True)
class Latency:
    """Latency percentiles of one case, in microseconds."""

    samples: int
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float


@dataclass(frozen=True)
class Summary:
    """All threads of one case merged."""

    threads: int
    ops: int
    pages: int
    hits: int
    misses: int
    wrong: int
    refused: int
    preload_refused: int
    elapsed_s: float
    latency: Latency
    errors: tuple[str, ...]

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.elapsed_s if self.elapsed_s > 0 else 0.0


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0 < p <= 100) of ascending ``ordered``;
    NaN when there are no samples."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p}")
    if not ordered:
        return math.nan
    # Rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in floats.
    rank = math.ceil(round(p / 100 * len(ordered), 9))
    return ordered[max(rank, 1) - 1]


def summarize_latency(samples_s: Iterable[float]) -> Latency:
    """Percentiles (µs) of latency samples given in seconds."""
    ordered = sorted(samples_s)
    if not ordered:
        nan = math.nan
        return Latency(0, nan, nan, nan, nan, nan)
    return Latency(
        samples=len(ordered),
        p50_us=percentile(ordered, 50) * US_PER_S,
        p99_us=percentile(ordered, 99) * US_PER_S,
        p999_us=percentile(ordered, 99.9) * US_PER_S,
        max_us=ordered[-1] * US_PER_S,
        mean_us=math.fsum(ordered) / len(ordered) * US_PER_S,
    )


def aggregate(results: Sequence[ThreadResult]) -> Summary:
    """Merge the threads of one case (see the module doc)."""
    ran = [r for r in results if r.end > r.start]
    merged: array[float] = array("d")
    for result in results:
        merged.extend(result.latencies)
    elapsed = max(r.end for r in ran) - min(r.start for r in ran) if ran else 0.0
    return Summary(
        threads=len(results),
        ops=sum(r.ops for r in results),
        pages=sum(r.pages for r in results),
        hits=sum(r.hits for r in results),
        misses=sum(r.misses for r in results),
        wrong=sum(r.wrong for r in results),
        refused=sum(r.refused for r in results),
        preload_refused=sum(r.preload_refused for r in results),
        elapsed_s=elapsed,
        latency=summarize_latency(merged),
        errors=tuple(r.error for r in results if r.error is not None),
    )
