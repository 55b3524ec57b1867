"""Model signatures: every site must train the identical architecture before any update is exchanged."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch
from torch import nn

__all__ = ["LayerDifference", "first_layer_difference", "model_signature", "signature_mismatch"]


@dataclass(frozen=True)
class LayerDifference:
    """Where two ordered layer lists first part: `kind` is "name", "shape", "dtype" or "count"."""

    kind: str
    index: int
    name_a: str      # for "count": the first layer the longer list has beyond the shorter one
    name_b: str
    shape_a: tuple = ()
    shape_b: tuple = ()
    dtype_a: str | None = None
    dtype_b: str | None = None
    length_a: int = 0
    length_b: int = 0

    @property
    def a_is_longer(self) -> bool:
        return self.length_a > self.length_b


def first_layer_difference(a: list, b: list) -> LayerDifference | None:
    """Compare two lists of (name, shape, dtype) layer by layer; dtype None is not compared.

    Used by the pre-round signature check and by `fate-lung verify-model`: names, then shapes,
    then dtypes of each layer, then the layer counts.
    """
    for i, ((n1, s1, d1), (n2, s2, d2)) in enumerate(zip(a, b)):
        found = LayerDifference("name", i, n1, n2, tuple(s1), tuple(s2), d1, d2, len(a), len(b))
        if n1 != n2:
            return found
        if tuple(s1) != tuple(s2):
            return replace(found, kind="shape")
        if d1 is not None and d2 is not None and d1 != d2:
            return replace(found, kind="dtype")
    if len(a) != len(b):
        extra = (a if len(a) > len(b) else b)[min(len(a), len(b))][0]
        return LayerDifference("count", min(len(a), len(b)), extra, extra, length_a=len(a), length_b=len(b))
    return None


def model_signature(model: nn.Module) -> dict:
    """Ordered parameter names, shapes and dtypes, a hash of them, and the torch version."""
    entries = [(name, tuple(t.shape), str(t.dtype).replace("torch.", "")) for name, t in model.state_dict().items()]
    digest = hashlib.sha256(repr(entries).encode()).hexdigest()
    return {"entries": [list(e) for e in entries], "hash": digest, "torch": str(torch.__version__)}


def signature_mismatch(signatures: dict[str, dict], *, check_torch_version: bool = True) -> str | None:
    """None when all signatures agree, else a message naming the first differing layer and parties.

    `signatures` maps a party label such as "hospital_a (9999)" to `model_signature(...)`.
    """
    labels = list(signatures)
    ref_label = labels[0]
    ref = signatures[ref_label]
    for label in labels[1:]:
        other = signatures[label]
        if other["hash"] == ref["hash"]:
            continue
        diff = first_layer_difference(ref["entries"], other["entries"])
        if diff is None:   # same layers under another hash (not expected): nothing to name
            continue
        if diff.kind == "name":
            return (f"Secure aggregation failed: parameter name mismatch: {ref_label} has '{diff.name_a}' where "
                    f"{label} has '{diff.name_b}'")
        if diff.kind == "shape":
            return (f"Secure aggregation failed: parameter size mismatch at '{diff.name_a}': "
                    f"{ref_label} {diff.shape_a} vs {label} {diff.shape_b}")
        if diff.kind == "dtype":
            return (f"Secure aggregation failed: dtype mismatch at '{diff.name_a}': {ref_label} {diff.dtype_a} vs "
                    f"{label} {diff.dtype_b}")
        longer, shorter = (ref_label, label) if diff.a_is_longer else (label, ref_label)
        return (f"Secure aggregation failed: parameter count mismatch: {longer} has "
                f"{max(diff.length_a, diff.length_b)} parameters, {shorter} "
                f"{min(diff.length_a, diff.length_b)}; first extra is '{diff.name_a}'")
    if check_torch_version:
        versions = {label: sig["torch"] for label, sig in signatures.items()}
        if len(set(versions.values())) > 1:
            return f"Secure aggregation failed: torch versions differ between sites: {versions}"
    return None
