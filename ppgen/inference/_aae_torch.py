"""The adversarial autoencoder's torch engine: ALI's encoder and decoder set-up, a critic on
the codes alone, and the reconstruction term of the ELBO."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyro.poutine as poutine
import torch
from torch import nn

from ppgen.errors import EstimatorError
from ppgen.inference._adversarial_torch import _spectral, frozen, gradient_penalty
from ppgen.inference._ali_torch import TorchALI
from ppgen.inference.objectives.gan import array_ops, discriminator_loss, generator_loss
from ppgen.nn import Critic, modules_registered

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["TorchAAE"]

_OPS = array_ops("pyro")


class TorchAAE(TorchALI):
    """One adversarial-autoencoder run on a Pyro program (see :class:`~ppgen.inference.AAE`):
    ALI's checks, encoder and optimiser groups; the critic sees codes only."""

    covariate_critic = False  # the critic sees the codes only

    def __init__(self, est: Any, ctx: FitContext) -> None:
        super().__init__(est, ctx)
        self._prior = ctx.program.ops.simulator(self.model, self.latents)

    # ------------------------------------------------------------------ the critic on codes
    def _critic(self, ctx: FitContext, device: str) -> nn.Module:
        est, critic = self.est, self.est.discriminator
        if critic is None:
            width = sum(math.prod(self.shapes[s]) for s in self.latents)
            critic = Critic(int(width), est.hidden, [None] * (len(self.latents) - 1))
        if not isinstance(critic, nn.Module):
            raise EstimatorError(
                "`discriminator` of AAE must be a torch.nn.Module called D(z) (D(z1, z2, ...) "
                f"with several latent sites) returning one number per code; got "
                f"{type(critic).__name__}."
            )
        critic.to(device)
        return _spectral(critic) if est.spectral_norm else critic

    def _check_critic(self, data: Mapping[str, Any]) -> None:
        n = 2
        zs = [torch.zeros((n, *self.shapes[s])) for s in self.latents]
        shapes = ", ".join(f"`{s}` {self.shapes[s]}" for s in self.latents)
        try:
            with torch.no_grad():
                out = self.critic(*zs)
        except Exception as e:
            raise EstimatorError(
                f"The discriminator fails on the codes {shapes}: {type(e).__name__}: {e}. Size "
                "its input to the codes, or leave `discriminator=None` for a default."
            ) from e
        if tuple(out.shape) not in ((n,), (n, 1)):
            raise EstimatorError(
                f"The discriminator must return one number per code, shape ({n},) or ({n}, 1); "
                f"it returned {tuple(out.shape)}."
            )

    def _dz(self, zs: list[torch.Tensor]) -> torch.Tensor:
        return self._d(zs[0], zs[1:])

    def _dz_joint(self, u: torch.Tensor) -> torch.Tensor:
        sizes = [math.prod(self.shapes[s]) for s in self.latents]
        parts = torch.split(u, sizes, -1)
        return self._dz([p.reshape(len(u), *self.shapes[s]) for p, s in zip(parts, self.latents)])

    # ------------------------------------------------------------------ the two terms
    def _sample_prior(self, data: Mapping[str, Any]) -> list[torch.Tensor]:
        out = self._prior(data)
        return [out[s].detach() for s in self.latents]

    def _log_lik(self, data: Mapping[str, Any], zs: list[torch.Tensor]) -> torch.Tensor:
        """Mean per-datum :math:`\\log p(x \\mid z)` of the observed site at the codes ``zs``."""
        fixed = poutine.condition(self.model, data=dict(zip(self.latents, zs, strict=True)))
        with modules_registered():
            tr = poutine.trace(fixed).get_trace(**data)
        node = tr.nodes[self.site]
        return node["fn"].log_prob(node["value"]).sum() / len(zs[0])

    def _step(self, data: Mapping[str, Any]) -> dict[str, float]:
        est, opt = self.est, self.optim
        for _ in range(est.n_critic):
            with torch.no_grad():
                z_enc = self._encode(data)
            z_prior = self._sample_prior(data)
            d_real, d_fake = self._dz(z_prior), self._dz(z_enc)
            total = discriminator_loss(est.loss, d_real, d_fake, _OPS)
            if est.loss == "wgan-gp":
                join = lambda zs: torch.cat([z.reshape(len(z), -1) for z in zs], -1)  # noqa: E731
                gp = gradient_penalty(self._dz_joint, join(z_prior), join(z_enc))
                total = total + est.gp_weight * gp
            opt.zero_grad(["discriminator"])
            total.backward()
            opt.step(["discriminator"])
        with frozen(self._critic_list):  # for the autoencoder's backward pass
            z_enc = self._encode(data)
            recon = -self._log_lik(data, z_enc)
            adv = generator_loss(est.loss, self._dz(z_enc), _OPS)
            opt.zero_grad(["generator"])
            (recon + est.adversarial_weight * adv).backward()
        opt.step(["generator"])
        opt.schedule()
        self._update_ema()
        metrics = {"loss": recon.item() + est.adversarial_weight * adv.item()}
        metrics.update(loss_d=total.item(), reconstruction=recon.item(), loss_e=adv.item())
        return metrics

    def _diagnostics(self) -> dict[str, Any]:
        return {**super()._diagnostics(), "adversarial_weight": self.est.adversarial_weight}
