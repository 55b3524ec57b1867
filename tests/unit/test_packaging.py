"""fate-lung's packaging: pyproject.toml declares every distribution that fate_components imports, and
the wheel, pip-installed into an environment that holds only FATE 2.2, works there.

A FATE site installs FATE first, then plugins into the same environment; FATE-Flow's task processes
import the plugin from site-packages. So the wheel's declared dependencies are all the plugin gets.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fate_components"
COMPONENTS = ("luna16_reader", "homo_lung_nn", "lung_evaluation")
# Imported by fate_components, but part of the FATE platform a site installs before any plugin, and
# not declarable: fate_flow==2.2.0 pins typing-extensions==4.8.0, torch needs >= 4.10, so pip cannot
# resolve it next to torch; scripts/install_fate.sh installs it with --no-deps.
FATE_PLATFORM = {"fate_flow": "fate_flow==2.2.0"}
# fate_flow's one requirement that the FATE step leaves out on purpose (see FATE_PLATFORM).
KNOWN_CONFLICT = "fate-flow 2.2.0 has requirement typing-extensions==4.8.0"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _catches_import_error(node: ast.Try) -> bool:
    names = []
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names += [k.id for k in kinds if isinstance(k, ast.Name)]
    return bool({"ImportError", "ModuleNotFoundError"} & set(names))


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(top-level module, line, optional) for every absolute import in `path`, also those inside
    functions and `importlib.import_module("...")` / `__import__("...")` of a literal name. An import
    inside a `try:` that catches ImportError is optional."""
    found = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name.split(".")[0], node.lineno, optional) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno, optional))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            found.append((node.args[0].value.split(".")[0], node.lineno, optional))
        if isinstance(node, ast.Try) and _catches_import_error(node):
            for child in node.body:
                visit(child, True)
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, optional)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def test_every_third_party_import_is_a_declared_dependency():
    # Prepare: what pyproject declares, and which installed distributions provide each import name.
    project = _project()
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    extras = {_requirement_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    providers = md.packages_distributions()
    # Execute: every import of fate_components that is neither the standard library nor fate_components.
    undeclared, unknown = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, line, optional in _imports(path):
            if module in sys.stdlib_module_names or module == "fate_components" or module in FATE_PLATFORM:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            dists = {_normalise(d) for d in providers.get(module, [])}
            if not dists and optional and _normalise(module) in extras:
                continue   # an optional import of an extra this environment did not install (pika: deploy)
            if not dists:
                unknown.append(f"{where}: imports {module}, which no installed distribution provides: "
                               "install it and declare it")
            elif not dists & (runtime | extras if optional else runtime):
                need = ("dependencies or optional-dependencies (the import is optional: its ImportError is caught)"
                        if optional else "[project] dependencies")
                undeclared.append(f"{where}: imports {module}, from {sorted(dists)}: not in pyproject.toml's {need}")
    # Assert
    assert not unknown, "\n".join(unknown)
    assert not undeclared, "\n".join(undeclared)


def test_fate_platform_imports_come_from_the_fate_step():
    # Prepare
    fate_step = (ROOT / "scripts" / "install_fate.sh").read_text()
    imported = {m for path in PACKAGE.rglob("*.py") for m, _, _ in _imports(path)}
    # Assert: the one undeclared import is installed by the FATE step, and really is imported.
    for module, pin in FATE_PLATFORM.items():
        assert module in imported, f"{module} is no longer imported: drop it from FATE_PLATFORM"
        assert f"--no-deps {pin}" in fate_step, f"scripts/install_fate.sh does not install {pin} with --no-deps"


def test_test_tools_are_no_runtime_dependency():
    # Prepare
    project = _project()
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    test = {_requirement_name(r) for r in project["optional-dependencies"]["test"]}
    # Assert
    assert {"pytest", "pytest-timeout", "ruff"} <= test
    assert not runtime & {"pytest", "pytest-timeout", "ruff"}, "test tools belong in the [test] extra"
    assert set(project["entry-points"]["fate.ext.component_desc"]) == set(COMPONENTS)


def _paths_outside_the_package(path: Path) -> list[str]:
    """`Path(__file__)...parents[k]` or `.parent.parent...` of `path` that leave fate_components/: in a
    wheel install they point into site-packages, where nothing but the package is."""
    depth = len(path.relative_to(PACKAGE).parts) - 1        # parents[depth] is fate_components/ itself
    source = path.read_text()
    found = []
    for node in ast.walk(ast.parse(source)):
        up, base = None, None
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents"
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
            up, base = node.slice.value, node.value.value
        elif isinstance(node, ast.Attribute) and node.attr == "parent":
            n, base = 0, node
            while isinstance(base, ast.Attribute) and base.attr == "parent":
                n, base = n + 1, base.value
            up = n - 1
        from_here = base is not None and any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(base))
        if up is not None and up > depth and from_here:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def test_package_reads_no_files_outside_itself():
    # Prepare / Execute: every path the package builds from its own location.
    outside = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _paths_outside_the_package(path)]
    # Assert: a wheel install holds only fate_components/ (and no deploy/, docs/ next to it).
    assert not outside, "\n".join(outside)


def _run(cmd: list, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stderr[-4000:]}"
    return result


_CHECK_INSTALLED = """
import importlib, importlib.metadata as md, json, pathlib, pkgutil, sys, sysconfig
import fate_components
site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
names = ["fate_components"] + [m.name for m in pkgutil.walk_packages(fate_components.__path__, "fate_components.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "file": str(pathlib.Path(fate_components.__file__).resolve()), "site": str(site), "modules": names,
    "direct_url": json.loads(md.distribution("fate-lung").read_text("direct_url.json")),
    "components": sorted(ep.name for ep in md.entry_points(group="fate.ext.component_desc")),
    "scripts": sorted(ep.name for ep in md.distribution("fate-lung").entry_points if ep.group == "console_scripts"),
}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_wheel_works_when_pip_installed_into_a_fate_environment(tmp_path):
    # Prepare: a fresh venv with FATE 2.2 exactly as scripts/install.sh's FATE step installs it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHON"] = str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}")
    env["OMP_NUM_THREADS"] = "1"
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    python = venv / "bin" / "python"
    _run(["bash", "scripts/install_fate.sh", venv], ROOT, env, 1200)
    # Positive control: the FATE environment lacks fate-lung's own dependencies (numba, opacus, ...).
    bare = subprocess.run([python, "-I", "-c", "import numba"], cwd=work, env=env, capture_output=True)
    assert bare.returncode != 0, "numba is already in the FATE environment: the test would prove nothing"
    # Execute: build the wheel, pip-install it with its dependencies, no extras.
    wheel = _run(["bash", "scripts/build_wheel.sh", venv, tmp_path / "dist"], ROOT, env, 600).stdout.strip()
    _run([venv / "bin" / "pip", "install", "--disable-pip-version-check", "-q", wheel], work, env, 1200)
    # Assert: everything below runs from `work`, in isolated mode: the source tree is not on sys.path.
    installed = json.loads(_run([python, "-I", "-c", _CHECK_INSTALLED], work, env, 600).stdout)
    assert Path(installed["file"]).is_relative_to(installed["site"]), installed["file"]
    assert installed["direct_url"]["url"].endswith(".whl"), installed["direct_url"]
    assert {"fate_components.core.imaging.patches", "fate_components.core.privacy.dp", "fate_components.ops.report",
            "fate_components.cli"} <= set(installed["modules"])          # numba, opacus, matplotlib, ...
    assert installed["components"] == sorted(COMPONENTS)
    assert installed["scripts"] == ["fate-lung"]
    for name in COMPONENTS:
        desc = work / f"{name}.yaml"
        _run([python, "-I", "-m", "fate.components", "component", "desc", "--name", name, "--save", desc],
             work, env, 600)
        assert f"name: {name}" in desc.read_text(), desc.read_text()[:500]
    _run([venv / "bin" / "fate-lung", "--help"], work, env, 300)
    check = subprocess.run([venv / "bin" / "pip", "check"], cwd=work, env=env, capture_output=True, text=True)
    problems = [line for line in check.stdout.splitlines() if line and not line.startswith(KNOWN_CONFLICT)]
    assert not problems, "\n".join(problems)
    shutil.rmtree(venv)   # 2 GB; pytest keeps a failed run's for its last three sessions
