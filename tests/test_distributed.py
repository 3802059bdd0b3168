"""Distributed training (issue 13): real multi-process jobs on the CPU with gloo, launched by
torchrun (``python -m torch.distributed.run``) exactly as a user would, on 127.0.0.1.

What a user relies on: several processes train one model (identical weights in every
process, artefacts written once), the same run as one process with the same global batch,
a run across two "machines" through torchrun's rendezvous, a killed process that stops the
others with one line and leaves a checkpoint that resumes, and bad settings refused in one
line before anything starts. Each torchrun start costs 10-20 s of interpreter and torch
start-up on a shared 2-core machine, so the multi-process tests are marked slow.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganforge.check import distributed_problems as problems
from ganforge.checkpoint import load_checkpoint
from ganforge.config import TrainConfig
from ganforge.errors import ConfigError
from ganforge.models import build_models
from ganforge.training.checkpointer import weights_digest
from ganforge.training.distributed import CPUSyncBatchNorm, join, synchronise_batchnorm
from ganforge.training.sampler import BatchSampler

# The notebook's MLP GAN, shrunk: BatchNorm in G (synchronised with sync_bn), none in D. MNIST
# is found where conftest's GANFORGE_DATA points (real digits, IDX files), in every process.
TINY = [
    "--model",
    "gan",
    "--set",
    "model.options={g_hidden: [32], d_hidden: [32]}",
    "--limit",
    "256",
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--quiet",
    "--set",
    "log_every=2",
    "--set",
    "sample_every=3",
    "--set",
    "checkpoint_every=3",
    "--set",
    "dist_timeout_s=30",
]
# Two processes against one: weights after 6 iterations agree to float32 rounding (measured
# 1.8e-7); the tolerance leaves room for the order of the all-reduce sums.
SAME_RUN_ATOL = 1e-5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(tmp: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GANFORGE_OFFLINE": "1",
        "GANFORGE_CACHE": str(tmp / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's connections stay on loopback
    return env


def torchrun(
    tmp: Path, *args: str, nproc: int = 2, launcher: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`torchrun --nproc_per_node=N -m ganforge train ...` on 127.0.0.1, not waited for."""
    if not launcher:
        launcher = ("--master_addr", "127.0.0.1", "--master_port", str(free_port()))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        *launcher,
        "-m",
        "ganforge",
        "train",
        *args,
    ]
    return subprocess.Popen(
        command, env=environment(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def networks(checkpoint: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The checkpoint's G and D, rebuilt and loaded (to digest their weights)."""
    generator, discriminator = build_models(
        "gan", 100, (1, 32, 32), {"g_hidden": [32], "d_hidden": [32]}
    )
    generator.load_state_dict(checkpoint["generator"])
    discriminator.load_state_dict(checkpoint["discriminator"])
    return generator, discriminator


def max_difference(a: dict, b: dict) -> float:
    return max(
        (a[net][key].float() - b[net][key].float()).abs().max().item()
        for net in ("generator", "discriminator")
        for key in a[net]
    )


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> tuple[Path, str]:
    """6 iterations of the tiny GAN on 2 processes with sync_bn, started by torchrun."""
    tmp = tmp_path_factory.mktemp("two")
    code, err = finish(
        torchrun(
            tmp,
            *TINY,
            "--iterations",
            "6",
            "--set",
            "sync_bn=true",
            "--out",
            str(tmp / "runs"),
            "--name",
            "two",
        )
    )
    assert code == 0, err
    return tmp / "runs" / "two", err


@pytest.mark.slow
def test_two_processes_hold_identical_weights_and_write_each_artefact_once(two_process_run):
    run, err = two_process_run
    checkpoint = load_checkpoint(run / "checkpoints" / "ckpt-00000006.pt")
    assert checkpoint["world_size"] == 2
    digests = checkpoint["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] == weights_digest(*networks(checkpoint))
    # the batch semantics are said at the start, once (rank 0 alone logs)
    assert err.count("batch 32 in all = 16 per process") == 1, err
    # rank 0 alone writes: one log record per log step, one grid per sample step
    lines = (run / "metrics.jsonl").read_text().splitlines()
    metrics = [line for line in lines if '"d_loss"' in line]
    assert len(metrics) == 3
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "iteration_000000.png",
        "iteration_000003.png",
        "iteration_000006.png",
    ]
    for name in (
        "generator.safetensors",
        "training.gif",
        "losses.png",
        "summary.json",
        "reals.png",
    ):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "ckpt-00000003.pt",
        "ckpt-00000006.pt",
    ]


@pytest.mark.slow
def test_adaptive_augmentation_keeps_one_probability_across_processes(tmp_path):
    """ADA's overfitting signal is pooled over the processes before p moves: each process sees
    its own shard of the reals, and with a target just under D's usual verdict (r = 1) one
    process's p would fall while the other's rises (0.56 vs 0.64 here, unpooled)."""
    ada = ["--set", "augment=translation", "--set", "ada_target=0.95"]
    ada += ["--set", "ada_interval=1", "--set", "ada_speed=200"]
    code, err = finish(
        torchrun(tmp_path, *TINY, "--iterations", "8", *ada, "--out", str(tmp_path), "--name", "a")
    )
    assert code == 0, err
    checkpoint = load_checkpoint(tmp_path / "a" / "checkpoints" / "ckpt-00000008.pt")
    p = checkpoint["rank_augment_p"]
    assert len(p) == 2 and p[0] == p[1], p
    assert p[0] == pytest.approx(float(checkpoint["augment"]["p"]))
    assert checkpoint["rank_digests"][0] == checkpoint["rank_digests"][1]


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_the_same_global_batch(
    two_process_run, cli, tmp_path
):
    run, _ = two_process_run
    result = cli("train", *TINY, "--iterations", "6", "--out", tmp_path, "--name", "one")
    assert result.code == 0, result.err
    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "ckpt-00000006.pt")
    two = load_checkpoint(run / "checkpoints" / "ckpt-00000006.pt")
    assert max_difference(one, two) < SAME_RUN_ATOL
    assert torch.equal(one["sampler"]["rng"], two["sampler"]["rng"])  # the one shared order


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_on_one_process_resharded(two_process_run, cli, tmp_path):
    """A different world size re-shards: the global batch, its order and its noise do not
    depend on the number of processes, so 6 iterations on 2 then 6 on 1 = 12 on 1."""
    run, _ = two_process_run
    copy = tmp_path / "resumed"
    shutil.copytree(run, copy)
    result = cli("train", "--resume", copy, "--iterations", "12", "--quiet")
    assert result.code == 0, result.err
    straight = cli("train", *TINY, "--iterations", "12", "--out", tmp_path, "--name", "straight")
    assert straight.code == 0, straight.err
    resumed = load_checkpoint(copy / "checkpoints" / "ckpt-00000012.pt")
    reference = load_checkpoint(tmp_path / "straight" / "checkpoints" / "ckpt-00000012.pt")
    assert resumed["world_size"] == 1
    assert max_difference(resumed, reference) < 10 * SAME_RUN_ATOL


@pytest.mark.slow
def test_two_machines_over_loopback_through_torchruns_rendezvous(tmp_path):
    """Two torchrun agents (one process each) meet through the c10d rendezvous, as on two
    machines; each has its own --out, and only the one that became rank 0 writes."""
    endpoint = f"127.0.0.1:{free_port()}"
    agents = [
        torchrun(
            tmp_path,
            *TINY,
            "--iterations",
            "4",
            "--out",
            str(tmp_path / f"node{n}"),
            "--name",
            "pair",
            nproc=1,
            launcher=(
                "--nnodes=2",
                f"--node_rank={n}",
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint={endpoint}",
                "--rdzv_id=ganforge-test",
                "--local_addr=127.0.0.1",
                "--rdzv_conf=join_timeout=60",
            ),
        )
        for n in (0, 1)
    ]
    results = [finish(agent) for agent in agents]
    assert [code for code, _ in results] == [0, 0], results
    written = [n for n in (0, 1) if (tmp_path / f"node{n}" / "pair" / "checkpoints").is_dir()]
    assert len(written) == 1, written
    run = tmp_path / f"node{written[0]}" / "pair"
    checkpoint = load_checkpoint(run / "checkpoints" / "ckpt-00000004.pt")
    assert checkpoint["world_size"] == 2
    assert checkpoint["rank_digests"][0] == checkpoint["rank_digests"][1]
    assert (run / "generator.safetensors").is_file()
    assert not (tmp_path / f"node{1 - written[0]}").exists()


@pytest.mark.slow
def test_a_machine_that_never_joins_ends_the_rendezvous_after_its_timeout(tmp_path):
    """The second machine never comes (a wrong --rdzv_endpoint on it looks the same from
    here): torchrun gives up after join_timeout, and nothing was written."""
    agent = torchrun(
        tmp_path,
        *TINY,
        "--iterations",
        "2",
        "--out",
        str(tmp_path / "runs"),
        nproc=1,
        launcher=(
            "--nnodes=2",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{free_port()}",
            "--rdzv_id=alone",
            "--local_addr=127.0.0.1",
            "--rdzv_conf=join_timeout=5",
        ),
    )
    start = time.monotonic()
    code, err = finish(agent, timeout=90)
    assert code != 0 and "RendezvousTimeoutError" in err
    assert time.monotonic() - start < 60
    assert not (tmp_path / "runs").exists()


def _worker_with_local_rank(agent: int, local_rank: int) -> int:
    """The pid of the torchrun worker with this LOCAL_RANK (a child of the agent)."""
    for task in Path(f"/proc/{agent}/task").iterdir():
        for child in (task / "children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            if f"LOCAL_RANK={local_rank}".encode() in environ:
                return int(child)
    raise AssertionError(f"no worker with LOCAL_RANK={local_rank}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads worker pids from /proc")
def test_a_killed_process_stops_the_others_and_the_run_resumes(tmp_path):
    out = tmp_path / "runs"
    agent = torchrun(
        tmp_path,
        *TINY,
        "--iterations",
        "100000",
        "--set",
        "checkpoint_every=10",
        "--out",
        str(out),
        "--name",
        "killed",
    )
    checkpoints = out / "killed" / "checkpoints"
    deadline = time.monotonic() + 90
    while not list(checkpoints.glob("ckpt-*.pt")):
        assert agent.poll() is None and time.monotonic() < deadline, agent.communicate()
        time.sleep(0.2)
    os.kill(_worker_with_local_rank(agent.pid, 1), signal.SIGKILL)
    killed_at = time.monotonic()
    code, err = finish(agent, timeout=60)
    assert code != 0
    assert time.monotonic() - killed_at < 30  # torchrun's teardown, not a timeout
    line = next((line for line in err.splitlines() if line.startswith("ganforge: error: ")), err)
    assert "process 0 of 2 lost contact with the others" in line and "--resume" in line
    latest = max(checkpoints.glob("ckpt-*.pt"))
    step = load_checkpoint(latest)["step"]  # intact: it loads
    resumed = torchrun(
        tmp_path, "--resume", str(out / "killed"), "--iterations", str(step + 4), "--quiet"
    )
    code, err = finish(resumed)
    assert code == 0, err
    final = load_checkpoint(checkpoints / f"ckpt-{step + 4:08d}.pt")
    assert final["world_size"] == 2 and final["rank_digests"][0] == final["rank_digests"][1]


LOST_CONTACT_THEN_SIGTERM = """
import os, signal, sys
from pathlib import Path
from ganforge.artefacts.rundir import RunDirectory
from ganforge.training.distributed import lost_contact_error

gone = RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1")
error = lost_contact_error(gone, 0, 2, 7, RunDirectory(Path(sys.argv[1])))
os.kill(os.getpid(), signal.SIGTERM)  # torchrun's closing signal, while the error unwinds
print(f"ganforge: error: {error}", file=sys.stderr)
"""


def test_torchruns_closing_signal_cannot_cut_off_the_lost_contact_line(tmp_path):
    """torchrun SIGTERMs the survivors as soon as one process fails; a survivor already on its
    way out with the lost-contact error must still print it (CI lost the line once)."""
    done = subprocess.run(
        [sys.executable, "-c", LOST_CONTACT_THEN_SIGTERM, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "process 0 of 2 lost contact with the others at iteration 7" in done.stderr
    assert "Connection closed by peer" in done.stderr and "--resume" in done.stderr


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_process_at_one_iteration_with_a_checkpoint(tmp_path):
    """A scheduler (or Ctrl-C) stopping the job: torchrun passes SIGTERM on to each process;
    they agree at the next log interval and rank 0 saves there."""
    out = tmp_path / "runs"
    agent = torchrun(
        tmp_path,
        *TINY,
        "--iterations",
        "100000",
        "--set",
        "checkpoint_every=100000",
        "--out",
        str(out),
        "--name",
        "stopped",
    )
    metrics = out / "stopped" / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while not (metrics.is_file() and '"step": 4,' in metrics.read_text()):
        assert agent.poll() is None and time.monotonic() < deadline, agent.communicate()
        time.sleep(0.2)
    agent.send_signal(signal.SIGTERM)
    _, err = finish(agent, timeout=60)
    steps = re.findall(r"^stopped \(checkpoint saved.*\): (\d+) iterations", err, re.MULTILINE)
    assert len(steps) == 1, err  # rank 0 reports for both processes
    (checkpoint,) = (out / "stopped" / "checkpoints").glob("ckpt-*.pt")
    state = load_checkpoint(checkpoint)
    assert state["step"] == int(steps[0]) and state["step"] % 2 == 0  # a log step
    # both processes stopped at that one iteration: their weights' digests, taken there, agree
    assert len(state["rank_digests"]) == 2
    assert state["rank_digests"][0] == state["rank_digests"][1]


EVALUATED_RUN = """
import os, sys
from pathlib import Path
from ganforge.data import load_images
from ganforge.presets import load_preset
from ganforge import RunOptions, train

out = Path(sys.argv[1])
config = load_preset("demo").with_overrides({
    "model.arch": "gan", "model.options": {"g_hidden": [32], "d_hidden": [32]},
    "data.path": sys.argv[2], "data.limit": 256, "batch_size": 32, "device": "cpu",
    "iterations": 6, "eval_every": 2, "log_every": 2, "checkpoint_every": 100,
    "sample_every": 100, "dist_timeout_s": 30, "out_dir": str(out), "run_name": "evaluated"})

def evaluator(generator, step):  # better at every evaluation: a new best each time
    with open(out / f"evaluated-by-rank-{os.environ['RANK']}.txt", "a") as calls:
        calls.write(f"{step}\\n")
    return {"main": 100.0 - step}

options = RunOptions(data=load_images(config.data), show_progress=False)
train(config, run=options, evaluator=evaluator)
"""


@pytest.mark.slow
def test_evaluation_runs_once_on_rank_zero_and_every_process_saves_the_best(tmp_path, mnist_dir):
    script = tmp_path / "evaluated_run.py"
    script.write_text(EVALUATED_RUN)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        str(tmp_path),
        str(mnist_dir),
    ]
    done = subprocess.run(
        command, env=environment(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "evaluated-by-rank-0.txt").read_text().split() == ["2", "4", "6"]
    assert not (tmp_path / "evaluated-by-rank-1.txt").exists()
    run = tmp_path / "evaluated"
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["step"] == 6 and best["best_metric"] == 94.0
    assert len((run / "eval.jsonl").read_text().splitlines()) == 3


# ---- refused in one line, before anything starts (no processes needed) ----------------------
@pytest.mark.parametrize(
    ("settings", "world", "fragment"),
    [
        (
            {"batch_size": 32},
            3,
            "must split evenly over the 3 processes; use a multiple of 3, e.g. 33",
        ),
        (
            {"batch_size": 4, "d_half_batch": True},
            4,
            "use a schedule.batch_size that is a multiple of 8",
        ),
        ({"cuda_graphs": "on"}, 2, "cuda_graphs=on cannot capture DDP"),
        ({"device": "cuda:1"}, 2, "each one uses the GPU of its LOCAL_RANK"),
        ({"dist_timeout_s": 0}, 1, "distributed.timeout_s must be a positive number"),
    ],
)
def test_settings_a_world_size_cannot_run_are_refused(settings, world, fragment):
    config = TrainConfig().with_overrides({"iterations": 1, **settings})
    found = problems(config, world)
    assert len(found) == 1 and fragment in found[0], found


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without GPUs")
def test_nccl_without_gpus_is_refused_by_the_dry_run(cli, monkeypatch, user_error):
    monkeypatch.setenv("WORLD_SIZE", "2")
    user_error(
        cli("train", "--set", "dist_backend=nccl", "--dry-run"),
        "distributed.backend=nccl needs CUDA GPUs",
        "distributed.backend=gloo",
    )
    user_error(cli("train", "--batch-size", "33", "--dry-run"), "multiple of 2")


def test_without_a_rendezvous_address_a_process_says_how_to_launch(monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="MASTER_ADDR and MASTER_PORT are not set.*torchrun"):
        join(TrainConfig().with_overrides({"iterations": 1, "device": "cpu"}))


def test_a_wrong_rendezvous_address_fails_within_the_timeout(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))  # nobody listens there
    config = TrainConfig().with_overrides({"iterations": 1, "device": "cpu", "dist_timeout_s": 1})
    start = time.monotonic()
    with pytest.raises(
        ConfigError,
        match=r"could not join the run at 127\.0\.0\.1:\d+ within "
        r"dist_timeout_s=1 s",
    ) as caught:
        join(config)
    assert "\n" not in str(caught.value)
    assert time.monotonic() - start < 15  # the timeout (1 s) and the store's retry delay


# ---- the pieces ------------------------------------------------------------------------------
def test_the_processes_shards_are_disjoint_and_make_up_the_one_process_batch():
    for order in ("shuffle", "sequential", "random"):
        whole = BatchSampler(100, 12, order, seed=5)
        parts = [BatchSampler(100, 12, order, seed=5) for _ in range(3)]
        for rank, part in enumerate(parts):
            part.shard(rank, 3)
        for _ in range(20):  # past the end of a pass
            assert torch.equal(whole.next(), torch.cat([part.next() for part in parts]))


def test_cpu_sync_batchnorm_is_plain_batchnorm_outside_a_process_group():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6, momentum=0.2))
    synced, count = synchronise_batchnorm(copy.deepcopy(plain), torch.device("cpu"))
    assert count == 1 and isinstance(synced[1], CPUSyncBatchNorm)
    x = torch.randn(8, 4)
    for mode in (True, False):
        plain.train(mode)
        synced.train(mode)
        assert torch.allclose(plain(x), synced(x))
    assert torch.equal(plain[1].running_var, synced[1].running_var)
