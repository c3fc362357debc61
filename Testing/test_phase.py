"""Tests of MotorBandSignLib.phase: units detection, handedness, real/imaginary input."""

import numpy as np
import pytest

from MotorBandSignLib import physics
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.phase import (
    SIEMENS_LEVELS,
    apply_handedness,
    complex_from_real_imag,
    magnitude_phase_from_real_imag,
    to_radians,
)

#: Half a Siemens quantisation step in radians: the largest error of a 12-bit phase.
Q_HALF = np.pi / SIEMENS_LEVELS


def wrapped_phase(shape=(12, 20, 24), seed=0):
    """A smooth phase spanning many turns, wrapped to [-pi, pi): fills the whole range."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    ph = 0.9 * i + 0.5 * j * j / shape[1] + 0.7 * k + rng.normal(0, 0.05, shape)
    return physics.wrap(ph)


def circ_diff(a, b):
    """Largest absolute phase difference modulo 2 pi."""
    return float(np.max(np.abs(np.angle(np.exp(1j * (np.asarray(a, np.float64) - np.asarray(b, np.float64)))))))


def to_siemens_unsigned(ph):
    # 12-bit quantiser: +pi and -pi are the same level (0)
    return (np.round((ph.astype(np.float64) + np.pi) / (2 * np.pi) * SIEMENS_LEVELS) % SIEMENS_LEVELS).astype(np.uint16)


def test_radians_detected_and_returned_unchanged_as_new_array():
    ph = wrapped_phase()
    before = ph.copy()
    out, units, warns = to_radians(ph)
    assert units == "radians"
    assert warns == []
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ph)
    assert not np.shares_memory(out, ph)
    out += 1.0
    np.testing.assert_array_equal(ph, before)  # caller's array untouched


def test_radians_0_to_2pi_are_wrapped_into_minus_pi_pi():
    ph = wrapped_phase()
    shifted = (ph + np.pi).astype(np.float32)  # 0..2pi storage
    out, units, _ = to_radians(shifted)
    assert units == "radians"
    assert out.min() >= -np.pi - 1e-6 and out.max() < np.pi + 1e-6
    assert circ_diff(out, shifted) < 1e-5


def test_siemens_unsigned_and_dcm2niix_signed_give_radians_to_quantisation():
    ph = wrapped_phase()
    u = to_siemens_unsigned(ph)
    out_u, units_u, warns = to_radians(u)
    assert units_u == "siemens" and warns == []
    assert circ_diff(out_u, ph) <= Q_HALF * 1.01
    signed = u.astype(np.int16) * 2 - SIEMENS_LEVELS  # dcm2niix: slope 2, intercept -4096
    assert signed.min() >= -4096 and signed.max() <= 4094
    out_s, units_s, _ = to_radians(signed)
    assert units_s == "siemens"
    np.testing.assert_allclose(out_s, out_u, atol=1e-6)
    # integers stored as float (a reader applied the slope) are still recognised
    out_f, units_f, _ = to_radians(u.astype(np.float32))
    assert units_f == "siemens"
    np.testing.assert_array_equal(out_f, out_u)


def test_degrees_detected_float_and_integer():
    ph = wrapped_phase()
    deg = np.degrees(ph).astype(np.float32)
    out, units, warns = to_radians(deg)
    assert units == "degrees" and warns == []
    assert circ_diff(out, ph) < 1e-5
    deg_int = np.round(np.degrees(ph)).astype(np.int16)
    out_i, units_i, _ = to_radians(deg_int)
    assert units_i == "degrees"
    assert circ_diff(out_i, ph) <= np.radians(0.5) * 1.01


def test_detection_uses_percentiles_for_span_warnings():
    # a narrow radians map (span ~0.6 rad) is still radians, with a warning that says how to override
    ph = (0.3 * np.sin(np.linspace(0, 20, 4000))).astype(np.float32).reshape(10, 20, 20)
    out, units, warns = to_radians(ph)
    assert units == "radians"
    assert len(warns) == 1 and "units=" in warns[0] and "assumed radians" in warns[0]
    # a degrees map spanning only +-10 degrees: beyond pi, so not radians; flagged as uncertain
    deg = np.linspace(-10, 10, 4000, dtype=np.float32).reshape(10, 20, 20)
    out, units, warns = to_radians(deg)
    assert units == "degrees"
    assert len(warns) == 1 and "assumed degrees" in warns[0]
    np.testing.assert_allclose(out.max(), np.radians(10), rtol=1e-5)


def test_unknown_range_is_refused_unless_rescale_is_stated():
    ph = wrapped_phase()
    philips = np.round((ph + np.pi) / (2 * np.pi) * 997 - 500).astype(np.int16)  # about -500..496
    with pytest.raises(InputError, match=r"Phase values -500\.\.49\d match no known phase storage .* pass "
                                         r"--phase-units rescale"):
        to_radians(philips)
    out, units, warns = to_radians(philips, units="rescale")
    assert units == "rescaled" and warns == []
    # linear map of [min, max + 1 step) onto one turn: the phase comes back to within a step
    step = 2 * np.pi / (int(philips.max()) - int(philips.min()) + 1)
    # the rescaled phase equals the original up to a constant offset and quantisation
    d = np.angle(np.exp(1j * (out.astype(np.float64) - ph)))
    assert float(np.max(np.abs(d - np.median(d)))) <= step


@pytest.mark.parametrize("units", ["radians", "degrees", "siemens"])
def test_override_forces_units(units):
    x = np.arange(0, 4096, dtype=np.float32).reshape(16, 16, 16)
    out, detected, _ = to_radians(x, units=units) if units != "radians" else to_radians(x[:1, :1, :4], units=units)
    assert detected == units
    if units == "degrees":
        assert circ_diff(out.ravel()[:361], np.radians(np.arange(361))) < 1e-4
    if units == "siemens":
        assert out.ravel()[0] == pytest.approx(-np.pi) and out.ravel()[2048] == pytest.approx(0.0, abs=1e-6)


def test_bad_units_and_siemens_out_of_range_raise():
    with pytest.raises(InputError, match="units must be one of"):
        to_radians(np.zeros((2, 2, 2)), units="gradians")
    with pytest.raises(InputError, match="outside the Siemens range 0..4095"):
        to_radians(np.array([[[0, 5000]]]), units="siemens")


def test_nan_phase_raises_with_fix():
    ph = wrapped_phase()
    ph[3, 4, 5] = np.nan
    with pytest.raises(InputError, match=r"1 NaN.*nan_to_num"):
        to_radians(ph)


def test_complex_phase_rejected():
    with pytest.raises(InputError, match="complex_from_real_imag|np.angle"):
        to_radians(np.ones((2, 2, 2), np.complex64))


def test_handedness():
    ph = wrapped_phase()
    np.testing.assert_array_equal(apply_handedness(ph), ph)
    np.testing.assert_array_equal(apply_handedness(ph, "left"), -ph)
    np.testing.assert_array_equal(apply_handedness(ph, " Left "), -ph)
    with pytest.raises(InputError, match="handedness must be 'right'.*'left' \\(GE\\)"):
        apply_handedness(ph, "up")


def test_complex_from_real_imag():
    rng = np.random.default_rng(3)
    re, im = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    z = complex_from_real_imag(re, im)
    assert z.dtype == np.complex64
    np.testing.assert_allclose(z.real, re, rtol=1e-6)
    np.testing.assert_allclose(z.imag, im, rtol=1e-6)
    mag, ph = magnitude_phase_from_real_imag(re, im)
    np.testing.assert_allclose(mag, np.hypot(re, im), rtol=1e-5)
    np.testing.assert_allclose(ph, np.arctan2(im, re), atol=1e-6)
    with pytest.raises(InputError, match="different shapes"):
        complex_from_real_imag(re, im[:2])
    bad = im.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="Imaginary image contains NaN or infinite"):
        complex_from_real_imag(re, bad)


def test_constant_phase_is_refused():
    with pytest.raises(InputError, match=r"Phase image is constant \(every voxel 0\).*Select the phase series"):
        to_radians(np.zeros((4, 5, 6), np.float32))


def test_milliradian_integers_are_not_taken_for_siemens():
    rng = np.random.default_rng(3)
    rad = rng.uniform(-np.pi, np.pi, (8, 16, 16))
    mrad = np.round(rad * 1000).astype(np.int16)  # -3142..3141
    with pytest.raises(InputError, match="match no known phase storage"):
        to_radians(mrad)
    out, detected, warnings = to_radians(mrad, units="rescale")
    assert detected == "rescaled"
    # Rescaling the full range to one turn recovers the radians to the rounding step.
    assert np.max(np.abs(np.angle(np.exp(1j * (out - rad))))) < 5e-3
    # A real dcm2niix Siemens image (even values -4096..4094) is still recognised.
    sie = (np.round((rad + np.pi) / (2 * np.pi) * 4095) * 2 - 4096).astype(np.int16)
    assert to_radians(sie)[1] == "siemens"
