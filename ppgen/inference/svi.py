"""Stochastic variational inference on Pyro or NumPyro, driven by the shared loop."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError
from ppgen.inference._base import FitContext, OptimEstimator, register
from ppgen.inference.guides.auto import guide_class_name, make_guide
from ppgen.inference.objectives.elbo import make_elbo
from ppgen.result import Fit

__all__ = ["SVI"]

_ENGINES = ("auto", "pyro", "lean")


@register("svi", "vi")
class SVI(OptimEstimator):
    r"""Stochastic variational inference: maximise the ELBO of a guide q over the program's latents.

    .. math:: \mathcal{L}(\phi) = \mathbb{E}_{q_\phi(z)}[\log p(x, z) - \log q_\phi(z)]

    With ``batch_size`` the data are split into shuffled minibatches along the plate holding
    the observations; sites in that plate are weighted ``N / B``, so every step's loss is an
    unbiased estimate of the full-data negative ELBO.

    Arguments:
        guide: an autoguide name (``"normal"``, ``"diagonal"``, ``"mvn"``, ``"lowrank"``,
            ``"laplace"``, ``"delta"``, ``"iaf"``), an autoguide class, or a guide callable.
            Defaults to the program's own guide if it has one, else ``"normal"``.
        elbo: ``"trace"``, ``"meanfield"``, ``"graph"``, ``"enum"`` (sum out discrete latents
            marked ``infer={"enumerate": "parallel"}``), ``"renyi"`` or ``"iwae"``.
        num_particles: Monte Carlo particles per step (vectorised); K for IWAE/Rényi.
        alpha: Rényi divergence order for ``elbo="renyi"``.
        optim: ``"adam"``, ``"clipped_adam"``, ``"sgd"``, ``"rmsprop"``, ``"adagrad"``, or a
            backend optimiser object.
        lr: learning rate; ``lr_decay``: total exponential decay factor over the run.
        steps / epochs / batch_size / batch_plate: length of the run and minibatching.
        num_draws: posterior draws taken from the fitted guide for ``Fit.draws``.
        init_scale: initial scale of Normal-family autoguides.
        engine: how a Pyro program's step is computed. ``"auto"`` (default) evaluates the
            standard VAE shape (a zoo :class:`~ppgen.models.vae.VAE` with its own
            diagonal-Normal guide) with torch alone, 2-3x faster than Pyro's ``SVI.step`` with
            the same objective and the same numbers, and runs Pyro's ``SVI.step`` for every
            other program; ``"pyro"`` always runs Pyro's ``SVI.step``; ``"lean"`` runs the
            lean handler ELBO of :class:`~ppgen.inference.FastSVI` for any reparameterised
            program. ``fit.diagnostics["engine"]`` names the path that ran. NumPyro programs
            always run NumPyro's jitted update.

    References:
        Hoffman et al., Stochastic Variational Inference, arXiv:1206.7051.
        Ranganath et al., Black Box Variational Inference, arXiv:1401.0118.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", 50):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> x = np.random.default_rng(0).normal(2.0, 1.0, 50)
        >>> fit = ppgen.fit(model, data={"x": x}, method=SVI(steps=500, lr=0.05))
        >>> bool(abs(fit.draws["mu"].mean() - x.sum() / (50 + 1e-2)) < 0.1)
        True
    """

    name = "svi"

    def __init__(
        self,
        guide: Any = None,
        elbo: str | Any = "trace",
        *,
        num_particles: int = 1,
        vectorize_particles: bool = True,
        alpha: float = 0.0,
        optim: str | Any = "adam",
        lr: float = 1e-2,
        lr_decay: float | None = None,
        clip_norm: float | None = None,
        steps: int | None = 1000,
        epochs: int | None = None,
        batch_size: int | None = None,
        batch_plate: str | None = None,
        num_draws: int = 1000,
        init_scale: float | None = None,
        max_plate_nesting: int | None = None,
        engine: str = "auto",
    ) -> None:
        super().__init__(steps=steps, epochs=epochs, batch_size=batch_size, batch_plate=batch_plate)
        if engine not in _ENGINES:
            raise EstimatorError(f"`engine` must be one of {_ENGINES}; got {engine!r}.")
        if guide is not None:
            guide_class_name(guide)  # unknown names fail here, before any work
        if not isinstance(num_particles, int) or num_particles < 1:
            raise EstimatorError(f"`num_particles` must be a positive int; got {num_particles!r}.")
        if not (isinstance(lr, float | int) and lr > 0):
            raise EstimatorError(f"`lr` must be a positive number; got {lr!r}.")
        self.guide = guide
        self.elbo = elbo
        self.num_particles = num_particles
        self.vectorize_particles = vectorize_particles
        self.alpha = alpha
        self.optim = optim
        self.lr = float(lr)
        self.lr_decay = lr_decay
        self.clip_norm = clip_norm
        self.num_draws = num_draws
        self.init_scale = init_scale
        self.max_plate_nesting = max_plate_nesting
        self.engine = engine
        make_elbo(elbo, "pyro", num_particles=num_particles, alpha=alpha)  # validate early

    # ------------------------------------------------------------------ checks
    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        enum = self.elbo == "enum"
        undeclared = [n for n in info.discrete_latent if info.sites[n].enumerate is None]
        guide = self.guide if self.guide is not None else program.guide
        if undeclared and guide_class_name(guide or "normal") is not None:
            raise EstimatorError(
                f"Discrete latent site(s) {undeclared} cannot be covered by an autoguide. Mark "
                "them infer={'enumerate': 'parallel'} and use elbo='enum' (or write a guide)."
            )
        enumerated = [n for n in info.discrete_latent if info.sites[n].enumerate]
        if enumerated and not enum:
            raise EstimatorError(
                f"Site(s) {enumerated} are marked for enumeration; use SVI(elbo='enum')."
            )

    def _guide_spec(self, ctx: FitContext) -> Any:
        if self.guide is not None:
            return self.guide
        return ctx.program.guide if ctx.program.guide is not None else "normal"

    def _resolve_guide(self, ctx: FitContext, model: Any, backend: str) -> Any:
        spec = self._guide_spec(ctx)
        if guide_class_name(spec) is not None:
            hide = [n for n in ctx.info.discrete_latent if ctx.info.sites[n].enumerate]
            return make_guide(spec, model, backend, hide=hide, init_scale=self.init_scale)
        if spec is ctx.program.guide:
            return spec
        if not callable(spec):
            raise EstimatorError("`guide` must be a name, an autoguide class or a callable.")
        if hasattr(spec, "bind") and getattr(spec, "_model", 1) is None:
            spec.bind(ctx.program.model)  # e.g. Amortized() built before the model was known
        if hasattr(spec, "for_backend"):
            spec = spec.for_backend(backend)  # Amortized on a NumPyro program: its JAX twin
        return ctx.program._wrap(spec)

    def _make_elbo(self, ctx: FitContext, backend: str) -> Any:
        """The backend's ELBO object; plate nesting from the program's trace where needed.

        Enumeration needs the nesting on both backends; Pyro's vectorised particles too.
        """
        nesting = self.max_plate_nesting
        if nesting is None and (
            self.elbo == "enum" or (backend == "pyro" and self.num_particles > 1)
        ):
            nesting = ctx.info.max_plate_nesting
        return make_elbo(
            self.elbo,
            backend,
            num_particles=self.num_particles,
            vectorize_particles=self.vectorize_particles,
            alpha=self.alpha,
            max_plate_nesting=nesting,
        )

    def _total_steps(self) -> int:
        return self.steps if self.steps is not None else 1000

    # ------------------------------------------------------------------ init
    def init(self, ctx: FitContext) -> Any:
        if ctx.program.backend != "pyro":
            from ppgen.inference._svi_numpyro import _JaxEngine

            return _JaxEngine(self, ctx)
        if self.engine != "pyro":
            from ppgen.inference.fast_svi import lean_engine

            engine = lean_engine(self, ctx, direct_only=self._auto_direct_only(ctx))
            if engine is not None:
                return engine
        return _PyroEngine(self, ctx)

    def _auto_direct_only(self, ctx: FitContext) -> bool:
        """Whether ``engine="auto"`` takes only the direct torch paths (else any lean path)."""
        return self.engine == "auto"

    def step(self, state: Any, batch: Mapping[str, Any]) -> tuple[Any, dict[str, float]]:
        return state, {"loss": state.step(batch["data"], batch["scale"])}

    def state_dict(self, state: Any) -> dict[str, Any]:
        return state.state_dict()

    def load_state_dict(self, state: Any, sd: Mapping[str, Any]) -> Any:
        state.load_state_dict(sd)
        return state

    def async_metrics(self, state: Any) -> bool:
        return getattr(state, "async_metrics", False)

    def rewind(self, state: Any) -> Any:
        state.rewind()
        return state

    def nonfinite_sites(self, state: Any) -> list[str]:
        return state.nonfinite()

    def nonfinite_loss_sites(self, state: Any) -> list[str]:
        return state.nonfinite_loss_sites() if hasattr(state, "nonfinite_loss_sites") else []

    def finalize(self, ctx: FitContext, state: Any, history: dict[str, list[float]]) -> Fit:
        return state.finalize(history)

    def restore(self, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        """Rebuild the guide of a loaded fit and put the saved parameters in it."""
        engine = self.init(ctx)
        engine.restore(fit, state)


class _PyroEngine:
    """Pyro's own ``SVI.step`` with ppgen's minibatch scaling and checkpointable state."""

    def __init__(self, est: SVI, ctx: FitContext) -> None:
        import pyro
        import torch

        from ppgen.inference._pyro import ScaleBox, make_pyro_optim

        self.est, self.ctx = est, ctx
        pyro.clear_param_store()
        pyro.set_rng_seed(ctx.seed)
        if ctx.program.module is not None:
            ctx.program.module.to(ctx.device or "cpu")
        plate = ctx.extra.get("batch_plate")
        self.scaler = ScaleBox(plate) if plate else None
        model = self.scaler(ctx.program.model) if self.scaler else ctx.program.model
        self.model = model
        self.guide = est._resolve_guide(ctx, model, "pyro")
        guide = self.scaler(self.guide) if self.scaler else self.guide
        self.elbo = est._make_elbo(ctx, "pyro")
        self.optim = make_pyro_optim(
            est.optim, est.lr, est.lr_decay, est._total_steps(), est.clip_norm
        )
        self.svi = pyro.infer.SVI(model, guide, self.optim, self.elbo)
        with torch.no_grad():
            # create every param now (the guide's, and the model's that the guide never
            # touches), so checkpoints, resume and load see them all
            gtr = pyro.poutine.trace(guide).get_trace(**ctx.data)
            pyro.poutine.replay(model, trace=gtr)(**ctx.data)
        from pyro.optim.lr_scheduler import PyroLRScheduler

        self.scheduled = isinstance(self.optim, PyroLRScheduler)

    def step(self, data: Mapping[str, Any], scale: float) -> float:
        if self.scaler:
            self.scaler.scale = scale
        with warnings.catch_warnings():
            # a NaN loss is ppgen's NonFiniteError (raised by the loop), not Pyro's warning
            warnings.filterwarnings("ignore", "Encountered NaN", UserWarning)
            loss = self.svi.step(**data)
        if self.scheduled:
            self.optim.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        import pyro
        import torch

        ps = pyro.get_param_store().get_state()["params"]
        return {
            "params": {k: v.detach().clone() for k, v in ps.items()},
            "optim": self.optim.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        import torch

        from ppgen.inference._pyro import load_unconstrained

        load_unconstrained(sd["params"])
        self.optim.set_state(sd["optim"])
        torch.set_rng_state(sd["torch_rng"])
        if sd.get("cuda_rng"):
            torch.cuda.set_rng_state_all(sd["cuda_rng"])

    def nonfinite(self) -> list[str]:
        from ppgen.inference._pyro import nonfinite_params

        return nonfinite_params()

    def nonfinite_loss_sites(self) -> list[str]:
        from ppgen.inference._pyro import nonfinite_log_prob_sites

        return nonfinite_log_prob_sites(self.model, self.guide, self.ctx.data)

    def final_guide(self) -> Any:
        from pyro.infer.autoguide import AutoLaplaceApproximation

        if isinstance(self.guide, AutoLaplaceApproximation):
            return self.guide.laplace_approximation(**self.ctx.data)
        return self.guide

    def restore(self, fit: Fit, state: Mapping[str, Any]) -> None:
        from ppgen.inference._pyro import load_unconstrained, snapshot_params

        load_unconstrained(state)
        fit.param_state = snapshot_params()
        fit.posterior_sampler = self.sampler(self.final_guide())

    def sampler(self, guide: Any) -> Any:
        ctx = self.ctx
        latents = [n for n in ctx.info.latent if not ctx.info.sites[n].enumerate]
        ops = ctx.program.ops

        def sample(n: int, seed: int) -> dict[str, np.ndarray]:
            # the guide alone holds every latent; running the model too would only cost time
            return ops.predictive(
                guide, ctx.data, num_samples=n, return_sites=latents, uncondition=False, seed=seed
            )

        return sample

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        from ppgen.inference._pyro import constrained_params, snapshot_params

        ctx = self.ctx
        guide = self.final_guide()
        params = constrained_params()
        state = snapshot_params()
        fit = _guide_fit(self.est, ctx, history, params, state, self.sampler(guide), guide)
        fit.diagnostics.setdefault("engine", "pyro")
        return fit


def _guide_fit(
    est: SVI,
    ctx: FitContext,
    history: dict[str, list[float]],
    params: dict[str, np.ndarray],
    state: Any,
    sampler: Any,
    guide: Any,
) -> Fit:
    """The :class:`Fit` of a guide-based estimator: ``num_draws`` guide draws as one chain."""
    latents = [n for n in ctx.info.latent if not ctx.info.sites[n].enumerate]
    flat = sampler(est.num_draws, ctx.seed + 1) if latents else {}
    draws = ctx.with_deterministic({k: v[None] for k, v in flat.items()})
    return Fit(
        program=ctx.program,
        estimator=est,
        info=ctx.info,
        data=ctx.data_np,
        draws=draws,
        params=params,
        history=history,
        seed=ctx.seed,
        device=ctx.device,
        param_state=state,
        posterior_sampler=sampler,
        diagnostics={"guide": type(guide).__name__},
    )
