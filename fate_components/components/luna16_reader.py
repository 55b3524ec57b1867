"""FATE component `luna16_reader`: a bound site directory in, a patch dataset out (it stays on the site)."""
# No `from __future__ import annotations` here: FATE reads the annotations as live objects.

import logging
from pathlib import Path

from fate.components.core import GUEST, HOST, Role, cpn, params

from fate_components.core.imaging.patch_presets import (
    DEFAULT_PRESET,
    PATCH_PRESETS,
    describe_patch_spec,
    preset_names,
    preset_spec,
)

from . import _metrics
from ._artifacts import publish_directory

logger = logging.getLogger(__name__)
PRESET_NAMES = preset_names()
PRESETS_DESC = ", ".join(f"{name} ({mm:g} mm at {n}³, {mm / n:.3g} mm voxels)"
                         for name, (mm, n) in PATCH_PRESETS.items())


@cpn.component(roles=[GUEST, HOST])
def luna16_reader(
    ctx,
    role: Role,
    site_data: cpn.data_directory_input(roles=[GUEST, HOST], desc="site directory bound with `flow table bind`: "
                                        "scans/, candidates.csv, annotations.csv"),
    output_data: cpn.data_directory_output(roles=[GUEST, HOST], desc="patch dataset (patches.npy, candidates.csv, "
                                           "summary.json); never leaves the site"),
    mode: cpn.parameter(type=params.string_choice(["train", "predict"]), default="train",
                        desc="both cut every candidate; train with negative_ratio > 0 keeps a fixed subsample"),
    negative_ratio: cpn.parameter(type=params.confloat(ge=0), default=0.0,
                                  desc="0 keeps every negative (the trainer draws fresh ones each epoch); > 0, in "
                                       "train mode: keep only this many negatives per positive, drawn once"),
    val_fraction: cpn.parameter(type=params.confloat(ge=0, lt=1), default=0.2,
                                desc="fraction of patients (seriesuids) held out for validation"),
    patch_preset: cpn.parameter(type=params.string_choice(PRESET_NAMES), default=None,
                                desc=f"patch geometry: {PRESETS_DESC}, or custom (patch_size_mm and patch_voxels); "
                                     f"unset: {DEFAULT_PRESET}, or patch_size_mm/patch_voxels where set; every site "
                                     f"must use the same"),
    patch_size_mm: cpn.parameter(type=params.confloat(gt=0), default=None,
                                 desc="edge of the patch cube in mm; with a preset, leave unset or repeat its value"),
    patch_voxels: cpn.parameter(type=params.conint(gt=3), default=None,
                                desc="voxels per patch edge after resampling; with a preset, leave unset or repeat "
                                     "its value"),
    hu_min: cpn.parameter(type=float, default=-1000.0, desc="lower end of the HU window mapped to 0"),
    hu_max: cpn.parameter(type=float, default=400.0, desc="upper end of the HU window mapped to 1"),
    on_bad_scan: cpn.parameter(type=params.string_choice(["skip", "raise"]), default="skip",
                               desc="skip (and report) or fail on an unreadable scan, a bad candidate or a bad "
                                    "annotation row"),
    seed: cpn.parameter(type=int, default=0, desc="seed for negative sampling and the validation split"),
):
    from fate_components.core.data.patch_dataset import build_patch_dataset

    site_root = Path(site_data.get_directory())
    # A preset with explicit values that contradict it is an error naming both (nothing is read).
    spec = preset_spec(patch_preset, size_mm=patch_size_mm, voxels=patch_voxels, hu_min=hu_min, hu_max=hu_max)
    out_dir = Path(output_data.get_directory())
    logger.info("luna16_reader: reading %s in %s mode, patches %s", site_root, mode, describe_patch_spec(spec))
    # build_patch_dataset writes beside out_dir and renames at the end: no half-written dataset.
    report = build_patch_dataset(site_root, out_dir, spec=spec, mode=mode, negative_ratio=negative_ratio,
                                 val_fraction=val_fraction, seed=seed, on_bad_scan=on_bad_scan)
    publish_directory(output_data, {"patch_spec": spec.to_dict(), "mode": mode})
    _metrics.log_summary(ctx, "reader_summary",
                         {"mode": mode, "scans_read": report.scans_read, "scans_skipped": len(report.scans_skipped),
                          "candidates_total": report.candidates_total, "positives": report.positives,
                          "negatives_kept": report.negatives_kept, "negatives_dropped": report.negatives_dropped,
                          "candidates_skipped": len(report.candidates_skipped)})
    if report.scans_skipped or report.candidates_skipped:
        # Reasons name relative paths and seriesuids only: safe to show outside the site.
        ctx.metrics.log_metrics({"scans": report.scans_skipped[:100], "candidates": report.candidates_skipped[:100]},
                                name="reader_skipped", type="skipped")
