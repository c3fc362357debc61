"""The HTML report: content, embedded figures, orientation letters and atomic writing."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
from html.parser import HTMLParser

import numpy as np
import pytest

from MotorBandSignLib import report, scoring
from MotorBandSignLib.heatmap import z_map
from MotorBandSignLib.params import Parameters
from MotorBandSignLib.pipeline import Result
from MotorBandSignLib.volume import Volume, grid_from

SHAPE = (40, 48, 40)  # (k, j, i)
LPS_DIR = np.diag([-1.0, -1.0, 1.0])
#: Superior along j, anterior along -k: a coronal-stored grid (array axis 1 is axial).
CORONAL_DIR = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
#: i runs anterior, j runs to the patient's left: the in-plane axes are swapped (needs a transpose).
SWAPPED_DIR = np.array([[0, -1.0, 0], [1.0, 0, 0], [0, 0, 1.0]])
_c, _s = np.cos(np.radians(30)), np.sin(np.radians(30))
#: Oblique: rotated 30 degrees about S, stored LPS-like.
OBLIQUE_DIR = np.array([[_c, -_s, 0], [_s, _c, 0], [0, 0, 1.0]]) @ np.diag([-1.0, -1.0, 1.0])
KNOB_Z = (2.0, 4.0)
WARNINGS = ["Low SNR (about 9): the phase mask & the band contrast are <unreliable>.",
            "The lateral region of the right bank is outside the coverage or too small to measure."]


def _ras(m, shape=SHAPE):
    k, j, i = np.indices(shape)
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    return ijk @ m[:3, :3].T + m[:3, 3]


def make_result(direction=None, pattern_override=None, seed=0):
    """A small synthetic run: a left bank that is darker than its control cortex, a normal right one."""
    m = grid_from(SHAPE, (1.0, 1.0, 1.0), direction)
    ras = _ras(m)
    x, y, z = ras[..., 0], ras[..., 1], ras[..., 2]
    rib = np.zeros(SHAPE, np.uint8)
    ax = np.abs(x)
    knob = (z >= KNOB_Z[0]) & (z <= KNOB_Z[1])
    in_x = ((ax >= 8) & (ax <= 14)) | (knob & (ax >= 5) & (ax <= 17))
    bank = in_x & (y >= -2) & (y <= 0) & (z >= -10) & (z <= 14)
    ctrl = in_x & (y >= 1) & (y <= 4) & (z >= -10) & (z <= 14)
    left, right = x < 0, x > 0
    rib[bank & left] = 1
    rib[bank & right & (z >= -2)] = 2  # right bank does not reach the lateral region
    rib[ctrl & left] = 3
    rib[ctrl & right] = 4
    reg = np.zeros(SHAPE, np.uint8)
    on = rib > 0
    reg[on & (z > 6)] = 1
    reg[on & (z <= 6) & (z >= -2)] = 2
    reg[on & (z < -2)] = 3
    # Pseudo-noise as a function of the RAS position (not of array order), so that the same
    # anatomy stored RAS or LPS gives the same numbers.
    noise = np.modf(np.sin(12.9898 * x + 78.233 * y + 37.719 * z + seed) * 43758.5453)[0]
    brain = ((x / 18) ** 2 + (y / 22) ** 2 + (z / 18) ** 2) <= 1
    swi = np.where(brain, 1.0 + 0.1 * noise, 0.0).astype(np.float32)
    # the left bank is darker (the band): its bank / control ratio 0.03 under the band threshold,
    # so the whole bank is called and no single region is (the regional threshold is lower)
    swi[rib == 1] -= 1.0 - (scoring.DEFAULT_BAND_RATIO - 0.03)
    mip = swi.copy()
    zz = z_map(swi, rib, reg)
    metrics = scoring.score(swi, zz, rib, reg, 0.001, z_mag=zz)
    metrics["profiles"] = scoring.profiles(zz, rib, z)
    metrics["versions"] = {"motorbandsign": "0.1.0", "numpy": np.__version__}
    metrics["timings_s"] = {"swi": 1.5, "total": 3.25}
    if pattern_override:
        metrics.update(pattern_override)
    grid = Volume(np.zeros(SHAPE, np.uint8), m, "mag")
    qc = {"phase_units_detected": "siemens", "handedness": "right", "snr_estimate": 9.0,
          "registration_quality": 0.81, "residual_wrap_fraction": 0.0123}
    return Result(
        swi=grid.with_array(swi, "SWI"), mip=grid.with_array(mip, "SWI mIP"),
        phase_hp=grid.with_array(np.zeros(SHAPE, np.float32)), magnitude=grid.with_array(swi, "Case <7>"),
        brain_mask=grid.with_array(brain.astype(np.uint8)), ribbon=grid.with_array(rib, "Ribbon"),
        regions=grid.with_array(reg), heatmap=grid.with_array(zz, "z"), heatmap_magnitude=grid.with_array(zz),
        metrics=metrics, warnings=list(WARNINGS), params=Parameters(z_threshold=2.0, band_ratio=0.9), qc=qc)


class _Collector(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.imgs, self.rows, self.text = [], [], [], [], []
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr":
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(text):
    p = _Collector()
    p.feed(text)
    p.close()
    return p


def png_size(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    res = make_result()
    before = {n: hashlib.sha1(np.ascontiguousarray(getattr(res, n).array)).hexdigest()
              for n in ("swi", "mip", "ribbon", "regions", "heatmap", "brain_mask")}
    metrics_before = repr(res.metrics)
    d = tmp_path_factory.mktemp("rep")
    out = report.write_report(res, d / "report.html")
    return res, d, out, out.read_text(encoding="utf-8"), before, metrics_before


def test_written_parses_and_leaves_no_temp(written):
    res, d, out, text, _, _ = written
    assert out == d / "report.html" and out.is_file()
    assert sorted(os.listdir(d)) == ["report.html"]
    p = parse(text)
    assert p.errors == [] and p.stack == []
    assert text.startswith("<!DOCTYPE html>")


def test_inputs_not_modified(written):
    res, _, _, _, before, metrics_before = written
    for n, h in before.items():
        assert hashlib.sha1(np.ascontiguousarray(getattr(res, n).array)).hexdigest() == h, n
    assert repr(res.metrics) == metrics_before


def test_verdict_pattern_and_disclaimer(written):
    res, _, _, text, _, _ = written
    assert res.metrics["pattern"] == "left"  # the synthetic band is on the left only
    body = "".join(parse(text).text)
    assert "Pattern: left" in body
    assert "LEFT hemisphere only" in body
    assert "research measurement, not a diagnosis" in body
    assert "research tool, not a medical device; thresholds are provisional" in body
    li = res.metrics["laterality_index"]
    assert li > 0 and f"{li:+.2f}" in body
    assert "+ = left more affected" in body and "right-sided upper motor neuron signs" in body
    assert "Nonspecific diffuse" not in body  # not flagged here
    for ref in ("Zejlon", "Haacke", "Eckstein", "motor band sign"):
        assert ref in body


def test_diffuse_and_absent_wording():
    res = make_result(pattern_override={"pattern": "absent", "nonspecific_diffuse": True})
    body = "".join(parse(report.verdict_html(res, 1.0)).text)
    assert "Pattern: absent" in body and "no band called" in body
    assert "the control cortex is itself dark" in body
    assert "a band is called only where the posterior bank is darker still" in body.lower()
    assert "motor band pattern in both" not in body


def test_table_values(written):
    res, _, _, text, _, _ = written
    rows = {tuple(r[:2]): r for r in parse(text).rows if r and len(r) == len(report.TABLE_COLUMNS)}
    h = res.metrics["hemispheres"]
    left = rows[("left", "whole bank")]
    assert left[2] == "yes"
    assert left[5] == f"{h['left']['z_median']:.2f}"
    assert left[3] == f"{h['left']['band_contrast']:.3f}"
    assert left[4] == f"{100 * h['left']['hypointense_fraction']:.1f} %"
    assert left[8] == str(h["left"]["grade"])
    right = rows[("right", "whole bank")]
    assert right[2] == "no" and right[5] == f"{h['right']['z_median']:.2f}"
    med = rows[("left", "intermediate (upper limb / hand knob)")]
    assert med[5] == f"{h['left']['regions']['intermediate']['z_median']:.2f}"
    assert med[7] == f"{h['left']['regions']['intermediate']['volume_ml']:.2f}"
    # The right bank stops above the lateral region: not measured, said so in every value cell.
    assert h["right"]["regions"]["lateral"]["measured"] is False
    lat = rows[("right", "lateral (orofacial)")]
    assert all(c.startswith("not measured") for c in lat[2:])
    # z values differ between sides, so a swapped table would fail above
    assert f"{h['left']['z_median']:.2f}" != f"{h['right']['z_median']:.2f}"


def test_warnings_escaped_and_qc(written):
    _, _, _, text, _, _ = written
    assert "&lt;unreliable&gt;" in text and "&amp; the band" in text
    assert "<unreliable>" not in text
    body = "".join(parse(text).text)
    for w in WARNINGS:
        assert w in body
    assert "Case &lt;7&gt;" in text and "Case <7>" not in text
    for s in ("siemens", "0.81", "residual wrap fraction", "0.0123", "SNR estimate"):
        assert s in body
    assert "z_threshold" in body and "band_ratio" in body  # parameters
    assert "total (s)" in body and "3.25" in body and "matplotlib" in body


def test_embedded_pngs(written):
    _, _, out, text, _, _ = written
    res = written[0]
    n_levels = len(report.choose_levels(res.ribbon, report.axial_axis(res.ribbon)))
    assert n_levels >= 3
    # one figure per axial level + the grade bar chart + the profile plot
    assert text.count("data:image/png;base64,") == n_levels + 2
    imgs = parse(text).imgs
    assert len(imgs) == n_levels + 2
    import matplotlib.image as mpimg

    for im in imgs:
        b64 = im["src"].split(",", 1)[1]
        data = base64.b64decode(b64, validate=True)
        w, h = png_size(data)
        assert 250 <= w <= 3000 and 200 <= h <= 4000, (w, h)
        arr = mpimg.imread(io.BytesIO(data), format="png")
        assert arr.shape[:2] == (h, w)
        assert arr[..., :3].std() > 0.01  # not a blank canvas
    assert out.stat().st_size < 3_000_000


def test_orientation_labels_ras_vs_lps():
    ras = Volume(np.zeros(SHAPE), grid_from(SHAPE, (1, 1, 1)))
    lps = Volume(np.zeros(SHAPE), grid_from(SHAPE, (1, 1, 1), LPS_DIR))
    assert report.axial_axis(ras) == 0 and report.axial_axis(lps) == 0
    # Raw array slices: column index runs along +x (towards R) on RAS storage, towards L on LPS.
    assert report.orientation_labels(ras, 0) == {"top": "P", "bottom": "A", "left": "L", "right": "R"}
    assert report.orientation_labels(lps, 0) == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    cor = Volume(np.zeros(SHAPE), grid_from(SHAPE, (1, 1, 1), CORONAL_DIR))
    assert report.axial_axis(cor) == 1
    # rows run along k = posterior: anterior at the top of the raw slice
    assert report.orientation_labels(cor, 1) == {"top": "A", "bottom": "P", "left": "L", "right": "R"}
    sw = Volume(np.zeros(SHAPE), grid_from(SHAPE, (1, 1, 1), SWAPPED_DIR))
    # rows (j) run towards the patient's left, columns (i) run anterior
    assert report.orientation_labels(sw, 0) == {"top": "R", "bottom": "L", "left": "P", "right": "A"}
    assert report.display_plan(sw, 0)["transpose"] and not report.display_plan(ras, 0)["transpose"]


@pytest.mark.parametrize("direction", [None, LPS_DIR, CORONAL_DIR, SWAPPED_DIR, OBLIQUE_DIR],
                         ids=["RAS", "LPS", "coronal", "swapped", "oblique30"])
@pytest.mark.parametrize("convention", ["radiological", "neurological"])
def test_displayed_slice_puts_patient_left_where_labelled(direction, convention):
    m = grid_from(SHAPE, (1, 1, 1), direction)
    ras = _ras(m)
    marker = ((ras[..., 0] < -10) & (np.abs(ras[..., 1]) < 3) & (np.abs(ras[..., 2]) < 2)).astype(np.uint8)
    front = ((ras[..., 1] > 12) & (np.abs(ras[..., 0]) < 3) & (np.abs(ras[..., 2]) < 2)).astype(np.uint8)
    vol = Volume(marker + 2 * front, m)
    axis = report.axial_axis(vol)
    idx = int(np.argmax((vol.array > 0).sum(axis=tuple(a for a in range(3) if a != axis))))
    img, labels = report.display_slice(vol, axis, idx, convention)
    rows, cols = np.nonzero(img == 1)
    frows, fcols = np.nonzero(img == 2)
    assert rows.size and frows.size
    left_half = cols.mean() < img.shape[1] / 2
    expected_left_letter = "L" if left_half else "R"
    assert labels["left"] == expected_left_letter  # the patient-left marker is on the side labelled L
    assert labels["left"] == ("R" if convention == "radiological" else "L")
    assert labels["top"] == "A" and frows.mean() < img.shape[0] / 2  # anterior at the top


@pytest.mark.parametrize("direction", [None, LPS_DIR, np.diag([1.0, 1.0, -1.0])], ids=["RAS", "LPS", "S-down"])
def test_levels_span_bank_and_include_knob(direction):
    res = make_result(direction)
    axis = report.axial_axis(res.ribbon)
    levels = report.choose_levels(res.ribbon, axis)
    assert 3 <= len(levels) <= 4
    heights = []
    for idx, caption in levels:
        sl = np.take(res.ribbon.array, idx, axis=axis)
        assert np.isin(sl, (1, 2)).any()
        ijk = np.zeros(3)
        ijk[2 - axis] = idx
        heights.append(res.ribbon.ras_of_ijk(ijk)[2])
    assert heights == sorted(heights, reverse=True)  # superior first, whatever the storage order
    knob = [h for (idx, c), h in zip(levels, heights) if "hand knob" in c]
    assert len(knob) == 1 and KNOB_Z[0] <= knob[0] <= KNOB_Z[1]
    assert heights[0] >= 10  # the top level is near the top of the bank (z 14)


def test_lps_storage_gives_same_table(written):
    a = written[3]
    b = report.table_html(make_result(LPS_DIR).metrics)
    ta = [r for r in parse(a).rows if r and len(r) == len(report.TABLE_COLUMNS) and r[0] != "Hemisphere"]
    tb = [r for r in parse(b).rows if r and len(r) == len(report.TABLE_COLUMNS) and r[0] != "Hemisphere"]
    assert len(ta) == 8 and ta == tb  # same anatomy, different storage: same numbers
    assert "Radiological convention" in a and "Neurological convention" not in a


def test_failed_render_creates_nothing(tmp_path, monkeypatch):
    target = tmp_path / "report.html"

    def boom(*a, **k):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(report, "grades_figure", boom)  # after the slice figures were drawn
    with pytest.raises(RuntimeError):
        report.write_report(make_result(), target)
    assert os.listdir(tmp_path) == []
    target.write_text("previous report")
    with pytest.raises(RuntimeError):
        report.write_report(make_result(), target)
    assert target.read_text(encoding="utf-8") == "previous report" and os.listdir(tmp_path) == ["report.html"]


def test_failed_write_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "report.html"

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", fail_replace)
    monkeypatch.setattr(report, "render_html", lambda result, convention="radiological": "<html></html>")
    with pytest.raises(OSError):
        report.write_report(make_result(), target)
    assert os.listdir(tmp_path) == []


def test_no_pyplot_or_rc_state_leaks():
    import sys

    import matplotlib

    had_pyplot = "matplotlib.pyplot" in sys.modules
    # (matplotlib.get_backend() would itself import pyplot to resolve "auto": read the raw value)
    backend, font = dict.__getitem__(matplotlib.rcParams, "backend"), matplotlib.rcParams["font.size"]
    text = report.render_html(make_result(), convention="neurological")
    assert "Neurological convention" in text
    if had_pyplot:
        import matplotlib.pyplot as plt
        assert plt.get_fignums() == []
    else:
        assert "matplotlib.pyplot" not in sys.modules
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
    assert matplotlib.rcParams["font.size"] == font


def test_empty_ribbon_still_reports(tmp_path):
    """A failed localisation (no ribbon at all) still gives a complete, honest report."""
    res = make_result()
    empty = np.zeros(SHAPE, np.uint8)
    zz = np.zeros(SHAPE, np.float32)
    metrics = scoring.score(res.swi.array, zz, empty, empty, 0.001)
    metrics["profiles"] = scoring.profiles(zz, empty, np.zeros(SHAPE))
    res.ribbon, res.regions, res.heatmap, res.metrics = (res.ribbon.with_array(empty), res.regions.with_array(empty),
                                                         res.heatmap.with_array(zz), metrics)
    levels = report.choose_levels(res.ribbon, 0)
    assert levels == [(SHAPE[0] // 2, "middle of the volume (no ribbon)")]
    text = report.write_report(res, tmp_path / "r.html").read_text(encoding="utf-8")
    p = parse(text)
    assert p.errors == [] and text.count("data:image/png;base64,") == 1 + 2
    body = "".join(p.text)
    # Nothing was measured, so nothing is called (issue 12: "absent" is a finding about a measured bank).
    assert "Pattern: not measured" in body and "Total regional grade" not in body  # nothing was graded
    rows = [r for r in p.rows if r and r[0] in ("left", "right")]
    assert len(rows) == 8 and all(c.startswith("not measured") for r in rows for c in r[2:])
