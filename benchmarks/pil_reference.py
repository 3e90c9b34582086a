"""A per-image PIL version of the t-SimCNE augmentation, for comparison only.

This is what a "reference-style" pipeline does: every image is a PIL image, augmented on
its own in a DataLoader worker. It is not part of simcne's training path; the benchmark
(``benchmarks/vs_reference.py``) times it against simcne, and
``tests/test_augment_pil.py`` replays simcne's random parameters through it to check that
:class:`simcne.augment.Augment` means the same operations.

The operations and their order are the paper's (torchvision's names)::

    RandomResizedCrop(size, scale=(0.2, 1), ratio=(3/4, 4/3))     bilinear
    RandomHorizontalFlip(p=0.5)
    RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)         random order per image
    RandomGrayscale(p=0.2)

written here directly on Pillow (torchvision cannot be imported on this project's machine):
brightness, contrast and saturation are Pillow's ``ImageEnhance`` blends, the hue shift
rotates the H channel of Pillow's 8-bit HSV image, grayscale is ``convert("L")``.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = (0.4, 0.4, 0.4, 0.1)
JITTER_P = 0.8
FLIP_P = 0.5
GRAY_P = 0.2


# -- the operations, on one PIL image --------------------------------------------------------
def crop_resize(img: Image.Image, top: int, left: int, height: int, width: int, size) -> Image.Image:
    """Cut the box (left, top, left + width, top + height) and resize it to ``size`` (h, w)."""
    box = (left, top, left + width, top + height)
    return img.resize((size[1], size[0]), Image.BILINEAR, box=box)


def shift_hue(img: Image.Image, turns: float) -> Image.Image:
    """Rotate the hue by ``turns`` of a full turn (in [-0.5, 0.5]) in 8-bit HSV."""
    if img.mode != "RGB":
        return img
    h, s, v = img.convert("HSV").split()
    steps = int(round(turns * 255)) % 256
    hue = ((np.asarray(h, dtype=np.int32) + steps) % 256).astype(np.uint8)
    return Image.merge("HSV", (Image.fromarray(hue, "L"), s, v)).convert("RGB")


def _brightness(img, f):
    return ImageEnhance.Brightness(img).enhance(f)


def _contrast(img, f):
    return ImageEnhance.Contrast(img).enhance(f)


def _saturation(img, f):
    return img if img.mode != "RGB" else ImageEnhance.Color(img).enhance(f)


#: in the order of simcne.augment's factor columns: brightness, contrast, saturation, hue
OPS = (_brightness, _contrast, _saturation, shift_hue)


def augment(img: Image.Image, top, left, height, width, flip, factors, order, jitter, gray,
            size) -> Image.Image:
    """One view of ``img`` for given parameters (those of ``simcne.augment.Augment.sample``,
    one sample's worth, as Python numbers): crop+resize, flip, jitter in ``order``, grayscale."""
    img = crop_resize(img, int(top), int(left), int(height), int(width), size)
    if flip:
        img = ImageOps.mirror(img)
    if jitter:
        for k in order:
            img = OPS[int(k)](img, float(factors[int(k)]))
    if gray and img.mode == "RGB":
        img = img.convert("L").convert("RGB")
    return img


# -- random parameters, drawn per image as a reference pipeline does --------------------------
def random_crop_box(rng: random.Random, height: int, width: int):
    """(top, left, h, w): up to 10 tries at a random area and log-uniform aspect ratio, then
    the whole image cut to the nearest allowed aspect ratio."""
    area = height * width
    lo, hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(lo, hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        w, h = width, int(round(width / CROP_RATIO[0]))
    elif ratio > CROP_RATIO[1]:
        w, h = int(round(height * CROP_RATIO[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_view(img: Image.Image, rng: random.Random, size) -> Image.Image:
    top, left, h, w = random_crop_box(rng, img.height, img.width)
    flip = rng.random() < FLIP_P
    jitter = rng.random() < JITTER_P
    b, c, s, hue = JITTER
    factors = (rng.uniform(max(0.0, 1 - b), 1 + b), rng.uniform(max(0.0, 1 - c), 1 + c),
               rng.uniform(max(0.0, 1 - s), 1 + s), rng.uniform(-hue, hue))
    order = rng.sample(range(4), 4)
    gray = rng.random() < GRAY_P
    return augment(img, top, left, h, w, flip, factors, order, jitter, gray, size)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """float (C, H, W) in [0, 1], as a reference pipeline's ToTensor gives."""
    a = np.asarray(img)
    a = a[:, :, None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div_(255)


class TwoViews(torch.utils.data.Dataset):
    """Images kept as uint8 (N, H, W, C); each item is two random views, float (C, H, W)."""

    def __init__(self, images: np.ndarray, seed: int = 0):
        self.images = images
        self.seed = seed
        self._rng = None  # made in each worker process, so workers draw different views

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            self._rng = random.Random(self.seed * 1000 + (info.id if info else 999))
        a = self.images[i]
        img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
        size = (img.height, img.width)
        return (to_tensor(random_view(img, self._rng, size)),
                to_tensor(random_view(img, self._rng, size)))
