"""Hypointensity heatmap: how much darker each ribbon voxel is than control cortex.

For each hemisphere the control cortex (ribbon labels 3 / 4) gives a robust reference
(median, and MAD scaled to a standard deviation); every ribbon voxel of that hemisphere gets
z = (reference median - value) / (1.4826 * MAD): positive z = darker than control. Where the
ribbon carries a cortical-depth map, the reference is taken per depth bin (matched cortical
depth: intensity varies through the cortex, Donatelli et al. 2018, AJNR 39:63, measured
profiles across the cortical thickness for this reason). Where the ribbon carries regions,
each region is compared with the control cortex of the same region when it has enough voxels.

Before comparing, a smooth receive-sensitivity (bias) field is divided out (homomorphic
correction as in CLEAR-SWI's sensitivity correction, Eckstein et al. 2021, NeuroImage
237:118175), with a kernel wide enough to leave a 2-3 mm thick band untouched.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: MAD to standard deviation for normally distributed data (Rousseeuw & Croux 1993, JASA 88:1273).
MAD_TO_SD = 1.4826
#: Width (mm, Gaussian sigma) of the bias-field estimate. CLEAR-SWI uses 7 mm for display
#: (Eckstein et al. 2021);
#: measurement needs a wider kernel so that a band ~3 mm thick (cortical thickness of M1,
#: Fischl & Dale 2000, PNAS 97:11050) barely lowers its own reference.
BIAS_SIGMA_MM = 20.0
#: Fewest control voxels for a reference (median and MAD); below it a region or depth bin
#: falls back to the hemisphere's whole control cortex, and a hemisphere is not measured. With
#: 30 voxels the MAD's relative standard error is about 0.3 (~1.67/sqrt(n) for normal data,
#: Rousseeuw & Croux 1993, JASA 88:1273): a statistical floor, not a clinical one.
MIN_CONTROL_VOXELS = 30
#: Depth bin width (mm) for matched-depth references.
DEPTH_BIN_MM = 1.0
#: Ribbon label values (see ribbon.py): bank and control per hemisphere.
BANK = {"left": 1, "right": 2}
CONTROL = {"left": 3, "right": 4}


def bias_corrected(image: np.ndarray, mask: np.ndarray, spacing_kji, sigma_mm: float = BIAS_SIGMA_MM) -> np.ndarray:
    """Divide ``image`` by its smooth (normalised-convolution) low-pass inside ``mask``.

    The result is about 1 in typical tissue; outside the mask it is 0.
    """
    img = np.asarray(image, dtype=np.float32)
    m = np.asarray(mask, dtype=bool)
    sig = [sigma_mm / float(s) for s in spacing_kji]
    num = ndimage.gaussian_filter(np.where(m, img, 0).astype(np.float32), sig, mode="constant")
    den = ndimage.gaussian_filter(m.astype(np.float32), sig, mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        low = num / den
    out = np.zeros_like(img)
    ok = m & (low > 0)
    out[ok] = img[ok] / low[ok]
    return out


def robust_reference(values: np.ndarray) -> tuple[float, float]:
    """Median and robust SD (1.4826 x MAD) of ``values``; SD floored to avoid division by 0."""
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v))
    sd = MAD_TO_SD * float(np.median(np.abs(v - med)))
    return med, max(sd, 1e-6 * max(abs(med), 1e-12))


def z_map(image: np.ndarray, ribbon: np.ndarray, regions: np.ndarray | None = None,
          depth: np.ndarray | None = None, min_control: int = MIN_CONTROL_VOXELS,
          measured: np.ndarray | None = None) -> np.ndarray:
    """Robust darkness z-score of every ribbon voxel against its hemisphere's control cortex.

    Parameters
    ----------
    image : ndarray
        Intensities (SWI or magnitude), preferably bias corrected.
    ribbon : ndarray of int
        Labels 1/2 bank, 3/4 control (left/right).
    regions : ndarray of int, optional
        1 medial, 2 intermediate, 3 lateral on bank and control voxels.
    depth : ndarray of float, optional
        Cortical depth (mm) for matched-depth references.
    measured : ndarray of bool, optional
        Control voxels outside it give no reference (the ribbon's drawn-only layer); every
        ribbon voxel still gets a z.

    Returns
    -------
    ndarray of float32, same shape; 0 outside the ribbon. Positive = darker than control.
    """
    img = np.asarray(image, dtype=np.float32)
    rib = np.asarray(ribbon)
    z = np.zeros(img.shape, np.float32)
    for side in ("left", "right"):
        ctrl = rib == CONTROL[side]
        members = (rib == BANK[side]) | ctrl
        if measured is not None:
            ctrl &= np.asarray(measured, bool)
        if ctrl.sum() < min_control:
            continue
        # Strata: region (if given) x depth bin (if given); each falls back to the hemisphere.
        strata = [np.ones_like(members)]
        if regions is not None:
            strata = [np.asarray(regions) == r for r in (1, 2, 3)]
        for s in strata:
            sel = members & s
            if not sel.any():
                continue
            sctrl = ctrl & s
            if sctrl.sum() < min_control:
                sctrl = ctrl
            if depth is None:
                med, sd = robust_reference(img[sctrl])
                z[sel] = (med - img[sel]) / sd
                continue
            d = np.asarray(depth)
            bins = np.floor(d / DEPTH_BIN_MM).astype(np.int32)
            med_all, sd_all = robust_reference(img[sctrl])
            for b in np.unique(bins[sel]):
                vb = sel & (bins == b)
                cb = sctrl & (bins == b)
                med, sd = robust_reference(img[cb]) if cb.sum() >= min_control else (med_all, sd_all)
                z[vb] = (med - img[vb]) / sd
    return z
