"""Phase input: units to radians, scanner handedness, real/imaginary pairs.

Everything downstream (:mod:`MotorBandSignLib.swi`) works on right-handed phase in radians.
This module turns what scanners and converters store into that, and says what it did.

Vendor storage (shared/reference/BRIEF.md, "Vendor phase storage"):

- Siemens stores 12-bit integers 0..4095 for -pi..pi; dcm2niix applies the DICOM slope 2 and
  intercept -4096 and writes -4096..4094 (step 2).
- Philips sometimes stores about -500..496, sometimes radians; GE often stores real/imaginary.
- Degrees (-180..180 or 0..360) appear in some research exports.
- Tools (e.g. CLEAR-SWI, Eckstein et al. 2021, NeuroImage 237:118175) rescale any range that is
  not 2*pi wide linearly to [-pi, pi]; :func:`to_radians` does so only when told
  (``units="rescale"``): detecting units it refuses a range that fits no storage, and a
  "phase" that looks like a magnitude, since a wrong image given as phase would otherwise be
  rescaled into a plausible-looking result. Stated units that contradict the values are refused.

Handedness: a right-handed system (Siemens, most vendors) gives negative phase for
paramagnetic sources in the usual geometry; GE is left-handed and stores the opposite sign
(Haacke et al. 2004, MRM 52:612; BRIEF.md).
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

#: Units accepted by :func:`to_radians` ("rescale": the range found, mapped linearly to one turn).
UNITS = ("auto", "radians", "degrees", "siemens", "rescale")

#: Handedness values accepted by :func:`apply_handedness`.
HANDEDNESS = ("right", "left")

#: Number of phase levels of Siemens' 12-bit phase images (0..4095; BRIEF.md).
SIEMENS_LEVELS = 4096
#: Share of the stored range a Siemens phase image must span (its 0.1-99.9 percentiles) to be
#: recognised: noise in air and wraps make real phase images fill their range uniformly
#: (phase of pure noise is uniform on [-pi, pi): Gudbjartsson & Patz 1995, MRM 34:910).
SIEMENS_FILL = 0.9

#: Percentiles used for the robust range (per cent). A few stray voxels (interpolation,
#: corrupt pixels) must not decide the units, so detection looks at the 0.1..99.9 % range and
#: uses min/max only as a hard bound with a tolerance.
_ROBUST_PERCENTILES = (0.1, 99.9)

#: Largest number of values examined for detection (a regular subsample; percentiles of
#: 30 M voxels would cost ~0.5 s and add nothing).
_MAX_SAMPLE = 2_000_000

_TWO_PI = 2.0 * np.pi


#: A phase image whose values are all >= 0 and of which at least this share of the non-zero
#: voxels lie in the lowest 5 % of its range looks like a magnitude: the air around the head
#: (a third or more of a typical field of view) is Rayleigh noise near 0, whereas stored phase
#: is spread over its range (uniform in air: Gudbjartsson & Patz 1995, MRM 34:910). Provisional.
MAGNITUDE_LIKE_LOW_SHARE = 0.3


def _override_hint() -> str:
    return ("Say what the phase is stored in: --phase-units radians|degrees|siemens|rescale on the command "
            "line, 'Phase units' in the Slicer module, phase_units= in Python.")


def _looks_like_magnitude(s: np.ndarray, lo: float, hi: float) -> bool:
    """All values >= 0 and the non-zero ones crowded near the bottom of the range (see
    :data:`MAGNITUDE_LIKE_LOW_SHARE`)."""
    if lo < 0 or hi <= lo:
        return False
    nz = s[s != 0]
    if nz.size == 0:
        return False
    return float(np.mean(nz <= lo + 0.05 * (hi - lo))) >= MAGNITUDE_LIKE_LOW_SHARE


def _contradiction(units: str, arr: np.ndarray, s: np.ndarray) -> str | None:
    """Why the stated ``units`` cannot describe these values (None if they can); completes
    "Phase units were given as UNITS, but ..."."""
    lo, hi = float(arr.min()), float(arr.max())
    integer_valued = arr.dtype.kind in "iu" or bool(np.all(np.mod(s, 1.0) == 0.0))
    if units == "degrees" and lo >= -_TWO_PI - 1e-3 and hi <= _TWO_PI + 1e-3:
        # Stored degree phase spans far more than 2 pi degrees (noise in air wraps everywhere).
        return (f"the values {lo:.3g}..{hi:.3g} are radians (within one turn); read as degrees the phase "
                "would be near zero everywhere")
    if units == "siemens" and not integer_valued:
        return f"the values ({lo:.3g}..{hi:.3g}) are not integers, as Siemens phase is stored"
    if units == "siemens" and hi - lo < 0.1 * SIEMENS_LEVELS:
        return (f"the values {lo:g}..{hi:g} fill under a tenth of the {SIEMENS_LEVELS} Siemens levels, which "
                "stored Siemens phase fills")
    if units == "radians" and integer_valued and hi - lo > 2 * _TWO_PI:
        return (f"the values are integers {lo:g}..{hi:g}, several turns wide: stored scanner integers "
                "(e.g. Siemens 0..4095), not radians")
    return None


def _check_numeric(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind not in "iuf":
        raise InputError(
            f"{what} has data type {arr.dtype}, not real numbers. Give a real-valued phase map "
            "(for complex data pass np.angle(data), or use complex_from_real_imag for real/imaginary pairs)."
        )
    if arr.size == 0:
        raise InputError(f"{what} is empty. Give a non-empty phase volume.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(
            f"{what} contains {n} NaN or infinite values. Replace them (e.g. np.nan_to_num(phase)) "
            "or mask them out before computing SWI; phase has no meaningful value there."
        )


def _sample(arr: np.ndarray) -> np.ndarray:
    flat = arr.reshape(-1)  # a view for contiguous arrays, a copy otherwise
    step = max(1, flat.size // _MAX_SAMPLE)
    return flat[::step]


def _siemens_to_radians(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """Map Siemens integers to [-pi, pi): 0..4095 (scanner) or -4096..4094 (dcm2niix)."""
    lo = float(arr.min())
    hi = float(arr.max())
    out = np.array(arr, dtype=np.float32, copy=True)
    if lo < 0:
        if lo < -SIEMENS_LEVELS or hi > SIEMENS_LEVELS - 1:
            raise InputError(
                f"Phase values {lo:g}..{hi:g} are outside the Siemens dcm2niix range -4096..4094. "
                "Check the rescale slope/intercept of the file, or pass --phase-units rescale to map the range found to one turn."
            )
        out *= np.float32(np.pi / SIEMENS_LEVELS)  # dcm2niix: slope 2, intercept -4096
        return out, "-4096..4094 (dcm2niix: slope 2, intercept -4096)"
    if hi > SIEMENS_LEVELS - 1:
        raise InputError(
            f"Phase values {lo:g}..{hi:g} are outside the Siemens range 0..4095. "
            "Check the rescale slope/intercept of the file, or pass --phase-units rescale to map the range found to one turn."
        )
    out -= np.float32(SIEMENS_LEVELS / 2)
    out *= np.float32(2 * np.pi / SIEMENS_LEVELS)
    return out, "0..4095 (scanner 12-bit)"


def _wrap_inplace(x: np.ndarray) -> np.ndarray:
    """Wrap float32 phase to [-pi, pi) in place."""
    x += np.float32(np.pi)
    np.mod(x, np.float32(_TWO_PI), out=x)
    x -= np.float32(np.pi)
    return x


def to_radians(phase, units: str = "auto"):
    """Convert a stored phase map to radians, detecting the units unless told.

    Parameters
    ----------
    phase : array_like
        Phase values of any real dtype (any shape; typically ``(k, j, i)`` or
        ``(echo, k, j, i)``). Not modified.
    units : {"auto", "radians", "degrees", "siemens", "rescale"}
        ``"auto"`` detects the units from the values (see Notes); the others state them
        (refused when the values contradict them, e.g. radians stated as degrees);
        ``"rescale"`` maps the range found linearly to one turn.

    Returns
    -------
    radians : ndarray of float32
        A new array. Detected or forced degrees, Siemens and rescaled data are mapped to
        [-pi, pi); radians are returned as given (already within one turn for "auto").
    detected_units : str
        ``"radians"``, ``"degrees"``, ``"siemens"`` or ``"rescaled"`` (unknown range mapped
        linearly to [-pi, pi)).
    warnings : list of str
        Human-readable notes on guesses made (empty when the units are unambiguous).

    Raises
    ------
    InputError
        Unknown ``units``, non-real data, NaN/inf values, values that contradict the stated
        units, a magnitude-like image, or (auto) values that fit no known storage.

    Notes
    -----
    Detection uses the 0.1 and 99.9 percentiles (robust span) and the integer-ness of the
    values; min/max are only hard bounds (tolerance 1 %):

    1. all values within [-pi, pi] (or [0, 2 pi]) -> radians;
    2. within [-180, 180] (or [0, 360]) with a robust span over pi -> degrees;
    3. integer-valued within 0..4095 with a robust span of at least 2048 levels, or
       within -4096..4095 with negative values and a span of at least 4096 -> Siemens;
    4. anything else -> InputError (pass ``units="rescale"`` to map [min, max], one level
       wider for integers, to [-pi, pi)).

    Before these, values that are all >= 0 and crowd the bottom of their range (air noise
    around a head) are refused as a magnitude given as phase.

    References
    ----------
    Siemens/dcm2niix ranges: Li X et al. 2016, J Neurosci Methods 264:47 (dcm2niix);
    rescaling convention: Eckstein K et al. 2021, NeuroImage 237:118175 (CLEAR-SWI).
    """
    if units not in UNITS:
        raise InputError(f"units must be one of {UNITS}, got {units!r}. {_override_hint()}")
    arr = np.asarray(phase)
    _check_numeric(arr, "Phase")
    warnings: list[str] = []

    if units != "auto":
        why = _contradiction(units, arr, _sample(arr).astype(np.float64))
        if why:
            raise InputError(f"Phase units were given as {units}, but {why}. Use --phase-units auto (or the units "
                             "the data are stored in), and check that the phase series was given.")
    if units == "rescale":
        return _rescale(arr), "rescaled", warnings
    if units == "radians":
        return np.array(arr, dtype=np.float32, copy=True), "radians", warnings
    if units == "degrees":
        out = np.array(arr, dtype=np.float32, copy=True)
        out *= np.float32(np.pi / 180.0)
        return _wrap_inplace(out), "degrees", warnings
    if units == "siemens":
        out, _ = _siemens_to_radians(arr)
        return out, "siemens", warnings

    # ---- auto -------------------------------------------------------------------------------
    s = _sample(arr).astype(np.float64)
    lo_all, hi_all = float(arr.min()), float(arr.max())
    if hi_all == lo_all:
        raise InputError(
            f"Phase image is constant (every voxel {lo_all:g}): there is no phase information. "
            "Select the phase series of the acquisition (not the magnitude, a mask or an empty image).")
    if _looks_like_magnitude(s, lo_all, hi_all):
        raise InputError(
            f"Phase image looks like a magnitude: its values {lo_all:g}..{hi_all:g} are all positive and "
            f"{100 * MAGNITUDE_LIKE_LOW_SHARE:.0f} % or more of them lie near the bottom of the range, like air "
            "around a head. Give the phase series as the phase (were magnitude and phase swapped, or the "
            "magnitude given twice?).")
    p_lo, p_hi = (float(v) for v in np.percentile(s, _ROBUST_PERCENTILES))
    span = p_hi - p_lo
    integer_valued = arr.dtype.kind in "iu" or bool(np.all(np.mod(s, 1.0) == 0.0))

    def within(lo, hi, tol):
        return lo_all >= lo - tol and hi_all <= hi + tol

    # 1. radians: one turn, either centred or 0..2pi (small tolerance for float round-off).
    tol_rad = 1e-3 * np.pi
    if within(-np.pi, np.pi, tol_rad) or within(0.0, _TWO_PI, tol_rad):
        if span < np.pi:
            warnings.append(
                f"Phase spans only {span:.2f} rad (0.1-99.9 percentile); assumed radians. "
                f"If that is wrong, {_override_hint()}"
            )
        out = np.array(arr, dtype=np.float32, copy=True)
        if hi_all > np.pi + tol_rad:  # 0..2pi storage
            _wrap_inplace(out)
        return out, "radians", warnings

    # 2. degrees.
    tol_deg = 1.8
    if within(-180.0, 180.0, tol_deg) or within(0.0, 360.0, tol_deg):
        if span < 180.0:
            warnings.append(
                f"Phase values {lo_all:g}..{hi_all:g} fit degrees but span only {span:.1f} (0.1-99.9 "
                f"percentile); assumed degrees. If that is wrong, {_override_hint()}"
            )
        out = np.array(arr, dtype=np.float32, copy=True)
        out *= np.float32(np.pi / 180.0)
        return _wrap_inplace(out), "degrees", warnings

    # 3. Siemens integers.
    # A real phase image fills nearly the whole stored range (noise in air wraps everywhere), so
    # a narrower integer range (e.g. milliradians, -3142..3141) is not taken for Siemens; the
    # signed dcm2niix form (slope 2, intercept -4096) holds even numbers only.
    if integer_valued:
        if lo_all >= 0 and hi_all <= SIEMENS_LEVELS - 1 and span >= SIEMENS_FILL * SIEMENS_LEVELS:
            out, _ = _siemens_to_radians(arr)
            return out, "siemens", warnings
        if (lo_all < 0 and lo_all >= -SIEMENS_LEVELS and hi_all <= SIEMENS_LEVELS - 1
                and span >= SIEMENS_FILL * 2 * SIEMENS_LEVELS):
            out, _ = _siemens_to_radians(arr)
            return out, "siemens", warnings

    # 4. anything else is not guessed: a range that fits no storage is as likely another image
    #    given by mistake as phase stored in an unusual range.
    raise InputError(
        f"Phase values {lo_all:g}..{hi_all:g} match no known phase storage (radians -pi..pi or 0..2pi, "
        "degrees -180..180 or 0..360, Siemens integers 0..4095 or -4096..4095). If this is phase stored in "
        "another range (e.g. Philips -500..496), pass --phase-units rescale to map the range found linearly "
        "to -pi..pi; otherwise check that the phase series was given.")


def _rescale(arr: np.ndarray) -> np.ndarray:
    """The full range of ``arr`` mapped linearly to [-pi, pi) (one level wider for integers, as
    the top level is one step short of a full turn), as float32."""
    lo, hi = float(arr.min()), float(arr.max())
    integer_valued = arr.dtype.kind in "iu" or bool(np.all(np.mod(_sample(arr), 1.0) == 0.0))
    width = hi - lo + (1.0 if integer_valued else 0.0)
    if width <= 0:
        width = 1.0
    out = np.array(arr, dtype=np.float32, copy=True)
    out -= np.float32(lo)
    out *= np.float32(_TWO_PI / width)
    out -= np.float32(np.pi)
    return _wrap_inplace(out)


def apply_handedness(phase, handedness: str = "right") -> np.ndarray:
    """Return phase in the right-handed convention.

    Parameters
    ----------
    phase : array_like
        Phase in radians. Not modified.
    handedness : {"right", "left"}
        The scanner's convention. ``"right"`` (Siemens, Philips, most) returns the phase as is
        (as float32, no copy if it already is); ``"left"`` (GE) flips the sign into a new array
        (Haacke et al. 2004, MRM 52:612; BRIEF.md).

    Raises
    ------
    InputError
        For any other ``handedness``.
    """
    h = handedness.strip().lower() if isinstance(handedness, str) else handedness
    if h not in HANDEDNESS:
        raise InputError(
            f"handedness must be 'right' (Siemens, Philips, most scanners) or 'left' (GE), got "
            f"{handedness!r}. Pass one of those two."
        )
    arr = np.asarray(phase, dtype=np.float32)
    if h == "right":
        return arr
    return np.negative(arr)


def complex_from_real_imag(real, imag) -> np.ndarray:
    """Combine real and imaginary images into one complex64 image.

    Parameters
    ----------
    real, imag : array_like
        Same shape, real-valued, finite. Not modified.

    Returns
    -------
    ndarray of complex64
        ``real + 1j * imag``; ``np.abs`` gives the magnitude, ``np.angle`` the phase in
        radians (in the scanner's handedness: pass it through :func:`apply_handedness`).

    Raises
    ------
    InputError
        Shapes differ, non-real data, or NaN/inf values.
    """
    re = np.asarray(real)
    im = np.asarray(imag)
    if re.shape != im.shape:
        raise InputError(
            f"Real and imaginary images have different shapes {re.shape} and {im.shape}. "
            "Give both from the same acquisition (same size and echo count)."
        )
    for a, what in ((re, "Real image"), (im, "Imaginary image")):
        if a.dtype.kind not in "iuf":
            raise InputError(f"{what} has data type {a.dtype}; give real-valued numbers.")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise InputError(f"{what} contains NaN or infinite values. Replace or mask them first.")
    out = np.empty(re.shape, dtype=np.complex64)
    out.real = re
    out.imag = im
    return out


def magnitude_phase_from_real_imag(real, imag) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude (float32) and phase (float32 radians, scanner handedness) of a real/imag pair."""
    z = complex_from_real_imag(real, imag)
    return np.abs(z), np.angle(z).astype(np.float32, copy=False)
