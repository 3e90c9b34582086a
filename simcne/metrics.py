"""Quality measures of an embedding: kNN accuracy, neighbourhood preservation, shape."""

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


# -- input checks -----------------------------------------------------------------------------
def _points(a, name: str, dims: int | None = None, flatten: bool = False) -> np.ndarray:
    """``a`` as a finite float array of shape (n, d); ``flatten`` folds images to rows."""
    a = np.asarray(a)
    if flatten and a.ndim > 2:
        a = a.reshape(len(a), -1)
    want = "(n, d)" if dims is None else f"(n, {dims})"
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name} must be an array of shape {want}; got shape {a.shape}.")
    if dims is not None and a.shape[1] != dims:
        raise ValueError(f"{name} must be an array of shape {want} (a 2-D map); "
                         f"got shape {a.shape}.")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers; got dtype {a.dtype}.")
    a = a.astype(np.float64 if a.dtype == np.float64 else np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite; got NaN or infinite values.")
    return a


def _pair(X_high, Y):
    X = _points(X_high, "X_high", flatten=True)
    Y = _points(Y, "Y")
    if len(X) != len(Y):
        raise ValueError(f"X_high and Y must have one row per point; got {len(X)} rows in "
                         f"X_high and {len(Y)} in Y.")
    return X, Y


def _check_k(k, n: int, limit: int | None = None) -> int:
    limit = n - 1 if limit is None else limit
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= limit:
        raise ValueError(f"k must be an int in [1, {limit}] for {n} points; got {k!r}.")
    return int(k)


def _sample(n: int, n_samples, random_state) -> np.ndarray:
    """Indices of the query points: all of them, or ``n_samples`` drawn without replacement."""
    if n_samples is None or n_samples >= n:
        return np.arange(n)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int or None; got {n_samples!r}.")
    return np.sort(np.random.default_rng(random_state).choice(n, int(n_samples), replace=False))


def _labels(labels, n: int) -> np.ndarray:
    if labels is None:
        return np.zeros(n, dtype=int)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels must have one entry per row of Y ({n}); got shape "
                         f"{labels.shape}.")
    return labels


def _neighbours(A: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """The k nearest neighbours (exact, Euclidean) of the points ``A[idx]``, themselves left out.

    Asks for k + 1 and drops the query point; where duplicates hide it among ties, the
    farthest of the k + 1 is dropped instead.
    """
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(A)
    ind = nn.kneighbors(A[idx], return_distance=False)
    drop = ind == idx[:, None]
    drop[~drop.any(axis=1), -1] = True
    return ind[~drop].reshape(len(idx), k)


# -- neighbourhoods ---------------------------------------------------------------------------
def neighborhood_preservation(X_high, Y, k: int = 15, n_samples: int | None = 2000,
                              random_state: int = 0) -> float:
    """Mean share of each point's k nearest neighbours in ``X_high`` kept among its k in ``Y``.

    For every query point, its k nearest neighbours (exact, Euclidean, itself left out) are
    found in the high-dimensional data ``X_high`` (pixels or features; images of shape
    (n, H, W) or (n, C, H, W) are flattened) and in the map ``Y``; the score is the size of
    the overlap over k, averaged over the query points. 1: every neighbourhood kept;
    about k / n for a map that has nothing to do with the data.

    With more than ``n_samples`` points, a random sample of that many query points (seeded
    by ``random_state``; the neighbours are still searched among all points) stands for the
    whole, so 70,000 points of 784 pixels take a few seconds: the brute-force search costs
    n_samples x n distances. ``n_samples=None`` uses every point.

    Measured (``benchmarks/map_shape.py``, k=15, against the pixels, BENCHMARKS.md):
    openTSNE keeps 0.59 of the pixel neighbours on digits and 0.41 on Fashion-MNIST 10k,
    UMAP 0.54 and 0.28, simcne's demo map of digits 0.28; a random map keeps k / n. Only
    compare maps of the same data against the same reference (pixels, or the same
    features): a map true to learned features keeps fewer pixel neighbours.
    """
    X, Y = _pair(X_high, Y)
    k = _check_k(k, len(Y))
    idx = _sample(len(Y), n_samples, random_state)
    near_x, near_y = _neighbours(X, idx, k), _neighbours(Y, idx, k)
    row = np.arange(len(idx))[:, None] * len(Y)  # offsets keep the rows apart in one isin
    kept = np.isin(near_y + row, near_x + row).reshape(len(idx), k).sum(axis=1)
    return float(np.mean(kept / k))


def trustworthiness(X_high, Y, k: int = 15, n_samples: int | None = 2000,
                    random_state: int = 0) -> float:
    """Trustworthiness (Venna & Kaski) of the map ``Y`` of ``X_high``, on sampled query points.

    Penalises the map's neighbours that are not neighbours in the data, by how far down the
    data's ranking they are: T = 1 - 2 / (m k (2n - 3k - 1)) * sum over the m query points i
    and their k map neighbours j of max(0, r(i, j) - k), r(i, j) the rank of j among i's
    neighbours in ``X_high`` (1 = nearest). 1: no intruders; about 0.5 for a random map.

    With every point as a query (``n_samples=None`` or n <= ``n_samples``) it equals
    ``sklearn.manifold.trustworthiness`` (up to ties), which holds the whole n x n distance
    matrix; here m query points cost m x n distances, in chunks, so 70,000 points take
    seconds with the default m = 2000 (seeded by ``random_state``).
    """
    from sklearn.metrics.pairwise import euclidean_distances

    X, Y = _pair(X_high, Y)
    n = len(Y)
    k = _check_k(k, n, limit=(n - 1) // 2)
    idx = _sample(n, n_samples, random_state)
    near_y = _neighbours(Y, idx, k)
    norms = np.einsum("ij,ij->i", X, X)[None, :]
    penalty, block = 0.0, 256
    for s in range(0, len(idx), block):  # block x n distances at a time
        q = idx[s:s + block]
        d = euclidean_distances(X[q], X, Y_norm_squared=norms, squared=True)
        d[np.arange(len(q)), q] = np.inf
        dj = np.take_along_axis(d, near_y[s:s + block], axis=1)  # (block, k)
        step = max(1, int(2e7 // (n * k)))  # the comparison holds step x n x k bools
        for t in range(0, len(q), step):
            rank = (d[t:t + step, :, None] < dj[t:t + step, None, :]).sum(axis=1) + 1
            penalty += float(np.clip(rank - k, 0, None).sum())
    return 1.0 - penalty * 2.0 / (len(idx) * k * (2.0 * n - 3.0 * k - 1.0))


# -- shape ------------------------------------------------------------------------------------
def _width(Y: np.ndarray) -> float:
    """The map's extent, robust to a few far points: the mean over its axes of the range
    from the 1st to the 99th percentile (the whole range where that is 0)."""
    lo, hi = np.quantile(Y, [0.01, 0.99], axis=0)
    w = float(np.mean(hi - lo))
    if w <= 0:
        w = float(np.mean(Y.max(axis=0) - Y.min(axis=0)))
    return w if w > 0 else 1.0


def _pieces(P: np.ndarray, gap: float, min_size: int):
    """The islands of the points ``P``: groups joined by chains of near neighbours (each
    among the other's 10 nearest and closer than ``gap``), largest first, those with at
    least ``min_size`` points."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import NearestNeighbors

    m = len(P)
    k = min(10, m - 1)
    dist, ind = NearestNeighbors(n_neighbors=k + 1).fit(P).kneighbors(P)
    keep = dist <= gap
    rows = np.broadcast_to(np.arange(m)[:, None], ind.shape)[keep]
    graph = coo_matrix((np.ones(len(rows)), (rows, ind[keep])), shape=(m, m))
    _, piece = connected_components(graph, directed=False)
    sizes = np.bincount(piece)
    for c in np.argsort(-sizes, kind="stable"):
        if sizes[c] < min_size:
            break
        yield P[piece == c]


def _per_class(Y, labels, min_size, gap, measure) -> dict:
    """``measure`` of each class's islands (at least ``min_size`` points and 10 % of the
    class), averaged with the islands' sizes as weights: ``{label: value}``."""
    Y = _points(Y, "Y", dims=2).astype(np.float64)
    labels = _labels(labels, len(Y))
    gap = gap * _width(Y)
    out = {}
    for lab in np.unique(labels):
        P = Y[labels == lab]
        if len(P) < min_size:
            continue
        parts = list(_pieces(P, gap, max(min_size, int(0.1 * len(P)))))
        if not parts:
            continue
        w = np.array([len(q) for q in parts], dtype=float)
        out[lab.item() if hasattr(lab, "item") else lab] = float(
            np.dot(w, [measure(q) for q in parts]) / w.sum())
    return out


def _inner(P: np.ndarray) -> float:
    r = np.linalg.norm(P - np.median(P, axis=0), axis=1)
    return float(np.mean(r <= 0.5 * np.quantile(r, 0.9)))


def _elongation(P: np.ndarray) -> float:
    ev = np.linalg.eigvalsh(np.cov(P, rowvar=False))
    return float(np.sqrt(max(ev[0], 0.0) / ev[1])) if ev[1] > 0 else 0.0


def class_inner_share(Y, labels=None, min_size: int = 20, gap: float = 0.03) -> dict:
    """Per class, the share of its points within half its radius of its centre.

    Centre: the coordinate-wise median; radius: the 90th percentile of the points'
    distances from it. A uniformly filled disc gives about 0.22, a round Gaussian blob
    0.34-0.44 (0.44 in theory, less where its thin tail falls apart into islands too small
    to count), a line segment 0.45, a ring or an outline (a hollow shell) about 0. A class drawn
    as several islands (points ``gap`` x the map's width apart) is measured per island,
    and the islands' values averaged by size; islands with fewer than ``min_size`` points
    or 10 % of the class are left out, as are classes with fewer than ``min_size`` points.
    ``labels=None`` treats the map as one class. Returns ``{label: share}``.
    """
    return _per_class(Y, labels, min_size, gap, _inner)


def class_elongation(Y, labels=None, min_size: int = 20, gap: float = 0.03) -> dict:
    """Per class, its smallest over its largest principal standard deviation.

    1: round; about 0 for a class squashed into a line. Islands, ``min_size`` and ``gap``
    as in ``class_inner_share``. Returns ``{label: ratio}``.
    """
    return _per_class(Y, labels, min_size, gap, _elongation)


_DIRECTIONS = np.linspace(0, np.pi, 36, endpoint=False)  # the lines tried, 5 degrees apart


def local_line_fraction(Y, radius: float = 0.05, band: float = 0.01, k: int = 300,
                        min_count: int = 15, n_samples: int | None = 10_000,
                        random_state: int = 0) -> np.ndarray:
    """Per point, the share of its surroundings that lie on one thin straight line through it.

    Distances are in units of the map's width (its extent from the 1st to the 99th
    percentile, the mean over the axes). The surroundings: the point's neighbours within
    ``radius`` (at most the ``k`` nearest, found with a k-d tree; all of them in a map of
    ``k`` points or fewer). Of the 36 lines through
    the point (5 degrees apart), the one whose band of half-width ``band`` holds most of
    them counts, if the neighbours in that band stretch over at least 1.5 x ``radius``
    along it (a small round cluster that fits inside the band is not a line). About
    0.25-0.5 in a filled region (the best of 36 bands: more where the neighbours are
    few), 1 on a line, an outline or a straight edge on which points pile up.

    NaN for a point with fewer than ``min_count`` neighbours that near. With more than
    ``n_samples`` points, only a seeded random sample of them is measured (their
    neighbours are still searched among all points); the others are NaN.
    """
    from sklearn.neighbors import NearestNeighbors

    Y = _points(Y, "Y", dims=2).astype(np.float64)
    n = len(Y)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1; got {k!r}.")
    k = min(int(k), n - 1) + 1  # a cap: a map of k points or fewer uses all of them
    width = _width(Y)
    r, half = radius * width, band * width
    normals = np.c_[np.cos(_DIRECTIONS), np.sin(_DIRECTIONS)]
    idx = _sample(n, n_samples, random_state)
    nn = NearestNeighbors(n_neighbors=k).fit(Y)
    out = np.full(n, np.nan)
    block = max(1, int(2e7 // (k * len(_DIRECTIONS))))
    for s in range(0, len(idx), block):
        q = idx[s:s + block]
        dist, ind = nn.kneighbors(Y[q])
        near = dist <= r  # (b, k)
        count = near.sum(axis=1)
        off = Y[ind] - Y[q][:, None, :]
        inside = (np.abs(off @ normals.T) <= half) & near[:, :, None]  # (b, k, 36)
        held = inside.sum(axis=1)
        best = held.argmax(axis=1)
        rows = np.arange(len(q))
        along = off @ np.c_[-normals[:, 1], normals[:, 0]].T  # (b, k, 36)
        along = along[rows, :, best]
        on = inside[rows, :, best]
        span = np.where(on, along, -np.inf).max(axis=1) - np.where(on, along, np.inf).min(axis=1)
        frac = np.where(span >= 1.5 * r, held[rows, best] / np.maximum(count, 1), 0.0)
        out[q] = np.where(count >= min_count, frac, np.nan)
    return out


def line_share(Y, threshold: float = 0.7, **kwargs) -> float:
    """Share of the map's points that lie on thin straight lines: ``local_line_fraction`` >
    ``threshold`` (keyword arguments go to it).

    Points piled up along straight edges, rays of a fan, outlines of hollow shells or a
    class drawn as a stroke count; points inside filled clusters, on their round edges and
    in small compact clusters do not. Points too isolated to judge are left out.
    """
    frac = local_line_fraction(Y, **kwargs)
    ok = ~np.isnan(frac)
    return float(np.mean(frac[ok] > threshold)) if ok.any() else 0.0


def hull_share(Y, width: float = 0.01) -> float:
    """Share of the map's points on or next to its convex hull.

    A point counts when its distance to the hull's boundary is at most ``width`` times the
    hull's mean width (its perimeter over pi: the diameter of a disc). A uniformly filled
    disc gives about 4 x ``width`` (0.04; 0.05-0.06 for a few thousand points, whose hull
    lies inside the disc), a filled square 0.05; maps of round clusters
    touch their hull at a few points; a map whose points pile up along straight edges (a
    wedge, a polygon) or along its outline puts many on it. Points on one line give 1.
    """
    from scipy.spatial import ConvexHull, QhullError

    Y = _points(Y, "Y", dims=2).astype(np.float64)
    if len(Y) < 3:
        raise ValueError(f"Y must have at least 3 points for a convex hull; got {len(Y)}.")
    try:
        hull = ConvexHull(Y)
    except QhullError:  # every point on one line (or one point): all on the hull
        return 1.0
    eq = hull.equations  # unit normals n and offsets b: n.y + b <= 0 inside
    tol = width * hull.area / np.pi  # in 2-D, .area is the perimeter
    near = np.zeros(len(Y), dtype=bool)
    for s in range(0, len(Y), 65536):
        d = -(Y[s:s + 65536] @ eq[:, :2].T + eq[:, 2])  # distance to each edge's line
        near[s:s + 65536] = d.min(axis=1) <= tol
    return float(np.mean(near))


#: where a map "looks wrong" (see ``map_shape``): measure -> (direction, limit)
SHAPE_LIMITS = {"inner_share": ("below", 0.1), "elongation": ("below", 0.1),
                "line_share": ("above", 0.04)}


def map_shape(Y, labels=None) -> dict:
    """The shape measures of a 2-D map, and which of them say it looks wrong.

    Returns a dict: ``inner_share`` and ``elongation``, the smallest over the classes of
    ``class_inner_share`` and ``class_elongation`` (``..._by_class``: the per-class dicts),
    ``line_share``, ``hull_share``, and ``flags``, the names of the measures beyond their
    limit in ``SHAPE_LIMITS``. The rule:

    - ``inner_share`` < 0.1: a class is a hollow shell (its outline, empty inside);
    - ``elongation`` < 0.1: a class is squashed into a line;
    - ``line_share`` > 0.04: more than 4 % of the points lie on thin straight lines
      (straight edges, rays of a fan, outlines, classes drawn as strokes).

    ``flags == []``: no artefact found. ``hull_share`` is reported without a limit: it did
    not separate the maps below (UMAP's compact clusters sit on its hull).
    ``labels=None`` treats the map as one class. Every measure is O(n log n) (k-d trees in
    2-D; ``local_line_fraction`` samples 10,000 points of larger maps).

    Calibration (``benchmarks/map_shape.py``; table in BENCHMARKS.md, "Map shape measures:
    calibration"): maps judged by eye as right (Gaussian blobs, filled discs, openTSNE and
    UMAP of digits and of Fashion-MNIST 10k) against maps judged wrong (rings, line
    segments, a wedge with 60 % of its points on its two edges, a fan of rays, simcne's
    digits map at exaggeration 8 folded onto one line, and the demo's digits map with its
    0s and 6s drawn as thin strokes). Right maps: inner share >= 0.14, elongation >= 0.17,
    line share <= 0.036; wrong synthetic maps and the wrong simcne maps are flagged (line
    share 0.12-0.92, or elongation <= 0.05, or inner share 0.00), and so are simcne's
    Fashion-MNIST maps at exaggeration 4 with straight edges and a hollow group of classes
    (line share 0.049-0.051: the reason the line limit is 0.04, not 0.1; the margin over
    UMAP's 0.036 is small). The limits sit between the two groups. Not flagged: the same
    artefacts read back from the pixels of docs/figures (where a pile of points on an edge
    shrinks to one marker's blot); measure the points.
    """
    Y = _points(Y, "Y", dims=2)
    labels = _labels(labels, len(Y))
    inner, elong = class_inner_share(Y, labels), class_elongation(Y, labels)
    out = {"inner_share": min(inner.values(), default=float("nan")),
           "elongation": min(elong.values(), default=float("nan")),
           "line_share": line_share(Y), "hull_share": hull_share(Y),
           "inner_share_by_class": inner, "elongation_by_class": elong}
    out["flags"] = [name for name, (side, limit) in SHAPE_LIMITS.items()
                    if (out[name] < limit if side == "below" else out[name] > limit)]
    return out
