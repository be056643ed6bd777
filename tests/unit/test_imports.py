"""Imports go one way (docs/design.md §9.1), checked on the source tree's AST.

- ``tmem.proto`` imports only the standard library and itself;
- ``tmemd.engine`` imports neither asyncio, uvloop, ``tmem.*`` (the protocol
  and the client), nor any ``tmemd`` module outside ``tmemd.engine``;
- ``tmem.client`` never imports ``tmemd``;
- nothing imports ``tmemd.server`` except ``tmemd.cli`` (and the server's own
  modules), and the one benchmark that measures the server in process.

Every import statement counts, including those under ``if TYPE_CHECKING:``
and inside functions, and so do ``importlib.import_module("...")`` and
``__import__("...")`` calls with a literal name.  ``from X import a`` counts
as importing ``X.a``: ``a`` may be a submodule, and if it is an attribute
the check on ``X`` still applies through the prefix.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Source folder -> the import name it installs as (pyproject's package-dir).
PACKAGE_DIRS = {
    "proto": "tmem.proto",
    "client": "tmem.client",
    "tmemd": "tmemd",
    "bench": "tmem.bench",
}
ENGINE_FORBIDDEN_TOP = {"asyncio", "uvloop", "tmem"}
#: Who may import tmemd.server: the daemon's entry point, the server itself,
#: and bench/server_path.py, which feeds it frames without a socket to time
#: the daemon's own path per request.
SERVER_IMPORTERS = ("tmemd.cli", "tmemd.server", "tmem.bench.server_path")
#: Folders that are not sources: caches, and the copies that an in-tree
#: ``pip install ./client`` leaves in ``client/build``.
SKIPPED_PARTS = {"__pycache__", "build"}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path) -> tuple[str, bool]:
    """Import name of a source file, and whether it is a package ``__init__``."""
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = PACKAGE_DIRS[folder].split(".") + rest
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def resolve(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    if level - 1 >= len(package):
        raise ImportError(f"relative import beyond the top level in {importer}")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _dynamic_target(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in {"import_module", "__import__"} or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def _guarded_imports(tree: ast.AST) -> set[int]:
    """ids of import nodes in the body of a ``try`` that catches ImportError."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = {
            name.id if isinstance(name, ast.Name) else ""
            for handler in node.handlers
            # A bare ``except:`` catches ImportError too.
            for name in (ast.walk(handler.type) if handler.type else [ast.Name("ImportError")])
        }
        if caught & {"ImportError", "ModuleNotFoundError"}:
            guarded |= {
                id(inner)
                for statement in node.body
                for inner in ast.walk(statement)
                if isinstance(inner, ast.Import | ast.ImportFrom)
            }
    return guarded


def imports_of(source: str, importer: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """Every module name ``source`` imports: (name, line, optional)."""
    tree = ast.parse(source)
    guarded = _guarded_imports(tree)
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        optional = id(node) in guarded
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, optional) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module, node.level, importer, is_package)
            for alias in node.names:
                target = base if alias.name == "*" else f"{base}.{alias.name}"
                found.append((target, node.lineno, optional))
        elif isinstance(node, ast.Call):
            dynamic = _dynamic_target(node)
            if dynamic is not None and not dynamic.startswith("."):
                found.append((dynamic, node.lineno, False))
    return found


def rule_broken(importer: str, target: str, optional: bool = False) -> str | None:
    """The rule ``importer`` importing ``target`` breaks, or None.

    ``optional`` imports (guarded by ``except ImportError``, with a fallback)
    are allowed in tmem.proto: its dump tool decodes msgpack bodies when it can.
    """
    top = target.split(".")[0]
    stdlib_or_self = within(target, "tmem.proto") or top in sys.stdlib_module_names
    if within(importer, "tmem.proto") and not optional and not stdlib_or_self:
        return "tmem.proto imports only the standard library"
    if within(importer, "tmemd.engine"):
        if top in ENGINE_FORBIDDEN_TOP:
            return "the engine imports neither asyncio, uvloop nor tmem.*"
        if within(target, "tmemd") and not within(target, "tmemd.engine"):
            return "the engine imports no tmemd module outside tmemd.engine"
    if within(importer, "tmem.client") and within(target, "tmemd"):
        return "the client never imports tmemd"
    if within(target, "tmemd.server") and not any(
        within(importer, allowed) for allowed in SERVER_IMPORTERS
    ):
        return "only tmemd.cli imports tmemd.server"
    return None


def violations(source: str, importer: str, is_package: bool = False) -> list[str]:
    try:
        found = imports_of(source, importer, is_package)
    except ImportError as exc:
        return [str(exc)]
    out = []
    for target, line, optional in found:
        rule = rule_broken(importer, target, optional)
        if rule:
            out.append(f"{importer}:{line} imports {target}: {rule}")
    return out


def source_files() -> list[Path]:
    files = []
    for folder in PACKAGE_DIRS:
        files += [p for p in (ROOT / folder).rglob("*.py") if not SKIPPED_PARTS & set(p.parts)]
    return sorted(files)


def test_the_tree_keeps_the_import_rules() -> None:
    files = source_files()
    names = {module_name(path)[0] for path in files}
    assert {"tmem.proto", "tmem.proto._codec"} <= names  # the walk found the sources
    problems = []
    for path in files:
        importer, is_package = module_name(path)
        problems += violations(path.read_text("utf-8"), importer, is_package)
    assert problems == []


# --- the checker itself must be able to fail ------------------------------------------------


@pytest.mark.parametrize(
    ("importer", "is_package", "source"),
    [
        ("tmem.proto._x", False, "import msgpack"),
        ("tmem.proto._x", False, "def f():\n    import msgpack"),
        ("tmem.proto._x", False, "from tmemd import engine"),
        ("tmem.proto", True, "from tmem.client import Client"),
        ("tmemd.engine._pam", False, "import asyncio"),
        ("tmemd.engine._pam", False, "from asyncio import sleep"),
        ("tmemd.engine._pam", False, "import uvloop"),
        ("tmemd.engine._pam", False, "from tmem.proto import Status"),
        ("tmemd.engine._pam", False, "from tmem import proto"),
        ("tmemd.engine._pam", False, "from .. import config"),
        ("tmemd.engine._pam", False, "from ..config import Config"),
        ("tmemd.engine._pam", False, "import tmemd.metrics"),
        ("tmemd.engine", True, "from .. import server"),
        ("tmemd.engine._pam", False, "if TYPE_CHECKING:\n    import asyncio"),
        ("tmemd.engine._pam", False, "try:\n    import uvloop\nexcept ImportError:\n    pass"),
        ("tmem.proto._x", False, "try:\n    import msgpack\nexcept ValueError:\n    pass"),
        ("tmemd.engine._pam", False, "importlib.import_module('asyncio')"),
        ("tmemd.engine._pam", False, "__import__('uvloop')"),
        ("tmem.client._core", False, "import tmemd.engine"),
        ("tmem.client", True, "from tmemd.engine import Engine"),
        ("tmemd.metrics", False, "from .server import x"),
        ("tmemd.metrics", False, "from tmemd import server"),
        ("tmemd", True, "from . import server"),
        ("tmemd.ctl", False, "import tmemd.server._conn"),
        ("tmem.bench._runner", False, "from tmemd.server import Server"),
        ("tmemd.x", False, "from ... import y"),
    ],
)
def test_checker_catches(importer: str, is_package: bool, source: str) -> None:
    assert violations(source, importer, is_package)


@pytest.mark.parametrize(
    ("importer", "is_package", "source"),
    [
        ("tmem.proto._x", False, "from __future__ import annotations\nimport struct, enum"),
        ("tmem.proto._x", False, "from . import _codec\nfrom ._frames import Request"),
        ("tmem.proto", True, "from ._codec import encode"),
        ("tmem.proto.__main__", False, "from importlib.resources.abc import Traversable"),
        ("tmem.proto._x", False, "try:\n    import msgpack\nexcept ImportError:\n    pass"),
        ("tmem.proto._x", False, "try:\n import a\nexcept (OSError, ModuleNotFoundError):\n a = 0"),
        ("tmem.proto._x", False, "try:\n    import a\nexcept:\n    a = None"),
        ("tmemd.engine._pam", False, "from . import _index\nimport lzo, zstandard"),
        ("tmemd.engine", True, "from ._pam import Arena\nfrom .policy import Policy"),
        ("tmemd.engine._sub._x", False, "from .. import _pam"),
        ("tmem.client._core", False, "from tmem.proto import encode\nimport asyncio"),
        ("tmemd.cli", False, "from .server import serve\nfrom tmemd.server import run"),
        ("tmemd.server._conn", False, "from . import _x\nfrom tmemd.engine import Engine"),
        ("tmemd.server", True, "from ._conn import Connection"),
        ("tmemd.metrics", False, "import tmemd.serverless"),
    ],
)
def test_checker_allows(importer: str, is_package: bool, source: str) -> None:
    assert violations(source, importer, is_package) == []


def test_module_names_follow_package_dir() -> None:
    assert module_name(ROOT / "proto" / "__init__.py") == ("tmem.proto", True)
    assert module_name(ROOT / "proto" / "_codec.py") == ("tmem.proto._codec", False)
    assert module_name(ROOT / "tmemd" / "engine" / "_pam.py") == ("tmemd.engine._pam", False)
    assert module_name(ROOT / "client" / "__init__.py") == ("tmem.client", True)
