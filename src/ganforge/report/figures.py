"""The report's two figures, as PNG bytes: losses and quality over training, one colour per run.

Losses are drawn against the fraction of training, so a 2,000-iteration GAN and a
one-epoch DCGAN line up at "half-way" and "the end". Quality is drawn against wall-clock
seconds (what a run costs) and against that same fraction.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ganforge.artefacts.plots import smooth  # noqa: E402
from ganforge.metrics.registry import main_output_order  # noqa: E402
from ganforge.report.collect import RunRecord  # noqa: E402

COLOURS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    plt.close(fig)
    return buffer.getvalue()


def loss_figure(runs: list[RunRecord]) -> bytes | None:
    """Smoothed D and G losses, and D(x) vs D(G(z)), against the fraction of training."""
    if not any(r.log for r in runs):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
    for run, colour in zip(runs, COLOURS):
        records = [r for r in run.log if "d_loss" in r]
        x = [100 * r["step"] / run.total_steps for r in records]
        for key, style in (("d_loss", "-"), ("g_loss", "--")):
            label = f"{run.name} {key[0].upper()}"
            axes[0].plot(x, smooth([r[key] for r in records]), style, color=colour, label=label)
        for key, style in (("d_real", "-"), ("d_fake", ":")):
            label = f"{run.name} {'D(x)' if key == 'd_real' else 'D(G(z))'}"
            axes[1].plot(x, smooth([r[key] for r in records]), style, color=colour, label=label)
    axes[0].set_title("losses (smoothed): solid D, dashed G")
    axes[1].set_title("discriminator outputs (smoothed): solid D(x), dotted D(G(z))")
    axes[1].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.set_xlabel("% of training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def main_key(evals: list[dict]) -> str:
    """Which logged number is the main metric (the one `main` copies), by the registry's rank."""
    for key in main_output_order():
        if evals and key in evals[0]:
            return key
    return "main"


def quality_figure(runs: list[RunRecord]) -> bytes | None:
    """The main metric during training against wall-clock time and against % of training."""
    with_evals = [(run, colour) for run, colour in zip(runs, COLOURS) if run.evals]
    if not with_evals:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True)
    keys = set()
    for run, colour in with_evals:
        key = main_key(run.evals)
        keys.add(key)
        values = [r["main"] for r in run.evals]
        axes[0].plot(
            [r["elapsed_s"] for r in run.evals],
            values,
            "o-",
            color=colour,
            label=f"{run.name} ({key})",
        )
        axes[1].plot(
            [100 * r["step"] / run.total_steps for r in run.evals],
            values,
            "o-",
            color=colour,
            label=f"{run.name} ({key})",
        )
    label = " / ".join(sorted(keys)) + " (lower is better)"
    axes[0].set_xlabel("wall-clock seconds since the start of training")
    axes[1].set_xlabel("% of training")
    for ax, title in zip(axes, ("quality versus time", "quality versus progress")):
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _png(fig)
