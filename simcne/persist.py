"""Model files: what :meth:`TSimCNE.save` writes and :meth:`TSimCNE.load` reads, and
warm starts from them (``TSimCNE(init=...)``, :func:`load_init`).

A model file is a ``torch.save`` of one dict holding only plain data (str, int, float,
bool, None, lists, dicts) and tensors, so that it is read back with
``torch.load(..., weights_only=True)``: opening a model file never runs code from it.

Layout of format version 1::

    format            "simcne.TSimCNE"
    version           1
    simcne_version    the simcne that wrote it
    params            get_params() restricted to plain values
    module_params     names of parameters that were nn.Modules (pass them again at load)
    callable_params   names of parameters that were callables (not stored; None at load)
    tuple_params      names of parameters given as tuples (stored as lists)
    state_dict        the trained network's weights (after the stage-2 surgery), on CPU
    image_size        [H, W] the network sees;  in_channels: int
                      (the input module in front of the backbone, gray to RGB and
                      ``normalize``, has no saved state: it is rebuilt from params)
    labels            tensor, list of str, or None
    embedding         tensor (n, out_dim);  stage_embeddings: list of tensors
    loss_history      {"stage": tensor, "epoch": tensor, "loss": tensor}
"""

from __future__ import annotations

import numbers
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

FORMAT = "simcne.TSimCNE"
VERSION = 1
#: parameters whose value may be an nn.Module (simcne.params): the network is rebuilt from
#: them at load, so a module passed as one must be passed to load again
from .params import MODULE_PARAMS  # noqa: E402
_HISTORY_FIELDS = (("stage", np.int64), ("epoch", np.int64), ("loss", np.float64))


def _plain_or_callable(value) -> bool:
    """An item of a list parameter that a model file can stand for (data_transform's
    per-stage views: plain settings or the user's callables)."""
    if callable(value):
        return True
    try:
        _plain(value)
    except TypeError:
        return False
    return True


def _plain(value):
    """``value`` as plain data (numpy scalars to Python, tuples to lists), or raise TypeError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def _array_out(a):
    if a is None:
        return None
    a = np.asarray(a)
    if a.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(a))
    return [str(v) for v in a.tolist()]


def _array_in(a):
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return a.numpy()
    return np.asarray(a)


def model_state(est) -> dict:
    """The dict that :meth:`TSimCNE.save` writes for the fitted estimator ``est``."""
    from ._version import __version__

    if not hasattr(est, "embedding_") or not hasattr(est, "model_"):
        raise RuntimeError("This TSimCNE instance is not fitted yet. Call 'fit' before 'save'.")
    params, module_params, callable_params = {}, [], []
    tuple_params = [k for k, v in est.get_params().items() if isinstance(v, tuple)]
    for name, value in est.get_params().items():
        if isinstance(value, nn.Module) and name in MODULE_PARAMS:
            module_params.append(name)
            params[name] = None
            continue
        try:
            params[name] = _plain(value)
        except TypeError:
            if not callable(value) and not (isinstance(value, (list, tuple))
                                            and all(map(_plain_or_callable, value))):
                raise ValueError(
                    f"The '{name}' parameter of TSimCNE cannot be saved: expected plain data "
                    f"(numbers, strings, lists), an nn.Module or a callable, got "
                    f"{type(value).__name__}.") from None
            callable_params.append(name)
            params[name] = None
    state_dict = {k: v.detach().cpu().clone() for k, v in est.model_.state_dict().items()}
    history = est.loss_history_
    return {
        "format": FORMAT,
        "version": VERSION,
        "simcne_version": __version__,
        "params": params,
        "module_params": module_params,
        "callable_params": callable_params,
        "tuple_params": tuple_params,
        "state_dict": state_dict,
        "image_size": [int(s) for s in est.image_size_],
        "in_channels": int(est.in_channels_),
        "labels": _array_out(getattr(est, "labels_", None)),
        "embedding": _array_out(est.embedding_),
        "stage_embeddings": [_array_out(e) for e in est.stage_embeddings_],
        "loss_history": {f: torch.from_numpy(np.ascontiguousarray(history[f]))
                         for f, _ in _HISTORY_FIELDS},
    }


def save(est, path) -> None:
    """Write ``est`` to ``path`` atomically (see :meth:`TSimCNE.save`)."""
    from ._io import save_torch

    save_torch(model_state(est), path)


def read_model_file(path) -> dict:
    """Read a model file safely (``weights_only=True``) and check its format and version.

    Returns the stored dict (see the module docstring) with the arrays as numpy arrays and
    ``loss_history`` as a structured array; ``state_dict`` stays a dict of tensors. Use this
    to look at a model file without building its network (e.g. to plot the stages).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a simcne model file, or was written in a newer format version.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"The model file {os.fspath(path)!r} does not exist: expected a file written by "
            "TSimCNE.save (e.g. model.pt of 'simcne fit').")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError,
            AttributeError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"{os.fspath(path)!r} is not a simcne model file: expected a file written by "
            f"TSimCNE.save, got a file that torch.load(weights_only=True) cannot read (it is "
            f"no torch file, or holds objects other than tensors and plain data; "
            f"{type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = (f"format {state.get('format')!r}" if isinstance(state, dict)
               else f"a {type(state).__name__}")
        raise ValueError(
            f"{os.fspath(path)!r} is not a simcne model file: expected a dict with format "
            f"{FORMAT!r} (written by TSimCNE.save), got {got}.")
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{os.fspath(path)!r} is a damaged simcne model file: expected an "
                         f"int format version >= 1, got {version!r}.")
    if version > VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} was written in simcne model format version {version} (by "
            f"simcne {state.get('simcne_version', '?')}), newer than this simcne reads (up to "
            f"version {VERSION}). Upgrade simcne to load it.")
    missing = [k for k in ("params", "state_dict", "image_size", "in_channels", "embedding",
                           "stage_embeddings", "loss_history") if k not in state]
    if missing:
        raise ValueError(f"{os.fspath(path)!r} is a damaged simcne model file: it lacks "
                         f"{', '.join(missing)}.")
    out = dict(state)
    out["labels"] = _array_in(state.get("labels"))
    out["embedding"] = _array_in(state["embedding"])
    out["stage_embeddings"] = [_array_in(e) for e in state["stage_embeddings"]]
    hist = state["loss_history"]
    n = len(hist["loss"]) if "loss" in hist else 0
    rec = np.zeros(n, dtype=list(_HISTORY_FIELDS))
    for f, _ in _HISTORY_FIELDS:
        if f in hist:
            rec[f] = _array_in(hist[f])
    out["loss_history"] = rec
    return out


def load(cls, path, device="auto", **params):
    """Rebuild a fitted estimator of class ``cls`` from ``path`` (see :meth:`TSimCNE.load`)."""
    import copy

    from .devices import resolve_device
    from .models import make_model, replace_last_linear

    state = read_model_file(path)
    names = cls._get_param_names()
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"Invalid parameter(s) {unknown} for TSimCNE.load. Valid parameters "
                         f"are: {names}.")
    stored = {k: v for k, v in state["params"].items() if k in names}
    for k in state.get("tuple_params", []):
        if isinstance(stored.get(k), list):
            stored[k] = tuple(stored[k])
    missing = [k for k in state.get("module_params", []) if params.get(k) is None]
    if missing:
        raise ValueError(
            f"The model file {os.fspath(path)!r} was trained with an nn.Module as "
            f"{' and '.join(repr(m) for m in missing)}, which a model file does not store: "
            f"pass the same architecture again, e.g. TSimCNE.load(path, "
            f"{missing[0]}=<module>). Its weights are then read from the file.")
    for k, v in params.items():
        stored[k] = copy.deepcopy(v) if isinstance(v, nn.Module) else v
    est = cls(**stored)
    image_size = tuple(int(s) for s in state["image_size"])
    in_channels = int(state["in_channels"])
    p = est.get_params()
    # the input as in training (gray repeated to RGB, normalize) and, for a classification
    # network passed as backbone, the same classifier dropped; backbone_weights and init
    # only matter to fit: the file holds the trained weights
    model = make_model(p["backbone"], p["projection_head"], p["model"], in_channels=in_channels,
                       image_size=image_size, pretrain_out_dim=p["pretrain_out_dim"],
                       normalize=p["normalize"])
    out_dim = int(state["embedding"].shape[1])
    replace_last_linear(model, out_dim)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(
            f"The weights in {os.fspath(path)!r} do not fit the network built from its "
            f"parameters{' and the modules passed to load' if params else ''}: "
            f"{' '.join(line.strip() for line in first[:3])}") from None
    device = resolve_device(device)
    model = model.to(device)
    # channels_last weights, as the views: on CUDA tensor cores; on the CPU oneDNN's
    # convolutions then need no reorder (ResNet18, one thread: 1.18x a step against
    # NCHW weights with channels_last views)
    model = model.to(memory_format=torch.channels_last)
    model.eval()
    est.model_ = model
    est._device = device
    est.image_size_ = image_size
    est.in_channels_ = in_channels
    est.labels_ = state["labels"]
    est.embedding_ = state["embedding"]
    est.stage_embeddings_ = state["stage_embeddings"]
    est.loss_history_ = state["loss_history"]
    return est


def load_init(est, model, stage: int) -> str:
    """Give ``model`` the weights of the model file ``est.init`` (a warm start).

    Checks the file against the fit: the images' channels and size (``est.in_channels_``,
    ``est.image_size_``), the architecture (``backbone``, ``projection_head``, ``model``:
    names, or modules on both sides), ``normalize`` and, for ``stage`` 3, ``out_dim``; then
    every tensor's name and shape. ``stage`` 1 loads all but the head's last layer (the
    file's is the ``out_dim`` one); ``stage`` 3 loads everything into ``model`` after its
    stage-2 surgery. Returns one line saying what was done.

    Raises
    ------
    ValueError
        Naming 'init' and the file, and what differs.
    """
    from .models import SimCNEModel, last_linear, resolve_normalize

    path = os.fspath(est.init)
    where = f"The 'init' model file {path!r}"
    try:
        state = read_model_file(est.init)
    except (ValueError, OSError) as e:
        raise ValueError(f"The 'init' parameter of TSimCNE must name a simcne model file "
                         f"(written by TSimCNE.save): {e}") from None
    theirs_params = state["params"]
    modules = set(state.get("module_params", []))
    if int(state["in_channels"]) != est.in_channels_:
        raise ValueError(f"{where} was trained on {state['in_channels']}-channel images, "
                         f"but X has {est.in_channels_}-channel images.")
    size = tuple(int(v) for v in state["image_size"])
    if size != tuple(est.image_size_):
        raise ValueError(
            f"{where} was trained on images of {size[0]}x{size[1]}, but this fit sees "
            f"{est.image_size_[0]}x{est.image_size_[1]}: pass image_size={list(size)} to "
            "train at its size.")
    for name in MODULE_PARAMS:
        ours, theirs = getattr(est, name), theirs_params.get(name)
        if isinstance(ours, nn.Module) or name in modules:
            if isinstance(ours, nn.Module) != (name in modules):
                raise ValueError(
                    f"{where} was trained with {name}="
                    f"{'an nn.Module' if name in modules else repr(theirs)}, but this "
                    f"TSimCNE has {name}="
                    f"{'an nn.Module' if isinstance(ours, nn.Module) else repr(ours)}.")
        elif ours != theirs:
            raise ValueError(f"{where} was trained with {name}={theirs!r}, but this "
                             f"TSimCNE has {name}={ours!r}.")
    if resolve_normalize(theirs_params.get("normalize")) != resolve_normalize(est.normalize):
        raise ValueError(
            f"{where} was trained with normalize={theirs_params.get('normalize')!r}, but "
            f"this TSimCNE has normalize={est.normalize!r}: its network expects that input.")
    out_dim = int(state["embedding"].shape[1])
    if stage == 3 and out_dim != est.out_dim:
        raise ValueError(f"{where} maps to {out_dim} dimensions, but this TSimCNE has "
                         f"out_dim={est.out_dim} (init_stage=3 fine-tunes its {out_dim}-D "
                         "layer).")
    own, weights = model.state_dict(), state["state_dict"]
    skip = set()
    if stage == 1:  # the file's last layer is the out_dim one: stage 1 gets a fresh one
        _, _, last = last_linear(model.projection_head if isinstance(model, SimCNEModel)
                                 else model)
        skip = {k for k, p in model.named_parameters() if p is last.weight or p is last.bias}
    differ = [k for k in own if k not in skip and (k not in weights
                                                  or weights[k].shape != own[k].shape)]
    differ += [k for k in weights if k not in own]
    if differ:
        def shape(d, k):
            return tuple(d[k].shape) if k in d else "absent"
        first = ", ".join(f"{k} (the file's {shape(weights, k)}, here {shape(own, k)})"
                          for k in differ[:3])
        raise ValueError(f"{where} holds a network of another architecture than this "
                         f"TSimCNE's: {len(differ)} tensors differ, e.g. {first}.")
    model.load_state_dict({k: v for k, v in weights.items() if k not in skip}, strict=False)
    n = len(state["embedding"])
    return f"init {path!r} (trained on {n} images): " + (
        "stage 1 starts from its backbone and projection head, with a fresh "
        f"{est.pretrain_out_dim}-D last layer" if stage == 1 else
        f"stages 1 and 2 are skipped; stage 3 fine-tunes its whole network, "
        f"{out_dim}-D layer included")

