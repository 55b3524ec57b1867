"""Differential privacy: noise, clipping, equivalence without noise, accounting and the budget."""
import math

import numpy as np
import pytest
import torch

from fate_components.core.errors import ConfigError
from fate_components.core.federation.round_loop import SiteData, run_site
from fate_components.core.learning.model import ModelConfig, build_model
from fate_components.core.learning.training import TrainConfig, get_parameters
from fate_components.core.privacy.dp import (
    DPConfig,
    PatientDPSGD,
    epsilon_for,
    noise_share_std,
    patient_sampling,
    planned_rounds,
    privatize_update,
    rounds_within_budget,
)

SMALL = ModelConfig(widths=(8, 16), blocks=(1, 1), groups=4, dropout=0.0)


def _patients(n_patients: int, per_patient: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_patients * per_patient
    y = rng.integers(0, 2, n).astype(np.float32)
    x = rng.normal(0.3, 0.05, (n, 1, 12, 12, 12)).astype(np.float32)
    x[y == 1, :, 4:8, 4:8, 4:8] += 0.6
    groups = np.repeat([f"patient{i:03d}" for i in range(n_patients)], per_patient).astype(object)
    return x, y, groups


def _one_step(config: DPConfig, patients, expected: int = 4, seed: int = 0, x=None, y=None, groups=None,
              max_patches_per_pass: int = 32):
    """One DP-SGD step with plain SGD at lr 1: the parameter change is minus the noisy gradient."""
    if x is None:
        x, y, groups = _patients(8, 3)
    model = build_model(SMALL, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = PatientDPSGD(model, torch.optim.SGD(model.parameters(), lr=1.0), groups, config, expected,
                           noise_generator=torch.Generator().manual_seed(seed),
                           sample_generator=torch.Generator().manual_seed(seed))
    trainer.max_patches_per_pass = max_patches_per_pass
    trainer.step(x, y, np.asarray(patients), augment=lambda t: t)
    trainer.close()
    return model, torch.cat([(b - p.detach()).ravel() for b, p in zip(before, model.parameters())])


def test_noise_actually_added_has_the_configured_std():
    # Prepare: the same step with and without noise; the difference is the noise divided by the expected batch
    sigma, clip, expected = 2.0, 0.5, 4
    _, noisy = _one_step(DPConfig(mode="sample", noise_multiplier=sigma, max_grad_norm=clip, delta=1e-3), [0, 3],
                         expected)
    _, clean = _one_step(DPConfig(mode="sample", noise_multiplier=0.0, max_grad_norm=clip, delta=1e-3), [0, 3],
                         expected)
    # Execute
    noise = (noisy - clean) * expected
    # Assert: std sigma*clip within 3% (several thousand parameters: the estimate's error is < 1%), mean ~ 0
    assert noise.numel() > 5000
    assert float(noise.std()) == pytest.approx(sigma * clip, rel=0.03)
    assert abs(float(noise.mean())) < 4 * sigma * clip / math.sqrt(noise.numel())


@pytest.mark.parametrize("groups, alone", [
    (["many"] * 10 + ["one"], 0),        # 10 patches against one, in passes of at most 4: still one whole patient
    (["1.2.9", "1.2.10"] * 4, 1),        # interleaved rows, and "1.2.9" owns row 0 but sorts after "1.2.10"
])
def test_clipping_bounds_each_patients_contribution_however_their_rows_lie(groups, alone):
    # Prepare: a tiny clip bound that every gradient exceeds
    x, y, _ = _patients(len(groups), 1)
    groups = np.asarray(groups, dtype=object)
    clip, expected = 1e-3, 2
    config = DPConfig(mode="sample", noise_multiplier=0.0, max_grad_norm=clip, delta=1e-3)
    # Execute: passes of at most 4 patches must each hold whole patients
    _, one = _one_step(config, [alone], expected, x=x, y=y, groups=groups, max_patches_per_pass=4)
    _, both = _one_step(config, [0, 1], expected, x=x, y=y, groups=groups, max_patches_per_pass=4)
    # Assert: one patient moves the model by exactly clip/expected (one clipped row); two by at most 2*clip/expected
    assert float(one.norm()) == pytest.approx(clip / expected, rel=1e-4)
    assert float(both.norm()) <= 2 * clip / expected * (1 + 1e-4)


@pytest.mark.parametrize("max_patches_per_pass", [32, 3, 1])   # all at once; one patient a pass; still one
def test_without_noise_and_clipping_a_step_equals_the_non_dp_step(max_patches_per_pass):
    # Prepare: the non-DP gradient of the same objective: per patient the mean patch loss, summed, / expected
    x, y, groups = _patients(8, 3)
    expected, patients = 4, [1, 2, 6]
    rows = [i for i, g in enumerate(groups) if int(g[-3:]) in patients]
    reference = build_model(SMALL, seed=0)
    per_patch = torch.nn.functional.binary_cross_entropy_with_logits(
        reference(torch.from_numpy(x[rows])), torch.from_numpy(y[rows]), reduction="none")
    (per_patch.sum() / 3 / expected).backward()   # 3 patches per patient
    want = torch.cat([p.grad.ravel() for p in reference.parameters()])
    # Execute
    _, got = _one_step(DPConfig(mode="sample", noise_multiplier=0.0, max_grad_norm=None, delta=1e-3), patients,
                       expected, max_patches_per_pass=max_patches_per_pass)
    # Assert: Opacus' per-sample gradients, regrouped per patient, sum to the ordinary gradient
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)


def test_reported_epsilon_equals_opacus_accountant_for_same_rate_noise_and_steps():
    # Prepare: an accountant of the library, fed by the optimizer's step hook as Opacus' PrivacyEngine does
    from opacus.accountants import RDPAccountant

    x, y, groups = _patients(20, 2)
    config = DPConfig(mode="sample", noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-3)
    model = build_model(SMALL, seed=0)
    trainer = PatientDPSGD(model, torch.optim.SGD(model.parameters(), lr=0.1), groups, config, 4)
    library = RDPAccountant()
    trainer.optimizer.attach_step_hook(library.get_optimizer_hook_fn(sample_rate=trainer.sample_rate))
    # Execute
    for _ in range(7):
        trainer.step(x, y, trainer.sample_patients(), augment=lambda t: t)
    trainer.close()
    # Assert
    assert trainer.sample_rate == pytest.approx(0.2) and trainer.steps_per_epoch == 5
    assert trainer.epsilon() == pytest.approx(library.get_epsilon(delta=1e-3), rel=1e-12)
    assert epsilon_for(config, 0.2, 0) == 0.0
    assert epsilon_for(DPConfig(mode="sample", noise_multiplier=0.0, max_grad_norm=1.0), 0.2, 5) == math.inf


def test_round_loop_reports_the_accountants_epsilon_every_round():
    # Prepare
    from opacus.accountants import RDPAccountant

    x, y, groups = _patients(10, 2)
    config = TrainConfig(rounds=3, local_epochs=2, batch_size=3, learning_rate=1e-3)
    privacy = DPConfig(mode="sample", noise_multiplier=1.5, max_grad_norm=1.0, delta=1e-2)

    class Same:
        def weighted_mean(self, handle, tag, arrays, weight):
            return arrays

    # Execute
    reports = run_site(build_model(SMALL, seed=0), SiteData(x, y, x[:4], y[:4], groups), config,
                       [(r, None) for r in range(3)], Same(), privacy=privacy)
    # Assert: q = 3/10, 3 steps per epoch, 2 epochs per round
    rate, steps_per_epoch = patient_sampling(10, 3)
    for report in reports:
        library = RDPAccountant()
        library.history = [(1.5, rate, steps_per_epoch * 2 * (report.round + 1))]
        assert report.epsilon == pytest.approx(library.get_epsilon(1e-2), rel=1e-12)
    assert reports[0].epsilon < reports[1].epsilon < reports[2].epsilon


def test_budget_allows_the_last_round_within_max_epsilon_and_not_one_more():
    # Prepare
    config = DPConfig(mode="sample", noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-3)
    eps = [epsilon_for(config, 0.25, 4 * r) for r in range(1, 11)]
    budget = DPConfig(**{**config.to_dict(), "max_epsilon": (eps[5] + eps[6]) / 2})
    # Execute
    allowed = rounds_within_budget(budget, 0.25, 4, 10)
    # Assert: 6 rounds fit (eps[5] <= budget < eps[6]); no budget -> all rounds
    assert allowed == 6
    assert rounds_within_budget(config, 0.25, 4, 10) == 10
    assert planned_rounds(budget, rounds=10, local_epochs=1, batch_size=25, n_patients=100, n_sites=3) == 6
    with pytest.raises(ConfigError, match=r"exceeded by the first round already"):
        rounds_within_budget(DPConfig(**{**config.to_dict(), "max_epsilon": eps[0] / 2}), 0.25, 4, 10)


def test_round_loop_stops_after_max_rounds_and_keeps_that_model():
    # Prepare
    x, y, groups = _patients(6, 2)
    seen = []

    class Same:
        def weighted_mean(self, handle, tag, arrays, weight):
            return arrays

    class Arbiter:   # what the guest would tell the arbiter: continue or not
        def round_done(self, report, state, handle):
            seen.append(not report.stopped)

    model = build_model(SMALL, seed=0)
    # Execute
    reports = run_site(model, SiteData(x, y, x[:4], y[:4], groups), TrainConfig(rounds=5, local_epochs=1),
                       [(r, None) for r in range(5)], Same(), observers=[Arbiter()],
                       privacy=DPConfig(mode="sample", noise_multiplier=1.0, delta=0.1, max_epsilon=100.0),
                       max_rounds=2)
    # Assert: two rounds, the arbiter told to stop after the second
    assert [r.round for r in reports] == [0, 1]
    assert seen == [True, False]
    assert reports[-1].budget_spent and reports[-1].stopped


def test_client_mode_clips_the_update_and_adds_the_noise_share():
    # Prepare
    rng = np.random.default_rng(0)
    update = [rng.normal(0, 1, (200, 50)).astype(np.float32), rng.normal(0, 1, 1000).astype(np.float32)]
    norm = math.sqrt(sum(float(np.sum(u.astype(np.float64) ** 2)) for u in update))
    config = DPConfig(mode="client", noise_multiplier=0.8, max_grad_norm=2.0, delta=0.1)
    quiet = DPConfig(mode="client", noise_multiplier=0.0, max_grad_norm=2.0, delta=0.1)
    # Execute
    clipped, seen_norm = privatize_update(update, quiet, 3, torch.Generator().manual_seed(0))
    noised, _ = privatize_update(update, config, 3, torch.Generator().manual_seed(0))
    untouched, _ = privatize_update(update, DPConfig(mode="client", noise_multiplier=0.0, max_grad_norm=None,
                                                     delta=0.1), 3, torch.Generator())
    # Assert
    assert seen_norm == pytest.approx(norm, rel=1e-9)
    assert math.sqrt(sum(float(np.sum(c.astype(np.float64) ** 2)) for c in clipped)) == pytest.approx(2.0, rel=1e-5)
    share = np.concatenate([(n - c).ravel() for n, c in zip(noised, clipped)])
    # each of 3 sites adds std sigma*S/sqrt(2): the 2 shares a site does not know sum to std sigma*S
    assert noise_share_std(config, 3) == pytest.approx(0.8 * 2.0 / math.sqrt(2))
    assert float(share.std()) == pytest.approx(0.8 * 2.0 / math.sqrt(2), rel=0.03)
    for u, t in zip(update, untouched):
        np.testing.assert_array_equal(u, t)


def test_client_mode_without_noise_and_clipping_equals_the_non_dp_round():
    # Prepare: one site whose aggregate is its own update: with no noise and no clipping, the DP-FedAvg round
    # (global + mean of updates) must land on the same model as plain FedAvg
    x, y, groups = _patients(6, 3)

    class Same:
        def weighted_mean(self, handle, tag, arrays, weight):
            return arrays

    def run(privacy):
        model = build_model(SMALL, seed=0)
        run_site(model, SiteData(x, y, x[:4], y[:4], groups), TrainConfig(rounds=2, local_epochs=1),
                 [(r, None) for r in range(2)], Same(), privacy=privacy, n_sites=3)
        return get_parameters(model)

    # Execute
    plain = run(None)
    dp = run(DPConfig(mode="client", noise_multiplier=0.0, max_grad_norm=None, delta=0.1))
    # Assert: equal up to float32 rounding of (w - start) + start
    for a, b in zip(plain, dp):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("options, message", [
    ({"mode": "local"}, r"dp.mode must be one of"),
    ({"mode": "sample", "noise_multiplier": -1}, r"noise_multiplier must be a number >= 0"),
    ({"mode": "sample", "max_grad_norm": None}, r"max_grad_norm is required when noise is added"),
    ({"mode": "sample", "max_grad_norm": 0}, r"max_grad_norm must be a positive number"),
    ({"mode": "sample", "delta": 1.5}, r"dp.delta must be in \(0, 1\)"),
    ({"mode": "sample", "max_epsilon": 0}, r"max_epsilon must be a positive number"),
    ({"mode": "sample", "accountant": "moments"}, r"dp.accountant must be one of"),
    ({"mode": "sample", "epsilon": 3}, r"unknown dp option\(s\) \['epsilon'\]"),
    ({"mode": "sample", "secure_noise": "yes"}, r"^dp.secure_noise must be true or false, not 'yes'$"),
    ({"mode": "client", "secure_noise": 1}, r"^dp.secure_noise must be true or false, not 1$"),
    ({"secure_noise": True}, r"^dp.secure_noise=true with dp.mode='none': there is no noise to draw; set dp.mode"),
])
def test_bad_dp_settings_are_refused_with_the_option_named(options, message):
    with pytest.raises(ConfigError, match=message):
        DPConfig.from_dict(options)


def test_delta_must_be_smaller_than_one_over_the_number_of_patients():
    config = DPConfig(mode="sample", delta=0.05)
    with pytest.raises(ConfigError, match=r"dp.delta=0.05 must be smaller than 1/\(number of training patients\) "
                                          r"= 1/20"):
        planned_rounds(config, rounds=3, local_epochs=1, batch_size=4, n_patients=20, n_sites=3)
    assert planned_rounds(config, rounds=3, local_epochs=1, batch_size=4, n_patients=19, n_sites=3) == 3
    with pytest.raises(ConfigError, match=r"number of sites\) = 1/3"):
        planned_rounds(DPConfig(mode="client", delta=0.5), rounds=3, local_epochs=1, batch_size=4, n_patients=19,
                       n_sites=3)


def test_fedprox_is_refused_with_patient_level_dp():
    with pytest.raises(ConfigError, match=r"fedprox_mu must be 0 with dp.mode='sample'"):
        DPConfig(mode="sample").check_training(0.01)
    DPConfig(mode="client").check_training(0.01)


def test_noise_is_not_replayable_from_the_jobs_seed():
    # Two trainers built the same way (same job seed) draw different noise: it comes from the OS's entropy.
    x, y, groups = _patients(8, 3)
    config = DPConfig(mode="sample", noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-3)
    changes = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(SMALL, seed=0)
        trainer = PatientDPSGD(model, torch.optim.SGD(model.parameters(), lr=1.0), groups, config, 4)
        trainer.step(x, y, np.array([0, 1]), augment=lambda t: t)
        trainer.close()
        changes.append(get_parameters(model)[0])
    assert not np.array_equal(changes[0], changes[1])


def test_dp_fedavg_filter_sends_the_clipped_update_with_equal_weight_and_passes_the_rest_through():
    # Prepare: an inner aggregator that records what it is given
    from fate_components.core.privacy.dp_fedavg import DPFedAvg

    sent = []

    class Recording:
        def weighted_mean(self, handle, tag, arrays, weight):
            sent.append((tag, [a.copy() for a in arrays], weight))
            return arrays

    model = build_model(SMALL, seed=0)
    start = get_parameters(model)
    privacy = DPConfig(mode="client", noise_multiplier=0.0, max_grad_norm=0.5, delta=0.1)
    dp = DPFedAvg(Recording(), privacy, n_sites=3, noise=torch.Generator().manual_seed(0))
    # Execute: the round starts, the local model moved by 1.0 in every entry, then the validation loss
    dp.begin_round(0, model)
    mean = dp.weighted_mean(None, "model", [s + 1.0 for s in start], 40.0)
    dp.weighted_mean(None, "val_loss", [np.array([0.3])], 7.0)
    # Assert: the update (not the model) went out, clipped to norm 0.5, weight 1; the loss untouched
    (tag, update, weight), (loss_tag, loss, loss_weight) = sent
    assert (tag, weight, loss_tag, loss_weight) == ("model", 1.0, "val_loss", 7.0)
    norm = math.sqrt(sum(float(np.sum(np.square(u, dtype=np.float64))) for u in update))
    assert norm == pytest.approx(0.5, rel=1e-5) and loss[0][0] == 0.3
    assert dp.update_norm == pytest.approx(math.sqrt(sum(s.size for s in start)), rel=1e-6)
    np.testing.assert_allclose(mean[0], start[0] + update[0], rtol=0, atol=0)
    assert dp.epsilon == math.inf   # no noise: no privacy


# dp.secure_noise: Opacus' secure_mode. torchcsprng (its CSPRNG) has no build for this torch, so the tests make
# it absent (sys.modules entry None: import fails) or present as a stand-in that hands out seeded generators,
# which lets them check that the option reaches Opacus and that the noise is secure_mode's.

class _FakeCsprng:
    """Stands in for torchcsprng: records the device each generator reads and hands out seeded generators."""

    def __init__(self) -> None:
        self.made: list[tuple[str, int]] = []

    def create_random_device_generator(self, path: str) -> torch.Generator:
        seed = 1000 + len(self.made)
        self.made.append((path, seed))
        return torch.Generator().manual_seed(seed)


@pytest.fixture
def no_csprng(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchcsprng", None)


@pytest.fixture
def fake_csprng(monkeypatch):
    import sys

    fake = _FakeCsprng()
    monkeypatch.setitem(sys.modules, "torchcsprng", fake)
    return fake


def test_secure_noise_is_parsed_off_by_default_and_kept_in_the_settings():
    assert DPConfig.from_dict({"mode": "sample"}).secure_noise is False
    config = DPConfig.from_dict({"mode": "client", "secure_noise": True})
    assert config.secure_noise is True and config.to_dict()["secure_noise"] is True


@pytest.mark.bad_input("dp.secure_noise on a site without torchcsprng", "needs the torchcsprng package")
@pytest.mark.parametrize("mode", ["sample", "client"])
def test_secure_noise_without_torchcsprng_fails_before_round_1_naming_the_package(mode, no_csprng):
    # planned_rounds is the site's pre-round DP check: its error becomes every party's verdict, naming the site.
    config = DPConfig(mode=mode, delta=0.01, secure_noise=True)
    expected = (r"^dp.secure_noise=true needs the torchcsprng package, which Opacus' secure_mode uses to draw noise "
                r"and samples from /dev/urandom; it is not installed\. Install a torchcsprng built for torch "
                r"\d+\.\d+\.\d+ \(github\.com/pytorch/csprng, 'Installation'\) on every site, or set "
                r"dp.secure_noise to false$")
    with pytest.raises(ConfigError, match=expected):
        planned_rounds(config, rounds=3, local_epochs=1, batch_size=4, n_patients=20, n_sites=3)
    assert planned_rounds(DPConfig(mode=mode, delta=0.01), rounds=3, local_epochs=1, batch_size=4, n_patients=20,
                          n_sites=3) == 3


def test_secure_noise_without_torchcsprng_also_stops_the_trainer_and_the_dp_fedavg_filter(no_csprng):
    from fate_components.core.privacy.dp_fedavg import DPFedAvg

    x, y, groups = _patients(8, 3)
    model = build_model(SMALL, seed=0)
    with pytest.raises(ConfigError, match=r"needs the torchcsprng package"):
        PatientDPSGD(model, torch.optim.SGD(model.parameters(), lr=1.0), groups,
                     DPConfig(mode="sample", delta=1e-3, secure_noise=True), 4)
    with pytest.raises(ConfigError, match=r"needs the torchcsprng package"):
        DPFedAvg(object(), DPConfig(mode="client", delta=0.1, secure_noise=True), n_sites=3)


def test_secure_noise_draws_opacus_secure_mode_noise_and_samples_from_the_csprng(fake_csprng):
    # Prepare
    from opacus.optimizers.optimizer import _generate_noise

    sigma, clip, expected = 2.0, 0.5, 4
    secure = DPConfig(mode="sample", noise_multiplier=sigma, max_grad_norm=clip, delta=1e-3, secure_noise=True)
    x, y, groups = _patients(8, 3)
    model = build_model(SMALL, seed=0)
    before = [p.detach().clone() for p in model.parameters()]

    # Execute: one step of the secure trainer; the same step without noise
    trainer = PatientDPSGD(model, torch.optim.SGD(model.parameters(), lr=1.0), groups, secure, expected)
    trainer.step(x, y, np.array([0, 3]), augment=lambda t: t)
    trainer.close()
    noisy = torch.cat([(b - p.detach()).ravel() for b, p in zip(before, model.parameters())])
    _, clean = _one_step(DPConfig(mode="sample", noise_multiplier=0.0, max_grad_norm=clip, delta=1e-3), [0, 3],
                         expected)

    # Assert: Opacus in secure mode, the CSPRNG (on /dev/urandom) for the noise and for sampling patients
    assert trainer.optimizer.secure_mode is True
    assert [path for path, _ in fake_csprng.made] == ["/dev/urandom", "/dev/urandom"]
    noise_seed = fake_csprng.made[0][1]
    replay = torch.Generator().manual_seed(noise_seed)
    secure_noise = torch.cat([_generate_noise(sigma * clip, p, replay, secure_mode=True).ravel()
                              for p in model.parameters()])
    plain_noise = torch.normal(0, sigma * clip, (secure_noise.numel(),),
                               generator=torch.Generator().manual_seed(noise_seed))
    noise = (noisy - clean) * expected
    torch.testing.assert_close(noise, secure_noise, rtol=0, atol=1e-4)
    assert float((noise - plain_noise).abs().max()) > 1.0            # not the draws of the plain mode
    assert float(noise.std()) == pytest.approx(sigma * clip, rel=0.03)
    sampling = torch.Generator().manual_seed(fake_csprng.made[1][1])
    drawn = np.flatnonzero((torch.rand(trainer.n_patients, generator=sampling) < trainer.sample_rate).numpy())
    np.testing.assert_array_equal(trainer.sample_patients(), drawn)


def test_secure_noise_refuses_a_seeded_generator_as_opacus_does(fake_csprng):
    from fate_components.core.privacy.dp_fedavg import DPFedAvg

    x, y, groups = _patients(8, 3)
    model = build_model(SMALL, seed=0)
    with pytest.raises(ConfigError, match=r"^dp.secure_noise=true draws noise and samples from the CSPRNG only"):
        PatientDPSGD(model, torch.optim.SGD(model.parameters(), lr=1.0), groups,
                     DPConfig(mode="sample", delta=1e-3, secure_noise=True), 4,
                     noise_generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"^dp.secure_noise=true draws the noise share from the CSPRNG only"):
        DPFedAvg(object(), DPConfig(mode="client", delta=0.1, secure_noise=True), n_sites=3,
                 noise=torch.Generator().manual_seed(0))


def test_client_mode_secure_noise_share_is_opacus_secure_mode_noise_from_the_csprng(fake_csprng):
    # Prepare: the DP-FedAvg filter of a site with secure_noise; the share is drawn at the site, before encryption
    from opacus.optimizers.optimizer import _generate_noise

    from fate_components.core.privacy.dp_fedavg import DPFedAvg

    sent = []

    class Recording:
        def weighted_mean(self, handle, tag, arrays, weight):
            sent.append(arrays)
            return arrays

    model = build_model(SMALL, seed=0)
    start = get_parameters(model)
    config = DPConfig(mode="client", noise_multiplier=0.8, max_grad_norm=100.0, delta=0.1, secure_noise=True)
    dp = DPFedAvg(Recording(), config, n_sites=3)

    # Execute: a round whose update (+0.01 everywhere) is not clipped
    dp.begin_round(0, model)
    dp.weighted_mean(None, "model", [s + 0.01 for s in start], 10.0)

    # Assert: the share is secure_mode noise from the CSPRNG's generator, std sigma*S/sqrt(n-1)
    assert [path for path, _ in fake_csprng.made] == ["/dev/urandom"]
    replay = torch.Generator().manual_seed(fake_csprng.made[0][1])
    std = noise_share_std(config, 3)
    for sent_update, s in zip(sent[0], start):
        expected = 0.01 + _generate_noise(std, torch.zeros(s.shape, dtype=torch.float64), replay,
                                          secure_mode=True).numpy()
        np.testing.assert_allclose(sent_update, expected.astype(np.float32), rtol=1e-6, atol=1e-5)
    share = np.concatenate([u.ravel() - 0.01 for u in sent[0]])
    plain = std * torch.randn(share.shape, generator=torch.Generator().manual_seed(fake_csprng.made[0][1]),
                              dtype=torch.float64).numpy()
    assert np.abs(share - plain).max() > std                          # not the draws of the plain mode
    assert float(share.std()) == pytest.approx(std, rel=0.03)
