"""Daemon CPU per op on the hot path, without the network.

Feeds pre-encoded bursts of 64 PUT_PAGE or GET_PAGE frames straight into a
server ``Connection`` whose transport only counts bytes, so the figure is
the daemon's own cost per op (decode, dispatch, engine, codec, encode),
free of socket and client noise.  Prints µs per op (thread CPU time, the
fastest of ``--repeat`` fresh runs) next to the bare codec cost measured in
the same run, which is the ratio docs/design.md §6 states ("daemon CPU per op
within 2x the codec's own cost").  Pages: tmemd-bench's real-file corpus.

    .venv/bin/python bench/server_path.py --codec lz4 --pages 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from tmem.bench._corpus import real_corpus
from tmem.proto import Opcode, PoolSpec, Request, encode, encode_pool_flags
from tmemd.cli import make_engine
from tmemd.config import DaemonConfig
from tmemd.engine import CODECS
from tmemd.server import Connection, Server

BURST = 64


class CountingTransport(asyncio.Transport):
    """Accepts writes and counts them; nothing leaves the process."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.bytes += len(chunk)

    def write(self, data: Any) -> None:
        self.bytes += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0  # every write is taken at once

    def close(self) -> None:
        pass


def bursts(opcode: Opcode, pool_id: int, pages: list[bytes]) -> list[bytes]:
    out = []
    for start in range(0, len(pages), BURST):
        out.append(
            b"".join(
                encode(
                    Request(
                        opcode,
                        request_id=i,
                        pool_id=pool_id,
                        object_id=1,
                        index=i,
                        payload=pages[i] if opcode == Opcode.PUT_PAGE else b"",
                    )
                )
                for i in range(start, min(len(pages), start + BURST))
            )
        )
    return out


def run(codec: str, pages: list[bytes], persistent: bool) -> dict[str, float]:
    config = DaemonConfig(memory=2 << 30, codec=codec)
    server = Server.build(config, make_engine(config))
    conn = Connection(server)
    conn.connection_made(CountingTransport())
    conn.data_received(encode(Request(Opcode.HELLO, payload=b"\x81\xa6client\xa5bench")))
    flags = encode_pool_flags(PoolSpec(persistent=persistent))
    conn.data_received(encode(Request(Opcode.NEW_POOL, arg=flags)))
    pool_id = 0
    results = {}
    for name, opcode in (("put", Opcode.PUT_PAGE), ("get", Opcode.GET_PAGE)):
        frames = bursts(opcode, pool_id, pages)
        t0 = time.thread_time()
        for burst in frames:
            conn.data_received(burst)
        results[name] = (time.thread_time() - t0) / len(pages) * 1e6
    c = CODECS[codec]
    t0 = time.thread_time()
    blobs = [c.compress(p) for p in pages]
    results["codec_compress"] = (time.thread_time() - t0) / len(pages) * 1e6
    t0 = time.thread_time()
    for b in blobs:
        c.decompress(b, 4096)
    results["codec_decompress"] = (time.thread_time() - t0) / len(pages) * 1e6
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--codec", action="append", choices=sorted(CODECS))
    ap.add_argument("--ephemeral", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="fresh runs; the fastest is kept")
    args = ap.parse_args()
    pages = real_corpus(args.pages).pages
    print(
        f"{'codec':6} {'put µs':>8} {'get µs':>8} {'compress':>9} {'decompress':>10} "
        f"{'put/codec':>9} {'get/codec':>9}"
    )
    for codec in args.codec or ["lz4", "lzo", "zstd"]:
        runs = [run(codec, pages, not args.ephemeral) for _ in range(args.repeat)]
        r = {key: min(one[key] for one in runs) for key in runs[0]}
        print(
            f"{codec:6} {r['put']:8.2f} {r['get']:8.2f} {r['codec_compress']:9.2f} "
            f"{r['codec_decompress']:10.2f} {r['put'] / r['codec_compress']:9.2f} "
            f"{r['get'] / r['codec_decompress']:9.2f}"
        )


if __name__ == "__main__":
    main()
