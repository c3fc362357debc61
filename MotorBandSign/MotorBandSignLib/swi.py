"""Susceptibility-weighted imaging (SWI) from magnitude and right-handed phase in radians.

Steps (each a plain function on numpy arrays indexed ``(k, j, i)``, or ``(echo, k, j, i)``):

1. :func:`combine_magnitude` - multi-echo magnitude, root-sum-of-squares or SNR weighted
   (Eckstein et al. 2021, CLEAR-SWI).
2. :func:`signal_mask_from_magnitude` - where there is signal (Otsu 1979 threshold).
3. High-pass phase, one of two routes:

   - ``"homodyne"``: :func:`homodyne_highpass` divides the complex image by a copy low-passed
     with a Hann window over central k-space (Haacke et al. 2004, MRM 52:612), 2D in-plane
     (slice by slice) or 3D.
   - ``"unwrap"``: :func:`laplacian_unwrap` (fast-transform Laplacian unwrapping: Schofield &
     Zhu 2003, Opt Lett 28:1194; least-squares DCT form of Ghiglia & Romero 1994, JOSA A 11:107) or
     scikit-image's quality-guided ``unwrap_phase`` (Herraez et al. 2002, Appl Opt 41:7437),
     then :func:`gaussian_highpass`, subtracting a mask-normalised Gaussian-smoothed copy
     (sigma [4, 4, 0] voxels) as in CLEAR-SWI (Eckstein et al. 2021, NeuroImage 237:118175).

4. Multi-echo phase: each echo high-passed, then combined into one frequency map weighted by
   magnitude x TE (Eckstein et al. 2021) and turned back into a phase at a reference TE
   (:func:`combine_phase`).
5. :func:`phase_mask` - ``"negative"`` (Haacke 2004: f = (pi + phi)/pi for phi < 0, else 1),
   ``"positive"``, or ``"tanh"`` (a smooth CLEAR-SWI-style scaling); SWI = magnitude x f^n.
6. :func:`minimum_intensity_projection` - sliding mIP over a slab in mm along k, or
   :func:`minimum_intensity_projection_si` - along the anatomical superior-inferior axis of
   any stored orientation (what the pipeline uses).

:func:`compute_swi` runs them in order and returns an :class:`SWIResult`. Given the grid's
IJK-to-RAS matrix it works in the acquisition frame (:func:`acquisition_slice_axis`): the
in-plane high-pass filters act in the plane of the acquired slices whatever order the array
was stored in, and the mIP runs along superior-inferior, so an axial, sagittal, coronal or
oblique copy of one scan gives the same SWI and mIP voxel for voxel.

Conventions: phase is right-handed radians (see :mod:`MotorBandSignLib.phase`), so
paramagnetic sources (iron, veins) have negative phase in the usual geometry. All work arrays
are float32 / complex64; FFTs use ``scipy.fft``. Slice-wise work (2D homodyne, in-plane
Gaussian, element-wise steps) runs in chunks of slices on a thread pool with one FFT worker
per thread, which keeps temporaries small and uses all cores for the element-wise steps too;
whole-volume FFTs use ``workers=-1``. Inputs are never written to.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

from .errors import InputError

# ----------------------------------------------------------------------------------------------
# Defaults (each with its source). params.py imports these names.
# ----------------------------------------------------------------------------------------------

#: High-pass route: "unwrap" (Laplacian unwrapping + Gaussian high-pass, CLEAR-SWI; Eckstein
#: et al. 2021, NeuroImage 237:118175, who found fewer artefacts than homodyne filtering, which
#: wrongly masks 2-3 % of brain area with small windows). Chosen on evidence here too
#: (``Testing/benchmarks/bench_swi.py --evidence``: synthetic 1 mm head with an air cavity, a
#: linear + quadratic background of several wraps, a 2 mm sheet of +0.05 ppm normal to B0;
#: TE 20 ms, 2 noise seeds; routes compared at equal half-power cut-off): Gaussian sigma 2
#: vs Hann 36/96 gave band CNR 5.2 vs 3.6, false-dark brain 0.7 vs 1.7 %, residual background
#: 0.033 vs 0.054 rad; at sigma 3 / 4 vs windows 24 / 18 homodyne marked 14 / 36 % of the
#: brain falsely dark, the unwrap route 1.2 / 1.5 %.
DEFAULT_HIGHPASS = "unwrap"

#: Side of the Hann window over central k-space for homodyne filtering, in k-space samples:
#: Haacke et al. 2004 (MRM 52:612) use central 32-64 px windows; 64 is the upper end, which
#: removes more background (CLEAR-SWI, Eckstein et al. 2021: small windows leave artefacts).
DEFAULT_HOMODYNE_WINDOW = 64

#: Homodyne filtering per slice in-plane (2) as in Haacke et al. 2004, or over the volume (3).
DEFAULT_HOMODYNE_DIMS = 2

#: Unwrapping for the "unwrap" route: fast-transform Laplacian unwrapping (Schofield & Zhu
#: 2003, Opt Lett 28:1194; here in the least-squares DCT form of Ghiglia & Romero 1994), the
#: fast option CLEAR-SWI offers (Eckstein et al. 2021); "skimage" selects the quality-guided
#: path-following unwrapper (Herraez et al. 2002, Appl Opt 41:7437), slower and, on the
#: evidence phantom, worse (it keeps the harmonic background that Laplacian unwrapping drops).
DEFAULT_UNWRAP_METHOD = "laplacian"

#: Gaussian high-pass sigma in voxels along (i, j, k): CLEAR-SWI's default [4, 4, 0]
#: (Eckstein et al. 2021, NeuroImage 237:118175), in-plane only.
DEFAULT_GAUSSIAN_SIGMA_IJK = (4.0, 4.0, 0.0)

#: Phase mask: "negative" (Haacke et al. 2004, MRM 52:612: f = (pi + phi)/pi for phi < 0, else
#: 1, right-handed phase; darkens paramagnetic iron and veins).
DEFAULT_MASK_TYPE = "negative"

#: Number of multiplications of the phase mask (Haacke et al. 2004: n = 4 maximises
#: contrast-to-noise; CLEAR-SWI's phase scaling strength default is also 4).
DEFAULT_MASK_POWER = 4

#: mIP slab thickness in mm: Haacke et al. 2004 project over 8-16 mm slabs (BRIEF.md); the
#: thin end keeps a cortical band from being covered by neighbouring veins. CLEAR-SWI uses
#: 7 slices (Eckstein et al. 2021).
DEFAULT_MIP_SLAB_MM = 8.0

#: Multi-echo magnitude combination: root of sum of squares (SNR optimal for equal noise per
#: echo; Eckstein et al. 2021 offer RSS and SNR weighting).
DEFAULT_MAGNITUDE_COMBINATION = "rss"

#: Voxel sizes within this relative tolerance count as equal when the slice (through-plane)
#: axis is read from the grid: a 3D GRE is acquired with its partition (slice) direction at the
#: coarsest resolution or, isotropic, with none (our choice; scanner rounding of nominal sizes
#: is far below 5 %).
ISOTROPIC_TOLERANCE = 0.05

#: Direction of the main field B0 in RAS. DICOM's patient coordinate system is fixed to the
#: equipment, its z axis along the bore (DICOM PS3.3 C.7.6.2.1.1, Image Position and Image
#: Orientation (Patient)), which is B0's direction in a cylindrical MR scanner; the RAS world of
#: NIfTI / Slicer differs from it by the sign of x and y only.
B0_DIRECTION_RAS = (0.0, 0.0, 1.0)

HIGHPASS_METHODS = ("homodyne", "unwrap")
UNWRAP_METHODS = ("laplacian", "skimage")
MASK_TYPES = ("negative", "positive", "tanh")
MAGNITUDE_COMBINATIONS = ("rss", "snr")

#: A voxel outside the signal mask still gets a Gaussian high-passed phase if at least this
#: share of its Gaussian neighbourhood is inside the mask (fills dark holes such as veins or
#: an iron band that fell below the mask threshold; an edge voxel just outside has < 0.5).
_SUPPORT_MIN_WEIGHT = 0.6

#: Homodyne, outside the signal mask: the high-passed phase is kept where the low-pass modulus
#: is at least this share of the median tissue magnitude (holes in tissue), else set to 0 (air,
#: where it is noise). Our choice, mirroring _SUPPORT_MIN_WEIGHT of the unwrap route.
_HOMODYNE_MIN_LOWPASS = 0.25

#: Voxels sampled (regularly) for the Otsu threshold and the tissue median: 256 k values
#: estimate both to well under 1 % and keep them off the time budget.
_MAX_SAMPLE = 1 << 18

#: Complex samples per chunk of slices (8 MB of complex64): temporaries stay small and below
#: glibc's mmap threshold so they are reused rather than page-faulted afresh.
_CHUNK_ELEMENTS = 1 << 20

_TWO_PI = np.float32(2 * np.pi)
_INV_TWO_PI = np.float32(1 / (2 * np.pi))


@dataclass
class SWIResult:
    """Outputs of :func:`compute_swi`, all float32 on the input grid ``(k, j, i)``.

    Attributes
    ----------
    swi : ndarray
        magnitude (optionally softplus scaled) x phase mask ^ n.
    mip : ndarray
        Sliding minimum intensity projection of ``swi`` along k (``swi`` itself if no slab).
    phase_hp : ndarray
        High-passed phase in radians, right-handed (combined over echoes at the reference TE).
    magnitude : ndarray
        Magnitude used (echo-combined for multi-echo input).
    signal_mask : ndarray of bool
        Voxels with signal (given or from :func:`signal_mask_from_magnitude`).
    qc : dict
        Settings used and checks: ``highpass``, ``mask_type``, ``mask_power``, ``n_echoes``,
        ``echo_times``, ``reference_te``, ``residual_fraction_over_half_pi`` (share of
        signal-mask voxels whose |phase_hp| > pi/2: a sign of unremoved background),
        ``mip_slices``, ``mip_slab_mm``, ``signal_fraction``, ``warnings`` and the route's
        parameters.
    """

    swi: np.ndarray
    mip: np.ndarray
    phase_hp: np.ndarray
    magnitude: np.ndarray
    signal_mask: np.ndarray
    qc: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _n_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _chunk_len(plane_elements: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, plane_elements))


def _for_chunks(n: int, chunk: int, fn) -> None:
    """Call ``fn(k0, k1)`` over [0, n) in chunks (at least one per thread), on a thread pool."""
    threads = _n_threads()
    chunk = max(1, min(chunk, -(-n // threads)))
    starts = list(range(0, n, chunk))
    nt = min(threads, len(starts))
    if nt <= 1:
        for s in starts:
            fn(s, min(s + chunk, n))
        return
    with ThreadPoolExecutor(max_workers=nt) as ex:
        for f in [ex.submit(fn, s, min(s + chunk, n)) for s in starts]:
            f.result()


def _wrap_inplace(x: np.ndarray) -> np.ndarray:
    """Wrap to [-pi, pi] in place: x -= 2 pi round(x / 2 pi) (faster than np.mod)."""
    t = x * _INV_TWO_PI
    np.rint(t, out=t)
    t *= _TWO_PI
    x -= t
    return x


def _hann_window(n: int, width: int) -> np.ndarray:
    """1D Hann window of ``width`` samples centred on DC in FFT order (no shift), float32."""
    width = int(min(max(width, 2), n))
    f = sfft.fftfreq(n, d=1.0 / n)  # integer frequency indices
    w = np.where(np.abs(f) < width / 2.0, 0.5 + 0.5 * np.cos(2 * np.pi * f / width), 0.0)
    return w.astype(np.float32)


def _masked_median(values: np.ndarray, mask: np.ndarray) -> float:
    """Median of ``values`` inside ``mask`` from a regular subsample of about 256 k voxels."""
    v = values.reshape(-1)
    m = mask.reshape(-1)
    step = max(1, v.size // _MAX_SAMPLE)
    s = v[::step][m[::step]]
    if s.size == 0:
        s = v[m]
    return float(np.median(s)) if s.size else 0.0


def _runs(window: np.ndarray) -> list:
    """Slices of the non-zero entries of an FFT-ordered window (one run, or two: +f and -f)."""
    idx = np.flatnonzero(window)
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks] + 1, idx[-1] + 1]
    return [slice(int(a), int(b)) for a, b in zip(starts, ends)]


def _filter2d_pruned(x: np.ndarray, wj: np.ndarray, wi: np.ndarray) -> np.ndarray:
    """``ifft2(fft2(x) * wj[:, None] * wi[None, :])`` over axes (1, 2) of a chunk, pruned.

    Only frequencies where the separable transfer function is non-zero are carried through
    the second axis: forward along i (full), keep the non-zero columns, forward and back along
    j on those alone, scatter, back along i. For a window covering a fraction f of each axis
    this costs about (1 + f) / 2 of a full fft2 + ifft2, with the same result. ``x`` is
    overwritten (it must be a complex64 scratch chunk). One FFT worker: chunks run on threads.
    """
    nb, nj, ni = x.shape
    runs_i, runs_j = _runs(wi), _runs(wj)
    a = sfft.fft(x, axis=2, workers=1, overwrite_x=True)
    cols = np.concatenate([a[:, :, r] for r in runs_i], axis=2)  # (nb, nj, n_kept_i)
    wi_kept = np.concatenate([wi[r] for r in runs_i])
    b = sfft.fft(cols, axis=1, workers=1, overwrite_x=True)
    e = np.zeros_like(b)
    for r in runs_j:
        np.multiply(b[:, r, :], wj[r, None] * wi_kept[None, :], out=e[:, r, :])
    e = sfft.ifft(e, axis=1, workers=1, overwrite_x=True)
    a.fill(0)
    o = 0
    for r in runs_i:
        n = r.stop - r.start
        a[:, :, r] = e[:, :, o:o + n]
        o += n
    return sfft.ifft(a, axis=2, workers=1, overwrite_x=True)


def _as_float32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

def _validate(magnitude, phase_rad, spacing_kji, echo_times):
    mag = np.asarray(magnitude)
    ph = np.asarray(phase_rad)
    for a, what in ((mag, "Magnitude"), (ph, "Phase")):
        if a.dtype.kind not in "iuf":
            raise InputError(
                f"{what} has data type {a.dtype}; give a real-valued array "
                "(for complex data pass np.abs(z) and np.angle(z))."
            )
        if a.ndim == 2:
            raise InputError(
                f"{what} is a 2D image {a.shape}; SWI needs a 3D volume (k, j, i) or multi-echo "
                "(echo, k, j, i). Load the whole series, or for a single slice add an axis: array[np.newaxis]."
            )
        if a.ndim not in (3, 4):
            raise InputError(
                f"{what} has {a.ndim} dimensions {a.shape}; expected (k, j, i) or (echo, k, j, i)."
            )
    if mag.shape != ph.shape:
        raise InputError(
            f"Magnitude and phase shapes differ: {mag.shape} vs {ph.shape}. Give both from the "
            "same acquisition (same grid and echo count), or resample one onto the other first."
        )
    for a, what in ((mag, "Magnitude"), (ph, "Phase")):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            n = int(np.count_nonzero(~np.isfinite(a)))
            raise InputError(
                f"{what} contains {n} NaN or infinite values. Replace them (e.g. np.nan_to_num) "
                "or crop them away before computing SWI."
            )
    if not np.any(mag):
        raise InputError(
            "Magnitude is all zero: there is no signal to weight. Check that the magnitude "
            "series (not an empty or mask image) was given."
        )
    sp = np.asarray(spacing_kji, dtype=np.float64).reshape(-1)
    if sp.size != 3 or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(
            f"spacing_kji must be three positive voxel sizes in mm (k, j, i), got {spacing_kji!r}. "
            "Use Volume.spacing_kji."
        )
    if mag.ndim == 3:
        mag, ph = mag[np.newaxis], ph[np.newaxis]
    n = mag.shape[0]
    tes = None
    if echo_times is not None:
        tes = np.asarray(echo_times, dtype=np.float64).reshape(-1)
        if tes.size != n:
            raise InputError(
                f"{tes.size} echo times given for {n} echo(es). Give one TE per echo, in the order "
                "of the leading array axis."
            )
        if not np.all(np.isfinite(tes)) or np.any(tes <= 0):
            raise InputError(f"Echo times must be positive numbers, got {list(tes)}.")
    elif n > 1:
        raise InputError(
            f"Multi-echo input ({n} echoes) needs echo times to combine the phase into one field "
            "map. Pass echo_times=[TE1, TE2, ...] (seconds, e.g. from the BIDS/dcm2niix JSON "
            "'EchoTime'), or give a single echo."
        )
    return mag, ph, tuple(float(s) for s in sp), tes


# ----------------------------------------------------------------------------------------------
# magnitude and mask
# ----------------------------------------------------------------------------------------------

def signal_mask_from_magnitude(magnitude) -> np.ndarray:
    """Boolean mask of voxels with signal: magnitude above an Otsu threshold.

    The threshold (Otsu 1979, IEEE Trans Syst Man Cybern 9:62) is found on the histogram of
    every voxel (256 bins), which does not depend on the order the voxels are stored in (a
    strided subsample would, and so would the mask of a sagittal copy of an axial scan); it
    separates the noise floor of air from tissue. Dark structures inside tissue that fall
    below it (veins, an iron band) are still high-passed: see :func:`gaussian_highpass`.
    """
    from skimage.filters import threshold_otsu

    m = _as_float32(magnitude)
    lo, hi = float(m.min()), float(m.max())
    if hi == lo:
        return np.ones(m.shape, dtype=bool)
    counts, edges = np.histogram(m, bins=256, range=(lo, hi))
    t = threshold_otsu(hist=(counts, 0.5 * (edges[:-1] + edges[1:])))
    return m > t


def _noise_sigma(mag: np.ndarray, mask: np.ndarray) -> float | None:
    """Noise level from the background (Rayleigh mean = sigma sqrt(pi/2)), None if no background."""
    bg = mag[~mask]
    if bg.size < 100:
        return None
    s = float(np.mean(bg)) / np.sqrt(np.pi / 2)
    return s if s > 0 else None


def combine_magnitude(magnitudes, method: str = DEFAULT_MAGNITUDE_COMBINATION, signal_mask=None) -> np.ndarray:
    """Combine echoes ``(echo, k, j, i)`` into one magnitude.

    Parameters
    ----------
    magnitudes : array_like
        Magnitude echoes, leading echo axis. Not modified.
    method : {"rss", "snr"}
        ``"rss"``: sqrt(sum m_e^2), SNR optimal for equal noise. ``"snr"``: each echo divided
        by its own background noise level before the RSS (for echoes with unequal noise),
        rescaled by the mean noise level; falls back to RSS without background.
    signal_mask : ndarray of bool, optional
        Signal voxels (needed by ``"snr"`` to find the background; computed if absent).

    References
    ----------
    Eckstein K et al. 2021, NeuroImage 237:118175 (CLEAR-SWI magnitude combination).
    """
    if method not in MAGNITUDE_COMBINATIONS:
        raise InputError(f"magnitude_combination must be one of {MAGNITUDE_COMBINATIONS}, got {method!r}.")
    m = _as_float32(magnitudes)
    if m.ndim == 3:
        return m
    if m.shape[0] == 1:
        return m[0]
    weights = np.ones(m.shape[0], dtype=np.float32)
    if method == "snr":
        mask = signal_mask
        if mask is None:
            rss = np.sqrt(np.einsum("e...,e...->...", m, m))
            mask = signal_mask_from_magnitude(rss)
        sig = [_noise_sigma(e, mask) for e in m]
        if all(s is not None for s in sig):
            mean_sig = float(np.mean(sig))
            weights = np.array([mean_sig / s for s in sig], dtype=np.float32)
    out = np.zeros(m.shape[1:], dtype=np.float32)
    tmp = np.empty_like(out)
    for e in range(m.shape[0]):
        np.multiply(m[e], weights[e], out=tmp)
        np.square(tmp, out=tmp)
        out += tmp
    np.sqrt(out, out=out)
    return out


# ----------------------------------------------------------------------------------------------
# high-pass: homodyne
# ----------------------------------------------------------------------------------------------

def homodyne_highpass(phase, magnitude=None, window: int = DEFAULT_HOMODYNE_WINDOW,
                      dims: int = DEFAULT_HOMODYNE_DIMS, min_lowpass: float = 0.0,
                      signal_mask=None) -> np.ndarray:
    """High-pass phase by complex division by a Hann-windowed low-pass copy (homodyne filter).

    ``phase_hp = angle(z * conj(LP(z)))`` with ``z = magnitude * exp(i phase)`` and LP keeping
    central k-space under a separable Hann window of ``window`` samples per axis.

    Parameters
    ----------
    phase : array_like, shape (k, j, i)
        Phase in radians (wrapped or not). Not modified.
    magnitude : array_like, optional
        Magnitude weighting the complex image (1 if None).
    window : int
        Hann window side in k-space samples (clamped to the matrix size), default
        :data:`DEFAULT_HOMODYNE_WINDOW`.
    dims : {2, 3}
        2: per slice in the (j, i) plane (Haacke et al. 2004); 3: over the volume.
    min_lowpass : float
        Outside ``signal_mask``, voxels whose low-pass modulus is below this get a high-passed
        phase of 0: there the phase is noise (air) and its value would change with any
        rounding. Dark holes inside tissue (veins, an iron band below the mask threshold) keep
        their phase, as the low-pass there is carried by the tissue around them. Inside the
        mask every voxel is kept (textbook homodyne). 0 keeps every voxel.
    signal_mask : array_like of bool, optional
        Voxels with signal (required for ``min_lowpass`` to act).

    Returns
    -------
    ndarray of float32
        High-passed phase in (-pi, pi].

    References
    ----------
    Haacke EM, Xu Y, Cheng YC, Reichenbach JR. Susceptibility weighted imaging (SWI).
    Magn Reson Med 2004;52:612-618.
    """
    if dims not in (2, 3):
        raise InputError(f"homodyne_dims must be 2 (in-plane, per slice) or 3 (volume), got {dims!r}.")
    window = int(window)
    if window < 2:
        raise InputError(f"homodyne_window must be at least 2 k-space samples, got {window}.")
    ph = _as_float32(phase)
    mag = None if magnitude is None else _as_float32(magnitude)
    nk, nj, ni = ph.shape
    wj, wi = _hann_window(nj, window), _hann_window(ni, window)
    w2 = wj[:, None] * wi[None, :]
    out = np.empty(ph.shape, dtype=np.float32)

    def fill_z(z, k0, k1):
        c = np.cos(ph[k0:k1])
        if mag is not None:
            c *= mag[k0:k1]
        z.real = c
        np.sin(ph[k0:k1], out=c)
        if mag is not None:
            c *= mag[k0:k1]
        z.imag = c

    floor2 = np.float32(min_lowpass) ** 2
    smask = None if signal_mask is None else np.asarray(signal_mask, dtype=bool)
    if smask is not None and smask.shape != ph.shape:
        raise InputError(f"signal_mask shape {smask.shape} differs from the phase shape {ph.shape}.")

    def finish(z, lp, k0, k1):
        weak = None
        if floor2 > 0 and smask is not None:
            a = np.square(lp.real)
            a += np.square(lp.imag)
            weak = a < floor2
            weak &= ~smask[k0:k1]
        np.conjugate(lp, out=lp)
        lp *= z
        o = out[k0:k1]
        np.arctan2(lp.imag, lp.real, out=o)
        if weak is not None:
            o[weak] = 0.0

    if dims == 2:
        # Pruned 2D FFT: only the central columns/rows under the window are transformed along
        # the second axis, so the pair costs about half of a full fft2 + ifft2 (same result).
        def work(k0, k1):
            z = np.empty((k1 - k0, nj, ni), dtype=np.complex64)
            fill_z(z, k0, k1)
            lp = _filter2d_pruned(z.copy(), wj, wi)
            finish(z, lp, k0, k1)

        _for_chunks(nk, _chunk_len(nj * ni), work)
        return out

    # 3D: one volume FFT pair; z is rebuilt chunk-wise afterwards instead of being kept.
    z = np.empty(ph.shape, dtype=np.complex64)
    _for_chunks(nk, _chunk_len(nj * ni), lambda k0, k1: fill_z(z[k0:k1], k0, k1))
    spec = sfft.fftn(z, workers=-1, overwrite_x=True)
    del z
    wk = _hann_window(nk, window)

    def win(k0, k1):
        spec[k0:k1] *= w2
        spec[k0:k1] *= wk[k0:k1, None, None]

    _for_chunks(nk, _chunk_len(nj * ni), win)
    lp = sfft.ifftn(spec, workers=-1, overwrite_x=True)
    del spec

    def work3(k0, k1):
        zc = np.empty((k1 - k0, nj, ni), dtype=np.complex64)
        fill_z(zc, k0, k1)
        finish(zc, lp[k0:k1], k0, k1)

    _for_chunks(nk, _chunk_len(nj * ni), work3)
    return out


# ----------------------------------------------------------------------------------------------
# high-pass: unwrap + Gaussian
# ----------------------------------------------------------------------------------------------

def laplacian_unwrap(phase, spacing_kji=(1.0, 1.0, 1.0), mask=None) -> np.ndarray:
    """Unwrap phase by least squares with the fast (cosine-transform) Laplacian solver.

    The Laplacian of the true phase is built from wrapped neighbour differences,
    ``L = sum_a [W(phi(x + e_a) - phi(x)) - W(phi(x) - phi(x - e_a))] / h_a^2`` (zero
    difference across the array faces: Neumann boundaries), and inverted with the
    eigenvalues of the discrete Neumann Laplacian in the DCT-II domain (one real transform
    pair). Where neighbour differences stay below pi this is exact up to a constant (a linear
    ramp included); noise regions add a smooth error, harmonic inside tissue, that the later
    high-pass removes.

    Parameters
    ----------
    phase : array_like, shape (k, j, i)
        Wrapped phase in radians. Not modified.
    spacing_kji : sequence of 3 float
        Voxel size in mm (k, j, i).
    mask : array_like of bool, optional
        Voxels whose phase is signal. Differences touching a voxel outside are set to 0, so
        noise (air) adds nothing to the Laplacian and tiny changes of noise phase (where a
        difference sits at +-pi) cannot flip 2 pi jumps into the solution.

    Returns
    -------
    ndarray of float32
        Unwrapped phase with zero mean over the array.

    References
    ----------
    Schofield MA, Zhu Y. Fast phase unwrapping algorithm for interferometric applications.
    Opt Lett 2003;28:1194-1196. Ghiglia DC, Romero LA. Robust two-dimensional weighted and
    unweighted phase unwrapping that uses fast transforms and iterative methods.
    J Opt Soc Am A 1994;11:107-117.
    """
    ph = _as_float32(phase)
    nk, nj, ni = ph.shape
    m = None if mask is None else np.asarray(mask, dtype=bool)
    if m is not None and m.shape != ph.shape:
        raise InputError(f"mask shape {m.shape} differs from the phase shape {ph.shape}.")
    inv_h2 = [np.float32(1.0 / float(h) ** 2) for h in spacing_kji]
    lap = np.empty(ph.shape, dtype=np.float32)

    def diffs(k0, k1):
        # forward differences g(x) = W(phi(x+1) - phi(x)), g = 0 at the last index (Neumann);
        # L(x) = g(x) - g(x-1) with g(-1) = 0.
        lo, hi = max(k0 - 1, 0), min(k1 + 1, nk)
        # wrap the chunk first: differences of values within one turn carry only the input's own
        # rounding, not that of 2 pi multiples (keeps phase + 2 pi k invariance at float32 level)
        ext = _wrap_inplace(ph[lo:hi].copy())
        out = lap[k0:k1]
        g = np.zeros((k1 - k0 + 1,) + ph.shape[1:], dtype=np.float32)  # g(k0-1) .. g(k1-1)
        a = 1 if k0 == 0 else 0  # g(-1) = 0 stays zero
        b = k1 - k0 + 1 if k1 < nk else k1 - k0  # g(nk-1) = 0 stays zero
        # g index t corresponds to x = k0 - 1 + t, needing phi(x+1) - phi(x); ext starts at lo
        off = (k0 - 1) - lo
        np.subtract(ext[a + off + 1:b + off + 1], ext[a + off:b + off], out=g[a:b])
        _wrap_inplace(g[a:b])
        if m is not None:
            mext = m[lo:hi]
            g[a:b] *= mext[a + off + 1:b + off + 1] & mext[a + off:b + off]
        np.subtract(g[1:], g[:-1], out=out)
        out *= inv_h2[0]
        blk = ext[k0 - lo:k1 - lo]
        for ax, w in ((1, inv_h2[1]), (2, inv_h2[2])):
            n = blk.shape[ax]
            if n < 2:
                continue

            def s(p, q, ax=ax):
                sl = [slice(None)] * 3
                sl[ax] = slice(p, q)
                return tuple(sl)

            g = np.subtract(blk[s(1, n)], blk[s(0, n - 1)])
            _wrap_inplace(g)
            g *= w
            if m is not None:
                mb = m[k0:k1]
                g *= mb[s(1, n)] & mb[s(0, n - 1)]
            out[s(0, n - 1)] += g
            out[s(1, n)] -= g

    _for_chunks(nk, _chunk_len(nj * ni), diffs)
    spec = sfft.dctn(lap, type=2, norm="ortho", workers=-1, overwrite_x=True)
    del lap
    ek = ((2 * np.cos(np.pi * np.arange(nk) / nk) - 2) * inv_h2[0]).astype(np.float32)
    ej = ((2 * np.cos(np.pi * np.arange(nj) / nj) - 2) * inv_h2[1]).astype(np.float32)
    ei = ((2 * np.cos(np.pi * np.arange(ni) / ni) - 2) * inv_h2[2]).astype(np.float32)
    eji = ej[:, None] + ei[None, :]

    def solve(k0, k1):
        d = eji[None, :, :] + ek[k0:k1, None, None]
        if k0 == 0:
            d[0, 0, 0] = 1.0
        np.reciprocal(d, out=d)
        if k0 == 0:
            d[0, 0, 0] = 0.0
        spec[k0:k1] *= d

    _for_chunks(nk, _chunk_len(nj * ni), solve)
    out = sfft.idctn(spec, type=2, norm="ortho", workers=-1, overwrite_x=True)
    return out.astype(np.float32, copy=False)


def unwrap(phase, spacing_kji=(1.0, 1.0, 1.0), method: str = DEFAULT_UNWRAP_METHOD, signal_mask=None) -> np.ndarray:
    """Unwrap phase with ``method`` ``"laplacian"`` (:func:`laplacian_unwrap`) or ``"skimage"``.

    ``"skimage"`` calls :func:`skimage.restoration.unwrap_phase` (quality-guided path
    following; Herraez et al. 2002, Appl Opt 41:7437), restricted to ``signal_mask`` when given
    (0 outside). It is exact where the path exists but much slower.
    """
    if method not in UNWRAP_METHODS:
        raise InputError(f"unwrap_method must be one of {UNWRAP_METHODS}, got {method!r}.")
    if method == "laplacian":
        return laplacian_unwrap(phase, spacing_kji, signal_mask)
    from skimage.restoration import unwrap_phase

    ph = np.asarray(phase, dtype=np.float32)
    # skimage expects wrapped input in [-pi, pi)
    w = _wrap_inplace(ph.copy())
    if signal_mask is not None:
        res = unwrap_phase(np.ma.masked_array(w, mask=~np.asarray(signal_mask, bool)))
        return np.ma.filled(res, 0.0).astype(np.float32)
    return unwrap_phase(w).astype(np.float32)


def _gaussian_transfer(n: int, sigma: float) -> np.ndarray:
    """Transfer function of a Gaussian of ``sigma`` voxels on an n-point axis (FFT order),
    set to 0 below 1e-7 (beyond float32 resolution) so the pruned FFT can skip it."""
    f = sfft.fftfreq(n).astype(np.float64)
    g = np.exp(-2.0 * (np.pi * sigma * f) ** 2)
    g[g < 1e-7] = 0.0
    return g.astype(np.float32)


def gaussian_highpass(phase_unwrapped, signal_mask, sigma_ijk=DEFAULT_GAUSSIAN_SIGMA_IJK) -> np.ndarray:
    """Subtract a mask-normalised Gaussian-smoothed copy: ``phi - G(phi m) / G(m)``.

    Normalising by the smoothed mask keeps the air outside the mask from pulling the smooth
    copy towards zero at the brain edge (normalised convolution; Knutsson & Westin 1993, CVPR;
    as used for CLEAR-SWI's high-pass, Eckstein et al. 2021). Both convolutions are done in one
    complex FFT (phi m in the real part, m in the imaginary part; the kernel is real and even).
    Axes are zero-padded by 4 sigma only where the mask touches the array edge.

    Parameters
    ----------
    phase_unwrapped : array_like, shape (k, j, i)
        Unwrapped phase (rad). Not modified.
    signal_mask : array_like of bool, same shape
        Voxels whose phase is trusted.
    sigma_ijk : sequence of 3 float
        Gaussian sigma in voxels along (i, j, k); default [4, 4, 0] (CLEAR-SWI). A zero sigma
        leaves that axis unsmoothed (then the work runs slice by slice).

    Returns
    -------
    ndarray of float32
        High-passed phase; 0 where less than 60 % of the Gaussian neighbourhood is in the mask
        (outside the head), so dark holes inside the mask are still filtered.
    """
    ph = _as_float32(phase_unwrapped)
    m = np.asarray(signal_mask, dtype=bool)
    if m.shape != ph.shape:
        raise InputError(f"signal_mask shape {m.shape} differs from the phase shape {ph.shape}.")
    sig = np.asarray(sigma_ijk, dtype=np.float64).reshape(-1)
    if sig.size != 3 or np.any(sig < 0) or not np.all(np.isfinite(sig)):
        raise InputError(f"gaussian_sigma_ijk must be three non-negative numbers (i, j, k), got {sigma_ijk!r}.")
    sig_kji = sig[::-1]
    if not np.any(sig_kji > 0):
        out = ph.copy()
        out[~m] = 0.0
        return out
    nk, nj, ni = ph.shape
    axes = tuple(a for a in range(3) if sig_kji[a] > 0)
    touches = (
        m[0].any() or m[-1].any(),
        m[:, 0].any() or m[:, -1].any(),
        m[:, :, 0].any() or m[:, :, -1].any(),
    )
    padded = []
    for a, n in enumerate(ph.shape):
        if a in axes and touches[a]:
            padded.append(sfft.next_fast_len(n + int(np.ceil(4 * sig_kji[a]))))
        else:
            padded.append(n)
    trans = [_gaussian_transfer(padded[a], sig_kji[a]) if a in axes else None for a in range(3)]
    out = np.empty(ph.shape, dtype=np.float32)
    thr = np.float32(_SUPPORT_MIN_WEIGHT)

    def finish(buf, k0, k1):
        num = buf.real[:, :nj, :ni]
        den = buf.imag[:, :nj, :ni]
        support = den >= thr
        support |= m[k0:k1]
        d = np.maximum(den, np.float32(1e-6))
        o = out[k0:k1]
        np.divide(num, d, out=o)
        np.subtract(ph[k0:k1], o, out=o)
        o[~support] = 0.0

    def fill(buf, k0, k1):
        np.multiply(ph[k0:k1], m[k0:k1], out=buf.real[:, :nj, :ni])
        buf.imag[:, :nj, :ni] = m[k0:k1]

    if 0 not in axes:  # in-plane only: slice chunks on threads, pruned 2D FFT
        tj = trans[1] if trans[1] is not None else np.ones(padded[1], np.float32)
        ti = trans[2] if trans[2] is not None else np.ones(padded[2], np.float32)

        def work(k0, k1):
            buf = np.zeros((k1 - k0, padded[1], padded[2]), dtype=np.complex64)
            fill(buf, k0, k1)
            buf = _filter2d_pruned(buf, tj, ti)
            finish(buf, k0, k1)

        _for_chunks(nk, _chunk_len(padded[1] * padded[2]), work)
        return out

    buf = np.zeros(tuple(padded), dtype=np.complex64)
    _for_chunks(nk, _chunk_len(nj * ni), lambda k0, k1: fill(buf[k0:k1], k0, k1))
    buf = sfft.fftn(buf, axes=axes, workers=-1, overwrite_x=True)
    for a in axes:
        shp = [1, 1, 1]
        shp[a] = padded[a]
        buf *= trans[a].reshape(shp)
    buf = sfft.ifftn(buf, axes=axes, workers=-1, overwrite_x=True)
    _for_chunks(nk, _chunk_len(nj * ni), lambda k0, k1: finish(buf[k0:k1], k0, k1))
    return out


# ----------------------------------------------------------------------------------------------
# multi-echo phase, phase mask, mIP
# ----------------------------------------------------------------------------------------------

def combine_phase(phases_hp, magnitudes, echo_times, reference_te=None) -> np.ndarray:
    """Combine high-passed echo phases into one phase at ``reference_te``.

    Frequency map ``B = sum_e w_e (phi_e / TE_e) / sum_e w_e`` with ``w_e = m_e TE_e``
    (magnitude x TE weighting, Eckstein et al. 2021, NeuroImage 237:118175), i.e.
    ``B = sum_e m_e phi_e / sum_e m_e TE_e``; returned as ``B * reference_te``.

    Parameters
    ----------
    phases_hp, magnitudes : array_like, shape (echo, k, j, i)
        High-passed phase (rad) and magnitude per echo. Not modified.
    echo_times : sequence of float
        One TE per echo (any time unit, the same as ``reference_te``).
    reference_te : float, optional
        TE of the returned phase; default the longest TE (the strongest phase contrast, with
        the noise of the combination).
    """
    p = _as_float32(phases_hp)
    m = _as_float32(magnitudes)
    tes = np.asarray(echo_times, dtype=np.float64)
    te_ref = float(tes.max() if reference_te is None else reference_te)
    num = np.zeros(p.shape[1:], dtype=np.float32)
    den = np.zeros(p.shape[1:], dtype=np.float32)
    tmp = np.empty_like(num)
    for e in range(p.shape[0]):
        np.multiply(m[e], p[e], out=tmp)
        num += tmp
        np.multiply(m[e], np.float32(tes[e]), out=tmp)
        den += tmp
    np.maximum(den, np.float32(np.finfo(np.float32).tiny), out=den)
    num /= den
    num *= np.float32(te_ref)
    return num


def phase_mask(phase_hp, mask_type: str = DEFAULT_MASK_TYPE, power: float = DEFAULT_MASK_POWER) -> np.ndarray:
    """Phase mask raised to its power: the factor that multiplies the magnitude.

    Parameters
    ----------
    phase_hp : array_like
        High-passed right-handed phase in radians. Not modified.
    mask_type : {"negative", "positive", "tanh"}
        ``"negative"`` (Haacke et al. 2004): f = (pi + phi)/pi for phi < 0, else 1 (clipped
        to [0, 1]); darkens paramagnetic sources in a right-handed system. ``"positive"``:
        f = (pi - phi)/pi for phi > 0, else 1 (diamagnetic sources, or left-handed data).
        ``"tanh"``: a smooth negative-phase mask f = 1 + tanh(power * phi / pi) for phi < 0,
        else 1, where ``power`` is the strength (default 4, as CLEAR-SWI's phase-scaling
        strength, Eckstein et al. 2021); it is not raised to a further power.
    power : float
        n in f^n (Haacke et al. 2004: n = 4), or the tanh strength.

    Returns
    -------
    ndarray of float32 in [0, 1]
    """
    if mask_type not in MASK_TYPES:
        raise InputError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}.")
    power = float(power)
    if not np.isfinite(power) or power <= 0:
        raise InputError(f"mask_power must be a positive number, got {power!r}.")
    p = _as_float32(phase_hp)
    if mask_type == "tanh":
        f = np.minimum(p, np.float32(0.0))
        f *= np.float32(power / np.pi)
        np.tanh(f, out=f)
        f += np.float32(1.0)
        return f
    if mask_type == "negative":
        f = p * np.float32(1.0 / np.pi)
        f += np.float32(1.0)
    else:
        f = p * np.float32(-1.0 / np.pi)
        f += np.float32(1.0)
    np.clip(f, np.float32(0.0), np.float32(1.0), out=f)
    if power == 4.0:
        np.square(f, out=f)
        np.square(f, out=f)
    elif power == 2.0:
        np.square(f, out=f)
    elif power != 1.0:
        np.power(f, np.float32(power), out=f)
    return f


def softplus_scale(magnitude, signal_mask=None, level_percentile: float = 90.0, softness: float = 0.1) -> np.ndarray:
    """Compress bright magnitude smoothly towards a tissue level (soft ceiling).

    ``m' = o - softplus_k(o - m)`` with ``softplus_k(x) = log(1 + exp(k x)) / k``,
    ``o`` the ``level_percentile`` of the magnitude inside ``signal_mask`` and ``k = 1 / (softness
    o)``: below ``o`` the magnitude is kept (dark contrast stays linear), above it grows only
    logarithmically, so hyperintensities (CSF, vessels, receive bias) do not dominate the SWI.
    Our form of the softplus magnitude scaling option of CLEAR-SWI (Eckstein et al. 2021,
    NeuroImage 237:118175), whose exact parameters we did not reproduce.
    """
    m = _as_float32(magnitude)
    vals = m[signal_mask] if signal_mask is not None and np.any(signal_mask) else m[m > 0]
    if vals.size == 0:
        return m.copy()
    o = np.float32(np.percentile(vals, level_percentile))
    if o <= 0:
        return m.copy()
    k = np.float32(1.0 / (softness * float(o)))
    x = o - m
    x *= k
    np.logaddexp(np.float32(0.0), x, out=x)  # log(1 + exp(kx))
    x /= k
    np.subtract(o, x, out=x)
    np.maximum(x, np.float32(0.0), out=x)
    return x


def minimum_intensity_projection(image, spacing_k_mm: float, slab_mm: float = DEFAULT_MIP_SLAB_MM):
    """Sliding minimum intensity projection along k (axis 0) over a slab in mm, same grid.

    The slab covers the nearest odd number of slices to ``slab_mm / spacing_k_mm`` (at least
    1), centred on each slice; at the ends the window is clipped (the same as repeating the
    edge slice, ``scipy.ndimage.minimum_filter1d`` mode "nearest", against which it is
    tested). Haacke et al. 2004 (MRM 52:612) project over 8-16 mm.

    Returns
    -------
    mip : ndarray of float32
    n_slices : int
        Slices per slab actually used.
    """
    img = _as_float32(image)
    if img.ndim != 3:
        raise InputError(f"mIP needs a 3D volume (k, j, i), got shape {img.shape}.")
    if spacing_k_mm <= 0:
        raise InputError(f"Slice spacing must be positive, got {spacing_k_mm}.")
    if slab_mm is None or slab_mm <= 0:
        return img, 1
    r = float(slab_mm) / float(spacing_k_mm)
    n = max(1, 2 * int(np.ceil((r - 1.0) / 2.0 - 0.5)) + 1)  # nearest odd count, ties down
    if n == 1:
        return img.copy(), 1
    out = np.empty_like(img)
    nk = img.shape[0]
    h = n // 2

    def work(k0, k1):
        # slices are contiguous planes: reducing over a few of them is cache friendly and
        # several times faster than a strided 1D filter along axis 0; the window is clipped
        # at the ends, which for a minimum equals repeating the edge slice ("nearest").
        for k in range(k0, k1):
            np.minimum.reduce(img[max(0, k - h):min(nk, k + h + 1)], axis=0, out=out[k])

    _for_chunks(nk, max(1, -(-nk // (4 * _n_threads()))), work)
    return out, n


def _axis_steps_kji(ijk_to_ras, direction_ras) -> np.ndarray:
    """Array-index change (k, j, i) per mm moved along ``direction_ras``."""
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise InputError(f"ijk_to_ras must be an invertible 4x4 matrix, got {m.tolist()!r}.")
    u = np.asarray(direction_ras, dtype=np.float64)
    u = u / np.linalg.norm(u)
    return (np.linalg.inv(m[:3, :3]) @ u)[::-1]


def b0_direction_kji(ijk_to_ras) -> np.ndarray:
    """Unit vector of B0 in array-axis coordinates (k, j, i), from the grid's geometry.

    B0 is along RAS S (:data:`B0_DIRECTION_RAS`); the vector is in index units scaled to length
    1, as :func:`MotorBandSignLib.physics.dipole_kernel` takes it on a grid of its own spacing.

    Examples
    --------
    >>> b0_direction_kji(np.diag([1.0, 1.0, 1.0, 1.0])).round(3).tolist()
    [1.0, 0.0, 0.0]
    """
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    spacing_ijk = np.linalg.norm(m[:3, :3], axis=0)
    d = _axis_steps_kji(m, B0_DIRECTION_RAS) * spacing_ijk[::-1]  # direction cosines per array axis
    return d / np.linalg.norm(d)


def acquisition_slice_axis(ijk_to_ras) -> int:
    """Array axis (0 = k, 1 = j, 2 = i) of the acquired slices' normal, from the geometry.

    The axis with the coarsest voxel size when one is coarser than the others by more than
    :data:`ISOTROPIC_TOLERANCE` (the partition direction of a 3D acquisition); otherwise the
    grid cannot tell, and the axis closest to B0 (superior-inferior) is taken: SWI is acquired
    transverse (Haacke et al. 2004, MRM 52:612; Reichenbach et al. 1997, Radiology 204:272),
    and for an isotropic reformat this picks the same plane in every stored orientation.

    Examples
    --------
    >>> acquisition_slice_axis(np.diag([0.9, 0.9, 2.0, 1.0]))   # axial, 2 mm slices
    0
    >>> sag = np.array([[0, 0, 2.0, 0], [0.9, 0, 0, 0], [0, 0.9, 0, 0], [0, 0, 0, 1]])
    >>> acquisition_slice_axis(sag)                              # sagittal, 2 mm slices along i
    2
    """
    m = np.asarray(ijk_to_ras, dtype=np.float64)
    spacing_kji = np.linalg.norm(m[:3, :3], axis=0)[::-1]
    coarsest = int(np.argmax(spacing_kji))
    others = np.delete(spacing_kji, coarsest)
    if spacing_kji[coarsest] > (1.0 + ISOTROPIC_TOLERANCE) * others.max():
        return coarsest
    return int(np.argmax(np.abs(b0_direction_kji(m))))


def minimum_intensity_projection_si(image, ijk_to_ras, slab_mm: float = DEFAULT_MIP_SLAB_MM):
    """Sliding minimum intensity projection along the anatomical superior-inferior axis.

    For each voxel, the minimum over voxels on the line through it along RAS S, within
    +/- ``slab_mm`` / 2. Samples are taken one voxel apart along the array axis closest to S
    and at the nearest voxel off it (no interpolation: the mIP keeps stored values); the
    number of samples is the nearest odd count to ``slab_mm`` over that step, as in
    :func:`minimum_intensity_projection`, to which it reduces (same values) when an array axis
    is parallel to S. Edges repeat the edge voxel (mode "nearest").

    Parameters
    ----------
    image : ndarray, shape (k, j, i)
    ijk_to_ras : ndarray, shape (4, 4)
        The grid's geometry (``Volume.ijk_to_ras``).
    slab_mm : float or None
        Slab thickness in mm; None or 0 returns a copy of ``image``.

    Returns
    -------
    mip : ndarray of float32
    n_samples : int
        Samples per slab.
    step_mm : float
        Distance along S between samples.
    """
    img = _as_float32(image)
    if img.ndim != 3:
        raise InputError(f"mIP needs a 3D volume (k, j, i), got shape {img.shape}.")
    d = _axis_steps_kji(ijk_to_ras, B0_DIRECTION_RAS)  # index change per mm along S
    lead = int(np.argmax(np.abs(d)))
    step_mm = 1.0 / abs(float(d[lead]))
    off = np.delete(np.abs(d), lead)
    if np.all(off * step_mm < 1e-6):  # an array axis runs along S: the fast per-slice path
        moved = np.moveaxis(img, lead, 0)
        mip, n = minimum_intensity_projection(moved, step_mm, slab_mm)
        return np.ascontiguousarray(np.moveaxis(mip, 0, lead)), n, step_mm
    if slab_mm is None or slab_mm <= 0:
        return img.copy(), 1, step_mm
    r = float(slab_mm) / step_mm
    n = max(1, 2 * int(np.ceil((r - 1.0) / 2.0 - 0.5)) + 1)
    out = img.copy()
    idx = [np.arange(s) for s in img.shape]
    for m in range(-(n // 2), n // 2 + 1):
        if m == 0:
            continue
        shift = np.rint(m * step_mm * d).astype(int)
        sampled = img[np.ix_(*[np.clip(ix + sh, 0, len(ix) - 1) for ix, sh in zip(idx, shift)])]
        np.minimum(out, sampled, out=out)
    return out, n, step_mm


# ----------------------------------------------------------------------------------------------
# the pipeline step
# ----------------------------------------------------------------------------------------------

def compute_swi(
    magnitude,
    phase_rad,
    spacing_kji,
    *,
    echo_times=None,
    highpass: str = DEFAULT_HIGHPASS,
    homodyne_window: int = DEFAULT_HOMODYNE_WINDOW,
    homodyne_dims: int = DEFAULT_HOMODYNE_DIMS,
    unwrap_method: str = DEFAULT_UNWRAP_METHOD,
    gaussian_sigma_ijk=DEFAULT_GAUSSIAN_SIGMA_IJK,
    mask_type: str = DEFAULT_MASK_TYPE,
    mask_power: float = DEFAULT_MASK_POWER,
    softplus: bool = False,
    mip_slab_mm: float | None = DEFAULT_MIP_SLAB_MM,
    signal_mask=None,
    magnitude_combination: str = DEFAULT_MAGNITUDE_COMBINATION,
    reference_te: float | None = None,
    ijk_to_ras=None,
) -> SWIResult:
    """Susceptibility-weighted image, its mIP and the high-passed phase.

    Parameters
    ----------
    magnitude, phase_rad : array_like, shape (k, j, i) or (echo, k, j, i)
        Magnitude and right-handed phase in radians (see :mod:`MotorBandSignLib.phase`).
        Not modified.
    spacing_kji : sequence of 3 float
        Voxel size in mm along (k, j, i) (``Volume.spacing_kji``).
    echo_times : sequence of float, optional
        One TE per echo; required for more than one echo.
    highpass : {"unwrap", "homodyne"}
        Route, default :data:`DEFAULT_HIGHPASS`.
    homodyne_window, homodyne_dims : int
        Hann window side (k-space samples) and 2 (in-plane) or 3 (volume) for "homodyne".
    unwrap_method : {"laplacian", "skimage"}
        Unwrapper for "unwrap".
    gaussian_sigma_ijk : sequence of 3 float
        Gaussian high-pass sigma in voxels (i, j, k) for "unwrap".
    mask_type, mask_power
        See :func:`phase_mask`.
    softplus : bool
        Apply :func:`softplus_scale` to the magnitude before weighting.
    mip_slab_mm : float or None
        mIP slab; None or 0 gives ``mip = swi``.
    signal_mask : array_like of bool, optional
        Voxels with signal; default :func:`signal_mask_from_magnitude` of the magnitude.
    magnitude_combination : {"rss", "snr"}
        Multi-echo magnitude combination (:func:`combine_magnitude`).
    reference_te : float, optional
        TE of the combined phase (multi-echo), default the longest TE.
    ijk_to_ras : ndarray, shape (4, 4), optional
        The grid's geometry. Given, the work runs in the acquisition frame: the arrays are
        viewed with the slice axis (:func:`acquisition_slice_axis`) first, so in-plane
        filters (``gaussian_sigma_ijk`` with k = the slice axis, 2D homodyne) act in the
        acquired plane, and the mIP runs along superior-inferior
        (:func:`minimum_intensity_projection_si`). Without it, array axis 0 is the slice
        axis and the mIP runs along it.

    Returns
    -------
    SWIResult

    Raises
    ------
    InputError
        2D or non-numeric input, shape mismatch, NaN/inf, all-zero magnitude, multi-echo
        without echo times, unknown options.

    References
    ----------
    Haacke EM et al. 2004, Magn Reson Med 52:612-618 (SWI, homodyne, phase mask, mIP).
    Eckstein K et al. 2021, NeuroImage 237:118175 (CLEAR-SWI: unwrap + Gaussian high-pass,
    multi-echo combination, tanh and softplus scaling).
    """
    if highpass not in HIGHPASS_METHODS:
        raise InputError(f"highpass must be one of {HIGHPASS_METHODS}, got {highpass!r}.")
    if unwrap_method not in UNWRAP_METHODS:
        raise InputError(f"unwrap_method must be one of {UNWRAP_METHODS}, got {unwrap_method!r}.")
    if mask_type not in MASK_TYPES:
        raise InputError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}.")
    mags, phs, spacing, tes = _validate(magnitude, phase_rad, spacing_kji, echo_times)
    order = (0, 1, 2)
    if ijk_to_ras is not None:
        geometry_spacing = tuple(np.linalg.norm(np.asarray(ijk_to_ras, dtype=np.float64)[:3, :3], axis=0)[::-1])
        if not np.allclose(geometry_spacing, spacing, rtol=1e-4):
            raise InputError(f"spacing_kji {spacing} does not match the voxel size {geometry_spacing} of ijk_to_ras.")
        ax = acquisition_slice_axis(ijk_to_ras)
        order = (ax,) + tuple(a for a in (0, 1, 2) if a != ax)
    if order != (0, 1, 2):  # views in the acquisition frame (copied to contiguous once)
        mags = np.ascontiguousarray(mags.transpose((0,) + tuple(a + 1 for a in order)))
        phs = np.ascontiguousarray(phs.transpose((0,) + tuple(a + 1 for a in order)))
        spacing = tuple(spacing[a] for a in order)
        if signal_mask is not None:
            signal_mask = np.ascontiguousarray(np.asarray(signal_mask).transpose(order))
    n_echoes = mags.shape[0]
    warnings: list[str] = []

    if np.min(mags) < 0:
        warnings.append("Magnitude had negative values (interpolation?); they were set to 0.")
        mags = np.maximum(mags, 0, dtype=np.float32)
    mag_f = mags.astype(np.float32, copy=False)
    mag = combine_magnitude(mag_f, magnitude_combination) if n_echoes > 1 else mag_f[0]

    if signal_mask is None:
        mask = signal_mask_from_magnitude(mag)
    else:
        mask = np.asarray(signal_mask).astype(bool, copy=False)
        if mask.shape != mag.shape:
            raise InputError(
                f"signal_mask shape {mask.shape} differs from the image shape {mag.shape}. "
                "Give a mask on the same grid, or leave it out to derive one from the magnitude."
            )
    if not mask.any():
        raise InputError("The signal mask is empty: no voxel has signal. Give a mask with brain voxels.")

    def highpass_one(ph, m):
        if highpass == "homodyne":
            # outside the signal mask keep only voxels surrounded by tissue (holes), not air
            level = _HOMODYNE_MIN_LOWPASS * _masked_median(m, mask)
            return homodyne_highpass(ph, m, homodyne_window, homodyne_dims, min_lowpass=level, signal_mask=mask)
        uw = unwrap(ph, spacing, unwrap_method, mask)
        return gaussian_highpass(uw, mask, gaussian_sigma_ijk)

    if n_echoes == 1:
        phase_hp = highpass_one(phs[0], mag_f[0])
        te_ref = None if tes is None else float(tes[0])
    else:
        hp = np.empty(mags.shape, dtype=np.float32)
        for e in range(n_echoes):
            hp[e] = highpass_one(phs[e], mag_f[e])
        te_ref = float(tes.max() if reference_te is None else reference_te)
        phase_hp = combine_phase(hp, mag_f, tes, te_ref)
        del hp

    weight_mag = softplus_scale(mag, mask) if softplus else mag
    swi = np.empty(mag.shape, dtype=np.float32)
    nk, nj, ni = mag.shape

    def weigh(k0, k1):
        f = phase_mask(phase_hp[k0:k1], mask_type, mask_power)
        np.multiply(weight_mag[k0:k1], f, out=swi[k0:k1])

    _for_chunks(nk, _chunk_len(nj * ni), weigh)
    if order != (0, 1, 2):  # back to the stored order
        back = tuple(int(np.argsort(order)[a]) for a in range(3))
        swi, phase_hp, mag, mask = (np.ascontiguousarray(x.transpose(back)) for x in (swi, phase_hp, mag, mask))
    if ijk_to_ras is None:
        mip, n_slices = minimum_intensity_projection(swi, spacing[0], mip_slab_mm)
        mip_step, mip_axis = spacing[0], "array axis k"
    else:
        mip, n_slices, mip_step = minimum_intensity_projection_si(swi, ijk_to_ras, mip_slab_mm)
        mip_axis = "superior-inferior"

    n_mask = int(np.count_nonzero(mask))
    over = int(np.count_nonzero(np.abs(phase_hp[mask]) > np.pi / 2))
    residual = over / n_mask
    if residual > 0.05:
        warnings.append(
            f"{100 * residual:.1f} % of signal voxels keep |high-passed phase| > pi/2: background "
            "field not removed (wraps near air, a wrong phase scaling, or too small a high-pass). "
            "Try the other high-pass route or check the phase units."
        )
    qc = {
        "highpass": highpass,
        "mask_type": mask_type,
        "mask_power": float(mask_power),
        "n_echoes": int(n_echoes),
        "echo_times": None if tes is None else [float(t) for t in tes],
        "reference_te": te_ref,
        "magnitude_combination": magnitude_combination if n_echoes > 1 else None,
        "residual_fraction_over_half_pi": float(residual),
        "signal_fraction": n_mask / mask.size,
        "mip_slab_mm": float(n_slices * mip_step) if n_slices > 1 else 0.0,
        "mip_slices": int(n_slices),
        "mip_axis": mip_axis,
        "slice_axis": "kji"[order[0]],
        "softplus": bool(softplus),
        "warnings": warnings,
    }
    if highpass == "homodyne":
        qc.update(homodyne_window=int(homodyne_window), homodyne_dims=int(homodyne_dims))
    else:
        qc.update(unwrap_method=unwrap_method, gaussian_sigma_ijk=[float(s) for s in gaussian_sigma_ijk])
    return SWIResult(swi=swi, mip=mip, phase_hp=phase_hp, magnitude=mag, signal_mask=mask, qc=qc)
