"""The backend interface: everything that differs between Pyro (torch) and NumPyro (JAX)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Plate:
    """A plate a site sits in: ``name``, full ``size`` and batch ``dim`` (negative);
    ``subsample_size`` when the program itself subsamples the plate (``None``: all of it)."""

    name: str
    size: int
    dim: int
    subsample_size: int | None = None


@dataclass
class Site:
    """What one trace tells about a site of the program.

    ``kind`` is ``"observed"``, ``"latent"``, ``"param"`` or ``"deterministic"``.
    ``value`` is the traced value (native array), ``fn`` the distribution (sample sites).
    ``density`` is ``"explicit"``, ``"implicit"`` or ``"energy"`` (``ppgen.distributions``).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    batch_shape: tuple[int, ...] = ()
    event_shape: tuple[int, ...] = ()
    dist: str = ""
    support: str = ""
    discrete: bool = False
    enumerate: str | None = None
    plates: tuple[Plate, ...] = ()
    fn: Any = field(default=None, repr=False)
    value: Any = field(default=None, repr=False)
    infer: dict = field(default_factory=dict, repr=False)
    density: str = "explicit"

    @property
    def event_dim(self) -> int:
        return len(self.event_shape)


class ScaleBox:
    """The minibatch weight ``N / B`` of the sites in plate ``name``, shared by the model's
    and the guide's wrappers: ``box(fn)`` wraps a program (see :meth:`BackendOps.scale_box`)."""

    def __init__(self, name: str, wrap: Callable[[Callable, ScaleBox], Callable]) -> None:
        self.name, self.scale, self._wrap = name, 1.0, wrap

    def __call__(self, fn: Callable) -> Callable:
        return self._wrap(fn, self)


class BackendOps(ABC):
    """Operations ppgen needs from a PPL backend. One instance per backend."""

    name: str

    @abstractmethod
    def native(self, data: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
        """Convert numpy / python values to the backend's arrays on ``device``.

        A value the backend's dtype cannot hold (finite float64 beyond float32, int64 beyond
        int32 on JAX without 64-bit mode) is converted anyway and recorded; :meth:`trace`
        refuses it, naming the site it feeds.
        """

    @abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray:
        """Convert a backend array to numpy (on the host)."""

    @abstractmethod
    def trace(self, fn: Callable, kwargs: Mapping[str, Any], seed: int = 0) -> list[Site]:
        """Run ``fn(**kwargs)`` once under a trace and return its sites in execution order.

        Draws come from ``seed`` (the global RNG is left alone). Raises
        :class:`~ppgen.errors.DataError` for data :meth:`native` could not convert exactly
        (naming the observed site) or empty data the program cannot run on (naming the key),
        and :class:`~ppgen.errors.ProgramError` naming a site whose distribution parameter or
        ``factor`` is invalid (NaN) on the data.
        """

    @abstractmethod
    def support_violations(self, site: Site) -> np.ndarray:
        """Boolean numpy mask of the entries of an observed site's value outside its support."""

    @abstractmethod
    def predictive(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        *,
        samples: Mapping[str, np.ndarray] | None = None,
        num_samples: int | None = None,
        guide: Callable | None = None,
        return_sites: list[str] | None = None,
        uncondition: bool = True,
        seed: int = 0,
        max_plate_nesting: int = 0,
    ) -> dict[str, np.ndarray]:
        """Sample sites of ``fn`` with latents fixed to ``samples`` (flat, leading axis S)."""

    @abstractmethod
    def log_likelihood(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        samples: Mapping[str, np.ndarray],
        shapes: Mapping[str, tuple[int, ...]],
        max_plate_nesting: int = 0,
    ) -> dict[str, np.ndarray]:
        """Pointwise log-density of each site in ``shapes`` (name -> batch shape) per sample.

        Returns ``{site: array (S, *batch_shape)}`` (a ``ppgen.backends._pointwise.
        LogLikelihood``, whose ``units`` say what each variable's entries are); event dims are
        summed by the distribution, masked-out elements are 0. Enumerated discrete latents are
        summed out exactly; observed sites they link (an HMM's emissions, a ``scan`` site)
        come back as ONE variable named after the first of them, shaped by the plates they
        share (one entry per sequence). What cannot be computed exactly is refused with
        :class:`~ppgen.errors.CapabilityError` before anything is computed.
        """

    @abstractmethod
    def local_log_weights(
        self,
        model: Callable,
        guide: Callable,
        kwargs: Mapping[str, Any],
        *,
        plate: str,
        num_particles: int,
        seed: int = 0,
        max_values: int = 2**24,
    ) -> np.ndarray:
        r"""Per-datum log importance weights of a guide whose latents are all local.

        .. math:: \log w_{ik} = \log p(x_i, z_{ik}) - \log q(z_{ik} \mid x_i), \qquad
           z_{ik} \sim q(\cdot \mid x_i), \quad k = 1, \dots, K

        :math:`\log p(x_i, z_{ik})` sums the log-densities of every sample site of the model
        (observed and latent) over the batch dims of datum ``i`` (the entries of ``plate``),
        :math:`\log q` those of every sample site of the guide; masked-out elements are 0 and
        ``scale`` is not applied (the density itself, not a training weight).
        :math:`\frac1{NK}\sum_{ik} \log w_{ik}` estimates the ELBO per datum and
        :math:`\frac1N\sum_i \log \frac1K \sum_k w_{ik}` the IWAE bound (Burda et al. 2016).

        The particles are drawn at once in an outer plate at dim ``-(nesting + 1)`` (the
        deepest batch dim any site uses), in chunks of about ``max_values`` values; a program
        that does not broadcast over that plate is run particle by particle (NumPyro:
        ``jax.vmap`` first). Draws are seeded with ``seed`` (Pyro's global RNG is left as it
        was).

        Arguments:
            model: The program with its parameters in place (``Fit.model_callable()``).
            guide: The guide with its parameters in place (``Fit.guide_callable()``).
            kwargs: The programs' arguments, data included (native arrays).
            plate: The data plate's name: every sample site must sit in it.
            num_particles: ``K``.
            seed: The seed of the draws.
            max_values: About how many values one chunk of particles may hold.

        Returns:
            A float64 array ``(K, N)``, ``N`` the size of ``plate``.

        Raises:
            CapabilityError: a sample site of the model or of the guide outside ``plate``
                (a global latent), a model latent the guide does not draw, enumerated sites
                or a guide of point masses (``Delta``), naming the sites.
        """

    def autoguide_name(self, guide: Any) -> str | None:
        """The class name of ``guide`` when it is one of the backend's autoguides (its local
        factors, if any, are one set of parameters per training datum: not amortised), seen
        through wrappers and handlers; ``None`` for any other guide."""
        return None

    def scale_box(self, name: str) -> ScaleBox:
        """Minibatch scaling of plate ``name``: sites in it are weighted ``box.scale`` (set it to
        ``N / B`` before each step), exactly what a subsampled plate does."""
        return ScaleBox(name, self.scale_sites)

    @abstractmethod
    def scale_sites(self, fn: Callable, box: ScaleBox) -> Callable:
        """``fn`` with every sample site inside plate ``box.name`` weighted by ``box.scale``."""

    @abstractmethod
    def bind_params(self, model: Callable, params: Mapping[str, Any], param_state: Any) -> Callable:
        """``model`` with a fit's parameters in place: ``params`` (constrained numpy values) or
        the backend's raw ``param_state`` (Pyro: activated in the param store)."""

    # -- differentiable operations (native arrays in and out; never numpy) ---------------------

    @abstractmethod
    def log_joint(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        values: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        r"""The program's log joint density at given latent values, differentiably.

        .. math:: \log p(x, z) = \sum_{\text{sites } s} \sum_i m_{s,i}\, c_s \log p(v_{s,i}
           \mid \text{parents})

        summed over every sample site, observed (``x``, from ``kwargs``) and latent (``z``,
        from ``values``), with each site's plate/``scale`` factor ``c_s`` and ``mask`` ``m``
        applied as Pyro's ``Trace.log_prob_sum`` does.

        Arguments:
            fn: The program (a Pyro or NumPyro callable).
            kwargs: Its keyword arguments, data included (native arrays, e.g. from :meth:`native`).
            values: Site name -> native array, in the constrained space, for **every** latent
                site; a latent without a value raises :class:`~ppgen.errors.ProgramError`
                naming it (it is never sampled).
            params: Values for ``param`` sites (constrained). Pyro: ``None`` uses the live
                param store, a dict substitutes those sites. NumPyro: ``None`` uses each
                ``numpyro.param``'s initial value; pass ``svi.get_params(state)``-style dicts.

        Returns:
            A scalar: a torch tensor with a graph to ``values`` and the param store (Pyro), or a
            JAX array, pure in ``values`` and ``params`` for ``jax.grad``/``jit`` (NumPyro).

        Example:
            >>> import pyro, pyro.distributions as dist
            >>> from ppgen.backends import get_backend
            >>> def model(x=None):
            ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
            ...     pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
            >>> mu = torch.tensor(0.5, requires_grad=True)
            >>> lp = get_backend("pyro").log_joint(model, {"x": torch.tensor(1.0)}, {"mu": mu})
            >>> round(lp.item(), 4), torch.autograd.grad(lp, mu)[0].item()  # d/dmu = x - 2 mu
            (-2.0879, 0.0)
        """

    @abstractmethod
    def simulate(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        values: Mapping[str, Any] | None = None,
        *,
        sites: list[str] | None = None,
        seed: int | None = None,
        rng_key: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        r"""Run the program forward with its observed sites **simulated**, differentiably.

        .. math:: z \sim p(z)\ (\text{or } z = \text{values}),\qquad x \sim p(x \mid z)

        Every observed site ignores its ``obs=`` and is drawn; latents are drawn from the
        prior unless fixed by ``values``. Draws are reparameterised where the distribution has
        ``rsample`` (``Normal``, ``Delta``, flows...), so gradients reach the program's
        parameters: ``x = G(z)`` with ``z ~ N(0, I)`` is a GAN generator step.
        ``pyro.deterministic``/``numpyro.deterministic`` sites keep their computed value.

        Arguments:
            fn: The program.
            kwargs: Its keyword arguments; observed values in them are ignored.
            values: Site name -> native array fixing those sites (latents) instead of drawing.
            sites: Names to return (default: every sample and deterministic site).
            seed: Pyro: draw from torch's RNG seeded with ``seed`` and restore the global RNG
                state afterwards (``None``: the global RNG, advanced). NumPyro: the same as
                ``rng_key=jax.random.PRNGKey(seed)``.
            rng_key: NumPyro's key (one of ``rng_key``/``seed`` is required); not on Pyro.
            params: Values for ``param`` sites, as in :meth:`log_joint`.

        Returns:
            ``{site: native array}``: torch tensors carrying gradients (Pyro), or JAX arrays
            pure in ``params``/``values``/``rng_key`` (NumPyro).

        Example:
            >>> import pyro, pyro.distributions as dist
            >>> from ppgen.backends import get_backend
            >>> def gen(x=None):
            ...     b = pyro.param("b", torch.tensor(3.0))
            ...     with pyro.plate("data", 1000):
            ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
            ...         pyro.sample("x", dist.Delta(2.0 * z + b), obs=x)
            >>> out = get_backend("pyro").simulate(gen, {"x": torch.zeros(1000)}, seed=0)
            >>> out["x"].mean().backward()
            >>> round(pyro.param("b").grad.item(), 4)  # d mean(x) / db
            1.0
        """

    def simulator(self, fn: Callable, sites: list[str]) -> Callable[..., dict[str, Any]]:
        """:meth:`simulate` of ``sites`` as a function called once per training step.

        ``simulator(fn, sites)(kwargs, **options)`` returns what
        ``simulate(fn, kwargs, sites=sites, **options)`` returns; the first call checks the
        site names, later calls may skip the checks and the full trace (Pyro: one small
        handler that draws the observed sites afresh and keeps the values of ``sites``).

        Example:
            >>> import pyro, pyro.distributions as dist
            >>> from ppgen.backends import get_backend
            >>> def gen(x=None):
            ...     with pyro.plate("data", 3):
            ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
            ...         pyro.sample("x", dist.Delta(z + 10.0), obs=x)
            >>> sim = get_backend("pyro").simulator(gen, ["x", "z"])
            >>> out = sim({"x": torch.zeros(3)})
            >>> bool(torch.allclose(out["x"], out["z"] + 10.0))
            True
        """
        return lambda kwargs, **options: self.simulate(fn, kwargs, sites=sites, **options)

    @abstractmethod
    def score(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        site: str,
        params: Mapping[str, Any] | None = None,
        *,
        values: Mapping[str, Any] | None = None,
        seed: int | None = 0,
        rng_key: Any = None,
    ) -> Any:
        r"""The data score :math:`\nabla_x \log p(x \mid z)` of an observed site at its value.

        For an explicit density this is :math:`\nabla_x` of the site's ``log_prob``; for an
        energy model (``log_prob = -E(x)``, as ``ppgen.distributions.Unnormalized``) it is
        :math:`-\nabla_x E(x)` by the same code. Latents and parameters stay at their traced
        values: latents from ``values``, any others drawn once from the prior (``seed``).
        The site's ``log_prob`` is used as is: plate ``scale`` and ``poutine.mask`` are not
        applied (they weight a loss, not the density).

        Arguments:
            fn: The program.
            kwargs: Its keyword arguments; the observed value of ``site`` comes from them.
            site: The name of an observed, continuous sample site.
            params: Values for ``param`` sites, as in :meth:`log_joint`.
            values: Latent site name -> native array to hold fixed.
            seed: Seed for drawing latents not in ``values`` (Pyro: the global RNG state is
                restored; ``None`` uses the global RNG).
            rng_key: NumPyro only: a key for those draws, instead of ``seed``.

        Returns:
            An array of the value's shape. Pyro computes it with
            ``torch.autograd.grad(..., create_graph=True)``, so a score-matching loss can
            differentiate through it (w.r.t. parameters, or ``x`` again for the Hessian trace);
            NumPyro returns ``jax.grad`` of a function of ``x``, pure in ``params``.

        Example:
            >>> import pyro, pyro.distributions as dist
            >>> from ppgen.backends import get_backend
            >>> def model(x=None):
            ...     pyro.sample("x", dist.Normal(1.0, 2.0).expand([2]).to_event(1), obs=x)
            >>> get_backend("pyro").score(model, {"x": torch.tensor([3.0, -1.0])}, "x").tolist()
            [-0.5, 0.5]
        """

    @abstractmethod
    def module_params(
        self, prefix: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The parameters of one module (or group), by name, for an optimiser.

        A name belongs to ``prefix`` when it equals it or continues it after a separator
        (``$ . / _``), so ``"enc"`` selects ``enc$$$weight`` but not ``encoder$$$weight``
        (see :func:`ppgen.backends._checks.matches_prefix`). Naming on each backend:

        * Pyro: ``pyro.module("enc", m)`` registers ``enc$$$<param path>`` (``enc$$$0.weight``
          for a ``Sequential``); ``pyro.param("enc_scale")`` is itself a name.
        * NumPyro: ``flax_module``/``nnx_module``/``eqx_module("enc", ...)`` store the whole
          parameter pytree under one entry ``enc$params`` (mutable state under ``enc$state``);
          ``random_*_module`` parameters are sample sites ``enc/<path>``, not params.

        Arguments:
            prefix: Module name or name prefix; ``None`` selects every parameter.
            params: A flat dict name -> value to filter. Pyro: ``None`` reads the global param
                store. NumPyro: required (e.g. ``svi.get_params(state)``).

        Returns:
            ``{name: value}`` in the store's order. Pyro: the store's **unconstrained leaf
            tensors** (``named_parameters()``), the very objects a torch optimiser must update
            (an in-place step changes what ``pyro.param`` returns). NumPyro: the entries of
            ``params`` as given. A ``prefix`` that matches nothing raises
            :class:`~ppgen.errors.ProgramError` listing the modules there are.

        Example:
            >>> import pyro
            >>> from ppgen.backends import get_backend
            >>> _ = pyro.module("enc", torch.nn.Linear(2, 3))
            >>> _ = pyro.module("dec", torch.nn.Linear(3, 2))
            >>> sorted(get_backend("pyro").module_params("enc"))
            ['enc$$$bias', 'enc$$$weight']
        """

    def seed_everything(self, seed: int) -> None:  # noqa: B027 - optional hook
        """Seed the backend's global RNGs (Pyro: torch/numpy/random)."""
