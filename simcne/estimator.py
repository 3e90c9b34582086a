"""TSimCNE: the three-stage t-SimCNE estimator."""

from __future__ import annotations

import copy
import math
import numbers
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import data as _data
from . import dist
from .augment import Augment, check_settings, resize
from .devices import gpu_free_memory, resolve_device, store_fits
from .checkpoint import (_test_hook, load_checkpoint, remove_stale_temporaries,
                         save_checkpoint, training_params)
from .losses import METRICS, info_nce
from .models import (BACKBONES, HEADS, check_model, load_backbone_weights, make_model,
                     replace_last_linear, set_trainable)
from .train import (PRECISIONS, PREFIX, Stage, TrainingDiverged, autocast_for, embed,
                    step_memory, train_stage)

_STAGE_NAMES = ("pretraining in pretrain_out_dim", "training the new last layer", "fine-tuning")


def _err(param: str, allowed: str, got) -> ValueError:
    return ValueError(f"The '{param}' parameter of TSimCNE must be {allowed}. Got {got!r} instead.")


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _per_stage(value, n: int, param: str):
    """A scalar or a list of 1 to 3 values -> a list with one entry per stage run."""
    if isinstance(value, (list, tuple)):
        if len(value) < n:
            raise ValueError(
                f"The '{param}' parameter of TSimCNE needs a value for each of the {n} stages "
                f"that total_epochs runs. Got {list(value)!r} instead."
            )
        return list(value[:n])
    return None


class TSimCNE:
    """t-SimCNE: a contrastive network that maps images to ``out_dim`` dimensions.

    Training runs up to three stages (Böhm, Berens & Kobak, ICLR 2023): (1) the whole network
    with a ``pretrain_out_dim``-dimensional output; (2) the head's last layer is replaced by a
    fresh ``Linear(hidden, out_dim)`` with N(0, 1) weights and trained alone, the rest frozen;
    (3) everything is trained at the stage-1 learning rate / 1000.

    Under ``torchrun --nproc_per_node=N`` (several GPUs or machines), ``fit`` trains with
    DistributedDataParallel on every process, with ``batch_size`` as the global batch, the
    negatives of every process, BatchNorm over the global batch, and the single-process
    result (to float rounding); only rank 0 prints and writes (see :mod:`simcne.dist`).

    Parameters
    ----------
    model : nn.Module or None, default=None
        A whole network mapping images to z (or to ``(z, h)``). When given, ``backbone`` and
        ``projection_head`` are ignored. Its last ``nn.Linear`` is replaced in stage 2.
    loss : {"infonce"}, default="infonce"
        The contrastive loss.
    metric : {None, "euclidean", "cosine", "gauss"}, default=None
        The similarity of the loss. None and "euclidean" give t-SimCNE's Cauchy kernel
        ``1/(1 + d^2)``; "cosine" gives SimCLR's loss with ``temperature``; "gauss" the
        kernel ``exp(-d^2)``.
    backbone : str or nn.Module, default="resnet18"
        A name from ``simcne.models.BACKBONES`` or a module mapping images to features. A
        classification network (torchvision's ResNet, MobileNetV3 or EfficientNet, a timm
        model, any module whose output comes from an ``nn.Linear``) loses its classifier:
        that Linear (with the dropout right before it) is replaced by ``nn.Identity`` in a
        copy, and ``verbose`` says what was dropped. ``fit`` trains copies of the modules it
        is given: the module passed here is never changed (the trained network is
        ``model_``). One-channel images given to a module whose first ``nn.Conv2d`` takes
        3 channels are repeated to 3.
    backbone_weights : str, path or None, default=None
        A ``state_dict`` file (read with ``torch.load(..., weights_only=True)``) loaded into
        the named ``backbone`` before training: torchvision's or timm's weights of the same
        architecture (their names are simcne's), a simcne model file, or a training
        checkpoint wrapping one (``{"state_dict": ...}``, ``{"model": ...}``). Tensors of
        another shape (torchvision's 7x7 ResNet stem against the SimCLR 3x3 one) stay as
        initialised and the file's classifier is left out, said in one warning line; a file
        that fits less than half of the backbone's weights is a ValueError.
    projection_head : {"mlp", "linear"} or nn.Module, default="mlp"
        "mlp" is ``Linear(width, 1024) - ReLU - Linear(1024, pretrain_out_dim)``, with
        ``width`` the backbone's output width.
    init : str, path or None, default=None
        A model file written by :meth:`save` to start from (a warm start): its weights, not
        its other parameters. The file must be of the same architecture (``backbone``,
        ``projection_head`` or ``model``) and ``normalize``, trained on images of the same
        size and channels as this fit's (``image_size`` brings X to its size); otherwise a
        ValueError names the file and what differs.
    init_stage : {1, 3}, default=1
        Where ``init``'s weights come in. 1: stage 1 starts from its backbone and
        projection head, except the head's last layer (the file holds the ``out_dim`` one;
        stage 1 gets a fresh ``pretrain_out_dim`` one); with ``total_epochs=[0, n2, n3]``
        the old features get a new map. 3: stages 1 and 2 are skipped and stage 3
        (``total_epochs[2]`` epochs at the stage-3 rate) fine-tunes the file's whole
        network, its ``out_dim`` layer included; ``stage_embeddings_`` then holds one
        embedding, the final one.
    data_transform : dict, callable or None, default=None
        The random view. None is the paper's augmentation, :class:`simcne.augment.Augment`
        at ``image_size``. A dict changes some of its settings and keeps the others, e.g.
        ``{"flip_p": 0, "crop_scale": (0.7, 1)}`` for images that a mirror or a small crop
        turns into another class (digits, letters); its keys are ``crop_scale``,
        ``crop_ratio``, ``flip_p``, ``jitter``, ``jitter_p`` and ``grayscale_p``. Being
        plain data, it is stored in model files and checkpoints. A callable receives a float batch (B, C, H, W) in [0, 1] on the
        training device and returns one view (B, C, *image_size); it is called twice a batch.
    normalize : None, "imagenet" or (mean, std), default=None
        Per-channel normalisation ``(x - mean) / std`` of the images in [0, 1], on the
        device, after the augmentation in training and before the network in
        :meth:`transform`. "imagenet" is ImageNet's mean (0.485, 0.456, 0.406) and std
        (0.229, 0.224, 0.225), what ImageNet-pretrained networks expect. ``mean`` and
        ``std`` are each a float (every channel) or one float per channel the network
        receives. Stored in model files and checkpoints.
    total_epochs : int or list of int, default=(1000, 50, 450)
        Epochs of each stage. An int or a shorter list runs only the first stages: with one
        stage the output is that of the fresh, untrained ``out_dim`` layer (the guide's first
        panel); with two, the network after stage 2. Zeros are allowed.
    batch_size : int, default=512
        Images per step (each gives two views). Capped at the dataset size. Under torchrun
        it is the global batch, shared out over the processes: a multiple of their number.
    out_dim : int, default=2
        Dimension of the final embedding.
    pretrain_out_dim : int, default=128
        Output dimension in stage 1.
    optimizer : {"sgd", "adam", "adamw"}, default="sgd"
    lr : "auto_batch", float or list of float, default="auto_batch"
        "auto_batch" is ``0.03 * batch_size / 256`` for stages 1 and 2 and 1/1000 of that for
        stage 3. A float is used likewise (stage 3 at 1/1000); a list gives each stage's rate.
    warmup : "auto", int or list of int, default="auto"
        Warm-up epochs per stage. "auto" is 10, 0 and 10 epochs, each capped at its stage's
        length. An int is used for stages 1 and 3 (stage 2 has none); a list gives each.
    momentum : float, default=0.9
    weight_decay : float, default=5e-4
    grad_clip : float or None, default=4.0
        Gradients are clipped to [-grad_clip, grad_clip] element-wise. None disables it.
    temperature : float, default=0.5
        Temperature of the "cosine" metric.
    exaggeration : float or list of float, default=1.0
        Weight of the positive pair's term in the loss, ``-exaggeration * log k(z_i, z_pos)
        + log sum_{j != i} k(z_i, z_j)``: 1 is InfoNCE (the paper's); more pulls each view
        harder towards its pair than the batch pushes it away, which, as exaggeration does
        for t-SNE, makes tighter, more separated clusters (Böhm, Berens & Kobak,
        "Attraction-repulsion spectrum in neighbor embeddings", JMLR 2022). A float applies to stages 2 and 3 (the
        ``out_dim`` stages), stage 1 keeping 1; a list gives each stage's.
    out_layer_std : float, default=1.0
        Standard deviation of the fresh ``out_dim`` layer's weights at the start of stage 2
        (the paper's N(0, 1)). The output's scale is proportional to it; a smaller one, with
        a larger stage-3 rate, let short runs on small data contract into clusters sooner.
    image_size : None, int or (int, int), default=None
        Size the network sees. None uses the stored size of the training images.
    random_state : int or None, default=None
        Seed for initialisation, shuffling and augmentation. The same seed gives the same
        embedding on CPU.
    device : "auto", str or torch.device, default="auto"
        "auto" is CUDA when available, else CPU. "auto" and "cuda" become
        ``cuda:<the current device>`` (under torchrun ``cuda:LOCAL_RANK``).
    compile : bool, default=False
        Wrap the network in ``torch.compile`` for training. On CPU its backend builds C++
        kernels: without a C++ compiler ($CXX or g++) ``fit`` raises a ValueError before
        training. Measured on a 2-core CPU: about 4 % faster epochs after about 12 s of
        compiling each stage, so it is off by default.
    precision : {"auto", "bf16", "fp32"}, default="auto"
        Arithmetic of the network's forward passes (training and transform). "auto" is bf16
        autocast on CUDA and on CPUs with native bf16 instructions (AVX512-BF16 or AMX-BF16,
        detected by :func:`simcne.train.cpu_has_native_bf16`), fp32 elsewhere; "bf16" is
        bf16 autocast on any device (emulated, and much slower than fp32, on CPUs without
        native bf16); "fp32" never autocasts. Autocast covers the backbone only: the
        projection head, the loss and the coordinates are fp32. Under "fp32" on CUDA,
        torch's TF32 settings apply as they are (by default convolutions use TF32 and
        matrix products do not; ``torch.backends.cudnn.allow_tf32 = False`` for full fp32).
    checkpoint : str, path or None, default=None
        A file to keep the run in while it trains: written atomically every
        ``checkpoint_every`` epochs and at the end of each stage, removed when ``fit``
        completes. When it exists at the start of ``fit`` (a crashed or interrupted run with
        the same parameters and data), training goes on from it instead of starting over;
        on CPU with the same thread count the result equals an uninterrupted run's. A file
        from a run with other parameters or data is refused with a ValueError.
    checkpoint_every : int, default=10
        Epochs between checkpoints.
    callbacks : callable, list of callables or None, default=None
        Called after every epoch as ``callback(stage, epoch, loss, model)``; a truthy return
        stops training and keeps the result so far.
    verbose : bool or int, default=False
        Print one-line stage summaries (prefix ``[simcne]``) and show progress bars.

    Attributes
    ----------
    model_ : nn.Module
        The trained network; ``model_(x)`` returns ``(z, h)``.
    embedding_ : ndarray of shape (n_samples, out_dim)
        The training images' final embedding.
    stage_embeddings_ : list of ndarray
        The training images' embedding at the end of stage 1 (through the fresh, untrained
        ``out_dim`` layer), of stage 2 and of stage 3, for the stages that ran.
    loss_history_ : ndarray, structured with fields ``stage``, ``epoch``, ``loss``
        The mean loss of every epoch.
    labels_ : ndarray or None
        Labels found with the training data.
    image_size_ : (int, int)
    in_channels_ : int
    resumed_from_ : (int, int) or None
        ``(stage, epoch)`` of the checkpoint this fit went on from, or None.

    Examples
    --------
    >>> from simcne import TSimCNE
    >>> X = load_images()  # doctest: +SKIP
    >>> Y = TSimCNE(total_epochs=[400, 25, 75]).fit_transform(X)  # doctest: +SKIP
    """

    def __init__(
        self,
        model=None,
        loss="infonce",
        metric=None,
        backbone="resnet18",
        backbone_weights=None,
        projection_head="mlp",
        init=None,
        init_stage=1,
        data_transform=None,
        normalize=None,
        total_epochs=(1000, 50, 450),
        batch_size=512,
        out_dim=2,
        pretrain_out_dim=128,
        optimizer="sgd",
        lr="auto_batch",
        warmup="auto",
        momentum=0.9,
        weight_decay=5e-4,
        grad_clip=4.0,
        temperature=0.5,
        exaggeration=1.0,
        out_layer_std=1.0,
        image_size=None,
        random_state=None,
        device="auto",
        compile=False,
        precision="auto",
        checkpoint=None,
        checkpoint_every=10,
        callbacks=None,
        verbose=False,
    ):
        self.model = model
        self.loss = loss
        self.metric = metric
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.projection_head = projection_head
        self.init = init
        self.init_stage = init_stage
        self.data_transform = data_transform
        self.normalize = normalize
        self.total_epochs = total_epochs
        self.batch_size = batch_size
        self.out_dim = out_dim
        self.pretrain_out_dim = pretrain_out_dim
        self.optimizer = optimizer
        self.lr = lr
        self.warmup = warmup
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.temperature = temperature
        self.exaggeration = exaggeration
        self.out_layer_std = out_layer_std
        self.image_size = image_size
        self.random_state = random_state
        self.device = device
        self.compile = compile
        self.precision = precision
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.callbacks = callbacks
        self.verbose = verbose

    # -- scikit-learn's estimator protocol ------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        import inspect

        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> "TSimCNE":
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for TSimCNE. Valid parameters are: {valid}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = []
        for k, v in self.get_params().items():
            d = defaults[k]
            try:
                same = v is d or (type(v) is type(d) and bool(v == d))
            except Exception:
                same = False
            if not same:
                changed.append(f"{k}={v!r}")
        return f"TSimCNE({', '.join(changed)})"

    # -- validation -------------------------------------------------------------------------
    def _validate_params(self) -> None:
        if self.model is not None and not isinstance(self.model, nn.Module):
            raise _err("model", "None or a torch.nn.Module", self.model)
        if self.loss != "infonce":
            raise _err("loss", "'infonce'", self.loss)
        if self.metric is not None and self.metric not in METRICS:
            raise _err("metric", f"None or one of {list(METRICS)}", self.metric)
        if not isinstance(self.backbone, nn.Module) and self.backbone not in BACKBONES:
            raise _err("backbone", f"an nn.Module or one of {sorted(BACKBONES)}", self.backbone)
        if not isinstance(self.projection_head, nn.Module) and self.projection_head not in HEADS:
            raise _err("projection_head", f"an nn.Module or one of {list(HEADS)}",
                       self.projection_head)
        self._validate_pretrained()
        if isinstance(self.data_transform, dict):
            check_settings(self.data_transform)
        elif self.data_transform is not None and not callable(self.data_transform):
            raise _err("data_transform", "None, a dict of augmentation settings or a "
                       "callable taking a batch of images", self.data_transform)
        epochs = self.total_epochs
        if _is_int(epochs):
            epochs = [epochs]
        if (not isinstance(epochs, (list, tuple)) or not 1 <= len(epochs) <= 3
                or not all(_is_int(e) and e >= 0 for e in epochs)):
            raise _err("total_epochs", "an int >= 0 or a list of 1 to 3 ints >= 0",
                       self.total_epochs)
        n_stages = len(epochs)
        if self.init_stage == 3 and n_stages < 3:
            raise ValueError(
                "The 'total_epochs' parameter of TSimCNE needs 3 stages when init_stage=3 "
                "(stage 3 runs total_epochs[2] epochs from the init model; stages 1 and 2 "
                f"are skipped), e.g. [0, 0, 100]. Got {self.total_epochs!r} instead.")
        for name in ("batch_size", "out_dim", "pretrain_out_dim"):
            value, low = getattr(self, name), (2 if name == "batch_size" else 1)
            if not _is_int(value) or value < low:
                raise _err(name, f"an int >= {low}", value)
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise _err("optimizer", "one of ['sgd', 'adam', 'adamw']", self.optimizer)
        lr = self.lr
        lr_list = _per_stage(lr, n_stages, "lr")
        if not (lr == "auto_batch" or (_is_real(lr) and lr > 0)
                or (lr_list is not None and all(_is_real(v) and v > 0 for v in lr_list))):
            raise _err("lr", "'auto_batch', a float > 0 or a list of floats > 0, one per stage",
                       lr)
        wu = self.warmup
        wu_list = _per_stage(wu, n_stages, "warmup")
        if not (wu == "auto" or (_is_int(wu) and wu >= 0)
                or (wu_list is not None and all(_is_int(v) and v >= 0 for v in wu_list))):
            raise _err("warmup", "'auto', an int >= 0 or a list of ints >= 0, one per stage", wu)
        if wu_list is not None:
            for i, (w, e) in enumerate(zip(wu_list, epochs)):
                if w > e:
                    raise ValueError(
                        f"The 'warmup' parameter of TSimCNE asks for {w} warm-up epochs in stage "
                        f"{i + 1}, which has only {e} epochs (total_epochs={self.total_epochs!r})."
                    )
        if not (_is_real(self.momentum) and 0 <= self.momentum < 1):
            raise _err("momentum", "a float in [0, 1)", self.momentum)
        if not (_is_real(self.weight_decay) and self.weight_decay >= 0):
            raise _err("weight_decay", "a float >= 0", self.weight_decay)
        if self.grad_clip is not None and not (_is_real(self.grad_clip) and self.grad_clip > 0):
            raise _err("grad_clip", "None or a float > 0", self.grad_clip)
        if not (_is_real(self.temperature) and self.temperature > 0):
            raise _err("temperature", "a float > 0", self.temperature)
        ex = self.exaggeration
        ex_list = _per_stage(ex, n_stages, "exaggeration")
        def finite_positive(v):
            return _is_real(v) and math.isfinite(v) and v > 0

        if not (finite_positive(ex)
                or (ex_list is not None and all(finite_positive(v) for v in ex_list))):
            raise _err("exaggeration", "a float > 0 or a list of floats > 0, one per stage", ex)
        if not finite_positive(self.out_layer_std):
            raise _err("out_layer_std", "a float > 0", self.out_layer_std)
        size = self.image_size
        if size is not None:
            ok = (_is_int(size) and size > 0) or (
                isinstance(size, (list, tuple)) and len(size) == 2
                and all(_is_int(s) and s > 0 for s in size))
            if not ok:
                raise _err("image_size", "None, an int > 0 or a pair (height, width) of ints > 0",
                           size)
        if self.random_state is not None and not _is_int(self.random_state):
            raise _err("random_state", "None or an int", self.random_state)
        if not (self.device == "auto" or isinstance(self.device, (str, torch.device))):
            raise _err("device", "'auto', a device name such as 'cpu' or 'cuda', or a "
                       "torch.device", self.device)
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise _err("device", "'auto', a device name such as 'cpu' or 'cuda', or a "
                           "torch.device", self.device) from None
        if not isinstance(self.compile, bool):
            raise _err("compile", "a bool", self.compile)
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise _err("precision", f"one of {list(PRECISIONS)}", self.precision)
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise _err("checkpoint", "None or a file path", self.checkpoint)
        if self.checkpoint is not None and Path(self.checkpoint).is_dir():
            raise _err("checkpoint", "None or a file path (not a folder)", self.checkpoint)
        if not _is_int(self.checkpoint_every) or self.checkpoint_every < 1:
            raise _err("checkpoint_every", "an int >= 1", self.checkpoint_every)
        cbs = self.callbacks
        if cbs is not None and not callable(cbs) and not (
                isinstance(cbs, (list, tuple)) and all(callable(c) for c in cbs)):
            raise _err("callbacks", "None, a callable or a list of callables", cbs)
        if not isinstance(self.verbose, (bool, numbers.Integral)):
            raise _err("verbose", "a bool or an int", self.verbose)

    def _validate_pretrained(self) -> None:
        """backbone_weights, init, init_stage and normalize."""
        def path_of(name, what):
            value = getattr(self, name)
            if value is None:
                return None
            if not isinstance(value, (str, os.PathLike)):
                raise _err(name, f"None or the path of {what}", value)
            if not Path(value).is_file():
                raise _err(name, f"None or the path of {what} (no such file)", os.fspath(value))
            return value

        weights = path_of("backbone_weights", "a state_dict file")
        if weights is not None and (self.model is not None or not isinstance(self.backbone, str)):
            given = "'model' is given" if self.model is not None else "'backbone' is a module"
            raise ValueError(
                "The 'backbone_weights' parameter of TSimCNE loads a file into a named backbone "
                f"(backbone='resnet18', ...), but {given}: load the weights into your module "
                f"(module.load_state_dict(...)) before passing it. Got {os.fspath(weights)!r} "
                "instead of None.")
        init = path_of("init", "a model file written by TSimCNE.save")
        if init is not None and weights is not None:
            raise ValueError(
                "The 'backbone_weights' parameter of TSimCNE must be None when 'init' is given "
                f"(the init model file {os.fspath(init)!r} gives the whole network its "
                f"weights). Got {os.fspath(weights)!r} instead.")
        if not _is_int(self.init_stage) or self.init_stage not in (1, 3):
            raise _err("init_stage", "1 (stage 1 starts from init's weights) or 3 (stage 3 "
                       "fine-tunes init's whole network)", self.init_stage)
        if self.init_stage == 3 and init is None:
            raise ValueError("The 'init_stage' parameter of TSimCNE is 3, which fine-tunes the "
                             "network of the model file 'init', but init is None. Got "
                             "init_stage=3 without init instead.")
        if not _normalize_ok(self.normalize):
            raise _err("normalize", "None, 'imagenet' or a pair (mean, std), each a float or a "
                       "list of floats (one per channel), std > 0", self.normalize)

    # -- resolved settings (private; parameters stay as given) ----------------------------
    def _resolve(self, store) -> None:
        if self.device != "auto":
            _check_device_exists(torch.device(self.device), self.device)
        device = resolve_device(self.device)  # "cuda" -> "cuda:<index>", one name throughout
        if self.compile and device.type == "cpu":
            _check_cpp_compiler()
        self._device = dist.init_from_env(device)  # joins torchrun's processes, if any
        epochs = [self.total_epochs] if _is_int(self.total_epochs) else list(self.total_epochs)
        self._epochs = epochs
        n_stages = len(epochs)
        if len(store) < 2:
            raise ValueError(
                f"X holds {len(store)} image(s): expected at least 2, since t-SimCNE "
                "contrasts each image with the others as negatives."
            )
        w = dist.world_size()
        if self.batch_size % w:
            raise _err("batch_size", f"a multiple of the number of processes ({w}) under "
                       "torchrun, as it is the global batch", self.batch_size)
        self._batch_size = min(self.batch_size, len(store) - len(store) % w)
        if self._batch_size < self.batch_size and dist.is_main():
            warnings.warn(
                f"batch_size={self.batch_size} is larger than the dataset ({len(store)} images); "
                f"using batches of {self._batch_size}.", stacklevel=3)
        if self.lr == "auto_batch":
            base = 0.03 * self._batch_size / 256
            lrs = [base, base, base / 1000]
        elif _is_real(self.lr):
            lrs = [self.lr, self.lr, self.lr / 1000]
        else:
            lrs = list(self.lr)
        self._lrs = lrs[:n_stages]
        if self.warmup == "auto":
            wus = [min(10, epochs[0]), 0, min(10, epochs[2]) if n_stages > 2 else 0]
        elif _is_int(self.warmup):
            wus = [self.warmup, 0, self.warmup]
            for i in (0, 2):
                if i < n_stages and wus[i] > epochs[i]:
                    raise ValueError(
                        f"The 'warmup' parameter of TSimCNE asks for {wus[i]} warm-up epochs in "
                        f"stage {i + 1}, which has only {epochs[i]} epochs.")
        else:
            wus = list(self.warmup)
        self._warmups = wus[:n_stages]
        ex = self.exaggeration
        exs = [1.0, float(ex), float(ex)] if _is_real(ex) else [float(v) for v in ex]
        self._exaggerations = exs[:n_stages]
        if self.image_size is None:
            self.image_size_ = store.image_size
        elif _is_int(self.image_size):
            self.image_size_ = (self.image_size, self.image_size)
        else:
            self.image_size_ = tuple(int(s) for s in self.image_size)
        self.in_channels_ = store.channels
        self._metric = self.metric or "euclidean"
        self._seed = (int(self.random_state) if self.random_state is not None  # rank 0's
                      else dist.on_main(lambda: int(np.random.SeedSequence().generate_state(1)[0])))
        self._verbose = int(self.verbose) if dist.is_main() else 0

    # -- fit --------------------------------------------------------------------------------
    def fit(self, X, y=None) -> "TSimCNE":
        """Train on images X (array, Dataset, list of images or path); returns self.

        Raises
        ------
        ValueError
            For a bad parameter or input (the message names it), for a ``batch_size`` whose
            training step cannot fit in the available memory (CPU), and as
            :class:`simcne.TrainingDiverged` when the loss or the weights become NaN or
            infinite: its message names the stage, the epoch and the learning rate and the
            checkpoint kept (the last good one); ``embedding_`` is then not set, and
            ``model_`` holds the checkpoint's weights where they fit the network.
        simcne._io.WriteError
            An ``OSError`` naming the checkpoint file when it cannot be written (full disk,
            read-only folder); the previous checkpoint is left as it was.
        """
        self._validate_params()
        store = _data.load(X, y, **_size_hint(X, self.image_size))
        self._resolve(store)
        self._resume = None
        self.resumed_from_ = None
        if self.checkpoint is not None:
            dist.on_main(remove_stale_temporaries, self.checkpoint)  # left by a kill mid-write
            # rank 0 reads it and hands it to the others (no shared file system needed)
            self._resume = dist.on_main(load_checkpoint, self.checkpoint, training_params(self),
                                        len(store))
            if self._resume is not None:
                self.resumed_from_ = (int(self._resume["stage"]), int(self._resume["epoch"]))
                self._seed = self._resume["seed"]
                if self._verbose:
                    print(f"{PREFIX} going on from the checkpoint {os.fspath(self.checkpoint)!r}: "
                          f"stage {self._resume['stage']}, epoch {self._resume['epoch']} done",
                          file=sys.stderr, flush=True)
        device = self._device
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            # torch's global generator (custom data_transforms, stochastic depth): the seed
            # on rank 0, one derived from it on the other ranks; the model is rank 0's
            torch.manual_seed(_rank_seed(self._seed))
            with dist.explain_timeouts():
                self._fit(store, device)
        return self

    def _fit(self, store, device) -> None:
        # fit trains copies of the modules it is given: training, the stage-2 surgery and a
        # dropped classifier leave the user's objects as they were, and a second fit starts
        # where the first did
        given = [copy.deepcopy(v) if isinstance(v, nn.Module) else v
                 for v in (self.backbone, self.projection_head, self.model)]
        say = None
        if self._verbose:
            def say(line):
                print(f"{PREFIX} {line}", file=sys.stderr, flush=True)
        model = make_model(*given, in_channels=self.in_channels_, image_size=self.image_size_,
                           pretrain_out_dim=self.pretrain_out_dim, normalize=self.normalize,
                           say=say)
        _check_forward(model, self.in_channels_, self.image_size_,
                       None if self.model is not None else self.backbone)
        init_stage = self.init_stage if self.init is not None else 1
        layer = None
        if init_stage == 3:  # the file's network is the one after the surgery
            layer = self._surgery(model)
        if self._resume is None:  # else the checkpoint's weights are loaded below
            if self.init is not None:
                dist.on_main(self._load_init, model, init_stage, say)
            elif self.backbone_weights is not None:
                dist.on_main(self._load_backbone_weights, model, say)
        model = model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        step_bytes = self._check_memory(model, device)
        dist.broadcast_module(model)  # every process starts from rank 0's network
        self.model_ = model
        self.labels_ = store.labels
        train_store = _place(store, device, step_bytes)
        gen = torch.Generator(device=device).manual_seed(self._seed)
        shuffle_gen = torch.Generator().manual_seed(self._seed + 1)
        augment = self._augment(gen)
        metric, temperature = self._metric, self.temperature

        # under torchrun: this process's rows against every process's
        gather = {"gather": True} if dist.is_distributed() else {}

        def loss_for(number: int):
            rho = self._exaggerations[number - 1]

            def loss_fn(z):
                return info_nce(z, metric, temperature, exaggeration=rho, **gather)
            return loss_fn

        callbacks = ([] if self.callbacks is None else
                     [self.callbacks] if callable(self.callbacks) else list(self.callbacks))
        resume = self._resume
        history: list = [] if resume is None else [tuple(r) for r in resume["history"].tolist()]
        self.stage_embeddings_ = ([] if resume is None else
                                  [e.numpy() for e in resume["stage_embeddings"]])
        first = init_stage if resume is None else resume["stage"]  # the stage to go on with

        def start(number: int) -> dict:
            """Where stage ``number`` starts: from scratch, or from the checkpoint."""
            if resume is None or number != first:
                return {}
            model.load_state_dict(resume["model"])
            _set_generator_state(gen, resume["rng"]["augment"],
                                 _rank_seed(self._seed, number, resume["epoch"], 1))
            shuffle_gen.set_state(resume["rng"]["shuffle"])
            by_rank = resume["rng"].get("torch_by_rank")
            if dist.rank() == 0 or by_rank is None:
                torch.set_rng_state(resume["rng"]["torch"])
            if dist.rank() > 0:  # its own state when the run had this rank, else a fresh one
                if by_rank is not None and dist.rank() < len(by_rank):
                    torch.set_rng_state(by_rank[dist.rank()].clone())  # its own storage
                else:
                    torch.manual_seed(_rank_seed(self._seed, number, resume["epoch"]))
            return dict(start_epoch=resume["epoch"], optimizer_state=resume["optimizer"])

        on_epoch_end = None
        saved = [None if resume is None else (resume["stage"], resume["epoch"])]
        if self.checkpoint is not None:
            params, every = training_params(self), self.checkpoint_every

            def on_epoch_end(stage, epoch, opt):
                _test_hook("epoch", stage, epoch)
                if epoch % every and epoch != stages[stage - 1].epochs:
                    return
                rng = {"augment": gen.get_state(), "shuffle": shuffle_gen.get_state(),
                       "torch": torch.get_rng_state()}
                if dist.world_size() > 1:  # the global generator differs by rank
                    rng["torch_by_rank"] = torch.stack(dist.all_gather_object(rng["torch"]))
                if not dist.is_main():
                    return  # only rank 0 writes
                save_checkpoint(
                    self.checkpoint, params=params, seed=self._seed, n_images=len(store),
                    stage=stage, epoch=epoch, model=model, optimizer=opt, rng=rng,
                    history=history, stage_embeddings=self.stage_embeddings_)
                saved[0] = (stage, epoch)

        common = dict(batch_size=self._batch_size, augment=augment,
                      device=device, generator=shuffle_gen, optimizer=self.optimizer,
                      momentum=self.momentum, weight_decay=self.weight_decay,
                      grad_clip=self.grad_clip, callbacks=callbacks,
                      verbose=self._verbose, compile=self.compile,
                      precision=self.precision, history=history, on_epoch_end=on_epoch_end,
                      step_bytes=step_bytes)
        stages = [Stage(i + 1, e, lr, w)
                  for i, (e, lr, w) in enumerate(zip(self._epochs, self._lrs, self._warmups))]
        stopped = False
        self.__dict__.pop("embedding_", None)  # a diverged run leaves none
        try:
            # stage 1: the whole network, pretrain_out_dim outputs
            if first == 1:
                set_trainable(model)
                stopped = train_stage(model, train_store, stages[0], loss_fn=loss_for(1),
                                      **common, **start(1))
            if layer is None:
                layer = self._surgery(model)
            if first == 1:
                self.stage_embeddings_.append(self._finite_embedding(train_store, 1, stages))
            if len(stages) > 1 and not stopped and first <= 2:
                # stage 2: only the new layer
                self.n_trainable_stage2_ = set_trainable(model, only=layer)
                stopped = train_stage(model, train_store, stages[1], loss_fn=loss_for(2),
                                      **common, **start(2))
                self.stage_embeddings_.append(self._finite_embedding(train_store, 2, stages))
            if len(stages) > 2 and not stopped:
                # stage 3: everything, at a small learning rate
                set_trainable(model)
                stopped = train_stage(model, train_store, stages[2], loss_fn=loss_for(3),
                                      **common, **start(3))
                self.stage_embeddings_.append(self._finite_embedding(train_store, 3, stages))
        except TrainingDiverged as e:
            restored = saved[0] is not None and self._restore_last_good(model)
            err = TrainingDiverged(f"{e} {self._kept(saved[0], restored)}", e.stage, e.epoch,
                                   e.lr)
            err.restored = restored  # model_ holds the last good checkpoint's weights
            raise err from None
        finally:
            set_trainable(model)
            self.loss_history_ = np.array(
                history, dtype=[("stage", np.int64), ("epoch", np.int64), ("loss", np.float64)])
        if self.checkpoint is not None and not stopped:
            if dist.is_main():
                Path(self.checkpoint).unlink(missing_ok=True)  # the run is complete
            dist.barrier()  # ... on every process once fit returns
        self.embedding_ = self.stage_embeddings_[-1]
        if self._verbose:
            print(f"{PREFIX} done: embedding of {len(store)} images in {self.out_dim} dimensions",
                  flush=True)

    def _surgery(self, model) -> nn.Linear:
        """A fresh Linear(hidden -> out_dim) for the head's last layer, N(0, out_layer_std^2)."""
        return replace_last_linear(model, self.out_dim, generator=torch.Generator()
                                   .manual_seed(self._seed + 2), std=self.out_layer_std)

    def _load_backbone_weights(self, model, say) -> None:
        """backbone_weights into the named backbone; one line on what did not load."""
        line, partial = load_backbone_weights(model.backbone, self.backbone_weights,
                                              self.backbone)
        if partial:
            warnings.warn(line, stacklevel=2)
        elif say is not None:
            say(line)

    def _load_init(self, model, stage: int, say) -> None:
        """The weights of the model file ``init``, checked against this fit (see ``init``)."""
        from .persist import load_init

        line = load_init(self, model, stage)
        if say is not None:
            say(line)

    def _finite_embedding(self, store, number: int, stages) -> np.ndarray:
        """The embedding after stage ``number``; NaN or infinite values raise, never pass."""
        Y = self._embed(store)
        if not np.isfinite(Y).all():
            stage = stages[min(number, len(stages)) - 1]
            raise TrainingDiverged(
                f"Training diverged: the embedding after stage {number} holds NaN or infinite "
                f"values (stage {stage.number}, epoch {stage.epochs}, 'lr' {stage.lr:g}). Lower "
                "the learning rate or check the input images.", number, stage.epochs, stage.lr)
        return Y

    def _check_memory(self, model, device) -> int | None:
        """The estimated memory of a training step; a ValueError when it cannot fit.

        Refuses a batch whose step alone (estimated, see ``simcne.train.step_memory``, under
        the run's precision) exceeds the memory available to the process (CPU) or free on
        the GPU, instead of letting the OOM killer or CUDA's out-of-memory error end the run
        later. The estimate then decides whether the store's images go on the GPU beside
        the step (:func:`_place`). ``SIMCNE_MEMORY_CHECK=0`` turns the refusal off.
        """
        from ._heap import available_memory

        try:
            need = step_memory(model, (self.in_channels_, *self.image_size_), self._batch_size,
                               autocast=autocast_for(device, self.precision))
        except Exception:  # noqa: BLE001  a model the probe cannot run: no estimate
            return None
        if device.type == "cpu":
            avail, where = available_memory(), "this machine's memory"
        elif device.type == "cuda":
            avail, where = gpu_free_memory(device), f"the memory of GPU {device}"
        else:
            return need
        if (avail is not None and need > avail
                and os.environ.get("SIMCNE_MEMORY_CHECK", "1") != "0"):
            fits = max(1, int(self._batch_size * avail / need))
            raise ValueError(
                f"The 'batch_size' parameter of TSimCNE is too large for {where}: a "
                f"training step at batch_size={self._batch_size} with images of "
                f"{self.image_size_[0]}x{self.image_size_[1]} needs about {need / 1e9:.1f} GB, "
                f"but only {avail / 1e9:.1f} GB are available. Pass a smaller batch_size "
                f"(about {fits} would fit) or free memory (SIMCNE_MEMORY_CHECK=0 skips this "
                "check).")
        return need

    def _restore_last_good(self, model) -> bool:
        """Give ``model`` the weights of the last good checkpoint, where they fit it."""
        try:
            weights = torch.load(self.checkpoint, map_location="cpu", weights_only=True)["model"]
        except (OSError, RuntimeError, KeyError, ValueError, TypeError):
            return False
        current = model.state_dict()
        if set(weights) != set(current) or any(weights[k].shape != current[k].shape
                                               for k in current):
            return False  # a checkpoint from before the stage-2 surgery
        model.load_state_dict(weights)
        return True

    def _kept(self, saved, restored: bool = False) -> str:
        """What a diverged run leaves behind, for its error message."""
        if self.checkpoint is None:
            return "No checkpoint was kept (pass 'checkpoint' to keep one)."
        if saved is None:
            return "No checkpoint was written before it (nothing finished well)."
        return (f"The last good checkpoint, '{os.fspath(self.checkpoint)}' (stage {saved[0]}, "
                f"epoch {saved[1]}), is kept" + (", and model_ holds its weights" if restored
                                                 else "")
                + "; delete it to start again with other parameters.")

    def _augment(self, generator) -> Callable:
        # under torchrun, each process applies its share of the global batch's draws
        part = (dist.rank(), dist.world_size())
        if self.data_transform is None or isinstance(self.data_transform, dict):
            aug = Augment(size=self.image_size_, **check_settings(self.data_transform or {}))
            return lambda x: aug(x, generator=generator, part=part)
        if isinstance(self.data_transform, Augment):
            return lambda x: self.data_transform(x, generator=generator, part=part)
        return self.data_transform

    def _embed(self, store, backbone_features: bool = False):
        """Under torchrun each process embeds its share; every process gets all rows, in order."""
        n = len(store)
        rows = dist.shard(n) if n >= dist.world_size() else range(n)
        out = embed(self.model_, store, image_size=self.image_size_, device=self._device,
                    backbone_features=backbone_features, resize=resize,
                    precision=self.precision, rows=rows)
        if len(rows) == n:
            return out
        if backbone_features:
            return dist.gather_rows(out[0], n), dist.gather_rows(out[1], n)
        return dist.gather_rows(out, n)

    # -- transform --------------------------------------------------------------------------
    def transform(self, X, return_labels: bool = False, return_backbone_feat: bool = False):
        """Embed images X with the trained network, without augmentation.

        Under torchrun, call it on every process: each embeds its share of X, and every
        process gets the whole result.

        Returns
        -------
        Y : ndarray of shape (n_samples, out_dim)
        backbone_features : ndarray of shape (n_samples, width), if ``return_backbone_feat``
        labels : ndarray or None, if ``return_labels``
        """
        if not hasattr(self, "model_"):
            raise RuntimeError("This TSimCNE instance is not fitted yet. Call 'fit' first.")
        if dist.launched_by_torchrun():  # a loaded model: each process on its own GPU
            self._device = dist.init_from_env(self._device)
            self.model_.to(self._device)
        store = _data.load(X, **_size_hint(X, self.image_size_))
        if store.channels != self.in_channels_:
            raise ValueError(
                f"X has {store.channels}-channel images, but the model was trained on "
                f"{self.in_channels_}-channel images.")
        out = self._embed(_place(store, self._device), backbone_features=return_backbone_feat)
        return _pack(out, store.labels, return_labels, return_backbone_feat)

    def fit_transform(self, X, y=None, return_labels: bool = False,
                      return_backbone_feat: bool = False):
        """Fit on X and return its embedding (see :meth:`transform` for the extras)."""
        self.fit(X, y)
        if return_backbone_feat:
            store = _data.load(X, y, **_size_hint(X, self.image_size))
            out = self._embed(_place(store, self._device), backbone_features=True)
            out = (self.embedding_, out[1])
        else:
            out = self.embedding_
        return _pack(out, self.labels_, return_labels, return_backbone_feat)


    # -- saving ------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted estimator to ``path`` (a ``torch.save`` file, written atomically).

        Stored: the parameters with plain values, the trained network's weights (after the
        stage-2 surgery), ``image_size_``, ``in_channels_``, ``labels_``, ``embedding_``,
        ``stage_embeddings_`` and ``loss_history_``, with a format name and version.

        Not stored: parameters that are modules or callables. For ``model``, ``backbone``
        or ``projection_head`` given as an ``nn.Module`` the file keeps the weights but not
        the architecture: pass the module again to :meth:`load`. ``data_transform`` and
        ``callbacks`` come back as None unless passed to :meth:`load` (they only matter for
        fitting again).

        Examples
        --------
        >>> est = TSimCNE(total_epochs=[400, 25, 75]).fit(X)  # doctest: +SKIP
        >>> est.save("model.pt")  # doctest: +SKIP
        >>> Y = TSimCNE.load("model.pt").transform(X_new)  # doctest: +SKIP

        Under torchrun only rank 0 writes; on the other processes this does nothing.
        """
        from . import persist

        if dist.is_main():
            persist.save(self, path)

    @classmethod
    def load(cls, path, device="auto", **params) -> "TSimCNE":
        """Read a model written by :meth:`save`; returns a fitted estimator.

        The file is read with ``torch.load(..., weights_only=True)``: it cannot run code.

        Parameters
        ----------
        path : str or os.PathLike
        device : "auto", str or torch.device, default="auto"
            Where the network is put for ``transform``: "auto" is CUDA when available, else
            CPU. The stored ``device`` parameter is kept as it was.
        **params
            Parameters the file could not store: required for ``model``, ``backbone`` or
            ``projection_head`` when they were modules at fit time (the same architecture;
            it is copied and gets the stored weights); optional for ``data_transform`` and
            ``callbacks``. Other parameters given here override the stored ones.

        Raises
        ------
        ValueError
            If the file is not a simcne model file, has a newer format version, or a
            module parameter it needs was not passed.
        """
        from . import persist

        return persist.load(cls, path, device=device, **params)


def _normalize_ok(value) -> bool:
    """Whether ``value`` is a valid ``normalize``: None, "imagenet" or (mean, std)."""
    if value is None or (isinstance(value, str) and value == "imagenet"):
        return True
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return False

    def values(v):
        vs = list(v) if isinstance(v, (list, tuple)) else [v]
        return vs if vs and all(_is_real(x) and math.isfinite(x) for x in vs) else None

    mean, std = values(value[0]), values(value[1])
    return (mean is not None and std is not None and all(s > 0 for s in std)
            and (len(mean) == len(std) or 1 in (len(mean), len(std))))


def _rank_seed(seed: int, *more: int) -> int:
    """``seed`` on rank 0 (one process: as before); on rank r > 0 a seed derived from it."""
    if dist.rank() == 0 and not more:
        return seed
    return int(np.random.SeedSequence([seed, dist.rank(), *more]).generate_state(1)[0])


def _pack(out, labels, return_labels, return_backbone_feat):
    result = list(out) if return_backbone_feat else [out]
    if return_labels:
        result.append(labels)
    return result[0] if len(result) == 1 else tuple(result)


def _place(store, device: torch.device, step_bytes: int | None = None):
    """Put the store on the GPU when it fits beside the training step (or, without its
    estimate, in half of the free memory: see :func:`simcne.devices.store_fits`); else
    leave it where it is (batches then go to the GPU through pinned host memory)."""
    if device.type != "cuda" or store.device == device:
        return store
    fits = store_fits(store.nbytes, gpu_free_memory(device), step_bytes)
    return store.to(device) if fits else store


def _set_generator_state(gen: torch.Generator, state: torch.Tensor, seed: int) -> None:
    """Give ``gen`` a checkpoint's state; one from another device type (a CPU generator's
    state is 5,056 bytes, a CUDA one's 16) cannot be carried over, so ``gen`` is seeded
    with ``seed`` instead and a warning says that the run differs from an uninterrupted
    one from here on."""
    if state.numel() == gen.get_state().numel():
        gen.set_state(state)
        return
    gen.manual_seed(seed)
    warnings.warn(
        f"The checkpoint was written by a run on another device type than this one "
        f"({gen.device.type}): its random augmentations go on from a new seed, so the result "
        "differs from an uninterrupted run's (as much as two seeds' results differ).",
        stacklevel=2)


def _size_hint(X, image_size) -> dict:
    """For a path: bring images of differing sizes (a folder, a .beton) to ``image_size``."""
    if image_size is None or not isinstance(X, (str, os.PathLike)):
        return {}
    return {"mixed_size": image_size}


def _check_device_exists(device: torch.device, given) -> None:
    """A ValueError naming 'device' when it asks for a CUDA device this machine lacks."""
    if device.type != "cuda":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0 or (device.index or 0) >= count:
        raise _err("device", f"'auto', 'cpu' or one of the {count} CUDA device(s) of this "
                   "machine" if count else "'auto' or 'cpu' (CUDA is not available here)",
                   given if not isinstance(given, torch.device) else str(given))


def _find_cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (inductor) would use, or None."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return get_cpp_compiler()
    except ImportError:  # a torch without that helper: look where inductor looks by default
        return shutil.which(os.environ.get("CXX") or "g++")
    except Exception:  # noqa: BLE001  inductor's own "no valid compiler" error
        return None


def _check_cpp_compiler() -> None:
    """compile=True on CPU: a ValueError before training when there is no C++ compiler."""
    if _find_cpp_compiler() is None:
        raise ValueError(
            "The 'compile' parameter of TSimCNE is True, but torch.compile on CPU builds its "
            "kernels with a C++ compiler and none was found ($CXX, or else g++). "
            "Install one (Debian/Ubuntu: 'apt-get install g++'), or leave compile=False: on "
            "CPU it measured only about 4 % faster epochs (BENCHMARKS.md).")


def _check_forward(model: nn.Module, in_channels: int, image_size, backbone) -> None:
    """A dry forward pass, so a model that cannot take the images fails before training."""
    check_model(model, in_channels, image_size, backbone if isinstance(backbone, str) else None)
