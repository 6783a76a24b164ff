"""Built-in datasets and local-file loaders."""

from ppgen.data.builtin import DATASETS, load
from ppgen.data.files import load_data

__all__ = ["DATASETS", "load", "load_data"]
