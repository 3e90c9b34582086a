"""The ``simcne`` command."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PREFIX = "[simcne]"

# Settings of `simcne demo`: digits (1,797 8x8 images), a CPU-sized backbone and short
# stages, so that it finishes in about two minutes on a 2-core CPU.
DEMO = dict(backbone="resnet_small", total_epochs=[100, 20, 40], batch_size=256,
            random_state=0)


class UserError(Exception):
    """An error caused by the command line or its inputs: one line, exit code 2."""


def _demo(args) -> int:
    import numpy as np

    from . import TSimCNE, knn_accuracy
    from ._io import save_npy

    from sklearn.datasets import load_digits

    out = Path(args.out)
    digits = load_digits()
    X = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    y = digits.target
    params = dict(DEMO)
    if args.total_epochs:
        params["total_epochs"] = args.total_epochs
    params["verbose"] = not args.quiet
    if not args.quiet:
        print(f"{PREFIX} demo: {len(X)} digits of 8x8 pixels, {params}", file=sys.stderr)
    t0 = time.perf_counter()
    est = TSimCNE(**params)
    Y = est.fit_transform(X, y)
    seconds = time.perf_counter() - t0
    acc = knn_accuracy(Y, y, k=15, test_size=0.2, random_state=0)
    save_npy(out / "digits_embedding.npy", Y)
    png = out / "digits.png"
    try:
        from .plot import _plt, plot_embedding, save_figure

        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 6))
        plot_embedding(Y, y, [str(i) for i in range(10)], ax=ax,
                       title=f"t-SimCNE of sklearn digits (kNN accuracy {acc:.3f})")
        save_figure(fig, png)
        plt.close(fig)
    except ImportError as e:
        print(f"{PREFIX} no figure: {e}", file=sys.stderr)
        png = None
    print(f"{PREFIX} trained in {seconds:.0f} s")
    print(f"{PREFIX} embedding: {out / 'digits_embedding.npy'}")
    if png:
        print(f"{PREFIX} figure: {png}")
    print(f"{PREFIX} 2-D kNN accuracy (k=15, stratified 20 % test split): {acc:.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simcne", description="t-SimCNE: 2-D maps of image datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="train on scikit-learn's digits and plot the map",
                          description="Train t-SimCNE on scikit-learn's 1,797 digits, write the "
                          "embedding (.npy) and a PNG scatter plot, print the kNN accuracy.")
    demo.add_argument("--out", default="simcne-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--total-epochs", type=int, nargs="+", metavar="N",
                      help=f"epochs per stage (default: {DEMO['total_epochs']})")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError, ImportError) as e:
        print(f"simcne: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simcne: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
