"""Adversarial's JAX engine: a NumPyro program as the generator, a JAX critic, optax, one jit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.capabilities import declares
from ppgen.errors import EstimatorError
from ppgen.inference._adversarial_common import (
    check_critic,
    class_counts,
    covariate_keys,
    data_key,
    info_term,
    input_features,
    pack,
)
from ppgen.inference._svi_jax import JaxState, flatten_params, repeat_params
from ppgen.inference.objectives.gan import array_ops, discriminator_loss, generator_loss
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["JaxAdversarial", "gradient_penalty_jax", "spectral_normalise", "user_critic"]

POWER_ITERATIONS = 20


def spectral_normalise(params: Any, iterations: int = POWER_ITERATIONS) -> Any:
    r"""Every parameter array of rank >= 2 divided by its largest singular value.

    Miyato et al.'s spectral normalisation for JAX critics (linear weights; conv kernels as
    ``(out, in * kh * kw)`` matrices), stateless: :math:`\sigma(W)` by ``iterations`` power
    iterations from a fixed start each call, the singular vectors held constant in the
    gradient as in the paper. Biases (rank 1) are untouched.

    Example: a diagonal matrix's largest singular value is its largest entry.

        >>> import jax.numpy as jnp
        >>> w = spectral_normalise({"w": jnp.diag(jnp.array([4.0, 2.0])), "b": jnp.ones(2)})
        >>> [round(float(v), 4) for v in jnp.diag(w["w"])], w["b"].tolist()
        ([1.0, 0.5], [1.0, 1.0])
    """
    import jax
    import jax.numpy as jnp

    def one(w: Any) -> Any:
        if getattr(w, "ndim", 0) < 2 or not jnp.issubdtype(w.dtype, jnp.floating):
            return w
        m = w.reshape(w.shape[0], -1)
        v = jax.random.normal(jax.random.PRNGKey(0), (m.shape[1],), m.dtype)

        def power(_: int, v: Any) -> Any:
            u = m @ v
            u = u / (jnp.linalg.norm(u) + 1e-12)
            v = m.T @ u
            return v / (jnp.linalg.norm(v) + 1e-12)

        v = jax.lax.stop_gradient(jax.lax.fori_loop(0, iterations, power, v))
        u = jax.lax.stop_gradient(m @ v)
        u = u / (jnp.linalg.norm(u) + 1e-12)
        return w / (u @ m @ v)

    return jax.tree_util.tree_map(one, params)


def gradient_penalty_jax(apply: Callable, params: Any, real: Any, fake: Any, key: Any, *ctx: Any):
    r"""The gradient penalty of :func:`ppgen.inference._adversarial_torch.gradient_penalty`.

    Example: a linear critic of slope 3 gives :math:`(3 - 1)^2 = 4`.

        >>> import jax, jax.numpy as jnp
        >>> lin = lambda p, x: 3.0 * x[:, 0]
        >>> x = jnp.ones((4, 1))
        >>> float(gradient_penalty_jax(lin, None, x, -x, jax.random.PRNGKey(0)))
        4.0
    """
    import jax
    import jax.numpy as jnp

    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    mixed = eps * real + (1.0 - eps) * fake
    grad = jax.grad(lambda m: apply(params, m, *ctx).sum())(mixed)
    norms = jnp.sqrt((grad.reshape(grad.shape[0], -1) ** 2).sum(1))
    return ((norms - 1.0) ** 2).mean()


def user_critic(critic: Any, example: list, inputs: str) -> tuple[Callable, Callable]:
    """A user's JAX critic as ``(init(key) -> params, apply(params, *inputs))``: an
    ``(init(key, *inputs), apply(params, *inputs))`` pair (``init`` sees ``example``, a
    batch of two of the inputs) or an equinox module (its inexact arrays are the params).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> pair = (lambda key, x: {"w": jnp.ones(x.shape[1])}, lambda p, x: x @ p["w"])
        >>> init, apply = user_critic(pair, [jnp.zeros((2, 3))], "x")
        >>> apply(init(jax.random.PRNGKey(0)), jnp.ones((4, 3))).tolist()
        [3.0, 3.0, 3.0, 3.0]
    """
    if isinstance(critic, tuple) and len(critic) == 2 and all(map(callable, critic)):
        init, apply = critic
        return (lambda key: init(key, *example)), apply
    try:
        import equinox as eqx
    except ImportError:  # pragma: no cover - equinox is a dependency
        eqx = None
    if eqx is not None and isinstance(critic, eqx.Module):
        params, static = eqx.partition(critic, eqx.is_inexact_array)
        return (lambda key: params), (lambda p, *a: eqx.combine(p, static)(*a))
    raise EstimatorError(
        "`discriminator` of a NumPyro program must be an equinox module or an "
        f"`(init(key, {inputs}), apply(params, {inputs}))` pair; got {type(critic).__name__}."
    )


def _packed_labels(critic: tuple[Callable, Callable], counts: list) -> tuple[Callable, Callable]:
    """A default critic for packed integer covariates: ``(n, m)`` labels one-hot to ``m * K``."""
    import jax

    init, apply = critic

    def packed(params: Any, x: Any, *context: Any) -> Any:
        n = x.shape[0]
        context = [
            jax.nn.one_hot(c.reshape(n, -1), k, dtype=x.dtype).reshape(n, -1) if k else c
            for c, k in zip(context, counts, strict=False)
        ]
        return apply(params, x, *context)

    return init, packed


class JaxAdversarial(JaxState):
    """One adversarial run on a NumPyro program; one jitted function per loop step."""

    async_metrics = True  # metrics are JAX arrays, read one step late by the loop

    def __init__(self, est: Any, ctx: FitContext) -> None:
        import jax
        from numpyro import handlers
        from numpyro.distributions import biject_to, constraints

        from ppgen.backends.numpyro import Uncondition

        self.est, self.ctx = est, ctx
        self.site = est.observed_site(ctx.info)
        self.key = data_key(ctx.info, self.site)
        self.covs = covariate_keys(ctx.data_np, ctx.info, self.site)
        self.arrays = [k for k, v in ctx.data.items() if getattr(v, "ndim", 0) > 0]
        static = {k: v for k, v in ctx.data.items() if k not in self.arrays}
        model = Uncondition(ctx.program.model)
        key = jax.random.PRNGKey(ctx.seed)
        key, k_init, k_critic = jax.random.split(key, 3)
        tr = handlers.trace(handlers.seed(model, k_init)).get_trace(**ctx.data)
        params = {n: s for n, s in tr.items() if s["type"] == "param"}
        if not params:
            raise EstimatorError(
                "Adversarial found no parameters in the program to train: use `numpyro.param` "
                "sites or a network module (`flax_module`/`eqx_module`/ppgen's `mlp`)."
            )
        self.transforms = {
            n: biject_to(s["kwargs"].get("constraint", constraints.real)) for n, s in params.items()
        }
        unconstrained = {n: self.transforms[n].inv(s["value"]) for n, s in params.items()}
        self.constrain = lambda u: {n: self.transforms[n](v) for n, v in u.items()}
        ops, site = ctx.program.ops, self.site

        def generate(u: Any, k: Any, batch: Mapping[str, Any]) -> tuple[Any, dict]:
            out = ops.simulate(
                ctx.program.model,
                {**static, **batch},
                sites=[site, *est.info_sites],
                rng_key=k,
                params=self.constrain(u),
            )
            x = out.pop(site)
            return (x if x.dtype.kind == "f" else x.astype(float)), out

        self.generate = generate
        if est.info_sites:  # InfoGAN: Q's parameters join the generator's (both maximise info)
            guide = ctx.program._wrap(est.guide)

            def log_q(u: Any, k: Any, batch: Mapping[str, Any], fake: Any, codes: dict) -> Any:
                fn = handlers.condition(guide, data=jax.lax.stop_gradient(codes))
                fn = handlers.substitute(fn, data=self.constrain(u))
                args = {**static, **batch, self.key: fake}
                tr = handlers.trace(handlers.seed(fn, k)).get_trace(**args)
                return info_term(tr, est.info_sites, fake.shape[0], est.info_weights)

            self.log_q = log_q
            fake, codes = generate(unconstrained, k_init, ctx.data)
            fn = handlers.condition(guide, data=codes)
            tr = handlers.trace(handlers.seed(fn, k_init)).get_trace(**{**ctx.data, self.key: fake})
            info_term(
                tr, est.info_sites, fake.shape[0], est.info_weights
            )  # Q samples every code, or a named error
            for n, s in tr.items():
                if s["type"] == "param" and n not in unconstrained:
                    c = s["kwargs"].get("constraint", constraints.real)
                    self.transforms[n] = biject_to(c)
                    unconstrained[n] = self.transforms[n].inv(s["value"])
        init, apply = self._critic(ctx)
        if est.spectral_norm:
            self.apply = lambda p, x, *c: apply(spectral_normalise(p), x, *c)
        else:
            self.apply = apply
        critic = init(k_critic)
        self._check_critic(critic, {k: ctx.data[k] for k in self.arrays})
        spec = est._optim()
        total = est._total_steps()
        self.tx_g = spec._optax_one("generator", total)
        self.tx_d = spec._optax_one("discriminator", total)
        self.state = {
            "g": unconstrained,
            "d": critic,
            "opt_g": self.tx_g.init(unconstrained),
            "opt_d": self.tx_d.init(critic),
            "key": key,
        }
        if est.ema:
            self.state["ema"] = unconstrained
        self.previous = self.state
        self._step = jax.jit(self._make_step())

    # ------------------------------------------------------------------ the critic
    def _critic(self, ctx: FitContext) -> tuple[Callable, Callable]:
        est, obj, critic = self.est, ctx.program.obj, self.est.discriminator
        if critic is None and declares(obj, "discriminator"):
            critic = obj.discriminator("numpyro")
        if critic is None:
            classes = class_counts(ctx.data_np, self.covs)
            width = est.pack * input_features(ctx.data_np, self.key, self.covs, classes)
            from ppgen.nn_jax import mlp_critic  # JAX only when a NumPyro fit runs

            counts = [classes.get(k) for k in self.covs]
            if est.pack == 1 or not any(counts):
                return mlp_critic(width, est.hidden, counts)
            return _packed_labels(mlp_critic(width, est.hidden, [None] * len(counts)), counts)
        m = est.pack  # the packed shapes the critic will see
        x = pack(ctx.data[self.key][: 2 * m], m)
        c = [pack(ctx.data[k][: 2 * m], m) for k in self.covs]
        return user_critic(critic, [x, *c], "x, *covariates")

    def _check_critic(self, params: Any, data: Mapping[str, Any]) -> None:
        context = [data[k] for k in self.covs]
        call = lambda x, *c: self.apply(params, x, *c)  # noqa: E731
        check_critic(call, self._real(data), context, self.site, self.covs, self.est.pack)

    def _real(self, batch: Mapping[str, Any]) -> Any:
        x = batch[self.key]
        return x if x.dtype.kind == "f" else x.astype(float)

    # ------------------------------------------------------------------ the step
    def _make_step(self) -> Callable:
        import jax
        import jax.numpy as jnp
        import optax

        est, ops = self.est, array_ops("numpyro")
        apply, generate = self.apply, self.generate

        def d_out(p: Any, x: Any, c: list) -> Any:
            out = apply(p, x, *c)
            return out.reshape(out.shape[0])

        def step(state: dict, batch: dict) -> tuple[dict, dict]:
            m = est.pack  # PacGAN: the critic sees packed inputs (m data side by side)
            real, c = pack(self._real(batch), m), [pack(batch[k], m) for k in self.covs]
            g, d, opt_d, key = state["g"], state["d"], state["opt_d"], state["key"]

            def loss_d(p: Any, fake: Any, k_gp: Any) -> Any:
                dr, df = d_out(p, real, c), d_out(p, fake, c)
                ld = discriminator_loss(est.loss, dr, df, ops)
                gp = jnp.zeros((), ld.dtype)
                if est.loss == "wgan-gp":
                    gp = gradient_penalty_jax(apply, p, real, fake, k_gp, *c)
                return ld + est.gp_weight * gp, (gp, dr.mean() - df.mean())

            def critic_update(carry: tuple, _: Any) -> tuple:
                d, opt_d, key, _ = carry
                key, k_fake, k_gp = jax.random.split(key, 3)
                fake = pack(jax.lax.stop_gradient(generate(g, k_fake, batch)[0]), m)
                (total, (gp, wd)), grads = jax.value_and_grad(loss_d, has_aux=True)(d, fake, k_gp)
                upd, opt_d = self.tx_d.update(grads, opt_d, d)
                return (optax.apply_updates(d, upd), opt_d, key, k_fake), (total, gp, wd)

            # a scan, not a Python loop: one compiled critic update whatever n_critic is
            (d, opt_d, key, k_fake), outs = jax.lax.scan(
                critic_update, (d, opt_d, key, key), None, length=est.n_critic
            )
            total, gp, wd = (v[-1] for v in outs)

            def loss_g(u: Any) -> Any:  # the last critic update's noise, as the torch engine
                fake, codes = generate(u, k_fake, batch)
                lg = generator_loss(est.loss, d_out(d, pack(fake, m), c), ops)
                if not est.info_sites:
                    return lg, (lg, jnp.zeros((), lg.dtype))
                weighted, info = self.log_q(u, k_fake, batch, fake, codes)
                return lg - weighted, (lg, info)

            (_, (lg, info)), grads = jax.value_and_grad(loss_g, has_aux=True)(g)
            new = self._generator_update(state, grads, d, opt_d, key)
            metrics = {"loss": total, "loss_d": total, "loss_g": lg}
            if est.info_sites:
                metrics["info"] = info
            if est.loss == "wgan-gp":
                metrics["gp"], metrics["wasserstein"] = gp, wd
            return new, metrics

        return step

    def _generator_update(self, state: dict, grads: Any, d: Any, opt_d: Any, key: Any) -> dict:
        """The step's new state: the generator group updated from ``grads`` (and the EMA of its
        weights when asked for), beside the critic's ``d``/``opt_d`` and the ``key``."""
        import jax
        import optax

        g, ema = state["g"], self.est.ema
        upd, opt_g = self.tx_g.update(grads, state["opt_g"], g)
        g = optax.apply_updates(g, upd)
        new = {"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d, "key": key}
        if "ema" in state:
            new["ema"] = jax.tree_util.tree_map(
                lambda e, v: ema * e + (1.0 - ema) * v, state["ema"], g
            )
        return new

    def step(self, data: Mapping[str, Any]) -> dict[str, Any]:
        self.previous = self.state
        self.state, metrics = self._step(self.state, {k: data[k] for k in self.arrays})
        return metrics

    def abort_step(self) -> None:
        """A step is one jitted call: nothing half-done to undo."""

    # rewind, state_dict, load_state_dict: JaxState's (the state is one pytree)

    def live_params(self, n: int) -> dict[str, Any] | None:
        """The parameters now, repeated ``n`` times (samples during training); ``None`` for
        nested parameters (network modules), which predictive cannot substitute by name."""
        return repeat_params(self.constrain(self.state.get("ema", self.state["g"])), n)

    def nonfinite(self) -> list[str]:
        import jax

        bad = [k for k, v in flatten_params(self.state["g"]).items() if not np.isfinite(v).all()]
        leaves = jax.tree_util.tree_leaves_with_path(self.state["d"])
        bad += [
            "discriminator" + jax.tree_util.keystr(p)
            for p, v in leaves
            if not np.isfinite(np.asarray(v)).all()
        ]
        return bad

    # ------------------------------------------------------------------ results
    def finalize(self, history: dict[str, list[float]]) -> Fit:
        import jax

        u = self.state.get("ema", self.state["g"])
        params = flatten_params(self.constrain(u))
        leaves = jax.tree_util.tree_leaves(self.state["d"])
        critic = {f"leaf{i}": np.asarray(v) for i, v in enumerate(leaves)}
        return Fit(
            program=self.ctx.program,
            estimator=self.est,
            info=self.ctx.info,
            data=self.ctx.data_np,
            params=params,
            param_state=params,
            history=history,
            seed=self.ctx.seed,
            device=self.ctx.device,
            diagnostics={"site": self.site, "covariates": self.covs, "loss": self.est.loss},
            auxiliary={"discriminator": critic},
            auxiliary_settings={"discriminator": {"leaves": len(leaves)}},
        )

    @staticmethod
    def restore(est: Any, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        fit.param_state = dict(state)
