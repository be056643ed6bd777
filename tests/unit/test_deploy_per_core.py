"""``deploy/systemd/tmemd-per-core``: one daemon per core, run as a dry run.

With ``ROOT`` set the script only writes files, so the test runs it for 3
cores and checks what systemd would read: every variable the instanced unit
uses, consecutive ports, the ``--memory`` split rule, one CPU per daemon, and
a ``MemoryMax`` that holds the daemon's share by the documented formula.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tmemd.cli import build_parser, make_config

from .test_deploy_files import (
    MIB,
    SYSTEMD,
    _systemd_bytes,
    expand,
    memory_bound,
    parse_unit,
)

SCRIPT = SYSTEMD / "tmemd-per-core"


def _env(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_per_core_instances_split_memory_and_cores(tmp_path: Path) -> None:
    env = {**os.environ, "ROOT": str(tmp_path)}
    subprocess.run(["sh", str(SCRIPT), "3072", "3", "127.0.0.1"], env=env, check=True)
    exec_start = parse_unit(SYSTEMD / "tmemd@.service")["Service"]["ExecStart"][0]
    argv = shlex.split(exec_start)
    for core in range(3):
        values = _env(tmp_path / "etc" / "tmemd" / f"core{core}.env")
        config = make_config(build_parser().parse_args(expand(argv[1:], values)))
        assert config.memory == 1024 * MIB
        assert values["TMEMD_LISTEN"] == f"127.0.0.1:{7470 + core}"
        assert values["TMEMD_METRICS"] == f"127.0.0.1:{7570 + core}"
        dropin = tmp_path / "etc/systemd/system" / f"tmemd@core{core}.service.d/per-core.conf"
        service = parse_unit(dropin)["Service"]
        assert service["CPUAffinity"] == [str(core)]
        assert _systemd_bytes(service["MemoryMax"][0]) >= memory_bound(config.memory)
