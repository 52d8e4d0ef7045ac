"""The layering rules of docs/architecture.md, checked on every import of every module (function-local and
TYPE_CHECKING ones included): a layer never imports a family, a family never imports another family."""

from __future__ import annotations

import ast
from pathlib import Path

import protege

SRC = Path(protege.__file__).parent
LAYERS = ("core", "models", "losses", "train", "data", "evaluate", "stage")


def _module(path: Path) -> str:
    return ".".join(("protege", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("protege")}


def _family(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "tasks" else None


def test_layers_import_no_family_and_families_import_no_other_family():
    modules = {_module(p): _imports(p) for p in SRC.rglob("*.py")}
    families = {_family(m) for m in modules} - {None}
    assert {"classify", "lm"} <= families
    broken = []
    for module, imports in modules.items():
        mine = _family(module)
        is_layer = module.split(".")[1:2] in [[layer] for layer in LAYERS]  # "protege" itself is neither
        for target in imports:
            theirs = _family(target)
            if theirs is not None and (is_layer or (mine is not None and theirs != mine)):
                broken.append(f"{module} imports {target}")
    assert broken == []


def test_the_rule_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from protege.tasks.lm import tables\n")
    assert {_family(m) for m in _imports(bad)} == {"lm"}
