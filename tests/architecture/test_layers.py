"""The dependency rule of docs/architecture.md: each layer imports only the layers below it.

Every ``import sppnet.X`` / ``from sppnet.X... import`` in the package is read from the source
(including imports inside functions), so a lazy import that breaks the rule is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sppnet"

#: Bottom to top; a package may import the packages of earlier rows only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("utils",),
    ("io", "config"),
    ("ops",),
    ("data",),
    ("proposals", "evaluation"),
    ("models",),
    ("engine",),
    ("inference",),
    ("jobs", "benchmarks"),
    ("cli",),
    ("__main__",),
)
RANK = {name: rank for rank, row in enumerate(LAYERS) for name in row}


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported sppnet sub-package)`` of every sppnet import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "sppnet":
                names = [f"sppnet.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sppnet" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def _package_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_package_has_a_layer():
    packages = {_package_of(p) for p in SOURCES}
    assert packages <= set(RANK), f"no layer for {sorted(packages - set(RANK))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_lower_layers(path: Path):
    own = _package_of(path)
    wrong = [
        f"line {line}: sppnet.{target} (layer {RANK[target]}) from {own} (layer {RANK[own]})"
        for line, target in _imports(path)
        if target != own and target in RANK and RANK[target] >= RANK[own]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_violation(tmp_path):
    # A models module importing the engine, lazily: the rule test must notice it.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sppnet.engine.checkpoint import save_model\n")
    assert _imports(bad) == [(2, "engine")]
    assert RANK["engine"] > RANK["models"]


def test_no_command_imports_another_commands_module():
    commands = sorted((PACKAGE / "cli").glob("*.py"))
    offenders = []
    for path in commands:
        if path.name in ("main.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("sppnet.cli"):
                offenders.append(f"{path.name}:{node.lineno} imports {module}")
    assert not offenders, offenders
