"""Amortised AVB's JAX engine: an encoder of data and noise per datum, a critic on (x, z)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ppgen.inference._avb_jax import (
    JaxAVB,
    JaxLayout,
    _critic_updates,
    _guide_update,
    _log_prior_and_likelihood,
    _net_of,
    _param_transforms,
    _standardise,
    _start,
    check_guide_size,
)
from ppgen.inference._base import FitContext
from ppgen.inference.guides._sites import data_plate
from ppgen.inference.guides.implicit import ImplicitAmortized, global_latents_error
from ppgen.result import Fit

__all__ = ["JaxAmortizedAVB", "make_local_sampler"]


class JaxAmortizedAVB(JaxAVB):
    """Amortised AVB on a NumPyro program: an encoder :math:`z_n = g(x_n, \\varepsilon)` (an MLP
    of the :class:`~ppgen.inference.ImplicitAmortized` guide's widths) for its per-datum
    latents and a critic :math:`T(x, z)`, the whole step one ``jax.jit``."""

    async_metrics = True

    def __init__(self, est: Any, ctx: FitContext, guide: Any) -> None:
        import jax
        from numpyro import handlers

        from ppgen.nn_jax import dense, mlp_critic

        self.est, self.ctx = est, ctx  # (a torch `encoder=` was refused by AVB.check)
        model = ctx.program.model
        key = jax.random.PRNGKey(ctx.seed)
        key, k_init, k_guide, k_critic = jax.random.split(key, 4)
        tr = handlers.trace(handlers.seed(model, k_init)).get_trace(**ctx.data)
        plate, locals_, glob, self.inputs = data_plate(
            tr, ctx.data, guide.plate_name, "normal", guide.inputs
        )
        if glob:
            raise global_latents_error(plate.name, [s["name"] for s in glob])
        self.plate = plate
        # one datum's latents as a flat unconstrained vector
        self.layout = JaxLayout(
            {n: {**tr[n], "value": tr[n]["value"][0]} for n in locals_}, list(locals_)
        )
        self.param_transforms, m0 = _param_transforms(tr)
        d = self.layout.dim
        e = guide.noise_dim if guide.noise_dim is not None else max(d, 16)
        width = int(self.features(ctx.data).shape[1])
        g_init, self.g_apply = dense([width + e, *guide.hidden_features, d])
        t_init, self.t_apply = mlp_critic(d + width, est.critic_hidden, [None])
        self.noise_dim, self.hidden_features = e, tuple(guide.hidden_features)
        _start(self, est, g_init(k_guide), t_init(k_critic), m0, key)
        self.static = {k: v for k, v in ctx.data.items() if not hasattr(v, "shape")}
        self._step = jax.jit(self._make_step())

    def features(self, data: Mapping[str, Any]) -> Any:
        """The encoder's data inputs flattened side by side, ``(B, F)``."""
        import jax.numpy as jnp

        xs = [jnp.asarray(data[k]) for k in self.inputs]
        n = xs[0].shape[0]
        return jnp.concatenate([x.reshape(n, -1).astype(jnp.float32) for x in xs], -1)

    def draw(self, net: Any, x: Any, eps: Any) -> Any:
        """Unconstrained draws ``(K, B, D)`` for features ``x`` (B, F) and noise (K, B, E)."""
        import jax.numpy as jnp

        rep = jnp.broadcast_to(x, (eps.shape[0], *x.shape))
        return self.g_apply(net, jnp.concatenate([rep, eps], -1))

    def constrain_draws(self, u: Any) -> tuple[dict[str, Any], Any]:
        """``(K, B, D)`` -> ``({site: (K, B, *shape)}, log |det J| (K, B))``."""
        import jax

        return jax.vmap(jax.vmap(self.layout.constrain))(u)

    def _make_step(self) -> Callable:
        import jax
        import jax.numpy as jnp
        from numpyro import handlers

        est, model = self.est, self.ctx.program.model
        k, e, dim = est.particles, self.noise_dim, self.layout.dim
        names = self.layout.names

        def step(state: dict, arrays: dict, scale: Any) -> tuple[dict, dict]:
            batch = {**self.static, **arrays}  # non-array arguments closed over
            g, t, key = state["g"], state["d"], state["key"]
            key, k_eps, k_ref = jax.random.split(key, 3)
            x = self.features(batch)
            b = x.shape[0]
            eps = jax.random.normal(k_eps, (k, b, e))
            params = self.constrain_params(g["params"])
            xk = jnp.broadcast_to(x, (k, *x.shape)).reshape(k * b, -1)

            u0 = self.draw(g["net"], x, eps)
            q_in0 = jax.lax.stop_gradient(_standardise(u0)[0] if est.adaptive_contrast else u0)

            def prior_draw(kk: Any) -> Any:
                fn = handlers.substitute(model, data=dict(params))
                tr = handlers.trace(handlers.seed(fn, kk)).get_trace(**batch)
                flat = [self.layout.transforms[n].inv(tr[n]["value"]).reshape(b, -1) for n in names]
                return jnp.concatenate(flat, -1)

            def ref(kr: Any) -> Any:
                if est.adaptive_contrast:
                    return jax.random.normal(kr, (k * b, dim))
                return jax.vmap(prior_draw)(jax.random.split(kr, k)).reshape(k * b, -1)

            q_flat = q_in0.reshape(k * b, -1)
            t, opt_d, ld = _critic_updates(self, est, state, q_flat, ref, k_ref, xk)

            def neg_elbo(gp: Any) -> Any:
                u = self.draw(gp["net"], x, eps)
                values, ldj = self.constrain_draws(u)
                p = self.constrain_params(gp["params"])
                log_p, log_lik = jax.vmap(lambda v: _log_prior_and_likelihood(model, batch, v, p))(
                    values
                )  # every sample site sits in the data plate: N / B weighs them all
                q_in = _standardise(u)[0] if est.adaptive_contrast else u
                t_q = self.t_apply(t, q_in.reshape(k * b, -1), xk).reshape(k, b)
                if est.adaptive_contrast:
                    _, loc, sd = _standardise(u)
                    log_r = jax.scipy.stats.norm.logpdf(u, loc, sd).sum(-1)
                    elbo = log_p + log_lik + (ldj - log_r - t_q).sum(-1)
                else:
                    elbo = log_lik - t_q.sum(-1)
                return -scale * elbo.mean()

            return _guide_update(self, neg_elbo, state, t, opt_d, key, ld)

        return step

    def step(self, data: Mapping[str, Any], scale: float = 1.0) -> dict[str, Any]:
        self.previous = self.state
        batch = {k: v for k, v in data.items() if hasattr(v, "shape")}
        self.state, metrics = self._step(self.state, batch, float(scale))
        return metrics

    # ------------------------------------------------------------------ results
    guide_kind = "implicit amortized"

    def sampler(self, net: Any) -> Callable[[int, int], dict[str, np.ndarray]]:
        return make_local_sampler(self, net, self.ctx.data)

    def guide_settings(self) -> dict[str, Any]:
        return {
            "amortized": True,
            "noise_dim": self.noise_dim,
            "dim": self.layout.dim,
            "inputs": list(self.inputs),
            "plate": self.plate.name,
            "hidden_features": list(self.hidden_features),
            "default_encoder": True,
        }

    @staticmethod
    def restore_sampler(
        est: Any, fit: Fit, arrays: Mapping[str, np.ndarray], settings: Mapping[str, Any]
    ) -> None:
        """Rebuild a loaded fit's encoder from its saved weights (the default MLP)."""
        data = fit._native(None)
        guide = ImplicitAmortized(
            noise_dim=int(settings["noise_dim"]),
            hidden_features=tuple(int(h) for h in settings["hidden_features"]),
            plate=str(settings["plate"]),
            inputs=list(settings["inputs"]),
        )
        ctx = FitContext(
            program=fit.program, info=fit.info, data=data, data_np=fit.data, seed=fit.seed
        )
        engine = JaxAmortizedAVB(est, ctx, guide)
        check_guide_size(engine.layout.dim, settings)
        net = _net_of(arrays)
        fit.posterior_sampler = make_local_sampler(engine, net, data)


def make_local_sampler(
    engine: JaxAmortizedAVB, net: Any, data: Mapping[str, Any]
) -> Callable[[int, int], dict[str, np.ndarray]]:
    """Draws of every training datum's latents, ``{site: (n, N, *shape)}`` numpy arrays."""

    def sample(n: int, seed: int) -> dict[str, np.ndarray]:
        import jax

        x = engine.features(data)
        eps = jax.random.normal(jax.random.PRNGKey(int(seed)), (n, x.shape[0], engine.noise_dim))
        values, _ = engine.constrain_draws(engine.draw(net, x, eps))
        return {k: np.asarray(v) for k, v in values.items()}

    return sample
