"""Built-in datasets and local-file loaders."""

from ppgen.data.builtin import DATASETS, load
from ppgen.data.files import load_data
from ppgen.data.mnist import load_mnist

__all__ = ["DATASETS", "load", "load_data", "load_mnist"]
