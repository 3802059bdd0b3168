"""The batch sampler: each order does what its name says, and its state survives a checkpoint.

A resumed run is bitwise equal to an uninterrupted one only if the sampler picks up exactly
where it stopped, mid-pass included; these tests pin that down without training anything.
"""

from __future__ import annotations

import io

import pytest
import torch

from ganforge.training.sampler import BatchSampler

ORDERS = ["shuffle", "sequential", "random"]
SIZE, BATCH = 50, 8  # 6 batches per pass, 2 images left over


def through_a_checkpoint_file(state: dict) -> dict:
    """The state as a resumed run sees it: saved with torch.save, loaded with weights_only."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def draw(sampler: BatchSampler, count: int) -> list[list[int]]:
    return [sampler.next().tolist() for _ in range(count)]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("stop_after", [0, 3, 6, 11])  # fresh, mid-pass, pass boundary, 2nd pass
def test_state_round_trip_gives_the_same_following_batches(order, stop_after):
    original = BatchSampler(SIZE, BATCH, order, seed=7)
    draw(original, stop_after)
    state = through_a_checkpoint_file(original.state_dict())
    restored = BatchSampler(SIZE, BATCH, order, seed=12345)  # another seed: the state must win
    restored.load_state_dict(state)
    assert draw(restored, 20) == draw(original, 20)  # past the end of the next two passes


@pytest.mark.parametrize("order", ORDERS)
def test_the_same_seed_gives_the_same_batches_and_another_seed_others(order):
    first = draw(BatchSampler(SIZE, BATCH, order, seed=1), 12)
    assert draw(BatchSampler(SIZE, BATCH, order, seed=1), 12) == first
    if order != "sequential":
        assert draw(BatchSampler(SIZE, BATCH, order, seed=2), 12) != first


def test_shuffle_visits_each_image_at_most_once_per_pass_in_a_new_order():
    sampler = BatchSampler(SIZE, BATCH, "shuffle", seed=0)
    passes = [[i for batch in draw(sampler, 6) for i in batch] for _ in range(3)]
    for indices in passes:
        assert len(indices) == 6 * BATCH and len(set(indices)) == len(indices)  # no repeats
        assert set(indices) <= set(range(SIZE))  # the 2 left over differ from pass to pass
    assert passes[0] != passes[1] != passes[2]


def test_sequential_is_the_stored_order_every_pass():
    sampler = BatchSampler(SIZE, BATCH, "sequential", seed=0)
    expected = [list(range(i * BATCH, (i + 1) * BATCH)) for i in range(6)]
    assert draw(sampler, 6) == expected and draw(sampler, 6) == expected


def test_random_draws_with_replacement_within_the_data():
    sampler = BatchSampler(10, 8, "random", seed=0)
    batches = draw(sampler, 20)
    assert all(len(b) == 8 and all(0 <= i < 10 for i in b) for b in batches)
    assert any(len(set(b)) < len(b) for b in batches)  # 8 draws from 10: repeats are the rule
