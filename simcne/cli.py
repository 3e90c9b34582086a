"""The ``simcne`` command: ``fit``, ``transform``, ``plot``, ``write-beton`` and ``demo``.

A shell over the public API. The flags of ``simcne fit`` map one-to-one onto
:class:`simcne.TSimCNE`'s parameters and are made from the one parameter table
(:mod:`simcne.flags`); what the command writes (CSV, JSON, the report, figures, map.html)
is in :mod:`simcne.outputs`. Parameters whose values are Python objects (``model``,
``callbacks``, ``data_transform`` as a callable, modules as ``backbone`` or
``projection_head``) are Python-only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from . import dist
from .data.labels import read_labels
from .flags import add_param_flags, params_from_args, with_flag, with_settings
from .outputs import (StageClock, fit_report, read_fit_output, stages_run, write_csv,
                      write_figures, write_json, write_map)
from .interactive import MAX_POINTS
from .params import scalar_if_one
from .train import PREFIX

from .presets import DEMO, PRESETS, describe_presets  # noqa: F401  (cli.DEMO, cli.PRESETS)

#: the checkpoint that `simcne fit` keeps in --out unless --no-checkpoint
CHECKPOINT_NAME = "checkpoint.pt"
#: the model file that --save-diverged writes when training diverges
DIVERGED_NAME = "model-diverged.pt"


class UserError(Exception):
    """An error caused by the command line or its inputs: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error becomes one ``simcne: error: ...`` line (exit code 2)."""

    def error(self, message):
        raise UserError(f"{message} (see '{self.prog} --help')")


def _add_read_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reading DATA (see simcne.data.read_path)")
    group.add_argument("--split", choices=("train", "test", "all"), default=None,
                       help="CIFAR, IDX and built-in datasets: which split (default: all)")
    group.add_argument("--skip-corrupt", action="store_true",
                       help="image folders: skip undecodable files with a warning")
    group.add_argument("--label-type", choices=("fine", "coarse"), default=None,
                       help="CIFAR-100: fine or coarse labels (default: fine)")
    group.add_argument("--read-size", type=int, nargs="+", metavar="N", default=None,
                       help="H [W]: bring every image of a folder (or .beton) to this size "
                            "while reading (scaled to cover it, the centre cropped); without "
                            "it, images of differing sizes are read at fit's --image-size or "
                            "the model's size")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="image folders: decoding threads (default: one per core, <= 8)")
    group.add_argument("--labels", metavar="FILE", default=None,
                       help="labels to use instead of those found with DATA: a .npy file, a "
                            ".csv with a 'label' column, or a text file with one per line")
    group.add_argument("--no-cache", action="store_true",
                       help="read DATA into memory, with no decode-once cache file (for "
                            "one-off runs on small data; see --cache)")


def _read_options(args) -> dict:
    opts = {}
    if args.split is not None:
        opts["split"] = args.split
    if args.skip_corrupt:
        opts["skip_corrupt"] = True
    if args.label_type is not None:
        opts["label_type"] = args.label_type
    if args.read_size is not None:
        if len(args.read_size) > 2:
            raise UserError(f"--read-size takes H or H W, got {len(args.read_size)} numbers: "
                            f"{' '.join(map(str, args.read_size))}")
        opts["image_size"] = scalar_if_one(args.read_size)
    if args.workers is not None:
        opts["workers"] = args.workers
    return opts


def _read_data(args, mixed_size=None, cache=None):
    """DATA as an ImageStore; ``mixed_size``: the size for images that differ in size;
    ``cache``: the folder of the decode-once cache (False: none)."""
    from . import data

    opts = _read_options(args)
    opts["cache"] = cache
    if mixed_size is not None and "image_size" not in opts:
        opts["mixed_size"] = mixed_size  # --image-size brings a mixed folder to one size
    store = data.load(args.data, **opts)
    if store.meta.get("resized_to"):
        h, w = store.meta["resized_to"]
        _say(args, f"the images of {args.data!r} differ in size: read at {h}x{w}, the "
                   "network's --image-size")
    if args.labels is not None:
        labels, names = read_labels(args.labels)
        if len(labels) != len(store):
            raise UserError(f"--labels {args.labels!r} has {len(labels)} labels, but DATA "
                            f"{args.data!r} has {len(store)} images")
        store.labels = labels
        store.class_names = names
    return store


def _say(args, *lines) -> None:
    if not getattr(args, "quiet", False) and dist.is_main():
        for line in lines:
            print(f"{PREFIX} {line}", flush=True)


def _check_device(params: dict) -> None:
    import torch

    dev = params.get("device")
    if isinstance(dev, str) and dev.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {dev}: CUDA is not available on this machine "
                        "(use --device cpu or auto)")


def _fit(args) -> int:
    from . import TSimCNE, TrainingDiverged
    from ._io import save_npy

    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {args.out!r} is a file: expected a folder (made if missing)")
    params = _fit_params(args, out)
    _check_device(params)
    clock = StageClock()
    est = TSimCNE(**params, callbacks=clock)
    try:
        est._validate_params()  # bad flag values fail before a long read, not after it
    except ValueError as e:
        raise UserError(with_flag(str(e))) from None
    store = _read_data(args, mixed_size=params.get("image_size"), cache=params.get("cache"))
    t_read = time.perf_counter() - t_start
    _say(args, f"read {len(store)} images of {store.image_size[0]}x{store.image_size[1]} "
               f"pixels, {store.channels} channel(s), from {args.data!r} in {t_read:.1f} s")
    clock.start = t_fit0 = time.perf_counter()
    try:
        est.fit(store)
    except TrainingDiverged as e:
        if args.save_diverged and e.restored:
            raise UserError(f"{e} {_save_diverged(est, store, out)}") from None
        raise
    t_fit = time.perf_counter() - t_fit0
    est.set_params(callbacks=None)  # the clock is no parameter of the model
    if not dist.is_main():
        return 0  # under torchrun, rank 0 writes the outputs
    Y = est.embedding_
    labels = est.labels_
    written = []

    def done(name):
        written.append(name)
        return out / name

    save_npy(done("embedding.npy"), Y)
    write_csv(done("embedding.csv"), Y, labels, store.class_names if labels is not None else None,
              store.paths)
    est.save(done("model.pt"))
    acc, acc_note, acc_how = _knn(Y, labels)
    figures, fig_note = [], None
    if not args.no_plots and Y.shape[1] >= 2:
        try:
            figures = write_figures(est, store, out, acc)
            written += figures
        except ImportError as e:
            fig_note = str(e)
            warnings.warn(f"no figures: {e}", stacklevel=1)
        try:
            write_map(est, store, out / "map.html", acc)
            written.append("map.html")
        except ImportError as e:
            fig_note = "; ".join(filter(None, [fig_note, str(e)]))
            warnings.warn(f"no map.html: {e}", stacklevel=1)
    end = time.perf_counter()
    report = fit_report(
        est, store, command="simcne " + " ".join(getattr(args, "argv", []) or []),
        data=os.path.abspath(args.data) if os.path.exists(args.data) else args.data,
        knn=(acc, acc_note, acc_how), outputs=written + ["report.json"], figures_note=fig_note,
        started=started, timings={"read": round(t_read, 3),
                                  **clock.seconds(stages_run(est), t_fit0 + t_fit),
                                  "fit": round(t_fit, 3),
                                  "outputs": round(end - t_fit0 - t_fit, 3),
                                  "total": round(end - t_start, 3)})
    write_json(out / "report.json", report)
    _say(args, f"fitted in {t_fit:.1f} s; wrote {', '.join(report['outputs'])} to {out}")
    if acc is not None:
        _say(args, f"kNN accuracy of the embedding (k=15, stratified 20 % test split): {acc:.3f}")
    return 0


def _fit_params(args, out: Path) -> dict:
    """TSimCNE's parameters from the preset and the flags, with the run's checkpoint in
    ``out`` (unless --no-checkpoint) and --no-cache."""
    preset = PRESETS.get(args.preset or "", {})
    params = {**preset, **params_from_args(args)}
    if "data_transform" in preset and "data_transform" in params:
        params["data_transform"] = with_settings(preset["data_transform"],
                                                 params["data_transform"])
    if args.no_checkpoint:
        if params.get("checkpoint") is not None:
            raise UserError("--no-checkpoint and --checkpoint FILE contradict each other: "
                            "give one of them")
        params["checkpoint"] = None
    elif "checkpoint" not in params:
        params["checkpoint"] = os.fspath(out / CHECKPOINT_NAME)  # survives a crash
    if args.no_cache:
        if params.get("cache") is not None:
            raise UserError("--no-cache and --cache DIR contradict each other: give one of them")
        params["cache"] = False
    return params


def _knn(Y, labels) -> tuple:
    """The report's kNN accuracy: ``(accuracy or None, why not or None, how it was
    computed)``."""
    import numpy as np

    from .metrics import knn_summary

    acc, acc_note, acc_how = None, None, {}
    if labels is not None:
        if len(np.unique(labels)) < 2:
            acc_note = "only one class"
        else:
            try:
                acc, acc_how = knn_summary(Y, labels, k=15)
            except ValueError as e:
                acc_note = f"not computed: {e}"
    return acc, acc_note, acc_how


def _save_diverged(est, store, out: Path) -> str:
    """--save-diverged: write the network of the last good checkpoint as a model file."""
    import numpy as np

    Y = est.transform(store)
    if not np.isfinite(Y).all():
        return "Its embedding is not finite either: no model file written."
    est.set_params(callbacks=None)
    est.embedding_ = Y
    est.save(out / DIVERGED_NAME)
    return (f"The model so far (that checkpoint's network) is in "
            f"'{os.fspath(out / DIVERGED_NAME)}'.")


def _transform(args) -> int:
    from . import TSimCNE
    from ._io import save_npy

    out = Path(args.out)
    if out.is_dir() or args.out.endswith(("/", os.sep)) or (
            not out.exists() and out.suffix == ""):
        out = out / "embedding.npy"  # a folder: embedding.npy (and embedding.csv) in it
    elif out.suffix.lower() not in (".npy", ".csv"):
        raise UserError(f"--out {args.out!r}: expected a folder or a file name ending in "
                        ".npy or .csv")
    if args.device is not None:
        _check_device({"device": args.device})
    est = TSimCNE.load(args.model, device=args.device or "auto")
    store = _read_data(args, mixed_size=list(est.image_size_),
                       cache=False if args.no_cache else args.cache)
    Y = est.transform(store)
    if not dist.is_main():
        return 0  # under torchrun, rank 0 writes the outputs
    csv_path = None
    if out.suffix.lower() == ".csv":
        csv_path = out
    else:
        save_npy(out, Y)
        if args.csv is not None:
            csv_path = out.with_suffix(".csv") if args.csv is True else Path(args.csv)
    if csv_path is not None:
        write_csv(csv_path, Y, store.labels, store.class_names if store.labels is not None
                  else None, store.paths)
    files = [] if out.suffix.lower() == ".csv" else [out]
    files += [csv_path] if csv_path is not None else []
    _say(args, f"embedded {len(Y)} images into {Y.shape[1]} dimensions: "
               + ", ".join(os.fspath(f) for f in files))
    return 0


def _plot(args) -> int:
    from .persist import read_model_file
    from .plot import _plt, plot_embedding, plot_loss, plot_stages, plot_thumbnails, save_figure

    Y, labels, names, model, data = read_fit_output(args.source)
    if args.labels is not None:
        labels, names = read_labels(args.labels)
    if labels is not None and len(labels) != len(Y):
        raise UserError(f"the labels have {len(labels)} entries but the embedding has "
                        f"{len(Y)} points")
    if args.kind == "html":
        return _plot_html(args, Y, labels, names, args.data or data)
    plt = _plt()
    if args.kind == "embedding":
        fig, ax = plt.subplots(figsize=(7, 6))
        plot_embedding(Y, labels, names, ax=ax, title=args.title)
    elif args.kind in ("stages", "loss"):
        if model is None:
            raise UserError(f"--kind {args.kind} needs the model file: give a folder written "
                            "by 'simcne fit' (with model.pt) or a model file as SOURCE")
        state = read_model_file(model)
        if args.kind == "stages":
            axes = plot_stages(state["stage_embeddings"], labels, names)
            fig = axes[0].figure
        else:
            ax = plot_loss(state["loss_history"])
            fig = ax.figure
        if args.title:
            fig.suptitle(args.title)
    else:
        data = args.data or data
        if data is None:
            raise UserError("--kind thumbnails needs the images: pass --data DATA")
        from . import data as _data

        store = _data.load(data)
        if len(store) != len(Y):
            raise UserError(f"--data {data!r} has {len(store)} images but the embedding has "
                            f"{len(Y)} points")
        ax = plot_thumbnails(Y, store, labels=labels, class_names=names, n=args.n,
                             zoom=args.zoom)
        fig = ax.figure
        if args.title:
            ax.set_title(args.title)
    save_figure(fig, args.out)
    plt.close(fig)
    _say(args, f"wrote {args.out}")
    return 0


def _plot_html(args, Y, labels, names, data) -> int:
    from .plot import interactive_map

    store, files = None, None
    if data is not None:
        from . import data as _data

        # images of differing sizes: at the thumbnails' size (a square, centre-cropped)
        store = _data.load(data, **({"mixed_size": args.thumbnail_size}
                                    if isinstance(data, (str, os.PathLike)) else {}))
        if len(store) != len(Y):
            raise UserError(f"--data {data!r} has {len(store)} images but the embedding has "
                            f"{len(Y)} points")
        files = store.paths
        if labels is None:
            labels, names = store.labels, store.class_names
        names = names or store.class_names
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {args.out!r}: --kind html writes a file ending in .html")
    interactive_map(Y, store, labels, names, files, path=out, title=args.title,
                    thumbnail_size=args.thumbnail_size,
                    max_points=None if args.max_points == 0 else args.max_points)
    _say(args, f"wrote {args.out}" + ("" if store is not None else
                                      " (no thumbnails: pass --data DATA for them)"))
    return 0


def _write_beton(args) -> int:
    from .data.beton import write_beton

    path = write_beton(args.data, args.out, mode=args.mode, jpeg_quality=args.quality,
                       max_resolution=args.max_resolution, page_size=args.page_size)
    size = os.path.getsize(path)
    print(f"{PREFIX} wrote {path} ({size / 2**20:.1f} MiB, mode {args.mode})")
    return 0


def _demo(args) -> int:
    """``simcne demo`` is ``simcne fit digits --preset demo``: the same path and outputs."""
    argv = ["fit", "digits", "--out", args.out, "--preset", "demo"]
    if args.total_epochs:
        argv += ["--total-epochs", *map(str, args.total_epochs)]
    if args.quiet:
        argv.append("--quiet")
    fit_args = build_parser().parse_args(argv)
    fit_args.argv = argv
    return _fit(fit_args)


FIT_EPILOG = """\
writes into DIR: embedding.npy, embedding.csv (x, y[, z ...], label, class_name, file),
model.pt (TSimCNE.save; read it with TSimCNE.load or 'simcne transform'), report.json
(parameters, sizes, timings, kNN accuracy, versions), the figures embedding.png,
stages.png, loss.png and thumbnails.png, and map.html (the interactive map: open it in a
browser, offline; needs bokeh).

examples:
  simcne fit digits --out digits-map --preset demo    # about 0.98 kNN in 1-2 CPU minutes
  simcne fit my_images/ --out my-map --read-size 64 64 --image-size 32 32
  simcne fit cifar10.beton --out cifar-map --image-size 32 32
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simcne", description="t-SimCNE: 2-D maps of image datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fit_command(sub)
    _add_transform_command(sub)
    _add_plot_command(sub)
    _add_write_beton_command(sub)
    _add_demo_command(sub)
    return parser


def _add_fit_command(sub) -> None:
    """``simcne fit``: train, write the map, the model, the report and the figures."""
    fit = sub.add_parser(
        "fit", help="train t-SimCNE on a dataset and write the map, model, report, figures",
        description="Train t-SimCNE on DATA and write the embedding, the model, a report and "
        "figures into --out.", epilog=FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("data", metavar="DATA",
                     help="an image folder (one sub-folder per class gives labels), .npy/.npz, "
                          "IDX, CIFAR, .beton, or a built-in name (digits, fashion-mnist)")
    fit.add_argument("--out", required=True, metavar="DIR", help="output folder (made if missing)")
    fit.add_argument("--no-plots", action="store_true",
                     help="write no figures and no map.html")
    fit.add_argument("--save-diverged", action="store_true",
                     help=f"if training diverges (NaN or infinite loss), also write the "
                          f"network of the last good checkpoint as DIR/{DIVERGED_NAME} "
                          "(readable by TSimCNE.load and 'simcne transform'); the checkpoint "
                          "is kept either way")
    fit.add_argument("--no-checkpoint", action="store_true",
                     help=f"keep no checkpoint (by default the run is kept in "
                          f"DIR/{CHECKPOINT_NAME} while it trains, so that the same command "
                          "run again after a crash goes on from it; removed once it completes)")
    fit.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="start from a named set of parameters, which the flags below "
                          "override (" + describe_presets() + ")")
    add_param_flags(fit)
    _add_read_flags(fit)
    fit.set_defaults(func=_fit)


def _add_transform_command(sub) -> None:
    """``simcne transform``: embed images with a saved model."""
    tr = sub.add_parser("transform", help="embed images with a saved model",
                        description="Embed DATA with a model written by 'simcne fit' "
                        "(model.pt) or TSimCNE.save, without augmentation.")
    tr.add_argument("model", metavar="MODEL", help="model file (model.pt)")
    tr.add_argument("data", metavar="DATA", help="images, anything 'simcne fit' reads")
    tr.add_argument("--out", required=True, metavar="FILE|DIR",
                    help="FILE.npy (or FILE.csv for CSV only), or a folder (made if "
                         "missing; a name without a suffix is one) to hold embedding.npy")
    tr.add_argument("--csv", nargs="?", const=True, default=None, metavar="FILE.csv",
                    help="also write CSV (x, y, label, class_name, file); default name: "
                         "--out with .csv (embedding.csv in a folder)")
    tr.add_argument("--device", default=None, metavar="DEV",
                    help="where to run the network (default: auto)")
    tr.add_argument("--quiet", action="store_true", help="print nothing on success")
    tr.add_argument("--cache", metavar="DIR", default=None,
                    help="folder of the decode-once cache (default: $SIMCNE_CACHE/stores, "
                         "else ~/.cache/simcne/stores)")
    _add_read_flags(tr)
    tr.set_defaults(func=_transform)


def _add_plot_command(sub) -> None:
    """``simcne plot``: a figure from an embedding or a fit's folder."""
    pl = sub.add_parser("plot", help="draw a figure from an embedding or a 'simcne fit' folder",
                        description="Draw a figure of an embedding: SOURCE is an embedding "
                        ".npy, a model file, or a folder written by 'simcne fit' (labels, "
                        "class names, stages and losses are then read from it).")
    pl.add_argument("source", metavar="SOURCE", help="EMBEDDING.npy, MODEL.pt or DIR")
    pl.add_argument("--out", required=True, metavar="FILE.png",
                    help="the figure to write (FILE.html for --kind html)")
    pl.add_argument("--kind", choices=("embedding", "stages", "loss", "thumbnails", "html"),
                    default="embedding", help="what to draw (default: embedding); html: the "
                    "interactive map, one offline page (needs bokeh: pip install "
                    "'simcne[html]')")
    pl.add_argument("--labels", metavar="FILE", default=None,
                    help="labels: .npy, a .csv with a 'label' column, or one per line")
    pl.add_argument("--data", metavar="DATA", default=None,
                    help="the images, for --kind thumbnails and html (default: the DATA of "
                         "the fit)")
    pl.add_argument("--n", type=int, default=64, metavar="N",
                    help="thumbnails: at most this many (default: 64)")
    pl.add_argument("--zoom", type=float, default=1.0, metavar="Z",
                    help="thumbnails: their size (default: 1)")
    pl.add_argument("--thumbnail-size", type=int, default=28, metavar="PX",
                    help="html: the longer side of the thumbnails in pixels (default: 28)")
    pl.add_argument("--max-points", type=int, default=MAX_POINTS, metavar="N",
                    help="html: at most N points answer hover (with thumbnails); a larger "
                         "embedding is thinned to a random sample of N and drawn whole as a "
                         "density beneath; 0: every point (default: %(default)s)")
    pl.add_argument("--title", default=None, metavar="TEXT", help="figure title")
    pl.add_argument("--quiet", action="store_true", help="print nothing on success")
    pl.set_defaults(func=_plot)


def _add_write_beton_command(sub) -> None:
    """``simcne write-beton``: a dataset into an FFCV .beton file."""
    wb = sub.add_parser("write-beton", help="write a dataset to an FFCV .beton file",
                        description="Write a dataset (anything 'simcne fit' reads) to an FFCV "
                        ".beton file, readable by FFCV and by simcne.")
    wb.add_argument("data", metavar="DATA", help="the dataset")
    wb.add_argument("out", metavar="OUT", help="the .beton file to write")
    wb.add_argument("--mode", choices=("raw", "jpg"), default="raw",
                    help="store raw pixels or JPEG (default: raw)")
    wb.add_argument("--quality", type=int, default=90, metavar="Q",
                    help="JPEG quality 1-100 (default: 90)")
    wb.add_argument("--max-resolution", type=int, default=None, metavar="N",
                    help="shrink images whose longer side exceeds N pixels")
    wb.add_argument("--page-size", type=int, default=None, metavar="BYTES",
                    help="page size in bytes, a power of two (default: 2 MiB or more)")
    wb.set_defaults(func=_write_beton)


def _add_demo_command(sub) -> None:
    """``simcne demo``: simcne fit digits --preset demo."""
    demo = sub.add_parser("demo", help="train on scikit-learn's digits and plot the map",
                          description="Train t-SimCNE on scikit-learn's 1,797 digits and write "
                          "what 'simcne fit' writes (embedding, model, report, figures, "
                          "map.html) into --out; the same as 'simcne fit digits --preset demo "
                          "--out DIR'.")
    demo.add_argument("--out", default="simcne-demo", metavar="DIR",
                      help="output folder (default: %(default)s)")
    demo.add_argument("--total-epochs", type=int, nargs="+", metavar="N",
                      help=f"epochs per stage (default: {DEMO['total_epochs']})")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(func=_demo)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if dist.is_main():  # under torchrun the processes warn alike: rank 0 speaks
        print(f"simcne: warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    """Run the ``simcne`` command with ``argv`` (default: sys.argv[1:]); returns the exit code.

    Errors in the command line or the inputs, and a run out of memory (the GPU's or the
    machine's), print one ``simcne: error: ...`` line and return 2; anything else (a bug)
    raises with its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except (UserError, ValueError, OSError, ImportError, MemoryError, _OutOfMemory) as e:
        if isinstance(e, (MemoryError, _OutOfMemory)):  # the host's memory or the GPU's
            message = _out_of_memory(e, args)
        else:
            message = " ".join(str(e).split()) or type(e).__name__
        where = f"[rank {dist.launch_rank()}] " if dist.launch_rank() else ""  # under torchrun, any rank may fail
        print(f"simcne: error: {where}{message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simcne: interrupted", file=sys.stderr)
        return 130


def _oom_type():
    import torch

    return getattr(torch, "OutOfMemoryError", MemoryError)


_OutOfMemory = _oom_type()


def _out_of_memory(err: BaseException, args) -> str:
    """One line for a MemoryError: what ran out, what to change, and the checkpoint kept."""
    said = " ".join(str(err).split()).split(". ")[0].rstrip(".")[:300]
    where = "the GPU" if isinstance(err, _OutOfMemory) else "this machine"
    line = (f"out of memory on {where}" + (f" ({said})" if said else "") + ": pass a "
            "smaller --batch-size (or --image-size, --read-size), keep the decode-once cache "
            "on (no --no-cache), or free memory; the check before training estimates a "
            "step's memory, not all of it")
    ckpt = getattr(args, "checkpoint", None) if args is not None else None
    out = getattr(args, "out", None) if args is not None else None
    if ckpt is None and out is not None and not getattr(args, "no_checkpoint", True):
        ckpt = os.path.join(out, CHECKPOINT_NAME)
    if ckpt is not None and os.path.isfile(ckpt):
        line += f"; the last checkpoint '{ckpt}' is kept: run the same command to go on from it"
    return line


if __name__ == "__main__":
    sys.exit(main())
