import numpy as np
import pytest
import torch
from sklearn.base import clone

from simcne import TSimCNE

BAD = [
    ("model", "resnet18", "model"),
    ("loss", "triplet", "loss"),
    ("metric", "manhattan", "metric"),
    ("backbone", "resnet19", "backbone"),
    ("projection_head", "deep", "projection_head"),
    ("data_transform", 3, "data_transform"),
    ("total_epochs", [1000, -5], "total_epochs"),
    ("total_epochs", [1, 2, 3, 4], "total_epochs"),
    ("total_epochs", 2.5, "total_epochs"),
    ("total_epochs", [], "total_epochs"),
    ("batch_size", 1, "batch_size"),
    ("batch_size", 64.0, "batch_size"),
    ("out_dim", 0, "out_dim"),
    ("pretrain_out_dim", -1, "pretrain_out_dim"),
    ("optimizer", "lbfgs", "optimizer"),
    ("lr", "auto", "lr"),
    ("lr", -0.1, "lr"),
    ("lr", [0.1, 0.1], "lr"),
    ("warmup", -1, "warmup"),
    ("warmup", [20, 0, 0], "warmup"),
    ("momentum", 1.5, "momentum"),
    ("weight_decay", -1, "weight_decay"),
    ("grad_clip", 0, "grad_clip"),
    ("temperature", 0, "temperature"),
    ("exaggeration", 0, "exaggeration"),
    ("exaggeration", [1, 2], "exaggeration"),
    ("exaggeration", "high", "exaggeration"),
    ("exaggeration", float("nan"), "exaggeration"),
    ("exaggeration", float("inf"), "exaggeration"),
    ("out_layer_std", -1.0, "out_layer_std"),
    ("out_layer_std", 0, "out_layer_std"),
    ("image_size", (32,), "image_size"),
    ("image_size", -3, "image_size"),
    ("random_state", "seed", "random_state"),
    ("device", "gpu0", "device"),
    ("device", 3, "device"),
    ("compile", "yes", "compile"),
    ("precision", "fp16", "precision"),
    ("callbacks", [print, 3], "callbacks"),
    ("backbone_weights", 3, "backbone_weights"),
    ("backbone_weights", "no-such-weights.pt", "backbone_weights"),
    ("init", 5, "init"),
    ("init", "no-such-model.pt", "init"),
    ("init_stage", 2, "init_stage"),
    ("init_stage", True, "init_stage"),
    ("init_stage", 3, "init_stage"),  # without init
    ("normalize", "cifar", "normalize"),
    ("normalize", (0.5, -0.25), "normalize"),
    ("normalize", (0.5,), "normalize"),
    ("normalize", ([0.5, 0.5, 0.5], [0.2, 0.2]), "normalize"),
    ("normalize", ([0.5, float("nan")], [0.2, 0.2]), "normalize"),
    ("verbose", "loud", "verbose"),
]


@pytest.mark.parametrize("name,value,match", BAD)
def test_each_bad_parameter_is_named(name, value, match, tiny):
    X, _ = tiny
    params = dict(total_epochs=[3, 1, 3], backbone="resnet_small", batch_size=32)
    params[name] = value
    est = TSimCNE(**params)
    with pytest.raises(ValueError, match=f"'{match}' parameter of TSimCNE") as info:
        est.fit(X)
    assert "Got" in str(info.value) or "asks for" in str(info.value) or "needs" in str(info.value)


def test_message_in_scikit_learn_wording(tiny):
    with pytest.raises(ValueError) as info:
        TSimCNE(total_epochs=[1000, -5]).fit(tiny[0])
    assert str(info.value) == ("The 'total_epochs' parameter of TSimCNE must be an int >= 0 or "
                               "a list of 1 to 3 ints >= 0. Got [1000, -5] instead.")


def test_init_stores_parameters_unchanged():
    head = torch.nn.Linear(3, 3)
    est = TSimCNE(total_epochs=[5, 1], lr=0.1, projection_head=head, image_size=16)
    p = est.get_params()
    assert p["total_epochs"] == [5, 1] and p["lr"] == 0.1 and p["projection_head"] is head
    assert p["image_size"] == 16 and p["warmup"] == "auto"


def test_defaults_are_the_papers():
    p = TSimCNE().get_params()
    assert list(p["total_epochs"]) == [1000, 50, 450]
    assert p["batch_size"] == 512 and p["out_dim"] == 2 and p["pretrain_out_dim"] == 128
    assert p["backbone"] == "resnet18" and p["projection_head"] == "mlp"
    assert p["lr"] == "auto_batch" and p["warmup"] == "auto" and p["optimizer"] == "sgd"
    assert p["momentum"] == 0.9 and p["weight_decay"] == 5e-4 and p["grad_clip"] == 4.0


def test_set_params_and_clone_round_trip():
    est = TSimCNE(out_dim=3, total_epochs=[1, 1, 1], random_state=7)
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert est.set_params(out_dim=5) is est and est.out_dim == 5
    with pytest.raises(ValueError, match="Invalid parameter 'nonsense'"):
        est.set_params(nonsense=1)


def test_repr_shows_changed_parameters():
    assert repr(TSimCNE(out_dim=3)) == "TSimCNE(out_dim=3)"


def test_fit_does_not_rewrite_parameters(tiny):
    from conftest import quick

    est = quick(total_epochs=[1, 1, 1], device="auto")  # "auto" must stay "auto"
    before = est.get_params()
    est.fit(tiny[0])
    assert est.get_params() == before
    assert est.lr == "auto_batch" and est.image_size is None and est.device == "auto"


def test_transform_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="not fitted"):
        TSimCNE().transform(np.zeros((4, 8, 8), np.uint8))


def test_one_table_covers_the_signature_and_drives_the_lists():
    import inspect

    from simcne import checkpoint, flags, persist
    from simcne.params import PARAMS, PYTHON_ONLY

    assert list(PARAMS) == [p for p in inspect.signature(TSimCNE).parameters]
    assert checkpoint.FREE_PARAMS == tuple(n for n, p in PARAMS.items() if p.free)
    assert persist.MODULE_PARAMS == ("model", "backbone", "projection_head")
    assert set(flags.CLI_PARAMS) | set(PYTHON_ONLY) | {flags.VERBOSE_FLAG} == set(PARAMS)
    assert all(p.help for p in flags.CLI_PARAMS.values())


@pytest.mark.parametrize("name,value,text", [
    ("momentum", 1.0, "a float in [0, 1)"),
    ("batch_size", 1, "an int >= 2"),
    ("lr", "fast", "'auto_batch', a float > 0 or a list of floats > 0, one per stage"),
    ("image_size", (3, 4, 5), "None or an int > 0 or a pair (height, width) of ints > 0"),
    ("precision", "fp16", "one of ['auto', 'bf16', 'fp32']"),
])
def test_each_constraint_writes_its_own_text(name, value, text):
    from simcne.params import validate

    params = TSimCNE().get_params()
    params[name] = value
    with pytest.raises(ValueError) as info:
        validate(params)
    assert str(info.value) == (f"The '{name}' parameter of TSimCNE must be {text}. "
                               f"Got {value!r} instead.")


def test_docstring_parameters_come_from_the_table():
    import inspect

    from simcne.params import PARAMS

    doc = TSimCNE.__doc__
    assert "{parameters}" not in doc
    defaults = {n: p.default for n, p in inspect.signature(TSimCNE).parameters.items()}
    for name, param in PARAMS.items():
        shown = f'"{defaults[name]}"' if isinstance(defaults[name], str) else repr(defaults[name])
        assert f"    {name} : {param.kind}, default={shown}\n" in doc
    assert doc.index("    model :") < doc.index("    verbose :") < doc.index("Attributes")


def test_loss_is_dispatched_through_the_registry(monkeypatch, tiny):
    """Issue 29: ``loss`` names an entry of ``simcne.losses.LOSSES``, which fit calls."""
    from conftest import quick
    from simcne import losses

    calls = []

    def toy(z, metric, temperature, **kw):
        calls.append(kw["exaggeration"])
        return losses.info_nce(z, metric, temperature, **kw)

    monkeypatch.setitem(losses.LOSSES, "toy", toy)
    quick(loss="toy", total_epochs=[1, 1], exaggeration=3.0).fit(tiny[0])
    assert calls and set(calls) == {1.0, 3.0}


def test_unknown_loss_is_one_line_naming_loss(tiny):
    with pytest.raises(ValueError) as info:
        TSimCNE(loss="hinge").fit(tiny[0])
    assert str(info.value) == ("The 'loss' parameter of TSimCNE must be 'infonce'. "
                               "Got 'hinge' instead.")


def test_per_stage_parameters_come_from_the_table_and_need_every_stage():
    """The parameters with a value per stage are found in the table (per_stage), not
    listed by hand; each must give a value for every stage that total_epochs runs."""
    from simcne.params import PER_STAGE_PARAMS

    assert PER_STAGE_PARAMS == ("data_transform", "lr", "warmup", "exaggeration")
    short = {"data_transform": [None, {}], "lr": [0.1, 0.1], "warmup": [1, 0],
             "exaggeration": [1.0, 2.0]}
    for name, value in short.items():
        with pytest.raises(ValueError, match=rf"'{name}' parameter .* each of the 3 stages"):
            TSimCNE(total_epochs=[5, 5, 5], **{name: value})._validate_params()
        TSimCNE(total_epochs=[5, 5], **{name: value})._validate_params()  # two stages: enough


def test_a_set_of_values_is_written_once_in_the_table():
    """A parameter of a few named values: its docstring kind and its flag's choices are
    read from its constraint, so they cannot disagree with what validation allows."""
    from simcne.params import PARAMS, Options

    with_options = {n: p for n, p in PARAMS.items() if isinstance(p.constraint, Options)}
    assert {"loss", "optimizer", "out_layer_init", "precision"} <= set(with_options)
    for name, p in with_options.items():
        values = list(p.constraint.values)
        assert p.kind == "{" + ", ".join(f'"{v}"' for v in values) + "}", name
        if p.cli and "choices" in p.cli:
            assert list(p.cli["choices"]) == values, name
    assert PARAMS["precision"].cli["choices"] == ("auto", "bf16", "fp32")
    assert PARAMS["out_layer_init"].cli["choices"] == ("random", "pca")
