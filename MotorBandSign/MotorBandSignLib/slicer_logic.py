"""Nodes in -> pipeline -> nodes out: the Slicer module's Logic, without Qt.

``MotorBandSign.py``'s ``MotorBandSignLogic`` (a ``ScriptedLoadableModuleLogic``) delegates
every call to :class:`NodeLogic`, so the same code runs in the Slicer application and, headless,
on slicer-core in the tests. Nothing here computes an image: conversion is
:mod:`~MotorBandSignLib.mrml`'s, the work is :mod:`~MotorBandSignLib.pipeline`'s.

It also holds the mapping between :class:`~MotorBandSignLib.params.Parameters` and the
widget-friendly values the Slicer parameter node stores (``parameter_specs``,
``parameters_from_gui``, ``gui_from_parameters``): the parameter node wrapper is built from
these, so the panel, the CLI and the dataclass cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import mrml
from .errors import InputError
from .params import Parameters

# ---------------------------------------------------------------------------------------------
# Parameters <-> parameter node values
# ---------------------------------------------------------------------------------------------

#: Node references of the parameter node (not algorithm parameters): wrapper field ->
#: (MRML class names accepted, what it is). Bound to qMRMLNodeComboBoxes in the .ui.
NODE_PARAMETERS = {
    "inputMagnitude": (("vtkMRMLScalarVolumeNode",), "magnitude (one echo, or multi-echo as a vector volume)"),
    "inputPhase": (("vtkMRMLScalarVolumeNode",), "phase, same grid and echoes as the magnitude"),
    "inputT1": (("vtkMRMLScalarVolumeNode",), "optional T1-weighted image for localisation"),
    "inputParcellation": (("vtkMRMLScalarVolumeNode",), "optional FreeSurfer/SynthSeg parcellation (labels)"),
    "inputRibbon": (("vtkMRMLSegmentationNode",), "optional ribbon segmentation used as is"),
    "outputSegmentation": (("vtkMRMLSegmentationNode",), "ribbon segmentation to fill (created if empty)"),
    "outputHeatmap": (("vtkMRMLScalarVolumeNode",), "heatmap volume to fill (created if empty)"),
    "outputTable": (("vtkMRMLTableNode",), "metrics table to fill (created if empty)"),
}

#: Allowed values of the text parameters with a fixed set of choices (combo boxes).
def _choices() -> dict:
    from . import params as params_mod

    out = {}
    for name, const in (("phase_units", "PHASE_UNITS"), ("handedness", "HANDEDNESS"),
                        ("highpass", "HIGHPASS"), ("mask_type", "MASK_TYPES"),
                        ("localisation", "LOCALISATION")):
        values = getattr(params_mod, const, None)
        if values:
            out[name] = tuple(values)
    from . import swi

    if getattr(swi, "UNWRAP_METHODS", None):
        out["unwrap_method"] = tuple(swi.UNWRAP_METHODS)
    return out


#: Parameters shown as text of comma-separated numbers (tuples in the dataclass).
#: Echo times are typed in milliseconds (what scanners print) and stored in seconds.
TEXT_TUPLES = {"echo_times": 1e-3, "gaussian_sigma_ijk": 1.0}


@dataclass(frozen=True)
class ParamSpec:
    """How one Parameters field is held in the parameter node."""

    name: str
    gui_type: type  # bool, int, float or str
    default: object
    choices: tuple | None = None
    kind: str = "plain"  # "plain", "text-tuple", "optional-text"
    scale: float = 1.0  # text-tuple: stored value = typed value * scale
    help: str = ""  # tooltip (params.HELP)
    range: tuple | None = None  # (min, max) a panel offers (params.RANGES)


_SIMPLE_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "tuple": tuple, "list": list}


def _type_hints() -> dict:
    """Field types of Parameters; parses ``X | None`` by hand where the Python (e.g. 3.9 in
    older Slicer releases) cannot evaluate it."""
    try:
        return typing.get_type_hints(Parameters)
    except TypeError:
        out = {}
        for f in dataclasses.fields(Parameters):
            parts = [p.strip().split("[")[0] for p in str(f.type).split("|")]
            base = [_SIMPLE_TYPES.get(p, str) for p in parts if p != "None"][0]
            out[f.name] = typing.Optional[base] if "None" in parts else base
        return out


def _base_type(tp):
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    args = typing.get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return tp, False


def parameter_specs() -> list:
    """One :class:`ParamSpec` per field of :class:`Parameters`, in declaration order.

    Defaults are the resolved ones (``Parameters().resolved()``: each step's documented
    default), so the panel shows the numbers that will be used, not blanks.
    """
    from . import params as params_mod

    hints = _type_hints()
    resolved = Parameters().resolved()
    choices = _choices()
    specs = []
    for f in dataclasses.fields(Parameters):
        base, optional = _base_type(hints[f.name])
        origin = typing.get_origin(base) or base
        value = getattr(resolved, f.name)
        if f.name in TEXT_TUPLES or origin in (tuple, list):
            scale = TEXT_TUPLES.get(f.name, 1.0)
            specs.append(ParamSpec(f.name, str, _format_numbers(value, scale), None, "text-tuple", scale))
        elif origin is bool:
            specs.append(ParamSpec(f.name, bool, bool(value)))
        elif origin is int:
            specs.append(ParamSpec(f.name, int, int(value) if value is not None else 0))
        elif origin is float:
            specs.append(ParamSpec(f.name, float, float(value) if value is not None else 0.0))
        else:
            kind = "optional-text" if (optional and f.name not in choices) else "plain"
            specs.append(ParamSpec(f.name, str, "" if value is None else str(value), choices.get(f.name), kind))
    return [dataclasses.replace(s, help=params_mod.HELP.get(s.name, ""), range=params_mod.RANGES.get(s.name))
            for s in specs]


def _format_numbers(values, scale: float) -> str:
    if not values:
        return ""
    return ", ".join(f"{float(v) / scale:g}" for v in values)


def _parse_numbers(name: str, text: str, scale: float) -> tuple:
    text = (text or "").replace(";", ",").strip()
    if not text:
        return ()
    parts = [p for chunk in text.split(",") for p in chunk.split()]
    try:
        return tuple(float(p) * scale for p in parts)
    except ValueError:
        unit = " in milliseconds" if name == "echo_times" else ""
        raise InputError(f"{name}: '{text}' is not a list of numbers{unit} (e.g. '5, 10, 15').") from None


def parameters_from_gui(values: dict) -> Parameters:
    """A validated :class:`Parameters` from parameter node values (missing keys: defaults)."""
    kwargs = {}
    for spec in parameter_specs():
        if spec.name not in values:
            continue
        v = values[spec.name]
        if spec.kind == "text-tuple":
            parsed = _parse_numbers(spec.name, v, spec.scale)
            kwargs[spec.name] = parsed if (parsed or spec.name == "echo_times") else None
        elif spec.kind == "optional-text":
            kwargs[spec.name] = (str(v).strip() or None)
        else:
            kwargs[spec.name] = spec.gui_type(v)
    # A threshold left at the default the panel shows stays "not given", so that the route's own
    # default applies (the --parcellation route has its own normal ranges; scoring).
    from .scoring import PARCELLATION_THRESHOLDS

    shown = Parameters().resolved()
    for name in PARCELLATION_THRESHOLDS:
        if name in kwargs and kwargs[name] == getattr(shown, name):
            kwargs[name] = None
    p = Parameters(**kwargs)
    p.validate()
    return p


def gui_from_parameters(p: Parameters) -> dict:
    """Parameter node values showing ``p`` (inverse of :func:`parameters_from_gui`)."""
    resolved = p.resolved()
    out = {}
    for spec in parameter_specs():
        v = getattr(resolved, spec.name)
        if spec.kind == "text-tuple":
            out[spec.name] = _format_numbers(v, spec.scale)
        elif spec.kind == "optional-text":
            out[spec.name] = "" if v is None else str(v)
        else:
            out[spec.name] = spec.default if v is None else spec.gui_type(v)
    return out


def _as_parameters(parameters) -> Parameters:
    if parameters is None:
        return Parameters()
    if isinstance(parameters, Parameters):
        return parameters
    if isinstance(parameters, dict):
        return parameters_from_gui(parameters)
    raise TypeError(f"parameters must be Parameters or a dict of parameter node values, not {type(parameters).__name__}")


# ---------------------------------------------------------------------------------------------
# Validation of the inputs (what the Apply button's tooltip says)
# ---------------------------------------------------------------------------------------------


def input_problem(magnitudeNode, phaseNode, parameters=None) -> str | None:
    """Why Apply cannot run yet (a sentence for the tooltip), or None when the inputs are valid."""
    if magnitudeNode is None:
        return "Select the magnitude volume."
    if phaseNode is None:
        return "Select the phase volume."
    if magnitudeNode is phaseNode:
        return "Magnitude and phase are the same volume: select the phase image."
    for node, what in ((magnitudeNode, "magnitude"), (phaseNode, "phase")):
        if node.GetImageData() is None:
            return f"The {what} volume '{node.GetName()}' has no image data."
    mag_dims = magnitudeNode.GetImageData().GetDimensions()
    ph_dims = phaseNode.GetImageData().GetDimensions()
    if mag_dims != ph_dims:
        return f"Magnitude {mag_dims} and phase {ph_dims} differ in size: they must come from one acquisition."
    ncomp = magnitudeNode.GetImageData().GetNumberOfScalarComponents()
    try:
        p = _as_parameters(parameters)
    except InputError as exc:
        return str(exc)
    if ncomp > 1 and len(p.echo_times) != ncomp:
        return f"The magnitude has {ncomp} echoes: enter {ncomp} echo times (ms)."
    return None


# ---------------------------------------------------------------------------------------------
# The logic
# ---------------------------------------------------------------------------------------------

PATTERN_TEXT = {
    "bilateral": "bilateral posterior-bank hypointensity (motor band sign on both sides)",
    "left": "LEFT precentral posterior-bank hypointensity (expected with RIGHT-sided upper motor neuron signs)",
    "right": "RIGHT precentral posterior-bank hypointensity (expected with LEFT-sided upper motor neuron signs)",
    "absent": "no motor band sign: the posterior bank is not darker than the neighbouring cortex",
    "not measured": "not measured: neither posterior bank could be measured (check the coverage and the ribbon)",
}


def verdict_text(metrics: dict) -> str:
    """One sentence for the verdict label, with the caveat the finding needs."""
    pattern = metrics.get("pattern", "not measured")
    text = PATTERN_TEXT.get(pattern, str(pattern))
    measured = [s for s in ("left", "right") if ((metrics.get("hemispheres") or {}).get(s) or {}).get("measured")]
    if pattern == "absent" and len(measured) == 1:
        other = "right" if measured[0] == "left" else "left"
        text += f" (the {measured[0]} bank only: the {other} bank could not be measured)"
    if metrics.get("nonspecific_diffuse"):
        text += ". Cortex is diffusely dark (ageing/other disease): not specific to the motor band"
    grade = metrics.get("total_grade")
    if grade is not None:
        text += f". Total regional grade {grade}/12"
    return text[0].upper() + text[1:] + ". Supports, does not make, a diagnosis; thresholds are provisional."


def focus_point(result) -> tuple | None:
    """RAS of the hand knob (intermediate region of the posterior bank) on the more affected side."""
    hemis = result.metrics.get("hemispheres", {})
    sides = [s for s in ("left", "right") if hemis.get(s, {}).get("measured")]
    if not sides:
        return None
    side = min(sides, key=lambda s: hemis[s].get("band_contrast") if hemis[s].get("band_contrast") is not None else np.inf)
    bank_value = {"left": 1, "right": 2}[side]
    bank = result.ribbon.array == bank_value
    if result.regions is not None:
        knob = bank & (result.regions.array == 2)
        if knob.any():
            bank = knob
    if not bank.any():
        return None
    kji = np.argwhere(bank).mean(axis=0)
    return tuple(float(x) for x in result.ribbon.ras_of_ijk(kji[::-1]))


@dataclass
class NodeResult:
    """A pipeline Result and the nodes that show it."""

    result: object
    nodes: dict = field(default_factory=dict)
    verdict: str = ""
    focus_ras: tuple | None = None
    #: Name prefix of the output nodes (kept so that re-measuring keeps the names).
    prefix: str = ""

    @property
    def metrics(self) -> dict:
        return self.result.metrics

    @property
    def warnings(self) -> list:
        return list(self.result.warnings)


def _ribbon_names_to_values() -> dict:
    from . import ribbon as ribbon_mod

    return {name: value for value, name in ribbon_mod.SEGMENT_NAMES.items()}


def _grid_of(vol):
    from .volume import Volume

    return Volume(np.zeros(vol.shape, np.uint8), vol.ijk_to_ras, vol.name)


class NodeLogic:
    """The module's Logic without Qt: every method takes and returns MRML nodes.

    The method names and signatures are those the Slicer widget calls on
    ``MotorBandSignLogic`` (a conformance test checks they stay equal).
    """

    #: Name prefix of output nodes (the magnitude node's name is appended).
    OUTPUT_PREFIX = "MBS"

    def __init__(self, scene=None):
        self.scene = scene

    def _scene_for(self, node):
        if self.scene is not None:
            return self.scene
        s = node.GetScene() if node is not None else None
        return s if s is not None else mrml.get_scene()

    def inputs_from_nodes(self, magnitudeNode, phaseNode, t1Node=None, parcellationNode=None,
                          segmentationNode=None):
        """``pipeline.Inputs`` from nodes (copies; the nodes are not modified)."""
        from .pipeline import Inputs

        if magnitudeNode is None:
            raise InputError("no magnitude volume selected.")
        if phaseNode is None:
            raise InputError("no phase volume selected.")
        mag = mrml.volume_from_node(magnitudeNode)
        ph = mrml.volume_from_node(phaseNode)
        t1 = mrml.volume_from_node(t1Node) if t1Node is not None else None
        parc = mrml.volume_from_node(parcellationNode) if parcellationNode is not None else None
        ribbon = None
        if segmentationNode is not None:
            ribbon = mrml.labels_from_segmentation(segmentationNode, _grid_of(mag), _ribbon_names_to_values())
        return Inputs(magnitude=mag, phase=ph, t1=t1, parcellation=parc, ribbon=ribbon)

    def process(self, magnitudeNode, phaseNode, parameters, t1Node=None, parcellationNode=None,
                segmentationNode=None, progress=None, cancel=None, outputs=None) -> NodeResult:
        """Run the pipeline on nodes and show the results in the scene.

        ``parameters``: :class:`Parameters`, or a dict of parameter node values.
        ``progress(fraction, message)`` and ``cancel() -> bool`` are passed to the pipeline.
        ``outputs`` maps result keys ("segmentation", "heatmap", "table", ...) to nodes to
        fill in place; missing ones are created, named after the magnitude node.
        """
        inputs, p = self.prepare(magnitudeNode, phaseNode, parameters, t1Node, parcellationNode, segmentationNode)
        result = self.compute(inputs, p, progress, cancel)
        return self.show(result, magnitudeNode, outputs)

    # process() in three parts, for front ends that run the long middle one off their GUI thread
    # (the web app; the Slicer widget): prepare and show touch nodes and belong on the thread
    # that owns the scene, compute touches none.
    def prepare(self, magnitudeNode, phaseNode, parameters, t1Node=None, parcellationNode=None,
                segmentationNode=None) -> tuple:
        """``(pipeline.Inputs, Parameters)`` read from the nodes (copies; nodes are not modified)."""
        p = _as_parameters(parameters)
        return self.inputs_from_nodes(magnitudeNode, phaseNode, t1Node, parcellationNode, segmentationNode), p

    @staticmethod
    def compute(inputs, parameters, progress=None, cancel=None):
        """``pipeline.run``: arrays only, no node and no scene, so it may run in a worker thread.
        Raises ``CancelledError`` when ``cancel()`` turns true (nothing is shown then)."""
        from . import pipeline

        return pipeline.run(inputs, _as_parameters(parameters), progress, cancel)

    def show(self, result, magnitudeNode, outputs=None) -> NodeResult:
        """Put a pipeline Result into the scene of ``magnitudeNode`` (``outputs``: see process)."""
        scene = self._scene_for(magnitudeNode)
        prefix = f"{self.OUTPUT_PREFIX} {magnitudeNode.GetName()}".strip()
        nodes = mrml.result_to_nodes(result, scene, nodes={k: v for k, v in (outputs or {}).items() if v is not None},
                                     prefix=prefix)
        return self._finish(result, nodes, scene, prefix)

    def remeasure(self, result: NodeResult, segmentationNode, parameters) -> NodeResult:
        """Heatmap and scores again from the (edited) ribbon segmentation; volumes are reused.

        The segmentation is read by segment name; the heatmap, regions, table and chart nodes
        of ``result`` are updated in place and the segmentation is left as the user made it.
        """
        from . import pipeline

        if not isinstance(result, NodeResult):
            raise InputError("nothing to re-measure: run Apply first.")
        if segmentationNode is None:
            segmentationNode = result.nodes.get("segmentation")
        p = _as_parameters(parameters) if parameters is not None else result.result.params
        labels = mrml.labels_from_segmentation(segmentationNode, _grid_of(result.result.swi), _ribbon_names_to_values())
        new = pipeline.remeasure(result.result, labels, p)
        scene = self._scene_for(segmentationNode)
        nodes = dict(result.nodes, segmentation=segmentationNode)
        nodes = mrml.result_to_nodes(new, scene, nodes=nodes, prefix=result.prefix,
                                     keys={"heatmap", "regions", "table", "chart"})
        return self._finish(new, nodes, scene, result.prefix)

    def saveReport(self, result: NodeResult, path) -> str:
        """Write the HTML report of ``result`` to ``path``; returns the path written."""
        from . import report

        if not isinstance(result, NodeResult):
            raise InputError("no result to report: run Apply first.")
        return str(report.write_report(result.result, path))

    def _finish(self, result, nodes, scene, prefix: str = "") -> NodeResult:
        focus = focus_point(result)
        z = result.params.z_threshold if result.params.z_threshold is not None else 2.0
        mrml.show_results(scene, nodes.get("swi"), nodes.get("mip"), nodes.get("heatmap"), nodes.get("segmentation"),
                          z_threshold=z, z_max=z + 3.0, focus_ras=focus)
        return NodeResult(result=result, nodes=nodes, verdict=verdict_text(result.metrics), focus_ras=focus, prefix=prefix)


#: Environment variable naming the folder of the demo case (instead of ``<repository>/demo-case``).
DEMO_DIR_ENV = "MOTORBANDSIGN_DEMO_DIR"


def demo_case_dir():
    """Where the demo case is: ``$MOTORBANDSIGN_DEMO_DIR``, else ``demo-case`` in the repository root
    (the folder ``make demo`` writes; the root is the parent of the MotorBandSign folder)."""
    env = os.environ.get(DEMO_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "demo-case"


def load_demo_nodes(scene=None, name: str = "Motor band demo", case_dir=None) -> tuple:
    """The demo case as magnitude and phase nodes, read from ``case_dir`` (default
    :func:`demo_case_dir`): the magnitude.nii.gz and phase.nii.gz that ``make demo``
    (``python Testing/phantoms/demo.py --out DIR``) writes."""
    from . import io

    d = demo_case_dir() if case_dir is None else Path(case_dir)
    files = {n: d / f"{n}.nii.gz" for n in ("magnitude", "phase")}
    if not all(p.is_file() for p in files.values()):
        raise InputError("the demo case is not there: run `make demo` (or python Testing/phantoms/demo.py "
                         f"--out DIR) first (looked for magnitude.nii.gz and phase.nii.gz in {d})")
    magnitude = io.read_volume(files["magnitude"], what="demo magnitude")
    phase = io.read_volume(files["phase"], what="demo phase")
    scene = mrml.get_scene() if scene is None else scene
    mag = mrml.node_from_volume(magnitude, scene, name=f"{name} magnitude")
    ph = mrml.node_from_volume(phase, scene, name=f"{name} phase")
    return mag, ph
