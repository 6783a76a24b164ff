"""Normalizing flows that return Pyro distributions: one factory, one distribution class."""

from ppgen.flows.autoregressive import IAF, MAF, NSF
from ppgen.flows.builders import FLOWS, FlowKind, PlanarFlow, RadialFlow, build_flow
from ppgen.flows.continuous import FFJORD, CNFTransform
from ppgen.flows.coupling import NICE, Glow, RealNVP
from ppgen.flows.distribution import Flow, FlowDistribution, StandardNormal
from ppgen.flows.transforms import (
    DiagonalScale,
    LULinear,
    MaskedAffineAutoregressiveTransform,
    OneByOneConvolution,
    PlanarTransform,
    RadialTransform,
)

__all__ = [
    "FFJORD",
    "FLOWS",
    "IAF",
    "MAF",
    "NICE",
    "NSF",
    "CNFTransform",
    "DiagonalScale",
    "Flow",
    "FlowDistribution",
    "FlowKind",
    "Glow",
    "LULinear",
    "MaskedAffineAutoregressiveTransform",
    "OneByOneConvolution",
    "PlanarFlow",
    "PlanarTransform",
    "RadialFlow",
    "RadialTransform",
    "RealNVP",
    "StandardNormal",
    "build_flow",
]
