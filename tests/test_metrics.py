"""simcne.metrics: neighbourhood preservation and the shape measures on maps with known answers."""

import numpy as np
import pytest

from simcne import metrics
from simcne.metrics import (class_elongation, class_inner_share, hull_share, line_share,
                            local_line_fraction, map_shape, neighborhood_preservation,
                            trustworthiness)

N = 2000


def _disc(rng, n=N, centre=(0.0, 0.0), radius=1.0):
    r, t = radius * np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, n)
    return np.asarray(centre) + np.c_[r * np.cos(t), r * np.sin(t)]


def _ring(rng, n=N, centre=(0.0, 0.0), radius=1.0, noise=0.01):
    t = rng.uniform(0, 2 * np.pi, n)
    r = radius * (1 + noise * rng.normal(size=n))
    return np.asarray(centre) + np.c_[r * np.cos(t), r * np.sin(t)]


def _line(rng, n=N, noise=0.003):
    return np.c_[rng.uniform(-1, 1, n), noise * rng.normal(size=n)]


def _blobs(rng, n_per=300, centres=((0, 0), (6, 0), (0, 6), (6, 6))):
    Y = np.concatenate([rng.normal(size=(n_per, 2)) + c for c in centres])
    return Y, np.repeat(np.arange(len(centres)), n_per)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- neighbourhoods ---------------------------------------------------------------------------
def test_neighborhood_preservation_identity_is_one_and_random_is_chance(rng):
    X = rng.normal(size=(500, 20))
    assert neighborhood_preservation(X, X, k=10) == 1.0
    Y = rng.normal(size=(500, 2))
    score = neighborhood_preservation(X, Y, k=10)
    assert score < 0.06  # chance is k / (n - 1) = 0.02
    # a map that keeps the data's two strongest directions keeps more
    X[:, :2] *= 10
    assert neighborhood_preservation(X, X[:, :2], k=10) > 0.5


def test_neighborhood_preservation_flattens_images(rng):
    images = rng.uniform(size=(300, 4, 4))
    assert neighborhood_preservation(images, images.reshape(300, -1), k=5) == 1.0


def test_neighborhood_preservation_sampling_is_seeded(rng):
    X, Y = rng.normal(size=(600, 10)), rng.normal(size=(600, 2))
    X[:, :2] += 3 * Y
    a = neighborhood_preservation(X, Y, n_samples=100, random_state=1)
    assert a == neighborhood_preservation(X, Y, n_samples=100, random_state=1)
    assert a != neighborhood_preservation(X, Y, n_samples=100, random_state=2)
    full = neighborhood_preservation(X, Y, n_samples=None)
    assert abs(a - full) < 0.1


def test_trustworthiness_equals_sklearn_with_every_point(rng):
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    X = rng.normal(size=(300, 12))
    Y = X[:, :2] + 0.3 * rng.normal(size=(300, 2))
    ours = trustworthiness(X, Y, k=7, n_samples=None)
    assert ours == pytest.approx(sk_trustworthiness(X, Y, n_neighbors=7), abs=1e-12)
    assert trustworthiness(X, X[:, :5], k=7, n_samples=None) > ours
    sampled = trustworthiness(X, Y, k=7, n_samples=100, random_state=3)
    assert sampled == trustworthiness(X, Y, k=7, n_samples=100, random_state=3)
    assert abs(sampled - ours) < 0.05


# -- shape ------------------------------------------------------------------------------------
def test_inner_share_disc_blob_ring_line(rng):
    assert class_inner_share(_disc(rng))[0] == pytest.approx(0.225, abs=0.03)
    # a Gaussian blob: 0.44, less where the thin tail falls apart into dropped islands
    assert 0.3 < class_inner_share(rng.normal(size=(N, 2)))[0] < 0.47
    assert class_inner_share(_ring(rng))[0] < 0.01
    assert class_inner_share(_line(rng))[0] == pytest.approx(0.45, abs=0.04)


def test_inner_share_measures_each_island_of_a_class(rng):
    # one class drawn as two far-apart filled discs: neither island is hollow
    Y = np.concatenate([_disc(rng, 1000), _disc(rng, 1000, centre=(10, 0))])
    assert class_inner_share(Y)[0] == pytest.approx(0.225, abs=0.03)


def test_elongation_round_and_line(rng):
    assert class_elongation(_disc(rng))[0] > 0.9
    assert class_elongation(_line(rng))[0] < 0.01
    Y, labels = _blobs(rng)
    Y[labels == 2] = _line(rng, 300) * 2 + (0, 6)  # one class squashed into a line
    el = class_elongation(Y, labels)
    assert sorted(el) == [0, 1, 2, 3] and el[2] < 0.01
    assert min(el[c] for c in (0, 1, 3)) > 0.8


def test_lines_edges_and_outlines_are_on_lines_filled_clusters_are_not(rng):
    disc, ring, line = _disc(rng), _ring(rng), _line(rng)
    assert np.nanmedian(local_line_fraction(disc)) < 0.6  # ~19 neighbours: the best of 36 bands
    assert np.nanmedian(local_line_fraction(line)) > 0.95
    assert line_share(disc) < 0.01
    assert line_share(ring) > 0.7  # the bands, straight, miss a little of a curve
    assert line_share(line) > 0.9
    Y, _ = _blobs(rng)
    assert line_share(Y) < 0.02
    # small compact clusters that fit inside the band are not lines
    tiny = np.concatenate([0.002 * rng.normal(size=(100, 2)) + c
                           for c in rng.uniform(0, 1, size=(10, 2))])
    assert line_share(tiny) == 0.0
    # a filled triangle whose two edges hold most of the points: a wedge
    inside = rng.uniform(size=(3000, 2))
    inside = inside[inside[:, 1] < inside[:, 0]]
    t = rng.uniform(size=(1500, 1))
    wedge = np.concatenate([inside, np.c_[t, 0 * t], np.c_[t, t]])
    assert line_share(wedge) > 0.4
    assert line_share(inside) < 0.05


def test_line_share_of_a_map_smaller_than_its_neighbour_cap(rng):
    # 200 points, fewer than the default cap of 300 neighbours: every point's all of them
    line = _line(rng)[:200]
    assert line_share(line) > 0.9
    assert line_share(_disc(rng, 200)) < 0.05
    with pytest.raises(ValueError, match="k must be an int >= 1; got 0"):
        local_line_fraction(line, k=0)


def test_local_line_fraction_samples_large_maps_with_a_seed(rng):
    Y = _disc(rng, 3000)
    a = local_line_fraction(Y, n_samples=500, random_state=1)
    assert 450 <= np.sum(~np.isnan(a)) <= 500  # the sampled ones, less the few too isolated
    np.testing.assert_array_equal(a, local_line_fraction(Y, n_samples=500, random_state=1))
    b = local_line_fraction(Y, n_samples=500, random_state=2)
    assert not np.array_equal(np.isnan(a), np.isnan(b))


def test_hull_share_disc_ring_line_blobs(rng):
    assert 0.03 < hull_share(_disc(rng)) < 0.08  # 0.04 in theory; the hull is inscribed
    assert hull_share(_ring(rng)) > 0.3
    assert hull_share(np.c_[np.arange(10.0), np.zeros(10)]) == 1.0  # all on one line
    Y, _ = _blobs(rng)
    assert hull_share(Y) < 0.02


def test_map_shape_flags_only_the_wrong_maps(rng):
    Y, labels = _blobs(rng)
    good = map_shape(Y, labels)
    assert good["flags"] == []
    shells = np.concatenate([_ring(rng, 300, c, noise=0.03) for c in ((0, 0), (6, 0), (0, 6))])
    bad = map_shape(shells, np.repeat([0, 1, 2], 300))
    assert "inner_share" in bad["flags"] and bad["inner_share"] < 0.05
    assert set(bad["inner_share_by_class"]) == {0, 1, 2}
    lines = np.concatenate([_line(rng, 300) + c for c in ((0, 0), (3, 0), (0, 3))])
    assert "elongation" in map_shape(lines, np.repeat([0, 1, 2], 300))["flags"]


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda X, Y: neighborhood_preservation(X, Y[:-1]), "X_high and Y"),
    (lambda X, Y: trustworthiness(X[:-1], Y), "X_high and Y"),
    (lambda X, Y: neighborhood_preservation(X, Y[:, 0]), "Y must be an array of shape"),
    (lambda X, Y: neighborhood_preservation(X[:, 0], Y), "X_high must be an array"),
    (lambda X, Y: neighborhood_preservation(X, Y, k=0), "k must be"),
    (lambda X, Y: neighborhood_preservation(X, Y, k=100), "k must be"),
    (lambda X, Y: trustworthiness(X, Y, k=50), "k must be"),
    (lambda X, Y: neighborhood_preservation(X, Y, n_samples=0), "n_samples"),
    (lambda X, Y: neighborhood_preservation(X, np.full_like(Y, np.nan)), "Y must be finite"),
    (lambda X, Y: map_shape(X), r"Y must be an array of shape \(n, 2\)"),
    (lambda X, Y: map_shape(Y, labels=np.zeros(5)), "labels must have one entry"),
    (lambda X, Y: class_inner_share(Y[:, :1]), r"shape \(n, 2\)"),
    (lambda X, Y: hull_share(Y[:2]), "at least 3 points"),
    (lambda X, Y: line_share(Y.astype(str)), "Y must hold numbers"),
])
def test_bad_input_names_the_argument(rng, call, match):
    X, Y = rng.normal(size=(100, 6)), rng.normal(size=(100, 2))
    with pytest.raises(ValueError, match=match) as info:
        call(X, Y)
    assert "\n" not in str(info.value)


def test_exported_from_the_package():
    import simcne

    for name in ("knn_accuracy", "neighborhood_preservation", "trustworthiness", "map_shape"):
        assert getattr(simcne, name) is getattr(metrics, name)
