"""Errors raised by the core.

Every message says what is wrong, where (a path relative to the site root and/or a
seriesuid), what was expected versus found, and how to fix it. Messages never contain
patient names or patient ids, so they can be shown outside the hospital.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["LungError", "ScanReadError", "WrongModalityError", "MissingScanError",
           "CoordinateOutOfVolumeError", "CsvFormatError", "ConfigError", "display_path",
           "reject_unknown_options"]


class LungError(Exception):
    """Base of all fate-lung errors; message says what, where (path relative to the site root,
    seriesuid), expected vs found, how to fix."""


class ScanReadError(LungError):
    """Unreadable or corrupt file, missing slice, inconsistent series, several series where one
    was expected."""


class WrongModalityError(ScanReadError):
    """A DICOM series whose Modality is not CT."""


class MissingScanError(LungError):
    """A seriesuid in candidates.csv with no scan in the site directory."""


class CoordinateOutOfVolumeError(LungError):
    """A candidate centre outside the scan."""


class CsvFormatError(LungError):
    """Wrong or missing columns, or a bad value, with file name and line number."""


class ConfigError(LungError):
    """A bad parameter value."""


def display_path(path: Path | str, site_root: Path | str | None = None) -> str:
    """`path` relative to `site_root` for messages (never absolute paths, which may name people).

    Without a site root (or for a path outside it) this is the parent folder and the name,
    e.g. ``case_017/IM0003``: enough to find the file, short enough to read.
    """
    path = Path(path)
    if site_root is not None:
        try:
            return path.resolve().relative_to(Path(site_root).resolve()).as_posix() or "."
        except ValueError:
            pass
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def reject_unknown_options(options: dict, dataclass_type: type, what: str) -> None:
    """A conf section may only name fields of the dataclass it configures."""
    known = set(dataclass_type.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise ConfigError(f"unknown {what} option(s) {sorted(unknown)}; known: {sorted(known)}")
