"""A CT volume in Hounsfield units together with its place in the world (patient) frame.

Conventions are those of DICOM, ITK and LUNA16: world coordinates are LPS millimetres, and
``world = origin + direction @ (index * spacing)`` with ``index = (i, j, k)`` in (x, y, z)
index order. The array is stored [z, y, x] (k, j, i), as SimpleITK's GetArrayFromImage gives it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fate_components.core.errors import ScanReadError

__all__ = ["Volume", "volume_from_sitk", "volume_to_sitk"]


def _where(source: str, series_uid: str) -> str:
    parts = [p for p in (source, f"seriesuid {series_uid}" if series_uid else "") if p]
    return f"{', '.join(parts)}: " if parts else ""


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D CT scan: HU array plus geometry. Invalid geometry raises ScanReadError.

    ScanReadError (not ConfigError) because a bad geometry comes from a scan's headers, and the
    patch-dataset builder skips unreadable scans by catching ScanReadError.
    """

    array_hu: np.ndarray                     # [z, y, x] Hounsfield units: int16 as stored, else float32
    spacing_mm: tuple[float, float, float]   # (x, y, z) voxel spacing
    origin_mm: tuple[float, float, float]    # world (x, y, z) of the centre of voxel (0, 0, 0)
    direction: np.ndarray                    # 3x3, columns = world directions of index axes i, j, k
    source: str = ""                         # path relative to the site root, for messages
    series_uid: str = ""                     # SeriesInstanceUID (or the fallback used), for messages
    _index_to_world: np.ndarray = field(init=False, repr=False)
    _world_to_index: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        where = _where(self.source, self.series_uid)
        array = np.asarray(self.array_hu)
        if array.ndim != 3:
            raise ScanReadError(f"{where}a CT volume must be a 3-D array, not {array.ndim}-D {array.shape}")
        # int16 HU (LUNA16's MetaImages) stay int16: a float32 copy of a 512x512x300 scan costs 300 MB
        # and more time than reading it; patches convert only the small block they sample.
        if array.dtype not in (np.float32, np.int16):
            array = array.astype(np.float32)
        direction = np.asarray(self.direction, dtype=np.float64)
        if direction.shape != (3, 3):
            raise ScanReadError(f"{where}Direction must be a 3x3 matrix, not {direction.shape}")
        spacing = tuple(float(s) for s in np.asarray(self.spacing_mm, dtype=np.float64).reshape(-1))
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ScanReadError(f"{where}spacing must be 3 positive numbers (x, y, z) in mm, not {self.spacing_mm!r}")
        origin = tuple(float(o) for o in np.asarray(self.origin_mm, dtype=np.float64).reshape(-1))
        if len(origin) != 3 or not all(np.isfinite(o) for o in origin):
            raise ScanReadError(f"{where}origin must be 3 finite numbers (x, y, z) in mm, not {self.origin_mm!r}")
        index_to_world = direction @ np.diag(spacing)
        # A (near-)singular direction would map distinct voxels to the same world point.
        if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
            raise ScanReadError(f"{where}Direction matrix is singular (determinant "
                                f"{np.linalg.det(direction) if np.all(np.isfinite(direction)) else 'nan'}); "
                                f"its columns must be the directions of the x, y and z index axes")
        direction.setflags(write=False)
        object.__setattr__(self, "array_hu", array)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", origin)
        object.__setattr__(self, "_index_to_world", index_to_world)
        object.__setattr__(self, "_world_to_index", np.linalg.inv(index_to_world))

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Number of voxels along the i (x), j (y) and k (z) index axes."""
        nz, ny, nx = self.array_hu.shape
        return (nx, ny, nz)

    def world_to_voxel(self, world_xyz_mm: np.ndarray) -> np.ndarray:
        """(..., 3) world LPS mm -> (..., 3) continuous index (i, j, k) in x, y, z index order."""
        world = np.asarray(world_xyz_mm, dtype=np.float64)
        return (world - np.asarray(self.origin_mm)) @ self._world_to_index.T

    def voxel_to_world(self, index_ijk: np.ndarray) -> np.ndarray:
        """(..., 3) continuous index (i, j, k) -> (..., 3) world LPS mm."""
        index = np.asarray(index_ijk, dtype=np.float64)
        return index @ self._index_to_world.T + np.asarray(self.origin_mm)

    def contains_world(self, world_xyz_mm: np.ndarray, margin_voxels: float = 0.0) -> bool | np.ndarray:
        """Whether a world point lies in the volume: index within [-0.5, size - 0.5) on each axis.

        Half-open, as SimpleITK's linear interpolator and the patch cutter's face rule are: a point
        exactly on the high face already reads air.

        A positive margin requires the point to lie that many voxels inside the border (a negative
        one tolerates points just outside). One point (shape (3,)) gives a bool, (..., 3) an array.
        """
        index = self.world_to_voxel(world_xyz_mm)
        size = np.asarray(self.shape_xyz, dtype=np.float64)
        inside = np.all((index >= -0.5 + margin_voxels) & (index < size - 0.5 - margin_voxels), axis=-1)
        return bool(inside) if np.ndim(inside) == 0 else inside

    def world_bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y, z) minimum and maximum of the volume's outer voxel faces."""
        size = np.asarray(self.shape_xyz, dtype=np.float64)
        corners = np.array([[a, b, c] for a in (-0.5, size[0] - 0.5) for b in (-0.5, size[1] - 0.5)
                            for c in (-0.5, size[2] - 0.5)])
        world = self.voxel_to_world(corners)
        return world.min(axis=0), world.max(axis=0)

    def describe_bounds(self) -> str:
        lo, hi = self.world_bounds_mm()
        return ", ".join(f"{a} [{lo[n]:.1f}, {hi[n]:.1f}]" for n, a in enumerate("xyz")) + " mm"


def volume_from_sitk(image, source: str = "", series_uid: str = "") -> Volume:
    """Wrap a 3-D SimpleITK image (any pixel type) as a HU Volume (int16 kept, anything else float32)."""
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise ScanReadError(f"{_where(source, series_uid)}expected a 3-D image, found {image.GetDimension()}-D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ScanReadError(f"{_where(source, series_uid)}expected one value per voxel (grey-level CT), found "
                            f"{image.GetNumberOfComponentsPerPixel()}")
    # A view of the image's own buffer, no copy of a 150 MB scan; the array's base keeps the image alive.
    array = np.asarray(_ArrayOwner(sitk.GetArrayViewFromImage(image), image))
    return Volume(array_hu=array, spacing_mm=tuple(image.GetSpacing()), origin_mm=tuple(image.GetOrigin()),
                  direction=np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3),
                  source=source, series_uid=series_uid)


class _ArrayOwner:
    """Exposes a view's memory to numpy while holding the object that owns it (numpy keeps this as `.base`)."""

    def __init__(self, view: np.ndarray, owner: object) -> None:
        self.__array_interface__ = view.__array_interface__
        self._owner = owner


def volume_to_sitk(volume: Volume, pixel_type: str = "float32"):
    """The Volume as a SimpleITK image; pixel_type "int16" rounds and clips HU (storage like LUNA16)."""
    import SimpleITK as sitk

    array = volume.array_hu
    if pixel_type == "int16":
        array = np.clip(np.rint(array), -32768, 32767).astype(np.int16)
    elif pixel_type != "float32":
        raise ValueError(f"pixel_type must be 'int16' or 'float32', not {pixel_type!r}")
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(volume.spacing_mm)
    image.SetOrigin(volume.origin_mm)
    image.SetDirection(tuple(float(v) for v in volume.direction.reshape(-1)))
    return image
