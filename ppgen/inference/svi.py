"""Stochastic variational inference on Pyro or NumPyro, driven by the shared loop."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from ppgen.errors import CheckpointError, EstimatorError, check_int
from ppgen.inference._base import EngineEstimator, FitContext, register
from ppgen.inference._svi_jax import JaxEngine
from ppgen.inference._svi_torch import TorchEngine
from ppgen.inference.guides.auto import guide_class_name, make_guide
from ppgen.inference.objectives.elbo import make_elbo
from ppgen.inference.optim import Optim
from ppgen.result import Fit

__all__ = ["SVI"]

#: the engine that runs a program of each backend
ENGINES = {"pyro": TorchEngine, "numpyro": JaxEngine}


@register("svi", "vi")
class SVI(EngineEstimator):
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
            marked ``infer={"enumerate": "parallel"}``), ``"renyi"`` or ``"iwae"``, or a
            backend ELBO object. ``None`` (default): ``"enum"`` when the program marks sites
            for enumeration, else ``"trace"``; ``fit.diagnostics["elbo"]`` says which ran.
        num_particles: Monte Carlo particles per step (vectorised); K for IWAE/Rényi.
        alpha: Rényi divergence order for ``elbo="renyi"``.
        optim: ``"adam"``, ``"clipped_adam"``, ``"sgd"``, ``"rmsprop"``, ``"adagrad"``, or a
            backend optimiser object (``"lbfgs"`` needs a deterministic objective:
            :class:`~ppgen.inference.MLE` only).
        lr: learning rate; ``lr_decay``: total exponential decay factor over the run.
        steps / epochs / batch_size / batch_plate / drop_last: length of the run and
            minibatching. ``batch_plate`` names the plate to subsample (default: the one
            plate holding every observed site that indexes an axis of the observed data;
            when several do, as a words plate inside a documents plate, pass it). Each data
            array is sliced along the axis that plate indexes (from the trace), so data laid
            out plate-last (``(D, N)``) work as plate-first ones do. When ``batch_size`` B
            does not divide N, each epoch ends with a partial batch of ``N mod B`` rows,
            weighted ``N / (N mod B)`` (its own B: unbiased, but noisier);
            ``drop_last=True`` skips it (``floor(N / B)`` full batches an epoch).
        num_draws: posterior draws taken from the fitted guide for ``Fit.draws``; a point-mass
            guide (``"delta"``) gives its one point (chain 1, draw 1), not copies of it.
        local_draws: draws kept of each local latent (one value per datum: a VAE's codes,
            LDA's per-document topics) in ``fit.local_draws`` and the ``posterior_local``
            group of ``fit.to_arviz()``; global latents keep all ``num_draws``. Default: as
            many as fit in 2**23 values (about 32 MiB) for the largest local site, so a VAE
            on 1,797 images with 50-dimensional codes keeps 93 draws, not 1,000 (90 million
            values); eight schools' ``eta`` keeps all. Log-likelihood and predictive passes
            remake the draws chunk by chunk, exactly.
        init_scale: initial scale of Normal-family autoguides.
        engine: deprecated (``"auto"``, ``"lean"``, ``"pyro"``); each backend has one engine
            and it picks the fastest exact objective path by itself. ``engine="pyro"`` still
            forces Pyro's own ELBO object (pass ``elbo=pyro.infer.Trace_ELBO()`` instead).

    How a step is computed: on Pyro, by the first that applies of the model's declared
    capability (``log_density`` / ``elbo_terms``, see :mod:`ppgen.capabilities`), the
    reparameterised ELBO (one guide and one model pass under a light handler), or Pyro's own
    ELBO object; ``fit.diagnostics["path"]`` says which (``"declared"``, ``"reparam"``,
    ``"pyro"``; ``"numpyro"`` on NumPyro: its jitted ``SVI.update``). Every path gives the
    numbers of Pyro's objective for the same parameters and noise, and one optimiser (fused
    Adam where possible) updates every parameter.

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
    #: whether the objective is deterministic, so that L-BFGS's line search applies (MLE/MAP)
    _full_batch_optim = False

    #: the Pyro engine averages gradients across processes (``runner=DDP()``)
    data_parallel = True
    #: the NumPyro engine shards each minibatch across JAX devices (``runner=JaxDevices()``)
    device_parallel = True

    def __init__(
        self,
        guide: Any = None,
        elbo: str | Any | None = None,
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
        drop_last: bool = False,
        num_draws: int = 1000,
        local_draws: int | None = None,
        init_scale: float | None = None,
        max_plate_nesting: int | None = None,
        engine: str | None = None,
    ) -> None:
        super().__init__(
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            batch_plate=batch_plate,
            drop_last=drop_last,
        )
        if engine is not None:
            elbo = _deprecated_engine(engine, elbo, num_particles, alpha)
        if guide is not None:
            guide_class_name(guide)  # unknown names fail here, before any work
        if not isinstance(num_particles, int) or num_particles < 1:
            raise EstimatorError(f"`num_particles` must be a positive int; got {num_particles!r}.")
        self.guide = guide
        self.elbo = elbo
        self.num_particles = num_particles
        self.vectorize_particles = vectorize_particles
        self.alpha = alpha
        self.optim = optim
        self.lr = float(lr)
        self.lr_decay = lr_decay
        self.clip_norm = clip_norm
        self.num_draws = check_int("num_draws", num_draws, 1)
        self.local_draws = None if local_draws is None else check_int("local_draws", local_draws, 1)
        self.init_scale = init_scale
        self.max_plate_nesting = max_plate_nesting
        if elbo is not None:  # validate early
            make_elbo(elbo, "pyro", num_particles=num_particles, alpha=alpha)
        # unknown names and bad numbers fail here, before any work
        spec = self._optim_spec() if isinstance(optim, str | Optim) else None
        if spec is not None and spec.full_batch and not self._full_batch_optim:
            raise EstimatorError(
                f"`optim={spec.name!r}` needs a deterministic full-batch objective (its line "
                f"search compares losses), but {type(self).__name__}'s ELBO is a Monte Carlo "
                "estimate. Use a first-order optimiser (optim='adam'), or MLE(optim='lbfgs') "
                "for point estimates."
            )

    # ------------------------------------------------------------------ checks
    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        # With no latent sites an autoguide has nothing to fit and the fit would hold no draws.
        # A guide the user wrote, or one a subclass picks for such programs (MLE's empty
        # guide: the exact likelihood), is taken as meant.
        spec = self._guide_spec(SimpleNamespace(program=program, info=info))
        if not info.latent and guide_class_name(spec) is not None:
            raise EstimatorError(
                f"{type(self).__name__}: the program has no latent sites (only observed "
                f"{info.observed}"
                + (f" and parameters {info.params}" if info.params else "")
                + f"), so the autoguide {guide_class_name(spec)} has nothing to fit and the fit "
                "would hold no draws. Use method='mle' to fit its parameters by maximum likelihood."
            )
        enum = self.objective(info) == "enum"
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
                f"Site(s) {enumerated} are marked for enumeration, which elbo={self.elbo!r} "
                "cannot sum out; use elbo='enum', or leave `elbo` out (it then picks 'enum')."
            )

    def objective(self, info: Any) -> Any:
        """The ELBO this fit runs: ``elbo`` as given or, for ``elbo=None``, ``"enum"`` when
        the program marks sites for enumeration, else ``"trace"``."""
        if self.elbo is not None:
            return self.elbo
        enumerated = any(info.sites[n].enumerate for n in info.discrete_latent)
        return "enum" if enumerated else "trace"

    def finalize(self, ctx: FitContext, state: Any, history: dict[str, list[float]]) -> Fit:
        fit = super().finalize(ctx, state, history)
        objective = self.objective(ctx.info)
        fit.diagnostics.setdefault(
            "elbo", objective if isinstance(objective, str) else type(objective).__name__
        )
        return fit

    def _guide_spec(self, ctx: FitContext) -> Any:
        if self.guide is not None:
            return self.guide
        return ctx.program.guide if ctx.program.guide is not None else "normal"

    def _resolve_guide(self, ctx: FitContext, model: Any, backend: str) -> Any:
        spec = self._guide_spec(ctx)
        if guide_class_name(spec) is not None:
            _check_local_latents(ctx, guide_class_name(spec))
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
        objective = self.objective(ctx.info)
        if nesting is None and (
            objective == "enum" or (backend == "pyro" and self.num_particles > 1)
        ):
            nesting = ctx.info.max_plate_nesting
        return make_elbo(
            objective,
            backend,
            num_particles=self.num_particles,
            vectorize_particles=self.vectorize_particles,
            alpha=self.alpha,
            max_plate_nesting=nesting,
        )

    def _total_steps(self) -> int:
        return self.steps if self.steps is not None else 1000

    def _optim_spec(self) -> Optim:
        """The optimiser settings from ``optim``/``lr``/``lr_decay``/``clip_norm``."""
        if isinstance(self.optim, Optim):
            return self.optim
        return Optim(self.optim, self.lr, lr_decay=self.lr_decay, clip_norm=self.clip_norm)

    # ------------------------------------------------------------------ init
    def init(self, ctx: FitContext) -> Any:
        return ENGINES[ctx.program.backend](self, ctx)

    def metrics(self, loss: float, state: Any) -> dict[str, float]:
        """A step's metrics from its loss (subclasses add their own, e.g. MLE's bits/dim)."""
        return {"loss": loss}

    def step(self, state: Any, batch: Mapping[str, Any]) -> tuple[Any, dict[str, float]]:
        return state, self.metrics(state.step(batch["data"], batch["scale"]), state)

    def restore(self, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        """Rebuild the guide of a loaded fit and put the saved parameters in it.

        The saved parameters must be exactly those of the rebuilt guide and program (names and
        shapes); otherwise a :class:`~ppgen.errors.CheckpointError` names the parameters in
        the run but not rebuilt, those rebuilt but not in the run, and those of another shape
        (``ctx.extra["restore_hint"]``, set by load for a run fitted with the user's own
        guide, says which guide to pass)."""
        engine = self.init(ctx)
        _check_saved_params(ctx, {k: np.shape(v) for k, v in state.items()}, engine.param_shapes())
        engine.restore(fit, state)


def _check_saved_params(
    ctx: FitContext, saved: Mapping[str, tuple[int, ...]], rebuilt: Mapping[str, tuple[int, ...]]
) -> None:
    """Refuse saved parameters that differ (names or shapes) from the rebuilt ones."""
    missing = sorted(set(saved) - set(rebuilt))
    extra = sorted(set(rebuilt) - set(saved))
    shapes = [
        f"`{k}` (saved {tuple(saved[k])}, rebuilt {tuple(rebuilt[k])})"
        for k in sorted(set(saved) & set(rebuilt))
        if tuple(saved[k]) != tuple(rebuilt[k])
    ]
    if not (missing or extra or shapes):
        return
    parts = []
    if missing:
        parts.append(
            "in the run but not in the guide and program passed to load: "
            + ", ".join(f"`{k}`" for k in missing)
        )
    if extra:
        parts.append(
            "in the guide and program passed to load but not in the run: "
            + ", ".join(f"`{k}`" for k in extra)
        )
    if shapes:
        parts.append("of another shape: " + ", ".join(shapes))
    hint = ctx.extra.get("restore_hint") or (
        "Load the run with the program (model code and constructor arguments) it was fitted with."
    )
    raise CheckpointError(
        "The parameters saved in the run do not match those of the guide and program passed "
        "to load (" + "; ".join(parts) + "). " + hint
    )


def _check_local_latents(ctx: FitContext, guide: str | None) -> None:
    """Refuse, before training, an autoguide on minibatches of a program with latent sites
    inside the minibatched plate: the autoguide holds one value per row of the whole plate,
    while each step's program has only the batch's rows (eight schools' ``eta`` with
    ``batch_size=4``)."""
    plate = ctx.extra.get("batch_plate")
    if not plate:
        return
    info = ctx.info
    local = [
        n
        for n in info.latent
        if not info.sites[n].enumerate and any(p.name == plate for p in info.sites[n].plates)
    ]
    if local:
        raise EstimatorError(
            f"Minibatching plate `{plate}` with the autoguide {guide}: latent site(s) {local} "
            f"sit in that plate, one value per row, and {guide} keeps one parameter per row of "
            "the whole plate while each step's program sees only the batch's rows. Use an "
            "amortised guide that computes them from each row's data (guide=Amortized(...)), "
            "or leave `batch_size` out (full-batch steps)."
        )


def _deprecated_engine(engine: str, elbo: Any, num_particles: int, alpha: float) -> Any:
    """``engine=`` of earlier releases: warn; ``"pyro"`` becomes Pyro's own ELBO object."""
    if engine not in ("auto", "lean", "pyro"):
        raise EstimatorError(
            f"`engine` is deprecated and must be 'auto', 'lean' or 'pyro' if given; got "
            f"{engine!r}. Leave it out: the engine picks its objective path itself."
        )
    warnings.warn(
        "`SVI(engine=...)` is deprecated: each backend has one engine, which picks the fastest "
        "exact path itself (fit.diagnostics['path'] says which). To force Pyro's own ELBO, pass "
        "`elbo=pyro.infer.Trace_ELBO()` (or another ELBO object).",
        DeprecationWarning,
        stacklevel=3,
    )
    if engine == "pyro" and isinstance(elbo, str):
        return make_elbo(elbo, "pyro", num_particles=num_particles, alpha=alpha)
    return elbo
