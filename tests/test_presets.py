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
