"""The README's layout section is the tree as it is: every folder it names exists, every package is named."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_layout() -> dict[str, str]:
    """{folder path: what the README says it holds}, from the indented tree of the Layout section."""
    text = (ROOT / "README.md").read_text()
    block = text.split("\n## Layout\n", 1)[1].split("```", 2)[1]
    folders, stack = {}, []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = (len(line) - len(line.lstrip(" "))) // 2
        name, _, said = line.strip().partition(" ")
        if not name.endswith("/"):   # a continuation of the line above
            continue
        stack[indent:] = [name.rstrip("/")]
        folders["/".join(stack)] = said.strip()
    return folders


def test_every_folder_in_the_readme_layout_exists_and_says_what_it_holds():
    # Prepare
    folders = readme_layout()

    # Assert
    assert len(folders) >= 20
    missing = sorted(f for f in folders if not (ROOT / f).is_dir())
    assert not missing, f"the README's layout names folders that do not exist: {missing}"
    unexplained = sorted(f for f, said in folders.items() if not said and f != "fate_components")
    assert not unexplained, f"the README's layout names folders without saying what they hold: {unexplained}"


def test_every_package_of_fate_components_is_in_the_readme_layout():
    # Prepare: every folder of the package that holds Python modules
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "fate_components").rglob("__init__.py")}

    # Assert
    missing = sorted(packages - set(readme_layout()))
    assert not missing, f"packages missing from the README's layout section: {missing}"
