"""Guides: autoguides by name, amortised encoder guides and normalizing-flow posteriors."""

from ppgen.inference.guides.amortized import Amortized
from ppgen.inference.guides.auto import AUTOGUIDES, GuideName, make_guide
from ppgen.inference.guides.flow import FlowGuide
from ppgen.inference.guides.implicit import ImplicitAmortized

__all__ = ["Amortized", "FlowGuide", "ImplicitAmortized", "AUTOGUIDES", "GuideName", "make_guide"]
