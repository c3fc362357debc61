"""The panel in a browser: ``motorband web`` driven by headless Chromium (Debian's ``chromium``).

One app is started for the module and one browser page clicks through a radiologist's path:
load the demo case (here the 1.5 mm bilateral phantom written as a demo-case folder, the same
flow as ``make demo``'s 1 mm case in less time), Cancel an Apply (the scene must be as before),
Apply with the atlas localisation chosen in the parameter form, read "bilateral" in the verdict,
open a second tab (refused clearly; the first keeps working), erase part of the left posterior
bank with the Erase effect in the axial view, Re-measure, and see the left row of the table
change and the right row stay. Each step's screenshot is saved under
``Testing/artifacts/web/`` and checked to show rendered views, not a blank page or a spinner.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="the web app needs motorbandsign[web] (trame-slicer); make test installs it")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (make test installs it)")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("MOTORBANDSIGN_ARTIFACTS", ROOT / "Testing" / "artifacts")) / "web"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

NO_CHROMIUM = "Debian's chromium is not installed (.ci/run installs it with apt-get install -y chromium)"

LEFT_BANK = "Left precentral posterior bank"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_inputs_from_files_on_the_server_in_process(tmp_path):
    """The app object without a browser: files typed as server paths become nodes; a bad path is
    a message in the panel (not a crash), and Apply without inputs says what to do."""
    import asyncio

    from MotorBandSignLib import web
    from phantoms import small_head

    from MotorBandSignLib import io
    from MotorBandSignLib.volume import Volume

    mag, phase, _rib, aff = small_head.small_head()
    io.write_volume(Volume(mag, aff, "mag"), tmp_path / "mag.nii.gz")
    io.write_volume(Volume(phase, aff, "pha"), tmp_path / "pha.nii.gz")
    app = web.MotorBandWebApp(session_dir=tmp_path / "session")
    s = app.state
    asyncio.run(app._apply())
    assert s.error == "Load the inputs first (the demo case or files on the server)."
    s.input_source = "files"
    s.path_magnitude = str(tmp_path / "mag.nii.gz")
    s.path_phase = str(tmp_path / "missing.nii.gz")
    app.load_inputs()
    assert "missing.nii.gz" in s.error and not s.inputs_loaded and s.scene_nodes == []
    s.path_phase = str(tmp_path / "pha.nii.gz")
    app.load_inputs()
    assert s.error == "" and s.inputs_loaded
    # the magnitude read before the failed phase was removed again (MRML keeps counting names)
    assert len(s.scene_nodes) == 2 and re.fullmatch(r"mag(_\d+)?", s.scene_nodes[0]) and s.scene_nodes[1] == "pha"
    assert s.status == f"Loaded {s.scene_nodes[0]} and pha: press Apply."
    spec = {sp.name: sp for sp in app.specs}
    assert s.p_z_threshold == spec["z_threshold"].default and s.p_localisation == "sulcal"
    s.p_band_ratio = 1.5
    asyncio.run(app._apply())
    assert "band_ratio=1.5 must lie between 0 and 1" in s.error and not s.running
    app.reset_parameters()
    assert s.p_band_ratio == spec["band_ratio"].default


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """``motorband web`` on a free local port, serving the bilateral phantom as the demo case."""
    from phantoms import simulate as phantom

    case_dir = tmp_path_factory.mktemp("demo-case")
    phantom.write_case(phantom.fixture("bilateral"), case_dir)
    session = tmp_path_factory.mktemp("session")
    port = _free_port()
    env = dict(os.environ, MOTORBANDSIGN_DEMO_DIR=str(case_dir),
               PYTHONPATH=os.pathsep.join([str(ROOT / "MotorBandSign"), str(ROOT / "Testing"),
                                           os.environ.get("PYTHONPATH", "")]))
    log = open(session / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "MotorBandSignLib", "web", "--port", str(port),
                             "--session-dir", str(session)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            log.seek(0)
            text = log.read()
            if "serving on http://127.0.0.1:" in text:
                break
            assert proc.poll() is None, f"the app exited with {proc.returncode}:\n{text[-3000:]}"
            time.sleep(0.5)
        else:
            pytest.fail("the app did not announce its address within 120 s")
        yield {"url": f"http://127.0.0.1:{port}/", "session": session, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(app):
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def _status(page) -> str:
    return page.inner_text("#mbs-status")


def _wait_status(page, pattern: str, timeout_s: float):
    page.wait_for_function("(p) => new RegExp(p).test(document.querySelector('#mbs-status').innerText)",
                           arg=pattern, timeout=timeout_s * 1000)


def _table(page) -> dict:
    """(hemisphere, region) -> row cells of the verdict table."""
    rows = {}
    lines = page.inner_text("#mbs-table").strip().splitlines()
    for line in lines[1:]:
        cells = line.split("\t")
        rows[(cells[0], cells[1])] = cells[2:]
    return rows


def _axial_box(page, timeout_s: float = 60) -> dict:
    """Bounding box of the largest view (the axial one in this layout), waiting until the views'
    images are on the page (the first render streams in after the scene is loaded; on a busy
    machine that took longer than the status line)."""
    deadline = time.time() + timeout_s
    while True:
        boxes = [b for b in (el.bounding_box() for el in page.query_selector_all(".layout-grid-container img")) if b]
        if boxes or time.time() > deadline:
            break
        page.wait_for_timeout(500)
    assert boxes, f"no view images on the page after {timeout_s:.0f} s"
    return max(boxes, key=lambda b: b["width"] * b["height"])


def _view_pixels(path: Path, box: dict) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    x0, y0 = int(box["x"]), int(box["y"])
    return img[y0:y0 + int(box["height"]), x0:x0 + int(box["width"])]


def _shot(page, name: str, box: dict | None = None, timeout_s: float = 30) -> Path:
    """Screenshot to the artefacts; with ``box``, wait until that view shows an image (not blank)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    deadline = time.time() + timeout_s
    while True:
        page.screenshot(path=str(path))
        if box is None:
            return path
        pixels = _view_pixels(path, box)
        # a rendered brain slice: a wide spread of grey levels over a good part of the view
        if pixels.std() > 20 and (pixels > 60).mean() > 0.05:
            return path
        assert time.time() < deadline, f"{path.name}: the view stayed blank (std {pixels.std():.1f})"
        time.sleep(1)


def _choose(page, field_id: str, value: str):
    """Pick ``value`` in a select: open its menu (again if the first click came during an animation)."""
    field = page.locator(f".v-input:has(#{field_id}) .v-field")
    field.scroll_into_view_if_needed()
    item = page.locator(".v-overlay--active .v-list-item", has_text=re.compile(f"^{value}$"))
    for _ in range(5):
        field.click()
        try:
            item.wait_for(state="visible", timeout=3000)
            break
        except playwright_api.TimeoutError:
            page.keyboard.press("Escape")
    item.click()
    page.wait_for_function("([id, v]) => document.querySelector('#' + id).closest('.v-field').innerText.includes(v)",
                           arg=[field_id, value], timeout=10000)


def test_the_panel_in_a_browser(app, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 950})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app["url"])
    page.wait_for_selector("#mbs-load", timeout=60000)

    # -- inputs: the demo case --------------------------------------------------------------------
    page.click("#mbs-load")
    _wait_status(page, "press Apply", 60)
    scene_before = page.inner_text("#mbs-scene")
    assert "demo magnitude" in scene_before and "demo phase" in scene_before
    box = _axial_box(page)
    _shot(page, "01-loaded", box)

    # -- the parameter form: generated from Parameters, with its defaults ------------------------
    page.click("text=Parameters (advanced)")
    page.wait_for_selector("#mbs-param-localisation", state="visible")
    from MotorBandSignLib.params import Parameters

    assert float(page.input_value("#mbs-param-z_threshold")) == pytest.approx(Parameters().resolved().z_threshold)
    _choose(page, "mbs-param-localisation", "atlas")

    # -- Cancel during Apply leaves the scene as it was -------------------------------------------
    page.click("#mbs-apply")
    page.wait_for_selector("#mbs-cancel", state="visible", timeout=30000)
    page.click("#mbs-cancel")
    _wait_status(page, "^Cancelled", 120)
    assert page.inner_text("#mbs-scene") == scene_before
    assert page.query_selector("#mbs-verdict") is None
    _shot(page, "02-cancelled", box)

    # -- Apply: verdict, table, views -------------------------------------------------------------
    page.click("#mbs-apply")
    page.wait_for_selector("#mbs-verdict", timeout=300000)
    verdict = page.inner_text("#mbs-verdict")
    assert verdict.startswith("Bilateral"), verdict
    before = _table(page)
    assert set(before) >= {("left", "whole bank"), ("right", "whole bank"), ("left", "intermediate")}
    assert "SWI" in page.inner_text("#mbs-panel") and page.is_visible("#mbs-colorbar")
    scene_after = page.inner_text("#mbs-scene")
    for name in ("SWI", "SWI mIP", "hypointensity z", "ribbon"):
        assert name.lower() in scene_after.lower(), (name, scene_after)
    mip_shot = _shot(page, "03-applied", box)

    # -- SWI instead of the mIP behind the heatmap --------------------------------------------------
    page.click("#mbs-bg-SWI")
    deadline = time.time() + 30
    while True:
        swi_shot = _shot(page, "03b-swi-background", box)
        changed = np.abs(_view_pixels(swi_shot, box) - _view_pixels(mip_shot, box)).mean()
        if changed > 2:
            break
        assert time.time() < deadline, "the axial view did not change when SWI was chosen"
        time.sleep(1)
    page.click("#mbs-bg-mIP")

    # -- a second tab is refused clearly; the first keeps the session -----------------------------
    second = browser.new_page(viewport={"width": 1200, "height": 800})
    second.goto(app["url"])
    second.wait_for_selector("#mbs-refused", timeout=60000)
    assert "open in another tab" in second.inner_text("#mbs-refused")
    assert second.query_selector("#mbs-panel") is None
    _shot(second, "04-second-tab-refused")
    second.close()
    time.sleep(1)
    assert page.is_visible("#mbs-panel") and page.inner_text("#mbs-verdict") == verdict

    # -- erase part of the left bank with the Erase effect, then Re-measure -----------------------
    page.locator("#mbs-remeasure").scroll_into_view_if_needed()
    left = page.evaluate("""(name) => [...document.querySelectorAll('#mbs-editor .v-list-item')].findIndex(
        li => [...li.querySelectorAll('input')].some(i => i.value === name))""", LEFT_BANK)
    assert left >= 0, "the left bank is not in the segment list"
    page.locator("#mbs-editor .v-list-item").nth(left).click()
    page.locator("#mbs-editor button:has(.mdi-eraser)").first.click()
    page.locator("#mbs-editor .v-slider-thumb").first.focus()
    page.keyboard.press("End")  # the largest brush
    time.sleep(0.5)
    # radiological convention: the patient's left is on the right half of the axial view
    for y in (0.3, 0.45, 0.6, 0.75):
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * y)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(box["x"] + box["width"] * (0.5 + 0.045 * k), box["y"] + box["height"] * y, steps=3)
        page.mouse.up()
        time.sleep(0.3)
    _shot(page, "05-erased", box)
    page.click("#mbs-remeasure")
    _wait_status(page, "^Re-measured", 60)
    after = _table(page)
    _shot(page, "06-remeasured", box)
    assert after[("right", "whole bank")] == before[("right", "whole bank")]
    assert after[("left", "whole bank")] != before[("left", "whole bank")]
    volume = -1  # last column: bank volume (ml)
    assert float(after[("left", "whole bank")][volume]) < float(before[("left", "whole bank")][volume])

    # -- Undo takes erasure back (as far as the editor's undo stack reaches) --------------------
    page.locator("#mbs-editor button:has(.mdi-cursor-default)").first.click()  # no tool: clicks don't paint
    undo = page.locator("#mbs-undo button:has(.mdi-undo)")
    for _ in range(10):
        if undo.is_disabled():
            break
        undo.click()
        time.sleep(0.3)
    assert undo.is_disabled()
    page.click("#mbs-remeasure")
    page.wait_for_function("(t) => document.querySelector('#mbs-table').innerText !== t",
                           arg=page.inner_text("#mbs-table"), timeout=60000)
    undone = _table(page)
    assert float(undone[("left", "whole bank")][volume]) > float(after[("left", "whole bank")][volume])
    assert undone[("right", "whole bank")] == before[("right", "whole bank")]
    _shot(page, "07-undone", box)

    # -- the report and the saved outputs ---------------------------------------------------------
    page.click("#mbs-report")
    page.wait_for_selector("#mbs-report-link", timeout=120000)
    href = page.get_attribute("#mbs-report-link", "href")
    report = page.request.get(app["url"].rstrip("/") + href)
    assert report.status == 200 and "bilateral" in report.text().lower()
    page.click("#mbs-save")
    page.wait_for_function("document.querySelector('#mbs-saved').innerText.startsWith('Saved to')", timeout=180000)
    out = app["session"] / "outputs"
    for name in ("metrics.json", "report.html", "ribbon.seg.nrrd", "ribbon_edited.seg.nrrd", "session.mrb",
                 "swi.nii.gz", "heatmap.nii.gz"):
        assert (out / name).stat().st_size > 0, name
    assert not [p.name for p in out.parent.iterdir() if ".partial-" in p.name]
    assert not errors, errors
    page.close()
