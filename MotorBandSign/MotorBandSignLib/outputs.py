"""Write a Result into an output directory, and read it back for re-measuring.

The directory is written completely or not at all: everything goes to a hidden sibling
directory first; only when every file is there are the files moved in, ``metrics.json``
last (its presence marks a complete result), with SIGINT/SIGTERM held back while they move.
Stale results are removed first, so a failed run never leaves a directory that looks complete.

The output location is checked before any work (:func:`check_output_dir`): it must be a
folder that can be written, that holds none of the inputs, and that holds no file with an
output's name unless it is an earlier MotorBandSign result; a file the run did not create is
never written over or deleted. One run at a time writes a folder (:func:`output_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np

from . import io
from .errors import InputError
from .volume import Volume

#: Files of a complete output directory (metrics.json is written last).
OUTPUT_FILES = ("swi.nii.gz", "mip.nii.gz", "phase_hp.nii.gz", "magnitude.nii.gz", "ribbon.nii.gz",
                "regions.nii.gz", "ribbon.seg.nrrd", "heatmap.nii.gz", "heatmap_magnitude.nii.gz",
                "state.npz", "report.html", "scene.mrb", "metrics.json")
#: Folders of a result: ``dicom`` holds the DICOM SEG / Parametric Map / SR (``--dicom-out``).
OUTPUT_DIRS = ("dicom",)


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


def _is_result_dir(d: Path) -> bool:
    """True if ``d`` holds a metrics.json written by MotorBandSign."""
    try:
        m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and "motorbandsign" in (m.get("versions") or {})


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(out_dir, inputs=(), *, flag: str = "--out", inputs_inside_ok: bool = False) -> Path:
    """Refuse an output location that cannot or must not be written, before any work is done.

    Refused (:class:`InputError`, naming the path and the fix): an empty name; an existing
    file; a path under a file; a folder that cannot be written (nor its parent, where the
    hidden temporary folder goes); the folder that holds an input, or a folder inside an
    input folder (DICOM), or the input itself; a folder holding files with an output's name
    (OUTPUT_FILES) that is not an earlier MotorBandSign result. ``inputs`` are paths (None
    skipped); ``inputs_inside_ok`` lets an input sit inside the folder (``measure`` reads an
    edited ribbon saved beside the result: it writes only OUTPUT_FILES, never that file).
    Returns the absolute output path.
    """
    if out_dir is None or not str(out_dir).strip():
        raise InputError(f"{flag} is empty: give the folder for the results, e.g. {flag} out/sub-01.")
    given = Path(out_dir).expanduser()
    out = Path(os.path.abspath(given))
    real = Path(os.path.realpath(out))
    for q in inputs:
        if q is None or not str(q).strip():
            continue
        rq = Path(os.path.realpath(Path(q).expanduser()))
        if rq == real:
            raise InputError(f"{flag} {given} is the input {q} itself: give a separate output folder, "
                             f"e.g. {flag} {given.parent / 'motorband-out'}.")
        if real in rq.parents and not inputs_inside_ok:
            raise InputError(f"{flag} {given} holds the input {q}: the results would be written among your "
                             f"files (and could replace them). Give a separate output folder, e.g. {flag} "
                             f"{given / 'motorband'}.")
        if rq in real.parents and rq.is_dir():
            raise InputError(f"{flag} {given} is inside the input folder {q}: give an output folder outside it.")
    if real.exists() and not real.is_dir():
        raise InputError(f"{flag} {given} is an existing file, not a folder: give a new or empty folder "
                         f"(the results are several files), e.g. {flag} {given}-motorband.")
    base = _nearest_existing(real)
    if not base.is_dir():
        raise InputError(f"{flag} {given} lies under {base}, which is a file, not a folder: "
                         "give a folder path whose parents are folders.")
    for d in {base, _nearest_existing(real.parent)}:
        if not os.access(d, os.W_OK | os.X_OK):
            raise InputError(f"{flag} {given}: no permission to write in {d}. "
                             "Choose a folder you can write to (or change its permissions).")
    if real.is_dir():
        clash = sorted(set(os.listdir(real)) & set(OUTPUT_FILES + OUTPUT_DIRS))
        if clash and not _is_result_dir(real):
            raise InputError(
                f"{flag} {given} already holds {', '.join(clash)}, not written by MotorBandSign (no metrics.json "
                "of an earlier run): choose a new or empty folder, or move those files away.")
    return out


#: Output folders locked by this process (absolute path -> open lock file), so that nested
#: callers (the CLI, then write_outputs) share one lock.
_HELD_LOCKS: dict = {}


@contextlib.contextmanager
def output_lock(out_dir, *, flag: str = "--out"):
    """Hold an exclusive lock on the output folder ``out_dir`` for one run.

    The lock is a hidden file ``.NAME.lock`` beside the folder, locked with ``flock`` (so a
    killed run never leaves a lock behind: the kernel releases it) and removed on release. A
    second run into the same folder gets :class:`InputError` at once. While holding the lock,
    hidden temporary folders ``.NAME.partial-*`` left by killed runs are removed (no other
    run can be writing them). Parent folders created for the lock are removed again if the
    run writes nothing. Re-entrant within a process. Without ``fcntl`` (Windows) only the
    stale-folder cleanup is done.
    """
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    key = str(out)
    if key in _HELD_LOCKS:
        yield out
        return
    created = []
    d = out.parent
    while not d.exists():
        created.append(d)
        d = d.parent
    lock_path = out.parent / f".{out.name}.lock"
    fh = None
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            open(lock_path, "a").close()
        except OSError as exc:
            raise InputError(f"{flag} {out_dir}: cannot write in {out.parent} ({exc.strerror}). "
                             "Choose a folder you can write to.") from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        if fcntl is not None:
            while True:
                fh = open(lock_path, "a+")
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    fh.close()
                    fh = None
                    if exc.errno in (errno.EAGAIN, errno.EACCES):
                        raise InputError(
                            f"{flag} {out_dir}: another MotorBandSign run is writing this folder (lock {lock_path}). "
                            "Wait for it to finish, or give another output folder.") from None
                    raise
                # The holder before us may have removed the file after we opened it: lock the one on disk.
                try:
                    same = os.path.samestat(os.fstat(fh.fileno()), os.stat(lock_path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                fh.close()
                fh = None
        _HELD_LOCKS[key] = fh
        for stale in out.parent.glob(f".{out.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield out
    finally:
        _HELD_LOCKS.pop(key, None)
        if fh is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
            fh.close()
        if not out.exists():
            for c in created:
                with contextlib.suppress(OSError):
                    c.rmdir()


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT/SIGTERM back while the body runs; the first one that came is then handled
    as it would have been (its handler called, or the default action taken).

    Done by swapping the Python handlers, which run in the main thread whatever thread the
    signal lands on (blocking with pthread_sigmask would not: the process has other threads).
    Outside the main thread, where handlers cannot be set, nothing is held.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    # A handler installed outside Python (getsignal() is None) could not be put back: leave it.
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not None]
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])


def write_outputs(result, out_dir, *, with_scene: bool = True, progress=None, dicom_sources=None) -> Path:
    """Write every output of ``result`` into ``out_dir`` (see OUTPUT_FILES); returns the path.

    With ``dicom_sources`` (the source series' pydicom datasets or file paths), the folder
    ``dicom/`` gets the ribbon, heatmap and measurements as DICOM SEG, Parametric Map and SR
    (:mod:`MotorBandSignLib.dicom_out`), written with the rest, completely or not at all.

    The folder is checked first (:func:`check_output_dir`) and locked while written
    (:func:`output_lock`). An interrupt (SIGINT/SIGTERM turned into an exception) that comes
    while the files move in is delivered after they all have; the exception then carries
    ``outputs_written`` (the folder), so a front end can say the result was written.
    """
    from . import mrml, report

    say = progress or (lambda f, m: None)
    out = check_output_dir(out_dir)
    with output_lock(out):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=str(out.parent)))
        moving = moved = False
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
            # The scene's file cache (where the .mrb is packed) lives in the temporary folder,
            # so it goes with it on every exit path.
            scene = mrml.new_scene(cache_dir=str(tmp / ".mrml-cache"))
            nodes = mrml.result_to_nodes(result, scene)
            mrml.write_segmentation(nodes["segmentation"], tmp / "ribbon.seg.nrrd")
            if with_scene:
                mrml.write_mrb(scene, tmp / "scene.mrb")
            say(0.6, "Writing the report")
            report.write_report(result, tmp / "report.html")
            if dicom_sources is not None:
                from . import dicom_out

                say(0.8, "Writing DICOM SEG, Parametric Map and SR")
                dicom_out.write_dicom_results(result, dicom_sources, tmp / "dicom")
            (tmp / "metrics.json").write_text(metrics_json(result), encoding="utf-8")
            try:
                with _signals_held():
                    moving = True
                    _move_in(tmp, out)
                    moved = True
            except BaseException as exc:
                if moved:
                    exc.outputs_written = out
                raise
        except (OSError, RuntimeError) as exc:
            failure = _write_failure(exc, out, moving)
            if failure is exc:
                raise
            raise failure from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    say(1.0, "Outputs written")
    return out


#: Failures of the file system that are the user's to fix (a full disk, a read-only mount,
#: permissions), as errno codes and as the text ITK/VTK put in their RuntimeErrors.
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _write_failure(exc: BaseException, out: Path, moving: bool) -> BaseException:
    """InputError for a full disk or an unwritable folder met while writing; else ``exc``."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    after = (f"{out} is incomplete (no metrics.json): run again once fixed." if moving
             else "Nothing was written.")
    if code in _DISK_FULL or "No space left on device" in text or "Disk quota exceeded" in text:
        return InputError(f"no space left on {out.parent} while writing the results: free some space there or "
                          f"give an output folder on another disk. {after}")
    if code in _NOT_WRITABLE or "Read-only file system" in text or "Permission denied" in text:
        return InputError(f"cannot write in {out.parent} ({getattr(exc, 'strerror', None) or text.strip()[:80]}): "
                          f"give an output folder you can write to. {after}")
    return exc


def _move_in(tmp: Path, out: Path) -> None:
    """Move the files of a complete result from ``tmp`` into ``out``, metrics.json last.

    A stale metrics.json goes first, so a half-moved folder never looks complete. Only
    OUTPUT_FILES and OUTPUT_DIRS are replaced or removed (an earlier result's scene.mrb or
    dicom/ when this run writes none); any other file in ``out`` is left alone.
    """
    out.mkdir(parents=True, exist_ok=True)
    stale = out / "metrics.json"
    if stale.exists():
        stale.unlink()
    for name in OUTPUT_DIRS:
        src, dst = tmp / name, out / name
        if dst.is_dir():
            shutil.rmtree(dst)
        if src.exists():
            os.replace(src, dst)
    for name in OUTPUT_FILES:
        src, dst = tmp / name, out / name
        if name == "metrics.json":
            continue
        if src.exists():
            os.replace(src, dst)
        elif dst.exists():
            dst.unlink()
    os.replace(tmp / "metrics.json", out / "metrics.json")


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
    if result.measured is not None:
        arrays["measured"] = np.asarray(result.measured, bool)
    if result.diffuse_labels is not None:
        arrays["diffuse_labels"] = np.asarray(result.diffuse_labels, np.uint8)
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
    import zipfile
    import zlib

    try:
        with np.load(d / "state.npz") as z:
            st = {k: z[k] for k in z.files}
        side = json.loads(bytes(st["json"]).decode())
        pd = side["params"]
        params = Parameters(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in pd.items()})
        metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"the earlier result in {d} is damaged ({type(exc).__name__} reading state.npz / "
                         "metrics.json): run `motorband run ... --out DIR` again to rebuild it.") from None
    # A damaged image of the result is refused by the reader (truncated or corrupt, with its path).
    vols = {n: io.read_volume(d / f"{n}.nii.gz", what=f"earlier result's {n}") for n in
            ("swi", "mip", "phase_hp", "magnitude", "ribbon", "regions", "heatmap", "heatmap_magnitude")}
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
        depth=st.get("depth"), measured=st.get("measured"), diffuse_labels=st.get("diffuse_labels"))


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
        labels = mrml.labels_from_segmentation_file(p, reference, names_to_values)
        labels.name = str(path)  # messages name the file the user gave
        return labels
    from .pipeline import checked_ribbon_labels

    v = io.read_volume(p, what="ribbon label volume")
    reference.require_same_grid(v)
    return reference.with_array(checked_ribbon_labels(v.array, p.name), str(path))
