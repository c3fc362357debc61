"""BIDS datasets in (issue 13, item 2): one subject's part-mag / part-phase with its sidecars.

A dataset of three subjects is written here from the small phantom case: sub-01 as dcm2niix
writes Siemens phase (integers -4096..4094, Units "arbitrary"), sub-02 GE-like (left-handed
phase in radians, Units "rad", the metadata in a dataset-level sidecar), sub-03 a two-echo
MEGRE in a session. Each subject is read by its label; one is run through the command line and
must give the scores of the NIfTI radians input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from MotorBandSignLib import bids_in, cli, io
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.volume import Volume
from phantoms.dicom_series import complex_head, siemens_phase_integers

SCORE_TOLERANCE = 0.02  # issue 13: scores within 0.02 of the NIfTI radians input


def _write(path: Path, vol: Volume, array, sidecar: dict | None = None):
    io.write_volume(vol, path, array)
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids")
    mag, phase, rib, aff = complex_head()
    v = Volume(mag, aff, "m")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "phantoms", "BIDSVersion": "1.10.0"}))
    a1 = root / "sub-01" / "anat"
    a1.mkdir(parents=True)
    meta = {"EchoTime": 0.02, "MagneticFieldStrength": 3, "Manufacturer": "Siemens"}
    _write(a1 / "sub-01_part-mag_T2starw.nii.gz", v, mag, meta)
    dcm2niix = (2 * siemens_phase_integers(phase) - 4096).astype(np.int16)
    _write(a1 / "sub-01_part-phase_T2starw.nii.gz", v, dcm2niix, dict(meta, Units="arbitrary"))
    _write(a1 / "sub-01_T1w.nii.gz", v, mag)
    a2 = root / "sub-02" / "anat"
    a2.mkdir(parents=True)
    (root / "T2starw.json").write_text(json.dumps({"EchoTime": 0.02, "MagneticFieldStrength": 1.5,
                                                   "Manufacturer": "GE"}))
    (root / "part-phase_T2starw.json").write_text(json.dumps({"Units": "rad"}))
    _write(a2 / "sub-02_part-mag_T2starw.nii.gz", v, mag)
    _write(a2 / "sub-02_part-phase_T2starw.nii.gz", v, -phase)
    a3 = root / "sub-03" / "ses-1" / "anat"
    a3.mkdir(parents=True)
    for echo, te in ((1, 0.01), (2, 0.02)):
        m = {"EchoTime": te, "MagneticFieldStrength": 3, "Manufacturer": "Philips"}
        _write(a3 / f"sub-03_ses-1_echo-{echo}_part-mag_MEGRE.nii.gz", v, mag * (1.2 - 0.2 * echo), m)
        _write(a3 / f"sub-03_ses-1_echo-{echo}_part-phase_MEGRE.nii.gz", v, phase * te / 0.02, dict(m, Units="rad"))
    files = {"magnitude": io.write_volume(v, root.parent / "ref_mag.nii.gz"),
             "phase": io.write_volume(v, root.parent / "ref_phase.nii.gz", phase),
             "ribbon": io.write_volume(v, root.parent / "ribbon.nii.gz", rib)}
    return root, files, (mag, phase, aff)


def test_each_subject_reads_by_label(dataset):
    root, _, (mag, phase, aff) = dataset
    a1 = bids_in.read_bids(root, "01")
    assert a1.phase_units == "auto" and a1.handedness == "right" and a1.echo_times == (0.02,)
    assert a1.provenance["phase_storage"] == "sidecar Units arbitrary: detected from the values"
    assert a1.provenance["files_used"] == ["sub-01/anat/sub-01_part-mag_T2starw.nii.gz",
                                           "sub-01/anat/sub-01_part-phase_T2starw.nii.gz"]
    assert a1.provenance["skipped"] == ["sub-01_T1w.nii.gz"]
    assert np.allclose(a1.magnitude.array, mag) and np.allclose(a1.magnitude.ijk_to_ras, aff)
    a2 = bids_in.read_bids(root, "sub-02")
    assert a2.phase_units == "radians" and a2.handedness == "left" and a2.provenance["field_strength_t"] == 1.5
    assert np.allclose(a2.phase.array, -phase)
    a3 = bids_in.read_bids(root, "03")  # its one session is taken
    assert a3.magnitude.array.shape == (2, 32, 40, 40) and a3.echo_times == (0.01, 0.02)
    assert np.allclose(a3.phase.array[0], phase / 2) and np.allclose(a3.magnitude.array[1], mag * 0.8)
    assert a3.provenance["source"].endswith("sub-03/ses-1")


def test_bids_subject_runs_with_the_scores_of_nifti_radians(dataset, tmp_path):
    root, files, _ = dataset
    common = ("--ribbon", files["ribbon"], "--no-scene")
    assert cli.main([str(a) for a in ("run", "--magnitude", files["magnitude"], "--phase", files["phase"],
                                      "--phase-units", "radians", "--out", tmp_path / "ref", *common)]) == 0
    assert cli.main([str(a) for a in ("run", "--bids", root, "--subject", "02", "--out", tmp_path / "b",
                                      *common)]) == 0
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    got = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert got["pattern"] == ref["pattern"] == "left"
    for side in ("left", "right"):
        assert abs(got["hemispheres"][side]["band_contrast"] - ref["hemispheres"][side]["band_contrast"]) \
            <= SCORE_TOLERANCE
    inp = got["qc"]["input"]
    assert inp["handedness"] == "left, from sidecar Manufacturer 'GE' (GE stores left-handed phase)"
    assert inp["phase_units"] == "radians, from the headers"
    assert "radians (sidecar Units rad)" in (tmp_path / "b" / "report.html").read_text()


def test_bids_bad_input_names_the_problem(dataset, tmp_path, capsys):
    root, files, _ = dataset
    with pytest.raises(InputError, match=r"no subject sub-09\. Subjects: sub-01, sub-02, sub-03\."):
        bids_in.read_bids(root, "09")
    with pytest.raises(InputError, match=r"sub-03 has no session ses-2\. Sessions: ses-1\."):
        bids_in.read_bids(root, "03", "2")
    only_t1 = tmp_path / "ds" / "sub-01" / "anat"
    only_t1.mkdir(parents=True)
    (only_t1 / "sub-01_T1w.nii.gz").write_bytes((root / "sub-01" / "anat" / "sub-01_T1w.nii.gz").read_bytes())
    code = cli.main(["run", "--bids", str(tmp_path / "ds"), "--subject", "01", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "sub-01/anat holds no part-mag with part-phase" in err and "(files: sub-01_T1w.nii.gz)" in err
    code = cli.main(["run", "--bids", str(root), "--out", str(tmp_path / "o")])
    assert code == 2 and "--bids DIR and --subject LABEL go together" in capsys.readouterr().err
