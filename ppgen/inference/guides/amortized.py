"""Amortised guides: an encoder network over the data plate gives each datum its posterior."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_args

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from torch import Tensor, nn

from ppgen.errors import ProgramError
from ppgen.inference.guides._sites import find_plate, split_latents
from ppgen.inference.guides.flow import FlowGuide
from ppgen.nn import MLP, Family, PosteriorHead, register_module

__all__ = ["Amortized"]


def _frames(msg: dict) -> list[Any]:
    return [f for f in msg["cond_indep_stack"] if f.vectorized]


def trace_data_plate(
    model: Callable,
    data: Mapping[str, Any],
    plate_name: str | None,
    family: str,
    inputs: Sequence[str] | None,
) -> tuple[Any, Any, dict[str, tuple[int, ...]], list[dict], list[str]]:
    """What an encoder guide needs of the model: its trace on ``data``, the data plate's
    frame, the local latents ``{site: event shape}``, the global latent sites, and the data
    keys to encode (``inputs``, or the observed sites in the plate), all checked."""
    with torch.no_grad(), poutine.block():
        tr = poutine.trace(model).get_trace(**data)
    sites = [
        s
        for s in tr.nodes.values()
        if s["type"] == "sample"
        and not s["infer"].get("_deterministic")
        and not site_is_subsample(s)  # a plate's own index site is no latent
    ]
    observed = [s for s in sites if s["is_observed"]]
    plate = find_plate(observed, _frames, plate_name, "pyro")
    latent = [s for s in sites if not s["is_observed"]]
    locals_, glob = split_latents(
        latent, plate, family, lambda s: [f.name for f in _frames(s)], strict_frames=True
    )
    if inputs is None:
        ids = {id(v): k for k, v in data.items() if torch.is_tensor(v)}
        keys = [ids.get(id(s["value"]), s["name"]) for s in observed]
        inputs = [k for k, s in zip(keys, observed) if plate.name in [f.name for f in _frames(s)]]
    missing = [k for k in inputs if k not in data]
    if missing:
        raise ProgramError(
            f"Encoder input(s) {missing} are not data keys; pass `inputs=` with the data "
            f"keys to encode (data keys: {sorted(data)})."
        )
    return tr, plate, locals_, glob, list(inputs)


class Amortized(nn.Module):
    r"""An encoder guide built from the program's trace: :math:`q(z_n \mid x_n)` per datum.

    .. math:: q(\theta, z_{1:N} \mid x) = q_\lambda(\theta)
        \prod_{n} q\big(z_n \mid h_\phi(x_n)\big)

    On its first call the guide traces the model on the data and finds the *data plate* (the
    plate holding every observed site), the *local* latents inside it and the observed sites
    there; an encoder (an :class:`MLP` by default, or your network, e.g. convolutional) maps
    the observations of each datum to features :math:`h`, and one :class:`PosteriorHead` per
    local latent gives its posterior. *Global* latents outside the plate get an ordinary
    autoguide (``global_guide``) in the same guide. Minibatching works as for any guide: the
    local sites sit in a plate of the model's name, so ppgen's ``N / B`` scaling applies.

    References:
        Kingma & Welling, Auto-Encoding Variational Bayes, arXiv:1312.6114.
        Rezende et al., Stochastic Backpropagation and Approximate Inference in Deep
        Generative Models, arXiv:1401.4082.

    Arguments:
        model: the program (a Pyro callable or a zoo model with ``.model``); may be bound
            later with :meth:`bind`.
        family: posterior family of every local latent, see :class:`PosteriorHead`.
        encoder: an ``nn.Module`` taking the input arrays (each ``(B, ...)``) as positional
            arguments and returning ``(B, F)`` features; default ``MLP(hidden_features)``.
        hidden_features: widths of the default MLP encoder.
        plate: name of the data plate (default: found from the observed sites).
        inputs: data keys fed to the encoder (default: the observed sites in the plate).
        global_guide: autoguide name for global latents (``"normal"``, ... or ``"flow"`` for a
            :class:`FlowGuide`).
        name: prefix of the encoder's parameters in Pyro's param store.
        head_kwargs: passed to each :class:`PosteriorHead` (``rank``, ``flow``, ...).

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, torch, ppgen
        >>> from ppgen.inference import SVI
        >>> def model(x=None):
        ...     with pyro.plate("data", x.shape[0]):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        ...         pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)
        >>> x = np.random.default_rng(0).normal(size=(50, 1))
        >>> guide = Amortized(model, hidden_features=(16,))
        >>> fit = ppgen.fit(model, {"x": x}, SVI(guide=guide, steps=20, num_draws=5))
        >>> fit.draws["z"].shape
        (1, 5, 50, 2)
    """

    def __init__(
        self,
        model: Callable | Any = None,
        family: Family = "normal",
        *,
        encoder: nn.Module | None = None,
        hidden_features: Sequence[int] = (256, 256),
        plate: str | None = None,
        inputs: Sequence[str] | None = None,
        global_guide: str = "normal",
        name: str = "amortized",
        **head_kwargs: Any,
    ):
        super().__init__()
        if family not in get_args(Family):
            raise ValueError(f"`family` must be one of {get_args(Family)}; got {family!r}.")
        object.__setattr__(self, "_model", None)  # not a submodule: the model owns its params
        if model is not None:
            self.bind(model)
        self.family, self.name = family, name
        self.encoder = encoder
        self.hidden_features = tuple(hidden_features)
        self.plate_name, self.inputs = plate, list(inputs) if inputs is not None else None
        self.global_guide_name, self.head_kwargs = global_guide, head_kwargs
        self.heads = nn.ModuleDict()
        self._flatten = False
        self.locals: dict[str, tuple[int, ...]] = {}
        self.plate: Any = None
        object.__setattr__(self, "global_guide", None)

    # ------------------------------------------------------------------ building
    def bind(self, model: Callable | Any) -> Amortized:
        """Attach the program to encode for (``Amortized()`` made without one, e.g. by SVI)."""
        fn = model.model if callable(getattr(model, "model", None)) else model
        if not callable(fn):
            raise ProgramError("`Amortized` needs the program (a callable or zoo model).")
        object.__setattr__(self, "_model", fn)
        return self

    def for_backend(self, backend: str) -> Any:
        """The guide to run on ``backend``: this one on Pyro; on NumPyro a fresh JAX twin.

        The twin, :class:`~ppgen.inference.guides._amortized_numpyro.NumPyroAmortized`, gets the
        same
        arguments (the encoder must then be a flax/equinox module or a JAX function) and is
        kept as ``self.numpyro_guide`` for ``Fit.encode``.
        """
        if backend != "numpyro":
            return self
        from ppgen.inference.guides._amortized_numpyro import NumPyroAmortized

        g = NumPyroAmortized(
            self._model,
            self.family,  # type: ignore[arg-type]
            encoder=None if self._flatten else self.encoder,
            hidden_features=self.hidden_features,
            plate=self.plate_name,
            inputs=self.inputs,
            global_guide=self.global_guide_name,
            name=self.name,
            **self.head_kwargs,
        )
        object.__setattr__(self, "numpyro_guide", g)
        return g

    def build(self, **data: Any) -> Amortized:
        """Trace the model on ``data`` and create the encoder and heads (done on first call)."""
        from ppgen.backends.pyro import ObsAsFloat

        if self._model is None:
            raise ProgramError(
                "This `Amortized` guide has no program: pass it, `Amortized(model)`, or call "
                "`.bind(model)` before fitting."
            )
        _, plate, locals_, glob, self.inputs = trace_data_plate(
            self._model, data, self.plate_name, self.family, self.inputs
        )
        self.plate = plate
        self.locals.update(locals_)
        if self.encoder is None:
            self._flatten = True
            width = sum(int(data[k][0].numel()) for k in self.inputs)
            self.encoder = MLP(width, self.hidden_features)
        with torch.no_grad():
            feats = self.encoder(*self._encoder_inputs(data))
        if feats.dim() != 2 or feats.shape[0] != plate.size:
            raise ProgramError(
                f"The encoder must return features of shape ({plate.size}, F); got "
                f"{tuple(feats.shape)}."
            )
        for n, shape in self.locals.items():
            d = int(torch.Size(shape).numel()) if shape else 1
            self.heads[n] = PosteriorHead(feats.shape[1], d, self.family, **self.head_kwargs)
        self.to(feats.device)
        if glob:
            from ppgen.inference.guides.auto import make_guide

            blocked = poutine.block(ObsAsFloat()(self._model), hide=list(self.locals))
            if self.global_guide_name == "flow":
                g: Any = FlowGuide(blocked)
            else:
                g = make_guide(self.global_guide_name, blocked, "pyro")
            object.__setattr__(self, "global_guide", g)
        return self

    def _encoder_inputs(self, data: Mapping[str, Any]) -> list[Tensor]:
        xs = [data[k] for k in self.inputs]
        return [x.reshape(x.shape[0], -1) for x in xs] if self._flatten else xs

    # ------------------------------------------------------------------ the guide
    def encode(self, **data: Any) -> dict[str, dist.TorchDistribution]:
        """The posterior of each local latent for the data, ``{site: q(z | x)}`` (no sampling)."""
        if self.plate is None:
            self.build(**data)
        h = self.encoder(*self._encoder_inputs(data))
        out = {}
        for n, shape in self.locals.items():
            q = self.heads[n](h)
            if shape != (q.event_shape[-1],):
                base = q.base_dist if isinstance(q, dist.Independent) else q
                loc, scale = base.loc.reshape(-1, *shape), base.scale.reshape(-1, *shape)
                q = dist.Normal(loc, scale).to_event(len(shape))
            out[n] = q
        return out

    def reparam_draws(self, num_particles: int, **data: Any) -> tuple[dict, Tensor] | None:
        """Reparameterised draws of every local latent and their :math:`\\log q` per datum.

        A capability (:mod:`ppgen.capabilities`): SVI's ``trace`` objective then needs no
        guide pass. The noise is drawn as ``q.rsample`` draws it, so the numbers are those of
        the guide program. ``None`` (run the guide) when global latents need their autoguide.
        """
        if self.plate is None:
            self.build(**data)
        if self.global_guide is not None:
            return None
        lead = (num_particles,) if num_particles > 1 else ()
        values, log_q = {}, 0.0
        for name, q in self.encode(**data).items():
            base = q.base_dist if isinstance(q, dist.Independent) else q
            if isinstance(base, dist.Normal):  # closed form: no second pass through loc, scale
                loc, sd = base.loc, base.scale
                eps = torch.empty(lead + loc.shape, dtype=loc.dtype, device=loc.device).normal_()
                values[name] = loc + eps * sd
                lq = -0.5 * eps * eps - sd.log() - 0.5 * math.log(2 * math.pi)
                log_q = log_q + lq.reshape(lq.shape[: len(lead) + 1] + (-1,)).sum(-1)
            else:
                values[name] = z = q.rsample(lead)
                log_q = log_q + q.log_prob(z)
        return values, log_q

    def forward(self, **data: Any) -> dict[str, Tensor]:
        if self.plate is None:
            self.build(**data)
        out: dict[str, Tensor] = {}
        if self.global_guide is not None:
            out.update(self.global_guide(**data))
        register_module(self.name, self)
        qs = self.encode(**data)
        n = next(iter(qs.values())).batch_shape[0]
        with pyro.plate(self.plate.name, n, dim=self.plate.dim):
            for name, q in qs.items():
                out[name] = pyro.sample(name, q)
        return out
