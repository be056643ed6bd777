"""The codecs' own cost per page on this corpus: the floor of a put and a get.

One target of the benchmark issue is "daemon CPU per op within 2x the
codec's own cost", so the harness measures that cost itself, in-process,
on the pages the servers are given, with the codecs as the daemon
configures them (docs/design.md §6): LZO1X-1 without python-lzo's header, an
lz4 block without stored size, zstd level 1 without content size or
checksum.  Same-filled pages are left out, because the daemon stores them
as their fill byte without compressing; ``ratio`` is original bytes over
compressed bytes for the pages measured.

Each codec is timed in thread CPU time (``time.thread_time``, the same kind
of time as the servers' /proc figures, so being preempted on a busy machine
adds nothing), ``REPEATS`` times over the sample, and the fastest pass kept:
cache and frequency noise only ever add time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lz4.block
import lzo
import zstandard

from ._config import PAGE_BYTES

__all__ = ["CodecCost", "measure_codecs"]

#: Passes over the sample per codec; the fastest counts.
REPEATS = 3
#: Pages timed per pass: enough for a stable mean, a fraction of a second.
SAMPLE_PAGES = 2_000
#: zstd level the codec floors of docs/design.md §6 are stated for (zstd-1).
ZSTD_LEVEL = 1
#: python-lzo's level 1 is LZO1X-1, the codec zcache used.
LZO_LEVEL = 1


@dataclass(frozen=True)
class CodecCost:
    """Microseconds per 4 KiB page, and the compression ratio, of one codec."""

    compress_us: float
    decompress_us: float
    ratio: float


def _codecs() -> dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]]:
    zc = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_content_size=False, write_checksum=False, write_dict_id=False
    )
    zd = zstandard.ZstdDecompressor()
    return {
        "lzo": (
            lambda page: lzo.compress(page, LZO_LEVEL, False),
            lambda blob: lzo.decompress(blob, False, PAGE_BYTES),
        ),
        "lz4": (
            lambda page: lz4.block.compress(page, store_size=False),
            lambda blob: lz4.block.decompress(blob, uncompressed_size=PAGE_BYTES),
        ),
        "zstd": (
            zc.compress,
            lambda blob: zd.decompress(blob, max_output_size=PAGE_BYTES),
        ),
    }


def _best_pass(fn: Callable[[bytes], bytes], items: Sequence[bytes]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.thread_time()
        for item in items:
            fn(item)
        best = min(best, time.thread_time() - t0)
    return best / len(items) * 1e6


def measure_codecs(pages: Sequence[bytes], names: Sequence[str]) -> dict[str, CodecCost]:
    """Cost of each codec in ``names`` on up to SAMPLE_PAGES non-same-filled pages."""
    sample = [p for p in pages if p != p[:1] * len(p)][:SAMPLE_PAGES]
    if not sample:
        return {}
    table = _codecs()
    costs: dict[str, CodecCost] = {}
    for name in names:
        if name not in table:
            continue
        compress, decompress = table[name]
        blobs = [compress(page) for page in sample]
        costs[name] = CodecCost(
            compress_us=_best_pass(compress, sample),
            decompress_us=_best_pass(decompress, blobs),
            ratio=len(sample) * PAGE_BYTES / sum(len(b) for b in blobs),
        )
    return costs
