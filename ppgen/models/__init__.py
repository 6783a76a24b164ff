"""The model zoo: one file per family."""

from ppgen.models._base import Model, deterministic
from ppgen.models.hierarchical import EightSchools
from ppgen.models.mixture import GaussianMixture
from ppgen.models.regression import LinearRegression, LogisticRegression

__all__ = [
    "Model",
    "deterministic",
    "EightSchools",
    "GaussianMixture",
    "LinearRegression",
    "LogisticRegression",
]
