"""Model signatures: every site must train the identical architecture before any update is exchanged."""
from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["model_signature", "signature_mismatch"]


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
        ref_entries, other_entries = ref["entries"], other["entries"]
        for (n1, s1, d1), (n2, s2, d2) in zip(ref_entries, other_entries):
            if n1 != n2:
                return (f"Secure aggregation failed: parameter name mismatch: {ref_label} has '{n1}' where "
                        f"{label} has '{n2}'")
            if tuple(s1) != tuple(s2):
                return (f"Secure aggregation failed: parameter size mismatch at '{n1}': "
                        f"{ref_label} {tuple(s1)} vs {label} {tuple(s2)}")
            if d1 != d2:
                return f"Secure aggregation failed: dtype mismatch at '{n1}': {ref_label} {d1} vs {label} {d2}"
        longer, shorter = (ref_label, label) if len(ref_entries) > len(other_entries) else (label, ref_label)
        extra = (ref_entries if longer == ref_label else other_entries)[min(len(ref_entries), len(other_entries))]
        return (f"Secure aggregation failed: parameter count mismatch: {longer} has "
                f"{max(len(ref_entries), len(other_entries))} parameters, {shorter} "
                f"{min(len(ref_entries), len(other_entries))}; first extra is '{extra[0]}'")
    if check_torch_version:
        versions = {label: sig["torch"] for label, sig in signatures.items()}
        if len(set(versions.values())) > 1:
            return f"Secure aggregation failed: torch versions differ between sites: {versions}"
    return None
