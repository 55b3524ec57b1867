"""MetaImage (.mhd header + .raw voxels) reading and writing, the format LUNA16 ships."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fate_components.core.errors import ScanReadError, display_path
from fate_components.core.imaging.hounsfield import check_hounsfield
from fate_components.core.imaging.volume import Volume, volume_from_sitk, volume_to_sitk

__all__ = ["read_metaimage", "write_metaimage"]

_BYTES_PER_ELEMENT = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
                      "MET_UINT": 4, "MET_LONG": 8, "MET_ULONG": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
                      "MET_FLOAT": 4, "MET_DOUBLE": 8}
_UNSIGNED = {"MET_UCHAR", "MET_USHORT", "MET_UINT", "MET_ULONG", "MET_ULONG_LONG"}


_HEAD_BYTES = 65536   # a MetaImage header is a few hundred bytes; a .mha's voxels follow it in the same file


def _head(path: Path) -> bytes:
    """The file's first bytes, where the header is (reading a whole .mha would read every voxel)."""
    with open(path, "rb") as f:
        return f.read(_HEAD_BYTES)


def _header(path: Path, shown: str) -> dict[str, str]:
    try:
        text = _head(path).decode("latin-1")
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


def _header_bytes(path: Path) -> int:
    """Length of the text header of a .mha (ElementDataFile = LOCAL): the voxels start after its line."""
    head = _head(path)
    at = head.find(b"ElementDataFile")
    end = head.find(b"\n", at)
    return len(head) if at < 0 or end < 0 else end + 1


def _check_data_file(path: Path, shown: str, site_root: Path | None) -> dict[str, str]:
    """Fail with a readable message before SimpleITK does with a cryptic one; returns the header fields.

    An uncompressed voxel file must hold exactly DimSize x element size bytes (plus HeaderSize):
    a shorter one is truncated, a longer one is not the file the header describes (SimpleITK would
    read its first bytes silently).
    """
    fields = _header(path, shown)
    data_name = fields.get("ElementDataFile")
    if data_name is None:
        raise ScanReadError(f"{shown}: not a MetaImage header (no ElementDataFile line)")
    if data_name.startswith("LIST") or "%" in data_name:
        return fields
    data_path = path if data_name == "LOCAL" else path.parent / data_name
    data_shown = display_path(data_path, site_root)
    if not data_path.is_file():
        raise ScanReadError(f"{shown}: voxel file {data_shown} is missing; copy the .raw file next to the .mhd")
    if fields.get("CompressedData", "False").lower() == "true":
        return fields
    try:
        dims = [int(v) for v in fields.get("DimSize", "").split()]
        per_voxel = _BYTES_PER_ELEMENT[fields.get("ElementType", "")] * int(fields.get("ElementNumberOfChannels", "1"))
        header_size = int(fields.get("HeaderSize", "0"))
    except (ValueError, KeyError):
        return fields  # let SimpleITK judge an unusual header
    expected = int(np.prod(dims)) * per_voxel
    found = data_path.stat().st_size
    if data_name == "LOCAL":
        found -= _header_bytes(path)
        what = f"{shown}: the voxels after the header"
    else:
        what = f"{shown}: voxel file {data_shown}"
    if header_size > 0:
        found -= header_size
    layout = f"DimSize {' '.join(map(str, dims))}, ElementType {fields.get('ElementType')}"
    if found < expected:
        raise ScanReadError(f"{what} is truncated: {found} bytes, expected {expected} for {layout}; "
                            f"copy the file again")
    if found > expected and header_size != -1:   # HeaderSize = -1: the voxels are the file's last bytes
        raise ScanReadError(f"{what} is too long: {found} bytes, expected {expected} for {layout}; the header "
                            f"does not describe this file: correct DimSize/ElementType or copy the matching file")
    return fields


def _hu_fix(fields: dict[str, str]) -> str:
    element = fields.get("ElementType", "?")
    if element in _UNSIGNED:
        span = 1 << (8 * _BYTES_PER_ELEMENT[element])   # an unsigned type's 2^bits: -1000 is stored as span - 1000
        return (f"ElementType is {element} (unsigned), so HU below 0 wrapped around (air -1000 reads as "
                f"{span - 1000}); convert the scan to signed HU (ElementType MET_SHORT, air -1000), e.g. subtract "
                f"{span} from values above {span // 2 - 1}")
    return (f"the voxels (ElementType {element}) must be HU, air -1000 and water 0; if air reads near 0 the "
            f"scanner offset (usually 1024) was not subtracted: convert the scan to HU first")


def read_metaimage(path: Path, *, site_root: Path | None = None) -> Volume:
    """Read a .mhd/.mha CT scan (HU voxels) as a Volume; the seriesuid is the file stem (LUNA16).

    The voxel file must have exactly the size the header gives, and the voxels must pass
    `check_hounsfield` (plausible CT in HU; see fate_components/core/imaging/hounsfield.py).
    """
    import SimpleITK as sitk

    path = Path(path)
    shown = display_path(path, site_root)
    if not path.is_file():
        raise ScanReadError(f"{shown}: file not found")
    fields = _check_data_file(path, shown, site_root)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        reason = next((line.strip() for line in reversed(detail) if line.strip()), "unknown error")
        raise ScanReadError(f"{shown}: cannot read MetaImage ({reason[:200]})") from exc
    volume = volume_from_sitk(image, source=shown, series_uid=path.stem)
    check_hounsfield(volume.array_hu, shown, _hu_fix(fields))
    return volume


def write_metaimage(volume: Volume, path: Path) -> Path:
    """Write `volume` as int16 HU .mhd + .raw (uncompressed, like LUNA16); returns the .mhd path."""
    import SimpleITK as sitk

    path = Path(path)
    if path.suffix.lower() != ".mhd":
        raise ValueError(f"write_metaimage writes .mhd files, not {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume_to_sitk(volume, "int16"), str(path), useCompression=False)
    return path
