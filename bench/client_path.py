"""Client CPU per op in the sans-IO core, without the network.

Builds pipelined PUT_PAGE / GET_PAGE requests in a ``ClientCore`` and feeds
it pre-encoded replies, so the figure is the client library's own cost per
op (argument checks, header packing, reply decoding and matching), free of
socket and daemon noise.  Compares one ``Call`` per page (``core.put`` /
``core.get``, what a loop of single calls costs) with one ``BatchCall`` per
chunk (``core.put_batch`` / ``core.get_batch``, what ``put_many`` and
``get_many`` use).  Thread CPU time, fastest of ``--repeat`` passes.

    .venv/bin/python bench/client_path.py --batch 64
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tmem.bench._corpus import real_corpus
from tmem.client._core import BatchCall, Call, ClientCore
from tmem.client._spec import PoolInfo, check_handle, check_page
from tmem.proto import Opcode, Response, Status, encode

INFO = PoolInfo(0, persistent=True)


def _replies(opcode: Opcode, first: int, pages: list[bytes] | None, count: int) -> bytes:
    return b"".join(
        encode(Response(opcode, Status.OK, first + k, 0, pages[k] if pages else b""))
        for k in range(count)
    )


def _puts(core: ClientCore, start: int, chunk: list[bytes], batched: bool, reply: bytes) -> None:
    """PUT_PAGE of ``chunk`` under object 1 from index ``start``, answered by ``reply``."""
    items = [(*check_handle(1, start + k), check_page(INFO, p)) for k, p in enumerate(chunk)]
    if batched:
        calls: list[Call[Any]] | list[BatchCall[Any]] = [core.put_batch(INFO, items)]
    else:
        calls = [core.put(INFO, *item) for item in items]
    _finish(core, calls, reply)


def _gets(core: ClientCore, start: int, chunk: list[bytes], batched: bool, reply: bytes) -> None:
    """GET_PAGE of the pages ``_puts`` put, answered by ``reply``."""
    items = [check_handle(1, start + k) for k in range(len(chunk))]
    if batched:
        calls: list[Call[Any]] | list[BatchCall[Any]] = [core.get_batch(INFO, items, False)]
    else:
        calls = [core.get(INFO, *item, False) for item in items]
    _finish(core, calls, reply)


def _finish(core: ClientCore, calls: list[Call[Any]] | list[BatchCall[Any]], reply: bytes) -> None:
    core.data_to_send()
    core.receive_data(reply)
    for call in calls:
        call.result()


def measure(pages: list[bytes], batch: int, batched: bool, repeat: int) -> tuple[float, float]:
    """Fastest µs per op over ``repeat`` passes: (put, get)."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        core = ClientCore("bench")
        spent = [0.0, 0.0]
        for start in range(0, len(pages) - batch + 1, batch):
            chunk = pages[start : start + batch]
            for slot, (opcode, run) in enumerate(
                ((Opcode.PUT_PAGE, _puts), (Opcode.GET_PAGE, _gets))
            ):
                reply = _replies(opcode, core._next_id, chunk if slot else None, batch)
                t0 = time.thread_time()
                run(core, start, chunk, batched, reply)
                spent[slot] += time.thread_time() - t0
        ops = (len(pages) // batch) * batch
        best = [min(b, s / ops * 1e6) for b, s in zip(best, spent, strict=True)]
    return best[0], best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    pages = real_corpus(args.pages).pages
    print(f"{'path':22} {'put µs/op':>10} {'get µs/op':>10}")
    for name, batched in (("one Call per page", False), ("one BatchCall", True)):
        put, get = measure(pages, args.batch, batched, args.repeat)
        print(f"{name:22} {put:10.2f} {get:10.2f}")


if __name__ == "__main__":
    main()
