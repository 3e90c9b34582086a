"""The kNN accuracy of report.json at any out_dim (issue 28): a k-d tree up to 16 dimensions,
a fixed-size stratified sample above; both equal brute force where they should."""

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from simcne import knn_accuracy
from simcne.metrics import knn_summary


def _brute(Y, y, k=15):
    Ytr, Yte, ltr, lte = train_test_split(Y, y, test_size=0.2, stratify=y, random_state=0)
    return KNeighborsClassifier(k, algorithm="brute").fit(Ytr, ltr).score(Yte, lte)


def _data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    return rng.normal(size=(n, d)) + y[:, None] * 0.7, y


def test_tree_equals_brute_force():
    Y, y = _data(600, 3)
    acc, how = knn_summary(Y, y)
    assert how == {"algorithm": "kd_tree", "points": 600, "sampled_from": None}
    assert acc == _brute(Y, y)


def test_high_dimensions_use_a_fixed_size_sample():
    Y, y = _data(900, 32)
    acc, how = knn_summary(Y, y, max_points=300)
    assert how == {"algorithm": "brute", "points": 300, "sampled_from": 900}
    keep, _ = train_test_split(np.arange(900), train_size=300, stratify=y, random_state=0)
    keep = np.sort(keep)
    assert acc == _brute(Y[keep], y[keep])
    # not more points than the cap: all of them, brute force, as before
    assert knn_accuracy(Y, y, max_points=900) == _brute(Y, y)
