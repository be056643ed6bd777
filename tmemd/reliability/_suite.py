"""The suite: seven measurements against real daemons, one table of figures.

Every row is a figure measured in this run, next to what it must be; a row
whose figure breaks its bound marks the suite failed.  The parts, each on a
fresh daemon on 127.0.0.1 in a temporary directory:

1. **Load held**: ``clients`` workers of random operations on persistent
   and ephemeral pools, every get checked against a model (``_load``).
2. **Faults survived**: the same load through ``FaultProxy``, which drops,
   cuts mid-frame and delays connections.
3. **SIGTERM under load**: the load against a daemon with ``--state-dir``
   and ``--save-ephemeral`` (so that both pools of each worker come back);
   halfway it gets SIGTERM, saves, and is started again on the same port;
   the workers reconnect and in the end read every persistent page back.
4. **Slow reader**: a peer that pipelines GETs and reads nothing, while
   another client is served (``_slow``).
5. **Bad input**: ``fuzz_frames`` fuzzed frames against a live daemon
   (``_fuzz``).
6. **Overload**: 16x memory oversubscription (``_overload``).
7. **kill -9 with replicas**: three daemons, a persistent pool with
   ``replicas=2``, one daemon killed, restarted empty and repaired, then
   another killed (``_replicas``).

``SHORT`` runs in about a minute and a half (the test suite runs it);
``FULL`` in about eight (``make reliability``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._fuzz import fuzz
from ._harness import DaemonProcess, FaultProxy, Faults
from ._load import LoadTotals, Worker, run_workers
from ._overload import OVERHEAD_BYTES, oversubscribe
from ._replicas import kill_with_replicas
from ._slow import RSS_GROWTH_BOUND_BYTES, slow_reader

__all__ = ["FULL", "SHORT", "Row", "SuiteConfig", "run_suite"]

MIB = 1 << 20


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    clients: int
    load_s: float
    faults_s: float
    sigterm_s: float
    fuzz_frames: int
    overload_memory_bytes: int
    overload_factor: int = 16
    replica_pages: int = 2048
    seed: int = 1


FULL = SuiteConfig("full", 8, 90.0, 90.0, 60.0, 1_000_000, 64 * MIB, replica_pages=16_384)
SHORT = SuiteConfig("short", 4, 10.0, 10.0, 10.0, 60_000, 16 * MIB)


@dataclass(frozen=True)
class Row:
    part: str
    figure: str
    value: str
    bound: str
    ok: bool


def _load_rows(part: str, totals: LoadTotals) -> list[Row]:
    return [
        Row(part, "operations checked", str(totals.ops), "> 0", totals.ops > 0),
        Row(part, "wrong bytes read", str(totals.wrong_reads), "0", totals.wrong_reads == 0),
        Row(part, "persistent pages lost", str(totals.lost_pages), "0", totals.lost_pages == 0),
        Row(
            part,
            "persistent pages read back at the end",
            str(totals.pages_checked),
            "> 0",
            totals.pages_checked > 0,
        ),
        Row(part, "unexpected errors", str(totals.other_errors), "0", totals.other_errors == 0),
    ]


def _workers(address: str, cfg: SuiteConfig, seconds: float, salt: int) -> list[Worker]:
    deadline = time.monotonic() + seconds
    return [Worker(address, n, cfg.seed * 1000 + salt + n, deadline) for n in range(cfg.clients)]


def _daemon(workdir: Path, part: str, *args: str) -> DaemonProcess:
    folder = workdir / part
    folder.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(folder, *args)
    daemon.start()
    return daemon


def _finish(part: str, daemon: DaemonProcess) -> list[Row]:
    status = daemon.stop()
    crashes = daemon.tracebacks()
    return [
        Row(part, "daemon tracebacks", str(crashes), "0", crashes == 0),
        Row(part, "daemon exit status", str(status), "0", status == 0),
    ]


def load_held(cfg: SuiteConfig, workdir: Path) -> list[Row]:
    daemon = _daemon(workdir, "load", "--memory", "64MiB")
    totals = run_workers(_workers(daemon.address, cfg, cfg.load_s, 1))
    return _load_rows("load held", totals) + _finish("load held", daemon)


def faults_survived(cfg: SuiteConfig, workdir: Path) -> list[Row]:
    daemon = _daemon(workdir, "faults", "--memory", "64MiB")
    faults = Faults()
    proxy = FaultProxy(daemon.port, faults, cfg.seed, time.monotonic() + cfg.faults_s + 120)
    try:
        totals = run_workers(_workers(f"127.0.0.1:{proxy.port}", cfg, cfg.faults_s, 2))
    finally:
        proxy.close()
    injected = faults.drops + faults.cuts + faults.delays
    part = "faults survived"
    rows = [
        Row(part, "connections dropped / cut mid-frame / delayed",
            f"{faults.drops} / {faults.cuts} / {faults.delays}", "> 0", injected > 0),
        Row(part, "connection errors the clients saw", str(totals.connection_errors), "> 0",
            totals.connection_errors > 0),
    ]  # fmt: skip
    return rows + _load_rows(part, totals) + _finish(part, daemon)


def sigterm_under_load(cfg: SuiteConfig, workdir: Path) -> list[Row]:
    state = workdir / "sigterm" / "state"
    daemon = _daemon(
        workdir, "sigterm", "--memory", "64MiB", "--state-dir", str(state), "--save-ephemeral"
    )
    restart_s: list[float] = []
    exit_status: list[int] = []

    def restart() -> None:
        time.sleep(cfg.sigterm_s / 2)
        t0 = time.monotonic()
        exit_status.append(daemon.stop())
        daemon.start()
        restart_s.append(time.monotonic() - t0)

    thread = threading.Thread(target=restart)
    thread.start()
    totals = run_workers(_workers(daemon.address, cfg, cfg.sigterm_s, 3))
    thread.join()
    part = "SIGTERM under load (--state-dir)"
    saved = exit_status == [0] and bool(restart_s)
    rows = [
        Row(part, "SIGTERM, save, restart, restore (s)",
            f"{restart_s[0]:.2f}" if restart_s else "-", "done", saved),
    ]  # fmt: skip
    return rows + _load_rows(part, totals) + _finish(part, daemon)


def bad_input(cfg: SuiteConfig, workdir: Path) -> list[Row]:
    daemon = _daemon(workdir, "fuzz", "--memory", "64MiB")
    t0 = time.monotonic()
    totals = fuzz(daemon, cfg.fuzz_frames, cfg.seed)
    seconds = time.monotonic() - t0
    part = "bad input"
    alive = daemon.alive()
    rows = [
        Row(part, "fuzzed frames sent", f"{totals.frames} in {seconds:.0f} s",
            f">= {cfg.fuzz_frames}", totals.frames >= cfg.fuzz_frames),
        Row(part, "replies decoded / connections", f"{totals.replies} / {totals.connections}",
            "> 0", totals.replies > 0),
        Row(part, "daemon still running", "yes" if alive else "no", "yes", alive),
        Row(part, "cross-client reads", str(totals.cross_client_reads), "0",
            totals.cross_client_reads == 0),
        Row(part, "keeper pages wrong or lost afterwards", str(totals.keeper_wrong), "0",
            totals.keeper_wrong == 0),
    ]  # fmt: skip
    return rows + _finish(part, daemon)


def overload(cfg: SuiteConfig, workdir: Path) -> list[Row]:
    memory = cfg.overload_memory_bytes
    daemon = _daemon(workdir, "overload", "--memory", str(memory))
    totals = oversubscribe(daemon, memory, cfg.overload_factor, cfg.seed)
    bound = memory + OVERHEAD_BYTES
    part = f"overload ({cfg.overload_factor}x of {memory // MIB} MiB)"
    rows = [
        Row(part, "peak RSS (MiB)", f"{totals.peak_rss_bytes / MIB:.1f}",
            f"<= {bound / MIB:.0f}", totals.peak_rss_bytes <= bound),
        Row(part, "persistent puts refused / accepted",
            f"{totals.persistent_refused} / {totals.persistent_accepted}", "> 0 refused",
            totals.persistent_refused > 0),
        Row(part, "accepted persistent pages wrong or lost", str(totals.persistent_wrong), "0",
            totals.persistent_wrong == 0),
    ]  # fmt: skip
    return rows + _finish(part, daemon)


def slow_readers(cfg: SuiteConfig, workdir: Path) -> list[Row]:
    daemon = _daemon(workdir, "slow", "--memory", "64MiB")
    totals = slow_reader(daemon, cfg.seed)
    part = "slow reader"
    bound = RSS_GROWTH_BOUND_BYTES
    rows = [
        Row(part, "GETs sent before the daemon stopped reading (replies asked, MiB)",
            f"{totals.requests_sent} ({totals.replies_asked_bytes / MIB:.0f})", "> 0",
            totals.requests_sent > 0),
        Row(part, "daemon RSS growth while they wait (MiB)",
            f"{totals.rss_growth_bytes / MIB:.1f}", f"<= {bound / MIB:.0f}",
            totals.rss_growth_bytes <= bound),
        Row(part, "another client's put+get meanwhile / slowest (ms)",
            f"{totals.other_ops} / {totals.other_slowest_s * 1000:.1f}", "> 0",
            totals.other_ops > 0),
        Row(part, "its pages wrong", str(totals.other_wrong), "0", totals.other_wrong == 0),
    ]  # fmt: skip
    return rows + _finish(part, daemon)


def replicas_kill(cfg: SuiteConfig, workdir: Path) -> list[Row]:
    daemons = [_daemon(workdir, f"replica-{n}", "--memory", "128MiB") for n in range(3)]
    try:
        totals = kill_with_replicas(daemons, cfg.replica_pages, cfg.seed)
    finally:
        statuses = [d.stop() for d in daemons]
    part = "kill -9 with replicas=2 (1 of 3, then another)"
    crashes = sum(d.tracebacks() for d in daemons)
    rows = [
        Row(part, "persistent pages stored / refused", f"{totals.stored} / {totals.refused}",
            "> 0 stored", totals.stored > 0),
        Row(part, "pages read back wrong", str(totals.wrong), "0", totals.wrong == 0),
        Row(part, "pages missing after a kill", str(totals.missing), "0", totals.missing == 0),
        Row(part, "copies repaired on the restarted daemon", str(totals.repaired), "> 0",
            totals.repaired > 0),
        Row(part, "client errors", str(totals.errors), "0", totals.errors == 0),
        Row(part, "daemon tracebacks", str(crashes), "0", crashes == 0),
        Row(part, "daemon exit statuses", " ".join(map(str, statuses)), "0 0 0",
            statuses == [0, 0, 0]),
    ]  # fmt: skip
    return rows


PARTS: list[Callable[[SuiteConfig, Path], list[Row]]] = [
    load_held,
    faults_survived,
    slow_readers,
    sigterm_under_load,
    bad_input,
    overload,
    replicas_kill,
]


def run_suite(cfg: SuiteConfig, workdir: Path, progress: Callable[[str], None]) -> list[Row]:
    """Every part in turn; ``progress`` hears each part's name as it starts."""
    rows: list[Row] = []
    for part in PARTS:
        progress(part.__name__)
        rows += part(cfg, workdir)
    return rows
