"""Write the demo case to a folder: a bilateral motor band on a real individual brain.

    python Testing/phantoms/demo.py --out demo-case

The case (:data:`DEMO`) is simulated on clabtoolkit's labelled subject (an individual brain,
not the registration template; fetched with pip on first use) with a bilateral +0.08 ppm band
on the posterior bank of both precentral gyri, 1 mm, TE 20 ms, like the first patient of the
case report. Writes magnitude.nii.gz, phase.nii.gz, the truth volumes, the brain's own
parcellation and T1 and case.json (``individual.write_case``), and prints the magnitude and
phase paths; ``make demo`` then runs ``motorband run`` on them. Generated on the first run
(about a minute and a half) and cached after that.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/, so that `phantoms` imports

from phantoms import individual  # noqa: E402

#: The demo case.
DEMO = individual.IndividualConfig(brain="clab", seed=2024, band="bilateral", delta_chi_ppm=0.08)


def write_demo(out) -> "individual.IndividualCase":
    """Simulate (or load from the cache) the demo case and write it to ``out``."""
    case = individual.case(DEMO)
    individual.write_case(case, out)
    return case


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write the demo case (simulated, with known truth) to a folder.")
    ap.add_argument("--out", default="demo-case", help="output folder (default demo-case)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    case = write_demo(out)
    print(f"magnitude: {out / 'magnitude.nii.gz'}")
    print(f"phase: {out / 'phase.nii.gz'}")
    print(f"Demo truth: expected pattern '{case.expected_pattern}'.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
