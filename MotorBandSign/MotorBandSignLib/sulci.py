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
   spoiled GRE) or darker (proton-density-like SWI) than cortex. Where noise hides the
   cortex's level in the histogram (SNR ~20), the image is smoothed a little more and classified
   again (:data:`DENOISE_STEPS_MM`).
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
   anterior side, no deeper than the sulcal fundus. The side is read along the sheet's own
   normal (a plane fit around each midline voxel), oriented consistently over the sheet along
   a minimum spanning tree of the normals (Hoppe et al. 1992, SIGGRAPH '92:71) and, per
   connected piece, towards the warped precentral gyrus; comparing the atlas's anterior score
   voxel by voxel mislabels the walls wherever the sulcus runs obliquely to the atlas's.
   Only the parts of the sheet that face the precentral gyrus bound a wall
   (:data:`SHEET_FACING_COSINE`): pieces of other sulci joined to it run across. The bank is
   measured on its core (within 60 degrees of the normal, :data:`WALL_COSINE`, and no deeper than
   the fundus) and drawn out to the sheet's edges (:data:`DRAWN_WALL_COSINE`);
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
           "wall_by_white_matter",
           "hull_depth", "interface_midline", "oriented_normals",
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
#: Grey matter differs from white matter by less than this fraction of white matter's level on
#: the localisation images used (GRE magnitude ~10-15 %, T1-weighted MPRAGE ~30-40 %; Wansapura
#: et al. 1999, JMRI 9:531; Deichmann et al. 2000, NeuroImage 12:112); CSF lies farther out.
CORTEX_MAX_CONTRAST = 0.5
#: Histogram bins over the mantle's and deep brain's intensity range (0.5-99.5 percentiles).
HIST_BINS = 200
#: A peak of the mantle's histogram decides the contrast's polarity only if it stands at least
#: this fraction as high as the tallest candidate on either side (cortex holds ~40-60 % of the
#: cortical mantle; a bump of a few percent of it is texture, a vessel or partial volume).
#: Engineering choice, not fitted.
POLARITY_MIN_PEAK = 0.2
N_CLASSES = 4
#: N4 runs on a grid of about this spacing (mm): the bias field is smooth on the scale of
#: centimetres, and a coarse grid keeps N4 to a few seconds.
N4_SPACING_MM = 3.0
#: Light smoothing before classification (mm, Gaussian sigma): about half a voxel of a 1 mm
#: SWI, enough to halve white noise without merging the two banks of a closed sulcus.
SMOOTH_MM = 0.6
#: Further denoising (mm, Gaussian sigma, applied before the bias correction) tried in turn when
#: the cortex's level does not show as a peak of the mantle's histogram: then noise hides the
#: grey/white contrast (~5-10 % on GRE magnitude) and the fallback bound (:data:`WM_SD` spreads
#: of the noisy white-matter peak) takes in the cortex. On pycortex S1 at SNR 20 (1 mm) white
#: matter took in 45 % grey matter and 70 % of the brain, the sulcal sheets were lost and the
#: ribbon Dice fell to 0.14 / 0.38; 0.6 mm more (the first step) resolved the cortex's peak
#: (15 % grey matter, Dice 0.58 / 0.60). An image whose peak shows at once is unchanged (every
#: SNR-40 development case). Steps about half and one voxel of a 1-1.5 mm SWI: still thinner
#: than a cortical thickness (2-4.5 mm; Fischl & Dale 2000), so the two banks of a closed sulcus
#: stay apart. Development-set choice (one brain, one failing case), provisional.
DENOISE_STEPS_MM = (0.6, 1.0)
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
#: Half-width (mm) of the band about the atlas's plane between the hemispheres in which midline
#: voxels are taken for the interhemispheric fissure, not the central sulcus: the fissure is the
#: largest sulcal sheet near the vertex, and an affine+deformable template registration puts
#: the mid-sagittal plane within ~1-2 mm (Ardekani et al. 1997, IEEE TMI 16:947 measured
#: mid-sagittal plane fits to ~1 mm); the central sulcus's bank ends at the crown, >= ~5 mm
#: lateral to the fissure (two cortical thicknesses of the paracentral lobule).
FISSURE_HALF_WIDTH_MM = 3.0
#: The sheet is followed slab by slab only this far (mm) above and below the atlas's central
#: sulcus: the atlas gets the sulcus's vertical extent roughly right (a few mm, BRIEF.md), and
#: below its inferior end the nearest sheets are other sulci (subcentral, Sylvian).
EXTENT_MARGIN_MM = 6.0
#: A piece of the next slab continues the sheet when it comes within this distance (mm) of the
#: piece chosen in the slab before. Noise and partial volume break a sulcal midline found on a
#: 1 mm magnitude by a few voxels (on pycortex S1's left hemisphere the sheet followed a 12-voxel
#: side branch and stopped 14 mm above the sulcus's lateral end, where the next slab's piece lay
#: 3.7 voxels away); the neighbouring sulci (precentral, postcentral) lie 12-20 mm from the
#: central one (Ono et al. 1990, Atlas of the Cerebral Sulci). Until this version the rule was
#: two voxels along each axis (2-3.5 mm at 1 mm; 1.8 mm in-plane on a 0.9 mm grid); in mm it is the
#: same on every grid. Offline on six development localisations (clab and pycortex S1, seed 1;
#: 12 hemispheres): ribbon Dice up by 0.03 on two S1 left hemispheres and by 0.01 on two clab
#: right ones, down by 0.01 on one, unchanged elsewhere (3, 3.5, 5 mm: the same or less).
#: Development-set choice, provisional.
CHAIN_GAP_MM = 4.0
#: Reach (mm) of the posterior bank from the central sulcus's midline sheet: the half-gap of a
#: closed sulcus plus the anterior wall's cortex, 2.5-3 mm thick in BA4p (Fischl & Dale 2000,
#: PNAS 97:11050; Geyer et al. 1996, Nature 382:805). Within that reach the bank is further held
#: to :data:`BANK_WM_MM` of the white matter, so the reach only has to cover the cortex of a
#: closed sulcus. Compared at 2, 3, 4 and 5 mm (with 2.0, 2.5, 3.0 mm to white matter or none)
#: on two development cases (clab seed 1, pycortex S1 seed 2): 3 mm with 3 mm to white matter
#: gave the best mean Dice (0.52, vs 0.45 for the earlier 2 mm without the white-matter limit).
#: Development-set choice, not held out. Provisional.
DEFAULT_BANK_DEPTH_MM = 3.0
#: The bank (and its control) is the cortex within this distance (mm) of the white matter found
#: on the localisation image: one cortical thickness of BA4p / BA3a (2.5-3 mm; Fischl & Dale
#: 2000), so the sulcal CSF of an open sulcus, which fills the space farther from the walls'
#: white matter, is not measured as cortex. Geometric, not an intensity class of the measured
#: image: an iron band makes cortex darker, farther from white matter's level, never white matter.
BANK_WM_MM = 3.0
#: Bank and control voxels closer than this (mm) to that white matter are drawn but not
#: measured: the voxel layer touching white matter is a partial volume of cortex and white
#: matter, which is brighter than cortex on SWI and dilutes a band (bank / control ratio of a
#: 0.05 ppm band on the development cases, clab / S1 seed 1: 0.94 / 0.89 and 0.81 / 0.88 with that
#: layer, 0.87 / 0.82 and 0.76 / 0.82 without it, no-band hemispheres 0.99-1.04 either way). The
#: layer belongs to the bank, so it stays in the drawn ribbon (ribbon Dice, clab and S1 seeds 1-2,
#: mean of 8 hemispheres: 0.42 with the layer left out of the drawing, 0.50 with it drawn).
#: The distance is in mm: on grids coarser than 1 mm no voxel is that close. Development choice,
#: provisional.
BANK_WM_GAP_MM = 1.0
#: Ribbon voxels (bank and control) within this distance (mm) of the brain mask's edge are drawn
#: but not measured. There the image is not cortex alone: the mask reaches past the pial surface
#: into dura and skull (dark on GRE magnitude), and the high-pass filtered phase keeps a residue
#: of the background field at the mask's boundary, which the SWI mask turns into a dark rim (the
#: edge artefact of homodyne filtering; Haacke et al. 2004, MRM 52:612; Haacke et al. 2009, AJNR
#: 30:19; Rauscher et al. 2005, AJNR 26:736). Measured on this pipeline's default SWI of the
#: development brains (clab, S1; no-band case, seed 1; voxels 1-3 mm from white matter): median
#: bias-corrected SWI 0.13-0.25 within 2 mm of the edge, 0.36-0.40 at 2-3 mm, 0.49-0.64 at 3-4 mm,
#: 0.70 (S1) / 0.95 (clab) at 4-5 mm, 1.01-1.06 at 5-6 mm and 1.0-1.1 deeper (magnitude alone is
#: back by 4-5 mm). Near the vertex a bank reaching into that rim read 23-32 % darker than the
#: cortex around it with no band (S1, --t1 route).
SURFACE_RIM_MM = 5.0
#: Control voxels start this far from the midline (mm): about one voxel of a 1-1.5 mm SWI, so a
#: band's partial volume across a closed sulcus does not reach the control.
CONTROL_GAP_MM = 1.0
#: Whether the midline voxels themselves go to the bank (where the two walls touch they hold
#: both walls' outer cortex). Off: with the thinned (ridge) midline it lowered Dice.
SHEET_TO_BANK = False
#: A bank voxel may lie at most this much deeper (mm, from the brain's outer hull) than the
#: sulcal midline point nearest to it: the bank ends at the fundus, not in the white matter under it.
FUNDUS_MARGIN_MM = 1.0
#: Radius (mm) of the neighbourhood of a midline voxel whose principal axes give the sheet's
#: local normal (plane fit by PCA): a few voxels, less than the radius of curvature of a sulcal
#: wall outside the hand knob's bends (~5-10 mm; Ono et al. 1990).
NORMAL_RADIUS_MM = 3.0
#: Smoothing (mm, Gaussian sigma) of the atlas's anterior score before its gradient orients the
#: normals: the atlas gyri are blurred by registration on this scale anyway.
ANTERIOR_SMOOTH_MM = 3.0
#: A voxel belongs to a wall only if its offset from the nearest midline voxel points along the
#: sheet's normal, within acos(WALL_COSINE) = 60 degrees: voxels beyond the sheet's edges (past the
#: fundus or the crown, beside the sulcus's ends) lie off to the side and belong to neither wall.
WALL_COSINE = 0.5
#: The *drawn* bank is wider than the measured one at the sheet's edges: every voxel on the
#: precentral side of the sheet's local plane (within acos(0.1) = 84 degrees of the normal, so
#: not the voxels in the plane beyond the sheet's edge, which a normal tilted by a few degrees
#: would put on either side; not the 60-degree cone of :data:`WALL_COSINE`) down to
#: :data:`DRAWN_FUNDUS_MARGIN_MM` below the nearest midline point. Beyond the crown and the
#: fundus the sheet's plane no longer says for certain which wall a voxel lines, so these voxels
#: are drawn (the true bank runs from crown to fundus) but not measured: the band call uses the
#: core that satisfies the stricter rules (``core`` of :func:`bank_from_sulcus`), so its ratios
#: and thresholds are those of the core. Checked on the development localisations (clab and S1,
#: seed 1, 11 scenarios each, magnitude route): mean ribbon Dice 0.523 with the core drawn,
#: 0.562 with this wider drawing, higher in each of the 44 hemispheres (cosine 0.0 / 0.2: 0.562 /
#: 0.560; fundus margin 3 mm or none instead of 2: within 0.001). Development-set choice, not
#: held out. Provisional.
DRAWN_WALL_COSINE = 0.1
DRAWN_FUNDUS_MARGIN_MM = 2.0
#: The drawn bank also reaches this many voxels (of the coarsest axis) beyond :data:`BANK_WM_MM`
#: from the white matter found: that white matter's boundary is found to within a voxel, and on
#: a coarse axis partial volume with cortex pulls it back by up to half a voxel, so a cortex voxel
#: one cortical thickness from true white matter can lie BANK_WM_MM + half a voxel from the
#: white matter found. Drawn, not measured. Checked as above (44 hemispheres): mean Dice 0.562
#: -> 0.571, higher in 36, lower in 4; the oblique 0.9 x 0.9 x 1.5 mm cases gain most (clab
#: 0.42 / 0.37 -> 0.45 / 0.40). Development-set choice, not held out. Provisional.
DRAWN_WM_VOXELS = 0.5
#: A midline voxel bounds a wall only where the sheet faces the precentral gyrus: its normal lies
#: within acos(SHEET_FACING_COSINE) = 60 degrees (as :data:`WALL_COSINE`) of the direction from the
#: atlas's postcentral to its precentral gyrus (the smoothed anterior score's gradient). Pieces of
#: other sulci joined to the central sulcus's sheet (the precentral and postcentral sulci and
#: their branches meet it in junctions; Ono et al. 1990) run across that direction and bound
#: neither wall. Checked on the development localisations (clab, S1; 5 magnitude-route cases):
#: mean ribbon Dice 0.431 without the rule, 0.468 with it (0.467 at cos 0.3, 0.442 at 0.7).
SHEET_FACING_COSINE = 0.5
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
    the mantle below / above the bounds, and ``denoise_mm``: the extra smoothing that showed the
    cortex's level (0 when it showed at once; :data:`DENOISE_STEPS_MM`). Raises InputError when
    less than 5 % of the mantle differs from white matter (no usable contrast).
    """
    sp = np.asarray(spacing_kji, float)
    img = np.asarray(image, np.float32)
    depth = hull_depth if hull_depth is not None else ndimage.distance_transform_edt(brain, sampling=sp)
    first = None
    for pre_mm in (0.0,) + tuple(DENOISE_STEPS_MM):
        # noise that hides the cortex's peak: denoise a little more and classify again
        src = img if pre_mm == 0 else ndimage.gaussian_filter(img, [pre_mm / s for s in sp])
        wm, info = _white_matter_once(src, brain, sp, depth)
        info["denoise_mm"] = pre_mm
        if info["cortex_level"] is not None:
            return wm, info
        if first is None:
            first = (wm, info)
    # no step showed the cortex's peak: the undenoised classification, as without the steps
    return first


def _white_matter_once(img: np.ndarray, brain: np.ndarray, sp: np.ndarray, depth: np.ndarray) -> tuple:
    """One classification of :func:`white_matter` on ``img`` (see there)."""
    flat = _flatten(img, brain, sp)
    flat = ndimage.gaussian_filter(flat, [SMOOTH_MM / s for s in sp])
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
    if max(below, above) < 0.05:
        raise InputError(f"only {100 * max(below, above):.0f} % of the cortical mantle differs from white matter on the "
                         "localisation image: the central sulcus cannot be found on it. Give a T1 (--t1) or a "
                         "parcellation.")
    polarity, i_ctx = _polarity(mv, bins, i_wm, sd_wm, below, above)
    # where the cortex's own level shows as a peak of the mantle's histogram, white matter ends
    # midway to it on that side (the minimum-error boundary of two classes of equal spread and
    # weight): with a white-matter spread comparable to the grey/white contrast (~10 % on GRE
    # magnitude), WM_SD spreads would otherwise take in half of the cortex, and with a contrast
    # of 30-40 % (a T1) they would leave out the white matter of the gyral blades, whose level
    # differs from the deep white matter's by more than a few percent (partial volume, residual
    # bias): on pycortex S1's own T1 the tolerance alone kept 18 % of the brain as white matter,
    # the midpoint 33 % (on the GRE magnitudes of both development brains the midpoint was
    # already the tighter bound, so nothing changed there).
    if i_ctx is not None:
        mid = 0.5 * (i_wm + i_ctx)
        lower, upper = (mid, upper) if polarity > 0 else (lower, mid)
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
            "cortex_level": None if i_ctx is None else round(float(i_ctx), 4),
            "wm_bounds": [round(float(lower), 4), round(float(upper), 4)],
            "mantle_below_above": [round(below, 3), round(above, 3)],

            "wm_fraction_of_brain": round(float(wm.sum()) / max(int(brain.sum()), 1), 4)}
    return wm, info


def _polarity(mv: np.ndarray, bins: np.ndarray, i_wm: float, sd_wm: float, below: float, above: float) -> tuple:
    """``(polarity, cortex_level)`` of the localisation image from its cortical mantle's values
    ``mv``: +1 when the cortex is darker than white matter (level ``i_wm``, spread ``sd_wm``),
    -1 when brighter; ``below`` / ``above``: the mantle's fractions beyond white matter's bounds.
    The cortex level is None when no peak shows on that side.

    The polarity is the side of white matter where the cortex's own peak stands. Grey matter's level
    lies between white matter's and CSF's on T1-, T2*- and proton-density-weighted images
    alike, so when both sides have a peak the one nearer to white matter is the cortex's
    (:data:`POLARITY_MIN_PEAK`); the side holding more of the mantle decides only when neither
    side has one. The mantle's mass alone misleads when the grey/white contrast is small and
    sulcal CSF and veins lie on the other side: on a proton-density-weighted magnitude (6 deg
    flip at TR 28 ms: cortex 1.10x white matter, pure CSF 1.46x, the mantle's CSF darkened by
    veins and partial volume) half the mantle lay below white matter's bound and 38 % above it,
    and the cortex was taken to be darker (clab and pycortex S1, seed 1: ribbon Dice 0.07-0.10,
    both bands missed).
    """
    peaks = {pol: _cortex_peak(mv, bins, i_wm, sd_wm, pol) for pol in (1, -1)}
    found = {pol: pk for pol, pk in peaks.items() if pk is not None}
    if found:
        tallest = max(pk[1] for pk in found.values())
        found = {pol: pk for pol, pk in found.items() if pk[1] >= POLARITY_MIN_PEAK * tallest}
        polarity = min(found, key=lambda pol: abs(found[pol][0] - i_wm))
    else:
        polarity = 1 if below >= above else -1
    return polarity, (peaks[polarity][0] if peaks[polarity] is not None else None)


def _cortex_mode(values: np.ndarray, bins: np.ndarray, i_wm: float, sd_wm: float, polarity: int) -> float | None:
    """The cortex's level on the ``polarity`` side of white matter, or None (:func:`_cortex_peak`)."""
    peak = _cortex_peak(values, bins, i_wm, sd_wm, polarity)
    return None if peak is None else peak[0]


def _cortex_peak(values: np.ndarray, bins: np.ndarray, i_wm: float, sd_wm: float, polarity: int) -> tuple | None:
    """``(level, height)`` of the cortex's peak (height: the smoothed histogram's count there).

    The cortex's level: the peak of the histogram of ``values`` (the mantle) nearest to white
    matter's level ``i_wm`` among those more than one white-matter SD (and more than
    :data:`WM_MIN_TOLERANCE` of its level) from it on the cortex's
    side (``polarity`` +1: below) and standing out by >= 1 % of the histogram's maximum (sulcal
    CSF and vessels make peaks farther out); None when there is none (the histogram only falls
    away from white matter there). Peaks more than :data:`CORTEX_MAX_CONTRAST` of white
    matter's level away are CSF's, not cortex's."""
    from scipy.signal import find_peaks

    mids = 0.5 * (bins[1:] + bins[:-1])
    h = ndimage.gaussian_filter1d(np.histogram(values, bins=bins)[0].astype(float), 2.0)
    peaks, _ = find_peaks(h, prominence=0.01 * h.max())
    # a peak within white matter's own tolerance is white matter's texture or its partial
    # volume, not cortex (grey/white contrast is >= ~10 %; see WM_MIN_TOLERANCE)
    gap = max(sd_wm, WM_MIN_TOLERANCE * abs(i_wm))
    beyond = mids[peaks] < i_wm - gap if polarity > 0 else mids[peaks] > i_wm + gap
    beyond &= np.abs(mids[peaks] - i_wm) <= CORTEX_MAX_CONTRAST * abs(i_wm)
    if not beyond.any():
        return None
    levels = mids[peaks[beyond]]
    k = int(np.argmin(np.abs(levels - i_wm)))
    return float(levels[k]), float(h[peaks[beyond][k]])


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
        cand = midline[box] & (d_cs <= search_mm) & mine & ~_near_fissure(atlas_labels[box], sp)
        n = int(ndimage.label(cand, structure=np.ones((3, 3, 3), bool))[1])
        if n == 0:
            conf[side] = 0.0
            warnings.append(f"No sulcus was found near the atlas's {side} central sulcus on the image: the {side} "
                            "bank falls back to the atlas. Check the ribbon.")
            continue
        w = np.exp(-0.5 * (d_cs / sigma_mm) ** 2)
        sheet = _sheet_by_slabs(cand, w, ijk_to_ras, lo, slab_mm, extent=cs_atlas, spacing_kji=sp)
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


def _near_fissure(labels: np.ndarray, sp, half_width_mm: float = FISSURE_HALF_WIDTH_MM) -> np.ndarray:
    """Voxels within ``half_width_mm`` of the atlas's plane between the hemispheres: where the
    distances to the nearest left (odd, :data:`templates.REGION_LABELS`) and right (even) labels
    differ by less than twice the half-width. False everywhere when a side has no label."""
    left = (labels > 0) & (labels % 2 == 1)
    right = (labels > 0) & (labels % 2 == 0)
    if not left.any() or not right.any():
        return np.zeros(labels.shape, bool)
    d_l = ndimage.distance_transform_edt(~left, sampling=sp)
    d_r = ndimage.distance_transform_edt(~right, sampling=sp)
    return np.abs(d_l - d_r) < 2.0 * half_width_mm


def _slab_heights(mask: np.ndarray, ijk_to_ras: np.ndarray, lo) -> np.ndarray:
    """Superior (RAS z, mm) coordinate of the voxels of ``mask`` (a box starting at ``lo``)."""
    kji = np.argwhere(mask)
    ijk = (kji + np.asarray(lo))[:, ::-1].astype(float)
    return ijk @ np.asarray(ijk_to_ras)[2, :3] + ijk_to_ras[2, 3]


def _sheet_by_slabs(cand: np.ndarray, w: np.ndarray, ijk_to_ras: np.ndarray, lo, slab_mm: float,
                    extent: np.ndarray | None = None, margin_mm: float = EXTENT_MARGIN_MM,
                    spacing_kji=(1.0, 1.0, 1.0), gap_mm: float = CHAIN_GAP_MM) -> np.ndarray:
    """The central-sulcus sheet, chosen slab by slab (see :func:`find_central_sulcus`).

    In each horizontal slab the connected pieces of ``cand`` are scored by sum(w) * mean(w).
    The sheet starts from the best piece of all and is followed up and down: in the next slab
    only pieces within ``gap_mm`` (:data:`CHAIN_GAP_MM`; ``spacing_kji`` gives the voxel size) of
    the piece chosen before may continue it (the central sulcus is one uninterrupted sheet in
    ~98 % of hemispheres; Ono et al. 1990), the best of them wins, and the sheet stops where none
    is that near or beyond ``margin_mm`` from the vertical extent of ``extent`` (the atlas's sulcus).
    """
    from scipy.spatial import cKDTree

    kji = np.argwhere(cand)
    if not len(kji):
        return np.zeros(cand.shape, bool)
    z = _slab_heights(cand, ijk_to_ras, lo)
    top = z.max()
    bins = np.floor((top - z) / slab_mm).astype(int)      # 0 at the top
    allowed = np.ones(int(bins.max()) + 1, bool)
    if extent is not None and extent.any():
        ze = _slab_heights(extent, ijk_to_ras, lo)
        b_hi = np.floor((top - (ze.max() + margin_mm)) / slab_mm)
        b_lo = np.floor((top - (ze.min() - margin_mm)) / slab_mm)
        b = np.arange(allowed.size)
        allowed = (b >= b_hi) & (b <= b_lo)
    struct = np.ones((3, 3, 3), bool)
    pieces = {}          # slab -> (lab array over the whole box, scores per label, the slab's voxels)
    for b in np.flatnonzero(allowed):
        sel = kji[bins == b]
        if not len(sel):
            continue
        sub = np.zeros(cand.shape, bool)
        sub[tuple(sel.T)] = True
        lab, n = ndimage.label(sub, structure=struct)
        idx = np.arange(1, n + 1)
        wsum = ndimage.sum_labels(w, lab, index=idx)
        count = ndimage.sum_labels(np.ones_like(w), lab, index=idx)
        pieces[int(b)] = (lab, wsum * wsum / np.maximum(count, 1), sel)
    sheet = np.zeros(cand.shape, bool)
    if not pieces:
        return sheet
    start = max(pieces, key=lambda b: pieces[b][1].max())
    first = pieces[start][0] == int(np.argmax(pieces[start][1])) + 1
    sheet |= first
    sp = np.asarray(spacing_kji, float)
    for step in (-1, 1):                                   # up, then down
        prev, b = np.argwhere(first), start + step          # voxels of the piece chosen last
        while b in pieces:
            lab, score, here = pieces[b]
            dist, _ = cKDTree(prev * sp).query(here * sp, distance_upper_bound=gap_mm + 1e-6)
            touching = np.unique(lab[tuple(here[np.isfinite(dist)].T)])
            if not len(touching):
                break
            best = int(touching[np.argmax(score[touching - 1])])
            prev = here[lab[tuple(here.T)] == best]
            sheet[tuple(prev.T)] = True
            b += step
    return sheet


def oriented_normals(points_mm: np.ndarray, toward: np.ndarray, spacing_kji,
                     radius_mm: float = NORMAL_RADIUS_MM) -> np.ndarray:
    """Unit normals of a sheet of voxels, oriented consistently.

    ``points_mm`` (N, 3): voxel centres (mm, kji order). ``toward`` (N, 3): a rough direction
    per point (the gradient of the atlas's anterior score). Each normal is the least principal
    axis of the points within ``radius_mm``; signs are made to agree along a minimum spanning
    tree of the neighbour graph weighted by 1 - |n_i . n_j| (Hoppe et al. 1992), so the
    orientation crosses smooth parts of the sheet rather than its folds, and each connected
    piece is then turned to agree with ``toward`` on the whole.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree
    from scipy.spatial import cKDTree

    pts = np.asarray(points_mm, float)
    g = np.asarray(toward, float)
    n_pts = len(pts)
    normals = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
    if n_pts < 4:
        return normals
    tree = cKDTree(pts)
    planarity = np.zeros(n_pts)
    for i, ids in enumerate(tree.query_ball_point(pts, radius_mm)):
        if len(ids) < 4:
            continue
        q = pts[ids] - pts[ids].mean(0)
        w, v = np.linalg.eigh(q.T @ q)
        normals[i] = v[:, 0]
        planarity[i] = 1.0 - w[0] / max(w[1], 1e-9)
    link = 1.05 * float(np.linalg.norm(spacing_kji))          # 26-neighbours
    pairs = tree.query_pairs(link, output_type="ndarray")
    if not len(pairs):
        return normals * np.sign(np.einsum("ij,ij->i", normals, g) + 1e-12)[:, None]
    weight = 1.0 - np.abs(np.einsum("ij,ij->i", normals[pairs[:, 0]], normals[pairs[:, 1]])) + 1e-3
    graph = coo_matrix((weight, (pairs[:, 0], pairs[:, 1])), shape=(n_pts, n_pts)).tocsr()
    mst = minimum_spanning_tree(graph)
    mst = mst + mst.T
    n_comp, comp = connected_components(mst, directed=False)
    for c in range(n_comp):
        members = np.flatnonzero(comp == c)
        root = members[np.argmax(planarity[members])]
        order, pred = breadth_first_order(mst, root, directed=False)
        for i in order[1:]:
            if normals[i] @ normals[pred[i]] < 0:
                normals[i] = -normals[i]
        if np.einsum("ij,ij->i", normals[members], g[members]).sum() < 0:
            normals[members] = -normals[members]
    return normals


def _box_around(mask: np.ndarray, pad_mm: float, sp: np.ndarray) -> tuple:
    """Slices of the bounding box of ``mask`` grown by ``pad_mm`` on every side (within the grid)."""
    pad = np.ceil(pad_mm / sp).astype(int)
    nz = np.argwhere(mask)
    lo = np.maximum(nz.min(0) - pad, 0)
    hi = np.minimum(nz.max(0) + pad + 1, np.array(mask.shape))
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _sheet_normals(sheet: np.ndarray, anterior_score: np.ndarray, sp: np.ndarray) -> tuple:
    """The sheet's voxels (N, 3 kji), their unit normals oriented towards the precentral side
    (:func:`oriented_normals` along the smoothed gradient of ``anterior_score``), whether each
    faces the precentral gyrus (:data:`SHEET_FACING_COSINE`), and an int64 array over ``sheet``'s
    grid giving each sheet voxel's row (-1 elsewhere)."""
    sheet_kji = np.argwhere(sheet)
    score = ndimage.gaussian_filter(anterior_score.astype(np.float32), ANTERIOR_SMOOTH_MM / sp)
    grad = np.stack([g[tuple(sheet_kji.T)] for g in np.gradient(score, *sp)], axis=1)
    normals = oriented_normals(sheet_kji * sp, grad, sp)
    toward = grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)
    facing = np.einsum("ij,ij->i", normals, toward) >= SHEET_FACING_COSINE
    row = np.full(sheet.shape, -1, np.int64)
    row[tuple(sheet_kji.T)] = np.arange(len(sheet_kji))
    return sheet_kji, normals, facing, row


def wall_by_white_matter(sulcus_midline: np.ndarray, anterior_score: np.ndarray, brain: np.ndarray,
                         wm: np.ndarray, spacing_kji, *, hull_depth: np.ndarray,
                         bank_depth_mm: float = DEFAULT_BANK_DEPTH_MM, wm_mm: float | None = None,
                         fundus_margin_mm: float = DRAWN_FUNDUS_MARGIN_MM) -> tuple:
    """The precentral wall of each hemisphere's sulcus as the cortex of its white-matter surface.

    Each cortex voxel belongs to the wall whose white matter is nearest to it (a Voronoi
    partition of the cortex by the white-matter surface, as a cortex voxel lies between its own
    gyrus's white matter and the sulcus). The white-matter surface voxels near the sheet are put
    on the precentral or the postcentral side by their offset from the nearest sheet voxel along
    its oriented normal: they lie a cortical thickness from the sheet, so the sign is clear where
    the offset of a cortex voxel next to the sheet (:func:`bank_from_sulcus`) is a fraction of a
    voxel and flips with the normal's tilt, and the sheet's own voxels, which hold the outer
    cortex of a closed sulcus, are assigned too. On the development localisations (clab and
    pycortex S1, seed 1, ten cases, 20 hemispheres; offline) adding this wall to the drawn bank
    raised mean ribbon Dice 0.578 -> 0.615 (19 hemispheres up, one down by 0.004); alone it gave
    0.605. Development-set check, not held out.

    Parameters
    ----------
    sulcus_midline : uint8, 1 left / 2 right sheet voxels.
    anterior_score : larger towards the precentral gyrus (as in :func:`bank_from_sulcus`).
    wm : bool, the white matter found on the localisation image.
    hull_depth : depth below the brain's hull (mm); a wall voxel is at most ``fundus_margin_mm``
        deeper than its nearest sheet voxel.
    bank_depth_mm : reach from the sheet (mm); ``wm_mm``: reach from white matter (mm, default
        :data:`BANK_WM_MM` plus :data:`DRAWN_WM_VOXELS` of the coarsest voxel).

    Returns ``(labels, depth)``: uint8 1/2 (the wall of the left / right sheet; 0 elsewhere) and
    float32 distance (mm) from that sheet.
    """
    sp = np.asarray(spacing_kji, float)
    wm = np.asarray(wm, bool)
    if wm_mm is None:
        wm_mm = BANK_WM_MM + DRAWN_WM_VOXELS * float(sp.max())
    labels = np.zeros(sulcus_midline.shape, np.uint8)
    depth = np.zeros(sulcus_midline.shape, np.float32)
    surface_reach = bank_depth_mm + wm_mm + float(sp.max())
    for h in (1, 2):
        sheet = sulcus_midline == h
        if not sheet.any():
            continue
        box = _box_around(sheet, surface_reach + 2, sp)
        s, w = sheet[box], wm[box]
        if not w.any():
            continue
        _, normals, facing, row = _sheet_normals(s, anterior_score[box], sp)
        d_s, idx_s = ndimage.distance_transform_edt(~s, sampling=sp, return_indices=True)
        # the white-matter surface near the sheet, on the precentral (+1) or postcentral (-1) side
        surf = w & ~ndimage.binary_erosion(w) & (d_s <= surface_reach)
        surf_kji = np.argwhere(surf)
        near_s = tuple(i[surf] for i in idx_s)
        r = row[near_s]
        side = np.einsum("ij,ij->i", (surf_kji - np.stack(near_s, axis=1)) * sp, normals[r])
        wall = np.zeros(s.shape, np.int8)
        wall[tuple(surf_kji.T)] = np.where(facing[r], np.sign(side), 0).astype(np.int8)
        # cortex: each voxel takes the side of its nearest white-matter voxel
        d_w, idx_w = ndimage.distance_transform_edt(~w, sampling=sp, return_indices=True)
        cand = brain[box] & ~w & (d_w <= wm_mm) & (d_s <= bank_depth_mm)
        own = wall[tuple(i[cand] for i in idx_w)] > 0
        near_c = tuple(i[cand] for i in idx_s)
        shallow = hull_depth[box][cand] - hull_depth[box][near_c] <= fundus_margin_mm
        pick = np.zeros(s.shape, bool)
        pick[cand] = own & shallow
        lab_box, dep_box = labels[box], depth[box]
        pick &= lab_box == 0
        lab_box[pick] = h
        dep_box[pick] = d_s[pick]
    return labels, depth


def bank_from_sulcus(sulcus_midline: np.ndarray, anterior_score: np.ndarray, brain: np.ndarray, spacing_kji, *,
                     hull_depth: np.ndarray, bank_depth_mm: float = DEFAULT_BANK_DEPTH_MM,
                     control_gap_mm: float = CONTROL_GAP_MM, fundus_margin_mm: float = FUNDUS_MARGIN_MM,
                     bank_allowed: np.ndarray | None = None, control_allowed: np.ndarray | None = None,
                     sheet_to_bank: bool = SHEET_TO_BANK, drawn_wall_cosine: float = WALL_COSINE,
                     drawn_fundus_margin_mm: float | None = None, return_core: bool = False) -> tuple:
    """Bank (anterior wall) and matched control (posterior wall) of each hemisphere's sulcus.

    Parameters
    ----------
    sulcus_midline : uint8 array, 1 left / 2 right midline voxels
    anterior_score : float array
        Larger towards the precentral gyrus (e.g. distance to the atlas postcentral minus
        distance to the atlas precentral). Its smoothed gradient orients the sheet's normals
        (:func:`oriented_normals`); a voxel is on the anterior wall when it lies on the normal's
        side of its nearest midline voxel.
    hull_depth : float array
        Depth (mm) below the brain's outer hull; a bank voxel is at most ``fundus_margin_mm``
        deeper than its nearest midline voxel.
    bank_allowed, control_allowed : bool arrays or None
        Restrict bank / control (e.g. to the precentral / postcentral cortex of a parcellation).
    drawn_wall_cosine, drawn_fundus_margin_mm : float
        The bank drawn may reach wider than its core (the voxels within acos(WALL_COSINE) of the
        normal and ``fundus_margin_mm`` of the fundus): :data:`DRAWN_WALL_COSINE` and
        :data:`DRAWN_FUNDUS_MARGIN_MM` on the image route. Defaults: the core's rules (drawn = core).
    return_core : bool
        Also return ``core``: bool, the bank's core and the whole control (what is measured).

    Returns ``(labels, depth)`` (or ``(labels, depth, core)``): uint8 1/2 bank L/R, 3/4 control
    L/R; float32 distance (mm) from the sulcal midline (the depth into the wall, used for
    matched-depth references).
    """
    sp = np.asarray(spacing_kji, float)
    labels = np.zeros(sulcus_midline.shape, np.uint8)
    depth = np.zeros(sulcus_midline.shape, np.float32)
    core = np.zeros(sulcus_midline.shape, bool)
    reach = bank_depth_mm
    drawn_fundus = fundus_margin_mm if drawn_fundus_margin_mm is None else max(drawn_fundus_margin_mm,
                                                                               fundus_margin_mm)
    drawn_cos = min(drawn_wall_cosine, WALL_COSINE)
    for h in (1, 2):
        sheet = sulcus_midline == h
        if not sheet.any():
            continue
        box = _box_around(sheet, reach + 2, sp)
        s = sheet[box]
        d, idx = ndimage.distance_transform_edt(~s, sampling=sp, return_indices=True)
        near = (d <= reach) & brain[box]
        nk, nj, ni = (i[near] for i in idx)
        sheet_kji, normals, facing, row = _sheet_normals(s, anterior_score[box], sp)
        r = row[nk, nj, ni]
        offset = (np.argwhere(near) - np.stack([nk, nj, ni], axis=1)) * sp     # from the sheet, mm
        side = np.einsum("ij,ij->i", offset, normals[r])
        deeper = hull_depth[box][near] - hull_depth[box][nk, nj, ni]
        dd = d[near]
        ok_depth = (deeper <= fundus_margin_mm) & facing[r]
        bank_core = ok_depth & (side >= WALL_COSINE * dd) & (side > 0)
        bank = (deeper <= drawn_fundus) & facing[r] & (side >= drawn_cos * dd) & (side > 0)
        ctrl = ok_depth & (side <= -WALL_COSINE * dd) & (side < 0) & (dd >= control_gap_mm)
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
        new = (vals == 0) & (sel > 0)
        vals = np.where(vals == 0, sel, vals)
        lab_box[near] = vals
        dv = dep_box[near]
        dep_box[near] = np.where(vals > 0, dd, dv)
        core_box = core[box]
        cv = core_box[near]
        core_box[near] = np.where(new, (sel == h + 2) | bank_core | (on_sheet & (sel == h)), cv)
    return (labels, depth, core) if return_core else (labels, depth)
