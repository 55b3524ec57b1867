"""Fixed-point encoding and packing of model updates into large plaintext integers.

Each site sends w_s * x for its weight fraction w_s = n_s / N (N = total samples, which
the sites learn through an encrypted sum first). Because the fractions sum to 1, the
*sum over sites* stays inside [-clip, clip] like a single update, so a slot needs room
for one value plus a few bits for the per-site offsets and rounding, not for the sum of
raw sample counts. Values outside [-clip, clip] are clipped and counted.

Encoding of one value v (|v| <= clip after clipping) at site s:
    u_s = round(w_s * (v + clip) * 2**precision_bits)      (never negative)
Summing u_s over sites gives round-off within +-S/2 of (mean + clip) * 2**precision_bits,
which is < 2 * clip * 2**precision_bits + S, so each slot holds that many bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fate_components.core.errors import ConfigError

__all__ = ["PackingSpec", "encode_weighted", "pack", "unpack", "decode_sum"]


@dataclass(frozen=True)
class PackingSpec:
    precision_bits: int = 20      # fractional bits: absolute error per value <= n_sites * 2**-precision_bits / 2
    clip: float = 8.0             # values are clipped to [-clip, clip] (model parameters; counted when it happens)
    max_sites: int = 16           # headroom for summing this many sites' rounding
    plaintext_bits: int = 2046    # usable bits of one plaintext (key size - 2 keeps it below n)

    def __post_init__(self) -> None:
        if not 8 <= self.precision_bits <= 40:
            raise ConfigError(f"precision_bits must be in [8, 40], not {self.precision_bits}")
        if not self.clip > 0:
            raise ConfigError(f"clip must be positive, not {self.clip}")
        if self.max_sites < 2:
            raise ConfigError(f"max_sites must be >= 2, not {self.max_sites}")
        if self.slots_per_plaintext < 1:
            raise ConfigError(f"a {self.plaintext_bits}-bit plaintext cannot hold one {self.slot_bits}-bit slot")

    @property
    def slot_bits(self) -> int:
        value_bits = math.ceil(math.log2(2 * self.clip)) + self.precision_bits
        return value_bits + math.ceil(math.log2(self.max_sites)) + 1

    @property
    def slots_per_plaintext(self) -> int:
        return self.plaintext_bits // self.slot_bits

    def n_plaintexts(self, n_values: int) -> int:
        return -(-n_values // self.slots_per_plaintext)

    @property
    def max_abs_error(self) -> float:
        """Worst-case absolute error of one averaged value (rounding at every site)."""
        return self.max_sites * 0.5 * 2.0 ** -self.precision_bits

    @classmethod
    def for_key(cls, key_bits: int, **kwargs) -> "PackingSpec":
        return cls(plaintext_bits=key_bits - 2, **kwargs)


def encode_weighted(values: np.ndarray, weight_fraction: float, spec: PackingSpec) -> tuple[np.ndarray, int]:
    """Clip, shift and scale `values` into non-negative integers (uint64); returns (codes, number clipped)."""
    if not 0.0 <= weight_fraction <= 1.0:
        raise ConfigError(f"weight fraction must be in [0, 1], not {weight_fraction}")
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(v)
    n_clipped = int(np.count_nonzero(~finite) + np.count_nonzero(np.abs(v[finite]) > spec.clip))
    v = np.clip(np.nan_to_num(v, nan=0.0, posinf=spec.clip, neginf=-spec.clip), -spec.clip, spec.clip)
    codes = np.rint(weight_fraction * (v + spec.clip) * 2.0 ** spec.precision_bits)
    return codes.astype(np.uint64), n_clipped


def pack(codes: np.ndarray, spec: PackingSpec) -> list[int]:
    """Pack slot codes (each < 2**slot_bits) into Python ints, slots_per_plaintext per int, lowest slot first."""
    k, bits = spec.slots_per_plaintext, spec.slot_bits
    codes = np.asarray(codes, dtype=np.uint64)
    padded = np.zeros(spec.n_plaintexts(len(codes)) * k, dtype=np.uint64)
    padded[:len(codes)] = codes
    shifts = [bits * j for j in range(k)]
    out = []
    for row in padded.reshape(-1, k).tolist():
        acc = 0
        for value, shift in zip(row, shifts):
            acc |= value << shift
        out.append(acc)
    return out


def unpack(packed: list[int], n_values: int, spec: PackingSpec) -> np.ndarray:
    """Inverse of `pack` (also for sums of packed ints, as long as no slot overflowed)."""
    k, bits = spec.slots_per_plaintext, spec.slot_bits
    mask = (1 << bits) - 1
    out = np.empty(len(packed) * k, dtype=np.float64)
    i = 0
    for acc in packed:
        for _ in range(k):
            out[i] = acc & mask
            acc >>= bits
            i += 1
    return out[:n_values]


def decode_sum(summed_codes: np.ndarray, spec: PackingSpec) -> np.ndarray:
    """Weighted mean from the slot-wise sum of all sites' codes (their weight fractions sum to 1)."""
    return np.asarray(summed_codes, dtype=np.float64) / 2.0 ** spec.precision_bits - spec.clip
