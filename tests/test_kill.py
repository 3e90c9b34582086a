"""`simcne fit` killed with SIGKILL at real moments goes on from its checkpoint (issue 13).

Real subprocesses of the command are killed in the middle of stage 1, 2 and 3, once while a
checkpoint is being written (its temporary file complete, not yet renamed) and once while
running free (killed as soon as an epoch is logged, so mid-step). The moments are caught
with the checkpoint module's test hook (``SIMCNE_TEST_HOOK_LOG``/``_PAUSE``), never with
sleeps. The same command run again must finish with the uninterrupted run's embedding,
losing at most ``--checkpoint-every`` epochs.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from simcne.cli import main

EVERY = 2
EPOCHS = ["4", "4", "4"]
# (name, the hook line to stop at, whether the process waits there for the kill)
KILLS = [
    ("stage1", "epoch 1 3", True),
    ("stage2", "epoch 2 3", True),
    ("stage3", "epoch 3 1", True),
    ("while_writing", "written 2 2", True),
    ("free_running", "saved 1 2", False),
]


def _args(data, out):
    return ["fit", str(data), "--out", str(out), "--total-epochs", *EPOCHS, "--batch-size",
            "16", "--backbone", "resnet_small", "--random-state", "0", "--device", "cpu",
            "--no-plots", "--checkpoint-every", str(EVERY)]


def _log(path):
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def killed(tiny, tmp_path_factory):
    """Start one command per entry of KILLS at once; kill each at its moment."""
    root = tmp_path_factory.mktemp("kill")
    data = root / "x.npy"
    np.save(data, tiny[0][:32])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(
                   os.path.abspath(__file__)))] + sys.path))
    runs = {}
    for name, line, pause in KILLS:
        out, log = root / name, root / f"{name}.log"
        run_env = dict(env, SIMCNE_TEST_HOOK_LOG=str(log))
        if pause:
            run_env["SIMCNE_TEST_HOOK_PAUSE"] = line
        proc = subprocess.Popen([sys.executable, "-m", "simcne", *_args(data, out), "--quiet"],
                                env=run_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        runs[name] = dict(proc=proc, out=out, log=log, line=line)
    deadline = time.monotonic() + 600
    pending = dict(runs)
    while pending:
        for name, run in list(pending.items()):
            if run["line"] in _log(run["log"]):
                run["proc"].send_signal(signal.SIGKILL)
                run["proc"].wait()
                run["temporaries"] = sorted(p.name for p in run["out"].glob(".*.tmp"))
                lines = [ln.split() for ln in _log(run["log"])]
                run["epochs_done"] = [(int(s), int(e)) for ev, s, e in lines if ev == "epoch"]
                run["last_saved"] = [(int(s), int(e)) for ev, s, e in lines if ev == "saved"][-1]
                del pending[name]
            elif run["proc"].poll() is not None:
                pytest.fail(f"{name}: the command ended before its moment: "
                            f"{run['proc'].stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"never reached: {sorted(pending)}"
        time.sleep(0.02)
    for run in runs.values():
        run["proc"].stderr.close()
    return data, runs


@pytest.fixture(scope="module")
def uninterrupted(killed, tmp_path_factory):
    data, _ = killed
    out = tmp_path_factory.mktemp("full") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed commands ran (OMP_NUM_THREADS=1)
    try:
        assert main(_args(data, out) + ["--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)  # the files after this one keep their threads
    return np.load(out / "embedding.npy")


@pytest.mark.parametrize("name", [k[0] for k in KILLS])
def test_killed_run_goes_on_and_ends_as_an_uninterrupted_one(killed, uninterrupted, name,
                                                             capsys):
    data, runs = killed
    run = runs[name]
    assert run["proc"].returncode == -signal.SIGKILL
    assert (run["out"] / "checkpoint.pt").is_file()
    assert not (run["out"] / "embedding.npy").exists()
    if name == "while_writing":
        assert run["temporaries"], "the kill should have left the temporary checkpoint"
    capsys.readouterr()
    torch.set_num_threads(1)
    assert main(_args(data, run["out"])) == 0  # the same command again
    err = capsys.readouterr().err
    said = re.findall(r"going on from the checkpoint .*: stage (\d), epoch (\d+) done", err)
    assert len(said) == 1, err[-2000:]
    resumed = tuple(map(int, said[0]))
    # epochs the killed run had finished after the checkpoint it left: lost, and redone
    lost = [e for e in run["epochs_done"] if e > resumed]
    assert len(lost) <= EVERY, (resumed, run["epochs_done"])
    assert resumed == run["last_saved"]  # the checkpoint on disk, never a half-written one
    if name == "while_writing":
        assert resumed == (1, 4) and lost == [(2, 1), (2, 2)]
    elif name != "free_running":
        # exactly the epoch the kill interrupted was redone: the next of its stage, or the
        # first of the next stage when the checkpoint was a stage's last epoch
        redone = (resumed[0], resumed[1] + 1) if resumed[1] < 4 else (resumed[0] + 1, 1)
        assert lost == [redone], (name, resumed, lost)
    np.testing.assert_array_equal(np.load(run["out"] / "embedding.npy"), uninterrupted)
    report = json.loads((run["out"] / "report.json").read_text())
    assert report["resumed_from"] == {"stage": resumed[0], "epoch": resumed[1]}
    left = sorted(p.name for p in run["out"].iterdir())
    assert "checkpoint.pt" not in left and not [n for n in left if n.endswith(".tmp")]
