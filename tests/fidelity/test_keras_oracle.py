"""The documented models rebuilt in Keras, holding ganforge's ports to them.

ganforge's presets `mnist-gan`, `mnist-dcgan` and `oasis-dcgan` promise the systems of two
documents: a Keras MNIST notebook (a GAN and a DCGAN, written as `Sequential` models) and a
brain-MRI course project (a DCGAN after the TensorFlow tutorial, scaled to 128x128). Here
those models are written again in Keras 3 from the documents' own layer lists, and for each
one ganforge's port must have the same layers, output shapes and trainable parameters, the
same outputs once Keras' weights are copied in (BatchNorm in training and in inference
mode), and the same weights after one optimiser step on the same batch and noise.

Keras 3 runs on its torch backend (`pip install "ganforge[fidelity]"`). Where Keras 3
differs from the Keras 2 on TensorFlow that the documents ran, the test follows the
documents' Keras and says so:

* Conv2DTranspose 'same' (stride 2, 5x5): TensorFlow drops 1 row/column before and 2
  after the full output. Keras 3.15 on the torch backend does the same (earlier Keras 3
  releases did not); a test holds Keras and ganforge to TensorFlow's definition, the
  gradient of the 'same' convolution.
* BatchNorm in a frozen model: in Keras 2, `d.trainable = False` in the combined model
  left D's BatchNorm in training mode (batch statistics) and ran none of D's updates; in
  Keras 3 a frozen BatchNorm runs in inference mode. The G step below runs D in training
  mode and puts D's moving statistics back.
* BatchNorm's moving variance: Keras 2.1.4-2.2.5 feed it the batch variance times
  n / (n - 1 - eps) (conv inputs: also Bessel's n / (n - 1), from TensorFlow's fused
  kernel), PyTorch times n / (n - 1), Keras 3 the biased one. The one-step check of
  PyTorch's running statistics (a model built without `batchnorm: keras2`) converts
  Keras 3's update to n / (n - 1 - eps) and allows the difference (rtol 1e-3);
  test_keras_training.py holds the `keras2` statistics to Keras 2's exactly, debiasing
  included, over fifty iterations.
* Keras 3 cannot share one Adam object between two models (it refuses variables it was
  not built with), so the notebook's shared iteration counter is not rebuilt here.

Dropout draws its masks from each library's own generator, so training-mode comparisons
set the dropout rate to 0 in both (in inference mode dropout is the identity anyway).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
from keras_required import import_keras
from torch import nn

# keras >= 3.15 on the torch backend (see the conv-transpose test); CI fails without it
keras = import_keras()

from ganforge.models import build_models, count_parameters  # noqa: E402

# Keras converts its tensors with np.array(x, copy=False), which numpy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
L = keras.layers
TOL = 1e-5  # forward outputs, float32
KERAS_EPS = 1e-7  # keras.backend.epsilon(): BCE clipping and Adam's epsilon
BATCH = 8


# --- the documents' models, in Keras -------------------------------------------------------


def tf_conv2d_transpose(inputs, kernel, strides: tuple[int, int]) -> torch.Tensor:
    """Conv2DTranspose 'same' as TensorFlow (the documents' backend) defines it: the gradient
    of the 'same' convolution with the same kernel, taken through Keras' own conv op (which
    pads 'same' as TensorFlow does on every backend). NHWC in and out."""
    n, h, w, _ = inputs.shape
    with torch.enable_grad():
        probe = torch.zeros(
            (n, h * strides[0], w * strides[1], kernel.shape[2]), requires_grad=True
        )
        conv = keras.ops.conv(probe, kernel, strides=strides, padding="same")
        (out,) = torch.autograd.grad(conv, probe, grad_outputs=torch.as_tensor(inputs))
    return out


def notebook_gan() -> tuple[keras.Model, keras.Model]:
    """The notebook's GAN: G 256-512-1024-2048 (LeakyReLU 0.2, BatchNorm momentum 0.8)."""
    g = keras.Sequential([keras.Input((100,))])
    for units in (256, 512, 1024, 2048):
        g.add(L.Dense(units))
        g.add(L.LeakyReLU(negative_slope=0.2))  # Keras 2: LeakyReLU(alpha=0.2)
        g.add(L.BatchNormalization(momentum=0.8))
    g.add(L.Dense(28 * 28 * 1, activation="tanh"))
    g.add(L.Reshape((28, 28, 1)))
    d = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Flatten(),
            L.Dense(512),
            L.LeakyReLU(negative_slope=0.2),
            L.Dense(256),
            L.LeakyReLU(negative_slope=0.2),
            L.Dense(1, activation="sigmoid"),
        ]
    )
    return g, d


def notebook_dcgan(
    dropout: float = 0.5,
    width: float = 1.0,
    bn: Callable[[], keras.layers.Layer] = L.BatchNormalization,
    drop: Callable[[float], keras.layers.Layer] = L.Dropout,
) -> tuple[keras.Model, keras.Model]:
    """The notebook's DCGAN. D's second conv has no padding argument: Keras' 'valid'.
    `width` scales every layer as ganforge's option does; `bn` and `drop` make the
    BatchNormalization and Dropout layers (test_keras_training.py hands in its own)."""
    dense, c1, c2 = (max(1, round(units * width)) for units in (1024, 128, 64))
    g = keras.Sequential(
        [
            keras.Input((100,)),
            L.Dense(dense),
            bn(),
            L.Activation("relu"),
            L.Dense(c1 * 7 * 7),
            bn(),
            L.Activation("relu"),
            L.Reshape((7, 7, c1)),
            L.UpSampling2D(size=(2, 2)),
            L.Conv2D(c2, (5, 5), padding="same"),
            bn(),
            L.Activation("relu"),
            L.UpSampling2D(size=(2, 2)),
            L.Conv2D(1, (5, 5), padding="same"),
            L.Activation("tanh"),
        ]
    )
    d1, d2, d_dense = (max(1, round(units * width)) for units in (64, 128, 256))
    d = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(d1, (5, 5), strides=(2, 2), padding="same"),
            bn(),
            L.Activation("elu"),
            L.Conv2D(d2, (5, 5), strides=(2, 2)),
            bn(),
            L.Activation("elu"),
            L.MaxPooling2D(pool_size=(2, 2)),
            L.Flatten(),
            L.Dense(d_dense),
            bn(),
            drop(dropout),
            L.Activation("elu"),
            L.Dense(1, activation="sigmoid"),
        ]
    )
    return g, d


def brain_dcgan(resolution: int = 128, tutorial_d: bool = False) -> tuple[keras.Model, keras.Model]:
    """The brain-MRI document's DCGAN: the TensorFlow tutorial's layers scaled to 128x128,
    BatchNorm in both networks. `tutorial_d`: the tutorial's D (no BatchNorm, Dropout 0.3)."""
    s = resolution // 8
    g = keras.Sequential(
        [
            keras.Input((100,)),
            L.Dense(s * s * 256, use_bias=False),
            L.BatchNormalization(),
            L.LeakyReLU(negative_slope=0.2),
            L.Reshape((s, s, 256)),
            L.Conv2DTranspose(128, (5, 5), strides=(2, 2), padding="same", use_bias=False),
            L.BatchNormalization(),
            L.LeakyReLU(negative_slope=0.2),
            L.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False),
            L.BatchNormalization(),
            L.LeakyReLU(negative_slope=0.2),
            L.Conv2DTranspose(
                1, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh"
            ),
        ]
    )
    d = keras.Sequential([keras.Input((resolution, resolution, 1))])
    for filters in (64, 128):
        d.add(L.Conv2D(filters, (5, 5), strides=(2, 2), padding="same"))
        if not tutorial_d:
            d.add(L.BatchNormalization())
        d.add(L.LeakyReLU(negative_slope=0.2))
        if tutorial_d:
            d.add(L.Dropout(0.3))
    d.add(L.Flatten())
    d.add(L.Dense(1))  # a logit: the document's loss is BinaryCrossentropy(from_logits=True)
    return g, d


# name -> (Keras builder, ganforge model, options, image shape, Keras' trainable G, D params)
SYSTEMS = {
    "gan": (notebook_gan, "gan", {}, (1, 28, 28), 4_396_048, 533_505),
    "dcgan-mnist": (notebook_dcgan, "dcgan-mnist", {}, (1, 28, 28), 6_753_409, 339_073),
    "dcgan-oasis": (brain_dcgan, "dcgan-oasis", {}, (1, 128, 128), 7_710_656, 338_049),
    "dcgan-oasis-tutorial-d": (
        lambda: brain_dcgan(tutorial_d=True),
        "dcgan-oasis",
        {"d_norm": "none", "dropout": 0.3},
        (1, 128, 128),
        7_710_656,
        337_665,
    ),
}


# --- Keras <-> ganforge ---------------------------------------------------------------------

WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm1d, nn.BatchNorm2d)


def _np(variable) -> torch.Tensor:
    """A Keras variable's value as a detached torch tensor (the backend's own type)."""
    return keras.ops.convert_to_tensor(variable).detach().clone()


def _layouts(model: keras.Model) -> dict[int, tuple[str, int, int, int]]:
    """Where Keras' channels-last Flatten/Reshape order units differently from ganforge's
    channels-first one: the Dense after a Flatten of (H, W, C) ("rows"), and the Dense and
    BatchNorm before a Reshape to (H, W, C) ("units"). Index: position in model.layers."""
    fixes: dict[int, tuple[str, int, int, int]] = {}
    layers = model.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, L.Flatten) and len(layer.input.shape) == 4:
            j = next(k for k in range(i + 1, len(layers)) if isinstance(layers[k], L.Dense))
            fixes[j] = ("rows", *layer.input.shape[1:])
        if isinstance(layer, L.Reshape) and len(layer.target_shape) == 3:
            for k in range(i - 1, -1, -1):
                if isinstance(layers[k], (L.Dense, L.BatchNormalization)):
                    fixes[k] = ("units", *layer.target_shape)
                if isinstance(layers[k], L.Dense):
                    break
    return fixes


def _units_to_torch(v: torch.Tensor, h: int, w: int, c: int) -> torch.Tensor:
    """Last axis ordered (h, w, c) as Keras reshapes -> ordered (c, h, w) as ganforge does."""
    return v.reshape(*v.shape[:-1], h, w, c).movedim(-1, -3).reshape(v.shape)


def keras_params(model: keras.Model) -> list[tuple[keras.layers.Layer, dict[str, torch.Tensor]]]:
    """Every weighted Keras layer with its tensors in ganforge's layout and names."""
    fixes, out = _layouts(model), []
    for i, layer in enumerate(model.layers):
        if not layer.weights:
            continue
        fix = fixes.get(i)
        if isinstance(layer, L.Dense):
            kernel = _np(layer.kernel)  # (in, out)
            if fix and fix[0] == "rows":
                kernel = _units_to_torch(kernel.T, *fix[1:]).T
            if fix and fix[0] == "units":
                kernel = _units_to_torch(kernel, *fix[1:])
            tensors = {"weight": kernel.T}
        elif isinstance(layer, (L.Conv2D, L.Conv2DTranspose)):
            # Conv2D (kh, kw, in, out) -> (out, in, kh, kw);
            # Conv2DTranspose (kh, kw, out, in) -> (in, out, kh, kw): the same permutation
            tensors = {"weight": _np(layer.kernel).permute(3, 2, 0, 1)}
        elif isinstance(layer, L.BatchNormalization):
            tensors = {
                "weight": _np(layer.gamma),
                "bias": _np(layer.beta),
                "running_mean": _np(layer.moving_mean),
                "running_var": _np(layer.moving_variance),
            }
        else:
            raise AssertionError(f"no mapping for Keras layer {layer.name}")
        if getattr(layer, "use_bias", False) and not isinstance(layer, L.BatchNormalization):
            tensors["bias"] = _np(layer.bias)
        if fix and fix[0] == "units":  # the Dense kernel was reordered above
            tensors = {
                k: v if k == "weight" and v.ndim == 2 else _units_to_torch(v, *fix[1:])
                for k, v in tensors.items()
            }
        out.append((layer, tensors))
    return out


def ganforge_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, WEIGHTED)]


@torch.no_grad()
def copy_keras_weights(kmodel: keras.Model, module: nn.Module) -> None:
    pairs = keras_params(kmodel)
    layers = ganforge_layers(module)
    assert len(pairs) == len(layers), (len(pairs), len(layers))
    for (klayer, tensors), layer in zip(pairs, layers, strict=True):
        for name, value in tensors.items():
            target = getattr(layer, name)
            assert target is not None and target.shape == value.shape, (klayer.name, name)
            target.copy_(value)
        assert set(tensors) >= {n for n, p in layer.named_parameters() if p is not None}


def _inert_biases(model: keras.Model) -> set[int]:
    """Positions of Dense/Conv layers whose bias feeds a BatchNorm directly. BatchNorm
    removes any per-channel shift, so the true gradient of such a bias is 0; what each
    library computes is float rounding noise (|g| < 1e-6), which Adam turns into a step of
    lr * |g| / (|g| + eps), different noise in each library."""
    layers = model.layers
    return {
        i
        for i in range(len(layers) - 1)
        if getattr(layers[i], "use_bias", False) and isinstance(layers[i + 1], L.BatchNormalization)
    }


def weight_differences(
    kmodel: keras.Model, module: nn.Module, keys=("weight", "bias"), inert: bool = False
) -> torch.Tensor:
    """|Keras - ganforge| of every value of the listed tensors, flattened; only the inert
    biases (see `_inert_biases`) with `inert`, all but them without."""
    found, skip = [torch.zeros(1)], {id(kmodel.layers[i]) for i in _inert_biases(kmodel)}
    for (klayer, tensors), layer in zip(keras_params(kmodel), ganforge_layers(module), strict=True):
        for name, value in tensors.items():
            if name in keys and (id(klayer) in skip and name == "bias") == inert:
                found.append((value - getattr(layer, name).detach()).abs().flatten())
    return torch.cat(found)


def assert_same_step(kmodel: keras.Model, module: nn.Module, lr: float) -> None:
    """The stated tolerance of one optimiser step (float32, Keras' epsilon in both).

    Adam moves each weight by lr * g / (|g| + eps'), eps' = 3.2e-6 at the first update,
    which is steep near g = 0: for a weight whose gradient is that small, the float32
    rounding of the gradient (~1e-7; the libraries sum in other orders) is amplified by up
    to lr / eps' (60-300x). So: at least 99.9% of the weights agree within 1e-6 (measured:
    99.97% or more), none differs by more than lr / 5 (measured: at most lr / 8), and the
    inert biases (true gradient 0, a step of pure noise in each library) by at most 2 lr
    per update.
    """
    diff = weight_differences(kmodel, module)
    assert float((diff > 1e-6).float().mean()) < 1e-3
    assert float(diff.max()) < lr / 5
    assert float(weight_differences(kmodel, module, inert=True).max()) <= 4 * lr


def nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def nchw(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x


def keras_logits(d: keras.Model, images: torch.Tensor, training: bool) -> torch.Tensor:
    """D's output before its final sigmoid (ganforge's discriminators return logits)."""
    x = nhwc(images)
    for layer in d.layers[:-1]:
        x = layer(x, training=training)
    last = d.layers[-1]
    logits = keras.ops.matmul(x, last.kernel) + last.bias
    return nchw(logits).reshape(-1)


def set_dropout(model: keras.Model, module: nn.Module, rate: float) -> None:
    for layer in model.layers:
        if isinstance(layer, L.Dropout):
            layer.rate = rate
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = rate


def _kind(layer) -> list[str]:
    kinds = {
        L.Dense: "linear",
        L.Conv2DTranspose: "convT",
        L.Conv2D: "conv",
        L.BatchNormalization: "bn",
        L.UpSampling2D: "up",
        L.MaxPooling2D: "pool",
        L.Flatten: "flatten",
        L.Dropout: "dropout",
        L.Activation: "act",
        L.LeakyReLU: "act",
        L.ReLU: "act",
        L.ELU: "act",
        L.Reshape: "reshape",
    }
    kind = next(v for k, v in kinds.items() if isinstance(layer, k))
    fused = getattr(layer, "activation", None)
    if kind in ("linear", "conv", "convT") and fused is not keras.activations.linear:
        return [kind, "act"]
    return [kind]


def keras_layer_shapes(model: keras.Model) -> list[tuple[str, tuple[int, ...]]]:
    """(kind, per-image output shape in ganforge's (C, H, W) order) for every layer; a
    Reshape is not a layer in ganforge (it is `view` in forward)."""
    found = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:])
        shape = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
        found += [(kind, shape) for kind in _kind(layer) if kind != "reshape"]
    return found


def ganforge_layer_shapes(
    module: nn.Module, inputs: torch.Tensor
) -> list[tuple[str, tuple[int, ...]]]:
    kinds = [
        (nn.Linear, "linear"),
        (nn.ConvTranspose2d, "convT"),
        (nn.Conv2d, "conv"),
        ((nn.BatchNorm1d, nn.BatchNorm2d), "bn"),
        (nn.Upsample, "up"),
        (nn.MaxPool2d, "pool"),
        (nn.Flatten, "flatten"),
        (nn.Dropout, "dropout"),
        ((nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.Sigmoid), "act"),
    ]
    found: list[tuple[str, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o, kind=kind: found.append((kind, tuple(o.shape[1:]))))
        for m in module.modules()
        for types, kind in kinds
        if isinstance(m, types) and not list(m.children())
    ]
    with torch.no_grad():
        module.eval()(inputs)
    for hook in hooks:
        hook.remove()
    return found


def build_pair(system: str, seed: int = 0):
    builder, arch, options, shape, _, _ = SYSTEMS[system]
    keras.utils.set_random_seed(seed)
    kg, kd = builder()
    torch.manual_seed(seed)
    g, d = build_models(arch, 100, shape, options)
    copy_keras_weights(kg, g)
    copy_keras_weights(kd, d)
    return kg, kd, g, d, shape


# --- the checks ------------------------------------------------------------------------------


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_layers_shapes_and_trainable_parameters_are_keras(system):
    builder, arch, options, shape, g_params, d_params = SYSTEMS[system]
    kg, kd = builder()
    g, d = build_models(arch, 100, shape, options)
    keras_count = [sum(int(np.prod(v.shape)) for v in m.trainable_weights) for m in (kg, kd)]
    assert keras_count == [g_params, d_params]  # Keras' "Trainable params" of the document
    assert [count_parameters(g), count_parameters(d)] == [g_params, d_params]
    assert ganforge_layer_shapes(g, torch.zeros(2, 100)) == keras_layer_shapes(kg)
    d_shapes = keras_layer_shapes(kd)
    if d_shapes[-1] == ("act", (1,)):  # Keras' sigmoid: ganforge's D returns the logit
        d_shapes = d_shapes[:-1]
    assert ganforge_layer_shapes(d, torch.zeros(2, *shape)) == d_shapes


@pytest.mark.parametrize("system", ["gan", "dcgan-mnist", "dcgan-oasis"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_forward_outputs_equal_keras_with_its_weights(system, training):
    kg, kd, g, d, shape = build_pair(system)
    set_dropout(kd, d, 0.0)  # dropout masks are random in each library
    g.train(training)
    d.train(training)
    with torch.no_grad():  # BatchNorm values unlike their initial ones, so order matters
        for layer in kg.layers + kd.layers:
            if isinstance(layer, L.BatchNormalization):
                shape = layer.gamma.shape
                layer.gamma.assign(keras.random.uniform(shape, 0.5, 1.5))
                layer.beta.assign(0.1 * keras.random.normal(shape))
                layer.moving_mean.assign(0.1 * keras.random.normal(shape))
                layer.moving_variance.assign(keras.random.uniform(shape, 0.5, 2.0))
    copy_keras_weights(kg, g)
    copy_keras_weights(kd, d)
    z = torch.randn(BATCH, 100, generator=torch.Generator().manual_seed(1))
    before = keras_params(kg)
    with torch.no_grad():
        images = g(z)
        logits = d(images)
        k_images = nchw(kg(z, training=training))
        k_logits = keras_logits(kd, images, training)
    assert (images - k_images).abs().max() < TOL  # tanh images, |x| <= 1
    # logits: float32 sums of up to 131,072 terms in a different order; 1e-5 of their scale
    assert (logits - k_logits).abs().max() < TOL * max(1.0, float(k_logits.abs().max()))
    if training:  # both updated their running statistics from the same batch
        _assert_running_statistics_follow_keras_2(kg, g, BATCH, before)


def _assert_running_statistics_follow_keras_2(
    kg: keras.Model, g: nn.Module, batch: int, before: list[tuple]
) -> None:
    """PyTorch updates the running variance with the unbiased batch variance, as Keras 2
    did (n / (n - 1 - eps)); Keras 3 uses the biased one. Convert Keras 3's update."""
    for (klayer, tensors), layer, (_, old) in zip(
        keras_params(kg), ganforge_layers(g), before, strict=True
    ):
        if not isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        n = batch * int(np.prod(klayer.input.shape[1:-1]))  # values per feature
        keep, old_var = klayer.momentum, old["running_var"]
        biased = (tensors["running_var"] - keep * old_var) / (1 - keep)
        keras2 = keep * old_var + (1 - keep) * biased * n / (n - 1 - klayer.epsilon)
        assert torch.allclose(layer.running_mean, tensors["running_mean"], atol=1e-6)
        assert torch.allclose(layer.running_var, keras2, rtol=1e-3, atol=1e-6)


def test_conv_transpose_same_is_tensorflows_in_keras_and_in_ganforge():
    """Stride-2 'same' transposed convs crop the full output 1 before and 2 after, as
    TensorFlow defines them; PyTorch's padding=2, output_padding=1 would shift the image
    by one pixel. Keras 3 on the torch backend crops as TensorFlow since 3.15 (earlier
    releases cropped the PyTorch way and warned), so this also checks the oracle itself."""
    keras.utils.set_random_seed(0)
    x = keras.random.normal((2, 4, 4, 3))
    layer = L.Conv2DTranspose(2, 5, strides=2, padding="same", use_bias=False)
    from_keras = nchw(layer(x)).detach()
    expected = nchw(tf_conv2d_transpose(x, layer.kernel, (2, 2)))
    assert (from_keras - expected).abs().max() < TOL
    from ganforge.models.layers import KerasConvTranspose2d

    port = KerasConvTranspose2d(3, 2, 5, 2, bias=False)
    pytorch_way = nn.ConvTranspose2d(3, 2, 5, 2, padding=2, output_padding=1, bias=False)
    with torch.no_grad():
        for conv in (port, pytorch_way):
            conv.weight.copy_(_np(layer.kernel).permute(3, 2, 0, 1))
        assert (port(nchw(x)) - expected).abs().max() < TOL
        shifted = pytorch_way(nchw(x))
    assert not torch.allclose(shifted, expected, atol=1e-3)
    assert torch.allclose(shifted[..., :-1, :-1], expected[..., 1:, 1:], atol=TOL)


# --- one optimiser step ------------------------------------------------------------------


def keras_adam(lr: float, beta1: float) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=lr, beta_1=beta1, beta_2=0.999, epsilon=KERAS_EPS)


def keras_epsilon(adam: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Put Keras' epsilon where Keras adds it, in a torch Adam.

    Keras adds epsilon to sqrt(v) before bias correction, PyTorch after it, so Keras'
    epsilon is PyTorch's eps = 1e-7 / sqrt(1 - beta2^t) at update t (3.2e-6 at t = 1,
    1e-7 by t ~ 7,000). A step pre-hook sets it before every update; registered after
    ganforge's shared-counter hook, it reads the shared t.
    """

    def before_step(optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            steps = [
                float(optimizer.state[p]["step"])
                for p in group["params"]
                if "step" in optimizer.state[p]
            ]
            t = max(steps, default=0.0) + 1
            group["eps"] = KERAS_EPS / (1 - group["betas"][1] ** t) ** 0.5

    adam.register_step_pre_hook(before_step)
    return adam


def torch_adam(params, lr: float, beta1: float, keras_eps: bool) -> torch.optim.Adam:
    adam = torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), eps=KERAS_EPS)
    return keras_epsilon(adam) if keras_eps else adam


def clipped_bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Keras' binary_crossentropy on the sigmoid output: probabilities clipped to [eps, 1-eps]."""
    p = torch.sigmoid(logits).clamp(KERAS_EPS, 1 - KERAS_EPS)
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()


def keras_notebook_iteration(kg, kd, real, z_d, z_g, shared_counter: bool = False) -> None:
    """The notebook's iteration in Keras: D.train_on_batch(real, 1), D.train_on_batch(fake, 0)
    with fakes from G.predict(z_d), then the combined model's train_on_batch(z_g, 1) through
    the frozen D; Adam(2e-4, beta1 0.5), binary cross-entropy on the sigmoid output.

    Keras 2's frozen D in the combined model ran BatchNorm in training mode and none of D's
    updates (Keras 3 would run it in inference mode): D runs with training=True and its
    moving statistics are put back. `shared_counter`: the notebook's GAN passes one Adam
    object to both models; Keras 3 refuses that, so G's Adam is given D's count instead.
    """
    kd.compile(optimizer=keras_adam(2e-4, 0.5), loss="binary_crossentropy")
    fake = kg.predict(z_d, verbose=0)  # inference-mode BatchNorm, as generator.predict
    kd.train_on_batch(nhwc(real), np.ones((len(real), 1), np.float32))
    kd.train_on_batch(fake, np.zeros((len(fake), 1), np.float32))
    moving = [(v, keras.ops.copy(v.value)) for v in kd.non_trainable_variables]
    opt_g = keras_adam(2e-4, 0.5)
    opt_g.build(kg.trainable_variables)
    if shared_counter:
        opt_g.iterations.assign(kd.optimizer.iterations)
    out = kd(kg(z_g, training=True), training=True)
    loss = keras.ops.mean(keras.losses.binary_crossentropy(keras.ops.ones_like(out), out))
    for v in kg.trainable_variables:
        v.value.grad = None
    loss.backward()
    opt_g.apply_gradients([(v.value.grad.clone(), v) for v in kg.trainable_variables])
    for v, value in moving:
        v.assign(value)


def keras_brain_step(kg, kd, real, z) -> float:
    """The brain document's GradientTape step: one noise batch, G once, D on real and fake,
    both losses from that forward pass, both Adam(1e-3) applied; BCE on logits."""
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    generated = kg(z, training=True)
    real_out, fake_out = kd(nhwc(real), training=True), kd(generated, training=True)
    g_loss = bce(keras.ops.ones_like(fake_out), fake_out)
    d_loss = bce(keras.ops.ones_like(real_out), real_out) + bce(
        keras.ops.zeros_like(fake_out), fake_out
    )
    g_vars, d_vars = kg.trainable_variables, kd.trainable_variables
    g_grads = torch.autograd.grad(g_loss, [v.value for v in g_vars], retain_graph=True)
    d_grads = torch.autograd.grad(d_loss, [v.value for v in d_vars])
    keras_adam(1e-3, 0.9).apply_gradients(zip(g_grads, g_vars, strict=True))
    keras_adam(1e-3, 0.9).apply_gradients(zip(d_grads, d_vars, strict=True))
    return g_loss.item()


def _inputs(shape, real_batch: int, fake_batch: int, seed: int = 2):
    rng = torch.Generator().manual_seed(seed)
    real = torch.rand(real_batch, *shape, generator=rng) * 2 - 1
    return real, torch.randn(fake_batch, 100, generator=rng), torch.randn(BATCH, 100, generator=rng)


def _notebook_steps(system: str, keras_eps: bool):
    """Keras' iteration beside the same iteration written out in plain torch."""
    kg, kd, g, d, shape = build_pair(system)
    set_dropout(kd, d, 0.0)
    real, z_d, z_g = _inputs(shape, BATCH, BATCH)
    keras_notebook_iteration(kg, kd, real, z_d, z_g)
    adam_d = torch_adam(d.parameters(), 2e-4, 0.5, keras_eps)
    adam_g = torch_adam(g.parameters(), 2e-4, 0.5, keras_eps)
    g.eval()
    with torch.no_grad():
        fake = g(z_d)
    g.train()
    d.train()
    for images, target in ((real, 1.0), (fake, 0.0)):
        adam_d.zero_grad()
        clipped_bce(d(images), target).backward()
        adam_d.step()
    d.requires_grad_(False)
    adam_g.zero_grad()
    clipped_bce(d(g(z_g)), 1.0).backward()
    adam_g.step()
    return kg, kd, g, d


@pytest.mark.parametrize("system", ["gan", "dcgan-mnist"])
def test_one_notebook_iteration_gives_kerass_weights(system):
    kg, kd, g, d = _notebook_steps(system, keras_eps=True)
    assert_same_step(kd, d, lr=2e-4)  # two D updates (real, then fake)
    assert_same_step(kg, g, lr=2e-4)
    assert float(weight_differences(kg, g, keys=("running_mean",)).max()) < 1e-5


def test_pytorch_epsilon_placement_is_a_bounded_deviation():
    """With eps = 1e-7 in PyTorch's place (optim.eps = 1e-7 alone), weights whose gradient
    is small (|g| below ~1e-5) step up to ~lr further than in Keras (about a fifth of the
    weights of this small batch differ by more than 1e-6): close, not Keras' steps. The
    difference fades as 1 - beta2^t grows (t ~ 7,000)."""
    kg, kd, g, d = _notebook_steps("dcgan-mnist", keras_eps=False)
    diff = torch.cat([weight_differences(kd, d), weight_differences(kg, g)])
    assert float(diff.max()) > 1e-4  # far beyond the rounding of assert_same_step
    assert float(diff.max()) <= 2 * 2 * 2e-4  # two updates, each under lr in either library


def test_one_brain_step_gives_kerass_weights():
    resolution = 32  # the same layers at R/8 = 4: a small, fast check of the step
    keras.utils.set_random_seed(0)
    kg, kd = brain_dcgan(resolution)
    torch.manual_seed(0)
    g, d = build_models("dcgan-oasis", 100, (1, resolution, resolution))
    copy_keras_weights(kg, g)
    copy_keras_weights(kd, d)
    real, _, z = _inputs((1, resolution, resolution), BATCH, 0, seed=3)
    k_g_loss = keras_brain_step(kg, kd, real, z)

    g.train()
    d.train()
    adam_g = torch_adam(g.parameters(), 1e-3, 0.9, keras_eps=True)
    adam_d = torch_adam(d.parameters(), 1e-3, 0.9, keras_eps=True)
    fake = g(z)
    real_logits, fake_logits = d(real), d(fake)
    ones, zeros = torch.ones(BATCH), torch.zeros(BATCH)
    bce_t = nn.functional.binary_cross_entropy_with_logits
    g_loss_t = bce_t(fake_logits, ones)
    d_loss_t = bce_t(real_logits, ones) + bce_t(fake_logits, zeros)
    g_grads_t = torch.autograd.grad(g_loss_t, list(g.parameters()), retain_graph=True)
    d_grads_t = torch.autograd.grad(d_loss_t, list(d.parameters()))
    for module, grads, adam in ((g, g_grads_t, adam_g), (d, d_grads_t, adam_d)):
        for p, grad in zip(module.parameters(), grads, strict=True):
            p.grad = grad
        adam.step()
    assert abs(k_g_loss - g_loss_t.item()) < TOL
    assert_same_step(kd, d, lr=1e-3)
    assert_same_step(kg, g, lr=1e-3)


# preset -> (Keras models, the image shape the check runs at)
PRESET_SYSTEMS = {
    "mnist-gan": (notebook_gan, (1, 28, 28)),
    "mnist-dcgan": (notebook_dcgan, (1, 28, 28)),
    # the same layers, small
    "oasis-dcgan": (lambda: brain_dcgan(32), (1, 32, 32)),
}
# Each document's iteration, written out here and never read from the preset under test:
# (D sees half batches, one noise batch for D's fakes and the G step, a GradientTape step,
# one Adam object for D and the combined model). test_keras_training.py holds ganforge's
# own batch sizes and noise to these over fifty iterations.
DOCUMENTED_ITERATION = {
    "mnist-gan": (True, False, False, True),
    "mnist-dcgan": (False, True, False, False),
    "oasis-dcgan": (False, True, True, False),
}


def ganforge_iteration(preset: str, kg, kd, shape, real, z_d, z_g):
    """ganforge's state and step, made from the preset as `train` makes them, with Keras'
    weights copied in; one iteration on the given batch and noise."""
    from ganforge.presets import load_preset
    from ganforge.training.runtime import resolve_runtime
    from ganforge.training.state import TrainingState
    from ganforge.training.step import Batch, build_step

    config = load_preset(preset).with_overrides(
        {"device": "cpu", "compile": "off", "batch_size": BATCH}
    )
    runtime = resolve_runtime(config)
    state = TrainingState.create(config, shape, 64, runtime)
    g, d = state.generator, state.discriminator
    copy_keras_weights(kg, g)
    copy_keras_weights(kd, d)
    set_dropout(kd, d, 0.0)
    g.train()
    d.train()
    build_step(config, state, runtime)(Batch(real, z_d, z_g))
    return config, g, d


@pytest.mark.parametrize("preset", list(PRESET_SYSTEMS))
def test_ganforges_own_step_with_the_presets_settings_is_the_documented_iteration(preset):
    """ganforge's training state and step (training/state.py, training/step.py), set up from
    the preset as `train` does (model options, loss, update mode, separate D updates, fakes
    from G in inference mode, half batches, shared noise, Adam's settings and the shared
    counter, and Keras' epsilon placement: optim.keras_epsilon), against the document's
    iteration in Keras. Without keras_epsilon the deviation is the one measured in
    test_pytorch_epsilon_placement_is_a_bounded_deviation."""
    builder, shape = PRESET_SYSTEMS[preset]
    half_batch, shared_noise, simultaneous, shared_counter = DOCUMENTED_ITERATION[preset]
    real_batch = BATCH // 2 if half_batch else BATCH
    real, z_d, z_g = _inputs(shape, real_batch, real_batch)
    if shared_noise:
        z_g = z_d
    keras.utils.set_random_seed(0)
    kg, kd = builder()
    config, g, d = ganforge_iteration(preset, kg, kd, shape, real, z_d, z_g)
    set_dropout(kd, d, 0.0)
    if simultaneous:
        keras_brain_step(kg, kd, real, z_g)
    else:
        keras_notebook_iteration(kg, kd, real, z_d, z_g, shared_counter)
    assert_same_step(kd, d, lr=config.optim.lr_d)
    assert_same_step(kg, g, lr=config.optim.lr_g)


def test_bce_keras_loss_is_kerass_binary_crossentropy():
    """ganforge's `bce-keras` (the faithful MNIST presets' loss) against Keras' own
    binary_crossentropy on sigmoid outputs: values, the cap near 16.1 and the zero
    gradient past the 1e-7 clip."""
    from ganforge.losses import get_loss

    loss = get_loss("bce-keras")
    logits = torch.tensor([-30.0, -17.0, -3.0, -0.5, 0.0, 0.7, 4.0, 16.5, 40.0])
    for target, ours in ((1.0, loss.g), (0.0, loss.d_fake), (1.0, lambda x: loss.d_real(x, 0))):
        x = logits.clone().requires_grad_(True)
        value = ours(x)
        value.backward()
        k_x = logits.clone().requires_grad_(True)
        p = keras.activations.sigmoid(k_x)
        k_value = keras.ops.mean(
            keras.losses.binary_crossentropy(torch.full_like(p, target)[:, None], p[:, None])
        )
        k_value.backward()
        assert abs(value.item() - k_value.item()) < 1e-6
        assert torch.allclose(x.grad, k_x.grad, atol=1e-7)
    x = torch.tensor([-40.0], requires_grad=True)
    capped = loss.g(x)
    capped.backward()
    assert capped.item() == pytest.approx(-np.log(1e-7), rel=1e-3) and float(x.grad) == 0.0
