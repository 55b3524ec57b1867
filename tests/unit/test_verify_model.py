import torch

from fate_components.cli import main
from fate_components.core.learning.model import ModelConfig, build_model


def _save(tmp_path, name, model):
    d = tmp_path / name
    d.mkdir()
    torch.save(model.state_dict(), d / "model.pt")
    return d


def test_identical_models_exit_zero(tmp_path, capsys):
    a = _save(tmp_path, "a", build_model(seed=0))
    b = _save(tmp_path, "b", build_model(seed=0))
    assert main(["verify-model", str(a), str(b)]) == 0
    assert "identical" in capsys.readouterr().out


def test_weight_difference_names_first_layer_and_largest(tmp_path, capsys):
    model = build_model(seed=0)
    a = _save(tmp_path, "a", model)
    with torch.no_grad():
        model.head.weight += 0.5
    b = _save(tmp_path, "b", model)
    assert main(["verify-model", str(a / "model.pt"), str(b)]) == 1
    out = capsys.readouterr().out
    assert "first differing layer: 'head.weight'" in out and "largest difference 0.5" in out


def test_architecture_mismatch_exits_two(tmp_path, capsys):
    a = _save(tmp_path, "a", build_model(ModelConfig(widths=(16, 32, 64))))
    b = _save(tmp_path, "b", build_model(ModelConfig(widths=(16, 24, 64))))
    assert main(["verify-model", str(a), str(b)]) == 2
    assert "architecture mismatch: layer 'layers.1.0.conv1.weight': shape (32, 16, 3, 3, 3) in A vs (24, 16, 3, 3, 3)" \
        in capsys.readouterr().out
