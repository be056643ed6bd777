"""Running the matrix: one fresh server per case, the load, the server's figures.

For each case the runner starts the system's server with enough memory for
what the case stores (``case_memory``), runs the load (``_load``), reads the
server's CPU seconds over the timed phase and its RSS after it, stops the
server and keeps a ``CaseResult``.  A case that fails (a server that does
not start, a client error) is kept with its error, and the run goes on: one
broken peer must not cost the whole comparison.

Peers that are not installed (no binary, or no Python client) are named
once on stderr and their cases dropped.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._config import PAGE_BYTES, PAGES_PER_OBJECT, BenchConfig, Case
from ._corpus import precompress
from ._load import FLUSH_STORE_FACTOR, LoadPlan, run_load
from ._peers import Server, find_peer, start_server
from ._proc import cpu_seconds, rss_bytes, split_cpus
from ._progress import Progress
from ._stats import Summary, aggregate

__all__ = ["MEMORY_SLACK", "CaseResult", "available_systems", "case_memory", "run_matrix"]

#: Memory given per stored page, as a multiple of the page: Redis keeps a
#: 4 KiB value in jemalloc's 5 KiB size class plus its dict entry, memcached
#: in a 4.5 KiB slab chunk; 1.4x holds either without eviction.
MEMORY_SLACK = 1.4
#: The Python client each peer needs (the bench extra installs them).
_CLIENT_MODULES = {"memcached": "pymemcache.client.base", "redis": "redis"}


@dataclass(frozen=True)
class CaseResult:
    """One case's outcome: the load's summary and the server's figures."""

    case: Case
    summary: Summary | None
    server_cpu_s: float
    rss_bytes: int
    memory_bytes: int
    error: str | None = None
    #: pages/s of every repetition (``--repeat``); this result is the median one.
    runs_pages_per_s: tuple[float, ...] = ()


def available_systems(systems: Sequence[str], progress: Progress) -> list[str]:
    """``systems`` less the peers this machine cannot run (each one said once)."""
    usable = []
    for system in systems:
        if system in _CLIENT_MODULES:
            if find_peer(system) is None:
                progress.say(f"{system}: server not installed, skipped")
                continue
            try:
                # Imported here, before any fork: every load process shares it.
                importlib.import_module(_CLIENT_MODULES[system])
            except ImportError:
                progress.say(
                    f"{system}: its Python client is missing (pip install 'tmemd[bench]'), skipped"
                )
                continue
        usable.append(system)
    return usable


def case_memory(config: BenchConfig, case: Case) -> int:
    """Memory for the server of ``case``: the configured amount, or more if
    the preloaded set would not fit in it."""
    pages = case.stored * (FLUSH_STORE_FACTOR if case.workload == "flush_object" else 1)
    return max(config.memory_bytes, int(pages * PAGE_BYTES * MEMORY_SLACK))


def _stored_per_thread(case: Case) -> int:
    per = max(1, case.stored // case.connections)
    if case.workload == "flush_object":
        return max(per, PAGES_PER_OBJECT)
    return per


def _placements(
    config: BenchConfig, case: Case
) -> tuple[list[frozenset[int] | None], frozenset[int] | None]:
    """CPUs of each server and of the clients.  One server: ``split_cpus``.
    Several (``--servers``): daemon i pinned to CPU i (modulo the CPUs), the
    clients on the CPUs no daemon has, or anywhere when every CPU has one."""
    count = max(case.servers, 1)
    split = split_cpus() if config.placement == "split" else None
    if split is None:
        return [None] * count, None
    if count == 1:
        return [split[0]], split[1]
    cpus = sorted(split[0] | split[1])
    servers = [frozenset({cpus[i % len(cpus)]}) for i in range(count)]
    rest = frozenset(cpus[count:])
    return list(servers), rest or None


def _run_case(
    config: BenchConfig,
    case: Case,
    payloads: Sequence[bytes],
    workdir: Path,
    progress: Progress,
) -> CaseResult:
    memory = case_memory(config, case)
    codec = case.codec if case.codec in config.codecs else "lz4"
    server_cpus, client_cpus = _placements(config, case)
    # The --memory split rule: N daemons share the memory one would get
    # (each a 1/N share, since each holds about 1/N of the pages; replicas
    # multiply what each holds).
    share = memory * case.replicas // len(server_cpus)
    servers: list[Server] = []
    try:
        for cpus in server_cpus:
            servers.append(start_server(case.system, workdir, share, codec, cpus,
                                        busy_poll_us=case.busy_poll_us))  # fmt: skip
    except (OSError, RuntimeError) as exc:
        for server in servers:
            server.stop()
        return CaseResult(case, None, 0.0, 0, memory, f"start: {exc}")
    first = servers[0]
    try:
        plan = LoadPlan(
            case,
            first.host,
            first.port,
            _stored_per_thread(case),
            config.duration_s,
            config.ops_per_connection,
            config.seed,
            client_cpus,
            tuple(f"{s.host}:{s.port}" for s in servers),
        )
        results, cpu = run_load(
            plan,
            payloads,
            config.processes,
            lambda: sum(cpu_seconds(s.pid) for s in servers),
            progress.tick,
        )
        rss = sum(rss_bytes(s.pid) for s in servers)
    except OSError as exc:  # a server died under the load: /proc has no figures
        return CaseResult(case, None, 0.0, 0, memory, f"{exc}: {first.log_tail(500)}")
    finally:
        codes = [(s, s.stop()) for s in servers]
    summary = aggregate(results)
    error = "; ".join(summary.errors[:3]) or None
    for server, code in codes:
        if code not in (0, -15) and error is None:
            error = f"server exited with {code}: {server.log_tail(500)}"
    return CaseResult(case, summary, cpu, rss, memory, error)


def _note(result: CaseResult) -> str:
    if result.summary is None or result.error:
        return f"FAILED {result.error}"
    s = result.summary
    return f"{s.pages_per_s:,.0f} pages/s, p99 {s.latency.p99_us:,.0f} µs"


def _median_run(
    config: BenchConfig,
    case: Case,
    payloads: Sequence[bytes],
    workdir: Path,
    progress: Progress,
) -> CaseResult:
    """Run ``case`` ``config.repeat`` times; keep the run of median pages/s (a
    failed run counts as the lowest), so one burst of outside load on a
    shared machine moves no figure."""
    runs = [_run_case(config, case, payloads, workdir, progress) for _ in range(config.repeat)]
    speeds = [_speed(r) for r in runs]
    ranked = sorted(range(len(runs)), key=speeds.__getitem__)
    median = runs[ranked[(len(ranked) - 1) // 2]]
    return dataclasses.replace(median, runs_pages_per_s=tuple(speeds))


def _speed(result: CaseResult) -> float:
    if result.summary is None or result.error:
        return 0.0
    return result.summary.pages_per_s


def run_matrix(
    config: BenchConfig,
    cases: Sequence[Case],
    pages: Sequence[bytes],
    workdir: Path,
    progress: Progress,
) -> list[CaseResult]:
    """Run ``cases`` in order against fresh servers; failed cases are kept."""
    packed: list[bytes] | None = None
    out = []
    for case in cases:
        progress.start(case.describe())
        payloads: Sequence[bytes] = pages
        if case.pool == "precompressed":
            packed = packed if packed is not None else precompress(pages)
            payloads = packed
        result = _median_run(config, case, payloads, workdir, progress)
        if result.error:
            progress.say(f"{case.describe()}: {result.error}")
        progress.finish(_note(result))
        out.append(result)
    return out
