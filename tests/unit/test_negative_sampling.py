"""Per-epoch negative sampling, hard negatives, and training that reads a memory map batch by batch."""
import numpy as np
import pytest
import torch

from fate_components.core.data.negative_sampling import EpochSampler, NegativeSampling
from fate_components.core.data.patch_file import RowView
from fate_components.core.errors import ConfigError
from fate_components.core.federation.checkpoints import CheckpointStore
from fate_components.core.federation.round_loop import SiteData, run_site
from fate_components.core.learning.model import ModelConfig, build_model
from fate_components.core.learning.training import TrainConfig, get_parameters, train_local
from fate_components.core.privacy.dp import DPConfig, PatientDPSGD, train_local_dp

SMALL = ModelConfig(widths=(8, 16), blocks=(1, 1), groups=4, dropout=0.2)


def _labels(n_pos: int, n_neg: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.r_[np.ones(n_pos), np.zeros(n_neg)]).astype(np.int64)


def _site(n: int = 60, positives: int = 4, seed: int = 0) -> SiteData:
    """LUNA16-like imbalance: a few bright-blob positives among many noise negatives, 6 patients."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=np.float32)
    y[rng.choice(n, positives, replace=False)] = 1
    x = rng.normal(0.3, 0.05, (n, 1, 12, 12, 12)).astype(np.float32)
    x[y == 1, :, 4:8, 4:8, 4:8] += 0.6
    groups = np.array([f"p{i * 6 // n}" for i in range(n)], dtype=object)   # rows by patient, as the reader writes
    return SiteData(x, y, x[:8], y[:8], groups)


class Same:
    def weighted_mean(self, handle, tag, arrays, weight):
        return arrays


def test_each_epoch_keeps_every_positive_and_draws_fresh_negatives():
    # Prepare
    labels = _labels(5, 400)
    sampler = EpochSampler(labels, NegativeSampling(negatives_per_positive=4))
    generator = torch.Generator().manual_seed(0)
    # Execute
    draws = [sampler.draw(generator) for _ in range(60)]
    # Assert: 5 positives + 20 negatives each epoch, sorted rows, never the same negatives twice in a row
    positives = set(np.flatnonzero(labels == 1))
    for rows in draws:
        assert len(rows) == 25 == sampler.epoch_size and np.all(np.diff(rows) > 0)
        assert positives <= set(rows.tolist()) and (labels[rows] == 0).sum() == 20
    assert all(set(a) != set(b) for a, b in zip(draws, draws[1:]))
    seen = set().union(*(set(rows.tolist()) for rows in draws))
    assert len(seen - positives) > 0.9 * 400    # 60 epochs x 20 of 400: nearly every negative is seen


def test_draws_are_repeatable_for_a_seed():
    labels = _labels(3, 100)
    sampler = EpochSampler(labels, NegativeSampling(negatives_per_positive=2))
    a = [sampler.draw(torch.Generator().manual_seed(7)) for _ in range(2)]
    b = sampler.draw(torch.Generator().manual_seed(8))
    np.testing.assert_array_equal(a[0], a[1])
    assert not np.array_equal(a[0], b)


def test_zero_or_a_large_ratio_trains_on_every_negative():
    labels = _labels(3, 50)
    for ratio in (0, 100):
        rows = EpochSampler(labels, NegativeSampling(negatives_per_positive=ratio)).draw(torch.Generator())
        np.testing.assert_array_equal(rows, np.arange(53))


def test_hard_negatives_are_the_highest_scored_and_the_rest_random():
    # Prepare: negatives scored by their row number, so the hardest are the last rows
    labels = _labels(4, 200)
    sampler = EpochSampler(labels, NegativeSampling(negatives_per_positive=5, hard_negative_fraction=0.5))
    pool = sampler.hard_pool(torch.Generator())
    sampler.rescore(pool, sampler.negatives[pool].astype(float))
    hardest = set(sampler.negatives[-10:].tolist())
    generator = torch.Generator().manual_seed(0)
    # Execute
    draws = [sampler.draw(generator) for _ in range(5)]
    # Assert: every epoch has the 10 hardest and 10 others, the others differ between epochs
    for rows in draws:
        negatives = set(rows[labels[rows] == 0].tolist())
        assert len(negatives) == 20 and hardest <= negatives
    assert len({frozenset(rows.tolist()) for rows in draws}) == 5


def test_hard_negatives_come_from_a_fresh_pool_ten_times_the_epochs_negatives():
    # Prepare: 2,000 negatives, 20 per epoch, so each round scores a pool of 200
    labels = _labels(4, 2000)
    sampler = EpochSampler(labels, NegativeSampling(negatives_per_positive=5, hard_negative_fraction=0.5))
    generator = torch.Generator().manual_seed(0)
    # Execute
    pools = [sampler.hard_pool(generator) for _ in range(3)]
    sampler.rescore(pools[0], -pools[0].astype(float))     # lowest positions score highest
    rows = sampler.draw(generator)
    # Assert: pools differ each round; the 10 hard negatives are the pool's 10 best
    assert all(len(p) == 200 and len(set(p)) == 200 for p in pools) and len({tuple(p) for p in pools}) == 3
    assert set(sampler.negatives[pools[0][:10]]) <= set(rows.tolist())


def test_independent_sampling_keeps_each_negative_at_the_rate_and_refuses_hard_negatives():
    labels = _labels(10, 5000)
    sampler = EpochSampler(labels, NegativeSampling(negatives_per_positive=50), independent=True)
    kept = [(labels[sampler.draw(torch.Generator().manual_seed(s))] == 0).sum() for s in range(20)]
    assert abs(np.mean(kept) - 500) < 4 * np.sqrt(500 * 0.9 / 20)     # Binomial(5000, 0.1), mean of 20 draws
    with pytest.raises(ConfigError, match="hard-negative mining"):
        EpochSampler(labels, NegativeSampling(hard_negative_fraction=0.2), independent=True)


@pytest.mark.parametrize("options, message", [
    ({"negatives_per_positive": -1}, "negatives_per_positive must be a number >= 0"),
    ({"hard_negative_fraction": 1.5}, r"hard_negative_fraction must be in \[0, 1\]"),
])
def test_bad_sampling_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)


def test_dp_sample_mode_refuses_hard_negatives_before_training():
    with pytest.raises(ConfigError, match="hard_negative_fraction must be 0 with dp.mode='sample'"):
        DPConfig(mode="sample").check_training(0.0, 0.3)


class _CountingArray:
    """A (memory-map-like) array that records how many rows each read asks for."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.reads = array, []
        self.shape, self.dtype = array.shape, array.dtype

    def __getitem__(self, key):
        out = self.array[key]
        self.reads.append(len(out) if out.ndim == self.array.ndim else 1)
        return out


def test_training_reads_the_memory_map_one_batch_at_a_time(tmp_path):
    # Prepare: the patches on disk, as the reader writes them
    data = _site(n=120, positives=6)
    np.save(tmp_path / "patches.npy", data.train_x.astype(np.float16))
    counting = _CountingArray(np.load(tmp_path / "patches.npy", mmap_mode="r"))
    view = RowView(counting, np.arange(120))
    model = build_model(SMALL, seed=0)
    sampler = EpochSampler(data.train_y, NegativeSampling(negatives_per_positive=3))
    # Execute
    result = train_local(model, TrainConfig().make_optimizer(model), view, data.train_y, epochs=2, batch_size=8,
                         generator=torch.Generator().manual_seed(0), sampler=sampler)
    # Assert: 24 patches per epoch, read 8 at a time, never the whole site
    assert result.n_samples == 24
    assert max(counting.reads) == 8 and sum(counting.reads) == 48


def test_row_view_reads_rows_in_any_order():
    base = np.arange(40, dtype=np.float32).reshape(10, 4)
    view = RowView(base, np.array([7, 2, 9, 0]))
    np.testing.assert_array_equal(view[np.array([2, 0, 3])], base[[9, 7, 0]])
    np.testing.assert_array_equal(view[1:3], base[[2, 9]])
    np.testing.assert_array_equal(np.asarray(view), base[[7, 2, 9, 0]])
    assert view.shape == (4, 4) and len(view) == 4


def test_resume_with_sampling_and_hard_negatives_is_bit_identical(tmp_path):
    # Prepare: rounds sample 2 negatives per positive, half of them hard (rescored every round)
    config = TrainConfig(rounds=4, local_epochs=1, learning_rate=1e-3, batch_size=4, negatives_per_positive=2,
                         hard_negative_fraction=0.5)
    store = CheckpointStore(tmp_path / "ckpt", fingerprint="job")
    full = build_model(SMALL, seed=0)
    reports = run_site(full, _site(), config, [(r, None) for r in range(4)], Same(), observers=[store])
    # Execute
    resumed = build_model(SMALL, seed=0)
    run_site(resumed, _site(), config, [(r, None) for r in range(4)], Same(), resume=store.load(1))
    # Assert: the site's weight is its epoch size (4 positives + 8 negatives); the resumed model is identical
    assert {r.n_train for r in reports} == {12}
    for a, b in zip(get_parameters(full), get_parameters(resumed)):
        np.testing.assert_array_equal(a, b)


def test_dp_sgd_uses_only_the_epochs_drawn_patches():
    # Prepare
    data = _site(n=60, positives=4)
    model = build_model(SMALL, seed=0)
    optimizer = TrainConfig().make_optimizer(model)
    privacy = DPConfig(mode="sample", noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-2)
    trainer = PatientDPSGD(model, optimizer, data.train_groups, privacy, expected_patients=3)
    sampler = EpochSampler(data.train_y, NegativeSampling(negatives_per_positive=2), independent=True)
    drawn, used = [], []
    original = trainer.step

    def step(patches, labels, patients, augment, active=None):
        drawn.append(active.copy())
        loss, n = original(patches, labels, patients, augment, active)
        used.append(n)
        return loss, n

    trainer.step = step
    # Execute
    train_local_dp(trainer, data.train_x, data.train_y, epochs=2, augment=lambda t: t,
                   epoch_rows=lambda: sampler.draw(torch.Generator().manual_seed(len(drawn))))
    trainer.close()
    # Assert: the steps saw only drawn patches: at most positives plus a Binomial share of the 56 negatives
    assert drawn and all(mask.sum() < 30 for mask in drawn) and all(mask[data.train_y == 1].all() for mask in drawn)
    assert sum(used) <= sum(int(mask.sum()) for mask in drawn)
    assert trainer.steps == 2 * trainer.steps_per_epoch


def test_patch_file_reads_rows_like_the_array(tmp_path):
    from fate_components.core.data.patch_file import PatchFile

    array = np.random.default_rng(0).random((30, 1, 4, 4, 4)).astype(np.float16)
    np.save(tmp_path / "patches.npy", array)
    f = PatchFile(tmp_path / "patches.npy")
    rows = np.array([3, 4, 5, 9, 2, 2, 29])
    np.testing.assert_array_equal(f[rows], array[rows])
    np.testing.assert_array_equal(f[5:12], array[5:12])
    np.testing.assert_array_equal(f[7], array[7])
    np.testing.assert_array_equal(f[:, 0, 1:3, 2, :], array[:, 0, 1:3, 2, :])
    np.testing.assert_array_equal(np.asarray(f, dtype=np.float32), array.astype(np.float32))
    assert f.shape == array.shape and f.dtype == np.float16 and len(f) == 30
