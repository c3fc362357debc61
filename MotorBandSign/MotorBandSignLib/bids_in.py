"""BIDS datasets: one subject's complex-valued GRE (part-mag / part-phase) with its sidecars.

``read_bids(ROOT, "01")`` reads ``sub-01/[ses-S/]anat/*_part-mag_*`` with the matching
``*_part-phase_*`` (or ``part-real`` + ``part-imag``) of one acquisition, suffix ``T2starw``,
``MEGRE`` or ``swi``, echoes by the ``echo-N`` entity, and their JSON sidecars (the BIDS
inheritance principle: sidecars higher up whose entities the file has apply first, the
nearest last). From the sidecars: EchoTime (seconds), MagneticFieldStrength, Manufacturer
(handedness) and the phase ``Units`` ("rad", or "arbitrary": then the values decide).

References: BIDS specification 1.10, "Magnetic Resonance Imaging" > "Parts of complex-valued
data" (part entity; phase Units "rad" or "arbitrary") and "The Inheritance Principle".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .acquisition import Acquisition, handedness_from_manufacturer
from .errors import InputError
from .volume import Volume

__all__ = ["read_bids", "subjects", "input_files", "SUFFIXES", "parse_name"]

#: Suffixes of gradient-echo images with magnitude and phase in BIDS (T2starw, MEGRE) and SWI.
SUFFIXES = ("T2starw", "MEGRE", "swi")
_PARTS = ("mag", "phase", "real", "imag")
_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9]+)$")


def parse_name(name: str) -> tuple[dict, str, str] | None:
    """(entities, suffix, extension) of a BIDS file name, or None if it is not one."""
    for ext in (".nii.gz", ".nii", ".json"):
        if name.endswith(ext):
            stem = name[: -len(ext)]
            break
    else:
        return None
    *pairs, suffix = stem.split("_")
    entities = {}
    for pair in pairs:
        m = _ENTITY.match(pair)
        if not m:
            return None
        entities[m.group(1)] = m.group(2)
    return entities, suffix, ext


def _subject_dir(root: Path, subject: str, session: str | None) -> tuple[Path, str, str | None]:
    label = subject[4:] if subject.startswith("sub-") else subject
    sub = root / f"sub-{label}"
    if not sub.is_dir():
        known = sorted(p.name for p in root.glob("sub-*") if p.is_dir())
        raise InputError(f"--bids {root}: no subject sub-{label}. Subjects: {', '.join(known) or 'none'}.")
    sessions = sorted(p.name for p in sub.glob("ses-*") if p.is_dir())
    if session:
        ses = session if session.startswith("ses-") else f"ses-{session}"
        if ses not in sessions:
            raise InputError(f"--bids {root}: sub-{label} has no session {ses}. Sessions: {', '.join(sessions) or 'none'}.")
        return sub / ses / "anat", label, ses[4:]
    if len(sessions) > 1:
        raise InputError(f"--bids {root}: sub-{label} has sessions {', '.join(sessions)}: pick one with --session.")
    if sessions:
        return sub / sessions[0] / "anat", label, sessions[0][4:]
    return sub / "anat", label, None


def _sidecar_files(root: Path, nifti: Path) -> list[Path]:
    """The JSON sidecars that apply to ``nifti`` by the inheritance principle, in the order they
    apply: from the dataset root down to the file's folder, those whose entities are a subset of
    the file's and whose suffix is the file's (within a folder, fewer entities first)."""
    entities, suffix, _ = parse_name(nifti.name)
    chain = [root]
    for part in nifti.parent.relative_to(root).parts:
        chain.append(chain[-1] / part)
    out = []
    for folder in chain:
        found = []
        for js in folder.glob("*.json"):
            parsed = parse_name(js.name)
            if parsed is None or parsed[1] != suffix:
                continue
            if all(entities.get(k) == v for k, v in parsed[0].items()):
                found.append((len(parsed[0]), js))
        out += [js for _, js in sorted(found)]
    return out


def _sidecar(root: Path, nifti: Path) -> dict:
    """The file's metadata: its sidecars (:func:`_sidecar_files`) merged, the nearest last."""
    meta: dict = {}
    for js in _sidecar_files(root, nifti):
        try:
            data = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{js}: not a readable JSON sidecar ({exc}). Fix it or remove it.") from None
        if isinstance(data, dict):
            meta.update(data)
    return meta


def _groups(anat: Path) -> tuple[dict, list]:
    """Acquisitions (entities without part/echo, suffix) -> {(part, echo): path}; other files."""
    groups: dict = {}
    others = []
    for f in sorted(anat.iterdir()) if anat.is_dir() else []:
        parsed = parse_name(f.name)
        if parsed is None or parsed[2] == ".json":
            continue
        entities, suffix, _ = parsed
        part = entities.get("part")
        if suffix not in SUFFIXES or part not in _PARTS:
            others.append(f.name)
            continue
        key = (tuple(sorted((k, v) for k, v in entities.items() if k not in ("part", "echo"))), suffix)
        echo = int(entities["echo"]) if entities.get("echo", "").isdigit() else 1
        groups.setdefault(key, {})[(part, echo)] = f
    return groups, others


def _complete(files: dict) -> bool:
    echoes = {e for _, e in files}
    return all({("mag", e), ("phase", e)} <= files.keys() or {("real", e), ("imag", e)} <= files.keys()
               for e in echoes)


def _read_part(files: dict, part: str, echoes: list, what: str) -> Volume | None:
    from . import io

    if not all((part, e) in files for e in echoes):
        return None
    vols = [io.read_volume(files[(part, e)], what=f"{what} (echo {e})") for e in echoes]
    for v in vols[1:]:
        vols[0].require_same_grid(v)
    if len(vols) == 1:
        return vols[0]
    return Volume(np.stack([v.array for v in vols]).astype(np.float32), vols[0].ijk_to_ras, vols[0].name,
                  dict(vols[0].meta))


def _root(root) -> Path:
    r = Path(root).expanduser()
    if not r.is_dir():
        raise InputError(f"--bids {r}: not a folder. Give the root of a BIDS dataset (holding sub-* folders).")
    return r


def _locate(root, subject: str, session: str | None):
    """(root, "sub-X[/ses-Y]", acquisitions, other files, complete acquisitions) of one subject."""
    r = _root(root)
    anat, label, ses = _subject_dir(r, subject, session)
    where = f"sub-{label}" + (f"/ses-{ses}" if ses else "")
    groups, others = _groups(anat)
    return r, where, groups, others, {k: v for k, v in groups.items() if _complete(v)}


def subjects(root) -> list[tuple[str, str | None]]:
    """(subject label, session label or None) of every subject and session of a dataset whose
    ``anat`` folder holds GRE part files (part-mag/phase/real/imag, suffix in SUFFIXES), sorted.
    A subject with sessions gives one entry per session."""
    r = _root(root)
    out = []
    for anat in sorted(list(r.glob("sub-*/anat")) + list(r.glob("sub-*/ses-*/anat"))):
        ses = anat.parent.name[4:] if anat.parent.name.startswith("ses-") else None
        sub = (anat.parent.parent if ses is not None else anat.parent).name[4:]
        if anat.is_dir() and _groups(anat)[0]:
            out.append((sub, ses))
    return out


def input_files(root, subject: str, session: str | None = None) -> list[Path]:
    """The files whose content decides what :func:`read_bids` reads for this subject (for a
    resumable record's hash): the images of the acquisition found and every sidecar that applies
    to them; with no single complete acquisition, every file of the subject's ``anat`` folder
    and the sidecars applying to its GRE part files. Sorted, without duplicates."""
    r, _, groups, others, complete = _locate(root, subject, session)
    if len(complete) == 1:
        images = list(next(iter(complete.values())).values())
    else:
        images = [f for g in groups.values() for f in g.values()]
        anat = (images[0].parent if images else _subject_dir(r, subject, session)[0])
        images += [anat / name for name in others]
    found = set(images)
    for f in images:
        if parse_name(f.name) and parse_name(f.name)[1] in SUFFIXES:
            found.update(_sidecar_files(r, f))
    return sorted(found)


def read_bids(root, subject: str, session: str | None = None) -> Acquisition:
    """One subject's GRE acquisition from a BIDS dataset (files not modified).

    Parameters
    ----------
    root : str or Path
        The dataset root (holding ``sub-*``).
    subject : str
        "01" or "sub-01".
    session : str, optional
        Needed when the subject has more than one session.

    Returns
    -------
    Acquisition
        Magnitude and phase (or real + imaginary; magnitude then their modulus), 4D with echoes
        first for ``echo-N`` files; echo times from the sidecars; phase units "radians" when the
        phase sidecar says ``Units: rad``, else "auto"; handedness from Manufacturer.

    Raises
    ------
    InputError
        No such subject or session, no magnitude + phase files, two acquisitions (listed),
        grids that differ.
    """
    from . import phase as phase_mod

    r, where, groups, others, complete = _locate(root, subject, session)
    if not complete:
        seen = sorted([f.name for g in groups.values() for f in g.values()] + others)
        raise InputError(
            f"--bids {r}: {where}/anat holds no part-mag with part-phase (or part-real with part-imag) files of "
            f"one acquisition with suffix {', '.join(SUFFIXES)} (files: {', '.join(seen[:12]) or 'none'}). Give "
            "the magnitude and phase with --magnitude / --phase instead.")
    if len(complete) > 1:
        listing = "; ".join(", ".join(sorted(f.name for f in g.values())) for g in complete.values())
        raise InputError(f"--bids {r}: {where} has {len(complete)} acquisitions ({listing}). Give one with "
                         "--magnitude / --phase.")
    files = next(iter(complete.values()))
    echoes = sorted({e for _, e in files})
    mag = _read_part(files, "mag", echoes, f"{where} magnitude")
    pha = _read_part(files, "phase", echoes, f"{where} phase")
    real = imag = None
    if pha is None:
        real = _read_part(files, "real", echoes, f"{where} real part")
        imag = _read_part(files, "imag", echoes, f"{where} imaginary part")
    if mag is None:
        mag = real.with_array(np.abs(phase_mod.complex_from_real_imag(real.array, imag.array)).astype(np.float32),
                              "magnitude (modulus of real + imaginary)")
    metas = {key: _sidecar(r, f) for key, f in files.items()}
    first = metas[next(iter(metas))]
    tes = [metas.get(("mag", e), metas.get(("phase", e), metas.get(("real", e), {}))).get("EchoTime") for e in echoes]
    hand, why = handedness_from_manufacturer(first.get("Manufacturer"))
    prov = {"source": f"BIDS dataset {r}, {where}", "manufacturer": first.get("Manufacturer"),
            "field_strength_t": first.get("MagneticFieldStrength"),
            "echo_times_s": [float(t) for t in tes] if all(isinstance(t, (int, float)) for t in tes) else None,
            "files_used": sorted(str(f.relative_to(r)) for f in files.values()),
            "skipped": sorted(others + [f.name for k, g in groups.items() if k not in complete for f in g.values()]),
            "handedness_reason": why.replace("Manufacturer", "sidecar Manufacturer")}
    acq = Acquisition(magnitude=mag, phase=pha, real=real, imag=imag, handedness=hand, provenance=prov,
                      echo_times=tuple(prov["echo_times_s"] or ()))
    if pha is not None:
        units = {str(metas[("phase", e)].get("Units", "")).strip() for e in echoes}
        if units == {"rad"}:
            acq.phase_units = "radians"
            prov["phase_storage"] = "radians (sidecar Units rad)"
        else:
            shown = ", ".join(sorted(u or "not given" for u in units))
            prov["phase_storage"] = f"sidecar Units {shown}: detected from the values"
    else:
        prov["phase_storage"] = "real + imaginary (phase = their angle, radians)"
    return acq
