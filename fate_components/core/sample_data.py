"""Synthetic chest-CT sites in LUNA16 layout, for tests, demos and benchmarks.

Each patient is one scan of an analytic phantom evaluated at the voxel centres of its
hospital's scanner grid: air, an elliptical body (fat layer, soft tissue, spine), two lungs,
branching vessel trees, 0-3 nodules (solid, or part-solid with a ground-glass halo), and a few
calcified spots and micronodules (< 3 mm, not nodules for LUNA16). Candidates follow LUNA16:
every nodule appears 1-3 times as class 1 with a small jitter; class 0 candidates are mostly
look-alikes (vessel bifurcations and crossings, vessels seen end-on, calcifications,
micronodules) plus random lung points. Scanner profiles differ in format, spacing, slice
thickness, noise, HU offset and slice direction, so sites are heterogeneous like real
hospitals. Everything is deterministic for a seed.

Command line: ``python -m fate_components.core.sample_data --out DIR --size tiny --seed 0``
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from .candidates import Annotation, Candidate, write_annotations, write_candidates
from .dicom_io import write_dicom_series
from .errors import ConfigError
from .metaimage_io import write_metaimage
from .volume import Volume

__all__ = ["ScannerProfile", "SizeSpec", "HOSPITAL_PROFILES", "SIZES", "PatientSpec", "make_patients",
           "render_patient", "generate_site", "generate_federation", "main"]

logger = logging.getLogger(__name__)

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."   # LUNA16's seriesuid prefix (64 characters in all)


@dataclass(frozen=True)
class ScannerProfile:
    name: str
    fmt: str                     # "dicom" | "mhd"
    inplane_spacing_mm: float
    slice_thickness_mm: float    # slices are contiguous: slice spacing = thickness
    noise_hu: float              # standard deviation of the (slightly correlated) noise
    hu_offset: float             # calibration offset added to every voxel
    flip_z: bool                 # k axis runs head -> feet (negative z in the direction matrix)
    dicom_file_names: str = "dcm"        # "dcm" | "random" | "numbered"
    transfer_syntax: str | None = None   # None = uncompressed, else a UID or alias (see dicom_io)


HOSPITAL_PROFILES: dict[str, ScannerProfile] = {
    "hospital_a": ScannerProfile("hospital_a", "dicom", 1.5, 1.0, 15.0, 0.0, False, "dcm", None),
    "hospital_b": ScannerProfile("hospital_b", "mhd", 1.6, 2.0, 35.0, 15.0, True),
    "hospital_c": ScannerProfile("hospital_c", "dicom", 1.4, 2.5, 50.0, -20.0, False, "random", "rle"),
}


@dataclass(frozen=True)
class SizeSpec:
    n_patients: int      # over all hospitals
    fov_mm: float        # in-plane field of view; the anatomy scales with it
    z_extent_mm: float   # scanned length


# tiny: ~100x100x(32-80) voxels, all three sites in a few seconds; small: ~128x128; bench: ~160x160;
# patients: small's scans, but enough patients per site for patient-level differential privacy.
SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(12, 150.0, 80.0),
    "small": SizeSpec(30, 192.0, 100.0),
    "bench": SizeSpec(60, 240.0, 150.0),
    "patients": SizeSpec(480, 192.0, 100.0),
}

_EDGE_MM = 0.8   # width of the linear partial-volume ramp at object borders
_SOFT_TISSUE_HU, _FAT_HU, _BONE_HU, _LUNG_HU = 40.0, -100.0, 350.0, -860.0


# ----------------------------------------------------------------------------------------------------------
# Patient specification (world millimetres, independent of the scanner)

@dataclass
class Nodule:
    center: np.ndarray          # world xyz mm
    diameter_mm: float
    part_solid: bool
    axes_scale: np.ndarray      # ellipsoid stretch per world axis
    lobes: np.ndarray           # (3, 3) unit vectors of the lobulation pattern
    lobe_weights: np.ndarray
    core_fraction: float        # part-solid: solid core radius / radius
    solid_hu: float
    halo_hu: float


@dataclass
class PatientSpec:
    index: int
    seriesuid: str
    center_xy: np.ndarray        # world (x, y) of the body axis
    z0: float                    # lowest world z of the scanned range
    fov_mm: float
    z_extent_mm: float
    body_axes: np.ndarray        # (a_x, a_y) outer body ellipse
    fat_mm: float
    lungs: list[tuple[np.ndarray, np.ndarray]]   # (centre xyz, semi-axes xyz) per lung
    segments: np.ndarray         # (S, 7): p0 xyz, p1 xyz, radius
    bifurcations: np.ndarray     # (B, 3)
    nodules: list[Nodule]
    spots: np.ndarray            # (C, 5): xyz, radius, HU (calcifications and micronodules)
    seed: int


def _uid(rng: np.random.Generator) -> str:
    digits = [str(rng.integers(1, 10))] + [str(d) for d in rng.integers(0, 10, size=29)]
    return UID_PREFIX + "".join(digits)


def _lung_depth(point: np.ndarray, lung: tuple[np.ndarray, np.ndarray]) -> float:
    """Approximate distance (mm) from `point` to the lung border; negative outside."""
    centre, axes = lung
    f = np.sqrt(np.sum(((point - centre) / axes) ** 2))
    return float((1.0 - f) * axes.min())


def _in_any_lung(point: np.ndarray, lungs, depth_mm: float = 0.0) -> bool:
    return any(_lung_depth(point, lung) >= depth_mm for lung in lungs)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _grow_vessels(rng: np.random.Generator, lung, hilum: np.ndarray, scale: float,
                  max_segments: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random branching trees from the hilum: curved tubes thinning toward the periphery."""
    segments, bifurcations = [], []
    centre, _ = lung
    stack = []
    for _ in range(int(rng.integers(9, 13))):
        direction = _unit(centre - hilum + rng.normal(0, 1, 3) * np.array([18, 18, 25]) * scale)
        stack.append((hilum.copy(), direction, float(rng.uniform(2.2, 3.0))))
    while stack and len(segments) < max_segments:
        point, direction, radius = stack.pop()
        while radius >= 1.0 and len(segments) < max_segments:
            direction = _unit(direction + rng.normal(0, 0.3, 3))
            step = float(rng.uniform(4.0, 7.0)) * scale
            end = point + direction * step
            if _lung_depth(end, lung) < radius + 1.0:
                break
            segments.append(np.concatenate([point, end, [radius]]))
            point = end
            radius *= 0.92
            if rng.random() < 0.3:
                bifurcations.append(point.copy())
                child = _unit(direction + rng.normal(0, 0.8, 3))
                stack.append((point.copy(), child, radius * 0.8))
                radius *= 0.9
    return segments, bifurcations


def _place_nodule(rng: np.random.Generator, lungs, z_range: tuple[float, float], diameter: float,
                  others: list[Nodule]) -> Nodule | None:
    for _ in range(200):
        radius = diameter / 2
        lung = lungs[int(rng.integers(len(lungs)))]
        centre, axes = lung
        point = centre + rng.uniform(-1, 1, 3) * axes
        if not (z_range[0] + radius + 6 <= point[2] <= z_range[1] - radius - 6):
            continue
        if _lung_depth(point, lung) < radius + 4:
            continue
        if any(np.linalg.norm(point - o.center) < radius + o.diameter_mm / 2 + 6 for o in others):
            continue
        part_solid = bool(rng.random() < 0.25) and diameter >= 6
        return Nodule(center=point, diameter_mm=round(diameter, 2), part_solid=part_solid,
                      axes_scale=rng.uniform(0.85, 1.15, 3),
                      lobes=np.array([_unit(rng.normal(0, 1, 3)) for _ in range(3)]),
                      lobe_weights=rng.uniform(0.0, 0.18, 3),
                      core_fraction=float(rng.uniform(0.3, 0.6)),
                      solid_hu=float(rng.uniform(0.0, 60.0)), halo_hu=float(rng.uniform(-650.0, -450.0)))
    return None


def make_patient(index: int, size: SizeSpec, seed: int) -> PatientSpec:
    """The anatomy, nodules and look-alikes of patient `index` (world mm), deterministic."""
    rng = np.random.default_rng([seed, index, 0xC7])
    fov, zext = size.fov_mm, size.z_extent_mm
    scale = fov / 150.0
    center_xy = rng.uniform(-12, 12, 2)
    z0 = float(rng.uniform(-330, -150))
    body_axes = np.array([0.45, 0.33]) * fov * rng.uniform(0.93, 1.0, 2)
    fat_mm = float(rng.uniform(0.02, 0.04) * fov)
    lungs = []
    for side in (-1, 1):   # LPS: -x is the patient's right
        centre = np.array([center_xy[0] + side * 0.21 * fov, center_xy[1] - 0.01 * fov, z0 + 0.55 * zext])
        axes = np.array([0.15 * fov, 0.24 * fov, 0.65 * zext]) * rng.uniform(0.9, 1.0, 3)
        lungs.append((centre, axes))

    segments, bifurcations = [], []
    for side, lung in zip((-1, 1), lungs):
        centre, axes = lung
        hilum = centre + np.array([-side * 0.55 * axes[0], 0.05 * axes[1], 0.05 * axes[2]])
        s, b = _grow_vessels(rng, lung, hilum, scale, max_segments=int(260 * scale ** 2))
        segments += s
        bifurcations += b

    z_range = (z0, z0 + zext)
    n_nodules = 0 if rng.random() < 0.2 else int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    nodules: list[Nodule] = []
    for _ in range(n_nodules):
        diameter = float(min(30.0, 3.5 + rng.exponential(5.0)))   # median ~7 mm, like LUNA16
        nodule = None
        while nodule is None and diameter >= 3.0:
            nodule = _place_nodule(rng, lungs, z_range, diameter, nodules)
            diameter *= 0.8
        if nodule is not None:
            nodules.append(nodule)

    # Small spots, each a look-alike negative candidate: calcified granulomas (bright), and
    # micronodules under 3 mm, which LUNA16 does not count as nodules.
    spots = []
    for hu, radius_range, count in ((380.0, (1.0, 2.0), int(rng.integers(0, 4))),
                                    (None, (0.75, 1.4), int(rng.integers(0, 4)))):
        for _ in range(count):
            for _ in range(100):
                lung = lungs[int(rng.integers(2))]
                point = lung[0] + rng.uniform(-1, 1, 3) * lung[1]
                if (z0 + 8 <= point[2] <= z0 + zext - 8 and _lung_depth(point, lung) > 4
                        and all(np.linalg.norm(point - n.center) > n.diameter_mm / 2 + 8 for n in nodules)):
                    spots.append([*point, rng.uniform(*radius_range), hu if hu is not None else rng.uniform(0, 60)])
                    break
    return PatientSpec(index=index, seriesuid=_uid(rng), center_xy=center_xy, z0=z0, fov_mm=fov, z_extent_mm=zext,
                       body_axes=body_axes, fat_mm=fat_mm, lungs=lungs,
                       segments=np.array(segments).reshape(-1, 7), bifurcations=np.array(bifurcations).reshape(-1, 3),
                       nodules=nodules, spots=np.array(spots).reshape(-1, 5),
                       seed=int(rng.integers(0, 2**31)))


def make_patients(size: str | SizeSpec, seed: int) -> list[PatientSpec]:
    spec = SIZES[size] if isinstance(size, str) else size
    return [make_patient(i, spec, seed) for i in range(spec.n_patients)]


# ----------------------------------------------------------------------------------------------------------
# Rendering on a scanner grid

@dataclass
class _Grid:
    xs: np.ndarray   # world x of voxel centres along i
    ys: np.ndarray
    zs: np.ndarray   # world z of voxel centres along k (descending when flipped)
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray


def _grid(patient: PatientSpec, profile: ScannerProfile) -> _Grid:
    s, t = profile.inplane_spacing_mm, profile.slice_thickness_mm
    n_xy = int(round(patient.fov_mm / s))
    n_z = int(round(patient.z_extent_mm / t))
    xs = patient.center_xy[0] + (np.arange(n_xy) - (n_xy - 1) / 2) * s
    ys = patient.center_xy[1] + (np.arange(n_xy) - (n_xy - 1) / 2) * s
    zs = patient.z0 + (np.arange(n_z) + 0.5) * t
    direction = np.eye(3)
    if profile.flip_z:
        zs = zs[::-1]
        direction[2, 2] = -1.0
    return _Grid(xs, ys, zs, (s, s, t), (float(xs[0]), float(ys[0]), float(zs[0])), direction)


def _box(axis: np.ndarray, lo: float, hi: float) -> slice:
    """Index range of the voxel centres of a monotone axis within [lo, hi]."""
    inside = np.flatnonzero((axis >= lo) & (axis <= hi))
    return slice(inside[0], inside[-1] + 1) if inside.size else slice(0, 0)


def _ramp(signed_depth_mm: np.ndarray) -> np.ndarray:
    """Partial-volume occupancy from an (approximate) signed depth inside an object."""
    return np.clip(signed_depth_mm / _EDGE_MM + 0.5, 0.0, 1.0)


def _blend(hu: np.ndarray, occupancy: np.ndarray, value: float | np.ndarray) -> None:
    hu += occupancy * (value - hu)


def _render_tubes(grid: _Grid, segments: np.ndarray) -> np.ndarray:
    occupancy = np.zeros((grid.zs.size, grid.ys.size, grid.xs.size), dtype=np.float32)
    for p0, p1, r in zip(segments[:, :3], segments[:, 3:6], segments[:, 6]):
        lo, hi = np.minimum(p0, p1) - r - _EDGE_MM, np.maximum(p0, p1) + r + _EDGE_MM
        bz, by, bx = _box(grid.zs, lo[2], hi[2]), _box(grid.ys, lo[1], hi[1]), _box(grid.xs, lo[0], hi[0])
        if bz.stop == bz.start or by.stop == by.start or bx.stop == bx.start:
            continue
        z, y, x = grid.zs[bz, None, None], grid.ys[None, by, None], grid.xs[None, None, bx]
        d = p1 - p0
        t = np.clip(((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / (d @ d), 0.0, 1.0)
        dist = np.sqrt((x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2)
        np.maximum(occupancy[bz, by, bx], _ramp(r - dist), out=occupancy[bz, by, bx])
    return occupancy


def _render_nodule(hu: np.ndarray, grid: _Grid, nodule: Nodule) -> None:
    radius = nodule.diameter_mm / 2
    reach = radius * 1.4 + _EDGE_MM
    c = nodule.center
    bz, by, bx = (_box(grid.zs, c[2] - reach, c[2] + reach), _box(grid.ys, c[1] - reach, c[1] + reach),
                  _box(grid.xs, c[0] - reach, c[0] + reach))
    z, y, x = grid.zs[bz, None, None] - c[2], grid.ys[None, by, None] - c[1], grid.xs[None, None, bx] - c[0]
    sx, sy, sz = nodule.axes_scale
    dist = np.sqrt((x / sx) ** 2 + (y / sy) ** 2 + (z / sz) ** 2)
    safe = np.maximum(dist, 1e-6)
    # Lobulation: the border radius varies smoothly with direction.
    lobes = sum(w * ((x * v[0] + y * v[1] + z * v[2]) / safe) ** 2 for v, w in zip(nodule.lobes, nodule.lobe_weights))
    border = radius * (1.0 + lobes - nodule.lobe_weights.sum() / 3)
    region = hu[bz, by, bx]
    if nodule.part_solid:
        halo = region + _ramp(border - dist) * (nodule.halo_hu - region)
        np.maximum(region, halo, out=region)   # the halo does not erase vessels running through it
        _blend(region, _ramp(border * nodule.core_fraction - dist), nodule.solid_hu)
    else:
        _blend(region, _ramp(border - dist), nodule.solid_hu)


def render_patient(patient: PatientSpec, profile: ScannerProfile) -> Volume:
    """The patient's scan on `profile`'s grid, in HU (float32, integer-valued)."""
    grid = _grid(patient, profile)
    rng = np.random.default_rng([patient.seed, 0xA1])
    z, y, x = grid.zs[:, None, None], grid.ys[None, :, None], grid.xs[None, None, :]
    cx, cy = patient.center_xy
    hu = np.full((grid.zs.size, grid.ys.size, grid.xs.size), -1000.0, dtype=np.float32)

    ax, ay = patient.body_axes
    f_body = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)           # (1, ny, nx): same on every slice
    _blend(hu, _ramp((1 - f_body) * min(ax, ay)), _FAT_HU)
    inner_ax, inner_ay = ax - patient.fat_mm, ay - patient.fat_mm
    f_inner = np.sqrt(((x - cx) / inner_ax) ** 2 + ((y - cy) / inner_ay) ** 2)
    _blend(hu, _ramp((1 - f_inner) * min(inner_ax, inner_ay)), _SOFT_TISSUE_HU)
    spine_r = 0.06 * patient.fov_mm
    spine = np.sqrt((x - cx) ** 2 + (y - cy - 0.72 * inner_ay) ** 2)
    _blend(hu, _ramp(spine_r - spine), _BONE_HU)
    for centre, axes in patient.lungs:
        f_lung = np.sqrt(((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
                         + ((z - centre[2]) / axes[2]) ** 2)
        # Dependent lung (posterior, +y in LPS) is denser, as in a supine patient.
        lung_hu = _LUNG_HU + 35.0 * (y - centre[1]) / axes[1]
        _blend(hu, _ramp((1 - f_lung) * axes.min()), lung_hu)
    _blend(hu, _render_tubes(grid, patient.segments), _SOFT_TISSUE_HU)
    for nodule in patient.nodules:
        _render_nodule(hu, grid, nodule)
    for sx_, sy_, sz_, r, spot_hu in patient.spots:
        reach = r + _EDGE_MM
        bz, by, bx = (_box(grid.zs, sz_ - reach, sz_ + reach), _box(grid.ys, sy_ - reach, sy_ + reach),
                      _box(grid.xs, sx_ - reach, sx_ + reach))
        d = np.sqrt((grid.zs[bz, None, None] - sz_) ** 2 + (grid.ys[None, by, None] - sy_) ** 2
                    + (grid.xs[None, None, bx] - sx_) ** 2)
        _blend(hu[bz, by, bx], _ramp(r - d), spot_hu)

    # Scanner: blur (in-plane resolution, slice profile of FWHM = thickness), correlated noise, calibration.
    # Sigma in voxels: slices are contiguous, so a slice profile of FWHM = thickness is 1/2.355 voxel.
    hu = gaussian_filter(hu, sigma=(1 / 2.355, 0.5, 0.5), mode="nearest")
    noise = gaussian_filter(rng.standard_normal(hu.shape, dtype=np.float32), sigma=(0.0, 0.7, 0.7))
    noise *= np.float32(profile.noise_hu / max(float(noise.std()), 1e-6))
    hu += noise + np.float32(profile.hu_offset)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.float32)
    return Volume(hu, grid.spacing, grid.origin, grid.direction, source=profile.name, series_uid=patient.seriesuid)


# ----------------------------------------------------------------------------------------------------------
# Candidates

def _crossings(segments: np.ndarray, limit: int = 40) -> np.ndarray:
    """Midpoints of pairs of non-adjacent vessel segments passing close to each other."""
    if len(segments) < 2:
        return np.zeros((0, 3))
    mids = (segments[:, :3] + segments[:, 3:6]) / 2
    ends_touch = (np.linalg.norm(segments[:, None, 3:6] - segments[None, :, :3], axis=-1) < 1e-6)
    dist = np.linalg.norm(mids[:, None] - mids[None], axis=-1)
    near = dist < (segments[:, None, 6] + segments[None, :, 6] + 1.5)
    near &= ~ends_touch & ~ends_touch.T
    near = np.triu(near, 1)
    i, j = np.nonzero(near)
    return ((mids[i] + mids[j]) / 2)[:limit]


def _patient_candidates(patient: PatientSpec, volume: Volume) -> tuple[list[Candidate], list[Annotation]]:
    rng = np.random.default_rng([patient.seed, 0xCA])
    z_lo, z_hi = patient.z0 + 6, patient.z0 + patient.z_extent_mm - 6

    def usable(point: np.ndarray) -> bool:
        return (z_lo <= point[2] <= z_hi and volume.contains_world(point, margin_voxels=1.0)
                and _in_any_lung(point, patient.lungs, 1.0)
                and all(np.linalg.norm(point - n.center) > n.diameter_mm / 2 + 3 for n in patient.nodules))

    positives, annotations = [], []
    for nodule in patient.nodules:
        radius = nodule.diameter_mm / 2
        annotations.append(Annotation(patient.seriesuid, tuple(float(v) for v in np.round(nodule.center, 2)),
                                      nodule.diameter_mm))
        for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))):
            jitter = _unit(rng.normal(0, 1, 3)) * rng.uniform(0, 0.35 * radius)   # < radius / 2
            positives.append(nodule.center + jitter)

    segments = patient.segments
    if len(segments):
        vertical = segments[np.abs(_unit_rows(segments[:, 3:6] - segments[:, :3])[:, 2]) > 0.75]
    else:
        vertical = segments
    pools = {
        "bifurcation": patient.bifurcations,
        "crossing": _crossings(segments),
        "end_on": (vertical[:, :3] + vertical[:, 3:6]) / 2 if len(vertical) else np.zeros((0, 3)),
        "vessel": (segments[:, :3] + segments[:, 3:6]) / 2 if len(segments) else np.zeros((0, 3)),
    }
    negatives = [spot[:3] for spot in patient.spots if usable(spot[:3])]
    n_negatives = int(rng.integers(15, 26))
    # Look-alikes are the majority (as from a detector); the rest are random lung points.
    shares = {"bifurcation": 0.3, "crossing": 0.15, "end_on": 0.2, "vessel": 0.1}
    for kind, share in shares.items():
        # A detector's hit is a little off the structure's centre.
        jittered = pools[kind] + rng.normal(0, 0.7, pools[kind].shape)
        pool = [p for p in jittered if usable(p)]
        take = min(len(pool), int(round(share * n_negatives)), max(0, n_negatives - len(negatives)))
        negatives += [pool[n] for n in (rng.choice(len(pool), size=take, replace=False) if take else [])]
    for _ in range(2000):   # random lung points fill up the rest
        if len(negatives) >= n_negatives:
            break
        lung = patient.lungs[int(rng.integers(2))]
        point = lung[0] + rng.uniform(-1, 1, 3) * lung[1]
        if usable(point):
            negatives.append(point)

    rows = [(p, 1) for p in positives] + [(p, 0) for p in negatives]
    order = rng.permutation(len(rows))
    candidates = [Candidate(patient.seriesuid, tuple(float(v) for v in np.round(rows[n][0], 2)), rows[n][1], 0)
                  for n in order]
    return candidates, annotations


def _unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


# ----------------------------------------------------------------------------------------------------------
# Sites

def generate_site(site_dir: Path, patients: list[PatientSpec], profile: ScannerProfile,
                  rng: np.random.Generator | None = None) -> dict:
    """Write `patients` as one site (scans/, candidates.csv, annotations.csv); returns counts."""
    site_dir = Path(site_dir)
    scans = site_dir / "scans"
    if scans.exists():
        shutil.rmtree(scans)   # only what this generator owns; other files in site_dir stay
    scans.mkdir(parents=True)
    rng = rng if rng is not None else np.random.default_rng([patients[0].seed if patients else 0, 0xF1])
    all_candidates, all_annotations = [], []
    for n, patient in enumerate(patients):
        volume = render_patient(patient, profile)
        if profile.fmt == "mhd":
            write_metaimage(volume, scans / f"{patient.seriesuid}.mhd")
        elif profile.fmt == "dicom":
            write_dicom_series(volume, scans / f"case_{n + 1:03d}", series_uid=patient.seriesuid,
                               patient_id=f"SYNTH-{profile.name[-1].upper()}{n + 1:03d}",
                               file_names=profile.dicom_file_names, transfer_syntax=profile.transfer_syntax,
                               rng=rng)
        else:
            raise ConfigError(f"scanner profile {profile.name}: fmt must be 'dicom' or 'mhd', not {profile.fmt!r}")
        candidates, annotations = _patient_candidates(patient, volume)
        all_candidates += candidates
        all_annotations += annotations
    write_candidates(site_dir / "candidates.csv", all_candidates)
    write_annotations(site_dir / "annotations.csv", all_annotations)
    return {"patients": len(patients), "candidates": len(all_candidates),
            "positives": sum(c.label for c in all_candidates), "nodules": len(all_annotations)}


def _split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder split of n patients by `fractions` (which sum to 1)."""
    raw = np.asarray(fractions, dtype=float) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def generate_federation(out_root: Path, *, size: str = "tiny", seed: int = 0,
                        hospitals: Sequence[str] = ("hospital_a", "hospital_b", "hospital_c"),
                        split: Sequence[float] = (0.4, 0.3, 0.3)) -> dict[str, Path]:
    """Write one synthetic site per hospital under `out_root`; returns hospital -> site dir.

    The size's patients are dealt to `hospitals` in the proportions `split` (one fraction per
    hospital); each site is ``out_root/<hospital>/{scans/, candidates.csv, annotations.csv}``.
    """
    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    unknown = [h for h in hospitals if h not in HOSPITAL_PROFILES]
    if unknown:
        raise ConfigError(f"unknown hospital(s) {', '.join(unknown)}; choose from {', '.join(HOSPITAL_PROFILES)}")
    if len(split) != len(hospitals) or any(f < 0 for f in split) or abs(sum(split) - 1) > 1e-6:
        raise ConfigError(f"split must give one fraction >= 0 per hospital, summing to 1; got {tuple(split)} "
                          f"for {len(hospitals)} hospital(s)")
    patients = make_patients(size, seed)
    out_root = Path(out_root)
    sites, start = {}, 0
    for hospital, count in zip(hospitals, _split_counts(len(patients), split)):
        site_dir = out_root / hospital
        t0 = time.perf_counter()
        counts = generate_site(site_dir, patients[start:start + count], HOSPITAL_PROFILES[hospital],
                               rng=np.random.default_rng([seed, start, 0xF1]))
        logger.info("%s: %s in %.1f s", hospital, counts, time.perf_counter() - t0)
        sites[hospital] = site_dir
        start += count
    return sites


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fate_components.core.sample_data",
                                     description="Generate synthetic LUNA16-style chest-CT sites.")
    parser.add_argument("--out", required=True, type=Path, help="output folder; one sub-folder per hospital")
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--hospitals", default=",".join(HOSPITAL_PROFILES),
                        help="comma-separated hospitals (default: all three)")
    parser.add_argument("--split", default=None,
                        help="comma-separated patient fractions per hospital (default 0.4,0.3,0.3 or equal)")
    args = parser.parse_args(argv)
    hospitals = [h.strip() for h in args.hospitals.split(",") if h.strip()]
    if args.split:
        split = [float(f) for f in args.split.split(",")]
    elif len(hospitals) == 3:
        split = [0.4, 0.3, 0.3]
    else:
        split = [1.0 / len(hospitals)] * len(hospitals)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    try:
        sites = generate_federation(args.out, size=args.size, seed=args.seed, hospitals=hospitals, split=split)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for hospital, site in sites.items():
        print(f"{hospital}: {site}")
    print(f"generated {len(sites)} site(s) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
