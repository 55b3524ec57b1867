"""Resuming from a round checkpoint, and the federation watchdog that names a silent party."""
import threading
import time

import numpy as np
import pytest
import torch

from fate_components.components._watchdog import FederationWatchdog
from fate_components.core.errors import ConfigError
from fate_components.core.federation.checkpoints import CheckpointStore
from fate_components.core.federation.round_loop import SiteData, run_site
from fate_components.core.federation.state import TrainingState
from fate_components.core.learning.model import ModelConfig, build_model
from fate_components.core.learning.training import TrainConfig, get_parameters

SMALL = ModelConfig(widths=(8, 16), blocks=(1, 1), groups=4, dropout=0.2)


def _data(seed: int = 0) -> SiteData:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 24).astype(np.float32)
    x = rng.normal(0.3, 0.05, (24, 1, 12, 12, 12)).astype(np.float32)
    x[y == 1, :, 4:8, 4:8, 4:8] += 0.6
    return SiteData(x[:16], y[:16], x[16:], y[16:])


class Same:
    def weighted_mean(self, handle, tag, arrays, weight):
        return arrays


def test_resuming_after_a_round_ends_with_the_uninterrupted_model(tmp_path):
    # Prepare: an uninterrupted run of 4 rounds that checkpoints every round (dropout and augmentation on:
    # the random streams must resume too)
    config = TrainConfig(rounds=4, local_epochs=1, learning_rate=1e-3, batch_size=4)
    store = CheckpointStore(tmp_path / "ckpt", fingerprint="job-a")
    full = build_model(SMALL, seed=0)
    run_site(full, _data(), config, [(r, None) for r in range(4)], Same(), observers=[store])
    # Execute: a new job resumes from the checkpoint of round 2 (index 1)
    resumed = build_model(SMALL, seed=0)
    reports = run_site(resumed, _data(), config, [(r, None) for r in range(4)], Same(), resume=store.load(1))
    # Assert: only rounds 3 and 4 ran, and the model is bit-identical to the uninterrupted one
    assert store.rounds() == [0, 1, 2, 3]
    assert [r.round for r in reports] == [2, 3]
    for a, b in zip(get_parameters(full), get_parameters(resumed)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_of_other_settings_is_refused_naming_the_file(tmp_path):
    state = TrainingState(round=0, model={"w": torch.zeros(2)}, optimizer={}, generator=torch.Generator().get_state(),
                          torch_rng=torch.get_rng_state(), best_loss=float("inf"), best_round=-1, best_state=None,
                          dp_steps=0)
    CheckpointStore(tmp_path, "job-a").save(state)
    assert CheckpointStore(tmp_path, "job-a").load(0).model["w"].shape == (2,)
    with pytest.raises(ConfigError, match=r"round_0000.pt was written by a job with another model"):
        CheckpointStore(tmp_path, "job-b").load(0)
    with pytest.raises(ConfigError, match=r"no checkpoint of round 4"):
        CheckpointStore(tmp_path, "job-a").load(3)
    assert not list(tmp_path.glob("*.partial-*"))


class _Federation:
    """Stands in for FATE's federation object in a unit test: one party never answers."""

    def __init__(self, silent: str) -> None:
        self.silent, self.calls, self.release = silent, [], threading.Event()

    def pull_bytes(self, name, tag, parties):
        self.calls.append([p[1] for p in parties])
        if parties[0][1] == self.silent:
            self.release.wait(10)
        return [b"ok"]

    def pull_table(self, name, tag, parties, table_metas=None):
        return self.pull_bytes(name, tag, parties)


def test_watchdog_names_the_party_that_went_silent():
    # Prepare
    federation, fired = _Federation(silent="10001"), []
    watchdog = FederationWatchdog(1.0, label=lambda p: f"{p[0]} {p[1]}", on_timeout=fired.append).install(federation)
    # Execute: the arbiter waits for three sites; the third never answers
    worker = threading.Thread(target=federation.pull_bytes,
                              args=("model_cipher", "0", [("guest", "9999"), ("host", "10000"), ("host", "10001")]))
    worker.start()
    deadline = time.monotonic() + 5
    while not fired and time.monotonic() < deadline:
        time.sleep(0.1)
    federation.release.set()
    worker.join()
    watchdog.stop()
    # Assert: pulled one party at a time, and the message names the silent one
    assert federation.calls == [["9999"], ["10000"], ["10001"]]
    assert len(fired) == 1
    assert fired[0].startswith("Federation timeout: no message 'model_cipher' from host 10001 for 1 s")


def test_watchdog_stays_quiet_when_messages_arrive_in_time():
    federation, fired = _Federation(silent="none"), []
    watchdog = FederationWatchdog(0.5, on_timeout=fired.append).install(federation)
    for _ in range(3):
        assert federation.pull_bytes("x", "0", [("guest", "9999")]) == [b"ok"]
        time.sleep(0.4)
    watchdog.stop()
    assert fired == []
