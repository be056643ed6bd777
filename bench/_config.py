"""What one benchmark run measures: the matrix of cases and its bounds.

A **case** is one measurement: one system (tmemd, memcached or redis), one
workload, one in-flight depth, one number of connections and one number of
pages stored before the timed phase.  tmemd cases also name a pool kind and
a codec; the peers have neither (``"-"``), so the matrix holds each peer
case once and every tmemd variant is compared with it.

The matrix is the product of the configured lists with three rules:

* ``flush_object`` runs at depth 1 only: the tmem client has no pipelined
  flush, and one flush already drops a whole object (``PAGES_PER_OBJECT``).
* ``precompressed`` pools take pages the client compressed, so they are
  measured once, not once per codec (their codec column reads ``"client-lz4"``).
* **scale** cases (``BenchConfig.scale``) add ``get_hit`` at depth 1 and one
  connection with 10^3 ... 10^6 pages stored, for the "p99 get latency does
  not grow with the store" target; tmemd runs them with lz4 ephemeral pools.

Every timed loop is bounded twice: by ``ops_per_connection`` requests and by
``duration_s`` seconds, whichever comes first.

tmemd runs once per ``busy_poll`` value (its ``--busy-poll``; 0 and 200 µs
by default), each a variant of its own (``tmemd lz4/ephemeral bp200``).

Worked example: ``--quick`` is 2 workloads x 2 depths x 1 connection count,
lz4 ephemeral for tmemd with and without busy polling: 4 cases per peer and
8 for tmemd, 16 in all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLIENT_CODEC",
    "CODECS",
    "CONNECTIONS",
    "DEPTHS",
    "MIXED_GET_PERCENT",
    "NO_VARIANT",
    "PAGES_PER_OBJECT",
    "PAGE_BYTES",
    "PLACEMENTS",
    "POOLS",
    "SEED",
    "SYSTEMS",
    "WORKLOADS",
    "BenchConfig",
    "Case",
    "build_cases",
    "quick_config",
]

#: Every page is one x86-64 base page, tmem's default page size.
PAGE_BYTES = 4096
#: Seed of every benchmark's corpus (``_corpus``), so runs compare like with like.
SEED = 20_240_601
#: The systems one run compares; peers absent from the machine are skipped.
SYSTEMS = ("tmemd", "memcached", "redis")
#: put: fresh keys only.  get_hit: gets of stored keys.  get_miss: gets of
#: keys never stored (on a populated store).  mixed: 80 % get / 20 % put of
#: stored keys.  flush_object: drop whole objects of PAGES_PER_OBJECT pages.
WORKLOADS = ("put", "get_hit", "get_miss", "mixed", "flush_object")
#: tmemd pool kinds; "precompressed" is an ephemeral pool whose pages the
#: client compressed (with lz4) before sending.
POOLS = ("ephemeral", "persistent", "precompressed")
#: The daemon's page codecs measured (its "none" codec is not a target).
CODECS = ("lzo", "lz4", "zstd")
#: Requests in flight per connection: 1 is one call at a time; 16 and 64
#: are batches (put_many/get_many, set_many/get_many, a redis pipeline).
DEPTHS = (1, 16, 64)
#: Connections per case, spread over the client processes.
CONNECTIONS = (1, 4, 16)
#: Share of gets in the mixed workload, in percent.
MIXED_GET_PERCENT = 80
#: Pages per object in the flush_object workload: a small file's worth of
#: page cache, enough that a flush is more than a single-page delete.
PAGES_PER_OBJECT = 8
#: How servers and clients share the CPUs (``BenchConfig.placement``).
PLACEMENTS = ("split", "shared")
#: The pool and codec columns of a peer case.
NO_VARIANT = "-"
#: The codec column of a precompressed pool: the client did the work.
CLIENT_CODEC = "client-lz4"


@dataclass(frozen=True, slots=True)
class Case:
    """One measurement of the matrix."""

    system: str
    workload: str
    depth: int
    connections: int
    #: Pages stored (over all connections) before the timed phase.
    stored: int
    pool: str = NO_VARIANT
    codec: str = NO_VARIANT
    #: True for the scale sub-matrix (p99 against the number stored).
    scale: bool = False
    #: tmemd's ``--busy-poll`` in microseconds (0: off).
    busy_poll_us: int = 0
    #: tmemd daemons behind one several-server client (0: the classic
    #: single-daemon case; 1 and up: ``--servers``, docs/multi-server.md).
    servers: int = 0
    #: ``new_pool(replicas=)`` of a persistent pool in a ``servers`` case.
    replicas: int = 1

    @property
    def label(self) -> str:
        """The system as a chart legend names it: ``tmemd lz4/ephemeral``,
        ``tmemd lz4/ephemeral bp200`` (with ``--busy-poll 200``), ``redis``."""
        if self.system != "tmemd":
            return self.system
        poll = f" bp{self.busy_poll_us}" if self.busy_poll_us else ""
        if self.servers:
            poll += f" x{self.servers}" + (f" r{self.replicas}" if self.replicas > 1 else "")
        if self.pool == "precompressed":
            return f"tmemd precompressed{poll}"
        return f"tmemd {self.codec}/{self.pool}{poll}"

    def describe(self) -> str:
        """One line for the progress bar."""
        scale = f" stored={self.stored}" if self.scale else ""
        return f"{self.label} {self.workload} d{self.depth} c{self.connections}{scale}"


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Everything a run needs; the CLI builds it, ``--quick`` shrinks it."""

    systems: tuple[str, ...] = SYSTEMS
    workloads: tuple[str, ...] = WORKLOADS
    pools: tuple[str, ...] = POOLS
    codecs: tuple[str, ...] = CODECS
    depths: tuple[int, ...] = DEPTHS
    connections: tuple[int, ...] = CONNECTIONS
    #: Pages stored before gets, misses and mixed runs (over all connections).
    stored: int = 20_000
    #: Extra get_hit cases at these store sizes (empty: none).
    scale: tuple[int, ...] = (1_000, 1_000_000)
    #: Time limit of each timed phase, seconds.
    duration_s: float = 2.0
    #: Request limit of each connection in a timed phase.
    ops_per_connection: int = 200_000
    #: Client processes per case (at most one per connection); 0 = CPU count.
    processes: int = 0
    #: Distinct pages in the corpus (keys reuse them cyclically).
    corpus_pages: int = 20_000
    #: Use generated text-like pages instead of real files (fast).
    synthetic: bool = False
    #: Memory given to every server (tmemd --memory, memcached -m, redis
    #: maxmemory), bytes; raised per case when the store needs more.
    memory_bytes: int = 4 << 30
    seed: int = SEED
    charts: bool = True
    #: "split": the server on the first half of the CPUs, the clients on the
    #: rest (see ``_proc.split_cpus``); "shared": wherever the OS puts them.
    placement: str = "split"
    #: Runs of each case; the one of median pages/s is reported.
    repeat: int = 1
    #: tmemd's ``--busy-poll`` values, µs: each makes its own tmemd variant.
    #: Both by default, so every run shows the daemon as it starts (off) and
    #: what spinning buys at depth 1 for the CPU it burns.
    busy_poll: tuple[int, ...] = (0, 200)
    #: ``--servers``: daemon counts, each its own tmemd case, every one
    #: through the several-server client (empty: one daemon, as always).
    servers: tuple[int, ...] = ()
    #: ``--replicas`` of persistent pools in ``servers`` cases.
    replicas: int = 1

    def replace(self, **changes: Any) -> BenchConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def quick_config(base: BenchConfig | None = None) -> BenchConfig:
    """The ``--quick`` matrix: put and get_hit at depth 1 and 64, lz4, one
    connection, a small real corpus; well within a minute on 2 cores."""
    return (base or BenchConfig()).replace(
        workloads=("put", "get_hit"),
        pools=("ephemeral",),
        codecs=("lz4",),
        depths=(1, 64),
        connections=(1,),
        stored=4_000,
        scale=(),
        duration_s=1.5,
        ops_per_connection=100_000,
        corpus_pages=4_000,
    )


def _tmemd_variants(config: BenchConfig) -> Iterator[tuple[str, str, int, int]]:
    for servers in config.servers or (0,):
        for poll in config.busy_poll:
            for pool in config.pools:
                if pool == "precompressed":
                    yield pool, CLIENT_CODEC, poll, servers
                else:
                    for codec in config.codecs:
                        yield pool, codec, poll, servers


def _variants(system: str, config: BenchConfig) -> Sequence[tuple[str, str, int, int]]:
    if system == "tmemd":
        return list(_tmemd_variants(config))
    return [(NO_VARIANT, NO_VARIANT, 0, 0)]


def build_cases(config: BenchConfig) -> list[Case]:
    """The matrix in run order: by workload, depth and connections, then by
    system, so the cases a ratio compares run seconds apart and a machine
    that gets busy mid-run skews them alike; the scale cases come last."""
    cases: list[Case] = []
    for workload in config.workloads:
        depths = (1,) if workload == "flush_object" else config.depths
        for depth in depths:
            for conns in config.connections:
                for system in config.systems:
                    for pool, codec, poll, servers in _variants(system, config):
                        replicas = config.replicas if pool == "persistent" and servers else 1
                        cases.append(
                            Case(
                                system, workload, depth, conns, config.stored, pool, codec,
                                busy_poll_us=poll, servers=servers, replicas=replicas,
                            )
                        )  # fmt: skip
    for stored in config.scale:
        for system in config.systems:
            pool, codec = ("ephemeral", "lz4") if system == "tmemd" else (NO_VARIANT,) * 2
            poll = config.busy_poll[0] if system == "tmemd" and config.busy_poll else 0
            cases.append(
                Case(system, "get_hit", 1, 1, stored, pool, codec, scale=True, busy_poll_us=poll)
            )
    return cases
