"""Plots of a fit written straight to PNG files: trace, posterior, loss history, samples."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.analysis.latent import image_grid
from ppgen.io import atomic_write

if TYPE_CHECKING:
    import arviz as az

    from ppgen.result import Fit

__all__ = ["plot_trace", "plot_posterior", "plot_loss", "plot_samples"]

# ArviZ warns (and truncates) past ``plot.max_subplots``; choose variables to stay below it.
MAX_TRACE_ROWS = 12
MAX_POSTERIOR_PANELS = 24


def _idata(fit_or_idata: Fit | az.InferenceData) -> az.InferenceData:
    if hasattr(fit_or_idata, "to_arviz"):
        return fit_or_idata.to_arviz(posterior_predictive=False, log_likelihood=False)
    if hasattr(fit_or_idata, "groups"):
        return fit_or_idata
    raise TypeError(
        "`fit_or_idata` must be a ppgen Fit or an arviz.InferenceData; got "
        f"{type(fit_or_idata).__name__}."
    )


def _posterior_vars(idata: az.InferenceData, limit: int, per_element: bool) -> list[str]:
    """Names of posterior variables to plot, in order, keeping the panel count under ``limit``.

    ``per_element``: a vector variable takes one panel per element (``plot_posterior``) rather
    than one row (``plot_trace`` with ``compact=True``).
    """
    if "posterior" not in idata.groups():
        raise ValueError(
            "The fit has no `posterior` group (no latent sites, e.g. an MLE fit); there are no "
            "draws to plot. Use plot_loss for optimisation runs."
        )
    post = idata.posterior
    chosen, used = [], 0
    for name, var in post.data_vars.items():
        size = math.prod(s for d, s in var.sizes.items() if d not in ("chain", "draw"))
        cost = size if per_element else 1
        if used + cost <= limit:
            chosen.append(str(name))
            used += cost
    return chosen or [str(next(iter(post.data_vars)))]


@contextlib.contextmanager
def _quiet_arviz() -> Iterator[None]:
    """Silence warnings ArviZ itself causes, which a user cannot act on."""
    with warnings.catch_warnings():
        # more panels than ``plot.max_subplots``: ArviZ truncates (only with explicit var_names)
        warnings.filterwarnings("ignore", message=".*max_subplots.*", category=UserWarning)
        # ArviZ 0.23 calls matplotlib's deprecated ``normalize_kwargs(kw, dict)`` (mpl >= 3.11)
        warnings.filterwarnings(
            "ignore", message=".*alias_mapping to normalize_kwargs.*", category=DeprecationWarning
        )
        yield


def _save(fig: Any, path: str | os.PathLike, dpi: int) -> None:
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _figure(axes: Any) -> Any:
    return np.asarray(axes).ravel()[0].get_figure()


def plot_trace(
    fit_or_idata: Fit | az.InferenceData,
    path: str | os.PathLike,
    *,
    var_names: Sequence[str] | None = None,
    dpi: int = 100,
) -> None:
    """Write ArviZ's trace plot (density and draws per chain, one row per variable) to a PNG.

    Built on :func:`arviz.plot_trace` with ``compact=True``; by default the first posterior
    variables that fit in 12 rows are shown. The file is written atomically and the figure
    closed.

    Arguments:
        fit_or_idata: a :class:`~ppgen.result.Fit` or an ``arviz.InferenceData``.
        path: the PNG file to write.
        var_names: posterior variables to plot (default: as many as fit in 12 rows).
        dpi: resolution.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen, tempfile, os
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("obs", 5):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=10))
        >>> path = os.path.join(tempfile.mkdtemp(), "trace.png")
        >>> plot_trace(fit, path)
        >>> from pathlib import Path
        >>> Path(path).read_bytes()[:4] == b"\\x89PNG"
        True
    """
    import arviz as az

    idata = _idata(fit_or_idata)
    names = list(var_names) if var_names else _posterior_vars(idata, MAX_TRACE_ROWS, False)
    with _quiet_arviz():
        axes = az.plot_trace(idata, var_names=names, compact=True, show=False)
    fig = _figure(axes)
    fig.tight_layout()
    _save(fig, path, dpi)


def plot_posterior(
    fit_or_idata: Fit | az.InferenceData,
    path: str | os.PathLike,
    *,
    var_names: Sequence[str] | None = None,
    hdi_prob: float = 0.94,
    dpi: int = 100,
) -> None:
    """Write ArviZ's posterior plot (marginal density, mean and HDI per element) to a PNG.

    Built on :func:`arviz.plot_posterior`; by default the first posterior variables whose
    elements fit in 24 panels are shown. The file is written atomically and the figure closed.

    Arguments:
        fit_or_idata: a :class:`~ppgen.result.Fit` or an ``arviz.InferenceData``.
        path: the PNG file to write.
        var_names: posterior variables to plot (default: as many as fit in 24 panels).
        hdi_prob: probability mass of the highest-density interval drawn.
        dpi: resolution.

    Example:
        >>> import arviz as az, tempfile, os
        >>> idata = az.from_dict(posterior={"mu": np.random.default_rng(0).normal(size=(2, 50))})
        >>> path = os.path.join(tempfile.mkdtemp(), "posterior.png")
        >>> plot_posterior(idata, path)
        >>> os.path.getsize(path) > 1000
        True
    """
    import arviz as az

    idata = _idata(fit_or_idata)
    names = list(var_names) if var_names else _posterior_vars(idata, MAX_POSTERIOR_PANELS, True)
    with _quiet_arviz():
        axes = az.plot_posterior(idata, var_names=names, hdi_prob=hdi_prob, show=False)
    fig = _figure(axes)
    fig.tight_layout()
    _save(fig, path, dpi)


def plot_loss(
    fit_or_history: Fit | Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    key: str = "loss",
    dpi: int = 100,
) -> None:
    """Write the optimisation history (loss per step, e.g. the negative ELBO) to a PNG.

    Raw values are drawn faintly with a moving average of window ``max(1, n // 50)`` on top;
    the y-axis is logarithmic when every value is positive and they span more than two
    decades.

    Arguments:
        fit_or_history: a :class:`~ppgen.result.Fit` of an SVI/MLE run, or its ``history``
            dict.
        path: the PNG file to write.
        key: the history entry to draw.
        dpi: resolution.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "loss.png")
        >>> plot_loss({"loss": [10.0 / (t + 1) for t in range(200)]}, path)
        >>> os.path.getsize(path) > 1000
        True
    """
    import matplotlib.pyplot as plt

    history = getattr(fit_or_history, "history", fit_or_history)
    values = np.asarray(history.get(key, []) if isinstance(history, Mapping) else [], float)
    if values.size == 0:
        raise ValueError(
            f"The fit has no `{key}` history to plot (MCMC fits have none); available: "
            f"{sorted(history) if isinstance(history, Mapping) else []}."
        )
    steps = np.arange(1, values.size + 1)
    window = max(1, values.size // 50)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, values, color="C0", alpha=0.35, lw=0.8, label=key)
    ax.plot(steps[window - 1 :], smooth, color="C0", lw=1.8, label=f"moving average ({window})")
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path, dpi)


def _image_shape(shape: tuple[int, ...]) -> bool:
    if len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3)):
        return True
    return len(shape) == 1 and shape[0] >= 16 and math.isqrt(shape[0]) ** 2 == shape[0]


def samples_figure(items: np.ndarray) -> Any:
    """A matplotlib figure of generated items (``(n, *item_shape)``): a scatter plot of 2-D
    points, or an image grid of images (``(H, W)``, ``(C, H, W)`` with C = 1 or 3, or a square
    number of pixels such as digits' 64). Anything else is a ``ValueError``.

    Example:
        >>> fig = samples_figure(np.zeros((4, 2)))
        >>> fig.axes[0].collections[0].get_offsets().shape
        (4, 2)
        >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    import matplotlib.pyplot as plt

    items = np.asarray(items, float)
    shape = tuple(items.shape[1:])
    if shape == (2,):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(items[:, 0], items[:, 1], s=6, alpha=0.6)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    elif _image_shape(shape):
        grid = image_grid(items)
        fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / max(grid.shape[1], 1)))
        ax.imshow(grid if grid.ndim == 2 else np.moveaxis(grid, 0, -1), cmap="gray")
        ax.axis("off")
    else:
        raise ValueError(
            f"Cannot draw items of shape {shape} as a PNG (2-D points or images only); write "
            "them to a .npz file instead."
        )
    fig.tight_layout()
    return fig


def plot_samples(items: np.ndarray, path: str | os.PathLike, *, dpi: int = 100) -> None:
    """Write generated items (``(n, *item_shape)``) to a PNG (:func:`samples_figure`: a scatter
    plot of 2-D points or an image grid). Anything else is refused (save it as ``.npz``).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "digits.png")
        >>> plot_samples(np.random.default_rng(0).random((16, 64)), path)
        >>> os.path.getsize(path) > 500
        True
    """
    _save(samples_figure(items), path, dpi)
