"""One training stage: the epoch loop, the step, and the learning-rate schedule."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import dist
from ._heap import reuse_fits, reuse_freed_memory
from .devices import cudnn_autotune, embed_batch_size, same_device
from .losses import info_nce
from .models import eval_mode

PREFIX = "[simcne]"


def lr_at(step: int, steps_per_epoch: int, epochs: int, warmup_epochs: int, base_lr: float) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of a stage.

    Linear warm-up per step over ``warmup_epochs`` (the first step already has a non-zero
    rate), then cosine decay from ``base_lr`` towards 0 at the end of the stage.
    """
    warm = warmup_epochs * steps_per_epoch
    total = max(1, epochs * steps_per_epoch)
    if step < warm:
        return base_lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Stage:
    """What one stage is told: its number, length, learning rate, warm-up and loss.

    ``loss_fn(z)`` maps the (2B, d) outputs of a batch's two views to the loss (default:
    InfoNCE with the Cauchy kernel, :func:`simcne.losses.info_nce`); with a ``bank`` it also
    takes ``extra`` and ``extra_mask``. ``pairs`` (:class:`simcne.neighbors.NeighborPairs`)
    draws the second views' images among each image's neighbours; ``bank``
    (:class:`simcne.neighbors.NegativeBank`) adds negatives from every image's position.
    ``augment``, where given, is this stage's view instead of :class:`Training`'s.
    """

    number: int
    epochs: int
    lr: float
    warmup: int
    loss_fn: Callable = info_nce
    pairs: object = None
    bank: object = None
    augment: Callable | None = None


@dataclass
class Training:
    """What every stage of one fit shares: the settings of :func:`train_stage`.

    ``store`` batches are ``batch_size`` images (under torchrun the global batch);
    ``augment`` maps a float batch in [0, 1] to one random view; ``generator`` draws each
    epoch's order. ``history`` (a list) gets ``(stage, epoch, loss)`` after every epoch;
    ``on_epoch_end(stage, epoch, optimizer)`` runs then (it writes checkpoints), before each
    ``callback(stage, epoch, loss, model)``, whose truthy return stops training.
    ``step_bytes`` (see :func:`step_memory`) lets the CPU keep freed memory for reuse only
    where it fits. ``precision``: whether the backbone runs under bf16 autocast, decided
    once by the caller (True/False; the names of :func:`uses_bf16` are read too).
    ``augment`` with a ``two_views`` method (:meth:`simcne.augment.Augment.bind`) makes
    both views of a batch in one call, from the uint8 batch. The optimiser's and the step's
    settings, ``callbacks`` and ``verbose`` have no defaults here: TSimCNE's signature is their
    one source (the estimator passes its parameters; :func:`simcne.estimator.default_training`
    fills them from it). Only the hooks (``history``, ``on_epoch_end``, ``step_bytes``) are
    optional.
    """

    batch_size: int
    augment: Callable
    device: torch.device
    generator: torch.Generator
    optimizer: str
    momentum: float
    weight_decay: float
    grad_clip: float | None
    precision: bool | str
    compile: bool
    callbacks: Sequence
    verbose: int
    history: list | None = None
    on_epoch_end: Callable | None = None
    step_bytes: int | None = None


class TrainingDiverged(FloatingPointError, ValueError):
    """The loss (or the network's weights) became NaN or infinite.

    A ``ValueError`` (so that the command reports it as one line) and a
    ``FloatingPointError``. ``stage``, ``epoch`` (1-based, within the stage) and ``lr`` (the
    learning rate of the epoch's last step) say where it happened.
    """

    def __init__(self, message: str, stage: int = 0, epoch: int = 0, lr: float = float("nan")):
        super().__init__(message)
        self.stage, self.epoch, self.lr = stage, epoch, lr
        #: set by TSimCNE.fit: whether model_ got the last good checkpoint's weights
        self.restored = False


def _loss_and_finite(total: torch.Tensor, steps: int, params) -> tuple[float, bool]:
    """The epoch's mean loss (over processes) and whether every parameter is finite, read
    from the device together: the epoch's one host sync."""
    finite = (torch.stack([torch.isfinite(p).all() for p in params]).all() if params
              else torch.ones((), dtype=torch.bool, device=total.device))
    loss, ok = torch.stack([dist.mean(total), finite.to(total.dtype)]).tolist()
    return loss / steps, bool(ok)


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    """The optimiser, its step one fused kernel over all the parameters (on CPU and CUDA;
    elsewhere one multi-tensor, foreach, update) instead of a loop over them: on a GPU one
    or a few kernel launches a step instead of several per parameter tensor; on the CPU the
    same arithmetic with less overhead."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                 for p in params)
    kw = {"fused": True} if fused else ({"foreach": True} if params else {})
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kw)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **kw)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kw)
    raise ValueError(f"unknown optimizer {name!r}")


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """``opt.load_state_dict(state)``, with every per-parameter buffer (momentum, Adam's
    moments) in its parameter's memory layout: a checkpoint's buffers come back in the
    layout they were saved in (NCHW from a CPU run), and a buffer whose strides differ from
    its channels-last weight's sends the multi-tensor step down its per-tensor path for the
    rest of the stage."""
    opt.load_state_dict(state)
    for group in opt.param_groups:
        for p in group["params"]:
            for key, buf in opt.state.get(p, {}).items():
                if (isinstance(buf, torch.Tensor) and buf.shape == p.shape
                        and buf.stride() != p.stride()):
                    opt.state[p][key] = torch.empty_like(p, dtype=buf.dtype).copy_(buf)

#: /proc/cpuinfo flags of x86 CPUs that compute bf16 dot products natively
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (x86 AVX512-BF16 or AMX-BF16).

    Asked of torch's own CPU feature detection (what oneDNN dispatches on); where torch
    does not offer it, read from the flags of ``/proc/cpuinfo``. Elsewhere (other
    architectures, no such file): False. Without these instructions, bf16 convolutions
    are emulated and slower than fp32. The environment variable ``SIMCNE_CPU_BF16=0`` (or
    ``1``) overrides the detection, and with it what ``precision="auto"`` picks on CPU.
    """
    forced = os.environ.get("SIMCNE_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(p) for p in probes):
        try:
            return any(bool(p()) for p in probes)
        except RuntimeError:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in _BF16_FLAGS)
    except OSError:
        pass
    return False


def uses_bf16(device: torch.device, precision: bool | str = "auto") -> bool:
    """What ``precision`` picks on ``device``: True for bf16 autocast, False for fp32.

    ``"auto"`` is bf16 on CUDA and on CPUs with native bf16 (:func:`cpu_has_native_bf16`),
    fp32 elsewhere; ``"bf16"`` and ``"fp32"`` are what they say; a bool is the decision,
    made once (the estimator decides and hands it down).
    """
    if isinstance(precision, bool):
        return precision
    if precision == "auto":
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    return precision == "bf16"


def autocast_for(device: torch.device, precision: bool | str = "auto"):
    """The autocast context of a forward pass: bf16 autocast where :func:`uses_bf16`
    says so, else none (plain fp32)."""
    if not uses_bf16(device, precision):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def step_memory(model: nn.Module, view_shape, batch_size: int, autocast=None) -> int:
    """Estimated working memory of one training step, bytes, from two small probes.

    Counts the tensors autograd keeps for the backward pass (each storage once) in forward
    passes of 2 and of 4 zero images of ``view_shape`` (C, H, W), in eval mode so that no
    statistics change and no random number is drawn; the difference is the cost of one
    view, scaled to the step's ``2 * batch_size`` views, plus the views themselves and
    the parameters' gradients and optimiser state. The probes run under ``autocast`` (the
    training's, see :func:`autocast_for`), so bf16 activations count at their size. (resnet_small at 32x32, batch 512: 1.4
    GB estimated; glibc's default allocation peaked at 1.75 GB in the step.)
    """
    saved: dict = {}

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            saved[key] = max(saved.get(key, 0), t.untyped_storage().nbytes())
        except RuntimeError:  # a tensor without storage
            pass
        return t

    def probe(n: int) -> int:
        saved.clear()
        param = next(model.parameters())
        x = torch.zeros((n, *view_shape), device=param.device, dtype=param.dtype)
        with eval_mode(model), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with torch.enable_grad(), (autocast or contextlib.nullcontext()):
                model(x)
        return sum(saved.values())

    per_view = max(0, probe(4) - probe(2)) / 2
    views = 2 * batch_size
    view_bytes = 4 * int(np.prod(view_shape))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(views * (per_view + 2 * view_bytes) + 3 * params)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) in channels-last memory, with the canonical strides (HWC, 1, WC, C).

    torch counts a tensor with a dimension of size 1 as channels-last whatever that
    dimension's stride is, but oneDNN picks its kernel by the strides: the same grayscale
    batch from a list of PIL images (strides (64, 64, 8, 1)) and from an array ((64, 1, 8,
    1)) took two kernels, and under bf16 their coordinates differed by 0.8. No copy is made
    when ``x`` is channels-last already.
    """
    x = x.contiguous(memory_format=torch.channels_last)
    _, c, h, w = x.shape
    return x.as_strided(x.shape, (c * h * w, 1, w * c, c))


def two_views(augment, x: torch.Tensor, second: torch.Tensor | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """The two views of a uint8 (or float, in [0, 1]) batch, (2B, C, H, W) channels-last:
    rows i and B + i are image i's (with ``second``, row B + i is ``second[i]``'s).

    One call of ``augment.two_views`` where it has one (:meth:`simcne.augment.Augment.bind`:
    one set of draws for both views, emitted in ``dtype``); otherwise ``augment`` (a
    callable of a float batch in [0, 1], e.g. a user's ``data_transform``) is called for
    each view. channels_last: tensor cores on CUDA; on CPU oneDNN's convolutions run faster
    on it too (resnet_small 1.56x, resnet18 1.23x on the 2-core test machine; BENCHMARKS.md).
    """
    pair = getattr(augment, "two_views", None)
    if pair is not None:
        return pair(x, second, dtype=dtype)
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    if second is not None and second.dtype == torch.uint8:
        second = second.float().div_(255)
    return channels_last(torch.cat([augment(x), augment(x if second is None else second)]))


def train_step(model, optimizer, x, augment, loss_fn, grad_clip, autocast, extras=None, *,
               view_dtype: torch.dtype | None = None) -> torch.Tensor:
    """augment twice -> forward -> loss -> backward -> clip -> step. Returns the detached loss.

    ``x`` is the batch, uint8 as the store hands it out (or float in [0, 1]); the views
    come out in ``view_dtype`` where the augmentation can emit it (bf16 under bf16 autocast:
    the dtype the first convolution takes). With ``extras``
    (:class:`simcne.neighbors.StepExtras`), ``x`` holds the first views' images and then the
    second views' (the partners), the loss gets the bank's negatives and the bank the step's
    outputs.
    """
    if extras is None:
        views = two_views(augment, x, dtype=view_dtype)
    else:
        b = x.shape[0] // 2
        views = two_views(augment, x[:b], x[b:], dtype=view_dtype)
    with autocast:
        z, _ = model(views)
    loss = loss_fn(z) if extras is None else loss_fn(z, **extras.loss_kw())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_value_(optimizer.param_groups[0]["params"], grad_clip)
    optimizer.step()
    if extras is not None:
        extras.after(z)
    return loss.detach()


def train_stage(model: nn.Module, store, stage: Stage, run: Training, *,
                start_epoch: int = 0, optimizer_state: dict | None = None) -> bool:
    """Train ``model`` for one stage. Returns True when a callback asked to stop.

    ``store`` hands out uint8 batches (``store.batch(index)``); ``run`` says how (see
    :class:`Training`). To go on from a checkpoint, ``start_epoch`` epochs count as done and
    the optimiser starts from ``optimizer_state``.

    Under torchrun (see :mod:`simcne.dist`), ``run.batch_size`` is the global batch: every
    process draws the same permutation and trains on its consecutive ``batch_size / W``
    images of each batch, in DistributedDataParallel with BatchNorm over the global batch,
    and ``stage.loss_fn`` is expected to gather the other processes' z. The epoch's loss is
    the mean over processes; a callback that stops on any process stops all.
    """
    batch_size, device, verbose = run.batch_size, run.device, run.verbose
    if stage.epochs == 0:
        return False
    n = len(store)
    steps = n // batch_size
    w = dist.world_size()
    if batch_size % w:
        raise ValueError(f"batch_size={batch_size} is not a multiple of the {w} processes")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(run.optimizer, params, stage.lr, run.momentum, run.weight_decay)
    if optimizer_state is not None:
        load_optimizer_state(opt, optimizer_state)
    bf16 = uses_bf16(device, run.precision)
    autocast = autocast_for(device, bf16)
    view_dtype = torch.bfloat16 if bf16 else None
    view = stage.augment if stage.augment is not None else run.augment
    model.train()
    bar = _announce(stage, run, steps, params, start_epoch) if verbose else None
    t0 = time.perf_counter()
    loss_value = float("nan")
    with reuse_freed_memory(_reuse_memory(stage, run)), cudnn_autotune(device), \
            dist.global_batchnorm(model, device):
        net = dist.data_parallel(model, device)  # the model itself in one process
        forward = torch.compile(net) if run.compile else net
        try:
            for epoch in range(start_epoch, stage.epochs):
                order = torch.randperm(n, generator=run.generator)
                if device.type == "cuda" and same_device(store.device, device):
                    # the epoch's order on the GPU, copied from pinned memory without a sync
                    order = order.pin_memory().to(device, non_blocking=True)
                total = torch.zeros((), device=device)
                chunks, extras = _epoch_chunks(order, steps, batch_size, stage, run.generator)
                for i, x in enumerate(device_batches(store, chunks, device)):
                    for group in opt.param_groups:
                        group["lr"] = lr_at(epoch * steps + i, steps, stage.epochs, stage.warmup, stage.lr)
                    total += train_step(forward, opt, x, view, stage.loss_fn,
                                        run.grad_clip, autocast, extras,
                                        view_dtype=view_dtype)
                loss_value, finite = _loss_and_finite(total, steps, params)
                if not math.isfinite(loss_value) or not finite:
                    _diverged(stage, epoch, steps, loss_value)
                if _epoch_done(stage, epoch + 1, loss_value, run, bar, opt, model):
                    return True
        finally:
            if bar is not None:
                bar.close()
            if verbose:
                print(f"{PREFIX} stage {stage.number} done in {time.perf_counter() - t0:.1f} s, "
                      f"last epoch's loss {loss_value:.4f}", file=sys.stderr)
    return False


def _announce(stage: Stage, run: Training, steps: int, params, start_epoch: int):
    """The stage's one line (epochs, steps, processes, rate, trainable parameters) and its
    progress bar."""
    w = dist.world_size()
    n_train = sum(p.numel() for p in params)
    split = f" ({w} processes x {run.batch_size // w})" if w > 1 else ""
    print(f"{PREFIX} stage {stage.number}: {stage.epochs} epochs, {steps} steps of "
          f"{run.batch_size} images{split}, lr {stage.lr:g}, warm-up {stage.warmup} epochs, "
          f"{n_train:,} trainable parameters", file=sys.stderr)
    return _progress(stage, start_epoch)


def _reuse_memory(stage: Stage, run: Training) -> bool:
    """CPU: whether freed activations stay mapped for the next step, where memory allows
    (simcne._heap); verbose says why not."""
    reuse = run.device.type == "cpu"
    if reuse and run.step_bytes is not None:
        reuse, why = reuse_fits(run.step_bytes)
        if run.verbose and not reuse:
            print(f"{PREFIX} stage {stage.number}: {why}", file=sys.stderr)
    return reuse


def _epoch_done(stage: Stage, epoch: int, loss_value: float, run: Training, bar, opt,
                model) -> bool:
    """After epoch ``epoch`` (1-based): the history, the progress bar, ``on_epoch_end``
    (checkpoints), then the callbacks; True when one of them, on any process, stops."""
    if run.history is not None:
        run.history.append((stage.number, epoch, loss_value))
    if bar is not None:
        bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.update()
    if run.on_epoch_end is not None:
        run.on_epoch_end(stage.number, epoch, opt)
    stop = any(cb(stage.number, epoch, loss_value, model) for cb in run.callbacks)
    return dist.any_process(stop)


def _epoch_chunks(order, steps: int, batch_size: int, stage: Stage, generator):
    """The index chunks of this process's share of each (global) batch of an epoch, and the
    step's extras (None for the paper's steps).

    With ``stage.pairs``, every image of the epoch gets its partner, drawn for the global
    batch (the same on every process), and a chunk is this process's images followed by their
    partners; the extras are told, step by step, which image each output row shows.
    """
    w, r = dist.world_size(), dist.rank()
    share = batch_size // w
    if stage.pairs is None and stage.bank is None:
        return (order[i * batch_size + r * share : i * batch_size + (r + 1) * share]
                for i in range(steps)), None
    from .neighbors import StepExtras

    used = order[: steps * batch_size].cpu()
    partner = stage.pairs.partners(used, generator) if stage.pairs is not None else used
    extras = StepExtras(stage.bank, generator)

    def chunks():
        for i in range(steps):
            g = used[i * batch_size : (i + 1) * batch_size].view(w, share)
            p = partner[i * batch_size : (i + 1) * batch_size].view(w, share)
            a, b = g[r], p[r]
            extras.set_batch(torch.cat([a, b]), torch.cat([b, a]),
                             torch.cat([g, p], 1).reshape(-1))
            yield torch.cat([a, b])

    return chunks(), extras


class _Lines:
    """Progress for a log file: one line every ``every`` epochs and at the last epoch.

    A progress bar redraws itself with carriage returns at every update, which in a file
    (CI, ``make demo > log``) is one long line of all the updates.
    """

    def __init__(self, stage: Stage, start_epoch: int, lines: int = 10):
        self.stage, self.epoch = stage, start_epoch
        self.every = max(1, math.ceil(stage.epochs / lines))
        self.loss = ""
        self.t0 = time.perf_counter()

    def set_postfix(self, loss):
        self.loss = loss

    def update(self):
        self.epoch += 1
        if self.epoch % self.every == 0 or self.epoch == self.stage.epochs:
            print(f"{PREFIX} stage {self.stage.number}: epoch {self.epoch}/{self.stage.epochs},"
                  f" loss {self.loss}, {time.perf_counter() - self.t0:.1f} s", file=sys.stderr,
                  flush=True)

    def close(self):
        pass


def _progress(stage: Stage, start_epoch: int):
    """A tqdm bar on a terminal or in Jupyter; elsewhere a line every tenth of the stage."""
    isatty = getattr(sys.stderr, "isatty", None)
    jupyter = type(sys.stderr).__module__.startswith("ipykernel")  # tqdm.auto: a widget
    if not (jupyter or (isatty and isatty())):
        return _Lines(stage, start_epoch)
    from tqdm.auto import tqdm

    return tqdm(total=stage.epochs, initial=start_epoch, desc=f"stage {stage.number}",
                unit="epoch", file=sys.stderr, leave=False)


def _diverged(stage: Stage, epoch: int, steps: int, loss_value: float):
    lr = lr_at((epoch + 1) * steps - 1, steps, stage.epochs, stage.warmup, stage.lr)
    what = (f"The loss became {loss_value}" if not math.isfinite(loss_value)
            else f"The network's weights became NaN or infinite (loss {loss_value:.4g})")
    raise TrainingDiverged(
        f"Training diverged: {what} in stage {stage.number}, epoch {epoch + 1} of "
        f"{stage.epochs}, at learning rate {lr:.4g} (the stage's 'lr' is {stage.lr:g}). "
        "Lower the learning rate or check the input images.",
        stage=stage.number, epoch=epoch + 1, lr=lr)


def device_batches(store, index_chunks, device: torch.device):
    """uint8 batches (B, C, H, W) of ``store`` on ``device``, one per chunk of indices.

    From a host store to a CUDA device, each batch is gathered on the host into one of two
    pinned buffers and copied on a side stream, which overlaps with the compute queued before
    it; the compute stream waits for the copy on the device, the host never waits for the
    compute. Before a pinned buffer is refilled, the host waits for the copy that read it two
    batches earlier (a copy, not the compute queued after it). Elsewhere, batches are
    gathered where the store is and moved with ``.to(device)``. A chunk may be a ``slice``
    of consecutive rows (nothing to gather). Devices are compared resolved
    (:func:`simcne.devices.same_device`: ``cuda`` is ``cuda:<current device>``).
    """
    if same_device(store.device, device):
        for idx in index_chunks:
            yield store.batch(idx)
        return
    if device.type != "cuda":
        for idx in index_chunks:
            yield store.batch(idx).to(device)
        return
    copy_stream = torch.cuda.Stream(device)
    pinned: list = [None, None]
    copied: list = [None, None]
    for i, idx in enumerate(index_chunks):
        x = store.batch(idx)
        slot = i % 2
        if copied[slot] is not None:
            copied[slot].synchronize()
        if pinned[slot] is None or pinned[slot].shape != x.shape:
            pinned[slot] = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        pinned[slot].copy_(x)
        with torch.cuda.stream(copy_stream):
            y = pinned[slot].to(device, non_blocking=True)
            copied[slot] = torch.cuda.Event()
            copied[slot].record(copy_stream)
        compute = torch.cuda.current_stream(device)
        compute.wait_event(copied[slot])
        y.record_stream(compute)  # allocated on the copy stream, used on the compute stream
        yield y


class _Rows:
    """An (n, d) float32 numpy array filled batch by batch from tensors on any device.

    From CUDA, each batch is copied asynchronously into pinned memory and moved into the
    array two batches later, after waiting for that copy only: the host keeps queueing work
    while the device computes, and the result is ordinary (pageable) memory.
    """

    def __init__(self, n: int):
        self.n, self.out, self.pending = n, None, []

    def add(self, start: int, t: torch.Tensor) -> None:
        t = torch.flatten(t, 1).float()
        if self.out is None:
            self.out = np.empty((self.n, t.shape[1]), np.float32)
        if not t.is_cuda:
            self.out[start : start + len(t)] = t.cpu().numpy()
            return
        buf = torch.empty(t.shape, dtype=torch.float32, pin_memory=True)
        buf.copy_(t, non_blocking=True)
        done = torch.cuda.Event()
        # the copy was queued on t's device's current stream (not the current device's)
        done.record(torch.cuda.current_stream(t.device))
        self.pending.append((done, buf, start))
        if len(self.pending) > 2:
            self._settle(1)

    def _settle(self, k: int) -> None:
        for done, buf, start in self.pending[:k]:
            done.synchronize()
            self.out[start : start + len(buf)] = buf.numpy()
        del self.pending[:k]

    def result(self) -> np.ndarray:
        self._settle(len(self.pending))
        return self.out


@torch.inference_mode()
def embed(model: nn.Module, store, *, image_size, device, batch_size: int | None = None,
          backbone_features: bool = False, resize=None, precision: bool | str = "auto",
          rows: range | None = None):
    """Model outputs (and backbone features) for the images of ``store``, no augmentation.

    ``rows`` (a range, default all) picks consecutive images, e.g. one process's share.

    Streams: batches of ``batch_size`` images (default on CUDA about 4 million pixels, 4,096
    images of 32x32, see :func:`simcne.devices.embed_batch_size`; 64 elsewhere, where
    larger batches were no faster but cost memory, BENCHMARKS.md) go
    through the model in eval mode without autograd (channels_last; the backbone under
    ``precision``'s autocast, the head in fp32), and each
    batch's outputs go into one preallocated (n, out_dim) array (from CUDA without waiting
    for the device at every batch). Backbone features are kept only when asked for.
    """
    with reuse_freed_memory(device.type == "cpu"):
        return _embed(model, store, image_size=image_size, device=device, batch_size=batch_size,
                      backbone_features=backbone_features, resize=resize, precision=precision,
                      rows=range(len(store)) if rows is None else rows)


def _embed(model, store, *, image_size, device, batch_size, backbone_features, resize,
           precision, rows):
    model.eval()
    autocast = autocast_for(device, precision)
    n, first = len(rows), rows.start
    if batch_size is None:
        batch_size = embed_batch_size(device, image_size or store.image_size)
    zs, hs = _Rows(n), _Rows(n)
    # consecutive rows: slices of the store, no index to gather (or copy to the device)
    chunks = (slice(first + s, first + min(n, s + batch_size)) for s in range(0, n, batch_size))
    for start, x in zip(range(0, n, batch_size), device_batches(store, chunks, device)):
        x = x.float().div_(255)
        if resize is not None:
            x = resize(x, image_size)
        x = channels_last(x)
        with autocast:
            z, h = model(x)
        if backbone_features and h is None:
            raise ValueError(
                "return_backbone_feat=True needs a model that returns (z, h); the given "
                "model returns only z."
            )
        zs.add(start, z)
        if backbone_features:
            hs.add(start, h)
    return (zs.result(), hs.result()) if backbone_features else zs.result()
