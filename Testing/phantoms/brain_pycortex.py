"""An individual brain with surface-derived truth: pycortex sample subject S1 (test machinery).

Source: the pycortex 1.4.0 source package on PyPI (BSD-2-Clause), folder ``filestore/db/S1``,
fetched and unpacked by :func:`phantoms.fetch.package_dir` (``sdist=True``). It holds one real
person's FreeSurfer-conformed T1 (``anatomicals/raw.nii.gz``: 256^3, 1 mm, LIA, whole head,
intensity-normalised so WM = 110), the FreeSurfer pial and white surfaces of both hemispheres
(``surfaces/{pia,wm}_{lh,rh}.gii``, ~152k vertices each, closed, shared triangles), the flattened
cortex (``flat_{lh,rh}.gii``: same vertices, a cut patch) and hand-drawn overlays on the flat map
(``overlays.svg``: sulcus lines, functional-localiser ROIs). Nothing of pycortex is imported.

:func:`load` returns a :class:`phantoms.brains.LabelledBrain` on the T1's own 1 mm grid (its
affine as ``ijk_to_ras``; arrays (k, j, i)), built once (~1-1.5 min, < 3 GB) and cached as
``<cache>/individual/pycortex_s1-<VERSION>.npz`` (``phantoms.brains.save_npz``; cached load ~1 s).
``t1w`` is the real T1 divided by its WM level (not a synthetic one); ``nuclei`` is empty.

Coordinates
-----------
The surface vertices are in the scanner RAS of ``raw.nii.gz`` (its NIfTI affine), not in
FreeSurfer's tkr-RAS: pycortex's importer already added the conformed volume's centre offset
(c_ras = (-2.2, 33.4, 5.3) mm here). Checked on the T1: the contrast across the white surface
(mean T1 1 mm inside minus 1 mm outside, every 10th vertex) peaks at zero shift to within
0.25 mm along every axis (29 vs 24 at +-1 mm) and is ~0 with the tkr affine. So vertices map to
voxels by ``inv(affine)``, without correction.

SVG overlays -> flat map: pycortex (``cortex/svgoverlay.py`` ``SVGOverlay.set_coords`` and
``Shape.get_mask``, ``database.get_overlay``, ``get_surf(..., "flat", merge=True, nudge=True)``)
puts both flat hemispheres side by side: the left patch's x is shifted so that its maximum is 0,
the right's so that its minimum is 0 ("nudge"; extremes over all vertices), the two are stacked,
and x and y are each mapped linearly from [min, max] onto the SVG canvas [0, width] x
[0, height], y pointing up (SVG y = height - y). The canvas (1960.5 x 1024) has the flat map's
aspect ratio (checked), so both axes share one scale. :class:`FlatCanvas` inverts that map; the
SVG paths (Bezier curves, sampled 24 points per segment) become flat coordinates (~mm). Checked:
the CeS lines run along the deepest valley of the depth map, the M1/S1 ROIs straddle them.

Definitions
-----------
Central sulcus (per hemisphere)
    The ``CeS`` path of the ``sulci`` layer of ``overlays.svg`` (one per hemisphere, assigned by
    the side of the canvas), mapped to the flat map: the fundus line of the central sulcus as
    drawn by the pycortex authors. Oriented from its medial/superior end (the end whose nearest
    pial vertex is higher) to its lateral/inferior end (towards the Sylvian fissure).
Line coordinates
    Every flat-map vertex gets ``s`` (arc length, mm on the flat map, of its nearest point on the
    line) and ``t`` (signed distance to the line, positive anterior); vertices beyond either end
    of the line (nearest point = an end, > 0.5 mm past it) get none. Anterior is the side whose
    pial vertices within 10 mm of the line have the larger mean RAS y.
Sulcal depth (per vertex)
    Distance of the pial vertex to the boundary of the convex hull of its hemisphere's pial
    surface (scipy ConvexHull; mm; ~0 on the crowns, ~15-23 mm at the fundus of the central
    sulcus).
Depth profiles, fundus, crowns
    The depth is interpolated on the flat mesh (barycentric in each triangle) along
    perpendiculars to the line, every 0.5 mm of ``s``, ``t`` from -50 to +50 mm in 0.25 mm
    steps, smoothed (Gaussian sigma 1.5 mm along s, 0.5 mm along t). Per perpendicular: the
    fundus is the deepest point within :data:`FUNDUS_SEARCH_MM` of the line. Moving anteriorly
    from the fundus, the depth's running minimum is followed until the depth has risen
    :data:`EXTREMUM_TOLERANCE_MM` above it (or :data:`CROWN_SEARCH_MM` is reached); the crown of
    the precentral gyrus is the first point from the fundus within :data:`CROWN_TOLERANCE_MM` of
    that minimum (the lip of the wall, where the depth first reaches its minimum). Beyond the
    crown, the precentral sulcus is the next maximum (the same rule with a running maximum),
    at most :data:`GYRUS_CAP_MM` beyond the crown. Posteriorly the same gives the crown of the
    postcentral gyrus and the postcentral sulcus. Each landmark line is median-filtered along s
    over :data:`LINE_MEDIAN_MM`.
Posterior bank of the precentral gyrus (truth, ``bank``: 1 left, 2 right)
    Vertices with fundus <= t <= precentral crown, 0 <= s <= length: the anterior wall of the
    central sulcus from the fundus up to the crown of the precentral gyrus. Voxels: cortical
    voxels (GM the largest of gm/wm/csf, inside the pial surface, not a T1-classified voxel)
    whose nearest mid-thickness vertex ((pial + white) / 2, same hemisphere, cKDTree) is a bank
    vertex; so the bank is the whole cortex between the white and pial surfaces (mean thickness
    2.8 mm here), a strip ~15-20 mm wide on the flat map (the depth of the wall).
Precentral / postcentral gyrus (aparc 1024 / 2024, 1022 / 2022)
    Vertices with fundus <= t <= precentral sulcus, respectively postcentral sulcus <= t <
    fundus, within the line's extent (the paracentral continuation on the medial surface and
    the cortex beyond the line's lateral end stay 3 / 42); voxels by nearest mid-thickness
    vertex as above. All other cortex is 3 (left) / 42 (right).
Regions (``regions``: 1 medial, 2 intermediate, 3 lateral)
    Position along the central sulcus ``u = s / length`` (0 at the medial/superior end, 1 at
    the lateral/inferior end; the 3D arc length of the line on the mid-thickness surface gives
    the same u within 0.01): medial ``u <`` 0.30 <= intermediate <= 0.62 ``< u`` lateral
    (:data:`phantoms.brains.REGION_EDGES`; this project's convention after the three-region
    scoring of Zejlon et al. 2024, Ann Clin Transl Neurol 11:1280). Set on bank voxels and on
    all pre/postcentral cortical voxels. Independent check: the M1H / M1F / M1M (motor hand /
    foot / mouth) localiser ROIs of ``overlays.svg``; their vertices' u are in
    ``info["hemispheres"][hemi]["roi_positions"]`` (and ``phantoms.brains.region_coordinate``'s
    t in ``roi_positions_principal_axis``). Measured: M1H median u 0.39 (lh) / 0.38 (rh), 10th-90th
    percentile 0.23-0.45 / 0.24-0.48, i.e. the medial half of the intermediate region, ~1/3 of
    its vertices medial of 0.30; M1F 0.08 / 0.14 (most of it lies beyond the line's medial end,
    on the medial surface); M1M 0.83 / 0.82 (lateral).
Tissue fractions (``gm``, ``wm``, ``csf``; partial volumes on the 1 mm grid, multiples of 1/250)
    The closed pial and white surfaces are voxelised exactly on a (1 / :data:`SUPERSAMPLE` mm)^3
    subgrid (winding number of each subsample along grid lines; the volumes agree with the
    meshes' own to 0.01 mL) and averaged to 1 mm: wm = inside the white surface, gm = inside the
    pial minus inside the white surface. Where the surfaces say nothing, the T1 decides, by
    linear partial volume between its CSF, GM and WM levels (38 / 75 / 110): > :data:`DEEP_WM_MM`
    inside the white surface (ventricles -> CSF, basal ganglia / thalamus -> partly GM), >
    :data:`OUTSIDE_T1_MM` outside the pial surfaces (tissue between the hemispheres' medial
    walls, wide cisterns), and in the cerebellum/brainstem. Intracranial space = the union of the
    pial insides closed by :data:`HULL_CLOSING_MM` (holes filled) + the cerebellum/brainstem
    closed likewise; csf = intracranial minus tissue (sulcal CSF, ventricles, cisterns). There
    is no subarachnoid layer over the convexity beyond what the closing fills (the simulator adds
    its own extracerebral shells).
Non-cerebral brain (aparc 8 / 47 / 16)
    T1 voxels above the CSF/GM midpoint connected (after a 2 mm erosion, which cuts the bridges
    to scalp, muscle, eyes) to the cerebral white matter, outside the closed cerebral hull; the
    spinal cord is cut 3 mm below the lowest level where the cross-section is >=
    :data:`CORD_AREA_MM2` mm^2, small appendages (optic chiasm, pituitary) by a 2.5 mm opening.
    Cerebellum 8 (left) / 47 (right) by side of the midline; brainstem 16 within
    :data:`BRAINSTEM_HALF_WIDTH_MM` of the midline and in front of the fourth ventricle's
    centre line (a line y(z) fitted to the enclosed midline CSF of the posterior fossa). Tissue
    outside the cerebral surfaces but inside the cerebral hull: 16 within 12 mm of the midline,
    else 28 / 60. Deep grey inside the white surface keeps aparc 2 / 41 (GM fraction from the T1).
Left/right
    From the hemisphere files; checked in RAS (left vertices have the smaller x), and voxels by
    the hemisphere with the larger surface-based tissue fraction (side of the midline if none).

Measured (VERSION 1): bank 4825 (lh) / 3912 (rh) voxels = 4.83 / 3.91 mL; precentral 10.6 /
8.5 mL, postcentral 5.9 / 6.6 mL (cortical voxels); intracranial 1438 mL, GM 669, WM 579, CSF
190 mL.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, cKDTree

#: Part of the cache key; bump whenever the construction changes.
VERSION = "1"
NAME = "pycortex_s1"
SOURCE = "pycortex 1.4.0 sample subject S1, BSD-2-Clause"
PACKAGE, PACKAGE_VERSION = "pycortex", "1.4.0"

#: Subsamples per 1 mm voxel edge for the surface voxelisation (0.25 mm).
SUPERSAMPLE = 4
#: Closing radius (mm) of the pial hull that defines the intracranial space.
HULL_CLOSING_MM = 4.0
#: Fundus search half-width (mm) about the drawn central-sulcus line.
FUNDUS_SEARCH_MM = 4.0
#: Depth change (mm) that confirms a minimum (crown) or maximum (next sulcus) along a profile.
EXTREMUM_TOLERANCE_MM = 1.0
#: Crown search range (mm, flat map) from the fundus.
CROWN_SEARCH_MM = 32.0
#: The crown is the first point (from the fundus) within this depth (mm) of the profile's minimum.
CROWN_TOLERANCE_MM = 0.5
#: Maximum extent (mm, flat map) of the pre/postcentral gyrus beyond its crown.
GYRUS_CAP_MM = 18.0
#: Half-range (mm) of the perpendicular depth profiles.
T_RANGE_MM = 50.0
#: Median-filter length (mm along the line) of the crown / sulcus lines.
LINE_MEDIAN_MM = 4.0
#: Half-width (mm) about the midline within which non-cerebral brain in front of the fourth ventricle is brainstem.
BRAINSTEM_HALF_WIDTH_MM = 12.0
#: Inside the white surface, voxels deeper than this (mm) take their tissue from the T1.
DEEP_WM_MM = 1.5
#: Outside the pial surfaces, intracranial voxels farther than this (mm) take their tissue from the T1.
OUTSIDE_T1_MM = 2.0
#: Cross-section (mm^2) below which the non-cerebral brain under the cerebellum is spinal cord (cut).
CORD_AREA_MM2 = 400
#: aparc+aseg numbers.
LABELS = {"lh_precentral": 1024, "rh_precentral": 2024, "lh_postcentral": 1022, "rh_postcentral": 2022,
          "lh_cortex": 3, "rh_cortex": 42, "lh_wm": 2, "rh_wm": 41, "csf": 24,
          "lh_cerebellum": 8, "rh_cerebellum": 47, "brainstem": 16,
          "lh_ventral_dc": 28, "rh_ventral_dc": 60}

_SVG = "{http://www.w3.org/2000/svg}"
_INK_LABEL = "{http://www.inkscape.org/namespaces/inkscape}label"


from .brains import REGION_EDGES, LabelledBrain, cache_dir, cached, kji_to_ras, region_coordinate
from .fetch import package_dir

__all__ = ["VERSION", "load", "build"]


# ------------------------------------------------------------------------------------------------
# source files

def _package_root() -> Path:
    return Path(package_dir(PACKAGE, PACKAGE_VERSION, sdist=True))


def subject_dir() -> Path:
    """The S1 folder of the pycortex sdist (``.../filestore/db/S1``)."""
    root = _package_root()
    for cand in (root / f"{PACKAGE}-{PACKAGE_VERSION}" / "filestore" / "db" / "S1",
                 root / "filestore" / "db" / "S1"):
        if (cand / "overlays.svg").is_file():
            return cand
    raise FileNotFoundError(f"pycortex S1 subject not found under {root}")


def _read_gii(path: Path):
    import nibabel as nib

    g = nib.load(str(path))
    pts = np.asarray(g.get_arrays_from_intent("pointset")[0].data, np.float64)
    tris = np.asarray(g.get_arrays_from_intent("triangle")[0].data, np.int64)
    return pts, tris


def cache_path() -> Path:
    return cache_dir() / f"{NAME}-{VERSION}.npz"


# ------------------------------------------------------------------------------------------------
# SVG

_TOKEN = re.compile(r"[MmZzLlHhVvCcSsQqTtAa]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _parse_transform(text: str | None) -> np.ndarray:
    m = np.eye(3)
    if not text:
        return m
    for name, args in re.findall(r"(\w+)\s*\(([^)]*)\)", text):
        v = [float(a) for a in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", args)]
        t = np.eye(3)
        if name == "translate":
            t[0, 2], t[1, 2] = v[0], (v[1] if len(v) > 1 else 0.0)
        elif name == "scale":
            t[0, 0], t[1, 1] = v[0], (v[1] if len(v) > 1 else v[0])
        elif name == "matrix":
            t[:2, :] = np.array(v).reshape(3, 2).T
        elif name == "rotate":
            a = np.deg2rad(v[0])
            r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
            if len(v) == 3:
                c = np.eye(3); c[:2, 2] = v[1:]
                ci = np.eye(3); ci[:2, 2] = [-v[1], -v[2]]
                r = c @ r @ ci
            t = r
        else:
            raise ValueError(f"unsupported SVG transform {name}")
        m = m @ t
    return m


def _bezier(p0, p1, p2, p3, n=24):
    u = np.linspace(0, 1, n + 1)[1:, None]
    return ((1 - u) ** 3) * p0 + 3 * ((1 - u) ** 2) * u * p1 + 3 * (1 - u) * u * u * p2 + (u ** 3) * p3


def parse_svg_path(d: str) -> list[np.ndarray]:
    """SVG path data -> list of sub-paths, each an (n, 2) polyline (curves sampled finely)."""
    toks = _TOKEN.findall(d)
    subpaths, cur = [], []
    pen = np.zeros(2)
    start = np.zeros(2)
    last_ctrl = None
    cmd = None
    i = 0

    def num():
        nonlocal i
        v = float(toks[i]); i += 1
        return v

    while i < len(toks):
        if toks[i].isalpha():
            cmd = toks[i]; i += 1
            if cmd in "Zz":
                if cur:
                    cur.append(start.copy())
                    subpaths.append(np.array(cur)); cur = []
                pen = start.copy(); last_ctrl = None
                continue
        elif cmd is None:
            raise ValueError("path data does not start with a command")
        rel = cmd.islower()
        c = cmd.upper()
        base = pen if rel else np.zeros(2)
        if c == "M":
            if cur:
                subpaths.append(np.array(cur))
            pen = base + [num(), num()]
            start = pen.copy(); cur = [pen.copy()]
            cmd = "l" if rel else "L"
            last_ctrl = None
        elif c == "L":
            pen = base + [num(), num()]; cur.append(pen.copy()); last_ctrl = None
        elif c == "H":
            x = num(); pen = np.array([pen[0] + x if rel else x, pen[1]]); cur.append(pen.copy()); last_ctrl = None
        elif c == "V":
            y = num(); pen = np.array([pen[0], pen[1] + y if rel else y]); cur.append(pen.copy()); last_ctrl = None
        elif c in "CS":
            if c == "C":
                p1 = base + [num(), num()]
            else:
                p1 = 2 * pen - last_ctrl if last_ctrl is not None else pen.copy()
            p2 = base + [num(), num()]
            p3 = base + [num(), num()]
            cur.extend(_bezier(pen, p1, p2, p3)); pen = p3; last_ctrl = p2
        elif c in "QT":
            if c == "Q":
                q = base + [num(), num()]
            else:
                q = 2 * pen - last_ctrl if last_ctrl is not None else pen.copy()
            p3 = base + [num(), num()]
            cur.extend(_bezier(pen, pen + 2 / 3 * (q - pen), p3 + 2 / 3 * (q - p3), p3)); pen = p3; last_ctrl = q
        else:
            raise ValueError(f"unsupported SVG path command {cmd}")
    if cur:
        subpaths.append(np.array(cur))
    return subpaths


def svg_shapes(svg_file: Path, layer: str, name: str) -> tuple[list[np.ndarray], tuple[float, float]]:
    """All sub-paths (SVG canvas coordinates, transforms applied) of the shape ``name`` in the
    top-level Inkscape layer ``layer`` (e.g. "sulci"/"CeS", "rois"/"M1H"), and the canvas size."""
    root = ET.parse(str(svg_file)).getroot()
    out = []

    def walk(el, m, in_layer, in_shape):
        m = m @ _parse_transform(el.get("transform"))
        lab = el.get(_INK_LABEL)
        if el.tag == _SVG + "g":
            if lab == layer and not in_layer:
                in_layer = True
            elif in_layer and lab == name:
                in_shape = True
            elif in_layer and lab == "labels":
                return
        if el.tag == _SVG + "path" and in_shape:
            for sp in parse_svg_path(el.get("d")):
                h = np.c_[sp, np.ones(len(sp))] @ m.T
                out.append(h[:, :2])
        for ch in el:
            walk(ch, m, in_layer, in_shape)

    walk(root, np.eye(3), False, False)
    return out, (float(root.get("width")), float(root.get("height")))


class FlatCanvas:
    """pycortex's map between the flat surfaces and the overlays.svg canvas (see module doc)."""

    def __init__(self, flat_lh: np.ndarray, flat_rh: np.ndarray, canvas: tuple[float, float]):
        self.shift = {"lh": -flat_lh[:, 0].max(), "rh": -flat_rh[:, 0].min()}
        xy = np.vstack([flat_lh[:, :2] + [self.shift["lh"], 0], flat_rh[:, :2] + [self.shift["rh"], 0]])
        self.lo = xy.min(0)
        self.span = xy.max(0) - self.lo
        self.w, self.h = canvas
        aspect = self.w / self.h
        if abs(aspect - self.span[0] / self.span[1]) > 1e-3 * aspect:
            raise ValueError("overlays.svg canvas does not match the flat map's extent")
        self.split_x = (0.0 - self.lo[0]) / self.span[0] * self.w   # canvas x between the hemispheres

    def to_flat(self, pts_svg: np.ndarray, hemi: str) -> np.ndarray:
        x = pts_svg[:, 0] / self.w * self.span[0] + self.lo[0] - self.shift[hemi]
        y = (self.h - pts_svg[:, 1]) / self.h * self.span[1] + self.lo[1]
        return np.c_[x, y]

    def hemi_of(self, pts_svg: np.ndarray) -> str:
        return "lh" if np.mean(pts_svg[:, 0]) < self.split_x else "rh"


# ------------------------------------------------------------------------------------------------
# voxelisation

def inside_fraction(verts_vox: np.ndarray, tris: np.ndarray, lo, hi, s: int = SUPERSAMPLE,
                    chunk: int = 4_000_000) -> np.ndarray:
    """Fraction of each voxel of the box ``lo <= (i, j, k) < hi`` (voxel indices) inside the closed
    triangle mesh ``verts_vox`` (voxel coordinates (i, j, k)), as a (k, j, i) float32 array.

    Each voxel is split into s^3 subsamples; along every subsample line parallel to i the mesh's
    crossings (with the sign of the triangle's orientation) are accumulated and summed: a nonzero
    winding number is inside. Exact for closed, consistently oriented meshes; robust to small
    self-intersections (the winding number stays nonzero)."""
    lo = np.asarray(lo, int); hi = np.asarray(hi, int)
    n = (hi - lo) * s
    h = 1.0 / s
    c0 = lo - 0.5 + 0.5 * h
    P = (verts_vox - c0) / h           # subsample-index units: lines at integer (j, k)
    A, B, C = P[tris[:, 0]], P[tris[:, 1]], P[tris[:, 2]]
    area2 = (B[:, 1] - A[:, 1]) * (C[:, 2] - A[:, 2]) - (B[:, 2] - A[:, 2]) * (C[:, 1] - A[:, 1])
    jmin = np.ceil(np.minimum(np.minimum(A[:, 1], B[:, 1]), C[:, 1])).astype(np.int64)
    jmax = np.floor(np.maximum(np.maximum(A[:, 1], B[:, 1]), C[:, 1])).astype(np.int64)
    kmin = np.ceil(np.minimum(np.minimum(A[:, 2], B[:, 2]), C[:, 2])).astype(np.int64)
    kmax = np.floor(np.maximum(np.maximum(A[:, 2], B[:, 2]), C[:, 2])).astype(np.int64)
    jmin = np.maximum(jmin, 0); kmin = np.maximum(kmin, 0)
    jmax = np.minimum(jmax, n[1] - 1); kmax = np.minimum(kmax, n[2] - 1)
    nj = np.clip(jmax - jmin + 1, 0, None); nk = np.clip(kmax - kmin + 1, 0, None)
    cnt = nj * nk
    cnt[area2 == 0] = 0
    sel = np.nonzero(cnt)[0]
    D = np.zeros((n[2], n[1], n[0] + 1), np.int8)
    csum = np.cumsum(cnt[sel])
    start = 0
    while start < len(sel):
        stop = int(np.searchsorted(csum, (csum[start - 1] if start else 0) + chunk, side="right"))
        stop = max(stop, start + 1)
        t_idx = sel[start:stop]
        c = cnt[t_idx]
        t = np.repeat(t_idx, c)
        local = np.arange(len(t)) - np.repeat(np.cumsum(c) - c, c)
        pj = jmin[t] + local % nj[t]
        pk = kmin[t] + local // nj[t]
        a, b, cc = A[t], B[t], C[t]
        # edge functions (2D cross products in the (j, k) plane)
        e0 = (b[:, 1] - a[:, 1]) * (pk - a[:, 2]) - (b[:, 2] - a[:, 2]) * (pj - a[:, 1])
        e1 = (cc[:, 1] - b[:, 1]) * (pk - b[:, 2]) - (cc[:, 2] - b[:, 2]) * (pj - b[:, 1])
        e2 = (a[:, 1] - cc[:, 1]) * (pk - cc[:, 2]) - (a[:, 2] - cc[:, 2]) * (pj - cc[:, 1])
        ar = area2[t]
        ok = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
        x = (e1 * a[:, 0] + e2 * b[:, 0] + e0 * cc[:, 0]) / ar
        xi = np.clip(np.ceil(x), 0, n[0]).astype(np.int64)
        sign = np.where(ar > 0, 1, -1).astype(np.int8)
        np.add.at(D, (pk[ok], pj[ok], xi[ok]), sign[ok])
        start = stop
    np.cumsum(D, axis=2, dtype=np.int8, out=D)
    inside = D[:, :, :n[0]] != 0
    del D
    frac = inside.reshape(n[2] // s, s, n[1] // s, s, n[0] // s, s).sum(axis=(1, 3, 5), dtype=np.int32)
    return (frac / float(s ** 3)).astype(np.float32)


def _mesh_bbox(verts_vox, shape_ijk, pad=2):
    lo = np.maximum(np.floor(verts_vox.min(0)).astype(int) - pad, 0)
    hi = np.minimum(np.ceil(verts_vox.max(0)).astype(int) + pad + 1, shape_ijk)
    return lo, hi


def _paste(full_shape_kji, frac, lo, hi):
    out = np.zeros(full_shape_kji, np.float32)
    out[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = frac
    return out


# ------------------------------------------------------------------------------------------------
# surface geometry

def hull_depth(pial: np.ndarray) -> np.ndarray:
    """Distance (mm) of each vertex to the boundary of the convex hull of the surface."""
    hull = ConvexHull(pial)
    eq = hull.equations                     # n . x + d <= 0 inside, |n| = 1
    depth = np.full(len(pial), np.inf)
    for a in range(0, len(eq), 128):
        e = eq[a:a + 128]
        depth = np.minimum(depth, -(pial @ e[:, :3].T + e[:, 3]).max(1))
    return np.clip(depth, 0, None)


def _resample_polyline(p: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    keep = np.r_[True, seg > 1e-9]
    p = p[keep]
    s = np.r_[0, np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))]
    ss = np.arange(0, s[-1] + 1e-9, step)
    return np.c_[np.interp(ss, s, p[:, 0]), np.interp(ss, s, p[:, 1])], ss


def _running_extremum(prof: np.ndarray, i0: int, imax: int, step: int, kind: str, tol: float):
    """Walk from index i0 by ``step`` until the profile departs ``tol`` from its running
    min (kind "min") / max ("max"), or until imax; return the index of the extremum."""
    best_i, best_v = i0, prof[i0]
    i = i0
    while True:
        i += step
        if (step > 0 and i > imax) or (step < 0 and i < imax) or not np.isfinite(prof[i]):
            return best_i, False
        v = prof[i]
        if (kind == "min" and v < best_v) or (kind == "max" and v > best_v):
            best_i, best_v = i, v
        elif (kind == "min" and v > best_v + tol) or (kind == "max" and v < best_v - tol):
            return best_i, True


def sample_on_flat(flat_xy, tris, values, q, k: int = 12):
    """Values linearly interpolated (barycentric) on the flat mesh at 2D points ``q``; NaN off
    the mesh (cuts, outside). The containing triangle is searched among the ``k`` triangles with
    the nearest centroids (the flat mesh has a few flipped triangles, so no global locator)."""
    a, b, c = flat_xy[tris[:, 0]], flat_xy[tris[:, 1]], flat_xy[tris[:, 2]]
    kd = cKDTree((a + b + c) / 3)
    _, cand = kd.query(q, k=k)
    out = np.full(len(q), np.nan)
    done = np.zeros(len(q), bool)
    for j in range(k):
        tj = cand[:, j]
        pa, pb, pc = a[tj], b[tj], c[tj]
        v0, v1, v2 = pb - pa, pc - pa, q - pa
        den = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            wb = (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / den
            wc = (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / den
        wa = 1 - wb - wc
        hit = ~done & (den != 0) & (wa >= -1e-9) & (wb >= -1e-9) & (wc >= -1e-9)
        tv = tris[tj[hit]]
        out[hit] = wa[hit] * values[tv[:, 0]] + wb[hit] * values[tv[:, 1]] + wc[hit] * values[tv[:, 2]]
        done |= hit
    return out


def central_sulcus_frame(flat_xy, flat_tris, used, pial, depth, line_flat):
    """Per-vertex line coordinates and per-perpendicular landmarks for one hemisphere.

    Returns a dict: line (resampled, medial->lateral), length, s, t (per vertex; NaN off the
    flat patch), s_grid, t_grid, depth image, and per-s fundus/crown/sulcus t positions."""
    line, _ = _resample_polyline(line_flat, 0.05)
    # orientation: start at the medial/superior end
    kd_v = cKDTree(flat_xy[used])
    uidx = np.nonzero(used)[0]
    ends = uidx[kd_v.query(line[[0, -1]])[1]]
    if pial[ends[0], 2] < pial[ends[1], 2]:
        line = line[::-1]
    line, s_line = _resample_polyline(line, 0.05)
    length = float(s_line[-1])
    tang = np.gradient(line, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    nrm = np.c_[-tang[:, 1], tang[:, 0]]
    # per-vertex (s, t)
    kd_l = cKDTree(line)
    dist, li = kd_l.query(flat_xy[used])
    rel = flat_xy[used] - line[li]
    t = np.einsum("ij,ij->i", rel, nrm[li])
    along = np.einsum("ij,ij->i", rel, tang[li])
    near = dist < 10
    ant_sign = 1.0 if pial[uidx[near & (t > 0)], 1].mean() > pial[uidx[near & (t < 0)], 1].mean() else -1.0
    nrm *= ant_sign
    t *= ant_sign
    s_v = s_line[li]
    beyond = ((li == 0) & (along < -0.5)) | ((li == len(line) - 1) & (along > 0.5))
    S = np.full(len(flat_xy), np.nan); T = np.full(len(flat_xy), np.nan)
    S[uidx] = np.where(beyond, np.nan, s_v); T[uidx] = np.where(beyond, np.nan, t)
    # depth image along perpendiculars
    s_grid = np.arange(0, length + 1e-9, 0.5)
    t_grid = np.arange(-T_RANGE_MM, T_RANGE_MM + 1e-9, 0.25)
    base = np.c_[np.interp(s_grid, s_line, line[:, 0]), np.interp(s_grid, s_line, line[:, 1])]
    nb = np.c_[np.interp(s_grid, s_line, nrm[:, 0]), np.interp(s_grid, s_line, nrm[:, 1])]
    nb /= np.linalg.norm(nb, axis=1, keepdims=True)
    q = base[:, None, :] + t_grid[None, :, None] * nb[:, None, :]
    patch = flat_tris[np.all(used[flat_tris], axis=1)]
    img = sample_on_flat(flat_xy, patch, depth, q.reshape(-1, 2)).reshape(q.shape[:2])
    valid = np.isfinite(img)
    w = ndimage.gaussian_filter(valid.astype(float), (3.0, 2.0))
    sm = ndimage.gaussian_filter(np.where(valid, img, 0.0), (3.0, 2.0)) / np.maximum(w, 1e-6)
    sm[~valid] = np.nan
    # landmarks per perpendicular
    i_zero = int(np.argmin(np.abs(t_grid)))
    step = t_grid[1] - t_grid[0]
    di = int(round(FUNDUS_SEARCH_MM / step))
    n_crown = int(round(CROWN_SEARCH_MM / step))
    n_cap = int(round(GYRUS_CAP_MM / step))
    L = {k: np.full(len(s_grid), np.nan) for k in ("fundus", "crown_pre", "sulcus_pre", "crown_post", "sulcus_post")}
    capped = {"pre": 0, "post": 0}
    for r in range(len(s_grid)):
        prof = sm[r]
        win = prof[i_zero - di:i_zero + di + 1]
        if not np.any(np.isfinite(win)):
            continue
        f = i_zero - di + int(np.nanargmax(win))
        L["fundus"][r] = t_grid[f]
        for side, key in ((1, "pre"), (-1, "post")):
            lim = int(np.clip(f + side * n_crown, 0, len(t_grid) - 1))
            c, _ = _running_extremum(prof, f, lim, side, "min", EXTREMUM_TOLERANCE_MM)
            # the first point (from the fundus) within CROWN_TOLERANCE_MM of that minimum
            seg = prof[f:c + 1] if side > 0 else prof[c:f + 1][::-1]
            first = int(np.argmax(seg <= prof[c] + CROWN_TOLERANCE_MM))
            c = f + side * first
            lim = int(np.clip(c + side * n_cap, 0, len(t_grid) - 1))
            m, found = _running_extremum(prof, c, lim, side, "max", EXTREMUM_TOLERANCE_MM)
            capped[key] += not found
            L["crown_" + key][r] = t_grid[c]
            L["sulcus_" + key][r] = t_grid[m]
    med = max(1, int(round(LINE_MEDIAN_MM / 0.5)) | 1)
    for k in L:
        v = L[k]
        good = np.isfinite(v)
        if good.sum() > 2:
            v = np.interp(s_grid, s_grid[good], v[good])
            L[k] = ndimage.median_filter(v, size=med, mode="nearest")
    return dict(line=line, length=length, s=S, t=T, s_grid=s_grid, t_grid=t_grid, depth_img=sm,
                capped_fraction={k: v / len(s_grid) for k, v in capped.items()}, **L)


def classify_vertices(fr: dict) -> dict:
    """bank / precentral / postcentral vertex masks and position u (0..1) from the frame."""
    s, t = fr["s"], fr["t"]
    ok = np.isfinite(s)
    g = lambda k: np.interp(np.where(ok, s, 0), fr["s_grid"], fr[k])
    fund, crown, pre, post = g("fundus"), g("crown_pre"), g("sulcus_pre"), g("sulcus_post")
    tt = np.where(ok, t, np.nan)
    with np.errstate(invalid="ignore"):
        bank = ok & (tt >= fund) & (tt <= crown)
        precentral = ok & (tt >= fund) & (tt <= pre)
        postcentral = ok & (tt < fund) & (tt >= post)
    u = np.where(ok, s / fr["length"], np.nan)
    return dict(bank=bank, precentral=precentral, postcentral=postcentral, u=u)


def region_of_u(u: np.ndarray) -> np.ndarray:
    a, b = REGION_EDGES
    r = np.zeros(u.shape, np.uint8)
    with np.errstate(invalid="ignore"):
        r[u < a] = 1
        r[(u >= a) & (u <= b)] = 2
        r[u > b] = 3
    return r


# ------------------------------------------------------------------------------------------------
# build

def _intensity_split(t1: np.ndarray, levels: tuple[float, float, float]):
    """Linear partial-volume split of T1 intensities into (csf, gm, wm) fractions."""
    c, g, w = levels
    csf = np.clip((g - t1) / (g - c), 0, 1)
    wm = np.clip((t1 - g) / (w - g), 0, 1)
    gm = 1 - csf - wm
    return csf.astype(np.float32), gm.astype(np.float32), wm.astype(np.float32)


def _ball(r_mm: float):
    r = int(np.ceil(r_mm))
    z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (x * x + y * y + z * z) <= r_mm * r_mm + 1e-6


def _closed(mask: np.ndarray, r_mm: float) -> np.ndarray:
    """Morphological closing by a ball (padded, so nothing is lost at the edges), holes filled."""
    p = int(np.ceil(r_mm)) + 1
    c = ndimage.binary_closing(np.pad(mask, p), structure=_ball(r_mm))
    return ndimage.binary_fill_holes(c)[p:-p, p:-p, p:-p]


def _ras_grid(aff: np.ndarray, shape_kji) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAS x, y, z (float32, (k, j, i)) of every voxel."""
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape_kji], indexing="ij", sparse=True)
    m = aff.astype(np.float32)
    return tuple(np.ascontiguousarray(np.broadcast_to(m[a, 0] * i + m[a, 1] * j + m[a, 2] * k + m[a, 3], shape_kji))
                 for a in range(3))


def build(verbose: bool = False, keep_surface_data: bool = False):
    """Build the LabelledBrain from the pycortex sdist (~1-1.5 min). With ``keep_surface_data``
    also return the surfaces and per-vertex results (for pictures and checks)."""
    import nibabel as nib

    t_start = time.time()
    log = (lambda *a: print(f"[{time.time() - t_start:6.1f}s]", *a, flush=True)) if verbose else (lambda *a: None)
    sdir = subject_dir()
    img = nib.load(str(sdir / "anatomicals" / "raw.nii.gz"))
    aff = np.asarray(img.affine, np.float64)
    t1 = np.ascontiguousarray(np.asarray(img.dataobj, np.float32).T)   # (k, j, i)
    shape_kji = t1.shape
    shape_ijk = np.array(shape_kji[::-1])
    inv = np.linalg.inv(aff)
    to_vox = lambda p: p @ inv[:3, :3].T + inv[:3, 3]

    surf = {}
    for hemi in ("lh", "rh"):
        d = {k: _read_gii(sdir / "surfaces" / f"{k}_{hemi}.gii") for k in ("pia", "wm", "flat")}
        surf[hemi] = dict(pia=d["pia"][0], wm=d["wm"][0], tris=d["pia"][1], flat=d["flat"][0], flat_tris=d["flat"][1])
        if not (np.array_equal(d["pia"][1], d["wm"][1]) and len(d["flat"][0]) == len(d["pia"][0])):
            raise ValueError("pial/white/flat surfaces do not share vertices")
    if not surf["lh"]["pia"][:, 0].mean() < surf["rh"]["pia"][:, 0].mean():
        raise ValueError("left hemisphere is not on the left (RAS x)")
    log("surfaces read")

    # ---- tissue fractions from the surfaces
    frac = {}
    for hemi in ("lh", "rh"):
        for k in ("pia", "wm"):
            vv = to_vox(surf[hemi][k])
            lo, hi = _mesh_bbox(vv, shape_ijk)
            frac[hemi, k] = _paste(shape_kji, inside_fraction(vv, surf[hemi]["tris"], lo, hi), lo, hi)
            log("voxelised", hemi, k)
    wm_h = {h: frac[h, "wm"] for h in ("lh", "rh")}
    gm_h = {h: np.clip(frac[h, "pia"] - frac[h, "wm"], 0, None) for h in ("lh", "rh")}
    del frac
    cer_wm = wm_h["lh"] + wm_h["rh"]
    cer_gm = gm_h["lh"] + gm_h["rh"]
    tot = cer_wm + cer_gm
    over = tot > 1
    if over.any():  # the two hemispheres touch at the midline
        cer_wm[over] /= tot[over]; cer_gm[over] /= tot[over]
    pial_in = (cer_wm + cer_gm) >= 0.5

    pial_frac = cer_wm + cer_gm
    pial_in = pial_frac >= 0.5
    X, Y, Z = _ras_grid(aff, shape_kji)
    mid_x = 0.5 * (surf["lh"]["pia"][:, 0].max() + surf["rh"]["pia"][:, 0].min())

    # ---- intensity levels of the T1 (FreeSurfer-normalised: WM ~ 110)
    wm_level = float(np.median(t1[cer_wm >= 0.999]))
    gm_level = float(np.median(t1[cer_gm >= 0.999]))
    thr_brain = 0.5 * (gm_level + 0.35 * gm_level)      # CSF/GM midpoint (CSF ~ 0.35 x GM on this T1)
    log("levels wm", wm_level, "gm", gm_level)

    # ---- non-cerebral brain (cerebellum, brainstem) from the T1: brain-intensity voxels connected
    # (after a 2 mm erosion, which cuts the thin bridges to scalp, muscle and eyes) to the cerebral WM
    brainish = t1 >= thr_brain
    seed = ndimage.binary_erosion(cer_wm >= 0.5, iterations=2)
    lab, _ = ndimage.label(ndimage.binary_erosion(brainish, structure=_ball(2.0)) | seed)
    keep = np.unique(lab[seed]); keep = keep[keep > 0]
    comp = ndimage.binary_dilation(np.isin(lab, keep), structure=_ball(2.0)) & brainish
    del lab
    cer_hull = _closed(pial_in, HULL_CLOSING_MM) | (pial_frac > 0)
    other = comp & ~cer_hull
    del comp
    # the spinal cord: cut where the cross-section falls below CORD_AREA_MM2 under the cerebellum
    zo = np.round(Z[other]).astype(int)
    zmin = zo.min()
    area = np.bincount(zo - zmin)
    big = np.nonzero(area >= CORD_AREA_MM2)[0]
    z_cut = float(zmin + big.min() - 3) if len(big) else -np.inf
    other &= Z >= z_cut
    # the main body only (the 2.5 mm opening detaches the optic chiasm / pituitary and the like)
    op = ndimage.binary_opening(other, structure=_ball(2.5))
    lab, nl = ndimage.label(op)
    if nl:
        sizes = np.bincount(lab.ravel())[1:]
        other = ndimage.binary_dilation(lab == 1 + int(np.argmax(sizes)), structure=_ball(3.0)) & other
    del op, lab
    other_hull = _closed(other, HULL_CLOSING_MM) & (Z >= z_cut)
    oth = other_hull & ~cer_hull
    intracranial = cer_hull | other_hull
    log("intracranial mL", intracranial.sum() / 1000.0, "non-cerebral", other.sum() / 1000.0, "cord cut z", z_cut)

    csf_level = float(np.median(t1[intracranial & ~pial_in & (t1 < thr_brain)]))
    c_t1, g_t1, w_t1 = _intensity_split(t1, (csf_level, gm_level, wm_level))

    # ---- tissue fractions: surfaces, and the T1 where the surfaces say nothing
    deep = ndimage.distance_transform_edt(cer_wm >= 0.5) > DEEP_WM_MM            # ventricles, deep grey
    far_out = intracranial & ~pial_in & (ndimage.distance_transform_edt(~pial_in) > OUTSIDE_T1_MM) & ~oth
    t1zone = deep | oth | far_out
    gm = np.where(t1zone, g_t1, cer_gm)
    wm = np.where(t1zone, w_t1, cer_wm)
    csf = np.where(intracranial, np.clip(1 - gm - wm, 0, 1), 0)
    gm[~intracranial] = 0; wm[~intracranial] = 0
    gm, wm, csf = _quantise(gm, wm, csf)
    del c_t1, g_t1, w_t1
    log("fractions done")

    # ---- central sulcus frame and vertex classes per hemisphere
    shapes, canvas = svg_shapes(sdir / "overlays.svg", "sulci", "CeS")
    fc = FlatCanvas(surf["lh"]["flat"], surf["rh"]["flat"], canvas)
    ces = {}
    for sp in shapes:
        ces.setdefault(fc.hemi_of(sp), []).append(sp)
    rois = {}
    for r in ("M1H", "M1F", "M1M", "S1H", "S1F", "S1M"):
        sh, _ = svg_shapes(sdir / "overlays.svg", "rois", r)
        for sp in sh:
            rois.setdefault((r, fc.hemi_of(sp)), []).append(sp)
    from matplotlib.path import Path as MPath

    vert = {}
    info_hemi = {}
    for hemi in ("lh", "rh"):
        S = surf[hemi]
        if len(ces.get(hemi, [])) != 1:
            raise ValueError(f"expected one CeS path for {hemi}, found {len(ces.get(hemi, []))}")
        used = np.zeros(len(S["flat"]), bool); used[np.unique(S["flat_tris"])] = True
        depth = hull_depth(S["pia"])
        line = fc.to_flat(ces[hemi][0], hemi)
        fr = central_sulcus_frame(S["flat"][:, :2], S["flat_tris"], used, S["pia"], depth, line)
        cl = classify_vertices(fr)
        roi_u, roi_masks = {}, {}
        for (r, h), sps in rois.items():
            if h != hemi:
                continue
            inside = np.zeros(len(used), bool)
            for sp in sps:
                inside |= MPath(fc.to_flat(sp, hemi)).contains_points(S["flat"][:, :2]) & used
            roi_masks[r] = inside
            u = cl["u"][inside]
            uu = u[np.isfinite(u)]
            q = lambda f: round(float(f), 3)
            roi_u[r] = dict(n_vertices=int(inside.sum()), n_within_line_extent=int(len(uu)),
                            u_median=q(np.median(uu)) if len(uu) else None,
                            u_p10=q(np.percentile(uu, 10)) if len(uu) else None,
                            u_p90=q(np.percentile(uu, 90)) if len(uu) else None,
                            fraction_bank=q(cl["bank"][inside].mean()) if inside.any() else None,
                            fraction_precentral=q(cl["precentral"][inside].mean()) if inside.any() else None,
                            fraction_postcentral=q(cl["postcentral"][inside].mean()) if inside.any() else None,
                            region_counts={k: int(v) for k, v in zip(("medial", "intermediate", "lateral"),
                                                                     np.bincount(region_of_u(uu), minlength=4)[1:])})
        vert[hemi] = dict(fr=fr, cl=cl, depth=depth, used=used, roi_masks=roi_masks)
        info_hemi[hemi] = dict(ces_length_flat_mm=round(fr["length"], 1), rois=roi_u,
                               bank_vertices=int(cl["bank"].sum()), precentral_vertices=int(cl["precentral"].sum()),
                               postcentral_vertices=int(cl["postcentral"].sum()))
        log("frame", hemi, info_hemi[hemi])

    # ---- voxel labels
    aparc = np.zeros(shape_kji, np.int32)
    bank = np.zeros(shape_kji, np.uint8)
    regions = np.zeros(shape_kji, np.uint8)
    lh_t = gm_h["lh"] + wm_h["lh"]; rh_t = gm_h["rh"] + wm_h["rh"]
    right = np.where(lh_t == rh_t, X >= mid_x, rh_t > lh_t)
    del lh_t, rh_t
    winner = np.argmax(np.stack([gm, wm, csf], 0), 0)            # 0 gm, 1 wm, 2 csf
    aparc[intracranial & (winner == 2)] = LABELS["csf"]
    # cerebral white matter (and deep grey inside the white surface: no aseg nuclei here)
    wmv = intracranial & (winner != 2) & (((winner == 1) & (pial_frac > 0) & ~oth & ~far_out) | deep)
    aparc[wmv] = np.where(right[wmv], LABELS["rh_wm"], LABELS["lh_wm"])
    # tissue between the hemispheres' medial walls and other cerebral bits outside the surfaces
    fo = far_out & (winner != 2)
    aparc[fo] = np.where(np.abs(X[fo] - mid_x) < BRAINSTEM_HALF_WIDTH_MM, LABELS["brainstem"],
                         np.where(right[fo], LABELS["rh_ventral_dc"], LABELS["lh_ventral_dc"]))
    # cerebellum / brainstem: brainstem = near the midline and in front of the fourth ventricle
    ov = oth & (winner != 2)
    aparc[ov] = np.where(X[ov] >= mid_x, LABELS["rh_cerebellum"], LABELS["lh_cerebellum"])
    v4 = (oth & (t1 < thr_brain) & (np.abs(X - mid_x) < 10)
          & (ndimage.distance_transform_edt(other_hull) > 4))
    lab, nl = ndimage.label(v4)
    v4_fit = None
    if nl:
        v4 = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
        if v4.sum() >= 100:
            v4_fit = np.polyfit(Z[v4], Y[v4], 1)          # centre line y(z) of the fourth ventricle
            bs = ov & (np.abs(X - mid_x) < BRAINSTEM_HALF_WIDTH_MM) & (Y > np.polyval(v4_fit, Z))
            aparc[bs] = LABELS["brainstem"]
    del lab
    # cortex: nearest mid-thickness vertex
    ctx = (winner == 0) & (pial_frac > 0) & ~t1zone
    for hi_, hemi in enumerate(("lh", "rh")):
        S = surf[hemi]; V = vert[hemi]
        mid = 0.5 * (S["pia"] + S["wm"])
        kd = cKDTree(mid)
        sel = ctx & (right if hi_ else ~right)
        kji = np.argwhere(sel)
        _, vi = kd.query(kji_to_ras(aff, kji))
        cl = V["cl"]
        lab_v = np.full(len(mid), LABELS[f"{hemi}_cortex"], np.int32)
        lab_v[cl["precentral"]] = LABELS[f"{hemi}_precentral"]
        lab_v[cl["postcentral"]] = LABELS[f"{hemi}_postcentral"]
        idx = tuple(kji.T)
        aparc[idx] = lab_v[vi]
        bank[idx] = np.where(cl["bank"][vi], hi_ + 1, 0)
        reg_v = region_of_u(cl["u"])
        reg_v[~(cl["bank"] | cl["precentral"] | cl["postcentral"])] = 0
        regions[idx] = reg_v[vi]
        V["voxel_vertex"] = (kji, vi)
        V["thickness"] = np.linalg.norm(S["pia"] - S["wm"], axis=1)
    log("labels done")

    # ---- facts for reports
    ml = lambda m: round(float(m.sum()) / 1000.0, 2)
    side_facts = {}
    for hi_, hemi in enumerate(("lh", "rh")):
        S, V = surf[hemi], vert[hemi]
        cl, th = V["cl"], V["thickness"]
        mid = 0.5 * (S["pia"] + S["wm"])
        bank_ras = kji_to_ras(aff, np.argwhere(bank == hi_ + 1))
        roi_pa = {}
        for r, m in V["roi_masks"].items():
            if m.any():
                _, t_o, _ = region_coordinate(bank_ras, mid_x, mid[m])
                roi_pa[r] = dict(t_median=round(float(np.median(t_o)), 3),
                                 t_p10=round(float(np.percentile(t_o, 10)), 3),
                                 t_p90=round(float(np.percentile(t_o, 90)), 3))
        side_facts[hemi] = dict(
            bank_voxels=int((bank == hi_ + 1).sum()), bank_ml=ml(bank == hi_ + 1),
            bank_gm_ml=round(float(gm[bank == hi_ + 1].sum()) / 1000.0, 2),
            bank_surface_vertices=int(cl["bank"].sum()),
            precentral_ml=ml(aparc == LABELS[f"{hemi}_precentral"]),
            postcentral_ml=ml(aparc == LABELS[f"{hemi}_postcentral"]),
            region_voxels_bank={n: int(((bank == hi_ + 1) & (regions == c)).sum())
                                for c, n in ((1, "medial"), (2, "intermediate"), (3, "lateral"))},
            mean_thickness_bank_mm=round(float(th[cl["bank"]].mean()), 2),
            mean_thickness_precentral_mm=round(float(th[cl["precentral"]].mean()), 2),
            ces_length_flat_mm=round(V["fr"]["length"], 1),
            gyrus_cap_reached_fraction={k: round(v, 3) for k, v in V["fr"]["capped_fraction"].items()},
            roi_positions=info_hemi[hemi]["rois"],
            roi_positions_principal_axis=roi_pa,
        )
    info = dict(
        source=SOURCE, version=f"{NAME}-{VERSION}", name=NAME,
        files=("pycortex-1.4.0/filestore/db/S1: anatomicals/raw.nii.gz, surfaces/{pia,wm,flat}_{lh,rh}.gii,"
               " overlays.svg"),
        coordinates="surface vertices are in raw.nii.gz scanner RAS (its affine), not tkr-RAS; checked on the T1",
        t1w="the real T1 (raw.nii.gz, FreeSurfer-normalised, whole head) divided by its WM level",
        t1_levels=dict(csf=csf_level, gm=gm_level, wm=wm_level),
        bank_voxels={h: side_facts[h]["bank_voxels"] for h in ("lh", "rh")},
        bank_ml={h: side_facts[h]["bank_ml"] for h in ("lh", "rh")},
        hemispheres=side_facts,
        volumes_ml=dict(intracranial=ml(intracranial), gm=round(float(gm.sum()) / 1000, 1),
                        wm=round(float(wm.sum()) / 1000, 1), csf=round(float(csf.sum()) / 1000, 1),
                        cerebral_gm_surfaces=round(float(cer_gm.sum()) / 1000, 1),
                        cerebral_wm_surfaces=round(float(cer_wm.sum()) / 1000, 1)),
        midline_x_mm=round(float(mid_x), 2), spinal_cord_cut_z_mm=z_cut,
        fourth_ventricle_line_y_of_z=None if v4_fit is None else [float(c) for c in v4_fit],
        region_edges=list(REGION_EDGES),
        definitions={
            "central_sulcus": ("CeS path of overlays.svg (layer sulci) mapped to the flat map; oriented medial/superior"
                               " -> lateral/inferior"),
            "sulcal_depth": "distance of the pial vertex to the convex hull of its hemisphere's pial surface (mm)",
            "bank": ("anterior side of the CeS line on the flat map, from the fundus (deepest point within"
                     f" {FUNDUS_SEARCH_MM} mm of the line) to the crown of the precentral gyrus (first depth minimum"
                     " along perpendiculars); cortical voxels (GM the largest fraction) by nearest mid-thickness vertex"),
            "precentral": (f"fundus to the next depth maximum beyond the crown (precentral sulcus), at most {GYRUS_CAP_MM}"
                           " mm (flat) beyond the crown; within the CeS line's extent"),
            "postcentral": ("posterior side likewise (postcentral crown, postcentral sulcus, at most"
                            f" {GYRUS_CAP_MM} mm beyond the crown)"),
            "regions": ("u = arc length along the CeS line / its length, 0 at the medial end; medial u < 0.30 <="
                        " intermediate <= 0.62 < u lateral (after Zejlon et al. 2024's three-region scoring);"
                        " roi_positions_principal_axis: phantoms.brains.region_coordinate's t, for comparison"),
            "tissue": (f"pial/white surfaces voxelised at {1 / SUPERSAMPLE} mm (winding number), averaged to 1 mm;"
                       f" > {DEEP_WM_MM} mm inside the white surface, > {OUTSIDE_T1_MM} mm outside the pial surfaces"
                       " and in the cerebellum/brainstem: linear partial volume of the T1 between its CSF, GM and WM"
                       f" levels; intracranial = pial hull closed {HULL_CLOSING_MM} mm + cerebellum/brainstem likewise"),
            "non_cerebral": ("cerebellum 8/47 by side of the midline; brainstem 16 within"
                             f" {BRAINSTEM_HALF_WIDTH_MM} mm of the midline in front of the fourth ventricle's centre"
                             " line; tissue between the hemispheres' medial walls 16 (near the midline) or 28/60"),
            "deep_grey": ("grey-matter fractions from the T1 inside the white surface (basal ganglia, thalamus) are"
                          " kept in gm with aparc 2/41; no nuclei maps"),
        },
        nuclei="not modelled (empty dict)",
        build_seconds=round(time.time() - t_start, 1),
    )
    t1w = (t1 / wm_level).astype(np.float32)
    brain = LabelledBrain(name=NAME, ijk_to_ras=aff, spacing_mm=1.0, aparc=aparc, gm=gm, wm=wm, csf=csf,
                          nuclei={}, bank=bank, regions=regions, t1w=t1w, info=info)
    if keep_surface_data:
        return brain, dict(surf=surf, vert=vert, canvas=fc)
    return brain


#: Denominator of the stored fractions (uint8 counts; see phantoms.brains.save_npz).
FRACTION_DENOM = 250


def _quantise(gm, wm, csf, denom=FRACTION_DENOM):
    """Fractions rounded to multiples of 1/denom with gm + wm + csf <= 1 kept exactly."""
    g = np.rint(np.clip(gm, 0, 1) * denom)
    w = np.rint(np.clip(wm, 0, 1) * denom)
    over = g + w > denom
    w[over] = denom - g[over]
    c = np.minimum(np.rint(np.clip(csf, 0, 1) * denom), denom - g - w)
    return tuple((x / denom).astype(np.float32) for x in (g, w, c))


def load(rebuild: bool = False) -> LabelledBrain:
    """The pycortex S1 brain: built once (~1 min), then read from the .npz cache (seconds)."""
    return cached(cache_path(), VERSION, build, FRACTION_DENOM, rebuild)
