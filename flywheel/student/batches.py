"""Batches of (prompt ids, answer ids) rows, the same for every kind of student: right
padding with the loss on the answer tokens only, the per-row mean of those losses, and
length-bucketed batch order.
"""

from __future__ import annotations

import random

import numpy as np
import torch

IGNORE = -100  # the label of a position the loss skips (prompt, padding)


def pad_batch(pairs: list[tuple[list[int], list[int]]], pad: int):
    """(ids, labels, attention mask) of a batch of (prompt ids, answer ids), right-padded to
    its longest row; labels are IGNORE on the prompt and the padding. Every kind of student
    batches with it (the built-in loop, the Hugging Face student's Trainer collator and its
    losses). Built in numpy in one pass: a tensor per row cost 5% of a training step."""
    prompt = np.fromiter((len(p) for p, _ in pairs), dtype=np.int64, count=len(pairs))
    total = prompt + np.fromiter((len(t) for _, t in pairs), dtype=np.int64, count=len(pairs))
    col = np.arange(int(total.max()))
    mask = col < total[:, None]
    ids = np.full(mask.shape, pad, dtype=np.int64)
    ids[mask] = [i for p, t in pairs for i in (*p, *t)]
    labels = np.where(mask & (col >= prompt[:, None]), ids, IGNORE)
    return torch.from_numpy(ids), torch.from_numpy(labels), torch.from_numpy(mask.astype(np.int64))


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-token targets of a padded batch and where they are answer tokens: position
    i predicts labels[:, i + 1]."""
    target = labels[:, 1:]
    return target, target != IGNORE


def mean_per_row(ce: torch.Tensor, keep: torch.Tensor) -> np.ndarray:
    """The mean of each row's token losses, from `ce`: the losses at the `keep`
    positions, flattened row by row (0 for a row with no answer tokens)."""
    counts = keep.sum(1).tolist()
    ends = np.cumsum(counts)
    mean = np.zeros(len(counts))
    for row, (end, n) in enumerate(zip(ends, counts)):
        if n:
            mean[row] = float(ce[end - n: end].mean())
    return mean


BUCKET = 16  # batches whose rows are sorted by length together


def bucketed(rng: random.Random, lengths: list[int], batch_size: int) -> list[list[int]]:
    """One epoch of batches: a shuffled order cut into spans of BUCKET batches, each span
    sorted by length before it is cut into batches, and the batches shuffled. Rows of
    similar length share a batch, so padding (which costs as much as real tokens) stays
    small, while every epoch still sees every row once in a seeded random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * BUCKET
    out = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start: start + span], key=lambda i: lengths[i])
        out += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out
