"""The metrics collector over a real ``Engine``: names, labels and values.

The names below are public contract (deploy/README.md, the dashboard, the alert
rules): renaming one must fail here first.  Values are checked against the
engine's own ``statistics()`` after driving it through put/get/flush,
refusals and evictions, and against the text exposition as Prometheus will
parse it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import tmemd.metrics
from tmemd._latency import LATENCY_BUCKETS_S, LatencyRecorder
from tmemd._metrics_proc import read_process_figures
from tmemd.engine import Engine, EngineConfig, Refusal
from tmemd.metrics import PAGE_OPS, ServerStats, TmemdCollector, server_stats_of

#: Every family the daemon exports, by type (the public contract).
EXPORTED = {
    "counter": {
        "tmemd_ops",
        "tmemd_flushed_pages",
        "tmemd_evicted_pages",
        "tmemd_put_refusals",
        "tmemd_evictions",
        "tmemd_replaced_pages_dropped",
        "tmemd_destroyed_pages",
        "tmemd_leases_expired",
        "tmemd_connections_accepted",
        "tmemd_connections_refused",
        "tmemd_connections_unauthenticated_closed",
        "tmemd_auth_failures",
        "tmemd_auth_throttled",
        "tmemd_network_received_bytes",
        "tmemd_network_sent_bytes",
        "tmemd_process_cpu_seconds",
        "tmemd_metrics_errors",
    },
    "gauge": {
        "tmemd_stored_pages",
        "tmemd_same_filled_pages",
        "tmemd_raw_pages",
        "tmemd_objects",
        "tmemd_stored_original_bytes",
        "tmemd_stored_compressed_bytes",
        "tmemd_pool_info",
        "tmemd_client_pools",
        "tmemd_client_in_lease",
        "tmemd_client_connections",
        "tmemd_pam_objects",
        "tmemd_pam_stored_bytes",
        "tmemd_pam_used_bytes",
        "tmemd_pam_capacity_bytes",
        "tmemd_pam_frames",
        "tmemd_arena_bytes",
        "tmemd_arena_frames",
        "tmemd_fragmentation_ratio",
        "tmemd_memory_limit_bytes",
        "tmemd_memory_used_bytes",
        "tmemd_persistent_bytes",
        "tmemd_persistent_limit_bytes",
        "tmemd_persistent_accept_bytes",
        "tmemd_persistent_full",
        "tmemd_persistent_share_ratio",
        "tmemd_compression_ratio",
        "tmemd_clients",
        "tmemd_pools",
        "tmemd_connections",
        "tmemd_connections_max",
        "tmemd_connections_unauthenticated",
        "tmemd_process_resident_memory_bytes",
        "tmemd_process_open_fds",
        "tmemd_process_max_fds",
        "tmemd_process_start_time_seconds",
        "tmemd_build_info",
    },
    "histogram": {"tmemd_op_duration_seconds"},
}
#: The only label names allowed: all bounded (never object ids or indexes).
ALLOWED_LABELS = {
    "client",
    "pool",
    "pool_kind",
    "op",
    "result",
    "reason",
    "state",
    "pam",
    "codec",
    "shared",
    "page_size",
    "version",
    "python",
    "build",
    "le",
    "group",
}
MEMORY = 1 << 20
PAGE = 4096


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def page(seed: int, compressible: bool = True) -> bytes:
    """A 4 KiB page: text-like (compresses ~10x) or random (does not)."""
    if compressible:
        return (b"page %08d " % seed * 400)[:PAGE]
    return os.urandom(PAGE)


def make_engine(**config: object) -> tuple[Engine, FakeClock]:
    clock = FakeClock()
    return Engine(EngineConfig(memory_bytes=MEMORY, lease_s=10.0, **config), clock), clock  # type: ignore[arg-type]


def new_pool(engine: Engine, client: str, persistent: bool) -> int:
    return engine.new_pool(
        client,
        persistent=persistent,
        shared_uuid=None,
        precompressed=False,
        page_size=PAGE,
        codec=None,
    )


def server_stats(**changes: object) -> ServerStats:
    rec = LatencyRecorder()
    rec.observe("put_page", 7e-6)
    rec.observe("put_page", 30e-6)
    rec.observe("get_page", 2.0)  # past the last bound: lands in +Inf
    values: dict[str, object] = dict(
        connections=3,
        connections_total=10,
        connections_refused=2,
        bytes_in=1000,
        bytes_out=2000,
        latency=rec.snapshot(),
        started_at=1.7e9,
        max_connections=4096,
        connections_by_client=MappingProxyType({"alice": 2}),
    )
    values.update(changes)
    return ServerStats(**values)  # type: ignore[arg-type]


def scrape(engine: Engine, stats: ServerStats | None = None) -> dict[str, list[Sample]]:
    """Expose through a private registry and parse the text back, by family name."""
    registry = CollectorRegistry()
    registry.register(TmemdCollector(engine.statistics, lambda: stats or server_stats()))
    text = generate_latest(registry).decode()
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def families(engine: Engine) -> dict[str, str]:
    registry = CollectorRegistry()
    registry.register(TmemdCollector(engine.statistics, server_stats))
    text = generate_latest(registry).decode()
    return {fam.name: fam.type for fam in text_string_to_metric_families(text)}


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    family = re.sub(r"_(total|bucket|count|sum)$", "", name)
    found = [
        s.value
        for s in samples[family]
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def test_every_family_is_exported_even_when_idle() -> None:
    engine, _ = make_engine()
    got = families(engine)
    want = {name: kind for kind, names in EXPORTED.items() for name in names}
    assert got == want


def test_names_and_labels_follow_conventions() -> None:
    engine, _ = make_engine()
    engine.connect("alice")
    new_pool(engine, "alice", persistent=True)
    samples = scrape(engine)
    for name, fam_samples in samples.items():
        assert name.startswith("tmemd_")
        for s in fam_samples:
            assert set(s.labels) <= ALLOWED_LABELS, (s.name, s.labels)
            if name in EXPORTED["counter"]:
                assert s.name == f"{name}_total"


def test_op_counters_and_gauges_match_the_engine() -> None:
    engine, _ = make_engine()
    engine.connect("alice")
    pid = new_pool(engine, "alice", persistent=True)
    for i in range(10):
        assert engine.put("alice", pid, 7, i, page(i)) is None
    engine.put("alice", pid, 8, 0, bytes(PAGE))  # same-filled
    engine.put("alice", pid, 8, 1, page(0, compressible=False))  # stored raw
    assert engine.get("alice", pid, 7, 3, None) == page(3)
    assert engine.get("alice", pid, 7, 99, None) is None
    assert engine.flush_page("alice", pid, 7, 0)
    assert engine.flush_object("alice", pid, 8) == 2
    stats = engine.statistics()
    samples = scrape(engine)
    pool = dict(client="alice", pool=str(pid), pool_kind="persistent")
    assert value(samples, "tmemd_ops_total", op="put_page", result="stored", **pool) == 12
    assert value(samples, "tmemd_ops_total", op="get_page", result="hit", **pool) == 1
    assert value(samples, "tmemd_ops_total", op="get_page", result="miss", **pool) == 1
    assert value(samples, "tmemd_ops_total", op="flush_page", result="ok", **pool) == 1
    assert value(samples, "tmemd_ops_total", op="flush_object", result="ok", **pool) == 1
    assert value(samples, "tmemd_flushed_pages_total", **pool) == 3
    assert value(samples, "tmemd_stored_pages", **pool) == 9
    assert value(samples, "tmemd_objects", **pool) == 1
    assert value(samples, "tmemd_stored_original_bytes", **pool) == 9 * PAGE
    assert value(samples, "tmemd_stored_compressed_bytes", **pool) == stats.stored_bytes
    assert value(samples, "tmemd_memory_used_bytes") == stats.memory_used_bytes
    assert value(samples, "tmemd_memory_limit_bytes") == MEMORY
    assert value(samples, "tmemd_persistent_bytes") == stats.persistent_bytes > 0
    assert value(samples, "tmemd_persistent_share_ratio") == stats.persistent_bytes / MEMORY
    assert value(samples, "tmemd_compression_ratio") == pytest.approx(9 * PAGE / stats.stored_bytes)
    assert value(samples, "tmemd_clients") == 1
    assert value(samples, "tmemd_pools") == 1
    assert value(samples, "tmemd_pool_info", codec="lzo", shared="false", **pool) == 1


def test_same_filled_and_raw_pages_are_counted() -> None:
    engine, _ = make_engine()
    engine.connect("bob")
    pid = new_pool(engine, "bob", persistent=False)
    engine.put("bob", pid, 1, 0, bytes(PAGE))
    engine.put("bob", pid, 1, 1, page(1, compressible=False))
    samples = scrape(engine)
    pool = dict(client="bob", pool=str(pid), pool_kind="ephemeral")
    assert value(samples, "tmemd_same_filled_pages", **pool) == 1
    assert value(samples, "tmemd_raw_pages", **pool) == 1


def test_refusals_by_reason_and_persistent_full() -> None:
    engine, _ = make_engine(persistent_max=0.25, persistent_accept=0.2)
    engine.connect("alice")
    pid = new_pool(engine, "alice", persistent=True)
    refused = sum(
        engine.put("alice", pid, 1, i, page(i, compressible=False)) is not None for i in range(100)
    )
    assert refused > 0
    samples = scrape(engine)
    assert (
        value(
            samples,
            "tmemd_put_refusals_total",
            client="alice",
            reason=Refusal.PERSISTENT_FULL.name.lower(),
        )
        == refused
    )
    assert value(samples, "tmemd_put_refusals_total", client="alice", reason="no_memory") == 0
    assert (
        value(
            samples,
            "tmemd_ops_total",
            client="alice",
            pool=str(pid),
            pool_kind="persistent",
            op="put_page",
            result="refused",
        )
        == refused
    )
    assert value(samples, "tmemd_persistent_full") == 1
    assert value(samples, "tmemd_persistent_limit_bytes") == int(MEMORY * 0.25)
    assert value(samples, "tmemd_persistent_accept_bytes") == int(MEMORY * 0.2)


def test_evictions_by_reason() -> None:
    engine, _ = make_engine()
    engine.connect("bob")
    pid = new_pool(engine, "bob", persistent=False)
    for i in range(2 * MEMORY // PAGE):  # twice the memory, incompressible
        assert engine.put("bob", pid, 1, i, page(i, compressible=False)) is None
    stats = engine.statistics()
    samples = scrape(engine)
    evicted = sum(stats.evictions_by_reason.values())
    assert evicted > MEMORY // PAGE
    assert (
        sum(value(samples, "tmemd_evictions_total", reason=r) for r in stats.evictions_by_reason)
        == evicted
    )
    assert (
        value(
            samples, "tmemd_evicted_pages_total", client="bob", pool=str(pid), pool_kind="ephemeral"
        )
        == evicted
    )


def test_arena_frames_add_up_and_fragmentation_is_a_fraction() -> None:
    engine, _ = make_engine()
    samples = scrape(engine)
    assert "tmemd_fragmentation_ratio" not in {s.name for s in samples["tmemd_fragmentation_ratio"]}
    assert "tmemd_compression_ratio" not in {s.name for s in samples["tmemd_compression_ratio"]}
    engine.connect("bob")
    pid = new_pool(engine, "bob", persistent=False)
    for i in range(50):
        engine.put("bob", pid, 1, i, page(i))
    samples = scrape(engine)
    used = value(samples, "tmemd_arena_frames", state="used")
    free = value(samples, "tmemd_arena_frames", state="free")
    assert used > 0
    assert used + free == value(samples, "tmemd_arena_bytes") // 4096
    assert 0 < value(samples, "tmemd_fragmentation_ratio") < 1


def test_lease_and_connections_per_client() -> None:
    engine, clock = make_engine()
    engine.connect("alice")
    new_pool(engine, "alice", persistent=False)
    engine.disconnect("alice")
    samples = scrape(engine)
    assert value(samples, "tmemd_client_in_lease", client="alice") == 1
    assert value(samples, "tmemd_client_pools", client="alice") == 1
    assert value(samples, "tmemd_client_connections", client="alice") == 2  # from ServerStats
    clock.now += 60
    assert engine.expire_leases() == ["alice"]
    samples = scrape(engine)
    assert value(samples, "tmemd_leases_expired_total") == 1
    assert value(samples, "tmemd_clients") == 0
    assert not [s for s in samples["tmemd_client_in_lease"]]


def test_latency_histogram_is_cumulative() -> None:
    engine, _ = make_engine()
    samples = scrape(engine)
    buckets = [
        s
        for s in samples["tmemd_op_duration_seconds"]
        if s.name.endswith("_bucket") and s.labels["op"] == "put_page"
    ]
    assert len(buckets) == len(LATENCY_BUCKETS_S) + 1
    assert [float(s.labels["le"]) for s in buckets[:-1]] == list(LATENCY_BUCKETS_S)
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    assert counts[0] == 0 and counts[1] == 1 and counts[-1] == 2  # 7 us, then 30 us
    assert value(samples, "tmemd_op_duration_seconds_count", op="put_page") == 2
    assert value(samples, "tmemd_op_duration_seconds_sum", op="put_page") == pytest.approx(37e-6)
    assert value(samples, "tmemd_op_duration_seconds_bucket", op="get_page", le="1.0") == 0
    assert value(samples, "tmemd_op_duration_seconds_bucket", op="get_page", le="+Inf") == 1


def test_server_families() -> None:
    engine, _ = make_engine()
    samples = scrape(engine, server_stats(connections=5, bytes_in=123, bytes_out=456))
    assert value(samples, "tmemd_connections") == 5
    assert value(samples, "tmemd_connections_max") == 4096
    assert value(samples, "tmemd_connections_accepted_total") == 10
    assert value(samples, "tmemd_connections_refused_total") == 2
    assert value(samples, "tmemd_network_received_bytes_total") == 123
    assert value(samples, "tmemd_network_sent_bytes_total") == 456
    assert value(samples, "tmemd_process_start_time_seconds") == 1.7e9


def test_process_figures_are_this_process() -> None:
    engine, _ = make_engine()
    before = read_process_figures()
    samples = scrape(engine)
    rss = value(samples, "tmemd_process_resident_memory_bytes")
    # The same reading a moment later: within 16 MiB of the first (no big
    # allocation happens in between), and far above zero.
    assert rss > 1 << 20 and abs(rss - before.resident_bytes) < 16 << 20
    assert value(samples, "tmemd_process_cpu_seconds_total") >= before.cpu_seconds > 0
    assert value(samples, "tmemd_process_open_fds") >= 3


def test_server_stats_of_reads_a_server_by_duck_typing() -> None:
    class Session:
        def __init__(self, client: str | None) -> None:
            self.client = client

    class Conn:
        def __init__(self, client: str | None) -> None:
            self.session = Session(client)

    class Config:
        max_connections = 77

    class Server:
        def __init__(self) -> None:
            self.connections = {Conn("a"), Conn("a"), Conn("b"), Conn(None)}
            self.connections_total = 9
            self.connections_refused = 1
            self.bytes_in = 11
            self.bytes_out = 22
            self.latency = LatencyRecorder()
            self.config = Config()
            self.unauthenticated_connections = 1
            self.hello_timeouts = 3
            self.unauthenticated_evicted = 4
            self.auth_failures = 5
            self.auth_throttled = 6

    stats = server_stats_of(Server(), started_at=5.0)
    assert stats.connections == 4
    assert dict(stats.connections_by_client) == {"a": 2, "b": 1}
    assert (stats.connections_total, stats.connections_refused) == (9, 1)
    assert (stats.bytes_in, stats.bytes_out, stats.max_connections) == (11, 22, 77)
    assert stats.started_at == 5.0 and stats.latency == ()
    assert stats.unauthenticated == 1
    assert dict(stats.unauthenticated_closed) == {"hello_timeout": 3, "evicted": 4}
    assert (stats.auth_failures, stats.auth_throttled) == (5, 6)


def test_scrape_is_cheap_enough_for_many_pools() -> None:
    """Not a timing assertion: a smoke test that 64 pools x 8 clients scrape at all."""
    engine, _ = make_engine()
    for c in range(8):
        engine.connect(f"c{c}")
        for _ in range(64):
            new_pool(engine, f"c{c}", persistent=False)
    t0 = time.perf_counter()
    samples = scrape(engine)
    print(f"scrape of 512 pools: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    assert len(samples["tmemd_stored_pages"]) == 512


def test_page_ops_are_exported_at_zero_before_any_request() -> None:
    """A series born already counting a burst would show rate() no increase."""
    engine, _ = make_engine()
    samples = scrape(engine, server_stats(latency=()))
    for op in PAGE_OPS:
        assert value(samples, "tmemd_op_duration_seconds_count", op=op) == 0
        assert value(samples, "tmemd_op_duration_seconds_bucket", op=op, le="+Inf") == 0
    engine.connect("alice")
    pid = new_pool(engine, "alice", persistent=False)
    samples = scrape(engine)
    pool = dict(client="alice", pool=str(pid), pool_kind="ephemeral")
    ops = [s for s in samples["tmemd_ops"] if s.labels.items() >= pool.items()]
    assert len(ops) == 6 and all(s.value == 0 for s in ops)


def test_op_labels_are_the_wire_opcode_names() -> None:
    from tmem.proto import Opcode

    assert set(PAGE_OPS) <= {op.name.lower() for op in Opcode}


def test_every_pam_a_pool_may_name_exports_with_its_role() -> None:
    engine, _ = make_engine(ephemeral_pam="zbud", persistent_pam="zsmalloc")
    engine.connect("a")
    for persistent in (False, True):
        for pam in ("zbud", "xvmalloc", "zsmalloc", None):
            pool = engine.new_pool(
                "a",
                persistent=persistent,
                shared_uuid=None,
                precompressed=False,
                page_size=PAGE,
                codec=None,
                pam=pam,
            )
            assert engine.put("a", pool, 1, 0, page(pool)) is None
    samples = scrape(engine)
    roles = {s.labels["pam"]: s.labels["pool_kind"] for s in samples["tmemd_pam_objects"]}
    assert roles == {"zbud": "ephemeral", "zsmalloc": "persistent", "xvmalloc": "named"}
    assert sum(s.value for s in samples["tmemd_pam_objects"]) == 8


def test_a_failing_group_is_left_out_counted_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(stats: object) -> Iterator[Metric]:
        raise RuntimeError("a bug in one family")

    groups = (*tmemd.metrics.ENGINE_GROUPS, ("broken", broken))
    monkeypatch.setattr(tmemd.metrics, "ENGINE_GROUPS", groups)
    engine, _ = make_engine()
    registry = CollectorRegistry()
    registry.register(TmemdCollector(engine.statistics, server_stats))
    for scrapes in (1, 2):
        text = generate_latest(registry).decode()
        found = {fam.name: fam.samples for fam in text_string_to_metric_families(text)}
        assert "tmemd_pools" in found and "tmemd_connections" in found
        errors = {s.labels["group"]: s.value for s in found["tmemd_metrics_errors"]}
        assert errors["broken"] == scrapes and errors["pools"] == 0
    assert "a bug in one family" in caplog.text and "'broken'" in caplog.text
