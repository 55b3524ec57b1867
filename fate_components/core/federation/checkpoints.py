"""Per-round checkpoints in a site-local directory, so a failed job can resume where every site got to."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import torch

from fate_components.core.errors import ConfigError
from fate_components.core.federation.state import TrainingState
from fate_components.core.learning.model_io import replace_file

__all__ = ["CheckpointStore"]

_NAME = re.compile(r"^round_(\d{4})\.pt$")


class CheckpointStore:
    """`round_NNNN.pt` files, each the whole `TrainingState` after round NNNN, written whole or not at all.

    Every checkpoint carries the job's fingerprint (model signature and training settings);
    a resume with different settings is refused, naming the file. As a round observer of
    `run_site` it checkpoints every completed round.
    """

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def rounds(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name)))

    def last_round(self) -> int:
        rounds = self.rounds()
        return rounds[-1] if rounds else -1

    def clear(self) -> None:
        for r in self.rounds():
            self._path(r).unlink(missing_ok=True)

    def save(self, state: TrainingState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        replace_file(self._path(state.round),
                     lambda p: torch.save({**state.to_dict(), "fingerprint": self.fingerprint}, p))

    def load(self, round_idx: int) -> TrainingState:
        path = self._path(round_idx)
        if not path.exists():
            raise ConfigError(f"resume: no checkpoint of round {round_idx + 1} at {path}")
        # map_location: a checkpoint from an older build may hold CUDA tensors; restore() moves them on.
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            raise ConfigError(f"resume: {path} was written by a job with another model or other training settings; "
                              f"resume with the same conf, or start without resume")
        return TrainingState.from_dict(state)

    def round_done(self, report: Any, state: Callable[[], TrainingState], round_handle: Any) -> None:
        self.save(state())

    def _path(self, round_idx: int) -> Path:
        return self.directory / f"round_{round_idx:04d}.pt"
