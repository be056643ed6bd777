"""Which tmemd build a benchmark measures: compiled or interpreted, checked.

One installation runs either build (docs/build.md): the mypyc extension
modules by default, their ``.py`` sources when the process starts with
``TMEMD_PURE_PYTHON=1``.  So a build is a property of the daemon's
*environment*, not of the install, and the harness gives every tmemd it
starts an environment that says which one it wants (``daemon_env``): the
variable set for ``interpreted``, removed for ``compiled`` (a harness that
itself runs with the variable set must not turn its "compiled" rows
interpreted behind the reader's back).

Asking is not getting: an install built with ``TMEMD_PURE_PYTHON=1 make
dev`` has no extension modules, and a stale build may be half compiled.
``check_builds`` therefore runs ``python -m tmemd.cli --version`` once per
build with the same interpreter and environment the daemons get, reads the
build it names, and refuses a run whose rows would carry the wrong name.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence

from tmem.proto._build import PURE_ENV

__all__ = [
    "BUILDS",
    "COMPILED",
    "INTERPRETED",
    "BuildMismatch",
    "build_kind",
    "check_builds",
    "daemon_env",
    "parse_builds",
]

COMPILED = "compiled"
INTERPRETED = "interpreted"
#: The builds a run can compare, in report order.
BUILDS = (COMPILED, INTERPRETED)
#: Bound on one ``tmemd --version``: it imports every hot-path module, which
#: the interpreted build may first byte-compile on a cold, busy 2-core box.
VERSION_TIMEOUT_S = 60.0
#: ``tmemd --version`` prints ``tmemd V, <kind> build ...``.
_KIND_RE = re.compile(r",\s*(compiled|interpreted|mixed) build")


class BuildMismatch(RuntimeError):
    """The installed tmemd cannot run a build that was asked for."""


def parse_builds(text: str) -> tuple[str, ...]:
    """``--builds``' value: a comma-separated list of ``BUILDS``, each once."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names or any(name not in BUILDS for name in names):
        raise argparse.ArgumentTypeError(f"builds are a list of {', '.join(BUILDS)}, not {text!r}")
    return names


def daemon_env(build: str | None, base: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The environment of a daemon that must run ``build`` (``None``: inherit
    the caller's, as for a peer or a build not named)."""
    if build not in BUILDS:
        return None
    env = dict(os.environ if base is None else base)
    if build == INTERPRETED:
        env[PURE_ENV] = "1"
    else:
        env.pop(PURE_ENV, None)
    return env


def build_kind(version_text: str) -> str | None:
    """``compiled``, ``interpreted`` or ``mixed`` from ``tmemd --version``'s
    output (or a startup log line), None when it names no build."""
    match = _KIND_RE.search(version_text)
    return match.group(1) if match else None


def _version(build: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tmemd.cli", "--version"],
        capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, env=daemon_env(build),
    )  # fmt: skip
    if done.returncode != 0:
        raise BuildMismatch(f"tmemd --version failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def check_builds(builds: Sequence[str]) -> dict[str, str]:
    """For each build, what ``tmemd --version`` says under its environment;
    raises ``BuildMismatch`` when a daemon would run another build."""
    out: dict[str, str] = {}
    for build in builds:
        if build not in BUILDS:
            raise BuildMismatch(f"unknown build {build!r} (choose from {', '.join(BUILDS)})")
        text = _version(build)
        kind = build_kind(text)
        if kind != build:
            fix = (
                "rebuild with `make dev` (without TMEMD_PURE_PYTHON) or measure `--builds "
                "interpreted`"
                if build == COMPILED
                else "this install has no .py sources beside its extension modules"
            )
            raise BuildMismatch(
                f"cannot measure the {build} build: with its environment tmemd runs {text!r}; {fix}"
            )
        out[build] = text
    return out
