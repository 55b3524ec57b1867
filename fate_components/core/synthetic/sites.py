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

The luna16 size follows LUNA16 (888 scans, ~755,000 candidates_V2 candidates of which 1,557 are
nodules, ~35,000 excluded findings): about 850 candidates per scan (700-1000 class 0), 0.2% of them
positive (1-2 nodules per scan of 3-30 mm, ~42% under 6 mm, each hit 1-3 times, mostly once), and the
kinds a CAD detector proposes (LUNA16_KINDS): vessel bifurcations and crossings, vessels seen end-on,
airway walls, pleura and chest wall, fissures, scars, calcifications, micronodules and noise in the
parenchyma. Its phantom adds what those need: a bronchial tree (trachea, main bronchi, walls and air
lumens) beside denser vessel trees, oblique and horizontal fissures, stellate subpleural scars. Each
site also gets annotations_excluded.csv (CRLF line ends, like LUNA16's): ~40 reader marks per scan on
micronodules (their diameter, < 3 mm) and non-nodules (calcifications, scars, vessels; diameter -1),
and candidate_kinds.csv, candidates.csv's rows with their kind, for analysis.

luna16 geometry, a compromise for a 2-core machine that must generate 30-45 scans and train within
15 minutes: a field of view of 300-350 mm per patient, reconstructed on a fixed matrix per scanner
(hospital_a 448 at 1.25 mm slices, hospital_b 400 at 2.0 mm, hospital_c 416 at 2.5 mm; pixels
0.67-0.88 mm, within LUNA16's 0.6-0.9 mm), over a cranio-caudal slab of 180 mm through the middle
of 24-28 cm lungs instead of the full chest. LUNA16's 512 x 512 over a full 320 mm chest would be
2.3-2.9 times the voxels (hospital_a: 134 MB and ~4-5 s per scan). Measured on the 2-core machine
(shared, so +-30%) for 30 and 36 patients, rendering + writing + candidates: hospital_a 1.6 s per
scan (144 x 448 x 448, 56 MB of DICOM), hospital_b 0.8 s (90 x 400 x 400, 28 MB MetaImage),
hospital_c 1.0 s (72 x 416 x 416, 14 MB DICOM RLE), plus 0.1 s per patient for its spec; the default
36 patients take 47 s and 1.2 GB.

Command line: ``fate-lung generate-data --out DIR --size tiny --seed 0``
(``--size luna16 --patients N`` for N LUNA16-like patients)
"""
from __future__ import annotations

import csv
import logging
import shutil
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from fate_components.core.data.candidates import (
    ANNOTATION_COLUMNS,
    Annotation,
    Candidate,
    write_annotations,
    write_candidates,
)
from fate_components.core.errors import ConfigError
from fate_components.core.imaging.dicom_io import write_dicom_series
from fate_components.core.imaging.metaimage_io import write_metaimage
from fate_components.core.imaging.volume import Volume

__all__ = ["ScannerProfile", "SizeSpec", "HOSPITAL_PROFILES", "LUNA16_PROFILES", "SIZES", "LUNA16_KINDS",
           "PatientSpec", "Fissure", "make_patients", "render_patient", "luna16_candidates", "generate_site",
           "generate_federation"]

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
    # > 0: a fixed reconstruction matrix (pixels per row and column) as on real scanners; the in-plane
    # spacing is then the patient's field of view / matrix, rounded to 0.1 um, and inplane_spacing_mm
    # is only the nominal value. 0: a fixed spacing, the matrix follows the field of view.
    matrix: int = 0


HOSPITAL_PROFILES: dict[str, ScannerProfile] = {
    "hospital_a": ScannerProfile("hospital_a", "dicom", 1.5, 1.0, 15.0, 0.0, False, "dcm", None),
    "hospital_b": ScannerProfile("hospital_b", "mhd", 1.6, 2.0, 35.0, 15.0, True),
    "hospital_c": ScannerProfile("hospital_c", "dicom", 1.4, 2.5, 50.0, -20.0, False, "random", "rle"),
}

# The same three hospitals (format, noise, calibration, slice direction, file names) with LUNA16's
# geometry, for the luna16 size: a fixed matrix over a 300-350 mm field of view gives 0.67-0.88 mm pixels.
LUNA16_PROFILES: dict[str, ScannerProfile] = {
    "hospital_a": replace(HOSPITAL_PROFILES["hospital_a"], inplane_spacing_mm=0.73, slice_thickness_mm=1.25,
                          matrix=448),
    "hospital_b": replace(HOSPITAL_PROFILES["hospital_b"], inplane_spacing_mm=0.81, slice_thickness_mm=2.0,
                          matrix=400),
    "hospital_c": replace(HOSPITAL_PROFILES["hospital_c"], inplane_spacing_mm=0.78, slice_thickness_mm=2.5,
                          matrix=416),
}


@dataclass(frozen=True)
class SizeSpec:
    n_patients: int      # over all hospitals (default; generate_federation's n_patients overrides it)
    fov_mm: float        # in-plane field of view; the anatomy scales with it (luna16: the mean)
    z_extent_mm: float   # scanned length
    anatomy: str = "simple"   # "luna16": the richer phantom, candidates and findings of the luna16 size


# tiny: ~100x100x(32-80) voxels, all three sites in a few seconds; small: ~128x128; bench: ~160x160;
# patients: small's scans, but enough patients per site for patient-level differential privacy.
SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(12, 150.0, 80.0),
    "small": SizeSpec(30, 192.0, 100.0),
    "bench": SizeSpec(60, 240.0, 150.0),
    "patients": SizeSpec(480, 192.0, 100.0),
    "luna16": SizeSpec(36, 325.0, 180.0, "luna16"),
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
    # luna16 only (empty otherwise):
    anatomy: str = "simple"
    airways: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))   # (A, 8): p0, p1, outer r, lumen r
    scars: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))     # (S, 8): p0, p1, radius, scar id
    fissures: list = field(default_factory=list)                            # list[Fissure]
    excluded: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (E, 4): xyz, diameter (-1: none)


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


def _add_nodule(rng: np.random.Generator, lungs, z_range: tuple[float, float], diameter: float,
                nodules: list[Nodule]) -> None:
    """Place a nodule of `diameter` among `nodules`, shrinking it by 0.8 until it fits (none under 3 mm)."""
    while diameter >= 3.0:
        nodule = _place_nodule(rng, lungs, z_range, diameter, nodules)
        if nodule is not None:
            nodules.append(nodule)
            return
        diameter *= 0.8


def make_patient(index: int, size: SizeSpec, seed: int) -> PatientSpec:
    """The anatomy, nodules and look-alikes of patient `index` (world mm), deterministic."""
    if size.anatomy == "luna16":
        return _make_luna16_patient(index, size, seed)
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
        _add_nodule(rng, lungs, z_range, diameter, nodules)

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


def make_patients(size: str | SizeSpec, seed: int, n_patients: int | None = None) -> list[PatientSpec]:
    """The size's patients; `n_patients` overrides its count (patient i is the same for any count)."""
    spec = SIZES[size] if isinstance(size, str) else size
    return [make_patient(i, spec, seed) for i in range(spec.n_patients if n_patients is None else n_patients)]


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
    if profile.matrix:
        n_xy, s = profile.matrix, round(patient.fov_mm / profile.matrix, 4)
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


def _render_spots(hu: np.ndarray, grid: _Grid, spots: np.ndarray, *, float32: bool = False) -> None:
    """Small spheres (calcifications, micronodules); float32 keeps the luna16 render in single precision."""
    for sx_, sy_, sz_, r, spot_hu in spots:
        reach = r + _EDGE_MM
        bz, by, bx = (_box(grid.zs, sz_ - reach, sz_ + reach), _box(grid.ys, sy_ - reach, sy_ + reach),
                      _box(grid.xs, sx_ - reach, sx_ + reach))
        d = np.sqrt((grid.zs[bz, None, None] - sz_) ** 2 + (grid.ys[None, by, None] - sy_) ** 2
                    + (grid.xs[None, None, bx] - sx_) ** 2)
        occupancy, value = _ramp(r - d), spot_hu
        if float32:
            occupancy, value = occupancy.astype(np.float32), np.float32(spot_hu)
        _blend(hu[bz, by, bx], occupancy, value)


def render_patient(patient: PatientSpec, profile: ScannerProfile) -> Volume:
    """The patient's scan on `profile`'s grid, in HU (float32, integer-valued)."""
    if patient.anatomy == "luna16":
        return _render_luna16(patient, profile)
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
    _render_spots(hu, grid, patient.spots)

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
# The luna16 size: a richer phantom (airways, fissures, scars), LUNA16's candidate kinds and excluded findings

LUNA16_KINDS = ("nodule", "bifurcation", "crossing", "end_on", "airway_wall", "pleura", "fissure", "scar",
                "calcification", "micronodule", "noise")
_LUNA16_FOV_MM = (300.0, 350.0)
_LUNA16_NEGATIVES = (700, 1000)                    # class-0 candidates per scan, both inclusive
_LUNA16_NODULES = ([1, 2], [0.62, 0.38])           # nodules per scan
_LUNA16_HITS = ([1, 2, 3], [0.78, 0.16, 0.06])     # class-1 candidates per nodule
_LUNA16_READERS = ([1, 2, 3, 4], [0.45, 0.3, 0.15, 0.1])   # excluded marks per finding (LIDC: 4 readers)
# Shares of the class-0 candidates; the spots' candidates come first and random parenchyma ("noise")
# fills up the rest, about 10%.
_LUNA16_SHARES = {"bifurcation": 0.22, "crossing": 0.08, "end_on": 0.17, "airway_wall": 0.12, "pleura": 0.18,
                  "fissure": 0.08, "scar": 0.03}
_FISSURE_HU, _SCAR_HU = -100.0, 0.0
_FISSURE_HALF_MM = 0.3
_MARGIN_MM = 6.0   # candidates and findings keep this far from the scanned volume's faces


@dataclass(frozen=True)
class Fissure:
    """A fissure: a thin sheet in lung `lung` (0: right, 1: left), world mm.

    oblique: y = y0 + slope (z - z0) + bend (z - z0)^2 + tilt (x - x0), from posterior-superior to
    anterior-inferior, its lateral end a little anterior. horizontal (right lung): z = z0 + slope (y - y0)
    + tilt (x - x0), only anterior to that lung's oblique fissure (the middle lobe's upper border).
    """
    lung: int
    kind: str      # "oblique" | "horizontal"
    x0: float
    y0: float
    z0: float
    slope: float
    tilt: float
    bend: float = 0.0

    @property
    def axis(self) -> int:
        """The world axis (1: y, 2: z) that the sheet gives as a function of the other two."""
        return 1 if self.kind == "oblique" else 2

    def level(self, x, y, z):
        """The sheet's coordinate along `axis` over (x, z) (oblique) or (x, y) (horizontal); the other is unused."""
        if self.kind == "oblique":
            return self.y0 + self.slope * (z - self.z0) + self.bend * (z - self.z0) ** 2 + self.tilt * (x - self.x0)
        return self.z0 + self.slope * (y - self.y0) + self.tilt * (x - self.x0)

    def normal(self, x, y, z) -> tuple:
        """The unit normal's (x, y, z) components (arrays shaped like the broadcast inputs)."""
        if self.kind == "oblique":
            gx, gy, gz = -self.tilt, 1.0, -(self.slope + 2 * self.bend * (z - self.z0))
        else:
            gx, gy, gz = -self.tilt, -self.slope, 1.0
        norm = np.sqrt(gx ** 2 + gy ** 2 + gz ** 2)
        return gx / norm, gy / norm, gz / norm

    def distance(self, points: np.ndarray, oblique: Fissure | None = None) -> np.ndarray:
        """Approximate perpendicular distance (mm) of (N, 3) points from the sheet; nan where it does not exist."""
        x, y, z = points[:, 0], points[:, 1], points[:, 2]
        along = points[:, self.axis] - self.level(x, y, z)
        d = along * self.normal(x, y, z)[self.axis]
        if self.kind == "horizontal" and oblique is not None:
            d = np.where(y < oblique.level(x, y, z), d, np.nan)
        return d


def _pick(rng: np.random.Generator, table: tuple[list[int], list[float]]) -> int:
    values, probabilities = table
    return int(rng.choice(values, p=probabilities))


def _in_unit_ball(rng: np.random.Generator) -> np.ndarray:
    """A point uniformly distributed in the unit ball."""
    v = rng.normal(0, 1, 3)
    return v * rng.random() ** (1 / 3) / np.linalg.norm(v)


def _lung_depths(points: np.ndarray, lungs) -> np.ndarray:
    """Vectorised _lung_depth: the depth of each (N, 3) point in the lung it is deepest in."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return np.max([(1.0 - np.sqrt(np.sum(((points - c) / a) ** 2, axis=1))) * a.min() for c, a in lungs], axis=0)


def _grow_tree(rng: np.random.Generator, lung, start: np.ndarray, *, roots: int, radius: tuple[float, float],
               step: tuple[float, float], shrink: float, branch: float, min_radius: float,
               max_segments: int) -> tuple[list, list]:
    """A branching tree of tubes from `start` filling `lung`: breadth-first, so a cap trims the twigs."""
    centre, axes = lung
    queue = deque()
    for _ in range(roots):
        target = centre + _in_unit_ball(rng) * axes * 0.9
        queue.append((start.copy(), _unit(target - start), float(rng.uniform(*radius))))
    segments, bifurcations = [], []
    while queue and len(segments) < max_segments:
        point, direction, r = queue.popleft()
        while r >= min_radius and len(segments) < max_segments:
            length = float(rng.uniform(*step))
            for _ in range(4):   # bend away from the pleura, else the branch ends
                turned = _unit(direction + rng.normal(0, 0.25, 3))
                end = point + turned * length
                if _lung_depth(end, lung) >= r + 1.0:
                    break
            else:
                break
            direction = turned
            segments.append([*point, *end, r])
            point, r = end, r * shrink
            if rng.random() < branch:
                bifurcations.append(point.copy())
                queue.append((point.copy(), _unit(direction + rng.normal(0, 0.7, 3)), r * 0.8))
                r *= 0.9
    return segments, bifurcations


def _random_lung_point(rng: np.random.Generator, lungs, z_range, depth: tuple[float, float], away: list,
                       tries: int = 200) -> tuple[int, np.ndarray] | None:
    """A point of a random lung at a depth within `depth` and `z_range`, clear of `away` ((centre, clearance))."""
    for _ in range(tries):
        n = int(rng.integers(len(lungs)))
        point = lungs[n][0] + rng.uniform(-1, 1, 3) * lungs[n][1]
        if (z_range[0] <= point[2] <= z_range[1] and depth[0] <= _lung_depth(point, lungs[n]) <= depth[1]
                and all(np.linalg.norm(point - c) > clearance for c, clearance in away)):
            return n, point
    return None


def _make_luna16_patient(index: int, size: SizeSpec, seed: int) -> PatientSpec:
    """A luna16 patient: a mid-chest slab of `size.z_extent_mm` through full-height lungs (world mm).

    Every part draws from one stream in a fixed order (lungs, trees, fissures, nodules, findings, readers'
    marks), so patient i is the same for any patient count.
    """
    rng = np.random.default_rng([seed, index, 0x16])
    fov, zext = float(rng.uniform(*_LUNA16_FOV_MM)), size.z_extent_mm
    center_xy = rng.uniform(-12, 12, 2)
    z0 = float(rng.uniform(-330, -150))
    body_axes = np.array([0.45, 0.33]) * fov * rng.uniform(0.93, 1.0, 2)
    fat_mm = float(rng.uniform(0.02, 0.04) * fov)
    lung_z = z0 + zext / 2 + rng.uniform(-25, 25)
    lungs = []
    for side in (-1, 1):   # LPS: -x is the patient's right
        centre = np.array([center_xy[0] + side * 0.21 * fov, center_xy[1] - 0.01 * fov, lung_z + rng.uniform(-5, 5)])
        axes = np.array([0.15 * fov, 0.24 * fov, 1.0]) * rng.uniform(0.9, 1.0, 3)
        axes[2] = rng.uniform(120, 140)   # lungs 24-28 cm high, of which the slab shows the middle
        lungs.append((centre, axes))
    carina = np.array([center_xy[0], center_xy[1] + 0.05 * fov, lung_z + 30 + rng.uniform(-5, 5)])
    segments, bifurcations, airways = _luna16_trees(rng, lungs, carina, zext)
    fissures = _luna16_fissures(rng, lungs)
    z_range = (z0, z0 + zext)
    nodules = _luna16_nodules(rng, lungs, z_range, index, seed)
    spots, scars, findings = _luna16_findings(rng, lungs, z_range, nodules, bifurcations)
    excluded = []
    for point, diameter in findings:
        for _ in range(_pick(rng, _LUNA16_READERS)):
            mark = point + rng.normal(0, 0.6, 3)
            excluded.append([*mark, -1.0 if diameter < 0 else min(2.9, diameter * rng.uniform(0.85, 1.1))])
    return PatientSpec(index=index, seriesuid=_uid(rng), center_xy=center_xy, z0=z0, fov_mm=fov, z_extent_mm=zext,
                       body_axes=body_axes, fat_mm=fat_mm, lungs=lungs,
                       segments=np.array(segments).reshape(-1, 7), bifurcations=np.array(bifurcations).reshape(-1, 3),
                       nodules=nodules, spots=np.array(spots).reshape(-1, 5), seed=int(rng.integers(0, 2**31)),
                       anatomy="luna16", airways=np.array(airways).reshape(-1, 8),
                       scars=np.array(scars).reshape(-1, 8), fissures=fissures,
                       excluded=np.round(np.array(excluded).reshape(-1, 4), 2))


def _luna16_trees(rng: np.random.Generator, lungs: list, carina: np.ndarray, zext: float) -> tuple[list, list, list]:
    """(vessel segments, bifurcations, airways) of both lungs: a vessel tree from each hilum, bronchi beside it."""
    segments, bifurcations, airways = [], [], []
    airways.append([*carina, *(carina + [0, 0, zext + 60]), 9.0, 7.5])   # trachea, up out of the slab
    for side, lung in zip((-1, 1), lungs):
        centre, axes = lung
        hilum = centre + np.array([-side * 0.55 * axes[0], 0.05 * axes[1], 0.1 * axes[2]])
        s, b = _grow_tree(rng, lung, hilum, roots=int(rng.integers(18, 25)), radius=(3.0, 4.2), step=(5.0, 8.0),
                          shrink=0.94, branch=0.4, min_radius=0.7, max_segments=2200)
        segments += s
        bifurcations += b
        bronchus = hilum + np.array([0.0, 4.0, 6.0])   # the bronchus enters next to the artery
        airways.append([*carina, *bronchus, 6.5, 5.2])  # main bronchus
        s, _ = _grow_tree(rng, lung, bronchus, roots=int(rng.integers(3, 5)), radius=(4.5, 5.5), step=(6.0, 9.0),
                          shrink=0.9, branch=0.45, min_radius=1.1, max_segments=250)
        airways += [[*a[:6], a[6], a[6] - max(0.5, 0.2 * a[6])] for a in s]
    return segments, bifurcations, airways


def _luna16_fissures(rng: np.random.Generator, lungs: list) -> list[Fissure]:
    fissures = []
    for n, (side, (centre, axes)) in enumerate(zip((-1, 1), lungs)):
        fissures.append(Fissure(n, "oblique", float(centre[0]), float(centre[1] + rng.uniform(0, 0.2) * axes[1]),
                                float(centre[2]), float(rng.uniform(0.5, 0.8)), float(-side * rng.uniform(0.1, 0.3)),
                                float(rng.uniform(-1, 1) * 1e-3)))
        if n == 0:   # the right lung's middle lobe
            fissures.append(Fissure(n, "horizontal", float(centre[0]), float(centre[1]),
                                    float(centre[2] + rng.uniform(15, 45)), float(rng.uniform(-0.12, 0.12)),
                                    float(rng.uniform(-0.08, 0.08))))
    return fissures


def _luna16_nodules(rng: np.random.Generator, lungs: list, z_range: tuple[float, float], index: int,
                    seed: int) -> list[Nodule]:
    # Diameters 3 + Exp(5.5 mm), capped at 30 mm: ~42% under 6 mm, median ~7 mm, as LUNA16's. The
    # quantiles come from a golden-ratio sequence over the patients (offset by the seed), so that even a
    # few dozen patients follow the distribution closely, and patient i is the same for any count.
    nodules: list[Nodule] = []
    offset = float(np.random.default_rng([seed, 0xD1]).random())
    for k in range(_pick(rng, _LUNA16_NODULES)):
        quantile = (offset + (2 * index + k) * 0.6180339887498949) % 1.0
        diameter = float(min(30.0, 3.0 - 5.5 * np.log1p(-quantile)))
        _add_nodule(rng, lungs, z_range, diameter, nodules)
    return nodules


def _luna16_findings(rng: np.random.Generator, lungs: list, z_range: tuple[float, float], nodules: list[Nodule],
                     bifurcations: list) -> tuple[list, list, list]:
    """(spots, scars, findings): calcifications, micronodules and scars away from the nodules, and the findings
    (xyz, diameter or -1) that radiologists marked but LUNA16 excludes, some vessels among them."""
    z0, z1 = z_range
    away = [(n.center, n.diameter_mm / 2 + 8) for n in nodules]
    spots, findings = [], []
    for hu, radius_range, count in ((380.0, (1.0, 2.0), int(rng.integers(2, 7))),
                                    (None, (0.75, 1.4), int(rng.integers(5, 13)))):
        for _ in range(count):
            found = _random_lung_point(rng, lungs, (z0 + 8, z1 - 8), (4, np.inf), away)
            if found is not None:
                r = float(rng.uniform(*radius_range))
                spots.append([*found[1], r, hu if hu is not None else rng.uniform(0, 60)])
                findings.append((found[1], -1.0 if hu is not None else 2 * r))   # micronodule: its diameter
    scars = []   # stellate subpleural scars: 3-5 spokes from a centre
    for scar_id in range(int(rng.integers(3, 9))):
        found = _random_lung_point(rng, lungs, (z0 + 10, z1 - 10), (4, 18), away)
        if found is None:
            continue
        point = found[1]
        for _ in range(int(rng.integers(3, 6))):
            end = point + _unit(rng.normal(0, 1, 3)) * rng.uniform(3, 8)
            scars.append([*point, *end, rng.uniform(0.6, 1.2), scar_id])
        findings.append((point, -1.0))
    in_slab = [b for b in bifurcations if z0 + 10 <= b[2] <= z1 - 10]
    for n in rng.choice(len(in_slab), size=min(len(in_slab), int(rng.integers(2, 6))), replace=False):
        findings.append((in_slab[n], -1.0))   # a vessel some reader took for a possible nodule
    return spots, scars, findings


def _paint_tubes(hu: np.ndarray, axes: tuple[np.ndarray, np.ndarray, np.ndarray], segments: np.ndarray,
                 radii: np.ndarray, value: float) -> None:
    """Blend capsules (p0, p1, radius) into `hu`, each only within its bounding box (float32 throughout)."""
    zs, ys, xs = axes
    value = np.float32(value)
    for p0, p1, r in zip(segments[:, :3], segments[:, 3:6], radii):
        lo, hi = np.minimum(p0, p1) - r - _EDGE_MM, np.maximum(p0, p1) + r + _EDGE_MM
        bz, by, bx = _box(zs, lo[2], hi[2]), _box(ys, lo[1], hi[1]), _box(xs, lo[0], hi[0])
        if bz.stop == bz.start or by.stop == by.start or bx.stop == bx.start:
            continue
        z = (zs[bz] - np.float32(p0[2]))[:, None, None]
        y = (ys[by] - np.float32(p0[1]))[None, :, None]
        x = (xs[bx] - np.float32(p0[0]))[None, None, :]
        d = (p1 - p0).astype(np.float32)
        t = (x * d[0] + y * d[1]) + z * d[2]
        t *= np.float32(1.0 / max(float(d @ d), 1e-12))
        np.clip(t, 0.0, 1.0, out=t)
        dist = np.square(x - t * d[0])
        dist += np.square(y - t * d[1])
        dist += np.square(z - t * d[2])
        np.sqrt(dist, out=dist)
        occupancy = np.clip((np.float32(r) - dist) * np.float32(1 / _EDGE_MM) + np.float32(0.5), 0.0, 1.0)
        region = hu[bz, by, bx]
        region += occupancy * (value - region)


def _paint_fissure(hu: np.ndarray, grid: _Grid, fissure: Fissure, lung, oblique: Fissure | None) -> None:
    """Blend a fissure into `hu`, voxel column by voxel column along its axis: a few voxels per column.

    Partial volume: a sheet thinner than the voxel's extent along its normal fills the voxels it
    crosses with its share of tissue, as in a real scan (a faint band in thick oblique slices).
    """
    centre, axes = lung
    reach = axes + _EDGE_MM
    world = [grid.xs, grid.ys, grid.zs]
    boxes = [_box(world[a], centre[a] - reach[a], centre[a] + reach[a]) for a in range(3)]
    axis = fissure.axis
    others = [a for a in range(3) if a != axis]
    # The other two coordinates on a 2-D mesh of columns, each column running along `axis`.
    u = world[others[0]][boxes[others[0]]][:, None]
    v = world[others[1]][boxes[others[1]]][None, :]
    coords = {others[0]: u, others[1]: v, axis: None}
    level = fissure.level(coords[0], coords[1] if 1 in others else None, coords[2] if 2 in others else None)
    level = np.broadcast_to(level, (u.size, v.size))
    coords[axis] = level
    normal = [np.broadcast_to(c, level.shape) for c in fissure.normal(coords[0], coords[1], coords[2])]
    spacing = grid.spacing
    half = np.maximum(_FISSURE_HALF_MM, 0.5 * sum(np.abs(normal[a]) * spacing[a] for a in range(3)))
    amplitude = np.minimum(1.0, _FISSURE_HALF_MM / half)
    line = world[axis]
    step = float(line[1] - line[0]) if line.size > 1 else 1.0
    nearest = np.rint((level - line[0]) / step).astype(int)
    reach_voxels = int(np.ceil((half.max() + _EDGE_MM) / np.abs(normal[axis]).min() / abs(step))) + 1
    grids = {others[0]: np.arange(boxes[others[0]].start, boxes[others[0]].stop)[:, None],
             others[1]: np.arange(boxes[others[1]].start, boxes[others[1]].stop)[None, :]}
    for k in range(-reach_voxels, reach_voxels + 1):
        index = nearest + k
        ok = (index >= 0) & (index < line.size)
        position = line[np.clip(index, 0, line.size - 1)]
        d = (position - level) * normal[axis]
        occupancy = amplitude * np.clip((half - np.abs(d)) / _EDGE_MM + 0.5, 0.0, 1.0) * ok
        point = {others[0]: np.broadcast_to(u, level.shape), others[1]: np.broadcast_to(v, level.shape),
                 axis: position}
        f_lung = np.sqrt(sum(((point[a] - centre[a]) / axes[a]) ** 2 for a in range(3)))
        occupancy = occupancy * _ramp((1 - f_lung) * axes.min())
        if oblique is not None:
            occupancy = occupancy * (point[1] < oblique.level(point[0], point[1], point[2]))
        keep = occupancy > 0
        if not keep.any():
            continue
        ijk = {others[0]: np.broadcast_to(grids[others[0]], level.shape)[keep],
               others[1]: np.broadcast_to(grids[others[1]], level.shape)[keep],
               axis: index[keep]}
        where = (ijk[2], ijk[1], ijk[0])   # hu is [z, y, x]
        current = hu[where]
        hu[where] = current + occupancy[keep].astype(np.float32) * (np.float32(_FISSURE_HU) - current)


def _noise_std(sigma: float, truncate: float) -> float:
    """Standard deviation of unit white noise after a 1-D gaussian_filter of `sigma` voxels."""
    radius = int(truncate * sigma + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return float(np.sqrt(np.sum((weights / weights.sum()) ** 2)))


def _render_luna16(patient: PatientSpec, profile: ScannerProfile) -> Volume:
    """render_patient for luna16 patients: the same tissues plus airways, fissures and scars, in float32."""
    grid = _grid(patient, profile)
    rng = np.random.default_rng([patient.seed, 0xA1])
    zs, ys, xs = (a.astype(np.float32) for a in (grid.zs, grid.ys, grid.xs))
    cx, cy = patient.center_xy
    # Body: the same on every slice.
    y2, x2 = grid.ys[:, None], grid.xs[None, :]
    body = np.full((ys.size, xs.size), -1000.0)
    ax, ay = patient.body_axes
    _blend(body, _ramp((1 - np.sqrt(((x2 - cx) / ax) ** 2 + ((y2 - cy) / ay) ** 2)) * min(ax, ay)), _FAT_HU)
    iax, iay = ax - patient.fat_mm, ay - patient.fat_mm
    _blend(body, _ramp((1 - np.sqrt(((x2 - cx) / iax) ** 2 + ((y2 - cy) / iay) ** 2)) * min(iax, iay)), _SOFT_TISSUE_HU)
    _blend(body, _ramp(0.06 * patient.fov_mm - np.sqrt((x2 - cx) ** 2 + (y2 - cy - 0.72 * iay) ** 2)), _BONE_HU)
    hu = np.empty((zs.size, ys.size, xs.size), dtype=np.float32)
    hu[:] = body.astype(np.float32)

    for n, (centre, axes) in enumerate(patient.lungs):
        reach = axes + _EDGE_MM
        bz, by, bx = (_box(grid.zs, centre[2] - reach[2], centre[2] + reach[2]),
                      _box(grid.ys, centre[1] - reach[1], centre[1] + reach[1]),
                      _box(grid.xs, centre[0] - reach[0], centre[0] + reach[0]))
        # Parenchyma is denser posteriorly (a supine patient).
        value = (_LUNG_HU + 35.0 * (grid.ys[by] - centre[1]) / axes[1]).astype(np.float32)[None, :, None]
        f2 = ((((ys[by] - np.float32(centre[1])) / np.float32(axes[1])) ** 2)[:, None]
              + (((xs[bx] - np.float32(centre[0])) / np.float32(axes[0])) ** 2)[None, :])
        f = f2[None] + (((zs[bz] - np.float32(centre[2])) / np.float32(axes[2])) ** 2)[:, None, None]
        np.sqrt(f, out=f)
        f -= 1.0
        f *= np.float32(-axes.min() / _EDGE_MM)
        f += 0.5
        np.clip(f, 0.0, 1.0, out=f)   # occupancy
        region = hu[bz, by, bx]
        region += f * (value - region)
        oblique = next((f for f in patient.fissures if f.lung == n and f.kind == "oblique"), None)
        for fissure in (f for f in patient.fissures if f.lung == n):
            _paint_fissure(hu, grid, fissure, (centre, axes), oblique if fissure.kind == "horizontal" else None)

    tube_axes = (zs, ys, xs)
    _paint_tubes(hu, tube_axes, patient.segments, patient.segments[:, 6], _SOFT_TISSUE_HU)
    _paint_tubes(hu, tube_axes, patient.airways, patient.airways[:, 6], _SOFT_TISSUE_HU)   # walls
    _paint_tubes(hu, tube_axes, patient.airways, patient.airways[:, 7], -1000.0)           # lumens
    _paint_tubes(hu, tube_axes, patient.scars, patient.scars[:, 6], _SCAR_HU)
    for nodule in patient.nodules:
        _render_nodule(hu, grid, nodule)
    _render_spots(hu, grid, patient.spots, float32=True)

    # Scanner, as render_patient, but the blur only where there is more than air: the body's box.
    margin = 3 * max(grid.spacing[:2])
    by, bx = _box(grid.ys, cy - ay - margin, cy + ay + margin), _box(grid.xs, cx - ax - margin, cx + ax + margin)
    hu[:, by, bx] = gaussian_filter(hu[:, by, bx], sigma=(1 / 2.355, 0.5, 0.5), mode="nearest", truncate=2.5)
    noise = gaussian_filter(rng.standard_normal(hu.shape, dtype=np.float32), sigma=(0.0, 0.7, 0.7), truncate=3.0)
    noise *= np.float32(profile.noise_hu / _noise_std(0.7, 3.0) ** 2)
    noise += np.float32(profile.hu_offset)
    hu += noise
    np.rint(hu, out=hu)
    np.clip(hu, -1024, 3071, out=hu)
    return Volume(hu, grid.spacing, grid.origin, grid.direction, source=profile.name, series_uid=patient.seriesuid)


def _segment_points(segments: np.ndarray, t: np.ndarray) -> np.ndarray:
    return segments[:, :3] + t[:, None] * (segments[:, 3:6] - segments[:, :3])


def _perpendicular(rng: np.random.Generator, directions: np.ndarray) -> np.ndarray:
    """A random unit vector perpendicular to each row of `directions`."""
    v = np.cross(directions, rng.normal(0, 1, directions.shape))
    return _unit_rows(v)


def _crossing_points(segments: np.ndarray) -> np.ndarray:
    """Where two vessel segments that are not joined pass within touching distance of each other."""
    if len(segments) < 2:
        return np.zeros((0, 3))
    p, q = segments[:, :3], segments[:, 3:6]
    mids, half = (p + q) / 2, np.linalg.norm(q - p, axis=1) / 2
    pairs = cKDTree(mids).query_pairs(2 * half.max() + 2 * segments[:, 6].max() + 0.5, output_type="ndarray")
    if not len(pairs):
        return np.zeros((0, 3))
    i, j = pairs[:, 0], pairs[:, 1]
    near = np.linalg.norm(mids[i] - mids[j], axis=1) < half[i] + half[j] + segments[i, 6] + segments[j, 6] + 0.5
    i, j = i[near], j[near]
    joined = np.zeros(len(i), dtype=bool)
    for a in (p, q):
        for b in (p, q):
            joined |= np.all(np.abs(a[i] - b[j]) < 1e-9, axis=1)
    i, j = i[~joined], j[~joined]
    # Closest points of the two segments (Ericson, Real-Time Collision Detection, 5.1.9), vectorised.
    d1, d2, r = q[i] - p[i], q[j] - p[j], p[i] - p[j]
    a, e = np.sum(d1 * d1, axis=1), np.sum(d2 * d2, axis=1)
    b, c, f = np.sum(d1 * d2, axis=1), np.sum(d1 * r, axis=1), np.sum(d2 * r, axis=1)
    denominator = a * e - b * b
    s = np.clip(np.where(denominator > 1e-9, (b * f - c * e) / np.maximum(denominator, 1e-9), 0.0), 0.0, 1.0)
    t = (b * s + f) / e
    s = np.where(t < 0, np.clip(-c / a, 0.0, 1.0), np.where(t > 1, np.clip((b - c) / a, 0.0, 1.0), s))
    t = np.clip(t, 0.0, 1.0)
    on_i, on_j = p[i] + s[:, None] * d1, p[j] + t[:, None] * d2
    close = np.linalg.norm(on_i - on_j, axis=1) < segments[i, 6] + segments[j, 6] + 0.5
    # A crossing, not two branches leaving a bifurcation side by side: at least 30 degrees apart.
    close &= np.abs(b) < 0.87 * np.sqrt(a * e)
    points = ((on_i + on_j) / 2)[close]
    # One per 4 mm cell, so that the hilum, where all trees start, does not take most of them.
    _, first = np.unique(np.floor(points / 4.0).astype(np.int64), axis=0, return_index=True)
    return points[np.sort(first)]


def luna16_candidates(patient: PatientSpec) -> list[tuple[np.ndarray, int, str]]:
    """The candidates of a luna16 patient as (world xyz mm, class, kind), from its spec alone (no scan needed).

    Like LUNA16's candidates_V2, which merges several CAD systems: about 850 per scan, 1-3 on each
    nodule (class 1), the rest on what detectors mistake for nodules; see LUNA16_KINDS. Every point lies
    inside the scanned volume with a margin of 6 mm, and where its kind says: on a bifurcation, a
    crossing, a vertical vessel, inside an airway wall, on a fissure, a scar or a spot, within 2 mm of
    the pleura, or in parenchyma clear of all of them ("noise").
    """
    if patient.anatomy != "luna16":
        raise ConfigError(f"luna16_candidates needs a luna16 patient, not a {patient.anatomy!r} one")
    rng = np.random.default_rng([patient.seed, 0xCA])   # one stream, drawn in a fixed order: same seed, same list
    detector = _Luna16Detector(patient, rng)
    rows: list[tuple[np.ndarray, int, str]] = []
    for nodule in patient.nodules:
        radius = nodule.diameter_mm / 2
        for _ in range(_pick(rng, _LUNA16_HITS)):
            rows.append((nodule.center + _unit(rng.normal(0, 1, 3)) * rng.uniform(0, 0.35 * radius), 1, "nodule"))
    n_negatives = int(rng.integers(_LUNA16_NEGATIVES[0], _LUNA16_NEGATIVES[1] + 1))
    negatives = detector.on_spots()
    negatives += detector.on_structures(n_negatives)
    negatives += detector.in_parenchyma(n_negatives - len(negatives))
    rows += [(p, 0, kind) for p, kind in negatives[:n_negatives]]
    order = rng.permutation(len(rows))
    return [(np.round(rows[n][0], 2), rows[n][1], rows[n][2]) for n in order]


class _Luna16Detector:
    """Where a CAD detector's false positives fall in one luna16 patient: one proposer per kind of structure.

    Every proposer draws from the patient's one candidate stream, so the order of calls is part of the output.
    """

    def __init__(self, patient: PatientSpec, rng: np.random.Generator) -> None:
        self.patient, self.rng = patient, rng
        half = patient.fov_mm / 2 - _MARGIN_MM
        self.lo = np.array([patient.center_xy[0] - half, patient.center_xy[1] - half, patient.z0 + _MARGIN_MM])
        self.hi = np.array([patient.center_xy[0] + half, patient.center_xy[1] + half,
                            patient.z0 + patient.z_extent_mm - _MARGIN_MM])
        self.lungs = patient.lungs
        self.segments, self.airways, self.scars = patient.segments, patient.airways, patient.scars
        self.fissures = patient.fissures
        self.oblique = {f.lung: f for f in self.fissures if f.kind == "oblique"}
        tubes = np.concatenate([self.segments[:, :7], self.airways[:, :7], self.scars[:, :7]])
        samples = [_segment_points(tubes, np.full(len(tubes), t)) for t in np.linspace(0, 1, 9)]
        self.samples, self.sample_r = np.concatenate(samples), np.concatenate([tubes[:, 6]] * 9)
        self.tree = cKDTree(self.samples)

    def usable(self, points: np.ndarray, depth: float | None = 1.0) -> np.ndarray:
        """Inside the scanned volume, clear of every nodule by 3 mm, and at least `depth` mm inside a lung."""
        ok = np.all((points >= self.lo) & (points <= self.hi), axis=1)
        for n in self.patient.nodules:
            ok &= np.linalg.norm(points - n.center, axis=1) > n.diameter_mm / 2 + 3
        if depth is not None:
            ok &= _lung_depths(points, self.lungs) >= depth
        return ok

    def on_spots(self) -> list[tuple[np.ndarray, str]]:
        negatives = []
        for spot in self.patient.spots:
            kind = "calcification" if spot[4] > 300 else "micronodule"
            points = spot[:3] + self.rng.normal(0, 0.4, (int(self.rng.integers(1, 3)), 3))
            negatives += [(p, kind) for p in points[self.usable(points)]]
        return negatives

    def on_structures(self, n_negatives: int) -> list[tuple[np.ndarray, str]]:
        """Each kind's share of `n_negatives` (_LUNA16_SHARES), in a fixed order of kinds."""
        direction = _unit_rows(self.segments[:, 3:6] - self.segments[:, :3])
        vertical = self.segments[np.abs(direction[:, 2]) > 0.8]
        # Points must lie in the lung (depth >= 1 mm) but for pleura (+-2 mm of it) and fissures (>= 2 mm).
        proposers = {"bifurcation": (self._finite(self.patient.bifurcations, 0.7), 1.0),
                     "crossing": (self._finite(_crossing_points(self.segments), 0.7), 1.0),
                     "end_on": (lambda n: self._along(vertical, n, 0.4), 1.0),
                     "airway_wall": (self._airway_wall, 1.0),
                     "pleura": (self._pleura, None),
                     "fissure": (self._fissure, 2.0),
                     "scar": (lambda n: self._along(self.scars, n, 0.4), 1.0)}
        negatives = []
        for kind, (propose, depth) in proposers.items():
            got, want = 0, int(round(_LUNA16_SHARES[kind] * n_negatives))
            for _ in range(8):
                if got >= want:
                    break
                points = propose(2 * (want - got) + 8)
                points = points[np.all(np.isfinite(points), axis=1)]
                points = points[self.usable(points, depth)][: want - got]
                negatives += [(p, kind) for p in points]
                got += len(points)
        return negatives

    def in_parenchyma(self, wanted: int) -> list[tuple[np.ndarray, str]]:
        """"noise": at least 3 mm inside a lung and clear of every tube and fissure, up to `wanted` points."""
        negatives: list[tuple[np.ndarray, str]] = []
        for _ in range(50):
            if len(negatives) >= wanted:
                break
            points = self._noise(4 * (wanted - len(negatives)) + 16)
            points = points[self.usable(points, 3.0)]
            points = points[self._clear(points)][: wanted - len(negatives)]
            negatives += [(p, "noise") for p in points]
        return negatives

    def _pleura(self, n: int) -> np.ndarray:
        which = self.rng.integers(len(self.lungs), size=n)
        centre = np.array([self.lungs[k][0] for k in which])
        axes = np.array([self.lungs[k][1] for k in which])
        u = _unit_rows(self.rng.normal(0, 1, (n, 3)))
        normal = _unit_rows(u / axes)
        return centre + u * axes + normal * self.rng.uniform(-2.0, 1.0, (n, 1))   # on the pleura, +-2 mm

    def _fissure(self, n: int) -> np.ndarray:
        points = np.zeros((n, 3))
        for k, sheet in enumerate(self.fissures[i] for i in self.rng.integers(len(self.fissures), size=n)):
            centre, axes = self.lungs[sheet.lung]
            point = centre + self.rng.uniform(-1, 1, 3) * axes
            point[2] = self.rng.uniform(self.lo[2], self.hi[2]) if sheet.axis == 1 else point[2]
            point[sheet.axis] = sheet.level(*point) + self.rng.normal(0, 0.3)
            if sheet.kind == "horizontal" and not np.isfinite(sheet.distance(point[None], self.oblique[sheet.lung])[0]):
                point[:] = np.nan   # no horizontal fissure behind the oblique one
            points[k] = point
        return points

    def _clear(self, points: np.ndarray) -> np.ndarray:
        """Parenchyma: clear of tubes (by 2 mm) and fissures (by 3 mm)."""
        ok = np.ones(len(points), dtype=bool)
        dist, idx = self.tree.query(points, k=16)
        ok &= np.all(dist > self.sample_r[np.minimum(idx, len(self.samples) - 1)] + 2.0, axis=1)
        for sheet in self.fissures:
            ok &= ~(np.abs(sheet.distance(points, self.oblique[sheet.lung])) < 3.0)
        return ok

    def _along(self, tubes: np.ndarray, n: int, jitter: float) -> np.ndarray:
        if not len(tubes):
            return np.zeros((0, 3))
        chosen = tubes[self.rng.integers(len(tubes), size=n)]
        return _segment_points(chosen, self.rng.uniform(0.15, 0.85, n)) + self.rng.normal(0, jitter, (n, 3))

    def _airway_wall(self, n: int) -> np.ndarray:
        airways = self.airways
        if not len(airways):
            return np.zeros((0, 3))
        weights = airways[:, 6] ** 2   # the larger airways, whose walls a detector sees
        chosen = airways[self.rng.choice(len(airways), size=n, p=weights / weights.sum())]
        axis = _segment_points(chosen, self.rng.uniform(0, 1, n))
        wall = ((chosen[:, 6] + chosen[:, 7]) / 2)[:, None]
        return axis + _perpendicular(self.rng, chosen[:, 3:6] - chosen[:, :3]) * wall

    def _finite(self, pool: np.ndarray, jitter: float) -> Callable[[int], np.ndarray]:
        """Each structure of `pool` once, then again (a second detector's hit), in an order drawn now."""
        order = self.rng.permutation(len(pool))
        state = {"next": 0}

        def draw(n: int) -> np.ndarray:
            if not len(pool):
                return np.zeros((0, 3))
            idx = order[(state["next"] + np.arange(n)) % len(pool)]
            state["next"] += n
            return pool[idx] + self.rng.normal(0, jitter, (n, 3))
        return draw

    def _noise(self, n: int) -> np.ndarray:
        which = self.rng.integers(len(self.lungs), size=n)
        return (np.array([self.lungs[k][0] for k in which])
                + self.rng.uniform(-1, 1, (n, 3)) * np.array([self.lungs[k][1] for k in which]))


def _write_excluded(path: Path, rows: list[tuple[str, np.ndarray]]) -> None:
    """LUNA16's annotations_excluded.csv, with its CRLF line ends; a diameter of -1 is written as -1."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(ANNOTATION_COLUMNS)
        for uid, (x, y, z, d) in rows:
            writer.writerow([uid, repr(float(x)), repr(float(y)), repr(float(z)), "-1" if d < 0 else repr(float(d))])


def _write_kinds(path: Path, rows: list[tuple[str, np.ndarray, int, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["seriesuid", "coordX", "coordY", "coordZ", "class", "kind"])
        for uid, xyz, label, kind in rows:
            writer.writerow([uid, *(repr(float(v)) for v in xyz), label, kind])


# ----------------------------------------------------------------------------------------------------------
# Sites

def generate_site(site_dir: Path, patients: list[PatientSpec], profile: ScannerProfile,
                  rng: np.random.Generator | None = None) -> dict:
    """Write `patients` as one site (scans/, candidates.csv, annotations.csv); returns counts.

    luna16 patients add annotations_excluded.csv (LUNA16's columns and CRLF line ends) and
    candidate_kinds.csv (candidates.csv's rows, in order, with their kind; for analysis only).
    """
    site_dir = Path(site_dir)
    scans = site_dir / "scans"
    if scans.exists():
        shutil.rmtree(scans)   # only what this generator owns; other files in site_dir stay
    scans.mkdir(parents=True)
    rng = rng if rng is not None else np.random.default_rng([patients[0].seed if patients else 0, 0xF1])
    all_candidates, all_annotations, excluded, kinds = [], [], [], []
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
        if patient.anatomy == "luna16":
            rows = luna16_candidates(patient)
            candidates = [Candidate(patient.seriesuid, tuple(float(v) for v in xyz), label, 0)
                          for xyz, label, _ in rows]
            annotations = [Annotation(patient.seriesuid, tuple(float(v) for v in np.round(nodule.center, 2)),
                                      nodule.diameter_mm) for nodule in patient.nodules]
            kinds += [(patient.seriesuid, xyz, label, kind) for xyz, label, kind in rows]
            excluded += [(patient.seriesuid, row) for row in patient.excluded]
        else:
            candidates, annotations = _patient_candidates(patient, volume)
        all_candidates += candidates
        all_annotations += annotations
    write_candidates(site_dir / "candidates.csv", all_candidates)
    write_annotations(site_dir / "annotations.csv", all_annotations)
    counts = {"patients": len(patients), "candidates": len(all_candidates),
              "positives": sum(c.label for c in all_candidates), "nodules": len(all_annotations)}
    if any(p.anatomy == "luna16" for p in patients):
        _write_excluded(site_dir / "annotations_excluded.csv", excluded)
        _write_kinds(site_dir / "candidate_kinds.csv", kinds)
        counts["excluded"] = len(excluded)
    return counts


def _split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder split of n patients by `fractions` (which sum to 1)."""
    raw = np.asarray(fractions, dtype=float) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def generate_federation(out_root: Path, *, size: str = "tiny", seed: int = 0,
                        hospitals: Sequence[str] = ("hospital_a", "hospital_b", "hospital_c"),
                        split: Sequence[float] = (0.4, 0.3, 0.3), n_patients: int | None = None) -> dict[str, Path]:
    """Write one synthetic site per hospital under `out_root`; returns hospital -> site dir.

    The size's patients (`n_patients` of them if given, else the size's count) are dealt to
    `hospitals` in the proportions `split` (one fraction per hospital); each site is
    ``out_root/<hospital>/{scans/, candidates.csv, annotations.csv}`` (luna16: and
    annotations_excluded.csv, candidate_kinds.csv). The luna16 size uses LUNA16_PROFILES.
    """
    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    if n_patients is not None and (isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer))
                                   or n_patients < 1):
        raise ConfigError(f"n_patients must be a whole number of patients >= 1, not {n_patients!r}")
    unknown = [h for h in hospitals if h not in HOSPITAL_PROFILES]
    if unknown:
        raise ConfigError(f"unknown hospital(s) {', '.join(unknown)}; choose from {', '.join(HOSPITAL_PROFILES)}")
    if len(split) != len(hospitals) or any(f < 0 for f in split) or abs(sum(split) - 1) > 1e-6:
        raise ConfigError(f"split must give one fraction >= 0 per hospital, summing to 1; got {tuple(split)} "
                          f"for {len(hospitals)} hospital(s)")
    patients = make_patients(size, seed, n_patients)
    profiles = LUNA16_PROFILES if SIZES[size].anatomy == "luna16" else HOSPITAL_PROFILES
    out_root = Path(out_root)
    sites, start = {}, 0
    for hospital, count in zip(hospitals, _split_counts(len(patients), split)):
        site_dir = out_root / hospital
        t0 = time.perf_counter()
        counts = generate_site(site_dir, patients[start:start + count], profiles[hospital],
                               rng=np.random.default_rng([seed, start, 0xF1]))
        logger.info("%s: %s in %.1f s", hospital, counts, time.perf_counter() - t0)
        sites[hospital] = site_dir
        start += count
    return sites
