"""Analysis: the ArviZ hand-off, metrics and plots."""

from ppgen.analysis.arviz import site_dims, to_inference_data

__all__ = ["to_inference_data", "site_dims"]
