"""Write the small FFCV fixtures in this folder with real FFCV (run with the ffcv venv).

    /work/ffcv-venv/bin/python tests/data/make_ffcv_fixtures.py

Every ``NAME.beton`` comes with ``NAME_images.npy`` (uint8, (N, H, W, 3), as FFCV itself
decodes the file) and, when it has labels, ``NAME_labels.npy``. Fixed-size files are decoded
by FFCV's ``Loader`` with ``SimpleRGBImageDecoder``; the variable-size file, which that
decoder refuses, is decoded image by image with FFCV's own ``ffcv.libffcv.imdecode``
(libjpeg-turbo, the call the Loader makes) and saved as an object array in ``.npz``.
The page size is set to 4 KiB after constructing the writer (FFCV's writer insists on
at least 2 MiB, which would make every fixture 4 MiB of zeros; its reader accepts any
power of two).
"""

from pathlib import Path

import numpy as np
from ffcv.fields import FloatField, IntField, NDArrayField, RGBImageField
from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
from ffcv.libffcv import imdecode
from ffcv.loader import Loader, OrderOption
from ffcv.reader import Reader
from ffcv.writer import DatasetWriter

HERE = Path(__file__).parent
PAGE = 4096


def smooth_images(rng, n, h, w):
    """Gradients plus mild noise: closer to photos than pure noise, so JPEG is typical."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        base = [np.sin(xx / (2 + i + c) + c) * np.cos(yy / (3 + c)) for c in range(3)]
        img = 127 + 100 * np.stack(base, -1) + rng.normal(0, 12, (h, w, 3))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write(name, fields, samples):
    path = HERE / f"{name}.beton"
    writer = DatasetWriter(str(path), fields, num_workers=1)
    writer.page_size = PAGE
    writer.from_indexed_dataset(samples)
    return path


def loader_decode(path):
    pipelines = {"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]}
    loader = Loader(str(path), batch_size=4, num_workers=1, order=OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines=pipelines)
    xs, ys = zip(*[(np.array(x), np.array(y).ravel()) for x, y in loader])
    return np.concatenate(xs), np.concatenate(ys)


def main():
    rng = np.random.default_rng(0)
    images = smooth_images(rng, 9, 12, 16)
    labels = np.array([3, 0, 2, 1, 2, 5, 0, -1, 4], np.int64)
    samples = [(images[i], int(labels[i])) for i in range(len(images))]
    for name, mode in [("ffcv_raw", "raw"), ("ffcv_jpg", "jpg")]:
        fields = {"image": RGBImageField(write_mode=mode, jpeg_quality=90), "label": IntField()}
        path = write(name, fields, samples)
        x, y = loader_decode(path)
        assert (y == labels).all()
        if mode == "raw":
            assert (x == images).all()
        np.save(HERE / f"{name}_images.npy", x)
        np.save(HERE / f"{name}_labels.npy", y)

    # an NDArrayField holding channels-first images, with a float "label"
    chw = np.ascontiguousarray(images[:5].transpose(0, 3, 1, 2))
    fields = {"pixels": NDArrayField(np.dtype("uint8"), (3, 12, 16)), "score": FloatField()}
    path = write("ffcv_ndarray", fields, [(chw[i], float(i) / 2) for i in range(5)])
    reader = Reader(str(path))
    got = np.stack([_bytes_at(path, reader, i, "pixels").reshape(3, 12, 16) for i in range(5)])
    assert (got == chw).all()
    np.save(HERE / "ffcv_ndarray_images.npy", chw)

    # variable image sizes, JPEG
    sizes = [(10, 14), (16, 9), (12, 12), (7, 20)]
    var = [smooth_images(rng, 1, h, w)[0] for h, w in sizes]
    fields = {"image": RGBImageField(write_mode="jpg", jpeg_quality=85), "label": IntField()}
    path = write("ffcv_varsize", fields, [(var[i], i) for i in range(len(var))])
    reader = Reader(str(path))
    decoded = []
    for i, (h, w) in enumerate(sizes):
        meta = reader.metadata[i]["f0"]
        assert (meta["height"], meta["width"]) == (h, w)
        dst = np.zeros((h, w, 3), np.uint8)
        assert imdecode(_bytes_at(path, reader, i, "image"), dst, h, w, h, w, 0, 0, 1, 1,
                        False, False) == 0
        decoded.append(dst)
    np.savez(HERE / "ffcv_varsize_images.npz", *decoded)


def _bytes_at(path, reader, i, field):
    """The bytes FFCV stored for sample ``i``'s ``field``, found through its allocation table."""
    meta = reader.metadata[i][f"f{reader.field_names.index(field)}"]
    ptr = int(meta["data_ptr"] if meta.dtype.names else meta)
    table = reader.alloc_table
    size = int(table["size"][table["ptr"] == ptr][0])
    return np.fromfile(path, np.uint8, count=size, offset=ptr)


if __name__ == "__main__":
    main()
