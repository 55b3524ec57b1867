"""`fate-lung verify-model A B`: compare two saved models layer by layer.

A and B may be model.pt files, directories holding one (such as what `flow output
download-model` extracts), or FATE job model directories.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fate_components.core.errors import LungError
from fate_components.core.learning.signature import first_layer_difference


class ArchitectureMismatch(LungError):
    """The two models do not have the same layers and shapes."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
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
    names_a = list(a)
    mismatch = first_layer_difference([(n, tuple(t.shape), None) for n, t in a.items()],
                                  [(n, tuple(t.shape), None) for n, t in b.items()])
    if mismatch is not None and mismatch.kind == "name":
        raise ArchitectureMismatch(f"layer {mismatch.index}: '{mismatch.name_a}' in A vs '{mismatch.name_b}' in B")
    if mismatch is not None and mismatch.kind == "shape":
        raise ArchitectureMismatch(f"layer '{mismatch.name_a}': shape {mismatch.shape_a} in A vs {mismatch.shape_b} "
                                   f"in B")
    if mismatch is not None:   # the layer counts differ
        raise ArchitectureMismatch(f"A has {mismatch.length_a} layers, B {mismatch.length_b}; first extra in "
                                   f"{'A' if mismatch.a_is_longer else 'B'}: '{mismatch.name_a}'")
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
        result = compare(read_state_dict(path_a), read_state_dict(path_b), atol=atol)
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
