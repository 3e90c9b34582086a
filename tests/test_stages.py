import numpy as np
"""Parameter flow: every constructor argument reaches the stage it is meant for."""

import pytest
import torch

import simcne.estimator as est_mod
from conftest import quick
from simcne.losses import LOSSES
from simcne.train import lr_at


@pytest.fixture
def record(monkeypatch):
    calls = []
    real = est_mod.train_stage

    def spy(model, store, stage, run, **start):
        kw = dict(vars(run))  # the stage's settings (simcne.train.Training)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        opt_before = kw["optimizer"]
        calls.append(dict(stage=stage, trainable=trainable, kw=kw, optimizer=opt_before,
                          total=sum(p.numel() for p in model.parameters())))
        return real(model, store, stage, run, **start)

    monkeypatch.setattr(est_mod, "train_stage", spy)
    return calls


def test_three_stages_get_their_lr_warmup_and_trainable_parameters(tiny, record):
    X, _ = tiny
    est = quick(total_epochs=[3, 2, 3], batch_size=32, out_dim=3).fit(X)
    s1, s2, s3 = (c["stage"] for c in record)
    base = 0.03 * 32 / 256
    assert (s1.number, s1.epochs, s1.lr, s1.warmup) == (1, 3, pytest.approx(base), 3)
    assert (s2.number, s2.epochs, s2.lr, s2.warmup) == (2, 2, pytest.approx(base), 0)
    assert (s3.number, s3.epochs, s3.lr, s3.warmup) == (3, 3, pytest.approx(base / 1000), 3)
    # stage 2 trains exactly the fresh Linear(1024 -> out_dim)
    assert record[1]["trainable"] == 1024 * 3 + 3
    assert record[0]["trainable"] == record[0]["total"]
    assert record[2]["trainable"] == record[2]["total"]
    assert record[0]["kw"]["batch_size"] == 32
    assert est.n_trainable_stage2_ == 1024 * 3 + 3


def test_explicit_lr_warmup_and_optimizer_reach_the_stages(tiny, record):
    X, _ = tiny
    quick(total_epochs=[4, 1, 2], lr=[0.5, 0.25, 0.125], warmup=[2, 1, 0],
          optimizer="adamw", momentum=0.5, weight_decay=0.0, grad_clip=None).fit(X)
    assert [c["stage"].lr for c in record] == [0.5, 0.25, 0.125]
    assert [c["stage"].warmup for c in record] == [2, 1, 0]
    kw = record[0]["kw"]
    assert (kw["optimizer"], kw["momentum"], kw["weight_decay"], kw["grad_clip"]) == (
        "adamw", 0.5, 0.0, None)


def test_scalar_lr_and_warmup(tiny, record):
    quick(total_epochs=[5, 1, 5], lr=0.2, warmup=2).fit(tiny[0])
    assert [c["stage"].lr for c in record] == pytest.approx([0.2, 0.2, 0.0002])
    assert [c["stage"].warmup for c in record] == [2, 0, 2]


def test_auto_warmup_is_capped_by_short_stages(tiny, record):
    quick(total_epochs=[3, 1, 12]).fit(tiny[0])
    assert [c["stage"].warmup for c in record] == [3, 0, 10]


def test_batch_size_is_capped_by_the_dataset(tiny, record):
    with pytest.warns(UserWarning, match="batch_size=512"):
        quick(total_epochs=[1], batch_size=512).fit(tiny[0])
    assert record[0]["kw"]["batch_size"] == len(tiny[0])
    assert record[0]["stage"].lr == pytest.approx(0.03 * len(tiny[0]) / 256)


def test_metric_and_temperature_reach_the_loss(tiny, monkeypatch):
    seen = []
    real = LOSSES["infonce"]
    monkeypatch.setitem(LOSSES, "infonce", lambda z, m, t, **kw: seen.append((m, t))
                        or real(z, m, t, **kw))
    quick(total_epochs=[1], metric="cosine", temperature=0.3).fit(tiny[0])
    assert seen and set(seen) == {("cosine", 0.3)}
    seen.clear()
    quick(total_epochs=[1]).fit(tiny[0])
    assert set(seen) == {("euclidean", 0.5)}


@pytest.mark.parametrize("given, per_stage", [(1.0, [1.0, 1.0, 1.0]), (4, [1.0, 4.0, 4.0]),
                                              ([2, 3, 5], [2.0, 3.0, 5.0])])
def test_exaggeration_reaches_each_stage_loss(tiny, monkeypatch, given, per_stage):
    seen = {}
    real = LOSSES["infonce"]

    def spy(z, m, t, exaggeration=1.0, **kw):
        seen.setdefault(len(seen_stage), set()).add(exaggeration)
        return real(z, m, t, exaggeration=exaggeration, **kw)

    seen_stage = []
    monkeypatch.setitem(LOSSES, "infonce", spy)
    # a callback marks where each stage's epochs end
    quick(total_epochs=[1, 1, 1], exaggeration=given,
          callbacks=lambda s, e, l, m: seen_stage.append(s)).fit(tiny[0])
    assert [seen[i] for i in range(3)] == [{v} for v in per_stage]


def test_out_layer_std_scales_the_fresh_layer(tiny):
    # after stage 1 the embedding is the fresh layer's output (bias 0): it scales with the std
    a = quick(total_epochs=[1], random_state=5).fit(tiny[0])
    b = quick(total_epochs=[1], random_state=5, out_layer_std=0.1).fit(tiny[0])
    assert np.allclose(b.embedding_, 0.1 * a.embedding_, rtol=1e-5, atol=1e-6)
    w = [m for m in b.model_.modules() if isinstance(m, torch.nn.Linear)][-1].weight
    assert w.shape[0] == 2 and 0.08 < float(w.detach().std()) < 0.12


def test_lr_schedule_warms_up_per_step_then_decays():
    lrs = [lr_at(s, 10, 20, 2, 1.0) for s in range(200)]
    assert lrs[0] == pytest.approx(0.05)  # never exactly zero
    assert lrs[19] == pytest.approx(1.0)  # end of warm-up
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:20]))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))
    assert lrs[-1] < 0.001
    assert lr_at(0, 10, 5, 0, 0.5) == pytest.approx(0.5)


def test_the_optimizer_sees_the_schedule(tiny, monkeypatch):
    import simcne.train as train_mod

    seen = []
    real = train_mod.train_step

    def spy(model, opt, *a, **k):
        seen.append(opt.param_groups[0]["lr"])
        return real(model, opt, *a, **k)

    monkeypatch.setattr(train_mod, "train_step", spy)
    quick(total_epochs=[3], batch_size=60, lr=0.3, warmup=2).fit(tiny[0])
    # 2 steps an epoch: warm-up over 4 steps, then cosine over the last 2
    assert seen == pytest.approx([0.075, 0.15, 0.225, 0.3, 0.3, 0.15])


def test_stage_two_layer_is_fresh_normal(tiny):
    est = quick(total_epochs=[1], out_dim=64).fit(tiny[0])
    last = est.model_.projection_head[-1]
    assert last.out_features == 64 and last.in_features == 1024
    w = last.weight.detach()
    assert abs(w.mean().item()) < 0.05 and w.std().item() == pytest.approx(1.0, abs=0.05)
    assert torch.all(last.bias == 0)


def test_projection_head_linear_and_pretrain_out_dim(tiny, record):
    est = quick(total_epochs=[1, 1], projection_head="linear", pretrain_out_dim=16).fit(tiny[0])
    assert isinstance(est.model_.projection_head[-1], torch.nn.Linear)
    assert record[1]["trainable"] == 128 * 2 + 2  # resnet_small's 128 features -> 2
    est2 = quick(total_epochs=[0], pretrain_out_dim=16)
    m = est2.fit(tiny[0]).model_
    assert m.projection_head[0].out_features == 1024


def test_stage_two_trains_the_new_layer_and_nothing_else(tiny):
    """Issue 29: counting requires_grad is not training. The weights at the end of stage 1,
    after stage 2's first epoch and at its end: only the fresh Linear moves in stage 2."""
    snaps = {}

    def snapshot(stage, epoch, loss, model):
        snaps[(stage, epoch)] = {k: v.detach().clone() for k, v in model.named_parameters()}

    est = quick(total_epochs=[2, 3, 1], callbacks=snapshot).fit(tiny[0])
    end1, first2, end2 = snaps[(1, 2)], snaps[(2, 1)], snaps[(2, 3)]
    last = [k for k, v in end2.items() if v.ndim == 2][-1].rsplit(".", 1)[0]  # the new Linear
    new = {f"{last}.weight", f"{last}.bias"}
    assert end2[f"{last}.weight"].shape == (2, 1024)
    assert set(end1) - new == set(end2) - new  # the same network around the swapped layer
    for name in set(end2) - new:
        assert torch.equal(end1[name], end2[name]), f"{name} moved in stage 2"
    moved = (end2[f"{last}.weight"] - first2[f"{last}.weight"]).abs().max()
    assert moved > 1e-4, "the new layer did not train in stage 2"
    assert not torch.equal(end2[f"{last}.bias"], first2[f"{last}.bias"])
    # and stage 3 trains the rest again
    assert any(not torch.equal(end2[k], v) for k, v in
               est.model_.state_dict().items() if k in end2 and k not in new)
