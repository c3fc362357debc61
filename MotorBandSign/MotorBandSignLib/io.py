"""Reading and writing image files as Volumes (SimpleITK; LPS on disk, RAS in memory).

The Slicer front end reads through :mod:`MotorBandSignLib.mrml`; the command line and plain
Python use these functions. Writes are atomic: a temporary file in the target directory,
then ``os.replace``, so a file is complete or absent.
"""

from __future__ import annotations

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


def _refuse_nifti_nans(p: Path, what: str) -> None:
    """ITK's NIfTI reader turns NaN into 0 silently, so look at the stored values with nibabel."""
    import nibabel as nib

    try:
        img = nib.load(str(p))
    except Exception:  # noqa: BLE001 - SimpleITK read it; nibabel's opinion is only a check
        return
    if np.dtype(img.get_data_dtype()).kind != "f":
        return
    n = int(np.isnan(np.asanyarray(img.dataobj)).sum())
    if n:
        raise InputError(
            f"{what}: {p} has {n} NaN voxel(s). Replace them (e.g. by 0 outside the head) before "
            "running, or give the scanner's original image.")


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
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what}: file not found: {p}. Check the path (expected a NIfTI, NRRD or DICOM directory).")
    try:
        if p.is_dir():
            reader = sitk.ImageSeriesReader()
            ids = reader.GetGDCMSeriesIDs(str(p))
            if not ids:
                raise InputError(f"{what}: {p} is a directory without a DICOM series. Give a NIfTI/NRRD file or a DICOM series folder.")
            if len(ids) > 1:
                raise InputError(f"{what}: {p} holds {len(ids)} DICOM series; put one series per folder.")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(p), ids[0]))
            img = reader.Execute()
        else:
            img = sitk.ReadImage(str(p))
            if _suffix(p) in (".nii", ".nii.gz"):
                _refuse_nifti_nans(p, what)
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
        arr = np.stack([x.array for x in vols]).astype(np.float32)
        return Volume(arr, v.ijk_to_ras, name or p.name, {"path": str(p)})
    if dim != 3:
        raise InputError(f"{what}: {p} is {dim}D; expected a 3D volume.")
    v = Volume.from_sitk(img, name or p.name)
    v.meta["path"] = str(p)
    return v


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
