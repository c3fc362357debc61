"""Cohorts of scanner data (issues 13 and 14): a BIDS dataset and a folder of DICOM exports.

Every case is the small phantom head with its band in the left bank's magnitude and phase
(phantoms.dicom_series.complex_head), written as BIDS (with JSON sidecars in three conventions:
Siemens integer phase, GE left-handed radians with dataset-level sidecars, a Philips two-echo
MEGRE in a session) and as DICOM exports. Runs are given the phantom's ribbon (no localisation:
a case takes seconds) and run in this process (workers=0). The tests check that each case is
read as `motorband run --bids / --dicom` reads it (the sidecars' echo times and manufacturer in
each record and row, the same metrics as the single run), that a folder the reader refuses is
that case's input failure naming the series, and that the records resume: a rerun skips all, a
changed sidecar reruns its subject only.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from MotorBandSignLib import cli, cohort, io
from MotorBandSignLib.params import Parameters
from MotorBandSignLib.volume import Volume
from phantoms.dicom_series import complex_head, siemens_phase_integers, write_vendor_export

SIEMENS = {"EchoTime": 0.02, "MagneticFieldStrength": 3, "Manufacturer": "Siemens"}
GE = {"EchoTime": 0.02, "MagneticFieldStrength": 1.5, "Manufacturer": "GE"}
PHILIPS_TES = (0.01, 0.02)


def _write(path: Path, vol: Volume, array, sidecar: dict | None = None):
    io.write_volume(vol, path, array)
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))


def _table(out: Path) -> list[dict]:
    with open(out / "cohort.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _with_ribbon(cases, ribbon) -> list:
    return [dataclasses.replace(c, files=dict(c.files, ribbon=str(ribbon))) for c in cases]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    d = tmp_path_factory.mktemp("head")
    mag, phase, rib, aff = complex_head()
    v = Volume(mag, aff, "m")
    return {"mag": mag, "phase": phase, "aff": aff, "vol": v, "ribbon": io.write_volume(v, d / "ribbon.nii.gz", rib)}


@pytest.fixture(scope="module")
def bids(head, tmp_path_factory):
    """A BIDS dataset of three subjects (sub-03 in a session, two echoes) and its cohort run."""
    root = tmp_path_factory.mktemp("bids") / "ds"
    mag, phase, v = head["mag"], head["phase"], head["vol"]
    a1 = root / "sub-01" / "anat"
    a1.mkdir(parents=True)
    (root / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tALS\nsub-02\tcontrol\nsub-03\tALS\n")
    _write(a1 / "sub-01_part-mag_T2starw.nii.gz", v, mag, SIEMENS)
    dcm2niix = (2 * siemens_phase_integers(phase) - 4096).astype(np.int16)
    _write(a1 / "sub-01_part-phase_T2starw.nii.gz", v, dcm2niix, dict(SIEMENS, Units="arbitrary"))
    a2 = root / "sub-02" / "anat"
    a2.mkdir(parents=True)
    (root / "T2starw.json").write_text(json.dumps(GE))  # dataset-level sidecars, inherited by sub-02
    (root / "part-phase_T2starw.json").write_text(json.dumps({"Units": "rad"}))
    _write(a2 / "sub-02_part-mag_T2starw.nii.gz", v, mag)
    _write(a2 / "sub-02_part-phase_T2starw.nii.gz", v, -phase)
    a3 = root / "sub-03" / "ses-1" / "anat"
    a3.mkdir(parents=True)
    for echo, te in enumerate(PHILIPS_TES, start=1):
        m = {"EchoTime": te, "MagneticFieldStrength": 3, "Manufacturer": "Philips"}
        _write(a3 / f"sub-03_ses-1_echo-{echo}_part-mag_MEGRE.nii.gz", v, mag * (1.2 - 0.2 * echo), m)
        _write(a3 / f"sub-03_ses-1_echo-{echo}_part-phase_MEGRE.nii.gz", v, phase * te / 0.02, dict(m, Units="rad"))
    out = root.parent / "out"
    summary = cohort.run(_with_ribbon(cohort.find_bids(root), head["ribbon"]), out, Parameters(), workers=0,
                         with_scene=False)
    return root, out, summary


def test_bids_cohort_reads_each_subject_with_its_sidecars(bids):
    root, out, summary = bids
    assert (summary.ran, summary.skipped, summary.done, summary.failed) == (3, 0, 3, 0)
    acq = {s: cohort.read_record(out, s)["acquisition"] for s in ("sub-01", "sub-02", "sub-03_ses-1")}
    assert [(a["manufacturer"], a["field_strength_t"], a["echo_times_s"]) for a in acq.values()] == [
        ("Siemens", 3, [0.02]), ("GE", 1.5, [0.02]), ("Philips", 3, list(PHILIPS_TES))]
    assert acq["sub-01"]["phase_storage"] == "sidecar Units arbitrary: detected from the values"
    assert acq["sub-02"]["handedness"] == "left, from sidecar Manufacturer 'GE' (GE stores left-handed phase)"
    assert acq["sub-02"]["phase_units"] == "radians, from the headers"
    assert acq["sub-03_ses-1"]["echo_times_from"] == "headers"
    assert acq["sub-03_ses-1"]["source"] == f"BIDS dataset {root}, sub-03/ses-1"
    rows = _table(out)
    assert [(r["subject"], r["status"], r["group"]) for r in rows] == [
        ("sub-01", "done", "ALS"), ("sub-02", "done", "control"), ("sub-03_ses-1", "done", "ALS")]
    assert [(r["manufacturer"], r["field_strength_t"], r["echo_times_s"]) for r in rows] == [
        ("Siemens", "3", "0.02"), ("GE", "1.5", "0.02"), ("Philips", "3", "0.01 0.02")]
    assert [r["pattern"] for r in rows] == ["left", "left", "left"]
    # The record's hash covers the sidecars, the dataset-level ones included, by their path in the dataset.
    assert sorted(cohort.read_record(out, "sub-02")["inputs_sha256"]) == [
        "T2starw.json", "part-phase_T2starw.json", "ribbon", "sub-02/anat/sub-02_part-mag_T2starw.nii.gz",
        "sub-02/anat/sub-02_part-phase_T2starw.nii.gz"]
    assert len(cohort.read_record(out, "sub-03_ses-1")["inputs_sha256"]) == 1 + 4 + 4  # ribbon, images, sidecars


def test_bids_case_is_read_as_motorband_run_bids_reads_it(bids, head, tmp_path):
    root, out, _ = bids
    code = cli.main([str(a) for a in ("run", "--bids", root, "--subject", "03", "--ribbon", head["ribbon"],
                                      "--out", tmp_path / "single", "--no-scene")])
    assert code == 0
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    batch = json.loads((out / "sub-03_ses-1" / "metrics.json").read_text())
    assert batch["qc"]["input"] == single["qc"]["input"]
    assert batch["hemispheres"] == single["hemispheres"] and batch["pattern"] == single["pattern"]


def test_bids_rerun_skips_all_and_a_changed_sidecar_reruns_that_subject(bids, head, tmp_path):
    root, out_src, _ = bids
    ds, out = tmp_path / "ds", tmp_path / "out"
    shutil.copytree(root, ds)
    shutil.copytree(out_src, out)
    cases = _with_ribbon(cohort.find_bids(ds), head["ribbon"])
    again = cohort.run(cases, out, Parameters(), workers=0, with_scene=False)
    assert (again.ran, again.skipped, again.done) == (0, 3, 3)  # a copied dataset hashes the same
    side = ds / "sub-01" / "anat" / "sub-01_part-mag_T2starw.json"
    side.write_text(json.dumps(dict(SIEMENS, Manufacturer="Siemens Healthineers", MagneticFieldStrength=2.89)))
    changed = cohort.run(cases, out, Parameters(), workers=0, with_scene=False)
    assert [r["subject"] for r in changed.records if r["action"] == "ran"] == ["sub-01"]
    assert cohort.read_record(out, "sub-01")["acquisition"]["manufacturer"] == "Siemens Healthineers"
    assert _table(out)[0]["field_strength_t"] == "2.89"
    (ds / "part-phase_T2starw.json").write_text(json.dumps({"Units": "rad", "Note": "edited"}))
    inherited = cohort.run(cases, out, Parameters(), workers=0, with_scene=False)
    # The dataset-level phase sidecar applies to every T2starw phase (sub-01's own one is merged after it),
    # not to sub-03's MEGRE.
    assert [r["subject"] for r in inherited.records if r["action"] == "ran"] == ["sub-01", "sub-02"]
    stated = cohort.run(cases, out, Parameters(handedness="right"), workers=0, with_scene=False,
                        handedness_given="right")
    assert stated.ran == 3  # a value stated over the headers is part of the parameters
    assert cohort.read_record(out, "sub-02")["acquisition"]["handedness"].startswith("right, stated (--handedness)")


def test_bids_subject_the_reader_refuses_is_its_input_failure(bids, head, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bids[0], root)
    (root / "sub-01" / "anat" / "sub-01_part-phase_T2starw.nii.gz").unlink()
    cases = cohort.find_bids(root)
    assert [c.subject for c in cases] == ["sub-01", "sub-02", "sub-03_ses-1"]
    summary = cohort.run(_with_ribbon(cases[:2], head["ribbon"]), tmp_path / "out", Parameters(), workers=0,
                         with_scene=False)
    assert [(r["subject"], r["status"], r["exit_class"]) for r in summary.records] == [
        ("sub-01", "failed", "input"), ("sub-02", "done", None)]
    assert "sub-01/anat holds no part-mag with part-phase" in summary.records[0]["error"]
    assert "(files: sub-01_part-mag_T2starw.nii.gz)" in summary.records[0]["error"]


# --- DICOM -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dicom_root(head, tmp_path_factory):
    """Two good exports (Siemens, Philips) and one holding two acquisitions, run as a cohort."""
    root = tmp_path_factory.mktemp("dicom") / "exports"
    args = (head["mag"], head["phase"], head["aff"])
    write_vendor_export(root / "p01" / "DICOM", "siemens", *args)
    write_vendor_export(root / "p02", "philips", *args)
    write_vendor_export(root / "p03", "siemens", *args, series_base=5)
    write_vendor_export(root / "p03", "siemens", *args, series_base=9)
    out = root.parent / "out"
    summary = cohort.run(_with_ribbon(cohort.find_dicom(root), head["ribbon"]), out, Parameters(), workers=0,
                         with_scene=False)
    return root, out, summary


def test_dicom_root_two_done_and_the_ambiguous_folder_recorded(dicom_root, head):
    root, out, summary = dicom_root
    ribbon = head["ribbon"]
    assert [(r["subject"], r["status"], r["exit_class"]) for r in summary.records] == [
        ("p01", "done", None), ("p02", "done", None), ("p03", "failed", "input")]
    err = summary.records[2]["error"]
    assert err.startswith(f"--dicom {root / 'p03'}: 2 candidate acquisitions: (1) series 5 't2_swi_tra' (magnitude")
    assert "(2) series 9 't2_swi_tra' (magnitude" in err and "series 10 't2_swi_tra' (phase" in err
    assert err.endswith("In a cohort: list p03 in a manifest (--manifest) with its folder in a dicom column and the "
                        "series in a series_number column (e.g. '5 6').")
    rows = _table(out)
    assert [(r["manufacturer"], r["pattern"]) for r in rows] == [("SIEMENS", "left"), ("Philips", "left"), ("", "")]
    assert cohort.read_record(out, "p01")["acquisition"]["phase_storage"].startswith("Siemens 12-bit integers")
    assert set(cohort.read_record(out, "p01")["inputs_sha256"]) == {"dicom", "ribbon"}
    again = cohort.run(_with_ribbon(cohort.find_dicom(root), ribbon), out, Parameters(), workers=0, with_scene=False)
    assert (again.ran, again.skipped, again.done, again.failed) == (0, 3, 2, 1)


def test_manifest_dicom_column_picks_the_series_and_runs_from_the_command_line(dicom_root, head, tmp_path, capsys):
    root, _, _ = dicom_root
    m = tmp_path / "cases.csv"
    m.write_text("subject,dicom,series_number,ribbon,group\n"
                 f"p01,{root / 'p01'},,{head['ribbon']},ALS\n"
                 f"p03,{root / 'p03'},9 10,{head['ribbon']},control\n")
    code = cli.main(["cohort", "--manifest", str(m), "--out", str(tmp_path / "out"), "--workers", "0", "--no-scene"])
    text = capsys.readouterr().out
    assert code == 0 and "2 cases: 2 ran, 0 skipped (unchanged); 2 done, 0 failed" in text
    metrics = json.loads((tmp_path / "out" / "p03" / "metrics.json").read_text())
    assert [s["series_number"] for s in metrics["qc"]["input"]["series_used"]] == [9, 10]
    assert [r["group"] for r in _table(tmp_path / "out")] == ["ALS", "control"]


def test_dicom_root_from_the_command_line_exit_1_and_the_failure_printed(dicom_root, tmp_path, capsys):
    root, _, _ = dicom_root
    only = tmp_path / "exports"
    shutil.copytree(root / "p03", only / "p03")
    code = cli.main(["cohort", "--dicom-root", str(only), "--out", str(tmp_path / "out"), "--workers", "0"])
    text = capsys.readouterr().out
    assert code == 1
    assert f"p03 (input): --dicom {only / 'p03'}: 2 candidate acquisitions" in text


def test_scanner_manifest_and_root_problems_are_named(tmp_path, capsys):
    (tmp_path / "ex" / "bad name").mkdir(parents=True)
    code = cli.main(["cohort", "--dicom-root", str(tmp_path / "ex"), "--out", str(tmp_path / "out")])
    assert code == 2 and "the folder name(s) 'bad name' cannot be subject ids" in capsys.readouterr().err
    (tmp_path / "m.nii.gz").write_bytes(b"x")
    m = tmp_path / "cases.csv"
    m.write_text("subject,dicom,magnitude,phase,series_number\n"
                 "s1,ex,m.nii.gz,m.nii.gz,\ns2,,m.nii.gz,m.nii.gz,5\ns3,ex,,,five\ns4,nope,,,\ns5,,,,\n")
    with pytest.raises(cohort.InputError) as exc:
        cohort.read_manifest(m)
    assert str(exc.value).startswith(
        f"manifest {m} has 6 problem(s): line 2 (subject s1): give either a dicom folder or magnitude and phase "
        "files, not both; line 3 (subject s2): series_number picks DICOM series: give it with a dicom folder; "
        "line 4 (subject s3): series_number 'five' is not a list of series numbers (e.g. '5 6'); "
        f"line 5 (subject s4): dicom folder not found: {tmp_path / 'nope'}; "
        "line 6 (subject s5): no magnitude file given (nor a dicom folder); line 6 (subject s5): no phase file "
        "given (nor a dicom folder).")


def test_cohort_help_names_the_scanner_sources(capsys):
    with pytest.raises(SystemExit):
        cli.main(["cohort", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--dicom-root DIR" in text and "--bids DIR" in text and "series_number" in text
    assert "--bids-derivatives DIR" in text
    assert "read as `motorband run --bids / --dicom` reads it" in text


# --- BIDS derivatives ------------------------------------------------------------------------


def test_cohort_files_each_case_in_the_bids_derivatives(bids, dicom_root, head, tmp_path):
    root, _, _ = bids
    deriv = tmp_path / "derivatives" / "motorbandsign"
    cases = _with_ribbon(cohort.find_bids(root)[1:] + cohort.find_dicom(dicom_root[0])[:1], head["ribbon"])
    summary = cohort.run(cases, tmp_path / "out", Parameters(), workers=0, with_scene=False, bids_derivatives=deriv)
    assert [(r["subject"], r["status"]) for r in summary.records] == [
        ("sub-02", "done"), ("sub-03_ses-1", "done"), ("p01", "done")]
    assert json.loads((deriv / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    assert cohort.read_record(tmp_path / "out", "sub-03_ses-1")["bids_derivatives"][:2] == [
        "sub-03/ses-1/anat/sub-03_ses-1_desc-brain_mask.json", "sub-03/ses-1/anat/sub-03_ses-1_desc-brain_mask.nii.gz"]
    ribbon = io.read_volume(deriv / "sub-02" / "anat" / "sub-02_desc-ribbon_dseg.nii.gz")
    assert np.array_equal(ribbon.array, io.read_volume(head["ribbon"]).array)
    assert (deriv / "sub-p01" / "anat" / "sub-p01_desc-swi_T2starw.nii.gz").is_file()
    (deriv / "sub-p01" / "anat" / "sub-p01_desc-mip_T2starw.nii.gz").unlink()
    again = cohort.run(cases, tmp_path / "out", Parameters(), workers=0, with_scene=False, bids_derivatives=deriv)
    assert [r["subject"] for r in again.records if r["action"] == "ran"] == ["p01"]  # its derivative was missing
    assert (deriv / "sub-p01" / "anat" / "sub-p01_desc-mip_T2starw.nii.gz").is_file()
    renamed = [dataclasses.replace(cases[2], subject="p_01")]
    with pytest.raises(cohort.InputError, match=r"subject p_01 \(exports/p01\) cannot be filed in the BIDS "):
        cohort.run(renamed, tmp_path / "out2", Parameters(), workers=0, bids_derivatives=deriv)
    assert not (tmp_path / "out2").exists()
    with pytest.raises(cohort.InputError, match=r"--bids-derivatives .* and --out .* overlap"):
        cohort.run(cases, deriv / "cohort", Parameters(), workers=0, bids_derivatives=deriv)


def test_memory_plan_of_bids_cases_reads_their_magnitude_headers(bids, monkeypatch):
    monkeypatch.setattr(cohort, "CASE_MIN_BYTES", 0)
    cases = cohort.find_bids(bids[0])
    voxels = 32 * 40 * 40
    assert [cohort.case_memory_bytes(c) for c in cases] == [cohort.CASE_BYTES_PER_VOXEL * voxels] * 2 + [
        cohort.CASE_BYTES_PER_VOXEL * 2 * voxels]  # sub-03: two echoes
    dicom = cohort.Case("p01", {}, source=cohort.Source("dicom", str(bids[0])))
    assert cohort.case_memory_bytes(dicom) == cohort.CASE_BYTES_PER_VOXEL * cohort.REFERENCE_VOXELS
