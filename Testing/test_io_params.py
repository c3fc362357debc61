"""File I/O, the Volume type and parameter validation."""

import numpy as np
import pytest
import SimpleITK as sitk

from MotorBandSignLib import io
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.params import Parameters
from MotorBandSignLib.volume import Volume, grid_from


def _oblique():
    c, s = np.cos(0.3), np.sin(0.3)
    d = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    return grid_from((6, 7, 8), (0.9, 1.1, 2.5), d, origin=(10.0, -20.0, 30.0))


def test_volume_sitk_round_trip_keeps_oblique_geometry():
    arr = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    v = Volume(arr, _oblique(), "x")
    back = Volume.from_sitk(v.to_sitk())
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.ijk_to_ras, v.ijk_to_ras, atol=1e-9)
    # sitk's physical point of index (i, j, k) is LPS: flip x, y to compare with RAS.
    lps = v.to_sitk().TransformIndexToPhysicalPoint((3, 2, 1))
    assert np.allclose(v.ras_of_ijk([3, 2, 1]), [-lps[0], -lps[1], lps[2]], atol=1e-9)


def test_write_then_read_nifti_is_identical(tmp_path):
    arr = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    v = Volume(arr, _oblique(), "x")
    p = io.write_volume(v, tmp_path / "a.nii.gz")
    r = io.read_volume(p)
    assert np.array_equal(r.array, arr)
    assert np.allclose(r.ijk_to_ras, v.ijk_to_ras, atol=1e-4)
    assert [f.name for f in tmp_path.iterdir()] == ["a.nii.gz"]  # no temp file left


def test_grid_mismatch_names_what_differs():
    a = Volume(np.zeros((6, 7, 8)), _oblique(), "magnitude")
    m = _oblique()
    m[:3, 3] += 5.0
    b = Volume(np.zeros((6, 7, 8)), m, "phase")
    with pytest.raises(InputError, match="origin"):
        a.require_same_grid(b)
    c = Volume(np.zeros((6, 7, 9)), _oblique(), "phase")
    with pytest.raises(InputError, match=r"size .*'magnitude' and 'phase'|'magnitude' and 'phase'.*size"):
        a.require_same_grid(c)


def test_read_errors_name_file_and_expectation(tmp_path):
    with pytest.raises(InputError, match=r"file not found: .*nope\.nii\.gz"):
        io.read_volume(tmp_path / "nope.nii.gz", what="phase image")
    txt = tmp_path / "notes.nii.gz"
    txt.write_text("not an image")
    with pytest.raises(InputError, match=r"cannot read .*notes\.nii\.gz as an image.*Expected a NIfTI"):
        io.read_volume(txt)
    img4 = sitk.JoinSeries([sitk.Image(4, 5, 6, sitk.sitkFloat32)] * 3)
    p4 = tmp_path / "four.nii.gz"
    sitk.WriteImage(img4, str(p4))
    with pytest.raises(InputError, match=r"four\.nii\.gz is 4D .*expected a 3D volume"):
        io.read_volume(p4, what="magnitude image")
    v = io.read_volume(p4, allow_4d=True)
    assert v.array.shape == (3, 6, 5, 4)


def test_nan_in_nifti_is_refused_not_zeroed(tmp_path):
    import nibabel as nib

    a = np.ones((4, 5, 6), np.float32)
    a[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(a, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InputError, match=r"phase image: .*nan\.nii\.gz has 1 NaN voxel"):
        io.read_volume(tmp_path / "nan.nii.gz", what="phase image")


def test_parameters_resolve_defaults_and_reject_bad_values():
    p = Parameters().resolved()
    assert p.mask_power > 0 and p.highpass in ("homodyne", "unwrap")
    assert p.z_threshold == pytest.approx(2.0)
    with pytest.raises(InputError, match=r"handedness='up' is not one of right, left"):
        Parameters(handedness="up").resolved()
    with pytest.raises(InputError, match="echo times in seconds"):
        Parameters(echo_times=(20.0,)).validate()
    with pytest.raises(InputError, match="mip_slab_mm=-1 must be positive"):
        Parameters(mip_slab_mm=-1).validate()
