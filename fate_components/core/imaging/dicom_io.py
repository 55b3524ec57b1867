"""Reading and writing CT series stored as one DICOM file per slice.

Reading never trusts file names, InstanceNumber or SliceThickness for geometry: slices are
ordered by the projection of ImagePositionPatient on the slice normal, and the slice spacing
is measured from those positions. Compressed transfer syntaxes are decoded by pydicom's pixel
handlers (pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, python-gdcm).
"""
from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, RLELossless, generate_uid

from fate_components.core.errors import ScanReadError, WrongModalityError, display_path
from fate_components.core.imaging.hounsfield import check_hounsfield
from fate_components.core.imaging.volume import Volume

__all__ = ["read_dicom_series", "write_dicom_series", "dicom_series_in", "looks_like_dicom", "describe_dicom_folder",
           "CHOOSE_SERIES_HINT",
           "CT_IMAGE_STORAGE", "ENHANCED_CT_IMAGE_STORAGE", "TRANSFER_SYNTAX_ALIASES"]

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
TRANSFER_SYNTAX_ALIASES = {"rle": RLELossless, "jpeg2000-lossless": JPEG2000Lossless,
                           "jpeg-lossless": JPEGLosslessSV1, "uncompressed": ExplicitVRLittleEndian}
# Files every DICOM export tool or desktop leaves lying around; never slices.
_IGNORED_NAMES = {"DICOMDIR", "Thumbs.db", "desktop.ini", "LOCKFILE", "VERSION"}
_ORIENTATION_TOLERANCE = 1e-4   # direction cosines are written as decimal strings
_POSITION_TOLERANCE_MM = 1e-3
_DICOM_MIN_BYTES = 132          # 128-byte preamble + "DICM"; no slice with its pixels is shorter
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")


def _dir_display(directory: Path, site_root: Path | None) -> str:
    """``scans/case_017/`` (relative to the site root) or ``case_017/`` without one."""
    if site_root is not None and directory.resolve().is_relative_to(Path(site_root).resolve()):
        return display_path(directory, site_root).rstrip("/") + "/"
    return f"{directory.name}/"


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _is_text(path: Path) -> bool:
    """A short note (printable UTF-8), as opposed to the first bytes of a binary DICOM file."""
    try:
        text = path.read_bytes()[:_DICOM_MIN_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(text) and all(c.isprintable() or c.isspace() for c in text)


def looks_like_dicom(path: Path) -> bool:
    """Cheap test used when indexing a site: a DICOM preamble or a .dcm name."""
    return path.suffix.lower() == ".dcm" or _has_dicom_preamble(path)


def _candidate_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name not in _IGNORED_NAMES)


def _is_image_storage(ds: Dataset) -> bool:
    sop_class = ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    return sop_class is not None and "Image Storage" in UID(str(sop_class)).name


@dataclass
class _Slice:
    path: Path
    ds: Dataset
    frame: int | None = None            # 0-based frame of a multi-frame file
    pixels: np.ndarray | None = None    # that frame's stored values, decoded with the file

    def shown(self, site_root: Path | None) -> str:
        return display_path(self.path, site_root) + ("" if self.frame is None else f" frame {self.frame + 1}")

    @property
    def name(self) -> str:
        return self.path.name + ("" if self.frame is None else f" frame {self.frame + 1}")


def _read_headers(directory: Path, site_root: Path | None, *, with_pixels: bool,
                  tolerant: bool = False) -> tuple[list[_Slice], list[str]]:
    """Parse every file in `directory`; returns the image slices and the names of skipped files.

    `tolerant` skips files that claim to be DICOM but are corrupt instead of raising (used when
    indexing a site: the error is raised, with its message, when that scan is read).
    """
    slices, skipped = [], []
    for path in _candidate_files(directory):
        try:
            ds = _read_one(path, site_root, with_pixels)
        except ScanReadError:
            if not tolerant:
                raise
            skipped.append(path.name)
            continue
        if ds is None:
            skipped.append(path.name)
            continue
        slices.append(_Slice(path, ds))
    return slices, skipped


def _read_one(path: Path, site_root: Path | None, with_pixels: bool) -> Dataset | None:
    """The parsed slice, None for a file that is not a CT slice, ScanReadError for a corrupt one."""
    shown = display_path(path, site_root)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not with_pixels)
    except InvalidDicomError as exc:
        if looks_like_dicom(path):
            raise ScanReadError(f"{shown}: corrupt DICOM slice ({exc}); re-export or remove the file") from exc
        size = path.stat().st_size
        if path.suffix == "" and size < _DICOM_MIN_BYTES and not _is_text(path):
            # PACS exports name slices without extension; a binary one cut short of its preamble is a
            # lost slice, not a stray note (skipping it would report a "missing slice" elsewhere).
            raise ScanReadError(f"{shown}: truncated DICOM slice ({size} bytes, too short to be DICOM: a slice "
                                f"has at least a {_DICOM_MIN_BYTES}-byte preamble and header); copy the file "
                                f"again from the source, or remove it if it is not a slice") from exc
        return None   # no preamble and no .dcm name: not DICOM (notes, thumbnails, ...)
    except Exception as exc:  # pydicom raises many types on a damaged file
        raise ScanReadError(f"{shown}: corrupt DICOM slice ({type(exc).__name__}: {exc}); "
                            f"re-export or remove the file") from exc
    image_like = "ImagePositionPatient" in ds or "PixelData" in ds or _is_image_storage(ds)
    if not image_like:
        return None   # a DICOM object without an image (report, presentation state)
    if with_pixels and "PixelData" not in ds:
        raise ScanReadError(f"{shown}: corrupt DICOM slice (no pixel data; file truncated?); "
                            f"re-export or remove the file")
    if ds.get("ImageType") is not None and "LOCALIZER" in [str(t).upper() for t in ds.ImageType]:
        return None   # scout views share the series but are not axial slices
    return ds


def _series_key(ds: Dataset, directory: Path) -> str:
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    return uid or directory.name


def dicom_series_in(directory: Path, site_root: Path | None = None) -> dict[str, list[Path]]:
    """SeriesInstanceUID -> files, from headers only (pixels are not read).

    Files without a SeriesInstanceUID are grouped under the folder name (see read_dicom_series).
    Corrupt files are left out here; reading the series reports them.
    """
    slices, _ = _read_headers(directory, site_root, with_pixels=False, tolerant=True)
    return {uid: [s.path for s in group] for uid, group in _group_by_series(slices, directory).items()}


def _group_by_series(slices: list[_Slice], directory: Path) -> dict[str, list[_Slice]]:
    """Series key (SeriesInstanceUID, else the folder name) -> its slices, in file order."""
    groups: dict[str, list[_Slice]] = defaultdict(list)
    for s in slices:
        groups[_series_key(s.ds, directory)].append(s)
    return dict(groups)


def _floats(ds: Dataset, keyword: str, count: int, shown: str) -> np.ndarray:
    value = ds.get(keyword)
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else None
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != (count,) or not np.all(np.isfinite(array)):
        raise ScanReadError(f"{shown}: {keyword} is {value!r}, expected {count} numbers; "
                            f"this slice cannot be placed in the patient frame")
    return array


def _fmt(x: float) -> str:
    return f"{x:.1f}" if abs(x - round(x, 1)) < 1e-6 else f"{x:.3f}"


def read_dicom_series(directory: Path, *, series_uid: str | None = None, site_root: Path | None = None) -> Volume:
    """Read the CT series in one folder (not recursive) as a Volume in HU.

    - Every regular file is tried, with or without a ``.dcm`` extension. A file that pydicom
      rejects as non-DICOM and that has neither a DICOM preamble nor a ``.dcm`` name is skipped
      (and logged); a file that claims to be DICOM but cannot be parsed or decoded is an error.
      Localizer (scout) images and image-less DICOM objects are skipped too.
    - Files are grouped by SeriesInstanceUID. Files whose SeriesInstanceUID is missing or
      empty form one series whose uid is the folder name; the returned Volume carries that
      fallback in ``series_uid``. With several series, ``series_uid`` picks one.
    - Modality must be CT. Slices are sorted by the projection of ImagePositionPatient on
      the slice normal (row cosine x column cosine); the k axis of the Volume points along
      increasing position. Missing, duplicate or irregular slices are errors.
    - Pixels are converted to HU with each slice's RescaleSlope/RescaleIntercept (1/0 when absent),
      and the result must pass `check_hounsfield` (plausible CT in HU; see hounsfield.py).
    - An extension-less binary (not text) file too short to be DICOM is a truncated slice, an error.
    - An enhanced CT file (one file, many frames, SOP class 1.2.840.10008.5.1.4.1.1.2.1) is read
      frame by frame from its per-frame and shared functional groups, like a folder of slices.
    """
    directory = Path(directory)
    where = _dir_display(directory, site_root)
    if not directory.is_dir():
        raise ScanReadError(f"{where}: not a folder; expected a folder of DICOM slices")
    slices, skipped = _read_headers(directory, site_root, with_pixels=True)
    if skipped:
        logger.info("%s: skipped %d non-slice file(s): %s", where, len(skipped), ", ".join(skipped[:5]))
    if not slices:
        raise ScanReadError(f"{where}: no DICOM slices found" + (
            f" ({len(skipped)} non-DICOM file(s) skipped, e.g. {skipped[0]})" if skipped else "") +
            "; put one series of CT slices (.dcm or DICOM files without extension) in this folder")

    groups = _group_by_series(slices, directory)
    if series_uid is not None:
        if series_uid not in groups:
            raise ScanReadError(f"{where}: series {series_uid} not found (found {_describe_series(groups)})")
        chosen_uid = series_uid
    elif len(groups) > 1:
        raise ScanReadError(f"{where}: {len(groups)} DICOM series found ({_describe_series(groups)}); "
                            f"{CHOOSE_SERIES_HINT}")
    else:
        chosen_uid = next(iter(groups))
    if chosen_uid == directory.name and not any(str(s.ds.get("SeriesInstanceUID", "") or "").strip()
                                                 for s in groups[chosen_uid]):
        logger.warning("%s: slices have no SeriesInstanceUID; using the folder name %r as series uid",
                       where, chosen_uid)
    series = [frame for s in groups[chosen_uid] for frame in _frames(s, site_root)]
    return _assemble(series, chosen_uid, where, site_root)


CHOOSE_SERIES_HINT = ("choose one by writing its SeriesInstanceUID (not the folder name) in the seriesuid column "
                      "of candidates.csv and annotations.csv; from Python, read_dicom_series(..., series_uid=...)")


def _describe_series(groups: dict[str, list[_Slice]]) -> str:
    """``1.2.3.100 (120 slices), 1.2.3.200 (3 slices)``; a multi-frame file counts its frames."""
    def count(slices: list[_Slice]) -> int:
        return sum(int(s.ds.get("NumberOfFrames", 1) or 1) for s in slices)
    return ", ".join(f"{uid} ({count(slices)} slices)" for uid, slices in sorted(groups.items()))


def describe_dicom_folder(directory: Path, site_root: Path | None = None) -> str:
    """The series of a folder with their slice counts, from headers only, for messages."""
    slices, _ = _read_headers(Path(directory), site_root, with_pixels=False, tolerant=True)
    return _describe_series(_group_by_series(slices, Path(directory)))


def _functional_group(ds: Dataset, frame_groups: Dataset | None, sequence: str, keyword: str):
    """`keyword` of the frame's functional group `sequence`, else of the shared one (DICOM PS3.3 C.7.6.16)."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    for groups in (frame_groups, shared[0] if shared else None):
        items = groups.get(sequence) if groups is not None else None
        if items and keyword in items[0]:
            return items[0][keyword].value
    return None


def _frames(s: _Slice, site_root: Path | None) -> list[_Slice]:
    """A single-frame slice as is; a multi-frame (enhanced CT) file as one _Slice per frame.

    Each frame gets a small dataset with the classic attributes _assemble reads (position,
    orientation, pixel spacing, rescale), taken from its per-frame functional groups or the shared
    ones, so both kinds of series go through the same ordering and geometry checks.
    """
    n_frames = int(s.ds.get("NumberOfFrames", 1) or 1)
    if n_frames == 1 and "PerFrameFunctionalGroupsSequence" not in s.ds:
        return [s]
    shown = display_path(s.path, site_root)
    per_frame = s.ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != n_frames:
        raise ScanReadError(f"{shown}: multi-frame file with {n_frames} frames but "
                            f"{0 if per_frame is None else len(per_frame)} per-frame functional groups; only "
                            f"enhanced CT (SOP class {ENHANCED_CT_IMAGE_STORAGE}) multi-frame files can be read; "
                            f"convert it to one file per slice, e.g. with dcm2niix or gdcmconv --split")
    try:
        pixels = s.ds.pixel_array
    except Exception as exc:  # decoders raise assorted types on damaged or truncated data
        raise ScanReadError(f"{shown}: corrupt DICOM file (pixel data cannot be decoded: {exc}); "
                            f"re-export or remove the file") from exc
    if n_frames == 1:
        pixels = pixels[np.newaxis]
    frames = []
    for n, groups in enumerate(per_frame):
        fds = Dataset()
        for keyword in ("Modality", "Rows", "Columns", "SamplesPerPixel", "SeriesInstanceUID"):
            if keyword in s.ds:
                fds[keyword] = s.ds[keyword]
        for sequence, keyword in (("PlanePositionSequence", "ImagePositionPatient"),
                                  ("PlaneOrientationSequence", "ImageOrientationPatient"),
                                  ("PixelMeasuresSequence", "PixelSpacing"),
                                  ("PixelValueTransformationSequence", "RescaleSlope"),
                                  ("PixelValueTransformationSequence", "RescaleIntercept")):
            value = _functional_group(s.ds, groups, sequence, keyword)
            if value is not None:
                setattr(fds, keyword, value)
        frames.append(_Slice(s.path, fds, frame=n, pixels=pixels[n]))
    return frames


def _assemble(series: list[_Slice], uid: str, where: str, site_root: Path | None) -> Volume:
    for s in series:
        modality = str(s.ds.get("Modality", "") or "").strip()
        if modality != "CT":
            found = f"'{modality}'" if modality else "missing"
            raise WrongModalityError(f"{s.shown(site_root)}: modality is {found}, expected 'CT'; "
                                     f"only CT series can be read")
    first = series[0]
    first_shown = first.shown(site_root)
    orientation = _floats(first.ds, "ImageOrientationPatient", 6, first_shown)
    row_cos, col_cos = orientation[:3], orientation[3:]
    normal = np.cross(row_cos, col_cos)
    if np.linalg.norm(normal) < 0.5:
        raise ScanReadError(f"{first_shown}: ImageOrientationPatient {orientation.tolist()} has parallel row and "
                            f"column directions")
    normal /= np.linalg.norm(normal)
    pixel_spacing = _floats(first.ds, "PixelSpacing", 2, first_shown)
    if np.any(pixel_spacing <= 0):
        raise ScanReadError(f"{first_shown}: PixelSpacing {pixel_spacing.tolist()} must be positive")
    rows, cols = int(first.ds.get("Rows", 0)), int(first.ds.get("Columns", 0))

    positions = []
    for s in series:
        shown = s.shown(site_root)
        o = _floats(s.ds, "ImageOrientationPatient", 6, shown)
        if np.max(np.abs(o - orientation)) > _ORIENTATION_TOLERANCE:
            raise ScanReadError(f"{where}: inconsistent series: {shown} has ImageOrientationPatient {o.tolist()}, "
                                f"{first_shown} has {orientation.tolist()}")
        ps = _floats(s.ds, "PixelSpacing", 2, shown)
        if np.max(np.abs(ps - pixel_spacing)) > 1e-4:
            raise ScanReadError(f"{where}: inconsistent series: {shown} has PixelSpacing {ps.tolist()}, "
                                f"{first_shown} has {pixel_spacing.tolist()}")
        if (int(s.ds.get("Rows", 0)), int(s.ds.get("Columns", 0))) != (rows, cols):
            raise ScanReadError(f"{where}: inconsistent series: {shown} is {s.ds.get('Rows')}x{s.ds.get('Columns')} "
                                f"pixels, {first_shown} is {rows}x{cols}")
        positions.append(_floats(s.ds, "ImagePositionPatient", 3, shown))
    positions = np.asarray(positions)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    series = [series[i] for i in order]
    positions, along = positions[order], along[order]

    if len(series) < 2:
        raise ScanReadError(f"{where}: series {uid} has 1 slice; a CT volume needs at least 2")
    gaps = np.diff(along)
    dup = np.flatnonzero(gaps < _POSITION_TOLERANCE_MM)
    if dup.size:
        a, b = series[dup[0]], series[dup[0] + 1]
        raise ScanReadError(f"{where}: duplicate slice position z={_fmt(along[dup[0]])} mm in "
                            f"{a.name} and {b.name}; remove the duplicate file")
    spacing_z = float(np.median(gaps))
    for n, gap in enumerate(gaps):
        if gap > 1.5 * spacing_z:
            raise ScanReadError(f"{where}: missing slice between z={_fmt(along[n])} mm and z={_fmt(along[n + 1])} mm "
                                f"(gap {_fmt(gap)} mm, expected {_fmt(spacing_z)} mm)")
        if abs(gap - spacing_z) > max(0.1 * spacing_z, 2 * _POSITION_TOLERANCE_MM):
            raise ScanReadError(f"{where}: irregular slice spacing: gap {_fmt(gap)} mm between z={_fmt(along[n])} mm "
                                f"and z={_fmt(along[n + 1])} mm, most gaps are {_fmt(spacing_z)} mm")
    # Slices must stack straight along the normal; a tilted gantry shears the volume.
    in_plane = (positions - positions[0]) - np.outer(along - along[0], normal)
    if np.max(np.abs(in_plane)) > 0.25 * float(np.min(pixel_spacing)) + 0.01:
        raise ScanReadError(f"{where}: slices are shifted in-plane by up to {np.max(np.abs(in_plane)):.2f} mm "
                            f"(gantry tilt?); sheared series are not supported, resample to an orthogonal grid")

    array = np.empty((len(series), rows, cols), dtype=np.float32)
    rescales = set()
    for n, s in enumerate(series):
        shown = s.shown(site_root)
        if int(s.ds.get("SamplesPerPixel", 1)) != 1 or int(s.ds.get("NumberOfFrames", 1) or 1) != 1:
            raise ScanReadError(f"{shown}: expected a single-frame grey-level slice, found SamplesPerPixel="
                                f"{s.ds.get('SamplesPerPixel')}, NumberOfFrames={s.ds.get('NumberOfFrames')}")
        try:
            pixels = s.ds.pixel_array if s.pixels is None else s.pixels
        except Exception as exc:  # decoders raise assorted types on damaged or truncated data
            raise ScanReadError(f"{shown}: corrupt DICOM slice (pixel data cannot be decoded: {exc}); "
                                f"re-export or remove the file") from exc
        if pixels.shape != (rows, cols):
            raise ScanReadError(f"{shown}: corrupt DICOM slice (pixel array {pixels.shape}, expected {(rows, cols)})")
        slope = float(s.ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(s.ds.get("RescaleIntercept", 0.0) or 0.0)
        rescales.add((_fmt(slope), _fmt(intercept)))
        array[n] = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        s.ds, s.pixels = None, None  # free the file's bytes as we go
    found = "; ".join(f"RescaleSlope {a}, RescaleIntercept {b}" for a, b in sorted(rescales)[:3])
    check_hounsfield(array, where, f"HU = stored value x RescaleSlope + RescaleIntercept, and these slices have "
                                   f"{found} (a missing tag counts as 1 and 0); air must come out near -1000: "
                                   f"correct the rescale tags (CT stores HU + 1024 with RescaleIntercept -1024) "
                                   f"or re-export the series from the scanner or PACS")

    direction = np.column_stack([row_cos, col_cos, normal])
    # DICOM PixelSpacing is [row spacing (between rows, y), column spacing (between columns, x)].
    spacing = (float(pixel_spacing[1]), float(pixel_spacing[0]), spacing_z)
    return Volume(array_hu=array, spacing_mm=spacing, origin_mm=tuple(positions[0]), direction=direction,
                  source=where, series_uid=uid)


# ----------------------------------------------------------------------------------------------------------
# Writing

FileNames = Literal["numbered", "random", "dcm"]


def _file_name(style: str, k: int, rng: np.random.Generator, used: set[str]) -> str:
    if style == "dcm":
        return f"slice_{k + 1:04d}.dcm"
    if style == "numbered":
        return f"IM{k + 1:04d}"
    if style == "random":   # like many PACS exports: opaque names, no extension
        while True:
            name = "".join(rng.choice(list("0123456789ABCDEF"), size=8))
            if name not in used:
                used.add(name)
                return name
    raise ValueError(f"file_names must be 'dcm', 'numbered' or 'random', not {style!r}")


def _ds_number(x: float) -> str:
    """A DICOM DS (decimal string, at most 16 characters) as exact as fits."""
    for digits in range(10, 0, -1):
        text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
        if len(text) <= 16:
            return "0" if text in ("-0", "") else text
    raise ValueError(f"{x} does not fit a DICOM decimal string")


def _slice_dataset(volume: Volume, k: int, uids: dict[str, str], patient_id: str, stored: np.ndarray) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[uids["series"], "sop", str(k)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.PatientName = "Anonymous"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = k + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    d = volume.direction
    sx, sy, sz = volume.spacing_mm
    position = np.asarray(volume.origin_mm) + d[:, 2] * sz * k
    ds.ImagePositionPatient = [_ds_number(v) for v in position]
    ds.ImageOrientationPatient = [_ds_number(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
    ds.PixelSpacing = [_ds_number(sy), _ds_number(sx)]     # [row spacing, column spacing]
    ds.SliceThickness = _ds_number(sz)
    normal = np.cross(d[:, 0], d[:, 1])
    ds.SliceLocation = _ds_number(float(position @ normal))
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    ds.PixelData = stored.tobytes()
    return ds


def _compress(ds: Dataset, stored: np.ndarray, syntax: UID) -> None:
    if syntax == ExplicitVRLittleEndian:
        return
    if syntax in (RLELossless, JPEG2000Lossless):
        # Lossless: the slice stays the same instance, and a fresh UID would break determinism.
        ds.compress(syntax, stored, generate_instance_uid=False)
        return
    if syntax == JPEGLosslessSV1:
        # pydicom has no JPEG Lossless encoder; GDCM has one. It works on files, hence the round trip.
        import gdcm

        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
            ds.save_as(src, enforce_file_format=True)
            reader = gdcm.ImageReader()
            reader.SetFileName(str(src))
            if not reader.Read():
                raise RuntimeError("GDCM could not read the slice to compress")
            change = gdcm.ImageChangeTransferSyntax()
            change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
            change.SetInput(reader.GetImage())
            if not change.Change():
                raise RuntimeError("GDCM could not encode JPEG Lossless")
            writer = gdcm.ImageWriter()
            writer.SetFileName(str(dst))
            writer.SetFile(reader.GetFile())
            writer.SetImage(change.GetOutput())
            if not writer.Write():
                raise RuntimeError("GDCM could not write the JPEG Lossless slice")
            encoded = pydicom.dcmread(dst)
        ds.PixelData = encoded.PixelData
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        return
    raise ValueError(f"transfer_syntax {syntax!r} cannot be written; use one of "
                     f"{sorted(TRANSFER_SYNTAX_ALIASES)} or their UIDs")


def write_dicom_series(volume: Volume, directory: Path, *, series_uid: str, study_uid: str | None = None,
                       patient_id: str = "anon", file_names: FileNames = "dcm", transfer_syntax: str | None = None,
                       rng: np.random.Generator | None = None) -> list[Path]:
    """Write `volume` as DICOM CT Image Storage files, one per k slice, in `directory`.

    Slice k is placed at origin + k * spacing_z * direction[:, 2]. Pixels are stored as
    int16 = round(HU) + 1024 with RescaleIntercept -1024. UIDs derive deterministically from
    `series_uid`, so the same call writes the same bytes. A left-handed direction (e.g. a
    flipped z axis) is written faithfully; reading it back gives the same world geometry with
    the k axis reversed, because readers stack slices along row x column cosine.
    `transfer_syntax`: None (uncompressed), a UID, or an alias in TRANSFER_SYNTAX_ALIASES.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    syntax = UID(TRANSFER_SYNTAX_ALIASES.get(transfer_syntax, transfer_syntax) if transfer_syntax else
                 ExplicitVRLittleEndian)
    if syntax not in (ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGLosslessSV1):
        raise ValueError(f"transfer_syntax {transfer_syntax!r} cannot be written; use one of "
                         f"{sorted(TRANSFER_SYNTAX_ALIASES)} or their UIDs")
    if rng is None:
        rng = np.random.default_rng(int.from_bytes(series_uid.encode()[-8:], "little"))
    uids = {"series": series_uid,
            "study": study_uid or generate_uid(entropy_srcs=[series_uid, "study"]),
            "frame": generate_uid(entropy_srcs=[series_uid, "frame-of-reference"])}
    stored_all = np.clip(np.rint(volume.array_hu) + 1024, -32768, 32767).astype(np.int16)
    paths, used = [], set()
    for k in range(stored_all.shape[0]):
        stored = np.ascontiguousarray(stored_all[k])
        ds = _slice_dataset(volume, k, uids, patient_id, stored)
        _compress(ds, stored, syntax)
        path = directory / _file_name(file_names, k, rng, used)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
