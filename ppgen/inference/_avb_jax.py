"""AVB's JAX engine: a NumPyro program, an implicit guide and a critic as pure params, one jit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError
from ppgen.inference._base import FitContext
from ppgen.inference._guide_fit import guide_fit
from ppgen.inference._svi_jax import JaxState, flatten_params
from ppgen.result import Fit

__all__ = ["JaxAVB", "JaxLayout", "check_guide_size", "make_sampler"]


class JaxLayout:
    """The latents as one flat unconstrained vector per draw (the twin of the torch ``Layout``).

    Example:
        >>> import jax.numpy as jnp, numpyro, numpyro.distributions as nd
        >>> from numpyro import handlers
        >>> def model():
        ...     numpyro.sample("s", nd.HalfNormal(1.0))
        ...     numpyro.sample("w", nd.Normal(jnp.zeros(2), 1.0).to_event(1))
        >>> tr = handlers.trace(handlers.seed(model, 0)).get_trace()
        >>> lay = JaxLayout(tr, ["s", "w"])
        >>> values, ldj = lay.constrain(jnp.zeros(3))
        >>> lay.dim, float(values["s"]), values["w"].shape, float(ldj)
        (3, 1.0, (2,), 0.0)
    """

    def __init__(self, trace: Mapping[str, Any], latents: list[str]) -> None:
        from numpyro.distributions import biject_to

        self.names = list(latents)
        self.transforms, self.shapes, self.sizes = {}, {}, []
        for n in self.names:
            t = biject_to(trace[n]["fn"].support)
            u = t.inv(trace[n]["value"])
            self.transforms[n], self.shapes[n] = t, tuple(u.shape)
            self.sizes.append(max(int(np.prod(u.shape, dtype=int)), 1))
        self.dim = sum(self.sizes)

    def constrain(self, u: Any) -> tuple[dict[str, Any], Any]:
        """One draw ``u`` (D,) -> ``({site: constrained value}, log |det J|)``."""
        values, ldj, start = {}, 0.0, 0
        for n, size in zip(self.names, self.sizes, strict=True):
            part = u[start : start + size].reshape(self.shapes[n])
            start += size
            t = self.transforms[n]
            z = t(part)
            values[n] = z
            ldj = ldj + t.log_abs_det_jacobian(part, z).sum()
        return values, ldj

    def unconstrain(self, values: Mapping[str, Any]) -> Any:
        import jax.numpy as jnp

        return jnp.concatenate([self.transforms[n].inv(values[n]).reshape(-1) for n in self.names])


def _log_prior_and_likelihood(
    model: Callable, kwargs: Mapping[str, Any], values: Mapping[str, Any], params: Mapping
) -> tuple[Any, Any]:
    """``(log p(z), log p(x | z))`` of one draw, each site's ``scale`` applied as
    ``numpyro.infer.util.log_density`` does (masks live in the distribution)."""
    import jax.numpy as jnp
    from numpyro import handlers

    fn = handlers.substitute(handlers.condition(model, data=dict(values)), data=dict(params))
    tr = handlers.trace(handlers.seed(fn, 0)).get_trace(**kwargs)
    prior = lik = jnp.zeros(())
    for name, s in tr.items():
        if s["type"] != "sample":
            continue
        lp = s["fn"].log_prob(s["value"])
        if s.get("scale") is not None:
            lp = s["scale"] * lp
        if name in values:
            prior = prior + jnp.sum(lp)
        else:
            lik = lik + jnp.sum(lp)
    return prior, lik


def _param_transforms(tr: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The program's ``param`` sites: their bijections to their constraints, and their
    unconstrained starting values."""
    from numpyro.distributions import biject_to, constraints

    params = {n: s for n, s in tr.items() if s["type"] == "param"}
    transforms = {
        n: biject_to(s["kwargs"].get("constraint", constraints.real)) for n, s in params.items()
    }
    return transforms, {n: transforms[n].inv(s["value"]) for n, s in params.items()}


def _start(engine: Any, est: Any, g0: Any, t0: Any, m0: Any, key: Any) -> None:
    """The two optax optimisers (``guide``, ``discriminator`` groups) and the run's state."""
    spec, total = est._optim(), est._total_steps()
    engine.tx_g = spec._optax_one("guide", total)
    engine.tx_d = spec._optax_one("discriminator", total)
    engine.state = {
        "g": {"net": g0, "params": m0},
        "d": t0,
        "opt_g": engine.tx_g.init({"net": g0, "params": m0}),
        "opt_d": engine.tx_d.init(t0),
        "key": key,
    }
    engine.previous = engine.state


def _standardise(u: Any) -> tuple[Any, Any, Any]:
    """Adaptive contrast: ``u`` standardised by its (constant) mean and sd over axis 0."""
    import jax

    loc = jax.lax.stop_gradient(u.mean(0))
    scale = jax.lax.stop_gradient(u.std(0, ddof=1)) + 1e-6
    return (u - loc) / scale, loc, scale


def _critic_updates(
    engine: Any, est: Any, state: dict, q_in: Any, ref: Callable, key: Any, *context: Any
) -> tuple[Any, Any, Any]:
    """``n_critic`` logistic updates of the critic, guide draws ``q_in`` against ``ref(key)``
    (one ``lax.scan``): ``(critic, its optimiser state, the last loss)``."""
    import jax
    import optax

    def update(carry: tuple, kr: Any) -> tuple:
        t, opt_d = carry
        r = jax.lax.stop_gradient(ref(kr))

        def loss_d(p: Any) -> Any:
            tq, tr_ = engine.t_apply(p, q_in, *context), engine.t_apply(p, r, *context)
            return jax.nn.softplus(-tq).mean() + jax.nn.softplus(tr_).mean()

        ld, grads = jax.value_and_grad(loss_d)(t)
        upd, opt_d = engine.tx_d.update(grads, opt_d, t)
        return (optax.apply_updates(t, upd), opt_d), ld

    (t, opt_d), lds = jax.lax.scan(
        update, (state["d"], state["opt_d"]), jax.random.split(key, est.n_critic)
    )
    return t, opt_d, lds[-1]


def _guide_update(
    engine: Any, neg_elbo: Callable, state: dict, t: Any, opt_d: Any, key: Any, loss_d: Any
) -> tuple[dict, dict]:
    """One Adam step of the guide (and the program's params) on ``neg_elbo``: the new state
    (with the updated critic ``t``) and the step's metrics."""
    import jax
    import optax

    g = state["g"]
    loss, grads = jax.value_and_grad(neg_elbo)(g)
    upd, opt_g = engine.tx_g.update(grads, state["opt_g"], g)
    new = {"g": optax.apply_updates(g, upd), "d": t, "opt_g": opt_g, "opt_d": opt_d, "key": key}
    return new, {"loss": loss, "loss_d": loss_d}


def _auxiliary(state: dict) -> dict[str, dict[str, np.ndarray]]:
    """The guide's and the critic's weights as numbered leaves (what a saved run keeps)."""
    import jax

    return {
        name: {f"leaf{i}": np.asarray(v) for i, v in enumerate(jax.tree_util.tree_leaves(tree))}
        for name, tree in (("guide", state["g"]["net"]), ("discriminator", state["d"]))
    }


def _net_of(arrays: Mapping[str, np.ndarray]) -> list[tuple[Any, Any]]:
    """A saved ``dense`` network's ``(w, b)`` layers from its numbered leaves."""
    leaves = [arrays[f"leaf{i}"] for i in range(len(arrays))]
    return [(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]


class JaxAVB(JaxState):
    """One AVB run on a NumPyro program with global latents (see :class:`~ppgen.inference.AVB`)."""

    async_metrics = True  # metrics are JAX arrays, read one step late by the loop

    def __init__(self, est: Any, ctx: FitContext) -> None:
        import jax
        from numpyro import handlers

        from ppgen.nn_jax import dense, mlp_critic

        self.est, self.ctx = est, ctx
        model = ctx.program.model
        key = jax.random.PRNGKey(ctx.seed)
        key, k_init, k_guide, k_critic = jax.random.split(key, 4)
        tr = handlers.trace(handlers.seed(model, k_init)).get_trace(**ctx.data)
        self.layout = JaxLayout(tr, est.latent_sites(ctx.info))
        self.param_transforms, m0 = _param_transforms(tr)
        d, e = self.layout.dim, est.noise_size(self.layout.dim)
        g_init, self.g_apply = dense([e, *est.hidden, d])
        t_init, self.t_apply = mlp_critic(d, est.critic_hidden, [])
        self.noise_dim = e
        _start(self, est, g_init(k_guide), t_init(k_critic), m0, key)
        self._step = jax.jit(self._make_step())

    def constrain_params(self, m: Mapping[str, Any]) -> dict[str, Any]:
        return {n: self.param_transforms[n](v) for n, v in m.items()}

    def _make_step(self) -> Callable:
        import jax
        from numpyro import handlers

        est, lay, model, data = self.est, self.layout, self.ctx.program.model, self.ctx.data
        k, e = est.particles, self.noise_dim

        def densities(u: Any, params: Mapping[str, Any]) -> tuple[Any, Any]:
            values, ldj = lay.constrain(u)
            prior, lik = _log_prior_and_likelihood(model, data, values, params)
            return prior + ldj, lik

        def prior_draw(key: Any, params: Mapping[str, Any]) -> Any:
            fn = handlers.substitute(model, data=dict(params))
            tr = handlers.trace(handlers.seed(fn, key)).get_trace(**data)
            return lay.unconstrain({n: tr[n]["value"] for n in lay.names})

        def step(state: dict, batch: dict) -> tuple[dict, dict]:
            g, t, key = state["g"], state["d"], state["key"]
            key, k_eps, k_ref = jax.random.split(key, 3)
            eps = jax.random.normal(k_eps, (k, e))
            params = self.constrain_params(g["params"])

            u0 = self.g_apply(g["net"], eps)
            q_in0 = jax.lax.stop_gradient(_standardise(u0)[0] if est.adaptive_contrast else u0)

            def ref(kr: Any) -> Any:
                if est.adaptive_contrast:
                    return jax.random.normal(kr, (k, lay.dim))
                return jax.vmap(lambda kk: prior_draw(kk, params))(jax.random.split(kr, k))

            t, opt_d, ld = _critic_updates(self, est, state, q_in0, ref, k_ref)

            def neg_elbo(gp: Any) -> Any:
                u = self.g_apply(gp["net"], eps)
                log_p0, log_lik = jax.vmap(
                    lambda v: densities(v, self.constrain_params(gp["params"]))
                )(u)
                if est.adaptive_contrast:
                    q_in, loc, scale = _standardise(u)
                    log_r = jax.scipy.stats.norm.logpdf(u, loc, scale).sum(-1)
                    elbo = log_p0 + log_lik - log_r - self.t_apply(t, q_in)
                else:
                    elbo = log_lik - self.t_apply(t, u)
                return -elbo.mean()

            return _guide_update(self, neg_elbo, state, t, opt_d, key, ld)

        return step

    def step(self, data: Mapping[str, Any], scale: float = 1.0) -> dict[str, Any]:
        """One jitted step on the whole data (``scale`` is 1: AVB without a guide does not
        minibatch)."""
        self.previous = self.state
        self.state, metrics = self._step(self.state, {})
        return metrics

    def abort_step(self) -> None:
        """A step is one jitted call: nothing half-done to undo."""

    def nonfinite(self) -> list[str]:
        import jax

        bad = [
            k
            for k, v in flatten_params(self.state["g"]["params"]).items()
            if not np.isfinite(v).all()
        ]
        for prefix, tree in (("guide", self.state["g"]["net"]), ("discriminator", self.state["d"])):
            bad += [
                prefix + jax.tree_util.keystr(p)
                for p, v in jax.tree_util.tree_leaves_with_path(tree)
                if not np.isfinite(np.asarray(v)).all()
            ]
        return bad

    # ------------------------------------------------------------------ results
    #: what the fit's diagnostics call the guide
    guide_kind = "implicit"

    def sampler(self, net: Any) -> Callable[[int, int], dict[str, np.ndarray]]:
        return make_sampler(self.g_apply, net, self.layout, self.noise_dim)

    def guide_settings(self) -> dict[str, Any]:
        """What a loaded fit needs to rebuild the guide network (the manifest's settings)."""
        return {"noise_dim": self.noise_dim, "dim": self.layout.dim}

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        net = self.state["g"]["net"]
        params = flatten_params(self.constrain_params(self.state["g"]["params"]))
        fit = guide_fit(
            self.est,
            self.ctx,
            history,
            params,
            params,
            self.sampler(net),
            {"guide": self.guide_kind, "adaptive_contrast": self.est.adaptive_contrast},
        )
        fit.auxiliary = _auxiliary(self.state)
        fit.auxiliary_settings = {"guide": self.guide_settings()}
        return fit

    @staticmethod
    def restore(ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        fit.param_state = dict(state)

    @staticmethod
    def restore_sampler(
        est: Any, fit: Fit, arrays: Mapping[str, np.ndarray], settings: Mapping[str, Any]
    ) -> None:
        """Rebuild a loaded fit's posterior sampler from its saved guide network."""
        from numpyro import handlers

        from ppgen.nn_jax import dense

        tr = handlers.trace(handlers.seed(fit.model_callable(), 0)).get_trace(**fit._native(None))
        layout = JaxLayout(tr, est.latent_sites(fit.info))
        check_guide_size(layout.dim, settings)
        noise = int(settings["noise_dim"])
        _, apply = dense([noise, *est.hidden, layout.dim])
        net = _net_of(arrays)
        fit.posterior_sampler = make_sampler(apply, net, layout, noise)


def check_guide_size(dim: int, settings: Mapping[str, Any]) -> None:
    """A saved guide must draw as many numbers as the program passed to load has latents."""
    if dim != settings.get("dim"):
        raise EstimatorError(
            f"The saved AVB guide draws {settings.get('dim')} unconstrained numbers, but the "
            f"program passed to load has {dim}; load with the program that was fitted."
        )


def make_sampler(
    apply: Callable, net: Any, layout: JaxLayout, noise_dim: int
) -> Callable[[int, int], dict[str, np.ndarray]]:
    """Draws from the implicit guide ``apply(net, noise)`` as ``{site: (n, *shape)}`` numpy."""

    def sample(n: int, seed: int) -> dict[str, np.ndarray]:
        import jax

        u = apply(net, jax.random.normal(jax.random.PRNGKey(int(seed)), (n, noise_dim)))
        values, _ = jax.vmap(layout.constrain)(u)
        return {k: np.asarray(v) for k, v in values.items()}

    return sample
