"""The module panel in a browser (``motorband web``): a trame-slicer application.

Slicer's own slice and 3D views and Segment Editor effects are served by trame-slicer (the
optional dependency ``motorbandsign[web]``); this module only lays out the panel and calls
:class:`~MotorBandSignLib.slicer_logic.NodeLogic`, as the Slicer widget does: it computes
nothing itself. The library imports without trame: only this module needs it, and nothing in
the package imports it except the ``web`` command.

One scene serves one browser tab at a time: trame mirrors its state to every tab, so a second
tab is told that the session is open elsewhere (and may take it over once the first is
closed) instead of editing the same scene behind the first one's back.

The long step (``NodeLogic.compute``: the pipeline on arrays) runs in a worker thread, so the
views and the progress bar stay live and Cancel acts between the pipeline's steps; reading
the nodes before and showing the result after run on the server's own thread, which owns the
scene. A cancelled Apply adds nothing to the scene.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

# Offscreen rendering without an X server (Mesa EGL) unless the user chose otherwise.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from trame.app import TrameApp
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic.segmentation import SegmentEditorLogic
from trame_slicer.app.ui import SegmentEditorUI
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.segmentation import SegmentationOpacityEnum
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from wslink.websocket import LinkProtocol

from . import mrml, outputs, slicer_logic
from .errors import CancelledError, InputError

__all__ = ["MotorBandWebApp", "LOCAL_HOST", "serve"]

#: The only address served without an explicit flag: the app has no authentication.
LOCAL_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: URL prefix under which the session folder (report, saved outputs) is served.
FILES_URL = "mbs-files"

#: Result keys shown as the slice views' background.
BACKGROUNDS = {"mIP": "mip", "SWI": "swi"}


def _param_key(name: str) -> str:
    return f"p_{name}"


class MotorBandWebApp(TrameApp):
    """The panel: inputs, parameters, Apply/Cancel, views, verdict, correction, save."""

    def __init__(self, server=None, session_dir=None):
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        self.session_dir = Path(session_dir or tempfile.mkdtemp(prefix="motorband-web-")).resolve()
        self.session_dir.mkdir(parents=True, exist_ok=True)
        self.server.enable_module({"serve": {FILES_URL: str(self.session_dir)}})

        self.slicer_app = SlicerApp()
        scene = self.slicer_app.scene
        # The adapter reads files and builds segments with this application's own logics.
        mrml.use_app_logics(scene, volumes_logic=self.slicer_app.volumes_logic,
                            segmentations_logic=self.slicer_app.segmentations_logic)
        self.logic = slicer_logic.NodeLogic(scene)
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(scene, self.slicer_app.view_manager, self.server)
        axial = ViewLayoutDefinition.axial_view()
        self.layout_manager.register_layout_dict({"MotorBandSign": Layout(LayoutDirection.Horizontal, [
            axial, Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.threed_view(),
                                                     ViewLayoutDefinition.coronal_view(),
                                                     ViewLayoutDefinition.sagittal_view()])])})
        self.layout_manager.set_layout("MotorBandSign")
        self.editor_logic = SegmentEditorLogic(self.server, self.slicer_app)

        self.specs = slicer_logic.parameter_specs()
        self.inputs = None  # (magnitude node, phase node, t1 node, parcellation node)
        self.result = None  # slicer_logic.NodeResult
        self._cancel = threading.Event()
        self._task = None
        self._owner_client = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="motorband-apply")
        self._init_state()
        self._build_ui()

    # -- state -----------------------------------------------------------------------------------
    def _init_state(self):
        s = self.state
        s.trame__title = "Motor Band Sign"
        s.trame__client_only = list(s.trame__client_only or []) + ["mbs_tab"]
        s.mbs_tab = ""
        s.mbs_owner = ""
        s.input_source = "demo"
        s.path_magnitude = ""
        s.path_phase = ""
        s.path_t1 = ""
        s.path_parcellation = ""
        for spec in self.specs:
            s[_param_key(spec.name)] = spec.default
        s.running = False
        s.progress = 0
        s.status = "Load the inputs, then Apply."
        s.error = ""
        s.inputs_loaded = False
        s.scene_nodes = []
        s.has_result = False
        s.verdict = ""
        s.pattern = ""
        s.warnings = []
        s.columns = []
        s.rows = []
        s.background = "mIP"
        s.heat_min = 0.0
        s.heat_max = 1.0
        s.heat_gradient = self._gradient()
        s.report_url = ""
        s.save_dir = str(self.session_dir / "outputs")
        s.saved = ""
        s.remeasure_seconds = None
        self.state.change("background")(self._on_background)
        self._tab_connections = {}
        app = self

        class _Connections(LinkProtocol):
            def onClose(self, client_id):  # noqa: N802 - wslink's name
                app.connection_closed(client_id)

        self.server.add_protocol_to_configure(lambda root: root.registerLinkProtocol(_Connections()))

    @staticmethod
    def _gradient() -> str:
        stops = ", ".join(f"rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f}) {x * 100:.0f}%"
                          for x, (r, g, b) in mrml.HEATMAP_POINTS)
        return f"linear-gradient(to right, {stops})"

    def _values(self) -> dict:
        return {spec.name: self.state[_param_key(spec.name)] for spec in self.specs}

    def _refresh_scene_list(self):
        col = self.slicer_app.scene.GetNodesByClass("vtkMRMLDisplayableNode")
        names = []
        for i in range(col.GetNumberOfItems()):
            node = col.GetItemAsObject(i)
            if node.IsA("vtkMRMLVolumeNode") or node.IsA("vtkMRMLSegmentationNode"):
                names.append(node.GetName())
        self.state.scene_nodes = names

    def _fail(self, message: str):
        self.state.error = message
        self.state.status = "Not done: see the message above."

    # -- one tab at a time -----------------------------------------------------------------------
    def _caller_connection(self):
        """The websocket connection of the tab whose message is being handled (wslink notes it)."""
        return getattr(getattr(self.server, "_server", None), "last_active_client_id", None)

    def claim(self, tab_id: str):
        """A tab asks to drive the session: the first one does; others are told it is taken."""
        self._tab_connections[tab_id] = self._caller_connection()
        if not self.state.mbs_owner:
            self.state.mbs_owner = tab_id

    def take_over(self, tab_id: str):
        self._tab_connections[tab_id] = self._caller_connection()
        self.state.mbs_owner = tab_id

    def connection_closed(self, connection):
        """A tab's websocket closed (tab closed, reloaded or killed): if it drove the session,
        free it; an open tab then claims it (ClientStateChange on mbs_owner)."""
        owner = self.state.mbs_owner
        if owner and self._tab_connections.get(owner) == connection:
            with self.state:
                self.state.mbs_owner = ""
        self._tab_connections = {t: c for t, c in self._tab_connections.items() if c != connection}

    # -- inputs ----------------------------------------------------------------------------------
    def load_inputs(self):
        if self.state.running:
            return
        self.state.error = ""
        try:
            if self.state.input_source == "demo":
                mag, ph = slicer_logic.load_demo_nodes(self.slicer_app.scene)
                t1 = parc = None
            else:
                mag, ph, t1, parc = self._read_files()
        except InputError as exc:
            self._fail(str(exc))
            return
        self._forget_result()
        for node in self.inputs or ():
            if node is not None and node.GetScene() is not None:
                self.slicer_app.scene.RemoveNode(node)
        self.inputs = (mag, ph, t1, parc)
        problem = slicer_logic.input_problem(mag, ph, self._safe_parameters())
        self.slicer_app.display_manager.show_volume_in_slice_background(mag)
        self.slicer_app.display_manager.show_volume_in_slice_foreground(None)
        for view in self.slicer_app.view_manager.get_slice_views():
            view.fit_view_to_content()
        self.state.inputs_loaded = True
        self.state.status = problem or f"Loaded {mag.GetName()} and {ph.GetName()}: press Apply."
        self._refresh_scene_list()

    def _read_files(self):
        paths = {k: (self.state[f"path_{k}"] or "").strip() for k in ("magnitude", "phase", "t1", "parcellation")}
        for k in ("magnitude", "phase"):
            if not paths[k]:
                raise InputError(f"enter the path of the {k} image on the server (NIfTI, NRRD or a DICOM folder).")
        scene = self.slicer_app.scene
        read = []  # a file that cannot be read leaves the scene as it was
        try:
            for key, kwargs in (("magnitude", {"allow_4d": True}), ("phase", {"allow_4d": True}), ("t1", {}),
                                ("parcellation", {"labelmap": True})):
                read.append(mrml.read_volume_node(paths[key], scene, **kwargs) if paths[key] else None)
        except Exception:
            for node in read:
                if node is not None:
                    scene.RemoveNode(node)
            raise
        return tuple(read)

    def _safe_parameters(self):
        try:
            return slicer_logic.parameters_from_gui(self._values())
        except InputError:
            return None

    def reset_parameters(self):
        for spec in self.specs:
            self.state[_param_key(spec.name)] = spec.default

    # -- apply / cancel --------------------------------------------------------------------------
    def apply(self):
        """Start the run as a task and return at once, so that the server keeps handling clicks
        (Cancel, the views) while it goes."""
        if self._task is not None and not self._task.done():
            self.state.status = "A run is already going: wait for it or Cancel it."
            return
        self._task = asyncio.get_event_loop().create_task(self._apply())

    async def _apply(self):
        if self.state.running:
            with self.state:
                self.state.status = "A run is already going: wait for it or Cancel it."
            return
        with self.state:
            self.state.error = ""
        if self.inputs is None:
            with self.state:
                self._fail("Load the inputs first (the demo case or files on the server).")
            return
        mag, ph, t1, parc = self.inputs
        try:
            problem = slicer_logic.input_problem(mag, ph, self._values())
            if problem:
                raise InputError(problem)
            inputs, params = self.logic.prepare(mag, ph, self._values(), t1Node=t1, parcellationNode=parc)
        except InputError as exc:
            with self.state:
                self._fail(str(exc))
            return
        self._cancel.clear()
        with self.state:
            self.state.running = True
            self.state.progress = 0
            self.state.status = "Starting"
        loop = asyncio.get_running_loop()

        def progress(fraction, message):
            loop.call_soon_threadsafe(self._show_progress, fraction, message)

        try:
            result = await loop.run_in_executor(self._executor, self.logic.compute, inputs, params, progress,
                                                self._cancel.is_set)
        except CancelledError:
            with self.state:
                self.state.running = False
                self.state.status = "Cancelled: nothing was added to the scene."
            return
        except InputError as exc:
            with self.state:
                self.state.running = False
                self._fail(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown in the panel; the server keeps serving
            with self.state:
                self.state.running = False
                self._fail(f"Internal error: {type(exc).__name__}: {exc}")
            raise
        with self.state:
            self.state.status = "Showing the results"
        with self.state:
            self._forget_result()
            self.result = self.logic.show(result, mag)
            self._show_result(reset_views=True)
            self.state.running = False
            self.state.progress = 100
            self.state.status = "Done."

    def _show_progress(self, fraction, message):
        with self.state:
            self.state.progress = round(100 * float(fraction))
            self.state.status = str(message)

    def cancel(self):
        if self.state.running:
            self._cancel.set()
            self.state.status = "Cancelling after the current step..."

    def _forget_result(self):
        """Remove the nodes of the previous result (a new Apply replaces it)."""
        if self.result is None:
            return
        self.editor_logic.segmentation_editor.deactivate_effect()
        for node in self.result.nodes.values():
            if node is not None and node.GetScene() is not None:
                self.slicer_app.scene.RemoveNode(node)
        self.result = None
        self.state.has_result = False
        self.state.report_url = ""

    def _show_result(self, reset_views=False):
        res = self.result
        nodes = res.nodes
        if reset_views:
            editor = self.editor_logic.segmentation_editor
            editor.set_active_segmentation(nodes["segmentation"], nodes["swi"])
            # Outlines on the slices (as the Slicer module shows them) and the ribbon's surface in 3D,
            # through the editor's own display settings so that its Rendering panel agrees.
            self.editor_logic.data.segment_display.opacity_mode = SegmentationOpacityEnum.OUTLINE
            self.editor_logic.data.segment_display.show_3d = True
            self._on_background(self.state.background)
            for view in self.slicer_app.view_manager.get_views():
                view.fit_view_to_content()
            if res.focus_ras is not None:
                for view in self.slicer_app.view_manager.get_slice_views():
                    view.get_view_node().JumpSliceByCentering(*res.focus_ras)
        z = res.result.params.z_threshold
        self.state.heat_min = round(float(z), 2)
        self.state.heat_max = round(float(z) + 3.0, 2)
        rows = mrml.rows_from_table_node(nodes["table"])
        self.state.columns = list(rows[0]) if rows else []
        self.state.rows = rows
        self.state.verdict = res.verdict
        self.state.pattern = res.metrics.get("pattern", "")
        self.state.warnings = res.warnings
        self.state.has_result = True
        self.state.report_url = ""
        self._refresh_scene_list()

    def _on_background(self, background, **_):
        if self.result is None:
            return
        node = self.result.nodes.get(BACKGROUNDS.get(background, "mip"))
        self.slicer_app.display_manager.show_volume_in_slice_background(node)
        self.slicer_app.display_manager.show_volume_in_slice_foreground(self.result.nodes.get("heatmap"))

    # -- correction ------------------------------------------------------------------------------
    def remeasure(self):
        if self.result is None or self.state.running:
            self._fail("Nothing to re-measure: run Apply first.")
            return
        self.state.error = ""
        t0 = time.perf_counter()
        try:
            self.result = self.logic.remeasure(self.result, self.result.nodes["segmentation"], self._values())
        except InputError as exc:
            self._fail(str(exc))
            return
        self._show_result()
        self.state.remeasure_seconds = round(time.perf_counter() - t0, 1)
        self.state.status = f"Re-measured from the edited ribbon in {self.state.remeasure_seconds} s."

    # -- outputs ---------------------------------------------------------------------------------
    def write_report(self):
        if self.result is None:
            return
        path = self.session_dir / "report.html"
        self.logic.saveReport(self.result, path)
        self.state.report_url = f"/{FILES_URL}/report.html?t={int(time.time())}"
        self.state.status = f"Report written: {path}"

    def save(self):
        """The result's outputs (as ``motorband run`` writes them), the edited segmentation and the
        whole scene, each written completely or not at all."""
        if self.result is None:
            return
        self.state.error = ""
        try:
            out = outputs.write_outputs(self.result.result, self.state.save_dir)
            seg = mrml.write_segmentation(self.result.nodes["segmentation"], Path(out) / "ribbon_edited.seg.nrrd")
            scene = mrml.write_mrb(self.slicer_app.scene, Path(out) / "session.mrb")
        except InputError as exc:
            self._fail(str(exc))
            return
        self.state.saved = f"Saved to {out}: outputs, {Path(seg).name}, {Path(scene).name}"
        self.state.status = self.state.saved

    # -- layout ----------------------------------------------------------------------------------
    def _build_ui(self):
        with SinglePageWithDrawerLayout(self.server, full_height=True) as layout:
            self.ui = layout
            layout.title.set_text("Motor Band Sign")
            client.ClientTriggers(mounted="mbs_tab = Math.random().toString(36).slice(2); trigger('mbs_claim', [mbs_tab])")
            client.ClientStateChange(value="mbs_owner", change="(!mbs_owner && mbs_tab) && trigger('mbs_claim', [mbs_tab])")
            self.ctrl.trigger("mbs_claim")(self.claim)
            self.ctrl.trigger("mbs_take_over")(self.take_over)
            with layout.toolbar:
                v3.VSpacer()
                html.Span("Research tool, not a medical device.", classes="text-caption mr-4")
            with layout.drawer as drawer:
                drawer.width = 480
                with html.Div(v_if="mbs_owner && mbs_owner !== mbs_tab", classes="pa-4", id="mbs-refused"):
                    html.P("This Motor Band Sign session is open in another tab or window. One tab at a time "
                           "drives a session, so that no two edit the same scene: close the other tab (this one then "
                           "takes over by itself), or take over here (the other tab then stops).")
                    v3.VBtn("Take over here", click="trigger('mbs_take_over', [mbs_tab])", id="mbs-take-over")
                with html.Div(v_if="mbs_owner === mbs_tab", classes="pa-2", id="mbs-panel"):
                    self._inputs_ui()
                    self._parameters_ui()
                    self._run_ui()
                    self._results_ui()
                    self._correction_ui()
                    self._save_ui()
            with layout.content:
                with html.Div(v_if="mbs_owner === mbs_tab", style="position: relative; height: 100%; display: flex;"):
                    self.layout_manager.initialize_layout_grid(layout)

    def _inputs_ui(self):
        with v3.VCard(title="Inputs", variant="outlined", classes="mb-2"):
            with v3.VCardText():
                with v3.VRadioGroup(v_model=("input_source",), inline=True, density="compact", hide_details=True):
                    v3.VRadio(label="Demo case", value="demo", id="mbs-source-demo")
                    v3.VRadio(label="Files on the server", value="files", id="mbs-source-files")
                with html.Div(v_if="input_source === 'files'"):
                    for key, label in (("magnitude", "Magnitude"), ("phase", "Phase"), ("t1", "T1 (optional)"),
                                       ("parcellation", "Parcellation (optional)")):
                        v3.VTextField(v_model=(f"path_{key}",), label=label, density="compact", hide_details=True,
                                      classes="mb-1", placeholder="/path/on/server.nii.gz", id=f"mbs-path-{key}")
                v3.VBtn("Load", click=self.load_inputs, disabled=("running",), classes="mt-2", id="mbs-load")
                html.Div("Scene: {{ scene_nodes.length ? scene_nodes.join(', ') : 'empty' }}",
                         classes="text-caption mt-1", id="mbs-scene")

    def _parameters_ui(self):
        with v3.VExpansionPanels(classes="mb-2"), v3.VExpansionPanel(title="Parameters (advanced)"):
            with v3.VExpansionPanelText():
                for spec in self.specs:
                    key = _param_key(spec.name)
                    common = dict(label=spec.name.replace("_", " "), density="compact", hide_details="auto",
                                  classes="mb-1", id=f"mbs-param-{spec.name}")
                    with v3.VTooltip(text=spec.help or spec.name, location="end", max_width=320):
                        with v3.Template(v_slot_activator="{ props }"), html.Div(v_bind="props"):
                            if spec.choices:
                                v3.VSelect(v_model=(key,), items=(list(spec.choices),), **common)
                            elif spec.gui_type is bool:
                                v3.VCheckbox(v_model=(key,), **common)
                            elif spec.gui_type in (int, float):
                                lo, hi = spec.range or (None, None)
                                rule = (f"(v) => (v !== '' && Number(v) >= {lo} && Number(v) <= {hi}) || "
                                        f"'between {lo} and {hi}'") if spec.range else "(v) => v !== '' || 'a number'"
                                v3.VTextField(v_model_number=(key,), type="number", min=lo, max=hi,
                                              step=1 if spec.gui_type is int else 0.01, rules=(f"[{rule}]",), **common)
                            else:
                                v3.VTextField(v_model=(key,), **common)
                v3.VBtn("Defaults", click=self.reset_parameters, size="small", variant="tonal")

    def _run_ui(self):
        with v3.VCard(variant="outlined", classes="mb-2"), v3.VCardText():
            with html.Div(classes="d-flex"):
                v3.VBtn("Apply", click=self.apply, color="primary", disabled=("running || !inputs_loaded",),
                        id="mbs-apply")
                v3.VBtn("Cancel", click=self.cancel, v_show="running", classes="ml-2", id="mbs-cancel")
            v3.VProgressLinear(model_value=("progress",), v_show="running", height=8, classes="mt-2",
                               id="mbs-progress")
            html.Div("{{ status }}", classes="text-body-2 mt-1", id="mbs-status")
            v3.VAlert(text=("error",), v_if="error", type="error", density="compact", classes="mt-1", id="mbs-error")

    def _results_ui(self):
        with v3.VCard(title="Results", v_if="has_result", variant="outlined", classes="mb-2"), v3.VCardText():
            html.Div("{{ verdict }}", classes="text-body-1 font-weight-bold mb-1", id="mbs-verdict")
            with html.Div(v_for="(w, i) in warnings", key="i", classes="text-warning text-caption"):
                html.Span("\u26a0 {{ w }}")
            with v3.VTable(density="compact", id="mbs-table", classes="mt-1",
                           style="font-size: 12px; overflow-x: auto; white-space: nowrap;"):
                with html.Thead(), html.Tr():
                    html.Th("{{ c }}", v_for="c in columns", key="c")
                with html.Tbody():
                    with html.Tr(v_for="(r, i) in rows", key="i"):
                        html.Td("{{ r[c] }}", v_for="c in columns", key="c")
            with html.Div(classes="mt-2 d-flex align-center"):
                with v3.VBtnToggle(v_model=("background",), mandatory=True, density="compact", variant="outlined"):
                    for name in BACKGROUNDS:
                        v3.VBtn(name, value=name, id=f"mbs-bg-{name}")
            with html.Div(classes="mt-2", id="mbs-colorbar"):
                html.Div("Hypointensity z (heatmap)", classes="text-caption")
                html.Div(style=("{ background: heat_gradient, height: '12px', borderRadius: '2px' }",))
                with html.Div(classes="d-flex text-caption"):
                    html.Span("{{ heat_min }}")
                    v3.VSpacer()
                    html.Span("{{ heat_max }}+")
            with html.Div(classes="mt-2"):
                v3.VBtn("Write report", click=self.write_report, size="small", variant="tonal", id="mbs-report")
                html.A("Open the HTML report", href=("report_url",), target="_blank", v_if="report_url",
                       classes="ml-2", id="mbs-report-link")

    def _correction_ui(self):
        with v3.VCard(title="Correct the ribbon", v_if="has_result", variant="outlined", classes="mb-2"):
            with v3.VCardText():
                html.Div("Pick a segment, then Paint, Erase, Scissors or Islands in the views; Undo reverts an "
                         "edit. Re-measure recomputes the heatmap and scores from the edited ribbon (SWI and "
                         "localisation are kept).", classes="text-caption mb-1")
                with html.Div(style="height: 520px; overflow-y: auto;", id="mbs-editor"):
                    editor_ui = SegmentEditorUI()
                    with html.Div(classes="d-flex", id="mbs-undo"):
                        editor_ui.build_undo_redo_buttons()
                self.editor_logic.set_ui(editor_ui)
                v3.VBtn("Re-measure", click=self.remeasure, color="primary", disabled=("running",),
                        classes="mt-2", id="mbs-remeasure")

    def _save_ui(self):
        with v3.VCard(title="Save", v_if="has_result", variant="outlined", classes="mb-2"), v3.VCardText():
            v3.VTextField(v_model=("save_dir",), label="Output folder on the server", density="compact",
                          hide_details=True, id="mbs-save-dir")
            v3.VBtn("Save outputs, edited ribbon and scene", click=self.save, size="small", classes="mt-2",
                    id="mbs-save")
            html.Div("{{ saved }}", classes="text-caption", id="mbs-saved")


def serve(host: str = LOCAL_HOST, port: int = DEFAULT_PORT, session_dir=None, open_browser: bool = False) -> int:
    """Start the app and serve until interrupted; prints the address. Returns an exit code."""
    if host != LOCAL_HOST:
        print(f"motorband web: WARNING: serving on {host}: anyone who can reach this address can read the "
              "scans and files this server can read; the app has no authentication.", file=sys.stderr)
    app = MotorBandWebApp(session_dir=session_dir)

    def announce(**_):
        print(f"motorband web: serving on http://{host if host != '0.0.0.0' else LOCAL_HOST}:"
              f"{app.server.port}/ (session files in {app.session_dir}); Ctrl-C stops.", flush=True)

    app.ctrl.on_server_ready.add(announce)
    app.server.start(host=host, port=port, open_browser=open_browser, show_connection_info=False,
                     disable_logging=True)
    return 0

