"""The training loop and its parts (one iteration, batches, EMA, runtime choices)."""

from ganforge.training.loop import TrainResult, Trainer, draw_noise, train

__all__ = ["TrainResult", "Trainer", "draw_noise", "train"]
