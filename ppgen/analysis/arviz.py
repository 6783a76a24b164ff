"""The single hand-off to ArviZ: every fit, every backend, the groups ArviZ users expect."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

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
    program (``Unnormalized``) has neither ``log_likelihood`` (log Z is unknown) nor
    ``posterior_predictive`` (no forward simulation). ``posterior_predictive`` and
    ``log_likelihood`` are ``None`` (build when available), ``True`` (required: raises
    :class:`~ppgen.errors.CapabilityError` saying why when the fit cannot) or ``False``. The
    groups left out for want of a capability and why are in
    ``idata.attrs["ppgen_omitted_groups"]``, a JSON string ``{group: reason}``.

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
    elif posterior and info.observed:
        # SVI / MAP: the log joint of each guide draw (importance-weight diagnostics need it);
        # the same pass gives the log-likelihood group (one run of the program, not two)
        sites = [n for n in info.latent if n in fit.draws] + info.observed
        lps = fit.site_log_probs(sites)
        c, d = fit.num_chains, fit.num_draws
        groups["sample_stats"] = {"lp": sum(v.reshape(c, d, -1).sum(-1) for v in lps.values())}
        if want_ll:
            groups["log_likelihood"] = {n: lps[n] for n in info.observed}
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
    obs_keys = set(info.obs_keys)
    const = {
        k: np.asarray(v)
        for k, v in fit.data.items()
        if k not in obs_keys and isinstance(v, np.ndarray) and v.ndim > 0
    }
    if const:
        groups["constant_data"] = const

    if want_ll:
        if "log_likelihood" not in groups:
            groups["log_likelihood"] = fit.log_likelihood()
        for name, v in groups["log_likelihood"].items():
            dims.setdefault(name, site_dims(info.sites[name], v.ndim - 2))

    if wanted("posterior_predictive", posterior_predictive):
        pred = fit.predict(sites=info.observed)
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

    # plate dims get integer coordinates; ArviZ checks sizes for us
    idata = az.from_dict(**groups, dims=dims)
    idata.attrs["ppgen_omitted_groups"] = json.dumps(omitted, sort_keys=True)  # netCDF-safe
    return idata
