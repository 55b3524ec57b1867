"""Reader throughput on a LUNA16-sized scan: the whole read-and-cut pipeline vs SimpleITK's read alone.

    .venv/bin/python bench/reader_throughput.py [--candidates 850] [--repeats 3]

Writes one 512x512x300 int16 MetaImage (0.7 x 0.7 x 1.25 mm, like a LUNA16 scan) and a
candidates.csv with N candidates (the LUNA16 candidate list averages about 550 per scan; real
sites see about 850, so per-patch cost dominates), then times, side by
side: (a) `SimpleITK.ReadImage` of the file; (b) `build_patch_dataset` in predict mode
(read, world->voxel, one 48 mm / 32^3 patch per candidate, float16 dataset on disk).
Prints seconds per scan and the ratio (target: at most 3x).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SCAN_SHAPE_ZYX = (300, 512, 512)
SCAN_SPACING_MM = (0.7, 0.7, 1.25)


def luna16_sized_site(site: Path, n_candidates: int) -> Path:
    """A site directory with one LUNA16-sized int16 MetaImage and `n_candidates` candidates inside it."""
    from fate_components.core.data.candidates import Candidate, write_candidates
    from fate_components.core.imaging.metaimage_io import write_metaimage
    from fate_components.core.imaging.volume import Volume

    (site / "scans").mkdir(parents=True)
    rng = np.random.default_rng(0)
    array = rng.normal(-700, 200, SCAN_SHAPE_ZYX).astype(np.float32)
    origin = (-180.0, -180.0, -380.0)
    uid = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100000000000000000000000000001"
    write_metaimage(Volume(array_hu=array, spacing_mm=SCAN_SPACING_MM, origin_mm=origin, direction=np.eye(3)),
                    site / "scans" / f"{uid}.mhd")
    lo = np.array(origin) + 30
    hi = np.array(origin) + np.array(SCAN_SPACING_MM) * np.array(SCAN_SHAPE_ZYX[::-1]) - 30
    cands = [Candidate(uid, tuple(float(v) for v in rng.uniform(lo, hi)), int(i % 10 == 0), i + 2)
             for i in range(n_candidates)]
    write_candidates(site / "candidates.csv", cands)
    return site


def main(argv=None) -> int:
    import SimpleITK as sitk

    from fate_components.core.data.patch_dataset import build_patch_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=850, help="candidates per scan")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="fate_lung_reader_"))
    try:
        site = luna16_sized_site(work / "site", args.candidates)
        path = next((site / "scans").glob("*.mhd"))

        sitk_s, pipe_s = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            sitk.GetArrayViewFromImage(sitk.ReadImage(str(path)))
            sitk_s.append(time.perf_counter() - t0)
            out = work / f"out{r}"
            t0 = time.perf_counter()
            report = build_patch_dataset(site, out, mode="predict")
            pipe_s.append(time.perf_counter() - t0)
            assert report.scans_read == 1 and report.positives + report.negatives_kept == args.candidates
            shutil.rmtree(out)
        a, b = statistics.median(sitk_s), statistics.median(pipe_s)
        print(f"LUNA16-sized scan 512x512x300 int16 ({path.with_suffix('.raw').stat().st_size / 2**20:.0f} MiB), "
              f"{args.candidates} candidates, median of {args.repeats}")
        print(f"SimpleITK ReadImage alone      {a:7.2f} s")
        print(f"read + cut + write (ours)      {b:7.2f} s   ({args.candidates / b:.0f} patches/s)")
        print(f"ratio                          {b / a:7.2f}x  (target <= 3x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
