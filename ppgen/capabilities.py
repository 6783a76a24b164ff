"""Capabilities a model may declare so that estimators evaluate it exactly or faster.

Estimators never ask which class a model is. A model object (a zoo model or your own class
with a ``model`` method) may implement any of these methods; an estimator that can use one
asks for it by name and falls back to running the program when it is absent:

- ``log_density(**data) -> Tensor``: the per-datum log density :math:`\\log p_\\theta(x_i)`
  of a program without latent sites (flows, autoregressive models), shape ``(N,)`` over the
  plate holding the observations. :class:`~ppgen.inference.MLE` and
  :class:`~ppgen.inference.SVI` then compute :math:`-\\tfrac{N}{B}\\sum_i \\log p(x_i)` with
  no tracing. ppgen checks it once, before training, against the program's own observed
  site (to ``1e-4`` relative), and refuses a declaration that disagrees.
- ``log_joint_terms(values, **data) -> (log_prior, log_likelihood)``: the program's
  :math:`\\log p(z)` and :math:`\\log p(x \\mid z)` at ``K`` draws of every latent site at once
  (``values``: ``{site: (K, *shape)}`` on each site's support), each shaped ``(K,)``, with
  torch (or NumPyro) alone. :class:`~ppgen.inference.AVB` (Pyro, global latents) then
  evaluates all its particles in one call instead of running the program per draw; ppgen
  checks it once, before training, against the program on three prior draws (``1e-4``)
  and refuses a declaration that disagrees. The zoo's ``EightSchools`` declares it.
- ``elbo_terms(num_particles, **data) -> ELBOTerms``: reparameterised per-datum terms of the
  ELBO of the model with **its own guide** (a VAE). SVI then evaluates ``trace``,
  ``meanfield``, ``renyi`` and ``iwae`` objectives from them with torch alone. ppgen checks
  the declared ELBO against the program's (mean over particles, within 6 standard errors)
  before training.
- ``exact_posterior(**data) -> ExactPosterior``: independent draws of the closed-form
  posterior, for :class:`~ppgen.inference.Exact`.
- ``discriminator(backend) -> critic``: the model's default discriminator for
  :class:`~ppgen.inference.Adversarial` (a ``torch.nn.Module`` for ``"pyro"``; an equinox
  module or ``(init, apply)`` pair for ``"numpyro"``; ``None`` for ppgen's default MLP),
  e.g. a convolutional critic for an image generator.
- ``simulate_sites(sites, **data) -> {site: value} | None``: one forward simulation of the
  program with torch alone (no Pyro handlers): the values of ``sites`` (the observed site,
  and InfoGAN's code sites when asked) for the batch in ``data``, drawing the program's
  random sites **in the program's order from torch's global generator**, so that the same
  noise gives the same values. :class:`~ppgen.inference.Adversarial` (Pyro) then draws each
  fake batch through it instead of running the program (Pyro's per-site cost is most of a
  small generator's step). ppgen checks it once, before training, from one RNG state: the
  values and the gradients of the observed site with respect to every generator parameter
  must equal the program's (``1e-5`` relative), or the declaration is refused. Return
  ``None`` to decline (e.g. for sites it cannot draw).
- ``evaluate_metrics(fit, data) -> {name: number}``: metrics of its own that
  :func:`ppgen.evaluate` adds to its table (a language model's perplexity, a topic model's
  held-out perplexity). ``data`` is ``None`` when the fit is scored on its training data,
  else the held-out data as a dict like the training data. A name evaluate computes itself
  is refused.
- ``sample_text(fit, n, seed) -> list[str]``: ``n`` generated texts of a text model (an
  n-gram language model), what ``ppgen sample RUN --out FILE.txt`` writes.
- ``predictive_draws`` (an int attribute, not a method): the most posterior predictive data
  sets :meth:`~ppgen.result.Fit.to_arviz` (and so ``save``) draws, for programs whose forward
  sampling is costly (autoregressive models run the network once per dimension).

A guide object may declare one too:

- ``reparam_draws(num_particles, **data) -> (values, log_q) | None``: reparameterised draws
  ``{site: z}`` of every latent it covers and :math:`\\log q(z)` per datum (shape
  ``(N,)``, or ``(K, N)`` with particles), drawn as the guide program would draw them. The
  ``trace`` objective then runs the model alone on those draws (no guide pass);
  :class:`~ppgen.inference.Amortized` declares it for local latents. Returning ``None``
  declines for this call (the guide program then runs).

Example:
    >>> import torch, pyro, pyro.distributions as dist
    >>> class Gaussian:
    ...     def __init__(self):
    ...         self.loc = torch.zeros(2, requires_grad=True)
    ...     def model(self, x):
    ...         loc = pyro.param("loc", self.loc)
    ...         with pyro.plate("data", len(x)):
    ...             pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)
    ...     def log_density(self, x):
    ...         return dist.Normal(pyro.param("loc", self.loc), 1.0).to_event(1).log_prob(x)
    >>> declares(Gaussian(), "log_density"), declares(Gaussian(), "elbo_terms")
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["ELBOTerms", "ExactPosterior", "Capability", "declares"]

Capability = Literal[
    "log_density",
    "log_joint_terms",
    "elbo_terms",
    "exact_posterior",
    "reparam_draws",
    "discriminator",
    "simulate_sites",
    "evaluate_metrics",
    "sample_text",
]


def declares(obj: Any, capability: Capability) -> bool:
    """Whether model object ``obj`` declares ``capability`` (a callable attribute of that name).

    A subclass switches an inherited capability off by setting it to ``None``.
    """
    return callable(getattr(obj, capability, None))


@dataclass
class ELBOTerms:
    r"""Per-datum, per-particle terms of a reparameterised ELBO, each shaped ``(K, N)``.

    .. math:: \mathrm{ELBO}_n = \tfrac1K \textstyle\sum_k \log p(x_n \mid z_{nk})
        + \beta\,[\log p(z_{nk}) - \log q(z_{nk} \mid x_n)]

    Attributes:
        log_likelihood: :math:`\log p(x_n \mid z_{nk})`.
        log_prior: :math:`\log p(z_{nk})`, summed over all latent sites of datum ``n``.
        log_q: :math:`\log q(z_{nk} \mid x_n)` of the same draws.
        kl: optional analytic :math:`\mathrm{KL}(q(z \mid x_n) \,\|\, p(z))`, shape ``(N,)``,
            used by the ``meanfield`` objective in place of the Monte Carlo estimate.

    Example:
        >>> t = ELBOTerms(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 3))
        >>> t.log_likelihood.shape
        torch.Size([1, 3])
    """

    log_likelihood: Any
    log_prior: Any
    log_q: Any
    kl: Any = None


@dataclass
class ExactPosterior:
    """What a model's ``exact_posterior(**data)`` returns to :class:`~ppgen.inference.Exact`.

    Attributes:
        sample: ``sample(n, rng)`` gives ``n`` independent posterior draws of every latent
            site of the model's program, ``{site: array (n, *site_shape)}``.
        params: closed-form summaries (posterior parameters, sufficient statistics), stored
            in ``Fit.params``.
        point_mass: sites whose "posterior" is a point estimate (e.g. hyperparameters set by
            empirical Bayes), reported in ``Fit.diagnostics``.

    Example:
        >>> post = ExactPosterior(lambda n, rng: {"p": rng.beta(3.0, 2.0, size=n)})
        >>> post.sample(4, np.random.default_rng(0))["p"].shape
        (4,)
    """

    sample: Callable[[int, np.random.Generator], dict[str, np.ndarray]]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    point_mass: tuple[str, ...] = ()
