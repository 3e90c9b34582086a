"""Several processes under torchrun: who am I, and the few collectives simcne needs.

Outside torchrun, or with a single process, simcne is rank 0 of 1 and every function here
does nothing (a gather returns its input). Under ``torchrun --nproc_per_node=N``,
:func:`init_from_env` joins the process group that torchrun's environment describes (NCCL
for CUDA, gloo otherwise) with a timeout, so that a process that died or hangs ends the
others with an error instead of a hang. Nothing else in simcne calls ``torch.distributed``.

Environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``
(set by torchrun); ``SIMCNE_DIST_TIMEOUT`` (seconds a process waits for the others in any
one collective, default 1800); ``SIMCNE_SYNC_BATCHNORM=0`` keeps BatchNorm per process
(default: statistics of the global batch, see :func:`global_batchnorm`).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_TIMEOUT_S = 1800


def _dist():
    import torch.distributed as dist

    return dist


def is_distributed() -> bool:
    """True when this process is one of several in an initialised process group."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return _dist().get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 outside a process group)."""
    return _dist().get_world_size() if is_distributed() else 1


def launch_rank() -> int:
    """This process's rank, also before the process group is joined (then torchrun's
    ``RANK`` variable; 0 when run as one process)."""
    if is_distributed():
        return rank()
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    """True in the process that prints, writes files and plots: rank 0.

    The one test of "is this the process that speaks and writes" in simcne. It is right
    before the process group is joined too, as the command asks it before and after
    ``fit``: it reads :func:`launch_rank`, torchrun's ``RANK`` until :func:`init_from_env`
    has run; outside torchrun it is True. :func:`rank` is for a rank used as a number (a
    slice of the batch, a generator's seed, whose saved random state a process restores).
    """
    return launch_rank() == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) started this process as one of several."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def timeout_s() -> float:
    value = os.environ.get("SIMCNE_DIST_TIMEOUT", "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(
            f"SIMCNE_DIST_TIMEOUT must be a number of seconds, got {value!r}") from None


def init_from_env(device: torch.device) -> torch.device:
    """Join torchrun's process group (if launched as one of several); return the device to use.

    A CUDA device without an index becomes ``cuda:LOCAL_RANK``. The backend is NCCL for
    CUDA and gloo otherwise. A process group the caller initialised already is used as it is.
    Outside torchrun this returns ``device`` and initialises nothing.
    """
    if not launched_by_torchrun():
        return device
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist = _dist()
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build; "
                           "run simcne as one process (without torchrun)")
    if not dist.is_initialized():
        import inspect

        kwargs = {}
        if device.type == "cuda" and "device_id" in inspect.signature(
                dist.init_process_group).parameters:
            kwargs["device_id"] = device  # NCCL knows its GPU from the start (barriers)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s()),
                                **kwargs)
        atexit.register(_leave)
    return device


def _leave() -> None:
    dist = _dist()
    if dist.is_initialized():
        dist.destroy_process_group()


def _comm_device(t: torch.Tensor) -> torch.device:
    """Where the backend wants tensors: the current CUDA device for NCCL, else the CPU."""
    if _dist().get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each process the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, t):
        dist = _dist()
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        dist = _dist()
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every process's loss depends on every process's rows
        n = grad.shape[0] // dist.get_world_size()
        r = dist.get_rank()
        return grad[r * n : (r + 1) * n]


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Every process's ``t`` (all the same shape), concatenated along dim 0 in rank order.

    Gradients flow back: each process receives, for its own rows, the sum over processes of
    the gradients reaching them. Outside a process group this returns ``t``.
    """
    if not is_distributed():
        return t
    comm = _comm_device(t)
    return _GatherWithGrad.apply(t.to(comm)).to(t.device)


def shard(n: int) -> range:
    """This process's contiguous share of ``range(n)`` (the first ``n % W`` ranks get one more)."""
    w, r = world_size(), rank()
    return range(n * r // w, n * (r + 1) // w)


def gather_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """The (n, ...) array whose :func:`shard` parts the processes hold; every process gets it."""
    if not is_distributed():
        return rows
    w = world_size()
    size = max(len(range(n * r // w, n * (r + 1) // w)) for r in range(w))
    t = torch.from_numpy(np.ascontiguousarray(rows))
    comm = _comm_device(t)
    padded = torch.zeros((size,) + tuple(t.shape[1:]), dtype=t.dtype, device=comm)
    padded[: len(t)] = t.to(comm)
    parts = [torch.empty_like(padded) for _ in range(w)]
    _dist().all_gather(parts, padded)
    out = [p[: n * (r + 1) // w - n * r // w].cpu() for r, p in enumerate(parts)]
    return torch.cat(out).numpy()


def mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over processes (``t`` itself outside a process group)."""
    if not is_distributed():
        return t
    s = t.detach().to(_comm_device(t), copy=True)
    _dist().all_reduce(s)
    return (s / world_size()).to(t.device)


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any of them."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], device=_comm_device(torch.empty(0)))
    _dist().all_reduce(t, op=_dist().ReduceOp.MAX)
    return bool(t.item())


def all_gather_object(obj) -> list:
    """Every process's ``obj`` (picklable), in rank order (``[obj]`` outside a process group)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def on_main(fn, *args, **kwargs):
    """Run ``fn`` on rank 0 only and give its result, or raise its exception, everywhere.

    What rank 0 reads (a checkpoint, a random seed) is what every process then uses, so
    the processes agree even without a shared file system.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    box = [None]
    if is_main():
        try:
            box[0] = ("ok", fn(*args, **kwargs))
        except Exception as e:  # handed to every process, raised there
            box[0] = ("error", e)
    _dist().broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def on_every(fn, *args, **kwargs):
    """Run ``fn`` on every process; when it raises on any of them, it raises on all.

    For a check each process makes for itself (its memory) before a collective: a process
    that refused alone would leave the others waiting in the collective until the timeout.
    The failing process raises its own exception; the others raise one of the same kind
    (a ValueError stays a ValueError) that names the rank and repeats its message.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    try:
        result, failed = fn(*args, **kwargs), None
    except Exception as e:  # told to every process, raised everywhere
        result, failed, mine = None, (isinstance(e, ValueError), str(e)), e
    seen = all_gather_object(failed)
    for r, f in enumerate(seen):
        if f is None:
            continue
        if r == rank():
            raise mine
        kind = ValueError if f[0] else RuntimeError
        raise kind(f"rank {r} of {world_size()}: {f[1]}")
    return result


def broadcast_module(module: nn.Module) -> None:
    """Give every process rank 0's parameters and buffers (in place)."""
    if not is_distributed():
        return
    for t in module.state_dict(keep_vars=True).values():
        comm = _comm_device(t)
        buf = t.data.to(comm)
        _dist().broadcast(buf, src=0)
        if buf is not t.data:
            t.data.copy_(buf)


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel (``model`` itself outside a process group).

    Buffers are not broadcast at each forward: under :func:`global_batchnorm` every process
    computes the same running statistics.
    """
    if not is_distributed():
        return model
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    # torch >= 2.13 names it forward_sync_buffers (and still syncs them once, at the start)
    name = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters
            else "broadcast_buffers")
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
               **{name: False})


# -- BatchNorm over the global batch -----------------------------------------------------

class GlobalBatchNorm(nn.Module):
    """A BatchNorm layer whose training statistics are those of the global batch.

    Without a host sync, on every device (``torch.nn.SyncBatchNorm`` has none on the CPU,
    and on CUDA it waits for the device at every layer). It takes over a
    ``_BatchNorm``'s parameters and buffers (the same tensors, under the same names, so the
    state_dict keys do not change). In training, each process computes its mean and
    (biased) variance per channel, the processes gather them with gradients and combine them
    (Chan's parallel formula), and the input is normalised with the global ones; the running
    statistics are updated as ``nn.BatchNorm`` does. In eval mode it is ``F.batch_norm``
    with the running statistics.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.num_features, self.eps, self.momentum = bn.num_features, bn.eps, bn.momentum
        self.affine, self.track_running_stats = bn.affine, bn.track_running_stats
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked)
        self.train(bn.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.running_mean is not None:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        local_mean = xf.mean(dims)
        local_var = xf.var(dims, unbiased=False)
        count = torch.full((1,), x.numel() // c, dtype=torch.float32, device=x.device)
        stats = all_gather_with_grad(torch.cat([local_mean, local_var, count])[None])
        means, variances, counts = stats[:, :c], stats[:, c : 2 * c], stats[:, 2 * c :]
        n = counts.sum()
        mean = (counts * means).sum(0) / n
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def _sync_enabled() -> bool:
    return os.environ.get("SIMCNE_SYNC_BATCHNORM", "1").strip() not in ("0", "false", "no")


@contextlib.contextmanager
def global_batchnorm(model: nn.Module, device: torch.device):
    """While the block runs, ``model``'s BatchNorm layers use the global batch's statistics.

    Each ``_BatchNorm`` is swapped for :class:`GlobalBatchNorm` (on every backend, NCCL
    too: ``torch.nn.SyncBatchNorm`` selects with a boolean mask at every forward, a host
    sync per layer, about 20 a step of ResNet18), sharing its parameters and buffers; the
    original layers are put back afterwards, holding the trained values. Then the forward pass of N
    processes on their shares equals one process's on the whole batch (to float rounding).
    Nothing happens outside a process group or with ``SIMCNE_SYNC_BATCHNORM=0``.
    """
    if not is_distributed() or not _sync_enabled():
        yield model
        return
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, nn.modules.batchnorm._BatchNorm)
                    and not isinstance(child, (nn.SyncBatchNorm, GlobalBatchNorm))):
                new = GlobalBatchNorm(child)
                setattr(parent, name, new)
                swapped.append((parent, name, child, new))
    try:
        yield model
    finally:
        for parent, name, old, new in reversed(swapped):
            with torch.no_grad():
                for key, value in new.state_dict(keep_vars=True).items():
                    target = getattr(old, key)
                    if target is not None and target is not value:
                        target.copy_(value)
            old.train(new.training)
            setattr(parent, name, old)


@contextlib.contextmanager
def explain_timeouts():
    """Re-raise a collective's timeout as an error that says what probably happened."""
    try:
        yield
    except RuntimeError as e:
        if not is_distributed() or "timed out" not in str(e).lower():
            raise
        raise RuntimeError(
            f"rank {rank()} of {world_size()} waited more than {timeout_s():g} s for the "
            "other processes (SIMCNE_DIST_TIMEOUT): one of them has failed or hangs. "
            f"The backend said: {str(e).splitlines()[0]}") from e


def barrier() -> None:
    if is_distributed():
        _dist().barrier()
