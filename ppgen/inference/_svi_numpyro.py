"""SVI's NumPyro engine: NumPyro's ``SVI`` with a jitted update, checkpointable state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError
from ppgen.inference._base import FitContext
from ppgen.inference.svi import SVI, _guide_fit
from ppgen.result import Fit


class _JaxEngine:
    """NumPyro's ``SVI`` with a jitted update; state is the ``SVIState`` pytree."""

    async_metrics = True  # `step` returns the loss as a JAX array, possibly still computing

    def __init__(self, est: SVI, ctx: FitContext) -> None:
        import jax
        import numpyro

        self.est, self.ctx = est, ctx
        plate = ctx.extra.get("batch_plate")
        self.scaler = _JaxScalePlate(plate) if plate else None
        model = ctx.program.model
        if self.scaler:
            model = self.scaler.wrap(model)
        self.model = model
        self.guide = est._resolve_guide(ctx, model, "numpyro")
        guide = self.scaler.wrap(self.guide) if self.scaler else self.guide
        self.elbo = est._make_elbo(ctx, "numpyro")
        self.optim = _jax_optim(est)
        self.svi = numpyro.infer.SVI(model, guide, self.optim, self.elbo)
        self.state = self.svi.init(jax.random.PRNGKey(ctx.seed), **ctx.data)
        self._update = jax.jit(self.svi.update)

    def step(self, data: Mapping[str, Any], scale: float) -> Any:
        if self.scaler:
            self.scaler.scale = scale
        self.previous = self.state  # immutable arrays: a reference, not a copy
        self.state, loss = self._update(self.state, **data)
        return loss

    def rewind(self) -> None:
        self.state = self.previous

    def state_dict(self) -> dict[str, Any]:
        import jax

        return {"leaves": [np.asarray(x) for x in jax.tree_util.tree_leaves(self.state)]}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        import jax
        import jax.numpy as jnp

        treedef = jax.tree_util.tree_structure(self.state)
        self.state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in sd["leaves"]])

    def nonfinite(self) -> list[str]:
        flat = _flatten_params(self.svi.get_params(self.state))
        return [k for k, v in flat.items() if not np.isfinite(v).all()]

    def sampler(self, jparams: Mapping[str, Any]) -> Any:
        import jax
        from numpyro import handlers

        ctx = self.ctx
        latents = [n for n in ctx.info.latent if not ctx.info.sites[n].enumerate]
        guide, model, ops = self.guide, ctx.program.model, ctx.program.ops

        def sample(n: int, seed: int) -> dict[str, np.ndarray]:
            if hasattr(guide, "sample_posterior"):
                out = guide.sample_posterior(
                    jax.random.PRNGKey(seed), jparams, sample_shape=(n,), **ctx.data
                )
                return {k: np.asarray(v) for k, v in out.items() if k in latents}
            return ops.predictive(
                handlers.substitute(model, data=jparams),
                ctx.data,
                num_samples=n,
                guide=handlers.substitute(guide, data=jparams),
                return_sites=latents,
                uncondition=False,
                seed=seed,
            )

        return sample

    def restore(self, fit: Fit, state: Mapping[str, Any]) -> None:
        like = self.svi.get_params(self.state)
        fit.param_state = dict(state)
        fit.posterior_sampler = self.sampler(_unflatten_params(state, like))

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        jparams = self.svi.get_params(self.state)
        params = _flatten_params(jparams)
        sampler = self.sampler(jparams)
        return _guide_fit(self.est, self.ctx, history, params, params, sampler, self.guide)


def _flatten_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """NumPyro params as flat numpy arrays; pytree params (e.g. IAF networks) as ``name/i``."""
    import jax

    out = {}
    for k, v in params.items():
        leaves = jax.tree_util.tree_leaves(v)
        if len(leaves) == 1 and not isinstance(v, list | tuple | dict):
            out[k] = np.asarray(v)
        else:
            out.update({f"{k}/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    return out


def _unflatten_params(flat: Mapping[str, Any], like: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_flatten_params`, with the tree structure taken from ``like``."""
    import jax
    import jax.numpy as jnp

    out = {}
    for k, v in like.items():
        if k in flat:
            out[k] = jnp.asarray(flat[k])
        else:
            leaves = jax.tree_util.tree_leaves(v)
            treedef = jax.tree_util.tree_structure(v)
            out[k] = jax.tree_util.tree_unflatten(
                treedef, [jnp.asarray(flat[f"{k}/{i}"]) for i in range(len(leaves))]
            )
    return out


class _JaxScalePlate:
    """NumPyro twin of :class:`ppgen.inference._pyro.ScalePlate`."""

    def __init__(self, name: str, scale: float = 1.0) -> None:
        self.name, self.scale = name, scale

    def wrap(self, fn: Any) -> Any:
        from numpyro.primitives import Messenger

        outer = self

        class _Scale(Messenger):
            def process_message(self, msg: dict) -> None:
                if msg["type"] == "sample" and outer.scale != 1.0:
                    if any(f.name == outer.name for f in msg["cond_indep_stack"]):
                        s = msg.get("scale")
                        msg["scale"] = outer.scale if s is None else outer.scale * s

        def scaled(*args: Any, **kwargs: Any) -> Any:
            with _Scale():
                return fn(*args, **kwargs)

        return scaled


def _jax_optim(est: SVI) -> Any:
    import numpyro.optim as nopt

    if not isinstance(est.optim, str):
        return est.optim
    lr: Any = est.lr
    if est.lr_decay:
        import jax.numpy as jnp

        steps = max(est._total_steps(), 1)
        rate = float(est.lr_decay)

        def lr(i: Any) -> Any:  # noqa: F811 - schedule replaces the constant
            return est.lr * jnp.power(rate, i / steps)

    table = {
        "adam": lambda: nopt.Adam(lr),
        "clipped_adam": lambda: nopt.ClippedAdam(lr, clip_norm=est.clip_norm or 10.0),
        "sgd": lambda: nopt.SGD(lr),
        "rmsprop": lambda: nopt.RMSProp(lr),
        "adagrad": lambda: nopt.Adagrad(lr),
    }
    key = est.optim.lower()
    if key not in table:
        raise EstimatorError(f"Unknown `optim={est.optim!r}`. Valid names: {sorted(table)}.")
    return table[key]()
