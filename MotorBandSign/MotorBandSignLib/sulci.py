"""The subject's own central sulcus, and the posterior bank placed on its anterior wall.

A population atlas warped onto one person's brain puts the central sulcus several mm off
(about 5-6 mm on a real individual brain; shared/reference/BRIEF.md, "Measured here"), while
the posterior bank is a strip only a cortical thickness (~2.5-3 mm) deep. So the atlas is used
only to say *which* sulcus is the central one and which side is which; *where* it is comes from
the subject's image:

1. **White matter** is found on the localisation image (a T1 when given, otherwise the GRE
   magnitude) after flattening the receive bias, with its polarity measured on the subject:
   deep brain (>= :data:`DEEP_MM` from the brain surface, mostly white matter) against the
   superficial shell (cortex and sulcal CSF). This works whether white matter is brighter
   (T1-weighted spoiled GRE) or darker (proton-density-like SWI) than cortex.
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
#: Intensity classes in the mantle's histogram: air/bone at the mask's edge, CSF, cortex and
#: white matter.
N_CLASSES = 4
#: Smallest relative white-matter/cortex contrast (between class centres) to localise on.
MIN_CONTRAST = 0.03
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
#: Classes whose centres lie within this many robust SDs of the deep white matter's median are
#: white matter (the histogram may split white matter when fewer tissues than classes show).
WM_SPREAD_SD = 2.5
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
#: Depth (mm) of the posterior bank beyond the central sulcus's midline sheet (the sheet's own
#: voxels, one to two voxels where the walls touch, belong to the bank too: SHEET_TO_BANK).
#: With the sheet this spans the 2.5-3 mm cortical thickness of the anterior wall of the
#: central sulcus, BA4p (Fischl & Dale 2000, PNAS 97:11050; Geyer et al. 1996, Nature
#: 382:805). Chosen among 1.5, 2, 2.5 and 3 mm on the two development brains: 1.5 mm gave the
#: best ribbon Dice on each brain separately, so the leave-one-brain-out choice is the same.
DEFAULT_BANK_DEPTH_MM = 1.5
#: Control voxels start this far from the midline (mm): about one voxel of a 1-1.5 mm SWI, so a
#: band's partial volume across a closed sulcus does not reach the control.
CONTROL_GAP_MM = 1.0
#: Midline voxels themselves go to the bank: where the two walls touch (a closed sulcus, the
#: usual case in the central sulcus at 1 mm) the midline voxels hold the walls' outer cortex.
SHEET_TO_BANK = True
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
    sig = [sigma_mm / float(s) for s in sp]
    num = ndimage.gaussian_filter(np.where(brain, image, 0).astype(np.float32), sig, mode="constant")
    den = ndimage.gaussian_filter(brain.astype(np.float32), sig, mode="constant")
    low = num / np.maximum(den, 1e-3)
    out = np.zeros(image.shape, np.float32)
    ok = brain & (low > 0)
    out[ok] = image[ok] / low[ok]
    return out


def white_matter(image: np.ndarray, brain: np.ndarray, spacing_kji, *, hull_depth: np.ndarray | None = None) -> tuple:
    """White-matter mask of ``image`` inside ``brain`` with the polarity measured on the subject.

    Returns ``(wm, info)``; ``info`` holds the polarity (+1: white matter brighter) and the
    relative contrast between deep brain and the superficial shell. Raises InputError when the
    image shows no usable contrast between them (less than 2 %).
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
    i_deep = float(np.median(dv))
    sd_deep = 1.4826 * float(np.median(np.abs(dv - i_deep)))
    mv = flat[mantle]
    # Multi-level Otsu (Liao et al. 2001, J Inf Sci Eng 17:713) of the mantle: air and bone at
    # the mask's edge, CSF, cortex and white matter form up to four intensity classes, in an
    # order that depends on the protocol. White matter is the class whose centre lies nearest
    # the deep white matter's level; its bounds are halfway to the neighbouring classes.
    from skimage.filters import threshold_multiotsu

    lo_v, hi_v = np.percentile(mv, [0.5, 99.5])
    core = mv[(mv >= lo_v) & (mv <= hi_v)]
    thresholds = threshold_multiotsu(core, classes=N_CLASSES)
    edges = np.concatenate([[-np.inf], thresholds, [np.inf]])
    centres = np.array([np.median(core[(core > a) & (core <= b)]) if np.any((core > a) & (core <= b)) else np.nan
                        for a, b in zip(edges[:-1], edges[1:])])
    # white matter: the class nearest the deep level, with any neighbour whose centre also lies
    # within the deep white matter's own spread (white matter split in two by the histogram)
    near = np.abs(centres - i_deep) <= max(WM_SPREAD_SD * sd_deep, 0.03 * abs(i_deep))
    w0 = int(np.nanargmin(np.abs(centres - i_deep)))
    a_ = b_ = w0
    while a_ > 0 and near[a_ - 1]:
        a_ -= 1
    while b_ < len(centres) - 1 and near[b_ + 1]:
        b_ += 1
    lower = -np.inf if a_ == 0 else 0.5 * (centres[a_ - 1] + centres[a_])
    upper = np.inf if b_ == len(centres) - 1 else 0.5 * (centres[b_] + centres[b_ + 1])
    # the cortex is the neighbouring class with more mantle voxels (the other is CSF or air)
    n_below = np.sum((core > edges[a_ - 1]) & (core <= edges[a_])) if a_ > 0 else 0
    n_above = np.sum((core > edges[b_ + 1]) & (core <= edges[b_ + 2])) if b_ < len(centres) - 1 else 0
    polarity = 1 if n_below >= n_above else -1
    i_ctx = centres[a_ - 1] if polarity > 0 else centres[b_ + 1]
    i_wm = float(np.median(core[(core > lower) & (core <= upper)]))
    contrast = (i_wm - i_ctx) / max(abs(i_wm), 1e-6)
    if abs(contrast) < MIN_CONTRAST:
        raise InputError(f"white matter and cortex differ by only {100 * abs(contrast):.1f} % on the localisation "
                         "image: the central sulcus cannot be found on it. Give a T1 (--t1) or a parcellation.")
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
    info = {"polarity": polarity, "class_centres": [round(float(c), 4) for c in centres],
            "wm_bounds": [round(float(lower), 4), round(float(upper), 4)], "deep_level": round(i_deep, 4),
            "wm_cortex_contrast": round(float(contrast), 4),
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
    return jump & space, d_wm.astype(np.float32)


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
