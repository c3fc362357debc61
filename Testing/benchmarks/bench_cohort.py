"""Cohort throughput: cases per hour with 1 and with 2 local workers, and memory per worker.

The cases are template phantoms (:mod:`phantoms.simulate`, 3 mm in the quick form, 2 mm in the
full one: small so that the benchmark measures the cohort runner's parallelism, not one case's
pipeline). Each configuration runs the same cases into a fresh folder with
``cohort.run(..., workers=N)``; printed are the wall time, cases per hour, the speed-up of 2
workers over 1 (target on 2 cores: >= 1.5, i.e. the per-case work parallelises and the workers
do not oversubscribe the cores) and the peak resident memory of the largest worker process
(``RUSAGE_CHILDREN``), against the runner's own per-case estimate (``cohort.case_memory_bytes``).

    python Testing/benchmarks/bench_cohort.py [--quick] [--cases N]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/, so that `phantoms` imports


def _write_cases(root: Path, n: int, voxel_mm: float) -> list:
    from phantoms import simulate

    from MotorBandSignLib import cohort, io

    cases = []
    for s in range(n):
        c = simulate.generate_case(simulate.PhantomConfig(seed=500 + s, band="bilateral" if s % 2 else "none",
                                                          voxel_mm=(voxel_mm,) * 3))
        d = root / f"sub-{s + 1:02d}"
        d.mkdir(parents=True)
        files = {"magnitude": str(io.write_volume(c.magnitude, d / "magnitude.nii.gz")),
                 "phase": str(io.write_volume(c.phase, d / "phase.nii.gz"))}
        cases.append(cohort.Case(subject=d.name, files=files, extra={"group": "ALS" if s % 2 else "control"}))
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 cases at 3 mm")
    ap.add_argument("--cases", type=int, default=None)
    a = ap.parse_args(argv)
    from MotorBandSignLib import cohort
    from MotorBandSignLib.params import Parameters

    n = a.cases or (4 if a.quick else 8)
    voxel = 3.0 if a.quick else 2.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-cohort-"))
    try:
        cases = _write_cases(tmp / "data", n, voxel)
        params = Parameters(localisation="atlas")
        rate = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            summary = cohort.run(cases, tmp / f"out-{workers}", params, workers=workers, with_scene=False)
            wall = time.perf_counter() - t0
            rate[workers] = 3600.0 * summary.done / wall
            print(f"workers {workers}: {summary.done}/{n} cases done, {summary.failed} failed, {wall:6.1f} s, "
                  f"{rate[workers]:6.0f} cases/hour", flush=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024      # Linux: kB
        est = cohort.case_memory_bytes(cases[0])
        print(f"speed-up 2 workers / 1 worker: {rate[2] / rate[1]:.2f} (target >= 1.5 on 2 cores)")
        print(f"peak memory of the largest worker: {peak / 2**20:.0f} MiB; the runner's per-case estimate "
              f"{est / 2**20:.0f} MiB ({voxel:g} mm cases)")
        return 0 if summary.failed == 0 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
