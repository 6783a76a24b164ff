"""Small data the example programs share (no downloads: the examples' own loaders read
files; these stand in for them)."""

from __future__ import annotations

import numpy as np

__all__ = ["tone_sequences"]


def tone_sequences(num: int, length: int, seed: int = 0) -> np.ndarray:
    """``(num, length, 3)`` binary "piano rolls" of a two-state HMM standing in for the
    polyphonic music data of Pyro's ``hmm.py`` / NumPyro's ``hmm_enum.py``: the hidden state
    switches with probability 0.1 a step; state 0 plays tone 0, state 1 tones 1 and 2 (each
    with probability 0.9; 0.1 otherwise)."""
    rng = np.random.default_rng(seed)
    seqs, emit = (
        np.zeros((num, length, 3), np.float32),
        np.array([[0.9, 0.1, 0.1], [0.1, 0.9, 0.9]]),
    )
    for i in range(num):
        s = i % 2
        for t in range(length):
            s = s if rng.random() < 0.9 else 1 - s
            seqs[i, t] = rng.random(3) < emit[s]
    return seqs
