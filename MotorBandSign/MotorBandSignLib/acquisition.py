"""What a scanner export holds, read into Volumes, with what its headers said.

:mod:`MotorBandSignLib.dicom_in` (DICOM folders) and :mod:`MotorBandSignLib.bids_in` (BIDS
datasets) return an :class:`Acquisition`: the Volumes the pipeline takes, the phase units and
handedness the headers imply, the echo times, and a provenance dict saying what was found and
why (written to ``metrics.json`` under ``qc.input`` and shown in the report).
:func:`settle_parameters` merges that with what the user stated: an explicit flag always wins,
and the provenance records that it did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .params import Parameters
from .volume import Volume

__all__ = ["Acquisition", "VENDOR_SWI_NOTE", "handedness_from_manufacturer", "settle_parameters"]

#: The mark a vendor-SWI run carries in metrics.json, the report and its warnings (issue 13).
VENDOR_SWI_NOTE = "vendor SWI, phase processing not controlled"


@dataclass
class Acquisition:
    """Volumes of one acquisition and what the headers say about them.

    Parameters
    ----------
    magnitude : Volume or None
        Magnitude, 3D or 4D (echoes first); None for real/imaginary-only input (then the
        pipeline's magnitude is ``|real + i imag|``, filled in by the reader).
    phase, real, imag : Volume or None
        Phase (values as the headers define them, e.g. after DICOM rescale), or real and
        imaginary parts, on the magnitude's grid.
    swi : Volume or None
        A vendor SWI (no phase): the run skips the phase processing.
    echo_times : tuple of float
        Seconds, one per echo (empty when the headers give none).
    phase_units : str
        One of :data:`MotorBandSignLib.phase.UNITS` decided from the headers ("auto" when they
        do not say).
    handedness : str
        "right" or "left", decided from the manufacturer.
    provenance : dict
        What was found and why (JSON-ready).
    """

    magnitude: Volume | None = None
    phase: Volume | None = None
    real: Volume | None = None
    imag: Volume | None = None
    swi: Volume | None = None
    echo_times: tuple = ()
    phase_units: str = "auto"
    handedness: str = "right"
    provenance: dict = field(default_factory=dict)


def handedness_from_manufacturer(manufacturer: str | None) -> tuple[str, str]:
    """("left", reason) for GE, ("right", reason) for every other manufacturer.

    GE scanners store phase in the left-handed convention, the others right-handed (Haacke et al.
    2004, MRM 52:612; shared/reference/BRIEF.md, "Vendor phase storage").
    """
    name = (manufacturer or "").strip()
    if not name:
        return "right", "no Manufacturer in the headers: right-handed assumed (most scanners)"
    words = name.upper().replace(",", " ").split()
    if words and (words[0] == "GE" or name.upper().startswith("GE MEDICAL") or "GEMS" in words):
        return "left", f"from Manufacturer '{name}' (GE stores left-handed phase)"
    return "right", f"from Manufacturer '{name}'"


def settle_parameters(acq: Acquisition, params: Parameters, *, phase_units_given: str | None = None,
                      handedness_given: str | None = None) -> Parameters:
    """Parameters for a run on ``acq``: the headers' phase units, handedness and echo times,
    unless the user stated them (an explicit value wins; the provenance says so).

    Parameters
    ----------
    acq : Acquisition
        From :func:`MotorBandSignLib.dicom_in.read_dicom_folder` or
        :func:`MotorBandSignLib.bids_in.read_bids`; its ``provenance`` is completed in place
        (``phase_units``, ``handedness``, ``summary``).
    params : Parameters
        The user's parameters (``echo_times`` non-empty means they were stated).
    phase_units_given, handedness_given : str or None
        What the user stated (None: not stated).

    Returns
    -------
    Parameters
        A copy with ``phase_units``, ``handedness`` and ``echo_times`` settled.
    """
    prov = acq.provenance
    n_echoes = _echoes(acq)
    te = tuple(params.echo_times)
    if te:
        prov["echo_times_from"] = "--te (stated)"
    elif n_echoes > 1:
        if len(acq.echo_times) != n_echoes:
            raise InputError(
                f"{prov.get('source', 'input')}: {n_echoes} echoes, but the headers give "
                f"{len(acq.echo_times)} echo time(s): give them with --te SECONDS (one per echo).")
        te = tuple(acq.echo_times)
        prov["echo_times_from"] = "headers"
    units, hand = params.phase_units, params.handedness
    if acq.swi is None and acq.phase is not None:
        header_units = acq.phase_units
        if phase_units_given and phase_units_given != "auto":
            units = phase_units_given
            prov["phase_units"] = f"{units}, stated (--phase-units); the headers said {header_units}"
        else:
            units = header_units
            prov["phase_units"] = units + (", from the headers" if units != "auto" else
                                           ", detected from the values (the headers do not say)")
    if acq.swi is None:
        header_hand, why = acq.handedness, prov.get("handedness_reason", "")
        if handedness_given:
            hand = handedness_given
            prov["handedness"] = f"{hand}, stated (--handedness); the headers said {header_hand} ({why})"
        else:
            hand = header_hand
            prov["handedness"] = f"{hand}, {why}" if why else hand
    prov["summary"] = summary(prov)
    return dataclasses.replace(params, phase_units=units, handedness=hand, echo_times=te)


def summary(prov: dict) -> str:
    """One line for the report: source, phase storage, handedness, echoes, field, skipped series."""
    parts = [prov.get("source", "")]
    if prov.get("vendor_swi"):
        parts.append(VENDOR_SWI_NOTE)
    if prov.get("phase_storage"):
        parts.append(f"phase: {prov['phase_storage']}")
    if prov.get("handedness"):
        parts.append(f"handedness: {prov['handedness']}")
    if prov.get("echo_times_s"):
        parts.append("TE " + ", ".join(f"{1000 * t:g}" for t in prov["echo_times_s"]) + " ms")
    if prov.get("field_strength_t"):
        parts.append(f"{prov['field_strength_t']:g} T")
    if prov.get("manufacturer"):
        parts.append(prov["manufacturer"])
    used = prov.get("series_used") or []
    if used:
        parts.append("series used: " + ", ".join(f"{s['series_number']} '{s['description']}' ({s['role']})"
                                                 for s in used))
    elif prov.get("files_used"):
        parts.append("files used: " + ", ".join(Path(f).name for f in prov["files_used"]))
    skipped = prov.get("skipped") or []
    if skipped:
        parts.append("skipped: " + ", ".join(
            f"{s['series_number']} '{s['description']}' ({s.get('reason', '')})" if isinstance(s, dict) else str(s)
            for s in skipped))
    return "; ".join(p for p in parts if p)


def _echoes(acq: Acquisition) -> int:
    v = next((x for x in (acq.magnitude, acq.phase, acq.real, acq.swi) if x is not None), None)
    return v.array.shape[0] if v is not None and v.array.ndim == 4 else 1
