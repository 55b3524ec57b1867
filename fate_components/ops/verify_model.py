"""`fate-lung verify-model A B`: compare two saved models layer by layer.

A and B may be model.pt files, directories holding one (such as what `flow output
download-model` extracts), or FATE job model directories.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fate_components.core.errors import LungError


class ArchitectureMismatch(LungError):
    """The two models do not have the same layers and shapes."""


def load_state(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("model.pt"))
        if len(found) != 1:
            raise LungError(f"{path}: expected one model.pt below it, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise LungError(f"{path}: no such model file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise LungError(f"{path}: not a state dict")
    return state


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], *, atol: float = 0.0) -> dict:
    """Raises ArchitectureMismatch; else returns the first differing layer and the largest difference."""
    names_a, names_b = list(a), list(b)
    for i, (na, nb) in enumerate(zip(names_a, names_b)):
        if na != nb:
            raise ArchitectureMismatch(f"layer {i}: '{na}' in A vs '{nb}' in B")
        if tuple(a[na].shape) != tuple(b[nb].shape):
            raise ArchitectureMismatch(f"layer '{na}': shape {tuple(a[na].shape)} in A vs {tuple(b[nb].shape)} in B")
    if len(names_a) != len(names_b):
        longer = "A" if len(names_a) > len(names_b) else "B"
        extra = (names_a if longer == "A" else names_b)[min(len(names_a), len(names_b))]
        raise ArchitectureMismatch(f"A has {len(names_a)} layers, B {len(names_b)}; first extra in {longer}: '{extra}'")
    first, largest, largest_layer = None, 0.0, None
    for name in names_a:
        diff = float((a[name].double() - b[name].double()).abs().max()) if a[name].numel() else 0.0
        if diff > atol and first is None:
            first = name
        if diff > largest:
            largest, largest_layer = diff, name
    return {"layers": len(names_a), "first_differing_layer": first, "largest_difference": largest,
            "largest_difference_layer": largest_layer}


def main(path_a: Path, path_b: Path, atol: float = 0.0) -> int:
    try:
        result = compare(load_state(path_a), load_state(path_b), atol=atol)
    except ArchitectureMismatch as e:
        print(f"architecture mismatch: {e}")
        return 2
    if result["first_differing_layer"] is None:
        print(f"identical within {atol:g}: {result['layers']} layers "
              f"(largest difference {result['largest_difference']:.3g})")
        return 0
    print(f"same architecture ({result['layers']} layers); first differing layer: '{result['first_differing_layer']}'; "
          f"largest difference {result['largest_difference']:.6g} at '{result['largest_difference_layer']}'")
    return 1
