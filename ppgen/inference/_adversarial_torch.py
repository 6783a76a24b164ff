"""Adversarial's torch engine: a Pyro program as the generator, a torch critic, two groups."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pyro
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ppgen.capabilities import declares
from ppgen.errors import EstimatorError, ProgramError
from ppgen.inference._adversarial_common import (
    check_critic,
    class_counts,
    covariate_keys,
    data_key,
    info_term,
    input_features,
    pack,
)
from ppgen.inference._distributed import run_step, shard_of, start_in_step
from ppgen.inference._pyro import (
    SyncTorchEngine,
    constrained_params,
    load_rng_state,
    load_unconstrained,
    rng_state,
    snapshot_params,
    start_run,
)
from ppgen.inference.objectives.gan import array_ops, discriminator_loss, generator_loss
from ppgen.nn import Critic, modules_registered
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["PackedCritic", "TorchAdversarial", "frozen", "gradient_penalty"]

_OPS = array_ops("pyro")


@contextlib.contextmanager
def frozen(params: Iterable[torch.Tensor]) -> Iterator[None]:
    """Within: ``params`` (a critic's) need no gradient, so a generator's backward pass
    through the critic computes none for them, as a hand-written loop does.

    Example:
        >>> w = torch.ones(2, requires_grad=True)
        >>> with frozen([w]):
        ...     inside = w.requires_grad
        >>> inside, w.requires_grad
        (False, True)
    """
    params = list(params)
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def gradient_penalty(critic: Any, real: torch.Tensor, fake: torch.Tensor, *context: Any) -> Any:
    r""":math:`E[(\lVert \nabla D(\hat x) \rVert_2 - 1)^2]` at random interpolates ``x̂``.

    Example: a linear critic of slope 3 has gradient norm 3 everywhere, so the penalty is 4.

        >>> lin = torch.nn.Linear(1, 1)
        >>> with torch.no_grad():
        ...     _ = lin.weight.fill_(3.0)
        >>> critic = lambda x: lin(x).squeeze(-1)
        >>> round(gradient_penalty(critic, torch.randn(8, 1), torch.randn(8, 1)).item(), 4)
        4.0
    """
    eps = torch.rand(
        (real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype, device=real.device
    )
    mixed = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed, *context).sum(), mixed, create_graph=True)
    norms = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()


class PackedCritic(Critic):
    """The default critic of ``Adversarial(pack=m)``: :class:`~ppgen.nn.Critic` on packed inputs.

    An integer covariate arrives packed as ``(n, m)`` labels, one-hot encoded to ``m * K``
    features; everything else is as :class:`~ppgen.nn.Critic` (same layers and weights).

    Example:
        >>> c = PackedCritic(2 * (1 + 3), (8,), num_classes=(3,))
        >>> c(torch.zeros(4, 2), torch.tensor([[0, 1], [2, 1], [0, 0], [1, 2]])).shape
        torch.Size([4])
    """

    def forward(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        parts = [x.reshape(n, -1)]
        for c, k in zip(context, self.num_classes, strict=False):
            c = F.one_hot(c.long().reshape(n, -1), k) if k else c
            parts.append(c.reshape(n, -1).to(x.dtype))
        return self.net(torch.cat(parts, -1)).squeeze(-1)


def _spectral(module: nn.Module) -> nn.Module:
    layers = [m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]
    for m in layers:
        spectral_norm(m)
    return module


def _grads(x: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    if not x.requires_grad:
        return [torch.zeros_like(p) for p in params]
    grads = torch.autograd.grad(x.float().sum(), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _same(name: str, what: str, a: torch.Tensor, b: torch.Tensor) -> None:
    """Refuse a declared simulation whose ``what`` differs from the program's."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    err = float((a - b).abs().max()) if a.numel() else 0.0
    if not err <= 1e-5 * (1.0 + float(b.abs().max() if b.numel() else 0.0)):
        raise ProgramError(
            f"{name} disagrees with the program it declares to simulate: {what} differs by "
            f"up to {err:.3g} from the same noise. Draw the program's random sites in its "
            "order from torch's global generator and compute the same values, or delete the "
            "method (set `simulate_sites = None`) to let ppgen run the program."
        )


class TorchAdversarial(SyncTorchEngine):
    """One adversarial run on a Pyro program (see :class:`~ppgen.inference.Adversarial`)."""

    def __init__(self, est: Any, ctx: FitContext) -> None:
        self.est, self.ctx = est, ctx
        self.device = device = start_run(ctx)
        self.site = est.observed_site(ctx.info)
        self.key = data_key(ctx.info, self.site)
        self.covs = covariate_keys(ctx.data_np, ctx.info, self.site)
        self.model, ops = ctx.program.model, ctx.program.ops
        self._simulator = ops.simulator(self.model, [self.site, *est.info_sites])
        with torch.no_grad():  # creates the generator's params
            ops.simulate(self.model, ctx.data, sites=[self.site])
        store = pyro.get_param_store()
        self.gen = dict(store.named_parameters())
        if not self.gen:
            raise EstimatorError(
                "Adversarial found no parameters in the program to train: register the "
                "generator with `pyro.module(name, net)` or use `pyro.param` sites."
            )
        self._declared = self._declared_simulator(ctx, [self.site, *est.info_sites])
        self.critic = self._critic(ctx, device)
        self._check_critic(ctx.data)
        self.guide = ctx.program._wrap(est.guide) if est.info_sites else None
        self.q = self._init_q(ctx.data) if self.guide is not None else {}
        generator = list(self.gen.values()) + list(self.q.values())  # G and Q maximise info
        self._critic_list = self._critic_params()
        groups = {"generator": generator, "discriminator": self._critic_list}
        start_in_step(ctx, [*generator, *self._critic_list])
        self.optim = est._optim().torch(groups, est._total_steps(), world=shard_of(ctx)[1])
        self.ema = {k: v.detach().clone() for k, v in self.gen.items()} if est.ema else None

    # ------------------------------------------------------------------ InfoGAN's Q
    def _init_q(self, data: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Run Q once on simulated data (creating its parameters); check it infers the codes."""
        with torch.no_grad():
            fake, codes = self._simulate(data)
        before = set(self.gen)
        with torch.no_grad():
            self._log_q(data, fake, codes, registered=False)  # registers Q's modules
        store = dict(pyro.get_param_store().named_parameters())
        return {k: v for k, v in store.items() if k not in before}

    def _log_q(
        self, data: Mapping[str, Any], fake: torch.Tensor, codes: dict, registered: bool = True
    ) -> torch.Tensor:
        r""":math:`\frac1n \sum_i \log q(c_i \mid x_i)` of the codes behind the generated ``x``."""
        guide = pyro.poutine.condition(self.guide, data={k: v.detach() for k, v in codes.items()})
        with modules_registered() if registered else contextlib.nullcontext():
            tr = pyro.poutine.trace(guide).get_trace(**{**data, self.key: fake})
        return info_term(tr.nodes, self.est.info_sites, len(fake), self.est.info_weights)

    def _declared_simulator(self, ctx: FitContext, sites: list[str]) -> Any:
        """The model's declared ``simulate_sites`` of ``sites``, checked against its program.

        The check draws once through the program and once through the declaration from the
        same torch RNG state: the values of the observed site and the info codes and the
        gradients of the generated batch with respect to every generator parameter must agree
        (to ``1e-5`` relative), or the declaration is refused. The RNG state is restored, so
        the run draws the same noise as without the check.
        """
        obj = ctx.program.obj
        if not declares(obj, "simulate_sites"):
            return None

        def declared(data: Mapping[str, Any]) -> Mapping[str, torch.Tensor] | None:
            return obj.simulate_sites(sites, **data)

        rng, params = torch.get_rng_state(), list(self.gen.values())
        try:
            with modules_registered():
                ref = self._simulator(ctx.data)
            torch.set_rng_state(rng)
            got = declared(ctx.data)
        finally:
            torch.set_rng_state(rng)
        if got is None:  # declined for this program's settings
            return None
        name = f"`{type(obj).__name__}.simulate_sites`"
        for site in sites:
            a, b = got.get(site) if isinstance(got, Mapping) else None, ref[site]
            if not isinstance(a, torch.Tensor) or a.shape != b.shape:
                shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                raise ProgramError(
                    f"{name} returned {shape} for site {site!r}; the program draws "
                    f"{tuple(b.shape)}. Return {{site: tensor}} for every site asked for, or "
                    "None to let ppgen run the program."
                )
            _same(name, f"site {site!r}", a.detach(), b.detach())
        x_ref, x_got = ref[self.site], got[self.site]
        if x_ref.requires_grad or x_got.requires_grad:
            g_ref = _grads(x_ref, params)
            g_got = _grads(x_got, params)
            for key, a, b in zip(self.gen, g_got, g_ref, strict=True):
                _same(name, f"the gradient of {self.site!r} for parameter {key!r}", a, b)
        return declared

    # ------------------------------------------------------------------ the critic
    def _critic(self, ctx: FitContext, device: str) -> nn.Module:
        est, obj = self.est, ctx.program.obj
        critic = est.discriminator
        if critic is None and declares(obj, "discriminator"):
            critic = obj.discriminator("pyro")
        if critic is None:
            classes = class_counts(ctx.data_np, self.covs)
            width = est.pack * input_features(ctx.data_np, self.key, self.covs, classes)
            cls = Critic if est.pack == 1 else PackedCritic
            critic = cls(width, est.hidden, [classes.get(k) for k in self.covs])
        if not isinstance(critic, nn.Module):
            raise EstimatorError(
                "`discriminator` of a Pyro program must be a torch.nn.Module returning one "
                f"number per sample; got {type(critic).__name__}."
            )
        critic.to(device)
        return _spectral(critic) if est.spectral_norm else critic

    def _critic_params(self) -> list[torch.Tensor]:
        return [p for p in self.critic.parameters() if p.requires_grad]

    def _check_critic(self, data: Mapping[str, Any]) -> None:
        with torch.no_grad():
            context = [data[k] for k in self.covs]
            x = self._real(data)
            check_critic(self.critic, x, context, self.site, self.covs, self.est.pack)

    def _real(self, data: Mapping[str, Any]) -> torch.Tensor:
        x = data[self.key]
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())

    def _d(self, x: torch.Tensor, context: list[Any]) -> torch.Tensor:
        out = self.critic(x, *context)
        return out.reshape(out.shape[0])

    def _draw(self, data: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """One simulation of the program's sites: the model's checked ``simulate_sites``, or
        the program run under one light handler."""
        if self._declared is not None:
            return dict(self._declared(data))
        with modules_registered():  # registered at init; the optimiser holds them
            return self._simulator(data)

    def _simulate(self, data: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A generated batch of the observed site, and the values of the info codes behind it."""
        out = self._draw(data)
        x = out.pop(self.site)
        return (x if x.is_floating_point() else x.to(torch.get_default_dtype())), out

    # ------------------------------------------------------------------ the step
    def step(self, data: Mapping[str, Any]) -> dict[str, float]:
        """One loop step. In a data-parallel run (:class:`~ppgen.inference.runners.DDP`) each
        process simulates its own noise (:func:`~ppgen.inference._distributed.rank_noise`) for
        its share of the batch, the optimiser averages the gradients of each update over the
        processes, and the metrics are averaged too."""
        self._rng_before = torch.get_rng_state()
        return run_step(self.ctx, self.device, self._step, data)

    def _step(self, data: Mapping[str, Any]) -> dict[str, float]:
        est, opt = self.est, self.optim
        m = est.pack  # PacGAN: the critic sees packed inputs (m data side by side)
        real, context = pack(self._real(data), m), [pack(data[k], m) for k in self.covs]
        metrics: dict[str, float] = {}
        for i in range(est.n_critic):
            last = i == est.n_critic - 1
            if last:
                fake, codes = self._simulate(data)  # kept with its graph for G's update
                fake_d = fake.detach()
            else:
                with torch.no_grad():
                    fake_d, _ = self._simulate(data)
            fake_d = pack(fake_d, m)
            d_real, d_fake = self._d(real, context), self._d(fake_d, context)
            loss_d = discriminator_loss(est.loss, d_real, d_fake, _OPS)
            total = loss_d
            if est.loss == "wgan-gp":
                gp = gradient_penalty(self._d_any, real, fake_d, context)
                total = loss_d + est.gp_weight * gp
            opt.zero_grad(["discriminator"])
            total.backward()
            opt.step(["discriminator"])
        with frozen(self._critic_list):  # for G's backward pass, as a hand loop does
            loss_g = generator_loss(est.loss, self._d(pack(fake, m), context), _OPS)
            objective = loss_g
            if self.guide is not None:
                weighted, info = self._log_q(data, fake, codes)
                objective = loss_g - weighted
            opt.zero_grad(["generator"])
            objective.backward()
        opt.step(["generator"])
        opt.schedule()
        self._update_ema()
        metrics["loss"] = metrics["loss_d"] = total.item()
        metrics["loss_g"] = loss_g.item()
        if self.guide is not None:
            metrics["info"] = info.item()
        if est.loss == "wgan-gp":
            metrics["gp"] = gp.item()
            metrics["wasserstein"] = (d_real.mean() - d_fake.mean()).item()
        return metrics

    def _d_any(self, x: torch.Tensor, context: list[Any]) -> torch.Tensor:
        return self._d(x, context)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        sd = {
            "params": {k: v.detach().clone() for k, v in {**self.gen, **self.q}.items()},
            "discriminator": {k: v.detach().clone() for k, v in self.critic.state_dict().items()},
            "optim": self.optim.state_dict(),
            **rng_state(),
        }
        if self.ema is not None:
            sd["ema"] = {k: v.clone() for k, v in self.ema.items()}
        return sd

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        load_unconstrained(sd["params"])
        self.critic.load_state_dict(sd["discriminator"])
        self.optim.load_state_dict(sd["optim"])
        if self.ema is not None:
            for k, v in sd["ema"].items():
                self.ema[k].copy_(v)
        load_rng_state(sd)

    def nonfinite(self) -> list[str]:
        bad = [k for k, v in {**self.gen, **self.q}.items() if not torch.isfinite(v).all()]
        bad += [
            f"discriminator.{k}"
            for k, v in self.critic.named_parameters()
            if not torch.isfinite(v).all()
        ]
        return bad

    # ------------------------------------------------------------------ results
    def _update_ema(self) -> None:
        """Move the averages of ``ema`` (keyed by the weights it averages) to the live ones."""
        if self.ema is not None:
            live = {**self.gen, **self.q}
            with torch.no_grad():
                for k, avg in self.ema.items():
                    avg.lerp_(live[k].detach(), 1.0 - self.est.ema)

    def _diagnostics(self) -> dict[str, Any]:
        return {"site": self.site, "covariates": self.covs, "loss": self.est.loss}

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        if self.ema is not None:
            live = {**self.gen, **self.q}
            with torch.no_grad():
                for k, avg in self.ema.items():
                    live[k].copy_(avg)
        critic = {k: v.detach().cpu().numpy() for k, v in self.critic.state_dict().items()}
        return Fit(
            program=self.ctx.program,
            estimator=self.est,
            info=self.ctx.info,
            data=self.ctx.data_np,
            params=constrained_params(),
            param_state=snapshot_params(),
            history=history,
            seed=self.ctx.seed,
            device=self.ctx.device,
            diagnostics=self._diagnostics(),
            auxiliary={"discriminator": critic},
            auxiliary_settings={"discriminator": {"class": type(self.critic).__name__}},
        )

    @staticmethod
    def restore(est: Any, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        pyro.clear_param_store()
        with torch.no_grad():
            ctx.program.ops.simulate(ctx.program.model, ctx.data, sites=None, seed=ctx.seed)
        store = pyro.get_param_store().get_state()["params"]
        # an InfoGAN's Q weights stay in fit.params; sampling needs the generator's only
        load_unconstrained(
            {k: v for k, v in state.items() if k in store} if est.info_sites else state
        )
        fit.param_state = snapshot_params()
