"""The subject's own central sulcus, and the posterior bank placed on its anterior wall.

A population atlas warped onto one person's brain puts the central sulcus several mm off
(about 5-6 mm on a real individual brain; shared/reference/BRIEF.md, "Measured here"), while
the posterior bank is a strip only a cortical thickness (~2.5-3 mm) deep. So the atlas is used
only to say *which* sulcus is the central one and which side is which; *where* it is comes from
the subject's image:

1. **White matter** is found on the localisation image (a T1 when given, otherwise the GRE
   magnitude) after N4 bias correction: the voxels whose intensity lies within a few SDs of
   the deep brain's histogram mode (>= :data:`DEEP_MM` from the brain's hull, mostly white
   matter). The rule is two-sided, so it holds whether white matter is brighter (T1-weighted
   spoiled GRE) or darker (proton-density-like SWI) than cortex.
2. **Sulcal midlines** are the medial surfaces of the non-white-matter space inside the
   brain: voxels whose nearest white-matter points, seen from neighbouring voxels, jump from
   one bank of a sulcus to the other (a discontinuity of the Euclidean feature transform;
   Blum 1967's medial axis, computed as in Danielsson 1980, CGIP 14:227).
3. **The central sulcus** is the connected midline sheet that best matches the atlas's
   central sulcus (the interface of the warped precentral and postcentral labels): the most
   midline voxels weighted by their distance to it (Gaussian, :data:`ATLAS_SIGMA_MM`). The
   central sulcus is the long, mostly uninterrupted sulcus running from the medial surface to
   near the Sylvian fissure (Ono et al. 1990, Atlas of the Cerebral Sulci), so it forms one
   large sheet, while the precentral sulcus is often interrupted.
4. **The posterior bank** is every voxel within ``bank_depth_mm`` of that sheet on its
   anterior side (the side of the warped precentral gyrus), no deeper than the sulcal fundus;
   the **matched control** is the facing wall (the anterior wall of the postcentral gyrus, which
   the case report found normal), at least ``control_gap_mm`` from the midline so that a band's
   partial volume does not reach it. The bank is defined by geometry from the sulcus, never by
   how dark its voxels are, so an iron band darker than white matter cannot be classified out
   of it (shared/reference/BRIEF.md).

With an imported parcellation the same construction runs with the sulcus taken from the
labels (the interface of precentral and postcentral cortex), the bank restricted to the
precentral cortex label and the control to the postcentral one.

A localisation confidence per hemisphere (0..1) says how much of the atlas's central sulcus
the chosen sheet accounts for, and how far it had to move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = ["CentralSulcus", "white_matter", "sulcal_midlines", "find_central_sulcus", "bank_from_sulcus",
           "hull_depth", "interface_midline",
           "DEFAULT_BANK_DEPTH_MM", "CONTROL_GAP_MM"]

#: Width (mm, Gaussian sigma) of the bias-field estimate divided out before tissue
#: classification: several gyri wide (~10 mm each), so white matter keeps one level whether it
#: lies deep or in a gyral blade, yet narrower than receive-coil profiles (the crude N3 idea;
#: Sled et al. 1998, IEEE TMI 17:87).
BIAS_SIGMA_MM = 30.0
#: Distance from the brain surface (mm) beyond which the brain is mostly white matter: cortex
#: is 2-4.5 mm thick (Fischl & Dale 2000, PNAS 97:11050) and sulci reach ~20-25 mm deep only in
#: the insula and the largest fissures, so 15 mm samples centrum semiovale.
DEEP_MM = 15.0
#: The cortical mantle (mm below the brain's hull) whose histogram sets the white-matter
#: threshold: cortex, sulcal CSF and the white matter of the gyri, below the meninges and skull
#: that a magnitude brain mask may include at its edge.
MANTLE_MM = (2.0, 10.0)
#: White matter lies within this many SDs of the deep white matter's level (its spread measured
#: from the narrower half-width at half maximum of the deep brain's histogram peak): 2 SD keep ~95 % of
#: white-matter voxels and leave out cortex that differs by more than about twice the spread.
WM_SD = 2.0
#: ...but never closer than this fraction of white matter's level: N4 leaves a few percent of
#: residual bias and white matter's own T1/T2* varies by region (gyral blades vs deep).
WM_MIN_TOLERANCE = 0.05
#: Histogram bins over the mantle's and deep brain's intensity range (0.5-99.5 percentiles).
HIST_BINS = 200
N_CLASSES = 4
#: N4 runs on a grid of about this spacing (mm): the bias field is smooth on the scale of
#: centimetres, and a coarse grid keeps N4 to a few seconds.
N4_SPACING_MM = 3.0
#: Light smoothing before classification (mm, Gaussian sigma): about half a voxel of a 1 mm
#: SWI, enough to halve white noise without merging the two banks of a closed sulcus.
SMOOTH_MM = 0.6
#: Smallest sulcal jump (mm): neighbouring voxels whose nearest white-matter points lie this far
#: apart sit on the medial surface between two banks. Across a sulcus the two white-matter
#: surfaces are two cortical thicknesses plus the CSF apart (>= ~5 mm); along one smooth
#: surface the nearest points of neighbours differ by about one voxel diagonal (<= 1.8 mm).
JUMP_MM = 3.5
#: Midline voxels lie at least this deep below the brain's hull (mm): a magnitude brain mask
#: takes in the subarachnoid CSF and meninges over the crowns (~2-4 mm), where the medial
#: surfaces of neighbouring sulci would join into one.
MIDLINE_MIN_DEPTH_MM = 4.0
#: Minimal distance (mm) of a midline voxel from white matter (a voxel's width at 1 mm).
MIDLINE_MIN_WM_MM = 0.9
#: Search radius (mm) around the atlas's central sulcus: about twice the atlas error measured
#: on an individual brain (5-6 mm, BRIEF.md) and less than the gap to the next sulcus in front
#: and behind (precentral / postcentral sulci lie ~12-20 mm away; Ono et al. 1990).
SEARCH_MM = 12.0
#: Thickness (mm) of the horizontal slabs in which the central sulcus is chosen piece by piece:
#: thinner than the vertical extent of a sulcal junction (pli de passage, ~5-10 mm; Ono et al.
#: 1990), thick enough that a sheet is a connected piece within it.
SLAB_MM = 3.0
#: Weight of a midline voxel by its distance d to the atlas's central sulcus: exp(-d^2/2s^2).
ATLAS_SIGMA_MM = 6.0
#: Depth (mm) of the posterior bank from the central sulcus's midline sheet: half the sulcal
#: gap plus the cortex of the anterior wall, 2.5-3 mm thick in BA4p (Fischl & Dale 2000, PNAS
#: 97:11050; Geyer et al. 1996, Nature 382:805), less the partial-volume voxel at the white
#: matter. Compared at 0.5, 1.0, 1.5 and 2.0 mm, with and without the sheet voxels, on one
#: development case (clab, seed 2): 2.0 mm without the sheet gave the best Dice (0.37 / 0.42).
#: Not a held-out choice (pycortex S1 was not swept with this version). Provisional.
DEFAULT_BANK_DEPTH_MM = 2.0
#: Control voxels start this far from the midline (mm): about one voxel of a 1-1.5 mm SWI, so a
#: band's partial volume across a closed sulcus does not reach the control.
CONTROL_GAP_MM = 1.0
#: Whether the midline voxels themselves go to the bank (where the two walls touch they hold
#: both walls' outer cortex). Off: with the thinned (ridge) midline it lowered Dice.
SHEET_TO_BANK = False
#: A bank voxel may lie at most this much deeper (mm, from the brain's outer hull) than the
#: sulcal midline point nearest to it: the bank ends at the fundus, not in the white matter under it.
FUNDUS_MARGIN_MM = 1.0
#: Confidence below which a warning is given (fraction of the atlas's central sulcus accounted
#: for by the sheet found; see :func:`find_central_sulcus`). Provisional.
LOW_CONFIDENCE = 0.5


@dataclass
class CentralSulcus:
    """The central sulcus found per hemisphere, on the subject grid."""

    midline: np.ndarray                 # uint8: 1 left, 2 right central-sulcus midline voxels
    confidence: dict                    # side -> 0..1 (None if not found)
    info: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def _flatten(image: np.ndarray, brain: np.ndarray, sp, sigma_mm: float = BIAS_SIGMA_MM) -> np.ndarray:
    """Divide out the receive bias: N4 (Tustison et al. 2010, IEEE TMI 29:1310; SimpleITK) on a
    grid shrunk to ~:data:`N4_SPACING_MM`, its log field brought back to full resolution, then
    a normalisation to the brain's median. ``sigma_mm`` is unused (kept for the signature)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(image, np.float32))
    img.SetSpacing([float(x) for x in sp[::-1]])
    mask = sitk.GetImageFromArray(brain.astype(np.uint8))
    mask.CopyInformation(img)
    shrink = [max(1, int(round(N4_SPACING_MM / float(x)))) for x in sp[::-1]]
    small = sitk.Shrink(img, shrink)
    msmall = sitk.Shrink(mask, shrink)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([40, 30, 20])
    try:
        n4.Execute(sitk.Cast(small, sitk.sitkFloat32) + 1e-3, msmall)
        log_field = n4.GetLogBiasFieldAsImage(img)
        field = np.exp(sitk.GetArrayFromImage(log_field)).astype(np.float32)
    except RuntimeError:          # N4 failed (e.g. a tiny mask): fall back to a wide low-pass
        sig = [sigma_mm / float(s) for s in sp]
        num = ndimage.gaussian_filter(np.where(brain, image, 0).astype(np.float32), sig, mode="constant")
        den = ndimage.gaussian_filter(brain.astype(np.float32), sig, mode="constant")
        field = num / np.maximum(den, 1e-3)
    out = np.zeros(image.shape, np.float32)
    ok = brain & (field > 0)
    out[ok] = image[ok] / field[ok]
    med = float(np.median(out[ok])) if ok.any() else 1.0
    return out / max(med, 1e-12)


def white_matter(image: np.ndarray, brain: np.ndarray, spacing_kji, *, hull_depth: np.ndarray | None = None) -> tuple:
    """White-matter mask of ``image`` inside ``brain`` with the polarity measured on the subject.

    Returns ``(wm, info)``; ``info`` holds white matter's level and spread, the bounds used, the
    polarity (+1: the cortical mantle lies mostly below white matter's level) and the fractions of
    the mantle below / above the bounds. Raises InputError when less than 5 % of the mantle
    differs from white matter (no usable contrast).
    """
    sp = np.asarray(spacing_kji, float)
    img = np.asarray(image, np.float32)
    flat = _flatten(img, brain, sp)
    flat = ndimage.gaussian_filter(flat, [SMOOTH_MM / s for s in sp])
    depth = hull_depth if hull_depth is not None else ndimage.distance_transform_edt(brain, sampling=sp)
    deep = brain & (depth >= DEEP_MM)
    mantle = brain & (depth >= MANTLE_MM[0]) & (depth <= MANTLE_MM[1])
    if deep.sum() < 100 or mantle.sum() < 100:
        raise InputError("the brain mask is too small or thin to tell white matter from cortex "
                         f"({int(deep.sum())} deep voxels): check the coverage and the mask.")
    dv = flat[deep]
    mv = flat[mantle]
    lo_v, hi_v = np.percentile(np.concatenate([mv, dv]), [0.5, 99.5])
    bins = np.linspace(lo_v, hi_v, HIST_BINS + 1)
    mids = 0.5 * (bins[1:] + bins[:-1])

    def mode_and_width(values):
        """Mode and SD of the peak, the SD from the narrower half-width at half maximum (the
        other flank is widened by the tissue next to white matter in intensity)."""
        h = ndimage.gaussian_filter1d(np.histogram(values, bins=bins)[0].astype(float), 2.0)
        k = int(np.argmax(h))
        above = np.flatnonzero(h >= 0.5 * h[k])
        half = min(mids[above.max()] - mids[k], mids[k] - mids[above.min()])
        return float(mids[k]), float(max(half, mids[1] - mids[0])) / 1.1774

    # white matter's level and spread: the mode of the deep brain (pure white matter there)
    i_wm, sd_wm = mode_and_width(dv)
    # white matter = voxels consistent with that level (within WM_SD of its spread, either
    # side): no polarity or cortex level is needed, so the rule holds whether cortex is darker
    # (T1-weighted spoiled GRE) or brighter (proton-density-like SWI) than white matter
    tol = max(WM_SD * sd_wm, WM_MIN_TOLERANCE * abs(i_wm))
    lower, upper = i_wm - tol, i_wm + tol
    shell = brain & (depth >= MANTLE_MM[0]) & (depth <= MANTLE_MM[1])
    nv = flat[shell]
    below, above = float(np.mean(nv < lower)), float(np.mean(nv > upper))
    polarity = 1 if below >= above else -1
    if max(below, above) < 0.05:
        raise InputError(f"only {100 * max(below, above):.0f} % of the cortical mantle differs from white matter on the "
                         "localisation image: the central sulcus cannot be found on it. Give a T1 (--t1) or a "
                         "parcellation.")
    wm = brain & (flat > lower) & (flat <= upper)
    # clean-up: keep the large white-matter body; fill tiny non-WM holes inside it (noise)
    lab, n = ndimage.label(wm)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        min_size = max(1000.0 / float(np.prod(sp)), 0.05 * sizes.max())
        wm = np.isin(lab, np.flatnonzero(sizes >= min_size))
    holes = brain & ~wm
    hl, hn = ndimage.label(holes)
    if hn:
        hs = np.bincount(hl.ravel())
        small = np.flatnonzero(hs <= max(3, int(2.0 / float(np.prod(sp)))))
        wm |= np.isin(hl, small[small > 0])
    info = {"polarity": polarity, "wm_level": round(i_wm, 4), "wm_sd": round(sd_wm, 4),
            "wm_bounds": [round(float(lower), 4), round(float(upper), 4)],
            "mantle_below_above": [round(below, 3), round(above, 3)],

            "wm_fraction_of_brain": round(float(wm.sum()) / max(int(brain.sum()), 1), 4)}
    return wm, info


def sulcal_midlines(wm: np.ndarray, brain: np.ndarray, spacing_kji, *, jump_mm: float = JUMP_MM,
                    min_wm_mm: float = MIDLINE_MIN_WM_MM, hull_depth: np.ndarray | None = None,
                    min_depth_mm: float = MIDLINE_MIN_DEPTH_MM) -> tuple:
    """Medial surfaces of the non-white-matter space inside ``brain``.

    Returns ``(midline, d_wm)``: a boolean mask of voxels where the nearest white-matter point
    jumps by at least ``jump_mm`` between neighbours, and the distance to white matter (mm).
    """
    sp = np.asarray(spacing_kji, float)
    if not wm.any():
        raise InputError("no white matter was found on the localisation image: cannot find the sulci.")
    d_wm, idx = ndimage.distance_transform_edt(~wm, sampling=sp, return_indices=True)
    space = brain & ~wm & (d_wm >= min_wm_mm)
    if hull_depth is not None:
        # below the meninges: the subarachnoid layer over the crowns would join all sulci
        space &= hull_depth >= min_depth_mm
    jump = np.zeros(wm.shape, bool)
    for ax in range(3):
        sl_a = [slice(None)] * 3
        sl_b = [slice(None)] * 3
        sl_a[ax] = slice(0, -1)
        sl_b[ax] = slice(1, None)
        sl_a, sl_b = tuple(sl_a), tuple(sl_b)
        dd = np.zeros(wm.shape[:0] + tuple(s - (1 if a == ax else 0) for a, s in enumerate(wm.shape)), np.float32)
        for c in range(3):
            diff = (idx[c][sl_a] - idx[c][sl_b]).astype(np.float32) * np.float32(sp[c])
            dd += diff * diff
        big = dd >= jump_mm * jump_mm
        jump[sl_a] |= big
        jump[sl_b] |= big
    del idx
    # one voxel thick: keep the ridge of the distance to white matter (not smaller than both
    # neighbours along some axis), the middle of the gap between the banks
    ridge = np.zeros(wm.shape, bool)
    for ax in range(3):
        fwd = np.roll(d_wm, -1, axis=ax)
        bwd = np.roll(d_wm, 1, axis=ax)
        ridge |= (d_wm >= fwd) & (d_wm >= bwd)
    return jump & space & ridge, d_wm.astype(np.float32)


def find_central_sulcus(midline: np.ndarray, atlas_labels: np.ndarray, brain: np.ndarray, spacing_kji, *,
                        ijk_to_ras: np.ndarray, pre=(1, 2), post=(3, 4), search_mm: float = SEARCH_MM,
                        sigma_mm: float = ATLAS_SIGMA_MM, slab_mm: float = SLAB_MM) -> CentralSulcus:
    """Pick, per hemisphere, the midline sheet that is the central sulcus.

    ``atlas_labels`` holds precentral (``pre`` = left, right values) and postcentral (``post``)
    labels warped from the atlas (or from a parcellation). Their interface is the atlas's
    central sulcus; among the 26-connected sheets of ``midline`` within ``search_mm`` of it, the
    one with the largest Gaussian-weighted voxel count wins.

    Confidence = fraction of the atlas's central-sulcus voxels that lie within ``sigma_mm`` of
    the chosen sheet (how much of the sulcus was found), times exp(-(median shift / sigma)^2 / 2)
    (how far it had to move).
    """
    sp = np.asarray(spacing_kji, float)
    out = np.zeros(midline.shape, np.uint8)
    conf, info, warnings = {}, {}, []
    for h, side in enumerate(("left", "right")):
        P, Q = atlas_labels == pre[h], atlas_labels == post[h]
        if not P.any() or not Q.any():
            conf[side] = None
            warnings.append(f"No {side} precentral/postcentral gyrus was placed by the atlas: the {side} central "
                            "sulcus cannot be looked for (outside the image?).")
            continue
        pad = np.ceil((search_mm + 3) / sp).astype(int)
        nz = np.argwhere(P | Q)
        lo = np.maximum(nz.min(0) - pad, 0)
        hi = np.minimum(nz.max(0) + pad + 1, np.array(midline.shape))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        p, q = P[box], Q[box]
        d_p = ndimage.distance_transform_edt(~p, sampling=sp)
        d_q = ndimage.distance_transform_edt(~q, sampling=sp)
        cs_atlas = (d_p <= 2.0) & (d_q <= 2.0) & brain[box]
        if cs_atlas.sum() < 10:
            conf[side] = None
            warnings.append(f"The atlas's {side} precentral and postcentral gyri do not meet: no {side} central sulcus.")
            continue
        d_cs = ndimage.distance_transform_edt(~cs_atlas, sampling=sp)
        # this hemisphere only: nearer to this side's gyri than to the other side's
        other = np.isin(atlas_labels[box], (pre[1 - h], post[1 - h]))
        if other.any():
            d_other = ndimage.distance_transform_edt(~other, sampling=sp)
            mine = np.minimum(d_p, d_q) < d_other
        else:
            mine = np.ones(p.shape, bool)
        cand = midline[box] & (d_cs <= search_mm) & mine
        n = int(ndimage.label(cand, structure=np.ones((3, 3, 3), bool))[1])
        if n == 0:
            conf[side] = 0.0
            warnings.append(f"No sulcus was found near the atlas's {side} central sulcus on the image: the {side} "
                            "bank falls back to the atlas. Check the ribbon.")
            continue
        w = np.exp(-0.5 * (d_cs / sigma_mm) ** 2)
        sheet = _sheet_by_slabs(cand, w, ijk_to_ras, lo, slab_mm)
        o = out[box]
        o[sheet] = h + 1
        d_sheet = ndimage.distance_transform_edt(~sheet, sampling=sp)
        covered = float(np.mean(d_sheet[cs_atlas] <= sigma_mm))
        shift = float(np.median(d_cs[sheet]))
        c_val = covered * float(np.exp(-0.5 * (shift / sigma_mm) ** 2))
        conf[side] = round(c_val, 3)
        info[side] = {"sheet_voxels": int(sheet.sum()), "atlas_sulcus_covered": round(covered, 3),
                      "median_shift_mm": round(shift, 2), "candidate_sheets": int(n)}
        if c_val < LOW_CONFIDENCE:
            warnings.append(f"Low confidence ({c_val:.2f}) in the {side} central sulcus found on the image (it accounts "
                            f"for {100 * covered:.0f} % of the atlas's sulcus, {shift:.1f} mm away): check the {side} "
                            "ribbon and correct it in Segment Editor if it sits on the wrong gyrus.")
    return CentralSulcus(out, conf, info, warnings)


def hull_depth(brain: np.ndarray, spacing_kji, close_mm: float = 6.0) -> np.ndarray:
    """Depth (mm) below the brain's outer hull: the brain mask closed by ``close_mm`` (so sulci
    open to the surface count as inside), then the distance to the outside. Closing by
    distance transforms (dilate, then erode) costs two EDTs whatever the radius."""
    sp = np.asarray(spacing_kji, float)
    pad = int(np.ceil(close_mm / sp.min())) + 1
    b = np.pad(brain, pad)
    grown = ndimage.distance_transform_edt(~b, sampling=sp) <= close_mm
    closed = ndimage.distance_transform_edt(grown, sampling=sp) > close_mm
    closed |= b
    sl = tuple(slice(pad, -pad) for _ in range(3))
    return ndimage.distance_transform_edt(closed, sampling=sp)[sl].astype(np.float32)


def interface_midline(labels: np.ndarray, spacing_kji, *, pre=(1, 2), post=(3, 4), reach_mm: float = 1.0) -> np.ndarray:
    """The central sulcus of a parcellation: voxels within ``reach_mm`` of both the precentral
    and the postcentral label of a hemisphere (the interface layer between the two gyri)."""
    sp = np.asarray(spacing_kji, float)
    out = np.zeros(labels.shape, bool)
    for h in range(2):
        P, Q = labels == pre[h], labels == post[h]
        if not P.any() or not Q.any():
            continue
        out |= (ndimage.distance_transform_edt(~P, sampling=sp) <= reach_mm) & \
               (ndimage.distance_transform_edt(~Q, sampling=sp) <= reach_mm)
    return out


def _sheet_by_slabs(cand: np.ndarray, w: np.ndarray, ijk_to_ras: np.ndarray, lo, slab_mm: float) -> np.ndarray:
    """The central-sulcus sheet chosen slab by slab (see :func:`find_central_sulcus`)."""
    kji = np.argwhere(cand)
    ijk = (kji + np.asarray(lo))[:, ::-1].astype(float)
    z = ijk @ np.asarray(ijk_to_ras)[2, :3] + ijk_to_ras[2, 3]
    bins = np.floor((z.max() - z) / slab_mm).astype(int)      # 0 at the top
    sheet = np.zeros(cand.shape, bool)
    prev = None
    struct = np.ones((3, 3, 3), bool)
    for b in range(int(bins.max()) + 1):
        sel = kji[bins == b]
        if not len(sel):
            prev = None
            continue
        blo, bhi = sel.min(0), sel.max(0) + 1
        sub = np.zeros(tuple(bhi - blo), bool)
        sub[tuple((sel - blo).T)] = True
        lab, n = ndimage.label(sub, structure=struct)
        wsub = w[blo[0]:bhi[0], blo[1]:bhi[1], blo[2]:bhi[2]]
        idx = np.arange(1, n + 1)
        wsum = ndimage.sum_labels(wsub, lab, index=idx)
        count = ndimage.sum_labels(np.ones_like(wsub), lab, index=idx)
        score = wsum * wsum / np.maximum(count, 1)
        if prev is not None:
            # continuity: pieces touching (within one voxel) the piece chosen in the slab above
            pv = prev[blo[0]:bhi[0], blo[1]:bhi[1], blo[2]:bhi[2]]
            touch = ndimage.maximum(ndimage.binary_dilation(pv, struct, iterations=2), lab, index=idx) > 0
            score = np.where(touch, 2.0 * score, score)
        best = int(np.argmax(score)) + 1
        piece = lab == best
        sheet[blo[0]:bhi[0], blo[1]:bhi[1], blo[2]:bhi[2]] |= piece
        prev = np.zeros(cand.shape, bool)
        prev[blo[0]:bhi[0], blo[1]:bhi[1], blo[2]:bhi[2]] = piece
    return sheet


def bank_from_sulcus(sulcus_midline: np.ndarray, anterior_score: np.ndarray, brain: np.ndarray, spacing_kji, *,
                     hull_depth: np.ndarray, bank_depth_mm: float = DEFAULT_BANK_DEPTH_MM,
                     control_gap_mm: float = CONTROL_GAP_MM, fundus_margin_mm: float = FUNDUS_MARGIN_MM,
                     bank_allowed: np.ndarray | None = None, control_allowed: np.ndarray | None = None,
                     sheet_to_bank: bool = SHEET_TO_BANK) -> tuple:
    """Bank (anterior wall) and matched control (posterior wall) of each hemisphere's sulcus.

    Parameters
    ----------
    sulcus_midline : uint8 array, 1 left / 2 right midline voxels
    anterior_score : float array
        Larger towards the precentral gyrus (e.g. distance to the atlas postcentral minus
        distance to the atlas precentral). A voxel is on the anterior wall when its score
        exceeds that of its nearest midline voxel.
    hull_depth : float array
        Depth (mm) below the brain's outer hull; a bank voxel is at most ``fundus_margin_mm``
        deeper than its nearest midline voxel.
    bank_allowed, control_allowed : bool arrays or None
        Restrict bank / control (e.g. to the precentral / postcentral cortex of a parcellation).

    Returns ``(labels, depth)``: uint8 1/2 bank L/R, 3/4 control L/R; float32 distance (mm) from
    the sulcal midline (the depth into the wall, used for matched-depth references).
    """
    sp = np.asarray(spacing_kji, float)
    labels = np.zeros(sulcus_midline.shape, np.uint8)
    depth = np.zeros(sulcus_midline.shape, np.float32)
    reach = bank_depth_mm
    for h in (1, 2):
        sheet = sulcus_midline == h
        if not sheet.any():
            continue
        pad = np.ceil((reach + 2) / sp).astype(int)
        nz = np.argwhere(sheet)
        lo = np.maximum(nz.min(0) - pad, 0)
        hi = np.minimum(nz.max(0) + pad + 1, np.array(sheet.shape))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        s = sheet[box]
        d, idx = ndimage.distance_transform_edt(~s, sampling=sp, return_indices=True)
        near = (d <= reach) & brain[box]
        nk, nj, ni = (i[near] for i in idx)
        a_here = anterior_score[box][near]
        a_there = anterior_score[box][nk, nj, ni]
        deeper = hull_depth[box][near] - hull_depth[box][nk, nj, ni]
        dd = d[near]
        ok_depth = deeper <= fundus_margin_mm
        bank = ok_depth & (a_here > a_there)
        ctrl = ok_depth & (a_here < a_there) & (dd >= control_gap_mm)
        on_sheet = dd == 0
        lab_box = labels[box]
        dep_box = depth[box]
        sel = np.zeros(near.sum(), np.uint8)
        sel[bank & ~on_sheet] = h
        if sheet_to_bank:
            sel[on_sheet & ok_depth] = h
        sel[ctrl & ~on_sheet] = h + 2
        if bank_allowed is not None:
            sel[(sel == h) & ~bank_allowed[box][near]] = 0
        if control_allowed is not None:
            sel[(sel == h + 2) & ~control_allowed[box][near]] = 0
        vals = lab_box[near]
        vals = np.where(vals == 0, sel, vals)
        lab_box[near] = vals
        dv = dep_box[near]
        dep_box[near] = np.where(vals > 0, dd, dv)
    return labels, depth
