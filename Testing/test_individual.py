"""The individual-brain development set (Testing/phantoms/brains*, individual.py).

Two real brains that are not the registration template, fetched from PyPI packages on first use
(clabtoolkit 0.6.0 wheel, Apache-2.0; pycortex 1.4.0 source package, BSD-2-Clause) and cached;
the truth (posterior bank of the precentral gyrus) comes from each brain's own anatomy, never
from the atlas the pipeline registers. These tests check the truth and the physics of the cases;
test_end_to_end_individual.py runs the pipeline on them.
"""

from __future__ import annotations

import numpy as np
import pytest

from phantoms import brains, individual

BRAINS = ("clab", "pycortex_s1")


@pytest.fixture(scope="module", params=BRAINS)
def brain(request):
    return brains.load(request.param)


def test_bank_is_the_brains_own_precentral_cortex(brain):
    vox_ml = brain.spacing_mm ** 3 / 1000.0
    xs = {}
    for h, code in ((1, 1024), (2, 2024)):
        bank = brain.bank == h
        ml = bank.sum() * vox_ml
        # the posterior bank of an adult precentral gyrus: a few mL per hemisphere
        assert 2.0 < ml < 7.0, (brain.name, h, ml)
        # it lies in the brain's own precentral cortex label (FreeSurfer numbering)
        assert np.mean(brain.aparc[bank] == code) > 0.98
        assert set(np.unique(brain.regions[bank]).tolist()) == {1, 2, 3}
        xs[h] = brain.ras(bank)[:, 0].mean()
    assert xs[1] < -20 < 20 < xs[2]          # left bank at negative RAS x
    # the bank faces the postcentral gyrus: most of it lies within 6 mm of postcentral cortex
    from scipy import ndimage

    post = np.isin(brain.aparc, (1022, 2022))
    d = ndimage.distance_transform_edt(~post, sampling=[brain.spacing_mm] * 3)
    assert np.mean(d[brain.bank > 0] <= 6.0) > 0.9


def test_tissue_fractions_are_partial_volumes(brain):
    total = brain.gm + brain.wm + brain.csf
    assert total.max() <= 1.0 + 1e-3 and total.min() >= 0.0
    inside = total > 0.5
    ml = inside.sum() * brain.spacing_mm ** 3 / 1000.0
    assert 1100 < ml < 1900, ml                                  # adult intracranial volume
    # partial volume at tissue borders, not binary labels
    assert np.mean((brain.gm > 0.05) & (brain.gm < 0.95)) > 0.005


@pytest.fixture(scope="module")
def clab_pair():
    """The same clab head (seed) without and with a bilateral 0.08 ppm band, 1.5 mm."""
    kw = dict(brain="clab", seed=7, voxel_mm=(1.5, 1.5, 1.5))
    return (individual.case(individual.IndividualConfig(band="none", **kw)),
            individual.case(individual.IndividualConfig(band="bilateral", delta_chi_ppm=0.08, **kw)))


def test_band_darkens_the_true_bank_and_nothing_else(clab_pair):
    none, band = clab_pair
    assert none.expected_pattern == "absent" and band.expected_pattern == "bilateral"
    assert np.array_equal(none.truth.array, band.truth.array)
    t = band.truth.array > 0
    assert (band.band.array > 0).sum() == t.sum()
    ratio = np.median(band.magnitude.array[t]) / np.median(none.magnitude.array[t])
    # R2* +280 s^-1/ppm x 0.08 ppm at TE 20 ms on the GM fraction: ~20-40 % darker (BRIEF.md)
    assert 0.55 < ratio < 0.85, ratio
    far = (none.magnitude.array > 0) & ~t
    far_ratio = np.median(band.magnitude.array[far]) / np.median(none.magnitude.array[far])
    assert abs(far_ratio - 1.0) < 0.01


def test_case_carries_the_brains_own_parcellation_and_t1_posed_like_the_brain(clab_pair):
    none, _ = clab_pair
    p, t1 = none.parcellation, none.t1
    assert np.array_equal(p.ijk_to_ras, t1.ijk_to_ras)
    # the posed parcellation's precentral cortex overlaps the truth on the acquisition grid
    kji = np.argwhere(none.truth.array == 1)
    ras = none.truth.ras_of_ijk(kji[:, ::-1].astype(float))
    ijk = np.rint(p.ijk_of_ras(ras)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(p.shape[::-1])), axis=1)
    labels = p.array[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
    assert np.mean(np.isin(labels, (1024, 1022, 0, 2, 3))) > 0.95
    assert np.mean(labels == 1024) > 0.5
