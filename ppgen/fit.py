"""`ppgen.fit`: resolve method, device and seed; validate the data; run the estimator."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ppgen._typing import Callback
from ppgen._validate import bind_positional
from ppgen.errors import DataError, EstimatorError
from ppgen.inference._base import REGISTRY, Estimator, FitContext, resolve_method
from ppgen.inference.runners import Local, Runner
from ppgen.program import Program, ProgramInfo, check_seed
from ppgen.result import Fit

__all__ = ["fit", "check_device", "check_kind"]

_FITTED_BY = {
    "implicit": "adversarial estimators (a discriminator compares data with simulations: "
    "GANs; ALI/BiGAN when a guide encodes x)",
    "energy": "contrastive estimators (noise-contrastive estimation, contrastive divergence, "
    "score matching), whose samplers (Langevin, Gibbs) draw from the model",
    "explicit": "likelihood-based estimators (NUTS, HMC, SVI, MLE, Exact)",
    "unobserved": "samplers of the latent sites' joint density (NUTS, HMC) and forward "
    "sampling (Prior)",
}


def check_device(device: str | None, backend: str) -> str | None:
    """Validate ``device`` ("cpu", "cuda", "cuda:N") for ``backend``; ``None`` means CPU."""
    if device is None:
        return None
    if not isinstance(device, str):
        device = str(device)
    kind, _, idx = device.partition(":")
    if kind not in ("cpu", "cuda") or (idx and not idx.isdigit()):
        raise EstimatorError(f"`device` must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")
    if kind == "cpu":
        return None if backend == "pyro" else "cpu"
    if backend == "pyro":
        import torch

        n = torch.cuda.device_count()
        if n == 0 or int(idx or 0) >= n:
            raise EstimatorError(
                f"`device={device!r}` but torch sees {n} CUDA device(s). Use device='cpu' or "
                "install a CUDA build of torch."
            )
    else:
        from ppgen.backends.numpyro import jax_device

        try:
            jax_device(device)
        except ValueError as e:
            raise EstimatorError(str(e)) from e
    return device


def check_kind(est: Estimator, info: ProgramInfo) -> None:
    """Refuse a program whose kind (explicit, implicit, energy, unobserved) ``est`` does not fit.

    The error names the estimator, the program's kind, the observed sites that make it so and
    the registered estimators that fit that kind. A program with no observed site for the data
    (kind ``"unobserved"``) is refused with a :class:`~ppgen.errors.DataError` (the data may
    simply be missing) naming the estimators that sample such a program (NUTS, HMC, Prior);
    other kinds with an :class:`EstimatorError`. Estimators that ignore the observations
    (``Estimator.conditions_on_data = False``: ``Prior``) are not offered as fitters of
    programs with observed sites.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist
        >>> from ppgen.distributions import Unnormalized
        >>> from ppgen.inference import SVI
        >>> def rbm_like(x=None):
        ...     with pyro.plate("data", 4):
        ...         pyro.sample("x", Unnormalized(lambda v: v**2), obs=x)
        >>> _, info = Program(rbm_like).validate({"x": np.zeros(4)})
        >>> try:
        ...     check_kind(SVI(), info)
        ... except EstimatorError as e:
        ...     print(str(e).split(": ")[0])
        SVI (`method='svi'`) fits explicit programs; this program is energy
    """
    kind = info.kind
    accepted = tuple(getattr(est, "kinds", ("explicit",)))
    if kind in accepted:
        return
    names = sorted(
        n
        for n, cls in REGISTRY.items()
        if kind in getattr(cls, "kinds", ())
        and (kind == "unobserved" or getattr(cls, "conditions_on_data", True))
    )
    if names:
        fix = f"Use an estimator that fits {kind} programs: method= one of {names}."
    else:
        fix = (
            f"No estimator for {kind} programs is registered yet; {_FITTED_BY[kind]} are "
            "what fit them."
        )
    head = f"{type(est).__name__} (`method={est.name!r}`) fits {' / '.join(accepted)} programs"
    if kind == "unobserved":
        latent = ", ".join(f"`{n}`" for n in info.latent) or "none"
        raise DataError(
            f"The program has no observed sites for this data: {head}, and this program is "
            f"unobserved (no `sample(..., obs=)` site received a value; latent sites: "
            f"{latent}), so there is no likelihood to fit. To condition on data, pass the "
            "observations in `data` under the argument name that feeds `obs=`. To sample the "
            "program's own density (the joint of its latent sites, e.g. a prior-only target "
            f"such as Neal's funnel, or prior draws): {fix[0].lower()}{fix[1:]}"
        )
    sites = info.sites_of_kind(kind) if kind != "explicit" else info.observed
    shown = ", ".join(f"`{n}` ({info.sites[n].dist})" for n in sites)
    many = len(sites) > 1
    label = f"the observed site{'s' if many else ''} {shown} ha{'ve' if many else 's'}"
    what = {
        "implicit": "no density (Implicit: a generator's output)",
        "energy": "a density only up to an unknown log Z (Unnormalized)",
    }.get(kind, "a normalised density")
    raise EstimatorError(f"{head}; this program is {kind}: {label} {what}. {fix}")


def fit(
    program: Any,
    data: Mapping[str, Any] | None = None,
    method: Estimator | str = "svi",
    *,
    args: Sequence[Any] = (),
    guide: Any = None,
    seed: int = 0,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool | None = None,
    backend: str | None = None,
    runner: Runner | None = None,
) -> Fit:
    """Fit a Pyro or NumPyro program with any estimator; the same call for every method.

    Arguments:
        program: a Pyro/NumPyro callable, a zoo model, or a :class:`~ppgen.program.Program`.
        data: keyword arguments of the program (observations and covariates). Values that are
            neither arrays nor numbers (a function, a settings object) are passed as they are;
            a saved run records them by name, and :func:`ppgen.load` asks for them again
            (``static=``).
        method: an estimator object (``ppgen.inference.NUTS(...)``) or a registered name
            (``"nuts"``, ``"hmc"``, ``"svi"``, ``"mle"``, ``"prior"``, ...). A program with no
            observed site for ``data`` (a prior-only target density) is fitted by ``"nuts"``,
            ``"hmc"`` and ``"prior"``; the others refuse it, naming these.
        args: positional arguments of the program (``model(sequences, lengths)``), put under
            the names of the parameters they fill; the fit, its ``data`` and a saved run then
            hold them by name. ``*args`` beyond the named parameters are refused (wrap the
            program).
        guide: a guide callable for SVI (overrides the program's own).
        seed: seeds every random choice; the same seed gives the same fit.
        device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``.
        callbacks: functions ``cb(step, metrics)`` called after each optimisation step; return
            ``True`` (or raise :class:`~ppgen.inference.StopTraining`) to stop. A callback
            object's ``on_fit_end()`` is called once when training ends. Loggers:
            :class:`ppgen.callbacks.TensorBoard`, :class:`ppgen.callbacks.CSVLogger`.
        checkpoint_dir / checkpoint_every: write an atomic checkpoint every N steps and at the end.
        resume: continue from the checkpoint in ``checkpoint_dir`` (bit-identical on CPU).
        progress: show a progress bar on stderr (default: when stderr is a terminal).
        backend: run a backend-neutral (``pyroapi``) program on ``"pyro"`` or ``"numpyro"``.
        runner: what drives the estimator (:class:`~ppgen.inference.runners.Runner`); default
            :class:`~ppgen.inference.runners.Local`, this process.

    Returns:
        A :class:`~ppgen.result.Fit`.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     p = pyro.sample("p", dist.Beta(1.0, 1.0))
        ...     with pyro.plate("data", 10):
        ...         pyro.sample("x", dist.Bernoulli(p), obs=x)
        >>> x = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1])
        >>> fit = ppgen.fit(model, data={"x": x}, method="svi")
        >>> round(float(fit.draws["p"].mean()), 1)  # Beta(9, 3) mean 0.75
        0.8
    """
    est = resolve_method(method)
    if runner is None:
        runner = Local()
    elif not isinstance(runner, Runner):
        raise EstimatorError(
            f"`runner` must be a ppgen.inference.runners.Runner (e.g. Local()) or None; got "
            f"{type(runner).__name__}. Subclass Runner and implement run(estimator, ctx)."
        )
    if data is None:
        data = {}
    backend = backend or getattr(est, "backend", None)
    prog = (
        Program(program, guide, backend=backend)
        if not (
            isinstance(program, Program) and guide is None and backend in (None, program.backend)
        )
        else program
    )
    if checkpoint_every is not None and (
        not isinstance(checkpoint_every, int) or checkpoint_every < 1
    ):
        raise EstimatorError(
            f"`checkpoint_every` must be a positive int; got {checkpoint_every!r}."
        )
    if checkpoint_every and checkpoint_dir is None:
        raise EstimatorError("`checkpoint_every` is set but `checkpoint_dir` is not; pass both.")
    data = bind_positional(prog.signature, args, data)
    seed = check_seed(seed)  # before seed_everything: NumPy's range on both backends
    dev = check_device(device, prog.backend)
    for cb in callbacks:
        if not callable(cb):
            raise EstimatorError(f"Every callback must be callable; got {type(cb).__name__}.")
    prog.ops.seed_everything(seed)
    native, info = prog.validate(data, dev, seed)
    check_kind(est, info)  # before the estimator's own checks: the program's kind first
    est.check(prog, info)
    data_np = prog.check_values(data)
    ctx = FitContext(
        program=prog,
        info=info,
        data=native,
        data_np=data_np,
        seed=seed,
        device=dev,
        callbacks=tuple(callbacks),
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    prog.ops.seed_everything(seed)
    with prog.ops.device_context(dev):
        return runner.run(est, ctx)
