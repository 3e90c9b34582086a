"""Named sets of :class:`simcne.TSimCNE` parameters for a purpose, in one place.

``TSimCNE.preset(NAME, **overrides)`` in Python and ``simcne fit DATA --preset NAME`` on the
command line (flags override the preset's values) read them; ``simcne fit --help`` lists
them with :data:`DESCRIPTIONS`. ``TSimCNE()`` itself keeps the paper's settings: a preset
is a choice the user makes by name. The measurements behind each are in BENCHMARKS.md and
docs/small_datasets.md.
"""

from __future__ import annotations

import copy

# Settings of `simcne demo`: digits (1,797 8x8 images) on a CPU, trained in about two
# minutes on a 2-core CPU (docs/small_datasets.md; the measurements are in BENCHMARKS.md):
# - resnet_tiny (widths 16/32/64): its cheaper steps buy 2.5 times the stage-3 epochs of
#   resnet_small in the same time, and the map gains more from them than from the width;
# - the augmentation without the mirror and with crops of 80-100 % of the image: a mirrored
#   or heavily cropped digit is often another digit, and at exaggeration 4 the variety of
#   wider crops draws a class as a stroke (crops of 70-100 %: the 0s and 6s as thin lines,
#   9-10 % of the points on lines; 50-100 %: 33 %);
# - stage 1 short (its features are good after a few epochs on digits), stage 2 at 20 times
#   stage 1's rate (at 14 steps an epoch, stage 1's rate leaves the new layer far from
#   trained after 5 epochs);
# - exaggeration 4 in stages 2 and 3, the new layer at N(0, 0.1^2) and stage 3 at about
#   7 times stage 1's rate: a short run contracts into separated clusters instead of an
#   evenly spread disc;
# - 200 stage-3 epochs: with the narrower crops, 150 left the classes 3, 5, 8 and 9
#   touching (kNN 0.967 over three seeds against 0.983 at 200).
DEMO = dict(backbone="resnet_tiny", total_epochs=[10, 5, 200], batch_size=128,
            lr=[0.015, 0.3, 0.1], exaggeration=4.0, out_layer_std=0.1,
            data_transform={"flip_p": 0.0, "crop_scale": (0.8, 1.0)}, random_state=0)

# Photographs, drawings and other images that a mirror or a crop leaves in their class, a
# few thousand on a CPU (docs/small_datasets.md; BENCHMARKS.md, "Beyond the paper"):
# - the paper's augmentation (mirror, crops of 20-100 %);
# - resnet_tiny, batch 128 and the demo's rates, for the same reasons as the demo;
# - exaggeration 4 in stage 2 only and plain InfoNCE (1) in stage 3, as t-SNE's early
#   exaggeration: on 1,886 clip-art drawings, whose classes are not separate clusters,
#   exaggeration 4 throughout folds the map onto a line (kNN 0.316), 1 throughout gives an
#   evenly filled disc (0.351), [1, 4, 1] separated groups (0.379, t-SNE of the pixels
#   0.385);
# - 100 stage-1 epochs: stage 1 makes the features, and a few thousand images are 15-20
#   steps an epoch.
PHOTOS = dict(backbone="resnet_tiny", total_epochs=[100, 5, 100], batch_size=128,
              lr=[0.015, 0.3, 0.1], exaggeration=[1.0, 4.0, 1.0], out_layer_std=0.1,
              random_state=0)

#: named sets of TSimCNE parameters, each with the line that --help shows
PRESETS = {"demo": DEMO, "photos": PHOTOS}
DESCRIPTIONS = {
    "demo": "the settings of 'simcne demo': digit-like small images on a CPU (no mirror, "
            "crops of 80-100 %%, resnet_tiny, exaggeration 4)",
    "photos": "a few thousand photographs or drawings on a CPU (the paper's augmentation, "
              "resnet_tiny, exaggeration 4 in stage 2 and 1 in stage 3)",
}


def preset(name: str) -> dict:
    """A copy of preset ``name``'s parameters; a ValueError names the known ones."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}: expected one of {sorted(PRESETS)}.")
    return copy.deepcopy(PRESETS[name])


def describe_presets() -> str:
    """One line per preset, for --help."""
    return "; ".join(f"{name}: {DESCRIPTIONS[name]}" for name in sorted(PRESETS))
