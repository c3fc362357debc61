"""The module's Logic, headless: nodes in a real slicer-core scene -> pipeline -> nodes out.

``MotorBandSign.py``'s Logic only delegates to ``slicer_logic.NodeLogic`` (test_conformance
checks the signatures are the same), so these are the calls the widget makes: ``process``
with a progress callback and a cancel flag, ``remeasure`` after the ribbon was edited in the
segmentation, ``saveReport``; plus the parameter node <-> Parameters mapping and the
validation behind the Apply button's tooltip.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from MotorBandSignLib import mrml, slicer_logic  # noqa: E402
from MotorBandSignLib.errors import CancelledError, InputError  # noqa: E402
from MotorBandSignLib.params import HANDEDNESS, PHASE_UNITS, Parameters  # noqa: E402
from MotorBandSignLib.volume import Volume  # noqa: E402

# -- parameters <-> parameter node values -----------------------------------------------------


def test_parameter_specs_cover_every_field_with_resolved_defaults():
    specs = slicer_logic.parameter_specs()
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(Parameters)]
    by_name = {s.name: s for s in specs}
    resolved = Parameters().resolved()
    assert by_name["phase_units"].choices == tuple(PHASE_UNITS) and by_name["phase_units"].default == "auto"
    assert by_name["handedness"].choices == tuple(HANDEDNESS)
    assert by_name["echo_times"].gui_type is str and by_name["echo_times"].kind == "text-tuple"
    assert by_name["softplus"].gui_type is bool
    for name in ("mask_power", "mip_slab_mm", "bank_depth_mm", "z_threshold", "band_ratio", "region_band_ratio", "diffuse_ratio"):
        assert by_name[name].gui_type is float and by_name[name].default == pytest.approx(getattr(resolved, name))
    assert by_name["homodyne_window"].gui_type is int and by_name["homodyne_window"].default == resolved.homodyne_window
    assert by_name["highpass"].default == resolved.highpass and by_name["highpass"].choices
    from MotorBandSignLib import swi

    assert by_name["unwrap_method"].choices == tuple(swi.UNWRAP_METHODS)
    assert by_name["labels"].kind == "optional-text" and by_name["labels"].default == ""
    # what @parameterNodeWrapper needs: a default of the declared type, inside its Choice
    for spec in specs:
        assert type(spec.default) is spec.gui_type, spec
        assert spec.choices is None or spec.default in spec.choices, spec
    assert set(slicer_logic.NODE_PARAMETERS).isdisjoint(by_name)


def test_gui_values_round_trip():
    p = Parameters(echo_times=(0.005, 0.0125), mask_power=3.0, highpass="unwrap", handedness="left",
                   gaussian_sigma_ijk=(3.0, 3.0, 0.0), labels="synthseg", softplus=True)
    gui = slicer_logic.gui_from_parameters(p)
    assert gui["echo_times"] == "5, 12.5"  # milliseconds in the panel, seconds in Parameters
    assert gui["gaussian_sigma_ijk"] == "3, 3, 0"
    assert gui["labels"] == "synthseg" and gui["softplus"] is True
    back = slicer_logic.parameters_from_gui(gui)
    assert back.resolved() == p.resolved()
    assert back.echo_times == pytest.approx((0.005, 0.0125))
    # defaults survive the trip, and an empty labels field means "no preset"
    assert slicer_logic.parameters_from_gui(slicer_logic.gui_from_parameters(Parameters())).resolved() == Parameters().resolved()
    assert slicer_logic.parameters_from_gui({"labels": "  "}).labels is None
    # thresholds left at the shown default stay "not given" (the parcellation route has its own);
    # a changed one is kept
    shown = slicer_logic.gui_from_parameters(Parameters())
    back = slicer_logic.parameters_from_gui(shown)
    assert (back.band_ratio, back.region_band_ratio, back.diffuse_ratio) == (None, None, None)
    assert slicer_logic.parameters_from_gui(dict(shown, band_ratio=0.9)).band_ratio == 0.9


def test_bad_gui_values_are_input_errors():
    with pytest.raises(InputError, match="echo_times: '5, abc' is not a list of numbers in milliseconds"):
        slicer_logic.parameters_from_gui({"echo_times": "5, abc"})
    with pytest.raises(InputError, match="phase_units='bogus' is not one of auto"):
        slicer_logic.parameters_from_gui({"phase_units": "bogus"})


def test_input_problem_is_the_apply_tooltip():
    scene = mrml.new_headless_scene()
    m = np.eye(4)
    mag = mrml.node_from_volume(Volume(np.ones((4, 5, 6), np.float32), m, "mag"), scene)
    ph = mrml.node_from_volume(Volume(np.zeros((4, 5, 6), np.float32), m, "ph"), scene)
    small = mrml.node_from_volume(Volume(np.zeros((4, 5, 5), np.float32), m, "small"), scene)
    echoes = mrml.node_from_volume(Volume(np.ones((3, 4, 5, 6), np.float32), m, "echoes"), scene)
    assert slicer_logic.input_problem(None, ph) == "Select the magnitude volume."
    assert slicer_logic.input_problem(mag, None) == "Select the phase volume."
    assert "same volume" in slicer_logic.input_problem(mag, mag)
    assert slicer_logic.input_problem(mag, small) == (
        "Magnitude (6, 5, 4) and phase (5, 5, 4) differ in size: they must come from one acquisition.")
    assert slicer_logic.input_problem(echoes, ph) == "The magnitude has 3 echoes: enter 3 echo times (ms)."
    assert slicer_logic.input_problem(echoes, ph, {"echo_times": "5, 10, 15"}) is None
    assert slicer_logic.input_problem(mag, ph) is None
    assert "not a list of numbers" in slicer_logic.input_problem(mag, ph, {"echo_times": "x"})


def test_verdict_text():
    assert slicer_logic.verdict_text({"pattern": "left", "total_grade": 3}).startswith(
        "LEFT precentral posterior-bank hypointensity (expected with RIGHT-sided upper motor neuron signs). "
        "Total regional grade 3/12.")
    text = slicer_logic.verdict_text({"pattern": "absent", "nonspecific_diffuse": True})
    assert "No motor band sign" in text and "diffusely dark" in text and "provisional" in text


# -- the Logic on a phantom, with nodes in a real scene ----------------------------------------


def _nodes(scene, cls):
    col = scene.GetNodesByClass(cls)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())]


@pytest.fixture(scope="module")
def run(bilateral_case):
    """The bilateral phantom (Testing/conftest.py) through NodeLogic.process, in a scene with one slice view."""
    case = bilateral_case
    scene = mrml.new_headless_scene()
    view = slicer.vtkMRMLSliceLogic()
    view.SetMRMLScene(scene)
    view.AddSliceNode("Red")
    mag = mrml.node_from_volume(case.magnitude, scene, name="phantom magnitude")
    ph = mrml.node_from_volume(case.phase, scene, name="phantom phase")
    mag_before = mrml.volume_from_node(mag).array.copy()
    logic = slicer_logic.NodeLogic()
    steps = []
    result = logic.process(mag, ph, Parameters(localisation="atlas"), progress=lambda f, msg: steps.append((f, msg)),
                           cancel=lambda: False)
    return {"case": case, "scene": scene, "view": view, "mag": mag, "ph": ph, "logic": logic,
            "result": result, "steps": steps, "mag_before": mag_before}


def test_process_gives_the_pattern_and_the_output_nodes(run):
    case, res, scene = run["case"], run["result"], run["scene"]
    from MotorBandSignLib import ribbon

    assert res.metrics["pattern"] == case.expected_pattern == "bilateral"
    assert res.verdict.startswith("Bilateral posterior-bank hypointensity")
    nodes = res.nodes
    assert set(nodes) == set(mrml.RESULT_NODE_KEYS)
    expected_classes = {"swi": "vtkMRMLScalarVolumeNode", "mip": "vtkMRMLScalarVolumeNode",
                        "phase_hp": "vtkMRMLScalarVolumeNode", "heatmap": "vtkMRMLScalarVolumeNode",
                        "regions": "vtkMRMLLabelMapVolumeNode", "segmentation": "vtkMRMLSegmentationNode",
                        "table": "vtkMRMLTableNode", "chart": "vtkMRMLPlotChartNode"}
    for key, cls in expected_classes.items():
        assert nodes[key].GetClassName() == cls, key
        assert nodes[key].GetScene() is scene
    assert nodes["swi"].GetName() == "MBS phantom magnitude SWI"
    assert nodes["heatmap"].GetName() == "MBS phantom magnitude hypointensity z"
    assert nodes["segmentation"].GetName() == "MBS phantom magnitude ribbon"
    # every output volume is on the magnitude's grid
    for key in ("swi", "mip", "phase_hp", "heatmap", "regions"):
        vol = mrml.volume_from_node(nodes[key])
        assert vol.shape == case.magnitude.shape, key
        assert np.allclose(vol.ijk_to_ras, case.magnitude.ijk_to_ras, atol=1e-9), key
    assert np.array_equal(mrml.volume_from_node(nodes["swi"]).array, res.result.swi.array)
    # the segmentation holds the ribbon, segment by segment
    seg = nodes["segmentation"]
    assert mrml.segment_names(seg) == list(ribbon.SEGMENT_NAMES.values())
    back = mrml.labels_from_segmentation(seg, res.result.swi, {n: v for v, n in ribbon.SEGMENT_NAMES.items()})
    assert np.array_equal(back.array, res.result.ribbon.array)
    # the table shows the metrics: 2 hemisphere rows + 3 regions per hemisphere
    rows = mrml.rows_from_table_node(nodes["table"])
    assert len(rows) == 2 + 2 * 3
    left = [r for r in rows if r["hemisphere"] == "left" and r["region"] == "whole bank"][0]
    assert left["band"] == 1.0
    assert left["median z"] == pytest.approx(res.metrics["hemispheres"]["left"]["z_median"], abs=0.006)
    assert nodes["chart"].GetNumberOfPlotSeriesNodes() == 2


def test_process_reports_progress_and_leaves_inputs_alone(run):
    fractions = [f for f, _ in run["steps"]]
    assert fractions[0] < 0.1 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert all(isinstance(m, str) and m for _, m in run["steps"])
    assert np.array_equal(mrml.volume_from_node(run["mag"]).array, run["mag_before"])


def test_process_shows_results_in_the_slice_view(run):
    nodes, res = run["result"].nodes, run["result"]
    comp = run["view"].GetSliceCompositeNode()
    assert comp.GetBackgroundVolumeID() == nodes["mip"].GetID()
    assert comp.GetForegroundVolumeID() == nodes["heatmap"].GetID()
    dn = nodes["heatmap"].GetScalarVolumeDisplayNode()
    assert dn.GetApplyThreshold() == 1
    assert dn.GetLowerThreshold() == pytest.approx(res.result.params.z_threshold)
    assert nodes["segmentation"].GetDisplayNode().GetVisibility2DOutline()
    # the view is centred on the hand knob of the more affected side
    assert res.focus_ras is not None
    h = res.metrics["hemispheres"]
    side = min(("left", "right"), key=lambda s: h[s]["band_contrast"])
    assert (res.focus_ras[0] < 0) == (side == "left")  # RAS: left is negative x
    sn = run["view"].GetSliceNode()
    centre = [sn.GetSliceToRAS().GetElement(r, 3) for r in range(3)]
    assert np.allclose(centre, res.focus_ras, atol=1e-6)


def _erase_segment(seg_node, name):
    """What Segment Editor's Erase does to a whole segment: replace its voxels by nothing."""
    sid = seg_node.GetSegmentation().GetSegmentIdBySegmentName(name)
    assert sid
    empty = slicer.vtkOrientedImageData()
    empty.SetDimensions(1, 1, 1)
    empty.AllocateScalars(3, 1)  # VTK_UNSIGNED_CHAR
    empty.GetPointData().GetScalars().Fill(0)
    ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        empty, seg_node, sid, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    assert ok


def test_remeasure_after_erasing_the_left_bank_changes_left_scores_only(run):
    from MotorBandSignLib import ribbon

    res, logic, scene = run["result"], run["logic"], run["scene"]
    seg = res.nodes["segmentation"]
    before = res.metrics["hemispheres"]
    n_nodes = scene.GetNumberOfNodes()
    heat_before = mrml.volume_from_node(res.nodes["heatmap"]).array.copy()
    _erase_segment(seg, ribbon.SEGMENT_NAMES[1])
    new = logic.remeasure(res, seg, None)
    after = new.metrics["hemispheres"]
    assert before["left"]["band_present"] is True and after["left"]["measured"] is False
    assert after["left"]["band_present"] is False
    for key in ("z_median", "band_contrast", "hypointense_fraction", "volume_ml", "band_present"):
        assert after["right"][key] == before["right"][key], key
    assert new.metrics["pattern"] == "right" and "RIGHT" in new.verdict
    # same nodes updated in place; nothing new in the scene; the user's segmentation is kept
    for key in ("heatmap", "regions", "table", "chart", "segmentation", "swi", "mip"):
        assert new.nodes[key] is res.nodes[key], key
    assert scene.GetNumberOfNodes() == n_nodes
    heat_after = mrml.volume_from_node(res.nodes["heatmap"]).array
    left_bank = res.result.ribbon.array == 1
    assert not np.array_equal(heat_after[left_bank], heat_before[left_bank])
    right_bank = res.result.ribbon.array == 2
    assert np.array_equal(heat_after[right_bank], heat_before[right_bank])
    rows = mrml.rows_from_table_node(res.nodes["table"])
    left = [r for r in rows if r["hemisphere"] == "left" and r["region"] == "whole bank"][0]
    assert left["band"] == 0.0
    assert mrml.segment_names(seg) == list(ribbon.SEGMENT_NAMES.values())
    assert any("left posterior bank could not be measured" in w.lower() for w in new.warnings)


def test_save_report(run, tmp_path):
    path = run["logic"].saveReport(run["result"], tmp_path / "report.html")
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert path == str(tmp_path / "report.html")
    assert "<html" in text.lower()
    with pytest.raises(InputError, match="run Apply first"):
        run["logic"].saveReport(None, tmp_path / "x.html")


def test_cancel_stops_before_any_output_node(run):
    scene = run["scene"]
    n_volumes = len(_nodes(scene, "vtkMRMLVolumeNode"))
    with pytest.raises(CancelledError):
        run["logic"].process(run["mag"], run["ph"], Parameters(), cancel=lambda: True)
    assert len(_nodes(scene, "vtkMRMLVolumeNode")) == n_volumes


def test_bad_inputs_are_input_errors(run):
    logic = run["logic"]
    with pytest.raises(InputError, match="no phase volume selected"):
        logic.process(run["mag"], None, Parameters())
    with pytest.raises(InputError, match="run Apply first"):
        logic.remeasure(None, run["result"].nodes["segmentation"], None)
    other = run["scene"].AddNewNodeByClass("vtkMRMLSegmentationNode", "unrelated")
    other.GetSegmentation().AddEmptySegment("x", "something else")
    with pytest.raises(InputError, match="has no segment named"):
        logic.remeasure(run["result"], other, None)


def test_given_ribbon_segmentation_skips_localisation_and_fills_chosen_outputs(run):
    """The optional input segmentation (a ribbon made earlier) is used as is; chosen output nodes are filled."""
    from MotorBandSignLib import ribbon

    scene, original = run["scene"], run["result"].result
    given = mrml.segmentation_from_labels(original.ribbon, ribbon.SEGMENT_NAMES, ribbon.SEGMENT_COLORS,
                                          run["mag"], scene, name="ribbon from last week")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "my table")
    heat = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my heatmap")
    res = run["logic"].process(run["mag"], run["ph"], Parameters(localisation="atlas"), segmentationNode=given,
                               outputs={"table": table, "heatmap": heat, "segmentation": None})
    assert res.result.qc["localisation"] == "segmentation"
    assert np.array_equal(res.result.ribbon.array, original.ribbon.array)
    assert res.metrics["pattern"] == "bilateral"
    assert res.nodes["table"] is table and table.GetNumberOfRows() == 8
    assert res.nodes["heatmap"] is heat
    assert np.allclose(mrml.volume_from_node(heat).ijk_to_ras, run["case"].magnitude.ijk_to_ras, atol=1e-9)
    assert res.nodes["segmentation"] is not given  # the input is not overwritten
    assert mrml.segment_names(given) == list(ribbon.SEGMENT_NAMES.values())


def test_demo_case_nodes_for_sample_data(tmp_path):
    """What the "Motor band demo" Sample Data entry loads: the files `make demo` writes (here the
    simulator writes them to a temporary folder, as Testing/phantoms/demo.py does), as two volume nodes."""
    from phantoms import simulate

    case = simulate.demo_case(tmp_path / "demo-case")
    scene = mrml.new_headless_scene()
    mag, ph = slicer_logic.load_demo_nodes(scene, case_dir=tmp_path / "demo-case")
    assert (mag.GetName(), ph.GetName()) == ("Motor band demo magnitude", "Motor band demo phase")
    for node, vol in ((mag, case.magnitude), (ph, case.phase)):
        back = mrml.volume_from_node(node)
        assert back.array.shape == vol.array.shape
        assert np.allclose(back.array, vol.array, rtol=1e-6, atol=1e-6)
        assert np.allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-4)
    assert slicer_logic.input_problem(mag, ph) is None


def test_demo_case_folder_default_env_and_missing(tmp_path, monkeypatch):
    """Without ``case_dir`` the demo case is read from $MOTORBANDSIGN_DEMO_DIR, else from
    <repository>/demo-case; a missing case is an input error that says how to make it."""
    from pathlib import Path

    monkeypatch.delenv(slicer_logic.DEMO_DIR_ENV, raising=False)
    assert slicer_logic.demo_case_dir() == Path(__file__).resolve().parents[1] / "demo-case"
    monkeypatch.setenv(slicer_logic.DEMO_DIR_ENV, str(tmp_path / "nowhere"))
    assert slicer_logic.demo_case_dir() == tmp_path / "nowhere"
    scene = mrml.new_headless_scene()
    with pytest.raises(InputError, match=r"the demo case is not there: run `make demo` \(or python "
                                         r"Testing/phantoms/demo.py --out DIR\) first"):
        slicer_logic.load_demo_nodes(scene)
    with pytest.raises(InputError, match="the demo case is not there"):
        slicer_logic.load_demo_nodes(scene, case_dir=tmp_path)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0
