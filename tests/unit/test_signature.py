from fate_components.core.learning.model import ModelConfig, build_model
from fate_components.core.learning.signature import model_signature, signature_mismatch


def test_identical_models_match():
    sig = model_signature(build_model())
    assert signature_mismatch({"hospital_a (9999)": sig, "hospital_b (10000)": model_signature(build_model())}) is None


def test_size_mismatch_names_layer_parties_and_shapes():
    a = model_signature(build_model(ModelConfig(widths=(16, 32, 64))))
    b = model_signature(build_model(ModelConfig(widths=(16, 24, 64))))
    message = signature_mismatch({"hospital_a (9999)": a, "hospital_b (10000)": b})
    assert message.startswith("Secure aggregation failed: parameter size mismatch at 'layers.1.0.conv1.weight': ")
    assert "hospital_a (9999) (32, 16, 3, 3, 3) vs hospital_b (10000) (24, 16, 3, 3, 3)" in message


def test_depth_mismatch_is_reported():
    a = model_signature(build_model(ModelConfig(blocks=(1, 1, 1))))
    b = model_signature(build_model(ModelConfig(blocks=(1, 1, 2))))
    message = signature_mismatch({"hospital_a (9999)": a, "hospital_c (10001)": b})
    assert "hospital_c (10001)" in message and "mismatch" in message


def test_torch_version_difference_can_be_relaxed():
    a = model_signature(build_model())
    b = dict(a, torch="0.0.1")
    assert "torch versions differ" in signature_mismatch({"a (1)": a, "b (2)": b})
    assert signature_mismatch({"a (1)": a, "b (2)": b}, check_torch_version=False) is None
