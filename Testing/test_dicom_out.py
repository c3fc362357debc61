"""Results the archive takes (issue 13, item 5): `motorband run --dicom-out` on a DICOM series.

The small synthetic head (Testing/phantoms/small_head.py, 32 x 40 x 40 at 2 mm, with its ribbon
given) is written as an MR magnitude series with pydicom, oblique and LPS as a scanner writes
it; the phase and the ribbon go in as NIfTI on the same grid. The DICOM SEG must read back
(highdicom) to the ribbon of the run, the Parametric Map to its heatmap, and the SR must hold
the numbers of metrics.json.
"""

import json

import numpy as np
import pytest

highdicom = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

from MotorBandSignLib import cli, dicom_out, io  # noqa: E402
from MotorBandSignLib.errors import InputError  # noqa: E402
from MotorBandSignLib.ribbon import SEGMENT_NAMES  # noqa: E402
from MotorBandSignLib.volume import LPS_TO_RAS, Volume  # noqa: E402
from phantoms.small_head import small_head  # noqa: E402

#: Magnitude stored as integers x 10 with RescaleSlope 0.1 (as scanners store magnitudes).
SLOPE = 0.1


def oblique_grid(affine: np.ndarray, deg: float = 12.0) -> np.ndarray:
    """``affine`` turned by ``deg`` about R (an oblique axial acquisition)."""
    t = np.radians(deg)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return rot @ affine


def write_series(vol: Volume, folder, series_number: int = 3) -> list:
    """One MR Image Storage file per slice (k) of ``vol``, geometry from its matrix (LPS)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ vol.ijk_to_ras
    sp = vol.spacing
    col, row = lps[:3, 0] / sp[0], lps[:3, 1] / sp[1]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(vol.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "MR", "SIEMENS", series_number, k + 1
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "MBS-TEST", "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ImagePositionPatient = [float(x) for x in lps[:3, :3] @ [0, 0, k] + lps[:3, 3]]
        ds.ImageOrientationPatient = [float(x) for x in np.r_[col, row]]
        ds.PixelSpacing = [float(sp[1]), float(sp[0])]
        ds.SliceThickness = float(sp[2])
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = SLOPE, 0.0
        ds.PixelData = np.rint(vol.array[k] / SLOPE).astype(np.uint16).tobytes()
        p = folder / f"IM{k:04d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def dicom_run(tmp_path_factory):
    """`motorband run --dicom-out` on the magnitude series (oblique, LPS); phase and ribbon NIfTI."""
    d = tmp_path_factory.mktemp("dicom_out")
    mag, phase, rib, aff = small_head(seed=4, band_factor=0.7)
    grid = oblique_grid(aff)
    files = write_series(Volume(mag, grid), d / "series")
    ref = io.read_volume(d / "series")  # the grid as the reader decides it
    io.write_volume(ref.with_array(phase), d / "phase.nii.gz")
    io.write_volume(ref.with_array(rib), d / "ribbon.nii.gz")
    out = d / "out"
    code = cli.main(["run", "--magnitude", str(d / "series"), "--phase", str(d / "phase.nii.gz"),
                     "--ribbon", str(d / "ribbon.nii.gz"), "--out", str(out), "--no-scene", "--dicom-out"])
    assert code == 0
    return d, out, files, rib


def test_dicom_seg_reads_back_to_the_ribbon(dicom_run):
    d, out, files, rib = dicom_run
    assert sorted(p.name for p in (out / "dicom").iterdir()) == sorted(dicom_out.DICOM_FILES)
    seg = highdicom.seg.segread(out / "dicom" / "ribbon_seg.dcm")
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    uids = [s.SOPInstanceUID for s in sources]
    labels = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    np.testing.assert_array_equal(labels, rib)  # slice k of the series = array slice k
    assert {s.SegmentNumber: s.SegmentLabel for s in seg.SegmentSequence} == SEGMENT_NAMES
    written = io.read_volume(out / "ribbon.nii.gz")
    np.testing.assert_array_equal(written.array, rib)
    # it references the source series
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID


def test_parametric_map_holds_the_heatmap(dicom_run):
    d, out, files, rib = dicom_run
    pm = pydicom.dcmread(out / "dicom" / "heatmap_pm.dcm")
    heat = io.read_volume(out / "heatmap.nii.gz")
    frames = pm.pixel_array
    # each frame goes back to its slice by its position (highdicom orders the frames itself)
    lps_to_ijk = np.linalg.inv(LPS_TO_RAS @ heat.ijk_to_ras)
    for n, fg in enumerate(pm.PerFrameFunctionalGroupsSequence):
        ijk = lps_to_ijk[:3, :3] @ np.asarray(fg.PlanePositionSequence[0].ImagePositionPatient, float) + lps_to_ijk[:3, 3]
        assert np.allclose(ijk[:2], 0, atol=1e-3) and abs(ijk[2] - round(ijk[2])) < 1e-3
        np.testing.assert_allclose(frames[n], heat.array[int(round(ijk[2]))], atol=1e-6)
    assert len(frames) == heat.shape[0]
    assert heat.array[rib == 1].mean() > 1.0  # the darkened left bank
    rwv = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwv.LUTLabel == "Z" and rwv.MeasurementUnitsCodeSequence[0].CodeValue == "1"
    assert pm.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(files[0]).SeriesInstanceUID


def _sr_items(ds):
    """(tracking identifier, concept name, value) of every NUM / CODE / TEXT item of an SR, depth first."""
    out = []

    def walk(items, group):
        for it in items:
            name = it.ConceptNameCodeSequence[0].CodeMeaning
            if it.ValueType == "TEXT" and name == "Tracking Identifier":
                group = it.TextValue
        for it in items:
            name = it.ConceptNameCodeSequence[0].CodeMeaning
            if it.ValueType == "NUM":
                out.append((group, name, float(it.MeasuredValueSequence[0].NumericValue)))
            elif it.ValueType == "CODE":
                out.append((group, name, it.ConceptCodeSequence[0].CodeMeaning))
            elif it.ValueType == "TEXT":
                out.append((group, name, it.TextValue))
            if "ContentSequence" in it:
                walk(it.ContentSequence, group)

    walk(ds.ContentSequence, None)
    return out


def test_structured_report_holds_the_numbers_of_metrics_json(dicom_run):
    d, out, files, rib = dicom_run
    metrics = json.loads((out / "metrics.json").read_text())
    sr = pydicom.dcmread(out / "dicom" / "measurements_sr.dcm")
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    items = _sr_items(sr)
    num = {(g, n): v for g, n, v in items if isinstance(v, float)}
    expected = 0
    for side in ("left", "right"):
        h = metrics["hemispheres"][side]
        for label, values in [(f"{side} posterior bank", h)] + [(f"{side} posterior bank, {r} region", v)
                                                                 for r, v in h["regions"].items()]:
            for key, meaning in (("band_contrast", "Bank/control median SWI ratio"), ("grade", "Motor band grade (0-2)"),
                                 ("z_median", "Median hypointensity z of the bank"),
                                 ("hypointense_fraction", "Hypointense fraction of the bank"), ("volume_ml", "Volume")):
                if values.get(key) is None:
                    assert (label, meaning) not in num
                    continue
                assert num[(label, meaning)] == pytest.approx(values[key], rel=1e-6), (label, meaning)
                expected += 1
    assert expected >= 10  # both banks measured, with their regions
    case = "motor band sign, both sides"
    assert num[(case, "Laterality index (L-R)/(L+R)")] == pytest.approx(metrics["laterality_index"])
    codes = {(g, n): v for g, n, v in items if isinstance(v, str)}
    assert codes[(case, "Motor band pattern")] == metrics["pattern"] == "left"
    assert codes[("left posterior bank", "Motor band sign present")] == "Yes"
    assert codes[("right posterior bank", "Motor band sign present")] == "No"
    texts = [v for g, n, v in items if n == "Warning"]
    assert texts == metrics["warnings"]
    # highdicom reads it as a TID 1500 report with one group per bank and region, plus the case group
    report = highdicom.sr.srread(out / "dicom" / "measurements_sr.dcm")
    assert len(report.content.get_volumetric_roi_measurement_groups()) == 8
    evidence = {r.SeriesInstanceUID for r in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence}
    assert pydicom.dcmread(files[0]).SeriesInstanceUID in evidence


def test_nifti_input_with_dicom_out_is_refused_before_any_work(tmp_path, capsys):
    mag, phase, rib, aff = small_head(seed=1)
    v = Volume(mag, aff)
    io.write_volume(v, tmp_path / "mag.nii.gz")
    io.write_volume(v.with_array(phase), tmp_path / "phase.nii.gz")
    code = cli.main(["run", "--magnitude", str(tmp_path / "mag.nii.gz"), "--phase", str(tmp_path / "phase.nii.gz"),
                     "--out", str(tmp_path / "out"), "--dicom-out"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--dicom-out needs DICOM input: --magnitude {tmp_path / 'mag.nii.gz'} has no DICOM provenance" in err
    assert not (tmp_path / "out").exists()


def test_sources_not_on_the_result_grid_are_refused(dicom_run):
    d, out, files, rib = dicom_run
    from MotorBandSignLib import outputs

    result = outputs.load_result(out)
    with pytest.raises(InputError, match=r"the source series has 31 slices for a result grid of 32 \(slices \[5\] missing\)"):
        dicom_out.write_dicom_results(result, files[:5] + files[6:], d / "x")
    with pytest.raises(InputError, match="--dicom-out needs DICOM input"):
        dicom_out.write_dicom_results(result, [], d / "x")
    shifted = pydicom.dcmread(files[0])
    shifted.ImagePositionPatient = [float(x) + 0.7 for x in shifted.ImagePositionPatient]
    with pytest.raises(InputError, match="is not on a slice of the result grid"):
        dicom_out.write_dicom_results(result, [shifted] + files[1:], d / "x")
    assert not (d / "x").exists()
