"""Batched, per-sample random augmentation on whatever device the batch is on.

The same distribution as the paper's torchvision pipeline::

    RandomResizedCrop(size, scale=(0.2, 1), ratio=(3/4, 4/3))
    RandomHorizontalFlip(p=0.5)
    RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)
    RandomGrayscale(p=0.2)

but for a whole batch at once: parameters are drawn for every sample with one generator
(:meth:`Augment.sample`), then applied with tensor operations (:meth:`Augment.apply`). No
PIL, no Python loop over images and no host synchronisation (nothing waits for the device).
Crop, resize and flip are one bilinear ``grid_sample``; the colour operations follow
torchvision's tensor semantics (blends clamped to [0, 1], hue rotated in HSV, the four
jitter operations in a random order per sample).

Lean by design, because on a GPU every operation is a kernel launch paid by the host: one
``torch.rand`` draws every random number of a call; the constants are made once per image
size and device; the colour jitter runs as six blend passes and one hue rotation (each
sample's brightness, contrast and saturation that come before its hue go to the first three
passes, those after it to the last three; a pass is the identity for the samples it has
nothing for); uint8 input is scaled to [0, 1] inside the first pass; the views come out
channels-last (and in the dtype asked for). One call makes both views of a batch
(:meth:`Augment.bind`, ``two_views``). About 135 aten operations a call for RGB images, 75
for one-channel ones (``benchmarks/dispatch.py``).

One-channel images keep one channel: brightness and contrast apply, saturation, hue and
grayscale have no effect (as torchvision does for one-channel tensors).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass, field, fields
from types import SimpleNamespace

import torch
import torch.nn.functional as F

_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, torchvision's rgb_to_grayscale
#: RandomResizedCrop's tries before its fallback (the whole image at an allowed ratio)
_ATTEMPTS = 10
#: columns of one call's uniform draws, per image: 10 crop tries and the fallback (scale,
#: log-ratio and two position draws each), flip / jitter / grayscale, four jitter factors,
#: four keys whose order is the jitter's order
_DRAWS = ((_ATTEMPTS + 1) * 4, 3, 4, 4)
#: the brightness, contrast and saturation blends as (scale, gray, mean) coefficients:
#: ``A + f * B`` for a factor f gives ``y = scale * x + gray * luma(x) + mean * mean(luma(x))``
_BLEND_A = ((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0))
_BLEND_B = ((1.0, 0.0, 0.0), (1.0, 0.0, -1.0), (1.0, -1.0, 0.0))
#: a hue rotation divides by the chroma; below this the chroma is 0 (every channel equal)
_TINY = 1e-20


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma; one-channel input is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def _view(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1)


# torchvision's definitions, one operation at a time (the tests compare the batched
# colour jitter with these)
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
    sixths = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return _rotate_hue(x, torch.add(sixths, _view(f.to(x.dtype)), alpha=6.0))


def _luma(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma in two elementwise operations (a 1x1 convolution
    would be one, but its result depends on the batch's size in the last bit, and a process's
    part of a batch must get exactly the views of the whole batch)."""
    return (x * weight).sum(1, keepdim=True)


def _rotate_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """HSV hue rotation in 16 operations; ``shift`` is (n, 3, 1, 1): ``(5, 3, 1) + 6 f``.

    The hue in sixths of a turn is ``2 i + d_i / C``, i the channel holding the maximum V,
    C = V - min the chroma and d = (g - b, b - r, r - g); the rotated pixel is
    ``c_m = V - C * clamp(min(k, 4 - k), 0, 1)`` with ``k = (m + hue + 6 f) mod 6`` for
    m = 5, 3, 1 (the HSV -> RGB formula; V, S and C unchanged). Where two channels share the
    maximum, both give the same hue.
    """
    v, i = x.max(dim=1, keepdim=True)
    chroma = v - x.amin(dim=1, keepdim=True)
    d = (x.roll(-1, 1) - x.roll(-2, 1)).gather(1, i)
    hue = torch.add(d.div_(chroma.clamp_min(_TINY)), i, alpha=2)
    k = torch.remainder(hue + shift, 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return torch.addcmul(v, chroma, ramp, value=-1)


def _channels_last(x: torch.Tensor, dtype=None) -> torch.Tensor:
    """``x`` channels-last with the canonical strides (HWC, 1, WC, C), in ``dtype``: one copy
    at most (see :func:`simcne.train.channels_last` for why the strides matter)."""
    x = x.to(dtype=dtype or x.dtype, memory_format=torch.channels_last)
    _, c, h, w = x.shape
    if c == 1:
        x = x.as_strided(x.shape, (h * w, 1, w, 1))
    return x


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


class _Rule:
    """What one augmentation setting accepts: ``test(value)``, the words of the error
    (``allowed``) and the value as :class:`Augment` keeps it (``convert``). Kept in the
    setting's field (``metadata["rule"]``), so each setting's name and rule are written once."""

    def __init__(self, allowed: str, test, convert):
        self.allowed, self.test, self.convert = allowed, test, convert


def _real(v) -> bool:
    # params.is_real's test (with finiteness): not imported, params imports this module
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _reals(v, n: int) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == n and all(_real(x) for x in v)


def _floats(v) -> tuple:
    return tuple(float(x) for x in v)


_PROBABILITY = _Rule("a probability in [0, 1]", lambda v: _real(v) and 0 <= v <= 1, float)
_AREA = _Rule("two numbers lo <= hi in (0, 1] (fractions of the image's area)",
              lambda v: _reals(v, 2) and 0 < v[0] <= v[1] <= 1, _floats)
_RATIO = _Rule("two positive numbers lo <= hi (width / height)",
               lambda v: _reals(v, 2) and 0 < v[0] <= v[1], _floats)
_JITTER = _Rule("four numbers >= 0 (brightness, contrast, saturation, hue; hue <= 0.5)",
                lambda v: _reals(v, 4) and min(v) >= 0 and v[3] <= 0.5, _floats)


def _setting(default, rule: _Rule):
    return field(default=default, metadata={"rule": rule})


def check_settings(settings, param: str = "data_transform") -> dict:
    """Validate a dict of :class:`Augment` settings; returns it with tuples for the pairs.

    Raises a ``ValueError`` naming ``param[key]``, what is allowed and what it got. Each
    setting's rule is the one in its :class:`Augment` field.
    """
    if not isinstance(settings, dict):
        raise ValueError(f"The '{param}' parameter of TSimCNE must be a dict, got "
                         f"{type(settings).__name__}.")
    unknown = sorted(str(k) for k in settings if k not in SETTINGS)
    if unknown:
        raise ValueError(f"The '{param}' parameter of TSimCNE got unknown setting(s) {unknown}: "
                         f"expected some of {list(SETTINGS)}.")
    out = {}
    for key, v in settings.items():
        rule = _RULES[key]
        if not rule.test(v):
            raise ValueError(f"The '{param}' parameter of TSimCNE got {key!r}={v!r}: "
                             f"expected {rule.allowed}.")
        out[key] = rule.convert(v)
    return out


def _colour_consts(device, dtype) -> SimpleNamespace:
    """The colour operations' constants on ``device`` (see :class:`Augment`)."""
    def t(values):
        return torch.tensor(values, dtype=dtype).to(device)

    a, b = t(_BLEND_A).view(3, 3, 1), t(_BLEND_B).view(3, 3, 1)
    return SimpleNamespace(
        blend_identity=t([[1.0, 0.0, 0.0]] * 6).view(6, 3, 1), blend_a=a, blend_b=b,
        # one channel: brightness and contrast, coefficients scale and mean
        blend_a1=a[:2, ::2].contiguous(), blend_b1=b[:2, ::2].contiguous(),
        uint8_scale=t([1 / 255] + [1.0] * 5).view(6, 1, 1),
        uint8_scale1=t([1 / 255, 1.0]).view(2, 1, 1),
        no_jitter=t([[1.0], [1.0], [1.0], [0.0]]),
        luma=t(_GRAY).view(1, 3, 1, 1),
        sixths=t([5.0, 3.0, 1.0]).view(1, 3, 1, 1))


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
    >>> views = aug.bind(torch.Generator().manual_seed(0)).two_views(x)  # both, one call
    >>> views.shape
    torch.Size([16, 3, 32, 32])
    """

    size: int | tuple = 32
    crop_scale: tuple = _setting((0.2, 1.0), _AREA)
    crop_ratio: tuple = _setting((3 / 4, 4 / 3), _RATIO)
    flip_p: float = _setting(0.5, _PROBABILITY)
    jitter: tuple = _setting((0.4, 0.4, 0.4, 0.1), _JITTER)
    jitter_p: float = _setting(0.8, _PROBABILITY)
    grayscale_p: float = _setting(0.2, _PROBABILITY)
    #: constants by (device, dtype, input size), made once
    _constants: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def out_size(self) -> tuple[int, int]:
        s = self.size
        return (int(s), int(s)) if isinstance(s, int) else (int(s[0]), int(s[1]))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 part: tuple[int, int] = (0, 1), views: int = 1,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
        """Augment a batch: uint8 (0-255) or float (0-1) (B, C, H, W) -> (B, C, *size), float
        (``dtype``, default float32), channels-last.

        ``part=(k, m)``: ``x`` is the k-th of m equal, consecutive parts of a batch (one
        process's share under torchrun). The parameters are drawn for the whole batch, as
        one process would draw them, and the k-th part's are applied: every image gets the
        view it would get in a single process, and the generators of all the parts stay in
        step. ``views=v``: ``x`` is v blocks of equal size (e.g. a batch twice, for its two
        views), each a part of its own block of the whole batch.
        """
        with _one_thread_on_cpu(x):
            scale = 1.0
            if x.dtype == torch.uint8:
                x, scale = x.float(), 1.0 / 255  # the scaling happens in the first blend
            k, m = part
            n = x.shape[0]
            if n % views:
                raise ValueError(f"views={views} must divide the batch of {n} images")
            u = self._draw(n * m, generator, x.device)
            if m > 1:  # the rows of this part in each view's block of the whole batch
                u = u.view(views, m, n // views, -1)[:, k].reshape(n, -1)
            return self._apply(x, self._params(u, x.shape[-2:]), scale, dtype)

    def bind(self, generator: torch.Generator | None = None,
             part: tuple[int, int] = (0, 1)) -> "BoundAugment":
        """This augmentation with its generator (and its process's part, see
        :meth:`__call__`): a callable of a batch, with ``two_views`` for both views of it in
        one call."""
        return BoundAugment(self, generator, tuple(part))

    # -- parameters -------------------------------------------------------------------
    def sample(self, n: int, hw, generator=None, device=None) -> dict:
        """Random parameters for ``n`` images of size ``hw``, as tensors of length n:
        ``top``, ``left``, ``height``, ``width`` (the crop), ``flip``, ``jitter`` (whether
        the colour jitter applies), ``factors`` (n, 4: brightness, contrast, saturation,
        hue), ``order`` (n, 4: the jitter operations' order, 0-3 in that sequence) and
        ``gray``."""
        device = torch.device(device or "cpu")
        return self._params(self._draw(n, generator, device), hw)

    def _draw(self, n: int, generator, device) -> torch.Tensor:
        return torch.rand(n, sum(_DRAWS), generator=generator, device=device)

    def _params(self, u: torch.Tensor, hw) -> dict:
        """The parameters of :meth:`sample` from one (n, 55) draw of uniforms.

        The crop is torchvision's ``RandomResizedCrop.get_params`` for all images at once:
        ten tries of an area and a log-ratio, the first that fits, else the fallback (the
        whole image at the nearest allowed ratio, centred), which is an eleventh try that
        always fits; each try has its own position draws.
        """
        H, W = int(hw[0]), int(hw[1])
        c = self._consts(u.device, u.dtype, H, W)
        n = u.shape[0]
        crop, bern, fac, keys = u.split(_DRAWS, 1)
        # per try: target area, log-ratio, and the position's two uniforms
        v = torch.addcmul(c.crop_lo, crop.view(n, _ATTEMPTS + 1, 4), c.crop_span)
        wh = (v[..., :1] * torch.exp(v[..., 1:2] * c.plus_minus)).sqrt_().round_()
        fits = ((wh - c.mid).abs_() <= c.half).all(-1)  # 1 <= w <= W and 1 <= h <= H
        first = fits.to(torch.uint8).argmax(1)  # the eleventh always fits
        chosen = torch.cat([wh, v[..., 2:]], -1).gather(
            1, first.view(n, 1, 1).expand(n, 1, 4)).view(n, 4)
        size, where = chosen.split(2, 1)
        corner = (c.room - size).mul_(where).floor_()  # uniform in 0 .. W - w, 0 .. H - h
        left, top = corner.unbind(1)
        width, height = size.unbind(1)
        flip, jitter, gray = (bern < c.probs).unbind(1)
        factors = torch.addcmul(c.factor_lo, fac, c.factor_span)
        return dict(top=top, left=left, height=height, width=width, flip=flip, jitter=jitter,
                    factors=factors, order=keys.argsort(dim=1), gray=gray)

    def _consts(self, device, dtype, H: int = 0, W: int = 0) -> SimpleNamespace:
        """The constants of a call, made once per device, dtype and input size (H, W; 0, 0
        for the colour operations' constants, which do not depend on it)."""
        key = (torch.device(device), dtype, H, W)
        settings = (self.size, self.crop_scale, self.crop_ratio, self.flip_p, self.jitter,
                    self.jitter_p, self.grayscale_p) if H else ()
        c = self._constants.get(key + settings)
        if c is None:
            c = self._make_consts(*key) if H else _colour_consts(*key[:2])
            self._constants[key + settings] = c
        return c

    def _make_consts(self, device, dtype, H: int, W: int) -> SimpleNamespace:
        def t(values):
            return torch.tensor(values, dtype=dtype).to(device)

        oh, ow = self.out_size
        s_lo, s_hi = self.crop_scale
        r_lo, r_hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        # the fallback: the whole image cropped to the nearest allowed ratio, centred
        in_ratio = W / H
        if in_ratio < min(self.crop_ratio):
            fw, fh = W, round(W / min(self.crop_ratio))
        elif in_ratio > max(self.crop_ratio):
            fw, fh = round(H * max(self.crop_ratio)), H
        else:
            fw, fh = W, H
        centre = 0.5 - 0.25 / (max(H, W) + 1)  # floor(centre * (D + 1)) = D // 2
        lo = [[H * W * s_lo, r_lo, 0.0, 0.0]] * _ATTEMPTS + [
            [fw * fh, math.log(fw / fh), centre, centre]]
        span = [[H * W * (s_hi - s_lo), r_hi - r_lo, 1.0, 1.0]] * _ATTEMPTS + [[0.0] * 4]
        b, ct, s, h = self.jitter
        f_lo = [max(0.0, 1 - b), max(0.0, 1 - ct), max(0.0, 1 - s), -h]
        f_hi = [1 + b, 1 + ct, 1 + s, h]
        steps = torch.arange(max(oh, ow), dtype=torch.float64) + 0.5
        gi = torch.arange(oh).view(oh, 1, 1).expand(oh, ow, 2)
        gj = torch.arange(ow).view(1, ow, 1).expand(oh, ow, 2)
        axis = torch.tensor([0, 1]).expand(oh, ow, 2)
        return SimpleNamespace(
            # sampling
            crop_lo=t(lo), crop_span=t(span), plus_minus=t([1.0, -1.0]),
            mid=t([(W + 1) / 2, (H + 1) / 2]), half=t([(W - 1) / 2, (H - 1) / 2]),
            room=t([W + 1.0, H + 1.0]), probs=t([self.flip_p, self.jitter_p, self.grayscale_p]),
            factor_lo=t(f_lo), factor_span=t([a - b for a, b in zip(f_hi, f_lo)]),
            # crop, resize and flip: box (x0, y0, w, h) -> normalised (-1 .. 1) start and size
            box_k=t([2 / W, 2 / H, 2 / W, 2 / H]), box_off=t([-1.0, -1.0, 0.0, 0.0]),
            half_k=t([[1 / W], [1 / H]]), flip_mask=t([[1.0], [0.0]]),
            grid_t=torch.stack([steps / ow, steps / oh]).to(dtype).to(device),
            grid_axis=axis.contiguous().to(device),
            grid_index=torch.where(axis == 0, gj, gi).contiguous().to(device))

    # -- application ------------------------------------------------------------------
    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Apply parameters from :meth:`sample` to a float (B, C, H, W) batch in [0, 1].

        On CPU this runs on one thread: it is some 130 elementwise operations on small
        tensors, for which splitting over threads saves little and, on a machine shared with
        other jobs, costs a lot (BENCHMARKS.md).
        """
        with _one_thread_on_cpu(x):
            return self._apply(x, p)

    def _apply(self, x: torch.Tensor, p: dict, scale: float = 1.0, dtype=None) -> torch.Tensor:
        x = self.crop_resize_flip(x, p)
        x = self.color_jitter(x, p, scale)
        if x.shape[1] == 3:
            c = self._consts(x.device, x.dtype)
            x = torch.where(p["gray"].view(-1, 1, 1, 1), _luma(x, c.luma), x)
        return _channels_last(x, dtype)

    def crop_resize_flip(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """Bilinear resize of each sample's crop to ``size`` (half-pixel centres, edges clamped
        to the crop as when resizing the cropped image), then the flip, in one grid_sample.

        Along each axis the output's pixel centres are at ``t = (j + 0.5) / out`` of the
        crop, clamped to ``[0.5 / w, 1 - 0.5 / w]`` (the crop's first and last pixel
        centres), mirrored (``1 - t``) for a flip, at ``start + size * t`` (normalised).
        """
        n, _, H, W = x.shape
        oh, ow = self.out_size
        c = self._consts(x.device, x.dtype, H, W)
        box = torch.stack([p["left"], p["top"], p["width"], p["height"]], 1).to(x.dtype)
        start, size = torch.addcmul(c.box_off, box, c.box_k).view(n, 2, 2, 1).unbind(1)
        lo = torch.div(c.half_k, size)
        t = torch.clamp(c.grid_t, lo, 1 - lo)
        t = (t - p["flip"].view(n, 1, 1) * c.flip_mask).abs_()
        g = torch.addcmul(start, size, t)  # (n, 2, S): x then y coordinates
        grid = g[:, c.grid_axis, c.grid_index]  # (n, oh, ow, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def color_jitter(self, x: torch.Tensor, p: dict, scale: float = 1.0) -> torch.Tensor:
        """The four jitter operations in each sample's own random order, with no host sync.

        RGB: six blend passes and one hue rotation between the third and the fourth. A
        sample's brightness, contrast and saturation go, in its order, to passes 1-3 when
        they come before its hue and to passes 4-6 when after (operation k at its position
        in the order, plus 2 when after the hue); the other passes leave it as it is. A pass
        is ``clamp(scale * x + gray * luma(x) + mean * mean(luma(x)), 0, 1)`` with
        per-sample coefficients (each operation's own formula). One channel: two passes,
        brightness and contrast in their order. ``scale`` multiplies the first pass (1/255
        turns uint8 values into [0, 1] there).
        """
        n, ch = x.shape[:2]
        c = self._consts(x.device, x.dtype)
        factors = torch.where(p["jitter"], p["factors"].T.to(x.dtype), c.no_jitter)  # (4, n)
        position = p["order"].argsort(dim=1).T  # (4, n): where each operation comes
        if ch == 1:
            # (op, coefficient: scale, mean, n): brightness then contrast, swapped where
            # contrast comes first
            blend = torch.addcmul(c.blend_a1, factors[:2].unsqueeze(1), c.blend_b1)
            blend = torch.where(position[0] < position[1], blend, blend.flip(0))
            if scale != 1.0:
                blend = blend * c.uint8_scale1
            coef = blend.view(4, n, 1, 1, 1).unbind(0)
            for j in range(2):
                s, mean = coef[2 * j : 2 * j + 2]
                x = torch.addcmul(mean * x.mean((2, 3), keepdim=True), s, x).clamp_(0, 1)
            return x
        blend = torch.addcmul(c.blend_a, factors[:3].unsqueeze(1), c.blend_b)  # (3, 3, n)
        before = position[:3]
        slot = torch.add(before, before > position[3], alpha=2)  # pass of b, c, s: (3, n)
        table = c.blend_identity.expand(6, 3, n).scatter(
            0, slot.unsqueeze(1).expand(3, 3, n), blend)  # (pass, coefficient, n)
        if scale != 1.0:
            table = table * c.uint8_scale
        coef = table.view(18, n, 1, 1, 1).unbind(0)
        hue_shift = torch.add(c.sixths, factors[3].view(n, 1, 1, 1), alpha=6.0)
        hue = p["jitter"].view(n, 1, 1, 1)
        for j in range(6):
            s, a, mean = coef[3 * j : 3 * j + 3]
            gray = _luma(x, c.luma)
            y = torch.addcmul(mean * gray.mean((2, 3), keepdim=True), a, gray)
            x = torch.addcmul(y, s, x).clamp_(0, 1)
            if j == 2:
                x = torch.where(hue, _rotate_hue(x, hue_shift), x)
        return x


#: each setting of :class:`Augment` that ``TSimCNE(data_transform={...})`` may change (its
#: fields with a rule: all but the size, the network's image size), with its rule
_RULES = {f.name: f.metadata["rule"] for f in fields(Augment) if "rule" in f.metadata}
SETTINGS = tuple(_RULES)


class BoundAugment:
    """An :class:`Augment` with its generator and process part (:meth:`Augment.bind`).

    ``bound(x)`` is one view of a batch; ``bound.two_views(x)`` both views of it (or of
    ``x`` and ``second``) in one call, with independent draws: the views of image i are
    rows i and B + i.
    """

    def __init__(self, augment: Augment, generator, part=(0, 1)):
        self.augment, self.generator, self.part = augment, generator, part

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x, generator=self.generator, part=self.part)

    def two_views(self, x: torch.Tensor, second: torch.Tensor | None = None,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
        both = torch.cat([x, x if second is None else second])
        return self.augment(both, generator=self.generator, part=self.part, views=2,
                            dtype=dtype)


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Deterministic bilinear (antialiased) resize of a float batch to ``size``; no-op if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
