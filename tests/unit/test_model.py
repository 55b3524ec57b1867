import pytest
import torch

from fate_components.core.errors import ConfigError
from fate_components.core.learning.model import ModelConfig, build_model, count_parameters


@pytest.mark.parametrize("size", [16, 32])
def test_forward_gives_one_logit_per_patch(size):
    # Prepare
    model = build_model(ModelConfig(), seed=0)
    x = torch.randn(3, 1, size, size, size)
    # Execute
    y = model(x)
    # Assert
    assert y.shape == (3,)
    assert torch.isfinite(y).all()


def test_depth_and_width_are_configurable():
    small = build_model(ModelConfig(widths=(8, 16), blocks=(1, 1), groups=4))
    deep = build_model(ModelConfig(widths=(16, 32, 64), blocks=(2, 2, 2)))
    assert count_parameters(small) < count_parameters(build_model()) < count_parameters(deep)
    assert small(torch.zeros(1, 1, 16, 16, 16)).shape == (1,)


def test_same_seed_same_initial_weights_at_every_site():
    a, b, c = build_model(seed=3), build_model(seed=3), build_model(seed=4)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_no_batchnorm_in_the_model():
    model = build_model()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("options, message", [
    ({"widths": [16, 30], "blocks": [1, 1]}, "multiple of groups"),
    ({"widths": [16], "blocks": [1, 1]}, "equal length"),
    ({"widths": [16], "blocks": [0]}, "at least one block"),
    ({"width": [16]}, "unknown model option"),
])
def test_bad_model_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(options)


def test_config_round_trips_through_dict():
    config = ModelConfig(widths=(8, 16), blocks=(2, 1), groups=4, dropout=0.1)
    assert ModelConfig.from_dict(config.to_dict()) == config
