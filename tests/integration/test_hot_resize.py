"""Hot resize against the real daemon: ``tmemctl set-memory SIZE``.

Shrinking a daemon full of ephemeral and persistent pages evicts ephemeral
pages only (every persistent page reads back), ``tmemctl stats`` and the
metrics show the new limit at once, a shrink below the persistent pages is
refused with the smallest possible limit in the message, growing admits
puts that were refused, and only an administrator may resize.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tmem.client import Client, Forbidden

from ..conftest import Daemon
from . import authfile
from .tmemctl import run as tmemctl_run

PAGE = 4096
MIB = 1 << 20
TOKENS = {"web": "web-token", "ops": "ops-token"}
#: Bound on one tmemctl run and on waiting for the metrics port.
TIMEOUT_S = 30.0


def page(seed: int) -> bytes:
    """Compresses about 2:1 with LZO: half random, half zeros."""
    return random.Random(seed).randbytes(PAGE // 2) + bytes(PAGE // 2)


def tmemctl(d: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    return tmemctl_run(d.address, "ops", TOKENS["ops"], *argv)


def limit_in_metrics(port: int) -> float:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("tmemd_memory_limit_bytes "):
                return float(line.split()[1])
    raise AssertionError("no tmemd_memory_limit_bytes")


def test_set_memory_through_tmemctl(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> None:
    port_file = tmp_path / "metrics.port"
    d = daemon_factory(
        "--memory", "16MiB", "--max-memory", "64MiB",
        "--auth-file", str(authfile.write_auth(tmp_path, TOKENS)),
        "--metrics", "127.0.0.1:0", "--metrics-port-file", str(port_file),
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    while not port_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    metrics_port = int(port_file.read_text())
    with Client(d.address, client_name="web", token=TOKENS["web"], timeout=TIMEOUT_S) as web:
        persistent = web.new_pool(persistent=True)
        cache = web.new_pool(persistent=False)
        kept = {i: page(i) for i in range(1500)}  # ~3 MiB stored
        assert all(persistent.put_many([(0, i, p) for i, p in kept.items()]))
        cache.put_many([(0, i, page(10_000 + i)) for i in range(6000)])  # fills the arena
        with pytest.raises(Forbidden):
            web.control("set_memory", bytes=8 * MIB)

        done = tmemctl(d, "set-memory", "8MiB")
        assert done.returncode == 0, done.stderr
        assert "memory limit 8.0MiB (was 16.0MiB)" in done.stdout, done.stdout
        stats = json.loads(tmemctl(d, "--json", "stats").stdout)
        assert stats["memory_limit_bytes"] == 8 * MIB
        assert stats["memory_used_bytes"] <= 8 * MIB
        assert limit_in_metrics(metrics_port) == 8 * MIB
        assert persistent.get_many([(0, i) for i in kept]) == list(kept.values())

        done = tmemctl(d, "set-memory", "2MiB")
        assert done.returncode == 1 and "no lower than" in done.stderr, done.stderr
        assert limit_in_metrics(metrics_port) == 8 * MIB

        more = {i: page(i) for i in range(1500, 9000)}  # ~15 MiB more: past 8 MiB
        stored = persistent.put_many([(0, i, p) for i, p in more.items()])
        assert not all(stored)
        done = tmemctl(d, "set-memory", "48MiB")
        assert done.returncode == 0, done.stderr
        assert all(persistent.put_many([(0, i, p) for i, p in more.items()]))
        assert persistent.get_many([(0, i) for i in kept]) == list(kept.values())
        assert limit_in_metrics(metrics_port) == 48 * MIB
