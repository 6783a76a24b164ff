"""What both adversarial engines read from a program's data: the matched key, covariates and
PacGAN's packing of the discriminator's inputs."""

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
    "pack",
    "check_pack",
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


def pack(x: Any, m: int) -> Any:
    """PacGAN's packing: ``B`` data to ``B // m`` rows, each ``m`` flattened data side by side.

    Row ``j`` is the concatenation of data ``j*m, ..., j*m + m - 1``, each flattened (shape
    ``(B // m, m * prod(x.shape[1:]))``); a remainder of fewer than ``m`` data (the short last
    minibatch of an epoch) is dropped. ``m = 1`` returns ``x`` unchanged. Works on numpy,
    torch and JAX arrays alike (a reshape), integer labels included.

    Example:
        >>> x = np.arange(12).reshape(6, 2)
        >>> pack(x, 2).tolist()
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
        >>> pack(np.arange(5), 2).tolist()  # scalar data; the odd one out is dropped
        [[0, 1], [2, 3]]
    """
    if m == 1:
        return x
    n = (x.shape[0] // m) * m
    return x[:n].reshape(n // m, -1)


def check_pack(m: int, rows: int, batch_size: int | None) -> None:
    """Refuse, before work, a full batch of ``rows`` data that ``pack=m`` does not divide, or
    minibatches whose short last one (``rows % batch_size`` data) packs to nothing."""
    if m == 1:
        return
    if batch_size is not None and batch_size < rows:  # batch_size % m: checked at construction
        last = rows % batch_size
        if 0 < last < m:
            raise EstimatorError(
                f"With `batch_size={batch_size}` the last minibatch of each epoch holds "
                f"{last} of the N={rows} data, fewer than `pack={m}`: it would give the "
                f"discriminator no input. Pass a batch_size (a multiple of {m}) that leaves no "
                f"remainder or one of at least {m} data."
            )
        return
    if rows % m:
        raise EstimatorError(
            f"`pack={m}` needs the batch size divisible by {m}, but the full batch has "
            f"{rows} data (no `batch_size` below N={rows} is set). Pass a `batch_size` "
            f"divisible by {m} (e.g. {max(m, rows // m * m)}), or a data set whose size is."
        )


def check_critic(
    call: Callable[..., Any], x: Any, context: list, site: str, covs: list, m: int = 1
) -> None:
    """Run the critic on two (packed) inputs: a wrong input size or output shape fails here,
    named with the input width the critic must accept."""
    x, context = pack(x[: 2 * m], m), [pack(c[: 2 * m], m) for c in context]
    width = math.prod(tuple(x.shape[1:]))
    widths = [math.prod(tuple(c.shape[1:])) for c in context]
    try:
        out = call(x, *context)
    except Exception as e:
        if m == 1:
            what = (
                f"The discriminator fails on the data of site `{site}` (datum shape "
                f"{tuple(x.shape[1:])}, input width {width}"
                + (f", covariates {covs} of widths {widths}" if covs else "")
            )
        else:
            what = (
                f"The discriminator fails on the packed data of site `{site}`: with `pack={m}` "
                f"it sees {m} data side by side, inputs of shape (n, {width}) ({m} flattened "
                "data)"
                + (f", covariates {covs} packed the same way to widths {widths}" if covs else "")
            )
        raise EstimatorError(
            f"{what}: {type(e).__name__}: {e}. Size its input to the data (input width "
            f"{width}), or leave `discriminator=None` for a default sized from the data."
        ) from e
    if tuple(out.shape) not in ((len(x),), (len(x), 1)):
        raise EstimatorError(
            "The discriminator must return one number per "
            + ("sample" if m == 1 else f"packed input of {m} samples")
            + f", shape ({len(x)},) or ({len(x)}, 1) for {len(x)} inputs; it returned "
            f"{tuple(out.shape)}."
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
