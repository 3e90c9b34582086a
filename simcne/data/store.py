"""ImageStore: every dataset becomes one uint8 array of images, read once.

The store keeps the images as they were read (numpy, possibly memory-mapped, or a torch
tensor, possibly on the GPU), channels-first or channels-last, and hands out batches as
uint8 torch tensors (B, C, H, W). Nothing is converted to float here: that happens per batch,
on the device, in the augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch


#: bytes of the chunks in which :meth:`ImageStore.to` copies a store to a device
CHUNK_BYTES = 64 << 20


@dataclass
class ImageStore:
    """A dataset of ``n`` uint8 images with optional labels, class names and file names.

    Parameters
    ----------
    images : array-like
        uint8 images, (N, C, H, W) when ``layout="NCHW"`` or (N, H, W, C) when ``"NHWC"``.
        Anything indexable by an int64 index array with a ``shape`` works (numpy arrays,
        memory maps, torch tensors, lazy readers).
    labels : ndarray of int64, shape (N,), optional
    class_names : list of str, optional
        ``class_names[label]`` names a class.
    paths : list of str, optional
        Where each image came from, for outputs that name each point.
    """

    images: Any
    labels: np.ndarray | None = None
    layout: str = "NCHW"
    class_names: list[str] | None = None
    paths: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        if len(self.images.shape) != 4:
            raise ValueError(f"images must be 4-D, got shape {tuple(self.images.shape)}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.shape != (len(self),):
                raise ValueError(
                    f"labels must have one entry per image ({len(self)}), "
                    f"got shape {self.labels.shape}"
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1] if self.layout == "NCHW" else self.images.shape[3])

    @property
    def image_size(self) -> tuple[int, int]:
        s = self.images.shape
        return (int(s[2]), int(s[3])) if self.layout == "NCHW" else (int(s[1]), int(s[2]))

    @property
    def nbytes(self) -> int:
        c, (h, w) = self.channels, self.image_size
        return len(self) * c * h * w

    @property
    def device(self) -> torch.device:
        return self.images.device if isinstance(self.images, torch.Tensor) else torch.device("cpu")

    def batch(self, index) -> torch.Tensor:
        """uint8 images (B, C, H, W) for ``index`` (an int64 array or tensor, or a ``slice``
        of consecutive rows, read without an index), on the store's device."""
        if isinstance(index, slice) and not isinstance(self.images, (np.ndarray, torch.Tensor)):
            index = np.arange(len(self))[index]  # a lazy reader: by index
        if isinstance(index, slice):
            x = self.images[index]
            if not isinstance(x, torch.Tensor):  # a copy: the array may be read-only (a map)
                x = torch.from_numpy(np.array(x))
        elif isinstance(self.images, torch.Tensor):
            if not isinstance(index, torch.Tensor):
                index = torch.as_tensor(np.asarray(index), dtype=torch.long)
            x = self.images[index.to(self.images.device)]
        else:
            if isinstance(index, torch.Tensor):
                index = index.cpu().numpy()
            index = np.asarray(index, dtype=np.int64)
            if isinstance(self.images, np.memmap) and len(index) > 1:
                # sorted reads are sequential on disk; undo the sort afterwards
                order = np.argsort(index, kind="stable")
                x = np.empty((len(index),) + tuple(self.images.shape[1:]), np.uint8)
                x[order] = self.images[index[order]]
            else:
                x = self.images[index]
            x = torch.from_numpy(np.ascontiguousarray(x))
        if self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        return x.contiguous()

    def to(self, device) -> "ImageStore":
        """A store whose images are a (N, C, H, W) uint8 tensor on ``device``.

        The tensor is allocated once on ``device`` and filled in chunks of about
        :data:`CHUNK_BYTES`: at most the store and one chunk are there at a time (never the
        store twice, as chunks joined at the end would need).
        """
        from ..devices import same_device

        device = torch.device(device)
        if (isinstance(self.images, torch.Tensor) and self.layout == "NCHW"
                and same_device(self.images.device, device)):
            return self
        c, (h, w) = self.channels, self.image_size
        images = torch.empty((len(self), c, h, w), dtype=torch.uint8, device=device)
        step = max(1, CHUNK_BYTES // max(1, c * h * w))
        for start in range(0, len(self), step):
            rows = slice(start, min(len(self), start + step))
            images[rows].copy_(self.batch(rows))
        return ImageStore(images, self.labels, "NCHW", self.class_names, self.paths, dict(self.meta))

    def subset(self, index: Sequence[int]) -> "ImageStore":
        index = np.asarray(index, dtype=np.int64)
        images = self.images[torch.as_tensor(index)] if isinstance(self.images, torch.Tensor) else self.images[index]
        return ImageStore(
            images,
            None if self.labels is None else self.labels[index],
            self.layout,
            self.class_names,
            None if self.paths is None else [self.paths[i] for i in index],
            dict(self.meta),
        )
