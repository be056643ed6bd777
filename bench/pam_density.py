"""Density and speed of the arena PAMs on real pages (a script; prints figures).

For each codec (LZO1X-1, lz4, zstd-1) the corpus (``bench/corpus.py``) is
compressed once: same-filled pages are skipped (they take no frame) and a
page compressing above 7/8 of 4 KiB is kept raw.  Then each PAM stores every
compressed page into a fresh arena, and we print per PAM and codec:

* ideal: original bytes / compressed bytes (a packer that wastes nothing);
* achieved: original bytes / (frames held * 4 KiB);
* loss: 1 - achieved / ideal; frag: 1 - stored bytes / held bytes;
* RSS eff.: original bytes / growth of this process's RSS while storing
  (arena frames touched plus every byte of PAM metadata);
* µs per store, load and free (loads and frees in a seeded random order).

Then metadata bytes per stored object (tracemalloc: Python memory the PAM
allocated, over the objects it holds) at 10^5 and 10^6 objects, and the cost
of one ``madvise`` per freed frame against the arena's batched release.

Usage: ``python bench/pam_density.py [--pages N] [--meta 100000,1000000]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
import tracemalloc
from array import array
from collections.abc import Callable

import lz4.block
import lzo
import zstandard

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corpus import DEFAULT_PAGES, PAGE_BYTES, load_corpus

from tmemd.engine._pam import Pam
from tmemd.engine.pam import Arena, XvmallocPam, ZbudPam, ZsmallocPam

#: Pages compressing above this are stored raw (the engine's rule).
RAW_ABOVE_BYTES = PAGE_BYTES * 7 // 8

_zstd = zstandard.ZstdCompressor(level=1)
CODECS: dict[str, Callable[[bytes], bytes]] = {
    "lzo": lambda p: lzo.compress(p, 1, False),
    "lz4": lambda p: lz4.block.compress(p, store_size=False),
    "zstd": _zstd.compress,
}
PAMS: dict[str, Callable[[Arena], Pam]] = {
    "zbud": ZbudPam,
    "xvmalloc": XvmallocPam,
    "zsmalloc": ZsmallocPam,
    "zsmalloc-4": lambda a: ZsmallocPam(a, max_span_frames=4),
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def compress_all(pages: list[bytes], codec: Callable[[bytes], bytes]) -> list[bytes]:
    out = []
    for page in pages:
        if page == page[:1] * PAGE_BYTES:
            continue
        packed = codec(page)
        out.append(page if len(packed) > RAW_ABOVE_BYTES else packed)
    return out


def run_one(make: Callable[[Arena], Pam], objs: list[bytes], n_pages: int) -> dict[str, float]:
    """Store, load and free ``objs`` in a fresh arena; return the figures."""
    gc.collect()
    rss0 = rss_bytes()
    arena = Arena(len(objs) * PAGE_BYTES + (1 << 20))
    pam = make(arena)
    handles = array("Q", bytes(8 * len(objs)))
    store = pam.store
    t0 = time.perf_counter()
    for i, obj in enumerate(objs):
        handles[i] = store(obj)
    t_store = time.perf_counter() - t0
    rss_growth = rss_bytes() - rss0
    stats = pam.statistics()
    order = list(range(len(objs)))
    random.Random(7).shuffle(order)
    load = pam.load
    t0 = time.perf_counter()
    for i in order:
        load(handles[i])
    t_load = time.perf_counter() - t0
    for i in order[:200]:
        assert load(handles[i]) == objs[i]
    free = pam.free
    t0 = time.perf_counter()
    for i in order:
        free(handles[i])
    t_free = time.perf_counter() - t0
    assert pam.statistics().frames == 0
    arena.close()
    n = len(objs)
    return {
        "achieved": n_pages * PAGE_BYTES / max(1, stats.bytes_used),
        "frag": 1 - stats.bytes_stored / max(1, stats.bytes_used),
        "rss_eff": n_pages * PAGE_BYTES / max(1, rss_growth),
        "store_us": t_store / n * 1e6,
        "load_us": t_load / n * 1e6,
        "free_us": t_free / n * 1e6,
    }


def density_table(pages: list[bytes]) -> None:
    print(f"{'PAM':11s} {'codec':5s} {'ideal':>6s} {'achieved':>8s} {'loss':>6s} {'frag':>6s} "
          f"{'RSS eff':>7s} {'store':>6s} {'load':>6s} {'free':>6s}  (µs/op)")
    for cname, codec in CODECS.items():
        objs = compress_all(pages, codec)
        ideal = len(pages) * PAGE_BYTES / sum(map(len, objs))
        for pname, make in PAMS.items():
            r = run_one(make, objs, len(pages))
            print(f"{pname:11s} {cname:5s} {ideal:6.3f} {r['achieved']:8.3f} "
                  f"{1 - r['achieved'] / ideal:6.1%} {r['frag']:6.1%} {r['rss_eff']:7.3f} "
                  f"{r['store_us']:6.2f} {r['load_us']:6.2f} {r['free_us']:6.2f}")


def metadata_per_object(objs: list[bytes], counts: list[int]) -> None:
    """Python memory a PAM allocates per object held (tracemalloc)."""
    print("\nmetadata outside the arena, bytes per stored object (tracemalloc; zstd-1 pages):")
    for count in counts:
        row = []
        for pname, make in PAMS.items():
            gc.collect()
            arena = Arena(count * PAGE_BYTES)
            handles = array("Q", bytes(8 * count))
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            pam = make(arena)
            for i in range(count):
                handles[i] = pam.store(objs[i % len(objs)])
            used = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            in_arena = pam.statistics().frames * PAGE_BYTES - pam.statistics().bytes_stored
            row.append(f"{pname} {used / count:5.2f} (+{in_arena / count:6.1f} in frames)")
            del pam
            arena.close()
        print(f"  {count:>9,d} objects: " + "; ".join(row))


def madvise_cost(frames: int = 20_000) -> None:
    """µs per frame free with one madvise per frame vs the batched default."""
    print(f"\nfree_frame cost over {frames} touched frames:")
    for label, keep, batch in (("madvise per free", 0, 1), ("batched (default)", 256, 256)):
        arena = Arena(frames * PAGE_BYTES, keep_warm=keep, release_batch=batch)
        got = [arena.alloc_frame() for _ in range(frames)]
        for f in got:
            assert f is not None
            arena.view[f * PAGE_BYTES] = 1  # touch it, so madvise has work to do
        t0 = time.perf_counter()
        for f in got:
            arena.free_frame(f)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - t0
        print(f"  {label:18s} {elapsed / frames * 1e6:6.2f} µs/free, "
              f"{arena.madvise_calls} madvise calls")
        arena.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES)
    parser.add_argument("--meta", default="100000,1000000",
                        help="object counts for the metadata measurement ('' to skip)")
    args = parser.parse_args()
    pages = load_corpus(args.pages)
    print(f"corpus: {len(pages)} pages ({len(pages) * PAGE_BYTES / 2**20:.0f} MiB)\n")
    density_table(pages)
    if args.meta:
        metadata_per_object(compress_all(pages, CODECS["zstd"]),
                            [int(c) for c in args.meta.split(",")])
    madvise_cost()


if __name__ == "__main__":
    main()
