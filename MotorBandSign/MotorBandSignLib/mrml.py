"""The one adapter between MRML (Slicer's scene and nodes) and the rest of MotorBandSignLib.

Everything else in the package exchanges :class:`~MotorBandSignLib.volume.Volume` objects;
this module turns files and nodes into Volumes and results back into nodes (volumes,
segmentations, colour, table, plot), and writes nodes and scenes to disk.

It runs in two places and imports nothing that exists in only one of them (no qt, ctk,
``slicer.app``, ``slicer.modules``, ``slicer.util`` functions that need those):

- inside the 3D Slicer application, :func:`get_scene` returns ``slicer.mrmlScene``;
- in plain Python with the ``slicer-core`` wheel, :func:`get_scene` builds (once per process)
  a headless scene with the Colors, Volumes and Segmentations logics, the slice orientation
  presets and remote IO registered, which is what reading volumes, segmentations and .mrb
  files needs (see docs in ``shared/notes/slicer-core.md``).

VTK/MRML calls report failure by logging and returning 0/''/None rather than raising; every
such return value is checked here and turned into a Python exception. Problems with what the
user gave raise :class:`~MotorBandSignLib.errors.InputError` naming the file or node and what
was expected. All writes go to a temporary file in the destination directory which is then
renamed over the target (``os.replace``), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

import slicer
import vtk
from vtk.util import numpy_support

from .errors import InputError
from .volume import LPS_TO_RAS, Volume

__all__ = [
    "get_scene",
    "new_scene",
    "new_headless_scene",
    "result_to_nodes",
    "metrics_rows",
    "labels_from_segmentation_file",
    "read_volume_node",
    "read_volume",
    "volume_from_node",
    "node_from_volume",
    "segmentation_from_labels",
    "labels_from_segmentation",
    "segment_names",
    "read_segmentation",
    "write_segmentation",
    "write_volume_node",
    "write_mrb",
    "read_mrb",
    "heatmap_color_node",
    "show_results",
    "table_node_from_rows",
    "rows_from_table_node",
    "plot_chart_from_profiles",
    "use_app_logics",
    "library_messages",
]

#: Extensions the volume reader accepts (lower case). DICOM is read from a directory.
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Extensions the volume writer accepts.
WRITE_VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd")

# Bit flags of vtkSlicerVolumesLogic::AddArchetypeVolume's loadingOptions.
_LOAD_LABELMAP = 1
_LOAD_SINGLE_FILE = 4

# ---------------------------------------------------------------------------------------------
# Scene bootstrap
# ---------------------------------------------------------------------------------------------

#: Per-scene logics: scene address -> {"Volumes": logic, "Segmentations": logic, ...}. Filled by the
#: headless bootstrap, or inside Slicer by :func:`use_app_logics` (the module's Logic passes
#: the application's logics so that this module never touches ``slicer.modules``).
_LOGICS: dict = {}
_HEADLESS_SCENE = None


#: Kinds of VTK/MRML output-window messages that are chatter for a user (e.g. "Info: ...
#: vtkArchive.cxx ... Zip: adding ..." for every file packed into a .mrb).
CHATTER_PREFIXES = ("Info:", "Debug:")


@contextlib.contextmanager
def library_messages(stream):
    """While the body runs, collect what VTK and MRML print through their output window; on
    leaving (also on an error), write the warnings and errors to ``stream`` and drop the
    chatter (:data:`CHATTER_PREFIXES`). For command-line use: stdout keeps only the tool's own
    summary. The previous output window is restored.
    """
    previous = vtk.vtkOutputWindow.GetInstance()
    collector = vtk.vtkStringOutputWindow()
    vtk.vtkOutputWindow.SetInstance(collector)
    try:
        yield
    finally:
        vtk.vtkOutputWindow.SetInstance(previous)
        blocks = [b.strip() for b in collector.GetOutput().split("\n\n")]
        kept = [b for b in blocks if b and not b.startswith(CHATTER_PREFIXES)]
        if kept:
            stream.write("\n".join(kept) + "\n")
            stream.flush()


def _in_slicer_app() -> bool:
    """True inside the Slicer desktop application (which adds ``slicer.app``)."""
    return hasattr(slicer, "app")


def _key(scene) -> str:
    """The C++ address of the scene (stable even if its Python wrapper is re-created)."""
    return scene.GetAddressAsString("vtkMRMLScene")


def _entry(scene) -> dict:
    """The logics entry of ``scene``, created on first use.

    The logics hold the scene (C++ references), so the entry must not outlive the caller's
    hold on the scene: it is dropped when the scene's Python object is collected, which lets
    VTK free the scene and its data (a batch writing hundreds of result scenes stays flat).
    """
    key = _key(scene)
    entry = _LOGICS.get(key)
    if entry is None:
        entry = _LOGICS[key] = {}
        weakref.finalize(scene, _LOGICS.pop, key, None)
    return entry


def use_app_logics(scene, volumes_logic=None, segmentations_logic=None) -> None:
    """Tell the adapter which module logics serve ``scene`` (used inside the Slicer app)."""
    entry = _entry(scene)
    if volumes_logic is not None:
        entry["Volumes"] = volumes_logic
    if segmentations_logic is not None:
        entry["Segmentations"] = segmentations_logic


#: Scene file caches in the system temporary folder are named CACHE_PREFIX + owner PID + "-...".
CACHE_PREFIX = "motorband-mrml-cache-"


def remove_stale_caches(folder: str | None = None) -> list:
    """Remove scene caches left in the temporary folder by processes that no longer run
    (killed before their exit clean-up); returns the folders removed. Caches of running
    processes, and folders not named ``CACHE_PREFIX + PID + "-..."``, are left alone."""
    removed = []
    base = Path(folder or tempfile.gettempdir())
    for d in base.glob(f"{CACHE_PREFIX}*-*"):
        pid = d.name[len(CACHE_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or not d.is_dir() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except OSError:
            continue  # exists but not ours to signal: leave it
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def new_headless_scene(cache_dir: str | None = None):
    """Build a new scene with the logics that reading and writing data need.

    Mirrors the way trame-slicer bootstraps Slicer's application logic without Qt: the
    Colors logic (default colour tables; volume loading complains without it), Volumes and
    Segmentations logics (segment converters), slice orientation presets and remote IO (both
    needed to read .mrb files). ``cache_dir`` is the remote IO cache (a temporary directory,
    removed at exit, when not given).
    """
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = app_logic.GetColorLogic()
    if colors is None:
        raise RuntimeError("slicer-core: the application logic has no Colors logic")
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app_logic.SetSliceLogics(vtk.vtkCollection())
    app_logic.SetViewLogics(vtk.vtkCollection())

    logics = _entry(scene)
    logics["app"] = app_logic

    def register(name, logic):
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(name, logic)
        logics[name] = logic
        return logic

    register("Colors", colors)
    register("Volumes", slicer.vtkSlicerVolumesLogic())
    register("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic())
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)

    if cache_dir is None:
        remove_stale_caches()
        cache_dir = tempfile.mkdtemp(prefix=f"{CACHE_PREFIX}{os.getpid()}-")
        atexit.register(shutil.rmtree, cache_dir, True)
    remote_io = slicer.vtkMRMLRemoteIOLogic()
    remote_io.SetMRMLScene(scene)
    remote_io.GetCacheManager().SetRemoteCacheDirectory(cache_dir)
    remote_io.AddDataIOToScene()
    logics["RemoteIO"] = remote_io
    return scene


def new_scene(cache_dir: str | None = None):
    """A fresh headless scene (same as :func:`new_headless_scene`), e.g. for writing a .mrb."""
    return new_headless_scene(cache_dir)


def get_scene():
    """The scene to work in: ``slicer.mrmlScene`` in Slicer, else one headless scene per process."""
    global _HEADLESS_SCENE
    if _in_slicer_app():
        return slicer.mrmlScene
    if _HEADLESS_SCENE is None:
        _HEADLESS_SCENE = new_headless_scene()
        slicer.mrmlScene = _HEADLESS_SCENE  # slicer.util helpers look here
    return _HEADLESS_SCENE


def _logic(scene, name):
    return _LOGICS.get(_key(scene), {}).get(name) if scene is not None else None


def _scene_or_default(scene):
    return get_scene() if scene is None else scene


# ---------------------------------------------------------------------------------------------
# Volumes: nodes <-> Volume
# ---------------------------------------------------------------------------------------------


def _vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    vm = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r, c]))
    return vm


def _np_matrix(vm: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[vm.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def _node_label(node) -> str:
    return f"'{node.GetName()}' ({node.GetClassName()})"


def _world_matrix(node) -> np.ndarray:
    """IJK-to-RAS of ``node`` including a linear parent transform (world coordinates)."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk_to_ras = _np_matrix(m)
    tnode = node.GetParentTransformNode()
    if tnode is not None:
        if not tnode.IsTransformToWorldLinear():
            raise InputError(
                f"volume {_node_label(node)} is under a non-linear transform '{tnode.GetName()}'. "
                "Harden the transform (Data module, right-click > Harden transform) and try again."
            )
        to_world = vtk.vtkMatrix4x4()
        tnode.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = _np_matrix(to_world) @ ijk_to_ras
    return ijk_to_ras


def volume_from_node(node) -> Volume:
    """A :class:`Volume` holding a copy of ``node``'s voxels and its IJK-to-RAS matrix.

    Scalar volumes give arrays ``(k, j, i)``; vector (multi-component, e.g. multi-echo)
    volumes give ``(n, k, j, i)`` with components first, as the pipeline expects echoes.
    A linear parent transform is applied to the matrix (world coordinates).
    """
    if node is None:
        raise InputError("no volume node given: select a volume.")
    if not node.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"node {_node_label(node)} is not a volume: select an image volume.")
    image = node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"volume {_node_label(node)} holds no image data: load or compute it first.")
    dims = image.GetDimensions()  # (i, j, k)
    ncomp = image.GetNumberOfScalarComponents()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    shape = (dims[2], dims[1], dims[0]) + ((ncomp,) if ncomp > 1 else ())
    array = np.array(flat.reshape(shape), copy=True)
    if ncomp > 1:
        array = np.ascontiguousarray(np.moveaxis(array, -1, 0))
    meta = {"node_id": node.GetID(), "node_class": node.GetClassName()}
    return Volume(array, _world_matrix(node), node.GetName() or "", meta)


_VOLUME_CLASSES = {
    "scalar": "vtkMRMLScalarVolumeNode",
    "labelmap": "vtkMRMLLabelMapVolumeNode",
    "vector": "vtkMRMLVectorVolumeNode",
}


def _image_from_array(array: np.ndarray, ncomp: int) -> vtk.vtkImageData:
    """A vtkImageData (origin 0, spacing 1) holding a copy of ``array`` ((k, j, i) or (k, j, i, c))."""
    a = np.ascontiguousarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype.kind == "c" or a.dtype == np.float16:
        raise InputError(f"array of type {a.dtype} cannot be stored in a volume node: give real float32/float64 data.")
    k, j, i = a.shape[:3]
    image = vtk.vtkImageData()
    image.SetDimensions(int(i), int(j), int(k))
    vtk_array = numpy_support.numpy_to_vtk(a.reshape(-1, ncomp) if ncomp > 1 else a.ravel(), deep=True)
    vtk_array.SetNumberOfComponents(ncomp)
    image.GetPointData().SetScalars(vtk_array)
    return image


def node_from_volume(vol: Volume, scene=None, name: str | None = None, node=None, labelmap: bool = False):
    """Put a copy of ``vol`` into a volume node (a new one, or ``node`` updated in place).

    The array is copied (the caller's Volume is never modified) and ``vol.ijk_to_ras`` is set
    as the node's IJK-to-RAS, oblique and anisotropic grids included. ``labelmap=True`` gives a
    ``vtkMRMLLabelMapVolumeNode`` (integer values); a 4D ``(n, k, j, i)`` array gives a
    ``vtkMRMLVectorVolumeNode`` with n components.
    """
    scene = _scene_or_default(scene)
    array = np.asarray(vol.array)
    if array.ndim == 4:
        kind = "vector"
        ncomp = array.shape[0]
        array = np.moveaxis(array, 0, -1)
        if labelmap:
            raise InputError(f"volume '{vol.name}' has {ncomp} components: a label map must be 3D.")
    elif array.ndim == 3:
        kind = "labelmap" if labelmap else "scalar"
        ncomp = 1
    else:
        raise InputError(f"volume '{vol.name}' has shape {array.shape}: expected a 3D (k, j, i) array.")
    if labelmap:
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise InputError(f"label volume '{vol.name}' has non-integer values: labels must be whole numbers.")
            array = array.astype(np.int32)
        elif array.dtype == bool:
            array = array.astype(np.uint8)
    class_name = _VOLUME_CLASSES[kind]
    if node is None:
        node = scene.AddNewNodeByClass(class_name, name or vol.name or "Volume")
        if node is None:
            raise RuntimeError(f"could not add a {class_name} to the scene")
    else:
        if not node.IsA(class_name):
            raise InputError(f"node {_node_label(node)} cannot hold this volume: a {class_name} is needed.")
        if name:
            node.SetName(name)
    image = _image_from_array(array, ncomp)
    node.SetIJKToRASMatrix(_vtk_matrix(vol.ijk_to_ras))
    node.SetAndObserveImageData(image)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if labelmap and node.GetDisplayNode() is not None and node.GetDisplayNode().GetColorNodeID() is None:
        node.GetDisplayNode().SetAndObserveColorNodeID("vtkMRMLColorTableNodeLabels")
    return node


# ---------------------------------------------------------------------------------------------
# Reading volumes
# ---------------------------------------------------------------------------------------------


def _lower_suffix(path: Path) -> str:
    name = path.name.lower()
    for ext in sorted(VOLUME_EXTENSIONS + (".seg.nrrd", ".mrb"), key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def _header(path: Path):
    """SimpleITK header of ``path`` (dimension, size, components) without reading voxels."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise InputError(
            f"{path}: not a readable image (expected NIfTI .nii/.nii.gz, NRRD or MetaImage, "
            f"or a directory of DICOM files). {first}".strip()
        ) from None
    return reader


def _dicom_volume(directory: Path, series_uid: str | None = None) -> Volume:
    """Read one DICOM series from ``directory`` with SimpleITK (LPS -> RAS)."""
    import SimpleITK as sitk

    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory))
    if not ids:
        raise InputError(f"{directory}: no DICOM series found (expected a directory of DICOM image files).")
    if series_uid is None:
        if len(ids) > 1:
            raise InputError(
                f"{directory}: holds {len(ids)} DICOM series ({', '.join(ids)}); "
                "give one series per directory or pass series_uid."
            )
        series_uid = ids[0]
    elif series_uid not in ids:
        raise InputError(f"{directory}: no DICOM series {series_uid} (found {', '.join(ids)}).")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), series_uid)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{directory}: DICOM series {series_uid} could not be read ({str(exc).strip()[:200]}).") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{directory}: DICOM series {series_uid} has colour/vector pixels; a greyscale MR series is needed.")
    vol = Volume.from_sitk(image, name=directory.name)
    vol.array = vol.array.astype(np.float32) if vol.array.dtype.kind == "f" else vol.array
    vol.meta.update({"source": str(directory), "dicom_series_uid": series_uid, "files": len(files)})
    return vol


def _volume_4d_from_sitk(image, name: str) -> Volume:
    """A (n, k, j, i) Volume from a 4D SimpleITK image whose 4th axis is echoes/frames."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image)  # (n, k, j, i)
    sp = np.array(image.GetSpacing()[:3], dtype=np.float64)
    d = np.array(image.GetDirection(), dtype=np.float64).reshape(4, 4)[:3, :3]
    m = np.eye(4)
    m[:3, :3] = d * sp
    m[:3, 3] = image.GetOrigin()[:3]
    return Volume(np.ascontiguousarray(arr), LPS_TO_RAS @ m, name)


def _default_name(path: Path) -> str:
    name = path.name
    for ext in sorted(VOLUME_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _read_with_storage(scene, node, storage, path: Path, failure: str) -> None:
    """Read ``path`` into ``node`` through ``storage`` (added to the scene); on failure remove
    both and raise InputError naming the file (MRML reports errors only as ERR lines)."""
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"{path}: {failure}")
    node.CreateDefaultDisplayNodes()


def read_volume_node(path, scene=None, name: str | None = None, labelmap: bool = False,
                     allow_4d: bool = False, series_uid: str | None = None):
    """Read a NIfTI / NRRD / MetaImage file or a DICOM series directory into a volume node.

    Files are read by Slicer's own reader (``vtkSlicerVolumesLogic.AddArchetypeVolume``, or a
    volume archetype storage node in a scene without that logic), so geometry is what Slicer
    shows. DICOM directories are read with SimpleITK's series reader. A file with more than
    three dimensions raises :class:`InputError` unless ``allow_4d`` (multi-echo input), in
    which case it becomes a vector volume with one component per echo.
    """
    scene = _scene_or_default(scene)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found (expected a NIfTI, NRRD or DICOM series volume).")
    if p.is_dir():
        vol = _dicom_volume(p, series_uid)
        if name:
            vol.name = name
        node = node_from_volume(vol, scene, labelmap=labelmap)
        node.SetAttribute("MotorBandSign.source", str(p))
        return node

    if _lower_suffix(p) in (".nii", ".nii.gz"):
        # The same integrity check as the command line's reader (truncation, NaN / Inf).
        from . import io

        io.check_nifti(p, what=name or _default_name(p))
    reader = _header(p)
    dim = reader.GetDimension()
    size = reader.GetSize()
    ncomp = reader.GetNumberOfComponents()
    if dim > 3 and size[3] == 1:
        dim = 3
    if dim < 3 or size[2] == 1:
        dicom = reader.GetImageIO() == "GDCMImageIO" or p.suffix.lower() in (".dcm", ".ima")
        hint = " For DICOM, give the directory that holds the whole series." if dicom else ""
        what = f"a {dim}D image of size {size}" if dim < 3 else f"a single slice (size {size[:3]})"
        raise InputError(f"{p}: {what}; a 3D volume is expected.{hint}")
    if (dim > 3 or ncomp > 1) and not allow_4d:
        what = f"{dim}D image of size {size}" if dim > 3 else f"image with {ncomp} components per voxel"
        raise InputError(
            f"{p}: a {what}, where a 3D volume is expected. Give one echo/frame "
            "(e.g. fslroi or the combined magnitude), or pass multi-echo data where echoes are accepted."
        )
    if dim > 3:
        if dim > 4:
            raise InputError(f"{p}: a {dim}D image of size {size}; at most 4D (echoes) is supported.")
        import SimpleITK as sitk

        vol = _volume_4d_from_sitk(sitk.ReadImage(str(p)), name or _default_name(p))
        node = node_from_volume(vol, scene, labelmap=False)
        node.SetAttribute("MotorBandSign.source", str(p))
        return node

    node_name = name or _default_name(p)
    volumes_logic = _logic(scene, "Volumes")
    options = _LOAD_SINGLE_FILE | (_LOAD_LABELMAP if labelmap else 0)
    if volumes_logic is not None:
        node = volumes_logic.AddArchetypeVolume(str(p), node_name, options, vtk.vtkStringArray())
        if node is None:
            raise InputError(f"{p}: Slicer could not read this file as a volume (expected NIfTI, NRRD or MetaImage).")
    else:
        node = scene.AddNewNodeByClass(_VOLUME_CLASSES["labelmap" if labelmap else "scalar"], node_name)
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetSingleFile(1)
        _read_with_storage(scene, node, storage, p,
                           "Slicer could not read this file as a volume (expected NIfTI, NRRD or MetaImage).")
    if node.GetImageData() is None:
        scene.RemoveNode(node)
        raise InputError(f"{p}: read, but holds no voxels (expected a 3D volume).")
    node.SetAttribute("MotorBandSign.source", str(p))
    return node


def read_volume(path, scene=None, **kwargs) -> Volume:
    """Read ``path`` through Slicer's reader and return it as a Volume (the node is removed)."""
    scene = _scene_or_default(scene)
    node = read_volume_node(path, scene, **kwargs)
    try:
        vol = volume_from_node(node)
    finally:
        _remove_with_dependents(scene, node)
    vol.meta["source"] = str(path)
    return vol


def _remove_with_dependents(scene, node):
    for i in range(node.GetNumberOfDisplayNodes()):
        dn = node.GetNthDisplayNode(i)
        if dn is not None:
            scene.RemoveNode(dn)
    sn = node.GetStorageNode()
    if sn is not None:
        scene.RemoveNode(sn)
    scene.RemoveNode(node)


# ---------------------------------------------------------------------------------------------
# Segmentations
# ---------------------------------------------------------------------------------------------


def _oriented_image(mask: np.ndarray, ijk_to_ras: np.ndarray):
    image = _image_from_array(np.asarray(mask, dtype=np.uint8), 1)
    oriented = slicer.vtkOrientedImageData()
    oriented.ShallowCopy(image)
    oriented.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras))
    return oriented


def _check_color(color) -> tuple:
    c = tuple(float(x) for x in color)
    if len(c) != 3 or any(not 0.0 <= x <= 1.0 for x in c):
        raise InputError(f"segment colour {color!r}: give three numbers in 0..1 (r, g, b).")
    return c


def segmentation_from_labels(label_vol: Volume, names: dict, colors: dict | None = None,
                             reference_node=None, scene=None, node=None, name: str | None = None):
    """A segmentation node with one segment per label value of ``label_vol``.

    ``names`` maps label value -> segment name (every name gets a segment, empty ones too, so
    the user can paint into it); ``colors`` maps label value -> (r, g, b) in 0..1. The
    segmentation's reference geometry is ``reference_node`` (e.g. the SWI) when given, else the
    label volume's grid. ``node`` updates an existing segmentation (its segments are replaced).
    """
    scene = _scene_or_default(scene)
    labels = np.asarray(label_vol.array)
    if labels.ndim != 3:
        raise InputError(f"label volume '{label_vol.name}' has shape {labels.shape}: a 3D label map is needed.")
    if _logic(scene, "Segmentations") is None and not _in_slicer_app():
        # Without the Segmentations logic on this scene, AddEmptySegment fails (no converter rules).
        raise RuntimeError("this scene has no Segmentations logic: create it with mrml.get_scene() or new_headless_scene().")
    colors = colors or {}
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{label_vol.name} segments")
        if node is None:
            raise RuntimeError("could not add a vtkMRMLSegmentationNode to the scene")
        node.CreateDefaultDisplayNodes()
    else:
        node.GetSegmentation().RemoveAllSegments()
        if name:
            node.SetName(name)
    if reference_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    else:
        node.GetSegmentation().SetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
            _serialized_geometry(label_vol),
        )
    segmentation = node.GetSegmentation()
    for value, seg_name in names.items():
        value = int(value)
        seg_id = _segment_id(seg_name)
        color = _check_color(colors.get(value, (0.5, 0.5, 0.5)))
        sid = segmentation.AddEmptySegment(seg_id, str(seg_name), color)
        if not sid:
            raise RuntimeError(f"could not add segment '{seg_name}' to {_node_label(node)}")
        mask = labels == value
        if not mask.any():
            continue
        oriented = _oriented_image(mask, label_vol.ijk_to_ras)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(oriented, node, sid)
        if not ok:
            raise RuntimeError(f"could not set the voxels of segment '{seg_name}' in {_node_label(node)}")
    return node


def _serialized_geometry(vol: Volume) -> str:
    image = slicer.vtkOrientedImageData()
    k, j, i = vol.shape
    image.SetDimensions(int(i), int(j), int(k))
    image.SetImageToWorldMatrix(_vtk_matrix(vol.ijk_to_ras))
    return slicer.vtkSegmentationConverter.SerializeImageGeometry(image)


def _segment_id(name) -> str:
    """A stable segment ID from its name (Slicer IDs are free strings; keep them readable)."""
    return "".join(ch if ch.isalnum() else "_" for ch in str(name)) or "segment"


def segment_names(seg_node) -> list:
    """Names of the segments of ``seg_node`` in order."""
    seg = seg_node.GetSegmentation()
    return [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())]


def labels_from_segmentation(seg_node, reference: Volume, names_to_values: dict, scene=None) -> Volume:
    """A label Volume on ``reference``'s grid: voxels of segment ``name`` get ``names_to_values[name]``.

    Segments are looked up by name (the user may have re-ordered or re-coloured them) and
    exported one at a time with ``ExportSegmentsToLabelmapNode`` onto the reference geometry,
    so segments sharing a labelmap layer, or overlapping, are handled; where segments overlap
    the later entry of ``names_to_values`` wins. An empty segment gives no voxels; a missing
    segment raises :class:`InputError`.
    """
    if seg_node is None or not seg_node.IsA("vtkMRMLSegmentationNode"):
        raise InputError("no segmentation node given: select the ribbon segmentation.")
    scene = seg_node.GetScene() or _scene_or_default(scene)
    segmentation = seg_node.GetSegmentation()
    missing = [n for n in names_to_values if not segmentation.GetSegmentIdBySegmentName(str(n))]
    if missing:
        raise InputError(
            f"segmentation {_node_label(seg_node)} has no segment named {', '.join(repr(m) for m in missing)} "
            f"(it has: {', '.join(repr(n) for n in segment_names(seg_node)) or 'none'}). "
            "Keep the segment names the module created (erase voxels instead of deleting a segment)."
        )
    out = np.zeros(reference.shape, dtype=np.int16)
    ref_node = node_from_volume(Volume(np.zeros(reference.shape, np.uint8), reference.ijk_to_ras, "mbs-reference"),
                                scene, name="__MotorBandSign_reference__")
    label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__MotorBandSign_export__")
    colors_before = {n.GetID() for n in _nodes_of(scene, "vtkMRMLColorTableNode")}
    try:
        for seg_name, value in names_to_values.items():
            sid = segmentation.GetSegmentIdBySegmentName(str(seg_name))
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(sid)
            ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                seg_node, ids, label_node, ref_node, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
            if not ok:
                raise RuntimeError(f"could not export segment '{seg_name}' of {_node_label(seg_node)}")
            exported = volume_from_node(label_node)
            if exported.shape != reference.shape:
                raise RuntimeError(
                    f"segment '{seg_name}' exported on grid {exported.shape}, expected {reference.shape}")
            out[exported.array != 0] = int(value)
    finally:
        _remove_with_dependents(scene, label_node)
        _remove_with_dependents(scene, ref_node)
        # the export makes a colour table per call ("<segmentation>_ColorTable"): drop ours
        for n in _nodes_of(scene, "vtkMRMLColorTableNode"):
            if n.GetID() not in colors_before:
                scene.RemoveNode(n)
    return Volume(out, reference.ijk_to_ras.copy(), f"{seg_node.GetName()} labels",
                  {"segmentation": seg_node.GetName()})


def _nodes_of(scene, class_name: str) -> list:
    col = scene.GetNodesByClass(class_name)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())]


def read_segmentation(path, scene=None):
    """Read a .seg.nrrd file into a new segmentation node."""
    scene = _scene_or_default(scene)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found (expected a .seg.nrrd segmentation).")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", _default_name(Path(str(p).replace(".seg.nrrd", ".nrrd"))))
    _read_with_storage(scene, node, slicer.vtkMRMLSegmentationStorageNode(), p,
                       "could not be read as a segmentation (expected a .seg.nrrd file written by Slicer).")
    return node


# ---------------------------------------------------------------------------------------------
# Writing (atomic)
# ---------------------------------------------------------------------------------------------


def _atomic_target(path, allowed: tuple, what: str):
    """(final path, temporary path) for an atomic write of ``path``.

    The temporary file has the final file's name, inside a fresh hidden directory next to it
    (same file system, so ``os.replace`` is atomic; same name, so writers that derive names
    from the file name, like the .mrb bundle's folder and scene file, see the final one).
    """
    p = Path(path)
    ext = _lower_suffix(p)
    if ext not in allowed:
        raise InputError(f"{p}: cannot write a {what} with extension '{ext}' (use {', '.join(allowed)}).")
    if not p.parent.exists():
        raise InputError(f"{p}: the directory {p.parent} does not exist.")
    tmp_dir = tempfile.mkdtemp(prefix=f".{p.name}.partial-", dir=str(p.parent))
    return p, os.path.join(tmp_dir, p.name)


def _discard(tmp: str):
    shutil.rmtree(os.path.dirname(tmp), ignore_errors=True)


def _finish(tmp: str, p: Path, ok, what: str):
    try:
        if not ok or not os.path.exists(tmp) or os.path.getsize(tmp) == 0:
            raise RuntimeError(f"writing {what} to {p} failed (see the ERR lines above)")
        os.replace(tmp, p)
    finally:
        _discard(tmp)
    return p


def _write_with_storage(storage, node, path, extensions: tuple, what: str):
    """Write ``node`` through a storage node to a temp file beside ``path``, then rename."""
    p, tmp = _atomic_target(path, extensions, what)
    storage.SetFileName(tmp)
    storage.SetUseCompression(1)
    try:
        ok = storage.WriteData(node)
    except Exception:
        _discard(tmp)
        raise
    return _finish(tmp, p, ok, f"{what} {_node_label(node)}")


def write_volume_node(node, path):
    """Write a volume node to .nii / .nii.gz / .nrrd atomically; returns the path."""
    if node is None or not node.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"cannot write {path}: no volume node given.")
    return _write_with_storage(slicer.vtkMRMLVolumeArchetypeStorageNode(), node, path,
                               WRITE_VOLUME_EXTENSIONS, "volume")


def write_segmentation(seg_node, path):
    """Write a segmentation node to a .seg.nrrd file atomically; returns the path."""
    if seg_node is None or not seg_node.IsA("vtkMRMLSegmentationNode"):
        raise InputError(f"cannot write {path}: no segmentation node given.")
    return _write_with_storage(slicer.vtkMRMLSegmentationStorageNode(), seg_node, path,
                               (".seg.nrrd",), "segmentation")


def write_mrb(scene, path):
    """Save the whole scene (every node and its data) as a Medical Reality Bundle, atomically."""
    scene = _scene_or_default(scene)
    p, tmp = _atomic_target(path, (".mrb",), "scene bundle")
    try:
        ok = scene.WriteToMRB(tmp)
    except Exception:
        _discard(tmp)
        raise
    return _finish(tmp, p, ok, "the scene")


def read_mrb(path, scene=None):
    """Load a .mrb bundle into ``scene`` (cleared first); returns the scene."""
    scene = _scene_or_default(scene)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found (expected a .mrb scene bundle).")
    if not scene.ReadFromMRB(str(p)):
        raise InputError(f"{p}: could not be read as a Slicer scene bundle (.mrb).")
    return scene


# ---------------------------------------------------------------------------------------------
# Display of results
# ---------------------------------------------------------------------------------------------

#: Colour points of the heatmap (position in 0..1 of the displayed z range -> r, g, b):
#: yellow at the threshold to red at the top, like a clinical "hot" overlay.
HEATMAP_POINTS = ((0.0, (1.0, 1.0, 0.0)), (0.5, (1.0, 0.55, 0.0)), (1.0, (0.85, 0.0, 0.0)))
HEATMAP_COLOR_NAME = "MotorBandSign heat"


def heatmap_color_node(scene=None):
    """The procedural colour map (yellow -> red) used for the hypointensity heatmap.

    Only 46 colour tables are built in; this map is created once per scene and reused. Values
    under the threshold are hidden by the display node's threshold, not by the colour map
    (transparent below the threshold, yellow at it, red at the top of the range).
    """
    scene = _scene_or_default(scene)
    existing = scene.GetFirstNodeByName(HEATMAP_COLOR_NAME)
    if existing is not None and existing.IsA("vtkMRMLProceduralColorNode"):
        return existing
    node = slicer.vtkMRMLProceduralColorNode()
    node.SetName(HEATMAP_COLOR_NAME)
    node.SetAttribute("Category", "MotorBandSign")
    node.SetHideFromEditors(False)
    ctf = node.GetColorTransferFunction()
    ctf.RemoveAllPoints()
    for x, (r, g, b) in HEATMAP_POINTS:
        ctf.AddRGBPoint(x, r, g, b)
    scene.AddNode(node)
    return node


def _style_heatmap(heatmap_node, z_threshold: float, z_max: float):
    if heatmap_node.GetDisplayNode() is None:
        heatmap_node.CreateDefaultDisplayNodes()
    dn = heatmap_node.GetScalarVolumeDisplayNode()
    color = heatmap_color_node(heatmap_node.GetScene())
    dn.SetAndObserveColorNodeID(color.GetID())
    dn.AutoWindowLevelOff()
    dn.SetWindowLevelMinMax(float(z_threshold), float(max(z_max, z_threshold + 1e-3)))
    dn.SetApplyThreshold(1)
    dn.SetLowerThreshold(float(z_threshold))
    dn.SetUpperThreshold(1e6)
    dn.SetInterpolate(0)
    return dn


def show_results(scene, swi_node=None, mip_node=None, heatmap_node=None, seg_node=None,
                 z_threshold: float = 2.0, z_max: float = 5.0, focus_ras=None,
                 foreground_opacity: float = 0.6) -> dict:
    """Show the results in every slice view that exists: mIP (or SWI) behind, heatmap on top.

    Sets each ``vtkMRMLSliceCompositeNode`` in the scene (background = mIP or SWI, foreground =
    heatmap with values below ``z_threshold`` hidden), outlines the segmentation in 2D, and
    centres every slice node on ``focus_ras`` (e.g. the hand knob). A headless scene without
    slice views is left as it is. Returns counts of what was changed.
    """
    scene = _scene_or_default(scene)
    changed = {"composite_nodes": 0, "slice_nodes_centred": 0}
    background = mip_node if mip_node is not None else swi_node
    if background is not None and background.GetDisplayNode() is None:
        background.CreateDefaultDisplayNodes()
    if background is not None:
        bdn = background.GetDisplayNode()
        if bdn is not None and bdn.IsA("vtkMRMLScalarVolumeDisplayNode"):
            bdn.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    if heatmap_node is not None:
        _style_heatmap(heatmap_node, z_threshold, z_max)
    if seg_node is not None:
        if seg_node.GetDisplayNode() is None:
            seg_node.CreateDefaultDisplayNodes()
        sdn = seg_node.GetDisplayNode()
        sdn.SetVisibility(True)
        sdn.SetVisibility2DFill(False)
        sdn.SetVisibility2DOutline(True)
        sdn.SetSliceIntersectionThickness(2)
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        comp = composites.GetItemAsObject(i)
        if background is not None:
            comp.SetBackgroundVolumeID(background.GetID())
        comp.SetForegroundVolumeID(heatmap_node.GetID() if heatmap_node is not None else None)
        comp.SetForegroundOpacity(float(foreground_opacity))
        comp.SetLabelVolumeID(None)
        changed["composite_nodes"] += 1
    if focus_ras is not None:
        x, y, z = (float(v) for v in focus_ras)
        slices = scene.GetNodesByClass("vtkMRMLSliceNode")
        for i in range(slices.GetNumberOfItems()):
            sn = slices.GetItemAsObject(i)
            if sn.GetSingletonTag() or sn.GetLayoutName():
                sn.JumpSliceByCentering(x, y, z)
                changed["slice_nodes_centred"] += 1
    return changed


def table_node_from_rows(rows: list, scene=None, name: str = "Motor band metrics", node=None):
    """A ``vtkMRMLTableNode`` with one row per dict of ``rows`` (columns: union of keys, in order).

    Columns whose values are all numbers (or None, stored as NaN) are numeric; booleans become
    0/1 integers; anything else is text. ``node`` updates an existing table in place.
    """
    scene = _scene_or_default(scene)
    columns: list = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
        if node is None:
            raise RuntimeError("could not add a vtkMRMLTableNode to the scene")
    else:
        node.RemoveAllColumns()
        node.SetName(name)
    table = node.GetTable()
    for key in columns:
        values = [row.get(key) for row in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, (bool, np.bool_)) for v in present):
            arr = vtk.vtkIntArray()
            for v in values:
                arr.InsertNextValue(-1 if v is None else int(bool(v)))
        elif present and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in present):
            arr = vtk.vtkDoubleArray()
            for v in values:
                arr.InsertNextValue(float("nan") if v is None else float(v))
        else:
            arr = vtk.vtkStringArray()
            for v in values:
                arr.InsertNextValue("" if v is None else str(v))
        arr.SetName(str(key))
        table.AddColumn(arr)
    table.Modified()
    node.Modified()
    return node


def rows_from_table_node(node) -> list:
    """The rows of a table node as dicts (numbers as float, text as str)."""
    table = node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c, key in enumerate(names):
            col = table.GetColumn(c)
            if col.IsA("vtkStringArray"):
                row[key] = col.GetValue(r)
            else:
                row[key] = float(col.GetValue(r))
        rows.append(row)
    return rows


def _profile_xy(value):
    if isinstance(value, dict) and "y" in value:
        y = np.asarray(value["y"], dtype=np.float64)
        x = np.asarray(value.get("x", np.arange(len(y))), dtype=np.float64)
    elif isinstance(value, dict) and len(value) == 2:
        # e.g. scoring.profiles: {"height_mm": [...], "z_median": [...]} (first = x, second = y)
        xs, ys = list(value.values())
        x = np.asarray(xs, dtype=np.float64)
        y = np.asarray(ys, dtype=np.float64)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and np.ndim(value[0]) == 1:
        x = np.asarray(value[0], dtype=np.float64)
        y = np.asarray(value[1], dtype=np.float64)
    else:
        y = np.asarray(value, dtype=np.float64)
        x = np.arange(len(y), dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError(f"profile x and y must be 1D and of equal length, got {x.shape} and {y.shape}.")
    return x, y


#: Colours of the plotted profiles, cycled.
PLOT_COLORS = ((0.85, 0.1, 0.1), (0.1, 0.35, 0.85), (0.95, 0.6, 0.0), (0.2, 0.6, 0.2), (0.5, 0.2, 0.6))


def plot_chart_from_profiles(profiles: dict, scene=None, name: str = "Motor band profiles",
                             x_title: str = "depth (mm)", y_title: str = "SWI (relative)", chart=None):
    """A ``vtkMRMLPlotChartNode`` with one line series per profile.

    ``profiles`` maps a series name to ``(x, y)``, to ``{"x": ..., "y": ...}`` or to ``y`` alone
    (x = sample index). Each series gets its own table node (profiles may differ in length).
    ``chart`` updates an existing chart (its series are replaced).
    """
    scene = _scene_or_default(scene)
    if chart is None:
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
        if chart is None:
            raise RuntimeError("could not add a vtkMRMLPlotChartNode to the scene")
    else:
        for sid in [chart.GetNthPlotSeriesNodeID(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]:
            series = scene.GetNodeByID(sid)
            chart.RemovePlotSeriesNodeID(sid)
            if series is not None:
                table = series.GetTableNode()
                scene.RemoveNode(series)
                if table is not None:
                    scene.RemoveNode(table)
    chart.SetTitle(name)
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    for n, (label, value) in enumerate(profiles.items()):
        x, y = _profile_xy(value)
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name}: {label}")
        xa, ya = vtk.vtkDoubleArray(), vtk.vtkDoubleArray()
        xa.SetName("x")
        ya.SetName("y")
        for a, b in zip(x, y):
            xa.InsertNextValue(float(a))
            ya.InsertNextValue(float(b))
        table_node.GetTable().AddColumn(xa)
        table_node.GetTable().AddColumn(ya)
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", str(label))
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName("x")
        series.SetYColumnName("y")
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetColor(*PLOT_COLORS[n % len(PLOT_COLORS)])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def labels_from_segmentation_file(path, reference: Volume, names_to_values: dict) -> Volume:
    """:func:`labels_from_segmentation` of a .seg.nrrd file, read in a scratch scene."""
    # The scratch scene's file cache is removed on leaving, whatever happens (not only at exit).
    with tempfile.TemporaryDirectory(prefix=f"{CACHE_PREFIX}{os.getpid()}-") as cache:
        scratch = new_headless_scene(cache)
        try:
            seg = read_segmentation(path, scratch)
            return labels_from_segmentation(seg, reference, names_to_values, scratch)
        finally:
            scratch.Clear(1)


# ---------------------------------------------------------------------------------------------
# A pipeline Result as nodes
# ---------------------------------------------------------------------------------------------

#: Result attribute -> (node key, node name suffix, labelmap?) of the volumes put in the scene.
RESULT_VOLUMES = (
    ("swi", "swi", "SWI", False),
    ("mip", "mip", "SWI mIP", False),
    ("phase_hp", "phase_hp", "high-pass phase", False),
    ("heatmap", "heatmap", "hypointensity z", False),
    ("regions", "regions", "regions", True),
)
#: Key names of the nodes :func:`result_to_nodes` returns.
RESULT_NODE_KEYS = tuple(k for _, k, _, _ in RESULT_VOLUMES) + ("segmentation", "table", "chart")


def _fmt(x, digits=2):
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return round(float(x), digits)
    return x


#: Columns of the metrics table, in order (metric key of a hemisphere/region dict -> column).
METRIC_COLUMNS = (
    ("band_present", "band"),
    ("grade", "grade (0-2)"),
    ("z_median", "median z"),
    ("band_contrast", "contrast"),
    ("hypointense_fraction", "fraction z>thr"),
    ("volume_ml", "bank volume (ml)"),
)


def metrics_rows(metrics: dict) -> list:
    """One row per hemisphere and per region (hemisphere rows first), for a table node.

    Reads the ``hemispheres -> side -> {..., regions -> name -> {...}}`` layout of
    ``scoring.score``; a missing metric gives an empty cell.
    """
    rows = []
    hemis = metrics.get("hemispheres", {}) or {}
    for side, h in hemis.items():
        row = {"hemisphere": side, "region": "whole bank"}
        for key, col in METRIC_COLUMNS:
            row[col] = _fmt(h.get(key))
        rows.append(row)
    for side, h in hemis.items():
        for region, r in (h.get("regions") or {}).items():
            row = {"hemisphere": side, "region": region}
            for key, col in METRIC_COLUMNS:
                row[col] = _fmt(r.get(key))
            rows.append(row)
    return rows


def _ribbon_names_colors():
    from . import ribbon as ribbon_mod

    names = dict(ribbon_mod.SEGMENT_NAMES)
    colors = dict(getattr(ribbon_mod, "SEGMENT_COLORS", {}) or {})
    return names, colors


def result_to_nodes(result, scene=None, nodes: dict | None = None, prefix: str = "", keys=None) -> dict:
    """Put a pipeline ``Result`` into ``scene``; returns ``{key: node}`` (keys: RESULT_NODE_KEYS).

    ``nodes`` maps keys to existing nodes, updated in place instead of adding new ones.
    ``keys`` limits what is (re)written, e.g. after re-measuring only the heatmap, regions,
    table and chart change and the user's edited segmentation is left alone; nodes in
    ``nodes`` that are not rewritten are passed through. ``scene=None`` uses a fresh headless
    scene, so that writing files from a batch run never touches :func:`get_scene`'s scene.
    """
    scene = new_headless_scene() if scene is None else scene
    nodes = dict(nodes or {})
    keys = set(RESULT_NODE_KEYS if keys is None else keys)
    unknown = keys - set(RESULT_NODE_KEYS)
    if unknown:
        raise ValueError(f"unknown result node keys {sorted(unknown)}; known: {', '.join(RESULT_NODE_KEYS)}")
    out = {k: v for k, v in nodes.items() if k in RESULT_NODE_KEYS and k not in keys and v is not None}
    pre = f"{prefix} " if prefix else ""
    for attr, key, suffix, labelmap in RESULT_VOLUMES:
        vol = getattr(result, attr, None)
        if key in keys and vol is not None:
            out[key] = node_from_volume(vol, scene, name=f"{pre}{suffix}", node=nodes.get(key), labelmap=labelmap)
    if "segmentation" in keys:
        names, colors = _ribbon_names_colors()
        out["segmentation"] = segmentation_from_labels(
            result.ribbon, names, colors, out.get("swi"), scene, node=nodes.get("segmentation"), name=f"{pre}ribbon")
    if "table" in keys:
        out["table"] = table_node_from_rows(metrics_rows(result.metrics), scene, f"{pre}metrics", node=nodes.get("table"))
    if "chart" in keys:
        prof = result.metrics.get("profiles") or {}
        out["chart"] = plot_chart_from_profiles(
            {f"{side} bank": v for side, v in prof.items()}, scene, f"{pre}profiles along the gyrus",
            x_title="height (RAS S, mm)", y_title="median hypointensity z", chart=nodes.get("chart"))
    return out
