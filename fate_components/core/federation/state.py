"""`TrainingState`: everything a site needs to continue after a completed round, bit for bit.

A checkpoint is one `TrainingState` (`to_dict` is what `CheckpointStore` writes); resuming
restores it into a freshly built model, optimizer, generator and early-stopping tracker, and the
global torch RNG that dropout draws from, so the resumed run continues as the uninterrupted one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from fate_components.core.federation.early_stopping import EarlyStopping
from fate_components.core.learning.device import to_cpu

__all__ = ["TrainingState"]


@dataclass(frozen=True)
class TrainingState:
    round: int                 # the last completed round (0-based)
    model: dict                # state dicts, deep copies
    optimizer: dict
    generator: torch.Tensor    # the training generator (batch order, augmentation, negatives)
    torch_rng: torch.Tensor    # the global generator (dropout)
    best_loss: float
    best_round: int
    best_state: dict | None
    dp_steps: int              # patient-level DP-SGD steps taken so far (the accountant's count)

    @classmethod
    def capture(cls, round_idx: int, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                generator: torch.Generator, stopping: EarlyStopping, dp_steps: int) -> "TrainingState":
        return cls(round=round_idx, model=copy.deepcopy(model.state_dict()),
                   optimizer=copy.deepcopy(optimizer.state_dict()), generator=generator.get_state(),
                   torch_rng=torch.get_rng_state(), best_loss=stopping.best_loss, best_round=stopping.best_round,
                   best_state=stopping.best_state, dp_steps=dp_steps)

    def restore(self, *, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                stopping: EarlyStopping) -> None:
        """Load this state into the site's objects; the DP step count is restored by the local step."""
        model.load_state_dict(self.model)
        optimizer.load_state_dict(self.optimizer)
        generator.set_state(self.generator)
        torch.set_rng_state(self.torch_rng)
        stopping.best_loss, stopping.best_round, stopping.best_state = self.best_loss, self.best_round, self.best_state

    def to_dict(self) -> dict:
        """Plain containers and CPU tensors only: what `torch.load(weights_only=True)` reads back on any machine.

        A state captured on a GPU is written with its tensors on the CPU (a CPU run's tensors are
        written as they are), so a checkpoint resumes on a CPU or a GPU alike.
        """
        return {"round": self.round, "model": to_cpu(self.model), "optimizer": to_cpu(self.optimizer),
                "generator": self.generator, "torch_rng": self.torch_rng, "best_loss": self.best_loss,
                "best_round": self.best_round, "best_state": to_cpu(self.best_state), "dp_steps": self.dp_steps}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingState":
        return cls(round=d["round"], model=d["model"], optimizer=d["optimizer"], generator=d["generator"],
                   torch_rng=d["torch_rng"], best_loss=d["best_loss"], best_round=d["best_round"],
                   best_state=d.get("best_state"), dp_steps=d.get("dp_steps", 0))
