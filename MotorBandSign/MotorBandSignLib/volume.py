"""The one data type the pipeline steps exchange: a voxel array with its IJK-to-RAS matrix.

Arrays are indexed ``(k, j, i)`` (slice, row, column) as in ``slicer.util.arrayFromVolume``;
``ijk_to_ras`` maps ``(i, j, k, 1)`` column vectors to RAS millimetres, as MRML does.
Conversion to and from SimpleITK (which works in LPS) lives here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

#: Diagonal flip between LPS (ITK, DICOM) and RAS (Slicer, NIfTI world) coordinates.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A 3D (or 4D, echoes first) image on a grid.

    Parameters
    ----------
    array : ndarray, shape (k, j, i) or (n, k, j, i)
        Voxel values; a leading axis holds echoes or components.
    ijk_to_ras : ndarray, shape (4, 4)
        Maps voxel indices (i, j, k) to RAS coordinates in mm.
    name : str
        A label for messages and output nodes.
    meta : dict
        Free-form facts about the volume (units detected, echo times, ...).
    """

    array: np.ndarray
    ijk_to_ras: np.ndarray
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=np.float64)
        if self.ijk_to_ras.shape != (4, 4):
            raise InputError(f"{self.name or 'volume'}: ijk_to_ras must be 4x4, got {self.ijk_to_ras.shape}")

    # -- geometry -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """Spatial shape (k, j, i)."""
        return tuple(self.array.shape[-3:])

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along (i, j, k)."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def spacing_kji(self) -> np.ndarray:
        """Voxel size in mm along the array axes (k, j, i)."""
        return self.spacing[::-1].copy()

    @property
    def direction(self) -> np.ndarray:
        """Unit column vectors of the i, j, k axes in RAS."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """RAS position of voxel (0, 0, 0)."""
        return self.ijk_to_ras[:3, 3].copy()

    @property
    def ras_to_ijk(self) -> np.ndarray:
        return np.linalg.inv(self.ijk_to_ras)

    def with_array(self, array: np.ndarray, name: str | None = None, **meta) -> "Volume":
        """A new Volume on the same grid (the matrix is copied, the array is not)."""
        if tuple(array.shape[-3:]) != self.shape:
            raise ValueError(f"array shape {array.shape} does not fit grid {self.shape}")
        return Volume(array, self.ijk_to_ras.copy(), name if name is not None else self.name, dict(meta))

    def ras_of_ijk(self, ijk) -> np.ndarray:
        """RAS coordinates of voxel indices given as (..., 3) arrays of (i, j, k)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ijk_of_ras(self, ras) -> np.ndarray:
        ras = np.asarray(ras, dtype=np.float64)
        m = self.ras_to_ijk
        return ras @ m[:3, :3].T + m[:3, 3]

    def grid_mismatch(self, other: "Volume", tol_mm: float = 1e-3, tol_dir: float = 1e-4) -> str | None:
        """Describe how ``other``'s grid differs from this one, or None if they agree."""
        problems = []
        if self.shape != other.shape:
            problems.append(f"size {self.shape[::-1]} vs {other.shape[::-1]} (i, j, k)")
        if not np.allclose(self.spacing, other.spacing, atol=tol_mm):
            problems.append(f"spacing {np.round(self.spacing, 4).tolist()} vs {np.round(other.spacing, 4).tolist()} mm")
        if not np.allclose(self.direction, other.direction, atol=tol_dir):
            problems.append("orientation (direction cosines) differ")
        if not np.allclose(self.origin, other.origin, atol=max(tol_mm, 0.01 * float(self.spacing.min()))):
            problems.append(f"origin {np.round(self.origin, 3).tolist()} vs {np.round(other.origin, 3).tolist()} mm")
        return "; ".join(problems) or None

    def require_same_grid(self, other: "Volume") -> None:
        """Raise InputError naming what differs when two volumes are not on one grid."""
        diff = self.grid_mismatch(other)
        if diff:
            raise InputError(
                f"'{self.name}' and '{other.name}' are not on the same voxel grid ({diff}). "
                "Give magnitude and phase from the same acquisition, or resample one onto the other first."
            )

    # -- SimpleITK ----------------------------------------------------------------------------
    def to_sitk(self, array: np.ndarray | None = None):
        """A SimpleITK image (LPS) of this volume, or of ``array`` on this grid."""
        import SimpleITK as sitk

        a = self.array if array is None else array
        img = sitk.GetImageFromArray(np.ascontiguousarray(a), isVector=False)
        lps = LPS_TO_RAS @ self.ijk_to_ras
        sp = self.spacing
        img.SetSpacing([float(s) for s in sp])
        img.SetOrigin([float(x) for x in lps[:3, 3]])
        img.SetDirection([float(x) for x in (lps[:3, :3] / sp).ravel()])
        return img

    @classmethod
    def from_sitk(cls, img, name: str = "") -> "Volume":
        """A Volume (RAS) from a SimpleITK image (LPS)."""
        import SimpleITK as sitk

        arr = sitk.GetArrayFromImage(img)
        sp = np.array(img.GetSpacing(), dtype=np.float64)
        d = np.array(img.GetDirection(), dtype=np.float64).reshape(3, 3)
        m = np.eye(4)
        m[:3, :3] = d * sp
        m[:3, 3] = img.GetOrigin()
        return cls(arr, LPS_TO_RAS @ m, name)


def grid_from(shape_kji, spacing_ijk, direction=None, origin=None) -> np.ndarray:
    """Build a 4x4 IJK-to-RAS matrix from spacing (i, j, k), direction columns and origin."""
    m = np.eye(4)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    m[:3, :3] = d * np.asarray(spacing_ijk, dtype=np.float64)
    if origin is None:
        centre = (np.asarray(shape_kji[::-1], dtype=np.float64) - 1) / 2
        origin = -m[:3, :3] @ centre
    m[:3, 3] = origin
    return m
