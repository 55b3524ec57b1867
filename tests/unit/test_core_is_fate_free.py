import pkgutil
import subprocess
import sys
from pathlib import Path

import fate_components.core as core

ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_without_fate():
    # Prepare: every core module in every sub-package, imported in a fresh interpreter where `import fate` fails.
    modules = [m.name for m in pkgutil.walk_packages(core.__path__, prefix="fate_components.core.")]
    code = ("import sys; sys.modules['fate'] = None; sys.modules['fate_flow'] = None\n"
            + "".join(f"import {m}\n" for m in modules))
    # Execute
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    # Assert
    assert {"fate_components.core.imaging.patches", "fate_components.core.federation.round_loop",
            "fate_components.core.synthetic.sites"} <= set(modules)
    assert len(modules) >= 25
    assert result.returncode == 0, result.stderr
