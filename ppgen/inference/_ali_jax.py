"""ALI/BiGAN's JAX engine: a NumPyro generator and encoder, a critic on (x, z) pairs, one jit."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.errors import EstimatorError
from ppgen.inference._adversarial_common import (
    class_counts,
    covariate_keys,
    data_key,
    input_features,
)
from ppgen.inference._adversarial_jax import (
    JaxAdversarial,
    gradient_penalty_jax,
    user_critic,
)
from ppgen.inference._ali_torch import mirror
from ppgen.inference._svi_jax import flatten_params
from ppgen.inference.objectives.gan import array_ops, discriminator_loss, generator_loss
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["JaxALI"]


class JaxALI(JaxAdversarial):
    """One ALI/BiGAN run on a NumPyro program (see :class:`~ppgen.inference.ALI`): the
    generator's and the encoder's parameters in one optimiser group, the critic in the
    other, each loop step one jitted call (``n_critic`` critic updates in a ``lax.scan``)."""

    #: the critic sees the data's covariates beside each pair (AAE's does not)
    covariate_critic = True

    def __init__(self, est: Any, ctx: FitContext) -> None:  # noqa: PLW0231 - own set-up
        import jax
        from numpyro import handlers
        from numpyro.distributions import biject_to, constraints

        self.est, self.ctx = est, ctx
        self.site = est.observed_site(ctx.info)
        self.key = data_key(ctx.info, self.site)
        #: covariates the critic sees beside each pair (a conditional BiGAN); not AAE's
        covs = covariate_keys(ctx.data_np, ctx.info, self.site)
        self.covs = covs if self.covariate_critic else []
        self.latents = est.latent_sites(ctx.info)
        self.arrays = [k for k, v in ctx.data.items() if getattr(v, "ndim", 0) > 0]
        static = {k: v for k, v in ctx.data.items() if k not in self.arrays}
        ops, model = ctx.program.ops, ctx.program.model
        guide = est.guide if est.guide is not None else ctx.program.guide
        if guide is not None and est.guide is not None:
            guide = ctx.program._wrap(guide)
        key, k_init, k_enc, k_critic = jax.random.split(jax.random.PRNGKey(ctx.seed), 4)
        prior = handlers.trace(handlers.seed(model, k_init)).get_trace(**ctx.data)
        n = int(np.shape(ctx.data[self.key])[0])
        self.shapes: dict[str, tuple[int, ...]] = {}
        for s in self.latents:
            shape = tuple(prior[s]["value"].shape)
            if not shape or shape[0] != n:
                raise EstimatorError(
                    f"ALI/BiGAN pairs each datum with its own code, but the latent site `{s}` "
                    f"has shape {shape}, not one row per datum of `{self.site}` ({n} data)."
                )
            self.shapes[s] = shape[1:]
        params = {m: s for m, s in prior.items() if s["type"] == "param"}
        enc = handlers.trace(handlers.seed(guide, k_enc)).get_trace(**ctx.data)
        sampled = [m for m, s in enc.items() if s["type"] == "sample" and not s["is_observed"]]
        if sorted(sampled) != sorted(self.latents):
            raise EstimatorError(
                f"The encoder (`guide=`) samples {sampled}; it must sample exactly the "
                f"program's latent sites {self.latents}, each given the data."
            )
        for s in self.latents:
            if tuple(enc[s]["value"].shape) != tuple(prior[s]["value"].shape):
                raise EstimatorError(
                    f"The encoder samples `{s}` with shape {tuple(enc[s]['value'].shape)}; the "
                    f"program's prior draws {tuple(prior[s]['value'].shape)}."
                )
            if not enc[s]["fn"].has_rsample:
                raise EstimatorError(
                    f"The encoder's `{s}` ({type(enc[s]['fn']).__name__}) is not "
                    "reparameterisable: use `Delta(E(x))` (BiGAN) or a `Normal` (ALI)."
                )
        encoder_params = {m: s for m, s in enc.items() if s["type"] == "param"}
        if not params or not set(encoder_params) - set(params):
            which = "program" if not params else "encoder (`guide=`)"
            raise EstimatorError(
                f"ALI found no parameters in the {which} to train: use `numpyro.param` sites "
                "or a network module."
            )
        self.q = sorted(set(encoder_params) - set(params))
        params.update(encoder_params)
        self.transforms = {
            m: biject_to(s["kwargs"].get("constraint", constraints.real)) for m, s in params.items()
        }
        self.constrain = lambda u: {m: self.transforms[m](v) for m, v in u.items()}
        site, latents = self.site, self.latents

        def generate(u: Any, k: Any, batch: Mapping[str, Any]) -> tuple[Any, list]:
            out = ops.simulate(
                model,
                {**static, **batch},
                sites=[site, *latents],
                rng_key=k,
                params=self.constrain(u),
            )
            x = out[site]
            return (x if x.dtype.kind == "f" else x.astype(float)), [out[s] for s in latents]

        def encode(u: Any, k: Any, batch: Mapping[str, Any]) -> list:
            out = ops.simulate(
                guide, {**static, **batch}, sites=latents, rng_key=k, params=self.constrain(u)
            )
            return [out[s] for s in latents]

        self.generate, self.encode = generate, encode
        self.model, self.static = model, static
        example = self._critic_inputs(
            np.asarray(ctx.data[self.key][:2], np.float32), [prior[s]["value"][:2] for s in latents]
        )
        if est.discriminator is None:
            init, self.apply = self._critic_net()
        else:
            names = ", ".join(["x", *latents, *self.covs][-len(example) :])
            init, self.apply = user_critic(est.discriminator, example, names)
            self._check_user_critic(init(k_critic), example, names)
        unconstrained = {m: self.transforms[m].inv(s["value"]) for m, s in params.items()}
        spec, total = est._optim(), est._total_steps()
        self.tx_g = spec._optax_one("generator", total)
        self.tx_d = spec._optax_one("discriminator", total)
        critic = init(k_critic)
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

    def _critic_inputs(self, x: Any, zs: list) -> list:
        """What the critic is called with, after its params: the pair ``x, z...`` and the
        covariates."""
        return [x, *zs, *(self.ctx.data[k][: len(x)] for k in self.covs)]

    def _check_user_critic(self, params: Any, example: list, names: str) -> None:
        n = len(example[0])
        try:
            out = self.apply(params, *example)
        except Exception as e:
            raise EstimatorError(
                f"The discriminator fails on {n} examples of its input ({names}; shapes "
                f"{[tuple(np.shape(a)) for a in example]}): {type(e).__name__}: {e}."
            ) from e
        shape = tuple(np.shape(out))
        if len(shape) not in (1, 2) or shape[0] != n:
            raise EstimatorError(
                f"The discriminator must return one number per input, shape ({n},), or k "
                f"scores each, ({n}, k); it returned {shape} for {n} inputs."
            )

    def _critic_net(self) -> tuple[Callable, Callable]:
        """The default critic ``(init, apply)``: an MLP on the flattened pair (x, z...)."""
        from ppgen.nn_jax import mlp_critic, pair_critic

        data, k = self.ctx.data_np, len(self.latents)
        classes = class_counts(data, self.covs)
        counts = [classes.get(c) for c in self.covs]
        wxc = input_features(data, self.key, self.covs, classes)  # x and the covariates
        wz = int(sum(math.prod(v) for v in self.shapes.values()))
        if self.est.unary:
            wx = int(math.prod(np.shape(data[self.key])[1:]))
            return pair_critic(wx, wz, self.est.hidden, k, wxc - wx, counts)
        return mlp_critic(wxc + wz, self.est.hidden, [None] * k + counts)

    def _make_step(self) -> Callable:
        import jax
        import jax.numpy as jnp
        import optax

        est, ops, apply = self.est, array_ops("numpyro"), self.apply
        generate, encode = self.generate, self.encode

        def d_out(p: Any, x: Any, zs: list) -> Any:
            out = apply(p, x, *zs)
            return out.reshape(out.shape[0], -1)  # one column per score (BigBiGAN: three)

        def joint(x: Any, zs: list) -> Any:
            m = x.shape[0]
            return jnp.concatenate([x.reshape(m, -1), *(z.reshape(m, -1) for z in zs)], -1)

        widths = [math.prod(self.shapes[s]) for s in self.latents]
        x_shape = tuple(np.shape(self.ctx.data[self.key])[1:])  # one datum of the batches

        def d_joint(p: Any, u: Any, *context: Any) -> Any:
            parts = jnp.split(u, np.cumsum([u.shape[1] - sum(widths), *widths[:-1]]), -1)
            x = parts[0].reshape(u.shape[0], *x_shape)
            zs = [q.reshape(u.shape[0], *self.shapes[s]) for q, s in zip(parts[1:], self.latents)]
            return d_out(p, x, [*zs, *context])

        def step(state: dict, batch: dict) -> tuple[dict, dict]:
            real = self._real(batch)
            context = [batch[k] for k in self.covs]  # beside both kinds of pairs
            g, key = state["g"], state["key"]

            def loss_d(p: Any, fake: Any, zp: list, ze: list, k_gp: Any) -> Any:
                dr, df = d_out(p, real, [*ze, *context]), d_out(p, fake, [*zp, *context])
                ld = discriminator_loss(est.loss, dr, df, ops)
                gp = jnp.zeros((), ld.dtype)
                if est.loss == "wgan-gp":
                    jr, jf = joint(real, ze), joint(fake, zp)
                    gp = gradient_penalty_jax(d_joint, p, jr, jf, k_gp, *context)
                return ld + est.gp_weight * gp, (gp, dr.mean() - df.mean())

            def critic_update(carry: tuple, _: Any) -> tuple:
                d, opt_d, key, _ = carry
                key, k_fake, k_enc, k_gp = jax.random.split(key, 4)
                fake, zp = jax.lax.stop_gradient(generate(g, k_fake, batch))
                ze = jax.lax.stop_gradient(encode(g, k_enc, batch))
                (total, (gp, wd)), grads = jax.value_and_grad(loss_d, has_aux=True)(
                    d, fake, zp, ze, k_gp
                )
                upd, opt_d = self.tx_d.update(grads, opt_d, d)
                return (optax.apply_updates(d, upd), opt_d, key, (k_fake, k_enc)), (total, gp, wd)

            (d, opt_d, key, (k_fake, k_enc)), outs = jax.lax.scan(
                critic_update,
                (state["d"], state["opt_d"], key, (key, key)),
                None,
                length=est.n_critic,
            )
            total, gp, wd = (v[-1] for v in outs)

            def loss_ge(u: Any) -> Any:  # the last critic update's noise, as the torch engine
                fake, zp = generate(u, k_fake, batch)
                ze = encode(u, k_enc, batch)
                lg = generator_loss(est.loss, d_out(d, fake, [*zp, *context]), ops)
                d_enc = d_out(d, real, [*ze, *context])
                le = generator_loss(est.loss, mirror(est.loss, d_enc), ops)
                return lg + le, (lg, le)

            (_, (lg, le)), grads = jax.value_and_grad(loss_ge, has_aux=True)(g)
            new = self._generator_update(state, grads, d, opt_d, key)
            metrics = {"loss": total, "loss_d": total, "loss_g": lg, "loss_e": le}
            if est.loss == "wgan-gp":
                metrics["gp"], metrics["wasserstein"] = gp, wd
            return new, metrics

        return step

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        fit = super().finalize(history)
        fit.diagnostics = {
            "site": self.site,
            "latent_sites": list(self.latents),
            "covariates": list(self.covs),
            "encoder_params": list(self.q),
            "loss": self.est.loss,
        }
        u = self.state.get("ema", self.state["g"])
        encode, arrays = self.encode, self.arrays

        def encoder(fit: Fit, data: Mapping[str, Any], **kwargs: Any) -> dict[str, np.ndarray]:
            import jax

            native = fit._native(data)
            zs = encode(u, jax.random.PRNGKey(fit.seed), {k: native[k] for k in arrays})
            return {s: np.asarray(z) for s, z in zip(self.latents, zs, strict=True)}

        fit.encoder = encoder
        fit.params = flatten_params(self.constrain(u))
        k = self.est.local_draws
        if k:  # the encoder's draws of each training datum's codes, from the fit's seed
            import jax

            keys = jax.random.split(jax.random.PRNGKey(self.ctx.seed), k)
            data = {name: self.ctx.data[name] for name in arrays}
            runs = [encode(u, key, data) for key in keys]
            fit.local_draws = {
                s: np.stack([np.asarray(r[i]) for r in runs])[None]
                for i, s in enumerate(self.latents)
            }
            fit.diagnostics["local_draws"] = fit.diagnostics["num_draws"] = k
        return fit
