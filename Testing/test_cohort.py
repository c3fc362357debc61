"""Cohorts (issue 14): a batch of small synthetic cases with given ribbons (no localisation).

Four good cases (two with a dark left posterior bank, labelled "ALS"; two without, "control")
and one corrupt case (a truncated magnitude) run as a cohort with two local worker processes.
The tests check what was recorded and written (cohort.tsv rows, columns and values; the page;
the records), that a rerun skips everything, that a changed parameter reruns, that
``retry_failed`` reruns the failure only, that a Dask LocalCluster gives the same table, and
that the command line refuses bad manifests with exit 2 and a message naming the row.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from MotorBandSignLib import cli, cohort, cohort_report, io
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.params import Parameters
from MotorBandSignLib.volume import Volume
from phantoms.small_head import small_head

#: Darkening of the left bank in the "ALS" cases: bank / control ratio about 0.7 (< the default band ratio, 0.845).
BAND_FACTOR = 0.7
PARAMS = Parameters(phase_units="radians")
SUBJECTS = {"sub-01": ("ALS", 61, True), "sub-02": ("control", 58, False), "sub-03": ("ALS", 66, True),
            "sub-04": ("control", 70, False)}


def _write_case(d: Path, seed: int, band: bool) -> dict:
    """magnitude, phase (radians) and ribbon (1/2 left/right bank, 3/4 control) of a small head."""
    d.mkdir(parents=True)
    mag, phase, rib, aff = small_head(seed, BAND_FACTOR if band else None)
    v = Volume(mag, aff, "magnitude")
    return {"magnitude": io.write_volume(v, d / "magnitude.nii.gz"),
            "phase": io.write_volume(v, d / "phase.nii.gz", phase),
            "ribbon": io.write_volume(v, d / "ribbon.nii.gz", rib)}


def _manifest(root: Path) -> Path:
    """Five cases (sub-05 corrupt) in root/data and a manifest with relative paths and extra columns."""
    rows = []
    for n, (subject, (group, age, band)) in enumerate(SUBJECTS.items(), start=1):
        paths = _write_case(root / "data" / subject, n, band)
        rows.append([subject, *(Path(paths[r]).relative_to(root) for r in ("magnitude", "phase", "ribbon")),
                     age, group])
    bad = _write_case(root / "data" / "sub-05", 5, False)
    raw = Path(bad["magnitude"]).read_bytes()
    Path(bad["magnitude"]).write_bytes(raw[: len(raw) // 2])  # truncated download
    rows.append(["sub-05", *(Path(bad[r]).relative_to(root) for r in ("magnitude", "phase", "ribbon")), 64, "ALS"])
    m = root / "cases.csv"
    with open(m, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "magnitude", "phase", "ribbon", "age", "group"])
        w.writerows(rows)
    return m


def _table(out: Path) -> list[dict]:
    with open(out / "cohort.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory):
    """The cohort run once with two local workers: (manifest, out folder, summary)."""
    root = tmp_path_factory.mktemp("cohort")
    manifest = _manifest(root)
    seen = []
    summary = cohort.run(cohort.read_manifest(manifest), root / "out", PARAMS, workers=2, with_scene=False,
                         progress=lambda done, total, rec: seen.append((done, total, rec["subject"])))
    return manifest, root / "out", summary, seen


def _copy(cohort_run, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(cohort_run[1], out)
    return out


def test_good_cases_done_and_the_corrupt_one_recorded(cohort_run):
    manifest, out, summary, seen = cohort_run
    assert (summary.ran, summary.skipped, summary.done, summary.failed) == (5, 0, 4, 1)
    assert sorted(s for _, _, s in seen) == [f"sub-0{n}" for n in range(1, 6)]
    assert [d for d, _, _ in seen] == [1, 2, 3, 4, 5] and {t for _, t, _ in seen} == {5}
    bad = cohort.read_record(out, "sub-05")
    assert bad["status"] == "failed" and bad["exit_class"] == "input"
    assert "magnitude image of sub-05" in bad["error"] and "truncated" in bad["error"]
    for s in SUBJECTS:
        rec = cohort.read_record(out, s)
        assert rec["status"] == "done" and set(rec["inputs_sha256"]) == {"magnitude", "phase", "ribbon"}
        assert cohort.outputs_complete(out / s, with_scene=False)
    assert not (out / "sub-05").exists()
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no lock or partial


def test_cohort_tsv_rows_columns_and_values(cohort_run):
    _, out, _, _ = cohort_run
    rows = _table(out)
    assert [r["subject"] for r in rows] == ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05"]
    assert list(rows[0]) == list(cohort_report.COLUMNS) + ["age", "group"]
    for r in rows[:4]:
        group, age, band = SUBJECTS[r["subject"]]
        assert (r["status"], r["group"], r["age"], r["version"]) == ("done", group, str(age), "0.1.0")
        assert r["pattern"] == ("left" if band else "absent")
        left, right = float(r["left_band_contrast"]), float(r["right_band_contrast"])
        assert (left < 0.8) if band else (0.95 < left < 1.05)
        assert 0.95 < right < 1.05
        assert r["left_band_present"] == ("true" if band else "false") and r["right_band_present"] == "false"
        for reg in ("medial", "intermediate", "lateral"):
            assert r[f"left_{reg}_band_contrast"] and r[f"right_{reg}_grade"] == "0"
        assert r["nonspecific_diffuse"] == "false" and r["localisation"] == "segmentation"
        assert r["report"] == f"{r['subject']}/report.html" and (out / r["report"]).is_file()
        assert float(r["runtime_s"]) > 0 and r["error"] == "" and r["warnings"].isdigit()
    bad = rows[4]
    assert (bad["status"], bad["exit_class"], bad["pattern"], bad["report"]) == ("failed", "input", "", "")
    assert bad["error"].startswith("magnitude image of sub-05")


def test_cohort_html_and_group_comparison(cohort_run):
    _, out, summary, _ = cohort_run
    page = (out / "cohort.html").read_text()
    assert "Research statistics, not a diagnostic test." in page
    for s in SUBJECTS:
        assert f'<a href="{s}/report.html"><img\nalt="" src="data:image/png;base64,' in page
        assert f'<br>{s}</a>' in page
        assert cohort.thumbnail_path(out, s).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count("data:image/png;base64,") == 3 + 4  # three figures, four thumbnails
    assert "<b>sub-05</b>: failed: magnitude image of sub-05" in page
    comps = {c["measure"]: c for c in summary.comparisons}
    assert set(comps) == {"left_band_contrast", "right_band_contrast", "lower_band_contrast"}
    left = comps["left_band_contrast"]
    assert (left["group"], left["reference"], left["n"], left["n_reference"]) == ("ALS", "control", 2, 2)
    assert left["difference"] == pytest.approx(left["mean"] - left["mean_reference"])
    assert -0.35 < left["difference"] < -0.2 and left["hedges_g"] < -2
    lo, hi = left["hedges_g_ci"]
    assert lo <= left["hedges_g"] <= hi < 0
    assert left["note"].startswith("fewer than 10 cases in a group")
    assert left["difference_ci"][0] < left["difference"] < left["difference_ci"][1]
    assert "ALS vs control" in page and "Hedges' g (bootstrap 95 % CI)" in page


def test_hedges_g_matches_the_formula():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 3.0, 4.0, 5.0, 6.0])
    pooled = np.sqrt((3 * a.var(ddof=1) + 4 * b.var(ddof=1)) / 7)
    assert cohort_report.hedges_g(a, b) == pytest.approx((2.5 - 4.0) / pooled * (1 - 3 / (4 * 9 - 9)))
    assert cohort_report.hedges_g([1.0], b) is None


def test_rerun_skips_everything_and_retry_failed_reruns_the_failure_only(cohort_run, tmp_path):
    manifest, _, first, _ = cohort_run
    out = _copy(cohort_run, tmp_path)
    again = cohort.run(cohort.read_manifest(manifest), out, PARAMS, workers=2, with_scene=False)
    assert (again.ran, again.skipped, again.done, again.failed) == (0, 5, 4, 1)
    retry = cohort.run(cohort.read_manifest(manifest), out, PARAMS, workers=2, with_scene=False, retry_failed=True)
    assert (retry.ran, retry.skipped, retry.done, retry.failed) == (1, 4, 4, 1)
    assert [r["subject"] for r in retry.records if r["action"] == "ran"] == ["sub-05"]
    assert [r["pattern"] for r in _table(out)] == ["left", "absent", "left", "absent", ""]


def test_changed_parameter_or_input_reruns(cohort_run, tmp_path):
    manifest, _, _, _ = cohort_run
    out = _copy(cohort_run, tmp_path)
    changed = cohort.run(cohort.read_manifest(manifest), out, Parameters(phase_units="radians", band_ratio=0.85),
                         workers=0, with_scene=False)
    assert (changed.ran, changed.skipped, changed.done, changed.failed) == (5, 0, 4, 1)
    assert {r["band_ratio"] for r in [__import__("json").loads((out / s / "metrics.json").read_text())["thresholds"]
                                      for s in SUBJECTS]} == {0.85}
    # An incomplete output folder (a file removed) reruns that case alone.
    (out / "sub-02" / "heatmap.nii.gz").unlink()
    again = cohort.run(cohort.read_manifest(manifest), out, Parameters(phase_units="radians", band_ratio=0.85),
                       workers=0, with_scene=False)
    assert [r["subject"] for r in again.records if r["action"] == "ran"] == ["sub-02"]


def test_dask_local_cluster_gives_the_same_table(cohort_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    manifest, first_out, _, _ = cohort_run
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        summary = cohort.run(cohort.read_manifest(manifest), tmp_path / "out", PARAMS, scheduler=lc,
                             with_scene=False)
    assert (summary.ran, summary.skipped, summary.done, summary.failed) == (5, 0, 4, 1)

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "runtime_s"} for r in rows]

    assert strip(_table(tmp_path / "out")) == strip(_table(first_out))


class _KillsItsWorker(os.PathLike):
    """An input path that ends any process using it but the one that made it, at once (as a
    SIGKILL or the OOM killer would end a worker mid-case)."""

    def __init__(self, real):
        self.real, self.pid = str(real), os.getpid()

    def __fspath__(self):
        if os.getpid() != self.pid:
            os._exit(1)
        return self.real


def _killer_case(case):
    return dataclasses.replace(case, subject="sub-99",
                               files=dict(case.files, magnitude=_KillsItsWorker(case.files["magnitude"])))


def test_a_case_that_kills_its_worker_is_recorded_and_the_others_finish(cohort_run, tmp_path):
    cases = cohort.read_manifest(cohort_run[0])[:2]
    killer = _killer_case(cases[0])
    summary = cohort.run([cases[0], killer, cases[1]], tmp_path / "out", PARAMS, workers=2, with_scene=False)
    assert [(r["subject"], r["status"]) for r in summary.records] == [
        ("sub-01", "done"), ("sub-99", "failed"), ("sub-02", "done")]
    lost = summary.records[1]
    assert lost["exit_class"] == "internal"
    assert lost["error"].startswith(f"the worker process running this case died ({cohort.MAX_ATTEMPTS} attempts)")
    assert cohort.read_record(tmp_path / "out", "sub-99")["status"] == "failed"
    assert [r["status"] for r in _table(tmp_path / "out")] == ["done", "failed", "done"]


def test_killed_worker_case_runs_again(cohort_run, tmp_path, monkeypatch):
    """A case without a record (its worker died before finishing) runs again; the others are kept."""
    manifest, _, _, _ = cohort_run
    out = _copy(cohort_run, tmp_path)
    cohort.record_path(out, "sub-03").unlink()
    summary = cohort.run(cohort.read_manifest(manifest), out, PARAMS, workers=0, with_scene=False)
    assert [r["subject"] for r in summary.records if r["action"] == "ran"] == ["sub-03"]
    assert summary.done == 4


# --- manifests and the command line -------------------------------------------------------------


def test_manifest_problems_are_named_with_their_line(tmp_path):
    m = tmp_path / "cases.csv"
    m.write_text("subject,magnitude\nsub-01,a.nii.gz\n")
    with pytest.raises(InputError, match=r"lacks the column\(s\) phase \(it has: subject, magnitude\)"):
        cohort.read_manifest(m)
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    m.write_text("subject,magnitude,phase\nsub-01,a.nii.gz,missing.nii.gz\nsub-01,a.nii.gz,a.nii.gz\n"
                 "../x,a.nii.gz,a.nii.gz\n")
    with pytest.raises(InputError) as exc:
        cohort.read_manifest(m)
    msg = str(exc.value)
    assert msg.startswith(f"manifest {m} has 3 problem(s): line 2 (subject sub-01): phase file not found: "
                          f"{tmp_path / 'missing.nii.gz'}; line 3 (subject sub-01): subject sub-01 already on line 2; "
                          "line 4 (subject ../x): the subject id is used as a folder name")


def test_bids_folder_cases_and_participants(tmp_path):
    """Subjects and sessions found; each case is read later by bids_in.read_bids (a subject whose
    files it refuses is that case's failure, see test_cohort_scanner.py), not here."""
    for sub, ses in (("sub-01", None), ("sub-02", "ses-1"), ("sub-02", "ses-2")):
        anat = tmp_path / sub / (ses or "") / "anat"
        anat.mkdir(parents=True)
        stem = f"{sub}_{ses}" if ses else sub
        for part in ("mag", "phase"):
            (anat / f"{stem}_part-{part}_T2starw.nii.gz").write_bytes(b"x")
    (tmp_path / "sub-03" / "anat").mkdir(parents=True)
    (tmp_path / "sub-03" / "anat" / "sub-03_T1w.nii.gz").write_bytes(b"x")  # no GRE: not a case
    (tmp_path / "participants.tsv").write_text("participant_id\tage\tgroup\nsub-01\t61\tALS\nsub-02\t58\tcontrol\n")
    cases = cohort.find_bids(tmp_path)
    assert [c.subject for c in cases] == ["sub-01", "sub-02_ses-1", "sub-02_ses-2"]
    assert cases[0].extra == {"age": "61", "group": "ALS"} and cases[2].extra["group"] == "control"
    assert [(c.source.kind, c.source.path, c.source.subject, c.source.session) for c in cases] == [
        ("bids", str(tmp_path), "01", None), ("bids", str(tmp_path), "02", "1"), ("bids", str(tmp_path), "02", "2")]
    (tmp_path / "sub-01" / "anat" / "sub-01_part-phase_T2starw.nii.gz").unlink()
    assert [c.subject for c in cohort.find_bids(tmp_path)][0] == "sub-01"  # refused later, by its reader
    with pytest.raises(InputError, match=r"BIDS folder .* holds no sub-\*/\[ses-\*/\]anat/\*_part-mag_\*"):
        cohort.find_bids(tmp_path / "sub-03")


def test_cli_bad_manifest_exits_2_without_traceback(tmp_path, capsys):
    m = tmp_path / "cases.csv"
    m.write_text("subject,magnitude,phase\nsub-01,nope.nii.gz,nope2.nii.gz\n")
    code = cli.main(["cohort", "--manifest", str(m), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().startswith(f"motorband: error: manifest {m} has 2 problem(s): line 2 (subject sub-01): "
                                  f"magnitude file not found: {tmp_path / 'nope.nii.gz'}")
    assert not (tmp_path / "out").exists()


def test_cli_cohort_rerun(cohort_run, tmp_path, capsys):
    manifest, _, _, _ = cohort_run
    out = _copy(cohort_run, tmp_path)
    code = cli.main(["cohort", "--manifest", str(manifest), "--out", str(out), "--phase-units", "radians",
                     "--workers", "0", "--no-scene"])
    text = capsys.readouterr()
    assert code == 1  # finished, with a failed case recorded
    assert "5 cases: 0 ran, 5 skipped (unchanged); 4 done, 1 failed" in text.out
    assert "sub-05 (input): magnitude image of sub-05" in text.out
    assert f"Table: {out / 'cohort.tsv'}" in text.out


def test_cli_interrupt_says_finished_cases_are_kept(cohort_run, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cohort, "run", interrupted)
    code = cli.main(["cohort", "--manifest", str(cohort_run[0]), "--out", str(tmp_path / "out")])
    assert code == 130
    assert capsys.readouterr().err.strip().endswith(
        f"motorband: interrupted, after the results were written to {tmp_path / 'out'} for the cases finished so "
        "far (run the same command again to continue)")


def test_parcellation_without_labels_is_refused_before_any_work(tmp_path):
    for name in ("m.nii.gz", "p.nii.gz", "aparc.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    m = tmp_path / "cases.csv"
    m.write_text("subject,magnitude,phase,parcellation\nsub-01,m.nii.gz,p.nii.gz,aparc.nii.gz\n")
    with pytest.raises(InputError, match=r"^1 case\(s\) \(sub-01\) give a parcellation but no label preset"):
        cohort.run(cohort.read_manifest(m), tmp_path / "out", PARAMS, workers=0)
    assert not (tmp_path / "out").exists()


def test_dask_worker_killed_by_a_case_loses_no_other_case(cohort_run, tmp_path):
    """On Dask, the case that kills its worker is retried by the scheduler, then recorded as failed."""
    distributed = pytest.importorskip("distributed")
    import dask

    cases = cohort.read_manifest(cohort_run[0])[:2]
    killer = _killer_case(cases[0])
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        summary = cohort.run([cases[0], killer, cases[1]], tmp_path / "out", PARAMS, scheduler=lc, with_scene=False)
    assert [(r["subject"], r["status"]) for r in summary.records] == [
        ("sub-01", "done"), ("sub-99", "failed"), ("sub-02", "done")]
    assert summary.records[1]["error"].startswith("the worker process running this case died (KilledWorker")


def test_a_changed_input_reruns_that_case_only(cohort_run, tmp_path):
    """Records hold content hashes, not paths: a copied cohort is still up to date, and a changed
    file reruns its case alone."""
    manifest, out_src, _, _ = cohort_run
    shutil.copytree(manifest.parent / "data", tmp_path / "data")
    shutil.copy(manifest, tmp_path / "cases.csv")
    shutil.copytree(out_src, tmp_path / "out")
    phase = tmp_path / "data" / "sub-04" / "phase.nii.gz"
    v = io.read_volume(phase)
    io.write_volume(v, phase, (v.array * 0.5).astype(np.float32))
    summary = cohort.run(cohort.read_manifest(tmp_path / "cases.csv"), tmp_path / "out", PARAMS, workers=0,
                         with_scene=False)
    assert [r["subject"] for r in summary.records if r["action"] == "ran"] == ["sub-04"]
    assert (summary.skipped, summary.done, summary.failed) == (4, 4, 1)


def test_an_interrupted_cohort_leaves_no_half_case_and_continues(cohort_run, tmp_path):
    """Ctrl-C (here raised by the progress callback after the first case) stops the workers at
    once; every case folder present is complete, and the same call then runs only what is left."""
    manifest = cohort_run[0]
    out = tmp_path / "out"

    def interrupt(done, total, rec):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cohort.run(cohort.read_manifest(manifest), out, PARAMS, workers=2, with_scene=False, progress=interrupt)
    finished = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert all(cohort.outputs_complete(out / s, with_scene=False) for s in finished)
    recorded = sorted(p.stem for p in (out / cohort.STATE_DIR).glob("*.json"))
    assert 1 <= len(recorded) < 5 and not (tmp_path / ".out.lock").exists()
    summary = cohort.run(cohort.read_manifest(manifest), out, PARAMS, workers=2, with_scene=False)
    assert summary.skipped == len(recorded) and summary.ran == 5 - len(recorded)
    assert (summary.done, summary.failed) == (4, 1)
    assert not [p.name for p in out.iterdir() if ".partial-" in p.name]  # stale temporaries cleaned


def test_default_workers_is_bounded_by_cores_memory_and_cases(monkeypatch):
    per_case = cohort.CASE_BYTES_PER_VOXEL * cohort.REFERENCE_VOXELS  # 3.8 GB: the 1 mm brain
    assert per_case == 650 * 5_848_340
    monkeypatch.setattr(cohort, "_cpus", lambda: 8)
    monkeypatch.setattr(cohort, "_available_memory", lambda: 10 * 10**9)
    assert cohort.default_workers() == 2  # 0.8 x 10 GB / 3.8 GB
    monkeypatch.setattr(cohort, "_available_memory", lambda: 64 * 10**9)
    assert cohort.default_workers() == 8  # the cores
    fake = [cohort.Case(f"s{n}", {"magnitude": "/nonexistent.nii.gz"}) for n in range(3)]
    assert cohort.default_workers(fake) == 3  # the cases
    monkeypatch.setattr(cohort, "_available_memory", lambda: 10**9)
    assert cohort.default_workers() == 1  # never fewer than one


def test_pin_threads_sets_itk_blas_and_the_environment():
    import subprocess
    import sys

    code = ("from MotorBandSignLib import cohort; cohort.pin_threads(1); import os, numpy, SimpleITK as s, threadpoolctl; "
            "print(s.ProcessObject.GetGlobalDefaultNumberOfThreads(), "
            "max([i['num_threads'] for i in threadpoolctl.threadpool_info()] or [0]), os.environ['OMP_NUM_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1", "1"]


def test_cli_unreachable_scheduler_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import socket

    for name in ("m.nii.gz", "p.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    manifest = tmp_path / "cases.csv"
    manifest.write_text("subject,magnitude,phase\nsub-01,m.nii.gz,p.nii.gz\n")

    with socket.socket() as sock:  # a free port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(cohort, "DASK_CONNECT_TIMEOUT", "2s")
    code = cli.main(["cohort", "--manifest", str(manifest), "--out", str(tmp_path / "out"),
                     "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"motorband: error: cannot reach the Dask scheduler tcp://127.0.0.1:{port}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.csv", "m.nii.gz", "p.nii.gz"]
