"""Runners: what drives an estimator on a prepared fit context (locally, or data-parallel)."""

from __future__ import annotations

import datetime
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ppgen.errors import EstimatorError

if TYPE_CHECKING:
    from ppgen.inference._base import Estimator, FitContext
    from ppgen.result import Fit

__all__ = ["Runner", "Local", "JaxDevices", "DDP"]


class Runner(ABC):
    """Drives one estimator on one validated :class:`~ppgen.inference.FitContext`.

    ``ppgen.fit(..., runner=...)`` validates the program and data, builds the context, then
    hands both to :meth:`run`. A data-parallel runner plugs in here without touching
    estimators: it launches or joins its workers (``torchrun`` ranks, JAX devices), shards
    ``ctx.data`` and reduces gradients and metrics around ``estimator.run``; the estimator does
    not know which runner drives it.

    Example: a runner that records what it ran, then runs it here.

        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> class Recording(Runner):
        ...     def __init__(self):
        ...         self.calls = []
        ...     def run(self, estimator, ctx):
        ...         self.calls.append((estimator.name, sorted(ctx.data)))
        ...         return estimator.run(ctx)
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("obs", 5):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> runner = Recording()
        >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=5), runner=runner)
        >>> runner.calls
        [('svi', ['x'])]
    """

    @abstractmethod
    def run(self, estimator: Estimator, ctx: FitContext) -> Fit:
        """Fit ``ctx`` with ``estimator`` and return the :class:`~ppgen.result.Fit`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Local(Runner):
    """The default runner: the estimator runs in this process, on ``ctx.device``.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     p = pyro.sample("p", dist.Beta(1.0, 1.0))
        ...     with pyro.plate("obs", 4):
        ...         pyro.sample("x", dist.Bernoulli(p), obs=x)
        >>> x = np.array([1.0, 0.0, 1.0, 1.0])
        >>> a = ppgen.fit(model, {"x": x}, ppgen.inference.SVI(steps=5), runner=Local())
        >>> b = ppgen.fit(model, {"x": x}, ppgen.inference.SVI(steps=5))
        >>> bool(np.array_equal(a.draws["p"], b.draws["p"]))
        True
    """

    def run(self, estimator: Estimator, ctx: FitContext) -> Fit:
        return estimator.run(ctx)


class JaxDevices(Runner):
    """Shard every minibatch of a NumPyro SVI/MLE fit across ``devices`` JAX devices.

    Each minibatch is split along the axis its plate indexes (``jax.sharding``), one part per
    device; XLA runs each part where it lies and reduces the gradients, and the parameters
    stay replicated, so the fit is the one-device fit (the same losses up to float rounding)
    spread over the devices. Needs ``batch_size=`` a multiple of the device count. On CPU,
    make host devices before JAX starts
    (``XLA_FLAGS=--xla_force_host_platform_device_count=2``); on GPUs, ``devices`` of them.

    Arguments:
        devices: how many of JAX's local devices to use (default: all).

    Example (one device here, so one shard; the same call spreads over several):
        >>> import numpy as np, numpyro, numpyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with numpyro.plate("d", len(x)):
        ...         numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> est = ppgen.inference.SVI(steps=5, batch_size=4)
        >>> fit = ppgen.fit(model, {"x": np.zeros(8)}, est, runner=JaxDevices(1))
        >>> fit.diagnostics["devices"]
        'cpu:0'
    """

    def __init__(self, devices: int | None = None) -> None:
        if devices is not None and (not isinstance(devices, int) or devices < 1):
            raise EstimatorError(f"`devices` must be a positive int or None; got {devices!r}.")
        self.n = devices

    def run(self, estimator: Estimator, ctx: FitContext) -> Fit:
        import jax

        name, batch = type(estimator).__name__, getattr(estimator, "batch_size", None)
        if ctx.program.backend != "numpyro" or batch is None:
            raise EstimatorError(
                f"JaxDevices shards the minibatches of a NumPyro SVI or MLE fit; got {name} on "
                f"the {ctx.program.backend} backend with batch_size={batch}. Give the estimator "
                "batch_size= (a multiple of the device count) on a NumPyro program; for NUTS "
                "chains on several devices use NUTS(chain_method='parallel')."
            )
        if not getattr(estimator, "device_parallel", False):
            raise EstimatorError(
                f"JaxDevices shards the minibatches of NumPyro SVI and MLE fits; {name} does not "
                "shard its batches across devices. Fit it with runner=Local()."
            )
        local = jax.local_devices()
        n = self.n or len(local)
        if n > len(local):
            raise EstimatorError(
                f"JaxDevices({n}) but JAX sees {len(local)} device(s). On CPU, make host "
                f"devices before JAX starts: XLA_FLAGS=--xla_force_host_platform_device_count={n}."
            )
        ctx.extra["shard_devices"] = local[:n]
        return estimator.run(ctx)

    def __repr__(self) -> str:
        return f"JaxDevices({self.n})"


class DDP(Runner):
    """Data-parallel SVI, MLE, GAN and ALI fits of a Pyro program across processes launched
    by ``torchrun``.

    Every process runs the same ``ppgen.fit`` call (the same program, data, estimator and
    seed): each draws the same global minibatch of ``batch_size`` rows and keeps its share
    (rows ``rank::world``), weighted ``N / b``; after each backward pass the gradients and the
    loss are averaged across the processes (one all-reduce through ``torch.distributed``), so
    every process takes the same optimiser step, the one a single process would take on the
    whole global batch (up to float rounding). Only the first process (rank 0) writes
    checkpoints; every process reads one to resume. Each process returns the same fit: save it
    from rank 0 (``if torch.distributed.get_rank() == 0: fit.save(...)``).

    Launch: ``torchrun --nproc_per_node 2 my_script.py``. The process group is created with
    ``backend`` (default gloo on CPU, NCCL for CUDA devices) and ``timeout_s``: a process that
    dies makes the others fail within the timeout instead of hanging.

    Adversarial fits (:class:`~ppgen.inference.Adversarial`, :class:`~ppgen.inference.ALI`)
    split the real batch the same way; each process simulates its own fakes (and critic
    interpolates) from a stream of its own derived from the shared seed, so the processes
    together see ``batch_size`` independent fakes; every critic and generator update averages
    its gradients over the processes. Checkpoints hold the shared RNG state, so a resumed run
    continues exactly with the same number of processes (and validly with another). Running
    BatchNorm statistics are each process's own; rank 0's are saved. The contrastive
    estimators (CD, NCE, score matching) run the same way; their persistent chains are split
    across the processes and gathered after each step.

    Refused before any work: a run not launched by ``torchrun`` (no ``RANK``/``WORLD_SIZE``), a
    NumPyro program (use :class:`JaxDevices`), an estimator that does not average gradients
    across processes (``data_parallel``: SVI, MLE, Adversarial, ALI, the contrastive ones), a
    missing ``batch_size`` or one that does not divide by the number of processes (times
    ``pack`` for PacGAN), and L-BFGS.

    Example (a single process, where this is the plain fit):
        >>> import os, socket
        >>> with socket.socket() as free:  # what torchrun would set, on a free port
        ...     free.bind(("127.0.0.1", 0))
        ...     port = str(free.getsockname()[1])
        >>> os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("d", len(x)):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> est = ppgen.inference.SVI(steps=5, batch_size=4)
        >>> fit = ppgen.fit(model, {"x": np.zeros(8)}, est, runner=DDP())
        >>> fit.diagnostics["processes"]
        1
        >>> import torch.distributed; torch.distributed.destroy_process_group()
        >>> for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"): _ = os.environ.pop(k)
    """

    def __init__(self, backend: str | None = None, timeout_s: float = 300.0) -> None:
        if backend not in (None, "gloo", "nccl"):
            raise EstimatorError(f"`backend` must be 'gloo', 'nccl' or None; got {backend!r}.")
        self.backend, self.timeout_s = backend, float(timeout_s)

    def run(self, estimator: Estimator, ctx: FitContext) -> Fit:
        import torch.distributed as dist

        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise EstimatorError(
                "runner=DDP() runs in processes launched by torchrun (RANK and WORLD_SIZE are "
                "not set): `torchrun --nproc_per_node 2 my_script.py`, or runner=Local()."
            )
        world = int(os.environ["WORLD_SIZE"])
        name, batch = type(estimator).__name__, getattr(estimator, "batch_size", None)
        if ctx.program.backend != "pyro":
            raise EstimatorError(
                "runner=DDP() fits Pyro programs; for a NumPyro program shard the minibatches "
                "across JAX devices with runner=JaxDevices()."
            )
        if not getattr(estimator, "data_parallel", False):
            raise EstimatorError(
                f"runner=DDP(): {name} does not average its gradients across processes; SVI, "
                "MLE, Adversarial, ALI and the contrastive estimators do. Fit it with "
                "runner=Local()."
            )
        unit = world * int(getattr(estimator, "pack", 1) or 1)
        if batch is None or batch % unit:
            per = f"{world} processes" + (f" x pack={unit // world}" if unit > world else "")
            raise EstimatorError(
                f"runner=DDP() splits each minibatch across the {world} processes: give {name} "
                f"batch_size= a multiple of {unit} ({per}; the global batch); got {batch}."
            )
        if getattr(estimator, "optim", None) == "lbfgs":
            raise EstimatorError(
                "runner=DDP() steps a stochastic optimiser on minibatches; L-BFGS is full-batch."
            )
        if not dist.is_initialized():
            backend = self.backend or ("nccl" if (ctx.device or "").startswith("cuda") else "gloo")
            timeout = datetime.timedelta(seconds=self.timeout_s)
            dist.init_process_group(backend, timeout=timeout)
        ctx.extra["shard"] = (dist.get_rank(), dist.get_world_size())
        fit = estimator.run(ctx)
        fit.diagnostics["processes"] = dist.get_world_size()
        return fit

    def __repr__(self) -> str:
        return f"DDP(backend={self.backend!r}, timeout_s={self.timeout_s})"
