"""Write a Result into an output directory, and read it back for re-measuring.

The directory is written completely or not at all: everything goes to a hidden sibling
directory first; only when every file is there are the files moved in, ``metrics.json``
last (its presence marks a complete result). Stale results are removed first, so a failed
run never leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import io
from .volume import Volume

#: Files of a complete output directory (metrics.json is written last).
OUTPUT_FILES = ("swi.nii.gz", "mip.nii.gz", "phase_hp.nii.gz", "magnitude.nii.gz", "ribbon.nii.gz",
                "regions.nii.gz", "ribbon.seg.nrrd", "heatmap.nii.gz", "heatmap_magnitude.nii.gz",
                "state.npz", "report.html", "scene.mrb", "metrics.json")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def metrics_json(result) -> str:
    return json.dumps(result.metrics, indent=2, default=_json_default, sort_keys=False)


def write_outputs(result, out_dir, *, with_scene: bool = True, progress=None) -> Path:
    """Write every output of ``result`` into ``out_dir`` (see OUTPUT_FILES); returns the path."""
    from . import mrml, report, ribbon as ribbon_mod

    say = progress or (lambda f, m: None)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=str(out.parent)))
    try:
        say(0.0, "Writing volumes")
        io.write_volume(result.swi, tmp / "swi.nii.gz")
        io.write_volume(result.mip, tmp / "mip.nii.gz")
        io.write_volume(result.phase_hp, tmp / "phase_hp.nii.gz")
        io.write_volume(result.magnitude, tmp / "magnitude.nii.gz")
        io.write_volume(result.ribbon, tmp / "ribbon.nii.gz")
        io.write_volume(result.regions, tmp / "regions.nii.gz")
        io.write_volume(result.heatmap, tmp / "heatmap.nii.gz")
        io.write_volume(result.heatmap_magnitude, tmp / "heatmap_magnitude.nii.gz")
        save_state(result, tmp / "state.npz")
        say(0.3, "Writing the segmentation and scene")
        scene = mrml.new_scene() if with_scene else None
        nodes = mrml.result_to_nodes(result, scene)
        mrml.write_segmentation(nodes["segmentation"], tmp / "ribbon.seg.nrrd")
        if with_scene:
            mrml.write_mrb(scene, tmp / "scene.mrb")
        say(0.6, "Writing the report")
        report.write_report(result, tmp / "report.html")
        (tmp / "metrics.json").write_text(metrics_json(result), encoding="utf-8")
        # Move in: drop a stale metrics.json first so a half-moved dir never looks complete.
        out.mkdir(parents=True, exist_ok=True)
        stale = out / "metrics.json"
        if stale.exists():
            stale.unlink()
        for name in OUTPUT_FILES:
            src, dst = tmp / name, out / name
            if name == "metrics.json":
                continue
            if src.exists():
                os.replace(src, dst)
            elif dst.exists():
                dst.unlink()  # e.g. an old scene.mrb when this run writes none
        os.replace(tmp / "metrics.json", out / "metrics.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(1.0, "Outputs written")
    return out


def save_state(result, path: Path) -> None:
    """What re-measuring needs besides the NIfTI files (bias-corrected images, priors, params)."""
    arrays = {
        "swi_corrected": result.swi_corrected.astype(np.float32),
        "magnitude_corrected": result.magnitude_corrected.astype(np.float32),
        "brain": (result.brain_mask.array > 0),
        "ijk_to_ras": result.swi.ijk_to_ras,
    }
    if result.gm_prob is not None:
        arrays["gm_prob"] = result.gm_prob.astype(np.float16)
    if result.wm_prob is not None:
        arrays["wm_prob"] = result.wm_prob.astype(np.float16)
    if result.depth is not None:
        arrays["depth"] = result.depth.astype(np.float32)
    side = {"params": result.params.to_dict(), "qc": result.qc, "timings": result.timings,
            "warnings": result.warnings}
    arrays["json"] = np.frombuffer(json.dumps(side, default=_json_default).encode(), dtype=np.uint8)
    tmp = io.make_temp(path.parent, ".npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def load_result(out_dir):
    """Rebuild a Result from a complete output directory (for ``motorband measure``)."""
    from .errors import InputError
    from .params import Parameters
    from .pipeline import Result

    d = Path(out_dir)
    if not (d / "metrics.json").exists() or not (d / "state.npz").exists():
        raise InputError(f"{d} is not a complete MotorBandSign output directory (no metrics.json/state.npz): "
                         "run `motorband run ... --out DIR` first.")
    with np.load(d / "state.npz") as z:
        st = {k: z[k] for k in z.files}
    side = json.loads(bytes(st["json"]).decode())
    pd = side["params"]
    params = Parameters(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in pd.items()})
    vols = {n: io.read_volume(d / f"{n}.nii.gz", what=n) for n in
            ("swi", "mip", "phase_hp", "magnitude", "ribbon", "regions", "heatmap", "heatmap_magnitude")}
    metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    brain = vols["swi"].with_array(st["brain"].astype(np.uint8), "Brain mask")
    return Result(
        swi=vols["swi"], mip=vols["mip"], phase_hp=vols["phase_hp"], magnitude=vols["magnitude"], brain_mask=brain,
        ribbon=vols["ribbon"].with_array(vols["ribbon"].array.astype(np.uint8), "Ribbon"),
        regions=vols["regions"].with_array(vols["regions"].array.astype(np.uint8), "Regions"),
        heatmap=vols["heatmap"], heatmap_magnitude=vols["heatmap_magnitude"], metrics=metrics,
        warnings=side["warnings"], params=params, anatomy=None, qc=side["qc"], timings=side["timings"],
        swi_corrected=st["swi_corrected"], magnitude_corrected=st["magnitude_corrected"],
        gm_prob=st["gm_prob"].astype(np.float32) if "gm_prob" in st else None,
        wm_prob=st["wm_prob"].astype(np.float32) if "wm_prob" in st else None,
        depth=st.get("depth"))


def read_ribbon(path, reference: Volume) -> Volume:
    """An edited ribbon from a .seg.nrrd (segments named as ribbon.SEGMENT_NAMES) or a label file."""
    from .errors import InputError
    from . import ribbon as ribbon_mod

    p = Path(path)
    if not p.exists():
        raise InputError(f"ribbon file not found: {p}. Give the edited ribbon.seg.nrrd or a label volume.")
    if p.name.lower().endswith(".seg.nrrd"):
        from . import mrml

        names_to_values = {name: value for value, name in ribbon_mod.SEGMENT_NAMES.items()}
        return mrml.labels_from_segmentation_file(p, reference, names_to_values)
    from .pipeline import checked_ribbon_labels

    v = io.read_volume(p, what="ribbon label volume")
    reference.require_same_grid(v)
    return reference.with_array(checked_ribbon_labels(v.array, p.name), "Ribbon")
