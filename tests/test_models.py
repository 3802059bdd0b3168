"""The notebook's architectures, layer for layer: shapes, parameter counts, Keras semantics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.errors import ConfigError
from ganforge.models import build_models, count_parameters


@pytest.mark.parametrize("arch, g_params, d_params", [
    # Keras "Trainable params" of the notebook's models (BatchNorm: gamma and beta only).
    ("gan", 4_396_048, 533_505),
    ("dcgan-mnist", 6_753_409, 502_913),
])
def test_parameter_counts_match_the_notebook(arch, g_params, d_params):
    g, d = build_models(arch, 100, (1, 28, 28))
    assert count_parameters(g) == g_params
    assert count_parameters(d) == d_params


@pytest.mark.parametrize("arch", ["gan", "dcgan-mnist"])
def test_generator_makes_tanh_images_and_discriminator_one_logit(arch):
    g, d = build_models(arch, 100, (1, 28, 28))
    images = g(torch.randn(8, 100))
    assert images.shape == (8, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (8,)


def test_gan_layers_follow_the_notebook():
    g, d = build_models("gan", 100, (1, 28, 28))
    widths = [m.out_features for m in g.modules() if isinstance(m, nn.Linear)]
    assert widths == [256, 512, 1024, 2048, 784]
    assert [m.out_features for m in d.modules() if isinstance(m, nn.Linear)] == [512, 256, 1]
    for bn in (m for m in g.modules() if isinstance(m, nn.BatchNorm1d)):
        assert bn.momentum == pytest.approx(0.2)  # Keras momentum=0.8 keeps 80% of the old value
        assert bn.eps == pytest.approx(1e-3)
    slopes = {m.negative_slope for m in g.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}


def test_dcgan_mnist_layers_follow_the_notebook():
    g, d = build_models("dcgan-mnist", 100, (1, 28, 28))
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(64, (5, 5)), (1, (5, 5))]
    d_convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.stride) for c in d_convs] == [(64, (2, 2)), (128, (2, 2))]
    assert any(isinstance(m, nn.MaxPool2d) for m in d.modules())
    assert [m.p for m in d.modules() if isinstance(m, nn.Dropout)] == [0.5]
    assert sum(isinstance(m, nn.ELU) for m in d.modules()) == 3


def test_width_option_shrinks_the_model():
    g_full, _ = build_models("dcgan-mnist", 100, (1, 28, 28))
    g_half, _ = build_models("dcgan-mnist", 100, (1, 28, 28), {"width": 0.5})
    assert count_parameters(g_half) < count_parameters(g_full) / 3
    assert g_half(torch.randn(2, 100)).shape == (2, 1, 28, 28)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ConfigError, match="unknown model 'resnet'.*dcgan-mnist.*gan"):
        build_models("resnet", 100, (1, 28, 28))


def test_dcgan_mnist_refuses_other_sizes_with_a_reason():
    with pytest.raises(ConfigError, match="28x28 images only"):
        build_models("dcgan-mnist", 100, (1, 64, 64))


def test_bad_model_option_is_a_config_error():
    with pytest.raises(ConfigError, match="bad option"):
        build_models("gan", 100, (1, 28, 28), {"g_hidden": 5})


def test_unknown_model_option_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="no option 'widht'.*width, dropout"):
        build_models("dcgan-mnist", 100, (1, 28, 28), {"widht": 0.5})
