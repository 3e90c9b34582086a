"""benchmarks/faithful.py's pieces: the shared network, the data, simcne's side, the report.

The reference's side needs the venv of tools/reference_venv.sh (tsimcne 0.3.12 and
Lightning); its test is skipped, saying so, where that venv is absent.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import faithful  # noqa: E402


def test_network_is_the_same_for_the_same_seed_and_fits_both_surgeries():
    (b1, h1), (b2, h2) = faithful.build_network(3), faithful.build_network(3)
    for m1, m2 in ((b1, b2), (h1, h2)):
        for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values()):
            assert torch.equal(v1, v2), k
    other, _ = faithful.build_network(4)
    assert not torch.equal(other.features[0].weight, b1.features[0].weight)
    state = torch.get_rng_state()
    faithful.build_network(5)
    assert torch.equal(state, torch.get_rng_state())  # torch's global generator untouched
    h = b1(torch.rand(4, 1, 8, 8))
    assert h.shape == (4, b1.out_features) == (4, 128)
    assert h1(h).shape == (4, 128)
    # the reference replaces head.layers[-1]; simcne the last nn.Linear: the same layer
    from simcne.models import last_linear

    assert last_linear(h1)[2] is h1.layers[-1]


def test_digits_and_recipe_checks():
    X, y = faithful.digits(50)
    assert X.shape == (50, 1, 8, 8) and X.dtype == np.uint8 and X.max() == 255
    assert y.shape == (50,) and set(y) <= set(range(10))
    r = faithful.Recipe(epochs=[10, 1, 10], batch_size=256)
    assert r.lrs == pytest.approx([0.03, 0.03, 3e-5])
    faithful.check_recipe(r, 300)
    with pytest.raises(ValueError, match="epochs"):
        faithful.check_recipe(faithful.Recipe(epochs=[5, 1, 10]), 300)
    with pytest.raises(ValueError, match="batch_size"):
        faithful.check_recipe(faithful.Recipe(epochs=[10, 1, 10], batch_size=400), 300)


def test_simcne_side_gives_maps_features_losses_and_times(tiny):
    X, y = tiny
    images = X[:64, None]
    recipe = faithful.Recipe(epochs=[3, 2, 3], batch_size=32)
    run = faithful.run_simcne(images, y[:64], recipe, seed=0, init_seed=0)
    assert run["Y"].shape == run["Y2"].shape == (64, 2)
    assert run["z1"].shape == run["h1"].shape == (64, 128)
    assert [len(c) for c in run["losses"]] == [3, 2, 3]
    assert all(np.isfinite(c).all() for c in run["losses"])
    assert [len(s) for s in run["epoch_seconds"]] == [2, 1, 2]  # a stage's first left out
    assert run["cpu_seconds"] > 0
    # the stage-1 features are the network's after stage 1, not the final one's
    assert not np.allclose(run["Y"], run["Y2"])
    k = faithful.knn(run["h1"], y[:64])
    assert 0.0 <= k <= 1.0


def _fake(side_offset, seeds=(0, 1, 2), epochs=(12, 2, 11)):
    rng = np.random.default_rng(side_offset)
    return [dict(seed=s, knn=dict(final=0.6 + side_offset / 10, stage2=0.5, z1=0.8, h1=0.9),
                 losses=[list(6 + side_offset + 0.01 * rng.standard_normal(n)) for n in epochs],
                 epoch_seconds=[[1.0] * (n - 1) for n in epochs], seconds=60.0,
                 cpu_seconds=50.0) for s in seeds]


def test_report_and_block_written_once(tmp_path):
    results = {"simcne": _fake(0), "tsimcne 0.3.12": _fake(1)}
    recipe = faithful.Recipe(epochs=[12, 2, 11], batch_size=128)
    gaps = faithful.curve_gaps(results, recipe.epochs)
    assert [g["stage"] for g in gaps] == [1, 2, 3]
    assert all(g["mean_gap"] == pytest.approx(-1.0, abs=0.05) for g in gaps)
    block = faithful.report(results, recipe, 1792, "PYTHONPATH=. python benchmarks/faithful.py")
    text = "\n".join(block)
    assert "| 2-D map, final | 0.600 ± 0.000 (0.600, 0.600, 0.600) | 0.700 ± 0.000" in text
    assert "`PYTHONPATH=. python benchmarks/faithful.py`" in text
    assert "| 3 | 11 |" in text and f"stage 2: mean {gaps[1]['mean_gap']:+.4f}" in text
    assert "every batch full on both sides" in text  # 1792 = 14 x 128
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## Other\n\ntext\n")
    faithful.write_block(block, md)
    faithful.write_block(["replaced"], md)
    out = md.read_text()
    assert out.count(faithful.TITLE) == 1 and out.count(faithful.BEGIN) == 1
    assert "replaced" in out and "2-D map, final" not in out and out.startswith("# Benchmarks")


def test_reference_side_runs_when_its_venv_is_there(tiny, tmp_path):
    if not faithful.reference_available():
        pytest.skip(f"the reference venv (tools/reference_venv.sh) is not in {faithful.REF_DIR}")
    X, y = tiny
    images = X[:64, None]
    recipe = faithful.Recipe(epochs=[2, 1, 2], batch_size=32)
    proc = faithful.start_reference(images, y[:64], recipe, 0, 0, tmp_path)
    run = faithful.finish_reference(proc, tmp_path)
    assert run["Y"].shape == run["Y2"].shape == (64, 2)
    assert run["z1"].shape == run["h1"].shape == (64, 128)
    assert [len(c) for c in run["losses"]] == [2, 1, 2]
    assert run["transform_vs_eval"] < 1e-4  # its transform is the network in eval mode
    # the reference's per-epoch schedule: 10 warm-up epochs from lr 0 in stages 1 and 3
    lrs = json.loads((tmp_path / "result.json").read_text())["lrs"]
    assert lrs[0][0] == 0.0 and lrs[0][1] == pytest.approx(0.03 * 32 / 256 / 9)
