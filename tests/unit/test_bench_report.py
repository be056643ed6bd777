"""tmemd-bench's report: JSON records, peer ratios, targets, table and charts."""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path
from typing import Any

import pytest

from tmem.bench import Case, ThreadResult, aggregate
from tmem.bench._charts import write_charts
from tmem.bench._codec_cost import CodecCost, measure_codecs
from tmem.bench._report import case_record, compare, format_table, format_targets, targets
from tmem.bench._runner import CaseResult


def _result(
    system: str, workload: str, depth: int, pages_per_s: float, p99_s: float, **kw: Any
) -> CaseResult:
    pool, codec = ("ephemeral", "lz4") if system == "tmemd" else ("-", "-")
    case = Case(system, workload, depth, 1, 1000, pool, codec, kw.pop("scale", False))
    pages = int(pages_per_s)  # over one second
    lat = array("d", [p99_s / 2] * 98 + [p99_s] * 2)
    thread = ThreadResult(ops=pages, pages=pages, hits=pages if "get" in workload else 0,
                          start=0.0, end=1.0, latencies=lat)  # fmt: skip
    return CaseResult(case, aggregate([thread]), kw.get("cpu", 0.5), 64 << 20, 1 << 30)


def _records(results: list[CaseResult]) -> list[dict[str, Any]]:
    records = [case_record(r) for r in results]
    compare(records)
    return records


def test_record_shape_and_units() -> None:
    rec = case_record(_result("tmemd", "put", 64, 50_000, 0.002, cpu=1.0))
    assert rec["pages_per_s"] == 50_000
    assert rec["mb_per_s"] == pytest.approx(50_000 * 4096 / 1e6, rel=1e-3)
    assert rec["latency_us"]["p99"] == pytest.approx(2000)
    assert rec["latency_us"]["p50"] == pytest.approx(1000)
    assert rec["cpu_us_per_op"] == pytest.approx(20.0)
    assert rec["rss_bytes"] == 64 << 20 and rec["wrong"] == 0
    json.dumps(rec, allow_nan=False)


def test_failed_case_record_has_no_figures() -> None:
    case = Case("redis", "put", 1, 1, 10)
    rec = case_record(CaseResult(case, None, 0.0, 0, 1 << 30, "start: no redis"))
    assert rec["error"] == "start: no redis" and "pages_per_s" not in rec
    rec2 = case_record(CaseResult(case, aggregate([ThreadResult()]), 0.0, 0, 1, None))
    assert rec2["latency_us"]["p99"] is None  # NaN never reaches the JSON
    json.dumps(rec2, allow_nan=False)


def test_ratios_against_matching_peer_cases() -> None:
    records = _records([
        _result("tmemd", "get_hit", 64, 60_000, 0.001),
        _result("memcached", "get_hit", 64, 80_000, 0.002),
        _result("redis", "get_hit", 64, 30_000, 0.004),
        _result("memcached", "get_hit", 1, 1, 1.0),  # another depth: not compared
    ])  # fmt: skip
    vs = records[0]["vs"]
    assert vs["memcached"] == {"throughput": 0.75, "p99": 0.5}
    assert vs["redis"] == {"throughput": 2.0, "p99": 0.25}


def test_targets_met_and_missed() -> None:
    records = _records([
        _result("tmemd", "put", 1, 20_000, 0.000_100, cpu=0.2),
        _result("memcached", "put", 1, 20_000, 0.000_050),
        _result("redis", "put", 1, 10_000, 0.000_100),
        _result("tmemd", "get_hit", 1, 1000, 0.000_100, scale=True),
        _result("tmemd", "get_hit", 1, 1000, 0.000_110, scale=True),
    ])  # fmt: skip
    records[4]["stored"] = 1_000_000
    costs = {"lz4": CodecCost(compress_us=5.0, decompress_us=1.0, ratio=2.0)}
    got = {t["target"]: (t["value"], t["met"]) for t in targets(records, costs)}
    assert got["put d1 c1 lz4/ephemeral pages/s vs memcached"] == (1.0, True)
    assert got["put d1 c1 lz4/ephemeral p99 vs memcached"] == (2.0, False)
    assert got["put d1 c1 lz4/ephemeral pages/s vs redis"] == (2.0, True)
    # 0.2 s / 20_000 ops = 10 µs per put against 5 µs of lz4: exactly 2x
    assert got["put d1 c1 lz4/ephemeral server CPU/op vs codec"] == (2.0, True)
    assert got["tmemd get p99 at 1000000 stored vs 1000"] == (1.1, True)
    text = format_targets(targets(records, costs))
    assert "MISSED put d1 c1 lz4/ephemeral p99 vs memcached" in text


def test_table_has_a_line_per_case() -> None:
    records = _records([_result("tmemd", "put", 1, 1000, 0.001), _result("redis", "put", 1, 900,
                                                                         0.001)])  # fmt: skip
    lines = format_table(records).splitlines()
    assert len(lines) == 3
    assert "tmemd lz4/ephemeral" in lines[1] and "redis" in lines[2]


def test_charts_are_written(tmp_path: Path) -> None:
    records = _records([
        _result("tmemd", "put", 1, 1000, 0.001),
        _result("memcached", "put", 1, 2000, 0.001),
        _result("tmemd", "get_hit", 64, 5000, 0.002),
        _result("tmemd", "get_hit", 1, 1000, 0.001, scale=True),
    ])  # fmt: skip
    written = write_charts(records, tmp_path)
    names = sorted(p.name for p in written)
    assert names == [
        "latency_d1_c1.png", "latency_d64_c1.png", "scale_get_p99.png",
        "throughput_d1_c1.png", "throughput_d64_c1.png",
    ]  # fmt: skip
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_codec_costs_are_measured_on_non_zero_pages() -> None:
    pages = [bytes(4096), b"abcd" * 1024, bytes(range(256)) * 16]
    costs = measure_codecs(pages, ["lzo", "lz4", "zstd", "none"])
    assert set(costs) == {"lzo", "lz4", "zstd"}
    for cost in costs.values():
        assert cost.compress_us > 0 and cost.decompress_us > 0
        assert cost.ratio > 1 and not math.isnan(cost.ratio)
    assert measure_codecs([bytes(4096)], ["lz4"]) == {}


def test_failed_cases_are_not_compared() -> None:
    failed = Case("tmemd", "put", 1, 1, 1000, "ephemeral", "lz4")
    broken = CaseResult(failed, aggregate([ThreadResult(error="setup: boom")]), 0.0, 1, 1, "boom")
    records = _records([broken, _result("memcached", "put", 1, 20_000, 0.0001)])
    assert "vs" not in records[0]
    costs = {"lz4": CodecCost(compress_us=5.0, decompress_us=1.0, ratio=2.0)}
    assert targets(records, costs) == []


def test_repeat_keeps_the_median_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import io

    from tmem.bench import BenchConfig, _runner
    from tmem.bench._progress import Progress

    speeds = iter([5_000.0, 1_000.0, 3_000.0])

    def fake_run(*args: Any) -> CaseResult:
        return _result("tmemd", "put", 1, next(speeds), 0.001)

    monkeypatch.setattr(_runner, "_run_case", fake_run)
    case = Case("tmemd", "put", 1, 1, 1000, "ephemeral", "lz4")
    [got] = _runner.run_matrix(
        BenchConfig(repeat=3), [case], [b"x" * 4096], tmp_path, Progress(1, io.StringIO())
    )
    assert got.summary is not None and got.summary.pages_per_s == 3_000
    assert got.runs_pages_per_s == (5_000.0, 1_000.0, 3_000.0)
    assert case_record(got)["runs_pages_per_s"] == [5_000.0, 1_000.0, 3_000.0]
