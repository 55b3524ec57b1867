"""The README's table of bad inputs and their messages, generated from the tests that produce them.

    .venv/bin/python tools/bad_input_table.py            # print the table (markdown)
    .venv/bin/python tools/bad_input_table.py --check    # exit 1 when README.md's table differs
    .venv/bin/python tools/bad_input_table.py --write    # rewrite README.md's table

A test joins the table with one line, the marker (registered in pytest.ini)::

    @pytest.mark.bad_input("candidates.csv with only a header", "has a header but no candidate rows")
    def test_...():

or, for one case of a parametrised test, ``pytest.param(..., marks=pytest.mark.bad_input(case, excerpt))``.
Both arguments must be string literals: the table is read from the test files' syntax (no import, no
collection), in file then line order. The excerpt is what the user reads: when the marked test runs,
tests/unit/conftest.py (`pytest_runtest_call` below) fails it unless some fate-lung error (a LungError)
created during the test has a message containing the excerpt. So a row of the table is a message a
passing test has produced.

README.md holds the table between ``<!-- bad-input-table -->`` and ``<!-- /bad-input-table -->``.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "unit"
README = ROOT / "README.md"
MARKER = "bad_input"
BEGIN, END = "<!-- bad-input-table -->", "<!-- /bad-input-table -->"
COMMAND = ".venv/bin/python tools/bad_input_table.py --write"


@dataclass(frozen=True)
class Case:
    case: str       # the bad input, as a user would describe it
    excerpt: str    # part of the message the user gets
    test: str       # tests/unit/test_x.py::test_name
    line: int


def _marker_call(node: ast.AST) -> ast.Call | None:
    """`node` if it is `pytest.mark.bad_input(...)` (or `mark.bad_input(...)`)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == MARKER:
        owner = node.func.value
        if (isinstance(owner, ast.Attribute) and owner.attr == "mark") or (isinstance(owner, ast.Name)
                                                                            and owner.id == "mark"):
            return node
    return None


def collect(tests_dir: Path = TESTS) -> tuple[list[Case], list[str]]:
    """(the marked cases, problems: a marker whose arguments are not two string literals)."""
    cases, problems = [], []
    for path in sorted(Path(tests_dir).rglob("test_*.py")):
        shown = path.relative_to(ROOT).as_posix() if ROOT in path.parents else path.name
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            if not func.name.startswith("test"):
                continue
            for node in _decorator_nodes(func):
                call = _marker_call(node)
                if call is None:
                    continue
                args = call.args
                if (len(args) != 2 or call.keywords
                        or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.strip()
                                   for a in args)):
                    problems.append(f"{shown}:{call.lineno}: @pytest.mark.{MARKER} takes two non-empty string "
                                    f"literals (case, message excerpt)")
                    continue
                cases.append(Case(args[0].value, args[1].value, f"{shown}::{func.name}", call.lineno))
    cases.sort(key=lambda c: (c.test.split("::")[0], c.line))
    return cases, problems


def _decorator_nodes(func: ast.FunctionDef) -> Iterator[ast.AST]:
    """Every node inside the test's decorators: the marker itself, and markers inside pytest.param(...)."""
    for decorator in func.decorator_list:
        yield from ast.walk(decorator)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    """Inline code; a message that holds a backtick (`fate-lung check-site ...`) needs a double fence."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render(cases: list[Case]) -> str:
    lines = ["| Bad input | Message (excerpt) | Test |", "|---|---|---|"]
    lines += [f"| {_cell(c.case)} | {_code(_cell(c.excerpt))} | `{c.test}` |" for c in cases]
    return "\n".join(lines) + "\n"


def _blocks(text: str) -> tuple[int, int] | None:
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        return None
    return start + len(BEGIN), stop


def check(readme: Path = README, tests_dir: Path = TESTS, *, write: bool = False) -> list[str]:
    """Problems (empty when the README's table is the generated one); `write` rewrites the table first."""
    cases, problems = collect(tests_dir)
    if problems:
        return problems
    text = Path(readme).read_text(encoding="utf-8")
    span = _blocks(text)
    if span is None:
        return [f"{Path(readme).name}: no bad-input table; put the lines {BEGIN} and {END} where it goes, then "
                f"run `{COMMAND}`"]
    table = "\n" + render(cases)
    found = text[span[0]:span[1]]
    if found == table:
        return []
    if write:
        Path(readme).write_text(text[:span[0]] + table + text[span[1]:], encoding="utf-8")
        return []
    diff = "\n".join(difflib.unified_diff(found.splitlines(), table.splitlines(), "README.md", "generated",
                                         lineterm="", n=0))
    return [f"{Path(readme).name}: the bad-input table differs from the marked tests; run `{COMMAND}`\n{diff}"]


# --- the runtime half, used by tests/unit/conftest.py ---------------------------------------------------------

@contextlib.contextmanager
def recorded_messages() -> Iterator[list[str]]:
    """The messages of every LungError created inside the block (raised and caught, or only built)."""
    from fate_components.core.errors import LungError

    messages: list[str] = []
    original = LungError.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        messages.append(str(self))

    LungError.__init__ = recording_init
    try:
        yield messages
    finally:
        LungError.__init__ = original


def unmatched(excerpts: list[str], messages: list[str]) -> list[str]:
    """The excerpts that no message contains."""
    return [e for e in excerpts if not any(e in m for m in messages)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A test marked bad_input must have produced a fate-lung error whose message holds each excerpt."""
    excerpts = [m.args[1] for m in item.iter_markers(MARKER) if len(m.args) == 2]
    if not excerpts:
        return (yield)
    with recorded_messages() as messages:
        result = yield
    missing = unmatched(excerpts, messages)
    if missing:
        seen = "\n  ".join(messages[-5:]) or "(none)"
        pytest.fail(f"@pytest.mark.{MARKER}: no fate-lung error message contained {missing!r}; messages seen:\n"
                    f"  {seen}", pytrace=False)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 when README.md's table differs")
    action.add_argument("--write", action="store_true", help="rewrite README.md's table")
    args = parser.parse_args(argv)
    if not (args.check or args.write):
        cases, problems = collect()
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 1
        print(BEGIN + "\n" + render(cases) + END)
        return 0
    problems = check(write=args.write)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
