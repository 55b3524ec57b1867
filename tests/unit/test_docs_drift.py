"""The docs say what the code does: generated tables match the components, links between pages resolve."""
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))  # a development tool, not part of the installed package
import docs_tables  # noqa: E402

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def test_generated_tables_match_the_component_definitions():
    # Execute
    problems = docs_tables.check()

    # Assert: each problem names the page and the command that regenerates it
    assert not problems, "\n".join(problems)


def test_every_registered_component_has_a_page():
    # Prepare: the components this package registers with FATE (its fate.ext.component_desc entry points)
    try:
        entry_points = metadata.entry_points(group="fate.ext.component_desc")
    except metadata.PackageNotFoundError:  # pragma: no cover
        pytest.skip("fate-lung is not installed: no entry points to compare")
    registered = {ep.name for ep in entry_points if ep.value.startswith("fate_components.")}
    if not registered:
        pytest.skip("fate-lung is not installed: no entry points to compare")

    # Assert
    assert registered == set(docs_tables.COMPONENTS)
    assert all(docs_tables.page_of(name).is_file() for name in registered)


def test_a_stale_table_is_reported_with_the_page_and_the_command(tmp_path):
    # Prepare: a copy of the pages, regenerated, then one default changed by hand
    docs = tmp_path / "components"
    shutil.copytree(docs_tables.DOCS_DIR, docs)
    docs_tables.check(docs, write=True)
    page = docs / "homo_lung_nn.md"
    fresh = page.read_text()
    page.write_text(fresh.replace("| `rounds` | int > 0 | `20` |", "| `rounds` | int > 0 | `30` |"))

    # Execute
    problems = docs_tables.check(docs)
    rewritten = docs_tables.check(docs, write=True)

    # Assert
    assert len(problems) == 1
    assert "homo_lung_nn.md" in problems[0] and docs_tables.COMMAND in problems[0]
    assert "`30`" in problems[0] and "`20`" in problems[0]
    assert rewritten == [] and docs_tables.check(docs) == []
    assert page.read_text() == fresh


def test_a_missing_table_or_an_unknown_stage_is_reported(tmp_path):
    # Prepare
    docs = tmp_path / "components"
    shutil.copytree(docs_tables.DOCS_DIR, docs)
    page = docs / "lung_evaluation.md"
    page.write_text(page.read_text().replace("<!-- generated: parameters lung_evaluation -->",
                                             "<!-- generated: parameters lung_evaluation train -->"))

    # Execute
    problems = docs_tables.check(docs)

    # Assert
    assert any("names stage 'train'" in p for p in problems)
    assert any("no parameters table of lung_evaluation" in p and docs_tables.COMMAND in p for p in problems)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower().replace("`", "")).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_resolve(page):
    # Prepare
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []

    # Execute
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue   # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: {resolved.relative_to(ROOT) if ROOT in resolved.parents else resolved} "
                          f"does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved.read_text()):
            broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.relative_to(ROOT)}")

    # Assert
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)
