"""Physics phantoms of the motor band sign on real anatomy, with known truth.

A case is made in four steps, all seeded and deterministic:

1. **Subject anatomy.** The MNI ICBM152 2009a template (tissue probabilities, Harvard-Oxford
   labels, and the template-space model of :mod:`.template_anatomy`: true posterior bank,
   somatotopic regions, veins, frontal sinus) is warped into a random subject: rotation,
   anisotropic scaling and translation, a smooth random B-spline deformation, and a local
   anterior-posterior shift of each central-sulcus region. This matters because the detection
   code registers the *same* template; without the warp, localisation would be perfect for free.
   A head (extracerebral CSF, skull, scalp) is built around the warped brain, air outside.
2. **Susceptibility** (ppm, relative to water/CSF; see :data:`TISSUES` for values and sources):
   tissue mixture + deep-nuclei iron + veins + air/bone + the band (``+delta_chi`` x GM fraction on
   the posterior bank of the chosen hemispheres/region) or diffuse cortical iron (ageing).
3. **Physics** on a scanner-aligned grid with B0 along scanner z (= RAS S of the physics grid):
   field = dipole convolution (:func:`MotorBandSignLib.physics.field_from_chi`, zero padded) of chi
   relative to air (so the air around the head is the infinite medium), minus a second-order shim
   fitted over the brain; signal per tissue compartment = M0 x spoiled-GRE T1 factor x exp(-TE R2*),
   with R2* raised by iron (280 s^-1 per ppm, Langkammer 2010/2012), phase -gamma B0 TE field
   (+ a constant receiver phase), intravoxel dephasing from the field gradient.
4. **Acquisition.** The complex signal is resampled onto the acquisition grid (possibly oblique,
   anisotropic, partial coverage) by trilinear interpolation averaged over sub-samples spanning
   each acquisition voxel (a box slice/voxel profile); complex Gaussian noise; magnitude and
   wrapped phase, in radians or as Siemens integers.

The physics grid has the fixture's voxel size for isotropic fixtures (1.5 mm; 1 mm for the
demo) to keep CI fast: the signal model is voxel-wise with partial-volume tissue fractions, and
intravoxel dephasing is modelled analytically, so a finer grid would mostly add cost. For
anisotropic or oblique acquisitions the physics runs at the smallest voxel dimension and the
complex signal is averaged onto the coarser voxels.

Fixtures (:data:`FIXTURES`, :func:`fixture`): bilateral, left, right, none, diffuse, veins,
left_handed, siemens, oblique (1.2 x 1.2 x 2.5 mm, 18 deg about R-L), partial (top 60 mm),
multiecho (TE 10/20/30 ms); 1.5 mm otherwise. Generation takes 3-12 s each on 2 cores (oblique
the slowest), the 1 mm demo ~25-30 s; all are cached (``templates.cache_dir()/phantoms``).

What the simulation does not do: no fat chemical shift, no coil sensitivity or multi-channel
combination, no flow, no microstructure (WM anisotropy); sulcal CSF is nearly isointense to GM
on the magnitude at TR 28 ms / flip 15 deg (long-T1 CSF is saturated), so the central sulcus shows
through GM/WM geometry rather than as a bright line; the anatomy is the (smooth) 2009a average.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from MotorBandSignLib import physics, templates
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.volume import Volume, grid_from

from .template_anatomy import ANATOMY_VERSION, posterior_bank, template_model

#: Part of every cache key: bump when the simulation changes.
CODE_VERSION = "phantom-10|" + ANATOMY_VERSION

# ------------------------------------------------------------------------------------------------
# Tissue properties at 3 T.  chi: ppm relative to water/CSF (SI).  M0: water proton density
# relative to CSF.  T1 (s), R2* (1/s) at 3 T.
# ------------------------------------------------------------------------------------------------
#: Per-compartment properties.  Sources:
#: - chi WM -0.03, cortical GM +0.01 ppm rel. CSF: Li W et al. 2011 NeuroImage 55:1645;
#:   Wharton & Bowtell 2010 NeuroImage 53:515; Deistung et al. 2013 NeuroImage 65:299.
#: - chi venous blood +0.40 ppm rel. tissue/water (deoxygenated, Hct ~0.42, Y ~0.6):
#:   Weisskoff & Kiihne 1992 MRM 24:375; Jain et al. 2012 MRM 68:863 (0.3-0.45 ppm).
#: - chi cortical bone -2.0 ppm rel. water: Hopkins & Wehrli 1997 MRM 37:494.
#: - chi air +9.4 ppm rel. water: Schenck 1996 Med Phys 23:815.
#: - M0 GM 0.80, WM 0.69 (water content): Neeb et al. 2006 NeuroImage 31:1156; CSF 1.0 (water);
#:   venous blood 0.87: Herscovitch & Raichle 1985 JCBFM 5:65; scalp 0.75 (assumed: soft tissue
#:   is ~70-80 % water); skull 0.05 (cortical bone: little mobile water, T2* < 1 ms, Reichert
#:   et al. 2005 MRI 23:611; the residual stands for diploe marrow).
#: - T1 at 3 T: GM 1.82 s, WM 1.084 s: Stanisz et al. 2005 MRM 54:507; CSF 4.16 s: Lu et al.
#:   2005 JMRI 22:13 (approximately); venous blood 1.65 s: Lu et al. 2004 MRM 52:679; scalp 1.0 s
#:   (assumed mixture of muscle ~1.4 s at 3 T, Stanisz 2005, and fat, a few hundred ms); skull
#:   0.3 s (assumed, marrow fat; it hardly matters at M0 0.05).
#: - R2* at 3 T: cortical GM 19.3 /s (T2* 51.8 ms), frontal WM 22.4 /s (T2* 44.7 ms): Peters et
#:   al. 2007 MRI 25:748 (approximate readings of its 3 T table); CSF 2 /s (T2 of order 1-2 s at
#:   3 T: Piechnik et al. 2009 MRM 61:579; T2* a little shorter); venous blood 50 /s (Y ~0.6,
#:   Hct ~0.42: Blockley et al. 2008 MRM 60:1313); scalp 30 /s (assumed order of magnitude for
#:   muscle/skin; only shapes the scalp ring, outside every analysis); skull 1000 /s (T2* < 1 ms:
#:   Reichert 2005).
TISSUES = {
    #           chi     M0     T1     R2*
    "gm":    (0.01,  0.80,  1.820,  19.3),
    "wm":    (-0.03, 0.69,  1.084,  22.4),
    "csf":   (0.0,   1.00,  4.16,   2.0),
    "vein":  (0.40,  0.87,  1.65,   50.0),
    "scalp": (0.0,   0.75,  1.00,   30.0),
    "skull": (-2.0,  0.05,  0.30,   1000.0),
}
#: Susceptibility of air relative to water (ppm), Schenck 1996 Med Phys 23:815.
CHI_AIR = 9.4
#: Iron susceptibility of the deep grey nuclei above cortical GM (ppm, rel. CSF totals 0.05,
#: 0.06, 0.15, 0.01 minus GM's 0.01): Langkammer et al. 2012 NeuroImage 62:1593 and Deistung
#: et al. 2013 NeuroImage 65:299 (caudate ~0.05, putamen ~0.04-0.08, pallidum ~0.12-0.20,
#: thalamus ~0.0-0.02 ppm).
NUCLEI_IRON_PPM = {"caudate": 0.04, "putamen": 0.05, "pallidum": 0.14, "thalamus": 0.00}
#: Extra R2* per ppm of iron-driven susceptibility: 0.27 /s per ug Fe/g (Langkammer et al. 2010,
#: Radiology 257:455) / 0.00097 ppm per ug Fe/g (Langkammer et al. 2012) ~ 280 /s per ppm.
R2S_PER_PPM_IRON = 0.27 / 0.00097
#: Spoiled GRE (SWI) timing: TR 28 ms, flip 15 deg at 3 T (Haacke et al. 2009, AJNR 30:19).
TR_S = 0.028
FLIP_DEG = 15.0
#: Head shells outside the brain mask (mm): extracerebral CSF ~2.5 mm, skull ~6.5 mm (adult
#: calvarial thickness ~5-8 mm: Lynnerup 2001, Forensic Sci Int 117:45), scalp ~5 mm (assumed
#: typical adult value; it only shapes the background field far from the cortex).
CSF_SHELL_MM, SKULL_SHELL_MM, SCALP_SHELL_MM = 2.5, 9.0, 14.0
#: Zero padding (mm) added around the physics grid for the dipole convolution.
PAD_MM = 64.0

BAND_CHOICES = ("bilateral", "left", "right", "none")
REGION_CHOICES = (None, "medial", "intermediate", "lateral")
REGION_CODES = {"medial": 1, "intermediate": 2, "lateral": 3}


class ConfigMixin:
    """What the phantom configs share: echo times, a JSON form and a cache hash."""

    @property
    def echo_times(self) -> tuple:
        return tuple(float(t) for t in np.atleast_1d(self.te_s))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = [float(x) for x in v]
        return d

    def hash_with(self, code_version: str) -> str:
        """SHA-1 (16 hex digits) of the config's JSON and ``code_version``."""
        d = self.to_dict()
        for k in getattr(self, "HASH_OMIT_IF_NONE", ()):
            if d.get(k) is None:        # a setting added later: unset, the earlier cases keep their keys
                d.pop(k, None)
        s = json.dumps(d, sort_keys=True) + code_version
        return hashlib.sha1(s.encode()).hexdigest()[:16]


def save_volumes_npz(path, volumes: dict, info: dict) -> None:
    """Volumes (name -> Volume) and a JSON-serialisable ``info`` in one .npz (atomic)."""
    data = {}
    for n, v in volumes.items():
        data[f"{n}__array"] = v.array
        data[f"{n}__affine"] = v.ijk_to_ras
        data[f"{n}__meta"] = np.array(json.dumps({"name": v.name, "meta": v.meta}))
    data["case__json"] = np.array(json.dumps(info))
    _write_npz_fast(Path(path), data)


def load_volumes_npz(path, names) -> tuple:
    """(name -> Volume, info) from :func:`save_volumes_npz`."""
    with np.load(path, allow_pickle=False) as z:
        vols = {}
        for n in names:
            m = json.loads(str(z[f"{n}__meta"]))
            vols[n] = Volume(z[f"{n}__array"], z[f"{n}__affine"], m["name"], m["meta"])
        info = json.loads(str(z["case__json"]))
    return vols, info


@dataclass
class PhantomConfig(ConfigMixin):
    """Everything that defines a case; the same config and seed give the same case bit for bit."""

    seed: int = 0
    band: str = "bilateral"                 # bilateral | left | right | none
    band_region: str | None = None          # None | medial | intermediate | lateral
    delta_chi_ppm: float = 0.08             # band susceptibility above normal cortex (ppm)
    diffuse_ppm: float = 0.0                # ageing: iron on all cortical GM instead of a band
    veins_in_central_sulcus: bool = False
    voxel_mm: tuple = (1.0, 1.0, 1.0)       # acquisition voxel (i, j, k)
    oblique_deg: float = 0.0                # acquisition grid rotated about the R-L axis
    field_strength_t: float = 3.0
    te_s: float | tuple = 0.020             # one TE or a tuple (multi-echo -> 4D, echoes first)
    snr: float = 40.0                       # peak SNR: sigma = max|S| / snr per real/imag channel
    handedness: str = "right"
    phase_units: str = "radians"            # radians | siemens (-4096..4094, as dcm2niix writes)
    coverage_top_mm: float | None = None    # only the top N mm of the brain (a typical SWI slab)
    warp: bool = True
    deform_mm: float = 3.5                  # RMS amplitude of the random smooth deformation
    scale_range: tuple = (0.92, 1.08)       # per-axis scale range
    rotation_deg: float = 8.0               # max |rotation| about each axis
    translation_mm: float = 5.0             # max |translation| along each axis
    sulcus_shift_mm: float = 3.0            # max local A-P shift of each central-sulcus region
    phase_offset: bool = True               # a random constant receiver phase
    physics_mm: float | None = None         # physics grid spacing; default min(voxel_mm)

    def validate(self) -> None:
        if self.band not in BAND_CHOICES:
            raise InputError(f"band must be one of {BAND_CHOICES}, got {self.band!r}")
        if self.band_region not in REGION_CHOICES:
            raise InputError(f"band_region must be one of {REGION_CHOICES}, got {self.band_region!r}")
        if self.handedness not in ("right", "left"):
            raise InputError(f"handedness must be 'right' or 'left', got {self.handedness!r}")
        if self.phase_units not in ("radians", "siemens"):
            raise InputError(f"phase_units must be 'radians' or 'siemens', got {self.phase_units!r}")
        if len(tuple(self.voxel_mm)) != 3 or min(self.voxel_mm) <= 0:
            raise InputError(f"voxel_mm must be three positive sizes (i, j, k), got {self.voxel_mm!r}")
        if self.snr <= 0:
            raise InputError(f"snr must be positive, got {self.snr}")

    def key(self) -> str:
        """A hash of the config and :data:`CODE_VERSION` (cache key)."""
        return self.hash_with(CODE_VERSION)


@dataclass
class Case:
    """A simulated acquisition and its truth (all Volumes on the acquisition grid, RAS)."""

    magnitude: Volume            # float32, (k, j, i) or (echo, k, j, i)
    phase: Volume                # float32 radians, or Siemens integers stored as float32
    truth: Volume                # uint8: 1 left, 2 right posterior bank (where the band is or would be)
    truth_regions: Volume        # uint8 on truth voxels: 1 medial, 2 intermediate (hand), 3 lateral
    anatomy: Volume              # uint8 templates.REGION_LABELS warped into the subject
    chi: Volume                  # float32 ppm relative to water/CSF
    band: Volume                 # uint8: truth voxels whose susceptibility was raised (1 L, 2 R)
    gm: Volume                   # float32 subject grey-matter probability (warped template)
    brain_mask: Volume           # uint8 subject brain mask (warped template)
    expected_pattern: str        # bilateral | left | right | absent
    nonspecific_diffuse: bool    # True for diffuse (ageing) cortical iron
    params: dict                 # JSON-serialisable: config, transform, physics facts
    config: PhantomConfig = None

    @property
    def echo_times(self) -> tuple:
        return tuple(self.params["config"]["te_s"]) if isinstance(self.params["config"]["te_s"], list) \
            else (self.params["config"]["te_s"],)

    VOLUMES = ("magnitude", "phase", "truth", "truth_regions", "anatomy", "chi", "band", "gm", "brain_mask")


# ------------------------------------------------------------------------------------------------
# Subject warp
# ------------------------------------------------------------------------------------------------
def _rotation(angles_deg) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class SubjectWarp:
    """Maps subject (scanner RAS) points to template RAS points: q = A(p) + d_smooth + d_sulcus.

    ``A`` inverts template->subject rotation R, scaling S and translation t about the template
    brain centre c: subject p = c + R S (q - c) + t. ``d_smooth`` is a cubic B-spline deformation
    on control points every :data:`CONTROL_SPACING_MM` with random coefficients (RMS
    ``deform_mm``); ``d_sulcus`` shifts each hemisphere's central-sulcus region along y by a
    random amount (up to ``sulcus_shift_mm``), weighted by a Gaussian of the distance to that
    sulcus (sigma :data:`SULCUS_SIGMA_MM`).
    """

    CONTROL_SPACING_MM = 30.0
    SULCUS_SIGMA_MM = 10.0

    def __init__(self, cfg: PhantomConfig, centre: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        rng = np.random.default_rng([int(cfg.seed), 1])
        self.centre = np.asarray(centre, float)
        if cfg.warp:
            self.angles = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, 3)
            self.scales = rng.uniform(cfg.scale_range[0], cfg.scale_range[1], 3)
            self.translation = rng.uniform(-cfg.translation_mm, cfg.translation_mm, 3)
        else:
            self.angles, self.scales, self.translation = np.zeros(3), np.ones(3), np.zeros(3)
        self.forward = _rotation(self.angles) @ np.diag(self.scales)   # template -> subject linear part
        self.inverse = np.linalg.inv(self.forward)
        # B-spline control grid over the template brain box (+2 control points of margin)
        self.grid_lo = np.asarray(lo, float) - 2 * self.CONTROL_SPACING_MM
        n = np.ceil((np.asarray(hi, float) + 2 * self.CONTROL_SPACING_MM - self.grid_lo) / self.CONTROL_SPACING_MM).astype(int) + 1
        coef = rng.standard_normal((3,) + tuple(n))
        rms = np.sqrt(np.mean(np.sum(coef ** 2, axis=0)))
        self.coef = (coef * (cfg.deform_mm / rms if cfg.warp and cfg.deform_mm > 0 else 0.0)).astype(np.float64)
        if cfg.warp and cfg.sulcus_shift_mm > 0:
            mag = rng.uniform(0.5, 1.0, 2) * cfg.sulcus_shift_mm
            self.sulcus_shift = mag * rng.choice([-1.0, 1.0], 2)
        else:
            self.sulcus_shift = np.zeros(2)

    def params(self) -> dict:
        return {
            "rotation_deg_xyz": self.angles.round(4).tolist(), "scale_xyz": self.scales.round(5).tolist(),
            "translation_mm": self.translation.round(4).tolist(), "centre_ras": self.centre.round(3).tolist(),
            "bspline_spacing_mm": self.CONTROL_SPACING_MM,
            "bspline_coef_rms_mm": float(np.sqrt(np.mean(np.sum(self.coef ** 2, axis=0)))),
            "sulcus_shift_y_mm_left_right": self.sulcus_shift.round(4).tolist(),
            "sulcus_sigma_mm": self.SULCUS_SIGMA_MM,
            "convention": "template q = c + inv(R S)(p - t - c) + d_bspline(q0) + d_sulcus(q0), p subject RAS",
        }

    def affine_4x4(self) -> np.ndarray:
        """Subject RAS -> template RAS (before the deformations), 4x4."""
        m = np.eye(4)
        m[:3, :3] = self.inverse
        m[:3, 3] = self.centre - self.inverse @ (self.translation + self.centre)
        return m

    def displacement(self, q0: np.ndarray, model: dict, tmpl: Volume) -> np.ndarray:
        """Deformation (mm, RAS) added to the affine template points q0 (n, 3)."""
        d = np.zeros_like(q0)
        if np.any(self.coef):
            g = ((q0 - self.grid_lo) / self.CONTROL_SPACING_MM).T
            for a in range(3):
                d[:, a] = ndimage.map_coordinates(self.coef[a], g, order=3, mode="nearest", prefilter=False)
        if np.any(self.sulcus_shift):
            kji = _ras_to_kji(tmpl, q0)
            for h in range(2):
                dist = ndimage.map_coordinates(np.asarray(model["cs_dist"][h], np.float32), kji, order=1, mode="nearest")
                d[:, 1] += self.sulcus_shift[h] * np.exp(-0.5 * (dist / self.SULCUS_SIGMA_MM) ** 2)
        return d

    def template_coords(self, ijk_to_ras, shape, model: dict, tmpl: Volume, step_mm: float = 3.0) -> np.ndarray:
        """Template voxel coordinates (3, k, j, i) of every voxel of a target grid.

        The affine part is exact; the smooth deformations are evaluated on a lattice every
        ~``step_mm`` and interpolated linearly (their length scales are 10-30 mm).
        """
        ijk_to_ras = np.asarray(ijk_to_ras, float)
        T = tmpl.ras_to_ijk @ self.affine_4x4() @ ijk_to_ras          # target ijk -> template ijk
        sub = max(1, int(round(step_mm / float(np.linalg.norm(ijk_to_ras[:3, :3], axis=0).min()))))
        nc = [int(np.ceil((s - 1) / sub)) + 1 for s in shape]         # coarse (k, j, i)
        ck, cj, ci = np.meshgrid(*[np.arange(m, dtype=np.float64) * sub for m in nc], indexing="ij")
        cijk = np.stack([ci.ravel(), cj.ravel(), ck.ravel()], axis=1)
        q0 = cijk @ (self.affine_4x4() @ ijk_to_ras)[:3, :3].T + (self.affine_4x4() @ ijk_to_ras)[:3, 3]
        dv = self.displacement(q0, model, tmpl) @ tmpl.ras_to_ijk[:3, :3].T   # template voxel units (i, j, k)
        dv = dv.T.reshape((3,) + tuple(nc)).astype(np.float32)
        kk, jj, ii = (np.arange(s, dtype=np.float32) for s in shape)
        out = np.empty((3,) + tuple(shape), np.float32)
        fine = None
        if np.any(dv):
            fine = np.stack(np.meshgrid(kk / sub, jj / sub, ii / sub, indexing="ij"))
        for c in range(3):           # template i, j, k -> stored as kji order (2 - c)
            v = (T[c, 0] * ii[None, None, :] + T[c, 1] * jj[None, :, None] + T[c, 2] * kk[:, None, None] + T[c, 3])
            if fine is not None:
                v = v + ndimage.map_coordinates(dv[c], fine.reshape(3, -1), order=1, mode="nearest").reshape(shape)
            out[2 - c] = v
        return out


def M_spacing_kji(m) -> tuple:
    """Voxel size (mm) along the array axes (k, j, i) of an IJK-to-RAS matrix."""
    return tuple(float(x) for x in np.linalg.norm(np.asarray(m)[:3, :3], axis=0)[::-1])


def _ras_to_kji(vol: Volume, pts: np.ndarray) -> np.ndarray:
    """(3, n) array coordinates (k, j, i) in ``vol`` of RAS points (n, 3)."""
    m = vol.ras_to_ijk
    return (pts @ m[:3, :3].T + m[:3, 3])[:, ::-1].T.copy()


class _Sampler:
    """Samples template arrays at template coordinates, skipping points far from the brain."""

    def __init__(self, coords, tmpl_shape, lo_kji, hi_kji):
        self.shape = coords.shape[1:]
        inside = np.ones(self.shape, bool)
        for a in range(3):
            inside &= (coords[a] >= lo_kji[a] - 3) & (coords[a] <= hi_kji[a] + 3)
        self.inside = inside
        self.pts = coords[:, inside]

    def __call__(self, arr, order=1, dtype=np.float32):
        out = np.zeros(self.shape, dtype)
        if self.pts.shape[1]:
            out[self.inside] = ndimage.map_coordinates(arr, self.pts, order=order, mode="constant", cval=0,
                                                       prefilter=False)
        return out


# ------------------------------------------------------------------------------------------------
# Physics helpers
# ------------------------------------------------------------------------------------------------
def forward_phase(chi_ppm, spacing_kji, te_s, b0_t=3.0, handedness="right", pad=None) -> np.ndarray:
    """Unwrapped phase (rad) of a chi map (ppm) on an axis-aligned grid with B0 along axis k."""
    field = physics.field_from_chi(chi_ppm, spacing_kji, b0_direction=(1.0, 0.0, 0.0), pad=pad)
    return physics.phase_from_field(field, te_s, b0_t, handedness)


def flip_of(cfg) -> float:
    """The config's flip angle (deg): its ``flip_deg`` when it has one set, else :data:`FLIP_DEG`."""
    flip = getattr(cfg, "flip_deg", None)
    return FLIP_DEG if flip is None else float(flip)


def _spgr(m0, t1, tr, flip_deg):
    """Spoiled-GRE steady state factor (Ernst): M0 sin a (1 - E1) / (1 - cos a E1)."""
    a = np.radians(flip_deg)
    e1 = np.exp(-tr / t1)
    return m0 * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)


def _shim(field, mask, coords):
    """Remove the least-squares 0th-2nd order spherical-harmonic-like polynomial over ``mask``
    (a scanner's second-order shim; Koch et al. 2009, Prog Nucl Magn Reson Spectrosc 54:69)."""
    x, y, z = coords
    idx = np.flatnonzero(mask.ravel())[::7]
    cols = lambda X, Y, Z: [np.ones_like(X), X, Y, Z, X * Y, X * Z, Y * Z, X * X - Y * Y, 2 * Z * Z - X * X - Y * Y]
    xs, ys, zs = (c.ravel()[idx] / 100.0 for c in (x, y, z))
    A = np.stack(cols(xs, ys, zs), axis=1)
    coef, *_ = np.linalg.lstsq(A, field.ravel()[idx].astype(np.float64), rcond=None)
    fit = np.zeros(field.shape, np.float64)
    for c, term in zip(coef, cols(x / 100.0, y / 100.0, z / 100.0)):
        fit = fit + c * term
    return (field - fit).astype(np.float32), coef


def _head_compartments(brain, gm, wm, p) -> dict:
    """Tissue fractions of brain and head on the physics grid.

    Inside the brain mask: GM, WM and CSF = 1 - GM - WM (template probabilities). Outside:
    extracerebral CSF within :data:`CSF_SHELL_MM` of the brain; the head envelope is the brain
    mask's convex hull in each axial slice (so bone spans the gaps between temporal lobes,
    brainstem and cerebellum as the skull base does, instead of air wrapping each lobe);
    non-brain tissue inside the envelope is bone (skull base); then skull up to
    :data:`SKULL_SHELL_MM` and scalp up to :data:`SCALP_SHELL_MM` from the brain, measured
    outwards from the envelope.
    """
    sp = (p, p, p)
    outside = ndimage.distance_transform_edt(~brain, sampling=sp).astype(np.float32)
    shell_csf = (~brain) & (outside <= CSF_SHELL_MM)
    del outside
    # head envelope: the convex hull of brain + CSF in each axial slice (the skull base and
    # the bone between temporal lobes, brainstem and cerebellum, not air around each lobe)
    from skimage.morphology import convex_hull_image

    core = brain | shell_csf
    env = np.zeros_like(core)
    for k in np.flatnonzero(core.any(axis=(1, 2))):
        env[k] = convex_hull_image(core[k])
    env |= core
    out_e = ndimage.distance_transform_edt(~env, sampling=sp).astype(np.float32)
    bone = (env & ~brain & ~shell_csf) | ((~env) & (out_e <= SKULL_SHELL_MM - CSF_SHELL_MM))
    scalp = (~env) & (out_e > SKULL_SHELL_MM - CSF_SHELL_MM) & (out_e <= SCALP_SHELL_MM - CSF_SHELL_MM)
    del out_e, env
    inside = brain.astype(np.float32)
    gm = gm * inside
    wm = wm * inside
    return {
        "gm": gm, "wm": wm,
        "csf": np.clip(inside - gm - wm, 0, 1) + shell_csf.astype(np.float32),
        "skull": bone.astype(np.float32), "scalp": scalp.astype(np.float32),
    }


# ------------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------------
def _write_npz_fast(path: Path, data: dict) -> None:
    """Write an .npz with fast deflate (level 1), atomically (temp file, then rename).

    np.savez_compressed's level 6 costs ~10 s on the 1 mm demo for little gain on noisy floats.
    """
    import zipfile

    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, arr in data.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=1)
def _template_inputs():
    """Template arrays the generator samples (float32/uint8 on the 2009a grid), built once and
    cached on disk in one file (loading the separate NIfTI/npz sources takes ~10 s)."""
    key = hashlib.sha1(f"{ANATOMY_VERSION}|{sorted(NUCLEI_IRON_PPM.items())}|inputs-1".encode()).hexdigest()[:12]
    path = templates.cache_dir() / "phantoms" / f"template-inputs-{key}.npz"
    tmpl_geom = None
    if path.exists():
        try:
            with np.load(path) as z:
                d = {k: z[k] for k in z.files}
            tmpl_geom = Volume(np.zeros((1, 1, 1), np.uint8), d.pop("ijk_to_ras"), "MNI152 2009a")
        except Exception:
            tmpl_geom = None
    if tmpl_geom is None:
        tmpl = templates.mni_t1()
        ho = templates.harvard_oxford_probabilities()
        iron = np.zeros(tmpl.shape, np.float32)
        nuc_any = np.zeros(tmpl.shape, np.float32)
        for n, ppm in NUCLEI_IRON_PPM.items():
            prob = np.maximum(ho[f"{n}_left"], ho[f"{n}_right"]) / 100.0
            iron += ppm * prob
            nuc_any = np.maximum(nuc_any, prob)
        model = template_model()
        d = {
            "gm": templates.mni_gm().array, "wm": templates.mni_wm().array,
            "brain": templates.mni_brain_mask().array, "labels": templates.region_labels().array,
            "nuclei_iron": iron, "nuclei_any": nuc_any,
            "veins": model["veins"].astype(np.float32), "cs_vein": model["cs_vein"].astype(np.float32),
            "regions": model["regions"], "sinus": model["sinus"], "cs_dist": model["cs_dist"],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_npz_fast(path, dict(d, ijk_to_ras=tmpl.ijk_to_ras))
        tmpl_geom = Volume(np.zeros((1, 1, 1), np.uint8), tmpl.ijk_to_ras, "MNI152 2009a")
    shape = d["gm"].shape

    tmpl = Volume(np.broadcast_to(np.uint8(0), shape), tmpl_geom.ijk_to_ras, "MNI152 2009a")
    idx = np.argwhere(d["brain"] > 0)
    d.update({
        "tmpl": tmpl, "lo_kji": idx.min(0), "hi_kji": idx.max(0),
        "lo_ras": tmpl.ras_of_ijk(idx.min(0)[::-1]), "hi_ras": tmpl.ras_of_ijk(idx.max(0)[::-1]),
        "brain_pts": tmpl.ras_of_ijk(idx[::97, ::-1]),
        "model": {"cs_dist": d["cs_dist"].astype(np.float32), "regions": d["regions"], "sinus": d["sinus"]},
    })
    return d


def _acquisition_grid(cfg, brain_pts_ras, phys_A):
    """Acquisition IJK-to-RAS and shape covering the brain (+15 mm) in the oblique frame.

    Without obliquity and with the physics voxel size, the grid is a sub-lattice of the physics
    grid (returned offset in voxels), so no resampling is needed.
    """
    th = np.radians(cfg.oblique_deg)
    d = np.array([[1, 0, 0], [0, np.cos(th), -np.sin(th)], [0, np.sin(th), np.cos(th)]])  # about R-L
    sp = np.asarray(cfg.voxel_mm, float)
    local = brain_pts_ras @ d          # coordinates along the acquisition axes
    lo = local.min(0) - 15.0
    hi = local.max(0) + 15.0
    if cfg.coverage_top_mm is not None:
        lo[2] = local[:, 2].max() - float(cfg.coverage_top_mm)
    p = phys_A[0, 0]
    aligned = cfg.oblique_deg == 0 and np.allclose(sp, p)
    if aligned:  # snap to the physics lattice
        off = np.floor((lo - phys_A[:3, 3]) / p)
        off = np.maximum(off, 0)
        lo = phys_A[:3, 3] + off * p
    n = np.floor((hi - lo) / sp).astype(int) + 1
    m = np.eye(4)
    m[:3, :3] = d * sp
    m[:3, 3] = d @ lo
    offset = tuple(int(x) for x in off[::-1]) if aligned else None
    return m, (int(n[2]), int(n[1]), int(n[0])), offset


def tissue_signals(frac: dict, iron_gm, iron_wm, field, p: float, cfg, phase0: float, r2s_gm_scale=None) -> tuple:
    """Complex GRE signal per echo on the physics grid from tissue fractions and the field.

    Signal per compartment = M0 x spoiled-GRE T1 factor x exp(-TE R2*), R2* raised by iron
    (:data:`R2S_PER_PPM_IRON`); intravoxel dephasing in the local field gradient (Fernandez-Seara
    & Wehrli 2000, MRM 44:358); phase = sign x gamma B0 TE field + ``phase0``.
    ``r2s_gm_scale`` (optional array) scales grey matter's R2* voxel by voxel (cortical texture).
    Returns (signals: list of complex64 arrays, tr_s).
    """
    tes = cfg.echo_times
    tr = max(TR_S, max(tes) + 0.008)
    flip = flip_of(cfg)
    gyro = 2 * np.pi * physics.GAMMA_BAR_HZ_PER_T * cfg.field_strength_t * 1e-6  # rad/s per ppm
    sign = -1.0 if cfg.handedness == "right" else 1.0
    grads = np.gradient(field, p)  # ppm/mm along k, j, i
    signals = []
    for te in tes:
        mag = np.zeros(field.shape, np.float32)
        for k, fr in frac.items():
            _, m0, t1, r2s = TISSUES[k]
            r2 = np.float32(r2s)
            if k == "gm":
                if r2s_gm_scale is not None:
                    r2 = r2 * r2s_gm_scale
                r2 = r2 + np.float32(R2S_PER_PPM_IRON) * iron_gm
            elif k == "wm":
                r2 = r2 + np.float32(R2S_PER_PPM_IRON) * iron_wm
            mag += fr * np.float32(_spgr(m0, t1, tr, flip)) * np.exp(np.float32(-te) * r2)
        for g_ in grads:
            mag *= np.abs(np.sinc(np.float32(gyro * te * p / (2 * np.pi)) * g_))
        ph = np.float32(sign * gyro * te) * field + np.float32(phase0)
        signals.append((mag * np.exp(1j * ph)).astype(np.complex64))
        del mag, ph
    return signals, tr


def resample_signals(signals, A, M, ashape, voxel_mm, p) -> tuple:
    """Complex signals from the physics grid (IJK-to-RAS ``A``) onto the acquisition grid ``M``:
    trilinear, averaged over sub-samples spanning each acquisition voxel (a box profile).
    Returns (list of complex64 arrays of shape ``ashape``, sub-samples per axis)."""
    nsub = [max(1, int(round(sz / p))) for sz in voxel_mm]
    offs = [((np.arange(m) + 0.5) / m - 0.5) for m in nsub]
    kk, jj, ii = np.meshgrid(*[np.arange(s_, dtype=np.float64) for s_ in ashape], indexing="ij")
    base = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
    del kk, jj, ii
    P2 = np.linalg.inv(A) @ M  # acquisition ijk -> physics ijk
    out = [np.zeros(len(base), np.complex64) for _ in signals]
    for oi in offs[0]:
        for oj in offs[1]:
            for ok in offs[2]:
                kj = ((base + (oi, oj, ok)) @ P2[:3, :3].T + P2[:3, 3])[:, ::-1].T
                for acc, s_ in zip(out, signals):
                    re = ndimage.map_coordinates(s_.real, kj, order=1, mode="constant", cval=0.0)
                    im = ndimage.map_coordinates(s_.imag, kj, order=1, mode="constant", cval=0.0)
                    acc += re + 1j * im
    nn = len(offs[0]) * len(offs[1]) * len(offs[2])
    return [(acc / nn).reshape(ashape).astype(np.complex64) for acc in out], nsub


def noisy_images(acq_signals, cfg, rng) -> tuple:
    """Complex Gaussian noise (sigma = peak |S| / snr per channel), magnitude scaled to a
    noise-free peak of 1000, wrapped phase (radians, or Siemens integers -4096..4094 as dcm2niix
    writes them). Returns (magnitude, phase, sigma, scale); 4D (echoes first) for multi-echo."""
    peak = max(float(np.abs(s_).max()) for s_ in acq_signals)
    sigma = peak / float(cfg.snr)
    scale = np.float32(1000.0 / peak)
    mags, phs = [], []
    for s_ in acq_signals:
        noise = rng.standard_normal(s_.shape, dtype=np.float32) + 1j * rng.standard_normal(s_.shape, dtype=np.float32)
        z = s_ + np.complex64(sigma) * noise.astype(np.complex64)
        mags.append(np.abs(z).astype(np.float32) * scale)
        phs.append(np.angle(z).astype(np.float32))
    mag_arr = np.stack(mags) if len(acq_signals) > 1 else mags[0]
    ph_arr = np.stack(phs) if len(acq_signals) > 1 else phs[0]
    if cfg.phase_units == "siemens":
        # 12-bit raw 0..4095 spanning [-pi, pi); dcm2niix applies slope 2, intercept -4096
        raw = np.clip(np.floor((ph_arr + np.pi) / (2 * np.pi) * 4096.0), 0, 4095)
        ph_arr = (2.0 * raw - 4096.0).astype(np.float32)
    return mag_arr, ph_arr, sigma, scale


def truth_counts(truth, band, truth_regions) -> dict:
    """Voxel counts of the truth and the band per hemisphere, and of the band per hemisphere and
    somatotopic region (for regional scores)."""
    return {
        "truth_voxels": {"left": int((truth == 1).sum()), "right": int((truth == 2).sum())},
        "band_voxels": {"left": int((band == 1).sum()), "right": int((band == 2).sum())},
        "band_regions": {side: {rname: int(((band == h) & (truth_regions == code)).sum())
                                for rname, code in REGION_CODES.items()}
                         for h, side in ((1, "left"), (2, "right"))},
    }


def image_meta(cfg) -> dict:
    """What a simulated magnitude / phase carries: echo times, field, handedness, B0 direction."""
    return {"echo_times_s": list(cfg.echo_times), "field_strength_t": cfg.field_strength_t,
            "handedness": cfg.handedness, "b0_direction_ras": [0.0, 0.0, 1.0]}


def generate_case(config: PhantomConfig | None = None, progress=None) -> Case:
    """Simulate one case (see module docstring). ``progress(fraction, message)`` is optional."""
    cfg = config or PhantomConfig()
    cfg.validate()
    say = progress or (lambda f, m: None)
    times = {}
    t0 = time.perf_counter()

    def lap(name):
        times[name] = round(time.perf_counter() - t0 - sum(times.values()), 3)

    T = _template_inputs()
    tmpl, model = T["tmpl"], T["model"]
    centre = (T["lo_ras"] + T["hi_ras"]) / 2
    warp = SubjectWarp(cfg, centre, T["lo_ras"], T["hi_ras"])
    lap("templates_s")

    # ---- physics grid: axis-aligned (B0 along k = RAS S), the warped head with air around ---
    p = float(cfg.physics_mm or min(cfg.voxel_mm))
    say(0.05, "warping the template into the subject")
    # the head only (the dipole convolution zero-pads, and zero relative to air is air): the
    # template brain mapped forward, plus the deformations' reach and the head shells; grown
    # if the warped brain comes closer to the edge than the head shells need
    fwd = (T["brain_pts"] - centre) @ warp.forward.T + centre + warp.translation
    reach = SCALP_SHELL_MM + 2.0 + (1.5 * cfg.deform_mm + abs(cfg.sulcus_shift_mm)) * bool(cfg.warp)
    for _attempt in range(4):
        lo_p, hi_p = fwd.min(0) - reach, fwd.max(0) + reach
        n = np.ceil((hi_p - lo_p) / p).astype(int) + 1
        shape = (int(n[2]), int(n[1]), int(n[0]))
        A = grid_from(shape, (p, p, p), np.eye(3), lo_p)
        coords = warp.template_coords(A, shape, model, tmpl)
        S = _Sampler(coords, tmpl.shape, T["lo_kji"], T["hi_kji"])
        brain = S(T["brain"], 0, np.uint8) > 0
        edge = int(np.ceil((SCALP_SHELL_MM + 1.0) / p))
        bidx = np.argwhere(brain)
        if bidx.size and bidx.min() >= edge and np.all(bidx.max(0) < np.array(shape) - edge):
            break
        reach += 10.0
    del coords
    gm = np.clip(S(T["gm"]), 0, 1)
    wm = np.clip(S(T["wm"]), 0, 1)
    v = np.clip(S(T["veins"]), 0, 1)
    if cfg.veins_in_central_sulcus:
        v = np.maximum(v, np.clip(S(T["cs_vein"]), 0, 1))
    sinus = S(model["sinus"], 0, np.uint8) > 0
    regions_p = S(model["regions"], 0, np.uint8)
    labels_p = S(T["labels"], 0, np.uint8)
    nuc_iron = np.clip(S(T["nuclei_iron"]), 0, None)
    nuc_any = np.clip(S(T["nuclei_any"]), 0, 1)
    del S
    # the true posterior bank on the subject's own warped anatomy, at the physics resolution
    truth_p, _, _ = posterior_bank(labels_p, gm, wm, brain, (p, p, p))
    bandfrac = ((truth_p == 1).astype(np.float32), (truth_p == 2).astype(np.float32))
    lap("warp_s")

    # ---- compartments and susceptibility -----------------------------------------------------
    say(0.3, "susceptibility")
    frac = _head_compartments(brain, gm, wm, p)
    for k in frac:
        frac[k] = (frac[k] * (1.0 - v)).astype(np.float32)
        frac[k][sinus] = 0.0
    v[sinus] = 0.0
    frac["vein"] = v

    # iron-driven susceptibility (ppm above the compartment's own value)
    sides = {"bilateral": (0, 1), "left": (0,), "right": (1,), "none": ()}[cfg.band]
    band_sel = np.zeros(shape, np.float32)
    for h in sides:
        sel = bandfrac[h]
        if cfg.band_region is not None:
            sel = sel * (regions_p == REGION_CODES[cfg.band_region])
        band_sel = np.maximum(band_sel, sel)
    iron_gm = nuc_iron + np.float32(cfg.delta_chi_ppm) * band_sel
    if cfg.diffuse_ppm:
        iron_gm += np.float32(cfg.diffuse_ppm) * (1.0 - nuc_any)   # all cortex outside the nuclei
    iron_wm = nuc_iron
    del band_sel, bandfrac, nuc_any, wm

    chi = np.zeros(shape, np.float32)
    for k, fr in frac.items():
        chi += np.float32(TISSUES[k][0]) * fr
    chi += iron_gm * frac["gm"] + iron_wm * frac["wm"]
    air = np.clip(1.0 - sum(frac.values()), 0, 1)
    chi += np.float32(CHI_AIR) * air
    del air
    lap("tissue_s")

    # ---- field (chi relative to air: the surrounding air is the infinite medium) and shim --
    say(0.45, "dipole field")
    pad = int(round(PAD_MM / p))
    field = physics.field_from_chi(chi - np.float32(CHI_AIR), (p, p, p), b0_direction=(1.0, 0.0, 0.0), pad=pad)
    kk, jj, ii = np.meshgrid(*[np.arange(s_, dtype=np.float32) * p for s_ in shape], indexing="ij", sparse=True)
    c0 = A[:3, 3] - centre
    xyz = tuple(np.broadcast_to(c, shape) for c in (ii + c0[0], jj + c0[1], kk + c0[2]))
    field, shim = _shim(field, brain, xyz)
    del xyz
    lap("field_s")

    # ---- signal on the physics grid -----------------------------------------------------------
    say(0.65, "signal")
    rng = np.random.default_rng([int(cfg.seed), 2])
    phase0 = float(rng.uniform(-np.pi, np.pi)) if cfg.phase_offset else 0.0
    signals, tr = tissue_signals(frac, iron_gm, iron_wm, field, p, cfg, phase0)
    tes = cfg.echo_times
    del frac, iron_gm, iron_wm
    lap("signal_s")

    # ---- acquisition grid ---------------------------------------------------------------------
    say(0.8, "acquisition")
    bidx = np.argwhere(brain)[::3]
    bpts = bidx[:, ::-1].astype(np.float64) @ A[:3, :3].T + A[:3, 3]
    M, ashape, offset = _acquisition_grid(cfg, bpts, A)
    del bidx, bpts
    inv_A = np.linalg.inv(A)
    if offset is not None:   # a sub-lattice of the physics grid: crop
        sl = tuple(slice(o, o + m) for o, m in zip(offset, ashape))
        acq_signals = [np.ascontiguousarray(s_[sl]) for s_ in signals]
        chi_acq = np.ascontiguousarray(chi[sl])
        ashape = acq_signals[0].shape
        nsub = [1, 1, 1]
        truth, reg, anatomy = truth_p[sl].copy(), regions_p[sl], labels_p[sl].copy()
        gm_acq, brain_acq = gm[sl].copy(), brain[sl].astype(np.uint8)
    else:
        acq_signals, nsub = resample_signals(signals, A, M, ashape, cfg.voxel_mm, p)
        kk, jj, ii = np.meshgrid(*[np.arange(s_, dtype=np.float64) for s_ in ashape], indexing="ij")
        base = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
        del kk, jj, ii
        P2 = inv_A @ M  # acquisition ijk -> physics ijk
        kj = (base @ P2[:3, :3].T + P2[:3, 3])[:, ::-1].T
        chi_acq = ndimage.map_coordinates(chi, kj, order=1, mode="constant", cval=CHI_AIR).reshape(ashape)
        del kj, base
        # labels straight from template space onto the acquisition grid (nearest, tissue linear),
        # and the posterior bank recomputed there on the subject's anatomy
        G = _Sampler(warp.template_coords(M, ashape, model, tmpl), tmpl.shape, T["lo_kji"], T["hi_kji"])
        anatomy = G(T["labels"], 0, np.uint8)
        reg = G(model["regions"], 0, np.uint8)
        gm_acq = np.clip(G(T["gm"]), 0, 1)
        brain_acq = G(T["brain"], 0, np.uint8)
        truth, _, _ = posterior_bank(anatomy, gm_acq, np.clip(G(T["wm"]), 0, 1), brain_acq > 0, M_spacing_kji(M))
        del G
    del signals, chi, truth_p, labels_p, regions_p, gm, brain
    truth_regions = np.where(truth > 0, reg, 0).astype(np.uint8)
    band = np.zeros(ashape, np.uint8)
    for h in sides:
        sel = truth == h + 1
        if cfg.band_region is not None:
            sel &= truth_regions == REGION_CODES[cfg.band_region]
        band[sel] = h + 1
    if cfg.delta_chi_ppm <= 0:
        band[:] = 0
    lap("acquisition_s")

    # ---- noise, magnitude, phase ----------------------------------------------------------------
    mag_arr, ph_arr, sigma, scale = noisy_images(acq_signals, cfg, rng)
    del acq_signals
    lap("noise_s")
    times["total_s"] = round(time.perf_counter() - t0, 3)

    # ---- pattern, params, volumes --------------------------------------------------------------
    pattern = "absent" if (cfg.band == "none" or cfg.delta_chi_ppm <= 0) else cfg.band
    diffuse = bool(cfg.diffuse_ppm > 0 and pattern == "absent")
    params = {
        "config": cfg.to_dict(), "code_version": CODE_VERSION, "warp": warp.params(),
        "physics": {
            "grid_mm": p, "grid_shape_kji": list(shape), "grid_ijk_to_ras": np.round(A, 6).tolist(),
            "pad_voxels": pad, "b0": "along scanner z = RAS S (axis k of the physics grid)",
            "b0_direction_ras": [0.0, 0.0, 1.0],
            "shim_coefficients_ppm": np.round(shim, 6).tolist(), "receiver_phase_rad": phase0,
            "tr_s": tr, "flip_deg": FLIP_DEG, "noise_sigma_per_channel": float(sigma * scale),
            "noise": "complex Gaussian, sigma = max|S| / snr on each of real and imaginary",
            "resampling": "crop of the physics grid" if offset is not None else
            f"trilinear, box average of {nsub} sub-samples (i, j, k) per voxel",
            "tissues": {k: dict(zip(("chi_ppm", "m0", "t1_s", "r2s_per_s"), val)) for k, val in TISSUES.items()},
            "nuclei_iron_ppm": NUCLEI_IRON_PPM, "r2s_per_ppm_iron": R2S_PER_PPM_IRON, "chi_air_ppm": CHI_AIR,
        },
        "acquisition": {"ijk_to_ras": np.round(M, 6).tolist(), "shape_kji": list(ashape), "echo_times_s": list(tes)},
        "expected_pattern": pattern, "nonspecific_diffuse": diffuse,
        **truth_counts(truth, band, truth_regions),
        "timings_s": times,
    }
    meta_img = image_meta(cfg)
    vol = lambda arr, name, **meta: Volume(arr, M.copy(), name, dict(meta))
    return Case(
        magnitude=vol(mag_arr.astype(np.float32), "magnitude", **meta_img),
        phase=vol(ph_arr.astype(np.float32), "phase", units=cfg.phase_units, **meta_img),
        truth=vol(truth, "truth", labels={"1": "left posterior bank", "2": "right posterior bank"}),
        truth_regions=vol(truth_regions, "truth_regions", labels={"1": "medial", "2": "intermediate", "3": "lateral"}),
        anatomy=vol(anatomy, "anatomy", labels=dict(templates.REGION_LABELS)),
        chi=vol(chi_acq.astype(np.float32), "chi", units="ppm relative to water/CSF"),
        band=vol(band, "band"),
        gm=vol(gm_acq.astype(np.float32), "gm"),
        brain_mask=vol(brain_acq, "brain_mask"),
        expected_pattern=pattern,
        nonspecific_diffuse=diffuse,
        params=params,
        config=cfg,
    )


# ------------------------------------------------------------------------------------------------
# Named fixtures, cache, files
# ------------------------------------------------------------------------------------------------
_CI = dict(voxel_mm=(1.5, 1.5, 1.5))
#: Named CI fixtures (1.5 mm isotropic except "oblique"); each a distinct seed.
FIXTURES = {
    "bilateral": PhantomConfig(seed=101, band="bilateral", **_CI),
    "left": PhantomConfig(seed=102, band="left", **_CI),
    "right": PhantomConfig(seed=103, band="right", **_CI),
    "none": PhantomConfig(seed=104, band="none", **_CI),
    # ageing: diffuse cortical iron; +0.03 ppm is about the cortical susceptibility rise from
    # young to old adulthood (Li W et al. 2014, Hum Brain Mapp 35:2698; Acosta-Cabronero et al. 2016, J Neurosci 36:364)
    "diffuse": PhantomConfig(seed=105, band="none", diffuse_ppm=0.03, **_CI),
    "veins": PhantomConfig(seed=106, band="bilateral", veins_in_central_sulcus=True, **_CI),
    "left_handed": PhantomConfig(seed=107, band="bilateral", handedness="left", **_CI),
    "siemens": PhantomConfig(seed=108, band="bilateral", phase_units="siemens", **_CI),
    "oblique": PhantomConfig(seed=109, band="bilateral", voxel_mm=(1.2, 1.2, 2.5), oblique_deg=18.0),
    "partial": PhantomConfig(seed=110, band="bilateral", coverage_top_mm=60.0, **_CI),
    "multiecho": PhantomConfig(seed=111, band="bilateral", te_s=(0.010, 0.020, 0.030), **_CI),
}
#: The demo case: a bilateral band like the first patient of the case report, 1 mm.
DEMO_CONFIG = PhantomConfig(seed=2024, band="bilateral", voxel_mm=(1.0, 1.0, 1.0))


def fixture_config(name: str) -> PhantomConfig:
    if name == "demo":
        return DEMO_CONFIG
    if name not in FIXTURES:
        raise InputError(f"unknown phantom fixture {name!r}; choose one of {sorted(FIXTURES)} or 'demo'")
    return FIXTURES[name]


def _cache_path(name: str, cfg: PhantomConfig) -> Path:
    d = templates.cache_dir() / "phantoms"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}-{cfg.key()}.npz"


def save_case_npz(case: Case, path) -> None:
    """Store a Case in one .npz (atomic: temp file, then rename)."""
    save_volumes_npz(path, {n: getattr(case, n) for n in Case.VOLUMES},
                     {"expected_pattern": case.expected_pattern, "nonspecific_diffuse": case.nonspecific_diffuse,
                      "params": case.params})


def load_case_npz(path) -> Case:
    vols, info = load_volumes_npz(path, Case.VOLUMES)
    cfg_d = dict(info["params"]["config"])
    for k in ("voxel_mm", "scale_range"):
        cfg_d[k] = tuple(cfg_d[k])
    if isinstance(cfg_d["te_s"], list):
        cfg_d["te_s"] = tuple(cfg_d["te_s"])
    return Case(**vols, expected_pattern=info["expected_pattern"], nonspecific_diffuse=info["nonspecific_diffuse"],
                params=info["params"], config=PhantomConfig(**cfg_d))


def cached_case(name: str, cfg: PhantomConfig, cache: bool = True) -> Case:
    """Generate ``cfg`` or load it from the cache (keyed by the config hash and code version)."""
    path = _cache_path(name, cfg)
    if cache and path.exists():
        try:
            return load_case_npz(path)
        except Exception:  # a damaged or stale file is regenerated
            pass
    case = generate_case(cfg)
    if cache:
        save_case_npz(case, path)
        for old in path.parent.glob(f"{name}-*.npz"):   # earlier versions of this fixture
            if old != path and len(old.stem) == len(path.stem):
                try:
                    old.unlink()
                except OSError:
                    pass
    return case


def fixture(name: str, cache: bool = True) -> Case:
    """A named CI fixture (see :data:`FIXTURES`), cached on disk under cache_dir()/phantoms."""
    return cached_case(name, fixture_config(name), cache)


def demo_case(out_dir=None, cache: bool = True) -> Case:
    """The deterministic demo case (bilateral band, 1 mm); written to ``out_dir`` when given."""
    case = cached_case("demo", DEMO_CONFIG, cache)
    if out_dir is not None:
        write_case(case, out_dir)
    return case


def _write_sitk(vol: Volume, array, path: Path) -> None:
    """Write a 3D or 4D (echo-first) Volume as NIfTI via SimpleITK, atomically."""
    import SimpleITK as sitk

    if array.ndim == 4:
        img = sitk.JoinSeries([vol.to_sitk(np.ascontiguousarray(a)) for a in array])
    else:
        img = vol.to_sitk(np.ascontiguousarray(array))
    tmp = path.with_name(f".tmp{os.getpid()}-{path.name}")
    sitk.WriteImage(img, str(tmp), useCompression=True)
    os.replace(tmp, path)


def write_case(case: Case, directory) -> dict:
    """Write magnitude, phase, truth, truth_regions, anatomy, chi (.nii.gz) and case.json.

    Every file is written to a temporary name and renamed. Siemens phase is stored as int16
    (the integers dcm2niix writes), everything else as float32 / uint8. Returns name -> path.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {}
    for n in ("magnitude", "phase", "truth", "truth_regions", "anatomy", "chi", "band"):
        v = getattr(case, n)
        arr = v.array
        if n == "phase" and v.meta.get("units") == "siemens":
            arr = arr.astype(np.int16)
        path = d / f"{n}.nii.gz"
        _write_sitk(v, arr, path)
        paths[n] = str(path)
    info = {
        "expected_pattern": case.expected_pattern, "nonspecific_diffuse": case.nonspecific_diffuse,
        "phase_units": case.phase.meta.get("units"), "echo_times_s": case.magnitude.meta.get("echo_times_s"),
        "labels": {"truth": case.truth.meta.get("labels"), "truth_regions": case.truth_regions.meta.get("labels"),
                   "anatomy": case.anatomy.meta.get("labels")},
        "files": {k: Path(v).name for k, v in paths.items()},
        "params": case.params,
    }
    path = d / "case.json"
    tmp = path.with_name(f".tmp{os.getpid()}-case.json")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, path)
    paths["case_json"] = str(path)
    return paths


# ------------------------------------------------------------------------------------------------
# Picture of a case
# ------------------------------------------------------------------------------------------------
def _swi_like(magnitude, phase_rad, window_px=64, power=4):
    """Textbook SWI of one 3D echo for display: homodyne high-pass (complex division by a
    Hann-windowed central k-space copy, ``window_px`` wide in-plane) and phase mask
    f = (pi + phi)/pi for phi < 0, raised to ``power`` (Haacke et al. 2004, MRM 52:612)."""
    z = magnitude * np.exp(1j * phase_rad)
    spec = np.fft.fftshift(np.fft.fft2(z, axes=(1, 2)), axes=(1, 2))
    win = np.zeros(z.shape[1:])
    cj, ci = z.shape[1] // 2, z.shape[2] // 2
    h = np.outer(np.hanning(window_px), np.hanning(window_px))
    win[cj - window_px // 2:cj + window_px // 2, ci - window_px // 2:ci + window_px // 2] = h
    low = np.fft.ifft2(np.fft.ifftshift(spec * win[None], axes=(1, 2)), axes=(1, 2))
    hp = np.angle(z * np.conj(low))
    mask = np.where(hp < 0, (np.pi + hp) / np.pi, 1.0)
    return magnitude * mask ** power


def save_case_figure(case: Case, path, title: str | None = None) -> dict:
    """Axial slice through the hand knob: magnitude and SWI-like image with the band truth
    outlined, plus a zoom on the left hand knob with the precentral / postcentral labels.

    The slice is the one with the most truth voxels of the intermediate (hand) region. Written
    atomically (PNG). Returns facts about the slice (index, RAS z, voxels outlined).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mag = case.magnitude.array if case.magnitude.array.ndim == 3 else case.magnitude.array[-1]
    ph = case.phase.array if case.phase.array.ndim == 3 else case.phase.array[-1]
    if case.phase.meta.get("units") == "siemens":
        ph = (ph + 4096.0) / 8192.0 * 2 * np.pi - np.pi
    if case.config is not None and case.config.handedness == "left":
        ph = -ph
    tr, reg, an = case.truth.array, case.truth_regions.array, case.anatomy.array
    k = int(np.argmax((reg == 2).sum(axis=(1, 2))))
    swi = _swi_like(mag[max(0, k - 2):k + 3], ph[max(0, k - 2):k + 3])[min(k, 2)]
    z_mm = float(case.truth.ras_of_ijk([[0, 0, k]])[0, 2])
    sp = case.magnitude.spacing
    ext = [-0.5 * sp[0], (mag.shape[2] - 0.5) * sp[0], -0.5 * sp[1], (mag.shape[1] - 0.5) * sp[1]]
    brain = case.brain_mask.array[k] > 0
    vmax = np.percentile(mag[k][brain], 99.5) if brain.any() else mag[k].max()

    fig, axes = plt.subplots(1, 4, figsize=(24, 6.6), gridspec_kw={"width_ratios": [1, 1, 0.9, 0.9]})
    colours = {1: "#ff3030", 2: "#ffb000"}
    te_ms = 1000 * case.magnitude.meta["echo_times_s"][-1]
    for ax, img, name in ((axes[0], mag[k], f"magnitude (TE {te_ms:.0f} ms)"),
                          (axes[1], swi, "SWI-like (homodyne high-pass, phase mask^4)")):
        ax.imshow(img, cmap="gray", origin="lower", extent=ext, vmin=0, vmax=vmax, interpolation="nearest")
        for h, c in colours.items():
            if (tr[k] == h).any():
                ax.contour(tr[k] == h, [0.5], colors=c, linewidths=0.9, extent=ext, origin="lower")
        ax.set_title(name)
        ax.set_xlabel("i (mm), towards the patient's right")
        ax.set_ylabel("j (mm), towards anterior")
    # zooms on the left hand knob: the SWI-like image, and the subject's anatomy
    sel = np.argwhere((tr[k] == 1) & (reg[k] == 2))
    if len(sel):
        cj, ci = sel.mean(0)
        half = 20.0
        pre = an[k] == templates.REGION_LABELS["left_precentral"]
        post = an[k] == templates.REGION_LABELS["left_postcentral"]
        ax = axes[2]
        ax.imshow(swi, cmap="gray", origin="lower", extent=ext, vmin=0, vmax=vmax, interpolation="nearest")
        ax.contour(tr[k] == 1, [0.5], colors=colours[1], linewidths=1.5, extent=ext, origin="lower")
        ax.set_title("zoom, left hand knob: SWI-like + band truth")
        ax = axes[3]
        ax.imshow(case.gm.array[k], cmap="gray", origin="lower", extent=ext, vmin=0, vmax=1, interpolation="nearest")
        over = np.zeros(pre.shape + (4,), np.float32)
        over[pre] = (0.25, 0.55, 1.0, 0.35)
        over[post] = (0.2, 1.0, 0.3, 0.35)
        ax.imshow(over, origin="lower", extent=ext, interpolation="nearest")
        ax.contour(tr[k] == 1, [0.5], colors=colours[1], linewidths=1.5, extent=ext, origin="lower")
        ax.set_title("same zoom: subject GM map, precentral (blue),\npostcentral (green) labels, band truth (red)")
        for ax in axes[2:]:
            ax.set_xlim(ci * sp[0] - half, ci * sp[0] + half)
            ax.set_ylim(cj * sp[1] - half, cj * sp[1] + half)
            ax.set_xlabel("mm")
    fig.suptitle(title or (f"Phantom '{case.params['config'].get('band')}' band, axial slice k={k} (z = {z_mm:.0f} mm RAS); "
                           f"left hemisphere = image left; truth: red = left bank, amber = right bank"), fontsize=12)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp{os.getpid()}-{path.name}")
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return {"slice_k": k, "z_ras_mm": z_mm, "truth_voxels_in_slice": int((tr[k] > 0).sum()),
            "hand_region_voxels_in_slice": int((reg[k] == 2).sum())}
