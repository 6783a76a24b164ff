"""NUTS and HMC: Pyro kernels for Pyro programs, NumPyro kernels for NumPyro programs."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from ppgen.errors import (
    EstimatorError,
    SamplerWarning,
    caller_stacklevel,
    check_int,
    check_positive,
)
from ppgen.inference import _mcmc_checkpoint
from ppgen.inference._base import Estimator, FitContext, register
from ppgen.inference._mcmc_pyro_chains import run_chains
from ppgen.inference._mcmc_stats import (
    health_message,
    mcmc_health,
    stats_kernel,
)
from ppgen.result import Fit

__all__ = ["NUTS", "HMC", "MCMC"]

INIT_STRATEGIES = ("median", "mean", "uniform", "feasible", "sample")


def _init_strategy(spec: Any, backend: str) -> Any:
    if backend == "pyro":
        import pyro.infer.autoguide.initialization as init
    else:
        import numpyro.infer.initialization as init
    if isinstance(spec, dict):
        return init.init_to_value(values=spec)
    if callable(spec):
        return spec
    if spec not in INIT_STRATEGIES:
        raise EstimatorError(
            f"Unknown `init_strategy={spec!r}`. Valid: {INIT_STRATEGIES}, a dict of initial "
            "values, or an init function."
        )
    return getattr(init, f"init_to_{spec}")


class MCMC(Estimator):
    """Base of the Hamiltonian samplers. Wraps Pyro's / NumPyro's MCMC drivers.

    Pyro chains are each seeded ``seed + chain`` and run one after another in this process, or,
    with ``chain_method="parallel"``, in spawned worker processes (at most one per core; the
    same draws chain for chain): the program must then be importable (a module-level function
    or class; otherwise a warning says why and the chains run in sequence) and a script must
    call ``ppgen.fit`` under ``if __name__ == "__main__":``. A worker starts a fresh
    interpreter (seconds), so parallel chains pay off for long runs. NumPyro chains follow
    ``chain_method`` (``"sequential"``, ``"vectorized"`` or ``"parallel"``: one chain per JAX
    device, refused before work when there are fewer devices than chains, with the flag that
    makes host devices; ``fit.diagnostics["devices"]`` lists the devices the draws came from).
    Per-draw ``sample_stats`` follow ArviZ's names: ``diverging``, ``energy``, ``step_size``,
    ``tree_depth``, ``n_steps``, ``acceptance_rate``, ``lp``. On Pyro, ``energy`` is the
    Hamiltonian at the start of each transition and ``tree_depth`` is
    ``ceil(log2(n_steps + 1))`` (on both backends the number of trajectory doublings).

    Health checks: after every fit (both backends, checkpointed or not) ppgen counts divergent
    transitions (per chain), NUTS transitions that hit ``max_tree_depth``, and computes ArviZ's
    rank-normalised R-hat (two or more chains) and bulk/tail ESS over every scalar component of
    the latent sites. ``fit.diagnostics`` holds ``divergences``, ``divergences_per_chain``,
    ``max_tree_depth_hits``, ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min`` (with the
    component in ``..._site``), ``stuck_chains`` and ``health_warnings``; when any divergence,
    tree-depth hit, R-hat > 1.01, ESS < 100 per chain or stuck chain shows, one
    :class:`~ppgen.errors.SamplerWarning` lists them all with what to do (see
    :func:`~ppgen.inference._mcmc_stats.mcmc_health`). ``None`` marks a check that could not
    run (R-hat with one chain, tree depth on HMC).

    Checkpoints (``ppgen.fit(..., checkpoint_dir=, checkpoint_every=, resume=)``), NumPyro only:
    the sampler warms up, then draws in chunks of ``checkpoint_every`` transitions per chain
    (rounded up to a multiple of ``thinning``; default a tenth of ``num_samples``), and after
    the warm-up and each chunk atomically writes ``mcmc_checkpoint.safetensors`` (the sampler
    state as named arrays, the draws and statistics so far; never a pickle). Ctrl-C returns the
    draws so far. ``resume=True`` restores the state and continues: the draws are bit-identical
    to those of the uninterrupted run with the same ``checkpoint_every``, seed and settings (a
    checkpoint of another run is refused, naming what differs). Chunking is itself exact in the
    NumPyro version tested (the draws equal one unchunked run's), but only resumed == uninterrupted
    with the same chunking is promised. Each chunk recompiles NumPyro's sampling loop (about a
    second). Pyro's kernels cannot export their adapted state, so on Pyro ``checkpoint_dir`` and
    ``resume`` are refused before any work; run a NumPyro (or backend-neutral) program instead.
    """

    # any program's joint density: also one with no observed site (a prior-only target such
    # as Neal's funnel)
    kinds = ("explicit", "unobserved")

    kernel_name = "NUTS"

    def __init__(
        self,
        num_samples: int = 1000,
        num_warmup: int | None = None,
        num_chains: int = 1,
        *,
        target_accept: float = 0.8,
        init_strategy: Any = "uniform",
        step_size: float = 1.0,
        dense_mass: bool = False,
        jit: bool = True,
        chain_method: str = "sequential",
        backend: str | None = None,
        thinning: int = 1,
    ) -> None:
        for name, v, lo in (("num_samples", num_samples, 1), ("num_chains", num_chains, 1)):
            if not isinstance(v, int) or v < lo:
                raise EstimatorError(f"`{name}` must be an int >= {lo}; got {v!r}.")
        if num_warmup is not None and (not isinstance(num_warmup, int) or num_warmup < 0):
            raise EstimatorError(f"`num_warmup` must be a non-negative int; got {num_warmup!r}.")
        if not 0.0 < target_accept < 1.0:
            raise EstimatorError(f"`target_accept` must be in (0, 1); got {target_accept!r}.")
        if chain_method not in ("sequential", "vectorized", "parallel"):
            raise EstimatorError(
                "`chain_method` must be 'sequential', 'vectorized' or 'parallel'; got "
                f"{chain_method!r}."
            )
        if isinstance(init_strategy, str):
            _init_strategy(init_strategy, "pyro")
        check_positive("step_size", step_size)
        check_int("thinning", thinning, 1)
        self.num_samples = num_samples
        self.num_warmup = num_samples if num_warmup is None else num_warmup
        self.num_chains = num_chains
        self.target_accept = target_accept
        self.init_strategy = init_strategy
        self.step_size = step_size
        self.dense_mass = dense_mass
        self.jit = jit
        self.chain_method = chain_method
        self.backend = backend
        self.thinning = thinning

    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        undeclared = [n for n in info.discrete_latent if info.sites[n].enumerate is None]
        if undeclared:
            raise EstimatorError(
                f"{type(self).__name__} needs continuous latents; site(s) {undeclared} are "
                "discrete. Mark them infer={'enumerate': 'parallel'} so they are summed out."
            )
        if not info.latent:
            raise EstimatorError(
                f"{type(self).__name__}: the program has no latent sites to sample. Use "
                "method='mle' to fit its parameters."
            )
        if program.backend == "numpyro" and self.chain_method == "parallel":
            self._check_devices()

    def _check_devices(self) -> None:
        """``chain_method="parallel"`` runs one chain per JAX device: refuse, before work, more
        chains than devices (NumPyro would warn and run them one after another)."""
        import jax

        n = jax.local_device_count()
        if self.num_chains > n:
            raise EstimatorError(
                f"`chain_method='parallel'` runs one chain per device, and JAX sees {n} "
                f"device(s) ({jax.default_backend()}) for num_chains={self.num_chains}. On CPU, "
                f"make {self.num_chains} host devices before JAX starts: "
                f"`numpyro.set_host_device_count({self.num_chains})` first thing in the script, "
                f"or XLA_FLAGS=--xla_force_host_platform_device_count={self.num_chains} in the "
                "environment; or use chain_method='vectorized' (all chains on one device) or "
                "'sequential'."
            )

    # -------------------------------------------------------------- kernels
    def _kernel_args(self, backend: str) -> dict[str, Any]:
        """Arguments only this sampler's kernel takes (tree depth, leapfrog steps...)."""
        return {}

    def _pyro_kernel(self, model: Any, info: Any) -> Any:
        import pyro.infer

        cls = stats_kernel(getattr(pyro.infer, self.kernel_name))
        return cls(
            model,
            step_size=self.step_size,
            target_accept_prob=self.target_accept,
            full_mass=self.dense_mass,
            init_strategy=_init_strategy(self.init_strategy, "pyro"),
            jit_compile=self.jit,
            ignore_jit_warnings=True,
            max_plate_nesting=info.max_plate_nesting if info.discrete_latent else None,
            **self._kernel_args("pyro"),
        )

    def _numpyro_kernel(self, model: Any) -> Any:
        import numpyro.infer

        return getattr(numpyro.infer, self.kernel_name)(
            model,
            step_size=self.step_size,
            target_accept_prob=self.target_accept,
            dense_mass=self.dense_mass,
            init_strategy=_init_strategy(self.init_strategy, "numpyro"),
            **self._kernel_args("numpyro"),
        )

    def run(self, ctx: FitContext) -> Fit:
        t0 = time.perf_counter()
        if ctx.program.backend == "pyro":
            given = [f"`{a}`" for a in ("checkpoint_dir", "resume") if getattr(ctx, a)]
            if given:
                raise EstimatorError(
                    f"{type(self).__name__} on the Pyro backend cannot checkpoint or resume "
                    f"(given {' and '.join(given)}): Pyro's kernels do not export "
                    "their adapted state. Drop those arguments, or sample on the NumPyro "
                    "backend (a NumPyro program, or `backend='numpyro'` for a backend-neutral "
                    "one), where NUTS/HMC checkpoint in chunks and resume exactly."
                )
            draws, stats = self._run_pyro(ctx)
            extra_diag: dict[str, Any] = {}
        else:
            draws, stats, extra_diag = self._run_numpyro(ctx)
        runtime = time.perf_counter() - t0
        health = self._health(ctx, draws, stats)
        fit = Fit(
            program=ctx.program,
            estimator=self,
            info=ctx.info,
            data=ctx.data_np,
            draws=draws,
            sample_stats=stats,
            seed=ctx.seed,
            device=ctx.device,
            diagnostics={
                "runtime_s": runtime,
                "num_chains": self.num_chains,
                **health,
                **extra_diag,
            },
        )
        if health["health_warnings"]:
            n_chains, n_draws = stats["diverging"].shape
            warnings.warn(
                health_message(type(self).__name__, health, n_chains, n_draws),
                SamplerWarning,
                stacklevel=caller_stacklevel(),
            )
        return fit

    def _health(self, ctx: FitContext, draws: dict, stats: dict) -> dict[str, Any]:
        """Divergences, tree-depth hits, R-hat and ESS of the continuous latent draws."""
        skip = set(ctx.info.discrete_latent)
        latent = {k: draws[k] for k in ctx.info.latent if k in draws and k not in skip}
        backend = ctx.program.backend
        return mcmc_health(
            latent,
            stats,
            max_tree_depth=self._kernel_args(backend).get("max_tree_depth"),
            target_accept=self.target_accept,
        )

    def _run_pyro(self, ctx: FitContext) -> tuple[dict, dict]:
        results = run_chains(self, ctx)
        chains, stats = [r[0] for r in results], [r[1] for r in results]
        draws = ctx.with_deterministic({k: np.stack([c[k] for c in chains]) for k in chains[0]})
        sstats = {k: np.stack([s[k] for s in stats]) for k in stats[0]}
        return draws, sstats

    def _run_numpyro(self, ctx: FitContext) -> tuple[dict, dict, dict]:
        import jax
        from numpyro.infer import MCMC as JaxMCMC

        _mcmc_checkpoint.check_resume(ctx)  # a missing checkpoint fails before any work
        kernel = self._numpyro_kernel(ctx.program.model)
        mcmc = JaxMCMC(
            kernel,
            num_warmup=self.num_warmup,
            num_samples=self.num_samples,
            num_chains=self.num_chains,
            chain_method=self.chain_method,
            progress_bar=ctx.progress,
            thinning=self.thinning,
        )
        fields = ("diverging", "energy", "num_steps", "accept_prob", "potential_energy")
        fields += ("adapt_state.step_size",)
        diag: dict[str, Any] = {}
        if ctx.checkpoint_dir is not None:
            draws, ex, diag = _mcmc_checkpoint.run_chunked(self, ctx, mcmc, fields)
        else:
            mcmc.run(jax.random.PRNGKey(ctx.seed), extra_fields=fields, **ctx.data)
            samples = mcmc.get_samples(group_by_chain=True)
            first = next(iter(samples.values()), None)
            if isinstance(first, jax.Array):  # where the chains ran (one device each if parallel)
                diag["devices"] = ", ".join(sorted(str(d) for d in first.devices()))
            draws = {k: np.asarray(v) for k, v in samples.items()}
            ex = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
        n_steps = ex["num_steps"].astype(np.int64)
        stats = {
            "diverging": ex["diverging"].astype(bool),
            "energy": ex["energy"],
            "step_size": ex["adapt_state.step_size"],
            "n_steps": n_steps,
            "tree_depth": np.ceil(np.log2(n_steps + 1)).astype(np.int64),
            "acceptance_rate": ex["accept_prob"],
            "lp": -ex["potential_energy"],
        }
        return draws, stats, diag


@register("nuts")
class NUTS(MCMC):
    """No-U-Turn sampler (adaptive HMC).

    Arguments:
        num_samples, num_warmup, num_chains: draws kept per chain, warmup (default
            ``num_samples``) and chains.
        target_accept: target acceptance probability of step-size adaptation.
        max_tree_depth: cap on the trajectory doublings (default 10, as Pyro, NumPyro and
            Stan); transitions that reach it are counted and warned about.
        init_strategy: where chains start: ``"uniform"`` (default, as Pyro's and NumPyro's
            NUTS: uniform in (-2, 2) on the unconstrained scale, so chains start apart and
            R-hat can see disagreement), ``"median"``, ``"mean"``, ``"feasible"``,
            ``"sample"``, a dict of initial values, or an init function.
        dense_mass: adapt a dense mass matrix.
        jit: compile the potential (Pyro's ``jit_compile``; NumPyro always compiles).
        backend: for backend-neutral (``pyroapi``) programs, run on this backend.

    Checkpoints: on NumPyro, ``ppgen.fit(..., checkpoint_dir=d, checkpoint_every=n)`` samples
    in chunks of ``n`` transitions, saving the sampler state and draws after each;
    ``resume=True`` continues bit-exactly (see :class:`MCMC`). Refused on Pyro before any work.

    References:
        Hoffman & Gelman, The No-U-Turn Sampler, arXiv:1111.4246.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", 20):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> x = np.random.default_rng(0).normal(1.0, 1.0, 20)
        >>> fit = ppgen.fit(model, data={"x": x}, method=NUTS(num_samples=200, jit=False))
        >>> fit.draws["mu"].shape, fit.sample_stats["diverging"].shape
        ((1, 200), (1, 200))
    """

    name = "nuts"

    def __init__(
        self,
        num_samples: int = 1000,
        num_warmup: int | None = None,
        num_chains: int = 1,
        *,
        max_tree_depth: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples, num_warmup, num_chains, **kwargs)
        self.max_tree_depth = check_int("max_tree_depth", max_tree_depth, 1)

    def _kernel_args(self, backend: str) -> dict[str, Any]:
        return {"max_tree_depth": self.max_tree_depth}


@register("hmc")
class HMC(MCMC):
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps and adapted step size.

    ``num_steps`` means the same on both backends: every transition takes exactly that many
    leapfrog steps, whatever step size the warm-up adapts (Pyro's own ``HMC(num_steps=)``
    instead fixes the trajectory length ``step_size * num_steps`` at construction and
    recomputes the step count after adaptation; ppgen pins the count). For the other
    semantics pass ``trajectory_length=`` instead: the integration time is fixed and each
    backend derives the step count from the adapted step size (Pyro rounds
    ``trajectory_length / step_size`` down, NumPyro up).

    Arguments:
        num_steps: leapfrog steps per transition (default 10 when ``trajectory_length`` is not
            given).
        trajectory_length: fixed integration time ``step_size * num_steps`` (excludes
            ``num_steps``).
        others: as :class:`NUTS`.

    Checkpoints: as :class:`NUTS` (NumPyro: chunks and exact resume; Pyro: refused).

    References:
        Neal, MCMC using Hamiltonian dynamics, arXiv:1206.1901.

    Example:
        >>> HMC(num_samples=100, num_steps=8).num_steps
        8
        >>> HMC(trajectory_length=1.5).num_steps is None
        True
    """

    name = "hmc"
    kernel_name = "HMC"

    def __init__(
        self,
        num_samples: int = 1000,
        num_warmup: int | None = None,
        num_chains: int = 1,
        *,
        num_steps: int | None = None,
        trajectory_length: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_samples, num_warmup, num_chains, **kwargs)
        if num_steps is not None and trajectory_length is not None:
            raise EstimatorError(
                f"Pass one of `num_steps` (leapfrog steps per transition) or "
                f"`trajectory_length` (integration time), not both; got num_steps={num_steps!r} "
                f"and trajectory_length={trajectory_length!r}."
            )
        if num_steps is None and trajectory_length is None:
            num_steps = 10
        if num_steps is not None:
            check_int("num_steps", num_steps, 1)
        if trajectory_length is not None and not (
            isinstance(trajectory_length, int | float) and trajectory_length > 0
        ):
            raise EstimatorError(
                f"`trajectory_length` must be a positive number; got {trajectory_length!r}."
            )
        self.num_steps = num_steps
        self.trajectory_length = None if trajectory_length is None else float(trajectory_length)

    def _kernel_args(self, backend: str) -> dict[str, Any]:
        if self.trajectory_length is not None:
            return {"trajectory_length": self.trajectory_length}
        if backend == "numpyro":  # a fixed step count, not a trajectory length
            return {"num_steps": self.num_steps, "trajectory_length": None}
        return {"num_steps": self.num_steps}

    def _pyro_kernel(self, model: Any, info: Any) -> Any:
        kernel = super()._pyro_kernel(model, info)
        if self.num_steps is not None:
            kernel._ppgen_fixed_steps = self.num_steps
        return kernel
