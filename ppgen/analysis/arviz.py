"""The single hand-off to ArviZ: every fit, every backend, the groups ArviZ users expect."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.backends._pointwise import units_json
from ppgen.errors import CapabilityError

if TYPE_CHECKING:
    import arviz as az

    from ppgen.backends import Site
    from ppgen.result import Fit

__all__ = ["to_inference_data", "site_dims"]


def site_dims(site: Site, ndim: int | None = None) -> list[str]:
    """Dimension names of a site's value: plate names for plate dims, ``{site}_dim_i`` otherwise.

    ``ndim`` is the number of trailing axes to name (default: the traced value's).
    """
    shape = site.batch_shape + site.event_shape
    n = len(shape) if ndim is None else ndim
    nb = len(site.batch_shape)
    names = [f"{site.name}_dim_{i}" for i in range(len(shape))]
    for p in site.plates:
        axis = nb + p.dim
        if 0 <= axis < nb and shape[axis] == p.size:
            names[axis] = p.name
    names = names[len(names) - n :] if n <= len(names) else names
    while len(names) < n:
        names.insert(0, f"{site.name}_dim_extra{n - len(names)}")
    # trailing size-1 batch dims of broadcast sites would clash; keep names unique
    seen: set[str] = set()
    for i, nm in enumerate(names):
        if nm in seen:
            names[i] = f"{site.name}_dim_{i}"
        seen.add(names[i])
    return names


def _squeeze_to(value: np.ndarray, site: Site, lead: int) -> np.ndarray:
    """Drop leading size-1 axes a vectorised backend added, down to the site's shape."""
    target = len(site.batch_shape + site.event_shape)
    while value.ndim > lead + target and value.shape[lead] == 1:
        value = value.reshape(value.shape[:lead] + value.shape[lead + 1 :])
    return value


def _loglik_dims(name: str, v: np.ndarray, info: Any, unit: Any) -> list[str]:
    """Dimension names of a log-likelihood variable: the observed site's (plain sites,
    mixtures) or the unit plates' (observed sites linked through enumerated latents)."""
    site = info.sites.get(name)
    if site is not None and (unit is None or tuple(unit.shape) == tuple(site.batch_shape)):
        batch = site_dims(site)[: len(site.batch_shape)]  # one entry per batch element
        k = v.ndim - 2
        return batch[len(batch) - k :] if k <= len(batch) else site_dims(site, k)
    names = [p for p, _ in unit.plates] if unit is not None else []
    if len(names) != v.ndim - 2:
        names = [f"{name}_unit_dim_{i}" for i in range(v.ndim - 2)]
    return names


def to_inference_data(
    fit: Fit,
    *,
    prior: bool = False,
    num_prior_samples: int = 500,
    posterior_predictive: bool | None = None,
    log_likelihood: bool | None = None,
) -> az.InferenceData:
    """Build an ``arviz.InferenceData`` from a :class:`~ppgen.result.Fit`.

    Groups: ``posterior`` (latent draws; for SVI, draws from the fitted guide — one chain),
    ``sample_stats`` (MCMC: diverging, energy, step_size, tree_depth, n_steps,
    acceptance_rate, lp; SVI: ``lp`` = log p(x, z) and ``log_q`` of each guide draw when the
    program allows), ``log_likelihood`` (pointwise, per observed site, for ``az.loo``/``az.waic``),
    ``posterior_predictive``, ``observed_data``, ``constant_data`` (other numeric inputs) and,
    with ``prior=True``, ``prior`` / ``prior_predictive``. Dimensions are named after plates
    (``plate("data", N)`` gives a ``data`` dimension); other axes are ``{site}_dim_{i}``.
    A fit with no posterior (``Adversarial``, MLE) has no ``posterior`` group; its
    ``sample_stats`` are the training curves of ``fit.history`` (e.g. ``loss_d``, ``loss_g``),
    one chain with one draw per step.

    Only the groups the fit can build are built (:meth:`~ppgen.result.Fit.unavailable_groups`):
    an implicit program (``Implicit`` observed site) has no ``log_likelihood``; an energy
    program (``Unnormalized``) has ``log_likelihood`` only once its log Z was estimated
    (:func:`ppgen.analysis.log_partition`; ``attrs["ppgen_log_partition"]`` says how, with its
    standard error), and its ``posterior_predictive`` holds :data:`ENERGY_SETS` data sets
    from the fit's MCMC sampler (no forward simulation exists); an unobserved program (no
    observed site: NUTS/HMC on its joint density, ``Prior``) has only ``posterior`` (and
    ``sample_stats``, ``prior``), no ``log_likelihood``, ``posterior_predictive``,
    ``observed_data`` or ``prior_predictive``. ``posterior_predictive`` and
    ``log_likelihood`` are ``None`` (build when available), ``True`` (required: raises
    :class:`~ppgen.errors.CapabilityError` saying why when the fit cannot) or ``False``. The
    groups left out for want of a capability and why are in
    ``idata.attrs["ppgen_omitted_groups"]``, a JSON string ``{group: reason}``.

    ``log_likelihood`` entries (see :meth:`~ppgen.result.Fit.log_likelihood`): masked-out
    elements are 0; enumerated discrete latents are summed out exactly; observed sites linked
    through them (an HMM's emissions, a NumPyro ``scan`` site) are ONE variable, named after
    the first of them, with one entry per element of the plates they share (e.g. per
    sequence), so ``az.loo`` leaves out whole sequences. What each variable's entries are is in
    ``idata.attrs["ppgen_log_likelihood_units"]``, a JSON string ``{variable: {"sites",
    "unit_plates", "shape", "enumerated", "entry"}}``. Where ppgen cannot compute the values
    exactly (e.g. sequential enumeration) the group is omitted with the reason
    (``log_likelihood=None``) or :class:`~ppgen.errors.CapabilityError` is raised (``True``).

    Cost: ``log_likelihood`` (and an SVI fit's ``sample_stats``) come from one pass of the
    program over all draws, ``posterior_predictive`` from a second. The backend runs each pass
    for all draws at once where the program allows; a program it cannot vectorise (e.g. a Pyro
    program with Python control flow on sampled values) runs once per draw, which takes time
    proportional to the number of draws.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("obs", 5):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=10))
        >>> idata = to_inference_data(fit)
        >>> idata.log_likelihood["x"].dims
        ('chain', 'draw', 'obs')
    """
    import arviz as az

    info = fit.info
    ops = fit.program.ops
    groups: dict[str, Any] = {}
    dims: dict[str, list[str]] = {}
    unavailable = fit.unavailable_groups()
    omitted: dict[str, str] = {}

    def wanted(group: str, flag: bool | None) -> bool:
        why = unavailable.get(group)
        if why is None:
            return flag is not False
        if flag:
            raise CapabilityError(f"`{group}=True`, but this fit has no {group} group: {why}.")
        if flag is None:
            omitted[group] = why
        return False

    want_ll = wanted("log_likelihood", log_likelihood)
    loglik: dict[str, np.ndarray] | None = None
    ll_units: dict = {}
    posterior = {}
    for name, v in fit.draws.items():
        site = info.sites.get(name)
        if site is None:
            posterior[name] = v
            continue
        v = _squeeze_to(np.asarray(v), site, 2)
        posterior[name] = v
        dims[name] = site_dims(site, v.ndim - 2)
    if posterior:
        groups["posterior"] = posterior
    if fit.sample_stats:
        groups["sample_stats"] = dict(fit.sample_stats)
    elif posterior and "sample_stats" in unavailable:
        omitted["sample_stats"] = unavailable["sample_stats"]
    elif (posterior or fit.local_draws) and info.observed:
        # SVI / MAP: the log joint of each guide draw (importance-weight diagnostics need it);
        # the same pass gives the log-likelihood group (one run of the program, not two)
        latent = [n for n in info.latent if n in fit.draws or n in fit.local_draws]
        try:
            lps = fit.site_log_probs(latent + info.observed)
        except CapabilityError as e:  # e.g. a refused enumeration: no correct value to give
            if log_likelihood:
                raise
            omitted["sample_stats"] = f"lp = log p(x, z) needs the log-likelihood, and {e}"
            if want_ll:
                omitted["log_likelihood"] = str(e)
                want_ll = False
        else:
            c, d = fit.num_chains, fit.num_draws
            lp = sum(v.reshape(c, d, -1).sum(-1) for v in lps.values())
            groups["sample_stats"] = {"lp": lp}
            if want_ll:
                ll_units = lps.units
                loglik = {k: v for k, v in lps.items() if k not in latent}
    elif not posterior and fit.history:
        # an optimisation-only fit (Adversarial, MLE): the training curves, one step per draw
        curves = {k: np.asarray(v, float) for k, v in fit.history.items() if len(v)}
        if curves and len({len(v) for v in curves.values()}) == 1:
            groups["sample_stats"] = {k: v[None] for k, v in curves.items()}

    observed = {}
    for name in info.observed:
        site = info.sites[name]
        val = np.asarray(ops.to_numpy(site.value))
        observed[name] = val
        dims[name] = site_dims(site, val.ndim)
    if observed:
        groups["observed_data"] = observed
    else:  # an unobserved program (NUTS/HMC on its joint density, Prior): nothing conditioned on
        omitted["observed_data"] = (
            "the program has no observed sites: its draws are of the joint density of its "
            "latent sites, conditioned on no data"
        )
    obs_keys = set(info.obs_keys)
    const = {
        k: np.asarray(v)
        for k, v in fit.data.items()
        if k not in obs_keys and isinstance(v, np.ndarray) and v.ndim > 0
    }
    if const:
        groups["constant_data"] = const

    if want_ll and loglik is None:
        try:
            ll = fit.log_likelihood()
        except CapabilityError as e:
            if log_likelihood:
                raise
            omitted["log_likelihood"] = str(e)
        else:
            loglik, ll_units = dict(ll), getattr(ll, "units", {})

    if wanted("posterior_predictive", posterior_predictive):
        if fit.kind == "energy":  # data sets from the fit's sampler (MCMC), a few
            n = min(predictive_draws(fit), ENERGY_SETS)
            pred = {k: v[None] for k, v in fit.sample(n).items()}
        else:
            pred = fit.predict(sites=info.observed, max_draws=predictive_draws(fit))
        pp = {}
        for name in info.observed:
            if name in pred:
                v = _squeeze_to(pred[name], info.sites[name], 2)
                pp[name] = v
        if pp:
            groups["posterior_predictive"] = pp

    if prior:
        native = fit._native(None)
        with ops.device_context(fit.device):
            model = fit.model_callable()
            simulate = wanted("prior_predictive", None)  # energy programs: latents only
            pr = ops.predictive(
                model,
                native,
                num_samples=num_prior_samples,
                seed=fit.seed + 3,
                return_sites=None if simulate else info.latent,
                uncondition=simulate,
            )
        pri, ppri = {}, {}
        for name, v in pr.items():
            site = info.sites.get(name)
            if site is None or site.kind not in ("latent", "observed"):
                continue
            v = _squeeze_to(v, site, 1)[None]
            (ppri if site.kind == "observed" else pri)[name] = v
            dims.setdefault(name, site_dims(site, v.ndim - 2))
        if pri:
            groups["prior"] = pri
        if ppri:
            groups["prior_predictive"] = ppri
        elif simulate and not info.observed:
            omitted["prior_predictive"] = "the program has no observed sites to simulate"

    # plate dims get integer coordinates; ArviZ checks sizes for us
    idata = az.from_dict(**groups, dims=dims)
    if loglik is not None:
        # its own dims: a variable of linked sites (an HMM's) has the unit's shape, not the
        # observed site's of the same name
        ll_dims = {n: _loglik_dims(n, v, info, ll_units.get(n)) for n, v in loglik.items()}
        idata.extend(az.from_dict(log_likelihood=loglik, dims=ll_dims))
        units = {n: ll_units[n] for n in loglik if n in ll_units}
        idata.attrs["ppgen_log_likelihood_units"] = units_json(units)  # netCDF-safe
        if fit.kind == "energy":  # -energy(x) - log Z: say where log Z came from
            idata.attrs["ppgen_log_partition"] = json.dumps(fit.log_partition, sort_keys=True)
    _add_local_posterior(idata, fit)
    idata.attrs["ppgen_omitted_groups"] = json.dumps(omitted, sort_keys=True)  # netCDF-safe
    return idata


PREDICTIVE_VALUES = 2**23
"""Values (about 32 MiB in float32) of each observed site ``to_arviz`` keeps in
``posterior_predictive`` by default: the first ``max(1, PREDICTIVE_VALUES // size)`` draws."""


ENERGY_SETS = 4
"""Data sets ``posterior_predictive`` holds for an energy fit: each is a run of the fit's
MCMC sampler (``sample_steps`` transitions per row), so a few, not :data:`PREDICTIVE_SETS`."""


PREDICTIVE_SETS = 1000
"""Data sets ``posterior_predictive`` holds for a fit without posterior draws (a point estimate
of parameters only): draws from the fitted program, as :meth:`Fit.predict` makes by default."""


def predictive_draws(fit: Fit) -> int:
    """How many draws ``posterior_predictive`` holds: all the fit's draws (or
    :data:`PREDICTIVE_SETS` data sets for a fit with none), at most ``PREDICTIVE_VALUES //
    size`` for the largest observed site, and at most the program's own
    ``predictive_draws`` where it declares one (an attribute of the model object, for programs
    whose forward sampling is costly, such as autoregressive models that run the network once
    per dimension).

    Example:
        >>> import ppgen
        >>> from ppgen.models import MADE
        >>> x = (np.random.default_rng(0).random((20, 4)) < 0.5).astype("float32")
        >>> est = ppgen.inference.MLE(steps=1, check_convergence=False)
        >>> fit = ppgen.fit(MADE(4, hidden_features=8), {"x": x}, est)
        >>> MADE.predictive_draws, predictive_draws(fit)
        (10, 10)
    """
    total = fit.num_chains * fit.num_draws or PREDICTIVE_SETS
    sizes = [int(np.prod(fit.info.sites[n].shape, dtype=np.int64)) for n in fit.info.observed]
    k = max(1, PREDICTIVE_VALUES // max(sizes + [1]))
    declared = getattr(fit.program.obj, "predictive_draws", None)
    if isinstance(declared, int) and declared >= 1:
        k = min(k, declared)
    return min(k, total)


def _add_local_posterior(idata: az.InferenceData, fit: Fit) -> None:
    """The first draws of the local latents a fit keeps apart (:attr:`Fit.local_draws`) as the
    ``posterior_local`` group: its ``draw`` coordinate is the index of the ``posterior``
    draws they belong to (the first ``k``), and ``attrs["ppgen_local_draws"]`` says so."""
    if not fit.local_draws:
        return
    import arviz as az

    dims, local = {}, {}
    for name, v in fit.local_draws.items():
        site = fit.info.sites.get(name)
        v = _squeeze_to(np.asarray(v), site, 2) if site is not None else np.asarray(v)
        local[name] = v
        if site is not None:
            dims[name] = site_dims(site, v.ndim - 2)
    ds = az.from_dict(posterior=local, dims=dims).posterior
    with warnings.catch_warnings():  # ArviZ warns about a group outside its schema
        warnings.simplefilter("ignore", UserWarning)
        idata.add_groups({"posterior_local": ds})
    k = next(iter(local.values())).shape[1]
    idata.attrs["ppgen_local_draws"] = json.dumps(
        {
            "group": "posterior_local",
            "sites": sorted(local),
            "draws": int(k),
            "of": int(fit.num_chains * fit.num_draws),
            "why": "local latents (one value per datum) keep their first draws only; "
            "ask for more with SVI(local_draws=...)",
        },
        sort_keys=True,
    )
