"""The MRML adapter on real slicer-core scenes: geometry, segmentations, files, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")

from MotorBandSignLib import mrml  # noqa: E402
from MotorBandSignLib.errors import InputError  # noqa: E402
from MotorBandSignLib.volume import LPS_TO_RAS, Volume  # noqa: E402


def _rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_matrix():
    """IJK-to-RAS with a rotation about all three axes and spacing 0.7 x 0.9 x 2.5 mm."""
    m = np.eye(4)
    m[:3, :3] = _rotation(0.21, -0.13, 0.37) @ np.diag([0.7, 0.9, 2.5])
    m[:3, 3] = [12.25, -31.5, 40.125]
    return m


@pytest.fixture(scope="module")
def scene():
    s = mrml.new_headless_scene()
    yield s
    s.Clear(1)


def test_get_scene_is_one_headless_scene_per_process():
    s1 = mrml.get_scene()
    s2 = mrml.get_scene()
    assert s1 is s2
    assert s1.IsA("vtkMRMLScene")
    assert slicer.mrmlScene is s1
    # the bootstrap registered the colour tables and the slice presets
    assert s1.GetNodeByID("vtkMRMLColorTableNodeGrey") is not None
    assert s1.GetFirstNodeByClass("vtkMRMLSliceNode") is not None or s1.GetNumberOfNodesByClass("vtkMRMLSliceNode") == 0


def test_array_node_array_identical_with_oblique_anisotropic_grid(scene):
    rng = np.random.default_rng(1)
    array = rng.normal(size=(6, 7, 9)).astype(np.float32)
    m = oblique_matrix()
    vol = Volume(array, m, "oblique")
    before = array.copy()
    node = mrml.node_from_volume(vol, scene)
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetName() == "oblique"
    array[0, 0, 0] = 1e6  # the node holds a copy: later changes to the input do not reach it
    back = mrml.volume_from_node(node)
    assert back.array.dtype == np.float32
    assert back.array.shape == (6, 7, 9)
    assert np.array_equal(back.array, before)
    assert np.allclose(back.ijk_to_ras, m, atol=1e-12, rtol=0)
    assert np.allclose(node.GetSpacing(), [0.7, 0.9, 2.5], atol=1e-12)
    # the returned array is a copy too: writing into it leaves the node alone
    back.array[:] = 0
    assert np.array_equal(mrml.volume_from_node(node).array, before)


def test_labelmap_and_vector_nodes(scene):
    m = oblique_matrix()
    labels = np.zeros((4, 5, 6), dtype=np.int16)
    labels[1:3, 2:4, 1:5] = 2
    node = mrml.node_from_volume(Volume(labels, m, "lab"), scene, labelmap=True)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(mrml.volume_from_node(node).array, labels)
    echoes = np.stack([np.full((4, 5, 6), e, dtype=np.float32) for e in (1.0, 2.0, 3.0)])
    vnode = mrml.node_from_volume(Volume(echoes, m, "echoes"), scene)
    assert vnode.IsA("vtkMRMLVectorVolumeNode")
    back = mrml.volume_from_node(vnode)
    assert back.array.shape == (3, 4, 5, 6)
    assert np.array_equal(back.array, echoes)
    with pytest.raises(InputError, match="non-integer"):
        mrml.node_from_volume(Volume(labels + 0.5, m, "bad"), scene, labelmap=True)


def test_update_node_in_place(scene):
    m = oblique_matrix()
    node = mrml.node_from_volume(Volume(np.zeros((3, 4, 5), np.float32), m, "a"), scene)
    n_before = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    m2 = m.copy()
    m2[:3, 3] += 5
    again = mrml.node_from_volume(Volume(np.ones((2, 3, 4), np.float32), m2, "b"), scene, node=node, name="b")
    assert again is node
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == n_before
    back = mrml.volume_from_node(node)
    assert back.shape == (2, 3, 4) and back.array.sum() == 24
    assert np.allclose(back.ijk_to_ras, m2, atol=1e-12)


def test_linear_parent_transform_applied(scene):
    m = oblique_matrix()
    node = mrml.node_from_volume(Volume(np.zeros((3, 4, 5), np.float32), m, "moved"), scene)
    t = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[:3, 3] = [1.0, 2.0, 3.0]
    t.SetMatrixTransformToParent(mrml._vtk_matrix(shift))
    node.SetAndObserveTransformNodeID(t.GetID())
    assert np.allclose(mrml.volume_from_node(node).ijk_to_ras, shift @ m, atol=1e-12)


def _write_oblique_nifti(path: Path, array: np.ndarray):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((0.8, 1.1, 2.0))
    img.SetOrigin((-10.5, 22.0, 7.25))
    img.SetDirection(tuple(_rotation(0.3, 0.1, -0.2).ravel()))
    sitk.WriteImage(img, str(path))
    return img


def test_nifti_voxel_has_same_ras_as_simpleitk(scene, tmp_path):
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    path = tmp_path / "swi_oblique.nii.gz"
    _write_oblique_nifti(path, array)
    node = mrml.read_volume_node(path, scene)
    assert node.GetName() == "swi_oblique"
    vol = mrml.volume_from_node(node)
    assert np.array_equal(vol.array, array)
    ref = sitk.ReadImage(str(path))
    for ijk in [(0, 0, 0), (6, 5, 4), (3, 2, 1), (1, 5, 3)]:
        lps = np.array(ref.TransformIndexToPhysicalPoint(tuple(int(x) for x in ijk)))
        ras_expected = LPS_TO_RAS[:3, :3] @ lps
        ras_node = vol.ras_of_ijk(ijk)
        assert np.allclose(ras_node, ras_expected, atol=1e-4), (ijk, ras_node, ras_expected)
        # and MRML's own IJK-to-RAS agrees, point by point
        vm = slicer.vtkMRMLScalarVolumeNode.GetIJKToRASMatrix
        import vtk

        ijk_to_ras = vtk.vtkMatrix4x4()
        vm(node, ijk_to_ras)
        ras_mrml = ijk_to_ras.MultiplyPoint((*[float(x) for x in ijk], 1.0))[:3]
        assert np.allclose(ras_mrml, ras_expected, atol=1e-4)


def test_read_volume_node_without_volumes_logic_uses_storage_node(tmp_path):
    """A bare scene (no bootstrap) still reads volumes, through an archetype storage node."""
    import slicer as s

    bare = s.vtkMRMLScene()
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "bare.nrrd"
    img = _write_oblique_nifti(path, array)
    vol = mrml.volume_from_node(mrml.read_volume_node(path, bare))
    assert np.array_equal(vol.array, array)
    lps = np.array(img.TransformIndexToPhysicalPoint((5, 4, 3)))
    assert np.allclose(vol.ras_of_ijk((5, 4, 3)), LPS_TO_RAS[:3, :3] @ lps, atol=1e-4)


def test_dicom_series_directory(scene, tmp_path):
    array = (np.arange(4 * 6 * 5).reshape(4, 6, 5) * 3).astype(np.int16)
    d = tmp_path / "dicom"
    d.mkdir()
    direction = _rotation(0.0, 0.0, 0.25)
    spacing = (0.9, 0.9, 2.0)
    origin = np.array([-20.0, 10.0, 5.0])
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.424242"
    for k in range(array.shape[0]):
        sl = sitk.GetImageFromArray(array[k])
        sl.SetSpacing(spacing[:2])
        pos = origin + direction[:, 2] * spacing[2] * k
        sl.SetMetaData("0020|000e", series_uid)
        sl.SetMetaData("0020|000d", "1.2.826.0.1.3680043.2.1125.1.4242")
        sl.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.4242.{k + 1}")
        sl.SetMetaData("0008|0060", "MR")
        sl.SetMetaData("0008|0016", "1.2.840.10008.5.1.4.1.1.4")  # MR Image Storage: keeps Pixel Spacing
        sl.SetMetaData("0020|0037", "\\".join(f"{x:.6f}" for x in np.r_[direction[:, 0], direction[:, 1]]))
        sl.SetMetaData("0020|0032", "\\".join(f"{x:.6f}" for x in pos))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0028|0030", f"{spacing[1]}\\{spacing[0]}")
        sl.SetMetaData("0018|0050", str(spacing[2]))
        writer.SetFileName(str(d / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    with pytest.raises(InputError, match=r"slice000.dcm: a single slice \(size \(5, 6, 1\)\); a 3D volume is expected. For DICOM, give the directory"):
        mrml.read_volume_node(d / "slice000.dcm", scene)
    node = mrml.read_volume_node(d, scene, name="dicom phase")
    vol = mrml.volume_from_node(node)
    assert node.GetName() == "dicom phase"
    assert np.array_equal(vol.array, array)
    assert np.allclose(vol.spacing, spacing, atol=1e-4)
    # voxel (0, 0, k) sits at the LPS image position of slice k, in RAS
    for k in (0, 3):
        lps = origin + direction[:, 2] * spacing[2] * k
        assert np.allclose(vol.ras_of_ijk((0, 0, k)), LPS_TO_RAS[:3, :3] @ lps, atol=1e-3)


def test_two_segments_seg_nrrd_round_trip(scene, tmp_path):
    m = oblique_matrix()
    labels = np.zeros((6, 7, 8), dtype=np.int16)
    labels[1:4, 2:5, 1:4] = 1
    labels[2:6, 0:3, 5:8] = 2
    ref_node = mrml.node_from_volume(Volume(np.zeros(labels.shape, np.float32), m, "ref"), scene)
    label_vol = Volume(labels, m, "ribbon")
    before = labels.copy()
    seg = mrml.segmentation_from_labels(
        label_vol, {1: "Left posterior bank", 2: "Right posterior bank"},
        {1: (1.0, 0.2, 0.2), 2: (0.2, 0.4, 1.0)}, ref_node, scene, name="Ribbon")
    assert np.array_equal(labels, before)  # input untouched
    assert mrml.segment_names(seg) == ["Left posterior bank", "Right posterior bank"]
    seg_color = seg.GetSegmentation().GetSegment(seg.GetSegmentation().GetSegmentIdBySegmentName("Right posterior bank")).GetColor()
    assert np.allclose(seg_color, (0.2, 0.4, 1.0))
    path = mrml.write_segmentation(seg, tmp_path / "ribbon.seg.nrrd")
    assert path == tmp_path / "ribbon.seg.nrrd" and path.exists()
    assert sorted(os.listdir(tmp_path)) == ["ribbon.seg.nrrd"]  # no temp file left behind
    reloaded = mrml.read_segmentation(path, scene)
    assert mrml.segment_names(reloaded) == ["Left posterior bank", "Right posterior bank"]
    ref = Volume(np.zeros(labels.shape, np.float32), m, "ref")
    for node in (seg, reloaded):
        back = mrml.labels_from_segmentation(node, ref, {"Left posterior bank": 1, "Right posterior bank": 2})
        assert np.array_equal(back.array, labels)
        assert np.allclose(back.ijk_to_ras, m, atol=1e-9)
    # masks by name, whatever values the caller wants
    only_right = mrml.labels_from_segmentation(reloaded, ref, {"Right posterior bank": 7})
    assert np.array_equal(only_right.array == 7, labels == 2)
    with pytest.raises(InputError, match="no segment named 'Left control'.*Left posterior bank"):
        mrml.labels_from_segmentation(reloaded, ref, {"Left control": 3})


def test_empty_segment_is_kept_and_exports_empty(scene):
    m = oblique_matrix()
    labels = np.zeros((4, 4, 4), np.int16)
    labels[1, 1, 1] = 1
    seg = mrml.segmentation_from_labels(Volume(labels, m, "x"), {1: "a", 2: "b"}, {}, None, scene)
    assert mrml.segment_names(seg) == ["a", "b"]
    n_nodes = scene.GetNumberOfNodes()
    back = mrml.labels_from_segmentation(seg, Volume(labels, m, "x"), {"a": 1, "b": 2})
    assert np.array_equal(back.array, labels)
    assert scene.GetNumberOfNodes() == n_nodes  # no scratch node (or export colour table) left behind


def test_mrb_round_trip(tmp_path):
    src = mrml.new_headless_scene()
    m = oblique_matrix()
    array = np.random.default_rng(3).random((4, 5, 6)).astype(np.float32)
    mrml.node_from_volume(Volume(array, m, "swi"), src)
    labels = np.zeros((4, 5, 6), np.int16)
    labels[1:3, 1:4, 2:5] = 1
    mrml.segmentation_from_labels(Volume(labels, m, "r"), {1: "Left posterior bank"}, {1: (1, 0, 0)}, None, src,
                                  name="Ribbon")
    mrml.table_node_from_rows([{"hemisphere": "left", "z": 2.5}], src, "Metrics")
    path = mrml.write_mrb(src, tmp_path / "case.mrb")
    assert path.exists() and path.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["case.mrb"]
    import zipfile

    # the bundle is named after the final file (Slicer derives its folder and scene names from it)
    assert "case/case.mrml" in zipfile.ZipFile(path).namelist()
    dst = mrml.new_headless_scene()
    mrml.read_mrb(path, dst)
    swi = dst.GetFirstNodeByName("swi")
    assert swi is not None
    back = mrml.volume_from_node(swi)
    assert np.array_equal(back.array, array)
    assert np.allclose(back.ijk_to_ras, m, atol=1e-6)
    seg = dst.GetFirstNodeByName("Ribbon")
    assert seg is not None and mrml.segment_names(seg) == ["Left posterior bank"]
    got = mrml.labels_from_segmentation(seg, Volume(labels, m, "r"), {"Left posterior bank": 1})
    assert np.array_equal(got.array, labels)
    rows = mrml.rows_from_table_node(dst.GetFirstNodeByName("Metrics"))
    assert rows == [{"hemisphere": "left", "z": 2.5}]


def test_write_volume_node_atomic_and_readable(scene, tmp_path):
    m = oblique_matrix()
    array = np.random.default_rng(4).random((3, 4, 5)).astype(np.float32)
    node = mrml.node_from_volume(Volume(array, m, "w"), scene)
    for name in ("w.nii.gz", "w.nrrd"):
        p = mrml.write_volume_node(node, tmp_path / name)
        back = mrml.read_volume(p, scene)
        assert np.array_equal(back.array, array)
        assert np.allclose(back.ijk_to_ras, m, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["w.nii.gz", "w.nrrd"]
    with pytest.raises(InputError, match=r"extension '\.png'"):
        mrml.write_volume_node(node, tmp_path / "w.png")
    with pytest.raises(InputError, match="does not exist"):
        mrml.write_volume_node(node, tmp_path / "missing" / "w.nrrd")


# -- bad input -----------------------------------------------------------------------------


def test_missing_file_names_file_and_expectation(scene, tmp_path):
    p = tmp_path / "nope.nii.gz"
    with pytest.raises(InputError) as e:
        mrml.read_volume_node(p, scene)
    assert str(p) in str(e.value) and "file not found" in str(e.value) and "NIfTI" in str(e.value)


def test_non_image_file_names_file_and_expectation(scene, tmp_path):
    n_before = scene.GetNumberOfNodes()
    for name, content in (("notes.txt", "not an image"), ("fake.nii.gz", "hello")):
        p = tmp_path / name
        p.write_text(content)
        with pytest.raises(InputError) as e:
            mrml.read_volume_node(p, scene)
        assert str(p) in str(e.value) and "not a readable image" in str(e.value) and "NIfTI" in str(e.value)
    assert scene.GetNumberOfNodes() == n_before  # nothing half-loaded left in the scene


def test_4d_file_where_3d_needed(scene, tmp_path):
    p = tmp_path / "echoes.nii.gz"
    data = np.random.default_rng(5).random((3, 4, 5, 6)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(data, isVector=False), str(p))
    with pytest.raises(InputError) as e:
        mrml.read_volume_node(p, scene)
    msg = str(e.value)
    assert str(p) in msg and "4D image" in msg and "3D volume is expected" in msg
    # where echoes are accepted, the 4th axis becomes components, echoes first in the Volume
    node = mrml.read_volume_node(p, scene, allow_4d=True)
    assert node.IsA("vtkMRMLVectorVolumeNode")
    assert np.array_equal(mrml.volume_from_node(node).array, data)


def test_directory_without_dicom(scene, tmp_path):
    with pytest.raises(InputError, match="no DICOM series found"):
        mrml.read_volume_node(tmp_path, scene)


def test_segmentation_node_required(scene):
    ref = Volume(np.zeros((2, 2, 2)), np.eye(4), "r")
    with pytest.raises(InputError, match="no segmentation node"):
        mrml.labels_from_segmentation(None, ref, {"a": 1})


# -- display helpers -----------------------------------------------------------------------


def test_table_and_plot_nodes(scene):
    rows = [
        {"hemisphere": "left", "region": "intermediate", "z_median": 3.25, "band": True, "n": 120},
        {"hemisphere": "right", "region": "intermediate", "z_median": 0.5, "band": False, "n": None},
    ]
    t = mrml.table_node_from_rows(rows, scene, "Motor band metrics")
    assert t.IsA("vtkMRMLTableNode") and t.GetNumberOfRows() == 2 and t.GetNumberOfColumns() == 5
    back = mrml.rows_from_table_node(t)
    assert back[0]["hemisphere"] == "left" and back[0]["z_median"] == 3.25 and back[0]["band"] == 1.0
    assert np.isnan(back[1]["n"]) and back[1]["band"] == 0.0
    t2 = mrml.table_node_from_rows(rows[:1], scene, "Motor band metrics", node=t)
    assert t2 is t and t.GetNumberOfRows() == 1
    chart = mrml.plot_chart_from_profiles(
        {"left bank": ([0, 1, 2], [1.0, 0.6, 0.9]), "right bank": {"x": [0, 1], "y": [1.0, 1.0]}, "ctl": [1, 1, 1, 1]},
        scene, "Profiles")
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == 3
    s0 = scene.GetNodeByID(chart.GetNthPlotSeriesNodeID(0))
    assert s0.GetName() == "left bank" and s0.GetTableNode().GetTable().GetNumberOfRows() == 3
    mrml.plot_chart_from_profiles({"one": [1, 2]}, scene, "Profiles", chart=chart)
    assert chart.GetNumberOfPlotSeriesNodes() == 1


def test_heatmap_color_and_show_results(scene):
    m = oblique_matrix()
    mip = mrml.node_from_volume(Volume(np.ones((3, 4, 5), np.float32), m, "mip"), scene)
    heat = mrml.node_from_volume(Volume(np.linspace(0, 6, 60, dtype=np.float32).reshape(3, 4, 5), m, "heat"), scene)
    seg = mrml.segmentation_from_labels(Volume(np.ones((3, 4, 5), np.int16), m, "s"), {1: "a"}, {}, mip, scene)
    color = mrml.heatmap_color_node(scene)
    assert color.IsA("vtkMRMLProceduralColorNode") and color is mrml.heatmap_color_node(scene)
    assert np.allclose(color.GetColorTransferFunction().GetColor(0.0), (1, 1, 0))
    assert np.allclose(color.GetColorTransferFunction().GetColor(1.0), (0.85, 0, 0))
    # a headless scene with no slice views: nothing to set, and no failure
    for comp in list(_nodes(scene, "vtkMRMLSliceCompositeNode")):
        scene.RemoveNode(comp)
    assert mrml.show_results(scene, None, mip, heat, seg, z_threshold=2.0, z_max=5.0) == {
        "composite_nodes": 0, "slice_nodes_centred": 0}
    dn = heat.GetScalarVolumeDisplayNode()
    assert dn.GetColorNodeID() == color.GetID() and dn.GetApplyThreshold() == 1 and dn.GetLowerThreshold() == 2.0
    assert seg.GetDisplayNode().GetVisibility2DOutline() and not seg.GetDisplayNode().GetVisibility2DFill()
    # with a slice view (a slice logic creates its slice + composite nodes), layers are set and centred
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.AddSliceNode("Red")
    out = mrml.show_results(scene, None, mip, heat, seg, focus_ras=(1.0, 2.0, 3.0))
    assert out["composite_nodes"] >= 1 and out["slice_nodes_centred"] >= 1
    comp = logic.GetSliceCompositeNode()
    assert comp.GetBackgroundVolumeID() == mip.GetID() and comp.GetForegroundVolumeID() == heat.GetID()
    assert comp.GetForegroundOpacity() == pytest.approx(0.6)


def _nodes(scene, cls):
    col = scene.GetNodesByClass(cls)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())]


def test_headless_scene_and_its_logics_are_freed_when_dropped():
    """A batch that makes one scene per result must not keep every scene (and its volumes) alive."""
    import gc

    import vtk

    deleted = []
    scene = mrml.new_headless_scene()
    key = mrml._key(scene)
    node = mrml.node_from_volume(Volume(np.zeros((8, 8, 8), np.float32), np.eye(4), "x"), scene)
    node.GetImageData().AddObserver(vtk.vtkCommand.DeleteEvent, lambda *a: deleted.append("voxels"))
    scene.AddObserver(vtk.vtkCommand.DeleteEvent, lambda *a: deleted.append("scene"))
    assert key in mrml._LOGICS
    del node
    gc.collect()
    assert deleted == []  # held by the scene
    del scene
    gc.collect()
    assert key not in mrml._LOGICS
    assert sorted(deleted) == ["scene", "voxels"]  # the C++ scene and the voxels are freed
