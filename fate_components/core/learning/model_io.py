"""A trained model on disk: `model.pt` (the state dict) beside `model_meta.json` (how to rebuild it).

Files are replaced whole (`replace_file`): a reader, or a resumed job, never finds half a file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

from fate_components.core.learning.device import to_cpu
from fate_components.core.learning.model import ModelConfig, build_model

__all__ = ["MODEL_FILE", "META_FILE", "replace_file", "save_model", "load_model"]

MODEL_FILE = "model.pt"
META_FILE = "model_meta.json"


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary name, so a reader never finds half a file under the final one."""
    tmp = path.with_name(path.name + f".partial-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_model(directory: Path, model: torch.nn.Module, meta: dict) -> None:
    """`meta` must hold "model_config" (a `ModelConfig.to_dict()`): `load_model` rebuilds from it."""
    directory.mkdir(parents=True, exist_ok=True)
    # CPU tensors whatever the training device, so the model loads on a machine without a GPU.
    replace_file(directory / MODEL_FILE, lambda p: torch.save(to_cpu(model.state_dict()), p))
    replace_file(directory / META_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))


def load_model(directory: Path) -> tuple[torch.nn.Module, dict]:
    """The model (in eval mode, on the CPU: move it where it should run) and its meta, from `save_model`'s files."""
    directory = Path(directory)
    meta = json.loads((directory / META_FILE).read_text())
    model = build_model(ModelConfig.from_dict(meta["model_config"]))
    model.load_state_dict(torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True))
    model.eval()
    return model, meta
