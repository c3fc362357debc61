"""Re-measure after an edit of the ribbon on a 1 mm whole brain (the demo case), as the panels do it.

Target (issue 15): <= 5 s on 2 cores, from the edited segmentation node to the updated heatmap,
table and verdict (``NodeLogic.remeasure``: read the segments, ``pipeline.remeasure``, update the
nodes), with no re-run of SWI or localisation and no output files written. The edit is what the
Erase effect does: a 30 mm sphere of the left posterior bank removed from its segment. Prints the
time of each of 3 re-measures, the median and the ratio median / 5 s. `--quick` uses a 2 mm case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/, so that `phantoms` imports
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import bench_case  # noqa: E402  (the same case as the whole-pipeline benchmark)

TARGET_S = 5.0


def _erase_sphere(seg_node, swi_node, reference, center_kji, radius_mm: float) -> int:
    """Remove a sphere from the left bank's segment, as the Erase effect does; returns voxels removed."""
    from MotorBandSignLib import mrml, ribbon

    names = {name: value for value, name in ribbon.SEGMENT_NAMES.items()}
    labels = mrml.labels_from_segmentation(seg_node, reference.with_array(np.zeros(reference.shape, np.uint8)), names)
    k, j, i = np.indices(labels.shape)
    d2 = sum(((x - c) * s) ** 2 for x, c, s in zip((k, j, i), center_kji, reference.spacing_kji))
    gone = (labels.array == 1) & (d2 <= radius_mm ** 2)
    mrml.segmentation_from_labels(labels.with_array(np.where(gone, 0, labels.array).astype(np.uint8)),
                                  ribbon.SEGMENT_NAMES, ribbon.SEGMENT_COLORS, swi_node, seg_node.GetScene(),
                                  node=seg_node)
    return int(gone.sum())


def main(argv=None) -> int:
    from MotorBandSignLib import mrml, slicer_logic
    from MotorBandSignLib.params import Parameters

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    case = bench_case(a.quick)
    scene = mrml.new_headless_scene()
    mag = mrml.node_from_volume(case.magnitude, scene, name="magnitude")
    ph = mrml.node_from_volume(case.phase, scene, name="phase")
    logic = slicer_logic.NodeLogic(scene)
    t0 = time.perf_counter()
    res = logic.process(mag, ph, Parameters(localisation="atlas"))
    t_apply = time.perf_counter() - t0
    seg = res.nodes["segmentation"]
    left = np.argwhere(res.result.ribbon.array == 1)
    times, removed = [], 0
    for n in range(3):
        removed += _erase_sphere(seg, res.nodes["swi"], res.result.swi, left[len(left) * (n + 1) // 4], 15.0)
        t = time.perf_counter()
        res = logic.remeasure(res, seg, None)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    shape = case.magnitude.shape
    print(f"grid {shape[::-1]} voxels {case.magnitude.spacing.round(2).tolist()} mm; Apply {t_apply:.1f} s; "
          f"{removed} left-bank voxels erased in 3 edits")
    print("re-measure: " + ", ".join(f"{t:.2f} s" for t in times) + f"; median {med:.2f} s; "
          f"ratio to the {TARGET_S:g} s target {med / TARGET_S:.2f} ({'met' if med <= TARGET_S else 'NOT met'})")
    print(f"left bank measured after the edits: {res.metrics['hemispheres']['left']['measured']}; "
          f"pattern {res.metrics['pattern']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
