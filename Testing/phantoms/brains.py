"""Individual-brain anatomies with ground truth from the brain's own labels (test machinery).

A :class:`LabelledBrain` is a real person's brain (not a template) on an isotropic grid, with
FreeSurfer-numbered labels, partial-volume tissue fractions, the truth mask of the posterior bank
of the precentral gyrus (where the ALS "motor band sign" lives) and its medial / intermediate /
lateral regions. Simulators turn it into MRI cases; tests compare detections with ``bank``.

Brains (loaded lazily, cached on disk by each module)::

    load("clab")         -> phantoms.brain_clab.load()       clabtoolkit 0.6.0 test subject
    load("pycortex_s1")  -> phantoms.brain_pycortex.load()   pycortex subject S1

This module holds the dataclass and the helpers both brain modules share: FreeSurfer numbering,
the cache folder, the regions convention along the central sulcus, the synthetic T1w, and the
.npz cache format. Conventions common to all brains:

* arrays are indexed ``(k, j, i)`` (the slowest axis is the third voxel axis) and
  ``ijk_to_ras`` maps ``(i, j, k, 1)`` to RAS millimetres;
* ``bank`` is 1 = left, 2 = right posterior bank of the precentral gyrus;
* ``regions`` is 1 medial / 2 intermediate / 3 lateral (see :func:`region_coordinate`).

Regions convention (this project's, following the three-region visual scoring of the motor band
sign along the precentral gyrus in Zejlon et al. 2024, Ann Clin Transl Neurol 11:1280 — medial =
leg, intermediate = hand knob, lateral = face): the position ``t`` of a voxel along the central
sulcus runs from its medial-superior end (vertex, 0) to its lateral-inferior end (Sylvian fissure,
1): bank voxels of one hemisphere, x mirrored to ``|x - midline|``, projected on their first
principal axis, normalised between the 1st and 99th percentiles (clipped to 0..1).
``t < 0.30`` medial, ``0.30 <= t <= 0.62`` intermediate, ``t > 0.62`` lateral.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "LabelledBrain",
    "NUCLEI",
    "DK_NAMES",
    "ASEG",
    "REGION_EDGES",
    "cache_dir",
    "dk_code",
    "kji_to_ras",
    "region_coordinate",
    "region_of",
    "synthetic_t1w",
    "save_npz",
    "load_npz",
    "cached",
    "load",
]

NUCLEI = ("caudate", "putamen", "pallidum", "thalamus")

# Desikan-Killiany names in FreeSurferColorLUT order: ctx-lh-NAME = 1000 + index, ctx-rh-NAME = 2000 + index.
DK_NAMES = (
    "unknown", "bankssts", "caudalanteriorcingulate", "caudalmiddlefrontal", "corpuscallosum",
    "cuneus", "entorhinal", "fusiform", "inferiorparietal", "inferiortemporal", "isthmuscingulate",
    "lateraloccipital", "lateralorbitofrontal", "lingual", "medialorbitofrontal", "middletemporal",
    "parahippocampal", "paracentral", "parsopercularis", "parsorbitalis", "parstriangularis",
    "pericalcarine", "postcentral", "posteriorcingulate", "precentral", "precuneus",
    "rostralanteriorcingulate", "rostralmiddlefrontal", "superiorfrontal", "superiorparietal",
    "superiortemporal", "supramarginal", "frontalpole", "temporalpole", "transversetemporal",
    "insula",
)  # fmt: skip

# FreeSurferColorLUT aseg codes, (left, right) or single.
ASEG = {
    "cerebral_wm": (2, 41),
    "lateral_ventricle": (4, 43),
    "inf_lat_vent": (5, 44),
    "cerebellum_wm": (7, 46),
    "cerebellum_cortex": (8, 47),
    "thalamus": (10, 49),
    "caudate": (11, 50),
    "putamen": (12, 51),
    "pallidum": (13, 52),
    "third_ventricle": 14,
    "fourth_ventricle": 15,
    "brainstem": 16,
    "hippocampus": (17, 53),
    "amygdala": (18, 54),
    "csf": 24,
    "accumbens": (26, 58),
    "ventral_dc": (28, 60),
    # corpus callosum, posterior .. anterior
    "cc_posterior": 251,
    "cc_mid_posterior": 252,
    "cc_central": 253,
    "cc_mid_anterior": 254,
    "cc_anterior": 255,
}

PRECENTRAL = (1024, 2024)
POSTCENTRAL = (1022, 2022)
REGION_EDGES = (0.30, 0.62)


def dk_code(hemi: str, name: str) -> int:
    """FreeSurfer aparc code of a Desikan-Killiany cortical label: dk_code('lh', 'precentral') = 1024."""
    base = {"lh": 1000, "rh": 2000}[hemi]
    return base + DK_NAMES.index(name)


@dataclass
class LabelledBrain:
    name: str  # e.g. "clab"
    ijk_to_ras: np.ndarray  # 4x4 float64, RAS mm; arrays are indexed (k, j, i)
    spacing_mm: float  # isotropic grid spacing of all arrays
    aparc: np.ndarray  # int32, FreeSurfer aparc+aseg numbering, 0 outside
    gm: np.ndarray  # float32 grey-matter fraction (cortex + deep grey + cerebellar cortex)
    wm: np.ndarray  # float32 white-matter fraction (incl. brainstem, cerebellar WM)
    csf: np.ndarray  # float32 CSF fraction inside the skull; gm + wm + csf <= 1
    nuclei: dict  # {"caudate"|"putamen"|"pallidum"|"thalamus": float32 fraction}, both sides
    bank: np.ndarray  # uint8: 1 left, 2 right posterior bank of the precentral gyrus
    regions: np.ndarray  # uint8: 1 medial / 2 intermediate / 3 lateral (bank + pre/postcentral cortex)
    t1w: np.ndarray  # float32 synthetic T1-weighted image, no noise
    info: dict = field(default_factory=dict)  # JSON-serialisable facts

    @property
    def shape(self) -> tuple:
        return self.aparc.shape

    def ras(self, mask: np.ndarray) -> np.ndarray:
        """RAS coordinates (N, 3) of the voxels of a (k, j, i) mask."""
        return kji_to_ras(self.ijk_to_ras, np.argwhere(mask))


def cache_dir() -> Path:
    """``$MOTORBANDSIGN_CACHE`` (or ``~/.cache/motorbandsign``) ``/individual``, created."""
    base = Path(os.environ.get("MOTORBANDSIGN_CACHE", Path.home() / ".cache" / "motorbandsign"))
    d = base / "individual"
    d.mkdir(parents=True, exist_ok=True)
    return d


def kji_to_ras(ijk_to_ras: np.ndarray, kji: np.ndarray) -> np.ndarray:
    """RAS mm of voxel indices given as (N, 3) rows (k, j, i)."""
    kji = np.asarray(kji, dtype=np.float64)
    ijk = kji[:, ::-1]
    return ijk @ np.asarray(ijk_to_ras)[:3, :3].T + np.asarray(ijk_to_ras)[:3, 3]


def region_coordinate(bank_ras: np.ndarray, midline_x: float, other_ras: np.ndarray | None = None):
    """Position 0..1 along the central sulcus, medial-superior (0) to lateral-inferior (1).

    ``bank_ras`` (N, 3): RAS of one hemisphere's bank voxels; ``midline_x``: x of the midline.
    x is mirrored to ``|x - midline_x|``, the first principal axis of the bank is oriented so that
    t decreases with height, and t is normalised between the bank's 1st and 99th percentiles,
    then clipped. Returns ``(t_bank, t_other, axis)``: t of the bank voxels, of ``other_ras``
    (e.g. all pre/postcentral cortex voxels of the same hemisphere; None if not given) and a dict
    describing the axis (unit vector in mirrored space, centre, percentiles) for reports.
    """

    def mirror(p):
        q = np.array(p, dtype=np.float64, copy=True)
        q[:, 0] = np.abs(q[:, 0] - midline_x)
        return q

    b = mirror(bank_ras)
    centre = b.mean(axis=0)
    cov = np.cov((b - centre).T)
    w, v = np.linalg.eigh(cov)
    axis = v[:, np.argmax(w)]
    if axis[2] > 0:  # t must grow downwards (vertex -> Sylvian fissure)
        axis = -axis
    proj = (b - centre) @ axis
    lo, hi = np.percentile(proj, [1, 99])
    scale = max(hi - lo, 1e-6)
    t_bank = np.clip((proj - lo) / scale, 0.0, 1.0)
    t_other = None
    if other_ras is not None and len(other_ras):
        t_other = np.clip(((mirror(other_ras) - centre) @ axis - lo) / scale, 0.0, 1.0)
    desc = {
        "axis_mirrored_ras": [float(a) for a in axis],
        "centre_mirrored_ras": [float(c) for c in centre],
        "p01_mm": float(lo),
        "p99_mm": float(hi),
        "length_mm": float(scale),
    }
    return t_bank, t_other, desc


def region_of(t: np.ndarray) -> np.ndarray:
    """uint8 region code from t: 1 medial (< 0.30), 2 intermediate (0.30..0.62), 3 lateral (> 0.62)."""
    t = np.asarray(t)
    r = np.full(t.shape, 2, dtype=np.uint8)
    r[t < REGION_EDGES[0]] = 1
    r[t > REGION_EDGES[1]] = 3
    return r


def synthetic_t1w(
    gm: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    spacing_mm: float,
    nuclei: dict | None = None,
    fwhm_mm: float = 1.0,
) -> np.ndarray:
    """Noise-free T1w from fractions: WM 1.0, GM 0.6, CSF 0.15 (deep grey slightly brighter:
    pallidum 0.78, thalamus 0.72, putamen/caudate 0.66, as on real T1w), outside 0, smoothed by
    a Gaussian of ``fwhm_mm``."""
    from scipy import ndimage as ndi

    t1 = 1.0 * wm + 0.6 * gm + 0.15 * csf
    if nuclei:
        for key, val in (("pallidum", 0.78), ("thalamus", 0.72), ("putamen", 0.66), ("caudate", 0.66)):
            if key in nuclei:
                t1 = t1 + (val - 0.6) * nuclei[key]
    sigma = fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / spacing_mm
    return ndi.gaussian_filter(t1.astype(np.float32), sigma, mode="constant").astype(np.float32)


# ---------------------------------------------------------------- cache (.npz)
# Fractions are stored as uint8 counts of ``subsamples`` (exact when built as averages of a
# sub-sampled one-hot grid) or, failing that, quantised to 1/250.


def _frac_to_u8(a: np.ndarray, denom: int) -> np.ndarray:
    return np.rint(np.clip(a, 0.0, 1.0) * denom).astype(np.uint8)


def save_npz(brain: LabelledBrain, path: Path, version: str, denom: int = 250) -> None:
    """Write ``brain`` to a compressed .npz (atomically); fractions as uint8 counts of ``denom``."""
    import json
    import tempfile

    path = Path(path)
    arrays = {
        "ijk_to_ras": np.asarray(brain.ijk_to_ras, np.float64),
        "aparc": brain.aparc.astype(np.int16 if brain.aparc.max() < 32767 else np.int32),
        "gm": _frac_to_u8(brain.gm, denom),
        "wm": _frac_to_u8(brain.wm, denom),
        "csf": _frac_to_u8(brain.csf, denom),
        "bank": brain.bank.astype(np.uint8),
        "regions": brain.regions.astype(np.uint8),
        "t1w": brain.t1w.astype(np.float32),
    }
    for k, v in brain.nuclei.items():
        arrays[f"nuc_{k}"] = _frac_to_u8(v, denom)
    meta = {"name": brain.name, "spacing_mm": float(brain.spacing_mm), "info": brain.info,
            "version": version, "denom": int(denom), "nuclei": list(brain.nuclei)}  # fmt: skip
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_npz(path: Path, version: str | None = None) -> LabelledBrain | None:
    """Read a brain written by :func:`save_npz`; None if missing, unreadable or of another version."""
    import json

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if version is not None and meta.get("version") != version:
                return None
            denom = float(meta["denom"])

            def frac(key):
                return (z[key].astype(np.float32) / np.float32(denom)).astype(np.float32)

            return LabelledBrain(
                name=meta["name"],
                ijk_to_ras=z["ijk_to_ras"].astype(np.float64),
                spacing_mm=float(meta["spacing_mm"]),
                aparc=z["aparc"].astype(np.int32),
                gm=frac("gm"),
                wm=frac("wm"),
                csf=frac("csf"),
                nuclei={k: frac(f"nuc_{k}") for k in meta["nuclei"]},
                bank=z["bank"].astype(np.uint8),
                regions=z["regions"].astype(np.uint8),
                t1w=z["t1w"].astype(np.float32),
                info=meta["info"],
            )
    except (OSError, KeyError, ValueError, EOFError):
        return None


def cached(path: Path, version: str, build, denom: int, rebuild: bool = False) -> "LabelledBrain":
    """The brain saved at ``path`` for ``version``, or ``build()`` saved there first."""
    if not rebuild:
        brain = load_npz(path, version)
        if brain is not None:
            return brain
    brain = build()
    save_npz(brain, path, version, denom=denom)
    return brain


# ---------------------------------------------------------------- dispatch

_MODULES = {"clab": "brain_clab", "pycortex_s1": "brain_pycortex"}


def load(name: str) -> LabelledBrain:
    """Load a named individual brain ("clab" or "pycortex_s1"); modules are imported lazily."""
    if name not in _MODULES:
        raise KeyError(f"unknown brain {name!r}; known: {sorted(_MODULES)}")
    pkg = __package__ or "phantoms"
    try:
        mod = importlib.import_module(f"{pkg}.{_MODULES[name]}")
    except ImportError:
        if __package__:
            raise
        mod = importlib.import_module(_MODULES[name])
    return mod.load()
