"""benchmarks/flop_rate.py counts a step's arithmetic as a hand computation says."""

import json

import torch
from conftest import load_script


F = load_script("benchmarks/flop_rate.py")


def test_a_step_counts_the_first_convolution_by_hand_and_scales_with_the_views():
    rgb = F.step_rate(3, torch.contiguous_format, views=1, repeats=1)[0]
    gray = F.step_rate(1, torch.channels_last, views=1, repeats=1)[0]
    two = F.step_rate(1, torch.channels_last, views=2, repeats=1)[0]
    # two more input channels of the 3x3, 64-filter stem on 28x28: 2 FLOPs a multiply-add,
    # once forward and once for the weights' gradient (the images need none)
    assert round((rgb - gray) * 1e9) == 2 * (2 * 28 * 28 * 64 * 9 * 2)
    assert abs(two / gray - 2.0) < 1e-9


def test_main_writes_each_rate(tmp_path, capsys):
    out = tmp_path / "rates.json"
    assert F.main(["--views", "2", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert set(rows) == {"matmul", "reference layout: 3 channels, NCHW",
                         "simcne layout: 1 channel, channels-last"}
    assert all(r["gflops"] > 0 for r in rows.values())
    assert "the most a step at equal arithmetic could gain" in capsys.readouterr().out
