"""Estimator base classes, the fit context handed to them, and the name table behind `method=`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ppgen.errors import EstimatorError
from ppgen.inference._loop import run_loop
from ppgen.inference.optim import Optim, describe_optimizer

if TYPE_CHECKING:
    from ppgen._typing import Callback
    from ppgen.program import Program, ProgramInfo
    from ppgen.result import Fit

__all__ = ["Estimator", "OptimEstimator", "FitContext", "register", "resolve_method", "REGISTRY"]

REGISTRY: dict[str, type[Estimator]] = {}


def register(*names: str):
    """Class decorator adding an estimator to the ``method="name"`` table."""

    def deco(cls: type[Estimator]) -> type[Estimator]:
        for n in names:
            REGISTRY[n.lower()] = cls
        return cls

    return deco


def resolve_method(method: Estimator | str | type) -> Estimator:
    """Turn ``method=`` (an estimator, its class, or a registered name) into an estimator."""
    if isinstance(method, Estimator):
        return method
    if isinstance(method, type) and issubclass(method, Estimator):
        return method()
    if isinstance(method, str):
        cls = REGISTRY.get(method.lower())
        if cls is None:
            raise EstimatorError(
                f"Unknown `method={method!r}`. Valid names: {sorted(REGISTRY)}; or pass an "
                "estimator object such as ppgen.inference.NUTS(num_samples=500)."
            )
        return cls()
    raise EstimatorError(
        f"`method` must be an estimator object or one of {sorted(REGISTRY)}; got "
        f"{type(method).__name__}."
    )


@dataclass
class FitContext:
    """Everything an estimator needs for one fit: validated program, data, rng, device."""

    program: Program
    info: ProgramInfo
    data: dict[str, Any]  # backend-native arrays
    data_np: dict[str, Any]  # numpy / python values (for ArviZ and saving)
    seed: int = 0
    device: str | None = None
    callbacks: Sequence[Callback] = ()
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def with_deterministic(self, draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the program's deterministic sites, computed from latent ``draws``.

        ``draws`` are shaped ``(chain, draw, ...)``; the result has the same layout.
        """
        det = [n for n, s in self.info.sites.items() if s.kind == "deterministic"]
        missing = [n for n in det if n not in draws]
        if not missing or not draws:
            return draws
        c, d = next(iter(draws.values())).shape[:2]
        flat = {k: v.reshape((c * d,) + v.shape[2:]) for k, v in draws.items()}
        out = self.program.ops.predictive(
            self.program.model,
            self.data,
            samples=flat,
            return_sites=missing,
            uncondition=False,
            seed=self.seed,
        )
        draws = dict(draws)
        for k in missing:
            v = out[k]
            draws[k] = v.reshape((c, d) + v.shape[1:])
        return draws


class Estimator(ABC):
    """Turns a program and data into a :class:`~ppgen.result.Fit`.

    Subclasses set ``name`` and ``backends`` and implement :meth:`run`. Optimisation-based
    estimators derive from :class:`OptimEstimator` instead and implement only ``init`` and
    ``step``; the shared loop does progress, callbacks, NaN guard, checkpoints and resume.
    ``kinds`` declares the program kinds the estimator fits (``"explicit"``, ``"implicit"``,
    ``"energy"``, ``"unobserved"``: no observed site; see
    :attr:`~ppgen.program.ProgramInfo.kind`): ``ppgen.fit`` refuses any other kind before work,
    naming the registered estimators that fit it. ``conditions_on_data = False`` marks an
    estimator whose draws ignore the observations (``Prior``): it is not offered as a fitter
    of programs with observed sites in those refusals.
    """

    name: ClassVar[str] = "estimator"
    backends: ClassVar[tuple[str, ...]] = ("pyro", "numpyro")
    kinds: ClassVar[tuple[str, ...]] = ("explicit",)
    conditions_on_data: ClassVar[bool] = True

    def check(self, program: Program, info: ProgramInfo) -> None:
        """Raise :class:`EstimatorError` if this estimator cannot fit ``program`` (before work)."""
        if program.backend not in self.backends:
            raise EstimatorError(
                f"{type(self).__name__} supports backends {self.backends}; the program is a "
                f"{program.backend} program."
            )

    @abstractmethod
    def run(self, ctx: FitContext) -> Fit:
        """Fit and return a :class:`~ppgen.result.Fit`."""

    def settings(self) -> dict[str, Any]:
        """JSON-able settings, stored in a saved run's manifest."""
        out: dict[str, Any] = {}
        object_lr = None
        for k, v in vars(self).items():
            if k.startswith("_"):
                continue
            if k == "optim" and v is not None and not isinstance(v, str):
                # an optimiser object: its name (and learning rate, where it says)
                if isinstance(v, Optim):
                    out[k], object_lr = v.name, v.lr
                else:
                    out[k], object_lr = describe_optimizer(v)
                continue
            if isinstance(v, str | int | float | bool) or v is None:
                out[k] = v
            elif isinstance(v, list | tuple) and all(isinstance(x, str | int | float) for x in v):
                out[k] = list(v)
            else:
                out[k] = getattr(v, "__name__", type(v).__name__)
        if object_lr is not None and "lr" in out:
            out["lr"] = object_lr
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


class OptimEstimator(Estimator):
    """An estimator driven by the shared loop (`ppgen.inference._loop.run_loop`).

    Implement ``init(ctx) -> state`` and ``step(state, batch) -> (state, metrics)`` (metrics
    must contain ``"loss"``), ``state_dict``/``load_state_dict`` for checkpoints, and
    ``finalize(ctx, state, history) -> Fit``.

    An estimator may do several inner updates per loop step (a GAN's ``n_critic`` critic
    updates); the loop only sees the metrics ``step`` returns. Every metric is shown in the
    progress bar, kept in ``fit.history`` and checked by the NaN guard, which names the
    metric, the step and the parameters (``nonfinite_sites``) that went bad.

    Minibatching (``batch_size=B``): the loop subsamples the plate ``batch_plate`` (by
    default the one plate that holds every observed site and indexes an axis of the observed
    data; several such plates are refused, naming them), slicing each data array along the
    axis that plate indexes, found from the program's trace (plate-first ``(N, D)`` and
    plate-last ``(D, N)`` layouts alike), and weights the plate's sites ``N / B``. An epoch
    of N rows ends with a partial batch of ``N mod B`` rows weighted ``N / (N mod B)``;
    ``drop_last=True`` leaves it out (``floor(N / B)`` full batches an epoch).

    Example: a complete estimator with two parameter groups and two optimiser steps per loop
    step, run by the real loop (checkpoints and resume work too) and returning a ``Fit``.

        >>> import numpy as np, torch, pyro, pyro.distributions as dist, ppgen
        >>> from ppgen.inference import Optim
        >>> from ppgen.result import Fit
        >>> class MeanThenSpread(OptimEstimator):
        ...     name = "mean-then-spread"
        ...     def init(self, ctx):
        ...         x = torch.as_tensor(ctx.data_np["x"], dtype=torch.float32)
        ...         loc = torch.zeros((), requires_grad=True)
        ...         log_sd = torch.zeros((), requires_grad=True)
        ...         opt = Optim("adam", 0.05, groups={"spread": {"lr": 0.02}}).torch(
        ...             {"mean": [loc], "spread": [log_sd]}, self.steps)
        ...         return {"x": x, "loc": loc, "log_sd": log_sd, "opt": opt}
        ...     def step(self, state, batch):
        ...         x, loc, log_sd, opt = state["x"], state["loc"], state["log_sd"], state["opt"]
        ...         opt.zero_grad()
        ...         loss_mean = ((x - loc) ** 2).mean()
        ...         loss_mean.backward()
        ...         opt.step(["mean"])  # the first network's update ...
        ...         resid = ((x - loc.detach()) ** 2).mean()
        ...         loss_spread = (log_sd - 0.5 * resid.log()) ** 2
        ...         loss_spread.backward()
        ...         opt.step(["spread"])  # ... then the second's, with its own learning rate
        ...         opt.schedule()
        ...         return state, {"loss": loss_mean.item(), "loss_spread": loss_spread.item()}
        ...     def state_dict(self, state):
        ...         return {"loc": state["loc"].detach().clone(),
        ...                 "log_sd": state["log_sd"].detach().clone(),
        ...                 "optim": state["opt"].state_dict()}
        ...     def load_state_dict(self, state, sd):
        ...         with torch.no_grad():
        ...             state["loc"].copy_(sd["loc"]); state["log_sd"].copy_(sd["log_sd"])
        ...         state["opt"].load_state_dict(sd["optim"])
        ...         return state
        ...     def finalize(self, ctx, state, history):
        ...         params = {"loc": state["loc"].detach().numpy(),
        ...                   "scale": state["log_sd"].exp().detach().numpy()}
        ...         return Fit(program=ctx.program, estimator=self, info=ctx.info,
        ...                    data=ctx.data_np, params=params, history=history, seed=ctx.seed)
        >>> def model(x=None):
        ...     loc = pyro.param("loc", torch.tensor(0.0))
        ...     scale = pyro.param("scale", torch.tensor(1.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(loc, scale), obs=x)
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, 500)
        >>> fit = ppgen.fit(model, {"x": x}, MeanThenSpread(steps=400))
        >>> sorted(fit.history), bool(abs(fit.params["loc"] - x.mean()) < 0.05)
        (['loss', 'loss_spread'], True)
        >>> bool(abs(fit.params["scale"] - x.std()) < 0.05)
        True
    """

    def __init__(
        self,
        *,
        steps: int | None = 1000,
        epochs: int | None = None,
        batch_size: int | None = None,
        batch_plate: str | None = None,
        drop_last: bool = False,
    ) -> None:
        if steps is not None and (not isinstance(steps, int | np.integer) or steps < 0):
            raise EstimatorError(f"`steps` must be a non-negative int; got {steps!r}.")
        if epochs is not None and (not isinstance(epochs, int | np.integer) or epochs < 1):
            raise EstimatorError(f"`epochs` must be a positive int; got {epochs!r}.")
        if batch_size is not None and (
            not isinstance(batch_size, int | np.integer) or batch_size < 1
        ):
            raise EstimatorError(f"`batch_size` must be a positive int; got {batch_size!r}.")
        self.steps = None if epochs is not None else steps
        self.epochs = epochs
        if not isinstance(drop_last, bool | np.bool_):
            raise EstimatorError(f"`drop_last` must be True or False; got {drop_last!r}.")
        self.batch_size = batch_size
        self.batch_plate = batch_plate
        self.drop_last = bool(drop_last)

    def run(self, ctx: FitContext) -> Fit:
        return run_loop(self, ctx)

    @abstractmethod
    def init(self, ctx: FitContext) -> Any: ...

    @abstractmethod
    def step(self, state: Any, batch: Mapping[str, Any]) -> tuple[Any, dict[str, float]]: ...

    @abstractmethod
    def state_dict(self, state: Any) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: Any, sd: Mapping[str, Any]) -> Any: ...

    @abstractmethod
    def finalize(self, ctx: FitContext, state: Any, history: dict[str, list[float]]) -> Fit: ...

    def async_metrics(self, state: Any) -> bool:
        """Whether ``step`` returns device values still being computed (JAX dispatch).

        The loop then reads them one step late, so the next step is queued first; such an
        estimator must implement :meth:`rewind`.
        """
        return False

    def abort_step(self, state: Any) -> Any:
        """Forget a ``step`` cut short by Ctrl-C (restore the random state it consumed), so
        the checkpoint written after the interrupt resumes exactly. Default: nothing to undo."""
        return state

    def rewind(self, state: Any) -> Any:
        """Undo the last ``step`` (a callback stopped the loop at the step before it)."""
        raise NotImplementedError(f"{type(self).__name__} cannot undo a step.")

    def nonfinite_sites(self, state: Any) -> list[str]:
        """Names of parameters holding NaN/inf (NaN guard; checked before every checkpoint)."""
        return []

    def nonfinite_loss_sites(self, state: Any) -> list[str]:
        """Sites whose log-density is NaN/inf now (only asked once the loss went NaN)."""
        return []

    def live_params(self, state: Any, n: int) -> dict[str, Any] | None:
        """The model's parameters as they are now, repeated ``n`` times along a leading axis,
        to draw samples during training; ``None`` when they are not in ``state`` (Pyro: they
        are the param store's, which the program reads as it is)."""
        return None


class EngineEstimator(OptimEstimator):
    """An :class:`OptimEstimator` whose loop state is one engine object per fit.

    ``init`` returns the backend's engine; the loop contract then passes straight to it:
    ``state_dict``/``load_state_dict``/``rewind``/``finalize(history)``, ``async_metrics``,
    ``nonfinite()`` and, where the engine has them, ``abort_step``/``nonfinite_loss_sites``.
    SVI, MLE and Adversarial are engine estimators; subclasses write ``init`` and ``step``.
    """

    def state_dict(self, state: Any) -> dict[str, Any]:
        return state.state_dict()

    def load_state_dict(self, state: Any, sd: Mapping[str, Any]) -> Any:
        state.load_state_dict(sd)
        return state

    def async_metrics(self, state: Any) -> bool:
        return state.async_metrics

    def abort_step(self, state: Any) -> Any:
        if hasattr(state, "abort_step"):
            state.abort_step()
        return state

    def rewind(self, state: Any) -> Any:
        state.rewind()
        return state

    def nonfinite_sites(self, state: Any) -> list[str]:
        return state.nonfinite()

    def nonfinite_loss_sites(self, state: Any) -> list[str]:
        return state.nonfinite_loss_sites() if hasattr(state, "nonfinite_loss_sites") else []

    def live_params(self, state: Any, n: int) -> dict[str, Any] | None:
        if hasattr(state, "live_params"):
            return state.live_params(n)
        return super().live_params(state, n)

    def finalize(self, ctx: FitContext, state: Any, history: dict[str, list[float]]) -> Fit:
        return state.finalize(history)
