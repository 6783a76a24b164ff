"""Type aliases shared across ppgen."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

Backend = Literal["pyro", "numpyro"]
ArrayLike = Any  # numpy array, torch tensor or jax array
Data = Mapping[str, ArrayLike]
NumpyDict = dict[str, np.ndarray]
Callback = Callable[[int, dict[str, float]], Any]
