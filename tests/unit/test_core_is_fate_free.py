import pkgutil
import subprocess
import sys
from pathlib import Path

import fate_components.core as core

ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_without_fate():
    # Prepare: every core module, imported in a fresh interpreter where `import fate` fails.
    modules = [f"fate_components.core.{m.name}" for m in pkgutil.iter_modules(core.__path__)]
    code = ("import sys; sys.modules['fate'] = None; sys.modules['fate_flow'] = None\n"
            + "".join(f"import {m}\n" for m in modules))
    # Execute
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    # Assert
    assert len(modules) >= 10
    assert result.returncode == 0, result.stderr
