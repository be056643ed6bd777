"""tmemd-bench's arithmetic: nearest-rank percentiles and merging threads."""

from __future__ import annotations

import math
from array import array

import pytest

from tmem.bench import ThreadResult, aggregate, percentile
from tmem.bench._stats import summarize_latency


def test_percentile_nearest_rank() -> None:
    ordered = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(ordered, 50) == 50.0
    assert percentile(ordered, 99) == 99.0
    assert percentile(ordered, 100) == 100.0
    assert percentile(ordered, 0.5) == 1.0
    # 99.9 % of 100 samples rounds up to the 100th: the maximum.
    assert percentile(ordered, 99.9) == 100.0


def test_percentile_of_one_and_none() -> None:
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99.9) == 7.0
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize("p", [0, -1, 100.1])
def test_percentile_rejects_out_of_range(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], p)


def test_p999_needs_a_thousand_samples_to_differ_from_max() -> None:
    samples = [1.0] * 999 + [1000.0]
    lat = summarize_latency(x / 1e6 for x in samples)
    assert lat.samples == 1000
    assert lat.p999_us == pytest.approx(1.0)
    assert lat.max_us == pytest.approx(1000.0)
    lat = summarize_latency([x / 1e6 for x in samples[1:]])
    assert lat.p999_us == pytest.approx(1000.0)


def test_summarize_latency_units_and_mean() -> None:
    lat = summarize_latency([0.000_010, 0.000_020, 0.000_030, 0.000_040])
    assert lat.p50_us == pytest.approx(20.0)
    assert lat.p99_us == pytest.approx(40.0)
    assert lat.mean_us == pytest.approx(25.0)
    empty = summarize_latency([])
    assert empty.samples == 0 and math.isnan(empty.p99_us)


def test_aggregate_adds_counters_and_spans_time() -> None:
    a = ThreadResult(ops=10, pages=10, hits=6, misses=4, start=1.0, end=3.0,
                     latencies=array("d", [0.1, 0.2]))  # fmt: skip
    b = ThreadResult(ops=20, pages=20, wrong=1, refused=2, preload_refused=3, start=2.0,
                     end=5.0, latencies=array("d", [0.3]))  # fmt: skip
    s = aggregate([a, b])
    assert (s.threads, s.ops, s.pages, s.hits, s.misses, s.wrong) == (2, 30, 30, 6, 4, 1)
    assert (s.refused, s.preload_refused) == (2, 3)
    assert s.elapsed_s == pytest.approx(4.0)
    assert s.ops_per_s == pytest.approx(7.5)
    assert s.latency.samples == 3
    assert s.latency.max_us == pytest.approx(300_000.0)
    assert s.errors == ()


def test_aggregate_keeps_errors_and_ignores_threads_that_never_ran() -> None:
    ran = ThreadResult(ops=5, pages=5, start=10.0, end=11.0)
    failed = ThreadResult(error="thread 1 setup: boom")
    s = aggregate([ran, failed])
    assert s.elapsed_s == pytest.approx(1.0)
    assert s.errors == ("thread 1 setup: boom",)
    nothing = aggregate([failed])
    assert nothing.elapsed_s == 0.0 and nothing.ops_per_s == 0.0
