"""Analysis: the ArviZ hand-off, metrics and plots."""

from ppgen.analysis.arviz import site_dims, to_inference_data
from ppgen.analysis.evaluate import Evaluation, evaluate
from ppgen.analysis.metrics import (
    align_labels,
    hungarian_match,
    npmi_coherence,
    perplexity,
    relabel,
    top_words,
)
from ppgen.analysis.partition import LogPartition, log_partition, rbm_log_likelihood

__all__ = [
    "to_inference_data",
    "site_dims",
    "evaluate",
    "Evaluation",
    "align_labels",
    "hungarian_match",
    "npmi_coherence",
    "perplexity",
    "relabel",
    "top_words",
    "log_partition",
    "LogPartition",
    "rbm_log_likelihood",
]
