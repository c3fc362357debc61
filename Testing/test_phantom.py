"""The physics phantom: analytic fields, phase sign, truth placement, laterality, determinism, I/O.

Physics checks use small synthetic grids; case checks use the cached named fixtures
(``conftest.phantom_case``) or tiny 3 mm cases that take about a second to generate.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from MotorBandSignLib import physics, templates
from MotorBandSignLib.volume import Volume
from phantoms import simulate as P

L = templates.REGION_LABELS
PRE = {1: L["left_precentral"], 2: L["right_precentral"]}
POST = {1: L["left_postcentral"], 2: L["right_postcentral"]}
FRONTAL = (L["left_frontal"], L["right_frontal"])


def tiny(**kw) -> P.Case:
    """A 3 mm case (about a second once the templates are loaded)."""
    kw.setdefault("voxel_mm", (3.0, 3.0, 3.0))
    return P.generate_case(P.PhantomConfig(**kw))


# -- physics against analytic results ------------------------------------------------------------
def _sphere(n, radius, centre, supersample=4):
    """Partial-volume ball (0..1) on an n^3 grid, by supersampling each voxel."""
    f = np.zeros((n, n, n), np.float32)
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5
    g = np.arange(n, dtype=np.float32)
    for a in offs:
        for b in offs:
            for c in offs:
                k, j, i = np.meshgrid(g + a - centre, g + b - centre, g + c - centre, indexing="ij", sparse=True)
                f += (k * k + j * j + i * i <= radius * radius)
    return f / supersample ** 3


def test_sphere_field_matches_analytic():
    n, a, c, dchi = 96, 8.0, 48.0, 1.0
    chi = _sphere(n, a, c) * dchi
    field = physics.field_from_chi(chi, (1.0, 1.0, 1.0), b0_direction=(1.0, 0.0, 0.0))
    checked = 0
    for r in (12.0, 16.0, 20.0):
        for axis, cos_t in ((0, 1.0), (2, 0.0)):           # along B0 (k) and perpendicular (i)
            idx = [int(c)] * 3
            idx[axis] = int(c + r)
            got = field[tuple(idx)]
            want = physics.sphere_field_analytic(r, cos_t, a, dchi)
            assert abs(got - want) <= 0.05 * abs(want), (r, axis, got, want)
            checked += 1
    # Lorentz-corrected field inside a uniform sphere is zero (vs +-2/3 dchi just outside on the poles)
    assert abs(field[int(c), int(c), int(c)]) < 0.05 * dchi * 2 / 3
    assert checked == 6


@pytest.mark.parametrize("normal, cos_t", [((1, 0, 0), 1.0), ((0, 0, 1), 0.0), ((1, 0, 1), np.sqrt(0.5))])
def test_slab_field_matches_analytic(normal, cos_t):
    """A slab that is infinite by construction (periodic box, no padding, lattice-compatible
    normal), and a finite 120 x 120 mm slab in a zero-padded box; normal given in (k, j, i)."""
    n, dchi = 128, 0.5
    k, j, i = np.meshgrid(*[np.arange(n)] * 3, indexing="ij", sparse=True)
    s = (normal[0] * k + normal[1] * j + normal[2] * i) % n
    thick = 6 * np.linalg.norm(normal)
    chi = ((s >= 0) & (s < thick)).astype(np.float32) * dchi
    field = physics.field_from_chi(chi, (1.0, 1.0, 1.0), b0_direction=(1.0, 0.0, 0.0), pad=0)
    want = physics.slab_field_analytic(cos_t, dchi)
    inside = field[chi > 0].mean()
    outside = field[(s >= n // 2 - 4) & (s < n // 2 + 4) & np.ones_like(chi, bool)].mean()
    assert abs((inside - outside) - want) <= 0.05 * abs(want), (inside, outside, want)
    # finite slab, zero padded: centre field within 5 % of the infinite-slab value
    if cos_t in (0.0, 1.0):
        # 120 x 120 x 3 mm: the finite-size error scales with thickness / width (~3 % here)
        m = 128
        chi = np.zeros((m, m, m), np.float32)
        lo, hi = m // 2 - 60, m // 2 + 60
        if cos_t == 1.0:    # normal along k (B0)
            chi[m // 2 - 1:m // 2 + 2, lo:hi, lo:hi] = dchi
        else:               # normal along i
            chi[lo:hi, lo:hi, m // 2 - 1:m // 2 + 2] = dchi
        f = physics.field_from_chi(chi, (1.0, 1.0, 1.0), b0_direction=(1.0, 0.0, 0.0), pad=32)
        got = f[m // 2, m // 2, m // 2]
        assert abs(got - want) <= 0.05 * abs(want), (got, want)


def test_sheet_parallel_to_b0_gives_negative_phase_right_handed():
    n = 64
    chi = np.zeros((n, n, n), np.float32)
    chi[:, :, 30:34] = 0.1                    # sheet normal along i, i.e. sheet parallel to B0 (k)
    right = P.forward_phase(chi, (1.0, 1.0, 1.0), 0.02, 3.0, "right", pad=0)
    left = P.forward_phase(chi, (1.0, 1.0, 1.0), 0.02, 3.0, "left", pad=0)
    d_right = right[:, :, 30:34].mean() - right[:, :, 0:8].mean()
    assert d_right < 0
    # magnitude: 0.1 ppm / 3 at 3 T, TE 20 ms is 16.05 rad/ppm * 0.0333 = 0.535 rad (BRIEF.md)
    assert d_right == pytest.approx(-16.05 * 0.1 / 3, rel=0.03)
    assert np.allclose(left, -right)


# -- truth placement -------------------------------------------------------------------------------
def _bank_check(case):
    """Per hemisphere: fraction of truth voxels in precentral cortex within 3 mm of the
    postcentral label (case's own anatomy, voxel-centre distances in mm)."""
    an, tr = case.anatomy.array, case.truth.array
    out = {}
    for h in (1, 2):
        d_post = ndimage.distance_transform_edt(an != POST[h], sampling=case.anatomy.spacing_kji)
        t = tr == h
        assert t.sum() > 200, f"hemisphere {h}: only {t.sum()} truth voxels"
        out[h] = (float(((an[t] == PRE[h]) & (d_post[t] <= 3.0)).mean()), d_post, t)
    return out


@pytest.mark.parametrize("name", ["bilateral", "oblique"])
def test_truth_is_the_posterior_bank_of_the_precentral_gyrus(phantom_case, name):
    case = phantom_case(name)
    an, gm = case.anatomy.array, case.gm.array
    for h, (frac, d_post, t) in _bank_check(case).items():
        assert frac >= 0.90, (name, h, frac)
        # not the anterior lip: the rest of the precentral cortex is much farther from the sulcus
        lip = (an == PRE[h]) & (gm > 0.5) & ~t
        assert np.median(d_post[t]) <= 2.6
        assert np.median(d_post[lip]) >= 2 * np.median(d_post[t])
        # never on the postcentral gyrus
        assert not np.any(an[t] == POST[h])
    # truth regions only on truth voxels, all three regions per hemisphere, ordered along the gyrus
    tr, reg = case.truth.array, case.truth_regions.array
    assert np.array_equal(reg > 0, tr > 0)
    ijk = np.argwhere(tr > 0)[:, ::-1]
    ras = case.truth.ras_of_ijk(ijk)
    r = reg[tr > 0]
    bc = case.brain_mask.ras_of_ijk(np.argwhere(case.brain_mask.array > 0)[:, ::-1]).mean(0)
    lateral = np.abs(ras[:, 0] - bc[0])
    assert set(np.unique(r)) == {1, 2, 3}
    assert lateral[r == 1].mean() < lateral[r == 2].mean() < lateral[r == 3].mean()
    assert ras[r == 1, 2].mean() > ras[r == 3, 2].mean()


def test_subject_anatomy_is_warped_away_from_the_template(bilateral_case):
    """The detection code registers the same template: the case must not sit on it."""
    case = bilateral_case
    tl = templates.region_labels()
    ijk = np.argwhere(np.ones(case.anatomy.shape, bool))[:, ::-1]
    tk = np.round(tl.ijk_of_ras(case.anatomy.ras_of_ijk(ijk))).astype(int)[:, ::-1]
    ok = np.all((tk >= 0) & (tk < np.array(tl.shape)), axis=1)
    lab = np.zeros(len(tk), np.uint8)
    lab[ok] = tl.array[tuple(tk[ok].T)]
    lab = lab.reshape(case.anatomy.shape)
    for v in (L["left_precentral"], L["right_precentral"]):
        a, b = case.anatomy.array == v, lab == v
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert 0.3 < dice < 0.85, dice
    w = case.params["warp"]
    assert w["bspline_coef_rms_mm"] == pytest.approx(3.5)
    assert all(0.92 <= s <= 1.08 for s in w["scale_xyz"]) and any(abs(s - 1) > 0.005 for s in w["scale_xyz"])
    assert all(abs(s) > 0 for s in w["sulcus_shift_y_mm_left_right"])
    json.dumps(case.params)   # serialisable


# -- laterality ------------------------------------------------------------------------------------
def _x_from_midline(case, mask):
    """RAS x of ``mask`` voxels minus the centre x of the brain in the same slice (the head
    may be rolled by up to 8 degrees, which moves the midline by several mm at the vertex)."""
    brain = case.brain_mask.array > 0
    idx = np.argwhere(mask)
    x = case.brain_mask.ras_of_ijk(idx[:, ::-1])[:, 0]
    centre = {}
    for k in np.unique(idx[:, 0]):
        b = np.argwhere(brain[k])
        centre[k] = case.brain_mask.ras_of_ijk(np.c_[b[:, 1], b[:, 0], np.full(len(b), k)])[:, 0].mean()
    return x - np.array([centre[k] for k in idx[:, 0]])


def test_left_band_is_patients_left(phantom_case):
    case = phantom_case("left")
    assert case.expected_pattern == "left"
    band, tr, chi = case.band.array, case.truth.array, case.chi.array
    assert band.max() == 1 and (band == 1).sum() == (tr == 1).sum()
    x = _x_from_midline(case, band == 1)
    # medial-wall voxels sit within a few mm of the midline (the atlas labels reach x = 0)
    assert (x < 0).mean() >= 0.9 and np.all(x[np.abs(x) > 8] < 0) and np.median(x) < -15
    assert np.median(chi[tr == 1]) > np.median(chi[tr == 2]) + 0.03


def test_left_is_negative_x_on_the_oblique_grid(phantom_case):
    case = phantom_case("oblique")
    d = case.magnitude.direction
    tilt = np.degrees(np.arccos(abs(d[2, 2])))
    assert tilt == pytest.approx(18.0, abs=0.01)
    assert np.allclose(case.magnitude.spacing, (1.2, 1.2, 2.5))
    for h, sign in ((1, -1), (2, 1)):
        x = _x_from_midline(case, case.truth.array == h)
        assert (sign * x > 0).mean() >= 0.9 and np.all(sign * x[np.abs(x) > 8] > 0)
        assert sign * np.median(x) > 15


# -- contrast --------------------------------------------------------------------------------------
def _ratio(case, h):
    m, tr, an, gm = case.magnitude.array, case.truth.array, case.anatomy.array, case.gm.array
    ctrl = (gm > 0.5) & np.isin(an, FRONTAL) & (tr == 0)
    bank = (tr == h) & (gm > 0.5)
    return m[bank].mean() / m[ctrl].mean()


def test_band_is_darker_than_control_cortex(bilateral_case):
    for h in (1, 2):
        # +0.08 ppm -> +22 /s R2* -> exp(-0.02 * 22) = 0.64 on pure GM; partial volume softens it
        assert _ratio(bilateral_case, h) < 0.85


def test_none_case_has_truth_but_no_band(none_case):
    case = none_case
    assert case.expected_pattern == "absent" and not case.nonspecific_diffuse
    tr, chi, an, gm = case.truth.array, case.chi.array, case.anatomy.array, case.gm.array
    assert (tr == 1).sum() > 300 and (tr == 2).sum() > 300
    assert case.band.array.max() == 0
    ctrl = (gm > 0.5) & np.isin(an, FRONTAL) & (tr == 0)
    assert np.median(chi[tr > 0]) < np.median(chi[ctrl]) + 0.005
    for h in (1, 2):
        assert _ratio(case, h) > 0.95


def test_diffuse_ageing_raises_all_cortex(phantom_case, none_case):
    case = phantom_case("diffuse")
    assert case.expected_pattern == "absent" and case.nonspecific_diffuse
    def ctrl_chi(c):
        ctrl = (c.gm.array > 0.5) & np.isin(c.anatomy.array, FRONTAL) & (c.truth.array == 0)
        return np.median(c.chi.array[ctrl])
    assert ctrl_chi(case) - ctrl_chi(none_case) > 0.015
    for h in (1, 2):
        assert _ratio(case, h) > 0.95      # no band: the bank is not darker than other cortex


# -- units, handedness, echoes, coverage -------------------------------------------------------------
def test_siemens_fixture_range(phantom_case):
    ph = phantom_case("siemens").phase
    a = ph.array
    assert ph.meta["units"] == "siemens"
    assert a.min() >= -4096 and a.max() <= 4094
    assert a.min() < -4000 and a.max() > 4000
    assert np.all(a == np.round(a)) and np.all(a % 2 == 0)


def test_siemens_and_left_handed_encode_the_same_phase():
    base = dict(seed=7, snr=1e6, phase_offset=False)
    rad = tiny(**base).phase.array
    sie = tiny(**base, phase_units="siemens").phase.array
    lh = tiny(**base, handedness="left").phase.array
    back = (sie + 4096) / 2 / 4096 * 2 * np.pi - np.pi
    err = np.angle(np.exp(1j * (back - rad)))
    assert np.abs(err).max() <= 2 * np.pi / 4096 + 1e-5
    ref = tiny(**base)
    mask = (ref.brain_mask.array > 0) & (ref.magnitude.array > 0.05 * ref.magnitude.array.max())
    flip = np.angle(np.exp(1j * (lh + rad)))[mask]
    assert mask.sum() > 10000 and np.abs(flip).max() < 1e-2
    # and the flip is not trivial: the phase itself varies by radians over the brain
    assert np.ptp(rad[mask]) > 3


def test_multiecho_and_partial_coverage():
    c = tiny(seed=3, te_s=(0.01, 0.02, 0.03), coverage_top_mm=60.0)
    assert c.magnitude.array.ndim == 4 and c.magnitude.array.shape[0] == 3
    assert c.phase.array.shape == c.magnitude.array.shape
    assert c.magnitude.meta["echo_times_s"] == [0.01, 0.02, 0.03]
    brain = c.brain_mask.array > 0
    means = [c.magnitude.array[e][brain].mean() for e in range(3)]
    assert means[0] > means[1] > means[2]
    full = tiny(seed=3)
    # the slab covers the top 60 mm of the brain (+15 mm of margin above)
    extent = c.magnitude.shape[0] * c.magnitude.spacing[2]
    assert 70 <= extent <= 80 and full.magnitude.shape[0] * 3 > extent + 60
    z_top = c.brain_mask.ras_of_ijk(np.argwhere(brain)[:, ::-1])[:, 2]
    z_full = full.brain_mask.ras_of_ijk(np.argwhere(full.brain_mask.array > 0)[:, ::-1])[:, 2]
    assert z_top.min() > z_full.max() - 63


def test_band_region_restricts_the_band():
    c = tiny(seed=4, band_region="intermediate", voxel_mm=(2.0, 2.0, 2.0))
    band = c.band.array > 0
    assert band.sum() > 50
    assert np.all(c.truth_regions.array[band] == 2)
    br = c.params["band_regions"]
    assert br["left"]["medial"] == br["left"]["lateral"] == br["right"]["lateral"] == 0
    assert br["left"]["intermediate"] + br["right"]["intermediate"] == band.sum()
    assert (c.truth.array > 0).sum() > 1.5 * band.sum()    # truth stays the whole bank


# -- determinism, cache, files -------------------------------------------------------------------------
def test_same_seed_same_case_bit_for_bit_and_different_seed_differs():
    a, b = tiny(seed=11), tiny(seed=11)
    for n in P.Case.VOLUMES:
        assert np.array_equal(getattr(a, n).array, getattr(b, n).array), n
        assert np.array_equal(getattr(a, n).ijk_to_ras, getattr(b, n).ijk_to_ras), n
    c = tiny(seed=12, warp=False)
    d = tiny(seed=13, warp=False)
    assert np.array_equal(c.truth.array, d.truth.array)           # same anatomy without a warp
    air = c.brain_mask.array == 0
    diff = c.magnitude.array[air] - d.magnitude.array[air]
    assert np.mean(diff != 0) > 0.99                              # but different noise
    assert not np.array_equal(a.anatomy.array, tiny(seed=14).anatomy.array)   # and different warps


def test_cache_round_trip_and_write_case(tmp_path):
    import SimpleITK as sitk

    c = tiny(seed=21, te_s=(0.01, 0.02), phase_units="siemens")
    P.save_case_npz(c, tmp_path / "c.npz")
    r = P.load_case_npz(tmp_path / "c.npz")
    for n in P.Case.VOLUMES:
        assert np.array_equal(getattr(c, n).array, getattr(r, n).array), n
    assert r.params == c.params and r.config == c.config
    paths = P.write_case(c, tmp_path / "out")
    for n in ("magnitude", "phase", "truth", "truth_regions", "case_json"):
        assert (tmp_path / "out").joinpath(paths[n]).exists()
    assert not list((tmp_path / "out").glob(".tmp*"))
    img = sitk.ReadImage(paths["truth"])
    v = Volume.from_sitk(img)
    assert np.array_equal(v.array, c.truth.array)
    assert np.allclose(v.ijk_to_ras, c.truth.ijk_to_ras, atol=1e-4)
    ph = sitk.ReadImage(paths["phase"])
    assert ph.GetDimension() == 4 and ph.GetPixelID() == sitk.sitkInt16
    assert np.array_equal(sitk.GetArrayFromImage(ph), c.phase.array.astype(np.int16))
    info = json.loads((tmp_path / "out" / "case.json").read_text(encoding="utf-8"))
    assert info["expected_pattern"] == "bilateral" and info["phase_units"] == "siemens"


def test_invalid_config_is_refused():
    from MotorBandSignLib.errors import InputError

    with pytest.raises(InputError):
        P.generate_case(P.PhantomConfig(band="both"))
    with pytest.raises(InputError):
        P.fixture("nonexistent")
