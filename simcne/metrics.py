"""Quality measures of an embedding."""

from __future__ import annotations

import numpy as np

#: above this many points and 16 dimensions, the kNN accuracy is measured on a stratified
#: sample of this size (brute force there is O(N^2)); up to 16 dimensions a k-d tree finds
#: the neighbours of all points exactly, in O(N log N)
KNN_MAX_POINTS = 100_000
#: the most dimensions for which the k-d tree is used
KNN_TREE_DIMS = 16


def knn_accuracy(Y, labels, k: int = 15, test_size: float = 0.2, random_state: int = 0,
                 max_points: int | None = KNN_MAX_POINTS) -> float:
    """kNN classification accuracy of ``labels`` from ``Y`` on a stratified held-out split.

    Fits a k-nearest-neighbour classifier (Euclidean, k=15) on 80 % of the points and
    reports its accuracy on the other 20 %, split stratified by label. Up to 16
    dimensions the neighbours come from a k-d tree (exact, O(N log N)); in more
    dimensions, more than ``max_points`` points are first sampled down to ``max_points``
    (stratified, ``random_state``), so that the brute-force search stays bounded
    (``None``: never sampled). :func:`knn_summary` also says which was done.
    """
    return knn_summary(Y, labels, k, test_size, random_state, max_points)[0]


def knn_summary(Y, labels, k: int = 15, test_size: float = 0.2, random_state: int = 0,
                max_points: int | None = KNN_MAX_POINTS) -> tuple[float, dict]:
    """:func:`knn_accuracy` and how it was measured: ``{"algorithm": "kd_tree" or "brute",
    "points": the points used, "sampled_from": the points there were, or None}``."""
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    Y, labels = np.asarray(Y), np.asarray(labels)
    if len(Y) != len(labels):
        raise ValueError(f"Y has {len(Y)} rows but labels has {len(labels)} entries.")
    n = len(Y)
    d = Y.shape[1] if Y.ndim == 2 else 1
    tree = d <= KNN_TREE_DIMS
    sampled = not tree and max_points is not None and n > max_points
    if sampled:
        keep, _ = train_test_split(np.arange(n), train_size=int(max_points), stratify=labels,
                                   random_state=random_state)
        Y, labels = Y[np.sort(keep)], labels[np.sort(keep)]
    Ytr, Yte, ltr, lte = train_test_split(
        Y, labels, test_size=test_size, stratify=labels, random_state=random_state
    )
    clf = KNeighborsClassifier(n_neighbors=min(k, len(Ytr)),
                               algorithm="kd_tree" if tree else "brute").fit(Ytr, ltr)
    info = {"algorithm": "kd_tree" if tree else "brute", "points": int(len(Y)),
            "sampled_from": int(n) if sampled else None}
    return float(clf.score(Yte, lte)), info
