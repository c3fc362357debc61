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
import tempfile
from pathlib import Path

import numpy as np

from .heatmap import BANK, CONTROL

#: Outline colours of the ribbon on the slices (bank vs control cortex).
BANK_COLOR = "#00d8ff"
CONTROL_COLOR = "#7CFC00"
#: Hemisphere colours in the charts.
SIDE_COLORS = {"left": "#1f77b4", "right": "#d62728"}
#: PNG resolution: modest, so that a 1 mm whole-brain report stays well under a few MB.
FIG_DPI = 90
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
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=FIG_DPI)
    finally:
        fig.clear()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _window(img: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    vals = img[mask] if mask.any() else img[np.isfinite(img)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, (1, 99))
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _crop_box(mask: np.ndarray, margin: int = 4):
    if not mask.any():
        return slice(None), slice(None)
    r = np.nonzero(mask.any(axis=1))[0]
    c = np.nonzero(mask.any(axis=0))[0]
    return (slice(max(r[0] - margin, 0), r[-1] + margin + 1), slice(max(c[0] - margin, 0), c[-1] + margin + 1))


def _outline_rgba(mask: np.ndarray, color: str) -> np.ndarray:
    from matplotlib.colors import to_rgba
    from skimage.segmentation import find_boundaries

    edge = find_boundaries(mask, mode="inner")
    rgba = np.zeros(mask.shape + (4,), np.float32)
    rgba[edge] = to_rgba(color)
    return rgba


def _edge_letters(ax, labels: dict) -> None:
    style = dict(transform=ax.transAxes, color="yellow", fontsize=10, fontweight="bold")
    ax.text(0.02, 0.5, labels["left"], ha="left", va="center", **style)
    ax.text(0.98, 0.5, labels["right"], ha="right", va="center", **style)
    ax.text(0.5, 0.98, labels["top"], ha="center", va="top", **style)
    ax.text(0.5, 0.02, labels["bottom"], ha="center", va="bottom", **style)


def slices_figure(result, z_threshold: float, convention: str = "radiological") -> tuple[str, list]:
    """Axial SWI, mIP and heatmap panels at the chosen levels; returns (base64 PNG, level info)."""
    from matplotlib.patches import Patch

    vol = result.swi
    axis = axial_axis(vol)
    plan = display_plan(vol, axis, convention)
    levels = choose_levels(result.ribbon, axis)
    rsp, csp = plan["pixel_mm"]
    n = len(levels)
    fig = _new_figure((9.0, 3.0 * n + 0.9))
    axes = fig.subplots(n, 3, squeeze=False)
    heat_im = None
    info = []
    vmax = max(z_threshold + 3.0, float(np.percentile(result.heatmap.array[result.heatmap.array > z_threshold], 99))
               if (result.heatmap.array > z_threshold).any() else z_threshold + 3.0)
    centre_ij = (np.asarray(vol.shape[::-1], float) - 1) / 2
    for row, (idx, caption) in enumerate(levels):
        brain = oriented_slice(result.brain_mask.array, plan, idx) > 0
        rib = oriented_slice(result.ribbon.array, plan, idx)
        swi = oriented_slice(result.swi.array, plan, idx).astype(np.float32)
        mip = oriented_slice(result.mip.array, plan, idx).astype(np.float32)
        z = oriented_slice(result.heatmap.array, plan, idx).astype(np.float32)
        box = _crop_box(brain if brain.any() else rib > 0)
        brain, rib, swi, mip, z = brain[box], rib[box], swi[box], mip[box], z[box]
        extent = (0, rib.shape[1] * csp, rib.shape[0] * rsp, 0)
        bank = np.isin(rib, (BANK["left"], BANK["right"]))
        ctrl = np.isin(rib, (CONTROL["left"], CONTROL["right"]))
        bank_rgba, ctrl_rgba = _outline_rgba(bank, BANK_COLOR), _outline_rgba(ctrl, CONTROL_COLOR)
        ijk = centre_ij.copy()
        ijk[2 - axis] = idx
        height = float(vol.ras_of_ijk(ijk)[2])
        info.append({"index": int(idx), "height_mm": round(height, 1), "caption": caption,
                     "bank_voxels": int(bank.sum())})
        panels = (("SWI + ribbon", swi, True, False), ("mIP + ribbon", mip, True, False),
                  (f"SWI + heatmap (z > {z_threshold:g})", swi, False, True))
        for col, (title, img, outline, heat) in enumerate(panels):
            ax = axes[row][col]
            lo, hi = _window(img, brain)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
            if heat:
                zm = np.ma.masked_where(~(z > z_threshold), z)
                heat_im = ax.imshow(zm, cmap="autumn_r", vmin=z_threshold, vmax=vmax, extent=extent,
                                    interpolation="nearest", alpha=0.85)
                ax.imshow(bank_rgba * np.array([1, 1, 1, 0.5], np.float32), extent=extent, interpolation="nearest")
            if outline:
                ax.imshow(ctrl_rgba, extent=extent, interpolation="nearest")
                ax.imshow(bank_rgba, extent=extent, interpolation="nearest")
            _edge_letters(ax, plan["labels"])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{title}\nS {height:+.0f} mm, {caption}" if col == 0 else title, fontsize=8)
    if heat_im is not None:
        cb = fig.colorbar(heat_im, ax=[axes[r][2] for r in range(n)], shrink=0.6, location="right")
        cb.set_label("darkness z vs control cortex (SWI)")
    handles = [Patch(facecolor="none", edgecolor=BANK_COLOR, label="posterior bank (ribbon)"),
               Patch(facecolor="none", edgecolor=CONTROL_COLOR, label="control cortex"),
               Patch(facecolor="#ff8c00", label=f"hypointense, z > {z_threshold:g}")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    lab = plan["labels"]
    fig.suptitle(f"Axial slices, {convention} convention: patient's {_side_word(lab['left'])} on the image left "
                 f"({lab['left']} | {lab['right']})", fontsize=9)
    return _png(fig), info


def _side_word(letter: str) -> str:
    return {"L": "left", "R": "right", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}[letter]


def grades_figure(metrics: dict) -> str:
    """Grouped bars of the provisional 0-2 regional grades per hemisphere."""
    fig = _new_figure((5.5, 3.0))
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
    ax.set_xticks(x, [f"{n}\n({REGION_BODY[n]})" for n in REGION_ORDER])
    ax.set_ylim(0, 2.5)
    ax.set_yticks([0, 1, 2], ["0 none", "1 mild", "2 marked"])
    ax.set_ylabel("regional grade (provisional)")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        seen = dict(zip(labels, handles))
        ax.legend(seen.values(), seen.keys(), loc="upper right", fontsize=7)
    ax.set_title("Regional grades per hemisphere (0-2, provisional thresholds)", fontsize=9)
    return _png(fig)


def profile_figure(metrics: dict, band_z: float) -> str:
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
    ax.axvline(band_z, color="0.3", linestyle="--", linewidth=1, label=f"band threshold (median z = {band_z:g})")
    ax.axvline(0.0, color="0.7", linewidth=0.8)
    if not plotted:
        ax.text(0.5, 0.5, "no profile available", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xlabel("median darkness z of the bank (SWI; + = darker than control cortex)")
    ax.set_ylabel("height (RAS S, mm): vertex / leg at top, face near the Sylvian fissure at bottom")
    ax.legend(loc="best", fontsize=7)
    ax.set_title("Profile along each precentral gyrus", fontsize=9)
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
    bz = th.get("band_z", getattr(result.params, "band_z", None))
    return (float(zt) if zt is not None else scoring.DEFAULT_Z_THRESHOLD,
            float(bz) if bz is not None else scoring.DEFAULT_BAND_Z)


PATTERN_TEXT = {
    "bilateral": "bilateral hypointense posterior bank (motor band pattern in both hemispheres)",
    "left": "hypointense posterior bank in the LEFT hemisphere only (unilateral motor band pattern)",
    "right": "hypointense posterior bank in the RIGHT hemisphere only (unilateral motor band pattern)",
    "absent": "no band called: neither posterior bank is darker than its control cortex beyond the "
              "provisional threshold",
}


def verdict_html(result, band_z: float) -> str:
    m = result.metrics or {}
    pattern = m.get("pattern")
    text = PATTERN_TEXT.get(pattern, "pattern not available")
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
        parts.append(f"<p>Total regional grade: <b>{_e(tg)}</b> / 12 (3 regions \u00d7 2 hemispheres \u00d7 0-2; "
                     f"provisional: grade 1 from median z \u2265 {_e(format(band_z, 'g'))}).</p>")
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


def _kv_table(items, cls="kv") -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_plain(v))}</td></tr>" for k, v in items)
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
    items = [(label, qc.pop(key, None)) for key, label in QC_NAMED]
    for key in [k for k in qc if "residual" in k.lower()]:
        items.append((key.replace("_", " "), qc.pop(key)))
    items += [(k.replace("_", " "), v) for k, v in qc.items()]
    return _kv_table(items)


CSS = """
body{font-family:Helvetica,Arial,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.verdict{background:#f4f7fb;border-left:5px solid #3a6ea5;padding:.6em 1em}
.pattern{font-size:1.1em} .diffuse{color:#7a4b00} .warn{color:#a00000;font-weight:bold}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
table.scores td{text-align:right} table.scores td:nth-child(1),table.scores td:nth-child(2){text-align:left}
tr.hemi td{font-weight:bold;background:#f7f7f7} ul.warnings li{color:#a00000}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
footer{margin-top:2em;border-top:1px solid #ccc;font-size:.85em;color:#555}
.small{font-size:.85em;color:#555}
"""


def render_html(result, convention: str = "radiological") -> str:
    """The whole report as one HTML string (figures embedded). ``result`` is not modified."""
    m = result.metrics or {}
    z_thr, band_z = _thresholds(result)
    import matplotlib

    with matplotlib.rc_context({"font.size": 8}):  # restored on exit: no global state leaks
        slices_png, levels = slices_figure(result, z_thr, convention)
        grades_png = grades_figure(m)
        profile_png = profile_figure(m, band_z)
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
        verdict_html(result, band_z),
        "<h2>Axial slices through the motor strip</h2>",
        f"<p class=\"small\">{_e(convention.capitalize())} convention: the L / R letters on each image are "
        "computed from the image's IJK-to-RAS matrix. Left: SWI with the posterior-bank ribbon (cyan) and "
        f"control cortex (green) outlined; middle: minimum intensity projection; right: darkness z-map shown "
        f"where z &gt; {_e(format(z_thr, 'g'))}. Levels: {_e(level_text)}.</p>",
        img(slices_png, "Axial SWI and mIP slices with ribbon outlines and heatmap"),
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
        _kv_table(params.items()),
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
