"""Whole-pipeline time on a 1 mm whole brain (the demo case), per step, on this machine.

Target (issue 7): under 90 s on 2 cores. Prints the time of each step and of writing outputs,
and the ratio total / 90 s. `--quick` uses a 2 mm case.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/, so that `phantoms` imports


def bench_case(quick: bool):
    """The case the whole-pipeline benchmarks run: the 1 mm demo, or a 2 mm bilateral phantom with --quick."""
    from phantoms import simulate as phantom

    if quick:
        return phantom.generate_case(phantom.PhantomConfig(seed=7, band="bilateral", voxel_mm=(2.0, 2.0, 2.0)))
    return phantom.demo_case()


def main(argv=None) -> int:
    from MotorBandSignLib import outputs, pipeline
    from MotorBandSignLib.params import Parameters

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    case = bench_case(a.quick)
    shape = case.magnitude.shape
    t0 = time.perf_counter()
    res = pipeline.run(pipeline.Inputs(magnitude=case.magnitude, phase=case.phase), Parameters(localisation="atlas"))
    t_run = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t1 = time.perf_counter()
        outputs.write_outputs(res, d)
        t_out = time.perf_counter() - t1
    print(f"grid {shape[::-1]} voxels {case.magnitude.spacing.round(2).tolist()} mm, pattern {res.metrics['pattern']}")
    for k, v in res.timings.items():
        print(f"  {k:14s} {v:7.1f} s")
    print(f"  {'outputs':14s} {t_out:7.1f} s")
    total = t_run + t_out
    print(f"total {total:.1f} s; ratio to the 90 s target {total / 90.0:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
