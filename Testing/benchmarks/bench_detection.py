"""Detection benchmark: sensitivity, specificity and ROC AUC of the per-hemisphere call.

For each band strength delta_chi (ppm), phantoms with a band (bilateral / left / right) and as
many without (none) are generated with different seeds (each seed draws a new anatomy warp and
new noise); the whole pipeline runs on each. Printed per level: sensitivity, specificity and
ROC AUC of the per-hemisphere call (the score is the bank's median darkness z), the pattern
accuracy over scenarios, the mean ribbon Dice against the true bank and the runtime.

Targets (issue 7) at delta_chi >= 0.05 ppm and peak SNR 40: AUC >= 0.97, specificity >= 0.95,
all scenario patterns right. `--quick` runs a reduced form (used by the test suite's slow
marker); the full form takes hours on 2 cores.

    python Testing/benchmarks/bench_detection.py [--quick] [--levels 0.02 0.05] [--seeds 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/, so that `phantoms` imports


def roc_auc(scores_pos, scores_neg) -> float:
    """Mann-Whitney estimate of the ROC AUC (ties count one half)."""
    pos = np.asarray(scores_pos, float)[:, None]
    neg = np.asarray(scores_neg, float)[None, :]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else float("nan")


def run_case(cfg):
    from MotorBandSignLib import pipeline
    from MotorBandSignLib.params import Parameters
    from phantoms import simulate as phantom

    case = phantom.generate_case(cfg)
    t0 = time.perf_counter()
    res = pipeline.run(pipeline.Inputs(magnitude=case.magnitude, phase=case.phase), Parameters(localisation="atlas"))
    dt = time.perf_counter() - t0
    m = res.metrics
    d = [dice(res.ribbon.array == v, case.truth.array == v) for v in (1, 2)]
    return case, m, d, dt


def main(argv=None) -> int:
    from phantoms import simulate as phantom

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=float, nargs="+", default=[0.02, 0.03, 0.05, 0.08])
    ap.add_argument("--seeds", type=int, default=10, help="seeds per scenario and level")
    ap.add_argument("--snr", type=float, default=40.0)
    ap.add_argument("--voxel", type=float, default=1.5, help="isotropic voxel size in mm")
    ap.add_argument("--quick", action="store_true", help="reduced form: 2 levels, 1 seed, 2 mm")
    a = ap.parse_args(argv)
    if a.quick:
        a.levels, a.seeds, a.voxel = [0.05, 0.08], 1, 2.0
    scenarios = ["bilateral", "left", "right", "none"]
    print(f"detection benchmark: levels {a.levels} ppm, {a.seeds} seed(s) per scenario, SNR {a.snr}, {a.voxel} mm")
    print(f"{'dchi':>6} {'sens':>6} {'spec':>6} {'AUC':>6} {'pattern':>8} {'Dice':>6} {'s/case':>7}")
    summary = []
    for level in a.levels:
        pos, neg, calls, patterns_ok, n_cases, dices, times = [], [], [], 0, 0, [], []
        for seed in range(a.seeds):
            for sc in scenarios:
                cfg = phantom.PhantomConfig(seed=1000 + seed, band=sc, delta_chi_ppm=level, snr=a.snr,
                                            voxel_mm=(a.voxel,) * 3)
                case, m, d, dt = run_case(cfg)
                times.append(dt)
                dices += [x for x in d if x == x]
                n_cases += 1
                patterns_ok += int(m["pattern"] == case.expected_pattern)
                for side in ("left", "right"):
                    truth = sc == "bilateral" or sc == side
                    h = m["hemispheres"][side]
                    z = h["z_median"] if h["z_median"] is not None else -np.inf
                    (pos if truth else neg).append(z)
                    calls.append((truth, h["band_present"]))
        tp = sum(1 for t, c in calls if t and c)
        tn = sum(1 for t, c in calls if not t and not c)
        npos = sum(1 for t, _ in calls if t)
        nneg = len(calls) - npos
        row = dict(level=level, sensitivity=tp / npos, specificity=tn / nneg, auc=roc_auc(pos, neg),
                   pattern_accuracy=patterns_ok / n_cases, dice=float(np.mean(dices)), seconds=float(np.mean(times)))
        summary.append(row)
        print(f"{level:6.3f} {row['sensitivity']:6.2f} {row['specificity']:6.2f} {row['auc']:6.3f} "
              f"{row['pattern_accuracy']:8.2f} {row['dice']:6.2f} {row['seconds']:7.1f}", flush=True)
    ok = all(r["auc"] >= 0.97 and r["specificity"] >= 0.95 and r["pattern_accuracy"] == 1.0
             for r in summary if r["level"] >= 0.05)
    print("targets at >= 0.05 ppm (AUC >= 0.97, specificity >= 0.95, all patterns right):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
