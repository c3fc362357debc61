"""`make bench`: run every benchmark in one process, printing each one's ratios and targets.

    python Testing/benchmarks/run_all.py [--quick]
"""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: each entry: the script and its own arguments (the individual-brain benchmark runs once per route)
BENCHES = ["bench_swi.py", "bench_ribbon.py", "bench_detection.py", "bench_individual.py",
           "bench_individual.py --t1", "bench_individual.py --parcellation", "bench_pipeline.py", "bench_cohort.py", "bench_remeasure.py"]


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    status = 0
    for entry in BENCHES:
        name, *extra = entry.split()
        path = HERE / name
        if not path.exists():
            print(f"== {name}: missing")
            status = 1
            continue
        print(f"== {entry}", flush=True)
        spec = importlib.util.spec_from_file_location(name[:-3], path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        args = extra + (["--quick"] if quick else [])
        try:
            status |= int(mod.main(args) or 0)
        except SystemExit as exc:  # argparse in a bench that does not know --quick
            status |= int(exc.code or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
