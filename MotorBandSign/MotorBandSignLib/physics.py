"""Forward physics of susceptibility: dipole field, GRE phase and magnitude.

Conventions (see shared/reference/BRIEF.md):
- B0 along +z of the scanner frame, which is taken as the RAS superior axis unless a
  direction is given. Susceptibility ``chi`` in ppm (SI, relative to a reference tissue).
- Field perturbation (ppm of B0) = IFFT( D(k) * FFT(chi) ) with the Lorentz-corrected dipole
  kernel D(k) = 1/3 - (k.b0)^2 / |k|^2 (Salomir et al. 2003, Concepts Magn Reson B 19:26;
  Marques & Bowtell 2005, Concepts Magn Reson B 25:65), D(0) = 0.
- Phase of a right-handed scanner: phi = -gamma * B0 * TE * field (Haacke et al. 2004, MRM
  52:612: paramagnetic sources give negative phase in the usual geometry); a left-handed
  scanner (GE) stores the opposite sign.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

#: Gyromagnetic ratio of 1H, gamma / 2pi, in Hz per tesla (CODATA 2018: 42.577478 MHz/T).
GAMMA_BAR_HZ_PER_T = 42.577478e6


def dipole_kernel(shape, spacing, b0_direction=(1.0, 0.0, 0.0)) -> np.ndarray:
    """Lorentz-corrected unit dipole kernel in k-space, float32, FFT layout (no shift).

    Parameters
    ----------
    shape : tuple of int
        Array shape (k, j, i).
    spacing : sequence of float
        Voxel size in mm along the array axes (k, j, i).
    b0_direction : sequence of float
        Unit vector of B0 in array-axis coordinates (k, j, i). Default: along axis 0 (k).

    References
    ----------
    Marques JP, Bowtell R. Concepts Magn Reson B 2005;25:65-78.
    """
    b = np.asarray(b0_direction, dtype=np.float64)
    b = b / np.linalg.norm(b)
    freqs = [sfft.fftfreq(n, d=float(d)).astype(np.float32) for n, d in zip(shape, spacing)]
    kk = np.meshgrid(*freqs, indexing="ij", sparse=True)
    kb = kk[0] * b[0] + kk[1] * b[1] + kk[2] * b[2]
    k2 = kk[0] ** 2 + kk[1] ** 2 + kk[2] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (1.0 / 3.0 - kb ** 2 / k2).astype(np.float32)
    d[0, 0, 0] = 0.0
    return d


def field_from_chi(chi, spacing, b0_direction=(1.0, 0.0, 0.0), pad: int | None = None, workers: int = -1) -> np.ndarray:
    """Relative field perturbation (ppm) produced by a susceptibility map ``chi`` (ppm).

    ``b0_direction`` is in array-axis order (k, j, i); for an axial RAS-aligned grid B0 runs
    along k. The array is zero-padded by ``pad`` voxels per side (default: half the largest
    dimension) so that the periodic FFT convolution does not wrap fields round.
    """
    chi = np.asarray(chi, dtype=np.float32)
    if pad is None:
        pad = max(chi.shape) // 2
    padded = np.pad(chi, pad, mode="constant")
    shape = tuple(sfft.next_fast_len(n, real=True) for n in padded.shape)
    kern = dipole_kernel(shape, spacing, b0_direction)
    spec = sfft.fftn(padded, s=shape, workers=workers)
    spec *= kern
    field = sfft.ifftn(spec, workers=workers).real.astype(np.float32)
    sl = tuple(slice(pad, pad + n) for n in chi.shape)
    return field[sl]


def phase_from_field(field_ppm, te_s: float, b0_t: float = 3.0, handedness: str = "right") -> np.ndarray:
    """Unwrapped phase (rad) at echo time ``te_s`` for a field perturbation in ppm.

    phi = -2*pi * gamma_bar * B0 * TE * field * 1e-6 for a right-handed system; the sign flips
    for ``handedness='left'``. At 3 T and TE 20 ms one ppm gives 16.05 rad (BRIEF.md).
    """
    if handedness not in ("right", "left"):
        raise ValueError(f"handedness must be 'right' or 'left', got {handedness!r}")
    sign = -1.0 if handedness == "right" else 1.0
    scale = sign * 2.0 * np.pi * GAMMA_BAR_HZ_PER_T * b0_t * te_s * 1e-6
    return (np.asarray(field_ppm, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def wrap(phase) -> np.ndarray:
    """Wrap phase to [-pi, pi)."""
    p = np.asarray(phase, dtype=np.float32)
    return (np.mod(p + np.pi, 2 * np.pi) - np.pi).astype(np.float32)


def sphere_field_analytic(r_mm, cos_theta, radius_mm: float, dchi_ppm: float) -> np.ndarray:
    """Field (ppm) of a uniformly magnetised sphere: 0 inside (Lorentz corrected),
    dchi/3 * (a/r)^3 * (3 cos^2 theta - 1) outside (e.g. Haacke et al. 2005, JMRI 22:439)."""
    r = np.asarray(r_mm, dtype=np.float64)
    out = dchi_ppm / 3.0 * (radius_mm / np.maximum(r, 1e-9)) ** 3 * (3 * np.asarray(cos_theta) ** 2 - 1)
    return np.where(r <= radius_mm, 0.0, out)


def slab_field_analytic(cos_theta_normal: float, dchi_ppm: float) -> float:
    """Field (ppm) inside an infinite slab whose normal makes angle theta with B0, Lorentz
    corrected: dchi * (1/3 - cos^2 theta) (BRIEF.md; Marques & Bowtell 2005)."""
    return dchi_ppm * (1.0 / 3.0 - cos_theta_normal ** 2)
