"""VAE-GAN's torch engine: ALI's encoder and generator set-up, a critic on x whose hidden
features measure the reconstructions, and three losses (Larsen et al. 2016)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyro.poutine as poutine
import torch
from torch import nn

from ppgen.backends._pyro_trace import Uncondition
from ppgen.errors import EstimatorError
from ppgen.inference._adversarial_torch import _spectral, frozen
from ppgen.inference._ali_torch import TorchALI
from ppgen.inference.objectives.gan import array_ops, discriminator_loss, generator_loss
from ppgen.nn import Critic, modules_registered

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["TorchVAEGAN"]

_OPS = array_ops("pyro")


class TorchVAEGAN(TorchALI):
    """One VAE-GAN run on a Pyro program (see :class:`~ppgen.inference.VAEGAN`)."""

    covariate_critic = False  # the critic sees x only

    def __init__(self, est: Any, ctx: FitContext) -> None:
        super().__init__(est, ctx)
        self._decoder_model = Uncondition()(self.model)
        gen_ids = {id(p) for p in self.gen.values()}
        self._enc_params = [p for p in self.q.values() if id(p) not in gen_ids]
        self._dec_params = list(self.gen.values())

    # ------------------------------------------------------------------ the critic on x
    def _critic(self, ctx: FitContext, device: str) -> nn.Module:
        est, critic = self.est, self.est.discriminator
        if critic is None:
            critic = Critic(int(math.prod(ctx.data_np[self.key].shape[1:])), est.hidden)
        if not isinstance(critic, nn.Module) or not callable(getattr(critic, "features", None)):
            raise EstimatorError(
                "`discriminator` of VAEGAN must be a torch.nn.Module D(x) with a "
                "`features(x)` method (the hidden layer the reconstructions are compared "
                f"by, as ppgen.nn.Critic has); got {type(critic).__name__}."
            )
        critic.to(device)
        return _spectral(critic) if est.spectral_norm else critic

    def _check_critic(self, data: Mapping[str, Any]) -> None:
        x = self._real(data)[:2]
        try:
            with torch.no_grad():
                out, feats = self.critic(x), self.critic.features(x)
        except Exception as e:
            raise EstimatorError(
                f"The discriminator fails on data of shape {tuple(x.shape[1:])}: "
                f"{type(e).__name__}: {e}."
            ) from e
        if tuple(out.shape) not in ((2,), (2, 1)) or feats.shape[0] != 2:
            raise EstimatorError(
                "The discriminator must return one number per datum and `features(x)` one row "
                f"per datum; got {tuple(out.shape)} and {tuple(feats.shape)}."
            )

    # ------------------------------------------------------------------ pieces
    def _encode_with_log_q(self, data: Mapping[str, Any]) -> tuple[list, torch.Tensor]:
        with modules_registered():
            tr = poutine.trace(self.guide).get_trace(**data)
        zs = [tr.nodes[s]["value"] for s in self.latents]
        log_q = sum(tr.nodes[s]["fn"].log_prob(tr.nodes[s]["value"]) for s in self.latents)
        return zs, log_q

    def _decode(self, data: Mapping[str, Any], zs: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The observed site simulated at the codes ``zs``, and their prior log-density."""
        fixed = poutine.condition(self._decoder_model, data=dict(zip(self.latents, zs)))
        with modules_registered():
            tr = poutine.trace(fixed).get_trace(**data)
        x = tr.nodes[self.site]["value"]
        log_p = sum(tr.nodes[s]["fn"].log_prob(tr.nodes[s]["value"]) for s in self.latents)
        return (x if x.is_floating_point() else x.to(torch.get_default_dtype())), log_p

    def _step(self, data: Mapping[str, Any]) -> dict[str, float]:
        est, opt, critic = self.est, self.optim, self.critic
        real = self._real(data)
        for _ in range(est.n_critic):
            with torch.no_grad():
                zs, _ = self._encode_with_log_q(data)
                rec, _ = self._decode(data, zs)
                fake, _ = self._generate(data)
            d_real = self._d(real, [])
            d_fake = torch.cat([self._d(rec, []), self._d(fake, [])])
            loss_d = discriminator_loss(est.loss, torch.cat([d_real, d_real]), d_fake, _OPS)
            opt.zero_grad(["discriminator"])
            loss_d.backward()
            opt.step(["discriminator"])
        with frozen(self._critic_list):
            zs, log_q = self._encode_with_log_q(data)
            rec, log_p = self._decode(data, zs)
            fake, _ = self._generate(data)
            kl = (log_q - log_p).mean()
            feat = critic.features(rec) - critic.features(real).detach()
            recon = 0.5 * (feat**2).reshape(len(real), -1).sum(-1).mean()
            d_fake = torch.cat([self._d(rec, []), self._d(fake, [])])
            loss_g = generator_loss(est.loss, d_fake, _OPS)
            opt.zero_grad(["generator"])
            # the encoder minimises KL + feature reconstruction; the decoder gamma *
            # reconstruction + the generator's GAN term (Larsen et al., Algorithm 1)
            g_enc = torch.autograd.grad(kl + recon, self._enc_params, retain_graph=True)
            g_dec = torch.autograd.grad(est.gamma * recon + loss_g, self._dec_params)
        for p, g in zip([*self._enc_params, *self._dec_params], [*g_enc, *g_dec], strict=True):
            p.grad = g
        opt.step(["generator"])
        opt.schedule()
        self._update_ema()
        return {
            "loss": loss_d.item(),
            "loss_d": loss_d.item(),
            "loss_g": loss_g.item(),
            "kl": kl.item(),
            "reconstruction": recon.item(),
        }

    def _diagnostics(self) -> dict[str, Any]:
        return {**super()._diagnostics(), "gamma": self.est.gamma}
