"""The contrastive estimators' torch engine: a Pyro energy program, its sampler, one optimiser."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine
from torch.nn import functional as F

from ppgen.backends._pyro_ops import seeded
from ppgen.capabilities import declares
from ppgen.errors import EstimatorError, ProgramError
from ppgen.inference._adversarial_common import data_key
from ppgen.inference._distributed import (
    gather_rows,
    read_scalars,
    run_step,
    shard_of,
    start_in_step,
)
from ppgen.inference._pyro import (
    SyncTorchEngine,
    constrained_params,
    load_rng_state,
    load_unconstrained,
    rng_state,
    snapshot_params,
    start_run,
)
from ppgen.inference.objectives.contrastive import cd_loss, nce_loss, torch_score_loss
from ppgen.inference.samplers import MALA, BlockGibbs, Langevin, Sampler
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["EnergyProgram", "TorchContrastive"]


class EnergyProgram:
    """A Pyro program's observed energy site as a function of its value: ``energy(u, data)``
    is :math:`E(u)` per row (``-log_prob`` of the site at ``u``), through the model's declared
    ``energy`` method when it has one (checked against the program once), else by running
    the program with ``u`` in place of the data."""

    def __init__(self, est: Any, ctx: FitContext, check: bool = True) -> None:
        self.ctx, self.model, self.obj = ctx, ctx.program.model, ctx.program.obj
        self.site = est.observed_site(ctx.info)
        self.key = data_key(ctx.info, self.site)
        x = self.x(ctx.data)
        self.event_shape = tuple(ctx.info.sites[self.site].event_shape)
        self.binary = bool(((x == 0) | (x == 1)).all())
        self.lo, self.hi = x.min(0).values, x.max(0).values
        self.energy = self._traced
        self.declared = False
        method = getattr(self.obj, "energy", None)
        if declares(self.obj, "energy") and inspect.ismethod(method):
            self.energy, self._declared_energy, self.declared = self._declared, method, True
            if check:
                self._check_declared(ctx.data)

    def x(self, data: Mapping[str, Any]) -> torch.Tensor:
        x = data[self.key]
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())

    def _traced(self, u: torch.Tensor, data: Mapping[str, Any]) -> torch.Tensor:
        with pyro.validation_enabled(False):
            tr = poutine.trace(self.model).get_trace(**{**data, self.key: u})
        node = tr.nodes[self.site]
        return -node["fn"].log_prob(node["value"])

    def _declared(self, u: torch.Tensor, data: Mapping[str, Any]) -> torch.Tensor:
        if len(data) == 1:  # the data are the observed values only: no other arguments
            return self._declared_energy(u)
        return self._declared_energy(**{**data, self.key: u})

    def _check_declared(self, data: Mapping[str, Any]) -> None:
        u = self.x(data)[:256]
        rows = {**data, self.key: u}
        with torch.no_grad():
            a, b = self._declared(u, rows), self._traced(u, rows)
        if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-4):
            raise ProgramError(
                f"The model's declared `energy` disagrees with its program's site "
                f"`{self.site}` (-log_prob): shapes {tuple(a.shape)} vs {tuple(b.shape)}, "
                f"largest difference {float((a - b).abs().max()) if a.shape == b.shape else 'n/a'}"
                ". Make `energy(**data)` return the per-datum energy of the observed site, or "
                "remove it (the program is then run for every energy)."
            )

    def noise_like(self, n: int) -> torch.Tensor:
        """``n`` draws of uniform noise over the data's range (binary data: fair coins)."""
        shape = (n, *self.lo.shape)
        if self.binary:
            return torch.bernoulli(torch.full(shape, 0.5, device=self.lo.device))
        return self.lo + (self.hi - self.lo) * torch.rand(shape, device=self.lo.device)

    def target(self, sampler: Sampler, data: Mapping[str, Any]) -> Any:
        """What ``sampler`` needs of this program (``sampler.needs``), at the batch's other
        arguments; a model without it is refused, naming the samplers that fit."""
        if sampler.needs == "gibbs":
            if not declares(self.obj, "block_gibbs_step"):
                raise EstimatorError(
                    f"The {type(sampler).__name__} sampler needs a model with conditional "
                    "structure (a `block_gibbs_step(x)` method, as the zoo's RBMs declare); "
                    "this program's energy has none. Use a gradient sampler: 'langevin', "
                    "'mala' or 'hmc'."
                )
            return self.obj
        energy = self.energy
        if self.declared and len(data) == 1:  # no other arguments: the method itself
            of = self._declared_energy
        else:

            def of(u: torch.Tensor) -> torch.Tensor:
                return energy(u, {**data, self.key: u})

        if sampler.needs == "score":

            def score(u: torch.Tensor, sigma: float) -> torch.Tensor:
                u = u.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(of(u).sum(), u)
                return -g

            return score
        return of


def default_sampler(prog: EnergyProgram, spec: Any, fallback: Callable[[], Sampler]) -> Sampler:
    """``spec`` when given, block Gibbs for a model that declares it, else ``fallback()``."""
    if isinstance(spec, Sampler):
        return spec
    if declares(prog.obj, "block_gibbs_step"):
        return BlockGibbs()
    return fallback()


class TorchContrastive(SyncTorchEngine):
    """One contrastive run on a Pyro program (see :mod:`ppgen.inference.contrastive`)."""

    def __init__(self, est: Any, ctx: FitContext) -> None:
        self.est, self.ctx = est, ctx
        self.device = start_run(ctx)
        self.rank, self.world = shard_of(ctx)
        self._plain_target: Any = None
        with torch.no_grad():  # create the energy's parameters
            poutine.trace(ctx.program.model).get_trace(**ctx.data)
        self.params = dict(pyro.get_param_store().named_parameters())
        if not self.params:
            raise EstimatorError(
                f"{type(est).__name__} found no parameters in the program to train: register "
                "the energy network with `pyro.module(name, net)` or use `pyro.param` sites."
            )
        self.prog = prog = EnergyProgram(est, ctx)
        if hasattr(est, "check_data"):
            est.check_data(ctx, prog.key)
        self._rng_before = torch.get_rng_state()
        groups: dict[str, list[torch.Tensor]] = {"energy": list(self.params.values())}
        self.log_z: torch.Tensor | None = None
        self.chains: torch.Tensor | None = None
        self.sampler_state: dict[str, torch.Tensor] | None = None
        if est.objective == "nce":
            self.noise = _noise(est.noise, prog.x(ctx.data), prog.event_shape)
            self.log_z = torch.zeros((), device=self.device, requires_grad=True)
            groups["log_Z"] = [self.log_z]
        if est.objective == "cd":
            self.sampler = default_sampler(prog, est.sampler, lambda: Langevin(step_size=0.01))
            self._sampler_stats = type(self.sampler).stats is not Sampler.stats
            prog.target(self.sampler, ctx.data)  # refused now if the model lacks what it needs
            if est.persistent:
                self._init_chains(ctx.data)
        start_in_step(ctx, [p for ps in groups.values() for p in ps])
        self.optim = est._optim().torch(groups, est._total_steps(), world=self.world)

    def _init_chains(self, data: Mapping[str, Any]) -> None:
        est, x = self.est, self.prog.x(data)
        if est.buffer_size is not None:  # a replay buffer of noise
            self.chains = self.prog.noise_like(est.buffer_size)
            return
        n = est.num_chains or est.batch_size or len(x)
        world = self.world
        if n % world:
            raise EstimatorError(
                f"runner=DDP() splits the {n} persistent chains across the {world} processes: "
                f"give `num_chains` a multiple of {world}."
            )
        self.chains = x[torch.randint(len(x), (n,), device=x.device)].clone()
        self.sampler_state = self.sampler.init(self.chains)

    # ------------------------------------------------------------------ the step
    def step(self, data: Mapping[str, Any]) -> dict[str, float]:
        self._rng_before = torch.get_rng_state()
        if self.world == 1:
            return self._step(data)
        return run_step(self.ctx, self.device, self._step, data)

    def _target(self, data: Mapping[str, Any]) -> Any:
        """The sampler's target at the batch's other arguments; one for the run when the
        data are the observed values only (the usual energy program)."""
        if len(data) > 1:
            return self.prog.target(self.sampler, data)
        if self._plain_target is None:
            self._plain_target = self.prog.target(self.sampler, data)
        return self._plain_target

    def _step(self, data: Mapping[str, Any]) -> dict[str, float]:
        est, prog = self.est, self.prog
        x = prog.x(data)
        metrics: dict[str, float] = {}
        read: list[torch.Tensor] = []  # read after the step
        if est.objective == "cd":
            neg = self._negatives(x, data)
            e_data = prog.energy(x, data)
            e_neg = prog.energy(neg, {**data, prog.key: neg})
            mean_data, mean_neg = e_data.mean(), e_neg.mean()
            loss = cd_loss(e_data, e_neg, est.alpha, means=(mean_data, mean_neg))
            read = [mean_data, mean_neg]  # read as floats after the step
        elif est.objective == "nce":
            loss, metrics = self._nce(x, data)
        else:
            loss = torch_score_loss(
                est.kind,
                lambda u: prog.energy(u, {**data, prog.key: u}),
                x,
                sigma=est.sigma,
                num_projections=est.num_projections,
            )
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        values = read_scalars([loss, *read])
        if read:
            metrics = {"energy_data": values[1], "energy_neg": values[2]}
            if self._sampler_stats:
                metrics.update(self.sampler.stats(self._last_state))
        return {"loss": values[0], **metrics}

    def _negatives(self, x: torch.Tensor, data: Mapping[str, Any]) -> torch.Tensor:
        """The step's negatives: k transitions from the data (CD), from the persistent chains
        (PCD), or from a batch of the replay buffer, some restarted from noise.

        Data-parallel runs: every process holds all the persistent chains and advances its
        share (chains ``rank::world``) with its own noise, then the shares are gathered, so
        the chains (and the checkpoint rank 0 writes) are the same everywhere; replay-buffer
        writes are gathered and applied in rank order."""
        est, prog, sampler = self.est, self.prog, self.sampler
        rank, world = self.rank, self.world
        if not est.persistent:
            state = sampler.init(x.detach())
        elif est.buffer_size is None:
            state = self.sampler_state
            if world > 1:
                n = len(state["x"])
                state = {k: v[rank::world] if _per_chain(v, n) else v for k, v in state.items()}
        else:
            idx = torch.randint(len(self.chains), (len(x),), device=x.device)
            start = self.chains[idx]
            fresh = torch.rand(len(x), device=x.device) < est.reinit
            start = torch.where(
                fresh.reshape((-1,) + (1,) * (start.dim() - 1)), prog.noise_like(len(x)), start
            )
            state = sampler.init(start)
        state = sampler.run(state, self._target({**data, prog.key: state["x"]}), est.k)
        self._last_state = state
        if est.persistent and est.buffer_size is None:
            full = state
            if world > 1:
                n = len(state["x"])
                full = {k: gather_rows(v) if _per_chain(v, n) else v for k, v in state.items()}
            self.sampler_state, self.chains = full, full["x"]
        elif est.persistent:
            if world > 1:
                idx, values = gather_rows(idx, interleave=False), gather_rows(state["x"], False)
            else:
                values = state["x"]
            self.chains[idx] = values
        return state["x"].detach()

    def _nce(self, x: torch.Tensor, data: Mapping[str, Any]) -> tuple[Any, dict[str, float]]:
        est, prog = self.est, self.prog
        nu = est.noise_ratio
        m = max(1, int(round(nu * len(x))))
        y = self.noise.sample((m,)).to(x.dtype)
        log_nu = math.log(nu)
        g_x = -prog.energy(x, data) - self.log_z - self.noise.log_prob(x) - log_nu
        g_y = -prog.energy(y, {**data, prog.key: y}) - self.log_z - self.noise.log_prob(y) - log_nu
        loss = nce_loss(g_x, g_y, nu, F.softplus)
        right = ((g_x > 0).float().sum() + (g_y <= 0).float().sum()) / (len(g_x) + len(g_y))
        return loss, {"log_Z": self.log_z.item(), "accuracy": right.item()}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        sd: dict[str, Any] = {
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "optim": self.optim.state_dict(),
            **rng_state(),
        }
        if self.log_z is not None:
            sd["log_Z"] = self.log_z.detach().clone()
        if self.chains is not None:
            sd["chains"] = self.chains.clone()
        if self.sampler_state is not None:
            sd["sampler"] = _copy_state(self.sampler_state)
        return sd

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        load_unconstrained(sd["params"])
        self.optim.load_state_dict(sd["optim"])
        with torch.no_grad():
            if self.log_z is not None:
                self.log_z.copy_(sd["log_Z"])
            if self.chains is not None:
                self.chains = sd["chains"].clone().to(self.chains.device)
        if self.sampler_state is not None:
            self.sampler_state = _copy_state(sd["sampler"])
            self.chains = self.sampler_state["x"]
        load_rng_state(sd)

    def nonfinite(self) -> list[str]:
        bad = [k for k, v in self.params.items() if not torch.isfinite(v).all()]
        if self.log_z is not None and not torch.isfinite(self.log_z):
            bad.append("log_Z")
        return bad

    # ------------------------------------------------------------------ results
    def finalize(self, history: dict[str, list[float]]) -> Fit:
        est = self.est
        diagnostics: dict[str, Any] = {"site": self.prog.site, "objective": est.objective}
        auxiliary: dict[str, Any] = {}
        if self.log_z is not None:
            diagnostics["log_Z"] = float(self.log_z.detach())
        if est.objective == "cd":
            diagnostics["sampler"] = type(self.sampler).__name__
            if self.chains is not None:
                auxiliary["chains"] = {"x": self.chains.detach().cpu().numpy()}
        fit = Fit(
            program=self.ctx.program,
            estimator=est,
            info=self.ctx.info,
            data=self.ctx.data_np,
            params=constrained_params(),
            param_state=snapshot_params(),
            history=history,
            seed=self.ctx.seed,
            device=self.ctx.device,
            diagnostics=diagnostics,
            auxiliary=auxiliary,
        )
        fit.data_sampler = data_sampler(est, self.prog, self.device)
        return fit

    @staticmethod
    def restore(est: Any, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        pyro.clear_param_store()
        with torch.no_grad():
            poutine.trace(ctx.program.model).get_trace(**ctx.data)
        load_unconstrained(state)
        fit.param_state = snapshot_params()
        fit.data_sampler = data_sampler(est, EnergyProgram(est, ctx, check=False), ctx.device)


def sample_sampler(est: Any, prog: EnergyProgram) -> Sampler:
    """How a fit draws: ``sample_sampler``, else the training sampler, else block Gibbs for
    a model that declares it, else MALA."""
    spec = est.sample_sampler or getattr(est, "sampler", None)
    return default_sampler(prog, spec, lambda: MALA(step_size=0.01))


def data_sampler(est: Any, prog: EnergyProgram, device: str | None) -> Callable[..., Any]:
    """The fit's ``data_sampler(n, seed=, data=)``: ``n`` data sets of the size of ``data``
    (the training data by default), each row a chain of ``sample_steps`` transitions from
    noise, drawn with its own seed (the global RNG is left as it was)."""

    def draw(n: int, seed: int = 0, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        # a data set has the rows of `data` (held-out data, as for any program), else the
        # training data's; the energy is unconditional, so only the row count is used
        source = data if data is not None and prog.key in data else prog.ctx.data
        rows = int(np.shape(source[prog.key])[0])
        sampler = sample_sampler(est, prog)
        with seeded(seed):
            state = sampler.init(prog.noise_like(n * rows))
            state = sampler.run(state, prog.target(sampler, prog.ctx.data), est.sample_steps)
        x = state["x"].detach().cpu().numpy()
        return {prog.site: x.reshape((n, rows) + x.shape[1:])}

    return draw


def _copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A sampler state with its per-chain tensors copied and its counters as ints."""
    return {k: v.clone() if torch.is_tensor(v) and v.dim() else int(v) for k, v in state.items()}


def _per_chain(v: Any, n: int) -> bool:
    """Whether a sampler-state entry holds one value per chain (else a shared counter)."""
    return torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == n


class _FlatNoise:
    """A distribution over flattened data as one over data of ``event_shape``."""

    def __init__(self, base: Any, event_shape: tuple[int, ...]) -> None:
        self.base, self.event_shape = base, event_shape

    def sample(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self.base.sample(shape).reshape(*shape, *self.event_shape)

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(u.reshape(u.shape[0], -1))


def _noise(spec: Any, x: torch.Tensor, event_shape: tuple[int, ...]) -> Any:
    """NCE's noise: the user's distribution (checked), or one fitted to the data ``x``."""
    flat = x.reshape(len(x), -1)
    if spec is None:
        if bool(((x == 0) | (x == 1)).all()):
            probs = flat.mean(0).clamp(1e-3, 1 - 1e-3)
            base: Any = torch.distributions.Independent(torch.distributions.Bernoulli(probs), 1)
        else:
            mean = flat.mean(0)
            centred = flat - mean
            cov = centred.T @ centred / max(len(x) - 1, 1)
            cov = cov + 1e-6 * cov.diagonal().mean().clamp_min(1e-6) * torch.eye(
                len(mean), device=x.device, dtype=x.dtype
            )
            base = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
        return _FlatNoise(base, event_shape)
    try:
        draw = spec.sample((2,))
        lp = spec.log_prob(draw)
    except Exception as e:
        raise EstimatorError(f"`noise` of NCE failed to sample or score two draws: {e}") from e
    if tuple(draw.shape) != (2, *event_shape) or tuple(lp.shape) != (2,):
        raise EstimatorError(
            f"`noise` of NCE must be a distribution over one datum (event shape "
            f"{event_shape}): sample((2,)) gave shape {tuple(draw.shape)} and log_prob "
            f"{tuple(lp.shape)}; expected {(2, *event_shape)} and (2,). Use `.to_event(...)`/"
            "`Independent` so the datum is one event."
        )
    return spec
