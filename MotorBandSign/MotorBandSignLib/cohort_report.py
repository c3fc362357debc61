"""The cohort's table (``cohort.tsv``), group statistics and page (``cohort.html``).

Everything is read back from the cases' own ``metrics.json`` and records (cohort.py); nothing
is measured here. The statistics are research statistics on the cohort's measurements (effect
sizes with confidence intervals), not a diagnostic test, and the page says so.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import math
import os
from pathlib import Path

import numpy as np

__all__ = ["build_table", "write_tsv", "group_comparisons", "hedges_g", "write_html", "COLUMNS"]

SIDES = ("left", "right")
REGIONS = ("medial", "intermediate", "lateral")
#: Fixed columns of cohort.tsv, in order; the manifest's other columns follow.
COLUMNS = (
    ["subject", "status", "exit_class", "error", "pattern", "nonspecific_diffuse", "total_grade", "laterality_index"]
    + [f"{s}_{k}" for s in SIDES for k in ("measured", "band_contrast", "grade", "band_present")]
    + [f"{s}_{r}_{k}" for s in SIDES for r in REGIONS for k in ("band_contrast", "grade")]
    + ["warnings", "localisation", "localisation_confidence", "snr_estimate"]
    + ["manufacturer", "field_strength_t", "echo_times_s", "runtime_s", "version", "report"])
#: Group names taken as the reference group of a comparison (lower case).
CONTROL_NAMES = ("control", "controls", "hc", "healthy", "healthy control", "cn", "nc")
#: Bootstrap resamples and seed of the effect size's confidence interval: 2000 resamples keep the
#: Monte Carlo error of a 95 % percentile bound small (Efron & Tibshirani 1993, ch. 13 recommend
#: >= 1000 for percentile intervals); a fixed seed makes the page reproducible.
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
#: Below this many cases in a group the percentile bootstrap is said to understate the
#: uncertainty (it cannot resample values beyond those seen; Efron & Tibshirani 1993, ch. 13);
#: the interval is still given, with that note.
FEW_CASES = 10
#: Modified z-score beyond which a hemisphere's ratio is listed as a QC outlier (Iglewicz &
#: Hoaglin 1993, "How to detect and handle outliers": |M| > 3.5).
OUTLIER_Z = 3.5
#: Measures compared between groups: each hemisphere's bank/control ratio, and the lower of the
#: two (the more affected side; a band may be one-sided).
MEASURES = {"left_band_contrast": "left bank/control ratio", "right_band_contrast": "right bank/control ratio",
            "lower_band_contrast": "lower of the two hemispheres"}


def _metrics_row(m: dict) -> dict:
    row = {"pattern": m.get("pattern"), "nonspecific_diffuse": m.get("nonspecific_diffuse"),
           "total_grade": m.get("total_grade"), "laterality_index": m.get("laterality_index")}
    for s in SIDES:
        h = (m.get("hemispheres") or {}).get(s) or {}
        measured = bool(h.get("measured"))
        row[f"{s}_measured"] = measured
        for k in ("band_contrast", "grade", "band_present"):
            row[f"{s}_{k}"] = h.get(k) if measured else None
        for r in REGIONS:
            reg = (h.get("regions") or {}).get(r) or {}
            for k in ("band_contrast", "grade"):
                row[f"{s}_{r}_{k}"] = reg.get(k) if reg.get("measured") else None
    qc = m.get("qc") or {}
    row.update(warnings=len(m.get("warnings") or []), localisation=qc.get("localisation"),
               localisation_confidence=qc.get("localisation_confidence"), snr_estimate=qc.get("snr_estimate"))
    # What the scanner headers / BIDS sidecars said (metrics qc.input; empty for plain files).
    acq = qc.get("input") or {}
    tes = acq.get("echo_times_s") or []
    row.update(manufacturer=acq.get("manufacturer"), field_strength_t=acq.get("field_strength_t"),
               echo_times_s=" ".join(f"{t:g}" for t in tes) or None)
    return row


def build_table(cases, records, out_dir) -> list[dict]:
    """One row per case (in the cases' order): its record, its metrics.json, its extra columns.

    A case without a record (an interrupted run) has status ``not run``.
    """
    out = Path(out_dir)
    by_subject = {r["subject"]: r for r in records}
    extra_cols = []
    for c in cases:
        extra_cols += [k for k in c.extra if k not in extra_cols]
    rows = []
    for c in cases:
        rec = by_subject.get(c.subject) or {"status": "not run"}
        row = dict.fromkeys(COLUMNS)
        row.update(subject=c.subject, status=rec.get("status"), exit_class=rec.get("exit_class"),
                   error=rec.get("error"), runtime_s=rec.get("runtime_s"), version=rec.get("version"))
        if rec.get("status") == "done":
            try:
                m = json.loads((out / c.subject / "metrics.json").read_text(encoding="utf-8"))
                row.update(_metrics_row(m))
                row["report"] = f"{c.subject}/report.html"
            except (OSError, ValueError):
                row.update(status="failed", exit_class="internal",
                           error=f"{c.subject}/metrics.json is missing or unreadable: run the cohort again.")
        for k in extra_cols:
            row[k if k not in COLUMNS else f"manifest_{k}"] = c.extra.get(k, "")
        rows.append(row)
    return rows


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v).replace("\t", " ").replace("\n", " ")


def write_tsv(rows: list[dict], path) -> Path:
    """Write the table as tab-separated values (empty cell = not available), atomically."""
    p = Path(path)
    cols = list(rows[0]) if rows else list(COLUMNS)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in cols])
    os.replace(tmp, p)
    return p


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
def hedges_g(a, b) -> float | None:
    """Hedges' g of ``a`` minus ``b``: Cohen's d with the pooled SD, times the small-sample
    correction J = 1 - 3 / (4 (n_a + n_b) - 9) (Hedges 1981). None if undefined."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.size, b.size
    if na < 2 or nb < 2:
        return None
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return None
    return float((a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (na + nb) - 9)))


def _bootstrap_g(a, b, rng) -> tuple:
    gs = []
    for _ in range(N_BOOTSTRAP):
        g = hedges_g(rng.choice(a, a.size), rng.choice(b, b.size))
        if g is not None:
            gs.append(g)
    if len(gs) < N_BOOTSTRAP // 2:
        return None, None
    lo, hi = np.percentile(gs, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(lo), float(hi)


def _values(rows, measure, group_column, group):
    out = []
    for r in rows:
        if r["status"] != "done" or str(r.get(group_column) or "") != group:
            continue
        if measure == "lower_band_contrast":
            vals = [r[f"{s}_band_contrast"] for s in SIDES if r[f"{s}_band_contrast"] is not None]
            v = min(vals) if vals else None
        else:
            v = r.get(measure)
        if v is not None:
            out.append(float(v))
    return np.array(out)


def reference_group(groups) -> str:
    """The group others are compared with: a control-like name, else the largest (then first) group."""
    names = list(groups)
    for g in names:
        if g.strip().lower() in CONTROL_NAMES:
            return g
    return max(names, key=lambda g: groups[g])


def group_comparisons(rows, group_column: str = "group") -> list[dict]:
    """Each group against the reference group (:func:`reference_group`), for every MEASURE:
    sizes, means, the difference of means with its Welch t confidence interval, and Hedges' g
    with a percentile bootstrap confidence interval (N_BOOTSTRAP resamples within each group,
    seed BOOTSTRAP_SEED). Empty when there are fewer than two groups among the done cases."""
    from scipy import stats

    counts: dict = {}
    for r in rows:
        g = str(r.get(group_column) or "")
        if r["status"] == "done" and g:
            counts[g] = counts.get(g, 0) + 1
    if len(counts) < 2:
        return []
    ref = reference_group(counts)
    out = []
    for g in sorted(counts):
        if g == ref:
            continue
        for measure, label in MEASURES.items():
            a, b = _values(rows, measure, group_column, g), _values(rows, measure, group_column, ref)
            c = {"group": g, "reference": ref, "measure": measure, "label": label, "n": int(a.size),
                 "n_reference": int(b.size), "mean": float(a.mean()) if a.size else None,
                 "mean_reference": float(b.mean()) if b.size else None, "difference": None,
                 "difference_ci": (None, None), "hedges_g": None, "hedges_g_ci": (None, None),
                 "note": ""}
            if a.size < 2 or b.size < 2:
                c["note"] = "not computed: needs at least 2 measured cases in each group"
                out.append(c)
                continue
            c["difference"] = float(a.mean() - b.mean())
            if np.var(a) + np.var(b) > 0:
                ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
                c["difference_ci"] = (float(ci.low), float(ci.high))
            c["hedges_g"] = hedges_g(a, b)
            if c["hedges_g"] is not None:
                c["hedges_g_ci"] = _bootstrap_g(a, b, np.random.default_rng(BOOTSTRAP_SEED))
            if min(a.size, b.size) < FEW_CASES:
                c["note"] = (f"fewer than {FEW_CASES} cases in a group: the bootstrap interval understates "
                             "the uncertainty")
            out.append(c)
    return out


def qc_outliers(rows) -> list[dict]:
    """Cases to look at: failed, a hemisphere not measured, or a ratio with |modified z| > OUTLIER_Z."""
    found: dict = {}

    def add(subject, why):
        found.setdefault(subject, []).append(why)

    done = [r for r in rows if r["status"] == "done"]
    for r in rows:
        if r["status"] != "done":
            add(r["subject"], f"{r['status']}: {r.get('error') or ''}".strip(": "))
    for r in done:
        for s in SIDES:
            if not r[f"{s}_measured"]:
                add(r["subject"], f"{s} hemisphere not measured")
    for s in SIDES:
        vals = np.array([r[f"{s}_band_contrast"] for r in done if r[f"{s}_band_contrast"] is not None], float)
        if vals.size < 3:
            continue
        med = np.median(vals)
        mad = np.median(np.abs(vals - med))
        if mad == 0:
            continue
        for r in done:
            v = r[f"{s}_band_contrast"]
            if v is not None and abs(0.6745 * (v - med) / mad) > OUTLIER_Z:
                add(r["subject"], f"{s} ratio {v:.3f} far from the cohort's median {med:.3f} "
                                  f"(modified z {0.6745 * (v - med) / mad:+.1f})")
    return [{"subject": k, "reasons": v} for k, v in found.items()]


# --------------------------------------------------------------------------------------------
# Figures and page
# --------------------------------------------------------------------------------------------
#: Thumbnail size (inches at report.FIG_DPI, about 110 px): enough to see that the ribbon sits on
#: the motor strip, small enough for a page of a thousand subjects (a few kB each).
THUMB_IN = 1.2


def thumbnail_png(result) -> bytes:
    """A small axial mIP at the level with most posterior-bank voxels, the bank outlined, in the
    radiological convention (report.py's orientation); PNG bytes. Made by the worker from the
    Result in memory, so the page needs no image reading."""
    from . import report

    axis = report.axial_axis(result.mip)
    rib = np.asarray(result.ribbon.array)
    others = tuple(a for a in range(3) if a != axis)
    counts = np.isin(rib, (1, 2)).sum(axis=others)
    level = int(np.argmax(counts)) if counts.any() else rib.shape[axis] // 2
    plan = report.display_plan(result.mip, axis)
    img = report.oriented_slice(result.mip.array, plan, level)
    bank = np.isin(report.oriented_slice(rib, plan, level), (1, 2))
    rsp, csp = plan["pixel_mm"]
    fig = report._new_figure((THUMB_IN, THUMB_IN))
    fig.set_layout_engine("none")  # one axes filling the figure: no layout to solve
    ax = fig.add_axes((0, 0, 1, 1))
    lo, hi = np.percentile(img, (1, 99)) if img.size else (0.0, 1.0)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=rsp / csp, interpolation="nearest")
    if bank.any():
        ax.contour(bank.astype(float), levels=[0.5], colors=[report.BANK_COLOR], linewidths=0.6)
    ax.set_axis_off()
    return base64.b64decode(report._png(fig))


_GROUP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def _groups(rows, group_column):
    names = sorted({str(r.get(group_column) or "") or "(no group)" for r in rows if r["status"] == "done"})
    return {g: _GROUP_COLORS[i % len(_GROUP_COLORS)] for i, g in enumerate(names)}


def _group_of(r, group_column):
    return str(r.get(group_column) or "") or "(no group)"


def _figures(rows, group_column, band_ratio) -> dict:
    from .report import _new_figure, _png

    done = [r for r in rows if r["status"] == "done"]
    if not done:
        return {}
    colors = _groups(rows, group_column)
    rng = np.random.default_rng(0)  # jitter only
    figs = {}

    fig = _new_figure((8.0, 3.4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, s in zip(axes, SIDES):
        for x, (g, col) in enumerate(colors.items()):
            v = [r[f"{s}_band_contrast"] for r in done if _group_of(r, group_column) == g
                 and r[f"{s}_band_contrast"] is not None]
            if v:
                if len(v) >= 3:
                    ax.boxplot([v], positions=[x], widths=0.5, showfliers=False)
                ax.scatter(x + rng.uniform(-0.12, 0.12, len(v)), v, s=14, color=col, zorder=3)
        ax.set_xticks(range(len(colors)), list(colors), rotation=20)
        ax.set_xlim(-0.6, len(colors) - 0.4)
        ax.set_title(f"{s} hemisphere")
        if band_ratio is not None:
            ax.axhline(band_ratio, color="grey", ls="--", lw=0.8)
    axes[0].set_ylabel("bank / control ratio (SWI)")
    figs["distribution"] = _png(fig)

    fig = _new_figure((4.6, 4.2))
    ax = fig.subplots()
    for g, col in colors.items():
        pts = [(r["left_band_contrast"], r["right_band_contrast"]) for r in done if _group_of(r, group_column) == g
               and r["left_band_contrast"] is not None and r["right_band_contrast"] is not None]
        if pts:
            ax.scatter(*zip(*pts), s=16, color=col, label=g)
    lims = [v for r in done for v in (r["left_band_contrast"], r["right_band_contrast"]) if v is not None]
    if lims:
        lo, hi = min(lims) - 0.02, max(lims) + 0.02
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        if band_ratio is not None:
            ax.axvline(band_ratio, color="grey", ls="--", lw=0.8)
            ax.axhline(band_ratio, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("left bank / control ratio")
    ax.set_ylabel("right bank / control ratio")
    ax.legend(fontsize=8)
    figs["scatter"] = _png(fig)

    fig = _new_figure((8.0, 3.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, s in zip(axes, SIDES):
        for g, col in colors.items():
            means, sds = [], []
            for reg in REGIONS:
                v = [r[f"{s}_{reg}_band_contrast"] for r in done if _group_of(r, group_column) == g
                     and r[f"{s}_{reg}_band_contrast"] is not None]
                means.append(np.mean(v) if v else np.nan)
                sds.append(np.std(v) if len(v) > 1 else 0.0)
            ax.errorbar(range(len(REGIONS)), means, yerr=sds, color=col, marker="o", capsize=3, label=g)
        ax.set_xticks(range(len(REGIONS)), [f"{r}" for r in REGIONS])
        ax.set_title(f"{s}: regional profile (mean, SD)")
    axes[0].set_ylabel("bank / control ratio")
    axes[1].legend(fontsize=8)
    figs["regions"] = _png(fig)
    return figs


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MotorBandSign cohort</title>
<style>
body{font-family:sans-serif;margin:1.5em;max-width:1200px} table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right} td.l,th.l{text-align:left}
tr.failed{background:#fde0e0} .note{background:#fff6d5;padding:.6em;border:1px solid #e0c060}
</style></head><body>
<h1>MotorBandSign cohort</h1>
<p class="note"><b>Research statistics, not a diagnostic test.</b> Bank/control ratios are measurements
with provisional thresholds (dashed lines: band ratio {{ band_ratio_text }}); group differences and effect
sizes describe this cohort and say nothing about any one person.</p>
<p>{{ n_cases }} cases: {{ n_done }} done, {{ n_failed }} failed{% if n_not_run %}, {{ n_not_run }} not run{% endif %}.
Wall time of this run {{ wall_time }}. MotorBandSign {{ version }}. Table: <a href="cohort.tsv">cohort.tsv</a>.</p>

<h2>Group comparison</h2>
{% if comparisons %}
<table><tr><th class="l">group vs reference</th><th class="l">measure</th><th>n</th><th>mean</th>
<th>difference (Welch {{ conf }} % CI)</th><th>Hedges' g (bootstrap {{ conf }} % CI)</th><th class="l">note</th></tr>
{% for c in comparisons %}<tr><td class="l">{{ c.group }} vs {{ c.reference }}</td><td class="l">{{ c.label }}</td>
<td>{{ c.n }} / {{ c.n_reference }}</td><td>{{ fmt(c.mean) }} / {{ fmt(c.mean_reference) }}</td>
<td>{{ fmt(c.difference) }} ({{ fmt(c.difference_ci[0]) }} to {{ fmt(c.difference_ci[1]) }})</td>
<td>{{ fmt(c.hedges_g, 2) }} ({{ fmt(c.hedges_g_ci[0], 2) }} to {{ fmt(c.hedges_g_ci[1], 2) }})</td>
<td class="l">{{ c.note }}</td></tr>
{% endfor %}</table>
<p>Hedges' g: difference of means over the pooled SD with the small-sample correction; a negative g means
a darker bank in the group than in the reference. {{ n_boot }} bootstrap resamples within each group.</p>
{% else %}<p>No group comparison: the column "{{ group_column }}" does not give two groups among the done cases.</p>{% endif %}

{% if figs %}
<h2>Bank/control ratio by group and hemisphere</h2><img alt="distributions" src="data:image/png;base64,{{ figs.distribution }}">
<h2>Left vs right</h2><img alt="left vs right" src="data:image/png;base64,{{ figs.scatter }}">
<h2>Regional profiles</h2><img alt="regional profiles" src="data:image/png;base64,{{ figs.regions }}">
{% endif %}

<h2>QC: cases to look at</h2>
{% if outliers %}<ul>{% for o in outliers %}<li><b>{{ o.subject }}</b>: {{ o.reasons | join("; ") }}</li>{% endfor %}</ul>
{% else %}<p>None.</p>{% endif %}

<h2>Cases</h2>
<table><tr>{% for c in columns %}<th class="l">{{ c }}</th>{% endfor %}</tr>
{% for r in rows %}<tr class="{{ 'failed' if r.status != 'done' else '' }}">{% for c in columns %}
{% if c == 'subject' and r.report %}<td class="l"><a href="{{ r.report }}">{% if thumbs.get(r.subject) %}<img
alt="" src="data:image/png;base64,{{ thumbs[r.subject] }}"><br>{% endif %}{{ r.subject }}</a></td>
{% else %}<td class="l">{{ cell(r[c]) }}</td>{% endif %}{% endfor %}</tr>
{% endfor %}</table>
</body></html>
"""

#: Columns of the page's case table (the TSV holds all of them).
PAGE_COLUMNS = ["subject", "status", "pattern", "left_band_contrast", "right_band_contrast", "left_grade",
                "right_grade", "total_grade", "nonspecific_diffuse", "warnings", "localisation_confidence",
                "runtime_s", "exit_class", "error"]


def _fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


def write_html(rows, comparisons, path, *, group_column: str = "group", wall_time_s: float | None = None,
               thumbnails=None) -> Path:
    """Write ``cohort.html`` (self-contained: figures and thumbnails as base64 PNG), atomically.

    ``thumbnails(subject) -> path`` gives where a done case's thumbnail is (a missing one is
    left out)."""
    import jinja2

    from . import __version__

    p = Path(path)
    band_ratio = None
    for r in rows:
        if r["status"] == "done":
            try:
                m = json.loads((p.parent / r["subject"] / "metrics.json").read_text(encoding="utf-8"))
                band_ratio = (m.get("thresholds") or {}).get("band_ratio")
            except (OSError, ValueError):
                pass
            break
    extra = [c for c in (rows[0] if rows else {}) if c not in COLUMNS]
    thumbs = {}
    for r in rows:
        if r["status"] == "done" and thumbnails is not None:
            with contextlib.suppress(OSError):
                thumbs[r["subject"]] = base64.b64encode(Path(thumbnails(r["subject"])).read_bytes()).decode("ascii")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(_TEMPLATE).render(
        rows=rows, thumbs=thumbs, columns=PAGE_COLUMNS[:-2] + extra + PAGE_COLUMNS[-2:], comparisons=comparisons,
        figs=_figures(rows, group_column, band_ratio), outliers=qc_outliers(rows), group_column=group_column,
        n_cases=len(rows), n_done=sum(r["status"] == "done" for r in rows),
        n_failed=sum(r["status"] == "failed" for r in rows), n_not_run=sum(r["status"] == "not run" for r in rows),
        wall_time="-" if wall_time_s is None else f"{wall_time_s:.0f} s", version=__version__,
        band_ratio_text=_fmt(band_ratio), conf=int(100 * CONFIDENCE), n_boot=N_BOOTSTRAP, fmt=_fmt, cell=_cell)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, p)
    return p

