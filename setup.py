"""Build the hot path with mypyc from the same typed sources (docs/build.md).

Everything else about the project lives in ``pyproject.toml``; this file
only adds the compiled extension modules.  ``TMEMD_PURE_PYTHON=1`` at build
time installs the interpreted build instead (no compiler needed); at run
time the same variable makes an installed compiled build load its ``.py``
sources (``tmem.proto._build``).

Why a staging copy: the repository maps ``proto/`` to ``tmem.proto`` and
``client/`` to ``tmem.client`` (``package-dir``), and mypy names a module by
where its file sits.  mypyc is therefore run over a copy laid out as the
installed packages are (``build/mypyc-src/tmem/proto/...``), so every
compiled module gets its real dotted name; the extensions themselves are
placed by setuptools through the same ``package-dir`` map.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).parent / "proto"))
from _build import COMPILED_MODULES, pure_requested

sys.path.pop(0)

ROOT = Path(__file__).parent
#: Where the packages are copied under their installed names for mypyc.
STAGING = Path("build") / "mypyc-src"
#: Source directory of each top-level installed package.
PACKAGE_DIRS = {"tmemd": "tmemd", "tmem/proto": "proto", "tmem/client": "client"}
#: Checks mypy runs while compiling: those of ``make typecheck``, with the
#: third-party modules that ship no types treated as ``Any``.
MYPY_CONFIG = """\
[mypy]
strict = True
python_version = 3.11
explicit_package_bases = True
mypy_path = {staging}
ignore_missing_imports = True
"""


def _stage() -> list[str]:
    """Copy the three packages under their installed names; return the paths to compile."""
    if STAGING.exists():
        shutil.rmtree(STAGING)
    for target, source in PACKAGE_DIRS.items():
        shutil.copytree(
            ROOT / source,
            STAGING / target,
            ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.md", "vectors", "*.toml"),
        )
    (STAGING / "mypy.ini").write_text(MYPY_CONFIG.format(staging=STAGING))
    paths = []
    for module in COMPILED_MODULES:
        path = STAGING.joinpath(*module.split(".")).with_suffix(".py")
        if not path.exists():
            raise SystemExit(f"setup.py: compiled module {module} has no source {path}")
        paths.append(str(path))
    return paths


def _extensions() -> list[object]:
    if pure_requested():
        return []
    from mypyc.build import mypycify

    return list(
        mypycify(
            ["--config-file", str(STAGING / "mypy.ini"), *_stage()],
            opt_level="3",
            group_name="tmemd",
        )
    )


setup(ext_modules=_extensions())
