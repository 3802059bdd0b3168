"""``ganforge.train``: the one entry point of training, for one process and under torchrun.

    check -> world (one process, or torchrun's group) -> set-up (training/setup.py)
        -> Trainer.fit (training/loop.py) -> leave the world

The defaults a user expects are added here, so no public path skips them: the default
evaluator (classifier FID on MNIST-like data, else SWD) when ``schedule.eval_every`` asks for a
quality curve, and the run's loggers (``config.loggers``, plus the CSV twin of
metrics.jsonl). The command line (``ganforge train``) calls this same function.
"""

from __future__ import annotations

import torch

from ganforge.check import check
from ganforge.config import TrainConfig
from ganforge.data import ImageData
from ganforge.loggers import LoggingHook
from ganforge.training.hooks import Hook
from ganforge.training.loop import Evaluator, TrainResult
from ganforge.training.setup import RunOptions, out_of_memory, prepare
from ganforge.training.world import open_world

__all__ = ["RunOptions", "TrainResult", "train"]


def train(
    config: TrainConfig,
    *,
    run: RunOptions = RunOptions(),
    evaluator: Evaluator | None = None,
    hooks: tuple[Hook, ...] = (),
) -> TrainResult:
    """Train a GAN as `config` says and write every artefact to its run folder.

    `run` says how (a given dataset, resume, overwrite, progress, a log function: see
    :class:`RunOptions`); `evaluator` scores the generator every ``schedule.eval_every`` units (the
    default one when None); `hooks` are told about the start, logs, grids, evaluations and
    the finish (:class:`ganforge.training.TrainerHook`). Everything is checked, the data
    read and the models built before the run folder is made.
    """
    check(config)
    world = open_world(config)
    hooks = (LoggingHook(config.loggers), *hooks)
    trainer = prepare(
        config, world, run, evaluator=evaluator, default_evaluator=_evaluator, hooks=hooks
    )
    result = trainer.nothing_to_do() if run.resume else None
    try:
        result = result or trainer.fit()
    except torch.OutOfMemoryError:
        raise out_of_memory(
            trainer.config, world, trainer.runtime, trainer.data, "training"
        ) from None
    except RuntimeError as exc:
        # several processes: a lost peer becomes one line
        error = world.explain(exc, trainer.state.step, trainer.run)
        if error is None:
            raise
        raise error from None
    # the DDP wrappers go before the process group does (Distributed.leave says why)
    del trainer
    world.leave()
    return result


def _evaluator(config: TrainConfig, data: ImageData, device: torch.device) -> Evaluator:
    """The default evaluator (ganforge.metrics, loaded only when a run evaluates)."""
    from ganforge.metrics import training_evaluator

    return training_evaluator(config, data, device)
