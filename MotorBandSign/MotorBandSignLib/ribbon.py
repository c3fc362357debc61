"""The ribbon: the posterior bank of the precentral gyrus, with control cortex, per hemisphere.

The posterior bank is the precentral cortex that faces the central sulcus: precentral grey
matter within :data:`DEFAULT_BANK_DEPTH_MM` of the postcentral cortex across the sulcus (the
localised central sulcus), and no deeper than the cortex. It is defined by *geometry* on the
localised anatomy and a grey-matter probability that does not come from the darkness being
measured: classifying grey matter on the SWI itself would drop an iron-laden band that is darker
than white matter (shared/reference/BRIEF.md, "Measured here").

Control cortex (same hemisphere; the places the case report found normal): the postcentral
cortex, the anterior lip / crown of the precentral gyrus and the adjacent frontal cortex, all at
least :data:`CONTROL_GAP_MM` from the bank so that blur of a band does not contaminate it.

Each bank and its control are split into medial (leg), intermediate (hand knob) and lateral
(face) regions along the gyrus, following the motor homunculus (Penfield & Boldrey 1937, Brain
60:389) and the regional scoring of Zejlon et al. 2024 (Ann Clin Transl Neurol 11:1280).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import templates
from .errors import InputError
from .volume import Volume

#: Ribbon label values and segment names (stable: other modules and saved scenes use them).
SEGMENT_NAMES = {
    1: "Left precentral posterior bank",
    2: "Right precentral posterior bank",
    3: "Left control cortex",
    4: "Right control cortex",
}
#: Segment colours (RGB 0..1): warm for the banks (where the band is sought), cool for controls;
#: left a shade darker than right so the two sides are told apart in one view.
SEGMENT_COLORS = {
    1: (0.85, 0.33, 0.10),
    2: (0.93, 0.69, 0.13),
    3: (0.00, 0.45, 0.74),
    4: (0.30, 0.75, 0.93),
}
REGION_NAMES = {1: "medial", 2: "intermediate", 3: "lateral"}
REGION_COLORS = {1: (0.47, 0.67, 0.19), 2: (0.49, 0.18, 0.56), 3: (0.64, 0.08, 0.18)}

#: Thickness (mm) of precentral cortex counted as the posterior bank, measured from the
#: central sulcus (the postcentral boundary) on the atlas/parcellation labels. The cortex of the
#: precentral gyrus is ~2.5-3 mm thick in the posterior bank, where area 4p lies (Fischl & Dale
#: 2000, PNAS 97:11050; Geyer et al. 1996, Nature 382:805). The sulcal route
#: (``anatomy.localize(..., sulcal=True)``) measures the same depth from the sulcal midline
#: (its measured default, :data:`sulci.DEFAULT_BANK_DEPTH_MM`, is the same 3 mm).
DEFAULT_BANK_DEPTH_MM = 3.0
#: Minimum distance (mm) of control cortex from the bank: about one to two voxels of a 1-1.5 mm
#: SWI plus the point-spread of an mIP/high-pass filter, so a band's partial volume stays out of
#: the control (the brief's request of ~2 mm).
CONTROL_GAP_MM = 2.0
#: Frontal cortex within this distance (mm) of the precentral gyrus is "adjacent" control: about
#: one gyral width (superior/middle frontal gyri are ~10 mm wide; Ono et al. 1990, Atlas of the
#: Cerebral Sulci).
FRONTAL_CONTROL_MM = 10.0
#: Grey-matter probability at or above which a voxel counts as cortex (maximum a posteriori for
#: a two-class GM/non-GM decision).
GM_THRESHOLD = 0.5
#: Medial/intermediate/lateral split along the gyrus, measured on the MNI template by the angle
#: ``theta = atan2(|x|, z - REGION_Z0_MM)`` in the coronal plane from the vertical through the
#: centre of the hemispheric arc: medial (leg) below REGION_THETA_DEG[0], intermediate (hand)
#: between, lateral (face) above REGION_THETA_DEG[1]. The homunculus puts the leg on the vertex
#: and medial surface, the hand in the middle and the face lowest (Penfield & Boldrey 1937);
#: the hand knob (MNI about +-38, -22, 56; Yousry et al. 1997, Brain 120:141) then lies at
#: ~40 deg, mid-intermediate; the vertex leg area (|x| < ~22 mm at z ~ 70) is medial and the
#: face area (|x| > ~50 mm, z < ~40 mm) lateral -- the three-part split raters score (Zejlon et
#: al. 2024). The same definition as the phantom's truth regions (phantom_anatomy), so tests
#: compare like with like.
REGION_Z0_MM = 10.0
REGION_THETA_DEG = (22.0, 55.0)

#: Sulcal CSF counts as the central sulcus where both walls are within this distance (mm): the
#: central sulcus is 1-3 mm wide in young adults and widens by ~0.4-0.7 mm per decade (Kochunov
#: et al. 2005, Hum Brain Mapp 26:210), so 5 mm keeps an elderly patient's sulcus and leaves out
#: the CSF over neighbouring sulci.
CS_REACH_MM = 5.0
#: ... and where the directions from it to the nearest precentral and the nearest postcentral
#: cortex are more than 120 degrees apart (the two walls face each other across the sulcus; a
#: geometric choice that tolerates the sulcus's curvature, not a published constant).
CS_FACING_COS = -0.5
#: A precentral voxel is on the sulcal wall when the central sulcus is no more than this many
#: voxels farther than its nearest outer surface: on a voxel grid the boundary between two walls'
#: territories is uncertain by a voxel, and the inner layers of a 2-3 voxel thick bank often sit
#: as near to a side branch of sulcal CSF as to the sulcus. Chosen leave-one-brain-out on the
#: development brains (either brain alone picks 1.0-1.25 from 0-2; Dice plateaus there).
PARCELLATION_TIE_VOXELS = 1.0
#: On the image routes (magnitude or T1) the control is not only the facing (postcentral) wall of
#: the sulcus but all cortex around the bank out to this distance (mm), at the same depth as the
#: measured bank (1-3 mm from the white matter found, sulci.BANK_WM_GAP_MM / BANK_WM_MM) and
#: CONTROL_GAP_MM clear of it: the facing wall, the precentral crown and anterior wall, the
#: postcentral gyrus -- the neighbouring gyri the case report found normal -- about one gyral
#: width (the value of FRONTAL_CONTROL_MM; Ono et al. 1990). A thin facing wall alone swings with
#: the veins and sulcal CSF of one sulcus: on the development localisations (clab and S1, seed 1,
#: 11 scenarios each) the no-band bank / control ratios were 0.91-1.12 (SD 0.057) against the facing
#: wall and 0.92-1.04 (SD 0.034) against this neighbourhood (6 mm: SD 0.045; 15 mm: 0.033), while
#: 0.05 ppm bands stayed 0.72-0.84. Development-set comparison, thresholds refitted after it.
NEIGHBOUR_CONTROL_MM = 10.0
_PRE = {"left": 1, "right": 2}
_POST = {"left": 3, "right": 4}
_FRONT = {"left": 5, "right": 6}
_BANK = {"left": 1, "right": 2}
_CTRL = {"left": 3, "right": 4}


@dataclass
class Ribbon:
    """Result of :func:`build_ribbon`: labels 1..4 (see :data:`SEGMENT_NAMES`), regions 1..3."""

    labels: Volume
    regions: Volume
    depth: Volume | None = None
    warnings: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    #: On the sulcal route: the ribbon the atlas labels alone give (labels 1..4), built once for
    #: the low-confidence fallback and for the diffuse flag's cortex sample.
    atlas_labels: np.ndarray | None = None
    #: Where a ribbon voxel is measured (bool, whole grid), or None for everywhere. On the sulcal
    #: route the voxel layer on the white matter found on the image is drawn (it is part of the
    #: bank) but not measured (sulci.BANK_WM_GAP_MM), and so are the ribbon's voxels in the rim at
    #: the brain's edge (sulci.SURFACE_RIM_MM) and the bank's voxels beyond the sheet's crown and
    #: fundus (sulci.DRAWN_WALL_COSINE).
    measured: np.ndarray | None = None


def build_ribbon(anatomy, *, bank_depth_mm: float = DEFAULT_BANK_DEPTH_MM, control_gap_mm: float = CONTROL_GAP_MM,
                 frontal_control_mm: float = FRONTAL_CONTROL_MM, gm_threshold: float = GM_THRESHOLD,
                 hand_knob_ras: dict | None = None) -> Ribbon:
    """Posterior bank and control cortex per hemisphere from an :class:`anatomy.Anatomy`.

    Parameters
    ----------
    anatomy : Anatomy
        From :func:`anatomy.localize`. With ``source == "segmentation"`` its labels are the ribbon.
    bank_depth_mm : float
        Thickness of the bank measured from the central sulcus (default sourced above).
    control_gap_mm : float
        Minimum distance of control voxels from the bank.
    frontal_control_mm : float
        How far into the frontal cortex (from the precentral gyrus) the control reaches.
    gm_threshold : float
        Cortex = grey-matter probability >= this.
    hand_knob_ras : dict or None
        Overrides ``anatomy.hand_knob_ras`` to centre the intermediate region.
    """
    if bank_depth_mm <= 0 or control_gap_mm < 0 or frontal_control_mm < 0:
        raise InputError("bank_depth_mm must be > 0 and control_gap_mm, frontal_control_mm >= 0 (mm).")
    if not 0 < gm_threshold < 1:
        raise InputError(f"gm_threshold must lie in (0, 1), got {gm_threshold}.")
    hk = hand_knob_ras if hand_knob_ras is not None else getattr(anatomy, "hand_knob_ras", None)
    warnings = []
    if anatomy.source == "segmentation":
        labels = anatomy.labels.with_array(anatomy.labels.array.astype(np.uint8), "ribbon")
        regions = regions_for(labels, anatomy, hand_knob_ras=hk)
        return Ribbon(labels, regions, None, warnings, {"source": "segmentation"})

    grid = anatomy.labels
    if getattr(anatomy, "sulcus", None) is not None:
        import dataclasses

        from . import sulci

        rb = _ribbon_from_sulcus(anatomy, hk, bank_depth_mm=bank_depth_mm)
        legacy = build_ribbon(dataclasses.replace(anatomy, sulcus=None), bank_depth_mm=bank_depth_mm,
                              control_gap_mm=control_gap_mm, frontal_control_mm=frontal_control_mm,
                              gm_threshold=gm_threshold, hand_knob_ras=hk)
        conf = anatomy.sulcus.confidence
        low = [side for side in ("left", "right") if anatomy.source == "atlas"
               and (conf.get(side) is None or conf.get(side) < sulci.LOW_CONFIDENCE)]
        if not low:
            return dataclasses.replace(rb, atlas_labels=legacy.labels.array)
        # where the sulcus found on the image is doubtful, the atlas's labels decide that side
        out, dep = rb.labels.array.copy(), rb.depth.array.copy()
        measured = None if rb.measured is None else rb.measured.copy()
        for side in low:
            v = _BANK[side]
            out[np.isin(out, (v, v + 2))] = 0
            take = np.isin(legacy.labels.array, (v, v + 2)) & (out == 0)
            out[take] = legacy.labels.array[take]
            dep[take] = legacy.depth.array[take]
            if measured is not None:
                measured[take] = True        # the atlas's ribbon is measured whole, as drawn
        labels = grid.with_array(out, "ribbon")
        info = dict(rb.info, atlas_sides=low)
        return Ribbon(labels, regions_for(labels, anatomy, hand_knob_ras=hk), grid.with_array(dep, rb.depth.name),
                      rb.warnings + legacy.warnings, info, legacy.labels.array, measured)
    lab = grid.array
    sp = grid.spacing_kji
    cortex = (anatomy.gm_prob.array >= gm_threshold) & (anatomy.brain_mask.array > 0)
    wm_prior = getattr(anatomy, "wm_prob", None)
    wall_wm = None
    if anatomy.source == "parcellation" and wm_prior is not None and np.any(wm_prior.array >= 0.5):
        wall_wm = wm_prior.array >= 0.5
    out = np.zeros(grid.shape, np.uint8)
    depth = np.zeros(grid.shape, np.float32)
    for side in ("left", "right"):
        P, Q, F = lab == _PRE[side], lab == _POST[side], lab == _FRONT[side]
        if not P.any() or not Q.any():
            warnings.append(f"No {side} precentral/postcentral cortex was localised (outside the image?): "
                            f"the {side} side has no ribbon.")
            continue
        box = _bbox(P | Q | F, pad=np.ceil((frontal_control_mm + 5) / sp).astype(int), shape=grid.shape)
        p, q, f, c = P[box], Q[box], F[box], cortex[box]
        d_post = ndimage.distance_transform_edt(~q, sampling=sp)
        # voxel-centre distance; at least one voxel layer on grids coarser than the bank depth
        depth_lim = max(bank_depth_mm, float(sp.max()))
        d_post_s = d_post
        if wall_wm is not None:
            # a parcellation with white matter: the cortex whose outer surface is the sulcus
            bank = parcellation_bank(p & c, q & c, c, wall_wm[box], sp)
        else:
            bank = p & c & (d_post_s <= depth_lim)
        if not bank.any():
            warnings.append(f"The {side} precentral and postcentral cortex do not meet: no {side} posterior bank.")
            continue
        d_bank = ndimage.distance_transform_edt(~bank, sampling=sp)
        d_pre = ndimage.distance_transform_edt(~p, sampling=sp)
        far = d_bank >= control_gap_mm
        ctrl = far & c & (q | (p & (d_post_s > depth_lim)) | (f & (d_pre <= frontal_control_mm)))
        o = out[box]
        o[bank] = _BANK[side]
        o[ctrl & (o == 0)] = _CTRL[side]
        # cortical depth from the sulcal (CSF / outer) surface, for matched-depth comparisons
        if wm_prior is not None:
            surface = ~c & (wm_prior.array[box] < 0.5)
        else:
            surface = ~c & ~ndimage.binary_erosion(~c, iterations=1)
        d_surf = ndimage.distance_transform_edt(~surface, sampling=sp) if surface.any() else np.full(p.shape, np.inf)
        dep = np.minimum(d_surf, np.where(p, d_post_s, np.inf))
        dv = depth[box]
        sel = o > 0
        dv[sel] = np.minimum(dep[sel], 99.0)
    labels = grid.with_array(out, "ribbon")
    regions = regions_for(labels, anatomy, hand_knob_ras=hk)
    info = {"voxels": {SEGMENT_NAMES[v]: int((out == v).sum()) for v in SEGMENT_NAMES},
            "bank_depth_mm": bank_depth_mm, "control_gap_mm": control_gap_mm}
    return Ribbon(labels, regions, grid.with_array(depth, "cortical depth (mm)"), warnings, info)


def parcellation_bank(pre: np.ndarray, post: np.ndarray, cortex: np.ndarray, wm: np.ndarray,
                      spacing_kji, *, reach_mm: float = CS_REACH_MM, facing_cos: float = CS_FACING_COS,
                      tie_voxels: float = PARCELLATION_TIE_VOXELS) -> np.ndarray:
    """Posterior bank from a parcellation: precentral cortex whose outer surface is the central sulcus.

    The central sulcus is taken as the sulcal space (neither cortex nor white matter) lying between
    the two gyri -- within ``reach_mm`` of both, with the nearest precentral and postcentral cortex
    on opposite sides (cosine of the angle between the two directions below ``facing_cos``) -- plus
    the postcentral cortex itself where the two banks touch with no CSF resolved between them. Every
    precentral cortex voxel belongs to the wall whose outer surface is nearest to it (a Voronoi
    partition of the cortex by its outer surfaces, to within ``tie_voxels`` voxels), so the bank
    runs from crown to fundus and is one cortical thickness deep, whatever the local thickness and
    sulcal width, without a depth parameter (``bank_depth_mm`` does not apply). Only 26-connected pieces of at least a tenth of the largest are kept (the wall is
    one sheet; specks come from label noise after resampling).

    Parameters
    ----------
    pre, post, cortex, wm : ndarray of bool
        Precentral cortex, postcentral cortex (one hemisphere), all cortex and white matter.
    spacing_kji : sequence of 3 floats
        Voxel size (mm) along the array axes.

    Returns
    -------
    ndarray of bool, the bank.
    """
    sp = np.asarray(spacing_kji, float)
    if not pre.any() or not post.any():
        return np.zeros(pre.shape, bool)
    d_pre, i_pre = ndimage.distance_transform_edt(~pre, sampling=sp, return_indices=True)
    d_post, i_post = ndimage.distance_transform_edt(~post, sampling=sp, return_indices=True)
    grid = np.indices(pre.shape, dtype=np.float32)
    v_pre = (i_pre - grid) * sp[:, None, None, None]
    v_post = (i_post - grid) * sp[:, None, None, None]
    del i_pre, i_post, grid
    cos = np.einsum("i...,i...->...", v_pre, v_post) / np.maximum(d_pre * d_post, 1e-6)
    del v_pre, v_post
    sulcal_space = ~cortex & ~wm
    sulcus = (sulcal_space & (d_pre <= reach_mm) & (d_post <= reach_mm) & (cos < facing_cos)) | post
    d_surface = ndimage.distance_transform_edt(~(sulcal_space | post), sampling=sp)
    d_sulcus = ndimage.distance_transform_edt(~sulcus, sampling=sp)
    bank = pre & (d_sulcus <= d_surface + tie_voxels * float(sp.max()))
    comp, n = ndimage.label(bank, structure=np.ones((3, 3, 3), bool))
    if n > 1:
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        bank = np.isin(comp, np.flatnonzero(sizes >= 0.1 * sizes.max()))
    return bank


def _ribbon_from_sulcus(anatomy, hk, bank_depth_mm=None) -> Ribbon:
    """Bank on the anterior wall of the central sulcus found on the image; control on the facing
    (postcentral) wall (:mod:`sulci`) and, on the image routes, the cortex around the bank
    (:data:`NEIGHBOUR_CONTROL_MM`)."""
    from . import sulci

    grid = anatomy.labels
    lab = grid.array
    brain = anatomy.brain_mask.array > 0
    if bank_depth_mm is None:
        bank_depth_mm = sulci.DEFAULT_BANK_DEPTH_MM
    bank_ok = ctrl_ok = measured = None
    drawn_only = np.zeros(lab.shape, bool)   # voxels the bank may be drawn on but not measured on
    if anatomy.source == "parcellation":
        bank_ok, ctrl_ok = np.isin(lab, (1, 2)), np.isin(lab, (3, 4))
    elif getattr(anatomy, "wm_distance", None) is not None:
        # both walls: the cortex within one cortical thickness of their white matter, so the
        # sulcal CSF of an open sulcus stays out (sulci.BANK_WM_MM); the partial-volume layer on
        # the white matter is drawn but not measured (sulci.BANK_WM_GAP_MM)
        d_wm = anatomy.wm_distance
        ctrl_ok = (d_wm > 0) & (d_wm <= sulci.BANK_WM_MM)
        # the drawn bank reaches half a voxel further (sulci.DRAWN_WM_VOXELS); measured as far as the control
        bank_ok = (d_wm > 0) & (d_wm <= sulci.BANK_WM_MM + sulci.DRAWN_WM_VOXELS * max(grid.spacing_kji))
        drawn_only = d_wm > sulci.BANK_WM_MM
        # not measured either: the layer on the white matter and the rim at the brain's edge
        # (sulci.SURFACE_RIM_MM)
        to_edge = ndimage.distance_transform_edt(brain, sampling=grid.spacing_kji)
        measured = (d_wm > sulci.BANK_WM_GAP_MM) & (to_edge > sulci.SURFACE_RIM_MM)
    # on the image route the bank is drawn out to the sheet's edges and measured on its core
    # (sulci.DRAWN_WALL_COSINE); a parcellation's labels bound the bank themselves
    wide = {} if anatomy.source == "parcellation" else dict(
        drawn_wall_cosine=sulci.DRAWN_WALL_COSINE, drawn_fundus_margin_mm=sulci.DRAWN_FUNDUS_MARGIN_MM)
    out, depth, core = sulci.bank_from_sulcus(
        anatomy.sulcus.midline, anatomy.anterior_score, brain, grid.spacing_kji,
        hull_depth=anatomy.hull_depth, bank_depth_mm=bank_depth_mm,
        control_gap_mm=sulci.CONTROL_GAP_MM,
        bank_allowed=bank_ok, control_allowed=ctrl_ok, return_core=True, **wide)
    if anatomy.source != "parcellation":
        # only the drawn bank's edge voxels leave the measured set: a bank painted elsewhere in
        # Segment Editor is still measured wherever the rules above allow
        edge = np.isin(out, (1, 2)) & (~core | drawn_only)
        measured = ~edge if measured is None else measured & ~edge
        if ctrl_ok is not None:
            _add_neighbour_control(out, depth, ctrl_ok & brain, grid.spacing_kji, d_wm=anatomy.wm_distance)
        if getattr(anatomy, "wm_distance", None) is not None:
            # the drawn bank also takes the cortex of the precentral wall's white-matter surface
            # (sulci.wall_by_white_matter), where no other label is: drawn, not measured, so the
            # measured bank and control, and the thresholds fitted on them, are unchanged
            wall, wall_depth = sulci.wall_by_white_matter(
                anatomy.sulcus.midline, anatomy.anterior_score, brain, (anatomy.wm_distance == 0) & brain,
                grid.spacing_kji, hull_depth=anatomy.hull_depth, bank_depth_mm=bank_depth_mm)
            added = (wall > 0) & (out == 0)
            out[added] = wall[added]
            depth[added] = wall_depth[added]
            measured &= ~added
    warnings = []
    for side, v in (("left", 1), ("right", 2)):
        if not (out == v).any():
            warnings.append(f"No {side} posterior bank could be placed: the {side} side has no ribbon.")
    labels = grid.with_array(out, "ribbon")
    regions = regions_for(labels, anatomy, hand_knob_ras=hk)
    info = {"voxels": {SEGMENT_NAMES[v]: int((out == v).sum()) for v in SEGMENT_NAMES},
            "bank_depth_mm": bank_depth_mm, "source": "sulcus",
            "confidence": dict(anatomy.sulcus.confidence)}
    if measured is not None:
        info["measured_voxels"] = {SEGMENT_NAMES[v]: int(((out == v) & measured).sum()) for v in SEGMENT_NAMES}
    return Ribbon(labels, regions, grid.with_array(depth, "depth from the sulcal midline (mm)"), warnings, info,
                  measured=measured)


def _add_neighbour_control(out: np.ndarray, depth: np.ndarray, allowed: np.ndarray, spacing_kji, *,
                           d_wm: np.ndarray, reach_mm: float = NEIGHBOUR_CONTROL_MM,
                           gap_mm: float = CONTROL_GAP_MM) -> None:
    """Widen each side's control (labels 3/4, in place) from the facing wall to the cortex around
    its bank: voxels ``allowed`` (one cortical thickness from the white matter found) between
    ``gap_mm`` and ``reach_mm`` of that side's bank and nearer to it than to the other bank.
    Their depth is counted from the outer cortex one thickness (sulci.BANK_WM_MM) from white
    matter, as the bank's is from the sulcus. See :data:`NEIGHBOUR_CONTROL_MM`."""
    from . import sulci

    sp = np.asarray(spacing_kji, float)
    banks = [out == v for v in (1, 2)]
    if not any(b.any() for b in banks):
        return
    box = _bbox(banks[0] | banks[1], pad=np.ceil((reach_mm + 1) / sp).astype(int), shape=out.shape)
    dist = [ndimage.distance_transform_edt(~b[box], sampling=sp) if b.any() else np.full(out[box].shape, np.inf)
            for b in banks]
    o, dv, ok = out[box], depth[box], allowed[box]
    for h in (1, 2):
        d_own, d_other = dist[h - 1], dist[2 - h]
        add = ok & (o == 0) & (d_own >= gap_mm) & (d_own <= reach_mm) & (d_own < d_other)
        o[add] = h + 2
        dv[add] = np.maximum(sulci.BANK_WM_MM - d_wm[box][add], 0.01)


def _bbox(mask, pad, shape):
    nz = np.argwhere(mask)
    lo = np.maximum(nz.min(0) - pad, 0)
    hi = np.minimum(nz.max(0) + pad + 1, np.array(shape))
    return tuple(slice(a, b) for a, b in zip(lo, hi))


# ----------------------------------------------------------------------------------------------
# regions along the gyrus
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _template_axis():
    """Axis of the template's precentral gyrus in (|x|, y, z) MNI RAS, and the split fractions.

    Returns (origin, unit, t0, t1, splits): the first principal axis of the precentral voxels of
    both hemispheres (mirrored onto |x|), oriented from the vertex to the Sylvian end, its 1st /
    99th percentile ends, and the fractions along it where the template's theta boundaries
    (:data:`REGION_THETA_DEG`) fall -- used when no template transform is available.
    """
    lab = templates.region_labels()
    kji = np.argwhere(np.isin(lab.array, (1, 2)))
    ras = lab.ras_of_ijk(kji[:, ::-1])
    axis = _axis_of(ras, x_mid=0.0)
    t = _position(ras, axis, 0.0)
    th = _theta(ras)
    splits = tuple(float(np.median(t[np.abs(th - b) < 2.0])) for b in REGION_THETA_DEG)
    return axis + (splits,)


def _theta(ras_mni):
    ras_mni = np.atleast_2d(ras_mni)
    return np.degrees(np.arctan2(np.abs(ras_mni[:, 0]), ras_mni[:, 2] - REGION_Z0_MM))


def _axis_of(ras: np.ndarray, x_mid: float):
    pts = ras.copy()
    pts[:, 0] = np.abs(pts[:, 0] - x_mid)
    c = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
    u = vt[0]
    # orient from medial-superior to lateral-inferior: lateral = larger |x| and lower z
    if u[0] - u[2] < 0:
        u = -u
    t = (pts - c) @ u
    return c, u, float(np.percentile(t, 1)), float(np.percentile(t, 99))


def _position(ras, axis, x_mid):
    c, u, t0, t1 = axis[:4]
    pts = np.asarray(ras, float).copy()
    pts[:, 0] = np.abs(pts[:, 0] - x_mid)
    return np.clip(((pts - c) @ u - t0) / max(t1 - t0, 1e-6), 0.0, 1.0)


def regions_for(labels: Volume, anatomy=None, *, hand_knob_ras: dict | None = None) -> Volume:
    """Medial (1) / intermediate (2) / lateral (3) split of every ribbon voxel (labels 1..4).

    With an atlas-route ``anatomy`` (it carries the subject-to-template transform) each voxel is
    mapped into MNI space and split by :data:`REGION_THETA_DEG`, so a slab or a partially drawn
    ribbon is split where the anatomy says (partial coverage does not shift the split).
    Otherwise (imported parcellation, edited ribbon, no anatomy) it is split from geometry alone:
    the position along the first principal axis of that hemisphere's bank in the subject's RAS
    world coordinates (|x| from the midline between the two banks), cut at the fractions where
    the template's theta boundaries fall on the template's own gyrus. Being computed in RAS, the
    answer is the same for LPS- or RAS-stored and oblique grids. A hand-knob point per side
    centres the intermediate region on it.
    """
    arr = np.asarray(labels.array)
    if arr.ndim != 3:
        raise InputError(f"ribbon labels '{labels.name}': expected a 3D label volume, got shape {arr.shape}.")
    vals = set(np.unique(arr).tolist()) - {0}
    if vals - {1, 2, 3, 4}:
        raise InputError(f"ribbon labels '{labels.name}' contain {sorted(vals - {1, 2, 3, 4})[:6]}: a ribbon uses "
                         "1 = left bank, 2 = right bank, 3 = left control, 4 = right control.")
    out = np.zeros(arr.shape, np.uint8)
    hk = hand_knob_ras if hand_knob_ras is not None else (getattr(anatomy, "hand_knob_ras", None) if anatomy else None)
    transform = getattr(anatomy, "transform", None) if anatomy is not None else None
    kji_all = np.argwhere(arr > 0)
    if not len(kji_all):
        return labels.with_array(out, "ribbon regions")
    ras_all = labels.ras_of_ijk(kji_all[:, ::-1])
    lab_all = arr[tuple(kji_all.T)]
    half_deg = 0.5 * (REGION_THETA_DEG[1] - REGION_THETA_DEG[0])
    if transform is not None:
        th = _theta(anatomy.template_ras_of_voxels(labels, kji_all))
        for side in ("left", "right"):
            sel = np.isin(lab_all, (_BANK[side], _CTRL[side]))
            if not sel.any():
                continue
            lo, hi = REGION_THETA_DEG
            if hk and hk.get(side) is not None:
                tk = float(_theta(anatomy.template_ras(np.atleast_2d(np.asarray(hk[side], float))))[0])
                lo, hi = tk - half_deg, tk + half_deg
            t = th[sel]
            out[tuple(kji_all[sel].T)] = np.where(t < lo, 1, np.where(t <= hi, 2, 3))
        return labels.with_array(out, "ribbon regions")
    splits = _template_axis()[4]
    bl, br = ras_all[lab_all == 1], ras_all[lab_all == 2]
    if len(bl) and len(br):
        x_mid = 0.5 * (bl[:, 0].mean() + br[:, 0].mean())
    else:
        x_mid = _midline_guess(labels, anatomy, ras_all)
    for side in ("left", "right"):
        sel = np.isin(lab_all, (_BANK[side], _CTRL[side]))
        b = ras_all[lab_all == _BANK[side]]
        if len(b) < 10:
            b = ras_all[sel]
        if len(b) < 10:
            continue
        axis = _axis_of(b, x_mid)
        t = _position(ras_all[sel], axis, x_mid)
        lo, hi = splits
        if hk and hk.get(side) is not None:
            tk = float(_position(np.atleast_2d(np.asarray(hk[side], float)), axis, x_mid)[0])
            half = 0.5 * (splits[1] - splits[0])
            lo, hi = tk - half, tk + half
        out[tuple(kji_all[sel].T)] = np.where(t < lo, 1, np.where(t <= hi, 2, 3))
    return labels.with_array(out, "ribbon regions")


def _midline_guess(labels, anatomy, ras_all):
    """x of the midline when only one hemisphere is labelled: the brain mask's centre if known,
    else x = 0 (the scanner isocentre, usually near the head's midline)."""
    if anatomy is not None and getattr(anatomy, "brain_mask", None) is not None:
        m = anatomy.brain_mask
        kji = np.argwhere(m.array > 0)[::50]
        if len(kji):
            return float(m.ras_of_ijk(kji[:, ::-1])[:, 0].mean())
    return 0.0
