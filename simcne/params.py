"""TSimCNE's parameters in one declarative table: constraints, flags, help, roles.

Each entry of :data:`PARAMS` says what values a parameter takes (a constraint that writes
its own "must be ..." text, as scikit-learn's ``_parameter_constraints``), how the command
line gives it (argparse keywords, how the parsed value becomes the parameter's value, the
help line) and its role: *free* parameters do not change what is trained (a resumed run
may change them), *module* parameters may hold an ``nn.Module`` (a model file keeps its
weights, not its architecture). Defaults live in ``TSimCNE.__init__``'s signature only.

Everything else reads this table: ``TSimCNE._validate_params`` (:func:`validate`), the
flags of ``simcne fit`` and ``simcne demo`` (:mod:`simcne.cli`), the parameters a
checkpoint must agree on (:mod:`simcne.checkpoint`), and which parameters a model file
cannot store (:mod:`simcne.persist`). Adding a parameter is one entry here plus its use.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .augment import SETTINGS
from .losses import LOSSES, METRICS
from .models import BACKBONES, HEADS


# -- constraints ----------------------------------------------------------------------------
class Constraint:
    """A set of allowed values: ``c(value)`` says whether ``value`` is in it; ``c.text``
    completes "must be ..." in the error message."""

    text = ""

    def __call__(self, value) -> bool:  # pragma: no cover - every subclass defines it
        raise NotImplementedError


def is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass
class Options(Constraint):
    """One of a few values (strings, None); ``values`` may be a registry (a dict by name),
    read when a value is checked."""

    values: tuple
    text: str = ""

    def __post_init__(self):
        if not self.text:
            shown = list(self.values)
            self.text = repr(shown[0]) if len(shown) == 1 else f"one of {shown}"

    def __call__(self, value) -> bool:
        return isinstance(value, (str, type(None))) and value in self.values


@dataclass
class Interval(Constraint):
    """An int (``kind=int``) or a finite real in a range; ``closed`` as in scikit-learn."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "left"  # "left", "right", "both", "neither"
    text: str = ""

    def __post_init__(self):
        if self.text:
            return
        what = "an int" if self.kind is int else "a float"
        lo_in = self.closed in ("left", "both")
        hi_in = self.closed in ("right", "both")
        if self.low is not None and self.high is not None:
            self.text = (f"{what} in {'[' if lo_in else '('}{self.low:g}, {self.high:g}"
                         f"{']' if hi_in else ')'}")
        elif self.low is not None:
            self.text = f"{what} {'>=' if lo_in else '>'} {self.low:g}"
        elif self.high is not None:
            self.text = f"{what} {'<=' if hi_in else '<'} {self.high:g}"
        else:
            self.text = what

    def __call__(self, value) -> bool:
        if not (is_int(value) if self.kind is int else is_real(value)):
            return False
        if not math.isfinite(value):
            return False
        lo_in = self.closed in ("left", "both")
        hi_in = self.closed in ("right", "both")
        if self.low is not None and not (value >= self.low if lo_in else value > self.low):
            return False
        if self.high is not None and not (value <= self.high if hi_in else value < self.high):
            return False
        return True


@dataclass
class Check(Constraint):
    """Any predicate, with its text."""

    test: Callable[[Any], bool]
    text: str

    def __call__(self, value) -> bool:
        try:
            return bool(self.test(value))
        except Exception:  # noqa: BLE001  a predicate that cannot judge the value: no
            return False


@dataclass
class ListOf(Constraint):
    """A list or tuple of 1 to ``most`` items, each in ``item``."""

    item: Constraint
    text: str
    most: int = 3
    least: int = 1
    #: a value per stage, checked against ``total_epochs`` (made by :func:`per_stage`)
    per_stage: bool = False

    def __call__(self, value) -> bool:
        return (isinstance(value, (list, tuple)) and self.least <= len(value) <= self.most
                and all(self.item(v) for v in value))


@dataclass
class AnyOf(Constraint):
    """A value any of ``parts`` allows; the text lists theirs, "a, b or c"."""

    parts: tuple
    text: str = ""

    def __post_init__(self):
        if not self.text:
            texts = [p.text for p in self.parts]
            self.text = texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]

    def __call__(self, value) -> bool:
        return any(p(value) for p in self.parts)


def none_or(c: Constraint) -> AnyOf:
    return AnyOf((Options((None,), text="None"), c))


def instance(kind, text: str) -> Check:
    return Check(lambda v: isinstance(v, kind), text)


def per_stage(item: Constraint, plural: str) -> ListOf:
    """A list with a value per stage (checked against ``total_epochs`` in :func:`validate`)."""
    return ListOf(item, f"a list of {plural}, one per stage", per_stage=True)


def _takes_per_stage(c: Constraint) -> bool:
    return (isinstance(c, ListOf) and c.per_stage) or (
        isinstance(c, AnyOf) and any(_takes_per_stage(part) for part in c.parts))


def _device_name(value) -> bool:
    if isinstance(value, torch.device) or value == "auto":
        return True
    torch.device(value)  # raises for a name torch does not know
    return isinstance(value, str)


def _callbacks(value) -> bool:
    return callable(value) or (isinstance(value, (list, tuple))
                               and all(callable(c) for c in value))


#: one stage's data_transform
_VIEW = Check(lambda v: v is None or isinstance(v, dict) or callable(v),
              "None, a dict of augmentation settings or a callable taking a batch of images")


def _file(value) -> bool:
    return isinstance(value, (str, os.PathLike)) and Path(value).is_file()


def _normalize_ok(value) -> bool:
    """None, "imagenet" or (mean, std), each a finite float or one per channel, std > 0."""
    if value is None or (isinstance(value, str) and value == "imagenet"):
        return True
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return False

    def values(v):
        vs = list(v) if isinstance(v, (list, tuple)) else [v]
        return vs if vs and all(is_real(x) and math.isfinite(x) for x in vs) else None

    mean, std = values(value[0]), values(value[1])
    return (mean is not None and std is not None and all(s > 0 for s in std)
            and (len(mean) == len(std) or 1 in (len(mean), len(std))))


# -- command-line values --------------------------------------------------------------------
def _none_or(conv, what):
    def parse(text):
        if text.lower() == "none":
            return None
        try:
            return conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or 'none', got {text!r}") from None
    return parse


def _word_or(word, conv, what):
    def parse(text):
        if text == word:
            return word
        try:
            return conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {word!r} or {what}, got {text!r}") from None
    return parse


def normalize_from_words(words):
    """--normalize: 'imagenet', 'none', or 2k numbers (k means, then k stds) -> the parameter."""
    if len(words) == 1 and words[0].lower() in ("imagenet", "none"):
        return None if words[0].lower() == "none" else "imagenet"
    try:
        values = [float(w) for w in words]
    except ValueError:
        values = None
    if values is None or len(values) % 2:
        raise ValueError(
            f"--normalize: expected 'imagenet', 'none', or the means then the standard "
            f"deviations (an even count of numbers, e.g. 0.5 0.25 or M1 M2 M3 S1 S2 S3). Got "
            f"{' '.join(words)!r} instead")
    k = len(values) // 2
    mean, std = values[:k], values[k:]
    return (mean[0], std[0]) if k == 1 else (mean, std)


def scalar_if_one(values):
    """A flag's list of values as the parameter's: one value alone, several as a list."""
    return values[0] if len(values) == 1 else list(values)


# -- the table ------------------------------------------------------------------------------
@dataclass
class Param:
    """One parameter of TSimCNE (see the module docstring)."""

    constraint: Constraint
    help: str = ""
    #: argparse keywords of its flag; None: Python only (its values are Python objects)
    cli: dict | None = None
    #: how the flag's parsed value becomes the parameter's value (None: as it is)
    convert: Callable | None = None
    free: bool = False
    module: bool = False
    #: the flag offers the values of its ``Options`` constraint as argparse choices
    choices: bool = False
    #: the flag that gives it in another form (verbose: --quiet), where it has no own flag
    flag: str | None = None
    #: its type and its description, as the estimator's docstring shows them (numpydoc)
    kind: str = ""
    doc: str = ""
    name: str = field(default="", init=False)

    def __post_init__(self):
        # a set of values is written once, in the constraint: the docstring's kind and
        # the flag's choices are read from it
        options = self.constraint.values if isinstance(self.constraint, Options) else None
        if options is not None and not self.kind:
            self.kind = "{" + ", ".join(f'"{v}"' for v in options) + "}"
        if self.choices:
            self.cli = {**(self.cli or {}), "choices": tuple(options)}


_FLOAT_POS = Interval(float, 0, None, "neither")
_INT_POS = Interval(int, 1, None)

PARAMS: dict[str, Param] = {
    "model": Param(none_or(instance(nn.Module, "a torch.nn.Module")), module=True,
                 kind="nn.Module or None",
                 doc=("A whole network mapping images to z (or to ``(z, h)``). When given, "
                      "``backbone`` and ``projection_head`` are ignored. Its last ``nn.Linear`` "
                      "is replaced in stage 2.")),
    "loss": Param(Options(LOSSES), f"the contrastive loss ({', '.join(map(repr, LOSSES))})",
                  dict(type=str, metavar="NAME"),
                 doc="The contrastive loss."),
    "metric": Param(none_or(Options(METRICS)),
                    "similarity of the loss: none/euclidean (Cauchy kernel, t-SimCNE), cosine "
                    "(SimCLR, with --temperature) or gauss",
                    dict(type=_none_or(str, "a name"), metavar="NAME"),
                 kind="{None, \"euclidean\", \"cosine\", \"gauss\"}",
                 doc=("The similarity of the loss. None and \"euclidean\" give t-SimCNE's Cauchy "
                      "kernel ``1/(1 + d^2)``; \"cosine\" gives SimCLR's loss with ``temperature``;"
                      " \"gauss\" the kernel ``exp(-d^2)``.")),
    "backbone": Param(AnyOf((instance(nn.Module, "an nn.Module"), Options(tuple(sorted(BACKBONES))))),
                      "backbone network: {backbones}", dict(type=str, metavar="NAME"),
                      module=True,
                 kind="str or nn.Module",
                 doc=("A name from ``simcne.models.BACKBONES`` or a module mapping images to "
                      "features. A classification network (torchvision's ResNet, MobileNetV3 or "
                      "EfficientNet, a timm model, any module whose output comes from an "
                      "``nn.Linear``) loses its classifier: that Linear (with the dropout right "
                      "before it) is replaced by ``nn.Identity`` in a copy, and ``verbose`` says "
                      "what was dropped. ``fit`` trains copies of the modules it is given: the "
                      "module passed here is never changed (the trained network is ``model_``). "
                      "One-channel images given to a module whose first ``nn.Conv2d`` takes 3 "
                      "channels are repeated to 3.")),
    "backbone_weights": Param(none_or(Check(_file, "the path of a state_dict file (an "
                                            "existing file)")),
                              "a state_dict file loaded into the named --backbone "
                              "(torchvision's names accepted; tensors of another shape, such as "
                              "the 7x7 ImageNet stem, stay as initialised, said in one line)",
                              dict(type=_none_or(str, "a path"), metavar="FILE"),
                 kind="str, path or None",
                 doc=("A ``state_dict`` file (read with ``torch.load(..., weights_only=True)``) "
                      "loaded into the named ``backbone`` before training: torchvision's or "
                      "timm's weights of the same architecture (their names are simcne's), a "
                      "simcne model file, or a training checkpoint wrapping one "
                      "(``{\"state_dict\": ...}``, ``{\"model\": ...}``). Tensors of another "
                      "shape (torchvision's 7x7 ResNet stem against the SimCLR 3x3 one) stay as "
                      "initialised and the file's classifier is left out, said in one warning "
                      "line; a file that fits less than half of the backbone's weights is a "
                      "ValueError.")),
    "projection_head": Param(AnyOf((instance(nn.Module, "an nn.Module"), Options(HEADS))),
                             "'mlp' or 'linear'", dict(type=str, metavar="NAME"), module=True,
                 kind="{\"mlp\", \"linear\"} or nn.Module",
                 doc=("\"mlp\" is ``Linear(width, 1024) - ReLU - Linear(1024, pretrain_out_dim)``, "
                      "with ``width`` the backbone's output width.")),
    "init": Param(none_or(Check(_file, "the path of a model file written by TSimCNE.save "
                                "(an existing file)")),
                  "warm start from a model file of 'simcne fit' (model.pt) of the same "
                  "architecture and image size: see --init-stage",
                  dict(type=_none_or(str, "a path"), metavar="FILE"),
                 kind="str, path or None",
                 doc=("A model file written by :meth:`save` to start from (a warm start): its "
                      "weights, not its other parameters. The file must be of the same "
                      "architecture (``backbone``, ``projection_head`` or ``model``) and "
                      "``normalize``, trained on images of the same size and channels as this "
                      "fit's (``image_size`` brings X to its size); otherwise a ValueError names "
                      "the file and what differs.")),
    "init_stage": Param(Check(lambda v: is_int(v) and v in (1, 3),
                              "1 (stage 1 starts from init's weights) or 3 (stage 3 fine-tunes "
                              "init's whole network)"),
                        "1: stage 1 starts from --init's backbone and head (a fresh last "
                        "layer); 3: stages 1 and 2 are skipped, stage 3 fine-tunes --init's "
                        "whole network", dict(type=int, choices=(1, 3), metavar="{1,3}"),
                 kind="{1, 3}",
                 doc=("Where ``init``'s weights come in. 1: stage 1 starts from its backbone "
                      "and projection head, except the head's last layer (the file holds the "
                      "``out_dim`` one; stage 1 gets a fresh ``pretrain_out_dim`` one); with "
                      "``total_epochs=[0, n2, n3]`` the old features get a new map. 3: stages 1 "
                      "and 2 are skipped and stage 3 (``total_epochs[2]`` epochs at the stage-3 "
                      "rate) fine-tunes the file's whole network, its ``out_dim`` layer "
                      "included; ``stage_embeddings_`` then holds one embedding, the final one.")),
    "data_transform": Param(AnyOf((_VIEW, per_stage(_VIEW, "such values"))),
                 kind="dict, callable, None or list of them",
                 doc=("The random view. None is the paper's augmentation, "
                      ":class:`simcne.augment.Augment` at ``image_size``. A dict changes some of "
                      "its settings and keeps the others, e.g. ``{\"flip_p\": 0, \"crop_scale\": "
                      "(0.8, 1)}`` for images that a mirror or a small crop turns into another "
                      "class (digits, letters); its keys are "
                      + ", ".join(f"``{k}``" for k in SETTINGS[:-1]) + f" and ``{SETTINGS[-1]}``. "
                      "Being plain "
                      "data, it is stored in model files and checkpoints. A callable receives a "
                      "float batch (B, C, H, W) in [0, 1] on the training device and returns one "
                      "view (B, C, *image_size); it is called twice a batch. A list gives "
                      "each stage its own view, e.g. ``[{\"crop_scale\": (0.5, 1)}, "
                      "{\"crop_scale\": (0.8, 1)}, {\"crop_scale\": (0.8, 1)}]``: narrower "
                      "crops in the stages that make the map. Measure it on your data: on "
                      "10,000 Fashion-MNIST images it scored 0.764 against 0.753, on 1,886 "
                      "clip-art drawings six points below the paper's crops.")),
    "normalize": Param(Check(_normalize_ok, "None, 'imagenet' or a pair (mean, std), each a "
                             "float or a list of floats (one per channel), std > 0"),
                       "normalise the images after augmentation: 'imagenet' (ImageNet's mean "
                       "and std, for ImageNet-pretrained networks), 'none', or the means, then "
                       "the standard deviations, one per channel (M1 M2 M3 S1 S2 S3; M S for "
                       "every channel alike)", dict(nargs="+", metavar="V"), normalize_from_words,
                 kind="None, \"imagenet\" or (mean, std)",
                 doc=("Per-channel normalisation ``(x - mean) / std`` of the images in [0, 1], "
                      "on the device, after the augmentation in training and before the network "
                      "in :meth:`transform`. \"imagenet\" is ImageNet's mean (0.485, 0.456, "
                      "0.406) and std (0.229, 0.224, 0.225), what ImageNet-pretrained networks "
                      "expect. ``mean`` and ``std`` are each a float (every channel) or one "
                      "float per channel the network receives. Stored in model files and "
                      "checkpoints.")),
    "total_epochs": Param(AnyOf((Interval(int, 0), ListOf(Interval(int, 0), "")),
                                text="an int >= 0 or a list of 1 to 3 ints >= 0"),
                          "epochs of stages 1, 2 and 3; fewer numbers run only the first "
                          "stages", dict(type=int, nargs="+", metavar="N"), scalar_if_one,
                 kind="int or list of int",
                 doc=("Epochs of each stage. An int or a shorter list runs only the first stages:"
                      " with one stage the output is that of the fresh, untrained ``out_dim`` "
                      "layer (the guide's first panel); with two, the network after stage 2. "
                      "Zeros are allowed.")),
    "batch_size": Param(Interval(int, 2), "images per step (two views each)",
                        dict(type=int, metavar="N"),
                 kind="int",
                 doc=("Images per step (each gives two views). Capped at the dataset size. Under "
                      "torchrun it is the global batch, shared out over the processes: a multiple"
                      " of their number.")),
    "out_dim": Param(_INT_POS, "dimension of the embedding", dict(type=int, metavar="D"),
                 kind="int",
                 doc="Dimension of the final embedding."),
    "pretrain_out_dim": Param(_INT_POS, "output dimension in stage 1",
                              dict(type=int, metavar="D"),
                 kind="int",
                 doc="Output dimension in stage 1."),
    "optimizer": Param(Options(("sgd", "adam", "adamw")), "sgd, adam or adamw",
                       dict(type=str, metavar="NAME"),
                 doc=""),
    "lr": Param(AnyOf((Options(("auto_batch",)), _FLOAT_POS,
                       per_stage(_FLOAT_POS, "floats > 0"))),
                "'auto_batch' (0.03 * batch size / 256; stage 3 /1000), one rate (stage 3 "
                "/1000) or one rate per stage",
                dict(type=_word_or("auto_batch", float, "a float"), nargs="+", metavar="LR"),
                scalar_if_one,
                 kind="\"auto_batch\", float or list of float",
                 doc=("\"auto_batch\" is ``0.03 * batch_size / 256`` for stages 1 and 2 and 1/1000 "
                      "of that for stage 3. A float is used likewise (stage 3 at 1/1000); a list "
                      "gives each stage's rate.")),
    "warmup": Param(AnyOf((Options(("auto",)), Interval(int, 0),
                           per_stage(Interval(int, 0), "ints >= 0"))),
                    "warm-up epochs: 'auto' (10, 0, 10), one int (stages 1 and 3) or one per "
                    "stage", dict(type=_word_or("auto", int, "an int"), nargs="+", metavar="N"),
                    scalar_if_one,
                 kind="\"auto\", int or list of int",
                 doc=("Warm-up epochs per stage. \"auto\" is 10, 0 and 10 epochs, each capped at "
                      "its stage's length. An int is used for stages 1 and 3 (stage 2 has none); "
                      "a list gives each.")),
    "momentum": Param(Interval(float, 0, 1, "left"), "SGD momentum",
                      dict(type=float, metavar="M"),
                 kind="float",
                 doc=""),
    "weight_decay": Param(Interval(float, 0), "weight decay", dict(type=float, metavar="W"),
                 kind="float",
                 doc=""),
    "grad_clip": Param(none_or(_FLOAT_POS), "clip gradients to [-C, C] element-wise; 'none' "
                       "turns it off", dict(type=_none_or(float, "a float"), metavar="C"),
                 kind="float or None",
                 doc=("Gradients are clipped to [-grad_clip, grad_clip] element-wise. None "
                      "disables it.")),
    "temperature": Param(_FLOAT_POS, "temperature of --metric cosine",
                         dict(type=float, metavar="T"),
                 kind="float",
                 doc="Temperature of the \"cosine\" metric."),
    "exaggeration": Param(AnyOf((_FLOAT_POS, per_stage(_FLOAT_POS, "floats > 0"))),
                          "weight of the positive pair in the loss: one value for stages 2 "
                          "and 3 (stage 1 keeps 1), or one per stage; 1 is InfoNCE",
                          dict(type=float, nargs="+", metavar="RHO"), scalar_if_one,
                 kind="float or list of float",
                 doc=("Weight of the positive pair's term in the loss, ``-exaggeration * log "
                      "k(z_i, z_pos) + log sum_{j != i} k(z_i, z_j)``: 1 is InfoNCE (the "
                      "paper's); more pulls each view harder towards its pair than the batch "
                      "pushes it away, which, as exaggeration does for t-SNE, makes tighter, more"
                      " separated clusters (Böhm, Berens & Kobak, \"Attraction-repulsion spectrum "
                      "in neighbor embeddings\", JMLR 2022). A float applies to stages 2 and 3 "
                      "(the ``out_dim`` stages), stage 1 keeping 1; a list gives each stage's.")),
    "out_layer_std": Param(_FLOAT_POS, "standard deviation of the fresh out_dim layer's "
                           "weights in stage 2", dict(type=float, metavar="S"),
                 kind="float",
                 doc=("Standard deviation of the fresh ``out_dim`` layer's weights at the start "
                      "of stage 2 (the paper's N(0, 1)). The output's scale is proportional to "
                      "it; a smaller one, with a larger stage-3 rate, let short runs on small "
                      "data contract into clusters sooner.")),
    "out_layer_init": Param(Options(("random", "pca")),
                            "the fresh out_dim layer of stage 2: random (N(0, S^2), the "
                            "paper's) or pca (the top principal components of its input, at "
                            "the same spread)", choices=True,
                 doc=("How stage 2's fresh ``out_dim`` layer starts. \"random\": weights "
                      "N(0, ``out_layer_std``^2), the paper's. \"pca\": it projects onto the top "
                      "``out_dim`` principal components of its input (the head's hidden layer, "
                      "over up to 10,000 images), scaled so that the output spreads as far as "
                      "the random layer's would, as t-SNE starts from a PCA of its input: the "
                      "first map already shows the features' largest directions. Beyond the "
                      "paper (see :mod:`simcne.neighbors`).")),
    "neighbor_positives": Param(Interval(int, 0),
                                "K > 0: in stages 2-3 the second view is, with probability "
                                "K/(K+1), one of the image's K nearest neighbours in the stage-1 "
                                "features; 0: the paper's pairs", dict(type=int, metavar="K"),
                 kind="int",
                 doc=("0 keeps the paper's pairs (two views of one image). K > 0: after stage 1 "
                      "each image's K nearest neighbours in the backbone's features (cosine, no "
                      "augmentation) are found once, and in stages 2 and 3 the second view of each"
                      " pair shows, with probability K/(K+1), one of them instead of the image "
                      "itself: the map is pulled together along the features' neighbour graph, "
                      "as t-SNE's is along its input's. Beyond the paper (see "
                      ":mod:`simcne.neighbors`).")),
    "bank_negatives": Param(Interval(int, 0),
                            "M > 0: in stages 2-3, M more negatives a step from a bank of every "
                            "image's position in the map (all when M >= N); 0: the batch's only",
                            dict(type=int, metavar="M"),
                 kind="int",
                 doc=("0 keeps the paper's negatives (the batch's other views). M > 0: in stages "
                      "2 and 3 a bank holds every image's position in the map (filled at the "
                      "stage's start, refreshed by each batch's outputs), and each step M rows "
                      "of it (every row when M >= the number of images) join the loss's "
                      "negatives, without gradient: the repulsion of the whole dataset, as in "
                      "t-SNE. Beyond the paper (see :mod:`simcne.neighbors`).")),
    "image_size": Param(none_or(AnyOf((_INT_POS, ListOf(_INT_POS, "", most=2, least=2)),
                                      text="an int > 0 or a pair (height, width) of ints > 0")),
                        "H [W]: the size the network sees; none: the images' stored size",
                        dict(type=int, nargs="+", metavar="N"), scalar_if_one,
                 kind="None, int or (int, int)",
                 doc="Size the network sees. None uses the stored size of the training images."),
    "random_state": Param(none_or(Interval(int)), "seed (the same seed gives the same map on "
                          "CPU)", dict(type=_none_or(int, "an int"), metavar="SEED"),
                 kind="int or None",
                 doc=("Seed for initialisation, shuffling and augmentation. The same seed gives "
                      "the same embedding on CPU.")),
    "device": Param(Check(_device_name, "'auto', a device name such as 'cpu' or 'cuda', or "
                          "a torch.device"),
                    "'auto' (CUDA when available), cpu, cuda, cuda:1, ...",
                    dict(type=str, metavar="DEV"), free=True,
                 kind="\"auto\", str or torch.device",
                 doc=("\"auto\" is CUDA when available, else CPU. \"auto\" and \"cuda\" become "
                      "``cuda:<the current device>`` (under torchrun ``cuda:LOCAL_RANK``).")),
    "compile": Param(instance(bool, "a bool"), "torch.compile the network for training",
                     dict(action=argparse.BooleanOptionalAction), free=True,
                 kind="bool",
                 doc=("Wrap the network in ``torch.compile`` for training. On CPU its backend "
                      "builds C++ kernels: without a C++ compiler ($CXX or g++) ``fit`` raises a "
                      "ValueError before training. Off by default: compiling takes time at the "
                      "start of each stage, and on CPU it gained little (BENCHMARKS.md).")),
    "precision": Param(Options(("auto", "bf16", "fp32")),
                       "forward passes in bf16 autocast (the backbone; the head and the map "
                       "stay fp32): auto (CUDA, and CPUs with native bf16), bf16 (everywhere), "
                       "fp32 (never)", choices=True,
                 doc=("Arithmetic of the network's forward passes (training and transform). "
                      "\"auto\" is bf16 autocast on CUDA and on CPUs with native bf16 instructions "
                      "(AVX512-BF16 or AMX-BF16, detected by "
                      ":func:`simcne.train.cpu_has_native_bf16`), fp32 elsewhere; \"bf16\" is bf16 "
                      "autocast on any device (emulated, and much slower than fp32, on CPUs "
                      "without native bf16); \"fp32\" never autocasts. Autocast covers the backbone"
                      " only: the projection head, the loss and the coordinates are fp32. Under "
                      "\"fp32\" on CUDA, torch's TF32 settings apply as they are (by default "
                      "convolutions use TF32 and matrix products do not; "
                      "``torch.backends.cudnn.allow_tf32 = False`` for full fp32).")),
    "checkpoint": Param(none_or(Check(lambda v: isinstance(v, (str, os.PathLike))
                                      and not Path(v).is_dir(), "a file path (not a folder)")),
                        "keep the run in FILE while it trains (every --checkpoint-every "
                        "epochs); run the same command again after a crash to go on from it. "
                        "'simcne fit' keeps one in DIR/checkpoint.pt unless told otherwise "
                        "(--no-checkpoint)", dict(type=_none_or(str, "a path"), metavar="FILE"),
                        free=True,
                 kind="str, path or None",
                 doc=("A file to keep the run in while it trains: written atomically every "
                      "``checkpoint_every`` epochs and at the end of each stage, removed when "
                      "``fit`` completes. When it exists at the start of ``fit`` (a crashed or "
                      "interrupted run with the same parameters and data), training goes on from "
                      "it instead of starting over; on CPU with the same thread count the result "
                      "equals an uninterrupted run's. A file from a run with other parameters or "
                      "data is refused with a ValueError.")),
    "checkpoint_every": Param(_INT_POS, "epochs between checkpoints",
                              dict(type=int, metavar="N"), free=True,
                 kind="int",
                 doc="Epochs between checkpoints."),
    # -- reading data (issue 28) --
    "cache": Param(Check(lambda v: v is None or v is False or isinstance(v, (str, os.PathLike)),
                         "None, False or a folder path"),
                   "folder of the decode-once cache: a folder, .beton, IDX.gz, CIFAR ... is "
                   "decoded once into a uint8 file there and memory-mapped by later runs and "
                   "by every torchrun process (default: $SIMCNE_CACHE/stores, else "
                   "~/.cache/simcne/stores; --no-cache: read into memory)",
                   dict(type=str, metavar="DIR"), free=True,
                 kind="None, False, str or path",
                 doc=("Where a path given to ``fit`` or ``transform`` is decoded once, as a "
                      "uint8 file that is memory-mapped (:mod:`simcne.data.cache`): the next run "
                      "of the same files and read settings maps it instead of decoding again, "
                      "and the processes of a torchrun job on one machine share one copy. None "
                      "is ``$SIMCNE_CACHE/stores`` (else ``$XDG_CACHE_HOME/simcne/stores``, "
                      "else ``~/.cache/simcne/stores``); False reads into memory. Arrays, "
                      "Datasets and memory-mapped files (uint8 ``.npy``, raw ``.beton``) are "
                      "used as they are.")),
    "callbacks": Param(none_or(Check(_callbacks, "a callable or a list of callables")),
                       free=True,
                 kind="callable, list of callables or None",
                 doc=("Called after every epoch as ``callback(stage, epoch, loss, model)``; a "
                      "truthy return stops training and keeps the result so far.")),
    "verbose": Param(Check(lambda v: isinstance(v, (bool, numbers.Integral)), "a bool or an int"),
                     free=True, flag="--quiet",
                 kind="bool or int",
                 doc=("Print one-line stage summaries (prefix ``[simcne]``) and show progress "
                      "bars.")),
}
for _name, _param in PARAMS.items():
    _param.name = _name

#: parameters a resumed run may change (they do not change what is trained)
FREE_PARAMS = tuple(n for n, p in PARAMS.items() if p.free)
#: parameters that may hold an nn.Module: a model file keeps its weights, not the module
MODULE_PARAMS = tuple(n for n, p in PARAMS.items() if p.module)
#: parameters only Python can give (no flag: their values are Python objects)
PYTHON_ONLY = tuple(n for n, p in PARAMS.items() if p.cli is None and p.flag is None)
#: parameters the command line gives, flag by flag
CLI_PARAMS = {n: p for n, p in PARAMS.items() if p.cli is not None}
#: parameters that take a list with a value per stage (:func:`per_stage`)
PER_STAGE_PARAMS = tuple(n for n, p in PARAMS.items() if _takes_per_stage(p.constraint))


def error(name: str, allowed: str, got) -> ValueError:
    """scikit-learn's wording: "The 'x' parameter of TSimCNE must be ... Got ... instead." """
    return ValueError(f"The '{name}' parameter of TSimCNE must be {allowed}. Got {got!r} "
                      "instead.")


def validate(params: dict) -> None:
    """Check every parameter against its constraint, then the rules between parameters.

    Raises a ValueError in scikit-learn's wording naming the first parameter that fails.
    """
    for name, param in PARAMS.items():
        value = params[name]
        if not param.constraint(value):
            raise error(name, param.constraint.text, value)
    _check_across(params)


def n_stages(total_epochs) -> int:
    return 1 if is_int(total_epochs) else len(total_epochs)


def _check_across(params: dict) -> None:
    """The rules that involve more than one parameter (or more than a value's type)."""
    from .augment import check_settings

    views = params["data_transform"]
    for i, view in enumerate(views if isinstance(views, (list, tuple)) else [views]):
        if isinstance(view, dict):
            check_settings(view, "data_transform" if isinstance(views, dict) else
                           f"data_transform[{i}]")
    epochs = params["total_epochs"]
    epochs = [epochs] if is_int(epochs) else list(epochs)
    for name in PER_STAGE_PARAMS:
        value = params[name]
        if isinstance(value, (list, tuple)) and len(value) < len(epochs):
            raise ValueError(
                f"The '{name}' parameter of TSimCNE needs a value for each of the "
                f"{len(epochs)} stages that total_epochs runs. Got {list(value)!r} instead.")
    _check_pretrained(params, epochs)
    warmup = params["warmup"]
    if warmup != "auto":
        per = list(warmup) if isinstance(warmup, (list, tuple)) else [warmup, 0, warmup]
        for i, (w, e) in enumerate(zip(per, epochs)):
            if w > e:
                raise ValueError(
                    f"The 'warmup' parameter of TSimCNE asks for {w} warm-up epochs in stage "
                    f"{i + 1}, which has only {e} epochs (total_epochs="
                    f"{params['total_epochs']!r}).")


def numpydoc(defaults: dict, indent: str = "    ") -> str:
    """The numpydoc "Parameters" entries of every parameter, in the table's order:
    ``name : kind, default=...`` and the description, wrapped (``defaults``: the
    signature's)."""
    import textwrap

    def shown(value) -> str:
        return f'"{value}"' if isinstance(value, str) else repr(value)

    out = []
    for name, param in PARAMS.items():
        out.append(f"{indent}{name} : {param.kind}, default={shown(defaults[name])}")
        if param.doc:
            out.append(textwrap.fill(param.doc, 92, initial_indent=indent * 2,
                                     subsequent_indent=indent * 2, break_long_words=False,
                                     break_on_hyphens=False))
    return "\n".join(out)


def _check_pretrained(params: dict, epochs: list) -> None:
    """backbone_weights, init and init_stage against each other and the other parameters."""
    weights, init = params["backbone_weights"], params["init"]
    if weights is not None and (params["model"] is not None
                                or not isinstance(params["backbone"], str)):
        given = "'model' is given" if params["model"] is not None else "'backbone' is a module"
        raise ValueError(
            "The 'backbone_weights' parameter of TSimCNE loads a file into a named backbone "
            f"(backbone='resnet18', ...), but {given}: load the weights into your module "
            f"(module.load_state_dict(...)) before passing it. Got {os.fspath(weights)!r} "
            "instead of None.")
    if init is not None and weights is not None:
        raise ValueError(
            "The 'backbone_weights' parameter of TSimCNE must be None when 'init' is given "
            f"(the init model file {os.fspath(init)!r} gives the whole network its "
            f"weights). Got {os.fspath(weights)!r} instead.")
    if params["init_stage"] == 3 and init is None:
        raise ValueError("The 'init_stage' parameter of TSimCNE is 3, which fine-tunes the "
                         "network of the model file 'init', but init is None. Got "
                         "init_stage=3 without init instead.")
    if params["init_stage"] == 3 and len(epochs) < 3:
        raise ValueError(
            "The 'total_epochs' parameter of TSimCNE needs 3 stages when init_stage=3 "
            "(stage 3 runs total_epochs[2] epochs from the init model; stages 1 and 2 "
            f"are skipped), e.g. [0, 0, 100]. Got {params['total_epochs']!r} instead.")
