"""Latent-variable analysis of a fit: encode, reconstruct, IWAE log-likelihood, grids, ArviZ."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro.poutine as poutine
import torch

from ppgen.errors import DataError
from ppgen.inference.objectives.reparam import ReparamELBO, lean_passes, log_weights

if TYPE_CHECKING:
    import arviz as az

    from ppgen.result import Fit

__all__ = [
    "encode",
    "reconstruct",
    "elbo",
    "iwae_log_likelihood",
    "sample_grid",
    "traversal",
    "latent_idata",
    "image_grid",
]


def _guide(fit: Fit) -> Any:
    g = getattr(fit.estimator, "guide", None)
    if g is not None and callable(g) and not isinstance(g, str | type):
        return fit.program._wrap(g)
    if fit.program.guide is None:
        raise DataError("This fit has no guide program to encode with (use an SVI fit).")
    return fit.program.guide


def _native(fit: Fit, data: Mapping[str, Any]) -> dict[str, Any]:
    fit.program.check_keys(data)
    return fit.program.ops.native(fit.program.check_values(data), fit.device)


def _batches(native: Mapping[str, Any], n: int, size: int) -> Any:
    for i in range(0, n, size):
        yield {
            k: v[i : i + size] if torch.is_tensor(v) and v.dim() and v.shape[0] == n else v
            for k, v in native.items()
        }


def _size(fit: Fit, native: Mapping[str, Any]) -> int:
    key = next(iter(fit.info.obs_keys), None)
    if key is None or key not in native:
        raise DataError("Pass the observations (the data keys feeding `obs=`) in `data`.")
    return int(native[key].shape[0])


@torch.no_grad()
def encode(fit: Fit, data: Mapping[str, Any], *, batch_size: int = 1024) -> dict[str, np.ndarray]:
    r"""Posterior means :math:`\mathbb E_q[z_n \mid x_n]` of the per-datum latents.

    Returns ``{site: array (N, *shape)}`` for every latent in the data plate; the mean is
    estimated from 64 draws when the posterior (a flow) has no closed form.

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.models.vae import VAE
        >>> x = (np.random.default_rng(0).random((30, 6)) > 0.5).astype(float)
        >>> est = ppgen.inference.SVI(steps=2, num_draws=2)
        >>> fit = ppgen.fit(VAE(6, 2, hidden_features=(8,)), {"x": x}, est)
        >>> encode(fit, {"x": x})["z"].shape
        (30, 2)
    """
    native = _native(fit, data)
    n = _size(fit, native)
    guide = _guide(fit)
    fit.model_callable()
    out: dict[str, list[np.ndarray]] = {}
    with fit.program.ops.device_context(fit.device):
        for batch in _batches(native, n, batch_size):
            tr = poutine.trace(guide).get_trace(**batch)
            for name, s in tr.nodes.items():
                if s["type"] != "sample" or s["is_observed"] or s["infer"].get("is_auxiliary"):
                    continue
                if type(s["fn"]).__name__ == "_Subsample":
                    continue
                fn = s["fn"]
                if not fn.batch_shape or fn.batch_shape[0] != s["value"].shape[0]:
                    continue
                try:
                    m = fn.mean
                    if not torch.isfinite(m).all():
                        raise NotImplementedError
                except NotImplementedError:
                    m = fn.sample((64,)).mean(0)
                out.setdefault(name, []).append(m.cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@torch.no_grad()
def reconstruct(
    fit: Fit, data: Mapping[str, Any], *, batch_size: int = 1024
) -> dict[str, np.ndarray]:
    """Means of :math:`p(x \\mid \\hat z)` at the posterior means :math:`\\hat z` (per datum)."""
    native = _native(fit, data)
    n = _size(fit, native)
    z = encode(fit, data, batch_size=batch_size)
    model = fit.model_callable()
    obj = fit.program.obj
    out: dict[str, list[np.ndarray]] = {}
    with fit.program.ops.device_context(fit.device):
        for i, batch in enumerate(_batches(native, n, batch_size)):
            vals = {
                k: torch.as_tensor(v[i * batch_size : (i + 1) * batch_size]) for k, v in z.items()
            }
            vals = {k: v.to(next(iter(native.values())).device) for k, v in vals.items()}
            tr = poutine.trace(poutine.condition(model, data=vals)).get_trace(**batch)
            for name in fit.info.observed:
                fn = tr.nodes[name]["fn"]
                m = obj.mean(fn) if hasattr(obj, "mean") and callable(obj.mean) else fn.mean
                out.setdefault(name, []).append(m.cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@torch.no_grad()
def iwae_log_likelihood(
    fit: Fit,
    data: Mapping[str, Any],
    *,
    num_particles: int = 1000,
    chunk: int = 100,
    batch_size: int = 256,
) -> np.ndarray:
    r"""Per-datum importance-weighted estimate of :math:`\log p(x_n)` with ``K`` particles.

    .. math:: \hat{\mathcal L}_K(x_n) = \log \frac1K \sum_{k=1}^K
        \frac{p(x_n, z_k)}{q(z_k \mid x_n)}, \quad z_k \sim q(\cdot \mid x_n)

    A lower bound in expectation that tightens as ``K`` grows (``K = 1`` is the ELBO). The
    ``K`` particles run ``chunk`` at a time over ``batch_size`` data, so memory stays bounded
    (``chunk * batch_size`` particles) whatever ``K``. Every latent must sit in the data plate.

    References:
        Burda et al., Importance Weighted Autoencoders, arXiv:1509.00519.

    Returns:
        array ``(N,)`` of per-datum estimates (sum for the dataset's log-likelihood).
    """
    native = _native(fit, data)
    n = _size(fit, native)
    guide, model = _guide(fit), fit.model_callable()
    nest = max(fit.info.max_plate_nesting, 1)
    out = []
    with fit.program.ops.device_context(fit.device):
        for batch in _batches(native, n, batch_size):
            parts = []
            for start in range(0, num_particles, chunk):
                k = min(chunk, num_particles - start)
                m, g = lean_passes(model, guide, batch, max(k, 2), nest)
                w, _ = log_weights(m, g, nest)
                w = w.reshape(w.shape[0], -1)[:k]
                parts.append(torch.logsumexp(w, 0))
            lse = torch.logsumexp(torch.stack(parts), 0) - math.log(num_particles)
            out.append(lse.cpu().numpy())
    res = np.concatenate(out)
    if res.shape != (n,):
        raise DataError(
            f"Per-datum weights have shape {res.shape}, expected ({n},): every latent must sit "
            "in the data plate for a per-datum IWAE estimate."
        )
    return res


@torch.no_grad()
def elbo(
    fit: Fit, data: Mapping[str, Any], *, num_particles: int = 10, batch_size: int = 256
) -> float:
    """Mean per-datum ELBO on ``data`` (e.g. a test set), averaged over ``num_particles`` draws."""
    native = _native(fit, data)
    n = _size(fit, native)
    guide, model = _guide(fit), fit.model_callable()
    total = 0.0
    with fit.program.ops.device_context(fit.device):
        obj = ReparamELBO(
            "trace", num_particles, max_plate_nesting=max(fit.info.max_plate_nesting, 1)
        )
        for batch in _batches(native, n, batch_size):
            total -= float(obj.differentiable_loss(model, guide, **batch))
    return total / n


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile ``(N, H, W)`` or ``(N, C, H, W)`` images into one array (vectors: squares or rows).

    Example:
        >>> image_grid(np.zeros((6, 4, 4)), ncols=3).shape
        (9, 14)
    """
    a = np.asarray(images, dtype=float)
    if a.ndim == 2:
        side = int(round(math.sqrt(a.shape[1])))
        a = a.reshape(-1, side, side) if side * side == a.shape[1] else a[:, None, :]
    if a.ndim == 4:
        a = a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
    n, h, w = a.shape[:3]
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    grid = np.zeros((nrows * (h + pad) - pad, ncols * (w + pad) - pad) + a.shape[3:])
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = a[i]
    return grid


def sample_grid(model: Any, n: int = 64, path: str | None = None, **kwargs: Any) -> np.ndarray:
    """``n`` generated images from a zoo model's ``sample``, tiled; saved as PNG when ``path``."""
    images = model.sample(n, **kwargs).detach().cpu().numpy()
    grid = image_grid(images)
    if path is not None:
        _save_png(grid, path)
    return grid


@torch.no_grad()
def traversal(
    model: Any,
    z: np.ndarray | torch.Tensor,
    dims: Sequence[int] | None = None,
    *,
    values: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    path: str | None = None,
) -> np.ndarray:
    """Decoder means as each latent dim in ``dims`` sweeps ``values`` around the code ``z``.

    Returns images ``(len(dims), len(values), *x_shape)``; saved as a PNG grid when ``path``.
    """
    ref = next(model.parameters())
    z0 = torch.as_tensor(np.asarray(z), dtype=ref.dtype, device=ref.device).reshape(-1)
    dims = list(range(z0.shape[0])) if dims is None else list(dims)
    rows = []
    for d in dims:
        zs = z0.repeat(len(values), 1)
        zs[:, d] = zs[:, d] + torch.as_tensor(values, dtype=ref.dtype, device=ref.device)
        rows.append(model.mean(model.decode(zs)).cpu().numpy())
    out = np.stack(rows)
    if path is not None:
        _save_png(image_grid(out.reshape(-1, *out.shape[2:]), ncols=len(values)), path)
    return out


def latent_idata(
    fit: Fit, data: Mapping[str, Any], subset: Sequence[int], *, num_draws: int = 200
) -> az.InferenceData:
    """ArviZ data with the global latents' draws and the local latents of data ``subset``.

    Local sites get dims ``(chain, draw, datum, ...)`` with the datum coordinate = ``subset``.
    """
    import arviz as az

    native = _native(fit, data)
    n = _size(fit, native)
    idx = torch.as_tensor(np.asarray(subset, dtype=np.int64))
    sub = {
        k: v[idx.to(v.device)] if torch.is_tensor(v) and v.dim() and v.shape[0] == n else v
        for k, v in native.items()
    }
    guide = _guide(fit)
    fit.model_callable()
    post: dict[str, np.ndarray] = {}
    with torch.no_grad(), fit.program.ops.device_context(fit.device):
        nest = max(fit.info.max_plate_nesting, 1)
        _, g = lean_passes(lambda **kw: None, guide, sub, max(num_draws, 2), nest)
        for name, s in g.items():
            if s["infer"].get("is_auxiliary") or name not in fit.info.sites:
                continue
            v = s["value"].cpu().numpy()[:num_draws]
            if fit.info.sites[name].plates and v.ndim >= 2 and v.shape[1] == len(idx):
                post[name] = v[None]
    for k, v in fit.draws.items():
        if k not in post and not (v.ndim >= 3 and v.shape[2] == n):
            post[k] = v
    dims = {
        k: [f"{k}_datum"] + [f"{k}_dim_{i}" for i in range(v.ndim - 3)]
        for k, v in post.items()
        if k in fit.info.sites and v.ndim >= 3 and v.shape[2] == len(idx)
    }
    coords = {f"{k}_datum": np.asarray(subset) for k in dims}
    return az.from_dict(posterior=post, dims=dims, coords=coords)


def _save_png(grid: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(path, grid, cmap="gray")
