"""Per-round checkpoints in a site-local directory, so a failed job can resume where every site got to."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from fate_components.core.errors import ConfigError

from ._artifacts import replace_file

_NAME = re.compile(r"^round_(\d{4})\.pt$")


class CheckpointStore:
    """`round_NNNN.pt` files, each the whole training state after round NNNN, written whole or not at all.

    Every checkpoint carries the job's fingerprint (model signature and training settings);
    a resume with different settings is refused, naming the file.
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

    def save(self, state: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        replace_file(self._path(state["round"]),
                     lambda p: torch.save({**state, "fingerprint": self.fingerprint}, p))

    def load(self, round_idx: int) -> dict:
        path = self._path(round_idx)
        if not path.exists():
            raise ConfigError(f"resume: no checkpoint of round {round_idx + 1} at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            raise ConfigError(f"resume: {path} was written by a job with another model or other training settings; "
                              f"resume with the same conf, or start without resume")
        return state

    def _path(self, round_idx: int) -> Path:
        return self.directory / f"round_{round_idx:04d}.pt"
