"""One self-contained HTML report of a run: verdict, slices, tables, charts, QC, references.

``render_html(result) -> str`` builds the page in memory (figures drawn with matplotlib's Agg
canvas through the object-oriented ``Figure`` API, so pyplot's global state is never touched,
and embedded as base64 PNG); ``write_report(result, path) -> Path`` writes it atomically (a
temporary file in the target directory, then ``os.replace``), so a failure while rendering
never leaves a partial or stale-looking report behind.

Orientation: displayed axial slices are taken along the array axis closest to RAS superior and
re-oriented from ``Volume.ijk_to_ras`` (transpose / flips to the nearest anatomical axes), so
the "L" / "R" letters are computed from the matrix, never assumed from array order. The default
display is the radiological convention (patient's right on the image left).

The wording never overclaims: the tool is a research measurement, not a diagnosis, and the
thresholds (scoring.py) are provisional.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import os
from pathlib import Path

import numpy as np

from .heatmap import BANK, CONTROL

#: Outline colours of the ribbon on the slices (bank vs control cortex).
BANK_COLOR = "#00d8ff"
CONTROL_COLOR = "#7CFC00"
#: Hemisphere colours in the charts.
SIDE_COLORS = {"left": "#1f77b4", "right": "#d62728"}
#: PNG resolution and slice-figure width: modest, so that a 1 mm whole-brain report stays
#: within a few MB, yet a 2-3 mm band spans several pixels.
FIG_DPI = 90
FIG_WIDTH_IN = 8.0
#: Margin (mm) around the ribbon when zooming the slices on the motor strip.
CROP_MARGIN_MM = 12.0
#: Axial levels shown (spanning the bank from the top, plus the level with most bank voxels).
SPAN_FRACTIONS = (0.1, 0.4, 0.7)
#: Levels closer than this (slices) to the hand-knob level are replaced by it.
MIN_LEVEL_GAP = 3
REGION_ORDER = ("medial", "intermediate", "lateral")
REGION_BODY = {"medial": "lower limb", "intermediate": "upper limb / hand knob", "lateral": "orofacial"}

REFERENCES = (
    "Chakraborty S, Gupta A, Nguyen T, Bourque P. The \u201cmotor band sign\u201d: susceptibility-weighted "
    "imaging in amyotrophic lateral sclerosis. Can J Neurol Sci 2015 (Neuroimaging Highlights) \u2014 "
    "the case report that named the sign (case 2: left band, right-sided UMN signs).",
    "Zejlon C, et al. Ann Clin Transl Neurol 2024;11:1280 \u2014 visual motor band rating with medial / "
    "intermediate / lateral regional scores in 114 ALS, 79 mimics and 31 controls.",
    "Haacke EM, Xu Y, Cheng YC, Reichenbach JR. Susceptibility weighted imaging (SWI). "
    "Magn Reson Med 2004;52:612-618.",
    "Eckstein K, et al. Improved susceptibility weighted imaging at ultra-high field using bipolar "
    "multi-echo acquisition and optimized image processing: CLEAR-SWI. NeuroImage 2021;237:118175.",
)

# --------------------------------------------------------------------------------------------
# Orientation
# --------------------------------------------------------------------------------------------
_POS = ("R", "A", "S")  # letter of +x, +y, +z in RAS
_NEG = ("L", "P", "I")
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


def _letter(vec, comp: int) -> str:
    return _POS[comp] if vec[comp] > 0 else _NEG[comp]


def _assign(row_vec, col_vec, comps=(0, 1, 2)) -> tuple[int, int]:
    """Distinct RAS components (row axis, column axis) that best match two direction vectors."""
    best, pair = -1.0, (comps[0], comps[1])
    for a in comps:
        for b in comps:
            if a != b:
                s = abs(row_vec[a]) + abs(col_vec[b])
                if s > best + 1e-9:
                    best, pair = s, (a, b)
    return pair


def _in_plane(axis: int) -> tuple[int, int]:
    rows_ax, cols_ax = [a for a in range(3) if a != axis]
    return rows_ax, cols_ax


def axial_axis(volume) -> int:
    """The array axis (0 = k, 1 = j, 2 = i) whose direction is closest to RAS superior."""
    d = volume.direction  # columns: i, j, k
    return 2 - int(np.argmax(np.abs(d[2, :])))


def orientation_labels(volume, axis: int) -> dict:
    """Patient directions at the edges of a raw array slice, from the IJK-to-RAS matrix.

    The slice is ``np.take(volume.array, n, axis)`` shown with ``imshow`` (row 0 at the top,
    column 0 at the left). Returns ``{"top", "bottom", "left", "right"}`` with letters
    R/L/A/P/S/I: e.g. ``labels["left"] == "L"`` means the patient's left is on the image left
    (neurological). On a RAS-stored axial grid that is the case; on an LPS-stored one it is R.
    """
    rows_ax, cols_ax = _in_plane(axis)
    d = volume.direction
    rv, cv = d[:, 2 - rows_ax], d[:, 2 - cols_ax]
    rc, cc = _assign(rv, cv)
    down, right = _letter(rv, rc), _letter(cv, cc)
    return {"top": _OPPOSITE[down], "bottom": down, "left": _OPPOSITE[right], "right": right}


def display_plan(volume, axis: int, convention: str = "radiological") -> dict:
    """How to turn a raw slice along ``axis`` into an axial view in ``convention``.

    Rows are put along anterior -> posterior (anterior at the top), columns along the patient's
    right -> left (radiological) or left -> right (neurological), using the axes of the grid
    nearest to RAS x and y (for an oblique grid this is the nearest-axis view, as in Slicer's
    slice views without reformatting). Returns transpose / flip flags, the edge letters of the
    displayed image and the pixel size (rows, columns) in mm.
    """
    if convention not in ("radiological", "neurological"):
        raise ValueError(f"convention {convention!r}: use 'radiological' or 'neurological'")
    rows_ax, cols_ax = _in_plane(axis)
    d = volume.direction
    sp = volume.spacing_kji
    rv, cv = d[:, 2 - rows_ax].copy(), d[:, 2 - cols_ax].copy()
    rsp, csp = float(sp[rows_ax]), float(sp[cols_ax])
    rc, _ = _assign(rv, cv, comps=(0, 1))
    transpose = rc == 0  # rows currently run left-right: swap so that columns carry x
    if transpose:
        rv, cv, rsp, csp = cv, rv, csp, rsp
    flip_rows = rv[1] > 0  # row index should increase towards posterior (anterior on top)
    if flip_rows:
        rv = -rv
    want_col_x_negative = convention == "radiological"  # columns run R -> L
    flip_cols = (cv[0] < 0) != want_col_x_negative
    if flip_cols:
        cv = -cv
    down, right = _letter(rv, 1), _letter(cv, 0)
    labels = {"top": _OPPOSITE[down], "bottom": down, "left": _OPPOSITE[right], "right": right}
    return {"axis": axis, "transpose": transpose, "flip_rows": bool(flip_rows), "flip_cols": bool(flip_cols),
            "labels": labels, "pixel_mm": (rsp, csp), "convention": convention}


def oriented_slice(array: np.ndarray, plan: dict, index: int) -> np.ndarray:
    """The slice ``index`` of ``array`` along ``plan["axis"]``, re-oriented for display (a copy)."""
    s = np.take(np.asarray(array), int(index), axis=plan["axis"])
    if plan["transpose"]:
        s = s.T
    if plan["flip_rows"]:
        s = s[::-1, :]
    if plan["flip_cols"]:
        s = s[:, ::-1]
    return np.ascontiguousarray(s)


def display_slice(volume, axis: int, index: int, convention: str = "radiological") -> tuple[np.ndarray, dict]:
    """The displayed axial slice of ``volume`` and the patient direction at each image edge."""
    plan = display_plan(volume, axis, convention)
    return oriented_slice(volume.array, plan, index), plan["labels"]


def choose_levels(ribbon, axis: int) -> list[tuple[int, str]]:
    """Axial levels through the ribbon, superior first: ``[(index, caption), ...]``.

    Three levels span the posterior bank (labels 1/2) from the top down (fractions
    ``SPAN_FRACTIONS`` of its superior-inferior extent) and one is the level with most bank
    voxels (usually the hand knob); a spanning level too close to it is replaced by it.
    Falls back to the whole ribbon, then to the middle of the volume.
    """
    rib = np.asarray(ribbon.array)
    others = tuple(a for a in range(3) if a != axis)
    counts = np.isin(rib, (BANK["left"], BANK["right"])).sum(axis=others)
    if counts.sum() == 0:
        counts = (rib > 0).sum(axis=others)
    if counts.sum() == 0:
        return [(rib.shape[axis] // 2, "middle of the volume (no ribbon)")]
    present = np.nonzero(counts)[0]
    up = ribbon.direction[2, 2 - axis] > 0  # does the index increase towards superior?
    top, bottom = (present.max(), present.min()) if up else (present.min(), present.max())
    levels: dict[int, str] = {}
    for f in SPAN_FRACTIONS:
        target = top + f * (bottom - top)
        idx = int(present[np.argmin(np.abs(present - target))])
        levels.setdefault(idx, f"{int(round(f * 100))} % down the bank")
    knob = int(np.argmax(counts))
    for idx in [i for i in levels if abs(i - knob) < MIN_LEVEL_GAP]:
        del levels[idx]
    levels[knob] = "most bank voxels (hand knob level)"
    return sorted(levels.items(), key=lambda kv: -kv[0] if up else kv[0])


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # The Agg canvas is attached explicitly; pyplot (and its global figure manager / backend
    # choice) is never used, so nothing leaks into a Slicer or notebook session.
    fig = Figure(figsize=figsize, dpi=FIG_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    """Base64 of the figure as an RGB PNG (no alpha channel: smaller, same look)."""
    from PIL import Image

    try:
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
        buf = io.BytesIO()
        Image.fromarray(rgba[..., :3].copy(), "RGB").save(buf, format="PNG", compress_level=6)
    finally:
        fig.clear()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _window(img: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    vals = img[mask] if mask.any() else img[np.isfinite(img)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, (1, 99))
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _bbox(mask: np.ndarray):
    if not mask.any():
        return None
    r = np.nonzero(mask.any(axis=1))[0]
    c = np.nonzero(mask.any(axis=0))[0]
    return [int(r[0]), int(r[-1]), int(c[0]), int(c[-1])]


def crop_box(result, plan: dict, indices) -> tuple[slice, slice]:
    """One crop for all displayed levels: the ribbon plus ``CROP_MARGIN_MM``, inside the brain.

    Zooming on the motor strip keeps a 2-3 mm band several pixels wide in the figure.
    """
    rib = [oriented_slice(result.ribbon.array, plan, i) > 0 for i in indices]
    brain = [oriented_slice(result.brain_mask.array, plan, i) > 0 for i in indices]
    shape = rib[0].shape
    rsp, csp = plan["pixel_mm"]
    box = _bbox(np.logical_or.reduce(rib))
    if box is not None:
        mr, mc = int(np.ceil(CROP_MARGIN_MM / rsp)), int(np.ceil(CROP_MARGIN_MM / csp))
        box = [box[0] - mr, box[1] + mr, box[2] - mc, box[3] + mc]
        bb = _bbox(np.logical_or.reduce(brain))
        if bb is not None:  # no need to show air beyond the brain
            box = [max(box[0], bb[0] - 2), min(box[1], bb[1] + 2), max(box[2], bb[2] - 2), min(box[3], bb[3] + 2)]
    else:
        box = _bbox(np.logical_or.reduce(brain)) or [0, shape[0] - 1, 0, shape[1] - 1]
    r0, r1 = max(box[0], 0), min(box[1], shape[0] - 1)
    c0, c1 = max(box[2], 0), min(box[3], shape[1] - 1)
    if r1 < r0 or c1 < c0:
        return slice(None), slice(None)
    return slice(r0, r1 + 1), slice(c0, c1 + 1)


def _outline(ax, mask: np.ndarray, color: str, rsp: float, csp: float, lw: float = 0.9) -> None:
    """Outline a binary mask along voxel edges (a contour at 0.5 between voxel centres)."""
    if not mask.any() or mask.all():
        return
    m = np.pad(mask.astype(np.float32), 1)
    ys = (np.arange(m.shape[0]) - 0.5) * rsp
    xs = (np.arange(m.shape[1]) - 0.5) * csp
    ax.contour(xs, ys, m, levels=[0.5], colors=[color], linewidths=lw)


def _edge_letters(ax, labels: dict) -> None:
    style = dict(transform=ax.transAxes, color="yellow", fontsize=11, fontweight="bold")
    ax.text(0.01, 0.5, labels["left"], ha="left", va="center", **style)
    ax.text(0.99, 0.5, labels["right"], ha="right", va="center", **style)
    ax.text(0.5, 0.99, labels["top"], ha="center", va="top", **style)
    ax.text(0.5, 0.01, labels["bottom"], ha="center", va="bottom", **style)


def level_figure(result, plan: dict, index: int, caption: str, box, z_threshold: float,
                 vmax: float) -> tuple[str, dict]:
    """SWI + ribbon, mIP + ribbon and SWI + heatmap at one axial level; (base64 PNG, level info)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    vol = result.swi
    rsp, csp = plan["pixel_mm"]
    cut = lambda a: oriented_slice(a, plan, index)[box]  # noqa: E731
    brain = cut(result.brain_mask.array) > 0
    rib = cut(result.ribbon.array)
    swi = cut(result.swi.array).astype(np.float32)
    mip = cut(result.mip.array).astype(np.float32)
    z = cut(result.heatmap.array).astype(np.float32)
    h_mm, w_mm = rib.shape[0] * rsp, rib.shape[1] * csp
    extent = (0, w_mm, h_mm, 0)
    bank = np.isin(rib, (BANK["left"], BANK["right"]))
    ctrl = np.isin(rib, (CONTROL["left"], CONTROL["right"]))
    ijk = (np.asarray(vol.shape[::-1], float) - 1) / 2
    ijk[2 - plan["axis"]] = index
    height = float(vol.ras_of_ijk(ijk)[2])
    info = {"index": int(index), "height_mm": round(height, 1), "caption": caption,
            "bank_voxels": int(np.isin(np.take(result.ribbon.array, index, axis=plan["axis"]),
                                       (BANK["left"], BANK["right"])).sum())}

    width_in = FIG_WIDTH_IN
    panel_h = (width_in - 1.3) * h_mm / max(w_mm, 1e-6)
    fig = _new_figure((width_in, min(3 * panel_h + 1.2, 16.0)))
    axes = fig.subplots(3, 1)
    lab = plan["labels"]
    panels = (("SWI, ribbon outlined", swi, True, False),
              ("Minimum intensity projection (mIP), ribbon outlined", mip, True, False),
              (f"SWI with the darkness heatmap (z > {z_threshold:g})", swi, False, True))
    heat_im = None
    for ax, (title, img, outline, heat) in zip(axes, panels):
        lo, hi = _window(img, brain)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
        if heat:
            zm = np.ma.masked_where(~(z > z_threshold), z)
            heat_im = ax.imshow(zm, cmap="autumn_r", vmin=z_threshold, vmax=vmax, extent=extent,
                                interpolation="nearest")
            _outline(ax, bank, BANK_COLOR, rsp, csp, lw=0.6)
        if outline:
            _outline(ax, ctrl, CONTROL_COLOR, rsp, csp)
            _outline(ax, bank, BANK_COLOR, rsp, csp)
        _edge_letters(ax, lab)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(0, w_mm)
        ax.set_ylim(h_mm, 0)
        ax.set_title(title, fontsize=8)
    if heat_im is not None:
        cb = fig.colorbar(heat_im, ax=list(axes), shrink=0.5, location="right")
        cb.set_label("darkness z vs control cortex (SWI)")
    handles = [Line2D([], [], color=BANK_COLOR, label="posterior bank (ribbon)"),
               Line2D([], [], color=CONTROL_COLOR, label="control cortex"),
               Patch(facecolor="#ff8c00", label=f"hypointense, z > {z_threshold:g}")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(f"Axial level S {height:+.0f} mm ({caption}); {plan['convention']} convention: "
                 f"patient's {_side_word(lab['left'])} on the image left", fontsize=9)
    return _png(fig), info


def slices_figures(result, z_threshold: float, convention: str = "radiological") -> tuple[list, list]:
    """One figure per chosen axial level; returns ([base64 PNG, ...], [level info, ...])."""
    vol = result.swi
    axis = axial_axis(vol)
    plan = display_plan(vol, axis, convention)
    levels = choose_levels(result.ribbon, axis)
    box = crop_box(result, plan, [i for i, _ in levels])
    hz = result.heatmap.array
    above = hz > z_threshold
    vmax = max(z_threshold + 3.0, float(np.percentile(hz[above], 99)) if above.any() else 0.0)
    pngs, infos = [], []
    for idx, caption in levels:
        png, info = level_figure(result, plan, idx, caption, box, z_threshold, vmax)
        pngs.append(png)
        infos.append(info)
    return pngs, infos


def _side_word(letter: str) -> str:
    return {"L": "left", "R": "right", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}[letter]


def grades_figure(metrics: dict) -> str:
    """Grouped bars of the provisional 0-2 regional grades per hemisphere."""
    fig = _new_figure((6.5, 3.0))
    ax = fig.add_subplot()
    hemis = metrics.get("hemispheres", {})
    x = np.arange(len(REGION_ORDER))
    width = 0.38
    labelled: set = set()
    for k, side in enumerate(("left", "right")):
        regs = hemis.get(side, {}).get("regions", {})
        for j, name in enumerate(REGION_ORDER):
            r = regs.get(name)
            xpos = x[j] + (k - 0.5) * width
            g = None if r is None or not r.get("measured") else r.get("grade")
            if g is None:
                ax.text(xpos, 0.05, "not\nmeasured", ha="center", va="bottom", fontsize=7, color="0.4")
            else:
                ax.bar(xpos, max(g, 0.04), width * 0.95, color=SIDE_COLORS[side],
                       label=None if side in labelled else f"{side} hemisphere")
                labelled.add(side)
                ax.text(xpos, max(g, 0.04) + 0.04, str(g), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"{n}\n({REGION_BODY[n]})" for n in REGION_ORDER], fontsize=7)
    ax.set_xlim(-0.7, len(REGION_ORDER) - 0.3)
    ax.set_ylim(0, 2.5)
    ax.set_yticks([0, 1, 2], ["0 none", "1 mild", "2 marked"])
    ax.set_ylabel("regional grade (provisional)")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        seen = dict(zip(labels, handles))
        ax.legend(seen.values(), seen.keys(), loc="upper right", fontsize=7)
    ax.set_title("Regional grades per hemisphere (0-2, provisional thresholds)", fontsize=9)
    return _png(fig)


def profile_figure(metrics: dict, z_threshold: float) -> str:
    """Median darkness z along each precentral bank, by height (vertex at the top)."""
    fig = _new_figure((5.5, 4.0))
    ax = fig.add_subplot()
    profiles = metrics.get("profiles") or {}
    plotted = False
    for side in ("left", "right"):
        p = profiles.get(side) or {}
        h, z = p.get("height_mm") or [], p.get("z_median") or []
        if len(h) and len(h) == len(z):
            ax.plot(z, h, "o-", color=SIDE_COLORS[side], label=f"{side} bank", markersize=3)
            plotted = True
    ax.axvline(z_threshold, color="0.3", linestyle="--", linewidth=1, label=f"heatmap threshold (z = {z_threshold:g})")
    ax.axvline(0.0, color="0.7", linewidth=0.8)
    if not plotted:
        ax.text(0.5, 0.5, "no profile available", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xlabel("median darkness z of the bank (SWI; + = darker than control cortex)")
    ax.set_ylabel("height along the gyrus (RAS S, mm)")
    if plotted:  # the ends of the gyrus, named on a secondary axis so that they never hide the data
        lo, hi = ax.get_ylim()
        sec = ax.secondary_yaxis("right")
        sec.set_yticks([hi, lo], ["vertex\n(leg)", "Sylvian\n(face)"], fontsize=7, color="0.35")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=7)
    ax.set_title("Profile along each precentral gyrus (median z per 5 mm of height)", fontsize=9)
    return _png(fig)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, fmt: str) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return str(value)


def _thresholds(result) -> tuple[float, float]:
    from . import scoring

    th = (result.metrics or {}).get("thresholds") or {}
    zt = th.get("z_threshold", getattr(result.params, "z_threshold", None))
    rr = th.get("region_band_ratio", getattr(result.params, "region_band_ratio", None))
    return (float(zt) if zt is not None else scoring.DEFAULT_Z_THRESHOLD,
            float(rr) if rr is not None else scoring.DEFAULT_REGION_BAND_RATIO)


PATTERN_TEXT = {
    "bilateral": "bilateral hypointense posterior bank (motor band pattern in both hemispheres)",
    "left": "hypointense posterior bank in the LEFT hemisphere only (unilateral motor band pattern)",
    "right": "hypointense posterior bank in the RIGHT hemisphere only (unilateral motor band pattern)",
    "absent": "no band called: neither posterior bank is darker than its control cortex beyond the "
              "provisional threshold",
    "not measured": "no finding: neither posterior bank could be measured (too few voxels, or no control "
                    "cortex); check the coverage of the motor strip and the ribbon",
}


def verdict_html(result, region_band_ratio: float) -> str:
    from . import scoring

    m = result.metrics or {}
    pattern = m.get("pattern")
    text = PATTERN_TEXT.get(pattern, "pattern not available")
    measured = [s for s in ("left", "right") if ((m.get("hemispheres") or {}).get(s) or {}).get("measured")]
    if pattern == "absent" and len(measured) == 1:
        other = "right" if measured[0] == "left" else "left"
        text = (f"no band called in the {measured[0]} posterior bank (not darker than its control cortex beyond "
                f"the provisional threshold); the {other} bank could not be measured")
    parts = [f'<p class="pattern">Pattern: <b>{_e(pattern if pattern else "unknown")}</b> \u2014 {_e(text)} '
             '\u2014 <i>research measurement, not a diagnosis</i>.</p>']
    if m.get("nonspecific_diffuse"):
        parts.append(
            '<p class="diffuse"><b>Nonspecific diffuse hypointensity:</b> the control cortex is itself dark '
            "(no brighter than the white matter beneath it): ageing-like diffuse hypointensity, also seen in "
            "other diseases. A band is called only where the posterior bank is darker still than this already "
            "dark control cortex.</p>")
    li = m.get("laterality_index")
    if li is not None:
        parts.append(
            f"<p>Laterality index: <b>{_e(_num(li, '+.2f'))}</b> ((L \u2212 R) / (L + R) of the bank darkness; "
            "+ = left more affected, \u2212 = right more affected, 0 = symmetric or none). The sign is "
            "contralateral to the weaker body side: a left band goes with right-sided upper motor neuron signs, "
            "as in case 2 of the case report that named the sign.</p>")
    tg = m.get("total_grade")
    if tg is not None:
        regs = [r for h in (m.get("hemispheres") or {}).values() for r in (h.get("regions") or {}).values()]
        n_meas = sum(1 for r in regs if r.get("measured"))
        parts.append(f"<p>Total regional grade: <b>{_e(tg)}</b> / 12 (3 regions \u00d7 2 hemispheres \u00d7 0-2, "
                     f"{n_meas} of {len(regs)} regions measured; grade 1 from a bank / control ratio "
                     f"\u2264 {_e(format(region_band_ratio, 'g'))}, grade 2 from "
                     f"\u2264 {_e(format(scoring.grade2_ratio(region_band_ratio), 'g'))}).</p>")
    n_warn = len(result.warnings or [])
    if n_warn:
        parts.append(f'<p class="warn">{n_warn} quality warning{"s" if n_warn != 1 else ""}: read them below '
                     "before relying on this measurement.</p>")
    return '<section class="verdict">' + "".join(parts) + "</section>"


TABLE_COLUMNS = ("Hemisphere", "Region", "Band present", "Band contrast (bank / control)",
                 "Hypointense fraction", "Median z (SWI)", "Median z (magnitude)", "Volume (ml)", "Grade (0-2)")


def _row(side: str, region: str, r: dict) -> str:
    cells = [side, region]
    if not r.get("measured"):
        cells += ["not measured"] * 7
        vol = r.get("volume_ml")
        if vol is not None:
            cells[7] = f"not measured ({_num(vol, '.2f')} ml)"
    else:
        frac = r.get("hypointense_fraction")
        cells += [_num(r.get("band_present"), ""),
                  _num(r.get("band_contrast"), ".3f"),
                  "\u2014" if frac is None else f"{100 * float(frac):.1f} %",
                  _num(r.get("z_median"), ".2f"),
                  _num(r.get("z_median_magnitude"), ".2f"),
                  _num(r.get("volume_ml"), ".2f"),
                  "\u2014" if r.get("grade") is None else str(r.get("grade"))]
    cls = ' class="hemi"' if region == "whole bank" else ""
    return f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"


def table_html(metrics: dict) -> str:
    hemis = metrics.get("hemispheres") or {}
    rows = []
    for side in ("left", "right"):
        h = hemis.get(side)
        if h is None:
            continue
        rows.append(_row(side, "whole bank", h))
        for name in REGION_ORDER:
            r = (h.get("regions") or {}).get(name)
            if r is not None:
                rows.append(_row(side, f"{name} ({REGION_BODY[name]})", r))
    head = "".join(f"<th>{_e(c)}</th>" for c in TABLE_COLUMNS)
    return f'<table class="scores"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _kv_table(items, cls="kv", none="not recorded") -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(none if v is None else _plain(v))}</td></tr>" for k, v in items)
    return f'<table class="{cls}"><tbody>{rows}</tbody></table>' if rows else "<p>none recorded</p>"


def _plain(v) -> str:
    if v is None:
        return "not available"
    if isinstance(v, float):
        return format(v, ".4g")
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(x) for x in v) if v else "(none)"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_plain(x)}" for k, x in v.items())
    return str(v)


QC_NAMED = (("phase_units_detected", "Phase units detected"), ("handedness", "Phase handedness"),
            ("snr_estimate", "SNR estimate (brain median / background noise)"),
            ("registration_quality", "Registration quality"), ("localisation", "Localisation source"))


def qc_html(qc: dict) -> str:
    qc = dict(qc or {})
    qc.pop("input", None)  # scanner input (dicom_in, bids_in): in full in metrics.json, its summary here
    detected = qc.pop("input_detected", None)
    items = ([("Input (what the headers said)", detected)] if detected else []) + \
        [(label, qc.pop(key, None)) for key, label in QC_NAMED]
    for key in [k for k in qc if "residual" in k.lower()]:
        items.append((key.replace("_", " "), qc.pop(key)))
    items += [(k.replace("_", " "), v) for k, v in qc.items()]
    return _kv_table(items)


CSS = """
body{font-family:Helvetica,Arial,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.verdict{background:#f4f7fb;border-left:5px solid #3a6ea5;padding:.6em 1em}
.pattern{font-size:1.1em} .diffuse{color:#7a4b00} .warn{color:#a00000;font-weight:bold}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
table.scores td{text-align:right} table.scores td:nth-child(1),table.scores td:nth-child(2){text-align:left}
tr.hemi td{font-weight:bold;background:#f7f7f7} ul.warnings li{color:#a00000}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
footer{margin-top:2em;border-top:1px solid #ccc;font-size:.85em;color:#555}
.small{font-size:.85em;color:#555}
"""


def render_html(result, convention: str = "radiological") -> str:
    """The whole report as one HTML string (figures embedded). ``result`` is not modified."""
    m = result.metrics or {}
    z_thr, region_ratio = _thresholds(result)
    import matplotlib

    with matplotlib.rc_context({"font.size": 8}):  # restored on exit: no global state leaks
        slice_pngs, levels = slices_figures(result, z_thr, convention)
        grades_png = grades_figure(m)
        profile_png = profile_figure(m, z_thr)
    warnings = list(dict.fromkeys(result.warnings or []))
    params = result.params.to_dict() if hasattr(result.params, "to_dict") else dict(result.params or {})
    versions = dict(m.get("versions") or {})
    versions.setdefault("matplotlib", matplotlib.__version__)
    timings = m.get("timings_s") or result.timings or {}
    thresholds = m.get("thresholds") or {}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    name = getattr(result.magnitude, "name", "") or "input"
    level_text = "; ".join(f"S {lv['height_mm']:+.0f} mm ({lv['caption']}, {lv['bank_voxels']} bank voxels)"
                           for lv in levels)

    def img(b64, alt):
        return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>MotorBandSign report \u2014 {_e(name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>MotorBandSign report</h1><p class=\"small\">Input: {_e(name)} \u00b7 generated {_e(now)}</p>",
        verdict_html(result, region_ratio),
        "<h2>Axial slices through the motor strip</h2>",
        f"<p class=\"small\">{_e(convention.capitalize())} convention: the L / R letters on each image are "
        "computed from the image's IJK-to-RAS matrix. Each level, top to bottom: SWI with the posterior-bank "
        "ribbon (cyan) and the control cortex (green) outlined; the minimum intensity projection (mIP) with the "
        f"same outlines; the darkness z-map over SWI where z &gt; {_e(format(z_thr, 'g'))}. "
        f"Levels: {_e(level_text)}.</p>",
        *[img(png, f"Axial SWI and mIP at S {lv['height_mm']:+.0f} mm with ribbon outlines and heatmap")
          for png, lv in zip(slice_pngs, levels)],
        "<h2>Scores per hemisphere and region</h2>",
        table_html(m),
        "<p class=\"small\">Band contrast = median SWI of the bank / median of the control cortex (&lt; 1 = "
        "darker). Hypointense fraction = share of bank voxels with darkness z above "
        f"{_e(format(z_thr, 'g'))}. Median z = robust z-score of the bank against the control cortex of the same "
        "hemisphere (+ = darker). Grades and band calls use provisional thresholds.</p>",
        img(grades_png, "Bar chart of regional grades"),
        "<h2>Profile along each gyrus</h2>",
        img(profile_png, "Profile of median darkness z along each precentral bank"),
        "<h2>Warnings</h2>",
        ("<ul class=\"warnings\">" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>") if warnings
        else "<p>No quality warnings.</p>",
        "<h2>Quality control</h2>",
        qc_html(result.qc),
        "<h2>Parameters</h2>",
        _kv_table(params.items(), none="default"),
        "<h3>Thresholds (provisional)</h3>",
        _kv_table(thresholds.items()),
        "<h2>Versions and timings</h2>",
        _kv_table(versions.items()),
        _kv_table((f"{k} (s)", v) for k, v in timings.items()),
        "<footer><p><b>MotorBandSign is a research tool, not a medical device; thresholds are provisional.</b> "
        "The measurement describes a pattern of hypointensity; it does not establish or exclude any "
        "diagnosis.</p><p>References:</p><ol>"
        + "".join(f"<li>{_e(r)}</li>" for r in REFERENCES) + "</ol></footer>",
        "</body></html>",
    ]
    return "\n".join(out)


def write_report(result, path, convention: str = "radiological") -> Path:
    """Render the report and write it atomically to ``path``; returns the path.

    The page is rendered completely in memory first; it is then written to a temporary file in
    the same directory and moved into place with ``os.replace``. If anything fails, the target
    is neither created nor overwritten and no temporary file is left behind.
    """
    path = Path(path)
    text = render_html(result, convention)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .io import write_text

    write_text(path, text)
    return path
