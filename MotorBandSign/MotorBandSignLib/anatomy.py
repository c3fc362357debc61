"""Anatomy in subject space: brain mask, grey-matter probability, precentral/postcentral labels.

Three sources give the same kind of result (an :class:`Anatomy`):

(a) ``"atlas"`` (default): the bundled MNI ICBM152 2009a T1 is registered to the subject
    (the magnitude, or a T1 when given) with SimpleITK -- rigid and similarity/affine by Mattes
    mutual information (the template's T1 contrast need not resemble the subject's), then
    diffeomorphic demons on a pseudo-template in the subject's contrast, multi-resolution --
    and refined by a second, focused demons registration of the central region, driven by the
    subject's own sulcal pattern. The Harvard-Oxford region labels are warped (nearest
    neighbour) and the grey-matter prior (linear) onto the subject grid. See
    :mod:`MotorBandSignLib.registration` for the stages.
(b) ``"parcellation"``: an imported FreeSurfer aparc+aseg / SynthSeg ``--parc`` label volume
    (Desikan-Killiany numbers) or any label volume with a user label table, resampled (nearest)
    onto the SWI grid.
(c) ``"segmentation"``: a ribbon the user drew or corrected (labels 1..4 as
    :mod:`MotorBandSignLib.ribbon` writes them), passed through unchanged.

The ribbon itself (which voxels are the posterior bank) is built by :mod:`ribbon` from this
result by geometry, never by classifying grey matter on the image whose darkness is measured
(a band darker than white matter would be classified out; see shared/reference/BRIEF.md).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import templates
from .imaging import magnitude_array as _magnitude_array
from .imaging import resample_spacing as _resample_spacing
from .errors import InputError
from .volume import Volume

# -- brain mask defaults -------------------------------------------------------------------------
#: Working resolution of the brain mask (mm). Morphology at 2 mm is ample for a mask that only
#: has to contain the cortex; the result is brought back to the input grid.
MASK_SPACING_MM = 2.0
#: Gaussian smoothing (mm, sigma) before thresholding, to suppress noise (Rician floor) so Otsu's
#: threshold separates head from background rather than noise from noise.
MASK_SMOOTHING_MM = 1.5
#: Erosion radius (mm) that cuts the scalp from the brain across the skull (skull and meninges
#: are 5-10 mm thick in adults, so 4 mm breaks a thin scalp shell but not the brain), undone by a
#: conditional dilation afterwards (Smith 2002, Hum Brain Mapp 17:143 uses the same idea: a brain
#: is a large compact object whose surface lies a skull's thickness inside the scalp).
MASK_EROSION_MM = 4.0
#: A head must be clearly brighter than the background: the median of the Otsu foreground must
#: be at least this many times the background median. A magnitude with SNR >= 5 (the Rose
#: criterion for a visible object; Rose 1948, J Opt Soc Am 38:196) easily passes; pure noise,
#: whose two Otsu classes differ by well under 2x after smoothing, fails.
MASK_MIN_CONTRAST = 2.0
#: Smallest brain volume accepted (mL): a slab of the top 30 mm of an adult brain is ~250 mL
#: (brain ~1200 mL over ~110 mm height; Allen et al. 2002, AJNR 23:1604); 100 mL leaves margin.
MASK_MIN_VOLUME_ML = 100.0


@dataclass
class Anatomy:
    """Where the motor regions are, on the subject (magnitude) grid.

    Attributes
    ----------
    labels : Volume (uint8)
        :data:`templates.REGION_LABELS` values (1/2 L/R precentral, 3/4 L/R postcentral, 5/6
        frontal, ...). For ``source == "segmentation"`` it holds the ribbon labels (1..4).
    gm_prob : Volume (float32, 0..1)
        Grey-matter probability from the registered template prior (atlas route) or the
        parcellation's cortex labels; not from the darkness of the measured image.
    brain_mask : Volume (uint8)
    registration_quality : float or None
        Normalised mutual information of the warped template and the subject inside the brain
        mask, rescaled to 0 (independent) .. 1 (identical) -- see :func:`registration.nmi_quality`.
        None for parcellations and segmentations.
    warnings : list of str
    source : str
        ``"atlas"``, ``"parcellation"`` or ``"segmentation"``.
    transform : SimpleITK transform or None
        Maps subject LPS points to template (MNI 2009a) LPS points (atlas route).
    csf_prob, wm_prob : Volume (float32) or None
        CSF and white-matter priors warped from the template (atlas route).
    info : dict
        Timings, registration stages, metric values (JSON-serialisable).
    """

    labels: Volume
    gm_prob: Volume
    brain_mask: Volume
    registration_quality: float | None = None
    warnings: list = field(default_factory=list)
    source: str = "atlas"
    transform: object | None = None
    csf_prob: Volume | None = None
    wm_prob: Volume | None = None
    hand_knob_ras: dict | None = None
    info: dict = field(default_factory=dict)
    #: From :func:`locate_sulcus`: the central sulcus found on the image (sulci.CentralSulcus),
    #: the depth below the brain's hull (mm) and the anterior score (distance to the postcentral
    #: minus distance to the precentral label, mm) that tells the sulcus's two walls apart, and
    #: the distance (mm) to the white matter found on the image (None when none was found).
    sulcus: object | None = None
    hull_depth: np.ndarray | None = None
    anterior_score: np.ndarray | None = None
    wm_distance: np.ndarray | None = None

    def template_ras(self, ras_points) -> np.ndarray | None:
        """MNI 2009a RAS coordinates of subject RAS points (N, 3), or None without a transform."""
        if self.transform is None:
            return None
        from .registration import transform_points

        return transform_points(self.transform, ras_points)

    def template_ras_of_voxels(self, grid: Volume, kji: np.ndarray) -> np.ndarray | None:
        """MNI 2009a RAS coordinates of voxels ``kji`` (N, 3) of ``grid`` (vectorised: one
        displacement field over their bounding box), or None without a transform."""
        if self.transform is None:
            return None
        from .registration import transform_voxels

        return transform_voxels(self.transform, grid, kji)


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# brain mask
# ----------------------------------------------------------------------------------------------
def _ball(radius_vox: np.ndarray) -> np.ndarray:
    r = np.maximum(np.asarray(radius_vox, float), 0.5)
    n = np.ceil(r).astype(int)
    g = np.ogrid[tuple(slice(-k, k + 1) for k in n)]
    return sum((gi / ri) ** 2 for gi, ri in zip(g, r)) <= 1.0


def brain_mask(magnitude: Volume, *, spacing_mm: float = MASK_SPACING_MM,
               smoothing_mm: float = MASK_SMOOTHING_MM, erosion_mm: float = MASK_EROSION_MM,
               min_contrast: float = MASK_MIN_CONTRAST, min_volume_ml: float = MASK_MIN_VOLUME_ML) -> Volume:
    """Brain mask from a magnitude image, robust to a bias field and noise.

    Steps: resample to ``spacing_mm`` (Gaussian pre-smoothing), log intensity (a multiplicative
    bias field becomes an additive offset that Otsu's between-class criterion tolerates), Otsu
    threshold (Otsu 1979, IEEE SMC 9:62), erosion by ``erosion_mm`` to detach scalp, largest
    connected component, conditional dilation back inside the threshold, hole filling, closing.

    Raises
    ------
    InputError
        For a constant image, a binary mask or label map, a phase-like image, or an image with no
        head in it (no clear foreground, or a foreground smaller than ``min_volume_ml``).
    """
    import SimpleITK as sitk
    from skimage.filters import threshold_otsu

    a = _magnitude_array(magnitude)
    img = magnitude.to_sitk(a)
    sp = np.array(img.GetSpacing())
    small = _resample_spacing(img, np.maximum(sp, spacing_mm), smoothing_mm=smoothing_mm)
    s = sitk.GetArrayFromImage(small).astype(np.float64)
    s_sp = np.array(small.GetSpacing())[::-1]
    pos = s[s > 0]
    if pos.size < 100:
        raise InputError(f"magnitude '{magnitude.name}': almost no positive signal; no head found. "
                         "Check that this is a magnitude image.")
    eps = max(np.percentile(pos, 99) * 1e-3, 1e-12)
    logs = np.log(np.maximum(s, eps))
    thr = threshold_otsu(logs)
    fg = logs > thr
    if fg.sum() == 0 or (~fg).sum() == 0:
        raise InputError(f"magnitude '{magnitude.name}': no separation between head and background.")
    med_fg = float(np.median(s[fg]))
    med_bg = float(np.median(s[~fg]))
    contrast = med_fg / max(med_bg, eps)
    if contrast < min_contrast:
        raise InputError(
            f"magnitude '{magnitude.name}': no brain found -- the brightest part is only {contrast:.2f}x the "
            f"background (need >= {min_contrast:g}x); the image looks like noise. Check the series "
            "(a magnitude image of the head is needed), or give a brain mask.")
    core = ndimage.binary_erosion(fg, _ball(erosion_mm / s_sp))
    lab, n = ndimage.label(core)
    if n == 0:
        raise InputError(
            f"magnitude '{magnitude.name}': no brain found -- nothing thicker than {2 * erosion_mm:g} mm stands "
            "out from the background (noise or a thin structure only). Give a magnitude image of the head, "
            "or a brain mask.")
    sizes = np.bincount(lab.ravel())[1:]
    core = lab == (1 + int(np.argmax(sizes)))
    # conditional dilation (bounded geodesic reconstruction) back to the thresholded head
    grow = ndimage.binary_dilation(core, _ball((erosion_mm + s_sp.max()) / s_sp)) & fg
    grow = ndimage.binary_closing(grow, _ball(2 * s_sp.max() / s_sp), iterations=1)
    grow = _fill_holes(grow)
    vol_ml = grow.sum() * float(np.prod(s_sp)) / 1000.0
    if vol_ml < min_volume_ml:
        raise InputError(
            f"magnitude '{magnitude.name}': no brain found -- the largest object is {vol_ml:.0f} mL "
            f"(need >= {min_volume_ml:g} mL). Check the series or give a brain mask.")
    m_small = sitk.GetImageFromArray(grow.astype(np.float32))
    m_small.CopyInformation(small)
    back = sitk.Resample(m_small, img, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask = (sitk.GetArrayFromImage(back) >= 0.5).astype(np.uint8)
    out = magnitude.with_array(mask, f"{magnitude.name} brain mask")
    out.meta.update(contrast=contrast, volume_ml=float(mask.sum() * np.prod(magnitude.spacing) / 1000.0))
    return out


_compute_brain_mask = brain_mask  # localize() takes a parameter of the same name


def _fill_holes(m: np.ndarray) -> np.ndarray:
    """3D hole fill, then 2D per axial-ish slice of every axis (a slab's open ends defeat 3D fill)."""
    m = ndimage.binary_fill_holes(m)
    for ax in range(3):
        m = m | np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(m, ax, 0)], axis=ax)
    return m


# ----------------------------------------------------------------------------------------------
# localisation
# ----------------------------------------------------------------------------------------------
def localize(magnitude: Volume, brain_mask: Volume | None = None, *, t1: Volume | None = None,
             parcellation: Volume | None = None, label_table: str | dict | None = None,
             hand_knob_ras: dict | None = None, progress=None, sulcal: bool = True,
             **registration_kw) -> Anatomy:
    """Locate precentral, postcentral and frontal cortex per hemisphere on the magnitude grid.

    Parameters
    ----------
    magnitude : Volume
        The subject image that defines the output grid (the SWI magnitude).
    brain_mask : Volume or None
        On the magnitude grid; computed with :func:`brain_mask` when None.
    t1 : Volume or None
        A T1-weighted image of the same subject, in register with the magnitude in world
        coordinates; when given, the template is registered to it instead (better contrast).
    parcellation : Volume or None
        An imported label volume (FreeSurfer aparc+aseg, SynthSeg --parc, a user labelling, or a
        ribbon segmentation with labels 1..4); disables the atlas registration.
    label_table : "freesurfer" | "synthseg" | "ribbon" | dict | path | None
        How to read ``parcellation``: a preset, a dict ``name -> value``, or a "value,name" CSV /
        FreeSurfer LUT file. Default: "freesurfer" numbers.
    hand_knob_ras : dict or None
        ``{"left": (x, y, z), "right": (x, y, z)}`` RAS points on the hand knob, used to check
        the localisation (and to centre the intermediate region in :mod:`ribbon`).
    progress : callable(fraction: float, message: str) or None
    sulcal : bool
        Atlas route: place the central sulcus on the subject's own sulci (:func:`locate_sulcus`;
        default), falling back to the atlas per hemisphere where it is not found with
        confidence. False keeps the atlas's labels as they are (the first wave's route). An
        imported parcellation already says where the sulcus is and is used as it is.
    **registration_kw
        Passed to :func:`registration.register_template` (e.g. ``local_refine=False``).
    """
    report = progress or (lambda f, m: None)
    a = _magnitude_array(magnitude)
    if brain_mask is None:
        report(0.0, "brain mask")
        brain_mask = _compute_brain_mask(magnitude)
    else:
        magnitude.require_same_grid(brain_mask)
        if not np.any(brain_mask.array):
            raise InputError(f"brain mask '{brain_mask.name}' is empty. Give a mask of the brain, or none "
                             "to compute one from the magnitude.")
    if parcellation is not None:
        anat = import_parcellation(parcellation, magnitude, brain_mask, label_table=label_table)
    else:
        from .registration import register_template

        reg = register_template(magnitude if t1 is None else t1, magnitude, brain_mask,
                                subject_array=a if t1 is None else None, progress=report, **registration_kw)
        anat = Anatomy(labels=reg.labels, gm_prob=reg.gm_prob, brain_mask=brain_mask,
                       registration_quality=reg.quality, warnings=list(reg.warnings), source="atlas",
                       transform=reg.transform, csf_prob=reg.csf_prob, wm_prob=reg.wm_prob, info=dict(reg.info))
    if sulcal and parcellation is None:
        report(0.9, "finding the central sulcus on the image")
        loc = a if t1 is None else _on_grid(t1, magnitude)
        locate_sulcus(anat, loc)
    anat.hand_knob_ras = hand_knob_ras
    _check_sides(anat)
    if hand_knob_ras:
        _check_hand_knob(anat, hand_knob_ras)
    report(1.0, "anatomy done")
    return anat


def _on_grid(image: Volume, grid: Volume) -> np.ndarray:
    """``image`` resampled (linear, world coordinates) onto ``grid``'s voxels."""
    import SimpleITK as sitk

    if not image.grid_mismatch(grid):
        return _magnitude_array(image, "T1")
    src = image.to_sitk(_magnitude_array(image, "T1"))
    ref = grid.to_sitk(np.zeros(grid.shape, np.float32))
    return sitk.GetArrayFromImage(sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                sitk.sitkFloat32))


def locate_sulcus(anat: Anatomy, image: np.ndarray) -> Anatomy:
    """Find each hemisphere's central sulcus on the subject (see :mod:`sulci`) and store it on
    ``anat`` (``sulcus``, ``hull_depth``, ``anterior_score``, ``wm_distance``; confidence in ``info``).

    Atlas route: white matter of ``image`` (magnitude or T1 on the grid) -> sulcal midlines ->
    the sheet matching the atlas's central sulcus. Parcellation route: the interface of the
    precentral and postcentral labels. A hemisphere where nothing is found falls back to the
    atlas's interface, with a warning.
    """
    from . import sulci

    grid = anat.labels
    sp = grid.spacing_kji
    brain = anat.brain_mask.array > 0
    lab = anat.labels.array
    hull = sulci.hull_depth(brain, sp)
    pre, post = np.isin(lab, (1, 2)), np.isin(lab, (3, 4))
    anterior = (ndimage.distance_transform_edt(~post, sampling=sp)
                - ndimage.distance_transform_edt(~pre, sampling=sp)).astype(np.float32)
    info = {}
    if anat.source == "parcellation":
        # the labels say where the sulcus is: their interface, whole, per hemisphere
        mid = np.zeros(lab.shape, np.uint8)
        conf = {}
        for h, side in enumerate(("left", "right")):
            one = np.where(np.isin(lab, ((1, 3), (2, 4))[h]), lab, 0)
            m = sulci.interface_midline(one, sp)
            mid[m] = h + 1
            conf[side] = 1.0 if m.any() else 0.0
        cs = sulci.CentralSulcus(mid, conf, {"source": "parcellation interface"}, [])
    else:
        try:
            wm, info = sulci.white_matter(image, brain, sp, hull_depth=hull)
        except InputError as exc:   # no usable contrast: fall back to the atlas's sulcus
            wm, info = None, {"error": str(exc)}
            anat.warnings.append(f"The central sulcus could not be found on the image ({exc}); the atlas's "
                                 "sulcus is used instead.")
        if wm is not None and info.get("cortex_level") is None:
            # no cortex peak even after denoising: white matter ended at its own tolerance and
            # may hold much of the cortex (at a 10 deg flip, TR 28 ms, grey and white matter are
            # alike on the magnitude: 66 % of pycortex S1's brain became white matter and its
            # 0.08 ppm bands were missed without a word)
            anat.warnings.append(
                "The cortex's level did not show in the localisation image's histogram (grey/white contrast too "
                f"low or hidden by noise; {100 * info.get('wm_fraction_of_brain', 0):.0f} % of the brain was taken "
                "as white matter): the central sulcus found may be wrong. Check the ribbon, or give a T1 (--t1) or a "
                "parcellation (--parcellation).")
        if wm is not None:
            mid, d_wm = sulci.sulcal_midlines(wm, brain, sp, hull_depth=hull)
            anat.wm_distance = d_wm
            cs = sulci.find_central_sulcus(mid, lab, brain, sp, ijk_to_ras=grid.ijk_to_ras)
        else:
            cs = sulci.CentralSulcus(np.zeros(lab.shape, np.uint8), {"left": 0.0, "right": 0.0}, {}, [])
    fallback = sulci.interface_midline(lab, sp, reach_mm=1.5)
    for h, side in enumerate(("left", "right")):
        if not cs.confidence.get(side):
            side_mask = np.isin(lab, ((1, 3), (2, 4))[h])
            near = ndimage.distance_transform_edt(~side_mask, sampling=sp) <= 2.0
            cs.midline[fallback & near & (cs.midline == 0)] = h + 1
    anat.sulcus = cs
    anat.hull_depth = hull
    anat.anterior_score = anterior
    anat.warnings.extend(cs.warnings)
    anat.info["sulcal"] = dict(info, confidence=cs.confidence, **cs.info)
    return anat


def _check_sides(anat: Anatomy) -> None:
    """Warn if the 'left' labels do not lie at smaller RAS x than the 'right' labels."""
    lab = anat.labels.array
    # (1, 2) and (3, 4) are left/right pairs both in REGION_LABELS and in ribbon labels
    for l, r in ((1, 2), (3, 4)):
        zl, zr = np.argwhere(lab == l), np.argwhere(lab == r)
        if len(zl) and len(zr):
            xl = anat.labels.ras_of_ijk(zl[:, ::-1].mean(0))[0]
            xr = anat.labels.ras_of_ijk(zr[:, ::-1].mean(0))[0]
            if xl >= xr:
                anat.warnings.append(
                    f"The left labels (value {l}) lie to the right of the right labels (value {r}) in RAS "
                    f"(x {xl:.1f} vs {xr:.1f} mm): check the image orientation (qform/sform) and the label table.")
                return


def _check_hand_knob(anat: Anatomy, hand_knob_ras: dict) -> None:
    pre = {"left": templates.REGION_LABELS["left_precentral"], "right": templates.REGION_LABELS["right_precentral"]}
    if anat.source == "segmentation":
        pre = {"left": 1, "right": 2}
    for side, p in hand_knob_ras.items():
        if side not in pre:
            raise InputError(f"hand_knob_ras: unknown side '{side}'; use 'left' and/or 'right'.")
        pts = np.argwhere(anat.labels.array == pre[side])
        if not len(pts):
            anat.warnings.append(f"No {side} precentral cortex found to check the {side} hand-knob point against.")
            continue
        ras = anat.labels.ras_of_ijk(pts[:, ::-1])
        d = float(np.min(np.linalg.norm(ras - np.asarray(p, float), axis=1)))
        if d > 10.0:  # ~ one gyral width (precentral gyrus ~10 mm wide; Yousry et al. 1997, Brain 120:141)
            anat.warnings.append(
                f"The {side} hand-knob point is {d:.0f} mm from the {side} precentral cortex found: the "
                "localisation may be wrong (or the point misplaced). Check the ribbon and edit it if needed.")


# ----------------------------------------------------------------------------------------------
# imported parcellations
# ----------------------------------------------------------------------------------------------
#: Desikan-Killiany numbers used by FreeSurfer aparc+aseg and SynthSeg --parc (FreeSurferColorLUT;
#: Desikan et al. 2006, NeuroImage 31:968; Billot et al. 2023, Med Image Anal 86:102789).
FREESURFER_PRESET = {
    "left_precentral": [1024], "right_precentral": [2024],
    "left_postcentral": [1022], "right_postcentral": [2022],
    # superiorfrontal, caudalmiddlefrontal, rostralmiddlefrontal, parsopercularis,
    # parstriangularis, paracentral (medial frontal, as Harvard-Oxford's SMA in the atlas route)
    "left_frontal": [1028, 1003, 1027, 1018, 1020, 1017],
    "right_frontal": [2028, 2003, 2027, 2018, 2020, 2017],
    "left_parietal": [1029, 1031], "right_parietal": [2029, 2031],      # superiorparietal, supramarginal
    "left_deep_grey": [11, 12, 13], "right_deep_grey": [50, 51, 52],    # caudate, putamen, pallidum
    "left_thalamus": [10], "right_thalamus": [49],
}
#: Cortical grey matter in aparc+aseg/SynthSeg: every ctx-lh-*/ctx-rh-* label, and the plain
#: cerebral cortex labels 3/42 (SynthSeg without --parc).
_FS_CORTEX = list(range(1000, 1036)) + list(range(2000, 2036)) + [3, 42]
#: Cerebral white matter in aseg/aparc+aseg/wmparc and SynthSeg (FreeSurferColorLUT): 2/41 cerebral
#: white matter, 77-79 WM hypointensities, 3000-3035/4000-4035 wmparc's gyral white matter, 5001/5002
#: unsegmented white matter. The parcellation route places the bank with it
#: (:func:`ribbon.parcellation_bank`).
_FS_WHITE = [2, 41, 77, 78, 79, 5001, 5002] + list(range(3000, 3036)) + list(range(4000, 4036))
PRESETS = {"freesurfer": FREESURFER_PRESET, "synthseg": FREESURFER_PRESET}

_FRONTAL_WORDS = ("superiorfrontal", "caudalmiddlefrontal", "rostralmiddlefrontal", "parsopercularis",
                  "parstriangularis", "paracentral", "superior_frontal", "middle_frontal", "frontal",
                  "inferior_frontal", "opercularis", "triangularis", "sma", "supplementary")
_PARIETAL_WORDS = ("superiorparietal", "supramarginal", "superior_parietal", "parietal")


def _side_of(name: str) -> str | None:
    n = name.lower()
    toks = re.split(r"[^a-z0-9]+", n)
    if any(t in ("lh", "left", "l") for t in toks) or n.startswith("left") or "-lh-" in n or n.startswith("lh"):
        return "left"
    if any(t in ("rh", "right", "r") for t in toks) or n.startswith("right") or "-rh-" in n or n.startswith("rh"):
        return "right"
    return None


def _group_of(name: str) -> str | None:
    n = re.sub(r"[^a-z]", "", name.lower())
    if "precentral" in n:
        return "precentral"
    if "postcentral" in n:
        return "postcentral"
    if "cortex" in n or "wm" in n or "white" in n or "unknown" in n or "ventric" in n:
        return None
    if "thalam" in n:
        return "thalamus"
    if any(w in n for w in ("caudate", "putamen", "pallidum")):
        return "deep_grey"
    if any(re.sub(r"[^a-z]", "", w) in n for w in _FRONTAL_WORDS):
        return "frontal"
    if any(re.sub(r"[^a-z]", "", w) in n for w in _PARIETAL_WORDS):
        return "parietal"
    return None


def read_label_table(table) -> dict:
    """Label table -> ``{name: value}``: a dict, a preset name, or a "value,name" CSV / FreeSurfer LUT."""
    if isinstance(table, dict):
        return {str(k): int(v) for k, v in table.items()}
    p = Path(str(table))
    if not p.exists():
        raise InputError(f"label table '{table}': no such preset or file. Use 'freesurfer', 'synthseg', "
                         "'ribbon', a dict name -> value, or a CSV file with 'value,name' rows.")
    out = {}
    text = p.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in text:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = next(csv.reader([line])) if "," in line else line.split()
        parts = [x.strip() for x in parts if x.strip()]
        if len(parts) < 2:
            continue
        a, b = parts[0], parts[1]
        if re.fullmatch(r"-?\d+", a):
            out[b] = int(a)
        elif re.fullmatch(r"-?\d+", b):
            out[a] = int(b)
    if not out:
        raise InputError(f"label table '{table}': no 'value,name' (or FreeSurfer LUT 'value name r g b a') "
                         "rows found.")
    return out


def _is_white(name: str) -> bool:
    """Whether a label name denotes cerebral white matter ("Left-Cerebral-White-Matter", "wm-lh-...")."""
    n = name.lower()
    if "cerebell" in n:
        return False
    return "white" in n or bool(re.match(r"^(wm|left_wm|right_wm)[-_]", n)) or "unsegmentedwhite" in n


def _table_to_groups(table: dict) -> tuple[dict, list]:
    """{name: value} -> ({region key: [values]} incl. "white_matter", cortex values)."""
    groups: dict = {}
    cortex = []
    for name, value in table.items():
        key = name.lower()
        if _is_white(name):
            groups.setdefault("white_matter", []).append(value)
            continue
        if key in templates.REGION_LABELS:
            groups.setdefault(key, []).append(value)
            if not any(w in key for w in ("deep", "thalamus")):
                cortex.append(value)
            continue
        side, grp = _side_of(name), _group_of(name)
        if "ctx" in name.lower() or (grp in ("precentral", "postcentral", "frontal", "parietal")):
            cortex.append(value)
        if side and grp:
            groups.setdefault(f"{side}_{grp}", []).append(value)
    return groups, cortex


def import_parcellation(parcellation: Volume, magnitude: Volume, brain_mask: Volume, *,
                        label_table=None) -> Anatomy:
    """Resample an imported label volume onto the magnitude grid and map it to REGION_LABELS."""
    import SimpleITK as sitk

    if not isinstance(parcellation, Volume):
        raise InputError("parcellation: expected a Volume (load it with io.read_volume).")
    arr = np.asarray(parcellation.array)
    if arr.ndim != 3:
        raise InputError(f"parcellation '{parcellation.name}': expected a 3D label volume, got shape {arr.shape}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.allclose(arr[::4, ::4, ::4], np.round(arr[::4, ::4, ::4])):
            raise InputError(f"parcellation '{parcellation.name}' has non-integer values: it looks like an "
                             "intensity image, not a label map. Give aparc+aseg / SynthSeg output.")
    arr = np.round(arr).astype(np.int32)
    table = "freesurfer" if label_table is None else label_table
    segmentation = isinstance(table, str) and table.lower() in ("ribbon", "segmentation")
    # resample (nearest) onto the magnitude grid, in world coordinates
    src = parcellation.to_sitk(arr)
    ref = magnitude.to_sitk(np.zeros(magnitude.shape, np.uint8))
    res = sitk.GetArrayFromImage(sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                               sitk.sitkInt32))
    if segmentation:
        bad = set(np.unique(res).tolist()) - {0, 1, 2, 3, 4}
        if bad:
            raise InputError(f"segmentation '{parcellation.name}' has labels {sorted(bad)[:8]}; a ribbon "
                             "segmentation uses 1 = left bank, 2 = right bank, 3 = left control, 4 = right control.")
        if not np.isin(res, (1, 2)).any():
            raise InputError(f"segmentation '{parcellation.name}' has no posterior-bank voxels (labels 1/2) on "
                             "the magnitude grid: check it overlaps the image.")
        lab = magnitude.with_array(res.astype(np.uint8), "ribbon segmentation")
        gm = magnitude.with_array((res > 0).astype(np.float32), "cortex (segmentation)")
        return Anatomy(lab, gm, brain_mask, None, [], "segmentation")
    if isinstance(table, str) and table.lower() in PRESETS:
        groups = PRESETS[table.lower()]
        cortex, white = _FS_CORTEX, _FS_WHITE
        table_name = table.lower()
    else:
        groups, cortex = _table_to_groups(read_label_table(table))
        white = groups.pop("white_matter", [])
        table_name = "user table"
    out = np.zeros(magnitude.shape, np.uint8)
    for key, values in groups.items():
        out[np.isin(res, values)] = templates.REGION_LABELS[key]
    missing = [k for k in ("left_precentral", "right_precentral", "left_postcentral", "right_postcentral")
               if not (out == templates.REGION_LABELS[k]).any()]
    if len(missing) == 4:
        present = np.unique(res)
        raise InputError(
            f"parcellation '{parcellation.name}' has no precentral/postcentral labels on the magnitude grid "
            f"({table_name}; values present include {present[:12].tolist()}). Use a cortical parcellation "
            "(FreeSurfer aparc+aseg, or SynthSeg with --parc: precentral 1024/2024, postcentral 1022/2022), "
            "give a label table naming them, and check the volume overlaps the magnitude.")
    warnings = []
    if missing:
        warnings.append(f"The parcellation lacks {', '.join(missing)} on the magnitude grid; that side "
                        "cannot be measured.")
    cortex_mask = np.isin(res, cortex) | np.isin(out, [1, 2, 3, 4, 5, 6, 7, 8])
    gm = ndimage.gaussian_filter(cortex_mask.astype(np.float32), 0.5 / magnitude.spacing_kji.clip(0.1))
    gm = np.where(cortex_mask, np.maximum(gm, 0.5), gm).astype(np.float32)
    wm = np.isin(res, white) & ~cortex_mask
    anat = Anatomy(magnitude.with_array(out, "regions (parcellation)"),
                   magnitude.with_array(gm.clip(0, 1), "GM probability (parcellation)"),
                   brain_mask, None, warnings, "parcellation",
                   wm_prob=magnitude.with_array(wm.astype(np.float32), "white matter (parcellation)") if wm.any() else None)
    anat.info["label_table"] = table_name
    return anat
