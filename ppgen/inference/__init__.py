"""Estimators: SVI, NUTS/HMC, MLE; the base classes third-party estimators implement."""

from ppgen.inference._base import REGISTRY, Estimator, FitContext, OptimEstimator, register
from ppgen.inference._loop import EarlyStopping, StopTraining
from ppgen.inference.exact import Exact, ExactPosterior  # noqa: F401
from ppgen.inference.fast_svi import FastSVI
from ppgen.inference.guides.amortized import Amortized, FlowGuide
from ppgen.inference.mcmc import HMC, MCMC, NUTS
from ppgen.inference.mle import MLE
from ppgen.inference.objectives.reparam import KLWarmup, ReparamELBO
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
    "Amortized",
    "FlowGuide",
    "FastSVI",
    "ReparamELBO",
    "KLWarmup",
]
