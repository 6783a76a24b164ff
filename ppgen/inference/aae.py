"""The adversarial autoencoder (AAE): an autoencoder whose codes are pushed onto the prior by
a discriminator, on Pyro and NumPyro programs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ppgen.errors import check_nonnegative
from ppgen.inference._aae_jax import JaxAAE
from ppgen.inference._aae_torch import TorchAAE
from ppgen.inference._base import register
from ppgen.inference.ali import ALI

__all__ = ["AAE"]


@register("aae", "adversarial_autoencoder")
class AAE(ALI):
    r"""Adversarial autoencoder (Makhzani et al. 2016): the reconstruction term of the ELBO,
    with the KL term replaced by an adversarial match of the *aggregate* posterior
    :math:`q(z) = E_{p_\text{data}(x)}[q(z \mid x)]` to the prior :math:`p(z)`.

    The program is the decoder :math:`p(z)\,p(x \mid z)` (an explicit likelihood: Bernoulli,
    Normal...); ``guide`` is the encoder :math:`q(z \mid x)` over the same latent sites,
    deterministic (``Delta(E(x))``) or reparameterised (``Normal``). Each step makes
    ``n_critic`` updates of a discriminator :math:`D(z)` that tells prior draws from the
    encoder's codes of the batch, then one joint update of encoder and decoder on

    .. math:: -\frac1B \sum_i \log p(x_i \mid z_i) + \lambda\, \ell_G(D(z_i)),
        \qquad z_i \sim q(z \mid x_i),

    :math:`\ell_G` the loss's generator term (the encoder makes its codes look like prior
    draws) and :math:`\lambda` = ``adversarial_weight`` (0: a plain autoencoder).

    Why an estimator and not an SVI objective: the adversarial term needs a second network
    with its own optimiser and inner updates, which is what the adversarial family's engine
    already runs (ALI's encoder checks, two optimiser groups, checkpoints); SVI's objectives
    are single-network losses.

    Arguments:
        guide: the encoder program (as for :class:`~ppgen.inference.ALI`).
        discriminator: a ``torch.nn.Module`` ``D(z)`` (``D(z1, z2, ...)`` for several latent
            sites) returning one number per code; ``None``: an MLP of widths ``hidden``.
        adversarial_weight: :math:`\lambda \ge 0`.
        others: as for :class:`~ppgen.inference.ALI` (``loss``, ``n_critic``, ``lr``,
            ``lr_g`` (encoder and decoder), ``lr_d``, ``betas``, ...).

    On NumPyro programs a step is one jitted call (``n_critic`` critic updates in a
    ``lax.scan``, then the autoencoder's), with the default MLP critic on the codes.

    The fit holds the decoder's and encoder's weights; ``fit.history`` has
    ``reconstruction`` (nats per datum), ``loss_e`` (the adversarial term), ``loss_d`` and
    ``loss`` (their weighted sum); ``fit.encode({"x": x})`` gives each datum's code and
    ``fit.sample(n)`` decodes prior draws. The encoder has no density that the ELBO could
    use, so no log-likelihood bound is claimed for the fit; ``fit.log_likelihood`` is the
    decoder's :math:`\log p(x \mid z)` at prior draws, as for any explicit program.

    Example: a linear decoder and encoder on 2-D data; the codes' spread moves toward the
    prior's (``tests/inference/test_aae.py`` checks the aggregate posterior by MMD).

        >>> import numpy as np, torch, pyro, pyro.distributions as dist, ppgen
        >>> def decoder(x=None):
        ...     w = pyro.param("w", torch.ones(2))
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", dist.Normal(w * z[:, None], 0.1).to_event(1), obs=x)
        >>> def encoder(x=None):
        ...     a = pyro.param("a", torch.full((2,), 0.1))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", dist.Delta(x @ a))
        >>> x = np.random.default_rng(0).normal(size=(512, 1)) * [[2.0, -1.0]]
        >>> fit = ppgen.fit(decoder, {"x": x.astype(np.float32)},
        ...                 AAE(guide=encoder, lr=0.01, steps=300, hidden=(16,)))
        >>> sorted(fit.history)
        ['loss', 'loss_d', 'loss_e', 'reconstruction']
        >>> bool(fit.history["reconstruction"][-1] < fit.history["reconstruction"][0])
        True
    """

    name = "aae"
    kinds = ("explicit",)
    backends = ("pyro", "numpyro")
    engines = {"pyro": TorchAAE, "numpyro": JaxAAE}
    critic_input = "the codes only"

    def __init__(
        self,
        guide: Callable[..., Any] | None = None,
        discriminator: Any = None,
        loss: str = "ns",
        *,
        adversarial_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(guide, discriminator, loss, **kwargs)
        self.adversarial_weight = check_nonnegative("adversarial_weight", adversarial_weight)
