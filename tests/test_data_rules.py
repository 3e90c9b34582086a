"""The rules every reader shares (simcne.data.common) and the table that finds the reader."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simcne.data import load
from simcne.data.beton import read_beton
from simcne.data.common import check_labels, cover_array
from simcne.data.files import READERS, find_reader
from simcne.data.folder import read_folder

DATA = Path(__file__).parent / "data"


def test_one_label_validator():
    assert check_labels(None, 3) is None
    assert check_labels([1, 0, 2], 3).dtype == np.int64
    assert check_labels(np.array([1.0, 0.0, 2.0]), 3).dtype == np.int64  # whole numbers
    assert check_labels(torch.tensor([True, False, True]), 3).dtype == np.int64
    values = check_labels(np.array([0.5, 1.0, 2.5]), 3)  # a value per image stays one
    assert values.dtype == np.float64 and values[0] == 0.5
    assert check_labels(np.array(["cat", "dog", "cat"]), 3)[1] == "dog"
    with pytest.raises(ValueError, match=r"labels of 'f' have the wrong length: expected "
                       r"shape \(3,\), one entry per image, got shape \(2,\)"):
        check_labels([1, 2], 3, "'f'")
    with pytest.raises(ValueError, match="must be finite"):
        check_labels([1.0, np.nan, 2.0], 3)
    with pytest.raises(ValueError, match="numbers or strings"):
        check_labels(np.array([{}, {}, {}], dtype=object), 3)


def test_y_and_readers_follow_the_same_rule(tmp_path):
    X = np.zeros((3, 4, 4), np.uint8)
    np.savez(tmp_path / "a.npz", images=X, labels=np.array([0.0, 1.0, 2.0]))
    from_file = load(tmp_path / "a.npz").labels
    from_y = load(X, y=np.array([0.0, 1.0, 2.0])).labels
    assert from_file.dtype == from_y.dtype == np.int64 and (from_file == from_y).all()


def test_mixed_sizes_one_rule_for_folders_and_beton(tmp_path):
    """A folder and a .beton of the same images of differing sizes give the same store."""
    images = np.load(DATA / "ffcv_varsize_images.npz")
    for i in range(4):
        Image.fromarray(images[f"arr_{i}"]).save(tmp_path / f"{i}.png")
    folder = read_folder(tmp_path, image_size=(12, 12), workers=1)
    beton = read_beton(DATA / "ffcv_varsize.beton", image_size=(12, 12), in_memory=True)
    assert folder.images.shape == beton.images.shape == (4, 12, 12, 3)
    for i in range(4):
        want = cover_array(images[f"arr_{i}"], (12, 12))
        assert np.array_equal(np.asarray(folder.images[i]), want)
        # the fixture's images are JPEG: decoders may differ by a few levels
        assert np.abs(np.asarray(beton.images[i]).astype(int) - want).max() <= 6


def test_readers_found_through_one_table(tmp_path):
    kinds = [r.kind for r in READERS]
    assert kinds == ["cifar", "idx-folder", "folder", "beton", "npy", "npz", "idx"]
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "x.npy").rename(tmp_path / "no_suffix")
    assert find_reader(tmp_path / "no_suffix").kind == "npy"  # by its first bytes
    assert find_reader(tmp_path).kind == "folder"
    assert find_reader(DATA / "ffcv_raw.beton").kind == "beton"


def _bands(shape, axis, edges):
    """An RGB image of three bands along ``axis``: red up to edges[0], green up to
    edges[1], blue after."""
    img = np.zeros((*shape, 3), np.uint8)
    idx = np.arange(shape[axis])
    for channel, band in enumerate([idx < edges[0], (idx >= edges[0]) & (idx < edges[1]),
                                    idx >= edges[1]]):
        sl = [slice(None)] * 2
        sl[axis] = band
        img[tuple(sl) + (channel,)] = 255
    return img


def test_a_folder_of_other_sizes_is_scaled_to_cover_and_centre_cropped(tmp_path):
    """The resize rule against what it must give by hand, not against the code's own
    cover_array: an image is scaled (keeping its aspect ratio) to cover the size and its
    centre is cropped. Each image below has red and blue margins that the crop must cut
    exactly, leaving green (a squeeze or an off-centre crop would keep red or blue)."""
    images = {
        "wide": _bands((10, 20), 1, (5, 15)),  # shrunk 0.8x; the crop keeps columns 5-14
        "tall": _bands((20, 10), 0, (5, 15)),  # shrunk 0.8x; the crop keeps rows 5-14
        "small": _bands((4, 8), 1, (2, 6)),    # enlarged 2x; the crop keeps columns 2-5
    }
    for name, img in images.items():
        Image.fromarray(img).save(tmp_path / f"{name}.png")
    store = read_folder(tmp_path, image_size=(8, 8), workers=1)
    assert store.images.shape == (3, 8, 8, 3)
    for i, path in enumerate(store.paths):
        out = np.asarray(store.images[i]).astype(int)
        name = path.split(".")[0]
        inner = out[:, 1:-1] if name != "tall" else out[1:-1]  # away from the cut edges
        assert (inner[..., 1] == 255).all() and (inner[..., [0, 2]] == 0).all(), name
        # at the cut edges the bicubic filter may reach a little past the crop
        assert (out[..., 1] > 200).all() and (out[..., [0, 2]] < 60).all(), name
    # same aspect ratio, only scaled: a black left half and a white right half keep their
    # edge in the middle of the 8 columns
    half = np.zeros((16, 32), np.uint8)
    half[:, 16:] = 255
    (tmp_path / "half").mkdir()
    Image.fromarray(half[:, 8:24]).save(tmp_path / "half" / "a.png")  # 16x16: scaled 0.5x
    Image.fromarray(half).save(tmp_path / "half" / "b.png")  # 16x32: scaled, centre cropped
    store = read_folder(tmp_path / "half", image_size=(8, 8), workers=1)
    for i in range(2):
        out = np.asarray(store.images[i])[..., 0].astype(int)
        assert (out[:, :3] < 20).all() and (out[:, 5:] > 235).all()
        assert (abs(out[:, 3] + out[:, 4] - 255) <= 2).all()  # symmetric about the middle
