"""Batched, per-sample random augmentation on whatever device the batch is on.

The same distribution as the paper's torchvision pipeline::

    RandomResizedCrop(size, scale=(0.2, 1), ratio=(3/4, 4/3))
    RandomHorizontalFlip(p=0.5)
    RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)
    RandomGrayscale(p=0.2)

but for a whole batch at once: parameters are drawn for every sample with one generator
(:meth:`Augment.sample`), then applied with tensor operations (:meth:`Augment.apply`). No
PIL and no Python loop over images. Crop, resize and flip are one bilinear ``grid_sample``;
the colour operations follow torchvision's tensor semantics (blends clamped to [0, 1], hue
rotated in HSV, the four jitter operations in a random order per sample).

One-channel images keep one channel: brightness and contrast apply, saturation, hue and
grayscale have no effect (as torchvision does for one-channel tensors).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, torchvision's rgb_to_grayscale


def _uniform(n, lo, hi, generator, device):
    return torch.rand(n, generator=generator, device=device) * (hi - lo) + lo


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma; one-channel input is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def _view(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1)


def adjust_brightness(x, f):
    return (x * _view(f)).clamp_(0, 1)


def adjust_contrast(x, f):
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    f = _view(f)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x, f):
    if x.shape[1] == 1:
        return x
    f = _view(f)
    return (f * x + (1 - f) * grayscale(x)).clamp_(0, 1)


def adjust_hue(x, f):
    """Rotate the hue by ``f`` turns (f in [-0.5, 0.5]), value and saturation unchanged."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    # elementwise over the three planes: much faster on CPU than a reduction over dim 1
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    is_r, is_g = maxc == r, maxc == g
    h = torch.where(is_r, bc - gc, torch.where(is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(chroma > 0, h, torch.zeros_like(h))
    h6 = torch.remainder(h + 6.0 * f.view(-1, 1, 1), 6.0)  # hue in sixths of a turn
    # HSV -> RGB: c_n = V - C * clamp(min(k, 4 - k), 0, 1), k = (n + h6) mod 6, n = 5, 3, 1
    n = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)  # 5, 3, 1
    k = torch.remainder(n + h6.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return maxc.unsqueeze(1) - chroma.unsqueeze(1) * ramp


@contextlib.contextmanager
def _one_thread_on_cpu(x: torch.Tensor):
    """torch's intra-op threads set to 1 inside the block for CPU tensors, then restored."""
    n = torch.get_num_threads()
    if x.device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


#: the settings of :class:`Augment` that ``TSimCNE(data_transform={...})`` may change
SETTINGS = ("crop_scale", "crop_ratio", "flip_p", "jitter", "jitter_p", "grayscale_p")


def check_settings(settings, param: str = "data_transform") -> dict:
    """Validate a dict of :class:`Augment` settings; returns it with tuples for the pairs.

    Raises a ``ValueError`` naming ``param[key]``, what is allowed and what it got.
    """
    import numbers

    def real(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    def bad(key, allowed, got):
        return ValueError(f"The '{param}' parameter of TSimCNE got {key!r}={got!r}: "
                          f"expected {allowed}.")

    if not isinstance(settings, dict):
        raise ValueError(f"The '{param}' parameter of TSimCNE must be a dict, got "
                         f"{type(settings).__name__}.")
    unknown = sorted(str(k) for k in settings if k not in SETTINGS)
    if unknown:
        raise ValueError(f"The '{param}' parameter of TSimCNE got unknown setting(s) {unknown}: "
                         f"expected some of {list(SETTINGS)}.")
    out = {}
    for key, v in settings.items():
        if key in ("flip_p", "jitter_p", "grayscale_p"):
            if not (real(v) and 0 <= v <= 1):
                raise bad(key, "a probability in [0, 1]", v)
            out[key] = float(v)
        elif key in ("crop_scale", "crop_ratio"):
            if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(real(x) for x in v)
                    and 0 < v[0] <= v[1] and (key == "crop_ratio" or v[1] <= 1)):
                allowed = ("two numbers lo <= hi in (0, 1] (fractions of the image's area)"
                           if key == "crop_scale" else "two positive numbers lo <= hi "
                           "(width / height)")
                raise bad(key, allowed, v)
            out[key] = (float(v[0]), float(v[1]))
        else:  # jitter
            if not (isinstance(v, (list, tuple)) and len(v) == 4 and all(real(x) for x in v)
                    and min(v) >= 0 and v[3] <= 0.5):
                raise bad(key, "four numbers >= 0 (brightness, contrast, saturation, hue; "
                          "hue <= 0.5)", v)
            out[key] = tuple(float(x) for x in v)
    return out


@dataclass
class Augment:
    """The t-SimCNE/SimCLR augmentation for batches of images.

    Parameters
    ----------
    size : int or (int, int)
        Output height and width of the random resized crop.
    crop_scale : (float, float), default=(0.2, 1.0)
        Range of the crop's area as a fraction of the image's area.
    crop_ratio : (float, float), default=(3/4, 4/3)
        Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    flip_p : float, default=0.5
        Probability of a horizontal flip.
    jitter : (float, float, float, float), default=(0.4, 0.4, 0.4, 0.1)
        ColorJitter's brightness, contrast, saturation and hue strengths.
    jitter_p : float, default=0.8
        Probability that the colour jitter is applied to a sample.
    grayscale_p : float, default=0.2
        Probability of converting a sample to grayscale.

    Examples
    --------
    >>> import torch
    >>> aug = Augment(size=32)
    >>> x = torch.rand(8, 3, 32, 32)
    >>> aug(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
    """

    size: int | tuple = 32
    crop_scale: tuple = (0.2, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2

    @property
    def out_size(self) -> tuple[int, int]:
        s = self.size
        return (int(s), int(s)) if isinstance(s, int) else (int(s[0]), int(s[1]))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 part: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Augment a batch: uint8 (0-255) or float (0-1) (B, C, H, W) -> float (B, C, *size).

        ``part=(k, m)``: ``x`` is the k-th of m equal, consecutive parts of a batch (one
        process's share under torchrun). The parameters are drawn for the whole batch, as
        one process would draw them, and the k-th part's are applied: every image gets the
        view it would get in a single process, and the generators of all the parts stay in
        step.
        """
        with _one_thread_on_cpu(x):
            if x.dtype == torch.uint8:
                x = x.float().div_(255)
            k, m = part
            b = x.shape[0]
            params = self.sample(b * m, x.shape[-2:], generator=generator, device=x.device)
            if m > 1:
                params = {key: v[k * b : (k + 1) * b] for key, v in params.items()}
            return self._apply(x, params)

    # -- parameters -------------------------------------------------------------------
    def sample(self, n: int, hw, generator=None, device=None) -> dict:
        """Random parameters for ``n`` images of size ``hw``, as tensors of length n."""
        device = torch.device(device or "cpu")
        H, W = int(hw[0]), int(hw[1])
        top, left, height, width = self._sample_crops(n, H, W, generator, device)
        flip = torch.rand(n, generator=generator, device=device) < self.flip_p
        jit = torch.rand(n, generator=generator, device=device) < self.jitter_p
        b, c, s, h = self.jitter
        factors = torch.stack(
            [
                _uniform(n, max(0.0, 1 - b), 1 + b, generator, device),
                _uniform(n, max(0.0, 1 - c), 1 + c, generator, device),
                _uniform(n, max(0.0, 1 - s), 1 + s, generator, device),
                _uniform(n, -h, h, generator, device),
            ],
            dim=1,
        )
        # (1, 1, 1, 0) made on the device: a tensor from a Python list would be a copy that
        # waits for the device (these run every step)
        identity = (torch.arange(4, device=device) < 3).float().expand(n, 4)
        factors = torch.where(jit[:, None], factors, identity)
        order = torch.rand(n, 4, generator=generator, device=device).argsort(dim=1)
        gray = torch.rand(n, generator=generator, device=device) < self.grayscale_p
        return dict(top=top, left=left, height=height, width=width, flip=flip,
                    jitter=jit, factors=factors, order=order, gray=gray)

    def _sample_crops(self, n, H, W, generator, device, attempts: int = 10):
        """torchvision's RandomResizedCrop.get_params, vectorised: 10 tries, then a centre crop."""
        area = H * W
        lo, hi = self.crop_scale
        target = area * _uniform((n, attempts), lo, hi, generator, device)
        log_r = _uniform((n, attempts), math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]),
                         generator, device)
        aspect = torch.exp(log_r)
        w = torch.round(torch.sqrt(target * aspect))
        h = torch.round(torch.sqrt(target / aspect))
        ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
        first = ok.float().argmax(dim=1, keepdim=True)  # first successful attempt
        w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
        any_ok = ok.any(dim=1)
        # fallback: the whole image, cropped to the nearest allowed aspect ratio
        in_ratio = W / H
        if in_ratio < min(self.crop_ratio):
            fw, fh = W, round(W / min(self.crop_ratio))
        elif in_ratio > max(self.crop_ratio):
            fw, fh = round(H * max(self.crop_ratio)), H
        else:
            fw, fh = W, H
        w = torch.where(any_ok, w, torch.full_like(w, fw))
        h = torch.where(any_ok, h, torch.full_like(h, fh))
        u = torch.rand(n, 2, generator=generator, device=device)
        top = torch.floor(u[:, 0] * (H - h + 1))
        left = torch.floor(u[:, 1] * (W - w + 1))
        top = torch.where(any_ok, top, (H - h).div(2, rounding_mode="floor"))
        left = torch.where(any_ok, left, (W - w).div(2, rounding_mode="floor"))
        return top, left, h, w

    # -- application ------------------------------------------------------------------
    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Apply parameters from :meth:`sample` to a float (B, C, H, W) batch in [0, 1].

        On CPU this runs on one thread: it is some 150 elementwise operations on small
        tensors, for which splitting over threads saves little and, on a machine shared with
        other jobs, costs a lot (BENCHMARKS.md).
        """
        with _one_thread_on_cpu(x):
            return self._apply(x, p)

    def _apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        x = self.crop_resize_flip(x, p)
        x = self.color_jitter(x, p)
        if x.shape[1] == 3:
            g = grayscale(x).expand_as(x)
            x = torch.where(p["gray"].view(-1, 1, 1, 1), g, x)
        return x

    def crop_resize_flip(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Bilinear resize of each sample's crop to ``size`` (half-pixel centres, edges clamped
        to the crop as when resizing the cropped image), then the flip, in one grid_sample."""
        n, _, H, W = x.shape
        oh, ow = self.out_size
        dt = x.dtype if x.is_floating_point() else torch.float32
        ys = (torch.arange(oh, device=x.device, dtype=dt) + 0.5) / oh
        xs = (torch.arange(ow, device=x.device, dtype=dt) + 0.5) / ow
        top, left, h, w = (p[k].to(dt) for k in ("top", "left", "height", "width"))
        # source pixel coordinates (pixel centres at integers), clamped to the crop
        sy = top[:, None] + ys[None] * h[:, None] - 0.5
        sx = left[:, None] + xs[None] * w[:, None] - 0.5
        sy = torch.minimum(torch.maximum(sy, top[:, None]), (top + h - 1)[:, None])
        sx = torch.minimum(torch.maximum(sx, left[:, None]), (left + w - 1)[:, None])
        sx = torch.where(p["flip"][:, None], sx.flip(1), sx)
        gy = (sy + 0.5) * (2.0 / H) - 1.0  # normalised, align_corners=False
        gx = (sx + 0.5) * (2.0 / W) - 1.0
        grid = torch.stack(
            (gx[:, None, :].expand(n, oh, ow), gy[:, :, None].expand(n, oh, ow)), dim=-1
        )
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def color_jitter(self, x: torch.Tensor, p: dict, sync_free: bool | None = None) -> torch.Tensor:
        """The four jitter operations in each sample's own random order.

        Four passes, one per position in the order. In each, brightness, contrast and
        saturation are one blend over the whole batch, ``clamp(f * x + a * gray + c, 0, 1)``
        with per-sample scalars: ``f`` is the factor (1 for samples whose operation here is
        another), ``a = 1 - f`` for saturation, ``c = (1 - f) * mean(gray)`` for contrast, else
        0 (each operation's own formula, up to float rounding). The hue rotation
        then runs on the samples whose operation here is hue: with ``sync_free`` (default: on
        CUDA) on the whole batch followed by a select, so the host never waits for the device;
        otherwise (default on CPU) on those samples only, which is less work.
        """
        if sync_free is None:
            sync_free = x.is_cuda
        factors, order, active = p["factors"], p["order"], p["jitter"]
        rgb = x.shape[1] == 3
        zero = torch.zeros((), device=x.device, dtype=x.dtype)
        one = torch.ones((), device=x.device, dtype=x.dtype)
        for slot in range(4):
            op = order[:, slot]
            f = factors.gather(1, op[:, None])[:, 0].to(x.dtype)
            is_b, is_c = active & (op == 0), active & (op == 1)
            is_s, is_h = active & (op == 2) & rgb, active & (op == 3) & rgb
            gray = grayscale(x)
            mean = gray.mean(dim=(1, 2, 3))
            scale = torch.where(is_b | is_c | is_s, f, one)
            shift = torch.where(is_c, (1 - f) * mean, zero)
            y = torch.addcmul(_view(shift), _view(scale), x)
            if rgb:
                y.addcmul_(_view(torch.where(is_s, 1 - f, zero)), gray)
            x = y.clamp_(0, 1)
            if not rgb:
                continue
            if sync_free:
                x = torch.where(_view(is_h), adjust_hue(x, torch.where(is_h, f, zero)), x)
            else:
                idx = torch.nonzero(is_h).flatten()
                if len(idx):
                    x[idx] = adjust_hue(x[idx], f[idx])
        return x


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Deterministic bilinear (antialiased) resize of a float batch to ``size``; no-op if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
