"""Template-space anatomy of the phantom: the true posterior bank, somatotopic regions, veins, sinus.

Everything here lives on the MNI ICBM152 2009a grid of :mod:`MotorBandSignLib.templates` (1 mm,
RAS) and is the same for every simulated subject; :mod:`.simulate` warps it into each subject's space.
Built once and cached on disk (``templates.cache_dir()/phantoms``).

Definitions
-----------
Central sulcus (per hemisphere)
    Brain voxels that are not white matter (WM probability < 0.5) and lie within
    :data:`CS_INTERFACE_MM` of both the Harvard-Oxford precentral and postcentral labels of that
    hemisphere: the interface between the two gyri, i.e. the sulcal CSF and the two banks'
    surfaces. On the 2009a template this interface follows the CSF line of the central sulcus
    (checked on axial slices z = 50 and 62 mm against the CSF map).
Posterior bank of the precentral gyrus (the band region, "truth")
    Precentral-labelled voxels with grey-matter probability >= :data:`BANK_GM_MIN` (cortex,
    no deeper) within :data:`BANK_DEPTH_MM` of the central sulcus and of the postcentral label
    (voxel-centre distances on the 1 mm grid). The anterior lip of the
    precentral gyrus (facing the precentral sulcus) and the postcentral gyrus are excluded by
    construction (too far from the interface; other label).
Somatotopic regions along the gyrus (medial = leg, intermediate = hand, lateral = face)
    By the angle ``theta = atan2(|x|, z - REGION_Z0_MM)`` in the coronal plane, measured from
    the vertical through the hemispheric arc's centre: medial below
    :data:`REGION_THETA_DEG` [0], intermediate between, lateral above [1]. With these values the
    hand knob (MNI about (+-38, -22, 56); Yousry et al. 1997, Brain 120:141) lies at ~38 deg,
    the middle of the intermediate region; the paracentral lobule and vertex leg area (|x| <
    ~22 mm at z ~ 70) are medial; the face area (|x| > ~50 mm, z < ~40 mm) is lateral, in
    line with the three-part split of Zejlon et al. 2024 (Ann Clin Transl Neurol 11:1280).
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np
from scipy import ndimage

from MotorBandSignLib import templates

#: Version of the template-space model; part of every cache key.
ANATOMY_VERSION = "anat-6"

#: Interface half-width (mm) used to find the central sulcus between the two gyri' labels:
#: a voxel within this distance of both labels sits in the sulcus (sulcal CSF ~1-2 mm wide).
CS_INTERFACE_MM = 1.5
#: Depth of the posterior bank from the central sulcus (mm). Cortical thickness of the anterior
#: wall of the central sulcus (BA4) is ~2.5-3 mm (Fischl & Dale 2000, PNAS 97:11050).
BANK_DEPTH_MM = 3.0
#: Grey-matter probability above which a voxel is cortex (GM is the largest class from ~0.4).
BANK_GM_MIN = 0.4
#: Somatotopic split (see module docstring).
REGION_Z0_MM = 10.0
REGION_THETA_DEG = (22.0, 55.0)

#: Superior sagittal sinus radius (mm): lumen ~6-9 mm wide at the vertex (e.g. the MR venography
#: norms of Widjaja & Griffiths 2004, AJNR 25:1557).
SSS_RADIUS_MM = 3.5
#: Cortical (pial) veins ~1-3 mm in diameter (Duvernoy et al. 1981, Brain Res Bull 7:519).
CORTICAL_VEIN_RADIUS_MM = 1.0
#: Start points (|x|, y) in MNI mm of the modelled cortical veins, per hemisphere, chosen away
#: from the central sulcus so the default cases have no vein there (the option adds one).
CORTICAL_VEIN_STARTS = ((56.0, 30.0), (50.0, 5.0), (54.0, -50.0), (40.0, -75.0))


def _ras_grid(vol):
    """RAS coordinates (x, y, z) of every voxel of a template Volume, each (k, j, i)."""
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in vol.shape], indexing="ij", sparse=True)
    m = vol.ijk_to_ras.astype(np.float32)
    return [m[a, 0] * i + m[a, 1] * j + m[a, 2] * k + m[a, 3] for a in range(3)]


def _tube(shape, centre_kji_points, radius_vox):
    """Partial-volume fraction (0..1) of a tube around a densely sampled centre line."""
    line = np.zeros(shape, bool)
    pts = np.round(centre_kji_points).astype(int)
    ok = np.all((pts >= 0) & (pts < np.array(shape)), axis=1)
    pts = pts[ok]
    line[pts[:, 0], pts[:, 1], pts[:, 2]] = True
    d = ndimage.distance_transform_edt(~line)
    return np.clip(radius_vox + 0.5 - d, 0.0, 1.0).astype(np.float32)


def _polyline(points, step=0.4):
    """Densely resample a polyline given as (n, 3) points."""
    pts = np.asarray(points, np.float64)
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        t = np.linspace(0, 1, n + 1)[1:, None]
        out.append(a + t * (b - a))
    return np.vstack([np.atleast_2d(o) for o in out])


def posterior_bank(labels, gm, wm, brain, spacing_kji=(1.0, 1.0, 1.0)):
    """The true posterior bank and the central sulcus on any grid (see module docstring).

    Parameters
    ----------
    labels : uint8 array (k, j, i) in :data:`templates.REGION_LABELS` values.
    gm, wm : float arrays, grey / white matter probability.
    brain : bool array, brain mask.
    spacing_kji : voxel size (mm) along the array axes.

    Returns
    -------
    truth : uint8, 1 left / 2 right posterior bank.
    cs : uint8, 1 left / 2 right central-sulcus interface.
    cs_distance : float32 (2, k, j, i), distance (mm) to each hemisphere's central sulcus
        (inf where the hemisphere has none in the crop).
    """
    L = templates.REGION_LABELS
    shape = labels.shape
    truth = np.zeros(shape, np.uint8)
    cs_all = np.zeros(shape, np.uint8)
    cs_dist = np.full((2,) + shape, np.inf, np.float32)
    sp = np.asarray(spacing_kji, float)
    margin = np.ceil((BANK_DEPTH_MM + CS_INTERFACE_MM + 2.0) / sp).astype(int)
    for h, side in enumerate(("left", "right")):
        pre_full = labels == L[f"{side}_precentral"]
        post_full = labels == L[f"{side}_postcentral"]
        if not pre_full.any() or not post_full.any():
            continue
        idx = np.argwhere(pre_full | post_full)
        lo = np.maximum(idx.min(0) - margin, 0)
        hi = np.minimum(idx.max(0) + margin + 1, shape)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        pre, post = pre_full[sl], post_full[sl]
        d_pre = ndimage.distance_transform_edt(~pre, sampling=sp)
        d_post = ndimage.distance_transform_edt(~post, sampling=sp)
        # on grids coarser than the interface width, neighbouring voxels of the two labels count
        width = max(CS_INTERFACE_MM, float(sp.max()))
        cs = brain[sl] & (wm[sl] < 0.5) & (d_pre <= width) & (d_post <= width)
        if not cs.any():
            continue
        d_cs = ndimage.distance_transform_edt(~cs, sampling=sp)
        depth = max(BANK_DEPTH_MM, float(sp.max()))
        bank = pre & (gm[sl] >= BANK_GM_MIN) & (d_cs <= depth) & (d_post <= depth)
        truth[sl][bank] = h + 1
        cs_all[sl][cs] = h + 1
        cs_dist[h][sl] = d_cs
    return truth, cs_all, cs_dist


def build_template_model() -> dict:
    """Compute the template-space model (see module docstring). Arrays (k, j, i) on the 2009a grid."""
    t1 = templates.mni_t1()
    gm = templates.mni_gm().array
    wm = templates.mni_wm().array
    brain = templates.mni_brain_mask().array > 0
    lab = templates.region_labels().array
    shape = t1.shape
    x, y, z = _ras_grid(t1)
    L = templates.REGION_LABELS

    truth, cs_all, cs_d = posterior_bank(lab, gm, wm, brain)
    # distance to each sulcus over the whole grid (the crop above is local), for the warp
    cs_dist = np.stack([ndimage.distance_transform_edt(cs_all != h + 1) for h in range(2)]).astype(np.float16)
    # a vein running in the superficial part of the central sulcus (option of the phantom):
    # the interface core (within 1 mm of both labels) 1-4 mm below the brain surface
    depth_in = ndimage.distance_transform_edt(brain)  # mm from the outside of the brain mask
    cs_vein = np.zeros(shape, np.float32)
    for side in ("left", "right"):
        d_pre = ndimage.distance_transform_edt(lab != L[f"{side}_precentral"])
        d_post = ndimage.distance_transform_edt(lab != L[f"{side}_postcentral"])
        core = brain & (d_pre <= 1.0) & (d_post <= 1.0) & (depth_in >= 1.0) & (depth_in <= 4.0) & (wm < 0.5)
        cs_vein = np.maximum(cs_vein, ndimage.gaussian_filter(core.astype(np.float32), 0.5))
    cs_vein = np.clip(cs_vein * 1.5, 0, 1).astype(np.float32)

    theta = np.degrees(np.arctan2(np.abs(x), z - REGION_Z0_MM))
    regions = np.where(theta < REGION_THETA_DEG[0], 1, np.where(theta < REGION_THETA_DEG[1], 2, 3)).astype(np.uint8)
    # defined everywhere (not only in the template brain): truth voxels of a warped subject may
    # map just outside the template's mask

    # --- veins: superior sagittal sinus + a few pial veins on the convexity -------------------
    A = t1.ijk_to_ras
    inv = np.linalg.inv(A)
    top = np.where(brain.any(axis=0), shape[0] - 1 - np.argmax(brain[::-1], axis=0), -1)  # (j, i) top k
    i0 = int(round(inv[0, 3]))  # i of x = 0
    ztop_mid = top[:, i0 - 4:i0 + 5].max(axis=1).astype(np.float64)
    ys = A[1, 1] * np.arange(shape[1]) + A[1, 3]
    sel = (ys >= -85) & (ys <= 45) & (ztop_mid > 0)
    zs = ndimage.gaussian_filter1d(ztop_mid, 4.0)[sel] * A[2, 2] + A[2, 3]
    sss_pts = np.stack([np.zeros(sel.sum()), ys[sel], zs + 2.5], axis=1)
    veins = _tube(shape, (_polyline(sss_pts) @ inv[:3, :3].T + inv[:3, 3])[:, ::-1], SSS_RADIUS_MM)

    def surface_z(xm, ym):
        ii = int(round(inv[0, 0] * xm + inv[0, 3]))
        jj = int(round(inv[1, 1] * ym + inv[1, 3]))
        return top[jj, ii] * A[2, 2] + A[2, 3]

    for sgn in (-1.0, 1.0):
        for xs0, ys0 in CORTICAL_VEIN_STARTS:
            path = []
            for t in np.linspace(0, 1, 40):
                xm = sgn * (xs0 + t * (3.0 - xs0))
                ym = ys0 + t * (-8.0 if ys0 > -20 else -4.0)
                path.append((xm, ym, surface_z(xm, ym) - 1.0))
            pts = _polyline(path)
            veins = np.maximum(veins, _tube(shape, (pts @ inv[:3, :3].T + inv[:3, 3])[:, ::-1], CORTICAL_VEIN_RADIUS_MM))

    # --- frontal sinus (air) in front of the frontal pole, midline ----------------------------
    kz = np.round(inv[2, 2] * np.arange(0, 16) + inv[2, 3]).astype(int)  # z = 0..15 mm
    front = brain[kz][:, :, i0 - 3:i0 + 4].any(axis=(0, 2))
    y_front = ys[np.flatnonzero(front).max()]
    c = np.array([0.0, y_front + 9.0, 8.0])  # 9 mm in front of the pole, inside the frontal bone
    radii = np.array([11.0, 4.0, 9.0])  # assumed adult frontal sinus: ~20-25 mm wide, ~8 mm deep, ~18 mm tall
    ell = ((x - c[0]) / radii[0]) ** 2 + ((y - c[1]) / radii[1]) ** 2 + ((z - c[2]) / radii[2]) ** 2 <= 1.0
    near_brain = ndimage.binary_dilation(brain, iterations=3)
    sinus = (ell & ~near_brain).astype(np.uint8)

    return {
        "truth": truth, "regions": regions, "cs": cs_all, "cs_dist": cs_dist,
        "veins": veins.astype(np.float16), "cs_vein": cs_vein.astype(np.float16), "sinus": sinus,
        "frontal_sinus_centre_ras": c,
    }


@functools.lru_cache(maxsize=1)
def template_model() -> dict:
    """:func:`build_template_model`, cached on disk (npz, atomic) and in memory."""
    d = templates.cache_dir() / "phantoms"
    d.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(f"{ANATOMY_VERSION}|{CS_INTERFACE_MM}|{BANK_DEPTH_MM}|{BANK_GM_MIN}|"
                       f"{REGION_Z0_MM}|{REGION_THETA_DEG}|{CORTICAL_VEIN_STARTS}".encode()).hexdigest()[:12]
    path = d / f"template-model-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # a damaged cache file is rebuilt
            pass
    data = build_template_model()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **data)
    os.replace(tmp, path)
    return data
