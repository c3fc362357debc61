"""Benchmark: localisation (brain mask + template registration) plus ribbon, time and Dice per case.

    .venv/bin/python Testing/benchmarks/bench_ribbon.py            # 1 mm demo + every fixture
    .venv/bin/python Testing/benchmarks/bench_ribbon.py --quick    # bilateral, oblique, partial

Prints one line per case: seconds for localisation + ribbon (target < 60 s for a 1 mm whole
brain on 2 cores), ribbon Dice against the true posterior bank per hemisphere, the labels' Dice
for pre/postcentral, region agreement with the true somatotopic regions, registration quality.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/, so that `phantoms` imports


def dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 2.0 * (a & b).sum() / s if s else float("nan")


def run_case(name: str) -> dict:
    from MotorBandSignLib import anatomy, ribbon
    from phantoms import simulate as phantom

    case = phantom.fixture(name)
    t0 = time.perf_counter()
    mask = anatomy.brain_mask(case.magnitude)
    anat = anatomy.localize(case.magnitude, mask, sulcal=False)
    t_loc = time.perf_counter() - t0
    rib = ribbon.build_ribbon(anat)
    secs = time.perf_counter() - t0
    lab, truth = rib.labels.array, case.truth.array
    both = (truth > 0) & (lab == truth)
    return {
        "case": name,
        "voxel_mm": "x".join(f"{v:g}" for v in np.round(case.magnitude.spacing, 2)),
        "seconds": secs,
        "localise_s": t_loc,
        "dice_left": dice(lab == 1, truth == 1),
        "dice_right": dice(lab == 2, truth == 2),
        "labels_dice": np.mean([dice(anat.labels.array == v, case.anatomy.array == v) for v in (1, 2, 3, 4)]),
        "region_agree": float((rib.regions.array[both] == case.truth_regions.array[both]).mean()) if both.any() else float("nan"),
        "quality": anat.registration_quality,
        "warnings": len(anat.warnings) + len(rib.warnings),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only bilateral, oblique and partial (1.5 mm)")
    ap.add_argument("cases", nargs="*", help="fixture names (default: demo + all fixtures)")
    args = ap.parse_args(argv)
    from phantoms import simulate as phantom

    if args.cases:
        names = args.cases
    elif args.quick:
        names = ["bilateral", "oblique", "partial"]
    else:
        names = ["demo"] + list(phantom.FIXTURES)
    print(f"# ribbon benchmark on {os.cpu_count()} cores; target < 60 s for the 1 mm demo (whole brain)")
    print(f"{'case':<12}{'voxel':>12}{'time s':>8}{'Dice L':>8}{'Dice R':>8}{'labels':>8}{'regions':>9}{'NMI':>6}{'warn':>5}")
    rows = []
    for n in names:
        r = run_case(n)
        rows.append(r)
        print(f"{r['case']:<12}{r['voxel_mm']:>12}{r['seconds']:>8.1f}{r['dice_left']:>8.2f}{r['dice_right']:>8.2f}"
              f"{r['labels_dice']:>8.2f}{r['region_agree']:>9.2f}{r['quality']:>6.2f}{r['warnings']:>5d}", flush=True)
    d = [min(r["dice_left"], r["dice_right"]) for r in rows]
    print(f"# worst-side Dice: median {np.median(d):.2f}, min {np.min(d):.2f}; "
          f"mean time {np.mean([r['seconds'] for r in rows]):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
