"""The ``motorband`` command (also ``python -m MotorBandSignLib``).

    motorband run --magnitude M --phase P --out DIR [options]   whole pipeline on one case
    motorband run --dicom EXPORT | --bids DS --subject L | --swi SWI --out DIR [options]
                                                                 the same from scanner data (dicom_in, bids_in)
    motorband measure --out DIR --ribbon EDITED.seg.nrrd         re-measure with a corrected ribbon
    motorband cohort --manifest CASES.csv | --bids DS | --dicom-root DIR --out OUT [--workers N]
                     [--scheduler ADDR] [--retry-failed]         every case of a cohort (see cohort.py)

The demo case is written by ``python Testing/phantoms/demo.py --out demo-case`` (the simulator is
test machinery, not part of this package); ``make demo`` writes it and runs ``motorband run`` on it.

Exit codes: 0 success (for ``cohort``: every case done; 1 when some case failed, each failure
recorded in cohort.tsv), 2 bad input (the message names the problem and the fix), 1 internal failure,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an interrupted run leaves no output and no
temporary files.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from .errors import CancelledError, InputError
from .params import PHASE_UNITS

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2
#: Shell conventions: 128 + the signal number (SIGINT 2, SIGTERM 15).
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class TerminalProgress:
    """Progress on stderr: one updating line on a terminal, one line per step otherwise."""

    #: The terminal stream whose progress line is still open (no newline yet), if any.
    open_line = None

    @classmethod
    def close_line(cls):
        """End an open progress line, so that a message printed next starts on its own line."""
        if cls.open_line is not None:
            cls.open_line.write("\n")
            cls.open_line.flush()
            cls.open_line = None

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last = None

    def __call__(self, fraction: float, message: str):
        line = f"[{100 * fraction:5.1f}% {time.perf_counter() - self.t0:6.1f}s] {message}"
        if self.tty:
            self.stream.write("\r" + line.ljust(78))
            TerminalProgress.open_line = self.stream
            if fraction >= 1.0:
                self.stream.write("\n")
                TerminalProgress.open_line = None
        elif message != self.last:
            self.stream.write(line + "\n")
        self.last = message
        self.stream.flush()


def _add_parameter_args(r) -> None:
    """The flags of Parameters (and --no-scene), shared by `run` and `cohort`."""
    # Defaults None: `run --dicom/--bids` can tell a stated value (it wins) from the headers' one.
    r.add_argument("--phase-units", choices=list(PHASE_UNITS),
                   help="how the phase is stored: auto (detect; default), radians, degrees, siemens (integers "
                        "0..4095 or -4096..4095), rescale (map the range found linearly to -pi..pi); with --dicom / "
                        "--bids the headers decide unless this is given")
    r.add_argument("--handedness", choices=["right", "left"],
                   help="phase sign convention: right (Siemens, Philips; default) or left (GE); with --dicom / "
                        "--bids the Manufacturer decides unless this is given")
    r.add_argument("--te", type=float, nargs="+", default=[], metavar="SECONDS", help="echo time(s) in seconds")
    r.add_argument("--labels", help="label preset for --parcellation: freesurfer, synthseg, or a label table file")
    r.add_argument("--highpass", choices=["homodyne", "unwrap"])
    r.add_argument("--mask-type", choices=["negative", "positive", "tanh"])
    r.add_argument("--mask-power", type=float)
    r.add_argument("--mip-slab-mm", type=float)
    r.add_argument("--localisation", default="sulcal", choices=["sulcal", "atlas"],
                   help="sulcal: the subject's own central sulcus (default); atlas: the registered atlas labels")
    r.add_argument("--bank-depth-mm", type=float)
    r.add_argument("--z-threshold", type=float, help="heatmap threshold (display and hypointense fraction)")
    r.add_argument("--band-ratio", type=float, metavar="RATIO",
                   help="bank/control median ratio at or below which a hemisphere is called banded")
    r.add_argument("--region-band-ratio", type=float, metavar="RATIO",
                   help="the same for one region (medial / intermediate / lateral)")
    r.add_argument("--no-scene", action="store_true", help="skip writing scene.mrb")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="motorband", description="Motor band sign on SWI: SWI, ribbon, heatmap, verdict.")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the whole pipeline on one case")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--magnitude", help="magnitude image (NIfTI/NRRD/DICOM folder of one series; 4D = echoes)")
    src.add_argument("--dicom", metavar="DIR", help="a DICOM export (any sub-folders, any number of series): the GRE "
                                                    "magnitude + phase (or real + imaginary) series are found")
    src.add_argument("--bids", metavar="DIR", help="a BIDS dataset: anat/*_part-mag_* with *_part-phase_* "
                                                   "(T2starw, MEGRE, swi; echo-N) of --subject")
    src.add_argument("--swi", metavar="FILE_OR_SERIES",
                     help="the scanner's own SWI only (file or DICOM folder): no phase processing (marked so)")
    r.add_argument("--series", action="append", default=[], metavar="UID",
                   help="with --dicom / --swi: use this series (SeriesInstanceUID); repeat for several")
    r.add_argument("--series-number", action="append", default=[], type=int, metavar="N",
                   help="with --dicom / --swi: use the series with this SeriesNumber; repeat for several")
    r.add_argument("--subject", help="with --bids: the subject label (01 or sub-01)")
    r.add_argument("--session", help="with --bids: the session label, when the subject has sessions")
    r.add_argument("--phase", help="phase image, same grid as the magnitude")
    r.add_argument("--real", help="real part (instead of --phase, with --imag)")
    r.add_argument("--imag", help="imaginary part (instead of --phase, with --real)")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--t1", help="optional T1-weighted image on any grid, registered instead of the magnitude")
    r.add_argument("--parcellation", help="FreeSurfer/SynthSeg label volume to use instead of the atlas")
    r.add_argument("--ribbon", help="a ribbon segmentation (.seg.nrrd or labels 1..4) to use as is")
    r.add_argument("--dicom-out", action="store_true",
                   help="also write OUT/dicom/: ribbon as DICOM SEG, heatmap as Parametric Map, measurements as SR "
                        "(TID 1500), referencing the DICOM series of the magnitude")
    r.add_argument("--bids-derivatives", metavar="DIR",
                   help="also file the images under BIDS derivative names in the dataset DIR (e.g. "
                        "bids/derivatives/motorbandsign); subject/session from --subject/--session or the input's name")
    _add_parameter_args(r)

    m = sub.add_parser("measure", help="re-measure an output directory with an edited ribbon")
    m.add_argument("--out", required=True, help="output directory of an earlier `motorband run`")
    m.add_argument("--ribbon", required=True, help="edited ribbon (.seg.nrrd or a label volume)")
    m.add_argument("--no-scene", action="store_true")

    c = sub.add_parser("cohort", help="run every case of a cohort (resumable, parallel) with a cohort table and report",
                       description="Run every case of a cohort: resumable (an unchanged case is skipped), in "
                                   "parallel, with OUT/cohort.tsv and OUT/cohort.html. Scanner data (--bids, "
                                   "--dicom-root, a manifest's dicom column) is read as `motorband run --bids / "
                                   "--dicom` reads it: echo times, field strength, manufacturer, phase units and "
                                   "handedness from the sidecars or headers unless --te / --phase-units / "
                                   "--handedness are given. A case the reader refuses is recorded as an input "
                                   "failure; the others go on.")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="CSV of cases: subject, magnitude, phase [, ribbon, t1, parcellation, "
                                        "any other columns such as age, sex, group]; or subject, dicom (a DICOM "
                                        "folder) [, series_number] instead of magnitude and phase")
    src.add_argument("--bids", metavar="DIR",
                     help="BIDS dataset: every sub-*[/ses-*]/anat with *_part-mag_* + *_part-phase_* (T2starw, MEGRE, "
                          "swi; echo-N) and JSON sidecars; participants.tsv columns go into cohort.tsv")
    src.add_argument("--dicom-root", metavar="DIR",
                     help="a folder with one DICOM export per subject: DIR/<subject>/ (any series, any sub-folders)")
    c.add_argument("--out", required=True, help="cohort folder: OUT/<subject>/, cohort.tsv, cohort.html")
    c.add_argument("--bids-derivatives", metavar="DIR",
                   help="also file each case's images under BIDS derivative names in the dataset DIR (e.g. "
                        "bids/derivatives/motorbandsign): sub-<label>[/ses-<label>] of a --bids case, else the "
                        "sub-/ses- labels in its subject id, else the id itself (letters and digits)")
    c.add_argument("--workers", type=int, help="local worker processes (default: cores, limited by memory; "
                                               "0 = one after the other in this process)")
    c.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT, or 'local' for a Dask LocalCluster")
    c.add_argument("--retry-failed", action="store_true",
                   help="rerun the cases recorded as failed (skipped when their inputs and parameters are unchanged)")
    c.add_argument("--group-column", default="group", help="manifest column compared between groups (default group)")
    _add_parameter_args(c)

    w = sub.add_parser("web", help="the module panel in a browser (needs motorbandsign[web]: trame-slicer)")
    w.add_argument("--port", type=int, default=8080, help="port to serve on (default 8080; 0 = any free port)")
    w.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only); another needs --allow-remote")
    w.add_argument("--allow-remote", action="store_true",
                   help="allow --host other than 127.0.0.1 (the app has no authentication: a warning is printed)")
    w.add_argument("--session-dir", help="folder for the report and saved outputs (default: a new temporary folder)")
    return ap


def cmd_web(a) -> int:
    if a.host != "127.0.0.1" and not a.allow_remote:
        raise InputError(f"--host {a.host} would let other machines reach the app, which has no authentication: "
                         "add --allow-remote if that is what you want, or leave --host out (127.0.0.1).")
    if not 0 <= a.port <= 65535:
        raise InputError(f"--port {a.port}: give a port between 1 and 65535 (or 0 for any free port).")
    try:
        from . import web
    except ImportError as exc:
        raise InputError(f"the web app needs trame-slicer ({exc.name or exc} is missing): "
                         "pip install 'motorbandsign[web]' (or make web).") from None
    return web.serve(host=a.host, port=a.port, session_dir=a.session_dir)


def _params_from_args(a):
    from .params import Parameters

    return Parameters(
        phase_units=a.phase_units or "auto", handedness=a.handedness or "right", echo_times=tuple(a.te), highpass=a.highpass,
        mask_type=a.mask_type, mask_power=a.mask_power, mip_slab_mm=a.mip_slab_mm,
        localisation=a.localisation, bank_depth_mm=a.bank_depth_mm, z_threshold=a.z_threshold, band_ratio=a.band_ratio,
        region_band_ratio=a.region_band_ratio, labels=a.labels)


def _pattern_scope(metrics: dict) -> str:
    """" (left bank only; right not measured)" when one hemisphere could not be measured."""
    sides = [s for s in ("left", "right") if metrics["hemispheres"][s].get("measured")]
    if len(sides) != 1:
        return ""
    other = "right" if sides[0] == "left" else "left"
    return f" ({sides[0]} bank only; {other} not measured)"


def _summary(result, out: Path) -> str:
    m = result.metrics
    detected = (m.get("qc") or {}).get("input_detected")
    lines = ([f"Input: {detected}"] if detected else []) + [f"Pattern: {m['pattern']}" + _pattern_scope(m)
             + ("  (control cortex diffusely dark: nonspecific)" if m.get("nonspecific_diffuse") else "")]
    for side in ("left", "right"):
        h = m["hemispheres"][side]
        if h.get("measured"):
            regs = ", ".join(h.get("band_regions") or []) or "-"
            lines.append(f"  {side:5s}: band {'present' if h['band_present'] else 'absent':7s}  bank/control "
                         f"{h['band_contrast']:.3f}  banded regions {regs}  z_median {h['z_median']:+.2f}  "
                         f"hypointense {100 * h['hypointense_fraction']:.0f}%")
        else:
            lines.append(f"  {side:5s}: not measured")
    for w in m.get("warnings", []):
        lines.append(f"  warning: {w}")
    lines.append(f"Report: {out / 'report.html'}")
    return "\n".join(lines)


def _scanner_inputs(a, params):
    """Inputs and settled Parameters from --dicom / --bids / --swi (the readers decide; flags win)."""
    from . import scanner

    kind = "bids" if a.bids else "swi" if a.swi else "dicom"
    source = scanner.Source(kind, a.bids or a.swi or a.dicom, subject=a.subject, session=a.session,
                            series_uids=tuple(a.series), series_numbers=tuple(a.series_number))
    return scanner.read_inputs(source, params, phase_units_given=a.phase_units, handedness_given=a.handedness,
                               t1=a.t1, parcellation=a.parcellation, ribbon=a.ribbon)


def _bids_labels(a) -> tuple:
    """(subject, session) for --bids-derivatives: the flags, else the sub-/ses- labels in the magnitude's path."""
    from .bids_out import check_root, label_from_path

    check_root(a.bids_derivatives)
    named = a.magnitude or a.dicom or a.swi
    sub = getattr(a, "subject", None) or label_from_path(named, "sub")
    ses = getattr(a, "session", None) or label_from_path(named, "ses")
    if not sub:
        raise InputError(f"--bids-derivatives needs a subject label: the input {named} has no sub-<label> "
                         "in its name. Give --subject LABEL with --bids, or a BIDS-named input (sub-01_..._part-mag_...).")
    return sub, ses


def cmd_run(a) -> int:
    from . import io, outputs, pipeline

    params = _params_from_args(a)
    params.validate()
    scanner = a.dicom or a.bids or a.swi
    outputs.check_output_dir(a.out, [a.magnitude, a.phase, a.real, a.imag, a.t1, a.parcellation, a.ribbon, scanner])
    if (a.series or a.series_number) and not (a.dicom or a.swi):
        raise InputError("--series / --series-number pick a DICOM series: use them with --dicom DIR or --swi DIR.")
    if (a.bids and not a.subject) or ((a.subject or a.session) and not (a.bids or a.bids_derivatives)):
        raise InputError("--bids DIR and --subject LABEL go together (--session S optional): e.g. --bids ds "
                         "--subject 01; --subject / --session also name the subject of --bids-derivatives.")
    if scanner and (a.phase or a.real or a.imag):
        raise InputError("--phase / --real / --imag go with --magnitude; --dicom, --bids and --swi find them.")
    if a.parcellation and not a.labels:
        raise InputError("--parcellation needs --labels freesurfer|synthseg|TABLE to say what its numbers mean.")
    if scanner:
        with outputs.output_lock(a.out):
            bids = _bids_labels(a) if a.bids_derivatives else None
            inputs, params = _scanner_inputs(a, params)
            dicom_sources = None
            if a.dicom_out:
                from .dicom_out import require_dicom_sources

                # the series the image was read from: magnitude, else real (GE real + imaginary), else the SWI
                files = next((v.meta.get("dicom_files") for v in (inputs.magnitude, inputs.real, inputs.swi)
                              if v is not None and v.meta.get("dicom_files")), None)
                dicom_sources = require_dicom_sources(files, f"--{'bids' if a.bids else ('swi' if a.swi else 'dicom')} "
                                                      f"{scanner}")
            result = _run_and_write(a, inputs, params, dicom_sources, bids)
        print(_summary(result, Path(a.out)))
        return EXIT_OK
    with outputs.output_lock(a.out):
        mag = io.read_volume(a.magnitude, what="magnitude image", allow_4d=True)
        if mag.array.ndim == 4 and mag.array.shape[0] == 1:
            mag = mag.with_array(mag.array[0])
        echoes = mag.array.shape[0] if mag.array.ndim == 4 else 1
        if echoes > 1 and len(a.te) != echoes:
            example = " ".join(f"{0.005 * (n + 1):.3f}" for n in range(echoes))
            raise InputError(f"--magnitude {a.magnitude} is 4D ({echoes} echoes) but --te gives {len(a.te)} echo "
                             f"time(s): give one per echo, in seconds, e.g. --te {example}.")
        if echoes == 1 and len(a.te) > 1:
            raise InputError(f"--te gives {len(a.te)} echo times but --magnitude {a.magnitude} holds one echo (3D): "
                             "give the multi-echo magnitude and phase as 4D files, or at most one --te.")
        multi = echoes > 1
        dicom_sources = None
        if a.dicom_out:
            from .dicom_out import require_dicom_sources

            dicom_sources = require_dicom_sources(mag.meta.get("dicom_files"), f"--magnitude {a.magnitude}")
        bids = _bids_labels(a) if a.bids_derivatives else None
        if a.phase and (a.real or a.imag):
            raise InputError("give either --phase or --real with --imag, not both.")
        if not a.phase and not (a.real and a.imag):
            raise InputError("no phase given: add --phase PHASE (or --real R --imag I).")
        inputs = pipeline.Inputs(magnitude=mag)
        if a.phase:
            inputs.phase = io.read_volume(a.phase, what="phase image", allow_4d=multi)
        else:
            inputs.real = io.read_volume(a.real, what="real image", allow_4d=multi)
            inputs.imag = io.read_volume(a.imag, what="imaginary image", allow_4d=multi)
        if a.t1:
            inputs.t1 = io.read_volume(a.t1, what="T1 image")
        if a.parcellation:
            inputs.parcellation = io.read_volume(a.parcellation, what="parcellation")
            if not a.labels:
                raise InputError("--parcellation needs --labels freesurfer|synthseg|TABLE to say what its numbers mean.")
        ref = mag if mag.array.ndim == 3 else mag.with_array(mag.array[0])
        if a.ribbon:
            inputs.ribbon = outputs.read_ribbon(a.ribbon, ref)
        result = _run_and_write(a, inputs, params, dicom_sources, bids)
    print(_summary(result, Path(a.out)))
    return EXIT_OK


def _run_and_write(a, inputs, params, dicom_sources, bids):
    """The pipeline with a terminal progress bar, then the outputs (and BIDS derivatives when asked)."""
    from . import outputs, pipeline

    progress = TerminalProgress()
    result = pipeline.run(inputs, params, progress=progress)
    outputs.write_outputs(result, a.out, with_scene=not a.no_scene, progress=progress, dicom_sources=dicom_sources)
    if bids:
        from .bids_out import write_derivatives

        write_derivatives(result, a.bids_derivatives, *bids)
    return result


def cmd_measure(a) -> int:
    from . import outputs, pipeline

    # The edited ribbon may sit in the output folder: measure writes only the result's own files.
    outputs.check_output_dir(a.out, [a.ribbon], inputs_inside_ok=True)
    with outputs.output_lock(a.out):
        prev = outputs.load_result(a.out)
        rib = outputs.read_ribbon(a.ribbon, prev.swi)
        result = pipeline.remeasure(prev, rib)
        outputs.write_outputs(result, a.out, with_scene=not a.no_scene)
    print(_summary(result, Path(a.out)))
    return EXIT_OK


def cmd_cohort(a) -> int:
    """Parse, call cohort.run, print where things are. Exit 0 if every case is done, 1 if some failed."""
    from . import cohort

    params = _params_from_args(a)
    params.validate()
    cases = (cohort.read_manifest(a.manifest) if a.manifest else cohort.find_bids(a.bids) if a.bids
             else cohort.find_dicom(a.dicom_root))
    bar = _CohortProgress(len(cases))
    try:
        s = cohort.run(cases, a.out, params, workers=a.workers, scheduler=a.scheduler, retry_failed=a.retry_failed,
                       with_scene=not a.no_scene, progress=bar, group_column=a.group_column,
                       phase_units_given=a.phase_units, handedness_given=a.handedness,
                       bids_derivatives=a.bids_derivatives)
    except KeyboardInterrupt as exc:
        # Finished cases are on disk with their records: say so, and how to go on.
        exc.outputs_written = f"{a.out} for the cases finished so far (run the same command again to continue)"
        raise
    finally:
        bar.close()
    print(f"{len(s.records)} cases: {s.ran} ran, {s.skipped} skipped (unchanged); {s.done} done, {s.failed} failed")
    for r in s.records:
        if r["status"] != "done":
            print(f"  {r['subject']} ({r.get('exit_class')}): {r.get('error')}")
    print(f"Table: {s.table}\nReport: {s.report}")
    return EXIT_OK if s.failed == 0 else EXIT_INTERNAL


class _CohortProgress:
    """A tqdm bar over the cases (with the rate and ETA), on stderr; nothing if tqdm is missing."""

    def __init__(self, total: int):
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
            return
        self.bar = tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, done: int, total: int, record: dict):
        if self.bar is not None:
            self.bar.set_postfix_str(f"{record['subject']} {record.get('action')} ({record['status']})")
            self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that clean-up (finally, atexit) runs."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    import signal
    import threading

    # Only the main thread may set handlers (cli.main may also be called from a worker thread), and
    # a handler installed outside Python (getsignal() is None) could not be put back afterwards.
    own_sigterm = (threading.current_thread() is threading.main_thread()
                   and signal.getsignal(signal.SIGTERM) is not None)
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if own_sigterm else None
    try:
        from .mrml import library_messages

        # VTK/MRML chatter is dropped; their warnings and errors go to stderr (before our message).
        with library_messages(sys.stderr):
            return {"run": cmd_run, "measure": cmd_measure, "cohort": cmd_cohort, "web": cmd_web}[a.command](a)
    except InputError as exc:
        TerminalProgress.close_line()
        print(f"motorband: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except CancelledError as exc:
        TerminalProgress.close_line()
        print(f"motorband: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt as exc:
        TerminalProgress.close_line()
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        written = getattr(exc, "outputs_written", None)
        print(f"motorband: {what}, " + (f"after the results were written to {written}" if written else
                                         "nothing written"), file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - the command line reports any other failure as internal
        TerminalProgress.close_line()
        traceback.print_exc()
        print("motorband: internal error (exit 1); please report it with the traceback above.", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if own_sigterm:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
