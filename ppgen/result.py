"""Fit: the one result type of every estimator: draws, params, history, predictions, ArviZ."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ppgen._fit_capabilities import FitCapabilities
from ppgen.backends._pointwise import LogLikelihood, plain_units
from ppgen.distributions._base import energy_sampling_message, implicit_density_message
from ppgen.errors import (
    CapabilityError,
    CheckpointError,
    DataError,
    EnergySamplingError,
    ImplicitDensityError,
)

if TYPE_CHECKING:
    import arviz as az

    from ppgen.inference._base import Estimator
    from ppgen.program import Program, ProgramInfo

__all__ = ["Fit", "chunk_seed"]


def chunk_seed(seed: int, j: int) -> int:
    """The seed of chunk ``j`` of a fit's posterior draws made from base seed ``seed``.

    Example:
        >>> chunk_seed(1, 0) == chunk_seed(1, 0) != chunk_seed(1, 1)
        True
    """
    return int(np.random.SeedSequence([int(seed) % 2**32, int(j)]).generate_state(1)[0])


def _flatten(draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}


def sets_for_items(info: ProgramInfo, n: int) -> int:
    """How many data sets hold ``n`` items: rows of the observed sites' outer plate (a set of
    N rows gives N items), or whole sets for sites in no plate."""
    rows = [
        int(info.sites[o].batch_shape[0]) if info.sites[o].batch_shape else 1 for o in info.observed
    ]
    return -(-int(n) // max(min(rows), 1)) if rows else int(n)


def items_of(info: ProgramInfo, sets: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` items of data sets ``{site: (sets, *shape)}``: their rows, flattened
    over the sets, for a site in a plate; the sets themselves otherwise."""
    out = {}
    for name, v in sets.items():
        v = np.asarray(v)
        if info.sites[name].batch_shape:  # data sets of rows: the rows are the items
            v = v.reshape((-1,) + v.shape[2:])
        out[name] = v[: int(n)]
    return out


class Fit(FitCapabilities):
    """What an estimator returns: learned params, posterior draws, history and diagnostics.

    Backend-agnostic: ``draws`` is a dict of numpy arrays shaped ``(chain, draw, *site_shape)``;
    ``params`` a dict of numpy arrays (constrained values); ``history`` per-step metrics.

    Hooks an estimator may set: ``posterior_sampler(n, seed)`` (fresh posterior draws),
    ``data_sampler(n, seed=, data=)`` (new data sets, e.g. an energy model's MCMC sampler),
    ``encoder(fit, data, **kw)`` (amortised posteriors for :meth:`encode`), ``guide`` (the
    fitted variational posterior as a program, see :meth:`guide_callable`); ``auxiliary``
    (name -> flat numpy arrays: a discriminator's weights, persistent chains) and
    ``auxiliary_settings`` (name -> JSON-able dict) are saved and restored with the run.

    :attr:`capabilities` says what the fit can answer (``has_likelihood``, ``has_posterior``,
    ``has_sample_stats``, ``can_sample``); ArviZ groups follow from it.

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
        >>> all(fit.capabilities.values())
        True
    """

    writer: ClassVar[Callable[[Fit, str | os.PathLike], None] | None] = None
    """What :meth:`save` calls; ``ppgen.persist`` sets it to its ``save_fit`` when imported."""

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
        data_sampler: Callable[..., dict[str, np.ndarray]] | None = None,
        encoder: Callable[..., Any] | None = None,
        auxiliary: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        auxiliary_settings: Mapping[str, Mapping[str, Any]] | None = None,
        local_draws: Mapping[str, np.ndarray] | None = None,
        guide: Callable | None = None,
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
        self.data_sampler = data_sampler
        self.encoder = encoder
        self.auxiliary = {k: dict(v) for k, v in (auxiliary or {}).items()}
        self.auxiliary_settings = {k: dict(v) for k, v in (auxiliary_settings or {}).items()}
        self.guide = guide
        """The fitted guide :math:`q(z \\mid x)` as a program of the model's arguments (SVI
        fits; ``None`` for fits without a variational density: MCMC, exact, AVB...). Pyro: the
        guide whose parameters live in the param store (:meth:`guide_callable` puts the fit's
        there); NumPyro: the guide with the fitted parameters substituted. Not saved: an SVI
        fit's ``restore`` rebuilds it when the run is loaded (a run fitted with your own guide
        takes it from ``ppgen.load(path, model, guide=...)``)."""
        self.local_draws = dict(local_draws or {})
        """The first ``diagnostics["local_draws"]`` draws of each local latent (one value per
        datum) whose ``num_draws`` draws would not fit the default budget, shaped
        ``(chain, draw, ...)``; empty when ``draws`` holds every site whole (see
        :meth:`latent_chunks`). ``SVI(local_draws=...)`` asks for more."""
        self._idata: az.InferenceData | None = None
        self._idata_key: tuple | None = None

    # ------------------------------------------------------------------ basics
    @property
    def backend(self) -> str:
        return self.program.backend

    @property
    def num_chains(self) -> int:
        held = self.draws or self.local_draws
        return next(iter(held.values())).shape[0] if held else 0

    @property
    def num_draws(self) -> int:
        if self.draws:
            return next(iter(self.draws.values())).shape[1]
        if self.local_draws:  # only local latents: all their draws are remade on demand
            return int(self.diagnostics.get("num_draws", 0))
        return 0

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
        return self.program.ops.bind_params(self.program.model, self.params, self.param_state)

    def guide_callable(self) -> Callable | None:
        """The fitted guide with the fit's parameters in place (``None`` without a guide);
        see :attr:`guide`. On Pyro this (like :meth:`model_callable`) loads the fit's
        parameters into the param store, so model and guide then run with them."""
        if self.guide is None:
            return None
        return self.program.ops.bind_params(self.guide, {}, self.param_state)

    def _latent_draws(self) -> dict[str, np.ndarray]:
        """Flat draws of the sites to condition on (deterministic sites are recomputed)."""
        keep = {n for n, s in self.info.sites.items() if s.kind in ("latent", "param")}
        held = dict(self.draws)
        if self.local_draws and self.diagnostics.get("local_draws") == self.num_draws:
            held.update(self.local_draws)  # every draw of the local latents is kept (ALI)
        return _flatten({k: v for k, v in held.items() if k in keep})

    def latent_chunks(self, limit: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """The latent draws to condition on, flat ``(draws, *shape)``, in consecutive chunks:
        draws ``0..k-1``, ``k..2k-1``, ... (the first ``limit`` draws when given).

        A fit that holds every draw whole gives them in one chunk. A fit that keeps only the
        first ``k`` draws of its local latents (:attr:`local_draws`) makes chunk ``j`` again
        from its posterior sampler and seed (``diagnostics["draw_seed"]``), exactly the draws
        the fit made: passes over all draws (log-likelihood, predictions) then hold ``k``
        draws of the local latents at a time.
        """
        k = self.diagnostics.get("local_draws")
        total = self.num_chains * self.num_draws
        n = total if limit is None else min(int(limit), total)
        if not self.local_draws or k is None or self.posterior_sampler is None:
            flat = self._latent_draws()
            yield flat if n == total else {name: v[:n] for name, v in flat.items()}
            return
        keep = {s for s, site in self.info.sites.items() if site.kind in ("latent", "param")}
        base = int(self.diagnostics["draw_seed"])
        with self.program.ops.device_context(self.device):
            for j in range(-(-n // int(k))):
                size = min(int(k), total - j * int(k))
                part = self.posterior_sampler(size, chunk_seed(base, j))
                part = {name: v for name, v in part.items() if name in keep}
                stop = min(size, n - j * int(k))
                yield {name: v[:stop] for name, v in part.items()}

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
        max_draws: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Posterior predictive samples of every site (observed sites re-sampled).

        ``data`` holds covariates for new inputs (defaults to the training data; observed
        values given in it are ignored and re-drawn). With no posterior draws (a program with
        no latents, or an unfitted program) this is the prior predictive.
        Returns arrays shaped ``(chain, draw, *shape)``; with ``max_draws`` (fewer than the
        fit's draws), the first ``max_draws`` draws as one chain ``(1, max_draws, *shape)``
        (without posterior draws: at most ``max_draws`` data sets).
        """
        seed = self.seed + 2 if seed is None else seed
        native = self._native(data)
        with self.program.ops.device_context(self.device):
            model = self.model_callable()
            if self.draws or self.local_draws:
                parts = [
                    self.program.ops.predictive(
                        model, native, samples=flat, return_sites=sites, seed=seed + j
                    )
                    for j, flat in enumerate(self.latent_chunks(max_draws))
                ]
                out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                c, d = self.num_chains, self.num_draws
                if max_draws is not None and max_draws < c * d:
                    c, d = 1, int(max_draws)
            else:
                n = num_samples or 1000
                n = n if max_draws is None else min(n, int(max_draws))
                out = self.program.ops.predictive(
                    model, native, num_samples=n, return_sites=sites, seed=seed
                )
                c, d = 1, n
        return {k: v.reshape((c, d) + v.shape[1:]) for k, v in out.items()}

    def sample(
        self, n: int, *, seed: int | None = None, data: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """``n`` new data sets drawn from the fitted program: its observed sites, ``(n, *shape)``.

        Posterior-averaged: draw ``i`` runs the program forward with the ``i``-th of ``n``
        posterior draws (:meth:`sample_posterior`) when the program has latents and the fit a
        posterior, otherwise with the prior (parameters at their fitted values). Works for
        explicit and implicit programs; an energy program cannot be forward-simulated and
        samples only through the fit's ``data_sampler`` hook (``data_sampler(n, seed=, data=)``,
        which, when set, :meth:`sample` calls for every kind).

        Arguments:
            n: the number of data sets.
            seed: the seed of the draws (default: derived from the fit's seed).
            data: covariates for new inputs (default: the training data's).

        Example:
            >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
            >>> def model(x=None):
            ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
            ...     with pyro.plate("obs", 5):
            ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
            >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=10))
            >>> fit.sample(3)["x"].shape
            (3, 5)
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise DataError(f"`n` must be a positive int (the number of data sets); got {n!r}.")
        seed = self.seed + 4 if seed is None else seed
        if self.data_sampler is not None:
            return self.data_sampler(int(n), seed=seed, data=data)
        energy = self.info.sites_of_kind("energy")
        if energy:
            raise EnergySamplingError(
                f"{energy_sampling_message(energy[0])} This fit has no `data_sampler`."
            )
        observed = self.info.observed
        if not observed:
            raise DataError("The program has no observed sites: there is no data to sample.")
        native = self._native(data)
        ops = self.program.ops
        with ops.device_context(self.device):
            model = self.model_callable()
            if self.info.latent and self.has_posterior:
                keep = {
                    s for s, site in self.info.sites.items() if site.kind in ("latent", "param")
                }
                post = {k: v for k, v in self.sample_posterior(int(n), seed).items() if k in keep}
                out = ops.predictive(model, native, samples=post, return_sites=observed, seed=seed)
            else:
                out = ops.predictive(
                    model, native, num_samples=int(n), return_sites=observed, seed=seed
                )
        return {k: np.asarray(out[k]) for k in observed if k in out}

    def sample_items(self, n: int, *, seed: int | None = None) -> dict[str, np.ndarray]:
        """``n`` generated items of each observed site, ``(n, *item_shape)``: rows of the
        site's outer plate (a data set of N rows gives N items; ``ceil(n / N)`` data sets are
        drawn with :meth:`sample`) or, for a site in no plate, whole data sets. What ``ppgen
        sample`` writes and :class:`ppgen.callbacks.TensorBoard` draws.

        Example:
            >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
            >>> def model(x=None):
            ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
            ...     with pyro.plate("obs", 5):
            ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
            >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=10))
            >>> fit.sample_items(12)["x"].shape
            (12,)
        """
        return items_of(self.info, self.sample(sets_for_items(self.info, n), seed=seed), n)

    def log_likelihood(self, data: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Pointwise log-likelihood of each observed site under each draw.

        Returns ``{site: array (chain, draw, *site_shape)}``; sum over data axes for the total.
        Elements masked out (``poutine.mask``/``handlers.mask``) are 0, so the total is the
        log-likelihood of the observed (unmasked) elements. Enumerated discrete latents are
        summed out exactly: a mixture keeps one entry per datum; observed sites linked through
        enumerated latents (an HMM's emissions ``y_0 .. y_T``, a NumPyro ``scan`` site) form
        ONE variable named after the first of them, with one entry per element of the plates
        they all share (per sequence: the forward-algorithm marginal). The returned dict's
        ``units`` attribute (``{variable: ppgen.backends._pointwise.Unit}``) says what each
        variable's entries are. Implicit programs have none, nor energy programs until
        :func:`ppgen.analysis.log_partition` estimated their log Z
        (:attr:`log_partition`): then each entry is ``-energy(x) - log Z``, and the result's
        ``log_partition`` attribute says how log Z was found and its standard error
        (shared by every entry; an AIS estimate is low in expectation, so these log-likelihoods
        are optimistic). What ppgen cannot compute exactly (sequential enumeration, ...) is
        refused, both with :class:`~ppgen.errors.CapabilityError`.
        """
        if self.info.observed and not self.has_likelihood:
            why = self.unavailable_groups()["log_likelihood"]
            implicit = self.info.sites_of_kind("implicit")
            err = ImplicitDensityError if implicit else CapabilityError
            raise err(f"This fit has no log-likelihood: {why}.")
        ll = self.site_log_probs(self.info.observed, data)
        lz = self.log_partition
        if self.info.kind == "energy" and lz is not None:  # -energy(x) - log Z
            ll = LogLikelihood({k: v - lz["value"] for k, v in ll.items()}, ll.units)
            ll.log_partition = lz  # type: ignore[attr-defined]
        return ll

    def site_log_probs(
        self, sites: list[str], data: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Pointwise log-density of ``sites`` under each draw, ``(chain, draw, *batch_shape)``.

        An energy site gives ``-energy(x)`` (no ``log Z``); an implicit site has no density.
        Observed sites linked through enumerated latents come back as one variable (see
        :meth:`log_likelihood`); the result's ``units`` attribute says what each entry is.
        """
        implicit = [
            n for n in sites if n in self.info.sites and self.info.sites[n].density == "implicit"
        ]
        if implicit:
            raise ImplicitDensityError(implicit_density_message(implicit[0]))
        native = self._native(data)
        info = self.info if data is None else self.program.inspect(data, seed=self.seed)
        shapes = {n: info.sites[n].batch_shape for n in sites}
        with self.program.ops.device_context(self.device):
            model = self.model_callable()
            held = self.draws or self.local_draws
            c, d = (self.num_chains, self.num_draws) if held else (1, 1)
            chunks = self.latent_chunks() if held else iter([{}])
            parts = []
            for flat in chunks:  # one chunk unless local latents are remade k draws at a time
                if not flat:
                    flat = {"_ppgen_dummy": np.zeros((1,))}
                parts.append(
                    self.program.ops.log_likelihood(
                        model, native, flat, shapes, max_plate_nesting=info.max_plate_nesting
                    )
                )
            ll = parts[0]
            if len(parts) > 1:
                joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                ll = type(ll)(joined, ll.units) if hasattr(ll, "units") else joined
        units = getattr(ll, "units", None) or plain_units({k: v.shape[1:] for k, v in ll.items()})
        return LogLikelihood({k: v.reshape((c, d) + v.shape[1:]) for k, v in ll.items()}, units)

    def encode(self, data: Mapping[str, Any], **kwargs: Any) -> Any:
        """Amortised posteriors of new data (VAE-family fits).

        Calls the fit's ``encoder(fit, data, **kwargs)`` when its estimator set one, otherwise
        :func:`ppgen.analysis.latent.encode`.
        """
        if self.encoder is not None:
            return self.encoder(self, data, **kwargs)
        from ppgen.analysis.latent import encode

        return encode(self, data, **kwargs)

    # ------------------------------------------------------------------ hand-offs
    def to_arviz(
        self,
        *,
        prior: bool = False,
        num_prior_samples: int = 500,
        posterior_predictive: bool | None = None,
        log_likelihood: bool | None = None,
    ) -> az.InferenceData:
        """Everything as ArviZ ``InferenceData``; see :func:`ppgen.analysis.to_inference_data`.

        ``posterior_predictive``/``log_likelihood``: ``None`` builds the group when the fit can
        (:meth:`unavailable_groups`), ``True`` requires it, ``False`` leaves it out.
        """
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
        """``arviz.summary`` of the posterior (a pandas DataFrame); of the kept local draws
        (``posterior_local``) for a fit whose only latents are local."""
        import arviz as az

        # the InferenceData already built (e.g. by save) holds the posterior: no second pass
        idata = self._idata or self.to_arviz(posterior_predictive=False, log_likelihood=False)
        kwargs.setdefault("kind", "all" if self.num_chains > 1 else "stats")
        if "posterior" not in idata.groups() and "posterior_local" in idata.groups():
            return az.summary(idata.posterior_local, **kwargs)  # only local latents
        return az.summary(idata, **kwargs)

    def save(self, path: str | os.PathLike) -> None:
        """Write the run to directory ``path`` atomically (see :func:`ppgen.persist.save_fit`)."""
        writer = type(self).writer
        if writer is None:
            raise CheckpointError(
                "No run writer is registered for Fit.save; `import ppgen` (which imports "
                "ppgen.persist) before saving."
            )
        writer(self, path)
