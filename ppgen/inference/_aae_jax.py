"""The adversarial autoencoder's JAX engine: ALI's NumPyro set-up (encoder checks, the two
optimiser groups, EMA, codes of the training data), a critic on the codes alone and the
reconstruction term of the ELBO, one jitted call per step."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ppgen.inference._adversarial_jax import gradient_penalty_jax
from ppgen.inference._ali_jax import JaxALI
from ppgen.inference.objectives.gan import array_ops, discriminator_loss, generator_loss
from ppgen.result import Fit

__all__ = ["JaxAAE"]


class JaxAAE(JaxALI):
    """One adversarial-autoencoder run on a NumPyro program (see :class:`~ppgen.inference.AAE`):
    each step ``n_critic`` updates of a critic ``D(z)`` telling prior draws from the batch's
    codes (a ``lax.scan``), then one update of encoder and decoder on
    ``-mean log p(x | z) + adversarial_weight * generator_loss(D(z))`` at fresh codes, as the
    torch engine does."""

    covariate_critic = False  # the critic sees the codes only

    def _critic_inputs(self, x: Any, zs: list) -> list:
        return zs  # D(z): the codes only

    def _critic_net(self) -> tuple[Callable, Callable]:
        from ppgen.nn_jax import mlp_critic

        width = sum(math.prod(v) for v in self.shapes.values())
        return mlp_critic(int(width), self.est.hidden, [None] * (len(self.latents) - 1))

    def _make_step(self) -> Callable:
        import jax
        import jax.numpy as jnp
        import optax
        from numpyro import handlers

        est, ops, apply = self.est, array_ops("numpyro"), self.apply
        generate, encode = self.generate, self.encode
        model, site, latents, static = self.model, self.site, self.latents, self.static
        shapes = self.shapes
        widths = [math.prod(shapes[s]) for s in latents]

        def d_out(p: Any, zs: list) -> Any:
            out = apply(p, zs[0], *zs[1:])
            return out.reshape(out.shape[0])

        def joint(zs: list) -> Any:
            m = zs[0].shape[0]
            return jnp.concatenate([z.reshape(m, -1) for z in zs], -1)

        def d_joint(p: Any, u: Any) -> Any:
            parts = jnp.split(u, np.cumsum(widths[:-1]), -1)
            return d_out(p, [q.reshape(u.shape[0], *shapes[s]) for q, s in zip(parts, latents)])

        def log_lik(u: Any, zs: list, batch: dict) -> Any:
            """Mean per-datum log p(x | z) of the observed site at the codes ``zs``."""
            fixed = handlers.condition(model, data=dict(zip(latents, zs, strict=True)))
            fn = handlers.substitute(fixed, data=self.constrain(u))
            node = handlers.trace(handlers.seed(fn, 0)).get_trace(**{**static, **batch})[site]
            return node["fn"].log_prob(node["value"]).sum() / zs[0].shape[0]

        def step(state: dict, batch: dict) -> tuple[dict, dict]:
            g, key = state["g"], state["key"]

            def loss_d(p: Any, zp: list, ze: list, k_gp: Any) -> Any:
                ld = discriminator_loss(est.loss, d_out(p, zp), d_out(p, ze), ops)
                if est.loss == "wgan-gp":
                    ld = ld + est.gp_weight * gradient_penalty_jax(
                        d_joint, p, joint(zp), joint(ze), k_gp
                    )
                return ld

            def critic_update(carry: tuple, _: Any) -> tuple:
                d, opt_d, key = carry
                key, k_prior, k_enc, k_gp = jax.random.split(key, 4)
                zp = jax.lax.stop_gradient(generate(g, k_prior, batch)[1])
                ze = jax.lax.stop_gradient(encode(g, k_enc, batch))
                total, grads = jax.value_and_grad(loss_d)(d, zp, ze, k_gp)
                upd, opt_d = self.tx_d.update(grads, opt_d, d)
                return (optax.apply_updates(d, upd), opt_d, key), total

            (d, opt_d, key), totals = jax.lax.scan(
                critic_update, (state["d"], state["opt_d"], key), None, length=est.n_critic
            )
            key, k_ae = jax.random.split(key)

            def loss_ae(u: Any) -> Any:
                ze = encode(u, k_ae, batch)
                recon = -log_lik(u, ze, batch)
                adv = generator_loss(est.loss, d_out(d, ze), ops)
                return recon + est.adversarial_weight * adv, (recon, adv)

            (loss, (recon, adv)), grads = jax.value_and_grad(loss_ae, has_aux=True)(g)
            new = self._generator_update(state, grads, d, opt_d, key)
            metrics = {"loss": loss, "loss_d": totals[-1], "reconstruction": recon, "loss_e": adv}
            return new, metrics

        return step

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        fit = super().finalize(history)
        fit.diagnostics["adversarial_weight"] = self.est.adversarial_weight
        return fit
