"""AVB's torch engine: a Pyro program's latents from an implicit guide, a critic for log q/r."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to
from torch.nn import functional as F

from ppgen.backends._pyro_vmap import vmap_predictive
from ppgen.inference._adversarial_torch import frozen
from ppgen.inference._avb_jax import check_guide_size
from ppgen.inference._guide_fit import guide_fit
from ppgen.inference._pyro import (
    SyncTorchEngine,
    constrained_params,
    load_rng_state,
    load_unconstrained,
    rng_state,
    snapshot_params,
    start_run,
)
from ppgen.nn import Critic, mlp_layers
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["Layout", "TorchAVB", "log_prior_and_likelihood"]


class Layout:
    """The program's latent sites as one flat unconstrained vector per draw.

    ``split(u)`` turns ``(..., D)`` into ``{site: (..., *unconstrained shape)}``;
    ``constrain(parts)`` maps them to each site's support (``biject_to``) and returns the
    values and :math:`\\log |\\det J|` summed over sites, per draw.

    Example: a positive scale and a 2-vector make a 3-dimensional unconstrained space.

        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("s", dist.HalfNormal(1.0))
        ...     pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        >>> lay = Layout(poutine.trace(model).get_trace(), ["s", "w"])
        >>> lay.dim
        3
        >>> values, ldj = lay.constrain(lay.split(torch.zeros(4, 3)))
        >>> values["s"].shape, values["w"].shape, ldj.shape  # exp(0) = 1, log|J| = 0
        (torch.Size([4]), torch.Size([4, 2]), torch.Size([4]))
    """

    def __init__(self, trace: Any, latents: list[str]) -> None:
        self.names = list(latents)
        self.transforms, self.shapes, self.sizes = {}, {}, []
        for n in self.names:
            site = trace.nodes[n]
            t = biject_to(site["fn"].support)
            u = t.inv(site["value"])
            self.transforms[n], self.shapes[n] = t, tuple(u.shape)
            self.sizes.append(max(int(u.numel()), 1))
        self.dim = sum(self.sizes)

    def split(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = u.shape[:-1]
        parts = torch.split(u, self.sizes, dim=-1)
        return {n: p.reshape(lead + self.shapes[n]) for n, p in zip(self.names, parts, strict=True)}

    def constrain(
        self, parts: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        values, ldj = {}, 0.0
        for n in self.names:
            u, t = parts[n], self.transforms[n]
            z = t(u)
            values[n] = z
            j = t.log_abs_det_jacobian(u, z)
            lead = u.dim() - len(self.shapes[n])  # the draws' axes
            ldj = ldj + j.reshape(j.shape[:lead] + (-1,)).sum(-1) if j.dim() > lead else ldj + j
        return values, torch.as_tensor(ldj)


def log_prior_and_likelihood(
    model: Callable, kwargs: Mapping[str, Any], values: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(z), log p(x | z))`` of one draw: latent sites from ``values``, the rest observed.

    Each site's plate ``scale`` and ``mask`` apply as in ``Trace.log_prob_sum``.

    Example:
        >>> import pyro.distributions as dist
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> lp, ll = log_prior_and_likelihood(model, {"x": torch.tensor(1.0)},
        ...                                   {"mu": torch.tensor(0.0)})
        >>> round(lp.item(), 4), round(ll.item(), 4)
        (-0.9189, -1.4189)
    """
    tr = poutine.trace(poutine.condition(model, data=dict(values))).get_trace(**kwargs)
    prior = lik = torch.zeros(())
    for name, s in tr.nodes.items():
        if s["type"] != "sample" or site_is_subsample(s):
            continue
        lp = s["fn"].log_prob(s["value"])
        lp = scale_and_mask(lp, s["scale"], s["mask"]).sum()
        if name in values:
            prior = prior + lp
        else:
            lik = lik + lp
    return prior, lik


class TorchAVB(SyncTorchEngine):
    """One AVB run on a Pyro program with global latents (see :class:`~ppgen.inference.AVB`)."""

    def __init__(self, est: Any, ctx: FitContext) -> None:
        self.est, self.ctx = est, ctx
        device = start_run(ctx)
        self.model = ctx.program.model
        with torch.no_grad():  # creates the model's own params; fixes the latents' layout
            trace = poutine.trace(self.model).get_trace(**ctx.data)
        self.layout = Layout(trace, est.latent_sites(ctx.info))
        self.model_params = dict(pyro.get_param_store().named_parameters())
        d, e = self.layout.dim, est.noise_size(self.layout.dim)
        self.guide_net = mlp_layers([e, *est.hidden, d]).to(device)
        self.critic = Critic(d, est.critic_hidden).to(device)
        self.noise_dim, self.device = e, device
        groups = {
            "guide": list(self.guide_net.parameters()) + list(self.model_params.values()),
            "discriminator": list(self.critic.parameters()),
        }
        self.optim = est._optim().torch(groups, est._total_steps())
        self._densities = self._vectorised()

    # ------------------------------------------------------------------ densities
    def _one(self, u: torch.Tensor, data: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        values, ldj = self.layout.constrain(self.layout.split(u))
        prior, lik = log_prior_and_likelihood(self.model, data, values)
        return prior + ldj, lik

    def _vectorised(self) -> Callable[[torch.Tensor, Mapping[str, Any]], Any]:
        """``(log p0(u), log p(x | z(u)))`` for a batch of draws ``u`` (K, D): one
        ``torch.func.vmap`` pass when the program allows it, else one run per draw."""
        probe = torch.zeros(2, self.layout.dim, device=self.device)

        def vmapped(u: torch.Tensor, data: Mapping[str, Any]) -> Any:
            with pyro.validation_enabled(False):
                return torch.func.vmap(lambda v: self._one(v, data), randomness="error")(u)

        def looped(u: torch.Tensor, data: Mapping[str, Any]) -> Any:
            out = [self._one(v, data) for v in u]
            return torch.stack([a for a, _ in out]), torch.stack([b for _, b in out])

        try:
            with torch.no_grad():
                a, b = vmapped(probe, self.ctx.data)
                a2, b2 = looped(probe, self.ctx.data)
            if torch.allclose(a, a2, atol=1e-4, rtol=1e-4) and torch.allclose(
                b, b2, atol=1e-4, rtol=1e-4
            ):
                return vmapped
        except Exception:  # noqa: BLE001 - a program vmap cannot run is run draw by draw
            pass
        return looped

    def _prior_draws(self, k: int) -> torch.Tensor:
        """``k`` draws of the latents from the prior, unconstrained and flattened (K, D)."""
        index = {"_avb_draw": torch.arange(k)}  # vmap's batch: a site the program lacks
        try:
            out = vmap_predictive(self.model, self.ctx.data, index, self.layout.names)
            out = {n: torch.as_tensor(v, device=self.device) for n, v in out.items()}
        except Exception:  # noqa: BLE001 - one prior run per draw
            with torch.no_grad():
                runs = [poutine.trace(self.model).get_trace(**self.ctx.data) for _ in range(k)]
            out = {n: torch.stack([r.nodes[n]["value"] for r in runs]) for n in self.layout.names}
        parts = [self.layout.transforms[n].inv(out[n]).reshape(k, -1) for n in self.layout.names]
        return torch.cat(parts, -1).to(torch.get_default_dtype())

    # ------------------------------------------------------------------ the step
    def draw(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(k, self.noise_dim, generator=generator, device=self.device)
        return self.guide_net(eps)

    def step(self, data: Mapping[str, Any]) -> dict[str, float]:
        est, opt = self.est, self.optim
        self._rng_before = torch.get_rng_state()
        k = est.particles
        u = self.draw(k)
        if est.adaptive_contrast:  # q standardised against r = N(mean, sd) of q's draws
            loc, scale = u.mean(0).detach(), u.std(0).detach() + 1e-6
            q_in = (u - loc) / scale
        else:
            q_in = u
        for _ in range(est.n_critic):
            ref = torch.randn_like(u) if est.adaptive_contrast else self._prior_draws(k)
            t_q, t_r = self.critic(q_in.detach()), self.critic(ref)
            loss_d = F.softplus(-t_q).mean() + F.softplus(t_r).mean()
            opt.zero_grad(["discriminator"])
            loss_d.backward()
            opt.step(["discriminator"])
        with frozen(self.critic.parameters()):  # for the guide's backward pass
            log_p0, log_lik = self._densities(u, data)
            log_ratio = self.critic(q_in)  # T(u) ~ log q(u) - log r(u)
            if est.adaptive_contrast:
                log_r = torch.distributions.Normal(loc, scale).log_prob(u).sum(-1)
                elbo = (log_p0 + log_lik - log_r - log_ratio).mean()
            else:  # r is the prior: log p(x, z) - log q = log p(x | z) - T
                elbo = (log_lik - log_ratio).mean()
            opt.zero_grad(["guide"])
            (-elbo).backward()
        opt.step(["guide"])
        opt.schedule()
        return {"loss": -elbo.item(), "loss_d": loss_d.item()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        sd = {
            "params": {k: v.detach().clone() for k, v in self.model_params.items()},
            "guide": {k: v.detach().clone() for k, v in self.guide_net.state_dict().items()},
            "discriminator": {k: v.detach().clone() for k, v in self.critic.state_dict().items()},
            "optim": self.optim.state_dict(),
            **rng_state(),
        }
        return sd

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        if sd["params"]:
            load_unconstrained(sd["params"])
        self.guide_net.load_state_dict(sd["guide"])
        self.critic.load_state_dict(sd["discriminator"])
        self.optim.load_state_dict(sd["optim"])
        load_rng_state(sd)

    def nonfinite(self) -> list[str]:
        bad = [k for k, v in self.model_params.items() if not torch.isfinite(v).all()]
        for prefix, net in (("guide", self.guide_net), ("discriminator", self.critic)):
            bad += [
                f"{prefix}.{k}" for k, v in net.named_parameters() if not torch.isfinite(v).all()
            ]
        return bad

    @staticmethod
    def restore(ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        pyro.clear_param_store()
        with torch.no_grad():  # creates the program's params, then overwrites them
            poutine.trace(ctx.program.model).get_trace(**ctx.data)
        load_unconstrained(state)
        fit.param_state = snapshot_params()

    @staticmethod
    def restore_sampler(
        est: Any, fit: Fit, arrays: Mapping[str, np.ndarray], settings: Mapping[str, Any]
    ) -> None:
        """Rebuild a loaded fit's posterior sampler from its saved guide network."""
        with torch.no_grad(), pyro.get_param_store().scope():
            trace = poutine.trace(fit.model_callable()).get_trace(**fit._native(None))
        layout = Layout(trace, est.latent_sites(fit.info))
        check_guide_size(layout.dim, settings)
        net = mlp_layers([int(settings["noise_dim"]), *est.hidden, layout.dim])
        net.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        fit.posterior_sampler = make_sampler(net, layout, int(settings["noise_dim"]), "cpu")

    # ------------------------------------------------------------------ results
    def sampler(self) -> Callable[[int, int], dict[str, np.ndarray]]:
        """``sample(n, seed)``: n posterior draws of every latent, constrained, as numpy."""
        return make_sampler(self.guide_net, self.layout, self.noise_dim, self.device)

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        aux = {
            "guide": {k: v.detach().cpu().numpy() for k, v in self.guide_net.state_dict().items()},
            "discriminator": {
                k: v.detach().cpu().numpy() for k, v in self.critic.state_dict().items()
            },
        }
        fit = guide_fit(
            self.est,
            self.ctx,
            history,
            constrained_params(),
            snapshot_params(),
            self.sampler(),
            {"guide": "implicit", "adaptive_contrast": self.est.adaptive_contrast},
        )
        fit.auxiliary = aux
        fit.auxiliary_settings = {"guide": {"noise_dim": self.noise_dim, "dim": self.layout.dim}}
        return fit


def make_sampler(
    net: torch.nn.Module, layout: Layout, noise_dim: int, device: str
) -> Callable[[int, int], dict[str, np.ndarray]]:
    """Draws from an implicit guide ``net(noise)`` as ``{site: (n, *shape)}`` numpy arrays."""

    def sample(n: int, seed: int) -> dict[str, np.ndarray]:
        g = torch.Generator(device=device).manual_seed(int(seed))
        with torch.no_grad():
            u = net(torch.randn(n, noise_dim, generator=g, device=device))
            values, _ = layout.constrain(layout.split(u))
        return {k: v.cpu().numpy() for k, v in values.items()}

    return sample
