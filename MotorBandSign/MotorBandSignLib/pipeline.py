"""The one pipeline every front end calls.

magnitude + phase -> phase in radians -> SWI and mIP -> brain mask -> localisation of the
precentral / postcentral gyri -> ribbon (posterior bank + control cortex) -> heatmap -> scores.

``run`` reports progress through ``progress(fraction, message)`` and checks ``cancel()``
between steps (raising :class:`~MotorBandSignLib.errors.CancelledError`). ``remeasure``
re-enters at the heatmap with an edited ribbon, reusing the SWI and anatomy already computed.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import __version__
from .errors import CancelledError, InputError
from .params import Parameters
from .volume import Volume

#: Below this estimated SNR (brain median / Rayleigh noise sigma of the background) the phase
#: is too noisy for a reliable SWI mask (Haacke et al. 2004, MRM 52:612 used SNR well above 20;
#: Rayleigh background statistics: Gudbjartsson & Patz 1995, MRM 34:910). Provisional.
LOW_SNR = 15.0
#: Juxtacortical white-matter reference: voxels 2-6 mm beneath the control cortex, i.e. past
#: the cortex (2.5-3 mm thick in sensorimotor cortex, Fischl & Dale 2000, PNAS 97:11050) and
#: within the superficial white matter under it, local enough to share the receive bias.
WM_REFERENCE_MM = (2.0, 6.0)
#: A magnitude is >= 0; interpolation or filtering by a converter can leave a few slightly
#: negative voxels, so only more than this share of negative voxels is refused (a phase image
#: given as the magnitude is negative in about half of them).
MAX_NEGATIVE_MAGNITUDE = 0.01
#: Smallest left-right and anterior-posterior extent (mm) of the field of view for locating the
#: motor strips: an adult brain is about 140 mm wide and 170 mm long (Talairach & Tournoux 1988
#: atlas extents), and both central sulci with their control cortex span most of its width at
#: the vertex. Under this the image cannot hold both hemispheres' motor strips. Provisional.
MIN_FOV_FOR_LOCALISATION_MM = 100.0
#: Labels of the iron-rich deep grey nuclei (caudate, putamen, pallidum) in templates.REGION_LABELS.
DEEP_GREY_LABELS = (9, 10)
#: Their high-passed phase is negative in right-handed data (paramagnetic iron: Haacke et al.
#: 2004, MRM 52:612; pallidum/putamen +0.05..0.15 ppm, Langkammer et al. 2012, NeuroImage
#: 62:1593). A positive median means the phase sign is probably the other convention; after
#: the high-pass the nuclei keep only a few hundredths of a radian, so the check is on the sign.
#: A warning only (provisional): it never changes the result.
HANDEDNESS_CHECK_RAD = 0.0


@dataclass
class Inputs:
    """What a run starts from. Give ``phase`` (or ``real`` + ``imag``) with ``magnitude``."""

    magnitude: Volume
    phase: Volume | None = None
    real: Volume | None = None
    imag: Volume | None = None
    t1: Volume | None = None
    parcellation: Volume | None = None
    #: A ribbon the user made or corrected (labels 1..4 as in ribbon.SEGMENT_NAMES): used as is.
    ribbon: Volume | None = None
    brain_mask: Volume | None = None
    hand_knob_ras: dict | None = None
    #: The scanner's own SWI instead of phase (``magnitude`` optional): the phase steps are
    #: skipped and the run is marked acquisition.VENDOR_SWI_NOTE.
    swi: Volume | None = None
    #: What the reader found in the headers (acquisition.Acquisition.provenance): metrics qc.input.
    provenance: dict | None = None


@dataclass
class Result:
    """Everything a run produced; Volumes are on the magnitude grid."""

    swi: Volume
    mip: Volume
    phase_hp: Volume
    magnitude: Volume
    brain_mask: Volume
    ribbon: Volume
    regions: Volume
    heatmap: Volume
    heatmap_magnitude: Volume
    metrics: dict
    warnings: list
    params: Parameters
    anatomy: object = None
    qc: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    # Intermediate images kept so that re-measuring takes seconds.
    swi_corrected: np.ndarray | None = None
    magnitude_corrected: np.ndarray | None = None
    gm_prob: np.ndarray | None = None
    wm_prob: np.ndarray | None = None
    depth: np.ndarray | None = None
    #: Cortex sampled by the diffuse flag when it is not the ribbon's control (sulcal route).
    diffuse_labels: np.ndarray | None = None
    #: Where ribbon voxels are measured (bool, whole grid; None = everywhere): on the sulcal route
    #: the layer on the image's white matter is drawn but not measured (ribbon.Ribbon.measured).
    measured: np.ndarray | None = None


def checked_ribbon_labels(array: np.ndarray, name: str) -> np.ndarray:
    """Ribbon labels as uint8 after checking the values are 0..4 (before any cast wraps them)."""
    a = np.asarray(array)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.rint(a)):
            raise InputError(f"ribbon '{name}' has non-integer values; expected labels 0..4 "
                             "(1/2 left/right posterior bank, 3/4 left/right control cortex).")
    values = np.unique(a)
    unknown = [v.item() if hasattr(v, "item") else v for v in values if v not in (0, 1, 2, 3, 4)]
    if unknown:
        raise InputError(f"ribbon '{name}' has labels {unknown[:10]}; expected 0..4 "
                         "(1/2 left/right posterior bank, 3/4 left/right control cortex).")
    return a.astype(np.uint8)


def require_measured(metrics: dict, ribbon: np.ndarray, name: str) -> None:
    """Raise InputError if no hemisphere could be measured with the ribbon ``name`` (labels 1..4).

    Used where the user gave the ribbon (an edited or imported segmentation): a result with
    nothing measured would replace a good one and read like a normal finding.
    """
    if metrics["hemispheres"]["left"]["measured"] or metrics["hemispheres"]["right"]["measured"]:
        return
    from .heatmap import BANK, CONTROL, MIN_CONTROL_VOXELS
    from .scoring import MIN_REGION_VOXELS

    rib = np.asarray(ribbon)
    if not rib.any():
        raise InputError(
            f"nothing could be measured: the ribbon '{name}' is empty (no voxel labelled 1-4). Mark the posterior "
            "bank (1 left, 2 right) and its control cortex (3 left, 4 right), e.g. starting from the run's "
            "ribbon.seg.nrrd.")
    counts = ", ".join(f"{side} {int((rib == BANK[side]).sum())} bank / {int((rib == CONTROL[side]).sum())} control"
                       for side in ("left", "right"))
    raise InputError(
        f"nothing could be measured: the ribbon '{name}' has no hemisphere with both a posterior bank (at least "
        f"{MIN_REGION_VOXELS} voxels, label 1 left / 2 right) and control cortex (at least {MIN_CONTROL_VOXELS} "
        f"voxels, label 3 left / 4 right); it has {counts} voxels. Add what is missing and measure again.")


def _depth_for(ribbon: np.ndarray, depth: np.ndarray | None) -> np.ndarray | None:
    """Cortical depth on every voxel of ``ribbon``: known values kept, voxels added by an edit
    take the depth of the nearest voxel that had one."""
    if depth is None:
        return None
    known = depth > 0
    if not known.any():
        return None
    need = (ribbon > 0) & ~known
    if not need.any():
        return depth
    _, idx = ndimage.distance_transform_edt(~known, return_indices=True)
    out = depth.copy()
    out[need] = depth[tuple(i[need] for i in idx)]
    return out


def _handedness_warning(phase_hp: np.ndarray, labels: np.ndarray, qc: dict) -> list:
    """Check the phase sign in the deep grey nuclei (negative for right-handed data)."""
    nuclei = np.isin(labels, DEEP_GREY_LABELS)
    if nuclei.sum() < 50:
        return []
    med = float(np.median(phase_hp[nuclei]))
    qc["deep_grey_phase_rad"] = round(med, 4)
    if med > HANDEDNESS_CHECK_RAD:
        return [f"The high-passed phase of the iron-rich deep grey nuclei is positive (median {med:+.3f} rad); "
                "iron gives negative phase in right-handed data, so the phase sign looks reversed. If this is a "
                "left-handed scanner (GE), set handedness to left; otherwise check the phase series."]
    return []


def field_of_view_mm(vol: Volume) -> np.ndarray:
    """Extent (mm) of the image's bounding box along R-L, A-P and S-I (voxel edges included)."""
    shape_ijk = np.array(vol.shape[::-1], dtype=np.float64)
    corners = np.array([[i, j, k] for i in (-0.5, shape_ijk[0] - 0.5) for j in (-0.5, shape_ijk[1] - 0.5)
                        for k in (-0.5, shape_ijk[2] - 0.5)])
    ras = vol.ras_of_ijk(corners)
    return ras.max(axis=0) - ras.min(axis=0)


def _require_coverage(mag: Volume) -> None:
    """Refuse a field of view too small to hold the motor strips (before any localisation)."""
    fov = field_of_view_mm(mag)
    if min(fov[0], fov[1]) < MIN_FOV_FOR_LOCALISATION_MM:
        raise InputError(
            f"coverage too small for localisation: the magnitude '{mag.name}' covers {fov[0]:.0f} x {fov[1]:.0f} x "
            f"{fov[2]:.0f} mm (left-right x front-back x up-down); finding the motor strips needs at least "
            f"{MIN_FOV_FOR_LOCALISATION_MM:.0f} mm left-right and front-back (a whole axial section of the head). "
            "Give a scan covering the head, or give the ribbon (--ribbon) drawn on this one.")


def _check(cancel):
    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user")


def _validate_inputs(inputs: Inputs) -> None:
    mag = inputs.magnitude if inputs.magnitude is not None else inputs.swi
    if mag is None:
        raise InputError("no magnitude image given: pass the SWI/GRE magnitude volume.")
    if mag.array.ndim not in (3, 4):
        raise InputError(f"magnitude '{mag.name}' is {mag.array.ndim}D; expected a 3D volume (or 4D with echoes first).")
    if inputs.phase is None and (inputs.real is None or inputs.imag is None) and inputs.swi is None:
        raise InputError("no phase image given: pass the phase volume, or real and imaginary volumes.")
    for other in (inputs.phase, inputs.real, inputs.imag, inputs.swi):
        if other is not None:
            mag.require_same_grid(other)
            if other.array.shape != mag.array.shape:
                raise InputError(
                    f"'{other.name}' has {other.array.shape[0] if other.array.ndim == 4 else 1} echo(es) but "
                    f"'{mag.name}' has {mag.array.shape[0] if mag.array.ndim == 4 else 1}: give matching echoes.")
    for opt in (inputs.ribbon, inputs.brain_mask):
        if opt is not None:
            mag.require_same_grid(opt)
    if inputs.brain_mask is not None:
        from .anatomy import MASK_MIN_VOLUME_ML

        ml = float(np.count_nonzero(inputs.brain_mask.array)) * float(np.prod(mag.spacing)) / 1000.0
        if ml < MASK_MIN_VOLUME_ML:
            raise InputError(f"the brain mask '{inputs.brain_mask.name}' holds {ml:.1f} mL; a brain mask covers at "
                             f"least {MASK_MIN_VOLUME_ML:g} mL. Give the brain mask of this scan, or none (one is "
                             "then computed from the magnitude).")
    if inputs.phase is not None and np.array_equal(inputs.phase.array, mag.array):
        raise InputError(f"the phase image '{inputs.phase.name}' holds the same values as the magnitude "
                         f"'{mag.name}': the same image was given twice. Give the phase series as the phase.")
    negative = float(np.mean(mag.array < 0))
    if negative > MAX_NEGATIVE_MAGNITUDE:
        raise InputError(
            f"the magnitude '{mag.name}' is negative in {100 * negative:.0f} % of its voxels (min "
            f"{float(mag.array.min()):g}); a magnitude never is. Check that the magnitude was given as the "
            "magnitude and the phase as the phase (were they swapped?).")


def _phase_radians(inputs: Inputs, p: Parameters, warnings: list, qc: dict) -> np.ndarray:
    from . import phase as phase_mod

    if inputs.phase is None:
        z = phase_mod.complex_from_real_imag(inputs.real.array, inputs.imag.array)
        rad = np.angle(z).astype(np.float32)
        qc["phase_units_detected"] = "real/imaginary"
    else:
        rad, detected, w = phase_mod.to_radians(inputs.phase.array, units=p.phase_units)
        qc["phase_units_detected"] = detected
        warnings.extend(w)
    qc["handedness"] = p.handedness
    return phase_mod.apply_handedness(rad, p.handedness)


def _vendor_swi(swi: Volume, mag: Volume, p: Parameters, warnings: list):
    """The scanner's SWI as the run's SWI (its mIP computed here; no phase, so the high-passed
    phase is zero), marked acquisition.VENDOR_SWI_NOTE in the qc and the warnings."""
    from . import swi as swi_mod
    from .acquisition import VENDOR_SWI_NOTE

    if swi.array.ndim != 3:
        raise InputError(f"the vendor SWI '{swi.name}' is {swi.array.ndim}D; give one 3D SWI volume.")
    img = np.maximum(swi.array.astype(np.float32), np.float32(0.0))
    # along anatomical superior-inferior, whatever the storage orientation (as compute_swi)
    mip, n, step_mm = swi_mod.minimum_intensity_projection_si(img, swi.ijk_to_ras, p.mip_slab_mm)
    warnings.append(f"Input is the scanner's SWI ({VENDOR_SWI_NOTE}): the phase mask, its high-pass and the "
                    "phase units are the scanner's; phase_hp is empty.")
    qc = {"phase_processing": VENDOR_SWI_NOTE, "mip_slab_mm": float(n * step_mm) if n > 1 else 0.0,
          "mip_slices": int(n)}
    magnitude = mag.array.astype(np.float32) if mag is not swi else img
    return swi_mod.SWIResult(swi=img, mip=mip, phase_hp=np.zeros_like(img), magnitude=magnitude,
                             signal_mask=img > 0, qc=qc)


def estimate_snr(magnitude: np.ndarray, brain: np.ndarray, spacing_kji) -> float | None:
    """Brain median over the Rayleigh noise sigma of the air background (None if no air seen).

    Background = voxels at least 15 mm from the brain with magnitude below the brain's 5th
    percentile (air, not scalp); sigma = sqrt(mean(M^2) / 2) (Gudbjartsson & Patz 1995).
    """
    if not brain.any():
        return None
    dist = ndimage.distance_transform_edt(~brain, sampling=spacing_kji)
    low = np.percentile(magnitude[brain], 5)
    bg = (dist > 15.0) & (magnitude < low) & (magnitude > 0)
    if bg.sum() < 1000:
        return None
    sigma = float(np.sqrt(np.mean(magnitude[bg].astype(np.float64) ** 2) / 2.0))
    if sigma <= 0:
        return None
    return round(float(np.median(magnitude[brain])) / sigma, 1)


def _wm_reference(ribbon: np.ndarray, brain: np.ndarray, spacing_kji, wm_prob, gm_prob) -> np.ndarray:
    """Juxtacortical white matter beneath the control cortex (for the diffuse-darkening check)."""
    ctrl = np.isin(ribbon, (3, 4))
    if not ctrl.any():
        return np.zeros_like(brain)
    # Only voxels within WM_REFERENCE_MM[1] of the control cortex can qualify: the distances are
    # computed on the control's box grown by that reach (exact there, and far less work at 1 mm).
    reach = np.ceil(WM_REFERENCE_MM[1] / np.asarray(spacing_kji, float)).astype(int) + 1
    found = ndimage.find_objects(ctrl.astype(np.uint8))[0]
    box = tuple(slice(max(sl.start - r, 0), min(sl.stop + r, n)) for sl, r, n in zip(found, reach, ctrl.shape))
    d = ndimage.distance_transform_edt(~ctrl[box], sampling=spacing_kji)
    near = np.zeros(ctrl.shape, dtype=bool)
    near[box] = (d >= WM_REFERENCE_MM[0]) & (d <= WM_REFERENCE_MM[1])
    near &= brain & (ribbon == 0)
    if wm_prob is not None:
        return near & (wm_prob > 0.9)
    if gm_prob is not None:
        return near & (gm_prob < 0.1)
    return near


def measure(result_like: dict, ribbon_vol: Volume, regions_vol: Volume, p: Parameters) -> tuple:
    """Heatmap and scores from bias-corrected images and a ribbon. Returns (z_swi, z_mag, metrics)."""
    from . import heatmap, scoring

    rib = ribbon_vol.array
    reg = regions_vol.array if regions_vol is not None else None
    depth = result_like.get("depth")
    measured = result_like.get("measured")
    z_swi = heatmap.z_map(result_like["swi_corrected"], rib, reg, depth, measured=measured)
    z_mag = heatmap.z_map(result_like["magnitude_corrected"], rib, reg, depth, measured=measured)
    if measured is not None:       # scores on the measured part of the drawn ribbon only
        rib = np.where(measured, rib, 0).astype(rib.dtype)
    dlab = result_like.get("diffuse_labels")
    wm = _wm_reference(rib if dlab is None else dlab, result_like["brain"], ribbon_vol.spacing_kji,
                       result_like.get("wm_prob"), result_like.get("gm_prob"))
    voxel_ml = float(np.prod(ribbon_vol.spacing)) / 1000.0
    metrics = scoring.score(result_like["swi_corrected"], z_swi, rib, reg, voxel_ml, z_mag=z_mag,
                            wm_reference=wm, z_threshold=p.z_threshold, band_ratio=p.band_ratio,
                            region_band_ratio=p.region_band_ratio,
                            diffuse_ratio=p.diffuse_ratio, spacing_kji=ribbon_vol.spacing_kji,
                            diffuse_labels=dlab)
    # Height (RAS S) of the ribbon voxels only: the profiles need nothing else.
    superior = np.zeros(rib.shape, np.float32)
    kk, jj, ii = np.nonzero(rib)
    superior[kk, jj, ii] = ribbon_vol.ras_of_ijk(np.stack([ii, jj, kk], axis=1))[:, 2]
    metrics["profiles"] = scoring.profiles(z_swi, rib, superior)
    return z_swi, z_mag, metrics


def _coverage_warnings(metrics: dict) -> list:
    """Warnings for banks that could not be measured and for a bank too bright to be cortex."""
    from . import scoring

    out = []
    for side, h in metrics["hemispheres"].items():
        if not h["measured"]:
            out.append(f"The {side} posterior bank could not be measured (too few voxels or no control cortex): "
                       "check coverage of the motor strip and the ribbon.")
            continue
        for name, r in h["regions"].items():
            if not r["measured"]:
                out.append(f"The {name} region of the {side} bank is outside the coverage or too small to measure.")
        c = h.get("band_contrast")
        if c is not None and c > scoring.BANK_BRIGHT_RATIO:
            out.append(f"The {side} posterior bank is {100 * (c - 1):.0f} % brighter than the cortex around it "
                       f"(bank / control {c:.2f}; normal cortex stays at or below {scoring.BANK_BRIGHT_RATIO}): the "
                       "ribbon has probably missed the cortex of the bank (sulcal CSF or another structure), so "
                       f"the {side} side's result is not a finding. Check the ribbon, correct it in Segment Editor "
                       "and re-measure.")
    return out


def run(inputs: Inputs, params: Parameters | None = None, progress=None, cancel=None) -> Result:
    """Run the whole pipeline; see the module docstring."""
    from . import anatomy as anatomy_mod
    from . import heatmap, ribbon as ribbon_mod, swi as swi_mod

    p = (params or Parameters()).resolved()
    say = progress or (lambda f, m: None)
    warnings: list = []
    qc: dict = {}
    timings: dict = {}
    t0 = time.perf_counter()

    def step(name):
        timings[name] = round(time.perf_counter() - step.t, 2)
        step.t = time.perf_counter()
    step.t = t0

    _validate_inputs(inputs)
    for given in (inputs.magnitude, inputs.phase, inputs.real, inputs.imag, inputs.t1, inputs.parcellation):
        if given is not None and given.meta.get("geometry_warning"):
            warnings.append(given.meta["geometry_warning"])
    if inputs.provenance:
        qc["input"] = inputs.provenance
        qc["input_detected"] = inputs.provenance.get("summary")
    mag = inputs.magnitude if inputs.magnitude is not None else inputs.swi
    multi = mag.array.ndim == 4
    if multi and len(p.echo_times) != mag.array.shape[0]:
        raise InputError(
            f"magnitude '{mag.name}' has {mag.array.shape[0]} echoes but {len(p.echo_times)} echo times were given: "
            "give one echo time per echo (in seconds, e.g. --te 0.005 0.010 0.015).")

    if inputs.ribbon is None:
        _require_coverage(mag)

    if inputs.swi is not None:
        say(0.08, "Vendor SWI: minimum intensity projection (no phase processing)")
        sres = _vendor_swi(inputs.swi, mag, p, warnings)
    else:
        say(0.02, "Converting phase to radians")
        rad = _phase_radians(inputs, p, warnings, qc)
        step("phase")
        _check(cancel)

        say(0.08, "Computing SWI and minimum intensity projection")
        sres = swi_mod.compute_swi(
            mag.array, rad, mag.spacing_kji, echo_times=p.echo_times if multi else None, highpass=p.highpass,
            homodyne_window=p.homodyne_window, unwrap_method=p.unwrap_method, gaussian_sigma_ijk=p.gaussian_sigma_ijk,
            mask_type=p.mask_type, mask_power=p.mask_power, softplus=p.softplus, mip_slab_mm=p.mip_slab_mm,
            ijk_to_ras=mag.ijk_to_ras)
    qc.update(sres.qc)
    grid = Volume(np.zeros(mag.shape, np.uint8), mag.ijk_to_ras, mag.name)
    swi_v = grid.with_array(sres.swi.astype(np.float32), "SWI")
    mip_v = grid.with_array(sres.mip.astype(np.float32), "SWI mIP")
    php_v = grid.with_array(sres.phase_hp.astype(np.float32), "High-pass phase")
    mag_v = grid.with_array(sres.magnitude.astype(np.float32), "Magnitude")
    step("swi")
    _check(cancel)

    say(0.25, "Brain mask")
    if inputs.brain_mask is not None:
        brain_v = grid.with_array(inputs.brain_mask.array > 0, "Brain mask")
    else:
        brain_v = anatomy_mod.brain_mask(mag_v)
    brain = brain_v.array > 0
    snr = estimate_snr(mag_v.array, brain, mag.spacing_kji)
    qc["snr_estimate"] = snr
    if snr is not None and snr < LOW_SNR:
        warnings.append(f"Low SNR (about {snr:.0f}): the phase mask and the band contrast are unreliable.")
    step("brain_mask")
    _check(cancel)

    anat = None
    diffuse_labels = None
    if inputs.ribbon is not None:
        say(0.35, "Using the given ribbon segmentation")
        rib_v = grid.with_array(checked_ribbon_labels(inputs.ribbon.array, inputs.ribbon.name), "Ribbon")
        reg_v = ribbon_mod.regions_for(rib_v, None)
        depth = measured = None
        qc["localisation"] = "segmentation"
    else:
        say(0.35, "Locating the precentral and postcentral gyri")
        anat = anatomy_mod.localize(
            mag_v, brain_v, t1=inputs.t1, parcellation=inputs.parcellation, label_table=p.labels,
            hand_knob_ras=inputs.hand_knob_ras, sulcal=p.localisation == "sulcal",
            progress=lambda f, m: say(0.35 + 0.4 * f, m))
        warnings.extend(anat.warnings)
        qc["localisation"] = anat.source
        if anat.source == "parcellation":
            # the normal ranges of this route's own bank, control and white matter (scoring),
            # where the user gave no threshold
            from .scoring import PARCELLATION_THRESHOLDS

            given = params or Parameters()
            p = dataclasses.replace(p, **{k: v for k, v in PARCELLATION_THRESHOLDS.items() if getattr(given, k) is None})
        if "sulcal" in anat.info:
            qc["sulcal"] = anat.info["sulcal"]
            qc["localisation_confidence"] = anat.info["sulcal"].get("confidence")
        qc["registration_quality"] = anat.registration_quality
        step("localisation")
        _check(cancel)
        say(0.78, "Building the posterior-bank ribbon")
        rb = ribbon_mod.build_ribbon(anat, bank_depth_mm=p.bank_depth_mm, hand_knob_ras=inputs.hand_knob_ras)
        rib_v, reg_v = rb.labels, rb.regions
        depth = rb.depth.array if rb.depth is not None else None
        measured = rb.measured
        if measured is not None:
            qc["measured_voxels"] = rb.info.get("measured_voxels")
        # the diffuse flag samples the atlas route's control cortex (see scoring.DIFFUSE_CORTEX_TO_WM)
        diffuse_labels = rb.atlas_labels
        warnings.extend(rb.warnings)
        warnings.extend(_handedness_warning(php_v.array, anat.labels.array, qc))
    step("ribbon")
    _check(cancel)

    say(0.85, "Heatmap and scores")
    gm = getattr(anat, "gm_prob", None)
    wm = getattr(anat, "wm_prob", None)
    swi_c = heatmap.bias_corrected(swi_v.array, brain, mag.spacing_kji)
    mag_c = heatmap.bias_corrected(mag_v.array, brain, mag.spacing_kji)
    cache = {"swi_corrected": swi_c, "magnitude_corrected": mag_c, "brain": brain, "depth": depth,
             "gm_prob": gm.array if gm is not None else None, "wm_prob": wm.array if wm is not None else None,
             "diffuse_labels": diffuse_labels, "measured": measured}
    z_swi, z_mag, metrics = measure(cache, rib_v, reg_v, p)
    if inputs.ribbon is not None:
        require_measured(metrics, rib_v.array, inputs.ribbon.name)
    warnings.extend(_coverage_warnings(metrics))
    step("scoring")
    timings["total"] = round(time.perf_counter() - t0, 2)
    metrics = _finish_metrics(metrics, warnings, p, qc, timings)
    say(1.0, "Done")
    return Result(
        swi=swi_v, mip=mip_v, phase_hp=php_v, magnitude=mag_v, brain_mask=brain_v.with_array(brain.astype(np.uint8), "Brain mask"),
        ribbon=rib_v, regions=reg_v, heatmap=grid.with_array(z_swi, "Hypointensity z (SWI)"),
        heatmap_magnitude=grid.with_array(z_mag, "Hypointensity z (magnitude)"), metrics=metrics,
        warnings=warnings, params=p, anatomy=anat, qc=qc, timings=timings,
        swi_corrected=swi_c, magnitude_corrected=mag_c, gm_prob=cache["gm_prob"], wm_prob=cache["wm_prob"],
        depth=depth, diffuse_labels=diffuse_labels, measured=measured)


def _finish_metrics(metrics, warnings, p, qc, timings):
    metrics = dict(metrics)
    metrics["warnings"] = list(dict.fromkeys(warnings))
    metrics["parameters"] = p.to_dict()
    metrics["qc"] = qc
    metrics["timings_s"] = timings
    metrics["versions"] = versions()
    return metrics


def versions() -> dict:
    import scipy
    import SimpleITK

    out = {"motorbandsign": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "SimpleITK": SimpleITK.Version_VersionString()}
    try:
        import skimage
        out["scikit-image"] = skimage.__version__
    except ImportError:
        pass
    return out


def _edited_regions(result: Result, rib_v: Volume, ribbon_mod) -> Volume:
    """Regions of an edited ribbon: voxels that kept their label keep their region, so an edit
    of one bank leaves the other bank's regions (and scores) as they were; new voxels get the
    split computed for the edited ribbon."""
    fresh = ribbon_mod.regions_for(rib_v, result.anatomy).array
    old_rib = result.ribbon.array
    old_reg = result.regions.array
    keep = (rib_v.array == old_rib) & (old_reg > 0) & (rib_v.array > 0)
    reg = np.where(keep, old_reg, fresh).astype(np.uint8)
    return rib_v.with_array(reg, "Regions")


def remeasure(result: Result, ribbon_labels: Volume, params: Parameters | None = None) -> Result:
    """Recompute heatmap and scores from an edited ribbon (labels 1..4 on the SWI grid)."""
    from . import ribbon as ribbon_mod

    p = (params or result.params).resolved()
    result.swi.require_same_grid(ribbon_labels)
    t0 = time.perf_counter()
    rib = checked_ribbon_labels(ribbon_labels.array, ribbon_labels.name)
    rib_v = result.swi.with_array(rib, "Ribbon")
    reg_v = _edited_regions(result, rib_v, ribbon_mod)
    depth = _depth_for(rib, result.depth)
    cache = {"swi_corrected": result.swi_corrected, "magnitude_corrected": result.magnitude_corrected,
             "brain": result.brain_mask.array > 0, "gm_prob": result.gm_prob, "wm_prob": result.wm_prob,
             "depth": depth, "diffuse_labels": result.diffuse_labels, "measured": result.measured}
    z_swi, z_mag, metrics = measure(cache, rib_v, reg_v, p)
    require_measured(metrics, rib, ribbon_labels.name)
    warnings = [w for w in result.warnings if "could not be measured" not in w and "outside the coverage" not in w]
    warnings += _coverage_warnings(metrics)
    timings = dict(result.timings)
    timings["remeasure"] = round(time.perf_counter() - t0, 2)
    qc = dict(result.qc, localisation="edited segmentation")
    metrics = _finish_metrics(metrics, warnings, p, qc, timings)
    return dataclasses.replace(
        result, ribbon=rib_v, regions=reg_v, heatmap=result.swi.with_array(z_swi, "Hypointensity z (SWI)"),
        heatmap_magnitude=result.swi.with_array(z_mag, "Hypointensity z (magnitude)"), metrics=metrics,
        warnings=warnings, params=p, qc=qc, timings=timings, depth=depth)
