"""Benchmark on individual brains: ribbon Dice, band calls, calibration (leave one brain out).

Cases are simulated on real individual brains that are not the registration template
(:mod:`phantoms.individual`: clabtoolkit's labelled subject and pycortex's S1), with truth from
each brain's own anatomy. The whole pipeline runs on magnitude + phase only (the atlas route),
with ``--t1`` on magnitude + phase + the brain's own T1, or with ``--parcellation`` on
magnitude + phase + the brain's own label volume.

Printed:

1. per case: brain, scenario, ribbon Dice (left, right), bank / control ratios, call, truth;
2. the calibration of the band-call thresholds (the procedure of
   MotorBandSignLib.scoring): the normal range of the bank / control ratio is learnt from the
   no-band cases (none, ageing-like diffuse, veins) of some brains -- lower limit mean - 3 SD of
   their hemispheres (regions for the regional threshold) -- and applied to the brain left out.
   Sensitivity and specificity of the hemisphere call at each band level, and its ROC AUC (the
   score is 1 - ratio, so threshold-free), are reported on left-out brains only;
3. the diffuse flag and the pattern accuracy per scenario; the runtime per case and per step.

Targets (issue 11): Dice >= 0.7 per hemisphere; sensitivity >= 0.95 at >= 0.05 ppm and
specificity >= 0.95; focal bands in the right region; ageing flagged, never called a band.

    python Testing/benchmarks/bench_individual.py [--quick] [--seeds 1 2] [--t1 | --parcellation] [--json out.json]
    python Testing/benchmarks/bench_individual.py --combine clab.json s1.json   # pool earlier runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/, so that `phantoms` imports
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detection import roc_auc  # noqa: E402  (one Mann-Whitney AUC for both benchmarks)

BRAINS = ("clab", "pycortex_s1")
#: scenario -> (config overrides, banded sides, banded region or None)
SCENARIOS = {
    "none": (dict(band="none"), (), None),
    "diffuse": (dict(band="none", diffuse_ppm=0.03), (), None),
    "veins": (dict(band="none", veins=True), (), None),
    "bilateral_0.03": (dict(band="bilateral", delta_chi_ppm=0.03), ("left", "right"), None),
    "bilateral_0.05": (dict(band="bilateral", delta_chi_ppm=0.05), ("left", "right"), None),
    "bilateral_0.08": (dict(band="bilateral", delta_chi_ppm=0.08), ("left", "right"), None),
    "bilateral_0.05_snr20": (dict(band="bilateral", delta_chi_ppm=0.05, snr=20.0), ("left", "right"), None),
    "left_0.08": (dict(band="left", delta_chi_ppm=0.08), ("left",), None),
    "right_0.08_veins": (dict(band="right", delta_chi_ppm=0.08, veins=True), ("right",), None),
    "focal_0.08": (dict(band="left", band_region="intermediate", delta_chi_ppm=0.08), ("left",), "intermediate"),
    # the oblique acquisition: 0.9 x 0.9 x 1.5 mm voxels, slices tilted by 15 degrees
    "bilateral_0.05_oblique": (dict(band="bilateral", delta_chi_ppm=0.05, voxel_mm=(0.9, 0.9, 1.5), oblique_deg=15.0),
                               ("left", "right"), None),
}
#: Measured on request (``--scenarios``), outside the default run and its calibration: a
#: proton-density-weighted magnitude (6 deg flip at TR 28 ms: cortex brighter than white matter,
#: pure CSF brightest), the contrast the development set does not otherwise hold.
EXTRA_SCENARIOS = {
    "none_flip6": (dict(band="none", flip_deg=6.0), (), None),
    "bilateral_0.08_flip6": (dict(band="bilateral", delta_chi_ppm=0.08, flip_deg=6.0), ("left", "right"), None),
    "left_0.08_flip6": (dict(band="left", delta_chi_ppm=0.08, flip_deg=6.0), ("left",), None),
}
ALL_SCENARIOS = {**SCENARIOS, **EXTRA_SCENARIOS}
QUICK = ("none", "diffuse", "bilateral_0.05", "focal_0.08")


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = int(a.sum() + b.sum())
    return round(2.0 * float((a & b).sum()) / s, 3) if s else float("nan")


def run_case(brain: str, scenario: str, seed: int, parcellation: bool = False, t1: bool = False) -> dict:
    from phantoms import individual

    from MotorBandSignLib import pipeline
    from MotorBandSignLib.params import Parameters

    over, sides, region = ALL_SCENARIOS[scenario]
    c = individual.case(individual.IndividualConfig(brain=brain, seed=seed, **over))
    t0 = time.perf_counter()
    # the brain's own aparc-like labels (FreeSurfer numbers) or its own T1, posed like it
    extra = {"parcellation": c.parcellation} if parcellation else {"t1": c.t1} if t1 else {}
    res = pipeline.run(pipeline.Inputs(magnitude=c.magnitude, phase=c.phase, **extra),
                       Parameters(labels="freesurfer" if parcellation else None))
    m = res.metrics
    rib = res.ribbon.array
    h = m["hemispheres"]
    return {
        "brain": brain, "scenario": scenario, "seed": seed, "banded_sides": list(sides), "banded_region": region,
        "expected_pattern": c.expected_pattern, "expected_diffuse": c.nonspecific_diffuse,
        "pattern": m["pattern"], "diffuse": m["nonspecific_diffuse"],
        "dice": [dice(rib == 1, c.truth.array == 1), dice(rib == 2, c.truth.array == 2)],
        "ratio": {s: h[s]["band_contrast"] for s in ("left", "right")},
        "region_ratio": {s: {r: v["band_contrast"] for r, v in h[s]["regions"].items()} for s in ("left", "right")},
        "band_regions": {s: h[s].get("band_regions", []) for s in ("left", "right")},
        "cortex_to_wm": {s: h[s]["cortex_to_wm_ratio"] for s in ("left", "right")},
        "sulcal_control_to_wm": _control_to_wm(res),
        "seconds": round(time.perf_counter() - t0, 1), "timings": res.timings,
    }


def _control_to_wm(res) -> dict:
    """The diffuse flag's statistic computed on the sulcal ribbon's own control (the facing
    postcentral wall) instead of the atlas route's cortex: recorded to compare the two samples."""
    from MotorBandSignLib import pipeline, scoring

    rib = res.ribbon.array
    sp = res.ribbon.spacing_kji
    if res.swi_corrected is None:
        return {"left": None, "right": None}
    wm = pipeline._wm_reference(rib, res.brain_mask.array > 0, sp, res.wm_prob, res.gm_prob)
    out = {}
    for side, c in (("left", 3), ("right", 4)):
        ctrl = rib == c
        side_wm = wm & scoring._same_side(rib, side, wm, sp)
        ok = ctrl.sum() >= scoring.MIN_CONTROL_VOXELS and side_wm.sum() >= scoring.MIN_CONTROL_VOXELS
        out[side] = round(float(np.median(res.swi_corrected[ctrl]) / np.median(res.swi_corrected[side_wm])), 4) if ok else None
    return out


def normal_limit(values) -> float:
    v = np.asarray([x for x in values if x is not None], float)
    return float(v.mean() - 3.0 * v.std(ddof=1)) if v.size > 2 else float("nan")


def fit(rows) -> dict:
    """Lower limits of the normal ranges from the no-band rows (see the module docstring); the
    diffuse flag's limit from the control-cortex / white-matter ratio of the no-band rows that are
    not diffusely dark."""
    normal = [r for r in rows if r["expected_pattern"] == "absent"]
    hemi = [r["ratio"][s] for r in normal for s in ("left", "right")]
    reg = [v for r in normal for s in ("left", "right") for v in r["region_ratio"][s].values()]
    plain = [r for r in normal if not r["expected_diffuse"]]
    ctx = [r["cortex_to_wm"][s] for r in plain for s in ("left", "right")]
    return {"band_ratio": round(normal_limit(hemi), 3), "region_band_ratio": round(normal_limit(reg), 3),
            "diffuse_ratio": round(normal_limit(ctx), 3), "n_normal_hemispheres": len(hemi)}


def call(r, side, th) -> bool:
    ratio = r["ratio"][side]
    regs = r["region_ratio"][side]
    return bool((ratio is not None and ratio <= th["band_ratio"])
                or any(v is not None and v <= th["region_band_ratio"] for v in regs.values()))


def evaluate(rows, brains=BRAINS) -> dict:
    """Leave one brain out: thresholds fitted on the others, calls scored on the one left out."""
    out = {"per_level": {}, "folds": {}}
    scored = []
    for held in brains:
        train = [r for r in rows if r["brain"] != held]
        test = [r for r in rows if r["brain"] == held]
        if not train or not test:
            continue
        th = fit(train)
        out["folds"][held] = th
        for r in test:
            for side in ("left", "right"):
                scored.append((r, side, call(r, side, th), side in r["banded_sides"]))
    levels = sorted({r["scenario"] for r, *_ in scored})
    neg = [(r, s, c) for r, s, c, truth in scored if not truth]
    spec = float(np.mean([not c for _, _, c in neg])) if neg else float("nan")
    neg_scores = [1 - r["ratio"][s] for r, s, _ in neg if r["ratio"][s] is not None]
    for lev in levels:
        pos = [(r, s, c) for r, s, c, truth in scored if truth and r["scenario"] == lev]
        if not pos:
            continue
        pos_scores = [1 - min([r["ratio"][s]] + [v for v in r["region_ratio"][s].values() if v is not None])
                      for r, s, _ in pos if r["ratio"][s] is not None]
        neg_min = [1 - min([r["ratio"][s]] + [v for v in r["region_ratio"][s].values() if v is not None])
                   for r, s, _ in neg if r["ratio"][s] is not None]
        out["per_level"][lev] = {"sensitivity": round(float(np.mean([c for _, _, c in pos])), 3),
                                 "auc": round(roc_auc(pos_scores, neg_min), 3), "n": len(pos)}
    out["specificity"] = round(spec, 3)
    out["n_negative_hemispheres"] = len(neg)
    out["auc_whole_bank_all"] = round(roc_auc([1 - r["ratio"][s] for r, s, c, t in scored if t and r["ratio"][s]],
                                              neg_scores), 3)
    return out


def _print_row(r) -> None:
    print(f"{r['brain']:12s} {r['scenario']:22s} {r['seed']:4d}  {r['dice'][0]:6.3f} {r['dice'][1]:6.3f}  "
          f"{r['ratio']['left'] or float('nan'):7.3f} {r['ratio']['right'] or float('nan'):7.3f}  "
          f"{r['pattern']:10s}  {r['expected_pattern']:10s}  {str(r['diffuse']):5s}/{str(r['expected_diffuse']):5s} "
          f"{r['seconds']:5.0f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, four scenarios")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--brains", nargs="+", default=list(BRAINS))
    ap.add_argument("--scenarios", nargs="+", default=None, choices=sorted(ALL_SCENARIOS),
                    help="default: every scenario of SCENARIOS; EXTRA_SCENARIOS run only when named here")
    ap.add_argument("--json", default=None, help="write every row and the evaluation here")
    ap.add_argument("--parcellation", action="store_true",
                    help="the --parcellation route with each brain's own labels (target Dice >= 0.8) instead of the "
                         "atlas route")
    ap.add_argument("--t1", action="store_true",
                    help="the --t1 route (the sulcus found on each brain's own T1) instead of the magnitude-only route")
    ap.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                    help="run nothing: pool the rows of earlier --json files (e.g. one per brain, or seed 1 of "
                         "every scenario plus seed 2 of the no-band ones) and print the same summary over them")
    a = ap.parse_args(argv)
    if a.t1 and a.parcellation:
        ap.error("give --t1 or --parcellation, not both")
    seeds = a.seeds or ([1] if a.quick else [1, 2, 3])
    scen = tuple(a.scenarios) if a.scenarios else (QUICK if a.quick else tuple(SCENARIOS))
    rows = []
    print(f"{'brain':12s} {'scenario':22s} seed  dice_L dice_R  ratio_L ratio_R  call        truth       diffuse   s")
    if a.combine:
        for path in a.combine:
            try:
                rows += json.loads(Path(path).read_text())["rows"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                ap.error(f"--combine: {path} is not a --json output of this benchmark ({type(exc).__name__}: "
                         f"{exc}); write one with --json FILE first")
        a.brains = list(dict.fromkeys(r["brain"] for r in rows))
        for r in rows:
            _print_row(r)
    else:
        for brain in a.brains:
            for name in scen:
                for seed in seeds:
                    rows.append(run_case(brain, name, seed, parcellation=a.parcellation, t1=a.t1))
                    _print_row(rows[-1])
    ev = evaluate(rows, a.brains)
    print(f"\nDice per brain (mean over cases; target >= {0.8 if a.parcellation else 0.7}; "
          f"{'parcellation' if a.parcellation else 't1' if a.t1 else 'atlas'} route):")
    for brain in a.brains:
        d = np.array([r["dice"] for r in rows if r["brain"] == brain], float)
        print(f"  {brain:12s} left {np.nanmean(d[:, 0]):.3f}  right {np.nanmean(d[:, 1]):.3f}  (min {np.nanmin(d):.3f})")
    steps = [k for k in rows[0]["timings"]] if rows else []
    print("Time per pipeline step (s, median / max over the cases; target: the whole pipeline <= 60 s for a "
          "1 mm brain on 2 cores, 'total'):")
    print("  " + "  ".join(f"{k} {np.median([r['timings'].get(k, np.nan) for r in rows]):.1f} / "
                           f"{np.max([r['timings'].get(k, np.nan) for r in rows]):.1f}" for k in steps))
    print("Leave-one-brain-out thresholds (fitted on the other brains):")
    for held, th in ev["folds"].items():
        print(f"  held out {held:12s} band_ratio {th['band_ratio']}  region_band_ratio {th['region_band_ratio']}  "
              f"({th['n_normal_hemispheres']} normal hemispheres)")
    print(f"Specificity on left-out brains: {ev['specificity']} ({ev['n_negative_hemispheres']} no-band hemispheres; "
          "target >= 0.95)")
    for lev, v in ev["per_level"].items():
        print(f"  {lev:22s} sensitivity {v['sensitivity']:.3f}  AUC {v['auc']:.3f}  ({v['n']} banded hemispheres)")
    pat = np.mean([r["pattern"] == r["expected_pattern"] for r in rows])
    dif = np.mean([r["diffuse"] == r["expected_diffuse"] for r in rows])
    print(f"Pattern accuracy {pat:.3f}; diffuse flag right {dif:.3f}; with the product's thresholds "
          f"{json.dumps(fit(rows))} fitted on all brains")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "evaluation": ev, "fit_all": fit(rows)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
