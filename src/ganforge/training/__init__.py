"""Training: the state of a run, one iteration, and the loop that owns both.

setup.py        prepare(): the one set-up, for any world (RunOptions: how to run a config)
world.py        SingleProcess, the trivial world; distributed.py: torchrun's DDP world
state.py        TrainingState: models, optimisers, EMA, sampler, random streams, step
step.py         AdversarialStep and build_step: one iteration (loss, regularisers, augmentation)
batches.py      BatchSource: this process's reals and its part of the global noise
forwards.py     what the step calls to run G and D (compiled, DDP-wrapped)
checkpointer.py what a checkpoint holds (ADA, per-rank streams), atomic save, pruning, resume
resume.py       start or continue a run folder
hooks.py        Hook/TrainerHook, and the built-in ones: sample grids and final artefacts
loop.py         Trainer.fit: the loop
optim.py        Adam for each network (and Keras' shared iteration counter)
runtime.py, threads.py, transfer.py, oom.py, graphed.py: execution decisions and helpers

The one public entry point is ``ganforge.train`` (api.py).
"""

from ganforge.lazy import lazy_exports

# Imported on first use (PEP 562): `ganforge sample` reads training.runtime's device choice
# without loading the loop (and matplotlib, which it imports for the loss plot).
_EXPORTS = {
    "RunOptions": "ganforge.training.setup",
    "TrainResult": "ganforge.training.loop",
    "Trainer": "ganforge.training.loop",
    "TrainerHook": "ganforge.training.hooks",
    "TrainingState": "ganforge.training.state",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["RunOptions", "TrainResult", "Trainer", "TrainerHook", "TrainingState"]
