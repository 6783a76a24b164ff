"""What both adversarial engines read from a program's data: the matched key and covariates."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError

__all__ = [
    "data_key",
    "covariate_keys",
    "class_counts",
    "input_features",
    "check_critic",
    "info_term",
]


def data_key(info: Any, site: str) -> str:
    """The data entry that holds the observed value of ``site``."""
    keys = [k for k, s in info.obs_keys.items() if s == site]
    if not keys:
        raise EstimatorError(
            f"The observed site `{site}` takes its value from no data entry; pass its data as "
            f"a keyword argument of the program (e.g. `obs={site}`)."
        )
    return keys[0]


def covariate_keys(data_np: Mapping[str, Any], info: Any, site: str) -> list[str]:
    """Data entries that feed no observed site and have one row per datum of ``site``."""
    n = np.shape(data_np[data_key(info, site)])[0] if np.ndim(data_np[data_key(info, site)]) else 0
    out = []
    for k, v in data_np.items():
        if k in info.obs_keys or v is None or isinstance(v, str | bool | int | float):
            continue
        shape = np.shape(v)
        if shape and shape[0] == n and np.asarray(v).dtype.kind in "biuf":
            out.append(k)
    return out


def class_counts(data_np: Mapping[str, Any], keys: list[str]) -> dict[str, int]:
    """Number of classes of each integer covariate (for one-hot inputs of default critics)."""
    out = {}
    for k in keys:
        v = np.asarray(data_np[k])
        if v.dtype.kind in "biu":
            if v.size and v.min() < 0:
                raise EstimatorError(
                    f"Integer covariate `{k}` has negative values; labels must be 0..K-1 for "
                    "the default discriminator's one-hot input (or pass your own "
                    "`discriminator=`)."
                )
            out[k] = int(v.max()) + 1 if v.size else 1
    return out


def input_features(data_np: Mapping[str, Any], key: str, covs: list[str], classes: dict) -> int:
    """Width of the default critic's input: flattened datum plus covariates (one-hot ints)."""
    width = math.prod(np.shape(data_np[key])[1:])
    for k in covs:
        width += classes[k] if k in classes else math.prod(np.shape(data_np[k])[1:])
    return int(width)


def check_critic(call: Callable[..., Any], x: Any, context: list, site: str, covs: list) -> None:
    """Run the critic on two data points: a wrong input size or output shape fails here, named."""
    x, context = x[:2], [c[:2] for c in context]
    try:
        out = call(x, *context)
    except Exception as e:
        raise EstimatorError(
            f"The discriminator fails on the data of site `{site}` (datum shape "
            f"{tuple(x.shape[1:])}"
            + (f", covariates {covs}" if covs else "")
            + f"): {type(e).__name__}: {e}. Size its input to the data, or leave "
            "`discriminator=None` for a default sized from the data."
        ) from e
    if tuple(out.shape) not in ((len(x),), (len(x), 1)):
        raise EstimatorError(
            f"The discriminator must return one number per sample, shape ({len(x)},) or "
            f"({len(x)}, 1) for {len(x)} samples; it returned {tuple(out.shape)}."
        )


def info_term(
    nodes: Mapping[str, Any], sites: list[str], n: int, weights: Mapping[str, float]
) -> tuple[Any, Any]:
    r"""InfoGAN's bound :math:`\frac1n\sum_i \log q(c_i \mid x_i)` from a trace of the Q guide.

    ``nodes`` are the guide's trace sites (Pyro's ``trace.nodes`` or NumPyro's trace), run
    with the codes conditioned to the values the generator used; ``n`` is the batch size.
    Returns ``(weighted, bound)``: the sum over code sites weighted by ``weights`` (the
    objective's term) and unweighted (the bound reported as ``info``).

    Example:
        >>> import torch, pyro, pyro.distributions as dist
        >>> def q(x):
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("c", dist.Categorical(logits=torch.zeros(len(x), 4)))
        >>> cond = pyro.poutine.condition(q, data={"c": torch.zeros(3, dtype=torch.long)})
        >>> tr = pyro.poutine.trace(cond).get_trace(torch.zeros(3, 2))
        >>> weighted, bound = info_term(tr.nodes, ["c"], 3, {"c": 0.5})
        >>> round(float(bound), 4), round(float(weighted), 4)  # log(1/4), half of it
        (-1.3863, -0.6931)
    """
    weighted = bound = 0.0
    for name in sites:
        node = nodes.get(name)
        if node is None or node.get("type") != "sample":
            raise EstimatorError(
                f"InfoGAN's Q network (`guide=`) does not sample the info site `{name}`; add "
                f"`sample({name!r}, ...)` with the code's distribution given the generated "
                "data to the guide."
            )
        term = node["fn"].log_prob(node["value"]).sum() / n
        weighted = weighted + weights[name] * term
        bound = bound + term
    return weighted, bound
