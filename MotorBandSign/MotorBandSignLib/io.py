"""Reading and writing image files as Volumes (SimpleITK; LPS on disk, RAS in memory).

The Slicer front end reads through :mod:`MotorBandSignLib.mrml`; the command line and plain
Python use these functions. Writes are atomic: a temporary file in the target directory,
then ``os.replace``, so a file is complete or absent.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError
from .volume import Volume

def make_temp(directory, suffix: str = "") -> str:
    """A temporary file in ``directory`` with the permissions a plain open() would give
    (mkstemp makes it owner-only), for write-then-rename."""
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=".tmp-", dir=str(directory))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in (".nii.gz", ".seg.nrrd"):
        if name.endswith(s):
            return s
    return path.suffix.lower()


#: First bytes of a gzip stream, and the header sizes of NIfTI-1 / NIfTI-2 (sizeof_hdr).
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI_HEADER_SIZES = (348, 540)


def _is_gzip(p: Path) -> bool:
    with open(p, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _nifti_header_size(head: bytes) -> int | None:
    """The NIfTI-1 / NIfTI-2 header size (348 / 540) if ``head`` (the first 4 bytes) is one."""
    for order in ("little", "big"):
        if len(head) == 4 and int.from_bytes(head, order) in _NIFTI_HEADER_SIZES:
            return int.from_bytes(head, order)
    return None


def _stored_bytes(p: Path, gz: bool) -> int:
    """Bytes of the (decompressed) file; raises EOFError / OSError / zlib.error on a damaged stream."""
    if not gz:
        return p.stat().st_size
    n = 0
    with gzip.open(p, "rb") as fh:
        while chunk := fh.read(1 << 22):
            n += len(chunk)
    return n


def _damage(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "its compressed data stops before the end"
    return f"{type(exc).__name__}: {str(exc)[:120]}"


def _truncated(what: str, p: Path, detail: str) -> InputError:
    return InputError(f"{what}: file truncated or corrupt: {p} ({detail}). Copy it again from the scanner, "
                      "PACS or archive (an interrupted copy or download leaves such a file).")


#: qform and sform that place some corner of the grid further apart than this (mm) disagree.
QFORM_SFORM_TOLERANCE_MM = 0.5


def _qform_sform_conflict(hdr, shape) -> tuple | None:
    """(qform code, sform code, largest corner distance in mm, qform affine, sform affine) when
    both transforms are set and place the grid differently; else None."""
    q, qc = hdr.get_qform(coded=True)
    s, sc = hdr.get_sform(coded=True)
    if not qc or not sc or q is None or s is None:
        return None
    n = [max(int(x), 1) for x in (list(shape) + [1, 1, 1])[:3]]
    corners = np.array([[i, j, k, 1.0] for i in (0, n[0] - 1) for j in (0, n[1] - 1) for k in (0, n[2] - 1)])
    d = float(np.max(np.linalg.norm((corners @ q.T - corners @ s.T)[:, :3], axis=1)))
    if not np.isfinite(d) or d <= QFORM_SFORM_TOLERANCE_MM:
        return None
    return int(qc), int(sc), d, q, s


def check_nifti(path, what: str = "image") -> tuple | None:
    """Refuse a damaged NIfTI file, or one holding NaN or +/-Inf voxels (:class:`InputError`).

    Damaged: the (decompressed) file holds fewer bytes than its header promises (``vox_offset``
    + voxels x bytes per voxel), or its gzip stream is broken. Readers differ on such files (ITK
    fills the missing part with zeros; nibabel raises EOFError or OSError), so the check is made
    before any reader sees the file. Non-finite values are refused because ITK's NIfTI reader
    turns them into 0 silently. A file that does not start like a NIfTI is left to the image
    reader, which says it cannot read it.

    Returns (message, qform, sform) when the header's qform and sform both are set and disagree
    (the message has a ``{used}`` slot for the transform the reader took), else None.
    """
    from nibabel.imageglobals import LoggingOutputSuppressor

    with LoggingOutputSuppressor():  # nibabel logs its header repairs to stderr: not the user's concern
        return _check_nifti(Path(path), what)


def _check_nifti(p: Path, what: str) -> tuple | None:
    import zlib

    import nibabel as nib

    gz = False
    try:
        gz = _is_gzip(p)
        stored = _stored_bytes(p, gz)
    except (EOFError, OSError, zlib.error) as exc:
        if gz:
            raise _truncated(what, p, _damage(exc)) from None
        return  # unreadable: the image reader says so
    try:
        img = nib.load(str(p))
        hdr = img.header
        # The image's header copy has vox_offset reset; the data proxy keeps the file's offset.
        offset = getattr(img.dataobj, "offset", None)
        offset = int(hdr.get_data_offset() if offset is None else offset)
        expected = offset + int(np.prod(hdr.get_data_shape(), dtype=np.int64)) * np.dtype(hdr.get_data_dtype()).itemsize
    except Exception:  # noqa: BLE001 - nibabel cannot parse it: damaged NIfTI, or another kind of file
        try:
            with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
                size = _nifti_header_size(fh.read(4))
        except (EOFError, OSError, zlib.error):
            size = None
        if size is not None and stored < size:
            raise _truncated(what, p, f"the header is cut short: the file holds {stored} bytes") from None
        return  # not a NIfTI nibabel understands: the image reader says what it is
    if stored < expected:
        kind = "decompressed " if gz else ""
        raise _truncated(what, p, f"the header promises {expected} bytes, the {kind}file holds {stored}")
    try:
        n_nan, n_inf = _count_non_finite(img, hdr)
    except Exception as exc:  # noqa: BLE001 - any failure to read the voxels the header describes is damage
        raise _truncated(what, p, _damage(exc)) from None
    _refuse_counts(n_nan, n_inf, what, p)
    try:
        conflict = _qform_sform_conflict(hdr, hdr.get_data_shape())
    except Exception:  # noqa: BLE001 - an odd header the geometry check of read_volume judges
        conflict = None
    if conflict is None:
        return None
    qc, sc, d, q, s = conflict
    return (f"{what}: {p} has a qform (code {qc}) and an sform (code {sc}) that place the image up to {d:.1f} mm "
            "apart; the geometry used is the one ITK and Slicer read ({used}), while FSL and nibabel use the sform. "
            "If that is the wrong one, make the two agree (e.g. fslorient -copysform2qform or -copyqform2sform) "
            "and run again.", q, s)


#: Voxel data are checked for NaN / Inf in blocks of about this many bytes (bounded memory).
_CHECK_BLOCK_BYTES = 64 * 2**20


def _count_non_finite(img, hdr) -> tuple[int, int]:
    """NaN and +/-Inf voxels of a NIfTI image, read in blocks along its slowest axis. Integer
    data without scaling cannot hold them and are not read (their size was checked already)."""
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    unscaled = slope == 1.0 and inter == 0.0
    if np.dtype(hdr.get_data_dtype()).kind in "iub" and unscaled:
        return 0, 0
    shape = hdr.get_data_shape()
    per_slab = int(np.prod(shape[:-1], dtype=np.int64)) * np.dtype(hdr.get_data_dtype()).itemsize
    step = max(1, _CHECK_BLOCK_BYTES // max(per_slab, 1))
    n_nan = n_inf = 0
    for start in range(0, shape[-1], step):
        block = np.asanyarray(img.dataobj[..., start:start + step])
        if block.dtype.kind in "fc":
            n_nan += int(np.count_nonzero(np.isnan(block)))
            n_inf += int(np.count_nonzero(np.isinf(block)))
    return n_nan, n_inf


def refuse_non_finite(array: np.ndarray, what: str, source) -> None:
    """Refuse NaN / +/-Inf voxels, saying how many of each and what to do."""
    a = np.asarray(array)
    if a.dtype.kind not in "fc":
        return
    _refuse_counts(int(np.isnan(a).sum()), int(np.isinf(a).sum()), what, source)


def _refuse_counts(n_nan: int, n_inf: int, what: str, source) -> None:
    if not (n_nan or n_inf):
        return
    found = " and ".join(x for x in (f"{n_nan} NaN voxel(s)" if n_nan else "",
                                     f"{n_inf} infinite (+/-Inf) voxel(s)" if n_inf else "") if x)
    raise InputError(
        f"{what}: {source} has {found}. Replace them (e.g. by 0 outside the head) before "
        "running, or give the scanner's original image.")


def _refuse_bad_geometry(v: Volume, what: str, p: Path) -> None:
    """Refuse a voxel-to-world matrix that is not finite or not invertible (a damaged header)."""
    m = v.ijk_to_ras[:3, :3]
    if np.all(np.isfinite(v.ijk_to_ras)) and np.all(v.spacing > 0) and abs(np.linalg.det(m)) > 1e-12:
        return
    raise InputError(
        f"{what}: {p} has an invalid geometry in its header (voxel size {np.round(v.spacing, 4).tolist()} mm, "
        "orientation not finite or not invertible). Convert the scan again (e.g. dcm2niix) or fix the header.")


def read_volume(path, *, what: str = "image", allow_4d: bool = False, name: str | None = None) -> Volume:
    """Read a NIfTI / NRRD / MetaImage file or a DICOM series directory into a Volume.

    Parameters
    ----------
    path : str or Path
        File, or a directory holding one DICOM series.
    what : str
        What the file should be (used in error messages, e.g. "phase image").
    allow_4d : bool
        Accept a 4D file (echoes / components along the 4th axis, returned first).

    Notes
    -----
    NIfTI files are checked first (:func:`check_nifti`: truncation, corruption, NaN / Inf).
    Geometry is ITK's reading of the header, the same as Slicer's. A DICOM series keeps the
    paths of its files in ``meta["dicom_files"]`` (sorted along the slices). When the qform and the sform
    are both set and disagree, that reading is kept and a note naming the transform used is put
    in ``meta["geometry_warning"]`` (the pipeline lists it among the run's warnings). A
    non-finite or singular geometry is refused.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what}: file not found: {p}. Check the path (expected a NIfTI, NRRD or DICOM directory).")
    note = None
    dicom_files = None
    try:
        if p.is_dir():
            reader = sitk.ImageSeriesReader()
            ids = reader.GetGDCMSeriesIDs(str(p))
            if not ids:
                raise InputError(f"{what}: {p} is a directory without a DICOM series. Give a NIfTI/NRRD file or a DICOM series folder.")
            if len(ids) > 1:
                raise InputError(f"{what}: {p} holds {len(ids)} DICOM series; put one series per folder.")
            dicom_files = list(reader.GetGDCMSeriesFileNames(str(p), ids[0]))
            reader.SetFileNames(dicom_files)
            img = reader.Execute()
        else:
            note = check_nifti(p, what) if _suffix(p) in (".nii", ".nii.gz") else None
            img = sitk.ReadImage(str(p))
    except InputError:
        raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise InputError(
            f"{what}: cannot read {p} as an image ({first[:200]}). Expected a NIfTI (.nii/.nii.gz), NRRD or a DICOM series folder."
        ) from None
    if img.GetNumberOfComponentsPerPixel() > 1:
        raise InputError(f"{what}: {p} has {img.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar image.")
    dim = img.GetDimension()
    if dim == 4:
        if not allow_4d:
            raise InputError(
                f"{what}: {p} is 4D (size {img.GetSize()}); expected a 3D volume. "
                "Give one echo, or pass the echoes with their echo times (--te) where multi-echo is accepted."
            )
        size = list(img.GetSize())
        vols = []
        for t in range(size[3]):
            ext = sitk.Extract(img, size[:3] + [0], [0, 0, 0, t])
            vols.append(Volume.from_sitk(ext))
        v = vols[0]
        _refuse_bad_geometry(v, what, p)
        arr = np.stack([x.array for x in vols]).astype(np.float32)
        refuse_non_finite(arr, what, p)
        out = Volume(arr, v.ijk_to_ras, name or p.name, {"path": str(p)})
        _note_geometry(out, note)
        return out
    if dim != 3:
        raise InputError(f"{what}: {p} is {dim}D; expected a 3D volume.")
    v = Volume.from_sitk(img, name or p.name)
    _refuse_bad_geometry(v, what, p)
    refuse_non_finite(v.array, what, p)  # NRRD, MetaImage and DICOM keep NaN / Inf as stored
    v.meta["path"] = str(p)
    if dicom_files:  # provenance: the source series (DICOM outputs reference it)
        v.meta["dicom_files"] = dicom_files
    _note_geometry(v, note)
    return v


def _note_geometry(v: Volume, note) -> None:
    """Record a qform/sform conflict as ``v.meta["geometry_warning"]``, naming the transform
    the reader used (the pipeline reports it among the run's warnings)."""
    if not note:
        return
    text, q, s = note
    m = v.ijk_to_ras  # RAS, as nibabel's affines
    used = ("the qform" if np.allclose(m, q, atol=1e-3) else "the sform" if np.allclose(m, s, atol=1e-3)
            else "neither exactly")
    v.meta["geometry_warning"] = text.replace("{used}", used)


def write_volume(vol: Volume, path, array: np.ndarray | None = None) -> Path:
    """Write ``vol`` (or ``array`` on its grid) to NIfTI / NRRD atomically; returns the path."""
    import SimpleITK as sitk

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    a = vol.array if array is None else array
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if a.ndim == 4:
        imgs = [vol.to_sitk(x) for x in a]
        img = sitk.JoinSeries(imgs)
    else:
        img = vol.to_sitk(a)
    suffix = _suffix(p)
    tmp = make_temp(p.parent, suffix)
    try:
        sitk.WriteImage(img, tmp, True)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def write_text(path, text: str) -> Path:
    """Write a UTF-8 text file atomically (temp file beside it, then rename; no temp left on failure)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp(p.parent)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p
