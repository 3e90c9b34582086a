"""In-memory inputs: numpy arrays, torch tensors, torch Datasets and lists of images."""

from __future__ import annotations

import numpy as np
import torch

from .common import check_labels
from .store import ImageStore

_CHANNELS = (1, 3)
_CHUNK_BYTES = 64 << 20


def _describe(x) -> str:
    return f"{type(x).__name__} of shape {tuple(x.shape)} and dtype {x.dtype}"


def _rows(x: np.ndarray):
    """Slices of ``x`` along its first axis of about 64 MiB each."""
    n = len(x) if x.ndim else 1
    step = max(1, _CHUNK_BYTES // max(1, x.nbytes // max(1, n)))
    return [slice(i, i + step) for i in range(0, n, step)]


def to_uint8(x: np.ndarray, name: str = "X") -> np.ndarray:
    """uint8 from uint8, integer 0..255 or float 0..1 arrays; anything else is an error.

    Checked and converted in chunks of about 64 MiB: the memory it takes besides ``x`` is
    the uint8 result and one chunk.
    """
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        raise ValueError(f"{name} must hold uint8 (0-255) or float (0-1) pixels. Got dtype bool.")
    is_int = np.issubdtype(x.dtype, np.integer)
    if not (is_int or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} must hold uint8 (0-255) or float (0-1) pixels. Got dtype "
                         f"{x.dtype}.")
    if x.ndim == 0:
        x = x.reshape(1)
    parts = _rows(x) if x.size else []
    if not is_int:
        bad = sum(int((~np.isfinite(x[s])).sum()) for s in parts)
        if bad:
            raise ValueError(f"{name} holds {bad} NaN or infinite value(s); pixels must be finite.")
    lo = min((x[s].min() for s in parts), default=0)
    hi = max((x[s].max() for s in parts), default=0)
    if is_int and (int(lo) < 0 or int(hi) > 255):
        raise ValueError(
            f"{name} holds integers from {int(lo)} to {int(hi)}; integer pixels must lie in 0-255."
        )
    if not is_int and (float(lo) < 0.0 or float(hi) > 1.0):
        raise ValueError(
            f"{name} holds floats from {float(lo):g} to {float(hi):g}; float pixels must lie in "
            "[0, 1] (divide by 255 if they are 0-255). Nothing is clipped silently."
        )
    out = np.empty(x.shape, np.uint8)
    for s in parts:
        out[s] = x[s] if is_int else np.rint(x[s] * 255.0)
    return out


def _tensor_to_numpy(x: torch.Tensor, name: str) -> np.ndarray:
    """A tensor's values as numpy; dtypes numpy lacks (bfloat16) go through float32."""
    if x.layout != torch.strided:
        raise ValueError(f"{name} must be a dense tensor. Got a tensor with layout {x.layout}.")
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        x = x.float()
    try:
        return x.numpy()
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"{name} must hold uint8 (0-255) or float (0-1) pixels. Got a tensor "
                         f"of dtype {x.dtype} ({e}).") from None


def _layout(shape, channels_first_default: bool, name: str) -> str:
    """Decide NCHW or NHWC for a 4-D shape; channels are 1 or 3."""
    first, last = shape[1] in _CHANNELS, shape[3] in _CHANNELS
    if first and last:
        return "NCHW" if channels_first_default else "NHWC"
    if first:
        return "NCHW"
    if last:
        return "NHWC"
    raise ValueError(
        f"{name} must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3 channels. "
        f"Got shape {tuple(shape)}."
    )


def from_array(x, labels=None, name: str = "X") -> ImageStore:
    """numpy: (N, H, W) or (N, H, W, C); torch: (N, H, W) or (N, C, H, W). uint8 or float 0-1.

    A 4-D array whose layout is unambiguous either way is accepted either way.
    """
    is_torch = isinstance(x, torch.Tensor)
    arr = _tensor_to_numpy(x, name) if is_torch else np.asarray(x)
    if arr.ndim == 3:
        arr = arr[:, None]
        layout = "NCHW"
    elif arr.ndim == 4:
        layout = _layout(arr.shape, channels_first_default=is_torch, name=name)
    else:
        raise ValueError(
            f"{name} must be a 3-D (N, H, W) or 4-D image array. Got {_describe(arr)} instead."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} holds no images (shape {tuple(arr.shape)}).")
    h, w = arr.shape[2:] if layout == "NCHW" else arr.shape[1:3]
    if h == 0 or w == 0:
        raise ValueError(f"{name} holds images of height {h} and width {w}: expected at "
                         f"least 1 pixel each way, got shape {tuple(arr.shape)}.")
    if isinstance(x, np.memmap) and arr.dtype == np.uint8:
        images = x if x.ndim == 4 else arr  # keep the memory map
    else:
        images = to_uint8(arr, name)
    return ImageStore(images, check_labels(labels, len(images), name), layout)


def image_to_array(img, where: str = "image") -> np.ndarray:
    """One image (PIL image, HxW, HxWxC, CxHxW array or tensor) -> uint8 (C, H, W)."""
    if hasattr(img, "getbands") and hasattr(img, "convert"):  # PIL image
        mode = img.mode
        if mode not in ("L", "RGB"):
            img = img.convert("RGB" if len(img.getbands()) >= 3 or mode == "P" else "L")
        arr = np.asarray(img)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr)
    is_torch = isinstance(img, torch.Tensor)
    arr = _tensor_to_numpy(img, where) if is_torch else np.asarray(img)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        first, last = arr.shape[0] in _CHANNELS, arr.shape[2] in _CHANNELS
        if last and not (first and is_torch):
            arr = arr.transpose(2, 0, 1)
        elif not first:
            raise ValueError(
                f"{where} must be (H, W), (H, W, C) or (C, H, W) with C = 1 or 3. "
                f"Got shape {arr.shape}."
            )
    else:
        raise ValueError(f"{where} must be a 2-D or 3-D image. Got shape {arr.shape}.")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{where} is an image of height {arr.shape[1]} and width "
                         f"{arr.shape[2]}: expected at least 1 pixel each way.")
    return np.ascontiguousarray(to_uint8(arr, where))


def from_items(items, name: str = "X") -> ImageStore:
    """A torch Dataset or a sequence yielding an image or (image, label, ...)."""
    n = len(items)
    if n == 0:
        raise ValueError(f"{name} holds no images (length 0).")
    images, labels = None, []
    first_shape = None
    for i in range(n):
        item = items[i]
        label = None
        if isinstance(item, (tuple, list)):
            if len(item) == 0:
                raise ValueError(f"{name}[{i}] is an empty {type(item).__name__}.")
            if len(item) > 1:
                label = item[1]
            item = item[0]
        arr = image_to_array(item, where=f"{name}[{i}]")
        if images is None:
            first_shape = arr.shape
            images = np.empty((n,) + arr.shape, np.uint8)
        elif arr.shape != first_shape:
            raise ValueError(
                f"{name}[{i}] has shape (C, H, W) = {arr.shape}, but {name}[0] has "
                f"{first_shape}. All images must share one size and channel count "
                "(resize them first, or use an image folder with image_size set)."
            )
        images[i] = arr
        labels.append(label)
    has = [lab is not None for lab in labels]
    if any(has) and not all(has):
        raise ValueError(f"{name}: some items carry a label and some do not.")
    y = None
    if all(has):
        y = np.asarray([int(lab.item() if hasattr(lab, "item") else lab) for lab in labels])
    class_names = getattr(items, "classes", None)
    class_names = list(class_names) if class_names is not None else None
    return ImageStore(images, y, "NCHW", class_names)


def check_rank(shape, where: str) -> None:
    if len(shape) not in (3, 4):
        raise ValueError(
            f"The images in {where} have the wrong rank: expected a 3-D (N, H, W) or 4-D "
            f"(N, H, W, C) / (N, C, H, W) array, got shape {tuple(shape)}."
        )


def array_store(x, where: str, labels=None) -> ImageStore:
    """An ImageStore from an array that may be memory-mapped, reading the file only once.

    uint8 arrays stay as they are (a memory map stays a memory map: nothing is read now);
    other dtypes are converted to uint8 in chunks of about 64 MiB, each chunk validated
    by :func:`to_uint8` (integers 0-255, or finite floats in [0, 1]).
    """
    check_rank(x.shape, where)
    if x.dtype.kind in "OUSV" or x.dtype.names:
        raise ValueError(
            f"The images in {where} must be numbers: expected a uint8 or float array, "
            f"got dtype {x.dtype}."
        )
    if x.dtype != np.uint8:
        out = np.empty(x.shape, np.uint8)
        step = max(1, _CHUNK_BYTES // max(1, x[:1].nbytes))
        for i in range(0, len(x), step):
            out[i : i + step] = to_uint8(np.asarray(x[i : i + step]), name=where)
        x = out
    elif isinstance(x, np.memmap) and x.ndim == 3:
        x = x[:, None]  # a view that is still an np.memmap, (N, 1, H, W)
    store = from_array(x, name=where)
    if labels is not None:
        store.labels = check_labels(labels, len(store), where)
    return store
