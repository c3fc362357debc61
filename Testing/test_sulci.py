"""Sulcal localisation (MotorBandSignLib.sulci) on synthetic geometry with an exact answer.

A slab of "brain" holds two gyri: white-matter blades (y < -4 mm and y > +4 mm) each under
3 mm of cortex, meeting at a sulcus whose midline is the plane y = 0 (a closed sulcus: the two
walls touch there), deep white matter below. Anterior is +y. The tests check that white matter
is found with either contrast polarity, that the sulcal midline lies on y = 0, and that the bank
goes on the anterior wall only, one cortical thickness deep, and never deeper than the fundus.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from MotorBandSignLib import sulci
from MotorBandSignLib.errors import InputError

SP = np.array([1.0, 1.0, 1.0])


def _phantom(wm_value=1.0, gm_value=0.8, csf_value=0.3, noise=0.01, seed=0):
    """(image, brain, y_of_voxel, z_of_voxel, truth_bank) on a 70 x 80 x 60 grid (k=z, j=y, i=x)."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = 70, 80, 60
    z, y, x = np.meshgrid(np.arange(nz) - 20.0, np.arange(ny) - 40.0, np.arange(nx) - 30.0, indexing="ij")
    brain = (np.abs(x) < 27) & (np.abs(y) < 37) & (z < 45)
    top = 40.0                                   # brain surface (z) above the gyri
    fundus = 12.0                                # sulcus reaches down to z = 12
    # white matter: deep below the fundus, and the two blades inside the gyri
    wm = brain & ((z < fundus - 3) | ((np.abs(y) > 3.0) & (z < top - 3)))
    # outside the gyri at the top: 3 mm of cortex under the surface; CSF above top
    csf = brain & (z >= top)
    image = np.where(wm, wm_value, gm_value).astype(np.float32)
    image[csf] = csf_value
    image[~brain] = 0.0
    image += noise * rng.standard_normal(image.shape).astype(np.float32)
    # truth: the anterior wall (0 < y <= 3), from the fundus to the crown
    bank = brain & ~wm & ~csf & (y > 0) & (y <= 3) & (z >= fundus - 1) & (z < top)
    return image, brain, y, z, bank


@pytest.mark.parametrize("wm_value,gm_value", [(1.0, 0.8), (0.8, 1.0)], ids=["wm-bright", "wm-dark"])
def test_white_matter_either_polarity(wm_value, gm_value):
    image, brain, y, z, _ = _phantom(wm_value, gm_value)
    hull = sulci.hull_depth(brain, SP)
    wm, info = sulci.white_matter(image, brain, SP, hull_depth=hull)
    true_wm = brain & ((z < 9) | ((np.abs(y) > 3.0) & (z < 37)))
    # judged away from the box's sides, where this phantom (unlike a brain) has white matter
    # right up to the mask and the smoothing mixes in the background
    inner = ndimage.binary_erosion(brain, iterations=2)
    agree = (wm == true_wm)[inner].mean()
    assert agree > 0.97, info
    assert info["polarity"] == (1 if wm_value > gm_value else -1)


def test_flat_image_is_refused():
    image, brain, *_ = _phantom(1.0, 1.0, 1.0)
    with pytest.raises(InputError, match="central sulcus cannot be found"):
        sulci.white_matter(image, brain, SP, hull_depth=sulci.hull_depth(brain, SP))


def test_midline_on_the_sulcus_plane_and_bank_on_anterior_wall():
    image, brain, y, z, truth = _phantom()
    hull = sulci.hull_depth(brain, SP)
    wm, _ = sulci.white_matter(image, brain, SP, hull_depth=hull)
    mid, d_wm = sulci.sulcal_midlines(wm, brain, SP, hull_depth=hull, min_depth_mm=0.0)
    in_sulcus = mid & (z > 12) & (z < 37) & (np.abs(y) < 6)
    assert in_sulcus.sum() > 200
    # the midline voxels sit on the plane y = 0 (one voxel either side: the jump marks a pair)
    assert np.abs(y[in_sulcus]).max() <= 1.0
    sheet = np.where(in_sulcus, 1, 0).astype(np.uint8)
    anterior = y.astype(np.float32)              # larger towards anterior (+y)
    labels, depth = sulci.bank_from_sulcus(sheet, anterior, brain, SP, hull_depth=hull, bank_depth_mm=2.0)
    bank, ctrl = labels == 1, labels == 3
    assert bank.sum() > 0 and ctrl.sum() > 0
    assert np.all(y[bank] >= -1.0) and np.all(y[ctrl] < 0)   # bank in front, control behind
    assert np.all(y[bank & (labels != 0)] <= 3.0)             # one cortical thickness deep
    assert z[bank].min() >= 12 - 1 - 1                        # not below the fundus
    dice = 2 * (bank & truth).sum() / (bank.sum() + truth.sum())
    assert dice > 0.7, dice
    assert np.all(depth[bank] <= 2.0 + 1e-6)


def test_find_central_sulcus_prefers_the_atlas_sulcus():
    """Two parallel sulci 14 mm apart; the atlas's interface lies 3 mm from the first: it wins."""
    shape = (40, 80, 40)
    mid = np.zeros(shape, bool)
    mid[5:35, 30, 5:35] = True         # sulcus A at j = 30
    mid[5:35, 44, 5:35] = True         # sulcus B at j = 44
    labels = np.zeros(shape, np.uint8)
    labels[5:35, 34:40, 5:20] = 1      # atlas precentral (left) in front of j = 33
    labels[5:35, 27:34, 5:20] = 3      # atlas postcentral behind it
    labels[5:35, 34:40, 21:35] = 2
    labels[5:35, 27:34, 21:35] = 4
    brain = np.ones(shape, bool)
    cs = sulci.find_central_sulcus(mid, labels, brain, SP, ijk_to_ras=np.eye(4))
    left = cs.midline == 1
    assert left.any()
    assert set(np.unique(np.argwhere(left)[:, 1])) == {30}
    assert cs.confidence["left"] > 0.5


@pytest.mark.parametrize("polarity", [1, -1], ids=["cortex-darker", "cortex-brighter"])
def test_cortex_level_is_the_nearest_peak_beyond_white_matter(polarity):
    """A cortical mantle of 40 % cortex 10 % off white matter, both with a 3.5 % spread (GRE
    magnitude: the two peaks overlap), plus sulcal CSF far out: the cortex's level is found, not
    CSF's, so white matter can be made to end midway (see sulci.white_matter)."""
    rng = np.random.default_rng(5)
    wm = rng.normal(1.0, 0.035, 50_000)
    ctx = rng.normal(1.0 - polarity * 0.10, 0.035, 40_000)
    csf = rng.normal(1.0 - polarity * 0.6, 0.1, 10_000)
    values = np.concatenate([wm, ctx, csf])
    bins = np.linspace(*np.percentile(values, [0.5, 99.5]), sulci.HIST_BINS + 1)
    level = sulci._cortex_mode(values, bins, 1.0, 0.035, polarity)
    assert level is not None and abs(level - (1.0 - polarity * 0.10)) < 0.03, level
    # white matter alone (its peak's flank only): no cortex level
    alone = np.concatenate([wm, csf])
    assert sulci._cortex_mode(alone, bins, 1.0, 0.035, polarity) is None


def test_cortex_level_skips_white_matters_own_partial_volume_peak():
    """A noise-free T1-like mantle: white matter very uniform (0.4 % spread), a narrow peak of
    white-matter partial volume 1.5 % below it, cortex 30 % below. The small peak lies inside white
    matter's tolerance (sulci.WM_MIN_TOLERANCE) and is not taken for cortex (it was, and white
    matter then ended 1 % below its own level, leaving out most gyral white matter)."""
    rng = np.random.default_rng(11)
    wm = rng.normal(1.0, 0.0042, 60_000)
    shoulder = rng.normal(0.985, 0.002, 20_000)
    ctx = rng.normal(0.70, 0.03, 40_000)
    values = np.concatenate([wm, shoulder, ctx])
    bins = np.linspace(*np.percentile(values, [0.5, 99.5]), sulci.HIST_BINS + 1)
    level = sulci._cortex_mode(values, bins, 1.0, 0.0042, 1)
    assert level is not None and abs(level - 0.70) < 0.03, level


def _bulge(radius=8.0, half_length=28.0, height=10, overhang_deg=40.0):
    """Voxel centres (kji, mm) of a sheet: the line y = 0 with an omega-shaped fold towards +y
    in its middle (a circle of ``radius`` whose arc goes ``overhang_deg`` below its equator on
    either side, like the hand knob), extruded along k; and each point's true normal on the
    fold's outer ("anterior", +y at the line) side. Returns (points, normals)."""
    a0 = np.radians(overhang_deg)
    neck = radius * np.cos(a0)                      # half-width of the fold's base
    centre = radius * np.sin(a0)                    # the arc's ends meet the line y = 0
    path = [((0.0, x), (1.0, 0.0)) for x in np.arange(-half_length, -neck, 0.25)]
    for a in np.arange(np.pi + a0, -a0, -0.25 / radius):
        path.append(((centre + radius * np.sin(a), radius * np.cos(a)), (np.sin(a), np.cos(a))))
    path += [((0.0, x), (1.0, 0.0)) for x in np.arange(neck, half_length, 0.25)]
    pts = [(k, round(p[0]), round(p[1])) for p, _ in path for k in range(height)]
    nrm = [(0.0, n[0], n[1]) for _, n in path for k in range(height)]
    pts, idx = np.unique(np.array(pts, float), axis=0, return_index=True)
    return pts, np.array(nrm)[idx]


def test_oriented_normals_follow_a_fold():
    """The rough direction (+y everywhere, like an atlas's anterior axis) is perpendicular to the
    fold's flanks and opposite to the true normal where the fold overhangs; the normals must
    still point out of the fold all round (consistent orientation along the sheet), where a
    voxel-by-voxel comparison with +y gets the overhang wrong."""
    pts, true_n = _bulge()
    toward = np.tile([0.0, 1.0, 0.0], (len(pts), 1))
    n = sulci.oriented_normals(pts, toward, SP)
    assert n.shape == pts.shape
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-6)
    agree = np.einsum("ij,ij->i", n, true_n)
    x, y = pts[:, 2], pts[:, 1]
    flat = np.abs(x) > 10                                   # the line, away from the fold's base
    arc = y > 1.5                                           # the fold, off the base line
    assert np.all(agree[flat] > 0.9), agree[flat].min()
    assert np.mean(agree[arc] > 0.7) > 0.9, np.mean(agree[arc] > 0.7)
    overhang = arc & (true_n[:, 1] < -0.2)                  # outer normal points away from +y
    assert overhang.sum() > 20 and np.mean(agree[overhang] > 0.5) > 0.9, np.mean(agree[overhang] > 0.5)
    # flipping the rough direction flips every normal
    np.testing.assert_allclose(sulci.oriented_normals(pts, -toward, SP), -n, atol=1e-9)


def test_sheet_parts_not_facing_the_precentral_gyrus_bound_no_wall():
    """The central sulcus's sheet (plane y = 0, anterior +y) with another sulcus joined to it at
    right angles (plane x = 0 for y > 0, running anterior-posterior): the joined piece's walls face
    left and right, not the precentral gyrus, so they get neither bank nor control
    (sulci.SHEET_FACING_COSINE); the central sulcus keeps both walls."""
    shape = (20, 40, 60)                                  # k = z, j = y, i = x
    z, y, x = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]) - 20.0, np.arange(shape[2]) - 30.0,
                          indexing="ij")
    sheet = np.zeros(shape, np.uint8)
    sheet[(y == 0) & (np.abs(x) <= 25)] = 1               # the central sulcus
    sheet[(x == 0) & (y > 0) & (y <= 15)] = 1             # a sulcus joined to it, across
    brain = np.ones(shape, bool)
    hull = np.full(shape, 10.0, np.float32)               # flat: no fundus limit in play
    labels, _ = sulci.bank_from_sulcus(sheet, y.astype(np.float32), brain, SP, hull_depth=hull, bank_depth_mm=3.0)
    bank, ctrl = labels == 1, labels == 3
    # along the central sulcus, away from the junction: both walls, 3 voxels deep each
    far = (np.abs(x) >= 8) & (np.abs(x) <= 25)
    assert np.array_equal(bank & far, far & (y >= 1) & (y <= 3))
    assert np.array_equal(ctrl & far, far & (y <= -1) & (y >= -3))
    # beside the joined sulcus, beyond the central sulcus's own walls: nothing
    beside = (y >= 5) & (np.abs(x) <= 3)
    assert not labels[beside].any(), int(np.count_nonzero(labels[beside]))


def test_bank_is_drawn_to_the_sheets_edges_and_measured_on_its_core():
    """A sheet (plane y = 0, anterior +y) ending at |x| = 10 and at the fundus z = 10 (depth
    below the hull = z). The drawn bank (sulci.DRAWN_WALL_COSINE, DRAWN_FUNDUS_MARGIN_MM) adds
    voxels on the anterior side beyond those edges, at most 2 mm deeper than the fundus; its
    core is exactly the bank of the stricter rules, and the control does not change."""
    shape = (20, 20, 40)                                  # k = z, j = y, i = x
    z, y, x = np.meshgrid(np.arange(shape[0]) * 1.0, np.arange(shape[1]) - 10.0, np.arange(shape[2]) - 20.0,
                          indexing="ij")
    sheet = ((y == 0) & (np.abs(x) <= 10) & (z <= 10)).astype(np.uint8)
    brain = np.ones(shape, bool)
    hull = z.astype(np.float32)
    strict, _ = sulci.bank_from_sulcus(sheet, y.astype(np.float32), brain, SP, hull_depth=hull, bank_depth_mm=3.0)
    wide, _, core = sulci.bank_from_sulcus(sheet, y.astype(np.float32), brain, SP, hull_depth=hull, bank_depth_mm=3.0,
                                           drawn_wall_cosine=sulci.DRAWN_WALL_COSINE,
                                           drawn_fundus_margin_mm=sulci.DRAWN_FUNDUS_MARGIN_MM, return_core=True)
    assert np.array_equal(wide == 3, strict == 3)                       # control unchanged
    assert np.array_equal((wide == 1) & core, strict == 1)              # measured core = strict bank
    extra = (wide == 1) & ~core
    assert extra.sum() > 50, int(extra.sum())
    assert np.all(y[extra] > 0)                                         # anterior side only
    assert np.all((np.abs(x[extra]) > 10) | (z[extra] > 10))            # beyond the sheet's edges
    assert z[extra].max() <= 12                                         # <= 2 mm below the fundus
    # 2 mm beyond the sheet's end, 1 mm in front of its plane (z = 5, y = 1, x = 12): drawn, not measured
    assert wide[5, 11, 32] == 1 and not core[5, 11, 32] and strict[5, 11, 32] == 0


def test_wall_by_white_matter_takes_the_cortex_of_the_precentral_white_matter():
    """A closed sulcus (sheet y = 0, anterior +y, fundus at depth z = 12) between two gyri whose
    white matter starts 4 mm either side (|y| >= 4): every cortex voxel takes the side of its
    nearest white matter, so the wall is the anterior cortex from the sheet to the white matter
    (1 <= y <= 3; the sheet's own voxels, equidistant from both, may go either way), nothing
    behind the sheet, nothing deeper than 2 mm below the fundus (sulci.DRAWN_FUNDUS_MARGIN_MM),
    and a voxel already labelled (the other side's) is never taken."""
    shape = (30, 30, 40)                                  # k = z (depth below the hull), j = y, i = x
    z, y, x = np.meshgrid(np.arange(shape[0]) * 1.0, np.arange(shape[1]) - 15.0, np.arange(shape[2]) - 20.0,
                          indexing="ij")
    wm = (np.abs(y) >= 4) | (z >= 16)                      # gyral white matter; deep white matter below
    sheet = ((y == 0) & (np.abs(x) <= 15) & (z <= 12)).astype(np.uint8)
    brain = np.ones(shape, bool)
    hull = z.astype(np.float32)
    wall, depth = sulci.wall_by_white_matter(sheet, y.astype(np.float32), brain, wm, SP, hull_depth=hull,
                                             bank_depth_mm=3.0)
    w = wall == 1
    inside = (np.abs(x) <= 12) & (z <= 12)
    assert np.array_equal(w & inside & (y != 0), inside & (y >= 1) & (y <= 3))
    assert not (w & (y < 0)).any() and not (w & wm).any()
    assert z[w].max() <= 12 + sulci.DRAWN_FUNDUS_MARGIN_MM
    assert np.allclose(depth[w & inside & (y != 0)], y[w & inside & (y != 0)])   # distance from the sheet
    # a second sheet's label is never overwritten: the right-hand copy of the same sulcus finds
    # its voxels taken
    both = sheet.copy()
    both[(y == 0) & (np.abs(x) <= 15) & (z <= 12) & (x > 0)] = 2
    two, _ = sulci.wall_by_white_matter(both, y.astype(np.float32), brain, wm, SP, hull_depth=hull, bank_depth_mm=3.0)
    assert set(np.unique(two)) == {0, 1, 2} and not ((two == 2) & (x < -1)).any()


def _broken_sheet(shift_vox: int):
    """A vertical sheet (j = 30) whose lower half (k < 20) is displaced by ``shift_vox`` voxels
    along j: a break in the midline such as noise leaves between two 3 mm slabs."""
    shape = (40, 80, 30)
    cand = np.zeros(shape, bool)
    cand[20:38, 30, 5:25] = True
    cand[2:20, 30 + shift_vox, 5:25] = True
    return cand


@pytest.mark.parametrize("spacing,shift,continues", [
    ((1.0, 1.0, 1.0), 3, True),      # 3 mm: within sulci.CHAIN_GAP_MM (two voxels along an axis stopped it before)
    ((1.0, 1.0, 1.0), 6, False),     # 6 mm: another sheet, not this one's continuation
    ((1.0, 0.5, 1.0), 6, True),      # six voxels of 0.5 mm = 3 mm: the rule is in mm, not voxels
])
def test_sheet_follows_a_break_of_a_few_mm_but_not_a_jump_to_another_sulcus(spacing, shift, continues):
    cand = _broken_sheet(shift)
    w = np.where(cand, 1.0, 0.0)
    w[2:20] *= 0.5                   # the upper half scores best: the sheet starts there
    sp = np.asarray(spacing)
    ijk_to_ras = np.diag([sp[2], sp[1], sp[0], 1.0])
    sheet = sulci._sheet_by_slabs(cand, w, ijk_to_ras, (0, 0, 0), sulci.SLAB_MM, spacing_kji=sp)
    assert sheet[20:38].sum() == cand[20:38].sum()                    # the whole upper half
    lower = sheet[2:20].sum()
    assert lower == (cand[2:20].sum() if continues else 0)


@pytest.mark.parametrize("contrast", ["pd-weighted, dark sulcal csf", "pd-weighted, bright csf", "t1-weighted"])
def test_polarity_is_the_side_of_the_cortex_peak_not_of_the_mantles_mass(contrast):
    """A cortical mantle whose grey/white contrast is small (cortex 8 % off white matter) with
    more of its mass on the other side of white matter (sulcal CSF darkened by veins and partial
    volume on a proton-density-weighted magnitude): the polarity follows the cortex's peak, the
    one nearer to white matter, and white matter ends midway to it. The mantle's mass alone
    (below 0.47 > above 0.26) made the cortex darker than white matter (sulci._polarity)."""
    rng = np.random.default_rng(3)
    sign, csf_level = {"pd-weighted, dark sulcal csf": (1, 0.6), "pd-weighted, bright csf": (1, 1.45),
                       "t1-weighted": (-1, 0.45)}[contrast]
    wm = rng.normal(1.0, 0.025, 30_000)
    ctx = rng.normal(1.0 + sign * 0.08, 0.03, 40_000)
    csf = rng.normal(csf_level, 0.12, 60_000)
    values = np.concatenate([wm, ctx, csf])
    bins = np.linspace(*np.percentile(values, [0.5, 99.5]), sulci.HIST_BINS + 1)
    below, above = float(np.mean(values < 0.95)), float(np.mean(values > 1.05))
    polarity, level = sulci._polarity(values, bins, 1.0, 0.025, below, above)
    assert polarity == -sign
    assert level is not None and abs(level - (1.0 + sign * 0.08)) < 0.02, level
