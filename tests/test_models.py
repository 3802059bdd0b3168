"""The registry and the notebook's architectures: shapes, parameter counts, Keras semantics.

tests/fidelity holds the ports against Keras itself (needs the `fidelity` extra); these
tests pin the same facts without Keras.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import ConfigError
from ganforge.models import ARCHITECTURES, build_models, count_parameters, get_architecture
from ganforge.models.layers import KerasConv2d, keras_bn, same_padding


@pytest.mark.parametrize(
    "arch, g_params, d_params",
    [
        # Keras "Trainable params" of the notebook's Sequential models (BatchNorm: gamma and
        # beta only). The DCGAN's D: its second conv is Keras 'valid' (14 -> 5, pooled to 2x2).
        ("gan", 4_396_048, 533_505),
        ("dcgan-mnist", 6_753_409, 339_073),
    ],
)
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
    assert [c.keras_padding for c in d_convs] == ["same", "valid"]  # no padding argument: valid
    sizes = []
    pool = next(m for m in d.modules() if isinstance(m, nn.MaxPool2d))
    hook = pool.register_forward_hook(
        lambda m, i, o: sizes.extend([tuple(i[0].shape[1:]), tuple(o.shape[1:])])
    )
    d.eval()(torch.zeros(1, 1, 28, 28))
    hook.remove()
    assert sizes == [(128, 5, 5), (128, 2, 2)]  # pooled to 2x2x128 = 512 Dense inputs
    assert any(isinstance(m, nn.MaxPool2d) for m in d.modules())
    assert [m.p for m in d.modules() if isinstance(m, nn.Dropout)] == [0.5]
    assert sum(isinstance(m, nn.ELU) for m in d.modules()) == 3


def test_width_option_shrinks_the_model():
    g_full, _ = build_models("dcgan-mnist", 100, (1, 28, 28))
    g_half, _ = build_models("dcgan-mnist", 100, (1, 28, 28), {"width": 0.5})
    assert count_parameters(g_half) < count_parameters(g_full) / 3
    assert g_half(torch.randn(2, 100)).shape == (2, 1, 28, 28)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ConfigError, match="unknown model 'stylegan9'.*dcgan-mnist.*gan"):
        build_models("stylegan9", 100, (1, 28, 28))


def test_dcgan_mnist_refuses_other_sizes_with_a_reason():
    with pytest.raises(ConfigError, match="28x28 images only"):
        build_models("dcgan-mnist", 100, (1, 64, 64))


def test_bad_model_option_is_a_config_error():
    with pytest.raises(ConfigError, match="bad option"):
        build_models("gan", 100, (1, 28, 28), {"g_hidden": 5})


def test_unknown_model_option_lists_the_valid_ones():
    with pytest.raises(
        ConfigError, match="no option 'widht'.*width, bn_momentum, batchnorm, dropout"
    ):
        build_models("dcgan-mnist", 100, (1, 28, 28), {"widht": 0.5})


def test_options_and_their_defaults_come_from_the_constructors():
    assert get_architecture("dcgan-mnist").options == {
        "width": 1.0,
        "bn_momentum": 0.01,
        "batchnorm": "torch",
        "dropout": 0.5,
    }
    assert get_architecture("dcgan-oasis").options == {
        "width": 1.0,
        "bn_momentum": 0.01,
        "batchnorm": "torch",
        "d_norm": "batch",
        "dropout": 0.0,
    }
    assert get_architecture("gan").options == {
        "g_hidden": (256, 512, 1024, 2048),
        "batchnorm": "torch",
        "d_hidden": (512, 256),
    }
    assert get_architecture("dcgan").options == {"width": 1.0}


def test_problems_name_every_bad_option_and_shape_before_anything_is_built():
    arch = get_architecture("dcgan-mnist")
    assert arch.problems((1, 28, 28), {"width": 0.5}) == []
    found = arch.problems((1, 64, 64), {"widht": 0.5, "dropuot": 0.1})
    assert len(found) == 3 and all("\n" not in line for line in found)
    assert "no option 'dropuot'" in found[0] and "no option 'widht'" in found[1]
    assert "28x28 images only" in found[2]
    for name, arch in ARCHITECTURES.items():  # every model builds at its default size
        size = arch.default_resolution or 28
        assert arch.problems((1, size, size), dict(arch.options)) == [], name


def test_bad_option_value_is_a_config_error_that_says_what_is_allowed():
    with pytest.raises(ConfigError, match="d_norm must be one of batch, none"):
        build_models("dcgan-oasis", 100, (1, 64, 64), {"d_norm": "layer"})


def test_keras_same_padding_puts_the_extra_row_after():
    assert same_padding(28, 5, 2) == (1, 2)  # 28 -> 14: Keras pads 1 top/left, 2 bottom/right
    assert same_padding(14, 5, 1) == (2, 2)
    conv = KerasConv2d(1, 1, 5, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # the kernel's top-left tap reads input (2i - 1, 2j - 1)
        image = torch.arange(28 * 28, dtype=torch.float32).view(1, 1, 28, 28)
        out = conv(image)
    assert out.shape == (1, 1, 14, 14)
    assert out[0, 0, 1, 1] == image[0, 0, 1, 1] and out[0, 0, 0, 0] == 0  # row -1 is padding


@pytest.mark.parametrize("kind, shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm2d, (4, 3, 5, 5))])
def test_keras2_batchnorm_keeps_tensorflows_zero_debiased_moving_averages(kind, shape):
    """`batchnorm: keras2`: TensorFlow's assign_moving_average(zero_debias=True) as Keras
    2.1.4-2.2.5 call it, written out step by step: a biased accumulator from 0, a step
    count, and the variance times n / (n - 1 - eps) (and Bessel's n / (n - 1) first, from the
    fused kernel, for conv inputs). Frozen (weights without gradients), it updates nothing."""
    bn = keras_bn(kind, 3, 0.01, "keras2")
    assert isinstance(bn, kind)
    assert {"biased_mean", "biased_var", "moving_steps"} <= set(bn.state_dict())
    generator = torch.Generator().manual_seed(0)
    biased_mean, biased_var = torch.zeros(3), torch.zeros(3)
    dims = [0, *range(2, len(shape))]
    for t in (1, 2, 3):
        x = torch.randn(shape, generator=generator) * t + 1
        bn(x)
        n = x.numel() // 3
        var = x.var(dims, correction=0) * n / (n - 1 - 1e-3)
        var = var * n / (n - 1) if len(shape) == 4 else var
        biased_mean = 0.99 * biased_mean + 0.01 * x.mean(dims)
        biased_var = 0.99 * biased_var + 0.01 * var
        assert torch.allclose(bn.running_mean, biased_mean / (1 - 0.99**t), atol=1e-6)
        assert torch.allclose(bn.running_var, biased_var / (1 - 0.99**t), rtol=1e-5)
    assert float(bn.moving_steps) == 3
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    bn.requires_grad_(False)
    frozen = bn(x * 5)
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())
    # batch statistics
    assert torch.allclose(frozen.mean(dims), bn.bias.expand(3), atol=1e-5)
    fresh = keras_bn(kind, 3, 0.01, "keras2")
    fresh.load_state_dict(bn.state_dict())
    assert float(fresh.moving_steps) == 3 and torch.equal(fresh.biased_var, bn.biased_var)


@pytest.mark.parametrize("rule", ["keras2", "tf2"])
def test_keras_moving_averages_are_the_same_from_channels_last_input(rule):
    """The CPU fast path feeds the faithful presets' batch norm channels-last tensors: their
    moving statistics are those of the contiguous input, bit for bit."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 6, 6, generator=generator) * 2 + 1
    plain, fast = keras_bn(nn.BatchNorm2d, 3, 0.2, rule), keras_bn(nn.BatchNorm2d, 3, 0.2, rule)
    for _ in range(2):
        plain(x)
        fast(x.contiguous(memory_format=torch.channels_last))
    for name, value in plain.state_dict().items():
        assert torch.equal(fast.state_dict()[name], value), name


def test_batchnorm_option_is_checked():
    with pytest.raises(ConfigError, match="batchnorm must be one of torch, keras2, tf2"):
        build_models("dcgan-mnist", 100, (1, 28, 28), {"batchnorm": "keras3"})


@pytest.mark.parametrize("rule", ["keras2", "tf2"])
def test_keras_moving_averages_from_bf16_channels_last_use_the_kernels_statistics(rule):
    """The CPU fast path (bf16, channels-last) takes the moving statistics from batch norm's
    own batch statistics instead of reducing the input again: the output and gradient are
    batch norm's, bit for bit, and the moving averages those of the separate fp32
    reductions over a contiguous copy, to fp32 rounding."""
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(8, 3, 6, 6, generator=generator) * 2 + 1).to(torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    plain, fast = keras_bn(nn.BatchNorm2d, 3, 0.2, rule), keras_bn(nn.BatchNorm2d, 3, 0.2, rule)
    for _ in range(2):
        plain(x.detach().contiguous())
        out = fast(x)
    assert out.dtype == torch.bfloat16
    assert out.is_contiguous(memory_format=torch.channels_last)
    reference = F.batch_norm(x, None, None, fast.weight, fast.bias, True, 0.0, fast.eps)
    assert torch.equal(out, reference)
    grad = torch.randn(out.shape, generator=generator).to(torch.bfloat16)
    assert torch.equal(
        torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(reference, x, grad)[0]
    )
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[name], value, rtol=1e-5, atol=1e-6)
