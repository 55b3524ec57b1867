import csv
import json
import shutil

import numpy as np
import pydicom
import pytest

from fate_components.core.data.candidates import Candidate, read_candidates, write_candidates
from fate_components.core.data.patch_dataset import PatchDataset, build_patch_dataset, patient_split
from fate_components.core.errors import ConfigError, LungError, MissingScanError, ScanReadError
from fate_components.core.imaging.dicom_io import write_dicom_series
from fate_components.core.imaging.metaimage_io import write_metaimage
from fate_components.core.imaging.patches import PatchSpec
from fate_components.core.imaging.scans import index_scans, read_scan

SPEC = PatchSpec(size_mm=24.0, size_voxels=12)


def _table(out):
    with open(out / "candidates.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_mode_cuts_every_candidate_centred_on_its_ball(small_site, tmp_path):
    # Prepare
    site, centres = small_site
    out = tmp_path / "patches"
    calls = []

    # Execute
    report = build_patch_dataset(site, out, spec=SPEC, mode="predict", val_fraction=0.34, seed=3,
                                 progress=lambda done, total: calls.append((done, total)))
    dataset = PatchDataset(out)

    # Assert
    assert (report.scans_read, report.candidates_total, report.positives, report.negatives_kept) == (3, 18, 6, 12)
    assert report.scans_skipped == [] and report.candidates_skipped == [] and report.negatives_dropped == 0
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert dataset.patches.shape == (18, 1, 12, 12, 12) and dataset.patches.dtype == np.float16
    with open(out / "candidates.csv") as fh:
        assert fh.readline().strip() == "index,seriesuid,coordX,coordY,coordZ,label,patient_split"
    labels = dataset.labels
    centre_values = np.asarray(dataset.patches[:, 0, 5:7, 5:7, 5:7], dtype=np.float32).mean(axis=(1, 2, 3))
    assert np.all(centre_values[labels == 1] > 0.7) and np.all(centre_values[labels == 0] < 0.05)
    assert sorted(map(tuple, report.spacings_mm)) == [(1.2, 1.2, 2.0)] * 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "predict" and summary["patch_spec"] == SPEC.to_dict() and summary["seed"] == 3
    assert summary["candidates_total"] == 18 and summary["scans_read"] == 3
    assert dataset.spec == SPEC and len(dataset) == 18


def test_patient_split_is_by_seriesuid_and_deterministic(small_site, tmp_path):
    # Prepare
    site, centres = small_site

    # Execute
    build_patch_dataset(site, tmp_path / "one", spec=SPEC, mode="predict", val_fraction=0.34, seed=3)
    build_patch_dataset(site, tmp_path / "two", spec=SPEC, mode="train", val_fraction=0.34, seed=3)
    one, two = PatchDataset(tmp_path / "one"), PatchDataset(tmp_path / "two")

    # Assert
    for dataset in (one, two):
        train_uids = {dataset.table[i].seriesuid for i in dataset.split("train")}
        val_uids = {dataset.table[i].seriesuid for i in dataset.split("val")}
        assert train_uids and val_uids and not train_uids & val_uids
        assert len(val_uids) == 1
        assert len(dataset.split("train")) + len(dataset.split("val")) == len(dataset)
    splits = {r.seriesuid: r.patient_split for r in one.table}
    assert all(splits[r.seriesuid] == r.patient_split for r in two.table)   # same patients whatever the mode
    assert patient_split(centres, 0.34, seed=3) == splits


def test_patient_split_keeps_at_least_one_patient_on_each_side():
    uids = [f"1.2.{n}" for n in range(4)]
    assert sorted(patient_split(uids, 0.05, seed=0).values()) == ["train", "train", "train", "val"]
    assert sorted(patient_split(uids, 0.95, seed=0).values()) == ["train", "val", "val", "val"]
    assert set(patient_split(uids, 0.0, seed=0).values()) == {"train"}
    assert patient_split(uids, 0.5, seed=1) == patient_split(list(reversed(uids)), 0.5, seed=1)


@pytest.mark.parametrize("ratio, expected_negatives", [(1.0, 6), (1.5, 9), (0.0, 12), (10.0, 12)])
def test_train_mode_keeps_positives_and_samples_negatives(small_site, tmp_path, ratio, expected_negatives):
    # Prepare
    site, _ = small_site

    # Execute
    report = build_patch_dataset(site, tmp_path / "p", spec=SPEC, mode="train", negative_ratio=ratio, seed=0)
    build_patch_dataset(site, tmp_path / "q", spec=SPEC, mode="train", negative_ratio=ratio, seed=0)

    # Assert
    assert report.positives == 6
    assert report.negatives_kept == expected_negatives
    assert report.negatives_dropped == 12 - expected_negatives
    assert _table(tmp_path / "p") == _table(tmp_path / "q")
    assert PatchDataset(tmp_path / "p").labels.sum() == 6


def test_train_mode_keeps_every_candidate_by_default(small_site, tmp_path):
    # Execute: the default reader keeps every negative (the trainer draws fresh ones each epoch)
    site, _ = small_site
    report = build_patch_dataset(site, tmp_path / "p", spec=SPEC, mode="train")
    # Assert
    assert (report.positives, report.negatives_kept, report.negatives_dropped) == (6, 12, 0)
    assert len(PatchDataset(tmp_path / "p")) == report.candidates_total


def test_other_seed_samples_other_negatives(small_site, tmp_path):
    site, _ = small_site
    picks = []
    for seed in range(4):
        build_patch_dataset(site, tmp_path / str(seed), spec=SPEC, negative_ratio=1.0, seed=seed)
        picks.append(tuple((r["coordX"], r["coordY"]) for r in _table(tmp_path / str(seed)) if r["label"] == "0"))
    assert len(set(picks)) > 1


def test_bad_scan_missing_scan_and_outside_candidate_are_skipped_with_reasons(small_site, tmp_path):
    # Prepare: corrupt one MetaImage, point one candidate outside, add candidates of an absent scan
    site, centres = small_site
    raw = site / "scans" / "1.2.840.1.1.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    candidates = read_candidates(site / "candidates.csv")
    candidates.append(Candidate("1.2.840.1.3", (500.0, 0.0, 0.0), 0, 0))
    candidates.append(Candidate("9.9.9", (0.0, 0.0, 0.0), 1, 0))
    write_candidates(site / "candidates.csv", candidates)

    # Execute
    report = build_patch_dataset(site, tmp_path / "p", spec=SPEC, mode="predict")

    # Assert
    assert report.scans_read == 2
    reasons = {(s["seriesuid"], s["reason"]) for s in report.scans_skipped}
    assert reasons == {("1.2.840.1.1", "unreadable scan"), ("9.9.9", "missing scan")}
    unreadable = next(s for s in report.scans_skipped if s["seriesuid"] == "1.2.840.1.1")
    assert unreadable["path"] == "scans/1.2.840.1.1.mhd" and "is truncated" in unreadable["message"]
    skipped = {(c["seriesuid"], c["reason"]) for c in report.candidates_skipped}
    assert skipped == {("1.2.840.1.1", "unreadable scan"), ("1.2.840.1.3", "outside scan"), ("9.9.9", "missing scan")}
    outside = next(c for c in report.candidates_skipped if c["reason"] == "outside scan")
    assert outside["row"] == 20 and "line 20" in outside["message"]
    assert len(report.candidates_skipped) == 6 + 1 + 1
    assert PatchDataset(tmp_path / "p").patches.shape[0] == 18 - 6
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["scans_skipped"] == report.scans_skipped


@pytest.mark.parametrize("damage, error", [
    ("corrupt", ScanReadError),
    pytest.param("missing", MissingScanError, marks=pytest.mark.bad_input(
        "candidates.csv seriesuid without a scan", "candidates.csv: seriesuid 1.2.840.1.3 has no scan under scans/")),
])
def test_raise_mode_raises_and_leaves_nothing_behind(small_site, tmp_path, damage, error):
    # Prepare
    site, _ = small_site
    if damage == "corrupt":
        (site / "scans" / "case_003" / "IM0005").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    else:
        shutil.rmtree(site / "scans" / "case_003")
    out = tmp_path / "out" / "patches"

    # Execute
    with pytest.raises(error):
        build_patch_dataset(site, out, spec=SPEC, on_bad_scan="raise")

    # Assert
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_rebuilding_replaces_a_previous_dataset(small_site, tmp_path):
    # Prepare
    site, _ = small_site
    out = tmp_path / "p"
    build_patch_dataset(site, out, spec=SPEC, mode="predict")

    # Execute
    build_patch_dataset(site, out, spec=SPEC, mode="train", negative_ratio=0.5)

    # Assert
    assert len(PatchDataset(out)) == 6 + 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "site"]   # no .partial or .old left


@pytest.mark.bad_input("output folder that is not a patch dataset",
                       "exists and is not a patch dataset; refusing to overwrite it, choose an empty or new output")
def test_refuses_to_overwrite_a_folder_that_is_not_a_patch_dataset(small_site, tmp_path):
    site, _ = small_site
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match=r"exists and is not a patch dataset; refusing to overwrite it"):
        build_patch_dataset(site, tmp_path / "precious", spec=SPEC)
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "x"


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "test"}, r"mode must be 'train' or 'predict', not 'test'"),
    ({"negative_ratio": -1}, r"negative_ratio must be a number >= 0"),
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\), not 1\.0"),
    ({"on_bad_scan": "ignore"}, r"on_bad_scan must be 'skip' or 'raise', not 'ignore'"),
])
def test_bad_parameters_are_config_errors(small_site, tmp_path, kwargs, message):
    site, _ = small_site
    with pytest.raises(ConfigError, match=message):
        build_patch_dataset(site, tmp_path / "p", **kwargs)
    assert not (tmp_path / "p").exists()


@pytest.mark.bad_input("patch dataset folder with a file missing", "summary.json is missing; this is not a patch "
                                                                    "dataset (build one with build_patch_dataset)")
@pytest.mark.bad_input("patch dataset whose table and patches disagree", "candidates.csv has 17 rows for 18 patches; "
                                                                         "rebuild the patch dataset")
def test_patch_dataset_rejects_incomplete_or_inconsistent_folders(small_site, tmp_path):
    # Prepare
    site, _ = small_site
    out = tmp_path / "p"
    build_patch_dataset(site, out, spec=SPEC, mode="predict")
    rows = (out / "candidates.csv").read_text().splitlines()

    # Execute / Assert
    (out / "candidates.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(LungError, match=r"p/: candidates\.csv has 17 rows for 18 patches; rebuild"):
        PatchDataset(out)
    (out / "summary.json").unlink()
    with pytest.raises(LungError, match=r"summary\.json is missing; this is not a patch dataset"):
        PatchDataset(out)
    with pytest.raises(ConfigError, match=r"split must be 'train', 'val' or 'all'"):
        PatchDataset.split(PatchDataset.__new__(PatchDataset), "test")


def test_index_finds_metaimages_nested_dicom_folders_and_folder_name_fallback(tmp_path, make_volume):
    # Prepare: LUNA16 .mhd, a TCIA-like nested DICOM series, and a series without SeriesInstanceUID
    site = tmp_path / "site"
    write_metaimage(make_volume(), site / "scans" / "subset0" / "1.2.9.1.mhd")
    write_dicom_series(make_volume(), site / "scans" / "patient7" / "study1" / "series2", series_uid="1.2.9.2",
                       file_names="random")
    for path in write_dicom_series(make_volume(), site / "scans" / "case_003", series_uid="1.2.9.3"):
        ds = pydicom.dcmread(path)
        del ds.SeriesInstanceUID
        ds.save_as(path)
    (site / "scans" / ".hidden").mkdir()
    (site / "scans" / ".hidden" / "x.mhd").write_text("ignored")

    # Execute
    index = index_scans(site)

    # Assert
    assert index == {"1.2.9.1": site / "scans" / "subset0" / "1.2.9.1.mhd",
                     "1.2.9.2": site / "scans" / "patient7" / "study1" / "series2",
                     "case_003": site / "scans" / "case_003"}
    assert read_scan(site, "1.2.9.2", index).series_uid == "1.2.9.2"
    assert read_scan(site, "case_003", index).array_hu.shape == (8, 36, 40)
