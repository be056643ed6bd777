"""Which build runs: every hot-path module compiled, or every one interpreted.

``make test`` sets ``TMEMD_EXPECT_BUILD`` for each of its two runs, so a
build that silently fell back (a module left out of the compile, a stale or
missing extension) fails here instead of being measured or tested as the
other build.  The source-first finder behind ``TMEMD_PURE_PYTHON`` is tested
in a subprocess, where it can be switched on before anything is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tmem.proto._build import COMPILED_MODULES, PURE_ENV, BuildInfo, build_info

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = os.environ.get("TMEMD_EXPECT_BUILD")


@pytest.mark.skipif(EXPECTED is None, reason="TMEMD_EXPECT_BUILD not set (make test sets it)")
def test_the_build_under_test_is_the_expected_one() -> None:
    info = build_info()
    assert info.kind == EXPECTED, info.describe()
    assert len(info.compiled) + len(info.interpreted) == len(COMPILED_MODULES)


def test_every_compiled_module_has_a_source() -> None:
    dirs = {"tmemd": ROOT / "tmemd", "tmem.proto": ROOT / "proto", "tmem.client": ROOT / "client"}
    for name in COMPILED_MODULES:
        package = next(p for p in dirs if name == p or name.startswith(p + "."))
        rest = name[len(package) + 1 :].split(".")
        path = dirs[package].joinpath(*rest).with_suffix(".py")
        assert path.is_file(), f"{name}: no {path}"


def _run(*argv: str, **env: str) -> str:
    """Run ``argv`` with ``env`` over this environment less the switch; its stdout."""
    full = {k: v for k, v in os.environ.items() if k != PURE_ENV} | env
    out = subprocess.run(argv, capture_output=True, text=True, env=full, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _python(code: str, **env: str) -> str:
    return _run(sys.executable, "-c", code, **env)


def test_the_switch_loads_every_hot_module_from_its_source() -> None:
    code = (
        "import tmemd.engine, tmem.client\n"
        "from tmem.proto._build import build_info\n"
        "i = build_info()\n"
        "print(i.kind, len(i.compiled))\n"
    )
    assert _python(code, **{PURE_ENV: "1"}) == "interpreted 0"


def test_the_engine_alone_honours_the_switch() -> None:
    # The engine imports no tmem.*: tmemd's own __init__ must install the finder.
    code = "import tmemd.engine._index as m\nprint(m.__file__.endswith('.py'))\n"
    assert _python(code, **{PURE_ENV: "1"}) == "True"


def test_zero_means_off() -> None:
    code = "from tmem.proto._build import build_info\nprint(build_info().kind)\n"
    with_zero = _python(code, **{PURE_ENV: "0"})
    without = _python(code)
    assert with_zero == without


def test_version_says_which_build_runs() -> None:
    tmemd = str(Path(sys.executable).with_name("tmemd"))
    interpreted = _run(tmemd, "--version", **{PURE_ENV: "1"})
    assert interpreted.startswith("tmemd ") and "interpreted build" in interpreted
    kind = _python("from tmem.proto._build import build_info\nprint(build_info().kind)\n")
    assert f"{kind} build" in _run(tmemd, "--version")


def test_describe_names_the_interpreted_modules_of_a_mixed_build() -> None:
    info = BuildInfo(["a.b"], ["a.c"])
    assert info.kind == "mixed"
    assert "a.c" in info.describe() and "1 of 2" in info.describe()
