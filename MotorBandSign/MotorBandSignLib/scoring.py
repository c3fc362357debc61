"""Per-hemisphere and per-region scores, the pattern call and a provisional regional grade.

All thresholds here are PROVISIONAL research settings, documented with their reasoning; they
are not validated diagnostic cut-offs. The tool is a research aid, not a diagnosis.
"""

from __future__ import annotations

import numpy as np

from .heatmap import BANK, CONTROL, MIN_CONTROL_VOXELS, robust_reference

#: A ribbon voxel counts as hypointense (heatmap display and ``hypointense_fraction``) when its
#: darkness z-score exceeds this value (z = 2: about 2.3 % of normally distributed control
#: voxels exceed it one-sided). The band *call* does not use z (see below).
DEFAULT_Z_THRESHOLD = 2.0
#: The band call is on the ratio of medians, bank / matched control cortex, on bias-corrected
#: SWI (``band_contrast``): a band is an iron-driven shift of the whole bank, 15-30 % darker than
#: its control (R2*: Langkammer et al. 2010, Radiology 257:455; susceptibility: Langkammer et
#: al. 2012, NeuroImage 62:1593; about 25 % darker magnitude at +0.05 ppm and TE 20 ms, BRIEF.md),
#: while a voxel-wise z divides that shift by the spread of real cortex (partial volume with
#: sulcal CSF, veins, folding), which is about half its median, and misses it.
#: The thresholds below are the lower limits of the normal range of the ratio, learnt from
#: no-band cases (normal, ageing-like diffuse, veins) on individual brains by the procedure in
#: Testing/benchmarks/bench_individual.py: mean - 3 SD of the no-band hemispheres (regions),
#: pooled over the development brains (clabtoolkit's subject and pycortex S1, seeds 1-2 of the
#: normal, ageing-like and vein scenarios at 1 mm: 24 hemispheres, ratios 0.888-1.038, mean
#: 0.971, SD 0.042; 71 regions, mean 0.974, SD 0.045); the leave-one-brain-out numbers are in the
#: README. Refitted for the control of this version (the cortex around the bank,
#: ribbon.NEIGHBOUR_CONTROL_MM, instead of the facing wall alone: no-band SD 0.071 -> 0.042) and
#: the rim at the brain's edge left unmeasured (sulci.SURFACE_RIM_MM).
#: Research settings, not validated diagnostic cut-offs.
DEFAULT_BAND_RATIO = 0.845
#: Upper limit of the same normal range (mean + 3 SD of the same 24 no-band hemispheres: 1.096;
#: their highest ratio 1.038). Iron darkens the bank and nothing in the pathology brightens it,
#: so a bank this much brighter than the cortex around it means the ribbon has missed the cortex
#: of the bank (lies in sulcal CSF or on another structure): a warning, and that side's "absent"
#: is not a finding. Seen on the development set: a hemisphere whose sulcal sheet was not found
#: (S1 at SNR 20, ribbon Dice 0.38) read 1.47 before the rim rule of sulci.SURFACE_RIM_MM (0.95,
#: not flagged, with it).
BANK_BRIGHT_RATIO = 1.096
#: The same for one somatotopic region (fewer voxels, so a wider normal range).
DEFAULT_REGION_BAND_RATIO = 0.838
#: Regional grade 2 ("marked") at or below this ratio; grade 1 ("mild") at or below the region
#: threshold. In the spirit of the 0-2 per region x hemisphere scales (MCLI; Zejlon et al.
#: 2024, Ann Clin Transl Neurol 11:1280, medial / intermediate / lateral regions): a bank a
#: quarter darker than its control is what a 0.08 ppm band gives at TE 20 ms (BRIEF.md).
GRADE2_RATIO = 0.75
#: ...and at least this far below the normal limit it is graded against: about one SD of the
#: regional normal range (0.096 in the fit above), so that grade 2 means darker than normal by a
#: further SD and grade 1 stays possible when the normal limit lies below GRADE2_RATIO.
GRADE2_MARGIN = 0.10
#: Fewest bank voxels (per region) to measure it; fewer -> "not measured" (e.g. out of
#: coverage). 20 voxels keep the median's standard error under a quarter of the voxel SD
#: (SE of a median ~ 1.25 SD / sqrt(n), Kenney & Keeping 1962) - a statistical floor, not a
#: clinical one. The control side uses heatmap.MIN_CONTROL_VOXELS, the floor of the z-map.
MIN_REGION_VOXELS = 20
#: Cortex this much darker than juxtacortical white matter on (bias-corrected) SWI means
#: diffusely dark cortex (ageing-like: cortical susceptibility rises by ~0.03 ppm from young to
#: old adulthood, Li W et al. 2014, Hum Brain Mapp 35:2698). The cortex sampled is the atlas
#: route's control cortex (postcentral, anterior lip of the precentral gyrus, adjacent frontal
#: cortex, by the registered grey-matter prior), not the facing wall of the sulcus, whose sulcal
#: CSF partial volume varies from brain to brain. The ratio depends on the protocol (a standard
#: 3 T SWI, TR 28 ms / flip 15 deg / TE 20 ms, predicts GM/WM ~0.89 from literature tissue
#: values: Neeb et al. 2006; Stanisz et al. 2005; Peters et al. 2007). Fixed like the band
#: thresholds: the lower limit (mean - 3 SD) of the ratio in the no-band, not-ageing cases of the
#: development brains, two seeds each (16 hemispheres, 0.873-0.917; ageing-like cases
#: 0.79-0.82; Testing/benchmarks/bench_individual.py). Protocol dependent; ``diffuse_ratio``
#: overrides it.
DIFFUSE_CORTEX_TO_WM = 0.842
#: The same limit for the --parcellation route, whose control cortex and white matter come from
#: the label map (full-thickness labelled cortex; labelled white matter): same procedure, on that
#: route's no-band, not-ageing hemispheres of the development brains at 1 mm, two seeds each
#: (clab 0.894-0.907, S1 0.854-0.871: mean 0.883, SD 0.021; ageing-like cases 0.715-0.782).
#: Fitted on both brains together: fitted on clab alone the limit (0.885) would flag every normal S1
#: hemisphere, so the between-brain spread is what sets it (Testing/benchmarks/bench_individual.py
#: --parcellation).
DIFFUSE_CORTEX_TO_WM_PARCELLATION = 0.819
#: The band thresholds of the --parcellation route, by the same procedure on that route's own
#: no-band hemispheres (its bank is the labelled cortex facing the central sulcus, whose normal
#: range is narrower than the sulcal route's): mean - 3 SD of 24 no-band hemispheres (clab and
#: S1, seeds 1-2 of the normal, ageing-like and vein scenarios at 1 mm: 0.949-1.031, mean 0.992,
#: SD 0.022) and of their 72 regions (mean 0.996, SD 0.031). Leave one brain out (README):
#: specificity 0.97 (36 hemispheres), sensitivity 1.00 at 0.03, 0.05 and 0.08 ppm, focal bands
#: found in their region (Testing/benchmarks/bench_individual.py --parcellation).
BAND_RATIO_PARCELLATION = 0.926
REGION_BAND_RATIO_PARCELLATION = 0.902
#: What the pipeline uses on the --parcellation route where the user gave no threshold.
PARCELLATION_THRESHOLDS = {"band_ratio": BAND_RATIO_PARCELLATION, "region_band_ratio": REGION_BAND_RATIO_PARCELLATION,
                           "diffuse_ratio": DIFFUSE_CORTEX_TO_WM_PARCELLATION}

REGION_NAMES = {1: "medial", 2: "intermediate", 3: "lateral"}
#: The pattern when neither bank could be measured (never "absent", which is a finding).
NOT_MEASURED = "not measured"
#: Profile bin along the gyrus (mm of height): about a third of the hand knob's extent
#: (~15-20 mm, Yousry et al. 1997, Brain 120:141), so a focal band shows in several bins.
PROFILE_BIN_MM = 5.0


def _stats(img, z_swi, z_mag, bank, ctrl, z_threshold, voxel_ml):
    n = int(bank.sum())
    out = {"n_voxels": n, "volume_ml": round(n * voxel_ml, 3)}
    if n < MIN_REGION_VOXELS or ctrl.sum() < MIN_CONTROL_VOXELS:
        out.update(measured=False, band_contrast=None, hypointense_fraction=None, z_median=None,
                   z_median_magnitude=None)
        return out
    bank_med = float(np.median(img[bank]))
    ctrl_med, _ = robust_reference(img[ctrl])
    out.update(
        measured=True,
        band_contrast=round(bank_med / ctrl_med, 4) if ctrl_med > 0 else None,
        hypointense_fraction=round(float(np.mean(z_swi[bank] > z_threshold)), 4),
        z_median=round(float(np.median(z_swi[bank])), 3),
        z_median_magnitude=round(float(np.median(z_mag[bank])), 3) if z_mag is not None else None,
    )
    return out


def grade2_ratio(band_ratio: float) -> float:
    """Ratio at or below which a bank graded against the limit ``band_ratio`` is grade 2."""
    return round(min(GRADE2_RATIO, band_ratio - GRADE2_MARGIN), 4)


def grade(contrast, region_band_ratio: float = DEFAULT_REGION_BAND_RATIO, marked: float | None = None) -> int | None:
    """0-2 grade from a bank / control ratio (None if not measured): 1 at or below the normal
    limit ``region_band_ratio``, 2 at or below ``marked`` (default: :func:`grade2_ratio` of it)."""
    if contrast is None:
        return None
    g2 = grade2_ratio(region_band_ratio) if marked is None else min(marked, region_band_ratio)
    return 2 if contrast <= g2 else (1 if contrast <= region_band_ratio else 0)


def laterality_index(contrast_left, contrast_right) -> float:
    """(L - R) / (L + R) of the bank darkness (1 - bank/control ratio, clipped at 0);
    + = left more affected."""
    l = max(1.0 - contrast_left, 0.0) if contrast_left is not None else 0.0
    r = max(1.0 - contrast_right, 0.0) if contrast_right is not None else 0.0
    return round((l - r) / (l + r), 3) if (l + r) > 0 else 0.0


def score(swi_img: np.ndarray, z_swi: np.ndarray, ribbon: np.ndarray, regions: np.ndarray | None,
          voxel_ml: float, *, z_mag: np.ndarray | None = None,
          wm_reference: np.ndarray | None = None, z_threshold: float = DEFAULT_Z_THRESHOLD,
          band_ratio: float = DEFAULT_BAND_RATIO, region_band_ratio: float = DEFAULT_REGION_BAND_RATIO,
          diffuse_ratio: float = DIFFUSE_CORTEX_TO_WM, spacing_kji=(1.0, 1.0, 1.0),
          diffuse_labels: np.ndarray | None = None) -> dict:
    """Scores from bias-corrected SWI, its z-map and the ribbon.

    A region is banded when its bank / control ratio (``band_contrast``) is at or below
    ``region_band_ratio``; a hemisphere when its whole bank's ratio is at or below
    ``band_ratio`` or any of its regions is banded (a focal hand-knob band darkens a third of
    the bank). "pattern" is bilateral, left, right, absent (no band in the measured banks) or
    "not measured" (no bank measured); "measured_sides" lists the measured hemispheres.
    Returns a dict with "pattern", "measured_sides", "nonspecific_diffuse", "laterality_index",
    "total_grade" and "hemispheres" -> side -> {band_present, band_contrast,
    hypointense_fraction, z_median, volume_ml, grade, cortex_to_wm_ratio, regions -> name -> {...}}.

    ``diffuse_labels`` (ribbon-style labels, 3/4 = left/right cortex) is the cortex sampled for
    the diffuse flag when it differs from the ribbon's control (default: the control itself).
    """
    rib = np.asarray(ribbon)
    dlab = rib if diffuse_labels is None else np.asarray(diffuse_labels)
    hemis = {}
    for side in ("left", "right"):
        bank, ctrl = rib == BANK[side], rib == CONTROL[side]
        h = _stats(swi_img, z_swi, z_mag, bank, ctrl, z_threshold, voxel_ml)
        h["band_present"] = bool(h["measured"] and h["band_contrast"] is not None
                                 and h["band_contrast"] <= band_ratio)
        # the whole bank: grade 1 against its own limit, grade 2 at the regions' "marked" level
        h["grade"] = grade(h["band_contrast"], band_ratio, grade2_ratio(region_band_ratio))
        ratio = None
        if wm_reference is not None:
            dctrl = dlab == CONTROL[side]
            wm = np.asarray(wm_reference) & np.isin(rib, (0,)) & np.isin(dlab, (0,))
            side_wm = wm & _same_side(dlab, side, wm, spacing_kji)
            if dctrl.sum() >= MIN_CONTROL_VOXELS and side_wm.sum() >= MIN_CONTROL_VOXELS:
                ratio = round(float(np.median(swi_img[dctrl]) / np.median(swi_img[side_wm])), 4)
        h["cortex_to_wm_ratio"] = ratio
        regs = {}
        if regions is not None:
            reg = np.asarray(regions)
            for value, name in REGION_NAMES.items():
                rbank, rctrl = bank & (reg == value), ctrl & (reg == value)
                if rctrl.sum() < MIN_CONTROL_VOXELS:
                    rctrl = ctrl  # the z-map falls back to the hemisphere's control the same way
                r = _stats(swi_img, z_swi, z_mag, rbank, rctrl, z_threshold, voxel_ml)
                r["band_present"] = bool(r["measured"] and r["band_contrast"] is not None
                                         and r["band_contrast"] <= region_band_ratio)
                r["grade"] = grade(r["band_contrast"], region_band_ratio)
                regs[name] = r
        h["regions"] = regs
        h["band_regions"] = [n for n, r in regs.items() if r["band_present"]]
        h["band_present"] = bool(h["band_present"] or h["band_regions"])
        hemis[side] = h
    left, right = hemis["left"]["band_present"], hemis["right"]["band_present"]
    measured = [s for s in ("left", "right") if hemis[s]["measured"]]
    # "absent" is a finding about a measured bank: with no bank measured there is no finding.
    pattern = ("bilateral" if (left and right) else "left" if left else "right" if right
               else "absent" if measured else NOT_MEASURED)
    ratios = [hemis[s]["cortex_to_wm_ratio"] for s in hemis if hemis[s]["cortex_to_wm_ratio"] is not None]
    diffuse = bool(ratios) and float(np.mean(ratios)) < diffuse_ratio
    grades = [r["grade"] for h in hemis.values() for r in h["regions"].values() if r["grade"] is not None]
    return {
        "pattern": pattern,
        "measured_sides": measured,
        "nonspecific_diffuse": diffuse,
        "laterality_index": laterality_index(hemis["left"]["band_contrast"], hemis["right"]["band_contrast"]),
        "total_grade": int(sum(grades)) if grades else None,
        "hemispheres": hemis,
        "thresholds": {"statistic": "bank / control median ratio on bias-corrected SWI",
                       "band_ratio": band_ratio, "region_band_ratio": region_band_ratio,
                       "grade2_ratio": grade2_ratio(region_band_ratio), "z_threshold": z_threshold,
                       "diffuse_cortex_to_wm": diffuse_ratio, "provisional": True},
    }


def _same_side(ribbon, side, wm, spacing_kji=(1.0, 1.0, 1.0)):
    """Voxels of ``wm`` nearer to this side's ribbon than to the other side's (all of ``wm`` when
    the other side has no ribbon)."""
    from scipy import ndimage

    this = np.isin(ribbon, (BANK[side], CONTROL[side]))
    other_side = "right" if side == "left" else "left"
    other = np.isin(ribbon, (BANK[other_side], CONTROL[other_side]))
    if not this.any():
        return np.zeros_like(wm)
    if not other.any():
        return np.ones_like(wm)
    # Distances on the box that holds every voxel involved (both sides' ribbons and wm): the
    # nearest ribbon voxel of a voxel in the box is in the box, so they are exact, and a 1 mm
    # brain's re-measure does not pay for whole-volume transforms.
    box = ndimage.find_objects((this | other | wm).astype(np.uint8))[0]
    d_this = ndimage.distance_transform_edt(~this[box], sampling=spacing_kji)
    d_other = ndimage.distance_transform_edt(~other[box], sampling=spacing_kji)
    out = np.zeros(np.shape(wm), dtype=bool)
    out[box] = np.asarray(wm, dtype=bool)[box] & (d_this < d_other)
    return out


def profiles(z_swi: np.ndarray, ribbon: np.ndarray, ras_superior: np.ndarray, bin_mm: float = PROFILE_BIN_MM) -> dict:
    """Median darkness z of each bank along the gyrus, binned by height (RAS S, mm).

    The precentral gyrus runs from the vertex (leg) down to the Sylvian fissure (face), so
    height orders the bank along the gyrus. Returns side -> {"height_mm": [...], "z_median": [...]}.
    """
    out = {}
    for side in ("left", "right"):
        bank = np.asarray(ribbon) == BANK[side]
        if not bank.any():
            out[side] = {"height_mm": [], "z_median": []}
            continue
        h = ras_superior[bank]
        zz = z_swi[bank]
        edges = np.arange(np.floor(h.min() / bin_mm) * bin_mm, h.max() + bin_mm, bin_mm)
        idx = np.digitize(h, edges)
        hs, zs = [], []
        for i in np.unique(idx):
            sel = idx == i
            if sel.sum() >= 5:
                hs.append(round(float(edges[i - 1] + bin_mm / 2), 1))
                zs.append(round(float(np.median(zz[sel])), 3))
        out[side] = {"height_mm": hs, "z_median": zs}
    return out
