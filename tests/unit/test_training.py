import numpy as np
import pytest
import torch

from fate_components.core.errors import ConfigError
from fate_components.core.evaluation.auc import candidate_auc
from fate_components.core.federation.round_loop import SiteData, run_site
from fate_components.core.learning.model import ModelConfig, build_model
from fate_components.core.learning.training import (
    TrainConfig,
    evaluate,
    get_parameters,
    predict_proba,
    set_parameters,
    train_local,
)

SMALL = ModelConfig(widths=(8, 16), blocks=(1, 1), groups=4, dropout=0.0)


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright centred blob (label 1) vs noise only (label 0): learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0.3, 0.05, (n, 1, 12, 12, 12)).astype(np.float32)
    x[y == 1, :, 4:8, 4:8, 4:8] += 0.6
    return x, y


def test_local_training_learns_an_easy_task():
    # Prepare
    torch.manual_seed(0)
    x, y = _blobs(64, 0)
    xv, yv = _blobs(32, 1)
    model = build_model(SMALL, seed=0)
    config = TrainConfig(learning_rate=3e-3, local_epochs=1)
    before = evaluate(model, xv, yv)
    # Execute
    result = train_local(model, config.make_optimizer(model), x, y, epochs=8, batch_size=16,
                         generator=torch.Generator().manual_seed(0))
    after = evaluate(model, xv, yv)
    # Assert
    assert result.n_samples == 64
    assert after["loss"] < before["loss"]
    assert after["auc"] > 0.9


def test_parameters_round_trip_and_shape_mismatch_is_named():
    model = build_model(SMALL, seed=0)
    params = get_parameters(model)
    set_parameters(model, [p * 0 for p in params])
    assert all(np.all(p == 0) for p in get_parameters(model))
    bad = list(params)
    bad[0] = np.zeros((1, 2, 3), dtype=np.float32)
    with pytest.raises(ConfigError, match="does not match the model"):
        set_parameters(model, bad)


@pytest.mark.parametrize("field, value, message", [
    ("rounds", 0, "rounds must be a positive integer"),
    ("learning_rate", 0.0, "learning_rate must be positive"),
    ("optimizer", "adagrad", "not one of"),
])
def test_bad_training_options(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_auc_is_nan_for_a_single_class():
    assert np.isnan(candidate_auc(np.array([1, 1]), np.array([0.2, 0.9])))
    assert candidate_auc(np.array([0, 1]), np.array([0.2, 0.9])) == 1.0


def test_round_loop_gives_every_site_the_weighted_mean():
    # Prepare: two sites whose aggregator returns the sample-weighted mean of both sites' parameters.
    sites = [_blobs(40, 2), _blobs(20, 3)]
    models = [build_model(SMALL, seed=0), build_model(SMALL, seed=0)]
    config = TrainConfig(rounds=1, local_epochs=1, learning_rate=1e-3)
    trained = []
    for model, (x, y) in zip(models, sites):
        copy = build_model(SMALL, seed=0)
        train_local(copy, config.make_optimizer(copy), x, y, epochs=1, batch_size=16,
                    generator=torch.Generator().manual_seed(config.seed))
        trained.append((get_parameters(copy), len(x)))
    expected = [(a * 40 + b * 20) / 60 for a, b in zip(trained[0][0], trained[1][0])]

    class Mean:
        def weighted_mean(self, handle, tag, arrays, weight):
            if tag == "model":
                return expected
            return [np.array([0.5])]

    # Execute
    reports = run_site(models[0], SiteData(*sites[0], *_blobs(8, 4)), config, [(0, None)], Mean())
    # Assert
    for got, want in zip(get_parameters(models[0]), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=0)
    assert reports[0].global_val_loss == 0.5
    assert reports[0].n_train == 40


def test_augmentation_keeps_shape_and_content_and_varies():
    # Prepare
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4, 4)
    g = torch.Generator().manual_seed(0)
    from fate_components.core.learning.augmentation import augment_3d
    # Execute
    outs = [augment_3d(x, g, max_shift=0, jitter=0) for _ in range(20)]
    # Assert: flips and rotations alone keep shape and the multiset of voxel values, not always the identity
    for out in outs:
        assert out.shape == x.shape
        assert torch.equal(out.flatten(1).sort().values, x.flatten(1).sort().values)
    assert any(not torch.equal(out, x) for out in outs)


def test_shift_moves_content_and_fills_with_air():
    from fate_components.core.learning.augmentation import shift_3d

    x = torch.rand(1, 1, 6, 6, 6) + 0.5
    out = shift_3d(x, [2, -1, 0])
    assert torch.equal(out[:, :, 2:, :5, :], x[:, :, :4, 1:, :])
    assert (out[:, :, :2] == 0).all() and (out[:, :, :, 5:] == 0).all()
    assert torch.equal(shift_3d(x, [0, 0, 0]), x)


def test_full_augmentation_shifts_at_most_two_voxels_and_jitters_mildly():
    from fate_components.core.learning.augmentation import augment_3d

    g = torch.Generator().manual_seed(1)
    x = torch.zeros(4, 1, 16, 16, 16)
    x[:, :, 8, 8, 8] = 0.5          # a point "nodule" in the centre
    for _ in range(30):
        out = augment_3d(x, g, max_shift=2, jitter=0.05)
        for patch in out:
            peak = (patch[0] == patch[0].max()).nonzero()[0]
            # flips/rotations map the centre voxel (8) to 7 or 8; shifts add at most 2
            assert ((peak >= 5) & (peak <= 10)).all()
            assert 0.5 * 0.95 - 0.025 - 1e-6 <= float(patch.max()) <= 0.5 * 1.05 + 0.025 + 1e-6
            background = patch[0][patch[0] != patch[0].max()]
            assert background.abs().max() <= 0.025 + 1e-6   # air stays air, give or take the offset


def test_cosine_schedule_anneals_from_lr_to_min():
    config = TrainConfig(rounds=5, learning_rate=1e-3, min_learning_rate=1e-5, lr_schedule="cosine")
    lrs = [config.learning_rate_at(r) for r in range(5)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert lrs[2] == pytest.approx((1e-3 + 1e-5) / 2)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert TrainConfig(learning_rate=2e-4).learning_rate_at(7) == 2e-4


def test_fedprox_keeps_local_weights_closer_to_the_round_start():
    x, y = _blobs(48, 5)
    drift = {}
    for mu in (0.0, 10.0):
        model = build_model(SMALL, seed=0)
        start = [p.detach().clone() for p in model.parameters()]
        config = TrainConfig(learning_rate=3e-3)
        train_local(model, config.make_optimizer(model), x, y, epochs=3, batch_size=16,
                    generator=torch.Generator().manual_seed(0), fedprox_mu=mu)
        drift[mu] = sum(float(((p - s) ** 2).sum()) for p, s in zip(model.parameters(), start))
    assert drift[10.0] < 0.8 * drift[0.0]


def test_early_stopping_stops_every_site_at_the_same_round_and_keeps_the_best_model():
    # Prepare: the global validation loss improves until round 1, then gets worse.
    losses = iter([0.5, 0.4, 0.45, 0.47, 0.48, 0.49])
    snapshots = {}

    class Scripted:
        def weighted_mean(self, handle, tag, arrays, weight):
            if tag == "val_loss":
                return [np.array([next(losses)])]
            return arrays

    class Remember:   # each round's model, and what the guest would tell the arbiter
        def round_done(self, report, state, handle):
            snapshots[report.round] = [p.copy() for p in get_parameters(model)]
            signals.append((handle, not report.stopped))

    signals = []
    model = build_model(SMALL, seed=0)
    config = TrainConfig(rounds=6, local_epochs=1, learning_rate=1e-3, patience=2)
    # Execute
    reports = run_site(model, SiteData(*_blobs(16, 6), *_blobs(8, 7)), config, [(r, r) for r in range(6)],
                       Scripted(), observers=[Remember()])
    # Assert: rounds 2 and 3 did not beat round 1, so training stops after round 3 with round 1's model.
    assert [r.round for r in reports] == [0, 1, 2, 3]
    assert signals == [(0, True), (1, True), (2, True), (3, False)]
    for got, want in zip(get_parameters(model), snapshots[1]):
        np.testing.assert_array_equal(got, want)


def test_server_stops_when_the_sites_say_so():
    calls = []

    class Server:
        def aggregate(self, handle, tag):
            calls.append((handle, tag))

    from fate_components.core.federation.round_loop import run_server
    run_server([(r, r) for r in range(10)], Server(), should_continue=lambda h: h < 2)
    assert calls[-1] == (2, "val_loss") and len(calls) == 6


def test_bfloat16_scoring_stays_close_to_float32_and_other_precisions_are_refused():
    # Prepare
    x, _ = _blobs(24, 3)
    model = build_model(SMALL, seed=0)
    # Execute
    full = predict_proba(model, x)
    half = predict_proba(model, x, precision="bfloat16")
    # Assert: bfloat16 keeps 8 bits of mantissa, so scores move by a few thousandths at most
    assert np.abs(full - half).max() < 1e-2 and not np.array_equal(full, half)
    with pytest.raises(ConfigError, match="inference precision must be one of"):
        predict_proba(model, x, precision="float16")
