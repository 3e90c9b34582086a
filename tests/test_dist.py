"""Training under torchrun (issue 11): two CPU processes on gloo against one process.

The 2-process runs start real ``torchrun`` launches (``python -m torch.distributed.run
--standalone``, which picks a free port) of ``tests/dist_worker.py`` and of ``python -m
simcne``; each process runs one torch thread. What they must show: one training step gives
the single-process loss, gradients and weights; a short fit gives the single-process
embedding; only rank 0 writes files; a resumed run equals an uninterrupted one; a process
that hangs ends the run with an error, not a hang.

Tolerances: the two processes compute the same sums in another order (the loss's rows
against the gathered columns, BatchNorm statistics combined from two halves, DDP's
averaging of two gradients), so results agree to float32 rounding, not bit for bit. Over
the short fit's 15 steps the differences stay below 1e-5 (measured 6e-6 on embeddings of
size about 6).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).parent
ROOT = HERE.parent

dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

sys.path.insert(0, str(HERE))
import dist_worker  # noqa: E402


def torchrun(*args, timeout=300, extra_env=None):
    """Run ``torchrun --standalone --nproc_per_node=2 ARGS`` (one thread per process)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", SIMCNE_DIST_TIMEOUT="120",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *map(str, args)]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """What each of the 2 processes saw in the scenarios 'step' and 'fit' of dist_worker."""
    out = tmp_path_factory.mktemp("dist")
    run = torchrun(HERE / "dist_worker.py", "step,fit", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return out, ranks


@pytest.fixture
def one_thread():
    torch.set_num_threads(1)


def test_one_step_equals_the_single_process_step(two_processes, one_thread):
    ref = dist_worker.one_step()
    scale = max(float(g.abs().max()) for g in ref["grads"].values())
    for seen in two_processes[1]:
        step = seen["step"]
        assert step["loss"] == pytest.approx(ref["loss"], rel=1e-6)
        for name, g in ref["grads"].items():  # after DDP's averaging: the global gradient
            torch.testing.assert_close(step["grads"][name], g, rtol=1e-4, atol=1e-5 * scale)
        for name, w in ref["weights"].items():  # weights after the step, BN statistics too
            torch.testing.assert_close(step["weights"][name].float(), w.float(),
                                       rtol=1e-5, atol=1e-6)


def test_a_short_fit_gives_the_single_process_embedding(two_processes, one_thread):
    ref = dist_worker.reference_fit()
    for seen in two_processes[1]:  # every process holds the whole result
        fit = seen["fit"]
        np.testing.assert_allclose(fit["loss"], ref["loss"], rtol=1e-6)
        np.testing.assert_allclose(fit["embedding"], ref["embedding"], atol=1e-4, rtol=1e-5)
        assert len(fit["stages"]) == len(ref["stages"]) == 3
        for a, b in zip(fit["stages"], ref["stages"]):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)
        # transform shards 37 images over 2 processes and gathers them in order
        np.testing.assert_allclose(fit["transform"], ref["transform"], atol=1e-4, rtol=1e-5)


def test_a_resumed_run_equals_an_uninterrupted_one(two_processes):
    for seen in two_processes[1]:
        fit = seen["fit"]
        assert fit["checkpoint_existed"] and not fit["checkpoint_left"]
        np.testing.assert_array_equal(fit["resumed"], fit["embedding"])
        np.testing.assert_array_equal(fit["resumed_loss"], fit["loss"])


def test_only_rank_0_writes_files(two_processes):
    out, (rank0, rank1) = two_processes
    assert rank1["fit"]["written"] == []
    assert rank0["fit"]["written"] == ["model.pt"] + ["run.ckpt"] * 4
    from simcne import TSimCNE

    np.testing.assert_array_equal(TSimCNE.load(out / "model.pt").embedding_,
                                  rank0["fit"]["embedding"])


def test_the_batch_must_be_shared_evenly(two_processes):
    for seen in two_processes[1]:
        msg = seen["fit"]["odd_batch"]
        assert msg and "'batch_size'" in msg and "multiple of the number of processes (2)" in msg


def test_torchrun_simcne_fit_digits(tmp_path):
    out = tmp_path / "map"
    run = torchrun("-m", "simcne", "fit", "digits", "--out", out, "--backbone", "resnet_small",
                   "--total-epochs", "1", "--batch-size", "512", "--random-state", "0",
                   "--no-plots")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "embedding.csv", "embedding.npy", "model.pt", "report.json"]
    assert np.load(out / "embedding.npy").shape == (1797, 2)
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == 2 and report["n_images"] == 1797
    # only rank 0 prints
    assert run.stdout.count("[simcne] fitted in") == 1
    assert run.stderr.count("[simcne] stage 1: 1 epochs, 3 steps of 512 images "
                            "(2 processes x 256)") == 1


def test_a_hanging_process_ends_the_run_with_an_error(tmp_path):
    run = torchrun(HERE / "dist_worker.py", "hang", tmp_path, timeout=200,
                   extra_env={"SIMCNE_DIST_TIMEOUT": "10"})
    assert run.returncode != 0
    assert "waited more than 10 s for the other processes" in run.stdout + run.stderr
