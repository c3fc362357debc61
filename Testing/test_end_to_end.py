"""End to end on the phantom fixtures: the verdict a user reads, through the pipeline and the CLI.

Each fixture is a simulated brain warped away from the template (random smooth deformation,
scaling, rotation, shifted central sulcus), with real dipole physics and noise; see
Testing/phantoms/simulate.py.
"""

import functools
import json

import numpy as np
import pytest

from MotorBandSignLib import cli, io, pipeline
from MotorBandSignLib.params import Parameters
from phantoms import simulate as phantom


#: Veins in the central sulcus and no band (issue 7: must be called absent). The "veins"
#: fixture has the band as well and must stay banded.
VEINS_ONLY = phantom.PhantomConfig(seed=112, band="none", veins_in_central_sulcus=True, voxel_mm=(1.5, 1.5, 1.5))


@functools.lru_cache(maxsize=None)
def _run(name, **params):
    case = phantom.generate_case(VEINS_ONLY) if name == "veins_only" else phantom.fixture(name)
    res = pipeline.run(pipeline.Inputs(magnitude=case.magnitude, phase=case.phase), Parameters(**{"localisation": "atlas", **params}))
    return case, res


@pytest.mark.parametrize("name, pattern", [("bilateral", "bilateral"), ("left", "left"), ("right", "right"),
                                           ("none", "absent"), ("veins", "bilateral"),
                                           ("veins_only", "absent")])
def test_pattern_call(name, pattern):
    case, res = _run(name)
    m = res.metrics
    assert case.expected_pattern == pattern
    assert m["pattern"] == pattern, json.dumps({s: {k: m["hemispheres"][s][k] for k in ("z_median", "band_contrast")}
                                                for s in ("left", "right")})
    assert m["nonspecific_diffuse"] is False
    for side in ("left", "right"):
        h = m["hemispheres"][side]
        banded = pattern in ("bilateral", side)
        assert h["band_present"] is banded
        if banded:
            assert h["band_contrast"] <= res.params.band_ratio or h["band_regions"]
    if pattern == "left":
        assert m["laterality_index"] > 0.5
    if pattern == "right":
        assert m["laterality_index"] < -0.5


def test_diffuse_ageing_is_flagged_not_called_a_band():
    case, res = _run("diffuse")
    assert res.metrics["nonspecific_diffuse"] is True
    assert res.metrics["pattern"] == "absent"


def test_left_handed_phase_with_handedness_left_gives_the_same_call():
    _, right = _run("bilateral")
    case, left = _run("left_handed", handedness="left")
    assert left.metrics["pattern"] == right.metrics["pattern"] == case.expected_pattern == "bilateral"
    assert left.qc["handedness"] == "left"
    assert not any("phase sign looks reversed" in w for w in left.warnings + right.warnings)
    # The wrong convention is noticed (deep grey nuclei) and weakens the SWI band contrast.
    _, wrong = _run("left_handed", handedness="right")
    assert any("phase sign looks reversed" in w for w in wrong.warnings)
    assert wrong.qc["deep_grey_phase_rad"] > 0 > left.qc["deep_grey_phase_rad"]
    for side in ("left", "right"):
        assert wrong.metrics["hemispheres"][side]["band_contrast"] > left.metrics["hemispheres"][side]["band_contrast"]


def test_siemens_integers_give_the_same_call_as_radians():
    case, res = _run("siemens")
    assert res.qc["phase_units_detected"] == "siemens"
    assert res.metrics["pattern"] == case.expected_pattern


def test_remeasure_after_erasing_left_bank_changes_left_only():
    case, res = _run("bilateral")
    edited = res.ribbon.array.copy()
    edited[edited == 1] = 0
    new = pipeline.remeasure(res, res.ribbon.with_array(edited))
    old_h, new_h = res.metrics["hemispheres"], new.metrics["hemispheres"]
    assert new_h["left"]["measured"] is False and new_h["left"]["band_present"] is False
    assert old_h["left"]["band_present"] is True
    for k in ("z_median", "band_contrast", "hypointense_fraction", "volume_ml"):
        assert new_h["right"][k] == old_h["right"][k]
    assert new.metrics["pattern"] == "right"
    assert res.ribbon.array[res.ribbon.array == 1].size > 0  # the original result is untouched
    assert "remeasure" in new.timings


def test_cli_run_and_measure(tmp_path, capsys):
    case = phantom.fixture("left")
    paths = phantom.write_case(case, tmp_path / "case")
    out = tmp_path / "out"
    code = cli.main(["run", "--magnitude", str(paths["magnitude"]), "--phase", str(paths["phase"]), "--out", str(out),
                     "--localisation", "atlas"])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    for f in ("swi.nii.gz", "mip.nii.gz", "phase_hp.nii.gz", "ribbon.nii.gz", "ribbon.seg.nrrd", "heatmap.nii.gz",
              "metrics.json", "report.html", "scene.mrb"):
        assert f in names
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["pattern"] == "left"
    for key in ("nonspecific_diffuse", "laterality_index", "warnings", "parameters", "versions", "timings_s"):
        assert key in m
    for side in ("left", "right"):
        assert {"band_present", "band_contrast", "hypointense_fraction", "z_median", "regions"} <= set(m["hemispheres"][side])
    rib = io.read_volume(out / "ribbon.nii.gz")
    assert set(np.unique(rib.array).astype(int)) == {0, 1, 2, 3, 4}
    # Re-measure from the written segmentation after erasing the left bank.
    edited = rib.array.copy()
    edited[edited == 1] = 0
    io.write_volume(rib, tmp_path / "edited.nii.gz", edited.astype(np.uint8))
    assert cli.main(["measure", "--out", str(out), "--ribbon", str(tmp_path / "edited.nii.gz"), "--no-scene"]) == 0
    m2 = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m2["hemispheres"]["left"]["measured"] is False
    assert m2["hemispheres"]["right"]["z_median"] == m["hemispheres"]["right"]["z_median"]
    # The segmentation written by that re-measure reads back as the same ribbon (segment names).
    seg_copy = tmp_path / "edited.seg.nrrd"
    seg_copy.write_bytes((out / "ribbon.seg.nrrd").read_bytes())
    assert cli.main(["measure", "--out", str(out), "--ribbon", str(seg_copy), "--no-scene"]) == 0
    m3 = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m3["hemispheres"] == m2["hemispheres"]


def test_cli_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys):
    case = phantom.fixture("none")
    paths = phantom.write_case(case, tmp_path / "case")
    out = tmp_path / "out"
    # A missing phase file.
    code = cli.main(["run", "--magnitude", str(paths["magnitude"]), "--phase", str(tmp_path / "nope.nii.gz"),
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "file not found" in err and "nope.nii.gz" in err
    # Phase on another grid.
    ph = io.read_volume(paths["phase"])
    shifted = ph.ijk_to_ras.copy()
    shifted[:3, 3] += 7.0
    io.write_volume(type(ph)(ph.array, shifted, "phase"), tmp_path / "shifted.nii.gz")
    code = cli.main(["run", "--magnitude", str(paths["magnitude"]), "--phase", str(tmp_path / "shifted.nii.gz"),
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "not on the same voxel grid" in err and "origin" in err
    # Multi-echo (4D) without echo times.
    mag = io.read_volume(paths["magnitude"])
    io.write_volume(mag, tmp_path / "me.nii.gz", np.stack([mag.array, mag.array]))
    code = cli.main(["run", "--magnitude", str(tmp_path / "me.nii.gz"), "--phase", str(paths["phase"]), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "is 4D" in err and "--te" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial")]
