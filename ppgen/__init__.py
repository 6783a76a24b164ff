"""ppgen: one Pyro/NumPyro program, pluggable estimators, one Fit, ArviZ out."""

from ppgen import callbacks, data, distributions, inference
from ppgen.analysis.evaluate import evaluate
from ppgen.fit import fit
from ppgen.persist import load
from ppgen.program import Program
from ppgen.result import Fit

__version__ = "0.1.0"

__all__ = [
    "fit",
    "load",
    "evaluate",
    "Fit",
    "Program",
    "callbacks",
    "data",
    "distributions",
    "inference",
    "__version__",
]
