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

__all__ = ["Optim", "TorchOptimizer", "OPTIMIZERS"]

#: optimiser names accepted everywhere (``optim=`` of every optimisation estimator)
OPTIMIZERS = ("adam", "adamw", "clipped_adam", "sgd", "rmsprop", "adagrad")
_GROUP_KEYS = ("lr", "betas", "weight_decay")


def _torch_class(name: str) -> type[torch.optim.Optimizer]:
    if name == "clipped_adam":
        from pyro.optim.clipped_adam import ClippedAdam

        return ClippedAdam
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
        name: one of :data:`OPTIMIZERS`.
        lr: learning rate of every group without its own.
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
    """

    def __init__(
        self,
        name: str = "adam",
        lr: float = 1e-3,
        *,
        betas: tuple[float, float] | None = None,
        weight_decay: float = 0.0,
        lr_decay: float | None = None,
        clip_norm: float | None = None,
        groups: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
            raise EstimatorError(
                f"Unknown `optim={name!r}`. Valid names: {list(OPTIMIZERS)}, or a backend "
                "optimiser object (torch.optim class / pyro.optim / numpyro.optim)."
            )
        check_positive("lr", lr)
        if lr_decay is not None:
            check_positive("lr_decay", lr_decay, upper=1.0)
        if clip_norm is not None:
            check_positive("clip_norm", clip_norm)
        self.name = name.lower()
        self.lr, self.betas, self.weight_decay = float(lr), betas, weight_decay
        self.lr_decay, self.clip_norm = lr_decay, clip_norm
        self.groups = {k: dict(v) for k, v in (groups or {}).items()}
        for g, opts in self.groups.items():
            unknown = sorted(set(opts) - set(_GROUP_KEYS))
            if unknown:
                raise EstimatorError(
                    f"Parameter group {g!r} has unknown option(s) {unknown}; each group takes "
                    f"{list(_GROUP_KEYS)}."
                )
            if "lr" in opts:
                check_positive(f"groups[{g!r}]['lr']", opts["lr"])

    def options(self, group: str) -> dict[str, Any]:
        """The torch optimiser options of ``group`` (its overrides on the shared settings)."""
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
    ) -> TorchOptimizer:
        """A :class:`TorchOptimizer` over ``params`` (a list, or ``{group: tensors}``)."""
        groups = dict(params) if isinstance(params, Mapping) else {"default": params}
        return TorchOptimizer(self, {k: list(v) for k, v in groups.items()}, total_steps)

    def numpyro(self, total_steps: int = 1000, group_of: Callable[[str], str] | None = None) -> Any:
        """The NumPyro optimiser (``numpyro.optim``; optax per group when groups differ).

        ``group_of`` maps a NumPyro param name to its group (default: every param in
        ``"default"``). Without per-group settings this is NumPyro's own optimiser class, so a
        fit equals a raw NumPyro loop with the same optimiser.
        """
        import numpyro.optim as nopt

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
    the schedule's state, so a resumed fit continues bit for bit.
    """

    def __init__(
        self, spec: Optim, groups: Mapping[str, list[torch.Tensor]], total_steps: int
    ) -> None:
        self.spec = spec
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

    def step(self, groups: Iterable[str] | None = None) -> None:
        """Clip and step all groups, then advance the schedule; or only ``groups`` (e.g. a GAN's
        critic in its inner updates), leaving the schedule to :meth:`schedule`."""
        if self.optimizer is None:
            return
        chosen = None if groups is None else set(groups)
        if self.spec.clip_norm and self.spec.name != "clipped_adam":
            for name, ps in self.group_params.items():
                if chosen is None or name in chosen:
                    torch.nn.utils.clip_grad_norm_(ps, self.spec.clip_norm)
        if chosen is None:
            self.optimizer.step()
        else:
            saved = [(g, g["params"]) for g in self.optimizer.param_groups]
            try:
                for g, _ in saved:
                    if g["name"] not in chosen:
                        g["params"] = []
                self.optimizer.step()
            finally:
                for g, ps in saved:
                    g["params"] = ps
            return
        self.schedule()

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
