"""Cohorts: the pipeline over many subjects, resumable, in parallel, with a cohort table and report.

    from MotorBandSignLib import cohort
    from MotorBandSignLib.params import Parameters

    cases = cohort.read_manifest("cases.csv")    # or cohort.find_bids("bids/"), cohort.find_dicom("exports/")
    summary = cohort.run(cases, "out", Parameters())    # local worker processes
    summary = cohort.run(cases, "out", Parameters(), scheduler="tcp://10.0.0.5:8786")   # Dask

Scanner data. A case may be given as files (magnitude and phase, NIfTI/NRRD) or as scanner data
(:class:`MotorBandSignLib.scanner.Source`): a BIDS subject and session (:func:`find_bids`), a
DICOM folder (:func:`find_dicom`, or a manifest's ``dicom`` column). Those are read exactly as
``motorband run --bids / --dicom`` reads them (:func:`MotorBandSignLib.scanner.read_inputs`:
sidecars or headers give the echo times, field strength, manufacturer, phase units and
handedness; a value the user stated wins). A reader's refusal (two candidate acquisitions, no
GRE series...) is that case's input failure; the cohort goes on.

Each case runs :func:`MotorBandSignLib.pipeline.run` and writes its usual output folder
``OUT/<subject>/`` through :func:`MotorBandSignLib.outputs.write_outputs` (complete or absent,
never half-written). Nothing here computes a measurement.

Resuming. When a case ends, its worker writes a record ``OUT/.cohort/<subject>.json`` (atomically:
a temporary file, then ``os.replace``) holding the SHA-256 of every input file's content (for scanner data: every file that decides
what is read, the JSON sidecars included, :func:`MotorBandSignLib.scanner.input_files`), what
the headers said (``acquisition``: manufacturer, field strength, echo times...), the
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
import math
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import CancelledError, InputError
from .params import Parameters
from .scanner import Source

__all__ = ["Case", "read_manifest", "find_bids", "find_dicom", "bids_labels", "run", "run_case", "default_workers", "pin_threads",
           "case_memory_bytes", "STATE_DIR"]

#: Manifest columns every row needs (``dicom``, a DICOM folder, may replace magnitude and phase),
#: the optional input-file columns, and the DICOM series picked for a ``dicom`` row.
REQUIRED_COLUMNS = ("subject", "magnitude", "phase")
DICOM_COLUMN = "dicom"
SERIES_COLUMN = "series_number"
OPTIONAL_FILE_COLUMNS = ("ribbon", "t1", "parcellation")
FILE_COLUMNS = ("magnitude", "phase") + OPTIONAL_FILE_COLUMNS
#: What a record keeps of the reader's provenance (acquisition.Acquisition.provenance, settled).
ACQUISITION_KEYS = ("source", "manufacturer", "field_strength_t", "echo_times_s", "echo_times_from", "phase_units",
                    "phase_storage", "handedness")
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
    #: role ("magnitude", "phase", optional "ribbon", "t1", "parcellation") -> absolute path;
    #: with ``source``, only the optional roles.
    files: dict
    #: Other manifest / participants.tsv columns (age, sex, group...), carried into cohort.tsv.
    extra: dict = field(default_factory=dict)
    #: Where the case was declared (e.g. "cases.csv line 4"), for messages.
    origin: str = ""
    #: Scanner data (a BIDS subject, a DICOM folder) read instead of magnitude and phase files.
    source: Source | None = None


# --------------------------------------------------------------------------------------------
# Where cases come from
# --------------------------------------------------------------------------------------------
def read_manifest(path) -> list[Case]:
    """Cases from a CSV (or TSV) manifest: one row per subject.

    Columns: ``subject``, ``magnitude``, ``phase`` (required); ``ribbon``, ``t1``,
    ``parcellation`` (optional input files); any other column (age, sex, group...) is carried
    into ``cohort.tsv``. A ``dicom`` column (a DICOM folder, read as ``motorband run --dicom``
    reads it) may replace magnitude and phase: each row then gives either a dicom folder or
    magnitude and phase, and ``series_number`` (optional; numbers separated by spaces) picks
    the row's series when its folder holds more than one acquisition. Relative paths are
    relative to the manifest's folder. The delimiter is a tab for ``.tsv`` files and a comma
    otherwise.

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
    missing = [c for c in (REQUIRED_COLUMNS[:1] if DICOM_COLUMN in header else REQUIRED_COLUMNS) if c not in header]
    if missing:
        raise InputError(
            f"manifest {p} lacks the column(s) {', '.join(missing)} (it has: {', '.join(header) or 'nothing'}). "
            f"The first line must name the columns: {', '.join(REQUIRED_COLUMNS)} (required; or subject and "
            f"{DICOM_COLUMN}, a DICOM folder), {', '.join(OPTIONAL_FILE_COLUMNS)} (optional files), and any others "
            "(age, sex, group...).")
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
        files, source = {}, None

        def path(role, value):
            f = Path(value).expanduser()
            f = f if f.is_absolute() else base / f
            if not f.exists():
                problems.append(f"{where}: {role} {'folder' if role == DICOM_COLUMN else 'file'} not found: {f}")
            return os.path.abspath(f)

        dicom, series = row.get(DICOM_COLUMN, ""), row.get(SERIES_COLUMN, "")
        if dicom and (row.get("magnitude") or row.get("phase")):
            problems.append(f"{where}: give either a {DICOM_COLUMN} folder or magnitude and phase files, not both")
            continue
        if series and not dicom:
            problems.append(f"{where}: {SERIES_COLUMN} picks DICOM series: give it with a {DICOM_COLUMN} folder")
            continue
        if dicom:
            numbers = series.replace(";", " ").replace(",", " ").split()
            if not all(x.isdigit() for x in numbers):
                problems.append(f"{where}: {SERIES_COLUMN} {series!r} is not a list of series numbers (e.g. '5 6')")
                continue
            source = Source("dicom", path(DICOM_COLUMN, dicom), series_numbers=tuple(int(x) for x in numbers))
        for role in FILE_COLUMNS:
            value = row.get(role, "")
            if not value:
                if role in REQUIRED_COLUMNS and source is None:
                    problems.append(f"{where}: no {role} file given" + (f" (nor a {DICOM_COLUMN} folder)"
                                                                        if DICOM_COLUMN in header else ""))
                continue
            files[role] = path(role, value)
        extra = {k: v for k, v in row.items()
                 if k and k not in REQUIRED_COLUMNS + OPTIONAL_FILE_COLUMNS + (DICOM_COLUMN, SERIES_COLUMN)}
        cases.append(Case(subject, files, extra, f"{p.name} {where}", source))
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InputError(f"manifest {p} has {len(problems)} problem(s): {shown}. Fix these rows (or remove them) "
                         "and run again.")
    if not cases:
        raise InputError(f"manifest {p} lists no cases: add one row per subject under the header line.")
    return cases


def find_bids(root) -> list[Case]:
    """Cases from a BIDS dataset: one per subject (``sub-X``), or per subject and session
    (``sub-X_ses-Y``), whose ``anat`` folder holds GRE part files (``*_part-mag_*`` /
    ``*_part-phase_*`` or real / imaginary; T2starw, MEGRE, swi; ``echo-N``).

    Each case is read in its worker by :func:`MotorBandSignLib.bids_in.read_bids`, as
    ``motorband run --bids ROOT --subject X [--session Y]`` reads it (JSON sidecars: echo
    times, field strength, manufacturer, phase units). A subject whose files the reader
    refuses (a magnitude without its phase, two acquisitions) is that case's input failure.
    ``participants.tsv`` columns (age, sex, group...) are carried into ``cohort.tsv``.
    """
    from . import bids_in

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
    cases = []
    for sub, ses in bids_in.subjects(r):
        subject = f"sub-{sub}_ses-{ses}" if ses else f"sub-{sub}"
        cases.append(Case(subject, {}, dict(participants.get(f"sub-{sub}", {})), f"{r.name}/{subject}",
                          Source("bids", os.path.abspath(r), subject=sub, session=ses)))
    if not cases:
        raise InputError(f"BIDS folder {r} holds no sub-*/[ses-*/]anat/*_part-mag_* (or part-phase, part-real, "
                         f"part-imag) files with suffix {', '.join(bids_in.SUFFIXES)}: give a manifest (--manifest) "
                         "instead.")
    return cases


def find_dicom(root) -> list[Case]:
    """Cases from a folder of DICOM exports: one sub-folder per subject, named by its subject id.

    Each sub-folder (any depth inside, any number of series) is read in its worker by
    :func:`MotorBandSignLib.dicom_in.read_dicom_folder`, as ``motorband run --dicom`` reads it; a
    folder with two candidate acquisitions or no GRE series is that case's input failure with the
    reader's message (a manifest with ``dicom`` and ``series_number`` columns then picks the
    series). Hidden folders and files beside the sub-folders are ignored.
    """
    r = Path(root).expanduser()
    if not r.is_dir():
        raise InputError(f"--dicom-root {r} is not a folder: give the folder holding one DICOM folder per subject.")
    folders = sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))
    bad = [d.name for d in folders if not SUBJECT_RE.match(d.name)]
    if bad:
        raise InputError(f"--dicom-root {r}: the folder name(s) {', '.join(repr(b) for b in bad[:10])} cannot be "
                         "subject ids (used as output folder names): rename them with letters, digits, '-', '_' or "
                         "'.' only, or list the cases in a manifest (--manifest, with a dicom column).")
    if not folders:
        raise InputError(f"--dicom-root {r} holds no sub-folders: give the folder holding one DICOM folder per "
                         "subject (its name is the subject id).")
    return [Case(d.name, {}, {}, f"{r.name}/{d.name}", Source("dicom", os.path.abspath(d))) for d in folders]


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
    echoes; for a BIDS case its part-mag or part-real files), at least CASE_MIN_BYTES; the
    reference 1 mm grid when no header can be read (and for DICOM folders, whose headers are
    read by the worker only)."""
    voxels = REFERENCE_VOXELS
    if case is not None:
        with contextlib.suppress(Exception):
            import nibabel as nib

            if case.source is not None and case.source.kind == "bids":
                from .scanner import input_files

                images = [f for f in input_files(case.source) if f.name.endswith((".nii", ".nii.gz"))]
                mags = [f for f in images if "_part-mag_" in f.name] or [f for f in images if "_part-real_" in f.name]
            else:
                mags = [case.files["magnitude"]]
            shapes = [nib.load(f).shape for f in mags]
            if shapes:
                voxels = sum(math.prod(int(n) for n in s) for s in shapes)
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


def params_sha256(params: Parameters, with_scene: bool, stated: dict | None = None,
                  bids_derivatives: str | None = None) -> str:
    """SHA-256 of the resolved parameters (defaults filled in), of what is written (the scene,
    a BIDS derivatives dataset) and of the values stated over the scanner headers (``stated``:
    phase_units / handedness given)."""
    settings = {"parameters": params.resolved().to_dict(), "with_scene": bool(with_scene)}
    if stated:
        settings["stated_over_headers"] = {k: v for k, v in stated.items() if v is not None}
    if bids_derivatives:
        settings["bids_derivatives"] = os.path.abspath(bids_derivatives)
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
    #: What the user stated over the scanner headers: {"phase_units": ..., "handedness": ...}
    #: (None: the headers decide; see acquisition.settle_parameters).
    stated: dict = field(default_factory=dict)
    #: Root of a BIDS derivatives dataset each case is also filed under (None: not written).
    bids_derivatives: str | None = None

    def params_sha256(self) -> str:
        """The parameters' hash; for scanner data, what was stated over the headers too."""
        return params_sha256(self.params, self.with_scene, self.stated if self.case.source is not None else None,
                             self.bids_derivatives)

    def derivatives_complete(self, rec: dict) -> bool:
        """True without a derivatives dataset, else if every file the record lists is there."""
        if not self.bids_derivatives:
            return True
        files = rec.get("bids_derivatives") or []
        return bool(files) and all((Path(self.bids_derivatives) / f).is_file() for f in files)


def bids_labels(case: Case) -> tuple[str, str | None]:
    """(subject, session) BIDS labels under which ``case`` is filed in a derivatives dataset: a
    BIDS case's own; else the ``sub-`` / ``ses-`` labels in its subject id (``sub-01_ses-1``);
    else the subject id itself when it is a BIDS label (letters and digits: ``p01``).

    Raises :class:`InputError` for an id that is none of these (e.g. ``case_1``).
    """
    if case.source is not None and case.source.kind == "bids":
        sub = case.source.subject
        return (sub[4:] if sub.startswith("sub-") else sub), case.source.session
    from .bids_out import label_from_path

    sub = label_from_path(case.subject, "sub")
    if sub:
        return sub, label_from_path(case.subject, "ses")
    if re.match(r"^[A-Za-z0-9]+$", case.subject):
        return case.subject, None
    raise InputError(f"subject {case.subject} ({case.origin}) cannot be filed in the BIDS derivatives dataset: its id "
                     "is not a BIDS label (letters and digits only) and holds no sub-<label>. Name it sub-<label> "
                     "(e.g. in the manifest's subject column), or leave out --bids-derivatives.")


def _input_paths(case: Case) -> dict:
    """Key -> path of everything the case reads: its files by role, and for scanner data every
    file deciding what is read (keys relative to the dataset / DICOM folder, so that a moved
    copy of the data hashes the same)."""
    paths = dict(case.files)
    if case.source is not None:
        from .scanner import input_files

        root = Path(case.source.path)
        for f in input_files(case.source):
            paths[case.source.kind if Path(f) == root else os.path.relpath(f, root)] = str(f)
    return paths


def _read_inputs(case: Case, params: Parameters, stated: dict | None = None):
    """The case's files as pipeline Inputs (messages name the subject and the role), and the
    parameters to run them with (for scanner data, settled from the headers)."""
    from . import io, outputs, pipeline

    f = case.files
    if case.source is not None:
        from . import scanner

        stated = stated or {}
        return scanner.read_inputs(case.source, params, phase_units_given=stated.get("phase_units"),
                                   handedness_given=stated.get("handedness"), t1=f.get("t1"),
                                   parcellation=f.get("parcellation"), ribbon=f.get("ribbon"),
                                   what=f"of {case.subject}")
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
    return inputs, params


def _reader_message(case: Case, exc: InputError) -> str:
    """The reader's message; for a DICOM folder that asks for --series, how a cohort picks one."""
    msg = str(exc)
    if case.source is not None and case.source.kind == "dicom" and "--series" in msg:
        msg += (f" In a cohort: list {case.subject} in a manifest (--manifest) with its folder in a {DICOM_COLUMN} "
                f"column and the series in a {SERIES_COLUMN} column (e.g. '5 6').")
    return msg


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
           "inputs_sha256": {}, "params_sha256": task.params_sha256(),
           "version": __version__, "runtime_s": None, "output": case.subject}
    try:
        paths = _input_paths(case)
        rec["inputs_sha256"] = {key: file_sha256(p) for key, p in sorted(paths.items())}
    except (OSError, InputError) as exc:
        rec.update(exit_class="input", error=f"cannot read the {case.subject} inputs: {str(exc).rstrip('.')}. Check the files "
                                             f"({case.origin}).", runtime_s=0.0)
        _write_record(out, rec)
        return dict(rec, action="ran")
    prev = read_record(out, case.subject)
    if (prev and prev.get("inputs_sha256") == rec["inputs_sha256"]
            and prev.get("params_sha256") == rec["params_sha256"]):
        if (prev.get("status") == "done" and outputs_complete(case_dir, task.with_scene)
                and task.derivatives_complete(prev)):
            return dict(prev, action="skipped")
        if prev.get("status") == "failed" and not task.retry_failed:
            return dict(prev, action="skipped")
    try:
        from . import outputs, pipeline

        outputs.check_output_dir(case_dir, list(paths.values()))
        inputs, params = _read_inputs(case, task.params, task.stated)
        if inputs.provenance:
            rec["acquisition"] = {k: inputs.provenance.get(k) for k in ACQUISITION_KEYS}
        result = pipeline.run(inputs, params)
        outputs.write_outputs(result, case_dir, with_scene=task.with_scene)
        if task.bids_derivatives:
            from .bids_out import write_derivatives

            written = write_derivatives(result, task.bids_derivatives, *bids_labels(case))
            rec["bids_derivatives"] = sorted(os.path.relpath(f, task.bids_derivatives) for f in written)
        rec.update(status="done", exit_class=None, error=None)
        _write_thumbnail(out, case.subject, result)
    except (KeyboardInterrupt, CancelledError):
        raise
    except InputError as exc:
        rec.update(exit_class="input", error=_reader_message(case, exc))
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
           "inputs_sha256": {}, "params_sha256": task.params_sha256(),
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
        group_column: str = "group", phase_units_given: str | None = None,
        handedness_given: str | None = None, bids_derivatives=None) -> Summary:
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
    phase_units_given, handedness_given : str or None
        For cases of scanner data: the phase units / handedness the user stated over the
        headers (None: the headers decide, as with ``motorband run --bids / --dicom``; see
        :func:`MotorBandSignLib.acquisition.settle_parameters`). Files cases use ``params``.
    bids_derivatives : path, optional
        Also file each case's images in this BIDS derivatives dataset (e.g.
        ``bids/derivatives/motorbandsign``; :func:`MotorBandSignLib.bids_out.write_derivatives`)
        under its labels (:func:`bids_labels`). A finished case whose derivative files are
        missing runs again.
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
    if bids_derivatives is not None:
        d = Path(os.path.realpath(Path(bids_derivatives).expanduser()))
        o = Path(os.path.realpath(out))
        if d == o or o in d.parents or d in o.parents:
            raise InputError(f"--bids-derivatives {bids_derivatives} and --out {out_dir} overlap: the case folders "
                             "(OUT/<subject>/) and the derivatives (sub-<label>/) would mix. Give separate folders, "
                             "e.g. --out cohort-out --bids-derivatives bids/derivatives/motorbandsign.")
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
    if bids_derivatives is not None:
        from .bids_out import check_root

        check_root(bids_derivatives)
        labels = {}
        for c in cases:
            labels.setdefault(bids_labels(c), []).append(c.subject)
        clash = [f"{', '.join(v)} (sub-{k[0]}{f' ses-{k[1]}' if k[1] else ''})" for k, v in labels.items() if len(v) > 1]
        if clash:
            raise InputError(f"--bids-derivatives: subjects {'; '.join(clash[:5])} would be filed under the same BIDS "
                             "labels: give them distinct sub-<label> ids.")
        bids_derivatives = os.path.abspath(Path(bids_derivatives).expanduser())
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
        stated = {"phase_units": phase_units_given, "handedness": handedness_given}
        stated = {k: v for k, v in stated.items() if v is not None}
        tasks = [Task(c, str(out), params, with_scene, retry_failed, threads_per_worker, stated, bids_derivatives)
                 for c in cases]
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
