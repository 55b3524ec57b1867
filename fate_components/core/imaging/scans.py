"""Finding the scans of a site (``site_root/scans/``) by seriesuid, and reading one."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from fate_components.core.errors import LungError, MissingScanError, ScanReadError, display_path
from fate_components.core.imaging.dicom_io import (
    describe_dicom_folder,
    dicom_series_in,
    looks_like_dicom,
    read_dicom_series,
)
from fate_components.core.imaging.metaimage_io import read_metaimage
from fate_components.core.imaging.volume import Volume

__all__ = ["index_scans", "read_scan", "SCANS_DIR"]

logger = logging.getLogger(__name__)

SCANS_DIR = "scans"
_METAIMAGE_SUFFIXES = (".mhd", ".mha")


def index_scans(site_root: Path) -> dict[str, Path]:
    """seriesuid -> scan location (a .mhd/.mha file, or a folder of DICOM slices).

    Walks ``site_root/scans/`` (nested folders allowed, e.g. patient/study/series):
    - every ``*.mhd`` / ``*.mha`` file is one scan whose seriesuid is the file stem (LUNA16);
    - every folder directly holding DICOM files is keyed by each SeriesInstanceUID found in
      the headers (pixels are not read): a folder with two series is two scans, and
      candidates.csv chooses the series by its uid. Only slices without a SeriesInstanceUID are
      keyed by the folder name, unless another scan already uses that name as its uid or two
      folders share the name.
    Every scan has exactly one key, so counting keys counts scans (the folder name used to be a
    second key of every DICOM folder: one scan was two, and could land in both patient splits).
    Two scans with the same uid raise LungError naming both paths.
    """
    site_root = Path(site_root)
    scans_dir = site_root / SCANS_DIR
    if not scans_dir.is_dir():
        raise LungError(f"{SCANS_DIR}/: folder not found in the site directory; put the scans (.mhd + .raw files "
                        f"or one folder of DICOM slices per scan) in {SCANS_DIR}/")
    index: dict[str, Path] = {}
    fallback: dict[str, list[Path]] = {}

    def add(uid: str, location: Path) -> None:
        if uid in index and index[uid] != location:
            raise LungError(f"two scans with seriesuid {uid}: {display_path(index[uid], site_root)} and "
                            f"{display_path(location, site_root)}; remove the duplicate")
        index[uid] = location

    for folder, subdirs, files in os.walk(scans_dir):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        folder = Path(folder)
        dicom_files = False
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = folder / name
            if path.suffix.lower() in _METAIMAGE_SUFFIXES:
                add(path.stem, path)
            elif path.suffix.lower() not in (".raw", ".zraw") and not dicom_files and looks_like_dicom(path):
                dicom_files = True
        if dicom_files:
            for uid in dicom_series_in(folder, site_root):
                if uid != folder.name:
                    add(uid, folder)
                else:   # slices without SeriesInstanceUID (see _series_key)
                    fallback.setdefault(folder.name, []).append(folder)
    for name, folders in fallback.items():
        if len(folders) == 1 and name not in index:
            index[name] = folders[0]
        elif len(folders) > 1:
            logger.info("folder name %s is shared by %d scan folders; it is not used as a seriesuid",
                        name, len(folders))
    return index


def read_scan(site_root: Path, seriesuid: str, index: dict[str, Path] | None = None) -> Volume:
    """Read the scan with `seriesuid` as a Volume; MissingScanError when the site has none."""
    site_root = Path(site_root)
    if index is None:
        index = index_scans(site_root)
    location = index.get(seriesuid)
    if location is None:
        named = sorted({loc for loc in index.values() if loc.is_dir() and loc.name == seriesuid})
        if named:   # a folder name where the SeriesInstanceUID belongs
            folder = named[0]
            raise MissingScanError(
                f"candidates.csv: seriesuid {seriesuid} is the name of the DICOM folder "
                f"{display_path(folder, site_root)}/, not a seriesuid; that folder holds "
                f"{describe_dicom_folder(folder, site_root)}; write the SeriesInstanceUID of the series to use in "
                f"the seriesuid column of candidates.csv and annotations.csv")
        raise MissingScanError(f"candidates.csv: seriesuid {seriesuid} has no scan under {SCANS_DIR}/ "
                               f"(found {len(index)} scans); add the scan or remove its candidates")
    if location.is_dir():
        # The folder-name fallback key reads whatever single series the folder holds.
        volume = read_dicom_series(location, series_uid=None if seriesuid == location.name else seriesuid,
                                   site_root=site_root)
    elif location.is_file():
        volume = read_metaimage(location, site_root=site_root)
    else:
        raise ScanReadError(f"{display_path(location, site_root)}: scan disappeared since the site was indexed")
    if volume.series_uid != seriesuid:
        # Keep the uid the candidates use, so later messages match candidates.csv.
        volume = dataclasses.replace(volume, series_uid=seriesuid)
    return volume
