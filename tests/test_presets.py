"""Named presets: one place (simcne.presets), Python and the command line alike."""

import pytest

from simcne import TSimCNE
from simcne.presets import DESCRIPTIONS, PRESETS, preset


def test_preset_gives_its_parameters_and_overrides_win():
    est = TSimCNE.preset("demo", random_state=7, total_epochs=[1, 1, 1])
    assert est.backbone == PRESETS["demo"]["backbone"]
    assert est.exaggeration == PRESETS["demo"]["exaggeration"]
    assert (est.random_state, est.total_epochs) == (7, [1, 1, 1])


def test_preset_is_a_copy():
    p = preset("demo")
    p["data_transform"]["flip_p"] = 0.9
    assert PRESETS["demo"]["data_transform"]["flip_p"] == 0.0


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown preset 'nope': expected one of \['demo'"):
        TSimCNE.preset("nope")


def test_every_preset_is_valid_and_described():
    from simcne.params import validate

    for name in PRESETS:
        assert DESCRIPTIONS[name]
        validate(TSimCNE.preset(name).get_params())


def test_photos_preset_keeps_the_papers_augmentation_and_ends_at_plain_infonce(monkeypatch):
    """The photos preset trains colour images with exaggeration 4 in stage 2 only."""
    import numpy as np

    from simcne import losses

    seen = []
    real = losses.LOSSES["infonce"]

    def spy(*args, exaggeration=1.0, **kwargs):
        seen.append(exaggeration)
        return real(*args, exaggeration=exaggeration, **kwargs)

    monkeypatch.setitem(losses.LOSSES, "infonce", spy)
    est = TSimCNE.preset("photos", total_epochs=[1, 1, 1], batch_size=32, device="cpu",
                         verbose=False)
    assert est.data_transform is None  # the paper's augmentation: mirror, crops of 20-100 %
    X = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    Y = est.fit_transform(X)
    assert Y.shape == (64, 2) and np.isfinite(Y).all()
    # two steps a stage (64 images, batch 32): stage 1 at 1, stage 2 at 4, stage 3 at 1
    assert seen == [1.0, 1.0, 4.0, 4.0, 1.0, 1.0]


def test_photos_preset_from_the_command_line():
    from simcne.cli import build_parser
    from simcne.flags import params_from_args

    args = build_parser().parse_args(["fit", "pics", "--out", "o", "--preset", "photos",
                                      "--total-epochs", "50", "5", "50"])
    params = {**PRESETS[args.preset], **params_from_args(args)}
    assert params["exaggeration"] == [1.0, 4.0, 1.0]
    assert params["total_epochs"] == [50, 5, 50] and params["backbone"] == "resnet_tiny"
