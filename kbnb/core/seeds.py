"""Seeding every random number generator kbnb uses."""
from __future__ import annotations

import json
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list of distinct non-negative ints (an int is one seed).

    Raises ValueError naming the parameter and what is allowed."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = [int(seeds)]
    if isinstance(seeds, str):
        try:
            seeds = json.loads(seeds)
        except ValueError:
            raise ValueError(f"seeds={seeds!r}: give a list of integers, e.g. [0, 1, 2]") from None
        return check_seeds(seeds)
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"seeds={seeds!r}: give a non-empty list of integers, e.g. [0, 1, 2]")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds={list(seeds)!r}: every seed must be a non-negative integer")
        out.append(int(s))
    if len(set(out)) != len(out):
        raise ValueError(f"seeds={out}: seeds must be distinct (a repeated seed repeats a run)")
    return out
