"""Fixtures for the core's unit tests: synthetic volumes, small sites, one tiny federation."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fate_components.core.data.candidates import Candidate, write_candidates
from fate_components.core.imaging.dicom_io import write_dicom_series
from fate_components.core.imaging.metaimage_io import write_metaimage
from fate_components.core.imaging.volume import Volume
from fate_components.core.synthetic.sites import generate_federation


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def make_volume():
    """Factory of Volumes with integer random HU (exactly storable as int16)."""

    def make(shape_zyx=(8, 36, 40), spacing_mm=(0.8, 0.7, 2.5), origin_mm=(-20.0, 15.0, -100.0),
             direction=None, seed=0, series_uid="") -> Volume:
        array = np.random.default_rng(seed).integers(-1024, 1500, size=shape_zyx).astype(np.float32)
        return Volume(array, spacing_mm, origin_mm, np.eye(3) if direction is None else direction,
                      series_uid=series_uid)

    return make


@pytest.fixture
def sphere_volume():
    """Factory: air volume with a +100 HU ball of `radius_mm` at world `center_mm`, sampled at voxel centres."""

    def make(center_mm, radius_mm=4.0, shape_zyx=(40, 64, 64), spacing_mm=(1.0, 1.0, 1.0), origin_mm=None,
             direction=None, series_uid="1.2.3") -> Volume:
        direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
        nz, ny, nx = shape_zyx
        if origin_mm is None:   # put the volume's centre voxel at the sphere centre, roughly
            half = (np.array([nx, ny, nz]) - 1) / 2 * np.asarray(spacing_mm)
            origin_mm = np.asarray(center_mm) - direction @ half + 3.3   # off-grid on purpose
        k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
        index = np.stack([i, j, k], axis=-1).astype(float)
        world = index * np.asarray(spacing_mm) @ direction.T + np.asarray(origin_mm)
        inside = np.linalg.norm(world - np.asarray(center_mm), axis=-1) <= radius_mm
        array = np.where(inside, 100.0, -1000.0).astype(np.float32)
        return Volume(array, tuple(spacing_mm), tuple(origin_mm), direction, series_uid=series_uid)

    return make


@pytest.fixture
def small_site(tmp_path, sphere_volume):
    """A site with two MetaImage scans and one DICOM scan, each with a ball at a known place.

    Returns (site_root, {seriesuid: ball centre}). candidates.csv has per scan 2 positives
    (on the ball) and 4 negatives (in air, inside the scan).
    """
    site = tmp_path / "site"
    centres = {"1.2.840.1.1": (10.0, -20.0, -50.0), "1.2.840.1.2": (-5.0, 8.0, 30.0),
               "1.2.840.1.3": (0.0, 0.0, 0.0)}
    candidates = []
    for n, (uid, centre) in enumerate(centres.items()):
        volume = sphere_volume(centre, radius_mm=5.0, shape_zyx=(20, 40, 40), spacing_mm=(1.2, 1.2, 2.0),
                               series_uid=uid)
        if n < 2:
            write_metaimage(volume, site / "scans" / f"{uid}.mhd")
        else:
            write_dicom_series(volume, site / "scans" / "case_003", series_uid=uid, file_names="numbered")
        c = np.asarray(centre)
        candidates += [Candidate(uid, tuple(c), 1, 0), Candidate(uid, tuple(c + [0.5, -0.5, 0.5]), 1, 0)]
        candidates += [Candidate(uid, tuple(c + offset), 0, 0)
                       for offset in ([12, 0, 0], [-12, 0, 0], [0, 12, 0], [0, -12, 5])]
    write_candidates(site / "candidates.csv", candidates)
    return site, centres


@pytest.fixture(scope="session")
def tiny_federation(tmp_path_factory) -> dict[str, Path]:
    """The three-hospital tiny federation for seed 0, generated once per test session."""
    return generate_federation(tmp_path_factory.mktemp("federation"), size="tiny", seed=0)


# @pytest.mark.bad_input(case, excerpt): the marked test fails unless a fate-lung error it produced holds the
# excerpt; tools/bad_input_table.py turns the marks into the README's table of bad inputs.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))   # a development tool, not installed
from bad_input_table import pytest_runtest_call  # noqa: E402,F401  (a hook: pytest finds it by name)
