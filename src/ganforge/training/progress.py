"""The live progress bar: losses, D accuracy, D(x), D(G(z)), images/s and ETA.

tqdm.auto draws a terminal bar in a shell and a widget in Jupyter.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


class Progress:
    def __init__(self, total: int, initial: int, enabled: bool, unit_steps: int, unit: str):
        self.unit_steps, self.unit = unit_steps, unit
        self.bar = tqdm(
            total=total,
            initial=initial,
            disable=not enabled,
            unit="it",
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5,
            smoothing=0.1,
            leave=True,
        )

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def advance(self) -> None:
        self.bar.update(1)

    def show(self, stats: dict) -> None:
        if self.bar.disable:
            return
        step = stats["step"]
        unit_index = step // self.unit_steps + (0 if step % self.unit_steps == 0 else 1)
        prefix = f"{self.unit} {unit_index}"
        self.bar.set_description(prefix, refresh=False)
        self.bar.set_postfix_str(
            f"D {stats['d_loss']:.3f} G {stats['g_loss']:.3f} acc {stats['d_acc']:.2f} "
            f"D(x) {stats['d_real']:.2f} D(G(z)) {stats['d_fake']:.2f} "
            f"{stats['images_per_s']:,.0f} img/s"
        )

    def write(self, message: str, log) -> None:
        """Print a message above the bar (or through `log` when there is no bar)."""
        if self.bar.disable:
            log(message)
        else:
            self.bar.write(message, file=sys.stderr)
