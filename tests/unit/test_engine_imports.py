"""The engine imports neither asyncio/uvloop nor the wire format (docs/design.md §9.1)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import tmemd.engine

ENGINE_DIR = Path(tmemd.engine.__file__).resolve().parent
FORBIDDEN = ("asyncio", "uvloop", "tmem")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_engine_sources_import_nothing_forbidden() -> None:
    files = sorted(ENGINE_DIR.rglob("*.py"))
    assert len(files) > 5
    for path in files:
        for name in _imported_modules(path):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {name}"


def test_importing_the_engine_loads_nothing_forbidden() -> None:
    code = (
        "import sys, tmemd.engine\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'asyncio', 'uvloop'} "
        "or m.startswith('tmem.'))\n"
        "print(','.join(bad))\n"
    )
    # The default build: with TMEMD_PURE_PYTHON=1, tmemd's __init__ imports
    # tmem.proto on purpose, to install the interpreted build's finder.
    env = {k: v for k, v in os.environ.items() if k != "TMEMD_PURE_PYTHON"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""
