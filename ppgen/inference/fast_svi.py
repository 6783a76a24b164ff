"""Fast SVI engines for reparameterised Pyro programs: the lean handler ELBO and a direct torch
path for the standard VAE shape, with one fused optimiser over the param store."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import pyro
import torch
from torch import Tensor

from ppgen.errors import EstimatorError
from ppgen.inference._base import FitContext
from ppgen.inference.objectives.reparam import NotReparameterized, ReparamELBO
from ppgen.inference.svi import SVI, _PyroEngine
from ppgen.nn import _STATE

__all__ = ["FastSVI", "lean_engine"]


class FastSVI(SVI):
    r"""SVI with the lean engine for reparameterised Pyro programs (the VAE path).

    The same estimator as :class:`~ppgen.inference.SVI` (a saved run reloads as ``SVI``), but
    for Pyro programs whose guide is reparameterisable and whose objective is ``"trace"``,
    ``"meanfield"``, ``"renyi"``, ``"iwae"`` or a :class:`ReparamELBO`, each step is one guide
    pass and one model pass under :class:`ReparamELBO` (no trace objects, no per-step validation
    of distribution arguments — the data were validated before the fit) and one
    fused optimiser step over every parameter. A zoo :class:`~ppgen.models.vae.VAE` with its
    own diagonal-Normal guide is recognised as the standard VAE shape and evaluated with torch
    alone (``fast="auto"``; ``fast="lean"`` keeps the handler path). Other programs and
    objectives run Pyro's own SVI, so ``FastSVI`` is always a drop-in for ``SVI``.
    ``fit.diagnostics["engine"]`` says which path ran (``"direct"``, ``"lean"`` or ``"pyro"``).
    ``FastSVI(...)`` is ``SVI(..., engine="lean")``; plain ``SVI()`` (``engine="auto"``) already
    takes the direct path for the standard VAE shape.

    Arguments:
        fast: ``"auto"`` (direct torch ELBO when the shape is detected) or ``"lean"``.
        others: as :class:`~ppgen.inference.SVI`.

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.models.vae import VAE
        >>> x = (np.random.default_rng(0).random((64, 6)) > 0.5).astype(float)
        >>> fit = ppgen.fit(VAE(6, 2, hidden_features=(16,)), {"x": x},
        ...                 FastSVI(steps=20, batch_size=16, num_draws=2))
        >>> fit.diagnostics["engine"]
        'direct'
    """

    def __init__(self, *args: Any, fast: Literal["auto", "lean"] = "auto", **kwargs: Any):
        kwargs.setdefault("engine", "lean")
        super().__init__(*args, **kwargs)
        if fast not in ("auto", "lean"):
            raise EstimatorError(f"`fast` must be 'auto' or 'lean'; got {fast!r}.")
        self.fast = fast


def lean_engine(est: SVI, ctx: FitContext, direct_only: bool = False) -> _PyroEngine | None:
    """The lean engine for a Pyro program, or ``None`` where it does not apply.

    With ``direct_only`` (``SVI(engine="auto")``) only the standard VAE shape qualifies, the
    torch-only path whose numbers equal Pyro's; other programs keep Pyro's ``SVI.step``.
    """
    if ctx.program.backend != "pyro":
        return None
    if direct_only and not _Direct.applies(est, ctx):
        return None
    try:
        return _LeanEngine(est, ctx)
    except NotReparameterized:
        return None


_LEAN_OBJECTIVES = ("trace", "meanfield", "renyi", "iwae")
_TORCH_OPTIMS = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


class _Direct:
    r"""The standard VAE shape evaluated with torch alone (no handlers, no distributions' checks).

    Used when the program is a zoo :class:`~ppgen.models.vae.VAE` with its own guide and a
    diagonal-Normal posterior: :math:`z = \mu + \sigma \epsilon` with the noise drawn
    exactly as ``Normal.rsample`` draws it, :math:`\log q = -\epsilon^2/2 - \log\sigma - c`,
    :math:`\log p(z) = -z^2/2 - c` (or the analytic KL for ``meanfield``) and
    :math:`\log p(x \mid z)` from the model's own observation distribution, so the
    numbers are those of the program under Pyro's objectives.
    """

    def __init__(self, vae: Any, key: str, elbo: ReparamELBO) -> None:
        self.vae, self.key, self.elbo = vae, key, elbo

    @staticmethod
    def _key(est: SVI, ctx: FitContext) -> str | None:
        """The data key of ``x`` when the program is the standard VAE shape, else ``None``."""
        from ppgen.models.vae import VAE

        obj = ctx.program.obj
        info = ctx.info
        if not isinstance(obj, VAE) or obj.family != "normal":
            return None
        if ctx.program.guide is None or est._guide_spec(ctx) is not ctx.program.guide:
            return None  # another guide (an autoguide, MLE's AutoDelta...) was asked for
        if type(obj).model is not VAE.model or type(obj).guide is not VAE.guide:
            return None
        if sorted(info.latent) != ["z"] or info.observed != ["x"]:
            return None
        if not _torch_optim(est):
            return None
        if not isinstance(est.elbo, ReparamELBO) and str(est.elbo).lower() not in _LEAN_OBJECTIVES:
            return None
        return next((k for k, v in info.obs_keys.items() if v == "x"), None)

    @classmethod
    def applies(cls, est: SVI, ctx: FitContext) -> bool:
        """Whether the program is the standard VAE shape, or a zoo density, evaluated directly."""
        return cls._key(est, ctx) is not None or _DirectDensity.detect(est, ctx) is not None

    @classmethod
    def detect(cls, est: SVI, ctx: FitContext, elbo: ReparamELBO) -> _Direct | None:
        key = cls._key(est, ctx)
        return None if key is None else cls(ctx.program.obj, key, elbo)

    def loss(self, data: Mapping[str, Any], scale: float) -> Tensor:
        x = data[self.key]
        vae, elbo = self.vae, self.elbo
        q = vae.posterior(x).base_dist
        loc, sd = q.loc, q.scale
        k = elbo.num_particles
        shape = ((k,) if k > 1 else ()) + loc.shape
        eps = torch.empty(shape, dtype=loc.dtype, device=loc.device).normal_()
        z = loc + eps * sd
        c = 0.5 * math.log(2 * math.pi) * loc.shape[-1]
        if not x.is_floating_point() and vae.likelihood != "categorical":
            x = x.to(loc.dtype)
        log_px = vae.decode(z).log_prob(x)
        if elbo.objective == "meanfield":
            kl = (0.5 * (sd * sd + loc * loc - 1.0) - sd.log()).sum(-1)
            w = log_px - elbo.beta * kl
        else:
            log_q = (-0.5 * eps * eps - sd.log()).sum(-1) - c
            log_p = -0.5 * (z * z).sum(-1) - c
            w = log_px + elbo.beta * (log_p - log_q) if elbo.objective == "trace" else None
            if w is None:
                a = 1.0 - elbo.alpha
                lw = a * (log_px + log_p - log_q)
                return -scale * ((torch.logsumexp(lw, 0) - math.log(k)) / a).sum()
        return -scale * w.sum() / k


class _DirectDensity:
    r"""The zoo's exact-likelihood models (flows, autoregressive) evaluated with torch alone.

    For a :class:`~ppgen.models.flows.FlowModel` or an autoregressive zoo model whose program
    is the zoo's own (``x ~ p_\theta(x)`` in a data plate, no latent sites), the loss of a
    step is :math:`-s \sum_i \log p_\theta(x_i)` with the minibatch weight :math:`s = N/B`:
    the number Pyro's ``Trace_ELBO`` gives for that program, without the trace.
    """

    def __init__(self, obj: Any, key: str, context: str | None) -> None:
        self.obj, self.key, self.context = obj, key, context

    @classmethod
    def detect(cls, est: SVI, ctx: FitContext) -> _DirectDensity | None:
        from ppgen.models.autoregressive import _Program
        from ppgen.models.flows import FlowModel

        obj, info = ctx.program.obj, ctx.info
        if info.latent or info.observed != ["x"] or not _torch_optim(est):
            return None
        # the program must be the zoo's own, so that log_prob is the observed site's density
        kind = type(obj)
        if isinstance(obj, FlowModel) and (kind.model, kind.log_prob) == (
            FlowModel.model,
            FlowModel.log_prob,
        ):
            context = "c" if ctx.data.get("c") is not None else None
        elif isinstance(obj, _Program) and (kind.model, kind.distribution) == (
            _Program.model,
            _Program.distribution,
        ):
            context = None
        else:
            return None
        key = next((k for k, v in info.obs_keys.items() if v == "x"), None)
        return None if key is None else cls(obj, key, context)

    def loss(self, data: Mapping[str, Any], scale: float) -> Tensor:
        x = data[self.key]
        lp = self.obj.log_prob(x, data[self.context]) if self.context else self.obj.log_prob(x)
        return -scale * lp.sum()


def _torch_optim(est: SVI) -> bool:
    return isinstance(est.optim, str) and est.optim.lower() in _TORCH_OPTIMS


class _LeanEngine(_PyroEngine):
    """``_PyroEngine`` with the lean ELBO and one torch optimiser over the param store."""

    def __init__(self, est: SVI, ctx: FitContext) -> None:
        elbo = est.elbo
        if isinstance(elbo, str):
            if elbo.lower() not in _LEAN_OBJECTIVES:
                raise NotReparameterized(f"elbo={elbo!r}")
            n = est.num_particles
            elbo = ReparamELBO(
                elbo.lower(),  # type: ignore[arg-type]
                n,
                alpha=est.alpha,
                max_plate_nesting=None if n == 1 else est.max_plate_nesting,
            )
        elif not isinstance(elbo, ReparamELBO):
            raise NotReparameterized("custom ELBO object")
        if not isinstance(est.optim, str) or est.optim.lower() not in _TORCH_OPTIMS:
            raise NotReparameterized(f"optim={est.optim!r}")
        if elbo.num_particles > 1 and elbo.plate_nesting is None:
            elbo.plate_nesting = ctx.info.max_plate_nesting
        super().__init__(est, ctx)  # scaling, guide, params: exactly as the Pyro engine
        self.scaled_guide = self.svi.guide
        self.elbo = elbo
        rng = torch.get_rng_state()
        try:  # a probe (raises NotReparameterized); the RNG is put back afterwards
            with torch.no_grad():
                self.elbo.loss(self.model, self.scaled_guide, **ctx.data)
        finally:
            torch.set_rng_state(rng)
        self.params: list[Tensor] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self._sync_params()
        self.scheduled = False
        self.direct: Any = None
        if getattr(est, "fast", "auto") == "auto":
            self.direct = _Direct.detect(est, ctx, elbo) or _DirectDensity.detect(est, ctx)

    def _sync_params(self) -> None:
        store = pyro.get_param_store()._params
        if len(store) == len(self.params):
            return
        new = [p for p in store.values() if all(p is not q for q in self.params)]
        self.params += new
        est = self.est
        if self.optimizer is None:
            cls = _TORCH_OPTIMS[est.optim.lower()]
            kw: dict[str, Any] = {"lr": est.lr}
            if cls is torch.optim.Adam and all(
                p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in new
            ):
                kw["fused"] = True  # one kernel for all tensors: ~3x faster steps on CPU
            self.optimizer = cls(new, **kw)
            if est.lr_decay:
                gamma = est.lr_decay ** (1.0 / max(est._total_steps(), 1))
                self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma)
        elif new:
            self.optimizer.add_param_group({"params": new})

    def step(self, data: Mapping[str, Any], scale: float) -> float:
        if self.scaler:
            self.scaler.scale = scale
        _STATE.skip_modules = True
        try:
            with pyro.validation_enabled(False):
                if self.direct is not None:
                    loss = self.direct.loss(data, scale)
                else:
                    loss = self.elbo.differentiable_loss(self.model, self.scaled_guide, **data)
        finally:
            _STATE.skip_modules = False
        self._sync_params()
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            if self.est.clip_norm:
                torch.nn.utils.clip_grad_norm_(self.params, self.est.clip_norm)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
        return loss.item()

    def state_dict(self) -> dict[str, Any]:
        params = pyro.get_param_store().get_state()["params"]
        sd = {
            "params": {k: v.detach().clone() for k, v in params.items()},
            "optim": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            sd["cuda_rng"] = torch.cuda.get_rng_state_all()
        return sd

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        from ppgen.inference._pyro import load_unconstrained

        load_unconstrained(sd["params"])
        self.optimizer.load_state_dict(sd["optim"])
        torch.set_rng_state(sd["torch_rng"])
        if sd.get("cuda_rng"):
            torch.cuda.set_rng_state_all(sd["cuda_rng"])

    def finalize(self, history: dict[str, list[float]]) -> Any:
        fit = super().finalize(history)
        fit.diagnostics["engine"] = "direct" if self.direct is not None else "lean"
        return fit
