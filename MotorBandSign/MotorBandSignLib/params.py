"""All user-facing parameters in one dataclass.

The Slicer parameter node, the ``motorband`` flags and a future web form are views of
:class:`Parameters`. Each default is owned by the step that uses it (a module constant with
its source); this module collects them so that there is a single place to read them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import InputError

PHASE_UNITS = ("auto", "radians", "degrees", "siemens", "rescale")
HANDEDNESS = ("right", "left")
HIGHPASS = ("homodyne", "unwrap")
MASK_TYPES = ("negative", "positive", "tanh")
#: Where the posterior bank comes from on the atlas route: "sulcal" = the subject's own central
#: sulcus found on the image, the atlas saying which sulcus it is (issue 11); "atlas" = the
#: registered atlas labels themselves (the first wave's route).
LOCALISATION = ("sulcal", "atlas")


#: What each field means, one sentence for a tooltip: the Slicer panel (.ui toolTip), the web form
#: and ``motorband --help`` views show this text (Testing/test_conformance.py checks the .ui).
HELP = {
    'phase_units': "Units of the stored phase. 'auto' detects radians, degrees or Siemens integers (0..4095) and reports what it found.",
    'handedness': "Sign convention of the phase: 'right' for most vendors (Siemens, Philips); 'left' for GE.",
    'echo_times': "Multi-echo only: one echo time per echo, in milliseconds, e.g. '5, 10, 15, 20'. Leave empty for one echo.",
    'labels': "Label preset of the parcellation: 'freesurfer', 'synthseg', or the path of a label table. Empty: FreeSurfer numbering.",
    'localisation': "'sulcal': the posterior bank is placed on the subject's own central sulcus found on the image (the atlas says which sulcus it is). 'atlas': the registered atlas labels are used as they are.",
    'highpass': "'homodyne': divide by a low-pass (Hann window) copy (Haacke et al. 2004). 'unwrap': unwrap the phase then subtract a Gaussian-smoothed copy (CLEAR-SWI, Eckstein et al. 2021).",
    'homodyne_window': 'Size of the central k-space window of the homodyne filter; larger = stronger high-pass.',
    'gaussian_sigma_ijk': 'Unwrap high-pass only: sigma of the Gaussian low-pass in voxels along i, j, k (CLEAR-SWI: 4, 4, 0).',
    'unwrap_method': "Unwrap high-pass only: 'laplacian' (fast, CLEAR-SWI's default) or 'skimage' (path-following).",
    'mask_type': "'negative' darkens negative (paramagnetic) phase (Haacke et al. 2004); 'tanh' is CLEAR-SWI's smooth scaling.",
    'mask_power': 'Number of times the phase mask is applied (Haacke et al. 2004: 4).',
    'softplus': 'Compress bright magnitude values before applying the mask (CLEAR-SWI).',
    'mip_slab_mm': 'Thickness of the minimum intensity projection slab (8-16 mm is usual).',
    'bank_depth_mm': 'Thickness of cortex in front of the central sulcus counted as the posterior bank.',
    'z_threshold': "A ribbon voxel counts as hypointense when it is this many robust SDs darker than control cortex; also the heatmap's lower limit.",
    'band_ratio': "A hemisphere is called banded when the median SWI of its posterior bank is at most this fraction of its control cortex's median (lower limit of the normal range learnt on no-band cases; research setting).",
    'region_band_ratio': "The same for one region (medial / intermediate / lateral): a focal band is called where its region's bank is at most this fraction of its control.",
    'diffuse_ratio': 'Control cortex darker than juxtacortical white matter below this SWI ratio is flagged as diffuse (non-specific) darkening (provisional, protocol dependent).',
}
#: The range a panel offers for a numeric field (min, max): the spin boxes of the Slicer panel and
#: the number fields of the web form (checked against the .ui by Testing/test_conformance.py).
#: Wider than any published setting, narrower than nonsense; validate() only refuses impossible values.
RANGES = {
    'homodyne_window': (4, 512),
    'mask_power': (0.5, 20),
    'mip_slab_mm': (1, 60),
    'bank_depth_mm': (0.5, 10),
    'z_threshold': (0.5, 10),
    'band_ratio': (0.5, 0.99),
    'region_band_ratio': (0.5, 0.99),
    'diffuse_ratio': (0.5, 1.5),
}


def _defaults():
    """Defaults from the step modules (imported lazily so this module stays light)."""
    from . import ribbon, scoring, swi

    return {
        "highpass": swi.DEFAULT_HIGHPASS,
        "homodyne_window": swi.DEFAULT_HOMODYNE_WINDOW,
        "gaussian_sigma_ijk": tuple(swi.DEFAULT_GAUSSIAN_SIGMA_IJK),
        "unwrap_method": swi.DEFAULT_UNWRAP_METHOD,
        "mask_type": swi.DEFAULT_MASK_TYPE,
        "mask_power": swi.DEFAULT_MASK_POWER,
        "mip_slab_mm": swi.DEFAULT_MIP_SLAB_MM,
        "bank_depth_mm": ribbon.DEFAULT_BANK_DEPTH_MM,
        "z_threshold": scoring.DEFAULT_Z_THRESHOLD,
        "band_ratio": scoring.DEFAULT_BAND_RATIO,
        "region_band_ratio": scoring.DEFAULT_REGION_BAND_RATIO,
        "diffuse_ratio": scoring.DIFFUSE_CORTEX_TO_WM,
    }


#: Parameter -> its command-line flag, so that messages name what the user typed.
CLI_FLAGS = {"phase_units": "--phase-units", "handedness": "--handedness", "echo_times": "--te",
             "highpass": "--highpass", "mask_type": "--mask-type", "mask_power": "--mask-power",
             "mip_slab_mm": "--mip-slab-mm", "localisation": "--localisation", "bank_depth_mm": "--bank-depth-mm",
             "z_threshold": "--z-threshold", "band_ratio": "--band-ratio", "region_band_ratio": "--region-band-ratio",
             "labels": "--labels"}


def _flag(name: str) -> str:
    return f" ({CLI_FLAGS[name]} on the command line)" if name in CLI_FLAGS else ""


@dataclass
class Parameters:
    """Every parameter of a run. ``None`` fields take the step's documented default."""

    # Phase conversion (phase.py): units detected unless given; right-handed unless GE (left).
    phase_units: str = "auto"
    handedness: str = "right"
    #: Echo times in seconds, one per echo; required for multi-echo input.
    echo_times: tuple = ()
    # SWI (swi.py)
    highpass: str | None = None
    homodyne_window: int | None = None
    gaussian_sigma_ijk: tuple | None = None
    unwrap_method: str | None = None
    mask_type: str | None = None
    mask_power: float | None = None
    softplus: bool = False
    mip_slab_mm: float | None = None
    # Ribbon (ribbon.py, sulci.py)
    #: "sulcal" (default) or "atlas"; see LOCALISATION.
    localisation: str = "sulcal"
    bank_depth_mm: float | None = None
    # Verdict (scoring.py)
    z_threshold: float | None = None
    #: Bank / control median ratio (SWI) at or below which a hemisphere is called banded.
    band_ratio: float | None = None
    #: The same for one somatotopic region (medial / intermediate / lateral).
    region_band_ratio: float | None = None
    #: Control cortex / juxtacortical WM ratio on SWI below which cortex is called diffusely dark.
    diffuse_ratio: float | None = None
    #: Imported parcellation label preset: "freesurfer", "synthseg" or a path to a label table.
    labels: str | None = None

    def resolved(self) -> "Parameters":
        """A copy with every ``None`` replaced by its default, validated."""
        d = _defaults()
        out = dataclasses.replace(self)
        for f in dataclasses.fields(self):
            if getattr(out, f.name) is None and f.name in d:
                setattr(out, f.name, d[f.name])
        out.validate()
        return out

    def validate(self) -> None:
        """Raise InputError naming a bad value and the accepted ones (and the command-line flag)."""
        def check(name, allowed):
            v = getattr(self, name)
            if v is not None and v not in allowed:
                raise InputError(f"parameter {name}={v!r} is not one of {', '.join(allowed)}{_flag(name)}.")

        check("phase_units", PHASE_UNITS)
        check("handedness", HANDEDNESS)
        check("highpass", HIGHPASS)
        check("mask_type", MASK_TYPES)
        check("localisation", LOCALISATION)
        for name in ("mask_power", "mip_slab_mm", "bank_depth_mm", "homodyne_window"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise InputError(f"parameter {name}={v!r} must be positive{_flag(name)}.")
        for name in ("band_ratio", "region_band_ratio"):
            v = getattr(self, name)
            if v is not None and not 0 < v < 1:
                raise InputError(f"parameter {name}={v!r} must lie between 0 and 1 (a bank / control ratio, "
                                 f"e.g. 0.9 = bank 10 % darker than its control cortex){_flag(name)}.")
        bad = [t for t in self.echo_times if not (t > 0 and t < 1)]
        if bad:
            given = " ".join(f"{t:g}" for t in self.echo_times)
            if all(1 <= t < 1000 for t in bad):
                why = "these look like milliseconds"
            elif any(not t > 0 for t in bad):
                why = "echo times are positive"
            else:
                why = "an echo time is well under a second"
            example = " ".join(f"{t / 1000:g}" if 1 <= t < 1000 else "0.02" for t in self.echo_times)
            raise InputError(f"echo times {given} (--te on the command line): give echo times in seconds ({why}), "
                             f"e.g. --te {example}.")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
