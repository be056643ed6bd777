"""The client installs alone: ``pip install ./client`` in a fresh venv.

A data application must get ``tmem.client`` and ``tmem.proto`` without the
daemon's dependencies (python-lzo needs liblzo2-dev to build; uvloop and
prometheus-client are the server's).  This test does what the README tells
a user to do, in a new virtual environment: copy ``client/`` and ``proto/``
(nothing else of the repository, so the build cannot lean on another
folder), run the one install command, then check what got installed and
talk to a real daemon from that venv.  pip fetches the build backend and
msgpack from the configured package index, as a user's pip does.

It is the slowest test of the suite (a venv, an isolated build, two
downloads): marked ``slow``, and kept in the default run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import Daemon

ROOT = Path(__file__).resolve().parents[2]
#: A fresh venv plus an isolated build fetches setuptools and msgpack: a
#: minute on a loaded 2-core box, with room for a slow index.
INSTALL_TIMEOUT_S = 540
#: The daemon's dependencies that the client must not pull in.
DAEMON_ONLY_MODULES = ("lzo", "uvloop", "prometheus_client", "tmemd", "lz4", "zstandard")

CHECK_SCRIPT = """
import importlib.metadata, importlib.util, sys
absent = [m for m in sys.argv[2:] if importlib.util.find_spec(m) is not None]
assert not absent, f"daemon dependencies installed: {absent}"
import tmem.client, tmem.proto
specs = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="fsspec.specs")}
assert specs.get("tmem") == "tmem.client.cleancache:TmemFileSystem", specs
with tmem.client.Client(sys.argv[1], client_name="installed") as client:
    pool = client.new_pool(persistent=True)
    assert pool.put(1, 0, b"i" * 4096)
    assert pool.get(1, 0) == b"i" * 4096
print("client-only install OK")
"""


def copy_client_sources(dest: Path) -> Path:
    """``client/`` and ``proto/`` side by side, without build leftovers."""
    skip = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    for folder in ("client", "proto"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=skip)
    return dest / "client"


def run(argv: list[str | Path], cwd: Path) -> str:
    """Run outside the repository: ``python -c`` would import ./tmemd from there."""
    done = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        cwd=cwd,
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT_S * 2)
def test_client_installs_without_the_daemon_dependencies(daemon: Daemon, tmp_path: Path) -> None:
    source = copy_client_sources(tmp_path / "src")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    run([venv / "bin" / "pip", "install", "-q", source], tmp_path)
    freeze = run([venv / "bin" / "pip", "list", "--format=freeze"], tmp_path)
    installed = freeze.lower().replace("_", "-")
    assert "tmem-client==" in installed and "msgpack==" in installed
    for name in ("python-lzo", "uvloop", "prometheus-client", "tmemd=="):
        assert name not in installed, installed
    check = [venv / "bin" / "python", "-c", CHECK_SCRIPT, daemon.address, *DAEMON_ONLY_MODULES]
    out = run(check, tmp_path)
    assert "client-only install OK" in out
