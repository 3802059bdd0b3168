"""Layer helpers shared by the architectures: Keras semantics, initialisations, shape checks.

The notebook and the brain-MRI project are Keras models. Three Keras conventions differ
from PyTorch's defaults and change what a network computes, so they live here once:

* BatchNormalization: Keras' `momentum` is the share of the OLD running value that is kept
  (default 0.99), PyTorch's the share of the NEW batch value (0.01); Keras' epsilon is 1e-3.
* 'same' padding on a strided convolution: Keras (TensorFlow) pads the missing rows and
  columns unevenly, the extra one at the bottom/right (5x5 stride 2 on an even size pads
  1 before and 2 after). PyTorch's `padding=2` pads 2 and 2, which gives the same output
  size but shifts every output pixel by one input pixel. `KerasConv2d` pads as Keras does.
* 'same' on a strided transposed convolution: TensorFlow defines it as the gradient of the
  'same' convolution, so it drops 1 row/column before and 2 after the full output (5x5,
  stride 2). PyTorch's `padding=2, output_padding=1` drops 2 before and 1 after: again the
  right size, shifted by one pixel. `KerasConvTranspose2d` crops as Keras does. (Earlier
  Keras 3 releases made the PyTorch choice on their torch backend and warned that backends
  differ; Keras 3.15 crops as TensorFlow, and tests/fidelity holds both to TensorFlow's
  definition.)

Both layer classes subclass the PyTorch ones, so their parameters, state-dict keys and
`isinstance` checks are those of `nn.Conv2d` / `nn.ConvTranspose2d`.

A fourth convention is how BatchNorm keeps its moving statistics: Keras 2.1.4-2.2.5 on
TensorFlow 1 (every Keras 2 release of 2018 but 2.1.3, the notebook's) debiases them and
corrects the variance its own way, tf.keras on TensorFlow 2 another way: `KerasBatchNorm1d/2d`
(model option `batchnorm: keras2 | tf2`; see `_KerasMovingAverages` and docs/fidelity.md).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# (channels, height, width)
ImageShape = tuple[int, int, int]

# Keras BatchNormalization() momentum 0.99, in PyTorch's convention
KERAS_BN_MOMENTUM = 0.01
# Keras BatchNormalization() epsilon
KERAS_BN_EPS = 1e-3


BatchNormKind = Literal["torch", "keras2", "tf2"]
BATCHNORM_KINDS = ("torch", "keras2", "tf2")


class _KerasMovingAverages:
    """BatchNorm whose moving statistics follow the Keras the documents ran.

    `rule` "keras2": Keras 2.1.4-2.2.5 on TensorFlow 1 (the notebook). Three things differ
    from PyTorch, and each changes what inference mode computes (the notebook's
    `generator.predict` makes D's fakes with these statistics):

    * Zero-debiased moving averages. Keras calls TensorFlow's
      `assign_moving_average(moving, value, momentum, zero_debias=True)`: TensorFlow keeps a
      biased accumulator b (starting at 0) and a step count t, and after each batch sets
      b <- b - (b - value) * (1 - momentum), t <- t + 1 and
      moving <- moving - (moving - b / (1 - momentum^t)). The initial 0 and 1 are forgotten
      after the first batch; PyTorch's running averages start from them.
    * The variance fed to the average is the batch variance times n / (n - 1 - eps)
      (`layers/normalization.py`), and for 4-D inputs TensorFlow's fused batch-norm kernel
      has already applied Bessel's n / (n - 1): n^2 / ((n - 1)(n - 1 - eps)) in a conv
      BatchNorm, n / (n - 1 - eps) in a Dense one. PyTorch: n / (n - 1).
    * A frozen layer (`trainable = False`, here: weights that require no gradient, as in
      ganforge's G step through D) normalises with batch statistics and updates nothing:
      Keras 2 leaves the updates of a non-trainable model out of the combined model.

    `rule` "tf2": tf.keras on TensorFlow 2 (the brain-MRI project's tutorial): plain
    moving averages, Bessel's n / (n - 1) from the fused kernel for conv inputs and the
    biased batch variance for Dense ones (PyTorch corrects both).

    b and t are buffers, so checkpoints and resumed runs carry them. Statistics are
    computed in float32 from the input, without host syncs (CUDA graphs stay possible).
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    biased_mean: torch.Tensor
    biased_var: torch.Tensor
    moving_steps: torch.Tensor

    def _set_rule(self, rule: str, features: int) -> None:
        self.rule = rule
        if rule == "keras2":
            self.register_buffer("biased_mean", torch.zeros(features))  # type: ignore[attr-defined]
            self.register_buffer("biased_var", torch.zeros(features))  # type: ignore[attr-defined]
            self.register_buffer("moving_steps", torch.zeros(()))  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)  # type: ignore[attr-defined]
        weight, bias, eps = self.weight, self.bias, self.eps  # type: ignore[attr-defined]
        if not self.training:  # type: ignore[attr-defined]
            moving = (self.running_mean, self.running_var)
            return F.batch_norm(x, *moving, weight, bias, False, 0.0, eps)
        if weight is None or weight.requires_grad:
            if _channels_last_cpu(x):
                return self._normalise_with_kernel_statistics(x)
            self._update_moving_averages(x)
        return F.batch_norm(x, None, None, weight, bias, True, 0.0, eps)

    def _normalise_with_kernel_statistics(self, x: torch.Tensor) -> torch.Tensor:
        """Batch norm whose own batch statistics feed the moving averages (the CPU fast path).

        Reducing a channels-last input a second time for the averages cost more than the
        batch norm itself (oasis-dcgan bf16, batch 64, 1 thread: without that copy and those
        reductions a step takes 2.08 CPU-s instead of 2.73; `var_mean` over the
        channels-last view instead still took 0.5 s per call at batch 128). The kernel's
        saved mean and 1/sqrt(var + eps) are the same batch statistics, in fp32. The plain
        path (contiguous input) keeps its own reductions, so its figures are unchanged.
        """
        weight, bias, eps = self.weight, self.bias, self.eps  # type: ignore[attr-defined]
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        with torch.no_grad():
            var = (invstd.float().pow(-2) - eps).clamp_min(0.0)
            self._update_from_statistics(mean.float(), var, x.numel() // x.shape[1], x.dim())
        return out

    @torch.no_grad()
    def _update_moving_averages(self, x: torch.Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        # contiguous: the reductions over dims (0, 2, 3) of a channels-last tensor are slow
        values = x.detach().contiguous().float()
        n = values.numel() // values.shape[1]
        mean, var = values.mean(dims), values.var(dims, correction=0)
        self._update_from_statistics(mean, var, n, x.dim())

    @torch.no_grad()
    def _update_from_statistics(
        self, mean: torch.Tensor, var: torch.Tensor, n: int, dims: int
    ) -> None:
        """Fold one batch's mean and biased variance (over `n` values) into the averages."""
        # TensorFlow's fused kernel: Bessel's correction
        if dims == 4:
            var = var * (n / max(n - 1.0, 1.0))
        decay = float(self.momentum)  # type: ignore[attr-defined]
        if self.rule == "tf2":
            self.running_mean.sub_((self.running_mean - mean) * decay)
            self.running_var.sub_((self.running_var - var) * decay)
            return
        var = var * (n / (n - 1.0 - self.eps))  # type: ignore[attr-defined]
        self.moving_steps.add_(1)
        debias = 1.0 - torch.pow(1.0 - decay, self.moving_steps)
        for biased, moving, value in (
            (self.biased_mean, self.running_mean, mean),
            (self.biased_var, self.running_var, var),
        ):
            biased.sub_((biased - value) * decay)
            moving.sub_(moving - biased / debias)


def _channels_last_cpu(x: torch.Tensor) -> bool:
    """A 4-D channels-last bf16/fp16 activation on a CPU (the CPU fast path), not contiguous.

    fp32 keeps the separate reductions, whose sums are those of a contiguous input bit for
    bit (an fp32 run with channels-last gives the plain path's moving statistics exactly).
    """
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.bfloat16, torch.float16)
        and x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )


class KerasBatchNorm1d(_KerasMovingAverages, nn.BatchNorm1d):
    """`nn.BatchNorm1d` with Keras' moving averages (see `_KerasMovingAverages`)."""

    def __init__(self, features: int, momentum: float, eps: float, rule: str):
        super().__init__(features, momentum=momentum, eps=eps)
        self._set_rule(rule, features)


class KerasBatchNorm2d(_KerasMovingAverages, nn.BatchNorm2d):
    """`nn.BatchNorm2d` with Keras' moving averages (see `_KerasMovingAverages`)."""

    def __init__(self, features: int, momentum: float, eps: float, rule: str):
        super().__init__(features, momentum=momentum, eps=eps)
        self._set_rule(rule, features)


def keras_bn(
    kind: type[nn.Module],
    features: int,
    momentum: float = KERAS_BN_MOMENTUM,
    batchnorm: BatchNormKind = "torch",
) -> nn.Module:
    """A BatchNorm1d/2d with Keras' epsilon; `momentum` in PyTorch's convention (1 - Keras').

    `batchnorm`: "torch" keeps PyTorch's running averages; "keras2" those of the Keras 2
    the notebook ran, "tf2" those of tf.keras on TensorFlow 2 (`_KerasMovingAverages`)."""
    if batchnorm == "torch":
        return kind(features, momentum=momentum, eps=KERAS_BN_EPS)
    if batchnorm not in BATCHNORM_KINDS:
        raise ValueError(
            f"batchnorm must be one of {', '.join(BATCHNORM_KINDS)}, got {batchnorm!r}"
        )
    keras = KerasBatchNorm2d if issubclass(kind, nn.BatchNorm2d) else KerasBatchNorm1d
    return keras(features, momentum, KERAS_BN_EPS, batchnorm)


def scaled(units: int, width: float) -> int:
    """`units` times the `width` multiplier, at least 1: how every `width` option scales a layer."""
    return max(1, round(units * width))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding (before, after) along one axis of length `size`."""
    # ceil(size / stride)
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class KerasConv2d(nn.Conv2d):
    """`Conv2D(out, kernel, strides, padding=...)` as Keras computes it ('same' or 'valid')."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: str = "same",
        bias: bool = True,
    ):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, bias=bias)
        self.keras_padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keras_padding == "same":
            (kh, kw), (sh, sw) = self.kernel_size, self.stride
            top, bottom = same_padding(x.shape[-2], kh, sh)
            left, right = same_padding(x.shape[-1], kw, sw)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class KerasConvTranspose2d(nn.ConvTranspose2d):
    """`Conv2DTranspose(out, kernel, strides, padding='same')` as TensorFlow computes it.

    The output is `stride` times the input. The full transposed convolution is
    `(n - 1) * stride + kernel` long; TensorFlow keeps the window that the matching 'same'
    convolution reads, i.e. it drops `same_padding(...)[0]` before and the rest after.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        full = super().forward(x)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        h, w = x.shape[-2] * sh, x.shape[-1] * sw
        top, left = same_padding(h, kh, sh)[0], same_padding(w, kw, sw)[0]
        return full[..., top : top + h, left : left + w]


def keras_init(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform weights and zero biases for Dense and Conv layers.

    The Glorot bound sqrt(6 / (fan_in + fan_out)) is symmetric in the two fans, and both
    libraries count a conv's fans as channels x kernel area, so the bounds agree.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


def resolution_problem(shape: ImageShape, low: int = 32, high: int = 256) -> str | None:
    """None if (C, H, W) is square, 1 or 3 channels and a power of two in [low, high].

    Otherwise the reason, phrased for the user: the DCGANs double (G) or halve (D) the
    size at every layer, so only these sizes work.
    """
    channels, height, width = shape
    sizes = ", ".join(str(2**k) for k in range(int(math.log2(low)), int(math.log2(high)) + 1))
    if channels not in (1, 3):
        return f"it makes 1- or 3-channel images (got {channels} channels; set data.channels)"
    if height != width:
        return f"it makes square images (got {height}x{width}); set a square size with --resolution"
    if height < low or height > high or height & (height - 1):
        return (
            f"resolution {height} is not a power of two from {low} to {high}: each layer "
            f"doubles the image size, so use one of {sizes} (--resolution)"
        )
    return None
