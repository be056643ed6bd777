"""Micro-costs of the page codecs, and of an engine put/get around them.

Prints, per codec, microseconds per 4 KiB page to compress and decompress,
the compression ratio under the engine's rules (same-filled pages take no
bytes, pages compressing above 7/8 are stored raw), and the cost of a whole
``Engine.put`` + ``Engine.get`` on the same pages, so the lead can quote the
floors of a compressing put and get (docs/design.md §6).

Pages: the benchmarks' corpus (``bench/_corpus.py``), so the floors quoted
are those of the pages every other benchmark here measures.

Usage: ``python bench/codecs.py [--pages N] [--rounds R]``.
Timings are the best of R rounds (the least disturbed by the VM).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from tmem.bench._config import PAGE_BYTES
from tmem.bench._corpus import real_corpus
from tmemd.engine import CODECS, Engine, EngineConfig
from tmemd.engine.codecs import raw_threshold_bytes


def best_us_per_page(run: Callable[[], object], pages: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / pages * 1e6


def codec_row(name: str, pages: list[bytes], rounds: int) -> str:
    codec = CODECS[name]
    varied = [p for p in pages if p != p[:1] * PAGE_BYTES]
    blobs = [codec.compress(p) for p in varied]
    compress_us = best_us_per_page(lambda: [codec.compress(p) for p in varied], len(varied), rounds)
    decompress_us = best_us_per_page(
        lambda: [codec.decompress(b, PAGE_BYTES) for b in blobs], len(blobs), rounds
    )
    limit = raw_threshold_bytes(PAGE_BYTES)
    stored = sum(len(b) if len(b) <= limit else PAGE_BYTES for b in blobs)
    raw = sum(len(b) > limit for b in blobs)
    put_us, get_us = engine_us(name, pages, rounds)
    return (
        f"{name:5} {compress_us:9.2f} {decompress_us:9.2f} {len(pages) * PAGE_BYTES / stored:7.2f}"
        f" {100 * raw / len(pages):6.1f}% {put_us:8.2f} {get_us:8.2f}"
    )


def engine_us(codec: str, pages: list[bytes], rounds: int) -> tuple[float, float]:
    """µs per Engine.put and per Engine.get (kept, persistent pool), all pages."""
    engine = Engine(EngineConfig(memory_bytes=1 << 34, persistent_max=1.0), lambda: 0.0)
    engine.connect("bench")
    pool = engine.new_pool("bench", persistent=True, codec=codec)
    views = [memoryview(p) for p in pages]  # as the server hands them in

    def put_all() -> None:
        for i, view in enumerate(views):
            engine.put("bench", pool, i >> 10, i & 1023, view)

    def get_all() -> None:
        for i in range(len(views)):
            engine.get("bench", pool, i >> 10, i & 1023)

    put_us = best_us_per_page(put_all, len(pages), rounds)  # later rounds replace
    get_us = best_us_per_page(get_all, len(pages), rounds)
    return put_us, get_us


def same_fill_row(pages: list[bytes], rounds: int) -> str:
    eq_us = best_us_per_page(lambda: [p == p[:1] * PAGE_BYTES for p in pages], len(pages), rounds)
    count_us = best_us_per_page(
        lambda: [p.count(p[:1]) == PAGE_BYTES for p in pages], len(pages), rounds
    )
    return f"same-fill check: == {eq_us:.2f} us/page, count {count_us:.2f} us/page"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pages = real_corpus(args.pages).pages
    zeros = sum(p == p[:1] * PAGE_BYTES for p in pages)
    print(f"{len(pages)} pages of {PAGE_BYTES} bytes, {zeros} same-filled; best of {args.rounds}")
    print("codec  comp us  decomp us   ratio    raw   put us   get us")
    for name in ("lzo", "lz4", "zstd", "none"):
        print(codec_row(name, pages, args.rounds))
    print(same_fill_row(pages, args.rounds))
    print("(ratio = original / stored bytes under the engine's rules; comp/decomp exclude")
    print(" same-filled pages; put/get = whole Engine calls on all pages, persistent pool)")


if __name__ == "__main__":
    main()
