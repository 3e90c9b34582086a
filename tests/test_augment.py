import colorsys

import numpy as np
import pytest
import torch

from simcne.augment import (Augment, adjust_brightness, adjust_contrast, adjust_hue,
                             adjust_saturation, grayscale)


def _batch(n=64, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_shapes_range_and_dtype():
    out = Augment(size=(10, 12))(_batch(), generator=torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 10, 12) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_one_channel_stays_one_channel():
    out = Augment(size=8)(_batch(c=1), generator=torch.Generator().manual_seed(0))
    assert out.shape == (64, 1, 8, 8)


def test_same_generator_same_views_and_different_views_per_call():
    x = _batch()
    a = Augment(size=16)
    v1 = a(x, generator=torch.Generator().manual_seed(3))
    v2 = a(x, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    v3, v4 = a(x, generator=g), a(x, generator=g)
    assert torch.equal(v1, v2)
    assert not torch.equal(v3, v4)


def test_parameter_frequencies_match_the_paper():
    p = Augment(size=32).sample(20000, (32, 32), generator=torch.Generator().manual_seed(0))
    assert p["flip"].float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert p["jitter"].float().mean().item() == pytest.approx(0.8, abs=0.02)
    assert p["gray"].float().mean().item() == pytest.approx(0.2, abs=0.02)
    area = (p["height"] * p["width"]) / (32 * 32)
    assert area.min() >= 0.2 - 0.05 and area.max() <= 1.0
    ratio = p["width"] / p["height"]
    assert ratio.min() >= 0.6 and ratio.max() <= 1.6  # 3/4..4/3 up to rounding
    assert (p["top"] >= 0).all() and (p["top"] + p["height"] <= 32).all()
    assert (p["left"] >= 0).all() and (p["left"] + p["width"] <= 32).all()
    f = p["factors"][p["jitter"]]
    assert f[:, :3].min() >= 0.6 and f[:, :3].max() <= 1.4
    assert f[:, 3].abs().max() <= 0.1
    # each sample sees each of the four jitter operations once, in a random order
    assert (p["order"].sort(dim=1).values == torch.arange(4)).all()
    assert len({tuple(o) for o in p["order"][:2000].tolist()}) == 24


def test_full_crop_without_flip_or_colour_is_the_identity():
    x = _batch(n=4).float() / 255
    a = Augment(size=16)
    p = a.sample(4, (16, 16), generator=torch.Generator().manual_seed(0))
    p.update(top=torch.zeros(4), left=torch.zeros(4), height=torch.full((4,), 16.0),
             width=torch.full((4,), 16.0), flip=torch.zeros(4, dtype=torch.bool),
             jitter=torch.zeros(4, dtype=torch.bool), gray=torch.zeros(4, dtype=torch.bool),
             factors=torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(4, 1))
    assert torch.allclose(a.apply(x, p), x, atol=1e-5)
    p["flip"][:] = True
    assert torch.allclose(a.apply(x, p), x.flip(-1), atol=1e-5)


def test_hue_matches_colorsys():
    rng = np.random.default_rng(0)
    rgb = rng.random((50, 3))
    shift = 0.07
    want = []
    for r, g, b in rgb:
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        want.append(colorsys.hsv_to_rgb((h + shift) % 1.0, s, v))
    x = torch.tensor(rgb, dtype=torch.float32).T.reshape(1, 3, 50, 1)
    got = adjust_hue(x, torch.tensor([shift])).reshape(3, 50).T.numpy()
    assert np.abs(got - np.array(want)).max() < 1e-5


def test_grayscale_weights():
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert grayscale(x).item() == pytest.approx(0.2989)


def _jitter_one_op_at_a_time(x, p):
    """Each sample's four operations applied one by one, in its order (the plain definition)."""
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    out = []
    for i in range(len(x)):
        xi = x[i : i + 1]
        if p["jitter"][i]:
            for k in p["order"][i].tolist():
                if x.shape[1] == 3 or k < 2:
                    xi = ops[k](xi, p["factors"][i, k : k + 1])
        out.append(xi)
    return torch.cat(out)


@pytest.mark.parametrize("channels", [3, 1])
def test_batched_colour_jitter_equals_one_operation_at_a_time(channels):
    x = _batch(n=48, c=channels).float() / 255
    a = Augment(size=16)
    p = a.sample(48, (16, 16), generator=torch.Generator().manual_seed(5))
    want = _jitter_one_op_at_a_time(x, p)
    # one way on every device (six blend passes and one hue rotation, no host sync)
    got = a.color_jitter(x, p)
    assert torch.allclose(got, want, atol=1e-5)
