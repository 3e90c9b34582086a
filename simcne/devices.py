"""Where the work runs: one device name, what fits in a GPU's memory, cuDNN's autotuner.

Every comparison of devices in simcne uses the name :func:`resolve_device` gives: a tensor
on a GPU reports ``cuda:0``, and ``torch.device("cuda") != torch.device("cuda:0")``, so an
unresolved ``"cuda"`` would take a store already on the GPU for one on the host.
"""

from __future__ import annotations

import contextlib
import os

import torch

from . import dist

#: share of a GPU's free memory the training store and step may take together
GPU_SHARE = 0.9
#: pixels per batch of ``embed`` on CUDA: 4,096 images of 32x32
EMBED_PIXELS = 4096 * 32 * 32


def resolve_device(device="auto") -> torch.device:
    """``device`` as one name: ``"auto"`` is CUDA when available, else the CPU; a CUDA
    device without an index is ``cuda:<the current device>`` (under torchrun
    ``cuda:LOCAL_RANK``, each process on its own GPU). Other names are read by torch as
    they are (``"cpu"``, ``"cuda:1"``, ``"mps"``).

    Under torchrun with several processes on this machine, a ValueError naming 'device'
    when a process's GPU does not exist (``LOCAL_RANK`` >= the number of GPUs: more
    processes than GPUs) or when ``device`` names one GPU for all of them (``"cuda:0"``).
    """
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    given = device
    device = torch.device(device)
    if device.type == "cuda" and dist.launched_by_torchrun():
        _check_torchrun_gpu(device, given)
    if device.type == "cuda" and device.index is None:
        if dist.launched_by_torchrun():
            index = int(os.environ.get("LOCAL_RANK", "0") or 0)
        else:
            index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        device = torch.device("cuda", index)
    return device


def _check_torchrun_gpu(device: torch.device, given) -> None:
    """Under torchrun: each process of this machine on a GPU of its own (see
    :func:`resolve_device`)."""
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    here = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or int(
        os.environ.get("WORLD_SIZE", "1") or 1)
    name = given if isinstance(given, str) else str(given)
    if device.index is not None:
        if here > 1:
            raise ValueError(
                f"The 'device' parameter of TSimCNE is {name!r} under torchrun with {here} "
                "processes on this machine: every process would train on that one GPU. "
                "Pass device='cuda' (or 'auto'): each process then takes its own, "
                "cuda:LOCAL_RANK.")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if local >= count:
        raise ValueError(
            f"The 'device' parameter of TSimCNE is {name!r} under torchrun, and this "
            f"process's GPU is cuda:{local} (LOCAL_RANK={local}), but this machine has "
            f"{count} CUDA device(s): start at most {count} processes per machine "
            "(torchrun --nproc_per_node), or pass device='cpu'.")


def same_device(a, b) -> bool:
    """Whether ``a`` and ``b`` name the same device, each resolved first: a CUDA device
    without an index is the current one (``torch.device("cuda") != torch.device("cuda:0")``
    although a tensor on the first is on the second)."""
    return _indexed(torch.device(a)) == _indexed(torch.device(b))


def _indexed(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return torch.device("cuda", index)
    return device


def gpu_free_memory(device: torch.device) -> int:
    """Bytes a new allocation on CUDA ``device`` can take: what the driver reports free
    plus what torch's caching allocator holds but does not use."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def store_fits(store_bytes: int, free_bytes: int, step_bytes: int | None = None) -> bool:
    """Whether a training store of ``store_bytes`` goes into a GPU's ``free_bytes``.

    With the estimated memory of a training step, the store and the step together must take
    at most ``GPU_SHARE`` of the free memory; without one (``transform``), the store at most
    half of it, the rest left for the network's working memory.
    """
    if step_bytes is None:
        return store_bytes <= free_bytes // 2
    return store_bytes + step_bytes <= GPU_SHARE * free_bytes


def embed_batch_size(device: torch.device, image_size) -> int:
    """Images per batch of ``embed``: on CUDA about 4 million pixels a batch (4,096 images of
    32x32, 83 of 224x224), elsewhere 64 (larger CPU batches are no faster, see
    :func:`simcne.train.embed`)."""
    if device.type != "cuda":
        return 64
    h, w = image_size
    return max(1, min(4096, EMBED_PIXELS // max(1, h * w)))


@contextlib.contextmanager
def cudnn_autotune(device: torch.device):
    """``torch.backends.cudnn.benchmark`` on inside the block when ``device`` is CUDA.

    A training stage runs the same shapes at every step (the last, smaller batch of an
    epoch is dropped), so cuDNN's search for the fastest convolution is paid once per shape.
    The previous setting comes back afterwards.
    """
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
