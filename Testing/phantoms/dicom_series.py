"""Scanner-like exports of a small phantom case, written with pydicom (test machinery).

:func:`complex_head` is the small synthetic head (:mod:`phantoms.small_head`) with a phase that
matters: the left posterior bank carries paramagnetic phase (negative, right-handed) as well as
a darker magnitude, so a wrong phase sign or scale changes its scores; air has the uniform
phase of noise (Gudbjartsson & Patz 1995, MRM 34:910), as a scanner's phase image does.

:func:`write_series` writes one classic MR Image Storage series (one file per slice) with the
geometry of a RAS affine and the vendor's fields; :func:`write_vendor_export` writes a whole
export of one convention (Siemens, GE, Philips) as the issue describes them;
:func:`write_enhanced` writes one Enhanced MR Image Storage file (every slice, component and echo
as frames, geometry in functional groups) and :func:`write_enhanced_export` an enhanced export
as current Siemens (XA: magnitude and phase series) and Philips (one file) software writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phantoms.small_head import small_head

#: Left bank: magnitude factor and phase (radians, right-handed) of the simulated band.
BAND_MAGNITUDE = 0.85
BAND_PHASE_RAD = -0.5
#: Brain magnitude scale: the stored integers keep 3-4 significant digits.
MAGNITUDE_SCALE = 10.0


def complex_head(seed: int = 0) -> tuple:
    """(magnitude float32, right-handed phase in radians float32, ribbon uint8, RAS affine)."""
    mag, _, rib, aff = small_head(seed=seed, band_factor=BAND_MAGNITUDE)
    rng = np.random.default_rng(seed + 100)
    brain = mag > 20
    phase = np.where(brain, rng.normal(0.0, 0.05, mag.shape), rng.uniform(-np.pi, np.pi, mag.shape))
    phase[rib == 1] += BAND_PHASE_RAD
    return (mag * MAGNITUDE_SCALE).astype(np.float32), phase.astype(np.float32), rib, aff


def _uid(tag: str) -> str:
    import pydicom.uid

    return pydicom.uid.generate_uid(entropy_srcs=[tag])


def _header(sop_class, sop: str, *, series_uid: str, series_number: int, description: str, manufacturer: str,
            study: str, frame_of_reference: str, field_strength: float):
    """A new image's dataset: file meta, SOP, patient, study, series and frame of reference."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.MagneticFieldStrength = field_strength
    ds.PatientName = "Phantom^Small"
    ds.PatientID = "PHANTOM"
    ds.StudyInstanceUID = _uid(study)
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = _uid(frame_of_reference)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    return ds


def write_series(folder, stored: np.ndarray, affine: np.ndarray, *, series_number: int, description: str,
                 image_type, manufacturer: str, echo_time_ms: float = 20.0, echo_number: int = 1,
                 slope: float = 1.0, intercept: float = 0.0, rescale_type: str | None = None,
                 frame_of_reference: str = "for-1", study: str = "study-1", series_uid: str | None = None,
                 signed: bool = False, private: dict | None = None, skip_slices=(), first_instance: int = 1,
                 field_strength: float = 3.0) -> list:
    """Write ``stored`` (k, j, i integers) as one file per slice; returns the paths.

    ``affine`` maps (i, j, k) to RAS mm; the DICOM geometry is its LPS form (PS3.3 C.7.6.2.1.1).
    ``private`` maps (group, element) -> (VR, value, creator). ``skip_slices`` leaves slices out.
    """
    import pydicom

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    col_step, row_step = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    iop = np.concatenate([lps[:3, 0] / col_step, lps[:3, 1] / row_step])
    series_uid = series_uid or _uid(f"{study}-{series_number}-{description}-{image_type}")
    paths = []
    nk, nj, ni = stored.shape
    for k in range(nk):
        if k in skip_slices:
            continue
        ds = _header(pydicom.uid.MRImageStorage, _uid(f"{series_uid}-{echo_number}-{image_type}-{first_instance + k}"),
                     series_uid=series_uid, series_number=series_number, description=description,
                     manufacturer=manufacturer, study=study, frame_of_reference=frame_of_reference,
                     field_strength=field_strength)
        ds.ProtocolName = description
        ds.InstanceNumber = first_instance + k
        ds.ImageType = list(image_type)
        ds.ScanningSequence = "GR"
        ds.EchoTime = echo_time_ms
        ds.EchoNumbers = echo_number
        ds.ImageOrientationPatient = [round(float(x), 6) for x in iop]
        ds.ImagePositionPatient = [round(float(x), 4) for x in (lps @ [0.0, 0.0, float(k), 1.0])[:3]]
        ds.PixelSpacing = [round(float(row_step), 6), round(float(col_step), 6)]
        ds.SliceThickness = round(float(np.linalg.norm(lps[:3, 2])), 6)
        ds.Rows, ds.Columns = nj, ni
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12 if not signed else 16
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        if rescale_type:
            ds.RescaleType = rescale_type
        for (group, elem), (vr, value, creator) in (private or {}).items():
            block = ds.private_block(group, creator, create=True)
            block.add_new(elem & 0xFF, vr, value)
        ds.PixelData = np.ascontiguousarray(stored[k].astype(np.int16 if signed else np.uint16)).tobytes()
        path = folder / f"IM_{series_number:03d}_{echo_number}_{first_instance + k:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def siemens_phase_integers(phase_rad: np.ndarray) -> np.ndarray:
    """Siemens 12-bit phase: 0..4095 for -pi..pi (shared/reference/BRIEF.md)."""
    return np.mod(np.round((phase_rad + np.pi) * 4096 / (2 * np.pi)), 4096).astype(np.int32)


#: Philips phase rescale (dcm2niix issue 463 shows these values): milliradians on 12 bits.
PHILIPS_PHASE_SLOPE, PHILIPS_PHASE_INTERCEPT = 1.53455, -3142.0
#: A Philips-like magnitude rescale (display value = stored x slope).
PHILIPS_MAGNITUDE_SLOPE = 2.5


def write_vendor_export(folder, vendor: str, mag, phase_rad, affine, *, series_base: int = 5,
                        frame_of_reference: str = "for-1", echo_times_ms=(20.0,), study: str = "study-1") -> dict:
    """One acquisition in ``vendor``'s convention; ``mag`` / ``phase_rad`` 3D or 4D (echoes first).

    siemens: magnitude series N (M) and phase series N+1 (P, stored 0..4095, slope 2, intercept
    -4096), echoes in one series. ge: one series holding real and imaginary (GE private image
    type 2 / 3, signed 16 bit) of the left-handed phase. philips: one series holding magnitude
    (slope 2.5) and phase (milliradians: slope 1.53455, intercept -3142, Rescale Type mrad).
    Returns {"magnitude"/"phase"/"real"/"imag": series number}.
    """
    mags = mag[None] if mag.ndim == 3 else mag
    phs = phase_rad[None] if phase_rad.ndim == 3 else phase_rad
    common = dict(frame_of_reference=frame_of_reference, study=study)
    out = {}
    for e, te in enumerate(echo_times_ms):
        echo = dict(echo_time_ms=te, echo_number=e + 1, **common)
        if vendor == "siemens":
            write_series(folder, np.round(mags[e]).astype(np.int32), affine, series_number=series_base,
                         description="t2_swi_tra", image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
                         manufacturer="SIEMENS", **echo)
            write_series(folder, siemens_phase_integers(phs[e]), affine, series_number=series_base + 1,
                         description="t2_swi_tra", image_type=("ORIGINAL", "PRIMARY", "P", "ND"),
                         manufacturer="SIEMENS", slope=2.0, intercept=-4096.0, **echo)
            out.update(magnitude=series_base, phase=series_base + 1)
        elif vendor == "ge":
            left = -phs[e]  # GE stores left-handed phase
            uid = _uid(f"{study}-ge-{series_base}")
            for comp, code, part in (("real", 2, np.cos(left)), ("imag", 3, np.sin(left))):
                write_series(folder, np.round(mags[e] * part).astype(np.int32), affine, series_number=series_base,
                             description="SWAN 3D", image_type=("ORIGINAL", "PRIMARY", "OTHER"),
                             manufacturer="GE MEDICAL SYSTEMS", signed=True, series_uid=uid,
                             private={(0x0043, 0x102F): ("SS", code, "GEMS_PARM_01")},
                             first_instance=1 + 1000 * code, **echo)
                out[comp] = series_base
        elif vendor == "philips":
            uid = _uid(f"{study}-philips-{series_base}")
            stored_phase = np.clip(np.round((phs[e] * 1000.0 - PHILIPS_PHASE_INTERCEPT) / PHILIPS_PHASE_SLOPE), 0, 4095)
            write_series(folder, np.round(mags[e] / PHILIPS_MAGNITUDE_SLOPE).astype(np.int32), affine,
                         series_number=series_base, description="SWIp", series_uid=uid,
                         image_type=("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"), manufacturer="Philips",
                         slope=PHILIPS_MAGNITUDE_SLOPE, private={(0x2005, 0x1011): ("CS", "M", "Philips MR Imaging DD 001")},
                         **echo)
            write_series(folder, stored_phase.astype(np.int32), affine, series_number=series_base,
                         description="SWIp", series_uid=uid, image_type=("ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"),
                         manufacturer="Philips", slope=PHILIPS_PHASE_SLOPE, intercept=PHILIPS_PHASE_INTERCEPT,
                         rescale_type="mrad", first_instance=1001,
                         private={(0x2005, 0x1011): ("CS", "P", "Philips MR Imaging DD 001")}, **echo)
            out.update(magnitude=series_base, phase=series_base)
        else:
            raise ValueError(vendor)
    return out


def write_localiser(folder, series_number: int = 1, study: str = "study-1") -> list:
    """A 3-plane-localiser-like series: a small sagittal image on another frame of reference."""
    img = np.full((3, 32, 32), 300, np.int32)
    aff = np.array([[0.0, 0.0, 5.0, -5.0], [8.0, 0.0, 0.0, -128.0], [0.0, 8.0, 0.0, -128.0], [0, 0, 0, 1.0]])
    return write_series(folder, img, aff, series_number=series_number, description="localizer",
                        image_type=("ORIGINAL", "PRIMARY", "M", "ND"), manufacturer="SIEMENS",
                        frame_of_reference="for-loc", study=study, echo_time_ms=4.0)


def write_enhanced(path, parts: list, affine: np.ndarray, *, series_number: int, description: str,
                   manufacturer: str, frame_of_reference: str = "for-1", study: str = "study-1",
                   field_strength: float = 3.0, shuffle_seed: int | None = 0, functional_groups: bool = True) -> Path:
    """One Enhanced MR Image Storage file holding every slice of every part as a frame.

    ``parts``: dicts with ``stored`` (k, j, i unsigned 12-bit integers), ``frame_type`` (4
    values), ``component`` (MAGNITUDE / PHASE / REAL / IMAGINARY), ``echo_time_ms``, ``slope``,
    ``intercept`` and optionally ``rescale_type``. Orientation and pixel spacing go in the shared
    functional groups; position, frame type, echo and rescale in the per-frame groups (PS3.3
    C.7.6.16, C.8.13.5). Frames are written in a shuffled order (``shuffle_seed``; None keeps
    part / slice order), as a reader must not rely on it. ``functional_groups=False`` leaves the
    per-frame groups out (a file whose frames cannot be placed).
    """
    import pydicom
    from pydicom.dataset import Dataset

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    col_step, row_step = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    iop = np.concatenate([lps[:3, 0] / col_step, lps[:3, 1] / row_step])
    frames = [(p, k) for p in range(len(parts)) for k in range(parts[p]["stored"].shape[0])]
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(frames))
        frames = [frames[i] for i in order]
    nk, nj, ni = parts[0]["stored"].shape
    series_uid = _uid(f"{study}-enhanced-{series_number}-{description}")
    ds = _header(pydicom.uid.EnhancedMRImageStorage, _uid(f"{series_uid}-sop"), series_uid=series_uid,
                 series_number=series_number, description=description, manufacturer=manufacturer, study=study,
                 frame_of_reference=frame_of_reference, field_strength=field_strength)
    ds.InstanceNumber = 1
    comps = {p["component"] for p in parts}
    ds.ImageType = ["ORIGINAL", "PRIMARY", "MIXED" if len(comps) > 1 else parts[0]["frame_type"][2], "NONE"]
    ds.ComplexImageComponent = "MIXED" if len(comps) > 1 else parts[0]["component"]
    ds.Rows, ds.Columns = nj, ni
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [round(float(row_step), 6), round(float(col_step), 6)]
    pm.SliceThickness = round(float(np.linalg.norm(lps[:3, 2])), 6)
    po = Dataset()
    po.ImageOrientationPatient = [round(float(x), 6) for x in iop]
    shared.PixelMeasuresSequence = [pm]
    shared.PlaneOrientationSequence = [po]
    ds.SharedFunctionalGroupsSequence = [shared]
    per = []
    for p, k in frames:
        part = parts[p]
        f = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [round(float(x), 4) for x in (lps @ [0.0, 0.0, float(k), 1.0])[:3]]
        ft = Dataset()
        ft.FrameType = list(part["frame_type"])
        ft.ComplexImageComponent = part["component"]
        echo = Dataset()
        echo.EffectiveEchoTime = float(part["echo_time_ms"])
        pvt = Dataset()
        pvt.RescaleSlope = part.get("slope", 1.0)
        pvt.RescaleIntercept = part.get("intercept", 0.0)
        pvt.RescaleType = part.get("rescale_type") or "US"
        fc = Dataset()
        fc.InStackPositionNumber = k + 1
        f.PlanePositionSequence = [pp]
        f.MRImageFrameTypeSequence = [ft]
        f.MREchoSequence = [echo]
        f.PixelValueTransformationSequence = [pvt]
        f.FrameContentSequence = [fc]
        per.append(f)
    if functional_groups:
        ds.PerFrameFunctionalGroupsSequence = per
    data = np.stack([parts[p]["stored"][k] for p, k in frames]).astype(np.uint16)
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_enhanced_export(folder, vendor: str, mag, phase_rad, affine, *, series_base: int = 5,
                          echo_times_ms=(20.0,), shuffle_seed: int | None = 0) -> list:
    """An enhanced (multi-frame) export of one acquisition; ``mag`` / ``phase_rad`` 3D or 4D.

    siemens: as Siemens XA software writes it, a magnitude file (series N) and a phase file
    (series N+1, 0..4095 for one turn: slope 2, intercept -4096), every echo in each. philips:
    one file holding magnitude and phase (milliradians, Rescale Type mrad) of every echo.
    Returns the paths written.
    """
    mags = mag[None] if mag.ndim == 3 else mag
    phs = phase_rad[None] if phase_rad.ndim == 3 else phase_rad
    folder = Path(folder)
    if vendor == "siemens":
        m = [dict(stored=np.round(mags[e]).astype(np.int32), frame_type=("ORIGINAL", "PRIMARY", "M", "NONE"),
                  component="MAGNITUDE", echo_time_ms=te) for e, te in enumerate(echo_times_ms)]
        p = [dict(stored=siemens_phase_integers(phs[e]), frame_type=("ORIGINAL", "PRIMARY", "P", "NONE"),
                  component="PHASE", echo_time_ms=te, slope=2.0, intercept=-4096.0)
             for e, te in enumerate(echo_times_ms)]
        return [write_enhanced(folder / "mag.dcm", m, affine, series_number=series_base, description="t2_swi_tra",
                               manufacturer="SIEMENS", shuffle_seed=shuffle_seed),
                write_enhanced(folder / "pha.dcm", p, affine, series_number=series_base + 1,
                               description="t2_swi_tra", manufacturer="SIEMENS", shuffle_seed=shuffle_seed)]
    if vendor == "philips":
        parts = []
        for e, te in enumerate(echo_times_ms):
            stored_phase = np.clip(np.round((phs[e] * 1000.0 - PHILIPS_PHASE_INTERCEPT) / PHILIPS_PHASE_SLOPE), 0, 4095)
            parts.append(dict(stored=np.round(mags[e] / PHILIPS_MAGNITUDE_SLOPE).astype(np.int32),
                              frame_type=("ORIGINAL", "PRIMARY", "M_FFE", "M_FFE"), component="MAGNITUDE",
                              echo_time_ms=te, slope=PHILIPS_MAGNITUDE_SLOPE))
            parts.append(dict(stored=stored_phase.astype(np.int32),
                              frame_type=("ORIGINAL", "PRIMARY", "PHASE", "P_FFE"), component="PHASE",
                              echo_time_ms=te, slope=PHILIPS_PHASE_SLOPE, intercept=PHILIPS_PHASE_INTERCEPT,
                              rescale_type="mrad"))
        return [write_enhanced(folder / "swip.dcm", parts, affine, series_number=series_base, description="SWIp",
                               manufacturer="Philips", shuffle_seed=shuffle_seed)]
    raise ValueError(vendor)
