"""Daemon CPU per op on the hot path, without the network.

Feeds pre-encoded bursts of 64 PUT_PAGE or GET_PAGE frames straight into a
server ``Connection`` whose transport only counts bytes, so the figure is
the daemon's own cost per op (decode, dispatch, engine, codec, encode),
free of socket and client noise.  Prints µs per op (thread CPU time, the
fastest of ``--repeat`` fresh runs) next to the bare codec cost measured in
the same run, which is the ratio docs/design.md §6 states ("daemon CPU per op
within 2x the codec's own cost").  Pages: tmemd-bench's real-file corpus.

It measures the build this process runs (docs/build.md: compiled, or
interpreted under ``TMEMD_PURE_PYTHON=1``).  ``--builds compiled,interpreted``
runs this script again once per build, each in a subprocess whose
environment picks the build (``_builds.daemon_env``) and which reports the
build it really ran, and prints one table: both builds' µs per op, the
codec's own cost, and the daemon's own part as "codec + X µs", the form of
the compiled hot path's goal (docs/design.md §6).

    .venv/bin/python bench/server_path.py --codec lz4 --pages 20000
    .venv/bin/python bench/server_path.py --codec lz4 --builds compiled,interpreted
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from tmem.bench._builds import BuildMismatch, daemon_env, parse_builds
from tmem.bench._corpus import real_corpus
from tmem.proto import Opcode, PoolSpec, Request, encode, encode_pool_flags
from tmem.proto._build import build_info
from tmemd.cli import make_engine
from tmemd.config import DaemonConfig
from tmemd.engine import CODECS
from tmemd.server import Connection, Server

BURST = 64
#: Bound on one build's subprocess (``--builds``): a hang must end the run,
#: and the default run (20,000 pages, 3 codecs, 3 repeats) fits many times.
BUILD_RUN_TIMEOUT_S = 1800.0


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


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Each codec's fastest figures over ``args.repeat`` fresh runs."""
    pages = real_corpus(args.pages).pages
    out = {}
    for codec in args.codec or ["lz4", "lzo", "zstd"]:
        runs = [run(codec, pages, not args.ephemeral) for _ in range(args.repeat)]
        out[codec] = {key: min(one[key] for one in runs) for key in runs[0]}
    return out


def print_table(figures: dict[str, dict[str, float]]) -> None:
    print(
        f"{'codec':6} {'put µs':>8} {'get µs':>8} {'compress':>9} {'decompress':>10} "
        f"{'put/codec':>9} {'get/codec':>9}"
    )
    for codec, r in figures.items():
        print(
            f"{codec:6} {r['put']:8.2f} {r['get']:8.2f} {r['codec_compress']:9.2f} "
            f"{r['codec_decompress']:10.2f} {r['put'] / r['codec_compress']:9.2f} "
            f"{r['get'] / r['codec_decompress']:9.2f}"
        )


def measure_build(build: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """This script's figures in a subprocess running ``build``; raises
    ``BuildMismatch`` when the subprocess ran another build, and exits with
    its error when it failed."""
    argv = [sys.executable, "-m", "tmem.bench.server_path", "--json",
            "--pages", str(args.pages), "--repeat", str(args.repeat)]  # fmt: skip
    argv += [f"--codec={codec}" for codec in args.codec or ()]
    argv += ["--ephemeral"] if args.ephemeral else []
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=BUILD_RUN_TIMEOUT_S, env=daemon_env(build)
    )
    if done.returncode != 0:
        sys.exit(f"server_path: the {build} run failed ({done.returncode}):\n{done.stderr}")
    report = json.loads(done.stdout)
    if report["build"] != build:
        raise BuildMismatch(f"asked for the {build} build, the subprocess ran {report['build']!r}")
    figures: dict[str, dict[str, float]] = report["figures"]
    return figures


def print_builds(by_build: dict[str, dict[str, dict[str, float]]]) -> None:
    print(
        f"{'build':11} {'codec':6} {'put µs':>8} {'get µs':>8} {'compress':>9} {'decompress':>10} "
        f"{'put = codec +':>14} {'get = codec +':>14}"
    )
    for build, figures in by_build.items():
        for codec, r in figures.items():
            put_x = r["put"] - r["codec_compress"]
            get_x = r["get"] - r["codec_decompress"]
            print(
                f"{build:11} {codec:6} {r['put']:8.2f} {r['get']:8.2f} {r['codec_compress']:9.2f} "
                f"{r['codec_decompress']:10.2f} {put_x:11.2f} µs {get_x:11.2f} µs"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--codec", action="append", choices=sorted(CODECS))
    ap.add_argument("--ephemeral", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="fresh runs; the fastest is kept")
    ap.add_argument(
        "--builds",
        type=parse_builds,
        help="compiled,interpreted: run once per build in a subprocess, one table "
        "(default: the build this process runs)",
    )
    ap.add_argument(
        "--json", action="store_true", help="print the build run and the figures as JSON"
    )
    args = ap.parse_args()
    if args.builds:
        try:
            print_builds({build: measure_build(build, args) for build in args.builds})
        except BuildMismatch as exc:
            print(f"server_path: {exc}", file=sys.stderr)
            return 2
        return 0
    figures = measure(args)
    if args.json:
        print(json.dumps({"build": build_info().kind, "figures": figures}))
    else:
        print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
