"""benchmarks/gpu_check.sh, the one-call GPU check of issue 20: its CPU dry run, so that the
script is known to run before a device lease is spent on it, and the driver's planning and
judging."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _driver():
    return load_script("benchmarks/gpu_check.py")  # a fresh module for each test


needs_bash = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="gpu_check.sh needs bash and coreutils' timeout")


def _env(**extra):
    env = dict(os.environ, PYTHON=sys.executable, SIMCNE_CPU_BF16="0", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # the script sets its own
    env.update(extra)
    return env


@needs_bash
@pytest.mark.slow
def test_dry_run_writes_the_results_and_the_block(tmp_path):
    # issue 20, item 6: the same script as on the H200, tiny sizes, CUDA-only parts skipped
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], cwd=tmp_path, env=_env(OUT=str(out)),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8  # what the device tool brings back
    for name in ("gpu_check.log", "results.json", "gpu_check.md", "fmnist70k_embedding.npy"):
        assert name in files
    if importlib.util.find_spec("matplotlib") is not None:
        assert "fmnist70k_map.png" in files

    r = json.loads((out / "results.json").read_text())
    assert r["dry_run"] is True
    assert {"date", "command", "seconds", "parts", "info", "timing", "reference", "map",
            "tests", "targets"} <= set(r)
    for part in ("info", "timing", "map"):
        assert r["parts"][part]["status"] == "ok", r["parts"][part]
    assert r["parts"]["reference"]["status"] == "skipped"
    assert "dry run" in r["parts"]["reference"]["note"]

    names = {v["name"]: v for v in r["timing"]["variants"]}
    assert {"train_stage", "fit"} <= set(names)
    for v in names.values():
        assert v["s_per_epoch"] > 0 and v["images_per_s"] > 0 and v["epochs_timed"] >= 1
    assert r["timing"]["matmul_peak"] is None  # CUDA only, and said so
    assert any("CUDA only" in n for n in r["timing"]["notes"])

    m = r["map"]
    assert m["n_images"] == 256 and m["epochs_ran"] == [1, 1, 1]
    assert 0.0 <= m["knn"] <= 1.0 and len(m["knn_stages"]) == 3
    assert m["tsne_pixels"] == 0.841 and "constant" in m["tsne_pixels_source"]
    # issue 27: the 70k map's recipe itself, tried at a small scale before a lease is spent
    # on it: ResNet18 at its rates (stage 3 at 0.4), 256 images at 8x8, one epoch a stage
    g = _driver()
    assert m["params"]["backbone"] == "resnet18" and m["params"]["lr"] == g.MAP["lr"]
    assert "diverged" not in m and m["device"] == "cpu"

    assert len(r["targets"]) == 4
    assert {t["result"] for t in r["targets"]} <= {"dry run", "n/a"}

    md = (out / "gpu_check.md").read_text()
    assert md.startswith("<!-- gpu_check begin -->") and md.rstrip().endswith("<!-- gpu_check end -->")
    assert "DRY RUN" in md and "| target | figure | result |" in md
    log = (out / "gpu_check.log").read_text()
    assert "reference: skipped" in log and "done in" in log


@needs_bash
def test_help_and_a_bad_argument():
    proc = subprocess.run(["bash", str(SCRIPT), "--help"], env=_env(), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "carry" in proc.stdout
    proc = subprocess.run(["bash", str(SCRIPT), "--fast"], env=_env(), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "--fast" in proc.stderr


def test_plan_fits_the_budget():
    g = _driver()
    for budget, epoch_s in [(240, 1.2), (100, 3.0), (30, 0.5), (5, 10.0)]:
        s1, s2, s3 = g.plan_epochs(budget, epoch_s)
        assert s1 >= 1 and s2 >= 2 and s3 >= 1
        cost = (s1 + g.STAGE2_COST * s2 + s3) * epoch_s
        assert cost <= max(budget, (1 + 2 * g.STAGE2_COST + 1) * epoch_s) + epoch_s
    assert g.plan_epochs(240, 1.2) == [50, 6, 147]


def test_targets_pass_and_miss():
    g = _driver()
    timing = {"variants": [{"name": "train_stage", "s_per_epoch": 1.0},
                           {"name": "fit", "s_per_epoch": 2.0}]}
    rows = g.targets(timing, {"s_per_epoch": 30.0}, {"knn": 0.85, "knn_sd": 0.002}, dry=False)
    assert [t["result"] for t in rows] == ["PASS", "MISS", "PASS", "PASS"]
    assert rows[2]["value"] == pytest.approx(15.0)  # the reference against fit's epoch
    rows = g.targets(timing, {"skipped": "no GPU"}, None, dry=False)
    assert [t["result"] for t in rows] == ["PASS", "MISS", "n/a", "n/a"]


def test_record_puts_the_block_into_benchmarks(tmp_path):
    g = _driver()
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\nbefore\n")
    block = tmp_path / "gpu_check.md"
    for figure in ("1.00 s", "0.90 s"):
        block.write_text(f"<!-- gpu_check begin -->\n### check\n{figure}\n<!-- gpu_check end -->\n")
        g.main(["record", str(block), "--benchmarks", str(bench)])
    text = bench.read_text()
    assert text.count("<!-- gpu_check begin -->") == 1 and "0.90 s" in text and "1.00 s" not in text
    assert "before" in text
    block.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        g.main(["record", str(block), "--benchmarks", str(bench)])


def test_a_diverged_map_is_reported_as_such(tmp_path, monkeypatch):
    g = _driver()
    import simcne

    def diverge(self, X, y=None):
        raise simcne.TrainingDiverged("Training diverged: The loss became nan in stage 3, "
                                      "epoch 4 of 120, at learning rate 0.4.", 3, 4, 0.4)

    monkeypatch.setattr(simcne.TSimCNE, "fit", diverge)
    monkeypatch.setattr(g, "need_cuda", lambda part, dry: __import__("torch").device("cpu"))
    assert g.main(["map", "--work", str(tmp_path), "--dry-run",
                   "--params", '{"backbone": "resnet_tiny"}']) == 0
    m = json.loads((tmp_path / "map.json").read_text())
    assert "loss became nan in stage 3" in m["diverged"] and m["knn"] is None
    assert m["diverged_at"] == {"stage": 3, "epoch": 4, "lr": 0.4}
    rows = g.targets(None, None, m, dry=False)
    assert rows[-1]["result"] == "DIVERGED" and "stage 3, epoch 4" in rows[-1]["shown"]
    r = dict(dry_run=False, date="d", command="c", seconds=1, parts={}, info=None, timing=None,
             reference=None, map=m, tests={}, targets=rows)
    text = g.block(r)
    assert "Map: **DIVERGED**" in text and "| DIVERGED |" in text
    assert "a constant" in text  # the t-SNE figure is named as one
