"""Which build runs: the modules compiled with mypyc, and the interpreted switch.

The hot path (engine, PAMs and index, this package's codec, the daemon's
per-read dispatch and handlers, the client core) is compiled with mypyc
from the same typed sources every other module is written in
(docs/build.md).  ``COMPILED_MODULES`` is the one list of them: ``setup.py``
compiles it, ``build_info()`` reports on it (``tmemd --version``), and the
tests check that each one really is compiled.

``TMEMD_PURE_PYTHON=1`` means "interpreted": at build time ``setup.py``
compiles nothing, and at run time an installed compiled build loads the
``.py`` sources that sit beside its extension modules instead.  The run-time
switch is a finder placed first on ``sys.meta_path`` when this package is
imported, which every compiled module's package does before its first
compiled import: ``tmem.proto`` is the bottom layer of both ``tmemd`` and
``tmem.client``.  It lets one installation run either build (CI runs the
engine's model tests both ways; an operator can rule the compiler out
when chasing a fault) without a second install.

Standard library only, and never compiled itself: ``setup.py`` imports it
by path before anything is built.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = [
    "COMPILED_MODULES",
    "PURE_ENV",
    "BuildInfo",
    "build_info",
    "install_pure_finder",
    "pure_requested",
]

#: Set (to anything but "" or "0") to build or run the interpreted build.
PURE_ENV = "TMEMD_PURE_PYTHON"

#: The modules setup.py compiles with mypyc; package ``__init__`` modules
#: stay interpreted (they only re-export, and this switch must run first).
COMPILED_MODULES: tuple[str, ...] = (
    # tmem.proto: the frame codec both ends run once per page.
    "tmem.proto._codec",
    "tmem.proto._frames",
    "tmem.proto._constants",
    "tmem.proto._errors",
    # tmem.client: the sans-IO core every call goes through.
    "tmem.client._core",
    # tmemd: the daemon's answer to a read burst and its request handlers.
    "tmemd._dispatch",
    "tmemd._handlers",
    "tmemd._session",
    # tmemd.engine: the engine and its collaborators, index, policy, codecs.
    "tmemd.engine._config",
    "tmemd.engine._engine",
    "tmemd.engine._errors",
    "tmemd.engine._freeing",
    "tmemd.engine._index",
    "tmemd.engine._invariants",
    "tmemd.engine._ledger",
    "tmemd.engine._listing",
    "tmemd.engine._memory",
    "tmemd.engine._pages",
    "tmemd.engine._policy",
    "tmemd.engine._registry",
    "tmemd.engine._resize",
    "tmemd.engine._restore",
    "tmemd.engine._snapshot",
    "tmemd.engine._space",
    "tmemd.engine._state",
    "tmemd.engine._stats",
    "tmemd.engine._tenancy",
    "tmemd.engine.codecs",
    # tmemd.engine.pam: every PAM.
    "tmemd.engine.pam._arena",
    "tmemd.engine.pam._base",
    "tmemd.engine.pam._bytes",
    "tmemd.engine.pam._pam",
    "tmemd.engine.pam._same",
    "tmemd.engine.pam._tabled",
    "tmemd.engine.pam._xvmalloc",
    "tmemd.engine.pam._zbud",
    "tmemd.engine.pam._zscheck",
    "tmemd.engine.pam._zsclasses",
    "tmemd.engine.pam._zsmalloc",
    "tmemd.engine.pam._zsspans",
)


def pure_requested() -> bool:
    """Whether the environment asks for the interpreted build (set, and not "0")."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


class _SourceFirst:
    """A meta path finder that loads the ``.py`` beside a compiled module.

    Only names in ``COMPILED_MODULES`` are looked at; for those, the usual
    path search runs and, when it finds an extension module with its source
    beside it, the source is loaded instead.  With no source beside it (a
    wheel built without sources), the extension is used: there is nothing
    else to run.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        origin = spec.origin if spec is not None else None
        if origin is None or not origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            return spec
        source = origin[: origin.index(".", origin.rindex(os.sep))] + ".py"
        if not os.path.exists(source):
            return spec
        return importlib.util.spec_from_file_location(fullname, source)


def install_pure_finder() -> bool:
    """Put the source-first finder in place if the interpreted build is asked for."""
    if not pure_requested():
        return False
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(COMPILED_MODULES))
    return True


class BuildInfo:
    """What ``tmemd --version`` reports: which modules run compiled."""

    def __init__(self, compiled: list[str], interpreted: list[str]) -> None:
        self.compiled = compiled
        self.interpreted = interpreted

    @property
    def kind(self) -> str:
        """``compiled``, ``interpreted``, or ``mixed`` (a partial or stale build)."""
        if not self.interpreted:
            return "compiled"
        return "interpreted" if not self.compiled else "mixed"

    def describe(self) -> str:
        total = len(self.compiled) + len(self.interpreted)
        if self.kind == "compiled":
            return f"compiled build (mypyc, {total} modules)"
        if self.kind == "interpreted":
            why = f", {PURE_ENV} set" if pure_requested() else ""
            return f"interpreted build (pure Python{why})"
        return (
            f"mixed build: {len(self.compiled)} of {total} modules compiled; "
            f"interpreted: {', '.join(self.interpreted)}"
        )


def build_info(names: Sequence[str] = COMPILED_MODULES) -> BuildInfo:
    """Import each hot-path module and sort them by whether an extension was loaded."""
    compiled: list[str] = []
    interpreted: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that package is not installed (tmem-client alone has no tmemd)
            raise
        origin = getattr(module, "__file__", None) or ""
        is_ext = origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        (compiled if is_ext else interpreted).append(name)
    return BuildInfo(compiled, interpreted)


install_pure_finder()
