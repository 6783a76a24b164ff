"""Amortised encoder guides for NumPyro programs: the JAX twin of ``Amortized``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from ppgen.errors import DataError, ProgramError
from ppgen.inference.guides._encode_numpyro import posterior_means
from ppgen.inference.guides._numpyro_flows import check_flow_args, conditional_iaf
from ppgen.inference.guides._numpyro_nets import _float, _split
from ppgen.inference.guides._sites import data_plate
from ppgen.nn_jax import _linear, mlp

__all__ = ["NumPyroAmortized", "NumPyroFamily", "mlp", "encode"]

NumPyroFamily = Literal["normal", "lowrank", "mvn", "flow"]


def _encoder_kind(encoder: Any) -> str:
    if encoder is None:
        return "mlp"
    mods = [(getattr(c, "__module__", "") or "").split(".") for c in type(encoder).__mro__]
    root = next((".".join(m[:2]) for m in mods if m[0] in ("equinox", "flax", "torch")), "")
    if root.startswith("torch"):
        raise ProgramError(
            "`encoder` is a torch module, but the program is a NumPyro program. Pass a flax "
            "(linen) module, an equinox module, or a JAX function of the inputs."
        )
    if root.startswith("equinox"):
        return "equinox"
    if root == "flax.linen":
        return "flax"
    if root == "flax.nnx":
        raise ProgramError(
            "`encoder` is a flax.nnx module; pass a flax.linen module, or a function that "
            "registers it with `numpyro.contrib.module.nnx_module` and applies it."
        )
    if callable(encoder):
        return "callable"
    raise ProgramError(
        f"`encoder` must be a flax module, an equinox module or a callable; got "
        f"{type(encoder).__name__}."
    )


class NumPyroAmortized:
    r"""An encoder guide for a NumPyro program, built from its trace: :math:`q(z_n \mid x_n)`.

    .. math:: q(\theta, z_{1:N} \mid x) = q_\lambda(\theta)
        \prod_{n} q\big(z_n \mid h_\phi(x_n)\big)

    The JAX twin of :class:`ppgen.inference.guides.amortized.Amortized` (which builds this one for
    NumPyro programs; the arguments are the same). On its first call the guide traces the model
    and finds the *data plate* (the plate holding every observed site), the *local* latents in
    it and the observed sites there. An encoder maps each datum's observations to features
    :math:`h`: by default an :func:`mlp` over the flattened inputs with ``numpyro.param``
    weights (no network library needed); or a flax ``linen`` module (registered with
    ``numpyro.contrib.module.flax_module``, called on the batch), an equinox module
    (``eqx_module``, ``jax.vmap``-ed over the data, so it maps one datum) or any JAX function
    of the batched inputs. An encoder may return one ``(B, F)`` array, or a dict of one per
    local latent. A linear head per local latent gives its posterior: ``normal``
    :math:`\mathcal N(\mu(h), \mathrm{diag}\,\sigma^2(h))`, ``lowrank`` (covariance
    :math:`W W^\top + \mathrm{diag}\,d`), ``mvn`` (full Cholesky factor) or ``flow``: the
    diagonal Normal pushed through ``num_transforms`` conditional inverse-autoregressive
    layers whose MADE networks also read :math:`h` (see
    :func:`~ppgen.inference.guides._numpyro_flows.conditional_iaf`; the layers start as the
    identity, so training starts from ``normal``; the density of the guide's own draws is
    cached, that of other values found by inversion). *Global* latents outside the plate get
    an ordinary NumPyro autoguide in the same guide. Minibatches work as for any guide: the
    local sites sit in a plate of the model's name and size ``B``.

    References:
        Kingma & Welling, Auto-Encoding Variational Bayes, arXiv:1312.6114.
        Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow,
        arXiv:1606.04934.

    Arguments:
        model: the NumPyro program (may be bound later with :meth:`bind`).
        family: ``"normal"``, ``"lowrank"``, ``"mvn"`` or ``"flow"``.
        encoder: flax / equinox module or callable; default ``mlp(hidden_features)``.
        hidden_features: widths of the default MLP (``()``: the head reads the inputs).
        plate: name of the data plate (default: the largest plate holding every observation).
        inputs: data keys fed to the encoder (default: the observed sites in the plate).
        global_guide: autoguide name for global latents (``"normal"``, ``"mvn"``, ...;
            ``"flow"`` means NumPyro's ``AutoIAFNormal``).
        name: prefix of the guide's parameter names.
        rank: rank of the ``lowrank`` covariance factor.
        flow: flow kind of ``family="flow"``; NumPyro programs have ``"iaf"`` (the Pyro guide
            also offers the other kinds of :func:`ppgen.flows.build_flow`).
        flow_hidden_features / num_transforms: MADE width and number of flow layers
            (default 5), the names of the Pyro guide's.

    Example:
        >>> import numpy as np, numpyro, numpyro.distributions as dist, ppgen
        >>> from ppgen.inference import SVI
        >>> from ppgen.inference.guides.amortized import Amortized
        >>> def model(x=None):
        ...     with numpyro.plate("data", x.shape[0]):
        ...         z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        ...         numpyro.sample("x", dist.Normal(z.sum(-1, keepdims=True), 1.0).to_event(1),
        ...                        obs=x)
        >>> x = np.random.default_rng(0).normal(size=(50, 1))
        >>> guide = Amortized(hidden_features=(16,))
        >>> fit = ppgen.fit(model, {"x": x}, SVI(guide=guide, steps=20, num_draws=5))
        >>> fit.draws["z"].shape, fit.encode({"x": x[:3]})["z"].shape
        ((1, 5, 50, 2), (3, 2))
    """

    def __init__(
        self,
        model: Callable | Any = None,
        family: NumPyroFamily = "normal",
        *,
        encoder: Any = None,
        hidden_features: Sequence[int] = (256, 256),
        plate: str | None = None,
        inputs: Sequence[str] | None = None,
        global_guide: str = "normal",
        name: str = "amortized",
        rank: int = 2,
        flow: str = "iaf",
        flow_hidden_features: int = 64,
        num_transforms: int | None = None,
        **head_kwargs: Any,
    ) -> None:
        from ppgen.inference.guides.auto import guide_class_name

        if family not in get_args(NumPyroFamily):
            raise ProgramError(
                f"`family` for a NumPyro program must be one of {get_args(NumPyroFamily)}; got "
                f"{family!r}."
            )
        if head_kwargs:
            raise ProgramError(
                f"Unknown argument(s) {sorted(head_kwargs)} for a NumPyro `Amortized` guide; its "
                "heads take `rank`, `flow`, `flow_hidden_features` and `num_transforms`."
            )
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ProgramError(f"`rank` must be a positive int; got {rank!r}.")
        self.flow, self.flow_hidden_features, self.num_transforms = check_flow_args(
            flow, flow_hidden_features, num_transforms
        )
        if global_guide != "flow":
            guide_class_name(global_guide)  # unknown names fail here
        self.family, self.name, self.rank = family, name, rank
        self.encoder, self._kind = encoder, _encoder_kind(encoder)
        self.hidden_features = tuple(int(h) for h in hidden_features)
        self.plate_name = plate
        self.inputs = list(inputs) if inputs is not None else None
        self.global_guide_name = global_guide
        self._model: Callable | None = None
        self.plate: Any = None  # the data plate's frame: name, dim, size
        self.locals: dict[str, tuple[int, ...]] = {}
        self.global_guide: Callable | None = None
        if model is not None:
            self.bind(model)

    # ------------------------------------------------------------------ building
    def bind(self, model: Callable | Any) -> NumPyroAmortized:
        """Attach the program to encode for."""
        fn = model.model if callable(getattr(model, "model", None)) else model
        if not callable(fn):
            raise ProgramError("`Amortized` needs the program (a callable or zoo model).")
        self._model = fn
        return self

    def for_backend(self, backend: str) -> NumPyroAmortized:
        """This guide, for a NumPyro program (a Pyro program needs ``Amortized``)."""
        if backend != "numpyro":
            raise ProgramError(
                "`NumPyroAmortized` guides NumPyro programs; for a Pyro program use "
                "`ppgen.inference.guides.amortized.Amortized`."
            )
        return self

    def build(self, **data: Any) -> NumPyroAmortized:
        """Trace the model on ``data`` and find the plate, local and global latents, inputs."""
        if self._model is None:
            raise ProgramError(
                "This `Amortized` guide has no program: pass it, `Amortized(model)`, or call "
                "`.bind(model)` before fitting."
            )
        with handlers.block():
            tr = handlers.trace(handlers.seed(self._model, rng_seed=0)).get_trace(**data)
        plate, self.locals, glob, self.inputs = data_plate(
            tr, data, self.plate_name, self.family, self.inputs
        )
        self.plate = plate
        if glob:
            from ppgen.inference.guides.auto import make_guide

            # the locals are drawn (from the prior) inside the block, so the autoguide never
            # sees them; it only runs the model to set itself up
            blocked = handlers.block(handlers.seed(self._model, rng_seed=0), hide=list(self.locals))
            spec = "iaf" if self.global_guide_name == "flow" else self.global_guide_name
            self.global_guide = make_guide(spec, blocked, "numpyro")
        return self

    # ------------------------------------------------------------------ the guide
    def _features(self, data: Mapping[str, Any], n: int) -> dict[str, jax.Array]:
        xs = [jnp.asarray(data[k]) for k in self.inputs]
        key = f"{self.name}.encoder"
        if self._kind == "mlp":
            x = jnp.concatenate([_float(x).reshape(n, -1) for x in xs], -1)
            h: Any = mlp(key, x, self.hidden_features)
        elif self._kind == "equinox":
            from numpyro.contrib.module import eqx_module

            h = jax.vmap(eqx_module(key, self.encoder))(*xs)
        elif self._kind == "flax":
            from numpyro.contrib.module import flax_module

            h = flax_module(key, self.encoder, *xs)(*xs)
        else:
            h = self.encoder(*xs)
        if isinstance(h, Mapping) and set(h) != set(self.locals):
            missing = [s for s in self.locals if s not in h]
            raise ProgramError(
                f"The encoder returned features for {sorted(h)}; it must return one array, or "
                f"one per local latent {list(self.locals)} (missing: {missing}, unknown: "
                f"{[k for k in h if k not in self.locals]})."
            )
        feats = {s: h[s] if isinstance(h, Mapping) else h for s in self.locals}
        for s, f in feats.items():
            if jnp.ndim(f) != 2 or jnp.shape(f)[0] != n:
                raise ProgramError(
                    f"The encoder's features for local latent `{s}` have shape "
                    f"{tuple(jnp.shape(f))}; expected ({n}, F): one row of F features per datum "
                    f"of plate `{self.plate.name}`. Make the encoder return a 2-D array."
                )
        return feats

    def _head(self, site: str, h: jax.Array) -> dist.Distribution:
        shape = self.locals[site]
        d = int(np.prod(shape)) if shape else 1
        width = {"lowrank": 2 * d + d * self.rank, "mvn": d + d * (d + 1) // 2}
        h = _float(h)
        out = _linear(f"{self.name}.{site}", h, width.get(self.family, 2 * d))
        if self.family == "flow":
            loc, scale = _split(out, "normal", d, 0)
            return conditional_iaf(
                f"{self.name}.{site}.flow",
                loc,
                scale,
                h,
                num_transforms=self.num_transforms,
                hidden_features=self.flow_hidden_features,
            )
        if self.family == "normal":
            loc, scale = _split(out, "normal", d, 0)
            lead = out.shape[:-1]
            q = dist.Normal(loc.reshape(lead + shape), scale.reshape(lead + shape))
            return q.to_event(len(shape))
        if self.family == "lowrank":
            loc, factor, diag = _split(out, "lowrank", d, self.rank)
            return dist.LowRankMultivariateNormal(loc, factor, diag)
        loc, tril = _split(out, "mvn", d, 0)
        return dist.MultivariateNormal(loc, scale_tril=tril)

    def posterior(self, **data: Any) -> dict[str, dist.Distribution]:
        """``{site: q(z | x)}`` for the local latents (inside a handler that supplies params)."""
        if self.plate is None:
            self.build(**data)
        n = int(jnp.shape(data[self.inputs[0]])[0])
        feats = self._features(data, n)
        return {s: self._head(s, feats[s]) for s in self.locals}

    def encode(self, params: Mapping[str, Any], **data: Any) -> dict[str, dist.Distribution]:
        """The posterior of each local latent for ``data`` under fitted ``params`` (no sampling).

        ``params`` are NumPyro's (constrained) parameters, e.g. ``svi.get_params(state)``.
        """
        fn = handlers.substitute(handlers.seed(self.posterior, rng_seed=0), data=params)
        return fn(**data)

    def encode_fit(self, fit: Any, data: Mapping[str, Any], **kwargs: Any) -> dict[str, np.ndarray]:
        """``Fit.encode`` of a fit with this guide: see :func:`encode`."""
        return encode(fit, data, **kwargs)

    def __call__(self, **data: Any) -> dict[str, jax.Array]:
        if self.plate is None:
            self.build(**data)
        out: dict[str, jax.Array] = {}
        if self.global_guide is not None:
            out.update(self.global_guide(**data) or {})
        qs = self.posterior(**data)
        n = int(jnp.shape(data[self.inputs[0]])[0])
        with numpyro.plate(self.plate.name, n, dim=self.plate.dim):
            for site, q in qs.items():
                out[site] = numpyro.sample(site, q)
        return out


def _fitted_guide(fit: Any) -> NumPyroAmortized:
    for g in (getattr(fit.estimator, "guide", None), getattr(fit.program, "user_guide", None)):
        g = getattr(g, "numpyro_guide", g)
        if isinstance(g, NumPyroAmortized) and g.plate is not None:
            return g
    raise DataError(
        "This fit has no amortised guide to encode with; fit the program with "
        "`SVI(guide=Amortized(...))`."
    )


def encode(
    fit: Any,
    data: Mapping[str, Any],
    *,
    batch_size: int = 1024,
    num_samples: int = 256,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    r"""Posterior means :math:`\mathbb E_q[z_n \mid x_n]` of the local latents, NumPyro fits.

    Returns ``{site: array (N, *shape)}`` for every latent the ``Amortized`` guide encodes.
    ``Fit.encode`` calls this for NumPyro fits. The Gaussian families' means are exact. A
    ``flow`` posterior's mean has no closed form: it is the Monte Carlo average of
    ``num_samples`` draws from :math:`q(z_n \mid x_n)` with keys from ``seed`` (so the same
    call, and a saved-and-loaded fit, give the same encodings; the Monte Carlo error is about
    :math:`\mathrm{sd}_q / \sqrt{\text{num\_samples}}`).

    Example:
        >>> import numpy as np, numpyro, numpyro.distributions as dist, ppgen
        >>> from ppgen.inference import SVI
        >>> def model(x=None):
        ...     with numpyro.plate("data", x.shape[0]):
        ...         z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        ...         numpyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> x = np.random.default_rng(0).normal(size=20)
        >>> fit = ppgen.fit(model, {"x": x}, SVI(guide=NumPyroAmortized(), steps=5, num_draws=2))
        >>> encode(fit, {"x": x})["z"].shape
        (20,)
    """

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise DataError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    return posterior_means(
        _fitted_guide(fit), fit, data, batch_size=batch_size, num_samples=num_samples, seed=seed
    )
