"""Every benchmark script of bench/ starts, both ways the docs run it.

A script is a module of ``tmem.bench`` (bench/ installs as that package), so
it must run as a file (``python bench/x.py``, its folder first on the path)
and as a module (``python -m tmem.bench.x``) from the repository's root,
where the source folders sit in the working directory beside the install.
``--help`` imports everything the script needs and parses its arguments,
without measuring anything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The scripts: bench/'s public modules (the harness's own are private).
SCRIPTS = sorted(p.stem for p in (ROOT / "bench").glob("[!_]*.py"))
#: Bound on one ``--help``: the data-app scripts import pandas and dask,
#: a few seconds on a loaded 2-core box.
HELP_TIMEOUT_S = 60


def _help(*target: str) -> str:
    """stdout of ``python TARGET --help`` run from the repository's root."""
    done = subprocess.run(
        [sys.executable, *target, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_scripts_are_found() -> None:
    assert {"density", "server_path", "codecs", "micro"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("how", ["file", "module"])
def test_script_help(script: str, how: str) -> None:
    target = [f"bench/{script}.py"] if how == "file" else ["-m", f"tmem.bench.{script}"]
    assert _help(*target).startswith("usage:")


def test_harness_help_as_a_module() -> None:
    assert _help("-m", "tmem.bench").startswith("usage: tmemd-bench")
