"""The fast path's switches and fallbacks, checked on the CPU (CUDA-only parts say so and stop).

Covers: what "auto" resolves to without a GPU and the messages for explicit requests that
cannot be met; thread settings; bf16 autocast keeping BatchNorm statistics, losses and
weights in fp32; the compile probe that is undone without a trace, and the fallback to
eager when compilation fails; the out-of-memory message; the background grid writer.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from ganforge.artefacts.writer import BackgroundWriter
from ganforge.config import TrainConfig
from ganforge.data import ImageData
from ganforge.errors import ConfigError, GanforgeError
from ganforge.losses import get_loss
from ganforge.models import build_models
from ganforge.presets import load_preset
from ganforge.training import oom, transfer
from ganforge.training import runtime as rt
from ganforge.training import threads as cpu_threads
from ganforge.training.step import AdversarialStep, Batch, StepOptions


def _config(**overrides) -> TrainConfig:
    values = {
        "device": "cpu",
        "iterations": 6,
        "batch_size": 8,
        "log_every": 2,
        "sample_every": 3,
        "checkpoint_every": 6,
        **overrides,
    }
    return load_preset("mnist-dcgan").with_overrides({k: str(v) for k, v in values.items()})


def _tiny_data(count: int = 64) -> ImageData:
    images = torch.randint(
        0, 256, (count, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    return ImageData(images, "synthetic/28", "test")


# ---- resolving the settings ---------------------------------------------------------------------
def test_auto_on_cpu_is_the_plain_path_and_says_so():
    runtime = rt.resolve_runtime(_config())
    assert runtime.device.type == "cpu" and runtime.dtype is None
    assert not (
        runtime.compile
        or runtime.channels_last
        or runtime.fused_optim
        or runtime.cuda_graphs
        or runtime.async_artefacts
    )
    assert any("fp32" in note for note in runtime.notes)
    assert runtime.describe()["autocast"] == "fp32"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("precision", "fp16", "use --precision bf16, fp32"),
        ("fused_optim", "on", "needs a CUDA GPU"),
        ("cuda_graphs", "on", "needs a CUDA GPU"),
        ("device", "cuda", "sees no CUDA GPU"),
    ],
)
def test_explicit_requests_the_machine_cannot_meet_are_errors_with_the_fallback(
    key, value, message
):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=message):
        rt.resolve_runtime(_config(**{key: value}))


def test_compile_on_without_a_compiler_is_an_error_and_auto_is_a_note(monkeypatch):
    monkeypatch.setattr(rt.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="compiler"):
        rt.resolve_runtime(_config(compile="on"))
    assert rt.compile_unavailable(torch.device("cpu")) is not None


def test_cuda_graph_compile_modes_are_noted_off_gpu():
    if rt.compile_unavailable(torch.device("cpu")):
        pytest.skip("no C compiler for torch.compile on this machine")
    runtime = rt.resolve_runtime(_config(compile="on", compile_mode="reduce-overhead"))
    assert runtime.compile and any(
        "CUDA graphs apply on a CUDA GPU only" in n for n in runtime.notes
    )


def test_fast_path_settings_are_validated_and_yaml_booleans_read_as_on_off(tmp_path):
    with pytest.raises(ConfigError, match="compile_mode must be one of"):
        _config(compile_mode="fastest").validate()
    with pytest.raises(ConfigError, match="cuda_graphs must be one of"):
        _config(cuda_graphs="auto").validate()
    path = tmp_path / "c.yaml"
    path.write_text("iterations: 5\ncompile: off\nchannels_last: on\nasync_artefacts: off\n")
    from ganforge.presets import load_config_file

    config = load_config_file(path)
    assert (
        config.execution.compile,
        config.execution.channels_last,
        config.execution.async_artefacts,
    ) == ("off", "on", "off")


# ---- threads -------------------------------------------------------------------------------------
def test_threads_follow_the_user_then_the_usable_physical_cores(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("GANFORGE_THREADS", "1")
        assert cpu_threads.configure_threads() == 1
        monkeypatch.delenv("GANFORGE_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        threads = cpu_threads.configure_threads()
        assert 1 <= threads <= cpu_threads.usable_cpus() <= (os.cpu_count() or threads)
        assert threads == cpu_threads.physical_cores(cpu_threads.usable_cpus())
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "cores, load, threads", [(2, 0.0, 2), (2, 0.4, 2), (2, 1.2, 1), (2, 5.5, 1), (8, 3.0, 5)]
)
def test_bf16_on_a_cpu_takes_only_the_cores_other_processes_leave_idle(cores, load, threads):
    assert cpu_threads.idle_cores(cores, load) == threads


def test_importing_ganforge_makes_openmp_wait_passively():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", "import ganforge, os; print(os.environ['OMP_WAIT_POLICY'])"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.stdout.strip() == "PASSIVE", out.stderr


# ---- mixed precision -----------------------------------------------------------------------------
def _step(runtime: rt.Runtime, seed: int = 0):
    torch.manual_seed(seed)
    G, D = build_models("dcgan-mnist", 16, (1, 28, 28), {"width": 0.25})
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    step = AdversarialStep(
        G,
        D,
        opt_g,
        opt_d,
        get_loss("bce"),
        runtime,
        StepOptions(separate_d_updates=True, fakes_from_eval_g=True),
    )
    return step, G, D


def test_bf16_autocast_keeps_batchnorm_statistics_losses_and_weights_in_fp32():
    """CPU autocast behaves as CUDA autocast here: batch_norm is in neither cast list."""
    torch.manual_seed(1)
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    z_d, z_g = torch.randn(8, 16), torch.randn(8, 16)
    fp32, G32, _ = _step(rt.Runtime(torch.device("cpu"), None, False, False))
    bf16, G16, D16 = _step(rt.Runtime(torch.device("cpu"), torch.bfloat16, False, False))
    torch.manual_seed(2)  # the same dropout masks in both
    stats32 = fp32(Batch(real, z_d, z_g))
    torch.manual_seed(2)
    stats16 = bf16(Batch(real, z_d, z_g))
    assert stats16.dtype == torch.float32 and torch.isfinite(stats16).all()
    for module in (G16, D16):
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if tensor.is_floating_point():
                assert tensor.dtype == torch.float32, name
            assert tensor.grad is None or tensor.grad.dtype == torch.float32, name
    bn32 = [m for m in G32.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    bn16 = [m for m in G16.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for a, b in zip(
        bn32, bn16
    ):  # running statistics updated from bf16 activations, accumulated in fp32
        torch.testing.assert_close(b.running_mean, a.running_mean, atol=2e-2, rtol=5e-2)
        torch.testing.assert_close(b.running_var, a.running_var, atol=2e-2, rtol=5e-2)
    torch.testing.assert_close(
        stats16, stats32, atol=3e-2, rtol=3e-2
    )  # the losses agree to bf16 accuracy


def test_batch_norm_in_channels_last_computes_what_plain_batch_norm_computes():
    """The CPU fast path hands every BatchNorm2d its input and its gradient in channels-last
    (mixed layouts hit a kernel 10-20x slower); the network's outputs, gradients and running
    statistics stay those of the plain network, also with in-place activations after it."""

    def network() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.ConvTranspose2d(8, 16, 4, 2, 1, bias=False),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(16, 8, 3, 1, 1, bias=False),
            torch.nn.BatchNorm2d(8),
            torch.nn.LeakyReLU(0.2, inplace=True),
            torch.nn.Conv2d(8, 1, 3, 1, 1),
        )

    x = torch.randn(4, 8, 6, 6, generator=torch.Generator().manual_seed(1))
    plain, fast = network(), network().to(memory_format=torch.channels_last)
    rt.batch_norm_channels_last(fast)
    outputs = []
    for model, images in ((plain, x), (fast, x.contiguous(memory_format=torch.channels_last))):
        out = model(images)
        out.square().mean().backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[1], outputs[0])
    for (name, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, msg=name)
    for (name, a), b in zip(plain.named_buffers(), fast.buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    with torch.no_grad():  # sampling: no gradient to hook, the same images
        torch.testing.assert_close(fast.eval()(x), plain.eval()(x))


# ---- compile probe and fallback ------------------------------------------------------------------
def _weights(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "generator.safetensors"))


def _train(tmp_path, name, monkeypatch=None, compile_module=None, required=False, **overrides):
    from ganforge import RunOptions, train
    from ganforge.training import forwards, setup

    config = _config(out_dir=str(tmp_path), run_name=name, **overrides)
    if compile_module is not None:
        original = rt.resolve_runtime

        def resolve(c):
            runtime = original(c)
            runtime.compile, runtime.compile_required = True, required
            return runtime

        monkeypatch.setattr(setup, "resolve_runtime", resolve)
        monkeypatch.setattr(forwards, "compile_module", compile_module)
    notes: list[str] = []
    options = RunOptions(data=_tiny_data(), show_progress=False, log=notes.append)
    result = train(config, run=options)
    return result, notes


def test_compile_probe_is_undone_without_a_trace(tmp_path, monkeypatch):
    """A working 'compiled' forward: the probe iteration leaves weights, stats and RNG unchanged."""
    eager, _ = _train(tmp_path, "eager")
    calls = []

    def passthrough(module, runtime):
        def forward(*args):
            calls.append(1)
            return module(*args)

        return forward

    probed, notes = _train(tmp_path, "probed", monkeypatch, passthrough)
    assert calls, "the compiled forwards were used"
    assert not any("fell back" in n for n in notes)
    for key, value in _weights(eager.run_dir).items():
        torch.testing.assert_close(_weights(probed.run_dir)[key], value, rtol=0, atol=0)
    assert probed.final_stats["d_loss"] == eager.final_stats["d_loss"]


def test_compile_probe_leaves_the_adaptive_augmentation_untouched(tmp_path, monkeypatch):
    """The probe's D step is undone for ADA too: its verdicts on the reals and its D-step count
    are as if the probe had never run, so p would move at the same iterations as eagerly."""
    from ganforge.checkpoint import load_checkpoint

    ada = {"augment": "translation", "ada_target": 0.5, "ada_interval": 1000}

    def passthrough(module, runtime):
        return module

    eager, _ = _train(tmp_path, "eager", **ada)
    probed, _ = _train(tmp_path, "probed", monkeypatch, passthrough, **ada)

    def pending(result) -> dict:
        state = load_checkpoint(max((result.run_dir / "checkpoints").glob("ckpt-*.pt")))
        return {k: float(v) for k, v in state["augment"].items()}

    assert pending(eager)["observed"] > 0 and pending(eager)["seen"] > 0
    assert pending(probed) == pending(eager)
    for key, value in _weights(eager.run_dir).items():
        torch.testing.assert_close(_weights(probed.run_dir)[key], value, rtol=0, atol=0)


def test_compile_failure_at_the_first_call_falls_back_to_eager_and_says_so(tmp_path, monkeypatch):
    eager, _ = _train(tmp_path, "eager")

    def broken(module, runtime):
        def forward(*args):
            raise RuntimeError("inductor: simulated compiler crash")

        return forward

    result, notes = _train(tmp_path, "fallback", monkeypatch, broken)
    assert any(
        "compile: failed at the first iteration" in n and "fell back to eager" in n for n in notes
    )
    import json

    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert any("fell back to eager" in n for n in summary["notes"])
    for key, value in _weights(eager.run_dir).items():  # the failed attempt changed nothing
        torch.testing.assert_close(_weights(result.run_dir)[key], value, rtol=0, atol=0)


def test_compile_failure_with_compile_on_is_an_error(tmp_path, monkeypatch):
    def broken(module, runtime):
        def forward(*args):
            raise RuntimeError("simulated")

        return forward

    with pytest.raises(
        GanforgeError, match="torch.compile failed at the first iteration.*compile=off"
    ):
        _train(tmp_path, "required", monkeypatch, broken, required=True)


@pytest.mark.slow  # tracing and compiling two models: the slowest test of the fast tier
def test_torch_compile_through_dynamo_and_aot_autograd_trains_like_eager(tmp_path, monkeypatch):
    """Real torch.compile (dynamo + AOT autograd; backend 'aot_eager' skips only code generation):
    G in train and eval mode, D with and without weight gradients, the probe, then training."""
    eager, _ = _train(tmp_path, "eager")

    def aot_eager(module, runtime):
        return torch.compile(module, backend="aot_eager")

    compiled, notes = _train(tmp_path, "compiled", monkeypatch, aot_eager, required=True)
    assert not any("fell back" in n for n in notes)
    for key, value in _weights(eager.run_dir).items():
        torch.testing.assert_close(_weights(compiled.run_dir)[key], value, rtol=1e-4, atol=1e-5)


# ---- out of memory -------------------------------------------------------------------------------
def test_out_of_memory_becomes_a_message_with_batch_size_and_what_to_change(tmp_path, monkeypatch):
    from ganforge import RunOptions, train
    from ganforge.training import loop

    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop.Trainer, "fit", oom)
    with pytest.raises(GanforgeError) as info:
        train(
            _config(out_dir=str(tmp_path), run_name="oom"),
            run=RunOptions(data=_tiny_data(), show_progress=False),
        )
    message = str(info.value)
    assert "out of memory on cpu while training" in message
    assert "batch 8 of 1x28x28 images" in message and "lower --batch-size (now 8)" in message


def test_out_of_memory_message_names_gpu_figures_and_precision_hint():
    runtime = rt.Runtime(torch.device("cpu"), None, False, False)
    text = oom.out_of_memory_message(torch.device("cpu"), 128, (1, 128, 128), runtime, "training")
    assert "batch 128 of 1x128x128" in text and "--resolution" in text


# ---- background writer ---------------------------------------------------------------------------
def test_background_writer_keeps_order_and_reports_errors():
    writer = BackgroundWriter(enabled=True)
    seen: list[int] = []
    main = threading.get_ident()
    threads: set[int] = set()

    def work(i):
        time.sleep(0.01)
        seen.append(i)
        threads.add(threading.get_ident())

    for i in range(5):
        writer.submit(work, i)
    writer.drain()
    assert seen == [0, 1, 2, 3, 4] and main not in threads

    def fail():
        raise OSError("disk full")

    writer.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        writer.drain()
    writer.close()


def test_background_writer_disabled_runs_inline():
    writer = BackgroundWriter(enabled=False)
    seen = []
    writer.submit(seen.append, 1)
    assert seen == [1]


def test_async_grids_on_cpu_write_every_grid_before_the_gif(tmp_path):
    from ganforge import RunOptions, train

    config = _config(out_dir=str(tmp_path), run_name="async", async_artefacts="on")
    result = train(config, run=RunOptions(data=_tiny_data(), show_progress=False))
    frames = sorted(p.name for p in (result.run_dir / "samples").glob("*.png"))
    assert frames == ["iteration_000000.png", "iteration_000003.png", "iteration_000006.png"]
    assert (result.run_dir / "training.gif").stat().st_size > 0


def test_host_to_device_is_a_no_op_on_cpu():
    x = torch.arange(4)
    assert transfer.host_to_device(x, torch.device("cpu")) is x
    host, event = transfer.to_host_async(x)
    assert host is x and event is None


# ---- fp16 with gradient scaling (GPUs without native bf16) ---------------------------------------
def test_fp16_step_scales_gradients_and_keeps_weights_fp32():
    """The fp16 path as far as a CPU can run it: autocast fp16 plus a GradScaler; the loss scale
    is live state (it grows after clean steps), and weights and optimiser state stay fp32."""
    runtime = rt.Runtime(torch.device("cpu"), torch.float16, False, False)
    assert runtime.grad_scaling
    torch.manual_seed(0)
    G, D = build_models("dcgan-mnist", 16, (1, 28, 28), {"width": 0.25})
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    scalers = {
        name: torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1) for name in "dg"
    }
    for update in ("alternating", "simultaneous"):
        step = AdversarialStep(
            G,
            D,
            opt_g,
            opt_d,
            get_loss("bce"),
            runtime,
            StepOptions(update=update, separate_d_updates=update == "alternating"),
            scalers=scalers,
        )
        before = {name: scaler.get_scale() for name, scaler in scalers.items()}
        stats = step(
            Batch(torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 16), torch.randn(8, 16))
        )
        assert torch.isfinite(stats).all()
        for (
            name,
            scaler,
        ) in scalers.items():  # clean steps: each scale grew, so the updates were applied
            assert scaler.get_scale() > before[name]
    # D's two updates (real, fake) and G's one each moved their own scale
    assert scalers["d"].get_scale() == 2.0**10 * 2**3 and scalers["g"].get_scale() == 2.0**10 * 2**2
    for tensor in list(G.parameters()) + list(D.parameters()):
        assert tensor.dtype == torch.float32
    for state in list(opt_g.state.values()) + list(opt_d.state.values()):
        assert state["exp_avg"].dtype == torch.float32


def test_precision_choices_follow_the_hardware(monkeypatch):
    """fp16 is GPU-only (one clear line on a CPU); bf16 works on any CPU, and says where it
    will be slow; a faithful preset (it pins fp32 in its YAML) runs exact fp32, plain."""
    with pytest.raises(ConfigError, match="precision fp16 needs a CUDA GPU"):
        rt.resolve_runtime(_config(precision="fp16"))
    monkeypatch.setattr(rt, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    emulated = rt.resolve_runtime(_config(precision="bf16"))
    assert emulated.dtype == torch.bfloat16
    assert any("will be slower than fp32" in note for note in emulated.notes)
    # mnist-dcgan is a faithful preset: exact fp32 and the plain path, as its YAML says
    pinned = rt.resolve_runtime(_config())
    assert pinned.dtype is None and not pinned.tf32 and not pinned.channels_last
    assert any("pins it" in note for note in pinned.notes)


@pytest.mark.parametrize(
    "flags, unit",
    [
        ({"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"}, "AMX-BF16"),
        ({"avx512f", "avx512_bf16"}, "AVX512-BF16"),
        ({"fp", "asimd", "bf16"}, "ARM BF16"),
        ({"avx2", "avx512f", "fma"}, None),
        (set(), None),
    ],
)
def test_native_cpu_bf16_is_read_from_the_cpu_flags(flags, unit):
    assert rt.cpu_bf16_unit(frozenset(flags)) == unit


@pytest.mark.parametrize(
    "flags, resolution, autocast",
    [
        ({"amx_bf16"}, 64, torch.bfloat16),
        ({"avx512_bf16"}, 128, torch.bfloat16),
        # measured: at 32x32 bf16 costs more than it saves, so auto stays fp32
        ({"amx_bf16"}, 32, None),
        # no native bf16: always fp32
        ({"avx2", "avx512f"}, 128, None),
    ],
)
def test_auto_on_a_cpu_takes_bf16_where_it_is_native_and_pays(
    monkeypatch, flags, resolution, autocast
):
    monkeypatch.setattr(rt, "cpu_flags", lambda: frozenset(flags))
    config = load_preset("brain-demo").with_overrides(
        {"device": "cpu", "data.resolution": str(resolution)}
    )
    runtime = rt.resolve_runtime(config)
    assert runtime.dtype == autocast
    # channels-last either way: oneDNN's convolutions want it on a CPU
    assert runtime.channels_last and not runtime.compile
    assert runtime.path().startswith("fast path")
    assert ("bf16 autocast" in runtime.path()) == (autocast is not None)
    assert any(note.startswith("precision: ") for note in runtime.notes)


def test_exact_fp32_turns_tf32_off_and_other_runs_restore_the_defaults():
    """The flags are process-wide; a run asking for fp32 must not leave them off for the next
    run (the benchmark runs fp32 and bf16 variants in one process)."""
    defaults = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    cuda = torch.device("cuda")
    try:
        rt.Runtime(cuda, None, False, False, tf32=False).apply()
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        rt.Runtime(cuda, torch.bfloat16, False, True).apply()
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == defaults
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = defaults
