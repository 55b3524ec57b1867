"""MetaImage (.mhd header + .raw voxels) reading and writing, the format LUNA16 ships."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fate_components.core.errors import ScanReadError, display_path
from fate_components.core.imaging.volume import Volume, volume_from_sitk, volume_to_sitk

__all__ = ["read_metaimage", "write_metaimage"]

_BYTES_PER_ELEMENT = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
                      "MET_UINT": 4, "MET_LONG": 8, "MET_ULONG": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
                      "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _header(path: Path, shown: str) -> dict[str, str]:
    try:
        text = path.read_bytes()[:65536].decode("latin-1")
    except OSError as exc:
        raise ScanReadError(f"{shown}: cannot read MetaImage header ({exc.strerror})") from exc
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break   # in a .mha the voxels follow this line
    return fields


def _check_data_file(path: Path, shown: str, site_root: Path | None) -> None:
    """Fail with a readable message before SimpleITK does with a cryptic one."""
    fields = _header(path, shown)
    data_name = fields.get("ElementDataFile")
    if data_name is None:
        raise ScanReadError(f"{shown}: not a MetaImage header (no ElementDataFile line)")
    if data_name == "LOCAL" or data_name.startswith("LIST") or "%" in data_name:
        return
    data_path = path.parent / data_name
    data_shown = display_path(data_path, site_root)
    if not data_path.is_file():
        raise ScanReadError(f"{shown}: voxel file {data_shown} is missing; copy the .raw file next to the .mhd")
    if fields.get("CompressedData", "False").lower() == "true":
        return
    try:
        dims = [int(v) for v in fields.get("DimSize", "").split()]
        per_voxel = _BYTES_PER_ELEMENT[fields.get("ElementType", "")] * int(fields.get("ElementNumberOfChannels", "1"))
    except (ValueError, KeyError):
        return  # let SimpleITK judge an unusual header
    expected = int(np.prod(dims)) * per_voxel
    found = data_path.stat().st_size
    if found < expected:
        raise ScanReadError(f"{shown}: voxel file {data_shown} is truncated: {found} bytes, expected {expected} "
                            f"for DimSize {' '.join(map(str, dims))}; copy the file again")


def read_metaimage(path: Path, *, site_root: Path | None = None) -> Volume:
    """Read a .mhd/.mha CT scan (HU voxels) as a Volume; the seriesuid is the file stem (LUNA16)."""
    import SimpleITK as sitk

    path = Path(path)
    shown = display_path(path, site_root)
    if not path.is_file():
        raise ScanReadError(f"{shown}: file not found")
    _check_data_file(path, shown, site_root)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        reason = next((line.strip() for line in reversed(detail) if line.strip()), "unknown error")
        raise ScanReadError(f"{shown}: cannot read MetaImage ({reason[:200]})") from exc
    return volume_from_sitk(image, source=shown, series_uid=path.stem)


def write_metaimage(volume: Volume, path: Path) -> Path:
    """Write `volume` as int16 HU .mhd + .raw (uncompressed, like LUNA16); returns the .mhd path."""
    import SimpleITK as sitk

    path = Path(path)
    if path.suffix.lower() != ".mhd":
        raise ValueError(f"write_metaimage writes .mhd files, not {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume_to_sitk(volume, "int16"), str(path), useCompression=False)
    return path
