"""SVI's torch engine: any Pyro program, one optimiser over the param store, checkpointable.

The objective of a step is computed by the first of these that applies; ``fit.diagnostics
["path"]`` names it:

- ``"declared"``: the model object declares ``log_density`` (no latent sites) or
  ``elbo_terms`` (with its own guide), see :mod:`ppgen.capabilities`; torch alone.
- ``"reparam"``: :class:`~ppgen.inference.objectives.ReparamELBO`, one guide pass and one model
  pass under a recording handler (no traces), for reparameterisable guides and the
  ``trace``/``meanfield``/``renyi``/``iwae`` objectives.
- ``"pyro"``: Pyro's own ELBO object (score-function terms, enumeration, ``graph``, or an ELBO
  object you pass).

All three give the numbers of Pyro's objective for the same parameters and noise; the
optimiser is one :class:`~ppgen.inference.optim.TorchOptimizer` (fused Adam where possible).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import AutoDelta, AutoLaplaceApproximation
from pyro.optim import PyroOptim

from ppgen.backends._checks import Fault
from ppgen.backends._pyro_trace import find_fault
from ppgen.capabilities import declares
from ppgen.errors import PPGenError, ProgramError
from ppgen.inference._distributed import all_reduce_mean, start_in_step
from ppgen.inference._guide_fit import density_guide, guide_fit, guide_latents
from ppgen.inference._pyro import (
    SyncTorchEngine,
    constrained_params,
    load_rng_state,
    load_unconstrained,
    nonfinite_log_prob_sites,
    nonfinite_params,
    rng_state,
    snapshot_params,
    start_run,
)
from ppgen.inference._step_errors import is_validation_error, step_error
from ppgen.inference.objectives.reparam import NotReparameterized, ReparamELBO
from ppgen.nn import modules_registered
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["TorchEngine", "REPARAM_OBJECTIVES"]

REPARAM_OBJECTIVES = ("trace", "meanfield", "renyi", "iwae")


class TorchEngine(SyncTorchEngine):
    """One SVI run on a Pyro program (see the module docstring for the objective paths)."""

    def __init__(self, est: Any, ctx: FitContext) -> None:
        self.est, self.ctx = est, ctx
        self.world = ctx.extra.get("shard", (0, 1))[1]
        start_run(ctx)
        plate = ctx.extra.get("batch_plate")
        self.scaler = ctx.program.ops.scale_box(plate) if plate else None
        self.model = self.scaler(ctx.program.model) if self.scaler else ctx.program.model
        self.guide = est._resolve_guide(ctx, self.model, "pyro")
        self.scaled_guide = self.scaler(self.guide) if self.scaler else self.guide
        self._rng_before, self._batch, self._fault = torch.get_rng_state(), ctx.data, None
        try:
            with torch.no_grad():
                # create every param now (the guide's, and the model's that the guide never
                # touches), so checkpoints, resume and load see them all
                gtr = poutine.trace(self.scaled_guide).get_trace(**ctx.data)
                poutine.replay(self.model, trace=gtr)(**ctx.data)
        except ValueError as e:
            err = self.explain_failure("before the first step (creating the parameters)", e)
            if err is None:
                raise
            raise err from e
        start_in_step(ctx, pyro.get_param_store()._params.values())
        self.path, self.loss = self._choose_objective()
        self.optim = _Optimizer(est, list(pyro.get_param_store()._params.values()))

    # ------------------------------------------------------------------ objectives
    def _choose_objective(self) -> tuple[str, Callable[[Mapping[str, Any], float], Any]]:
        est, ctx = self.est, self.ctx
        obj, info = ctx.program.obj, ctx.info
        reparam = _reparam_elbo(est, info)
        if reparam is not None:
            own_guide = est._guide_spec(ctx) is ctx.program.guide and ctx.program.guide is not None
            if not info.latent and declares(obj, "log_density"):
                loss = _declared_density(obj)
                _check_declared(ctx, "log_density", loss, self._reparam_loss(reparam), exact=True)
                return "declared", loss
            if info.latent and own_guide and declares(obj, "elbo_terms"):
                loss = _declared_elbo(obj, reparam)
                _check_declared(ctx, "elbo_terms", loss, self._reparam_loss(reparam), exact=False)
                return "declared", loss
            rng = torch.get_rng_state()
            try:  # a probe (raises NotReparameterized); the RNG is put back afterwards
                with torch.no_grad(), pyro.validation_enabled(False), modules_registered():
                    reparam.loss(self.model, self.scaled_guide, **ctx.data)
                return "reparam", self._reparam_loss(reparam)
            except NotReparameterized:
                pass
            finally:
                torch.set_rng_state(rng)
        elbo = est._make_elbo(ctx, "pyro")
        model, guide = self.model, self.scaled_guide

        def pyro_loss(data: Mapping[str, Any], scale: float) -> float:
            with warnings.catch_warnings():
                # a NaN loss is ppgen's NonFiniteError (raised by the loop), not Pyro's warning
                warnings.filterwarnings("ignore", "Encountered NaN", UserWarning)
                # bound, so arguments named `model` or `guide` reach the program, not Pyro
                return elbo.loss_and_grads(partial(model, **data), partial(guide, **data))

        return "pyro", pyro_loss

    def _reparam_loss(self, reparam: ReparamELBO) -> Callable[[Mapping[str, Any], float], Any]:
        model, guide = self.model, self.scaled_guide

        def loss(data: Mapping[str, Any], scale: float) -> Any:
            return reparam.differentiable_loss(model, guide, **data)

        return loss

    # ------------------------------------------------------------------ the step
    def step(self, data: Mapping[str, Any], scale: float) -> float:
        self._rng_before, self._batch, self._fault = torch.get_rng_state(), data, None
        if self.scaler:
            self.scaler.scale = scale
        lbfgs = self.optim.needs_closure  # L-BFGS evaluates a closure along a line search
        if lbfgs:
            loss = float(self.optim.step(closure=self._line_search_closure(data, scale)))
        else:
            loss = self._loss_and_grads(data, scale)
        if not math.isfinite(loss):  # find the site now, while the parameters are those used
            self._fault = self._find_fault()
        if not lbfgs:
            self.optim.add(pyro.get_param_store()._params.values())
            if self.world > 1:
                loss = self._average_across_processes(loss)
            self.optim.step()
        return loss

    def _average_across_processes(self, loss: float) -> float:
        """Data-parallel runs (:class:`~ppgen.inference.runners.DDP`): the gradients and the
        loss averaged over the processes in one all-reduce. Each process's loss is its share
        weighted ``N / b``, so the averages are the global batch's."""
        grads = [p.grad for p in pyro.get_param_store()._params.values() if p.grad is not None]
        return all_reduce_mean(grads, [loss])[0]

    def _line_search_closure(self, data: Mapping[str, Any], scale: float) -> Callable[[], float]:
        """L-BFGS's closure. Its first call is at the current parameters; a later (trial) point
        whose loss overflows to inf/NaN is reported as a much worse loss with no slope, so
        torch's strong-Wolfe search backtracks instead of interpolating to NaN."""
        start: list[float] = []

        def closure() -> float:
            loss = self._loss_and_grads(data, scale)
            if not start:
                start.append(loss)
            elif not math.isfinite(loss) and math.isfinite(start[0]):
                self.optim.zero_grad()
                return start[0] + 1e3 * (abs(start[0]) + 1.0)
            return loss

        return closure

    def _loss_and_grads(self, data: Mapping[str, Any], scale: float) -> float:
        """Zero the gradients, then this batch's loss with its gradients in ``.grad``."""
        self.optim.zero_grad()
        if self.path == "pyro":
            return self.loss(data, scale)  # Pyro's ELBO computes its own gradients
        with pyro.validation_enabled(False), modules_registered():
            value = self.loss(data, scale)
        if value.requires_grad:
            value.backward()
        return value.item()

    def gradient_report(self) -> dict[str, Any] | None:
        """The full-data loss at the final parameters, evaluated twice, and per parameter its
        gradient norm and its curvature along the gradient.

        ``{"loss": L, "repeat": L', "gradients": {name: (|g_k|, g_k^T H_kk g_k)}}`` over the
        unconstrained parameter tensors (a Hessian-vector product by double back-propagation;
        the curvature is NaN through operations without a second derivative). ``L != L'`` says
        the objective itself is random (dropout, dequantisation noise). ``None`` when the
        objective is Pyro's own ELBO object. The RNG and the program module's buffers (batch-
        norm statistics) are put back afterwards: the check changes nothing.
        """
        if self.path == "pyro":
            return None
        store = pyro.get_param_store()._params
        names, params = list(store), list(store.values())
        module = self.ctx.program.module
        buffers = [] if module is None else [(b, b.detach().clone()) for b in module.buffers()]
        rng = torch.get_rng_state()
        try:
            with pyro.validation_enabled(False), modules_registered():
                if self.scaler:
                    self.scaler.scale = 1.0
                with torch.no_grad():
                    repeat = float(self.loss(self.ctx.data, 1.0))
                value = self.loss(self.ctx.data, 1.0)
                out = {"loss": float(value.detach()), "repeat": repeat, "gradients": None}
                if not value.requires_grad:
                    out["gradients"] = {n: (0.0, 0.0) for n in names}
                    return out
                grads = torch.autograd.grad(value, params, create_graph=True, allow_unused=True)
                report = {}
                for n, p, g in zip(names, params, grads, strict=True):
                    if g is None:
                        report[n] = (0.0, 0.0)
                        continue
                    flat = g.detach()
                    curv = 0.0
                    if g.requires_grad:
                        try:
                            (hg,) = torch.autograd.grad(
                                g, p, grad_outputs=flat, retain_graph=True, allow_unused=True
                            )
                            curv = 0.0 if hg is None else float((hg * flat).sum())
                        except RuntimeError:  # an operation without a second derivative
                            curv = math.nan
                    report[n] = (float(flat.norm()), curv)
                out["gradients"] = report
                return out
        finally:
            torch.set_rng_state(rng)
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)

    def _find_fault(self) -> Fault | None:
        """The site at fault in this step's run (its draws replayed), see :func:`find_fault`."""
        rng = torch.get_rng_state()
        torch.set_rng_state(self._rng_before)
        try:
            with modules_registered():
                return find_fault(self.model, self._batch, self.scaled_guide)
        finally:
            torch.set_rng_state(rng)

    def explain_failure(self, when: str, err: BaseException | None = None) -> PPGenError | None:
        """A named error for a step that failed ``when`` (e.g. ``"at step 7"``), or ``None``.

        ``err`` is a ``ValueError`` raised inside the step (torch's argument validation); without
        it the step's loss was non-finite and the site found then is used. A guide proposal
        outside the model site's support is a :class:`ProgramError`; a NaN in a validated
        distribution is the NaN guard's :class:`NonFiniteError`.
        """
        if err is not None:
            if not is_validation_error(err):
                return None
            self._fault = self._find_fault()
        return step_error(self._fault, when, err)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        params = pyro.get_param_store().get_state()["params"]
        sd = {
            "params": {k: v.detach().clone() for k, v in params.items()},
            "optim": self.optim.state_dict(),
            **rng_state(),
        }
        return sd

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        load_unconstrained(sd["params"])
        self.optim.load_state_dict(sd["optim"])
        load_rng_state(sd)

    def nonfinite(self) -> list[str]:
        return nonfinite_params()

    def nonfinite_loss_sites(self) -> list[str]:
        if self._fault is not None:  # found by the failing step itself, before its update
            return [self._fault.site]
        return nonfinite_log_prob_sites(self.model, self.guide, self.ctx.data)

    # ------------------------------------------------------------------ results
    def final_guide(self) -> Any:
        if isinstance(self.guide, AutoLaplaceApproximation):
            return self.guide.laplace_approximation(**self.ctx.data)
        return self.guide

    def sampler(self, guide: Any) -> Callable[[int, int], dict[str, np.ndarray]]:
        ctx = self.ctx
        latents, ops = guide_latents(ctx), ctx.program.ops

        def sample(n: int, seed: int) -> dict[str, np.ndarray]:
            # the guide alone holds every latent; running the model too would only cost time
            return ops.predictive(
                guide, ctx.data, num_samples=n, return_sites=latents, uncondition=False, seed=seed
            )

        return sample

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the rebuilt run's parameters (unconstrained, as saved), by name."""
        return {k: tuple(v.shape) for k, v in pyro.get_param_store().get_state()["params"].items()}

    def restore(self, fit: Fit, state: Mapping[str, Any]) -> None:
        load_unconstrained(state)
        fit.param_state = snapshot_params()
        fit.posterior_sampler = self.sampler(self.final_guide())
        guide = self.final_guide()
        fit.guide = density_guide(self.ctx, guide, isinstance(guide, AutoDelta))

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        guide = self.final_guide()
        diagnostics = {"guide": type(guide).__name__, "path": self.path}
        return guide_fit(
            self.est,
            self.ctx,
            history,
            constrained_params(),
            snapshot_params(),
            self.sampler(guide),
            diagnostics,
            point_mass=isinstance(guide, AutoDelta),
            guide=guide,
        )


class _Optimizer:
    """The run's optimiser: ppgen's table by name, or a ``torch.optim`` class / ``pyro.optim``."""

    def __init__(self, est: Any, params: list[torch.Tensor]) -> None:
        spec = est.optim
        self.pyro = spec if isinstance(spec, PyroOptim) else None
        if self.pyro is not None:
            self.params: list[torch.Tensor] = list(params)
            return
        self.torch = est._optim_spec().torch(params, est._total_steps())

    def zero_grad(self) -> None:
        if self.pyro is None:
            self.torch.zero_grad()
        else:
            for p in self.params:
                p.grad = None

    def add(self, params: Any) -> None:
        if self.pyro is None:
            self.torch.add(params)
        else:
            known = {id(p) for p in self.params}
            self.params += [p for p in params if id(p) not in known]

    @property
    def needs_closure(self) -> bool:
        return self.pyro is None and self.torch.needs_closure

    def step(self, closure: Callable | None = None) -> Any:
        if self.pyro is None:
            return self.torch.step(closure=closure)
        self.pyro([p for p in self.params if p.grad is not None])
        return None

    def state_dict(self) -> dict[str, Any]:
        return self.torch.state_dict() if self.pyro is None else self.pyro.get_state()

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        if self.pyro is None:
            self.torch.load_state_dict(sd)
        else:
            self.pyro.set_state(sd)


def _reparam_elbo(est: Any, info: Any) -> ReparamELBO | None:
    """The reparameterised ELBO for the estimator's objective, or ``None`` if it has none."""
    elbo = est.objective(info)
    if isinstance(elbo, ReparamELBO):
        if elbo.num_particles > 1 and elbo.plate_nesting is None:
            elbo.plate_nesting = info.max_plate_nesting
        return elbo
    if not isinstance(elbo, str) or elbo.lower() not in REPARAM_OBJECTIVES:
        return None
    k = est.num_particles
    return ReparamELBO(
        elbo.lower(),  # type: ignore[arg-type]
        k,
        alpha=est.alpha,
        max_plate_nesting=None if k == 1 else (est.max_plate_nesting or info.max_plate_nesting),
    )


def _declared_density(obj: Any) -> Callable[[Mapping[str, Any], float], Any]:
    def loss(data: Mapping[str, Any], scale: float) -> Any:
        return -scale * obj.log_density(**data).sum()

    return loss


def _declared_elbo(obj: Any, elbo: ReparamELBO) -> Callable[[Mapping[str, Any], float], Any]:
    def loss(data: Mapping[str, Any], scale: float) -> Any:
        return scale * elbo.terms_loss(obj.elbo_terms(elbo.num_particles, **data))

    return loss


def _check_declared(
    ctx: FitContext, name: str, declared: Callable, program: Callable, exact: bool
) -> None:
    """Refuse a declared capability that disagrees with the program it stands for."""
    data = ctx.data
    rng = torch.get_rng_state()
    try:
        with torch.no_grad(), pyro.validation_enabled(False), modules_registered():
            if exact:  # the same noise for both (dequantised flows draw some)
                a = float(declared(data, 1.0))
                torch.set_rng_state(rng)
                b = float(program(data, 1.0))
                ok, detail = abs(a - b) <= 1e-4 * (1.0 + abs(b)), f"{a:.6g} vs {b:.6g}"
            else:  # Monte Carlo ELBOs: compare means over draws, within 6 standard errors
                da = np.array([float(declared(data, 1.0)) for _ in range(16)])
                db = np.array([float(program(data, 1.0)) for _ in range(16)])
                se = math.sqrt((da.var() + db.var()) / 16)
                diff = abs(da.mean() - db.mean())
                ok = diff <= 6 * se + 1e-4 * (1.0 + abs(db.mean()))
                detail = f"{da.mean():.6g} vs {db.mean():.6g} (standard error {se:.3g})"
    finally:
        torch.set_rng_state(rng)
    if not ok:
        raise ProgramError(
            f"`{type(ctx.program.obj).__name__}.{name}` disagrees with the program it declares "
            f"to evaluate: loss {detail}. Fix the method to compute the program's own "
            f"{'log density' if exact else 'ELBO terms'}, or delete it (set `{name} = None`) "
            "to let ppgen run the program."
        )
