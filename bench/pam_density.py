"""Density and speed of the arena PAMs on real pages (a script; prints figures).

For each codec (LZO1X-1, lz4, zstd-1) the corpus (``bench/_corpus.py``) is
compressed once: same-filled pages are skipped (they take no frame) and a
page compressing above 7/8 of 4 KiB is kept raw.  Then each PAM stores every
compressed page into a fresh arena, and we print per PAM and codec:

* ideal: original bytes / compressed bytes (a packer that wastes nothing);
* achieved: original bytes / (frames held * 4 KiB);
* loss: 1 - achieved / ideal; frag: 1 - stored bytes / held bytes;
* RSS eff.: original bytes / growth of this process's RSS while storing
  (arena frames touched plus every byte of PAM metadata);
* µs per store into a fresh arena ("cold": each new frame faults in), and
  per store, load and free once the frames are resident (loads and frees
  in a seeded random order).

Then fragmentation under churn (LZO1X-1 pages; A: 30 % replaced five times,
B: small objects mostly freed, then large ones stored; zsmalloc before and
after ``compact()``), metadata bytes per stored object
(tracemalloc: Python memory the PAM allocated, over the objects it holds) at
10^5 and 10^6 objects, and the cost of one ``madvise`` per freed frame
against the arena's batched release.

Usage: ``python bench/pam_density.py [--pages N] [--meta 100000,1000000] [--equal-shares]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
import tracemalloc
from array import array
from collections.abc import Callable

import lz4.block
import lzo
import zstandard

from tmem.bench._config import PAGE_BYTES
from tmem.bench._corpus import EQUAL_SHARES, KIND_SHARES, real_corpus
from tmemd.engine.pam import Arena, ArenaPam, XvmallocPam, ZbudPam, ZsmallocPam

#: Default corpus size: 50_000 pages is ~195 MiB, enough that the per-class
#: tails of an allocator do not dominate, small enough to build in seconds.
DEFAULT_PAGES = 50_000
#: Pages compressing above this are stored raw (the engine's rule).
RAW_ABOVE_BYTES = PAGE_BYTES * 7 // 8

_zstd = zstandard.ZstdCompressor(level=1)
CODECS: dict[str, Callable[[bytes], bytes]] = {
    "lzo": lambda p: lzo.compress(p, 1, False),
    "lz4": lambda p: lz4.block.compress(p, store_size=False),
    "zstd": _zstd.compress,
}
PAMS: dict[str, Callable[[Arena], ArenaPam]] = {
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


def _timed_store(pam: ArenaPam, objs: list[bytes], handles: array[int]) -> float:
    store = pam.store
    t0 = time.perf_counter()
    for i, obj in enumerate(objs):
        handles[i] = store(obj)
    return time.perf_counter() - t0


def run_one(make: Callable[[Arena], ArenaPam], objs: list[bytes], n_pages: int) -> dict[str, float]:
    """Store ``objs`` into a fresh arena (cold), free them, then time a warm round."""
    gc.collect()
    rss0 = rss_bytes()
    frames = len(objs) + 256
    # Keep every freed frame resident so the second round measures the PAM, not page faults.
    arena = Arena(frames * PAGE_BYTES, keep_warm=frames)
    pam = make(arena)
    handles = array("Q", bytes(8 * len(objs)))
    t_cold = _timed_store(pam, objs, handles)
    rss_growth = rss_bytes() - rss0
    stats = pam.statistics()
    for i in range(0, len(objs), 97):
        assert pam.load(handles[i]) == objs[i]
    for handle in handles:
        pam.free(handle)
    t_store = _timed_store(pam, objs, handles)
    order = list(range(len(objs)))
    random.Random(7).shuffle(order)
    load, free = pam.load, pam.free
    t0 = time.perf_counter()
    for i in order:
        load(handles[i])
    t_load = time.perf_counter() - t0
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
        "cold_us": t_cold / n * 1e6,
        "store_us": t_store / n * 1e6,
        "load_us": t_load / n * 1e6,
        "free_us": t_free / n * 1e6,
    }


def density_table(pages: list[bytes]) -> None:
    print(
        f"{'PAM':11s} {'codec':5s} {'ideal':>6s} {'achieved':>8s} {'loss':>6s} {'frag':>6s} "
        f"{'RSS eff':>7s} {'cold':>6s} {'store':>6s} {'load':>6s} {'free':>6s}  (µs/op)"
    )
    for cname, codec in CODECS.items():
        objs = compress_all(pages, codec)
        ideal = len(pages) * PAGE_BYTES / sum(map(len, objs))
        for pname, make in PAMS.items():
            r = run_one(make, objs, len(pages))
            print(
                f"{pname:11s} {cname:5s} {ideal:6.3f} {r['achieved']:8.3f} "
                f"{1 - r['achieved'] / ideal:6.1%} {r['frag']:6.1%} {r['rss_eff']:7.3f} "
                f"{r['cold_us']:6.2f} {r['store_us']:6.2f} {r['load_us']:6.2f} "
                f"{r['free_us']:6.2f}"
            )


def _compact_note(pam: ArenaPam) -> str:
    if not isinstance(pam, ZsmallocPam):
        return ""
    held = pam.frames_held
    t0 = time.perf_counter()
    freed = pam.compact()
    elapsed = time.perf_counter() - t0
    return (
        f", after compact() {pam.fragmentation():6.1%} "
        f"({freed} of {held} frames freed in {elapsed * 1e3:.0f} ms)"
    )


def churn(objs: list[bytes], rounds: int = 5, share: float = 0.3) -> None:
    """Fragmentation under churn: steady replacement, then a shift to larger objects."""
    small = [o for o in objs if len(o) < 1200]
    large = [o for o in objs if len(o) > 2500]
    print(
        f"\nchurn A: {rounds} rounds of replacing {share:.0%} of {len(objs)} objects;"
        f"\nchurn B: {2 * len(small)} objects under 1_200 bytes, 70 % of them freed, then"
        f" {len(large)} objects over 2_500 bytes stored"
    )
    for pname, make in PAMS.items():
        rng = random.Random(3)
        arena = Arena((2 * len(objs) + 256) * PAGE_BYTES)
        pam = make(arena)
        live = [pam.store(obj) for obj in objs]
        for _ in range(rounds):
            rng.shuffle(live)
            cut = int(len(live) * share)
            for handle in live[:cut]:
                pam.free(handle)
            live[:cut] = [pam.store(objs[rng.randrange(len(objs))]) for _ in range(cut)]
        line = f"  {pname:11s} A: fragmentation {pam.fragmentation():6.1%}{_compact_note(pam)}"
        arena.close()
        arena = Arena((2 * len(objs) + 256) * PAGE_BYTES)
        pam = make(arena)
        live = [pam.store(obj) for obj in small * 2]
        rng.shuffle(live)
        for handle in live[: len(live) * 7 // 10]:
            pam.free(handle)
        for obj in large:
            pam.store(obj)
        line += f"\n  {'':11s} B: fragmentation {pam.fragmentation():6.1%}{_compact_note(pam)}"
        print(line)
        arena.close()


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
        print(
            f"  {label:18s} {elapsed / frames * 1e6:6.2f} µs/free, "
            f"{arena.madvise_calls} madvise calls"
        )
        arena.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES)
    parser.add_argument(
        "--meta",
        default="100000,1000000",
        help="object counts for the metadata measurement ('' to skip)",
    )
    parser.add_argument(
        "--equal-shares",
        action="store_true",
        help="the six kinds of files weighted equally (docs/memory.md's mix)",
    )
    args = parser.parse_args()
    pages = real_corpus(args.pages, shares=EQUAL_SHARES if args.equal_shares else KIND_SHARES).pages
    print(f"corpus: {len(pages)} pages ({len(pages) * PAGE_BYTES / 2**20:.0f} MiB)\n")
    density_table(pages)
    churn(compress_all(pages[:20_000], CODECS["lzo"]))
    if args.meta:
        metadata_per_object(
            compress_all(pages, CODECS["zstd"]), [int(c) for c in args.meta.split(",")]
        )
    madvise_cost()


if __name__ == "__main__":
    main()
