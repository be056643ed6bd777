"""--busy-poll through the real daemon: it serves as usual, spins while
traffic flows, and stops spinning once the traffic stops."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from tmem.client import Client

from ..conftest import Daemon

PAGES = [bytes([i]) * 2048 + os.urandom(2048) for i in range(64)]


def cpu_seconds(daemon: Daemon) -> float:
    """User + system CPU of the daemon so far (/proc/PID/stat)."""
    with open(f"/proc/{daemon.proc.pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paced_pings(client: Client, count: int, gap_s: float) -> float:
    """``count`` pings ``gap_s`` apart; return the wall time they took."""
    start = time.monotonic()
    for _ in range(count):
        client.ping()
        time.sleep(gap_s)
    return time.monotonic() - start


def test_busy_poll_serves_pages_and_spins_only_while_traffic_flows(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory("--busy-poll", "10000")  # 10 ms, the longest window
    with Client(daemon.address, client_name="spin") as client:
        pool = client.new_pool(persistent=True)
        assert all(pool.put_many([(1, i, page) for i, page in enumerate(PAGES)]))
        assert pool.get_many([(1, i) for i in range(len(PAGES))]) == PAGES

        # Requests 5 ms apart fall inside the 10 ms window: the daemon should
        # poll the whole time instead of sleeping between them.
        before = cpu_seconds(daemon)
        wall = paced_pings(client, 60, 0.005)
        spun = cpu_seconds(daemon) - before
        assert spun > 0.3 * wall, f"{spun:.3f} s of CPU over {wall:.3f} s of paced traffic"

        # Silence: the window closes and the daemon sleeps again.
        time.sleep(0.2)
        before = cpu_seconds(daemon)
        time.sleep(1.0)
        idle = cpu_seconds(daemon) - before
        assert idle < 0.2, f"{idle:.3f} s of CPU in 1 s without traffic"
        assert pool.get(1, 3) == PAGES[3]  # and it still answers


def test_without_busy_poll_the_daemon_sleeps_between_requests(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory()
    with Client(daemon.address, client_name="sleep") as client:
        client.ping()
        before = cpu_seconds(daemon)
        wall = paced_pings(client, 60, 0.005)
        used = cpu_seconds(daemon) - before
        assert used < 0.3 * wall, f"{used:.3f} s of CPU over {wall:.3f} s of paced traffic"
