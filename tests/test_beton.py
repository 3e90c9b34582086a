"""FFCV .beton files without FFCV (issue 5): fixtures made by real FFCV, round trips, errors."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from simcne.data import beton
from simcne.cli import main as simcne_main
from simcne.data.beton import BetonImages, read_beton, write_beton
from simcne.data.common import cover_array

DATA = Path(__file__).parent / "data"
TURBO = beton.get_jpeg_decoder("auto")[1] == "turbojpeg"


def smooth(n, h, w, seed=0):
    """Photo-like images (smooth colour waves, mild noise), (N, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    phase = rng.uniform(0, 6, (n, 1, 1, 3))
    img = 127 + 90 * np.sin(4 * xx[None, ..., None] + 3 * yy[None, ..., None] + phase)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def everything(store):
    return store.images[np.arange(len(store))]


def handmade(path, fields, n, version=2, page_size=4096):
    """A .beton built from the format's description, independently of write_beton.

    ``fields``: (name, type_id, values); RGBImageField values are raw (H, W, 3) images.
    """
    desc = np.zeros(len(fields), beton.FIELD)
    meta = np.zeros(n, np.dtype({"names": [f"f{i}" for i in range(len(fields))],
                                 "formats": [beton.TYPES[t][1] for _, t, _ in fields]},
                                align=True))
    start = -(-(beton.HEADER.itemsize + desc.nbytes + meta.nbytes) // page_size) * page_size
    body, alloc = bytearray(), []
    for i, (name, type_id, values) in enumerate(fields):
        desc[i]["type_id"] = type_id
        desc[i]["name"][: len(name)] = list(name.encode())
        for s in range(n):
            if type_id == 2:
                ptr = start + len(body)
                body += values[s].tobytes()
                h, w = values[s].shape[:2]
                meta[f"f{i}"][s] = (beton.RAW, w, h, ptr)
                alloc.append((s, ptr, values[s].nbytes))
            else:
                meta[f"f{i}"][s] = values[s]
    header = np.array([(version, len(fields), page_size, n, start + len(body))], beton.HEADER)
    head = header.tobytes() + desc.tobytes() + meta.tobytes()
    data = head + bytes(start - len(head)) + bytes(body) + np.array(alloc, beton.ALLOC).tobytes()
    Path(path).write_bytes(data)
    return path


# --- files written by real FFCV 1.0.2 (tests/data/make_ffcv_fixtures.py) ---------------------

def test_ffcv_raw_fixture_equals_ffcv_decode():
    store = read_beton(DATA / "ffcv_raw.beton")
    assert isinstance(store.images, BetonImages)  # raw stays on disk
    assert isinstance(store.images._data, np.memmap)
    assert store.layout == "NHWC" and store.images.shape == (9, 12, 16, 3)
    assert (everything(store) == np.load(DATA / "ffcv_raw_images.npy")).all()
    assert store.labels.dtype == np.int64
    assert (store.labels == np.load(DATA / "ffcv_raw_labels.npy")).all()
    assert store.batch(np.array([4, 0])).shape == (2, 3, 12, 16)
    moved = store.to("cpu")  # what the estimator does when the store fits on the device
    assert moved.images.shape == (9, 3, 12, 16)
    assert (moved.images.permute(0, 2, 3, 1).numpy() == everything(store)).all()
    assert (store.subset([8, 2]).images == everything(store)[[8, 2]]).all()


@pytest.mark.parametrize("decoder", ["auto", "pillow"])
def test_ffcv_jpeg_fixture_equals_ffcv_decode(decoder):
    store = read_beton(DATA / "ffcv_jpg.beton", jpeg_decoder=decoder)
    expected = np.load(DATA / "ffcv_jpg_images.npy").astype(int)
    err = np.abs(everything(store).astype(int) - expected)
    if decoder == "auto" and TURBO:
        assert err.max() == 0  # libturbojpeg with FFCV's flags: FFCV's pixels exactly
    else:  # Pillow's accurate inverse DCT vs FFCV's fast one: measured max 5, mean < 1
        assert err.max() <= 6 and err.mean() < 1.5
    assert (store.labels == np.load(DATA / "ffcv_jpg_labels.npy")).all()


def test_ffcv_ndarray_fixture_channels_first_with_float_labels():
    store = read_beton(DATA / "ffcv_ndarray.beton")
    assert store.layout == "NCHW" and store.images.shape == (5, 3, 12, 16)
    assert (everything(store) == np.load(DATA / "ffcv_ndarray_images.npy")).all()
    assert store.labels.dtype == np.float64 and (store.labels == np.arange(5) / 2).all()
    assert store.meta["image_field"] == "pixels" and store.meta["label_field"] == "score"


def test_ffcv_variable_size_fixture_needs_image_size():
    path = DATA / "ffcv_varsize.beton"
    with pytest.raises(ValueError, match=r"differ in size.*image_size=\(H, W\)"):
        read_beton(path)
    expected = np.load(DATA / "ffcv_varsize_images.npz")
    store = read_beton(path, image_size=(12, 12), in_memory=False)
    assert store.images.shape == (4, 12, 12, 3) and (store.labels == np.arange(4)).all()
    tol = 0 if TURBO else 6
    for i in range(4):
        want = cover_array(expected[f"arr_{i}"], (12, 12)).astype(int)  # cover, crop
        assert np.abs(store.images[i].astype(int) - want).max() <= tol
    assert np.abs(store.images[2].astype(int) - expected["arr_2"]).max() <= tol  # 12x12 as is


# --- write -> read round trips -----------------------------------------------------------------

@pytest.mark.parametrize("as_torch", [False, True])
def test_raw_round_trip_is_exact_across_pages(tmp_path, as_torch):
    X, y = smooth(40, 10, 14), np.arange(40) % 5  # 420 bytes an image: pages hold 9
    data = torch.from_numpy(X).permute(0, 3, 1, 2) if as_torch else X
    path = write_beton(data, tmp_path / "x.beton", y=y, page_size=4096)
    store = read_beton(path)
    assert (everything(store) == X).all() and (store.labels == y).all()
    assert store.images.shape == (40, 10, 14, 3) and beton.BetonFile(path).page_size == 4096
    assert [f.name for f in beton.BetonFile(path).fields] == ["image", "label"]
    batch = store.batch(np.array([39, 3, 17])).numpy()
    assert (batch == X[[39, 3, 17]].transpose(0, 3, 1, 2)).all()


def test_jpeg_round_trip_within_tolerance(tmp_path):
    X = smooth(12, 16, 16)
    err = {}
    for q in (50, 95):
        store = read_beton(write_beton(X, tmp_path / f"{q}.beton", mode="jpg", jpeg_quality=q))
        assert store.labels is None and isinstance(store.images, np.ndarray)  # small: decoded
        err[q] = np.abs(everything(store).astype(int) - X).mean()
    assert err[95] < 7 and err[50] < 10 and err[95] < err[50]  # 4:2:0 chroma, as FFCV


def test_grayscale_labels_and_max_resolution(tmp_path):
    X = smooth(6, 20, 10)[..., 0]  # (N, H, W) grayscale
    path = write_beton(X, tmp_path / "g.beton", y=np.array([0, 1.0, 2, 3, 4, 5]),
                       max_resolution=8, page_size=4096)
    store = read_beton(path)
    assert store.images.shape == (6, 8, 4, 3)  # longer side 20 -> 8, RGB as FFCV requires
    img = everything(store)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    assert store.labels.dtype == np.int64  # whole-number float labels -> IntField
    path = write_beton(X, tmp_path / "f.beton", y=np.linspace(0, 1, 6), page_size=4096)
    assert beton.BetonFile(path).fields[1].kind == "FloatField"
    assert np.allclose(read_beton(path).labels, np.linspace(0, 1, 6))


def test_beton_to_beton_and_resizing(tmp_path):
    store = read_beton(DATA / "ffcv_raw.beton")
    path = write_beton(store, tmp_path / "j.beton", mode="jpg", jpeg_quality=95, page_size=4096)
    again = read_beton(path, image_size=(6, 8))
    assert again.images.shape == (9, 6, 8, 3) and (again.labels == store.labels).all()
    for bad in [(6,), (0, 8), (6.0, 8), "6x8"]:
        with pytest.raises(ValueError, match="image_size must be"):
            read_beton(path, image_size=bad)


def test_write_from_npy_path(tmp_path):
    X = smooth(5, 8, 8)
    np.save(tmp_path / "x.npy", X)
    assert (everything(read_beton(write_beton(str(tmp_path / "x.npy"), tmp_path / "x.beton",
                                              page_size=4096))) == X).all()


# --- laziness, caching, pickling -----------------------------------------------------------------

@pytest.mark.parametrize("decoder", ["auto", "pillow"])
def test_lazy_reads_only_requested_samples(tmp_path, decoder):
    X = smooth(20, 8, 8)
    path = write_beton(X, tmp_path / "j.beton", mode="jpg", page_size=4096)
    f = beton.BetonFile(path)
    ptr, size = int(f.column("image")["data_ptr"][7]), int(f.alloc["size"][7])
    del f
    with open(path, "r+b") as fp:  # ruin sample 7's JPEG bytes
        fp.seek(ptr)
        fp.write(b"\x00" * size)
    store = read_beton(path, in_memory=False, jpeg_decoder=decoder)
    assert isinstance(store.images, BetonImages)
    ok = [0, 19, 6, 8]
    assert store.batch(np.array(ok)).shape == (4, 3, 8, 8)  # never touched sample 7
    with pytest.raises(ValueError, match=r"decode image 7 of .*j\.beton"):
        store.batch(np.array([1, 7]))
    with pytest.raises(ValueError, match="j.beton"):
        read_beton(path, in_memory=True)  # reading everything does touch it


def test_threaded_decoding_equals_serial(tmp_path):
    path = write_beton(smooth(80, 8, 8), tmp_path / "t.beton", mode="jpg", page_size=4096)
    index = np.random.default_rng(0).permutation(80)
    one = BetonImages(beton.BetonFile(path), "image", threads=1)[index]
    assert (BetonImages(beton.BetonFile(path), "image", threads=3)[index] == one).all()
    assert (one == everything(read_beton(path))[index]).all()


def test_decoder_choice_without_libturbojpeg(monkeypatch):
    monkeypatch.setattr(beton, "_TURBO", [None])
    assert beton.get_jpeg_decoder("auto")[1] == "pillow"
    with pytest.raises(ValueError, match="needs libturbojpeg"):
        beton.get_jpeg_decoder("turbojpeg")
    with pytest.raises(ValueError, match="jpeg_decoder must be"):
        beton.get_jpeg_decoder("opencv")


def test_cache_decodes_each_image_once(tmp_path):
    path = write_beton(smooth(10, 8, 8), tmp_path / "c.beton", mode="jpg", page_size=4096)
    images = read_beton(path, in_memory=False, cache=True).images
    calls = []
    decode = images._decode
    images._decode = lambda data, out: (calls.append(1), decode(data, out))
    first = images[np.array([3, 1, 3])]
    assert len(calls) == 3
    assert (images[np.array([1, 3])] == first[[1, 0]]).all() and len(calls) == 3
    images[np.array([0])]
    assert len(calls) == 4


def test_lazy_images_pickle_and_index_like_arrays(tmp_path):
    X = smooth(8, 6, 7)
    images = read_beton(write_beton(X, tmp_path / "p.beton", page_size=4096)).images
    clone = pickle.loads(pickle.dumps(images))
    assert (clone[np.arange(8)] == X).all()
    assert (images[2] == X[2]).all() and (images[2:5] == X[2:5]).all()
    assert (images[np.array([-1])] == X[[-1]]).all()
    with pytest.raises(IndexError):
        images[np.array([8])]


# --- choosing fields ---------------------------------------------------------------------------

def test_field_choice_automatic_by_name_and_explicit(tmp_path):
    imgs, other = list(smooth(3, 4, 4)), list(smooth(3, 4, 4, seed=1))
    path = handmade(tmp_path / "two.beton", [("photo", 2, imgs), ("thumb", 2, other),
                                             ("index", 1, [7, 8, 9]), ("cls", 1, [0, 1, 0])], 3)
    with pytest.raises(ValueError, match=r"image_field.*") as e:
        read_beton(path)
    assert "'photo'" in str(e.value) and "'thumb'" in str(e.value)
    with pytest.raises(ValueError, match=r"label_field") as e:
        read_beton(path, image_field="thumb")
    assert "'index'" in str(e.value) and "'cls'" in str(e.value)
    store = read_beton(path, image_field="thumb", label_field="cls")
    assert (everything(store) == np.stack(other)).all() and (store.labels == [0, 1, 0]).all()
    with pytest.raises(ValueError, match=r"image_field='cls' does not name an image field"):
        read_beton(path, image_field="cls")
    with pytest.raises(ValueError, match=r"label_field='nope'"):
        read_beton(path, image_field="photo", label_field="nope")
    # names like FFCV's conventions settle ties
    path = handmade(tmp_path / "named.beton", [("image", 2, imgs), ("aux", 2, other),
                                               ("label", 1, [1, 2, 3]), ("idx", 1, [0, 0, 0])], 3)
    store = read_beton(path)
    assert store.meta["image_field"] == "image" and (store.labels == [1, 2, 3]).all()


# --- broken files ------------------------------------------------------------------------------

@pytest.fixture
def good(tmp_path):
    return write_beton(smooth(6, 8, 8), tmp_path / "good.beton", y=np.arange(6), page_size=4096)


def patched(path, offset, data, name="bad.beton"):
    raw = bytearray(Path(path).read_bytes())
    raw[offset: offset + len(data)] = data
    out = Path(path).with_name(name)
    out.write_bytes(bytes(raw))
    return out


@pytest.mark.parametrize("keep,what", [(10, "shorter than the 24-byte header"),
                                       (500, "truncated: 2 field descriptors"),
                                       (2200, "truncated: metadata"),
                                       (-10, "allocation table"),
                                       (-24, "not in the allocation table"),
                                       (8000, "allocation table")])
def test_truncated_file(good, keep, what):
    bad = Path(good).with_name("cut.beton")
    bad.write_bytes(Path(good).read_bytes()[:keep])
    with pytest.raises(ValueError, match=rf"cut\.beton.*{what}"):
        read_beton(bad)


def test_truncated_data_region(good):
    raw = Path(good).read_bytes()
    f = beton.BetonFile(good)
    table_at = int(f.data[:24].view(beton.HEADER)["alloc_table_ptr"][0])
    # drop the last page but keep the table (and point the header at it)
    cut = raw[: table_at - 4096] + raw[table_at:]
    bad = Path(good).with_name("short.beton")
    bad.write_bytes(cut)
    bad = patched(bad, 16, np.uint64(table_at - 4096).tobytes(), "short2.beton")
    with pytest.raises(ValueError, match=r"short2\.beton.*past the data region"):
        read_beton(bad)


def test_wrong_version(good):
    with pytest.raises(ValueError, match=r"bad\.beton.*version 1.*reads FFCV's version 2"):
        read_beton(patched(good, 0, np.uint16(1).tobytes()))


def test_not_a_beton(tmp_path):
    path = tmp_path / "x.beton"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match=r"x\.beton.*version"):
        read_beton(path)


def test_no_image_field(tmp_path):
    path = handmade(tmp_path / "labels.beton", [("label", 1, [1, 2]), ("w", 0, [0.5, 1])], 2)
    with pytest.raises(ValueError, match=r"labels\.beton.*no image field.*'label' \(IntField\)"):
        read_beton(path)


@pytest.mark.parametrize("type_id,what", [(255, "custom field"), (9, "unknown type id 9")])
def test_unknown_field_type(good, type_id, what):
    with pytest.raises(ValueError, match=rf"bad\.beton.*{what}"):
        read_beton(patched(good, 24, bytes([type_id])))


def test_corrupt_pointers_and_sizes(good):
    f = beton.BetonFile(good)
    meta_at = 24 + 2 * beton.FIELD.itemsize
    ptr_at = meta_at + f.meta_dtype.fields["f0"][1] + beton.IMAGE_META.fields["data_ptr"][1]
    with pytest.raises(ValueError, match=r"not in the allocation table"):
        read_beton(patched(good, ptr_at, np.uint64(12345).tobytes()))
    width_at = meta_at + f.meta_dtype.fields["f0"][1] + beton.IMAGE_META.fields["width"][1]
    with pytest.raises(ValueError, match=r"sample 0 .* not the size its shape says"):
        read_beton(patched(good, width_at, np.uint16(9).tobytes()))
    with pytest.raises(ValueError, match="power of two"):
        read_beton(patched(good, 4, np.uint32(3000).tobytes()))


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "e.beton").write_bytes(b"")
    with pytest.raises(ValueError, match=r"e\.beton.*0 bytes long"):
        read_beton(tmp_path / "e.beton")
    with pytest.raises(ValueError, match=r"z\.beton.*no samples"):
        read_beton(handmade(tmp_path / "z.beton", [("image", 2, [])], 0))
    with pytest.raises(FileNotFoundError):
        read_beton(tmp_path / "missing.beton")


# --- writing: parameters, atomicity, CLI --------------------------------------------------------

@pytest.mark.parametrize("kw,match", [({"mode": "png"}, "'mode'"),
                                      ({"jpeg_quality": 0}, "'jpeg_quality'"),
                                      ({"jpeg_quality": 90.5}, "'jpeg_quality'"),
                                      ({"page_size": 5000}, "'page_size'"),
                                      ({"page_size": 1024}, "'page_size'"),
                                      ({"max_resolution": 0}, "'max_resolution'")])
def test_write_parameters_checked(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        write_beton(smooth(2, 4, 4), tmp_path / "x.beton", **kw)
    assert list(tmp_path.iterdir()) == []


def test_image_larger_than_page(tmp_path):
    with pytest.raises(ValueError, match="larger page_size"):
        write_beton(smooth(2, 40, 40), tmp_path / "x.beton", page_size=4096)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "d.beton"
    write_beton(smooth(4, 8, 8), target, page_size=4096)
    before = target.read_bytes()
    calls = []

    def failing(img, quality):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # even an interrupt leaves no half-written file
        return b"\xff\xd8"

    monkeypatch.setattr(beton, "_jpeg_bytes", failing)
    with pytest.raises(KeyboardInterrupt):
        write_beton(smooth(4, 8, 8), target, mode="jpg", page_size=4096)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["d.beton"]


def test_write_beton_command(tmp_path, capsys):
    np.save(tmp_path / "x.npy", smooth(5, 8, 8))
    out = tmp_path / "x.beton"
    assert simcne_main(["write-beton", str(tmp_path / "x.npy"), str(out), "--mode", "jpg",
                        "--quality", "80", "--page-size", "4096"]) == 0
    assert read_beton(out).images.shape == (5, 8, 8, 3)
    assert "[simcne] wrote" in capsys.readouterr().out
    assert simcne_main(["write-beton", str(tmp_path / "x.npy"), str(out), "--quality",
                        "101"]) == 2
    assert "jpeg_quality" in capsys.readouterr().err
    assert simcne_main(["write-beton", str(tmp_path / "x.npy"), str(out), "--mode", "gif"]) == 2


def test_raw_images_of_mixed_sizes(tmp_path):
    imgs = [smooth(1, h, w, seed=h)[0] for h, w in [(6, 9), (8, 8), (5, 12)]]
    path = handmade(tmp_path / "mixed.beton", [("image", 2, imgs), ("label", 1, [0, 1, 2])], 3)
    with pytest.raises(ValueError, match=r"3 sizes, HxW: 5x12, 6x9, 8x8"):
        read_beton(path)
    store = read_beton(path, image_size=(8, 8), in_memory=False)
    for i, img in enumerate(imgs):
        assert (store.images[i] == cover_array(img, (8, 8))).all()
    assert (store.images[1] == imgs[1]).all()  # already 8x8: untouched
