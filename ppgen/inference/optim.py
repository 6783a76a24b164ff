"""One optimiser table for every optimisation estimator: torch.optim and NumPyro/optax by name.

Settings live in :class:`Optim` (backend-neutral); :meth:`Optim.torch` builds the torch
optimiser over named parameter groups (a VAE has one, a GAN ``generator`` and
``discriminator``, an energy model ``energy`` and ``log_Z``), each with its own learning rate
and betas, plus the learning-rate schedule and gradient clipping; :meth:`Optim.numpyro` builds
the NumPyro optimiser (optax ``multi_transform`` when groups differ).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ppgen.errors import EstimatorError, check_positive
from ppgen.inference._distributed import all_reduce_mean

__all__ = [
    "Optim",
    "TorchOptimizer",
    "OPTIMIZERS",
    "FULL_BATCH_OPTIMIZERS",
    "describe_optimizer",
]

#: optimiser names accepted everywhere (``optim=`` of every optimisation estimator)
OPTIMIZERS = ("adam", "adamw", "clipped_adam", "sgd", "rmsprop", "adagrad")
#: quasi-Newton optimisers with a line search: deterministic full-batch objectives only (MLE/MAP)
FULL_BATCH_OPTIMIZERS = ("lbfgs",)
_GROUP_KEYS = ("lr", "betas", "weight_decay")


def describe_optimizer(obj: Any) -> tuple[str, float | None]:
    """A backend optimiser object as ppgen's name for it and its learning rate (``None`` when
    the object does not say), for a saved run's settings: ``pyro.optim.Adam({"lr": 0.1})``
    is ``("adam", 0.1)``, a ``torch.optim`` class or ``numpyro.optim.Adam(...)`` ``("adam",
    None)``; an optimiser ppgen has no name for keeps its class name.

    Example:
        >>> import pyro.optim
        >>> describe_optimizer(pyro.optim.ClippedAdam({"lr": 0.05}))
        ('clipped_adam', 0.05)
    """
    cls = getattr(obj, "pt_optim_constructor", None)  # pyro.optim.PyroOptim
    args = getattr(obj, "pt_optim_args", None)
    if cls is None:
        cls = obj if isinstance(obj, type) else type(obj)
    raw = cls.__name__
    snake = "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(raw))
    name = next((n for n in OPTIMIZERS + FULL_BATCH_OPTIMIZERS if n in (raw.lower(), snake)), raw)
    lr = args.get("lr") if isinstance(args, Mapping) else None
    return name, (float(lr) if isinstance(lr, int | float) else None)


def _torch_class(name: str) -> type[torch.optim.Optimizer]:
    if name == "clipped_adam":
        from pyro.optim.clipped_adam import ClippedAdam

        return ClippedAdam
    if name == "lbfgs":
        return torch.optim.LBFGS
    return {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    }[name]


class Optim:
    r"""Optimiser settings: name, learning rate, schedule, clipping, named parameter groups.

    The learning rate decays exponentially by the total factor ``lr_decay`` over the run,
    :math:`\eta_t = \eta_0 \cdot \mathrm{lr\_decay}^{t / T}`. ``clip_norm`` clips the global
    gradient norm of each group before each step (``clipped_adam`` clips each tensor itself,
    as Pyro's ``ClippedAdam`` does). Adam and AdamW use torch's fused kernel where every tensor
    allows it (one kernel for all tensors: the fastest hand-written loop's choice).

    Arguments:
        name: one of :data:`OPTIMIZERS`, or ``"lbfgs"`` (:data:`FULL_BATCH_OPTIMIZERS`: one
            group, no ``lr_decay``/``clip_norm``; ``lr`` scales the line search's first trial
            step, 1 is the usual choice).
        lr: learning rate of every group without its own (default 1e-3; 1 for L-BFGS).
        betas: Adam's ``(beta1, beta2)`` (default torch's).
        weight_decay: L2 penalty (decoupled for ``adamw``).
        lr_decay: total exponential decay factor over the run, or ``None``.
        clip_norm: maximum gradient norm, or ``None``.
        groups: ``{group: {"lr": ..., "betas": ..., "weight_decay": ...}}`` overrides per
            named parameter group (two-time-scale GAN training, a faster ``log_Z``...).

    Example:
        >>> net, critic = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
        >>> spec = Optim("adam", 1e-3, groups={"critic": {"lr": 4e-3, "betas": (0.0, 0.9)}})
        >>> opt = spec.torch({"generator": net.parameters(), "critic": critic.parameters()})
        >>> [(g["name"], g["lr"], g["betas"]) for g in opt.optimizer.param_groups]
        [('generator', 0.001, (0.9, 0.999)), ('critic', 0.004, (0.0, 0.9))]

        L-BFGS steps with a closure that re-evaluates the loss (one iteration a step):

        >>> w = torch.zeros(2, requires_grad=True)
        >>> lbfgs = Optim("lbfgs").torch([w])
        >>> def closure():
        ...     lbfgs.zero_grad()
        ...     loss = ((w - torch.tensor([1.0, -2.0])) ** 2).sum()
        ...     loss.backward()
        ...     return loss.item()
        >>> for _ in range(3):
        ...     _ = lbfgs.step(closure=closure)
        >>> w.detach().numpy().round(4).tolist()
        [1.0, -2.0]
    """

    def __init__(
        self,
        name: str = "adam",
        lr: float | None = None,
        *,
        betas: tuple[float, float] | None = None,
        weight_decay: float = 0.0,
        lr_decay: float | None = None,
        clip_norm: float | None = None,
        groups: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        names = OPTIMIZERS + FULL_BATCH_OPTIMIZERS
        if not isinstance(name, str) or name.lower() not in names:
            raise EstimatorError(
                f"Unknown `optim={name!r}`. Valid names: {list(names)}, or a backend "
                "optimiser object (torch.optim class / pyro.optim / numpyro.optim)."
            )
        if lr is None:
            lr = 1.0 if isinstance(name, str) and name.lower() in FULL_BATCH_OPTIMIZERS else 1e-3
        check_positive("lr", lr)
        if lr_decay is not None:
            check_positive("lr_decay", lr_decay, upper=1.0)
        if clip_norm is not None:
            check_positive("clip_norm", clip_norm)
        self.name = name.lower()
        self.lr, self.betas, self.weight_decay = float(lr), betas, weight_decay
        self.lr_decay, self.clip_norm = lr_decay, clip_norm
        self.groups = {k: dict(v) for k, v in (groups or {}).items()}
        if self.full_batch:
            given = [
                k for k, v in (("lr_decay", lr_decay), ("clip_norm", clip_norm)) if v is not None
            ]
            given += ["groups"] if self.groups else []
            given += ["betas"] if betas is not None else []
            given += ["weight_decay"] if weight_decay else []
            if given:
                raise EstimatorError(
                    f"`optim={self.name!r}` takes no {given}: L-BFGS steps along a line search "
                    "over one group of parameters. Leave them out, or use a first-order "
                    f"optimiser ({list(OPTIMIZERS)})."
                )
        for g, opts in self.groups.items():
            unknown = sorted(set(opts) - set(_GROUP_KEYS))
            if unknown:
                raise EstimatorError(
                    f"Parameter group {g!r} has unknown option(s) {unknown}; each group takes "
                    f"{list(_GROUP_KEYS)}."
                )
            if "lr" in opts:
                check_positive(f"groups[{g!r}]['lr']", opts["lr"])

    @property
    def full_batch(self) -> bool:
        """Whether this is a line-search method for deterministic full-batch objectives."""
        return self.name in FULL_BATCH_OPTIMIZERS

    def options(self, group: str) -> dict[str, Any]:
        """The torch optimiser options of ``group`` (its overrides on the shared settings)."""
        if self.full_batch:
            # one iteration per loop step, so `steps` counts iterations and history has each
            return {"lr": self.lr, "max_iter": 1, "line_search_fn": "strong_wolfe"}
        opts: dict[str, Any] = {"lr": self.lr}
        if self.betas is not None and self.name in ("adam", "adamw", "clipped_adam"):
            opts["betas"] = tuple(self.betas)
        if self.weight_decay:
            opts["weight_decay"] = self.weight_decay
        extra = dict(self.groups.get(group, {}))
        if "betas" in extra:
            extra["betas"] = tuple(extra["betas"])
        return {**opts, **extra}

    def torch(
        self,
        params: Mapping[str, Iterable[torch.Tensor]] | Iterable[torch.Tensor],
        total_steps: int = 1000,
        world: int = 1,
    ) -> TorchOptimizer:
        """A :class:`TorchOptimizer` over ``params`` (a list, or ``{group: tensors}``);
        ``world > 1``: a data-parallel run whose gradients are averaged over the processes."""
        groups = dict(params) if isinstance(params, Mapping) else {"default": params}
        return TorchOptimizer(self, {k: list(v) for k, v in groups.items()}, total_steps, world)

    def numpyro(self, total_steps: int = 1000, group_of: Callable[[str], str] | None = None) -> Any:
        """The NumPyro optimiser (``numpyro.optim``; optax per group when groups differ).

        ``group_of`` maps a NumPyro param name to its group (default: every param in
        ``"default"``). Without per-group settings this is NumPyro's own optimiser class, so a
        fit equals a raw NumPyro loop with the same optimiser.
        """
        import numpyro.optim as nopt

        if self.full_batch:
            return _optax_lbfgs(self.lr)
        schedule = self._jax_schedule(self.lr, total_steps)
        if not self.groups:
            if self.name == "clipped_adam":
                return nopt.ClippedAdam(schedule, clip_norm=self.clip_norm or 10.0)
            if self.clip_norm is None and self.name == "adam":
                b1, b2 = self.betas if self.betas is not None else (0.9, 0.999)
                return nopt.Adam(schedule, b1=b1, b2=b2)
            own = {"sgd": nopt.SGD, "rmsprop": nopt.RMSProp, "adagrad": nopt.Adagrad}
            if self.clip_norm is None and self.name in own:
                return own[self.name](schedule)
        return nopt.optax_to_numpyro(self._optax(total_steps, group_of))

    # ------------------------------------------------------------------ JAX internals
    def _jax_schedule(self, lr: float, total_steps: int) -> Any:
        if not self.lr_decay:
            return lr
        import jax.numpy as jnp

        steps, rate = max(total_steps, 1), float(self.lr_decay)
        return lambda i: lr * jnp.power(rate, i / steps)

    def _optax_one(self, group: str, total_steps: int) -> Any:
        import optax

        if self.full_batch:
            raise EstimatorError(
                f"`optim={self.name!r}` is not an optax gradient transformation (it needs the "
                "objective for its line search): use `Optim.numpyro()`."
            )
        o = self.options(group)
        lr = self._jax_schedule(o["lr"], total_steps)
        b1, b2 = o.get("betas", (0.9, 0.999))
        make = {
            "adam": lambda: optax.adam(lr, b1=b1, b2=b2),
            "clipped_adam": lambda: optax.adam(lr, b1=b1, b2=b2),
            "adamw": lambda: optax.adamw(lr, b1=b1, b2=b2, weight_decay=o.get("weight_decay", 0)),
            "sgd": lambda: optax.sgd(lr),
            "rmsprop": lambda: optax.rmsprop(lr),
            "adagrad": lambda: optax.adagrad(lr),
        }[self.name]
        chain = [make()]
        if self.clip_norm or self.name == "clipped_adam":
            chain.insert(0, optax.clip_by_global_norm(self.clip_norm or 10.0))
        return optax.chain(*chain)

    def _optax(self, total_steps: int, group_of: Callable[[str], str] | None) -> Any:
        import jax
        import optax

        names = ["default", *self.groups]
        if group_of is None or len(names) == 1:
            return self._optax_one("default", total_steps)
        transforms = {g: self._optax_one(g, total_steps) for g in names}

        def labels(params: Any) -> Any:
            def label(name: str, tree: Any) -> Any:
                group = group_of(name)
                group = group if group in transforms else "default"
                return jax.tree_util.tree_map(lambda _: group, tree)

            return {k: label(k, v) for k, v in params.items()}

        return optax.multi_transform(transforms, labels)

    def __repr__(self) -> str:
        return f"Optim({self.name!r}, lr={self.lr}, groups={sorted(self.groups)})"


class TorchOptimizer:
    """A torch optimiser over named parameter groups with its schedule and clipping.

    Parameters discovered after construction (Pyro creates params lazily, on a program's
    first run) join their group with :meth:`add`. ``state_dict`` holds the optimiser's and
    the schedule's state, so a resumed fit continues bit for bit. In a data-parallel run
    (``world`` processes, :class:`~ppgen.inference.runners.DDP`) each step first averages the
    gradients of the groups it steps over the processes, so every process takes the same step.
    """

    def __init__(
        self,
        spec: Optim,
        groups: Mapping[str, list[torch.Tensor]],
        total_steps: int,
        world: int = 1,
    ) -> None:
        self.spec, self.world = spec, int(world)
        # a whole step is the optimiser's own: no closure, gradient clipping or all-reduce
        clips = bool(spec.clip_norm) and spec.name != "clipped_adam"
        self._plain_step = self.world == 1 and not spec.full_batch and not clips
        self.cls = _torch_class(spec.name)
        self.total_steps = max(int(total_steps), 1)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.params: list[torch.Tensor] = []
        self.group_params: dict[str, list[torch.Tensor]] = {}
        for name, ps in groups.items():
            self.add(ps, name)

    def _build_options(self, group: str, params: list[torch.Tensor]) -> dict[str, Any]:
        opts = self.spec.options(group)
        if self.spec.name == "clipped_adam":
            opts["clip_norm"] = self.spec.clip_norm or 10.0
            if self.spec.lr_decay:
                opts["lrd"] = self.spec.lr_decay ** (1.0 / self.total_steps)
        elif self.spec.name in ("adam", "adamw") and all(
            p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
        ):
            opts["fused"] = True
        return opts

    def add(self, params: Iterable[torch.Tensor], group: str = "default") -> None:
        """Add tensors (those not already optimised) to ``group``, creating it if needed."""
        known = {id(p) for p in self.params}
        new = []
        for p in params:  # a tensor registered under two names is optimised once
            if id(p) not in known:
                known.add(id(p))
                new.append(p)
        if not new:
            return
        if self.spec.full_batch and self.optimizer is not None:
            raise EstimatorError(
                f"`optim={self.spec.name!r}` optimises one fixed set of tensors, but "
                f"{len(new)} new parameter tensor(s) appeared after the first step (a program "
                "that creates parameters lazily, or a second parameter group). Create every "
                "parameter on the program's first run, or use a first-order optimiser."
            )
        self.params += new
        if group in self.group_params:
            self.group_params[group] += new
            pg = next(g for g in self.optimizer.param_groups if g["name"] == group)
            state = {"params": new, **{k: v for k, v in pg.items() if k != "params"}}
            self.optimizer.add_param_group(state)
            return
        self.group_params[group] = list(new)
        entry = {"params": new, "name": group, **self._build_options(group, new)}
        if self.optimizer is None:
            self.optimizer = self.cls([entry])
            if self.spec.lr_decay and self.spec.name != "clipped_adam":
                gamma = self.spec.lr_decay ** (1.0 / self.total_steps)
                self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma)
        else:
            self.optimizer.add_param_group(entry)

    def zero_grad(self, groups: Iterable[str] | None = None) -> None:
        """Clear the gradients of all groups, or only of ``groups`` (the ones about to step)."""
        if self.optimizer is None:
            return
        if groups is None:
            self.optimizer.zero_grad(set_to_none=True)
            return
        for name in groups:
            for p in self.group_params.get(name, ()):
                p.grad = None

    @property
    def needs_closure(self) -> bool:
        """Whether :meth:`step` needs ``closure`` (L-BFGS re-evaluates the objective)."""
        return self.spec.full_batch

    def step(self, groups: Iterable[str] | None = None, closure: Callable | None = None) -> Any:
        """Clip and step all groups, then advance the schedule; or only ``groups`` (e.g. a GAN's
        critic in its inner updates), leaving the schedule to :meth:`schedule`.

        L-BFGS (:attr:`needs_closure`) takes ``closure``: a function that zeroes the gradients,
        computes the loss, back-propagates and returns it; the step returns the loss at the
        parameters it started from.
        """
        if groups is None and self._plain_step and self.optimizer is not None:
            self.optimizer.step()
            self.schedule()
            return None
        if self.needs_closure:
            if closure is None or groups is not None:
                raise EstimatorError(
                    f"`optim={self.spec.name!r}` steps every parameter with a closure that "
                    "re-evaluates the loss; partial steps (groups) are not possible."
                )
            return self.optimizer.step(closure) if self.optimizer is not None else closure()
        if self.optimizer is None:
            return None
        chosen = None if groups is None else set(groups)
        if self.world > 1:
            self._average_gradients(chosen)
        if self.spec.clip_norm and self.spec.name != "clipped_adam":
            for name, ps in self.group_params.items():
                if chosen is None or name in chosen:
                    torch.nn.utils.clip_grad_norm_(ps, self.spec.clip_norm)
        if chosen is None:
            self.optimizer.step()
        else:
            # the optimiser sees only the chosen groups for this step (the others are not
            # visited at all: an emptied group would still cost a pass of the update's code)
            groups = self.optimizer.param_groups
            self.optimizer.param_groups = [g for g in groups if g["name"] in chosen]
            try:
                self.optimizer.step()
            finally:
                self.optimizer.param_groups = groups
            return None
        self.schedule()
        return None

    def _average_gradients(self, chosen: set[str] | None) -> None:
        """The stepped groups' gradients averaged over the processes (one all-reduce); every
        process runs the same code, so the same tensors have gradients everywhere."""
        grads = [
            p.grad
            for name, ps in self.group_params.items()
            if chosen is None or name in chosen
            for p in ps
            if p.grad is not None
        ]
        if grads:
            all_reduce_mean(grads)

    def schedule(self) -> None:
        """Advance the learning-rate schedule by one loop step."""
        if self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
        }

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        if sd.get("optimizer") is not None:
            self.optimizer.load_state_dict(sd["optimizer"])
        if sd.get("scheduler") is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(sd["scheduler"])


def _optax_lbfgs(lr: float) -> Any:
    """``optax.lbfgs`` (zoom line search) as a NumPyro optimiser: NumPyro's wrapper of optax
    passes only the gradient and the value, and the line search needs the objective too."""
    import jax
    import optax
    from numpyro.optim import _NumPyroOptim

    # lr 1 is the line search's own step; any other value scales it (as torch's LBFGS does)
    transformation = optax.lbfgs(learning_rate=None if lr == 1.0 else lr)

    class OptaxLBFGS(_NumPyroOptim):
        def eval_and_update(
            self, fn: Callable, state: Any, forward_mode_differentiation: bool = False
        ) -> Any:
            i, (params, opt_state) = state
            (value, aux), grads = jax.value_and_grad(fn, has_aux=True)(params)
            updates, opt_state = transformation.update(
                grads, opt_state, params, value=value, grad=grads, value_fn=lambda p: fn(p)[0]
            )
            return (value, aux), (i + 1, (optax.apply_updates(params, updates), opt_state))

        def eval_and_stable_update(
            self, fn: Callable, state: Any, forward_mode_differentiation: bool = False
        ) -> Any:
            return self.eval_and_update(fn, state, forward_mode_differentiation)

    def init_fn(params: Any) -> Any:
        return params, transformation.init(params)

    def update_fn(step: Any, grads: Any, state: Any, value: Any = None) -> Any:
        raise EstimatorError("L-BFGS needs the objective: it steps by `eval_and_update`.")

    return OptaxLBFGS(lambda: (init_fn, update_fn, lambda state: state[0]))
