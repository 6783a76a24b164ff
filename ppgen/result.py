"""Fit: the one result type of every estimator: draws, params, history, predictions, ArviZ."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.errors import DataError

if TYPE_CHECKING:
    import arviz as az

    from ppgen.inference._base import Estimator
    from ppgen.program import Program, ProgramInfo

__all__ = ["Fit"]


def _flatten(draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}


class Fit:
    """What an estimator returns: learned params, posterior draws, history and diagnostics.

    Backend-agnostic: ``draws`` is a dict of numpy arrays shaped ``(chain, draw, *site_shape)``;
    ``params`` a dict of numpy arrays (constrained values); ``history`` per-step metrics.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", 20):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> x = np.random.default_rng(0).normal(1.0, 1.0, 20)
        >>> fit = ppgen.fit(model, data={"x": x}, method=ppgen.inference.SVI(steps=200, lr=0.05))
        >>> fit.draws["mu"].shape
        (1, 1000)
        >>> sorted(fit.to_arviz().groups())[:3]
        ['log_likelihood', 'observed_data', 'posterior']
    """

    def __init__(
        self,
        *,
        program: Program,
        estimator: Estimator,
        info: ProgramInfo,
        data: Mapping[str, Any],
        draws: Mapping[str, np.ndarray] | None = None,
        params: Mapping[str, np.ndarray] | None = None,
        history: Mapping[str, list[float]] | None = None,
        diagnostics: Mapping[str, Any] | None = None,
        sample_stats: Mapping[str, np.ndarray] | None = None,
        seed: int = 0,
        device: str | None = None,
        param_state: Any = None,
        posterior_sampler: Callable[[int, int], dict[str, np.ndarray]] | None = None,
    ) -> None:
        self.program = program
        self.estimator = estimator
        self.info = info
        self.data = dict(data)
        self.draws = dict(draws or {})
        self.params = dict(params or {})
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.diagnostics: dict[str, Any] = dict(diagnostics or {})
        self.sample_stats = dict(sample_stats or {})
        self.seed = seed
        self.device = device
        self.param_state = param_state
        self.posterior_sampler = posterior_sampler
        self._idata: az.InferenceData | None = None

    # ------------------------------------------------------------------ basics
    @property
    def backend(self) -> str:
        return self.program.backend

    @property
    def num_chains(self) -> int:
        return next(iter(self.draws.values())).shape[0] if self.draws else 0

    @property
    def num_draws(self) -> int:
        return next(iter(self.draws.values())).shape[1] if self.draws else 0

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self.draws.items()}
        return (
            f"Fit(method={type(self.estimator).__name__}, backend={self.backend}, "
            f"draws={shapes}, params={sorted(self.params)})"
        )

    # ------------------------------------------------------------------ running the model
    def _native(self, data: Mapping[str, Any] | None) -> dict[str, Any]:
        if data is None:
            data = self.data
        else:
            self.program.check_keys(data)
            data = self.program.check_values(data)
        return self.program.ops.native(data, self.device)

    def model_callable(self) -> Callable:
        """The program's model with the fitted parameters in place (for predictions)."""
        model = self.program.model
        if self.backend == "numpyro" and self.params:
            from numpyro import handlers

            return handlers.substitute(model, data={k: v for k, v in self.params.items()})
        if self.backend == "pyro" and self.param_state is not None:
            from ppgen.inference._pyro import activate_params

            activate_params(self.param_state)
        return model

    def _covariates(self, native: Mapping[str, Any]) -> dict[str, Any]:
        return dict(native)

    def _latent_draws(self) -> dict[str, np.ndarray]:
        """Flat draws of the sites to condition on (deterministic sites are recomputed)."""
        keep = {n for n, s in self.info.sites.items() if s.kind in ("latent", "param")}
        return _flatten({k: v for k, v in self.draws.items() if k in keep})

    def sample_posterior(self, num_samples: int, seed: int | None = None) -> dict[str, np.ndarray]:
        """``num_samples`` posterior draws per latent site, shaped ``(num_samples, *shape)``.

        SVI fits draw fresh samples from the fitted guide; MCMC fits resample their draws.
        """
        seed = self.seed + 1 if seed is None else seed
        if self.posterior_sampler is not None:
            with self.program.ops.device_context(self.device):
                return self.posterior_sampler(num_samples, seed)
        flat = _flatten(self.draws)
        if not flat:
            raise DataError("This fit has no posterior draws (the program has no latent sites).")
        total = next(iter(flat.values())).shape[0]
        rng = np.random.default_rng(seed)
        idx = rng.choice(total, size=num_samples, replace=num_samples > total)
        return {k: v[idx] for k, v in flat.items()}

    def predict(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        num_samples: int | None = None,
        seed: int | None = None,
        sites: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Posterior predictive samples of every site (observed sites re-sampled).

        ``data`` holds covariates for new inputs (defaults to the training data; observed
        values given in it are ignored and re-drawn). With no posterior draws (a program with
        no latents, or an unfitted program) this is the prior predictive.
        Returns arrays shaped ``(chain, draw, *shape)``.
        """
        seed = self.seed + 2 if seed is None else seed
        native = self._native(data)
        with self.program.ops.device_context(self.device):
            model = self.model_callable()
            if self.draws:
                flat = self._latent_draws()
                out = self.program.ops.predictive(
                    model, native, samples=flat, return_sites=sites, seed=seed
                )
                c, d = self.num_chains, self.num_draws
            else:
                n = num_samples or 1000
                out = self.program.ops.predictive(
                    model, native, num_samples=n, return_sites=sites, seed=seed
                )
                c, d = 1, n
        return {k: v.reshape((c, d) + v.shape[1:]) for k, v in out.items()}

    def log_likelihood(self, data: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Pointwise log-likelihood of each observed site under each draw.

        Returns ``{site: array (chain, draw, *site_shape)}``; sum over data axes for the total.
        """
        return self.site_log_probs(self.info.observed, data)

    def site_log_probs(
        self, sites: list[str], data: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Pointwise log-density of ``sites`` under each draw, ``(chain, draw, *batch_shape)``."""
        native = self._native(data)
        info = self.info if data is None else self.program.inspect(data, seed=self.seed)
        shapes = {n: info.sites[n].batch_shape for n in sites}
        with self.program.ops.device_context(self.device):
            model = self.model_callable()
            flat = self._latent_draws()
            c, d = (self.num_chains, self.num_draws) if flat else (1, 1)
            if not flat:
                flat = {"_ppgen_dummy": np.zeros((1,))}
            ll = self.program.ops.log_likelihood(
                model, native, flat, shapes, max_plate_nesting=info.max_plate_nesting
            )
        return {k: v.reshape((c, d) + v.shape[1:]) for k, v in ll.items()}

    def encode(self, data: Mapping[str, Any]) -> Any:
        """Amortised posteriors of new data (VAE-family fits).

        See :func:`ppgen.analysis.latent.encode`.
        """
        if self.backend == "numpyro":
            from ppgen.inference.guides._amortized_numpyro import encode as encode_numpyro

            return encode_numpyro(self, data)
        from ppgen.analysis.latent import encode

        return encode(self, data)

    # ------------------------------------------------------------------ hand-offs
    def to_arviz(
        self,
        *,
        prior: bool = False,
        num_prior_samples: int = 500,
        posterior_predictive: bool = True,
        log_likelihood: bool = True,
    ) -> az.InferenceData:
        """Everything as ArviZ ``InferenceData``; see :func:`ppgen.analysis.to_inference_data`."""
        from ppgen.analysis.arviz import to_inference_data

        key = (prior, num_prior_samples, posterior_predictive, log_likelihood)
        if self._idata is None or self._idata_key != key:
            self._idata = to_inference_data(
                self,
                prior=prior,
                num_prior_samples=num_prior_samples,
                posterior_predictive=posterior_predictive,
                log_likelihood=log_likelihood,
            )
            self._idata_key = key
        return self._idata

    def summary(self, **kwargs: Any) -> Any:
        """``arviz.summary`` of the posterior (a pandas DataFrame)."""
        import arviz as az

        idata = self.to_arviz(posterior_predictive=False, log_likelihood=False)
        kwargs.setdefault("kind", "all" if self.num_chains > 1 else "stats")
        return az.summary(idata, **kwargs)

    def save(self, path: str) -> None:
        """Write the run to directory ``path`` atomically (see :func:`ppgen.save`)."""
        from ppgen.persist import save_fit

        save_fit(self, path)
