"""One evaluation of a fit: whatever applies to it, as one table (``ppgen.evaluate``).

A fit whose program has a likelihood (an explicit program: SVI, MCMC, MLE, exact fits) is
scored by its log predictive density on data, per datum and in bits per dimension; when it
holds posterior draws, by WAIC and PSIS-LOO (ArviZ) on its training data; and when it has a
guide over per-datum latents (a VAE's encoder), by the ELBO and IWAE bounds on log p(x) per
datum. A fit without one (an implicit program fit by :class:`~ppgen.inference.Adversarial`,
or an energy program with a sampler) is scored by its samples: the MMD to the data, mode
coverage on PacGAN's ring and grid (:mod:`ppgen.data.modes2d`), and the Fréchet classifier
distance for 8x8 digits (:mod:`ppgen.analysis.sample_quality`). A model object may add
metrics of its own (``evaluate_metrics``, e.g. a perplexity). The command line's ``ppgen
evaluate RUN`` prints the same table for a saved run and writes it as ``evaluation.json`` in
the run's directory.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen._data_plate import data_plate
from ppgen.analysis.ppc import predictive_pvalues
from ppgen.analysis.sample_quality import (
    frechet_classifier_distance,
    median_bandwidth,
    mmd,
    mode_coverage,
)
from ppgen.capabilities import declares
from ppgen.errors import CapabilityError, DataError, PPGenError, ProgramError

if TYPE_CHECKING:
    from ppgen.result import Fit

__all__ = ["Evaluation", "evaluate", "MODE_BENCHMARKS"]

#: the mode benchmarks ``modes=`` names (see :func:`ppgen.data.modes2d.mode_spec`)
MODE_BENCHMARKS = ("ring8", "grid25")

# a benchmark is recognised in the reference data when all its modes are covered and at least
# this fraction of the points lies within 3 sigma of a mode (true samples: 98.9 %)
_DETECT_RATE = 0.9
_DIGIT_SHAPES = {(64,), (8, 8), (1, 8, 8)}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` returns: the metrics that apply to a fit, and what was compared.

    Attributes:
        kind: ``"likelihood"`` (a fit with a log-likelihood) or ``"samples"`` (a fit scored
            by its generated samples: implicit and energy programs).
        metrics: metric name -> number (``float``, or ``int`` for counts). See
            :func:`evaluate` for the names.
        details: what was compared: the data's source, the site, sample and data counts,
            the mode benchmark, warnings raised by ArviZ...
        skipped: metric name -> why it does not apply to this fit or these data.

    ``evaluation["mmd2"]`` reads a metric; :meth:`as_dict` gives plain JSON-able values and
    :meth:`table` (also ``str(evaluation)``) the printed table.
    """

    kind: str
    metrics: dict[str, float]
    details: dict[str, Any]
    skipped: dict[str, str]

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]

    def __contains__(self, name: object) -> bool:
        return name in self.metrics

    def as_dict(self) -> dict[str, Any]:
        """``{"kind", "metrics", "details", "skipped"}`` as plain Python values for JSON.

        Non-finite metrics (e.g. the reverse KL when no sample is near a mode) become ``None``.
        """
        return {
            "kind": self.kind,
            "metrics": {k: _plain(v) for k, v in self.metrics.items()},
            "details": {k: _plain(v) for k, v in self.details.items()},
            "skipped": dict(self.skipped),
        }

    def table(self) -> str:
        """The metrics as a two-column text table, with what was compared and what was not."""
        width = max([len(k) for k in self.metrics] + [6])
        lines = [f"# {self.details.get('summary', self.kind)}"]
        lines.append(f"{'metric':<{width}}  value")
        for k, v in self.metrics.items():
            value = str(v) if isinstance(v, int) else f"{v:.6g}"
            lines.append(f"{k:<{width}}  {value}")
        for k, why in self.skipped.items():
            lines.append(f"# not applicable: {k}: {why}")
        for w in self.details.get("warnings", []):
            lines.append(f"# warning: {w}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------- argument checks
def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DataError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise DataError(f"`seed` must be an int in [0, 2**32 - 1]; got {seed!r}.")
    return int(seed)


def _check_modes(modes: Any) -> tuple[str, np.ndarray, np.ndarray] | None:
    """``(label, centres (K, d), sigma (K,))`` or ``None``."""
    from ppgen.data.modes2d import mode_spec

    if modes is None:
        return None
    if isinstance(modes, str):
        if modes not in MODE_BENCHMARKS:
            raise DataError(
                f"`modes` must be one of {list(MODE_BENCHMARKS)} or a pair (centres, sigma); "
                f"got {modes!r}."
            )
        centres, sigma = mode_spec(modes)
        return modes, centres, np.full(len(centres), sigma)
    if isinstance(modes, tuple | list) and len(modes) == 2:
        centres = np.asarray(modes[0], dtype=np.float64)
        sigma = np.asarray(modes[1], dtype=np.float64)
        if centres.ndim == 2 and len(centres) >= 1 and sigma.ndim <= 1:
            try:
                sigma = np.broadcast_to(sigma, (len(centres),)).copy()
            except ValueError:
                sigma = np.zeros(0)
            if len(sigma) and np.isfinite(centres).all() and np.isfinite(sigma).all():
                if (sigma > 0).all():
                    return "given centres", centres, sigma
    raise DataError(
        "`modes` must be a benchmark name ('ring8', 'grid25') or a pair (centres, sigma): "
        "centres a (K, d) array of mode centres, sigma a positive float or (K,) array; got "
        f"{_describe(modes)}. E.g. modes=ppgen.data.modes2d.mode_spec('ring8')."
    )


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape}"
    if isinstance(x, tuple | list):
        return f"a {type(x).__name__} of {len(x)}: ({', '.join(_describe(v) for v in x)})"
    return repr(x) if isinstance(x, int | float | str) else type(x).__name__


def _as_array(v: Any) -> Any:
    if hasattr(v, "detach"):  # a torch tensor
        return v.detach().cpu().numpy()
    if hasattr(v, "__array__") and not isinstance(v, np.ndarray):  # jax
        return np.asarray(v)
    return v


def _resolve_data(fit: Fit, data: Any) -> tuple[dict[str, Any], str]:
    """The data as a dict of arrays, and a words for where it came from."""
    if data is None:
        return dict(fit.data), "the training data"
    if isinstance(data, str):
        from ppgen.data.files import load_data

        return dict(load_data(data, fit.program.obj)), f"`{data}`"
    if isinstance(data, Mapping):
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise DataError(f"`data` keys must be argument names (str); got {bad}.")
        return {k: _as_array(v) for k, v in data.items()}, "the given data"
    arr = _as_array(data)
    if isinstance(arr, np.ndarray):
        observed = fit.info.observed
        if len(observed) != 1:
            raise DataError(
                f"`data` is an array, but the program has {len(observed)} observed sites "
                f"({observed}); pass a dict naming each (like the training data)."
            )
        return {observed[0]: arr}, "the given data"
    raise DataError(
        "`data` must be None (the training data), a dict like the training data, an array of "
        "the observed site's values, or a dataset name or .csv/.npz path; got "
        f"{type(data).__name__}."
    )


# ---------------------------------------------------------------------- the entry point
def evaluate(
    fit: Fit,
    data: Mapping[str, Any] | np.ndarray | str | None = None,
    *,
    num_samples: int = 2500,
    modes: str | tuple[Any, Any] | None = None,
    seed: int = 0,
    iwae_k: int = 100,
) -> Evaluation:
    r"""Score ``fit`` with every metric that applies to it, on ``data``.

    **Fits with a likelihood** (explicit programs: SVI, NUTS/HMC, MLE/MAP, exact fits):

    * ``log_lik_per_datum``: the log pointwise predictive density per datum on ``data``
      (held out when given),
      :math:`\frac1n \sum_i \log \frac1S \sum_s p(x_i \mid \theta_s)` over the fit's ``S``
      draws (a point estimate has one); ``n_data`` is ``n``. A datum is one entry of the
      observed sites' batch shape; observed sites sharing a batch shape are scored jointly,
      others each entry on its own. A program with per-datum latent draws (latent sites in
      the data's plate, e.g. a VAE's codes) is scored on its training data only: for held-out
      data this metric is skipped, as those draws belong to the training points (the bounds
      below integrate them out).
    * ``bits_per_dim``: :math:`-\text{log\_lik\_per\_datum} / (D \ln 2)`, ``D`` the observed
      values per datum (``details["dims_per_datum"]``: a datum's event size times its batch
      entries), i.e. minus the total log-density in bits over the number of observed values.
      On the data's own scale: no dequantisation or rescaling correction is applied (for
      8-bit images scored as reals on [0, 1], add 8 bits and the log of the dequantisation
      density yourself). Skipped when the likelihood is conditional on per-datum latent draws
      (a reconstruction term, not a density of the data).
    * ``elbo_per_datum``, ``iwae_per_datum``, ``iwae_k`` (and ``bits_per_dim_iwae``): for a
      fit with a guide :math:`q(z \mid x)` (SVI) whose latents all lie in the data plate
      (the plate over the data points), ``K = iwae_k`` draws
      :math:`z_{ik} \sim q(\cdot \mid x_i)` per datum give
      :math:`\log w_{ik} = \log p(x_i, z_{ik}) - \log q(z_{ik} \mid x_i)`, and
      :math:`\frac1n \sum_i \frac1K \sum_k \log w_{ik}` (ELBO) and
      :math:`\frac1n \sum_i \log \frac1K \sum_k w_{ik}` (IWAE, Burda et al. 2016):
      lower bounds on :math:`\frac1n \sum_i \log p(x_i)`, the IWAE one at least the ELBO and
      tightening as ``K`` grows (``K = 1`` is the ELBO). On held-out data or the training
      data. Skipped, with the reason, for fits without a guide (MCMC, exact, MLE; MAP's point
      masses), for global latents (in the model or the guide, outside the data plate: their
      term does not split per datum), and on held-out data for an autoguide (its local
      factors belong to the training points; an amortised guide encodes any x).
    * ``elpd_waic``, ``elpd_waic_se``, ``p_waic`` and ``elpd_loo``, ``elpd_loo_se``,
      ``p_loo``, ``pareto_k_max``: WAIC and PSIS-LOO from :func:`arviz.waic` and
      :func:`arviz.loo` on the training data's pointwise log-likelihood (sums over data, log
      scale), when the fit holds at least two posterior draws. ArviZ's warnings (e.g. Pareto
      k above 0.7) are recorded in ``details["warnings"]``, not raised.
    * ``ppc_p_mean``, ``ppc_p_sd``, ``ppc_p_min``, ``ppc_p_max``: posterior predictive
      p-values :math:`\Pr(T(y^{rep}) \ge T(y))` of the mean, standard deviation, minimum
      and maximum of the observed values (:mod:`ppgen.analysis.ppc`; near 0 or 1: the model
      misses that feature), for a program with one observed site; seeded with ``seed``.

    **Any fit**: a model object that declares ``evaluate_metrics(fit, data) -> {name: number}``
    (:mod:`ppgen.capabilities`; ``data`` is ``None`` for the training data) adds its own
    metrics, e.g. a language model's ``perplexity``; ``details["declared_metrics"]`` lists them.

    **Fits without one** (implicit programs, e.g. GANs; energy programs with a sampler): the
    fit generates ``num_samples`` data points (:meth:`Fit.sample`, data sets flattened over
    their leading axis; covariates such as a conditional GAN's labels come from ``data``) and
    they are compared with the observed site's values in ``data`` (at most ``num_samples``
    of them, a seeded random subset of a larger set):

    * ``mmd2`` (and ``mmd_bandwidth``): the unbiased squared MMD with a Gaussian kernel of
      median-heuristic bandwidth (:func:`~ppgen.analysis.sample_quality.mmd`); about 0 when
      the fit generates the data's distribution.
    * ``modes_covered``, ``n_modes``, ``high_quality_rate``, ``reverse_kl``: PacGAN's mode
      coverage (:func:`~ppgen.analysis.sample_quality.mode_coverage`) when ``modes`` is given,
      or when the data are recognised as ``ring8`` or ``grid25`` (every mode covered and
      90 % of the points within 3 sigma of one; ``details["modes"]`` says which).
    * ``fcd``: the Fréchet classifier distance
      (:func:`~ppgen.analysis.sample_quality.frechet_classifier_distance`) when the data are
      8x8 images (``(n, 64)``, ``(n, 8, 8)`` or ``(n, 1, 8, 8)``) on the digits' 0..16 scale,
      or in [0, 1] or [-1, 1] (both sets are then mapped to 0..16 alike).

    Arguments:
        fit: a :class:`~ppgen.result.Fit` (from :func:`ppgen.fit` or :func:`ppgen.load`).
        data: what to score against: ``None`` (the fit's training data), a dict like the
            training data, an array of the (single) observed site's values, or a built-in
            dataset name or ``.csv``/``.npz`` path (as ``ppgen fit --data``).
        num_samples: the generated points for sample-based metrics (PacGAN scores 2,500).
        modes: ``"ring8"``, ``"grid25"`` or ``(centres, sigma)`` (``(K, d)`` centres, a
            standard deviation or ``(K,)`` of them) for mode coverage.
        seed: the seed of the generated samples, of the data subset and of the guide's draws
            for the bounds.
        iwae_k: ``K``, the guide's draws per datum for the ELBO and IWAE bounds.

    Returns:
        An :class:`Evaluation`: ``.metrics``, ``.details``, ``.skipped`` (metric -> why it
        does not apply), ``.as_dict()`` and ``.table()``.

    Raises:
        DataError: a bad argument (before any work), or data the fit cannot score.

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.models import NormalNormal
        >>> rng = np.random.default_rng(0)
        >>> train, test = rng.normal(1.0, 1.0, (50, 1)), rng.normal(1.0, 1.0, (200, 1))
        >>> fit = ppgen.fit(NormalNormal(dim=1), {"x": train}, method="exact")
        >>> ev = ppgen.evaluate(fit, {"x": test})
        >>> ev.kind, ev["n_data"], round(ev["log_lik_per_datum"], 1), round(ev["p_loo"])
        ('likelihood', 200, -1.5, 1)
        >>> round(ev["bits_per_dim"], 2), ev.skipped["elbo"][:9]
        (2.12, 'no guide:')

        A VAE (a few steps) is scored on held-out data by the bounds of its encoder:

        >>> from ppgen.models import VAE
        >>> x = (rng.random((60, 6)) > 0.5).astype(np.float32)
        >>> vae = ppgen.fit(VAE(6, 2, hidden_features=(8,)), {"x": x[:40]},
        ...                 ppgen.inference.SVI(steps=5, num_draws=2))
        >>> ev = ppgen.evaluate(vae, {"x": x[40:]}, iwae_k=20)
        >>> ev["n_data"], ev["iwae_k"], ev["elbo_per_datum"] <= ev["iwae_per_datum"] < 0
        (20, 20, True)

        An implicit fit (a GAN, a few steps) is scored by its samples; on ``ring8`` data the
        mode coverage comes too:

        >>> from ppgen.data.modes2d import ring8
        >>> from ppgen.inference import Adversarial
        >>> from ppgen.models import GAN
        >>> gan = ppgen.fit(GAN(2, z_dim=2, hidden_features=(8,)), {"x": ring8(500)},
        ...                 Adversarial(steps=2))
        >>> ev = ppgen.evaluate(gan, num_samples=500)
        >>> ev.kind, ev.details["modes"], sorted(ev.metrics)[:3]
        ('samples', 'ring8', ['high_quality_rate', 'mmd2', 'mmd_bandwidth'])
    """
    from ppgen.result import Fit

    if not isinstance(fit, Fit):
        raise DataError(
            f"`fit` must be a ppgen Fit (from ppgen.fit or ppgen.load); got {type(fit).__name__}."
        )
    num_samples = _check_count("num_samples", num_samples, 2)
    iwae_k = _check_count("iwae_k", iwae_k, 1)
    seed = _check_seed(seed)
    spec = _check_modes(modes)
    if fit.has_likelihood:
        if spec is not None:
            raise DataError(
                "`modes` applies to fits scored by their samples (implicit programs such as "
                f"GANs); this {fit.kind} fit has a likelihood and is scored by it. Leave "
                "`modes` out."
            )
        values, source = _resolve_data(fit, data)
        held = values if data is not None else None
        ev = _likelihood_metrics(fit, held, source, iwae_k, seed)
        return _with_declared(fit, ev, held)
    if not fit.can_sample:
        raise DataError(
            f"This {fit.kind} fit has neither a likelihood nor a sampler: nothing to evaluate."
        )
    values, source = _resolve_data(fit, data)
    if spec is None and isinstance(data, str) and data in MODE_BENCHMARKS:
        spec = _check_modes(data)
    ev = _sample_metrics(fit, values, source, num_samples, spec, seed)
    return _with_declared(fit, ev, values if data is not None else None)


# ---------------------------------------------------------------------- likelihood fits
def _estimator(fit: Fit) -> str:
    return "no estimator" if fit.estimator is None else type(fit.estimator).__name__


def _pointwise(ll: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(chain, draw, n)`` pointwise log-likelihood: joint over sites sharing a batch shape."""
    arrays = list(ll.values())
    c, d = arrays[0].shape[:2]
    if len({a.shape for a in arrays}) == 1:
        return sum(arrays[1:], arrays[0]).reshape(c, d, -1)
    return np.concatenate([a.reshape(c, d, -1) for a in arrays], axis=-1)


def _local_latents(fit: Fit) -> list[str]:
    """Latent sites with draws that share a plate with an observed site (one per datum)."""
    info = fit.info
    data_plates = {p.name for n in info.observed for p in info.sites[n].plates}
    return [
        n
        for n in info.latent
        if (n in fit.draws or n in fit.local_draws)
        and not info.sites[n].enumerate
        and data_plates & {p.name for p in info.sites[n].plates}
    ]


def _likelihood_metrics(
    fit: Fit, data: dict[str, Any] | None, source: str, iwae_k: int, seed: int
) -> Evaluation:
    from scipy.special import logsumexp

    metrics: dict[str, float] = {}
    skipped: dict[str, str] = {}
    details: dict[str, Any] = {"data": source, "observed_sites": list(fit.info.observed)}
    local = _local_latents(fit)
    train = None
    if data is not None and local:
        skipped["log_lik_per_datum"] = (
            f"the latent sites {local} are per datum and their draws belong to the training "
            "data; a held-out likelihood has to integrate them out, as the ELBO and IWAE "
            "bounds (elbo_per_datum, iwae_per_datum) from the fit's guide do"
        )
        point = None
    else:
        try:
            point = _pointwise(fit.log_likelihood(data))
        except DataError as e:
            raise DataError(f"The fit cannot score {source}: {e}") from e
        if data is None:
            train = point
    if local:
        details["local_latents"] = local
    info = _scored_info(fit, data, source)
    elements = sum(math.prod(info.sites[o].shape) for o in info.observed)
    summary = f"{fit.kind} fit ({_estimator(fit)}) on {source}"
    if point is not None:
        c, d, n = point.shape
        flat = point.reshape(c * d, n).astype(np.float64)
        lppd = logsumexp(flat, axis=0) - math.log(c * d)
        metrics.update({"log_lik_per_datum": float(lppd.mean()), "n_data": int(n)})
        if local:
            skipped["bits_per_dim"] = (
                f"log_lik_per_datum is conditional on draws of the per-datum latents {local} "
                "(a reconstruction likelihood), not a density of the data; see "
                "bits_per_dim_iwae"
            )
        elif elements:
            metrics["bits_per_dim"] = _bits(float(lppd.mean()), n, elements)
        summary = (
            f"{fit.kind} fit ({_estimator(fit)}) scored on {source}: "
            f"{n} data points, {c * d} draw{'s' if c * d != 1 else ''}"
        )
    bounds = _bounds(fit, data, info, iwae_k, seed, skipped)
    if bounds is not None:
        w, plate = bounds
        k, n = w.shape
        iwae = float((logsumexp(w, axis=0) - math.log(k)).mean())
        metrics.setdefault("n_data", int(n))
        metrics["elbo_per_datum"] = float(w.mean())
        metrics["iwae_per_datum"] = iwae
        metrics["iwae_k"] = int(k)
        if elements:
            metrics["bits_per_dim_iwae"] = _bits(iwae, n, elements)
        details["bound_plate"], details["bound_n_data"] = plate, int(n)
        summary += f"; ELBO and IWAE bounds from the guide, K={k}, over {n} data in `{plate}`"
    details["summary"] = summary
    dims = {}  # D of bits/dim: the observed values per datum, as each metric counts data
    if "bits_per_dim" in metrics:
        dims["bits_per_dim"] = elements / point.shape[-1]
    if "bits_per_dim_iwae" in metrics:
        dims["bits_per_dim_iwae"] = elements / bounds[0].shape[1]
    if dims:
        details["dims_per_datum"] = dims
    metrics.update(_ppc(fit, data, local, seed, skipped))
    draws = fit.num_chains * fit.num_draws
    details["num_draws"] = draws
    caught: list[str] = []
    if draws >= 2:
        if train is None:
            train = _pointwise(fit.log_likelihood(None))
        metrics.update(_waic_loo(fit, train, caught))
    else:
        why = "one draw (a point estimate): there is no posterior to average over"
        skipped.update({"waic": why, "loo": why})
    if caught:
        details["warnings"] = caught
    return Evaluation("likelihood", metrics, details, skipped)


def _ppc(
    fit: Fit, data: dict[str, Any] | None, local: list[str], seed: int, skipped: dict[str, str]
) -> dict[str, float]:
    """Posterior predictive p-values (:mod:`ppgen.analysis.ppc`), or why they are skipped."""
    if len(fit.info.observed) != 1:
        skipped["ppc"] = f"{len(fit.info.observed)} observed sites: the checks take one"
        return {}
    if data is not None and local:
        skipped["ppc"] = f"the per-datum latents {local} have draws for the training data only"
        return {}
    try:
        p = predictive_pvalues(fit, data, seed=seed)
    except PPGenError as e:
        skipped["ppc"] = f"the fit cannot replicate the data: {e}"
        return {}
    return {f"ppc_p_{name}": v for name, v in p.items()}


def _bits(per_datum: float, n: int, elements: int) -> float:
    """Bits per dimension: ``-(per-datum log density) * n / (elements * ln 2)``."""
    return -per_datum * n / (elements * math.log(2.0))


def _scored_info(fit: Fit, data: dict[str, Any] | None, source: str) -> Any:
    """The program's sites on the scored data (the fit's own for the training data)."""
    if data is None:
        return fit.info
    try:
        return fit.program.inspect(data, seed=fit.seed)
    except DataError as e:
        raise DataError(f"The fit cannot score {source}: {e}") from e


def _bound_reason(fit: Fit, data: dict[str, Any] | None, info: Any) -> tuple[Any, str]:
    """``(data plate, "")`` when the per-datum bounds apply, else ``(None, why)``."""
    if fit.guide is None:
        return None, (
            f"no guide: this {_estimator(fit)} fit holds no variational density q(z | x) (the "
            "bounds apply to SVI fits; a MAP fit's point masses and MCMC draws are none)"
        )
    if not info.latent:
        return None, "the program has no latent sites: log_lik_per_datum is exact"
    enumerated = [n for n in info.latent if info.sites[n].enumerate]
    if enumerated:
        return None, (
            f"the latent sites {enumerated} are summed out by enumeration; bounds with "
            "enumerated latents are not supported"
        )
    plate, why = data_plate(info, fit.data if data is None else data)
    if plate is None:
        return None, why
    outside = [n for n in info.latent if all(p.name != plate.name for p in info.sites[n].plates)]
    if outside:
        return None, (
            f"the latent site(s) {outside} lie outside the data plate `{plate.name}` (global): "
            "their term belongs to all data at once, so the bound does not split per datum"
        )
    auto = fit.program.ops.autoguide_name(fit.guide)
    if data is not None and auto is not None:
        return None, (
            f"the guide ({auto}) is an autoguide: its factors of the "
            f"per-datum latents {list(info.latent)} are parameters of the training points, not "
            "a function of x, so it cannot encode held-out data; fit an amortised guide "
            "(an encoder) or evaluate on the training data"
        )
    return plate, ""


_GUIDE_ERRORS = (RuntimeError, ValueError, IndexError, TypeError, NotImplementedError)


def _bounds(
    fit: Fit,
    data: dict[str, Any] | None,
    info: Any,
    iwae_k: int,
    seed: int,
    skipped: dict[str, str],
) -> tuple[np.ndarray, str] | None:
    """``(log weights (K, N), data plate)`` of the fit's guide on the data, or ``None`` with
    the reason in ``skipped``."""
    plate, why = _bound_reason(fit, data, info)
    if plate is not None:
        ops = fit.program.ops
        native = fit._native(data)
        try:
            with ops.device_context(fit.device):
                model, guide = fit.model_callable(), fit.guide_callable()
                w = ops.local_log_weights(
                    model, guide, native, plate=plate.name, num_particles=iwae_k, seed=seed
                )
            return w, plate.name
        except CapabilityError as e:
            why = str(e)
        except PPGenError:
            raise
        except _GUIDE_ERRORS as e:
            if data is None:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            why = f"the guide could not run on these data ({type(e).__name__}: {first})"
    skipped.update({"elbo": why, "iwae": why})
    return None


def _with_declared(fit: Fit, ev: Evaluation, data: dict[str, Any] | None) -> Evaluation:
    """``ev`` with the metrics the model object declares (``evaluate_metrics(fit, data)``)."""
    obj = fit.program.obj
    if not declares(obj, "evaluate_metrics"):
        return ev
    by = f"{type(obj).__name__}.evaluate_metrics"
    out = obj.evaluate_metrics(fit, data)
    if not isinstance(out, Mapping):
        raise ProgramError(
            f"`{by}(fit, data)` must return a dict of metric name -> number; got "
            f"{type(out).__name__}."
        )
    metrics = dict(ev.metrics)
    for name, value in out.items():
        v = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        if not isinstance(name, str) or v.ndim != 0 or v.dtype.kind not in "iuf":
            raise ProgramError(
                f"`{by}(fit, data)` must return a dict of metric name (str) -> number; got "
                f"{name!r}: {value!r}."
            )
        if name in metrics:
            raise ProgramError(
                f"`{by}` declares the metric `{name}`, which evaluate computes itself; give "
                "it another name."
            )
        metrics[name] = int(v) if v.dtype.kind in "iu" else float(v)
    details = {**ev.details, "declared_metrics": list(out), "declared_by": by}
    return dataclasses.replace(ev, metrics=metrics, details=details)


def _waic_loo(fit: Fit, point: np.ndarray, caught: list[str]) -> dict[str, float]:
    import arviz as az

    posterior = {k: np.asarray(v) for k, v in fit.draws.items()}
    if not posterior:  # loo reads the posterior group only for the chains' ESS
        posterior = {"_draw": np.zeros(point.shape[:2])}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        idata = az.from_dict(posterior=posterior, log_likelihood={"obs": point})
        waic = az.waic(idata)
        loo = az.loo(idata, pointwise=True)
    for w in record:
        if not issubclass(w.category, DeprecationWarning | FutureWarning):
            caught.append(" ".join(str(w.message).split()))
    return {
        "elpd_waic": float(waic["elpd_waic"]),
        "elpd_waic_se": float(waic["se"]),
        "p_waic": float(waic["p_waic"]),
        "elpd_loo": float(loo["elpd_loo"]),
        "elpd_loo_se": float(loo["se"]),
        "p_loo": float(loo["p_loo"]),
        "pareto_k_max": float(np.max(np.asarray(loo["pareto_k"]))),
    }


# ---------------------------------------------------------------------- sample-based fits
def _observed_site(fit: Fit) -> str:
    observed = list(fit.info.observed)
    site = fit.diagnostics.get("site")
    if isinstance(site, str) and site in observed:
        return site
    implicit = [n for n in observed if fit.info.sites[n].density == "implicit"]
    if len(implicit) == 1:
        return implicit[0]
    if len(observed) == 1:
        return observed[0]
    raise DataError(
        f"The program has observed sites {observed}; evaluate cannot tell which one the fit "
        "generates. Fit with Adversarial(site=...) to name it."
    )


def _detect_modes(ref: np.ndarray) -> tuple[str, np.ndarray, np.ndarray] | None:
    if ref.ndim != 2 or ref.shape[1] != 2:
        return None
    for name in MODE_BENCHMARKS:
        label, centres, sigma = _check_modes(name)  # type: ignore[misc]
        if len(ref) < len(centres):
            continue
        cov = mode_coverage(ref, centres, sigma)
        if cov.modes_covered == cov.n_modes and cov.high_quality_rate >= _DETECT_RATE:
            return label, centres, sigma
    return None


def _digits_scale(ref: np.ndarray) -> tuple[float, float, str] | None:
    """``(shift, factor, words)`` mapping the data to the digits' 0..16 scale, or None."""
    lo, hi = float(np.nanmin(ref)), float(np.nanmax(ref))
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 16.0, "[0, 1] mapped to 0..16"
    if lo >= -1.0 and hi <= 1.0:
        return 1.0, 8.0, "[-1, 1] mapped to 0..16"
    if lo >= 0.0 and hi <= 16.0:
        return 0.0, 1.0, "0..16"
    return None


def _sample_metrics(
    fit: Fit,
    data: dict[str, Any],
    source: str,
    num_samples: int,
    spec: tuple[str, np.ndarray, np.ndarray] | None,
    seed: int,
) -> Evaluation:
    site = _observed_site(fit)
    if site not in data or data[site] is None:
        raise DataError(
            f"`data` has no values for the observed site `{site}` (it holds {sorted(data)}); "
            "pass the data to compare the fit's samples with, like the training data."
        )
    ref = np.asarray(data[site], dtype=np.float64)
    datum = tuple(fit.info.sites[site].shape[1:])
    if ref.ndim < 1 or tuple(ref.shape[1:]) != datum or len(ref) < 2:
        raise DataError(
            f"`data['{site}']` has shape {ref.shape}: the fit generates `{site}` as "
            f"{str(('n', *datum)).replace(chr(39), '')} with n >= 2. Pass data shaped like the "
            "training data."
        )
    if spec is not None and (ref.ndim != 2 or ref.shape[1] != spec[1].shape[1]):
        raise DataError(
            f"`modes` has {spec[1].shape[1]}-dimensional centres, but `{site}` holds data of "
            f"shape {ref.shape[1:]}. Pass centres of the data's dimension."
        )
    n_ref = len(ref)
    rng = np.random.default_rng(seed)
    if n_ref > num_samples:  # compare as many data points as samples, a random subset
        idx = np.sort(rng.choice(n_ref, num_samples, replace=False))
        data = {
            k: (np.asarray(v)[idx] if np.ndim(v) >= 1 and len(v) == n_ref else v)
            for k, v in data.items()
        }
        ref = ref[idx]
    sets = math.ceil(num_samples / len(ref))
    generated = fit.sample(sets, seed=seed, data=data)[site]
    gen = np.asarray(generated, dtype=np.float64).reshape((-1, *ref.shape[1:]))[:num_samples]

    metrics: dict[str, float] = {}
    skipped: dict[str, str] = {}
    details: dict[str, Any] = {
        "data": source,
        "site": site,
        "num_samples": int(len(gen)),
        "num_data": int(len(ref)),
        "seed": seed,
    }
    if not np.isfinite(gen).all():
        details["non_finite_samples"] = int(
            (~np.isfinite(gen)).any(axis=tuple(range(1, gen.ndim))).sum()
        )
    why_lik = fit.unavailable_groups().get("log_likelihood", f"a {fit.kind} program")
    skipped["log_lik_per_datum"] = f"no likelihood: {why_lik}"
    try:
        h = median_bandwidth(gen, ref)
        metrics["mmd2"] = float(mmd(gen, ref, bandwidth=h))
        metrics["mmd_bandwidth"] = h
    except ValueError as e:
        skipped["mmd2"] = str(e)
    if spec is None:
        spec = _detect_modes(ref)
        if spec is not None:
            details["modes_source"] = "recognised in the data"
    if spec is not None:
        label, centres, sigma = spec
        cov = mode_coverage(gen, centres, sigma)
        metrics["modes_covered"] = int(cov.modes_covered)
        metrics["n_modes"] = int(cov.n_modes)
        metrics["high_quality_rate"] = float(cov.high_quality_rate)
        metrics["reverse_kl"] = float(cov.reverse_kl)
        details["modes"] = label
    else:
        skipped["modes_covered"] = (
            "no mode centres: pass modes='ring8', 'grid25' or (centres, sigma)"
        )
    scale = _digits_scale(ref) if tuple(ref.shape[1:]) in _DIGIT_SHAPES else None
    if scale is not None:
        shift, factor, words = scale
        metrics["fcd"] = frechet_classifier_distance((gen + shift) * factor, (ref + shift) * factor)
        details["digits_scale"] = words
    else:
        skipped["fcd"] = "the data are not 8x8 digit images (64 values per datum, 0..16 scale)"
    details["summary"] = (
        f"{fit.kind} fit ({_estimator(fit)}), site `{site}`: {len(gen)} generated "
        f"points vs {len(ref)} points of {source}"
    )
    return Evaluation("samples", metrics, details, skipped)
