"""TSimCNE(data_transform={...}): the paper's augmentation with some settings changed."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import quick
from simcne import TSimCNE
from simcne.augment import SETTINGS, Augment, check_settings
from simcne.cli import build_parser, main
from simcne.flags import AUGMENT_FLAGS, params_from_args


def test_an_empty_dict_is_the_papers_augmentation(tiny):
    X, _ = tiny
    assert np.array_equal(quick(total_epochs=[1, 1, 1]).fit_transform(X),
                          quick(total_epochs=[1, 1, 1], data_transform={}).fit_transform(X))


def test_the_settings_reach_the_augmentation(tiny, monkeypatch):
    from simcne import estimator

    made = []
    real = estimator.Augment

    def spy(**kw):
        made.append(kw)
        return real(**kw)

    monkeypatch.setattr(estimator, "Augment", spy)
    X, _ = tiny
    a = quick(total_epochs=[1], data_transform={"flip_p": 0, "crop_scale": [0.7, 1]}).fit(X)
    assert made == [dict(size=(8, 8), flip_p=0.0, crop_scale=(0.7, 1.0))]
    b = quick(total_epochs=[1]).fit(X)
    assert not np.allclose(a.embedding_, b.embedding_)


def test_no_flip_means_no_flipped_view():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1) / 16
    aug = Augment(size=4, **check_settings({"flip_p": 0, "crop_scale": (1, 1),
                                            "crop_ratio": (1, 1), "jitter_p": 0}))
    out = aug(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-6)  # whole image, never mirrored, no jitter
    flipped = Augment(size=4, flip_p=1.0, crop_scale=(1, 1), crop_ratio=(1, 1), jitter_p=0)(
        x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(flipped, x.flip(-1), atol=1e-6)


@pytest.mark.parametrize("settings, words", [
    ({"flip": 0}, "unknown setting(s) ['flip']"),
    ({"flip_p": 1.5}, "'flip_p'=1.5: expected a probability in [0, 1]"),
    ({"grayscale_p": -0.1}, "'grayscale_p'"),
    ({"jitter_p": True}, "'jitter_p'"),
    ({"crop_scale": (0.5, 2)}, "'crop_scale'=(0.5, 2)"),
    ({"crop_scale": (0.9, 0.5)}, "'crop_scale'"),
    ({"crop_scale": 0.5}, "'crop_scale'"),
    ({"crop_ratio": (0, 1)}, "'crop_ratio'"),
    ({"jitter": (0.4, 0.4, 0.4)}, "'jitter'"),
    ({"jitter": (0.4, 0.4, 0.4, 0.7)}, "hue <= 0.5"),
    ({"flip_p": float("nan")}, "'flip_p'"),
])
def test_bad_settings_name_the_parameter_and_the_key(tiny, settings, words):
    with pytest.raises(ValueError, match="'data_transform'") as e:
        quick(data_transform=settings).fit(tiny[0])
    assert words in str(e.value)


def test_the_settings_are_stored_in_model_files_and_checkpoints(tiny, tmp_path):
    X, _ = tiny
    settings = {"flip_p": 0.0, "crop_scale": (0.7, 1.0)}
    est = quick(data_transform=settings).fit(X)
    est.save(tmp_path / "m.pt")
    back = TSimCNE.load(tmp_path / "m.pt", device="cpu")  # the fit's device: equal maps
    assert check_settings(back.data_transform) == settings
    assert np.array_equal(back.transform(X), est.transform(X))
    # a checkpoint of other settings is refused, naming the parameter
    ck = tmp_path / "c.pt"
    quick(total_epochs=[4, 1, 1], checkpoint=ck, checkpoint_every=1,
          callbacks=lambda s, e, l, m: e == 2, data_transform=settings).fit(X)
    assert ck.exists()
    with pytest.raises(ValueError, match="data_transform"):
        quick(total_epochs=[4, 1, 1], checkpoint=ck, data_transform={"flip_p": 0.5}).fit(X)


def test_flags_make_the_dict():
    assert set(AUGMENT_FLAGS) == set(SETTINGS)
    args = build_parser().parse_args(["fit", "data", "--out", "o", "--flip-p", "0",
                                      "--crop-scale", "0.7", "1", "--jitter", "0.4", "0.4",
                                      "0", "0"])
    assert params_from_args(args)["data_transform"] == {
        "flip_p": 0.0, "crop_scale": (0.7, 1.0), "jitter": (0.4, 0.4, 0.0, 0.0)}
    args = build_parser().parse_args(["fit", "data", "--out", "o"])
    assert "data_transform" not in params_from_args(args)


def test_a_bad_flag_value_is_one_line(tiny, tmp_path, capsys):
    np.save(tmp_path / "x.npy", tiny[0])
    out = tmp_path / "out"
    code = main(["fit", str(tmp_path / "x.npy"), "--out", str(out), "--flip-p", "2",
                 "--backbone", "resnet_small", "--total-epochs", "1", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'flip_p'=2.0" in err[0], err
    assert not out.exists() or not any(out.iterdir())


def test_each_setting_is_checked_by_the_rule_in_its_field():
    """The rule of a setting lives in Augment's field: a field without one is not a setting,
    and every setting has one that refuses a wrong value in its own words."""
    from dataclasses import fields

    with_rule = [f.name for f in fields(Augment) if "rule" in f.metadata]
    assert list(SETTINGS) == with_rule and "size" not in SETTINGS
    for name in SETTINGS:
        rule = next(f for f in fields(Augment) if f.name == name).metadata["rule"]
        with pytest.raises(ValueError, match=f"'{name}'=.*expected {re.escape(rule.allowed)}"):
            check_settings({name: "nonsense"})
        default = getattr(Augment(), name)
        assert check_settings({name: list(default) if isinstance(default, tuple) else default}) \
            == {name: default}


NARROW = {"crop_scale": (0.8, 1.0)}


def test_a_view_per_stage(tiny, monkeypatch, tmp_path):
    """data_transform=[...]: each stage draws its own view; the same view thrice is one."""
    from simcne import train

    X, _ = tiny
    same = {"flip_p": 0.0}
    assert np.array_equal(quick(total_epochs=[1, 1, 1], data_transform=same).fit_transform(X),
                          quick(total_epochs=[1, 1, 1],
                                data_transform=[same, same, same]).fit_transform(X))
    seen = []
    real = train.two_views

    def spy(augment, x, *more, **kw):
        seen.append(augment.augment.crop_scale)
        return real(augment, x, *more, **kw)

    monkeypatch.setattr(train, "two_views", spy)
    est = quick(total_epochs=[1, 1, 1], batch_size=len(X), data_transform=[None, NARROW, NARROW])
    Y = est.fit_transform(X)
    assert seen == [(0.2, 1.0), (0.8, 1.0), (0.8, 1.0)]  # one step a stage
    monkeypatch.setattr(train, "two_views", real)
    assert np.array_equal(Y, quick(total_epochs=[1, 1, 1], batch_size=len(X),
                                   data_transform=[None, NARROW, NARROW]).fit_transform(X))
    # plain data: stored in the model file as it was given
    est.save(tmp_path / "m.pt")
    back = TSimCNE.load(tmp_path / "m.pt", device="cpu")
    assert back.data_transform[0] is None
    assert [check_settings(v) for v in back.data_transform[1:]] == [NARROW, NARROW]


@pytest.mark.parametrize("views, words", [
    ([None, NARROW], "needs a value for each of the 3 stages"),
    ([None, {"crop_scale": (0.9, 0.5)}, NARROW], "'data_transform[1]' parameter of TSimCNE got "
                                                 "'crop_scale'=(0.9, 0.5)"),
    ([None, 3, NARROW], "a list of such values, one per stage. Got [None, 3"),
])
def test_a_bad_view_per_stage_is_named(tiny, views, words):
    with pytest.raises(ValueError) as e:
        quick(total_epochs=[1, 1, 1], data_transform=views).fit(tiny[0])
    assert words in str(e.value) and "data_transform" in str(e.value)


def test_flags_change_only_what_they_name_in_a_presets_view():
    from simcne.cli import _fit_params

    def params(*flags):
        args = build_parser().parse_args(["fit", "d", "--out", "o", "--preset", "demo", *flags])
        return _fit_params(args, Path("o"))["data_transform"]

    assert params() == {"flip_p": 0.0, "crop_scale": (0.8, 1.0)}
    assert params("--crop-scale", "0.5", "1") == {"flip_p": 0.0, "crop_scale": (0.5, 1.0)}
    from simcne.flags import with_settings

    assert with_settings([None, NARROW], {"flip_p": 0.0}) == [
        {"flip_p": 0.0}, {"crop_scale": (0.8, 1.0), "flip_p": 0.0}]
