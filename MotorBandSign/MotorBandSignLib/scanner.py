"""Scanner data to a run's inputs: the one step `motorband run --dicom / --bids / --swi` and the
cohort runner share.

    from MotorBandSignLib import scanner
    src = scanner.Source("bids", "ds", subject="01")
    inputs, params = scanner.read_inputs(src, Parameters())   # then pipeline.run(inputs, params)

A :class:`Source` names where one case's scanner data is (a DICOM folder, a BIDS subject and
session, or a vendor SWI); :func:`read_inputs` reads it with :mod:`MotorBandSignLib.dicom_in`
or :mod:`MotorBandSignLib.bids_in`, settles the phase units, handedness and echo times with
:func:`MotorBandSignLib.acquisition.settle_parameters` (a value the user stated wins) and adds
the optional T1, parcellation and ribbon. :func:`input_files` lists the files whose content
decides what is read (the cohort's resumable records hash them). Nothing is computed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .params import Parameters

__all__ = ["Source", "KINDS", "read_acquisition", "read_inputs", "input_files"]

#: Kinds of scanner data, with the `motorband run` flag that names each.
KINDS = {"dicom": "--dicom", "bids": "--bids", "swi": "--swi"}


@dataclass(frozen=True)
class Source:
    """Where one case's scanner data is.

    Parameters
    ----------
    kind : str
        "dicom" (a folder of any number of series), "bids" (a dataset root) or "swi" (the
        scanner's SWI only: a file or a DICOM folder).
    path : str
        The folder (or SWI file).
    subject, session : str, optional
        The BIDS subject label ("01" or "sub-01") and session label (kind "bids").
    series_uids, series_numbers : tuple
        DICOM series picked by the user (kinds "dicom" and "swi").
    """

    kind: str
    path: str
    subject: str | None = None
    session: str | None = None
    series_uids: tuple = ()
    series_numbers: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Source kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.kind == "bids" and not self.subject:
            raise InputError(f"--bids {self.path}: give the subject label (--subject 01).")


def read_acquisition(source: Source):
    """The :class:`~MotorBandSignLib.acquisition.Acquisition` of ``source`` (files not modified).

    Raises :class:`InputError` with the reader's message (no GRE series, two candidate
    acquisitions, no such subject...).
    """
    if source.kind == "bids":
        from . import bids_in

        return bids_in.read_bids(source.path, source.subject, source.session)
    from . import dicom_in

    read = dicom_in.read_vendor_swi if source.kind == "swi" else dicom_in.read_dicom_folder
    return read(source.path, series_uids=list(source.series_uids), series_numbers=list(source.series_numbers))


def read_inputs(source: Source, params: Parameters, *, phase_units_given: str | None = None,
                handedness_given: str | None = None, t1=None, parcellation=None, ribbon=None, what: str = ""):
    """Pipeline inputs and settled parameters of one case's scanner data.

    Parameters
    ----------
    source : Source
    params : Parameters
        The user's parameters; ``echo_times`` non-empty means they were stated.
    phase_units_given, handedness_given : str or None
        What the user stated (None: the headers decide); see
        :func:`MotorBandSignLib.acquisition.settle_parameters`.
    t1, parcellation, ribbon : path, optional
        Optional files read beside the scanner data (the ribbon on the magnitude's grid).
    what : str
        Names the case in messages (e.g. "of sub-01"); empty for a single run.

    Returns
    -------
    (pipeline.Inputs, Parameters)
        The inputs, with the reader's provenance (metrics ``qc.input``), and a copy of
        ``params`` with phase units, handedness and echo times settled.
    """
    from . import acquisition, io, outputs, pipeline

    acq = read_acquisition(source)
    params = acquisition.settle_parameters(acq, params, phase_units_given=phase_units_given,
                                           handedness_given=handedness_given)
    inputs = pipeline.Inputs(magnitude=acq.magnitude, phase=acq.phase, real=acq.real, imag=acq.imag, swi=acq.swi,
                             provenance=acq.provenance)
    of = f" {what}" if what else ""
    if t1:
        inputs.t1 = io.read_volume(t1, what=f"T1 image{of}")
    if parcellation:
        inputs.parcellation = io.read_volume(parcellation, what=f"parcellation{of}")
    if ribbon:
        ref = acq.magnitude if acq.magnitude is not None else acq.swi
        ref = ref if ref.array.ndim == 3 else ref.with_array(ref.array[0])
        inputs.ribbon = outputs.read_ribbon(ribbon, ref)
    return inputs, params


def input_files(source: Source) -> list[Path]:
    """The files and folders whose content decides what :func:`read_inputs` reads from
    ``source``: for BIDS the images used and every JSON sidecar applying to them
    (:func:`MotorBandSignLib.bids_in.input_files`); for DICOM the whole folder (any series in it
    may change which acquisition is found)."""
    if source.kind == "bids":
        from . import bids_in

        return bids_in.input_files(source.path, source.subject, source.session)
    return [Path(source.path)]
