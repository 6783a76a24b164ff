"""VAE-GAN: a VAE whose reconstructions are measured in a discriminator's feature space and
whose decoder is also a GAN generator, on Pyro programs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ppgen.errors import EstimatorError, check_nonnegative
from ppgen.inference._base import register
from ppgen.inference._vaegan_torch import TorchVAEGAN
from ppgen.inference.ali import ALI

__all__ = ["VAEGAN"]


@register("vaegan", "vae_gan")
class VAEGAN(ALI):
    r"""VAE-GAN (Larsen et al. 2016, arXiv:1512.09300): an encoder :math:`q(z \mid x)` (the
    guide, a reparameterised ``Normal``), the program's decoder :math:`x = \mathrm{Dec}(z)`
    (``Implicit`` or any reparameterisable observed site) and a discriminator :math:`D(x)`
    whose hidden layer :math:`D_l` measures reconstructions.

    Each step makes ``n_critic`` discriminator updates (data against reconstructions
    :math:`\mathrm{Dec}(z), z \sim q(z \mid x)`, and prior samples
    :math:`\mathrm{Dec}(z_p)`), then one update of the encoder on

    .. math:: \mathrm{KL}(q(z \mid x) \,\|\, p(z)) + \tfrac12 \lVert D_l(x) -
        D_l(\mathrm{Dec}(z)) \rVert^2

    (the KL by one Monte Carlo draw) and of the decoder on ``gamma`` times the same feature
    reconstruction plus the generator's GAN term on reconstructions and prior samples
    (Algorithm 1 of the paper). ``fit.history`` has ``loss_d``, ``loss_g``, ``kl`` and
    ``reconstruction``; ``fit.sample(n)`` decodes prior draws, ``fit.encode`` encodes.

    Arguments:
        guide: the encoder program (a reparameterised ``Normal`` over the latents).
        discriminator: a ``torch.nn.Module`` ``D(x)`` with a ``features(x)`` method;
            ``None``: :class:`ppgen.nn.Critic` of widths ``hidden`` (features: its last
            hidden layer).
        gamma: the weight of the feature reconstruction in the decoder's loss.
        others: as for :class:`~ppgen.inference.ALI`.

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.models import VAEGAN as VAEGANModel
        >>> x = (np.random.default_rng(0).random((64, 6)) > 0.5).astype(np.float32)
        >>> fit = ppgen.fit(VAEGANModel(6, 2, hidden_features=(16,)), {"x": x}, "vaegan")
        >>> sorted(fit.history)
        ['kl', 'loss', 'loss_d', 'loss_g', 'reconstruction']
    """

    name = "vaegan"
    backends = ("pyro",)
    engines = {"pyro": TorchVAEGAN}
    critic_input = "the data only"

    def __init__(
        self,
        guide: Callable[..., Any] | None = None,
        discriminator: Any = None,
        loss: str = "ns",
        *,
        gamma: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(guide, discriminator, loss, **kwargs)
        self.gamma = check_nonnegative("gamma", gamma)
        if self.loss == "wgan-gp":
            raise EstimatorError(
                "VAEGAN trains its critic as a classifier (its features are the reconstruction "
                "metric); use loss='ns', 'minimax', 'hinge' or 'lsgan'."
            )
