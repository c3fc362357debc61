"""Write the demo case (bilateral band, 1 mm; see ``simulate.demo_case``) to a folder.

    python Testing/phantoms/demo.py --out demo-case

Writes magnitude.nii.gz, phase.nii.gz, the truth volumes and case.json (``simulate.write_case``)
and prints the magnitude and phase paths; ``make demo`` then runs ``motorband run`` on them.
The case is generated on the first run (about half a minute) and cached after that.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/, so that `phantoms` imports

from phantoms import simulate  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write the demo case (simulated, with known truth) to a folder.")
    ap.add_argument("--out", default="demo-case", help="output folder (default demo-case)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    case = simulate.demo_case(out)
    print(f"magnitude: {out / 'magnitude.nii.gz'}")
    print(f"phase: {out / 'phase.nii.gz'}")
    print(f"Demo truth: expected pattern '{case.expected_pattern}'.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
