"""Estimators: SVI, NUTS/HMC, MLE; the base classes third-party estimators implement."""

from ppgen.inference._base import REGISTRY, Estimator, FitContext, OptimEstimator, register
from ppgen.inference._loop import EarlyStopping, StopTraining
from ppgen.inference.mcmc import HMC, MCMC, NUTS
from ppgen.inference.mle import MLE
from ppgen.inference.svi import SVI

__all__ = [
    "Estimator",
    "OptimEstimator",
    "FitContext",
    "register",
    "REGISTRY",
    "EarlyStopping",
    "StopTraining",
    "SVI",
    "NUTS",
    "HMC",
    "MCMC",
    "MLE",
]
