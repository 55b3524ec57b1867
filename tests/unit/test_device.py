"""The `device` option: parsing, the auto choice, the pre-round refusal naming the site, portable checkpoints.

What a CPU-only machine can show: the option's spelling and the choice `auto` makes, the
verdict every party gets for a site without CUDA, that the CUDA feed reads the CPU loop's
batches in its order, and that a file whose tensors are recorded as CUDA tensors (written here
with torch's location tag faked, since no GPU is at hand) loads and resumes on a CPU. The CUDA
tests at the end (AMP training, resume across devices, predictions agreeing with the CPU's) run
only where torch sees a GPU (bench/gpu_check.sh runs them there).
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from fate_components.core.errors import ConfigError
from fate_components.core.federation.checkpoints import CheckpointStore
from fate_components.core.federation.round_loop import SiteData, run_site
from fate_components.core.learning import device as device_mod
from fate_components.core.learning.device import (
    EpochBatches,
    cuda_batches,
    native_bf16_cpu,
    parse_device,
    resolve_device,
    site_device_problem,
    to_cpu,
)
from fate_components.core.learning.model import ModelConfig, build_model
from fate_components.core.learning.model_io import load_model, save_model
from fate_components.core.learning.signature import model_signature
from fate_components.core.learning.training import (TrainConfig, get_parameters, predict_proba,
                                                    resolve_inference_precision, train_local)
from fate_components.secure_agg.channel import FederationError
from fate_components.secure_agg.checks import arbiter_check, site_check
from fate_components.secure_agg.memory_channel import MemoryFederation, run_parties

SMALL = ModelConfig(widths=(8, 16), blocks=(1, 1), groups=4, dropout=0.2)
GUEST, HOST_B, HOST_C, ARBITER = "guest 9999", "host 10000", "host 10001", "arbiter 9999"
NAMES = {GUEST: "hospital_a", HOST_B: "hospital_b", HOST_C: "hospital_c"}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: torch.cuda.is_available() is False on this machine")


def _data(seed: int = 0, n: int = 24) -> SiteData:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.float32)
    x = rng.normal(0.3, 0.05, (n, 1, 12, 12, 12)).astype(np.float32)
    x[y == 1, :, 4:8, 4:8, 4:8] += 0.6
    cut = n * 2 // 3
    return SiteData(x[:cut], y[:cut], x[cut:], y[cut:])


class Same:
    def weighted_mean(self, handle, tag, arrays, weight):
        return arrays


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, whatever it has (the refusal must not depend on where tests run)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def fake_cuda_location(monkeypatch):
    """torch.save records every storage as 'cuda:0', as a save on a GPU does; the bytes stay the CPU's."""
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")


# -- the option --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [("auto", "auto"), ("CPU", "cpu"), (" cuda ", "cuda"), ("cuda:1", "cuda:1")])
def test_device_spellings_are_normalised(spec, expected):
    assert parse_device(spec) == expected


@pytest.mark.parametrize("spec", ["gpu", "cpu:1", "cuda:x", "cuda:", "", "auto:0", "mps"])
def test_other_device_spellings_are_refused_with_the_choices(spec):
    with pytest.raises(ConfigError, match=r"is not one of auto, cpu, cuda or cuda:N"):
        parse_device(spec)


def test_auto_is_the_cpu_without_cuda_and_says_so(no_cuda, caplog):
    with caplog.at_level(logging.INFO, logger=device_mod.__name__):
        chosen = resolve_device("auto")
    assert chosen == torch.device("cpu")
    assert "device auto: cpu (torch sees no CUDA device)" in caplog.text
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_cuda_is_a_reason_not_a_device(no_cuda):
    device, problem = site_device_problem("cuda", "none")
    assert device is None
    assert problem.startswith("device 'cuda': torch sees no CUDA device here")
    assert "set device to cpu or auto" in problem
    assert site_device_problem("auto", "sample") == (torch.device("cpu"), None)


def test_patient_level_dp_on_cuda_is_refused(monkeypatch):
    # Prepare: a machine that reports one GPU (patched: the refusal is decided before any CUDA call)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    # Execute
    device, problem = site_device_problem("cuda", "sample")
    _, index_problem = site_device_problem("cuda:3", "none")
    # Assert
    assert device is None and "runs on the CPU only" in problem and "set device to cpu" in problem
    assert index_problem == "device 'cuda:3': this machine has 1 CUDA device(s) (cuda:0 to cuda:0)"


def _payload(device_error: str | None = None) -> dict:
    return {"signature": model_signature(torch.nn.Linear(3, 4)), "patch_spec": {"size_mm": 32},
            "schedule": {"rounds": 5, "aggregation": "paillier"}, "dp_error": None, "device_error": device_error}


def test_a_site_asking_for_cuda_it_lacks_stops_every_party_naming_it(no_cuda):
    # Prepare: hospital_c asks for cuda; each site computes its device verdict as train_site does
    fed = MemoryFederation()
    specs = {GUEST: "auto", HOST_B: "cpu", HOST_C: "cuda"}
    payloads = {label: _payload(site_device_problem(spec, "none")[1]) for label, spec in specs.items()}
    tasks = {label: (lambda label=label: site_check(fed.channel(label), NAMES[label], payloads[label]))
             for label in specs}
    # Execute
    results = run_parties({**tasks, ARBITER: lambda: arbiter_check(fed.channel(ARBITER))})
    # Assert: one message, at every party, naming the site, before any round
    messages = {label: str(err) for label, err in results.items()}
    assert all(isinstance(err, FederationError) for err in results.values())
    assert len(set(messages.values())) == 1
    assert messages[GUEST].startswith("Device check failed at hospital_c (10001): device 'cuda': torch sees no CUDA")
    assert not [m for m in fed.messages if m.path[:1] != ("site_check",)]


# -- the CUDA feed, checked on the CPU ----------------------------------------------------------------------------

def test_epoch_batches_are_the_cpu_loops_batches_in_its_order():
    # Prepare: one epoch's order as train_local draws it
    x = np.arange(10 * 2, dtype=np.float16).reshape(10, 1, 2, 1, 1)
    y = (np.arange(10) % 3 == 0).astype(np.float32)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(5)).numpy()
    batches = EpochBatches(x, y, order, 4)
    # Execute: through the DataLoader with a worker process (pinning needs a GPU: its warning is expected here)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = list(cuda_batches(batches, workers=1))
    # Assert
    assert len(batches) == len(loaded) == 3
    for i, (bx, by) in enumerate(loaded):
        rows = np.sort(order[i * 4:i * 4 + 4])
        assert bx.dtype == torch.float32
        np.testing.assert_array_equal(bx.numpy(), x[rows].astype(np.float32))
        np.testing.assert_array_equal(by.numpy(), y[rows])


def test_to_cpu_hands_back_a_cpu_state_itself():
    # A CPU run must save what it saved before, byte for byte: the same object, metadata included.
    state = build_model(SMALL).state_dict()
    assert to_cpu(state) is state
    nested = {"a": [torch.zeros(2), (torch.ones(1), 3)], "b": None}
    assert to_cpu(nested) is nested


@pytest.mark.parametrize("flags, native", [("fpu avx512f avx512_bf16 avx512_vnni", True),
                                           ("fpu avx512f amx_bf16 amx_tile", True),
                                           ("fpu avx512f avx512bw avx512vl", False),   # oneDNN would emulate it
                                           (None, False)])                            # no cpuinfo: float32
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    assert native_bf16_cpu(str(cpuinfo)) is native


@pytest.mark.parametrize("native", [True, False])
def test_auto_inference_precision_follows_the_cpu(monkeypatch, native):
    from fate_components.core.learning import training

    monkeypatch.setattr(training, "native_bf16_cpu", lambda: native)
    cpu = torch.device("cpu")
    assert resolve_inference_precision("auto", cpu) == ("bfloat16" if native else "float32")
    assert resolve_inference_precision("float32", cpu) == "float32"
    assert resolve_inference_precision("bfloat16", cpu) == "bfloat16"
    with pytest.raises(ConfigError, match="inference precision must be one of"):
        resolve_inference_precision("fp16", cpu)


def test_auto_scores_like_the_precision_it_picks():
    model = build_model(SMALL, seed=0)
    x = np.random.default_rng(0).random((6, 1, 16, 16, 16), dtype=np.float32)
    picked = resolve_inference_precision("auto", torch.device("cpu"))
    np.testing.assert_array_equal(predict_proba(model, x, precision="auto"), predict_proba(model, x, precision=picked))


# -- portability --------------------------------------------------------------------------------------------------

def test_a_checkpoint_recorded_as_cuda_resumes_on_the_cpu_bit_identically(tmp_path, fake_cuda_location,
                                                                          monkeypatch):
    # Prepare: an uninterrupted run whose checkpoint files record every tensor on cuda:0
    config = TrainConfig(rounds=3, local_epochs=1, learning_rate=1e-3, batch_size=4)
    store = CheckpointStore(tmp_path / "ckpt", fingerprint="job")
    full = build_model(SMALL, seed=0)
    run_site(full, _data(), config, [(r, None) for r in range(3)], Same(), observers=[store])
    monkeypatch.undo()
    if not torch.cuda.is_available():   # the files do claim CUDA: a plain load on a CPU refuses them
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "ckpt" / "round_0000.pt", weights_only=True)
    # Execute: resume after round 1 on this machine's CPU
    resumed = build_model(SMALL, seed=0)
    state = store.load(0)
    reports = run_site(resumed, _data(), config, [(r, None) for r in range(3)], Same(), resume=state)
    # Assert
    assert all(t.device.type == "cpu" for t in state.model.values())
    assert [r.round for r in reports] == [1, 2]
    for a, b in zip(get_parameters(full), get_parameters(resumed)):
        np.testing.assert_array_equal(a, b)


def test_a_model_recorded_as_cuda_loads_on_the_cpu(tmp_path, fake_cuda_location, monkeypatch):
    model = build_model(SMALL, seed=1)
    save_model(tmp_path, model, {"model_config": SMALL.to_dict()})
    monkeypatch.undo()
    loaded, _ = load_model(tmp_path)
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    for a, b in zip(get_parameters(model), get_parameters(loaded)):
        np.testing.assert_array_equal(a, b)


# -- on a GPU -----------------------------------------------------------------------------------------------------

@needs_cuda
def test_auto_picks_cuda_and_says_which(caplog):
    with caplog.at_level(logging.INFO, logger=device_mod.__name__):
        assert resolve_device("auto") == torch.device("cuda", 0)
    assert "device auto: cuda:0 (" in caplog.text and "mixed precision" in caplog.text


@needs_cuda
@pytest.mark.parametrize("amp", [True, False])
def test_a_few_steps_on_cuda_learn_and_keep_float32_weights(amp):
    data = _data(n=48)
    model = build_model(SMALL, seed=0).cuda()
    before = get_parameters(model)
    optimizer = TrainConfig().make_optimizer(model)
    result = train_local(model, optimizer, data.train_x, data.train_y, epochs=2, batch_size=8,
                         generator=torch.Generator().manual_seed(0), augment=True, aug_shift_voxels=1,
                         aug_intensity_jitter=0.05, fedprox_mu=0.1, amp=amp)
    after = get_parameters(model)
    assert np.isfinite(result.loss) and result.n_samples == len(data.train_x)
    assert all(a.dtype == np.float32 for a in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert all(s["exp_avg"].device.type == "cuda" for s in optimizer.state.values())


@needs_cuda
@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_resumes_on_the_other_device(tmp_path, first, then):
    config = TrainConfig(rounds=3, local_epochs=1, learning_rate=1e-3, batch_size=4)
    store = CheckpointStore(tmp_path / "ckpt", fingerprint="job")
    run_site(build_model(SMALL, seed=0), _data(), config, [(r, None) for r in range(3)], Same(), observers=[store],
             device=first)
    state = store.load(0)
    resumed = build_model(SMALL, seed=0)
    reports = run_site(resumed, _data(), config, [(r, None) for r in range(3)], Same(), resume=state, device=then)
    assert [r.round for r in reports] == [1, 2] and np.isfinite(reports[-1].train_loss)
    assert all(p.device.type == then for p in resumed.parameters())
    assert all(t.device.type == "cpu" for t in torch.load(store._path(2), weights_only=True)["model"].values())


@needs_cuda
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_predictions_on_cuda_agree_with_the_cpu(precision):
    data = _data(n=60)
    model = build_model(SMALL, seed=2)
    on_cpu = predict_proba(model, data.train_x)
    on_gpu = predict_proba(model.cuda(), data.train_x, precision=precision)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-2)
