"""The speed benchmark runs end to end on the CPU at a tiny budget and writes every field.

This checks that bench/train_speed.py works (and that its FLOP count is the real one),
not that anything is fast: the speed itself is measured on a GPU (bench/README.md).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # about a minute on 2 cores: every preset, fast and plain

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "train_speed.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("train_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Every preset, fast and plain, 3 timed iterations each on small synthetic data."""
    out = tmp_path_factory.mktemp("bench")
    bench = _bench_module()
    result = bench.main(
        [
            "--device",
            "cpu",
            "--steps",
            "3",
            "--warmup",
            "1",
            "--window",
            "1",
            "--data",
            "synthetic",
            "--synthetic-size",
            "32",
            "--set",
            "batch_size=4",
            "--fixed-repeats",
            "1",
            "--json",
            str(out / "bench.json"),
            "--workdir",
            str(out / "runs"),
        ]
    )
    return result, json.loads((out / "bench.json").read_text())


def test_json_is_the_report_and_names_the_environment(report):
    result, written = report
    assert written["presets"].keys() == result["presets"].keys()
    env = written["environment"]
    for key in (
        "device",
        "torch",
        "python",
        "cpu_model",
        "torch_threads",
        "load_average_start",
        "load_average_end",
        "startup_s",
        "gpu",
    ):
        assert key in env, key
    assert env["device"] == "cpu" and env["gpu"] is None
    assert env["startup_s"] > 0


def fast_bf16(preset: str) -> bool:
    """Whether the CPU fast path takes bf16 autocast for `preset` on this machine: a CPU with
    native bf16, images of at least CPU_BF16_MIN_SIDE, and a preset that does not pin fp32."""
    from ganforge.presets import load_preset
    from ganforge.training.runtime import CPU_BF16_MIN_SIDE, cpu_bf16_unit

    config = load_preset(preset)
    side = config.data.resolution or 28
    return (
        config.execution.precision == "auto"
        and cpu_bf16_unit() is not None
        and side >= CPU_BF16_MIN_SIDE
    )


def test_every_preset_has_fast_and_plain_with_every_field(report):
    from ganforge.presets import load_preset, preset_names

    _, written = report
    bench = _bench_module()
    assert {"demo", "mnist-gan", "mnist-dcgan"} <= set(written["presets"]) <= set(preset_names())
    for name, entry in written["presets"].items():
        assert "error" not in entry, (name, entry.get("error"))
        assert entry["flops_per_step"] > 0 and entry["flops_per_image"] > 0
        assert entry["images_per_step"] > 0
        assert entry["data_note"].startswith("synthetic")
        # a preset that pins exact fp32 is also timed as its user may run it: --precision bf16
        pinned = load_preset(name).execution.precision == "fp32"
        assert set(entry["variants"]) == {"fast", "plain"} | ({"fast-bf16"} if pinned else set())
        for variant, r in entry["variants"].items():
            for field in bench.FIELDS:
                assert field in r, (name, variant, field)
            assert r["steps_measured"] >= 3
            assert 0 < r["ms_per_step"] < 600_000
            assert math.isclose(
                r["images_per_s"], entry["images_per_step"] / (r["ms_per_step"] / 1e3), rel_tol=1e-6
            )
            assert math.isclose(
                r["achieved_tflops"],
                entry["flops_per_step"] / (r["ms_per_step"] / 1e3) / 1e12,
                rel_tol=1e-6,
            )
            assert r["recipe_time_kind"] == "extrapolated"
            parts = r["recipe_breakdown"]
            assert math.isclose(r["recipe_s"], sum(parts.values()), rel_tol=1e-9)
            assert (
                parts["training_s"] > 0 and r["recipe"]["steps"] > 0 and r["recipe"]["grids"] >= 2
            )
            assert r["grid_s"] > 0 and r["checkpoint_s"] > 0 and r["finish_s"] > 0
            assert r["peak_gpu_mib"] is None  # no GPU in this test
            bf16 = variant == "fast-bf16" or (variant == "fast" and fast_bf16(name))
            expected = "bfloat16" if bf16 else "fp32"
            assert r["settings"]["autocast"] == expected, (name, variant)
            assert r["settings"]["compile"] == "off"
            assert math.isclose(
                r["achieved_gflops"],
                entry["flops_per_step"] / (r["ms_per_step"] / 1e3) / 1e9,
                rel_tol=1e-6,
            )
            assert r["speedup_vs_plain"] > 0
        assert entry["variants"]["plain"]["speedup_vs_plain"] == 1.0
        assert entry["variants"]["plain"]["plain_input"] is True


def test_recipe_shape_follows_the_preset(report):
    _, written = report
    gan = written["presets"]["mnist-gan"]["variants"]["fast"]["recipe"]
    assert gan == {
        "steps": 30_000,
        "grids": 1 + 150,
        "checkpoints": 6,
        "evaluations_not_timed": 0,
    }  # 30k iterations, grid every 200, ckpt 5k
    dcgan = written["presets"]["mnist-dcgan"]["variants"]["fast"]["recipe"]
    assert dcgan["steps"] == 60 * (32 // 4) and dcgan["grids"] == 61 and dcgan["checkpoints"] == 12


def test_flops_are_those_of_a_real_training_iteration(report):
    """The MLP GAN's matmul FLOPs, written out by hand: FlopCounterMode must see the whole step."""
    _, written = report
    entry = written["presets"]["mnist-gan"]
    batch, half = 4, 2
    g_layers = [(100, 256), (256, 512), (512, 1024), (1024, 2048), (2048, 784)]
    d_layers = [(784, 512), (512, 256), (256, 1)]
    g, d = sum(i * o for i, o in g_layers), sum(i * o for i, o in d_layers)
    g_first, d_first = 100 * 256, 784 * 512
    macs = half * g  # G makes D's fakes (no grad)
    macs += 2 * (
        half * d + half * d + half * (d - d_first)
    )  # D on real, D on fake: forward, weight and input grads
    macs += (
        batch * g + batch * d + batch * d + batch * g + batch * (g - g_first)
    )  # G step; D frozen (input grads only)
    assert entry["flops_per_step"] == 2 * macs
    assert entry["images_per_step"] == half + half + batch


def test_table_is_printed(report, capsys):
    bench = _bench_module()
    _, written = report
    table = bench.format_table(written)
    assert "img/s" in table and "GFLOP/s" in table and "mnist-gan" in table and "plain" in table
    # achieved FLOP/s beside the machine's own measured peak, in fp32 and in bf16
    assert "% fp32 probe" in table and "% bf16 probe" in table and "matrix-product probe" in table


def test_command_line_help_runs_with_the_projects_python():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--variants" in out.stdout and "--full" in out.stdout


def test_unknown_variant_is_refused():
    bench = _bench_module()
    with pytest.raises(SystemExit, match="unknown variant"):
        bench.main(["--device", "cpu", "--variants", "fast,turbo", "--presets", "demo"])
