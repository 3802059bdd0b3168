"""Training: the state of a run, one iteration, and the loop that owns both.

state.py  TrainingState: models, optimisers, EMA, sampler, random streams, step
step.py   AdversarialStep: one iteration (loss, regularisers, augmentation, labels plug in)
loop.py   Trainer.fit and train(): batches, logs, grids, checkpoints, final artefacts
optim.py  Adam for each network (and Keras' shared iteration counter)
runtime.py, threads.py, transfer.py, oom.py: execution decisions and their helpers
"""

from ganforge.training.loop import Trainer, TrainerHook, TrainResult, train
from ganforge.training.state import TrainingState

__all__ = ["TrainResult", "Trainer", "TrainerHook", "TrainingState", "train"]
