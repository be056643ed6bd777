"""The small costs behind design choices that the code's comments give reasons for.

Each row is one choice and what it was chosen over, timed in this process:

* frames: ``tmem.proto``'s ``Request`` (a ``NamedTuple``) against the same
  fields as a frozen slotted dataclass (proto/_frames.py);
* latency: one op recorded the way the daemon's put/get path does it
  (``LatencyRecorder.series``: a bisect and two adds) against
  ``LatencyRecorder.observe`` and prometheus_client's ``Histogram.observe``
  (tmemd/_latency.py);
* checksum: CRC-32 against BLAKE2b over a 1 MiB value (client/_mapping_format.py);
* metrics: one scrape of 8 clients x 64 pools, collected (engine and server
  snapshots to metric families) and formatted (``generate_latest``), as the
  exporter splits them (tmemd/metrics.py, tmemd/_metrics_http.py).

Timings are the best of ``--repeat`` rounds; docs/bench/micro.md holds the
figures of one run and the date.

    .venv/bin/python bench/micro.py --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
import zlib
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Histogram
from prometheus_client.exposition import generate_latest

from tmem.proto import Opcode, Request
from tmemd._latency import LATENCY_BUCKETS_S, LatencyRecorder
from tmemd._metrics_http import _Collected
from tmemd.engine import Engine, EngineConfig
from tmemd.metrics import ServerStats, TmemdCollector

#: Calls per timed round of the per-call rows: enough that the timer's own
#: cost vanishes, few enough for a round well under a second.
CALLS = 200_000
#: Size of the value the checksums read: a mapping value of a few pages and more.
CHECKSUM_BYTES = 1 << 20
#: The scrape measured: clients x pools per client (64 is the per-client cap).
SCRAPE_CLIENTS = 8
SCRAPE_POOLS = 64


@dataclass(frozen=True, slots=True)
class _FrozenRequest:
    opcode: Opcode
    request_id: int
    pool_id: int
    object_id: int
    index: int
    flags: int
    arg: int
    payload: bytes


def best_s(run: Callable[[], object], repeat: int) -> float:
    """Fastest wall time of ``repeat`` calls of ``run``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def per_call_us(make: Callable[[], object], repeat: int) -> float:
    """µs per call of ``make``, less the cost of calling an empty function."""

    def loop(run: Callable[[], object]) -> float:
        return best_s(lambda: [run() for _ in range(CALLS)], repeat) / CALLS * 1e6

    return loop(make) - loop(lambda: None)


def frames(repeat: int) -> None:
    page = bytes(4096)
    tup = per_call_us(lambda: Request(Opcode.PUT_PAGE, 1, 2, 3, 4, 0, 0, page), repeat)
    frozen = per_call_us(lambda: _FrozenRequest(Opcode.PUT_PAGE, 1, 2, 3, 4, 0, 0, page), repeat)
    print(f"frames: NamedTuple Request {tup:.2f} µs, frozen slotted dataclass {frozen:.2f} µs")


def latency(repeat: int) -> None:
    recorder = LatencyRecorder()
    counts, total = recorder.series("put_page")

    def inline() -> None:
        counts[bisect_left(LATENCY_BUCKETS_S, 12e-6)] += 1
        total[0] += 12e-6

    histogram = Histogram("put_seconds", "", buckets=LATENCY_BUCKETS_S, registry=None)
    rows = {
        "inline (series)": per_call_us(inline, repeat),
        "LatencyRecorder.observe": per_call_us(lambda: recorder.observe("put_page", 12e-6), repeat),
        "prometheus Histogram.observe": per_call_us(lambda: histogram.observe(12e-6), repeat),
    }
    print("latency: " + ", ".join(f"{name} {us:.2f} µs" for name, us in rows.items()))


def checksum(repeat: int) -> None:
    value = bytes(range(256)) * (CHECKSUM_BYTES // 256)
    crc = best_s(lambda: zlib.crc32(value), repeat)
    blake = best_s(lambda: hashlib.blake2b(value).digest(), repeat)
    gib = CHECKSUM_BYTES / 2**30
    print(f"checksum of 1 MiB: CRC-32 {gib / crc:.2f} GiB/s, BLAKE2b {gib / blake:.2f} GiB/s")


def scrape(repeat: int) -> None:
    engine = Engine(EngineConfig(memory_bytes=256 << 20), time.monotonic)
    for c in range(SCRAPE_CLIENTS):
        engine.connect(f"c{c}")
        for _ in range(SCRAPE_POOLS):
            engine.new_pool(f"c{c}", persistent=False)
    recorder = LatencyRecorder()
    recorder.observe("put_page", 12e-6)
    server = ServerStats(0, 0, 0, 0, 0, recorder.snapshot(), time.time())
    collector = TmemdCollector(engine.statistics, lambda: server)
    families = list(collector.collect())
    text = generate_latest(_Collected(families))
    collect_s = best_s(lambda: list(collector.collect()), repeat)
    format_s = best_s(lambda: generate_latest(_Collected(families)), repeat)
    samples = sum(len(f.samples) for f in families)
    lines = text.count(b"\n")
    print(
        f"metrics: {SCRAPE_CLIENTS * SCRAPE_POOLS} pools, {samples} samples,"
        f" {lines} lines: collect {collect_s * 1e3:.1f} ms,"
        f" format {format_s * 1e3:.1f} ms ({format_s / samples * 1e6:.1f} µs per sample)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds per row (best kept)")
    args = parser.parse_args()
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    frames(args.repeat)
    latency(args.repeat)
    checksum(args.repeat)
    scrape(args.repeat)


if __name__ == "__main__":
    main()
