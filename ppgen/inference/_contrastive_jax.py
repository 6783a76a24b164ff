"""The contrastive estimators' JAX engine: a NumPyro energy program, optax, one jit per step.

NCE, every score-matching variant, and contrastive divergence with Langevin, MALA, HMC or
block-Gibbs negatives (CD-k from the data, PCD chains, a replay buffer;
:mod:`.samplers_jax`) run here. Block Gibbs runs the model's own sweep: a model object
that declares ``block_gibbs_step(x, key) -> x'``, reading its parameters with
``numpyro.param`` (the fit substitutes the current ones), as an RBM written in NumPyro
does. ``fit.sample`` draws with any of these or with annealed Langevin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.capabilities import declares
from ppgen.errors import EstimatorError
from ppgen.inference._adversarial_common import data_key
from ppgen.inference._svi_jax import JaxState, flatten_params
from ppgen.inference.objectives.contrastive import cd_loss, nce_loss
from ppgen.inference.samplers import BlockGibbs, Langevin
from ppgen.inference.samplers_jax import JAX_SAMPLERS, jax_run, jax_transition
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["JaxContrastive"]


class JaxContrastive(JaxState):
    """One contrastive run on a NumPyro program (see :mod:`ppgen.inference.contrastive`)."""

    async_metrics = True

    def __init__(self, est: Any, ctx: FitContext) -> None:
        import jax
        import jax.numpy as jnp
        from numpyro import handlers
        from numpyro.distributions import biject_to, constraints

        self.est, self.ctx = est, ctx
        self.site = est.observed_site(ctx.info)
        self.key = data_key(ctx.info, self.site)
        if hasattr(est, "check_data"):
            est.check_data(ctx, self.key)
        self.arrays = [k for k, v in ctx.data.items() if getattr(v, "ndim", 0) > 0]
        model = ctx.program.model
        key, k_init = jax.random.split(jax.random.PRNGKey(ctx.seed))
        tr = handlers.trace(handlers.seed(model, k_init)).get_trace(**ctx.data)
        params = {n: s for n, s in tr.items() if s["type"] == "param"}
        if not params:
            raise EstimatorError(
                f"{type(est).__name__} found no parameters in the program to train: use "
                "`numpyro.param` sites or a network module (`flax_module`/`eqx_module`)."
            )
        transforms = {
            n: biject_to(s["kwargs"].get("constraint", constraints.real)) for n, s in params.items()
        }
        self.constrain = lambda u: {n: transforms[n](v) for n, v in u.items()}
        site, data_name = self.site, self.key

        def energy(u: Any, x: Any, batch: Mapping[str, Any]) -> Any:
            fn = handlers.substitute(model, data=self.constrain(u))
            t = handlers.trace(handlers.seed(fn, 0)).get_trace(**{**batch, data_name: x})
            return -t[site]["fn"].log_prob(t[site]["value"])

        self.energy = energy
        x = self._x(ctx.data)
        self.lo, self.hi, self.binary = data_range(x)
        self.gibbs = gibbs_of(ctx.program.obj)
        state: dict[str, Any] = {
            "u": {n: transforms[n].inv(s["value"]) for n, s in params.items()},
            "key": key,
        }
        if est.objective == "nce":
            state["u"]["log_Z"] = jnp.zeros(())
            self.noise = _noise(est.noise, x)
        if est.objective == "cd":
            sampler = default_sampler(est.sampler, self.gibbs, Langevin(step_size=0.01))
            # refused here, before any work: a sampler that is no fixed kernel, or block
            # Gibbs on a model without the sweep (whose output shape is checked too)
            params = self.constrain(state["u"])
            jax_transition(sampler, lambda v: v, self.gibbs and self.gibbs(params))
            if isinstance(sampler, BlockGibbs):
                check_sweep(self.gibbs(params), x[:2])
            self.sampler = sampler
            if est.persistent:
                n = est.buffer_size or est.num_chains or est.batch_size or len(x)
                k_chain, state["key"] = jax.random.split(state["key"])
                if est.buffer_size is not None:
                    state["chains"] = self._uniform(k_chain, n)
                else:
                    state["chains"] = x[jax.random.randint(k_chain, (n,), 0, len(x))]
        if isinstance(est.sample_sampler, BlockGibbs) and self.gibbs is None:
            jax_transition(est.sample_sampler, lambda v: v)  # refused: names the samplers
        self.tx = est._optim()._optax_one("energy", est._total_steps())
        state["opt"] = self.tx.init(state["u"])
        self.state = self.previous = state
        self._step = jax.jit(self._make_step())

    def _x(self, batch: Mapping[str, Any]) -> Any:
        x = batch[self.key]
        return x if x.dtype.kind == "f" else x.astype(float)

    def _uniform(self, key: Any, n: int) -> Any:
        return noise_like(key, n, self.lo, self.hi, self.binary)

    # ------------------------------------------------------------------ the step
    def _make_step(self) -> Callable:
        import jax
        import optax

        est = self.est
        loss_fn = {"nce": self._nce_loss, "score": self._score_loss, "cd": self._cd_loss}[
            est.objective
        ]

        def step(state: dict, batch: dict) -> tuple[dict, dict]:
            key, k_loss = jax.random.split(state["key"])
            x = self._x(batch)
            aux_state = dict(state)
            (loss, (metrics, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state["u"], x, batch, k_loss, aux_state
            )
            upd, opt = self.tx.update(grads, state["opt"], state["u"])
            new = {**state, **updates, "u": optax.apply_updates(state["u"], upd), "opt": opt}
            new["key"] = key
            return new, {"loss": loss, **metrics}

        return step

    def _nce_loss(self, u: Any, x: Any, batch: Any, key: Any, state: Any) -> tuple:
        import jax
        import jax.numpy as jnp

        nu = self.est.noise_ratio
        m = max(1, int(round(nu * x.shape[0])))
        y = self.noise.sample(key, (m,)).astype(x.dtype)
        log_nu, log_z = math.log(nu), u["log_Z"]
        params = {k: v for k, v in u.items() if k != "log_Z"}
        g_x = -self.energy(params, x, batch) - log_z - self.noise.log_prob(x) - log_nu
        g_y = -self.energy(params, y, batch) - log_z - self.noise.log_prob(y) - log_nu
        loss = nce_loss(g_x, g_y, nu, jax.nn.softplus)
        right = ((g_x > 0).sum() + (g_y <= 0).sum()) / (g_x.shape[0] + g_y.shape[0])
        return loss, ({"log_Z": log_z, "accuracy": jnp.asarray(right, loss.dtype)}, {})

    def _score_loss(self, u: Any, x: Any, batch: Any, key: Any, state: Any) -> tuple:
        import jax
        import jax.numpy as jnp

        est = self.est

        def score(v: Any) -> Any:  # one datum's score, -dE/dx
            return -jax.grad(lambda w: self.energy(u, w[None], batch)[0])(v)

        flat = x.reshape(x.shape[0], -1)
        shape = x.shape[1:]

        def one(v: Any, k: Any) -> Any:
            s_of = lambda w: score(w.reshape(shape)).reshape(-1)  # noqa: E731
            if est.kind == "denoising":
                eps = jax.random.normal(k, v.shape, v.dtype)
                s = s_of(v + est.sigma * eps)
                return 0.5 * ((s + eps / est.sigma) ** 2).sum()
            s = s_of(v)
            if est.kind == "sliced":
                ks = jax.random.split(k, est.num_projections)

                def proj(kk: Any) -> Any:
                    p = jax.random.normal(kk, v.shape, v.dtype)
                    return jax.jvp(s_of, (v,), (p,))[1] @ p

                return jax.vmap(proj)(ks).mean() + 0.5 * (s**2).sum()
            return jnp.trace(jax.jacfwd(s_of)(v)) + 0.5 * (s**2).sum()

        keys = jax.random.split(key, flat.shape[0])
        return jax.vmap(one)(flat, keys).mean(), ({}, {})

    def _cd_loss(self, u: Any, x: Any, batch: Any, key: Any, state: Any) -> tuple:
        import jax
        import jax.numpy as jnp

        est = self.est
        k_pick, k_fresh, k_run, k_re = jax.random.split(key, 4)
        frozen = jax.lax.stop_gradient(u)
        gibbs = self.gibbs and self.gibbs(self.constrain(frozen))
        move = jax_transition(self.sampler, lambda v: self.energy(frozen, v, batch), gibbs)

        updates: dict[str, Any] = {}
        if not est.persistent:
            start = x
        elif est.buffer_size is None:
            start = state["chains"]
        else:
            idx = jax.random.randint(k_pick, (x.shape[0],), 0, state["chains"].shape[0])
            fresh = jax.random.uniform(k_re, (x.shape[0],)) < est.reinit
            noise = self._uniform(k_fresh, x.shape[0]).astype(x.dtype)
            start = jnp.where(
                fresh.reshape((-1,) + (1,) * (x.ndim - 1)), noise, state["chains"][idx]
            )
        neg, accepted = jax.lax.scan(move, start, jax.random.split(k_run, est.k))
        neg = jax.lax.stop_gradient(neg)
        if est.persistent and est.buffer_size is None:
            updates["chains"] = neg
        elif est.persistent:
            updates["chains"] = state["chains"].at[idx].set(neg)
        e_data, e_neg = self.energy(u, x, batch), self.energy(u, neg, batch)
        loss = cd_loss(e_data, e_neg, est.alpha)
        metrics = {"energy_data": e_data.mean(), "energy_neg": e_neg.mean()}
        if not isinstance(self.sampler, Langevin):  # MALA, HMC: the step's acceptance
            metrics["accept_rate"] = accepted.mean()
        return loss, (metrics, updates)

    def step(self, data: Mapping[str, Any]) -> dict[str, Any]:
        self.previous = self.state
        self.state, metrics = self._step(self.state, {k: data[k] for k in self.arrays})
        return metrics

    def abort_step(self) -> None:
        """A step is one jitted call: nothing half-done to undo."""

    def nonfinite(self) -> list[str]:
        return [
            k
            for k, v in flatten_params(self.constrain_all(self.state["u"])).items()
            if not np.isfinite(v).all()
        ]

    def constrain_all(self, u: Mapping[str, Any]) -> dict[str, Any]:
        out = self.constrain({k: v for k, v in u.items() if k != "log_Z"})
        if "log_Z" in u:
            out["log_Z"] = u["log_Z"]
        return out

    # ------------------------------------------------------------------ results
    def finalize(self, history: dict[str, list[float]]) -> Fit:
        u = dict(self.state["u"])
        diagnostics: dict[str, Any] = {"site": self.site, "objective": self.est.objective}
        if self.est.objective == "cd":
            diagnostics["sampler"] = type(self.sampler).__name__
        if "log_Z" in u:
            diagnostics["log_Z"] = float(u.pop("log_Z"))
        params = flatten_params(self.constrain(u))
        auxiliary = {}
        if "chains" in self.state:
            auxiliary["chains"] = {"x": np.asarray(self.state["chains"])}
        fit = Fit(
            program=self.ctx.program,
            estimator=self.est,
            info=self.ctx.info,
            data=self.ctx.data_np,
            params=params,
            param_state=params,
            history=history,
            seed=self.ctx.seed,
            device=self.ctx.device,
            diagnostics=diagnostics,
            auxiliary=auxiliary,
        )
        fit.data_sampler = data_sampler(self.est, self.ctx, self.constrain(u))
        return fit

    @staticmethod
    def restore(est: Any, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        import jax
        from numpyro import handlers

        from ppgen.inference._svi_jax import unflatten_params

        fit.param_state = dict(state)
        tr = handlers.trace(handlers.seed(ctx.program.model, jax.random.PRNGKey(0))).get_trace(
            **ctx.data
        )
        like = {n: s["value"] for n, s in tr.items() if s["type"] == "param"}
        fit.data_sampler = data_sampler(est, ctx, unflatten_params(state, like))


def gibbs_of(obj: Any) -> Callable[[Mapping[str, Any]], Callable[[Any, Any], Any]] | None:
    """``params -> sweep(x, key)``: the model object's declared ``block_gibbs_step(x, key)``
    run with its ``numpyro.param`` sites substituted by ``params``; ``None`` when the model
    declares none (a plain function has no capabilities)."""
    if obj is None or not declares(obj, "block_gibbs_step") or not hasattr(obj, "model"):
        return None
    from numpyro import handlers

    def bind(params: Mapping[str, Any]) -> Callable[[Any, Any], Any]:
        return handlers.substitute(obj.block_gibbs_step, data=dict(params))

    return bind


def check_sweep(sweep: Callable[[Any, Any], Any], x: Any) -> None:
    """Refuse a declared ``block_gibbs_step`` that does not map two rows of data to two rows
    of the same shape, before any work."""
    import jax

    try:
        y = sweep(x, jax.random.PRNGKey(0))
    except Exception as e:
        raise EstimatorError(
            f"The model's `block_gibbs_step(x, key)` failed on two rows of the data "
            f"({type(e).__name__}: {e}). It gets the visible units `x` (shape "
            f"{tuple(x.shape)}) and a PRNG key, reads its parameters with `numpyro.param`, and "
            "returns the new visible units."
        ) from e
    if getattr(y, "shape", None) != x.shape:
        raise EstimatorError(
            f"The model's `block_gibbs_step(x, key)` must return an array shaped like x: on "
            f"x of shape {tuple(x.shape)} it returned "
            f"{getattr(y, 'shape', type(y).__name__)}."
        )


def default_sampler(spec: Any, gibbs: Any, fallback: Any) -> Any:
    """``spec`` when given, block Gibbs for a model that declares it, else ``fallback``."""
    if isinstance(spec, JAX_SAMPLERS):
        return spec
    return BlockGibbs() if gibbs is not None else fallback


def data_range(x: Any) -> tuple[Any, Any, bool]:
    """The data's per-dimension minimum and maximum, and whether every value is 0 or 1: what
    :func:`noise_like` draws from."""
    return x.min(0), x.max(0), bool(((x == 0) | (x == 1)).all())


def noise_like(key: Any, n: int, lo: Any, hi: Any, binary: bool) -> Any:
    """``n`` draws of uniform noise over the data's range (binary data: fair coins)."""
    import jax

    if binary:
        return jax.random.bernoulli(key, 0.5, (n, *lo.shape)).astype(lo.dtype)
    return lo + (hi - lo) * jax.random.uniform(key, (n, *lo.shape), lo.dtype)


def data_sampler(est: Any, ctx: FitContext, params: Mapping[str, Any]) -> Callable[..., Any]:
    """A NumPyro energy fit's ``data_sampler(n, seed=, data=)``: ``n`` data sets (of the
    size of ``data``, the training data by default), each row ``sample_steps`` transitions of
    ``sample_sampler`` (else the training sampler, else block Gibbs when the model declares
    it, else Langevin with step 0.01) from noise (uniform over the data's range; fair coins
    for binary data), in one jitted scan."""
    import jax
    from numpyro import handlers

    site = est.observed_site(ctx.info)
    key_name = data_key(ctx.info, site)
    gibbs = gibbs_of(ctx.program.obj)
    spec = est.sample_sampler or getattr(est, "sampler", None)
    sampler = default_sampler(spec, gibbs, Langevin(step_size=0.01))
    x = ctx.data[key_name]
    lo, hi, binary = data_range(x if x.dtype.kind == "f" else x.astype(float))
    fn = handlers.substitute(ctx.program.model, data=dict(params))

    def energy(v: Any) -> Any:
        t = handlers.trace(handlers.seed(fn, 0)).get_trace(**{**ctx.data, key_name: v})
        return -t[site]["fn"].log_prob(t[site]["value"])

    def score(v: Any, sigma: Any) -> Any:  # an energy's score, the same at every level
        return -jax.grad(lambda w: energy(w).sum())(v)

    needs = {"gibbs": gibbs and gibbs(params), "score": score}
    target = needs.get(sampler.needs, energy)
    run = jax.jit(lambda v, key: jax_run(sampler, target, v, key, est.sample_steps))

    def draw(n: int, seed: int = 0, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        source = data if data is not None and key_name in data else ctx.data
        rows = int(np.shape(source[key_name])[0])
        k_start, k_run = jax.random.split(jax.random.PRNGKey(seed))
        out = np.asarray(run(noise_like(k_start, n * rows, lo, hi, binary), k_run))
        return {site: out.reshape((n, rows) + out.shape[1:])}

    return draw


class _JaxNoise:
    """NCE's default noise for NumPyro: fitted to the data (see :class:`~ppgen.inference.NCE`)."""

    def __init__(self, x: Any) -> None:
        import jax.numpy as jnp
        import numpyro.distributions as dist

        self.shape = x.shape[1:]
        flat = x.reshape(x.shape[0], -1)
        if bool(((flat == 0) | (flat == 1)).all()):
            probs = jnp.clip(flat.mean(0), 1e-3, 1 - 1e-3)
            self.base: Any = dist.Bernoulli(probs=probs).to_event(1)
        else:
            mean = flat.mean(0)
            cov = jnp.cov(flat.T).reshape(mean.shape[0], mean.shape[0])
            cov = cov + 1e-6 * jnp.maximum(jnp.diag(cov).mean(), 1e-6) * jnp.eye(mean.shape[0])
            self.base = dist.MultivariateNormal(mean, covariance_matrix=cov)

    def sample(self, key: Any, shape: tuple[int, ...]) -> Any:
        return self.base.sample(key, shape).reshape(*shape, *self.shape)

    def log_prob(self, u: Any) -> Any:
        return self.base.log_prob(u.reshape(u.shape[0], -1))


class _JaxUserNoise:
    def __init__(self, base: Any) -> None:
        self.base = base

    def sample(self, key: Any, shape: tuple[int, ...]) -> Any:
        return self.base.sample(key, shape)

    def log_prob(self, u: Any) -> Any:
        return self.base.log_prob(u)


def _noise(spec: Any, x: Any) -> Any:
    if spec is None:
        return _JaxNoise(x)
    import jax

    try:
        draw = spec.sample(jax.random.PRNGKey(0), (2,))
        lp = spec.log_prob(draw)
    except Exception as e:
        raise EstimatorError(
            f"`noise` of NCE must be a NumPyro distribution for a NumPyro program: sampling or "
            f"scoring two draws failed ({type(e).__name__}: {e})."
        ) from e
    if tuple(draw.shape) != (2, *x.shape[1:]) or tuple(lp.shape) != (2,):
        raise EstimatorError(
            f"`noise` of NCE must be a distribution over one datum (event shape "
            f"{tuple(x.shape[1:])}): sample((2,)) gave shape {tuple(draw.shape)} and log_prob "
            f"{tuple(lp.shape)}. Use `.to_event(...)` so the datum is one event."
        )
    return _JaxUserNoise(spec)
