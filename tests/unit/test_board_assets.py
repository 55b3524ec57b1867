"""`fate-lung board-assets`: the three yaml files FATE-Board's dag/ folder needs, equal to FATE's own output."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from fate_components.cli import main
from fate_components.ops.board_assets import COMPONENTS


def _normalised(text: str) -> dict:
    """The description with each artifact's `stages` sorted.

    FATE merges the stages of an artifact declared in both train and predict through a set of
    Stage objects, which hash by identity (fate/components/core/component_desc/_component_artifact.py,
    `AllowArtifactDescribes.merge`): their order changes from one process to the next, in FATE's
    own output as in ours. FATE-Board only asks whether a stage is in the list.
    """
    spec = yaml.safe_load(text)
    for group in ("input_artifacts", "output_artifacts"):
        for kind in spec["component"][group].values():
            for artifact in kind.values():
                artifact["stages"] = sorted(artifact["stages"])
    return spec


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("dag")
    assert main(["board-assets", "--out", str(out)]) == 0
    return out


def test_board_assets_writes_one_yaml_per_component_named_as_the_board_asks(written):
    assert sorted(p.name for p in written.iterdir()) == sorted(f"{c}.yaml" for c in COMPONENTS)


@pytest.mark.parametrize("component", COMPONENTS)
def test_board_assets_equal_fates_own_component_desc(written, tmp_path, component):
    # Prepare: FATE's own command, in a process of its own.
    reference = tmp_path / f"{component}.yaml"
    done = subprocess.run([sys.executable, "-m", "fate.components", "component", "desc", "--name", component,
                           "--save", str(reference)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # Execute
    ours = (written / f"{component}.yaml").read_text()
    # Assert
    assert _normalised(ours) == _normalised(reference.read_text())
    assert yaml.safe_load(ours)["component"]["name"] == component


def test_homo_lung_nn_stages_agree_on_their_artifacts(written):
    spec = yaml.safe_load((written / "homo_lung_nn.yaml").read_text())["component"]
    data_in = spec["input_artifacts"]["data"]
    assert data_in["test_data"]["optional"] is True and sorted(data_in["test_data"]["stages"]) == ["predict", "train"]
    assert spec["output_artifacts"]["data"]["predictions"]["optional"] is True
    assert spec["input_artifacts"]["model"]["input_model"]["stages"] == ["predict"]
