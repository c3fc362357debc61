"""Results the archive (PACS) takes: DICOM Segmentation, Parametric Map and Structured Report.

``write_dicom_results(result, sources, folder)`` writes, with highdicom, next to the other
outputs:

- ``ribbon_seg.dcm``: the ribbon (posterior bank and control cortex, left and right) as a DICOM
  Segmentation (PS3.3 A.51), one segment per ribbon label;
- ``heatmap_pm.dcm``: the hypointensity z-map as a DICOM Parametric Map (PS3.3 A.75), float
  values with a real-world value mapping;
- ``measurements_sr.dcm``: the measurements as an Enhanced/Comprehensive 3D SR Measurement
  Report (TID 1500): per hemisphere and per region a measurement group (TID 1411) that
  references its segment of the Segmentation, with the bank/control ratio, grade, median z,
  hypointense fraction and bank volume, and whether a band is present; a case group with the
  pattern, the laterality index, the total grade and the diffuse flag; the run's warnings as
  TEXT items of the report.

All three reference the source series (the magnitude images the result's grid came from).
``sources`` is a list of pydicom datasets or file paths: the CLI passes the files of the
``--magnitude`` DICOM series; any reader that keeps its source datasets can pass them. Inputs
without DICOM provenance are refused with :class:`~MotorBandSignLib.errors.InputError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .volume import LPS_TO_RAS

__all__ = ["DICOM_FILES", "load_sources", "sources_on_grid", "write_dicom_results", "require_dicom_sources"]

#: Files written into the DICOM output folder.
DICOM_FILES = ("ribbon_seg.dcm", "heatmap_pm.dcm", "measurements_sr.dcm")

#: Coding scheme designator of this software's own codes: designators starting with "99" are
#: private (local) coding schemes (DICOM PS3.3 section 8.2.2, Coding Scheme Designator).
PRIVATE_SCHEME = "99MBS"
#: Series numbers of the derived series (DICOM allows any; these keep them apart from the
#: scanner's, which rarely go above a few hundred). Our choice.
SERIES_NUMBERS = {"seg": 9901, "pm": 9902, "sr": 9903}
#: A source slice sits on the result grid when its first voxel is within this many voxels of a
#: grid point and its row/column directions agree to this cosine tolerance.
GRID_TOLERANCE_VOXELS = 0.01
DIRECTION_TOLERANCE = 1e-4


def require_dicom_sources(sources, what: str) -> list:
    """Refuse a missing source list with the message the user reads (what to give instead)."""
    if sources:
        return list(sources)
    raise InputError(
        f"--dicom-out needs DICOM input: {what} has no DICOM provenance (no source series for the "
        "Segmentation, Parametric Map and Structured Report to reference). Give the scanner's DICOM export "
        "(--dicom DIR, or --magnitude DIR for one series folder), or leave out --dicom-out (the NIfTI and HTML "
        "results are written either way).")


#: Patient and General Study attributes of Type 2 (PS3.3 C.7.1.1, C.7.2.1): present but possibly
#: empty. Anonymised exports often drop them; the derived objects copy them, so a source without
#: one gets it empty (on a copy: the source files are never changed).
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")


def load_sources(sources) -> list:
    """pydicom datasets from datasets or file paths (pixel data not needed, not read), with the
    Type 2 patient/study attributes present (empty where the source lacks them)."""
    import copy

    import pydicom

    out = []
    for s in sources:
        if isinstance(s, pydicom.Dataset):
            ds = copy.deepcopy(s)
        else:
            try:
                ds = pydicom.dcmread(str(s), stop_before_pixels=True)
            except (OSError, pydicom.errors.InvalidDicomError) as exc:
                raise InputError(f"--dicom-out: cannot read the source DICOM file {s} ({exc}).") from None
        for kw in TYPE2_PATIENT_STUDY:
            if kw not in ds:
                setattr(ds, kw, "")
        if "StudyInstanceUID" not in ds or "SeriesInstanceUID" not in ds:
            raise InputError(f"--dicom-out: the source DICOM file {s if not isinstance(s, pydicom.Dataset) else ''} has "
                             "no Study/Series Instance UID, which the results must reference; leave out --dicom-out.")
        out.append(ds)
    return out


def sources_on_grid(sources, grid) -> list:
    """The source datasets in the order of the grid's slices (array axis k), checked to lie on it.

    Each single-frame source image must have the grid's rows x columns and orientation, and
    its first voxel (Image Position (Patient), DICOM PS3.3 C.7.6.2) on the grid point (0, 0, k)
    of a distinct k; every k must be covered. Raises InputError naming what does not fit.
    """
    ds = load_sources(sources)
    nk, nj, ni = grid.shape
    lps = LPS_TO_RAS @ grid.ijk_to_ras  # grid in LPS (DICOM's patient coordinates)
    col_dir = lps[:3, 0] / np.linalg.norm(lps[:3, 0])  # along i: increasing column index
    row_dir = lps[:3, 1] / np.linalg.norm(lps[:3, 1])  # along j: increasing row index
    inv = np.linalg.inv(lps)
    by_k = {}
    for d in ds:
        uid = getattr(d, "SOPInstanceUID", "?")
        if int(getattr(d, "NumberOfFrames", 1) or 1) != 1 or "ImagePositionPatient" not in d:
            raise InputError(f"--dicom-out: source image {uid} is not a single-frame slice with a position; "
                             "give the magnitude series as the scanner wrote it (one slice per file).")
        if (int(d.Rows), int(d.Columns)) != (nj, ni):
            raise InputError(f"--dicom-out: source image {uid} has {d.Rows} x {d.Columns} pixels, the result grid "
                             f"{nj} x {ni}: the sources are not the series the result was computed on.")
        iop = np.asarray(d.ImageOrientationPatient, dtype=np.float64)
        if not (np.allclose(iop[:3], col_dir, atol=DIRECTION_TOLERANCE)
                and np.allclose(iop[3:], row_dir, atol=DIRECTION_TOLERANCE)):
            raise InputError(f"--dicom-out: source image {uid} is oriented {np.round(iop, 4).tolist()}, the result "
                             "grid differently: the sources are not the series the result was computed on.")
        ijk = inv[:3, :3] @ np.asarray(d.ImagePositionPatient, dtype=np.float64) + inv[:3, 3]
        k = int(np.rint(ijk[2]))
        if not (np.all(np.abs(ijk - [0.0, 0.0, k]) < GRID_TOLERANCE_VOXELS) and 0 <= k < nk) or k in by_k:
            raise InputError(f"--dicom-out: source image {uid} at {list(d.ImagePositionPatient)} mm is not on a "
                             "slice of the result grid (or repeats one): the sources are not the series the result "
                             "was computed on.")
        by_k[k] = d
    if len(by_k) != nk:
        missing = sorted(set(range(nk)) - set(by_k))
        raise InputError(f"--dicom-out: the source series has {len(by_k)} slices for a result grid of {nk} "
                         f"(slices {missing[:5]}{'...' if len(missing) > 5 else ''} missing).")
    return [by_k[k] for k in range(nk)]


def _code(value: str, meaning: str):
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


def _equipment() -> dict:
    from . import __version__

    return {"manufacturer": "MotorBandSign", "manufacturer_model_name": "MotorBandSign",
            "software_versions": str(__version__), "device_serial_number": "0"}


def _algorithm():
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from . import __version__

    return hd.AlgorithmIdentificationSequence(name="MotorBandSign", version=str(__version__),
                                              family=codes.cid7162.MorphologicalOperations)


def segmentation(result, sources: list):
    """The ribbon as a DICOM Segmentation (labels 1..4 -> segments 1..4) over ``sources``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from .ribbon import SEGMENT_NAMES

    labels = np.asarray(result.ribbon.array, dtype=np.uint8)
    descriptions = []
    for value in sorted(SEGMENT_NAMES):
        side = codes.SCT.Left if value in (1, 3) else codes.SCT.Right
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=int(value), segment_label=str(SEGMENT_NAMES[value])[:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.CerebralCortex,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(),
            anatomic_regions=[side]))
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=SERIES_NUMBERS["seg"],
        sop_instance_uid=generate_uid(), instance_number=1, series_description="MotorBandSign ribbon",
        content_label="RIBBON", content_description="Posterior bank of the precentral gyrus and control cortex",
        omit_empty_frames=False, **_equipment())


#: Units of dimensionless quantities (a ratio, a z-score, a fraction, a grade): UCUM "1"
#: ("no units", DICOM PS3.16 CID 7181 / UCUM).
def _no_units():
    from pydicom.sr.codedict import codes

    return codes.UCUM.NoUnits


def parametric_map(result, sources: list):
    """The SWI hypointensity z-map as a DICOM Parametric Map (float32 frames) over ``sources``."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    z = np.asarray(result.heatmap.array, dtype=np.float32)
    lo, hi = float(z.min()), float(z.max())
    if hi <= lo:
        hi = lo + 1.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="Z", lut_explanation="Darkness z vs control cortex (robust, per hemisphere and region)",
        unit=_no_units(), value_range=(lo, hi), slope=1.0, intercept=0.0,
        quantity_definition=_code("MBS030", "Hypointensity z-score"))
    threshold = float(result.params.z_threshold)
    return hd.pm.ParametricMap(
        source_images=sources, pixel_array=z, series_instance_uid=generate_uid(), series_number=SERIES_NUMBERS["pm"],
        sop_instance_uid=generate_uid(), instance_number=1, contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=threshold, window_width=2.0 * threshold)],
        series_description="MotorBandSign heatmap", content_label="HEATMAP", **_equipment())


#: The measurements of metrics.json that go into the SR, per group: (key, private code, meaning).
_NUMBERS = (("band_contrast", "MBS001", "Bank/control median SWI ratio"),
            ("grade", "MBS002", "Motor band grade (0-2)"),
            ("z_median", "MBS003", "Median hypointensity z of the bank"),
            ("hypointense_fraction", "MBS004", "Hypointense fraction of the bank"))
_CASE_NUMBERS = (("laterality_index", "MBS011", "Laterality index (L-R)/(L+R)"),
                 ("total_grade", "MBS012", "Total motor band grade"))
_PATTERNS = {"bilateral": "MBS021", "left": "MBS022", "right": "MBS023", "absent": "MBS024", "not measured": "MBS025"}


def _measurements(values: dict) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    out = [hd.sr.Measurement(name=_code(code, meaning), value=float(values[key]), unit=_no_units())
           for key, code, meaning in _NUMBERS if values.get(key) is not None]
    if values.get("volume_ml") is not None:
        out.append(hd.sr.Measurement(name=codes.SCT.Volume, value=float(values["volume_ml"]),
                                     unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter")))
    return out


def _yes_no(flag: bool):
    from pydicom.sr.codedict import codes

    return codes.SCT.Yes if flag else codes.SCT.No


def structured_report(result, sources: list, seg):
    """The measurements of ``result.metrics`` as a TID 1500 Measurement Report (Comprehensive 3D SR)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from .heatmap import BANK

    m = result.metrics
    band = _code("MBS010", "Motor band sign present")
    groups = []
    for side in ("left", "right"):
        h = m["hemispheres"][side]
        laterality = codes.SCT.Left if side == "left" else codes.SCT.Right
        site = [hd.sr.FindingSite(anatomic_location=codes.SCT.CerebralCortex, laterality=laterality)]
        ref = hd.sr.ReferencedSegment.from_segmentation(seg, segment_number=BANK[side])
        parts = [(f"{side} posterior bank", h)] + [(f"{side} posterior bank, {name} region", r)
                                                   for name, r in (h.get("regions") or {}).items()]
        for label, values in parts:
            qual = ([hd.sr.QualitativeEvaluation(band, _yes_no(values["band_present"]))]
                    if values.get("measured") else [])
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label),
                referenced_segment=ref, finding_type=codes.SCT.CerebralCortex, finding_sites=site,
                measurements=_measurements(values) or None, qualitative_evaluations=qual or None))
    case_numbers = [hd.sr.Measurement(name=_code(code, meaning), value=float(m[key]), unit=_no_units())
                    for key, code, meaning in _CASE_NUMBERS if m.get(key) is not None]
    pattern = str(m.get("pattern"))
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="motor band sign, both sides"),
        measurements=case_numbers or None,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(_code("MBS020", "Motor band pattern"),
                                        _code(_PATTERNS.get(pattern, "MBS025"), pattern)),
            hd.sr.QualitativeEvaluation(_code("MBS026", "Nonspecific diffuse cortical darkening"),
                                        _yes_no(bool(m.get("nonspecific_diffuse"))))]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(), procedure_reported=codes.LN.BrainMRI,
        imaging_measurements=groups, title=codes.cid7021.ImagingMeasurementReport)
    # The run's warnings, whole, as TEXT items of the report's root container.
    root = report[0]
    for w in m.get("warnings") or []:
        root.ContentSequence.append(hd.sr.TextContentItem(
            name=_code("MBS040", "Warning"), value=str(w), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return hd.sr.Comprehensive3DSR(
        evidence=list(sources) + [seg], content=report, series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBERS["sr"], sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="MotorBandSign", series_description="MotorBandSign measurements", is_complete=True)


def write_dicom_results(result, sources, folder) -> list:
    """Write :data:`DICOM_FILES` into ``folder`` (created); returns their paths.

    Parameters
    ----------
    result : pipeline.Result
        A finished run (its grid is the source series' grid).
    sources : list of pydicom.Dataset or path
        The source series (the magnitude images), any order.
    folder : path

    Raises
    ------
    InputError
        No sources, or sources that are not the series of the result's grid.
    """
    src = sources_on_grid(require_dicom_sources(sources, "the magnitude"), result.ribbon)
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    seg = segmentation(result, src)
    pm = parametric_map(result, src)
    sr = structured_report(result, src, seg)
    paths = []
    for name, ds in zip(DICOM_FILES, (seg, pm, sr)):
        p = d / name
        ds.save_as(str(p), enforce_file_format=True)
        paths.append(p)
    return paths
