"""tmemd's benchmarks: the tmemd-bench harness and the smaller scripts, in one folder.

bench/ installs as ``tmem.bench`` (pyproject's package-dir, as proto/ and
client/ install under ``tmem``), so there is one place for benchmarks and
one corpus builder (``_corpus``) for all of them, and their figures compare.
The private modules are the harness; each public module is a script that
measures one thing and prints figures, run as ``python bench/x.py`` or
``python -m tmem.bench.x``.

The harness, ``tmemd-bench``: tmemd against memcached and Redis, on real
pages, in one run.  It measures pages/s, MB/s, p50/p99/p99.9 latency, the
server's CPU seconds per request (from /proc) and its RSS, for the
workloads put, get_hit, get_miss, mixed (80 % get / 20 % put) and
flush_object; tmemd with ephemeral, persistent and precompressed pools and
the lzo, lz4 and zstd codecs; at 1, 16 and 64 requests in flight per
connection and over 1, 4 and 16 connections.  The same driver speaks to
tmemd (``tmem.client``), Debian's memcached (pymemcache) and redis-server
(redis-py with hiredis); each server is started fresh per case on a free
loopback port and stopped after.  Results go to ``results.json`` plus PNG
charts; the targets (``_report``) are evaluated and listed with their
values.

    tmemd-bench --quick                 # under a minute: put/get, depth 1 and 64, lz4
    python -m tmem.bench --out docs/bench/full

Reading order: ``_config`` (the matrix), ``_corpus`` (the pages),
``_peers`` (the servers), ``_drivers`` (one interface over three clients),
``_load`` (processes, threads, the timed loops), ``_stats`` (percentiles),
``_runner`` (one case from start to stop), ``_report`` and ``_charts``
(figures), ``_cli`` (the command).

The harness never imports the daemon's internals; it starts the daemon as
a user does and talks to it through the public client library.  Scripts
that time one layer in process (``server_path``, ``density``,
``pam_density``, ``warm_restart``, ``codecs``) import that layer.
"""

from __future__ import annotations

from ._cli import build_parser, config_from_args, main, run
from ._config import BenchConfig, Case, build_cases, quick_config
from ._corpus import Corpus, real_corpus, synthetic_corpus
from ._stats import Latency, Summary, ThreadResult, aggregate, percentile

__all__ = [
    "BenchConfig",
    "Case",
    "Corpus",
    "Latency",
    "Summary",
    "ThreadResult",
    "aggregate",
    "build_cases",
    "build_parser",
    "config_from_args",
    "main",
    "percentile",
    "quick_config",
    "real_corpus",
    "run",
    "synthetic_corpus",
]
