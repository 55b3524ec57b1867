import hashlib
from collections import Counter

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from fate_components.core.candidates import read_annotations, read_candidates
from fate_components.core.errors import ConfigError
from fate_components.core.patch_dataset import PatchDataset, build_patch_dataset
from fate_components.core.sample_data import (HOSPITAL_PROFILES, UID_PREFIX, generate_federation, main,
                                              make_patients)
from fate_components.core.scans import index_scans, read_scan

HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")


def _site_checksum(site) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        digest.update(path.relative_to(site).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_three_sites_with_a_40_30_30_patient_split(tiny_federation):
    # Execute
    scans = {h: index_scans(site) for h, site in tiny_federation.items()}
    uids = {h: {c.seriesuid for c in read_candidates(site / "candidates.csv")} for h, site in tiny_federation.items()}

    # Assert
    assert sorted(tiny_federation) == list(HOSPITALS)
    assert {h: len(uids[h]) for h in HOSPITALS} == {"hospital_a": 5, "hospital_b": 4, "hospital_c": 3}
    for h in HOSPITALS:
        assert uids[h] <= set(scans[h])
        assert all(u.startswith(UID_PREFIX) and len(u) <= 64 for u in uids[h])
    assert not (uids["hospital_a"] & uids["hospital_b"]) and not (uids["hospital_b"] & uids["hospital_c"])


def test_generation_is_deterministic_for_a_seed(tiny_federation, tmp_path):
    # Execute
    again = generate_federation(tmp_path, size="tiny", seed=0)
    other = generate_federation(tmp_path / "other", size="tiny", seed=1, hospitals=("hospital_b",), split=(1.0,))

    # Assert
    for h in HOSPITALS:
        assert (again[h] / "candidates.csv").read_bytes() == (tiny_federation[h] / "candidates.csv").read_bytes()
        assert _site_checksum(again[h]) == _site_checksum(tiny_federation[h])
    assert (other["hospital_b"] / "candidates.csv").read_bytes() != \
        (tiny_federation["hospital_b"] / "candidates.csv").read_bytes()


def test_sites_follow_their_scanner_profiles(tiny_federation):
    # Prepare
    a, b, c = (tiny_federation[h] for h in HOSPITALS)

    # Execute
    volume_a = read_scan(a, next(iter(index_scans(a))))
    mhd_files = sorted((b / "scans").glob("*.mhd"))
    volume_b = read_scan(b, mhd_files[0].stem)
    c_files = [p for p in (c / "scans").rglob("*") if p.is_file()]

    # Assert
    assert all(p.suffix == ".dcm" for p in (a / "scans").rglob("*") if p.is_file())
    assert volume_a.spacing_mm[2] == pytest.approx(1.0)
    assert len(mhd_files) == 4 and volume_b.spacing_mm[2] == pytest.approx(2.0)
    assert volume_b.direction[2, 2] == -1.0
    assert c_files and all(p.suffix == "" for p in c_files)
    assert {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in c_files} == {RLELossless}
    assert HOSPITAL_PROFILES["hospital_c"].slice_thickness_mm == 2.5


def test_every_candidate_lies_inside_its_scan_and_positives_sit_on_nodules_in_lung(tiny_federation):
    for site in tiny_federation.values():
        # Prepare
        index = index_scans(site)
        candidates = read_candidates(site / "candidates.csv")
        annotations = read_annotations(site / "annotations.csv")
        labels = Counter(c.label for c in candidates)
        assert labels[1] > 0 and labels[0] > labels[1]
        for uid in {c.seriesuid for c in candidates}:
            # Execute
            volume = read_scan(site, uid, index)
            mine = [c for c in candidates if c.seriesuid == uid]
            nodules = [a for a in annotations if a.seriesuid == uid]

            # Assert
            assert 15 <= sum(c.label == 0 for c in mine) <= 25
            assert all(volume.contains_world(c.world_xyz_mm) for c in mine)
            for c in (c for c in mine if c.label == 1):
                nodule = min(nodules, key=lambda n: np.linalg.norm(np.subtract(c.world_xyz_mm, n.world_xyz_mm)))
                distance = np.linalg.norm(np.subtract(c.world_xyz_mm, nodule.world_xyz_mm))
                assert distance < nodule.diameter_mm / 2 / 2   # jitter below half the radius
            for nodule in nodules:
                centre = np.asarray(nodule.world_xyz_mm)
                radius = nodule.diameter_mm / 2
                directions = np.random.default_rng(0).normal(size=(200, 3))
                directions /= np.linalg.norm(directions, axis=1, keepdims=True)
                shell = centre + directions * (radius + np.linspace(3.0, 6.0, 200))[:, None]
                ijk = np.rint(volume.world_to_voxel(shell)).astype(int)
                around = volume.array_hu[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
                ic, jc, kc = np.rint(volume.world_to_voxel(centre)).astype(int)
                assert np.median(around) < -500         # lung parenchyma around the nodule
                assert volume.array_hu[kc, jc, ic] > -700   # and the nodule itself


def test_about_a_fifth_of_patients_have_no_nodule_and_sizes_follow_luna16():
    patients = make_patients("bench", seed=0)
    diameters = [n.diameter_mm for p in patients for n in p.nodules]
    without = sum(not p.nodules for p in patients) / len(patients)
    assert 0.08 <= without <= 0.35
    assert 3.0 <= min(diameters) and max(diameters) <= 30.0
    assert 5.0 <= np.median(diameters) <= 10.0
    assert all(len(p.nodules) <= 3 for p in patients)


@pytest.mark.parametrize("mode", ["train", "predict"])
def test_a_generated_site_builds_a_patch_dataset(tiny_federation, tmp_path, mode):
    # Prepare
    site = tiny_federation["hospital_c"]
    candidates = read_candidates(site / "candidates.csv")
    positives = sum(c.label for c in candidates)

    # Execute
    report = build_patch_dataset(site, tmp_path / mode, mode=mode)
    dataset = PatchDataset(tmp_path / mode)

    # Assert
    assert report.scans_read == 3 and report.scans_skipped == [] and report.candidates_skipped == []
    assert report.positives == positives
    expected_negatives = 3 * positives if mode == "train" else len(candidates) - positives
    assert report.negatives_kept == expected_negatives
    assert len(dataset) == positives + expected_negatives
    patches = np.asarray(dataset.patches, dtype=np.float32)
    assert 0.0 <= patches.min() and patches.max() <= 1.0
    centre = patches[:, 0, 15:17, 15:17, 15:17].mean(axis=(1, 2, 3))
    assert centre[dataset.labels == 1].mean() > centre[dataset.labels == 0].mean()


def test_command_line_writes_the_requested_sites(tmp_path, capsys):
    # Execute
    code = main(["--out", str(tmp_path), "--size", "tiny", "--seed", "3", "--hospitals", "hospital_b"])

    # Assert
    assert code == 0
    assert (tmp_path / "hospital_b" / "candidates.csv").is_file()
    assert len(list((tmp_path / "hospital_b" / "scans").glob("*.mhd"))) == 12
    assert "hospital_b" in capsys.readouterr().out


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"size must be one of tiny, small, bench, patients, not 'huge'"):
        generate_federation(tmp_path, size="huge")
    with pytest.raises(ConfigError, match=r"unknown hospital\(s\) hospital_z"):
        generate_federation(tmp_path, hospitals=("hospital_z",), split=(1.0,))
    with pytest.raises(ConfigError, match=r"split must give one fraction >= 0 per hospital, summing to 1"):
        generate_federation(tmp_path, hospitals=("hospital_a", "hospital_b"))
    assert main(["--out", str(tmp_path), "--hospitals", "hospital_q"]) == 2
