"""Is a scan plausibly CT in Hounsfield units? One cheap check that both readers apply.

The rule, on a strided sample of at most about 2**18 voxels:

- voxels at or below -1500 HU are outside the field of view (scanners pad with -2048, -3024 or
  -3000 there) and are set aside;
- of the rest, at least 1% must be at or below -500 HU (air is -1000, lung -900 to -500); and
- at most 1% may lie above +4000 HU (cortical bone is about +2000; 12-bit scanners stop at
  +3071; only metal goes higher, and metal is a small part of any chest scan).

Why real CT passes: every chest CT holds lungs and, around the patient, air, usually tens of
percent of the volume; padding outside the circular field of view is set aside whatever its value.
What it catches: unsigned storage of signed HU (air wraps around from -1000 to 64,536, so far more
than 1% of voxels sit above +4000 and none below -500) and stored values that were never rescaled
(air reads near 0 or +24, so nothing is at or below -500), and byte-swapped or garbage voxels.
"""
from __future__ import annotations

import numpy as np

from fate_components.core.errors import ScanReadError

__all__ = ["check_hounsfield", "PADDING_BELOW_HU", "AIR_AT_OR_BELOW_HU", "METAL_ABOVE_HU",
           "MIN_AIR_FRACTION", "MAX_ABOVE_FRACTION"]

PADDING_BELOW_HU = -1500.0
AIR_AT_OR_BELOW_HU = -500.0
METAL_ABOVE_HU = 4000.0
MIN_AIR_FRACTION = 0.01
MAX_ABOVE_FRACTION = 0.01
_SAMPLE_VOXELS = 1 << 18


def _sample(array: np.ndarray) -> np.ndarray:
    """A strided view of at most about _SAMPLE_VOXELS voxels, the same stride on each axis."""
    stride = max(1, int(np.ceil((array.size / _SAMPLE_VOXELS) ** (1 / 3))))
    return array[::stride, ::stride, ::stride]


def check_hounsfield(array_hu: np.ndarray, shown: str, how_to_fix: str) -> None:
    """Raise ScanReadError naming `shown` and `how_to_fix` when `array_hu` [z, y, x] is not plausibly HU."""
    sample = _sample(np.asarray(array_hu))
    in_view = sample[sample > PADDING_BELOW_HU]
    if in_view.size == 0:
        raise ScanReadError(f"{shown}: not CT in Hounsfield units: every sampled voxel is at or below "
                            f"{PADDING_BELOW_HU:.0f} HU (outside-the-field-of-view padding); {how_to_fix}")
    air = float(np.count_nonzero(in_view <= AIR_AT_OR_BELOW_HU)) / in_view.size
    above = float(np.count_nonzero(in_view > METAL_ABOVE_HU)) / in_view.size
    if air >= MIN_AIR_FRACTION and above <= MAX_ABOVE_FRACTION:
        return
    lo, hi = float(in_view.min()), float(in_view.max())
    raise ScanReadError(
        f"{shown}: not CT in Hounsfield units: {100 * air:.1f}% of sampled voxels are at or below "
        f"{AIR_AT_OR_BELOW_HU:.0f} HU (air, lung; expected at least {100 * MIN_AIR_FRACTION:.0f}%) and "
        f"{100 * above:.1f}% above +{METAL_ABOVE_HU:.0f} HU (expected at most {100 * MAX_ABOVE_FRACTION:.0f}%), "
        f"values {lo:.0f} to {hi:.0f}; {how_to_fix}")
