"""``tmemd-bench``: the command line, and a run from start to files.

A run: parse flags into a ``BenchConfig`` (``--quick`` first picks the small
matrix, explicit flags then override it), drop peers this machine lacks,
build the page corpus, time the codecs on it, run every case against a
fresh server, and write ``results.json`` and the PNG charts into ``--out``;
the table and the targets go to stdout, the progress bar to stderr.

Exit status: 0 when every case ran and every get returned the right bytes;
1 when a get returned wrong bytes or a tmemd case failed (a failed peer case
is reported but does not fail the run); 2 for bad flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ._codec_cost import CodecCost, measure_codecs
from ._config import PAGE_BYTES, PLACEMENTS, BenchConfig, build_cases, quick_config
from ._corpus import Corpus, real_corpus, synthetic_corpus
from ._peers import peer_version
from ._proc import split_cpus
from ._progress import Progress
from ._report import case_record, compare, format_table, format_targets, targets
from ._runner import available_systems, run_matrix

__all__ = ["DEFAULT_OUT", "build_parser", "config_from_args", "main", "run"]

#: Where results go unless ``--out`` says otherwise.
DEFAULT_OUT = "bench-results"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
#: How a run measures, stated in its results so that nobody has to guess.
METHOD_NOTES = (
    "one fresh server per case, on 127.0.0.1; load from forked client processes, one thread "
    "per connection",
    "placement split: the server is pinned to the first half of the CPUs, the clients to the "
    "rest (a same-vCPU round trip costs ~9 µs here, a cross-vCPU one ~70 µs)",
    "latency is per call: one request at depth 1, a whole batch of `depth` requests otherwise",
    "tmemd gets are non-exclusive (exclusive=False): a private ephemeral pool would otherwise "
    "free the page on get; the peers' gets keep values too",
    "mb_per_s counts 4096 bytes per page, also for precompressed pools (whose payload is shorter)",
    "server CPU is utime+stime from /proc/PID/stat over the timed phase (10 ms ticks); RSS is "
    "VmRSS after it",
    "every get is checked against the page put under its key; `wrong` must be 0",
    "--servers N: N tmemd daemons behind one several-server client (rendezvous hashing), "
    "daemon i pinned to CPU i, the clients on the CPUs left (anywhere when none is), --memory "
    "split evenly; objects of 8 pages so that a batch spreads (label `xN`, `rK` for replicas)",
)


def _size(text: str) -> int:
    match = _SIZE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4GiB, 512MiB)")
    shift = " KMGT".index((match.group(2) or " ").upper()) * 10
    return int(float(match.group(1)) * (1 << shift))


def _ints(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(float(part)) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"need a whole number >= 1, not {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tmemd-bench",
        description="Compare tmemd with memcached and Redis on real 4 KiB pages.",
    )
    p.add_argument(
        "--quick", action="store_true", help="a small matrix that runs in under a minute"
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    p.add_argument("--systems", type=_names, help="tmemd,memcached,redis")
    p.add_argument("--workloads", type=_names, help="put,get_hit,get_miss,mixed,flush_object")
    p.add_argument("--pools", type=_names, help="ephemeral,persistent,precompressed")
    p.add_argument("--codecs", type=_names, help="lzo,lz4,zstd")
    p.add_argument("--depths", type=_ints, help="in-flight requests per connection, e.g. 1,16,64")
    p.add_argument("--connections", type=_ints, help="connections per case, e.g. 1,4,16")
    p.add_argument("--stored", type=int, help="pages stored before gets (all connections)")
    p.add_argument("--scale", type=_ints, help="extra get_hit store sizes, e.g. 1000,1000000")
    p.add_argument("--duration", type=float, help="seconds per timed phase")
    p.add_argument("--ops", type=int, help="request limit per connection per case")
    p.add_argument("--processes", type=int, help="client processes (default: CPU count)")
    p.add_argument("--corpus-pages", type=int, help="distinct pages in the corpus")
    p.add_argument("--synthetic", action="store_true", default=None, help="generated pages")
    p.add_argument("--memory", type=_size, help="memory per server, e.g. 4GiB")
    p.add_argument(
        "--repeat", type=_positive, help="runs per case; the median one is kept (default 1)"
    )
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--placement",
        choices=PLACEMENTS,
        help="split (default): server and clients on separate CPUs; shared: the OS decides",
    )
    p.add_argument(
        "--busy-poll",
        type=_ints,
        help="tmemd --busy-poll values in µs, each its own tmemd variant, e.g. 0,200 (default 0)",
    )
    p.add_argument(
        "--servers",
        type=_ints,
        help="tmemd daemons behind one client, each count its own case, e.g. 1,2 (each daemon "
        "pinned to its own CPU, --memory split evenly between them)",
    )
    p.add_argument(
        "--replicas", type=_positive, help="new_pool(replicas=) of persistent pools with --servers"
    )
    p.add_argument("--no-charts", dest="charts", action="store_false", default=None)
    return p


_FLAG_FIELDS = {
    "systems": "systems", "workloads": "workloads", "pools": "pools", "codecs": "codecs",
    "depths": "depths", "connections": "connections", "stored": "stored", "scale": "scale",
    "duration": "duration_s", "ops": "ops_per_connection", "processes": "processes",
    "corpus_pages": "corpus_pages", "synthetic": "synthetic", "memory": "memory_bytes",
    "seed": "seed", "charts": "charts", "placement": "placement", "repeat": "repeat",
    "busy_poll": "busy_poll", "servers": "servers", "replicas": "replicas",
}  # fmt: skip


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """``--quick`` (or the full defaults), then every flag given."""
    config = quick_config() if args.quick else BenchConfig()
    changes = {f: getattr(args, flag) for flag, f in _FLAG_FIELDS.items()}
    return config.replace(**{k: v for k, v in changes.items() if v is not None})


def _machine() -> dict[str, Any]:
    model, mem = "", 0
    with open("/proc/cpuinfo") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    with open("/proc/meminfo") as fh:
        mem = next((int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("MemTotal")), 0)
    return {"hostname": platform.node(), "cpu_model": model, "cpus": os.cpu_count(),
            "mem_total_bytes": mem, "kernel": platform.release()}  # fmt: skip


def _loadavg() -> list[float]:
    """1, 5 and 15 minute load averages: a busy machine skews every figure."""
    with open("/proc/loadavg") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def _versions() -> dict[str, Any]:
    from tmemd import __version__

    out: dict[str, Any] = {"tmemd": __version__, "python": platform.python_version()}
    out["memcached"] = peer_version("memcached")
    out["redis-server"] = peer_version("redis")
    for dist in ("pymemcache", "redis", "hiredis", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _placement(config: BenchConfig) -> dict[str, list[int] | None]:
    split = split_cpus() if config.placement == "split" else None
    if split is None:
        return {"server": None, "clients": None}
    return {"server": sorted(split[0]), "clients": sorted(split[1])}


def _corpus(config: BenchConfig, progress: Progress) -> Corpus:
    t0 = time.monotonic()
    make = synthetic_corpus if config.synthetic else real_corpus
    corpus = make(config.corpus_pages, config.seed)
    kinds = ", ".join(f"{k} {n}" for k, n in corpus.kinds.items())
    progress.say(f"corpus: {len(corpus)} pages ({kinds}) in {time.monotonic() - t0:.1f}s")
    return corpus


def _costs_json(costs: dict[str, CodecCost]) -> dict[str, Any]:
    return {name: {k: round(v, 3) for k, v in dataclasses.asdict(c).items()}
            for name, c in costs.items()}  # fmt: skip


def run(config: BenchConfig, out_dir: Path, command: str) -> dict[str, Any]:
    """Run the matrix of ``config``; write results.json and charts; return the results."""
    started, load_before = time.time(), _loadavg()
    cases = build_cases(config)
    probe = Progress(len(cases))
    systems = available_systems(config.systems, probe)
    cases = [case for case in cases if case.system in systems]
    progress = Progress(len(cases))
    corpus = _corpus(config, progress)
    costs = measure_codecs(corpus.pages, config.codecs)
    with tempfile.TemporaryDirectory(prefix="tmemd-bench-") as workdir:
        try:
            results = run_matrix(config, cases, corpus.pages, Path(workdir), progress)
        finally:
            progress.close()
    records = [case_record(r) for r in results]
    compare(records)
    report = {
        "meta": {
            "command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                                         time.localtime(started)),
            "duration_s": round(time.time() - started, 1), "machine": _machine(),
            "loadavg_before": load_before, "loadavg_after": _loadavg(),
            "versions": _versions(), "config": dataclasses.asdict(config),
            "systems": systems, "page_bytes": PAGE_BYTES, "cpus": _placement(config),
            "corpus": {"pages": len(corpus), "synthetic": corpus.synthetic, "kinds": corpus.kinds},
            "codec_cost_us": _costs_json(costs), "method": list(METHOD_NOTES),
        },
        "results": records,
        "targets": targets(records, costs),
    }  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.charts:
        from ._charts import write_charts

        report["charts"] = [p.name for p in write_charts(records, out_dir)]
    (out_dir / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tmemd-bench`` and ``python -m tmem.bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    command = " ".join(["tmemd-bench", *argv])
    report = run(config, Path(args.out), command)
    print(format_table(report["results"]))
    if report["targets"]:
        print("\ntargets:")
        print(format_targets(report["targets"]))
    print(f"\nresults: {Path(args.out) / 'results.json'}", *report.get("charts", []), sep="\n  ")
    bad = [
        r for r in report["results"] if r.get("wrong") or (r["system"] == "tmemd" and r["error"])
    ]
    return 1 if bad else 0
