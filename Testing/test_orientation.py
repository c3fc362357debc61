"""Any storage orientation gives the same SWI, mIP, ribbon and verdict (issue 13, item 4).

The stored copies are exact re-indexings of one acquisition: the voxels are the same, the array
axes are permuted or reversed and the IJK-to-RAS matrix follows, so every voxel keeps its RAS
position. A result computed on a copy, re-indexed back, is compared with the result on the
original.
"""

import numpy as np
import pytest

from MotorBandSignLib import io, pipeline, swi
from MotorBandSignLib.params import Parameters
from MotorBandSignLib.volume import Volume, grid_from


def reindexed(vol: Volume, order, flips=()) -> Volume:
    """The same image stored with array axes ``order`` (a permutation of (0, 1, 2) over (k, j, i))
    and the array axes ``flips`` (after the permutation) reversed; voxels keep their RAS position."""
    a = np.transpose(vol.array, tuple(range(vol.array.ndim - 3)) + tuple(x + vol.array.ndim - 3 for x in order))
    lead = vol.array.ndim - 3
    for ax in flips:
        a = np.flip(a, axis=lead + ax)
    # new array index (kji) n maps to old index o: o[order[t]] = n[t], reversed axes n -> size-1-n
    shape_kji = a.shape[-3:]
    new_to_old = np.zeros((4, 4))
    new_to_old[3, 3] = 1.0
    for t in range(3):
        old_kji = order[t]
        old_ijk, new_ijk = 2 - old_kji, 2 - t
        if t in flips:
            new_to_old[old_ijk, new_ijk] = -1.0
            new_to_old[old_ijk, 3] = shape_kji[t] - 1
        else:
            new_to_old[old_ijk, new_ijk] = 1.0
    return Volume(np.ascontiguousarray(a), vol.ijk_to_ras @ new_to_old, vol.name, dict(vol.meta))


def back_to(original: Volume, stored: Volume, array: np.ndarray) -> np.ndarray:
    """``array`` (on ``stored``'s grid) re-indexed onto ``original``'s grid (exact, no resampling)."""
    kk, jj, ii = np.indices(original.shape)
    ras = original.ras_of_ijk(np.stack([ii, jj, kk], axis=-1).reshape(-1, 3))
    ijk = np.rint(stored.ijk_of_ras(ras)).astype(int)
    assert np.allclose(stored.ijk_of_ras(ras), ijk, atol=1e-6)
    return array[ijk[:, 2], ijk[:, 1], ijk[:, 0]].reshape(original.shape)


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_reindexed_copies_keep_every_voxel_at_its_ras_position():
    v = Volume(np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5), grid_from((3, 4, 5), (1.0, 2.0, 3.0)))
    for order, flips in (((2, 0, 1), ()), ((1, 2, 0), (0,)), ((0, 1, 2), (1, 2))):
        c = reindexed(v, order, flips)
        assert c.shape == tuple(v.shape[o] for o in order)
        np.testing.assert_array_equal(back_to(v, c, c.array), v.array)


# --- geometry-derived slice axis and B0 ---------------------------------------------------------

def _rotation_x(deg):
    t = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def test_b0_and_slice_axis_follow_the_geometry():
    axial = grid_from((10, 10, 10), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(swi.b0_direction_kji(axial), [1, 0, 0], atol=1e-12)
    assert swi.acquisition_slice_axis(axial) == 0
    # sagittal storage: i runs A, j runs S, k runs R (isotropic): B0 along j, slices normal to it
    sag = grid_from((10, 10, 10), (1.0, 1.0, 1.0), direction=np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float))
    np.testing.assert_allclose(swi.b0_direction_kji(sag), [0, 1, 0], atol=1e-12)
    assert swi.acquisition_slice_axis(sag) == 1
    # the same sagittal storage with 2 mm partitions along k (R-L): the coarse axis is the slice axis
    assert swi.acquisition_slice_axis(grid_from((10, 10, 10), (1.0, 1.0, 2.0),
                                                direction=np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float))) == 0
    # coronal storage, LPS-flipped i: j runs S
    cor = grid_from((10, 10, 10), (1.0, 1.0, 1.0), direction=np.array([[-1, 0, 0], [0, 0, 1], [0, 1, 0]], float))
    np.testing.assert_allclose(swi.b0_direction_kji(cor), [0, 1, 0], atol=1e-12)
    # oblique by 30 degrees about R: B0 has cos 30 along k and sin 30 along j (index units scaled)
    obl = grid_from((10, 10, 10), (1.0, 1.0, 1.0), direction=_rotation_x(30))
    np.testing.assert_allclose(swi.b0_direction_kji(obl), [np.cos(np.radians(30)), 0.5, 0.0], atol=1e-12)
    assert swi.acquisition_slice_axis(obl) == 0


# --- mIP along superior-inferior ----------------------------------------------------------------

def test_mip_of_a_sagittal_copy_is_the_axial_mip():
    rng = np.random.default_rng(3)
    v = Volume(rng.random((20, 12, 14)).astype(np.float32), grid_from((20, 12, 14), (0.8, 0.9, 1.0)))
    ref, n_ref = swi.minimum_intensity_projection(v.array, 1.0, 8.0)
    for order, flips in (((1, 0, 2), ()), ((2, 0, 1), (1,)), ((0, 1, 2), (0,))):
        c = reindexed(v, order, flips)
        mip, n, step = swi.minimum_intensity_projection_si(c.array, c.ijk_to_ras, 8.0)
        assert (n, step) == (n_ref, 1.0)
        np.testing.assert_array_equal(back_to(v, c, mip), ref)


def test_mip_of_an_oblique_grid_runs_along_superior_inferior():
    """One dark voxel in a bright oblique (30 degrees about R) grid: the mIP spreads it along RAS S.

    A projection along the array axis k would displace it by sin 30 = half of the offset into A;
    along S every darkened voxel lies within half a voxel diagonal of the S line through it."""
    shape = (31, 31, 31)
    m = grid_from(shape, (1.0, 1.0, 1.0), direction=_rotation_x(30))
    img = np.ones(shape, np.float32)
    img[15, 15, 15] = 0.0
    vol = Volume(img, m)
    mip, n, step = swi.minimum_intensity_projection_si(img, m, 8.0)
    dark = np.argwhere(mip == 0.0)  # (k, j, i)
    offsets = vol.ras_of_ijk(dark[:, ::-1]) - vol.ras_of_ijk([15, 15, 15])
    assert step == pytest.approx(1.0 / np.cos(np.radians(30)))
    assert n == 7 and len(dark) == 7
    lateral = np.linalg.norm(offsets[:, :2], axis=1)
    assert lateral.max() <= 0.5 * np.sqrt(3) + 1e-9
    assert offsets[:, 2].max() == pytest.approx(-offsets[:, 2].min())
    assert offsets[:, 2].max() >= 3 * step - 0.5 * np.sqrt(3)
    # the old projection along k does put the dark voxel off S by sin 30 per mm
    along_k, _ = swi.minimum_intensity_projection(img, 1.0, 8.0)
    off_k = vol.ras_of_ijk(np.argwhere(along_k == 0.0)[:, ::-1]) - vol.ras_of_ijk([15, 15, 15])
    assert np.linalg.norm(off_k[:, :2], axis=1).max() == pytest.approx(3 * 0.5)


def test_compute_swi_filters_in_the_acquisition_plane_of_any_storage():
    """Gaussian high-pass [4, 4, 0] in the plane normal to the 2 mm partitions, for a sagittal
    and a flipped copy of the same 3D acquisition: the same SWI, phase and mIP, voxel for voxel."""
    rng = np.random.default_rng(5)
    shape = (16, 28, 24)
    k, j, i = np.indices(shape).astype(np.float32)
    mag = (100.0 * ((k - 8) ** 2 / 49 + (j - 14) ** 2 / 144 + (i - 12) ** 2 / 100 < 1) + rng.random(shape)).astype(np.float32)
    phase = (0.05 * j + 0.02 * (i - 12) ** 2 / 12 + 0.3 * np.sin(k / 2) + rng.normal(0, 0.05, shape)).astype(np.float32)
    axial = Volume(mag, grid_from(shape, (0.9, 1.0, 2.0)))
    ref = swi.compute_swi(mag, phase, axial.spacing_kji, ijk_to_ras=axial.ijk_to_ras)
    assert ref.qc["slice_axis"] == "k" and ref.qc["mip_axis"] == "superior-inferior"
    for order, flips in (((2, 0, 1), ()), ((1, 2, 0), (0, 2))):
        cm, cp = reindexed(axial, order, flips), reindexed(axial.with_array(phase), order, flips)
        res = swi.compute_swi(cm.array, cp.array, cm.spacing_kji, ijk_to_ras=cm.ijk_to_ras)
        assert res.qc["slice_axis"] == "kji"[order.index(0)]
        for name in ("swi", "phase_hp", "mip"):
            np.testing.assert_allclose(back_to(axial, cm, getattr(res, name)), getattr(ref, name), atol=1e-4,
                                       err_msg=name)
    with pytest.raises(Exception, match="does not match the voxel size"):
        swi.compute_swi(mag, phase, (1.0, 1.0, 1.0), ijk_to_ras=axial.ijk_to_ras)


# --- the whole pipeline ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def axial_run():
    from phantoms import simulate as phantom

    case = phantom.fixture("left")
    res = pipeline.run(pipeline.Inputs(magnitude=case.magnitude, phase=case.phase), Parameters(localisation="atlas"))
    return case, res


def test_sagittal_lps_storage_gives_the_same_ribbon_and_verdict(axial_run):
    """The axial (RAS-stored) "left" fixture stored sagittal (k runs R-L) with its new i and k
    axes reversed (the anterior-to-posterior, right-to-left order of a DICOM LPS export): one
    run covers the permutation and the flips (each costs a whole pipeline run)."""
    order, flips = (2, 0, 1), (0, 2)
    case, ref = axial_run
    mag, ph = reindexed(case.magnitude, order, flips), reindexed(case.phase, order, flips)
    res = pipeline.run(pipeline.Inputs(magnitude=mag, phase=ph), Parameters(localisation="atlas"))
    assert ref.metrics["pattern"] == "left"
    assert res.metrics["pattern"] == ref.metrics["pattern"]
    rib = back_to(case.magnitude, mag, res.ribbon.array)
    assert dice(rib > 0, ref.ribbon.array > 0) >= 0.95
    for label in (1, 2, 3, 4):
        assert dice(rib == label, ref.ribbon.array == label) >= 0.9, label
    np.testing.assert_allclose(back_to(case.magnitude, mag, res.mip.array), ref.mip.array, rtol=1e-4, atol=1e-3)
    assert res.qc["slice_axis"] == "j" and ref.qc["slice_axis"] == "k"
    for side in ("left", "right"):
        a, b = res.metrics["hemispheres"][side], ref.metrics["hemispheres"][side]
        assert a["band_present"] is b["band_present"]
        assert a["band_contrast"] == pytest.approx(b["band_contrast"], abs=0.02)


def test_one_reader_decides_the_geometry_io_and_slicer_agree(tmp_path):
    """A NIfTI whose qform and sform disagree: the command-line reader (io) and Slicer's reader
    (mrml) place every voxel at the same RAS position."""
    nib = pytest.importorskip("nibabel")
    from MotorBandSignLib import mrml

    a = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)  # nibabel order (i, j, k)
    q = np.eye(4)
    q[:3, :3] = _rotation_x(20) * [1.0, 1.2, 2.0]
    q[:3, 3] = (-3.0, -4.0, -5.0)
    s = q.copy()
    s[:3, 3] += (10.0, 0.0, 0.0)
    img = nib.Nifti1Image(a, None)
    img.set_qform(q, 1)
    img.set_sform(s, 2)
    p = tmp_path / "conflict.nii.gz"
    nib.save(img, p)
    v_io = io.read_volume(p)
    scene = mrml.new_headless_scene()
    v_slicer = mrml.read_volume(p, scene)
    np.testing.assert_allclose(v_slicer.ijk_to_ras, v_io.ijk_to_ras, atol=1e-4)
    np.testing.assert_array_equal(v_slicer.array, v_io.array)
    used = "the sform" if np.allclose(v_io.ijk_to_ras, s, atol=1e-3) else "the qform"
    assert np.allclose(v_io.ijk_to_ras, s if used == "the sform" else q, atol=1e-3)
    assert f"the one ITK and Slicer read ({used})" in v_io.meta["geometry_warning"]
