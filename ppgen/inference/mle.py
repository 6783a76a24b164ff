"""Maximum likelihood (and MAP) for programs with tractable densities: flows, AR models, ..."""

from __future__ import annotations

import math
import warnings
from typing import Any

from ppgen.errors import ConvergenceWarning, EstimatorError, caller_stacklevel
from ppgen.inference._base import FitContext, register
from ppgen.inference._convergence import convergence_report
from ppgen.inference.optim import Optim
from ppgen.inference.svi import SVI
from ppgen.result import Fit

__all__ = ["MLE", "ConvergenceWarning"]

#: Adam's learning rate for programs without networks. Adam moves a parameter about lr a
#: step, so 1e-3 x 1000 steps left a regression's intercept 12 units short of its optimum
#: (issue 19); on a full-batch point-mass objective (deterministic) Adam's normalisation
#: damps the large steps near the optimum: 0.05 x 1500 reached it on every GLM measured
ADAM_LR = 0.05
#: Adam's learning rate for programs with neural networks (flows, autoregressive models):
#: larger steps make their training oscillate or diverge
NETWORK_LR = 1e-3
ADAM_STEPS = 1500
#: L-BFGS's defaults: the line search's own unit step; iterations (each ~1-3 evaluations)
LBFGS_LR, LBFGS_STEPS = 1.0, 200


def _no_latents(*args: Any, **kwargs: Any) -> None:
    """The empty guide: with no latent sites the negative ELBO is exactly -log p(x)."""


@register("mle", "map")
class MLE(SVI):
    r"""Fit parameters by maximum likelihood, :math:`\max_\theta \sum_i \log p_\theta(x_i)`.

    For a program with no latent sites (a flow, an autoregressive model, a GLM with
    ``param`` sites) the loss is the exact negative log-likelihood. Latent sites with priors are
    fitted by MAP (point estimates, an ``AutoDelta`` guide; ``fit.draws`` holds the one point,
    chain 1 draw 1). History records ``loss`` (total NLL of the step's data, full-data scale),
    ``nll`` (nats per datum) and ``bits_per_dim``.

    Arguments: as :class:`~ppgen.inference.SVI` (``lr``, ``optim``, ``steps`` / ``epochs``,
    ``batch_size`` / ``batch_plate`` / ``drop_last``...: a minibatch's NLL is weighted
    ``N / B``, a partial last batch of an epoch ``N / (N mod B)``, its own B, unless
    ``drop_last=True`` skips it), and

    - ``optim``: ``"adam"`` (default) or another first-order name, or ``"lbfgs"``: L-BFGS
      with a line search (``torch.optim.LBFGS`` / ``optax.lbfgs``), one iteration a step, for
      full-batch fits only. On a smooth problem with up to a few thousand parameters it
      reaches the optimum in tens of iterations whatever the parameters' scales.
    - ``lr``: by default 0.05 for Adam (a point-mass objective is deterministic, so Adam can
      take large steps: 1e-3 stopped 12 units short of a regression's intercept), 1e-3 for a
      program with neural networks (a ``torch.nn.Module`` such as the zoo's flows and
      autoregressive models, or ``pyro.module`` / ``flax_module`` parameters), 1 for L-BFGS.
    - ``steps``: by default 1500 (Adam) or 200 (L-BFGS iterations).
    - ``check_convergence``: after a full-batch fit, test that it stopped at an optimum and
      warn with a :class:`ConvergenceWarning` naming the parameters still moving if it did
      not (see below). ``False`` skips the test (a deliberately short fit).

    The convergence check (full-batch fits; a minibatch fit's losses are noisy estimates and
    its data may not fit in one pass, so it is not checked and ``diagnostics["converged"]`` is
    ``None``): the mean loss over the last tenth of the steps against the tenth before, and,
    for each parameter at the final values, the decrease a line search along its own
    gradient of the full-data loss would still make (its gradient norm and the curvature along
    it, by a Hessian-vector product). Both are in nats, so a parameter's scale does not
    matter; the fit has converged when each is below ``max(0.01, 1e-6 |loss|)`` nats (within
    about 0.14 standard deviations of the Laplace approximation). ``fit.diagnostics`` holds
    ``converged``, ``rel_loss_change``, ``loss_change``, ``grad_norm`` and ``decrement`` (per
    parameter, nats) and ``moving`` (site names for MAP's point estimates). An objective that
    is itself random (dropout, a dequantised flow's noise: two evaluations at the final
    parameters differ by more than the tolerance) is not checked either (``converged`` is
    ``None``, ``convergence_skipped`` says why).

    A program without latent sites runs on SVI's engine with the empty guide: one model pass
    and one fused optimiser over all parameters, or, when the model declares ``log_density``
    (the zoo's flows and autoregressive models do; so can yours, see
    :mod:`ppgen.capabilities`), ``-log_density(x).sum()`` with no tracing at all. Both give
    the loss of Pyro's own step to float precision.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     loc = pyro.param("loc", np.float32(0.0) + __import__("torch").zeros(()))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(loc, 1.0), obs=x)
        >>> x = np.random.default_rng(0).normal(3.0, 1.0, 100)
        >>> fit = ppgen.fit(model, data={"x": x}, method=MLE(steps=300, lr=0.1))
        >>> bool(abs(float(fit.params["loc"]) - x.mean()) < 0.01)
        True
        >>> fit.diagnostics["converged"]
        True

        MAP of a regression by L-BFGS, and a fit cut short, which warns:

        >>> def regression(x, y=None):
        ...     a = pyro.sample("a", dist.Normal(0.0, 10.0))
        ...     b = pyro.sample("b", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("y", dist.Normal(a + b * x, 1.0), obs=y)
        >>> y = 9.2 + 2.0 * x + np.random.default_rng(1).normal(size=100)
        >>> fit = ppgen.fit(regression, {"x": x, "y": y}, MLE(optim="lbfgs", steps=50))
        >>> fit.draws["a"].shape, fit.diagnostics["converged"]
        ((1, 1), True)
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     short = ppgen.fit(regression, {"x": x, "y": y}, MLE(steps=20))
        >>> caught[0].category.__name__, short.diagnostics["moving"][:1]
        ('ConvergenceWarning', ['a'])
    """

    name = "mle"

    def __init__(
        self,
        *,
        optim: str | Any = "adam",
        lr: float | None = None,
        steps: int | None = None,
        lr_decay: float | None = None,
        check_convergence: bool = True,
        **kwargs: Any,
    ) -> None:
        lbfgs = _is_lbfgs(optim)
        if lbfgs and kwargs.get("batch_size") is not None:
            raise EstimatorError(
                "`optim='lbfgs'` needs the full-data objective (its line search compares "
                f"losses), but `batch_size={kwargs['batch_size']}` asks for minibatches. Leave "
                "`batch_size` out, or use a first-order optimiser such as optim='adam'."
            )
        if steps is None and kwargs.get("epochs") is None:
            steps = LBFGS_STEPS if lbfgs else ADAM_STEPS
        kwargs.setdefault("num_draws", 1)
        self._auto_lr = LBFGS_LR if lbfgs else ADAM_LR  # before SVI validates the settings
        super().__init__(
            guide=None,
            elbo=kwargs.pop("elbo", None),
            optim=optim,
            lr=self._auto_lr if lr is None else lr,
            steps=steps,
            lr_decay=lr_decay,
            **kwargs,
        )
        self.lr: float | None = None if lr is None else float(lr)  # type: ignore[assignment]
        self.check_convergence = bool(check_convergence)

    def _optim_spec(self) -> Optim:
        if isinstance(self.optim, Optim):
            return self.optim
        lr = self._auto_lr if self.lr is None else self.lr
        return Optim(self.optim, lr, lr_decay=self.lr_decay, clip_norm=self.clip_norm)

    def init(self, ctx: FitContext) -> Any:
        if not _is_lbfgs(self.optim):
            self._auto_lr = NETWORK_LR if _has_network(ctx) else ADAM_LR
        return super().init(ctx)

    _full_batch_optim = True  # deterministic objective: L-BFGS's line search applies

    def _guide_spec(self, ctx: FitContext) -> Any:
        return "delta" if ctx.info.latent else _no_latents

    def _resolve_guide(self, ctx: FitContext, model: Any, backend: str) -> Any:
        spec = self._guide_spec(ctx)
        if spec is _no_latents:
            return _no_latents
        return super()._resolve_guide(ctx, model, backend)

    def metrics(self, loss: float, state: Any) -> dict[str, float]:
        n, dims = _sizes(state.ctx.info)
        nll = loss / n
        return {"loss": loss, "nll": nll, "bits_per_dim": nll / (dims * math.log(2))}

    def finalize(self, ctx: FitContext, state: Any, history: dict[str, list[float]]) -> Fit:
        fit = super().finalize(ctx, state, history)
        if "nll" in history:
            fit.diagnostics["train_nll"] = history["nll"][-1]
        fit.diagnostics["converged"] = None
        if self.check_convergence and ctx.extra.get("batch_plate") is None and history.get("loss"):
            fit.diagnostics.update(_check(ctx, history["loss"], state.gradient_report()))
        return fit

    def run(self, ctx: FitContext) -> Fit:
        fit = super().run(ctx)
        d = fit.diagnostics
        if d.get("converged") is False and not d.get("interrupted"):
            msg = _not_converged(self, d, bool(ctx.info.latent))
            warnings.warn(msg, ConvergenceWarning, stacklevel=caller_stacklevel())
        return fit


def _check(ctx: FitContext, losses: list[float], final: dict[str, Any] | None) -> dict[str, Any]:
    """The convergence diagnostics, with parameters named by site; none for a random loss."""
    gradients = None if final is None else final["gradients"]
    report = convergence_report(losses, gradients)
    if final is not None and not abs(final["loss"] - final["repeat"]) <= report["tol"]:
        # two evaluations at the same parameters differ (dropout, dequantisation noise): the
        # loss history and the gradients are noisy too, and no test here can be trusted
        return {"converged": None, "convergence_skipped": "the objective is random"}
    sites = _site_names(ctx, list(report["grad_norm"]))
    for key in ("grad_norm", "decrement"):
        report[key] = {sites[k]: v for k, v in report[key].items()}
    report["moving"] = [sites[k] for k in report["moving"]]
    return report


def _is_lbfgs(optim: Any) -> bool:
    if isinstance(optim, Optim):
        return optim.full_batch
    return isinstance(optim, str) and optim.lower() == "lbfgs"


def _has_network(ctx: FitContext) -> bool:
    """Whether the program holds a neural network: a ``torch.nn.Module`` program (the zoo's
    flows and autoregressive models) or parameters of ``pyro.module`` / NumPyro's
    ``flax_module``/``haiku_module`` (their names carry ``$``)."""
    return ctx.program.module is not None or any("$" in n for n in ctx.info.params)


def _site_names(ctx: FitContext, names: list[str]) -> dict[str, str]:
    """Parameter name -> the latent site it is the point estimate of (MAP), else itself."""
    latent = set(ctx.info.latent)
    out = {}
    for n in names:
        site = n
        for prefix, suffix in (("AutoDelta.", ""), ("", "_auto_loc")):  # Pyro, NumPyro
            if n.startswith(prefix) and n.endswith(suffix):
                stem = n[len(prefix) : len(n) - len(suffix)]
                if stem in latent:
                    site = stem
                    break
        out[n] = site
    return out


def _not_converged(est: MLE, d: dict[str, Any], map_: bool) -> str:
    """The warning's text: how far the loss still moved, which sites, and what to do."""
    moving = ", ".join(f"`{k}` ({d['decrement'][k]:.3g})" for k in d["moving"][:5])
    if len(d["moving"]) > 5:
        moving += f" and {len(d['moving']) - 5} more"
    where = (
        f" Still moving (the nats a line search along each one's gradient would gain): {moving}."
        if moving
        else ""
    )
    lr = est._auto_lr if est.lr is None else est.lr
    length = (
        f"`steps=` (now {est.steps})" if est.epochs is None else f"`epochs=` (now {est.epochs})"
    )
    fix = f"raise {length} or `lr=` (now {lr:g})"
    if not _is_lbfgs(est.optim):
        fix += ", or use `optim='lbfgs'` (full batch, up to a few thousand parameters)"
    steps = d.get("steps")
    if math.isnan(d["loss_change"]):
        change = "too few steps to compare the loss over windows"
    else:
        change = (
            f"the mean loss changed by {d['loss_change']:.3g} nats (relative "
            f"{d['rel_loss_change']:.2g}) between the last two windows of {d['window']} "
            f"step{'s' if d['window'] > 1 else ''} (tolerance {d['tol']:.2g})"
        )
    return (
        f"The {'MAP' if map_ else 'MLE'} fit did not converge in {steps} "
        f"step{'s' if steps != 1 else ''}: {change}.{where} The estimates may be far from the "
        f"optimum: {fix}. `fit.diagnostics` holds the numbers; "
        "`MLE(check_convergence=False)` skips this check."
    )


def _sizes(info: Any) -> tuple[int, int]:
    """Data points and dimensions per point of the first observed site (nats -> bits/dim)."""
    if not info.observed:
        return 1, 1
    site = info.sites[info.observed[0]]
    return max(1, math.prod(site.batch_shape)), max(1, math.prod(site.event_shape))
