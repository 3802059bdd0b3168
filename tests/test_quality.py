"""The `resnet` architecture and the recommended presets: the sizes and channels they promise,
spectral norm in D, refusals that say what works, and presets that pass the checks."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from ganforge.errors import ConfigError
from ganforge.models import build_models, get_architecture
from ganforge.models.resnet import layout


@pytest.mark.parametrize(
    ("side", "channels"), [(28, 1), (32, 3), (48, 1), (64, 1), (128, 3), (256, 1)]
)
def test_resnet_makes_every_promised_size_grey_or_colour(side, channels):
    shape = (channels, side, side)
    if side >= 128:  # shapes only: no memory, no time
        with torch.device("meta"):
            g, d = build_models("resnet", 16, shape, {"channels": 4})
            images = g(torch.zeros(2, 16))
            logits = d(images)
    else:
        torch.manual_seed(0)
        g, d = build_models("resnet", 16, shape, {"channels": 4})
        images = g(torch.randn(2, 16))
        logits = d(images)
        assert images.min() >= -1 and images.max() <= 1
    assert tuple(images.shape) == (2, *shape) and tuple(logits.shape) == (2,)


def test_resnet_layout_doubles_from_four_to_seven():
    assert layout(28) == (7, 2) and layout(32) == (4, 3) and layout(128) == (4, 5)
    assert layout(30) is None and layout(14) is None  # 14 = 7 * 2: fewer than two doublings


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [((1, 30, 30), "resolution 30"), ((2, 32, 32), "1- or 3-channel"), ((1, 32, 64), "square")],
)
def test_resnet_refuses_a_shape_it_cannot_make_in_one_line(shape, fragment):
    problems = get_architecture("resnet").problems(shape, {})
    assert len(problems) == 1 and fragment in problems[0] and "\n" not in problems[0]
    with pytest.raises(ConfigError, match=fragment):
        build_models("resnet", 16, shape)


def test_every_layer_of_the_resnet_discriminator_is_spectrally_normalised():
    _, d = build_models("resnet", 16, (1, 28, 28), {"channels": 4, "num_classes": 10})
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m) for m in layers)
    assert parametrize.is_parametrized(d.embed)  # the projection too


def test_a_conditional_resnet_depends_on_the_class():
    torch.manual_seed(0)
    g, d = build_models("resnet", 16, (1, 28, 28), {"channels": 4, "num_classes": 3})
    with torch.no_grad():  # make the classes different, as training does
        for module in g.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.normal_(1.0, 0.5)
    g.eval()
    z = torch.randn(4, 16)
    zeros, twos = g(z, torch.zeros(4, dtype=torch.long)), g(z, torch.full((4,), 2))
    assert not torch.allclose(zeros, twos)
    # without labels it cycles 0, 1, 2, 0: a fair class mix for callers that know no classes
    assert torch.equal(g(z), g(z, torch.tensor([0, 1, 2, 0])))
    assert d(zeros, torch.zeros(4, dtype=torch.long)).shape == (4,)


@pytest.mark.parametrize("preset", ["mnist-best", "fashion-best", "brain-best", "brain-demo"])
def test_recommended_presets_pass_the_checks(preset):
    from ganforge import load_preset
    from ganforge.check import check

    config = check(load_preset(preset))
    spectral_d = (
        config.model.arch == "resnet" or config.regularise.spectral_norm == "d"
    )  # resnet's D has it
    assert spectral_d and config.loss == "hinge" and config.regularise.ema_decay > 0
    if preset == "brain-best":  # the small-data recipe: augmentation, adapted to D's overfitting
        assert config.augment.names and config.augment.ada_target > 0
