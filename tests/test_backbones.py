"""Backbones by name, custom modules, check_model and pretrained weights (issue 3)."""

import pytest
import torch
from torch import nn

from simcne.models import (
    BACKBONES,
    WrappedModel,
    backbone_out_features,
    check_model,
    make_backbone,
    make_model,
    replace_last_linear,
)
from simcne.models.layers import StochasticDepth, make_divisible

# Feature-extractor parameters (3 channels) = torchvision's total minus its classifier;
# ResNets also minus 7,680 for the 3x3 stem instead of 7x7 (64 * 3 * (49 - 9)).
EXPECTED = {
    "resnet18": (11_689_512 - (512 * 1000 + 1000) - 7_680, 512),
    "resnet34": (21_797_672 - (512 * 1000 + 1000) - 7_680, 512),
    "resnet50": (25_557_032 - (2048 * 1000 + 1000) - 7_680, 2048),
    "resnet101": (44_549_160 - (2048 * 1000 + 1000) - 7_680, 2048),
    "mobilenetv3_small": (2_542_856 - (576 * 1024 + 1024) - (1024 * 1000 + 1000), 576),
    "mobilenetv3_large": (5_483_032 - (960 * 1280 + 1280) - (1280 * 1000 + 1000), 960),
    "efficientnet_v2_s": (21_458_488 - (1280 * 1000 + 1000), 1280),
    "efficientnet_v2_m": (54_139_356 - (1280 * 1000 + 1000), 1280),
    "efficientnet_v2_l": (118_515_272 - (1280 * 1000 + 1000), 1280),
    "resnet_small": (307_360, 128),
    "resnet_tiny": (77_392, 64),
}
SLOW = {"resnet101", "efficientnet_v2_m", "efficientnet_v2_l"}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def forward_backward(module, x):
    module.train()
    out = module(x)
    out = out[0] if isinstance(out, tuple) else out
    out.square().mean().backward()
    return out


def test_expected_counts_are_the_documented_numbers():
    assert EXPECTED["resnet18"][0] == 11_168_832
    assert EXPECTED["mobilenetv3_small"][0] == 927_008
    assert EXPECTED["mobilenetv3_large"][0] == 2_971_952
    assert EXPECTED["efficientnet_v2_s"][0] == 20_177_488
    assert set(EXPECTED) == set(BACKBONES)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in EXPECTED]
)
def test_backbone_counts_widths_and_trains_on_1_and_3_channels(name):
    count, width = EXPECTED[name]
    torch.manual_seed(0)
    bb = make_backbone(name)
    assert n_params(bb) == count
    assert bb.out_features == width
    h = forward_backward(bb, torch.randn(2, 3, 16, 16))
    assert h.shape == (2, width)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bb.parameters())

    model = make_model(backbone=bb, image_size=(16, 16))  # head width follows the backbone
    assert model.projection_head[0].in_features == width
    assert check_model(model, 3, (16, 16), name) == 128

    bb1 = make_backbone(name, in_channels=1)
    assert bb1.out_features == width
    assert forward_backward(bb1, torch.randn(2, 1, 16, 16)).shape == (2, width)


@pytest.mark.parametrize(
    "name, width", [("resnet_small", 128), ("mobilenetv3_small", 576), ("mobilenetv3_large", 960)]
)
@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_named_head_width_follows_named_backbone(name, width, head):
    model = make_model(name, head, in_channels=1, image_size=(8, 8), pretrain_out_dim=16)
    assert model.projection_head[0].in_features == width
    z, h = model(torch.randn(2, 1, 8, 8))
    assert z.shape == (2, 16) and h.shape == (2, width)


@pytest.mark.parametrize("name", ["mobilenetv3_small", "mobilenetv3_large", "efficientnet_v2_s"])
def test_stem_is_a_stride_1_3x3_conv(name):
    stem = make_backbone(name).features[0][0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)


def test_torchvision_layout_details():
    assert [make_divisible(c // 4) for c in (16, 72, 96, 120, 576)] == [8, 24, 24, 32, 144]
    small = make_backbone("mobilenetv3_small").state_dict()
    assert small["features.1.block.1.fc1.weight"].shape == (8, 16, 1, 1)  # SE on 16 channels
    assert isinstance(make_backbone("mobilenetv3_large").features[1].block[0][2], nn.ReLU)
    assert isinstance(make_backbone("mobilenetv3_large").features[7].block[0][2], nn.Hardswish)
    s = make_backbone("efficientnet_v2_s")
    sd = s.state_dict()
    assert sd["features.4.0.block.2.fc1.weight"].shape == (16, 256, 1, 1)  # squeeze = cin / 4
    assert sd["features.1.0.block.0.0.weight"].shape == (24, 24, 3, 3)  # fused, ratio 1
    probs = [m.p for m in s.modules() if isinstance(m, StochasticDepth)]
    assert probs[0] == 0 and probs[-1] == pytest.approx(0.2 * 39 / 40)


def test_stochastic_depth_is_identity_in_eval_and_drops_rows_in_training():
    sd, x = StochasticDepth(0.5), torch.ones(64, 3)
    assert torch.equal(sd.eval()(x), x)
    y = sd.train()(x)
    assert set(y[:, 0].tolist()) <= {0.0, 2.0} and torch.equal(y, y[:, :1].expand(-1, 3))


def test_custom_backbone_width_from_dry_forward_pass():
    bb = nn.Sequential(nn.Conv2d(1, 8, 3), nn.AdaptiveAvgPool2d(1))  # (B, 8, 1, 1)
    model = make_model(backbone=bb, in_channels=1, image_size=(8, 8))
    assert model.backbone is bb
    z, h = model(torch.randn(3, 1, 8, 8))
    assert h.shape == (3, 8) and z.shape == (3, 128)
    no_params = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert backbone_out_features(no_params, 3, (4, 4)) == 3


def test_dry_forward_pass_restores_each_modules_mode():
    bb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1))
    bb[1].eval()  # a frozen BatchNorm inside a training model
    backbone_out_features(bb, 3, (8, 8))
    assert bb.training and not bb[1].training and bb[0].training
    model = make_model(backbone=bb, image_size=(8, 8))
    check_model(model, 3, (8, 8))
    assert model.training and not bb[1].training


def test_custom_projection_head_and_model():
    head = nn.Sequential(nn.Linear(128, 5))
    model = make_model("resnet_small", projection_head=head)
    assert model.projection_head is head
    assert check_model(model, 3, (8, 8)) == 5

    z_only = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 4))
    wrapped = make_model(backbone="not used", projection_head="ignored", model=z_only)
    assert isinstance(wrapped, WrappedModel) and wrapped.model is z_only
    z, h = wrapped(torch.randn(2, 3, 8, 8))
    assert z.shape == (2, 4) and h is None
    assert check_model(wrapped, 3, (8, 8)) == 4
    replace_last_linear(wrapped, 2)
    assert wrapped(torch.randn(2, 3, 8, 8))[0].shape == (2, 2)

    both = make_model("resnet_small")
    assert make_model(model=both) is both
    assert isinstance(make_model(model=both.backbone), WrappedModel)


def test_bad_parameters_name_themselves():
    with pytest.raises(ValueError, match="'backbone'.*resnet18.*'resnet19'"):
        make_model("resnet19")
    with pytest.raises(ValueError, match="'backbone'.*int"):
        make_model(3)
    with pytest.raises(ValueError, match="'projection_head'.*'mlp'.*'conv'"):
        make_model("resnet_small", "conv")
    with pytest.raises(ValueError, match="'model'.*str"):
        make_model(model="resnet18")


def test_check_model_wrong_channels():
    model = make_model("resnet18", in_channels=3)
    with pytest.raises(ValueError, match=r"'backbone' resnet18 .*\(1, 16, 16\).*3 channels"):
        check_model(model, 1, (16, 16), name="resnet18")
    with pytest.raises(ValueError, match=r"'model' Sequential .*\(1, 8, 8\)"):
        check_model(make_model(model=nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten())), 1, (8, 8))


def test_check_model_images_too_small():
    bb = nn.Sequential(nn.Conv2d(3, 8, 5), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = make_model(backbone=bb, image_size=(16, 16))
    assert check_model(model, 3, (16, 16)) == 128
    with pytest.raises(ValueError, match=r"'backbone' Sequential .*\(3, 4, 4\).*[Kk]ernel size"):
        check_model(model, 3, (4, 4))


def test_check_model_output_not_2d_and_head_mismatch():
    model = make_model(backbone=nn.Conv2d(3, 8, 3), projection_head=nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"'backbone' Conv2d .*\(B, D\).*\(2, 8, 6, 6\)"):
        check_model(model, 3, (8, 8))
    with pytest.raises(ValueError, match=r"'backbone' Conv2d .*\(B, D\)"):
        make_model(backbone=nn.Conv2d(3, 8, 3))
    model = make_model("resnet_small", projection_head=nn.Sequential(nn.Linear(512, 2)))
    with pytest.raises(ValueError, match=r"'projection_head'.*128-wide.*resnet_small.*expects 512"):
        check_model(model, 3, (8, 8), name="resnet_small")


def test_pretrained_weights_are_kept(tmp_path):
    torch.manual_seed(1)
    trained = make_backbone("resnet_small")
    forward_backward(trained, torch.randn(4, 3, 8, 8))  # moves the BatchNorm statistics too
    torch.save(trained.state_dict(), tmp_path / "bb.pt")

    bb = make_backbone("resnet_small")
    bb.load_state_dict(torch.load(tmp_path / "bb.pt", weights_only=True))
    model = make_model(backbone=bb)
    check_model(model, 3, (8, 8))
    for key, value in trained.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key

    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1))
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    model = make_model(backbone=plain, image_size=(8, 8))
    check_model(model, 3, (8, 8))
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet_small", "resnet_tiny"])
def test_resnet_stem_is_3x3_stride_1_without_max_pool(name):
    """Issue 29: the SimCLR stem for small images keeps a 32x32 image at 32x32."""
    bb = make_backbone(name)
    conv = bb.conv1
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in bb.modules())
    x = torch.randn(2, 3, 32, 32)
    stem = bb.relu(bb.bn1(bb.conv1(x)))
    assert stem.shape == (2, conv.out_channels, 32, 32)
    # the first stage keeps the size too; ResNet18 downsamples 8x in all (32 -> 4)
    assert bb.layer1(stem).shape[-2:] == (32, 32)
    if name == "resnet18":
        assert bb.layer4(bb.layer3(bb.layer2(bb.layer1(stem)))).shape[-2:] == (4, 4)
