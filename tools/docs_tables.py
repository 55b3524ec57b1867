"""The parameter and artifact tables of docs/components/*.md, generated from the components' FATE specs.

    .venv/bin/python tools/docs_tables.py --write   # rewrite every generated table
    .venv/bin/python tools/docs_tables.py --check             # exit 1, naming each page that differs

A page holds each table between two marker comments::

    <!-- generated: parameters homo_lung_nn train -->
    ...
    <!-- end generated -->

The kind is ``parameters`` or ``artifacts``; the stage (``train``, ``predict``) is given for a
component with stages and left out for one without. Each table is rendered from the spec FATE
itself builds (``Component.dict()``, what ``python -m fate.components component desc`` prints),
one stage at a time, so a stage whose artifacts differ from another's still renders. The choices
of a ``string_choice`` are not in the spec; they come from the parameter's declared type. FATE's invisible
``metric`` output (every component has it) is left out of the artifact tables.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

COMPONENTS = ("luna16_reader", "homo_lung_nn", "lung_evaluation")
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs" / "components"
COMMAND = ".venv/bin/python tools/docs_tables.py --write"
KINDS = ("parameters", "artifacts")

_BLOCK = re.compile(r"(<!-- generated: (\w+) (\w+)(?: (\w+))? -->\n)(.*?)(<!-- end generated -->)", re.DOTALL)
_JSON_TYPES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "object": "dict",
               "array": "list"}
_BOUNDS = (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤"))


@dataclass(frozen=True)
class Table:
    kind: str
    component: str
    stage: str | None

    @property
    def marker(self) -> str:
        return f"<!-- generated: {self.kind} {self.component}{'' if self.stage is None else ' ' + self.stage} -->"

    @property
    def label(self) -> str:
        return self.component if self.stage is None else f"{self.component} ({self.stage})"


def load_component(name: str):
    """The `cpn.component` object FATE registers under `name` (the entry point's target)."""
    if name not in COMPONENTS:
        raise KeyError(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}")
    return getattr(importlib.import_module(f"fate_components.components.{name}"), name)


def stages(component) -> dict[str | None, object]:
    """{stage name: the stage's component}; {None: component} for a component without stages."""
    if not component.stage_components:
        return {None: component}
    return {sub.name: sub for sub in component.stage_components}


def expected_tables() -> list[Table]:
    return [Table(kind, name, stage) for name in COMPONENTS for stage in stages(load_component(name))
            for kind in KINDS]


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(meta: dict, declared) -> str:
    choices = getattr(declared, "choice", None)
    if choices:
        return "one of " + ", ".join(f"`{c}`" for c in choices)
    name = _JSON_TYPES.get(meta.get("type"), meta.get("type") or getattr(declared, "__name__", str(declared)))
    bounds = [f"{sign} {json.dumps(meta[key])}" for key, sign in _BOUNDS if key in meta]
    return f"{name} {' and '.join(bounds)}" if bounds else name


def _default(spec, declared_default) -> str:
    if declared_default is ...:
        return "(none)"   # declared without a default: the conf must give a value
    return f"`{json.dumps(spec.default)}`"


def render_parameters(stage_cpn) -> str:
    spec = stage_cpn.dict().component
    rows = ["| parameter | type | default | optional | description |", "|---|---|---|---|---|"]
    for name, p in spec.parameters.items():
        declared = stage_cpn.parameters.mapping[name]
        kind, default = _cell(_type(p.type_meta, declared.type)), _cell(_default(p, declared.default))
        rows.append(f"| `{name}` | {kind} | {default} | {'yes' if p.optional else 'no'} | {_cell(p.description)} |")
    if len(rows) == 2:
        rows.append("| (none) | | | | |")
    return "\n".join(rows)


def render_artifacts(stage_cpn) -> str:
    spec = stage_cpn.dict().component
    rows = ["| artifact | direction | type | roles | optional | description |", "|---|---|---|---|---|---|"]
    for direction, group in (("input", spec.input_artifacts), ("output", spec.output_artifacts)):
        for kind in ("data", "model", "metric"):
            for name, a in (getattr(group, kind, None) or {}).items():
                if kind == "metric" and name == "metric":
                    continue   # FATE's invisible metric output, on every component
                roles = ", ".join(r.name if hasattr(r, "name") else str(r) for r in a.roles)
                multi = " (several)" if a.is_multi else ""
                rows.append(f"| `{name}` | {direction} | {', '.join(a.types)}{multi} | {roles} | "
                            f"{'yes' if a.optional else 'no'} | {_cell(a.description)} |")
    return "\n".join(rows)


def render(table: Table) -> str:
    stage_cpn = stages(load_component(table.component))[table.stage]
    return render_parameters(stage_cpn) if table.kind == "parameters" else render_artifacts(stage_cpn)


def page_of(component: str, docs_dir: Path = DOCS_DIR) -> Path:
    return docs_dir / f"{component}.md"


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(DOCS_DIR.parents[1]).as_posix()
    except ValueError:
        return str(path)


def update_page(text: str, page: str) -> tuple[str, list[str]]:
    """(the page with every generated block re-rendered, problems with its markers)."""
    problems: list[str] = []

    def replace(m: re.Match) -> str:
        kind, component, stage = m.group(2), m.group(3), m.group(4)
        if kind not in KINDS:
            problems.append(f"{page}: marker {m.group(1).strip()} names kind {kind!r}; expected one of {KINDS}")
            return m.group(0)
        try:
            known = stages(load_component(component))
        except KeyError as e:
            problems.append(f"{page}: marker {m.group(1).strip()}: {e.args[0]}")
            return m.group(0)
        if stage not in known:
            want = ", ".join("(no stage)" if s is None else s for s in known)
            problems.append(f"{page}: marker {m.group(1).strip()} names stage {stage!r}; {component} has: {want}")
            return m.group(0)
        return f"{m.group(1)}\n{render(Table(kind, component, stage))}\n\n{m.group(6)}"

    return _BLOCK.sub(replace, text), problems


def check(docs_dir: Path = DOCS_DIR, *, write: bool = False) -> list[str]:
    """Problems found (each names the page and the fix); with `write`, stale tables are rewritten first."""
    problems: list[str] = []
    for name in COMPONENTS:
        page = page_of(name, docs_dir)
        shown = _shown(page)
        if not page.is_file():
            problems.append(f"{shown}: page not found; every component has a page with its generated tables")
            continue
        text = page.read_text()
        new, marker_problems = update_page(text, shown)
        problems += marker_problems
        for table in expected_tables():
            if table.component == name and table.marker not in text:
                problems.append(f"{shown}: no {table.kind} table of {table.label}; add the lines "
                                f"'{table.marker}' and '<!-- end generated -->', then run {COMMAND}")
        if new != text:
            if write:
                page.write_text(new)
            else:
                diff = list(difflib.unified_diff(text.splitlines(), new.splitlines(), "page", "code", n=0,
                                                 lineterm=""))[2:14]
                problems.append(f"{shown}: a generated table differs from the component definition; "
                                f"regenerate with {COMMAND}\n" + "\n".join("    " + d for d in diff))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/docs_tables.py", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated tables in the pages")
    mode.add_argument("--check", action="store_true", help="exit 1 if a generated table differs from the code")
    parser.add_argument("--docs", type=Path, default=DOCS_DIR, help=f"the component pages (default {DOCS_DIR})")
    args = parser.parse_args(argv)
    problems = check(args.docs, write=args.write)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{'wrote' if args.write else 'checked'} the generated tables of {len(COMPONENTS)} component pages")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
