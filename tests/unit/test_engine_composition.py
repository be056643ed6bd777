"""The engine is built by composition (docs/design.md, "The engine").

``Engine`` holds its collaborators as attributes: no mixin base classes
(the compiled build takes single inheritance only), and no collaborator is
built with a callable (a callback back into the engine); where one must
tell another something it is handed a narrow collaborator object.  The
sources are read with ``ast``, so the check is the same for the
interpreted and the compiled build.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tmemd.engine
from tmemd.engine import Engine

ENGINE_DIR = Path(tmemd.engine.__file__).resolve().parent
#: The classes ``Engine`` is composed of, and what they are composed of.
COLLABORATORS = {
    "Memory",
    "PersistentShare",
    "Totals",
    "PageFreer",
    "Evictor",
    "Registry",
    "Tenancy",
    "PageStore",
    "Pool",
    "ReverseMap",
    "PageIndex",
    "Space",
}
#: Bases that make an interface, not a second implementation to inherit.
INTERFACE_BASES = {"Protocol", "Generic", "Exception"}


def _classes() -> dict[str, tuple[Path, ast.ClassDef]]:
    found: dict[str, tuple[Path, ast.ClassDef]] = {}
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                found[node.name] = (path, node)
    return found


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Subscript):
        base = base.value
    return ast.unparse(base).rsplit(".", 1)[-1]


def test_engine_has_no_base_class() -> None:
    assert Engine.__mro__ == (Engine, object)


def test_no_engine_class_inherits_from_two_classes() -> None:
    for name, (path, node) in _classes().items():
        bases = [_base_name(b) for b in node.bases if _base_name(b) not in INTERFACE_BASES]
        assert len(bases) <= 1, f"{path.name}: class {name} mixes in {bases}"


def test_no_collaborator_is_built_with_a_callable() -> None:
    classes = _classes()
    assert set(classes) >= COLLABORATORS, COLLABORATORS - set(classes)
    for name in sorted(COLLABORATORS):
        path, node = classes[name]
        inits = [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"]
        assert inits, f"{name} has no __init__"
        args = inits[0].args
        for arg in args.posonlyargs + args.args + args.kwonlyargs:
            annotation = "" if arg.annotation is None else ast.unparse(arg.annotation)
            assert "Callable" not in annotation, f"{path.name}: {name}({arg.arg}: {annotation})"
            assert "partial" not in annotation, f"{path.name}: {name}({arg.arg}: {annotation})"


def test_the_collaborators_are_the_engines_attributes() -> None:
    init = _classes()["Engine"][1]
    body = ast.unparse(next(f for f in init.body if getattr(f, "name", "") == "__init__"))
    for name in COLLABORATORS - {"Pool", "ReverseMap", "PageIndex", "Space"}:
        assert f"{name}(" in body, f"Engine.__init__ does not build its {name}"
    assert "lambda" not in body and "partial(" not in body
