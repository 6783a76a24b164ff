"""Estimators: SVI, NUTS/HMC, MLE, Exact, Prior, Adversarial, ALI, AVB, NCE, contrastive
divergence, score matching; their base classes."""

import warnings as _warnings

from ppgen.capabilities import ExactPosterior  # noqa: F401 - re-exported (was here)
from ppgen.errors import ConvergenceWarning
from ppgen.inference._base import REGISTRY, Estimator, FitContext, OptimEstimator, register
from ppgen.inference._loop import EarlyStopping, StopTraining
from ppgen.inference.aae import AAE
from ppgen.inference.adversarial import Adversarial
from ppgen.inference.ali import ALI, BiGAN
from ppgen.inference.avb import AVB
from ppgen.inference.contrastive import (
    NCE,
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
    ScoreMatching,
)
from ppgen.inference.exact import Exact
from ppgen.inference.guides import Amortized, FlowGuide, ImplicitAmortized
from ppgen.inference.mcmc import HMC, MCMC, NUTS
from ppgen.inference.mle import MLE
from ppgen.inference.objectives import KLWarmup, ReparamELBO
from ppgen.inference.optim import Optim
from ppgen.inference.prior import Prior
from ppgen.inference.runners import DDP, JaxDevices, Local, Runner
from ppgen.inference.svi import SVI
from ppgen.inference.vaegan import VAEGAN

__all__ = [
    "Estimator",
    "OptimEstimator",
    "FitContext",
    "register",
    "REGISTRY",
    "EarlyStopping",
    "StopTraining",
    "Optim",
    "Runner",
    "DDP",
    "JaxDevices",
    "Local",
    "SVI",
    "NUTS",
    "HMC",
    "MCMC",
    "MLE",
    "ConvergenceWarning",
    "Exact",
    "Prior",
    "Adversarial",
    "ALI",
    "BiGAN",
    "AVB",
    "AAE",
    "VAEGAN",
    "NCE",
    "ContrastiveDivergence",
    "PersistentContrastiveDivergence",
    "ScoreMatching",
    "Amortized",
    "ImplicitAmortized",
    "FlowGuide",
    "ReparamELBO",
    "KLWarmup",
]

_RENAMED = {"FastSVI": ("SVI", SVI), "VAEELBO": ("ReparamELBO", ReparamELBO)}


def __getattr__(name: str) -> object:
    """Names of earlier releases, kept for one release with a DeprecationWarning."""
    if name in _RENAMED:
        new, obj = _RENAMED[name]
        _warnings.warn(
            f"`ppgen.inference.{name}` is deprecated; use `ppgen.inference.{new}` (SVI picks "
            "the fastest exact path itself).",
            DeprecationWarning,
            stacklevel=2,
        )
        return obj
    raise AttributeError(f"module 'ppgen.inference' has no attribute {name!r}")
