"""Networks trained elsewhere: their input, their classifier, their weights files.

- :class:`InputPrep`: what a batch in [0, 1] goes through before the backbone: one-channel
  images repeated to three for a network whose first convolution takes three, and a
  per-channel normalisation (``TSimCNE(normalize=...)``, e.g. ImageNet's mean and std).
- :func:`drop_classifier`: a classification network (torchvision's ResNet ``fc``,
  MobileNet/EfficientNet ``classifier``, timm's ``reset_classifier`` convention, or any
  module whose output comes straight from an ``nn.Linear``) without its class scores.
- :func:`load_backbone_weights`: a ``state_dict`` file (torchvision's names, a simcne model
  file, a training checkpoint's wrapper) loaded into a named backbone, tensor by tensor
  where name and shape agree.
"""

from __future__ import annotations

import copy
import os
import pickle
import zipfile

import torch
from torch import nn

#: ImageNet's per-channel (R, G, B) mean and standard deviation of pixels in [0, 1], what
#: ImageNet-pretrained networks (torchvision's, timm's) expect their input normalised with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- the input ---------------------------------------------------------------------------------
def resolve_normalize(normalize):
    """``normalize`` as ``(mean, std)``, two tuples of floats, or None.

    ``"imagenet"`` gives :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`; a pair
    ``(mean, std)`` of numbers (one value for every channel) or of sequences (one value
    per channel) is returned as tuples of equal length (a single value is repeated to
    the other's length). Values are assumed checked by ``TSimCNE._validate_params``.
    """
    if normalize is None:
        return None
    if isinstance(normalize, str):
        return IMAGENET_MEAN, IMAGENET_STD
    mean, std = normalize

    def as_tuple(v):
        return tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else (float(v),)

    mean, std = as_tuple(mean), as_tuple(std)
    if len(mean) != len(std) and 1 in (len(mean), len(std)):  # one value for every channel
        n = max(len(mean), len(std))
        mean, std = mean * (n // len(mean)), std * (n // len(std))
    return mean, std


class InputPrep(nn.Module):
    """Images in [0, 1] -> what the backbone takes: repeat gray to RGB, then normalise.

    Parameters
    ----------
    repeat : int or None, default=None
        When set (3), one-channel batches are repeated to that many channels, as an
        ImageNet network's first convolution needs.
    mean, std : sequence of float or None
        ``(x - mean) / std`` per channel (one value: every channel). The two are buffers
        that are not saved in ``state_dict``: a model file stores the ``normalize``
        parameter instead, so files written before this module existed load unchanged.
    """

    def __init__(self, repeat: int | None = None, mean=None, std=None):
        super().__init__()
        self.repeat = repeat
        if mean is None:
            self.mean = self.std = None
        else:
            self.register_buffer("mean", _channels(mean), persistent=False)
            self.register_buffer("std", _channels(std), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep_format = x.is_contiguous(memory_format=torch.channels_last)
        if self.repeat and x.shape[1] == 1:
            x = x.expand(-1, self.repeat, -1, -1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        if self.repeat and keep_format:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def extra_repr(self) -> str:
        parts = [f"repeat={self.repeat}"] if self.repeat else []
        if self.mean is not None:
            parts.append(f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}")
        return ", ".join(parts)


def _channels(values) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float32).reshape(1, -1, 1, 1)


def first_conv(module: nn.Module) -> nn.Conv2d | None:
    """The first ``nn.Conv2d`` registered in ``module`` (its input layer, by convention)."""
    return next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)


def gray_to_rgb(module: nn.Module, in_channels: int) -> bool:
    """Whether one-channel images must be repeated to three channels for ``module``."""
    conv = first_conv(module)
    return in_channels == 1 and conv is not None and conv.in_channels == 3


def make_input(module: nn.Module, in_channels: int, normalize, say=None) -> InputPrep | None:
    """The :class:`InputPrep` in front of ``module`` for ``in_channels``-channel images.

    Raises a ValueError naming 'normalize' when its number of values per statistic is
    neither 1 nor the number of channels the network receives.
    """
    repeat = 3 if gray_to_rgb(module, in_channels) else None
    stats = resolve_normalize(normalize)
    if repeat is None and stats is None:
        return None
    channels = repeat or in_channels
    if stats is not None:
        n = len(stats[0])
        if len(stats[1]) != n or n not in (1, channels):
            what = ("ImageNet's mean and std (3 values each)" if isinstance(normalize, str)
                    else f"{n} mean(s) and {len(stats[1])} standard deviation(s)")
            gray = ("; one value, the mean over ImageNet's channels, would be "
                    "normalize=(0.449, 0.226)" if isinstance(normalize, str) else "")
            raise ValueError(
                f"The 'normalize' parameter of TSimCNE must give one value, or one per "
                f"channel that the network receives ({channels}: {in_channels}-channel images"
                f"{', repeated to 3' if repeat else ''}), for the mean and the std. Got "
                f"{normalize!r} instead: {what}{gray}.")
    if repeat and say is not None:
        conv = first_conv(module)
        say(f"the images have 1 channel and the backbone's first convolution "
            f"({_describe(conv)}) takes 3: each image is repeated to 3 channels")
    return InputPrep(repeat, *(stats or (None, None)))


# -- the classifier ----------------------------------------------------------------------------
def _describe(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return f"Linear({m.in_features} -> {m.out_features})"
    if isinstance(m, nn.Conv2d):
        k = "x".join(str(s) for s in m.kernel_size)
        return f"Conv2d({m.in_channels} -> {m.out_channels}, {k})"
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return f"{type(m).__name__}(p={m.p})"
    n = sum(p.numel() for p in m.parameters())
    return f"{type(m).__name__} ({n:,} parameters)"


def _is_dropout(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.dropout._DropoutNd)


def _output_linear(module: nn.Module, x: torch.Tensor) -> str | None:
    """The name of the ``nn.Linear`` whose output is ``module(x)``'s output, if one is.

    Found by a dry forward pass (eval mode, no gradients) with a hook on every Linear:
    the layer that produced the very tensor the module returns is its last operation.
    """
    from .dryrun import eval_mode, run_explained

    if not any(isinstance(m, nn.Linear) for m in module.modules()):
        return None
    outputs: list = []  # (tensor, name): the tensors are kept alive, so identity is exact
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: outputs.append(
                 (out, name)))
             for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    try:
        with eval_mode(module), torch.no_grad():
            out = run_explained(module, x, f"The 'backbone' {type(module).__name__} cannot take images "
                                  f"of shape (C, H, W) = {tuple(x.shape[1:])}")
    finally:
        for h in hooks:
            h.remove()
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    name = next((n for t, n in reversed(outputs) if t is out), None)
    return name or None  # "" would be the module itself: a Linear is no backbone


def drop_classifier(module: nn.Module, x: torch.Tensor) -> tuple[nn.Module, str | None]:
    """``module`` without its classifier, and what was dropped (None: nothing).

    ``module`` itself is never changed: when there is a classifier, a deep copy is made
    and its classifier replaced by ``nn.Identity``. Two conventions are recognised:

    - timm's: a module with ``reset_classifier`` and ``forward_features`` whose
      ``get_classifier()`` has parameters gets ``reset_classifier(0)`` (its forward then
      returns the pooled features, ``num_features`` or ``head_hidden_size`` wide);
    - any other module whose output is the output of an ``nn.Linear`` (found by a dry
      forward pass of ``x``, see :func:`_output_linear`): torchvision's ResNet ``fc``,
      the last layer of MobileNetV3's and EfficientNet's ``classifier``, a
      ``Sequential`` ending in a Linear. That Linear is replaced, with the dropout
      layers right before it in the same ``Sequential`` (they only serve the class
      scores); earlier layers (MobileNetV3's ``Linear(576, 1024)`` and ``Hardswish``)
      stay, as timm keeps them: the features are the pre-logits.
    """
    reset, features = (getattr(module, "reset_classifier", None),
                       getattr(module, "forward_features", None))
    if callable(reset) and callable(features):
        get = getattr(module, "get_classifier", None)
        head = get() if callable(get) else None
        if not isinstance(head, nn.Module) or not any(True for _ in head.parameters()):
            return module, None  # already reset
        out = copy.deepcopy(module)
        out.reset_classifier(0)
        return out, f"its classifier {_describe(head)} (timm's reset_classifier(0))"
    name = _output_linear(module, x)
    if name is None:
        return module, None
    out = copy.deepcopy(module)
    modules = dict(out.named_modules())
    parent_name, _, child = name.rpartition(".")
    parent = modules[parent_name]
    dropped = [child]
    if isinstance(parent, nn.Sequential):
        names = list(parent._modules)
        i = names.index(child)
        while i > 0 and _is_dropout(parent._modules[names[i - 1]]):
            i -= 1
            dropped.insert(0, names[i])
    what = []
    for c in dropped:
        full = f"{parent_name}.{c}" if parent_name else c
        what.append(f"{full}: {_describe(parent._modules[c])}")
        setattr(parent, c, nn.Identity())
    return out, "its classifier " + ", ".join(what)


# -- weights files -----------------------------------------------------------------------------
#: keys of the dicts that training scripts wrap a state_dict in
_WRAPPERS = ("state_dict", "model", "model_state_dict", "network")


def read_state_dict(path, param: str = "backbone_weights") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, read with ``torch.load(..., weights_only=True)``.

    Takes a plain ``state_dict``, a dict wrapping one (``{"state_dict": ...}``,
    ``{"model": ...}``, ...), a simcne model file (its network's weights) or a simcne
    checkpoint. Raises a ValueError naming ``param`` and the file otherwise.
    """
    where = f"The '{param}' file {os.fspath(path)!r}"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{where} does not exist.") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError,
            AttributeError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{where} cannot be read as weights: expected a torch.save file of a state_dict "
            f"that torch.load(weights_only=True) reads (tensors and plain data only); "
            f"{type(e).__name__}.") from None
    if isinstance(obj, dict) and obj.get("format") == "simcne.TSimCNE":
        obj = obj.get("state_dict")
    for _ in range(3):  # {"model": {"state_dict": ...}} and the like
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    tensors = ({k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
               if isinstance(obj, dict) else {})
    if not tensors:
        got = f"a {type(obj).__name__}" if not isinstance(obj, dict) else (
            f"a dict with keys {sorted(map(str, obj))[:6]}")
        raise ValueError(f"{where} holds no state_dict: expected a dict of parameter names "
                         f"to tensors (or one wrapped as 'state_dict' or 'model'). Got {got}.")
    return tensors


def _best_prefix(names, wanted) -> str:
    """The prefix ('', 'module.', 'backbone.', ...) under which most ``names`` are ``wanted``."""
    counts: dict[str, int] = {}
    for name in names:
        parts = name.split(".")
        for i in range(len(parts)):
            if ".".join(parts[i:]) in wanted:
                prefix = ".".join(parts[:i]) + ("." if i else "")
                counts[prefix] = counts.get(prefix, 0) + 1
    if not counts:
        return ""
    return max(counts, key=lambda p: (counts[p], -len(p)))


def _short(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _match(own: dict, theirs: dict, stem: str | None):
    """The file's tensors ``theirs`` against the backbone's ``own``, name by name:
    ``(fits, mismatched, missing, summed)``: the tensors to load, the names of those shaped
    otherwise, those the file lacks, and the stem's RGB weights summed for gray images."""
    fits, mismatched, missing, summed = {}, [], [], []
    for key, mine in own.items():
        t = theirs.get(key)
        if (key == stem and t is not None and t.ndim == 4 and (t.shape[1], mine.shape[1]) == (3, 1)
                and t.shape[:1] + t.shape[2:] == mine.shape[:1] + mine.shape[2:]):
            # RGB weights, gray images: summing over the input channels is the same as
            # repeating the gray image to RGB
            t = t.sum(1, keepdim=True)
            summed.append(key)
        if t is None:
            missing.append(key)
        elif t.shape != mine.shape:
            mismatched.append(f"{key} (the file's {tuple(t.shape)}, the backbone's "
                              f"{tuple(mine.shape)})")
        else:
            fits[key] = t
    return fits, mismatched, missing, summed


def load_backbone_weights(backbone: nn.Module, path, name: str) -> tuple[str, bool]:
    """Load a weights file into a named backbone, where names and shapes agree.

    torchvision's and timm's names for ResNets (``conv1``, ``bn1``, ``layer1.0.conv1``,
    ..., ``fc``) and torchvision's for MobileNetV3 and EfficientNetV2 (``features...``)
    are simcne's own; a prefix common to the file's names (``module.``, ``backbone.``,
    ``model.``) is found and removed. Tensors whose shape differs (torchvision's 7x7 ResNet
    stem against the SimCLR 3x3 stem) stay as initialised; the file's tensors that fit no
    name (a classifier ``fc``, a projection head) are left out. A first convolution for
    RGB loaded into one built for gray images (``in_channels=1``) is summed over its
    input channels, which is what repeating the gray image to RGB would compute.

    Parameters
    ----------
    backbone : nn.Module
        The freshly built named backbone; changed in place.
    path : str or os.PathLike
    name : str
        The backbone's name, for messages.

    Returns
    -------
    (str, bool)
        One line saying what was loaded and what was not, and whether some of the
        backbone's tensors were not loaded (then the caller warns).

    Raises
    ------
    ValueError
        Naming 'backbone_weights' and the file: it cannot be read, holds no state_dict,
        or fits too little: fewer than half of the backbone's weights (by number of
        values) found a tensor of the same name and shape.
    """
    tensors = read_state_dict(path)
    own = backbone.state_dict()
    prefix = _best_prefix(tensors, own)
    theirs = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    conv = first_conv(backbone)
    stem = next((f"{n}.weight" for n, m in backbone.named_modules() if m is conv), None)
    fits, mismatched, missing, summed = _match(own, theirs, stem)
    unused = sorted(k for k in theirs if k not in own) + sorted(
        k for k in tensors if not k.startswith(prefix))
    # BatchNorm's step counters matter to nothing here: neither counted nor named
    def weight(k):
        return 0 if k.endswith("num_batches_tracked") else own[k].numel()

    total = sum(weight(k) for k in own)
    loaded = sum(weight(k) for k in fits)
    where = f"The 'backbone_weights' file {os.fspath(path)!r}"
    if loaded * 2 < total:
        example = _short(sorted(tensors), 3)
        raise ValueError(
            f"{where} does not fit backbone {name!r}: expected tensors named and shaped like "
            f"its own (e.g. {_short(list(own), 3)}; torchvision's names are accepted), but "
            f"only {loaded:,} of its {total:,} weights found one (the file has "
            f"{len(tensors)} tensors, e.g. {example}). Is it the weights of another "
            "architecture?")
    backbone.load_state_dict(fits, strict=False)
    n_own = sum(1 for k in own if not k.endswith("num_batches_tracked"))
    n_fit = sum(1 for k in fits if not k.endswith("num_batches_tracked"))
    line = (f"backbone_weights {os.fspath(path)!r}{f' (prefix {prefix!r})' if prefix else ''}: "
            f"loaded {n_fit} of the {n_own} tensors of {name}")
    if summed:
        line += (f" ({summed[0]} summed over its 3 input channels for 1-channel images, the "
                 "same as repeating them to RGB)")
    not_loaded = mismatched + [k for k in missing if not k.endswith("num_batches_tracked")]
    if not_loaded:
        line += f"; not loaded, kept as initialised: {_short(not_loaded)}"
    if unused:
        line += f"; the file's {_short(unused)} fit nothing here and were left out"
    return line, bool(not_loaded)
