"""The Python API's training call: the loop plus the defaults a user expects.

``ganforge.training.train`` knows nothing of metrics; this wrapper gives it the default
evaluator (classifier FID on MNIST-like data, else SWD) when ``eval_every`` asks for a quality
curve, so the CLI and ``ganforge.train`` behave the same.
"""

from __future__ import annotations

import os
from typing import Callable

from ganforge.check import check
from ganforge.config import TrainConfig
from ganforge.data import ImageData, load_images
from ganforge.loggers import LoggingHook
from ganforge.training import TrainResult
from ganforge.training import train as train_loop
from ganforge.training.loop import Evaluator, Hook
from ganforge.training.runtime import resolve_device


def train(
    config: TrainConfig,
    *,
    data: ImageData | None = None,
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = True,
    evaluator: Evaluator | None = None,
    hooks: tuple[Hook, ...] = (),
    allow_data_change: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> TrainResult:
    """Train a GAN as `config` says; see :func:`ganforge.training.train` for the arguments.

    With ``eval_every > 0`` and no evaluator given, the default one scores the generator. The
    run's loggers (``config.loggers``, plus the CSV twin of metrics.jsonl) are added as hooks.
    """
    if evaluator is None and config.eval_every > 0 and os.environ.get("RANK", "0") == "0":
        # under torchrun only rank 0 evaluates (training/distributed.py)
        check(config)
        data = data if data is not None else load_images(config.data)
        from ganforge.metrics import training_evaluator

        evaluator = training_evaluator(config, data, resolve_device(config.device))
    hooks = (LoggingHook(config.loggers), *hooks)  # metrics.csv always; TensorBoard when asked
    return train_loop(
        config,
        data=data,
        overwrite=overwrite,
        resume=resume,
        show_progress=show_progress,
        evaluator=evaluator,
        hooks=hooks,
        allow_data_change=allow_data_change,
        log=log,
    )
