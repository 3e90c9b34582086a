"""How fast a ResNet18 training step runs against the CPU's own matrix-multiply rate.

Issue 27 asks for simcne at 3x tsimcne 0.3.12's CPU speed at equal work (ResNet18 with the
3x3 stride-1 stem, fp32, one thread). Both spend about 90 % of a fit in the same oneDNN
convolutions (BENCHMARKS.md, "CPU speed against the reference code"), so the question is how
much faster those convolutions can run at all. This measures, on one thread:

- the rate of a large fp32 matrix product (``a @ b``, n = 1024 and 2048): what this core's
  vector units deliver on the friendliest dense work there is, a practical ceiling;
- one training step (forward, a scalar loss, backward) of ResNet18 plus the MLP head on
  ``--views`` views of 28x28 (256: the two views of a batch of 128, as in the comparison with
  the reference), counted in floating-point operations by
  ``torch.utils.flop_counter.FlopCounterMode``, in the reference's layout (three channels,
  NCHW) and in simcne's (one channel for a grey image, channels-last);

and prints each as GFLOP/s and the ceiling's multiple of the reference layout's rate: the
most any code could gain over the reference's convolutions on this CPU without doing less
arithmetic. Best of ``--repeats`` timings after one warm-up run.

Usage::

    PYTHONPATH=. python benchmarks/flop_rate.py                # the table
    PYTHONPATH=. python benchmarks/flop_rate.py --views 64     # a quicker, smaller step
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # vs_reference's machine line


def best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn``, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_rate(n: int, repeats: int) -> float:
    """GFLOP/s of an fp32 n x n matrix product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, repeats) / 1e9


def step_rate(channels: int, layout, views: int, repeats: int) -> tuple[float, float, float]:
    """(GFLOP a step, seconds, GFLOP/s) of ResNet18 + head, forward and backward."""
    from simcne.models import make_backbone
    from simcne.models.heads import mlp_head

    torch.manual_seed(0)
    model = nn.Sequential(make_backbone("resnet18", channels), mlp_head(512))
    model = model.to(memory_format=layout)
    x = torch.rand(views, channels, 28, 28).contiguous(memory_format=layout)

    def step():
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    gflop = counter.get_total_flops() / 1e9
    seconds = best_seconds(step, repeats)
    return gflop, seconds, gflop / seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--views", type=int, default=256, help="views in a step (2 x batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from vs_reference import machine

    print(f"{machine(torch.device('cpu'))}; {a.threads} thread(s), fp32, best of {a.repeats}")
    peak = max(matmul_rate(n, a.repeats + 2) for n in (1024, 2048))
    rows = {"matmul": {"gflops": peak}}
    print(f"| work | GFLOP a step | seconds | GFLOP/s | share of the matrix product's rate |")
    print("|---|---:|---:|---:|---:|")
    print(f"| fp32 matrix product (n = 1024, 2048; the best) | | | {peak:.1f} | 100 % |")
    for name, channels, layout in (("reference layout: 3 channels, NCHW", 3, torch.contiguous_format),
                                   ("simcne layout: 1 channel, channels-last", 1, torch.channels_last)):
        gflop, seconds, rate = step_rate(channels, layout, a.views, a.repeats)
        rows[name] = {"gflop": gflop, "seconds": seconds, "gflops": rate}
        print(f"| ResNet18 step, {a.views} views of 28x28, {name} | {gflop:.0f} | "
              f"{seconds:.2f} | {rate:.1f} | {100 * rate / peak:.0f} % |")
    ref = rows["reference layout: 3 channels, NCHW"]["gflops"]
    print(f"\nthe matrix product's rate is {peak / ref:.2f}x the reference layout's step rate: "
          f"the most a step at equal arithmetic could gain over the reference's on this CPU")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
