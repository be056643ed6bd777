"""Prometheus metrics: a custom collector over ``engine.statistics()``.

Design
------
After prometheus/client_python's custom-collector pattern, nothing is
counted twice: the engine keeps plain ``int`` counters (its hot path pays
nothing for metrics), the server keeps its own (connections, bytes, a
``LatencyRecorder``), and at scrape time ``TmemdCollector.collect`` reads one
frozen ``EngineStats`` snapshot and one ``ServerStats`` and turns them into
metric families.  The registry is passed in by the daemon, never the global
one, so tests build as many independent exporters as they like.
``start_metrics_server`` (in ``_metrics_http``) collects the registry on
the daemon's own event loop, so a scrape sees a consistent snapshot without
any lock, and formats the text in a worker thread.  ``serve_metrics`` is the
daemon's one call for ``--metrics HOST:PORT``.

Names follow the Prometheus conventions: prefix ``tmemd_``, base units
(bytes, seconds), ``_total`` on counters, ``_ratio`` on unitless fractions.
Every family is emitted on every scrape, even with no samples, so the set of
exported names does not depend on traffic (the dashboard and alert rules are
checked against it).  The ``op`` label uses the wire's opcode names
(``put_page``, ``get_page``, ...) in both the op counters and the latency
histogram.

Label cardinality
-----------------
Labels are ``client``, ``pool``, ``pool_kind``, ``op``, ``result``,
``reason``, ``state``, ``pam``, ``codec``, ``shared`` and ``page_size``
(the last three only on ``tmemd_pool_info``); never an object id or a page
index.  On the ``tmemd_pam_*`` gauges ``pool_kind`` names the PAM's role:
``ephemeral`` or ``persistent``, ``any`` when one PAM serves both by
default, or ``named`` for a PAM only pools that named it use (a client may
ask for any of the three arena PAMs, so there are up to three PAMs).
``pool`` is a client's small pool id (at most ``MAX_POOLS_PER_CLIENT`` = 64
per client); ``client`` is a name from the auth file, or, without one, one of
the clients connected now or within their lease (at most
``--max-connections`` connected at once).  Per-pool families therefore have
at most (clients x 64) series each, and the others a handful per client.  A
shared pool appears once, under the client charged for it.  Cost: about
15 series per pool; a scrape of hundreds of pools takes tens of milliseconds
of event-loop time to collect and a few times that in a worker thread to
format (docs/bench/micro.md has the figures).

A scrape never fails because of what a client did
-------------------------------------------------
The families are built in groups (pools, clients, PAMs, memory, global,
server, process).  A group that raises is left out of that scrape, its
traceback logged, and ``tmemd_metrics_errors_total{group}`` counts it;
every other group is still exported and ``/metrics`` answers 200.  An
answer of 500 would hide every healthy family behind one bug, and a
silently missing group would look like an idle daemon: the counter makes
the gap visible to the same scraper.

Derived gauges, with worked examples
------------------------------------
* ``tmemd_compression_ratio`` = original bytes of the pages held ÷ bytes the
  PAMs hold for them: 1000 pages of 4 KiB compressed to 1 KiB each give
  4096000 / 1024000 = 4.0.  Same-filled pages add original bytes and hold
  none, so they raise the ratio, as they raise real density.  Absent while
  nothing is held.
* ``tmemd_fragmentation_ratio`` = 1 − stored ÷ charged over every PAM: a
  frame of 4096 bytes holding two objects of 1500 bytes wastes
  1 − 3000/4096 = 0.27.  For the bytes PAM the per-object bookkeeping counts
  as waste.  Absent while nothing is charged.
* ``tmemd_arena_frames{state}``: the arena is ``memory_limit_bytes`` cut
  into 4 KiB frames; a PAM that does not use frames counts its charged
  bytes rounded up to frames, so ``used + free`` is always the arena size.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import ssl as _ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tmem.proto._build import build_info

from . import __version__
from ._latency import LATENCY_BUCKETS_S, LatencySnapshot
from ._metrics_engine import ENGINE_GROUPS
from ._metrics_http import start_metrics_server
from ._metrics_proc import read_process_figures
from .config import parse_address
from .engine import EngineStats

__all__ = [
    "PAGE_OPS",
    "ServerLike",
    "ServerStats",
    "TmemdCollector",
    "serve_metrics",
    "server_stats_of",
    "start_metrics_server",
]

log = logging.getLogger("tmemd.metrics")

_EMPTY: Mapping[str, int] = MappingProxyType({})
#: The ``op`` label values of page requests (the wire's opcode names, lower
#: case, as ``tmemd.server`` records latency under).
PAGE_OPS = ("put_page", "get_page", "flush_page", "flush_object")


@dataclass(frozen=True, slots=True)
class ServerStats:
    """What the server edge knows that the engine does not, at one instant."""

    #: Gauge: connections open now.
    connections: int
    #: Counters: connections accepted and refused (over ``max_connections``).
    connections_total: int
    connections_refused: int
    #: Counters: bytes read from and written to client sockets.
    bytes_in: int
    bytes_out: int
    #: Per-op server-side latency histograms.
    latency: tuple[LatencySnapshot, ...]
    #: Unix time (seconds) at which the daemon started.
    started_at: float
    #: Gauge: the ``--max-connections`` limit (0 if unknown).
    max_connections: int = 0
    #: Gauge: open connections per authenticated client (not yet HELLO'd: none).
    connections_by_client: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    #: Gauge: open connections that have not completed HELLO.
    unauthenticated: int = 0
    #: Counters: connections closed without HELLO, by reason
    #: (``hello_timeout``: past --hello-timeout; ``evicted``: made room).
    unauthenticated_closed: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    #: Counters: HELLOs with a wrong token, and HELLOs refused unchecked by the throttle.
    auth_failures: int = 0
    auth_throttled: int = 0


class _SessionLike(Protocol):
    client: str | None


class _ConnectionLike(Protocol):
    @property
    def session(self) -> _SessionLike: ...


class _RecorderLike(Protocol):
    def snapshot(self) -> tuple[LatencySnapshot, ...]: ...


class _ConfigLike(Protocol):
    @property
    def max_connections(self) -> int: ...


class ServerLike(Protocol):
    """The attributes of ``tmemd.server.Server`` that metrics read.

    A protocol rather than an import: nothing but the entry point imports the
    server (docs/design.md §9.1).
    """

    @property
    def connections(self) -> Iterable[_ConnectionLike]: ...
    @property
    def connections_total(self) -> int: ...
    @property
    def connections_refused(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def latency(self) -> _RecorderLike: ...
    @property
    def config(self) -> _ConfigLike: ...
    @property
    def unauthenticated_connections(self) -> int: ...
    @property
    def hello_timeouts(self) -> int: ...
    @property
    def unauthenticated_evicted(self) -> int: ...
    @property
    def auth_failures(self) -> int: ...
    @property
    def auth_throttled(self) -> int: ...


def server_stats_of(server: ServerLike, started_at: float) -> ServerStats:
    """Snapshot a running server's edge counters (call at scrape time)."""
    by_client: dict[str, int] = {}
    open_connections = 0
    for conn in server.connections:
        open_connections += 1
        name = conn.session.client
        if name is not None:
            by_client[name] = by_client.get(name, 0) + 1
    return ServerStats(
        connections=open_connections,
        connections_total=server.connections_total,
        connections_refused=server.connections_refused,
        bytes_in=server.bytes_in,
        bytes_out=server.bytes_out,
        latency=server.latency.snapshot(),
        started_at=started_at,
        max_connections=server.config.max_connections,
        connections_by_client=MappingProxyType(by_client),
        unauthenticated=server.unauthenticated_connections,
        unauthenticated_closed=MappingProxyType(
            {"hello_timeout": server.hello_timeouts, "evicted": server.unauthenticated_evicted}
        ),
        auth_failures=server.auth_failures,
        auth_throttled=server.auth_throttled,
    )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _latency_family(snapshots: tuple[LatencySnapshot, ...]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(
        "tmemd_op_duration_seconds",
        "Time the daemon spent on one request, decoded frame to encoded reply.",
        labels=["op"],
    )
    bounds = [repr(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
    seen = {snap.op for snap in snapshots}
    # Page ops are exported at zero before their first request: a series
    # that first appears already counting a burst shows rate() no increase.
    idle = tuple(LatencySnapshot(op, (0,) * len(bounds), 0.0) for op in PAGE_OPS if op not in seen)
    for snap in snapshots + idle:
        running, buckets = 0, []
        for bound, count in zip(bounds, snap.bucket_counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        fam.add_metric([snap.op], buckets, snap.sum_s)
    return fam


def server_families(stats: ServerStats) -> Iterator[Metric]:
    """Families from the server edge: connections, bytes, latency."""
    yield _gauge("tmemd_connections", "Client connections open now.", stats.connections)
    yield _gauge(
        "tmemd_connections_max",
        "Connections allowed at once (--max-connections).",
        stats.max_connections,
    )
    yield _counter(
        "tmemd_connections_accepted", "Client connections accepted.", stats.connections_total
    )
    yield _counter(
        "tmemd_connections_refused",
        "Client connections refused because --max-connections were open.",
        stats.connections_refused,
    )
    per_client = GaugeMetricFamily(
        "tmemd_client_connections",
        "Open connections per authenticated client.",
        labels=["client"],
    )
    for name, count in sorted(stats.connections_by_client.items()):
        per_client.add_metric([name], count)
    yield per_client
    yield from _admission_families(stats)
    yield _counter(
        "tmemd_network_received_bytes", "Bytes read from client connections.", stats.bytes_in
    )
    yield _counter(
        "tmemd_network_sent_bytes", "Bytes written to client connections.", stats.bytes_out
    )
    yield _latency_family(stats.latency)


def _admission_families(stats: ServerStats) -> Iterator[Metric]:
    """Connections without HELLO and failed HELLOs: what a peer without a token did."""
    yield _gauge(
        "tmemd_connections_unauthenticated",
        "Open connections that have not completed HELLO (--max-unauthenticated).",
        stats.unauthenticated,
    )
    closed = CounterMetricFamily(
        "tmemd_connections_unauthenticated_closed",
        "Connections closed before HELLO: past --hello-timeout, or to make room.",
        labels=["reason"],
    )
    for reason in ("hello_timeout", "evicted"):
        closed.add_metric([reason], stats.unauthenticated_closed.get(reason, 0))
    yield closed
    yield _counter(
        "tmemd_auth_failures", "HELLOs refused for a wrong or missing token.", stats.auth_failures
    )
    yield _counter(
        "tmemd_auth_throttled",
        "HELLOs refused without checking the token: too many failures from the address or "
        "for the name.",
        stats.auth_throttled,
    )


def process_families(started_at: float) -> Iterator[Metric]:
    """Families about the daemon process, read from /proc at scrape time."""
    proc = read_process_figures()
    yield _gauge(
        "tmemd_process_resident_memory_bytes",
        "Resident set size of the daemon (VmRSS): arena pages touched plus overhead.",
        proc.resident_bytes,
    )
    yield _counter(
        "tmemd_process_cpu_seconds", "User and system CPU time of the daemon.", proc.cpu_seconds
    )
    fds = GaugeMetricFamily("tmemd_process_open_fds", "Open file descriptors.")
    if proc.open_fds is not None:
        fds.add_metric([], proc.open_fds)
    yield fds
    yield _gauge("tmemd_process_max_fds", "File descriptor limit (soft).", proc.max_fds)
    yield _gauge("tmemd_process_start_time_seconds", "Unix time the daemon started.", started_at)
    info = GaugeMetricFamily(
        "tmemd_build_info",
        "Always 1; labels name the build (build: compiled, interpreted or mixed).",
        labels=["version", "python", "build"],
    )
    info.add_metric([__version__, platform.python_version(), build_info().kind], 1)
    yield info


class TmemdCollector(Collector):
    """Reads the engine and server snapshots at scrape time; each group of
    families is built on its own, so one failing group costs only itself."""

    def __init__(
        self,
        engine_stats: Callable[[], EngineStats],
        server_stats: Callable[[], ServerStats],
    ) -> None:
        self._engine_stats = engine_stats
        self._server_stats = server_stats
        #: Scrapes in which each group raised, by group name.
        self.errors: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        server = self._server_stats()
        stats = self._engine_stats()
        groups: list[tuple[str, Callable[[], Iterable[Metric]]]] = [
            (name, partial(build, stats)) for name, build in ENGINE_GROUPS
        ]
        groups.append(("server", partial(server_families, server)))
        groups.append(("process", partial(process_families, server.started_at)))
        families: list[Metric] = []
        for name, build in groups:
            families.extend(self._guarded(name, build))
        errors = CounterMetricFamily(
            "tmemd_metrics_errors",
            "Scrapes that left a group of families out because building it failed.",
            labels=["group"],
        )
        for name, _build in groups:
            errors.add_metric([name], self.errors.get(name, 0))
        families.append(errors)
        return families

    def _guarded(self, name: str, build: Callable[[], Iterable[Metric]]) -> list[Metric]:
        try:
            return list(build())
        except Exception:  # a bug in one group must not fail the whole scrape
            self.errors[name] = self.errors.get(name, 0) + 1
            log.exception("metrics group %r failed; left out of this scrape", name)
            return []


async def serve_metrics(
    address: str,
    engine_stats: Callable[[], EngineStats],
    server: ServerLike,
    *,
    ready: Callable[[], bool],
    started_at: float | None = None,
    bearer_token: str | None = None,
    ssl: _ssl.SSLContext | None = None,
) -> tuple[asyncio.AbstractServer, int]:
    """The daemon's ``--metrics HOST:PORT``: a private registry, served; returns the bound port.

    ``bearer_token`` (``--metrics-auth``) and ``ssl`` (``--metrics-tls-*``)
    protect it as ``start_metrics_server`` describes.

    ``started_at`` (unix seconds) defaults to now, which is right when the
    daemon calls this at start-up.
    """
    since = time.time() if started_at is None else started_at
    registry = CollectorRegistry()
    registry.register(TmemdCollector(engine_stats, lambda: server_stats_of(server, since)))
    host, port = parse_address(address)
    return await start_metrics_server(
        host, port, registry, ready, bearer_token=bearer_token, ssl=ssl
    )
