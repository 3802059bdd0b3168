"""The one owner of what a training checkpoint holds, and of writing and reading it.

Contents: the :class:`TrainingState` (models, optimisers, EMA, sampler, random streams,
step), ADA's probability, and in a run of several processes each process's random streams
and a digest of its weights. Writes are atomic (checkpoint.save_checkpoint) and made by
rank 0 alone, after every process handed over its part; the newest ``schedule.keep_checkpoints``
are kept. A resume reads the newest checkpoint that loads (rank 0 reads it and hands it to
the others) and restores all of the above.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ganforge.artefacts.rundir import RunDirectory
from ganforge.checkpoint import find_latest, load_checkpoint, save_checkpoint, training_checkpoint
from ganforge.config import TrainConfig
from ganforge.data import ImageData
from ganforge.errors import CheckpointError, GanforgeError, TrainingDiverged
from ganforge.training.distributed import rank_seed
from ganforge.training.runtime import Runtime
from ganforge.training.state import TrainingState

if TYPE_CHECKING:
    from ganforge.training.world import World


class Checkpointer:
    """Saves and restores a run's checkpoints (see the module's docstring)."""

    def __init__(
        self,
        config: TrainConfig,
        state: TrainingState,
        data: ImageData,
        run: RunDirectory,
        runtime: Runtime,
        world: World,
        augment: Any = None,
    ):
        self.config, self.state, self.data, self.run = config, state, data, run
        self.runtime, self.world, self.augment = runtime, world, augment
        self.data_fingerprint = data_fingerprint(data)
        # told of a problem worth a warning (processes whose weights differ)
        self.warn: Callable[[str], None] = lambda message: None

    # ---- writing ---------------------------------------------------------------------------
    def save(self, best: bool = False) -> Path:
        """ckpt-<step>.pt (and best.pt), keeping the newest ``schedule.keep_checkpoints``. Every
        process checks its weights and hands over its streams; rank 0 writes, and an error
        there reaches every process."""
        self.check_finite_weights()
        ranks = self.world.gather(self._rank_part()) if self.world.world_size > 1 else []
        path = self.world.from_main(lambda: self._write(self.contents(ranks), best))
        if self.world.is_main and len({r["digest"] for r in ranks}) > 1:
            self.warn(
                f"the processes hold different weights at iteration {self.state.step} "
                "(rank digests differ); the checkpoint has rank 0's"
            )
        return path

    def contents(self, ranks: list[dict[str, Any]] = ()) -> dict[str, Any]:
        """What a checkpoint holds; `ranks` are the processes' parts (several processes)."""
        state = self.state.state_dict()
        if self.augment is not None:
            # ADA's probability: a resume continues from it
            state["augment"] = self.augment.state_dict()
        contents = training_checkpoint(
            self.config,
            state,
            self.state.image_shape,
            self.data.name,
            self.data_fingerprint,
            world_size=self.world.world_size,
            class_names=self.data.class_names or (),
        )
        if ranks:
            contents["rank_rng"] = [r["rng"] for r in ranks]
            if self.runtime.device.type == "cuda":
                contents["rank_cuda_rng"] = [r["cuda_rng"] for r in ranks]
            contents["rank_digests"] = [r["digest"] for r in ranks]
            contents["rank_augment_p"] = [r["augment_p"] for r in ranks]
        return contents

    def _rank_part(self) -> dict[str, Any]:
        """This process's random streams, a digest of its weights and its ADA probability."""
        device, augment = self.runtime.device, self.augment
        return {
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "digest": weights_digest(self.state.generator, self.state.discriminator),
            "augment_p": float(augment.p) if augment is not None and augment.adaptive else None,
        }

    def _write(self, contents: dict[str, Any], best: bool) -> Path:
        folder, step = self.run.checkpoints_dir, self.state.step
        path = folder / f"ckpt-{step:08d}.pt"
        try:
            save_checkpoint(path, contents)
            if best:
                save_checkpoint(folder / "best.pt", contents)
        # a full disk, a vanished or read-only folder
        except OSError as exc:
            previous = find_latest(folder)
            kept = (
                f"the last good checkpoint, {previous}, is intact"
                if previous
                else "no earlier checkpoint exists"
            )
            raise GanforgeError(
                f"could not write checkpoint {path} at iteration {step} "
                f"({exc.strerror or exc}); {kept}; free space or fix the folder, then "
                f"--resume {self.run.path}"
            ) from None
        for stale in sorted(folder.glob("ckpt-*.pt"))[: -self.config.schedule.keep_checkpoints]:
            stale.unlink(missing_ok=True)
        return path

    def check_finite_weights(self) -> None:
        for name, module in (
            ("generator", self.state.generator),
            ("discriminator", self.state.discriminator),
        ):
            finite = torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all()
            # one host-device sync per network, not one per tensor
            if not finite:
                raise TrainingDiverged(
                    f"training diverged at iteration {self.state.step}: the {name} has "
                    f"NaN/Inf weights; {self.last_good()}"
                )

    def last_good(self) -> str:
        """Where a diverged run can continue from, in words."""
        latest = find_latest(self.run.checkpoints_dir)
        if latest is None:
            return (
                "no checkpoint was written yet; "
                "start again with a lower learning rate (--lr-d/--lr-g)"
            )
        return (
            f"the last good checkpoint, {latest.name}, is intact; continue from it with a lower "
            f"learning rate: ganforge train --resume {self.run.path} --lr 1e-4 (or a stabiliser: "
            "--set regularise.r1_gamma=1)"
        )

    # ---- reading ---------------------------------------------------------------------------
    def read_latest(self, log: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
        """The newest readable checkpoint; with several processes rank 0 reads it (on the
        CPU) and hands it to every process, so only rank 0's machine needs the run folder."""
        several = self.world.world_size > 1
        device = torch.device("cpu") if several else self.runtime.device
        return self.world.from_main(lambda: newest_readable_checkpoint(self.run, device, log))

    def restore(self, saved: dict[str, Any], source: Path) -> list[str]:
        """Continue from `saved`: the state, ADA's probability and, with several processes,
        each one's own random streams. Returns the notes this adds."""
        self.state.load_state_dict(saved, source)
        if self.augment is not None and isinstance(saved.get("augment"), dict):
            self.augment.load_state_dict(saved["augment"])
        return self._restore_rank_streams(saved) if self.world.world_size > 1 else []

    def _restore_rank_streams(self, saved: dict[str, Any]) -> list[str]:
        """This process's random streams; a process the saved run did not have (a larger
        world) starts a fresh stream of its own."""
        rank, world, device = self.world.rank, self.world.world_size, self.runtime.device
        streams = saved.get("rank_rng") or []
        if rank < len(streams) and isinstance(streams[rank], torch.Tensor):
            torch.set_rng_state(streams[rank])
            cuda_streams = saved.get("rank_cuda_rng") or []
            if device.type == "cuda" and rank < len(cuda_streams):
                torch.cuda.set_rng_state(cuda_streams[rank], device)
        elif rank:
            torch.manual_seed(rank_seed(self.config.seed, rank, self.state.step))
        saved_world = int(saved.get("world_size", 1))
        if saved_world == world:
            return []
        note = (
            f"resumed a run of {saved_world} process(es) on {world}: "
            "re-sharded (the global batch, its order and its noise are unchanged)"
        )
        # in summary.json too
        self.runtime.notes.append(note)
        return [note]


def weights_digest(*modules: nn.Module) -> str:
    """SHA-256 of the modules' parameters (names and bytes): equal in every process of a run."""
    digest = hashlib.sha256()
    for module in modules:
        for name, param in module.named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(data: ImageData) -> str:
    """Digest of the images (and labels) a run trains on: a resumed run must find the same data."""
    digest = hashlib.sha256(f"{data.name}|{tuple(data.images.shape)}".encode())
    digest.update(data.images.contiguous().numpy().tobytes())
    if data.labels is not None:
        digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def newest_readable_checkpoint(
    run: RunDirectory, device: torch.device, log: Callable[[str], None]
) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that loads; a damaged newer one is reported and skipped."""
    candidates = sorted(run.checkpoints_dir.glob("ckpt-*.pt"), reverse=True)
    if not candidates:
        raise CheckpointError(f"cannot resume: no checkpoint in {run.checkpoints_dir}")
    for path in candidates:
        try:
            return path, load_checkpoint(path, map_location=device)
        except CheckpointError as exc:
            log(f"skipping damaged checkpoint: {exc}")
    raise CheckpointError(
        f"cannot resume: none of the {len(candidates)} checkpoints in "
        f"{run.checkpoints_dir} could be read"
    )
