"""Named patch geometries (cube edge in mm, voxels per edge), and how a preset combines with explicit values.

- ``48mm_32``: 48 mm at 32³ (1.5 mm voxels), the default since the CPU rewrite: 64 KiB a
  candidate as float16, cheap enough to train on one CPU core.
- ``64mm_48``: 64 mm at 48³ (1.33 mm), the one in between. It keeps the seed's 64 mm of
  context (a 30 mm nodule, LUNA16's largest, with 17 mm around it, and room for shift
  augmentation) at 3.4x the voxels of 32³ rather than 8x, and is not finer than the 1.25-2.5 mm
  slices of most LUNA16 scans. Beside ``64mm_64`` it isolates resolution at the same context.
- ``64mm_64``: the seed's 64 mm at 64³ (1 mm), 512 KiB a candidate, ~8x the training cost of 32³.

Every site, and the model's training data and its test data, must use the same geometry and
HU window: the pre-round check and the predict stage compare the whole `PatchSpec` and name
the presets with `describe_patch_spec`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from fate_components.core.errors import ConfigError

if TYPE_CHECKING:   # patches imports numba: the FATE component imports this module to declare its parameters
    from fate_components.core.imaging.patches import PatchSpec

__all__ = ["PATCH_PRESETS", "CUSTOM", "DEFAULT_PRESET", "preset_names", "resolve_patch_geometry", "preset_spec",
           "preset_of", "describe_patch_spec", "check_same_patch_spec"]

# name -> (cube edge in mm, voxels per edge)
PATCH_PRESETS: dict[str, tuple[float, int]] = {
    "48mm_32": (48.0, 32),
    "64mm_48": (64.0, 48),
    "64mm_64": (64.0, 64),
}
CUSTOM = "custom"            # patch_size_mm and patch_voxels give the geometry
DEFAULT_PRESET = "48mm_32"


def preset_names() -> list[str]:
    """The names a `patch_preset` parameter accepts: the presets, then "custom"."""
    return [*PATCH_PRESETS, CUSTOM]


def resolve_patch_geometry(preset: str | None, size_mm: float | None = None,
                           voxels: int | None = None) -> tuple[float, int]:
    """(size_mm, voxels) for a preset and optional explicit values.

    A named preset fixes both; explicit values may repeat them (as conf/lung_conf.json does for
    48mm_32) but not contradict them. "custom" takes both from the explicit values. No preset
    (None, the reader's default) is the default preset, with any explicit value in its place:
    a conf written before presets existed cuts what it cut then.
    """
    if preset is None:
        default_mm, default_voxels = PATCH_PRESETS[DEFAULT_PRESET]
        return (float(size_mm) if size_mm is not None else default_mm,
                int(voxels) if voxels is not None else default_voxels)
    if preset == CUSTOM:
        missing = [name for name, v in (("patch_size_mm", size_mm), ("patch_voxels", voxels)) if v is None]
        if missing:
            raise ConfigError(f"patch_preset custom needs {' and '.join(missing)}; set both, or choose a preset "
                              f"({', '.join(PATCH_PRESETS)})")
        return float(size_mm), int(voxels)
    if preset not in PATCH_PRESETS:
        raise ConfigError(f"unknown patch_preset {preset!r}; choose one of {', '.join(preset_names())}")
    preset_mm, preset_voxels = PATCH_PRESETS[preset]
    clashes = [f"{name} {value!r}" for name, value, wanted in (("patch_size_mm", size_mm, preset_mm),
                                                                ("patch_voxels", voxels, preset_voxels))
               if value is not None and float(value) != wanted]
    if clashes:
        given = (size_mm if size_mm is not None else preset_mm, voxels if voxels is not None else preset_voxels)
        raise ConfigError(f"patch_preset {preset} ({_geometry(preset_mm, preset_voxels)}) contradicts "
                          f"{' and '.join(clashes)}; leave patch_size_mm and patch_voxels unset to use the preset, "
                          f"or set patch_preset: custom to cut {_geometry(float(given[0]), int(given[1]))}")
    return preset_mm, preset_voxels


def preset_spec(preset: str | None, *, size_mm: float | None = None, voxels: int | None = None,
                hu_min: float = -1000.0, hu_max: float = 400.0) -> PatchSpec:
    """The `PatchSpec` of a preset (or of custom values), with the HU window."""
    from fate_components.core.imaging.patches import PatchSpec

    size, n = resolve_patch_geometry(preset, size_mm, voxels)
    return PatchSpec(size_mm=size, size_voxels=n, hu_min=hu_min, hu_max=hu_max)


def preset_of(spec: PatchSpec) -> str:
    """The preset whose geometry `spec` has, else "custom" (the HU window is not part of a preset)."""
    return next((name for name, (mm, n) in PATCH_PRESETS.items()
                 if spec.size_mm == mm and spec.size_voxels == n), CUSTOM)


def _geometry(size_mm: float, voxels: int) -> str:
    return f"{size_mm:g} mm at {voxels}³, {size_mm / voxels:.3g} mm voxels"


def describe_patch_spec(spec: PatchSpec | dict) -> str:
    """'patch_preset 64mm_64 (64 mm at 64³, 1 mm voxels; HU [-1000, 400])', for messages naming two specs.

    A dict that is not a whole PatchSpec (a site of another version) is shown as it came.
    """
    from fate_components.core.imaging.patches import PatchSpec

    if isinstance(spec, dict):
        raw = spec
        try:
            spec = PatchSpec.from_dict(raw) if set(raw) == set(PatchSpec().to_dict()) else None
        except ConfigError:
            spec = None
        if spec is None:
            return repr(raw)
    return (f"patch_preset {preset_of(spec)} ({_geometry(spec.size_mm, spec.size_voxels)}; "
            f"HU [{spec.hu_min:g}, {spec.hu_max:g}])")


def check_same_patch_spec(data_spec: dict, model_spec: dict, *, data: str = "test data") -> None:
    """Raise unless data were cut as the model's training data were (patches of another size would run silently:
    the model pools adaptively)."""
    if data_spec != model_spec:
        raise ConfigError(f"{data} were cut with {describe_patch_spec(data_spec)}, but the model was trained on "
                          f"{describe_patch_spec(model_spec)}; run luna16_reader with the training settings")
