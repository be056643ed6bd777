"""What the harness reads about a server process from /proc, and free ports.

CPU time is ``utime + stime`` from ``/proc/PID/stat`` (fields 14 and 15,
counted over all the process's threads, in clock ticks of
``SC_CLK_TCK``, 100 Hz on Debian: 10 ms resolution, so a timed phase of a
second or more keeps the error of a per-op figure under ~1 %).  The
harness reads it just before releasing the load and just after the last
thread reports, so the difference is the server's work for the timed phase.

RSS is ``VmRSS`` from ``/proc/PID/status`` (kB), read after the timed phase:
the memory the server really holds for the data the case left in it.

Placement.  On this 2-vCPU VM one request/reply round trip costs about 9 µs
when client and server run on the same vCPU and about 70 µs when they run
on different ones (the wake-up of a halted vCPU); left to the scheduler, a
run lands on one or the other and depth-1 figures swing 4-5x between two
runs of the same command.  ``split_cpus`` therefore gives the server the
first half of the CPUs and the client processes the rest (at 2 CPUs: one
each), as a real deployment has the client on another host; every system
gets the same core, so ratios compare like with like.
"""

from __future__ import annotations

import os
import socket

__all__ = ["cpu_seconds", "free_port", "rss_bytes", "split_cpus"]

#: Clock ticks per second of /proc/PID/stat's time fields.
CLK_TCK_HZ = os.sysconf("SC_CLK_TCK")
#: Index of utime in the fields after the ``(comm)`` field: stat's fields
#: 14 and 15 (1-based), minus the two fields (pid, comm) that precede them.
_UTIME_AFTER_COMM = 11


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (all threads)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        text = fh.read()
    # comm may hold spaces and parentheses: the fields start after the last ')'.
    fields = text[text.rindex(b")") + 2 :].split()
    utime, stime = int(fields[_UTIME_AFTER_COMM]), int(fields[_UTIME_AFTER_COMM + 1])
    return (utime + stime) / CLK_TCK_HZ


def rss_bytes(pid: int) -> int:
    """The resident set size of ``pid`` in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for pid {pid}")


def split_cpus() -> tuple[frozenset[int], frozenset[int]] | None:
    """(server CPUs, client CPUs), or None when there is a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return frozenset(cpus[:half]), frozenset(cpus[half:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for peers that
    cannot bind port 0 and report it; a race with another program is
    possible, and the peer's start-up then fails loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
