"""Loss and discriminator curves from the metrics log (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ganforge.artefacts.files import write_bytes  # noqa: E402


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard-style smoothing)."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def every_iteration(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(iterations, values) of `key` for every iteration when the records keep them
    (`raw_losses`: a record's "raw" lists end at its step), else one point per record."""
    if not all("raw" in r for r in records):
        return [r["step"] for r in records], [r[key] for r in records]
    steps: list[int] = []
    values: list[float] = []
    for r in records:
        kept = r["raw"][key]
        steps += range(r["step"] - len(kept) + 1, r["step"] + 1)
        values += kept
    return steps, values


def plot_training_curves(records: list[dict], path: str | Path, title: str = "") -> Path | None:
    """Three panels: D and G losses (raw, faint, and smoothed), D(x) vs D(G(z)), D accuracy.

    Raw is every iteration when the run kept them (`raw_losses`, the notebook's plots),
    else each record's mean over its log interval."""
    records = [r for r in records if "d_loss" in r]
    if not records:
        return None
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for key, colour, label in (
        ("d_loss", "tab:blue", "D loss"),
        ("g_loss", "tab:orange", "G loss"),
    ):
        values = [r[key] for r in records]
        axes[0].plot(*every_iteration(records, key), color=colour, alpha=0.25, linewidth=0.8)
        axes[0].plot(steps, smooth(values), color=colour, label=f"{label} (smoothed)")
    axes[0].set_title("losses")
    for key, colour, label in (("d_real", "tab:green", "D(x)"), ("d_fake", "tab:red", "D(G(z))")):
        values = [r[key] for r in records]
        axes[1].plot(*every_iteration(records, key), color=colour, alpha=0.25, linewidth=0.8)
        axes[1].plot(steps, smooth(values), color=colour, label=label)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("discriminator outputs (probabilities)")
    axes[2].plot(*every_iteration(records, "d_acc"), color="tab:purple", alpha=0.25, linewidth=0.8)
    axes[2].plot(
        steps, smooth([r["d_acc"] for r in records]), color="tab:purple", label="D accuracy"
    )
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_title("discriminator accuracy")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
    return Path(path)
