"""DICOM folders: find the GRE magnitude and phase (or real and imaginary) of one acquisition.

``read_dicom_folder(DIR)`` reads every file under DIR (recursively) with pydicom, groups them by
series, splits each series into stacks (one image component and one echo time each: GE and
Philips put magnitude, phase, real and imaginary in one series, Siemens puts the echoes of a
multi-echo scan in one), and groups stacks that share a frame of reference and an in-plane
grid into acquisitions. An acquisition is usable when every echo has magnitude and phase, or
real and imaginary. Localisers, derived images (the scanner's SWI, minimum-intensity
projections) and series without a partner are skipped and listed; two usable acquisitions are
an error naming them and the flag that picks one (``--series UID`` / ``--series-number N``).

Pixel values are the DICOM real-world values (Rescale Slope and Intercept applied, DICOM PS3.3
C.11.1.1.2). The geometry is the DICOM patient coordinate system (PS3.3 C.7.6.2.1.1: Image
Position / Orientation (Patient), Pixel Spacing), converted from LPS to RAS. The phase units
follow from the rescaled range of the stored bits (:func:`phase_storage`), the handedness from
the Manufacturer (:func:`~MotorBandSignLib.acquisition.handedness_from_manufacturer`).

Enhanced (multi-frame) MR objects -- one file holding every slice, often magnitude and phase and
every echo, as current Siemens (XA), Philips and GE software export -- are read frame by frame:
each frame takes its position, orientation, pixel spacing, rescale, image component and echo
time from its functional groups (per-frame first, then shared; PS3.3 C.7.6.16 Multi-frame
Functional Groups, C.8.13.5 MR Image Frame Type and MR Echo), and from then on it is handled as
one classic image. A multi-frame file without functional groups cannot place its frames and is
skipped with the reason.
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .acquisition import Acquisition, handedness_from_manufacturer
from .errors import InputError
from .volume import LPS_TO_RAS, Volume

__all__ = ["read_dicom_folder", "read_vendor_swi", "index_folder", "phase_storage", "frames_of", "Frame", "Series",
           "Stack"]

#: Image components: magnitude, phase, real, imaginary.
MAGNITUDE, PHASE, REAL, IMAG = "M", "P", "R", "I"
COMPONENT_NAMES = {MAGNITUDE: "magnitude", PHASE: "phase", REAL: "real", IMAG: "imaginary"}
#: Image Type (0008,0008) values naming a component (PS3.3 C.8.13.1.1.1 for M/P/R/I; the
#: Enhanced MR defined terms MAGNITUDE/PHASE/REAL/IMAGINARY, C.8.13.3.1.1, Complex Image
#: Component; Philips' M_FFE / P_FFE / R_FFE / I_FFE and PHASE MAP).
_IMAGE_TYPE_COMPONENT = {"M": MAGNITUDE, "MAGNITUDE": MAGNITUDE, "M_FFE": MAGNITUDE, "M_SE": MAGNITUDE,
                         "P": PHASE, "PHASE": PHASE, "P_FFE": PHASE, "P_SE": PHASE, "PHASE MAP": PHASE,
                         "R": REAL, "REAL": REAL, "R_FFE": REAL, "I": IMAG, "IMAGINARY": IMAG, "I_FFE": IMAG}
#: GE private Image Type (0043,102F), creator GEMS_PARM_01: 0 magnitude, 1 phase, 2 real, 3 imaginary.
GE_IMAGE_TYPE_TAG = (0x0043, 0x102F)
_GE_COMPONENT = {0: MAGNITUDE, 1: PHASE, 2: REAL, 3: IMAG}
#: Philips private Image Type MR (2005,1011): M, P, R, I.
PHILIPS_IMAGE_TYPE_TAG = (0x2005, 0x1011)
#: Image Type values of projections (the scanner's mIP / MIP) and of the scanner's SWI.
_PROJECTION_WORDS = ("MNIP", "MIN IP", "MINIP", "MIP", "PROJECTION IMAGE", "MIN_IP")
_SWI_WORDS = ("SWI", "SWAN", "SWIP", "SWI_IMAGES")
_PROJECTION_DESCRIPTION = re.compile(r"\b(m(in)?ip|minimum\s+intensity|mnip)\b", re.IGNORECASE)
_SWI_DESCRIPTION = re.compile(r"\b(swi|swan|swip|venobold)\b", re.IGNORECASE)
_LOCALISER_DESCRIPTION = re.compile(r"\b(locali[sz]er|scout|survey|aahscout|3-?plane loc)\b", re.IGNORECASE)
#: Slices along the normal are uniform when every gap is within this share of the median gap
#: (0.1 of a slice: positions are stored to 0.01 mm or better, PS3.5 DS values).
SLICE_GAP_TOLERANCE = 0.1
#: Rescaled ranges are matched to a unit when the stored range spans one turn in it within 1 %.
UNIT_TOLERANCE = 0.01

_HEADER_TAGS = ["SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "ProtocolName", "Modality", "ImageType",
                "Manufacturer", "MagneticFieldStrength", "EchoTime", "EchoNumbers", "ImageOrientationPatient",
                "ImagePositionPatient", "PixelSpacing", "Rows", "Columns", "FrameOfReferenceUID", "RescaleSlope",
                "RescaleIntercept", "RescaleType", "BitsStored", "PixelRepresentation", "NumberOfFrames",
                "ComplexImageComponent", "InstanceNumber", "SliceThickness", "SOPClassUID",
                GE_IMAGE_TYPE_TAG, PHILIPS_IMAGE_TYPE_TAG]


@dataclass
class Stack:
    """The files of one series with one component and one echo time (a 3D volume)."""

    series: "Series"
    component: str
    echo_time_ms: float | None
    files: list = field(default_factory=list)  # (path, header)

    @property
    def label(self) -> str:
        te = f", TE {self.echo_time_ms:g} ms" if self.echo_time_ms is not None else ""
        return f"{COMPONENT_NAMES[self.component]}{te}"


@dataclass
class Series:
    """One DICOM series as found in the folder."""

    uid: str
    number: int | None
    description: str
    files: list = field(default_factory=list)  # (path, header)
    stacks: list = field(default_factory=list)
    #: Why the series is not a candidate (None when it is).
    skipped: str | None = None
    #: "swi" (the scanner's SWI), "projection" (mIP/MIP) or None.
    derived: str | None = None
    #: Images of the series left out (another kind than the magnitude / phase / real / imaginary kept).
    ignored: str | None = None

    @property
    def name(self) -> str:
        num = f"series {self.number}" if self.number is not None else "series (no number)"
        return f"{num} '{self.description}'" if self.description else num

    def record(self) -> dict:
        return {"series_number": self.number, "series_uid": self.uid, "description": self.description,
                "files": len({str(getattr(p, "path", p)) for p, _ in self.files}),  # a multi-frame file once
                **({"reason": self.skipped} if self.skipped else {}),
                **({"ignored": self.ignored} if self.ignored else {})}


# ------------------------------------------------------------------------------------------
# Headers
# ------------------------------------------------------------------------------------------
def _text(ds, name: str) -> str:
    v = ds.get(name)
    return "" if v is None else str(v).strip()


def _image_type(ds) -> list:
    v = ds.get("ImageType")
    if v is None:
        return []
    values = v.split("\\") if isinstance(v, str) else list(v)
    return [str(x).strip().upper() for x in values]


def _private_value(ds, tag):
    elem = ds.get(tag)
    if elem is None:
        return None
    v = elem.value
    if isinstance(v, bytes):  # implicit VR: the element arrives as UN bytes
        if elem.tag == GE_IMAGE_TYPE_TAG and len(v) >= 2:
            return int.from_bytes(v[:2], "little", signed=True)
        return v.decode("ascii", "ignore").strip("\x00 ")
    return v


def _component(ds) -> str | None:
    """M / P / R / I from Complex Image Component, Image Type or the vendors' private tags."""
    cic = _text(ds, "ComplexImageComponent").upper()
    if cic in _IMAGE_TYPE_COMPONENT:
        return _IMAGE_TYPE_COMPONENT[cic]
    ge = _private_value(ds, GE_IMAGE_TYPE_TAG)
    if isinstance(ge, (int, np.integer)) and int(ge) in _GE_COMPONENT:
        return _GE_COMPONENT[int(ge)]
    philips = _private_value(ds, PHILIPS_IMAGE_TYPE_TAG)
    if isinstance(philips, str) and philips.strip().upper() in _IMAGE_TYPE_COMPONENT:
        return _IMAGE_TYPE_COMPONENT[philips.strip().upper()]
    for value in _image_type(ds)[2:]:
        if value in _IMAGE_TYPE_COMPONENT:
            return _IMAGE_TYPE_COMPONENT[value]
    return None


def _float(ds, name: str, default=None):
    v = ds.get(name)
    try:
        return default if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return default


def _derived_kind(ds, description: str) -> str | None:
    if any(w in _image_type(ds) for w in _PROJECTION_WORDS) or _PROJECTION_DESCRIPTION.search(description):
        return "projection"
    if any(w in _image_type(ds) for w in _SWI_WORDS) or (
            _image_type(ds)[:1] == ["DERIVED"] and _SWI_DESCRIPTION.search(description)):
        return "swi"
    return None


def _is_localiser(ds, description: str) -> bool:
    return "LOCALIZER" in _image_type(ds) or bool(_LOCALISER_DESCRIPTION.search(description))


@dataclass(frozen=True)
class Frame:
    """One frame of a multi-frame file: where its pixels are (0-based ``index``)."""

    path: Path
    index: int

    def __str__(self) -> str:
        return f"{self.path} (frame {self.index + 1})"


#: Top-level attributes every frame of a multi-frame file shares (copied into each frame's header).
_SHARED_TOP = ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "ProtocolName", "Modality", "ImageType",
               "Manufacturer", "MagneticFieldStrength", "Rows", "Columns", "FrameOfReferenceUID", "BitsStored",
               "PixelRepresentation", "ComplexImageComponent", "SOPClassUID", "RescaleSlope", "RescaleIntercept",
               "RescaleType", "SliceThickness", "EchoTime")
#: Functional group (sequence) -> attributes it gives a frame, as in a classic image's header
#: (PS3.3 C.7.6.16.2: Pixel Measures, Plane Position, Plane Orientation, Pixel Value
#: Transformation; C.8.13.5: MR Image Frame Type, MR Echo).
_FUNCTIONAL_GROUPS = {
    "PixelMeasuresSequence": (("PixelSpacing", "PixelSpacing"), ("SliceThickness", "SliceThickness")),
    "PlanePositionSequence": (("ImagePositionPatient", "ImagePositionPatient"),),
    "PlaneOrientationSequence": (("ImageOrientationPatient", "ImageOrientationPatient"),),
    "PixelValueTransformationSequence": (("RescaleSlope", "RescaleSlope"), ("RescaleIntercept", "RescaleIntercept"),
                                         ("RescaleType", "RescaleType")),
    "MRImageFrameTypeSequence": (("FrameType", "ImageType"), ("ComplexImageComponent", "ComplexImageComponent")),
    "MREchoSequence": (("EffectiveEchoTime", "EchoTime"),),
}


def frames_of(path, ds) -> list | None:
    """``(Frame, header)`` for each frame of a multi-frame file whose header ``ds`` holds the
    functional groups; None when it has none (its frames cannot be placed).

    Each frame's header is a classic image's: the file's shared attributes, then those of the
    shared functional groups, then the frame's own (which win).
    """
    from pydicom.dataset import Dataset

    per = ds.get("PerFrameFunctionalGroupsSequence")
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if not per or len(per) != n:
        return None
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else Dataset()
    top = Dataset()
    for name in _SHARED_TOP:
        if name in ds:
            setattr(top, name, ds.data_element(name).value)
    for tag in (GE_IMAGE_TYPE_TAG, PHILIPS_IMAGE_TYPE_TAG):
        if tag in ds:
            top.add(ds[tag])
    out = []
    for i in range(n):
        fd = copy.deepcopy(top)  # its own elements: a frame's values must not reach the others
        for groups in (shared, per[i]):
            for seq_name, attrs in _FUNCTIONAL_GROUPS.items():
                seq = groups.get(seq_name)
                if not seq:
                    continue
                for src, dst in attrs:
                    value = seq[0].data_element(src).value if src in seq[0] else None
                    if value in (None, ""):
                        continue
                    # EffectiveEchoTime (FD) becomes a classic EchoTime (DS: at most 16 characters)
                    setattr(fd, dst, f"{float(value):.6g}" if dst == "EchoTime" else value)
        out.append((Frame(Path(path), i), fd))
    return out


# ------------------------------------------------------------------------------------------
# Indexing a folder
# ------------------------------------------------------------------------------------------
def index_folder(folder) -> list[Series]:
    """Every DICOM image series under ``folder`` (recursively), classified; files that are not
    DICOM images are ignored.

    Raises
    ------
    InputError
        ``folder`` is not a folder, or holds no DICOM image.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"--dicom {root}: not a folder. Give the folder of the DICOM export (series in any "
                         "sub-folders).")
    series: dict[str, Series] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = Path(dirpath) / name
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError):
                continue  # not a DICOM file (README, DICOMDIR index, thumbnails...)
            if ds.get("Rows") is None or not ds.get("SeriesInstanceUID"):
                continue
            entries = [(path, ds)]
            if int(ds.get("NumberOfFrames", 1) or 1) > 1:
                try:
                    full = pydicom.dcmread(path, stop_before_pixels=True)
                except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError):
                    continue
                entries = frames_of(path, full) or entries
            uid = str(ds.SeriesInstanceUID)
            if uid not in series:
                number = ds.get("SeriesNumber")
                series[uid] = Series(uid, int(number) if number not in (None, "") else None,
                                     _text(ds, "SeriesDescription") or _text(ds, "ProtocolName"))
            series[uid].files.extend(entries)
    if not series:
        raise InputError(f"--dicom {root}: no DICOM images found (looked in every sub-folder). Give the folder "
                         "the scanner or PACS export wrote.")
    for s in series.values():
        _classify(s)
    return sorted(series.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))


def _classify(s: Series) -> None:
    ds = s.files[0][1]
    if any(int(d.get("NumberOfFrames", 1) or 1) > 1 for _, d in s.files):
        # frames_of found no functional groups: nothing says where each frame lies
        s.skipped = ("multi-frame DICOM without per-frame functional groups (the frames cannot be placed): convert "
                     "the export with dcm2niix and give the NIfTI files (--magnitude / --phase)")
        return
    if _text(ds, "Modality") and _text(ds, "Modality") != "MR":
        s.skipped = f"modality {_text(ds, 'Modality')}, not MR"
        return
    if _is_localiser(ds, s.description):
        s.skipped = "localiser"
        return
    # A derived series named as a projection / SWI is one as a whole; otherwise each image's
    # type decides (Philips and GE may put the scanner's SWI beside magnitude and phase).
    if _image_type(ds)[:1] == ["DERIVED"]:
        s.derived = _derived_kind(ds, s.description)
    stacks: dict = {}
    other: dict = {}
    if s.derived is None:
        for path, d in s.files:
            kind = _derived_kind(d, "")
            comp = None if kind else _component(d)
            if comp is None:
                label = kind or "/".join(_image_type(d)) or "image type not given"
                other.setdefault(label, []).append(path)
                continue
            te = _float(d, "EchoTime")
            key = (comp, None if te is None else round(te, 3))
            stacks.setdefault(key, Stack(s, comp, key[1])).files.append((path, d))
    if not stacks:
        s.derived = s.derived or (next(iter(other)) if len(other) == 1 and next(iter(other)) in
                                  ("projection", "swi") else None)
        if s.derived == "projection":
            s.skipped = "minimum/maximum-intensity projection (derived)"
        elif s.derived == "swi":
            s.skipped = "the scanner's SWI (derived; use --swi to run on it)"
        else:
            s.skipped = (f"image type {', '.join(other) or 'not given'}: not a magnitude, phase, real or imaginary "
                         "image")
        return
    if other:
        s.ignored = "; ".join(f"{len(v)} image(s) of type {k} ignored" for k, v in other.items())
    s.stacks = sorted(stacks.values(), key=lambda st: ("MPRI".index(st.component), st.echo_time_ms or 0.0))


def _grid_key(ds) -> tuple:
    """Frame of reference and in-plane grid: stacks sharing it can form one acquisition."""
    iop = tuple(round(float(x), 3) for x in (ds.get("ImageOrientationPatient") or ()))
    ps = tuple(round(float(x), 3) for x in (ds.get("PixelSpacing") or ()))
    return (_text(ds, "FrameOfReferenceUID"), iop, int(ds.Rows), int(ds.Columns), ps)


# ------------------------------------------------------------------------------------------
# Acquisitions
# ------------------------------------------------------------------------------------------
@dataclass
class _Candidate:
    stacks: list = field(default_factory=list)

    @property
    def series(self) -> list:
        out = []
        for st in self.stacks:
            if st.series not in out:
                out.append(st.series)
        return out

    def slots(self) -> set:
        return {(st.component, st.echo_time_ms) for st in self.stacks}

    def echo_times(self) -> list:
        return sorted({st.echo_time_ms for st in self.stacks}, key=lambda t: (t is None, t or 0.0))

    def complete(self) -> bool:
        slots = self.slots()
        for te in self.echo_times():
            has = {c for c, t in slots if t == te}
            if not ({MAGNITUDE, PHASE} <= has or {REAL, IMAG} <= has):
                return False
        return bool(slots)

    def describe(self) -> str:
        parts = []
        for s in self.series:
            comps = sorted({COMPONENT_NAMES[st.component] for st in s.stacks if st in self.stacks})
            parts.append(f"{s.name} ({' + '.join(comps)}; UID {s.uid})")
        return ", ".join(parts)


def _candidates(series: list[Series]) -> tuple[list, list]:
    """Complete and incomplete acquisitions from the stacks of candidate series.

    Stacks are grouped by frame of reference and in-plane grid; within a group, series are
    taken in series-number order and a new acquisition starts when a series repeats a slot
    (component, echo) already filled (a repeated scan: Siemens numbers magnitude N, phase N+1).
    """
    groups: dict = {}
    for s in series:
        if s.skipped:
            continue
        for st in s.stacks:
            groups.setdefault(_grid_key(st.files[0][1]), []).append(st)
    complete, partial = [], []
    for stacks in groups.values():
        current = _Candidate()
        built = [current]
        for s in sorted({st.series.uid: st.series for st in stacks}.values(),
                        key=lambda x: (x.number is None, x.number or 0)):
            mine = [st for st in stacks if st.series is s]
            if current.slots() & {(st.component, st.echo_time_ms) for st in mine}:
                current = _Candidate()
                built.append(current)
            current.stacks.extend(mine)
        for c in built:
            for part in _split_strays(c):
                (complete if part.complete() else partial).append(part)
    return complete, partial


def _split_strays(c: _Candidate) -> list:
    """Series none of whose echoes is complete in ``c`` (a T1 on the same grid beside the GRE)
    form their own (incomplete) candidate."""
    slots = c.slots()
    good = {te for te in c.echo_times() if {(MAGNITUDE, te), (PHASE, te)} <= slots
            or {(REAL, te), (IMAG, te)} <= slots}
    if not good or c.complete():
        return [c]
    strays = [s for s in c.series if not any(st.echo_time_ms in good for st in c.stacks if st.series is s)]
    if not strays:
        return [c]
    return [_Candidate([st for st in c.stacks if st.series not in strays]),
            _Candidate([st for st in c.stacks if st.series in strays])]


def _select(series: list[Series], uids, numbers) -> list[Series]:
    """The series the user picked (with --series / --series-number), checked to exist."""
    if not uids and not numbers:
        return series
    known_numbers = {s.number for s in series}
    known_uids = {s.uid for s in series}
    missing = [f"--series {u}" for u in uids if u not in known_uids] + \
              [f"--series-number {n}" for n in numbers if n not in known_numbers]
    if missing:
        listing = "; ".join(f"{s.name} (UID {s.uid})" for s in series)
        raise InputError(f"{', '.join(missing)}: no such series in the folder. It holds: {listing}.")
    return [s for s in series if s.uid in set(uids) or s.number in set(numbers)]


def _partners(picked: list[Series], all_series: list[Series]) -> list[Series]:
    """Add to the picked series the ones that complete their acquisition (same grid), nearest in
    series number first (a picked Siemens magnitude series N finds its phase N+1)."""
    out = list(picked)
    complete, _ = _candidates(out)
    if complete:
        return out
    picked_keys = {_grid_key(st.files[0][1]) for s in picked for st in s.stacks}
    ref = min((s.number for s in picked if s.number is not None), default=0)
    others = sorted((s for s in all_series if s not in picked and not s.skipped
                     and any(_grid_key(st.files[0][1]) in picked_keys for st in s.stacks)),
                    key=lambda s: abs((s.number if s.number is not None else 10**6) - ref))
    for s in others:
        slots = {(st.component, st.echo_time_ms) for p in out for st in p.stacks}
        if slots & {(st.component, st.echo_time_ms) for st in s.stacks}:
            continue
        out.append(s)
        if _candidates(out)[0]:
            break
    return out


def _no_acquisition_error(root: Path, series: list[Series], partial: list) -> InputError:
    mismatch = _geometry_mismatch(partial)
    if mismatch:
        return InputError(mismatch)
    listing = "; ".join(f"{s.name}: {s.skipped or 'only ' + ' + '.join(st.label for st in s.stacks)}"
                        for s in series)
    return InputError(
        f"--dicom {root}: no gradient-echo magnitude + phase (or real + imaginary) series of one acquisition "
        f"found. Series seen: {listing}. Export the GRE/SWI acquisition's magnitude and phase series (not only the "
        "scanner's SWI or mIP; for those use --swi), or give NIfTI files with --magnitude / --phase.")


def _geometry_mismatch(partial: list) -> str | None:
    """A magnitude-only and a phase-only stack group of the same frame of reference and echo
    times on different grids: name both series and what differs."""
    for a in partial:
        for b in partial:
            if a is b:
                continue
            ca = {st.component for st in a.stacks}
            cb = {st.component for st in b.stacks}
            if not (MAGNITUDE in ca and PHASE in cb and PHASE not in ca):
                continue
            da, db = a.stacks[0].files[0][1], b.stacks[0].files[0][1]
            if _text(da, "FrameOfReferenceUID") != _text(db, "FrameOfReferenceUID"):
                continue
            if a.echo_times() != b.echo_times():
                continue
            diff = []
            if (da.Rows, da.Columns) != (db.Rows, db.Columns):
                diff.append(f"{da.Columns} x {da.Rows} vs {db.Columns} x {db.Rows} pixels")
            if _grid_key(da)[4] != _grid_key(db)[4]:
                diff.append(f"pixel spacing {list(_grid_key(da)[4])} vs {list(_grid_key(db)[4])} mm")
            if _grid_key(da)[1] != _grid_key(db)[1]:
                diff.append("orientation differs")
            return (f"magnitude {a.series[0].name} and phase {b.series[0].name} are of the same frame of reference "
                    f"and echo times but not on the same grid ({'; '.join(diff) or 'grid differs'}). Export the "
                    "magnitude and phase of one acquisition as reconstructed by the scanner (no resampling), or pick "
                    "matching series with --series-number.")
    return None


def _choose(root: Path, series: list[Series], uids=(), numbers=()) -> _Candidate:
    picked = _select(series, uids, numbers)
    if uids or numbers:
        bad = [s for s in picked if s.skipped]
        if bad:
            raise InputError(f"{bad[0].name} was picked but is not usable: {bad[0].skipped}.")
        picked = _partners(picked, series)
    complete, partial = _candidates(picked)
    if not complete:
        raise _no_acquisition_error(root, series, partial)
    if len(complete) > 1:
        listing = "; ".join(f"({n}) {c.describe()}" for n, c in enumerate(complete, 1))
        raise InputError(
            f"--dicom {root}: {len(complete)} candidate acquisitions: {listing}. Pick one with --series UID or "
            "--series-number N (one of its series; repeat the flag to name each series).")
    return complete[0]


# ------------------------------------------------------------------------------------------
# Reading stacks
# ------------------------------------------------------------------------------------------
def _positions(stack: Stack) -> tuple[np.ndarray, np.ndarray]:
    """Slice normal (LPS) and the stack's files' positions along it."""
    ds = stack.files[0][1]
    iop = np.array([float(x) for x in ds.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    pos = np.array([np.dot(normal, [float(x) for x in d.ImagePositionPatient]) for _, d in stack.files])
    return normal, pos


def _check_stack(stack: Stack) -> list:
    """The stack's files sorted along the slice normal, after checking for repeated or missing
    slices (InputError naming the series)."""
    name = f"{stack.series.name} ({stack.label})"
    for _, d in stack.files:
        if d.get("ImagePositionPatient") is None or d.get("ImageOrientationPatient") is None:
            raise InputError(f"{name}: a file has no Image Position / Orientation (Patient); the slices cannot "
                             "be placed. Export the series again from the scanner or PACS.")
    _, pos = _positions(stack)
    order = np.argsort(pos, kind="stable")
    files = [stack.files[i] for i in order]
    p = pos[order]
    if len(p) < 2:
        return files
    gaps = np.diff(p)
    if np.any(gaps < 1e-3):
        n = int(np.sum(gaps < 1e-3))
        raise InputError(f"{name}: {n} slice position(s) appear twice ({len(p)} files). The series holds more than "
                         "one image per slice position (a repeated export, or images of another kind): export it "
                         "again, or keep one copy of each file.")
    step = float(np.median(gaps))
    bad = np.nonzero(np.abs(gaps - step) > SLICE_GAP_TOLERANCE * step)[0]
    if bad.size:
        g = int(bad[0])
        missing = max(int(round(gaps[g] / step)) - 1, 0)
        what = (f"{missing} slice(s) missing" if missing else "uneven slice spacing")
        raise InputError(
            f"{name}: {what} between positions {p[g]:.2f} and {p[g + 1]:.2f} mm along the slice normal (slice "
            f"spacing {step:.2f} mm, {len(p)} files). Copy the series again completely from the scanner or PACS.")
    return files


def _read_stack(stack: Stack, files: list, frames: dict | None = None) -> Volume:
    """A 3D Volume (real-world values, RAS geometry) of a checked, sorted stack. ``frames`` caches
    the decoded pixels of multi-frame files (path -> array) across the stacks of one read."""
    import pydicom
    from pydicom.pixels import apply_rescale

    name = f"{stack.series.name} ({stack.label})"
    slices = []
    frames = {} if frames is None else frames
    for path, header in files:
        try:
            if isinstance(path, Frame):
                if path.path not in frames:
                    frames[path.path] = pydicom.dcmread(path.path).pixel_array
                ds = header
                arr = apply_rescale(frames[path.path][path.index], header)
            else:
                ds = pydicom.dcmread(path)
                arr = apply_rescale(ds.pixel_array, ds)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a damaged or unsupported file
            raise InputError(f"{name}: cannot read the pixels of {path} ({type(exc).__name__}: "
                             f"{str(exc)[:150]}). Copy the file again, or convert the series with dcm2niix.") from None
        if arr.shape != (int(ds.Rows), int(ds.Columns)):
            raise InputError(f"{name}: {path} holds pixels of shape {arr.shape}; expected {ds.Rows} x {ds.Columns}.")
        slices.append(np.asarray(arr, dtype=np.float32))
    data = np.stack(slices)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{name}: the pixel values are not finite after rescaling. Check the series' Rescale "
                         "Slope / Intercept.")
    first = files[0][1]
    iop = np.array([float(x) for x in first.ImageOrientationPatient])
    row_spacing, col_spacing = (float(x) for x in first.PixelSpacing)
    m = np.eye(4)
    m[:3, 0] = iop[:3] * col_spacing  # i: along a row (to the next column)
    m[:3, 1] = iop[3:] * row_spacing  # j: down a column (to the next row)
    p0 = np.array([float(x) for x in first.ImagePositionPatient])
    if len(files) > 1:
        p1 = np.array([float(x) for x in files[-1][1].ImagePositionPatient])
        m[:3, 2] = (p1 - p0) / (len(files) - 1)
    else:
        m[:3, 2] = np.cross(iop[:3], iop[3:]) * (_float(first, "SliceThickness", 1.0) or 1.0)
    m[:3, 3] = p0
    return Volume(data, LPS_TO_RAS @ m, name, {"series_uid": stack.series.uid, "series_number": stack.series.number,
                                               "dicom_files": [str(path) for path, _ in files]})


def _read_component(stacks: list, component: str, echo_times: list, frames: dict | None = None) -> Volume | None:
    chosen = []
    for te in echo_times:
        st = next((s for s in stacks if s.component == component and s.echo_time_ms == te), None)
        if st is None:
            return None
        chosen.append(st)
    vols = [_read_stack(st, _check_stack(st), frames) for st in chosen]
    first = vols[0]
    for v in vols[1:]:
        _same_grid(first, v)
    if len(vols) == 1:
        return first
    return Volume(np.stack([v.array for v in vols]), first.ijk_to_ras, first.name, dict(first.meta))


def _same_grid(a: Volume, b: Volume) -> None:
    diff = a.grid_mismatch(b)
    if diff:
        raise InputError(f"{a.name} and {b.name} are of one acquisition but not on the same grid ({diff}): a slice "
                         "may be missing from one of them. Export both series again completely.")


# ------------------------------------------------------------------------------------------
# Phase storage
# ------------------------------------------------------------------------------------------
def phase_storage(ds) -> tuple[str, float, str]:
    """Units of a phase series' real-world values, from its headers.

    The stored bits (BitsStored, PixelRepresentation) span one turn of phase; Rescale Slope and
    Intercept (PS3.3 C.11.1.1.2) map them to the real-world values, so ``slope * 2**BitsStored``
    is one turn in the real-world unit.

    Returns
    -------
    units : str
        For :func:`MotorBandSignLib.phase.to_radians`: "radians", "degrees", "siemens" or "auto"
        (the headers do not say; the values decide).
    scale : float
        Factor applied to the real-world values first (1e-3 for milliradians).
    description : str
        What was found, for the report.

    Notes
    -----
    - Rescale Type "mrad", or one turn = 2000 pi: milliradians (Philips: slope 1.53455,
      intercept -3142 on 12 bits; dcm2niix's Philips notes) -> radians.
    - One turn = 2 pi: radians; = 360: degrees.
    - 12 bits with slope 1 and intercept 0 (0..4095), or slope 2 and intercept -4096
      (-4096..4094): Siemens' 12-bit phase (shared/reference/BRIEF.md).
    """
    slope = _float(ds, "RescaleSlope", 1.0) or 1.0
    intercept = _float(ds, "RescaleIntercept", 0.0) or 0.0
    bits = int(ds.get("BitsStored") or 12)
    rtype = _text(ds, "RescaleType").lower()
    turn = abs(slope) * 2.0 ** bits
    rescale = f"slope {slope:g}, intercept {intercept:g}, {bits} bits"

    def near(x):
        return abs(turn - x) <= UNIT_TOLERANCE * x

    if rtype == "mrad" or near(2000 * math.pi):
        why = "Rescale Type mrad" if rtype == "mrad" else f"{bits} bits x slope {slope:g} = 2000 pi"
        return "radians", 1e-3, f"milliradians ({why}; {rescale}), divided by 1000"
    if near(2 * math.pi) or rtype in ("rad", "radians"):
        return "radians", 1.0, f"radians ({rescale})"
    if near(360.0) or rtype in ("deg", "degrees"):
        return "degrees", 1.0, f"degrees ({rescale})"
    if bits == 12 and (slope, intercept) in ((1.0, 0.0), (2.0, -4096.0)):
        rescaled = ", rescaled" if slope != 1.0 else ""
        return "siemens", 1.0, f"Siemens 12-bit integers 0..4095 for one turn{rescaled} ({rescale})"
    return "auto", 1.0, f"units not stated by the headers ({rescale}): detected from the values"


# ------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------
def _header_facts(stacks: list) -> dict:
    ds = stacks[0].files[0][1]
    field_t = _float(ds, "MagneticFieldStrength")
    return {"manufacturer": _text(ds, "Manufacturer") or None,
            "field_strength_t": field_t if field_t and field_t > 0 else None}


def read_dicom_folder(folder, *, series_uids=(), series_numbers=()) -> Acquisition:
    """The GRE acquisition of a DICOM folder as Volumes, with what its headers say.

    Parameters
    ----------
    folder : str or Path
        Any folder tree holding DICOM files (other files are ignored). Not modified.
    series_uids, series_numbers : sequence
        Series the user picked (``--series`` / ``--series-number``); the series completing their
        acquisition are added.

    Returns
    -------
    Acquisition
        ``magnitude`` with ``phase`` (or ``real`` + ``imag``; then ``magnitude`` is their modulus
        unless a magnitude series exists), 3D or 4D (echoes first, by echo time); echo times in
        seconds; phase units (:func:`phase_storage`) and handedness (Manufacturer); provenance
        listing the series used and those skipped (with the reason).

    Raises
    ------
    InputError
        No usable acquisition (the message lists each series and why it was skipped; a magnitude
        and phase on different grids are named), two candidates (listed, with the flag to pick
        one), a missing or repeated slice (the series named), unreadable pixels.
    """
    from . import phase as phase_mod

    root = Path(folder).expanduser()
    series = index_folder(root)
    cand = _choose(root, series, tuple(series_uids or ()), tuple(series_numbers or ()))
    tes = cand.echo_times()
    stacks = cand.stacks
    frames: dict = {}  # a multi-frame file holding several components / echoes is decoded once
    mag = _read_component(stacks, MAGNITUDE, tes, frames)
    pha = _read_component(stacks, PHASE, tes, frames)
    real = imag = None
    if pha is None:
        real = _read_component(stacks, REAL, tes, frames)
        imag = _read_component(stacks, IMAG, tes, frames)
    del frames
    if mag is None:
        re_, im_ = real.array, imag.array
        mag = real.with_array(np.abs(phase_mod.complex_from_real_imag(re_, im_)).astype(np.float32),
                              "magnitude (modulus of real + imaginary)")
    for other in (pha, real, imag):
        if other is not None:
            _same_grid(mag, other)
    facts = _header_facts(stacks)
    hand, why = handedness_from_manufacturer(facts["manufacturer"])
    prov = {"source": f"DICOM folder {root}", **facts,
            "echo_times_s": [t / 1000.0 for t in tes if t is not None] or None,
            "series_used": [dict(s.record(), role=" + ".join(COMPONENT_NAMES[c] for c in "MPRI" if any(
                                st.component == c for st in s.stacks if st in stacks)))
                            for s in cand.series],
            "skipped": [s.record() if s.skipped else dict(s.record(), reason="not part of the acquisition used ("
                        + " + ".join(st.label for st in s.stacks) + ")")
                        for s in series if s not in cand.series],
            "handedness_reason": why}
    acq = Acquisition(magnitude=mag, phase=pha, real=real, imag=imag, handedness=hand, provenance=prov)
    acq.echo_times = tuple(prov["echo_times_s"] or ())
    if pha is not None:
        first = next(st for st in stacks if st.component == PHASE).files[0][1]
        units, scale, text = phase_storage(first)
        if scale != 1.0:
            pha = pha.with_array(pha.array * np.float32(scale), pha.name)
            acq.phase = pha
        acq.phase_units = units
        prov["phase_storage"] = text
    else:
        prov["phase_storage"] = "real + imaginary (phase = their angle, radians)"
    return acq


def read_vendor_swi(source, *, series_uids=(), series_numbers=()) -> Acquisition:
    """The scanner's own SWI (no phase) from a DICOM folder or an image file.

    A DICOM folder must hold one SWI series (Image Type SWI / SWAN, or a derived series so
    described), or the series picked with ``--series`` / ``--series-number``. A minimum- (or
    maximum-) intensity projection is refused: its slices are slabs through the head, on
    which the gyri cannot be localised. An image file is read as the SWI; a JSON sidecar beside
    it (dcm2niix, BIDS) whose ImageType or SeriesDescription names a projection is refused too.

    Returns
    -------
    Acquisition
        ``swi`` (3D) and provenance marked :data:`~MotorBandSignLib.acquisition.VENDOR_SWI_NOTE`.
    """
    from . import io

    p = Path(source).expanduser()
    if not p.exists():
        raise InputError(f"--swi {p}: not found. Give the scanner's SWI series folder or image file.")
    if p.is_file():
        sidecar = _sidecar(p)
        desc = " ".join(str(x) for x in (sidecar.get("SeriesDescription", ""), sidecar.get("ProtocolName", "")))
        itype = [str(x).upper() for x in sidecar.get("ImageType", [])]
        if any(w in itype for w in _PROJECTION_WORDS) or _PROJECTION_DESCRIPTION.search(desc):
            raise _projection_error(f"--swi {p}", f"its sidecar {p.name.split('.')[0]}.json says "
                                    f"{'/'.join(itype) or desc}")
        swi = io.read_volume(p, what="SWI image")
        prov = {"source": f"image file {p}", "vendor_swi": True,
                "manufacturer": sidecar.get("Manufacturer"), "field_strength_t": sidecar.get("MagneticFieldStrength")}
        return Acquisition(swi=swi, provenance=prov)
    series = index_folder(p)
    picked = _select(series, tuple(series_uids or ()), tuple(series_numbers or ()))
    if series_uids or series_numbers:
        proj = [s for s in picked if s.derived == "projection"]
        if proj:
            raise _projection_error(proj[0].name, "its Image Type or description names a projection")
        swis = picked
    else:
        swis = [s for s in series if s.derived == "swi"]
        if not swis:
            proj = [s for s in series if s.derived == "projection"]
            if proj:
                raise _projection_error(f"--swi {p}", f"it holds only {proj[0].name}, a projection")
            raise InputError(f"--swi {p}: no SWI series found (Image Type SWI/SWAN or a derived series named SWI). "
                             "Series seen: " + "; ".join(s.name for s in series) + ". Pick it with --series-number N.")
    if len(swis) > 1:
        raise InputError(f"--swi {p}: {len(swis)} SWI series: " + "; ".join(f"{s.name} (UID {s.uid})" for s in swis)
                         + ". Pick one with --series UID or --series-number N.")
    s = swis[0]
    comp = _component(s.files[0][1]) or MAGNITUDE
    te = _float(s.files[0][1], "EchoTime")
    stack = Stack(s, comp, None if te is None else round(te, 3), list(s.files))
    swi = _read_stack(stack, _check_stack(stack))
    facts = _header_facts([stack])
    prov = {"source": f"DICOM folder {p}", "vendor_swi": True, **facts,
            "series_used": [dict(s.record(), role="vendor SWI")],
            "skipped": [x.record() for x in series if x is not s]}
    return Acquisition(swi=swi, provenance=prov)


def _projection_error(what: str, why: str) -> InputError:
    return InputError(f"{what} is a minimum-intensity projection ({why}): a projection through a slab cannot be "
                      f"localised. Give the scanner's SWI series itself (not its mIP), or magnitude and phase.")


def _sidecar(p: Path) -> dict:
    import json

    name = p.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    side = p.with_name(name + ".json")
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{side}: not a readable JSON sidecar ({exc}). Fix or remove it.") from None
    return data if isinstance(data, dict) else {}

