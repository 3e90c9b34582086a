"""Forward+backward throughput of named backbones on CPU (images/s).

Usage: OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/throughput.py resnet_small resnet18
"""

import argparse
import time

import torch

from simcne.models import make_model


def images_per_second(name, batch=256, size=32, steps=3):
    model = make_model(name, image_size=(size, size)).train()
    x = torch.randn(batch, 3, size, size)
    model(x)[0].square().mean().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        model(x)[0].square().mean().backward()
    return steps * batch / (time.perf_counter() - start)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}, {a.size}x{a.size}")
    for name in a.names:
        print(f"{name:>20s}: {images_per_second(name, a.batch, a.size, a.steps):8.1f} images/s")
