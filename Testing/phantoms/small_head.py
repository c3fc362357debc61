"""A small synthetic head with a given ribbon, for tests that need no localisation.

A 32 x 40 x 40 grid at 2 mm: a ball of "brain" (radius 14 voxels) and, in a shell of its upper
half, the ribbon labels 1/2 (left/right bank, the front quadrants) and 3/4 (left/right control).
Used by the bad-input and cohort tests, which exercise the command line and the runner, not
the anatomy.
"""

from __future__ import annotations

import numpy as np

SHAPE = (32, 40, 40)


def small_head(seed: int = 0, band_factor: float | None = None) -> tuple:
    """(magnitude float32, phase float32 in radians, ribbon uint8, 4x4 affine).

    ``band_factor`` multiplies the left bank's magnitude (a band) when given."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(SHAPE)
    r = np.sqrt((k - 16.0) ** 2 + (j - 20.0) ** 2 + (i - 20.0) ** 2)
    mag = np.abs(np.where(r < 14, 100.0, 2.0) + rng.normal(0, 1, SHAPE))
    rib = np.zeros(SHAPE, np.uint8)
    shell = (r > 10) & (r < 13) & (k > 16)
    rib[shell & (i < 20) & (j < 20)] = 1
    rib[shell & (i >= 20) & (j < 20)] = 2
    rib[shell & (i < 20) & (j >= 20)] = 3
    rib[shell & (i >= 20) & (j >= 20)] = 4
    if band_factor is not None:
        mag[rib == 1] *= band_factor
    phase = rng.uniform(-0.1, 0.1, SHAPE).astype(np.float32)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = (-40.0, -40.0, -32.0)
    return mag.astype(np.float32), phase, rib, aff
