"""``TMEMD_PURE_PYTHON=1`` at build time gives a pure-Python wheel (docs/build.md).

The compiled wheel is what ``make dev`` and the rest of the suite exercise;
this checks the other promise: no compiler, no extension module, and the
same modules as sources.  The wheel is built without build isolation (the
test's venv has setuptools), into a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_pure_switch_builds_a_wheel_without_extensions(tmp_path: Path) -> None:
    env = os.environ | {"TMEMD_PURE_PYTHON": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("tmemd-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")  # no compiled part: not tied to a platform
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".so")]
    for module in ("tmemd/engine/_engine.py", "tmem/proto/_codec.py", "tmem/client/_core.py"):
        assert module in names
