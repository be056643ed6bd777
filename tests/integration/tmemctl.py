"""``tmemctl`` as a subprocess, as an operator runs it, for integration tests."""

from __future__ import annotations

import subprocess
import sys

TMEMCTL = [sys.executable, "-m", "tmemd.ctl"]
#: Bound on one tmemctl run (a cold interpreter imports the client in well under this).
CTL_TIMEOUT_S = 30.0


def run(address: str, name: str, token: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``tmemctl ARGV`` against ``address`` as client ``name``; never raises on failure."""
    return subprocess.run(
        [*TMEMCTL, "--server", address, "--name", name, "--token", token, *argv],
        capture_output=True,
        text=True,
        timeout=CTL_TIMEOUT_S,
        check=False,
    )
