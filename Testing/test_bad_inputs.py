"""The bad-input and fault matrix (issue 12): each row a user can hit, through the CLI.

Inputs are a small synthetic case built here (a 32 x 40 x 40 "head" at 2 mm with a given
ribbon), so no row needs the localisation. The command-line tests check the exit code, the
first line of the message, that the input files are byte-identical afterwards, and that the
output folder is absent (or holds a complete earlier result) with no temporary leftovers beside
it; a few library-level tests pin the pieces underneath (reader, phase units, caches). Signals
are sent by the test to its own process at a chosen point (no timing).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from MotorBandSignLib import cli, io, outputs
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.volume import Volume
from phantoms.small_head import small_head


def _case(d: Path) -> dict:
    """magnitude, phase (radians) and ribbon (labels 1..4) files of a small synthetic head."""
    mag, phase, rib, aff = small_head(seed=0)
    v = Volume(mag, aff, "magnitude")
    return {"magnitude": io.write_volume(v, d / "magnitude.nii.gz"),
            "phase": io.write_volume(v, d / "phase.nii.gz", phase),
            "ribbon": io.write_volume(v, d / "ribbon.nii.gz", rib)}


def _hashes(paths) -> dict:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _leftovers(folder: Path) -> list:
    """Hidden temporary files or folders (.NAME.partial-*, .NAME.lock, .tmp-*) in ``folder``."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") and (".partial-" in p.name or p.name.endswith(".lock")
                                                  or p.name.startswith(".tmp-")))


def _cli(capsys, *args) -> tuple[int, str]:
    """Exit code and the first line of the message (after any progress lines) of ``motorband ARGS``."""
    code = cli.main([str(a) for a in args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("motorband")]
    return code, (err[0] if err else "")


@pytest.fixture
def case(tmp_path):
    paths = _case(tmp_path / "case")
    return paths, _hashes(paths.values())


def _run_args(paths, out, *extra):
    return ("run", "--magnitude", paths["magnitude"], "--phase", paths["phase"], "--phase-units", "radians",
            "--ribbon", paths["ribbon"], "--out", out, "--no-scene", *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete output folder of one run on the synthetic case (copied by the tests that use it)."""
    d = tmp_path_factory.mktemp("finished")
    paths = _case(d / "case")
    assert cli.main([str(a) for a in _run_args(paths, d / "out")]) == 0
    return paths, d / "out"


def _copy_result(finished, tmp_path) -> tuple[dict, Path, dict]:
    paths, src = finished
    out = tmp_path / "result"
    shutil.copytree(src, out)
    return paths, out, _hashes(out.iterdir())


# --- the output folder (checked before any work) ------------------------------------------------


@pytest.mark.parametrize("where, expected", [
    ("empty", "motorband: error: --out is empty: give the folder for the results"),
    ("inputs folder", "motorband: error: --out {case} holds the input {case}/magnitude.nii.gz: the results would be"),
    ("parent of inputs", "motorband: error: --out {root} holds the input {case}/magnitude.nii.gz"),
    ("an input file", "motorband: error: --out {case}/phase.nii.gz is the input {case}/phase.nii.gz itself"),
    ("existing file", "motorband: error: --out {root}/notes.txt is an existing file, not a folder"),
    ("under a file", "motorband: error: --out {root}/notes.txt/out lies under {root}/notes.txt, which is a file"),
])
def test_bad_out_is_refused_before_any_work(case, tmp_path, capsys, monkeypatch, where, expected):
    paths, before = case
    root, cdir = tmp_path, tmp_path / "case"
    (root / "notes.txt").write_text("my notes")
    out = {"empty": "", "inputs folder": cdir, "parent of inputs": root, "an input file": paths["phase"],
           "existing file": root / "notes.txt", "under a file": root / "notes.txt" / "out"}[where]
    from MotorBandSignLib import pipeline

    monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail("the pipeline ran"))
    monkeypatch.chdir(tmp_path)
    code, first = _cli(capsys, *_run_args(paths, out))
    assert code == 2
    assert first.startswith(expected.format(case=cdir, root=root)), first
    assert _hashes(paths.values()) == before
    assert (root / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in root.iterdir()) == ["case", "notes.txt"]  # nothing written anywhere
    assert sorted(p.name for p in cdir.iterdir()) == ["magnitude.nii.gz", "phase.nii.gz", "ribbon.nii.gz"]


def test_out_inside_an_input_folder_is_refused(tmp_path):
    dicom = tmp_path / "series"
    dicom.mkdir()
    with pytest.raises(InputError, match=r"--out .*series/out is inside the input folder .*series"):
        outputs.check_output_dir(dicom / "out", [dicom])


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_out_is_refused(case, tmp_path, capsys):
    paths, before = case
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, first = _cli(capsys, *_run_args(paths, ro / "out"))
    finally:
        ro.chmod(0o755)
    assert code == 2 and first.startswith(f"motorband: error: --out {ro}/out: no permission to write in {ro}")
    assert _hashes(paths.values()) == before and not (ro / "out").exists()


def test_folder_with_foreign_files_is_refused_and_left_alone(case, tmp_path, capsys):
    paths, before = case
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("<p>my report</p>")
    (mine / "keep.txt").write_text("keep")
    code, first = _cli(capsys, *_run_args(paths, mine))
    assert code == 2
    assert first == (f"motorband: error: --out {mine} already holds report.html, not written by MotorBandSign "
                     "(no metrics.json of an earlier run): choose a new or empty folder, or move those files away.")
    assert (mine / "report.html").read_text() == "<p>my report</p>" and (mine / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt", "report.html"]
    assert _hashes(paths.values()) == before and _leftovers(tmp_path) == []


def test_a_second_run_into_a_locked_folder_is_refused(case, tmp_path, capsys):
    import fcntl

    paths, before = case
    out = tmp_path / "out"
    # Another process holding the folder: an flock on the lock file through its own descriptor.
    with open(tmp_path / ".out.lock", "a+") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, first = _cli(capsys, *_run_args(paths, out))
    assert code == 2
    assert first.startswith(f"motorband: error: --out {out}: another MotorBandSign run is writing this folder")
    assert not out.exists() and _hashes(paths.values()) == before


def test_rerun_into_an_earlier_result_replaces_it_and_cleans_stale_temporaries(finished, tmp_path, capsys):
    paths, out, _ = _copy_result(finished, tmp_path)
    (out / "notes.txt").write_text("mine")
    stale = tmp_path / f".{out.name}.partial-killed"  # left by a run killed with SIGKILL
    stale.mkdir()
    (stale / "swi.nii.gz").write_bytes(b"half")
    before = _hashes(paths.values())
    code, _ = _cli(capsys, *_run_args(paths, out))
    assert code == 0
    assert (out / "notes.txt").read_text() == "mine"  # not the run's: kept
    assert set(outputs.OUTPUT_FILES) - {"scene.mrb"} <= {p.name for p in out.iterdir()}
    assert _leftovers(tmp_path) == [] and _hashes(paths.values()) == before


# --- damaged or non-finite images ----------------------------------------------------------------


def _nifti(path: Path, array: np.ndarray) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return path


def _cut(path: Path, keep: float) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


@pytest.mark.parametrize("which", ["magnitude", "phase"])
@pytest.mark.parametrize("dtype, ext, keep", [("int16", ".nii.gz", 0.5), ("int16", ".nii", 0.6),
                                              ("float32", ".nii.gz", 0.9), ("float32", ".nii", 0.5),
                                              ("float32", ".nii.gz", 0.999), ("float32", ".nii", 0.002),
                                              ("int16", ".nii.gz", 0.01)])
def test_truncated_nifti_is_refused(case, tmp_path, capsys, which, dtype, ext, keep):
    paths, _ = case
    arr = io.read_volume(paths[which]).array.transpose(2, 1, 0)  # (i, j, k) for nibabel
    if dtype == "int16":
        arr = np.round(arr * (100 if which == "phase" else 1)).astype(np.int16)
    bad = _cut(_nifti(tmp_path / f"cut{ext}", arr.astype(dtype)), keep)
    paths = dict(paths, **{which: bad})
    before = _hashes(paths.values())
    out = tmp_path / "out"
    code, first = _cli(capsys, *_run_args(paths, out))
    assert code == 2
    assert first.startswith(f"motorband: error: {which} image: file truncated or corrupt: {bad} ("), first
    assert _hashes(paths.values()) == before and not out.exists() and _leftovers(tmp_path) == []


def test_gzip_with_valid_stream_but_too_few_voxels_is_refused(tmp_path):
    import gzip

    good = _nifti(tmp_path / "good.nii", np.ones((10, 12, 14), np.float32)).read_bytes()
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(good[: len(good) - 100]))
    with pytest.raises(InputError, match=r"^phase image: file truncated or corrupt: .*short\.nii\.gz \(the header "
                                         r"promises 7072 bytes, the decompressed file holds 6972\)"):
        io.read_volume(short, what="phase image")


def test_the_slicer_reader_refuses_a_truncated_nifti_too(tmp_path):
    from MotorBandSignLib import mrml

    bad = _cut(_nifti(tmp_path / "cut.nii.gz", np.ones((10, 12, 14), np.float32)), 0.7)
    with pytest.raises(InputError, match=r"^cut: file truncated or corrupt: .*cut\.nii\.gz"):
        mrml.read_volume(bad)


@pytest.mark.parametrize("which, values, found", [
    ("magnitude", (np.inf,), "1 infinite (+/-Inf) voxel(s)"),
    ("phase", (-np.inf, np.inf, np.inf), "3 infinite (+/-Inf) voxel(s)"),
    ("phase", (np.nan, -np.inf), "1 NaN voxel(s) and 1 infinite (+/-Inf) voxel(s)"),
])
def test_infinite_voxels_are_refused_like_nan(case, tmp_path, capsys, which, values, found):
    paths, _ = case
    arr = io.read_volume(paths[which]).array.transpose(2, 1, 0).copy()
    for n, v in enumerate(values):
        arr[10 + n, 20, 16] = v
    bad = _nifti(tmp_path / f"{which}-inf.nii.gz", arr)
    paths = dict(paths, **{which: bad})
    before = _hashes(paths.values())
    out = tmp_path / "out"
    code, first = _cli(capsys, *_run_args(paths, out))
    assert code == 2
    assert first == (f"motorband: error: {which} image: {bad} has {found}. Replace them (e.g. by 0 outside the "
                     "head) before running, or give the scanner's original image.")
    assert _hashes(paths.values()) == before and not out.exists() and _leftovers(tmp_path) == []


def test_infinite_voxels_in_nrrd_are_refused(tmp_path):
    arr = np.ones((6, 7, 8), np.float32)
    arr[1, 2, 3] = -np.inf
    p = io.write_volume(Volume(arr, np.eye(4), "x"), tmp_path / "x.nrrd")
    with pytest.raises(InputError, match=r"x\.nrrd has 1 infinite"):
        io.read_volume(p, what="phase image")


# --- re-measuring with an edited ribbon ----------------------------------------------------------


def _edited(finished, tmp_path, keep_labels) -> Path:
    rib = io.read_volume(finished[1] / "ribbon.nii.gz")
    arr = np.where(np.isin(rib.array, keep_labels), rib.array, 0).astype(np.uint8)
    return io.write_volume(rib, tmp_path / "edited.nii.gz", arr)


@pytest.mark.parametrize("keep, expected", [
    ((), "motorband: error: nothing could be measured: the ribbon '{rib}' is empty (no voxel labelled 1-4)."),
    ((1, 2), "motorband: error: nothing could be measured: the ribbon '{rib}' has no hemisphere with both a "
             "posterior bank (at least 20 voxels, label 1 left / 2 right) and control cortex (at least 30 voxels, "
             "label 3 left / 4 right); it has left {n1} bank / 0 control, right {n2} bank / 0 control voxels."),
])
def test_measure_with_nothing_measurable_keeps_the_earlier_result(finished, tmp_path, capsys, keep, expected):
    _, out, before_out = _copy_result(finished, tmp_path)
    rib = _edited(finished, tmp_path, keep)
    before_rib = _hashes([rib])
    n = np.bincount(io.read_volume(rib).array.ravel().astype(int), minlength=3)
    code, first = _cli(capsys, "measure", "--out", out, "--ribbon", rib, "--no-scene")
    assert code == 2
    assert first.startswith(expected.format(rib=rib, n1=n[1], n2=n[2])), first
    assert _hashes(out.iterdir()) == before_out  # the earlier result is untouched
    assert _hashes([rib]) == before_rib and _leftovers(tmp_path) == []


def test_one_hemisphere_not_measured_is_not_called_absent(finished, tmp_path, capsys):
    _, out, _ = _copy_result(finished, tmp_path)
    rib = _edited(finished, tmp_path, (2, 3, 4))  # the left bank erased
    code = cli.main(["measure", "--out", str(out), "--ribbon", str(rib), "--no-scene"])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["hemispheres"]["left"]["measured"] is False and m["measured_sides"] == ["right"]
    assert printed[0] == "Pattern: absent (right bank only; left not measured)"
    assert printed[1].strip() == "left : not measured"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "the left bank could not be measured" in html and "neither posterior bank is darker" not in html
    assert _leftovers(tmp_path) == []


def test_no_bank_measured_is_pattern_not_measured():
    from MotorBandSignLib import scoring, slicer_logic

    shape = (10, 10, 10)
    rib = np.zeros(shape, np.uint8)
    rib[:, :, :2] = 3  # control cortex only
    z = np.zeros(shape, np.float32)
    m = scoring.score(np.ones(shape, np.float32), z, rib, None, 0.001)
    assert m["pattern"] == "not measured" and m["measured_sides"] == []
    assert slicer_logic.verdict_text(m).startswith("Not measured: neither posterior bank could be measured")


# --- interrupts and signals ----------------------------------------------------------------------


def test_ctrl_c_prints_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    from MotorBandSignLib import pipeline

    paths, before = case

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted)
    out = tmp_path / "new" / "out"
    code = cli.main([str(a) for a in _run_args(paths, out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err == ["motorband: interrupted, nothing written"]
    assert not (tmp_path / "new").exists()  # not even the parent made for the lock
    assert _hashes(paths.values()) == before and _leftovers(tmp_path) == []


def test_sigterm_while_writing_removes_every_temporary(finished, tmp_path, capsys, monkeypatch):
    import signal
    import tempfile

    from MotorBandSignLib import report

    _, out, before_out = _copy_result(finished, tmp_path)
    rib = _edited(finished, tmp_path, (1, 2, 3, 4))
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    real_write = report.write_report

    def killed_while_writing(result, path, *a, **k):
        assert (path.parent / "scene.mrb").exists()  # the scene bundle was packed already
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here, in this thread
        return real_write(result, path, *a, **k)

    monkeypatch.setattr(report, "write_report", killed_while_writing)
    code = cli.main(["measure", "--out", str(out), "--ribbon", str(rib)])  # with the scene
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 143 and err[-1] == "motorband: terminated, nothing written"
    assert _hashes(out.iterdir()) == before_out  # the earlier result is as it was
    assert _leftovers(tmp_path) == [] and list(system_tmp.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is not cli._raise_terminated  # handler restored


def test_interrupt_while_moving_in_comes_after_the_result_is_complete(finished, tmp_path, capsys, monkeypatch):
    import signal

    _, out, _ = _copy_result(finished, tmp_path)
    rib = _edited(finished, tmp_path, (2, 3, 4))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    real_move = outputs._move_in

    def ctrl_c_during_move(tmp, dest):
        os.kill(os.getpid(), signal.SIGINT)  # held back until every file is in
        real_move(tmp, dest)

    monkeypatch.setattr(outputs, "_move_in", ctrl_c_during_move)
    try:
        code = cli.main(["measure", "--out", str(out), "--ribbon", str(rib), "--no-scene"])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err[-1] == f"motorband: interrupted, after the results were written to {out}"
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["hemispheres"]["left"]["measured"] is False  # the new result, complete
    assert _leftovers(tmp_path) == []


# --- the terminal ----------------------------------------------------------------------------------


def test_stdout_holds_only_the_summary(finished, tmp_path, capfd):
    _, out, _ = _copy_result(finished, tmp_path)
    rib = _edited(finished, tmp_path, (1, 2, 3, 4))
    assert cli.main(["measure", "--out", str(out), "--ribbon", str(rib)]) == 0  # with the scene (.mrb packing)
    printed, err = capfd.readouterr()
    assert (out / "scene.mrb").exists()
    assert printed.splitlines()[0].startswith("Pattern: ") and printed.splitlines()[-1] == f"Report: {out / 'report.html'}"
    assert len(printed.splitlines()) == 4  # pattern, left, right, report: no warnings in this case
    assert "Info:" not in printed + err and "Zip:" not in printed + err


def test_library_warnings_and_errors_still_reach_stderr():
    import io as stdio

    import vtk

    from MotorBandSignLib import mrml

    stream = stdio.StringIO()
    with mrml.library_messages(stream):
        window = vtk.vtkOutputWindow.GetInstance()
        window.DisplayText("Info: In vtkArchive.cxx, line 35\nZip: adding: scene.mrml\n\n")
        window.DisplayErrorText("ERROR: In vtkMRMLScene.cxx, line 9\ncannot write\n\n")
    assert stream.getvalue() == "ERROR: In vtkMRMLScene.cxx, line 9\ncannot write\n"


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     RuntimeError("itk::ERROR: ImageFileWriter: No space left on device")])
def test_disk_full_while_writing_is_an_input_error_and_keeps_the_earlier_result(finished, tmp_path, capsys,
                                                                               monkeypatch, failure):
    from MotorBandSignLib import report

    _, out, before_out = _copy_result(finished, tmp_path)
    rib = _edited(finished, tmp_path, (1, 2, 3, 4))

    def full(*a, **k):
        raise failure

    monkeypatch.setattr(report, "write_report", full)
    code, first = _cli(capsys, "measure", "--out", out, "--ribbon", rib, "--no-scene")
    assert code == 2
    assert first == (f"motorband: error: no space left on {tmp_path} while writing the results: free some space "
                     "there or give an output folder on another disk. Nothing was written.")
    assert _hashes(out.iterdir()) == before_out and _leftovers(tmp_path) == []


# --- magnitude and phase mixed up, units that contradict the data ----------------------------------


@pytest.mark.parametrize("mixup, units, expected", [
    ("magnitude as phase", "auto",
     "motorband: error: Phase image looks like a magnitude: its values {lo}..{hi} are all positive"),
    ("same file twice", "auto",
     "motorband: error: the phase image 'magnitude.nii.gz' holds the same values as the magnitude "
     "'magnitude.nii.gz': the same image was given twice."),
    ("swapped", "auto", "motorband: error: the magnitude 'phase.nii.gz' is negative in 50 % of its voxels"),
    ("none", "siemens", "motorband: error: Phase units were given as siemens, but the values (-0.1..0.1) are "
                        "not integers, as Siemens phase is stored."),
    ("none", "degrees", "motorband: error: Phase units were given as degrees, but the values -0.1..0.1 are "
                        "radians (within one turn); read as degrees the phase would be near zero everywhere."),
])
def test_mixed_up_images_and_contradicting_units_are_refused(case, tmp_path, capsys, mixup, units, expected):
    paths, before = case
    mag, ph = paths["magnitude"], paths["phase"]
    if mixup != "none":
        paths = dict(paths, **{"magnitude as phase": {"phase": mag}, "same file twice": {"phase": mag},
                               "swapped": {"magnitude": ph, "phase": mag}}[mixup])
    arr = io.read_volume(mag).array
    if mixup == "magnitude as phase":  # another echo's magnitude, say: not the same values
        v = io.read_volume(mag)
        arr = v.array * 0.8
        paths["phase"] = io.write_volume(v, tmp_path / "echo2.nii.gz", arr)
    args = list(_run_args(paths, tmp_path / "out"))
    args[args.index("--phase-units") + 1] = units
    code, first = _cli(capsys, *args)
    assert code == 2
    assert first.startswith(expected.format(lo=f"{arr.min():g}", hi=f"{arr.max():g}")), first
    assert _hashes([mag, ph, paths["ribbon"]]) == before
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_signed_siemens_integers_with_odd_values_are_recognised():
    from MotorBandSignLib.phase import to_radians

    rad = np.random.default_rng(5).uniform(-np.pi, np.pi, (8, 16, 16))
    sie = np.clip(np.round(rad / np.pi * 4096), -4096, 4095).astype(np.int16)  # -4096..4095, step 1
    out, detected, warnings = to_radians(sie)
    assert detected == "siemens" and warnings == []
    assert np.max(np.abs(np.angle(np.exp(1j * (out - rad))))) < 1e-3


# --- messages speak the user's flags and units -----------------------------------------------------


def _four_d(paths, tmp_path) -> dict:
    out = {}
    for which in ("magnitude", "phase"):
        v = io.read_volume(paths[which])
        out[which] = io.write_volume(v, tmp_path / f"{which}-2echo.nii.gz", np.stack([v.array, v.array]))
    return out


@pytest.mark.parametrize("te, four_d, expected", [
    (("20", "40"), True, "motorband: error: echo times 20 40 (--te on the command line): give echo times in "
                         "seconds (these look like milliseconds), e.g. --te 0.02 0.04."),
    (("0.02",), True, "motorband: error: --magnitude {mag} is 4D (2 echoes) but --te gives 1 echo time(s): give "
                      "one per echo, in seconds, e.g. --te 0.005 0.010."),
    ((), True, "motorband: error: --magnitude {mag} is 4D (2 echoes) but --te gives 0 echo time(s)"),
    (("0.01", "0.02"), False, "motorband: error: --te gives 2 echo times but --magnitude {mag} holds one echo (3D)"),
])
def test_echo_time_messages_name_the_flag_and_the_unit(case, tmp_path, capsys, te, four_d, expected):
    paths, before = case
    if four_d:
        paths = dict(paths, **_four_d(paths, tmp_path))
        paths.pop("ribbon")
    args = ["run", "--magnitude", paths["magnitude"], "--phase", paths["phase"], "--out", tmp_path / "out"]
    if te:
        args += ["--te", *te]
    code, first = _cli(capsys, *args)
    assert code == 2 and first.startswith(expected.format(mag=paths["magnitude"])), first
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_parameter_messages_name_the_flag():
    from MotorBandSignLib.params import Parameters

    with pytest.raises(InputError, match=r"^parameter mip_slab_mm=-1 must be positive \(--mip-slab-mm on the "
                                         r"command line\)\.$"):
        Parameters(mip_slab_mm=-1).validate()


# --- caches ------------------------------------------------------------------------------------------


def test_a_corrupt_template_cache_is_rebuilt_not_fatal(tmp_path, monkeypatch):
    from MotorBandSignLib import templates

    monkeypatch.setenv("MOTORBANDSIGN_CACHE", str(tmp_path / "cache"))
    builds = []

    def build():
        builds.append(1)
        return {"a": np.arange(1000.0)}

    first = templates._cached_npz("issue12_probe", build)
    (cached,) = (tmp_path / "cache").glob("issue12_probe-*.npz")
    assert templates._cached_npz("issue12_probe", build)["a"].sum() == first["a"].sum() and len(builds) == 1
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # truncated by a killed writer
    again = templates._cached_npz("issue12_probe", build)
    assert len(builds) == 2 and np.array_equal(again["a"], first["a"])
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached.name]  # rebuilt in place, no temp left
    assert np.load(cached)["a"].size == 1000


# --- a fuzz of NIfTI headers -----------------------------------------------------------------------

#: (offset, struct format) of NIfTI-1 header fields the fuzz changes (little-endian).
_FIELDS = {"dim": (40, "<8h"), "datatype": (70, "<h"), "bitpix": (72, "<h"), "pixdim": (76, "<8f"),
           "vox_offset": (108, "<f"), "scl_slope": (112, "<f"), "scl_inter": (116, "<f"),
           "qform_code": (252, "<h"), "sform_code": (254, "<h"), "quatern": (256, "<6f"),
           "srow": (280, "<12f")}


def _mutated_nifti(rng, path: Path) -> Path:
    import gzip
    import struct

    import nibabel as nib

    shape = tuple(int(n) for n in rng.integers(1, 9, size=rng.choice([2, 3, 4])))
    dtype = rng.choice(["uint8", "int16", "int32", "float32", "float64"])
    data = (rng.normal(size=shape) * 100).astype(dtype)
    aff = np.diag([*rng.uniform(0.5, 3, 3), 1.0])
    img = nib.Nifti1Image(data, aff)
    img.header.set_qform(aff, int(rng.integers(0, 3)))
    img.header.set_sform(aff @ np.diag([1, 1, 1, 1.0]) if rng.random() < 0.5 else aff, int(rng.integers(0, 3)))
    raw = bytearray(img.header.binaryblock + b"\0" * 4 + np.asarray(data).tobytes(order="F"))
    for _ in range(int(rng.integers(0, 4))):
        name = rng.choice(list(_FIELDS))
        offset, fmt = _FIELDS[name]
        values = list(struct.unpack_from(fmt, raw, offset))
        n = int(rng.integers(len(values)))
        weird = [0, -1, 1, 7, 8, 300, 32767, -32768] if fmt[-1] == "h" else \
            [0.0, -1.0, 1e-12, 1e12, float("nan"), float("inf"), -float("inf"), float(rng.normal() * 10)]
        values[n] = weird[int(rng.integers(len(weird)))]
        struct.pack_into(fmt, raw, offset, *values)
    if rng.random() < 0.3:
        raw = raw[: int(rng.integers(0, len(raw)))]
    if rng.random() < 0.5:
        path = path.with_suffix(".nii.gz")
        packed = gzip.compress(bytes(raw))
        if rng.random() < 0.2:
            packed = packed[: int(rng.integers(0, len(packed)))]
        path.write_bytes(packed)
    else:
        path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("seed", range(400))
def test_fuzzed_nifti_headers_give_a_sane_volume_or_an_input_error(tmp_path, seed):
    rng = np.random.default_rng(seed)
    p = _mutated_nifti(rng, tmp_path / f"fuzz{seed}.nii")
    before = _hashes([p])
    try:
        v = io.read_volume(p, what="phase image", allow_4d=bool(rng.random() < 0.5))
    except InputError as exc:
        assert str(exc).startswith("phase image") or str(p) in str(exc), str(exc)
    else:
        assert v.array.ndim in (3, 4) and v.array.size > 0
        assert np.all(np.isfinite(v.ijk_to_ras)) and np.all(v.spacing > 0)
        assert abs(np.linalg.det(v.ijk_to_ras[:3, :3])) > 0
        assert v.array.dtype.kind not in "fc" or np.all(np.isfinite(v.array))
    assert _hashes([p]) == before


def test_a_small_field_of_view_is_refused_as_too_small_for_localisation(tmp_path, capsys):
    rng = np.random.default_rng(1)
    shape = (20, 64, 64)  # (k, j, i) at 1 mm: 64 x 64 x 20 mm
    k, j, i = np.indices(shape)
    head = (j - 32.0) ** 2 + (i - 32.0) ** 2 < 28 ** 2
    v = Volume(np.where(head, 100.0, 2.0).astype(np.float32) + rng.random(shape, np.float32), np.eye(4), "small")
    mag = io.write_volume(v, tmp_path / "magnitude.nii.gz")
    ph = io.write_volume(v, tmp_path / "phase.nii.gz", rng.uniform(-3, 3, shape).astype(np.float32))
    before = _hashes([mag, ph])
    code, first = _cli(capsys, "run", "--magnitude", mag, "--phase", ph, "--out", tmp_path / "out")
    assert code == 2
    assert first == ("motorband: error: coverage too small for localisation: the magnitude 'magnitude.nii.gz' "
                     "covers 64 x 64 x 20 mm (left-right x front-back x up-down); finding the motor strips needs "
                     "at least 100 mm left-right and front-back (a whole axial section of the head). Give a scan "
                     "covering the head, or give the ribbon (--ribbon) drawn on this one.")
    assert _hashes([mag, ph]) == before and not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


# --- qform / sform ---------------------------------------------------------------------------------


@pytest.mark.parametrize("qcode, scode, used", [(1, 2, "the qform"), (2, 1, "the sform")])
def test_a_qform_sform_conflict_is_reported_with_the_transform_used(tmp_path, qcode, scode, used):
    import nibabel as nib

    q = np.diag([2.0, 2.0, 2.0, 1.0])
    s = q.copy()
    s[:3, 3] = (10.0, 0.0, 0.0)
    img = nib.Nifti1Image(np.ones((6, 7, 8), np.float32), None)
    img.header.set_qform(q, qcode)
    img.header.set_sform(s, scode)
    p = tmp_path / "conflict.nii.gz"
    nib.save(img, str(p))
    v = io.read_volume(p, what="phase image")
    chosen = q if used == "the qform" else s
    assert np.allclose(v.ijk_to_ras, chosen)
    assert v.meta["geometry_warning"].startswith(
        f"phase image: {p} has a qform (code {qcode}) and an sform (code {scode}) that place the image up to 10.0 mm "
        f"apart; the geometry used is the one ITK and Slicer read ({used}), while FSL and nibabel use the sform.")
    img.header.set_sform(q, scode)  # agreeing transforms: nothing to report
    nib.save(img, str(p))
    assert "geometry_warning" not in io.read_volume(p).meta


def test_the_conflict_is_among_the_run_warnings(case, tmp_path, capsys):
    import nibabel as nib

    paths, _ = case
    conflicted = {}
    for which in ("magnitude", "phase"):
        v = io.read_volume(paths[which])
        img = nib.Nifti1Image(v.array.transpose(2, 1, 0), None)
        shifted = v.ijk_to_ras.copy()
        shifted[:3, 3] += (10.0, 0.0, 0.0)
        img.header.set_qform(v.ijk_to_ras, 1)
        img.header.set_sform(shifted, 2)
        conflicted[which] = tmp_path / f"{which}-qs.nii.gz"
        nib.save(img, str(conflicted[which]))
    out = tmp_path / "out"
    code = cli.main([str(a) for a in _run_args(dict(paths, **conflicted), out)])
    printed = capsys.readouterr().out
    assert code == 0
    warnings = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["warnings"]
    for which in ("magnitude", "phase"):
        note = (f"{which} image: {conflicted[which]} has a qform (code 1) and an sform (code 2) that place the "
                "image up to 10.0 mm apart; the geometry used is the one ITK and Slicer read (the qform)")
        assert any(w.startswith(note) for w in warnings)
        assert f"  warning: {note}" in printed


@pytest.mark.parametrize("damaged, expected", [
    ("state.npz", "motorband: error: the earlier result in {out} is damaged (BadZipFile reading state.npz / "
                  "metrics.json): run `motorband run ... --out DIR` again to rebuild it."),
    ("swi.nii.gz", "motorband: error: earlier result's swi: file truncated or corrupt: {out}/swi.nii.gz ("),
])
def test_measure_on_a_damaged_result_is_an_input_error(finished, tmp_path, capsys, damaged, expected):
    _, out, _ = _copy_result(finished, tmp_path)
    _cut(out / damaged, 0.5)
    before = _hashes(out.iterdir())
    rib = _edited(finished, tmp_path, (1, 2, 3, 4))
    code, first = _cli(capsys, "measure", "--out", out, "--ribbon", rib, "--no-scene")
    assert code == 2 and first.startswith(expected.format(out=out)), first
    assert _hashes(out.iterdir()) == before and _leftovers(tmp_path) == []


def test_measure_without_scene_leaves_nothing_in_the_system_temp(finished, tmp_path, capsys, monkeypatch):
    import tempfile

    _, out, _ = _copy_result(finished, tmp_path)
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    rib = out / "ribbon_edited.seg.nrrd"  # an edited segmentation saved beside the result, as the README shows
    rib.write_bytes((out / "ribbon.seg.nrrd").read_bytes())
    assert cli.main(["measure", "--out", str(out), "--ribbon", str(rib), "--no-scene"]) == 0
    assert list(system_tmp.iterdir()) == [] and _leftovers(tmp_path) == []
    assert rib.exists()  # the user's file in the folder is kept


def test_a_one_voxel_brain_mask_is_an_input_error():
    from MotorBandSignLib import pipeline

    v = Volume(np.ones((8, 9, 10), np.float32), np.eye(4), "magnitude")
    mask = np.zeros(v.shape, np.uint8)
    mask[4, 4, 4] = 1
    inputs = pipeline.Inputs(magnitude=v, phase=v.with_array(np.zeros(v.shape, np.float32), "phase"),
                             brain_mask=v.with_array(mask, "mask"))
    with pytest.raises(InputError, match=r"^the brain mask 'mask' holds 0\.0 mL; a brain mask covers at least 100 mL"):
        pipeline.run(inputs)


def test_a_file_that_cannot_be_opened_is_left_to_the_reader(case, monkeypatch):
    paths, _ = case

    def denied(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(io, "_is_gzip", denied)
    assert io.check_nifti(paths["phase"], what="phase image") is None  # no NameError: the reader reports it


def test_check_nifti_leaves_files_that_are_not_nifti_to_the_reader(tmp_path):
    text = tmp_path / "notes.nii"
    text.write_text("not an image at all")
    assert io.check_nifti(text) is None  # the reader then says it cannot read it
    with pytest.raises(InputError, match=r"cannot read .*notes\.nii as an image"):
        io.read_volume(text)


def test_scene_caches_of_killed_processes_are_removed(tmp_path):
    import subprocess
    import sys

    from MotorBandSignLib import mrml

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(done.stdout)  # a process that has exited
    dead = tmp_path / f"{mrml.CACHE_PREFIX}{dead_pid}-abc"
    alive = tmp_path / f"{mrml.CACHE_PREFIX}{os.getpid()}-def"  # this process: running
    other = tmp_path / f"{mrml.CACHE_PREFIX}xyz"  # an older name without a PID: not ours to judge
    for d in (dead, alive, other):
        d.mkdir()
        (d / "scene.mrml").write_text("x")
    assert mrml.remove_stale_caches(str(tmp_path)) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


def test_an_interrupted_progress_line_on_a_terminal_is_ended_before_the_message(case, tmp_path, monkeypatch):
    import io as stdio
    import sys

    from MotorBandSignLib import pipeline

    class Terminal(stdio.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    paths, _ = case

    def interrupted_midway(inputs, params, progress=None, cancel=None):
        progress(0.35, "Locating the precentral and postcentral gyri")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted_midway)
    assert cli.main([str(a) for a in _run_args(paths, tmp_path / "out")]) == 130
    lines = term.getvalue().split("\n")
    assert lines[0].startswith("\r[ 35.0%") and lines[1] == "motorband: interrupted, nothing written"


@pytest.mark.parametrize("seed", range(40))
def test_fuzzed_inputs_through_the_command_exit_0_or_2_never_a_traceback(tmp_path, capsys, seed):
    rng = np.random.default_rng(1000 + seed)
    mag = _mutated_nifti(rng, tmp_path / "magnitude.nii")
    ph = _mutated_nifti(rng, tmp_path / "phase.nii")
    before = _hashes([mag, ph])
    code = cli.main(["run", "--magnitude", str(mag), "--phase", str(ph), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err and "internal error" not in err, err
    assert _hashes([mag, ph]) == before and _leftovers(tmp_path) == []
    if code == 2:
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("block_bytes", [1, 500, 10**9])
def test_non_finite_voxels_are_counted_right_in_blocks(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(io, "_CHECK_BLOCK_BYTES", block_bytes)
    a = np.ones((5, 6, 7, 3), np.float32)
    a[0, 0, 0, 0] = a[4, 5, 6, 2] = np.nan
    a[2, 3, 1, 1] = -np.inf
    p = _nifti(tmp_path / "four.nii.gz", a)
    with pytest.raises(InputError, match=r"has 2 NaN voxel\(s\) and 1 infinite \(\+/-Inf\) voxel\(s\)"):
        io.read_volume(p, what="phase image", allow_4d=True)


def test_a_slab_too_thin_for_the_central_sulcus_is_refused_with_its_height():
    """A slab of the top 40 mm of the brain (the issue's case): refused with the height covered,
    before any template registration runs; 60 mm slabs (test_ribbon) are localised."""
    from MotorBandSignLib import anatomy
    from phantoms import simulate

    c = simulate.generate_case(simulate.PhantomConfig(seed=3, voxel_mm=(3.0, 3.0, 3.0), coverage_top_mm=40.0))
    with pytest.raises(InputError) as err:
        anatomy.localize(c.magnitude, c.brain_mask)
    msg = str(err.value)
    assert msg.startswith("coverage too small for localisation: the brain in the image spans only ")
    height = float(msg.split("spans only ")[1].split(" mm")[0])
    assert 30 <= height < 50, msg
