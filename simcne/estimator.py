"""TSimCNE: the three-stage t-SimCNE estimator."""

from __future__ import annotations

import copy
import inspect
import os
import shutil
import sys
import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import data as _data
from . import dist
from .augment import Augment, check_settings, resize
from .devices import GPU_SHARE, gpu_free_memory, resolve_device, same_device, store_fits
from .checkpoint import Keeper, training_params
from .losses import LOSSES
from .models import (check_model, load_backbone_weights, make_model, replace_last_linear,
                     set_trainable)
from .params import error, is_int, is_real, numpydoc, validate
from .train import (PREFIX, Stage, Training, TrainingDiverged, autocast_for, embed,
                    step_memory, train_stage, uses_bf16)

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
{parameters}

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
        out_layer_init="random",
        neighbor_positives=0,
        bank_negatives=0,
        image_size=None,
        random_state=None,
        device="auto",
        compile=False,
        precision="auto",
        checkpoint=None,
        checkpoint_every=10,
        cache=None,
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
        self.out_layer_init = out_layer_init
        self.neighbor_positives = neighbor_positives
        self.bank_negatives = bank_negatives
        self.image_size = image_size
        self.random_state = random_state
        self.device = device
        self.compile = compile
        self.precision = precision
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.cache = cache
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

    @classmethod
    def preset(cls, name: str, **params) -> "TSimCNE":
        """A TSimCNE with the parameters of preset ``name`` (:mod:`simcne.presets`), which
        ``params`` override.

        Examples
        --------
        >>> from simcne import TSimCNE
        >>> TSimCNE.preset("demo").total_epochs
        [10, 5, 200]
        """
        from .presets import preset

        return cls(**{**preset(name), **params})

    # -- validation -------------------------------------------------------------------------
    def _validate_params(self) -> None:
        """Every parameter against the one table (:mod:`simcne.params`), in scikit-learn's
        wording; then the rules between parameters."""
        validate(self.get_params())

    # -- resolved settings (private; parameters stay as given) ----------------------------
    def _resolve(self, store) -> None:
        if self.device != "auto":
            _check_device_exists(torch.device(self.device), self.device)
        device = resolve_device(self.device)  # "cuda" -> "cuda:<index>", one name throughout
        if self.compile and device.type == "cpu":
            _check_cpp_compiler()
        self._device = dist.init_from_env(device)  # joins torchrun's processes, if any
        epochs = [self.total_epochs] if is_int(self.total_epochs) else list(self.total_epochs)
        self._epochs = epochs
        n_stages = len(epochs)
        if len(store) < 2:
            raise ValueError(
                f"X holds {len(store)} image(s): expected at least 2, since t-SimCNE "
                "contrasts each image with the others as negatives."
            )
        w = dist.world_size()
        if self.batch_size % w:
            raise error("batch_size", f"a multiple of the number of processes ({w}) under "
                       "torchrun, as it is the global batch", self.batch_size)
        self._batch_size = min(self.batch_size, len(store) - len(store) % w)
        if self._batch_size < self.batch_size and dist.is_main():
            warnings.warn(
                f"batch_size={self.batch_size} is larger than the dataset ({len(store)} images); "
                f"using batches of {self._batch_size}.", stacklevel=3)
        if self.lr == "auto_batch":
            base = 0.03 * self._batch_size / 256
            lrs = [base, base, base / 1000]
        elif is_real(self.lr):
            lrs = [self.lr, self.lr, self.lr / 1000]
        else:
            lrs = list(self.lr)
        self._lrs = lrs[:n_stages]
        if self.warmup == "auto":
            wus = [min(10, epochs[0]), 0, min(10, epochs[2]) if n_stages > 2 else 0]
        elif is_int(self.warmup):
            wus = [self.warmup, 0, self.warmup]  # checked against the epochs by validate
        else:
            wus = list(self.warmup)
        self._warmups = wus[:n_stages]
        ex = self.exaggeration
        exs = [1.0, float(ex), float(ex)] if is_real(ex) else [float(v) for v in ex]
        self._exaggerations = exs[:n_stages]
        if self.image_size is None:
            self.image_size_ = store.image_size
        elif is_int(self.image_size):
            self.image_size_ = (self.image_size, self.image_size)
        else:
            self.image_size_ = tuple(int(s) for s in self.image_size)
        self.in_channels_ = store.channels
        self._metric = self.metric or "euclidean"
        self._seed = (int(self.random_state) if self.random_state is not None  # rank 0's
                      else dist.on_main(lambda: int(np.random.SeedSequence().generate_state(1)[0])))
        self._verbose = int(self.verbose) if dist.is_main() else 0
        self._neighbors = None  # neighbor_positives' table, found before stage 2
        self._bank = None  # the current stage's NegativeBank (bank_negatives)

    # -- fit --------------------------------------------------------------------------------
    def fit(self, X, y=None) -> "TSimCNE":
        """Train on images X (array, Dataset, list of images or path); returns self.

        Raises
        ------
        ValueError
            For a bad parameter or input (the message names it), for a ``batch_size`` whose
            training step cannot fit in the available memory (the machine's on the CPU, the
            GPU's free memory on CUDA; ``SIMCNE_MEMORY_CHECK=0`` skips this), and as
            :class:`simcne.TrainingDiverged` when the loss or the weights become NaN or
            infinite: its message names the stage, the epoch and the learning rate and the
            checkpoint kept (the last good one); ``embedding_`` is then not set, and
            ``model_`` holds the checkpoint's weights where they fit the network.
        simcne._io.WriteError
            An ``OSError`` naming the checkpoint file when it cannot be written (full disk,
            read-only folder); the previous checkpoint is left as it was.
        """
        self._validate_params()
        store = _data.load(X, y, **_size_hint(X, self.image_size, self.cache))
        self._resolve(store)
        keeper = Keeper(self.checkpoint, training_params(self), len(store),
                        self.checkpoint_every).open()
        self.resumed_from_ = keeper.resumed_from
        if keeper.state is not None:
            self._seed = keeper.state["seed"]
            if self._verbose:
                print(f"{PREFIX} going on from the checkpoint {os.fspath(self.checkpoint)!r}: "
                      f"stage {keeper.saved[0]}, epoch {keeper.saved[1]} done",
                      file=sys.stderr, flush=True)
        device = self._device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            # torch's global generator (custom data_transforms, stochastic depth): the seed
            # on rank 0, one derived from it on the other ranks; the model is rank 0's
            torch.manual_seed(_rank_seed(self._seed))
            with dist.explain_timeouts():
                self._fit(store, device, keeper)
        return self

    def _fit(self, store, device, keeper: Keeper) -> None:
        init_stage = self.init_stage if self.init is not None else 1
        model, step_bytes, layer = self._network(device, init_stage, resumed=keeper.state
                                                 is not None)
        first = keeper.first_stage if keeper.state is not None else init_stage
        self.labels_ = store.labels
        store = _place(store, device, step_bytes)  # on the GPU where it fits beside the step
        run = self._training(device, step_bytes, keeper)
        stages = self._stages()
        self.stage_embeddings_ = keeper.stage_embeddings()
        keeper.attach(model=model, seed=self._seed, augment_gen=self._augment_gen,
                      shuffle_gen=run.generator, history=run.history,
                      stage_embeddings=self.stage_embeddings_, stage_epochs=self._epochs,
                      reseed=lambda *more, shared=False: _rank_seed(self._seed, *more,
                                                                    shared=shared),
                      extras=self._extras_state)
        self.__dict__.pop("embedding_", None)  # a diverged run leaves none
        try:
            # stage 1: the whole network, pretrain_out_dim outputs
            stopped = self._stage(1, first, model, store, stages, run, keeper)
            if layer is None:  # the surgery: a fresh Linear(hidden -> out_dim)
                layer = self._surgery(model)
                if self.out_layer_init == "pca":
                    self._pca_start(model, layer, store)
            if first == 1:  # through the fresh, untrained out_dim layer
                self.stage_embeddings_.append(self._finite_embedding(store, 1, stages))
            # stage 2: only the new layer; stage 3: everything, at a small learning rate
            stopped = stopped or self._stage(2, first, model, store, stages, run, keeper,
                                             only=layer)
            stopped = stopped or self._stage(3, first, model, store, stages, run, keeper)
        except TrainingDiverged as e:
            restored = keeper.restore_last_good()
            err = TrainingDiverged(f"{e} {keeper.kept(restored)}", e.stage, e.epoch, e.lr)
            err.restored = restored  # model_ holds the last good checkpoint's weights
            raise err from None
        finally:
            set_trainable(model)
            self.loss_history_ = np.array(
                run.history, dtype=[("stage", np.int64), ("epoch", np.int64), ("loss", np.float64)])
        if not stopped:
            keeper.complete()  # the run is done: its checkpoint goes
        self.embedding_ = self.stage_embeddings_[-1]
        if self._verbose:
            print(f"{PREFIX} done: embedding of {len(store)} images in {self.out_dim} dimensions",
                  flush=True)

    def _stage(self, number: int, first: int, model, store, stages, run: Training,
               keeper: Keeper, only=None) -> bool:
        """Train stage ``number`` where it runs (it is asked for, and comes at or after
        ``first``: a checkpoint or a warm start skips the ones before), ``only``'s
        parameters or all; note its embedding (stages 2 and 3). True when a callback asked
        to stop."""
        if number > len(stages) or number < first:
            return False
        trainable = set_trainable(model, only=only)
        if number == 2:
            self.n_trainable_stage2_ = trainable
        stage = stages[number - 1]
        start = keeper.start(number)
        if number > 1:
            self._map_extras(stage, store, keeper.saved_extras(number))
        stopped = train_stage(model, store, stage, run, **start)
        if number > 1:
            self.stage_embeddings_.append(self._finite_embedding(store, number, stages))
        return stopped

    def _map_extras(self, stage, store, saved: dict) -> None:
        """``neighbor_positives`` and ``bank_negatives`` for an out_dim stage: the partners'
        table (found once, from the backbone's features before the first out_dim stage) and
        a bank filled with every image's position now (see :mod:`simcne.neighbors`); when
        the run goes on from a checkpoint in this stage, both as the checkpoint kept them."""
        from .neighbors import NegativeBank, NeighborPairs, knn_table

        if self.neighbor_positives > 0:
            if self._neighbors is None and "neighbors" in saved:
                self._neighbors = saved["neighbors"]
            if self._neighbors is None:
                _, h = self._embed(store, backbone_features=True)
                self._neighbors = knn_table(h, self.neighbor_positives, device=self._device)
                if self._verbose:
                    _say(f"neighbour positives: the {self._neighbors.shape[1]} nearest "
                         f"neighbours of each of {len(store)} images in the "
                         f"{h.shape[1]}-D backbone features")
            stage.pairs = NeighborPairs(self._neighbors)
        if self.bank_negatives > 0:
            start = saved["bank"] if "bank" in saved else self._embed(store)
            stage.bank = NegativeBank(start, self.bank_negatives, self._device)
        self._bank = stage.bank

    def _extras_state(self) -> dict:
        """What a checkpoint keeps of the out_dim stages' extras."""
        bank = getattr(self, "_bank", None)
        return {"neighbors": self._neighbors, "bank": None if bank is None else bank.pos}

    def _network(self, device, init_stage: int, resumed: bool):
        """The network to train, checked, with the weights it starts from (``init`` or
        ``backbone_weights``, unless a checkpoint gives them), on ``device`` and the same on
        every process (``model_``); the estimated memory of its training step; and, for a
        warm start at stage 3, the out_dim layer (the file's network is the one after the
        surgery), else None.

        fit trains copies of the modules it is given: training, the stage-2 surgery and a
        dropped classifier leave the user's objects as they were."""
        given = [copy.deepcopy(v) if isinstance(v, nn.Module) else v
                 for v in (self.backbone, self.projection_head, self.model)]
        say = _say if self._verbose else None
        model = make_model(*given, in_channels=self.in_channels_, image_size=self.image_size_,
                           pretrain_out_dim=self.pretrain_out_dim, normalize=self.normalize,
                           say=say)
        _check_forward(model, self.in_channels_, self.image_size_,
                       None if self.model is not None else self.backbone)
        layer = self._surgery(model) if init_stage == 3 else None
        if not resumed:  # else the checkpoint's weights are loaded at its stage
            if self.init is not None:
                dist.on_main(self._load_init, model, init_stage, say)
            elif self.backbone_weights is not None:
                dist.on_main(self._load_backbone_weights, model, say)
        model = model.to(device)
        # channels_last weights, as the views: on CUDA tensor cores; on the CPU oneDNN's
        # convolutions then need no reorder (ResNet18, one thread: 1.18x a step against
        # NCHW weights with channels_last views)
        model = model.to(memory_format=torch.channels_last)
        # under torchrun every process checks its own memory, and a refusal on any of them
        # ends all of them here (before the broadcast, where the others would wait for it)
        step_bytes = dist.on_every(self._check_memory, model, device)
        dist.broadcast_module(model)  # every process starts from rank 0's network
        self.model_ = model
        return model, step_bytes, layer

    def _surgery(self, model) -> nn.Linear:
        """A fresh Linear(hidden -> out_dim) for the head's last layer, N(0, out_layer_std^2)."""
        return replace_last_linear(model, self.out_dim, std=self.out_layer_std,
                                   generator=torch.Generator().manual_seed(self._seed + 2))

    def _pca_start(self, model, layer, store, most: int = 10_000) -> None:
        """out_layer_init="pca": the new layer projects onto the top principal components of
        its inputs over up to ``most`` images (a seeded sample), at a random layer's spread."""
        from .neighbors import pca_layer_

        n = len(store)
        rows = (np.arange(n) if n <= most else np.sort(
            np.random.default_rng(self._seed + 3).choice(n, most, replace=False)))
        seen = []
        hook = layer.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().float()))
        try:
            embed(model, store.subset(rows), image_size=self.image_size_, device=self._device,
                  resize=resize, precision=self.precision)
        finally:
            hook.remove()
        pca_layer_(layer, torch.cat(seen).cpu(), self.out_layer_std)
        dist.broadcast_module(layer)

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

    def _training(self, device, step_bytes, keeper: Keeper) -> Training:
        """What every stage shares: batches, augmentation, optimiser, callbacks, history."""
        self._augment_gen = torch.Generator(device=device).manual_seed(self._seed)
        callbacks = ([] if self.callbacks is None else
                     [self.callbacks] if callable(self.callbacks) else list(self.callbacks))
        return Training(
            batch_size=self._batch_size, augment=self._augment(self._augment_gen),
            device=device, generator=torch.Generator().manual_seed(self._seed + 1),
            optimizer=self.optimizer, momentum=self.momentum, weight_decay=self.weight_decay,
            grad_clip=self.grad_clip, precision=self._bf16_on(device), compile=self.compile,
            callbacks=callbacks, verbose=self._verbose, history=keeper.history(),
            on_epoch_end=keeper.on_epoch_end if keeper.path is not None else None,
            step_bytes=step_bytes)

    def _stages(self) -> list[Stage]:
        """The stages that run, with their lengths, rates, warm-ups and losses (each its
        exaggeration; under torchrun this process's rows against every process's)."""
        gather = {"gather": True} if dist.is_distributed() else {}
        metric, temperature, loss_fn = self._metric, self.temperature, LOSSES[self.loss]

        def loss(rho: float):
            return lambda z, **more: loss_fn(z, metric, temperature, exaggeration=rho,
                                             **gather, **more)

        views = getattr(self, "_stage_views", None) or [None] * len(self._epochs)
        return [Stage(i + 1, epochs, lr, warmup, loss(rho), augment=view)
                for i, (epochs, lr, warmup, rho, view) in enumerate(
                    zip(self._epochs, self._lrs, self._warmups, self._exaggerations, views))]

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
        the run's precision) exceeds ``GPU_SHARE`` (90 %) of the memory available to the
        process (CPU) or free on the GPU, instead of letting the OOM killer or CUDA's
        out-of-memory error end the run later (the estimate is not exact, and the rest of
        the process needs memory too). The estimate then decides whether the store's images
        go on the GPU beside the step (:func:`_place`). A model the estimate cannot probe
        gets no check, and a warning says so. ``SIMCNE_MEMORY_CHECK=0`` turns the refusal
        off.
        """
        from ._heap import available_memory

        try:
            need = step_memory(model, (self.in_channels_, *self.image_size_), self._batch_size,
                               autocast=autocast_for(device, self._bf16_on(device)))
        except Exception as e:  # noqa: BLE001  a model the probe cannot run: no estimate
            warnings.warn(
                f"The memory of a training step could not be estimated ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}), so batch_size="
                f"{self._batch_size} is not checked against the memory there is; a step "
                "that does not fit ends with an out-of-memory error.", stacklevel=3)
            return None
        if device.type == "cpu":
            avail, where = available_memory(), "this machine's memory"
        elif device.type == "cuda":
            avail, where = gpu_free_memory(device), f"the memory of GPU {device}"
        else:
            return need
        if (avail is not None and need > GPU_SHARE * avail
                and os.environ.get("SIMCNE_MEMORY_CHECK", "1") != "0"):
            fits = max(1, int(self._batch_size * GPU_SHARE * avail / need))
            raise ValueError(
                f"The 'batch_size' parameter of TSimCNE is too large for {where}: a "
                f"training step at batch_size={self._batch_size} with images of "
                f"{self.image_size_[0]}x{self.image_size_[1]} needs about {need / 1e9:.1f} GB, "
                f"but only {avail / 1e9:.1f} GB are available (and {100 * GPU_SHARE:.0f} % of "
                f"it is the most a step may take). Pass a smaller batch_size (about {fits} "
                "would fit) or free memory (SIMCNE_MEMORY_CHECK=0 skips this check).")
        return need

    def _bf16_on(self, device) -> bool:
        """Whether the backbone runs under bf16 autocast on ``device``: ``precision`` read
        once per device (``"auto"`` asks the hardware), then handed down as a bool."""
        key = (str(device), self.precision)
        known = getattr(self, "_bf16", None)
        if known is None or known[0] != key:
            self._bf16 = (key, uses_bf16(torch.device(device), self.precision))
        return self._bf16[1]

    def _augment(self, generator) -> Callable:
        """The view of every stage (``data_transform`` a list: stage 1's, and each stage
        gets its own from :meth:`_stages`), drawn from ``generator``."""
        views = self.data_transform
        if isinstance(views, (list, tuple)):
            self._stage_views = [self._view(v, generator) for v in views[:len(self._epochs)]]
            return self._stage_views[0]
        self._stage_views = None
        return self._view(views, generator)

    def _view(self, view, generator) -> Callable:
        # under torchrun, each process applies its share of the global batch's draws
        # (bound: both views of a batch in one call, see Augment.bind)
        part = (dist.rank(), dist.world_size())
        if view is None or isinstance(view, dict):
            aug = Augment(size=self.image_size_, **check_settings(view or {}))
            return aug.bind(generator, part)
        if isinstance(view, Augment):
            return view.bind(generator, part)
        return view

    def _embed(self, store, backbone_features: bool = False):
        """Under torchrun each process embeds its share; every process gets all rows, in order."""
        n = len(store)
        rows = dist.shard(n) if n >= dist.world_size() else range(n)
        out = embed(self.model_, store, image_size=self.image_size_, device=self._device,
                    backbone_features=backbone_features, resize=resize,
                    precision=self._bf16_on(self._device), rows=rows)
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
        store = _data.load(X, **_size_hint(X, self.image_size_, self.cache))
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
            store = _data.load(X, y, **_size_hint(X, self.image_size, self.cache))
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


# The parameters' entries come from the one table (simcne.params), as --help's do.
if TSimCNE.__doc__:
    TSimCNE.__doc__ = TSimCNE.__doc__.replace("{parameters}", numpydoc(
        {name: p.default for name, p in inspect.signature(TSimCNE).parameters.items()
         if name != "self"}))


def _say(line: str) -> None:
    """One ``[simcne]`` line on stderr (verbose)."""
    print(f"{PREFIX} {line}", file=sys.stderr, flush=True)


def _rank_seed(seed: int, *more: int, shared: bool = False) -> int:
    """``seed`` on rank 0 (one process: as before); on rank r > 0 a seed derived from it.

    With ``more``, a seed derived from ``seed`` and ``more`` (and the rank, unless
    ``shared``: then every process gets rank 0's, for a generator whose draws the
    processes share, as the augmentation's)."""
    r = 0 if shared else dist.rank()
    if r == 0 and not more:
        return seed
    return int(np.random.SeedSequence([seed, r, *more]).generate_state(1)[0])


def _pack(out, labels, return_labels, return_backbone_feat):
    result = list(out) if return_backbone_feat else [out]
    if return_labels:
        result.append(labels)
    return result[0] if len(result) == 1 else tuple(result)


def _place(store, device: torch.device, step_bytes: int | None = None):
    """Put the store on the GPU when it fits beside the training step (or, without its
    estimate, in half of the free memory: see :func:`simcne.devices.store_fits`); else
    leave it where it is (batches then go to the GPU through pinned host memory)."""
    if device.type != "cuda" or same_device(store.device, device):
        return store
    fits = store_fits(store.nbytes, gpu_free_memory(device), step_bytes)
    return store.to(device) if fits else store


def _size_hint(X, image_size, cache=None) -> dict:
    """For a path: bring images of differing sizes (a folder, a .beton) to ``image_size``;
    the decode-once cache's folder."""
    if not isinstance(X, (str, os.PathLike)):
        return {}
    return {"cache": cache} if image_size is None else {"mixed_size": image_size,
                                                         "cache": cache}


def _check_device_exists(device: torch.device, given) -> None:
    """A ValueError naming 'device' when it asks for a CUDA device this machine lacks."""
    if device.type != "cuda":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0 or (device.index or 0) >= count:
        raise error("device", f"'auto', 'cpu' or one of the {count} CUDA device(s) of this "
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


def default_training(**settings) -> Training:
    """A :class:`simcne.train.Training` with ``TSimCNE()``'s optimiser and step settings,
    ``settings`` (``batch_size``, ``augment``, ``device``, ``generator``, ...) given or over
    them: for code that runs :func:`simcne.train.train_stage` itself (tests, benchmarks).
    The values come from TSimCNE's signature, the one source of defaults."""
    params = TSimCNE().get_params()
    shared = ("optimizer", "momentum", "weight_decay", "grad_clip", "precision", "compile")
    given = {name: params[name] for name in shared}
    given.update(callbacks=tuple(params["callbacks"] or ()), verbose=int(params["verbose"]))
    return Training(**{**given, **settings})
