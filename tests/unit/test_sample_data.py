import csv
import hashlib
from collections import Counter

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless
from scipy.ndimage import maximum_filter

from fate_components.cli import build_parser
from fate_components.cli import main as cli_main
from fate_components.core.data.candidates import ANNOTATION_COLUMNS, read_annotations, read_candidates
from fate_components.core.data.patch_dataset import PatchDataset, build_patch_dataset
from fate_components.core.errors import ConfigError
from fate_components.core.imaging.scans import index_scans, read_scan
from fate_components.core.synthetic.sites import (
    HOSPITAL_PROFILES,
    LUNA16_KINDS,
    LUNA16_PROFILES,
    UID_PREFIX,
    _unit_rows,
    generate_federation,
    luna16_candidates,
    make_patients,
)

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
    expected_negatives = len(candidates) - positives   # both modes cut every candidate by default
    assert report.negatives_kept == expected_negatives
    assert len(dataset) == positives + expected_negatives
    patches = np.asarray(dataset.patches, dtype=np.float32)
    assert 0.0 <= patches.min() and patches.max() <= 1.0
    centre = patches[:, 0, 15:17, 15:17, 15:17].mean(axis=(1, 2, 3))
    assert centre[dataset.labels == 1].mean() > centre[dataset.labels == 0].mean()


def test_command_line_writes_the_requested_sites(tmp_path, capsys):
    # Execute
    code = cli_main(["generate-data", "--out", str(tmp_path), "--size", "tiny", "--seed", "3",
                     "--hospitals", "hospital_b"])

    # Assert
    assert code == 0
    assert (tmp_path / "hospital_b" / "candidates.csv").is_file()
    assert len(list((tmp_path / "hospital_b" / "scans").glob("*.mhd"))) == 12
    assert "hospital_b" in capsys.readouterr().out


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"size must be one of tiny, small, bench, patients, luna16, not 'huge'"):
        generate_federation(tmp_path, size="huge")
    with pytest.raises(ConfigError, match=r"unknown hospital\(s\) hospital_z"):
        generate_federation(tmp_path, hospitals=("hospital_z",), split=(1.0,))
    with pytest.raises(ConfigError, match=r"split must give one fraction >= 0 per hospital, summing to 1"):
        generate_federation(tmp_path, hospitals=("hospital_a", "hospital_b"))
    assert cli_main(["generate-data", "--out", str(tmp_path), "--hospitals", "hospital_q"]) == 2
    with pytest.raises(ConfigError, match=r"n_patients must be a whole number of patients >= 1, not -3"):
        generate_federation(tmp_path, size="luna16", n_patients=-3)


# ----------------------------------------------------------------------------------------------------------
# The luna16 size

LUNA16_SEED = 0


@pytest.fixture(scope="module")
def luna16_federation(tmp_path_factory):
    """Three luna16 sites of one patient each (patients 0, 1, 2 of seed 0)."""
    return generate_federation(tmp_path_factory.mktemp("luna16"), size="luna16", seed=LUNA16_SEED, n_patients=3)


@pytest.fixture(scope="module")
def luna16_patients():
    """40 luna16 patients with their candidates, from the specs alone (nothing rendered)."""
    patients = make_patients("luna16", seed=LUNA16_SEED, n_patients=40)
    return [(p, luna16_candidates(p)) for p in patients]


def _excluded_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _depth_mm(point, lung):
    centre, axes = lung
    return (1 - np.sqrt(np.sum(((np.asarray(point) - centre) / axes) ** 2))) * axes.min()


def _distance_to_axes(points, segments):
    """(points, segments) distances of the points to the segments' axes."""
    p0, d = segments[:, :3], segments[:, 3:6] - segments[:, :3]
    rel = points[:, None, :] - p0[None]
    t = np.clip(np.sum(rel * d[None], axis=-1) / np.sum(d * d, axis=1)[None], 0, 1)
    return np.linalg.norm(rel - t[..., None] * d[None], axis=-1)


def test_luna16_candidates_have_luna16_density_and_positive_share(luna16_patients):
    # Execute
    per_scan = [len(rows) for _, rows in luna16_patients]
    positives = [sum(label for _, label, _ in rows) for _, rows in luna16_patients]
    kinds = Counter(kind for _, rows in luna16_patients for _, _, kind in rows)

    # Assert
    assert all(700 <= n <= 1006 for n in per_scan)          # 700-1000 class 0 plus 1-6 hits on 1-2 nodules
    assert 800 <= np.mean(per_scan) <= 900                   # LUNA16: ~850
    assert 0.0016 <= sum(positives) / sum(per_scan) <= 0.0025   # LUNA16: 0.21%; +-2.5 sd over 40 scans
    assert all(1 <= n <= 6 for n in positives)
    assert set(kinds) == set(LUNA16_KINDS)
    vessels = kinds["bifurcation"] + kinds["crossing"] + kinds["end_on"]
    assert 0.4 <= vessels / sum(kinds.values()) <= 0.55      # vessels: the commonest false positives
    for _, rows in luna16_patients:   # each scan has each structure's look-alikes
        assert {"bifurcation", "crossing", "end_on", "airway_wall", "pleura", "fissure", "scar", "noise"} <= \
            {kind for _, _, kind in rows}


def test_luna16_nodules_follow_luna16_sizes(luna16_patients):
    diameters = np.array([n.diameter_mm for p, _ in luna16_patients for n in p.nodules])
    assert all(1 <= len(p.nodules) <= 2 for p, _ in luna16_patients)
    assert 3.0 <= diameters.min() and diameters.max() <= 30.0
    assert 0.35 <= np.mean(diameters < 6.0) <= 0.5    # LUNA16: ~42% under 6 mm
    assert 5.5 <= np.median(diameters) <= 9.0
    assert diameters.max() >= 15.0                     # and some large ones


def test_luna16_candidates_lie_where_their_kinds_say(luna16_patients):
    for patient, rows in luna16_patients[:10]:
        # Prepare
        points = {kind: np.array([xyz for xyz, _, k in rows if k == kind]) for kind in LUNA16_KINDS}
        every = np.array([xyz for xyz, _, _ in rows])
        half = patient.fov_mm / 2 - 6

        # Execute
        depth = np.array([max(_depth_mm(p, lung) for lung in patient.lungs) for p in every])
        vertical = patient.segments[np.abs(_unit_rows(patient.segments[:, 3:6] - patient.segments[:, :3])[:, 2]) > 0.8]
        end_on = _distance_to_axes(points["end_on"], vertical) - vertical[:, 6]
        wall = _distance_to_axes(points["airway_wall"], patient.airways)
        airways = patient.airways
        to_bifurcation = np.min(np.linalg.norm(points["bifurcation"][:, None] - patient.bifurcations[None], axis=-1),
                                axis=1)
        oblique = {f.lung: f for f in patient.fissures if f.kind == "oblique"}
        to_fissure = np.nanmin([np.abs(f.distance(points["fissure"], oblique[f.lung])) for f in patient.fissures],
                               axis=0)
        pleura = np.array([max(_depth_mm(p, lung) for lung in patient.lungs) for p in points["pleura"]])

        # Assert
        assert np.all(np.abs(every[:, :2] - patient.center_xy) <= half)
        assert np.all((every[:, 2] >= patient.z0 + 6) & (every[:, 2] <= patient.z0 + patient.z_extent_mm - 6))
        kinds = np.array([k for _, _, k in rows])
        assert np.all(depth[kinds != "pleura"] >= 0.99)          # in the lung, not on its border
        assert np.all(np.abs(pleura) <= 2.01)                   # within 2 mm of the pleura
        assert np.median(to_bifurcation) < 1.5
        assert np.all(end_on.min(axis=1) <= 2.0)                 # within 2 mm of a vertical vessel
        assert np.all(np.any((wall >= airways[:, 7] - 0.5) & (wall <= airways[:, 6] + 0.5), axis=1))   # in a wall
        assert np.all(to_fissure < 1.5)
        for nodule in patient.nodules:   # negatives keep off the nodules
            assert np.all(np.linalg.norm(every[kinds != "nodule"] - nodule.center, axis=1) > nodule.diameter_mm / 2)


def test_luna16_scans_have_luna16_geometry_and_their_profiles(luna16_federation):
    for hospital, site in luna16_federation.items():
        # Execute
        (uid,) = {c.seriesuid for c in read_candidates(site / "candidates.csv")}
        volume = read_scan(site, uid)
        sx, sy, sz = volume.spacing_mm
        nx, ny, nz = volume.shape_xyz

        # Assert
        assert 0.6 <= sx == sy <= 0.9 and 0.6 <= sz <= 2.5
        assert sz == pytest.approx(LUNA16_PROFILES[hospital].slice_thickness_mm)
        assert nx == ny == LUNA16_PROFILES[hospital].matrix
        assert 300 <= nx * sx <= 350
        assert nz * sz == pytest.approx(180.0)
    a, b, c = (luna16_federation[h] for h in HOSPITALS)
    assert all(p.suffix == ".dcm" for p in (a / "scans").rglob("*") if p.is_file())
    assert read_scan(b, next(iter(index_scans(b)))).direction[2, 2] == -1.0
    c_files = [p for p in (c / "scans").rglob("*") if p.is_file()]
    assert {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in c_files} == {RLELossless}


def test_luna16_sites_have_an_excluded_file_in_luna16_format(luna16_federation):
    for site in luna16_federation.values():
        # Execute
        raw = (site / "annotations_excluded.csv").read_bytes()
        header, rows = _excluded_rows(site / "annotations_excluded.csv")
        diameters = np.array([float(r[4]) for r in rows])
        (uid,) = {c.seriesuid for c in read_candidates(site / "candidates.csv")}

        # Assert
        assert raw.count(b"\r\n") == raw.count(b"\n") == len(rows) + 1   # CRLF everywhere, as LUNA16's
        assert tuple(header) == ANNOTATION_COLUMNS
        assert {r[0] for r in rows} == {uid}
        assert 15 <= len(rows) <= 80                             # LUNA16: ~40 per scan
        assert any(r[4] == "-1" for r in rows)                   # non-nodules: no diameter
        assert np.all((diameters == -1) | ((diameters > 0) & (diameters < 3)))   # else nodules under 3 mm
        assert 0.2 <= np.mean(diameters == -1) <= 0.9


def test_luna16_scans_show_each_kind(luna16_federation):
    for site in luna16_federation.values():
        # Prepare
        index = index_scans(site)
        volume = read_scan(site, next(iter(index)), index)
        hu = np.asarray(volume.array_hu, dtype=np.float32)
        local_max = maximum_filter(hu, size=3)
        with open(site / "candidate_kinds.csv", newline="", encoding="utf-8") as fh:
            kinds = list(csv.DictReader(fh))
        candidates = read_candidates(site / "candidates.csv")

        # Execute
        ijk = np.rint(volume.world_to_voxel(np.array([c.world_xyz_mm for c in candidates]))).astype(int)
        peak = local_max[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
        median = {kind: np.median(peak[[r["kind"] == kind for r in kinds]]) for kind in LUNA16_KINDS}

        # Assert
        assert [(r["seriesuid"], float(r["coordX"]), int(r["class"])) for r in kinds] == \
            [(c.seriesuid, c.world_xyz_mm[0], c.label) for c in candidates]
        assert all(volume.contains_world(c.world_xyz_mm, margin_voxels=2.0) for c in candidates)
        assert all(r["kind"] == "nodule" for r, c in zip(kinds, candidates) if c.label == 1)
        assert median["noise"] < -650                            # parenchyma
        for kind in ("bifurcation", "crossing", "end_on", "scar", "pleura", "airway_wall", "nodule"):
            assert median[kind] > -400, kind                     # a denser structure within a voxel
        assert median["fissure"] > median["noise"] + 100         # a faint sheet


def test_luna16_airways_have_air_lumens_inside_walls(luna16_federation):
    # Prepare
    site = luna16_federation["hospital_a"]
    index = index_scans(site)
    volume = read_scan(site, next(iter(index)), index)
    patient = make_patients("luna16", seed=LUNA16_SEED, n_patients=1)[0]
    large = patient.airways[patient.airways[:, 7] >= 2.5]
    centres = (large[:, :3] + large[:, 3:6]) / 2
    centres = centres[volume.contains_world(centres, margin_voxels=3.0)]

    # Execute
    ijk = np.rint(volume.world_to_voxel(centres)).astype(int)
    lumen = volume.array_hu[ijk[:, 2], ijk[:, 1], ijk[:, 0]]

    # Assert
    assert len(centres) >= 5
    assert np.median(lumen) < -850


def test_luna16_generation_is_deterministic_and_the_count_is_a_knob(luna16_federation, tmp_path):
    # Execute
    again = generate_federation(tmp_path, size="luna16", seed=LUNA16_SEED, n_patients=1,
                                hospitals=("hospital_a",), split=(1.0,))
    other = make_patients("luna16", seed=LUNA16_SEED + 1, n_patients=1)[0]
    few, many = (make_patients("luna16", seed=LUNA16_SEED, n_patients=n) for n in (2, 5))

    # Assert
    assert _site_checksum(again["hospital_a"]) == _site_checksum(luna16_federation["hospital_a"])
    assert other.seriesuid != few[0].seriesuid
    assert [p.seriesuid for p in few] == [p.seriesuid for p in many[:2]]
    assert [xyz.tolist() for xyz, _, _ in luna16_candidates(few[1])] == \
        [xyz.tolist() for xyz, _, _ in luna16_candidates(many[1])]


def test_luna16_command_lines_take_a_patient_count(tmp_path, capsys):
    # Execute
    code = cli_main(["generate-data", "--out", str(tmp_path), "--size", "luna16", "--patients", "1",
                     "--hospitals", "hospital_b"])
    bad = cli_main(["generate-data", "--out", str(tmp_path / "bad"), "--size", "luna16", "--patients", "0"])
    args = build_parser().parse_args(["generate-data", "--out", str(tmp_path), "--size", "luna16", "--patients", "7"])

    # Assert
    assert code == 0 and bad == 2
    assert len(list((tmp_path / "hospital_b" / "scans").glob("*.mhd"))) == 1
    assert (tmp_path / "hospital_b" / "annotations_excluded.csv").is_file()
    assert "n_patients must be a whole number of patients >= 1, not 0" in capsys.readouterr().err
    assert (args.size, args.patients) == ("luna16", 7)
