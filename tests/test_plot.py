"""Figures: each plot function returns its Axes and draws what it should (issue 4)."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.colors import to_rgba  # noqa: E402

from simcne.plot import (_plt, plot_embedding, plot_loss, plot_stages,  # noqa: E402
                         plot_thumbnails, save_figure)

HISTORY_DTYPE = [("stage", np.int64), ("epoch", np.int64), ("loss", np.float64)]


@pytest.fixture
def plt():
    plt = _plt()
    yield plt
    plt.close("all")


def _two_blobs(n=60):
    rng = np.random.default_rng(0)
    Y = np.concatenate([rng.normal(0, 1, (n, 2)), rng.normal(8, 1, (n, 2))])
    return Y, np.repeat([0, 1], n)


def test_plot_embedding_one_scatter_per_class_and_a_legend(plt):
    Y, y = _two_blobs()
    ax = plot_embedding(Y, y, ["cat", "dog"])
    assert len(ax.collections) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cat", "dog"]


def test_classes_are_drawn_in_a_seeded_random_order(plt):
    """Issue 29: drawn class by class, the last class covered the others where they met
    (class 0 hid under the rest in stages.png). All points are one scatter, shuffled."""
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 100)
    Y = rng.normal(size=(300, 2))  # the classes overlap everywhere
    ax = plot_embedding(Y, y, ["a", "b", "c"])
    points = ax.collections[0]
    drawn = points.get_offsets()
    order = [int(np.flatnonzero((Y == p).all(axis=1))[0]) for p in np.asarray(drawn)]
    assert sorted(order) == list(range(300))  # every point once
    drawn_labels = y[order]
    # each class is spread over the drawing order: every tenth of it has every class
    for part in np.array_split(drawn_labels, 10):
        assert set(part) == {0, 1, 2}
    # colours follow the points: one colour per class, the legend's
    colors = points.get_facecolors()
    legend = {t.get_text(): h.get_color() for t, h in
              zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
    for label, name in enumerate("abc"):
        assert np.allclose(colors[drawn_labels == label], to_rgba(legend[name]))
    # seeded: the same order again, another with another seed
    again = plot_embedding(Y, y, random_state=0).collections[0].get_offsets()
    other = plot_embedding(Y, y, random_state=1).collections[0].get_offsets()
    assert np.array_equal(again, drawn) and not np.array_equal(other, drawn)


def test_plot_stages_one_axes_per_stage(plt, tmp_path):
    Y, y = _two_blobs()
    axes = plot_stages([Y, Y * 2, Y * 3], y, ["cat", "dog"])
    assert len(axes) == 3
    assert all(len(ax.collections) == 1 for ax in axes)
    assert axes[0].get_title().startswith("a") and "stage 3" in axes[2].get_title()
    assert axes[-1].get_legend() is not None and axes[0].get_legend() is None
    save_figure(axes[0].figure, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0
    _, given = plt.subplots(1, 2)
    out = plot_stages([Y, Y], axes=given)
    assert list(out) == list(given)
    with pytest.raises(ValueError, match="one Axes per stage"):
        plot_stages([Y, Y, Y], axes=given)


def test_plot_loss_marks_and_names_the_stage_boundaries(plt):
    h = np.array([(1, 1, 5.0), (1, 2, 4.0), (2, 1, 6.0), (3, 1, 5.5), (3, 2, 5.4)],
                 dtype=HISTORY_DTYPE)
    ax = plot_loss(h)
    boundaries = [ln for ln in ax.lines if ln.get_gid() == "stage-boundary"]
    curves = [ln for ln in ax.lines if ln.get_gid() != "stage-boundary"]
    assert [ln.get_xdata()[0] for ln in boundaries] == [2.5, 3.5]
    assert len(curves) == 3
    # epochs are counted on across the stages
    assert np.concatenate([c.get_xdata() for c in curves]).tolist() == [1, 2, 3, 4, 5]
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "stage 1" in texts and "stage 2" in texts and "stage 3" in texts
    # one stage only: no boundary
    ax = plot_loss(h[h["stage"] == 1])
    assert not [ln for ln in ax.lines if ln.get_gid() == "stage-boundary"]


@pytest.mark.parametrize("shape", [(120, 10, 10), (120, 10, 10, 3), (120, 3, 10, 10)])
def test_plot_thumbnails_draws_images_that_do_not_overlap(plt, shape):
    Y, y = _two_blobs()
    images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    ax = plot_thumbnails(Y, images, n=30, labels=y)
    assert 2 <= len(ax.images) <= 30
    assert ax.images[0].get_array().ndim == (2 if len(shape) == 3 else 3)
    boxes = np.array([im.get_extent() for im in ax.images])  # x0, x1, y0, y1
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            overlap_x = min(a[1], b[1]) - max(a[0], b[0])
            overlap_y = min(a[3], b[3]) - max(a[2], b[2])
            assert overlap_x <= 1e-9 or overlap_y <= 1e-9


def test_plot_thumbnails_checks_its_inputs(plt):
    Y, _ = _two_blobs()
    with pytest.raises(ValueError, match="one image per row"):
        plot_thumbnails(Y, np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plot_thumbnails(Y[:, :1], np.zeros((len(Y), 8, 8), np.uint8))


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'simcne\[plot\]'"):
        _plt()
