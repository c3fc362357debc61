"""Benchmark and evidence for :mod:`MotorBandSignLib.swi`.

Two modes:

``python Testing/benchmarks/bench_swi.py [--size 448x448x144] [--repeats 3]``
    Speed and memory of the two high-pass routes on a synthetic complex volume of clinical
    size (i x j x k), against the floor of one forward + one inverse complex64 3D FFT of the
    same array measured in the same run. Peak memory is measured with ``tracemalloc`` (numpy
    registers its buffers with it; scipy.fft's small per-thread scratch buffers are not
    counted) as the peak of new allocations during the call (outputs included) plus the
    inputs (magnitude + phase, float32), divided by the complex64 input size.

``python Testing/benchmarks/bench_swi.py --evidence``
    Compares the routes on a synthetic head (tissue in air, an air cavity, a strong linear +
    quadratic background field, wrapped phase, noise) with a thin paramagnetic cortical sheet:
    band contrast, CNR, false-dark share of the brain and residual background phase. This is
    the evidence behind :data:`MotorBandSignLib.swi.DEFAULT_HIGHPASS`.

Importable: :func:`head_phantom` builds the synthetic head (the tests use it too),
:func:`route_metrics` scores a result, :func:`main` runs the script.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from MotorBandSignLib import physics, swi

#: Susceptibility of air relative to tissue in ppm (air +0.36, water/tissue -9.05 ppm;
#: Schenck 1996, Med Phys 23:815).
CHI_AIR_PPM = 9.4
#: Extra R2* per ppm of iron-driven susceptibility, s^-1 (Langkammer 2010/2012; BRIEF.md: ~280).
R2STAR_PER_PPM = 280.0


def head_phantom(shape_kji=(80, 112, 96), voxel_mm=1.0, te_s=0.020, dchi_band=0.05, *,
                 background=True, cavity=True, noise=0.03, seed=0, b0_t=3.0, handedness="right",
                 band_normal="j"):
    """A synthetic head with a thin paramagnetic cortical-like sheet (the "band").

    Tissue (chi 0, magnitude 1) is an ellipsoid in air (chi +9.4 ppm relative to tissue);
    optionally an air cavity (a sinus) low in front; the band is an undulating sheet 2 voxels
    thick, ``dchi_band`` ppm, whose normal is along ``band_normal`` ("j": perpendicular to
    B0, as the posterior bank of the precentral gyrus on axial scans; "k": parallel to B0).
    B0 runs along k (axis 0). The background adds a linear + quadratic field (4.5 rad/voxel
    ... several wraps across the head at TE 20 ms). Magnitude carries the band's R2* (280 s^-1
    per ppm) and intravoxel dephasing (sinc of the phase step per voxel); complex Gaussian
    noise of ``noise`` (relative to tissue) gives the noisy magnitude and wrapped phase.

    Returns
    -------
    dict with ``magnitude``, ``phase`` (wrapped, float32), ``phase_true`` (unwrapped total),
    ``phase_local`` (band only), ``tissue``, ``brain`` (tissue eroded 3 voxels, no cavity),
    ``band``, ``near_band`` (brain within 2-5 voxels of the band), ``far`` (brain > 6 voxels
    from the band), ``spacing_kji``, ``te_s``.
    """
    rng = np.random.default_rng(seed)
    nk, nj, ni = shape_kji
    k, j, i = np.meshgrid(np.arange(nk, dtype=np.float32) - (nk - 1) / 2,
                          np.arange(nj, dtype=np.float32) - (nj - 1) / 2,
                          np.arange(ni, dtype=np.float32) - (ni - 1) / 2, indexing="ij", sparse=True)
    ak, aj, ai = 0.40 * nk, 0.42 * nj, 0.42 * ni
    tissue = (k / ak) ** 2 + (j / aj) ** 2 + (i / ai) ** 2 <= 1.0
    cav = np.zeros(shape_kji, bool)
    if cavity:
        rc = 0.06 * min(nj, ni)  # a sinus low in front, ~6 mm at 1 mm voxels
        cav = (k + 0.55 * ak) ** 2 + (j - 0.6 * aj) ** 2 + i ** 2 <= rc ** 2
        tissue &= ~cav
    chi_air = np.where(tissue, 0.0, CHI_AIR_PPM).astype(np.float32)

    # band: undulating sheet, 2 voxels thick, upper half of the head, away from the edge
    lam = max(12.0, ni / 5.0)
    if band_normal == "j":
        surf = 0.15 * nj + 3.0 * np.sin(2 * np.pi * i / lam)
        band = (np.abs(j - surf) < 1.0) & (k > 0.05 * nk) & (k < 0.30 * nk) & (np.abs(i) < 0.28 * ni)
    else:
        surf = 0.15 * nk + 0.0 * i
        band = (np.abs(k - surf) < 1.0) & (np.abs(j) < 0.25 * nj) & (np.abs(i) < 0.25 * ni)
    band = band & tissue
    chi_band = np.where(band, dchi_band, 0.0).astype(np.float32)

    sp = (voxel_mm,) * 3
    f_band = physics.field_from_chi(chi_band, sp, b0_direction=(1.0, 0.0, 0.0))
    phase_local = physics.phase_from_field(f_band, te_s, b0_t, handedness)
    total = phase_local.copy()
    if background:
        f_air = physics.field_from_chi(chi_air, sp, b0_direction=(1.0, 0.0, 0.0))
        f_air -= np.float32(np.median(f_air[tissue]))
        total += physics.phase_from_field(f_air, te_s, b0_t, handedness)
        # shim residual: linear + quadratic, several wraps across the head
        kk, jj, ii = k / nk, j / nj, i / ni
        total += (9.0 * ii + 6.0 * jj + 4.0 * kk + 14.0 * ii ** 2 + 10.0 * jj * kk + 12.0 * kk ** 2).astype(np.float32) * np.float32(te_s / 0.020)
        total += np.float32(1.3)  # receiver phase offset
    mag = np.where(tissue, 1.0, 0.0).astype(np.float32)
    mag *= np.exp(-R2STAR_PER_PPM * chi_band * te_s).astype(np.float32)
    # intravoxel dephasing from the phase step across each voxel
    for ax in range(3):
        g = np.gradient(total, axis=ax)
        mag *= np.abs(np.sinc(g / (2 * np.pi))).astype(np.float32)
    z = mag * np.exp(1j * total)
    z = z + noise * (rng.standard_normal(shape_kji) + 1j * rng.standard_normal(shape_kji))
    magnitude = np.abs(z).astype(np.float32)
    phase = np.angle(z).astype(np.float32)

    ball = ndimage.generate_binary_structure(3, 1)
    # brain lies under ~8 mm of scalp and skull (tissue-like here) and a few mm from a sinus
    brain = ndimage.binary_erosion(tissue | cav, ball, iterations=int(round(8 / voxel_mm))) & ~ndimage.binary_dilation(
        cav, ball, iterations=int(round(5 / voxel_mm)))
    dist = ndimage.distance_transform_edt(~band)
    near_band = brain & ~band & (dist >= 2) & (dist <= 5)
    far = brain & (dist > 6)
    return dict(magnitude=magnitude, phase=phase, phase_true=total, phase_local=phase_local,
                tissue=tissue, brain=brain, band=band & brain, near_band=near_band, far=far,
                spacing_kji=sp, te_s=te_s)


def route_metrics(res, ph) -> dict:
    """Band contrast, CNR, false-dark share and residual background of an SWIResult.

    - ``contrast``: 1 - mean SWI in the band / mean SWI 2-5 voxels from it;
    - ``cnr``: (mean near - mean band) / std of SWI in brain far from the band;
    - ``false_dark``: share of brain voxels far from the band where the phase mask darkens by
      more than 20 % (SWI < 0.8 magnitude): wrongly masked brain (Eckstein et al. 2021);
    - ``residual_rad``: median |phase_hp| in brain far from the band (background left);
    - ``band_phase``: mean phase_hp in the band (rad) vs the true local phase.
    """
    s = res.swi
    band, near, far = ph["band"], ph["near_band"], ph["far"]
    mb, mn = float(s[band].mean()), float(s[near].mean())
    ratio = np.divide(s, np.maximum(res.magnitude, 1e-6))
    return dict(
        contrast=1.0 - mb / mn,
        cnr=(mn - mb) / float(s[far].std()),
        false_dark=float(np.mean(ratio[far] < 0.8)),
        residual_rad=float(np.median(np.abs(res.phase_hp[far]))),
        band_phase=float(res.phase_hp[band].mean()),
        band_phase_true=float(ph["phase_local"][band].mean()),
        qc_residual=res.qc["residual_fraction_over_half_pi"],
    )


def evidence_routes(n_inplane: int, sigmas=(2.0, 3.0, 4.0)):
    """Routes compared at equal cut-off: a Gaussian high-pass of sigma s voxels and a Hann
    window of w samples over an n-sample axis reach half power at 0.187/s and w/(4n) cycles per
    voxel, so w = 0.75 n / s (e.g. CLEAR-SWI's s = 4 matches w = 84 on a 448 matrix; Haacke's
    64 there matches s = 5.3)."""
    routes = []
    for s in sigmas:
        w = int(round(0.75 * n_inplane / s))
        routes += [
            (f"unwrap laplacian, sigma {s:g}", dict(highpass="unwrap", gaussian_sigma_ijk=(s, s, 0.0))),
            (f"unwrap skimage, sigma {s:g}", dict(highpass="unwrap", unwrap_method="skimage", gaussian_sigma_ijk=(s, s, 0.0))),
            (f"homodyne 2D, window {w} (= sigma {s:g})", dict(highpass="homodyne", homodyne_window=w, homodyne_dims=2)),
            (f"homodyne 3D, window {w} (= sigma {s:g})", dict(highpass="homodyne", homodyne_window=w, homodyne_dims=3)),
        ]
    return routes


def evidence(shape_kji=(80, 112, 96), seeds=(0, 1), tes=(0.010, 0.020)) -> list[dict]:
    """Score each route on the synthetic head; returns rows (route, te, seed, metrics)."""
    rows = []
    routes = evidence_routes(shape_kji[2])
    for te in tes:
        for seed in seeds:
            ph = head_phantom(shape_kji, te_s=te, seed=seed)
            for name, kw in routes:
                t = time.perf_counter()
                res = swi.compute_swi(ph["magnitude"], ph["phase"], ph["spacing_kji"], mip_slab_mm=None, **kw)
                dt = time.perf_counter() - t
                rows.append(dict(route=name, te_ms=te * 1e3, seed=seed, seconds=dt, **route_metrics(res, ph)))
    return rows


def summarize(rows) -> list[dict]:
    """Mean of each metric per (route, TE) over seeds."""
    keys = ("contrast", "cnr", "false_dark", "residual_rad", "band_phase", "band_phase_true", "qc_residual", "seconds")
    out = {}
    for r in rows:
        out.setdefault((r["route"], r["te_ms"]), []).append(r)
    return [dict(route=k[0], te_ms=k[1], **{m: float(np.mean([x[m] for x in v])) for m in keys}) for k, v in out.items()]


def _print_evidence(rows):
    print(f"{'route':34s} {'TE':>4s} {'contrast':>8s} {'CNR':>6s} {'falsedark%':>10s} {'resid rad':>9s} "
          f"{'band ph':>8s} {'true':>6s} {'QC>pi/2%':>8s} {'s':>6s}")
    for r in rows:
        print(f"{r['route']:34s} {r['te_ms']:4.0f} {r['contrast']:8.3f} {r['cnr']:6.2f} {100 * r['false_dark']:10.2f} "
              f"{r['residual_rad']:9.3f} {r['band_phase']:8.3f} {r['band_phase_true']:6.3f} {100 * r['qc_residual']:8.2f} {r['seconds']:6.2f}")


# ----------------------------------------------------------------------------------------------
# speed and memory
# ----------------------------------------------------------------------------------------------

def synthetic_volume(shape_kji, seed=0):
    """Magnitude and wrapped phase of a clinical-size volume (ellipsoid head, background
    field of several wraps, noise), float32, built without float64 temporaries of full size."""
    rng = np.random.default_rng(seed)
    nk, nj, ni = shape_kji
    k, j, i = np.meshgrid(np.linspace(-1, 1, nk, dtype=np.float32), np.linspace(-1, 1, nj, dtype=np.float32),
                          np.linspace(-1, 1, ni, dtype=np.float32), indexing="ij", sparse=True)
    r2 = (k / 0.8) ** 2 + (j / 0.85) ** 2 + (i / 0.85) ** 2
    mag = np.where(r2 <= 1.0, np.float32(1.0), np.float32(0.0)).astype(np.float32)
    mag += rng.random(shape_kji, dtype=np.float32) * np.float32(0.05)
    phase = (np.float32(12.0) * i + np.float32(8.0) * j * j + np.float32(5.0) * k) + np.zeros(shape_kji, np.float32)
    phase += (rng.random(shape_kji, dtype=np.float32) - np.float32(0.5)) * np.float32(0.2)
    phase = physics.wrap(phase)
    return mag, phase


def _best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


def _peak_multiple(fn, input_bytes, input_arrays_bytes):
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (peak + input_arrays_bytes) / input_bytes, peak / input_bytes


def parse_size(text: str):
    """'448x448x144' (i x j x k) -> array shape (k, j, i)."""
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError("size must be IxJxK, e.g. 448x448x144")
    return (parts[2], parts[1], parts[0])


def benchmark(shape_kji, repeats=3, spacing_kji=(1.0, 0.5, 0.5)) -> dict:
    """Time and memory of both routes and the FFT floor on one synthetic volume."""
    mag, phase = synthetic_volume(shape_kji)
    n = mag.size
    input_bytes = n * np.dtype(np.complex64).itemsize
    arrays_bytes = mag.nbytes + phase.nbytes
    z = np.empty(shape_kji, np.complex64)
    z.real = mag
    z.imag = phase

    def floor():
        s = sfft.fftn(z, workers=-1)
        sfft.ifftn(s, workers=-1, overwrite_x=True)

    def homodyne():
        swi.compute_swi(mag, phase, spacing_kji, highpass="homodyne")

    def unwrap():
        swi.compute_swi(mag, phase, spacing_kji, highpass="unwrap")

    floor()  # plan / warm up
    homodyne()
    unwrap()
    out = {"shape_kji": shape_kji, "input_mb": input_bytes / 2 ** 20}
    out["fft_floor_s"] = _best_time(floor, repeats)
    out["homodyne_s"] = _best_time(homodyne, repeats)
    out["unwrap_s"] = _best_time(unwrap, repeats)
    del z
    out["homodyne_mem_x"] = _peak_multiple(homodyne, input_bytes, arrays_bytes)
    out["unwrap_mem_x"] = _peak_multiple(unwrap, input_bytes, arrays_bytes)
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _print_benchmark(b):
    fl, ho, un = b["fft_floor_s"][0], b["homodyne_s"][0], b["unwrap_s"][0]
    k, j, i = b["shape_kji"]
    print(f"size {i}x{j}x{k} (i x j x k), complex64 input {b['input_mb']:.0f} MB, threads {swi._n_threads()}")
    print(f"FFT floor (fftn + ifftn complex64): {fl:.3f} s (median {b['fft_floor_s'][1]:.3f})")
    print(f"homodyne SWI:  {ho:.3f} s (median {b['homodyne_s'][1]:.3f})  = {ho / fl:.2f} x floor  (target 1.5)")
    print(f"unwrap route:  {un:.3f} s (median {b['unwrap_s'][1]:.3f})  = {un / fl:.2f} x floor  (target 4)")
    for name in ("homodyne", "unwrap"):
        tot, extra = b[f"{name}_mem_x"]
        print(f"peak memory {name}: {tot:.2f} x input (tracemalloc: inputs + peak new allocations "
              f"{extra:.2f} x; target 6)")
    print(f"process max RSS: {b['maxrss_mb']:.0f} MB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=parse_size, default=parse_size("448x448x144"),
                    help="volume size IxJxK (default 448x448x144; CI: 128x128x48)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--evidence", action="store_true", help="compare the high-pass routes on a synthetic head")
    ap.add_argument("--quick", action="store_true", help="reduced form for CI: 128x128x48, one repeat")
    a = ap.parse_args(argv)
    if a.quick:
        a.size, a.repeats = parse_size("128x128x48"), 1
    if a.evidence:
        _print_evidence(summarize(evidence()))
        return 0
    _print_benchmark(benchmark(a.size, a.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
