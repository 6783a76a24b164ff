"""ALI/BiGAN's torch engine: a Pyro generator and encoder, a critic on (x, z) pairs."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from torch import nn

from ppgen.backends._pyro_ops import seeded
from ppgen.errors import EstimatorError
from ppgen.inference._adversarial_common import (
    class_counts,
    covariate_keys,
    data_key,
    input_features,
)
from ppgen.inference._adversarial_torch import (
    TorchAdversarial,
    _spectral,
    frozen,
    gradient_penalty,
)
from ppgen.inference._distributed import shard_of, start_in_step
from ppgen.inference._pyro import (
    load_unconstrained,
    snapshot_params,
    start_run,
)
from ppgen.inference.objectives.gan import array_ops, discriminator_loss, generator_loss
from ppgen.nn import Critic, PairCritic, modules_registered
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["TorchALI", "mirror"]

_OPS = array_ops("pyro")


def mirror(loss: str, d: torch.Tensor) -> torch.Tensor:
    """The critic's output with real and fake exchanged: ``-d`` (``1 - d`` for ``lsgan``).

    The generator loss at ``mirror(d_real)`` asks the encoder's pairs to look *generated*,
    BiGAN's objective for the encoder: e.g. ``ns`` gives :math:`E[\\operatorname{sp}(d_r)] =
    -E[\\log(1 - D)]`, ``wgan-gp``/``hinge`` :math:`E[d_r]`, ``lsgan``
    :math:`\\tfrac12 E[d_r^2]` (the fake label 0).

    Example:
        >>> d = torch.tensor([0.5, -2.0])
        >>> float(generator_loss("lsgan", mirror("lsgan", d), _OPS)) == float(0.5 * (d**2).mean())
        True
        >>> float(generator_loss("wgan-gp", mirror("wgan-gp", d), _OPS)) == float(d.mean())
        True
    """
    return 1.0 - d if loss == "lsgan" else -d


class TorchALI(TorchAdversarial):
    """One ALI/BiGAN run on a Pyro program (see :class:`~ppgen.inference.ALI`).

    Reuses :class:`TorchAdversarial`'s checkpoint state (``self.gen`` the generator's params,
    ``self.q`` the encoder's, the critic, the two optimiser groups, the RNG), NaN guard and
    helpers; the critic, the step, the fit and the restore are ALI's.
    """

    #: the critic sees the data's covariates beside each pair (AAE's and VAE-GAN's do not)
    covariate_critic = True

    def __init__(self, est: Any, ctx: FitContext) -> None:  # noqa: PLW0231 - own set-up
        self.est, self.ctx = est, ctx
        self.device = device = start_run(ctx)
        info = ctx.info
        self.site = est.observed_site(info)
        self.key = data_key(info, self.site)
        self.latents = est.latent_sites(info)
        #: covariates (data arguments with a row per datum that feed no observed site, e.g.
        #: class labels): the critic sees them beside each pair (a conditional BiGAN)
        self.covs = covariate_keys(ctx.data_np, info, self.site) if self.covariate_critic else []
        self.model, ops = ctx.program.model, ctx.program.ops
        self._simulator = ops.simulator(self.model, [self.site, *self.latents])
        with torch.no_grad():  # creates the generator's params; the prior's shapes
            prior = ops.simulate(self.model, ctx.data, sites=[self.site, *self.latents])
        self.gen = dict(pyro.get_param_store().named_parameters())
        if not self.gen:
            raise EstimatorError(
                "ALI found no parameters in the program to train: register the generator with "
                "`pyro.module(name, net)` or use `pyro.param` sites."
            )
        self._declared = self._declared_simulator(ctx, [self.site, *self.latents])
        x = self._real(ctx.data)
        self._check_local(prior, len(x))
        self.guide = self._resolve_guide(ctx)
        self.q = self._init_encoder(ctx.data, prior)
        self._encoder = ops.simulator(self.guide, self.latents)
        self.critic = self._critic(ctx, device)
        self._check_critic(ctx.data)
        self._critic_list = self._critic_params()
        # G and E fool the critic together: one optimiser group
        groups = {"generator": [*self.gen.values(), *self.q.values()]}
        groups["discriminator"] = self._critic_list
        start_in_step(ctx, [*groups["generator"], *self._critic_list])
        self.optim = est._optim().torch(groups, est._total_steps(), world=shard_of(ctx)[1])
        both = {**self.gen, **self.q}
        self.ema = {k: v.detach().clone() for k, v in both.items()} if est.ema else None

    # ------------------------------------------------------------------ checks
    def _check_local(self, prior: Mapping[str, torch.Tensor], n: int) -> None:
        """Every latent is per datum: one row per datum of the observed site."""
        shapes = {s: tuple(prior[s].shape) for s in self.latents}
        glob = [s for s, shape in shapes.items() if not shape or shape[0] != n]
        if glob:
            raise EstimatorError(
                f"ALI/BiGAN pairs each datum with its own code, but the latent sites {glob} "
                f"have shapes {[shapes[s] for s in glob]}, not one row per datum of `{self.site}` "
                f"({n} data). Put them in the data plate, or fit global latents another way."
            )
        self.shapes = {s: shape[1:] for s, shape in shapes.items()}

    def _resolve_guide(self, ctx: FitContext) -> Callable[..., Any]:
        guide = self.est.guide
        if guide is None:
            return ctx.program.guide
        if hasattr(guide, "bind") and getattr(guide, "_model", 1) is None:
            guide.bind(ctx.program.model)  # an Amortized() made without the program
        return ctx.program._wrap(guide)

    def _init_encoder(
        self, data: Mapping[str, Any], prior: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Run the encoder once (creating its params) and check its sites against the program."""
        before = set(self.gen)
        try:
            with torch.no_grad():
                tr = poutine.trace(self.guide).get_trace(**data)
        except EstimatorError:
            raise
        except Exception as e:
            raise EstimatorError(
                f"The encoder (`guide=`) fails on the data: {type(e).__name__}: {e}. It is "
                f"called with the program's data arguments ({sorted(data)})."
            ) from e
        sites = {
            n: s
            for n, s in tr.nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
        }
        missing = [s for s in self.latents if s not in sites]
        extra = [s for s in sites if s not in self.latents]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"does not sample the latent site(s) {missing}")
            if extra:
                parts.append(f"samples {extra}, which the program does not have as latents")
            raise EstimatorError(
                f"The encoder (`guide=`) {' and '.join(parts)}: it must sample exactly the "
                f"program's latent sites {self.latents}, each given the data."
            )
        for name in self.latents:
            s, want = sites[name], tuple(prior[name].shape)
            if tuple(s["value"].shape) != want:
                raise EstimatorError(
                    f"The encoder samples `{name}` with shape {tuple(s['value'].shape)}; the "
                    f"program's prior draws {want}. Match the program's plate and event shape "
                    "(e.g. `.to_event(1)` for a vector code)."
                )
            if not s["fn"].has_rsample:
                raise EstimatorError(
                    f"The encoder's `{name}` ({type(s['fn']).__name__}) is not "
                    "reparameterisable: the generator loss could not reach the encoder. Use "
                    "`Delta(E(x))` (BiGAN) or a reparameterised family such as `Normal` (ALI)."
                )
        store = dict(pyro.get_param_store().named_parameters())
        q = {k: v for k, v in store.items() if k not in before}
        if not q:
            raise EstimatorError(
                "The encoder (`guide=`) has no parameters to train: register its network with "
                "`pyro.module(name, net)` or use `pyro.param` sites."
            )
        return q

    # ------------------------------------------------------------------ the critic on pairs
    def _critic(self, ctx: FitContext, device: str) -> nn.Module:
        est = self.est
        critic = est.discriminator
        if critic is None:
            classes = class_counts(ctx.data_np, self.covs)
            counts = [classes.get(k) for k in self.covs]
            wxc = input_features(ctx.data_np, self.key, self.covs, classes)  # x and covariates
            wz = int(sum(math.prod(self.shapes[s]) for s in self.latents))
            if est.unary:
                wx = int(math.prod(ctx.data_np[self.key].shape[1:]))
                critic = PairCritic(wx, wz, est.hidden, len(self.latents), wxc - wx, counts)
            else:  # z: floats, then the covariates
                critic = Critic(wxc + wz, est.hidden, [None] * len(self.latents) + counts)
        if not isinstance(critic, nn.Module):
            raise EstimatorError(
                "`discriminator` of ALI must be a torch.nn.Module called D(x, z) and returning "
                f"one number per pair; got {type(critic).__name__}."
            )
        critic.to(device)
        return _spectral(critic) if est.spectral_norm else critic

    def _describe(self, x: torch.Tensor) -> str:
        zs = ", ".join(f"`{s}` {self.shapes[s]}" for s in self.latents)
        width = math.prod(tuple(x.shape[1:])) + sum(math.prod(self.shapes[s]) for s in self.latents)
        covs = "".join(f", {k}" for k in self.covs)
        after = f", then the covariates {self.covs}" if self.covs else ""
        return (
            f"pairs of `{self.site}` (datum shape {tuple(x.shape[1:])}) and the codes {zs}: "
            f"D(x, {', '.join(self.latents)}{covs}), {width} numbers per pair side by side"
            f"{after}"
        )

    def _check_critic(self, data: Mapping[str, Any]) -> None:
        with torch.no_grad():
            x = self._real(data)[:2]
            zs = [torch.zeros((len(x), *self.shapes[s]), dtype=x.dtype) for s in self.latents]
            context = [data[k][:2] for k in self.covs]
            try:
                out = self.critic(x, *zs, *context)
            except Exception as e:
                raise EstimatorError(
                    f"The discriminator fails on {self._describe(x)}: {type(e).__name__}: {e}. "
                    "Size its input to the pair, or leave `discriminator=None` for a default "
                    "sized from the data and the latent shapes."
                ) from e
        if out.dim() not in (1, 2) or out.shape[0] != len(x):
            raise EstimatorError(
                f"The discriminator must return one number per pair, shape ({len(x)},), or k "
                f"scores per pair, ({len(x)}, k), for {len(x)} pairs; it returned "
                f"{tuple(out.shape)}."
            )

    def _d(self, x: torch.Tensor, context: list[Any]) -> torch.Tensor:
        """The critic's scores, ``(batch, k)``: one column per score (BigBiGAN's three)."""
        out = self.critic(x, *context)
        return out.reshape(out.shape[0], -1)

    def _join(self, x: torch.Tensor, zs: list[torch.Tensor]) -> torch.Tensor:
        """``(x, z1, ...)`` flattened side by side: the gradient penalty's joint input."""
        n = x.shape[0]
        return torch.cat([x.reshape(n, -1), *(z.reshape(n, -1).to(x.dtype) for z in zs)], -1)

    def _d_joint(self, u: torch.Tensor, xshape: tuple[int, ...], *context: Any) -> torch.Tensor:
        n, wx = u.shape[0], math.prod(xshape)
        parts = torch.split(u, [wx, *(math.prod(self.shapes[s]) for s in self.latents)], -1)
        x = parts[0].reshape(n, *xshape)
        zs = [p.reshape(n, *self.shapes[s]) for p, s in zip(parts[1:], self.latents, strict=True)]
        return self._d(x, [*zs, *context])

    # ------------------------------------------------------------------ the two kinds of pairs
    def _encode(self, data: Mapping[str, Any]) -> list[torch.Tensor]:
        with modules_registered():
            out = self._encoder(data)
        return [out[s] for s in self.latents]

    def _generate(self, data: Mapping[str, Any]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self._draw(data)
        x = out[self.site]
        x = x if x.is_floating_point() else x.to(torch.get_default_dtype())
        return x, [out[s] for s in self.latents]

    # ------------------------------------------------------------------ the step
    def _step(self, data: Mapping[str, Any]) -> dict[str, float]:
        est, opt = self.est, self.optim
        real = self._real(data)
        context = [data[k] for k in self.covs]  # beside both kinds of pairs
        for i in range(est.n_critic):
            if i == est.n_critic - 1:  # kept with their graphs for G's and E's update
                z_enc = self._encode(data)
                fake, z_prior = self._generate(data)
            else:
                with torch.no_grad():
                    z_enc = self._encode(data)
                    fake, z_prior = self._generate(data)
            z_enc_d, fake_d = [z.detach() for z in z_enc], fake.detach()
            d_real = self._d(real, [*z_enc_d, *context])
            d_fake = self._d(fake_d, [*z_prior, *context])
            loss_d = discriminator_loss(est.loss, d_real, d_fake, _OPS)
            total = loss_d
            if est.loss == "wgan-gp":
                shape = tuple(real.shape[1:])
                joint_r, joint_f = self._join(real, z_enc_d), self._join(fake_d, z_prior)
                gp = gradient_penalty(self._d_joint, joint_r, joint_f, shape, *context)
                total = loss_d + est.gp_weight * gp
            opt.zero_grad(["discriminator"])
            total.backward()
            opt.step(["discriminator"])
        with frozen(self._critic_list):  # for the generator's and encoder's backward pass
            loss_g = generator_loss(est.loss, self._d(fake, [*z_prior, *context]), _OPS)
            d_enc = self._d(real, [*z_enc, *context])
            loss_e = generator_loss(est.loss, mirror(est.loss, d_enc), _OPS)
            opt.zero_grad(["generator"])
            (loss_g + loss_e).backward()
        opt.step(["generator"])
        opt.schedule()
        self._update_ema()
        metrics = {"loss": total.item(), "loss_d": total.item()}
        metrics["loss_g"], metrics["loss_e"] = loss_g.item(), loss_e.item()
        if est.loss == "wgan-gp":
            metrics["gp"] = gp.item()
            metrics["wasserstein"] = (d_real.mean() - d_fake.mean()).item()
        return metrics

    # ------------------------------------------------------------------ results
    def _diagnostics(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "latent_sites": list(self.latents),
            "covariates": list(self.covs),
            "encoder_params": sorted(self.q),
            "loss": self.est.loss,
        }

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        fit = super().finalize(history)
        k = self.est.local_draws
        if k:  # the encoder's draws of each training datum's codes, the fit's own RNG
            with seeded(self.ctx.seed), torch.no_grad():
                runs = [self._encode(self.ctx.data) for _ in range(k)]
            fit.local_draws = {
                s: np.stack([r[i].detach().cpu().numpy() for r in runs])[None]
                for i, s in enumerate(self.latents)
            }
            fit.diagnostics["local_draws"] = fit.diagnostics["num_draws"] = k
        return fit

    @staticmethod
    def restore(est: Any, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        """A loaded fit samples from its generator; the encoder's weights stay in fit.params
        (the encoder is code, not saved: a loaded fit does not encode)."""
        pyro.clear_param_store()
        with torch.no_grad():
            ctx.program.ops.simulate(ctx.program.model, ctx.data, sites=None, seed=ctx.seed)
        store = pyro.get_param_store().get_state()["params"]
        load_unconstrained({k: v for k, v in state.items() if k in store})
        fit.param_state = snapshot_params()
