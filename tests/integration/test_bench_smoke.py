"""tmemd-bench end to end: a tiny matrix against a real tmemd (and the peers
when installed), run as a user runs it (``python -m tmem.bench``).

Checks the JSON's shape, that every system that is installed was measured,
and that every tmemd get returned exactly the bytes put (``wrong == 0``, and
every get of a stored page hit: 256 pages fit the servers many times over,
so nothing may be evicted).  The matrix is small (about 20 cases of a few
hundred requests), so the figures mean nothing; only their presence does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tmem.bench._peers import find_peer

#: Bound on the whole harness run: about 30 fresh servers, each up for well
#: under a second on a 2-core box.
RUN_TIMEOUT_S = 120

ARGS = [
    "--systems", "tmemd,memcached,redis", "--workloads", "get_hit,mixed,flush_object",
    "--pools", "ephemeral,precompressed", "--codecs", "lz4", "--depths", "1,16",
    "--connections", "2", "--processes", "2", "--stored", "256", "--scale", "none",
    "--duration", "0.5", "--ops", "160", "--corpus-pages", "256", "--synthetic",
    "--memory", "64MiB", "--busy-poll", "0,100",
]  # fmt: skip


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "tmem.bench", *ARGS, "--out", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "results.json").read_text())
    assert set(report) == {"meta", "results", "targets", "charts"}
    meta = report["meta"]
    assert meta["command"].startswith("tmemd-bench --systems")
    assert meta["corpus"]["pages"] == 256 and meta["corpus"]["synthetic"]
    assert set(meta["codec_cost_us"]) == {"lz4"}

    expected = {"tmemd"} | {s for s in ("memcached", "redis") if find_peer(s) is not None}
    assert set(meta["systems"]) == expected
    results = report["results"]
    assert {r["system"] for r in results} == expected
    for rec in results:
        assert rec["error"] is None, rec
        assert rec["ops"] > 0 and rec["pages_per_s"] > 0, rec
        assert rec["latency_us"]["samples"] > 0 and rec["latency_us"]["p50"] > 0
        assert rec["rss_bytes"] > 0
        assert rec["wrong"] == 0, rec
        if rec["workload"] == "get_hit":
            assert rec["hits"] == rec["ops"] and rec["misses"] == 0, rec
        if rec["workload"] == "mixed":
            assert rec["hits"] > 0 and rec["misses"] == 0, rec

    tmemd = [r for r in results if r["system"] == "tmemd"]
    assert {r["label"] for r in tmemd} == {
        "tmemd lz4/ephemeral",
        "tmemd precompressed",
        "tmemd lz4/ephemeral bp100",
        "tmemd precompressed bp100",
    }
    assert {r["busy_poll_us"] for r in tmemd} == {0, 100}
    # 2 busy-poll values x 2 pools x (2 workloads x 2 depths + flush)
    assert len(tmemd) == 2 * 2 * (2 * 2 + 1)
    if len(expected) > 1:
        assert any(r.get("vs") for r in tmemd)
    for name in report["charts"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "throughput_d16_c2.png" in report["charts"]
    assert "tmemd lz4/ephemeral" in done.stdout  # the table


def test_servers_are_pinned_with_all_their_threads(tmp_path: Path) -> None:
    from tmem.bench._peers import start_server
    from tmem.bench._proc import split_cpus

    split = split_cpus()
    if split is None:
        return  # one CPU: nothing to split
    server_cpus = split[0]
    systems = ["tmemd"] + [s for s in ("memcached", "redis") if find_peer(s) is not None]
    for system in systems:
        server = start_server(system, tmp_path, 64 << 20, "lz4", server_cpus)
        try:
            tasks = os.listdir(f"/proc/{server.pid}/task")
            assert tasks
            for tid in tasks:
                assert os.sched_getaffinity(int(tid)) == server_cpus, (system, tid)
        finally:
            server.stop()
