"""Implicit amortised guides: an encoder of data and noise, ``z = g(x, eps)``, with no density."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import biject_to
from torch.distributions.transforms import ComposeTransform

from ppgen.errors import ProgramError, check_int
from ppgen.inference.guides.amortized import trace_data_plate
from ppgen.nn import MLP, register_module

__all__ = ["ImplicitAmortized", "LatentLayout", "global_latents_error"]


class LatentLayout:
    """Latent sites as one flat unconstrained vector per draw (and per datum, for local ones).

    ``batch_dims`` leading axes of each site's traced value are batch axes (1 for per-datum
    latents in a data plate, 0 for global ones); the rest is the site's own shape.
    ``split(u)`` turns ``(..., D)`` into ``{site: (..., *shape)}``; ``constrain(parts)`` maps
    them to each site's support (``biject_to``) and returns the values and
    :math:`\\log |\\det J|` summed over each draw's (datum's) numbers; ``flatten(values)`` is
    the inverse of both.

    Example: a positive scale and a 2-vector make a 3-dimensional unconstrained space.

        >>> import pyro.poutine as poutine
        >>> def model():
        ...     pyro.sample("s", dist.HalfNormal(1.0))
        ...     pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        >>> lay = LatentLayout(poutine.trace(model).get_trace(), ["s", "w"])
        >>> lay.dim
        3
        >>> values, ldj = lay.constrain(lay.split(torch.zeros(4, 3)))
        >>> values["s"].shape, values["w"].shape, ldj.shape  # exp(0) = 1, log|J| = 0
        (torch.Size([4]), torch.Size([4, 2]), torch.Size([4]))
        >>> bool((lay.flatten(values) == 0).all())
        True
    """

    def __init__(self, trace: Any, latents: Sequence[str], batch_dims: int = 0) -> None:
        self.names = list(latents)
        self.transforms: dict[str, Any] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.sizes: list[int] = []
        for n in self.names:
            site = trace.nodes[n]
            t = biject_to(site["fn"].support)
            u = t.inv(site["value"])
            self.transforms[n], self.shapes[n] = t, tuple(u.shape[batch_dims:])
            self.sizes.append(max(int(torch.Size(self.shapes[n]).numel()), 1))
        self.dim = sum(self.sizes)
        #: sites on the real line: their values are the draws and their log|J| is zero
        self.identity = {n: _is_identity(self.transforms[n]) for n in self.names}

    def split(self, u: Tensor) -> dict[str, Tensor]:
        lead = u.shape[:-1]
        parts = torch.split(u, self.sizes, dim=-1)
        return {n: p.reshape(lead + self.shapes[n]) for n, p in zip(self.names, parts, strict=True)}

    def constrain(self, parts: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        values, ldj = {}, 0.0
        for n in self.names:
            u, t = parts[n], self.transforms[n]
            if self.identity[n]:  # z = u, log|J| = 0: nothing to compute
                values[n] = u
                continue
            z = t(u)
            values[n] = z
            j = t.log_abs_det_jacobian(u, z)
            lead = u.dim() - len(self.shapes[n])  # the draws' (and data's) axes
            ldj = ldj + j.reshape(j.shape[:lead] + (-1,)).sum(-1) if j.dim() > lead else ldj + j
        if not isinstance(ldj, Tensor):  # every site on the real line: zeros, one per draw
            u = parts[self.names[0]]
            ldj = u.new_zeros(u.shape[: u.dim() - len(self.shapes[self.names[0]])])
        return values, ldj

    def flatten(self, values: Mapping[str, Tensor]) -> Tensor:
        """Constrained values ``{site: (..., *shape)}`` back to one ``(..., D)`` vector."""
        parts = []
        for n in self.names:
            u = self.transforms[n].inv(values[n])
            lead = u.shape[: u.dim() - len(self.shapes[n])]
            parts.append(u.reshape(lead + (-1,)))
        return torch.cat(parts, -1)


def _is_identity(t: Any) -> bool:
    """Whether ``t`` is the identity (``biject_to(real)``: a composition of no transforms)."""
    return isinstance(t, ComposeTransform) and not t.parts


def global_latents_error(plate: str, names: Sequence[str]) -> ProgramError:
    """What both backends say of a global latent beside an implicit encoder's local ones."""
    return ProgramError(
        f"`ImplicitAmortized` encodes per-datum latents (in the data plate `{plate}`); the "
        f"latent sites {list(names)} are global. Fit the program with `AVB()` without a guide "
        "(one implicit posterior over all latents jointly), or with SVI and an `Amortized` "
        "guide (which gives global latents an autoguide)."
    )


class _NoiseMLP(nn.Module):
    """The default encoder: ``[x_1, ..., x_m, eps]`` flattened and side by side, an MLP, then
    one ``Linear`` to the latents' unconstrained size."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int) -> None:
        super().__init__()
        self.body = MLP(in_features, hidden)
        self.head = nn.Linear(hidden[-1] if hidden else in_features, out_features)

    def forward(self, *inputs: Tensor) -> Tensor:
        n = inputs[0].shape[0]
        return self.head(self.body(torch.cat([x.reshape(n, -1) for x in inputs], -1)))


class ImplicitAmortized(nn.Module):
    r"""An implicit encoder guide: :math:`z_n = g_\phi(x_n, \varepsilon_n)`,
    :math:`\varepsilon_n \sim N(0, I)`, for every per-datum latent of a Pyro program.

    Beside :class:`~ppgen.inference.guides.Amortized` (an encoder giving each datum a
    *density* :math:`q(z_n \mid x_n)`), this encoder is a sampler: noise goes *in* with the
    datum, so :math:`q(z_n \mid x_n)` can take any shape (skewed, correlated, multimodal) and
    has no density. :class:`~ppgen.inference.AVB` fits it, a discriminator
    :math:`T(x, z)` standing in for the missing :math:`\log q`.

    On its first call (or :meth:`build`) it traces the model on the data and finds the data
    plate (the plate holding every observed site) and the latents in it; every latent of the
    program must sit there (global latents: use ``AVB()`` without a guide, whose implicit
    posterior covers all latents jointly). The encoder's output is one unconstrained vector
    per datum, mapped to each site's support by ``biject_to``.

    A Pyro fit trains this object's network in place (as Pyro trains a guide's parameters):
    pass a fresh guide for a fresh run. On a NumPyro program AVB builds the default encoder
    from this guide's settings instead (the object is left as it is; a torch
    ``encoder=`` is refused there). As a Pyro guide (``guide(**data)``) it registers its
    network with ``pyro.module`` and samples each local site as a ``Delta`` at the encoder's
    draw, so it also serves as the stochastic encoder of :class:`~ppgen.inference.ALI` or in
    ``pyro.infer.Predictive``.

    Arguments:
        model: the program (a Pyro callable or zoo model with ``.model``); may be bound later
            with :meth:`bind` (AVB binds it).
        encoder: an ``nn.Module`` called ``encoder(*inputs, eps)``, the data arrays (each
            ``(B, ...)``) and the noise ``(B, noise_dim)``, returning ``(B, D)`` with ``D``
            the local latents' unconstrained numbers per datum. Default: an MLP over the
            flattened inputs and the noise side by side (ReLU, widths ``hidden_features``)
            and a linear output layer.
        noise_dim: size of :math:`\varepsilon` per datum (default ``max(D, 16)``).
        hidden_features: widths of the default encoder.
        plate: name of the data plate (default: found from the observed sites).
        inputs: data keys fed to the encoder (default: the observed sites in the plate).
        name: the network's name in Pyro's param store (when run as a Pyro guide).

    Example: a 2-D code per datum from a 3-D observation.

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(x=None):
        ...     with pyro.plate("data", x.shape[0]):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        ...         pyro.sample("x", dist.Normal(z @ torch.ones(2, 3), 1.0).to_event(1), obs=x)
        >>> guide = ImplicitAmortized(model, hidden_features=(16,))
        >>> x = torch.zeros(5, 3)
        >>> guide.sample(4, x=x)["z"].shape  # four draws of each datum's code
        torch.Size([4, 5, 2])
        >>> guide(x=x)["z"].shape  # as a Pyro guide: one draw, a Delta site per latent
        torch.Size([5, 2])
    """

    def __init__(
        self,
        model: Callable | Any = None,
        *,
        encoder: nn.Module | None = None,
        noise_dim: int | None = None,
        hidden_features: Sequence[int] = (256, 256),
        plate: str | None = None,
        inputs: Sequence[str] | None = None,
        name: str = "implicit",
    ) -> None:
        super().__init__()
        object.__setattr__(self, "_model", None)  # not a submodule: the model owns its params
        if model is not None:
            self.bind(model)
        self.encoder = encoder
        self.default_encoder = encoder is None
        self.noise_dim = None if noise_dim is None else check_int("noise_dim", noise_dim, 1)
        self.hidden_features = tuple(check_int("hidden_features", h, 1) for h in hidden_features)
        self.plate_name, self.name = plate, name
        self.inputs = list(inputs) if inputs is not None else None
        self.plate: Any = None
        self.locals: dict[str, tuple[int, ...]] = {}
        object.__setattr__(self, "layout", None)

    # ------------------------------------------------------------------ building
    def bind(self, model: Callable | Any) -> ImplicitAmortized:
        """Attach the program to encode for."""
        fn = model.model if callable(getattr(model, "model", None)) else model
        if not callable(fn):
            raise ProgramError("`ImplicitAmortized` needs the program (a callable or zoo model).")
        object.__setattr__(self, "_model", fn)
        return self

    @property
    def built(self) -> bool:
        return self.plate is not None

    def build(self, **data: Any) -> ImplicitAmortized:
        """Trace the model on ``data``; find the data plate and its latents; make the encoder
        (done on first call). Every problem is a :class:`~ppgen.errors.ProgramError`."""
        if self._model is None:
            raise ProgramError(
                "This `ImplicitAmortized` guide has no program: pass it, "
                "`ImplicitAmortized(model)`, or call `.bind(model)` before fitting."
            )
        tr, plate, locals_, glob, inputs = trace_data_plate(
            self._model, data, self.plate_name, "normal", self.inputs
        )
        if glob:
            raise global_latents_error(plate.name, [s["name"] for s in glob])
        self.inputs = inputs
        layout = LatentLayout(tr, list(locals_), batch_dims=1)
        noise = self.noise_dim if self.noise_dim is not None else max(layout.dim, 16)
        xs = [data[k] for k in self.inputs]
        if self.encoder is None:
            width = sum(int(x[0].numel()) for x in xs) + noise
            self.encoder = _NoiseMLP(width, self.hidden_features, layout.dim)
        self.to(xs[0].device)
        eps = torch.zeros(plate.size, noise, device=xs[0].device)
        with torch.no_grad():
            try:
                out = self.encoder(*xs, eps)
            except Exception as e:
                raise ProgramError(
                    f"The encoder fails on the data and noise ({type(e).__name__}: {e}); it "
                    f"is called `encoder(*inputs, eps)` with inputs {self.inputs} (each "
                    f"(B, ...)) and eps of shape (B, {noise})."
                ) from e
        if tuple(out.shape) != (plate.size, layout.dim):
            raise ProgramError(
                f"The encoder must return ({plate.size}, {layout.dim}) for {plate.size} data "
                f"(one unconstrained number per latent value of each datum: "
                + ", ".join(f"`{n}` {layout.shapes[n]}" for n in layout.names)
                + f"); got {tuple(out.shape)}."
            )
        self.plate, self.noise_dim = plate, noise
        self.locals = locals_
        object.__setattr__(self, "layout", layout)
        return self

    # ------------------------------------------------------------------ drawing
    def features(self, data: Mapping[str, Any]) -> Tensor:
        """The encoder's inputs flattened side by side, ``(B, F)`` (what a critic sees of x)."""
        xs = [data[k] for k in self.inputs]
        n = xs[0].shape[0]
        return torch.cat([x.reshape(n, -1).to(torch.get_default_dtype()) for x in xs], -1)

    def draw(
        self, num_particles: int, data: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> Tensor:
        """``num_particles`` draws of every datum's latents, unconstrained: ``(K, B, D)``."""
        if not self.built:
            self.build(**data)
        xs = [data[k] for k in self.inputs]
        b, k = xs[0].shape[0], num_particles
        eps = torch.randn(k * b, self.noise_dim, generator=generator, device=xs[0].device)
        rep = [x.expand(k, *x.shape).reshape(k * b, *x.shape[1:]) for x in xs]
        return self.encoder(*rep, eps).reshape(k, b, -1)

    def sample(
        self, num_particles: int, generator: torch.Generator | None = None, **data: Any
    ) -> dict[str, Tensor]:
        """``{site: (K, B, *shape)}``: draws of each local latent, on its support."""
        u = self.draw(num_particles, data, generator)  # builds the guide on first use
        values, _ = self.layout.constrain(self.layout.split(u))
        return values

    def forward(self, **data: Any) -> dict[str, Tensor]:
        if not self.built:
            self.build(**data)
        register_module(self.name, self)
        values = self.sample(1, **data)
        n = next(iter(values.values())).shape[1]
        out = {}
        with pyro.plate(self.plate.name, n, dim=self.plate.dim):
            for name, v in values.items():
                out[name] = pyro.sample(name, dist.Delta(v[0], event_dim=len(self.locals[name])))
        return out
