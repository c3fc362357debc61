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
