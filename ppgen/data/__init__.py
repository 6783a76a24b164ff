"""Built-in datasets and local-file loaders."""

from ppgen.data.builtin import DATASETS, load

__all__ = ["DATASETS", "load"]
