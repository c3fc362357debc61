"""Small image helpers shared by the anatomy and registration steps (no step imports another
through them, so :mod:`anatomy` and :mod:`registration` do not import each other).

- :func:`magnitude_array`: a checked float32 3D magnitude (multi-echo -> root-sum-of-squares);
- :func:`resample_spacing`: resample a SimpleITK image to a new spacing, anti-aliased.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .volume import Volume

__all__ = ["magnitude_array", "resample_spacing"]


def magnitude_array(magnitude: Volume, what: str = "magnitude") -> np.ndarray:
    """A float32 3D copy of a magnitude (multi-echo: root-sum-of-squares), with checks."""
    if not isinstance(magnitude, Volume):
        raise InputError(f"{what}: expected a Volume, got {type(magnitude).__name__}. "
                         "Load the image with MotorBandSignLib.io.read_volume first.")
    a = np.asarray(magnitude.array)
    if a.ndim == 4:
        a = np.sqrt(np.sum(np.abs(a.astype(np.float64)) ** 2, axis=0))
    if a.ndim != 3:
        raise InputError(f"{what} '{magnitude.name}': expected a 3D (or echoes x 3D) image, got shape {a.shape}.")
    if np.iscomplexobj(a):
        a = np.abs(a)
    a = a.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.any():
        raise InputError(f"{what} '{magnitude.name}' holds no finite values (all NaN/inf). "
                         "Check that the right file was loaded.")
    if not finite.all():
        a = np.where(finite, a, 0.0).astype(np.float32)
    if min(a.shape) < 3:
        raise InputError(f"{what} '{magnitude.name}' has only {min(a.shape)} slice(s) along one axis; "
                         "a 3D acquisition covering the upper brain is needed.")
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        raise InputError(f"{what} '{magnitude.name}' is constant ({hi:g} everywhere): no image content. "
                         "Give the magnitude (or SWI) image of the acquisition.")
    sample = a[:: max(1, a.shape[0] // 32), :: 2, :: 2]
    uniq = np.unique(sample)
    if uniq.size <= 2 or (uniq.size <= 64 and np.allclose(uniq, np.round(uniq)) and uniq.size < 0.001 * sample.size):
        raise InputError(
            f"{what} '{magnitude.name}' has only {uniq.size} distinct values: it looks like a mask or a "
            "label map, not an MR image. Give the magnitude (or SWI) image; masks and segmentations go "
            "in their own inputs.")
    if lo < 0 and np.mean(a < -0.05 * hi) > 0.05:
        raise InputError(
            f"{what} '{magnitude.name}' has many negative values ({100 * np.mean(a < 0):.0f} % of voxels): "
            "it looks like a phase, real or imaginary image. Give the magnitude image here and the phase "
            "as the phase input.")
    return a


def resample_spacing(img, spacing, *, smoothing_mm: float = 0.0, interp=None):
    """Resample a SimpleITK image to new spacing on the same orientation and extent."""
    import SimpleITK as sitk

    if interp is None:
        interp = sitk.sitkLinear
    sp = np.array(img.GetSpacing(), float)
    new_sp = np.asarray(spacing, float)
    size = np.maximum(1, np.round(np.array(img.GetSize()) * sp / new_sp)).astype(int)
    src = sitk.Cast(img, sitk.sitkFloat32)
    # anti-alias: sigma so the coarse grid's Nyquist is respected (FWHM ~ new spacing)
    sig = np.sqrt(np.maximum(new_sp ** 2 - sp ** 2, 0.0)) / 2.355
    sig = np.sqrt(sig ** 2 + smoothing_mm ** 2)
    if np.any(sig > 0.1 * sp):
        # recursive (Deriche) Gaussian: cost independent of sigma
        src = sitk.SmoothingRecursiveGaussian(src, [float(max(x, 1e-3)) for x in sig])
    d = np.array(img.GetDirection()).reshape(3, 3)
    # keep the centre of the field of view
    old_c = np.array(img.TransformContinuousIndexToPhysicalPoint(((np.array(img.GetSize()) - 1) / 2).tolist()))
    origin = old_c - d @ ((size - 1) / 2 * new_sp)
    return sitk.Resample(src, [int(x) for x in size], sitk.Transform(), interp, origin.tolist(),
                         new_sp.tolist(), img.GetDirection(), 0.0, sitk.sitkFloat32)
