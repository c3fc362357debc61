"""Heatmap and scoring on synthetic arrays with known answers."""

import numpy as np
import pytest

from MotorBandSignLib import heatmap, scoring


def _ribbon(shape=(30, 40, 40)):
    """Left (i < 20) and right halves, each with a bank slab and a control slab, 3 regions along k."""
    rib = np.zeros(shape, np.uint8)
    reg = np.zeros(shape, np.uint8)
    rib[:, 10:14, 2:18] = 1     # left bank
    rib[:, 20:26, 2:18] = 3     # left control
    rib[:, 10:14, 22:38] = 2    # right bank
    rib[:, 20:26, 22:38] = 4    # right control
    for r, ks in zip((1, 2, 3), (slice(0, 10), slice(10, 20), slice(20, 30))):
        reg[ks][rib[ks] > 0] = r
    return rib, reg


def _image(rib, dark_left=0.0, dark_right=0.0, sd=0.05, seed=0):
    rng = np.random.default_rng(seed)
    img = 1.0 + sd * rng.standard_normal(rib.shape)
    img[rib == 1] -= dark_left
    img[rib == 2] -= dark_right
    return img.astype(np.float32)


def test_z_map_matches_known_shift():
    rib, reg = _ribbon()
    img = _image(rib, dark_left=0.1, sd=0.05)
    z = heatmap.z_map(img, rib, reg)
    # The left bank is 0.1 darker with noise SD 0.05: median z about 2.
    assert np.median(z[rib == 1]) == pytest.approx(2.0, abs=0.25)
    assert abs(np.median(z[rib == 2])) < 0.25
    assert np.all(z[rib == 0] == 0)


def test_depth_matched_reference_removes_depth_trend():
    rib, reg = _ribbon()
    # Intensity falls with cortical depth; the bank is sampled only superficially (0-1 mm), the
    # control through the whole depth (0-3 mm). Unmatched, the bank looks brighter than control.
    j = np.arange(rib.shape[1])[None, :, None] * np.ones(rib.shape)
    depth = np.where(np.isin(rib, (1, 2)), (j - 10) % 2, (j - 20) % 4).astype(np.float32)
    rng = np.random.default_rng(1)
    img = (1.0 - 0.1 * depth + 0.02 * rng.standard_normal(rib.shape)).astype(np.float32)
    plain = heatmap.z_map(img, rib, reg)
    matched = heatmap.z_map(img, rib, reg, depth=depth)
    assert np.median(plain[rib == 1]) < -0.3
    assert abs(np.median(matched[rib == 1])) < 0.2


def test_bias_correction_flattens_a_smooth_gradient():
    shape = (40, 60, 60)
    mask = np.zeros(shape, bool)
    mask[5:35, 5:55, 5:55] = True
    grad = np.linspace(0.5, 1.5, shape[2])[None, None, :] * np.ones(shape)
    out = heatmap.bias_corrected(grad, mask, (1.0, 1.0, 1.0), sigma_mm=10.0)
    inner = out[10:30, 15:45, 15:45]
    assert inner.std() / inner.mean() < 0.03
    assert np.all(out[~mask] == 0)


# Darkenings chosen against the thresholds: a band whose bank / control ratio lies midway
# between the region threshold and the grade-2 ratio (grade 1), one 0.05 below the grade-2 ratio
# (grade 2), none at all.
G2 = scoring.grade2_ratio(scoring.DEFAULT_REGION_BAND_RATIO)
assert G2 < scoring.DEFAULT_REGION_BAND_RATIO
MILD = 1.0 - 0.5 * (scoring.DEFAULT_REGION_BAND_RATIO + G2)
MARKED = 1.0 - (G2 - 0.05)


@pytest.mark.parametrize("dl, dr, expected", [(MILD, MILD, "bilateral"), (MILD, 0.0, "left"),
                                              (0.0, MILD, "right"), (0.0, 0.0, "absent")])
def test_pattern_call(dl, dr, expected):
    rib, reg = _ribbon()
    img = _image(rib, dl, dr)
    z = heatmap.z_map(img, rib, reg)
    m = scoring.score(img, z, rib, reg, 0.001)
    assert m["pattern"] == expected
    assert m["hemispheres"]["left"]["band_present"] == (dl > 0)
    assert m["hemispheres"]["right"]["band_present"] == (dr > 0)
    assert m["thresholds"]["band_ratio"] == scoring.DEFAULT_BAND_RATIO
    if expected == "left":
        assert m["laterality_index"] == pytest.approx(1.0, abs=0.2)
        assert m["hemispheres"]["left"]["band_contrast"] == pytest.approx(1.0 - MILD, abs=0.02)
        assert m["hemispheres"]["left"]["hypointense_fraction"] > 0.8
        assert set(m["hemispheres"]["left"]["regions"]) == {"medial", "intermediate", "lateral"}
        assert m["hemispheres"]["left"]["band_regions"] == ["medial", "intermediate", "lateral"]
        assert m["hemispheres"]["left"]["grade"] == 1
        assert m["total_grade"] == 3


def test_marked_band_gets_grade_two():
    rib, reg = _ribbon()
    img = _image(rib, MARKED, 0.0)
    m = scoring.score(img, heatmap.z_map(img, rib, reg), rib, reg, 0.001)
    assert m["hemispheres"]["left"]["grade"] == 2
    assert [r["grade"] for r in m["hemispheres"]["left"]["regions"].values()] == [2, 2, 2]
    assert m["total_grade"] == 6


def test_a_shift_the_voxel_spread_hides_is_still_called():
    """Real cortex is heterogeneous (sulcal CSF, veins, folding): control SD about half the
    median. A bank 25 % darker then has a median z of only ~0.5, yet the ratio call finds it."""
    rib, reg = _ribbon()
    img = _image(rib, 0.25, 0.0, sd=0.5, seed=3)
    img = np.abs(img)
    m = scoring.score(img, heatmap.z_map(img, rib, reg), rib, reg, 0.001)
    left = m["hemispheres"]["left"]
    assert left["z_median"] < 1.0
    assert left["band_contrast"] < scoring.DEFAULT_BAND_RATIO and left["band_present"]
    assert m["pattern"] == "left"


def test_regional_band_only_in_its_region():
    rib, reg = _ribbon()
    img = _image(rib)
    img[(rib == 1) & (reg == 2)] -= MILD
    z = heatmap.z_map(img, rib, reg)
    m = scoring.score(img, z, rib, reg, 0.001)
    left = m["hemispheres"]["left"]
    regs = left["regions"]
    assert regs["intermediate"]["band_present"] and regs["intermediate"]["grade"] == 1
    assert not regs["medial"]["band_present"] and not regs["lateral"]["band_present"]
    assert regs["medial"]["grade"] == 0
    # the whole bank's median is normal (two thirds of it are), the region call finds the band
    assert left["band_contrast"] > scoring.DEFAULT_BAND_RATIO
    assert left["band_present"] and left["band_regions"] == ["intermediate"]
    assert m["pattern"] == "left"


def test_diffuse_flag_uses_cortex_to_white_matter_ratio():
    rib, reg = _ribbon()
    wm = np.zeros(rib.shape, bool)
    wm[:, 30:36, :] = True
    for cortex, expected in ((0.95, False), (0.8, True)):
        img = np.where(wm, 1.0, 0.0).astype(np.float32)
        img[rib > 0] = cortex
        z = heatmap.z_map(img, rib, reg)
        m = scoring.score(img, z, rib, reg, 0.001, wm_reference=wm)
        assert m["nonspecific_diffuse"] is expected
        assert m["hemispheres"]["left"]["cortex_to_wm_ratio"] == pytest.approx(cortex, abs=1e-3)


def test_region_outside_coverage_is_not_measured():
    rib, reg = _ribbon()
    rib[20:] = 0  # lateral region (k >= 20) cut off
    reg[20:] = 0
    img = _image(rib)
    z = heatmap.z_map(img, rib, reg)
    m = scoring.score(img, z, rib, reg, 0.001)
    lat = m["hemispheres"]["left"]["regions"]["lateral"]
    assert lat["measured"] is False and lat["grade"] is None and lat["band_present"] is False


def test_laterality_and_grade_helpers():
    assert scoring.laterality_index(0.8, 1.0) == 1.0
    assert scoring.laterality_index(1.0, 0.8) == -1.0
    assert scoring.laterality_index(1.05, 1.1) == 0.0
    assert scoring.laterality_index(0.7, 0.9) == 0.5
    assert scoring.laterality_index(None, 0.8) == -1.0
    r, g2 = scoring.DEFAULT_REGION_BAND_RATIO, scoring.grade2_ratio(scoring.DEFAULT_REGION_BAND_RATIO)
    assert [scoring.grade(c) for c in (None, r + 0.01, r, g2 + 0.01, g2, g2 - 0.01)] == [None, 0, 1, 1, 2, 2]
    # grade 2 is a further margin below the normal limit, never above the absolute "marked" level
    assert scoring.grade2_ratio(0.9) == scoring.GRADE2_RATIO
    assert scoring.grade2_ratio(0.7) == pytest.approx(0.7 - scoring.GRADE2_MARGIN)


def test_profiles_bin_by_height():
    rib, _ = _ribbon()
    z = np.zeros(rib.shape, np.float32)
    z[rib == 1] = np.broadcast_to(np.arange(rib.shape[0])[:, None, None], rib.shape)[rib == 1]
    superior = np.broadcast_to(np.arange(rib.shape[0])[:, None, None] * 1.0, rib.shape)
    prof = scoring.profiles(z, rib, superior, bin_mm=5.0)
    assert prof["left"]["height_mm"][:2] == [2.5, 7.5]
    assert prof["left"]["z_median"][:2] == [2.0, 7.0]
    assert len(prof["right"]["height_mm"]) == 6


def test_a_bank_brighter_than_normal_cortex_is_flagged_as_missed():
    """Nothing in the pathology brightens the bank: a bank / control ratio above the normal
    range's upper limit (scoring.BANK_BRIGHT_RATIO) warns that the ribbon missed the bank; a
    normal or banded side gives no such warning."""
    from MotorBandSignLib import pipeline

    rib, reg = _ribbon()
    img = _image(rib, dark_left=-0.4, dark_right=MARKED)      # left bank 40 % brighter (e.g. in CSF)
    m = scoring.score(img, heatmap.z_map(img, rib, reg), rib, reg, 0.001)
    assert m["hemispheres"]["left"]["band_contrast"] == pytest.approx(1.4, abs=0.02)
    assert scoring.BANK_BRIGHT_RATIO < 1.4
    warns = pipeline._coverage_warnings(m)
    assert len(warns) == 1 and warns[0].startswith("The left posterior bank is 40 % brighter than the cortex around it")
    assert "Segment Editor" in warns[0] and "not a finding" in warns[0]
    normal = scoring.score(_image(rib), heatmap.z_map(_image(rib), rib, reg), rib, reg, 0.001)
    assert pipeline._coverage_warnings(normal) == []
