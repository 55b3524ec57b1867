"""The command line sits on top of the ops modules, never under them: no ops module imports `fate_components.cli`."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

OPS = Path(__file__).resolve().parents[2] / "fate_components" / "ops"


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (function-level imports too), relative ones made absolute."""
    package = "fate_components.ops"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}   # `from fate_components import cli`
    return found


@pytest.mark.parametrize("path", sorted(OPS.glob("*.py")), ids=lambda p: p.name)
def test_no_ops_module_imports_the_cli(path):
    cli = {m for m in _imported_modules(path) if m == "fate_components.cli" or m.startswith("fate_components.cli.")}
    assert not cli, f"{path.name} imports {sorted(cli)}; take paths from ops/workspace.py instead"


def test_the_check_sees_each_spelling_of_an_import_of_the_cli(tmp_path):
    for line in ("from fate_components.cli import main", "import fate_components.cli",
                 "from fate_components import cli", "def f():\n    from ..cli import PROJECT_HOME"):
        module = tmp_path / "m.py"
        module.write_text(line + "\n")
        assert "fate_components.cli" in _imported_modules(module), line
