"""Pretrained networks (issue 22): classification networks as backbones, the input they
expect (gray to RGB, ``normalize``), weights files for named backbones, and warm starts from
a saved model (``init``, ``init_stage``).

torchvision and timm cannot be imported on this project's CPU machines, so the networks
below are built here with their layouts: torchvision's ResNet (``fc``), MobileNetV3
(``classifier`` = Linear, Hardswish, Dropout, Linear), EfficientNet (``classifier`` =
Dropout, Linear), timm's ``reset_classifier``/``forward_features`` convention, and a plain
``Sequential`` ending in a Linear. Weights files with torchvision's names are made from
simcne's own ResNet18, whose names are torchvision's, with the 7x7 ImageNet stem and the
1000-class ``fc`` added.
"""

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import quick
from simcne import TSimCNE
from simcne.cli import main, build_parser
from simcne.flags import params_from_args
from simcne.models import (IMAGENET_MEAN, IMAGENET_STD, InputPrep, load_backbone_weights,
                           make_backbone, make_model)


# -- layouts of torchvision and timm, built here -------------------------------------------------
class ResNetLike(nn.Module):
    """torchvision's ResNet layout: 7x7 stride-2 stem, max-pool, layers, avgpool, ``fc``."""

    def __init__(self, num_classes=1000, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = torch.flatten(self.avgpool(self.layer1(x)), 1)
        return self.fc(x)


class MobileNetV3Like(nn.Module):
    """torchvision's MobileNetV3 layout: ``features``, ``avgpool``, ``classifier`` =
    Linear(C, hidden), Hardswish, Dropout, Linear(hidden, classes)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Hardswish())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(8, 16), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(16, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class EfficientNetLike(MobileNetV3Like):
    """torchvision's EfficientNet layout: ``classifier`` = Dropout, Linear."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, num_classes))


class TimmLike(nn.Module):
    """timm's convention: forward_features, forward_head, get_classifier,
    reset_classifier(0) leaving pooled features ``num_features`` wide."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.num_features = 8
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.reset_classifier(num_classes)
        self.reset_calls = []

    def forward_features(self, x):
        return torch.relu(self.stem(x))

    def forward_head(self, x, pre_logits=False):
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes, global_pool=None):
        if hasattr(self, "reset_calls"):
            self.reset_calls.append(num_classes)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def sequential_classifier():
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 10))


class ScaledLogits(ResNetLike):
    """Its output is computed from the Linear's, not the Linear's own: nothing is dropped."""

    def forward(self, x):
        return super().forward(x) * 2


def last_linear_input(net, x):
    """What the classifier's last Linear receives (eval mode): the features expected."""
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    seen = []
    handle = last.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    net.eval()
    with torch.no_grad():
        net(x)
    handle.remove()
    return seen[0]


# -- 1. classification networks as backbones -----------------------------------------------------
@pytest.mark.parametrize("make, width, dropped", [
    (ResNetLike, 8, ["fc: Linear(8 -> 1000)"]),
    (MobileNetV3Like, 16, ["classifier.2: Dropout(p=0.2)", "classifier.3: Linear(16 -> 1000)"]),
    (EfficientNetLike, 8, ["classifier.0: Dropout(p=0.2)", "classifier.1: Linear(8 -> 1000)"]),
    (TimmLike, 8, ["reset_classifier(0)", "Linear(8 -> 1000)"]),
    (sequential_classifier, 6, ["4: Linear(6 -> 10)"]),
])
def test_the_classifier_is_dropped_in_a_copy(make, width, dropped):
    torch.manual_seed(0)
    net = make()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    notes = []
    model = make_model(backbone=net, image_size=(16, 16), say=notes.append)
    x = torch.rand(4, 3, 16, 16)
    assert model.projection_head[0].in_features == width
    model.eval()
    with torch.no_grad():
        z, h = model(x)
    assert h.shape == (4, width) and z.shape == (4, 128)
    torch.testing.assert_close(h, last_linear_input(net, x))  # the pre-logits, unchanged
    # the module given keeps its classifier and its weights
    assert model.backbone is not net
    assert net(x).shape == (4, 10 if make is sequential_classifier else 1000)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    if make is TimmLike:
        assert model.backbone.reset_calls == [0] and net.reset_calls == []
    line = " ".join(notes)
    assert all(d in line for d in dropped), notes
    assert f"features are {width} wide" in line


@pytest.mark.parametrize("net", [
    nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    ScaledLogits(num_classes=10),
    TimmLike(num_classes=0),  # reset already
], ids=["feature extractor", "logits scaled after the Linear", "timm, reset"])
def test_networks_without_a_final_classifier_are_used_as_they_are(net):
    notes = []
    model = make_model(backbone=net, image_size=(16, 16), say=notes.append)
    assert model.backbone is net and notes == []


def test_gray_images_are_repeated_for_an_rgb_network():
    torch.manual_seed(0)
    net = ResNetLike()
    notes = []
    model = make_model(backbone=net, in_channels=1, image_size=(12, 12), say=notes.append)
    assert isinstance(model.prep, InputPrep) and model.prep.repeat == 3
    assert any("1 channel" in n and "repeated to 3" in n for n in notes)
    x = torch.rand(3, 1, 12, 12)
    model.eval()
    with torch.no_grad():
        _, h = model(x)
    torch.testing.assert_close(h, last_linear_input(net, x.repeat(1, 3, 1, 1)))
    # a named backbone is built for one channel: nothing to repeat
    assert isinstance(make_model("resnet_tiny", in_channels=1, image_size=(8, 8)).prep,
                       nn.Identity)


def test_verbose_says_what_was_dropped_and_repeated_once(tiny, capsys):
    quick(backbone=ResNetLike(), total_epochs=[1, 1, 1], verbose=True).fit(tiny[0])
    err = capsys.readouterr().err.splitlines()
    dropped = [line for line in err if "dropped its classifier" in line]
    repeated = [line for line in err if "repeated to 3 channels" in line]
    assert len(dropped) == 1 and len(repeated) == 1
    assert dropped[0].startswith("[simcne] backbone ResNetLike: dropped its classifier fc: "
                                 "Linear(8 -> 1000)")
    assert repeated[0].startswith("[simcne] the images have 1 channel")


def test_fit_trains_copies_and_never_changes_the_modules_given(tiny):
    X = tiny[0]
    torch.manual_seed(0)
    net, head = ResNetLike(num_classes=10), nn.Sequential(nn.Linear(8, 32), nn.ReLU(),
                                                          nn.Linear(32, 16))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    est = quick(backbone=net, projection_head=head, total_epochs=[1, 1, 1])
    Y1 = est.fit(X).embedding_
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    assert isinstance(net.fc, nn.Linear) and isinstance(head[2], nn.Linear)
    assert head[2].out_features == 16  # the stage-2 surgery happened to a copy
    assert est.get_params()["backbone"] is net and est.get_params()["projection_head"] is head
    # a second fit starts where the first did: the same embedding
    np.testing.assert_array_equal(est.fit(X).embedding_, Y1)


def test_a_classifier_backbone_round_trips_through_a_model_file(rgb, tmp_path):
    torch.manual_seed(0)
    est = quick(backbone=ResNetLike(), normalize="imagenet", total_epochs=[1, 1, 1]).fit(rgb)
    est.save(tmp_path / "m.pt")
    loaded = TSimCNE.load(tmp_path / "m.pt", backbone=ResNetLike(), device="cpu")
    np.testing.assert_array_equal(loaded.transform(rgb), est.transform(rgb))


# -- 2. normalize --------------------------------------------------------------------------------
class InputRecorder(nn.Module):
    """A small backbone that records the smallest value of every batch it receives (in a
    class attribute: fit works on a copy of the module)."""

    seen: list = []

    def __init__(self, channels=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        InputRecorder.seen.append((self.training, float(x.min()), float(x.max())))
        return self.body(x)


def test_input_prep_normalises_per_channel():
    prep = InputPrep(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    x = torch.rand(2, 3, 5, 5)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(prep(x), (x - mean) / std)
    assert prep.state_dict() == {}  # nothing saved: model files keep their keys
    one = InputPrep(repeat=3, mean=[0.5], std=[0.25])
    torch.testing.assert_close(one(torch.ones(1, 1, 2, 2)), torch.full((1, 3, 2, 2), 2.0))


def test_normalize_reaches_training_and_transform(rgb, tmp_path):
    black = np.zeros_like(rgb[:8])  # pixels 0: -mean/std after normalisation
    X = np.concatenate([rgb, black])
    InputRecorder.seen.clear()
    est = quick(backbone=InputRecorder(), normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                total_epochs=[1, 1, 1]).fit(X)
    train_min = min(lo for training, lo, _ in InputRecorder.seen if training)
    assert train_min < -1.5  # (0 - 0.5) / 0.25 = -2 somewhere in the augmented views
    InputRecorder.seen.clear()
    est.transform(black)
    assert {round(lo, 4) for _, lo, _ in InputRecorder.seen} == {-2.0}
    est.save(tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["params"]["normalize"] == [[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]
    plain = quick(backbone=InputRecorder(), total_epochs=[1, 1, 1]).fit(X)
    assert set(state["state_dict"]) == set(plain.model_.state_dict())
    loaded = TSimCNE.load(tmp_path / "m.pt", backbone=InputRecorder(), device="cpu")
    InputRecorder.seen.clear()
    np.testing.assert_array_equal(loaded.transform(black), est.transform(black))
    assert {round(lo, 4) for _, lo, _ in InputRecorder.seen} == {-2.0}


def test_a_model_file_from_before_normalize_still_loads(tiny, tmp_path):
    X = tiny[0][:48]
    est = quick(total_epochs=[1, 1, 1], batch_size=16).fit(X)
    est.save(tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    for name in ("normalize", "backbone_weights", "init", "init_stage"):
        del state["params"][name]  # what a file written before issue 22 holds
    torch.save(state, tmp_path / "old.pt")
    loaded = TSimCNE.load(tmp_path / "old.pt", device="cpu")
    assert loaded.normalize is None and loaded.init is None
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def test_normalize_must_fit_the_channels(tiny, rgb):
    with pytest.raises(ValueError, match=r"'normalize'.*one per channel.*\(3: 3-channel"):
        quick(normalize=([0.5, 0.5], [0.2, 0.2])).fit(rgb)
    with pytest.raises(ValueError, match=r"'normalize'.*\(1: 1-channel.*0\.449, 0\.226"):
        quick(normalize="imagenet").fit(tiny[0])  # resnet_small built for one channel
    # one value for every channel, or one per channel after gray is repeated to RGB: fine
    quick(normalize=(0.5, 0.25), total_epochs=[1]).fit(tiny[0][:32])
    quick(backbone=ResNetLike(), normalize="imagenet", total_epochs=[1]).fit(tiny[0][:32])


def test_a_whole_model_gets_the_same_input(tiny):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model = make_model(model=net, in_channels=1, image_size=(8, 8), normalize=(0.5, 0.25))
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], net((x.repeat(1, 3, 1, 1) - 0.5) / 0.25))
    est = quick(model=net, normalize=(0.5, 0.25), total_epochs=[1, 1, 1]).fit(tiny[0])
    assert est.embedding_.shape == (120, 2) and type(net[3]) is nn.Linear  # surgery on a copy


def test_a_checkpoint_of_another_normalize_is_refused(tiny, tmp_path):
    path = tmp_path / "run.ckpt"
    quick(total_epochs=[3, 1, 1], checkpoint=str(path), checkpoint_every=1,
          callbacks=lambda s, e, *a: (s, e) == (1, 1)).fit(tiny[0])
    with pytest.raises(ValueError, match=r"run\.ckpt.*other parameters.*normalize"):
        quick(total_epochs=[3, 1, 1], checkpoint=str(path), normalize=(0.5, 0.25)).fit(tiny[0])


# -- 3. backbone_weights --------------------------------------------------------------------------
def torchvision_style_resnet18(seed=1):
    """A state_dict as torchvision's resnet18 has it: our names, a 7x7 stem and ``fc``."""
    torch.manual_seed(seed)
    sd = make_backbone("resnet18").state_dict()
    sd["conv1.weight"] = torch.randn(64, 3, 7, 7)
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    return sd


def test_torchvision_names_load_into_resnet18_but_the_stem(tmp_path):
    sd = torchvision_style_resnet18()
    torch.save(sd, tmp_path / "resnet18-imagenet.pth")
    torch.manual_seed(2)
    bb = make_backbone("resnet18")
    stem = bb.conv1.weight.detach().clone()
    line, partial = load_backbone_weights(bb, tmp_path / "resnet18-imagenet.pth", "resnet18")
    own = bb.state_dict()
    assert all(torch.equal(own[k], sd[k]) for k in own if k != "conv1.weight")
    assert torch.equal(bb.conv1.weight, stem)  # (64, 3, 3, 3) here: kept as initialised
    assert partial and "\n" not in line
    assert "loaded 99 of the 100 tensors of resnet18" in line  # num_batches_tracked not counted
    assert "conv1.weight (the file's (64, 3, 7, 7), the backbone's (64, 3, 3, 3))" in line
    assert "fc.bias, fc.weight fit nothing" in line


def test_rgb_stem_weights_serve_gray_images_summed(tmp_path):
    torch.manual_seed(4)
    rgb = make_backbone("mobilenetv3_small", 3)  # torchvision's names and shapes
    torch.save(rgb.state_dict(), tmp_path / "mnv3.pth")
    gray = make_backbone("mobilenetv3_small", 1)
    line, partial = load_backbone_weights(gray, tmp_path / "mnv3.pth", "mobilenetv3_small")
    assert not partial and "features.0.0.weight summed over its 3 input channels" in line
    x = torch.rand(2, 1, 16, 16)
    rgb.eval(), gray.eval()
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)))


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}},  # DDP, Lightning
    lambda sd: {"model": sd, "epoch": 90, "args": {"lr": 0.1}},  # torchvision's references
], ids=["plain", "state_dict + module.", "model"])
def test_backbone_weights_in_a_fit(tiny, tmp_path, wrap):
    torch.manual_seed(3)
    src = make_backbone("resnet_small", 1).state_dict()
    torch.save(wrap(src), tmp_path / "w.pt")
    est = quick(backbone_weights=str(tmp_path / "w.pt"), total_epochs=[0]).fit(tiny[0])
    got = est.model_.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in src.items())  # nothing trained: the file's


def test_backbone_weights_from_a_simcne_model_file(tiny, tmp_path):
    first = quick(total_epochs=[1, 1, 1]).fit(tiny[0])
    first.save(tmp_path / "m.pt")
    est = quick(backbone_weights=str(tmp_path / "m.pt"), total_epochs=[0]).fit(tiny[0])
    want = first.model_.backbone.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in est.model_.backbone.state_dict().items())


def test_what_did_not_load_is_one_warning_line(rgb, tmp_path):
    sd = make_backbone("resnet_small", 3).state_dict()
    sd["conv1.weight"] = torch.randn(32, 3, 7, 7)
    sd["fc.weight"] = torch.randn(10, 128)
    torch.save(sd, tmp_path / "w.pt")
    with pytest.warns(UserWarning) as record:
        quick(backbone_weights=str(tmp_path / "w.pt"), total_epochs=[0]).fit(rgb)
    lines = [str(w.message) for w in record if "backbone_weights" in str(w.message)]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "not loaded, kept as initialised: conv1.weight" in lines[0] and "fc.weight" in lines[0]


def test_a_weights_file_that_fits_nothing_names_the_file(tiny, tmp_path):
    torch.save(make_backbone("resnet_tiny", 1).state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match=r"'backbone_weights' file '.*tiny\.pt' does not fit "
                                         r"backbone 'resnet_small'"):
        quick(backbone_weights=str(tmp_path / "tiny.pt")).fit(tiny[0])
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match=r"meta\.pt' holds no state_dict"):
        quick(backbone_weights=str(tmp_path / "meta.pt")).fit(tiny[0])
    (tmp_path / "notes.txt").write_text("no tensors here")
    with pytest.raises(ValueError, match=r"notes\.txt' cannot be read as weights"):
        quick(backbone_weights=str(tmp_path / "notes.txt")).fit(tiny[0])
    with pytest.raises(ValueError, match=r"'backbone_weights'.*'backbone' is a module"):
        quick(backbone=ResNetLike(), backbone_weights=str(tmp_path / "tiny.pt")).fit(tiny[0])


# -- 4. init: warm starts ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """A model fitted on the first half of the tiny digits, in a model file."""
    X = tiny[0]
    path = tmp_path_factory.mktemp("init") / "first.pt"
    est = quick(total_epochs=[2, 1, 1]).fit(X[::2])
    est.save(path)
    return est, str(path)


def test_init_stage_1_starts_from_the_backbone_and_head(tiny, saved):
    first, path = saved
    est = quick(init=path, total_epochs=[0]).fit(tiny[0][1::2])
    mine, theirs = est.model_.state_dict(), first.model_.state_dict()
    head_last = [k for k in mine if k.startswith("projection_head.2.")]
    assert head_last and all(torch.equal(mine[k], theirs[k]) for k in mine
                             if k not in head_last)
    assert not torch.equal(mine["projection_head.2.weight"], theirs["projection_head.2.weight"])
    assert est.get_params()["init"] == path  # stored as given


def test_init_stage_3_fine_tunes_the_whole_network(tiny, saved):
    first, path = saved
    X = tiny[0][1::2]
    same = quick(init=path, init_stage=3, total_epochs=[0, 0, 0]).fit(X)
    np.testing.assert_array_equal(same.transform(X), first.transform(X))
    tuned = quick(init=path, init_stage=3, total_epochs=[5, 5, 2]).fit(X)
    assert set(tuned.loss_history_["stage"]) == {3} and len(tuned.loss_history_) == 2
    assert len(tuned.stage_embeddings_) == 1
    np.testing.assert_array_equal(tuned.embedding_, tuned.stage_embeddings_[0])
    assert not np.array_equal(tuned.embedding_, same.embedding_)


def test_a_stopped_warm_start_goes_on_from_its_checkpoint(tiny, saved, tmp_path):
    _, path = saved
    X, ckpt = tiny[0][1::2], tmp_path / "run.ckpt"
    params = dict(init=path, init_stage=3, total_epochs=[0, 0, 3])
    full = quick(**params).fit(X)
    quick(**params, checkpoint=str(ckpt), checkpoint_every=1,
          callbacks=lambda s, e, *a: (s, e) == (3, 1)).fit(X)
    second = quick(**params, checkpoint=str(ckpt)).fit(X)
    assert second.resumed_from_ == (3, 1)
    np.testing.assert_array_equal(second.embedding_, full.embedding_)


def test_an_incompatible_init_names_the_file(tiny, rgb, saved, tmp_path):
    _, path = saved
    X = tiny[0]
    with pytest.raises(ValueError, match=r"first\.pt' was trained with backbone='resnet_small', "
                                         r"but this TSimCNE has backbone='resnet_tiny'"):
        quick(init=path, backbone="resnet_tiny").fit(X)
    with pytest.raises(ValueError, match=r"first\.pt' was trained on images of 8x8, but this fit "
                                         r"sees 12x12: pass image_size=\[8, 8\]"):
        quick(init=path, image_size=12).fit(X)
    with pytest.raises(ValueError, match=r"first\.pt' was trained on 1-channel images, but X "
                                         r"has 3-channel"):
        quick(init=path).fit(rgb)
    with pytest.raises(ValueError, match=r"first\.pt' maps to 2 dimensions.*out_dim=3"):
        quick(init=path, init_stage=3, out_dim=3).fit(X)
    with pytest.raises(ValueError, match=r"first\.pt' was trained with normalize=None"):
        quick(init=path, normalize=(0.5, 0.25)).fit(X)
    with pytest.raises(ValueError, match=r"first\.pt' was trained with projection_head='mlp', "
                                         r"but this TSimCNE has projection_head=an nn\.Module"):
        quick(init=path, projection_head=nn.Sequential(nn.Linear(128, 64), nn.ReLU(),
                                                       nn.Linear(64, 128))).fit(X)
    # modules on both sides: their weights' names and shapes decide
    def small(width):
        return nn.Sequential(nn.Conv2d(1, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    quick(backbone=small(8), total_epochs=[1, 1, 1]).fit(X).save(tmp_path / "module.pt")
    with pytest.raises(ValueError, match=r"module\.pt' holds a network of another architecture"
                                         r".*backbone\.0\.weight \(the file's \(8, 1, 3, 3\), "
                                         r"here \(4, 1, 3, 3\)\)"):
        quick(init=str(tmp_path / "module.pt"), backbone=small(4)).fit(X)
    quick(init=str(tmp_path / "module.pt"), backbone=small(8), total_epochs=[1]).fit(X)
    torch.save(make_backbone("resnet_small", 1).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"'init'.*weights\.pt.*not a simcne model file"):
        quick(init=str(tmp_path / "weights.pt")).fit(X)


@pytest.mark.parametrize("params, match", [
    (dict(init_stage=2), r"'init_stage' parameter of TSimCNE must be 1 .* or 3"),
    (dict(init_stage=3), r"'init_stage' parameter of TSimCNE is 3.*init is None"),
    (dict(init_stage=3, init="PATH", total_epochs=[5, 5]), r"'total_epochs'.*init_stage=3"),
    (dict(init="PATH", backbone_weights="PATH"), r"'backbone_weights'.*must be None when "
                                                 r"'init' is given"),
    (dict(init="missing.pt"), r"'init' parameter.*an existing file.*missing\.pt"),
])
def test_bad_warm_start_parameters_are_named(tiny, saved, params, match):
    params = {k: saved[1] if v == "PATH" else v for k, v in params.items()}
    with pytest.raises(ValueError, match=match):
        quick(**params).fit(tiny[0])


# -- the command -----------------------------------------------------------------------------------
@pytest.mark.parametrize("words, value", [
    (["imagenet"], "imagenet"), (["none"], None), (["0.5", "0.25"], (0.5, 0.25)),
    (["0.4", "0.5", "0.6", "0.2", "0.2", "0.3"], ([0.4, 0.5, 0.6], [0.2, 0.2, 0.3])),
])
def test_normalize_flag(words, value):
    args = build_parser().parse_args(["fit", "x.npy", "--out", "o", "--normalize", *words])
    assert params_from_args(args)["normalize"] == value


def test_warm_start_through_the_command(tiny, tmp_path, capsys):
    X = tiny[0]
    np.save(tmp_path / "a.npy", X[::2])
    np.save(tmp_path / "b.npy", X[1::2])
    base = ["--backbone", "resnet_small", "--batch-size", "32", "--random-state", "0",
            "--device", "cpu", "--quiet", "--no-plots"]
    assert main(["fit", str(tmp_path / "a.npy"), "--out", str(tmp_path / "a"),
                 "--total-epochs", "1", "1", "1", "--normalize", "0.5", "0.25", *base]) == 0
    model = str(tmp_path / "a" / "model.pt")
    assert main(["fit", str(tmp_path / "b.npy"), "--out", str(tmp_path / "b"), "--init", model,
                 "--init-stage", "3", "--total-epochs", "0", "0", "2", "--normalize", "0.5",
                 "0.25", *base]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["stages_run"] == 1 and report["epochs_run"] == {"stage_3": 2}
    assert report["parameters"]["init"] == model and report["parameters"]["init_stage"] == 3
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "b.npy"), "--out", str(tmp_path / "c"), "--init", model,
                 "--total-epochs", "1", *base]) == 2  # without its normalize
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pt' was trained with normalize=[0.5, 0.25]" in err[0]
    assert main(["fit", str(tmp_path / "b.npy"), "--out", str(tmp_path / "d"),
                 "--normalize", "1", "2", "3", *base]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--normalize: expected 'imagenet'" in err[0]
