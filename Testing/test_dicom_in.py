"""DICOM folders in (issue 13, items 1 and 3): series found, vendor conventions, bad exports.

Each export is written here with pydicom from one small phantom case (phantoms.dicom_series:
the small head with a band in the left bank's magnitude and phase) in one vendor's convention;
a run on it must give the scores of the NIfTI radians input of the same case (within 0.02) and
say in metrics.json and the report what the headers said. Runs use the phantom's ribbon, so no
localisation is needed (a run takes seconds).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from MotorBandSignLib import cli, dicom_in, io
from MotorBandSignLib.acquisition import VENDOR_SWI_NOTE
from MotorBandSignLib.errors import InputError
from MotorBandSignLib.volume import Volume
from phantoms.dicom_series import (BAND_MAGNITUDE, PHILIPS_PHASE_INTERCEPT, PHILIPS_PHASE_SLOPE, complex_head,
                                   siemens_phase_integers, write_enhanced, write_enhanced_export, write_localiser,
                                   write_series, write_vendor_export)

#: Scores of a DICOM run and of the NIfTI radians run of the same case agree within this
#: (issue 13: "scores within 0.02"); the quantisation of stored integers is far below it.
SCORE_TOLERANCE = 0.02


def _cli(capsys, *args) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("motorband")]
    return code, (err[0] if err else "")


def _scores(metrics: dict) -> dict:
    out = {}
    for side in ("left", "right"):
        h = metrics["hemispheres"][side]
        out[side] = h["band_contrast"]
        for name, r in h["regions"].items():
            out[f"{side} {name}"] = r.get("band_contrast")
    return out


def _hashes(folder: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("dicom_case")
    mag, phase, rib, aff = complex_head()
    v = Volume(mag, aff, "magnitude")
    files = {"magnitude": io.write_volume(v, d / "magnitude.nii.gz"),
             "phase": io.write_volume(v, d / "phase.nii.gz", phase),
             "ribbon": io.write_volume(v, d / "ribbon.nii.gz", rib)}
    return {"dir": d, "mag": mag, "phase": phase, "rib": rib, "aff": aff, "files": files}


def _run(out: Path, *source, ribbon) -> dict:
    code = cli.main([str(a) for a in ("run", *source, "--ribbon", ribbon, "--out", out, "--no-scene")])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def reference(case):
    f = case["files"]
    return _run(case["dir"] / "ref", "--magnitude", f["magnitude"], "--phase", f["phase"], "--phase-units", "radians",
                ribbon=f["ribbon"])


@pytest.fixture(scope="module")
def exports(case, tmp_path_factory):
    d = tmp_path_factory.mktemp("exports")
    out = {}
    for vendor in ("siemens", "ge", "philips"):
        write_vendor_export(d / vendor / "DICOM", vendor, case["mag"], case["phase"], case["aff"])
        out[vendor] = d / vendor
    write_localiser(d / "siemens" / "DICOM" / "loc")
    # the scanner's SWI and its mIP beside magnitude and phase, as a Siemens SWI protocol exports them
    swi = np.round(case["mag"]).astype(np.int32)
    write_series(d / "siemens" / "DICOM" / "swi", swi, case["aff"], series_number=7, description="SWI_Images",
                 image_type=("DERIVED", "PRIMARY", "M", "SWI", "NORM"), manufacturer="SIEMENS")
    write_series(d / "siemens" / "DICOM" / "mip", swi, case["aff"], series_number=8, description="mIP_Images(SW)",
                 image_type=("DERIVED", "PRIMARY", "MNIP", "M"), manufacturer="SIEMENS")
    (d / "siemens" / "DICOM" / "README.txt").write_text("not a DICOM file")
    return out


# Expected facts per vendor: what the report must state.
DETECTED = {
    "siemens": ("Siemens 12-bit integers 0..4095 for one turn, rescaled (slope 2, intercept -4096", "siemens",
                "right, from Manufacturer 'SIEMENS'"),
    "ge": ("real + imaginary", None, "left, from Manufacturer 'GE MEDICAL SYSTEMS' (GE stores left-handed phase)"),
    "philips": ("milliradians (Rescale Type mrad", "radians", "right, from Manufacturer 'Philips'"),
}


@pytest.mark.parametrize("vendor", ["siemens", "ge", "philips"])
def test_vendor_export_scores_as_nifti_radians(vendor, case, reference, exports):
    before = _hashes(exports[vendor])
    out = exports[vendor] / "out"
    m = _run(out, "--dicom", exports[vendor] / "DICOM", ribbon=case["files"]["ribbon"])
    assert _hashes(exports[vendor] / "DICOM") == {k: v for k, v in before.items() if "/DICOM/" in k}
    assert m["pattern"] == reference["pattern"] == "left"
    ref, got = _scores(reference), _scores(m)
    assert ref.keys() == got.keys()
    for k in ref:
        if ref[k] is None:
            assert got[k] is None, k
        else:
            assert abs(got[k] - ref[k]) <= SCORE_TOLERANCE, (k, got[k], ref[k])
    storage, units, hand = DETECTED[vendor]
    inp = m["qc"]["input"]
    assert storage in inp["phase_storage"]
    assert inp["handedness"] == hand
    if units:
        assert inp["phase_units"] == f"{units}, from the headers"
        assert m["parameters"]["phase_units"] == units
    assert m["parameters"]["handedness"] == hand.split(",")[0]
    assert inp["field_strength_t"] == 3.0 and inp["echo_times_s"] == [0.02]
    report = (out / "report.html").read_text()
    assert "Input (what the headers said)" in report
    assert storage in report.replace("&#x27;", "'") and hand.split(" (")[0] in report.replace("&#x27;", "'")
    if vendor == "siemens":
        assert [(s["series_number"], s["role"]) for s in inp["series_used"]] == [(5, "magnitude"), (6, "phase")]
        assert [(s["series_number"], s["reason"]) for s in inp["skipped"]] == [
            (1, "localiser"), (7, "the scanner's SWI (derived; use --swi to run on it)"),
            (8, "minimum/maximum-intensity projection (derived)")]
        assert ("series used: 5 't2_swi_tra' (magnitude), 6 't2_swi_tra' (phase); skipped: 1 'localizer' "
                "(localiser), 7 'SWI_Images' (the scanner's SWI") in report.replace("&#x27;", "'")
    if vendor == "ge":
        assert [(s["series_number"], s["role"]) for s in inp["series_used"]] == [(5, "real + imaginary")]


def test_stated_handedness_overrides_the_headers_and_changes_the_scores(case, reference, exports, tmp_path):
    """GE read as right-handed (stated): the band's paramagnetic phase is taken for diamagnetic,
    the phase mask no longer darkens it, and the run says the flag overrode the headers."""
    m = _run(tmp_path / "out", "--dicom", exports["ge"] / "DICOM", "--handedness", "right",
             ribbon=case["files"]["ribbon"])
    assert m["parameters"]["handedness"] == "right"
    assert m["qc"]["input"]["handedness"].startswith("right, stated (--handedness); the headers said left")
    assert m["hemispheres"]["left"]["band_contrast"] - reference["hemispheres"]["left"]["band_contrast"] > 0.05


def test_multi_echo_export_runs_with_the_echo_times_of_the_headers(case, tmp_path):
    tes = (10.0, 20.0)
    write_vendor_export(tmp_path / "in", "siemens", np.stack([case["mag"], case["mag"] * 0.8]),
                        np.stack([case["phase"] * (te / 20.0) for te in tes]), case["aff"], echo_times_ms=tes)
    m = _run(tmp_path / "out", "--dicom", tmp_path / "in", ribbon=case["files"]["ribbon"])
    assert m["parameters"]["echo_times"] == [0.01, 0.02] and m["qc"]["input"]["echo_times_from"] == "headers"
    assert m["qc"]["n_echoes"] == 2 and m["qc"]["echo_times"] == [0.01, 0.02]
    assert m["pattern"] == "left"


def test_multi_echo_series_assemble_by_echo_time(case, tmp_path):
    tes = (10.0, 20.0)
    phases = np.stack([case["phase"] * (te / 20.0) for te in tes])
    mags = np.stack([case["mag"], case["mag"] * 0.8])
    write_vendor_export(tmp_path, "siemens", mags, phases, case["aff"], echo_times_ms=tes)
    acq = dicom_in.read_dicom_folder(tmp_path)
    assert acq.magnitude.array.shape == (2, 32, 40, 40) and acq.phase.array.shape == (2, 32, 40, 40)
    assert acq.echo_times == (0.01, 0.02)
    assert np.allclose(acq.magnitude.array, np.round(mags), atol=0.5)
    # the rescaled values are the dcm2niix form of Siemens phase: 2 x stored - 4096
    assert np.array_equal(acq.phase.array, 2.0 * siemens_phase_integers(phases) - 4096)
    assert np.allclose(acq.magnitude.ijk_to_ras, case["aff"])


@pytest.mark.parametrize("vendor", ["siemens", "philips"])
def test_enhanced_multi_frame_export_scores_as_nifti_radians(vendor, case, reference, tmp_path):
    """An Enhanced MR export (Siemens XA: a magnitude and a phase file; Philips: one file with
    both), frames in shuffled order, runs like the classic export and the NIfTI input."""
    paths = write_enhanced_export(tmp_path / "in", vendor, case["mag"], case["phase"], case["aff"])
    before = _hashes(tmp_path / "in")
    m = _run(tmp_path / "out", "--dicom", tmp_path / "in", ribbon=case["files"]["ribbon"])
    assert _hashes(tmp_path / "in") == before
    assert m["pattern"] == reference["pattern"] == "left"
    ref, got = _scores(reference), _scores(m)
    for k in ref:
        assert (got[k] is None) if ref[k] is None else abs(got[k] - ref[k]) <= SCORE_TOLERANCE, (k, got[k], ref[k])
    inp = m["qc"]["input"]
    assert inp["echo_times_s"] == [0.02] and inp["field_strength_t"] == 3.0
    roles = [(s["series_number"], s["role"], s["files"]) for s in inp["series_used"]]
    if vendor == "siemens":
        assert len(paths) == 2 and roles == [(5, "magnitude", 1), (6, "phase", 1)]
        assert "Siemens 12-bit integers 0..4095 for one turn" in inp["phase_storage"]
    else:
        assert len(paths) == 1 and roles == [(5, "magnitude + phase", 1)]
        assert "milliradians (Rescale Type mrad" in inp["phase_storage"]


def test_enhanced_multi_echo_frames_assemble_by_echo_time_and_position(case, tmp_path):
    """Every frame takes its echo, component, rescale and position from its functional groups."""
    tes = (10.0, 20.0)
    phases = np.stack([case["phase"] * (te / 20.0) for te in tes])
    mags = np.stack([case["mag"], case["mag"] * 0.8])
    write_enhanced_export(tmp_path, "philips", mags, phases, case["aff"], echo_times_ms=tes, shuffle_seed=3)
    acq = dicom_in.read_dicom_folder(tmp_path)
    assert acq.magnitude.array.shape == (2, 32, 40, 40) and acq.phase.array.shape == (2, 32, 40, 40)
    assert acq.echo_times == (0.01, 0.02) and acq.phase_units == "radians"
    assert np.allclose(acq.magnitude.array, np.round(mags / 2.5) * 2.5, atol=1e-3)
    stored = np.clip(np.round((phases * 1000.0 - PHILIPS_PHASE_INTERCEPT) / PHILIPS_PHASE_SLOPE), 0, 4095)
    assert np.allclose(acq.phase.array, (stored * PHILIPS_PHASE_SLOPE + PHILIPS_PHASE_INTERCEPT) / 1000.0, atol=1e-4)
    assert np.allclose(acq.magnitude.ijk_to_ras, case["aff"])


def test_multi_frame_file_without_functional_groups_is_skipped_with_the_reason(case, tmp_path, capsys):
    part = dict(stored=np.round(case["mag"]).astype(np.int32), frame_type=("ORIGINAL", "PRIMARY", "M", "NONE"),
                component="MAGNITUDE", echo_time_ms=20.0)
    write_enhanced(tmp_path / "in" / "mf.dcm", [part], case["aff"], series_number=4, description="odd export",
                   manufacturer="SIEMENS", functional_groups=False)
    code, msg = _cli(capsys, "run", "--dicom", tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2
    assert ("series 4 'odd export': multi-frame DICOM without per-frame functional groups (the frames cannot be "
            "placed): convert the export with dcm2niix") in msg
    assert not (tmp_path / "out").exists()


def test_geometry_is_the_affine_of_an_oblique_sagittal_export(case, tmp_path):
    """Pixel spacing, orientation and position (PS3.3 C.7.6.2.1.1) read back to the written affine."""
    c, s = np.cos(0.3), np.sin(0.3)
    aff = np.array([[0.0, 0.0, 1.5, 10.0], [0.9 * c, -0.9 * s, 0.0, -50.0], [0.9 * s, 0.9 * c, 0.0, -20.0],
                    [0, 0, 0, 1.0]])
    stored = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    write_series(tmp_path, stored, aff, series_number=3, description="mag", manufacturer="SIEMENS",
                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    write_series(tmp_path, stored % 4096, aff, series_number=4, description="pha", manufacturer="SIEMENS",
                 image_type=("ORIGINAL", "PRIMARY", "P", "ND"), slope=2.0, intercept=-4096.0)
    acq = dicom_in.read_dicom_folder(tmp_path)
    assert np.allclose(acq.magnitude.ijk_to_ras, aff, atol=1e-4)
    assert np.array_equal(acq.magnitude.array, stored)
    # the same series alone, read by ITK's GDCM series reader (io.read_volume, as Slicer reads it)
    write_series(tmp_path / "alone", stored, aff, series_number=3, description="mag", manufacturer="SIEMENS",
                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"))
    itk = io.read_volume(tmp_path / "alone")
    assert np.allclose(itk.ijk_to_ras, acq.magnitude.ijk_to_ras, atol=1e-4)
    assert np.array_equal(itk.array, acq.magnitude.array)


# ------------------------------------------------------------------------------------------
# Bad exports: exit 2, a message naming the series
# ------------------------------------------------------------------------------------------
def _siemens(folder, case, **kw):
    return write_vendor_export(folder, "siemens", case["mag"], case["phase"], case["aff"], **kw)


def test_folder_without_gre_series(case, tmp_path, capsys):
    write_localiser(tmp_path / "in")
    write_series(tmp_path / "in", np.round(case["mag"]).astype(np.int32), case["aff"], series_number=3,
                 description="t1_mprage", image_type=("ORIGINAL", "PRIMARY", "M", "ND"), manufacturer="SIEMENS",
                 echo_time_ms=2.5, frame_of_reference="for-t1")
    code, msg = _cli(capsys, "run", "--dicom", tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2
    assert "no gradient-echo magnitude + phase (or real + imaginary) series" in msg
    assert "series 1 'localizer': localiser" in msg and "series 3 't1_mprage': only magnitude, TE 2.5 ms" in msg
    assert not (tmp_path / "out").exists()


def test_only_a_minimum_intensity_projection(case, tmp_path, capsys):
    write_series(tmp_path / "in", np.round(case["mag"]).astype(np.int32), case["aff"], series_number=7,
                 description="mIP_Images(SW)", image_type=("DERIVED", "PRIMARY", "MNIP", "M"), manufacturer="SIEMENS")
    code, msg = _cli(capsys, "run", "--dicom", tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2
    assert "series 7 'mIP_Images(SW)': minimum/maximum-intensity projection (derived)" in msg
    code, msg = _cli(capsys, "run", "--swi", tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2
    assert "it holds only series 7 'mIP_Images(SW)', a projection" in msg and "cannot be localised" in msg


def test_two_candidate_acquisitions_are_listed_and_one_can_be_picked(case, tmp_path, capsys):
    _siemens(tmp_path / "in", case, series_base=5)
    _siemens(tmp_path / "in", case, series_base=9)
    code, msg = _cli(capsys, "run", "--dicom", tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2
    assert "2 candidate acquisitions: (1) series 5 't2_swi_tra' (magnitude; UID" in msg
    assert "(2) series 9 't2_swi_tra' (magnitude; UID" in msg and "series 10 't2_swi_tra' (phase; UID" in msg
    assert "--series UID or --series-number N" in msg
    acq = dicom_in.read_dicom_folder(tmp_path / "in", series_numbers=[9])
    assert [s["series_number"] for s in acq.provenance["series_used"]] == [9, 10]
    with pytest.raises(InputError, match=r"--series-number 4: no such series in the folder"):
        dicom_in.read_dicom_folder(tmp_path / "in", series_numbers=[4])


def test_magnitude_and_phase_on_different_grids(case, tmp_path, capsys):
    d = tmp_path / "in"
    write_series(d, np.round(case["mag"]).astype(np.int32), case["aff"], series_number=5, description="swi_mag",
                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"), manufacturer="SIEMENS")
    write_series(d, siemens_phase_integers(case["phase"][:, :, :36]), case["aff"], series_number=6,
                 description="swi_pha", image_type=("ORIGINAL", "PRIMARY", "P", "ND"), manufacturer="SIEMENS",
                 slope=2.0, intercept=-4096.0)
    code, msg = _cli(capsys, "run", "--dicom", d, "--out", tmp_path / "out")
    assert code == 2
    assert ("magnitude series 5 'swi_mag' and phase series 6 'swi_pha' are of the same frame of reference and echo "
            "times but not on the same grid (40 x 40 vs 36 x 40 pixels)") in msg


def test_series_with_a_missing_slice(case, tmp_path, capsys):
    d = tmp_path / "in"
    write_series(d, np.round(case["mag"]).astype(np.int32), case["aff"], series_number=5, description="t2_swi_tra",
                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"), manufacturer="SIEMENS")
    write_series(d, siemens_phase_integers(case["phase"]), case["aff"], series_number=6, description="t2_swi_tra",
                 image_type=("ORIGINAL", "PRIMARY", "P", "ND"), manufacturer="SIEMENS", slope=2.0,
                 intercept=-4096.0, skip_slices=(12,))
    before = _hashes(d)
    code, msg = _cli(capsys, "run", "--dicom", d, "--out", tmp_path / "out")
    assert code == 2
    assert ("series 6 't2_swi_tra' (phase, TE 20 ms): 1 slice(s) missing between positions -10.00 and -6.00 mm "
            "along the slice normal (slice spacing 2.00 mm, 31 files)") in msg
    assert _hashes(d) == before and not (tmp_path / "out").exists()


def test_folder_without_dicom_files(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    code, msg = _cli(capsys, "run", "--dicom", tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2 and "no DICOM images found" in msg


# ------------------------------------------------------------------------------------------
# Vendor SWI only (item 3)
# ------------------------------------------------------------------------------------------
def test_vendor_swi_series_runs_marked_and_skips_its_mip(case, tmp_path):
    d = tmp_path / "in"
    swi = np.round(case["mag"] * np.where(case["rib"] == 1, 0.7, 1.0)).astype(np.int32)
    write_series(d, swi, case["aff"], series_number=8, description="SWI_Images",
                 image_type=("DERIVED", "PRIMARY", "M", "SWI", "NORM"), manufacturer="SIEMENS")
    write_series(d, swi, case["aff"], series_number=9, description="mIP_Images(SW)",
                 image_type=("DERIVED", "PRIMARY", "MNIP", "M"), manufacturer="SIEMENS")
    m = _run(tmp_path / "out", "--swi", d, ribbon=case["files"]["ribbon"])
    assert m["qc"]["phase_processing"] == VENDOR_SWI_NOTE
    assert m["qc"]["input"]["vendor_swi"] is True
    assert [s["series_number"] for s in m["qc"]["input"]["series_used"]] == [8]
    assert [s["series_number"] for s in m["qc"]["input"]["skipped"]] == [9]
    assert any(VENDOR_SWI_NOTE in w for w in m["warnings"])
    assert VENDOR_SWI_NOTE in (tmp_path / "out" / "report.html").read_text()
    h = m["hemispheres"]
    assert m["pattern"] == "left"
    # the vendor SWI's left bank is 0.7 x the magnitude, which holds the phantom's band already
    assert abs(h["left"]["band_contrast"] - 0.7 * BAND_MAGNITUDE) < 0.02
    assert abs(h["right"]["band_contrast"] - 1.0) < 0.02


def test_vendor_swi_file_with_a_projection_sidecar_is_refused(case, tmp_path, capsys):
    p = io.write_volume(Volume(case["mag"], case["aff"]), tmp_path / "sub-01_minIP.nii.gz")
    (tmp_path / "sub-01_minIP.json").write_text(json.dumps({"ImageType": ["DERIVED", "PRIMARY", "MNIP"]}))
    code, msg = _cli(capsys, "run", "--swi", p, "--out", tmp_path / "out")
    assert code == 2 and "is a minimum-intensity projection (its sidecar sub-01_minIP.json says" in msg


def test_scanner_swi_images_inside_the_series_and_a_t1_beside_it_are_left_out(case, tmp_path):
    """A Philips-like series holding magnitude, phase and the scanner's SWI images keeps the first
    two; a T1 on the same frame of reference is listed as not part of the acquisition."""
    d = tmp_path / "in"
    write_vendor_export(d, "philips", case["mag"], case["phase"], case["aff"], series_base=4)
    philips_uid = dicom_in.index_folder(d)[0].uid
    write_series(d, np.round(case["mag"]).astype(np.int32), case["aff"], series_number=4, description="SWIp",
                 series_uid=philips_uid, image_type=("DERIVED", "PRIMARY", "SWI", "M"), manufacturer="Philips",
                 first_instance=3001)
    write_series(d, np.round(case["mag"][:20]).astype(np.int32), case["aff"], series_number=2,
                 description="t1_mprage", image_type=("ORIGINAL", "PRIMARY", "M", "ND"), manufacturer="Philips",
                 echo_time_ms=2.5)
    acq = dicom_in.read_dicom_folder(d)
    used = acq.provenance["series_used"]
    assert [(s["series_number"], s["role"], s["ignored"]) for s in used] == [
        (4, "magnitude + phase", "32 image(s) of type swi ignored")]
    assert [(s["series_number"], s["reason"]) for s in acq.provenance["skipped"]] == [
        (2, "not part of the acquisition used (magnitude, TE 2.5 ms)")]
    assert acq.magnitude.array.shape == (32, 40, 40) and acq.phase_units == "radians"


@pytest.mark.parametrize("slope, intercept, bits, rtype, expected", [
    (2.0, -4096.0, 12, None, ("siemens", 1.0)),
    (1.0, 0.0, 12, None, ("siemens", 1.0)),
    (1.53455, -3142.0, 12, None, ("radians", 1e-3)),       # Philips milliradians without Rescale Type
    (1.0, -3142.0, 12, "mrad", ("radians", 1e-3)),
    (2 * np.pi / 4096, -np.pi, 12, None, ("radians", 1.0)),
    (360 / 4096, -180.0, 12, None, ("degrees", 1.0)),
    (1.0, 0.0, 16, None, ("auto", 1.0)),                   # nothing in the headers says: values decide
])
def test_phase_storage_from_the_rescale_of_the_stored_bits(slope, intercept, bits, rtype, expected):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept, ds.BitsStored = slope, intercept, bits
    if rtype:
        ds.RescaleType = rtype
    units, scale, text = dicom_in.phase_storage(ds)
    assert (units, scale) == expected
    assert f"slope {slope:g}, intercept {intercept:g}, {bits} bits" in text


def test_stated_phase_units_win_over_the_headers(case, exports):
    from MotorBandSignLib.acquisition import settle_parameters
    from MotorBandSignLib.params import Parameters

    acq = dicom_in.read_dicom_folder(exports["siemens"] / "DICOM")
    p = settle_parameters(acq, Parameters(), phase_units_given="rescale", handedness_given=None)
    assert (p.phase_units, p.handedness, p.echo_times) == ("rescale", "right", ())
    assert acq.provenance["phase_units"] == "rescale, stated (--phase-units); the headers said siemens"
    assert "phase: Siemens 12-bit integers" in acq.provenance["summary"]


@pytest.mark.slow
def test_vendor_swi_alone_is_localised_and_called_on_a_simulated_brain():
    """The whole route on the scanner's SWI only (no ribbon given): brain mask, registration and
    atlas localisation on the SWI, then heatmap and verdict. The "vendor" SWI is this package's
    SWI of the "left" phantom, stored without its phase. (Reduced form, by default: the
    small-head vendor SWI test above, with a given ribbon.)"""
    from MotorBandSignLib import phase as phase_mod, pipeline, swi as swi_mod
    from MotorBandSignLib.params import Parameters
    from phantoms import simulate as phantom

    case = phantom.fixture("left")
    rad, _, _ = phase_mod.to_radians(case.phase.array, "auto")
    swi = case.magnitude.with_array(swi_mod.compute_swi(case.magnitude.array, rad, case.magnitude.spacing_kji).swi,
                                    "vendor SWI")
    res = pipeline.run(pipeline.Inputs(magnitude=None, swi=swi), Parameters(localisation="atlas"))
    assert res.qc["phase_processing"] == VENDOR_SWI_NOTE
    assert res.metrics["pattern"] == case.expected_pattern == "left"
    assert res.metrics["hemispheres"]["left"]["band_present"] and not res.metrics["hemispheres"]["right"]["band_present"]


@pytest.mark.parametrize("vendor", ["siemens", "ge"])
def test_dicom_export_results_go_back_as_dicom_and_bids_derivatives(vendor, case, exports, tmp_path):
    """--dicom with --dicom-out: the Segmentation references the series the image was read from
    (series 5: Siemens' magnitude, GE's real + imaginary; not the localiser, SWI or mIP beside
    them); --bids-derivatives files the same run by --subject."""
    import pydicom

    out, deriv = tmp_path / "out", tmp_path / "derivatives" / "motorbandsign"
    code = cli.main([str(a) for a in ("run", "--dicom", exports[vendor], "--ribbon", case["files"]["ribbon"],
                                      "--out", out, "--no-scene", "--dicom-out", "--bids-derivatives", deriv,
                                      "--subject", "07")])
    assert code == 0
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in (exports[vendor] / "DICOM").rglob("*")
               if p.is_file() and p.suffix != ".txt"]
    mag_uids = {h.SeriesInstanceUID for h in headers if int(h.SeriesNumber) == 5}
    assert len(mag_uids) == 1
    seg = pydicom.dcmread(out / "dicom" / "ribbon_seg.dcm")
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID in mag_uids
    sr = pydicom.dcmread(out / "dicom" / "measurements_sr.dcm")
    assert sr.Modality == "SR"
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert sorted(p.name for p in (deriv / "sub-07" / "anat").glob("*ribbon_dseg*"))[0].startswith("sub-07_")

