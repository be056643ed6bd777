"""The daemon's own process figures, read from ``/proc/self`` at scrape time.

Why read them here rather than register prometheus_client's
``ProcessCollector``: the issue asks for every metric under the ``tmemd_``
prefix, and the figure that matters most, the resident set size, is the one
the daemon promises to bound (arena + a documented overhead, docs/design.md §5).
``VmRSS`` from ``/proc/self/status`` is exactly what ``ps`` and the
kernel's OOM killer see.  CPU seconds come from ``resource.getrusage`` (no
parsing, works wherever ``/proc`` does not); on systems without ``/proc``
the RSS falls back to ``ru_maxrss`` (a peak, not a current value) and the
open-file count is omitted.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

__all__ = ["ProcessFigures", "read_process_figures"]

_STATUS_PATH = "/proc/self/status"
_FD_DIR = "/proc/self/fd"


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """One reading of the daemon process."""

    resident_bytes: int
    cpu_seconds: float
    #: Open file descriptors, or None where ``/proc`` is missing.
    open_fds: int | None
    max_fds: int


def _vm_rss_bytes() -> int | None:
    try:
        with open(_STATUS_PATH, "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    # "VmRSS:\t   12345 kB": the kernel always reports kB.
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def read_process_figures() -> ProcessFigures:
    """Read the current RSS, CPU time and file descriptors of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = _vm_rss_bytes()
    if rss is None:
        rss = usage.ru_maxrss * 1024  # Linux reports ru_maxrss in KiB
    try:
        open_fds: int | None = len(os.listdir(_FD_DIR))
    except OSError:
        open_fds = None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return ProcessFigures(
        resident_bytes=rss,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        open_fds=open_fds,
        max_fds=soft,
    )
