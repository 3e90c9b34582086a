"""Quality measures of an embedding."""

from __future__ import annotations

import numpy as np


def knn_accuracy(Y, labels, k: int = 15, test_size: float = 0.2, random_state: int = 0) -> float:
    """kNN classification accuracy of ``labels`` from ``Y`` on a stratified held-out split.

    Fits a k-nearest-neighbour classifier (Euclidean, k=15) on 80 % of the points and
    reports its accuracy on the other 20 %, split stratified by label.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    Y, labels = np.asarray(Y), np.asarray(labels)
    if len(Y) != len(labels):
        raise ValueError(f"Y has {len(Y)} rows but labels has {len(labels)} entries.")
    Ytr, Yte, ltr, lte = train_test_split(
        Y, labels, test_size=test_size, stratify=labels, random_state=random_state
    )
    clf = KNeighborsClassifier(n_neighbors=min(k, len(Ytr))).fit(Ytr, ltr)
    return float(clf.score(Yte, lte))
