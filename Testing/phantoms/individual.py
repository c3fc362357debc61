"""Physics phantoms on individual brains: real anatomy, truth from the brain's own labels.

The template-warp phantoms of :mod:`.simulate` share their anatomy with the registration
template the pipeline uses (an inverse crime: registration only has to undo a smooth warp,
and averaged cortex has no texture). These cases start instead from a real person's brain
(:mod:`.brains`: partial-volume tissue fractions, FreeSurfer-numbered labels, the posterior
bank of the precentral gyrus from that brain's own anatomy) and reuse the physics of
:mod:`.simulate` (dipole field with the head's air and bone, shim, spoiled-GRE signal with
R2* coupled to iron, intravoxel dephasing, acquisition resampling, complex noise).

What the individual cases add to the physics:

- **Head pose.** The brain is rotated (up to ``pose_deg`` about each axis) and shifted
  (``pose_mm``) in the scanner, so B0 meets the cortex at the angles of a real head.
- **Cortical texture.** Grey matter's R2* varies smoothly from place to place by
  ``texture`` (relative SD; cortical R2* varies by region and layer, e.g. 15-25 s^-1 at 3 T,
  Peters et al. 2007, MRI 25:748; Cohen-Adad et al. 2012, NeuroImage 60:1006).
- **Veins.** Blobs of venous blood in sulcal CSF (a smoothed random field above a threshold,
  covering about :data:`VEIN_COVER` of the sulcal CSF), and with ``veins=True`` a vein along
  part of the central sulcus itself (cortical veins run in sulci: Duvernoy et al. 1981, Brain
  Res Bull 7:519).
- **Receive bias.** The complex signal is multiplied by a smooth field of RMS ``bias``
  (multi-channel head coils vary by tens of percent over the brain; Vovk et al. 2007,
  IEEE TMI 26:405).
- **Ageing.** ``diffuse_ppm`` raises the susceptibility (and so R2*) of all cortex.

The band is ``delta_chi_ppm`` on the bank voxels of the chosen hemispheres (and region). The
truth is the bank resampled onto the acquisition grid (a voxel is bank when at least half of it
is); regions come with it. The case also carries the brain's own parcellation (FreeSurfer
numbers) and T1w, posed like the brain, for the ``--parcellation`` and ``--t1`` routes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from MotorBandSignLib import physics
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.volume import Volume, grid_from

from . import brains as brains_mod
from . import simulate as sim

#: Part of every cache key: bump when the simulation changes.
CODE_VERSION = "individual-1"
#: Fraction of sulcal CSF voxels holding a vein blob.
VEIN_COVER = 0.12
#: Venous blood fraction inside a vein blob (the rest of the voxel stays CSF).
VEIN_FILL = 0.7
REGION_CODES = sim.REGION_CODES


@dataclass
class IndividualConfig(sim.ConfigMixin):
    """Everything that defines an individual-anatomy case (same config -> same case)."""

    brain: str = "clab"
    seed: int = 0
    band: str = "bilateral"                 # bilateral | left | right | none
    band_region: str | None = None          # None | medial | intermediate | lateral
    delta_chi_ppm: float = 0.08
    diffuse_ppm: float = 0.0
    veins: bool = False                     # a vein along part of the central sulcus
    voxel_mm: tuple = (1.0, 1.0, 1.0)
    oblique_deg: float = 0.0
    field_strength_t: float = 3.0
    te_s: float | tuple = 0.020
    snr: float = 40.0
    handedness: str = "right"
    phase_units: str = "radians"
    coverage_top_mm: float | None = None
    pose_deg: float = 6.0
    pose_mm: float = 5.0
    texture: float = 0.08
    bias: float = 0.12
    phase_offset: bool = True
    physics_mm: float | None = None
    #: spoiled-GRE flip angle (deg); None: simulate.FLIP_DEG (15 deg). A smaller angle weights the
    #: magnitude towards proton density: sulcal CSF turns bright and cortex brighter than white
    #: matter (at TR 28 ms and TE 20 ms, 6 deg: CSF 1.46x, grey matter 1.10x white matter; at
    #: 10 deg grey and white matter are alike, 0.99x), the contrast of low-flip SWI protocols.
    flip_deg: float | None = None
    HASH_OMIT_IF_NONE = ("flip_deg",)

    def validate(self) -> None:
        if self.band not in sim.BAND_CHOICES:
            raise InputError(f"band must be one of {sim.BAND_CHOICES}, got {self.band!r}")
        if self.band_region not in sim.REGION_CHOICES:
            raise InputError(f"band_region must be one of {sim.REGION_CHOICES}, got {self.band_region!r}")
        if self.phase_units not in ("radians", "siemens"):
            raise InputError(f"phase_units must be 'radians' or 'siemens', got {self.phase_units!r}")

    def key(self) -> str:
        """Cache key: a hash of the config and :data:`CODE_VERSION`."""
        return self.hash_with(CODE_VERSION)


@dataclass
class IndividualCase:
    """A simulated acquisition on an individual brain and its truth (acquisition grid, RAS)."""

    magnitude: Volume
    phase: Volume
    truth: Volume                # uint8 1 left / 2 right posterior bank
    truth_regions: Volume        # uint8 1..3 on truth voxels
    band: Volume                 # uint8 truth voxels whose susceptibility was raised
    parcellation: Volume         # int32 FreeSurfer numbers, the brain's own, posed (native grid)
    t1: Volume                   # float32 T1w, posed (native grid)
    expected_pattern: str
    nonspecific_diffuse: bool
    params: dict
    config: IndividualConfig = None

    VOLUMES = ("magnitude", "phase", "truth", "truth_regions", "band", "parcellation", "t1")


def _smooth_field(shape, sigma_vox, rng) -> np.ndarray:
    """A zero-mean, unit-SD smooth Gaussian random field."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
    sd = float(f.std())
    return f / sd if sd > 0 else f


def pose_of(cfg: IndividualConfig, centre: np.ndarray) -> np.ndarray:
    """4x4 native RAS -> scanner RAS: rotation about the brain centre, then a shift."""
    rng = np.random.default_rng([int(cfg.seed), 11])
    ang = rng.uniform(-cfg.pose_deg, cfg.pose_deg, 3)
    t = rng.uniform(-cfg.pose_mm, cfg.pose_mm, 3)
    R = sim._rotation(ang)
    m = np.eye(4)
    m[:3, :3] = R
    m[:3, 3] = centre - R @ centre + t
    return m


def _sample(arr, coords, order, cval=0.0, dtype=np.float32, smooth_sigma=0.0):
    a = arr.astype(np.float32) if order > 0 else arr
    if smooth_sigma > 0 and order > 0:
        a = ndimage.gaussian_filter(a, smooth_sigma)
    out = ndimage.map_coordinates(a, coords, order=order, mode="constant", cval=cval, prefilter=False)
    return out.astype(dtype)


def generate_case(cfg: IndividualConfig, brain=None) -> IndividualCase:
    """Simulate one case on an individual brain (see the module docstring)."""
    cfg.validate()
    times = {}
    t0 = time.perf_counter()
    b = brain if brain is not None else brains_mod.load(cfg.brain)
    rng = np.random.default_rng([int(cfg.seed), 12])
    s_nat = float(b.spacing_mm)
    intracranial = (b.gm + b.wm + b.csf) >= 0.5
    idx = np.argwhere(intracranial)
    pts_nat = brains_mod.kji_to_ras(b.ijk_to_ras, idx[::53])
    centre = pts_nat.mean(0)
    P = pose_of(cfg, centre)                              # native RAS -> scanner RAS
    pts = pts_nat @ P[:3, :3].T + P[:3, 3]

    # ---- physics grid (axis-aligned, B0 along RAS S) covering the posed head ------------------
    p = float(cfg.physics_mm or min(cfg.voxel_mm))
    reach = sim.SCALP_SHELL_MM + 4.0
    lo_p, hi_p = pts.min(0) - reach, pts.max(0) + reach
    n = np.ceil((hi_p - lo_p) / p).astype(int) + 1
    shape = (int(n[2]), int(n[1]), int(n[0]))
    A = grid_from(shape, (p, p, p), np.eye(3), lo_p)
    # physics voxel -> native voxel (k, j, i coordinates for map_coordinates)
    T = np.linalg.inv(b.ijk_to_ras) @ np.linalg.inv(P) @ A
    kk, jj, ii = np.meshgrid(*[np.arange(s_, dtype=np.float32) for s_ in shape], indexing="ij")
    nat = np.stack([T[c, 0] * ii + T[c, 1] * jj + T[c, 2] * kk + T[c, 3] for c in (2, 1, 0)])
    del kk, jj, ii
    coords = nat.reshape(3, -1)
    aa = max(0.0, np.sqrt(max(p ** 2 - s_nat ** 2, 0.0)) / 2.355 / s_nat)   # anti-alias (native voxels)
    rs = lambda a, order=1: _sample(a, coords, order, smooth_sigma=aa).reshape(shape)
    gm, wm, csf = (np.clip(rs(a), 0, 1) for a in (b.gm, b.wm, b.csf))
    bank_p = rs(b.bank, 0).astype(np.uint8)
    regions_p = rs(b.regions, 0).astype(np.uint8)
    aparc_p = _sample(b.aparc, coords, 0, dtype=np.int32).reshape(shape)
    nuclei = {k: np.clip(rs(v), 0, 1) for k, v in b.nuclei.items()}
    brain = (gm + wm + csf) >= 0.5
    times["anatomy_s"] = round(time.perf_counter() - t0, 2)

    # ---- veins in sulcal CSF, and along the central sulcus ------------------------------------
    sulcal = csf * (ndimage.distance_transform_edt(brain, sampling=(p, p, p)) > 1.5)
    blobs = _smooth_field(shape, 1.5 / p, rng)
    thr = np.quantile(blobs[sulcal > 0.3], 1.0 - VEIN_COVER) if (sulcal > 0.3).any() else np.inf
    vein = np.where(blobs > thr, VEIN_FILL * sulcal, 0.0).astype(np.float32)
    cs_csf = np.zeros(shape, bool)
    if cfg.veins:
        post = np.isin(aparc_p, (1022, 2022))
        near_bank = ndimage.distance_transform_edt(bank_p == 0, sampling=(p, p, p)) <= 2.0
        near_post = ndimage.distance_transform_edt(~post, sampling=(p, p, p)) <= 2.0
        cs_csf = near_bank & near_post & (csf > 0.2)
        along = _smooth_field(shape, 6.0 / p, rng) > 0.0          # about half of its length
        vein = np.where(cs_csf & along, np.maximum(vein, VEIN_FILL * np.maximum(csf, 0.5)), vein)
    vein = np.minimum(vein, csf)
    csf = csf - vein
    times["veins_s"] = round(time.perf_counter() - t0 - sum(times.values()), 2)

    # ---- compartments and susceptibility -----------------------------------------------------
    frac = sim._head_compartments(brain, gm, wm, p)
    frac["csf"] = np.where(brain, csf, frac["csf"]).astype(np.float32)
    frac["vein"] = vein
    sides = {"bilateral": (1, 2), "left": (1,), "right": (2,), "none": ()}[cfg.band]
    band_sel = np.zeros(shape, np.float32)
    for h in sides:
        sel = bank_p == h
        if cfg.band_region is not None:
            sel &= regions_p == REGION_CODES[cfg.band_region]
        band_sel[sel] = 1.0
    nuc_iron = np.zeros(shape, np.float32)
    for k, fr in nuclei.items():
        nuc_iron += np.float32(sim.NUCLEI_IRON_PPM.get(k, 0.0)) * fr
    cortex = np.isin(aparc_p // 1000, (1, 2)) | np.isin(aparc_p, (3, 42))
    iron_gm = nuc_iron + np.float32(cfg.delta_chi_ppm) * band_sel
    if cfg.diffuse_ppm:
        iron_gm = iron_gm + np.float32(cfg.diffuse_ppm) * cortex
    iron_wm = np.zeros_like(nuc_iron)   # the nuclei's iron is in their grey matter here
    chi = np.zeros(shape, np.float32)
    for k, fr in frac.items():
        chi += np.float32(sim.TISSUES[k][0]) * fr
    chi += iron_gm * frac["gm"]
    air = np.clip(1.0 - sum(frac.values()), 0, 1)
    chi += np.float32(sim.CHI_AIR) * air
    del air
    pad = int(round(sim.PAD_MM / p))
    field = physics.field_from_chi(chi - np.float32(sim.CHI_AIR), (p, p, p), b0_direction=(1.0, 0.0, 0.0), pad=pad)
    kz, jy, ix = np.meshgrid(*[np.arange(s_, dtype=np.float32) * p for s_ in shape], indexing="ij", sparse=True)
    c0 = A[:3, 3] - centre
    xyz = tuple(np.broadcast_to(c, shape) for c in (ix + c0[0], jy + c0[1], kz + c0[2]))
    field, shim = sim._shim(field, brain, xyz)
    del xyz
    times["field_s"] = round(time.perf_counter() - t0 - sum(times.values()), 2)

    # ---- signal with cortical texture and receive bias ----------------------------------------
    phase0 = float(rng.uniform(-np.pi, np.pi)) if cfg.phase_offset else 0.0
    r2s_scale = (1.0 + np.float32(cfg.texture) * _smooth_field(shape, 2.0 / p, rng)).astype(np.float32)
    signals, tr = sim.tissue_signals(frac, iron_gm, iron_wm, field, p, cfg, phase0, r2s_gm_scale=r2s_scale)
    bias = (1.0 + np.float32(cfg.bias) * _smooth_field(shape, 40.0 / p, rng)).astype(np.float32)
    signals = [(s_ * np.clip(bias, 0.3, None)).astype(np.complex64) for s_ in signals]
    del frac, r2s_scale, bias
    times["signal_s"] = round(time.perf_counter() - t0 - sum(times.values()), 2)

    # ---- acquisition ------------------------------------------------------------------------
    bpts = np.argwhere(brain)[::3][:, ::-1].astype(np.float64) @ A[:3, :3].T + A[:3, 3]
    M, ashape, offset = sim._acquisition_grid(cfg, bpts, A)
    if offset is not None:
        sl = tuple(slice(o, o + m) for o, m in zip(offset, ashape))
        acq = [np.ascontiguousarray(s_[sl]) for s_ in signals]
        ashape = acq[0].shape
    else:
        acq, _ = sim.resample_signals(signals, A, M, ashape, cfg.voxel_mm, p)
    del signals
    # truth: the native bank resampled onto the acquisition grid (>= half a voxel), regions nearest
    Tq = np.linalg.inv(b.ijk_to_ras) @ np.linalg.inv(P) @ M
    kk, jj, ii = np.meshgrid(*[np.arange(s_, dtype=np.float32) for s_ in ashape], indexing="ij")
    qc = np.stack([Tq[c, 0] * ii + Tq[c, 1] * jj + Tq[c, 2] * kk + Tq[c, 3] for c in (2, 1, 0)]).reshape(3, -1)
    del kk, jj, ii
    vox = np.asarray(cfg.voxel_mm, float)
    sig_nat = np.sqrt(np.maximum(vox.max() ** 2 - s_nat ** 2, 0.0)) / 2.355 / s_nat
    truth = np.zeros(ashape, np.uint8)
    for h in (1, 2):
        f = _sample((b.bank == h).astype(np.float32), qc, 1, smooth_sigma=sig_nat).reshape(ashape)
        truth[f >= 0.5] = h
    reg = _sample(b.regions, qc, 0, dtype=np.uint8).reshape(ashape)
    # voxels at the edge of the regions' support take the nearest region
    if (truth > 0).any():
        miss = (truth > 0) & (reg == 0)
        if miss.any() and (reg > 0).any():
            _, ind = ndimage.distance_transform_edt(reg == 0, return_indices=True)
            reg[miss] = reg[tuple(i[miss] for i in ind)]
    truth_regions = np.where(truth > 0, reg, 0).astype(np.uint8)
    band = np.zeros(ashape, np.uint8)
    for h in sides:
        sel = truth == h
        if cfg.band_region is not None:
            sel &= truth_regions == REGION_CODES[cfg.band_region]
        band[sel] = h
    if cfg.delta_chi_ppm <= 0:
        band[:] = 0
    mag_arr, ph_arr, sigma, scale = sim.noisy_images(acq, cfg, rng)
    del acq
    times["acquisition_s"] = round(time.perf_counter() - t0 - sum(times.values()), 2)
    times["total_s"] = round(time.perf_counter() - t0, 2)

    pattern = "absent" if (cfg.band == "none" or cfg.delta_chi_ppm <= 0) else cfg.band
    diffuse = bool(cfg.diffuse_ppm > 0 and pattern == "absent")
    posed = P @ b.ijk_to_ras
    tes = cfg.echo_times
    params = {
        "config": cfg.to_dict(), "code_version": CODE_VERSION, "brain": b.name, "brain_info": b.info,
        "pose_native_to_scanner": np.round(P, 6).tolist(),
        "physics": {"grid_mm": p, "grid_shape_kji": list(shape), "b0_direction_ras": [0.0, 0.0, 1.0],
                    "shim_coefficients_ppm": np.round(shim, 6).tolist(), "receiver_phase_rad": phase0,
                    "tr_s": tr, "flip_deg": sim.flip_of(cfg), "noise_sigma_per_channel": float(sigma * scale),
                    "texture_rel_sd": cfg.texture, "bias_rms": cfg.bias, "vein_cover": VEIN_COVER,
                    "cs_vein_voxels": int(cs_csf.sum())},
        "acquisition": {"ijk_to_ras": np.round(M, 6).tolist(), "shape_kji": list(ashape), "echo_times_s": list(tes)},
        "expected_pattern": pattern, "nonspecific_diffuse": diffuse,
        **sim.truth_counts(truth, band, truth_regions),
        "timings_s": times,
    }
    meta = sim.image_meta(cfg)
    vol = lambda arr, name, **m: Volume(arr, M.copy(), name, dict(m))
    return IndividualCase(
        magnitude=vol(mag_arr.astype(np.float32), "magnitude", **meta),
        phase=vol(ph_arr.astype(np.float32), "phase", units=cfg.phase_units, **meta),
        truth=vol(truth, "truth"), truth_regions=vol(truth_regions, "truth_regions"), band=vol(band, "band"),
        parcellation=Volume(b.aparc.astype(np.int32), posed, "parcellation (FreeSurfer numbers)"),
        t1=Volume(b.t1w.astype(np.float32), posed, "T1w"),
        expected_pattern=pattern, nonspecific_diffuse=diffuse, params=params, config=cfg)


# ------------------------------------------------------------------------------------------------
# cache
# ------------------------------------------------------------------------------------------------
def _cache_path(cfg: IndividualConfig, brain=None):
    """Cache file of a case: keyed by the config, the code version and the brain's own facts
    (so a rebuilt brain makes new cases)."""
    d = brains_mod.cache_dir() / "cases"
    d.mkdir(parents=True, exist_ok=True)
    b = brain if brain is not None else brains_mod.load(cfg.brain)
    bkey = hashlib.sha1(json.dumps(b.info, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return d / f"{cfg.brain}-{cfg.key()}-{bkey}.npz"


def save_case(case: IndividualCase, path) -> None:
    sim.save_volumes_npz(path, {n: getattr(case, n) for n in IndividualCase.VOLUMES},
                         {"expected_pattern": case.expected_pattern, "nonspecific_diffuse": case.nonspecific_diffuse,
                          "params": case.params})


def load_case(path, cfg: IndividualConfig) -> IndividualCase:
    vols, info = sim.load_volumes_npz(path, IndividualCase.VOLUMES)
    return IndividualCase(**vols, expected_pattern=info["expected_pattern"],
                          nonspecific_diffuse=info["nonspecific_diffuse"], params=info["params"], config=cfg)


def case(cfg: IndividualConfig, cache: bool = True) -> IndividualCase:
    """Generate ``cfg`` or load it from the cache (keyed by config and code version)."""
    brain = brains_mod.load(cfg.brain)
    path = _cache_path(cfg, brain)
    if cache and path.exists():
        try:
            return load_case(path, cfg)
        except Exception:  # a damaged file is regenerated
            pass
    c = generate_case(cfg, brain)
    if cache:
        save_case(c, path)
    return c


def write_case(c: IndividualCase, directory) -> dict:
    """Write the case's volumes as NIfTI (magnitude, phase, truth, truth_regions, band,
    parcellation, t1) and case.json, each atomically. Returns name -> path."""
    from pathlib import Path

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {}
    for n in IndividualCase.VOLUMES:
        v = getattr(c, n)
        arr = v.array
        if n == "phase" and v.meta.get("units") == "siemens":
            arr = arr.astype(np.int16)
        path = d / f"{n}.nii.gz"
        sim._write_sitk(v, arr, path)
        paths[n] = str(path)
    info = {"expected_pattern": c.expected_pattern, "nonspecific_diffuse": c.nonspecific_diffuse,
            "files": {k: Path(v).name for k, v in paths.items()}, "params": c.params}
    tmp = d / ".case.json.tmp"
    tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
    tmp.replace(d / "case.json")
    paths["case_json"] = str(d / "case.json")
    return paths
