"""The command line's flags for TSimCNE's parameters, made from the one table.

Every parameter with command-line keywords in :data:`simcne.params.PARAMS` gets a flag
``--name-with-dashes``: its type, nargs and metavar from the table, its help from the table
and its default from the ``TSimCNE`` signature. A flag not given is not passed, so the
estimator's own default applies. The augmentation's settings (``data_transform`` as a
dict) get one flag each, their defaults read from :class:`simcne.augment.Augment`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import textwrap

from .params import CLI_PARAMS

#: the parameter that ``--quiet`` turns off (the command shows progress by default)
VERBOSE_FLAG = "verbose"

#: the augmentation's settings, each a key of ``TSimCNE(data_transform={...})``:
#: name -> (argparse keywords, help without the default)
AUGMENT_FLAGS = {
    "crop_scale": (dict(type=float, nargs=2, metavar=("LO", "HI")),
                   "area of the random crop, as a fraction of the image"),
    "crop_ratio": (dict(type=float, nargs=2, metavar=("LO", "HI")),
                   "aspect ratio (width / height) of the crop"),
    "flip_p": (dict(type=float, metavar="P"), "probability of a horizontal flip"),
    "jitter": (dict(type=float, nargs=4, metavar=("B", "C", "S", "H")),
               "colour jitter: brightness, contrast, saturation, hue"),
    "jitter_p": (dict(type=float, metavar="P"), "probability of the colour jitter"),
    "grayscale_p": (dict(type=float, metavar="P"), "probability of turning a view gray"),
}


def flag(name: str) -> str:
    """``"total_epochs"`` -> ``"--total-epochs"``."""
    return "--" + name.replace("_", "-")


def _show_default(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)


def add_param_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag for each TSimCNE parameter in the table, ``--quiet``, and the
    augmentation's flags."""
    from .augment import Augment
    from .estimator import TSimCNE
    from .models import BACKBONES

    defaults = {k: p.default for k, p in inspect.signature(TSimCNE).parameters.items()}
    group = parser.add_argument_group("TSimCNE parameters", textwrap.fill(
        "One flag per parameter of simcne.TSimCNE (see its docstring); the defaults are "
        "TSimCNE's. Python-only (their values are Python objects): "
        "model, callbacks, data_transform as a callable (as a dict of augmentation settings "
        "it has the flags below), and modules as backbone or projection_head.", 78))
    for name, param in CLI_PARAMS.items():
        text = param.help.format(backbones=", ".join(sorted(BACKBONES)))
        group.add_argument(flag(name), dest=name, default=argparse.SUPPRESS,
                           help=f"{text} (default: {_show_default(defaults[name])})",
                           **param.cli)
    group.add_argument("--quiet", action="store_true",
                       help="no progress output (TSimCNE's verbose=False; the command "
                            "shows stage summaries and progress bars by default)")
    aug = parser.add_argument_group("augmentation (TSimCNE's data_transform as a dict)",
                                    textwrap.fill(
        "Change some settings of the paper's augmentation and keep the others; e.g. "
        "--flip-p 0 --crop-scale 0.7 1 for digits or letters, which a mirror or a small crop "
        "turns into another class.", 78))
    paper = {f.name: f.default for f in dataclasses.fields(Augment)}
    for name, (kwargs, text) in AUGMENT_FLAGS.items():
        aug.add_argument(flag(name), dest="augment_" + name, default=argparse.SUPPRESS,
                         help=f"{text} (default: {_show_default(paper[name])})", **kwargs)


def params_from_args(args) -> dict:
    """The TSimCNE parameters given on the command line (flags not given are left out)."""
    params = {}
    for name, param in CLI_PARAMS.items():
        if name in vars(args):
            value = getattr(args, name)
            params[name] = param.convert(value) if param.convert is not None else value
    settings = {name: getattr(args, "augment_" + name) for name in AUGMENT_FLAGS
                if "augment_" + name in vars(args)}
    if settings:
        params["data_transform"] = {k: tuple(v) if isinstance(v, list) else v
                                    for k, v in settings.items()}
    params[VERBOSE_FLAG] = not getattr(args, "quiet", False)
    return params


def with_settings(view, settings: dict):
    """A preset's ``data_transform`` with the augmentation flags' ``settings`` changed in
    it, in every stage's view where it has one per stage: the flags change only what they
    name."""
    if isinstance(view, (list, tuple)):
        return [with_settings(v, settings) for v in view]
    return {**(view or {}), **settings}


def with_flag(message: str) -> str:
    """Put the flag before an estimator message about a parameter ("The 'lr' parameter
    ..." -> "--lr: The 'lr' parameter ...")."""
    m = re.search(r"The '(\w+)' parameter", message)
    if m and m.group(1) in CLI_PARAMS:
        return f"{flag(m.group(1))}: {message}"
    return message
