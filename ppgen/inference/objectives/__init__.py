"""Objectives: ELBOs by name on either backend and the reparameterised ELBO with KL warm-up."""

from ppgen.inference.objectives.elbo import ELBOS, ElboName, make_elbo
from ppgen.inference.objectives.reparam import KLWarmup, ReparamELBO

__all__ = ["ELBOS", "ElboName", "make_elbo", "ReparamELBO", "KLWarmup"]
