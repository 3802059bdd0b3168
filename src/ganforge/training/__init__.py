"""Training: the state of a run, one iteration, and the loop that owns both.

state.py  TrainingState: models, optimisers, EMA, sampler, random streams, step
step.py   AdversarialStep: one iteration (loss, regularisers, augmentation, labels plug in)
loop.py   Trainer.fit and train(): batches, logs, grids, checkpoints, final artefacts
optim.py  Adam for each network (and Keras' shared iteration counter)
runtime.py, threads.py, transfer.py, oom.py: execution decisions and their helpers
"""

from ganforge.lazy import lazy_exports

# Imported on first use (PEP 562): `ganforge sample` reads training.runtime's device choice
# without loading the loop (and matplotlib, which it imports for the loss plot).
_EXPORTS = {
    "TrainResult": "ganforge.training.loop",
    "Trainer": "ganforge.training.loop",
    "TrainerHook": "ganforge.training.loop",
    "train": "ganforge.training.loop",
    "TrainingState": "ganforge.training.state",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["TrainResult", "Trainer", "TrainerHook", "TrainingState", "train"]
