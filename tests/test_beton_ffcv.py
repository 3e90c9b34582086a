"""Interoperability with real FFCV, both ways (runs only where ``import ffcv`` works).

Run with the FFCV venv, e.g.
``PYTHONPATH=. /work/ffcv-venv/bin/python -m pytest tests/test_beton_ffcv.py -q``.
"""

import numpy as np
import pytest

ffcv = pytest.importorskip("ffcv")
from ffcv.fields import IntField, NDArrayField, RGBImageField  # noqa: E402
from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder  # noqa: E402
from ffcv.loader import Loader, OrderOption  # noqa: E402
from ffcv.writer import DatasetWriter  # noqa: E402

from simcne.data.beton import read_beton, write_beton  # noqa: E402

# numba 0.68's finalizers trip over FFCV's compiled pipelines at garbage collection
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def smooth(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    phase = rng.uniform(0, 6, (n, 1, 1, 3))
    img = 127 + 90 * np.sin(4 * xx[None, ..., None] + 3 * yy[None, ..., None] + phase)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def ffcv_decode(path, os_cache=True):
    pipelines = {"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]}
    loader = Loader(str(path), batch_size=7, num_workers=1, order=OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines=pipelines, os_cache=os_cache)
    xs, ys = zip(*[(np.array(x), np.array(y).ravel()) for x, y in loader])
    return np.concatenate(xs), np.concatenate(ys)


def ffcv_write(path, fields, samples, page_size=1 << 21):
    writer = DatasetWriter(str(path), fields, num_workers=2)
    writer.page_size = page_size
    writer.from_indexed_dataset(samples)


@pytest.mark.parametrize("mode", ["raw", "jpg"])
@pytest.mark.parametrize("page_size", [4096, 1 << 21])
def test_ffcv_written_file_reads_as_ffcv_decodes(tmp_path, mode, page_size):
    X, y = smooth(30, 20, 24), np.arange(30) * 7 - 50
    path = tmp_path / "f.beton"
    fields = {"image": RGBImageField(write_mode=mode, jpeg_quality=80), "label": IntField()}
    ffcv_write(path, fields, [(X[i], int(y[i])) for i in range(30)], page_size)
    expected, labels = ffcv_decode(path)
    for in_memory in (True, False):
        store = read_beton(path, in_memory=in_memory)
        got = store.images[np.arange(len(store))]
        assert (got == expected).all()  # exact, JPEG too (libturbojpeg, FFCV's flags)
        assert (store.labels == labels).all() and store.labels.dtype == np.int64
    if mode == "raw":
        assert (expected == X).all()


def test_ffcv_ndarray_images(tmp_path):
    X = smooth(6, 8, 9).transpose(0, 3, 1, 2).copy()
    path = tmp_path / "a.beton"
    fields = {"x": NDArrayField(np.dtype("uint8"), (3, 8, 9)), "label": IntField()}
    ffcv_write(path, fields, [(X[i], i) for i in range(6)])
    store = read_beton(path)
    assert store.layout == "NCHW" and (store.images[np.arange(6)] == X).all()
    assert (store.labels == np.arange(6)).all()


@pytest.mark.parametrize("mode,quality", [("raw", 90), ("jpg", 90), ("jpg", 50)])
@pytest.mark.parametrize("page_size", [4096, None])
def test_our_file_reads_in_ffcv(tmp_path, mode, quality, page_size):
    X, y = smooth(25, 16, 20, seed=1), np.arange(25) % 4
    path = tmp_path / "ours.beton"
    write_beton(X, path, y=y, mode=mode, jpeg_quality=quality, page_size=page_size)
    got, labels = ffcv_decode(path)
    assert (labels == y).all()
    paged, _ = ffcv_decode(path, os_cache=False)  # FFCV's page-by-page process cache
    assert (paged == got).all()
    ours = read_beton(path).images
    assert (got == ours[np.arange(25)]).all()  # FFCV and we decode our file alike
    if mode == "raw":
        assert (got == X).all()
    else:  # as close to the source as FFCV's own JPEG writer (OpenCV) at that quality
        theirs = tmp_path / "theirs.beton"
        fields = {"image": RGBImageField(write_mode="jpg", jpeg_quality=quality),
                  "label": IntField()}
        ffcv_write(theirs, fields, [(X[i], int(y[i])) for i in range(25)])
        ref = np.abs(ffcv_decode(theirs)[0].astype(int) - X).mean()
        err = np.abs(got.astype(int) - X).mean()
        assert err <= 1.05 * ref + 0.1, (err, ref)


def test_our_grayscale_file_reads_in_ffcv(tmp_path):
    import torch

    X = smooth(5, 12, 12)[..., :1].transpose(0, 3, 1, 2).copy()
    path = tmp_path / "g.beton"
    write_beton(torch.from_numpy(X), path, y=np.zeros(5, int), page_size=4096)
    got, _ = ffcv_decode(path)
    assert (got == np.repeat(X.transpose(0, 2, 3, 1), 3, 3)).all()
