"""Patch presets: each cuts cubes of its shape and spacing, the model trains on each, and a mismatch names both."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fate_components.core.errors import ConfigError
from fate_components.core.imaging.patch_presets import (
    CUSTOM,
    DEFAULT_PRESET,
    PATCH_PRESETS,
    check_same_patch_spec,
    describe_patch_spec,
    preset_of,
    preset_spec,
    resolve_patch_geometry,
)
from fate_components.core.imaging.patches import PatchSpec, extract_patch, extract_patches
from fate_components.core.imaging.volume import Volume
from fate_components.core.learning.model import build_model
from fate_components.core.learning.signature import model_signature
from fate_components.core.learning.training import train_local
from fate_components.secure_agg.channel import FederationError
from fate_components.secure_agg.checks import arbiter_check, site_check
from fate_components.secure_agg.memory_channel import MemoryFederation, run_parties

PRESETS = sorted(PATCH_PRESETS)
SLOPE_HU_PER_MM = (5.0, 3.0, 2.0)   # HU ramps along world x, y, z: distinct so a swapped axis shows
CENTRE = np.array([10.0, -20.0, 30.0])


def _ramp_volume() -> Volume:
    """A 0.7 x 0.8 x 1.25 mm scan whose HU rise linearly along world x, y, z, inside the window for 64 mm."""
    shape_zyx = (90, 120, 120)
    spacing = (0.7, 0.8, 1.25)
    origin = CENTRE - 0.5 * np.array(spacing) * np.array(shape_zyx[::-1])
    k, j, i = np.indices(shape_zyx, dtype=np.float32)
    world = [origin[a] + spacing[a] * idx for a, idx in enumerate((i, j, k))]
    hu = -500.0 + sum(s * (w - c) for s, w, c in zip(SLOPE_HU_PER_MM, world, CENTRE))
    return Volume(hu.astype(np.float32), spacing, tuple(origin), np.eye(3), source="scans/ramp.mhd",
                  series_uid="1.2.3")


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_cuts_cubes_of_its_shape_and_voxel_spacing(name):
    # Prepare
    size_mm, voxels = PATCH_PRESETS[name]
    spec = preset_spec(name)
    volume = _ramp_volume()
    # Execute
    patch = extract_patch(volume, CENTRE, spec)
    batch = extract_patches(volume, np.stack([CENTRE, CENTRE + 3.0]), spec)
    # Assert: the cube's shape, and its voxel step in mm read back from the ramp along each world axis
    assert spec.size_mm == size_mm and spec.size_voxels == voxels and preset_of(spec) == name
    assert patch.shape == (voxels,) * 3
    assert batch.shape == (2, voxels, voxels, voxels)
    np.testing.assert_allclose(batch[0].astype(np.float32), patch, atol=1e-3)   # the per-scan kernel agrees
    hu = patch.astype(np.float64) * (spec.hu_max - spec.hu_min) + spec.hu_min
    inner = slice(2, -2)   # away from the faces
    for axis, slope in zip((2, 1, 0), SLOPE_HU_PER_MM):   # array axes z, y, x <- world x, y, z
        step_hu = np.diff(hu, axis=axis)[inner, inner, inner].mean()
        assert step_hu / slope == pytest.approx(size_mm / voxels, rel=1e-3), (name, axis)
    # The cube is centred on the candidate: its mean HU is the ramp's value there
    assert hu.mean() == pytest.approx(-500.0, abs=0.5)


@pytest.mark.parametrize("name", PRESETS)
def test_the_model_trains_on_each_preset(name):
    # Prepare: the default model, four patches of the preset's size, two of each class
    _, voxels = PATCH_PRESETS[name]
    model = build_model(seed=0)
    rng = np.random.default_rng(0)
    patches = rng.random((4, 1, voxels, voxels, voxels), dtype=np.float32).astype(np.float16)
    labels = np.array([0, 1, 0, 1], dtype=np.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Execute: forward and backward by hand, then one augmented epoch of the training loop
    logits = model(torch.from_numpy(patches.astype(np.float32)))
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels)).backward()
    grads = [p.grad for p in model.parameters()]
    model.zero_grad()
    result = train_local(model, torch.optim.Adam(model.parameters(), lr=1e-3), patches, labels, epochs=1,
                         batch_size=2, generator=torch.Generator().manual_seed(0), augment=True, aug_shift_voxels=2)
    # Assert
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert result.n_samples == 4 and np.isfinite(result.loss)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_model_has_the_same_parameters_for_every_preset():
    # The signature (what the sites compare) does not depend on the patch size: the pre-round check
    # must compare the patch settings themselves, as it does.
    assert model_signature(build_model(seed=0))["hash"] == model_signature(build_model(seed=1))["hash"]


@pytest.mark.parametrize("preset, size_mm, voxels, expected", [
    ("48mm_32", None, None, (48.0, 32)),
    ("64mm_64", None, None, (64.0, 64)),
    ("48mm_32", 48.0, 32, (48.0, 32)),        # conf/lung_conf.json repeats the default preset's values
    ("64mm_48", 64, None, (64.0, 48)),
    (CUSTOM, 40.0, 40, (40.0, 40)),
    (None, None, None, (48.0, 32)),           # no preset: the default preset
    (None, 64.0, 64, (64.0, 64)),             # a conf from before presets: its own values, as before
    (None, 64.0, None, (64.0, 32)),           # ... the other from the default, as it was then
])
def test_a_preset_and_explicit_values_combine(preset, size_mm, voxels, expected):
    assert resolve_patch_geometry(preset, size_mm, voxels) == expected


@pytest.mark.parametrize("preset, size_mm, voxels, message", [
    ("48mm_32", 64.0, 64, "patch_preset 48mm_32 (48 mm at 32³, 1.5 mm voxels) contradicts patch_size_mm 64.0 and "
                          "patch_voxels 64; leave patch_size_mm and patch_voxels unset to use the preset, or set "
                          "patch_preset: custom to cut 64 mm at 64³, 1 mm voxels"),
    ("64mm_64", None, 48, "patch_preset 64mm_64 (64 mm at 64³, 1 mm voxels) contradicts patch_voxels 48; "),
    (CUSTOM, 40.0, None, "patch_preset custom needs patch_voxels; set both, or choose a preset"),
    ("56mm_48", None, None, "unknown patch_preset '56mm_48'; choose one of 48mm_32, 64mm_48, 64mm_64, custom"),
])
def test_a_contradiction_is_an_error_naming_both(preset, size_mm, voxels, message):
    with pytest.raises(ConfigError) as err:
        resolve_patch_geometry(preset, size_mm, voxels)
    assert str(err.value).startswith(message)


def test_the_reader_component_offers_the_presets_with_todays_default():
    from fate_components.components.luna16_reader import PRESET_NAMES, luna16_reader

    parameters = luna16_reader.dict().component.parameters
    assert PRESET_NAMES == [*PATCH_PRESETS, CUSTOM]
    assert parameters["patch_preset"].default is None and DEFAULT_PRESET == "48mm_32"
    assert parameters["patch_size_mm"].default is None and parameters["patch_voxels"].default is None
    assert PATCH_PRESETS[DEFAULT_PRESET] == (PatchSpec().size_mm, PatchSpec().size_voxels)


# -- the checks that refuse a mismatch ----------------------------------------------------------------------------

GUEST, HOST_B, HOST_C, ARBITER = "guest 9999", "host 10000", "host 10001", "arbiter 9999"
NAMES = {GUEST: "hospital_a", HOST_B: "hospital_b", HOST_C: "hospital_c"}


def _payload(preset: str) -> dict:
    return {"signature": model_signature(build_model(seed=0)), "patch_spec": preset_spec(preset).to_dict(),
            "schedule": {"rounds": 5, "aggregation": "paillier"}, "dp_error": None, "device_error": None}


@pytest.mark.bad_input('sites cutting patches with different presets', 'patch/normalisation settings differ')
def test_sites_on_different_presets_stop_every_party_naming_the_sites_and_both_presets():
    # Prepare: hospital_c cut its patches with the seed's preset
    fed = MemoryFederation()
    payloads = {GUEST: _payload("48mm_32"), HOST_B: _payload("48mm_32"), HOST_C: _payload("64mm_64")}
    tasks = {label: (lambda label=label: site_check(fed.channel(label), NAMES[label], payloads[label]))
             for label in NAMES}
    # Execute
    results = run_parties({**tasks, ARBITER: lambda: arbiter_check(fed.channel(ARBITER))})
    # Assert: one verdict at every party
    assert all(isinstance(err, FederationError) for err in results.values())
    assert {str(err) for err in results.values()} == {
        "Site check failed: patch/normalisation settings differ: hospital_a (9999) patch_preset 48mm_32 "
        "(48 mm at 32³, 1.5 mm voxels; HU [-1000, 400]) vs hospital_c (10001) patch_preset 64mm_64 "
        "(64 mm at 64³, 1 mm voxels; HU [-1000, 400]); every site must use the same values"}


def test_sites_on_the_same_preset_pass_the_check():
    fed = MemoryFederation()
    tasks = {label: (lambda label=label: site_check(fed.channel(label), NAMES[label], _payload("64mm_48")))
             for label in NAMES}
    results = run_parties({**tasks, ARBITER: lambda: arbiter_check(fed.channel(ARBITER))})
    assert results == dict.fromkeys((*NAMES, ARBITER))


@pytest.mark.bad_input("test data cut with another preset than the model's training data",
                       'but the model was trained on')
def test_test_data_cut_with_another_preset_than_the_model_are_refused_naming_both():
    # Prepare: a model trained on 64mm_48 patches; test data cut with a custom 64 mm at 48³ but another HU window
    model_spec = preset_spec("64mm_48").to_dict()
    # Execute / Assert
    with pytest.raises(ConfigError) as err:
        check_same_patch_spec(preset_spec("48mm_32").to_dict(), model_spec)
    assert str(err.value) == (
        "test data were cut with patch_preset 48mm_32 (48 mm at 32³, 1.5 mm voxels; HU [-1000, 400]), but the model "
        "was trained on patch_preset 64mm_48 (64 mm at 48³, 1.33 mm voxels; HU [-1000, 400]); run luna16_reader "
        "with the training settings")
    with pytest.raises(ConfigError, match=r"patch_preset custom \(40 mm at 40³, 1 mm voxels; HU \[-1000, 300\]\)"):
        check_same_patch_spec(preset_spec(CUSTOM, size_mm=40, voxels=40, hu_max=300.0).to_dict(), model_spec)
    check_same_patch_spec(dict(model_spec), model_spec)   # the same settings pass


def test_a_partial_spec_from_another_version_is_shown_as_it_came():
    assert describe_patch_spec({"size_mm": 32}) == "{'size_mm': 32}"
