"""Brain mask, input checks and imported parcellations (MotorBandSignLib.anatomy).

The atlas-registration route is exercised in test_ribbon.py, where its (slow) results are
cached once per session and shared by the ribbon tests.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
import pytest

from MotorBandSignLib import anatomy, ribbon, templates
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.volume import Volume, grid_from

#: FreeSurfer aparc+aseg numbers for each REGION_LABELS value (cortical labels on GM only).
FS_OF_REGION = {1: 1024, 2: 2024, 3: 1022, 4: 2022, 5: 1028, 6: 2028, 7: 1029, 8: 2029,
                9: 11, 10: 50, 11: 10, 12: 49}


def dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return 2.0 * (a & b).sum() / s if s else 1.0


def freesurfer_labelmap(case, white_matter: bool = True) -> Volume:
    """aparc+aseg-like labels from a case's true anatomy: cortical labels where GM >= 0.5,
    cerebral white matter (2 / 41) elsewhere in the brain, by side of the midline (left out with
    ``white_matter=False``: a cortex-only label map)."""
    lab = case.anatomy.array
    gm = case.gm.array >= 0.5
    brain = case.brain_mask.array > 0
    out = np.zeros(lab.shape, np.int32)
    kji = np.argwhere(brain)
    x = case.anatomy.ras_of_ijk(kji[:, ::-1])[:, 0]
    if white_matter:
        out[tuple(kji.T)] = np.where(x < 0, 2, 41)
    for region, fs in FS_OF_REGION.items():
        cortical = fs >= 1000
        sel = (lab == region) & (gm if cortical else True)
        out[sel] = fs
    return case.anatomy.with_array(out, "aparc+aseg (synthetic)")


# ------------------------------------------------------------------------------------------------
# brain mask
# ------------------------------------------------------------------------------------------------
def test_brain_mask_covers_brain(bilateral_case):
    m = anatomy.brain_mask(bilateral_case.magnitude)
    assert m.array.dtype == np.uint8 and m.shape == bilateral_case.magnitude.shape
    truth = bilateral_case.brain_mask.array > 0
    assert dice(m.array, truth) > 0.85
    # every voxel of the true posterior bank is inside the mask
    bank = bilateral_case.truth.array > 0
    assert (m.array[bank] > 0).mean() > 0.98


def test_brain_mask_does_not_modify_input(bilateral_case):
    before = bilateral_case.magnitude.array.copy()
    anatomy.brain_mask(bilateral_case.magnitude)
    np.testing.assert_array_equal(before, bilateral_case.magnitude.array)


def test_brain_mask_robust_to_bias_field(bilateral_case):
    mag = bilateral_case.magnitude
    kji = np.indices(mag.shape).reshape(3, -1).T
    ras = mag.ras_of_ijk(kji[:, ::-1]).reshape(mag.shape + (3,))
    bias = np.exp(0.008 * ras[..., 0] + 0.006 * ras[..., 2]).astype(np.float32)  # ~x3 across the head
    m = anatomy.brain_mask(mag.with_array(mag.array * bias, "biased"))
    assert dice(m.array, bilateral_case.brain_mask.array > 0) > 0.85


def test_multiecho_magnitude_is_combined(phantom_case):
    case = phantom_case("multiecho")
    assert case.magnitude.array.ndim == 4
    m = anatomy.brain_mask(case.magnitude)
    assert dice(m.array, case.brain_mask.array > 0) > 0.85


def _grid(shape=(60, 70, 64), spacing=(2.0, 2.0, 2.0)):
    return grid_from(shape, spacing)


def test_noise_only_is_rejected():
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(0, 1, (60, 70, 64)) + 1j * rng.normal(0, 1, (60, 70, 64))).astype(np.float32)
    with pytest.raises(InputError, match="no brain found"):
        anatomy.brain_mask(Volume(a, _grid(), "noise"))


def test_binary_mask_is_rejected(bilateral_case):
    mask = bilateral_case.brain_mask.with_array(bilateral_case.brain_mask.array.astype(np.float32), "mask")
    with pytest.raises(InputError, match="looks like a mask or a label map"):
        anatomy.brain_mask(mask)


def test_constant_image_is_rejected():
    with pytest.raises(InputError, match="is constant"):
        anatomy.brain_mask(Volume(np.full((40, 40, 40), 7.0, np.float32), _grid((40, 40, 40)), "flat"))


def test_phase_image_is_rejected(bilateral_case):
    ph = bilateral_case.phase
    with pytest.raises(InputError, match="looks like a phase"):
        anatomy.brain_mask(ph)


def test_localize_rejects_empty_mask(bilateral_case):
    empty = bilateral_case.brain_mask.with_array(np.zeros(bilateral_case.magnitude.shape, np.uint8), "empty")
    with pytest.raises(InputError, match="is empty"):
        anatomy.localize(bilateral_case.magnitude, empty)


# ------------------------------------------------------------------------------------------------
# imported parcellations
# ------------------------------------------------------------------------------------------------
def test_freesurfer_parcellation_import(bilateral_case):
    case = bilateral_case
    # cortex labels only: this template phantom has no sulcal CSF apart from its white matter, so
    # the bank falls back to the precentral cortex nearest the postcentral labels (the individual
    # brains' own aparc-like maps, with CSF and white matter, check ribbon.parcellation_bank)
    fs = freesurfer_labelmap(case, white_matter=False)
    a = anatomy.localize(case.magnitude, case.brain_mask, parcellation=fs, label_table="freesurfer")
    assert a.source == "parcellation" and a.registration_quality is None
    for region in (1, 2, 3, 4):
        expect = (case.anatomy.array == region) & (case.gm.array >= 0.5)
        assert dice(a.labels.array == region, expect) > 0.99
    # the bank from the subject's own parcellation is the precentral cortex facing the postcentral
    # gyrus. (This phantom's truth is itself "precentral cortex within a few mm of postcentral
    # cortex" on the template's labels, so it is checked for cover, not as an exact answer; the
    # individual brains check the overlap: test_end_to_end_individual.)
    r = ribbon.build_ribbon(a)
    sp = case.magnitude.spacing_kji
    for side in (1, 2):
        bank, true = r.labels.array == side, case.truth.array == side
        assert np.all(a.labels.array[bank] == side)
        d_post = ndimage.distance_transform_edt(a.labels.array != side + 2, sampling=sp)
        near = np.mean(d_post[bank] <= 6.0)
        cover = np.sum(bank & true) / true.sum()
        assert near >= 0.9 and cover >= 0.8, (side, near, cover)


def test_synthseg_preset_and_user_tables(bilateral_case, tmp_path):
    case = bilateral_case
    fs = freesurfer_labelmap(case)
    ref = anatomy.localize(case.magnitude, case.brain_mask, parcellation=fs, label_table="synthseg").labels.array
    # a dict name -> value
    table = {"ctx-lh-precentral": 1024, "ctx-rh-precentral": 2024, "ctx-lh-postcentral": 1022,
             "ctx-rh-postcentral": 2022, "ctx-lh-superiorfrontal": 1028, "ctx-rh-superiorfrontal": 2028}
    a = anatomy.localize(case.magnitude, case.brain_mask, parcellation=fs, label_table=table)
    for region in (1, 2, 3, 4, 5, 6):
        np.testing.assert_array_equal(a.labels.array == region, ref == region)
    # a "value,name" CSV and a FreeSurfer LUT give the same
    csv = tmp_path / "labels.csv"
    csv.write_text("value,name\n" + "".join(f"{v},{k}\n" for k, v in table.items()))
    lut = tmp_path / "FreeSurferColorLUT.txt"
    lut.write_text("#No. Label Name: R G B A\n" + "".join(f"{v}  {k}  10 20 30 0\n" for k, v in table.items()))
    for path in (csv, lut):
        b = anatomy.localize(case.magnitude, case.brain_mask, parcellation=fs, label_table=str(path))
        np.testing.assert_array_equal(b.labels.array, a.labels.array)


def test_parcellation_on_another_grid_is_resampled(bilateral_case):
    """A parcellation stored LPS-flipped on its own grid lands on the same world voxels."""
    case = bilateral_case
    fs = freesurfer_labelmap(case)
    m = fs.ijk_to_ras.copy()
    ni, nj = fs.shape[2], fs.shape[1]
    m[:3, 3] = fs.ras_of_ijk([ni - 1, nj - 1, 0])
    m[:3, 0] *= -1
    m[:3, 1] *= -1
    flipped = Volume(np.ascontiguousarray(fs.array[:, ::-1, ::-1]), m, "LPS-stored aparc+aseg")
    a = anatomy.localize(case.magnitude, case.brain_mask, parcellation=fs)
    b = anatomy.localize(case.magnitude, case.brain_mask, parcellation=flipped)
    np.testing.assert_array_equal(a.labels.array, b.labels.array)
    assert not any("left labels" in w for w in b.warnings)


def test_parcellation_without_motor_labels_is_rejected(bilateral_case):
    case = bilateral_case
    plain = case.anatomy.with_array(np.where(case.brain_mask.array > 0, 3, 0).astype(np.int32), "synthseg no parc")
    with pytest.raises(InputError, match="--parc"):
        anatomy.localize(case.magnitude, case.brain_mask, parcellation=plain, label_table="synthseg")


def test_intensity_image_as_parcellation_is_rejected(bilateral_case):
    case = bilateral_case
    with pytest.raises(InputError, match="not a label map"):
        anatomy.localize(case.magnitude, case.brain_mask, parcellation=case.magnitude.with_array(
            case.magnitude.array * 1.37 + 0.25, "magnitude"))


def test_bad_label_table_path(bilateral_case):
    with pytest.raises(InputError, match="no such preset or file"):
        anatomy.localize(bilateral_case.magnitude, bilateral_case.brain_mask,
                         parcellation=freesurfer_labelmap(bilateral_case), label_table="/nonexistent/lut.txt")


def test_segmentation_passes_through(bilateral_case):
    case = bilateral_case
    seg = case.truth.with_array(case.truth.array.copy(), "edited ribbon")
    a = anatomy.localize(case.magnitude, case.brain_mask, parcellation=seg, label_table="ribbon")
    assert a.source == "segmentation"
    r = ribbon.build_ribbon(a)
    np.testing.assert_array_equal(r.labels.array, case.truth.array)
    assert set(np.unique(r.regions.array[case.truth.array > 0])) <= {1, 2, 3}


def test_swapped_sides_warn(bilateral_case):
    """A parcellation whose left/right labels are mirrored is flagged."""
    case = bilateral_case
    fs = freesurfer_labelmap(case).array
    swapped = fs.copy()
    for l, r in ((1024, 2024), (1022, 2022)):
        swapped[fs == l], swapped[fs == r] = r, l
    a = anatomy.localize(case.magnitude, case.brain_mask, parcellation=case.anatomy.with_array(swapped, "swapped"))
    assert any("left labels" in w for w in a.warnings)


def test_hand_knob_check(bilateral_case):
    case = bilateral_case
    fs = freesurfer_labelmap(case)
    pre = np.argwhere(case.anatomy.array == 1)
    near = case.anatomy.ras_of_ijk(pre[len(pre) // 2][::-1])
    a = anatomy.localize(case.magnitude, case.brain_mask, parcellation=fs, hand_knob_ras={"left": tuple(near)})
    assert not any("hand-knob" in w for w in a.warnings)
    far = near + np.array([0.0, 60.0, 0.0])
    b = anatomy.localize(case.magnitude, case.brain_mask, parcellation=fs, hand_knob_ras={"left": tuple(far)})
    assert any("hand-knob" in w for w in b.warnings)
    with pytest.raises(InputError, match="unknown side"):
        anatomy.localize(case.magnitude, case.brain_mask, parcellation=fs, hand_knob_ras={"middle": (0, 0, 0)})


def test_region_label_values_are_the_templates():
    assert anatomy.FREESURFER_PRESET.keys() == templates.REGION_LABELS.keys()


def test_t1_on_another_grid_drives_the_registration(phantom_case):
    """A second image of the subject on its own (coarser, oblique) grid may drive the
    registration; outputs stay on the magnitude grid and inputs are not modified."""
    import SimpleITK as sitk

    case = phantom_case("partial")
    mag = case.magnitude
    before = mag.array.copy()
    # the "T1": the same head resampled to 2 mm on a grid rotated 10 degrees about S
    img = mag.to_sitk(mag.array.astype(np.float32))
    rot = sitk.Euler3DTransform()
    rot.SetRotation(0.0, 0.0, np.deg2rad(10.0))
    d = np.array(rot.GetMatrix()).reshape(3, 3) @ np.array(img.GetDirection()).reshape(3, 3)
    size = [int(s * sp / 2.0) for s, sp in zip(img.GetSize(), img.GetSpacing())]
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()]))
    origin = centre - d @ (np.array(size, float) - 1) / 2 * 2.0
    t1_img = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), [2.0] * 3,
                           d.ravel().tolist(), 0.0, sitk.sitkFloat32)
    t1 = Volume.from_sitk(t1_img, "T1 (resampled)")
    mask = anatomy.brain_mask(mag)
    a = anatomy.localize(mag, mask, t1=t1, sulcal=False)
    np.testing.assert_array_equal(before, mag.array)
    assert a.source == "atlas" and a.labels.shape == mag.shape
    r = ribbon.build_ribbon(a)
    for side in (1, 2):
        assert dice(r.labels.array == side, case.truth.array == side) >= 0.5
