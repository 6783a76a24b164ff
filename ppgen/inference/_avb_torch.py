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
from torch.nn import functional as F

from ppgen.backends._pyro_vmap import vmap_predictive
from ppgen.capabilities import declares
from ppgen.errors import EstimatorError
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
from ppgen.inference.guides.implicit import ImplicitAmortized, LatentLayout
from ppgen.nn import Critic, mlp_layers
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["TorchAVB", "TorchAmortizedAVB", "log_prior_and_likelihood"]


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
        self.model, self.scaler = ctx.program.model, None  # the whole data every step
        with torch.no_grad():  # creates the model's own params; fixes the latents' layout
            trace = poutine.trace(self.model).get_trace(**ctx.data)
        self.layout = LatentLayout(trace, est.latent_sites(ctx.info))
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

    def _probe_shape(self) -> tuple[int, ...]:
        return (self.layout.dim,)

    def _vectorised(self) -> Callable[[torch.Tensor, Mapping[str, Any]], Any]:
        """``(log p0(u), log p(x | z(u)))`` for a batch of draws ``u`` (K, D): one
        ``torch.func.vmap`` pass when the program allows it, else one run per draw."""
        probe = torch.zeros(2, *self._probe_shape(), device=self.device)

        def vmapped(u: torch.Tensor, data: Mapping[str, Any]) -> Any:
            with pyro.validation_enabled(False):
                return torch.func.vmap(lambda v: self._one(v, data), randomness="error")(u)

        def looped(u: torch.Tensor, data: Mapping[str, Any]) -> Any:
            out = [self._one(v, data) for v in u]
            return torch.stack([a for a, _ in out]), torch.stack([b for _, b in out])

        declared = self._declared(looped)
        if declared is not None:
            return declared
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

    def _declared(self, looped: Callable) -> Callable | None:
        """The model's ``log_joint_terms`` capability over all draws at once, checked against
        the program on three prior draws (``None`` when the model does not declare it)."""
        obj = self.ctx.program.obj
        if not declares(obj, "log_joint_terms"):
            return None
        terms = obj.log_joint_terms

        def declared(u: torch.Tensor, data: Mapping[str, Any]) -> Any:
            values, ldj = self.layout.constrain(self.layout.split(u))
            prior, lik = terms(values, **data)
            return prior + ldj, lik

        rng = torch.get_rng_state()  # the check leaves the fit's random numbers as they were
        probe = self._prior_draws(3)
        torch.set_rng_state(rng)
        with torch.no_grad():
            got, want = declared(probe, self.ctx.data), looped(probe, self.ctx.data)
        for what, a, b in zip(("log p(z)", "log p(x | z)"), got, want, strict=True):
            a = torch.as_tensor(a)
            if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-4):
                raise EstimatorError(
                    f"`{type(obj).__name__}.log_joint_terms` disagrees with its program on "
                    f"three prior draws: {what} {a.tolist()} vs the program's {b.tolist()}. "
                    "It must return (log p(z), log p(x | z)), each of shape (K,), for K draws "
                    "of every latent site ({site: (K, *shape)}, on each site's support); fix "
                    "it or remove it (the program is then run per draw)."
                )
        return declared

    def _prior_draws(self, k: int, data: Mapping[str, Any] | None = None) -> torch.Tensor:
        """``k`` draws of the latents from the prior, unconstrained and flattened (K, ..., D)."""
        data = self.ctx.data if data is None else data
        index = {"_avb_draw": torch.arange(k)}  # vmap's batch: a site the program lacks
        try:
            out = vmap_predictive(self.model, data, index, self.layout.names)
            out = {n: torch.as_tensor(v, device=self.device) for n, v in out.items()}
        except Exception:  # noqa: BLE001 - one prior run per draw
            with torch.no_grad():
                runs = [poutine.trace(self.model).get_trace(**data) for _ in range(k)]
            out = {n: torch.stack([r.nodes[n]["value"] for r in runs]) for n in self.layout.names}
        return self.layout.flatten(out).to(torch.get_default_dtype())

    # ------------------------------------------------------------------ the step
    def draw(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(k, self.noise_dim, generator=generator, device=self.device)
        return self.guide_net(eps)

    def _particles(
        self, k: int, data: Mapping[str, Any]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The step's ``k`` guide draws ``(K, ..., D)`` and the critic's context rows (none
        here: one draw of all latents per particle)."""
        return self.draw(k), ()

    def step(self, data: Mapping[str, Any], scale: float = 1.0) -> dict[str, float]:
        """One AVB step: ``n_critic`` logistic updates of the critic, one ELBO update of the
        guide (and the program's params); ``scale`` (N / B) weighs a minibatch's terms."""
        est, opt = self.est, self.optim
        self._rng_before = torch.get_rng_state()
        if self.scaler:
            self.scaler.scale = scale
        k = est.particles
        u, context = self._particles(k, data)

        def critic(v: torch.Tensor) -> torch.Tensor:  # one number per particle (and datum)
            if context or v.dim() != 2:  # rows of (particle, datum) pairs: (K, N)
                return self.critic(v.reshape(-1, v.shape[-1]), *context).reshape(k, -1)
            return self.critic(v)  # (K, D) draws: one row per particle already

        if est.adaptive_contrast:  # q standardised against r = N(mean, sd) of its draws
            loc, sd = u.mean(0).detach(), u.std(0).detach() + 1e-6
            q_in = (u - loc) / sd
        else:
            q_in = u
        for _ in range(est.n_critic):
            ref = torch.randn_like(u) if est.adaptive_contrast else self._prior_draws(k, data)
            loss_d = F.softplus(-critic(q_in.detach())).mean() + F.softplus(critic(ref)).mean()
            opt.zero_grad(["discriminator"])
            loss_d.backward()
            opt.step(["discriminator"])
        with frozen(self.critic.parameters()):  # for the guide's backward pass
            log_p0, log_lik = self._densities(u, data)  # (K,) each, plate-scaled
            t = critic(q_in)  # T(u) ~ log q(u) - log r(u), summed over data
            t = t if t.dim() == 1 else t.reshape(k, -1).sum(-1)
            if est.adaptive_contrast:
                log_r = torch.distributions.Normal(loc, sd).log_prob(u).reshape(k, -1).sum(-1)
                elbo = (log_p0 + log_lik - scale * log_r - scale * t).mean()
            else:  # r is the prior: log p(x, z) - log q = log p(x | z) - T
                elbo = (log_lik - scale * t).mean()
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
        layout = LatentLayout(trace, est.latent_sites(fit.info))
        check_guide_size(layout.dim, settings)
        net = mlp_layers([int(settings["noise_dim"]), *est.hidden, layout.dim])
        net.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        fit.posterior_sampler = make_sampler(net, layout, int(settings["noise_dim"]), "cpu")

    # ------------------------------------------------------------------ results
    def sampler(self) -> Callable[[int, int], dict[str, np.ndarray]]:
        """``sample(n, seed)``: n posterior draws of every latent, constrained, as numpy."""
        return make_sampler(self.guide_net, self.layout, self.noise_dim, self.device)

    #: what the fit's diagnostics call the guide
    guide_kind = "implicit"

    def guide_settings(self) -> dict[str, Any]:
        """What a loaded fit needs to rebuild the guide network (the manifest's settings)."""
        return {"noise_dim": self.noise_dim, "dim": self.layout.dim}

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        aux = {
            name: {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
            for name, net in (("guide", self.guide_net), ("discriminator", self.critic))
        }
        fit = guide_fit(
            self.est,
            self.ctx,
            history,
            constrained_params(),
            snapshot_params(),
            self.sampler(),
            {"guide": self.guide_kind, "adaptive_contrast": self.est.adaptive_contrast},
        )
        fit.auxiliary = aux
        fit.auxiliary_settings = {"guide": self.guide_settings()}
        return fit


class TorchAmortizedAVB(TorchAVB):
    """Amortised AVB on a Pyro program: an :class:`ImplicitAmortized` encoder
    :math:`z_n = g(x_n, \\varepsilon)` for its per-datum latents, a critic :math:`T(x, z)`."""

    def __init__(self, est: Any, ctx: FitContext, guide: ImplicitAmortized) -> None:
        self.est, self.ctx = est, ctx
        device = start_run(ctx)
        plate = ctx.extra.get("batch_plate")
        self.scaler = ctx.program.ops.scale_box(plate) if plate else None
        self.model = self.scaler(ctx.program.model) if self.scaler else ctx.program.model
        with torch.no_grad():  # creates the model's own params
            poutine.trace(ctx.program.model).get_trace(**ctx.data)
        self.model_params = dict(pyro.get_param_store().named_parameters())
        if guide._model is None:
            guide.bind(ctx.program.model)
        guide.build(**ctx.data)
        check_local_latents(guide, est.latent_sites(ctx.info))
        self.guide_net, self.layout, self.device = guide.to(device), guide.layout, device
        self.noise_dim = guide.noise_dim
        width = int(guide.features(ctx.data).shape[1])
        self.critic = Critic(self.layout.dim + width, est.critic_hidden, (None,)).to(device)
        groups = {
            "guide": list(guide.parameters()) + list(self.model_params.values()),
            "discriminator": list(self.critic.parameters()),
        }
        self.optim = est._optim().torch(groups, est._total_steps())
        self._densities = self._vectorised()

    def _probe_shape(self) -> tuple[int, ...]:
        return (self.guide_net.plate.size, self.layout.dim)

    def _declared(self, looped: Callable) -> Callable | None:
        return None  # log_joint_terms is for global latents (no per-datum scale, no encoder)

    def _one(self, u: torch.Tensor, data: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        values, ldj = self.layout.constrain(self.layout.split(u))  # ldj: one per datum
        prior, lik = log_prior_and_likelihood(self.model, data, values)
        scale = self.scaler.scale if self.scaler else 1.0
        return prior + scale * ldj.sum(-1), lik

    def _particles(
        self, k: int, data: Mapping[str, Any]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``k`` encoder draws of each datum's latents ``(K, B, D)``; the critic sees each with
        its datum (the flattened inputs, repeated per particle)."""
        x = self.guide_net.features(data)
        return self.guide_net.draw(k, data), (x.expand(k, *x.shape).reshape(-1, x.shape[-1]),)

    # ------------------------------------------------------------------ results
    def sampler(self) -> Callable[[int, int], dict[str, np.ndarray]]:
        return make_local_sampler(self.guide_net, self.ctx.data, self.device)

    guide_kind = "implicit amortized"

    def guide_settings(self) -> dict[str, Any]:
        g = self.guide_net
        return {
            "amortized": True,
            "noise_dim": g.noise_dim,
            "dim": self.layout.dim,
            "inputs": list(g.inputs),
            "plate": g.plate.name,
            "hidden_features": list(g.hidden_features),
            "default_encoder": bool(g.default_encoder),
        }

    @staticmethod
    def restore_sampler(
        est: Any, fit: Fit, arrays: Mapping[str, np.ndarray], settings: Mapping[str, Any]
    ) -> None:
        """A loaded fit's encoder, rebuilt when it is the default MLP (your own encoder is code,
        not saved: the loaded fit then keeps its saved draws and draws no new ones)."""
        if not settings.get("default_encoder"):
            return
        data = fit._native(None)
        guide = ImplicitAmortized(
            fit.model_callable(),
            noise_dim=int(settings["noise_dim"]),
            hidden_features=tuple(int(h) for h in settings["hidden_features"]),
            plate=str(settings["plate"]),
            inputs=list(settings["inputs"]),
        )
        with torch.no_grad(), pyro.get_param_store().scope():
            guide.build(**data)
        check_guide_size(guide.layout.dim, settings)
        guide.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        fit.posterior_sampler = make_local_sampler(guide, data, "cpu")


def check_local_latents(guide: ImplicitAmortized, latents: list[str]) -> None:
    """The encoder draws exactly the latents AVB infers (all of the program's)."""
    if sorted(guide.locals) != sorted(latents):
        raise EstimatorError(
            f"The `ImplicitAmortized` guide draws {sorted(guide.locals)}, but the program's "
            f"latent sites are {sorted(latents)}; AVB's encoder must draw every latent."
        )


def make_local_sampler(
    guide: ImplicitAmortized, data: Mapping[str, Any], device: str
) -> Callable[[int, int], dict[str, np.ndarray]]:
    """Draws of each training datum's latents, ``{site: (n, N, *shape)}`` numpy arrays."""

    def sample(n: int, seed: int) -> dict[str, np.ndarray]:
        g = torch.Generator(device=device).manual_seed(int(seed))
        with torch.no_grad():
            values = guide.sample(n, generator=g, **data)
        return {k: v.cpu().numpy() for k, v in values.items()}

    return sample


def make_sampler(
    net: torch.nn.Module, layout: LatentLayout, noise_dim: int, device: str
) -> Callable[[int, int], dict[str, np.ndarray]]:
    """Draws from an implicit guide ``net(noise)`` as ``{site: (n, *shape)}`` numpy arrays."""

    def sample(n: int, seed: int) -> dict[str, np.ndarray]:
        g = torch.Generator(device=device).manual_seed(int(seed))
        with torch.no_grad():
            u = net(torch.randn(n, noise_dim, generator=g, device=device))
            values, _ = layout.constrain(layout.split(u))
        return {k: v.cpu().numpy() for k, v in values.items()}

    return sample
