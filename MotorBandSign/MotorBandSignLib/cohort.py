"""Cohorts: the pipeline over many subjects, resumable, in parallel, with a cohort table and report.

    from MotorBandSignLib import cohort
    from MotorBandSignLib.params import Parameters

    cases = cohort.read_manifest("cases.csv")          # or cohort.find_bids("bids/")
    summary = cohort.run(cases, "out", Parameters())    # local worker processes
    summary = cohort.run(cases, "out", Parameters(), scheduler="tcp://10.0.0.5:8786")   # Dask

Each case runs :func:`MotorBandSignLib.pipeline.run` and writes its usual output folder
``OUT/<subject>/`` through :func:`MotorBandSignLib.outputs.write_outputs` (complete or absent,
never half-written). Nothing here computes a measurement.

Resuming. When a case ends, its worker writes a record ``OUT/.cohort/<subject>.json`` (atomically:
a temporary file, then ``os.replace``) holding the SHA-256 of every input file's content, the
SHA-256 of the parameters, the status (``done`` / ``failed``), the error message and its class
(``input``: the case's files are at fault, the message says how; ``internal``: a failure of the
program). A later run skips a case whose inputs and parameters hash the same as its record and
whose output folder is complete (its ``metrics.json`` written by MotorBandSign and every
output file present); a recorded failure with unchanged inputs and parameters is skipped too
(the same files would fail the same way) unless ``retry_failed`` is given, which reruns those
failures (and only adds cases that never finished; finished ones stay skipped). A worker killed
mid-case leaves no record, so the case runs again; every finished case already has its record.
A case given up after its worker died MAX_ATTEMPTS times is recorded as failed without input
hashes, so the next run tries it again (the death may have been a neighbour's doing).

Parallelism. ``scheduler=None`` runs local worker processes (``spawn``: a fresh interpreter per
worker, safe beside the threads of VTK/ITK); ``workers`` defaults to :func:`default_workers`,
bounded by the cores and by the memory available. ``scheduler`` may instead be a Dask address
(``"tcp://HOST:PORT"``), a Dask cluster object (LocalCluster, dask-jobqueue's SLURMCluster...)
or a ``distributed.Client``: the same :func:`run_case` is submitted there. ``workers=0`` runs
the cases one after the other in this process (for debugging, and in Slicer's Python console,
whose executable cannot start plain Python workers). Each worker pins its thread count
(:func:`pin_threads`) so that cases do not oversubscribe the cores.
"""

from __future__ import annotations

# Only the standard library and light package modules at import time: a spawned worker imports
# this module before it pins its threads (numpy / ITK read some thread settings when loaded).
import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import CancelledError, InputError
from .params import Parameters

__all__ = ["Case", "read_manifest", "find_bids", "run", "run_case", "default_workers", "pin_threads",
           "case_memory_bytes", "STATE_DIR"]

#: Manifest columns every row needs, and the optional input-file columns.
REQUIRED_COLUMNS = ("subject", "magnitude", "phase")
OPTIONAL_FILE_COLUMNS = ("ribbon", "t1", "parcellation")
FILE_COLUMNS = ("magnitude", "phase") + OPTIONAL_FILE_COLUMNS
#: Hidden folder of OUT holding one record per subject (resume state).
STATE_DIR = ".cohort"
#: A subject id becomes a folder name: letters, digits, '-', '_', '.'; not starting with '.'.
SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Bytes read at a time when hashing an input (bounded memory, whatever the file size).
HASH_BLOCK_BYTES = 4 * 2**20

#: Peak memory of one case per voxel of its magnitude grid, and its floor. Source: the peak
#: resident set (VmHWM) of Testing/benchmarks/bench_individual.py, which simulates and runs the
#: whole pipeline (atlas route) on 1 mm individual brains (the demo brain is 167 x 206 x 170 =
#: 5.85 M voxels), read at 36 min into a run on 2026-11-28: 3.06 GB, an upper bound for the
#: pipeline alone (the simulation shares the process); 3.06 GB x 1.25 margin / 5.85 M voxels ~
#: 650 bytes per voxel. The floor is the interpreter with numpy, SciPy, ITK and VTK loaded plus
#: the templates and atlas: a worker that ran 3 mm template-phantom cases peaked at 1.88 GB
#: (Testing/benchmarks/bench_cohort.py --quick, 2026-11-28), so 2 GB.
CASE_BYTES_PER_VOXEL = 650
CASE_MIN_BYTES = 2 * 2**30
#: Share of the available memory the workers may plan to use (the rest for the OS, the page
#: cache and the parent process).
MEMORY_FRACTION = 0.8
#: Assumed grid when no header can be read: the 1 mm brain above.
REFERENCE_VOXELS = 167 * 206 * 170
#: Attempts of one case on local workers when its worker process dies (killed, out of memory):
#: a neighbour's memory spike or a stray kill gets two more chances, a case that kills every
#: worker it meets is given up after three (Dask's own limit, ``allowed-failures``, is similar).
MAX_ATTEMPTS = 3
#: How long to try reaching a Dask scheduler given by address: Dask's own default connect
#: timeout (distributed.comm.timeouts.connect, 30 s), long enough for a scheduler just started.
DASK_CONNECT_TIMEOUT = "30s"
#: Environment variables that size the thread pools of OpenMP, BLAS, numexpr, numba and ITK.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


@dataclass(frozen=True)
class Case:
    """One subject of a cohort: its input files (absolute paths by role) and descriptive columns."""

    subject: str
    #: role ("magnitude", "phase", optional "ribbon", "t1", "parcellation") -> absolute path.
    files: dict
    #: Other manifest / participants.tsv columns (age, sex, group...), carried into cohort.tsv.
    extra: dict = field(default_factory=dict)
    #: Where the case was declared (e.g. "cases.csv line 4"), for messages.
    origin: str = ""


# --------------------------------------------------------------------------------------------
# Where cases come from
# --------------------------------------------------------------------------------------------
def read_manifest(path) -> list[Case]:
    """Cases from a CSV (or TSV) manifest: one row per subject.

    Columns: ``subject``, ``magnitude``, ``phase`` (required); ``ribbon``, ``t1``,
    ``parcellation`` (optional input files); any other column (age, sex, group...) is carried
    into ``cohort.tsv``. Relative paths are relative to the manifest's folder. The delimiter is
    a tab for ``.tsv`` files and a comma otherwise.

    Raises :class:`InputError` naming every problem with its line (missing columns, empty or
    repeated subjects, files that do not exist), so the manifest can be fixed in one go.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"manifest {p} not found: give a CSV file with columns {', '.join(REQUIRED_COLUMNS)}.")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"manifest {p} cannot be read ({exc}): give a UTF-8 CSV file.") from None
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"manifest {p} lacks the column(s) {', '.join(missing)} (it has: {', '.join(header) or 'nothing'}). "
            f"The first line must name the columns: {', '.join(REQUIRED_COLUMNS)} (required), "
            f"{', '.join(OPTIONAL_FILE_COLUMNS)} (optional files), and any others (age, sex, group...).")
    base = p.parent
    cases, problems, seen = [], [], {}
    for n, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue  # blank line
        where = f"line {n}"
        subject = row.get("subject", "")
        if not subject:
            problems.append(f"{where}: no subject id")
            continue
        where += f" (subject {subject})"
        if not SUBJECT_RE.match(subject):
            problems.append(f"{where}: the subject id is used as a folder name; use letters, digits, '-', '_' "
                            "or '.' only (not starting with '.')")
            continue
        if subject in seen:
            problems.append(f"{where}: subject {subject} already on line {seen[subject]}")
            continue
        seen[subject] = n
        files = {}
        for role in FILE_COLUMNS:
            value = row.get(role, "")
            if not value:
                if role in REQUIRED_COLUMNS:
                    problems.append(f"{where}: no {role} file given")
                continue
            f = Path(value).expanduser()
            f = f if f.is_absolute() else base / f
            if not f.exists():
                problems.append(f"{where}: {role} file not found: {f}")
            files[role] = os.path.abspath(f)
        extra = {k: v for k, v in row.items() if k and k not in REQUIRED_COLUMNS + OPTIONAL_FILE_COLUMNS}
        cases.append(Case(subject, files, extra, f"{p.name} {where}"))
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InputError(f"manifest {p} has {len(problems)} problem(s): {shown}. Fix these rows (or remove them) "
                         "and run again.")
    if not cases:
        raise InputError(f"manifest {p} lists no cases: add one row per subject under the header line.")
    return cases


def find_bids(root) -> list[Case]:
    """Cases from a BIDS-like folder: ``sub-*/[ses-*/]anat/*_part-mag*.nii[.gz]`` with the
    matching ``*_part-phase*`` file (the BIDS ``part`` entity of complex-valued data).

    The subject id is ``sub-X`` (``sub-X_ses-Y`` with sessions). ``participants.tsv`` columns
    (age, sex, group...) are carried into ``cohort.tsv``. More than one magnitude per subject
    and session (separate echoes, runs) is refused: list the cases in a manifest instead.
    """
    r = Path(root).expanduser()
    if not r.is_dir():
        raise InputError(f"--bids {r} is not a folder: give the root of a BIDS dataset (holding sub-* folders).")
    participants = {}
    ptsv = r / "participants.tsv"
    if ptsv.is_file():
        for row in csv.DictReader(ptsv.read_text(encoding="utf-8-sig").splitlines(), delimiter="\t"):
            pid = (row.get("participant_id") or "").strip()
            if pid:
                participants[pid] = {k: (v or "").strip() for k, v in row.items() if k and k != "participant_id"}
    cases, problems = [], []
    for anat in sorted(list(r.glob("sub-*/anat")) + list(r.glob("sub-*/ses-*/anat"))):
        sub = next(q.name for q in [anat, *anat.parents] if q.name.startswith("sub-"))
        ses = anat.parent.name if anat.parent.name.startswith("ses-") else None
        subject = f"{sub}_{ses}" if ses else sub
        mags = sorted(m for m in anat.glob("*_part-mag*") if m.name.endswith((".nii", ".nii.gz")))
        if not mags:
            continue
        if len(mags) > 1:
            problems.append(f"{subject}: {len(mags)} magnitude files ({', '.join(m.name for m in mags[:3])}); "
                            "list the cases in a manifest (--manifest) to say which to use")
            continue
        phase = anat / mags[0].name.replace("_part-mag", "_part-phase")
        if not phase.exists():
            problems.append(f"{subject}: no phase file {phase.name} beside {mags[0].name}")
            continue
        cases.append(Case(subject, {"magnitude": str(mags[0].resolve()), "phase": str(phase.resolve())},
                          dict(participants.get(sub, {})), f"{r.name}/{subject}"))
    if problems:
        raise InputError(f"BIDS folder {r}: " + "; ".join(problems[:10]) + ".")
    if not cases:
        raise InputError(f"BIDS folder {r} holds no sub-*/anat/*_part-mag*.nii[.gz] with a matching *_part-phase* "
                         "file: give a manifest (--manifest) instead.")
    return cases


# --------------------------------------------------------------------------------------------
# Resources: workers, memory, threads
# --------------------------------------------------------------------------------------------
def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _available_memory() -> int | None:
    """Bytes of memory available to new processes (psutil, else /proc/meminfo), None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def case_memory_bytes(case: Case | None = None) -> int:
    """Planned peak memory of one case: CASE_BYTES_PER_VOXEL per voxel of its magnitude (all
    echoes), at least CASE_MIN_BYTES; the reference 1 mm grid when the header cannot be read."""
    voxels = REFERENCE_VOXELS
    if case is not None:
        with contextlib.suppress(Exception):
            import nibabel as nib

            shape = nib.load(case.files["magnitude"]).shape
            voxels = 1
            for s in shape:
                voxels *= int(s)
    return max(CASE_MIN_BYTES, CASE_BYTES_PER_VOXEL * voxels)


def default_workers(cases=(), *, sample: int = 20) -> int:
    """Local workers: as many as there are cores, but no more than the memory available allows
    (MEMORY_FRACTION of it over the largest planned case among the first ``sample`` cases; see
    CASE_BYTES_PER_VOXEL for the source), and no more than there are cases. At least 1."""
    cpus = _cpus()
    per_case = max([case_memory_bytes(c) for c in list(cases)[:sample]] or [case_memory_bytes()])
    avail = _available_memory()
    by_memory = cpus if avail is None else int(avail * MEMORY_FRACTION // per_case)
    n = min(cpus, by_memory, len(cases) if len(cases) else cpus)
    return max(1, n)


def pin_threads(n: int) -> None:
    """Limit this process's compute threads to ``n``: the environment variables read by OpenMP,
    BLAS, numexpr, numba and ITK when they load, SimpleITK's global default number of threads,
    and the BLAS / OpenMP pools already loaded (threadpoolctl, when installed)."""
    n = max(1, int(n))
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    with contextlib.suppress(ImportError):
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)


# --------------------------------------------------------------------------------------------
# Hashes and records
# --------------------------------------------------------------------------------------------
def file_sha256(path) -> str:
    """SHA-256 of a file's content; of a folder (a DICOM series), of its files' names and contents."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        if p.is_dir():
            h.update(str(q.relative_to(p)).encode() + b"\0")
        with open(q, "rb") as fh:
            while block := fh.read(HASH_BLOCK_BYTES):
                h.update(block)
    return h.hexdigest()


def params_sha256(params: Parameters, with_scene: bool) -> str:
    """SHA-256 of the resolved parameters (defaults filled in) and of what is written."""
    settings = {"parameters": params.resolved().to_dict(), "with_scene": bool(with_scene)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def record_path(out_dir, subject: str) -> Path:
    return Path(out_dir) / STATE_DIR / f"{subject}.json"


def read_record(out_dir, subject: str) -> dict | None:
    """The subject's record, or None if there is none or it cannot be read (the case then runs)."""
    try:
        rec = json.loads(record_path(out_dir, subject).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _write_record(out_dir, rec: dict) -> None:
    path = record_path(out_dir, rec["subject"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(rec, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def thumbnail_path(out_dir, subject: str) -> Path:
    return Path(out_dir) / STATE_DIR / f"{subject}.png"


def _write_thumbnail(out_dir, subject: str, result) -> None:
    """The case's thumbnail for cohort.html, atomically; a failure only leaves it out of the page."""
    from . import cohort_report

    path = thumbnail_path(out_dir, subject)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(cohort_report.thumbnail_png(result))
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - a picture for the overview page; the case itself is done
        with contextlib.suppress(OSError):
            tmp.unlink()


def outputs_complete(case_dir, with_scene: bool) -> bool:
    """True if ``case_dir`` holds a complete result: every output file, metrics.json by MotorBandSign."""
    from .outputs import OUTPUT_FILES, _is_result_dir

    d = Path(case_dir)
    need = [f for f in OUTPUT_FILES if with_scene or f != "scene.mrb"]
    return all((d / f).is_file() for f in need) and _is_result_dir(d)


# --------------------------------------------------------------------------------------------
# One case (runs in a worker)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """What a worker needs to run one case (picklable)."""

    case: Case
    out_dir: str
    params: Parameters
    with_scene: bool = True
    retry_failed: bool = False
    threads: int | None = None


def _read_inputs(case: Case, params: Parameters):
    """The case's files as pipeline Inputs (messages name the subject and the role)."""
    from . import io, outputs, pipeline

    f = case.files
    multi = len(params.echo_times) > 1
    mag = io.read_volume(f["magnitude"], what=f"magnitude image of {case.subject}", allow_4d=True)
    if mag.array.ndim == 4 and mag.array.shape[0] == 1:
        mag = mag.with_array(mag.array[0])
    if mag.array.ndim == 4 and not multi:
        raise InputError(f"the magnitude of {case.subject} ({f['magnitude']}) is 4D ({mag.array.shape[0]} echoes) "
                         "but no echo times were given: give one echo time per echo (--te), or 3D images.")
    inputs = pipeline.Inputs(magnitude=mag)
    inputs.phase = io.read_volume(f["phase"], what=f"phase image of {case.subject}", allow_4d=multi)
    if f.get("t1"):
        inputs.t1 = io.read_volume(f["t1"], what=f"T1 image of {case.subject}")
    if f.get("parcellation"):
        if not params.labels:
            raise InputError(f"{case.subject} has a parcellation but no label preset was given: set --labels "
                             "freesurfer|synthseg|TABLE (Parameters.labels) to say what its numbers mean.")
        inputs.parcellation = io.read_volume(f["parcellation"], what=f"parcellation of {case.subject}")
    if f.get("ribbon"):
        ref = mag if mag.array.ndim == 3 else mag.with_array(mag.array[0])
        inputs.ribbon = outputs.read_ribbon(f["ribbon"], ref)
    return inputs


def run_case(task: Task) -> dict:
    """Run (or skip) one case and return its record; the record is also written to
    ``OUT/.cohort/<subject>.json`` once the case has ended, after its outputs.

    ``action`` in the returned record: ``ran`` or ``skipped``. Never raises for a failure of
    the case (it is recorded, ``status`` ``failed``); an interrupt (KeyboardInterrupt,
    CancelledError) propagates and leaves no record (the case runs again next time).
    """
    if task.threads:
        pin_threads(task.threads)
    case, out = task.case, Path(task.out_dir)
    case_dir = out / case.subject
    t0 = time.perf_counter()
    rec = {"subject": case.subject, "status": "failed", "exit_class": None, "error": None,
           "inputs_sha256": {}, "params_sha256": params_sha256(task.params, task.with_scene),
           "version": __version__, "runtime_s": None, "output": case.subject}
    try:
        rec["inputs_sha256"] = {role: file_sha256(p) for role, p in sorted(case.files.items())}
    except OSError as exc:
        rec.update(exit_class="input", error=f"cannot read the {case.subject} inputs: {exc}. Check the files "
                                             f"({case.origin}).", runtime_s=0.0)
        _write_record(out, rec)
        return dict(rec, action="ran")
    prev = read_record(out, case.subject)
    if (prev and prev.get("inputs_sha256") == rec["inputs_sha256"]
            and prev.get("params_sha256") == rec["params_sha256"]):
        if prev.get("status") == "done" and outputs_complete(case_dir, task.with_scene):
            return dict(prev, action="skipped")
        if prev.get("status") == "failed" and not task.retry_failed:
            return dict(prev, action="skipped")
    try:
        from . import outputs, pipeline

        outputs.check_output_dir(case_dir, list(case.files.values()))
        inputs = _read_inputs(case, task.params)
        result = pipeline.run(inputs, task.params)
        outputs.write_outputs(result, case_dir, with_scene=task.with_scene)
        rec.update(status="done", exit_class=None, error=None)
        _write_thumbnail(out, case.subject, result)
    except (KeyboardInterrupt, CancelledError):
        raise
    except InputError as exc:
        rec.update(exit_class="input", error=str(exc))
    except MemoryError:
        rec.update(exit_class="internal", error="out of memory: give the workers more memory or run fewer at once "
                                                "(--workers).")
    except Exception as exc:  # noqa: BLE001 - one case's failure is recorded, the cohort goes on
        rec.update(exit_class="internal", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=20))
    rec["runtime_s"] = round(time.perf_counter() - t0, 2)
    rec["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _write_record(out, rec)
    return dict(rec, action="ran")


# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------
def _lost_record(task: Task, why: str) -> dict:
    """Record of a case whose worker died every time it ran it (written by the parent)."""
    rec = {"subject": task.case.subject, "status": "failed", "exit_class": "internal",
           "error": f"the worker process running this case died ({why}): killed, or out of memory; the case "
                    "runs again next time (or give it more memory, fewer --workers).",
           "inputs_sha256": {}, "params_sha256": params_sha256(task.params, task.with_scene),
           "version": __version__, "runtime_s": None, "output": task.case.subject}
    _write_record(task.out_dir, rec)
    return dict(rec, action="ran")


def _run_serial(tasks, report):
    for t in tasks:
        report(run_case(t))


def _stop(pool) -> None:
    """Interrupted: cancel the queued cases and end the workers now (SIGTERM: a worker moving a
    finished case into place holds it back until done, see outputs.write_outputs) instead of
    waiting for their cases to end. The cases they were running leave no record and run again."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # CPython's pool internals
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join()


def _run_local(tasks, workers: int, report):
    """Worker processes (spawned) on this machine.

    All cases first go to one pool of ``workers`` processes. A worker that dies (killed, out of
    memory, a crash in a library) breaks that pool and fails every unfinished case in it
    without saying which one it was running; those cases then run again each in its own
    one-process pool (still ``workers`` at a time), so a case that kills its worker takes only
    itself down. A case whose process died MAX_ATTEMPTS times in all is recorded as failed.
    Finished cases are never rerun: their records were written by their workers.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    threads = (tasks[0].threads or 1) if tasks else 1

    def pool(n):
        return ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=pin_threads, initargs=(threads,))

    attempts = {t.case.subject: 1 for t in tasks}
    retry = []
    with pool(min(workers, len(tasks))) as shared:
        futures = {shared.submit(run_case, t): t for t in tasks}
        try:
            not_done = set(futures)
            while not_done:
                done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        report(fut.result())
                    except BrokenProcessPool:
                        retry.append(futures[fut])
        except BaseException:
            _stop(shared)
            raise

    active = set()  # the one-process pools running now (to stop them on an interrupt)

    def isolated(task):
        with pool(1) as own:
            active.add(own)
            try:
                return own.submit(run_case, task).result()
            finally:
                active.discard(own)

    while retry:
        again = []
        with ThreadPoolExecutor(max_workers=min(workers, len(retry))) as runner:
            futures = {runner.submit(isolated, t): t for t in retry}
            try:
                for fut in as_completed(futures):
                    t = futures[fut]
                    attempts[t.case.subject] += 1
                    try:
                        report(fut.result())
                    except BrokenProcessPool:
                        if attempts[t.case.subject] >= MAX_ATTEMPTS:
                            report(_lost_record(t, f"{MAX_ATTEMPTS} attempts"))
                        else:
                            again.append(t)
            except BaseException:
                runner.shutdown(wait=False, cancel_futures=True)
                for own in list(active):
                    _stop(own)
                raise
        retry = again


def _dask_client(scheduler):
    """(client, owned) from an address, a cluster object or a Client."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError("a Dask scheduler was given but dask.distributed is not installed: "
                         "pip install 'dask[distributed]' (or run without --scheduler).") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    if isinstance(scheduler, str):
        try:
            return Client(scheduler, timeout=DASK_CONNECT_TIMEOUT), True
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler {scheduler} ({exc}): check the address "
                             "(tcp://HOST:PORT) and that the scheduler is running.") from None
    if hasattr(scheduler, "scheduler_address"):
        return Client(scheduler), True
    raise InputError(f"scheduler {scheduler!r} is neither a Dask address (tcp://HOST:PORT), a Dask cluster nor a "
                     "Client.")


@contextlib.contextmanager
def _dask_session(scheduler, workers, cases):
    """A Dask client for ``scheduler`` ("local": a LocalCluster of ``workers`` one-thread worker
    processes, default :func:`default_workers`), closed afterwards if made here."""
    if scheduler == "local":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise InputError("--scheduler local needs dask.distributed: pip install 'dask[distributed]' (or run "
                             "without --scheduler for local worker processes).") from None
        with LocalCluster(n_workers=workers or default_workers(cases), threads_per_worker=1,
                          processes=True) as cluster, Client(cluster) as client:
            yield client
        return
    client, owned = _dask_client(scheduler)
    try:
        yield client
    finally:
        if owned:
            client.close()


def _run_dask(tasks, client, report):
    """The same run_case on a Dask cluster. Dask reruns a task whose worker died (up to its
    ``distributed.scheduler.allowed-failures``); after that the case is recorded as failed."""
    from distributed import as_completed

    futures = {client.submit(run_case, t, key=f"motorband-{t.case.subject}-{os.getpid()}-{time.time_ns()}",
                             pure=False): t for t in tasks}
    try:
        for fut in as_completed(list(futures)):
            t = futures[fut]
            try:
                report(fut.result())
            except (KeyboardInterrupt, CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - KilledWorker and the like: the case is lost
                report(_lost_record(t, f"{type(exc).__name__}: {exc}"))
    except BaseException:
        client.cancel(list(futures))  # the cases not finished leave no record and run next time
        raise


# --------------------------------------------------------------------------------------------
# The cohort
# --------------------------------------------------------------------------------------------
@dataclass
class Summary:
    """What a cohort run did: counts, the records of every case, where the table and report are."""

    records: list
    ran: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    table: Path | None = None
    report: Path | None = None
    comparisons: list = dataclasses.field(default_factory=list)


def run(cases, out_dir, params: Parameters | None = None, *, workers: int | None = None, scheduler=None,
        retry_failed: bool = False, with_scene: bool = True, progress=None, threads_per_worker: int | None = None,
        group_column: str = "group") -> Summary:
    """Run every case (or skip it, see the module docstring) and write ``cohort.tsv`` and
    ``cohort.html`` into ``out_dir``.

    Parameters
    ----------
    cases : list of Case, or a path
        Cases (:func:`read_manifest`, :func:`find_bids`); a path is read as a manifest (a file)
        or a BIDS folder.
    out_dir : path
        The cohort folder: ``OUT/<subject>/`` per case, ``OUT/.cohort/`` records, the table and
        report. One cohort run at a time writes it (a second is refused).
    params : Parameters
        The same for every case (default: ``Parameters()``).
    workers : int
        Local worker processes (default :func:`default_workers`); 0 runs in this process.
        With a Dask ``scheduler`` it is the number of workers of a cluster made here only
        when ``scheduler == "local"`` (a LocalCluster).
    scheduler : None, "local", "tcp://HOST:PORT", a Dask cluster or Client
        None: local worker processes.
    retry_failed : bool
        Rerun recorded failures whose inputs and parameters are unchanged (skipped otherwise).
    with_scene : bool
        Write each case's scene.mrb (part of the parameters' hash).
    progress : callable(done, total, record)
        Called after every case (ran or skipped), in this process.
    threads_per_worker : int
        Compute threads of each worker (default: the cores shared among the local workers, at
        least 1; 1 on Dask workers, whose number is the cluster's business; left alone with
        ``workers=0``).
    group_column : str
        The manifest column holding the group for the group comparison.
    """
    from . import cohort_report, outputs

    params = params or Parameters()
    params.resolved()  # refuse bad parameters before any work
    if isinstance(cases, (str, os.PathLike)):
        cases = find_bids(cases) if Path(cases).is_dir() else read_manifest(cases)
    cases = list(cases)
    if not cases:
        raise InputError("no cases to run: the manifest or BIDS folder lists none.")
    names = [c.subject for c in cases]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"subjects {', '.join(dup[:5])} appear more than once: give each case its own subject id.")
    out = outputs.check_output_dir(out_dir, flag="--out")
    local = scheduler is None
    if local and workers is None:
        workers = default_workers(cases)
    if workers is not None and workers < 0:
        raise InputError(f"workers={workers}: give 0 (run here), or a positive number of worker processes.")
    if threads_per_worker is None and not (local and workers == 0):
        # In this process (workers=0) the caller's thread settings are left as they are.
        threads_per_worker = max(1, _cpus() // max(1, workers or 1)) if local else 1
    if params.labels is None:
        need = [c.subject for c in cases if c.files.get("parcellation")]
        if need:
            raise InputError(f"{len(need)} case(s) ({', '.join(need[:5])}) give a parcellation but no label preset was "
                             "given: add --labels freesurfer|synthseg|TABLE (Parameters.labels) to say what its "
                             "numbers mean.")
    say = progress or (lambda done, total, rec: None)
    records: dict = {}
    summary = Summary(records=[])
    t0 = time.perf_counter()

    def report(rec):
        records[rec["subject"]] = rec
        summary.ran += rec.get("action") == "ran"
        summary.skipped += rec.get("action") == "skipped"
        say(len(records), len(cases), rec)

    with contextlib.ExitStack() as stack:
        # A Dask scheduler is reached first: if it cannot be, nothing has been written.
        client = stack.enter_context(_dask_session(scheduler, workers, cases)) if scheduler is not None else None
        stack.enter_context(outputs.output_lock(out, flag="--out"))
        out.mkdir(parents=True, exist_ok=True)
        tasks = [Task(c, str(out), params, with_scene, retry_failed, threads_per_worker) for c in cases]
        if client is not None:
            _run_dask(tasks, client, report)
        elif workers == 0:
            _run_serial(tasks, report)
        else:
            _run_local(tasks, workers, report)
        summary.records = [records[c.subject] for c in cases if c.subject in records]
        summary.done = sum(r["status"] == "done" for r in summary.records)
        summary.failed = sum(r["status"] != "done" for r in summary.records)
        table = cohort_report.build_table(cases, summary.records, out)
        summary.table = cohort_report.write_tsv(table, out / "cohort.tsv")
        summary.comparisons = cohort_report.group_comparisons(table, group_column)
        summary.report = cohort_report.write_html(table, summary.comparisons, out / "cohort.html",
                                                  group_column=group_column,
                                                  wall_time_s=time.perf_counter() - t0,
                                                  thumbnails=lambda subject: thumbnail_path(out, subject))
    return summary
