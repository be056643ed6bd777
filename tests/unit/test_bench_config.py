"""tmemd-bench's matrix and command line."""

from __future__ import annotations

import argparse
from collections import Counter

import pytest

from tmem.bench import BenchConfig, build_cases, build_parser, config_from_args, quick_config
from tmem.bench._cli import _ints, _size
from tmem.bench._config import CLIENT_CODEC, NO_VARIANT


def test_quick_matrix_compares_all_three_on_put_and_get() -> None:
    cases = build_cases(quick_config())
    assert Counter(c.system for c in cases) == {"tmemd": 8, "memcached": 4, "redis": 4}
    assert {(c.workload, c.depth) for c in cases} == {
        ("put", 1), ("put", 64), ("get_hit", 1), ("get_hit", 64),
    }  # fmt: skip
    tmemd = [c for c in cases if c.system == "tmemd"]
    assert {(c.codec, c.pool, c.busy_poll_us) for c in tmemd} == {
        ("lz4", "ephemeral", 0),
        ("lz4", "ephemeral", 200),
    }
    assert all(c.pool == c.codec == NO_VARIANT for c in cases if c.system != "tmemd")
    assert not any(c.scale for c in cases)


def test_full_matrix_rules() -> None:
    config = BenchConfig(scale=(1_000, 1_000_000))
    cases = build_cases(config)
    assert all(c.depth == 1 for c in cases if c.workload == "flush_object")
    pre = [c for c in cases if c.pool == "precompressed"]
    assert pre and all(c.codec == CLIENT_CODEC for c in pre)
    # one precompressed variant per busy-poll value, not one per codec
    peer_cases = len([c for c in cases if c.system == "memcached" and not c.scale])
    assert len(pre) == len(config.busy_poll) * peer_cases
    scale = [c for c in cases if c.scale]
    assert sorted((c.system, c.stored) for c in scale) == sorted(
        (s, n) for s in ("tmemd", "memcached", "redis") for n in (1_000, 1_000_000)
    )
    assert all(c.workload == "get_hit" and c.depth == 1 for c in scale)
    assert len(set(cases)) == len(cases)


def test_labels() -> None:
    cases = build_cases(quick_config())
    assert {c.label for c in cases} == {
        "tmemd lz4/ephemeral",
        "tmemd lz4/ephemeral bp200",
        "memcached",
        "redis",
    }


def test_busy_poll_values_are_tmemd_variants() -> None:
    args = build_parser().parse_args(["--quick", "--busy-poll", "0,200", "--scale", "1000"])
    config = config_from_args(args)
    assert config.busy_poll == (0, 200)
    cases = build_cases(config)
    tmemd = [c for c in cases if c.system == "tmemd" and not c.scale]
    assert {c.label for c in tmemd} == {"tmemd lz4/ephemeral", "tmemd lz4/ephemeral bp200"}
    assert sorted({c.busy_poll_us for c in tmemd}) == [0, 200]
    assert {c.busy_poll_us for c in cases if c.system != "tmemd"} == {0}
    (scale,) = [c for c in cases if c.system == "tmemd" and c.scale]
    assert scale.busy_poll_us == 0  # the scale cases use the first value


def test_flags_override_quick() -> None:
    args = build_parser().parse_args(
        ["--quick", "--duration", "0.5", "--systems", "tmemd", "--depths", "1,16", "--synthetic"]
    )
    config = config_from_args(args)
    assert config.duration_s == 0.5
    assert config.systems == ("tmemd",)
    assert config.depths == (1, 16)
    assert config.synthetic is True
    assert config.workloads == quick_config().workloads  # untouched by flags


def test_full_defaults_without_quick() -> None:
    config = config_from_args(build_parser().parse_args([]))
    assert config == BenchConfig()
    assert config.charts and not config.synthetic


def test_sizes_and_lists() -> None:
    assert _size("4GiB") == 4 << 30
    assert _size("512M") == 512 << 20
    assert _size("65536") == 65536
    assert _ints("1,16,64") == (1, 16, 64)
    assert _ints("1e6") == (1_000_000,)
    assert _ints("none") == ()
    with pytest.raises(argparse.ArgumentTypeError):
        _size("lots")
    with pytest.raises(argparse.ArgumentTypeError):
        _ints("1,two")


def test_missing_peer_is_named_and_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from tmem.bench import _runner
    from tmem.bench._progress import Progress

    monkeypatch.setattr(_runner, "find_peer", lambda system: None)
    stream = io.StringIO()
    usable = _runner.available_systems(("tmemd", "memcached", "redis"), Progress(1, stream))
    assert usable == ["tmemd"]
    assert "memcached: server not installed, skipped" in stream.getvalue()
    assert "redis: server not installed, skipped" in stream.getvalue()


def test_compared_cases_run_back_to_back() -> None:
    cases = build_cases(BenchConfig(scale=(1_000,)))
    keys = [(c.scale, c.workload, c.depth, c.connections) for c in cases]
    # every (workload, depth, connections) group is contiguous: all systems
    # of a comparison are measured one after the other
    seen: list[tuple[bool, str, int, int]] = []
    for key in keys:
        if not seen or seen[-1] != key:
            assert key not in seen, key
            seen.append(key)
    first = [c for c in cases if (c.scale, c.workload, c.depth, c.connections) == keys[0]]
    assert [c.system for c in first][-2:] == ["memcached", "redis"]
    assert cases[: len(first)] == first


def test_servers_make_a_case_per_daemon_count() -> None:
    config = quick_config().replace(
        systems=("tmemd",), pools=("ephemeral", "persistent"), busy_poll=(0,),
        servers=(1, 2), replicas=2, workloads=("put",), depths=(64,),
    )  # fmt: skip
    cases = build_cases(config)
    assert sorted({(c.servers, c.pool, c.replicas) for c in cases}) == [
        (1, "ephemeral", 1), (1, "persistent", 2), (2, "ephemeral", 1), (2, "persistent", 2),
    ]  # fmt: skip
    labels = {c.label for c in cases}
    assert "tmemd lz4/ephemeral x2" in labels and "tmemd lz4/persistent x2 r2" in labels
    assert all(c.servers == 0 for c in build_cases(quick_config()))
